/**
 * A client for an npm-protocol registry (Keel's own, or any that signs versions as npm does),
 * as `keel add` uses it: package documents, signing keys, tarballs; version resolution; and the
 * integrity and signature checks every download passes before anything is unpacked.
 *
 * Web-standard only (`fetch`, `crypto.subtle`), so it runs on Deno, Bun and edge hosts.
 *
 * ## Trust
 *
 * A tarball is accepted when its sha512 equals the version's `dist.integrity` and one of the
 * version's `dist.signatures` is a valid ECDSA P-256 signature over
 * `${name}@${version}:${integrity}` by a key from the same registry's `/-/npm/v1/keys`. Those keys
 * are trusted on first use: nothing outside the registry vouches for them, so a registry that
 * lies about its keys can sign anything. What the signature adds over the integrity hash is
 * that a mirror or cache between you and the registry cannot swap a tarball *and* its hash.
 * `keel.lock` records the keyid each plugin was verified with, so a later change of key is
 * reported when the plugin is installed again or upgraded.
 * @module
 */

import { canParse, compare, format, parse, satisfies, tryParseRange } from "std-semver";
import { errorMessage, type ErrorCodeName, KeelError } from "../core/errors.ts";
import { verifyVersionSignature } from "./signing.ts";
import { integrityOf } from "./tarball.ts";

/** A package name as npm spells it: lowercase, optionally scoped. */
const NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;
const MiB = 1024 * 1024;

/** `dist` of a version document. */
export interface VersionDist {
  /** Subresource-integrity string; Keel requires a `sha512-` one. */
  readonly integrity?: string;
  readonly shasum?: string;
  /** Where the tarball is. */
  readonly tarball: string;
  /** Registry signatures over `${name}@${version}:${integrity}`. */
  readonly signatures?: readonly { readonly keyid: string; readonly sig: string }[];
}

/** One version of a package document (its package.json, plus what the registry adds). */
export interface VersionDocument {
  readonly name: string;
  readonly version: string;
  readonly dist: VersionDist;
  /** Set by `npm deprecate`: the version still installs, with a warning. */
  readonly deprecated?: string;
  /** Set where a registry lists a yanked version (Keel's `?write=true` and per-version documents). */
  readonly yanked?: boolean;
  readonly [field: string]: unknown;
}

/** A full package document (`GET /<name>`). */
export interface Packument {
  readonly name: string;
  readonly "dist-tags": Readonly<Record<string, string>>;
  readonly versions: Readonly<Record<string, VersionDocument>>;
  /** Publish times by version (and `created`, `modified`). */
  readonly time?: Readonly<Record<string, string>>;
  /** Keel's registry: versions yanked, which `versions` leaves out. */
  readonly yanked?: Readonly<Record<string, { readonly reason: string | null; readonly time: string }>>;
}

/** One key of `/-/npm/v1/keys`. */
export interface RegistryKey {
  readonly keyid: string;
  /** Base64 SPKI DER of an ECDSA P-256 public key. */
  readonly key: string;
  /** ISO time after which the key signs nothing new, or null. */
  readonly expires: string | null;
}

/** Options for {@link createRegistryClient}. */
export interface RegistryClientOptions {
  /** The registry's URL, e.g. "http://127.0.0.1:4873" (a trailing slash is ignored). */
  readonly url: string;
  /** A token sent as `Authorization: Bearer`, only to the registry's own origin. */
  readonly token?: string;
  /** The fetch to use; default the global one. */
  readonly fetch?: typeof fetch;
  /** The largest tarball accepted, in bytes. Default 10 MiB, the registry's own default limit. */
  readonly maxTarballBytes?: number;
  /** The largest package document accepted, in bytes. Default 32 MiB. */
  readonly maxDocumentBytes?: number;
  /** How long one request may take. Default 60 000 ms. */
  readonly timeoutMs?: number;
}

/** Talks to one registry. */
export interface RegistryClient {
  /** The registry's URL, without a trailing slash. */
  readonly url: string;
  /** The largest tarball this client downloads. */
  readonly maxTarballBytes: number;
  /**
   * The full package document.
   * @throws {KeelError} `E_REGISTRY_NOT_FOUND`, `E_REGISTRY_UNAUTHORIZED`, `E_REGISTRY_FORBIDDEN`,
   *   `E_REGISTRY_UNREACHABLE` (no answer, a server error, or an answer that is not a package
   *   document), `E_REGISTRY_TOO_LARGE`, `E_REGISTRY_REQUEST_INVALID` (a malformed name)
   */
  packument(name: string): Promise<Packument>;
  /**
   * One version's document (`GET /<name>/<version>`), which a registry also answers for a yanked
   * version. Same errors as {@link RegistryClient.packument}.
   */
  versionDocument(name: string, version: string): Promise<VersionDocument>;
  /**
   * The registry's signing keys; none when it publishes none (404).
   * @throws {KeelError} `E_REGISTRY_UNREACHABLE`, `E_REGISTRY_UNAUTHORIZED`
   */
  keys(): Promise<RegistryKey[]>;
  /**
   * A tarball's bytes, at most `maxTarballBytes`.
   * @throws {KeelError} `E_REGISTRY_NOT_FOUND`, `E_REGISTRY_UNREACHABLE`, `E_REGISTRY_TOO_LARGE`,
   *   `E_REGISTRY_UNAUTHORIZED`
   */
  tarball(url: string): Promise<Uint8Array>;
}

/** Throws unless `name` is a package name npm accepts (lowercase, optionally `@scope/`). */
export function checkPackageName(name: string): void {
  if (typeof name !== "string" || name.length > 214 || !NAME.test(name)) {
    throw new KeelError(
      "E_REGISTRY_REQUEST_INVALID",
      `${JSON.stringify(String(name).slice(0, 100))} is not a package name; write it as npm does, e.g. "@acme/plugin" or "plugin" (lowercase)`,
      { details: { name: String(name).slice(0, 214) } },
    );
  }
}

/** The path segment of a package: `@scope%2fname` for scoped names. */
function escapeName(name: string): string {
  return name.startsWith("@") ? `@${encodeURIComponent(name.slice(1))}` : encodeURIComponent(name);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Creates a client for the registry at `url`.
 * @throws {TypeError} When `url` is not an http(s) URL.
 * @example
 * ```ts
 * import { createRegistryClient } from "./client.ts";
 * const client = createRegistryClient({ url: "http://127.0.0.1:4873/" });
 * if (client.url !== "http://127.0.0.1:4873") throw new Error("unreachable");
 * ```
 */
export function createRegistryClient(options: RegistryClientOptions): RegistryClient {
  let base: URL;
  try {
    base = new URL(options.url);
  } catch {
    throw new TypeError(`A registry URL must be an http(s) URL, got ${JSON.stringify(options.url)}`);
  }
  if ((base.protocol !== "http:" && base.protocol !== "https:") || base.search !== "" || base.hash !== "") {
    throw new TypeError(`A registry URL must be an http(s) URL without query or fragment, got ${JSON.stringify(options.url)}`);
  }
  const url = base.href.replace(/\/+$/, "");
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const maxTarballBytes = options.maxTarballBytes ?? 10 * MiB;
  const maxDocumentBytes = options.maxDocumentBytes ?? 32 * MiB;
  const timeoutMs = options.timeoutMs ?? 60_000;
  for (const [what, n] of [["maxTarballBytes", maxTarballBytes], ["maxDocumentBytes", maxDocumentBytes], ["timeoutMs", timeoutMs]] as const) {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`${what} must be a positive integer, got ${String(n)}`);
  }

  async function request(target: string, what: string, accept: string): Promise<Response> {
    const headers: Record<string, string> = { accept };
    // A token goes only where it was issued: a tarball URL may point anywhere.
    if (options.token !== undefined && new URL(target).origin === base.origin) headers.authorization = `Bearer ${options.token}`;
    try {
      return await doFetch(target, { headers, redirect: "follow", signal: AbortSignal.timeout(timeoutMs) });
    } catch (e) {
      const timedOut = e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError");
      throw new KeelError(
        "E_REGISTRY_UNREACHABLE",
        timedOut
          ? `The registry at ${url} did not answer ${what} within ${timeoutMs} ms; check that it runs, or retry`
          : `Cannot reach the registry at ${url} for ${what} (${errorMessage(e)}); check the URL (--registry or KEEL_REGISTRY) and that the registry runs`,
        { cause: e, details: { url: target } },
      );
    }
  }

  /** Turns an error answer into a coded error, with the registry's own message when it sent one. */
  async function failure(response: Response, what: string, notFound: string): Promise<KeelError> {
    let said = "";
    try {
      const body = JSON.parse(new TextDecoder().decode(await readCapped(response, 64 * 1024, what))) as unknown;
      if (isRecord(body) && typeof body.error === "string") said = body.error.slice(0, 500);
    } catch {
      // Not JSON, or too long: the status says enough.
    }
    const details = { url: response.url, status: response.status };
    const more = said === "" ? "" : ` (the registry said: ${said})`;
    const coded = (code: ErrorCodeName, message: string) => new KeelError(code, message + more, { details });
    switch (response.status) {
      case 404:
      case 410:
        return coded("E_REGISTRY_NOT_FOUND", notFound);
      case 401:
        return coded("E_REGISTRY_UNAUTHORIZED", `The registry at ${url} refused ${what} without a valid token; set KEEL_REGISTRY_TOKEN to a read token (keel registry token create --scope read)`);
      case 403:
        return coded("E_REGISTRY_FORBIDDEN", `The registry at ${url} does not allow ${what} with this token; use a token whose scope covers the package`);
      case 429:
        return coded("E_REGISTRY_RATE_LIMITED", `The registry at ${url} is rate limiting ${what}; retry in a minute`);
      default:
        return response.status >= 500
          ? coded("E_REGISTRY_UNREACHABLE", `The registry at ${url} failed ${what} with HTTP ${response.status}; retry later, or ask its operator`)
          : coded("E_REGISTRY_REQUEST_INVALID", `The registry at ${url} refused ${what} with HTTP ${response.status}`);
    }
  }

  async function readCapped(response: Response, max: number, what: string): Promise<Uint8Array> {
    const declared = Number(response.headers.get("content-length"));
    const tooLarge = () =>
      new KeelError("E_REGISTRY_TOO_LARGE", `The registry's answer to ${what} is over ${max} bytes; raise the client's limit if you trust it`, {
        details: { limit: max },
      });
    if (Number.isFinite(declared) && declared > max) {
      await response.body?.cancel().catch(() => {});
      throw tooLarge();
    }
    if (response.body === null) return new Uint8Array(0);
    const reader = response.body.getReader();
    const chunks: Uint8Array[] = [];
    let total = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.length;
        if (total > max) {
          await reader.cancel().catch(() => {});
          throw tooLarge();
        }
        chunks.push(value);
      }
    } catch (e) {
      if (KeelError.is(e)) throw e;
      throw new KeelError("E_REGISTRY_UNREACHABLE", `The registry's answer to ${what} broke off (${errorMessage(e)}); retry`, { cause: e });
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const chunk of chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }

  async function getJson(path: string, what: string, notFound: string): Promise<unknown> {
    const response = await request(url + path, what, "application/json");
    if (!response.ok) throw await failure(response, what, notFound);
    const bytes = await readCapped(response, maxDocumentBytes, what);
    try {
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new KeelError("E_REGISTRY_UNREACHABLE", `The registry at ${url} answered ${what} with something that is not JSON; is ${url} an npm registry?`, { cause: e });
    }
  }

  function notDocument(what: string, why: string): KeelError {
    return new KeelError("E_REGISTRY_UNREACHABLE", `The registry at ${url} answered ${what} with a document that ${why}; is ${url} an npm registry?`);
  }

  function checkVersionDocument(value: unknown, name: string, version: string, what: string): VersionDocument {
    if (!isRecord(value)) throw notDocument(what, `has no object for version ${version}`);
    if (value.name !== name || value.version !== version) throw notDocument(what, `names ${JSON.stringify(value.name)}@${JSON.stringify(value.version)} for ${name}@${version}`);
    const dist = value.dist;
    if (!isRecord(dist) || typeof dist.tarball !== "string") throw notDocument(what, `has no dist.tarball for ${name}@${version}`);
    return value as unknown as VersionDocument;
  }

  return {
    url,
    maxTarballBytes,
    async packument(name) {
      checkPackageName(name);
      const what = `the package document of "${name}"`;
      const doc = await getJson(`/${escapeName(name)}`, what, `Package "${name}" is not in the registry at ${url}; check the name (and --registry)`);
      if (!isRecord(doc) || doc.name !== name) throw notDocument(what, `is not the package document of "${name}"`);
      if (!isRecord(doc.versions)) throw notDocument(what, `has no "versions"`);
      if (doc["dist-tags"] !== undefined && !isRecord(doc["dist-tags"])) throw notDocument(what, `has a malformed "dist-tags"`);
      for (const [version, value] of Object.entries(doc.versions)) checkVersionDocument(value, name, version, what);
      return { ...doc, "dist-tags": (doc["dist-tags"] ?? {}) as Record<string, string> } as unknown as Packument;
    },
    async versionDocument(name, version) {
      checkPackageName(name);
      const what = `the document of ${name}@${version}`;
      const doc = await getJson(`/${escapeName(name)}/${encodeURIComponent(version)}`, what, `${name}@${version} is not in the registry at ${url}; check the version`);
      return checkVersionDocument(doc, name, version, what);
    },
    async keys() {
      const what = "its signing keys";
      const response = await request(`${url}/-/npm/v1/keys`, what, "application/json");
      if (response.status === 404) {
        await response.body?.cancel().catch(() => {});
        return [];
      }
      if (!response.ok) throw await failure(response, what, "");
      let doc: unknown;
      try {
        doc = JSON.parse(new TextDecoder().decode(await readCapped(response, 1 * MiB, what)));
      } catch (e) {
        if (KeelError.is(e)) throw e;
        throw notDocument(what, "is not JSON");
      }
      if (!isRecord(doc) || !Array.isArray(doc.keys)) throw notDocument(what, 'has no "keys" list');
      return doc.keys.filter((k): k is Record<string, unknown> => isRecord(k) && typeof k.keyid === "string" && typeof k.key === "string")
        .map((k) => ({ keyid: k.keyid as string, key: k.key as string, expires: typeof k.expires === "string" ? k.expires : null }));
    },
    async tarball(target) {
      let parsed: URL;
      try {
        parsed = new URL(target, url + "/");
      } catch {
        throw new KeelError("E_REGISTRY_UNREACHABLE", `The registry gave a tarball URL that is not a URL: ${JSON.stringify(String(target).slice(0, 200))}`);
      }
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
        throw new KeelError("E_REGISTRY_UNREACHABLE", `The registry gave a tarball URL that is not http(s): ${JSON.stringify(parsed.href.slice(0, 200))}`);
      }
      const what = `the tarball ${parsed.href}`;
      const response = await request(parsed.href, what, "application/octet-stream");
      if (!response.ok) throw await failure(response, what, `The tarball ${parsed.href} is not in the registry; the version may have been unpublished`);
      return await readCapped(response, maxTarballBytes, what);
    },
  };
}

// -------------------------------------------------------------------------------------------------
// Resolution

/** How {@link resolveVersion} chose. */
export interface ResolvedVersion {
  readonly version: string;
  /**
   * The version's document from the package document; undefined for a yanked version pinned
   * exactly (the package document leaves yanked versions out: fetch it with
   * {@link RegistryClient.versionDocument}).
   */
  readonly document: VersionDocument | undefined;
  /** "exact" (a version), "range" (a semver range) or "tag" (a dist-tag). */
  readonly via: "exact" | "range" | "tag";
  readonly yanked: boolean;
  /** The deprecation message, when the version is deprecated (it installs, with a warning). */
  readonly deprecated?: string;
}

function isYanked(packument: Packument, version: string): boolean {
  return packument.versions[version]?.yanked === true ||
    (packument.yanked !== undefined && Object.hasOwn(packument.yanked, version));
}

function available(packument: Packument): string {
  const list = Object.keys(packument.versions).filter((v) => !isYanked(packument, v));
  if (list.length === 0) return "it has no installable versions";
  const shown = list.length > 10 ? [...list.slice(0, 3), "…", ...list.slice(-6)] : list;
  return `available: ${shown.join(", ")}; tags: ${Object.entries(packument["dist-tags"]).map(([t, v]) => `${t} -> ${v}`).join(", ") || "none"}`;
}

/**
 * Picks the version `spec` names in a package document, as npm does:
 * - an exact version ("1.2.3") picks that version, **even a yanked one** (pinning exactly is
 *   how a yanked version is still installed on purpose; {@link ResolvedVersion.yanked} says so);
 * - a dist-tag ("latest", the default, or "beta") picks what it points at;
 * - a semver range ("^1.2", "~1.0.3", ">=1 <3", "1") picks the `latest` tag when it satisfies
 *   the range, else the highest satisfying version, never a yanked one, and a deprecated one
 *   only when nothing else satisfies (it is returned with `deprecated` set, for a warning).
 *   Prereleases match only ranges that name a prerelease of the same version.
 *
 * @throws {KeelError} `E_REGISTRY_NOT_FOUND` when nothing matches (the message lists what is
 *   available); `E_REGISTRY_REQUEST_INVALID` for a spec that is neither.
 * @example
 * ```ts
 * import { resolveVersion, type Packument } from "./client.ts";
 * const v = (version: string) => ({ name: "p", version, dist: { tarball: `http://r/p-${version}.tgz` } });
 * const doc: Packument = { name: "p", "dist-tags": { latest: "1.1.0" }, versions: { "1.0.0": v("1.0.0"), "1.1.0": v("1.1.0"), "2.0.0": v("2.0.0") } };
 * if (resolveVersion(doc, "^1").version !== "1.1.0") throw new Error("unreachable");
 * if (resolveVersion(doc, ">=2").version !== "2.0.0") throw new Error("unreachable");
 * if (resolveVersion(doc).version !== "1.1.0") throw new Error("unreachable");
 * ```
 */
export function resolveVersion(packument: Packument, spec = "latest"): ResolvedVersion {
  const wanted = spec.trim() === "" ? "latest" : spec.trim();
  const name = packument.name;
  const result = (version: string, via: ResolvedVersion["via"]): ResolvedVersion => {
    const document = packument.versions[version];
    const deprecated = document?.deprecated;
    return {
      version,
      document,
      via,
      yanked: isYanked(packument, version),
      ...(typeof deprecated === "string" && deprecated !== "" ? { deprecated } : {}),
    };
  };

  if (canParse(wanted) && !/^[v=]/.test(wanted) && /^\d/.test(wanted)) {
    const version = format(parse(wanted));
    if (packument.versions[version] !== undefined || isYanked(packument, version)) return result(version, "exact");
    throw new KeelError("E_REGISTRY_NOT_FOUND", `${name}@${version} is not in the registry; ${available(packument)}`, {
      details: { name, spec: wanted },
    });
  }

  const range = tryParseRange(wanted);
  if (range === undefined) {
    if (!/^[A-Za-z][A-Za-z0-9._-]{0,127}$/.test(wanted)) {
      throw new KeelError("E_REGISTRY_REQUEST_INVALID", `${JSON.stringify(wanted.slice(0, 100))} is neither a version, a semver range nor a dist-tag; write e.g. ${name}@1.2.3, ${name}@^1 or ${name}@latest`, {
        details: { name, spec: wanted },
      });
    }
    const version = packument["dist-tags"][wanted];
    if (version === undefined || packument.versions[version] === undefined || isYanked(packument, version)) {
      throw new KeelError("E_REGISTRY_NOT_FOUND", `${name} has no dist-tag "${wanted}"; ${available(packument)}`, {
        details: { name, spec: wanted },
      });
    }
    return result(version, "tag");
  }

  const candidates = Object.keys(packument.versions).filter((v) => canParse(v) && !isYanked(packument, v))
    .filter((v) => satisfies(parse(v), range));
  if (candidates.length === 0) {
    throw new KeelError("E_REGISTRY_NOT_FOUND", `No version of ${name} satisfies "${wanted}"; ${available(packument)}`, {
      details: { name, spec: wanted },
    });
  }
  const live = candidates.filter((v) => !packument.versions[v]?.deprecated);
  const pool = live.length > 0 ? live : candidates;
  const latest = packument["dist-tags"].latest;
  if (latest !== undefined && pool.includes(latest)) return result(latest, "range");
  const best = pool.map((v) => parse(v)).sort((a, b) => compare(b, a))[0]!;
  return result(format(best), "range");
}

// -------------------------------------------------------------------------------------------------
// Verification

/** What {@link verifyTarball} proved. */
export interface VerifiedTarball {
  /** The `sha512-...` integrity the bytes have (and the registry signed). */
  readonly integrity: string;
  /** The key whose signature verified. */
  readonly keyid: string;
}

/** Options for {@link verifyTarball}. */
export interface VerifyOptions {
  /** The version's publish time (ISO); a signature by a key that expired before it is refused. */
  readonly publishedAt?: string;
}

/**
 * Checks downloaded bytes against their version document before anything is unpacked: the
 * sha512 must equal `dist.integrity`, and a registry signature over
 * `${name}@${version}:${integrity}` must verify with one of `keys` (the registry's
 * `/-/npm/v1/keys`, trusted on first use; see the module docs).
 *
 * @throws {KeelError} `E_REGISTRY_INTEGRITY` when the version has no sha512 integrity or the
 *   bytes do not match it; `E_REGISTRY_SIGNATURE` when no signature, or none by a known key, or
 *   none that verifies.
 */
export async function verifyTarball(
  bytes: Uint8Array,
  version: Pick<VersionDocument, "name" | "version" | "dist">,
  keys: readonly RegistryKey[],
  options: VerifyOptions = {},
): Promise<VerifiedTarball> {
  const id = `${version.name}@${version.version}`;
  const declared = typeof version.dist.integrity === "string" ? version.dist.integrity : "";
  const sha512 = declared.split(/\s+/).filter((h) => h.startsWith("sha512-")).map((h) => h.replace(/\?.*$/, ""));
  if (sha512.length === 0) {
    throw new KeelError("E_REGISTRY_INTEGRITY", `${id} has no sha512 integrity in its dist (only ${JSON.stringify(declared || version.dist.shasum || "nothing")}); Keel installs only what it can check: ask the registry to publish sha512 hashes`, {
      details: { package: version.name, version: version.version },
    });
  }
  const { integrity } = await integrityOf(bytes);
  if (!sha512.includes(integrity)) {
    throw new KeelError("E_REGISTRY_INTEGRITY", `The tarball of ${id} does not match its integrity: expected ${sha512[0]}, got ${integrity}. It was damaged or tampered with on the way; nothing was installed. Retry, and report it to the registry's operator if it persists`, {
      details: { package: version.name, version: version.version, expected: sha512[0], actual: integrity },
    });
  }
  const signatures = Array.isArray(version.dist.signatures) ? version.dist.signatures : [];
  const valid = signatures.filter((s) => typeof s === "object" && s !== null && typeof s.keyid === "string" && typeof s.sig === "string");
  if (valid.length === 0) {
    throw new KeelError("E_REGISTRY_SIGNATURE", `${id} has no registry signature; Keel installs only signed versions: use a registry that signs them (Keel's does)`, {
      details: { package: version.name, version: version.version },
    });
  }
  const published = options.publishedAt === undefined ? NaN : Date.parse(options.publishedAt);
  const usable = keys.filter((k) => k.expires === null || Number.isNaN(published) || published < Date.parse(k.expires));
  for (const signature of valid) {
    if (await verifyVersionSignature(usable, version.name, version.version, declared, signature)) {
      return { integrity, keyid: signature.keyid };
    }
  }
  const known = valid.filter((s) => usable.some((k) => k.keyid === s.keyid));
  throw new KeelError(
    "E_REGISTRY_SIGNATURE",
    known.length === 0
      ? `${id} is signed by ${valid.map((s) => `"${s.keyid}"`).join(", ")}, which the registry's keys (/-/npm/v1/keys: ${keys.map((k) => `"${k.keyid}"`).join(", ") || "none"}) do not include; nothing was installed. The registry's keys may have changed: ask its operator`
      : `The registry signature of ${id} does not verify: the version's integrity or signature was altered; nothing was installed. Report it to the registry's operator`,
    { details: { package: version.name, version: version.version, keyids: valid.map((s) => s.keyid) } },
  );
}

/** `@scope/name` as npm writes it in a URL path (`@scope%2fname`); unscoped names as they are. */
export function escapePackageName(name: string): string {
  return name.startsWith("@") ? `@${encodeURIComponent(name.slice(1))}` : encodeURIComponent(name);
}

/** What npm sends to publish one version: `PUT <path>` with `body` as JSON. */
export interface PublishDocument {
  /** `/<escaped name>`. */
  readonly path: string;
  readonly body: Record<string, unknown>;
  readonly integrity: string;
  readonly shasum: string;
}

/**
 * The npm publish request for one version: its manifest (the package.json plus `_id` and `dist`),
 * the dist-tag to set, and the tarball as a base64 attachment.
 */
export async function publishDocument(
  packageJson: Readonly<Record<string, unknown>> & { readonly name: string; readonly version: string },
  tarball: Uint8Array,
  options: { readonly tag?: string; readonly tarballUrl?: string } = {},
): Promise<PublishDocument> {
  const { name, version } = packageJson;
  const { integrity, shasum } = await integrityOf(tarball);
  let binary = "";
  for (let i = 0; i < tarball.length; i += 0x8000) binary += String.fromCharCode(...tarball.subarray(i, i + 0x8000));
  const dist = options.tarballUrl === undefined ? { integrity, shasum } : { integrity, shasum, tarball: options.tarballUrl };
  return {
    path: `/${escapePackageName(name)}`,
    integrity,
    shasum,
    body: {
      _id: name,
      name,
      "dist-tags": { [options.tag ?? "latest"]: version },
      versions: { [version]: { ...packageJson, _id: `${name}@${version}`, dist } },
      _attachments: { [`${name}-${version}.tgz`]: { content_type: "application/octet-stream", data: btoa(binary), length: tarball.byteLength } },
    },
  };
}
