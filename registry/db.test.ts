import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { getTableConfig } from "drizzle-orm/sqlite-core";
import { KeelError, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { compareVersions, openRegistryDb, type PublishRecord } from "./db.ts";
import { testRegistryDb } from "./_db-conformance.ts";
import { confusableKey, nameProblem } from "./_names.ts";
import { schema, SCHEMA_VERSION } from "./schema.ts";

let runtime: Runtime;
let root: string;

before(async () => {
  runtime = await detectRuntime();
  root = await runtime.fs!.makeTempDir("keel-registry-db-");
});

after(async () => {
  await runtime.fs!.remove(root);
});

// The shared suite, on one SQLite file that every open() connects to.
testRegistryDb("SQLite", () => openRegistryDb(runtime, `${root}/conformance.db`));

function record(name: string, version: string, more: Partial<PublishRecord> = {}): PublishRecord {
  return {
    name, version, manifest: JSON.stringify({ name, version }), abbreviated: JSON.stringify({ name, version }), readme: null,
    integrity: "sha512-AAAA", shasum: "0".repeat(40), size: 1, unpackedSize: 1, fileCount: 1, signatures: "[]",
    blobKey: `sha512/00/${name.replace(/[@/]/g, "_")}-${version}.tgz`, at: 1_000, tags: ["latest"], description: null, keywords: null,
    capabilities: null, maxVersions: 100, ...more,
  };
}

describe("registry db", () => {
  test("the DDL creates exactly the tables, columns, keys and indexes of the drizzle schema", async () => {
    const path = `${root}/schema.db`;
    await (await openRegistryDb(runtime, path)).close();
    const h = await runtime.openSqlite!(path);
    try {
      for (const table of Object.values(schema)) {
        const config = getTableConfig(table);
        const info = h.all(`PRAGMA table_info(${config.name})`);
        assert.deepEqual(
          info.map((c) => [c["name"], c["type"], c["notnull"] === 1 || c["pk"] !== 0]).sort(),
          config.columns.map((c) => [c.name, c.getSQLType().toUpperCase(), c.notNull || c.primary]).sort(),
          `columns of ${config.name}`,
        );
        const pk = info.filter((c) => Number(c["pk"]) > 0).sort((a, b) => Number(a["pk"]) - Number(b["pk"])).map((c) => c["name"]);
        const declared = config.primaryKeys[0]?.columns.map((c) => c.name) ?? config.columns.filter((c) => c.primary).map((c) => c.name);
        assert.deepEqual(pk, declared, `primary key of ${config.name}`);
        const indexes = h.all(`PRAGMA index_list(${config.name})`).filter((i) => i["origin"] === "c").map((i) => i["name"]).sort();
        assert.deepEqual(indexes, config.indexes.map((i) => i.config.name).sort(), `indexes of ${config.name}`);
        const fks = h.all(`PRAGMA foreign_key_list(${config.name})`).map((f) => `${f["from"]}->${f["table"]}.${f["to"]}`).sort();
        const declaredFks = config.foreignKeys.flatMap((fk) => {
          const ref = fk.reference();
          return ref.columns.map((c, i) => `${c.name}->${getTableConfig(ref.foreignTable).name}.${ref.foreignColumns[i]!.name}`);
        }).sort();
        assert.deepEqual(fks, declaredFks, `foreign keys of ${config.name}`);
      }
      assert.equal(h.values("PRAGMA user_version")[0]![0], SCHEMA_VERSION);
    } finally {
      h.close();
    }
  });

  test("refuses another application's SQLite file, and keeps data across reopening", async () => {
    const foreign = `${root}/foreign.db`;
    const h = await runtime.openSqlite!(foreign);
    h.exec("CREATE TABLE t (x)");
    h.close();
    await assert.rejects(openRegistryDb(runtime, foreign), (e: unknown) => KeelError.is(e, "E_STORE_CORRUPT"));
    const path = `${root}/keep.db`;
    const db = await openRegistryDb(runtime, path);
    await db.publish(record("kept", "1.0.0"), { user: "a", admin: false });
    await db.close();
    const again = await openRegistryDb(runtime, path);
    try {
      assert.equal((await again.snapshot("kept"))?.versions[0]?.version, "1.0.0");
      assert.deepEqual(await again.check(), []);
    } finally {
      await again.close();
    }
  });
});

describe("registry names and versions", () => {
  test("npm's rules for new names, plus ASCII only and no dot segments", () => {
    for (const good of ["a", "keel-plugin", "@acme/x", "a.b_c-d", "a..b"]) assert.equal(nameProblem(good), undefined, good);
    for (const bad of ["", "A", "r\u0435act", "@acme/..", "..", ".x", "_x", "a/b", "@a/b/c", "@a", "a b", " a", "fs", "node_modules", "a~b", "x".repeat(215)]) {
      assert.notEqual(nameProblem(bad), undefined, bad);
    }
    assert.equal(confusableKey("React.DOM"), confusableKey("react-dom"));
    assert.equal(confusableKey("@acme/my_pkg"), "@acme/mypkg");
  });

  test("versions sort as semver", () => {
    const sorted = ["1.0.0", "1.0.0-rc.1", "1.0.0-alpha", "0.9.10", "0.9.9", "1.0.0-rc.10", "10.0.0", "2.0.0"].sort(compareVersions);
    assert.deepEqual(sorted, ["0.9.9", "0.9.10", "1.0.0-alpha", "1.0.0-rc.1", "1.0.0-rc.10", "1.0.0", "2.0.0", "10.0.0"]);
  });
});
