/**
 * Manifest validation: every field checked, each problem a coded error that names the plugin.
 * @module
 */

import { canParse, parse, parseRange, satisfies, tryParseRange } from "std-semver";
import { KeelError } from "./errors.ts";
import { parseCapability, type ParseCapabilityOptions } from "./capabilities.ts";
import type { PluginManifest } from "./plugin.ts";

export { KERNEL_VERSION } from "./version.ts";
import { KERNEL_VERSION } from "./version.ts";

const NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;
const KNOWN_FIELDS = new Set([
  "name", "version", "kernel", "requires", "capabilities", "enforce", "description", "setup",
]);

function label(value: unknown): string {
  if (typeof value === "object" && value !== null && typeof (value as { name?: unknown }).name === "string") {
    return `Plugin "${(value as { name: string }).name}"`;
  }
  return "A plugin";
}

function fail(code: "E_MANIFEST_INVALID" | "E_MANIFEST_NAME" | "E_MANIFEST_VERSION" | "E_MANIFEST_KERNEL_RANGE", message: string, plugin?: string): never {
  throw new KeelError(code, message, { details: plugin === undefined ? {} : { plugin } });
}

/** Options for {@link validateManifest}. */
export interface ValidateManifestOptions extends ParseCapabilityOptions {
  /** The version checked against `kernel`; default {@link KERNEL_VERSION}. */
  readonly kernelVersion?: string;
}

/**
 * Checks a manifest and returns it typed. Unknown fields are allowed (forward compatibility)
 * but every known field must be well formed.
 *
 * @throws {KeelError} `E_MANIFEST_INVALID`, `E_MANIFEST_NAME`, `E_MANIFEST_VERSION`,
 *   `E_MANIFEST_KERNEL_RANGE`, `E_CAPABILITY_UNKNOWN`, `E_CAPABILITY_INVALID`
 * @example
 * ```ts
 * import { validateManifest } from "./manifest.ts";
 * const m = validateManifest({ name: "hello", version: "1.0.0", kernel: "^1" });
 * if (m.name !== "hello") throw new Error("unreachable");
 * ```
 */
export function validateManifest(value: unknown, options: ValidateManifestOptions = {}): PluginManifest {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail("E_MANIFEST_INVALID", `A plugin manifest must be an object, got ${value === null ? "null" : Array.isArray(value) ? "an array" : typeof value}`);
  }
  const m = value as Record<string, unknown>;
  const who = label(m);
  if (m.name === undefined || m.name === "") fail("E_MANIFEST_NAME", "A plugin manifest has no \"name\"; add one like \"my-plugin\" or \"@scope/my-plugin\"");
  if (typeof m.name !== "string" || m.name.length > 214 || !NAME.test(m.name)) {
    fail("E_MANIFEST_NAME", `Plugin name ${JSON.stringify(m.name)} is not a valid package name; use lowercase letters, digits, '-', '.', '_', optionally scoped as "@scope/name"`);
  }
  const name = m.name;
  if (typeof m.version !== "string" || !canParse(m.version) || /^[=v\s]|\s$/.test(m.version)) {
    fail("E_MANIFEST_VERSION", `${who} has version ${JSON.stringify(m.version)}, which is not semver; use a version like "1.0.0"`, name);
  }
  if (typeof m.kernel !== "string" || m.kernel.trim() === "" || tryParseRange(m.kernel) === undefined) {
    fail("E_MANIFEST_KERNEL_RANGE", `${who} has kernel range ${JSON.stringify(m.kernel)}, which is not a semver range; use a range like "^1"`, name);
  }
  const kernelVersion = options.kernelVersion ?? KERNEL_VERSION;
  if (!satisfies(parse(kernelVersion), parseRange(m.kernel))) {
    fail("E_MANIFEST_KERNEL_RANGE", `${who} needs kernel "${m.kernel}" but this kernel is ${kernelVersion}; install a version of the plugin made for kernel ${parse(kernelVersion).major}`, name);
  }
  checkStringList(m, "requires", who, name);
  checkStringList(m, "capabilities", who, name);
  for (const cap of (m.capabilities as string[] | undefined) ?? []) parseCapability(cap, options);
  if (m.enforce !== undefined && m.enforce !== "pre" && m.enforce !== "post") {
    fail("E_MANIFEST_INVALID", `${who} has enforce ${JSON.stringify(m.enforce)}; use "pre", "post" or leave it out`, name);
  }
  if (m.description !== undefined && typeof m.description !== "string") {
    fail("E_MANIFEST_INVALID", `${who} has a description that is not a string`, name);
  }
  return m as unknown as PluginManifest;
}

function checkStringList(m: Record<string, unknown>, field: string, who: string, name: string): void {
  const v = m[field];
  if (v === undefined) return;
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string" || x === "")) {
    fail("E_MANIFEST_INVALID", `${who} has "${field}" that is not a list of non-empty strings`, name);
  }
  const seen = new Set<string>();
  for (const x of v as string[]) {
    if (seen.has(x)) fail("E_MANIFEST_INVALID", `${who} lists "${x}" twice in "${field}"`, name);
    seen.add(x);
  }
}

/** The manifest fields of a plugin object, without `setup` (what crosses a process boundary). */
export function manifestOf(plugin: PluginManifest): PluginManifest {
  const out: Record<string, unknown> = {};
  for (const key of KNOWN_FIELDS) {
    if (key !== "setup" && (plugin as unknown as Record<string, unknown>)[key] !== undefined) {
      out[key] = (plugin as unknown as Record<string, unknown>)[key];
    }
  }
  return out as unknown as PluginManifest;
}
