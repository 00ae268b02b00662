/**
 * The registry database on Postgres: the shared RegistryDb suite in a fresh schema, the DDL
 * against the drizzle schema, refusing foreign or newer schemas, connection errors, and the
 * registry app end to end on it. Postgres comes from KEEL_TEST_POSTGRES_URL (set by `.ci/run`
 * and `scripts/test.sh`); when it cannot be reached these tests fail, they are never skipped.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import postgres from "postgres";
import { getTableConfig } from "drizzle-orm/pg-core";
import { KeelError } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { createRegistryApp } from "./app.ts";
import { createMemoryBlobStore } from "./blobs.ts";
import { publishDocument } from "./client.ts";
import type { PublishRecord, RegistryDb } from "./db.ts";
import { openPostgresRegistryDb } from "./db-postgres.ts";
import { maskUrl } from "./_mask-url.ts";
import { testRegistryDb } from "./_db-conformance.ts";
import { issueToken } from "./mod.ts";
import { SCHEMA_VERSION } from "./schema.ts";
import { PG_SCHEMA_SQL, pgSchema } from "./schema-pg.ts";
import { generateSigningKey, keysDocument, verifyVersionSignature } from "./signing.ts";
import { integrityOf, packTarball } from "./tarball.ts";

const URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/test";
const url = (await detectRuntime()).env.get("KEEL_TEST_POSTGRES_URL") || URL_DEFAULT;

/** A schema name nobody else uses. */
function freshSchema(): string {
  return `keel_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/** A plain connection for the tests' own SQL (creating and dropping schemas). */
function admin(schema?: string): postgres.Sql {
  return postgres(url, { max: 1, onnotice: () => {}, ...(schema === undefined ? {} : { connection: { search_path: schema } }) });
}

async function dropSchemas(names: readonly string[]): Promise<void> {
  const sql = admin();
  try {
    for (const name of names) await sql.unsafe(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

function record(name: string, version: string, more: Partial<PublishRecord> = {}): PublishRecord {
  return {
    name, version, manifest: JSON.stringify({ name, version }), abbreviated: JSON.stringify({ name, version }), readme: null,
    integrity: "sha512-AAAA", shasum: "0".repeat(40), size: 1, unpackedSize: 1, fileCount: 1, signatures: "[]",
    blobKey: `sha512/00/${name}-${version}.tgz`, at: 1_000, tags: ["latest"], description: null, keywords: null,
    capabilities: null, maxVersions: 100, ...more,
  };
}

describe("Postgres is reachable for these tests", () => {
  test(`connects to ${maskUrl(url)}`, async () => {
    const sql = admin();
    try {
      const [row] = await sql`SELECT 1 AS one`;
      assert.equal(row?.one, 1);
    } catch (e) {
      assert.fail(`Postgres at ${maskUrl(url)} cannot be reached (${e instanceof Error ? e.message : String(e)}): start it, or set KEEL_TEST_POSTGRES_URL`);
    } finally {
      await sql.end({ timeout: 5 });
    }
  });
});

// The shared suite, in a schema of its own that every open() connects to.
const conformanceSchema = freshSchema();
testRegistryDb("Postgres", () => openPostgresRegistryDb(url, { schema: conformanceSchema, max: 4 }), () => dropSchemas([conformanceSchema]));

describe("Postgres registry database", () => {
  const schemas: string[] = [];
  const fresh = () => {
    const name = freshSchema();
    schemas.push(name);
    return name;
  };

  after(async () => {
    await dropSchemas(schemas);
  });

  test("the DDL creates exactly the tables, columns, keys and indexes of the drizzle pg-core schema", async () => {
    const schema = fresh();
    await (await openPostgresRegistryDb(url, { schema })).close();
    const sql = admin();
    try {
      for (const table of Object.values(pgSchema)) {
        const config = getTableConfig(table);
        const columns = await sql`SELECT column_name, data_type, udt_name, is_nullable FROM information_schema.columns
                                  WHERE table_schema = ${schema} AND table_name = ${config.name}`;
        const typeOf = (c: Record<string, unknown>) => c.data_type === "ARRAY" ? `${String(c.udt_name).slice(1)}[]` : String(c.data_type);
        const normalize = (t: string) => ({ "character varying": "text", "bigint": "bigint", "integer": "integer", "jsonb": "jsonb", "text": "text", "text[]": "text[]" } as Record<string, string>)[t] ?? t;
        assert.deepEqual(
          columns.map((c) => [c.column_name, normalize(typeOf(c)), c.is_nullable === "NO"]).sort(),
          config.columns.map((c) => [c.name, c.getSQLType(), c.notNull || c.primary]).sort(),
          `columns of ${config.name}`,
        );
        const [pk] = await sql`SELECT array_agg(a.attname ORDER BY k.ord) AS cols FROM pg_index i
          JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
          WHERE n.nspname = ${schema} AND t.relname = ${config.name} AND i.indisprimary`;
        const declared = config.primaryKeys[0]?.columns.map((c) => c.name) ?? config.columns.filter((c) => c.primary).map((c) => c.name);
        assert.deepEqual(pk?.cols, declared, `primary key of ${config.name}`);
        const indexes = await sql`SELECT i.relname AS name, x.indisunique AS uniq FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
          JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
          WHERE n.nspname = ${schema} AND t.relname = ${config.name} AND NOT x.indisprimary`;
        assert.deepEqual(
          indexes.map((i) => `${i.name}${i.uniq ? " unique" : ""}`).sort(),
          config.indexes.map((i) => `${i.config.name}${i.config.unique ? " unique" : ""}`).sort(),
          `indexes of ${config.name}`,
        );
        const fks = await sql`SELECT kcu.column_name AS col, ccu.table_name AS ft, ccu.column_name AS fc
          FROM information_schema.table_constraints tc
          JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name AND kcu.constraint_schema = tc.constraint_schema
          JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name AND ccu.constraint_schema = tc.constraint_schema
          WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = ${schema} AND tc.table_name = ${config.name}`;
        const declaredFks = config.foreignKeys.flatMap((fk) => {
          const ref = fk.reference();
          return ref.columns.map((c, i) => `${c.name}->${getTableConfig(ref.foreignTable).name}.${ref.foreignColumns[i]!.name}`);
        }).sort();
        assert.deepEqual(fks.map((f) => `${f.col}->${f.ft}.${f.fc}`).sort(), declaredFks, `foreign keys of ${config.name}`);
      }
      const meta = await sql.unsafe(`SELECT key, value FROM "${schema}".keel_meta ORDER BY key`);
      assert.deepEqual(meta.map((r) => [r.key, r.value]), [["application", "keel-registry"], ["schema_version", String(SCHEMA_VERSION)]]);
      const tables = await sql`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name = 'keel_meta'`;
      assert.equal(tables.length === 0 || schema === "public", true, "nothing was created outside the schema");
    } finally {
      await sql.end({ timeout: 5 });
    }
  });

  test("keeps data across reopening, and two processes opening one new schema at once both succeed", async () => {
    const schema = fresh();
    const [a, b] = await Promise.all([openPostgresRegistryDb(url, { schema, max: 2 }), openPostgresRegistryDb(url, { schema, max: 2 })]);
    await a.publish(record("kept", "1.0.0"), { user: "a", admin: false });
    assert.equal((await b.getVersion("kept", "1.0.0"))?.publisher, "a");
    await a.close();
    await b.close();
    const again = await openPostgresRegistryDb(url, { schema });
    try {
      assert.equal((await again.snapshot("kept"))?.versions[0]?.version, "1.0.0");
      assert.deepEqual(await again.check(), []);
    } finally {
      await again.close();
    }
  });

  test("refuses a schema of another application, and one written by a newer Keel, with E_STORE_CORRUPT", async () => {
    const foreign = fresh();
    const other = fresh();
    const newer = fresh();
    const sql = admin();
    try {
      await sql.unsafe(`CREATE SCHEMA "${foreign}"; CREATE TABLE "${foreign}".packages (id int)`).simple();
      await sql.unsafe(`CREATE SCHEMA "${other}"; CREATE TABLE "${other}".keel_meta (key text PRIMARY KEY, value text NOT NULL);
        INSERT INTO "${other}".keel_meta VALUES ('application', 'keel-workflows'), ('schema_version', '1')`).simple();
    } finally {
      await sql.end({ timeout: 5 });
    }
    await assert.rejects(openPostgresRegistryDb(url, { schema: foreign }), (e: unknown) => {
      assert.ok(KeelError.is(e, "E_STORE_CORRUPT"), String(e));
      assert.match((e as Error).message, /holds tables of another application \("packages"\), not a Keel registry: choose another schema/);
      return true;
    });
    await assert.rejects(openPostgresRegistryDb(url, { schema: other }), (e: unknown) => {
      assert.ok(KeelError.is(e, "E_STORE_CORRUPT"), String(e));
      assert.match((e as Error).message, /belongs to another application \("keel-workflows"\)/);
      return true;
    });
    await (await openPostgresRegistryDb(url, { schema: newer })).close();
    const bump = admin();
    try {
      await bump.unsafe(`UPDATE "${newer}".keel_meta SET value = '${SCHEMA_VERSION + 1}' WHERE key = 'schema_version'`);
    } finally {
      await bump.end({ timeout: 5 });
    }
    await assert.rejects(openPostgresRegistryDb(url, { schema: newer }), (e: unknown) => {
      assert.ok(KeelError.is(e, "E_STORE_CORRUPT"), String(e));
      assert.match((e as Error).message, /newer Keel \(schema \d+; this one reads up to \d+\): upgrade Keel/);
      return true;
    });
  });

  test("an unreachable server, an unknown role and a missing database fail with E_REGISTRY_STORAGE naming the URL, password masked", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const target = new URL(url);
      const cases: [string, RegExp][] = [
        [`postgres://keel:s3cret-pw@127.0.0.1:1/test`, /cannot be reached .*start Postgres, or correct the host and port/],
        [`postgres://keel_no_such_role:s3cret-pw@${target.host}/test`, /refused the login .*correct the user and password/],
        [`postgres://${target.username || "postgres"}:s3cret-pw@${target.host}/keel_no_such_db_${Date.now()}`, /does not exist .*create it \(createdb\)/],
      ];
      for (const [bad, pattern] of cases) {
        await assert.rejects(openPostgresRegistryDb(bad, { schema: "keel_never" }), (e: unknown) => {
          assert.ok(KeelError.is(e, "E_REGISTRY_STORAGE"), `${bad}: ${String(e)}`);
          const message = (e as Error).message;
          assert.match(message, pattern);
          assert.ok(message.includes(maskUrl(bad)), message);
          assert.ok(!message.includes("s3cret-pw"), `the password leaked: ${message}`);
          assert.ok(!JSON.stringify((e as KeelError).details).includes("s3cret-pw"), "the password leaked into details");
          return true;
        });
      }
      // Let any stray rejection from a pool surface before looking.
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  test("bad arguments are a TypeError or RangeError; the mask hides only the password", async () => {
    await assert.rejects(openPostgresRegistryDb("mysql://x@y/z"), TypeError);
    await assert.rejects(openPostgresRegistryDb("postgres://u:s3cret-pw@h:99999/d"), (e: unknown) => {
      assert.ok(e instanceof TypeError);
      assert.ok(!e.message.includes("s3cret-pw"), e.message);
      return true;
    });
    await assert.rejects(openPostgresRegistryDb(url, { schema: "bad-name; DROP" }), RangeError);
    await assert.rejects(openPostgresRegistryDb(url, { schema: "1x" }), RangeError);
    await assert.rejects(openPostgresRegistryDb(url, { max: 0 }), RangeError);
    assert.equal(maskUrl("postgres://u:p%40ss@h:5432/d?sslmode=require"), "postgres://u:***@h:5432/d?sslmode=require");
    assert.equal(maskUrl("postgres://u@h/d"), "postgres://u@h/d");
  });

  test("the DDL is idempotent and its version is kept in keel_meta", async () => {
    const schema = fresh();
    const db = await openPostgresRegistryDb(url, { schema });
    await db.close();
    const sql = admin(schema);
    try {
      await sql.unsafe(PG_SCHEMA_SQL).simple();
      const [row] = await sql`SELECT value FROM keel_meta WHERE key = 'schema_version'`;
      assert.equal(row?.value, String(SCHEMA_VERSION));
    } finally {
      await sql.end({ timeout: 5 });
    }
    const again = await openPostgresRegistryDb(url, { schema });
    assert.deepEqual(await again.check(), []);
    await again.close();
  });
});

describe("the registry app on Postgres", () => {
  const schema = freshSchema();
  const BASE = "http://registry.test";
  let db: RegistryDb;
  let second: RegistryDb;

  before(async () => {
    db = await openPostgresRegistryDb(url, { schema, max: 4 });
    second = await openPostgresRegistryDb(url, { schema, max: 4 });
  });

  after(async () => {
    await db?.close();
    await second?.close();
    await dropSchemas([schema]);
  });

  test("publish, then the package document and the tarball download, through the app's routes", async () => {
    const signing = await generateSigningKey();
    const blobs = createMemoryBlobStore();
    const app = createRegistryApp({ db, blobs, baseUrl: BASE, signingKeys: [signing.key], passwordIterations: 1_000 });
    const { token } = await issueToken(db, { user: "admin", scope: "admin" });
    const pj = { name: "@e2e/hello", version: "1.2.3", description: "Hello from Postgres", main: "index.js", keywords: ["greeting"] };
    const tarball = await packTarball({ "package.json": JSON.stringify(pj), "index.js": "module.exports = 'hi';\n", "README.md": "# hello\n" });
    const doc = await publishDocument(pj, tarball);
    const put = await app.request(doc.path, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(doc.body),
    });
    assert.equal(put.status, 201, await put.text());

    const got = await app.request(doc.path, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(got.status, 200);
    const packument = await got.json() as {
      name: string;
      "dist-tags": Record<string, string>;
      versions: Record<string, { dist: { integrity: string; shasum: string; tarball: string; signatures: { keyid: string; sig: string }[] } }>;
      time: Record<string, string>;
    };
    assert.equal(packument.name, "@e2e/hello");
    assert.deepEqual(packument["dist-tags"], { latest: "1.2.3" });
    const dist = packument.versions["1.2.3"]!.dist;
    assert.equal(dist.integrity, doc.integrity);
    assert.equal(dist.shasum, doc.shasum);
    assert.ok(typeof packument.time["1.2.3"] === "string");
    assert.equal(await verifyVersionSignature(keysDocument([signing.key]).keys, "@e2e/hello", "1.2.3", dist.integrity, dist.signatures[0]!), true);
    assert.ok(dist.tarball.startsWith(BASE + "/"), dist.tarball);

    const download = await app.request(dist.tarball.slice(BASE.length), { headers: { authorization: `Bearer ${token}` } });
    assert.equal(download.status, 200);
    const bytes = new Uint8Array(await download.arrayBuffer());
    assert.deepEqual(bytes, tarball);
    assert.equal((await integrityOf(bytes)).integrity, doc.integrity);

    const search = await app.request("/-/v1/search?text=hello", { headers: { authorization: `Bearer ${token}` } });
    const found = await search.json() as { total: number; objects: { package: { name: string; version: string } }[] };
    assert.equal(found.total, 1);
    assert.deepEqual(found.objects.map((o) => [o.package.name, o.package.version]), [["@e2e/hello", "1.2.3"]]);

    const again = await app.request(doc.path, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(doc.body),
    });
    assert.equal(again.status, 409);
    assert.equal((await again.json() as { code: string }).code, "E_REGISTRY_VERSION_EXISTS");
    assert.deepEqual(await db.check(), []);
  });

  test("two app processes on two pools racing to publish one version: one 201, one 409", async () => {
    const signing = await generateSigningKey();
    const blobs = createMemoryBlobStore();
    const one = createRegistryApp({ db, blobs, baseUrl: BASE, signingKeys: [signing.key], passwordIterations: 1_000 });
    const two = createRegistryApp({ db: second, blobs, baseUrl: BASE, signingKeys: [signing.key], passwordIterations: 1_000 });
    const { token } = await issueToken(db, { user: "racer", scope: "publish" });
    for (let i = 0; i < 3; i++) {
      const pj = { name: "race-pg", version: `1.0.${i}` };
      const a = await publishDocument(pj, await packTarball({ "package.json": JSON.stringify(pj), "a.js": "1" }));
      const b = await publishDocument(pj, await packTarball({ "package.json": JSON.stringify(pj), "b.js": "2" }));
      const init = (body: unknown) => ({ method: "PUT", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
      const responses = await Promise.all([one.request(a.path, init(a.body)), two.request(b.path, init(b.body))]);
      assert.deepEqual(responses.map((r) => r.status).sort(), [201, 409]);
      const winner = responses[0]!.status === 201 ? a : b;
      for (const r of responses) await r.arrayBuffer();
      const tgz = await two.request(`/race-pg/-/race-pg-1.0.${i}.tgz`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal((await integrityOf(new Uint8Array(await tgz.arrayBuffer()))).integrity, winner.integrity, "the winner's tarball is the one stored");
    }
    assert.equal(await db.versionCount("race-pg"), 3);
    assert.deepEqual(await second.check(), []);
  });
});
