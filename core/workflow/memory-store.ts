/**
 * The in-memory Store: for tests, throwaway runs (`--store memory`) and the edge. Values are
 * copied in and out as JSON, so callers never share objects with the store.
 * @module
 */

import { KeelError } from "../errors.ts";
import type {
  AttemptOutcome,
  AttemptRecord,
  ListRunsOptions,
  Store,
  StoredError,
  TaskRecord,
  TaskStatus,
  WorkflowEvent,
  WorkflowRunRecord,
  WorkflowRunStatus,
} from "./store.ts";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

interface RunState {
  run: Mutable<WorkflowRunRecord>;
  order: number;
  tasks: Map<string, Mutable<TaskRecord>>;
  attempts: Map<string, Mutable<AttemptRecord>[]>;
  results: Map<string, string>;
  events: WorkflowEvent[];
}

function copy<T>(v: T): T {
  return v === undefined ? v : JSON.parse(JSON.stringify(v));
}

/**
 * Creates an empty in-memory Store.
 *
 * @example
 * ```ts
 * import { createMemoryStore } from "./memory-store.ts";
 * const store = createMemoryStore();
 * await store.createRun({ id: "r1", name: "demo", definition: {}, taskIds: ["a"], at: 0 });
 * console.assert((await store.listTasks("r1"))[0]?.status === "pending");
 * ```
 */
export function createMemoryStore(): Store {
  const runs = new Map<string, RunState>();
  let counter = 0;
  let closed = false;

  function open(): void {
    if (closed) throw new KeelError("E_STORE_FAILED", "The store was closed: open a new one");
  }
  function state(runId: string): RunState {
    open();
    const s = runs.get(runId);
    if (!s) throw new KeelError("E_WORKFLOW_NOT_FOUND", `No workflow run has the id "${runId}": list runs with "keel workflow list"`, { details: { runId } });
    return s;
  }
  function task(s: RunState, taskId: string): Mutable<TaskRecord> {
    const t = s.tasks.get(taskId);
    if (!t) throw new KeelError("E_WORKFLOW_NOT_FOUND", `Run "${s.run.id}" has no task "${taskId}"`, { details: { runId: s.run.id, taskId } });
    return t;
  }
  function emit(s: RunState, at: number, type: string, taskId: string | null, data: Record<string, unknown> | null): void {
    s.events.push({ runId: s.run.id, seq: s.events.length + 1, at, type, taskId, data });
  }

  return {
    createRun(run) {
      open();
      if (runs.has(run.id)) return Promise.reject(new KeelError("E_STORE_FAILED", `A run with the id "${run.id}" already exists`, { details: { runId: run.id } }));
      const s: RunState = {
        run: { id: run.id, name: run.name, status: "running", definition: copy(run.definition), createdAt: run.at, endedAt: null, error: null },
        order: counter++,
        tasks: new Map(),
        attempts: new Map(),
        results: new Map(),
        events: [],
      };
      for (const id of run.taskIds) {
        s.tasks.set(id, { runId: run.id, taskId: id, status: "pending", attempts: 0, startedAt: null, endedAt: null, error: null, hasResult: false });
      }
      runs.set(run.id, s);
      emit(s, run.at, "run.started", null, { name: run.name, tasks: run.taskIds.length });
      return Promise.resolve();
    },
    getRun(id) {
      open();
      const s = runs.get(id);
      return Promise.resolve(s ? copy(s.run) : undefined);
    },
    listRuns(options: ListRunsOptions = {}) {
      open();
      const limit = options.limit ?? 50;
      const all = [...runs.values()]
        .filter((s) => options.status === undefined || s.run.status === options.status)
        .sort((a, b) => b.run.createdAt - a.run.createdAt || b.order - a.order)
        .slice(0, limit)
        .map((s) => copy(s.run));
      return Promise.resolve(all);
    },
    listTasks(runId) {
      try {
        return Promise.resolve([...state(runId).tasks.values()].map((t) => ({ ...t })));
      } catch (e) {
        return Promise.reject(e);
      }
    },
    listAttempts(runId, taskId) {
      try {
        const s = state(runId);
        task(s, taskId);
        return Promise.resolve((s.attempts.get(taskId) ?? []).map((a) => ({ ...a })));
      } catch (e) {
        return Promise.reject(e);
      }
    },
    startAttempt(runId, taskId, at) {
      try {
        const s = state(runId);
        const t = task(s, taskId);
        if (t.status === "running" || t.status === "succeeded") {
          throw new KeelError("E_STORE_FAILED", `Task "${taskId}" of run "${runId}" is ${t.status}; it cannot start another attempt`, { details: { runId, taskId, status: t.status } });
        }
        const attempt = t.attempts + 1;
        t.attempts = attempt;
        t.status = "running";
        t.startedAt ??= at;
        t.endedAt = null;
        t.error = null;
        let list = s.attempts.get(taskId);
        if (!list) s.attempts.set(taskId, list = []);
        list.push({ runId, taskId, attempt, status: "running", startedAt: at, endedAt: null, error: null });
        emit(s, at, "task.started", taskId, { attempt });
        return Promise.resolve(attempt);
      } catch (e) {
        return Promise.reject(e);
      }
    },
    finishAttempt(runId, taskId, outcome: AttemptOutcome) {
      try {
        const s = state(runId);
        const t = task(s, taskId);
        const a = s.attempts.get(taskId)?.at(-1);
        if (t.status !== "running" || !a || a.status !== "running") {
          throw new KeelError("E_STORE_FAILED", `Task "${taskId}" of run "${runId}" has no running attempt to finish`, { details: { runId, taskId, status: t.status } });
        }
        let stored: string | undefined;
        if (outcome.status === "succeeded") {
          const json = JSON.stringify(outcome.result === undefined ? null : outcome.result);
          if (json === undefined) throw new KeelError("E_TASK_RESULT", `The result of task "${taskId}" cannot be stored as JSON`);
          stored = json;
        }
        a.endedAt = outcome.at;
        if (outcome.status === "succeeded") {
          a.status = "succeeded";
          t.status = "succeeded";
          t.endedAt = outcome.at;
          t.hasResult = true;
          s.results.set(taskId, stored!);
          emit(s, outcome.at, "task.succeeded", taskId, { attempt: a.attempt });
        } else {
          a.status = "failed";
          a.error = copy(outcome.error);
          t.error = copy(outcome.error);
          t.status = outcome.final ? "failed" : "pending";
          if (outcome.final) t.endedAt = outcome.at;
          emit(s, outcome.at, outcome.final ? "task.failed" : "task.retrying", taskId, { attempt: a.attempt, error: copy(outcome.error) });
        }
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(e);
      }
    },
    markTasks(runId, taskIds, status: "skipped" | "cancelled", at, reason: StoredError) {
      try {
        const s = state(runId);
        const ts = taskIds.map((id) => task(s, id));
        for (const t of ts) {
          t.status = status;
          t.endedAt = at;
          t.error = copy(reason);
          emit(s, at, `task.${status}`, t.taskId, { reason: copy(reason) });
        }
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(e);
      }
    },
    recoverRunning(runId, at) {
      try {
        const s = state(runId);
        const ids: string[] = [];
        const error: StoredError = { code: "E_RUN_INTERRUPTED", message: "The process running this task stopped before it finished" };
        for (const t of s.tasks.values()) {
          if (t.status !== "running") continue;
          const a = s.attempts.get(t.taskId)?.at(-1);
          if (a && a.status === "running") {
            a.status = "failed";
            a.endedAt = at;
            a.error = error;
          }
          t.status = "pending";
          t.error = error;
          ids.push(t.taskId);
          emit(s, at, "task.interrupted", t.taskId, { attempt: t.attempts });
        }
        return Promise.resolve(ids);
      } catch (e) {
        return Promise.reject(e);
      }
    },
    finishRun(runId, status: Exclude<WorkflowRunStatus, "running">, at, error?: StoredError) {
      try {
        const s = state(runId);
        s.run.status = status;
        s.run.endedAt = at;
        s.run.error = error === undefined ? null : copy(error);
        emit(s, at, "run.finished", null, error === undefined ? { status } : { status, error: copy(error) });
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(e);
      }
    },
    reopenRun(runId, at) {
      try {
        const s = state(runId);
        s.run.status = "running";
        s.run.endedAt = null;
        s.run.error = null;
        emit(s, at, "run.resumed", null, null);
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(e);
      }
    },
    getResult(runId, taskId) {
      try {
        const s = state(runId);
        task(s, taskId);
        const json = s.results.get(taskId);
        return Promise.resolve(json === undefined ? undefined : JSON.parse(json));
      } catch (e) {
        return Promise.reject(e);
      }
    },
    listEvents(runId, afterSeq = 0) {
      try {
        return Promise.resolve(state(runId).events.slice(Math.max(0, afterSeq)).map((e) => copy(e)));
      } catch (e) {
        return Promise.reject(e);
      }
    },
    close() {
      closed = true;
      runs.clear();
      return Promise.resolve();
    },
  };
}

/** Task statuses that end a task. */
export const TERMINAL_TASK_STATUSES: ReadonlySet<TaskStatus> = new Set(["succeeded", "failed", "skipped", "cancelled"]);
