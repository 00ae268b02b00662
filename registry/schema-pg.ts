/**
 * The registry's Postgres schema in drizzle (pg-core), and the DDL that creates it: the tables of
 * `schema.ts` mapped onto Postgres types (`text`, `bigint` milliseconds, `jsonb` lists).
 *
 * As for SQLite, drizzle describes the tables once and a test checks that {@link PG_SCHEMA_SQL}
 * creates exactly what is declared here. Two differences from the SQLite tables: the schema's
 * version and owner live in the `keel_meta` table (Postgres has no `user_version` or
 * `application_id`), and each version keeps the runtimes its quality signals declare in a
 * `text[]` column, so search can filter on them without parsing JSON that may be malformed.
 * @module
 */

import { bigint, index, integer, jsonb, pgTable, primaryKey, text, uniqueIndex } from "drizzle-orm/pg-core";

/** The value of `keel_meta.application` in a registry's schema. */
export const PG_APPLICATION = "keel-registry";

/** The table that names the application and schema version a Postgres schema holds. */
export const pgMeta = pgTable("keel_meta", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
});

/** See `packages` in `schema.ts`. */
export const pgPackages = pgTable("packages", {
  name: text("name").primaryKey(),
  scope: text("scope"),
  confusable: text("confusable").notNull(),
  owner: text("owner").notNull(),
  createdAt: bigint("created_at", { mode: "number" }).notNull(),
  modifiedAt: bigint("modified_at", { mode: "number" }).notNull(),
  rev: integer("rev").notNull(),
  description: text("description"),
  keywords: jsonb("keywords").$type<string[]>(),
  capabilities: jsonb("capabilities").$type<string[]>(),
}, (t) => [
  uniqueIndex("packages_confusable").on(t.confusable),
  index("packages_scope").on(t.scope),
]);

/** See `versions` in `schema.ts`; `runtimes` is read from `quality` at publish. */
export const pgVersions = pgTable("versions", {
  name: text("name").notNull().references(() => pgPackages.name),
  version: text("version").notNull(),
  seq: integer("seq").notNull(),
  manifest: text("manifest").notNull(),
  abbreviated: text("abbreviated").notNull(),
  readme: text("readme"),
  integrity: text("integrity").notNull(),
  shasum: text("shasum").notNull(),
  size: bigint("size", { mode: "number" }).notNull(),
  unpackedSize: bigint("unpacked_size", { mode: "number" }).notNull(),
  fileCount: integer("file_count").notNull(),
  signatures: text("signatures").notNull(),
  blobKey: text("blob_key").notNull(),
  publishedAt: bigint("published_at", { mode: "number" }).notNull(),
  publisher: text("publisher").notNull(),
  deprecated: text("deprecated"),
  yankedAt: bigint("yanked_at", { mode: "number" }),
  yankReason: text("yank_reason"),
  unpublishedAt: bigint("unpublished_at", { mode: "number" }),
  quality: text("quality"),
  /** The string entries of `quality`'s `runtimes` list: what `runtime:` searches match. */
  runtimes: text("runtimes").array().notNull(),
}, (t) => [
  primaryKey({ name: "versions_pkey", columns: [t.name, t.version] }),
  uniqueIndex("versions_seq").on(t.name, t.seq),
  index("versions_blob").on(t.blobKey),
]);

/** See `dist_tags` in `schema.ts`. */
export const pgDistTags = pgTable("dist_tags", {
  name: text("name").notNull().references(() => pgPackages.name),
  tag: text("tag").notNull(),
  version: text("version").notNull(),
}, (t) => [primaryKey({ name: "dist_tags_pkey", columns: [t.name, t.tag] })]);

/** See `users` in `schema.ts`. */
export const pgUsers = pgTable("users", {
  name: text("name").primaryKey(),
  email: text("email"),
  passwordHash: text("password_hash"),
  createdAt: bigint("created_at", { mode: "number" }).notNull(),
});

/** See `tokens` in `schema.ts`. */
export const pgTokens = pgTable("tokens", {
  id: text("id").primaryKey(),
  hash: text("hash").notNull(),
  user: text("user").notNull().references(() => pgUsers.name),
  scope: text("scope").notNull(),
  packageScope: text("package_scope"),
  createdAt: bigint("created_at", { mode: "number" }).notNull(),
  expiresAt: bigint("expires_at", { mode: "number" }),
  description: text("description"),
}, (t) => [
  uniqueIndex("tokens_hash").on(t.hash),
  index("tokens_user").on(t.user),
]);

/** See `downloads` in `schema.ts`. */
export const pgDownloads = pgTable("downloads", {
  name: text("name").notNull(),
  version: text("version").notNull(),
  day: text("day").notNull(),
  count: bigint("count", { mode: "number" }).notNull(),
}, (t) => [primaryKey({ name: "downloads_pkey", columns: [t.name, t.version, t.day] })]);

/** Every table, for the schema test. */
export const pgSchema = {
  meta: pgMeta,
  packages: pgPackages,
  versions: pgVersions,
  distTags: pgDistTags,
  users: pgUsers,
  tokens: pgTokens,
  downloads: pgDownloads,
} as const;

/** The registry's tables (without `keel_meta`): a schema holding one of them but no `keel_meta` is not a registry. */
export const PG_TABLES: readonly string[] = ["packages", "versions", "dist_tags", "users", "tokens", "downloads"];

/**
 * Creates the tables and indexes of {@link pgSchema} when missing, in the first schema of the
 * connection's `search_path`. Run under an advisory lock, so two processes opening one empty
 * schema do not race on it.
 */
export const PG_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS keel_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS packages (
  name TEXT PRIMARY KEY,
  scope TEXT,
  confusable TEXT NOT NULL,
  owner TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  modified_at BIGINT NOT NULL,
  rev INTEGER NOT NULL,
  description TEXT,
  keywords JSONB,
  capabilities JSONB
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
  size BIGINT NOT NULL,
  unpacked_size BIGINT NOT NULL,
  file_count INTEGER NOT NULL,
  signatures TEXT NOT NULL,
  blob_key TEXT NOT NULL,
  published_at BIGINT NOT NULL,
  publisher TEXT NOT NULL,
  deprecated TEXT,
  yanked_at BIGINT,
  yank_reason TEXT,
  unpublished_at BIGINT,
  quality TEXT,
  runtimes TEXT[] NOT NULL,
  CONSTRAINT versions_pkey PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS versions_seq ON versions (name, seq);
CREATE INDEX IF NOT EXISTS versions_blob ON versions (blob_key);
CREATE TABLE IF NOT EXISTS dist_tags (
  name TEXT NOT NULL REFERENCES packages (name),
  tag TEXT NOT NULL,
  version TEXT NOT NULL,
  CONSTRAINT dist_tags_pkey PRIMARY KEY (name, tag)
);
CREATE TABLE IF NOT EXISTS users (
  name TEXT PRIMARY KEY,
  email TEXT,
  password_hash TEXT,
  created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY,
  hash TEXT NOT NULL,
  "user" TEXT NOT NULL REFERENCES users (name),
  scope TEXT NOT NULL,
  package_scope TEXT,
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  description TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_hash ON tokens (hash);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens ("user");
CREATE TABLE IF NOT EXISTS downloads (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  day TEXT NOT NULL,
  count BIGINT NOT NULL,
  CONSTRAINT downloads_pkey PRIMARY KEY (name, version, day)
);
`;
