/**
 * The quality score: each check on its own, the totals, the signals stored at publish (and read
 * back), and a schema-1 database gaining the column that holds them.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { createRegistryApp } from "./app.ts";
import { createMemoryBlobStore } from "./blobs.ts";
import { createRegistryDb, openRegistryDb } from "./db.ts";
import { issueToken } from "./mod.ts";
import { LONG_README, parseQualitySignals, QUALITY_CHECKS, type QualityCheckName, type QualityInput, qualitySignals, type QualitySignals, scoreQuality } from "./quality.ts";
import { SCHEMA_VERSION } from "./schema.ts";
import { publishFixture } from "./_web-fixtures.ts";

let runtime: Runtime;
let root: string;

before(async () => {
  runtime = await detectRuntime();
  root = await runtime.fs!.makeTempDir("keel-registry-quality-");
});

after(async () => {
  await runtime.fs!.remove(root);
});

const README = `# Tool\n\n## Usage\n\n\`\`\`ts\nimport tool from "tool";\n\`\`\`\n\n${"Explains what it does. ".repeat(30)}`;

function points(input: QualityInput): Record<QualityCheckName, number> {
  const report = scoreQuality(qualitySignals(input));
  return Object.fromEntries(report.checks.map((c) => [c.name, c.points])) as Record<QualityCheckName, number>;
}

describe("quality: the checks", () => {
  test("an empty package scores 0; a complete plugin scores 100; the maxima add up to 100", () => {
    const empty = scoreQuality(qualitySignals({ packageJson: { name: "a", version: "1.0.0" }, files: [{ path: "package.json" }] }));
    assert.equal(empty.score, 0);
    assert.deepEqual(empty.checks.map((c) => c.name), [...QUALITY_CHECKS]);
    assert.equal(empty.checks.reduce((sum, c) => sum + c.max, 0), 100);
    const full = scoreQuality(qualitySignals({
      packageJson: { name: "a", version: "1.0.0", description: "Does a thing", types: "index.d.ts", keel: { entry: "index.js", capabilities: ["net:api.example.com:443"], kernel: "^1", runtimes: ["deno", "bun"] } },
      readme: README,
      files: [{ path: "index.js" }, { path: "index.d.ts" }, { path: "test/a.test.ts" }],
    }));
    assert.equal(full.score, 100, JSON.stringify(full.checks));
    assert.deepEqual(full.fullTrust, []);
  });

  test("readme: none, short, long", () => {
    assert.equal(points({ packageJson: {} }).readme, 0);
    assert.equal(points({ packageJson: {}, readme: "   \n" }).readme, 0);
    assert.equal(points({ packageJson: {}, readme: "# a\n" }).readme, 10);
    assert.equal(points({ packageJson: {}, readme: "x".repeat(LONG_README) }).readme, 20);
  });

  test("description: a non-empty string", () => {
    assert.equal(points({ packageJson: { description: "Yes" } }).description, 10);
    assert.equal(points({ packageJson: { description: "  " } }).description, 0);
    assert.equal(points({ packageJson: { description: 1 } }).description, 0);
  });

  test("docs: a usage or example section, and a closed code block", () => {
    assert.equal(points({ packageJson: {}, readme: "# a\n\n## Usage\n" }).docs, 8);
    assert.equal(points({ packageJson: {}, readme: "# a\n\n### Examples\n" }).docs, 8);
    assert.equal(points({ packageJson: {}, readme: "## Getting started\n" }).docs, 8);
    assert.equal(points({ packageJson: {}, readme: "## API reference\n" }).docs, 8);
    assert.equal(points({ packageJson: {}, readme: "```\nx\n```\n" }).docs, 7);
    assert.equal(points({ packageJson: {}, readme: "```\nx\n" }).docs, 0, "an unclosed fence is not a block");
    assert.equal(points({ packageJson: {}, readme: README }).docs, 15);
    assert.equal(points({ packageJson: {}, readme: "Usage is simple.\n" }).docs, 0, "a word in a sentence is not a section");
  });

  test("types: the types field, a types condition, .d.ts files or TypeScript source", () => {
    const types = (input: QualityInput) => qualitySignals(input).types;
    assert.equal(types({ packageJson: { types: "index.d.ts" } }), "field");
    assert.equal(types({ packageJson: { typings: "index.d.ts" } }), "field");
    assert.equal(types({ packageJson: { exports: { ".": { import: { types: "./a.d.mts", default: "./a.mjs" } } } } }), "exports");
    assert.equal(types({ packageJson: {}, files: [{ path: "dist/a.d.cts" }] }), "declarations");
    assert.equal(types({ packageJson: {}, files: [{ path: "mod.ts" }] }), "typescript");
    assert.equal(types({ packageJson: {}, files: [{ path: "node_modules/x/a.d.ts" }, { path: "a.js" }] }), null, "bundled dependencies do not count");
    assert.equal(points({ packageJson: { types: "a.d.ts" } }).types, 15);
  });

  test("capabilities: declared (even none) earns points; full trust costs 5 and is named", () => {
    const plugin = (capabilities: string[]) => ({ packageJson: { keel: { entry: "a.js", capabilities, kernel: "^1" } } });
    assert.equal(points({ packageJson: {} }).capabilities, 0);
    assert.equal(points(plugin([])).capabilities, 15);
    assert.equal(points(plugin(["net:api.example.com:443", "env:HOME"])).capabilities, 15);
    const trusted = scoreQuality(qualitySignals(plugin(["gpu", "run:git", "ffi:./lib.so", "read:./data"])));
    assert.equal(trusted.checks.find((c) => c.name === "capabilities")?.points, 10);
    assert.deepEqual(trusted.fullTrust, ["gpu", "run:git", "ffi:./lib.so"]);
    assert.match(trusted.checks.find((c) => c.name === "capabilities")!.detail, /gpu, run:git, ffi:\.\/lib\.so are full trust/);
  });

  test("tests: files that look like tests, outside node_modules; unknown without a file list", () => {
    const tests = (paths: string[]) => qualitySignals({ packageJson: {}, files: paths.map((path) => ({ path })) }).testFiles;
    assert.equal(tests(["a.test.ts", "b.spec.js", "c_test.ts", "d-test.mjs", "test/x.js", "tests/y.ts", "src/__tests__/z.tsx", "spec/w.cjs"]), 8);
    assert.equal(tests(["index.js", "latest.js", "testing.js", "contest/a.js", "node_modules/p/a.test.js"]), 0);
    assert.equal(qualitySignals({ packageJson: {} }).testFiles, null);
    assert.match(scoreQuality(qualitySignals({ packageJson: {} })).checks.find((c) => c.name === "tests")!.detail, /Unknown/);
    assert.equal(points({ packageJson: {}, files: [{ path: "a.test.ts" }] }).tests, 10);
  });

  test("runtimes: keel.runtimes, engines keys and exports conditions; 10 for one, 15 for two or more", () => {
    const runtimes = (pj: Record<string, unknown>) => qualitySignals({ packageJson: pj }).runtimes;
    assert.deepEqual(runtimes({ keel: { runtimes: ["bun", "deno"] } }), ["deno", "bun"]);
    assert.deepEqual(runtimes({ engines: { node: ">=20", npm: ">=9" } }), ["node"]);
    assert.deepEqual(runtimes({ engines: { deno: ">=2", bun: ">=1" } }), ["deno", "bun"]);
    assert.deepEqual(runtimes({ exports: { ".": { workerd: "./w.js", deno: "./d.js", default: "./i.js" } } }), ["deno", "edge"]);
    assert.deepEqual(runtimes({ keel: { runtimes: ["browser", 1] }, engines: "node" }), []);
    assert.equal(points({ packageJson: { engines: { node: "*" } } }).runtimes, 10);
    assert.equal(points({ packageJson: { engines: { node: "*", deno: "*" } } }).runtimes, 15);
  });

  test("hostile package.json shapes do not throw", () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const pj of [{ keel: null }, { keel: [] }, { keel: { capabilities: "net" } }, { exports: cyclic }, { exports: [[["types"]]] }, { engines: [] }, { types: 5 }]) {
      scoreQuality(qualitySignals({ packageJson: pj as Record<string, unknown>, readme: "#".repeat(10_000) }));
    }
    assert.equal(scoreQuality(qualitySignals({ packageJson: { keel: { capabilities: ["not a capability!"] } } })).fullTrust.length, 1, "an unparsable capability counts as full trust");
  });
});

describe("quality: stored signals", () => {
  test("round trip through JSON; malformed JSON or fields are read safely", () => {
    const signals: QualitySignals = qualitySignals({ packageJson: { description: "x", engines: { node: "*" }, keel: { capabilities: ["gpu"] } }, readme: README, files: [{ path: "a.test.js" }] });
    assert.deepEqual(parseQualitySignals(JSON.stringify(signals)), signals);
    assert.equal(parseQualitySignals(null), undefined);
    assert.equal(parseQualitySignals("{"), undefined);
    assert.equal(parseQualitySignals("[1]"), undefined);
    const junk = parseQualitySignals(JSON.stringify({ readmeLength: -5, codeBlocks: "x", types: "evil", runtimes: ["deno", "<b>"], testFiles: 1.5, capabilities: [1, "net"] }))!;
    assert.deepEqual(junk, { readmeLength: 0, usageSection: false, codeBlocks: 0, description: false, types: null, capabilities: ["net"], testFiles: 0, runtimes: ["deno"] });
  });

  test("publish stores the signals read from the tarball with the version", async () => {
    const db = await createRegistryDb(await runtime.openSqlite!(":memory:"));
    try {
      const app = createRegistryApp({ db, blobs: createMemoryBlobStore(), baseUrl: "http://registry.test", signingKeys: [] });
      const token = (await issueToken(db, { user: "me", scope: "publish" })).token;
      await publishFixture({ fetch: (r) => app.fetch(r), baseUrl: "http://registry.test", token }, {
        name: "scored",
        version: "1.0.0",
        packageJson: { description: "Scored", keel: { entry: "index.js", capabilities: ["run:git"], kernel: "^1", runtimes: ["node"] } },
        readme: README,
        files: { "index.d.ts": "export {};\n", "test/index.test.js": "\n", "node_modules/dep/x.test.js": "\n" },
      });
      const stored = parseQualitySignals((await db.getVersion("scored", "1.0.0"))!.quality);
      assert.deepEqual(stored, {
        readmeLength: README.trim().length,
        usageSection: true,
        codeBlocks: 1,
        description: true,
        types: "declarations",
        capabilities: ["run:git"],
        testFiles: 1,
        runtimes: ["node"],
      });
      assert.equal(scoreQuality(stored!).score, 20 + 10 + 15 + 15 + 10 + 10 + 10);
    } finally {
      await db.close();
    }
  });

  test("a schema-1 database gains the quality column when opened; old rows read as null", async () => {
    const path = `${root}/old.db`;
    await (await openRegistryDb(runtime, path)).close();
    const h = await runtime.openSqlite!(path);
    try {
      h.exec("ALTER TABLE versions DROP COLUMN quality; PRAGMA user_version = 1");
      h.run("INSERT INTO packages (name, scope, confusable, owner, created_at, modified_at, rev) VALUES ('old', NULL, 'old', 'me', 1, 1, 1)");
      h.run(`INSERT INTO versions (name, version, seq, manifest, abbreviated, readme, integrity, shasum, size, unpacked_size, file_count, signatures, blob_key, published_at, publisher)
        VALUES ('old', '1.0.0', 1, '{"name":"old","version":"1.0.0","description":"Old"}', '{}', '# Old', 'sha512-AAAA', '00', 1, 1, 1, '[]', 'k', 1, 'me')`);
    } finally {
      h.close();
    }
    const db = await openRegistryDb(runtime, path);
    try {
      assert.equal((await db.getVersion("old", "1.0.0"))?.quality, null);
      // Its page scores it from the manifest and readme, saying what is unknown.
      const app = createRegistryApp({ db, blobs: createMemoryBlobStore(), baseUrl: "http://registry.test", signingKeys: [] });
      const page = await (await app.fetch(new Request("http://registry.test/-/web/package/old"))).text();
      assert.match(page, /<tr><td>description<\/td><td class="num">10\/10<\/td>/);
      assert.match(page, /Unknown: the file list was not recorded for this version/);
    } finally {
      await db.close();
    }
    const check = await runtime.openSqlite!(path);
    try {
      assert.equal(check.values("PRAGMA user_version")[0]![0], SCHEMA_VERSION);
      assert.ok(check.all("PRAGMA table_info(versions)").some((c) => c["name"] === "quality"));
    } finally {
      check.close();
    }
  });
});
