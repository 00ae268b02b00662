/**
 * `keel run SCRIPT`: one run, or a sweep of runs, of a TypeScript/JavaScript module (or a `.py`
 * file), through the run engine of `core/runs`. Every run is recorded under `.keel/runs/<id>/`
 * of the working directory unless `--no-record`.
 *
 * Configs, lowest precedence first: the script's own `params` defaults, then each config of
 * `--config FILE` (a config, a list, or a generator), then `--sweep` axes (a grid, `--zip`, or a
 * random search with `--trials`), then `--set key=value`. One config prints the result as
 * before; several are a sweep: a progress line on stderr, a table on stdout (or JSON lines with
 * `--json`), and exit 1 when any run failed, after all of them ended.
 *
 * `.py` scripts run through the `python/v1` executor (`plugins/executor-python`), loaded here
 * only for them, with `run:python3` granted: the script is the user's own code, full trust.
 * @module
 */

import type { ArgsDef } from "citty";
import {
  type Config,
  DEFAULT_MAX_RUNS,
  EMPTY_CONFIG,
  loadConfigFile,
  mergeConfigs,
  normalizeConfig,
} from "../../core/config.ts";
import { KeelError } from "../../core/errors.ts";
import type { Executor } from "../../core/executor.ts";
import type { LogFields, Logger } from "../../core/logger.ts";
import { basename } from "../../core/path.ts";
import type { Runtime } from "../../core/runtime.ts";
// The engine's own files, not core/runs/mod.ts: `keel run` loads no more than it uses.
import {
  type OutputEvent,
  parseScriptRef,
  type RunHooks,
  runMany,
  type RunManyOptions,
  type RunResult,
  type ScriptRunner,
  type SweepProgress,
} from "../../core/runs/engine.ts";
import { createRunStore, type IsolateMode } from "../../core/runs/records.ts";
import { resolveParams } from "../../core/runs/script.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { COMMON_ARGS } from "./args.ts";
import { allValues, integerFlag, lastValue, parseAssignment } from "../flags.ts";

type CommonModule = typeof import("./common.ts");
type SweepModule = typeof import("../../core/sweep.ts");
type PythonModule = typeof import("../../plugins/executor-python/mod.ts");

/** Help for the flags `keel run` shares with `keel flow`. */
export const RUN_SHARED_ARGS = {
  strict: {
    type: "boolean",
    description: "Refuse every override the script's params lack (default: only likely typos)",
  },
  "max-runs": {
    type: "string",
    valueHint: "n",
    description:
      `Stop a config generator, or refuse a sweep, past this many runs (default ${DEFAULT_MAX_RUNS})`,
  },
  parallel: { type: "string", valueHint: "n", description: "Run n at a time (default 1)" },
  isolate: {
    type: "string",
    valueHint: "mode",
    description:
      'Where runs happen: "none" (this process), "worker" (Web Workers; the default with --parallel), "process" (a fresh deno process each)',
  },
  "dry-run": { type: "boolean", description: "Print the resolved configs and run nothing" },
  "no-record": { type: "boolean", description: "Do not record runs under .keel/runs/" },
} as const satisfies ArgsDef;

const COMMON_HELP = {
  ...COMMON_ARGS,
  plugin: {
    ...COMMON_ARGS.plugin,
    description:
      "Load a local plugin (module or package dir); runs isolated unless trusted. Its beforeRun/afterRun hooks run around each run. Repeatable",
  },
} as const satisfies ArgsDef;

const RUN_ARGS = {
  script: {
    type: "positional",
    description: "The script to run: a .ts/.js module (SCRIPT#name picks the export) or a .py file",
    required: true,
  },
  set: {
    type: "string",
    valueHint: "key=value",
    description:
      "Override one of the script's params; the value takes the default's type. Repeatable",
  },
  config: {
    type: "string",
    valueHint: "file",
    description: "A config file: a config, a list, or a generator of them (.ts, .js, .json)",
  },
  sweep: {
    type: "string",
    valueHint: "key=spec",
    description:
      "Sweep a param: 1,2,3 | range(a,b,step) | choice(a,b) | interval(lo,hi[,log|int]). Repeatable",
  },
  zip: { type: "boolean", description: "Zip the --sweep lists side by side instead of a grid" },
  trials: {
    type: "string",
    valueHint: "n",
    description: "Random search: n samples of the --sweep space",
  },
  seed: { type: "string", valueHint: "s", description: "The random search's seed (with --trials)" },
  entrypoint: {
    type: "string",
    valueHint: "name",
    description: "The export to call (default: default export, main, run)",
  },
  json: {
    type: "boolean",
    description:
      "One run: { ok, result, runId, durationMs }; a sweep: a JSON line per run, then a summary",
  },
  ...RUN_SHARED_ARGS,
  ...COMMON_HELP,
} as const satisfies ArgsDef;

/** The result `--json` prints for one run. */
export interface RunReport {
  readonly ok: true;
  readonly runId: string;
  readonly script: string;
  readonly result: unknown;
  readonly durationMs: number;
}

/** How {@link toJsonText} writes. */
export interface JsonTextOptions {
  /** Spaces per level; default none (one line). */
  readonly indent?: number;
  /** Renders a value JSON cannot hold (a cycle); default `String(value)`. */
  readonly inspect?: (value: unknown) => string;
}

/** JSON text for any value: bigints become strings; a value JSON cannot hold (a cycle) is inspected. */
export function toJsonText(value: unknown, options: JsonTextOptions = {}): string {
  try {
    return JSON.stringify(
      value,
      (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v),
      options.indent,
    ) ?? "null";
  } catch {
    return JSON.stringify((options.inspect ?? String)(value));
  }
}

/** Renders a script's result for a terminal: strings as they are, anything else as JSON. */
export function formatResult(value: unknown, inspect?: (value: unknown) => string): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  return toJsonText(value, inspect === undefined ? { indent: 2 } : { indent: 2, inspect });
}

/** `1.2 s`, `340 ms`, `2:05`. */
export function formatDuration(ms: number): string {
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** A config's overrides as `key=value` words (values as compact JSON, long ones cut). */
export function formatOverrides(config: Config): string {
  const words = Object.entries(config.params).map(([k, v]) => {
    let text = typeof v === "string" && /^[\w.\-/:]*$/.test(v) ? v : toJsonText(v);
    if (text.length > 30) text = text.slice(0, 27) + "...";
    return `${k}=${text}`;
  });
  if (config.args.length) words.push(`args=${toJsonText(config.args)}`);
  return words.length ? words.join(" ") : "(defaults)";
}

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

function load<T>(path: string): Promise<T> {
  return import(new URL(path, import.meta.url).href) as Promise<T>;
}

/** `--isolate`, checked. */
export function isolateFlag(env: CliEnv): IsolateMode | undefined {
  const raw = lastValue(env.flags, "isolate");
  if (raw === undefined) return undefined;
  if (raw === "none" || raw === "worker" || raw === "process") return raw;
  throw usage(`--isolate takes none, worker or process, got "${raw}"`);
}

/** The maximum number of runs (`--max-runs`, default {@link DEFAULT_MAX_RUNS}). */
export function maxRunsFlag(env: CliEnv): number {
  return integerFlag(env.flags, "max-runs") ?? DEFAULT_MAX_RUNS;
}

/**
 * Every config a config file defines, resolved (extends, generators), up to `maxRuns`.
 *
 * @throws {KeelError} `E_CONFIG_LOAD_FAILED` (missing, or it threw), `E_CONFIG_EMPTY`,
 *   `E_CONFIG_TOO_MANY`, `E_CONFIG_INVALID`, `E_CONFIG_EXTENDS_CYCLE`
 */
export async function loadConfigs(
  runtime: Runtime,
  given: string,
  maxRuns: number,
): Promise<Config[]> {
  const path = runtime.resolvePath(given);
  if (runtime.fs && !(await runtime.fs.exists(path))) {
    throw new KeelError(
      "E_CONFIG_LOAD_FAILED",
      `Config file "${given}" does not exist (looked for "${path}"); check the path`,
      { details: { file: path } },
    );
  }
  return await Array.fromAsync(loadConfigFile(path, { maxRuns }));
}

/** The configs `keel run` asks for: config file x sweep, with `--set` on top of each. */
async function buildConfigs(
  env: CliEnv,
  maxRuns: number,
): Promise<{ configs: Config[]; sweep: boolean }> {
  const { flags, runtime } = env;
  const configFile = lastValue(flags, "config");
  let configs = configFile === undefined
    ? [EMPTY_CONFIG]
    : await loadConfigs(runtime, configFile, maxRuns);
  const sweeps = allValues(flags, "sweep");
  const trials = integerFlag(flags, "trials");
  const seedText = lastValue(flags, "seed");
  const zip = flags.booleans.has("zip");
  if (seedText !== undefined && trials === undefined) {
    throw usage("--seed sets the random search of --trials; add --trials N");
  }
  if (zip && sweeps.length === 0) {
    throw usage("--zip zips --sweep lists; add --sweep key=a,b --sweep other=c,d");
  }
  const seed = seedText === undefined ? undefined : Number(seedText);
  if (seed !== undefined && !Number.isSafeInteger(seed)) {
    throw usage(`--seed takes a whole number, got "${seedText}"`);
  }
  const sweep = sweeps.length > 0 || trials !== undefined;
  if (sweep) {
    const { parseSweepFlags, sweepConfigs } = await load<SweepModule>("../../core/sweep.ts");
    const parsed = parseSweepFlags(sweeps);
    const options = {
      ...(zip ? { mode: "zip" as const } : {}),
      ...(trials === undefined ? {} : { trials }),
      ...(seed === undefined ? {} : { seed }),
    };
    configs = configs.flatMap((base) => sweepConfigs(parsed, options, base));
  }
  const sets: Record<string, string> = {};
  for (const assignment of allValues(flags, "set")) {
    const [key, value] = parseAssignment(assignment, "set");
    sets[key] = value;
  }
  if (Object.keys(sets).length > 0) {
    const over = normalizeConfig({ params: sets }, "--set");
    configs = configs.map((c) => mergeConfigs(c, over));
  }
  if (configs.length > maxRuns) {
    throw new KeelError(
      "E_CONFIG_TOO_MANY",
      `This asks for ${configs.length} runs, more than --max-runs ${maxRuns}; raise --max-runs or sweep fewer values`,
      { details: { runs: configs.length, maxRuns } },
    );
  }
  return { configs, sweep: sweep || configs.length > 1 };
}

// ---------------------------------------------------------------------------------------------
// Python

/**
 * A runner for `.py` scripts over a `python/v1` executor: params resolved against the script's
 * literal defaults (`python/describe`), the overrides passed as globals (`python/run`), and the
 * script's printed lines (logged by the executor with a `stream` field) captured as its output.
 */
export function createPythonRunner(
  executor: Executor,
  lines: Map<string, (stream: "stdout" | "stderr", text: string) => void>,
): ScriptRunner {
  const defaults = new Map<string, Promise<Record<string, unknown>>>();
  return {
    protocol: "python/v1",
    isolate: "process",
    async run(call, io) {
      let described = defaults.get(call.file);
      if (described === undefined) {
        described = executor.execute({
          method: "python/describe",
          params: { file: call.file },
        }) as Promise<Record<string, unknown>>;
        defaults.set(call.file, described);
      }
      const { params, unknown } = resolveParams(await described, call.config.params, {
        strict: call.strict,
        coerce: call.coerce,
        script: basename(call.file),
      });
      if (unknown.length) {
        io.logger.warn(
          `Script "${basename(call.file)}" has no literal default for ${
            unknown.map((k) => `"${k}"`).join(", ")
          }; set as new globals`,
        );
      }
      const resolved = { entrypoint: call.entrypoint ?? "main", params, unknown };
      await io.resolved(resolved);
      const globals = Object.fromEntries(
        Object.keys(call.config.params).map((k) => [k, params[k]]),
      );
      lines.set(call.runId, (stream, text) => io.output(stream, text));
      try {
        const value = await executor.execute({
          method: "python/run",
          params: {
            file: call.file,
            globals,
            args: call.config.args,
            kwargs: call.config.kwargs,
            runId: call.runId,
            ...(call.entrypoint === undefined ? {} : { entrypoint: call.entrypoint }),
            ...(call.timeoutMs === undefined ? {} : { timeout: call.timeoutMs / 1000 }),
          },
          signal: io.signal,
        });
        return { value, resolved };
      } finally {
        lines.delete(call.runId);
      }
    },
  };
}

/** The `python/v1` executor: from the kernel when a plugin provides it, else executor-python. */
async function pythonRunner(
  env: CliEnv,
  kernelExecutor: Executor | undefined,
): Promise<ScriptRunner> {
  const lines = new Map<string, (stream: "stdout" | "stderr", text: string) => void>();
  if (kernelExecutor) return createPythonRunner(kernelExecutor, lines);
  const processes = env.runtime.processes;
  if (!processes) {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      "Running .py scripts needs a runtime with processes (Deno or Bun)",
    );
  }
  const { createPythonExecutor } = await load<PythonModule>("../../plugins/executor-python/mod.ts");
  // The script's printed lines arrive as log lines tagged with its run id.
  const route =
    (level: "debug" | "info" | "warn" | "error") => (message: string, fields?: LogFields): void => {
      const stream = fields?.stream;
      const sink = typeof fields?.run === "string" ? lines.get(fields.run) : undefined;
      if (sink && (stream === "stdout" || stream === "stderr")) sink(stream, message + "\n");
      else env.logger[level](message, fields);
    };
  const logger: Logger = {
    debug: route("debug"),
    info: route("info"),
    warn: route("warn"),
    error: route("error"),
  };
  logger.child = (fields) => {
    const child: Logger = {
      debug: (m, f) => logger.debug(m, { ...fields, ...f }),
      info: (m, f) => logger.info(m, { ...fields, ...f }),
      warn: (m, f) => logger.warn(m, { ...fields, ...f }),
      error: (m, f) => logger.error(m, { ...fields, ...f }),
    };
    return child;
  };
  // The user's own script: `run:python3` is granted here, full trust, as for any script.
  return createPythonRunner(
    createPythonExecutor({
      spawn: (command, options) => processes.spawn(command, options),
      logger,
    }),
    lines,
  );
}

// ---------------------------------------------------------------------------------------------
// Progress and reports

/** What a sweep prints while it runs; `finish` ends the in-place line. */
export interface SweepReporter {
  readonly onProgress: (p: SweepProgress) => void;
  readonly onResult: (result: RunResult, index: number) => void;
  /** Ends the progress line; resolves once every JSON line has been written. */
  finish(): Promise<void>;
}

/** The progress line: `3/12 done · 2 running · 1 failed · ETA 41 s`. */
export function formatProgress(p: SweepProgress): string {
  const eta = p.etaMs === undefined
    ? "ETA …"
    : p.done === p.total
    ? "ETA 0 s"
    : `ETA ${p.etaMs < 1000 ? "<1 s" : formatDuration(p.etaMs)}`;
  return `${p.done}/${p.total} done · ${p.running} running · ${p.failed} failed · ${eta}`;
}

/**
 * Reports a sweep on stderr: on a terminal one line redrawn in place; otherwise one line per
 * finished run, carrying the same counts. With `json`, JSON lines go to stdout as runs end.
 */
export function createSweepReporter(
  env: CliEnv,
  options: { label: string; json: boolean; total: number },
): SweepReporter {
  const { runtime } = env;
  const tty = runtime.isTerminal("stderr");
  let last: SweepProgress = {
    total: options.total,
    done: 0,
    running: 0,
    failed: 0,
    etaMs: undefined,
  };
  let drawn = false;
  let stdout: Promise<void> = Promise.resolve();
  return {
    onProgress(p) {
      last = p;
      if (!tty) return;
      runtime.writeStderr(`\r\u001b[2K${options.label}  ${formatProgress(p)}`);
      drawn = true;
    },
    onResult(result, index) {
      if (options.json) {
        const line = toJsonText(runLine(result, index));
        // The write starts now (the port keeps call order); the chain carries any failure to finish().
        const write = runtime.writeStdout(line + "\n");
        stdout = stdout.then(() => write);
      }
      if (tty) return;
      // The engine reports progress before each result, so `last` already counts this run.
      const counts = formatProgress(last);
      const id = result.recorded ? result.runId : "-";
      const what = result.ok
        ? `ok     ${id}  ${formatOverrides(result.config)}  ${formatDuration(result.durationMs)}`
        : `FAILED ${id}  ${formatOverrides(result.config)}  ${result.error.code}`;
      runtime.writeStderr(`[${counts}] #${index + 1} ${what}\n`);
    },
    finish() {
      if (drawn) runtime.writeStderr("\n");
      drawn = false;
      return stdout;
    },
  };
}

/** One JSON line per run (`--json` sweeps). */
export function runLine(result: RunResult, index: number): Record<string, unknown> {
  const base = {
    type: "run",
    index,
    ok: result.ok,
    runId: result.runId,
    config: result.config,
    durationMs: Math.round(result.durationMs * 100) / 100,
  };
  return result.ok
    ? { ...base, result: result.value ?? null }
    : { ...base, error: { code: result.error.code, message: result.error.message } };
}

/** The table printed after a sweep. */
export function renderSweepTable(results: readonly RunResult[]): string {
  const rows = [["#", "STATUS", "RUN", "PARAMS", "RESULT", "TIME"]];
  results.forEach((r, i) => {
    let shown = r.ok ? toJsonText(r.value ?? null) : r.error.code;
    if (shown.length > 40) shown = shown.slice(0, 37) + "...";
    rows.push([
      String(i + 1),
      r.ok ? "ok" : "failed",
      r.recorded ? r.runId : "-",
      formatOverrides(r.config),
      shown,
      formatDuration(r.durationMs),
    ]);
  });
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  return rows.map((row) =>
    row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  ")
  ).join("\n");
}

/** Reports each failure with its config, then throws `E_RUN_FAILED` (already reported). */
export function failSweep(env: CliEnv, results: readonly RunResult[], what: string): void {
  const failed = results.map((r, i) => ({ r, i })).filter(({ r }) => !r.ok);
  if (failed.length === 0) return;
  if (!env.flags.booleans.has("json")) {
    for (const { r, i } of failed) {
      if (r.ok) continue;
      env.out.error(`Run #${i + 1} (${formatOverrides(r.config)}) failed: ${r.error.message}`);
      env.out.log(`  code: ${r.error.code}${r.recorded ? `; see keel runs show ${r.runId}` : ""}`);
    }
  }
  throw new KeelError(
    "E_RUN_FAILED",
    `${failed.length} of ${results.length} ${what} failed (${
      failed.map(({ i }) => `#${i + 1}`).join(", ")
    }); the others finished`,
    { details: { failed: failed.map(({ i }) => i), reported: true } },
  );
}

// ---------------------------------------------------------------------------------------------
// Shared set-up: kernel hooks, signals, output

/** What a run command sets up around the engine and tears down after. */
export interface RunSession {
  readonly options: RunManyOptions;
  readonly signal: AbortSignal;
  /** The kernel's `python/v1` executor, when a loaded plugin provides one. */
  readonly pythonExecutor: Executor | undefined;
  close(): Promise<void>;
}

/**
 * Boots the kernel when `--plugin` asks for plugins or the working directory has a `keel.lock`
 * (plugins `keel add` installed), whose `beforeRun`/`afterRun` hooks run around each run; the
 * first-party plugins have none, so without either nothing is booted. Also turns SIGINT/SIGTERM
 * into a cancellation that marks running records "interrupted".
 */
export async function openSession(
  env: CliEnv,
  options: { echo: "stdout" | "stderr" | "none"; python: boolean },
): Promise<RunSession> {
  const { runtime } = env;
  const record = !env.flags.booleans.has("no-record");
  // Who owns the records (a pid lookup that may start a shell) is found while the rest boots.
  if (record && runtime.fs) void createRunStore(runtime).prepare();
  const controller = new AbortController();
  const stops: (() => void)[] = [];
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    const stop = runtime.onSignal?.(sig, () => {
      for (const s of stops) s();
      controller.abort(
        new KeelError(
          "E_RUN_INTERRUPTED",
          `Interrupted by ${sig}${
            sig === "SIGINT" ? " (Ctrl-C)" : ""
          }; runs not yet started were skipped`,
        ),
      );
    });
    if (stop) stops.push(stop);
  }
  let dispose = async (): Promise<void> => {};
  let hooks: RunHooks | undefined;
  let pythonExecutor: Executor | undefined;
  const locked = (await runtime.fs?.exists(`${runtime.cwd()}/keel.lock`)) === true;
  if (allValues(env.flags, "plugin").length > 0 || locked) {
    const common = await load<CommonModule>("./common.ts");
    const booted = await common.bootFromFlags(env, "fail");
    const { kernel } = booted;
    dispose = () => common.disposeQuietly(env, booted);
    const info = (r: { runId: string; file: string; config: Config }) => ({
      id: r.runId,
      protocol: r.file.endsWith(".py") ? "python/v1" : "script/v1",
      target: r.file,
      params: r.config.params,
    });
    hooks = {
      beforeRun: (r) => kernel.callHook("beforeRun", info(r)),
      afterRun: (r) =>
        kernel.callHook(
          "afterRun",
          info(r),
          r.ok ? { ok: true, value: r.value, durationMs: r.durationMs } : {
            ok: false,
            error: { code: r.error.code, message: r.error.message },
            durationMs: r.durationMs,
          },
        ),
    };
    if (options.python) {
      pythonExecutor = await kernel.resolveExecutor("python/v1").catch((e) => {
        if (KeelError.is(e, "E_EXECUTOR_MISSING")) return undefined;
        throw e;
      });
    }
  }
  let stdoutChain: Promise<void> = Promise.resolve();
  const onOutput = (event: OutputEvent): void => {
    if (options.echo === "none") return;
    if (event.stream === "stdout" && options.echo === "stdout") {
      // Writes land in call order (the Runtime port's promise): the last one settles after all.
      stdoutChain = runtime.writeStdout(event.text).catch(() => {});
    } else runtime.writeStderr(event.text);
  };
  const runOptions: RunManyOptions = {
    runtime,
    logger: env.logger,
    signal: controller.signal,
    strict: env.flags.booleans.has("strict"),
    coerce: true,
    record,
    onOutput,
    ...(hooks === undefined ? {} : { hooks }),
  };
  return {
    options: runOptions,
    signal: controller.signal,
    pythonExecutor,
    async close() {
      for (const s of stops) s();
      await stdoutChain;
      await dispose();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The command

/** The `run` command. */
export const RUN_COMMAND: CliCommand = {
  meta: {
    name: "run",
    description: "Run a script once, or sweep it over configs (script/v1, and python/v1 for .py)",
  },
  args: RUN_ARGS,
  run: runCommand,
};

async function runCommand(env: CliEnv): Promise<void> {
  const { runtime, flags, out } = env;
  const given = flags.positionals[1];
  if (given === undefined) {
    throw usage("keel run needs a script, as in: keel run examples/hello/hello.ts");
  }
  const extra = flags.positionals.slice(2);
  if (extra.length) {
    throw usage(
      `keel run takes one script, got also ${
        extra.map((a) => `"${a}"`).join(", ")
      }; sweep it with --sweep or --config, chain scripts with keel flow`,
    );
  }
  const ref = parseScriptRef(given, runtime);
  const flagEntry = lastValue(flags, "entrypoint");
  if (flagEntry !== undefined && ref.entrypoint !== undefined && flagEntry !== ref.entrypoint) {
    throw usage(
      `The entrypoint is named twice ("#${ref.entrypoint}" and --entrypoint ${flagEntry}); keep one`,
    );
  }
  const entrypoint = flagEntry ?? ref.entrypoint;
  const scriptText = given.replace(/#[A-Za-z_$][\w$]*$/, "");
  if (runtime.fs && !(await runtime.fs.exists(ref.file))) {
    throw new KeelError(
      "E_SCRIPT_NOT_FOUND",
      `Script "${scriptText}" does not exist (looked for "${ref.file}"); check the path`,
      { details: { file: ref.file } },
    );
  }
  const python = ref.file.endsWith(".py");
  const parallel = integerFlag(flags, "parallel") ?? 1;
  const isolate = isolateFlag(env);
  const json = flags.booleans.has("json");
  const maxRuns = maxRunsFlag(env);
  const { configs, sweep } = await buildConfigs(env, maxRuns);

  if (flags.booleans.has("dry-run")) {
    await printDryRun(env, { file: ref.file, entrypoint, configs });
    return;
  }
  if (python && isolate !== undefined && isolate !== "process") {
    out.warn(
      `--isolate ${isolate} does not apply to .py scripts: each runs in its own python3 process`,
    );
  }

  const session = await openSession(env, {
    echo: sweep
      ? (flags.booleans.has("no-record") ? "stderr" : "none")
      : json
      ? "stderr"
      : "stdout",
    python,
  });
  const inspect = (value: unknown): string => runtime.inspect(value, { depth: 6 });
  try {
    const runner = python ? await pythonRunner(env, session.pythonExecutor) : undefined;
    const options: RunManyOptions = {
      ...session.options,
      parallel,
      ...(isolate === undefined || python ? {} : { isolate }),
      ...(entrypoint === undefined ? {} : { entrypoint }),
      ...(runner === undefined ? {} : { runner }),
    };
    if (!sweep) {
      const [result] = await runMany(ref.file, configs, options);
      if (!result!.ok) throw result!.error;
      if (json) {
        const report: RunReport = {
          ok: true,
          runId: result!.runId,
          script: ref.file,
          result: result!.value,
          durationMs: result!.durationMs,
        };
        await runtime.writeStdout(toJsonText(report, { inspect }) + "\n");
      } else {
        out.success(
          `${basename(ref.file)} finished in ${formatDuration(result!.durationMs)}${
            result!.recorded ? ` (run ${result!.runId})` : ""
          }`,
        );
        const text = formatResult(result!.value, inspect);
        if (text !== "") await runtime.writeStdout(text + "\n");
      }
      return;
    }

    const reporter = createSweepReporter(env, {
      label: basename(ref.file),
      json,
      total: configs.length,
    });
    if (!json) {
      out.info(
        `Sweeping ${basename(ref.file)} over ${configs.length} configs, ${parallel} at a time`,
      );
    }
    const started = performance.now();
    let results: RunResult[];
    try {
      results = await runMany(ref.file, configs, {
        ...options,
        onProgress: reporter.onProgress,
        onResult: reporter.onResult,
      });
    } finally {
      // Every run's JSON line is out before the summary, and before the process may exit.
      await reporter.finish();
    }
    const failed = results.filter((r) => !r.ok).length;
    const durationMs = performance.now() - started;
    if (json) {
      await runtime.writeStdout(
        toJsonText({
          type: "summary",
          ok: failed === 0,
          total: results.length,
          failed,
          durationMs: Math.round(durationMs),
        }) + "\n",
      );
    } else {
      await runtime.writeStdout(renderSweepTable(results) + "\n");
      if (failed === 0) {
        out.success(`${results.length} runs finished in ${formatDuration(durationMs)}`);
      }
      if (!flags.booleans.has("no-record")) {
        out.info("Each run's config, result and output: keel runs show <RUN>");
      }
    }
    if (session.signal.aborted) {
      throw KeelError.is(session.signal.reason)
        ? session.signal.reason
        : new KeelError("E_RUN_INTERRUPTED", "Interrupted");
    }
    failSweep(env, results, "runs");
  } finally {
    await session.close();
  }
}

async function printDryRun(
  env: CliEnv,
  plan: { file: string; entrypoint: string | undefined; configs: readonly Config[] },
): Promise<void> {
  const { runtime, flags } = env;
  if (flags.booleans.has("json")) {
    await runtime.writeStdout(
      toJsonText({
        dryRun: true,
        script: plan.file,
        entrypoint: plan.entrypoint ?? null,
        configs: plan.configs,
      }, { indent: 2 }) + "\n",
    );
    return;
  }
  const lines = [
    `Would run ${basename(plan.file)}${
      plan.entrypoint ? `#${plan.entrypoint}` : ""
    } ${plan.configs.length} time${
      plan.configs.length === 1 ? "" : "s"
    } (dry run: nothing runs, nothing is recorded); overrides on top of the script's defaults:`,
  ];
  plan.configs.forEach((c, i) => {
    const more = (["kwargs", "metadata"] as const).filter((k) => Object.keys(c[k]).length > 0).map((
      k,
    ) => `${k}=${toJsonText(c[k])}`);
    lines.push(
      `  ${String(i + 1).padStart(String(plan.configs.length).length)}  ${
        [formatOverrides(c), ...more].join("  ")
      }`,
    );
  });
  await runtime.writeStdout(lines.join("\n") + "\n");
}
