/**
 * Builds the {@link PluginContext} a plugin's `setup` receives. Every door to the outside
 * (`fetch`, `fs`, `env`, `spawn`, `gpu`) checks the plugin's grant on every call.
 *
 * In-process this is a contract, not a wall (JS can reach `globalThis.fetch`); untrusted plugins
 * run isolated, where the same checks are backed by the subprocess's runtime permissions.
 * @module
 */

import type { ToolRegistry } from "./tools/registry.ts";
import type { HookTable } from "./hooks.ts";
import {
  type Capability,
  formatCapability,
  type Grant,
  createGrant,
  netCapabilityFor,
} from "./capabilities.ts";
import { KeelError } from "./errors.ts";
import type { Logger } from "./logger.ts";
import { basename, dirname, isWithin, joinPath, resolvePath } from "./path.ts";
import type { PluginContext, PluginFs, PluginHooks } from "./plugin.ts";
import type { Runtime, RuntimeFs } from "./runtime.ts";
import type { ServiceKey, ServiceTable } from "./services.ts";

/** What {@link createPluginContext} needs. */
export interface PluginContextOptions {
  readonly name: string;
  readonly grant: Grant;
  readonly logger: Logger;
  readonly runtime?: Runtime | undefined;
  readonly services?: ServiceTable;
  /** The fetch to guard; default `globalThis.fetch`. */
  readonly fetch?: typeof fetch;
  /** The kernel's tools; absent for isolated plugins. */
  readonly tools?: ToolRegistry;
  /** The kernel's hooks once every plugin is set up (a getter); absent for isolated plugins. */
  readonly hooks?: () => HookTable | undefined;
}

const MAX_REDIRECTS = 20;

function denied(plugin: string, action: string, wanted: Capability): KeelError {
  const cap = formatCapability(wanted);
  return new KeelError(
    "E_CAPABILITY_DENIED",
    `Plugin "${plugin}" may not ${action}: it was not granted "${cap}"; add "${cap}" to its ` +
      `manifest capabilities and grant it (CLI: --allow ${cap})`,
    { details: { plugin, missing: [cap] } },
  );
}

function unsupported(what: string, runtime: Runtime | undefined): KeelError {
  return new KeelError(
    "E_RUNTIME_UNSUPPORTED",
    `This host (${runtime?.name ?? "no runtime"}) has no ${what}; run on Deno or Bun, or pass a runtime to createKernel()`,
  );
}

/**
 * Resolves `path` through symlinks as far as it exists; a missing tail is appended unchanged,
 * so a file about to be written is checked where it will really land.
 *
 * @throws {KeelError} `E_CAPABILITY_SYMLINK` when the path leads through a symlink whose target
 *   does not exist: a write would create that target, wherever it is.
 */
export async function realPathOrParent(fs: RuntimeFs, path: string): Promise<string> {
  let head = path;
  const tail: string[] = [];
  for (;;) {
    try {
      return joinPath(await fs.realPath(head), ...tail);
    } catch (e) {
      if (!KeelError.is(e, "E_RUNTIME_NOT_FOUND") || head === "/") throw e;
      if (await isSymlink(fs, head)) {
        throw new KeelError(
          "E_CAPABILITY_SYMLINK",
          `"${head}" is a symlink to a path that does not exist, so where it leads cannot be checked; remove the link or create its target first`,
          { details: { path: head } },
        );
      }
      tail.unshift(basename(head));
      head = dirname(head);
    }
  }
}

async function isSymlink(fs: RuntimeFs, path: string): Promise<boolean> {
  try {
    return (await fs.lstat(path)).isSymlink;
  } catch {
    return false;
  }
}

/** Resolves each path capability of `grant` through symlinks (a granted /tmp that is a link). */
export async function realizeGrant(grant: Grant, fs: RuntimeFs): Promise<Grant> {
  const caps: Capability[] = [];
  for (const cap of grant.capabilities) {
    if ((cap.kind === "read" || cap.kind === "write" || cap.kind === "ffi") && cap.scope !== undefined) {
      caps.push({ kind: cap.kind, scope: await realPathOrParent(fs, cap.scope) });
    } else {
      caps.push(cap);
    }
  }
  return createGrant(caps);
}

/** Creates the context for one plugin. */
export async function createPluginContext(options: PluginContextOptions): Promise<PluginContext> {
  const { name, grant, logger, runtime, services } = options;
  const baseFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const rfs = runtime?.fs;
  const real = rfs ? await realizeGrant(grant, rfs) : grant;

  function need(action: string, wanted: Capability): void {
    if (!grant.covers(wanted)) throw denied(name, action, wanted);
  }

  async function checkPath(kind: "read" | "write", path: string): Promise<string> {
    if (!runtime || !rfs) throw unsupported("file system", runtime);
    if (typeof path !== "string" || path === "" || path.includes("\0")) {
      throw new TypeError(`A path must be a non-empty string without NUL, got ${JSON.stringify(path)}`);
    }
    const absolute = resolvePath(path, runtime.cwd());
    const verb = kind === "read" ? "read" : "write";
    need(`${verb} "${absolute}"`, { kind, scope: absolute });
    let target: string;
    try {
      target = await realPathOrParent(rfs, absolute);
    } catch (e) {
      if (!KeelError.is(e, "E_CAPABILITY_SYMLINK")) throw e;
      throw new KeelError("E_CAPABILITY_DENIED", `Plugin "${name}" may not ${verb} "${absolute}": ${e.message}`, {
        cause: e,
        details: { plugin: name, path: absolute },
      });
    }
    if (!real.covers({ kind, scope: target })) {
      throw new KeelError(
        "E_CAPABILITY_DENIED",
        `Plugin "${name}" may not ${verb} "${absolute}": it leads through a symlink to "${target}", outside its grant`,
        { details: { plugin: name, path: absolute, target } },
      );
    }
    return absolute;
  }

  // `checkPath` runs before `rfs` is touched: on a host without files it raises
  // E_RUNTIME_UNSUPPORTED rather than a TypeError.
  const fs: PluginFs = {
    readFile: async (p) => { const at = await checkPath("read", p); return rfs!.readFile(at); },
    readTextFile: async (p) => { const at = await checkPath("read", p); return rfs!.readTextFile(at); },
    readDir: async (p) => { const at = await checkPath("read", p); return rfs!.readDir(at); },
    stat: async (p) => { const at = await checkPath("read", p); return rfs!.stat(at); },
    writeFile: async (p, data) => { const at = await checkPath("write", p); return rfs!.writeFile(at, data); },
    writeTextFile: async (p, text) => { const at = await checkPath("write", p); return rfs!.writeTextFile(at, text); },
    mkdir: async (p) => { const at = await checkPath("write", p); return rfs!.mkdir(at); },
    remove: async (p) => { const at = await checkPath("write", p); return rfs!.remove(at); },
  };

  async function guardedFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    let request = new Request(input, init);
    const follow = request.redirect === "follow";
    for (let hop = 0; ; hop++) {
      const url = new URL(request.url);
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        throw new KeelError("E_CAPABILITY_DENIED", `Plugin "${name}" may only fetch http(s) URLs, not "${url.protocol}"`, {
          details: { plugin: name, url: url.href },
        });
      }
      need(`connect to "${url.host}"`, netCapabilityFor(url));
      // Sending consumes the body; keep `request` whole in case a 307/308 must send it again.
      const sent = request.body === null ? request : request.clone();
      const response = await baseFetch(new Request(sent, { redirect: "manual" }));
      const location = response.headers.get("location");
      if (!follow || response.status < 300 || response.status > 399 || location === null) return response;
      if (hop >= MAX_REDIRECTS) throw new TypeError(`Too many redirects fetching "${request.url}"`);
      await response.body?.cancel();
      const next = new URL(location, url);
      const keepBody = response.status === 307 || response.status === 308;
      const headers = new Headers(request.headers);
      // As browsers do: credentials for one origin are not sent to another.
      if (next.origin !== url.origin) headers.delete("authorization");
      request = new Request(next, {
        method: keepBody ? request.method : "GET",
        headers,
        ...(keepBody && request.body ? { body: await request.arrayBuffer() } : {}),
      });
    }
  }

  /** `deno` is Keel's own Deno, wherever it is installed. */
  function program(command: string): string {
    return command === "deno" && runtime?.denoPath ? runtime.denoPath() : command;
  }

  function checkRun(command: string): void {
    if (!runtime?.processes) throw unsupported("processes", runtime);
    need(`run "${command}"`, { kind: "run", scope: command });
  }

  return Object.freeze({
    name,
    logger,
    grant,
    runtime: runtime?.name ?? "edge",
    fetch: guardedFetch,
    fs: Object.freeze(fs),
    env: Object.freeze({
      get(key: string): string | undefined {
        need(`read env "${key}"`, { kind: "env", scope: key });
        if (!runtime) throw unsupported("environment", runtime);
        return runtime.env.get(key);
      },
    }),
    spawn(command: string, opts?: Parameters<PluginContext["spawn"]>[1]) {
      checkRun(command);
      return runtime!.processes!.spawn(program(command), opts);
    },
    run(command: string, opts?: Parameters<PluginContext["run"]>[1]) {
      try {
        checkRun(command);
      } catch (e) {
        return Promise.reject(e);
      }
      return runtime!.processes!.run(program(command), opts);
    },
    get hooks(): PluginHooks {
      const table = () => {
        if (!options.hooks) throw new KeelError("E_RUNTIME_UNSUPPORTED", `Plugin "${name}" runs isolated and cannot call other plugins' hooks`);
        const t = options.hooks();
        if (!t) throw new KeelError("E_HOOK_NOT_READY", `Plugin "${name}" called hooks during setup; call them from "ready" or later, when every plugin is set up`);
        return t;
      };
      return {
        call: (hook, ...args) => table().call(hook, ...args),
        callSettled: (hook, ...args) => table().callSettled(hook, ...args),
        has: (hook) => table().has(hook),
      };
    },
    get tools(): ToolRegistry {
      if (!options.tools) throw new KeelError("E_RUNTIME_UNSUPPORTED", `Plugin "${name}" runs isolated and cannot register tools with the kernel`);
      return options.tools;
    },
    gpu(): GPU {
      need("use the GPU", { kind: "gpu" });
      const gpu = runtime?.gpu?.() ?? (globalThis.navigator as Navigator | undefined)?.gpu;
      if (!gpu) throw unsupported("WebGPU", runtime);
      return gpu;
    },
    provide<T>(key: ServiceKey<T>, value: T): void {
      if (!services) throw new KeelError("E_RUNTIME_UNSUPPORTED", `Plugin "${name}" runs isolated and cannot provide services`);
      services.provide(key, value, name);
    },
    require<T>(key: ServiceKey<T>): T {
      if (!services) throw new KeelError("E_RUNTIME_UNSUPPORTED", `Plugin "${name}" runs isolated and cannot use services`);
      return services.get(key, name);
    },
  });
}

/** True when `path` lies within some path capability of `kind` in `grant` (lexically). */
export function grantCoversPath(grant: Grant, kind: "read" | "write", path: string): boolean {
  return grant.capabilities.some((c) => c.kind === kind && (c.scope === undefined || isWithin(path, c.scope)));
}
