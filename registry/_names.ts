/**
 * Package names, versions and dist-tags as the registry accepts them: npm's
 * validate-npm-package-name rules for new packages, plus what keeps a name safe as a path
 * segment and hard to confuse with another.
 * @module
 */

import { canParse, format, parse, tryParseRange } from "std-semver";

/** Node's core modules: npm refuses them as names of new packages. */
const BUILTINS: ReadonlySet<string> = new Set([
  "assert", "async_hooks", "buffer", "child_process", "cluster", "console", "constants", "crypto",
  "dgram", "diagnostics_channel", "dns", "domain", "events", "fs", "http", "http2", "https",
  "inspector", "module", "net", "os", "path", "perf_hooks", "process", "punycode", "querystring",
  "readline", "repl", "stream", "string_decoder", "sys", "timers", "tls", "trace_events", "tty",
  "url", "util", "v8", "vm", "wasi", "worker_threads", "zlib", "node_modules", "favicon.ico",
]);

/** The longest package name npm accepts. */
export const MAX_NAME_LENGTH = 214;

/** A package name split into its scope (without "@") and its base name. */
export interface PackageName {
  readonly name: string;
  readonly scope: string | undefined;
  readonly base: string;
}

/**
 * Why `name` cannot be a new package's name, or undefined when it can. Follows
 * validate-npm-package-name's `validForNewPackages` (lowercase, URL-safe ASCII, at most 214
 * characters, not a core module, no `~'!()*`, no leading `.` or `_`), and refuses a scope or base
 * name that starts with `.` or `_` too, so `@x/..` can never become a path.
 */
export function nameProblem(name: unknown): string | undefined {
  if (typeof name !== "string" || name === "") return "a package name must be a non-empty string";
  if (name.length > MAX_NAME_LENGTH) return `a package name has at most ${MAX_NAME_LENGTH} characters`;
  if (name.trim() !== name) return "a package name may not start or end with spaces";
  if (/[^\x21-\x7e]/.test(name)) return "a package name is printable ASCII only (no look-alike letters from other scripts)";
  if (name !== name.toLowerCase()) return "a package name may not hold capital letters";
  const parts = splitName(name);
  if (parts === undefined) return 'a scoped name is "@scope/name", with exactly one "/"';
  for (const [part, what] of [[parts.scope, "scope"], [parts.base, "name"]] as const) {
    if (part === undefined) continue;
    if (part === "") return `the ${what} part is empty`;
    if (part.startsWith(".") || part.startsWith("_")) return `the ${what} part may not start with "." or "_"`;
    if (encodeURIComponent(part) !== part) return `the ${what} part holds characters that are not URL-safe`;
  }
  if (/[~'!()*]/.test(parts.base)) return "a package name may not hold ~'!()*";
  if (parts.scope === undefined && BUILTINS.has(name)) return `"${name}" is a Node.js core module name`;
  return undefined;
}

/** Splits a name into scope and base; undefined when a slash is misplaced. */
export function splitName(name: string): PackageName | undefined {
  if (name.startsWith("@")) {
    const slash = name.indexOf("/");
    if (slash < 0 || name.indexOf("/", slash + 1) >= 0) return undefined;
    return { name, scope: name.slice(1, slash), base: name.slice(slash + 1) };
  }
  if (name.includes("/")) return undefined;
  return { name, scope: undefined, base: name };
}

/**
 * The key two names collide on when they differ only in case or in `-`, `.` and `_`
 * ("react-dom", "reactdom", "react.dom"): npm refuses a new name too similar to an existing one.
 */
export function confusableKey(name: string): string {
  const parts = splitName(name);
  const base = (parts?.base ?? name).toLowerCase().replace(/[-._]/g, "");
  return parts?.scope === undefined ? base : `@${parts.scope.toLowerCase()}/${base}`;
}

/** The name as it appears in a URL path: `@scope%2fname` for a scoped one. */
export function escapeName(name: string): string {
  return name.startsWith("@") ? "@" + encodeURIComponent(name.slice(1)) : encodeURIComponent(name);
}

/** True for a semver version in its canonical form ("1.0.0", not "v1.0.0" or "=1.0.0"). */
export function isCanonicalVersion(version: unknown): version is string {
  if (typeof version !== "string" || version.length > 256 || !canParse(version)) return false;
  return !version.includes("+") && format(parse(version)) === version;
}

/**
 * Why `tag` cannot be a dist-tag, or undefined: letters, digits, `-`, `.`, `_`, at most 64, not
 * starting with a digit or "v" followed by one, and never a semver range (npm would read
 * `pkg@1.x` as a range, not the tag).
 */
export function tagProblem(tag: unknown): string | undefined {
  if (typeof tag !== "string" || !/^[A-Za-z][A-Za-z0-9._-]{0,63}$/.test(tag)) {
    return "a dist-tag is 1-64 letters, digits, '-', '.' or '_', starting with a letter";
  }
  if (tryParseRange(tag) !== undefined) return `"${tag}" reads as a semver range; pick a tag that does not`;
  return undefined;
}
