/**
 * Boots the kernel for a command: the first-party plugins in-process, then each `--plugin`
 * isolated in its own Deno subprocess (or in-process when `--trust`ed), with the capabilities
 * `--allow` grants, then each plugin `keel add` installed (the working directory's `keel.lock`),
 * isolated, with exactly the capabilities the lockfile records as granted (`--allow` adds none).
 * @module
 */

import {
  createKernel,
  isAbsolutePath,
  joinPath,
  KeelError,
  type Kernel,
  type Logger,
  normalizePath,
  parseCapability,
  type PluginEntry,
  type PluginManifest,
  readIsolatedManifest,
  type Runtime,
  toFileUrl,
} from "../core/mod.ts";
import executorScript from "../plugins/executor-script/mod.ts";
import { lockedPluginEntries } from "../registry/install.ts";

/** Plugins that ship with Keel: always loaded, in-process, granted what they ask for. */
export const FIRST_PARTY: readonly PluginEntry[] = [executorScript];

/** What the command line asked for. */
export interface BootRequest {
  readonly runtime: Runtime;
  readonly logger: Logger;
  /** `--plugin` paths, as typed (relative to the working directory). */
  readonly plugins?: readonly string[];
  /** `--allow` values: `CAP` for every `--plugin` plugin, `NAME=CAP` for one. */
  readonly allow?: readonly string[];
  /** `--trust` names: these `--plugin` plugins run in-process. */
  readonly trust?: readonly string[];
  /** "skip" boots without denied plugins and lists them (for `keel plugins`). */
  readonly onDenied?: "fail" | "skip";
  /** The folder whose `keel.lock` plugins are loaded; default the working directory; false: none. */
  readonly lockDir?: string | false;
}

/** Where a loaded plugin came from. */
export interface PluginOrigin {
  /** "registry": installed with `keel add`, loaded from `keel.lock`. */
  readonly source: "first-party" | "local" | "registry";
  /** The module that was loaded (local and registry plugins). */
  readonly module?: string;
  readonly trusted: boolean;
}

/** A booted kernel plus where each plugin came from. */
export interface Booted {
  readonly kernel: Kernel;
  readonly origins: ReadonlyMap<string, PluginOrigin>;
}

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

function loadFailed(path: string, why: string, cause?: unknown): KeelError {
  return new KeelError("E_PLUGIN_LOAD_FAILED", `Plugin "${path}" could not be loaded: ${why}`, {
    ...(cause === undefined ? {} : { cause }),
    details: { path },
  });
}

/** A local plugin, before the kernel sees it. */
export interface LocalPlugin {
  readonly path: string;
  readonly module: string;
  readonly manifest: PluginManifest;
}

/**
 * Reads a `--plugin` path: a package directory whose `package.json` has a `keel` field
 * (`{ entry, capabilities, kernel }`), or a module file whose default export is a plugin (its
 * manifest is read in a Deno subprocess without permissions, so nothing runs with the host's).
 *
 * @throws {KeelError} `E_PLUGIN_LOAD_FAILED`, `E_MANIFEST_*`
 */
export async function readLocalPlugin(runtime: Runtime, path: string): Promise<LocalPlugin> {
  const fs = runtime.fs;
  if (!fs) {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      "Loading plugins from files needs a runtime with a file system",
    );
  }
  const absolute = runtime.resolvePath(path);
  if (!(await fs.exists(absolute))) {
    throw loadFailed(path, `"${absolute}" does not exist; check the path`);
  }
  const info = await fs.stat(absolute);
  if (!info.isDirectory) {
    return { path, module: absolute, manifest: await readIsolatedManifest(absolute, { runtime }) };
  }
  const pkgPath = joinPath(absolute, "package.json");
  if (!(await fs.exists(pkgPath))) {
    throw loadFailed(
      path,
      `the directory has no package.json; point --plugin at the plugin's module or package`,
    );
  }
  let pkg: Record<string, unknown>;
  try {
    pkg = JSON.parse(await fs.readTextFile(pkgPath)) as Record<string, unknown>;
  } catch (e) {
    throw loadFailed(
      path,
      `its package.json is not valid JSON (${e instanceof Error ? e.message : String(e)})`,
      e,
    );
  }
  const keel = pkg.keel as Record<string, unknown> | undefined;
  if (typeof keel !== "object" || keel === null || Array.isArray(keel)) {
    throw loadFailed(
      path,
      'its package.json has no "keel" field; add "keel": { "entry": "./mod.ts", "capabilities": [], "kernel": "^1" }',
    );
  }
  if (
    typeof keel.entry !== "string" || keel.entry === "" || isAbsolutePath(keel.entry) ||
    keel.entry.split("/").includes("..")
  ) {
    throw loadFailed(path, 'its "keel.entry" must be a path inside the package, like "./mod.ts"');
  }
  const manifest: Record<string, unknown> = {
    name: pkg.name,
    version: pkg.version,
    kernel: keel.kernel,
    capabilities: keel.capabilities ?? [],
  };
  if (typeof pkg.description === "string") manifest.description = pkg.description;
  if (keel.requires !== undefined) manifest.requires = keel.requires;
  return {
    path,
    module: normalizePath(joinPath(absolute, keel.entry)),
    manifest: manifest as unknown as PluginManifest,
  };
}

/** Splits `--allow` values into grants for every local plugin and grants for one. */
export function parseAllow(
  values: readonly string[],
  options: { pluginNames: ReadonlySet<string>; base: string },
): { all: string[]; byName: Map<string, string[]> } {
  const { pluginNames, base } = options;
  const all: string[] = [];
  const byName = new Map<string, string[]>();
  for (const value of values) {
    const eq = value.indexOf("=");
    const head = eq < 0 ? "" : value.slice(0, eq);
    if (eq > 0 && !head.includes(":")) {
      if (!pluginNames.has(head)) {
        const loaded = [...pluginNames];
        throw usage(
          `--allow "${value}" names plugin "${head}", which is not loaded with --plugin` +
            (loaded.length ? `; loaded: ${loaded.map((n) => `"${n}"`).join(", ")}` : ""),
        );
      }
      const cap = value.slice(eq + 1);
      parseCapability(cap, { base });
      byName.set(head, [...(byName.get(head) ?? []), cap]);
    } else {
      parseCapability(value, { base });
      all.push(value);
    }
  }
  return { all, byName };
}

async function importTrusted(local: LocalPlugin): Promise<PluginEntry> {
  let mod: { default?: unknown };
  try {
    mod = await import(toFileUrl(local.module));
  } catch (e) {
    throw loadFailed(local.path, e instanceof Error ? e.message : String(e), e);
  }
  const plugin = mod.default as PluginEntry | undefined;
  if (
    typeof plugin !== "object" || plugin === null ||
    typeof (plugin as { setup?: unknown }).setup !== "function"
  ) {
    throw loadFailed(
      local.path,
      "its default export is not a plugin; export default definePlugin({ ... })",
    );
  }
  if ((plugin as PluginManifest).name !== local.manifest.name) {
    throw loadFailed(
      local.path,
      `its module is named "${
        (plugin as PluginManifest).name
      }" but its package says "${local.manifest.name}"`,
    );
  }
  return plugin;
}

/**
 * Boots a kernel as the command line asked.
 *
 * @throws {KeelError} `E_CLI_USAGE` for `--trust`/`--allow` naming no loaded plugin; anything
 *   `createKernel` throws (`E_CAPABILITY_DENIED`, ...).
 */
export async function bootKernel(request: BootRequest): Promise<Booted> {
  const { runtime, logger } = request;
  const locals: LocalPlugin[] = [];
  for (const path of request.plugins ?? []) locals.push(await readLocalPlugin(runtime, path));
  const names = new Set(locals.map((l) => String(l.manifest.name)));
  for (const name of request.trust ?? []) {
    if (!names.has(name)) {
      throw usage(
        `--trust "${name}" names no plugin loaded with --plugin` +
          (names.size ? `; loaded: ${[...names].map((n) => `"${n}"`).join(", ")}` : ""),
      );
    }
  }
  const trusted = new Set(request.trust ?? []);
  const { all, byName } = parseAllow(request.allow ?? [], {
    pluginNames: names,
    base: runtime.cwd(),
  });

  const origins = new Map<string, PluginOrigin>();
  const entries: PluginEntry[] = [...FIRST_PARTY];
  for (const p of FIRST_PARTY) {
    origins.set((p as PluginManifest).name, { source: "first-party", trusted: true });
  }
  for (const local of locals) {
    const isTrusted = trusted.has(local.manifest.name);
    entries.push(
      isTrusted
        ? await importTrusted(local)
        : { isolate: true, module: local.module, manifest: local.manifest },
    );
    origins.set(local.manifest.name, { source: "local", module: local.module, trusted: isTrusted });
  }

  const locked = request.lockDir === false
    ? { entries: [], grants: {} }
    : await lockedPluginEntries(runtime, request.lockDir ?? runtime.cwd());
  for (const spec of locked.entries) {
    entries.push(spec);
    origins.set(spec.manifest.name, { source: "registry", module: spec.module, trusted: false });
  }

  const grants = (manifest: PluginManifest): readonly string[] => {
    const source = origins.get(manifest.name)?.source;
    if (source === "first-party") return [...(manifest.capabilities ?? [])];
    if (source === "registry") return [...(locked.grants[manifest.name] ?? [])];
    return [...all, ...(byName.get(manifest.name) ?? [])];
  };
  const kernel = await createKernel({
    runtime,
    logger,
    plugins: entries,
    grants,
    onDenied: request.onDenied ?? "fail",
  });
  for (const p of kernel.plugins) {
    if (p.status === "loaded" && p.fullTrust.length && origins.get(p.name)?.source !== "first-party") {
      logger.warn(
        `Plugin "${p.name}" holds ${
          p.fullTrust.map((c) => `"${c}"`).join(", ")
        }: full trust, it can do anything you can`,
      );
    }
  }
  return { kernel, origins };
}
