/**
 * `createKernel`: validates manifests, orders plugins by `requires`, checks capabilities, runs
 * each plugin's `setup(ctx)` (in-process, or isolated in a subprocess) and dispatches hooks.
 * @module
 */

import {
  type Capability,
  createGrant,
  formatCapability,
  type Grant,
  isFullTrust,
  missingCapabilities,
  parseCapability,
} from "./capabilities.ts";
import { createPluginContext } from "./context.ts";
import { errorMessage, KeelError } from "./errors.ts";
import type { Executor } from "./executor.ts";
import { HookTable, type HookArgs, type HookResult, validateHooks } from "./hooks.ts";
import { startIsolatedPlugin } from "./isolation.ts";
import { childLogger, createSilentLogger, type Logger } from "./logger.ts";
import { KERNEL_VERSION, manifestOf, validateManifest } from "./manifest.ts";
import {
  HOOK_KINDS,
  type HookName,
  type Hooks,
  isIsolatedSpec,
  type KernelEvent,
  type PluginEntry,
  type PluginManifest,
} from "./plugin.ts";
import type { Runtime } from "./runtime.ts";
import { type Services, ServiceTable } from "./services.ts";
import { type CodeExecutor, createCodeExecutor, type ExecuteOptions, type ExecuteResult, sandboxService } from "./sandbox/sandbox.ts";
import { createToolRegistry, type ToolRegistry } from "./tools/registry.ts";
import { createWorkflowEngine, type WorkflowEngine } from "./workflow/engine.ts";
import { createMemoryStore } from "./workflow/memory-store.ts";
import type { Store } from "./workflow/store.ts";

/** What the host grants each plugin: a table by plugin name, or a function of the manifest. */
export type GrantPolicy =
  | Readonly<Record<string, readonly string[]>>
  | ((manifest: PluginManifest) => readonly string[]);

/** Options for {@link createKernel}. */
export interface KernelOptions {
  /** The host runtime; leave out on an edge host (no files, processes or isolation). */
  readonly runtime?: Runtime;
  readonly plugins?: readonly PluginEntry[];
  /** Capabilities granted per plugin. Deny by default: a plugin not listed gets nothing. */
  readonly grants?: GrantPolicy;
  /**
   * What to do with a plugin that asks for more than it was granted: "fail" (default) throws
   * `E_CAPABILITY_DENIED`; "skip" boots without it and reports it in `kernel.plugins`.
   */
  readonly onDenied?: "fail" | "skip";
  readonly logger?: Logger;
  /** Directory that relative capability paths resolve against; default `runtime.cwd()`. */
  readonly baseDir?: string;
  /**
   * Where `kernel.workflows` keeps runs: default an in-memory store (lost with the process); pass
   * a SQLite or Postgres store for durable runs that `resume` can continue after a crash.
   */
  readonly store?: Store;
}

/** What the kernel knows about one plugin. */
export interface PluginInfo {
  readonly name: string;
  readonly version: string;
  readonly isolated: boolean;
  /** "loaded", or "denied" (only with `onDenied: "skip"`). */
  readonly status: "loaded" | "denied";
  /** Capabilities the manifest asks for. */
  readonly requested: readonly string[];
  /** Requested capabilities the host did not grant. */
  readonly missing: readonly string[];
  /** Requested capabilities that amount to full trust (run, ffi, gpu). */
  readonly fullTrust: readonly string[];
  /** Hooks it handles. */
  readonly hooks: readonly HookName[];
  /** Why it was denied. */
  readonly error?: KeelError;
}

/** A booted kernel. */
export interface Kernel extends AsyncDisposable {
  readonly version: string;
  readonly runtime: Runtime | undefined;
  readonly logger: Logger;
  /** Every plugin, in setup order (denied ones last). */
  readonly plugins: readonly PluginInfo[];
  readonly services: Services;
  /**
   * Workflow runs over the kernel's executors (`resolveExecutor`) and its store:
   * `kernel.workflows.run(definition)`, `.status(id)`, `.resume(id)`, `.list()`.
   */
  readonly workflows: WorkflowEngine;
  /**
   * Tools for code mode: `kernel.tools.register({ name, description, inputSchema, outputSchema, run })`.
   * Plugins register theirs through `ctx.tools`.
   */
  readonly tools: ToolRegistry;
  /**
   * Runs untrusted code in the sandbox a plugin provides (the `sandbox` plugin), with the kernel's
   * tools as its only way out: `await kernel.execute("await tools.add({ a: 1, b: 2 })", { tools: ["add"] })`.
   * What the code does (throws, times out, runs out of memory) comes back in the result's `error`.
   * @throws {KeelError} `E_SANDBOX_UNAVAILABLE` when no plugin provides a sandbox,
   * `E_TOOL_UNKNOWN` for an allow-list naming an unknown tool.
   */
  execute(code: string, options?: ExecuteOptions): Promise<ExecuteResult>;
  /** Calls a hook the way its kind says (first / sequential / parallel). */
  callHook<K extends HookName>(name: K, ...args: HookArgs<K>): Promise<HookResult<K>>;
  /**
   * The executor for `protocol`.
   * @throws {KeelError} `E_EXECUTOR_MISSING`
   */
  resolveExecutor(protocol: string): Promise<Executor>;
  /** Reports an event to `onEvent` observers; their failures are logged, never thrown. */
  emit(type: string, data?: Readonly<Record<string, unknown>>): Promise<void>;
  /** Disposes plugins in reverse order and stops isolated processes. Idempotent. */
  dispose(): Promise<void>;
}

interface Loaded {
  readonly entry: PluginEntry;
  readonly manifest: PluginManifest;
  readonly requested: Capability[];
  readonly index: number;
}

function grantFor(policy: GrantPolicy | undefined, manifest: PluginManifest, base: string | undefined): Grant {
  const list = policy === undefined
    ? []
    : typeof policy === "function"
    ? policy(manifest)
    : Object.hasOwn(policy, manifest.name)
    ? policy[manifest.name] ?? []
    : [];
  return createGrant(list, base === undefined ? {} : { base });
}

/** Orders plugins: `enforce` pre, normal, post; then each after everything it `requires`. */
export function orderPlugins<T extends { manifest: PluginManifest; index: number }>(items: readonly T[]): T[] {
  const byName = new Map(items.map((it) => [it.manifest.name, it]));
  for (const it of items) {
    for (const dep of it.manifest.requires ?? []) {
      if (!byName.has(dep)) {
        throw new KeelError(
          "E_PLUGIN_REQUIRES_MISSING",
          `Plugin "${it.manifest.name}" requires plugin "${dep}", which is not loaded; add "${dep}" to the plugins`,
          { details: { plugin: it.manifest.name, missing: dep } },
        );
      }
    }
  }
  const rank = (it: T) => (it.manifest.enforce === "pre" ? 0 : it.manifest.enforce === "post" ? 2 : 1);
  const queue = [...items].sort((a, b) => rank(a) - rank(b) || a.index - b.index);
  const done = new Set<string>();
  const out: T[] = [];
  while (queue.length) {
    const at = queue.findIndex((it) => (it.manifest.requires ?? []).every((d) => done.has(d)));
    if (at < 0) throw new KeelError("E_PLUGIN_REQUIRES_CYCLE", `Plugins require each other in a cycle: ${findCycle(queue.map((q) => q.manifest)).join(" -> ")}; remove one of those requires`, {
      details: { cycle: findCycle(queue.map((q) => q.manifest)) },
    });
    const [next] = queue.splice(at, 1);
    done.add(next!.manifest.name);
    out.push(next!);
  }
  return out;
}

function findCycle(manifests: readonly PluginManifest[]): string[] {
  const requires = new Map(manifests.map((m) => [m.name, m.requires ?? []]));
  for (const start of requires.keys()) {
    const path: string[] = [];
    const onPath = new Set<string>();
    const walk = (name: string): string[] | undefined => {
      if (onPath.has(name)) return [...path.slice(path.indexOf(name)), name];
      if (!requires.has(name)) return undefined;
      path.push(name);
      onPath.add(name);
      for (const dep of requires.get(name)!) {
        const found = walk(dep);
        if (found) return found;
      }
      path.pop();
      onPath.delete(name);
      return undefined;
    };
    const cycle = walk(start);
    if (cycle) return cycle;
  }
  return manifests.map((m) => m.name);
}

function deniedError(manifest: PluginManifest, missing: readonly Capability[]): KeelError {
  const caps = missing.map(formatCapability);
  const trust = missing.filter(isFullTrust).map(formatCapability);
  return new KeelError(
    "E_CAPABILITY_DENIED",
    `Plugin "${manifest.name}" asks for ${caps.map((c) => `"${c}"`).join(", ")}, which ${caps.length === 1 ? "was" : "were"} not granted; ` +
      `grant ${caps.length === 1 ? "it" : "them"} with ${caps.map((c) => `--allow ${c}`).join(" ")} (CLI) or ` +
      `grants: { "${manifest.name}": ${JSON.stringify(caps)} } (createKernel)` +
      (trust.length ? `. Note: ${trust.join(", ")} ${trust.length === 1 ? "is" : "are"} full trust` : ""),
    { details: { plugin: manifest.name, missing: caps } },
  );
}

/**
 * Boots a kernel: validates every manifest, orders plugins, checks their capabilities against
 * the host's grants, and runs each `setup`. A failing setup disposes the plugins already set up.
 *
 * @throws {KeelError} `E_MANIFEST_*`, `E_CAPABILITY_DENIED`, `E_CAPABILITY_SYMLINK`,
 *   `E_PLUGIN_DUPLICATE`, `E_PLUGIN_REQUIRES_MISSING`, `E_PLUGIN_REQUIRES_CYCLE`,
 *   `E_PLUGIN_SETUP_FAILED`, `E_PLUGIN_HOOK_UNKNOWN`, `E_SERVICE_DUPLICATE`, `E_SERVICE_MISSING`,
 *   and for isolated plugins `E_PLUGIN_TIMEOUT`, `E_PLUGIN_CRASHED`, `E_PLUGIN_LOAD_FAILED`,
 *   `E_PLUGIN_PROTOCOL`
 * @example
 * ```ts
 * import { createKernel, definePlugin } from "../mod.ts";
 * const seen: string[] = [];
 * const kernel = await createKernel({
 *   plugins: [definePlugin({ name: "a", version: "1.0.0", kernel: "^1", setup: () => ({ onEvent: (e) => { seen.push(e.type); } }) })],
 * });
 * await kernel.emit("hello");
 * await kernel.dispose();
 * if (seen[0] !== "hello") throw new Error("unreachable");
 * ```
 */
export async function createKernel(options: KernelOptions = {}): Promise<Kernel> {
  if (typeof options !== "object" || options === null) {
    throw new KeelError("E_KERNEL_OPTIONS", "createKernel() takes an options object");
  }
  const entries = options.plugins ?? [];
  if (!Array.isArray(entries)) throw new KeelError("E_KERNEL_OPTIONS", "createKernel() option \"plugins\" must be a list");
  const runtime = options.runtime;
  const logger = options.logger ?? createSilentLogger();
  const base = options.baseDir ?? runtime?.cwd();
  const capOptions = base === undefined ? {} : { base };

  const candidates: Loaded[] = [];
  const names = new Set<string>();
  entries.forEach((entry, index) => {
    if (typeof entry !== "object" || entry === null) {
      validateManifest(entry); // throws E_MANIFEST_INVALID with the right wording
    }
    const raw = isIsolatedSpec(entry) ? entry.manifest : entry;
    const manifest = validateManifest(raw, capOptions);
    if (!isIsolatedSpec(entry) && typeof entry.setup !== "function") {
      throw new KeelError("E_MANIFEST_INVALID", `Plugin "${manifest.name}" has no setup() function`, { details: { plugin: manifest.name } });
    }
    if (names.has(manifest.name)) {
      throw new KeelError("E_PLUGIN_DUPLICATE", `Two plugins are named "${manifest.name}"; load it once`, { details: { plugin: manifest.name } });
    }
    names.add(manifest.name);
    const requested = (manifest.capabilities ?? []).map((c) => parseCapability(c, capOptions));
    candidates.push({ entry, manifest: isIsolatedSpec(entry) ? manifest : manifestOf(manifest), requested, index });
  });

  const deniedInfos: PluginInfo[] = [];
  const allowed: Loaded[] = [];
  for (const c of candidates) {
    const missing = missingCapabilities(c.requested, grantFor(options.grants, c.manifest, base));
    if (missing.length === 0) {
      allowed.push(c);
      continue;
    }
    const error = deniedError(c.manifest, missing);
    if (options.onDenied !== "skip") throw error;
    logger.warn(error.message, { plugin: c.manifest.name });
    deniedInfos.push(info(c, "denied", missing.map(formatCapability), [], error));
  }
  // A plugin that requires a denied one cannot load either.
  const deniedNames = new Set(deniedInfos.map((d) => d.name));
  for (const c of allowed) {
    const dep = (c.manifest.requires ?? []).find((r) => deniedNames.has(r));
    if (dep !== undefined) {
      throw new KeelError(
        "E_PLUGIN_REQUIRES_MISSING",
        `Plugin "${c.manifest.name}" requires plugin "${dep}", which was denied its capabilities; grant "${dep}" what it asks for`,
        { details: { plugin: c.manifest.name, missing: dep } },
      );
    }
  }
  const ordered = orderPlugins(allowed);

  const services = new ServiceTable();
  const tools = createToolRegistry();
  let codeExecutor: CodeExecutor | undefined;
  const booted: { table?: HookTable } = {};
  const setUp: { plugin: string; hooks: Hooks; close?: () => Promise<void> }[] = [];
  const infos: PluginInfo[] = [];

  async function disposeAll(): Promise<unknown[]> {
    const errors: unknown[] = [];
    for (const s of [...setUp].reverse()) {
      const d = s.hooks.dispose;
      try {
        if (typeof d === "function") await d();
        else if (d) await d.handler();
      } catch (e) {
        errors.push(e);
        logger.error(`Plugin "${s.plugin}" failed to dispose: ${errorMessage(e)}`, { plugin: s.plugin });
      }
      try {
        await s.close?.();
      } catch (e) {
        errors.push(e);
      }
    }
    return errors;
  }

  for (const c of ordered) {
    const name = c.manifest.name;
    const log = childLogger(logger, { plugin: name });
    const grant = createGrant(c.requested);
    try {
      if (isIsolatedSpec(c.entry)) {
        if (!runtime) throw new KeelError("E_RUNTIME_UNSUPPORTED", `Plugin "${name}" must run isolated, which needs a runtime with processes (Deno or Bun)`);
        const handle = await startIsolatedPlugin(c.entry, { runtime, grant, logger: log });
        const hooks: Record<string, unknown> = {};
        for (const hook of handle.hooks) {
          const handler = (...args: unknown[]) => handle.call(hook, args);
          const order = handle.orders[hook];
          hooks[hook] = order ? { order, handler } : handler;
        }
        setUp.push({ plugin: name, hooks: hooks as Hooks, close: () => handle.close() });
        infos.push(info(c, "loaded", [], handle.hooks));
      } else {
        const ctx = await createPluginContext({ name, grant, logger: log, runtime, services, tools, hooks: () => booted.table });
        const hooks = validateHooks(name, await c.entry.setup(ctx));
        setUp.push({ plugin: name, hooks });
        infos.push(info(c, "loaded", [], Object.keys(hooks).filter((k) => hooks[k as HookName] !== undefined) as HookName[]));
      }
    } catch (e) {
      await disposeAll();
      if (KeelError.is(e) && e.code !== "E_HOOK_FAILED" && e.code !== "E_PLUGIN_SETUP_FAILED" && e.details?.plugin === name) throw e;
      if (KeelError.is(e, "E_SERVICE_DUPLICATE") || KeelError.is(e, "E_SERVICE_MISSING")) throw e;
      throw new KeelError("E_PLUGIN_SETUP_FAILED", `Plugin "${name}" failed in setup: ${errorMessage(e)}`, {
        cause: e,
        details: { plugin: name, ...(KeelError.is(e) ? { causeCode: e.code } : {}) },
      });
    }
  }

  const table = new HookTable(setUp);
  booted.table = table;
  let disposed = false;
  let disposing: Promise<void> | undefined;
  const live = (): void => {
    if (disposed) throw new KeelError("E_KERNEL_DISPOSED", "The kernel was disposed; create a new one with createKernel()");
  };

  const workflows = createWorkflowEngine({
    store: options.store ?? createMemoryStore(),
    resolveExecutor: async (protocol) => (await table.call("resolveExecutor", protocol)) ?? undefined,
    logger,
    ...(runtime ? { runtime } : {}),
  });

  const kernel: Kernel = {
    version: KERNEL_VERSION,
    runtime,
    logger,
    plugins: Object.freeze([...infos, ...deniedInfos]),
    services,
    workflows,
    tools,
    execute(code, executeOptions) {
      if (disposed) return Promise.reject(new KeelError("E_KERNEL_DISPOSED", "The kernel was disposed; create a new one with createKernel()"));
      if (!services.has(sandboxService)) {
        return Promise.reject(
          new KeelError(
            "E_SANDBOX_UNAVAILABLE",
            'No plugin provides a sandbox; add the sandbox plugin (plugins/sandbox, granted "run:deno", or createSandboxPlugin({ backend: "quickjs" }) on an edge host)',
          ),
        );
      }
      codeExecutor ??= createCodeExecutor({ tools, backend: services.get(sandboxService) });
      return codeExecutor.execute(code, executeOptions);
    },
    callHook(name, ...args) {
      if (disposed) return Promise.reject(new KeelError("E_KERNEL_DISPOSED", "The kernel was disposed; create a new one with createKernel()"));
      if (name === "dispose") return Promise.reject(new TypeError('Call kernel.dispose() instead of the "dispose" hook'));
      return table.call(name, ...args);
    },
    async resolveExecutor(protocol) {
      live();
      const executor = await table.call("resolveExecutor", protocol);
      if (!executor) {
        throw new KeelError("E_EXECUTOR_MISSING", `No plugin provides an executor for "${protocol}"; load a plugin that handles it`, {
          details: { protocol },
        });
      }
      return executor;
    },
    async emit(type, data) {
      if (disposed) return;
      const event: KernelEvent = data === undefined ? { type, at: Date.now() } : { type, at: Date.now(), data };
      try {
        await table.call("onEvent", event);
      } catch (e) {
        logger.warn(`An event observer failed on "${type}": ${errorMessage(e)}`);
      }
    },
    dispose() {
      disposed = true;
      disposing ??= disposeAll().then((errors) => {
        if (errors.length) {
          throw new KeelError("E_HOOK_FAILED", `${errors.length} plugin(s) failed to dispose: ${errors.map(errorMessage).join("; ")}`, {
            cause: new AggregateError(errors),
          });
        }
      });
      return disposing;
    },
    [Symbol.asyncDispose]() {
      return kernel.dispose();
    },
  };

  try {
    await table.call("ready");
  } catch (e) {
    disposed = true;
    await disposeAll();
    throw e;
  }
  return kernel;
}

function info(c: Loaded, status: "loaded" | "denied", missing: string[], hooks: readonly HookName[], error?: KeelError): PluginInfo {
  const base = {
    name: c.manifest.name,
    version: c.manifest.version,
    isolated: isIsolatedSpec(c.entry),
    status,
    requested: c.requested.map(formatCapability),
    missing,
    fullTrust: c.requested.filter(isFullTrust).map(formatCapability),
    hooks: hooks.filter((h) => h in HOOK_KINDS),
  };
  return Object.freeze(error ? { ...base, error } : base);
}
