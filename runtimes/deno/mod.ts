/**
 * The Runtime port on Deno: `Deno.*` for files, processes, standard streams, signals and HTTP,
 * `node:sqlite` for SQLite, module Web Workers, and `navigator.gpu` for WebGPU.
 *
 * The only file besides its Bun twin that names Deno's globals; `runtimes/mod.ts` loads it with
 * a dynamic import so Bun never evaluates it.
 * @module
 */

import type { StatementSync } from "node:sqlite";
import {
  createFsErrorMapper,
  existsVia,
  runToCompletion,
  serializeWrites,
  spawnError,
  fromSqlite,
  sqliteRow,
} from "../../core/runtime-support.ts";
import { resolvePath } from "../../core/path.ts";
import type {
  ChildProcess,
  DirEntry,
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

/** Creates the Runtime for the current Deno process. */
export function createDenoRuntime(): Runtime {
  return {
    name: "deno",
    version: Deno.version.deno,
    pid: Deno.pid,
    cwd: () => Deno.cwd(),
    resolvePath: (path, base) => resolvePath(path, resolvePath(base ?? ".", Deno.cwd())),
    env: {
      get: (name) => Deno.env.get(name),
      toObject: () => Deno.env.toObject(),
    },
    args: Deno.args,
    isTerminal: (stream) => DENO_STREAMS[stream].isTerminal(),
    writeStdout: serializeWrites((text) => writeAll(Deno.stdout, encoder.encode(text))),
    writeStderr: (text) => writeAllSync(Deno.stderr, encoder.encode(text)),
    inspect: (value, options = {}) => {
      const denoOptions: Deno.InspectOptions = { colors: options.colors ?? false };
      if (options.depth !== undefined) denoOptions.depth = options.depth;
      return Deno.inspect(value, denoOptions);
    },
    exit: (code) => Deno.exit(code),
    onSignal: (signal, handler) => {
      Deno.addSignalListener(signal, handler);
      return () => Deno.removeSignalListener(signal, handler);
    },
    fs: denoFs,
    processes: denoProcesses,
    serve: denoServe,
    openSqlite: openDenoSqlite,
    createWorker: (url, options) =>
      new Worker(
        url,
        options?.name === undefined ? { type: "module" } : { type: "module", name: options.name },
      ),
    denoPath: () => Deno.execPath(),
    gpu: () => navigator.gpu,
  };
}

// ---------------------------------------------------------------------------------------------
// Standard streams. `Deno.stdout`, not node:process: touching `process.stdout` boots Deno's
// Node compatibility layer, which alone costs more than a bare `deno run`.

const DENO_STREAMS = { stdin: Deno.stdin, stdout: Deno.stdout, stderr: Deno.stderr } as const;

const encoder = new TextEncoder();

async function writeAll(writer: typeof Deno.stdout, bytes: Uint8Array): Promise<void> {
  // `write` may take only part of the buffer (a full pipe); keep going until all is written.
  for (let done = 0; done < bytes.length;) done += await writer.write(bytes.subarray(done));
}

function writeAllSync(writer: typeof Deno.stderr, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += writer.writeSync(bytes.subarray(done));
}

// ---------------------------------------------------------------------------------------------
// Files

const denoFs: RuntimeFs = {
  readFile: (path) => mapFsError(path, () => Deno.readFile(path)),
  readTextFile: (path) => mapFsError(path, () => Deno.readTextFile(path)),
  writeFile: (path, data) => mapFsError(path, () => Deno.writeFile(path, data)),
  writeTextFile: (path, text) => mapFsError(path, () => Deno.writeTextFile(path, text)),
  appendTextFile: (path, text) =>
    mapFsError(path, () => Deno.writeTextFile(path, text, { append: true })),
  readDir: (path) =>
    mapFsError(path, async () => {
      const entries: DirEntry[] = [];
      for await (const e of Deno.readDir(path)) {
        entries.push({
          name: e.name,
          isFile: e.isFile,
          isDirectory: e.isDirectory,
          isSymlink: e.isSymlink,
        });
      }
      // Sorted so every runtime lists a directory the same way.
      return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }),
  mkdir: (path) => mapFsError(path, () => Deno.mkdir(path, { recursive: true })),
  async remove(path) {
    try {
      await Deno.remove(path, { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  },
  rename: (from, to) => mapFsError(from, () => Deno.rename(from, to)),
  chmod: (path, mode) => mapFsError(path, () => Deno.chmod(path, mode)),
  stat: (path) => mapFsError(path, async () => toFileInfo(await Deno.stat(path))),
  lstat: (path) => mapFsError(path, async () => toFileInfo(await Deno.lstat(path))),
  realPath: (path) => mapFsError(path, () => Deno.realPath(path)),
  exists: (path) => existsVia(() => Deno.stat(path), isNotFound),
  makeTempDir: (prefix) => Deno.makeTempDir({ prefix: prefix ?? "keel-" }),
};

function toFileInfo(info: Deno.FileInfo): FileInfo {
  return {
    isFile: info.isFile,
    isDirectory: info.isDirectory,
    isSymlink: info.isSymlink,
    size: info.size,
    mtimeMs: info.mtime === null ? null : info.mtime.getTime(),
  };
}

function isNotFound(e: unknown): boolean {
  // A path through a regular file ("file.txt/x") does not exist either.
  return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory;
}

const mapFsError = createFsErrorMapper(isNotFound);

// ---------------------------------------------------------------------------------------------
// Processes

const denoProcesses: RuntimeProcesses = {
  spawn: spawnDeno,
  run: (command, options) => runToCompletion(spawnDeno, command, options),
};

function spawnDeno(command: string, options: SpawnOptions = {}): ChildProcess {
  const stdin = options.stdin ?? "inherit";
  const stdout = options.stdout ?? "inherit";
  const stderr = options.stderr ?? "inherit";
  const commandOptions: Deno.CommandOptions = {
    args: [...(options.args ?? [])],
    stdin,
    stdout,
    stderr,
    clearEnv: options.clearEnv ?? false,
  };
  if (options.cwd !== undefined) commandOptions.cwd = options.cwd;
  if (options.env !== undefined) commandOptions.env = { ...options.env };
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, commandOptions).spawn();
  } catch (e) {
    throw spawnError(command, options, e);
  }
  const kill = (signal: "SIGTERM" | "SIGKILL" | "SIGINT" = "SIGTERM"): void => {
    try {
      child.kill(signal);
    } catch (e) {
      // Deno throws a TypeError once the child has exited; the contract says that is fine.
      if (!(e instanceof TypeError)) throw e;
    }
  };
  const abortSignal = options.signal;
  const onAbort = (): void => kill("SIGKILL");
  if (abortSignal !== undefined) {
    if (abortSignal.aborted) onAbort();
    else abortSignal.addEventListener("abort", onAbort, { once: true });
  }
  const status = child.status.then((s): ProcessStatus => {
    abortSignal?.removeEventListener("abort", onAbort);
    return { success: s.success, code: s.code, signal: s.signal };
  });
  return {
    pid: child.pid,
    // Deno throws when a stream that was not piped is read, so only touch the piped ones.
    stdin: stdin === "piped" ? child.stdin : null,
    stdout: stdout === "piped" ? child.stdout : null,
    stderr: stderr === "piped" ? child.stderr : null,
    status,
    kill,
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP

function denoServe(handler: FetchHandler, options: ServeOptions = {}): Promise<Server> {
  try {
    return Promise.resolve(startDenoServer(handler, options));
  } catch (e) {
    // Binding fails synchronously (port in use, bad hostname); callers expect a rejection.
    return Promise.reject(e);
  }
}

function startDenoServer(handler: FetchHandler, options: ServeOptions): Server {
  const hostname = options.hostname ?? "127.0.0.1";
  const serveOptions: Deno.ServeTcpOptions = {
    hostname,
    port: options.port ?? 0,
    // Without onListen Deno prints "Listening on ..." to stdout.
    onListen: () => {},
  };
  if (options.signal !== undefined) serveOptions.signal = options.signal;
  const server = Deno.serve(serveOptions, handler);
  const { port } = server.addr;
  let closing: Promise<void> | undefined;
  return {
    hostname,
    port,
    url: `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`,
    close() {
      closing ??= server.shutdown();
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// SQLite

/** How many prepared statements a handle keeps for reuse. */
const STATEMENT_CACHE_SIZE = 100;

async function openDenoSqlite(path: string): Promise<SqliteHandle> {
  // Imported on first use: a static import of node:sqlite adds about 1.5 ms to every start-up.
  const { DatabaseSync } = await import("node:sqlite");
  const db = new DatabaseSync(path);
  const cache = new Map<string, StatementSync>();
  function prepare(sql: string): StatementSync {
    let statement = cache.get(sql);
    if (statement === undefined) {
      statement = db.prepare(sql);
      // Integers come back as bigint and are narrowed in `fromSqlite`, so values beyond 2^53
      // survive instead of throwing (node:sqlite's default) or losing precision.
      statement.setReadBigInts(true);
      if (cache.size >= STATEMENT_CACHE_SIZE) {
        const oldest = cache.keys().next();
        if (oldest.done !== true) cache.delete(oldest.value);
      }
      cache.set(sql, statement);
    }
    return statement;
  }
  return {
    exec(sql) {
      db.exec(sql);
    },
    all(sql, params = []) {
      const statement = prepare(sql);
      statement.setReturnArrays(false);
      const rows = statement.all(...params) as Record<string, unknown>[];
      // node:sqlite rows have a null prototype; plain objects compare and print as users expect.
      return rows.map(sqliteRow);
    },
    values(sql, params = []) {
      const statement = prepare(sql);
      statement.setReturnArrays(true);
      const rows = statement.all(...params) as unknown as unknown[][];
      return rows.map((row) => row.map(fromSqlite));
    },
    run(sql, params = []) {
      const result = prepare(sql).run(...params);
      return { changes: Number(result.changes), lastInsertRowid: Number(result.lastInsertRowid) };
    },
    close() {
      cache.clear();
      db.close();
    },
  };
}
