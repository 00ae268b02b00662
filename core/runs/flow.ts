/**
 * The API from code: {@link run} and {@link sweep} for one script, {@link Script} to name a script
 * with its config once, and the flows {@link Sequential} (each step gets the previous step's
 * result as `ctx.previous`) and {@link Parallel} (every step at once, the members of sweeps
 * scheduled fairly in one pool). The names are KohakuEngine's.
 * @module
 */

import { type Config, EMPTY_CONFIG, expandConfigs, normalizeConfig } from "../config.ts";
import { KeelError } from "../errors.ts";
import {
  parseScriptRef,
  type PoolTask,
  runMany,
  type RunManyOptions,
  runPool,
  type RunResult,
  runScript,
  type RunScriptOptions,
} from "./engine.ts";
import { createRunId } from "./ids.ts";

/**
 * Runs `file` once and resolves with what its entrypoint returned.
 *
 * @param file a path (relative to the runtime's cwd), a `file:` URL, optionally `#entrypoint`.
 * @throws {KeelError} the run's error: `E_SCRIPT_NOT_FOUND`, `E_SCRIPT_ENTRYPOINT`,
 *   `E_SCRIPT_FAILED`, `E_SCRIPT_RESULT`, `E_SCRIPT_TIMEOUT`, `E_CONFIG_*`
 * @example
 * ```ts
 * import { run } from "../../mod.ts";
 * const file = new URL("../../tests/fixtures/scripts/square.ts", import.meta.url).href;
 * const value = await run(file, { config: { params: { x: 4 } } });
 * if (value !== 16) throw new Error("unreachable");
 * ```
 */
export async function run(file: string, options: RunScriptOptions = {}): Promise<unknown> {
  const result = await runScript(file, options);
  if (!result.ok) throw result.error;
  return result.value;
}

/** Options for {@link sweep}. */
export interface SweepOptions extends RunManyOptions {
  /** The most configs the source may yield (an infinite generator needs this); default 10 000. */
  readonly maxRuns?: number | undefined;
}

/**
 * Runs `file` once per config of `source` (a list, `grid(...)`, an iterable, an async generator,
 * or a function returning one) and resolves with the results in the source's order.
 *
 * @throws {KeelError} `E_CONFIG_EMPTY`, `E_CONFIG_TOO_MANY`, `E_CONFIG_INVALID`,
 *   `E_SCRIPT_NOT_FOUND`; a failed run is a result with `ok: false`.
 * @example
 * ```ts
 * import { grid, sweep } from "../../mod.ts";
 * const file = new URL("../../tests/fixtures/scripts/square.ts", import.meta.url).href;
 * const results = await sweep(file, grid({ x: [1, 2, 3] }));
 * if (results.map((r) => r.ok && r.value).join() !== "1,4,9") throw new Error("unreachable");
 * ```
 */
export async function sweep(
  file: string,
  source: unknown,
  options: SweepOptions = {},
): Promise<RunResult[]> {
  const configs = await Array.fromAsync(
    expandConfigs(source, {
      where: "the sweep",
      ...(options.maxRuns === undefined ? {} : { maxRuns: options.maxRuns }),
    }),
  );
  return await runMany(file, configs, options);
}

/** Options for a {@link Script}: run options plus its config (one) or configs (a sweep). */
export interface ScriptOptions extends RunManyOptions {
  /** The config of a single run. */
  readonly config?: unknown;
  /** Configs of a sweep: the script runs once per config, and a flow passes on the list. */
  readonly configs?: readonly unknown[] | undefined;
}

/**
 * A script with its config (or configs), to run now or as a step of a flow.
 *
 * @example
 * ```ts
 * import { Script } from "../../mod.ts";
 * const square = new Script(new URL("../../tests/fixtures/scripts/square.ts", import.meta.url).href, {
 *   config: { params: { x: 7 } },
 * });
 * if ((await square.run()) !== 49) throw new Error("unreachable");
 * ```
 */
export class Script {
  /** The script as given (a path or `file:` URL, maybe with `#entrypoint`). */
  readonly file: string;
  readonly options: ScriptOptions;

  constructor(file: string, options: ScriptOptions = {}) {
    if (typeof file !== "string" || file === "") {
      throw new TypeError("Script takes a path or file: URL");
    }
    if (options.config !== undefined && options.configs !== undefined) {
      throw new TypeError('A Script takes "config" (one run) or "configs" (a sweep), not both');
    }
    this.file = file;
    this.options = options;
  }

  /**
   * Runs the script once and resolves with its value; `options` override the script's.
   * @throws {KeelError} the run's error, as {@link run} does.
   */
  run(options: RunScriptOptions = {}): Promise<unknown> {
    const { configs: _configs, ...own } = this.options;
    return run(this.file, { ...own, ...options });
  }

  /** Runs the script once per config of `source` (default: its own `configs`). */
  sweep(source?: unknown, options: SweepOptions = {}): Promise<RunResult[]> {
    const { config: _config, configs, ...own } = this.options;
    const from = source ?? configs;
    if (from === undefined) {
      throw new TypeError(
        "Script.sweep() needs configs: pass a source, or create the Script with { configs }",
      );
    }
    return sweep(this.file, from, { ...own, ...options });
  }
}

/** A step of a flow: a {@link Script}, a path (`file.ts` or `file.ts#entry`), or a step object. */
export type FlowStep =
  | Script
  | string
  | {
    readonly file: string;
    readonly entrypoint?: string;
    /** One config: the step runs once and passes on its value. */
    readonly config?: unknown;
    /** Several configs: the step runs once per config and passes on the list of values. */
    readonly configs?: readonly unknown[];
  };

/** How one step of a flow went. */
export interface StepResult {
  readonly index: number;
  /** Absolute path of the step's script. */
  readonly file: string;
  /** "skipped": an earlier step of a sequential flow failed (or the flow was cancelled). */
  readonly status: "ok" | "failed" | "skipped";
  /** One per config, in order. */
  readonly results: readonly RunResult[];
  /** The value (one config) or the list of values (a sweep); undefined unless ok. */
  readonly value: unknown;
}

/** How a flow went: ok when every step was. */
export interface FlowResult {
  readonly ok: boolean;
  readonly steps: readonly StepResult[];
}

/** Options of a flow: every run option, applied to each step. */
export type FlowOptions = RunManyOptions;

interface PlannedStep {
  readonly file: string;
  readonly entrypoint: string | undefined;
  readonly configs: readonly Config[];
  /** Whether the step passes on a list (it was given `configs`). */
  readonly many: boolean;
}

function planStep(step: FlowStep, index: number, options: FlowOptions): PlannedStep {
  const where = (what: string): string => `step ${index + 1}${what}`;
  let file: string;
  let entrypoint: string | undefined;
  let config: unknown;
  let configs: readonly unknown[] | undefined;
  if (typeof step === "string") file = step;
  else if (step instanceof Script) {
    file = step.file;
    entrypoint = step.options.entrypoint;
    config = step.options.config;
    configs = step.options.configs;
  } else if (typeof step === "object" && step !== null && typeof step.file === "string") {
    file = step.file;
    entrypoint = step.entrypoint;
    config = step.config;
    configs = step.configs;
  } else {
    throw new TypeError(
      `Flow ${where("")} must be a Script, a path, or { file, config?, configs? }`,
    );
  }
  const ref = parseScriptRef(file, options.runtime);
  entrypoint ??= ref.entrypoint ?? options.entrypoint;
  if (configs !== undefined) {
    if (!Array.isArray(configs) || configs.length === 0) {
      throw new KeelError(
        "E_CONFIG_EMPTY",
        `Flow ${where("")} ("${file}") has an empty list of configs; give at least one`,
      );
    }
    return {
      file: ref.file,
      entrypoint,
      configs: configs.map((c, i) => normalizeConfig(c, where(`, config ${i + 1}`))),
      many: true,
    };
  }
  return {
    file: ref.file,
    entrypoint,
    configs: [config === undefined ? EMPTY_CONFIG : normalizeConfig(config, where(""))],
    many: false,
  };
}

function stepResult(plan: PlannedStep, index: number, results: readonly RunResult[]): StepResult {
  const ok = results.every((r) => r.ok);
  const values = results.map((r) => (r.ok ? r.value : undefined));
  return {
    index,
    file: plan.file,
    status: ok ? "ok" : "failed",
    results,
    value: ok ? (plan.many ? values : values[0]) : undefined,
  };
}

async function checkFiles(plans: readonly PlannedStep[], options: FlowOptions): Promise<void> {
  const fs = options.runtime?.fs;
  if (!fs) return;
  for (const plan of plans) {
    if (await fs.exists(plan.file)) continue;
    throw new KeelError(
      "E_SCRIPT_NOT_FOUND",
      `Script "${plan.file}" (a step of the flow) does not exist; check the path`,
      { details: { file: plan.file } },
    );
  }
}

/** What Sequential and Parallel share: the steps, the options, and planning them. */
export abstract class Flow {
  readonly steps: readonly FlowStep[];
  readonly options: FlowOptions;

  constructor(steps: readonly FlowStep[], options: FlowOptions = {}) {
    if (!Array.isArray(steps) || steps.length === 0) {
      throw new TypeError("A flow needs at least one step");
    }
    this.steps = steps;
    this.options = options;
  }

  /** Each step's file and configs, resolved; every file is checked before anything runs. */
  protected async plan(): Promise<PlannedStep[]> {
    const plans = this.steps.map((s, i) => planStep(s, i, this.options));
    await checkFiles(plans, this.options);
    return plans;
  }

  /** Runs the flow; failures are reported in the result, not thrown. */
  abstract run(): Promise<FlowResult>;
}


/**
 * Runs steps one after another; each step's script sees the previous step's value as
 * `ctx.previous` (the list of values when that step had `configs`). The first step that fails
 * stops the flow: the steps after it are "skipped".
 *
 * @example
 * ```ts
 * import { Sequential } from "../../mod.ts";
 * const here = (name: string) => new URL(`../../tests/fixtures/scripts/${name}`, import.meta.url).href;
 * const flow = new Sequential([
 *   { file: here("square.ts"), config: { params: { x: 3 } } },
 *   here("previous.ts"),
 * ]);
 * const result = await flow.run();
 * if (!result.ok || (result.steps[1]!.value as { previous: unknown }).previous !== 9) throw new Error("unreachable");
 * ```
 */
export class Sequential extends Flow {

  /** Runs the flow; a failed step is reported in the result, not thrown. */
  async run(): Promise<FlowResult> {
    const options = this.options;
    const plans = await this.plan();
    const group = createRunId();
    const out: StepResult[] = [];
    let previous: unknown = options.previous;
    let failed = false;
    for (const [index, plan] of plans.entries()) {
      if (failed || options.signal?.aborted) {
        out.push({ index, file: plan.file, status: "skipped", results: [], value: undefined });
        continue;
      }
      const tasks: PoolTask[] = plan.configs.map((config) => ({
        file: plan.file,
        config,
        entrypoint: plan.entrypoint,
        previous,
      }));
      const results = await runPool(tasks, { ...options, group });
      const step = stepResult(plan, index, results);
      out.push(step);
      if (step.status !== "ok") failed = true;
      previous = step.value;
    }
    return { ok: !failed && out.every((s) => s.status === "ok"), steps: out };
  }
}

/**
 * Runs every step at once: the members of all steps go into one pool of `parallel` slots, taken
 * in turn from each step (round robin), so a one-config step never waits behind a twenty-config
 * sweep of another step. Steps do not see each other's results.
 *
 * @example
 * ```ts
 * import { Parallel } from "../../mod.ts";
 * const square = new URL("../../tests/fixtures/scripts/square.ts", import.meta.url).href;
 * const flow = new Parallel([
 *   { file: square, configs: [{ params: { x: 1 } }, { params: { x: 2 } }] },
 *   { file: square, config: { params: { x: 10 } } },
 * ], { parallel: 2 });
 * const result = await flow.run();
 * if (JSON.stringify(result.steps.map((s) => s.value)) !== "[[1,4],100]") throw new Error("unreachable");
 * ```
 */
export class Parallel extends Flow {

  /** Runs the flow; failed runs are reported in the result, not thrown. */
  async run(): Promise<FlowResult> {
    const options = this.options;
    const plans = await this.plan();
    // Round robin: step 0's first config, step 1's first, ..., then every step's second, ...
    const order: { step: number; member: number }[] = [];
    const longest = Math.max(...plans.map((p) => p.configs.length));
    for (let member = 0; member < longest; member++) {
      for (const [step, plan] of plans.entries()) {
        if (member < plan.configs.length) order.push({ step, member });
      }
    }
    const tasks: PoolTask[] = order.map(({ step, member }) => ({
      file: plans[step]!.file,
      config: plans[step]!.configs[member]!,
      entrypoint: plans[step]!.entrypoint,
      previous: options.previous,
    }));
    const results = await runPool(tasks, {
      ...options,
      parallel: options.parallel ?? plans.length,
      group: createRunId(),
    });
    const perStep: RunResult[][] = plans.map((p) => new Array(p.configs.length));
    order.forEach(({ step, member }, i) => {
      perStep[step]![member] = results[i]!;
    });
    const steps = plans.map((plan, i) => stepResult(plan, i, perStep[i]!));
    return { ok: steps.every((s) => s.status === "ok"), steps };
  }
}
