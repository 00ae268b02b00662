/**
 * The S3 blob store against a real S3-compatible server: s3rver (a Koa app implementing the S3
 * REST API over files), started in this process on 127.0.0.1 and a free port.
 *
 * s3rver checks that a SigV4 request names a known access key id (its default S3RVER/S3RVER),
 * but it does not check the signature itself (its SigV4 check is "unimplemented"), so on its own
 * it would accept a wrong secret. This test puts a SigV4 check in front of its routes: the
 * signature is computed again from the received method, path, query and signed headers with the
 * secret s3rver knows, and a mismatch gets S3's 403 SignatureDoesNotMatch.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import S3rver from "s3rver";
import { AwsClient, AwsV4Signer } from "aws4fetch";
import { KeelError } from "../core/errors.ts";
import type { Runtime } from "../core/runtime.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { testBlobStore } from "./_blobs-conformance.ts";
import { createS3BlobStore, type S3BlobStoreOptions } from "./blobs-s3.ts";

const BUCKET = "keel-blobs";
const PLAIN_BUCKET = "keel-plain";
const KEY_ID = "S3RVER";
const SECRET = "S3RVER";
const utf8 = new TextEncoder();

/** The part of a Koa context the signature check reads and writes. */
interface KoaContext {
  readonly method: string;
  readonly url: string;
  readonly host: string;
  readonly headers: Record<string, string | string[] | undefined>;
  status: number;
  body: unknown;
  type: string;
}
interface S3rverServer {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
  readonly middleware: ((ctx: KoaContext, next: () => Promise<void>) => Promise<void>)[];
}

let runtime: Runtime;
let tmp = "";
let server: S3rverServer | undefined;
let endpoint = "";
let count = 0;
/** Signature checks the front made, and how many failed. */
const verified = { ok: 0, failed: 0 };

/** Recomputes a header-signed SigV4 request's signature with the secret s3rver knows. */
async function signatureMatches(ctx: KoaContext): Promise<boolean> {
  const header = String(ctx.headers.authorization ?? "");
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(header);
  if (match === null) return false;
  const [, keyId, , region, signedHeaders, signature] = match;
  if (keyId !== KEY_ID) return true; // s3rver answers InvalidAccessKeyId itself
  const headers = new Headers();
  for (const name of signedHeaders!.split(";")) {
    if (name !== "host") headers.set(name, String(ctx.headers[name] ?? ""));
  }
  const signer = new AwsV4Signer({
    method: ctx.method,
    url: `http://${ctx.host}${ctx.url}`,
    headers,
    accessKeyId: KEY_ID,
    secretAccessKey: SECRET,
    service: "s3",
    region: region!,
    datetime: String(ctx.headers["x-amz-date"] ?? ""),
  });
  return (await signer.signature()) === signature;
}

before(async () => {
  runtime = await detectRuntime();
  tmp = await runtime.fs!.makeTempDir("keel-blobs-s3-");
  server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory: `${tmp}/s3rver`,
    configureBuckets: [{ name: BUCKET }, { name: PLAIN_BUCKET }],
  }) as unknown as S3rverServer; // its types leave out Koa's middleware list
  server.middleware.unshift(async (ctx, next) => {
    if (ctx.headers.authorization === undefined) return await next();
    if (await signatureMatches(ctx)) {
      verified.ok++;
      return await next();
    }
    verified.failed++;
    ctx.status = 403;
    ctx.type = "application/xml";
    ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your key and signing method.</Message></Error>';
  });
  const { port } = await server.run();
  endpoint = `http://127.0.0.1:${port}`;
});

after(async () => {
  await server?.close();
  if (tmp !== "") await runtime.fs!.remove(tmp);
});

function options(extra: Partial<S3BlobStoreOptions> = {}): S3BlobStoreOptions {
  // s3rver answers a PUT before its file is fully written, and a GET in that moment announces more
  // bytes than it sends: give such a read up after 1 s instead of 10.
  return { endpoint, bucket: BUCKET, accessKeyId: KEY_ID, secretAccessKey: SECRET, region: "us-east-1", stallTimeoutMs: 1000, ...extra };
}

/** A client that talks to s3rver directly, to see what the store really wrote. */
function rawClient(): AwsClient {
  return new AwsClient({ accessKeyId: KEY_ID, secretAccessKey: SECRET, service: "s3", region: "us-east-1", retries: 0 });
}

function isStorageError(pattern: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(KeelError.is(e, "E_REGISTRY_STORAGE"), `expected E_REGISTRY_STORAGE, got ${String(e)}`);
    assert.match((e as Error).message, pattern);
    return true;
  };
}

testBlobStore("s3 (s3rver, each store under its own prefix)", () => Promise.resolve(createS3BlobStore(options({ prefix: `conformance/run-${count++}` }))));

describe("createS3BlobStore", () => {
  test("keeps each blob as the object <prefix>/<key>, with its SHA-256 as metadata", async () => {
    const store = createS3BlobStore(options({ prefix: "/registry/tarballs/" }));
    const bytes = utf8.encode("a tarball");
    await store.put("@keel/x/-/x-1.0.0.tgz", bytes);
    const list = await rawClient().fetch(`${endpoint}/${BUCKET}?list-type=2&prefix=registry/`);
    assert.equal(list.status, 200);
    const keys = [...(await list.text()).matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]);
    assert.deepEqual(keys, ["registry/tarballs/@keel/x/-/x-1.0.0.tgz"]);
    const object = await rawClient().fetch(`${endpoint}/${BUCKET}/registry/tarballs/%40keel/x/-/x-1.0.0.tgz`);
    assert.equal(object.status, 200);
    assert.deepEqual(new Uint8Array(await object.arrayBuffer()), bytes);
    const sum = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(object.headers.get("x-amz-meta-keel-sha256"), sum);
    assert.equal(store.name, "s3");
    assert.ok(verified.ok > 0 && verified.failed === 0, "every request so far carried a valid SigV4 signature");
  });

  test("works without a prefix, and sends the session token and the signed payload hash", async () => {
    const sent: Request[] = [];
    const store = createS3BlobStore(options({
      bucket: PLAIN_BUCKET,
      sessionToken: "session-token-1",
      fetch: (input, init) => {
        const request = new Request(input, init);
        sent.push(request.clone());
        return fetch(request);
      },
    }));
    await store.put("plain.tgz", utf8.encode("plain"));
    assert.deepEqual(await store.get("plain.tgz"), utf8.encode("plain"));
    const object = await rawClient().fetch(`${endpoint}/${PLAIN_BUCKET}/plain.tgz`);
    assert.equal(await object.text(), "plain");
    assert.ok(sent.length > 0);
    for (const request of sent) {
      assert.equal(request.headers.get("x-amz-security-token"), "session-token-1");
      assert.match(request.headers.get("authorization") ?? "", /^AWS4-HMAC-SHA256 Credential=S3RVER\/\d{8}\/us-east-1\/s3\/aws4_request, SignedHeaders=.*x-amz-security-token/);
    }
    const put = sent.find((r) => r.method === "PUT");
    assert.ok(put !== undefined);
    assert.match(put.headers.get("x-amz-content-sha256") ?? "", /^[0-9a-f]{64}$/, "the body's hash is signed, not UNSIGNED-PAYLOAD");
  });

  test("a wrong secret is E_REGISTRY_STORAGE: access denied, check the credentials", async () => {
    const failedBefore = verified.failed;
    const store = createS3BlobStore(options({ secretAccessKey: "not-the-secret" }));
    await assert.rejects(store.get("a.tgz"), isStorageError(/^Access denied to S3 bucket "keel-blobs" at http:\/\/127\.0\.0\.1:\d+ \(403, SignatureDoesNotMatch: .*\): check the credentials \(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY/));
    await assert.rejects(store.put("a.tgz", utf8.encode("x")), isStorageError(/Access denied/));
    assert.ok(verified.failed > failedBefore);
  });

  test("an unknown access key id is E_REGISTRY_STORAGE: access denied", async () => {
    const store = createS3BlobStore(options({ accessKeyId: "NOBODY" }));
    await assert.rejects(store.has("a.tgz"), isStorageError(/^Access denied .*InvalidAccessKeyId.*check the credentials/));
  });

  test("a missing bucket is E_REGISTRY_STORAGE naming the bucket, for every method", async () => {
    const store = createS3BlobStore(options({ bucket: "no-such-bucket" }));
    const named = isStorageError(/^The S3 bucket "no-such-bucket" does not exist at http:\/\/127\.0\.0\.1:\d+: create it/);
    await assert.rejects(store.get("a.tgz"), named);
    await assert.rejects(store.has("a.tgz"), named);
    await assert.rejects(store.put("a.tgz", utf8.encode("x")), named);
    await assert.rejects(store.delete("a.tgz"), named);
  });

  test("once the bucket is made, the same store works (a failed check is not remembered)", async () => {
    const store = createS3BlobStore(options({ bucket: "made-later" }));
    await assert.rejects(store.has("a.tgz"), isStorageError(/does not exist/));
    const made = await rawClient().fetch(`${endpoint}/made-later`, { method: "PUT" });
    assert.equal(made.status, 200);
    await store.put("a.tgz", utf8.encode("later"));
    assert.deepEqual(await store.get("a.tgz"), utf8.encode("later"));
  });

  test("an endpoint that is down is E_REGISTRY_STORAGE naming the endpoint", async () => {
    const closed = await runtime.serve!(() => new Response("x"), { hostname: "127.0.0.1", port: 0 });
    const url = closed.url;
    await closed.close();
    const store = createS3BlobStore(options({ endpoint: url }));
    const unreachable = isStorageError(new RegExp(`^Cannot reach the S3 endpoint ${url.replace(/[.]/g, "\\.")} \\(.*\\): check the endpoint`));
    await assert.rejects(store.get("a.tgz"), unreachable);
    await assert.rejects(store.put("a.tgz", utf8.encode("x")), unreachable);
  });

  test("an object whose bytes do not match its stored SHA-256 is E_REGISTRY_STORAGE; one without a checksum is read as is", async () => {
    const store = createS3BlobStore(options({ prefix: "damaged" }));
    await store.put("ok.tgz", utf8.encode("good bytes"));
    const damaged = await rawClient().fetch(`${endpoint}/${BUCKET}/damaged/bad.tgz`, {
      method: "PUT",
      body: utf8.encode("changed bytes"),
      headers: { "x-amz-meta-keel-sha256": "0".repeat(64) },
    });
    assert.equal(damaged.status, 200);
    await assert.rejects(store.get("bad.tgz"), isStorageError(/^The object "damaged\/bad\.tgz" in the S3 bucket "keel-blobs" .* could not be read whole \(its SHA-256 does not match/));
    const foreign = await rawClient().fetch(`${endpoint}/${BUCKET}/damaged/foreign.tgz`, { method: "PUT", body: utf8.encode("from another tool") });
    assert.equal(foreign.status, 200);
    assert.deepEqual(await store.get("foreign.tgz"), utf8.encode("from another tool"));
    assert.deepEqual(await store.get("ok.tgz"), utf8.encode("good bytes"));
  });

  test("a body that stops arriving is read again, then E_REGISTRY_STORAGE (a server that misbehaves)", async () => {
    let reads = 0;
    const stalling = await runtime.serve!((request) => {
      if (new URL(request.url).searchParams.has("list-type")) {
        return new Response("<ListBucketResult><KeyCount>0</KeyCount></ListBucketResult>", { headers: { "content-type": "application/xml" } });
      }
      reads++;
      // Five bytes, then nothing: the stream is never closed.
      return new Response(new ReadableStream({ start: (c) => c.enqueue(utf8.encode("12345")) }));
    }, { hostname: "127.0.0.1", port: 0 });
    try {
      const store = createS3BlobStore(options({ endpoint: stalling.url, stallTimeoutMs: 50 }));
      await assert.rejects(store.get("a.tgz"), isStorageError(/could not be read whole \(the body stopped after 5 bytes for 50 ms\)/));
      assert.equal(reads, 10, "read once, then again after each of nine pauses");
    } finally {
      await stalling.close();
    }
  });

  test("bad options are a TypeError before anything is sent", () => {
    assert.throws(() => createS3BlobStore(options({ endpoint: "ftp://127.0.0.1" })), TypeError);
    assert.throws(() => createS3BlobStore(options({ endpoint: "not a url" })), TypeError);
    assert.throws(() => createS3BlobStore(options({ endpoint: "http://user:pw@127.0.0.1" })), TypeError);
    assert.throws(() => createS3BlobStore(options({ bucket: "Bad_Bucket" })), TypeError);
    assert.throws(() => createS3BlobStore(options({ bucket: "ab" })), TypeError);
    assert.throws(() => createS3BlobStore(options({ prefix: "a/../b" })), TypeError);
    assert.throws(() => createS3BlobStore(options({ accessKeyId: "" })), TypeError);
    assert.throws(() => createS3BlobStore(options({ secretAccessKey: "" })), TypeError);
    assert.throws(() => createS3BlobStore(options({ stallTimeoutMs: 0 })), TypeError);
  });
});
