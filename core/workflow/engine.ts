/**
 * The workflow engine: runs a {@link WorkflowDefinition} against a {@link Store}, starting each
 * task as soon as its own dependencies have succeeded (not level by level), highest priority
 * first, within a concurrency limit shared by every run of the engine.
 *
 * - A task that fails for good marks its transitive dependents `skipped` and the run `failed`;
 *   other branches go on. With `continue_on_error: true` its dependents run, every reference to
 *   its result resolves to `null`, and the run can still succeed.
 * - Retries wait `delay` (fixed), `delay * n` (linear) or `delay * 2^(n-1)` (exponential) after
 *   failed attempt n, capped at `max_delay`, then shortened by up to `jitter` (a fraction) at
 *   random. Codes in `non_retryable` (and, when given, codes outside `retry_on`) fail at once, as
 *   do bad references, non-JSON results and the run's own timeout.
 * - A task timeout aborts the executor's signal and fails the attempt with `E_TASK_TIMEOUT`; a run
 *   timeout aborts every running task (failed, `E_WORKFLOW_TIMEOUT`), cancels the rest and fails
 *   the run with `E_WORKFLOW_TIMEOUT`. The engine does not wait for an executor that ignores its
 *   signal.
 * - Every transition is written to the store before anything depends on it, so `resume` after a
 *   crash never runs a succeeded task again.
 * @module
 */

import { KeelError } from "../errors.ts";
import type { Executor } from "../executor.ts";
import type { Logger } from "../logger.ts";
import { createSilentLogger } from "../logger.ts";
import { basename, resolvePath as resolveFsPath } from "../path.ts";
import type { Runtime } from "../runtime.ts";
import type { RetryPolicy, TaskDefinition, WorkflowDefinition } from "./definition.ts";
import { parseWorkflow } from "./parse.ts";
import type { ListRunsOptions, Store, StoredError, TaskRecord, TaskStatus, WorkflowEvent, WorkflowRunRecord, WorkflowRunStatus } from "./store.ts";
import { findReferenceTexts, parseReference, substitute } from "./substitute.ts";
import { assertValidWorkflow, type ProtocolInfo } from "./validate.ts";

/** Options for {@link createWorkflowEngine}. */
export interface WorkflowEngineOptions {
  readonly store: Store;
  /** The executor for a protocol; rejects (or resolves undefined) when nothing provides it. */
  readonly resolveExecutor: (protocol: string) => Promise<Executor | undefined>;
  /** Needed for batch tasks (lists directories) and as the default working directory. */
  readonly runtime?: Runtime;
  /** Where batch directories are resolved; default `runtime.cwd()`. */
  readonly cwd?: string;
  readonly logger?: Logger;
  /** The clock, in ms; default `Date.now`. */
  readonly now?: () => number;
  /**
   * Waits `ms` (retry backoff, task and run timeouts); must settle early when `signal` aborts.
   * Default: `setTimeout`. Tests pass one that records the delays and returns at once.
   */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** 0..1, for jitter; default `Math.random`. */
  readonly random?: () => number;
  /** Tasks running at once across all runs of this engine; default 32. */
  readonly maxConcurrent?: number;
}

/** Options for `run`. */
export interface RunWorkflowOptions {
  /** The run id; default a random UUID. */
  readonly id?: string;
  /** When the input is text. */
  readonly format?: "yaml" | "json";
  /** When the input is text: a path or URL for messages. */
  readonly source?: string;
  /** Overrides the workflow's own `timeout` (ms). */
  readonly timeoutMs?: number;
  /** Aborting cancels the run (status `cancelled`). */
  readonly signal?: AbortSignal;
}

/** How a run ended. */
export interface RunSummary {
  readonly id: string;
  readonly name: string;
  readonly status: WorkflowRunStatus;
  readonly error: StoredError | null;
  /** Tasks per status. */
  readonly counts: Readonly<Record<TaskStatus, number>>;
  /** The result of every succeeded task, by id (a batch task's is the list of its members'). */
  readonly results: Readonly<Record<string, unknown>>;
  /** Tasks that failed, with why. */
  readonly failed: readonly { readonly taskId: string; readonly error: StoredError | null }[];
}

/** A run in progress. */
export interface WorkflowRunHandle {
  readonly id: string;
  /** Resolves when the run ends, whatever its status; rejects only when the store fails. */
  readonly done: Promise<RunSummary>;
  /** The run's events from its first, as the store records them; ends after "run.finished". */
  readonly events: AsyncIterable<WorkflowEvent>;
  /** Cancels the run: running tasks are aborted, the rest cancelled. */
  cancel(): void;
}

/** A run as `status` reports it. */
export interface WorkflowRunStatusReport {
  readonly run: WorkflowRunRecord;
  readonly tasks: readonly TaskRecord[];
}

/** Runs workflows. */
export interface WorkflowEngine {
  /**
   * Parses (when given text), validates and starts a workflow.
   * @throws {KeelError} `E_WORKFLOW_PARSE` or `E_WORKFLOW_INVALID` (listing every problem) before anything is stored.
   */
  run(input: WorkflowDefinition | string, options?: RunWorkflowOptions): Promise<WorkflowRunHandle>;
  /**
   * Continues a run whose process stopped: interrupted attempts are closed, succeeded tasks keep
   * their stored results and never run again, the rest continue.
   * @throws {KeelError} `E_WORKFLOW_NOT_FOUND`; `E_WORKFLOW_INVALID` for a run that ended failed or cancelled.
   */
  resume(id: string, options?: Pick<RunWorkflowOptions, "signal" | "timeoutMs">): Promise<WorkflowRunHandle>;
  /** @throws {KeelError} `E_WORKFLOW_NOT_FOUND` */
  status(id: string): Promise<WorkflowRunStatusReport>;
  list(options?: ListRunsOptions): Promise<WorkflowRunRecord[]>;
}

const DEFAULT_MAX_CONCURRENT = 32;
/** Codes that never retry: retrying cannot help. */
const NEVER_RETRY = new Set(["E_WORKFLOW_BAD_REFERENCE", "E_TASK_RESULT", "E_WORKFLOW_TIMEOUT", "E_RUN_INTERRUPTED", "E_WORKFLOW_UNKNOWN_PROTOCOL"]);

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * The wait before attempt `failed + 1` after attempt `failed` (1-based) failed.
 *
 * @example
 * ```ts
 * import { retryDelay } from "./engine.ts";
 * const policy = { maxAttempts: 4, backoff: "exponential", delayMs: 100, maxDelayMs: 1000, jitter: 0, nonRetryable: [] } as const;
 * console.assert(retryDelay(policy, 3, () => 0) === 400);
 * ```
 */
export function retryDelay(policy: RetryPolicy, failed: number, random: () => number = Math.random): number {
  const base = policy.backoff === "fixed"
    ? policy.delayMs
    : policy.backoff === "linear"
    ? policy.delayMs * failed
    : policy.delayMs * 2 ** (failed - 1);
  const capped = Math.min(base, policy.maxDelayMs);
  return Math.round(capped * (1 - policy.jitter * random()));
}

/**
 * A JSON copy of `value`, or an `E_TASK_RESULT` error naming where it is not JSON (a function,
 * bigint, symbol, NaN or Infinity, a cycle, or an object that is not plain: Map, Date, class
 * instances). `undefined` becomes `null` at the top and in arrays, and is dropped in objects.
 */
export function toJsonValue(value: unknown, taskId = "?"): unknown {
  const seen = new Set<object>();
  const fail = (path: string, what: string): never => {
    throw new KeelError("E_TASK_RESULT", `Task "${taskId}" returned ${what} at ${path}, which cannot be stored as JSON: return plain objects, arrays, strings, finite numbers, booleans and null`, {
      details: { task: taskId, path },
    });
  };
  const walk = (v: unknown, path: string): unknown => {
    if (v === null || typeof v === "string" || typeof v === "boolean") return v;
    if (v === undefined) return null;
    if (typeof v === "number") return Number.isFinite(v) ? v : fail(path, String(v));
    if (typeof v !== "object") return fail(path, `a ${typeof v}`);
    if (seen.has(v)) return fail(path, "a cycle");
    seen.add(v);
    let out: unknown;
    if (Array.isArray(v)) out = v.map((x, i) => walk(x, `${path}[${i}]`));
    else {
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) fail(path, `a ${(v as object).constructor?.name ?? "non-plain object"}`);
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) if (x !== undefined) o[k] = walk(x, `${path}.${k}`);
      out = o;
    }
    seen.delete(v);
    return out;
  };
  return walk(value, "result");
}

function toStoredError(e: unknown): StoredError {
  if (KeelError.is(e)) {
    return e.details === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, details: e.details };
  }
  const code = typeof e === "object" && e !== null && typeof (e as { code?: unknown }).code === "string" ? (e as { code: string }).code : "E_TASK_FAILED";
  return { code, message: e instanceof Error ? e.message : String(e) };
}

interface Node {
  readonly def: TaskDefinition;
  readonly index: number;
  status: TaskStatus;
  /** Dependencies not yet satisfied. */
  remaining: number;
  readonly dependents: Node[];
  /** Task ids this task's params reference. */
  readonly refs: readonly string[];
  group: Group | undefined;
  error: StoredError | null;
}

interface Group {
  readonly limit: number;
  running: number;
  readonly waiting: Node[];
}

/** A binary heap of ready tasks: higher priority first, then definition order. */
class ReadyQueue {
  #items: Node[] = [];
  get size(): number {
    return this.#items.length;
  }
  static #before(a: Node, b: Node): boolean {
    return a.def.priority !== b.def.priority ? a.def.priority > b.def.priority : a.index < b.index;
  }
  push(n: Node): void {
    const a = this.#items;
    a.push(n);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!ReadyQueue.#before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): Node | undefined {
    const a = this.#items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && ReadyQueue.#before(a[l]!, a[m]!)) m = l;
        if (r < a.length && ReadyQueue.#before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

interface Stop {
  readonly status: "failed" | "cancelled";
  readonly error: StoredError;
}

/**
 * Creates a workflow engine over a store.
 *
 * @example
 * ```ts
 * import { createMemoryStore, createWorkflowEngine } from "./mod.ts";
 * const engine = createWorkflowEngine({
 *   store: createMemoryStore(),
 *   resolveExecutor: async () => ({ protocol: "math/v1", methods: ["math/add"], execute: async ({ params }) => ({ result: Number(params.a) + Number(params.b) }) }),
 * });
 * const run = await engine.run("tasks:\n  - { id: one, method: math/add, params: { a: 1, b: 2 } }\n");
 * console.assert((await run.done).status === "succeeded");
 * ```
 */
export function createWorkflowEngine(options: WorkflowEngineOptions): WorkflowEngine {
  const store = options.store;
  const logger = options.logger ?? createSilentLogger();
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const random = options.random ?? Math.random;
  const maxConcurrent = options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT;
  if (!(maxConcurrent >= 1)) throw new RangeError(`maxConcurrent must be at least 1, got ${maxConcurrent}`);
  let running = 0;
  /** Wakes every active run when a slot frees up. */
  const wakers = new Set<() => void>();

  async function executorsFor(protocols: Iterable<string>): Promise<Map<string, Executor | undefined>> {
    const out = new Map<string, Executor | undefined>();
    for (const p of protocols) {
      if (p === "" || out.has(p)) continue;
      try {
        out.set(p, await options.resolveExecutor(p) ?? undefined);
      } catch {
        out.set(p, undefined);
      }
    }
    return out;
  }

  async function expandBatches(def: WorkflowDefinition): Promise<WorkflowDefinition> {
    if (!def.tasks.some((t) => t.batch && !t.members)) return def;
    const fs = options.runtime?.fs;
    if (!fs) throw new KeelError("E_RUNTIME_UNSUPPORTED", "Batch tasks list files, and this engine has no runtime with files: pass `runtime` to createWorkflowEngine");
    const cwd = options.cwd ?? options.runtime!.cwd();
    const tasks: TaskDefinition[] = [];
    for (const t of def.tasks) {
      if (!t.batch || t.members) {
        tasks.push(t);
        continue;
      }
      const dir = resolveFsPath(t.batch.directory, cwd);
      let names: string[];
      try {
        const match = globToRegExp(t.batch.pattern);
        names = (await fs.readDir(dir)).filter((e) => e.isFile && match.test(e.name)).map((e) => e.name).sort();
      } catch (e) {
        throw new KeelError("E_WORKFLOW_INVALID", `Batch task "${t.id}" cannot list "${dir}": check its directory`, { cause: e, details: { task: t.id, directory: dir } });
      }
      const members: string[] = [];
      names.forEach((name, index) => {
        const file = `${dir.replace(/\/$/, "")}/${name}`;
        const id = `${t.id}[${index}]`;
        members.push(id);
        const ctx = t.params.context;
        const params = replaceFilePath({
          ...t.params,
          file_path: file,
          context: { ...(typeof ctx === "object" && ctx !== null && !Array.isArray(ctx) ? ctx : {}), file_path: file },
        }, file) as Record<string, unknown>;
        const { batch: _b, ...rest } = t;
        tasks.push({ ...rest, id, name: basename(file), params, member: { of: t.id, index, file } });
      });
      tasks.push({ ...t, dependencies: [...t.dependencies, ...members], members });
    }
    return { ...def, tasks };
  }

  function startRun(runId: string, def: WorkflowDefinition, records: readonly TaskRecord[] | undefined, executors: Map<string, Executor | undefined>, opts: Pick<RunWorkflowOptions, "signal" | "timeoutMs">, ended = false): WorkflowRunHandle {
    const nodes = new Map<string, Node>();
    const ids = new Set(def.tasks.map((t) => t.id));
    const recordOf = new Map(records?.map((r) => [r.taskId, r]));
    def.tasks.forEach((t, index) => {
      const refs = new Set<string>();
      for (const text of findReferenceTexts(t.params)) {
        const ref = parseReference(text, ids);
        if (ref) refs.add(ref.taskId);
      }
      const rec = recordOf.get(t.id);
      nodes.set(t.id, { def: t, index, status: rec?.status ?? "pending", remaining: 0, dependents: [], refs: [...refs], group: undefined, error: rec?.error ?? null });
    });
    const groups = new Map<string, Group>();
    for (const n of nodes.values()) {
      if (n.def.members && n.def.batch?.maxConcurrent !== undefined) {
        const g: Group = { limit: n.def.batch.maxConcurrent, running: 0, waiting: [] };
        groups.set(n.def.id, g);
      }
    }
    for (const n of nodes.values()) {
      if (n.def.member) n.group = groups.get(n.def.member.of);
      for (const d of n.def.dependencies) nodes.get(d)?.dependents.push(n);
    }
    const satisfied = (n: Node): boolean => n.status === "succeeded" || (n.status === "failed" && n.def.continueOnError);
    const blocking = (n: Node): boolean => n.status === "skipped" || n.status === "cancelled" || (n.status === "failed" && !n.def.continueOnError);

    const results = new Map<string, unknown>();
    const heap = new ReadyQueue();
    const runController = new AbortController();
    const attemptControllers = new Set<AbortController>();
    let stop: Stop | undefined;
    let fatal: unknown;
    let active = 0;
    let finished = false;
    let tick: { promise: Promise<void>; resolve: () => void } = Promise.withResolvers<void>();
    let wake: { promise: Promise<void>; resolve: () => void } = Promise.withResolvers<void>();
    const notify = (): void => {
      const t = tick;
      tick = Promise.withResolvers<void>();
      t.resolve();
    };
    const waker = (): void => wake.resolve();

    function stopRun(s: Stop): void {
      if (stop || finished) return;
      stop = s;
      runController.abort(new KeelError(s.error.code as "E_WORKFLOW_TIMEOUT", s.error.message));
      for (const c of attemptControllers) c.abort(runController.signal.reason);
      wake.resolve();
    }

    async function skipDependents(failed: Node): Promise<void> {
      const out: Node[] = [];
      const queue = [...failed.dependents];
      for (let i = 0; i < queue.length; i++) {
        const d = queue[i]!;
        if (d.status !== "pending") continue;
        d.status = "skipped";
        out.push(d);
        queue.push(...d.dependents);
      }
      if (out.length === 0) return;
      const reason: StoredError = { code: "E_TASK_SKIPPED", message: `Skipped because task "${failed.def.id}" failed`, details: { failed: failed.def.id } };
      for (const d of out) d.error = reason;
      await store.markTasks(runId, out.map((d) => d.def.id), "skipped", now(), reason);
      notify();
    }

    function release(n: Node): void {
      for (const d of n.dependents) {
        d.remaining--;
        if (d.remaining === 0 && d.status === "pending") heap.push(d);
      }
    }

    async function loadResults(taskIds: Iterable<string>): Promise<void> {
      for (const id of taskIds) {
        if (results.has(id)) continue;
        const n = nodes.get(id);
        if (n?.status === "succeeded") results.set(id, await store.getResult(runId, id));
      }
    }

    function lookup(id: string): { value: unknown } | undefined {
      if (results.has(id)) return { value: results.get(id) };
      const n = nodes.get(id);
      if (n && n.status === "failed" && n.def.continueOnError) return { value: null };
      return undefined;
    }

    async function execute(n: Node, params: Record<string, unknown>, controller: AbortController): Promise<unknown> {
      const executor = executors.has(n.def.protocol) ? executors.get(n.def.protocol) : (await executorsFor([n.def.protocol])).get(n.def.protocol);
      executors.set(n.def.protocol, executor);
      if (!executor) {
        throw new KeelError("E_WORKFLOW_UNKNOWN_PROTOCOL", `There is no provider for ${n.def.protocol}: install a plugin that provides it`, { details: { protocol: n.def.protocol } });
      }
      const signal = controller.signal;
      const aborted = new Promise<never>((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      });
      aborted.catch(() => {});
      const timer = new AbortController();
      if (n.def.timeoutMs !== undefined) {
        const ms = n.def.timeoutMs;
        sleep(ms, timer.signal).then(() => {
          if (!timer.signal.aborted) {
            controller.abort(new KeelError("E_TASK_TIMEOUT", `Task "${n.def.id}" did not finish within ${ms} ms and was stopped: raise its "timeout" or make it faster`, { details: { task: n.def.id, timeoutMs: ms } }));
          }
        }, () => {});
      }
      try {
        const work = Promise.resolve().then(() => executor.execute({ method: n.def.method, params, signal }));
        work.catch(() => {});
        return await Promise.race([work, aborted]);
      } finally {
        timer.abort();
      }
    }

    async function runTask(n: Node): Promise<void> {
      const id = n.def.id;
      const attempt = await store.startAttempt(runId, id, now());
      notify();
      let value: unknown;
      let error: StoredError | undefined;
      const controller = new AbortController();
      attemptControllers.add(controller);
      if (stop) controller.abort(runController.signal.reason);
      try {
        if (n.def.members) {
          await loadResults(n.def.members);
          value = n.def.members.map((m) => lookup(m)?.value ?? null);
        } else {
          await loadResults(n.refs);
          const params = substitute(n.def.params, { ids, lookup }) as Record<string, unknown>;
          value = toJsonValue(await execute(n, params, controller), id);
        }
      } catch (e) {
        error = toStoredError(stop && controller.signal.aborted ? runController.signal.reason : e);
      } finally {
        attemptControllers.delete(controller);
      }
      if (error === undefined) {
        await store.finishAttempt(runId, id, { status: "succeeded", at: now(), result: value });
        results.set(id, value);
        n.status = "succeeded";
        notify();
        release(n);
        return;
      }
      const policy = n.def.retry;
      const retry = !stop && policy !== undefined && attempt < policy.maxAttempts && !NEVER_RETRY.has(error.code) &&
        !policy.nonRetryable.includes(error.code) && (policy.retryOn === undefined || policy.retryOn.includes(error.code));
      await store.finishAttempt(runId, id, { status: "failed", at: now(), error, final: !retry });
      n.error = error;
      notify();
      if (retry) {
        n.status = "pending";
        const delay = retryDelay(policy!, attempt, random);
        logger.debug("workflow task retrying", { runId, task: id, attempt, delayMs: delay, code: error.code });
        active++;
        sleep(delay, runController.signal).then(() => {}, () => {}).then(() => {
          active--;
          if (!stop) heap.push(n);
          wake.resolve();
        });
        return;
      }
      n.status = "failed";
      logger.debug("workflow task failed", { runId, task: id, code: error.code });
      if (stop) return;
      if (n.def.continueOnError) release(n);
      else await skipDependents(n);
    }

    function start(n: Node): void {
      n.status = "running";
      running++;
      active++;
      if (n.group) n.group.running++;
      runTask(n).catch((e) => {
        fatal ??= e;
        stopRun({ status: "failed", error: toStoredError(e) });
      }).finally(() => {
        running--;
        active--;
        if (n.group) {
          n.group.running--;
          const next = n.group.waiting.shift();
          if (next) heap.push(next);
        }
        for (const w of wakers) w();
      });
    }

    async function drive(): Promise<RunSummary> {
      const startedAt = now();
      // Work out what is ready, and skip what a crash left unskipped.
      const toSkip: Node[] = [];
      for (const n of nodes.values()) {
        for (const d of n.def.dependencies) {
          const dn = nodes.get(d);
          if (dn && !satisfied(dn)) n.remaining++;
        }
      }
      for (const n of nodes.values()) if (blocking(n)) toSkip.push(n);
      for (const n of toSkip) await skipDependents(n);
      for (const n of nodes.values()) if (n.status === "pending" && n.remaining === 0) heap.push(n);

      const runTimer = new AbortController();
      const timeoutMs = opts.timeoutMs ?? def.timeoutMs;
      if (timeoutMs !== undefined) {
        sleep(timeoutMs, runTimer.signal).then(() => {
          if (!runTimer.signal.aborted) stopRun({ status: "failed", error: { code: "E_WORKFLOW_TIMEOUT", message: `Workflow "${def.name}" did not finish within ${timeoutMs} ms: raise its "timeout"`, details: { timeoutMs } } });
        }, () => {});
      }
      const onAbort = (): void => stopRun({ status: "cancelled", error: { code: "E_RUN_INTERRUPTED", message: `Workflow run "${runId}" was cancelled` } });
      if (opts.signal?.aborted) onAbort();
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      wakers.add(waker);
      try {
        for (;;) {
          while (!stop && running < maxConcurrent && heap.size > 0) {
            const n = heap.pop()!;
            if (n.status !== "pending") continue;
            if (n.group && n.group.running >= n.group.limit) {
              n.group.waiting.push(n);
              continue;
            }
            start(n);
          }
          if (active === 0) break;
          await wake.promise;
          wake = Promise.withResolvers<void>();
        }
      } finally {
        wakers.delete(waker);
        runTimer.abort();
        opts.signal?.removeEventListener("abort", onAbort);
      }
      if (fatal !== undefined) throw fatal;

      const left = [...nodes.values()].filter((n) => n.status === "pending");
      if (left.length > 0) {
        const reason: StoredError = stop?.error ?? { code: "E_WORKFLOW_FAILED", message: "The run ended before this task could start" };
        for (const n of left) {
          n.status = "cancelled";
          n.error = reason;
        }
        await store.markTasks(runId, left.map((n) => n.def.id), "cancelled", now(), reason);
      }
      const failed = [...nodes.values()].filter((n) => n.status === "failed");
      const hard = failed.filter((n) => !n.def.continueOnError);
      let status: Exclude<WorkflowRunStatus, "running"> = "succeeded";
      let error: StoredError | undefined;
      if (stop) {
        status = stop.status;
        error = stop.error;
      } else if (hard.length > 0) {
        status = "failed";
        const names = hard.slice(0, 5).map((n) => `"${n.def.id}"`).join(", ") + (hard.length > 5 ? `, and ${hard.length - 5} more` : "");
        error = { code: "E_WORKFLOW_FAILED", message: `Workflow "${def.name}" failed: ${hard.length} task(s) failed (${names}); see "keel workflow status ${runId}"`, details: { failed: hard.map((n) => n.def.id) } };
      }
      if (!ended) await store.finishRun(runId, status, now(), error);
      logger.info("workflow run finished", { runId, status, ms: now() - startedAt });

      const succeeded = [...nodes.values()].filter((n) => n.status === "succeeded");
      await loadResults(succeeded.map((n) => n.def.id));
      const counts: Record<TaskStatus, number> = { pending: 0, running: 0, succeeded: 0, failed: 0, skipped: 0, cancelled: 0 };
      for (const n of nodes.values()) counts[n.status]++;
      const out: Record<string, unknown> = {};
      for (const n of succeeded) out[n.def.id] = results.get(n.def.id);
      return { id: runId, name: def.name, status, error: error ?? null, counts, results: out, failed: failed.map((n) => ({ taskId: n.def.id, error: n.error })) };
    }

    const done = drive().finally(() => {
      finished = true;
      notify();
    });
    done.catch(() => {});
    const events: AsyncIterable<WorkflowEvent> = {
      async *[Symbol.asyncIterator]() {
        let after = 0;
        for (;;) {
          const ended = finished;
          const next = tick.promise;
          const evs = await store.listEvents(runId, after);
          for (const e of evs) {
            after = e.seq;
            yield e;
          }
          if (ended && evs.length === 0) return;
          if (evs.length === 0) await next;
        }
      },
    };
    return { id: runId, done, events, cancel: () => stopRun({ status: "cancelled", error: { code: "E_RUN_INTERRUPTED", message: `Workflow run "${runId}" was cancelled` } }) };
  }

  return {
    async run(input, runOptions = {}) {
      const parsed = typeof input === "string"
        ? parseWorkflow(input, { ...(runOptions.format ? { format: runOptions.format } : {}), ...(runOptions.source ? { source: runOptions.source } : {}) })
        : input;
      const executors = await executorsFor(parsed.tasks.map((t) => t.protocol));
      const protocols = (p: string): ProtocolInfo | undefined => executors.get(p);
      assertValidWorkflow(parsed, { protocols });
      const def = await expandBatches(parsed);
      const id = runOptions.id ?? crypto.randomUUID();
      await store.createRun({ id, name: def.name, definition: def, taskIds: def.tasks.map((t) => t.id), at: now() });
      logger.info("workflow run started", { runId: id, name: def.name, tasks: def.tasks.length });
      return startRun(id, def, undefined, executors, runOptions);
    },
    async resume(id, resumeOptions = {}) {
      const rec = await store.getRun(id);
      if (!rec) throw new KeelError("E_WORKFLOW_NOT_FOUND", `No workflow run has the id "${id}": list runs with "keel workflow list"`, { details: { runId: id } });
      if (rec.status === "failed" || rec.status === "cancelled") {
        throw new KeelError("E_WORKFLOW_INVALID", `Workflow run "${id}" already ended (${rec.status}); resume continues interrupted runs: start the workflow again`, { details: { runId: id, status: rec.status } });
      }
      const def = rec.definition as WorkflowDefinition;
      if (rec.status === "running") {
        const recovered = await store.recoverRunning(id, now());
        await store.reopenRun(id, now());
        logger.info("workflow run resumed", { runId: id, interrupted: recovered.length });
      }
      const tasks = await store.listTasks(id);
      return startRun(id, def, tasks, new Map(), resumeOptions, rec.status === "succeeded");
    },
    async status(id) {
      const run = await store.getRun(id);
      if (!run) throw new KeelError("E_WORKFLOW_NOT_FOUND", `No workflow run has the id "${id}": list runs with "keel workflow list"`, { details: { runId: id } });
      return { run, tasks: await store.listTasks(id) };
    },
    list(listOptions) {
      return store.listRuns(listOptions);
    },
  };
}

/** A RegExp for a file-name glob: `*`, `?` and `[...]`. */
export function globToRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        const body = pattern.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\");
        re += `[${body}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

function replaceFilePath(v: unknown, file: string): unknown {
  if (typeof v === "string") return v.replaceAll("${file_path}", file);
  if (Array.isArray(v)) return v.map((x) => replaceFilePath(x, file));
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, replaceFilePath(x, file)]));
  }
  return v;
}
