/**
 * The registry's data on Postgres: the same {@link RegistryDb} as `db.ts`, for a registry that
 * outgrows one SQLite file or runs as several processes, through postgres.js (a pool) and drizzle's
 * `postgres-js` adapter.
 *
 * Every write is one transaction that first locks the package's row (`SELECT … FOR UPDATE`), so
 * writes to one package run one after another and the checks they depend on (who owns it, how
 * many versions it has) hold until commit, from any number of processes. A new package's row is
 * inserted with `ON CONFLICT DO NOTHING`, under an advisory lock per scope, so two racing creators
 * of one name, one scope or two look-alike names cannot both pass; the `(name, version)` primary
 * key makes the loser of two racing publishes of one name@version get `E_REGISTRY_VERSION_EXISTS`.
 * Reads that need several queries (a package's snapshot, a search) run them in one
 * `REPEATABLE READ` transaction, pipelined. Serialization failures and deadlocks are retried a few
 * times before they surface as `E_STORE_LOCKED`.
 *
 * The tables live in one Postgres schema (`public` unless told otherwise), named by the
 * connection's `search_path`, with their owner and version in `keel_meta`.
 * @module
 */

import postgres from "postgres";
import { asc, desc, eq, sql as dsql } from "drizzle-orm";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { type ErrorCodeName, KeelError } from "../core/errors.ts";
import {
  batchName,
  cannotPublish,
  danglingTagProblem,
  emptyPackageProblem,
  latestOf,
  lookAlike,
  manifestProblem,
  noSuchPackage,
  noSuchVersion,
  notOwner,
  noVersionToTag,
  runtimesOf,
  scopeTaken,
  tooManyVersions,
  unpublishTooLate,
  utcDay,
  versionExists,
  yankedTag,
} from "./_db-rules.ts";
import { maskUrl } from "./_mask-url.ts";
import { confusableKey, splitName } from "./_names.ts";
import type {
  Actor,
  PackageRecord,
  PackageSnapshot,
  PublishRecord,
  RegistryDb,
  SearchHit,
  SearchQuery,
  TokenRecord,
  TokenScope,
  UserRecord,
  VersionRecord,
} from "./db.ts";
import { SCHEMA_VERSION } from "./schema.ts";
import { PG_APPLICATION, PG_SCHEMA_SQL, PG_TABLES, pgDownloads, pgTokens, pgUsers } from "./schema-pg.ts";

/** Options for {@link openPostgresRegistryDb}. */
export interface PostgresRegistryOptions {
  /** The Postgres schema holding the tables; created when missing. Default "public". */
  readonly schema?: string;
  /** The most connections the pool opens. Default 10. */
  readonly max?: number;
}

type Sql = postgres.Sql;
type Tx = postgres.TransactionSql;
type Row = Record<string, unknown>;

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const RETRIES = 5;

/** A Postgres or connection error's code: the SQLSTATE, or a socket/postgres.js code. */
function codeOf(e: unknown): string {
  const code = typeof e === "object" && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : "";
}

function isRetryable(e: unknown): boolean {
  return ["40001", "40P01"].includes(codeOf(e));
}

const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "57P01",
  "57P02",
  "57P03",
]);

/** Any Postgres or connection failure as a coded error that says which database and what to do. */
function pgError(e: unknown, what: string, where: string): KeelError {
  if (KeelError.is(e)) return e;
  const detail = e instanceof Error ? e.message : String(e);
  const code = codeOf(e);
  const make = (name: ErrorCodeName, message: string) =>
    new KeelError(name, message, { cause: e, details: { operation: what, database: where, postgres: detail, ...(code === "" ? {} : { code }) } });
  if (CONNECTION_CODES.has(code) || code.startsWith("08")) {
    return make("E_REGISTRY_STORAGE", `The registry database "${where}" cannot be reached (${detail}) while ${what}: start Postgres, or correct the host and port in the URL`);
  }
  switch (code) {
    case "28P01":
    case "28000":
      return make("E_REGISTRY_STORAGE", `Postgres refused the login to "${where}" (${detail}): correct the user and password in the URL, or allow them in pg_hba.conf`);
    case "3D000":
      return make("E_REGISTRY_STORAGE", `The database of "${where}" does not exist (${detail}): create it (createdb), or name another one in the URL`);
    case "42501":
      return make("E_REGISTRY_STORAGE", `The user of "${where}" may not do this (${what}: ${detail}): grant it USAGE and CREATE on the schema, or use another user`);
    case "53300":
      return make("E_REGISTRY_STORAGE", `Postgres at "${where}" has no connection left (${detail}): lower the pool size, or raise max_connections`);
    case "40001":
    case "40P01":
    case "55P03":
      return make("E_STORE_LOCKED", `The registry database is busy with conflicting writes (${what}); retry in a moment`);
    case "25006":
      return make("E_STORE_READ_ONLY", `The registry database "${where}" is read-only (${what}): point the URL at the primary server`);
    case "53100":
      return make("E_STORE_FULL", `The disk of the registry database "${where}" is full (${what}); nothing of this write was kept`);
    case "XX001":
    case "XX002":
      return make("E_STORE_CORRUPT", `The registry database "${where}" is damaged (${detail}): restore it from a backup`);
    default:
      return make("E_STORE_FAILED", `The registry database could not complete a request (${what}): ${detail}`);
  }
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : String(v);
}
function strOrNull(v: unknown): string | null {
  return v === null || v === undefined ? null : str(v);
}
function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}
function list(v: unknown): string[] | null {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : null;
}
function jsonOrNull(v: readonly string[] | null): string | null {
  return v === null ? null : JSON.stringify(v);
}

const PACKAGE_COLUMNS = "p.name, p.scope, p.owner, p.created_at, p.modified_at, p.rev, p.description, p.keywords, p.capabilities";
const VERSION_COLUMNS =
  "name, version, seq, manifest, abbreviated, readme, integrity, shasum, size, unpacked_size, file_count, signatures, blob_key, published_at, publisher, deprecated, yanked_at, yank_reason, quality";

function toPackage(r: Row): PackageRecord {
  return {
    name: str(r.name),
    scope: strOrNull(r.scope),
    owner: str(r.owner),
    createdAt: Number(r.created_at),
    modifiedAt: Number(r.modified_at),
    rev: Number(r.rev),
    description: strOrNull(r.description),
    keywords: list(r.keywords),
    capabilities: list(r.capabilities),
  };
}

function toVersion(r: Row): VersionRecord {
  return {
    name: str(r.name),
    version: str(r.version),
    seq: Number(r.seq),
    manifest: str(r.manifest),
    abbreviated: str(r.abbreviated),
    readme: strOrNull(r.readme),
    integrity: str(r.integrity),
    shasum: str(r.shasum),
    size: Number(r.size),
    unpackedSize: Number(r.unpacked_size),
    fileCount: Number(r.file_count),
    signatures: str(r.signatures),
    blobKey: str(r.blob_key),
    publishedAt: Number(r.published_at),
    publisher: str(r.publisher),
    deprecated: strOrNull(r.deprecated),
    yankedAt: numOrNull(r.yanked_at),
    yankReason: strOrNull(r.yank_reason),
    quality: strOrNull(r.quality),
  };
}

function toToken(r: Row): TokenRecord {
  return {
    id: str(r.id),
    user: str(r.user),
    scope: str(r.scope) as TokenScope,
    packageScope: strOrNull(r.package_scope),
    createdAt: Number(r.created_at),
    expiresAt: numOrNull(r.expires_at),
    description: strOrNull(r.description),
  };
}

/**
 * Opens (creating or migrating the tables on first use, in `schema`) a registry database on
 * Postgres. The pool connects lazily; this call connects once to check the schema.
 * @param url A `postgres://user:password@host:port/database` URL (postgres.js reads `?sslmode=` and the like).
 * @throws {TypeError} when `url` is not a Postgres URL; `RangeError` for a bad schema name or pool size.
 * @throws {KeelError} `E_REGISTRY_STORAGE` when Postgres cannot be reached, refuses the login or
 * lacks the database (the message names the URL, password masked); `E_STORE_CORRUPT` when the
 * schema belongs to another application or was written by a newer Keel.
 */
export async function openPostgresRegistryDb(url: string, options: PostgresRegistryOptions = {}): Promise<RegistryDb> {
  if (typeof url !== "string" || !/^postgres(?:ql)?:\/\//i.test(url)) {
    throw new TypeError(`A Postgres registry database needs a "postgres://user:password@host:port/database" URL, not "${maskUrl(String(url))}"`);
  }
  const schema = options.schema ?? "public";
  if (!SCHEMA_NAME.test(schema)) {
    throw new RangeError(`"${schema}" is not a usable Postgres schema name: use letters, digits and "_" (at most 63, not starting with a digit)`);
  }
  const max = options.max ?? 10;
  if (!Number.isSafeInteger(max) || max < 1 || max > 1000) throw new RangeError(`The pool size must be a whole number from 1 to 1000, not ${max}`);
  const where = maskUrl(url);
  let client: Sql;
  try {
    client = postgres(url, {
      max,
      onnotice: () => {},
      connect_timeout: 10,
      idle_timeout: 60,
      connection: { application_name: "keel-registry", search_path: quoteIdent(schema) },
    });
  } catch {
    // postgres.js throws synchronously on a URL it cannot parse, with the password in its message: not kept.
    throw new TypeError(`"${where}" is not a valid Postgres URL: write it as "postgres://user:password@host:port/database"`);
  }
  try {
    await openSchema(client, schema, where);
  } catch (e) {
    await client.end({ timeout: 0 }).catch(() => {});
    throw pgError(e, `opening the schema "${schema}"`, where);
  }
  return new PostgresRegistryDb(client, schema, where);
}

async function openSchema(client: Sql, schema: string, where: string): Promise<void> {
  // The fast path, without a lock: an up-to-date registry.
  if (await readMeta(client, schema, where) === SCHEMA_VERSION) return;
  await client.begin(async (tx) => {
    // One process creates or migrates; another waits here, then finds the work done.
    await tx`SELECT pg_advisory_xact_lock(hashtext(${`keel-registry schema ${schema}`}))`;
    const version = await readMeta(tx, schema, where);
    if (version === SCHEMA_VERSION) return;
    const [exists] = await tx`SELECT 1 FROM pg_namespace WHERE nspname = ${schema}`;
    if (exists === undefined) await tx.unsafe(`CREATE SCHEMA ${quoteIdent(schema)}`);
    // Versions before SCHEMA_VERSION never existed on Postgres: migrations from them go here.
    await tx.unsafe(PG_SCHEMA_SQL).simple();
    await tx`INSERT INTO keel_meta (key, value) VALUES ('application', ${PG_APPLICATION}), ('schema_version', ${String(SCHEMA_VERSION)})
             ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
  });
}

/** The registry schema version in `schema`; 0 when it holds no registry yet. */
async function readMeta(sql: Sql | Tx, schema: string, where: string): Promise<number> {
  const tables = new Set(
    (await sql`SELECT table_name FROM information_schema.tables WHERE table_schema = ${schema}`).map((r) => str(r.table_name)),
  );
  if (!tables.has("keel_meta")) {
    const ours = PG_TABLES.filter((t) => tables.has(t));
    if (ours.length > 0) {
      throw new KeelError(
        "E_STORE_CORRUPT",
        `The Postgres schema "${schema}" of "${where}" holds tables of another application (${ours.map((t) => `"${t}"`).join(", ")}), not a Keel registry: choose another schema`,
      );
    }
    return 0;
  }
  const meta = new Map((await sql`SELECT key, value FROM keel_meta`).map((r) => [str(r.key), str(r.value)]));
  const application = meta.get("application");
  if (application !== PG_APPLICATION) {
    throw new KeelError(
      "E_STORE_CORRUPT",
      `The Postgres schema "${schema}" of "${where}" belongs to another application ("${application ?? "unknown"}"), not a Keel registry: choose another schema`,
    );
  }
  const version = Number(meta.get("schema_version"));
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new KeelError("E_STORE_CORRUPT", `The Postgres schema "${schema}" of "${where}" has no valid registry schema version in "keel_meta": restore it from a backup`);
  }
  if (version > SCHEMA_VERSION) {
    throw new KeelError(
      "E_STORE_CORRUPT",
      `The registry database was written by a newer Keel (schema ${version}; this one reads up to ${SCHEMA_VERSION}): upgrade Keel`,
    );
  }
  return version;
}

class PostgresRegistryDb implements RegistryDb {
  readonly #sql: Sql;
  readonly #db: PostgresJsDatabase;
  readonly #schema: string;
  readonly #where: string;
  #closed = false;

  constructor(client: Sql, schema: string, where: string) {
    this.#sql = client;
    this.#db = drizzle({ client });
    this.#schema = schema;
    this.#where = where;
  }

  #open(): void {
    if (this.#closed) throw new KeelError("E_STORE_FAILED", "The registry database was used after close()");
  }

  /** Runs `fn` (one query, or several in one transaction); failures coded. */
  async #read<T>(what: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
    this.#open();
    try {
      return await fn(this.#sql);
    } catch (e) {
      throw pgError(e, what, this.#where);
    }
  }

  /** Runs `fn` in one REPEATABLE READ, read-only transaction: one snapshot for all its queries. */
  #snapshotRead<T>(what: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.#read(what, (sql) => sql.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", fn) as Promise<T>);
  }

  /** Runs `fn` as one READ COMMITTED transaction, again after a serialization failure or deadlock. */
  async #write<T>(what: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    this.#open();
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#sql.begin(fn) as T;
      } catch (e) {
        if (attempt < RETRIES && isRetryable(e)) continue;
        throw pgError(e, what, this.#where);
      }
    }
  }

  /** Locks the package's row for the rest of the transaction; checks the actor owns it. */
  async #requireOwner(tx: Tx, name: string, actor: Actor): Promise<void> {
    const [row] = await tx`SELECT owner FROM packages WHERE name = ${name} FOR UPDATE`;
    if (row === undefined) throw noSuchPackage(name);
    if (!actor.admin && str(row.owner) !== actor.user) throw notOwner(actor.user, name, str(row.owner));
  }

  async #bump(tx: Tx, name: string, at: number): Promise<number> {
    const [row] = await tx`UPDATE packages SET rev = rev + 1, modified_at = ${at} WHERE name = ${name} RETURNING rev`;
    return Number(row?.rev);
  }

  rev(name: string): Promise<number | undefined> {
    return this.#read("reading a package", async (sql) => {
      const [row] = await sql`SELECT rev FROM packages WHERE name = ${name}`;
      return row === undefined ? undefined : Number(row.rev);
    });
  }

  snapshot(name: string): Promise<PackageSnapshot | undefined> {
    return this.#snapshotRead("reading a package", async (tx) => {
      const [pkg, versions, tags, unpublished] = await Promise.all([
        tx.unsafe(`SELECT ${PACKAGE_COLUMNS} FROM packages p WHERE p.name = $1`, [name], { prepare: true }),
        tx.unsafe(`SELECT ${VERSION_COLUMNS} FROM versions WHERE name = $1 AND unpublished_at IS NULL ORDER BY seq`, [name], { prepare: true }),
        tx`SELECT tag, version FROM dist_tags WHERE name = ${name} ORDER BY tag COLLATE "C"`,
        tx`SELECT version, unpublished_at FROM versions WHERE name = ${name} AND unpublished_at IS NOT NULL ORDER BY seq`,
      ]);
      const row = pkg[0];
      if (row === undefined) return undefined;
      const tagMap: Record<string, string> = {};
      for (const t of tags) tagMap[str(t.tag)] = str(t.version);
      const gone: Record<string, number> = {};
      for (const u of unpublished) gone[str(u.version)] = Number(u.unpublished_at);
      return { pkg: toPackage(row), versions: versions.map(toVersion), tags: tagMap, unpublished: gone };
    });
  }

  getPackage(name: string): Promise<PackageRecord | undefined> {
    return this.#read("reading a package", async (sql) => {
      const [row] = await sql.unsafe(`SELECT ${PACKAGE_COLUMNS} FROM packages p WHERE p.name = $1`, [name], { prepare: true });
      return row === undefined ? undefined : toPackage(row);
    });
  }

  getVersion(name: string, version: string): Promise<VersionRecord | undefined> {
    return this.#read("reading a version", async (sql) => {
      const [row] = await sql.unsafe(`SELECT ${VERSION_COLUMNS} FROM versions WHERE name = $1 AND version = $2 AND unpublished_at IS NULL`, [name, version], {
        prepare: true,
      });
      return row === undefined ? undefined : toVersion(row);
    });
  }

  versionCount(name: string): Promise<number> {
    return this.#read("counting versions", async (sql) => {
      const [row] = await sql`SELECT COALESCE(max(seq), 0) AS n FROM versions WHERE name = ${name}`;
      return Number(row?.n ?? 0);
    });
  }

  publish(r: PublishRecord, actor: Actor): Promise<number> {
    return this.#write(`publishing ${r.name}@${r.version}`, async (tx) => {
      const count = await this.#claim(tx, r, actor);
      if (count >= r.maxVersions) throw tooManyVersions(r.name, count, r.maxVersions);
      try {
        await tx`INSERT INTO versions (name, version, seq, manifest, abbreviated, readme, integrity, shasum, size, unpacked_size, file_count,
          signatures, blob_key, published_at, publisher, deprecated, yanked_at, yank_reason, quality, unpublished_at, runtimes) VALUES (
          ${r.name}, ${r.version}, ${count + 1}, ${r.manifest}, ${r.abbreviated}, ${r.readme}, ${r.integrity}, ${r.shasum}, ${r.size},
          ${r.unpackedSize}, ${r.fileCount}, ${r.signatures}, ${r.blobKey}, ${r.at}, ${actor.user}, NULL, NULL, NULL, ${r.quality ?? null}, NULL,
          ${tx.array(runtimesOf(r.quality))}::text[])`;
      } catch (e) {
        if (codeOf(e) === "23505") throw versionExists(r.name, r.version);
        throw e;
      }
      return await this.#afterPublish(tx, [r]);
    });
  }

  publishMany(records: readonly PublishRecord[], actor: Actor): Promise<number> {
    let name: string;
    try {
      name = batchName(records);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#write(`publishing ${records.length} versions of ${name}`, async (tx) => {
      const count = await this.#claim(tx, records[0]!, actor);
      const versions = records.map((r) => r.version);
      const taken = new Set((await tx`SELECT version FROM versions WHERE name = ${name} AND version = ANY(${tx.array(versions)}::text[])`).map((r) => str(r.version)));
      // The checks, in the order one publish after another would make them.
      records.forEach((r, i) => {
        if (count + i >= r.maxVersions) throw tooManyVersions(name, count + i, r.maxVersions);
        if (taken.has(r.version)) throw versionExists(name, r.version);
        taken.add(r.version);
      });
      const rows = records.map((r, i) => ({
        version: r.version,
        seq: count + i + 1,
        manifest: r.manifest,
        abbreviated: r.abbreviated,
        readme: r.readme,
        integrity: r.integrity,
        shasum: r.shasum,
        size: r.size,
        unpacked_size: r.unpackedSize,
        file_count: r.fileCount,
        signatures: r.signatures,
        blob_key: r.blobKey,
        published_at: r.at,
        quality: r.quality ?? null,
        runtimes: runtimesOf(r.quality),
      }));
      await tx`INSERT INTO versions (name, version, seq, manifest, abbreviated, readme, integrity, shasum, size, unpacked_size, file_count,
          signatures, blob_key, published_at, publisher, quality, runtimes)
        SELECT ${name}, x.version, x.seq, x.manifest, x.abbreviated, x.readme, x.integrity, x.shasum, x.size, x.unpacked_size, x.file_count,
          x.signatures, x.blob_key, x.published_at, ${actor.user}, x.quality, ARRAY(SELECT jsonb_array_elements_text(x.runtimes))
        FROM jsonb_to_recordset(${JSON.stringify(rows)}::text::jsonb) AS x(version text, seq integer, manifest text, abbreviated text, readme text,
          integrity text, shasum text, size bigint, unpacked_size bigint, file_count integer, signatures text, blob_key text, published_at bigint,
          quality text, runtimes jsonb)`;
      return await this.#afterPublish(tx, records);
    });
  }

  /**
   * Locks the package of `r` (creating it, owned by the actor, when new) and checks the actor may
   * publish to it; returns how many versions it has ever had.
   */
  async #claim(tx: Tx, r: PublishRecord, actor: Actor): Promise<number> {
    let owner = await this.#lockPackage(tx, r.name);
    if (owner === undefined) {
      const scope = splitName(r.name)?.scope ?? null;
      if (scope !== null) {
        // Serializes the creation of packages in one scope, so two users cannot both claim it.
        await tx`SELECT pg_advisory_xact_lock(hashtext(${`keel-registry ${this.#schema} scope ${scope}`}))`;
        if (!actor.admin) {
          const owners = (await tx`SELECT owner FROM packages WHERE scope = ${scope} GROUP BY owner ORDER BY owner COLLATE "C"`).map((x) => str(x.owner));
          if (owners.length > 0 && !owners.includes(actor.user)) throw scopeTaken(r.name, scope, owners);
        }
      }
      const key = confusableKey(r.name);
      const [clash] = await tx`SELECT name FROM packages WHERE confusable = ${key} AND name <> ${r.name}`;
      if (clash !== undefined) throw lookAlike(r.name, str(clash.name));
      // DO NOTHING: a racing publish may create the row (or a look-alike's) first; read again below.
      await tx`INSERT INTO packages (name, scope, confusable, owner, created_at, modified_at, rev)
               VALUES (${r.name}, ${scope}, ${key}, ${actor.user}, ${r.at}, ${r.at}, 0) ON CONFLICT DO NOTHING`;
      owner = await this.#lockPackage(tx, r.name);
      if (owner === undefined) {
        const [other] = await tx`SELECT name FROM packages WHERE confusable = ${key}`;
        throw lookAlike(r.name, other === undefined ? "?" : str(other.name));
      }
    }
    if (!actor.admin && owner !== actor.user) throw cannotPublish(actor.user, r.name, owner);
    // Rows are never deleted (an unpublished version keeps its row), so seq counts versions.
    const [seqRow] = await tx`SELECT COALESCE(max(seq), 0) AS n FROM versions WHERE name = ${r.name}`;
    return Number(seqRow?.n ?? 0);
  }

  /** Points the records' tags at them (later ones win), takes the search fields of the last "latest", bumps the revision once per record. */
  async #afterPublish(tx: Tx, records: readonly PublishRecord[]): Promise<number> {
    const last = records.at(-1)!;
    const tags = new Map<string, string>();
    for (const r of records) for (const tag of r.tags) tags.set(tag, r.version);
    if (tags.size > 0) {
      await tx`INSERT INTO dist_tags (name, tag, version)
               SELECT ${last.name}, t.tag, t.version FROM unnest(${tx.array([...tags.keys()])}::text[], ${tx.array([...tags.values()])}::text[]) AS t(tag, version)
               ON CONFLICT (name, tag) DO UPDATE SET version = excluded.version`;
    }
    const latest = records.findLast((r) => r.tags.includes("latest"));
    const [bumped] = latest === undefined
      ? await tx`UPDATE packages SET rev = rev + ${records.length}, modified_at = ${last.at} WHERE name = ${last.name} RETURNING rev`
      : await tx`UPDATE packages SET rev = rev + ${records.length}, modified_at = ${last.at}, description = ${latest.description}::text,
          keywords = ${jsonOrNull(latest.keywords)}::text::jsonb, capabilities = ${jsonOrNull(latest.capabilities)}::text::jsonb
        WHERE name = ${last.name} RETURNING rev`;
    return Number(bumped?.rev);
  }

  /** The package's owner with its row locked, or undefined when there is no such package. */
  async #lockPackage(tx: Tx, name: string): Promise<string | undefined> {
    const [row] = await tx`SELECT owner FROM packages WHERE name = ${name} FOR UPDATE`;
    return row === undefined ? undefined : str(row.owner);
  }

  deprecate(name: string, changes: ReadonlyMap<string, string | null>, actor: Actor): Promise<number> {
    return this.#write(`deprecating versions of ${name}`, async (tx) => {
      await this.#requireOwner(tx, name, actor);
      let changed = 0;
      for (const [version, message] of changes) {
        changed += (await tx`UPDATE versions SET deprecated = ${message}::text
          WHERE name = ${name} AND version = ${version} AND unpublished_at IS NULL AND deprecated IS DISTINCT FROM ${message}::text`).count;
      }
      if (changed > 0) await this.#bump(tx, name, Date.now());
      return changed;
    });
  }

  setTag(name: string, tag: string, version: string, actor: Actor): Promise<void> {
    return this.#write(`tagging ${name}@${version}`, async (tx) => {
      await this.#requireOwner(tx, name, actor);
      const [row] = await tx`SELECT yanked_at FROM versions WHERE name = ${name} AND version = ${version} AND unpublished_at IS NULL`;
      if (row === undefined) throw noVersionToTag(name, version);
      if (row.yanked_at !== null) throw yankedTag(name, version);
      await tx`INSERT INTO dist_tags (name, tag, version) VALUES (${name}, ${tag}, ${version}) ON CONFLICT (name, tag) DO UPDATE SET version = excluded.version`;
      await this.#bump(tx, name, Date.now());
    });
  }

  removeTag(name: string, tag: string, actor: Actor): Promise<boolean> {
    return this.#write(`removing tag ${tag} of ${name}`, async (tx) => {
      await this.#requireOwner(tx, name, actor);
      const removed = (await tx`DELETE FROM dist_tags WHERE name = ${name} AND tag = ${tag}`).count > 0;
      if (removed) await this.#bump(tx, name, Date.now());
      return removed;
    });
  }

  yank(name: string, version: string, reason: string | null, actor: Actor, at: number): Promise<void> {
    return this.#write(`${reason === null ? "restoring" : "yanking"} ${name}@${version}`, async (tx) => {
      await this.#requireOwner(tx, name, actor);
      const result = reason === null
        ? await tx`UPDATE versions SET yanked_at = NULL, yank_reason = NULL WHERE name = ${name} AND version = ${version} AND unpublished_at IS NULL`
        : await tx`UPDATE versions SET yanked_at = ${at}, yank_reason = ${reason} WHERE name = ${name} AND version = ${version} AND unpublished_at IS NULL`;
      if (result.count === 0) throw noSuchVersion(name, version);
      await this.#bump(tx, name, at);
    });
  }

  unpublish(name: string, versions: readonly string[], actor: Actor, options: { at: number; windowMs: number }): Promise<string[]> {
    return this.#write(`unpublishing ${name}`, async (tx) => {
      await this.#requireOwner(tx, name, actor);
      const keys = new Set<string>();
      for (const version of versions) {
        const [row] = await tx`SELECT published_at, blob_key FROM versions WHERE name = ${name} AND version = ${version} AND unpublished_at IS NULL`;
        if (row === undefined) throw noSuchVersion(name, version);
        const age = options.at - Number(row.published_at);
        if (age > options.windowMs) throw unpublishTooLate(name, version, age, options.windowMs);
        await tx`UPDATE versions SET unpublished_at = ${options.at} WHERE name = ${name} AND version = ${version}`;
        await tx`DELETE FROM dist_tags WHERE name = ${name} AND version = ${version}`;
        keys.add(str(row.blob_key));
      }
      const live = (await tx`SELECT version FROM versions WHERE name = ${name} AND unpublished_at IS NULL`).map((r) => str(r.version));
      const [hasLatest] = await tx`SELECT 1 FROM dist_tags WHERE name = ${name} AND tag = 'latest'`;
      const best = hasLatest === undefined ? latestOf(live) : undefined;
      if (best !== undefined) await tx`INSERT INTO dist_tags (name, tag, version) VALUES (${name}, 'latest', ${best})`;
      await this.#bump(tx, name, options.at);
      if (keys.size === 0) return [];
      const kept = new Set(
        (await tx`SELECT DISTINCT blob_key FROM versions WHERE blob_key = ANY(${tx.array([...keys])}::text[]) AND unpublished_at IS NULL`).map((r) => str(r.blob_key)),
      );
      return [...keys].filter((key) => !kept.has(key));
    });
  }

  blobReferenced(key: string): Promise<boolean> {
    return this.#read("reading a version", async (sql) => (await sql`SELECT 1 FROM versions WHERE blob_key = ${key} LIMIT 1`).length > 0);
  }

  countDownload(name: string, version: string, at: number, count = 1): Promise<void> {
    return this.#read("counting a download", async (sql) => {
      await sql`INSERT INTO downloads (name, version, day, count) VALUES (${name}, ${version}, ${utcDay(at)}, ${count})
                ON CONFLICT (name, version, day) DO UPDATE SET count = downloads.count + excluded.count`;
    });
  }

  downloads(name: string): Promise<Record<string, number>> {
    return this.#read("reading downloads", async () => {
      const rows = await this.#db.select({ version: pgDownloads.version, count: dsql<string>`sum(${pgDownloads.count})` })
        .from(pgDownloads).where(eq(pgDownloads.name, name)).groupBy(pgDownloads.version);
      return Object.fromEntries(rows.map((r) => [r.version, Number(r.count)]));
    });
  }

  search(q: SearchQuery): Promise<{ total: number; hits: SearchHit[] }> {
    const params: postgres.ParameterOrJSON<never>[] = [];
    const param = (value: postgres.ParameterOrJSON<never>) => {
      params.push(value);
      return `$${params.length}`;
    };
    const escapeLike = (s: string) => s.replace(/[\\%_]/g, (c) => "\\" + c);
    const where: string[] = [];
    for (const word of q.words) {
      // ILIKE, as SQLite's LIKE: case-insensitive.
      const pattern = param(`%${escapeLike(word)}%`);
      where.push(`(p.name ILIKE ${pattern} OR p.description ILIKE ${pattern} OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(p.keywords) k WHERE k ILIKE ${pattern}))`);
    }
    for (const keyword of q.keywords) {
      where.push(`EXISTS (SELECT 1 FROM jsonb_array_elements_text(p.keywords) k WHERE lower(k) = ${param(keyword.toLowerCase())})`);
    }
    if (q.scope !== undefined) where.push(`p.scope = ${param(q.scope)}`);
    for (const cap of q.capabilities) {
      where.push(`EXISTS (SELECT 1 FROM jsonb_array_elements_text(p.capabilities) c WHERE c = ${param(cap)} OR c ILIKE ${param(`${escapeLike(cap)}:%`)})`);
    }
    if (q.runtimes !== undefined && q.runtimes.length > 0) where.push(`l.runtimes @> ${param(this.#sql.array([...q.runtimes]))}::text[]`);
    // The version a hit shows: the "latest" tag's when it is live and unyanked, else the newest such one.
    const from = `FROM packages p CROSS JOIN LATERAL (
        SELECT v.version, v.published_at, v.publisher, v.runtimes FROM versions v
        WHERE v.name = p.name AND v.unpublished_at IS NULL AND v.yanked_at IS NULL
        ORDER BY (v.version = (SELECT t.version FROM dist_tags t WHERE t.name = p.name AND t.tag = 'latest')) IS TRUE DESC, v.seq DESC
        LIMIT 1
      ) l${where.length > 0 ? " WHERE " + where.join(" AND ") : ""}`;
    const countParams = [...params];
    const exact = q.words.length === 1 ? q.words[0]!.toLowerCase() : "";
    const order = `ORDER BY (p.name = ${param(exact)} OR p.name LIKE ${param(`%/${escapeLike(exact)}`)}) DESC, p.modified_at DESC, p.name COLLATE "C"
      LIMIT ${param(q.size)} OFFSET ${param(q.from)}`;
    return this.#snapshotRead("searching", async (tx) => {
      const [counted, rows] = await Promise.all([
        tx.unsafe(`SELECT count(*) AS n ${from}`, countParams, { prepare: true }),
        tx.unsafe(`SELECT ${PACKAGE_COLUMNS}, l.version AS hit_version, l.published_at AS hit_at, l.publisher AS hit_publisher ${from} ${order}`, params, {
          prepare: true,
        }),
      ]);
      return {
        total: Number(counted[0]?.n ?? 0),
        hits: rows.map((r) => ({ pkg: toPackage(r), version: str(r.hit_version), publishedAt: Number(r.hit_at), publisher: str(r.hit_publisher) })),
      };
    });
  }

  getUser(name: string): Promise<UserRecord | undefined> {
    return this.#read("reading a user", async () => {
      const [row] = await this.#db.select().from(pgUsers).where(eq(pgUsers.name, name));
      return row === undefined ? undefined : { name: row.name, email: row.email, passwordHash: row.passwordHash, createdAt: row.createdAt };
    });
  }

  createUser(user: UserRecord): Promise<boolean> {
    return this.#read(`creating user ${user.name}`, async (sql) =>
      (await sql`INSERT INTO users (name, email, password_hash, created_at) VALUES (${user.name}, ${user.email}, ${user.passwordHash}, ${user.createdAt})
                 ON CONFLICT (name) DO NOTHING`).count > 0);
  }

  createToken(r: TokenRecord & { readonly hash: string }): Promise<void> {
    return this.#read(`creating a token for ${r.user}`, async (sql) => {
      await sql`INSERT INTO tokens (id, hash, "user", scope, package_scope, created_at, expires_at, description)
                VALUES (${r.id}, ${r.hash}, ${r.user}, ${r.scope}, ${r.packageScope}, ${r.createdAt}, ${r.expiresAt}, ${r.description})`;
    });
  }

  tokenByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.#read("reading a token", async (sql) => {
      const [row] = await sql`SELECT id, "user", scope, package_scope, created_at, expires_at, description FROM tokens WHERE hash = ${hash}`;
      return row === undefined ? undefined : toToken(row);
    });
  }

  listTokens(user: string): Promise<TokenRecord[]> {
    return this.#read("listing tokens", async () => {
      const rows = await this.#db.select().from(pgTokens).where(eq(pgTokens.user, user))
        .orderBy(desc(pgTokens.createdAt), asc(dsql`${pgTokens.id} COLLATE "C"`));
      return rows.map((r) => ({
        id: r.id,
        user: r.user,
        scope: r.scope as TokenScope,
        packageScope: r.packageScope,
        createdAt: r.createdAt,
        expiresAt: r.expiresAt,
        description: r.description,
      }));
    });
  }

  revokeToken(idOrHash: string, user?: string): Promise<boolean> {
    return this.#read("revoking a token", async (sql) =>
      (user === undefined
        ? await sql`DELETE FROM tokens WHERE id = ${idOrHash} OR hash = ${idOrHash}`
        : await sql`DELETE FROM tokens WHERE (id = ${idOrHash} OR hash = ${idOrHash}) AND "user" = ${user}`).count > 0);
  }

  check(): Promise<string[]> {
    return this.#snapshotRead("checking", async (tx) => {
      const out: string[] = [];
      const meta = await tx`SELECT value FROM keel_meta WHERE key = 'schema_version'`;
      if (Number(meta[0]?.value) !== SCHEMA_VERSION) out.push(`keel_meta names schema version ${String(meta[0]?.value)}, not ${SCHEMA_VERSION}`);
      for (const t of await tx`SELECT t.name, t.tag, t.version FROM dist_tags t
          LEFT JOIN versions v ON v.name = t.name AND v.version = t.version AND v.unpublished_at IS NULL WHERE v.version IS NULL`) {
        out.push(danglingTagProblem(str(t.name), str(t.tag), str(t.version)));
      }
      // A cursor: a registry's manifests need not fit in memory at once.
      for await (const batch of tx`SELECT name || '@' || version AS id, manifest, abbreviated FROM versions`.cursor(1000)) {
        for (const v of batch) {
          const problem = manifestProblem(str(v.id), str(v.manifest), str(v.abbreviated));
          if (problem !== undefined) out.push(problem);
        }
      }
      for (const p of await tx`SELECT p.name FROM packages p WHERE NOT EXISTS (SELECT 1 FROM versions v WHERE v.name = p.name)`) {
        out.push(emptyPackageProblem(str(p.name)));
      }
      for (const p of await tx`SELECT p.name FROM packages p WHERE p.rev < (SELECT count(*) FROM versions v WHERE v.name = p.name)`) {
        out.push(`package ${str(p.name)} has a revision lower than its number of versions`);
      }
      return out;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#sql.end({ timeout: 5 });
    } catch (e) {
      throw pgError(e, "closing", this.#where);
    }
  }
}
