/**
 * One error type for the whole system: {@link KeelError} with a `code` from {@link ErrorCode}.
 *
 * Codes are only ever added, never renamed or reused, so callers may switch on them.
 * @module
 */

/** Every error code Keel raises, with a one-line meaning. Codes are only ever added. */
export const ErrorCode = {
  // Manifest and plugin loading
  E_MANIFEST_INVALID: "A plugin manifest is not an object or a field has the wrong type",
  E_MANIFEST_NAME: "A plugin manifest has a missing or malformed name",
  E_MANIFEST_VERSION: "A plugin manifest has a version that is not valid semver",
  E_MANIFEST_KERNEL_RANGE: "A plugin's kernel range is malformed or not satisfied by this kernel",
  E_PLUGIN_DUPLICATE: "Two plugins share a name",
  E_PLUGIN_REQUIRES_MISSING: "A plugin requires a plugin that is not loaded",
  E_PLUGIN_REQUIRES_CYCLE: "Plugins require each other in a cycle",
  E_PLUGIN_SETUP_FAILED: "A plugin's setup threw",
  E_PLUGIN_HOOK_UNKNOWN: "A plugin returned a hook that does not exist",
  E_PLUGIN_HOOK_INVALID: "A plugin returned a hook that is not a function or { order, handler }",
  E_PLUGIN_LOAD_FAILED: "A plugin module could not be loaded",
  E_PLUGIN_TIMEOUT: "An isolated plugin did not answer within its time limit and was killed",
  E_PLUGIN_CRASHED: "An isolated plugin's process exited (out of memory, or it crashed)",
  E_HOOK_NOT_READY: "A plugin called hooks before every plugin was set up",
  E_PLUGIN_PROTOCOL: "An isolated plugin sent a message that breaks the host protocol",
  E_PLUGIN_DISPOSED: "A plugin was used after the kernel was disposed",
  // Capabilities
  E_CAPABILITY_UNKNOWN: "A capability names a kind that does not exist",
  E_CAPABILITY_INVALID: "A capability string is malformed (for example a path with '..')",
  E_CAPABILITY_DENIED: "A plugin asked for, or used, a capability it was not granted",
  E_CAPABILITY_SYMLINK: "A granted path holds a symlink that leads outside the grant",
  // Services and hooks
  E_SERVICE_DUPLICATE: "Two plugins provide the same service",
  E_SERVICE_MISSING: "A plugin requires a service that no plugin provides",
  E_HOOK_FAILED: "One or more hook handlers threw",
  E_HOOK_UNKNOWN: "A hook name that does not exist was called",
  // Kernel and runtime
  E_KERNEL_DISPOSED: "The kernel was used after dispose()",
  E_KERNEL_OPTIONS: "createKernel() was given invalid options",
  E_RUNTIME_UNSUPPORTED: "The current runtime does not provide what was asked for",
  E_RUNTIME_SPAWN: "A process could not be started",
  E_RUNTIME_NOT_FOUND: "A file or directory does not exist",
  // CLI and scripts
  E_CLI_USAGE: "A command was called with bad arguments",
  E_SCRIPT_NOT_FOUND: "A script file does not exist",
  E_SCRIPT_ENTRYPOINT: "A script has no callable entrypoint",
  E_SCRIPT_FAILED: "A script threw",
  E_EXECUTOR_MISSING: "No plugin provides an executor for a protocol",
  E_CONFIG_INVALID: "A config value could not be parsed or coerced",
  // Configs, sweeps and runs (script/v1, python/v1)
  E_CONFIG_UNKNOWN_KEY: "A config or --set names a key the script does not have (strict mode)",
  E_CONFIG_EMPTY: "A config file or generator yielded no configs",
  E_CONFIG_TOO_MANY: "A config source yielded more configs than --max-runs allows",
  E_CONFIG_EXTENDS_CYCLE: "Config files extend each other in a cycle",
  E_CONFIG_LOAD_FAILED: "A config file could not be loaded or threw",
  E_SWEEP_INVALID: "A --sweep expression or sweep space is malformed",
  E_SCRIPT_RESULT: "A script returned a value that cannot be stored as JSON",
  E_SCRIPT_TIMEOUT: "A script did not finish within its time limit and was stopped",
  E_RUN_FAILED: "One or more runs of a sweep or flow failed",
  E_RUN_INTERRUPTED: "A run was interrupted (signal, or its process was killed)",
  E_RUN_NOT_FOUND: "No recorded run has the given id",
  E_PYTHON_NOT_FOUND: "No python3 interpreter could be started",
  E_PYTHON_FAILED: "A Python script raised an exception or exited non-zero",
  // Workflows (issue 4)
  E_WORKFLOW_PARSE: "A workflow file is not valid YAML or JSON",
  E_WORKFLOW_INVALID: "A workflow field is missing or has the wrong type",
  E_WORKFLOW_DUPLICATE_ID: "Two tasks of a workflow share an id",
  E_WORKFLOW_UNKNOWN_DEPENDENCY: "A task depends on a task that does not exist",
  E_WORKFLOW_CYCLE: "Tasks of a workflow depend on each other in a cycle",
  E_WORKFLOW_UNKNOWN_PROTOCOL: "A task names a protocol no loaded plugin provides",
  E_WORKFLOW_UNKNOWN_METHOD: "A task names a method its protocol does not have",
  E_WORKFLOW_BAD_REFERENCE: "A ${task.path} reference names a task that is not a dependency, or a path that does not exist",
  E_WORKFLOW_NOT_FOUND: "No stored workflow run has the given id",
  E_WORKFLOW_TIMEOUT: "A workflow run passed its time limit",
  E_WORKFLOW_FAILED: "A workflow run failed (one or more tasks failed)",
  E_TASK_FAILED: "A task failed after its last attempt",
  E_TASK_TIMEOUT: "A task passed its time limit and was stopped",
  E_TASK_SKIPPED: "A task was skipped because a dependency failed",
  E_TASK_RESULT: "A task returned a value that cannot be stored as JSON",
  E_STORE_LOCKED: "The store's database is locked by another process",
  E_STORE_READ_ONLY: "The store's database file cannot be written",
  E_STORE_FULL: "The disk holding the store is full",
  E_STORE_CORRUPT: "The store's database file is damaged or not a Keel store",
  E_STORE_FAILED: "The store could not complete a write",
  E_SHELL_FAILED: "A shell command exited non-zero",
  E_MCP_TOOL_UNKNOWN: "An MCP call names a tool the server does not have",
  E_MCP_FAILED: "An MCP server could not be started or a tool call failed",
  // Tools and code mode (issue 5)
  E_TOOL_DUPLICATE: "Two tools share a name (register with { overwrite: true } to replace one)",
  E_TOOL_UNKNOWN: "A call names a tool that is not registered",
  E_TOOL_NAME_INVALID: "A tool name is not an identifier, or uses the reserved \"__\" prefix",
  E_TOOL_SCHEMA_INVALID: "A tool's input or output schema is not a valid schema of the supported JSON Schema subset",
  E_TOOL_INPUT_INVALID: "A tool was called with input that does not match its input schema",
  E_TOOL_OUTPUT_INVALID: "A tool returned output that does not match its output schema",
  E_TOOL_FAILED: "A tool's run function threw",
  E_SANDBOX_UNAVAILABLE: "No sandbox can run code on this host (add the sandbox plugin, or run where a Deno subprocess or QuickJS can start)",
  E_SANDBOX_CODE_INVALID: "Code for the sandbox does not compile as a function",
  E_SANDBOX_CODE_FAILED: "Code in the sandbox threw an error it did not catch",
  E_SANDBOX_TIMEOUT: "Code in the sandbox ran past its deadline and was stopped",
  E_SANDBOX_MEMORY: "Code in the sandbox went over its memory limit and was stopped",
  E_SANDBOX_RESULT_INVALID: "Code in the sandbox returned a value that is not JSON data",
  E_SANDBOX_TOOL_DENIED: "Code in the sandbox called a tool outside its allow-list",
  E_SANDBOX_TOOL_LIMIT: "Code in the sandbox called tools more times than its limit allows",
  E_SANDBOX_CRASHED: "A sandbox process ended unexpectedly",
  E_SANDBOX_BUSY: "Every sandbox is busy and the queue is full; retry later",
  E_SANDBOX_CLOSED: "The sandbox was closed",
  E_SANDBOX_ABORTED: "The caller aborted the execution",
  E_EXECUTOR_UNAUTHORIZED: "A request to the executor service has a missing or wrong API key",
  E_EXECUTOR_REQUEST_INVALID: "A request to the executor service is malformed",
  E_EXECUTOR_REQUEST_TOO_LARGE: "A request to the executor service is over its size limit",
  E_EXECUTOR_REQUEST_TIMEOUT: "A client sent its request to the executor service too slowly",
  E_EXECUTOR_UNREACHABLE: "The executor service could not be reached or answered with a server error",
  // The registry (issue 6)
  E_REGISTRY_TARBALL_INVALID: "A package tarball is not a safe, well-formed .tgz (bad gzip or tar, a path leaving the package, a link, or over a size limit)",
  E_REGISTRY_MANIFEST_INVALID: "A package's package.json or its keel field is invalid, or disagrees with the publish request",
  E_REGISTRY_VERSION_EXISTS: "A name@version was published before; versions are immutable",
  E_REGISTRY_NOT_FOUND: "No package or version has that name in the registry",
  E_REGISTRY_UNAUTHORIZED: "A registry request has a missing, wrong or expired token",
  E_REGISTRY_FORBIDDEN: "A registry token's scope does not allow this request",
  E_REGISTRY_REQUEST_INVALID: "A registry request is malformed",
  E_REGISTRY_TOO_LARGE: "A registry request is over its size limit",
  E_REGISTRY_RATE_LIMITED: "Too many registry requests of one kind; retry later",
  E_REGISTRY_INTEGRITY: "A downloaded tarball does not match its integrity hash",
  E_REGISTRY_SIGNATURE: "A package version's registry signature is missing or does not verify",
  E_REGISTRY_UNREACHABLE: "The registry could not be reached or answered with a server error",
  E_REGISTRY_STORAGE: "The registry's database or blob storage failed or is misconfigured",
  E_TRAIN_SHAPE: "Layers of a model do not fit together, or data does not fit the model",
  E_TRAIN_DATA: "Training data is malformed, empty, or holds NaN or Infinity",
  E_TRAIN_LABEL_RANGE: "A class label is outside [0, classes)",
  E_TRAIN_BATCH_SIZE: "The batch size is not a positive integer or is larger than the data",
  E_TRAIN_NOT_FINITE: "The loss became NaN or Infinity; training stopped",
  E_TRAIN_CONFIG: "A training option or config file is invalid",
  E_TRAIN_CHECKPOINT: "A checkpoint is corrupt or does not match the model",
  E_TRAIN_DEVICE_LOST: "The GPU device was lost during training",
  E_TRAIN_LIMITS: "A tensor is larger than the adapter's buffer limits",
  E_TRAIN_CANCELLED: "Training was cancelled by its caller (an AbortSignal)",
  E_TRAIN_BACKEND_UNAVAILABLE: "The requested compute backend is not available on this host",
  E_METRIC_UNKNOWN: "No metric has that name",
  E_METRIC_INVALID: "A metric got invalid options or inputs",
  E_ONNX_EXPORT: "A model could not be exported to ONNX",
  E_ONNX_RUN: "The ONNX runtime (onnxruntime-web) could not load or run a model",
  E_TENSORBOARD_RECORD: "A TensorBoard event file has a truncated record, a CRC mismatch or a malformed event",
} as const;

/** A code from {@link ErrorCode}. */
export type ErrorCodeName = keyof typeof ErrorCode;

const BRAND = Symbol.for("keel.error");

/** Options for {@link KeelError}. */
export interface KeelErrorOptions {
  /** The underlying error. */
  readonly cause?: unknown;
  /** Structured facts about the failure (plugin name, missing capabilities, ...). */
  readonly details?: Readonly<Record<string, unknown>>;
}

/** The JSON shape of a {@link KeelError}; what crosses process and HTTP boundaries. */
export interface KeelErrorJson {
  readonly name: "KeelError";
  readonly code: ErrorCodeName;
  readonly message: string;
  readonly details?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

/**
 * The one error Keel throws. `code` says what went wrong; the message says what to do.
 *
 * @example
 * ```ts
 * import { KeelError } from "./errors.ts";
 * const e = new KeelError("E_PLUGIN_DUPLICATE", 'Two plugins are named "a"');
 * if (!KeelError.is(e, "E_PLUGIN_DUPLICATE")) throw new Error("unreachable");
 * ```
 */
export class KeelError extends Error {
  override readonly name = "KeelError";
  readonly code: ErrorCodeName;
  readonly details: Readonly<Record<string, unknown>> | undefined;
  readonly [BRAND] = true;

  constructor(code: ErrorCodeName, message: string, options: KeelErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }

  /** True when `e` is a KeelError (from any copy of this package), optionally with `code`. */
  static is(e: unknown, code?: ErrorCodeName): e is KeelError {
    if (typeof e !== "object" || e === null || (e as Record<symbol, unknown>)[BRAND] !== true) {
      return false;
    }
    return code === undefined || (e as KeelError).code === code;
  }

  /** Rebuilds an error from {@link KeelError.toJSON} output (for example from a plugin process). */
  static fromJSON(json: KeelErrorJson): KeelError {
    const options: { details?: Readonly<Record<string, unknown>>; cause?: unknown } = {};
    if (json.details !== undefined) options.details = json.details;
    if (json.cause !== undefined) options.cause = json.cause;
    return new KeelError(Object.hasOwn(ErrorCode, json.code) ? json.code : "E_PLUGIN_PROTOCOL", json.message, options);
  }

  /** A plain object safe to send as JSON; the cause is reduced to its name and message. */
  toJSON(): KeelErrorJson {
    const json: { -readonly [K in keyof KeelErrorJson]: KeelErrorJson[K] } = {
      name: "KeelError",
      code: this.code,
      message: this.message,
    };
    if (this.details !== undefined) json.details = this.details;
    if (this.cause !== undefined) json.cause = describeCause(this.cause);
    return json;
  }
}

function describeCause(cause: unknown): unknown {
  if (KeelError.is(cause)) return cause.toJSON();
  if (cause instanceof Error) return { name: cause.name, message: cause.message };
  return String(cause);
}

/** The message of any thrown value, for reports. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
