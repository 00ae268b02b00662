/**
 * The embedded workflow Store: one SQLite file (by default `.keel/keel.db`) in WAL mode.
 *
 * - **Schema** in drizzle (`schema.ts`); tables are created at open when missing, and
 *   `PRAGMA user_version` / `application_id` tell a Keel store of a known version from anything
 *   else (`E_STORE_CORRUPT` otherwise, with what to do).
 * - **Reads** go through drizzle's `sqlite-proxy`, whose callback runs the runtime's synchronous
 *   {@link SqliteHandle}.
 * - **Writes** are plain prepared SQL on the same handle, each Store method one
 *   `BEGIN IMMEDIATE … COMMIT` run synchronously from start to end. Why not drizzle here: the
 *   proxy is async, so a transaction built from it would yield to the event loop between its
 *   statements and two concurrent transitions on the one connection would interleave (it would
 *   need a lock around every write), and each statement pays for query building and a promise —
 *   measured in `bench/workflow-store.ts` ("drizzle proxy insert" against "raw insert"). The
 *   transition is the engine's hot path: its floor is one commit.
 * - **Durability**: `synchronous=NORMAL` (the default) in WAL mode never corrupts the file and
 *   loses nothing when the *process* crashes (SIGKILL included), but a power loss or OS crash can
 *   lose the last transactions committed before it; `FULL` syncs the WAL at every commit, so a
 *   committed transition survives power loss too, at several times the cost per commit.
 * - **Faults** become coded errors: `E_STORE_LOCKED` (another process holds the write lock past
 *   the busy timeout), `E_STORE_READ_ONLY`, `E_STORE_FULL`, `E_STORE_CORRUPT`, else
 *   `E_STORE_FAILED`. A failed write is rolled back whole, and the store keeps answering reads.
 * - Results whose JSON is larger than `blobThreshold` (64 KiB) are stored as blobs in their own
 *   table instead of inline, so task rows and result scans stay small.
 *
 * Plugins get no SQLite through their context yet, so this module exports the driver functions
 * only; a `definePlugin` wrapper providing the store as a service comes with that.
 * @module
 */

import { and, asc, desc, eq, gt } from "drizzle-orm";
import { drizzle, type SqliteRemoteDatabase } from "drizzle-orm/sqlite-proxy";
import {
  type AttemptOutcome,
  type AttemptRecord,
  type ErrorCodeName,
  KeelError,
  type ListRunsOptions,
  rollbackQuietly,
  type Runtime,
  SQLITE,
  type SqliteHandle,
  sqliteProxy,
  sqliteResultCode,
  type Store,
  type StoredError,
  type TaskRecord,
  type TaskStatus,
  type WorkflowEvent,
  type WorkflowRunRecord,
  type WorkflowRunStatus,
} from "../../core/mod.ts";
import { APPLICATION_ID, attempts, blobs, events, results, runs, SCHEMA_SQL, SCHEMA_VERSION, tasks } from "./schema.ts";

export { SCHEMA_VERSION } from "./schema.ts";

/** Options for {@link createSqliteStore} and {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /**
   * `NORMAL` (default): a process crash loses nothing, a power loss may lose the last commits.
   * `FULL`: every commit is synced to disk before it returns.
   */
  readonly synchronous?: "NORMAL" | "FULL";
  /** How long a write waits for another connection's lock before `E_STORE_LOCKED`; default 5000 ms. */
  readonly busyTimeoutMs?: number;
  /** Results whose JSON has more bytes than this are stored as blobs; default 65536. */
  readonly blobThreshold?: number;
}

/** The default size above which a result is stored as a blob: 64 KiB of JSON. */
export const DEFAULT_BLOB_THRESHOLD = 64 * 1024;

/** Turns any error SQLite raised into a coded KeelError that says what to do. */
function storeError(e: unknown, what: string): KeelError {
  if (KeelError.is(e)) return e;
  const code = sqliteResultCode(e);
  const detail = e instanceof Error ? e.message : String(e);
  const make = (keel: ErrorCodeName, message: string) =>
    new KeelError(keel, message, { cause: e, details: { operation: what, sqlite: detail } });
  switch (code) {
    case SQLITE.BUSY:
    case SQLITE.LOCKED:
      return make(
        "E_STORE_LOCKED",
        `The workflow store is locked by another process (${what}): wait for it to finish, stop it, or use another store file`,
      );
    case SQLITE.READONLY:
      return make(
        "E_STORE_READ_ONLY",
        `The workflow store cannot be written (${what}): make the database file and its directory writable, or use another store file`,
      );
    case SQLITE.CANTOPEN:
      return make(
        "E_STORE_READ_ONLY",
        `The workflow store's database file, or its -wal/-shm files, cannot be opened for writing (${what}): make the file and its directory writable, or use another store file`,
      );
    case SQLITE.FULL:
      return make(
        "E_STORE_FULL",
        `The disk holding the workflow store is full (${what}); nothing of this write was kept: free some space and resume the run`,
      );
    case SQLITE.IOERR:
      return make(
        "E_STORE_FAILED",
        `The workflow store hit a disk I/O error (${what}): check that the disk is not full or failing, then resume the run`,
      );
    case SQLITE.NOTADB:
    case SQLITE.CORRUPT:
      return make(
        "E_STORE_CORRUPT",
        `The workflow store's database file is damaged or not a SQLite database (${what}): move it aside and start with a new store file`,
      );
    default:
      return make("E_STORE_FAILED", `The workflow store could not complete a write (${what}): ${detail}`);
  }
}

function notFound(runId: string, taskId?: string): KeelError {
  return new KeelError(
    "E_WORKFLOW_NOT_FOUND",
    taskId === undefined
      ? `No stored workflow run has the id "${runId}": list runs with "keel workflow list"`
      : `The stored workflow run "${runId}" has no task "${taskId}": check the task id with "keel workflow status ${runId}"`,
    { details: taskId === undefined ? { runId } : { runId, taskId } },
  );
}

function errorJson(error: StoredError | undefined | null): string | null {
  return error === undefined || error === null ? null : JSON.stringify(error);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Creates a Store on an open SQLite connection: sets the pragmas, checks or creates the schema,
 * and takes ownership of `handle` (closed by `store.close()`).
 * @throws {KeelError} `E_STORE_CORRUPT` when the file is not a Keel store or was written by a
 * newer Keel; `E_STORE_LOCKED`, `E_STORE_READ_ONLY`, `E_STORE_FULL` when the schema cannot be written.
 */
export async function createSqliteStore(handle: SqliteHandle, options: SqliteStoreOptions = {}): Promise<Store> {
  const synchronous = options.synchronous ?? "NORMAL";
  if (synchronous !== "NORMAL" && synchronous !== "FULL") {
    throw new RangeError(`synchronous must be "NORMAL" or "FULL", not "${String(synchronous)}"`);
  }
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
    throw new RangeError(`busyTimeoutMs must be a non-negative integer, not ${busyTimeoutMs}`);
  }
  const blobThreshold = options.blobThreshold ?? DEFAULT_BLOB_THRESHOLD;
  if (!(blobThreshold >= 0)) throw new RangeError(`blobThreshold must be >= 0, not ${blobThreshold}`);

  try {
    openSchema(handle, synchronous, busyTimeoutMs);
  } catch (e) {
    try {
      handle.close();
    } catch {
      // the open error is the one to report
    }
    throw storeError(e, "opening the store");
  }
  return await Promise.resolve(new SqliteStore(handle, blobThreshold));
}

/**
 * Opens (creating when missing, with its parent directory) the SQLite store file at `path`.
 * @throws {KeelError} `E_RUNTIME_UNSUPPORTED` when the runtime has no SQLite; else as {@link createSqliteStore}.
 */
export async function openSqliteStore(runtime: Runtime, path: string, options: SqliteStoreOptions = {}): Promise<Store> {
  if (runtime.openSqlite === undefined) {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      `The ${runtime.name} runtime has no SQLite: use the memory store ("--store memory") or run on Deno or Bun`,
    );
  }
  const full = runtime.resolvePath(path);
  const slash = full.lastIndexOf("/");
  if (slash > 0 && runtime.fs !== undefined) {
    try {
      await runtime.fs.mkdir(full.slice(0, slash));
    } catch (e) {
      throw new KeelError(
        "E_STORE_READ_ONLY",
        `The directory of the workflow store "${full}" cannot be created: make its parent writable, or use another store file`,
        { cause: e },
      );
    }
  }
  let handle: SqliteHandle;
  try {
    handle = await runtime.openSqlite(full);
  } catch (e) {
    throw storeError(e, `opening "${full}"`);
  }
  try {
    return await createSqliteStore(handle, options);
  } catch (e) {
    if (KeelError.is(e) && e.message.includes("(opening the store)")) {
      throw new KeelError(e.code, e.message.replace("(opening the store)", `(opening "${full}")`), {
        cause: e.cause,
        details: { ...e.details, path: full },
      });
    }
    throw e;
  }
}

function openSchema(handle: SqliteHandle, synchronous: "NORMAL" | "FULL", busyTimeoutMs: number): void {
  handle.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  // The first read of the header: a file that is not SQLite fails here with SQLITE_NOTADB.
  const [header] = handle.values("SELECT (SELECT application_id FROM pragma_application_id), (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)");
  const [appId, version, objects] = (header ?? [0, 0, 0]).map(Number) as [number, number, number];
  if (appId !== 0 && appId !== APPLICATION_ID) {
    throw new KeelError(
      "E_STORE_CORRUPT",
      "The file is a SQLite database of another application, not a Keel workflow store: choose another store path",
      { details: { applicationId: appId } },
    );
  }
  if (appId === 0 && objects > 0) {
    throw new KeelError(
      "E_STORE_CORRUPT",
      "The file is a SQLite database that is not a Keel workflow store: choose another store path, or move the file aside",
    );
  }
  if (version > SCHEMA_VERSION) {
    throw new KeelError(
      "E_STORE_CORRUPT",
      `The workflow store was written by a newer Keel (schema ${version}; this one reads up to ${SCHEMA_VERSION}): upgrade Keel, or use another store file`,
      { details: { version, supported: SCHEMA_VERSION } },
    );
  }
  const [mode] = handle.values("PRAGMA journal_mode = WAL")[0] ?? [];
  if (mode !== "wal" && mode !== "memory") {
    throw new KeelError(
      "E_STORE_FAILED",
      `The workflow store could not switch to WAL mode (it is in "${String(mode)}" mode): use a store file on a local disk`,
    );
  }
  handle.exec(`PRAGMA synchronous = ${synchronous}; PRAGMA foreign_keys = ON`);
  if (version === SCHEMA_VERSION && appId === APPLICATION_ID) return;
  handle.exec("BEGIN IMMEDIATE");
  try {
    handle.exec(SCHEMA_SQL);
    handle.exec(`PRAGMA application_id = ${APPLICATION_ID}; PRAGMA user_version = ${SCHEMA_VERSION}`);
    handle.exec("COMMIT");
  } catch (e) {
    rollbackQuietly(handle);
    throw e;
  }
}

// Hot-path statements, prepared once by the handle's statement cache.
const SQL = {
  insertEvent:
    "INSERT INTO events (run_id, seq, at, type, task_id, data) SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ? FROM events WHERE run_id = ?",
  startTask:
    "UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, ?), ended_at = NULL, error = NULL WHERE run_id = ? AND task_id = ? AND status NOT IN ('running', 'succeeded') RETURNING attempts",
  insertAttempt: "INSERT INTO attempts (run_id, task_id, attempt, status, started_at) VALUES (?, ?, ?, 'running', ?)",
  finishAttempt:
    "UPDATE attempts SET status = ?, ended_at = ?, error = ? WHERE run_id = ? AND task_id = ? AND status = 'running' RETURNING attempt",
  insertBlob: "INSERT INTO blobs (size, bytes) VALUES (?, ?)",
  insertResult: "INSERT INTO results (run_id, task_id, json, blob_id) VALUES (?, ?, ?, ?)",
  taskSucceeded:
    "UPDATE tasks SET status = 'succeeded', ended_at = ?, error = NULL, has_result = 1 WHERE run_id = ? AND task_id = ?",
  taskFailed: "UPDATE tasks SET status = ?, ended_at = ?, error = ? WHERE run_id = ? AND task_id = ?",
  taskStatus: "SELECT status FROM tasks WHERE run_id = ? AND task_id = ?",
  runExists: "SELECT 1 FROM runs WHERE id = ?",
} as const;

class SqliteStore implements Store {
  readonly #handle: SqliteHandle;
  readonly #db: SqliteRemoteDatabase;
  readonly #blobThreshold: number;
  #closed = false;

  constructor(handle: SqliteHandle, blobThreshold: number) {
    this.#handle = handle;
    this.#blobThreshold = blobThreshold;
    // The callback is synchronous underneath; drizzle only needs it to return a promise.
    this.#db = drizzle(sqliteProxy(handle, { before: () => this.#open(), mapError: (e) => storeError(e, "reading") }));
  }

  #open(): void {
    if (this.#closed) {
      throw new KeelError("E_STORE_FAILED", "The workflow store was used after close(): open it again");
    }
  }

  /** Empty reads are told apart from unknown ids: those fail with `E_WORKFLOW_NOT_FOUND`. */
  #requireRun(runId: string): void {
    if (this.#handle.values(SQL.runExists, [runId]).length === 0) throw notFound(runId);
  }

  #requireTask(runId: string, taskId: string): void {
    if (this.#handle.values(SQL.taskStatus, [runId, taskId]).length === 0) {
      this.#requireRun(runId);
      throw notFound(runId, taskId);
    }
  }

  /** Runs `fn` as one IMMEDIATE transaction, synchronously, so nothing interleaves with it. */
  #write<T>(what: string, fn: (h: SqliteHandle) => T): T {
    this.#open();
    const h = this.#handle;
    try {
      h.exec("BEGIN IMMEDIATE");
    } catch (e) {
      throw storeError(e, what);
    }
    try {
      const out = fn(h);
      h.exec("COMMIT");
      return out;
    } catch (e) {
      rollbackQuietly(h);
      throw storeError(e, what);
    }
  }

  #event(h: SqliteHandle, runId: string, at: number, type: string, taskId: string | null, data: unknown): void {
    h.run(SQL.insertEvent, [runId, at, type, taskId, data === null ? null : JSON.stringify(data), runId]);
  }

  createRun(run: Parameters<Store["createRun"]>[0]): Promise<void> {
    const definition = JSON.stringify(run.definition ?? null);
    const ids = new Set(run.taskIds);
    if (ids.size !== run.taskIds.length) {
      return Promise.reject(new TypeError(`The task ids of run "${run.id}" are not unique`));
    }
    return this.#async(() =>
      this.#write("creating a run", (h) => {
        if (h.values(SQL.runExists, [run.id]).length > 0) {
          throw new KeelError("E_STORE_FAILED", `A workflow run with the id "${run.id}" is already stored: use a new run id`);
        }
        h.run(
          "INSERT INTO runs (id, name, status, definition, created_at, ended_at, error) VALUES (?, ?, 'running', ?, ?, NULL, NULL)",
          [run.id, run.name, definition, run.at],
        );
        let position = 0;
        for (const taskId of run.taskIds) {
          h.run(
            "INSERT INTO tasks (run_id, task_id, position, status, attempts, has_result) VALUES (?, ?, ?, 'pending', 0, 0)",
            [run.id, taskId, position++],
          );
        }
        this.#event(h, run.id, run.at, "run.started", null, { name: run.name, tasks: run.taskIds.length });
      })
    );
  }

  async getRun(id: string): Promise<WorkflowRunRecord | undefined> {
    const [row] = await this.#db.select().from(runs).where(eq(runs.id, id));
    return row === undefined ? undefined : toRun(row);
  }

  async listRuns(options: ListRunsOptions = {}): Promise<WorkflowRunRecord[]> {
    const limit = options.limit ?? 50;
    const query = this.#db.select().from(runs)
      .where(options.status === undefined ? undefined : eq(runs.status, options.status))
      .orderBy(desc(runs.createdAt), desc(runs.id))
      .limit(limit);
    return (await query).map(toRun);
  }

  async listTasks(runId: string): Promise<TaskRecord[]> {
    const rows = await this.#db.select().from(tasks).where(eq(tasks.runId, runId)).orderBy(asc(tasks.position));
    if (rows.length === 0) this.#requireRun(runId);
    return rows.map((r) => ({
      runId: r.runId,
      taskId: r.taskId,
      status: r.status as TaskStatus,
      attempts: r.attempts,
      startedAt: r.startedAt,
      endedAt: r.endedAt,
      error: r.error as StoredError | null,
      hasResult: r.hasResult,
    }));
  }

  async listAttempts(runId: string, taskId: string): Promise<AttemptRecord[]> {
    const rows = await this.#db.select().from(attempts)
      .where(and(eq(attempts.runId, runId), eq(attempts.taskId, taskId)))
      .orderBy(asc(attempts.attempt));
    if (rows.length === 0) this.#requireTask(runId, taskId);
    return rows.map((r) => ({
      runId: r.runId,
      taskId: r.taskId,
      attempt: r.attempt,
      status: r.status as AttemptRecord["status"],
      startedAt: r.startedAt,
      endedAt: r.endedAt,
      error: r.error as StoredError | null,
    }));
  }

  startAttempt(runId: string, taskId: string, at: number): Promise<number> {
    return this.#async(() =>
      this.#write("starting a task", (h) => {
        const row = h.values(SQL.startTask, [at, runId, taskId])[0];
        if (row === undefined) throw this.#whyNot(h, runId, taskId, "start another attempt of");
        const attempt = Number(row[0]);
        h.run(SQL.insertAttempt, [runId, taskId, attempt, at]);
        this.#event(h, runId, at, "task.started", taskId, { attempt });
        return attempt;
      })
    );
  }

  finishAttempt(runId: string, taskId: string, outcome: AttemptOutcome): Promise<void> {
    let bytes: Uint8Array | undefined;
    let json: string | undefined;
    if (outcome.status === "succeeded") {
      try {
        json = JSON.stringify(outcome.result === undefined ? null : outcome.result);
      } catch {
        json = undefined; // a BigInt or a cycle
      }
      if (json === undefined) {
        return Promise.reject(
          new KeelError("E_TASK_RESULT", `The result of task "${taskId}" cannot be stored as JSON: return plain data`, {
            details: { runId, taskId },
          }),
        );
      }
      // Bytes only matter past the threshold; a string's UTF-8 length is at most 3 per code unit.
      if (json.length * 3 > this.#blobThreshold) {
        const encoded = encoder.encode(json);
        if (encoded.length > this.#blobThreshold) bytes = encoded;
      }
    }
    return this.#async(() =>
      this.#write("finishing a task", (h) => {
        const error = outcome.status === "failed" ? JSON.stringify(outcome.error) : null;
        const row = h.values(SQL.finishAttempt, [outcome.status, outcome.at, error, runId, taskId])[0];
        if (row === undefined) throw this.#whyNot(h, runId, taskId, "finish the attempt of");
        const attempt = Number(row[0]);
        if (outcome.status === "succeeded") {
          let blobId: number | null = null;
          if (bytes !== undefined) blobId = h.run(SQL.insertBlob, [bytes.length, bytes]).lastInsertRowid;
          h.run(SQL.insertResult, [runId, taskId, bytes === undefined ? json! : null, blobId]);
          h.run(SQL.taskSucceeded, [outcome.at, runId, taskId]);
          this.#event(h, runId, outcome.at, "task.succeeded", taskId, { attempt });
        } else {
          h.run(SQL.taskFailed, [outcome.final ? "failed" : "pending", outcome.final ? outcome.at : null, error, runId, taskId]);
          this.#event(h, runId, outcome.at, outcome.final ? "task.failed" : "task.retrying", taskId, {
            attempt,
            error: outcome.error,
          });
        }
      })
    );
  }

  /** Why a task was not in the state a transition needs: a coded error. */
  #whyNot(h: SqliteHandle, runId: string, taskId: string, verb: string): KeelError {
    const row = h.values(SQL.taskStatus, [runId, taskId])[0];
    if (row === undefined) {
      return h.values(SQL.runExists, [runId]).length === 0 ? notFound(runId) : notFound(runId, taskId);
    }
    return new KeelError(
      "E_STORE_FAILED",
      `Cannot ${verb} task "${taskId}" of run "${runId}": it is ${String(row[0])}`,
      { details: { runId, taskId, status: row[0] } },
    );
  }

  markTasks(
    runId: string,
    taskIds: readonly string[],
    status: "skipped" | "cancelled",
    at: number,
    reason: StoredError,
  ): Promise<void> {
    const error = JSON.stringify(reason);
    return this.#async(() =>
      this.#write(`marking tasks ${status}`, (h) => {
        for (const taskId of taskIds) {
          const changed = h.run(SQL.taskFailed, [status, at, error, runId, taskId]).changes;
          if (changed === 0) throw this.#whyNot(h, runId, taskId, "mark");
          // A cancelled task may be mid-attempt; its attempt ends with it.
          h.run(SQL.finishAttempt, ["failed", at, error, runId, taskId]);
          this.#event(h, runId, at, `task.${status}`, taskId, { reason });
        }
      })
    );
  }

  recoverRunning(runId: string, at: number): Promise<string[]> {
    const error: StoredError = {
      code: "E_RUN_INTERRUPTED",
      message: "The process running this task ended before the task finished",
    };
    const errorText = JSON.stringify(error);
    return this.#async(() =>
      this.#write("recovering interrupted tasks", (h) => {
        if (h.values(SQL.runExists, [runId]).length === 0) throw notFound(runId);
        const ids = h.values(
          "UPDATE tasks SET status = 'pending', error = ? WHERE run_id = ? AND status = 'running' RETURNING task_id, position",
          [errorText, runId],
        ).sort((a, b) => Number(a[1]) - Number(b[1])).map((r) => String(r[0]));
        for (const taskId of ids) {
          const closed = h.values(SQL.finishAttempt, ["failed", at, errorText, runId, taskId])[0];
          this.#event(h, runId, at, "task.interrupted", taskId, {
            attempt: closed === undefined ? null : Number(closed[0]),
          });
        }
        return ids;
      })
    );
  }

  finishRun(
    runId: string,
    status: Exclude<WorkflowRunStatus, "running">,
    at: number,
    error?: StoredError,
  ): Promise<void> {
    return this.#async(() =>
      this.#write("finishing a run", (h) => {
        const changed = h.run("UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ?", [
          status,
          at,
          errorJson(error),
          runId,
        ]).changes;
        if (changed === 0) throw notFound(runId);
        this.#event(h, runId, at, "run.finished", null, error === undefined ? { status } : { status, error });
      })
    );
  }

  reopenRun(runId: string, at: number): Promise<void> {
    return this.#async(() =>
      this.#write("reopening a run", (h) => {
        const changed = h.run("UPDATE runs SET status = 'running', ended_at = NULL, error = NULL WHERE id = ?", [runId])
          .changes;
        if (changed === 0) throw notFound(runId);
        this.#event(h, runId, at, "run.resumed", null, null);
      })
    );
  }

  async getResult(runId: string, taskId: string): Promise<unknown> {
    const [row] = await this.#db.select({ json: results.json, bytes: blobs.bytes }).from(results)
      .leftJoin(blobs, eq(blobs.id, results.blobId))
      .where(and(eq(results.runId, runId), eq(results.taskId, taskId)));
    if (row === undefined) {
      this.#requireTask(runId, taskId);
      return undefined;
    }
    if (row.json !== null) return JSON.parse(row.json);
    if (row.bytes === null) return undefined;
    return JSON.parse(decoder.decode(row.bytes as Uint8Array));
  }

  async listEvents(runId: string, afterSeq = 0): Promise<WorkflowEvent[]> {
    const rows = await this.#db.select().from(events)
      .where(and(eq(events.runId, runId), gt(events.seq, afterSeq)))
      .orderBy(asc(events.seq));
    if (rows.length === 0) this.#requireRun(runId);
    return rows.map((r) => ({
      runId: r.runId,
      seq: r.seq,
      at: r.at,
      type: r.type,
      taskId: r.taskId,
      data: r.data as Readonly<Record<string, unknown>> | null,
    }));
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        // A clean close checkpoints the WAL back into the file and removes -wal/-shm.
        this.#handle.close();
      } catch (e) {
        return Promise.reject(storeError(e, "closing"));
      }
    }
    return Promise.resolve();
  }

  /** Runs a synchronous write and reports its outcome as a promise (a throw becomes a rejection). */
  #async<T>(fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (e) {
      return Promise.reject(e);
    }
  }
}

function toRun(row: typeof runs.$inferSelect): WorkflowRunRecord {
  return {
    id: row.id,
    name: row.name,
    status: row.status as WorkflowRunStatus,
    definition: row.definition,
    createdAt: row.createdAt,
    endedAt: row.endedAt,
    error: row.error as StoredError | null,
  };
}
