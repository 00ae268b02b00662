/**
 * The BlobStore conformance suite: every store's test calls {@link testBlobStore}, so the folder,
 * memory and later stores (S3) behave alike.
 * @module
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { BlobStore } from "./blobs.ts";

const utf8 = new TextEncoder();

/**
 * Registers the BlobStore conformance tests with `node:test`. `create` is called once per test
 * and must return an empty store; cleaning up what it made is the caller's job (in `after()`).
 */
export function testBlobStore(name: string, create: () => Promise<BlobStore>): void {
  describe(`BlobStore conformance: ${name}`, () => {
    test("names itself", async () => {
      const store = await create();
      assert.equal(typeof store.name, "string");
      assert.ok(store.name.length > 0);
    });

    test("put then get, has and delete", async () => {
      const store = await create();
      const key = "left-pad/-/left-pad-1.0.0.tgz";
      assert.equal(await store.has(key), false);
      assert.equal(await store.get(key), undefined);
      await store.put(key, utf8.encode("tarball bytes"));
      assert.equal(await store.has(key), true);
      assert.deepEqual(await store.get(key), utf8.encode("tarball bytes"));
      assert.equal(await store.delete(key), true);
      assert.equal(await store.has(key), false);
      assert.equal(await store.get(key), undefined);
      assert.equal(await store.delete(key), false);
    });

    test("a missing key is absent, and deleting it returns false", async () => {
      const store = await create();
      assert.equal(await store.get("never/put.tgz"), undefined);
      assert.equal(await store.has("never/put.tgz"), false);
      assert.equal(await store.delete("never/put.tgz"), false);
    });

    test("put replaces what was stored", async () => {
      const store = await create();
      await store.put("a.tgz", utf8.encode("first, and longer"));
      await store.put("a.tgz", utf8.encode("second"));
      assert.deepEqual(await store.get("a.tgz"), utf8.encode("second"));
    });

    test("keeps every byte value, an empty blob and a large blob", async () => {
      const store = await create();
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      const large = new Uint8Array(3 * 1024 * 1024 + 7);
      for (let i = 0; i < large.length; i += 65536) {
        crypto.getRandomValues(large.subarray(i, i + 65536));
      }
      await store.put("bytes.bin", all);
      await store.put("empty.bin", new Uint8Array(0));
      await store.put("large.bin", large);
      assert.deepEqual(await store.get("bytes.bin"), all);
      assert.deepEqual(await store.get("empty.bin"), new Uint8Array(0));
      assert.equal(await store.has("empty.bin"), true);
      assert.deepEqual(await store.get("large.bin"), large);
    });

    test("keys may be nested, scoped and use every allowed character", async () => {
      const store = await create();
      const keys = [
        "@keel/plugin-x/-/plugin-x-1.2.3-beta.1.tgz",
        "plain/-/plain-0.0.1.tgz",
        "A-Z_a.z@0-9/x",
        ".hidden",
        "deep/a/b/c/d/e/f.tgz",
      ];
      for (const [i, key] of keys.entries()) await store.put(key, utf8.encode(`blob ${i}`));
      for (const [i, key] of keys.entries()) {
        assert.deepEqual(await store.get(key), utf8.encode(`blob ${i}`), key);
      }
      assert.equal(await store.has("@keel/plugin-x"), false, "a folder of keys is not a key");
      assert.equal(await store.get("@keel/plugin-x/-"), undefined);
      assert.equal(await store.delete("deep/a"), false);
      assert.deepEqual(await store.get("deep/a/b/c/d/e/f.tgz"), utf8.encode("blob 4"));
    });

    test("stored bytes do not change when the caller changes its arrays", async () => {
      const store = await create();
      const input = utf8.encode("original");
      await store.put("k", input);
      input[0] = 0x58;
      const first = await store.get("k");
      assert.ok(first !== undefined);
      first[1] = 0x58;
      assert.deepEqual(await store.get("k"), utf8.encode("original"));
    });

    test("refuses invalid keys with a TypeError, for every method", async () => {
      const store = await create();
      const bad = [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../escape",
        "..",
        "a/..",
        "a..b",
        "./a",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "a b",
        "a\0b",
        "a~b",
        "ä.tgz",
        "a?b",
        "x".repeat(256),
        `${"x/".repeat(600)}x`,
      ];
      for (const key of bad) {
        await assert.rejects(
          store.put(key, utf8.encode("x")),
          TypeError,
          `put ${JSON.stringify(key)}`,
        );
        await assert.rejects(store.get(key), TypeError, `get ${JSON.stringify(key)}`);
        await assert.rejects(store.has(key), TypeError, `has ${JSON.stringify(key)}`);
        await assert.rejects(store.delete(key), TypeError, `delete ${JSON.stringify(key)}`);
      }
      await assert.rejects(store.put("ok", "text" as unknown as Uint8Array), TypeError);
      assert.equal(await store.has("ok"), false);
    });

    test("a key cannot also be the folder of another key", async () => {
      const store = await create();
      await store.put("a/b.tgz", utf8.encode("inner"));
      await assert.rejects(store.put("a", utf8.encode("outer")), TypeError);
      await store.put("c", utf8.encode("file"));
      await assert.rejects(store.put("c/d.tgz", utf8.encode("below a file")), TypeError);
      assert.deepEqual(await store.get("a/b.tgz"), utf8.encode("inner"));
      assert.deepEqual(await store.get("c"), utf8.encode("file"));
      assert.equal(await store.has("a"), false);
      assert.equal(await store.has("c/d.tgz"), false);
    });

    test("concurrent puts of different keys all land", async () => {
      const store = await create();
      const keys = Array.from({ length: 40 }, (_, i) => `pkg-${i % 4}/-/pkg-${i}.tgz`);
      await Promise.all(keys.map((key) => store.put(key, utf8.encode(key))));
      for (const key of keys) assert.deepEqual(await store.get(key), utf8.encode(key));
    });

    test("concurrent puts of one key leave one whole value", async () => {
      const store = await create();
      const values = Array.from(
        { length: 8 },
        (_, i) => new Uint8Array(256 * 1024 + i).fill(i + 1),
      );
      await Promise.all(values.map((v) => store.put("same.tgz", v)));
      const got = await store.get("same.tgz");
      assert.ok(got !== undefined);
      const winner = values.find((v) => v.length === got.length);
      assert.ok(winner !== undefined, `length ${got.length} matches no value put`);
      assert.deepEqual(got, winner);
    });

    test("reads during a put see the old value or the new one, whole", async () => {
      const store = await create();
      const before = new Uint8Array(512 * 1024).fill(1);
      const after = new Uint8Array(4 * 1024 * 1024).fill(2);
      const whole = (read: Uint8Array | undefined) =>
        read !== undefined &&
        ((read.length === before.length && read.every((b) => b === 1)) ||
          (read.length === after.length && read.every((b) => b === 2)));
      for (let round = 0; round < 3; round++) {
        await store.put("r.tgz", before);
        let finished = false;
        const writing = store.put("r.tgz", after).finally(() => finished = true);
        let reads = 0;
        while (!finished || reads === 0) {
          const read = await store.get("r.tgz");
          assert.ok(whole(read), `read ${read?.length} bytes that are neither value`);
          reads++;
        }
        await writing;
        assert.deepEqual(await store.get("r.tgz"), after);
      }
    });
  });
}
