/**
 * executor-script: the `script/v1` protocol. Its one method, `script/run`, imports a TypeScript or
 * JavaScript module (a fresh instance per run), merges the module's exported `params` (its
 * defaults) with the caller's overrides, and calls the script's entrypoint with them.
 *
 * A script is any module with a callable entrypoint:
 *
 * ```ts ignore
 * export const params = { name: "world", times: 1 };
 * export default function (params: typeof import("./hello.ts").params) {
 *   return { greeting: `Hello, ${params.name}!` };
 * }
 * ```
 * @module
 */

import {
  childLogger,
  definePlugin,
  editDistance,
  type ExecuteRequest,
  type Executor,
  fromFileUrl,
  isAbsolutePath,
  KeelError,
  type Logger,
  normalizePath,
  toFileUrl,
} from "../../core/mod.ts";

/** The protocol this plugin answers `resolveExecutor` for. */
export const SCRIPT_PROTOCOL = "script/v1";

/** The method that runs a script. */
export const SCRIPT_RUN = "script/run";

/** Entrypoint names tried, in order, when the caller names none (after a default export function). */
export const ENTRYPOINT_NAMES: readonly string[] = ["main", "run"];

/** The params of `script/run`. */
export interface ScriptRunParams {
  /** Absolute path or `file:` URL of the module. */
  readonly file: string;
  /** Overrides of the module's exported `params`; every key must exist there. */
  readonly params?: Readonly<Record<string, unknown>>;
  /** The export to call; default: the default export function, else `main`, else `run`. */
  readonly entrypoint?: string;
  /**
   * Convert string overrides to the type of their default (number, boolean, or JSON for objects
   * and arrays), as for `--set key=value` on the command line.
   */
  readonly coerce?: boolean;
  /** The run id the script sees; default a fresh UUID. */
  readonly runId?: string;
}

/** The second argument a script's entrypoint receives. */
export interface ScriptContext {
  readonly runId: string;
  /** The absolute path of the script. */
  readonly file: string;
  /** The merged params (also the first argument). */
  readonly params: Readonly<Record<string, unknown>>;
  /** Logs through the host, tagged with the run id. */
  readonly logger: Logger;
  /** Aborted when the caller cancels the run; long scripts should stop when it fires. */
  readonly signal: AbortSignal;
}

/** The shape of a script entrypoint. */
export type ScriptEntrypoint = (params: Record<string, unknown>, ctx: ScriptContext) => unknown;

/** Options for {@link createScriptExecutor}. */
export interface ScriptExecutorOptions {
  readonly logger: Logger;
  /**
   * The host runtime's name. Bun keeps one instance per file URL whatever its query string, but
   * a new one per plain path with a query string, so on Bun the module is imported by path.
   */
  readonly runtime?: string;
}

/**
 * Creates the `script/v1` executor.
 *
 * @throws {KeelError} from `execute`: `E_SCRIPT_NOT_FOUND`, `E_SCRIPT_ENTRYPOINT`,
 *   `E_CONFIG_INVALID`, `E_SCRIPT_FAILED`
 */
export function createScriptExecutor(options: ScriptExecutorOptions): Executor {
  return Object.freeze({
    protocol: SCRIPT_PROTOCOL,
    methods: Object.freeze([SCRIPT_RUN]),
    async execute(request: ExecuteRequest): Promise<unknown> {
      if (request.method !== SCRIPT_RUN) {
        throw new RangeError(
          `Executor "${SCRIPT_PROTOCOL}" has no method "${request.method}"; use "${SCRIPT_RUN}"`,
        );
      }
      return await runScript(checkParams(request.params), request.signal, options);
    },
  });
}

function checkParams(raw: Readonly<Record<string, unknown>>): ScriptRunParams {
  if (typeof raw !== "object" || raw === null) {
    throw new TypeError(`"${SCRIPT_RUN}" takes params { file, params?, entrypoint? }`);
  }
  const { file, params, entrypoint, runId } = raw;
  if (typeof file !== "string" || file === "") {
    throw new TypeError(
      `"${SCRIPT_RUN}" needs "file": an absolute path or file: URL of the script`,
    );
  }
  if (
    params !== undefined && (typeof params !== "object" || params === null || Array.isArray(params))
  ) {
    throw new TypeError(`"${SCRIPT_RUN}" param "params" must be an object of overrides`);
  }
  if (entrypoint !== undefined && (typeof entrypoint !== "string" || entrypoint === "")) {
    throw new TypeError(`"${SCRIPT_RUN}" param "entrypoint" must be a non-empty string`);
  }
  if (runId !== undefined && typeof runId !== "string") {
    throw new TypeError(`"${SCRIPT_RUN}" param "runId" must be a string`);
  }
  return raw as unknown as ScriptRunParams;
}

/** The absolute path of `file`, given as a path or a `file:` URL. */
function scriptPath(file: string): string {
  if (file.startsWith("file:")) return fromFileUrl(file);
  if (/^[a-z][a-z0-9+.-]*:/i.test(file)) {
    throw new TypeError(`Script "${file}" must be a local file: an absolute path or a file: URL`);
  }
  if (!isAbsolutePath(file)) {
    throw new TypeError(
      `Script path "${file}" must be absolute; resolve it against the working directory first`,
    );
  }
  return normalizePath(file);
}

function messageOf(e: unknown): string {
  // Bun's module errors (ResolveMessage, BuildMessage) are not Error instances.
  const m = (e as { message?: unknown } | null)?.message;
  return typeof m === "string" ? m : String(e);
}

async function runScript(
  request: ScriptRunParams,
  signal: AbortSignal | undefined,
  options: ScriptExecutorOptions,
): Promise<unknown> {
  const path = scriptPath(request.file);
  const name = path.slice(path.lastIndexOf("/") + 1);
  const runId = request.runId ?? crypto.randomUUID();
  // A query string unique to this run makes the runtime evaluate the module afresh, so module
  // state from an earlier run never leaks into this one.
  const query = `?keel-run=${crypto.randomUUID()}`;
  const specifier = options.runtime === "bun" ? path + query : toFileUrl(path) + query;

  let mod: Record<string, unknown>;
  try {
    mod = await import(specifier);
  } catch (e) {
    const first = messageOf(e).split("\n")[0] ?? "";
    if (first.includes(`"${specifier}"`) || first.includes(`'${specifier}'`)) {
      throw new KeelError("E_SCRIPT_NOT_FOUND", `Script "${path}" does not exist; check the path`, {
        cause: e,
        details: { file: path },
      });
    }
    throw new KeelError(
      "E_SCRIPT_FAILED",
      `Script "${name}" could not be loaded: ${messageOf(e)}`,
      {
        cause: e,
        details: { file: path, phase: "load" },
      },
    );
  }

  const entry = pickEntrypoint(mod, request.entrypoint, name);
  const params = mergeParams(mod.params, request.params ?? {}, {
    name,
    coerce: request.coerce === true,
  });
  const runSignal = signal ?? new AbortController().signal;
  const ctx: ScriptContext = Object.freeze({
    runId,
    file: path,
    params,
    logger: childLogger(options.logger, { run: runId, script: name }),
    signal: runSignal,
  });
  try {
    runSignal.throwIfAborted();
    return await untilAborted(
      Promise.resolve().then(() => entry.fn({ ...params }, ctx)),
      runSignal,
    );
  } catch (e) {
    throw new KeelError(
      "E_SCRIPT_FAILED",
      `Script "${name}" failed${entry.name === "default" ? "" : ` in ${entry.name}()`}: ${
        messageOf(e)
      }`,
      {
        cause: e,
        details: { file: path, entrypoint: entry.name, phase: "run" },
      },
    );
  }
}

function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * The function a run calls: `entrypoint` when named, else the default export function, else
 * `main`, else `run`.
 *
 * @throws {KeelError} `E_SCRIPT_ENTRYPOINT`, listing the exports the module has.
 */
export function pickEntrypoint(
  mod: Readonly<Record<string, unknown>>,
  entrypoint: string | undefined,
  script = "the script",
): { name: string; fn: ScriptEntrypoint } {
  const exports = Object.keys(mod).sort();
  const listed = exports.length
    ? `it exports ${exports.map((k) => `"${k}"`).join(", ")}`
    : "it exports nothing";
  if (entrypoint !== undefined) {
    const fn = mod[entrypoint];
    if (typeof fn === "function") return { name: entrypoint, fn: fn as ScriptEntrypoint };
    throw new KeelError(
      "E_SCRIPT_ENTRYPOINT",
      `Script "${script}" has no function "${entrypoint}" (${listed}); name an exported function as the entrypoint`,
      { details: { entrypoint, exports } },
    );
  }
  for (const name of ["default", ...ENTRYPOINT_NAMES]) {
    const fn = mod[name];
    if (typeof fn === "function") return { name, fn: fn as ScriptEntrypoint };
  }
  throw new KeelError(
    "E_SCRIPT_ENTRYPOINT",
    `Script "${script}" has no entrypoint (${listed}); export a default function, "main" or "run", or name one as the entrypoint`,
    { details: { exports } },
  );
}

/**
 * The params a run sees: the module's `params` defaults with `overrides` on top. Every override
 * must name a default; with `coerce`, a string override takes its default's type.
 *
 * @throws {KeelError} `E_CONFIG_INVALID` for an unknown key (with a suggestion), a value that
 *   cannot be coerced, or a `params` export that is not an object.
 */
export function mergeParams(
  defaults: unknown,
  overrides: Readonly<Record<string, unknown>>,
  options: { name?: string; coerce?: boolean } = {},
): Record<string, unknown> {
  const script = options.name ?? "the script";
  if (
    defaults !== undefined &&
    (typeof defaults !== "object" || defaults === null || Array.isArray(defaults))
  ) {
    throw new KeelError(
      "E_CONFIG_INVALID",
      `Script "${script}" exports "params" that is not an object; export its defaults as \`export const params = { ... }\``,
    );
  }
  const base = (defaults ?? {}) as Record<string, unknown>;
  const known = Object.keys(base);
  const merged: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    if (!Object.hasOwn(base, key)) throw unknownParam(script, key, known);
    merged[key] = options.coerce && typeof value === "string"
      ? coerceParam(key, value, base[key])
      : value;
  }
  return merged;
}

function unknownParam(script: string, key: string, known: readonly string[]): KeelError {
  if (known.length === 0) {
    return new KeelError(
      "E_CONFIG_INVALID",
      `Script "${script}" has no params, so "${key}" cannot be set; export its defaults as \`export const params = { ${key}: ... }\``,
      { details: { key, known } },
    );
  }
  const near = known
    .map((k) => ({ k, d: editDistance(k.toLowerCase(), key.toLowerCase()) }))
    .filter(({ k, d }) => d < k.length && d <= Math.max(2, Math.floor(k.length / 3)))
    .sort((a, b) => a.d - b.d)[0]?.k;
  return new KeelError(
    "E_CONFIG_INVALID",
    `Script "${script}" has no param "${key}"` + (near ? ` (did you mean "${near}"?)` : "") +
      `; its params are ${known.map((k) => `"${k}"`).join(", ")}`,
    { details: { key, known, ...(near ? { suggestion: near } : {}) } },
  );
}

/**
 * Converts a string from the command line to the type of `defaultValue`: number, boolean,
 * string, or JSON (objects, arrays, and defaults that are null or undefined, where text that is
 * not JSON stays a string).
 *
 * @throws {KeelError} `E_CONFIG_INVALID` naming the key, the value and the expected type.
 */
export function coerceParam(key: string, raw: string, defaultValue: unknown): unknown {
  const bad = (expected: string): KeelError =>
    new KeelError("E_CONFIG_INVALID", `Param "${key}" expects ${expected}, got "${raw}"`, {
      details: { key, value: raw, expected },
    });
  switch (typeof defaultValue) {
    case "string":
      return raw;
    case "number": {
      const n = raw.trim() === "" ? Number.NaN : Number(raw);
      if (Number.isNaN(n)) throw bad("a number");
      return n;
    }
    case "boolean": {
      const v = raw.toLowerCase();
      if (v === "true" || v === "1" || v === "yes" || v === "on") return true;
      if (v === "false" || v === "0" || v === "no" || v === "off") return false;
      throw bad("a boolean (true or false)");
    }
    case "bigint":
      try {
        return BigInt(raw);
      } catch {
        throw bad("an integer");
      }
    case "object":
    case "undefined": {
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        if (defaultValue === null || defaultValue === undefined) return raw;
        throw bad(Array.isArray(defaultValue) ? "a JSON array" : "a JSON object");
      }
      if (defaultValue === null || defaultValue === undefined) return parsed;
      if (
        Array.isArray(defaultValue) !== Array.isArray(parsed) || typeof parsed !== "object" ||
        parsed === null
      ) {
        throw bad(Array.isArray(defaultValue) ? "a JSON array" : "a JSON object");
      }
      return parsed;
    }
    default:
      throw bad(`a value its default (a ${typeof defaultValue}) cannot be set from text`);
  }
}

/** The executor-script plugin: answers `resolveExecutor("script/v1")`. */
export default definePlugin({
  name: "executor-script",
  version: "0.1.0",
  kernel: "^1",
  description: "script/v1: runs a TypeScript or JavaScript module with injected params",
  setup(ctx) {
    const executor = createScriptExecutor({ logger: ctx.logger, runtime: ctx.runtime });
    return {
      resolveExecutor: (protocol) => (protocol === SCRIPT_PROTOCOL ? executor : undefined),
    };
  },
});
