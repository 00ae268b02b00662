/**
 * The child side of an isolated plugin (see `core/isolation.ts`): runs inside a `deno run`
 * subprocess whose permission flags come from the plugin's grant. The host writes a bootstrap
 * that imports a prelude (which calls {@link prepareIsolatedChild}), then the plugin module,
 * then calls {@link serveIsolatedPlugin}; nothing here runs on import.
 *
 * Stdout carries the protocol, so console output is turned into log messages before the plugin's
 * code runs, and every protocol line is written synchronously and starts on a fresh line.
 * @module
 */

import Module from "node:module";
import { createGrant } from "../../core/capabilities.ts";
import { createPluginContext } from "../../core/context.ts";
import { errorMessage, KeelError, type KeelErrorJson } from "../../core/errors.ts";
import { validateHooks } from "../../core/hooks.ts";
import type { IsolateChildMessage, IsolateHostMessage } from "../../core/isolation.ts";
import { LOG_LEVELS, type LogFields, type Logger, type LogLevel } from "../../core/logger.ts";
import { manifestOf } from "../../core/manifest.ts";
import type { HookName, Hooks, Plugin } from "../../core/plugin.ts";
import type { Runtime } from "../../core/runtime.ts";
import { createDenoRuntime } from "./mod.ts";

const encoder = new TextEncoder();
// Taken before any plugin code runs, so a plugin that replaces them cannot cut the channel.
const stdout = Deno.stdout;
const writeSync = Deno.stdout.writeSync.bind(Deno.stdout);
const exit: (code?: number) => never = Deno.exit;

function send(message: IsolateChildMessage): void {
  let text: string;
  try {
    text = JSON.stringify(message, rejectUnserializable);
  } catch (e) {
    if (message.type === "log" && message.fields !== undefined) {
      return send({ type: "log", level: message.level, message: message.message });
    }
    if (message.type === "loaded") {
      return send({
        type: "loaded",
        error: new KeelError(
          "E_PLUGIN_LOAD_FAILED",
          `The plugin's manifest cannot be sent as JSON (${
            errorMessage(e)
          }); use plain strings and lists`,
        ).toJSON(),
      });
    }
    if (!("id" in message)) return;
    text = JSON.stringify({
      id: message.id,
      type: "error",
      error: new KeelError(
        "E_PLUGIN_PROTOCOL",
        `An isolated plugin returned a value that cannot cross the process boundary as JSON (${
          errorMessage(e)
        }); return plain data`,
      ).toJSON(),
    });
  }
  // A leading newline ends any partial line the plugin wrote itself, so ours parses.
  const bytes = encoder.encode(`\n${text}\n`);
  let written = 0;
  while (written < bytes.length) written += writeSync.call(stdout, bytes.subarray(written));
}

function rejectUnserializable(this: unknown, key: string, value: unknown): unknown {
  const type = typeof value;
  if (type === "function" || type === "symbol" || type === "bigint") {
    throw new TypeError(`${key === "" ? "the value" : `"${key}"`} is a ${type}`);
  }
  return value;
}

function format(args: readonly unknown[]): string {
  return args.map((a) => (typeof a === "string" ? a : Deno.inspect(a, { depth: 4, colors: false })))
    .join(" ");
}

function log(level: LogLevel, message: string, fields?: LogFields): void {
  send(
    fields === undefined
      ? { type: "log", level, message }
      : { type: "log", level, message, fields: { ...fields } },
  );
}

/**
 * Routes console output to log messages and keeps stray errors in plugin code from ending the
 * process. The bootstrap's prelude calls it before the plugin module is evaluated.
 */
export function prepareIsolatedChild(): void {
  const levels: Record<string, LogLevel> = {
    log: "info",
    info: "info",
    debug: "debug",
    trace: "debug",
    dir: "info",
    dirxml: "info",
    table: "info",
    warn: "warn",
    error: "error",
  };
  const target = console as unknown as Record<string, unknown>;
  for (const [method, level] of Object.entries(levels)) {
    target[method] = (...args: unknown[]) => log(level, format(args));
  }
  target.assert = (condition: unknown, ...args: unknown[]) => {
    if (!condition) log("error", `Assertion failed${args.length ? `: ${format(args)}` : ""}`);
  };
  guardRequire();
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    log("error", `Unhandled rejection in plugin code: ${describe(event.reason)}`);
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    log("error", `Uncaught error in plugin code: ${describe(event.error ?? event.message)}`);
  });
}

/**
 * Deno's `require()` (node:module) reads any file that is part of the module graph loaded at
 * start without checking read permission, and a literal `require("/any/path")` or
 * `import("/any/path")` in plugin code puts that file in the graph (measured on 2.9.6). The host
 * refuses such graphs before launch; this is the second line: every file `require` loads goes
 * through `Module._extensions`, so each loader is wrapped to demand read permission outside
 * `node_modules` (where npm packages live, which Deno's own loader reads freely), and the table
 * is frozen so plugin code cannot put the originals back.
 */
function guardRequire(): void {
  const loaders = (Module as unknown as {
    _extensions: Record<string, (module: unknown, filename: string) => unknown>;
  })._extensions;
  for (const [extension, original] of Object.entries(loaders)) {
    loaders[extension] = function (this: unknown, module: unknown, filename: string): unknown {
      const inNodeModules = /(^|[\\/])node_modules[\\/]/.test(filename);
      if (
        !inNodeModules &&
        Deno.permissions.querySync({ name: "read", path: filename }).state !== "granted"
      ) {
        throw new Deno.errors.NotCapable(`Requires read access to "${filename}" (through require)`);
      }
      return original.call(this, module, filename);
    };
  }
  Object.freeze(loaders);
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** The Deno error classes that mean "the permission flags said no". */
function deniedBy(e: unknown): Error | undefined {
  for (
    let cause = e, depth = 0;
    cause instanceof Error && depth < 4;
    cause = cause.cause, depth++
  ) {
    // A denied dynamic import surfaces as a TypeError carrying Deno's permission message.
    if (
      cause instanceof Deno.errors.NotCapable || cause instanceof Deno.errors.PermissionDenied ||
      cause.name === "NotCapable" ||
      /\bRequires (read|write|net|env|sys|run|ffi|import) access\b/.test(cause.message)
    ) {
      return cause;
    }
  }
  return undefined;
}

function toErrorJson(e: unknown, plugin: string, hook: string): KeelErrorJson {
  if (KeelError.is(e)) return e.toJSON();
  const denied = deniedBy(e);
  if (denied) {
    const message = denied.message.replace(/,? run again with the --allow-\S+ flag\.?$/, "");
    return new KeelError(
      "E_CAPABILITY_DENIED",
      `Plugin "${plugin}" was denied in ${
        hook === "setup" ? "setup" : `hook "${hook}"`
      }: ${message}; it may only use what it was granted, so declare the capability in its manifest and grant it`,
      { details: { plugin, hook, denied: denied.name } },
    ).toJSON();
  }
  // The kernel words a failed setup itself ("Plugin "x" failed in setup: ..."), as it does for
  // plugins in-process, so setup errors carry the plugin's own message.
  const message = hook === "setup"
    ? errorMessage(e)
    : `Plugin "${plugin}" failed in hook "${hook}": ${errorMessage(e)}`;
  return new KeelError("E_HOOK_FAILED", message, { cause: e, details: { plugin, hook } }).toJSON();
}

/**
 * The Deno runtime as the plugin's context sees it. `realPath` needs read permission, which a
 * plugin holding only `write:<dir>` lacks; then the path is checked as written, which is what
 * Deno's own write check does too.
 */
function isolatedRuntime(): Runtime {
  const base = createDenoRuntime();
  const fs = base.fs!;
  return {
    ...base,
    fs: {
      ...fs,
      async realPath(path) {
        try {
          return await fs.realPath(path);
        } catch (e) {
          if (e instanceof Deno.errors.NotCapable) return path;
          throw e;
        }
      },
    },
  };
}

function childLogger(): Logger {
  const at = (level: LogLevel) => (message: string, fields?: LogFields): void =>
    log(level, String(message), fields);
  return Object.fromEntries(LOG_LEVELS.map((level) => [level, at(level)])) as unknown as Logger;
}

function handlerOf(hooks: Hooks, hook: HookName): ((...args: unknown[]) => unknown) | undefined {
  const value = hooks[hook] as unknown;
  if (typeof value === "function") return value as (...args: unknown[]) => unknown;
  if (typeof value === "object" && value !== null) {
    return (value as { handler: (...args: unknown[]) => unknown }).handler;
  }
  return undefined;
}

/**
 * Serves one plugin module over stdin/stdout until the host sends `dispose` or closes stdin.
 * In "describe" mode it only reports the module's manifest and exits.
 */
export async function serveIsolatedPlugin(
  module: Record<string, unknown>,
  mode: "serve" | "describe",
): Promise<void> {
  const plugin = module.default as Plugin | undefined;
  if (
    typeof plugin !== "object" || plugin === null ||
    (mode === "serve" && typeof plugin.setup !== "function")
  ) {
    send({
      type: "loaded",
      error: new KeelError(
        "E_PLUGIN_LOAD_FAILED",
        "The plugin module has no default export with a setup() function; end it with export default definePlugin({ ... })",
      ).toJSON(),
    });
    exit(1);
  }
  send({ type: "loaded", manifest: manifestOf(plugin) });
  if (mode === "describe") exit(0);

  let name = plugin.name;
  let hooks: Hooks | undefined;
  let disposed = false;

  async function handle(message: IsolateHostMessage): Promise<void> {
    const { id } = message;
    let hook = "setup";
    try {
      if (message.type === "setup") {
        if (hooks) throw new KeelError("E_PLUGIN_PROTOCOL", `Plugin "${name}" was set up twice`);
        name = message.manifest.name;
        const ctx = await createPluginContext({
          name,
          grant: createGrant(message.grant),
          logger: childLogger(),
          runtime: isolatedRuntime(),
        });
        const set = validateHooks(name, await plugin!.setup(ctx));
        hooks = set;
        // Each hook with its order, so the host dispatches it where it would run in-process.
        send({
          id,
          type: "ok",
          value: Object.entries(set).filter(([, v]) => v !== undefined).map(([k, v]) =>
            typeof v === "function" || !v?.order ? k : { name: k, order: v.order }
          ),
        });
        return;
      }
      if (!hooks) {
        throw new KeelError("E_PLUGIN_PROTOCOL", `Plugin "${name}" was called before setup`);
      }
      if (message.type === "dispose") {
        hook = "dispose";
        const fn = disposed ? undefined : handlerOf(hooks, "dispose");
        disposed = true;
        try {
          if (fn) await fn();
          send({ id, type: "ok" });
        } catch (e) {
          send({ id, type: "error", error: toErrorJson(e, name, hook) });
        }
        exit(0);
      }
      hook = message.hook;
      const fn = handlerOf(hooks, message.hook);
      if (!fn) {
        throw new KeelError("E_HOOK_UNKNOWN", `Plugin "${name}" has no hook "${message.hook}"`, {
          details: { plugin: name, hook },
        });
      }
      if (message.hook === "dispose") {
        if (disposed) return send({ id, type: "ok" });
        disposed = true;
      }
      const value = await fn(...(Array.isArray(message.args) ? message.args : []));
      send(value === undefined ? { id, type: "ok" } : { id, type: "ok", value });
    } catch (e) {
      send({ id, type: "error", error: toErrorJson(e, name, hook) });
    }
  }

  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buffered = "";
  for await (const chunk of lines) {
    buffered += chunk;
    let at: number;
    while ((at = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      if (line.trim() === "") continue;
      let message: IsolateHostMessage;
      try {
        message = JSON.parse(line) as IsolateHostMessage;
      } catch {
        log("error", "The host sent a line that is not JSON; ignored");
        continue;
      }
      // Calls run concurrently, as hooks do in-process; each answers under its own id.
      void handle(message);
    }
  }
  // The host closed stdin: it is going away, and so do we.
  exit(0);
}
