/**
 * executor-python: the `python/v1` protocol. Each call starts `python3` on a small runner
 * (`runner.py`, next to this file) that reads a JSON request on stdin, runs the script, and reports
 * back on stdout. It needs the `run:python3` capability; the script can then do anything the user
 * can (a `run` grant is full trust).
 *
 * Three methods:
 *
 * - `python/run` ({@link PythonRunParams}): KohakuEngine semantics. The script's module-level
 *   globals are overridden by `globals` *before* its body runs, so values computed from them
 *   (`steps = epochs * 10`) see the override. The runner rewrites the script's syntax tree: every
 *   module-scope `=` or annotated assignment to an overridden name takes the override instead of
 *   its own value (the default is not even evaluated); augmented assignments (`lr *= 2`) still apply
 *   to the override. Module scope is the module body and the bodies of the if/for/while/try/with/match
 *   statements in it, never function or class bodies. Then the entrypoint is called with
 *   `*args, **kwargs`: the function named `entrypoint`, else the script's own `main`, else its own
 *   `run` (one it defined, not one it imported), and its return value is the result. A script
 *   without either runs its `if __name__ == "__main__":` block instead, and its result is the
 *   global `result` (None when unset). `__name__` is `"__main__"` throughout, but a top-level main
 *   block never runs when an entrypoint is called, so `main()` does not run twice. An `async`
 *   entrypoint is run with `asyncio.run`. An integral override of a float default stays a float.
 *   Resolves to the result itself; the script's stdout and stderr lines go to the logger as they
 *   are printed (level info, fields `{ stream, script, run }`).
 * - `python/describe` ({@link PythonDescribeParams}): the script's defaults without running it:
 *   `{ name: value }` for the module body's assignments of JSON-able literals
 *   (`ast.literal_eval`), first binding of a name wins, names starting with `_` left out. This is
 *   what `--strict` and `keel config check` check keys against.
 * - `python/execute` ({@link PythonExecuteParams}): the Gleitzeit contract. The script (a `file` or
 *   inline `code`) runs as `__main__` with a global `context` (the `context` param, else `{}`);
 *   resolves to {@link PythonExecuteResult}: `{ success: true, result, stdout, stderr }`, where
 *   `result` is the script's global `result`, so a workflow reads `${task.result.numbers}`.
 *
 * ```python
 * # train.py: `python/run` with globals { "epochs": 5 } returns {"steps": 50}
 * lr = 0.001
 * epochs = 3
 * steps = epochs * 10
 *
 * def main():
 *     return {"steps": steps}
 * ```
 *
 * Common to all three: `file` is an absolute path, a `file:` URL or a path relative to `cwd`
 * (default: the host's working directory, where the script also runs); `timeout` (seconds) or the
 * executor's `timeoutMs` option stops a script that runs too long (SIGKILL, then
 * `E_SCRIPT_TIMEOUT`), as does aborting the request's signal. Results must be JSON: tuples become
 * lists, NaN and infinities become null (as `JSON.stringify` does), objects with a `tolist()`
 * (numpy, torch) are converted through it; anything else (a set, an object) is `E_SCRIPT_RESULT`
 * naming its type and where it sits. An exception is `E_PYTHON_FAILED` with its type, message and
 * last frames; `sys.exit(n)` with `n` other than 0 is `E_PYTHON_FAILED` too, while `sys.exit(0)`
 * ends the script normally. Failures are always thrown, never returned as `success: false`.
 *
 * Stopping: aborting the request's signal kills the process and throws the signal's reason when
 * it is a KeelError, `E_SCRIPT_TIMEOUT` for a `TimeoutError`, else `E_RUN_INTERRUPTED`. A result
 * reported within the limit stands even when interpreter shutdown (a non-daemon thread, an atexit
 * hook) then overruns it: the process is killed and a warning logged. Without a limit, such a
 * process is waited for, as `python3 script.py` would be. Processes the script started itself are
 * not killed with it.
 *
 * The runner reports its result as the last line of stdout, marked with a nonce sent only in the
 * request, so a script printing something that looks like a result cannot fake one. Captured
 * output keeps the last {@link MAX_CAPTURE_CHARS} characters of each stream.
 * @module
 */

import {
  basename,
  childLogger,
  type ChildProcess,
  definePlugin,
  type ExecuteRequest,
  type Executor,
  fromFileUrl,
  KeelError,
  type Logger,
  type SpawnOptions,
  superviseProcess,
} from "../../core/mod.ts";

/** The protocol this plugin answers `resolveExecutor` for. */
export const PYTHON_PROTOCOL = "python/v1";

/** Runs a script with overridden globals and calls its entrypoint (KohakuEngine semantics). */
export const PYTHON_RUN = "python/run";

/** Runs a script with a `context` global and returns its `result` global (Gleitzeit contract). */
export const PYTHON_EXECUTE = "python/execute";

/** Returns a script's literal module-level defaults without running it. */
export const PYTHON_DESCRIBE = "python/describe";

/** The interpreter the plugin starts (and the `run:` capability it asks for). */
export const PYTHON_COMMAND = "python3";

/** How many characters of each output stream a run keeps (the last ones). */
export const MAX_CAPTURE_CHARS = 1_000_000;

/** The params of `python/run`. */
export interface PythonRunParams {
  /** Absolute path, `file:` URL, or a path relative to `cwd`. */
  readonly file: string;
  /** Module-level globals to override, by name; JSON values. */
  readonly globals?: Readonly<Record<string, unknown>>;
  /** Positional arguments of the entrypoint. */
  readonly args?: readonly unknown[];
  /** Keyword arguments of the entrypoint. */
  readonly kwargs?: Readonly<Record<string, unknown>>;
  /** The function to call; default the script's own `main`, else `run`, else its main block. */
  readonly entrypoint?: string;
  /** The working directory of the script; default the host's. */
  readonly cwd?: string;
  /** Seconds before the script is stopped; default the executor's `timeoutMs`, else none. */
  readonly timeout?: number;
  /** Tags the log lines of this run; default a fresh UUID. */
  readonly runId?: string;
}

/** The params of `python/describe`. */
export interface PythonDescribeParams {
  readonly file: string;
  readonly cwd?: string;
  /** Seconds; default 30 (only parsing happens). */
  readonly timeout?: number;
}

/** What `python/describe` resolves to: each literal module-level default by name. */
export type PythonDefaults = Record<string, unknown>;

/** The params of `python/execute`: exactly one of `file` and `code`. */
export interface PythonExecuteParams {
  readonly file?: string;
  /** Python source to run instead of a file (it runs as "<code>", in `cwd`). */
  readonly code?: string;
  /** The script's `context` global; default `{}`. */
  readonly context?: Readonly<Record<string, unknown>>;
  /** Seconds before the script is stopped; default the executor's `timeoutMs`, else none. */
  readonly timeout?: number;
  readonly cwd?: string;
}

/** What `python/execute` resolves to (the Gleitzeit shape; failures are thrown instead). */
export interface PythonExecuteResult {
  readonly success: true;
  /** The script's global `result` (null when it set none). */
  readonly result: unknown;
  /** Everything the script printed to stdout. */
  readonly stdout: string;
  readonly stderr: string;
}

/** Options for {@link createPythonExecutor}. */
export interface PythonExecutorOptions {
  /** Starts processes; a plugin passes `ctx.spawn`, which checks its `run:` grant. */
  readonly spawn: (command: string, options?: SpawnOptions) => ChildProcess;
  readonly logger?: Logger;
  /** The interpreter command; default {@link PYTHON_COMMAND}. It must be granted as `run:<it>`. */
  readonly python?: string;
  /** Default time limit of `python/run` and `python/execute`, in ms; default none. */
  readonly timeoutMs?: number;
}

const DESCRIBE_TIMEOUT_MS = 30_000;
/** After the process exits, how long its output pipes may stay open (a leftover grandchild). */
const DRAIN_GRACE_MS = 1_000;
const STDERR_TAIL_CHARS = 4_000;
const MARK = "\u001eKEEL_RESULT:";

/** The runner's error report, as `runner.py` writes it. */
interface RunnerError {
  readonly kind: string;
  readonly [key: string]: unknown;
}

type RunnerFrame = { ok: true; value: unknown } | { ok: false; error: RunnerError };

/** One call's request to the runner. */
interface RunnerRequest {
  readonly mode: "run" | "execute" | "describe";
  readonly label: string;
  readonly timeoutMs: number | undefined;
  readonly signal: AbortSignal | undefined;
  readonly body: Record<string, unknown>;
  /** Called with each line the script prints, as it prints it. */
  readonly onLine?: (stream: "stdout" | "stderr", line: string) => void;
}

interface RunnerOutcome {
  readonly frame: RunnerFrame;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Creates the `python/v1` executor.
 *
 * @throws {KeelError} from `execute`: `E_PYTHON_NOT_FOUND`, `E_PYTHON_FAILED`, `E_SCRIPT_NOT_FOUND`,
 *   `E_SCRIPT_TIMEOUT`, `E_SCRIPT_RESULT`, `E_SCRIPT_ENTRYPOINT`, `E_CONFIG_INVALID`,
 *   `E_RUNTIME_NOT_FOUND` (a missing `cwd`), `E_RUN_INTERRUPTED` (aborted); `TypeError` and
 *   `RangeError` for bad params.
 */
export function createPythonExecutor(options: PythonExecutorOptions): Executor {
  const python = options.python ?? PYTHON_COMMAND;
  const logger = options.logger;
  if (options.timeoutMs !== undefined) checkTimeoutMs(options.timeoutMs, "timeoutMs");
  const runner = runnerPath();

  async function call(request: RunnerRequest): Promise<RunnerOutcome> {
    const nonce = crypto.randomUUID().replaceAll("-", "");
    let input: Uint8Array;
    try {
      input = new TextEncoder().encode(
        JSON.stringify({ ...request.body, mode: request.mode, nonce }),
      );
    } catch (e) {
      throw new TypeError(`The params of "${request.label}" must be JSON: ${messageOf(e)}`, {
        cause: e,
      });
    }
    if (request.signal?.aborted) throw interrupted(request, request.signal.reason);
    let child: ChildProcess;
    try {
      child = options.spawn(python, {
        args: [runner],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        env: { PYTHONIOENCODING: "utf-8" },
      });
    } catch (e) {
      if (!KeelError.is(e, "E_RUNTIME_SPAWN")) throw e;
      throw new KeelError(
        "E_PYTHON_NOT_FOUND",
        `Could not start "${python}" (${e.message}); install Python 3 and put "${python}" on PATH`,
        { cause: e, details: { command: python } },
      );
    }
    return await supervise(child, request, nonce, input);
  }

  async function supervise(
    child: ChildProcess,
    request: RunnerRequest,
    nonce: string,
    input: Uint8Array,
  ): Promise<RunnerOutcome> {
    const out = new StdoutCollector(
      MARK + nonce + "\u001e",
      (line) => request.onLine?.("stdout", line),
    );
    const err = new OutputBuffer();
    const errLines = new LineSplitter((line) => {
      err.push(line);
      request.onLine?.("stderr", line);
    });
    const { status, stopped } = await superviseProcess(child, {
      ...(request.timeoutMs === undefined ? {} : { timeoutMs: request.timeoutMs }),
      ...(request.signal === undefined ? {} : { signal: request.signal }),
      stdin: input,
      onStdout: (text) => out.push(text),
      onStderr: (text) => errLines.push(text),
      drainGraceMs: DRAIN_GRACE_MS,
    });
    out.end();
    if (errLines.rest() !== "") request.onLine?.("stderr", errLines.rest());

    const stdout = out.text();
    const stderr = err.text(errLines.rest());
    if (stopped === "abort") throw interrupted(request, request.signal?.reason);
    const frame = out.frame();
    if (frame === undefined) {
      if (stopped === "timeout") throw timedOut(request, child.pid);
      const how = status.signal === null ? `with code ${status.code}` : `on ${status.signal}`;
      throw new KeelError(
        "E_PYTHON_FAILED",
        `Python exited ${how} before "${request.label}" reported a result` + tailNote(stderr),
        {
          details: {
            ...where(request),
            exitCode: status.code,
            signal: status.signal,
            stderr: tail(stderr),
          },
        },
      );
    }
    if (stopped === "timeout") {
      logger?.warn(
        "Python reported a result but did not exit within its time limit; it was killed",
        {
          script: request.label,
        },
      );
    }
    return { frame, stdout, stderr };
  }

  function valueOf(request: RunnerRequest, outcome: RunnerOutcome): unknown {
    const { frame } = outcome;
    if (frame.ok) return frame.value;
    throw failure(request, frame.error, outcome.stderr);
  }

  async function runScript(
    params: PythonRunParams,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    const label = labelOf(params.file);
    const log = logger === undefined ? undefined : childLogger(logger, {
      script: label,
      run: params.runId ?? crypto.randomUUID(),
    });
    const request: RunnerRequest = {
      mode: "run",
      label,
      timeoutMs: timeoutOf(params.timeout, options.timeoutMs),
      signal,
      body: {
        file: localPath(params.file),
        globals: params.globals ?? {},
        args: params.args ?? [],
        kwargs: params.kwargs ?? {},
        ...(params.entrypoint === undefined ? {} : { entrypoint: params.entrypoint }),
        ...(params.cwd === undefined ? {} : { cwd: params.cwd }),
      },
      ...(log === undefined ? {} : { onLine: (stream, line) => log.info(line, { stream }) }),
    };
    return valueOf(request, await call(request));
  }

  async function describeScript(
    params: PythonDescribeParams,
    signal: AbortSignal | undefined,
  ): Promise<PythonDefaults> {
    const request: RunnerRequest = {
      mode: "describe",
      label: labelOf(params.file),
      timeoutMs: timeoutOf(params.timeout, DESCRIBE_TIMEOUT_MS),
      signal,
      body: {
        file: localPath(params.file),
        ...(params.cwd === undefined ? {} : { cwd: params.cwd }),
      },
    };
    return valueOf(request, await call(request)) as PythonDefaults;
  }

  async function executeScript(
    params: PythonExecuteParams,
    signal: AbortSignal | undefined,
  ): Promise<PythonExecuteResult> {
    const source = params.code !== undefined
      ? { code: params.code }
      : { file: localPath(params.file!) };
    const request: RunnerRequest = {
      mode: "execute",
      label: params.code !== undefined ? "<code>" : labelOf(params.file!),
      timeoutMs: timeoutOf(params.timeout, options.timeoutMs),
      signal,
      body: {
        ...source,
        context: params.context ?? {},
        ...(params.cwd === undefined ? {} : { cwd: params.cwd }),
      },
    };
    const outcome = await call(request);
    const result = valueOf(request, outcome);
    return { success: true, result, stdout: outcome.stdout, stderr: outcome.stderr };
  }

  return Object.freeze({
    protocol: PYTHON_PROTOCOL,
    methods: Object.freeze([PYTHON_RUN, PYTHON_EXECUTE, PYTHON_DESCRIBE]),
    async execute(request: ExecuteRequest): Promise<unknown> {
      switch (request.method) {
        case PYTHON_RUN:
          return await runScript(checkRunParams(request.params), request.signal);
        case PYTHON_EXECUTE:
          return await executeScript(checkExecuteParams(request.params), request.signal);
        case PYTHON_DESCRIBE:
          return await describeScript(checkDescribeParams(request.params), request.signal);
        default:
          throw new RangeError(
            `Executor "${PYTHON_PROTOCOL}" has no method "${request.method}"; use "${PYTHON_RUN}", "${PYTHON_EXECUTE}" or "${PYTHON_DESCRIBE}"`,
          );
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Params

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkCommon(method: string, raw: Readonly<Record<string, unknown>>): void {
  const { cwd, timeout } = raw;
  if (cwd !== undefined && (typeof cwd !== "string" || cwd === "")) {
    throw new TypeError(`"${method}" param "cwd" must be a non-empty path`);
  }
  if (timeout !== undefined) {
    if (typeof timeout !== "number" || Number.isNaN(timeout)) {
      throw new TypeError(`"${method}" param "timeout" must be a number of seconds`);
    }
    if (!(timeout > 0) || !Number.isFinite(timeout)) {
      throw new RangeError(
        `"${method}" param "timeout" must be a positive number of seconds, got ${timeout}`,
      );
    }
  }
}

function checkFile(method: string, file: unknown, required: boolean): void {
  if (file === undefined && !required) return;
  if (typeof file !== "string" || file === "") {
    throw new TypeError(`"${method}" needs "file": a path or file: URL of the Python script`);
  }
}

function checkRunParams(raw: Readonly<Record<string, unknown>>): PythonRunParams {
  if (!isRecord(raw)) {
    throw new TypeError(
      `"${PYTHON_RUN}" takes params { file, globals?, args?, kwargs?, entrypoint? }`,
    );
  }
  checkFile(PYTHON_RUN, raw.file, true);
  checkCommon(PYTHON_RUN, raw);
  const { globals, args, kwargs, entrypoint, runId } = raw;
  if (globals !== undefined && !isRecord(globals)) {
    throw new TypeError(`"${PYTHON_RUN}" param "globals" must be an object of overrides by name`);
  }
  if (args !== undefined && !Array.isArray(args)) {
    throw new TypeError(`"${PYTHON_RUN}" param "args" must be an array of positional arguments`);
  }
  if (kwargs !== undefined && !isRecord(kwargs)) {
    throw new TypeError(`"${PYTHON_RUN}" param "kwargs" must be an object of keyword arguments`);
  }
  if (entrypoint !== undefined && (typeof entrypoint !== "string" || entrypoint === "")) {
    throw new TypeError(`"${PYTHON_RUN}" param "entrypoint" must be a non-empty function name`);
  }
  if (runId !== undefined && typeof runId !== "string") {
    throw new TypeError(`"${PYTHON_RUN}" param "runId" must be a string`);
  }
  return raw as unknown as PythonRunParams;
}

function checkDescribeParams(raw: Readonly<Record<string, unknown>>): PythonDescribeParams {
  if (!isRecord(raw)) throw new TypeError(`"${PYTHON_DESCRIBE}" takes params { file, cwd? }`);
  checkFile(PYTHON_DESCRIBE, raw.file, true);
  checkCommon(PYTHON_DESCRIBE, raw);
  return raw as unknown as PythonDescribeParams;
}

function checkExecuteParams(raw: Readonly<Record<string, unknown>>): PythonExecuteParams {
  if (!isRecord(raw)) {
    throw new TypeError(`"${PYTHON_EXECUTE}" takes params { file | code, context?, timeout? }`);
  }
  const { file, code, context } = raw;
  if ((file === undefined) === (code === undefined)) {
    throw new TypeError(
      `"${PYTHON_EXECUTE}" needs exactly one of "file" (a script path) and "code" (Python source)`,
    );
  }
  checkFile(PYTHON_EXECUTE, file, false);
  if (code !== undefined && typeof code !== "string") {
    throw new TypeError(`"${PYTHON_EXECUTE}" param "code" must be a string of Python source`);
  }
  if (context !== undefined && !isRecord(context)) {
    throw new TypeError(
      `"${PYTHON_EXECUTE}" param "context" must be an object (the script's \`context\` dict)`,
    );
  }
  checkCommon(PYTHON_EXECUTE, raw);
  return raw as unknown as PythonExecuteParams;
}

function checkTimeoutMs(ms: number, name: string): void {
  if (typeof ms !== "number" || !(ms > 0) || !Number.isFinite(ms)) {
    throw new RangeError(`"${name}" must be a positive number of milliseconds, got ${String(ms)}`);
  }
}

function timeoutOf(
  seconds: number | undefined,
  fallbackMs: number | undefined,
): number | undefined {
  return seconds === undefined ? fallbackMs : Math.ceil(seconds * 1000);
}

/** A `file:` URL becomes a path; other paths go to Python as given (relative ones meet `cwd` there). */
function localPath(file: string): string {
  if (file.startsWith("file:")) return fromFileUrl(file);
  if (/^[a-z][a-z0-9+.-]+:/i.test(file)) {
    throw new TypeError(`Script "${file}" must be a local file: a path or a file: URL`);
  }
  return file;
}

function labelOf(file: string): string {
  try {
    return basename(localPath(file));
  } catch {
    return file;
  }
}

function runnerPath(): string {
  const url = new URL("./runner.py", import.meta.url);
  if (url.protocol !== "file:") {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      `executor-python needs its runner.py on disk, but it was loaded from "${url.href}"; install the plugin locally`,
    );
  }
  return fromFileUrl(url);
}

// ---------------------------------------------------------------------------------------------
// Errors

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function tail(text: string): string {
  return text.length > STDERR_TAIL_CHARS ? text.slice(-STDERR_TAIL_CHARS) : text;
}

function tailNote(stderr: string): string {
  const last = stderr.trimEnd().split("\n").slice(-3).join(" | ").trim();
  return last === "" ? "" : `: ${last.length > 300 ? last.slice(-300) : last}`;
}

function where(request: RunnerRequest): Record<string, unknown> {
  return { script: request.label, method: `python/${request.mode}` };
}

function timedOut(request: RunnerRequest, pid: number): KeelError {
  const ms = request.timeoutMs ?? 0;
  const limit = ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
  return new KeelError(
    "E_SCRIPT_TIMEOUT",
    `Script "${request.label}" did not finish within ${limit} and was stopped; raise its timeout or make it faster`,
    { details: { ...where(request), timeoutMs: ms, pid } },
  );
}

function interrupted(request: RunnerRequest, reason: unknown): KeelError {
  if (KeelError.is(reason)) return reason;
  const options = { cause: reason, details: where(request) };
  if (reason instanceof Error && reason.name === "TimeoutError") {
    const why = `Script "${request.label}" was stopped: ${reason.message}`;
    return new KeelError("E_SCRIPT_TIMEOUT", why, options);
  }
  const why = `Script "${request.label}" was stopped: its run was cancelled`;
  return new KeelError("E_RUN_INTERRUPTED", why, options);
}

function quoteAll(names: readonly string[]): string {
  return names.map((n) => `"${n}"`).join(", ");
}

/** The KeelError for a failure the runner reported. */
function failure(request: RunnerRequest, error: RunnerError, stderr: string): KeelError {
  const script = request.label;
  const at = where(request);
  switch (error.kind) {
    case "not_found": {
      const path = String(error.path);
      const why = `Script "${path}" does not exist; check the path ` +
        `(a relative one starts at the working directory)`;
      return new KeelError("E_SCRIPT_NOT_FOUND", why, { details: { ...at, file: path } });
    }
    case "cwd": {
      const path = String(error.path);
      const why = `Working directory "${path}" for "${script}" does not exist; check "cwd"`;
      return new KeelError("E_RUNTIME_NOT_FOUND", why, { details: { ...at, path } });
    }
    case "config": {
      const key = String(error.name);
      const why =
        `Global "${key}" of "${script}" cannot be overridden: it ${String(error.reason)}; ` +
        `override a module-level variable of the script`;
      return new KeelError("E_CONFIG_INVALID", why, { details: { ...at, key } });
    }
    case "entrypoint": {
      const callables = Array.isArray(error.callables) ? error.callables.map(String) : [];
      const listed = callables.length
        ? `its functions are ${quoteAll(callables)}`
        : "it defines no functions";
      const why = error.name === null
        ? `Script "${script}" was given args or kwargs but has no main() or run() to take them ` +
          `(${listed}); define one or name the entrypoint`
        : `Script "${script}" has no function "${String(error.name)}" (${listed}); ` +
          `name a function it defines as the entrypoint`;
      const details = { ...at, entrypoint: error.name, callables };
      return new KeelError("E_SCRIPT_ENTRYPOINT", why, { details });
    }
    case "arguments": {
      const reason = String(error.message);
      const why = `The entrypoint of "${script}" does not accept the args and kwargs given: ` +
        `${reason}; match them to its signature`;
      return new KeelError("E_CONFIG_INVALID", why, { details: { ...at, reason } });
    }
    case "result": {
      const why = `Script "${script}" produced a result that is not JSON: ` +
        `${String(error.path)} ${String(error.reason)}; ` +
        `return only dicts, lists, strings, numbers, booleans and None`;
      const details = { ...at, path: error.path, type: error.type };
      return new KeelError("E_SCRIPT_RESULT", why, { details });
    }
    case "exit": {
      const text = typeof error.message === "string" ? `: ${error.message}` : tailNote(stderr);
      const why = `Script "${script}" exited with code ${String(error.code)}${text}`;
      const details = { ...at, exitCode: error.code, stderr: tail(stderr) };
      return new KeelError("E_PYTHON_FAILED", why, { details });
    }
    case "exception": {
      const frames = Array.isArray(error.frames) ? (error.frames as Record<string, unknown>[]) : [];
      const last = frames[frames.length - 1];
      const syntax = error.syntax as Record<string, unknown> | undefined;
      const place = syntax
        ? ` (${basename(String(syntax.file ?? script))}:${String(syntax.line)})`
        : last
        ? ` (${basename(String(last.file))}:${String(last.line)} in ${String(last.function)})`
        : "";
      const message = String(error.message);
      const why = `Script "${script}" raised ${String(error.type)}: ${message}${place}`;
      const details = {
        ...at,
        type: error.type,
        message: error.message,
        frames,
        traceback: error.traceback,
        ...(syntax ? { syntax } : {}),
        stderr: tail(stderr),
      };
      return new KeelError("E_PYTHON_FAILED", why, { details });
    }
    default: {
      const why = `The Python runner failed on "${script}" ` +
        `(${String(error.message ?? error.kind)}); this is a bug in executor-python`;
      return new KeelError("E_PYTHON_FAILED", why, {
        details: { ...at, ...error, stderr: tail(stderr) },
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Output

/**
 * Splits text into lines as it arrives; `rest()` is what followed the last newline. Linear in the
 * input, however many chunks a long line (a large result) comes in.
 */
class LineSplitter {
  #pending: string[] = [];
  readonly #onLine: (line: string) => void;
  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }
  push(text: string): void {
    let start = 0;
    for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
      const piece = text.slice(start, nl);
      const line = this.#pending.length === 0 ? piece : this.#pending.join("") + piece;
      this.#pending = [];
      start = nl + 1;
      this.#onLine(line);
    }
    if (start < text.length) this.#pending.push(text.slice(start));
  }
  rest(): string {
    return this.#pending.join("");
  }
}

/** Lines kept up to {@link MAX_CAPTURE_CHARS} characters, dropping the oldest beyond. */
class OutputBuffer {
  #lines: string[] = [];
  #head = 0;
  #chars = 0;
  /** How many lines, and characters, were dropped from the front. */
  droppedLines = 0;
  droppedChars = 0;
  push(line: string): void {
    this.#lines.push(line);
    this.#chars += line.length + 1;
    while (this.#chars > MAX_CAPTURE_CHARS && this.#lines.length - this.#head > 1) {
      const gone = this.#lines[this.#head++]!;
      this.#chars -= gone.length + 1;
      this.droppedLines++;
      this.droppedChars += gone.length + 1;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#lines.length) {
      this.#lines = this.#lines.slice(this.#head);
      this.#head = 0;
    }
  }
  /** The lines kept, oldest first. */
  lines(): string[] {
    return this.#lines.slice(this.#head);
  }
  note(): string {
    return this.droppedChars > 0 ? `[${this.droppedChars} earlier characters dropped]\n` : "";
  }
  text(rest: string): string {
    return this.note() + [...this.lines(), rest].join("\n");
  }
}

/**
 * The runner's stdout: the script's lines, then the frame line (`\n` + marker + JSON + `\n`), then
 * anything printed during interpreter shutdown. Reassembles the script's output exactly, without
 * the frame and the newline the runner put before it, and forwards each of the script's lines.
 */
class StdoutCollector {
  readonly #marker: string;
  readonly #forward: (line: string) => void;
  readonly #splitter = new LineSplitter((line) => this.#line(line));
  readonly #kept = new OutputBuffer();
  #pushed = 0;
  /** How many of the script's lines came before the (last) frame. */
  #frameAt: number | undefined;
  #frame: string | undefined;
  /** An empty line waits: right before the frame it is the runner's separator. */
  #heldEmpty = false;

  constructor(marker: string, forward: (line: string) => void) {
    this.#marker = marker;
    this.#forward = forward;
  }

  push(text: string): void {
    this.#splitter.push(text);
  }

  end(): void {
    if (this.#heldEmpty) this.#forward("");
    this.#heldEmpty = false;
    const rest = this.#splitter.rest();
    if (rest !== "") this.#forward(rest);
  }

  #line(line: string): void {
    if (line.startsWith(this.#marker)) {
      this.#heldEmpty = false;
      this.#frame = line.slice(this.#marker.length);
      this.#frameAt = this.#pushed;
      return;
    }
    this.#kept.push(line);
    this.#pushed++;
    if (this.#heldEmpty) this.#forward("");
    this.#heldEmpty = line === "";
    if (!this.#heldEmpty) this.#forward(line);
  }

  frame(): RunnerFrame | undefined {
    if (this.#frame === undefined) return undefined;
    try {
      return JSON.parse(this.#frame) as RunnerFrame;
    } catch {
      return { ok: false, error: { kind: "internal", message: "its report was not valid JSON" } };
    }
  }

  /** The script's stdout as it printed it. */
  text(): string {
    const rest = this.#splitter.rest();
    if (this.#frameAt === undefined) return this.#kept.text(rest);
    const lines = this.#kept.lines();
    const split = Math.max(0, this.#frameAt - this.#kept.droppedLines);
    const before = lines.slice(0, split).join("\n");
    const after = lines.slice(split).map((l) => l + "\n").join("") + rest;
    return this.#kept.note() + before + after;
  }
}

// ---------------------------------------------------------------------------------------------
// Plugin

/** The executor-python plugin: answers `resolveExecutor("python/v1")`; needs `run:python3`. */
export default definePlugin({
  name: "executor-python",
  version: "0.1.0",
  kernel: "^1",
  description:
    "python/v1: runs Python scripts with injected globals (python/run) or a Gleitzeit context (python/execute)",
  capabilities: [`run:${PYTHON_COMMAND}`],
  setup(ctx) {
    const executor = createPythonExecutor({ spawn: ctx.spawn, logger: ctx.logger });
    return {
      resolveExecutor: (protocol) => (protocol === PYTHON_PROTOCOL ? executor : undefined),
    };
  },
});
