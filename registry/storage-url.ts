/**
 * Where a registry keeps its tarballs and its database, as given on the command line:
 * {@link parseStorageOption} reads `--storage` (a folder, or an `s3://` URL whose credentials come
 * from the environment), {@link parseDbOption} reads `--db` (a SQLite file, or a Postgres URL),
 * and {@link maskUrl} hides passwords for logs.
 * @module
 */

import { KeelError } from "../core/errors.ts";
import type { Runtime } from "../core/runtime.ts";
import { type BlobStore, createFolderBlobStore } from "./blobs.ts";
import { createS3BlobStore, type S3BlobStoreOptions } from "./blobs-s3.ts";
import { maskUrl } from "./_mask-url.ts";

export { maskUrl };

/** A parsed `--storage`: a folder of tarballs, or an S3-compatible bucket. */
export type StorageSpec =
  | { readonly kind: "folder"; readonly dir: string }
  | { readonly kind: "s3"; readonly s3: Omit<S3BlobStoreOptions, "fetch"> };

/** A parsed `--db`: a SQLite file, or a Postgres URL (without `schema`) and the schema to use. */
export type DbSpec =
  | { readonly kind: "sqlite"; readonly path: string }
  | { readonly kind: "postgres"; readonly url: string; readonly schema?: string };

/** The environment variables credentials are read from. */
export interface StorageEnv {
  get(name: string): string | undefined;
}

const STORAGE_FORMS = [
  "a folder path (./tarballs, /srv/registry/tarballs)",
  "a file URL (file:///srv/registry/tarballs)",
  "s3://BUCKET/PREFIX?endpoint=https://HOST&region=REGION (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
].join(", ");
const S3_PARAMS = ["endpoint", "region", "forcePathStyle"];
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;

function storageError(message: string): KeelError {
  return new KeelError("E_REGISTRY_STORAGE", message);
}

/** The path of a `file:` URL, refusing hosts, queries and fragments. */
function filePath(url: URL, option: string, raw: string): string {
  if ((url.host !== "" && url.host !== "localhost") || url.search !== "" || url.hash !== "" || url.pathname === "") {
    throw storageError(`${option} "${raw}" is not a local file URL: use file:///absolute/path`);
  }
  return decodeURIComponent(url.pathname);
}

/**
 * Reads a `--storage` value: a folder path or `file:///` URL, or
 * `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1` (also `forcePathStyle=false`;
 * without `endpoint`, AWS's `https://s3.<region>.amazonaws.com`). S3 credentials come from
 * `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, for temporary ones, `AWS_SESSION_TOKEN`; a
 * URL holding credentials is refused, so that secrets stay out of shell history and process lists.
 * @throws {KeelError} `E_REGISTRY_STORAGE` for any other form, credentials in the URL, missing
 * credentials, or a bad bucket, prefix, endpoint or parameter.
 */
export function parseStorageOption(value: string, env: StorageEnv): StorageSpec {
  if (value.trim() === "") throw storageError(`--storage is empty: use ${STORAGE_FORMS}`);
  if (!SCHEME.test(value)) return { kind: "folder", dir: value };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw storageError(`--storage "${value}" is not a valid URL: use ${STORAGE_FORMS}`);
  }
  if (url.protocol === "file:") return { kind: "folder", dir: filePath(url, "--storage", value) };
  if (url.protocol !== "s3:") throw storageError(`--storage does not take "${url.protocol}" URLs: use ${STORAGE_FORMS}`);
  const shown = maskUrl(value);
  if (url.username !== "" || url.password !== "") {
    throw storageError(`--storage "${shown}" holds credentials: never put secrets in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in the environment instead`);
  }
  const bucket = url.hostname;
  if (bucket === "") throw storageError(`--storage "${shown}" names no bucket: use s3://BUCKET/PREFIX?endpoint=...`);
  const unknown = [...url.searchParams.keys()].filter((k) => !S3_PARAMS.includes(k));
  if (unknown.length > 0) {
    const secret = unknown.some((k) => /key|secret|token|password|credential/i.test(k));
    throw storageError(
      secret
        ? `--storage "${shown}" holds credentials (${unknown.map((k) => `"${k}"`).join(", ")}): never put secrets in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in the environment instead`
        : `--storage takes only the parameters ${S3_PARAMS.map((p) => `"${p}"`).join(", ")}; got ${unknown.map((k) => `"${k}"`).join(", ")}`,
    );
  }
  const region = url.searchParams.get("region") ?? undefined;
  const endpoint = url.searchParams.get("endpoint") ?? `https://s3.${region ?? "us-east-1"}.amazonaws.com`;
  const pathStyle = url.searchParams.get("forcePathStyle");
  if (pathStyle !== null && pathStyle !== "true" && pathStyle !== "false") throw storageError(`--storage's forcePathStyle takes "true" or "false", got "${pathStyle}"`);
  const accessKeyId = env.get("AWS_ACCESS_KEY_ID") ?? "";
  const secretAccessKey = env.get("AWS_SECRET_ACCESS_KEY") ?? "";
  const missing = [accessKeyId === "" ? "AWS_ACCESS_KEY_ID" : "", secretAccessKey === "" ? "AWS_SECRET_ACCESS_KEY" : ""].filter((n) => n !== "");
  if (missing.length > 0) {
    throw storageError(`S3 storage needs credentials: set ${missing.join(" and ")} (and AWS_SESSION_TOKEN for temporary credentials) in the environment`);
  }
  const sessionToken = env.get("AWS_SESSION_TOKEN");
  const prefix = decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, "");
  const s3: Omit<S3BlobStoreOptions, "fetch"> = {
    endpoint,
    bucket,
    accessKeyId,
    secretAccessKey,
    ...(region === undefined ? {} : { region }),
    ...(sessionToken === undefined || sessionToken === "" ? {} : { sessionToken }),
    ...(prefix === "" ? {} : { prefix }),
    ...(pathStyle === null ? {} : { forcePathStyle: pathStyle === "true" }),
  };
  try {
    // Checks the bucket name, prefix and endpoint now, before a server starts.
    createS3BlobStore(s3);
  } catch (e) {
    if (e instanceof TypeError) throw new KeelError("E_REGISTRY_STORAGE", `--storage "${shown}": ${e.message}`, { cause: e });
    throw e;
  }
  return { kind: "s3", s3 };
}

/** Opens the blob store a {@link StorageSpec} describes (a relative folder resolves against the runtime's cwd). */
export function openBlobStore(spec: StorageSpec, runtime: Runtime): BlobStore {
  return spec.kind === "folder" ? createFolderBlobStore({ runtime, dir: spec.dir }) : createS3BlobStore(spec.s3);
}

/** Says where a {@link StorageSpec} keeps tarballs, for logs; never shows credentials. */
export function describeStorage(spec: StorageSpec): string {
  if (spec.kind === "folder") return `folder ${spec.dir}`;
  const { bucket, prefix, endpoint, region } = spec.s3;
  return `S3 bucket "${bucket}"${prefix === undefined ? "" : ` prefix "${prefix}"`} at ${maskUrl(endpoint)}${region === undefined ? "" : ` (${region})`}`;
}

/**
 * Reads a `--db` value: a SQLite file path (or `file:///` URL), or a `postgres://` /
 * `postgresql://` URL. A `schema` query parameter on a Postgres URL is taken out of the URL and
 * returned as `schema` (default: the server's, usually "public").
 * @throws {KeelError} `E_REGISTRY_STORAGE` for any other URL.
 */
export function parseDbOption(value: string): DbSpec {
  const forms = "a SQLite file path (./registry.db), or postgres://USER:PASSWORD@HOST:5432/DATABASE?schema=SCHEMA";
  if (value.trim() === "") throw storageError(`--db is empty: use ${forms}`);
  if (!SCHEME.test(value)) return { kind: "sqlite", path: value };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw storageError(`--db "${maskUrl(value)}" is not a valid URL: use ${forms}`);
  }
  if (url.protocol === "file:") return { kind: "sqlite", path: filePath(url, "--db", value) };
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") throw storageError(`--db does not take "${url.protocol}" URLs: use ${forms}`);
  if (url.hostname === "" && !url.searchParams.has("host")) throw storageError(`--db "${maskUrl(value)}" names no host: use ${forms}`);
  const schema = url.searchParams.get("schema");
  if (schema === null) return { kind: "postgres", url: value };
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) throw storageError(`--db's schema "${schema}" is not a plain SQL name: use letters, digits and "_"`);
  url.searchParams.delete("schema");
  return { kind: "postgres", url: url.href, schema };
}

/** Says which database a {@link DbSpec} names, for logs, with any password masked. */
export function describeDb(spec: DbSpec): string {
  if (spec.kind === "sqlite") return `SQLite ${spec.path}`;
  return `Postgres ${maskUrl(spec.url)}${spec.schema === undefined ? "" : ` schema "${spec.schema}"`}`;
}

