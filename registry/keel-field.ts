/**
 * The `keel` field of a plugin's `package.json`: what makes an npm package a Keel plugin.
 *
 * ```json
 * "keel": { "entry": "dist/plugin.js", "capabilities": ["net:api.example.com:443"], "kernel": "^1" }
 * ```
 *
 * - `entry`: the plugin module, a relative path inside the package (no `..`, no leading `/`,
 *   no backslash); when the tarball's file list is given, the file must be in it.
 * - `capabilities`: what the plugin asks to be granted, each parsed with core's
 *   `parseCapability` (relative `read:`/`write:`/`ffi:` paths are accepted here: the host that
 *   installs the plugin resolves them). At most {@link MAX_CAPABILITIES}, no duplicates.
 * - `kernel`: the kernel versions the plugin works with, a semver range.
 * - `runtimes` (optional): the runtimes the plugin is tested on, from {@link KEEL_RUNTIMES}
 *   (shown on its registry page and counted in its quality score).
 *
 * Unknown fields are refused, so a typo (`"capabilites"`) fails at publish instead of silently
 * asking for nothing.
 * @module
 */

import { tryParseRange } from "std-semver";
import { parseCapability } from "../core/capabilities.ts";
import { KeelError } from "../core/errors.ts";

/** A validated `keel` field. */
export interface KeelField {
  readonly entry: string;
  readonly capabilities: readonly string[];
  readonly kernel: string;
  /** The runtimes the plugin says it works on; absent when it does not say. */
  readonly runtimes?: readonly KeelRuntime[];
}

/** The runtimes a plugin may name in `keel.runtimes`: "edge" is a worker host (Cloudflare, Vercel Edge). */
export const KEEL_RUNTIMES = ["deno", "bun", "node", "edge"] as const;

/** One of {@link KEEL_RUNTIMES}. */
export type KeelRuntime = (typeof KEEL_RUNTIMES)[number];

/** The most capabilities one plugin may ask for. */
export const MAX_CAPABILITIES = 64;

const FIELDS = ["entry", "capabilities", "kernel", "runtimes"] as const;

function invalid(message: string, details: Record<string, unknown> = {}): KeelError {
  return new KeelError("E_REGISTRY_MANIFEST_INVALID", message, { details: { field: "keel", ...details } });
}

/** Why `entry` is not a safe relative path inside a package, or undefined. */
function entryProblem(entry: string): string | undefined {
  if (entry === "" || entry.length > 1024) return "it is empty or longer than 1024 characters";
  if (entry.includes("\\") || entry.includes("\0")) return "it holds a backslash or a NUL";
  if (entry.startsWith("/") || /^[A-Za-z]:/.test(entry)) return "it is absolute; write a path relative to the package root";
  const segments = entry.replace(/^\.\//, "").split("/");
  if (segments.some((s) => s === ".." )) return 'it holds ".." and would leave the package';
  if (segments.some((s) => s === "" || s === ".")) return 'it has an empty or "." segment';
  return undefined;
}

/** The entry as a tarball path: without a leading "./". */
export function normalizeEntry(entry: string): string {
  return entry.replace(/^\.\//, "");
}

/**
 * Checks a `keel` field and returns it typed, with `entry` normalized (no leading "./").
 *
 * @param files The paths in the tarball (without "package/"); when given, `entry` must be one.
 * @throws {KeelError} `E_REGISTRY_MANIFEST_INVALID`, the message naming the field and the fix.
 */
export function validateKeelField(value: unknown, files?: readonly string[]): KeelField {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid('The "keel" field must be an object { "entry": "...", "capabilities": [...], "kernel": "^1" }');
  }
  const field = value as Record<string, unknown>;
  const extra = Object.keys(field).filter((k) => !(FIELDS as readonly string[]).includes(k));
  if (extra.length > 0) {
    throw invalid(`The "keel" field has unknown key(s) ${extra.map((k) => JSON.stringify(k)).join(", ")}; its keys are "entry", "capabilities", "kernel" and "runtimes"`, { unknown: extra });
  }
  const { entry, capabilities, kernel, runtimes } = field;
  if (typeof entry !== "string") throw invalid('"keel.entry" must be a string: the plugin module, relative to the package root (e.g. "dist/plugin.js")');
  const problem = entryProblem(entry);
  if (problem !== undefined) throw invalid(`"keel.entry" ${JSON.stringify(entry)} is not a path inside the package: ${problem}`, { entry });
  const normalized = normalizeEntry(entry);
  if (files !== undefined && !files.includes(normalized)) {
    throw invalid(`"keel.entry" names "${normalized}", which is not in the tarball; build it before publishing, or check the "files" field of package.json`, { entry });
  }
  if (!Array.isArray(capabilities)) throw invalid('"keel.capabilities" must be a list of capability strings, e.g. ["net:api.example.com:443"] ([] for none)');
  if (capabilities.length > MAX_CAPABILITIES) throw invalid(`"keel.capabilities" lists ${capabilities.length} capabilities; the most is ${MAX_CAPABILITIES}`);
  const seen = new Set<string>();
  for (const [i, cap] of capabilities.entries()) {
    if (typeof cap !== "string" || cap.length > 512) throw invalid(`"keel.capabilities[${i}]" must be a capability string of at most 512 characters`);
    if (seen.has(cap)) throw invalid(`"keel.capabilities" lists "${cap}" twice`);
    seen.add(cap);
    try {
      // A placeholder base: relative paths are valid here and resolved by the installing host.
      parseCapability(cap, { base: "/" });
    } catch (e) {
      throw new KeelError("E_REGISTRY_MANIFEST_INVALID", `"keel.capabilities[${i}]": ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
        details: { field: "keel", capability: cap },
      });
    }
  }
  if (typeof kernel !== "string" || kernel.trim() === "" || kernel.length > 256 || tryParseRange(kernel) === undefined) {
    throw invalid(`"keel.kernel" ${JSON.stringify(kernel)} is not a semver range; write the kernel versions the plugin works with, e.g. "^1"`, { kernel });
  }
  const out = { entry: normalized, capabilities: [...capabilities] as string[], kernel };
  if (runtimes === undefined) return out;
  const known: readonly string[] = KEEL_RUNTIMES;
  if (!Array.isArray(runtimes) || runtimes.length === 0 || runtimes.some((r) => typeof r !== "string" || !known.includes(r)) || new Set(runtimes).size !== runtimes.length) {
    throw invalid(`"keel.runtimes" must list runtimes the plugin works on, each once, from ${KEEL_RUNTIMES.map((r) => `"${r}"`).join(", ")}; e.g. ["deno", "bun"] (or leave it out)`);
  }
  return { ...out, runtimes: [...runtimes] as KeelRuntime[] };
}
