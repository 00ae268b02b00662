/// <reference types="./_types.d.ts" />
/**
 * The Runtime port on Bun: `node:fs/promises` for files, `Bun.spawn` for processes, `Bun.write`
 * and `node:fs` for standard streams, `process` for signals, `Bun.serve` for HTTP, `bun:sqlite`
 * for SQLite, and module Web Workers. Bun has no WebGPU, so `gpu()` is undefined; `denoPath()`
 * finds the `deno` binary that Keel depends on, for isolated plugins.
 *
 * The only file besides its Deno twin that names Bun's globals; `runtimes/mod.ts` loads it with
 * a dynamic import so Deno never evaluates it.
 * @module
 */

import type { Database } from "bun:sqlite";
import process from "node:process";
import { KeelError } from "../../core/errors.ts";
import {
  createFsErrorMapper,
  existsVia,
  runToCompletion,
  serializeWrites,
  spawnError,
  fromSqlite,
  sqliteRow,
} from "../../core/runtime-support.ts";
import { fromFileUrl, joinPath, resolvePath } from "../../core/path.ts";
import type {
  ChildProcess,
  FetchHandler,
  FileInfo,
  ProcessStatus,
  Runtime,
  RuntimeFs,
  RuntimeProcesses,
  ServeOptions,
  Server,
  SpawnOptions,
  SqliteHandle,
} from "../../core/runtime.ts";

const bun = (globalThis as unknown as { Bun: BunGlobal }).Bun;

/** Creates the Runtime for the current Bun process. */
export function createBunRuntime(): Runtime {
  return {
    name: "bun",
    version: bun.version,
    pid: process.pid,
    cwd: () => process.cwd(),
    resolvePath: (path, base) => resolvePath(path, resolvePath(base ?? ".", process.cwd())),
    env: {
      get: (name) => process.env[name],
      toObject: () => envObject(),
    },
    // argv[0] is bun and argv[1] the script, for `bun x.ts`, `bun run x.ts` and compiled binaries.
    args: bun.argv.slice(2),
    isTerminal: (stream) => isTty(STREAM_FDS[stream]),
    // Resolves once every byte is written, so exiting right after loses nothing; serialized,
    // since concurrent Bun.write calls to stdout were seen to drop a line.
    writeStdout: serializeWrites((text) => bun.write(bun.stdout, text)),
    writeStderr: (text) => {
      // A synchronous write of the text as it is. (console.error would be cheaper to load, but
      // Bun paints it red on a terminal.)
      requireBuiltin<typeof import("node:fs")>("node:fs").writeSync(2, text);
    },
    inspect: (value, options = {}) => {
      const bunOptions: { colors: boolean; depth?: number } = { colors: options.colors ?? false };
      if (options.depth !== undefined) bunOptions.depth = options.depth;
      return bun.inspect(value, bunOptions);
    },
    exit: (code) => process.exit(code),
    onSignal: (signal, handler) => {
      process.on(signal, handler);
      return () => {
        process.off(signal, handler);
      };
    },
    fs: bunFs,
    processes: bunProcesses,
    serve: bunServe,
    openSqlite: openBunSqlite,
    createWorker: (url, options) =>
      new Worker(
        url,
        options?.name === undefined ? { type: "module" } : { type: "module", name: options.name },
      ),
    denoPath: findDeno,
    gpu: () => undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Standard streams and lazily loaded builtins. `process.stdout`, `process.stderr` and node:tty
// each cost Bun 10-15 ms to set up, node:fs and node:fs/promises a few more each, which a
// command like `keel --version` would pay for nothing; so streams go through Bun's own API and
// the tty binding, and builtins load on first use.

const STREAM_FDS = { stdin: 0, stdout: 1, stderr: 2 } as const;

/** A Node builtin, loaded synchronously on first use (Bun's `import.meta.require`). */
function requireBuiltin<T>(name: string): T {
  return (import.meta as unknown as { require(id: string): T }).require(name);
}

function isTty(fd: number): boolean {
  // The binding answers without building tty streams; node:tty is the fallback.
  const binding = (process as unknown as { binding?(name: string): unknown }).binding;
  try {
    const tty = binding?.("tty_wrap") as { isTTY?(fd: number): boolean } | undefined;
    if (typeof tty?.isTTY === "function") return tty.isTTY(fd);
  } catch {
    // no such binding on this Bun
  }
  return requireBuiltin<typeof import("node:tty")>("node:tty").isatty(fd);
}

type NodeFs = typeof import("node:fs/promises");
let nodeFsModule: Promise<NodeFs> | undefined;

function nodeFs(): Promise<NodeFs> {
  nodeFsModule ??= import("node:fs/promises");
  return nodeFsModule;
}

function envObject(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined) out[key] = value;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files

const bunFs: RuntimeFs = {
  readFile: (path) =>
    mapFsError(path, async () => {
      const buffer = await (await nodeFs()).readFile(path);
      // A Buffer is a Uint8Array subclass; hand out a plain view so values compare equal everywhere.
      return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    }),
  readTextFile: (path) => mapFsError(path, async () => (await nodeFs()).readFile(path, "utf8")),
  writeFile: (path, data) => mapFsError(path, async () => (await nodeFs()).writeFile(path, data)),
  writeTextFile: (path, text) =>
    mapFsError(path, async () => (await nodeFs()).writeFile(path, text, "utf8")),
  appendTextFile: (path, text) =>
    mapFsError(path, async () => (await nodeFs()).appendFile(path, text, "utf8")),
  readDir: (path) =>
    mapFsError(path, async () => {
      const entries = await (await nodeFs()).readdir(path, { withFileTypes: true });
      return entries
        .map((e) => ({
          name: e.name,
          isFile: e.isFile(),
          isDirectory: e.isDirectory(),
          isSymlink: e.isSymbolicLink(),
        }))
        // Sorted so every runtime lists a directory the same way.
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }),
  mkdir: (path) =>
    mapFsError(path, async () => {
      await (await nodeFs()).mkdir(path, { recursive: true });
    }),
  remove: async (path) => (await nodeFs()).rm(path, { recursive: true, force: true }),
  rename: (from, to) => mapFsError(from, async () => (await nodeFs()).rename(from, to)),
  chmod: (path, mode) => mapFsError(path, async () => (await nodeFs()).chmod(path, mode)),
  stat: (path) => mapFsError(path, async () => toFileInfo(await (await nodeFs()).stat(path))),
  lstat: (path) => mapFsError(path, async () => toFileInfo(await (await nodeFs()).lstat(path))),
  realPath: (path) => mapFsError(path, async () => (await nodeFs()).realpath(path)),
  exists: (path) => existsVia(async () => (await nodeFs()).stat(path), isNotFound),
  async makeTempDir(prefix) {
    const [fs, os] = await Promise.all([nodeFs(), import("node:os")]);
    return await fs.mkdtemp(joinPath(os.tmpdir(), prefix ?? "keel-"));
  },
};

interface NodeStats {
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
  size: number;
  mtimeMs: number;
}

function toFileInfo(stats: NodeStats): FileInfo {
  return {
    isFile: stats.isFile(),
    isDirectory: stats.isDirectory(),
    isSymlink: stats.isSymbolicLink(),
    size: stats.size,
    mtimeMs: Number.isFinite(stats.mtimeMs) ? stats.mtimeMs : null,
  };
}

function isNotFound(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  // A path through a regular file ("file.txt/x") does not exist either.
  return code === "ENOENT" || code === "ENOTDIR";
}

const mapFsError = createFsErrorMapper(isNotFound);

// ---------------------------------------------------------------------------------------------
// Processes

const bunProcesses: RuntimeProcesses = {
  spawn: spawnBun,
  run: (command, options) => runToCompletion(spawnBun, command, options),
};

const STDIO = { piped: "pipe", inherit: "inherit", null: "ignore" } as const;

function spawnBun(command: string, options: SpawnOptions = {}): ChildProcess {
  const stdin = options.stdin ?? "inherit";
  const stdout = options.stdout ?? "inherit";
  const stderr = options.stderr ?? "inherit";
  // Bun's `env` replaces the environment; the contract adds to it unless `clearEnv`.
  const env = options.clearEnv === true ? { ...options.env } : { ...envObject(), ...options.env };
  const spawnOptions: BunSpawnOptions = {
    env,
    stdin: STDIO[stdin],
    stdout: STDIO[stdout],
    stderr: STDIO[stderr],
  };
  if (options.cwd !== undefined) spawnOptions.cwd = options.cwd;
  let child: BunSubprocess;
  try {
    child = bun.spawn([command, ...(options.args ?? [])], spawnOptions);
  } catch (e) {
    throw spawnError(command, options, e);
  }
  const kill = (signal: "SIGTERM" | "SIGKILL" | "SIGINT" = "SIGTERM"): void => {
    // Bun ignores a kill after exit, as the contract asks.
    child.kill(signal);
  };
  const abortSignal = options.signal;
  const onAbort = (): void => kill("SIGKILL");
  if (abortSignal !== undefined) {
    if (abortSignal.aborted) onAbort();
    else abortSignal.addEventListener("abort", onAbort, { once: true });
  }
  const status = child.exited.then((code): ProcessStatus => {
    abortSignal?.removeEventListener("abort", onAbort);
    const signal = child.signalCode;
    // `exited` is already 128 + signal number for a killed child, as Deno reports it.
    return { success: code === 0 && signal === null, code, signal };
  });
  return {
    pid: child.pid,
    stdin: stdin === "piped" && child.stdin !== undefined ? sinkToWritable(child.stdin) : null,
    stdout: stdout === "piped" ? child.stdout ?? null : null,
    stderr: stderr === "piped" ? child.stderr ?? null : null,
    status,
    kill,
  };
}

/** Wraps Bun's FileSink in the web WritableStream the contract promises. */
function sinkToWritable(sink: BunFileSink): WritableStream<Uint8Array> {
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      sink.write(chunk);
      await sink.flush();
    },
    async close() {
      await sink.end();
    },
    async abort() {
      await sink.end();
    },
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP

function bunServe(handler: FetchHandler, options: ServeOptions = {}): Promise<Server> {
  const hostname = options.hostname ?? "127.0.0.1";
  let server: BunServer;
  try {
    server = bun.serve({ hostname, port: options.port ?? 0, development: false, fetch: handler });
  } catch (e) {
    return Promise.reject(e);
  }
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    // Graceful: stop accepting, let requests in flight finish.
    closing ??= server.stop(false);
    return closing;
  };
  const signal = options.signal;
  if (signal !== undefined) {
    if (signal.aborted) void close();
    else signal.addEventListener("abort", () => void close(), { once: true });
  }
  const port = server.port;
  return Promise.resolve({
    hostname,
    port,
    url: `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`,
    close,
  });
}

// ---------------------------------------------------------------------------------------------
// SQLite

async function openBunSqlite(path: string): Promise<SqliteHandle> {
  // Imported on first use, as on Deno, so start-up does not pay for SQLite.
  const sqlite: { Database: typeof Database } = await import("bun:sqlite");
  // Integers come back as bigint and are narrowed in `fromSqlite`, so values beyond 2^53 survive
  // instead of silently losing precision (bun:sqlite's default).
  const db = new sqlite.Database(path, { create: true, safeIntegers: true });
  return {
    exec(sql) {
      db.exec(sql);
    },
    all(sql, params = []) {
      return db.query(sql).all(...params).map(sqliteRow);
    },
    values(sql, params = []) {
      return db.query(sql).values(...params).map((row) => row.map(fromSqlite));
    },
    run(sql, params = []) {
      const result = db.query(sql).run(...params);
      return { changes: Number(result.changes), lastInsertRowid: Number(result.lastInsertRowid) };
    },
    close() {
      db.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Deno, for isolated plugins and sandboxes

function findDeno(): string {
  const local = fromFileUrl(new URL("../../node_modules/.bin/deno", import.meta.url).href);
  const { existsSync, realpathSync } = requireBuiltin<typeof import("node:fs")>("node:fs");
  if (existsSync(local)) return realpathSync(local);
  const onPath = bun.which("deno");
  if (onPath !== null) return onPath;
  throw new KeelError(
    "E_RUNTIME_UNSUPPORTED",
    'No "deno" binary found in node_modules/.bin or on PATH: run "bun install" (Keel depends on the deno package) or install Deno',
  );
}
