/**
 * The SQLite schema of the workflow store, in drizzle (sqlite-core), and the DDL that creates it.
 *
 * drizzle describes the tables once: reads go through drizzle's query builder, and a test checks
 * that {@link SCHEMA_SQL} creates exactly the columns, keys and indexes declared here (drizzle has
 * no runtime DDL generator without drizzle-kit, and a CLI step at open would be one too many).
 *
 * Timestamps are milliseconds since the epoch; JSON columns hold `JSON.stringify` text.
 * @module
 */

import { blob, foreignKey, index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/**
 * The schema version this module writes, kept in SQLite's `PRAGMA user_version`. Opening a file
 * with a higher version fails with `E_STORE_CORRUPT` (a newer Keel wrote it).
 */
export const SCHEMA_VERSION = 1;

/**
 * Written into `PRAGMA application_id` so that a Keel store is told apart from any other SQLite
 * file ("KEEL" in ASCII).
 */
export const APPLICATION_ID = 0x4b45454c;

/** Workflow runs, newest found through `runs_created`. */
export const runs = sqliteTable("runs", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  status: text("status").notNull(),
  definition: text("definition", { mode: "json" }).notNull(),
  createdAt: integer("created_at").notNull(),
  endedAt: integer("ended_at"),
  error: text("error", { mode: "json" }),
}, (t) => [
  index("runs_created").on(t.createdAt),
  index("runs_status_created").on(t.status, t.createdAt),
]);

/** Tasks of a run; `position` keeps the order `createRun` listed them in. */
export const tasks = sqliteTable("tasks", {
  runId: text("run_id").notNull().references(() => runs.id, { onDelete: "cascade" }),
  taskId: text("task_id").notNull(),
  position: integer("position").notNull(),
  status: text("status").notNull(),
  attempts: integer("attempts").notNull(),
  startedAt: integer("started_at"),
  endedAt: integer("ended_at"),
  error: text("error", { mode: "json" }),
  hasResult: integer("has_result", { mode: "boolean" }).notNull(),
}, (t) => [
  primaryKey({ columns: [t.runId, t.taskId] }),
  uniqueIndex("tasks_position").on(t.runId, t.position),
]);

/** Attempts at a task, 1-based. */
export const attempts = sqliteTable("attempts", {
  runId: text("run_id").notNull(),
  taskId: text("task_id").notNull(),
  attempt: integer("attempt").notNull(),
  status: text("status").notNull(),
  startedAt: integer("started_at").notNull(),
  endedAt: integer("ended_at"),
  error: text("error", { mode: "json" }),
}, (t) => [
  primaryKey({ columns: [t.runId, t.taskId, t.attempt] }),
  foreignKey({ columns: [t.runId, t.taskId], foreignColumns: [tasks.runId, tasks.taskId] }).onDelete("cascade"),
]);

/** Large results, as UTF-8 JSON bytes, out of the `results` rows. */
export const blobs = sqliteTable("blobs", {
  id: integer("id").primaryKey(),
  size: integer("size").notNull(),
  bytes: blob("bytes").notNull(),
});

/**
 * Results of succeeded tasks: `json` inline when small, else `blob_id` names a {@link blobs} row.
 * Exactly one of the two is set.
 */
export const results = sqliteTable("results", {
  runId: text("run_id").notNull(),
  taskId: text("task_id").notNull(),
  json: text("json"),
  blobId: integer("blob_id").references(() => blobs.id),
}, (t) => [
  primaryKey({ columns: [t.runId, t.taskId] }),
  foreignKey({ columns: [t.runId, t.taskId], foreignColumns: [tasks.runId, tasks.taskId] }).onDelete("cascade"),
]);

/** The event log of a run; `seq` is 1-based and gap-free per run. */
export const events = sqliteTable("events", {
  runId: text("run_id").notNull().references(() => runs.id, { onDelete: "cascade" }),
  seq: integer("seq").notNull(),
  at: integer("at").notNull(),
  type: text("type").notNull(),
  taskId: text("task_id"),
  data: text("data", { mode: "json" }),
}, (t) => [primaryKey({ columns: [t.runId, t.seq] })]);

/** Every table, for drizzle's schema option and the schema test. */
export const schema = { runs, tasks, attempts, blobs, results, events } as const;

/**
 * Creates the tables and indexes of {@link schema} when missing. Child tables name their parent
 * with composite foreign keys so `foreign_keys=ON` refuses an attempt, result or event for a task
 * or run that does not exist. `WITHOUT ROWID` keeps rows clustered by their key, which is how
 * every read walks them.
 */
export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  definition TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  ended_at INTEGER,
  error TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_status_created ON runs (status, created_at);
CREATE TABLE IF NOT EXISTS tasks (
  run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  task_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  started_at INTEGER,
  ended_at INTEGER,
  error TEXT,
  has_result INTEGER NOT NULL,
  PRIMARY KEY (run_id, task_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS tasks_position ON tasks (run_id, position);
CREATE TABLE IF NOT EXISTS attempts (
  run_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  status TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  error TEXT,
  PRIMARY KEY (run_id, task_id, attempt),
  FOREIGN KEY (run_id, task_id) REFERENCES tasks (run_id, task_id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
  id INTEGER PRIMARY KEY,
  size INTEGER NOT NULL,
  bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
  run_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  json TEXT,
  blob_id INTEGER REFERENCES blobs (id),
  PRIMARY KEY (run_id, task_id),
  FOREIGN KEY (run_id, task_id) REFERENCES tasks (run_id, task_id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  type TEXT NOT NULL,
  task_id TEXT,
  data TEXT,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
`;
