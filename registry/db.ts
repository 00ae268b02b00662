/**
 * The registry's data: packages, versions (each with its full and abbreviated manifest JSON),
 * dist-tags, users, tokens and download counts, in one SQLite file through the runtime's
 * synchronous handle.
 *
 * As in the workflow store (`plugins/store-sqlite`), every write is plain prepared SQL inside one
 * `BEGIN IMMEDIATE … COMMIT` run synchronously from start to end: nothing else on this
 * connection can interleave, and the checks a write depends on (is the version taken? who owns
 * the package? how many versions has it?) are made inside the same transaction, so two racing
 * publishes of one name@version cannot both pass them, not even from two processes on one file:
 * the loser gets `E_REGISTRY_VERSION_EXISTS` from the `(name, version)` primary key. Reads that
 * are not on the hot path go through drizzle's `sqlite-proxy`; the document read and the token
 * lookup are prepared SQL too.
 *
 * The interface is asynchronous so that `db-postgres.ts` implements it on Postgres too; the rules both
 * enforce alike (version order, look-alike names, errors) are in `_db-rules.ts`, and
 * `_db-conformance.ts` is the suite both pass.
 * @module
 */

import { asc, desc, eq, sql } from "drizzle-orm";
import { drizzle, type SqliteRemoteDatabase } from "drizzle-orm/sqlite-proxy";
import { type ErrorCodeName, KeelError } from "../core/errors.ts";
import type { Runtime, SqliteHandle, SqlValue } from "../core/runtime.ts";
import { rollbackQuietly, SQLITE, sqliteProxy, sqliteResultCode } from "../core/runtime-support.ts";
import {
  batchName,
  cannotPublish,
  compareVersions,
  danglingTagProblem,
  emptyPackageProblem,
  latestOf,
  lookAlike,
  manifestProblem,
  noSuchPackage,
  noSuchVersion,
  notOwner,
  noVersionToTag,
  scopeTaken,
  tooManyVersions,
  unpublishTooLate,
  utcDay,
  versionExists,
  yankedTag,
} from "./_db-rules.ts";
import { confusableKey, splitName } from "./_names.ts";
import { APPLICATION_ID, downloads, MIGRATE_1_TO_2, SCHEMA_SQL, SCHEMA_VERSION, tokens, users } from "./schema.ts";

/** What a token may do; each includes the ones before it. */
export type TokenScope = "read" | "publish" | "admin";

/** Every {@link TokenScope}, weakest first. */
export const TOKEN_SCOPES: readonly TokenScope[] = ["read", "publish", "admin"];

/** A package's row. */
export interface PackageRecord {
  readonly name: string;
  readonly scope: string | null;
  readonly owner: string;
  readonly createdAt: number;
  readonly modifiedAt: number;
  readonly rev: number;
  readonly description: string | null;
  readonly keywords: readonly string[] | null;
  readonly capabilities: readonly string[] | null;
}

/** A version's row (unpublished versions are never returned). */
export interface VersionRecord {
  readonly name: string;
  readonly version: string;
  readonly seq: number;
  readonly manifest: string;
  readonly abbreviated: string;
  readonly readme: string | null;
  readonly integrity: string;
  readonly shasum: string;
  readonly size: number;
  readonly unpackedSize: number;
  readonly fileCount: number;
  readonly signatures: string;
  readonly blobKey: string;
  readonly publishedAt: number;
  readonly publisher: string;
  readonly deprecated: string | null;
  readonly yankedAt: number | null;
  readonly yankReason: string | null;
  /** The quality signals read at publish, as JSON (`quality.ts`); null for versions published before they were kept. */
  readonly quality: string | null;
}

/** Everything the package documents are built from, read in one transaction. */
export interface PackageSnapshot {
  readonly pkg: PackageRecord;
  /** Live versions (yanked included, unpublished not), in publish order. */
  readonly versions: readonly VersionRecord[];
  readonly tags: Readonly<Record<string, string>>;
  /** Unpublished version numbers with when (npm keeps them in `time`). */
  readonly unpublished: Readonly<Record<string, number>>;
}

/** A registry user. */
export interface UserRecord {
  readonly name: string;
  readonly email: string | null;
  readonly passwordHash: string | null;
  readonly createdAt: number;
}

/** A token's row (never the token itself: only its hash is stored). */
export interface TokenRecord {
  readonly id: string;
  readonly user: string;
  readonly scope: TokenScope;
  /** The scope (without "@") the token is limited to, or null for any package. */
  readonly packageScope: string | null;
  readonly createdAt: number;
  readonly expiresAt: number | null;
  readonly description: string | null;
}

/** Who asks for a write: ownership is checked inside the write's transaction. */
export interface Actor {
  readonly user: string;
  readonly admin: boolean;
}

/** One version to publish: everything is computed and checked by the caller but ownership and uniqueness. */
export interface PublishRecord {
  readonly name: string;
  readonly version: string;
  readonly manifest: string;
  readonly abbreviated: string;
  readonly readme: string | null;
  readonly integrity: string;
  readonly shasum: string;
  readonly size: number;
  readonly unpackedSize: number;
  readonly fileCount: number;
  readonly signatures: string;
  readonly blobKey: string;
  readonly at: number;
  /** Tags to point at this version. */
  readonly tags: readonly string[];
  readonly description: string | null;
  readonly keywords: readonly string[] | null;
  readonly capabilities: readonly string[] | null;
  /** The quality signals as JSON (`quality.ts`); null or absent when not computed. */
  readonly quality?: string | null;
  /** The most versions one package may have; publishing past it fails with `E_REGISTRY_TOO_LARGE`. */
  readonly maxVersions: number;
}

/** A search over packages. Every given filter must match. */
export interface SearchQuery {
  /** Words that must each appear in the name, description or keywords. */
  readonly words: readonly string[];
  readonly keywords: readonly string[];
  /** Scope without "@". */
  readonly scope?: string;
  /** Capability kinds or strings the latest version asks for ("net" matches "net:api.x:443"). */
  readonly capabilities: readonly string[];
  /** Runtimes ("deno", "bun", "node", "edge") the latest version declares, each required. */
  readonly runtimes?: readonly string[];
  readonly from: number;
  readonly size: number;
}

/** A search hit. */
export interface SearchHit {
  readonly pkg: PackageRecord;
  readonly version: string;
  readonly publishedAt: number;
  readonly publisher: string;
}

/**
 * The registry's storage: SQLite (`createRegistryDb`, `openRegistryDb`) or Postgres
 * (`openPostgresRegistryDb` in `db-postgres.ts`), which pass one suite (`_db-conformance.ts`).
 * Every method may fail with an `E_STORE_*` error when the database does, and on Postgres with
 * `E_REGISTRY_STORAGE` when the server cannot be reached.
 */
export interface RegistryDb {
  /** The package's revision, or undefined when no such package exists: the documents' cache key. */
  rev(name: string): Promise<number | undefined>;
  /** The package with its live versions and tags; undefined when it does not exist. */
  snapshot(name: string): Promise<PackageSnapshot | undefined>;
  getPackage(name: string): Promise<PackageRecord | undefined>;
  /** A live version (yanked or not), for download. */
  getVersion(name: string, version: string): Promise<VersionRecord | undefined>;
  /** How many versions the package has ever had (unpublished included). */
  versionCount(name: string): Promise<number>;
  /**
   * Publishes one version atomically; returns the package's new revision.
   * @throws {KeelError} `E_REGISTRY_VERSION_EXISTS` when the name@version was ever published,
   * `E_REGISTRY_FORBIDDEN` when the actor does not own the package (or its scope), or the name
   * is a look-alike of another package's, `E_REGISTRY_TOO_LARGE` past `maxVersions`.
   */
  publish(record: PublishRecord, actor: Actor): Promise<number>;
  /**
   * Publishes versions of one package, in order, as one transaction: all of them or none. The
   * result and the errors are those of calling {@link RegistryDb.publish} for each in turn.
   * Optional: {@link publishAll} falls back to one `publish` after another.
   * @throws {RangeError} when `records` is empty or names more than one package.
   */
  publishMany?(records: readonly PublishRecord[], actor: Actor): Promise<number>;
  /** Sets (a string) or clears (null) `deprecated` on versions; returns how many changed. */
  deprecate(name: string, changes: ReadonlyMap<string, string | null>, actor: Actor): Promise<number>;
  /** Points a tag at a live, unyanked version. */
  setTag(name: string, tag: string, version: string, actor: Actor): Promise<void>;
  /** Removes a tag; false when it did not exist. */
  removeTag(name: string, tag: string, actor: Actor): Promise<boolean>;
  /** Yanks (reason string) or restores (null) a version. */
  yank(name: string, version: string, reason: string | null, actor: Actor, at: number): Promise<void>;
  /**
   * Unpublishes versions: only within `windowMs` of each one's publish. Their numbers are never
   * reused; tags on them are removed and "latest" moves to the highest remaining release.
   * Returns the blob keys no longer referenced, for the caller to delete.
   */
  unpublish(name: string, versions: readonly string[], actor: Actor, options: { at: number; windowMs: number }): Promise<string[]>;
  /** True when any version row (unpublished ones included) names this blob. */
  blobReferenced(key: string): Promise<boolean>;
  /** Counts `count` (default 1) downloads of a version on the UTC day of `at`. */
  countDownload(name: string, version: string, at: number, count?: number): Promise<void>;
  /** Downloads per version, all time. */
  downloads(name: string): Promise<Record<string, number>>;
  search(query: SearchQuery): Promise<{ total: number; hits: SearchHit[] }>;
  getUser(name: string): Promise<UserRecord | undefined>;
  /** Creates a user; false when the name is taken. */
  createUser(user: UserRecord): Promise<boolean>;
  /** Stores a token's hash. */
  createToken(record: TokenRecord & { readonly hash: string }): Promise<void>;
  /** The token with this SHA-256 hex hash, expired or not. */
  tokenByHash(hash: string): Promise<TokenRecord | undefined>;
  listTokens(user: string): Promise<TokenRecord[]>;
  /** Deletes a token by id or hash; false when there was none. */
  revokeToken(idOrHash: string, user?: string): Promise<boolean>;
  /** Problems found by the database's own checks (SQLite's integrity check) and the registry's invariants; empty when sound. */
  check(): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * Publishes `records` (versions of one package, in order) through `publishMany` where the database
 * has it, else one by one; returns the package's new revision.
 */
export async function publishAll(db: RegistryDb, records: readonly PublishRecord[], actor: Actor): Promise<number> {
  if (db.publishMany !== undefined) return await db.publishMany(records, actor);
  batchName(records);
  let rev = 0;
  for (const r of records) rev = await db.publish(r, actor);
  return rev;
}

/** Any SQLite failure as a coded error that says what to do. */
function dbError(e: unknown, what: string): KeelError {
  if (KeelError.is(e)) return e;
  const detail = e instanceof Error ? e.message : String(e);
  const make = (code: ErrorCodeName, message: string) => new KeelError(code, message, { cause: e, details: { operation: what, sqlite: detail } });
  switch (sqliteResultCode(e)) {
    case SQLITE.BUSY:
    case SQLITE.LOCKED:
      return make("E_STORE_LOCKED", `The registry database is locked by another process (${what}); retry in a moment`);
    case SQLITE.READONLY:
    case SQLITE.CANTOPEN:
      return make("E_STORE_READ_ONLY", `The registry database cannot be written (${what}): make the file and its directory writable`);
    case SQLITE.FULL:
      return make("E_STORE_FULL", `The disk holding the registry database is full (${what}); nothing of this write was kept`);
    case SQLITE.NOTADB:
    case SQLITE.CORRUPT:
      return make("E_STORE_CORRUPT", `The registry database is damaged or not a SQLite file (${what}): restore it from a backup`);
    default:
      return make("E_STORE_FAILED", `The registry database could not complete a request (${what}): ${detail}`);
  }
}

function isUniqueViolation(e: unknown): boolean {
  const message = e instanceof Error ? e.message : String(e);
  return /UNIQUE constraint failed|PRIMARY KEY constraint/i.test(message);
}

const VERSION_COLUMNS =
  "name, version, seq, manifest, abbreviated, readme, integrity, shasum, size, unpacked_size, file_count, signatures, blob_key, published_at, publisher, deprecated, yanked_at, yank_reason, quality";
const PACKAGE_COLUMNS = "name, scope, owner, created_at, modified_at, rev, description, keywords, capabilities";

const SQL = {
  rev: "SELECT rev FROM packages WHERE name = ?",
  pkg: `SELECT ${PACKAGE_COLUMNS} FROM packages WHERE name = ?`,
  versions: `SELECT ${VERSION_COLUMNS} FROM versions WHERE name = ? AND unpublished_at IS NULL ORDER BY seq`,
  version: `SELECT ${VERSION_COLUMNS} FROM versions WHERE name = ? AND version = ? AND unpublished_at IS NULL`,
  unpublished: "SELECT version, unpublished_at FROM versions WHERE name = ? AND unpublished_at IS NOT NULL ORDER BY seq",
  tags: "SELECT tag, version FROM dist_tags WHERE name = ? ORDER BY tag",
  owner: "SELECT owner FROM packages WHERE name = ?",
  bump: "UPDATE packages SET rev = rev + 1, modified_at = ? WHERE name = ? RETURNING rev",
  token: "SELECT id, user, scope, package_scope, created_at, expires_at, description FROM tokens WHERE hash = ?",
  countDownload:
    "INSERT INTO downloads (name, version, day, count) VALUES (?, ?, ?, ?) ON CONFLICT (name, version, day) DO UPDATE SET count = count + excluded.count",
} as const;

function str(v: unknown): string {
  return typeof v === "string" ? v : String(v);
}
function strOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : str(v);
}
function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}
function jsonList(v: unknown): string[] | null {
  if (typeof v !== "string") return null;
  try {
    const parsed: unknown = JSON.parse(v);
    return Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === "string") : null;
  } catch {
    return null;
  }
}

function toPackage(row: unknown[]): PackageRecord {
  return {
    name: str(row[0]),
    scope: strOrNull(row[1]),
    owner: str(row[2]),
    createdAt: Number(row[3]),
    modifiedAt: Number(row[4]),
    rev: Number(row[5]),
    description: strOrNull(row[6]),
    keywords: jsonList(row[7]),
    capabilities: jsonList(row[8]),
  };
}

function toVersion(row: unknown[]): VersionRecord {
  return {
    name: str(row[0]),
    version: str(row[1]),
    seq: Number(row[2]),
    manifest: str(row[3]),
    abbreviated: str(row[4]),
    readme: strOrNull(row[5]),
    integrity: str(row[6]),
    shasum: str(row[7]),
    size: Number(row[8]),
    unpackedSize: Number(row[9]),
    fileCount: Number(row[10]),
    signatures: str(row[11]),
    blobKey: str(row[12]),
    publishedAt: Number(row[13]),
    publisher: str(row[14]),
    deprecated: strOrNull(row[15]),
    yankedAt: numOrNull(row[16]),
    yankReason: strOrNull(row[17]),
    quality: strOrNull(row[18]),
  };
}

function toToken(row: unknown[]): TokenRecord {
  return {
    id: str(row[0]),
    user: str(row[1]),
    scope: str(row[2]) as TokenScope,
    packageScope: strOrNull(row[3]),
    createdAt: Number(row[4]),
    expiresAt: numOrNull(row[5]),
    description: strOrNull(row[6]),
  };
}

export { compareVersions };

/**
 * Creates the registry's storage on an open SQLite handle: checks or creates the schema (WAL,
 * foreign keys on) and takes ownership of the handle.
 * @throws {KeelError} `E_STORE_CORRUPT` when the file is another application's database or was
 * written by a newer Keel; other `E_STORE_*` codes when it cannot be written.
 */
export function createRegistryDb(handle: SqliteHandle, options: { busyTimeoutMs?: number } = {}): Promise<RegistryDb> {
  try {
    openSchema(handle, options.busyTimeoutMs ?? 5000);
  } catch (e) {
    try {
      handle.close();
    } catch {
      // the open error is the one to report
    }
    return Promise.reject(dbError(e, "opening the registry database"));
  }
  return Promise.resolve(new SqliteRegistryDb(handle));
}

/**
 * Opens (creating when missing, with its directory) the registry database at `path`.
 * @throws {KeelError} `E_RUNTIME_UNSUPPORTED` when the runtime has no SQLite; else as {@link createRegistryDb}.
 */
export async function openRegistryDb(runtime: Runtime, path: string): Promise<RegistryDb> {
  if (runtime.openSqlite === undefined) {
    throw new KeelError("E_RUNTIME_UNSUPPORTED", `The ${runtime.name} runtime has no SQLite; run the registry on Deno or Bun`);
  }
  const full = runtime.resolvePath(path);
  const slash = full.lastIndexOf("/");
  if (slash > 0 && runtime.fs !== undefined) await runtime.fs.mkdir(full.slice(0, slash));
  let handle: SqliteHandle;
  try {
    handle = await runtime.openSqlite(full);
  } catch (e) {
    throw dbError(e, `opening "${full}"`);
  }
  return await createRegistryDb(handle);
}

function openSchema(handle: SqliteHandle, busyTimeoutMs: number): void {
  handle.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
  const [header] = handle.values(
    "SELECT (SELECT application_id FROM pragma_application_id), (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)",
  );
  const [appId, version, objects] = (header ?? [0, 0, 0]).map(Number) as [number, number, number];
  if (appId !== 0 && appId !== APPLICATION_ID) {
    throw new KeelError("E_STORE_CORRUPT", "The file is a SQLite database of another application, not a Keel registry: choose another --dir");
  }
  if (appId === 0 && objects > 0) {
    throw new KeelError("E_STORE_CORRUPT", "The file is a SQLite database that is not a Keel registry: choose another --dir, or move the file aside");
  }
  if (version > SCHEMA_VERSION) {
    throw new KeelError(
      "E_STORE_CORRUPT",
      `The registry database was written by a newer Keel (schema ${version}; this one reads up to ${SCHEMA_VERSION}): upgrade Keel`,
    );
  }
  const [mode] = handle.values("PRAGMA journal_mode = WAL")[0] ?? [];
  if (mode !== "wal" && mode !== "memory") {
    throw new KeelError("E_STORE_FAILED", `The registry database could not switch to WAL mode (it is in "${String(mode)}" mode): keep it on a local disk`);
  }
  handle.exec("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON");
  if (version === SCHEMA_VERSION && appId === APPLICATION_ID) return;
  handle.exec("BEGIN IMMEDIATE");
  try {
    // Read again under the write lock: another process may have migrated the file meanwhile.
    const current = Number(handle.values("PRAGMA user_version")[0]?.[0] ?? 0);
    if (current === 1) handle.exec(MIGRATE_1_TO_2);
    handle.exec(SCHEMA_SQL);
    handle.exec(`PRAGMA application_id = ${APPLICATION_ID}; PRAGMA user_version = ${SCHEMA_VERSION}`);
    handle.exec("COMMIT");
  } catch (e) {
    rollbackQuietly(handle);
    throw e;
  }
}

class SqliteRegistryDb implements RegistryDb {
  readonly #h: SqliteHandle;
  readonly #db: SqliteRemoteDatabase;
  #closed = false;

  constructor(handle: SqliteHandle) {
    this.#h = handle;
    this.#db = drizzle(sqliteProxy(handle, { before: () => this.#open(), mapError: (e) => dbError(e, "reading") }));
  }

  #open(): void {
    if (this.#closed) throw new KeelError("E_STORE_FAILED", "The registry database was used after close()");
  }

  /** Runs `fn` synchronously; a throw becomes a rejection, SQLite errors coded. */
  #read<T>(what: string, fn: (h: SqliteHandle) => T): Promise<T> {
    try {
      this.#open();
      return Promise.resolve(fn(this.#h));
    } catch (e) {
      return Promise.reject(dbError(e, what));
    }
  }

  /** Runs `fn` as one IMMEDIATE transaction, synchronously, so nothing interleaves with it. */
  #write<T>(what: string, fn: (h: SqliteHandle) => T): Promise<T> {
    try {
      this.#open();
      const h = this.#h;
      h.exec("BEGIN IMMEDIATE");
      try {
        const out = fn(h);
        h.exec("COMMIT");
        return Promise.resolve(out);
      } catch (e) {
        rollbackQuietly(h);
        throw e;
      }
    } catch (e) {
      return Promise.reject(dbError(e, what));
    }
  }

  /** The owner check every write makes inside its transaction. */
  #requireOwner(h: SqliteHandle, name: string, actor: Actor): void {
    const row = h.values(SQL.owner, [name])[0];
    if (row === undefined) throw noSuchPackage(name);
    if (!actor.admin && str(row[0]) !== actor.user) throw notOwner(actor.user, name, str(row[0]));
  }

  #bump(h: SqliteHandle, name: string, at: number): number {
    return Number(h.values(SQL.bump, [at, name])[0]?.[0]);
  }

  rev(name: string): Promise<number | undefined> {
    return this.#read("reading a package", (h) => {
      const row = h.values(SQL.rev, [name])[0];
      return row === undefined ? undefined : Number(row[0]);
    });
  }

  snapshot(name: string): Promise<PackageSnapshot | undefined> {
    return this.#read("reading a package", (h) => {
      // One read transaction: another process's write cannot land between the three reads.
      h.exec("BEGIN");
      try {
        const row = h.values(SQL.pkg, [name])[0];
        if (row === undefined) return undefined;
        const versions = h.values(SQL.versions, [name]).map(toVersion);
        const tags: Record<string, string> = {};
        for (const [tag, version] of h.values(SQL.tags, [name])) tags[str(tag)] = str(version);
        const unpublished: Record<string, number> = {};
        for (const [version, at] of h.values(SQL.unpublished, [name])) unpublished[str(version)] = Number(at);
        return { pkg: toPackage(row), versions, tags, unpublished };
      } finally {
        h.exec("COMMIT");
      }
    });
  }

  getPackage(name: string): Promise<PackageRecord | undefined> {
    return this.#read("reading a package", (h) => {
      const row = h.values(SQL.pkg, [name])[0];
      return row === undefined ? undefined : toPackage(row);
    });
  }

  getVersion(name: string, version: string): Promise<VersionRecord | undefined> {
    return this.#read("reading a version", (h) => {
      const row = h.values(SQL.version, [name, version])[0];
      return row === undefined ? undefined : toVersion(row);
    });
  }

  versionCount(name: string): Promise<number> {
    return this.#read("counting versions", (h) => Number(h.values("SELECT COALESCE(MAX(seq), 0) FROM versions WHERE name = ?", [name])[0]?.[0] ?? 0));
  }

  publish(r: PublishRecord, actor: Actor): Promise<number> {
    return this.#write(`publishing ${r.name}@${r.version}`, (h) => this.#publishOne(h, r, actor));
  }

  publishMany(records: readonly PublishRecord[], actor: Actor): Promise<number> {
    let name: string;
    try {
      name = batchName(records);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#write(`publishing ${records.length} versions of ${name}`, (h) => {
      let rev = 0;
      for (const r of records) rev = this.#publishOne(h, r, actor);
      return rev;
    });
  }

  #publishOne(h: SqliteHandle, r: PublishRecord, actor: Actor): number {
    const owner = h.values(SQL.owner, [r.name])[0];
    if (owner === undefined) {
      const parts = splitName(r.name);
      const scope = parts?.scope ?? null;
      if (scope !== null && !actor.admin) {
        const owners = h.values("SELECT DISTINCT owner FROM packages WHERE scope = ?", [scope]).map((x) => str(x[0]));
        if (owners.length > 0 && !owners.includes(actor.user)) throw scopeTaken(r.name, scope, owners);
      }
      const key = confusableKey(r.name);
      const clash = h.values("SELECT name FROM packages WHERE confusable = ?", [key])[0];
      if (clash !== undefined) throw lookAlike(r.name, str(clash[0]));
      h.run(
        `INSERT INTO packages (${PACKAGE_COLUMNS}, confusable) VALUES (?, ?, ?, ?, ?, 0, NULL, NULL, NULL, ?)`,
        [r.name, scope, actor.user, r.at, r.at, key],
      );
    } else if (!actor.admin && str(owner[0]) !== actor.user) {
      throw cannotPublish(actor.user, r.name, str(owner[0]));
    }
    // Rows are never deleted (an unpublished version keeps its row), so seq counts versions, through an index.
    const maxSeq = Number(h.values("SELECT COALESCE(MAX(seq), 0) FROM versions WHERE name = ?", [r.name])[0]?.[0] ?? 0);
    const count = maxSeq;
    if (count >= r.maxVersions) throw tooManyVersions(r.name, count, r.maxVersions);
    try {
      h.run(
        `INSERT INTO versions (${VERSION_COLUMNS}, unpublished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, NULL)`,
        [r.name, r.version, maxSeq + 1, r.manifest, r.abbreviated, r.readme, r.integrity, r.shasum, r.size, r.unpackedSize, r.fileCount, r.signatures, r.blobKey, r.at, actor.user, r.quality ?? null],
      );
    } catch (e) {
      if (isUniqueViolation(e)) throw versionExists(r.name, r.version);
      throw e;
    }
    for (const tag of r.tags) {
      h.run("INSERT INTO dist_tags (name, tag, version) VALUES (?, ?, ?) ON CONFLICT (name, tag) DO UPDATE SET version = excluded.version", [r.name, tag, r.version]);
    }
    if (r.tags.includes("latest")) {
      h.run("UPDATE packages SET description = ?, keywords = ?, capabilities = ? WHERE name = ?", [
        r.description,
        r.keywords === null ? null : JSON.stringify(r.keywords),
        r.capabilities === null ? null : JSON.stringify(r.capabilities),
        r.name,
      ]);
    }
    return this.#bump(h, r.name, r.at);
  }

  deprecate(name: string, changes: ReadonlyMap<string, string | null>, actor: Actor): Promise<number> {
    return this.#write(`deprecating versions of ${name}`, (h) => {
      this.#requireOwner(h, name, actor);
      let changed = 0;
      for (const [version, message] of changes) {
        changed += h.run(
          "UPDATE versions SET deprecated = ? WHERE name = ? AND version = ? AND unpublished_at IS NULL AND deprecated IS NOT ?",
          [message, name, version, message],
        ).changes;
      }
      if (changed > 0) this.#bump(h, name, Date.now());
      return changed;
    });
  }

  setTag(name: string, tag: string, version: string, actor: Actor): Promise<void> {
    return this.#write(`tagging ${name}@${version}`, (h) => {
      this.#requireOwner(h, name, actor);
      const row = h.values("SELECT yanked_at FROM versions WHERE name = ? AND version = ? AND unpublished_at IS NULL", [name, version])[0];
      if (row === undefined) throw noVersionToTag(name, version);
      if (row[0] !== null) throw yankedTag(name, version);
      h.run("INSERT INTO dist_tags (name, tag, version) VALUES (?, ?, ?) ON CONFLICT (name, tag) DO UPDATE SET version = excluded.version", [name, tag, version]);
      this.#bump(h, name, Date.now());
    });
  }

  removeTag(name: string, tag: string, actor: Actor): Promise<boolean> {
    return this.#write(`removing tag ${tag} of ${name}`, (h) => {
      this.#requireOwner(h, name, actor);
      const removed = h.run("DELETE FROM dist_tags WHERE name = ? AND tag = ?", [name, tag]).changes > 0;
      if (removed) this.#bump(h, name, Date.now());
      return removed;
    });
  }

  yank(name: string, version: string, reason: string | null, actor: Actor, at: number): Promise<void> {
    return this.#write(`${reason === null ? "restoring" : "yanking"} ${name}@${version}`, (h) => {
      this.#requireOwner(h, name, actor);
      const changed = reason === null
        ? h.run("UPDATE versions SET yanked_at = NULL, yank_reason = NULL WHERE name = ? AND version = ? AND unpublished_at IS NULL", [name, version]).changes
        : h.run("UPDATE versions SET yanked_at = ?, yank_reason = ? WHERE name = ? AND version = ? AND unpublished_at IS NULL", [at, reason, name, version]).changes;
      if (changed === 0) throw noSuchVersion(name, version);
      this.#bump(h, name, at);
    });
  }

  unpublish(name: string, list: readonly string[], actor: Actor, options: { at: number; windowMs: number }): Promise<string[]> {
    return this.#write(`unpublishing ${name}`, (h) => {
      this.#requireOwner(h, name, actor);
      const keys = new Set<string>();
      for (const version of list) {
        const row = h.values("SELECT published_at, blob_key FROM versions WHERE name = ? AND version = ? AND unpublished_at IS NULL", [name, version])[0];
        if (row === undefined) throw noSuchVersion(name, version);
        const age = options.at - Number(row[0]);
        if (age > options.windowMs) throw unpublishTooLate(name, version, age, options.windowMs);
        h.run("UPDATE versions SET unpublished_at = ? WHERE name = ? AND version = ?", [options.at, name, version]);
        h.run("DELETE FROM dist_tags WHERE name = ? AND version = ?", [name, version]);
        keys.add(str(row[1]));
      }
      const live = h.values("SELECT version FROM versions WHERE name = ? AND unpublished_at IS NULL", [name]).map((r) => str(r[0]));
      const hasLatest = h.values("SELECT 1 FROM dist_tags WHERE name = ? AND tag = 'latest'", [name]).length > 0;
      const best = hasLatest ? undefined : latestOf(live);
      if (best !== undefined) h.run("INSERT INTO dist_tags (name, tag, version) VALUES (?, 'latest', ?)", [name, best]);
      this.#bump(h, name, options.at);
      return [...keys].filter((key) => h.values("SELECT 1 FROM versions WHERE blob_key = ? AND unpublished_at IS NULL", [key]).length === 0);
    });
  }

  blobReferenced(key: string): Promise<boolean> {
    return this.#read("reading a version", (h) => h.values("SELECT 1 FROM versions WHERE blob_key = ? LIMIT 1", [key]).length > 0);
  }

  countDownload(name: string, version: string, at: number, count = 1): Promise<void> {
    return this.#write("counting a download", (h) => {
      h.run(SQL.countDownload, [name, version, utcDay(at), count]);
    });
  }

  async downloads(name: string): Promise<Record<string, number>> {
    const rows = await this.#db.select({ version: downloads.version, count: sql<number>`sum(${downloads.count})` })
      .from(downloads).where(eq(downloads.name, name)).groupBy(downloads.version);
    return Object.fromEntries(rows.map((r) => [r.version, Number(r.count)]));
  }

  search(q: SearchQuery): Promise<{ total: number; hits: SearchHit[] }> {
    return this.#read("searching", (h) => {
      const where: string[] = ["EXISTS (SELECT 1 FROM versions v WHERE v.name = p.name AND v.unpublished_at IS NULL AND v.yanked_at IS NULL)"];
      const params: SqlValue[] = [];
      const like = (s: string) => `%${s.replace(/[\\%_]/g, (c) => "\\" + c)}%`;
      for (const word of q.words) {
        where.push("(p.name LIKE ? ESCAPE '\\' OR p.description LIKE ? ESCAPE '\\' OR p.keywords LIKE ? ESCAPE '\\')");
        params.push(like(word.toLowerCase()), like(word), like(word));
      }
      for (const keyword of q.keywords) {
        where.push("EXISTS (SELECT 1 FROM json_each(p.keywords) k WHERE lower(k.value) = ?)");
        params.push(keyword.toLowerCase());
      }
      if (q.scope !== undefined) {
        where.push("p.scope = ?");
        params.push(q.scope);
      }
      for (const cap of q.capabilities) {
        where.push("EXISTS (SELECT 1 FROM json_each(p.capabilities) c WHERE c.value = ? OR c.value LIKE ? ESCAPE '\\')");
        params.push(cap, `${cap.replace(/[\\%_]/g, (c) => "\\" + c)}:%`);
      }
      for (const runtime of q.runtimes ?? []) {
        // The runtimes in the quality signals of the version a hit shows (as chosen below).
        where.push(`EXISTS (SELECT 1 FROM json_each(COALESCE((
          SELECT CASE WHEN json_valid(v.quality) THEN v.quality END FROM versions v LEFT JOIN dist_tags t ON t.name = v.name AND t.tag = 'latest'
          WHERE v.name = p.name AND v.unpublished_at IS NULL AND v.yanked_at IS NULL ORDER BY (v.version = t.version) DESC, v.seq DESC LIMIT 1
        ), '{}'), '$.runtimes') r WHERE r.value = ?)`);
        params.push(runtime);
      }
      const clause = where.join(" AND ");
      const total = Number(h.values(`SELECT count(*) FROM packages p WHERE ${clause}`, params)[0]?.[0] ?? 0);
      const exact = q.words.length === 1 ? q.words[0]!.toLowerCase() : "";
      const rows = h.values(
        `SELECT ${PACKAGE_COLUMNS.split(", ").map((c) => "p." + c).join(", ")} FROM packages p WHERE ${clause}
         ORDER BY (p.name = ? OR p.name LIKE ?) DESC, p.modified_at DESC, p.name LIMIT ? OFFSET ?`,
        [...params, exact, `%/${exact}`, q.size, q.from],
      );
      const hits: SearchHit[] = [];
      for (const row of rows) {
        const pkg = toPackage(row);
        const latest = h.values(
          `SELECT v.version, v.published_at, v.publisher FROM versions v LEFT JOIN dist_tags t ON t.name = v.name AND t.tag = 'latest'
           WHERE v.name = ? AND v.unpublished_at IS NULL AND v.yanked_at IS NULL ORDER BY (v.version = t.version) DESC, v.seq DESC LIMIT 1`,
          [pkg.name],
        )[0];
        if (latest !== undefined) hits.push({ pkg, version: str(latest[0]), publishedAt: Number(latest[1]), publisher: str(latest[2]) });
      }
      return { total, hits };
    });
  }

  async getUser(name: string): Promise<UserRecord | undefined> {
    const [row] = await this.#db.select().from(users).where(eq(users.name, name));
    return row === undefined ? undefined : { name: row.name, email: row.email, passwordHash: row.passwordHash, createdAt: row.createdAt };
  }

  createUser(user: UserRecord): Promise<boolean> {
    return this.#write(`creating user ${user.name}`, (h) =>
      h.run("INSERT INTO users (name, email, password_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING", [
        user.name,
        user.email,
        user.passwordHash,
        user.createdAt,
      ]).changes > 0);
  }

  createToken(r: TokenRecord & { readonly hash: string }): Promise<void> {
    return this.#write(`creating a token for ${r.user}`, (h) => {
      h.run(
        "INSERT INTO tokens (id, hash, user, scope, package_scope, created_at, expires_at, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [r.id, r.hash, r.user, r.scope, r.packageScope, r.createdAt, r.expiresAt, r.description],
      );
    });
  }

  tokenByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.#read("reading a token", (h) => {
      const row = h.values(SQL.token, [hash])[0];
      return row === undefined ? undefined : toToken(row);
    });
  }

  async listTokens(user: string): Promise<TokenRecord[]> {
    const rows = await this.#db.select().from(tokens).where(eq(tokens.user, user)).orderBy(desc(tokens.createdAt), asc(tokens.id));
    return rows.map((r) => ({
      id: r.id,
      user: r.user,
      scope: r.scope as TokenScope,
      packageScope: r.packageScope,
      createdAt: r.createdAt,
      expiresAt: r.expiresAt,
      description: r.description,
    }));
  }

  revokeToken(idOrHash: string, user?: string): Promise<boolean> {
    return this.#write("revoking a token", (h) =>
      user === undefined
        ? h.run("DELETE FROM tokens WHERE id = ? OR hash = ?", [idOrHash, idOrHash]).changes > 0
        : h.run("DELETE FROM tokens WHERE (id = ? OR hash = ?) AND user = ?", [idOrHash, idOrHash, user]).changes > 0);
  }

  check(): Promise<string[]> {
    return this.#read("checking", (h) => {
      const out = h.values("PRAGMA integrity_check").map((r) => str(r[0])).filter((s) => s !== "ok");
      out.push(...h.values("PRAGMA foreign_key_check").map((r) => `foreign key: ${r.map(String).join(" ")}`));
      for (const [name, tag, version] of h.values(
        "SELECT t.name, t.tag, t.version FROM dist_tags t LEFT JOIN versions v ON v.name = t.name AND v.version = t.version AND v.unpublished_at IS NULL WHERE v.version IS NULL",
      )) out.push(danglingTagProblem(str(name), str(tag), str(version)));
      for (const [id, manifest, abbreviated] of h.values("SELECT name || '@' || version, manifest, abbreviated FROM versions")) {
        const problem = manifestProblem(str(id), str(manifest), str(abbreviated));
        if (problem !== undefined) out.push(problem);
      }
      for (const [name] of h.values("SELECT p.name FROM packages p WHERE NOT EXISTS (SELECT 1 FROM versions v WHERE v.name = p.name)")) {
        out.push(emptyPackageProblem(str(name)));
      }
      return out;
    });
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#h.close();
      } catch (e) {
        return Promise.reject(dbError(e, "closing"));
      }
    }
    return Promise.resolve();
  }
}
