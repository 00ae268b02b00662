/**
 * executor-script: the `script/v1` protocol. Its one method, `script/run`, runs a TypeScript or
 * JavaScript module through the run engine of `core/runs` (a fresh module instance per run,
 * entrypoint detection, params resolved from the module's exported defaults and the caller's
 * overrides, a result checked to be JSON data).
 *
 * A script is any module with a callable entrypoint:
 *
 * ```ts ignore
 * export const params = { name: "world", times: 1 };
 * export default function (params: typeof import("./hello.ts").params) {
 *   return { greeting: `Hello, ${params.name}!` };
 * }
 * ```
 *
 * The default export runs scripts in-process and records nothing: a plugin's context has no
 * file system of its own. A host that wants records under `.keel/runs/` builds the plugin with
 * its Runtime: `createExecutorScriptPlugin({ runtime })`.
 * @module
 */

import {
  definePlugin,
  EMPTY_CONFIG,
  type ExecuteRequest,
  type Executor,
  importStyleFor,
  KeelError,
  type Logger,
  type Plugin,
  type RunContext,
  runScript,
  type Runtime,
} from "../../core/mod.ts";

/** The protocol this plugin answers `resolveExecutor` for. */
export const SCRIPT_PROTOCOL = "script/v1";

/** The method that runs a script. */
export const SCRIPT_RUN = "script/run";

/** The params of `script/run`. */
export interface ScriptRunParams {
  /** Absolute path or `file:` URL of the module (relative paths too, with a host Runtime). */
  readonly file: string;
  /** Overrides of the module's exported `params`. */
  readonly params?: Readonly<Record<string, unknown>>;
  /** `ctx.args`, `ctx.kwargs`, `ctx.metadata`. */
  readonly args?: readonly unknown[];
  readonly kwargs?: Readonly<Record<string, unknown>>;
  readonly metadata?: Readonly<Record<string, unknown>>;
  /** The export to call; default: the default export function, else `main`, else `run`. */
  readonly entrypoint?: string;
  /** Refuse every override key the script's params lack (default: only likely typos). */
  readonly strict?: boolean;
  /** Convert string overrides to the type of their default, as `--set key=value` does. */
  readonly coerce?: boolean;
  /** The run id the script sees; default a new one. */
  readonly runId?: string;
  /** Write a record under `.keel/runs/` (needs a plugin built with a Runtime). Default false. */
  readonly record?: boolean;
  /** Fail with `E_SCRIPT_TIMEOUT` after this long. */
  readonly timeoutMs?: number;
}

/** The second argument a script's entrypoint receives (the engine's {@link RunContext}). */
export type ScriptContext = RunContext;

/** Options for {@link createScriptExecutor}. */
export interface ScriptExecutorOptions {
  readonly logger: Logger;
  /**
   * The host Runtime (records, relative paths, a clear "not found"), or only its name, which
   * says how to import a fresh module instance (Bun needs a path, not a URL).
   */
  readonly runtime?: Runtime | string | undefined;
  /** The folder holding `.keel/` for records; default the runtime's cwd. */
  readonly root?: string | undefined;
}

const PARAM_KINDS: Readonly<Record<string, string>> = {
  file: "string",
  params: "object",
  args: "array",
  kwargs: "object",
  metadata: "object",
  entrypoint: "string",
  strict: "boolean",
  coerce: "boolean",
  runId: "string",
  record: "boolean",
  timeoutMs: "number",
};

function checkParams(raw: Readonly<Record<string, unknown>>): ScriptRunParams {
  if (typeof raw !== "object" || raw === null) {
    throw new TypeError(
      `"${SCRIPT_RUN}" takes params { file, params?, args?, kwargs?, metadata?, entrypoint? }`,
    );
  }
  if (typeof raw.file !== "string" || raw.file === "") {
    throw new TypeError(
      `"${SCRIPT_RUN}" needs "file": an absolute path or file: URL of the script`,
    );
  }
  for (const [key, value] of Object.entries(raw)) {
    const kind = PARAM_KINDS[key];
    if (kind === undefined) {
      throw new TypeError(
        `"${SCRIPT_RUN}" has no param "${key}"; it takes ${Object.keys(PARAM_KINDS).join(", ")}`,
      );
    }
    if (value === undefined) continue;
    const ok = kind === "array"
      ? Array.isArray(value)
      : kind === "object"
      ? typeof value === "object" && value !== null && !Array.isArray(value)
      : typeof value === kind && (kind !== "string" || value !== "");
    if (!ok) {
      throw new TypeError(
        `"${SCRIPT_RUN}" param "${key}" must be a${
          kind === "object" || kind === "array" ? "n" : ""
        } ${kind}`,
      );
    }
  }
  return raw as unknown as ScriptRunParams;
}

/**
 * Creates the `script/v1` executor: `script/run` resolves with what the script returned and
 * throws the run's error.
 *
 * @throws {KeelError} from `execute`: `E_SCRIPT_NOT_FOUND`, `E_SCRIPT_ENTRYPOINT`,
 *   `E_CONFIG_INVALID`, `E_CONFIG_UNKNOWN_KEY`, `E_SCRIPT_FAILED`, `E_SCRIPT_RESULT`,
 *   `E_SCRIPT_TIMEOUT`, and `E_RUNTIME_UNSUPPORTED` for `record` without a Runtime.
 */
export function createScriptExecutor(options: ScriptExecutorOptions): Executor {
  const runtime = typeof options.runtime === "object" ? options.runtime : undefined;
  const runtimeName = typeof options.runtime === "string" ? options.runtime : runtime?.name;
  return Object.freeze({
    protocol: SCRIPT_PROTOCOL,
    methods: Object.freeze([SCRIPT_RUN]),
    async execute(request: ExecuteRequest): Promise<unknown> {
      if (request.method !== SCRIPT_RUN) {
        throw new RangeError(
          `Executor "${SCRIPT_PROTOCOL}" has no method "${request.method}"; use "${SCRIPT_RUN}"`,
        );
      }
      const p = checkParams(request.params);
      if (p.record === true && !runtime?.fs) {
        throw new KeelError(
          "E_RUNTIME_UNSUPPORTED",
          `"${SCRIPT_RUN}" was asked to record the run, but this executor has no Runtime with files; build the plugin with createExecutorScriptPlugin({ runtime })`,
        );
      }
      const result = await runScript(p.file, {
        runtime,
        importStyle: importStyleFor(runtimeName),
        config: {
          ...EMPTY_CONFIG,
          ...(p.params === undefined ? {} : { params: p.params }),
          ...(p.args === undefined ? {} : { args: p.args }),
          ...(p.kwargs === undefined ? {} : { kwargs: p.kwargs }),
          ...(p.metadata === undefined ? {} : { metadata: p.metadata }),
        },
        entrypoint: p.entrypoint,
        strict: p.strict,
        coerce: p.coerce,
        runId: p.runId,
        timeoutMs: p.timeoutMs,
        record: p.record === true,
        root: options.root,
        signal: request.signal,
        logger: options.logger,
      });
      if (!result.ok) throw result.error;
      return result.value;
    },
  });
}

/** Options for {@link createExecutorScriptPlugin}. */
export interface ExecutorScriptPluginOptions {
  /** The host Runtime, so `script/run` can record runs (`record: true`). */
  readonly runtime?: Runtime;
  /** The folder holding `.keel/`; default the runtime's cwd. */
  readonly root?: string;
}

/** Builds the executor-script plugin; give it the host's Runtime to allow records. */
export function createExecutorScriptPlugin(options: ExecutorScriptPluginOptions = {}): Plugin {
  return definePlugin({
    name: "executor-script",
    version: "0.2.0",
    kernel: "^1",
    description: "script/v1: runs a TypeScript or JavaScript module with injected params",
    setup(ctx) {
      const executor = createScriptExecutor({
        logger: ctx.logger,
        runtime: options.runtime ?? ctx.runtime,
        root: options.root,
      });
      return {
        resolveExecutor: (protocol) => (protocol === SCRIPT_PROTOCOL ? executor : undefined),
      };
    },
  });
}

/** The executor-script plugin: answers `resolveExecutor("script/v1")`; in-process, unrecorded. */
export default createExecutorScriptPlugin();
