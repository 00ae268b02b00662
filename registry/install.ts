/**
 * Installing plugins from a registry into a project (`keel add`, `keel remove`), and loading
 * what is installed (`lockedPluginEntries`, which the CLI's kernel boot uses).
 *
 * `addPlugin` resolves a spec, downloads the tarball, checks its integrity and registry
 * signature (before anything is unpacked), reads it with the safe tarball reader, validates its
 * `keel` field and manifest, shows the capabilities it asks for and gets them approved (`--yes`,
 * `--allow` covering all of them, or an interactive `approve`), writes its files under
 * `<dir>/.keel/plugins/<name>/<version>/` and records it in `keel.lock`. Refused or failed, it
 * leaves the project as it was: no folder, the lockfile unchanged.
 *
 * Plugins are unpacked under `.keel/plugins/`, not `node_modules/`: Deno does not strip
 * TypeScript types from files under `node_modules`, and a plugin's entry may be TypeScript. Its
 * npm `dependencies` are not installed: a plugin from a registry must be self-contained (bundle
 * what it imports), since it runs isolated with `--no-remote` and no package resolution.
 *
 * Relative `read:`/`write:`/`ffi:` capabilities resolve against the project folder (the one
 * holding `keel.lock`).
 * @module
 */

import { canParse, compare, format, parse } from "std-semver";
import { createGrant, formatCapability, isFullTrust, parseCapability } from "../core/capabilities.ts";
import { errorMessage, KeelError } from "../core/errors.ts";
import { createSilentLogger, type Logger } from "../core/logger.ts";
import { validateManifest } from "../core/manifest.ts";
import { dirname, isWithin, joinPath, normalizePath } from "../core/path.ts";
import type { IsolatedPluginSpec } from "../core/plugin.ts";
import type { Runtime, RuntimeFs } from "../core/runtime.ts";
import { filesDigest, tarballFiles } from "./_unpack.ts";
import { checkPackageName, type RegistryClient, resolveVersion, verifyTarball, type VersionDocument } from "./client.ts";
import { validateKeelField } from "./keel-field.ts";
import { type CapabilityDiff, capabilityDiff, type LockedPlugin, type Lockfile, LOCKFILE_NAME, readLockfile, writeLockfile } from "./lockfile.ts";
import { readPackageTarball } from "./tarball.ts";

/** keel.lock updates in progress, per folder: one at a time within a process. */
const lockUpdates = new Map<string, Promise<unknown>>();

/**
 * Reads keel.lock afresh, applies `change` and writes it, one update per folder at a time in
 * this process, so two `addPlugin` calls in one folder keep both entries. (Between processes the
 * window is this read-to-rename, not the whole download.)
 */
function updateLockfile<T>(runtime: Runtime, dir: string, change: (lock: Lockfile | undefined) => Promise<T>): Promise<T> {
  const previous = lockUpdates.get(dir) ?? Promise.resolve();
  const run = previous.then(() => readLockfile(runtime, dir)).then(change);
  const settled = run.then(() => {}, () => {});
  lockUpdates.set(dir, settled);
  void settled.then(() => {
    if (lockUpdates.get(dir) === settled) lockUpdates.delete(dir);
  });
  return run;
}

/** Where plugins are unpacked, relative to the project folder. */
export const PLUGINS_DIR = ".keel/plugins";

/** What the user is asked to approve. */
export interface ApprovalPrompt {
  readonly name: string;
  readonly version: string;
  /** The version installed before (an upgrade or downgrade). */
  readonly previousVersion?: string;
  /** Everything the version asks for. */
  readonly capabilities: readonly string[];
  /** What needs approval now: asked for, and not granted before. */
  readonly needed: readonly string[];
  /** Against what was granted before (empty lists for a first install). */
  readonly diff: CapabilityDiff;
  /** Asked-for capabilities that amount to full trust (run, ffi, gpu). */
  readonly fullTrust: readonly string[];
  /** The same, as lines for a terminal. */
  readonly text: string;
}

/** Options for {@link addPlugin}. */
export interface AddPluginOptions {
  readonly runtime: Runtime;
  readonly client: RegistryClient;
  /** `name`, `name@version`, `name@range` or `name@tag` (default tag "latest"). */
  readonly spec: string;
  /** The project folder: `keel.lock` and `.keel/plugins/` live here. */
  readonly dir: string;
  /** Capabilities approved up front (`--allow`); they must cover everything that needs approval. */
  readonly allow?: readonly string[];
  /** Approve whatever the plugin asks for (`--yes`). */
  readonly yes?: boolean;
  /** Asks the user (interactive); without it, and without `yes` or `allow`, a request is refused. */
  readonly approve?: (prompt: ApprovalPrompt) => Promise<boolean>;
  /** Progress lines. */
  readonly logger?: Logger;
}

/** What {@link addPlugin} did. */
export interface AddPluginResult {
  readonly name: string;
  readonly version: string;
  /** "added", "upgraded", "downgraded", "reinstalled" (its files were missing or changed), or "unchanged". */
  readonly status: "added" | "upgraded" | "downgraded" | "reinstalled" | "unchanged";
  readonly previousVersion?: string;
  readonly integrity: string;
  readonly keyid: string;
  /** Set when the registry signed with another key than the one keel.lock recorded. */
  readonly keyChanged?: { readonly from: string; readonly to: string };
  readonly capabilities: readonly string[];
  readonly granted: readonly string[];
  readonly diff: CapabilityDiff;
  /** How the capabilities needing approval were approved; "none" when nothing needed it. */
  readonly approvedBy: "yes" | "allow" | "prompt" | "none";
  readonly deprecated?: string;
  /** True when a yanked version was installed because it was pinned exactly. */
  readonly yanked: boolean;
  /** The plugin's folder. */
  readonly path: string;
  readonly lockfile: string;
}

/** Splits `@scope/name@range` into name and range (undefined when none). */
export function parsePluginSpec(spec: string): { name: string; range: string | undefined } {
  if (typeof spec !== "string" || spec.trim() === "") {
    throw new KeelError("E_REGISTRY_REQUEST_INVALID", 'Name a plugin to add, e.g. keel add @acme/plugin or keel add @acme/plugin@^1');
  }
  const text = spec.trim();
  const at = text.indexOf("@", 1);
  const name = at < 0 ? text : text.slice(0, at);
  const range = at < 0 ? undefined : text.slice(at + 1);
  checkPackageName(name);
  return { name, range: range === "" ? undefined : range };
}

function requireFs(runtime: Runtime): RuntimeFs {
  if (runtime.fs === undefined) throw new KeelError("E_RUNTIME_UNSUPPORTED", `Installing plugins needs a runtime with files; ${runtime.name} has none`);
  return runtime.fs;
}

/** The folder a locked plugin lives in. */
export function pluginFolder(dir: string, name: string, version: string): string {
  return joinPath(dir, PLUGINS_DIR, name, version);
}

function isCanonical(version: string): boolean {
  return canParse(version) && format(parse(version)) === version;
}

function quoteList(list: readonly string[]): string {
  return list.map((c) => `"${c}"`).join(", ");
}

function promptText(p: Omit<ApprovalPrompt, "text">): string {
  const lines = [
    p.previousVersion === undefined
      ? `${p.name}@${p.version} asks for ${p.capabilities.length === 0 ? "no capabilities" : "these capabilities:"}`
      : `${p.name}@${p.version} (installed: ${p.previousVersion}) asks for ${p.capabilities.length === 0 ? "no capabilities" : "these capabilities:"}`,
  ];
  for (const cap of p.capabilities) {
    const isNew = p.needed.includes(cap);
    lines.push(`  ${isNew ? "+" : " "} ${cap}${isNew && p.previousVersion !== undefined ? "  (new)" : ""}${p.fullTrust.includes(cap) ? "  [full trust: it can do anything you can]" : ""}`);
  }
  for (const cap of p.diff.removed) lines.push(`  - ${cap}  (no longer asked for)`);
  return lines.join("\n");
}

function deniedError(prompt: ApprovalPrompt, missing: readonly string[], why: string): KeelError {
  const upgrade = prompt.previousVersion !== undefined;
  const trust = missing.filter((c) => prompt.fullTrust.includes(c));
  return new KeelError(
    "E_CAPABILITY_DENIED",
    `${prompt.name}@${prompt.version} asks for ${quoteList(missing)}, which ${why}; ` +
      (upgrade ? `keel.lock still has ${prompt.previousVersion}` : "nothing was installed") +
      `. Review what it asks for, then run: keel add ${prompt.name}@${prompt.version} ${missing.map((c) => `--allow ${c}`).join(" ")} (or --yes)` +
      (trust.length > 0 ? `. Note: ${trust.join(", ")} ${trust.length === 1 ? "is" : "are"} full trust` : "") +
      // A user who declined has just read the list.
      (why === "you declined" ? "" : `\n${prompt.text}`),
    {
      details: {
        plugin: prompt.name,
        version: prompt.version,
        ...(upgrade ? { previousVersion: prompt.previousVersion } : {}),
        missing: [...missing],
        added: [...prompt.diff.added],
        removed: [...prompt.diff.removed],
      },
    },
  );
}

/** Lists every regular file under `root` (paths relative to it); a symlink is refused. */
async function readTree(fs: RuntimeFs, root: string, what: () => KeelError): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  const queue = [""];
  while (queue.length > 0) {
    const rel = queue.pop()!;
    for (const entry of await fs.readDir(rel === "" ? root : joinPath(root, rel))) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (entry.isSymlink) throw what();
      if (entry.isDirectory) queue.push(path);
      else if (entry.isFile) files.set(path, await fs.readFile(joinPath(root, path)));
      else throw what();
    }
  }
  return files;
}

/** True when the folder exists and its files match `digest`. */
async function intact(fs: RuntimeFs, folder: string, digest: string): Promise<boolean> {
  try {
    if (!(await fs.exists(folder))) return false;
    return (await filesDigest(await readTree(fs, folder, () => new KeelError("E_PLUGIN_LOAD_FAILED", "link")))) === digest;
  } catch {
    return false;
  }
}

/**
 * Installs (or upgrades) a plugin from a registry into `dir`: see the module docs for the steps.
 * Capabilities that need approval are those the version asks for and the installed version was
 * not granted (all of them on a first install); an upgrade asking for nothing new needs none.
 * What is recorded as granted is exactly what the version asks for.
 *
 * @throws {KeelError} `E_CAPABILITY_DENIED` (not approved; the message lists the capabilities
 *   and the `--allow` flags to pass), `E_REGISTRY_INTEGRITY`, `E_REGISTRY_SIGNATURE`,
 *   `E_REGISTRY_TARBALL_INVALID`, `E_REGISTRY_MANIFEST_INVALID` (not a Keel plugin, or its
 *   package.json disagrees with the registry), `E_MANIFEST_KERNEL_RANGE` (made for another
 *   kernel), `E_REGISTRY_NOT_FOUND` and the client's other errors, `E_REGISTRY_REQUEST_INVALID`
 *   (a malformed spec, or a registry other than the one keel.lock records), `E_CONFIG_INVALID`
 *   (a corrupt keel.lock), `E_CAPABILITY_UNKNOWN`/`E_CAPABILITY_INVALID` (a bad `allow`)
 */
export async function addPlugin(options: AddPluginOptions): Promise<AddPluginResult> {
  const { runtime, client } = options;
  const fs = requireFs(runtime);
  const dir = runtime.resolvePath(options.dir);
  const logger = options.logger ?? createSilentLogger();
  const allow = options.allow ?? [];
  const allowGrant = createGrant(allow, { base: dir });
  const { name, range } = parsePluginSpec(options.spec);
  const lock = await readLockfile(runtime, dir);
  const lockPath = joinPath(dir, LOCKFILE_NAME);
  if (lock !== undefined && Object.keys(lock.plugins).length > 0 && lock.registry !== client.url) {
    throw new KeelError(
      "E_REGISTRY_REQUEST_INVALID",
      `keel.lock records plugins from ${lock.registry}, not ${client.url}; add from the same registry (--registry ${lock.registry}), or keel remove its plugins first`,
      { details: { lockRegistry: lock.registry, registry: client.url } },
    );
  }
  const previous = lock?.plugins[name];

  logger.info(`Resolving ${name}${range === undefined ? "" : `@${range}`} at ${client.url}`);
  const packument = await client.packument(name);
  const resolved = resolveVersion(packument, range);
  const { version } = resolved;
  if (!isCanonical(version)) {
    throw new KeelError("E_REGISTRY_MANIFEST_INVALID", `The registry resolved ${name} to version ${JSON.stringify(version.slice(0, 100))}, which is not a semver version`);
  }
  if (resolved.yanked) logger.warn(`${name}@${version} is yanked; installing it only because it was pinned exactly`);
  if (resolved.deprecated !== undefined) logger.warn(`${name}@${version} is deprecated: ${resolved.deprecated}`);
  const document: VersionDocument = resolved.document ?? await client.versionDocument(name, version);
  const folder = pluginFolder(dir, name, version);

  if (previous !== undefined && previous.version === version) {
    if (document.dist.integrity !== undefined && !document.dist.integrity.split(/\s+/).includes(previous.integrity)) {
      throw new KeelError(
        "E_REGISTRY_INTEGRITY",
        `The registry now serves ${name}@${version} with integrity ${document.dist.integrity}, but keel.lock recorded ${previous.integrity}; versions are immutable, so the registry or something in between changed it. Nothing was installed`,
        { details: { plugin: name, version, expected: previous.integrity, actual: document.dist.integrity } },
      );
    }
    if (await intact(fs, folder, previous.files)) {
      logger.info(`${name}@${version} is already installed`);
      return {
        name,
        version,
        status: "unchanged",
        integrity: previous.integrity,
        keyid: previous.keyid,
        capabilities: previous.capabilities,
        granted: previous.granted,
        diff: { added: [], removed: [], kept: [...previous.capabilities] },
        approvedBy: "none",
        yanked: resolved.yanked,
        ...(resolved.deprecated === undefined ? {} : { deprecated: resolved.deprecated }),
        path: folder,
        lockfile: lockPath,
      };
    }
  }

  // Download and verify before anything is unpacked.
  logger.info(`Downloading ${name}@${version}`);
  const [keys, bytes] = await Promise.all([client.keys(), client.tarball(document.dist.tarball)]);
  const publishedAt = packument.time?.[version];
  const verified = await verifyTarball(bytes, document, keys, publishedAt === undefined ? {} : { publishedAt });
  if (previous !== undefined && previous.version === version && verified.integrity !== previous.integrity) {
    throw new KeelError("E_REGISTRY_INTEGRITY", `The tarball of ${name}@${version} has integrity ${verified.integrity}, but keel.lock recorded ${previous.integrity}; nothing was installed`, {
      details: { plugin: name, version, expected: previous.integrity, actual: verified.integrity },
    });
  }
  logger.info(`Verified ${name}@${version}: integrity ${verified.integrity.slice(0, 20)}…, signed by ${verified.keyid}`);
  const keyChanged = previous !== undefined && previous.keyid !== verified.keyid ? { from: previous.keyid, to: verified.keyid } : undefined;
  if (keyChanged !== undefined) {
    logger.warn(`The registry signed ${name}@${version} with key ${keyChanged.to}; keel.lock recorded ${keyChanged.from} for ${previous!.version}. The registry's keys changed: make sure its operator rotated them`);
  }

  const tarball = await readPackageTarball(bytes, { maxCompressedBytes: client.maxTarballBytes });
  const pj = tarball.packageJson;
  if (pj.name !== name || pj.version !== version) {
    throw new KeelError("E_REGISTRY_MANIFEST_INVALID", `The tarball of ${name}@${version} holds ${JSON.stringify(pj.name)}@${JSON.stringify(pj.version)}; the registry serves the wrong package. Nothing was installed`, {
      details: { plugin: name, version },
    });
  }
  if (pj.keel === undefined) {
    throw new KeelError("E_REGISTRY_MANIFEST_INVALID", `${name}@${version} is not a Keel plugin: its package.json has no "keel" field; install it with npm if it is a library`, {
      details: { plugin: name, version },
    });
  }
  const keel = validateKeelField(pj.keel, tarball.files.map((f) => f.path));
  validateManifest({ name, version, kernel: keel.kernel, capabilities: keel.capabilities }, { base: dir });
  const files = await tarballFiles(bytes, tarball.files);

  // Approval.
  const capabilities = [...keel.capabilities];
  const diff = capabilityDiff(previous?.granted ?? [], capabilities, { base: dir });
  const fullTrust = capabilities.filter((c) => isFullTrust(parseCapability(c, { base: dir })));
  const bare = {
    name,
    version,
    ...(previous === undefined || previous.version === version ? {} : { previousVersion: previous.version }),
    capabilities,
    needed: diff.added,
    diff,
    fullTrust,
  };
  const prompt: ApprovalPrompt = { ...bare, text: promptText(bare) };
  let approvedBy: AddPluginResult["approvedBy"] = "none";
  if (diff.added.length > 0) {
    const upgrade = prompt.previousVersion !== undefined;
    if (options.yes === true) approvedBy = "yes";
    else if (allow.length > 0) {
      const missing = diff.added.filter((c) => !allowGrant.covers(parseCapability(c, { base: dir })));
      if (missing.length > 0) throw deniedError(prompt, missing, `--allow does not cover${upgrade ? " (and the installed version was not granted)" : ""}`);
      approvedBy = "allow";
    } else if (options.approve !== undefined) {
      if (!(await options.approve(prompt))) throw deniedError(prompt, diff.added, "you declined");
      approvedBy = "prompt";
    } else {
      throw deniedError(prompt, diff.added, upgrade ? `the installed version ${previous!.version} was not granted` : "you have not approved");
    }
  }
  // `approve` showed it already; otherwise the log is where it is seen (CI).
  if (approvedBy !== "prompt") logger.info(prompt.text);
  const trusted = diff.added.filter((c) => fullTrust.includes(c));
  if (trusted.length > 0 && approvedBy !== "prompt") {
    logger.warn(`Granting ${quoteList(trusted)} to ${name}: full trust, it can do anything you can`);
  }

  // Unpack into a staging folder, then move it into place in one step.
  const root = joinPath(dir, PLUGINS_DIR);
  await fs.mkdir(root);
  const realRoot = await fs.realPath(root);
  const staging = joinPath(root, `.staging-${crypto.randomUUID()}`);
  const status: AddPluginResult["status"] = previous === undefined
    ? "added"
    : previous.version === version
    ? "reinstalled"
    : compare(parse(version), parse(previous.version)) > 0
    ? "upgraded"
    : "downgraded";
  logger.info(`Unpacking ${files.size} file${files.size === 1 ? "" : "s"} into ${folder}`);
  try {
    await fs.mkdir(staging);
    for (const [path, data] of files) {
      const target = normalizePath(joinPath(staging, path));
      if (!isWithin(target, staging) || target === staging) {
        throw new KeelError("E_REGISTRY_TARBALL_INVALID", `The tarball of ${name}@${version} holds "${path}", which would land outside its folder; nothing was installed`, {
          details: { reason: "parent-path", path },
        });
      }
      await fs.mkdir(dirname(target));
      await fs.writeFile(target, data);
    }
    await fs.mkdir(dirname(folder));
    const parent = await fs.realPath(dirname(folder));
    if (!isWithin(parent, realRoot)) {
      throw new KeelError("E_REGISTRY_TARBALL_INVALID", `"${dirname(folder)}" leads outside "${root}" (a symlink?); remove it and run keel add again`, {
        details: { reason: "symlink", path: dirname(folder) },
      });
    }
    await fs.remove(folder);
    await fs.rename(staging, folder);
  } catch (e) {
    await fs.remove(staging).catch(() => {});
    throw e;
  }

  const locked: LockedPlugin = {
    version,
    integrity: verified.integrity,
    keyid: verified.keyid,
    resolved: new URL(document.dist.tarball, client.url + "/").href,
    entry: keel.entry,
    capabilities,
    granted: capabilities,
    kernel: keel.kernel,
    files: await filesDigest(files),
  };
  try {
    await updateLockfile(runtime, dir, (current) =>
      writeLockfile(runtime, dir, { lockfileVersion: 1, registry: client.url, plugins: { ...current?.plugins, [name]: locked } }));
  } catch (e) {
    // The lock still names the old version: take the new files back out.
    if (previous?.version !== version) await fs.remove(folder).catch(() => {});
    throw e;
  }
  if (previous !== undefined && previous.version !== version) {
    await removeFolder(fs, dir, name, previous.version, logger);
  }
  return {
    name,
    version,
    status,
    ...(prompt.previousVersion === undefined ? {} : { previousVersion: prompt.previousVersion }),
    integrity: verified.integrity,
    keyid: verified.keyid,
    ...(keyChanged === undefined ? {} : { keyChanged }),
    capabilities,
    granted: capabilities,
    diff,
    approvedBy,
    ...(resolved.deprecated === undefined ? {} : { deprecated: resolved.deprecated }),
    yanked: resolved.yanked,
    path: folder,
    lockfile: lockPath,
  };
}

/** Removes a plugin version's folder, then its name (and scope) folders when left empty. */
async function removeFolder(fs: RuntimeFs, dir: string, name: string, version: string, logger: Logger): Promise<void> {
  const root = joinPath(dir, PLUGINS_DIR);
  try {
    await fs.remove(pluginFolder(dir, name, version));
    for (let at = joinPath(root, name); isWithin(at, root) && at !== root; at = dirname(at)) {
      if (!(await fs.exists(at)) || (await fs.readDir(at)).length > 0) break;
      await fs.remove(at);
    }
  } catch (e) {
    logger.warn(`Could not remove the files of ${name}@${version} (${errorMessage(e)}); delete "${pluginFolder(dir, name, version)}" yourself`);
  }
}

/** Options for {@link removePlugin}. */
export interface RemovePluginOptions {
  readonly runtime: Runtime;
  /** The project folder. */
  readonly dir: string;
  readonly name: string;
  readonly logger?: Logger;
}

/** What {@link removePlugin} removed. */
export interface RemovePluginResult {
  readonly name: string;
  readonly version: string;
  /** The folder deleted. */
  readonly path: string;
  /** True when keel.lock was deleted because no plugin was left in it. */
  readonly lockfileRemoved: boolean;
}

/**
 * Uninstalls a plugin: its entry leaves keel.lock (written first, so a crash leaves at worst an
 * orphan folder, never a lock pointing at missing files), then its folder is deleted. A
 * keel.lock with no plugin left is deleted, so `keel add` then `keel remove` leaves the
 * project as it was.
 *
 * @throws {KeelError} `E_REGISTRY_NOT_FOUND` when the plugin is not in keel.lock (the message
 *   lists what is); `E_CONFIG_INVALID` for a corrupt keel.lock.
 */
export async function removePlugin(options: RemovePluginOptions): Promise<RemovePluginResult> {
  const { runtime, name } = options;
  const fs = requireFs(runtime);
  const dir = runtime.resolvePath(options.dir);
  const logger = options.logger ?? createSilentLogger();
  const lock = await readLockfile(runtime, dir);
  const entry = lock?.plugins[name];
  if (lock === undefined || entry === undefined) {
    const installed = Object.keys(lock?.plugins ?? {});
    throw new KeelError(
      "E_REGISTRY_NOT_FOUND",
      `Plugin "${name}" is not installed in ${dir} (not in ${LOCKFILE_NAME}); ` +
        (installed.length > 0 ? `installed: ${quoteList(installed)}` : "no plugin is installed here"),
      { details: { plugin: name, installed } },
    );
  }
  const lockfileRemoved = await updateLockfile(runtime, dir, async (current) => {
    const rest = Object.fromEntries(Object.entries(current?.plugins ?? {}).filter(([n]) => n !== name));
    if (Object.keys(rest).length === 0) {
      await fs.remove(joinPath(dir, LOCKFILE_NAME));
      return true;
    }
    await writeLockfile(runtime, dir, { ...(current ?? lock), plugins: rest });
    return false;
  });
  await removeFolder(fs, dir, name, entry.version, logger);
  if (lockfileRemoved) {
    // `.keel/plugins` itself, when nothing else is in it.
    const root = joinPath(dir, PLUGINS_DIR);
    if ((await fs.exists(root)) && (await fs.readDir(root)).length === 0) await fs.remove(root).catch(() => {});
  }
  return { name, version: entry.version, path: pluginFolder(dir, name, entry.version), lockfileRemoved };
}

/** What {@link lockedPluginEntries} returns: kernel entries and their grants. */
export interface LockedEntries {
  /** One isolated spec per locked plugin, in name order. */
  readonly entries: readonly IsolatedPluginSpec[];
  /** Exactly the granted capabilities, by plugin name (relative paths resolved against `dir`). */
  readonly grants: Readonly<Record<string, readonly string[]>>;
  /** The lockfile read, when there is one. */
  readonly lockfile?: Lockfile;
}

/**
 * The plugins `<dir>/keel.lock` records, as isolated kernel entries plus their grants: pass both
 * to `createKernel({ plugins, grants })`. Every plugin's files are checked against the digest
 * the lock recorded, so a plugin whose files went missing or changed after install is refused
 * instead of run with the grant that was approved for other code. No keel.lock: nothing.
 *
 * @throws {KeelError} `E_PLUGIN_LOAD_FAILED` for missing or changed files (the message says to
 *   run `keel add` again); `E_CONFIG_INVALID` for a corrupt keel.lock.
 */
export async function lockedPluginEntries(runtime: Runtime, dir: string): Promise<LockedEntries> {
  const fs = requireFs(runtime);
  const root = runtime.resolvePath(dir);
  const lock = await readLockfile(runtime, root);
  if (lock === undefined) return { entries: [], grants: {} };
  const entries: IsolatedPluginSpec[] = [];
  const grants: Record<string, readonly string[]> = {};
  const absolute = (caps: readonly string[]) => caps.map((c) => formatCapability(parseCapability(c, { base: root })));
  for (const name of Object.keys(lock.plugins).sort()) {
    const p = lock.plugins[name]!;
    const folder = pluginFolder(root, name, p.version);
    const module = joinPath(folder, p.entry);
    const again = `run keel add ${name}@${p.version} to install it again`;
    if (!(await fs.exists(module))) {
      throw new KeelError("E_PLUGIN_LOAD_FAILED", `Plugin "${name}" ${p.version} is in ${LOCKFILE_NAME}, but its entry "${module}" is missing; ${again}`, {
        details: { plugin: name, version: p.version, path: folder },
      });
    }
    const changed = () =>
      new KeelError("E_PLUGIN_LOAD_FAILED", `The files of plugin "${name}" ${p.version} in "${folder}" changed since it was installed (they no longer match ${LOCKFILE_NAME}); ${again}`, {
        details: { plugin: name, version: p.version, path: folder },
      });
    if ((await filesDigest(await readTree(fs, folder, changed))) !== p.files) throw changed();
    const manifest = { name, version: p.version, kernel: p.kernel, capabilities: absolute(p.capabilities) };
    entries.push({ isolate: true, module, manifest });
    grants[name] = absolute(p.granted);
  }
  return { entries, grants, lockfile: lock };
}
