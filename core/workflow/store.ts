/**
 * The workflow Store port: runs, tasks, attempts, results and events. The engine writes every
 * transition through it; drivers (memory in core, SQLite and Postgres over drizzle) implement it
 * and pass one conformance suite (`_store-conformance.ts`).
 *
 * Each method is one atomic write: a driver that can (SQLite, Postgres) wraps it in one
 * transaction, so a crash leaves either the whole transition or none of it.
 * @module
 */

/** Where a workflow run stands. */
export type WorkflowRunStatus = "running" | "succeeded" | "failed" | "cancelled";

/** Where a task stands. `pending`: waits for dependencies; `skipped`: a dependency failed. */
export type TaskStatus = "pending" | "running" | "succeeded" | "failed" | "skipped" | "cancelled";

/** A coded failure as stored. */
export interface StoredError {
  readonly code: string;
  readonly message: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

/** One workflow run. */
export interface WorkflowRunRecord {
  readonly id: string;
  readonly name: string;
  readonly status: WorkflowRunStatus;
  /** The parsed, expanded workflow definition, as JSON; resume runs from this, not the file. */
  readonly definition: unknown;
  readonly createdAt: number;
  readonly endedAt: number | null;
  readonly error: StoredError | null;
}

/** One task of a run. */
export interface TaskRecord {
  readonly runId: string;
  readonly taskId: string;
  readonly status: TaskStatus;
  /** Attempts started so far. */
  readonly attempts: number;
  readonly startedAt: number | null;
  readonly endedAt: number | null;
  readonly error: StoredError | null;
  /** True when a result is stored (fetch it with `getResult`). */
  readonly hasResult: boolean;
}

/** One attempt at a task. */
export interface AttemptRecord {
  readonly runId: string;
  readonly taskId: string;
  /** 1-based. */
  readonly attempt: number;
  readonly status: "running" | "succeeded" | "failed";
  readonly startedAt: number;
  readonly endedAt: number | null;
  readonly error: StoredError | null;
}

/** Something that happened in a run, in order (`seq` is 1-based and gap-free per run). */
export interface WorkflowEvent {
  readonly runId: string;
  readonly seq: number;
  readonly at: number;
  /** e.g. "run.started", "task.started", "task.succeeded", "task.failed", "task.retrying", "task.skipped", "run.finished". */
  readonly type: string;
  readonly taskId: string | null;
  readonly data: Readonly<Record<string, unknown>> | null;
}

/** What ends an attempt. */
export type AttemptOutcome =
  | { readonly status: "succeeded"; readonly at: number; readonly result: unknown }
  | {
    readonly status: "failed";
    readonly at: number;
    readonly error: StoredError;
    /** True: the task failed for good (no retry left); false: it goes back to `pending` for a retry. */
    readonly final: boolean;
  };

/** Options for `listRuns`. */
export interface ListRunsOptions {
  /** Newest first; default 50. */
  readonly limit?: number;
  readonly status?: WorkflowRunStatus;
}

/** The persistence of workflow runs. Every write is atomic; every read sees committed writes. */
export interface Store {
  /** Creates a run and its tasks (all `pending`) in one write, and appends "run.started". */
  createRun(run: {
    readonly id: string;
    readonly name: string;
    readonly definition: unknown;
    readonly taskIds: readonly string[];
    readonly at: number;
  }): Promise<void>;
  getRun(id: string): Promise<WorkflowRunRecord | undefined>;
  listRuns(options?: ListRunsOptions): Promise<WorkflowRunRecord[]>;
  /** Every task of a run, in the order `createRun` listed them. */
  listTasks(runId: string): Promise<TaskRecord[]>;
  listAttempts(runId: string, taskId: string): Promise<AttemptRecord[]>;
  /**
   * Starts attempt `attempts + 1` of a task: the task becomes `running`, an attempt row is added,
   * and "task.started" is appended. Returns the attempt number.
   */
  startAttempt(runId: string, taskId: string, at: number): Promise<number>;
  /**
   * Ends the running attempt: stores the result (succeeded) or the error, sets the task's status
   * (succeeded; failed when `final`; else pending), and appends the matching event.
   */
  finishAttempt(runId: string, taskId: string, outcome: AttemptOutcome): Promise<void>;
  /** Marks tasks `skipped` or `cancelled` (with why) in one write, one event each. */
  markTasks(
    runId: string,
    taskIds: readonly string[],
    status: "skipped" | "cancelled",
    at: number,
    reason: StoredError,
  ): Promise<void>;
  /**
   * Tasks left `running` by a crashed process: their open attempts are closed as failed with
   * `E_RUN_INTERRUPTED`, and the tasks go back to `pending` (the attempt still counts). Used by
   * resume. Returns the task ids.
   */
  recoverRunning(runId: string, at: number): Promise<string[]>;
  /** Ends a run ("run.finished" is appended). */
  finishRun(runId: string, status: Exclude<WorkflowRunStatus, "running">, at: number, error?: StoredError): Promise<void>;
  /** Marks a run `running` again for resume ("run.resumed" is appended). */
  reopenRun(runId: string, at: number): Promise<void>;
  /** The stored result of a succeeded task; undefined when none. */
  getResult(runId: string, taskId: string): Promise<unknown>;
  /** Events after `afterSeq` (default 0), in order. */
  listEvents(runId: string, afterSeq?: number): Promise<WorkflowEvent[]>;
  close(): Promise<void>;
}
