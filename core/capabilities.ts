/**
 * Capabilities, named after Deno's permissions: `net[:host[:port]]`, `read[:path]`,
 * `write[:path]`, `env[:NAME]`, `run[:command]`, `ffi[:path]`, `sys[:name]`, and `gpu`.
 * Deny by default: a {@link Grant} covers only what it lists.
 * @module
 */

import { KeelError } from "./errors.ts";
import { isAbsolutePath, isWithin, normalizePath, resolvePath } from "./path.ts";
import { editDistance } from "./edit-distance.ts";

export { editDistance };

/** Every capability kind. */
export const CAPABILITY_KINDS = ["net", "read", "write", "env", "run", "ffi", "sys", "gpu"] as const;

/** One of {@link CAPABILITY_KINDS}. */
export type CapabilityKind = (typeof CAPABILITY_KINDS)[number];

/**
 * Kinds whose grant is full trust: a subprocess, native code or the GPU driver can do anything
 * the host user can, so hosts must say so when asking for approval.
 */
export const FULL_TRUST_KINDS: readonly CapabilityKind[] = ["run", "ffi", "gpu"];

/** Where a plugin may go. Parsed from strings like "net:api.example.com:443". */
export interface Capability {
  readonly kind: CapabilityKind;
  /** Absent: the whole kind. For paths, a normalized absolute path. */
  readonly scope?: string;
}

/** Options for {@link parseCapability}. */
export interface ParseCapabilityOptions {
  /** Absolute directory that relative `read:`/`write:`/`ffi:` paths resolve against. */
  readonly base?: string;
}

const PATH_KINDS: ReadonlySet<CapabilityKind> = new Set(["read", "write", "ffi"]);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*\*?$/;
const HOST = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)$/;

function invalid(text: string, why: string): KeelError {
  return new KeelError("E_CAPABILITY_INVALID", `Capability "${text}" is invalid: ${why}`, {
    details: { capability: text },
  });
}

/**
 * Parses one capability string.
 *
 * @throws {KeelError} `E_CAPABILITY_UNKNOWN` for a kind that does not exist;
 *   `E_CAPABILITY_INVALID` for a malformed scope, a path holding `..`, or a relative path
 *   without `base`.
 * @example
 * ```ts
 * import { parseCapability } from "./capabilities.ts";
 * const cap = parseCapability("net:api.example.com:443");
 * if (cap.kind !== "net" || cap.scope !== "api.example.com:443") throw new Error("unreachable");
 * ```
 */
export function parseCapability(text: string, options: ParseCapabilityOptions = {}): Capability {
  if (typeof text !== "string") {
    throw new KeelError("E_CAPABILITY_INVALID", `A capability must be a string, got ${typeof text}`);
  }
  const at = text.indexOf(":");
  const kind = at < 0 ? text : text.slice(0, at);
  if (!(CAPABILITY_KINDS as readonly string[]).includes(kind)) {
    const hint = suggestKind(kind);
    throw new KeelError(
      "E_CAPABILITY_UNKNOWN",
      `Unknown capability kind "${kind}" in "${text}"; use one of ${CAPABILITY_KINDS.join(", ")}` +
        (hint ? ` (did you mean "${hint}"?)` : ""),
      { details: { capability: text } },
    );
  }
  const k = kind as CapabilityKind;
  if (at < 0) return { kind: k };
  const scope = text.slice(at + 1);
  if (scope === "") throw invalid(text, "the part after ':' is empty; leave out ':' to mean all");
  if (scope.includes("\0")) throw invalid(text, "it holds a NUL character");
  switch (k) {
    case "gpu":
      throw invalid(text, '"gpu" takes no scope');
    case "net":
      return { kind: k, scope: parseNetScope(text, scope) };
    case "env":
      if (!ENV_NAME.test(scope)) throw invalid(text, "an env name is letters, digits and _, optionally ending in *");
      return { kind: k, scope };
    case "run":
    case "sys":
      if (/\s/.test(scope)) throw invalid(text, "it holds whitespace");
      if (k === "run" && scope.split("/").includes("..")) throw invalid(text, "a path may not hold '..'");
      return { kind: k, scope };
    default:
      return { kind: k, scope: parsePathScope(text, scope, options.base) };
  }
}

function parsePathScope(text: string, scope: string, base: string | undefined): string {
  if (scope.split(/[\\/]/).includes("..")) {
    throw invalid(text, "a path may not hold '..'; name the directory you mean");
  }
  if (isAbsolutePath(scope)) return normalizePath(scope);
  if (base === undefined) throw invalid(text, "a relative path needs a base directory; use an absolute path");
  return resolvePath(scope, base);
}

function parseNetScope(text: string, scope: string): string {
  let host = scope;
  let port: string | undefined;
  if (scope.includes("/")) throw invalid(text, 'write a host and optional port, not a URL, e.g. "net:example.com:443"');
  if (scope.startsWith("[")) {
    const close = scope.indexOf("]");
    if (close < 0) throw invalid(text, "an IPv6 address must be closed with ']'");
    host = scope.slice(0, close + 1);
    const rest = scope.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) throw invalid(text, "expected ':port' after the IPv6 address");
      port = rest.slice(1);
    }
  } else {
    const parts = scope.split(":");
    if (parts.length > 2) throw invalid(text, "write IPv6 addresses in brackets, e.g. net:[::1]:8080");
    host = parts[0] ?? "";
    port = parts[1];
  }
  if (!HOST.test(host)) throw invalid(text, `"${host}" is not a host name or IP address`);
  // Requests are checked by their URL's hostname, so a grant must be written the same way
  // ("[0:0:0:0:0:0:0:1]" is "[::1]").
  let canonical: string;
  try {
    canonical = new URL(`http://${host}/`).hostname;
  } catch {
    throw invalid(text, `"${host}" is not a host name or IP address`);
  }
  if (port !== undefined) {
    const n = Number(port);
    if (!/^\d+$/.test(port) || n < 1 || n > 65535) throw invalid(text, `"${port}" is not a port (1-65535)`);
    return `${canonical}:${n}`;
  }
  return canonical;
}

function suggestKind(kind: string): string | undefined {
  const aliases: Record<string, CapabilityKind> = {
    fs: "read", file: "read", files: "read", network: "net", http: "net", fetch: "net",
    exec: "run", spawn: "run", process: "run", environment: "env", webgpu: "gpu",
  };
  const alias = aliases[kind.toLowerCase()];
  if (alias) return alias;
  return CAPABILITY_KINDS.find((k) => editDistance(k, kind.toLowerCase()) <= 1);
}

/** The canonical string form, the inverse of {@link parseCapability}. */
export function formatCapability(cap: Capability): string {
  return cap.scope === undefined ? cap.kind : `${cap.kind}:${cap.scope}`;
}

function splitHostPort(scope: string): { host: string; port: string | undefined } {
  if (scope.startsWith("[")) {
    const close = scope.indexOf("]");
    const rest = scope.slice(close + 1);
    return { host: scope.slice(0, close + 1), port: rest.startsWith(":") ? rest.slice(1) : undefined };
  }
  const [host = "", port] = scope.split(":");
  return { host, port };
}

/** True when holding `granted` allows `wanted`. */
export function capabilityCovers(granted: Capability, wanted: Capability): boolean {
  if (granted.kind !== wanted.kind) return false;
  if (granted.scope === undefined) return true;
  if (wanted.scope === undefined) return false;
  if (PATH_KINDS.has(granted.kind)) {
    // Normalized here too: "/data/../etc" must not pass as lying under "/data".
    return isAbsolutePath(wanted.scope) && isWithin(normalizePath(wanted.scope), granted.scope);
  }
  if (granted.kind === "net") {
    const g = splitHostPort(granted.scope);
    const w = splitHostPort(wanted.scope);
    return g.host === w.host && (g.port === undefined || g.port === w.port);
  }
  if (granted.kind === "env" && granted.scope.endsWith("*")) {
    return wanted.scope.startsWith(granted.scope.slice(0, -1));
  }
  return granted.scope === wanted.scope;
}

/** A set of capabilities a host has granted. Immutable. */
export interface Grant {
  readonly capabilities: readonly Capability[];
  /** True when some granted capability covers `wanted`. */
  covers(wanted: Capability): boolean;
  /** Shorthand for `capabilities.map(formatCapability)`. */
  toStrings(): string[];
}

/**
 * Builds a grant from capability strings or objects.
 *
 * @throws {KeelError} `E_CAPABILITY_UNKNOWN` / `E_CAPABILITY_INVALID` for a bad entry.
 * @example
 * ```ts
 * import { createGrant, parseCapability } from "./capabilities.ts";
 * const grant = createGrant(["read:/data"]);
 * if (!grant.covers(parseCapability("read:/data/mnist.idx"))) throw new Error("unreachable");
 * if (grant.covers(parseCapability("read:/etc/passwd"))) throw new Error("unreachable");
 * ```
 */
export function createGrant(
  capabilities: readonly (string | Capability)[],
  options: ParseCapabilityOptions = {},
): Grant {
  if (!Array.isArray(capabilities)) {
    throw new KeelError("E_CAPABILITY_INVALID", "Capabilities must be a list of strings like \"net:example.com\"");
  }
  const caps = Object.freeze(
    capabilities.map((c) => (typeof c === "string" ? parseCapability(c, options) : parseCapability(formatCapability(c), options))),
  );
  return Object.freeze({
    capabilities: caps,
    covers: (wanted: Capability) => caps.some((g) => capabilityCovers(g, wanted)),
    toStrings: () => caps.map(formatCapability),
  });
}

/** Returns the requested capabilities that `grant` does not cover; empty when all are covered. */
export function missingCapabilities(requested: readonly Capability[], grant: Grant): Capability[] {
  return requested.filter((want) => !grant.covers(want));
}

/** True for a capability whose grant amounts to full trust (see {@link FULL_TRUST_KINDS}). */
export function isFullTrust(cap: Capability): boolean {
  return FULL_TRUST_KINDS.includes(cap.kind);
}

/** The `net` capability a request to `url` needs: host plus the URL's port or its scheme's default. */
export function netCapabilityFor(url: URL): Capability {
  const port = url.port !== "" ? url.port : url.protocol === "https:" || url.protocol === "wss:" ? "443" : "80";
  return { kind: "net", scope: `${url.hostname.toLowerCase()}:${port}` };
}
