/**
 * A {@link BlobStore} on S3-compatible object storage (AWS S3, MinIO, Cloudflare R2, Ceph,
 * s3rver, ...), spoken over the S3 REST API with web-standard `fetch` and SigV4 signing by
 * `aws4fetch`, so the registry stays free of runtime APIs.
 *
 * - A put is one PutObject. S3 makes a PUT atomic: readers see the old object or the new one,
 *   never part of one, and a failed upload leaves nothing. The body's SHA-256 is signed
 *   (`x-amz-content-sha256`), so S3 refuses a body damaged on the way, and it is kept as the
 *   object's `x-amz-meta-keel-sha256`, which every get checks. A put returns once the object
 *   reads back whole (one GET): some S3-compatible servers (s3rver's file store) write objects in
 *   place and answer the PUT before the write is done. For them too, puts and deletes of one key
 *   run one at a time in this process, gets of that key wait for them, and a get that reads a
 *   half-written object (its checksum does not match) reads it again after a pause (about 2.5 s
 *   in all) before failing.
 * - Keys are those of the port (`@scope/name/-/name-1.0.0.tgz`) below an optional prefix. As in
 *   the folder store, a key cannot also be the folder of another key: a put checks the key's
 *   parents (HeadObject) and what lies below it (ListObjectsV2).
 * - The credentials need s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket (without
 *   ListBucket, S3 answers 403 instead of 404 for a missing object). The first call checks the
 *   bucket with one ListObjectsV2, so a missing bucket or bad credentials fail early.
 *
 * Failures are `KeelError`s with code `E_REGISTRY_STORAGE`: access denied (403: check the
 * credentials), a bucket that does not exist (named), an endpoint that cannot be reached (named),
 * or any other answer (its status and S3 error code).
 * @module
 */

import { AwsClient } from "aws4fetch";
import { KeelError } from "../core/errors.ts";
import { assertBlobKey, type BlobStore } from "./blobs.ts";

/** Options for {@link createS3BlobStore}. */
export interface S3BlobStoreOptions {
  /** The service URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`. */
  readonly endpoint: string;
  readonly bucket: string;
  /** The signing region (default: guessed from an AWS endpoint, else "us-east-1"). */
  readonly region?: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** For temporary credentials (STS). */
  readonly sessionToken?: string;
  /** Objects are kept under `<prefix>/<key>`; segments as in blob keys (e.g. "registry/tarballs"). */
  readonly prefix?: string;
  /** `<endpoint>/<bucket>/<key>` when true (the default), else `<bucket>.<endpoint host>/<key>`. */
  readonly forcePathStyle?: boolean;
  /** The fetch to send requests with (default the global one). */
  readonly fetch?: typeof fetch;
  /**
   * How long a response body may deliver nothing before the read is given up and tried again
   * (default 10,000 ms): a server that sends fewer bytes than it announced would otherwise hold
   * the read forever.
   */
  readonly stallTimeoutMs?: number;
}

/** S3 bucket names: 3 to 63 lowercase letters, digits, dots and hyphens. */
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
/**
 * Pauses before reading an object again whose bytes do not match its checksum (a torn read): about
 * 2.5 s in all, for a server still writing it.
 */
const REREAD_DELAYS_MS = [5, 10, 20, 40, 80, 160, 320, 640, 1280];
const CHECKSUM_HEADER = "x-amz-meta-keel-sha256";
const ACCESS_CODES = new Set(["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "AllAccessDisabled"]);

/**
 * Creates a blob store on an S3-compatible bucket. Nothing is sent until the first call; its
 * methods fail with `E_REGISTRY_STORAGE` as the module docs describe.
 * @throws {TypeError} For an endpoint that is not an http(s) URL, an invalid bucket name or
 * prefix, empty credentials, or a `stallTimeoutMs` that is not above 0.
 */
export function createS3BlobStore(options: S3BlobStoreOptions): BlobStore {
  let endpointUrl: URL;
  try {
    endpointUrl = new URL(options.endpoint);
  } catch {
    throw new TypeError(`S3 endpoint "${options.endpoint}" is not a URL: use e.g. https://s3.us-east-1.amazonaws.com or http://127.0.0.1:9000`);
  }
  if ((endpointUrl.protocol !== "http:" && endpointUrl.protocol !== "https:") || endpointUrl.search !== "" || endpointUrl.hash !== "" || endpointUrl.username !== "" || endpointUrl.password !== "") {
    throw new TypeError(`S3 endpoint "${endpointUrl.origin}" must be an http(s) URL without credentials, query or fragment`);
  }
  const { bucket } = options;
  if (typeof bucket !== "string" || !BUCKET_NAME.test(bucket) || bucket.includes("..")) {
    throw new TypeError(`S3 bucket name "${bucket}" is invalid: use 3 to 63 lowercase letters, digits, dots and hyphens`);
  }
  const prefix = (options.prefix ?? "").replace(/^\/+|\/+$/g, "");
  if (prefix !== "") {
    try {
      assertBlobKey(prefix);
    } catch {
      throw new TypeError(`S3 prefix "${options.prefix}" is invalid: use segments of letters, digits and "@._-" joined by "/"`);
    }
  }
  if (typeof options.accessKeyId !== "string" || options.accessKeyId === "" || typeof options.secretAccessKey !== "string" || options.secretAccessKey === "") {
    throw new TypeError("S3 credentials are missing: pass accessKeyId and secretAccessKey");
  }

  const endpoint = endpointUrl.href.replace(/\/+$/, "");
  const pathStyle = options.forcePathStyle ?? true;
  const basePath = endpointUrl.pathname.replace(/\/+$/, "");
  const bucketUrl = pathStyle ? `${endpoint}/${bucket}` : `${endpointUrl.protocol}//${bucket}.${endpointUrl.host}${basePath}`;
  const client = new AwsClient({
    accessKeyId: options.accessKeyId,
    secretAccessKey: options.secretAccessKey,
    service: "s3",
    retries: 0,
    ...(options.sessionToken === undefined || options.sessionToken === "" ? {} : { sessionToken: options.sessionToken }),
    ...(options.region === undefined || options.region === "" ? {} : { region: options.region }),
  });
  const send = options.fetch ?? ((request: Request) => fetch(request));
  const stallMs = options.stallTimeoutMs ?? 10_000;
  if (!(stallMs > 0)) throw new TypeError(`stallTimeoutMs must be more than 0, got ${stallMs}`);
  const where = `S3 bucket "${bucket}" at ${endpoint}`;

  const objectName = (key: string): string => prefix === "" ? key : `${prefix}/${key}`;
  const objectUrl = (key: string): string => `${bucketUrl}/${objectName(key).split("/").map(encodeURIComponent).join("/")}`;

  async function request(method: string, url: string, init: { headers?: Record<string, string>; body?: Uint8Array } = {}): Promise<Response> {
    const signed = await client.sign(url, {
      method,
      headers: init.headers ?? {},
      ...(init.body === undefined ? {} : { body: init.body as Uint8Array<ArrayBuffer> }),
    });
    try {
      return await send(signed);
    } catch (e) {
      throw new KeelError(
        "E_REGISTRY_STORAGE",
        `Cannot reach the S3 endpoint ${endpoint} (${e instanceof Error ? e.message : String(e)}): check the endpoint in --storage and that the server is running`,
        { cause: e },
      );
    }
  }

  /** The error for an answer that is not a success, from its status and S3 error body. */
  async function failure(response: Response, action: string): Promise<KeelError> {
    const body = await response.text().catch(() => "");
    const code = xmlValue(body, "Code");
    const message = xmlValue(body, "Message");
    const detail = [code, message].filter((s) => s !== undefined).join(": ");
    const said = detail === "" ? `${response.status}` : `${response.status}, ${detail}`;
    if (code === "NoSuchBucket") {
      return new KeelError("E_REGISTRY_STORAGE", `The S3 bucket "${bucket}" does not exist at ${endpoint}: create it, or fix the bucket name in --storage`);
    }
    if (response.status === 403 || (code !== undefined && ACCESS_CODES.has(code))) {
      return new KeelError(
        "E_REGISTRY_STORAGE",
        `Access denied to ${where} (${said}): check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and that they may read, write, delete and list in the bucket`,
      );
    }
    const hint = response.status === 301 || code === "AuthorizationHeaderMalformed" || code === "PermanentRedirect"
      ? "check the region and endpoint in --storage"
      : "check the storage settings, or retry if the server is overloaded";
    return new KeelError("E_REGISTRY_STORAGE", `The ${where} failed to ${action} (${said}): ${hint}`);
  }

  let ready: Promise<void> | undefined;
  /** Checks once that the bucket exists and the credentials work; a failure is retried next call. */
  function checked(): Promise<void> {
    ready ??= (async () => {
      const response = await request("GET", `${bucketUrl}?list-type=2&max-keys=1${prefix === "" ? "" : `&prefix=${encodeURIComponent(`${prefix}/`)}`}`);
      if (!response.ok) throw await failure(response, "list objects");
      await response.body?.cancel();
    })().catch((e) => {
      ready = undefined;
      throw e;
    });
    return ready;
  }

  /** Puts and deletes in flight, one chain per key, so a server that writes in place sees one at a time. */
  const pending = new Map<string, Promise<unknown>>();
  async function serial<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = pending.get(key);
    const done = (previous === undefined ? Promise.resolve() : previous.catch(() => {})).then(work);
    pending.set(key, done);
    try {
      return await done;
    } finally {
      if (pending.get(key) === done) pending.delete(key);
    }
  }
  async function settled(key: string): Promise<void> {
    await pending.get(key)?.catch(() => {});
  }

  async function exists(key: string): Promise<boolean> {
    const response = await request("HEAD", objectUrl(key));
    await response.body?.cancel();
    if (response.ok) return true;
    if (response.status === 404) return false;
    throw await failure(response, `check "${objectName(key)}"`);
  }

  /** The first stored key below `key/`, if any. */
  async function firstBelow(key: string): Promise<string | undefined> {
    const response = await request("GET", `${bucketUrl}?list-type=2&max-keys=1&prefix=${encodeURIComponent(`${objectName(key)}/`)}`);
    if (!response.ok) throw await failure(response, "list objects");
    const found = xmlValue(await response.text(), "Key");
    return found === undefined ? undefined : found.slice(prefix === "" ? 0 : prefix.length + 1);
  }

  async function assertNoConflict(key: string): Promise<void> {
    const segments = key.split("/");
    const parents = segments.slice(1).map((_, i) => segments.slice(0, i + 1).join("/"));
    const [below, ...parentsExist] = await Promise.all([firstBelow(key), ...parents.map(exists)]);
    const parent = parents.find((_, i) => parentsExist[i] === true);
    const other = parent ?? below;
    if (other !== undefined) {
      throw new TypeError(`Blob key "${key}" conflicts with the stored key "${other}": a key cannot also be the folder of another key`);
    }
  }

  /**
   * Reads an object whole: its bytes match the checksum it was stored with (`expected`, else its
   * metadata's), read again after a pause while they do not.
   */
  async function readObject(key: string, expected?: string): Promise<Uint8Array | undefined> {
    let lastProblem = "";
    for (let attempt = 0; attempt <= REREAD_DELAYS_MS.length; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, REREAD_DELAYS_MS[attempt - 1]));
      const response = await request("GET", objectUrl(key));
      if (response.status === 404) {
        const body = await response.text().catch(() => "");
        if (xmlValue(body, "Code") === "NoSuchBucket") throw await failure(new Response(body, { status: 404 }), "read");
        return undefined;
      }
      if (!response.ok) throw await failure(response, `read "${objectName(key)}"`);
      let bytes: Uint8Array;
      try {
        bytes = await readBody(response, stallMs);
      } catch (e) {
        // The connection broke mid-body: a server replacing the object in place cut it short.
        lastProblem = e instanceof Error ? e.message : String(e);
        continue;
      }
      const want = expected ?? response.headers.get(CHECKSUM_HEADER);
      if (want === null || want === await sha256Hex(bytes)) return bytes;
      lastProblem = "its SHA-256 does not match the one it was stored with";
    }
    throw new KeelError(
      "E_REGISTRY_STORAGE",
      `The object "${objectName(key)}" in the ${where} could not be read whole (${lastProblem}): check the server, and put the blob again if it was damaged`,
    );
  }

  return {
    name: "s3",
    async put(key, bytes) {
      assertBlobKey(key);
      if (!(bytes instanceof Uint8Array)) throw new TypeError("BlobStore.put: bytes must be a Uint8Array");
      const body = bytes.slice();
      await checked();
      await serial(key, async () => {
        await assertNoConflict(key);
        const sum = await sha256Hex(body);
        const response = await request("PUT", objectUrl(key), {
          headers: { "content-type": "application/octet-stream", "x-amz-content-sha256": sum, [CHECKSUM_HEADER]: sum },
          body,
        });
        if (!response.ok) throw await failure(response, `store "${objectName(key)}"`);
        await response.body?.cancel();
        // Read it back before saying it is stored: some servers (s3rver) answer a PUT before the
        // object is fully written, and a put that followed would then mix into it.
        if ((await readObject(key, sum)) === undefined) {
          throw new KeelError("E_REGISTRY_STORAGE", `The object "${objectName(key)}" was stored in the ${where} but is not there: check the server`);
        }
      });
    },
    async get(key) {
      assertBlobKey(key);
      await checked();
      await settled(key);
      return await readObject(key);
    },
    async has(key) {
      assertBlobKey(key);
      await checked();
      await settled(key);
      return await exists(key);
    },
    async delete(key) {
      assertBlobKey(key);
      await checked();
      return await serial(key, async () => {
        // DeleteObject answers 204 whether or not the object was there.
        if (!(await exists(key))) return false;
        const response = await request("DELETE", objectUrl(key));
        if (!response.ok) throw await failure(response, `delete "${objectName(key)}"`);
        await response.body?.cancel();
        return true;
      });
    },
  };
}

/** Reads a response body as it streams in, into one array; gives up after `stallMs` without a byte. */
async function readBody(response: Response, stallMs: number): Promise<Uint8Array> {
  if (response.body === null) return new Uint8Array(0);
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<"stalled">((resolve) => timer = setTimeout(() => resolve("stalled"), stallMs));
    const next = await Promise.race([reader.read(), stalled]).finally(() => clearTimeout(timer));
    if (next === "stalled") {
      await reader.cancel().catch(() => {});
      throw new Error(`the body stopped after ${total} bytes${Number.isFinite(declared) ? ` of ${declared}` : ""} for ${stallMs} ms`);
    }
    if (next.done) break;
    chunks.push(next.value);
    total += next.value.length;
  }
  if (Number.isFinite(declared) && declared !== total) throw new Error(`the body has ${total} bytes, not the ${declared} announced`);
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The text of the first `<tag>` in an S3 XML answer, unescaped. */
function xmlValue(xml: string, tag: string): string | undefined {
  const match = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  if (match === null) return undefined;
  return match[1]!.replace(/&(lt|gt|quot|apos|amp|#(\d+)|#x([0-9a-fA-F]+));/g, (all, name: string, dec?: string, hex?: string) => {
    if (dec !== undefined) return String.fromCodePoint(Number(dec));
    if (hex !== undefined) return String.fromCodePoint(parseInt(hex, 16));
    return ({ lt: "<", gt: ">", quot: '"', apos: "'", amp: "&" } as Record<string, string>)[name] ?? all;
  });
}
