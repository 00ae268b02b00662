/**
 * Configs: what a script run gets on top of the script's own defaults. A script exports its
 * defaults as `params`; a config overrides some of them and adds positional `args`, keyword
 * `kwargs` and `metadata` (recorded with the run). This is KohakuEngine's
 * `Config(globals_dict, args, kwargs, metadata)` in TypeScript.
 *
 * A config file is a module (or JSON) whose default export is a config, a list of them, or a
 * (generator) function of them; without a default export every exported value becomes a param.
 * Web-standard only: files are read with `import()` and `fetch()` of `file:` URLs, both of which
 * the loader lets the host replace.
 * @module
 */

import { editDistance } from "./edit-distance.ts";
import { errorMessage, KeelError } from "./errors.ts";
import { dirname, fromFileUrl, isAbsolutePath, resolvePath, toFileUrl } from "./path.ts";

/** A fully resolved config: what one run gets. */
export interface Config {
  /** Overrides of the script's exported `params`. */
  readonly params: Readonly<Record<string, unknown>>;
  /** Positional arguments; they reach the script as `ctx.args`. */
  readonly args: readonly unknown[];
  /** Keyword arguments; they reach the script as `ctx.kwargs`. */
  readonly kwargs: Readonly<Record<string, unknown>>;
  /** Free-form facts about the run (`ctx.metadata`), recorded with it. */
  readonly metadata: Readonly<Record<string, unknown>>;
}

/** A config as people write it: every field optional, plus `extends`. */
export interface ConfigInput {
  readonly params?: Readonly<Record<string, unknown>>;
  readonly args?: readonly unknown[];
  readonly kwargs?: Readonly<Record<string, unknown>>;
  readonly metadata?: Readonly<Record<string, unknown>>;
  /** Other config files (relative to this one) applied first, in order; this config wins. */
  readonly extends?: string | readonly string[];
}

/** The fields a config may have, for messages and suggestions. */
const CONFIG_FIELDS = ["params", "args", "kwargs", "metadata", "extends"] as const;

/** The default number of configs a source may yield before the loader stops it. */
export const DEFAULT_MAX_RUNS = 10_000;

/**
 * The empty config: no overrides, no args.
 *
 * @example
 * ```ts
 * import { EMPTY_CONFIG } from "./config.ts";
 * console.assert(Object.keys(EMPTY_CONFIG.params).length === 0);
 * ```
 */
export const EMPTY_CONFIG: Config = Object.freeze({
  params: Object.freeze({}),
  args: Object.freeze([]),
  kwargs: Object.freeze({}),
  metadata: Object.freeze({}),
});

/**
 * Identity helper that types a config (and keeps its literal types).
 *
 * @example
 * ```ts
 * import { defineConfig } from "./config.ts";
 * export default defineConfig({ params: { lr: 1e-3 }, metadata: { note: "baseline" } });
 * ```
 */
export function defineConfig<const C extends ConfigInput>(c: C): C {
  return c;
}

/** Quotes `where` unless the caller already did. */
function label(where: string): string {
  return where.includes('"') ? where : `"${where}"`;
}

function quoteList(names: readonly string[]): string {
  return names.map((n) => `"${n}"`).join(", ");
}

/** What a value is, for messages: "an array", "null", "a string", ... */
function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value === undefined) return "undefined";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** A plain object (its prototype is Object.prototype or null, in this realm or another). */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === null || proto === Object.prototype) return true;
  // A module namespace or an object from another realm (a worker's, a vm's).
  const ctor = (proto as { constructor?: { name?: unknown } }).constructor;
  return ctor?.name === "Object";
}

/**
 * The candidate closest to `name` by edit distance (case-insensitive), when it is close enough
 * to be a likely typo; undefined otherwise.
 *
 * @example
 * ```ts
 * import { closestName } from "./config.ts";
 * console.assert(closestName("lrr", ["lr", "batch_size"]) === "lr");
 * console.assert(closestName("epochs", ["lr"]) === undefined);
 * ```
 */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  let best: { k: string; d: number } | undefined;
  for (const k of candidates) {
    const d = editDistance(k.toLowerCase(), lower);
    if (d >= Math.max(k.length, name.length) || d > Math.max(2, Math.floor(k.length / 3))) continue;
    if (best === undefined || d < best.d) best = { k, d };
  }
  return best?.k;
}

function invalid(where: string, field: string, message: string, got?: unknown): KeelError {
  return new KeelError("E_CONFIG_INVALID", `In ${label(where)}, ${message}`, {
    details: { where, field, ...(got === undefined ? {} : { got: kindOf(got) }) },
  });
}

function freezeRecord(value: Readonly<Record<string, unknown>>): Readonly<Record<string, unknown>> {
  return Object.freeze({ ...value });
}

function makeConfig(
  params: Readonly<Record<string, unknown>>,
  args: readonly unknown[],
  kwargs: Readonly<Record<string, unknown>>,
  metadata: Readonly<Record<string, unknown>>,
  extendsList?: readonly string[],
): Config {
  const config: Record<string, unknown> = {
    params: freezeRecord(params),
    args: Object.freeze([...args]),
    kwargs: freezeRecord(kwargs),
    metadata: freezeRecord(metadata),
  };
  if (extendsList !== undefined && extendsList.length > 0) {
    config.extends = Object.freeze([...extendsList]);
  }
  return Object.freeze(config) as unknown as Config;
}

/** The `extends` a config still carries (set by {@link normalizeConfig}; loaders resolve it). */
function pendingExtends(config: Config): readonly string[] {
  const ext = (config as { extends?: unknown }).extends;
  return Array.isArray(ext) ? ext as string[] : [];
}

/**
 * Checks a config as written and returns it resolved, every field present and frozen. An
 * `extends` is checked and kept on the result (as `extends`) for a loader to resolve; the
 * loaders ({@link loadConfigFile}, {@link expandConfigs}) never return one.
 *
 * @example
 * ```ts
 * import { normalizeConfig } from "./config.ts";
 * const c = normalizeConfig({ params: { lr: 0.1 } }, "my config");
 * console.assert(c.params.lr === 0.1 && c.args.length === 0);
 * ```
 * @throws {KeelError} `E_CONFIG_INVALID` naming `where` and the bad field.
 */
export function normalizeConfig(input: unknown, where: string): Config {
  if (!isPlainObject(input)) {
    throw new KeelError(
      "E_CONFIG_INVALID",
      `Config ${label(where)} is ${
        kindOf(input)
      }, not a config; write an object such as { params: { lr: 0.01 } }`,
      { details: { where, got: kindOf(input) } },
    );
  }
  for (const key of Object.keys(input)) {
    if ((CONFIG_FIELDS as readonly string[]).includes(key)) continue;
    const near = key === "globals" ? "params" : closestName(key, CONFIG_FIELDS);
    throw invalid(
      where,
      key,
      `"${key}" is not a config field` + (near ? ` (did you mean "${near}"?)` : "") +
        ` (a config has ${
          quoteList(CONFIG_FIELDS)
        }); put script params under "params", as in { params: { ${key}: ... } }`,
    );
  }
  const record = (field: "params" | "kwargs" | "metadata"): Readonly<Record<string, unknown>> => {
    const value = input[field];
    if (value === undefined) return {};
    if (!isPlainObject(value)) {
      throw invalid(
        where,
        field,
        `"${field}" must be an object of names to values, got ${
          kindOf(value)
        }; write it as { ${field}: { name: value } }`,
        value,
      );
    }
    return value;
  };
  const params = record("params");
  const kwargs = record("kwargs");
  const metadata = record("metadata");
  const args = input.args;
  if (args !== undefined && !Array.isArray(args)) {
    throw invalid(
      where,
      "args",
      `"args" must be a list, got ${kindOf(args)}; write it as { args: [first, second] }`,
      args,
    );
  }
  const ext = input.extends;
  let extendsList: string[] = [];
  if (ext !== undefined) {
    const list = typeof ext === "string" ? [ext] : ext;
    if (!Array.isArray(list) || list.some((e) => typeof e !== "string" || e === "")) {
      throw invalid(
        where,
        "extends",
        `"extends" must be a file path or a list of them, got ${
          kindOf(ext)
        }; write it as { extends: "./base.ts" }`,
        ext,
      );
    }
    extendsList = list as string[];
  }
  return makeConfig(params, (args ?? []) as unknown[], kwargs, metadata, extendsList);
}

/**
 * Puts `over` on top of `base`: params, kwargs and metadata are merged key by key (`over`
 * wins); args are replaced when `over` has any.
 *
 * @example
 * ```ts
 * import { mergeConfigs, normalizeConfig } from "./config.ts";
 * const base = normalizeConfig({ params: { lr: 0.1, bs: 32 }, args: [1] }, "base");
 * const m = mergeConfigs(base, normalizeConfig({ params: { lr: 0.01 } }, "over"));
 * console.assert(m.params.lr === 0.01 && m.params.bs === 32 && m.args[0] === 1);
 * ```
 */
export function mergeConfigs(base: Config, over: Config): Config {
  return makeConfig(
    { ...base.params, ...over.params },
    over.args.length > 0 ? over.args : base.args,
    { ...base.kwargs, ...over.kwargs },
    { ...base.metadata, ...over.metadata },
  );
}

// ---------------------------------------------------------------------------------------------
// Loading config files and expanding sources

/** How {@link loadConfigFile} and {@link expandConfigs} load and how far they go. */
export interface LoadConfigOptions {
  /**
   * The most configs a source may yield; one more stops it with `E_CONFIG_TOO_MANY` (an
   * infinite generator needs this). Default {@link DEFAULT_MAX_RUNS}.
   */
  readonly maxRuns?: number;
  /** Imports a module by `file:` URL; default `import(url)`. A host may import fresh instances. */
  readonly importModule?: (url: string) => Promise<Record<string, unknown>>;
  /** Reads a `.json` config by `file:` URL; default `fetch(url)`. */
  readonly readText?: (url: string) => Promise<string>;
}

/** Options for {@link expandConfigs}. */
export interface ExpandConfigsOptions extends LoadConfigOptions {
  /** Names the source in errors; default "the config source". */
  readonly where?: string;
  /** The file the source was written in: relative `extends` resolve against it. */
  readonly file?: string;
}

interface LoadContext {
  readonly maxRuns: number;
  readonly importModule: (url: string) => Promise<Record<string, unknown>>;
  readonly readText: (url: string) => Promise<string>;
  /** Resolved base files, by absolute path, so a sweep extending one base loads it once. */
  readonly bases: Map<string, Promise<Config>>;
  /** Where paths in messages are shown relative to. */
  readonly root: string;
}

const MODULE_EXTENSIONS = [".ts", ".mts", ".js", ".mjs", ".tsx", ".jsx"];

async function defaultReadText(url: string): Promise<string> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`Reading "${url}" failed with status ${response.status}`);
  return await response.text();
}

function contextFor(options: LoadConfigOptions, root: string): LoadContext {
  const maxRuns = options.maxRuns ?? DEFAULT_MAX_RUNS;
  if (!Number.isInteger(maxRuns) || maxRuns < 1) {
    throw new RangeError(`maxRuns must be a positive integer, got ${String(options.maxRuns)}`);
  }
  return {
    maxRuns,
    importModule: options.importModule ??
      ((url: string) => import(url) as Promise<Record<string, unknown>>),
    readText: options.readText ?? defaultReadText,
    bases: new Map(),
    root,
  };
}

/** An absolute path from a path or `file:` URL. */
function toPath(file: string): string {
  if (file.startsWith("file:")) return fromFileUrl(file);
  if (!isAbsolutePath(file)) {
    throw new TypeError(
      `Config file "${file}" must be an absolute path or a file: URL; resolve it first`,
    );
  }
  return resolvePath(file, "/");
}

/** A path for messages: relative to the first file's folder when under it. */
function shown(path: string, ctx: LoadContext): string {
  return path.startsWith(ctx.root + "/") ? path.slice(ctx.root.length + 1) : path;
}

/** The message of any thrown value (Bun's module errors are not Error instances). */
function messageOf(e: unknown): string {
  const m = (e as { message?: unknown } | null)?.message;
  return typeof m === "string" ? m : errorMessage(e);
}

/** A KeelError from user code keeps its code, with where it happened added. */
function located(e: KeelError, where: string): KeelError {
  return new KeelError(e.code, `${e.message} (in ${label(where)})`, {
    cause: e,
    details: { ...e.details, where },
  });
}

function loadFailed(where: string, e: unknown, what: string): KeelError {
  if (KeelError.is(e)) return located(e, where);
  return new KeelError("E_CONFIG_LOAD_FAILED", `Config ${label(where)} ${what}: ${messageOf(e)}`, {
    cause: e,
    details: { where },
  });
}

/** The source a loaded file defines: its default export, `config_gen`, or its exported values. */
async function fileSource(path: string, ctx: LoadContext, by?: string): Promise<unknown> {
  const name = shown(path, ctx);
  const named = by === undefined ? `"${name}"` : `"${name}" (extended by ${label(by)})`;
  const url = toFileUrl(path);
  const lower = path.toLowerCase();
  if (lower.endsWith(".json")) {
    let text: string;
    try {
      text = await ctx.readText(url);
    } catch (e) {
      throw new KeelError(
        "E_CONFIG_LOAD_FAILED",
        `Config file ${named} could not be read: ${messageOf(e)}; check the path`,
        { cause: e, details: { file: path } },
      );
    }
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new KeelError(
        "E_CONFIG_LOAD_FAILED",
        `Config file ${named} is not valid JSON: ${messageOf(e)}`,
        { cause: e, details: { file: path } },
      );
    }
  }
  if (!MODULE_EXTENSIONS.some((ext) => lower.endsWith(ext))) {
    throw new KeelError(
      "E_CONFIG_LOAD_FAILED",
      `Config file ${named} has a type Keel cannot load; write it as .ts, .js, .mjs or .json`,
      { details: { file: path } },
    );
  }
  let mod: Record<string, unknown>;
  try {
    mod = await ctx.importModule(url);
  } catch (e) {
    if (KeelError.is(e)) throw located(e, name);
    const first = messageOf(e).split("\n")[0] ?? "";
    const missing = /module not found|cannot find module/i.test(first) &&
      (first.includes(url) || first.includes(path));
    throw new KeelError(
      "E_CONFIG_LOAD_FAILED",
      missing
        ? `Config file ${named} does not exist (looked for "${path}"); check the path`
        : `Config file ${named} could not be loaded: ${messageOf(e)}`,
      { cause: e, details: { file: path } },
    );
  }
  if (Object.hasOwn(mod, "default")) return mod.default;
  // KohakuEngine's name for a generator of configs.
  for (const gen of ["config_gen", "configGen"]) {
    if (typeof mod[gen] === "function") return mod[gen];
  }
  const params: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(mod)) {
    if (typeof value !== "function") params[key] = value;
  }
  if (Object.keys(params).length === 0) {
    throw new KeelError(
      "E_CONFIG_EMPTY",
      `Config file ${named} exports no config; export default a config (or a list, or a generator), or export the param values themselves`,
      { details: { file: path } },
    );
  }
  return { params };
}

function isIterable(value: unknown): value is Iterable<unknown> | AsyncIterable<unknown> {
  return typeof value === "object" && value !== null &&
    (Symbol.iterator in value || Symbol.asyncIterator in value);
}

/** Turns a source into an async iterator of raw items, and says whether it was a single item. */
async function openSource(
  source: unknown,
  where: string,
): Promise<{ iterator: AsyncIterator<unknown> | Iterator<unknown>; single: boolean }> {
  let value = source;
  try {
    if (typeof value === "function") value = (value as () => unknown)();
    if (typeof (value as { then?: unknown } | null)?.then === "function") value = await value;
  } catch (e) {
    throw loadFailed(where, e, "threw");
  }
  if (isIterable(value)) {
    const asyncIt = (value as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
    const iterator = asyncIt !== undefined
      ? asyncIt.call(value)
      : (value as Iterable<unknown>)[Symbol.iterator]();
    return { iterator, single: false };
  }
  if (typeof value === "function") {
    throw new KeelError(
      "E_CONFIG_INVALID",
      `Config ${
        label(where)
      } returned a function, not a config; return a config, a list of them, or yield them`,
      { details: { where } },
    );
  }
  return { iterator: [value][Symbol.iterator](), single: true };
}

async function* expand(
  source: unknown,
  where: string,
  file: string | undefined,
  chain: readonly string[],
  ctx: LoadContext,
): AsyncGenerator<Config> {
  const { iterator, single } = await openSource(source, where);
  let count = 0;
  let done = false;
  try {
    while (true) {
      let step: IteratorResult<unknown>;
      try {
        step = await iterator.next();
      } catch (e) {
        done = true; // a generator that threw is finished
        throw loadFailed(where, e, `threw after ${count} config${count === 1 ? "" : "s"}`);
      }
      if (step.done === true) {
        done = true;
        break;
      }
      count++;
      if (count > ctx.maxRuns) {
        throw new KeelError(
          "E_CONFIG_TOO_MANY",
          `Config ${
            label(where)
          } yields more than ${ctx.maxRuns} configs; raise the limit (maxRuns, or --max-runs on the command line) or make the generator stop`,
          { details: { where, maxRuns: ctx.maxRuns } },
        );
      }
      const itemWhere = single ? where : `${label(where)} (config ${count})`;
      yield await resolveItem(step.value, itemWhere, file, chain, ctx);
    }
  } finally {
    // Stops a generator we left early (too many configs, a bad item, the consumer stopped).
    if (!done) await Promise.resolve(iterator.return?.()).catch(() => {});
  }
  if (count === 0) {
    throw new KeelError(
      "E_CONFIG_EMPTY",
      `Config ${
        label(where)
      } yields no configs; return or yield at least one config (an empty { } runs the script's defaults)`,
      { details: { where } },
    );
  }
}

async function resolveItem(
  item: unknown,
  where: string,
  file: string | undefined,
  chain: readonly string[],
  ctx: LoadContext,
): Promise<Config> {
  const config = normalizeConfig(item, where);
  const ext = pendingExtends(config);
  if (ext.length === 0) return config;
  let acc: Config = EMPTY_CONFIG;
  for (const target of ext) {
    let path: string;
    if (target.startsWith("file:")) path = fromFileUrl(target);
    else if (isAbsolutePath(target)) path = resolvePath(target, "/");
    else if (file !== undefined) path = resolvePath(target, dirname(file));
    else {
      throw invalid(
        where,
        "extends",
        `"extends" names "${target}", a relative path, but the config has no file to resolve it against; use an absolute path`,
      );
    }
    acc = mergeConfigs(acc, await loadBase(path, where, chain, ctx));
  }
  return mergeConfigs(acc, config);
}

/** Loads a file named by `extends`: it must yield exactly one config. */
function loadBase(
  path: string,
  by: string,
  chain: readonly string[],
  ctx: LoadContext,
): Promise<Config> {
  const at = chain.indexOf(path);
  if (at >= 0) {
    const cycle = [...chain.slice(at), path].map((p) => shown(p, ctx));
    return Promise.reject(
      new KeelError(
        "E_CONFIG_EXTENDS_CYCLE",
        `Config files extend each other in a cycle: ${
          cycle.join(" -> ")
        }; remove one of these "extends"`,
        { details: { cycle: [...chain.slice(at), path] } },
      ),
    );
  }
  let pending = ctx.bases.get(path);
  if (pending === undefined) {
    pending = (async () => {
      const next = [...chain, path];
      const name = shown(path, ctx);
      const found: Config[] = [];
      const configs = expand(await fileSource(path, ctx, by), name, path, next, ctx);
      for await (const config of configs) {
        found.push(config);
        if (found.length > 1) {
          throw new KeelError(
            "E_CONFIG_INVALID",
            `Config file "${name}" is used as a base ("extends") but yields more than one config; a base must be a single config`,
            { details: { file: path } },
          );
        }
      }
      return found[0]!;
    })();
    ctx.bases.set(path, pending);
  }
  return pending;
}

/**
 * Loads a config file (an absolute path or `file:` URL; `.ts`, `.js`, `.mjs` or `.json`) and
 * yields each config it defines, resolved. Its default export may be a config, a list of them,
 * a function returning either or an (async) iterable, or an (async) generator function; with
 * no default export, a `config_gen` function is used, else every exported value that is not a
 * function becomes a param (KohakuEngine's `Config.from_globals()`). `extends` paths resolve
 * against the file and apply base first; the extending config wins.
 *
 * @example
 * ```ts
 * import { loadConfigFile } from "./config.ts";
 * const file = new URL("../tests/fixtures/configs/list.ts", import.meta.url).href;
 * const configs = await Array.fromAsync(loadConfigFile(file));
 * console.assert(configs.length === 3 && configs[0]!.params.lr === 0.1);
 * ```
 * @throws {KeelError} `E_CONFIG_LOAD_FAILED` (cannot be read, or threw), `E_CONFIG_INVALID`,
 *   `E_CONFIG_EMPTY`, `E_CONFIG_TOO_MANY`, `E_CONFIG_EXTENDS_CYCLE`
 */
export async function* loadConfigFile(
  file: string,
  options: LoadConfigOptions = {},
): AsyncGenerator<Config> {
  const path = toPath(file);
  const ctx = contextFor(options, dirname(path));
  const name = shown(path, ctx);
  yield* expand(await fileSource(path, ctx), name, path, [path], ctx);
}

/**
 * Expands a source written in code (a config, a list, an iterable or async iterable, or a
 * function returning one of those) into resolved configs, with the same rules as
 * {@link loadConfigFile}.
 *
 * @example
 * ```ts
 * import { expandConfigs } from "./config.ts";
 * function* configs() {
 *   for (const lr of [0.1, 0.01]) yield { params: { lr } };
 * }
 * const all = await Array.fromAsync(expandConfigs(configs, { where: "configs()" }));
 * console.assert(all.length === 2 && all[1]!.params.lr === 0.01);
 * ```
 * @throws {KeelError} `E_CONFIG_INVALID`, `E_CONFIG_EMPTY`, `E_CONFIG_TOO_MANY`,
 *   `E_CONFIG_LOAD_FAILED` (the source threw), `E_CONFIG_EXTENDS_CYCLE`
 */
export async function* expandConfigs(
  source: unknown,
  options: ExpandConfigsOptions = {},
): AsyncGenerator<Config> {
  const file = options.file === undefined ? undefined : toPath(options.file);
  const ctx = contextFor(options, file === undefined ? "" : dirname(file));
  yield* expand(source, options.where ?? "the config source", file, [], ctx);
}

// ---------------------------------------------------------------------------------------------
// Overrides from the command line, and applying them to a script's defaults

/**
 * Splits `key=value`; the value may hold `=`. Dotted keys are not special.
 *
 * @example
 * ```ts
 * import { parseAssignment } from "./config.ts";
 * const [key, raw] = parseAssignment("query=a=b");
 * console.assert(key === "query" && raw === "a=b");
 * ```
 * @throws {KeelError} `E_CONFIG_INVALID` when there is no `=` or the key is empty.
 */
export function parseAssignment(text: string): readonly [key: string, raw: string] {
  const eq = text.indexOf("=");
  if (eq < 0) {
    throw new KeelError(
      "E_CONFIG_INVALID",
      `"${text}" is not an assignment; write key=value, as in lr=0.01`,
      { details: { text } },
    );
  }
  if (eq === 0) {
    throw new KeelError(
      "E_CONFIG_INVALID",
      `"${text}" has no key before "="; write key=value, as in lr=0.01`,
      { details: { text } },
    );
  }
  return [text.slice(0, eq), text.slice(eq + 1)] as const;
}

/** JSON when `raw` parses as JSON, else the text itself. */
/** Numbers JSON refuses but people write: ".5", "+1", "5.". */
const LOOSE_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** JSON when `raw` parses as JSON (or is a number such as ".5"), else the text itself. */
function jsonOrString(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return LOOSE_NUMBER.test(raw.trim()) ? Number(raw) : raw;
  }
}

function shortJson(value: unknown): string {
  try {
    const text = JSON.stringify(value, (_k, v: unknown) => typeof v === "bigint" ? `${v}` : v);
    if (text === undefined) return String(value);
    return text.length > 40 ? text.slice(0, 37) + "..." : text;
  } catch {
    return String(value);
  }
}

/**
 * Converts a command-line string to the type of `defaultValue`: a finite number, a boolean
 * (true/false, 1/0, yes/no, on/off), a string as it is, a bigint, JSON of the same kind for
 * arrays and objects, and JSON-or-string when the default is null or there is none.
 *
 * @example
 * ```ts
 * import { coerceValue } from "./config.ts";
 * console.assert(coerceValue("lr", "1e-3", 0.1) === 0.001);
 * console.assert(coerceValue("fast", "yes", false) === true);
 * console.assert(coerceValue("tag", "42", undefined) === 42);
 * console.assert(coerceValue("tag", "v1", null) === "v1");
 * ```
 * @throws {KeelError} `E_CONFIG_INVALID` naming the key, the value and the type expected.
 */
export function coerceValue(key: string, raw: string, defaultValue: unknown): unknown {
  const bad = (expected: string, example: string): KeelError =>
    new KeelError(
      "E_CONFIG_INVALID",
      `Param "${key}" expects ${expected} (its default is ${
        shortJson(defaultValue)
      }), got "${raw}"; pass ${example}`,
      { details: { key, value: raw, expected } },
    );
  switch (typeof defaultValue) {
    case "string":
      return raw;
    case "number": {
      const n = raw.trim() === "" ? Number.NaN : Number(raw);
      if (!Number.isFinite(n)) throw bad("a number", `a finite number, as in ${key}=0.5`);
      return n;
    }
    case "boolean": {
      const v = raw.trim().toLowerCase();
      if (v === "true" || v === "1" || v === "yes" || v === "on") return true;
      if (v === "false" || v === "0" || v === "no" || v === "off") return false;
      throw bad("a boolean", `true or false, as in ${key}=true`);
    }
    case "bigint":
      try {
        if (raw.trim() === "") throw new SyntaxError("empty");
        return BigInt(raw.trim());
      } catch {
        throw bad("an integer", `an integer, as in ${key}=42`);
      }
    case "undefined":
      return jsonOrString(raw);
    case "object": {
      if (defaultValue === null) return jsonOrString(raw);
      const wantArray = Array.isArray(defaultValue);
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        parsed = undefined;
      }
      if (
        typeof parsed !== "object" || parsed === null || Array.isArray(parsed) !== wantArray
      ) {
        throw wantArray
          ? bad("a JSON array", `a JSON list, as in ${key}='[1,2]'`)
          : bad("a JSON object", `a JSON object, as in ${key}='{"a":1}'`);
      }
      return parsed;
    }
    default:
      throw new KeelError(
        "E_CONFIG_INVALID",
        `Param "${key}" has a default that is ${
          kindOf(defaultValue)
        }, which cannot be set from text "${raw}"; set it in a config file instead`,
        { details: { key, value: raw, expected: typeof defaultValue } },
      );
  }
}

/** How {@link applyParams} treats overrides. */
export interface ApplyParamsOptions {
  /** A key the defaults lack is an error (`true`, the default) or is kept and reported. */
  readonly strict?: boolean;
  /** String values take their default's type ({@link coerceValue}), as for `--set`. Default false. */
  readonly coerce?: boolean;
  /** The script's name, for messages; default "the script". */
  readonly where?: string;
}

/**
 * A script's params for one run: its defaults with `overrides` on top.
 *
 * @example
 * ```ts
 * import { applyParams } from "./config.ts";
 * const { params, unknown } = applyParams({ lr: 0.1, bs: 32 }, { lr: "0.01", extra: 1 }, {
 *   coerce: true,
 *   strict: false,
 * });
 * console.assert(params.lr === 0.01 && params.bs === 32 && unknown[0] === "extra");
 * ```
 * @throws {KeelError} `E_CONFIG_UNKNOWN_KEY` (strict) for a key the defaults lack, with a
 *   suggestion and the known params; `E_CONFIG_INVALID` for a value that cannot be coerced or
 *   defaults that are not an object.
 */
export function applyParams(
  defaults: Readonly<Record<string, unknown>>,
  overrides: Readonly<Record<string, unknown>>,
  options: ApplyParamsOptions = {},
): { params: Record<string, unknown>; unknown: string[] } {
  const script = options.where ?? "the script";
  if (defaults !== undefined && !isPlainObject(defaults)) {
    throw new KeelError(
      "E_CONFIG_INVALID",
      `Script ${label(script)} exports "params" that is ${
        kindOf(defaults)
      }, not an object; export its defaults as \`export const params = { ... }\``,
      { details: { where: script } },
    );
  }
  const base = defaults ?? {};
  const known = Object.keys(base);
  const params: Record<string, unknown> = { ...base };
  const unknown: string[] = [];
  for (const [key, value] of Object.entries(overrides)) {
    const has = Object.hasOwn(base, key);
    if (!has) {
      if (options.strict ?? true) throw unknownKey(script, key, known);
      unknown.push(key);
    }
    params[key] = options.coerce === true && typeof value === "string"
      ? coerceValue(key, value, has ? base[key] : undefined)
      : value;
  }
  return { params, unknown };
}

function unknownKey(script: string, key: string, known: readonly string[]): KeelError {
  if (known.length === 0) {
    return new KeelError(
      "E_CONFIG_UNKNOWN_KEY",
      `Script ${
        label(script)
      } has no params, so "${key}" cannot be set; export its defaults as \`export const params = { ${key}: ... }\``,
      { details: { key, known } },
    );
  }
  const near = closestName(key, known);
  return new KeelError(
    "E_CONFIG_UNKNOWN_KEY",
    `Script ${label(script)} has no param "${key}"` + (near ? ` (did you mean "${near}"?)` : "") +
      `; its params are ${quoteList(known)}`,
    { details: { key, known, ...(near ? { suggestion: near } : {}) } },
  );
}

/** How one config key relates to a script's params. */
export interface ConfigKeyCheck {
  readonly key: string;
  /** "hit": the script has it; "typo": close to one it has; "new": neither. */
  readonly status: "hit" | "new" | "typo";
  /** The param a "typo" probably meant. */
  readonly suggestion?: string;
}

/**
 * Checks each config key against a script's params (`keel config check`).
 *
 * @example
 * ```ts
 * import { checkConfigKeys } from "./config.ts";
 * const rows = checkConfigKeys({ lr: 0.1, epochs: 3 }, { lr: 0.01, epohcs: 5, seed: 1 });
 * console.assert(rows[0]!.status === "hit");
 * console.assert(rows[1]!.status === "typo" && rows[1]!.suggestion === "epochs");
 * console.assert(rows[2]!.status === "new");
 * ```
 */
export function checkConfigKeys(
  scriptParams: Readonly<Record<string, unknown>>,
  configParams: Readonly<Record<string, unknown>>,
): ConfigKeyCheck[] {
  const known = Object.keys(scriptParams);
  return Object.keys(configParams).map((key) => {
    if (Object.hasOwn(scriptParams, key)) return { key, status: "hit" as const };
    const near = closestName(key, known);
    return near === undefined
      ? { key, status: "new" as const }
      : { key, status: "typo" as const, suggestion: near };
  });
}
