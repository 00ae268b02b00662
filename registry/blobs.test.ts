import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rename } from "node:fs/promises";
import { KeelError } from "../core/errors.ts";
import type { Runtime, RuntimeFs } from "../core/runtime.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { assertBlobKey, createFolderBlobStore, createMemoryBlobStore } from "./blobs.ts";
import { testBlobStore } from "./_blobs-conformance.ts";

const runtime = await detectRuntime();
const fs = runtime.fs!;
const utf8 = new TextEncoder();
let root = "";
let count = 0;

before(async () => {
  root = await fs.makeTempDir("keel-blobs-");
});

after(async () => {
  if (root !== "") await fs.remove(root);
});

/** The runtime with `fs.rename` added, as a runtime that offers it would have. */
function withRename(base: Runtime, spy: Partial<RenamingFs> = {}): Runtime {
  const renaming: RenamingFs = { ...base.fs!, rename: (from, to) => rename(from, to), ...spy };
  return { ...base, fs: renaming };
}

type RenamingFs = RuntimeFs & { rename(from: string, to: string): Promise<void> };

async function freshDir(): Promise<string> {
  const dir = `${root}/store-${count++}`;
  await fs.mkdir(dir);
  return dir;
}

/** Every file name under `dir`, recursively, relative to it. */
async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await fs.readDir(dir)) {
    if (entry.isDirectory) {
      out.push(...await listFiles(`${dir}/${entry.name}`, `${prefix}${entry.name}/`));
    } else out.push(`${prefix}${entry.name}`);
  }
  return out.sort();
}

testBlobStore("memory", () => Promise.resolve(createMemoryBlobStore()));
testBlobStore(
  "folder (a runtime fs with rename)",
  async () => createFolderBlobStore({ runtime: withRename(runtime), dir: await freshDir() }),
);
testBlobStore(
  `folder (the ${runtime.name} Runtime port, no rename)`,
  async () => createFolderBlobStore({ runtime, dir: await freshDir() }),
);

describe("createFolderBlobStore", () => {
  test("keeps each blob as the file <dir>/<key>, making folders as needed", async () => {
    const dir = await freshDir();
    const store = createFolderBlobStore({ runtime: withRename(runtime), dir });
    await store.put("@keel/x/-/x-1.0.0.tgz", utf8.encode("one"));
    await store.put("y/-/y-2.0.0.tgz", utf8.encode("two"));
    assert.equal(await fs.readTextFile(`${dir}/@keel/x/-/x-1.0.0.tgz`), "one");
    assert.equal(await fs.readTextFile(`${dir}/y/-/y-2.0.0.tgz`), "two");
    assert.deepEqual(
      await listFiles(dir),
      ["@keel/x/-/x-1.0.0.tgz", "y/-/y-2.0.0.tgz"],
      "no temporary file is left",
    );
    assert.equal(await store.delete("y/-/y-2.0.0.tgz"), true);
    assert.equal(await fs.exists(`${dir}/y/-/y-2.0.0.tgz`), false);
  });

  test("a relative dir resolves against the runtime's cwd", async () => {
    const dir = await freshDir();
    const ups = runtime.cwd().split("/").filter((s) => s !== "").map(() => "..").join("/");
    const relative = `${ups}${dir}`;
    assert.ok(!relative.startsWith("/") || ups === "");
    const store = createFolderBlobStore({ runtime, dir: relative });
    await store.put("r.tgz", utf8.encode("r"));
    assert.equal(await fs.readTextFile(`${dir}/r.tgz`), "r");
  });

  test("with rename, the old blob stays whole until the new one replaces it", async () => {
    const dir = await freshDir();
    const seen: string[] = [];
    const store = createFolderBlobStore({
      runtime: withRename(runtime, {
        async writeFile(path, data) {
          await fs.writeFile(path, data);
          assert.notEqual(path, `${dir}/pkg.tgz`, "never writes the target in place");
          seen.push(await fs.readTextFile(`${dir}/pkg.tgz`));
        },
      }),
      dir,
    });
    await fs.writeFile(`${dir}/pkg.tgz`, utf8.encode("old"));
    await store.put("pkg.tgz", utf8.encode("new"));
    assert.deepEqual(
      seen,
      ["old"],
      "while the new bytes were written, the target held the old ones",
    );
    assert.equal(await fs.readTextFile(`${dir}/pkg.tgz`), "new");
  });

  test("a failed write leaves neither a blob nor a temporary file", async () => {
    const dir = await freshDir();
    const store = createFolderBlobStore({
      runtime: withRename(runtime, { rename: () => Promise.reject(new Error("disk full")) }),
      dir,
    });
    await assert.rejects(store.put("a/b.tgz", utf8.encode("x")), /disk full/);
    assert.equal(await store.has("a/b.tgz"), false);
    assert.deepEqual(await listFiles(dir), []);
  });

  test("a runtime without file access is refused with E_RUNTIME_UNSUPPORTED", () => {
    const { fs: _fs, ...noFs } = runtime;
    assert.throws(
      () => createFolderBlobStore({ runtime: noFs, dir: "/tmp/x" }),
      (e: unknown) => KeelError.is(e, "E_RUNTIME_UNSUPPORTED"),
    );
  });

  test("invalid keys never reach the file system", async () => {
    const dir = await freshDir();
    const touched: string[] = [];
    const spy = (name: string) => (path: string) => {
      touched.push(`${name} ${path}`);
      return Promise.reject(new Error("should not be called"));
    };
    const store = createFolderBlobStore({
      runtime: withRename(runtime, {
        writeFile: spy("writeFile"),
        readFile: spy("readFile"),
        stat: spy("stat"),
        remove: spy("remove"),
        mkdir: spy("mkdir"),
      }),
      dir,
    });
    for (const key of ["../../etc/passwd", "/etc/passwd", "a/../../b"]) {
      await assert.rejects(store.put(key, utf8.encode("x")), TypeError);
      await assert.rejects(store.get(key), TypeError);
      await assert.rejects(store.delete(key), TypeError);
    }
    assert.deepEqual(touched, []);
  });
});

describe("assertBlobKey", () => {
  test("accepts npm tarball keys and refuses escapes", () => {
    assertBlobKey("@scope/name/-/name-1.0.0.tgz");
    assertBlobKey("name/-/name-1.0.0.tgz");
    for (const key of ["..", "a/../b", "/a", "a/", "a\\b", ""]) {
      assert.throws(() => assertBlobKey(key), TypeError, key);
    }
  });
});
