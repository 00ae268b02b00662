/**
 * The run engine: one run ({@link runScript}), many runs of one script ({@link runMany}), and the
 * pool both share, with three runners: in-process, module Web Workers, and `deno run`
 * subprocesses. Every run gets a fresh module instance, a record under `.keel/runs/<id>/`
 * (when the runtime has files), and its console output captured (all of it in a subprocess;
 * `console` in a worker or in-process, except for in-process runs that overlap, which share
 * one `console`).
 * @module
 */

import { type Config, EMPTY_CONFIG, normalizeConfig } from "../config.ts";
import { errorMessage, KeelError } from "../errors.ts";
import { childLogger, createSilentLogger, type LogFields, type Logger } from "../logger.ts";
import { basename, fromFileUrl, isAbsolutePath, normalizePath } from "../path.ts";
import type { ChildProcess, Runtime } from "../runtime.ts";
import { captureConsole, type OutputStream } from "./capture.ts";
import { createRunId, RUN_ID_PATTERN } from "./ids.ts";
import {
  fromWireError,
  type HostMessage,
  type RunnerMessage,
  type WireError,
} from "./_protocol.ts";
import {
  createRunStore,
  type IsolateMode,
  type RunRecord,
  type RunStore,
  unresolvedSnapshot,
} from "./records.ts";
import {
  callScript,
  type ImportStyle,
  importStyleFor,
  type ResolvedCall,
  type ScriptCall,
} from "./script.ts";

/** How one run ended. */
export type RunResult = RunSuccess | RunFailure;

interface RunResultBase {
  /** The run's id; its record is `.keel/runs/<runId>/` when recorded. */
  readonly runId: string;
  /** Absolute path of the script. */
  readonly file: string;
  /** The config the run was given (overrides, args, kwargs, metadata). */
  readonly config: Config;
  /** Wall time of the run, including the import of the fresh module instance. */
  readonly durationMs: number;
  /** Whether a record was written. */
  readonly recorded: boolean;
}

/** A run that returned a value. */
export interface RunSuccess extends RunResultBase {
  readonly ok: true;
  /** What the entrypoint returned (JSON data). */
  readonly value: unknown;
  /** The export that was called. */
  readonly entrypoint: string;
  /** The params the script saw: its defaults with the overrides applied. */
  readonly params: Readonly<Record<string, unknown>>;
}

/** A run that failed (or never started, when the batch was interrupted first). */
export interface RunFailure extends RunResultBase {
  readonly ok: false;
  readonly error: KeelError;
}

/** Where a sweep stands; given to `onProgress` whenever a run starts or ends. */
export interface SweepProgress {
  readonly total: number;
  /** Finished, ok or not. */
  readonly done: number;
  readonly running: number;
  readonly failed: number;
  /** Estimated time left, from the pace so far; undefined until a run has finished. */
  readonly etaMs: number | undefined;
}

/** One chunk of a run's console output. */
export interface OutputEvent {
  readonly runId: string;
  readonly stream: OutputStream;
  readonly text: string;
}

/** Called around each run; `beforeRun` may throw to refuse it (the run then fails). */
export interface RunHooks {
  beforeRun?(run: { runId: string; file: string; config: Config }): void | Promise<void>;
  afterRun?(result: RunResult): void | Promise<void>;
}

/** What a runner is asked to do for one run, and how it reports back. */
export interface RunnerIo {
  readonly logger: Logger;
  readonly signal: AbortSignal;
  /** Whether the runner must wait for {@link RunnerIo.resolved} before calling the entrypoint. */
  readonly waitForResolved: boolean;
  /** Report the resolved params before the entrypoint runs; resolves once the record has them. */
  resolved(resolved: ResolvedCall): Promise<void>;
  output(stream: OutputStream, text: string): void;
  /** Report the subprocess running the script. */
  childPid?(pid: number): void;
}

/**
 * Runs script calls. The engine ships three (`isolate: "none" | "worker" | "process"`); a host
 * may bring its own (the CLI runs `.py` files through the `python/v1` executor this way).
 */
export interface ScriptRunner {
  /** Recorded with each run; default "script/v1". */
  readonly protocol?: string;
  /** Recorded with each run. */
  readonly isolate: IsolateMode;
  run(call: ScriptCall, io: RunnerIo): Promise<{ value: unknown; resolved?: ResolvedCall }>;
  /** Told before a batch how many runs it has and how many run at once (to start work ahead). */
  prepare?(total: number, parallel: number): void;
  /** Releases workers or processes; called once the batch is done. */
  close?(): Promise<void>;
}

/** Options shared by every way of running. */
export interface RunOptions {
  /**
   * The host runtime (`detectRuntime()`). Without one (an edge host) only in-process runs
   * without records are possible, and `file` must be an absolute path or a URL.
   */
  readonly runtime?: Runtime | undefined;
  /** The export to call; default the default export function, else `main`, else `run`. */
  readonly entrypoint?: string | undefined;
  /** Refuse every override the script's params lack (default: see `resolveParams`). */
  readonly strict?: boolean | undefined;
  /** Convert string overrides to the type of their default (as `--set` does). */
  readonly coerce?: boolean | undefined;
  /** Per run; a run past it fails with `E_SCRIPT_TIMEOUT` (see the README for what stops). */
  readonly timeoutMs?: number | undefined;
  /** Cancels the runs; a running script sees it as `ctx.signal`. */
  readonly signal?: AbortSignal | undefined;
  /** Where `ctx.logger` and engine warnings go; default silent. */
  readonly logger?: Logger | undefined;
  /** Write records under `<root>/.keel/runs/` (default: true when the runtime has files). */
  readonly record?: boolean | undefined;
  /** The folder holding `.keel/`; default `runtime.cwd()`. */
  readonly root?: string | undefined;
  /**
   * Receives each run's console output. Default: echoed to the host's stdout and stderr. Pass
   * `() => {}` to keep it only in the records.
   */
  readonly onOutput?: ((event: OutputEvent) => void) | undefined;
  /** Called around each run (the CLI calls the kernel's `beforeRun`/`afterRun` hooks here). */
  readonly hooks?: RunHooks | undefined;
  /** Runs the calls instead of the built-in runners. */
  readonly runner?: ScriptRunner | undefined;
  /** The previous step's result (`ctx.previous`); flows set it. */
  readonly previous?: unknown;
  /**
   * How to import a fresh module instance; default from the runtime's name (see
   * {@link ImportStyle}), or "url" without a runtime. A host that has only the runtime's name
   * (a plugin) passes `importStyleFor(name)`.
   */
  readonly importStyle?: ImportStyle | undefined;
}

/** Options for {@link runMany}. */
export interface RunManyOptions extends RunOptions {
  /** How many runs at once; default 1. */
  readonly parallel?: number | undefined;
  /**
   * Where each run happens: "none" (this process; sequential runs capture `console`), "worker"
   * (a pool of module Web Workers), "process" (a fresh `deno run` subprocess per run, which also
   * captures direct writes to stdout/stderr and can be killed on timeout). Default "worker" when
   * `parallel > 1` and the runtime has workers, else "none".
   */
  readonly isolate?: IsolateMode | undefined;
  /** Called whenever a run starts or ends. */
  readonly onProgress?: ((progress: SweepProgress) => void) | undefined;
  /** Called as each run ends, in completion order, with its input index. */
  readonly onResult?: ((result: RunResult, index: number) => void) | undefined;
}

/** Options for {@link runScript}. */
export interface RunScriptOptions extends RunOptions {
  /** The config of the run; default none (the script's defaults). */
  readonly config?: unknown;
  readonly isolate?: IsolateMode | undefined;
  /**
   * The run's id; default a new one ({@link createRunId}). A recorded run's id must match
   * {@link RUN_ID_PATTERN}.
   */
  readonly runId?: string | undefined;
}

// ---------------------------------------------------------------------------------------------
// Script paths

/** A script as given: a path (relative to the runtime's cwd), a `file:` URL, maybe `#entry`. */
export function parseScriptRef(
  ref: string,
  runtime: Runtime | undefined,
): { file: string; entrypoint?: string } {
  if (typeof ref !== "string" || ref === "") {
    throw new TypeError("A script must be a non-empty path or file: URL");
  }
  let path = ref;
  let entrypoint: string | undefined;
  const hash = ref.lastIndexOf("#");
  if (hash > 0 && /^[A-Za-z_$][\w$]*$/.test(ref.slice(hash + 1))) {
    path = ref.slice(0, hash);
    entrypoint = ref.slice(hash + 1);
  }
  let file: string;
  if (path.startsWith("file:")) file = fromFileUrl(path);
  else if (/^[a-z][a-z0-9+.-]*:/i.test(path)) {
    if (runtime) {
      throw new TypeError(`Script "${ref}" must be a local file: a path or a file: URL`);
    }
    file = path; // an edge host imports URLs
  } else if (isAbsolutePath(path)) file = normalizePath(path);
  else if (runtime) file = runtime.resolvePath(path);
  else {
    throw new TypeError(
      `Script path "${path}" must be absolute when there is no runtime; resolve it first`,
    );
  }
  return entrypoint === undefined ? { file } : { file, entrypoint };
}

async function checkScriptExists(
  runtime: Runtime | undefined,
  ref: string,
  file: string,
): Promise<void> {
  if (!runtime?.fs || !isAbsolutePath(file)) return;
  if (await runtime.fs.exists(file)) return;
  throw new KeelError(
    "E_SCRIPT_NOT_FOUND",
    `Script "${ref}" does not exist (looked for "${file}"); check the path`,
    { details: { file } },
  );
}

// ---------------------------------------------------------------------------------------------
// Output echo

function defaultEcho(runtime: Runtime | undefined): (event: OutputEvent) => void {
  if (!runtime) return () => {};
  let stdout: Promise<void> = Promise.resolve();
  return ({ stream, text }) => {
    if (stream === "stderr") runtime.writeStderr(text);
    // Chained, so chunks written by concurrent runs never interleave mid-chunk.
    else stdout = stdout.then(() => runtime.writeStdout(text)).catch(() => {});
  };
}

// ---------------------------------------------------------------------------------------------
// Runners

function interruptedError(reason: unknown): KeelError {
  if (KeelError.is(reason)) return reason;
  return new KeelError(
    "E_RUN_INTERRUPTED",
    `The run was interrupted: ${errorMessage(reason)}`,
    { cause: reason },
  );
}

/** Runs calls in this realm; with `capture`, `console` is redirected for each run. */
export function createInProcessRunner(
  options: { capture?: boolean; inspect?: (value: unknown) => string } = {},
): ScriptRunner {
  return {
    isolate: "none",
    async run(call, io) {
      const restore = options.capture
        ? captureConsole(
          (stream, text) => io.output(stream, text),
          options.inspect === undefined ? {} : { inspect: options.inspect },
        )
        : undefined;
      try {
        return await callScript(call, {
          logger: io.logger,
          signal: io.signal,
          beforeCall: (resolved) => io.resolved(resolved),
        });
      } finally {
        restore?.();
      }
    },
  };
}

const WORKER_URL = new URL("./_worker.ts", import.meta.url).href;
/** How long a worker gets past a run's time limit to report it, before it is terminated. */
const WORKER_GRACE_MS = 1000;

interface PooledWorker {
  readonly worker: Worker;
  busy: boolean;
  /** The pending call's handler, by id. */
  readonly handlers: Map<number, (message: RunnerMessage) => void>;
  crash: ((error: KeelError) => void) | undefined;
}

/**
 * Runs calls in module Web Workers: up to `size` of them, each reused for call after call (a
 * fresh module instance every time). A worker whose run times out, is cancelled or crashes is
 * terminated and replaced.
 */
export function createWorkerRunner(runtime: Runtime, options: { size: number }): ScriptRunner {
  if (!runtime.createWorker) {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      `This host (${runtime.name}) cannot start Web Workers; use isolate "none" or "process"`,
    );
  }
  const create = runtime.createWorker;
  const pool: PooledWorker[] = [];
  let nextId = 1;

  function spawn(): PooledWorker {
    const worker = create(WORKER_URL, { name: `keel-run-${pool.length + 1}` });
    const pooled: PooledWorker = { worker, busy: false, handlers: new Map(), crash: undefined };
    worker.onmessage = (event: MessageEvent<RunnerMessage>) => {
      pooled.handlers.get(event.data.id)?.(event.data);
    };
    worker.onerror = (event: ErrorEvent) => {
      // Without preventDefault an error in a worker is rethrown in the host and ends it.
      event.preventDefault();
      const detail = event.message || errorMessage(event.error);
      pooled.crash?.(
        new KeelError("E_SCRIPT_FAILED", `The run's worker crashed: ${detail}`, {
          cause: event.error,
          details: { phase: "worker" },
        }),
      );
    };
    pool.push(pooled);
    return pooled;
  }

  function retire(pooled: PooledWorker): void {
    pooled.worker.terminate();
    const at = pool.indexOf(pooled);
    if (at >= 0) pool.splice(at, 1);
  }

  return {
    isolate: "worker",
    prepare(total) {
      // Start every worker the batch will use now, so they boot side by side.
      while (pool.length < Math.min(total, options.size)) spawn();
    },
    run(call, io) {
      // The pool never asks for more than `size` runs at once, so this stays within it.
      const pooled = pool.find((p) => !p.busy) ?? spawn();
      pooled.busy = true;
      const id = nextId++;
      return new Promise((resolve, reject) => {
        let resolvedCall: ResolvedCall | undefined;
        let timer: ReturnType<typeof setTimeout> | undefined;
        let settled = false;
        const finish = (error: KeelError | undefined, value?: unknown, keep = true): void => {
          if (settled) return;
          settled = true;
          if (timer !== undefined) clearTimeout(timer);
          io.signal.removeEventListener("abort", onAbort);
          pooled.handlers.delete(id);
          pooled.crash = undefined;
          if (keep) pooled.busy = false;
          else retire(pooled);
          if (error) reject(error);
          else resolve(resolvedCall === undefined ? { value } : { value, resolved: resolvedCall });
        };
        const onAbort = (): void => finish(interruptedError(io.signal.reason), undefined, false);
        pooled.crash = (error) => finish(error, undefined, false);
        pooled.handlers.set(id, (message) => {
          switch (message.type) {
            case "output":
              io.output(message.stream, message.text);
              return;
            case "log":
              io.logger[message.level](message.message, message.fields);
              return;
            case "resolved":
              resolvedCall = message.resolved;
              io.resolved(message.resolved).then(
                () => {
                  if (io.waitForResolved) {
                    pooled.worker.postMessage({ type: "go", id } satisfies HostMessage);
                  }
                },
                (e) =>
                  finish(
                    KeelError.is(e)
                      ? e
                      : new KeelError("E_RUN_FAILED", errorMessage(e), { cause: e }),
                    undefined,
                    false,
                  ),
              );
              return;
            case "done":
              if (message.ok) finish(undefined, message.value);
              else {
                const error = fromWireError(message.error);
                // A run that timed out may still be busy in the worker: replace it.
                finish(error, undefined, error.code !== "E_SCRIPT_TIMEOUT");
              }
              return;
          }
        });
        if (io.signal.aborted) return onAbort();
        io.signal.addEventListener("abort", onAbort, { once: true });
        if (call.timeoutMs !== undefined) {
          // The worker times the script itself; this catches a script stuck in a synchronous loop.
          timer = setTimeout(() => {
            finish(
              new KeelError(
                "E_SCRIPT_TIMEOUT",
                `Script "${
                  basename(call.file)
                }" did not finish within ${call.timeoutMs} ms and was stopped; raise the time limit or make it faster`,
                { details: { timeoutMs: call.timeoutMs } },
              ),
              undefined,
              false,
            );
          }, call.timeoutMs + WORKER_GRACE_MS);
        }
        pooled.worker.postMessage(
          { type: "run", id, call, waitForGo: io.waitForResolved } satisfies HostMessage,
        );
      });
    },
    close() {
      for (const pooled of [...pool]) retire(pooled);
      return Promise.resolve();
    },
  };
}

const CHILD_URL = new URL("../../runtimes/deno/run-child.ts", import.meta.url);

/** The marker that starts a protocol line on a run subprocess's stderr. */
export function childMarker(nonce: string): string {
  return `\u001eKEEL-RUN-${nonce} `;
}

/** A started run subprocess, waiting for its request on stdin. */
interface RunChild {
  readonly proc: ChildProcess;
  /** Points the child's output and messages at a run; output before that is held. */
  attach(
    target: { marker: string; io: RunnerIo; onMessage: (message: RunnerMessage) => void },
  ): void;
  /** Resolves once both pipes are drained. */
  readonly drained: Promise<void>;
  send(line: string): Promise<void>;
  closeStdin(): Promise<void>;
}

/**
 * Runs each call in a fresh `deno run -A` subprocess (`runtimes/deno/run-child.ts`), from a
 * Deno or a Bun host. The script is the user's own code, so the child has every permission. Its
 * stdout and stderr are captured whole; on a time limit or cancellation it is killed.
 *
 * In a sweep, the next run's process is started while the current one runs (one spare per
 * parallel slot), so its start-up overlaps the work: each run still gets a process of its own.
 */
export function createProcessRunner(runtime: Runtime): ScriptRunner {
  if (!runtime.processes || !runtime.denoPath || !CHILD_URL.href.startsWith("file:")) {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      `This host (${runtime.name}) cannot start Deno subprocesses; use isolate "none" or "worker"`,
    );
  }
  const processes = runtime.processes;
  const deno = runtime.denoPath();
  const childPath = fromFileUrl(CHILD_URL);
  const encoder = new TextEncoder();
  const spares: RunChild[] = [];
  let remaining = 0;
  let slots = 1;

  function launch(): RunChild {
    const proc = processes.spawn(deno, {
      args: ["run", "-A", "--no-prompt", childPath],
      cwd: runtime.cwd(),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    });
    const stdin = proc.stdin!.getWriter();
    let target:
      | { marker: string; io: RunnerIo; onMessage: (message: RunnerMessage) => void }
      | undefined;
    let heldOut = "";
    let errBuffer = "";
    let attached: () => void = () => {};
    const ready = new Promise<void>((resolve) => (attached = resolve));
    const drainErr = (final: boolean): void => {
      if (!target) return;
      const { marker, io } = target;
      for (;;) {
        const at = errBuffer.indexOf(marker);
        if (at < 0) {
          // Keep a tail that could be the start of a marker split across chunks.
          const keep = final ? 0 : Math.min(errBuffer.length, marker.length - 1);
          const out = errBuffer.slice(0, errBuffer.length - keep);
          if (out !== "") io.output("stderr", out);
          errBuffer = errBuffer.slice(errBuffer.length - keep);
          return;
        }
        if (at > 0) io.output("stderr", errBuffer.slice(0, at));
        const end = errBuffer.indexOf("\n", at);
        if (end < 0) {
          errBuffer = final ? "" : errBuffer.slice(at);
          return;
        }
        const line = errBuffer.slice(at + marker.length, end);
        errBuffer = errBuffer.slice(end + 1);
        try {
          target.onMessage(JSON.parse(line) as RunnerMessage);
        } catch {
          // not ours after all
        }
      }
    };
    const pumpOut = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of proc.stdout!) {
        const text = decoder.decode(chunk, { stream: true });
        if (target) target.io.output("stdout", text);
        else heldOut += text;
      }
      await ready;
      const rest = decoder.decode();
      if (rest !== "") target!.io.output("stdout", rest);
    })();
    const pumpErr = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of proc.stderr!) {
        errBuffer += decoder.decode(chunk, { stream: true });
        drainErr(false);
      }
      await ready;
      errBuffer += decoder.decode();
      drainErr(true);
    })();
    return {
      proc,
      attach(t) {
        target = t;
        if (heldOut !== "") t.io.output("stdout", heldOut);
        heldOut = "";
        drainErr(false);
        attached();
      },
      drained: Promise.all([pumpOut, pumpErr]).then(() => {}),
      send: (line) => stdin.write(encoder.encode(line + "\n")).catch(() => {}),
      closeStdin: () => stdin.close().catch(() => {}),
    };
  }

  /** A started child for the next run, and spares for the runs after it. */
  function take(): RunChild {
    const child = spares.shift() ?? launch();
    remaining = Math.max(0, remaining - 1);
    while (spares.length < Math.min(slots, remaining)) spares.push(launch());
    return child;
  }

  return {
    isolate: "process",
    prepare(total, parallel) {
      remaining = total;
      slots = parallel;
    },
    async run(call, io) {
      const nonce = crypto.randomUUID();
      const child = take();
      const { proc } = child;
      io.childPid?.(proc.pid);
      let done: Extract<RunnerMessage, { type: "done" }> | undefined;
      let resolvedCall: ResolvedCall | undefined;
      let killedFor: KeelError | undefined;
      const kill = (why: KeelError): void => {
        killedFor ??= why;
        proc.kill("SIGKILL");
      };
      const onAbort = (): void => kill(interruptedError(io.signal.reason));
      if (io.signal.aborted) onAbort();
      else io.signal.addEventListener("abort", onAbort, { once: true });
      const timer = call.timeoutMs === undefined ? undefined : setTimeout(() =>
        kill(
          new KeelError(
            "E_SCRIPT_TIMEOUT",
            `Script "${
              basename(call.file)
            }" did not finish within ${call.timeoutMs} ms and its process was killed; raise the time limit or make it faster`,
            { details: { timeoutMs: call.timeoutMs } },
          ),
        ), call.timeoutMs);
      child.attach({
        marker: childMarker(nonce),
        io,
        onMessage(message) {
          if (message.type === "log") io.logger[message.level](message.message, message.fields);
          else if (message.type === "resolved") {
            resolvedCall = message.resolved;
            io.resolved(message.resolved).then(
              () => (io.waitForResolved
                ? child.send(JSON.stringify({ type: "go", id: 0 } satisfies HostMessage))
                : undefined),
              (e) =>
                kill(
                  KeelError.is(e)
                    ? e
                    : new KeelError("E_RUN_FAILED", errorMessage(e), { cause: e }),
                ),
            );
          } else if (message.type === "done") done = message;
        },
      });
      await child.send(JSON.stringify({ nonce, call, waitForGo: io.waitForResolved }));
      const [status] = await Promise.all([proc.status, child.drained]);
      if (timer !== undefined) clearTimeout(timer);
      io.signal.removeEventListener("abort", onAbort);
      await child.closeStdin();
      if (killedFor) throw killedFor;
      if (done?.ok === true) {
        return resolvedCall === undefined
          ? { value: done.value }
          : { value: done.value, resolved: resolvedCall };
      }
      if (done?.ok === false) throw fromWireError(done.error as WireError);
      throw new KeelError(
        "E_SCRIPT_FAILED",
        `Script "${basename(call.file)}": its process exited ${
          status.signal ? `on ${status.signal}` : `with code ${status.code}`
        } before reporting a result (the script may have called exit, or run out of memory); see its stderr`,
        {
          details: { file: call.file, phase: "process", code: status.code, signal: status.signal },
        },
      );
    },
    async close() {
      const left = spares.splice(0);
      for (const child of left) child.proc.kill("SIGKILL");
      await Promise.all(left.map((child) => child.proc.status.catch(() => {})));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The pool

/** One run the pool is asked for. */
export interface PoolTask {
  readonly file: string;
  readonly config: Config;
  readonly entrypoint?: string | undefined;
  readonly previous?: unknown;
  /** Default a new id. */
  readonly runId?: string | undefined;
}

/** Options of {@link runPool}: those of {@link runMany}, plus the group the runs belong to. */
export interface PoolOptions extends RunManyOptions {
  readonly group?: string;
}

function chooseIsolate(options: RunManyOptions, parallel: number): IsolateMode {
  if (options.isolate !== undefined) return options.isolate;
  return parallel > 1 && options.runtime?.createWorker !== undefined ? "worker" : "none";
}

/** The runner `options` ask for, and whether it is the caller's (not closed by the pool). */
function pickRunner(options: RunManyOptions, parallel: number): ScriptRunner {
  const isolate = chooseIsolate(options, parallel);
  const runtime = options.runtime;
  if (isolate === "none") {
    const inspect = runtime === undefined
      ? undefined
      : (v: unknown) => runtime.inspect(v, { depth: 4 });
    // Capturing console is only sound when one run at a time uses it.
    return createInProcessRunner({
      capture: runtime !== undefined && parallel === 1,
      ...(inspect ? { inspect } : {}),
    });
  }
  if (!runtime) {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      `isolate "${isolate}" needs a runtime; pass { runtime: await detectRuntime() }, or use isolate "none"`,
    );
  }
  if (isolate === "worker") return createWorkerRunner(runtime, { size: parallel });
  if (isolate === "process") return createProcessRunner(runtime);
  throw new TypeError(
    `isolate must be "none", "worker" or "process", got ${JSON.stringify(isolate)}`,
  );
}

function checkParallel(value: number | undefined): number {
  const parallel = value ?? 1;
  if (!Number.isInteger(parallel) || parallel < 1) {
    throw new RangeError(`parallel must be a whole number of at least 1, got ${String(value)}`);
  }
  return parallel;
}

/**
 * Runs `tasks` with at most `parallel` at once, in input order of start, and resolves with one
 * result per task, in input order. A failed run does not stop the others; once `signal` is
 * aborted no new run starts and the ones not started fail with `E_RUN_INTERRUPTED`.
 */
export async function runPool(
  tasks: readonly PoolTask[],
  options: PoolOptions = {},
): Promise<RunResult[]> {
  const parallel = checkParallel(options.parallel);
  const runtime = options.runtime;
  const wantRecord = options.record ?? runtime?.fs !== undefined;
  if (wantRecord && !runtime?.fs) {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      "Run records need a runtime with files; pass { runtime } or { record: false }",
    );
  }
  const store: RunStore | undefined = wantRecord
    ? createRunStore(runtime!, options.root === undefined ? {} : { root: options.root })
    : undefined;
  const runner = options.runner ?? pickRunner(options, parallel);
  const ownRunner = options.runner === undefined;
  const logger = options.logger ?? createSilentLogger();
  const echo = options.onOutput ?? defaultEcho(runtime);
  const importStyle = options.importStyle ?? importStyleFor(runtime?.name);
  for (const task of tasks) {
    if (task.runId !== undefined && store && !RUN_ID_PATTERN.test(task.runId)) {
      throw new RangeError(
        `Run id "${task.runId}" cannot name a record; leave it out, or use createRunId()`,
      );
    }
  }
  const signal = options.signal ?? new AbortController().signal;
  const total = tasks.length;
  const results: RunResult[] = new Array(total);
  let done = 0;
  let failed = 0;
  let running = 0;
  const started = Date.now();
  const progress = (): void => {
    if (!options.onProgress) return;
    const elapsed = Date.now() - started;
    options.onProgress({
      total,
      done,
      running,
      failed,
      etaMs: done === 0 ? undefined : Math.round((elapsed / done) * (total - done)),
    });
  };

  async function runOne(task: PoolTask, index: number): Promise<RunResult> {
    const runId = task.runId ?? createRunId();
    const t0 = performance.now();
    const base = { runId, file: task.file, config: task.config };
    const asError = (error: unknown): KeelError =>
      KeelError.is(error)
        ? error
        : new KeelError("E_SCRIPT_FAILED", errorMessage(error), { cause: error });
    let beginning: Promise<RunRecord> | undefined;
    try {
      await options.hooks?.beforeRun?.({ runId, file: task.file, config: task.config });
      if (store) {
        beginning = store.begin({
          id: runId,
          file: task.file,
          protocol: runner.protocol ?? "script/v1",
          isolate: runner.isolate,
          ...(options.group === undefined ? {} : { group: { id: options.group, index, total } }),
          ...(task.entrypoint === undefined ? {} : { entrypoint: task.entrypoint }),
        });
        // In this process the record must exist before the script's module is even evaluated
        // (its top level may run for long); a worker or a subprocess starts meanwhile.
        if (runner.isolate === "none") await beginning;
        else beginning.catch(() => {});
      }
    } catch (e) {
      return {
        ...base,
        ok: false,
        error: asError(e),
        durationMs: performance.now() - t0,
        recorded: false,
      };
    }
    const logs = store && beginning
      ? {
        stdout: store.log(runId, "stdout", { after: beginning }),
        stderr: store.log(runId, "stderr", { after: beginning }),
      }
      : undefined;
    const call: ScriptCall = {
      file: task.file,
      config: task.config,
      entrypoint: task.entrypoint,
      strict: options.strict,
      coerce: options.coerce,
      runId,
      previous: task.previous,
      timeoutMs: options.timeoutMs,
      importStyle,
    };
    let snapshotWritten = false;
    let entrypoint: string | undefined;
    let childPid: number | undefined;
    let pidWritten: Promise<void> = Promise.resolve();
    let outcome: RunResult;
    try {
      const { value, resolved } = await runner.run(call, {
        logger: childLogger(logger, { run: runId, script: basename(task.file) } as LogFields),
        signal,
        waitForResolved: store !== undefined,
        async resolved(r) {
          entrypoint = r.entrypoint;
          if (!store || !beginning) return;
          await beginning;
          // The entrypoint reaches run.json with the outcome; one write less per run.
          await store.writeConfig(runId, {
            params: r.params,
            args: task.config.args,
            kwargs: task.config.kwargs,
            metadata: task.config.metadata,
            overrides: task.config.params,
            resolved: true,
          });
          snapshotWritten = true;
        },
        output(stream, text) {
          logs?.[stream].write(text);
          echo({ runId, stream, text });
        },
        childPid(pid) {
          childPid = pid;
          if (store && beginning) {
            pidWritten = beginning.then((r) => store.update({ ...r, childPid: pid })).catch(
              () => {},
            );
          }
        },
      });
      outcome = {
        ...base,
        ok: true,
        value,
        entrypoint: resolved?.entrypoint ?? task.entrypoint ?? "default",
        params: resolved?.params ?? task.config.params,
        durationMs: performance.now() - t0,
        recorded: false,
      };
    } catch (e) {
      outcome = {
        ...base,
        ok: false,
        error: asError(e),
        durationMs: performance.now() - t0,
        recorded: false,
      };
    }
    const record = beginning ? await beginning.catch(() => undefined) : undefined;
    if (store && record) {
      try {
        await Promise.all([logs!.stdout.flush(), logs!.stderr.flush(), pidWritten]);
        if (!snapshotWritten) await store.writeConfig(runId, unresolvedSnapshot(task.config));
        await store.finish(
          {
            ...record,
            ...(entrypoint === undefined ? {} : { entrypoint }),
            ...(childPid === undefined ? {} : { childPid }),
          },
          outcome.ok ? { ok: true, value: outcome.value, durationMs: outcome.durationMs } : {
            ok: false,
            error: outcome.error,
            interrupted: outcome.error.code === "E_RUN_INTERRUPTED",
            durationMs: outcome.durationMs,
          },
        );
        outcome = { ...outcome, recorded: true };
      } catch (e) {
        logger.warn(`Could not finish the record of run "${runId}": ${errorMessage(e)}`);
      }
    }
    try {
      await options.hooks?.afterRun?.(outcome);
    } catch (e) {
      logger.warn(`An afterRun hook failed for run "${runId}": ${errorMessage(e)}`);
    }
    return outcome;
  }

  runner.prepare?.(total, parallel);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const index = next++;
      const task = tasks[index]!;
      if (signal.aborted) {
        failed++;
        done++;
        results[index] = {
          runId: createRunId(),
          file: task.file,
          config: task.config,
          ok: false,
          error: interruptedError(signal.reason),
          durationMs: 0,
          recorded: false,
        };
        options.onResult?.(results[index]!, index);
        continue;
      }
      running++;
      progress();
      const result = await runOne(task, index);
      running--;
      done++;
      if (!result.ok) failed++;
      results[index] = result;
      progress();
      options.onResult?.(result, index);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(parallel, Math.max(total, 1)) }, worker));
  } finally {
    if (ownRunner) await runner.close?.();
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// Public entry points

/**
 * Runs `file` once per config, `parallel` at a time, and resolves with one result per config,
 * in input order. A run that fails does not stop the others.
 *
 * @param file a path (relative to the runtime's cwd), a `file:` URL, optionally `#entrypoint`.
 * @param configs configs as written (`{ params, args, kwargs, metadata }`); `[]` runs nothing.
 * @throws {KeelError} `E_SCRIPT_NOT_FOUND`, `E_CONFIG_INVALID` for a malformed config,
 *   `E_RUNTIME_UNSUPPORTED`; per-run failures are results, not throws.
 * @example
 * ```ts
 * import { runMany } from "./engine.ts";
 * const file = new URL("../../tests/fixtures/scripts/square.ts", import.meta.url).href;
 * const results = await runMany(file, [{ params: { x: 2 } }, { params: { x: 3 } }]);
 * if (results.map((r) => r.ok && r.value).join() !== "4,9") throw new Error("unreachable");
 * ```
 */
export async function runMany(
  file: string,
  configs: readonly unknown[],
  options: RunManyOptions = {},
): Promise<RunResult[]> {
  if (!Array.isArray(configs)) throw new TypeError("runMany() takes a list of configs");
  const ref = parseScriptRef(file, options.runtime);
  await checkScriptExists(options.runtime, file.replace(/#[A-Za-z_$][\w$]*$/, ""), ref.file);
  const entrypoint = options.entrypoint ?? ref.entrypoint;
  const tasks = configs.map((c, i) => ({
    file: ref.file,
    config: normalizeConfig(c, configs.length === 1 ? "the config" : `config ${i + 1}`),
    entrypoint,
    previous: options.previous,
  }));
  return await runPool(tasks, {
    ...options,
    ...(configs.length > 1 ? { group: createRunId() } : {}),
  });
}

/**
 * Runs `file` once and resolves with how it ended (a failed run is a result, not a throw).
 *
 * @throws {KeelError} `E_SCRIPT_NOT_FOUND`, `E_CONFIG_INVALID`, `E_RUNTIME_UNSUPPORTED`
 * @example
 * ```ts
 * import { runScript } from "./engine.ts";
 * const file = new URL("../../tests/fixtures/scripts/square.ts", import.meta.url).href;
 * const result = await runScript(file, { config: { params: { x: 5 } } });
 * if (!result.ok || result.value !== 25) throw new Error("unreachable");
 * ```
 */
export async function runScript(file: string, options: RunScriptOptions = {}): Promise<RunResult> {
  const ref = parseScriptRef(file, options.runtime);
  await checkScriptExists(options.runtime, file.replace(/#[A-Za-z_$][\w$]*$/, ""), ref.file);
  const task: PoolTask = {
    file: ref.file,
    config: normalizeConfig(options.config ?? EMPTY_CONFIG, "the config"),
    entrypoint: options.entrypoint ?? ref.entrypoint,
    previous: options.previous,
    runId: options.runId,
  };
  const [result] = await runPool([task], { ...options, parallel: 1 });
  return result!;
}
