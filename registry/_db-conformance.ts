/**
 * The RegistryDb conformance suite: the SQLite (`db.test.ts`) and Postgres (`db-postgres.test.ts`)
 * databases both call {@link testRegistryDb}, so the registry behaves alike on either.
 * @module
 */

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../core/errors.ts";
import { type Actor, publishAll, type PublishRecord, type RegistryDb, type SearchQuery } from "./db.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** A publish record with harmless defaults. */
function record(name: string, version: string, more: Partial<PublishRecord> = {}): PublishRecord {
  return {
    name,
    version,
    manifest: JSON.stringify({ name, version }),
    abbreviated: JSON.stringify({ name, version }),
    readme: null,
    integrity: `sha512-${version}`,
    shasum: "0".repeat(40),
    size: 1,
    unpackedSize: 2,
    fileCount: 1,
    signatures: "[]",
    blobKey: `sha512/00/${name.replace(/[@/]/g, "_")}-${version}.tgz`,
    at: 1_000,
    tags: ["latest"],
    description: null,
    keywords: null,
    capabilities: null,
    maxVersions: 100,
    ...more,
  };
}

function user(name: string): Actor {
  return { user: name, admin: false };
}

const ADMIN: Actor = { user: "root", admin: true };

function code(expected: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(KeelError.is(e), `expected a KeelError ${expected}, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    assert.equal((e as KeelError).code, expected, (e as KeelError).message);
    return true;
  };
}

function query(more: Partial<SearchQuery>): SearchQuery {
  return { words: [], keywords: [], capabilities: [], from: 0, size: 20, ...more };
}

/**
 * Registers the RegistryDb conformance tests with `node:test`. `open` is called once for the
 * suite and again where a test needs a second connection: every call must open a new connection
 * to ONE database, empty at first (the tests share it, each with its own package names).
 * `cleanup` runs last, after every database opened here is closed.
 */
export function testRegistryDb(name: string, open: () => Promise<RegistryDb>, cleanup?: () => Promise<void>): void {
  describe(`RegistryDb conformance: ${name}`, () => {
    let db: RegistryDb;

    before(async () => {
      db = await open();
    });

    after(async () => {
      await db?.close();
      await cleanup?.();
    });

    test("publish, then snapshot, getPackage, getVersion, rev and versionCount give back what was stored", async () => {
      assert.equal(await db.rev("first"), undefined);
      assert.equal(await db.snapshot("first"), undefined);
      assert.equal(await db.getPackage("first"), undefined);
      const quality = JSON.stringify({ readmeLength: 3, runtimes: ["deno"] });
      const rev = await db.publish(
        record("first", "1.0.0", {
          readme: "# first\n",
          description: "The first package",
          keywords: ["alpha", "Beta"],
          capabilities: ["net:api.example.com:443"],
          quality,
          size: 5_000_000_000,
          unpackedSize: 6_000_000_000,
          fileCount: 12,
          signatures: '[{"keyid":"k","sig":"s"}]',
          at: 1_700_000_000_000,
        }),
        user("alice"),
      );
      assert.equal(rev, 1);
      assert.equal(await db.rev("first"), 1);
      assert.equal(await db.versionCount("first"), 1);
      assert.deepEqual(await db.getPackage("first"), {
        name: "first",
        scope: null,
        owner: "alice",
        createdAt: 1_700_000_000_000,
        modifiedAt: 1_700_000_000_000,
        rev: 1,
        description: "The first package",
        keywords: ["alpha", "Beta"],
        capabilities: ["net:api.example.com:443"],
      });
      const version = await db.getVersion("first", "1.0.0");
      assert.deepEqual(version, {
        name: "first",
        version: "1.0.0",
        seq: 1,
        manifest: JSON.stringify({ name: "first", version: "1.0.0" }),
        abbreviated: JSON.stringify({ name: "first", version: "1.0.0" }),
        readme: "# first\n",
        integrity: "sha512-1.0.0",
        shasum: "0".repeat(40),
        size: 5_000_000_000,
        unpackedSize: 6_000_000_000,
        fileCount: 12,
        signatures: '[{"keyid":"k","sig":"s"}]',
        blobKey: "sha512/00/first-1.0.0.tgz",
        publishedAt: 1_700_000_000_000,
        publisher: "alice",
        deprecated: null,
        yankedAt: null,
        yankReason: null,
        quality,
      });
      const snap = await db.snapshot("first");
      assert.deepEqual(snap?.versions, [version]);
      assert.deepEqual(snap?.tags, { latest: "1.0.0" });
      assert.deepEqual(snap?.unpublished, {});
      assert.equal(await db.getVersion("first", "2.0.0"), undefined);
    });

    test("versions come back in publish order with seq 1, 2, ..., and each publish bumps the revision", async () => {
      const order = ["2.0.0", "1.0.0", "1.0.0-rc.1", "10.0.0", "1.5.0"];
      let last = 0;
      for (const v of order) {
        const rev = await db.publish(record("ordered", v, { at: 2_000 + last }), user("alice"));
        assert.equal(rev, last + 1);
        last = rev;
      }
      const snap = await db.snapshot("ordered");
      assert.deepEqual(snap?.versions.map((v) => v.version), order);
      assert.deepEqual(snap?.versions.map((v) => v.seq), [1, 2, 3, 4, 5]);
      assert.equal(snap?.tags.latest, "1.5.0", "the latest publish with the tag holds it");
      assert.equal(snap?.pkg.modifiedAt, 2_004);
      assert.equal(await db.versionCount("ordered"), 5);
    });

    test("a second publish of a name@version fails with E_REGISTRY_VERSION_EXISTS and changes nothing", async () => {
      await db.publish(record("twice", "1.0.0"), user("alice"));
      await assert.rejects(db.publish(record("twice", "1.0.0", { integrity: "sha512-other" }), user("alice")), code("E_REGISTRY_VERSION_EXISTS"));
      await assert.rejects(db.publish(record("twice", "1.0.0"), ADMIN), code("E_REGISTRY_VERSION_EXISTS"));
      assert.equal(await db.rev("twice"), 1);
      assert.equal((await db.getVersion("twice", "1.0.0"))?.integrity, "sha512-1.0.0");
      assert.deepEqual(await db.check(), []);
    });

    test("two connections racing to publish one name@version: exactly one wins, the other gets E_REGISTRY_VERSION_EXISTS", async () => {
      const other = await open();
      try {
        for (let i = 0; i < 5; i++) {
          const results = await Promise.allSettled([
            db.publish(record("racer", `1.0.${i}`, { integrity: "sha512-a" }), user("alice")),
            other.publish(record("racer", `1.0.${i}`, { integrity: "sha512-b" }), user("alice")),
          ]);
          const won = results.filter((r) => r.status === "fulfilled");
          const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
          assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status === "rejected" ? String(r.reason) : r.value)));
          assert.equal(lost.length, 1);
          code("E_REGISTRY_VERSION_EXISTS")(lost[0]!.reason);
        }
        const snap = await other.snapshot("racer");
        assert.deepEqual(snap?.versions.map((v) => v.seq), [1, 2, 3, 4, 5]);
        assert.equal(snap?.pkg.rev, 5);
      } finally {
        await other.close();
      }
    });

    test("two connections publishing different versions of one package at once: all land, with distinct seq", async () => {
      const other = await open();
      try {
        const jobs: Promise<number>[] = [];
        for (let i = 0; i < 20; i++) jobs.push((i % 2 === 0 ? db : other).publish(record("busy", `1.0.${i}`), user("alice")));
        const revs = await Promise.all(jobs);
        assert.deepEqual([...revs].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
        const snap = await db.snapshot("busy");
        assert.equal(snap?.versions.length, 20);
        assert.deepEqual(snap?.versions.map((v) => v.seq), Array.from({ length: 20 }, (_, i) => i + 1));
        assert.equal(await db.rev("busy"), 20);
      } finally {
        await other.close();
      }
    });

    test("two connections creating the same new package or two look-alikes at once: one owns it, the other is refused", async () => {
      const other = await open();
      try {
        const same = await Promise.allSettled([
          db.publish(record("claimed", "1.0.0"), user("alice")),
          other.publish(record("claimed", "2.0.0"), user("bob")),
        ]);
        assert.equal(same.filter((r) => r.status === "fulfilled").length, 1);
        code("E_REGISTRY_FORBIDDEN")((same.find((r) => r.status === "rejected") as PromiseRejectedResult).reason);
        const alike = await Promise.allSettled([
          db.publish(record("look-alike", "1.0.0"), user("alice")),
          other.publish(record("lookalike", "1.0.0"), user("bob")),
        ]);
        assert.equal(alike.filter((r) => r.status === "fulfilled").length, 1);
        code("E_REGISTRY_FORBIDDEN")((alike.find((r) => r.status === "rejected") as PromiseRejectedResult).reason);
        assert.equal([await db.getPackage("look-alike"), await db.getPackage("lookalike")].filter((p) => p !== undefined).length, 1);
      } finally {
        await other.close();
      }
    });

    test("another user cannot publish to a package; an admin can, and the owner stays", async () => {
      await db.publish(record("owned", "1.0.0"), user("alice"));
      await assert.rejects(db.publish(record("owned", "2.0.0"), user("bob")), code("E_REGISTRY_FORBIDDEN"));
      assert.equal(await db.getVersion("owned", "2.0.0"), undefined);
      await db.publish(record("owned", "2.0.0"), ADMIN);
      const pkg = await db.getPackage("owned");
      assert.equal(pkg?.owner, "alice");
      assert.equal((await db.getVersion("owned", "2.0.0"))?.publisher, "root");
      await assert.rejects(db.setTag("owned", "beta", "1.0.0", user("bob")), code("E_REGISTRY_FORBIDDEN"));
      await assert.rejects(db.deprecate("owned", new Map([["1.0.0", "no"]]), user("bob")), code("E_REGISTRY_FORBIDDEN"));
      await assert.rejects(db.yank("owned", "1.0.0", "bad", user("bob"), 5_000), code("E_REGISTRY_FORBIDDEN"));
      await assert.rejects(db.unpublish("owned", ["1.0.0"], user("bob"), { at: 1_001, windowMs: DAY }), code("E_REGISTRY_FORBIDDEN"));
      await assert.rejects(db.removeTag("owned", "latest", user("bob")), code("E_REGISTRY_FORBIDDEN"));
      assert.equal(await db.rev("owned"), 2);
    });

    test("a scope belongs to the users whose packages are in it", async () => {
      await db.publish(record("@acme/one", "1.0.0"), user("alice"));
      assert.equal((await db.getPackage("@acme/one"))?.scope, "acme");
      await assert.rejects(db.publish(record("@acme/two", "1.0.0"), user("bob")), (e: unknown) => {
        code("E_REGISTRY_FORBIDDEN")(e);
        assert.match((e as Error).message, /"@acme" belongs to "alice"/);
        return true;
      });
      assert.equal(await db.getPackage("@acme/two"), undefined);
      await db.publish(record("@acme/two", "1.0.0"), user("alice"));
      await db.publish(record("@acme/three", "1.0.0"), ADMIN);
      assert.equal((await db.getPackage("@acme/three"))?.owner, "root");
      await db.publish(record("@bobs/one", "1.0.0"), user("bob"));
      assert.equal((await db.getPackage("@bobs/one"))?.owner, "bob");
    });

    test("look-alike names are refused: case, '-', '.' and '_' do not make a new name; other scopes do", async () => {
      await db.publish(record("react-dom", "1.0.0"), user("alice"));
      for (const name of ["reactdom", "react.dom", "react_dom", "re-act-dom"]) {
        await assert.rejects(db.publish(record(name, "1.0.0"), user("bob")), (e: unknown) => {
          code("E_REGISTRY_FORBIDDEN")(e);
          assert.match((e as Error).message, /too similar to the existing package "react-dom"/);
          return true;
        });
        await assert.rejects(db.publish(record(name, "1.0.0"), ADMIN), code("E_REGISTRY_FORBIDDEN"), "not even an admin");
        assert.equal(await db.getPackage(name), undefined);
      }
      await db.publish(record("@other/react-dom", "1.0.0"), user("bob"));
      await db.publish(record("react-dom", "1.1.0"), user("alice"));
      assert.deepEqual(await db.check(), []);
    });

    test("publish is atomic: a refused publish leaves nothing behind", async () => {
      await db.publish(record("atomic-a", "1.0.0"), user("alice"));
      await assert.rejects(db.publish(record("atomica", "1.0.0"), user("bob")), code("E_REGISTRY_FORBIDDEN"));
      await assert.rejects(db.publish(record("atomic-a", "1.0.0"), user("alice")), code("E_REGISTRY_VERSION_EXISTS"));
      await assert.rejects(db.publish(record("atomic-a", "2.0.0"), user("bob")), code("E_REGISTRY_FORBIDDEN"));
      await assert.rejects(db.publish(record("atomic-a", "3.0.0", { maxVersions: 1, tags: ["latest", "next"], description: "x" }), user("alice")), code("E_REGISTRY_TOO_LARGE"));
      assert.equal(await db.getPackage("atomica"), undefined);
      const snap = await db.snapshot("atomic-a");
      assert.deepEqual(snap?.versions.map((v) => v.version), ["1.0.0"]);
      assert.deepEqual(snap?.tags, { latest: "1.0.0" });
      assert.equal(snap?.pkg.description, null);
      assert.equal(snap?.pkg.rev, 1);
      assert.deepEqual(await db.check(), []);
    });

    test("maxVersions counts every version ever published, unpublished ones too", async () => {
      await db.publish(record("capped", "1.0.0", { maxVersions: 2 }), user("alice"));
      await db.publish(record("capped", "1.0.1", { maxVersions: 2, at: 2_000 }), user("alice"));
      await assert.rejects(db.publish(record("capped", "1.0.2", { maxVersions: 2 }), user("alice")), (e: unknown) => {
        code("E_REGISTRY_TOO_LARGE")(e);
        assert.match((e as Error).message, /"capped" has 2 versions/);
        return true;
      });
      await db.unpublish("capped", ["1.0.1"], user("alice"), { at: 3_000, windowMs: DAY });
      assert.equal(await db.versionCount("capped"), 2);
      await assert.rejects(db.publish(record("capped", "1.0.2", { maxVersions: 2 }), user("alice")), code("E_REGISTRY_TOO_LARGE"));
      await db.publish(record("capped", "1.0.2", { maxVersions: 3 }), user("alice"));
      assert.equal((await db.getVersion("capped", "1.0.2"))?.seq, 3);
    });

    test("tags: publish sets them, setTag moves them, removeTag drops them; missing, yanked and foreign versions are refused", async () => {
      await db.publish(record("tagged", "1.0.0", { tags: ["latest", "stable"] }), user("alice"));
      await db.publish(record("tagged", "2.0.0-beta.1", { tags: ["beta"] }), user("alice"));
      assert.deepEqual((await db.snapshot("tagged"))?.tags, { beta: "2.0.0-beta.1", latest: "1.0.0", stable: "1.0.0" });
      const rev = (await db.rev("tagged"))!;
      await db.setTag("tagged", "stable", "2.0.0-beta.1", user("alice"));
      await db.setTag("tagged", "next", "2.0.0-beta.1", ADMIN);
      assert.equal(await db.rev("tagged"), rev + 2);
      assert.deepEqual((await db.snapshot("tagged"))?.tags, { beta: "2.0.0-beta.1", latest: "1.0.0", next: "2.0.0-beta.1", stable: "2.0.0-beta.1" });
      assert.equal(await db.removeTag("tagged", "next", user("alice")), true);
      assert.equal(await db.removeTag("tagged", "next", user("alice")), false);
      assert.equal(await db.rev("tagged"), rev + 3, "removing a missing tag changes nothing");
      await assert.rejects(db.setTag("tagged", "x", "9.9.9", user("alice")), code("E_REGISTRY_NOT_FOUND"));
      await assert.rejects(db.setTag("nonexistent-pkg", "x", "1.0.0", user("alice")), code("E_REGISTRY_NOT_FOUND"));
      await assert.rejects(db.removeTag("nonexistent-pkg", "x", user("alice")), code("E_REGISTRY_NOT_FOUND"));
      await db.yank("tagged", "2.0.0-beta.1", "broken", user("alice"), 9_000);
      await assert.rejects(db.setTag("tagged", "x", "2.0.0-beta.1", user("alice")), code("E_REGISTRY_FORBIDDEN"));
      assert.deepEqual(await db.check(), []);
    });

    test("only a publish that sets latest updates the package's description, keywords and capabilities", async () => {
      await db.publish(record("described", "1.0.0", { description: "one", keywords: ["k1"], capabilities: ["fs:read"] }), user("alice"));
      await db.publish(record("described", "2.0.0-rc.1", { tags: ["next"], description: "two", keywords: ["k2"], capabilities: null }), user("alice"));
      let pkg = await db.getPackage("described");
      assert.deepEqual([pkg?.description, pkg?.keywords, pkg?.capabilities], ["one", ["k1"], ["fs:read"]]);
      await db.publish(record("described", "2.0.0", { description: null, keywords: null, capabilities: [] }), user("alice"));
      pkg = await db.getPackage("described");
      assert.deepEqual([pkg?.description, pkg?.keywords, pkg?.capabilities], [null, null, []]);
      await db.publish(record("described", "3.0.0", { tags: [] }), user("alice"));
      assert.deepEqual((await db.snapshot("described"))?.tags, { latest: "2.0.0", next: "2.0.0-rc.1" });
    });

    test("deprecate sets and clears messages, counts only real changes, and bumps the revision only then", async () => {
      await db.publish(record("old", "1.0.0"), user("alice"));
      await db.publish(record("old", "1.1.0"), user("alice"));
      const rev = (await db.rev("old"))!;
      assert.equal(await db.deprecate("old", new Map([["1.0.0", "Use 1.1"], ["1.1.0", "All old"], ["9.9.9", "none"]]), user("alice")), 2);
      assert.equal(await db.rev("old"), rev + 1);
      assert.equal((await db.getVersion("old", "1.0.0"))?.deprecated, "Use 1.1");
      assert.equal(await db.deprecate("old", new Map([["1.0.0", "Use 1.1"]]), user("alice")), 0);
      assert.equal(await db.rev("old"), rev + 1);
      assert.equal(await db.deprecate("old", new Map([["1.0.0", "Use 1.1 now"], ["1.1.0", null]]), ADMIN), 2);
      assert.equal((await db.getVersion("old", "1.0.0"))?.deprecated, "Use 1.1 now");
      assert.equal((await db.getVersion("old", "1.1.0"))?.deprecated, null);
      assert.equal(await db.deprecate("old", new Map([["1.1.0", null]]), user("alice")), 0);
      await assert.rejects(db.deprecate("nonexistent-pkg", new Map([["1.0.0", "x"]]), user("alice")), code("E_REGISTRY_NOT_FOUND"));
    });

    test("yank hides nothing from getVersion but marks it; restore clears it; a missing version is not found", async () => {
      await db.publish(record("yanky", "1.0.0"), user("alice"));
      await db.yank("yanky", "1.0.0", "Leaks tokens", user("alice"), 7_000);
      let v = await db.getVersion("yanky", "1.0.0");
      assert.deepEqual([v?.yankedAt, v?.yankReason], [7_000, "Leaks tokens"]);
      assert.equal((await db.snapshot("yanky"))?.versions.length, 1, "a yanked version stays in the snapshot");
      assert.equal((await db.getPackage("yanky"))?.modifiedAt, 7_000);
      await db.yank("yanky", "1.0.0", null, user("alice"), 8_000);
      v = await db.getVersion("yanky", "1.0.0");
      assert.deepEqual([v?.yankedAt, v?.yankReason], [null, null]);
      assert.equal(await db.rev("yanky"), 3);
      await assert.rejects(db.yank("yanky", "2.0.0", "x", user("alice"), 9_000), code("E_REGISTRY_NOT_FOUND"));
      await assert.rejects(db.yank("nonexistent-pkg", "1.0.0", "x", user("alice"), 9_000), code("E_REGISTRY_NOT_FOUND"));
    });

    test("unpublish within the window: the version leaves the documents but keeps its number; latest moves to the highest release", async () => {
      await db.publish(record("gone", "1.0.0", { at: 1_000 }), user("alice"));
      await db.publish(record("gone", "1.2.0", { at: 2_000 }), user("alice"));
      await db.publish(record("gone", "2.0.0-rc.1", { at: 3_000 }), user("alice"));
      await db.publish(record("gone", "1.3.0", { at: 4_000, tags: ["latest", "stable"] }), user("alice"));
      const keys = await db.unpublish("gone", ["1.3.0"], user("alice"), { at: 5_000, windowMs: HOUR });
      assert.deepEqual(keys, ["sha512/00/gone-1.3.0.tgz"]);
      const snap = await db.snapshot("gone");
      assert.deepEqual(snap?.versions.map((v) => v.version), ["1.0.0", "1.2.0", "2.0.0-rc.1"]);
      assert.deepEqual(snap?.tags, { latest: "1.2.0" }, "tags on it go, latest moves to the highest release, not the prerelease");
      assert.deepEqual(snap?.unpublished, { "1.3.0": 5_000 });
      assert.equal(await db.getVersion("gone", "1.3.0"), undefined);
      assert.equal(await db.versionCount("gone"), 4);
      await assert.rejects(db.publish(record("gone", "1.3.0"), user("alice")), code("E_REGISTRY_VERSION_EXISTS"), "its number is never reused");
      assert.equal(await db.blobReferenced("sha512/00/gone-1.3.0.tgz"), true, "an unpublished version's row still names its blob");
      assert.deepEqual(await db.check(), []);
    });

    test("unpublish after the window is refused, a missing version is not found, and a refused list changes nothing", async () => {
      await db.publish(record("late", "1.0.0", { at: 1_000 }), user("alice"));
      await db.publish(record("late", "1.1.0", { at: 1_000 + 70 * HOUR }), user("alice"));
      await assert.rejects(db.unpublish("late", ["1.1.0", "1.0.0"], user("alice"), { at: 1_000 + 73 * HOUR, windowMs: 72 * HOUR }), (e: unknown) => {
        code("E_REGISTRY_FORBIDDEN")(e);
        assert.match((e as Error).message, /late@1\.0\.0 was published 73 hours ago; versions can be unpublished only within 72 hours/);
        return true;
      });
      await assert.rejects(db.unpublish("late", ["1.1.0", "3.0.0"], user("alice"), { at: 1_000 + 73 * HOUR, windowMs: 72 * HOUR }), code("E_REGISTRY_NOT_FOUND"));
      await assert.rejects(db.unpublish("nonexistent-pkg", ["1.0.0"], user("alice"), { at: 1_000, windowMs: HOUR }), code("E_REGISTRY_NOT_FOUND"));
      const snap = await db.snapshot("late");
      assert.deepEqual(snap?.versions.map((v) => v.version), ["1.0.0", "1.1.0"]);
      assert.deepEqual(snap?.unpublished, {});
      assert.equal(snap?.pkg.rev, 2);
    });

    test("unpublish returns only blobs no live version still uses; unpublishing every version keeps the name its owner's", async () => {
      const shared = "sha512/00/shared-blob.tgz";
      await db.publish(record("blobby", "1.0.0", { blobKey: shared }), user("alice"));
      await db.publish(record("blobby-twin", "1.0.0", { blobKey: shared }), user("alice"));
      await db.publish(record("blobby", "1.1.0"), user("alice"));
      assert.deepEqual(await db.unpublish("blobby", ["1.0.0"], user("alice"), { at: 2_000, windowMs: HOUR }), [], "another package's version uses it");
      assert.equal(await db.blobReferenced(shared), true);
      assert.equal(await db.blobReferenced("sha512/00/never.tgz"), false);
      assert.deepEqual(await db.unpublish("blobby", ["1.1.0"], user("alice"), { at: 2_000, windowMs: HOUR }), ["sha512/00/blobby-1.1.0.tgz"]);
      const snap = await db.snapshot("blobby");
      assert.deepEqual(snap?.versions, []);
      assert.deepEqual(snap?.tags, {});
      assert.deepEqual(Object.keys(snap?.unpublished ?? {}).sort(), ["1.0.0", "1.1.0"]);
      await assert.rejects(db.publish(record("blobby", "2.0.0"), user("bob")), code("E_REGISTRY_FORBIDDEN"), "nobody else takes the name");
      await db.publish(record("blobby", "2.0.0"), user("alice"));
      assert.deepEqual((await db.snapshot("blobby"))?.tags, { latest: "2.0.0" });
    });

    test("downloads are counted per version and UTC day, and summed per version", async () => {
      await db.publish(record("popular", "1.0.0"), user("alice"));
      await db.publish(record("popular", "1.1.0"), user("alice"));
      assert.deepEqual(await db.downloads("popular"), {});
      const day1 = Date.UTC(2025, 0, 31, 23, 59);
      const day2 = Date.UTC(2025, 1, 1, 0, 1);
      await Promise.all([
        db.countDownload("popular", "1.0.0", day1),
        db.countDownload("popular", "1.0.0", day1),
        db.countDownload("popular", "1.0.0", day2),
        db.countDownload("popular", "1.1.0", day2),
      ]);
      assert.deepEqual(await db.downloads("popular"), { "1.0.0": 3, "1.1.0": 1 });
      // The app writes a second's downloads as one increment.
      await db.countDownload("popular", "1.1.0", day2, 41);
      assert.deepEqual(await db.downloads("popular"), { "1.0.0": 3, "1.1.0": 42 });
      assert.deepEqual(await db.downloads("nonexistent-pkg"), {});
    });

    test("search: words match the name, description or keywords, case-insensitively; every word must match", async () => {
      await db.publish(record("@srch/widget-kit", "1.0.0", { description: "Builds Widgets fast", keywords: ["ui", "Gadget"] }), user("sam"));
      await db.publish(record("@srch/gizmo", "1.0.0", { description: "A gizmo for widgets", keywords: ["tools"] }), user("sam"));
      await db.publish(record("@srch/plain", "1.0.0", { description: null, keywords: null }), user("sam"));
      const names = async (q: Partial<SearchQuery>) => (await db.search(query({ scope: "srch", ...q }))).hits.map((h) => h.pkg.name).sort();
      assert.deepEqual(await names({ words: ["WIDGET"] }), ["@srch/gizmo", "@srch/widget-kit"]);
      assert.deepEqual(await names({ words: ["gadget"] }), ["@srch/widget-kit"]);
      assert.deepEqual(await names({ words: ["widget", "tools"] }), ["@srch/gizmo"]);
      assert.deepEqual(await names({ words: ["plain"] }), ["@srch/plain"]);
      assert.deepEqual(await names({ words: ["nothing-like-this"] }), []);
      assert.deepEqual(await names({ words: ["%"] }), [], "LIKE wildcards are matched literally");
      assert.deepEqual(await names({ words: ["_"] }), []);
      assert.deepEqual(await names({}), ["@srch/gizmo", "@srch/plain", "@srch/widget-kit"]);
      const hit = (await db.search(query({ scope: "srch", words: ["gizmo"] }))).hits[0];
      assert.deepEqual([hit?.version, hit?.publisher, hit?.publishedAt, hit?.pkg.owner], ["1.0.0", "sam", 1_000, "sam"]);
    });

    test("search filters: keyword (exact, any case), scope, capability (kind or full string), runtime", async () => {
      const q = (runtimes: string[]) => JSON.stringify({ readmeLength: 1, runtimes });
      await db.publish(record("@flt/net-tool", "1.0.0", { keywords: ["HTTP", "client"], capabilities: ["net:api.example.com:443", "env:HOME"], quality: q(["deno", "bun"]) }), user("fay"));
      await db.publish(record("@flt/fs-tool", "1.0.0", { keywords: ["files"], capabilities: ["fs:read:/tmp"], quality: q(["node"]) }), user("fay"));
      await db.publish(record("@flt/network-ish", "1.0.0", { keywords: ["https"], capabilities: ["network"], quality: "not json" }), user("fay"));
      await db.publish(record("@flt/bare", "1.0.0", { quality: null }), user("fay"));
      const names = async (more: Partial<SearchQuery>) => (await db.search(query({ scope: "flt", ...more }))).hits.map((h) => h.pkg.name).sort();
      assert.deepEqual(await names({ keywords: ["http"] }), ["@flt/net-tool"], "keywords match whole, not a part");
      assert.deepEqual(await names({ keywords: ["http", "client"] }), ["@flt/net-tool"]);
      assert.deepEqual(await names({ keywords: ["http", "files"] }), []);
      assert.deepEqual(await names({ capabilities: ["net"] }), ["@flt/net-tool"], '"net" matches "net:…", not "network"');
      assert.deepEqual(await names({ capabilities: ["network"] }), ["@flt/network-ish"]);
      assert.deepEqual(await names({ capabilities: ["net:api.example.com:443"] }), ["@flt/net-tool"]);
      assert.deepEqual(await names({ capabilities: ["fs", "env"] }), []);
      assert.deepEqual(await names({ capabilities: ["net", "env"] }), ["@flt/net-tool"]);
      assert.deepEqual(await names({ runtimes: ["deno"] }), ["@flt/net-tool"]);
      assert.deepEqual(await names({ runtimes: ["deno", "bun"] }), ["@flt/net-tool"]);
      assert.deepEqual(await names({ runtimes: ["deno", "node"] }), []);
      assert.deepEqual(await names({ runtimes: ["node"] }), ["@flt/fs-tool"]);
      assert.deepEqual(await names({ runtimes: ["edge"] }), []);
      assert.deepEqual(await names({ runtimes: [] }), ["@flt/bare", "@flt/fs-tool", "@flt/net-tool", "@flt/network-ish"]);
      assert.deepEqual(await names({ scope: "nobody-here" }), []);
    });

    test("search shows the latest tag's version (else the newest live one), skips packages with none, and pages with a true total", async () => {
      await db.publish(record("@pg/a-one", "1.0.0", { at: 10 }), user("pat"));
      await db.publish(record("@pg/a-one", "2.0.0-rc.1", { at: 11, tags: ["next"] }), user("pat"));
      await db.publish(record("@pg/b-two", "1.0.0", { at: 20 }), user("pat"));
      await db.yank("@pg/b-two", "1.0.0", "bad", user("pat"), 21);
      await db.publish(record("@pg/c-three", "1.0.0", { at: 30 }), user("pat"));
      await db.publish(record("@pg/c-three", "1.1.0", { at: 31 }), user("pat"));
      await db.yank("@pg/c-three", "1.1.0", "bad", user("pat"), 32);
      await db.publish(record("@pg/d-four", "1.0.0", { at: 40 }), user("pat"));
      await db.unpublish("@pg/d-four", ["1.0.0"], user("pat"), { at: 41, windowMs: HOUR });
      await db.publish(record("@pg/e-five", "1.0.0", { at: 50 }), user("pat"));
      const all = await db.search(query({ scope: "pg" }));
      assert.equal(all.total, 3, "the wholly yanked and the wholly unpublished packages are not found");
      const byName = Object.fromEntries(all.hits.map((h) => [h.pkg.name, h.version]));
      assert.deepEqual(byName, { "@pg/a-one": "1.0.0", "@pg/c-three": "1.0.0", "@pg/e-five": "1.0.0" });
      assert.deepEqual(all.hits.map((h) => h.pkg.name), ["@pg/e-five", "@pg/c-three", "@pg/a-one"], "most recently changed first");
      const page = await db.search(query({ scope: "pg", from: 1, size: 1 }));
      assert.equal(page.total, 3);
      assert.deepEqual(page.hits.map((h) => h.pkg.name), ["@pg/c-three"]);
      const beyond = await db.search(query({ scope: "pg", from: 10, size: 5 }));
      assert.deepEqual([beyond.total, beyond.hits.length], [3, 0]);
      const exact = await db.search(query({ scope: "pg", words: ["a-one"] }));
      assert.deepEqual(exact.hits.map((h) => h.pkg.name), ["@pg/a-one"]);
      await db.publish(record("@pg/a-one-extra", "1.0.0", { at: 60 }), user("pat"));
      const ranked = await db.search(query({ scope: "pg", words: ["a-one"] }));
      assert.deepEqual(ranked.hits.map((h) => h.pkg.name), ["@pg/a-one", "@pg/a-one-extra"], "the exact name (after its scope) comes first");
    });

    test("users: created once, read back; a taken name is refused", async () => {
      assert.equal(await db.getUser("uma"), undefined);
      assert.equal(await db.createUser({ name: "uma", email: "uma@example.com", passwordHash: "pbkdf2-sha256$1$a$b", createdAt: 1_234 }), true);
      assert.equal(await db.createUser({ name: "uma", email: "other@example.com", passwordHash: null, createdAt: 5_678 }), false);
      assert.deepEqual(await db.getUser("uma"), { name: "uma", email: "uma@example.com", passwordHash: "pbkdf2-sha256$1$a$b", createdAt: 1_234 });
      assert.equal(await db.createUser({ name: "ulf", email: null, passwordHash: null, createdAt: 1 }), true);
      assert.deepEqual(await db.getUser("ulf"), { name: "ulf", email: null, passwordHash: null, createdAt: 1 });
    });

    test("tokens: stored by hash, found by hash, listed newest first, revoked by id or hash (and only the owner's)", async () => {
      await db.createUser({ name: "tess", email: null, passwordHash: null, createdAt: 1 });
      await db.createUser({ name: "tom", email: null, passwordHash: null, createdAt: 1 });
      const base = { user: "tess", description: null, expiresAt: null, packageScope: null } as const;
      await db.createToken({ ...base, id: "t-1", hash: "a".repeat(64), scope: "read", createdAt: 100 });
      await db.createToken({ ...base, id: "t-2", hash: "b".repeat(64), scope: "publish", packageScope: "acme", createdAt: 200, expiresAt: 9_999_999_999_999, description: "CI" });
      await db.createToken({ ...base, id: "t-3", hash: "c".repeat(64), scope: "admin", createdAt: 200 });
      await db.createToken({ ...base, user: "tom", id: "t-4", hash: "d".repeat(64), scope: "read", createdAt: 300 });
      assert.deepEqual(await db.tokenByHash("b".repeat(64)), {
        id: "t-2",
        user: "tess",
        scope: "publish",
        packageScope: "acme",
        createdAt: 200,
        expiresAt: 9_999_999_999_999,
        description: "CI",
      });
      assert.equal(await db.tokenByHash("e".repeat(64)), undefined);
      assert.deepEqual((await db.listTokens("tess")).map((t) => t.id), ["t-2", "t-3", "t-1"]);
      assert.deepEqual(await db.listTokens("nobody"), []);
      assert.equal(await db.revokeToken("t-4", "tess"), false, "not hers");
      assert.equal(await db.revokeToken("t-1", "tess"), true);
      assert.equal(await db.revokeToken("t-1", "tess"), false);
      assert.equal(await db.revokeToken("c".repeat(64)), true, "by hash");
      assert.equal(await db.revokeToken("d".repeat(64), "tom"), true);
      assert.equal(await db.tokenByHash("a".repeat(64)), undefined);
      assert.deepEqual((await db.listTokens("tess")).map((t) => t.id), ["t-2"]);
      assert.deepEqual(await db.listTokens("tom"), []);
    });

    test("publishMany (or one publish after another) is all or nothing, with the tags and revision of publishing each in turn", async () => {
      await db.publish(record("batch", "0.1.0"), user("alice"));
      const rev = await publishAll(db, [
        record("batch", "1.0.0", { tags: ["latest"], description: "one" }),
        record("batch", "1.1.0-rc.1", { tags: ["next"], description: "rc" }),
        record("batch", "1.1.0", { tags: ["latest"], description: "eleven", keywords: ["k"], quality: JSON.stringify({ runtimes: ["bun"] }) }),
      ], user("alice"));
      assert.equal(rev, 4);
      const snap = await db.snapshot("batch");
      assert.deepEqual(snap?.versions.map((v) => [v.version, v.seq]), [["0.1.0", 1], ["1.0.0", 2], ["1.1.0-rc.1", 3], ["1.1.0", 4]]);
      assert.deepEqual(snap?.tags, { latest: "1.1.0", next: "1.1.0-rc.1" });
      assert.deepEqual([snap?.pkg.description, snap?.pkg.keywords], ["eleven", ["k"]]);
      assert.deepEqual((await db.search(query({ words: ["batch"], runtimes: ["bun"] }))).hits.map((h) => h.pkg.name), ["batch"]);
      if (db.publishMany !== undefined) {
        await assert.rejects(db.publishMany([record("batch", "2.0.0"), record("batch", "1.0.0")], user("alice")), code("E_REGISTRY_VERSION_EXISTS"));
        await assert.rejects(db.publishMany([record("batch", "2.0.0"), record("batch", "2.0.0")], user("alice")), code("E_REGISTRY_VERSION_EXISTS"));
        await assert.rejects(db.publishMany([record("batch", "2.0.0"), record("batch", "2.0.1", { maxVersions: 5 })], user("alice")), code("E_REGISTRY_TOO_LARGE"));
        await assert.rejects(db.publishMany([record("batch", "2.0.0")], user("bob")), code("E_REGISTRY_FORBIDDEN"));
        await assert.rejects(db.publishMany([], user("alice")), RangeError);
        await assert.rejects(db.publishMany([record("batch", "2.0.0"), record("other", "1.0.0")], user("alice")), RangeError);
        assert.equal(await db.getVersion("batch", "2.0.0"), undefined, "a refused batch leaves nothing");
        assert.equal(await db.rev("batch"), 4);
      }
      assert.deepEqual(await db.check(), []);
    });

    test("10,000 versions of one package: all kept in order, the 10,001st refused", async () => {
      const name = "many";
      const manifest = (version: string) => JSON.stringify({ name, version, description: "many versions" });
      const records: PublishRecord[] = [];
      for (let i = 0; i < 10_000; i++) {
        const version = `1.${Math.floor(i / 100)}.${i % 100}`;
        records.push(record(name, version, { manifest: manifest(version), blobKey: "sha512/00/many-shared.tgz", at: 1_000 + i, maxVersions: 10_000 }));
      }
      assert.equal(await publishAll(db, records, user("alice")), 10_000);
      const snap = await db.snapshot(name);
      assert.equal(snap?.versions.length, 10_000);
      assert.equal(snap?.versions[0]?.version, "1.0.0");
      assert.equal(snap?.versions[9_999]?.version, "1.99.99");
      assert.equal(snap?.versions[4_321]?.seq, 4_322);
      assert.equal(snap?.tags.latest, "1.99.99");
      assert.equal(await db.versionCount(name), 10_000);
      assert.equal((await db.getVersion(name, "1.42.7"))?.manifest, manifest("1.42.7"));
      await assert.rejects(db.publish(record(name, "2.0.0", { maxVersions: 10_000 }), user("alice")), (e: unknown) => {
        code("E_REGISTRY_TOO_LARGE")(e);
        assert.match((e as Error).message, /10000 versions/);
        return true;
      });
      assert.deepEqual(await db.unpublish(name, ["1.99.99"], user("alice"), { at: 20_000, windowMs: HOUR }), [], "the other versions share its blob");
      assert.equal((await db.snapshot(name))?.tags.latest, "1.99.98");
    });

    test("check() finds nothing wrong with a sound database", async () => {
      assert.deepEqual(await db.check(), []);
    });

    test("a closed database refuses work with a coded error", async () => {
      const other = await open();
      assert.equal((await other.getPackage("first"))?.name, "first", "a second connection sees the same data");
      await other.close();
      await other.close();
      await assert.rejects(other.getPackage("first"), (e: unknown) => KeelError.is(e));
      await assert.rejects(other.publish(record("after-close", "1.0.0"), user("alice")), (e: unknown) => KeelError.is(e));
    });
  });
}
