/**
 * Keel's package registry: an npm-protocol registry (so `npm`, `bun` and `deno` install from it
 * unchanged) for Keel plugins, which are npm packages with a `keel` field.
 *
 * - {@link openRegistry} opens the embedded setup in one folder: `registry.db` (SQLite, WAL),
 *   `tarballs/` (a folder blob store) and `signing-key.json` (the ECDSA P-256 key that signs
 *   every version, made on first start), and returns the Hono app to serve.
 * - {@link createRegistryApp} builds the app from parts: any {@link RegistryDb}, any
 *   {@link BlobStore}, any signing keys. `openRegistry` takes a `db` (e.g. Postgres, from
 *   `db-postgres.ts`) and `blobs` (e.g. {@link createS3BlobStore}) in place of the embedded ones;
 *   {@link parseStorageOption} and {@link parseDbOption} read them from `--storage` and `--db`.
 *
 * Protocol coverage, the yank and unpublish rules, and the error format are described in
 * `app.ts`.
 * @module
 */

import { KeelError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import type { Runtime } from "../core/runtime.ts";
import { createRegistryApp, type RegistryApp, type RegistryAppOptions } from "./app.ts";
import { type BlobStore, createFolderBlobStore } from "./blobs.ts";
import { openRegistryDb, type RegistryDb } from "./db.ts";
import { generateSigningKey, importSigningKey, type SigningKey } from "./signing.ts";

export { effectiveTags, REGISTRY_LIMITS, tarballPath } from "./app.ts";
export type { RegistryApp, RegistryAppOptions, RegistryLimits } from "./app.ts";
export { createRegistryApp };
export { compareVersions, createRegistryDb, openRegistryDb, TOKEN_SCOPES } from "./db.ts";
export type { Actor, PackageRecord, PackageSnapshot, RegistryDb, SearchQuery, TokenRecord, TokenScope, UserRecord, VersionRecord } from "./db.ts";
export { hashPassword, hashToken, issueToken, verifyPassword } from "./_auth.ts";
export type { IssueTokenOptions } from "./_auth.ts";
export { type KeelField, validateKeelField } from "./keel-field.ts";
export { confusableKey, nameProblem } from "./_names.ts";
export { type BlobStore, createFolderBlobStore, createMemoryBlobStore } from "./blobs.ts";
export { createS3BlobStore, type S3BlobStoreOptions } from "./blobs-s3.ts";
export { type DbSpec, describeDb, describeStorage, maskUrl, openBlobStore, parseDbOption, parseStorageOption, type StorageEnv, type StorageSpec } from "./storage-url.ts";
export { generateSigningKey, importSigningKey, keysDocument, type SigningKey, signVersion, verifyVersionSignature } from "./signing.ts";
export { integrityOf, packTarball, readPackageTarball } from "./tarball.ts";

/** Options for {@link openRegistry}. */
export interface OpenRegistryOptions extends Omit<RegistryAppOptions, "db" | "blobs" | "signingKeys" | "baseUrl"> {
  readonly runtime: Runtime;
  /** The registry's folder; created when missing. */
  readonly dir: string;
  /** The public URL clients use; tarball URLs are built from it. */
  readonly baseUrl: string;
  readonly logger?: Logger;
  /**
   * The database, in place of `registry.db` in the folder. It is not closed by
   * {@link OpenRegistry.close}: whoever opened it closes it.
   */
  readonly db?: RegistryDb;
  /** Where tarballs go, in place of `tarballs/` in the folder (which still holds the signing key). */
  readonly blobs?: BlobStore;
}

/** An open registry: the app to serve and what it runs on. */
export interface OpenRegistry {
  readonly app: RegistryApp;
  readonly db: RegistryDb;
  readonly blobs: BlobStore;
  readonly signingKeys: readonly SigningKey[];
  /** The absolute folder. */
  readonly dir: string;
  /** Closes the database it opened, if it opened one (stop the server first). */
  close(): Promise<void>;
}

/** The file under the registry folder that holds the private signing keys (JWK). */
export const SIGNING_KEY_FILE = "signing-key.json";

/**
 * Loads the signing keys of a registry folder, making one on first start. The file holds
 * `{ "keys": [<private JWK>, ...] }`; the first key signs, all are published, so a key can be
 * rotated by putting a new one first. Keep the file secret: anyone holding it can sign as the
 * registry. A new key file is created owner-only (`0600`) where the runtime can set modes.
 * @throws {KeelError} `E_STORE_CORRUPT` when the file exists but holds no valid key.
 */
export async function loadSigningKeys(runtime: Runtime, dir: string): Promise<SigningKey[]> {
  const fs = runtime.fs;
  if (fs === undefined) throw new KeelError("E_RUNTIME_UNSUPPORTED", `The ${runtime.name} runtime has no file access for the registry's signing key`);
  const path = `${dir}/${SIGNING_KEY_FILE}`;
  if (!(await fs.exists(path))) {
    const { key, privateJwk } = await generateSigningKey();
    await fs.mkdir(dir);
    const text = JSON.stringify({ keys: [privateJwk] }, null, 2) + "\n";
    if (fs.chmod) {
      // Owner-only before it holds the key, then moved into place: never readable by others.
      const temp = `${path}.${crypto.randomUUID()}.tmp`;
      await fs.writeTextFile(temp, "");
      await fs.chmod(temp, 0o600);
      await fs.writeTextFile(temp, text);
      await fs.rename(temp, path);
    } else {
      await fs.writeTextFile(path, text);
    }
    return [key];
  }
  const damaged = (why: string, cause?: unknown) =>
    new KeelError("E_STORE_CORRUPT", `The registry's signing key file "${path}" ${why}: restore it from a backup (or move it aside to make a new key: versions signed by the old one then no longer verify)`, cause === undefined ? {} : { cause });
  let parsed: unknown;
  try {
    parsed = JSON.parse(await fs.readTextFile(path));
  } catch (e) {
    throw damaged("is not JSON", e);
  }
  const list = typeof parsed === "object" && parsed !== null ? (parsed as { keys?: unknown }).keys : undefined;
  if (!Array.isArray(list) || list.length === 0) throw damaged('has no "keys"');
  try {
    return await Promise.all(list.map((jwk) => importSigningKey(jwk as JsonWebKey)));
  } catch (e) {
    throw damaged("holds a key that is not an EC P-256 private key", e);
  }
}

/**
 * Opens the registry kept in `dir` (creating it on first start): `registry.db`, `tarballs/`
 * and `signing-key.json`. With `db` or `blobs` given, the folder keeps only the rest (always
 * the signing key).
 * @throws {KeelError} `E_RUNTIME_UNSUPPORTED` without SQLite or files; `E_STORE_*` for a
 * database or key file that cannot be used.
 */
export async function openRegistry(options: OpenRegistryOptions): Promise<OpenRegistry> {
  const { runtime, dir: given, baseUrl, db: givenDb, blobs: givenBlobs, ...appOptions } = options;
  const dir = runtime.resolvePath(given);
  if (runtime.fs === undefined) throw new KeelError("E_RUNTIME_UNSUPPORTED", `The ${runtime.name} runtime has no file access for a registry folder`);
  await runtime.fs.mkdir(givenBlobs === undefined ? `${dir}/tarballs` : dir);
  const signingKeys = await loadSigningKeys(runtime, dir);
  const db = givenDb ?? await openRegistryDb(runtime, `${dir}/registry.db`);
  const close = givenDb === undefined ? () => db.close() : () => Promise.resolve();
  const blobs = givenBlobs ?? createFolderBlobStore({ runtime, dir: `${dir}/tarballs` });
  try {
    const app = createRegistryApp({ ...appOptions, db, blobs, signingKeys, baseUrl });
    return {
      app, db, blobs, signingKeys, dir,
      close: async () => {
        await app.flushDownloads();
        await close();
      },
    };
  } catch (e) {
    await close();
    throw e;
  }
}
