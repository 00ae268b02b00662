/**
 * Isolated plugins: each runs in its own `deno run` subprocess whose permission flags are
 * generated from its grant, and hooks are called over JSON lines on stdio.
 *
 * What holds the wall is Deno's permission system, not this file. This file makes sure Deno is
 * told the right thing and that a misbehaving process cannot hurt the host:
 * - every granted read/write directory is walked before launch and refused
 *   (`E_CAPABILITY_SYMLINK`) when it holds a symlink that leads outside the grant, because Deno
 *   checks the path as written and does not follow symlinks;
 * - the plugin gets no read access to its own files: a bootstrap in a fresh temp dir imports it
 *   statically. Deno checks imports whose specifier is computed at run time, but not the module
 *   graph it loads up front (static imports, and dynamic imports and `require()` calls with a
 *   literal specifier), so that graph (from `deno info`) is checked before launch: every file in
 *   it must lie in the plugin's package, in Keel, in a `node_modules` folder, or in a granted
 *   read path; a plugin that imports `~/.ssh/id_rsa` as text is refused (`E_CAPABILITY_DENIED`);
 * - the child also makes `require()` (node:module) demand read permission outside
 *   `node_modules`, since Deno's require trusts every file of that graph;
 * - `--no-remote`, `--cached-only` and a manual `node_modules` keep the module loader off the
 *   network; the environment is cleared down to what Deno needs plus the granted variables;
 *   WebGPU, which Deno does not gate behind a permission, is switched off unless `gpu` is granted;
 * - setup and every hook call have a deadline: a missed one kills the process with SIGKILL;
 * - memory is capped twice: V8's old space by `--max-old-space-size`, and the whole process
 *   (ArrayBuffers live outside the V8 heap) by polling its resident size where the host has
 *   `/proc` (Linux), killing it past `memoryMb + 256` MiB.
 *
 * Protocol, one JSON object per line. Host to child: `{ id, type: "setup", manifest, grant }`,
 * `{ id, type: "call", hook, args }`, `{ id, type: "dispose" }`. Child to host:
 * `{ type: "loaded", manifest | error }` once the module is imported, then `{ id, type: "ok", value }`,
 * `{ id, type: "error", error }` and `{ type: "log", level, message }`. Other stdout lines are
 * logged as plugin output.
 * @module
 */

import {
  type Capability,
  createGrant,
  formatCapability,
  type Grant,
  parseCapability,
} from "./capabilities.ts";
import { realPathOrParent } from "./context.ts";
import { errorMessage, KeelError, type KeelErrorJson } from "./errors.ts";
import { validateHooks } from "./hooks.ts";
import { createSilentLogger, LOG_LEVELS, type Logger, type LogLevel } from "./logger.ts";
import { validateManifest } from "./manifest.ts";
import {
  dirname,
  fromFileUrl,
  isWithin,
  joinPath,
  normalizePath,
  resolvePath,
  toFileUrl,
} from "./path.ts";
import type { HookName, IsolatedPluginSpec, PluginManifest } from "./plugin.ts";
import type { ChildProcess, ProcessStatus, Runtime, RuntimeFs } from "./runtime.ts";

/** What {@link startIsolatedPlugin} needs. */
export interface IsolationOptions {
  readonly runtime: Runtime;
  /** The capabilities the plugin holds (its requested ones, all granted). */
  readonly grant: Grant;
  readonly logger: Logger;
}

/** A running isolated plugin. */
export interface IsolatedHandle {
  readonly pid: number;
  /** Hooks its setup returned. */
  readonly hooks: readonly HookName[];
  /** The hooks that asked to run before (`pre`) or after (`post`) the plugin-order handlers. */
  readonly orders: Readonly<Partial<Record<HookName, "pre" | "post">>>;
  /** Calls a hook in the subprocess; arguments and result cross as JSON. */
  call(hook: HookName, args: readonly unknown[]): Promise<unknown>;
  /** Runs the plugin's dispose hook (bounded by the time limit) and stops the process. */
  close(): Promise<void>;
}

/** A message the host sends to an isolated plugin's process. */
export type IsolateHostMessage =
  | {
    readonly id: number;
    readonly type: "setup";
    readonly manifest: PluginManifest;
    readonly grant: readonly string[];
  }
  | {
    readonly id: number;
    readonly type: "call";
    readonly hook: HookName;
    readonly args: readonly unknown[];
  }
  | { readonly id: number; readonly type: "dispose" };

/** A message an isolated plugin's process sends to the host. */
export type IsolateChildMessage =
  | { readonly type: "loaded"; readonly manifest?: unknown; readonly error?: KeelErrorJson }
  | { readonly id: number; readonly type: "ok"; readonly value?: unknown }
  | { readonly id: number; readonly type: "error"; readonly error: KeelErrorJson }
  | {
    readonly type: "log";
    readonly level: LogLevel;
    readonly message: string;
    readonly fields?: Record<string, unknown>;
  };

/** Extra inputs of {@link denoPermissionFlags}. */
export interface DenoFlagOptions {
  /** V8 old-space cap in MiB. Default 256. */
  readonly memoryMb?: number;
}

/** Options for {@link readIsolatedManifest}. */
export interface ReadManifestOptions {
  readonly runtime: Runtime;
  /** Process start plus module import. Default 15 000. */
  readonly timeoutMs?: number;
  /** V8 old-space cap in MiB. Default 256. */
  readonly memoryMb?: number;
  /** Where the module's console output goes; default nowhere. */
  readonly logger?: Logger;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_SETUP_TIMEOUT_MS = 15_000;
const DEFAULT_MEMORY_MB = 256;
/** Resident memory allowed beyond the heap cap: the runtime itself, code, buffers. */
const RSS_HEADROOM_MB = 256;
const RSS_POLL_MS = 100;
/** How long a process gets to exit by itself after dispose before SIGKILL. */
const KILL_GRACE_MS = 1_000;
/** How long output may keep flowing after the process ended (a grandchild holding the pipe). */
const DRAIN_MS = 1_000;
const MAX_LINE_CHARS = 32 * 1024 * 1024;
const MAX_TREE_ENTRIES = 20_000;
const STDERR_TAIL_CHARS = 8 * 1024;
const MAX_LOG_CHARS = 8 * 1024;
const CHILD_ENTRY = new URL("../runtimes/deno/isolate-child.ts", import.meta.url).href;
/** Keel's own module folders, which every isolated plugin's process imports. */
const KEEL_PATHS = import.meta.url.startsWith("file:")
  ? ["mod.ts", "core", "runtimes", "plugins"].map((p) =>
    joinPath(normalizePath(fromFileUrl(new URL("../", import.meta.url))), p)
  )
  : [];
const PACKAGE_FILES = ["package.json", "deno.json", "deno.jsonc", "jsr.json"];

/** Variables Deno itself needs (cache, temp dir, proxies, certificates); never readable by the plugin without `env`. */
const PASS_ENV = [
  "PATH",
  "HOME",
  "USERPROFILE",
  "DENO_DIR",
  "XDG_CACHE_HOME",
  "TMPDIR",
  "TMP",
  "TEMP",
  "SYSTEMROOT",
  "LOCALAPPDATA",
  "APPDATA",
  "LANG",
  "LC_ALL",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
  "DENO_CERT",
  "DENO_TLS_CA_STORE",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
] as const;

// -----------------------------------------------------------------------------------------------
// Flags and environment

function positiveInteger(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`${what} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/**
 * The `deno run` flags for a plugin holding `grant`: one `--allow-*` per granted kind (scoped
 * lists, or the bare flag for an unscoped capability), nothing for a kind not granted, and the
 * flags every isolated plugin gets (`--no-prompt`, no config file or lockfile, no remote or
 * uncached modules, the existing `node_modules`, a V8 heap cap). Without `gpu`, changing
 * `DENO_WEBGPU_BACKEND` is denied, since that variable is what switches WebGPU off.
 *
 * @throws {KeelError} `E_CAPABILITY_INVALID` for a scope holding a comma, which Deno's flag
 *   syntax would read as two entries.
 * @example
 * ```ts
 * import { createGrant } from "./capabilities.ts";
 * import { denoPermissionFlags } from "./isolation.ts";
 * const flags = denoPermissionFlags(createGrant(["net:api.example.com:443", "env:HOME"]), { memoryMb: 128 });
 * if (!flags.includes("--allow-net=api.example.com:443")) throw new Error("unreachable");
 * if (!flags.includes("--v8-flags=--max-old-space-size=128")) throw new Error("unreachable");
 * if (flags.some((f) => f.startsWith("--allow-read"))) throw new Error("unreachable");
 * ```
 */
export function denoPermissionFlags(grant: Grant, extra: DenoFlagOptions = {}): string[] {
  const memoryMb = positiveInteger(extra.memoryMb, DEFAULT_MEMORY_MB, "memoryMb");
  const flags = [
    "--no-prompt",
    "--no-config",
    "--no-lock",
    "--node-modules-dir=manual",
    "--no-remote",
    "--cached-only",
    `--v8-flags=--max-old-space-size=${memoryMb}`,
  ];
  const kinds = ["read", "write", "net", "env", "sys", "run", "ffi"] as const;
  for (const kind of kinds) {
    const caps = grant.capabilities.filter((c) => c.kind === kind);
    if (caps.length === 0) continue;
    if (caps.some((c) => c.scope === undefined)) {
      flags.push(`--allow-${kind}`);
      continue;
    }
    const scopes: string[] = [];
    for (const cap of caps) {
      const scope = cap.scope!;
      if (scope.includes(",")) {
        throw new KeelError(
          "E_CAPABILITY_INVALID",
          `Capability "${
            formatCapability(cap)
          }" holds a comma, which Deno's --allow-${kind} list cannot express; rename the path or grant its parent`,
          { details: { capability: formatCapability(cap) } },
        );
      }
      if (!scopes.includes(scope)) scopes.push(scope);
    }
    flags.push(`--allow-${kind}=${scopes.join(",")}`);
  }
  if (!grant.covers({ kind: "gpu" })) flags.push("--deny-env=DENO_WEBGPU_BACKEND");
  return flags;
}

/**
 * The environment an isolated plugin's process starts with: only what Deno needs to run
 * (cache, temp dir, proxies), the variables the plugin was granted, and `DENO_WEBGPU_BACKEND`
 * set to "none" unless it holds `gpu`. Everything else of the host's environment is left out.
 *
 * @example
 * ```ts
 * import { createGrant } from "./capabilities.ts";
 * import { isolatedEnvironment } from "./isolation.ts";
 * const env = isolatedEnvironment(createGrant(["env:API_KEY"]), { PATH: "/bin", API_KEY: "k", DB_PASSWORD: "p" });
 * if (env.API_KEY !== "k" || env.PATH !== "/bin" || "DB_PASSWORD" in env) throw new Error("unreachable");
 * ```
 */
export function isolatedEnvironment(
  grant: Grant,
  hostEnv: Readonly<Record<string, string>>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of PASS_ENV) {
    const value = hostEnv[name];
    if (value !== undefined) env[name] = value;
  }
  for (const cap of grant.capabilities) {
    if (cap.kind !== "env") continue;
    for (const [name, value] of Object.entries(hostEnv)) {
      const match = cap.scope === undefined ||
        (cap.scope.endsWith("*") ? name.startsWith(cap.scope.slice(0, -1)) : name === cap.scope);
      if (match) env[name] = value;
    }
  }
  env.NO_COLOR = "1";
  env.DENO_NO_UPDATE_CHECK = "1";
  if (grant.covers({ kind: "gpu" })) {
    if (hostEnv.DENO_WEBGPU_BACKEND !== undefined) {
      env.DENO_WEBGPU_BACKEND = hostEnv.DENO_WEBGPU_BACKEND;
    }
  } else {
    env.DENO_WEBGPU_BACKEND = "none";
  }
  return env;
}

// -----------------------------------------------------------------------------------------------
// Symlinks in granted paths

/** Options for {@link checkGrantedPaths}. */
export interface CheckGrantedPathsOptions {
  /** Named in errors. */
  readonly plugin?: string;
  /** Most entries walked under one granted directory. Default 20 000. */
  readonly maxEntries?: number;
}

/**
 * Resolves every granted `read`/`write` path through symlinks and walks each granted directory,
 * refusing one that holds a symlink leading outside what is granted for that kind (Deno checks
 * a path as written, so such a link would let the plugin read or write where it leads). Returns
 * the grant plus the resolved paths, which is what Deno must be told.
 *
 * @throws {KeelError} `E_CAPABILITY_SYMLINK` for such a link, a dangling or looping link, a
 *   directory that cannot be listed, or a tree too large to check.
 */
export async function checkGrantedPaths(
  grant: Grant,
  fs: RuntimeFs,
  options: CheckGrantedPathsOptions = {},
): Promise<Grant> {
  const maxEntries = positiveInteger(options.maxEntries, MAX_TREE_ENTRIES, "maxEntries");
  const who = options.plugin === undefined ? "A plugin" : `Plugin "${options.plugin}"`;
  const real = new Map<Capability, string>();
  for (const cap of grant.capabilities) {
    if ((cap.kind === "read" || cap.kind === "write") && cap.scope !== undefined) {
      real.set(cap, await realPathOrParent(fs, cap.scope));
    }
  }
  const within = (kind: "read" | "write", target: string): boolean =>
    grant.capabilities.some((c) =>
      c.kind === kind && (c.scope === undefined || isWithin(target, real.get(c) ?? c.scope))
    );

  for (const [cap, root] of real) {
    const kind = cap.kind as "read" | "write";
    const refuse = (why: string, details: Record<string, unknown>): KeelError =>
      new KeelError(
        "E_CAPABILITY_SYMLINK",
        `${who} was granted "${formatCapability(cap)}", ${why}`,
        {
          details: {
            ...(options.plugin === undefined ? {} : { plugin: options.plugin }),
            capability: formatCapability(cap),
            ...details,
          },
        },
      );
    if (root === "/") continue; // nothing lies outside it
    let isDirectory: boolean;
    try {
      isDirectory = (await fs.stat(root)).isDirectory;
    } catch (e) {
      if (KeelError.is(e, "E_RUNTIME_NOT_FOUND")) continue; // to be created; nothing in it yet
      throw e;
    }
    if (!isDirectory) continue;
    const queue = [root];
    let seen = 0;
    while (queue.length > 0) {
      const dir = queue.pop()!;
      let entries;
      try {
        entries = await fs.readDir(dir);
      } catch (e) {
        throw refuse(
          `but "${dir}" cannot be listed to check it for symlinks (${
            errorMessage(e)
          }); grant a narrower path`,
          { path: dir },
        );
      }
      for (const entry of entries) {
        if (++seen > maxEntries) {
          throw refuse(
            `which holds more than ${maxEntries} entries, too many to check for symlinks that lead outside it; grant a narrower path`,
            { limit: maxEntries },
          );
        }
        const path = joinPath(dir, entry.name);
        if (entry.isSymlink) {
          let target: string;
          try {
            target = await fs.realPath(path);
          } catch (e) {
            throw refuse(
              `which holds a symlink "${path}" that cannot be resolved (${
                errorMessage(e)
              }); remove the link or grant a path without it`,
              { link: path },
            );
          }
          if (!within(kind, target)) {
            throw refuse(
              `which holds a symlink "${path}" to "${target}", outside the grant; remove the link or grant a path without it`,
              { link: path, target },
            );
          }
        } else if (entry.isDirectory) {
          queue.push(path);
        }
      }
    }
  }
  const extra: Capability[] = [];
  for (const [cap, root] of real) {
    if (root !== cap.scope) extra.push({ kind: cap.kind, scope: root });
  }
  return extra.length === 0 ? grant : createGrant([...grant.capabilities, ...extra]);
}

// -----------------------------------------------------------------------------------------------
// The process connection

interface Pending {
  readonly hook: string;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface ConnectionOptions {
  readonly name: string;
  readonly module: string;
  readonly runtime: Runtime;
  readonly logger: Logger;
  readonly child: ChildProcess;
  readonly memoryMb: number;
}

const encoder = new TextEncoder();

function delay(ms: number): { promise: Promise<void>; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/** Waits for `promise` at most `ms`; true when it settled in time. Never rejects. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const wait = delay(ms);
  try {
    return await Promise.race([
      promise.then(() => true, () => true),
      wait.promise.then(() => false),
    ]);
  } finally {
    wait.cancel();
  }
}

function truncate(text: string, max: number): string {
  return text.length <= max
    ? text
    : `${text.slice(0, max)}… (${text.length - max} more characters)`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** One isolated process: framing, pending calls, deadlines, crash and memory handling. */
class IsolateConnection {
  readonly #name: string;
  readonly #module: string;
  readonly #runtime: Runtime;
  readonly #logger: Logger;
  readonly #child: ChildProcess;
  readonly #memoryMb: number;
  readonly #pending = new Map<number, Pending>();
  readonly #writer: WritableStreamDefaultWriter<Uint8Array> | null;
  readonly #drained: Promise<void>;
  readonly #exited: Promise<void>;
  #nextId = 1;
  #stderrTail = "";
  #loaded = false;
  #outOfMemory = false;
  /** Set once no call can succeed any more; later calls reject with it. */
  #dead: KeelError | null = null;
  #closing = false;
  #watch: ReturnType<typeof setTimeout> | undefined;
  #readers: ReadableStreamDefaultReader<Uint8Array>[] = [];

  constructor(options: ConnectionOptions) {
    this.#name = options.name;
    this.#module = options.module;
    this.#runtime = options.runtime;
    this.#logger = options.logger;
    this.#child = options.child;
    this.#memoryMb = options.memoryMb;
    this.#writer = options.child.stdin?.getWriter() ?? null;
    this.#drained = Promise.all([
      this.#readLines(options.child.stdout, (line) => this.#onStdout(line)),
      this.#readLines(options.child.stderr, (line) => this.#onStderr(line)),
    ]).then(() => {});
    this.#exited = options.child.status.then(
      (status) => this.#onExit(status),
      (e) => this.#onExit({ success: false, code: -1, signal: null }, e),
    );
    this.#startMemoryWatch();
  }

  get pid(): number {
    return this.#child.pid;
  }

  get alive(): boolean {
    return this.#dead === null;
  }

  /** Waits for the child's `loaded` message: the manifest its module exports. */
  loaded(timeoutMs: number): Promise<unknown> {
    return this.#register(0, "load", timeoutMs);
  }

  /** Sends a request and waits for its answer, killing the process when `timeoutMs` passes. */
  request(message: Record<string, unknown>, hook: string, timeoutMs: number): Promise<unknown> {
    const id = this.#nextId++;
    let line: string;
    try {
      line = JSON.stringify({ ...message, id });
    } catch (e) {
      return Promise.reject(
        new TypeError(
          `The arguments of hook "${hook}" for plugin "${this.#name}" cannot be sent as JSON: ${
            errorMessage(e)
          }`,
        ),
      );
    }
    const answer = this.#register(id, hook, timeoutMs);
    if (this.#dead === null) this.#write(line);
    return answer;
  }

  #register(id: number, hook: string, timeoutMs: number): Promise<unknown> {
    if (this.#dead) return Promise.reject(this.#dead);
    return new Promise((resolve, reject) => {
      const pending: Pending = { hook, resolve, reject, timer: undefined };
      pending.timer = setTimeout(() => this.#onTimeout(id, timeoutMs), timeoutMs);
      this.#pending.set(id, pending);
    });
  }

  /** Ends the process: SIGKILL unless it exits by itself within the grace period. */
  async stop(grace: boolean): Promise<void> {
    this.#closing = true;
    this.#writer?.close().catch(() => {});
    if (!grace || !(await settlesWithin(this.#exited, KILL_GRACE_MS))) this.#child.kill("SIGKILL");
    await this.#exited;
    this.#stopMemoryWatch();
  }

  /** Kills the process at once and fails every pending call with `reason`. */
  kill(reason: KeelError): void {
    if (this.#dead) return;
    this.#dead = reason;
    this.#child.kill("SIGKILL");
    this.#rejectAll(() => reason);
  }

  #write(line: string): void {
    // Write failures mean the process is gone; the exit handler reports that to the callers.
    this.#writer?.write(encoder.encode(line + "\n")).catch(() => {});
  }

  #deliver(onLine: (line: string) => void, line: string): void {
    try {
      onLine(line);
    } catch (e) {
      // A throwing log sink must not stop the reader (and with it every later answer).
      try {
        this.#logger.error(
          `Could not handle a line from plugin "${this.#name}": ${errorMessage(e)}`,
        );
      } catch {
        // nothing left to tell
      }
    }
  }

  async #readLines(
    stream: ReadableStream<Uint8Array> | null,
    onLine: (line: string) => void,
  ): Promise<void> {
    if (!stream) return;
    const reader = stream.getReader();
    this.#readers.push(reader);
    const decoder = new TextDecoder();
    let parts: string[] = [];
    let size = 0;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        let rest = decoder.decode(value, { stream: true });
        let at: number;
        while ((at = rest.indexOf("\n")) >= 0) {
          parts.push(rest.slice(0, at));
          this.#deliver(onLine, parts.join(""));
          parts = [];
          size = 0;
          rest = rest.slice(at + 1);
        }
        if (rest !== "") {
          parts.push(rest);
          size += rest.length;
          if (size > MAX_LINE_CHARS) {
            this.kill(
              new KeelError(
                "E_PLUGIN_PROTOCOL",
                `Plugin "${this.#name}" wrote a line longer than ${MAX_LINE_CHARS} characters and was stopped; return smaller values from its hooks`,
                { details: { plugin: this.#name } },
              ),
            );
            await reader.cancel().catch(() => {});
            return;
          }
        }
      }
      if (parts.length) this.#deliver(onLine, parts.join(""));
    } catch {
      // The stream broke because the process died; the exit handler reports it.
    }
  }

  #onStderr(line: string): void {
    this.#stderrTail = (this.#stderrTail + line + "\n").slice(-STDERR_TAIL_CHARS);
    if (line.trim() !== "") this.#logger.debug(truncate(line, MAX_LOG_CHARS), { stream: "stderr" });
  }

  #onStdout(line: string): void {
    if (line.trim() === "") return;
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      message = undefined;
    }
    if (!isRecord(message) || typeof message.type !== "string") {
      this.#logger.info(truncate(line, MAX_LOG_CHARS), { stream: "stdout" });
      return;
    }
    switch (message.type) {
      case "log": {
        const level = LOG_LEVELS.includes(message.level as LogLevel)
          ? (message.level as LogLevel)
          : "info";
        const text = typeof message.message === "string"
          ? message.message
          : String(message.message);
        // The plugin's own fields may not pose as another plugin.
        const fields = isRecord(message.fields)
          ? { ...message.fields, plugin: this.#name }
          : undefined;
        this.#logger[level](truncate(text, MAX_LOG_CHARS), fields);
        return;
      }
      case "loaded":
        this.#loaded = true;
        this.#settle(
          0,
          message.error === undefined,
          message.error === undefined ? message.manifest : message.error,
        );
        return;
      case "ok":
      case "error":
        if (typeof message.id === "number" && message.id > 0 && this.#pending.has(message.id)) {
          this.#settle(
            message.id,
            message.type === "ok",
            message.type === "ok" ? message.value : message.error,
          );
          return;
        }
    }
    this.#logger.info(truncate(line, MAX_LOG_CHARS), { stream: "stdout" });
  }

  #settle(id: number, ok: boolean, value: unknown): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (ok) pending.resolve(value);
    else pending.reject(this.#errorFromChild(value, pending.hook));
  }

  #errorFromChild(value: unknown, hook: string): KeelError {
    if (isRecord(value) && typeof value.code === "string" && typeof value.message === "string") {
      return KeelError.fromJSON({
        name: "KeelError",
        code: value.code as KeelErrorJson["code"],
        message: truncate(value.message, MAX_LOG_CHARS),
        ...(isRecord(value.details) ? { details: value.details } : {}),
        ...(value.cause !== undefined ? { cause: value.cause } : {}),
      });
    }
    return new KeelError(
      "E_PLUGIN_PROTOCOL",
      `Plugin "${this.#name}" answered hook "${hook}" with a malformed error; the plugin or its Keel version is broken`,
      {
        details: { plugin: this.#name, hook },
      },
    );
  }

  #onTimeout(id: number, timeoutMs: number): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    const error = new KeelError(
      "E_PLUGIN_TIMEOUT",
      `Plugin "${this.#name}" did not finish ${
        pending.hook === "load" ? `loading "${this.#module}"` : `hook "${pending.hook}"`
      } within ${timeoutMs} ms and was stopped; make it faster or raise its ${
        pending.hook === "load" || pending.hook === "setup" ? "setupTimeoutMs" : "timeoutMs"
      }`,
      { details: { plugin: this.#name, hook: pending.hook, timeoutMs } },
    );
    pending.reject(error);
    this.kill(
      new KeelError(
        "E_PLUGIN_CRASHED",
        `Plugin "${this.#name}" is not running: it was stopped after hook "${pending.hook}" ran past ${timeoutMs} ms; create the kernel again to restart it`,
        { details: { plugin: this.#name, hook: pending.hook, reason: "timeout" } },
      ),
    );
  }

  async #onExit(status: ProcessStatus, cause?: unknown): Promise<void> {
    this.#stopMemoryWatch();
    // Let the last lines (an answer, the OOM report) arrive before deciding what happened.
    if (!(await settlesWithin(this.#drained, DRAIN_MS))) {
      for (const reader of this.#readers) await reader.cancel().catch(() => {});
    }
    if (this.#dead) return;
    if (this.#closing) {
      this.#dead = new KeelError(
        "E_PLUGIN_DISPOSED",
        `Plugin "${this.#name}" was closed; create the kernel again to use it`,
        {
          details: { plugin: this.#name },
        },
      );
      this.#rejectAll(() => this.#dead!);
      return;
    }
    const heapFull = /out of memory|Reached heap limit/i.test(this.#stderrTail);
    const oom = this.#outOfMemory || heapFull;
    const how = oom
      ? `ran out of memory (${
        heapFull
          ? `heap limit ${this.#memoryMb} MiB`
          : `over ${this.#memoryMb + RSS_HEADROOM_MB} MiB resident`
      })`
      : status.signal !== null
      ? `was killed by ${status.signal}`
      : `exited with code ${status.code}`;
    const last = this.#stderrTail.split("\n").map((l) => l.trim()).filter((l) =>
      l !== "" && !/^[#=]/.test(l)
    );
    const hint = oom || last.length === 0
      ? ""
      : `: ${truncate(last.find((l) => /error/i.test(l)) ?? last[last.length - 1]!, 500)}`;
    const advice = oom
      ? `raise its memoryMb or make it use less memory`
      : `see its log for the cause`;
    const details = {
      plugin: this.#name,
      code: status.code,
      signal: status.signal,
      ...(oom ? { reason: "out-of-memory" } : {}),
    };
    const options = (hook: string) => ({
      details: { ...details, hook },
      ...(cause === undefined ? {} : { cause }),
    });
    this.#dead = new KeelError(
      "E_PLUGIN_CRASHED",
      `Plugin "${this.#name}" is not running: it ${how}; create the kernel again to restart it`,
      options(""),
    );
    this.#rejectAll((hook) =>
      hook === "load" && !this.#loaded
        ? new KeelError(
          "E_PLUGIN_LOAD_FAILED",
          `Plugin "${this.#name}" could not be loaded from "${this.#module}"${hint}; check that the module exists and its imports resolve`,
          options(hook),
        )
        : new KeelError(
          "E_PLUGIN_CRASHED",
          `Plugin "${this.#name}" ${how} during ${
            hook === "load" ? "loading" : `hook "${hook}"`
          }${hint}; ${advice}`,
          options(hook),
        )
    );
  }

  #rejectAll(error: (hook: string) => KeelError): void {
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(error(pending.hook));
    }
  }

  #startMemoryWatch(): void {
    const fs = this.#runtime.fs;
    if (!fs) return;
    const limitKb = (this.#memoryMb + RSS_HEADROOM_MB) * 1024;
    const path = `/proc/${this.#child.pid}/status`;
    const tick = async (): Promise<void> => {
      this.#watch = undefined;
      let text: string;
      try {
        text = await fs.readTextFile(path);
      } catch {
        return; // no /proc on this host, or the process is gone
      }
      if (this.#dead || this.#closing) return;
      const kb = Number(/VmRSS:\s*(\d+)\s*kB/.exec(text)?.[1] ?? "0");
      if (kb > limitKb) {
        this.#outOfMemory = true;
        this.#child.kill("SIGKILL");
        return;
      }
      this.#watch = setTimeout(tick, RSS_POLL_MS);
    };
    this.#watch = setTimeout(tick, RSS_POLL_MS);
  }

  #stopMemoryWatch(): void {
    clearTimeout(this.#watch);
    this.#watch = undefined;
  }
}

// -----------------------------------------------------------------------------------------------
// The static module graph

interface InfoModule {
  readonly specifier?: unknown;
}

/**
 * The file paths of every module in the entry's graph. Dynamic imports and `require()` calls
 * with a literal specifier count too: Deno loads the whole graph up front without checking read
 * permission, and its `require` trusts every file in the graph (measured on 2.9.6:
 * `await import("/home/u/c.json", { with: { type: "json" } })` and `require("/home/u/c.json")`
 * both read the file under no permissions, while the same calls with a computed specifier are
 * denied).
 */
function graphFiles(info: unknown): string[] | undefined {
  if (!isRecord(info) || !Array.isArray(info.modules)) return undefined;
  const files: string[] = [];
  for (const m of info.modules as InfoModule[]) {
    if (isRecord(m) && typeof m.specifier === "string" && m.specifier.startsWith("file:")) {
      files.push(fromFileUrl(m.specifier));
    }
  }
  return files;
}

async function packageRoot(fs: RuntimeFs, file: string): Promise<string> {
  const start = dirname(file);
  for (let dir = start;; dir = dirname(dir)) {
    for (const name of PACKAGE_FILES) if (await fs.exists(joinPath(dir, name))) return dir;
    if (dir === "/") return start;
  }
}

function hiddenWithin(path: string, root: string): boolean {
  return path.slice(root.length).split("/").some((part) => part.startsWith("."));
}

/**
 * Refuses a plugin whose module graph reaches files it could not read: Deno loads the main
 * module's graph before permissions apply, so `import key from "/home/u/.ssh/id_rsa" with
 * { type: "text" }` would otherwise read any file the host user can.
 */
async function checkStaticImports(
  name: string,
  module: string,
  entry: string,
  options: {
    runtime: Runtime;
    denoPath: string;
    grant: Grant;
    tempDir: string;
    env: Record<string, string>;
    deadline: number;
  },
): Promise<void> {
  const { runtime } = options;
  const fs = runtime.fs!;
  const timeoutMs = Math.max(1, options.deadline - Date.now());
  const out = await runtime.processes!.run(options.denoPath, {
    args: [
      "info",
      "--json",
      "--no-config",
      "--no-lock",
      "--node-modules-dir=manual",
      "--no-remote",
      entry,
    ],
    cwd: runtime.cwd(),
    env: options.env,
    clearEnv: true,
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (out.signal === "SIGKILL") {
    throw new KeelError(
      "E_PLUGIN_TIMEOUT",
      `Plugin "${name}" could not be analysed within ${timeoutMs} ms; raise its setupTimeoutMs`,
      {
        details: { plugin: name, hook: "load", timeoutMs },
      },
    );
  }
  let files: string[] | undefined;
  try {
    files = out.success ? graphFiles(JSON.parse(out.stdout)) : undefined;
  } catch {
    files = undefined;
  }
  if (files === undefined) {
    const why = out.stderr.split("\n").map((l) => l.trim()).find((l) => l !== "") ??
      `deno info exited with code ${out.code}`;
    throw new KeelError(
      "E_PLUGIN_LOAD_FAILED",
      `Plugin "${name}" could not be loaded from "${module}": ${
        truncate(why.replace(/^error:\s*/i, ""), 500)
      }; check that the module exists and its imports resolve`,
      { details: { plugin: name, module } },
    );
  }
  const moduleFile = module.startsWith("file:") ? fromFileUrl(module) : entry;
  const root = await packageRoot(fs, moduleFile);
  const both = async (
    paths: readonly string[],
  ): Promise<string[]> => [
    ...paths,
    ...(await Promise.all(paths.map((p) => realPathOrParent(fs, p)))),
  ];
  const temps = await both([options.tempDir]);
  const keel = await both(KEEL_PATHS);
  const roots = await both([root]);
  // What a module reads is its real file, so the real path is what must be allowed.
  const allowed = (path: string): boolean =>
    temps.some((t) => isWithin(path, t)) ||
    /(^|\/)node_modules\//.test(path) ||
    keel.some((k) => isWithin(path, k)) ||
    roots.some((r) => isWithin(path, r) && !hiddenWithin(path, r)) ||
    options.grant.covers({ kind: "read", scope: path });
  for (const file of files) {
    const real = await realPathOrParent(fs, file);
    if (allowed(real)) continue;
    throw new KeelError(
      "E_CAPABILITY_DENIED",
      `Plugin "${name}" module "${module}" imports "${file}"${
        real !== file ? ` (a link to "${real}")` : ""
      }, which lies outside its package "${root}" and its read grant; Deno reads the modules it loads at start without checking permissions, so this is refused: move the file into the package or grant "read:${real}"`,
      { details: { plugin: name, module, file, target: real, missing: [`read:${real}`] } },
    );
  }
}

// -----------------------------------------------------------------------------------------------
// Launch

interface Launched {
  readonly connection: IsolateConnection;
  readonly tempDir: string;
  readonly moduleManifest: unknown;
}

function requireProcessRuntime(
  runtime: Runtime,
  name: string,
): { fs: RuntimeFs; denoPath: string } {
  if (!runtime.processes || !runtime.fs || !runtime.denoPath) {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      `Plugin "${name}" must run isolated, which needs a runtime with processes, files and a deno binary (Deno or Bun)`,
      { details: { plugin: name } },
    );
  }
  return { fs: runtime.fs, denoPath: runtime.denoPath() };
}

function bootstrapSource(moduleUrl: string, mode: "serve" | "describe"): string {
  return [
    `import "./prelude.mjs";`,
    `import * as plugin from ${JSON.stringify(moduleUrl)};`,
    `import { serveIsolatedPlugin } from ${JSON.stringify(CHILD_ENTRY)};`,
    `await serveIsolatedPlugin(plugin, ${JSON.stringify(mode)});`,
    "",
  ].join("\n");
}

/** Starts the process and waits for the module to import; the caller owns cleanup on success. */
async function launch(
  name: string,
  module: string,
  mode: "serve" | "describe",
  options: { runtime: Runtime; grant: Grant; logger: Logger; memoryMb: number; deadline: number },
): Promise<Launched> {
  const { runtime } = options;
  const { fs, denoPath } = requireProcessRuntime(runtime, name);
  const flags = denoPermissionFlags(options.grant, { memoryMb: options.memoryMb });
  const moduleUrl = toFileUrl(
    /^[a-z][a-z0-9+.-]*:/i.test(module) ? module : resolvePath(module, runtime.cwd()),
  );
  const tempDir = await fs.makeTempDir("keel-isolate-");
  let connection: IsolateConnection | undefined;
  try {
    const entry = joinPath(tempDir, "main.mjs");
    // Imported first, so the child routes console output before the plugin's code runs.
    await fs.writeTextFile(
      joinPath(tempDir, "prelude.mjs"),
      `import { prepareIsolatedChild } from ${
        JSON.stringify(CHILD_ENTRY)
      };\nprepareIsolatedChild();\n`,
    );
    await fs.writeTextFile(entry, bootstrapSource(moduleUrl, mode));
    const env = isolatedEnvironment(options.grant, runtime.env.toObject());
    await checkStaticImports(name, moduleUrl, entry, {
      runtime,
      denoPath,
      grant: options.grant,
      tempDir,
      env,
      deadline: options.deadline,
    });
    const child = runtime.processes!.spawn(denoPath, {
      args: ["run", ...flags, entry],
      cwd: runtime.cwd(),
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    });
    connection = new IsolateConnection({
      name,
      module,
      runtime,
      logger: options.logger,
      child,
      memoryMb: options.memoryMb,
    });
    const moduleManifest = await connection.loaded(Math.max(1, options.deadline - Date.now()));
    return { connection, tempDir, moduleManifest };
  } catch (e) {
    if (connection) await connection.stop(false);
    await fs.remove(tempDir).catch(() => {});
    throw e;
  }
}

function checkModuleManifest(
  spec: IsolatedPluginSpec,
  exported: unknown,
  grant: Grant,
  base: string,
): void {
  const declared = spec.manifest;
  let manifest: PluginManifest;
  try {
    manifest = validateManifest(exported, { base });
  } catch (e) {
    throw new KeelError(
      "E_PLUGIN_PROTOCOL",
      `Plugin "${declared.name}": the manifest its module "${spec.module}" exports is invalid (${
        errorMessage(e)
      }); fix the module or reinstall the plugin`,
      { cause: e, details: { plugin: declared.name } },
    );
  }
  for (const field of ["name", "version"] as const) {
    if (manifest[field] !== declared[field]) {
      throw new KeelError(
        "E_PLUGIN_PROTOCOL",
        `Plugin "${declared.name}" was declared with ${field} "${
          declared[field]
        }", but its module "${spec.module}" exports ${field} "${
          manifest[field]
        }"; the declared manifest (package.json "keel" field) and the module must agree`,
        {
          details: {
            plugin: declared.name,
            field,
            declared: declared[field],
            exported: manifest[field],
          },
        },
      );
    }
  }
  const extra = (manifest.capabilities ?? []).filter((c) =>
    !grant.covers(parseCapability(c, { base }))
  );
  if (extra.length > 0) {
    throw new KeelError(
      "E_CAPABILITY_DENIED",
      `Plugin "${declared.name}" module "${spec.module}" asks for ${
        extra.map((c) => `"${c}"`).join(", ")
      }, which its declared manifest does not list; the declared capabilities are all it may use, so fix the module or declare and grant them`,
      { details: { plugin: declared.name, missing: extra } },
    );
  }
}

/**
 * Starts an isolated plugin and runs its setup: checks granted paths for symlinks, writes a
 * bootstrap to a temp dir, spawns `deno run` with flags from the grant, checks that the
 * manifest the module exports agrees with the declared one, and sends `setup`.
 *
 * @throws {KeelError} `E_CAPABILITY_SYMLINK`, `E_CAPABILITY_DENIED` (the module asks for more
 *   than declared, or Deno refused something in setup), `E_PLUGIN_PROTOCOL`,
 *   `E_PLUGIN_LOAD_FAILED`, `E_PLUGIN_TIMEOUT`, `E_PLUGIN_CRASHED`, `E_PLUGIN_HOOK_*`,
 *   `E_HOOK_FAILED` (setup threw), `E_RUNTIME_UNSUPPORTED`
 */
export async function startIsolatedPlugin(
  spec: IsolatedPluginSpec,
  options: IsolationOptions,
): Promise<IsolatedHandle> {
  const { runtime, logger } = options;
  const name = spec.manifest.name;
  const timeoutMs = positiveInteger(
    spec.timeoutMs,
    DEFAULT_TIMEOUT_MS,
    `Plugin "${name}" timeoutMs`,
  );
  const setupTimeoutMs = positiveInteger(
    spec.setupTimeoutMs,
    DEFAULT_SETUP_TIMEOUT_MS,
    `Plugin "${name}" setupTimeoutMs`,
  );
  const memoryMb = positiveInteger(spec.memoryMb, DEFAULT_MEMORY_MB, `Plugin "${name}" memoryMb`);
  const deadline = Date.now() + setupTimeoutMs;
  const { fs } = requireProcessRuntime(runtime, name);
  const grant = await checkGrantedPaths(options.grant, fs, { plugin: name });
  const { connection, tempDir, moduleManifest } = await launch(name, spec.module, "serve", {
    runtime,
    grant,
    logger,
    memoryMb,
    deadline,
  });

  let hooks: HookName[];
  const orders: Partial<Record<HookName, "pre" | "post">> = {};
  try {
    checkModuleManifest(spec, moduleManifest, options.grant, runtime.cwd());
    const names = await connection.request(
      { type: "setup", manifest: spec.manifest, grant: options.grant.toStrings() },
      "setup",
      Math.max(1, deadline - Date.now()),
    );
    const isOrdered = (n: unknown): n is { name: string; order: "pre" | "post" } =>
      typeof n === "object" && n !== null && typeof (n as { name?: unknown }).name === "string" &&
      ((n as { order?: unknown }).order === "pre" || (n as { order?: unknown }).order === "post");
    if (!Array.isArray(names) || names.some((n) => typeof n !== "string" && !isOrdered(n))) {
      throw new KeelError(
        "E_PLUGIN_PROTOCOL",
        `Plugin "${name}" answered setup without a list of hook names; the plugin or its Keel version is broken`,
        {
          details: { plugin: name },
        },
      );
    }
    const list = (names as unknown[]).map((n) => {
      if (typeof n === "string") return n;
      const { name: hook, order } = n as { name: HookName; order: "pre" | "post" };
      orders[hook] = order;
      return hook;
    });
    const noop = (): void => {};
    validateHooks(name, Object.fromEntries(list.map((n) => [n, noop])));
    hooks = [...new Set(list as HookName[])];
  } catch (e) {
    await connection.stop(false);
    await fs.remove(tempDir).catch(() => {});
    throw e;
  }

  let disposeCalled = false;
  let closing: Promise<void> | undefined;
  const disposed = (): KeelError =>
    new KeelError(
      "E_PLUGIN_DISPOSED",
      `Plugin "${name}" was closed; create the kernel again to use it`,
      { details: { plugin: name } },
    );

  async function close(): Promise<void> {
    if (connection.alive) {
      try {
        // The child runs the dispose hook unless it already ran, answers, and exits.
        await connection.request({ type: "dispose" }, "dispose", timeoutMs);
      } catch (e) {
        logger.warn(`Plugin "${name}" failed to dispose: ${errorMessage(e)}`, { plugin: name });
      }
    }
    await connection.stop(true);
    try {
      await fs.remove(tempDir);
    } catch (e) {
      logger.warn(
        `Could not remove the temp dir "${tempDir}" of plugin "${name}": ${errorMessage(e)}`,
      );
    }
  }

  return Object.freeze({
    pid: connection.pid,
    hooks: Object.freeze(hooks),
    orders: Object.freeze(orders),
    call(hook: HookName, args: readonly unknown[]): Promise<unknown> {
      if (closing) return Promise.reject(disposed());
      if (!hooks.includes(hook)) {
        return Promise.reject(
          new KeelError(
            "E_HOOK_UNKNOWN",
            `Plugin "${name}" has no hook "${hook}"; it handles ${
              hooks.map((h) => `"${h}"`).join(", ") || "none"
            }`,
            {
              details: { plugin: name, hook },
            },
          ),
        );
      }
      if (hook === "dispose") {
        // A process that is gone has nothing left to dispose.
        if (!connection.alive || disposeCalled) return Promise.resolve(undefined);
        disposeCalled = true;
      }
      return connection.request({ type: "call", hook, args: [...args] }, hook, timeoutMs);
    },
    close(): Promise<void> {
      closing ??= close();
      return closing;
    },
  });
}

/**
 * Reads the manifest a plugin module default-exports without running it in the host: the
 * module is imported in a `deno run` subprocess with no permissions at all, so its top-level
 * code can do nothing outside. For loading `--plugin ./file.ts` isolated.
 *
 * @throws {KeelError} `E_PLUGIN_LOAD_FAILED`, `E_PLUGIN_TIMEOUT`, `E_PLUGIN_CRASHED`,
 *   `E_MANIFEST_*` for an invalid manifest, `E_RUNTIME_UNSUPPORTED`
 */
export async function readIsolatedManifest(
  module: string,
  options: ReadManifestOptions,
): Promise<PluginManifest> {
  const { runtime } = options;
  const timeoutMs = positiveInteger(options.timeoutMs, DEFAULT_SETUP_TIMEOUT_MS, "timeoutMs");
  const memoryMb = positiveInteger(options.memoryMb, DEFAULT_MEMORY_MB, "memoryMb");
  const label = module.split("/").pop() || module;
  const { connection, tempDir, moduleManifest } = await launch(label, module, "describe", {
    runtime,
    grant: createGrant([]),
    logger: options.logger ?? createSilentLogger(),
    memoryMb,
    deadline: Date.now() + timeoutMs,
  });
  await connection.stop(true);
  await runtime.fs!.remove(tempDir).catch(() => {});
  return validateManifest(moduleManifest, { base: runtime.cwd() });
}
