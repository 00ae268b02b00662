/**
 * One call of a script in the current realm: import a fresh instance of the module, pick its
 * entrypoint, resolve its params, call it, check what it returns. The in-process runner, the run
 * worker (`_worker.ts`) and the subprocess child (`runtimes/deno/run-child.ts`) all use this, so
 * a script behaves the same in every isolation mode.
 * @module
 */

import { applyParams, closestName, type Config } from "../config.ts";
import { KeelError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { basename, toFileUrl } from "../path.ts";
import { checkResult } from "./result.ts";

/** Entrypoint names tried, in order, when none is named (after a default export function). */
export const ENTRYPOINT_NAMES: readonly string[] = ["main", "run"];

/** What a script's entrypoint receives as its second argument. */
export interface RunContext {
  /** The run's id (also its folder under `.keel/runs/` when recorded). */
  readonly runId: string;
  /** The absolute path of the script. */
  readonly file: string;
  /** The resolved params (also the first argument). */
  readonly params: Readonly<Record<string, unknown>>;
  /** The config's positional arguments. */
  readonly args: readonly unknown[];
  /** The config's keyword arguments. */
  readonly kwargs: Readonly<Record<string, unknown>>;
  /** The config's metadata. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /**
   * In a sequential flow, what the previous step returned (a list of values when that step was
   * a sweep); undefined otherwise.
   */
  readonly previous: unknown;
  /** Logs through the host, tagged with the run id. */
  readonly logger: Logger;
  /** Aborted when the run is cancelled or times out; long scripts should stop when it fires. */
  readonly signal: AbortSignal;
}

/** The shape of a script entrypoint. */
export type ScriptEntrypoint = (
  params: Record<string, unknown>,
  ctx: RunContext,
) => unknown;

/**
 * How to import a module afresh. Deno evaluates a `file:` URL with a new query string as a new
 * module; Bun keeps one instance per file URL whatever its query, but makes a new one per plain
 * path with a query string.
 */
export type ImportStyle = "url" | "path";

/** The import style for a runtime name ("bun" -> "path", anything else -> "url"). */
export function importStyleFor(runtimeName: string | undefined): ImportStyle {
  return runtimeName === "bun" ? "path" : "url";
}

/** What one call needs; plain data, so it can cross to a worker or a subprocess. */
export interface ScriptCall {
  /** Absolute path of the module. */
  readonly file: string;
  readonly config: Config;
  /** The export to call; default the default export function, else `main`, else `run`. */
  readonly entrypoint?: string | undefined;
  /** Refuse every override key the script's `params` lack (default false: see {@link resolveParams}). */
  readonly strict?: boolean | undefined;
  /** Convert string overrides to their default's type (as `--set` does). */
  readonly coerce?: boolean | undefined;
  readonly runId: string;
  readonly previous?: unknown;
  /** Stop waiting after this long and fail with `E_SCRIPT_TIMEOUT`. */
  readonly timeoutMs?: number | undefined;
  readonly importStyle: ImportStyle;
}

/** What the call resolved before calling the entrypoint. */
export interface ResolvedCall {
  readonly entrypoint: string;
  readonly params: Readonly<Record<string, unknown>>;
  /** Override keys the script's params lack, passed on as new params (non-strict). */
  readonly unknown: readonly string[];
}

/** Hooks around a call. */
export interface CallHooks {
  readonly logger: Logger;
  /** Cancels the run; the script sees it as `ctx.signal`. */
  readonly signal?: AbortSignal | undefined;
  /** Called after params are resolved and before the entrypoint runs (a record is written here). */
  readonly beforeCall?: ((resolved: ResolvedCall) => void | Promise<void>) | undefined;
}

/** The message of any thrown value (Bun's module errors are not Error instances). */
export function messageOf(e: unknown): string {
  const m = (e as { message?: unknown } | null)?.message;
  return typeof m === "string" ? m : String(e);
}

/** The specifier that imports a fresh instance of `file`. */
export function freshSpecifier(file: string, style: ImportStyle): string {
  const query = `?keel-run=${crypto.randomUUID()}`;
  return style === "path" ? file + query : toFileUrl(file) + query;
}

/**
 * Imports a fresh instance of a script module.
 *
 * @throws {KeelError} `E_SCRIPT_NOT_FOUND`, or `E_SCRIPT_FAILED` (phase "load") when the module
 *   or one of its imports fails to load or its top level throws.
 */
export async function importScript(
  file: string,
  style: ImportStyle,
): Promise<Record<string, unknown>> {
  const specifier = freshSpecifier(file, style);
  try {
    return await import(specifier) as Record<string, unknown>;
  } catch (e) {
    const first = messageOf(e).split("\n")[0] ?? "";
    if (first.includes(`"${specifier}"`) || first.includes(`'${specifier}'`)) {
      throw new KeelError("E_SCRIPT_NOT_FOUND", `Script "${file}" does not exist; check the path`, {
        cause: e,
        details: { file },
      });
    }
    throw new KeelError(
      "E_SCRIPT_FAILED",
      `Script "${basename(file)}" could not be loaded: ${messageOf(e)}`,
      { cause: e, details: { file, phase: "load" } },
    );
  }
}

/**
 * The function a run calls: `entrypoint` when named, else the default export function, else
 * `main`, else `run`.
 *
 * @throws {KeelError} `E_SCRIPT_ENTRYPOINT`, listing the exports the module has.
 * @example
 * ```ts
 * import { pickEntrypoint } from "./script.ts";
 * const picked = pickEntrypoint({ main: () => 1, params: {} }, undefined);
 * if (picked.name !== "main") throw new Error("unreachable");
 * ```
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
    const functions = exports.filter((k) => typeof mod[k] === "function");
    const near = closestName(entrypoint, functions);
    throw new KeelError(
      "E_SCRIPT_ENTRYPOINT",
      `Script "${script}" has no function "${entrypoint}"` +
        (near ? ` (did you mean "${near}"?)` : "") +
        ` (${listed}); name an exported function as the entrypoint`,
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
 * A script's params for one run: its exported defaults with the config's params on top.
 *
 * Strict: every key the defaults lack is refused (`E_CONFIG_UNKNOWN_KEY`, with a suggestion).
 * Not strict (the default, KohakuEngine's behaviour): a new key is passed on as a new param and
 * reported in `unknown`; but a key that is a likely typo of a param (`lrr` for `lr`) is still
 * refused with `E_CONFIG_INVALID`, since passing it on would silently run with the default.
 *
 * @throws {KeelError} `E_CONFIG_UNKNOWN_KEY`, `E_CONFIG_INVALID`
 * @example
 * ```ts
 * import { resolveParams } from "./script.ts";
 * const { params, unknown } = resolveParams({ lr: 0.1 }, { lr: "0.01", note: "x" }, { coerce: true });
 * if (params.lr !== 0.01 || unknown[0] !== "note") throw new Error("unreachable");
 * ```
 */
export function resolveParams(
  defaults: unknown,
  overrides: Readonly<Record<string, unknown>>,
  options: { strict?: boolean | undefined; coerce?: boolean | undefined; script?: string } = {},
): { params: Record<string, unknown>; unknown: string[] } {
  const script = options.script ?? "the script";
  const base = (defaults ?? {}) as Readonly<Record<string, unknown>>;
  const strict = options.strict === true;
  const result = applyParams(base, overrides, {
    strict,
    coerce: options.coerce === true,
    where: script,
  });
  if (!strict && typeof base === "object" && base !== null) {
    const known = Object.keys(base);
    for (const key of result.unknown) {
      const near = closestName(key, known);
      if (near === undefined) continue;
      throw new KeelError(
        "E_CONFIG_INVALID",
        `Script "${script}" has no param "${key}" (did you mean "${near}"?); its params are ${
          known.map((k) => `"${k}"`).join(", ")
        }. Fix the key, or use --strict to refuse every unknown key`,
        { details: { key, known, suggestion: near } },
      );
    }
  }
  return result;
}

function timeoutError(script: string, ms: number): KeelError {
  return new KeelError(
    "E_SCRIPT_TIMEOUT",
    `Script "${script}" did not finish within ${ms} ms and was stopped; raise the time limit or make it faster`,
    { details: { timeoutMs: ms } },
  );
}

/**
 * Runs one call: import, pick, resolve, call, check. Resolves with the value and what was
 * resolved.
 *
 * @throws {KeelError} `E_SCRIPT_NOT_FOUND`, `E_SCRIPT_ENTRYPOINT`, `E_CONFIG_*`,
 *   `E_SCRIPT_FAILED` (the cause is what the script threw), `E_SCRIPT_TIMEOUT`, `E_SCRIPT_RESULT`
 */
export async function callScript(
  call: ScriptCall,
  hooks: CallHooks,
): Promise<{ value: unknown; resolved: ResolvedCall }> {
  const name = basename(call.file);
  const mod = await importScript(call.file, call.importStyle);
  const entry = pickEntrypoint(mod, call.entrypoint, name);
  const { params, unknown } = resolveParams(mod.params, call.config.params, {
    strict: call.strict,
    coerce: call.coerce,
    script: name,
  });
  const resolved: ResolvedCall = { entrypoint: entry.name, params, unknown };
  if (unknown.length > 0) {
    hooks.logger.warn(
      `Script "${name}" has no param ${
        unknown.map((k) => `"${k}"`).join(", ")
      }; passed on as new (use --strict to refuse unknown keys)`,
    );
  }
  await hooks.beforeCall?.(resolved);

  const controller = new AbortController();
  const outer = hooks.signal;
  const onOuterAbort = (): void => controller.abort(outer!.reason);
  if (outer?.aborted) controller.abort(outer.reason);
  else outer?.addEventListener("abort", onOuterAbort, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (call.timeoutMs !== undefined) {
    timer = setTimeout(() => controller.abort(timeoutError(name, call.timeoutMs!)), call.timeoutMs);
  }
  const ctx: RunContext = Object.freeze({
    runId: call.runId,
    file: call.file,
    params,
    args: call.config.args,
    kwargs: call.config.kwargs,
    metadata: call.config.metadata,
    previous: call.previous,
    logger: hooks.logger,
    signal: controller.signal,
  });
  let value: unknown;
  try {
    controller.signal.throwIfAborted();
    value = await untilAborted(
      Promise.resolve().then(() => entry.fn({ ...params }, ctx)),
      controller.signal,
    );
  } catch (e) {
    // A timeout, or a cancellation the host worded itself (E_RUN_INTERRUPTED), keeps its code.
    if (KeelError.is(e) && e === controller.signal.reason) throw e;
    throw new KeelError(
      "E_SCRIPT_FAILED",
      `Script "${name}" failed${entry.name === "default" ? "" : ` in ${entry.name}()`}: ${
        messageOf(e)
      }`,
      { cause: e, details: { file: call.file, entrypoint: entry.name, phase: "run" } },
    );
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    outer?.removeEventListener("abort", onOuterAbort);
  }
  // Undefined properties are dropped here, as JSON drops them in a worker's or process's result.
  if (checkResult(value, { script: name })) value = JSON.parse(JSON.stringify(value));
  return { value, resolved };
}

function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
