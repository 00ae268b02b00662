/**
 * Shared pieces for Runtime adapters: what every adapter would otherwise write the same way.
 * Runtime-free, like all of `core/`.
 * @module
 */

import { KeelError } from "./errors.ts";
import type { ChildProcess, ProcessOutput, SpawnOptions, SqlValue, SqliteHandle } from "./runtime.ts";

/**
 * `run` built on `spawn`: collects stdout and stderr as text; a piped stdin gets end-of-file at
 * once, since the caller has nothing to write.
 */
export async function runToCompletion(
  spawn: (command: string, options?: SpawnOptions) => ChildProcess,
  command: string,
  options: Omit<SpawnOptions, "stdout" | "stderr"> = {},
): Promise<ProcessOutput> {
  const child = spawn(command, { ...options, stdout: "piped", stderr: "piped" });
  if (child.stdin !== null) await child.stdin.close();
  const [stdout, stderr, status] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.status,
  ]);
  return { ...status, stdout, stderr };
}

/** The `E_RUNTIME_NOT_FOUND` error for `path`. */
export function notFoundError(path: string, cause: unknown): KeelError {
  return new KeelError(
    "E_RUNTIME_NOT_FOUND",
    `No such file or directory "${path}": check the path, or create it first`,
    { cause, details: { path } },
  );
}

/** The `E_RUNTIME_SPAWN` error for a process that could not be started. */
export function spawnError(command: string, options: SpawnOptions, cause: unknown): KeelError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  const where = options.cwd === undefined ? "" : ` in "${options.cwd}"`;
  return new KeelError(
    "E_RUNTIME_SPAWN",
    `Could not start "${command}"${where} (${reason}): check that it is installed, on PATH, and that the directory exists`,
    { cause, details: { command } },
  );
}

/** A file operation wrapper that turns the host's "not found" errors into {@link notFoundError}. */
export type FsErrorMapper = <T>(path: string, op: () => Promise<T>) => Promise<T>;

/** Builds an {@link FsErrorMapper} from the host's own test for "not found". */
export function createFsErrorMapper(isNotFound: (e: unknown) => boolean): FsErrorMapper {
  return async (path, op) => {
    try {
      return await op();
    } catch (e) {
      if (isNotFound(e)) throw notFoundError(path, e);
      throw e;
    }
  };
}

/** `exists` built on `stat`: false for a missing path, other errors thrown. */
export async function existsVia(stat: () => Promise<unknown>, isNotFound: (e: unknown) => boolean): Promise<boolean> {
  try {
    await stat();
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/**
 * Serializes an async writer: each write starts after the previous one finished, so concurrent
 * callers never interleave partial writes or lose one another's bytes, and text lands in call
 * order. A failed write rejects its own caller only.
 */
export function serializeWrites(write: (text: string) => Promise<unknown>): (text: string) => Promise<void> {
  let tail: Promise<unknown> = Promise.resolve();
  return (text) => {
    const done = tail.then(() => write(text));
    tail = done.catch(() => {});
    return done.then(() => {});
  };
}

/**
 * A value read from SQLite, as the port promises it: an integer read as a bigint becomes a number
 * when it fits in 2^53; anything else is returned as it is.
 */
export function fromSqlite(value: unknown): unknown {
  if (
    typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER) &&
    value >= BigInt(Number.MIN_SAFE_INTEGER)
  ) {
    return Number(value);
  }
  return value;
}

/** A row read from SQLite as a plain object (drivers may give null-prototype rows), values as {@link fromSqlite}. */
export function sqliteRow(row: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(row)) out[key] = fromSqlite(row[key]);
  return out;
}

/** Primary SQLite result codes (the low byte of an extended code) that stores map to their own errors. */
export const SQLITE = Object.freeze({
  BUSY: 5,
  LOCKED: 6,
  READONLY: 8,
  IOERR: 10,
  CORRUPT: 11,
  FULL: 13,
  CANTOPEN: 14,
  NOTADB: 26,
});

const SQLITE_BY_NAME: Readonly<Record<string, number>> = Object.fromEntries(
  Object.entries(SQLITE).map(([name, code]) => [`SQLITE_${name}`, code]),
);

/**
 * The primary SQLite result code of an error from node:sqlite (`errcode`) or bun:sqlite (`errno`,
 * `code`), or undefined when it is not one SQLite raised.
 */
export function sqliteResultCode(e: unknown): number | undefined {
  if (typeof e !== "object" || e === null) return undefined;
  const err = e as { errcode?: unknown; errno?: unknown; code?: unknown; message?: unknown };
  if (typeof err.errcode === "number") return err.errcode & 0xff;
  if (typeof err.code === "string" && err.code.startsWith("SQLITE_")) {
    const primary = SQLITE_BY_NAME[err.code.replace(/^(SQLITE_[A-Z]+).*$/, "$1")];
    if (primary !== undefined) return primary;
    if (typeof err.errno === "number") return err.errno & 0xff;
  }
  // node:sqlite leaves `errcode` off some errors (exec of BEGIN, for one); the message is SQLite's own.
  const message = typeof err.message === "string" ? err.message : "";
  if (/database is locked|database table is locked/.test(message)) return SQLITE.BUSY;
  if (/readonly database/.test(message)) return SQLITE.READONLY;
  if (/database or disk is full/.test(message)) return SQLITE.FULL;
  if (/file is not a database/.test(message)) return SQLITE.NOTADB;
  if (/database disk image is malformed/.test(message)) return SQLITE.CORRUPT;
  if (/unable to open database file/.test(message)) return SQLITE.CANTOPEN;
  if (/disk I\/O error/.test(message)) return SQLITE.IOERR;
  return undefined;
}

/** Rolls back the open transaction, if any: SQLite may already have (SQLITE_FULL and some I/O errors do). */
export function rollbackQuietly(handle: SqliteHandle): void {
  try {
    handle.exec("ROLLBACK");
  } catch {
    // Already rolled back, or nothing was begun.
  }
}

/** The callback drizzle's `sqlite-proxy` driver takes (its `AsyncRemoteCallback`). */
export type SqliteProxyCallback = (
  sql: string,
  params: unknown[],
  method: "run" | "all" | "values" | "get",
) => Promise<{ rows: unknown[] }>;

/**
 * drizzle's `sqlite-proxy` callback over a synchronous {@link SqliteHandle}: `before` runs first
 * (a closed-store check), and any failure is rejected as `mapError(e)`.
 */
export function sqliteProxy(
  handle: SqliteHandle,
  options: { before?: () => void; mapError: (e: unknown) => unknown },
): SqliteProxyCallback {
  return (sql, params, method) => {
    try {
      options.before?.();
      if (method === "run") {
        handle.run(sql, params as SqlValue[]);
        return Promise.resolve({ rows: [] });
      }
      const rows = handle.values(sql, params as SqlValue[]);
      // drizzle expects the single row itself for "get".
      return Promise.resolve({ rows: method === "get" ? rows[0] as unknown as unknown[] : rows });
    } catch (e) {
      return Promise.reject(options.mapError(e));
    }
  };
}
