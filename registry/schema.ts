/**
 * The registry's SQLite schema in drizzle (sqlite-core), and the DDL that creates it.
 *
 * As in the workflow store, drizzle describes the tables once and a test checks that
 * {@link SCHEMA_SQL} creates exactly what is declared here. Timestamps are milliseconds since
 * the epoch; JSON columns hold `JSON.stringify` text. Nothing here is SQLite-only but the
 * `WITHOUT ROWID` clause of the DDL: the same tables map onto Postgres (`text`, `bigint`,
 * `jsonb`) for a registry that outgrows one file: `schema-pg.ts` and `db-postgres.ts`.
 * @module
 */

import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/** The schema version this module writes, kept in `PRAGMA user_version`. */
export const SCHEMA_VERSION = 2;

/** Written into `PRAGMA application_id`: "KREG" in ASCII, so a registry file is told from a workflow store. */
export const APPLICATION_ID = 0x4b524547;

/**
 * One row per package name ever published. A package whose versions were all unpublished keeps
 * its row: the name stays its owner's, so nobody else can take it over.
 */
export const packages = sqliteTable("packages", {
  name: text("name").primaryKey(),
  /** The scope without "@", or null. */
  scope: text("scope"),
  /** The name folded for look-alike checks (`confusableKey`); unique, so "react-dom" blocks "reactdom". */
  confusable: text("confusable").notNull(),
  owner: text("owner").notNull(),
  createdAt: integer("created_at").notNull(),
  modifiedAt: integer("modified_at").notNull(),
  /** Bumped by every change to the package; serialized documents are cached per revision. */
  rev: integer("rev").notNull(),
  /** Of the latest version, for search. */
  description: text("description"),
  keywords: text("keywords", { mode: "json" }).$type<string[]>(),
  capabilities: text("capabilities", { mode: "json" }).$type<string[]>(),
}, (t) => [
  uniqueIndex("packages_confusable").on(t.confusable),
  index("packages_scope").on(t.scope),
]);

/**
 * Every version ever published: `(name, version)` is the primary key, so a name@version can be
 * taken only once, by the first of two racing publishes; an unpublished version keeps its row
 * (with `unpublished_at`) so its number is never reused.
 */
export const versions = sqliteTable("versions", {
  name: text("name").notNull().references(() => packages.name),
  version: text("version").notNull(),
  /** 1, 2, ... per package in publish order: the order of `versions` in the documents. */
  seq: integer("seq").notNull(),
  /** The version document without `dist`, `deprecated` and `yanked` (those are added when served). */
  manifest: text("manifest").notNull(),
  /** The abbreviated version document, likewise. */
  abbreviated: text("abbreviated").notNull(),
  readme: text("readme"),
  integrity: text("integrity").notNull(),
  shasum: text("shasum").notNull(),
  size: integer("size").notNull(),
  unpackedSize: integer("unpacked_size").notNull(),
  fileCount: integer("file_count").notNull(),
  /** JSON `[{ keyid, sig }]`: the registry's signatures over `name@version:integrity`. */
  signatures: text("signatures").notNull(),
  /** The tarball's key in the blob store. */
  blobKey: text("blob_key").notNull(),
  publishedAt: integer("published_at").notNull(),
  publisher: text("publisher").notNull(),
  deprecated: text("deprecated"),
  yankedAt: integer("yanked_at"),
  yankReason: text("yank_reason"),
  unpublishedAt: integer("unpublished_at"),
  /** JSON: the quality signals read from the tarball at publish (`quality.ts`); null before schema 2. */
  quality: text("quality"),
}, (t) => [
  primaryKey({ columns: [t.name, t.version] }),
  uniqueIndex("versions_seq").on(t.name, t.seq),
  index("versions_blob").on(t.blobKey),
]);

/** Dist-tags as their owners set them (a tag on a yanked version is hidden when served). */
export const distTags = sqliteTable("dist_tags", {
  name: text("name").notNull().references(() => packages.name),
  tag: text("tag").notNull(),
  version: text("version").notNull(),
}, (t) => [primaryKey({ columns: [t.name, t.tag] })]);

/** Registry users. `password_hash` is null for users that only ever get tokens from the CLI. */
export const users = sqliteTable("users", {
  name: text("name").primaryKey(),
  email: text("email"),
  /** `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`: checked at login only, never per request. */
  passwordHash: text("password_hash"),
  createdAt: integer("created_at").notNull(),
});

/**
 * Access tokens, stored as the SHA-256 hex of the token (a token is 256 random bits, so a fast
 * hash is right: nothing to brute-force). `scope` is "read", "publish" or "admin", each
 * including the ones before; `package_scope` ("acme", without "@") limits a token to one scope.
 */
export const tokens = sqliteTable("tokens", {
  id: text("id").primaryKey(),
  hash: text("hash").notNull(),
  user: text("user").notNull().references(() => users.name),
  scope: text("scope").notNull(),
  packageScope: text("package_scope"),
  createdAt: integer("created_at").notNull(),
  expiresAt: integer("expires_at"),
  description: text("description"),
}, (t) => [
  uniqueIndex("tokens_hash").on(t.hash),
  index("tokens_user").on(t.user),
]);

/** Tarball downloads per version and UTC day ("2025-01-31"). */
export const downloads = sqliteTable("downloads", {
  name: text("name").notNull(),
  version: text("version").notNull(),
  day: text("day").notNull(),
  count: integer("count").notNull(),
}, (t) => [primaryKey({ columns: [t.name, t.version, t.day] })]);

/** Every table, for the schema test. */
export const schema = { packages, versions, distTags, users, tokens, downloads } as const;

/** Schema 1 to 2: the quality signals of each version. */
export const MIGRATE_1_TO_2 = "ALTER TABLE versions ADD COLUMN quality TEXT";

/** Creates the tables and indexes of {@link schema} when missing. */
export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS packages (
  name TEXT PRIMARY KEY NOT NULL,
  scope TEXT,
  confusable TEXT NOT NULL,
  owner TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  modified_at INTEGER NOT NULL,
  rev INTEGER NOT NULL,
  description TEXT,
  keywords TEXT,
  capabilities TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS packages_confusable ON packages (confusable);
CREATE INDEX IF NOT EXISTS packages_scope ON packages (scope);
CREATE TABLE IF NOT EXISTS versions (
  name TEXT NOT NULL REFERENCES packages (name),
  version TEXT NOT NULL,
  seq INTEGER NOT NULL,
  manifest TEXT NOT NULL,
  abbreviated TEXT NOT NULL,
  readme TEXT,
  integrity TEXT NOT NULL,
  shasum TEXT NOT NULL,
  size INTEGER NOT NULL,
  unpacked_size INTEGER NOT NULL,
  file_count INTEGER NOT NULL,
  signatures TEXT NOT NULL,
  blob_key TEXT NOT NULL,
  published_at INTEGER NOT NULL,
  publisher TEXT NOT NULL,
  deprecated TEXT,
  yanked_at INTEGER,
  yank_reason TEXT,
  unpublished_at INTEGER,
  quality TEXT,
  PRIMARY KEY (name, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS versions_seq ON versions (name, seq);
CREATE INDEX IF NOT EXISTS versions_blob ON versions (blob_key);
CREATE TABLE IF NOT EXISTS dist_tags (
  name TEXT NOT NULL REFERENCES packages (name),
  tag TEXT NOT NULL,
  version TEXT NOT NULL,
  PRIMARY KEY (name, tag)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
  name TEXT PRIMARY KEY NOT NULL,
  email TEXT,
  password_hash TEXT,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY NOT NULL,
  hash TEXT NOT NULL,
  user TEXT NOT NULL REFERENCES users (name),
  scope TEXT NOT NULL,
  package_scope TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  description TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_hash ON tokens (hash);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens (user);
CREATE TABLE IF NOT EXISTS downloads (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  day TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (name, version, day)
) WITHOUT ROWID;
`;
