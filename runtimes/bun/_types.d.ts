// The few Bun APIs the Bun adapter uses, typed by hand: bun-types is not a dependency, and these
// let `deno check` cover runtimes/bun/ too. Names carry a `Bun` prefix because this is a global
// script file. Only what the adapter calls is declared; extend it when the adapter needs more.

declare module "bun:sqlite" {
  /** Options for {@link Database}. */
  export interface DatabaseOptions {
    readonly create?: boolean;
    readonly readwrite?: boolean;
    readonly readonly?: boolean;
    /** Returns every integer as a bigint. */
    readonly safeIntegers?: boolean;
    readonly strict?: boolean;
  }

  /** A prepared (and, from `query`, cached) statement. */
  export interface Statement {
    all(...params: unknown[]): Record<string, unknown>[];
    values(...params: unknown[]): unknown[][];
    run(...params: unknown[]): { changes: number; lastInsertRowid: number | bigint };
  }

  /** A bun:sqlite connection. */
  export class Database {
    constructor(filename: string, options?: DatabaseOptions);
    query(sql: string): Statement;
    exec(sql: string): unknown;
    close(throwOnError?: boolean): void;
  }
}

/** Bun's FileSink: what a "pipe" stdin of `Bun.spawn` is. */
interface BunFileSink {
  write(chunk: Uint8Array | string): number;
  flush(): number | Promise<number>;
  end(): number | Promise<number>;
}

/** What `Bun.spawn` returns. */
interface BunSubprocess {
  readonly pid: number;
  readonly stdin: BunFileSink | undefined;
  readonly stdout: ReadableStream<Uint8Array> | undefined;
  readonly stderr: ReadableStream<Uint8Array> | undefined;
  readonly exited: Promise<number>;
  readonly exitCode: number | null;
  readonly signalCode: string | null;
  kill(signal?: string | number): void;
}

/** Options of `Bun.spawn`. */
interface BunSpawnOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  stdin?: "pipe" | "inherit" | "ignore";
  stdout?: "pipe" | "inherit" | "ignore";
  stderr?: "pipe" | "inherit" | "ignore";
}

/** What `Bun.serve` returns. */
interface BunServer {
  readonly port: number;
  readonly hostname: string;
  stop(closeActiveConnections?: boolean): Promise<void>;
}

/** Options of `Bun.serve`. */
interface BunServeOptions {
  hostname: string;
  port: number;
  development?: boolean;
  fetch(request: Request): Response | Promise<Response>;
}

/**
 * The `Bun` global, as far as the adapter uses it. Not declared as a global variable, so nothing
 * else in a `deno check` run can name `Bun` by accident; the adapter reads it off `globalThis`.
 */
interface BunGlobal {
  readonly version: string;
  /** `[bun, script, ...args]`. */
  readonly argv: readonly string[];
  inspect(value: unknown, options?: { colors?: boolean; depth?: number }): string;
  /** Bun's stdout, as a file `write` takes. */
  readonly stdout: unknown;
  /** Writes all of `data` to `destination`; resolves to the bytes written. */
  write(destination: unknown, data: string | Uint8Array): Promise<number>;
  spawn(cmd: string[], options?: BunSpawnOptions): BunSubprocess;
  serve(options: BunServeOptions): BunServer;
  which(command: string): string | null;
}
