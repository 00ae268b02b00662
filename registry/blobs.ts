/**
 * Blob storage for package tarballs: a small {@link BlobStore} port with a folder store (files
 * through the Runtime port) and a memory store, both held to one conformance suite
 * (`_blobs-conformance.ts`). An S3-compatible store is a third implementation of the same port.
 *
 * Keys are relative paths of plain segments (`@scope/name/-/name-1.0.0.tgz`): letters, digits and
 * `@ . _ / -`, no `..`, no leading or trailing `/`, no empty or `.` segment. A key may not also be
 * the folder of another key ("a" and "a/b"), since the folder store could not hold both (and the
 * folder store keeps a folder once made, so "a" stays unusable after "a/b" is deleted).
 * @module
 */

import { KeelError } from "../core/errors.ts";
import type { Runtime, RuntimeFs } from "../core/runtime.ts";

/** Where tarballs are kept. Every method checks its key and throws `TypeError` for a bad one. */
export interface BlobStore {
  /** Stores `bytes` under `key`, replacing what was there. */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** The bytes under `key` (a copy the caller may change), or undefined. */
  get(key: string): Promise<Uint8Array | undefined>;
  has(key: string): Promise<boolean>;
  /** Removes `key`; true when it existed. */
  delete(key: string): Promise<boolean>;
  /** What kind of store this is ("folder", "memory", ...), for logs. */
  readonly name: string;
}

const KEY_CHARACTERS = /^[A-Za-z0-9@._/-]+$/;
const MAX_KEY_LENGTH = 1024;
/** Most file systems allow 255 bytes per name; keys are ASCII, so characters are bytes. */
const MAX_SEGMENT_LENGTH = 255;

/**
 * Throws unless `key` is a valid blob key.
 * @throws {TypeError} For a key that is not a string, is empty or too long, has a character
 * outside `A-Z a-z 0-9 @ . _ / -`, has `..`, starts or ends with `/`, or has an empty or `.` segment.
 */
export function assertBlobKey(key: string): void {
  const segments = typeof key === "string" ? key.split("/") : [];
  if (
    typeof key !== "string" || key.length > MAX_KEY_LENGTH || !KEY_CHARACTERS.test(key) ||
    key.includes("..") ||
    segments.some((s) => s === "" || s === "." || s.length > MAX_SEGMENT_LENGTH)
  ) {
    throw new TypeError(
      `Blob key ${
        JSON.stringify(key)
      } is invalid: use relative paths of letters, digits and "@._-" segments joined by "/", with no ".." and no leading or trailing "/"`,
    );
  }
}

function assertBytes(bytes: Uint8Array): void {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`BlobStore.put: bytes must be a Uint8Array`);
  }
}

function conflict(key: string, other: string): TypeError {
  return new TypeError(
    `Blob key "${key}" conflicts with the stored key "${other}": a key cannot also be the folder of another key`,
  );
}

/** The folders above a key: "a/b/c" gives "a", "a/b". */
function parentsOf(key: string): string[] {
  const segments = key.split("/");
  return segments.slice(1).map((_, i) => segments.slice(0, i + 1).join("/"));
}

/** A store in memory, for tests and short-lived registries. */
export function createMemoryBlobStore(): BlobStore {
  const blobs = new Map<string, Uint8Array>();
  /** How many keys lie under each folder. */
  const folders = new Map<string, number>();
  return {
    name: "memory",
    // deno-lint-ignore require-await -- async so that a bad key rejects, as in every store
    async put(key, bytes) {
      assertBlobKey(key);
      assertBytes(bytes);
      if (folders.has(key)) {
        throw conflict(
          key,
          [...blobs.keys()].find((k) => k.startsWith(`${key}/`)) ?? `${key}/`,
        );
      }
      const parents = parentsOf(key);
      const file = parents.find((p) => blobs.has(p));
      if (file !== undefined) throw conflict(key, file);
      if (!blobs.has(key)) { for (const p of parents) folders.set(p, (folders.get(p) ?? 0) + 1); }
      blobs.set(key, bytes.slice());
    },
    // deno-lint-ignore require-await
    async get(key) {
      assertBlobKey(key);
      return blobs.get(key)?.slice();
    },
    // deno-lint-ignore require-await
    async has(key) {
      assertBlobKey(key);
      return blobs.has(key);
    },
    // deno-lint-ignore require-await
    async delete(key) {
      assertBlobKey(key);
      if (!blobs.delete(key)) return false;
      for (const p of parentsOf(key)) {
        const n = (folders.get(p) ?? 1) - 1;
        if (n === 0) folders.delete(p);
        else folders.set(p, n);
      }
      return true;
    },
  };
}

/**
 * The file access the folder store uses: the Runtime port's, plus `rename` where the runtime
 * offers one (the port does not declare it yet).
 */
type BlobFs = RuntimeFs & { rename?(from: string, to: string): Promise<void> };

/**
 * A store in a folder: the blob for "a/b.tgz" is the file `<dir>/a/b.tgz`, folders are made as
 * needed. With a runtime whose `fs` has `rename`, a put writes a temporary file beside the target
 * (named `.~<random>`, which no key can name) and renames it over the target, so readers and a
 * crash never see half a blob. Without `rename` it writes the target in place, and only reads in
 * this process wait for the write.
 *
 * @throws {KeelError} `E_RUNTIME_UNSUPPORTED` when the runtime has no file access.
 */
export function createFolderBlobStore(options: { runtime: Runtime; dir: string }): BlobStore {
  const { runtime } = options;
  const fs = runtime.fs as BlobFs | undefined;
  if (fs === undefined) {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      `This runtime ("${runtime.name}") has no file access, so it cannot keep blobs in a folder: use another blob store`,
    );
  }
  const root = runtime.resolvePath(options.dir);
  const pathOf = (key: string): string => `${root}/${key}`;
  /** Writes in progress without `rename`, so reads in this process wait for them. */
  const writing = new Map<string, Promise<void>>();

  async function statOf(
    path: string,
  ): Promise<{ isFile: boolean; isDirectory: boolean } | undefined> {
    try {
      return await fs!.stat(path);
    } catch (e) {
      if (KeelError.is(e, "E_RUNTIME_NOT_FOUND")) return undefined;
      throw e;
    }
  }

  async function settled(key: string): Promise<void> {
    await writing.get(key)?.catch(() => {});
  }

  async function write(key: string, bytes: Uint8Array): Promise<void> {
    const target = pathOf(key);
    for (const parent of parentsOf(key)) {
      if ((await statOf(pathOf(parent)))?.isDirectory === false) throw conflict(key, parent);
    }
    if ((await statOf(target))?.isDirectory === true) throw conflict(key, `${key}/`);
    const dir = target.slice(0, target.lastIndexOf("/"));
    await fs!.mkdir(dir);
    if (fs!.rename === undefined) {
      await fs!.writeFile(target, bytes);
      return;
    }
    const temp = `${dir}/.~${randomName()}`;
    try {
      await fs!.writeFile(temp, bytes);
      await fs!.rename(temp, target);
    } catch (e) {
      await fs!.remove(temp).catch(() => {});
      throw e;
    }
  }

  return {
    name: "folder",
    async put(key, bytes) {
      assertBlobKey(key);
      assertBytes(bytes);
      if (fs.rename !== undefined) return await write(key, bytes);
      // Without rename, one write per key at a time, and reads wait for it.
      const previous = writing.get(key);
      const done = (previous === undefined ? Promise.resolve() : previous.catch(() => {})).then(
        () => write(key, bytes),
      );
      writing.set(key, done);
      try {
        await done;
      } finally {
        if (writing.get(key) === done) writing.delete(key);
      }
    },
    async get(key) {
      assertBlobKey(key);
      await settled(key);
      try {
        return await fs.readFile(pathOf(key));
      } catch (e) {
        if (KeelError.is(e, "E_RUNTIME_NOT_FOUND")) return undefined;
        // A folder (of other keys) is no blob.
        if ((await statOf(pathOf(key)))?.isFile !== true) return undefined;
        throw e;
      }
    },
    async has(key) {
      assertBlobKey(key);
      await settled(key);
      return (await statOf(pathOf(key)))?.isFile === true;
    },
    async delete(key) {
      assertBlobKey(key);
      await settled(key);
      if ((await statOf(pathOf(key)))?.isFile !== true) return false;
      await fs.remove(pathOf(key));
      return true;
    },
  };
}

function randomName(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(12)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}
