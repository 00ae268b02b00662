/**
 * The "deno-ses" sandbox backend: a pool of `deno run` subprocesses with no permission flags and
 * an empty environment, each locked down by SES once (`child.mjs`); every run gets a fresh SES
 * Compartment in one of them.
 *
 * Two walls stand between the code and the host. SES confines it to the globals its Compartment
 * was given (`tools`/`codemode`, `context`, `console`); and should that fail, the process itself
 * may read no file, environment variable or network address and start nothing, since Deno was
 * given no `--allow-*` flag (and `--no-prompt`, so it never asks).
 *
 * What the host keeps:
 * - one run at a time per process, so a synchronous loop or a kill touches no other run; runs
 *   wait in a FIFO queue (up to `maxQueue`, then `E_SANDBOX_BUSY`) when `maxProcesses` are busy;
 * - processes are keyed by `memoryMb`, the V8 heap cap they were started with;
 * - the deadline, from when a run is sent to its process: past it the process is killed
 *   (SIGKILL) and the run ends `E_SANDBOX_TIMEOUT`; an abort does the same with
 *   `E_SANDBOX_ABORTED`; a replacement starts when a run needs one;
 * - memory: V8 ends a process whose heap passes `memoryMb`; a watchdog thread in the process
 *   reports on stderr when its resident size passes what it had when ready plus `memoryMb` plus
 *   64 MiB (ArrayBuffers live outside the V8 heap), and the host kills it; either
 *   way the run ends `E_SANDBOX_MEMORY`. Any other death is `E_SANDBOX_CRASHED`.
 *
 * The resident size is watched from inside the process rather than by the host reading
 * `/proc/<pid>/status`: the pool holds only a spawn function (no file access, and a plugin's
 * `ctx.fs` would need a read grant for `/proc`), and `Deno.memoryUsage()` works on every OS. No
 * Compartment can reach that thread, and code that broke out of SES could not stop it either. The
 * same thread ends a process whose host died while a run holds its main thread (the parent pid
 * changes); an idle process exits when its stdin ends.
 *
 * Logs of a run whose process was killed are lost with it.
 * @module
 */

import {
  type ChildProcess,
  createSilentLogger,
  ErrorCode,
  type ErrorCodeName,
  errorMessage,
  EXECUTE_DEFAULTS,
  fromFileUrl,
  KeelError,
  type Logger,
  type Runtime,
  type SandboxBackend,
  type SandboxError,
  type SandboxOutcome,
  type SandboxRun,
  type SpawnOptions,
} from "../../core/mod.ts";

/** Options for {@link createProcessSandbox}. */
export interface ProcessSandboxOptions {
  /** Starts Keel's deno with these arguments (the plugin passes ctx.spawn("deno", ...), the CLI the runtime's denoPath). */
  readonly spawnDeno: (args: readonly string[], options: SpawnOptions) => ChildProcess;
  /** Most processes alive at once; default the CPU count, clamped to 2..8. */
  readonly maxProcesses?: number;
  /** Started by {@link ProcessSandbox.warm} and kept alive when idle; default 1. */
  readonly minProcesses?: number;
  /** Runs waiting for a process; past it `run()` rejects with `E_SANDBOX_BUSY`. Default 10 000. */
  readonly maxQueue?: number;
  /** Processes above `minProcesses` stop after this long idle; default 30 000. */
  readonly idleMs?: number;
  /** Where process start failures and stray output go; default nowhere. */
  readonly logger?: Logger;
}

/** A {@link SandboxBackend} over a pool of sandbox processes. */
export interface ProcessSandbox extends SandboxBackend {
  /**
   * Starts minProcesses processes (at the default memoryMb) and resolves when they are ready.
   * @throws {KeelError} `E_SANDBOX_UNAVAILABLE` when a process cannot start, `E_SANDBOX_CLOSED`
   */
  warm(memoryMb?: number): Promise<void>;
  /**
   * Counts: processes alive (starting ones included), busy with a run, runs queued, processes
   * started so far, and processes killed because of a run (deadline, abort, memory).
   */
  stats(): { processes: number; busy: number; queued: number; started: number; killed: number };
}

/** Resident memory a sandbox process may use beyond its heap cap: young generation, code, buffers. */
const RSS_HEADROOM_MB = 64;

/** How long a process may take to start and lock down. */
const STARTUP_TIMEOUT_MS = 30_000;
/** How long stderr is still read after a process exits, for its last words (an OOM report). */
const DRAIN_MS = 500;
const STDERR_TAIL_CHARS = 8 * 1024;
const MAX_STDERR_LINE_CHARS = 64 * 1024;
/** Mirrors `MAX_VALUE_CHARS` in child.mjs: the most a result or a tool input may take as JSON. */
const MAX_VALUE_CHARS = 64 * 1024 * 1024;
/** What a process may write on one line while no run is active. */
const MAX_IDLE_LINE_CHARS = 64 * 1024;
const MEMORY_MARKER = "KEEL_SANDBOX_MEMORY";

const CHILD_URL = new URL("./child.mjs", import.meta.url);

/** The variables a sandbox process starts with: none of the host's. */
const CHILD_ENV: Readonly<Record<string, string>> = Object.freeze({
  NO_COLOR: "1",
  DENO_NO_UPDATE_CHECK: "1",
});

/** The `deno` arguments of a sandbox process: no `--allow-*` flag at all. */
function childArgs(childPath: string, memoryMb: number): string[] {
  return [
    "run",
    "--no-prompt",
    "--no-config",
    "--no-lock",
    "--no-remote",
    "--node-modules-dir=manual",
    "--cached-only",
    `--v8-flags=--max-old-space-size=${memoryMb}`,
    childPath,
    String(memoryMb),
    String(RSS_HEADROOM_MB),
  ];
}

// -----------------------------------------------------------------------------------------------

interface Job {
  readonly id: number;
  readonly run: SandboxRun;
  readonly memoryMb: number;
  /** The run message, serialized once. */
  readonly line: string;
  readonly resolve: (outcome: SandboxOutcome) => void;
  readonly reject: (error: unknown) => void;
  onAbort: (() => void) | undefined;
  proc: Proc | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  settled: boolean;
}

type ProcState = "starting" | "idle" | "busy" | "gone";

interface Proc {
  readonly key: number;
  readonly child: ChildProcess;
  readonly writer: WritableStreamDefaultWriter<Uint8Array> | null;
  /** Resolves when the process is ready; rejects when it could not start. */
  readonly ready: Promise<void>;
  readonly markReady: () => void;
  readonly failStart: (error: KeelError) => void;
  state: ProcState;
  job: Job | undefined;
  wasReady: boolean;
  /** Set when the pool ended it on purpose. */
  stopped: boolean;
  overMemory: boolean;
  stderrTail: string;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
  startTimer: ReturnType<typeof setTimeout> | undefined;
}

const encoder = new TextEncoder();

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function positiveInteger(value: number | undefined, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    throw new TypeError(`${name} must be an integer of at least ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function closedError(): KeelError {
  return new KeelError("E_SANDBOX_CLOSED", 'Sandbox "deno-ses" was closed; create a new one');
}

function outcome(code: ErrorCodeName, message: string, details?: Record<string, unknown>): SandboxOutcome {
  const error: SandboxError = details === undefined ? { code, message } : { code, message, details };
  return { ok: false, error, logs: [], logsTruncated: false };
}

/** The error of a done message, with a code from the table (a process cannot make one up). */
function sandboxError(value: unknown): SandboxError {
  if (!isRecord(value)) {
    return { code: "E_SANDBOX_CRASHED", message: 'Sandbox "deno-ses" reported a failure without an error' };
  }
  const code = typeof value.code === "string" && Object.hasOwn(ErrorCode, value.code)
    ? (value.code as ErrorCodeName)
    : "E_SANDBOX_CODE_FAILED";
  const error: { -readonly [K in keyof SandboxError]: SandboxError[K] } = {
    code,
    message: typeof value.message === "string" ? value.message : String(value.message),
  };
  if (typeof value.name === "string") error.name = value.name;
  if (typeof value.stack === "string") error.stack = value.stack;
  return error;
}

function doneOutcome(message: Record<string, unknown>): SandboxOutcome {
  const logs = Array.isArray(message.logs) && message.logs.every((l) => typeof l === "string")
    ? (message.logs as string[])
    : [];
  const logsTruncated = message.logsTruncated === true;
  if (message.ok === true) {
    return "value" in message
      ? { ok: true, value: message.value, logs, logsTruncated }
      : { ok: true, logs, logsTruncated };
  }
  return { ok: false, error: sandboxError(message.error), logs, logsTruncated };
}

function deliver(onLine: (line: string) => void, line: string): void {
  try {
    onLine(line);
  } catch {
    // A throwing logger must not stop the reader, and with it every later answer.
  }
}

/** Reads `stream` as lines; a line past `maxChars()` goes to `onTooLong` with what arrived. */
async function readLines(
  stream: ReadableStream<Uint8Array> | null,
  onLine: (line: string) => void,
  maxChars: () => number,
  onTooLong: (partial: string) => boolean,
): Promise<void> {
  if (stream === null) return;
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let parts: string[] = [];
  let size = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      let start = 0;
      let nl: number;
      while ((nl = text.indexOf("\n", start)) >= 0) {
        let line = text.slice(start, nl);
        if (parts.length > 0) {
          parts.push(line);
          line = parts.join("");
          parts = [];
          size = 0;
        }
        deliver(onLine, line);
        start = nl + 1;
      }
      if (start < text.length) {
        const rest = start === 0 ? text : text.slice(start);
        parts.push(rest);
        size += rest.length;
        if (size > maxChars()) {
          const keepReading = onTooLong(parts.join(""));
          parts = [];
          size = 0;
          if (!keepReading) {
            await reader.cancel().catch(() => {});
            return;
          }
        }
      }
    }
    if (parts.length > 0) deliver(onLine, parts.join(""));
  } catch {
    // The pipe broke because the process died; its exit is handled elsewhere.
  }
}

class ProcessPool implements ProcessSandbox {
  readonly name = "deno-ses";
  readonly #spawnDeno: ProcessSandboxOptions["spawnDeno"];
  readonly #maxProcesses: number;
  readonly #minProcesses: number;
  readonly #maxQueue: number;
  readonly #idleMs: number;
  readonly #logger: Logger;
  readonly #procs = new Set<Proc>();
  readonly #idle = new Map<number, Proc[]>();
  readonly #exits = new Set<Promise<void>>();
  #queue: Job[] = [];
  #warmKey: number = EXECUTE_DEFAULTS.memoryMb;
  #nextId = 1;
  #busy = 0;
  #started = 0;
  #killed = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  #pumping = false;
  #pumpAgain = false;
  #childPath: string | undefined;

  constructor(options: ProcessSandboxOptions) {
    if (typeof options?.spawnDeno !== "function") {
      throw new TypeError("createProcessSandbox() needs spawnDeno, a function that starts deno");
    }
    this.#spawnDeno = options.spawnDeno;
    const cpus = typeof navigator === "object" && navigator?.hardwareConcurrency > 0
      ? navigator.hardwareConcurrency
      : 2;
    this.#maxProcesses = positiveInteger(options.maxProcesses, Math.min(8, Math.max(2, cpus)), "maxProcesses");
    this.#minProcesses = positiveInteger(options.minProcesses, 1, "minProcesses", 0);
    if (this.#minProcesses > this.#maxProcesses) {
      throw new RangeError(
        `minProcesses (${this.#minProcesses}) is over maxProcesses (${this.#maxProcesses})`,
      );
    }
    this.#maxQueue = positiveInteger(options.maxQueue, 10_000, "maxQueue", 0);
    this.#idleMs = positiveInteger(options.idleMs, 30_000, "idleMs", 0);
    this.#logger = options.logger ?? createSilentLogger();
  }

  stats(): { processes: number; busy: number; queued: number; started: number; killed: number } {
    return {
      processes: this.#procs.size,
      busy: this.#busy,
      queued: this.#queue.length,
      started: this.#started,
      killed: this.#killed,
    };
  }

  async warm(memoryMb: number = EXECUTE_DEFAULTS.memoryMb): Promise<void> {
    if (this.#closed) throw closedError();
    positiveInteger(memoryMb, memoryMb, "memoryMb");
    this.#warmKey = memoryMb;
    let have = 0;
    for (const proc of this.#procs) if (proc.key === memoryMb) have++;
    for (; have < this.#minProcesses && this.#procs.size < this.#maxProcesses; have++) {
      const proc = this.#spawn(memoryMb);
      if (proc instanceof KeelError) throw proc;
    }
    const starting = [...this.#procs].filter((p) => p.key === memoryMb && p.state === "starting");
    await Promise.all(starting.map((p) => p.ready));
  }

  run(run: SandboxRun): Promise<SandboxOutcome> {
    if (this.#closed) return Promise.reject(closedError());
    let line: string;
    let memoryMb: number;
    try {
      if (typeof run?.code !== "string") throw new TypeError("run.code must be a string");
      if (typeof run.callTool !== "function") throw new TypeError("run.callTool must be a function");
      for (const field of ["memoryMb", "timeoutMs", "maxLogBytes"] as const) {
        const value = run[field];
        if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
          throw new TypeError(`run.${field} must be a positive integer, got ${JSON.stringify(value)}`);
        }
      }
      memoryMb = run.memoryMb;
      line = JSON.stringify({
        t: "run",
        id: this.#nextId,
        code: run.code,
        context: run.context ?? {},
        maxLogBytes: run.maxLogBytes,
      });
    } catch (e) {
      return Promise.reject(e instanceof TypeError ? e : new TypeError(`run.context must be JSON data: ${errorMessage(e)}`));
    }
    if (run.signal?.aborted) return Promise.resolve(this.#abortedOutcome());
    return new Promise<SandboxOutcome>((resolve, reject) => {
      const job: Job = {
        id: this.#nextId++,
        run,
        memoryMb,
        line,
        resolve,
        reject,
        onAbort: undefined,
        proc: undefined,
        timer: undefined,
        settled: false,
      };
      const idle = this.#takeIdle(memoryMb);
      if (idle === undefined && this.#queue.length >= this.#maxQueue) {
        reject(
          new KeelError(
            "E_SANDBOX_BUSY",
            `Every sandbox process is busy and ${this.#queue.length} runs are waiting, the most this pool queues; retry later or raise maxQueue or maxProcesses`,
            { details: { queued: this.#queue.length, maxQueue: this.#maxQueue } },
          ),
        );
        return;
      }
      if (run.signal) {
        const onAbort = (): void => this.#stopJob(job, "abort");
        job.onAbort = onAbort;
        run.signal.addEventListener("abort", onAbort, { once: true });
      }
      if (idle !== undefined) {
        this.#dispatch(idle, job);
      } else {
        this.#queue.push(job);
        this.#pump();
      }
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    const queued = this.#queue;
    this.#queue = [];
    for (const job of queued) this.#settle(job, closedError());
    for (const proc of [...this.#procs]) {
      if (proc.job !== undefined) this.#settle(proc.job, closedError());
      this.#retire(proc);
    }
    await Promise.all([...this.#exits]);
  }

  // ---------------------------------------------------------------------------------------------
  // Scheduling

  #takeIdle(key: number): Proc | undefined {
    const list = this.#idle.get(key);
    return list === undefined ? undefined : list.pop();
  }

  #removeIdle(proc: Proc): void {
    const list = this.#idle.get(proc.key);
    if (list === undefined) return;
    const at = list.indexOf(proc);
    if (at >= 0) list.splice(at, 1);
  }

  #pump(): void {
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    try {
      do {
        this.#pumpAgain = false;
        this.#pumpOnce();
      } while (this.#pumpAgain);
    } finally {
      this.#pumping = false;
    }
  }

  /** Gives queued runs idle processes, in order, and starts the processes they still need. */
  #pumpOnce(): void {
    if (this.#closed) return;
    const starting = new Map<number, number>();
    for (const proc of this.#procs) {
      if (proc.state === "starting") starting.set(proc.key, (starting.get(proc.key) ?? 0) + 1);
    }
    for (let i = 0; i < this.#queue.length;) {
      const job = this.#queue[i]!;
      const idle = this.#takeIdle(job.memoryMb);
      if (idle !== undefined) {
        this.#queue.splice(i, 1);
        this.#dispatch(idle, job);
        continue;
      }
      const coming = starting.get(job.memoryMb) ?? 0;
      if (coming > 0) {
        starting.set(job.memoryMb, coming - 1);
        i++;
        continue;
      }
      if (this.#procs.size >= this.#maxProcesses) {
        // Make room with an idle process of another size, or wait for one to finish.
        let victim: Proc | undefined;
        for (const list of this.#idle.values()) if ((victim = list[0]) !== undefined) break;
        if (victim === undefined) return;
        this.#retire(victim);
      }
      const proc = this.#spawn(job.memoryMb);
      if (proc instanceof KeelError) {
        // Every queued run of that size was failed; look again from the start.
        this.#pumpAgain = true;
        return;
      }
      i++;
    }
  }

  #dispatch(proc: Proc, job: Job): void {
    clearTimeout(proc.idleTimer);
    proc.idleTimer = undefined;
    proc.state = "busy";
    proc.job = job;
    job.proc = proc;
    this.#busy++;
    this.#write(proc, job.line);
    job.timer = setTimeout(() => this.#stopJob(job, "timeout"), job.run.timeoutMs);
  }

  /** A process finished its run (or just started): it takes the next run or waits idle. */
  #release(proc: Proc): void {
    if (proc.state === "gone") return;
    if (this.#closed) {
      this.#retire(proc);
      return;
    }
    proc.state = "idle";
    let list = this.#idle.get(proc.key);
    if (list === undefined) this.#idle.set(proc.key, list = []);
    list.push(proc);
    this.#pump();
    if (proc.state === "idle" && proc.idleTimer === undefined) {
      proc.idleTimer = setTimeout(() => this.#onIdle(proc), this.#idleMs);
    }
  }

  #onIdle(proc: Proc): void {
    proc.idleTimer = undefined;
    if (proc.state !== "idle") return;
    let sameKey = 0;
    for (const p of this.#procs) if (p.key === this.#warmKey) sameKey++;
    if (proc.key !== this.#warmKey || sameKey > this.#minProcesses) this.#retire(proc);
  }

  /** Settles a job with an outcome, or rejects it with a KeelError. */
  #settle(job: Job, result: SandboxOutcome | KeelError): void {
    if (job.settled) return;
    job.settled = true;
    clearTimeout(job.timer);
    if (job.onAbort !== undefined) job.run.signal?.removeEventListener("abort", job.onAbort);
    const proc = job.proc;
    if (proc !== undefined && proc.job === job) {
      proc.job = undefined;
      this.#busy--;
    }
    if (result instanceof KeelError) job.reject(result);
    else job.resolve(result);
  }

  #abortedOutcome(): SandboxOutcome {
    return outcome("E_SANDBOX_ABORTED", "The execution was aborted by its caller");
  }

  /** Ends a job for a deadline, an abort or memory, killing its process when it has one. */
  #stopJob(job: Job, why: "timeout" | "abort" | "memory"): void {
    if (job.settled) return;
    const proc = job.proc;
    if (proc === undefined) {
      // Still queued: only an abort gets here.
      const at = this.#queue.indexOf(job);
      if (at >= 0) this.#queue.splice(at, 1);
    }
    const result = why === "abort"
      ? this.#abortedOutcome()
      : why === "timeout"
      ? outcome(
        "E_SANDBOX_TIMEOUT",
        `The code ran past its deadline of ${job.run.timeoutMs} ms and was stopped; make it do less per execution or raise timeoutMs`,
        { timeoutMs: job.run.timeoutMs },
      )
      : this.#memoryOutcome(job.memoryMb, false);
    this.#settle(job, result);
    if (proc !== undefined) {
      this.#killed++;
      this.#retire(proc);
      this.#pump();
    }
  }

  #memoryOutcome(memoryMb: number, heap: boolean): SandboxOutcome {
    return outcome(
      "E_SANDBOX_MEMORY",
      heap
        ? `The code went over its heap limit of ${memoryMb} MiB and was stopped; use less memory or raise memoryMb`
        : `The code's process went over ${memoryMb} MiB plus ${RSS_HEADROOM_MB} MiB of headroom resident and was stopped; use less memory (buffers count) or raise memoryMb`,
      { memoryMb, reason: heap ? "heap" : "resident" },
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Processes

  #resolveChildPath(): string {
    if (this.#childPath !== undefined) return this.#childPath;
    if (CHILD_URL.protocol !== "file:") {
      throw new KeelError(
        "E_SANDBOX_UNAVAILABLE",
        `Sandbox "deno-ses" needs its child script as a local file, but it was loaded from "${CHILD_URL.href}"; install Keel locally`,
      );
    }
    return this.#childPath = fromFileUrl(CHILD_URL);
  }

  /** Starts a process for `key`; on failure fails every queued run of that size and returns the error. */
  #spawn(key: number): Proc | KeelError {
    let child: ChildProcess;
    try {
      child = this.#spawnDeno(childArgs(this.#resolveChildPath(), key), {
        env: CHILD_ENV,
        clearEnv: true,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      });
    } catch (e) {
      const error = KeelError.is(e, "E_SANDBOX_UNAVAILABLE") ? e : new KeelError(
        "E_SANDBOX_UNAVAILABLE",
        `Sandbox "deno-ses" could not start deno (${errorMessage(e)}); check that Keel's deno is installed`,
        { cause: e },
      );
      this.#startFailed(key, error);
      return error;
    }
    let markReady!: () => void;
    let failStart!: (error: KeelError) => void;
    const ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failStart = reject;
    });
    ready.catch(() => {});
    const proc: Proc = {
      key,
      child,
      writer: child.stdin?.getWriter() ?? null,
      ready,
      markReady,
      failStart,
      state: "starting",
      job: undefined,
      wasReady: false,
      stopped: false,
      overMemory: false,
      stderrTail: "",
      idleTimer: undefined,
      startTimer: undefined,
    };
    this.#procs.add(proc);
    this.#started++;
    proc.startTimer = setTimeout(() => {
      if (proc.state !== "starting") return;
      this.#retire(proc);
      this.#startFailed(
        key,
        new KeelError(
          "E_SANDBOX_UNAVAILABLE",
          `A sandbox process did not start within ${STARTUP_TIMEOUT_MS} ms and was stopped; the host may be overloaded`,
        ),
      );
    }, STARTUP_TIMEOUT_MS);

    const out = readLines(
      child.stdout,
      (line) => this.#onStdout(proc, line),
      () => proc.job === undefined ? MAX_IDLE_LINE_CHARS : 6 * proc.job.run.maxLogBytes + 2 * MAX_VALUE_CHARS,
      () => {
        this.#logger.warn(`Sandbox process ${child.pid} wrote a line over the protocol's limit and was stopped`);
        const job = proc.job;
        if (job !== undefined) {
          this.#settle(
            job,
            outcome("E_SANDBOX_CRASHED", "The sandbox process broke its protocol (a line over the size limit) and was stopped"),
          );
        }
        this.#retire(proc);
        this.#pump();
        return false;
      },
    );
    const err = readLines(
      child.stderr,
      (line) => this.#onStderr(proc, line),
      () => MAX_STDERR_LINE_CHARS,
      (partial) => {
        this.#onStderr(proc, partial);
        return true;
      },
    );
    const exit = child.status.then(
      async (status) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          Promise.all([out, err]),
          new Promise<void>((resolve) => timer = setTimeout(resolve, DRAIN_MS)),
        ]);
        clearTimeout(timer);
        this.#onExit(proc, status.signal ?? `code ${status.code}`);
      },
      (e) => this.#onExit(proc, errorMessage(e)),
    );
    this.#exits.add(exit);
    exit.finally(() => this.#exits.delete(exit));
    return proc;
  }

  #write(proc: Proc, line: string): void {
    // A failed write means the process is gone; its exit settles what it was running.
    proc.writer?.write(encoder.encode(line + "\n")).catch(() => {});
  }

  /** Ends a process on purpose (SIGKILL); what it was running must be settled already. */
  #retire(proc: Proc): void {
    if (proc.state === "gone") return;
    proc.state = "gone";
    proc.stopped = true;
    this.#procs.delete(proc);
    this.#removeIdle(proc);
    clearTimeout(proc.idleTimer);
    clearTimeout(proc.startTimer);
    proc.failStart(closedError());
    proc.writer?.close().catch(() => {});
    proc.child.kill("SIGKILL");
  }

  #startFailed(key: number, error: KeelError): void {
    const failed = this.#queue.filter((job) => job.memoryMb === key);
    if (failed.length > 0) this.#queue = this.#queue.filter((job) => job.memoryMb !== key);
    for (const job of failed) this.#settle(job, error);
  }

  #onStdout(proc: Proc, line: string): void {
    if (line === "" || proc.state === "gone") return;
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      message = undefined;
    }
    if (!isRecord(message)) {
      this.#logger.debug(`Sandbox process ${proc.child.pid}: ${line.slice(0, 500)}`);
      return;
    }
    const job = proc.job;
    switch (message.t) {
      case "ready":
        if (proc.state !== "starting") return;
        clearTimeout(proc.startTimer);
        proc.wasReady = true;
        proc.markReady();
        this.#release(proc);
        return;
      case "done":
        if (job === undefined || message.id !== job.id) return;
        this.#settle(job, doneOutcome(message));
        this.#release(proc);
        return;
      case "tool":
        if (job === undefined || message.id !== job.id || typeof message.name !== "string") return;
        this.#callTool(proc, job, message.name, message.call, message.input);
        return;
    }
  }

  #callTool(proc: Proc, job: Job, name: string, call: unknown, input: unknown): void {
    let answer: Promise<unknown>;
    try {
      answer = Promise.resolve(job.run.callTool(name, input));
    } catch (e) {
      answer = Promise.reject(e);
    }
    const reply = (message: Record<string, unknown>): void => {
      if (job.settled || proc.job !== job) return;
      this.#write(proc, JSON.stringify({ t: "tool-result", id: job.id, call, ...message }));
    };
    answer.then(
      (value) => {
        let ok: boolean;
        try {
          JSON.stringify(value);
          ok = true;
        } catch {
          ok = false;
        }
        if (ok) reply({ ok: true, value });
        else {
          reply({
            ok: false,
            error: {
              code: "E_TOOL_OUTPUT_INVALID",
              message: `Tool "${name}" returned a value that cannot be sent to the sandbox as JSON`,
            },
          });
        }
      },
      (e) => {
        reply({
          ok: false,
          error: {
            code: KeelError.is(e) ? e.code : "E_TOOL_FAILED",
            message: errorMessage(e),
          },
        });
      },
    );
  }

  #onStderr(proc: Proc, line: string): void {
    if (line.startsWith(MEMORY_MARKER)) {
      proc.overMemory = true;
      const job = proc.job;
      if (job !== undefined) this.#stopJob(job, "memory");
      else {
        // The report came in just after its run ended.
        this.#retire(proc);
        this.#pump();
      }
      return;
    }
    proc.stderrTail = (proc.stderrTail + line + "\n").slice(-STDERR_TAIL_CHARS);
    if (line.trim() !== "") this.#logger.debug(`Sandbox process ${proc.child.pid}: ${line.slice(0, 500)}`);
  }

  #onExit(proc: Proc, how: string): void {
    const job = proc.job;
    const wasStarting = proc.state === "starting";
    const expected = proc.stopped;
    if (proc.state !== "gone") {
      proc.state = "gone";
      this.#procs.delete(proc);
      this.#removeIdle(proc);
      clearTimeout(proc.idleTimer);
      clearTimeout(proc.startTimer);
    }
    if (expected) return;
    const heap = /out of memory|Reached heap limit/i.test(proc.stderrTail);
    const last = proc.stderrTail.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !/^[#=]/.test(l));
    const hint = last.length === 0 ? "" : `: ${(last.find((l) => /error/i.test(l)) ?? last.at(-1)!).slice(0, 500)}`;
    if (job !== undefined) {
      this.#settle(
        job,
        heap || proc.overMemory ? this.#memoryOutcome(job.memoryMb, heap) : outcome(
          "E_SANDBOX_CRASHED",
          `The sandbox process ended unexpectedly (${how})${hint}; run the code again`,
          { exit: how },
        ),
      );
    }
    if (wasStarting || !proc.wasReady) {
      const error = new KeelError(
        "E_SANDBOX_UNAVAILABLE",
        `A sandbox process exited before it was ready (${how})${hint}; check that Keel's deno and the "ses" package are installed`,
        { details: { exit: how } },
      );
      proc.failStart(error);
      this.#logger.warn(error.message);
      this.#startFailed(proc.key, error);
      return;
    }
    this.#pump();
  }
}

/**
 * Creates the "deno-ses" sandbox: a pool of no-permission `deno run` processes, each running
 * one SES-confined run at a time. Close it when done; its processes keep the host alive.
 *
 * @throws {TypeError} without `spawnDeno`, or for a count that is not an integer
 * @throws {RangeError} when `minProcesses` is over `maxProcesses`
 * @example
 * ```ts ignore
 * const sandbox = createProcessSandbox({ spawnDeno: denoSpawner(await detectRuntime()) });
 * const executor = createCodeExecutor({ tools: registry, backend: sandbox });
 * const out = await executor.execute("return 2 + 2"); // out.result === 4
 * await executor.close();
 * ```
 */
export function createProcessSandbox(options: ProcessSandboxOptions): ProcessSandbox {
  return new ProcessPool(options);
}

/**
 * spawnDeno for a Runtime: runtime.processes.spawn(runtime.denoPath(), ...).
 * @throws {KeelError} `E_SANDBOX_UNAVAILABLE` when the runtime has no processes or denoPath, or
 *   finds no deno binary.
 */
export function denoSpawner(runtime: Runtime): ProcessSandboxOptions["spawnDeno"] {
  const processes = runtime.processes;
  if (processes === undefined || runtime.denoPath === undefined) {
    throw new KeelError(
      "E_SANDBOX_UNAVAILABLE",
      `The ${runtime.name} runtime cannot start processes, which the "deno-ses" sandbox needs; run Keel on Deno or Bun, or use the QuickJS sandbox`,
      { details: { runtime: runtime.name } },
    );
  }
  let denoPath: string;
  try {
    denoPath = runtime.denoPath();
  } catch (e) {
    throw new KeelError(
      "E_SANDBOX_UNAVAILABLE",
      `The "deno-ses" sandbox needs a deno binary, and none was found (${errorMessage(e)})`,
      { cause: e, details: { runtime: runtime.name } },
    );
  }
  return (args, options) => processes.spawn(denoPath, { ...options, args: [...args] });
}
