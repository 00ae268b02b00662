/**
 * POSIX path helpers in plain string logic, so `core/` needs no `node:path`.
 * @module
 */

/** True when `path` starts at the root. */
export function isAbsolutePath(path: string): boolean {
  return path.startsWith("/");
}

/**
 * Collapses `.`, `..` and repeated slashes. A relative path keeps leading `..` segments;
 * an absolute path never climbs above `/`.
 */
export function normalizePath(path: string): string {
  const absolute = isAbsolutePath(path);
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!absolute) out.push("..");
      continue;
    }
    out.push(part);
  }
  const joined = out.join("/");
  if (absolute) return "/" + joined;
  return joined === "" ? "." : joined;
}

/** Joins segments and normalizes the result. */
export function joinPath(...parts: string[]): string {
  return normalizePath(parts.filter((p) => p !== "").join("/"));
}

/** Resolves `path` against `base` (which must be absolute) to a normalized absolute path. */
export function resolvePath(path: string, base: string): string {
  return isAbsolutePath(path) ? normalizePath(path) : normalizePath(`${base}/${path}`);
}

/** The parent directory of a normalized path; "/" for "/". */
export function dirname(path: string): string {
  const normalized = normalizePath(path);
  const at = normalized.lastIndexOf("/");
  if (at < 0) return ".";
  return at === 0 ? "/" : normalized.slice(0, at);
}

/** The last segment of a path. */
export function basename(path: string): string {
  const normalized = normalizePath(path);
  return normalized.slice(normalized.lastIndexOf("/") + 1);
}

/** True when `path` is `parent` or lies under it; both must be normalized absolute paths. */
export function isWithin(path: string, parent: string): boolean {
  if (parent === "/") return true;
  return path === parent || path.startsWith(parent + "/");
}

/**
 * An absolute file path to a `file:` URL string; a URL string passes through.
 * @throws {TypeError} for a relative path ("a/b" would become the URL of host "a").
 */
export function toFileUrl(path: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(path)) return path;
  if (!isAbsolutePath(path)) throw new TypeError(`A file URL needs an absolute path, got "${path}"; resolve it first`);
  return "file://" + encodeURI(normalizePath(path)).replace(/[?#]/g, encodeURIComponent);
}

/** A `file:` URL to a path. */
export function fromFileUrl(url: string | URL): string {
  const parsed = typeof url === "string" ? new URL(url) : url;
  if (parsed.protocol !== "file:") throw new TypeError(`Not a file URL: "${parsed.href}"`);
  return decodeURIComponent(parsed.pathname);
}
