/**
 * The registry's HTTP app (Hono): the npm registry protocol, as far as `npm`, `bun` and `deno`
 * use it, plus what a plugin marketplace adds. Serve `app.fetch` with `Runtime.serve` (as
 * `keel registry serve` does).
 *
 * ## Routes
 *
 * Package names appear in paths as `name`, `@scope%2fname` (either case of `%2f`) or
 * `@scope/name`.
 * - `GET|HEAD /<pkg>`: the package document. With `Accept: application/vnd.npm.install-v1+json`
 *   the abbreviated one (`name, modified, dist-tags, versions{...}, time`), else the full one
 *   (`_id, _rev, name, description, dist-tags, versions, time, maintainers, readme, ...`). Both
 *   are serialized once per package revision and cached (gzip too), with a strong `ETag` (a hash
 *   of the bytes) and `Cache-Control: no-cache`, so clients revalidate and get `304`.
 * - `GET /<pkg>/<version|tag>`: one version's document.
 * - `GET|HEAD /<pkg>/-/<name>-<version>.tgz`: the tarball (also under `/@scope/name/-/@scope/name-1.0.0.tgz`,
 *   the URL npm itself writes at publish). Tarball URLs are `<public URL>/<name>/-/<base>-<version>.tgz`
 *   and depend on nothing but the configured public URL, never on request headers.
 * - `PUT /<pkg>`: `npm publish` (a body with `_attachments`), or a metadata update: `npm deprecate`
 *   sends the whole document back with `deprecated` set; only `deprecated` is taken from it.
 * - `PUT /<pkg>/-rev/<rev>`: as above, and versions missing from the body are unpublished (npm
 *   unpublish of one version). `DELETE /<pkg>/-rev/<rev>`: unpublish every version.
 *   `DELETE /<pkg>/-/<file>/-rev/<rev>`: the tarball of an unpublished version (already gone).
 * - `GET /-/package/<pkg>/dist-tags`, `PUT|POST|DELETE /-/package/<pkg>/dist-tags/<tag>` (body: a JSON string).
 * - `PUT|DELETE /-/keel/yank/<pkg>/<version>` (body `{ "reason"? }`): yank or restore a version.
 * - `GET /-/keel/downloads/<pkg>`: downloads per version.
 * - `PUT /-/user/org.couchdb.user:<name>`: npm login / adduser: checks the password (or creates
 *   the user, when sign-up is open) and answers `{ token }`. `POST /-/v1/login` answers 404, so
 *   npm falls back to this. `GET /-/whoami`, `DELETE /-/user/token/<token>` (npm logout).
 * - `GET /-/v1/search?text=...&size=&from=`: qualifiers `keywords:a,b`, `scope:acme`,
 *   `capability:net` (a kind, or a whole capability string) and `runtime:deno` narrow the search.
 * - `GET /-/npm/v1/keys`: the registry's public signing keys (`npm audit signatures`).
 * - `GET /-/ping`; `POST /-/npm/v1/security/advisories/bulk` answers `{}` (no advisories here).
 * - `GET /-/web/...`: the marketplace pages (`web.ts`): search with filters, a page per package.
 *   `GET /` from a browser (`Accept: text/html`) redirects there; npm clients never ask for `/`.
 *
 * Errors are `{ "error": "<message>", "code": "E_REGISTRY_...", "details"?: {...} }`: `error` is
 * a string because that is what npm prints (`npm ERR! 403 Forbidden - PUT ... - <error>`). A 401
 * carries no `WWW-Authenticate`, for the same reason (npm would print only that header).
 *
 * ## Rules
 *
 * - Versions are immutable: a name@version is taken once, ever, even after an unpublish; two
 *   racing publishes of it get one 201 and one 409 `E_REGISTRY_VERSION_EXISTS`.
 * - **Yank** (Keel's, like Cargo's and JSR's): a yanked version disappears from `versions` of
 *   both documents and from dist-tag resolution (a tag on it is hidden; `latest` falls back to the
 *   highest release that is not yanked), so no new resolution picks it, with any client: Deno
 *   reads the full document (`Accept: *\/*`), so keeping yanked versions there would let
 *   `deno install npm:pkg@^1` choose one. It stays downloadable (the tarball URL in lockfiles keeps
 *   working), is listed in the full document's `yanked` map (`{ "1.0.1": { reason, time } }`) and
 *   in `time`, answers `GET /<pkg>/<version>` with `"yanked": true`, and appears in `versions`
 *   (marked `"yanked": true`) of the document npm reads before a write (`?write=true`), so
 *   `npm deprecate` and `npm unpublish` still see it.
 * - **Unpublish** (npm's 72-hour rule, simplified): the owner or an admin may unpublish a version
 *   within 72 hours of its publish; after that it is refused with `E_REGISTRY_FORBIDDEN`, and
 *   yanking is the way. The number is never reused, and the package name stays its owner's.
 * - **Owners**: the first publisher of a package owns it; only the owner or an admin token may
 *   publish to it, tag, deprecate, yank or unpublish. The first publisher in a scope owns the
 *   scope: new packages in it need an owner of one of its packages (or an admin).
 * - **Tokens**: `read` < `publish` < `admin`; a token with a package scope acts only on packages
 *   of that scope. Reads are public unless `publicRead` is false.
 * - **Names**: npm's validate-npm-package-name rules for new packages (lowercase URL-safe ASCII,
 *   so no look-alike letters from other scripts), and a name equal to an existing one but for
 *   case, `-`, `.` and `_` is refused.
 * @module
 */

import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { type ErrorCodeName, KeelError } from "../core/errors.ts";
import { createSilentLogger, type Logger } from "../core/logger.ts";
import { generateToken, hashPassword, hashToken, looksLikeToken, PASSWORD_ITERATIONS, USER_NAME, verifyPassword } from "./_auth.ts";
import { escapeName, isCanonicalVersion, nameProblem, splitName, tagProblem } from "./_names.ts";
import type { BlobStore } from "./blobs.ts";
import { type Actor, compareVersions, type PackageSnapshot, type RegistryDb, type TokenRecord, type TokenScope, type VersionRecord } from "./db.ts";
import { type KeelField, validateKeelField } from "./keel-field.ts";
import { qualitySignals } from "./quality.ts";
import { keysDocument, type SigningKey, signVersion } from "./signing.ts";
import { integrityOf, readPackageTarball } from "./tarball.ts";
import { createWebApp, WEB_PATH } from "./web.ts";

/** The limits of a registry; each a positive integer. */
export interface RegistryLimits {
  /** The largest tarball accepted at publish, in bytes. Default 10 MiB. */
  readonly maxTarballBytes: number;
  /** The most a tarball may expand to. Default 50 MiB. */
  readonly maxUnpackedBytes: number;
  /** The most files in one tarball. Default 10 000. */
  readonly maxFiles: number;
  /** The largest JSON body besides a publish's attachment, in bytes. Default 1 MiB. */
  readonly maxJsonBytes: number;
  /** The most versions one package may have. Default 10 000. */
  readonly maxVersions: number;
  /** How long a client may take to send its body. Default 30 s. */
  readonly bodyTimeoutMs: number;
  /** Login attempts per user name per minute (and ten times that for all names). Default 10. */
  readonly loginsPerMinute: number;
  /** Publishes per user per minute. Default 60. */
  readonly publishesPerMinute: number;
  /** How long after its publish a version may be unpublished. Default 72 h. */
  readonly unpublishWindowMs: number;
  /** How long a token from `npm login` lives. Default 30 days. */
  readonly loginTokenTtlMs: number;
  /** Bytes of serialized documents kept in memory. Default 64 MiB. */
  readonly cacheBytes: number;
  /** Bytes of recently downloaded tarballs kept in memory (0 turns it off). Default 32 MiB. */
  readonly tarballCacheBytes: number;
}

/** The limits a registry has unless its options say otherwise. */
export const REGISTRY_LIMITS: RegistryLimits = Object.freeze({
  maxTarballBytes: 10 * 1024 * 1024,
  maxUnpackedBytes: 50 * 1024 * 1024,
  maxFiles: 10_000,
  maxJsonBytes: 1024 * 1024,
  maxVersions: 10_000,
  bodyTimeoutMs: 30_000,
  loginsPerMinute: 10,
  publishesPerMinute: 60,
  unpublishWindowMs: 72 * 3_600_000,
  loginTokenTtlMs: 30 * 86_400_000,
  cacheBytes: 64 * 1024 * 1024,
  tarballCacheBytes: 32 * 1024 * 1024,
});

/** Options for {@link createRegistryApp}. */
export interface RegistryAppOptions {
  readonly db: RegistryDb;
  readonly blobs: BlobStore;
  /** The public URL clients reach the registry at; tarball URLs are built from it. */
  readonly baseUrl: string;
  /** The first signs new versions; all are published at `/-/npm/v1/keys`. */
  readonly signingKeys: readonly SigningKey[];
  readonly limits?: Partial<RegistryLimits>;
  readonly logger?: Logger;
  /** Whether `npm adduser` may create users. Default true. */
  readonly signup?: boolean;
  /** Whether reads need no token. Default true; false needs a `read` token for every request. */
  readonly publicRead?: boolean;
  /** Whether every package must have a `keel` field (a plugin-only registry). Default false. */
  readonly requireKeelField?: boolean;
  /** PBKDF2 iterations for new passwords. Default 600 000. */
  readonly passwordIterations?: number;
  /** The clock, in ms since the epoch; for tests of expiry and the unpublish window. */
  readonly now?: () => number;
}

/** The registry's Hono app. */
export type RegistryApp = Hono<{ Variables: Vars }> & {
  /** Drops every cached document (another process wrote the database); normally not needed. */
  clearCache(): void;
  /**
   * Writes the download counts kept in memory (they are written in one batch a second, not one
   * write per download). `openRegistry`'s `close()` calls it; call it before closing a database
   * you passed in yourself.
   */
  flushDownloads(): Promise<void>;
};

/** How often counted downloads are written, in ms. */
const DOWNLOAD_FLUSH_MS = 1000;

/**
 * Download counts gathered in memory and written as one increment per version and day: a
 * tarball served costs a Map update instead of a database write.
 */
function createDownloadCounter(db: RegistryDb, logger: Logger | undefined) {
  let pending = new Map<string, { name: string; version: string; at: number; count: number }>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let writing: Promise<void> = Promise.resolve();
  const write = async (batch: typeof pending) => {
    for (const { name, version, at, count } of batch.values()) {
      try {
        await db.countDownload(name, version, at, count);
      } catch (e) {
        logger?.warn(`Could not count ${count} download${count === 1 ? "" : "s"} of ${name}@${version}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  };
  const flush = (): Promise<void> => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (pending.size > 0) {
      const batch = pending;
      pending = new Map();
      writing = writing.then(() => write(batch));
    }
    return writing;
  };
  return {
    count(name: string, version: string, at: number): void {
      const key = `${name}\0${version}\0${Math.floor(at / 86_400_000)}`;
      const entry = pending.get(key);
      if (entry) entry.count++;
      else pending.set(key, { name, version, at, count: 1 });
      timer ??= setTimeout(() => void flush(), DOWNLOAD_FLUSH_MS);
    },
    flush,
  };
}

type Vars = { identity: Identity | undefined };

/** Who a request's token says it is. */
interface Identity {
  readonly token: TokenRecord;
  readonly actor: Actor;
}

const ABBREVIATED = "application/vnd.npm.install-v1+json";
/** How many token hashes {@link createRegistryApp} remembers. */
const TOKEN_HASHES_KEPT = 1000;
const JSON_TYPE = "application/json";
const MAX_DEPTH = 64;
const README_LIMIT = 64 * 1024;
const RANK: Readonly<Record<TokenScope, number>> = { read: 0, publish: 1, admin: 2 };
/** Fields that go into the abbreviated version document, as npm's registry picks them. */
const ABBREVIATED_FIELDS = [
  "name", "version", "dependencies", "optionalDependencies", "peerDependencies", "peerDependenciesMeta",
  "bundleDependencies", "bundledDependencies", "acceptDependencies", "bin", "directories", "engines", "os", "cpu",
  "libc", "funding", "license", "_hasShrinkwrap", "hasInstallScript", "keel",
] as const;
/** Fields of the request's manifest that must agree with the tarball's package.json. */
const MUST_AGREE = ["name", "version", "keel", "dependencies", "optionalDependencies", "peerDependencies", "os", "cpu", "engines"] as const;
/** Fields a publisher may not set: the registry writes them. */
const REGISTRY_FIELDS = new Set(["_id", "_rev", "dist", "deprecated", "yanked", "readme", "_npmUser", "_attachments", "_resolved", "_integrity", "_from", "_shasum", "maintainers", "_npmOperationalInternal", "_hasShrinkwrap", "hasInstallScript"]);

/** An error that becomes an HTTP answer. */
class HttpFailure extends Error {
  readonly status: number;
  readonly code: ErrorCodeName;
  readonly details: Readonly<Record<string, unknown>> | undefined;
  readonly headers: Readonly<Record<string, string>>;
  constructor(status: number, code: ErrorCodeName, message: string, options: { details?: Readonly<Record<string, unknown>> | undefined; headers?: Readonly<Record<string, string>> } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = options.details;
    this.headers = options.headers ?? {};
  }
}

function invalid(message: string, details?: Record<string, unknown>): HttpFailure {
  return new HttpFailure(400, "E_REGISTRY_REQUEST_INVALID", message, { details });
}

function notFound(message: string): HttpFailure {
  return new HttpFailure(404, "E_REGISTRY_NOT_FOUND", message);
}

const STATUS: Partial<Record<ErrorCodeName, number>> = {
  E_REGISTRY_TARBALL_INVALID: 400,
  E_REGISTRY_MANIFEST_INVALID: 400,
  E_REGISTRY_VERSION_EXISTS: 409,
  E_REGISTRY_NOT_FOUND: 404,
  E_REGISTRY_UNAUTHORIZED: 401,
  E_REGISTRY_FORBIDDEN: 403,
  E_REGISTRY_REQUEST_INVALID: 400,
  E_REGISTRY_TOO_LARGE: 413,
  E_REGISTRY_RATE_LIMITED: 429,
  E_REGISTRY_INTEGRITY: 400,
  E_STORE_LOCKED: 503,
  E_STORE_FULL: 507,
};

function failureOf(e: unknown): HttpFailure {
  if (e instanceof HttpFailure) return e;
  if (KeelError.is(e)) {
    const status = STATUS[e.code] ?? (e.code.startsWith("E_CAPABILITY_") ? 400 : 500);
    return new HttpFailure(status, e.code, e.message, { details: e.details, headers: status === 503 ? { "retry-after": "1" } : {} });
  }
  return new HttpFailure(500, "E_REGISTRY_UNREACHABLE", `The registry failed to answer: ${e instanceof Error ? e.message : String(e)}`);
}

function errorBody(failure: HttpFailure): string {
  return JSON.stringify(failure.details === undefined ? { error: failure.message, code: failure.code } : { error: failure.message, code: failure.code, details: failure.details });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Refuses JSON nested deeper than {@link MAX_DEPTH} (iteratively, so the check itself cannot overflow). */
function checkDepth(value: unknown): void {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth >= MAX_DEPTH) throw invalid(`The JSON body is nested more than ${MAX_DEPTH} levels deep`);
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
}

/** Deep equality of JSON values, treating a missing field as undefined. */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** `bin` as npm normalizes it: `{ command: path }`, paths without "./". */
function normalizeBin(bin: unknown, name: string): unknown {
  const clean = (p: unknown) => (typeof p === "string" ? p.replace(/^\.\//, "") : p);
  if (typeof bin === "string") return { [splitName(name)?.base ?? name]: clean(bin) };
  if (!isPlainObject(bin)) return bin;
  return Object.fromEntries(Object.entries(bin).map(([k, v]) => [k, clean(v)]));
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** 8 hex digits of FNV-1a, for `_rev` suffixes. */
function fnv(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

function base64ToBytes(text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  try {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  } catch {
    return undefined;
  }
}

function base64ToHex(text: string): string {
  const bytes = base64ToBytes(text) ?? new Uint8Array();
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

async function etagOf(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  let binary = "";
  for (const b of digest.subarray(0, 18)) binary += String.fromCharCode(b);
  return `"${btoa(binary).replace(/\+/g, "-").replace(/\//g, "_")}"`;
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** True when an `If-None-Match` header names `etag` (weak or strong, or `*`). */
function matchesEtag(header: string | null, etag: string): boolean {
  if (header === null) return false;
  if (header.trim() === "*") return true;
  return header.split(",").some((t) => t.trim().replace(/^W\//, "") === etag);
}

/** One serialized document variant. */
interface Variant {
  readonly body: Uint8Array;
  readonly etag: string;
  gzip?: Uint8Array;
}

/** The cached documents of one package revision. */
interface CachedDocs {
  readonly rev: number;
  readonly full: Variant;
  readonly abbreviated: Variant;
  /** Live versions by number, for version and tag lookups. */
  readonly snapshot: PackageSnapshot;
  readonly effectiveTags: Readonly<Record<string, string>>;
  readonly size: number;
}

/** The tags served: none on a yanked version; `latest` falls back to the highest unyanked release. */
export function effectiveTags(snapshot: PackageSnapshot): Record<string, string> {
  const live = new Map(snapshot.versions.map((v) => [v.version, v]));
  const out: Record<string, string> = {};
  for (const [tag, version] of Object.entries(snapshot.tags)) {
    const v = live.get(version);
    if (v !== undefined && v.yankedAt === null) out[tag] = version;
  }
  if (out.latest === undefined) {
    const candidates = snapshot.versions.filter((v) => v.yankedAt === null).map((v) => v.version);
    const releases = candidates.filter((v) => !v.includes("-"));
    const best = (releases.length > 0 ? releases : candidates).sort(compareVersions).at(-1);
    if (best !== undefined) out.latest = best;
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The path of a version's tarball: `/<name>/-/<base>-<version>.tgz`. */
export function tarballPath(name: string, version: string): string {
  return `/${name}/-/${splitName(name)?.base ?? name}-${version}.tgz`;
}

function distJson(v: VersionRecord, baseUrl: string): string {
  return `{"integrity":${JSON.stringify(v.integrity)},"shasum":${JSON.stringify(v.shasum)},"tarball":${JSON.stringify(baseUrl + tarballPath(v.name, v.version))},"fileCount":${v.fileCount},"unpackedSize":${v.unpackedSize},"signatures":${v.signatures}}`;
}

/** A stored object's JSON with fields appended: stored documents are objects with at least name and version. */
function withFields(objectJson: string, fields: string): string {
  return fields === "" ? objectJson : `${objectJson.slice(0, -1)}${fields}}`;
}

function versionJson(v: VersionRecord, baseUrl: string, abbreviated: boolean, markYanked: boolean): string {
  let extra = `,"dist":${distJson(v, baseUrl)}`;
  if (v.deprecated !== null) extra += `,"deprecated":${JSON.stringify(v.deprecated)}`;
  if (markYanked && v.yankedAt !== null) extra += `,"yanked":true`;
  return withFields(abbreviated ? v.abbreviated : v.manifest, extra);
}

function timeJson(snapshot: PackageSnapshot): string {
  const parts = [`"created":${JSON.stringify(iso(snapshot.pkg.createdAt))}`, `"modified":${JSON.stringify(iso(snapshot.pkg.modifiedAt))}`];
  const entries: [string, number][] = [
    ...snapshot.versions.map((v): [string, number] => [v.version, v.publishedAt]),
    ...Object.entries(snapshot.unpublished),
  ];
  for (const [version, at] of entries) parts.push(`${JSON.stringify(version)}:${JSON.stringify(iso(at))}`);
  return `{${parts.join(",")}}`;
}

/** Reads a field of the latest version's manifest for the top level of the full document. */
function latestFields(latest: VersionRecord | undefined): Record<string, unknown> {
  if (latest === undefined) return {};
  let manifest: Record<string, unknown>;
  try {
    manifest = JSON.parse(latest.manifest) as Record<string, unknown>;
  } catch {
    return {};
  }
  const out: Record<string, unknown> = {};
  for (const key of ["description", "keywords", "license", "homepage", "repository", "bugs", "author", "readmeFilename"]) {
    if (manifest[key] !== undefined) out[key] = manifest[key];
  }
  return out;
}

/** Builds both documents of a package; `write` includes yanked versions, marked (npm's read-for-write). */
function buildDocuments(snapshot: PackageSnapshot, baseUrl: string, tags: Record<string, string>, write = false): { full: string; abbreviated: string } {
  const { pkg } = snapshot;
  const resolvable = write ? snapshot.versions : snapshot.versions.filter((v) => v.yankedAt === null);
  const time = timeJson(snapshot);
  const tagsJson = JSON.stringify(write ? snapshot.tags : tags);
  const fullVersions = resolvable.map((v) => `${JSON.stringify(v.version)}:${versionJson(v, baseUrl, false, true)}`).join(",");
  const latest = snapshot.versions.find((v) => v.version === tags.latest);
  const top = latestFields(latest);
  const yanked = snapshot.versions.filter((v) => v.yankedAt !== null);
  const rest: string[] = [];
  for (const [key, value] of Object.entries(top)) rest.push(`${JSON.stringify(key)}:${JSON.stringify(value)}`);
  if (yanked.length > 0) {
    rest.push(`"yanked":${JSON.stringify(Object.fromEntries(yanked.map((v) => [v.version, { reason: v.yankReason, time: iso(v.yankedAt!) }])))}`);
  }
  const full = `{"_id":${JSON.stringify(pkg.name)},"_rev":${JSON.stringify(`${pkg.rev}-${fnv(pkg.name + pkg.rev)}`)},"name":${JSON.stringify(pkg.name)},"dist-tags":${tagsJson},"versions":{${fullVersions}},"time":${time},"maintainers":[{"name":${JSON.stringify(pkg.owner)}}],"readme":${JSON.stringify(latest?.readme ?? "")}${rest.length > 0 ? "," + rest.join(",") : ""}}`;
  const abbreviatedVersions = resolvable.map((v) => `${JSON.stringify(v.version)}:${versionJson(v, baseUrl, true, write)}`).join(",");
  const abbreviated = `{"name":${JSON.stringify(pkg.name)},"modified":${JSON.stringify(iso(pkg.modifiedAt))},"dist-tags":${tagsJson},"versions":{${abbreviatedVersions}},"time":${time}}`;
  return { full, abbreviated };
}

/** A package path: the package name and what follows it. */
interface PackagePath {
  readonly name: string;
  readonly rest: readonly string[];
}

/** Splits a raw URL path into decoded segments; a malformed escape is a 400. */
function segmentsOf(path: string): string[] {
  const raw = path.split("/").slice(1);
  if (raw.length > 0 && raw[raw.length - 1] === "") raw.pop();
  return raw.map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw invalid(`The path segment "${s.slice(0, 100)}" has a malformed %-escape`);
    }
  });
}

/**
 * The package a path names: `name`, `@scope%2fname` (one segment) or `@scope/name` (two).
 * @throws {HttpFailure} 400 for a name npm would not accept.
 */
function packagePath(segments: readonly string[]): PackagePath {
  const [first, second] = segments;
  if (first === undefined || first === "") throw notFound("No package named; the path is /<package>");
  let name: string;
  let rest: readonly string[];
  if (first.startsWith("@") && !first.includes("/")) {
    if (second === undefined) throw invalid(`"${first.slice(0, 100)}" is a scope without a package name; write @scope/name (or @scope%2fname)`);
    name = `${first}/${second}`;
    rest = segments.slice(2);
  } else {
    name = first;
    rest = segments.slice(1);
  }
  const problem = nameProblem(name);
  if (problem !== undefined) {
    throw invalid(`${JSON.stringify(name.slice(0, 214))} is not a valid package name: ${problem}`, { reason: "name" });
  }
  return { name, rest };
}

/** The raw path of a request URL (no query), still %-encoded. */
function rawPath(url: string): string {
  const start = url.indexOf("/", url.indexOf("://") + 3);
  if (start < 0) return "/";
  let end = url.length;
  const q = url.indexOf("?", start);
  if (q >= 0) end = q;
  const h = url.indexOf("#", start);
  if (h >= 0 && h < end) end = h;
  return url.slice(start, end);
}

/** A fixed-window counter per key. */
class RateLimiter {
  readonly #windows = new Map<string, { count: number; resetAt: number }>();
  readonly #now: () => number;
  constructor(now: () => number) {
    this.#now = now;
  }
  /** Counts one hit; throws 429 past `limit` in the current minute. */
  hit(key: string, limit: number, what: string): void {
    const now = this.#now();
    let w = this.#windows.get(key);
    if (w === undefined || w.resetAt <= now) {
      if (this.#windows.size >= 10_000) {
        for (const [k, v] of this.#windows) if (v.resetAt <= now) this.#windows.delete(k);
        if (this.#windows.size >= 10_000) this.#windows.delete(this.#windows.keys().next().value!);
      }
      w = { count: 0, resetAt: now + 60_000 };
      this.#windows.set(key, w);
    }
    w.count++;
    if (w.count > limit) {
      const retry = Math.max(1, Math.ceil((w.resetAt - now) / 1000));
      throw new HttpFailure(429, "E_REGISTRY_RATE_LIMITED", `Too many ${what} (at most ${limit} a minute); retry in ${retry} s`, {
        headers: { "retry-after": String(retry) },
        details: { limit, retryAfterSeconds: retry },
      });
    }
  }
}

function resolveLimits(given: Partial<RegistryLimits> | undefined): RegistryLimits {
  const out: Record<string, number> = { ...REGISTRY_LIMITS };
  for (const [name, value] of Object.entries(given ?? {})) {
    if (!Object.hasOwn(REGISTRY_LIMITS, name)) throw new TypeError(`Unknown registry limit "${name}"; limits are ${Object.keys(REGISTRY_LIMITS).join(", ")}`);
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) throw new TypeError(`limits.${name} must be a positive integer, got ${JSON.stringify(value)}`);
    out[name] = value;
  }
  return out as unknown as RegistryLimits;
}

/**
 * Reads a request body up to `maxBytes` (by Content-Length, and counted as it streams), within
 * `timeoutMs`.
 */
async function readBody(request: Request, maxBytes: number, timeoutMs: number): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  const tooLarge = () =>
    new HttpFailure(413, "E_REGISTRY_TOO_LARGE", `The request body is over this registry's limit of ${maxBytes} bytes`, { details: { limit: maxBytes } });
  if (declared !== null) {
    if (!/^\s*\d+\s*$/.test(declared)) throw invalid(`Content-Length ${JSON.stringify(declared.slice(0, 40))} is not a byte count`);
    if (Number(declared) > maxBytes) throw tooLarge();
  }
  if (request.body === null) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HttpFailure(408, "E_REGISTRY_REQUEST_INVALID", `The request body did not arrive within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), timeout]);
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) throw tooLarge();
      chunks.push(value);
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    if (e instanceof HttpFailure) throw e;
    throw invalid(`The request body could not be read: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    clearTimeout(timer);
  }
  if (chunks.length === 1) return chunks[0]!;
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const utf8 = new TextEncoder();

function parseJson(bytes: Uint8Array, what: string): unknown {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw invalid(`The ${what} is not UTF-8 text`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw invalid(`The ${what} is not valid JSON (${e instanceof Error ? e.message.slice(0, 200) : String(e)})`);
  }
  checkDepth(value);
  return value;
}

/**
 * Creates the registry's Hono app.
 *
 * @example
 * ```ts ignore
 * const registry = await openRegistry({ runtime, dir: ".keel/registry", baseUrl: "http://127.0.0.1:4873" });
 * const server = await runtime.serve!(registry.app.fetch, { port: 4873 });
 * ```
 * @throws {TypeError} for a base URL that is not http(s), or a bad limit.
 */
export function createRegistryApp(options: RegistryAppOptions): RegistryApp {
  const { db, blobs, signingKeys } = options;
  let base: URL;
  try {
    base = new URL(options.baseUrl);
  } catch {
    throw new TypeError(`baseUrl must be an absolute http(s) URL, got ${JSON.stringify(options.baseUrl)}`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") throw new TypeError(`baseUrl must be http(s), got ${JSON.stringify(options.baseUrl)}`);
  const baseUrl = base.href.replace(/\/+$/, "");
  const limits = resolveLimits(options.limits);
  const logger = options.logger ?? createSilentLogger();
  const now = options.now ?? Date.now;
  const downloads = createDownloadCounter(db, logger);
  const signup = options.signup ?? true;
  const publicRead = options.publicRead ?? true;
  const iterations = options.passwordIterations ?? PASSWORD_ITERATIONS;
  const rateLimiter = new RateLimiter(now);
  const publishing = new Set<string>();
  const maxPublishBody = Math.ceil(limits.maxTarballBytes / 3) * 4 + limits.maxJsonBytes;
  const keysBody = JSON.stringify(keysDocument(signingKeys));

  // --- the document cache: per package, the serialized documents of one revision ---------------
  const cache = new Map<string, CachedDocs>();
  const building = new Map<string, Promise<CachedDocs | undefined>>();
  let cachedBytes = 0;

  function evict(name: string): void {
    const entry = cache.get(name);
    if (entry !== undefined) {
      cachedBytes -= entry.size;
      cache.delete(name);
    }
  }

  async function variant(json: string): Promise<Variant> {
    const body = utf8.encode(json);
    return { body, etag: await etagOf(body) };
  }

  async function build(name: string): Promise<CachedDocs | undefined> {
    const snapshot = await db.snapshot(name);
    if (snapshot === undefined || snapshot.versions.length === 0) return undefined;
    const tags = effectiveTags(snapshot);
    const docs = buildDocuments(snapshot, baseUrl, tags);
    const [full, abbreviated] = await Promise.all([variant(docs.full), variant(docs.abbreviated)]);
    const size = full.body.byteLength + abbreviated.body.byteLength;
    return { rev: snapshot.pkg.rev, full, abbreviated, snapshot, effectiveTags: tags, size };
  }

  /** The current documents of a package; undefined when it has no live version. */
  async function documents(name: string): Promise<CachedDocs | undefined> {
    const rev = await db.rev(name);
    if (rev === undefined) return undefined;
    const hit = cache.get(name);
    if (hit !== undefined && hit.rev === rev) {
      // Most recently used last, for eviction.
      cache.delete(name);
      cache.set(name, hit);
      return hit;
    }
    const key = `${name}\0${rev}`;
    let pending = building.get(key);
    if (pending === undefined) {
      pending = build(name).finally(() => building.delete(key));
      building.set(key, pending);
    }
    const built = await pending;
    if (built === undefined) return undefined;
    if (cache.get(name)?.rev !== built.rev && built.size <= limits.cacheBytes) {
      evict(name);
      cache.set(name, built);
      cachedBytes += built.size;
      for (const [other] of cache) {
        if (cachedBytes <= limits.cacheBytes) break;
        if (other !== name) evict(other);
      }
    }
    return built;
  }

  function sendVariant(request: Request, v: Variant, contentType: string): Response {
    const headers: Record<string, string> = {
      "content-type": contentType,
      etag: v.etag,
      "cache-control": "no-cache",
      vary: "Accept, Accept-Encoding",
    };
    if (matchesEtag(request.headers.get("if-none-match"), v.etag)) return new Response(null, { status: 304, headers });
    const encodings = request.headers.get("accept-encoding") ?? "";
    if (v.body.byteLength > 1024 && /\bgzip\b/.test(encodings) && v.gzip !== undefined) {
      headers["content-encoding"] = "gzip";
      return new Response(v.gzip as Uint8Array<ArrayBuffer>, { status: 200, headers });
    }
    if (v.body.byteLength > 1024 && v.gzip === undefined && /\bgzip\b/.test(encodings)) {
      // Compressed once, in the background; this answer goes out plain.
      void gzip(v.body).then((z) => {
        v.gzip = z;
      }, () => {});
    }
    return new Response(v.body as Uint8Array<ArrayBuffer>, { status: 200, headers });
  }

  // --- authentication ----------------------------------------------------------------------------

  // The SHA-256 of tokens that exist, up to TOKEN_HASHES_KEPT (the oldest dropped first): awaiting
  // crypto.subtle's digest on every request cost Bun 85% of its authenticated-read throughput
  // (bench/registry.ts). Only the hashing is saved: the token's row is still read on every
  // request, so a revoked or expired token stops working at once.
  const tokenHashes = new Map<string, string>();

  async function identify(request: Request): Promise<Identity | undefined> {
    const auth = request.headers.get("authorization");
    if (auth === null) return undefined;
    const bearer = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth)?.[1];
    // Anything else (npm sends Basic with its login PUT) identifies nobody; routes that need a
    // token say so. Passwords are checked at login only, never per request.
    if (bearer === undefined) return undefined;
    if (!looksLikeToken(bearer)) throw new HttpFailure(401, "E_REGISTRY_UNAUTHORIZED", "The token is malformed; log in again (npm login) or create one with keel registry token create");
    const hash = tokenHashes.get(bearer) ?? await hashToken(bearer);
    const token = await db.tokenByHash(hash);
    if (token === undefined) throw new HttpFailure(401, "E_REGISTRY_UNAUTHORIZED", "The token is wrong or was revoked; log in again (npm login) or create one with keel registry token create");
    if (!tokenHashes.has(bearer)) {
      if (tokenHashes.size >= TOKEN_HASHES_KEPT) tokenHashes.delete(tokenHashes.keys().next().value!);
      tokenHashes.set(bearer, hash);
    }
    if (token.expiresAt !== null && token.expiresAt <= now()) {
      throw new HttpFailure(401, "E_REGISTRY_UNAUTHORIZED", `The token expired at ${iso(token.expiresAt)}; log in again (npm login) or create a new one`);
    }
    return { token, actor: { user: token.user, admin: token.scope === "admin" } };
  }

  function requireIdentity(identity: Identity | undefined, scope: TokenScope, what: string): Identity {
    if (identity === undefined) {
      throw new HttpFailure(401, "E_REGISTRY_UNAUTHORIZED", `${what} needs a token ("Authorization: Bearer <token>"; this registry takes no passwords but at login): log in (npm login) or set //host/:_authToken in .npmrc`);
    }
    if (RANK[identity.token.scope] < RANK[scope]) {
      throw new HttpFailure(403, "E_REGISTRY_FORBIDDEN", `${what} needs a "${scope}" token; this one is "${identity.token.scope}"`, { details: { needed: scope, scope: identity.token.scope } });
    }
    return identity;
  }

  /** A write on a package: a publish token whose package scope (if any) covers the package. */
  function requireWriter(identity: Identity | undefined, name: string, what: string): Identity {
    const who = requireIdentity(identity, "publish", what);
    const limit = who.token.packageScope;
    if (limit !== null && splitName(name)?.scope !== limit) {
      throw new HttpFailure(403, "E_REGISTRY_FORBIDDEN", `This token is limited to @${limit}/* packages and cannot act on "${name}"`, { details: { packageScope: `@${limit}`, package: name } });
    }
    return who;
  }

  function requireReader(identity: Identity | undefined): void {
    if (!publicRead) requireIdentity(identity, "read", "Reading from this registry");
  }

  // --- publish and metadata updates ----------------------------------------------------------------

  async function publish(name: string, body: Record<string, unknown>, who: Identity): Promise<Response> {
    rateLimiter.hit(`publish:${who.token.user}`, limits.publishesPerMinute, "publishes");
    const versions = body.versions;
    if (!isPlainObject(versions) || Object.keys(versions).length !== 1) {
      throw invalid('A publish body has exactly one version in "versions" (npm publish sends one)');
    }
    const [version, manifestValue] = Object.entries(versions)[0]!;
    if (!isCanonicalVersion(version)) throw new HttpFailure(400, "E_REGISTRY_MANIFEST_INVALID", `Version ${JSON.stringify(String(version).slice(0, 100))} is not a semver version like "1.0.0" (no "v", no build metadata)`);
    if (!isPlainObject(manifestValue)) throw new HttpFailure(400, "E_REGISTRY_MANIFEST_INVALID", `versions["${version}"] must be the package.json object`);
    const manifest = manifestValue;
    if (manifest.name !== name || manifest.version !== version) {
      throw new HttpFailure(400, "E_REGISTRY_MANIFEST_INVALID", `The manifest names ${JSON.stringify(manifest.name)}@${JSON.stringify(manifest.version)} but the request is for ${name}@${version}`);
    }
    const attachments = body._attachments;
    if (!isPlainObject(attachments)) throw invalid('A publish body needs "_attachments" with the tarball');
    const files = Object.keys(attachments);
    if (files.length !== 1) {
      throw invalid(`A publish carries exactly one attachment, the tarball; got ${files.length}${files.some((f) => f.endsWith(".sigstore")) ? " (provenance bundles are not supported by this registry: publish without --provenance)" : ""}`);
    }
    const file = files[0]!;
    const base = splitName(name)?.base ?? name;
    if (file !== `${name}-${version}.tgz` && file !== `${base}-${version}.tgz`) {
      throw invalid(`The attachment is named ${JSON.stringify(file.slice(0, 300))}; it must be "${name}-${version}.tgz"`);
    }
    const attachment = attachments[file];
    if (!isPlainObject(attachment) || typeof attachment.data !== "string") throw invalid(`The attachment "${file}" needs "data": the tarball in base64`);
    if (attachment.data.length > Math.ceil(limits.maxTarballBytes / 3) * 4) {
      throw new HttpFailure(413, "E_REGISTRY_TOO_LARGE", `The tarball is over this registry's limit of ${limits.maxTarballBytes} bytes`, { details: { limit: limits.maxTarballBytes } });
    }
    const bytes = base64ToBytes(attachment.data);
    if (bytes === undefined) throw invalid(`The attachment "${file}" is not valid base64`);
    if (bytes.byteLength > limits.maxTarballBytes) {
      throw new HttpFailure(413, "E_REGISTRY_TOO_LARGE", `The tarball is ${bytes.byteLength} bytes, over this registry's limit of ${limits.maxTarballBytes}`, { details: { limit: limits.maxTarballBytes } });
    }
    if (attachment.length !== undefined && attachment.length !== bytes.byteLength) {
      throw invalid(`The attachment says it is ${JSON.stringify(attachment.length)} bytes but holds ${bytes.byteLength}`);
    }
    const tags = body["dist-tags"] === undefined ? { latest: version } : body["dist-tags"];
    if (!isPlainObject(tags)) throw invalid('"dist-tags" must be an object { "<tag>": "<version>" }');
    for (const [tag, target] of Object.entries(tags)) {
      const problem = tagProblem(tag);
      if (problem !== undefined) throw invalid(`Dist-tag ${JSON.stringify(tag.slice(0, 100))} is invalid: ${problem}`);
      if (target !== version) throw invalid(`A publish may tag only the version it publishes; "${tag}" points at ${JSON.stringify(target)}`);
    }

    const { integrity, shasum } = await integrityOf(bytes);
    const dist = isPlainObject(manifest.dist) ? manifest.dist : {};
    if ((dist.integrity !== undefined && dist.integrity !== integrity) || (dist.shasum !== undefined && dist.shasum !== shasum)) {
      throw new HttpFailure(400, "E_REGISTRY_INTEGRITY", `The tarball's hash does not match dist.integrity/dist.shasum of the manifest (the upload was damaged, or the manifest is for other bytes); publish again`, {
        details: { expected: dist.integrity ?? dist.shasum, actual: integrity },
      });
    }
    const tarball = await readPackageTarball(bytes, {
      maxCompressedBytes: limits.maxTarballBytes,
      maxUnpackedBytes: limits.maxUnpackedBytes,
      maxFiles: limits.maxFiles,
    });
    const pj = tarball.packageJson;
    for (const field of MUST_AGREE) {
      if (!jsonEqual(pj[field], manifest[field])) {
        throw new HttpFailure(400, "E_REGISTRY_MANIFEST_INVALID", `The tarball's package.json disagrees with the publish request on "${field}"; publish with npm from the package folder, or repack it`, {
          details: { field },
        });
      }
    }
    if (!jsonEqual(normalizeBin(pj.bin, name), normalizeBin(manifest.bin, name))) {
      throw new HttpFailure(400, "E_REGISTRY_MANIFEST_INVALID", 'The tarball\'s package.json disagrees with the publish request on "bin"', { details: { field: "bin" } });
    }
    const paths = tarball.files.map((f) => f.path);
    let keel: KeelField | undefined;
    if (pj.keel !== undefined) keel = validateKeelField(pj.keel, paths);
    else if (options.requireKeelField === true) {
      throw new HttpFailure(400, "E_REGISTRY_MANIFEST_INVALID", 'This registry holds Keel plugins only: add a "keel" field { entry, capabilities, kernel } to package.json');
    }

    // The version document: npm's normalized manifest, less what only the registry may write.
    const cleaned: Record<string, unknown> = Object.fromEntries(Object.entries(manifest).filter(([k]) => !REGISTRY_FIELDS.has(k)));
    if (cleaned.bin !== undefined) cleaned.bin = normalizeBin(cleaned.bin, name);
    cleaned._id = `${name}@${version}`;
    cleaned._npmUser = { name: who.token.user };
    const scripts = isPlainObject(pj.scripts) ? pj.scripts : {};
    const hasInstallScript = ["preinstall", "install", "postinstall"].some((s) => typeof scripts[s] === "string") || paths.includes("binding.gyp");
    if (hasInstallScript) cleaned.hasInstallScript = true;
    if (paths.includes("npm-shrinkwrap.json")) cleaned._hasShrinkwrap = true;
    const manifestJson = JSON.stringify(cleaned);
    if (manifestJson.length > limits.maxJsonBytes) {
      throw new HttpFailure(413, "E_REGISTRY_TOO_LARGE", `The version's manifest is ${manifestJson.length} bytes of JSON, over the limit of ${limits.maxJsonBytes}`);
    }
    const abbreviated = Object.fromEntries(ABBREVIATED_FIELDS.filter((k) => cleaned[k] !== undefined).map((k) => [k, cleaned[k]]));
    const description = typeof cleaned.description === "string" ? cleaned.description.slice(0, 1000) : null;
    const keywords = Array.isArray(cleaned.keywords) ? cleaned.keywords.filter((k): k is string => typeof k === "string").slice(0, 50) : null;

    const lock = `${name}@${version}`;
    if (publishing.has(lock)) {
      throw new HttpFailure(409, "E_REGISTRY_VERSION_EXISTS", `${lock} is being published by another request right now; versions are immutable, so bump the version`);
    }
    publishing.add(lock);
    try {
      const signatures = [];
      if (signingKeys[0] !== undefined) signatures.push(await signVersion(signingKeys[0], name, version, integrity));
      const hex = base64ToHex(integrity.slice("sha512-".length));
      const blobKey = `sha512/${hex.slice(0, 2)}/${hex}.tgz`;
      await blobs.put(blobKey, bytes);
      let rev: number;
      try {
        rev = await db.publish({
          name,
          version,
          manifest: manifestJson,
          abbreviated: JSON.stringify(abbreviated),
          readme: tarball.readme === undefined ? null : tarball.readme.slice(0, README_LIMIT),
          integrity,
          shasum,
          size: bytes.byteLength,
          unpackedSize: tarball.unpackedSize,
          fileCount: tarball.files.length,
          signatures: JSON.stringify(signatures),
          blobKey,
          at: now(),
          tags: Object.keys(tags),
          description,
          keywords,
          capabilities: keel === undefined ? null : keel.capabilities,
          quality: JSON.stringify(qualitySignals(tarball)),
          maxVersions: limits.maxVersions,
        }, who.actor);
      } catch (e) {
        // Another process may have won the race with the same bytes: never delete a referenced blob.
        if (!(await db.blobReferenced(blobKey).catch(() => true))) await blobs.delete(blobKey).catch(() => false);
        throw e;
      }
      evict(name);
      logger.info(`Published ${name}@${version}`, { package: name, version, user: who.token.user });
      return new Response(JSON.stringify({ ok: true, success: true, id: name, rev: `${rev}-${fnv(name + rev)}` }), {
        status: 201,
        headers: { "content-type": JSON_TYPE },
      });
    } finally {
      publishing.delete(lock);
    }
  }

  /** `npm deprecate` (PUT of the whole document) and, with a revision, npm's single-version unpublish. */
  async function updateMetadata(name: string, body: Record<string, unknown>, who: Identity, unpublishMissing: boolean): Promise<Response> {
    const snapshot = await db.snapshot(name);
    if (snapshot === undefined || snapshot.versions.length === 0) throw notFound(`No package "${name}" is in this registry`);
    const versions = body.versions;
    if (!isPlainObject(versions)) throw invalid('The body must be the package document, with "versions"');
    const live = new Map(snapshot.versions.map((v) => [v.version, v]));
    const changes = new Map<string, string | null>();
    for (const [version, value] of Object.entries(versions)) {
      const current = live.get(version);
      if (current === undefined) throw invalid(`${name}@${version} is not published here; a new version needs its tarball in "_attachments" (npm publish)`);
      if (!isPlainObject(value) || !Object.hasOwn(value, "deprecated")) continue;
      const message = value.deprecated;
      if (message !== undefined && message !== null && typeof message !== "string") throw invalid(`versions["${version}"].deprecated must be a string`);
      const wanted = typeof message === "string" && message !== "" ? message.slice(0, 1024) : null;
      if (wanted !== current.deprecated) changes.set(version, wanted);
    }
    const gone = unpublishMissing ? snapshot.versions.filter((v) => !Object.hasOwn(versions, v.version)).map((v) => v.version) : [];
    if (changes.size > 0) await db.deprecate(name, changes, who.actor);
    if (gone.length > 0) await unpublishVersions(name, gone, who);
    evict(name);
    return Response.json({ ok: true, id: name });
  }

  async function unpublishVersions(name: string, list: readonly string[], who: Identity): Promise<void> {
    const keys = await db.unpublish(name, list, who.actor, { at: now(), windowMs: limits.unpublishWindowMs });
    evict(name);
    for (const key of keys) forgetTarball(key);
    for (const key of keys) await blobs.delete(key).catch((e: unknown) => logger.warn(`Could not delete tarball blob ${key}: ${e instanceof Error ? e.message : String(e)}`));
    logger.info(`Unpublished ${list.map((v) => `${name}@${v}`).join(", ")}`, { package: name, user: who.token.user });
  }

  async function checkRev(name: string, given: string | undefined): Promise<void> {
    const current = await db.rev(name);
    if (current === undefined) throw notFound(`No package "${name}" is in this registry`);
    const n = Number(/^(\d+)-/.exec(given ?? "")?.[1] ?? given);
    if (n !== current) {
      throw new HttpFailure(409, "E_REGISTRY_REQUEST_INVALID", `The package changed since it was read (revision ${String(given).slice(0, 40)}, now ${current}); read it again and retry`);
    }
  }

  // --- the app ----------------------------------------------------------------------------------------

  const app = new Hono<{ Variables: Vars }>();

  app.onError((e, c) => {
    const failure = failureOf(e);
    if (failure.status >= 500) logger.error(`Registry request failed: ${failure.message}`, { code: failure.code, method: c.req.method, path: rawPath(c.req.url).slice(0, 300) });
    return new Response(errorBody(failure), { status: failure.status as ContentfulStatusCode, headers: { "content-type": JSON_TYPE, ...failure.headers } });
  });

  app.notFound((c) => {
    const failure = notFound(`No route for ${c.req.method} ${rawPath(c.req.url).slice(0, 300)}`);
    return new Response(errorBody(failure), { status: 404, headers: { "content-type": JSON_TYPE } });
  });

  app.use("*", async (c, next) => {
    c.set("identity", await identify(c.req.raw));
    await next();
  });

  app.get("/-/ping", (c) => c.json({}));

  app.get("/-/whoami", (c) => {
    const who = requireIdentity(c.get("identity"), "read", "npm whoami");
    return c.json({ username: who.token.user });
  });

  app.get("/-/npm/v1/keys", () => new Response(keysBody, { headers: { "content-type": JSON_TYPE, "cache-control": "public, max-age=300" } }));

  app.post("/-/v1/login", () => {
    throw notFound("Web login is not supported by this registry; npm falls back to a username and password (npm login --auth-type=legacy), or use a token from keel registry token create");
  });

  app.post("/-/npm/v1/security/advisories/bulk", (c) => c.json({}));
  app.post("/-/npm/v1/security/audits/quick", (c) =>
    c.json({ actions: [], advisories: {}, muted: [], metadata: { vulnerabilities: { info: 0, low: 0, moderate: 0, high: 0, critical: 0 }, dependencies: 0, devDependencies: 0, optionalDependencies: 0, totalDependencies: 0 } }));

  app.get("/-/v1/search", async (c) => {
    requireReader(c.get("identity"));
    const url = new URL(c.req.url);
    const text = (url.searchParams.get("text") ?? "").slice(0, 1000);
    const sizeParam = url.searchParams.get("size");
    const fromParam = url.searchParams.get("from");
    const size = sizeParam === null ? 20 : Number(sizeParam);
    const from = fromParam === null ? 0 : Number(fromParam);
    if (!Number.isSafeInteger(size) || size < 1 || size > 250) throw invalid("size must be a whole number from 1 to 250");
    if (!Number.isSafeInteger(from) || from < 0 || from > 100_000) throw invalid("from must be a whole number from 0 to 100000");
    const words: string[] = [];
    const keywords: string[] = [];
    const capabilities: string[] = [];
    const runtimes: string[] = [];
    let scope: string | undefined;
    for (const term of text.split(/\s+/).filter((t) => t !== "").slice(0, 20)) {
      const colon = term.indexOf(":");
      const key = colon > 0 ? term.slice(0, colon) : "";
      const value = term.slice(colon + 1);
      if (key === "keywords" || key === "keyword") keywords.push(...value.split(",").filter((k) => k !== ""));
      else if (key === "scope") scope = value.replace(/^@/, "");
      else if (key === "capability" || key === "capabilities") capabilities.push(...value.split(",").filter((k) => k !== ""));
      else if (key === "runtime" || key === "runtimes") runtimes.push(...value.split(",").filter((k) => k !== ""));
      else if (["author", "maintainer", "is", "not", "boost-exact"].includes(key)) continue;
      else words.push(term);
    }
    const query = { words, keywords, capabilities, runtimes, from, size, ...(scope === undefined ? {} : { scope }) };
    const { total, hits } = await db.search(query);
    return c.json({
      objects: hits.map((hit) => ({
        package: {
          name: hit.pkg.name,
          scope: hit.pkg.scope ?? "unscoped",
          version: hit.version,
          description: hit.pkg.description ?? "",
          keywords: hit.pkg.keywords ?? [],
          date: iso(hit.publishedAt),
          links: { npm: `${baseUrl}/${escapeName(hit.pkg.name)}` },
          publisher: { username: hit.publisher },
          maintainers: [{ username: hit.pkg.owner }],
          ...(hit.pkg.capabilities === null ? {} : { keel: { capabilities: hit.pkg.capabilities } }),
        },
        score: { final: 1, detail: { quality: 1, popularity: 1, maintenance: 1 } },
        searchScore: 1,
        updated: iso(hit.pkg.modifiedAt),
      })),
      total,
      time: new Date(now()).toUTCString(),
    });
  });

  // npm login / adduser
  app.on(["PUT"], "/-/user/*", async (c) => {
    const segments = segmentsOf(rawPath(c.req.url)).slice(2);
    const [id, revMarker] = segments;
    if (id === undefined || !id.startsWith("org.couchdb.user:") || (segments.length !== 1 && !(segments.length === 3 && revMarker === "-rev"))) {
      throw notFound("No route; log in with PUT /-/user/org.couchdb.user:<name>");
    }
    const name = id.slice("org.couchdb.user:".length);
    rateLimiter.hit("login:*", limits.loginsPerMinute * 10, "logins");
    rateLimiter.hit(`login:${name}`, limits.loginsPerMinute, `logins as "${name.slice(0, 64)}"`);
    const body = parseJson(await readBody(c.req.raw, limits.maxJsonBytes, limits.bodyTimeoutMs), "login body");
    if (!isPlainObject(body)) throw invalid('A login body is { "name": "...", "password": "..." }');
    if (body.name !== undefined && body.name !== name) throw invalid(`The body names user ${JSON.stringify(body.name)} but the URL names "${name}"`);
    if (typeof body.password !== "string" || body.password === "") throw invalid('A login body needs "password"');
    const password = body.password;
    const user = await db.getUser(name);
    const at = now();
    let created = false;
    if (user === undefined) {
      if (!signup) throw new HttpFailure(403, "E_REGISTRY_FORBIDDEN", `No user "${name.slice(0, 64)}" exists and sign-up is closed on this registry; ask its admin for a token (keel registry token create)`);
      if (!USER_NAME.test(name)) throw invalid(`User name ${JSON.stringify(name.slice(0, 64))} is invalid: use 1-64 lowercase letters, digits, ".", "_" or "-"`);
      if (password.length < 8 || password.length > 1024) throw invalid("A password has 8 to 1024 characters");
      const email = typeof body.email === "string" ? body.email.slice(0, 254) : null;
      created = await db.createUser({ name, email, passwordHash: await hashPassword(password, iterations), createdAt: at });
      if (!created) throw new HttpFailure(409, "E_REGISTRY_REQUEST_INVALID", `User "${name}" was just created by another request; log in again`);
    } else if (user.passwordHash === null || password.length > 1024 || !(await verifyPassword(password, user.passwordHash))) {
      throw new HttpFailure(401, "E_REGISTRY_UNAUTHORIZED", user.passwordHash === null
        ? `User "${name}" has no password on this registry; use a token from keel registry token create`
        : `Wrong password for "${name}"`);
    }
    const token = generateToken();
    await db.createToken({
      id: Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0")).join(""),
      hash: await hashToken(token),
      user: name,
      scope: "publish",
      packageScope: null,
      createdAt: at,
      expiresAt: at + limits.loginTokenTtlMs,
      description: "npm login",
    });
    logger.info(`${created ? "Created user" : "Logged in"} ${name}`, { user: name });
    return c.json({ ok: true, id: `org.couchdb.user:${name}`, rev: `1-${fnv(name)}`, token }, 201);
  });

  app.get("/-/user/*", async (c) => {
    const [id] = segmentsOf(rawPath(c.req.url)).slice(2);
    const name = id?.startsWith("org.couchdb.user:") ? id.slice("org.couchdb.user:".length) : undefined;
    const who = requireIdentity(c.get("identity"), "read", "Reading a user");
    if (name === undefined || (name !== who.token.user && !who.actor.admin)) throw notFound("No such user, or not yours to read");
    const user = await db.getUser(name);
    if (user === undefined) throw notFound(`No user "${name}"`);
    return c.json({ _id: `org.couchdb.user:${name}`, name, email: user.email, type: "user", roles: [], date: iso(user.createdAt) });
  });

  // npm logout: DELETE /-/user/token/<token>, authenticated by that same token
  app.delete("/-/user/token/*", async (c) => {
    const who = requireIdentity(c.get("identity"), "read", "npm logout");
    const [token] = segmentsOf(rawPath(c.req.url)).slice(3);
    if (token === undefined) throw invalid("Name the token: DELETE /-/user/token/<token>");
    if (!(await db.revokeToken(await hashToken(token), who.token.user))) throw notFound("No such token of yours");
    return c.json({ ok: true });
  });

  // dist-tags: /-/package/<pkg>/dist-tags[/<tag>]
  app.all("/-/package/*", async (c) => {
    const method = c.req.method;
    const segments = segmentsOf(rawPath(c.req.url)).slice(2);
    const { name, rest } = packagePath(segments);
    if (rest[0] !== "dist-tags" || rest.length > 2) throw notFound("No route; dist-tags live at /-/package/<pkg>/dist-tags[/<tag>]");
    const tag = rest[1];
    if (tag === undefined) {
      if (method !== "GET" && method !== "HEAD") throw notFound(`No route for ${method} /-/package/<pkg>/dist-tags`);
      requireReader(c.get("identity"));
      const snapshot = await db.snapshot(name);
      if (snapshot === undefined || snapshot.versions.length === 0) throw notFound(`No package "${name}" is in this registry`);
      return c.json(snapshot.tags);
    }
    const problem = tagProblem(tag);
    if (problem !== undefined) throw invalid(`Dist-tag ${JSON.stringify(tag.slice(0, 100))} is invalid: ${problem}`);
    if (method === "PUT" || method === "POST") {
      const who = requireWriter(c.get("identity"), name, "Setting a dist-tag");
      const version = parseJson(await readBody(c.req.raw, limits.maxJsonBytes, limits.bodyTimeoutMs), "body");
      if (!isCanonicalVersion(version)) throw invalid('The body is the version as a JSON string, e.g. "1.0.0"');
      await db.setTag(name, tag, version, who.actor);
      evict(name);
      return c.json({ ok: true, id: name, "dist-tags": { [tag]: version } }, 201);
    }
    if (method === "DELETE") {
      const who = requireWriter(c.get("identity"), name, "Removing a dist-tag");
      if (tag === "latest") throw invalid('The "latest" tag cannot be removed; point it at another version instead');
      if (!(await db.removeTag(name, tag, who.actor))) throw notFound(`${name} has no dist-tag "${tag}"`);
      evict(name);
      return c.json({ ok: true });
    }
    throw notFound(`No route for ${method} /-/package/<pkg>/dist-tags/<tag>`);
  });

  // Keel: yank / restore, downloads
  app.all("/-/keel/*", async (c) => {
    const method = c.req.method;
    const segments = segmentsOf(rawPath(c.req.url)).slice(2);
    const [kind, ...rest] = segments;
    if (kind === "yank" && (method === "PUT" || method === "DELETE")) {
      const version = rest.at(-1);
      const { name, rest: after } = packagePath(rest.slice(0, -1));
      if (after.length !== 0 || version === undefined || !isCanonicalVersion(version)) throw invalid("Yank with PUT /-/keel/yank/<package>/<version>");
      const who = requireWriter(c.get("identity"), name, "Yanking a version");
      let reason: string | null = null;
      if (method === "PUT") {
        const bytes = await readBody(c.req.raw, limits.maxJsonBytes, limits.bodyTimeoutMs);
        const body = bytes.byteLength === 0 ? {} : parseJson(bytes, "body");
        if (!isPlainObject(body) || (body.reason !== undefined && typeof body.reason !== "string")) throw invalid('The body is empty or { "reason": "..." }');
        reason = typeof body.reason === "string" ? body.reason.slice(0, 1024) : "";
      }
      await db.yank(name, version, reason, who.actor, now());
      evict(name);
      logger.info(`${method === "PUT" ? "Yanked" : "Restored"} ${name}@${version}`, { package: name, version, user: who.token.user });
      return c.json({ ok: true, id: name, version, yanked: method === "PUT" });
    }
    if (kind === "downloads" && method === "GET") {
      requireReader(c.get("identity"));
      const { name, rest: after } = packagePath(rest);
      if (after.length !== 0) throw notFound("Downloads live at /-/keel/downloads/<package>");
      if ((await db.rev(name)) === undefined) throw notFound(`No package "${name}" is in this registry`);
      await downloads.flush();
      const perVersion = await db.downloads(name);
      return c.json({ package: name, total: Object.values(perVersion).reduce((a, b) => a + b, 0), versions: perVersion });
    }
    throw notFound(`No route for ${method} /-/keel/${String(kind ?? "").slice(0, 50)}`);
  });

  // The marketplace pages; private when reads are.
  app.use(`${WEB_PATH}/*`, async (c, next) => {
    requireReader(c.get("identity"));
    await next();
  });
  app.route(WEB_PATH, createWebApp({
    db,
    flushDownloads: () => downloads.flush(),
    baseUrl,
    logger,
    readPackage: async (name) => {
      const docs = await documents(name);
      return docs === undefined ? undefined : { snapshot: docs.snapshot, tags: docs.effectiveTags };
    },
  }));

  app.all("/-/*", (c) => {
    throw notFound(`No route for ${c.req.method} ${rawPath(c.req.url).slice(0, 300)}`);
  });

  // A browser at the registry's root gets the marketplace; anything else gets npm's 404.
  app.get("/", (c) => {
    if (!/\btext\/html\b/.test(c.req.header("accept") ?? "")) throw notFound("No package named; the path is /<package>");
    return c.redirect(`${new URL(baseUrl).pathname.replace(/\/+$/, "")}${WEB_PATH}/`, 302);
  });

  // Packages: documents, versions, tarballs, publish, unpublish.
  app.all("*", async (c) => {
    const method = c.req.method;
    const request = c.req.raw;
    const { name, rest } = packagePath(segmentsOf(rawPath(c.req.url)));
    const identity = c.get("identity");

    if (method === "GET" || method === "HEAD") {
      requireReader(identity);
      if (rest.length === 0) {
        if (new URL(c.req.url).searchParams.get("write") === "true") {
          const snapshot = await db.snapshot(name);
          if (snapshot === undefined || snapshot.versions.length === 0) throw notFound(`No package "${name}" is in this registry`);
          const docs = buildDocuments(snapshot, baseUrl, effectiveTags(snapshot), true);
          return new Response(docs.full, { headers: { "content-type": JSON_TYPE, "cache-control": "no-store" } });
        }
        const docs = await documents(name);
        if (docs === undefined) throw notFound(`No package "${name}" is in this registry`);
        const accept = request.headers.get("accept") ?? "";
        return accept.includes(ABBREVIATED)
          ? sendVariant(request, docs.abbreviated, ABBREVIATED)
          : sendVariant(request, docs.full, JSON_TYPE);
      }
      if (rest[0] === "-" && rest.length >= 2) return await download(name, rest.slice(1).join("/"), method === "GET", request);
      if (rest.length === 1) {
        const docs = await documents(name);
        if (docs === undefined) throw notFound(`No package "${name}" is in this registry`);
        const wanted = rest[0]!;
        const version = docs.effectiveTags[wanted] ?? wanted;
        const v = docs.snapshot.versions.find((x) => x.version === version);
        if (v === undefined) throw notFound(`${name} has no version or dist-tag "${wanted.slice(0, 100)}"`);
        return new Response(versionJson(v, baseUrl, false, true), { headers: { "content-type": JSON_TYPE, "cache-control": "no-cache" } });
      }
      throw notFound(`No route for ${method} ${rawPath(c.req.url).slice(0, 300)}`);
    }

    if (method === "PUT" && (rest.length === 0 || (rest.length === 2 && rest[0] === "-rev"))) {
      const who = requireWriter(identity, name, "Publishing");
      if (rest.length === 2) await checkRev(name, rest[1]);
      const body = parseJson(await readBody(request, maxPublishBody, limits.bodyTimeoutMs), "request body");
      if (!isPlainObject(body)) throw invalid("The body must be a JSON object (the package document)");
      if (body.name !== undefined && body.name !== name) throw invalid(`The body names ${JSON.stringify(String(body.name).slice(0, 214))} but the URL names "${name}"`);
      if (body._id !== undefined && body._id !== name) throw invalid(`The body's _id is ${JSON.stringify(String(body._id).slice(0, 214))} but the URL names "${name}"`);
      const attachments = body._attachments;
      if (isPlainObject(attachments) && Object.keys(attachments).length > 0) {
        if (rest.length !== 0) throw invalid("Publish with PUT /<package>, not with a revision");
        return await publish(name, body, who);
      }
      return await updateMetadata(name, body, who, rest.length === 2);
    }

    if (method === "DELETE" && rest.length === 2 && rest[0] === "-rev") {
      const who = requireWriter(identity, name, "Unpublishing");
      await checkRev(name, rest[1]);
      const snapshot = await db.snapshot(name);
      if (snapshot === undefined || snapshot.versions.length === 0) throw notFound(`No package "${name}" is in this registry`);
      await unpublishVersions(name, snapshot.versions.map((v) => v.version), who);
      return c.json({ ok: true, id: name });
    }

    if (method === "DELETE" && rest[0] === "-" && rest.length >= 4 && rest.at(-2) === "-rev") {
      // npm unpublish's last step: the tarball of the version it just removed.
      requireWriter(identity, name, "Deleting a tarball");
      const version = versionOfFile(name, rest.slice(1, -2).join("/"));
      if (version === undefined) throw notFound(`No tarball of ${name} has that file name`);
      const live = await db.getVersion(name, version);
      if (live !== undefined) throw new HttpFailure(403, "E_REGISTRY_FORBIDDEN", `${name}@${version} is published; unpublish it first (npm unpublish ${name}@${version})`);
      return c.json({ ok: true });
    }

    throw notFound(`No route for ${method} ${rawPath(c.req.url).slice(0, 300)}`);
  });

  /** The version a tarball file name names: `<base>-<version>.tgz` or `@scope/<base>-<version>.tgz`. */
  function versionOfFile(name: string, file: string): string | undefined {
    const base = splitName(name)?.base ?? name;
    for (const prefix of [`${base}-`, `${name}-`]) {
      if (file.startsWith(prefix) && file.endsWith(".tgz")) {
        const version = file.slice(prefix.length, -".tgz".length);
        if (isCanonicalVersion(version)) return version;
      }
    }
    return undefined;
  }

  // Recently downloaded tarballs, least recently used first. Blob keys are content hashes, so an
  // entry never goes stale; unpublish drops its keys. Measured: reading each download from disk
  // was most of a tarball request's cost (bench/registry.ts).
  const hotTarballs = new Map<string, Uint8Array>();
  let hotBytes = 0;
  function forgetTarball(key: string): void {
    const bytes = hotTarballs.get(key);
    if (bytes === undefined) return;
    hotTarballs.delete(key);
    hotBytes -= bytes.byteLength;
  }
  async function tarballBytes(key: string): Promise<Uint8Array | undefined> {
    const hot = hotTarballs.get(key);
    if (hot !== undefined) {
      hotTarballs.delete(key);
      hotTarballs.set(key, hot);
      return hot;
    }
    const bytes = await blobs.get(key);
    if (bytes === undefined || bytes.byteLength > limits.tarballCacheBytes / 4) return bytes;
    forgetTarball(key);
    hotTarballs.set(key, bytes);
    hotBytes += bytes.byteLength;
    for (const [old] of hotTarballs) {
      if (hotBytes <= limits.tarballCacheBytes) break;
      forgetTarball(old);
    }
    return bytes;
  }

  async function download(name: string, file: string, withBody: boolean, request: Request): Promise<Response> {
    const version = versionOfFile(name, file);
    if (version === undefined) throw notFound(`No tarball of ${name} is named "${file.slice(0, 300)}"`);
    const v = await db.getVersion(name, version);
    if (v === undefined) throw notFound(`${name}@${version} is not in this registry`);
    const etag = `"${v.shasum}"`;
    const headers = { "content-type": "application/octet-stream", etag, "cache-control": "public, max-age=31536000, immutable" };
    if (matchesEtag(request.headers.get("if-none-match"), etag)) return new Response(null, { status: 304, headers });
    const bytes = await tarballBytes(v.blobKey);
    if (bytes === undefined) {
      // Unpublished between the two reads: the row went first, then the blob.
      if ((await db.getVersion(name, version)) === undefined) throw notFound(`${name}@${version} is not in this registry`);
      throw new HttpFailure(500, "E_STORE_CORRUPT", `The tarball of ${name}@${version} is missing from the blob store (${blobs.name}); restore it from a backup`);
    }
    if (withBody) {
      downloads.count(name, version, now());
    }
    return new Response(bytes as Uint8Array<ArrayBuffer>, { headers: { ...headers, "content-length": String(bytes.byteLength) } });
  }

  return Object.assign(app, {
    clearCache(): void {
      cache.clear();
      cachedBytes = 0;
    },
    flushDownloads: () => downloads.flush(),
  }) as RegistryApp;
}
