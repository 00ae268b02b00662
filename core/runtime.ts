/**
 * The Runtime port: everything the kernel needs from Deno, Bun, Node or an edge host.
 *
 * `core/` only ever talks to a runtime through this interface; `runtimes/<name>/` implement it.
 * Optional members are capability flags: the kernel falls back or raises
 * `E_RUNTIME_UNSUPPORTED` when one is missing (an edge host has no processes or files).
 * @module
 */

/** Which host a Runtime adapts. */
export type RuntimeName = "deno" | "bun" | "node" | "edge";

/** What `stat` tells about a path. */
export interface FileInfo {
  readonly isFile: boolean;
  readonly isDirectory: boolean;
  readonly isSymlink: boolean;
  readonly size: number;
  readonly mtimeMs: number | null;
}

/** One entry of a directory listing. */
export interface DirEntry {
  readonly name: string;
  readonly isFile: boolean;
  readonly isDirectory: boolean;
  readonly isSymlink: boolean;
}

/**
 * File access. Paths are absolute or relative to `Runtime.cwd()`. A missing path raises
 * `E_RUNTIME_NOT_FOUND` (a KeelError), so callers need not know each runtime's error class.
 */
export interface RuntimeFs {
  readFile(path: string): Promise<Uint8Array>;
  readTextFile(path: string): Promise<string>;
  writeFile(path: string, data: Uint8Array): Promise<void>;
  /** Writes UTF-8 text, creating or truncating the file. */
  writeTextFile(path: string, text: string): Promise<void>;
  /** Appends UTF-8 text, creating the file when missing. */
  appendTextFile(path: string, text: string): Promise<void>;
  readDir(path: string): Promise<DirEntry[]>;
  /** Creates a directory and its parents; no error when it exists. */
  mkdir(path: string): Promise<void>;
  /** Removes a file or a directory tree; no error when it does not exist. */
  remove(path: string): Promise<void>;
  /** Moves a file over `to` in one step (replacing it), so readers see the old or the new file, never half. */
  rename(from: string, to: string): Promise<void>;
  /**
   * Sets a file's POSIX permission bits (`0o600`: only the owner reads and writes). Absent where
   * the host has no such permissions; callers then skip it.
   */
  chmod?(path: string, mode: number): Promise<void>;
  /** Follows symlinks. */
  stat(path: string): Promise<FileInfo>;
  /** Does not follow a final symlink. */
  lstat(path: string): Promise<FileInfo>;
  /** The canonical absolute path with every symlink resolved. */
  realPath(path: string): Promise<string>;
  exists(path: string): Promise<boolean>;
  /** Creates a fresh empty directory under the system temp dir. */
  makeTempDir(prefix?: string): Promise<string>;
}

/**
 * How to start a process. Streams default to "inherit"; `run` gives a "piped" stdin an
 * immediate end-of-file, since its caller cannot write to it.
 */
export interface SpawnOptions {
  readonly args?: readonly string[];
  readonly cwd?: string;
  /** Added to (or, with `clearEnv`, instead of) the parent's environment. */
  readonly env?: Readonly<Record<string, string>>;
  readonly clearEnv?: boolean;
  readonly stdin?: "piped" | "inherit" | "null";
  readonly stdout?: "piped" | "inherit" | "null";
  readonly stderr?: "piped" | "inherit" | "null";
  /** Aborting kills the process with SIGKILL. */
  readonly signal?: AbortSignal;
}

/** How a process ended. */
export interface ProcessStatus {
  readonly success: boolean;
  readonly code: number;
  /** The signal that ended it ("SIGKILL", ...), or null. */
  readonly signal: string | null;
}

/** A running process. Streams are present when the matching option was "piped". */
export interface ChildProcess {
  readonly pid: number;
  readonly stdin: WritableStream<Uint8Array> | null;
  readonly stdout: ReadableStream<Uint8Array> | null;
  readonly stderr: ReadableStream<Uint8Array> | null;
  readonly status: Promise<ProcessStatus>;
  /** Sends a signal (default SIGTERM); no error when the process has already exited. */
  kill(signal?: "SIGTERM" | "SIGKILL" | "SIGINT"): void;
}

/** What `Runtime.run` collects. */
export interface ProcessOutput extends ProcessStatus {
  readonly stdout: string;
  readonly stderr: string;
}

/** Starts processes. */
export interface RuntimeProcesses {
  /** Starts `command`; raises `E_RUNTIME_SPAWN` when it cannot be started (not found, ...). */
  spawn(command: string, options?: SpawnOptions): ChildProcess;
  /** Runs to completion and collects output as text. */
  run(command: string, options?: Omit<SpawnOptions, "stdout" | "stderr">): Promise<ProcessOutput>;
}

/** Options for `Runtime.serve`. */
export interface ServeOptions {
  /** Default "127.0.0.1". */
  readonly hostname?: string;
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  readonly signal?: AbortSignal;
}

/** A running HTTP server. */
export interface Server {
  readonly hostname: string;
  readonly port: number;
  /** `http://hostname:port` */
  readonly url: string;
  /** Stops accepting and resolves when closed. */
  close(): Promise<void>;
}

/** A fetch-style handler, as Hono's `app.fetch`. */
export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** A bound SQL parameter. */
export type SqlValue = string | number | bigint | null | Uint8Array;

/**
 * A synchronous SQLite connection (node:sqlite on Deno, bun:sqlite on Bun). Integers come back
 * as numbers when they fit in 2^53 and as bigints beyond; rows are plain objects.
 */
export interface SqliteHandle {
  /** Runs one or more statements with no parameters (DDL, pragmas). */
  exec(sql: string): void;
  /** Returns every row as an object keyed by column name. */
  all(sql: string, params?: readonly SqlValue[]): Record<string, unknown>[];
  /** Returns every row as an array of values (drizzle's sqlite-proxy wants these). */
  values(sql: string, params?: readonly SqlValue[]): unknown[][];
  /** Runs a statement and tells how many rows changed. */
  run(sql: string, params?: readonly SqlValue[]): { changes: number; lastInsertRowid: number };
  close(): void;
}

/** One of the process's standard streams. */
export type StdStream = "stdin" | "stdout" | "stderr";

/** A signal a command line may handle (Ctrl-C, or a polite stop from a supervisor). */
export type HandledSignal = "SIGINT" | "SIGTERM";

/** How {@link Runtime.inspect} renders a value. */
export interface InspectOptions {
  /** ANSI colors; default false. */
  readonly colors?: boolean;
  /** How many levels of nesting are shown before `[Object]`; default the host's (2 or more). */
  readonly depth?: number;
}

/** Everything the kernel can ask of its host. */
export interface Runtime {
  readonly name: RuntimeName;
  /** The host's version, e.g. "2.9.6". */
  readonly version: string;
  /** This process's id, where the host has processes. */
  readonly pid?: number;
  /** Absolute path of the current working directory. */
  cwd(): string;
  /** Resolves `path` against `cwd()` (or `base`) to an absolute, normalized path. */
  resolvePath(path: string, base?: string): string;
  readonly env: {
    get(name: string): string | undefined;
    toObject(): Record<string, string>;
  };
  /** The command-line arguments after the script (empty where the host has none). */
  readonly args: readonly string[];
  /** Whether a standard stream is a terminal (false where the host has no terminal). */
  isTerminal(stream: StdStream): boolean;
  /**
   * Writes all of `text` to stdout; resolves once the host has it, so exiting after is safe.
   * Concurrent calls are written whole, in call order, so awaiting the last write awaits all.
   */
  writeStdout(text: string): Promise<void>;
  /** Writes all of `text` to stderr before returning, so log lines are never lost or reordered. */
  writeStderr(text: string): void;
  /** Renders any value for a human, as the host's console does (cycles and bigints included). */
  inspect(value: unknown, options?: InspectOptions): string;
  /**
   * Ends the process with `code` at once. Absent where there is no process to end (an edge
   * host); callers then return the code instead.
   */
  exit?(code: number): never;
  /**
   * Calls `handler` when the process receives `signal`, instead of the host's default (which
   * ends the process); returns an unsubscribe, after which the default applies again once no
   * handler is left. Absent where the host has no signals (an edge host).
   */
  onSignal?(signal: HandledSignal, handler: () => void): () => void;
  readonly fs?: RuntimeFs;
  readonly processes?: RuntimeProcesses;
  serve?(handler: FetchHandler, options?: ServeOptions): Promise<Server>;
  /**
   * Opens (creating when missing) a SQLite database. Async so that the host's SQLite module
   * loads on first use, not at every start-up; the handle itself is synchronous.
   */
  openSqlite?(path: string): Promise<SqliteHandle>;
  /** Starts a module Web Worker. */
  createWorker?(url: URL | string, options?: { name?: string }): Worker;
  /** The absolute path of a `deno` binary, for isolated plugins and sandboxes. */
  denoPath?(): string;
  /** WebGPU, where the host has it. */
  gpu?(): GPU | undefined;
}
