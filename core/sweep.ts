/**
 * Sweeps: many configs from a space of param values. {@link grid} (every combination),
 * {@link zip} (values side by side), {@link randomSearch} (seeded samples of lists and
 * distributions), and the parser for `--sweep` flags. Each helper returns plain configs, so a
 * config file may `export default grid({ ... })`.
 * @module
 */

import { type Config, type ConfigInput, normalizeConfig } from "./config.ts";
import { editDistance } from "./edit-distance.ts";
import { KeelError } from "./errors.ts";

/** The most values one range, or configs one sweep, may have. */
export const MAX_SWEEP_SIZE = 1_000_000;

function sweepError(message: string, details?: Record<string, unknown>): KeelError {
  return new KeelError("E_SWEEP_INVALID", message, details === undefined ? {} : { details });
}

/** Rounds away the float noise of `start + i * step` (0.30000000000000004 -> 0.3). */
function tidy(value: number): number {
  return Number.isInteger(value) ? value : Number(value.toPrecision(12));
}

/**
 * Numbers from `start` up to (not including) `stop`, `step` apart, as Python's `range`; a
 * negative step counts down.
 *
 * @example
 * ```ts
 * import { range } from "./sweep.ts";
 * console.assert(range(32, 129, 32).join() === "32,64,96,128");
 * console.assert(range(3, 0, -1).join() === "3,2,1");
 * console.assert(range(0, 0.3, 0.1).join() === "0,0.1,0.2");
 * ```
 * @throws {KeelError} `E_SWEEP_INVALID` for a step of 0, a bound or step that is not finite,
 *   or more than a million values.
 */
export function range(start: number, stop: number, step = 1): number[] {
  if (typeof start !== "number" || typeof stop !== "number" || typeof step !== "number") {
    throw new TypeError("range(start, stop, step?) takes numbers");
  }
  if (!Number.isFinite(start) || !Number.isFinite(stop) || !Number.isFinite(step)) {
    throw sweepError(
      `A range needs finite numbers, got range(${start}, ${stop}, ${step}); write it as range(start, stop, step)`,
      { start, stop, step },
    );
  }
  if (step === 0) {
    throw sweepError(
      `A range needs a step other than 0, got range(${start}, ${stop}, 0), which never reaches its stop; use a step such as 1 (or -1 to count down)`,
      { start, stop, step },
    );
  }
  // The epsilon keeps float steps from adding a value that is the stop itself.
  const count = Math.max(0, Math.ceil((stop - start) / step - 1e-9));
  if (count > MAX_SWEEP_SIZE) {
    throw sweepError(
      `A range may have at most ${MAX_SWEEP_SIZE} values, but range(${start}, ${stop}, ${step}) has ${count}; use a larger step`,
      { start, stop, step, count },
    );
  }
  return Array.from({ length: count }, (_, i) => tidy(start + i * step));
}

/** A distribution {@link randomSearch} samples a param from. */
export interface Distribution {
  readonly kind: "choice" | "interval";
  /** One value, drawn with `rng` (uniform in [0, 1)). */
  sample(rng: () => number): unknown;
  /** The values of a "choice". */
  readonly values?: readonly unknown[];
}

/**
 * A uniform choice among `values`.
 *
 * @example
 * ```ts
 * import { choice, createRng } from "./sweep.ts";
 * const v = choice(["adam", "sgd"]).sample(createRng(1));
 * console.assert(v === "adam" || v === "sgd");
 * ```
 * @throws {KeelError} `E_SWEEP_INVALID` for an empty list.
 */
export function choice(values: readonly unknown[]): Distribution {
  if (!Array.isArray(values)) throw new TypeError("choice(values) takes a list");
  if (values.length === 0) {
    throw sweepError("A choice needs at least one value to choose from, as in choice(a,b)");
  }
  const frozen = Object.freeze([...values]);
  return Object.freeze({
    kind: "choice" as const,
    values: frozen,
    sample: (rng: () => number) =>
      frozen[Math.min(frozen.length - 1, Math.floor(rng() * frozen.length))],
  });
}

/**
 * Numbers between `low` and `high`: uniform in [low, high), or log-uniform with `log`, or
 * whole numbers in [low, high] with `integer`.
 *
 * @example
 * ```ts
 * import { createRng, interval } from "./sweep.ts";
 * const lr = interval(1e-4, 1e-1, { log: true }).sample(createRng(7)) as number;
 * console.assert(lr >= 1e-4 && lr < 1e-1);
 * const layers = interval(1, 4, { integer: true }).sample(createRng(7)) as number;
 * console.assert(Number.isInteger(layers) && layers >= 1 && layers <= 4);
 * ```
 * @throws {KeelError} `E_SWEEP_INVALID` when `low` is not below `high`, a bound is not finite,
 *   `log` has a bound at or below 0, or `integer` has no whole number between the bounds.
 */
export function interval(
  low: number,
  high: number,
  options: { log?: boolean; integer?: boolean } = {},
): Distribution {
  if (typeof low !== "number" || typeof high !== "number") {
    throw new TypeError("interval(low, high) takes numbers");
  }
  const shown = `interval(${low}, ${high})`;
  if (!Number.isFinite(low) || !Number.isFinite(high)) {
    throw sweepError(`An interval needs finite bounds, got ${shown}`, { low, high });
  }
  if (!(low < high)) {
    throw sweepError(
      `An interval needs its low bound below its high bound, got ${shown}; write interval(low, high)`,
      {
        low,
        high,
      },
    );
  }
  const log = options.log === true;
  const integer = options.integer === true;
  if (log && low <= 0) {
    throw sweepError(`A log-scaled interval needs bounds above 0, got ${shown}`, { low, high });
  }
  const lo = integer ? Math.ceil(low) : low;
  const hi = integer ? Math.floor(high) : high;
  if (integer && lo > hi) {
    throw sweepError(
      `An integer interval needs a whole number between its bounds, got ${shown}; widen it or drop "int"`,
      { low, high },
    );
  }
  const sample = (rng: () => number): number => {
    const u = rng();
    if (integer) {
      // Whole numbers lo..hi inclusive: sample [lo, hi + 1) and floor.
      const x = log
        ? Math.exp(Math.log(lo) + u * (Math.log(hi + 1) - Math.log(lo)))
        : lo + u * (hi + 1 - lo);
      return Math.min(hi, Math.max(lo, Math.floor(x)));
    }
    const x = log ? Math.exp(Math.log(lo) + u * (Math.log(hi) - Math.log(lo))) : lo + u * (hi - lo);
    return Math.min(Math.max(x, lo), hi);
  };
  return Object.freeze({ kind: "interval" as const, sample });
}

/**
 * A seeded pseudo-random generator (mulberry32) of numbers in [0, 1); the same seed gives the
 * same numbers on every runtime. The seed is taken as a 32-bit integer.
 *
 * @example
 * ```ts
 * import { createRng } from "./sweep.ts";
 * const a = createRng(42), b = createRng(42);
 * console.assert(a() === b() && a() === b());
 * ```
 */
export function createRng(seed: number): () => number {
  if (typeof seed !== "number" || !Number.isFinite(seed)) {
    throw new TypeError(`createRng(seed) takes a finite number, got ${String(seed)}`);
  }
  let state = Math.trunc(seed) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The base config of a sweep, checked. */
function baseOf(base: ConfigInput | undefined): Config {
  return normalizeConfig(base ?? {}, "the sweep's base config");
}

/** `base` with `values` on top of its params; an `extends` on the base is kept for the loader. */
function withParams(base: Config, values: Readonly<Record<string, unknown>>): Config {
  const ext = (base as { extends?: readonly string[] }).extends;
  const config: Record<string, unknown> = {
    params: Object.freeze({ ...base.params, ...values }),
    args: base.args,
    kwargs: base.kwargs,
    metadata: base.metadata,
  };
  if (ext !== undefined) config.extends = ext;
  return Object.freeze(config) as unknown as Config;
}

function checkAxes(
  space: Readonly<Record<string, unknown>>,
  what: string,
): [string, readonly unknown[]][] {
  if (typeof space !== "object" || space === null || Array.isArray(space)) {
    throw sweepError(
      `The space of ${what} must map param names to lists of values, as in { lr: [0.1, 0.01] }`,
    );
  }
  const axes = Object.entries(space);
  for (const [key, values] of axes) {
    if (!Array.isArray(values)) {
      throw sweepError(
        `Param "${key}" of ${what} must be a list of values, as in { ${key}: [1, 2] }`,
        { key },
      );
    }
    if (values.length === 0) {
      throw sweepError(`Param "${key}" of ${what} has an empty list; give it at least one value`, {
        key,
      });
    }
  }
  return axes as [string, readonly unknown[]][];
}

/**
 * Every combination of the values in `space` (the cartesian product), the first key varying
 * slowest, each on top of `base`.
 *
 * @example
 * ```ts
 * import { grid } from "./sweep.ts";
 * const configs = grid({ lr: [0.1, 0.01], bs: [32, 64] });
 * console.assert(configs.length === 4);
 * console.assert(configs[1]!.params.lr === 0.1 && configs[1]!.params.bs === 64);
 * ```
 * @throws {KeelError} `E_SWEEP_INVALID` for a value that is not a list, an empty list, or more
 *   than a million combinations.
 */
export function grid(
  space: Readonly<Record<string, readonly unknown[]>>,
  base?: ConfigInput,
): Config[] {
  const axes = checkAxes(space, "grid()");
  const baseConfig = baseOf(base);
  const total = axes.reduce((n, [, values]) => n * values.length, 1);
  if (total > MAX_SWEEP_SIZE) {
    throw sweepError(
      `A grid may have at most ${MAX_SWEEP_SIZE} combinations, but this one has ${total}; use fewer values or randomSearch()`,
      { total },
    );
  }
  const configs: Config[] = [];
  for (let i = 0; i < total; i++) {
    const values: Record<string, unknown> = {};
    let rest = i;
    for (let a = axes.length - 1; a >= 0; a--) {
      const [key, list] = axes[a]!;
      values[key] = list[rest % list.length];
      rest = Math.floor(rest / list.length);
    }
    // Keys in the order of the space, not the order they were filled in.
    const ordered = Object.fromEntries(axes.map(([key]) => [key, values[key]]));
    configs.push(withParams(baseConfig, ordered));
  }
  return configs;
}

/**
 * The values of `space` side by side: the first config takes every list's first value, and so
 * on. All lists must have the same length.
 *
 * @example
 * ```ts
 * import { zip } from "./sweep.ts";
 * const configs = zip({ lr: [0.1, 0.01], warmup: [100, 500] });
 * console.assert(configs.length === 2 && configs[1]!.params.warmup === 500);
 * ```
 * @throws {KeelError} `E_SWEEP_INVALID` for lists of different lengths (naming each), a value
 *   that is not a list, or an empty list.
 */
export function zip(
  space: Readonly<Record<string, readonly unknown[]>>,
  base?: ConfigInput,
): Config[] {
  const axes = checkAxes(space, "zip()");
  const baseConfig = baseOf(base);
  if (axes.length === 0) return [baseConfig];
  const lengths = new Set(axes.map(([, values]) => values.length));
  if (lengths.size > 1) {
    const listed = axes.map(([key, values]) => `"${key}" has ${values.length}`).join(", ");
    throw sweepError(
      `Lists to zip() must have the same length, but ${listed}; make them equal, or use grid() for every combination`,
      { lengths: Object.fromEntries(axes.map(([key, values]) => [key, values.length])) },
    );
  }
  const length = axes[0]![1].length;
  return Array.from(
    { length },
    (_, i) =>
      withParams(baseConfig, Object.fromEntries(axes.map(([key, values]) => [key, values[i]]))),
  );
}

function isDistribution(value: unknown): value is Distribution {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    typeof (value as Distribution).sample === "function";
}

/**
 * `trials` configs, each param drawn from its list (uniformly) or its distribution; the same
 * `seed` gives the same configs. Without a seed, one is picked at random.
 *
 * @example
 * ```ts
 * import { interval, randomSearch } from "./sweep.ts";
 * const space = { lr: interval(1e-4, 1e-1, { log: true }), opt: ["adam", "sgd"] };
 * const a = randomSearch(space, { trials: 3, seed: 1 });
 * const b = randomSearch(space, { trials: 3, seed: 1 });
 * console.assert(a.length === 3 && a[2]!.params.lr === b[2]!.params.lr);
 * ```
 * @throws {KeelError} `E_SWEEP_INVALID` for trials that are not a whole number from 1 to a
 *   million, an empty list, or a value that is neither a list nor a distribution.
 */
export function randomSearch(
  space: Readonly<Record<string, readonly unknown[] | Distribution>>,
  options: { trials: number; seed?: number },
  base?: ConfigInput,
): Config[] {
  const { trials } = options;
  if (!Number.isInteger(trials) || trials < 1 || trials > MAX_SWEEP_SIZE) {
    throw sweepError(
      `A random search needs a whole number of trials from 1 to ${MAX_SWEEP_SIZE}, got ${
        String(trials)
      }; pass --trials 20, for example`,
      { trials },
    );
  }
  if (typeof space !== "object" || space === null || Array.isArray(space)) {
    throw sweepError(
      "The space of randomSearch() must map param names to lists of values or distributions",
    );
  }
  const samplers: [string, (rng: () => number) => unknown][] = [];
  for (const [key, value] of Object.entries(space)) {
    if (isDistribution(value)) samplers.push([key, (rng) => value.sample(rng)]);
    else if (Array.isArray(value)) {
      const dist = value.length === 0 ? undefined : choice(value);
      if (dist === undefined) {
        throw sweepError(
          `Param "${key}" of randomSearch() has an empty list; give it at least one value`,
          {
            key,
          },
        );
      }
      samplers.push([key, (rng) => dist.sample(rng)]);
    } else {
      throw sweepError(
        `Param "${key}" of randomSearch() must be a list of values or a distribution (choice() or interval())`,
        { key },
      );
    }
  }
  const baseConfig = baseOf(base);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  const rng = createRng(seed);
  return Array.from(
    { length: trials },
    () =>
      withParams(
        baseConfig,
        Object.fromEntries(samplers.map(([key, sample]) => [key, sample(rng)])),
      ),
  );
}

// ---------------------------------------------------------------------------------------------
// --sweep flags

const SWEEP_FUNCTIONS = ["range", "choice", "interval"] as const;

/** Splits at top-level commas, keeping commas inside brackets, braces, parens and quotes. */
function splitTopLevel(text: string, flag: string): string[] {
  const parts: string[] = [];
  const closers: string[] = [];
  let quote: string | undefined;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote !== undefined) {
      if (c === "\\") i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '"' || c === "'") quote = c;
    else if (c === "[" || c === "{" || c === "(") {
      closers.push(c === "[" ? "]" : c === "{" ? "}" : ")");
    } else if (c === "]" || c === "}" || c === ")") {
      if (closers.pop() !== c) {
        throw sweepError(`--sweep "${flag}" has an unmatched "${c}"; check its brackets`, { flag });
      }
    } else if (c === "," && closers.length === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (quote !== undefined) {
    throw sweepError(`--sweep "${flag}" has an unclosed quote (${quote}); close it`, { flag });
  }
  if (closers.length > 0) {
    throw sweepError(`--sweep "${flag}" is missing a closing "${closers[closers.length - 1]}"`, {
      flag,
    });
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.trim());
}

/** A value from the command line: JSON when it parses, else the text (single quotes stripped). */
function looseValue(text: string): unknown {
  if (text.length >= 2 && text.startsWith("'") && text.endsWith("'")) return text.slice(1, -1);
  try {
    return JSON.parse(text);
  } catch {
    // Numbers JSON refuses but people write: ".5", "+1", "5.".
    return /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(text) ? Number(text) : text;
  }
}

function values(parts: readonly string[], flag: string): unknown[] {
  if (parts.some((p) => p === "")) {
    throw sweepError(
      `--sweep "${flag}" has an empty value; separate values with single commas, as in lr=0.1,0.01`,
      {
        flag,
      },
    );
  }
  return parts.map(looseValue);
}

function numbers(parts: readonly string[], flag: string, fn: string): number[] {
  return parts.map((p) => {
    const n = p === "" ? Number.NaN : Number(p);
    if (!Number.isFinite(n)) {
      throw sweepError(`--sweep "${flag}": ${fn}() takes numbers, got "${p}"`, { flag });
    }
    return n;
  });
}

/** One `name(args)` expression. */
function callOf(
  fn: string,
  inner: string,
  flag: string,
): { axis: unknown[] } | { distribution: Distribution } {
  const parts = inner.trim() === "" ? [] : splitTopLevel(inner, flag);
  switch (fn) {
    case "range": {
      if (parts.length < 1 || parts.length > 3) {
        throw sweepError(
          `--sweep "${flag}": range() takes 1 to 3 numbers, as in range(32,129,32)`,
          {
            flag,
          },
        );
      }
      const [a, b, c] = numbers(parts, flag, "range");
      const list = b === undefined ? range(0, a!) : range(a!, b, c);
      if (list.length === 0) {
        throw sweepError(`--sweep "${flag}": the range is empty; check its start, stop and step`, {
          flag,
        });
      }
      return { axis: list };
    }
    case "choice":
      if (parts.length === 0) {
        throw sweepError(`--sweep "${flag}": choice() needs values, as in choice(adam,sgd)`, {
          flag,
        });
      }
      return { distribution: choice(values(parts, flag)) };
    case "interval": {
      const bounds = parts.slice(0, 2);
      const flags = parts.slice(2);
      if (bounds.length < 2) {
        throw sweepError(
          `--sweep "${flag}": interval() takes a low and a high bound, as in interval(0.1,1)`,
          {
            flag,
          },
        );
      }
      const bad = flags.find((f) => f !== "log" && f !== "int");
      if (bad !== undefined) {
        throw sweepError(
          `--sweep "${flag}": interval() takes the options "log" and "int", got "${bad}"`,
          {
            flag,
          },
        );
      }
      const [low, high] = numbers(bounds, flag, "interval");
      try {
        return {
          distribution: interval(low!, high!, {
            log: flags.includes("log"),
            integer: flags.includes("int"),
          }),
        };
      } catch (e) {
        if (KeelError.is(e)) throw sweepError(`--sweep "${flag}": ${e.message}`, { flag });
        throw e;
      }
    }
    default: {
      const near = SWEEP_FUNCTIONS.find((name) => editDistance(name, fn) <= 2);
      throw sweepError(
        `--sweep "${flag}" calls "${fn}()", which does not exist` +
          (near ? ` (did you mean "${near}"?)` : "") +
          `; use range(), choice() or interval(), or quote a text value as '"${fn}(...)"'`,
        { flag },
      );
    }
  }
}

/** What {@link parseSweepFlags} found: grid axes (lists, ranges) and distributions. */
export interface ParsedSweep {
  axes: Record<string, unknown[]>;
  distributions: Record<string, Distribution>;
}

/**
 * Parses `--sweep` flags: `lr=0.001,0.01,0.1` (each value JSON, else text), `bs=range(32,129,32)`,
 * `opt=choice(adam,sgd)`, `drop=interval(0.1,0.5)`, `lr=interval(1e-4,1e-1,log)`,
 * `layers=interval(1,4,int)`. Lists and ranges are grid axes; choice and interval are sampled by
 * a random search.
 *
 * @example
 * ```ts
 * import { parseSweepFlags } from "./sweep.ts";
 * const { axes, distributions } = parseSweepFlags(["lr=0.1,0.01", "bs=range(32,97,32)", "opt=choice(adam,sgd)"]);
 * console.assert(axes.lr!.length === 2 && axes.bs!.join() === "32,64,96");
 * console.assert(distributions.opt!.kind === "choice");
 * ```
 * @throws {KeelError} `E_SWEEP_INVALID` for a flag without `key=`, an empty key or value, a key
 *   given twice, unbalanced brackets or quotes, an unknown function, or bad arguments.
 */
export function parseSweepFlags(flags: readonly string[]): ParsedSweep {
  const axes: Record<string, unknown[]> = {};
  const distributions: Record<string, Distribution> = {};
  for (const flag of flags) {
    const eq = flag.indexOf("=");
    if (eq < 0) {
      throw sweepError(`--sweep "${flag}" is not key=values; write it as lr=0.1,0.01`, { flag });
    }
    const key = flag.slice(0, eq).trim();
    const expr = flag.slice(eq + 1).trim();
    if (key === "") {
      throw sweepError(`--sweep "${flag}" has no param name before "="; write it as lr=0.1,0.01`, {
        flag,
      });
    }
    if (expr === "") {
      throw sweepError(`--sweep "${flag}" has no values after "="; write it as ${key}=1,2,3`, {
        flag,
      });
    }
    if (Object.hasOwn(axes, key) || Object.hasOwn(distributions, key)) {
      throw sweepError(
        `--sweep sets "${key}" twice; give all its values in one flag, as in ${key}=1,2,3`,
        {
          flag,
          key,
        },
      );
    }
    const call = /^([A-Za-z_]\w*)\s*\(/.exec(expr);
    if (call !== null) {
      if (!expr.endsWith(")")) {
        throw sweepError(`--sweep "${flag}" is missing a closing ")"`, { flag });
      }
      const inner = expr.slice(call[0].length, -1);
      // "range(1,2),range(3,4)" leaves an unmatched ")" in `inner`, which callOf rejects.
      const found = callOf(call[1]!, inner, flag);
      if ("axis" in found) axes[key] = found.axis;
      else distributions[key] = found.distribution;
      continue;
    }
    axes[key] = values(splitTopLevel(expr, flag), flag);
  }
  return { axes, distributions };
}

/**
 * The configs the command line asks for: a grid over the axes (or a zip with `mode: "zip"`),
 * or, with `trials`, a random search over axes and distributions together.
 *
 * @example
 * ```ts
 * import { parseSweepFlags, sweepConfigs } from "./sweep.ts";
 * const parsed = parseSweepFlags(["lr=0.1,0.01", "bs=32,64"]);
 * console.assert(sweepConfigs(parsed, {}).length === 4);
 * console.assert(sweepConfigs(parsed, { mode: "zip" }).length === 2);
 * console.assert(sweepConfigs(parsed, { trials: 5, seed: 1 }).length === 5);
 * ```
 * @throws {KeelError} `E_SWEEP_INVALID` for a distribution without `trials`, `trials` with
 *   zip mode, and whatever {@link grid}, {@link zip} and {@link randomSearch} reject.
 */
export function sweepConfigs(
  parsed: ReturnType<typeof parseSweepFlags>,
  options: { mode?: "grid" | "zip"; trials?: number; seed?: number },
  base?: ConfigInput,
): Config[] {
  const mode = options.mode ?? "grid";
  if (options.trials !== undefined) {
    if (options.mode === "zip") {
      throw sweepError(
        "--trials samples a random search, which cannot be zipped; drop --zip or --trials",
      );
    }
    const space: Record<string, readonly unknown[] | Distribution> = {
      ...parsed.axes,
      ...parsed.distributions,
    };
    return randomSearch(
      space,
      options.seed === undefined
        ? { trials: options.trials }
        : { trials: options.trials, seed: options.seed },
      base,
    );
  }
  const sampled = Object.keys(parsed.distributions);
  if (sampled.length > 0) {
    throw sweepError(
      `--sweep ${sampled.map((k) => `"${k}"`).join(", ")} ${
        sampled.length === 1 ? "is a distribution" : "are distributions"
      } (choice or interval), which only a random search samples; add --trials N`,
      { keys: sampled },
    );
  }
  return mode === "zip" ? zip(parsed.axes, base) : grid(parsed.axes, base);
}
