/**
 * executor-shell: the `shell/v1` protocol. One method, `shell/exec` ({@link ShellExecParams}),
 * starts a program directly (no shell: `command` is the program, `args` its arguments, nothing is
 * split, globbed or expanded) and resolves to {@link ShellExecResult} `{ stdout, stderr, code }`.
 * To get a shell, ask for one: `{ command: "sh", args: ["-c", "ls | wc -l"] }`.
 *
 * Capabilities: a program runs through `ctx.spawn`, which checks `run:<program>` on every call, so
 * the manifest must ask for each program the plugin may start. {@link createShellPlugin} takes the
 * list (`createShellPlugin({ commands: ["echo", "sh"] })` asks for `run:echo` and `run:sh`), and a
 * program outside it is refused with `E_CAPABILITY_DENIED`. The default export asks for `run`, any
 * program: a shell executor runs what a workflow names, and there is no safe subset to pretend to
 * (`cat` reads any file, `sh` does anything). A host that wants less grants a plugin made with
 * `createShellPlugin({ commands })` instead. Either way a `run` grant is full trust for what it names.
 *
 * Failures, always thrown, never returned:
 * - a non-zero exit (or a death by signal) is `E_SHELL_FAILED` with the exit code and the last
 *   lines of stderr, unless the task says `allow_failure: true`, which returns the result as is;
 * - `timeout` (seconds) or the executor's `timeoutMs` passing kills the process (SIGKILL) and
 *   throws `E_TASK_TIMEOUT`; aborting the request's signal kills it too and throws the signal's
 *   reason when it is a KeelError, `E_TASK_TIMEOUT` for a `TimeoutError`, else `E_RUN_INTERRUPTED`;
 * - a program that cannot be started (not installed, not on PATH, a missing `cwd`) is
 *   `E_RUNTIME_SPAWN`.
 *
 * Output keeps the last {@link MAX_CAPTURE_CHARS} characters of each stream. Processes the program
 * started itself are not killed with it; their hold on its pipes is let go of shortly after it exits.
 * @module
 */

import {
  type ChildProcess,
  definePlugin,
  type ExecuteRequest,
  type Executor,
  KeelError,
  type Plugin,
  type PluginContext,
  superviseProcess,
} from "../../core/mod.ts";

/** The protocol this plugin answers `resolveExecutor` for. */
export const SHELL_PROTOCOL = "shell/v1";

/** Runs one program to completion. */
export const SHELL_EXEC = "shell/exec";

/** How many characters of each output stream a call keeps (the last ones). */
export const MAX_CAPTURE_CHARS = 1_000_000;

/** How long output is still read after the program exits, when something else holds its pipes. */
const DRAIN_GRACE_MS = 250;

const STDERR_TAIL_CHARS = 4_000;

/** The params of `shell/exec`. */
export interface ShellExecParams {
  /** The program: a name looked up on PATH, or a path. It must be granted as `run:<command>`. */
  readonly command: string;
  /** Its arguments, passed as they are. */
  readonly args?: readonly string[];
  /** Its working directory; default the host's. */
  readonly cwd?: string;
  /** Variables added to the inherited environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Text written to its stdin, then end-of-file; without it stdin is empty (`/dev/null`). */
  readonly stdin?: string;
  /** Seconds before it is killed; default the executor's `timeoutMs`, else none. */
  readonly timeout?: number;
  /** Return a non-zero exit as a result instead of throwing `E_SHELL_FAILED`. */
  readonly allow_failure?: boolean;
}

/** What `shell/exec` resolves to. */
export interface ShellExecResult {
  readonly stdout: string;
  readonly stderr: string;
  /** The exit code; 128 + the signal number when a signal ended it. */
  readonly code: number;
}

/** What {@link createShellExecutor} needs. */
export interface ShellExecutorOptions {
  /** Starts a program; pass the plugin context's `spawn` so the grant is checked. */
  readonly spawn: PluginContext["spawn"];
  /** Default limit per call, in milliseconds, when the params give no `timeout`. */
  readonly timeoutMs?: number;
}

/** Options of {@link createShellPlugin}. */
export interface ShellPluginOptions {
  /**
   * The programs the plugin may start; the manifest asks for `run:<command>` for each. Omitted:
   * it asks for `run`, any program.
   */
  readonly commands?: readonly string[];
  /** Default limit per call, in milliseconds. */
  readonly timeoutMs?: number;
}

/**
 * Creates the `shell/v1` executor over a `spawn` function.
 * @throws {RangeError} when `timeoutMs` is not a positive number.
 */
export function createShellExecutor(options: ShellExecutorOptions): Executor {
  if (options.timeoutMs !== undefined) checkTimeoutMs(options.timeoutMs);

  async function exec(params: ShellExecParams, signal: AbortSignal | undefined): Promise<ShellExecResult> {
    const label = params.command;
    if (signal?.aborted) throw interrupted(label, signal.reason);
    const timeoutMs = params.timeout === undefined ? options.timeoutMs : Math.ceil(params.timeout * 1000);
    let child: ChildProcess;
    try {
      child = options.spawn(params.command, {
        args: params.args ?? [],
        ...(params.cwd === undefined ? {} : { cwd: params.cwd }),
        ...(params.env === undefined ? {} : { env: params.env }),
        stdin: params.stdin === undefined ? "null" : "piped",
        stdout: "piped",
        stderr: "piped",
      });
    } catch (e) {
      if (KeelError.is(e, "E_RUNTIME_SPAWN")) {
        throw new KeelError(
          "E_RUNTIME_SPAWN",
          `${SHELL_EXEC}: ${e.message}`,
          { cause: e, details: { ...e.details, command: params.command } },
        );
      }
      throw e;
    }

    const out = new TailText();
    const err = new TailText();
    const { status, stopped } = await superviseProcess(child, {
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      ...(signal === undefined ? {} : { signal }),
      ...(params.stdin === undefined ? {} : { stdin: params.stdin }),
      onStdout: (text) => out.push(text),
      onStderr: (text) => err.push(text),
      drainGraceMs: DRAIN_GRACE_MS,
    });

    const stdout = out.text();
    const stderr = err.text();
    const where = { command: params.command, args: params.args ?? [], pid: child.pid };
    if (stopped === "abort") throw interrupted(label, signal?.reason, where);
    if (stopped === "timeout") {
      const ms = timeoutMs ?? 0;
      const limit = ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
      throw new KeelError(
        "E_TASK_TIMEOUT",
        `Command "${label}" did not finish within ${limit} and was killed; raise its "timeout" or make it faster`,
        { details: { ...where, timeoutMs: ms, stdout: tail(stdout), stderr: tail(stderr) } },
      );
    }
    const result: ShellExecResult = { stdout, stderr, code: status.code };
    if (status.success || params.allow_failure === true) return result;
    const how = status.signal === null ? `exited with code ${status.code}` : `was ended by ${status.signal}`;
    throw new KeelError(
      "E_SHELL_FAILED",
      `Command "${label}" ${how}${tailNote(stderr)}; fix the command, or set "allow_failure: true" to take the result anyway`,
      {
        details: { ...where, exitCode: status.code, signal: status.signal, stderr: tail(stderr), stdout: tail(stdout) },
      },
    );
  }

  return Object.freeze({
    protocol: SHELL_PROTOCOL,
    methods: Object.freeze([SHELL_EXEC]),
    async execute(request: ExecuteRequest): Promise<unknown> {
      if (request.method !== SHELL_EXEC) {
        throw new RangeError(`Executor "${SHELL_PROTOCOL}" has no method "${request.method}"; use "${SHELL_EXEC}"`);
      }
      return await exec(checkParams(request.params), request.signal);
    },
  });
}

/**
 * A `shell/v1` plugin whose manifest asks for `run:<command>` for each of `commands` (or `run`,
 * any program, when omitted).
 * @throws {TypeError} when a command is not a non-empty string.
 */
export function createShellPlugin(options: ShellPluginOptions = {}): Plugin {
  const { commands, timeoutMs } = options;
  if (commands !== undefined) {
    if (!Array.isArray(commands)) throw new TypeError(`"commands" must be an array of program names`);
    for (const c of commands) {
      if (typeof c !== "string" || c === "" || c.includes("\0")) {
        throw new TypeError(`Each of "commands" must be a non-empty program name, got ${JSON.stringify(c)}`);
      }
    }
  }
  if (timeoutMs !== undefined) checkTimeoutMs(timeoutMs);
  const capabilities = commands === undefined ? ["run"] : [...new Set(commands)].map((c) => `run:${c}`);
  return definePlugin({
    name: "executor-shell",
    version: "0.1.0",
    kernel: "^1",
    description: "shell/v1: runs a program directly (shell/exec) and returns { stdout, stderr, code }",
    capabilities,
    setup(ctx) {
      const executor = createShellExecutor({
        spawn: ctx.spawn,
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
      });
      return {
        resolveExecutor: (protocol) => (protocol === SHELL_PROTOCOL ? executor : undefined),
      };
    },
  });
}

/** The executor-shell plugin asking for `run` (any program); see {@link createShellPlugin} to narrow it. */
const executorShell: Plugin = createShellPlugin();
export default executorShell;

// ---------------------------------------------------------------------------------------------

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkParams(raw: Readonly<Record<string, unknown>>): ShellExecParams {
  const usage = `"${SHELL_EXEC}" takes params { command, args?, cwd?, env?, stdin?, timeout?, allow_failure? }`;
  if (!isRecord(raw)) throw new TypeError(usage);
  const { command, args, cwd, env, stdin, timeout, allow_failure } = raw;
  if (typeof command !== "string" || command === "" || command.includes("\0")) {
    throw new TypeError(`${usage}; "command" must be a program name or path, got ${JSON.stringify(command)}`);
  }
  if (args !== undefined && (!Array.isArray(args) || !args.every((a) => typeof a === "string"))) {
    throw new TypeError(`"${SHELL_EXEC}" param "args" must be an array of strings`);
  }
  if (cwd !== undefined && (typeof cwd !== "string" || cwd === "")) {
    throw new TypeError(`"${SHELL_EXEC}" param "cwd" must be a non-empty path`);
  }
  if (env !== undefined && (!isRecord(env) || !Object.values(env).every((v) => typeof v === "string"))) {
    throw new TypeError(`"${SHELL_EXEC}" param "env" must be an object of string values`);
  }
  if (stdin !== undefined && typeof stdin !== "string") {
    throw new TypeError(`"${SHELL_EXEC}" param "stdin" must be a string`);
  }
  if (timeout !== undefined) {
    if (typeof timeout !== "number" || Number.isNaN(timeout)) {
      throw new TypeError(`"${SHELL_EXEC}" param "timeout" must be a number of seconds`);
    }
    if (!(timeout > 0) || !Number.isFinite(timeout)) {
      throw new RangeError(`"${SHELL_EXEC}" param "timeout" must be a positive number of seconds, got ${timeout}`);
    }
  }
  if (allow_failure !== undefined && typeof allow_failure !== "boolean") {
    throw new TypeError(`"${SHELL_EXEC}" param "allow_failure" must be true or false`);
  }
  return raw as unknown as ShellExecParams;
}

function checkTimeoutMs(ms: number): void {
  if (typeof ms !== "number" || !(ms > 0) || !Number.isFinite(ms)) {
    throw new RangeError(`"timeoutMs" must be a positive number of milliseconds, got ${String(ms)}`);
  }
}

function interrupted(label: string, reason: unknown, details: Record<string, unknown> = { command: label }): KeelError {
  if (KeelError.is(reason)) return reason;
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return new KeelError("E_TASK_TIMEOUT", `Command "${label}" was killed: ${reason.message}`, { cause: reason, details });
  }
  return new KeelError("E_RUN_INTERRUPTED", `Command "${label}" was killed: its run was cancelled`, {
    cause: reason,
    details,
  });
}

function tail(text: string): string {
  return text.length > STDERR_TAIL_CHARS ? text.slice(-STDERR_TAIL_CHARS) : text;
}

function tailNote(stderr: string): string {
  const last = stderr.trimEnd().split("\n").slice(-3).join(" | ").trim();
  return last === "" ? "" : `: ${last.length > 300 ? last.slice(-300) : last}`;
}

/** Text kept up to {@link MAX_CAPTURE_CHARS} characters, dropping the oldest beyond. */
class TailText {
  #chunks: string[] = [];
  #chars = 0;
  #dropped = 0;
  push(text: string): void {
    this.#chunks.push(text);
    this.#chars += text.length;
    while (this.#chars > MAX_CAPTURE_CHARS && this.#chunks.length > 1) {
      const gone = this.#chunks.shift()!;
      this.#chars -= gone.length;
      this.#dropped += gone.length;
    }
  }
  text(): string {
    let text = this.#chunks.join("");
    let dropped = this.#dropped;
    if (text.length > MAX_CAPTURE_CHARS) {
      dropped += text.length - MAX_CAPTURE_CHARS;
      text = text.slice(-MAX_CAPTURE_CHARS);
    }
    return dropped > 0 ? `[${dropped} earlier characters dropped]\n${text}` : text;
  }
}
