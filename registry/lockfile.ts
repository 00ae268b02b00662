/**
 * `keel.lock`: the plugins a project installed from a registry, and what the user granted each.
 *
 * ```json
 * {
 *   "lockfileVersion": 1,
 *   "registry": "http://127.0.0.1:4873",
 *   "plugins": {
 *     "@acme/plugin": {
 *       "version": "1.2.0",
 *       "integrity": "sha512-…",
 *       "keyid": "SHA256:…",
 *       "resolved": "http://127.0.0.1:4873/@acme/plugin/-/plugin-1.2.0.tgz",
 *       "entry": "index.js",
 *       "capabilities": ["net:api.example.com:443"],
 *       "granted": ["net:api.example.com:443"],
 *       "kernel": "^1",
 *       "files": "sha512-…"
 *     }
 *   }
 * }
 * ```
 *
 * `capabilities` is what the version asks for, `granted` what the user approved (the kernel
 * gives the plugin exactly that), `keyid` the registry key its signature verified with, and
 * `files` a digest over the unpacked files (checked every time the plugin loads). The file is
 * written with a stable key order (plugins sorted by name) and a trailing newline, so it diffs
 * well in review, and atomically (a temp file renamed over it).
 * @module
 */

import { canParse, format, parse } from "std-semver";
import { type Capability, createGrant, formatCapability, parseCapability } from "../core/capabilities.ts";
import { errorMessage, KeelError } from "../core/errors.ts";
import { joinPath } from "../core/path.ts";
import type { Runtime, RuntimeFs } from "../core/runtime.ts";
import { checkPackageName } from "./client.ts";
import { validateKeelField } from "./keel-field.ts";

/** The file name, at the project root. */
export const LOCKFILE_NAME = "keel.lock";

/** One installed plugin. */
export interface LockedPlugin {
  readonly version: string;
  /** The tarball's `sha512-…` integrity. */
  readonly integrity: string;
  /** The registry key whose signature verified. */
  readonly keyid: string;
  /** The tarball URL it was downloaded from. */
  readonly resolved: string;
  /** The plugin module, relative to its package root. */
  readonly entry: string;
  /** What the version asks for (its `keel.capabilities`). */
  readonly capabilities: readonly string[];
  /** What the user approved; the kernel grants exactly this. */
  readonly granted: readonly string[];
  /** The kernel range it declares. */
  readonly kernel: string;
  /** A digest over the unpacked files, checked at load. */
  readonly files: string;
}

/** The whole lockfile. */
export interface Lockfile {
  readonly lockfileVersion: 1;
  /** The registry every plugin here came from. */
  readonly registry: string;
  readonly plugins: Readonly<Record<string, LockedPlugin>>;
}

const PLUGIN_KEYS = ["version", "integrity", "keyid", "resolved", "entry", "capabilities", "granted", "kernel", "files"] as const;
const SRI = /^sha512-[A-Za-z0-9+/]{86}==$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function corrupt(path: string, why: string, cause?: unknown): KeelError {
  return new KeelError(
    "E_CONFIG_INVALID",
    `The lockfile "${path}" ${why}; restore it from version control, or delete it and run keel add again for each plugin`,
    { ...(cause === undefined ? {} : { cause }), details: { path } },
  );
}

/**
 * Parses and checks a lockfile's text.
 * @param path Named in errors.
 * @throws {KeelError} `E_CONFIG_INVALID`, naming the entry and field at fault.
 * @example
 * ```ts
 * import { formatLockfile, parseLockfile } from "./lockfile.ts";
 * const text = formatLockfile({ lockfileVersion: 1, registry: "http://127.0.0.1:4873", plugins: {} });
 * if (parseLockfile(text).registry !== "http://127.0.0.1:4873") throw new Error("unreachable");
 * ```
 */
export function parseLockfile(text: string, path = LOCKFILE_NAME): Lockfile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw corrupt(path, `is not valid JSON (${errorMessage(e)})`, e);
  }
  if (!isRecord(value)) throw corrupt(path, "is not a JSON object");
  if (value.lockfileVersion !== 1) {
    throw corrupt(
      path,
      typeof value.lockfileVersion === "number" && value.lockfileVersion > 1
        ? `has lockfileVersion ${value.lockfileVersion}, written by a newer Keel: upgrade Keel`
        : `has no "lockfileVersion": 1`,
    );
  }
  if (typeof value.registry !== "string" || !/^https?:\/\/[^\s]+$/.test(value.registry)) throw corrupt(path, 'has no "registry" URL');
  if (!isRecord(value.plugins)) throw corrupt(path, 'has no "plugins" object');
  const plugins: Record<string, LockedPlugin> = {};
  for (const [name, entry] of Object.entries(value.plugins)) {
    const at = `has a bad entry for "${name.slice(0, 100)}"`;
    try {
      checkPackageName(name);
    } catch {
      throw corrupt(path, `${at}: not a package name`);
    }
    if (!isRecord(entry)) throw corrupt(path, `${at}: not an object`);
    for (const key of PLUGIN_KEYS) {
      const v = entry[key];
      const ok = key === "capabilities" || key === "granted" ? Array.isArray(v) && v.every((c) => typeof c === "string") : typeof v === "string" && v !== "";
      if (!ok) throw corrupt(path, `${at}: "${key}" is missing or has the wrong type`);
    }
    const e = entry as unknown as LockedPlugin;
    if (!canParse(e.version) || format(parse(e.version)) !== e.version) throw corrupt(path, `${at}: "version" is not a semver version`);
    if (!SRI.test(e.integrity)) throw corrupt(path, `${at}: "integrity" is not a sha512 integrity`);
    if (!SRI.test(e.files)) throw corrupt(path, `${at}: "files" is not a sha512 digest`);
    if (!/^https?:\/\//.test(e.resolved)) throw corrupt(path, `${at}: "resolved" is not an http(s) URL`);
    let field;
    try {
      field = validateKeelField({ entry: e.entry, capabilities: e.capabilities, kernel: e.kernel });
      createGrant(e.granted, { base: "/" });
    } catch (err) {
      throw corrupt(path, `${at}: ${errorMessage(err)}`, err);
    }
    plugins[name] = {
      version: e.version,
      integrity: e.integrity,
      keyid: e.keyid,
      resolved: e.resolved,
      entry: field.entry,
      capabilities: [...e.capabilities],
      granted: [...e.granted],
      kernel: e.kernel,
      files: e.files,
    };
  }
  return { lockfileVersion: 1, registry: value.registry, plugins };
}

/** The lockfile's text: fixed key order, plugins sorted by name, two-space indent, a final newline. */
export function formatLockfile(lock: Lockfile): string {
  const names = Object.keys(lock.plugins).sort();
  const plugins: Record<string, Record<string, unknown>> = {};
  for (const name of names) {
    const p = lock.plugins[name]!;
    plugins[name] = Object.fromEntries(PLUGIN_KEYS.map((k) => [k, k === "capabilities" || k === "granted" ? [...p[k]] : p[k]]));
  }
  return JSON.stringify({ lockfileVersion: 1, registry: lock.registry, plugins }, null, 2) + "\n";
}

function requireFs(runtime: Runtime): RuntimeFs {
  if (runtime.fs === undefined) {
    throw new KeelError("E_RUNTIME_UNSUPPORTED", `The ${runtime.name} runtime has no file access for ${LOCKFILE_NAME}`);
  }
  return runtime.fs;
}

/**
 * Reads `<dir>/keel.lock`; undefined when there is none.
 * @throws {KeelError} `E_CONFIG_INVALID` for a corrupt one.
 */
export async function readLockfile(runtime: Runtime, dir: string): Promise<Lockfile | undefined> {
  const fs = requireFs(runtime);
  const path = joinPath(dir, LOCKFILE_NAME);
  let text: string;
  try {
    text = await fs.readTextFile(path);
  } catch (e) {
    if (KeelError.is(e, "E_RUNTIME_NOT_FOUND")) return undefined;
    throw e;
  }
  return parseLockfile(text, path);
}

/**
 * Writes `<dir>/keel.lock` atomically: to a temp file beside it, then renamed over it, so a
 * reader (or a crash) sees the old file or the new one, never half of one.
 */
export async function writeLockfile(runtime: Runtime, dir: string, lock: Lockfile): Promise<void> {
  const fs = requireFs(runtime);
  const text = formatLockfile(lock);
  const path = joinPath(dir, LOCKFILE_NAME);
  const temp = joinPath(dir, `.${LOCKFILE_NAME}.${crypto.randomUUID().slice(0, 8)}.tmp`);
  try {
    await fs.writeTextFile(temp, text);
    await fs.rename(temp, path);
  } catch (e) {
    await fs.remove(temp).catch(() => {});
    throw e;
  }
}

/** How the capabilities of two versions differ. */
export interface CapabilityDiff {
  /** Asked for now and not covered by the old list: these need approval. */
  readonly added: readonly string[];
  /** In the old list, no longer asked for. */
  readonly removed: readonly string[];
  /** Asked for now and covered by the old list. */
  readonly kept: readonly string[];
}

/**
 * Compares an old capability list (what was granted) with a new one (what is asked for now).
 * "Covered" is the grant's rule, so `net:example.com` covers a new `net:example.com:443`.
 * Relative paths resolve against `base` (default "/").
 *
 * @throws {KeelError} `E_CAPABILITY_UNKNOWN` / `E_CAPABILITY_INVALID` for a malformed entry.
 * @example
 * ```ts
 * import { capabilityDiff } from "./lockfile.ts";
 * const d = capabilityDiff(["net:api.example.com", "env:A"], ["net:api.example.com", "read:/data"]);
 * if (d.added.join() !== "read:/data" || d.removed.join() !== "env:A") throw new Error("unreachable");
 * ```
 */
export function capabilityDiff(
  old: readonly string[],
  next: readonly string[],
  options: { readonly base?: string } = {},
): CapabilityDiff {
  const base = options.base ?? "/";
  const grant = createGrant(old, { base });
  const parsedNext: Capability[] = next.map((c) => parseCapability(c, { base }));
  const nextGrant = createGrant(parsedNext);
  const added: string[] = [];
  const kept: string[] = [];
  next.forEach((text, i) => (grant.covers(parsedNext[i]!) ? kept : added).push(text));
  const removed = old.filter((text) => {
    const cap = parseCapability(text, { base });
    return !nextGrant.covers(cap) && !parsedNext.some((n) => formatCapability(n) === formatCapability(cap));
  });
  return { added, removed, kept };
}
