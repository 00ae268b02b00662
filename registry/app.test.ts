/**
 * The registry app through its fetch handler: the npm protocol as clients use it, the rules
 * (owners, tokens, yank, unpublish), every kind of bad input, and a seeded fuzz of the publish and
 * package-document routes.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { createRegistryApp, type RegistryApp, type RegistryAppOptions } from "./app.ts";
import { createMemoryBlobStore, type BlobStore } from "./blobs.ts";
import { createRegistryDb, openRegistryDb, type RegistryDb } from "./db.ts";
import { issueToken, openRegistry } from "./mod.ts";
import { generateSigningKey, type SigningKey, verifyVersionSignature } from "./signing.ts";
import { integrityOf, packTarball } from "./tarball.ts";

const BASE = "http://registry.test";
// deno-lint-ignore no-explicit-any -- documents are JSON, walked freely by the assertions
type Json = any;
const HOUR = 3_600_000;
const utf8 = new TextEncoder();

let runtime: Runtime;
let signingKey: SigningKey;
let root: string;

before(async () => {
  runtime = await detectRuntime();
  signingKey = (await generateSigningKey()).key;
  root = await runtime.fs!.makeTempDir("keel-registry-app-");
});

after(async () => {
  await runtime.fs!.remove(root);
});

// ---------------------------------------------------------------------------------------------
// A registry in memory, and a client that talks to its fetch handler.

interface Env {
  readonly app: RegistryApp;
  readonly db: RegistryDb;
  readonly blobs: BlobStore;
  /** An admin token of user "admin". */
  readonly admin: string;
  /** Moves the registry's clock. */
  advance(ms: number): void;
  token(user: string, scope: "read" | "publish" | "admin", options?: { packageScope?: string; expiresAt?: number }): Promise<string>;
  close(): Promise<void>;
}

async function createEnv(options: Partial<RegistryAppOptions> = {}, db?: RegistryDb): Promise<Env> {
  const database = db ?? await createRegistryDb(await runtime.openSqlite!(":memory:"));
  const blobs = options.blobs ?? createMemoryBlobStore();
  let offset = 0;
  const now = () => Date.now() + offset;
  const app = createRegistryApp({ db: database, blobs, baseUrl: BASE, signingKeys: [signingKey], passwordIterations: 1_000, now, ...options });
  const token = async (user: string, scope: "read" | "publish" | "admin", more: { packageScope?: string; expiresAt?: number } = {}) =>
    (await issueToken(database, { user, scope, packageScope: more.packageScope, expiresAt: more.expiresAt, now: now() })).token;
  return {
    app,
    db: database,
    blobs,
    admin: await token("admin", "admin"),
    advance: (ms) => {
      offset += ms;
    },
    token,
    close: () => database.close(),
  };
}

interface Call {
  readonly token?: string;
  readonly body?: unknown;
  readonly raw?: BodyInit;
  readonly headers?: Record<string, string>;
}

async function call(env: Env, method: string, path: string, options: Call = {}): Promise<Response> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: BodyInit | undefined = options.raw;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["content-type"] ??= "application/json";
  }
  return await env.app.fetch(new Request(BASE + path, { method, headers, ...(body === undefined ? {} : { body }) }));
}

async function json(response: Response): Promise<Record<string, unknown>> {
  return await response.json() as Record<string, unknown>;
}

/** Asserts an error answer: status, code, and a string `error` (what npm prints). */
async function refused(response: Response, status: number, code: string, pattern?: RegExp): Promise<Record<string, unknown>> {
  const body = await json(response);
  assert.equal(response.status, status, JSON.stringify(body));
  assert.equal(body.code, code, JSON.stringify(body));
  assert.equal(typeof body.error, "string");
  if (pattern !== undefined) assert.match(body.error as string, pattern);
  return body;
}

function escape(name: string): string {
  return name.startsWith("@") ? "@" + encodeURIComponent(name.slice(1)) : name;
}

interface PackageSpec {
  readonly name: string;
  readonly version: string;
  readonly extra?: Record<string, unknown>;
  readonly files?: Record<string, string>;
}

function packageJson(spec: PackageSpec): Record<string, unknown> {
  return { name: spec.name, version: spec.version, description: `The ${spec.name} package`, main: "index.js", ...spec.extra };
}

async function tarballOf(spec: PackageSpec, pj = packageJson(spec)): Promise<Uint8Array> {
  return await packTarball({ "package.json": JSON.stringify(pj, null, 2), "index.js": "module.exports = 1;\n", "README.md": `# ${spec.name}\n`, ...spec.files });
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** The body npm publish sends (libnpmpublish's buildMetadata). */
async function publishBody(spec: PackageSpec, options: { tarball?: Uint8Array; tag?: string; manifest?: Record<string, unknown> } = {}): Promise<Record<string, unknown>> {
  const tarball = options.tarball ?? await tarballOf(spec);
  const { integrity, shasum } = await integrityOf(tarball);
  const manifest: Record<string, unknown> = {
    ...packageJson(spec),
    readme: `# ${spec.name}\n`,
    _id: `${spec.name}@${spec.version}`,
    _nodeVersion: "20.0.0",
    _npmVersion: "11.0.0",
    dist: { integrity, shasum, tarball: `${BASE}/${spec.name}/-/${spec.name}-${spec.version}.tgz` },
    ...options.manifest,
  };
  return {
    _id: spec.name,
    name: spec.name,
    description: manifest.description,
    "dist-tags": { [options.tag ?? "latest"]: spec.version },
    versions: { [spec.version]: manifest },
    access: null,
    _attachments: { [`${spec.name}-${spec.version}.tgz`]: { content_type: "application/octet-stream", data: base64(tarball), length: tarball.length } },
  };
}

async function publish(env: Env, spec: PackageSpec, options: { token?: string; tag?: string; tarball?: Uint8Array; manifest?: Record<string, unknown> } = {}): Promise<Response> {
  return await call(env, "PUT", `/${escape(spec.name)}`, { token: options.token ?? env.admin, body: await publishBody(spec, options) });
}

async function published(env: Env, spec: PackageSpec, options: Parameters<typeof publish>[2] = {}): Promise<void> {
  const response = await publish(env, spec, options);
  assert.equal(response.status, 201, await response.text());
}

const ABBREVIATED = { accept: "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*" };

async function fullDoc(env: Env, name: string): Promise<Record<string, Json>> {
  const response = await call(env, "GET", `/${escape(name)}`);
  assert.equal(response.status, 200);
  return await response.json();
}

async function abbreviatedDoc(env: Env, name: string): Promise<Record<string, Json>> {
  const response = await call(env, "GET", `/${escape(name)}`, { headers: ABBREVIATED });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /application\/vnd\.npm\.install-v1\+json/);
  return await response.json();
}

// ---------------------------------------------------------------------------------------------
// Raw tarballs, for archives packTarball refuses to make.

function rawEntry(name: string, data: Uint8Array | string, type = "0", linkname = ""): Uint8Array[] {
  const bytes = typeof data === "string" ? utf8.encode(data) : data;
  const header = new Uint8Array(512);
  const put = (value: string, offset: number) => header.set(utf8.encode(value), offset);
  put(name, 0);
  put("0000644\0", 100);
  put("0000000\0", 108);
  put("0000000\0", 116);
  put(bytes.length.toString(8).padStart(11, "0") + "\0", 124);
  put("14340055604\0", 136);
  put(type, 156);
  put(linkname, 157);
  put("ustar\u000000", 257);
  put("        ", 148);
  let sum = 0;
  for (const b of header) sum += b;
  put(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  return [header, bytes, new Uint8Array((512 - (bytes.length % 512)) % 512)];
}

async function gzipParts(parts: Iterable<Uint8Array>): Promise<Uint8Array> {
  const stream = new CompressionStream("gzip");
  const output = new Response(stream.readable).arrayBuffer();
  const writer = stream.writable.getWriter();
  for (const part of parts) await writer.write(part as Uint8Array<ArrayBuffer>);
  await writer.close();
  return new Uint8Array(await output);
}

async function rawTarball(entries: Uint8Array[][]): Promise<Uint8Array> {
  return await gzipParts([...entries.flat(), new Uint8Array(1024)]);
}

function pjEntry(spec: PackageSpec): Uint8Array[] {
  return rawEntry("package/package.json", JSON.stringify(packageJson(spec)));
}

// ---------------------------------------------------------------------------------------------

describe("registry: the npm protocol", () => {
  let env: Env;
  before(async () => {
    env = await createEnv();
  });
  after(async () => {
    await env.close();
  });

  test("npm publish stores a version; the full and abbreviated documents carry what clients need", async () => {
    const spec = {
      name: "hello-plugin",
      version: "1.0.0",
      extra: {
        keel: { entry: "index.js", capabilities: ["net:api.example.com:443", "read:./data"], kernel: "^1" },
        dependencies: { "left-pad": "^1.3.0" },
        bin: { hello: "./cli.js" },
        engines: { node: ">=20" },
        keywords: ["greeting", "demo"],
        scripts: { postinstall: "node cli.js" },
      },
      files: { "cli.js": "#!/usr/bin/env node\n" },
    };
    const response = await publish(env, spec);
    assert.equal(response.status, 201);
    assert.deepEqual((await json(response)).ok, true);
    const tarball = await tarballOf(spec);
    const { integrity, shasum } = await integrityOf(tarball);

    const full = await fullDoc(env, "hello-plugin");
    assert.equal(full._id, "hello-plugin");
    assert.match(full._rev, /^\d+-[0-9a-f]{8}$/);
    assert.deepEqual(full["dist-tags"], { latest: "1.0.0" });
    assert.equal(full.description, "The hello-plugin package");
    assert.equal(full.readme, "# hello-plugin\n");
    assert.deepEqual(full.maintainers, [{ name: "admin" }]);
    const v = full.versions["1.0.0"];
    assert.equal(v._id, "hello-plugin@1.0.0");
    assert.deepEqual(v._npmUser, { name: "admin" });
    assert.deepEqual(v.keel, spec.extra.keel);
    assert.equal(v.readme, undefined, "the readme lives at the top only");
    assert.equal(v.dist.integrity, integrity);
    assert.match(v.dist.integrity, /^sha512-[A-Za-z0-9+/]+=*$/);
    assert.equal(v.dist.shasum, shasum);
    assert.match(v.dist.shasum, /^[0-9a-f]{40}$/);
    assert.equal(v.dist.tarball, `${BASE}/hello-plugin/-/hello-plugin-1.0.0.tgz`);
    assert.equal(v.dist.fileCount, 4);
    assert.equal(v.hasInstallScript, true);
    assert.equal(typeof full.time["1.0.0"], "string");
    assert.equal(typeof full.time.created, "string");
    assert.equal(typeof full.time.modified, "string");

    const abbreviated = await abbreviatedDoc(env, "hello-plugin");
    assert.deepEqual(Object.keys(abbreviated).sort(), ["dist-tags", "modified", "name", "time", "versions"]);
    const a = abbreviated.versions["1.0.0"];
    assert.deepEqual(a.dependencies, { "left-pad": "^1.3.0" });
    assert.deepEqual(a.bin, { hello: "cli.js" });
    assert.deepEqual(a.engines, { node: ">=20" });
    assert.equal(a.hasInstallScript, true);
    assert.deepEqual(a.dist, v.dist);
    assert.equal(a.description, undefined, "the abbreviated document leaves out what installs do not need");
    assert.equal(a.scripts, undefined);
    assert.equal(abbreviated.time["1.0.0"], full.time["1.0.0"], "per-version time in both documents");

    // Three downloads: the first reads the blob store, the others the in-memory copy; all whole.
    for (let i = 0; i < 3; i++) {
      const tgz = await call(env, "GET", "/hello-plugin/-/hello-plugin-1.0.0.tgz");
      assert.equal(tgz.status, 200);
      const bytes = new Uint8Array(await tgz.arrayBuffer());
      assert.deepEqual(await integrityOf(bytes), { integrity, shasum }, `download ${i + 1}`);
    }
    const one = await json(await call(env, "GET", "/hello-plugin/1.0.0"));
    assert.equal(one.version, "1.0.0");
    assert.equal((await json(await call(env, "GET", "/hello-plugin/latest"))).version, "1.0.0");
  });

  test("every version is signed, and the signature verifies against /-/npm/v1/keys", async () => {
    const keys = await json(await call(env, "GET", "/-/npm/v1/keys"));
    const list = keys.keys as { keyid: string; key: string; keytype: string; scheme: string; expires: null }[];
    assert.equal(list.length, 1);
    assert.equal(list[0]!.keytype, "ecdsa-sha2-nistp256");
    const v = (await fullDoc(env, "hello-plugin")).versions["1.0.0"];
    assert.equal(v.dist.signatures.length, 1);
    assert.equal(await verifyVersionSignature(list, "hello-plugin", "1.0.0", v.dist.integrity, v.dist.signatures[0]), true);
    assert.equal(await verifyVersionSignature(list, "hello-plugin", "1.0.1", v.dist.integrity, v.dist.signatures[0]), false);
  });

  test("scoped names: @scope%2fname, %2F and @scope/name give the same document; every tarball URL form works", async () => {
    await published(env, { name: "@acme/tool", version: "0.1.0" });
    const a = await (await call(env, "GET", "/@acme%2ftool")).text();
    const b = await (await call(env, "GET", "/@acme%2Ftool")).text();
    const c = await (await call(env, "GET", "/@acme/tool")).text();
    assert.equal(a, b);
    assert.equal(a, c);
    const doc = JSON.parse(a);
    assert.equal(doc.versions["0.1.0"].dist.tarball, `${BASE}/@acme/tool/-/tool-0.1.0.tgz`);
    for (const path of ["/@acme/tool/-/tool-0.1.0.tgz", "/@acme%2ftool/-/tool-0.1.0.tgz", "/@acme/tool/-/@acme/tool-0.1.0.tgz"]) {
      const r = await call(env, "GET", path);
      assert.equal(r.status, 200, path);
      assert.equal((await integrityOf(new Uint8Array(await r.arrayBuffer()))).integrity, doc.versions["0.1.0"].dist.integrity);
    }
    const head = await call(env, "HEAD", "/@acme/tool/-/tool-0.1.0.tgz");
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
  });

  test("ETag and 304: unchanged documents revalidate; a publish changes the ETag; gzip when asked", async () => {
    const first = await call(env, "GET", "/hello-plugin");
    const etag = first.headers.get("etag")!;
    assert.match(etag, /^"[A-Za-z0-9_-]+"$/);
    assert.equal(first.headers.get("cache-control"), "no-cache");
    const again = await call(env, "GET", "/hello-plugin", { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
    assert.equal(await again.text(), "");
    assert.equal((await call(env, "GET", "/hello-plugin", { headers: { "if-none-match": `W/${etag}` } })).status, 304);
    const corgi = await call(env, "GET", "/hello-plugin", { headers: { ...ABBREVIATED, "if-none-match": etag } });
    assert.equal(corgi.status, 200, "the abbreviated document has its own ETag");
    await corgi.arrayBuffer();
    await published(env, { name: "hello-plugin", version: "1.0.1" });
    const changed = await call(env, "GET", "/hello-plugin", { headers: { "if-none-match": etag } });
    assert.equal(changed.status, 200);
    assert.notEqual(changed.headers.get("etag"), etag);
    assert.ok((await changed.json()).versions["1.0.1"]);
    // Gzip is made once per revision, after a first plain answer.
    for (let i = 0; i < 20; i++) {
      const r = await call(env, "GET", "/hello-plugin", { headers: { "accept-encoding": "gzip" } });
      const raw = new Uint8Array(await r.arrayBuffer());
      if (r.headers.get("content-encoding") === "gzip") {
        const text = await new Response(new Blob([raw]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
        assert.ok(JSON.parse(text).versions["1.0.1"]);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.fail("no gzip answer");
  });

  test("dist-tags: list, add, move, remove; latest cannot be removed; a range is not a tag", async () => {
    const path = "/-/package/hello-plugin/dist-tags";
    assert.deepEqual(await json(await call(env, "GET", path)), { latest: "1.0.1" });
    assert.equal((await call(env, "PUT", `${path}/stable`, { token: env.admin, body: "1.0.0" })).status, 201);
    assert.deepEqual(await json(await call(env, "GET", path)), { latest: "1.0.1", stable: "1.0.0" });
    assert.deepEqual((await fullDoc(env, "hello-plugin"))["dist-tags"], { latest: "1.0.1", stable: "1.0.0" });
    assert.equal((await json(await call(env, "GET", "/hello-plugin/stable"))).version, "1.0.0");
    await refused(await call(env, "PUT", `${path}/next`, { token: env.admin, body: "9.9.9" }), 404, "E_REGISTRY_NOT_FOUND");
    await refused(await call(env, "PUT", `${path}/1.x`, { token: env.admin, body: "1.0.0" }), 400, "E_REGISTRY_REQUEST_INVALID", /dist-tag/);
    await refused(await call(env, "PUT", `${path}/v2`, { token: env.admin, body: "1.0.0" }), 400, "E_REGISTRY_REQUEST_INVALID", /semver range/);
    await refused(await call(env, "PUT", `${path}/ok`, { token: env.admin, body: { not: "a version" } }), 400, "E_REGISTRY_REQUEST_INVALID");
    await refused(await call(env, "DELETE", `${path}/latest`, { token: env.admin }), 400, "E_REGISTRY_REQUEST_INVALID", /latest/);
    await refused(await call(env, "PUT", `${path}/stable`, { body: "1.0.1" }), 401, "E_REGISTRY_UNAUTHORIZED");
    assert.equal((await call(env, "DELETE", `${path}/stable`, { token: env.admin })).status, 200);
    await refused(await call(env, "DELETE", `${path}/stable`, { token: env.admin }), 404, "E_REGISTRY_NOT_FOUND");
    assert.deepEqual(await json(await call(env, "GET", "/-/package/@acme%2ftool/dist-tags")), { latest: "0.1.0" });
  });

  test("deprecate: npm's PUT of the whole document sets and clears `deprecated`", async () => {
    const doc = await json(await call(env, "GET", "/hello-plugin?write=true", { token: env.admin }));
    (doc.versions as Record<string, Record<string, unknown>>)["1.0.0"]!.deprecated = "use 1.0.1";
    assert.equal((await call(env, "PUT", "/hello-plugin", { token: env.admin, body: doc })).status, 200);
    assert.equal((await fullDoc(env, "hello-plugin")).versions["1.0.0"].deprecated, "use 1.0.1");
    assert.equal((await abbreviatedDoc(env, "hello-plugin")).versions["1.0.0"].deprecated, "use 1.0.1");
    assert.equal((await fullDoc(env, "hello-plugin")).versions["1.0.1"].deprecated, undefined);
    (doc.versions as Record<string, Record<string, unknown>>)["1.0.0"]!.deprecated = "";
    assert.equal((await call(env, "PUT", "/hello-plugin", { token: env.admin, body: doc })).status, 200);
    assert.equal((await fullDoc(env, "hello-plugin")).versions["1.0.0"].deprecated, undefined);
    // A metadata update cannot add a version: that needs the tarball.
    (doc.versions as Record<string, unknown>)["3.0.0"] = { name: "hello-plugin", version: "3.0.0" };
    await refused(await call(env, "PUT", "/hello-plugin", { token: env.admin, body: doc }), 400, "E_REGISTRY_REQUEST_INVALID", /tarball/);
  });

  test("yank hides a version from resolution (both documents, tags) but keeps it downloadable", async () => {
    await published(env, { name: "yanky", version: "1.0.0" });
    await published(env, { name: "yanky", version: "1.1.0" });
    const before = await fullDoc(env, "yanky");
    assert.equal((await call(env, "PUT", "/-/keel/yank/yanky/1.1.0", { token: env.admin, body: { reason: "broken build" } })).status, 200);
    const full = await fullDoc(env, "yanky");
    const abbreviated = await abbreviatedDoc(env, "yanky");
    for (const doc of [full, abbreviated]) {
      assert.deepEqual(Object.keys(doc.versions), ["1.0.0"]);
      assert.deepEqual(doc["dist-tags"], { latest: "1.0.0" }, "latest falls back to the highest unyanked release");
      assert.equal(typeof doc.time["1.1.0"], "string", "time still lists it");
    }
    assert.deepEqual(full.yanked["1.1.0"].reason, "broken build");
    const exact = await json(await call(env, "GET", "/yanky/1.1.0"));
    assert.equal(exact.yanked, true);
    const tgz = await call(env, "GET", "/yanky/-/yanky-1.1.0.tgz");
    assert.equal(tgz.status, 200, "existing lockfiles keep working");
    assert.equal((await integrityOf(new Uint8Array(await tgz.arrayBuffer()))).integrity, before.versions["1.1.0"].dist.integrity);
    const write = await json(await call(env, "GET", "/yanky?write=true", { token: env.admin }));
    assert.equal((write.versions as Record<string, Record<string, unknown>>)["1.1.0"]!.yanked, true, "npm's read-for-write sees it");
    await refused(await call(env, "PUT", "/-/package/yanky/dist-tags/next", { token: env.admin, body: "1.1.0" }), 403, "E_REGISTRY_FORBIDDEN", /yanked/);
    // Restoring brings it back, and `latest` with it.
    assert.equal((await call(env, "DELETE", "/-/keel/yank/yanky/1.1.0", { token: env.admin })).status, 200);
    assert.deepEqual((await abbreviatedDoc(env, "yanky"))["dist-tags"], { latest: "1.1.0" });
    await refused(await call(env, "PUT", "/-/keel/yank/yanky/7.0.0", { token: env.admin }), 404, "E_REGISTRY_NOT_FOUND");
  });

  test("unpublish: within 72 hours by the owner; the number is never reused; afterwards only yank", async () => {
    await published(env, { name: "gone", version: "1.0.0" });
    await published(env, { name: "gone", version: "1.0.1" });
    await published(env, { name: "gone", version: "2.0.0" });
    assert.equal((await call(env, "GET", "/gone/-/gone-2.0.0.tgz")).status, 200, "downloaded once, so kept in memory");
    // npm unpublish gone@2.0.0: read for write, PUT without the version to /-rev/<rev>, DELETE the tarball.
    const doc = await json(await call(env, "GET", "/gone?write=true", { token: env.admin }));
    delete (doc.versions as Record<string, unknown>)["2.0.0"];
    await refused(await call(env, "PUT", "/gone/-rev/1-00000000", { token: env.admin, body: doc }), 409, "E_REGISTRY_REQUEST_INVALID", /changed since/);
    assert.equal((await call(env, "PUT", `/gone/-rev/${doc._rev}`, { token: env.admin, body: doc })).status, 200);
    const rev = (await json(await call(env, "GET", "/gone?write=true", { token: env.admin })))._rev;
    assert.equal((await call(env, "DELETE", `/gone/-/gone-2.0.0.tgz/-rev/${rev}`, { token: env.admin })).status, 200);
    const after = await fullDoc(env, "gone");
    assert.deepEqual(Object.keys(after.versions), ["1.0.0", "1.0.1"]);
    assert.deepEqual(after["dist-tags"], { latest: "1.0.1" });
    await refused(await call(env, "GET", "/gone/-/gone-2.0.0.tgz"), 404, "E_REGISTRY_NOT_FOUND");
    await refused(await publish(env, { name: "gone", version: "2.0.0" }), 409, "E_REGISTRY_VERSION_EXISTS", /immutable/);
    await refused(await call(env, "DELETE", `/gone/-/gone-1.0.0.tgz/-rev/${rev}`, { token: env.admin }), 403, "E_REGISTRY_FORBIDDEN", /unpublish it first/);

    env.advance(73 * HOUR);
    try {
      const old = await json(await call(env, "GET", "/gone?write=true", { token: env.admin }));
      delete (old.versions as Record<string, unknown>)["1.0.1"];
      await refused(await call(env, "PUT", `/gone/-rev/${old._rev}`, { token: env.admin, body: old }), 403, "E_REGISTRY_FORBIDDEN", /72 hours.*[Yy]ank/);
      await refused(await call(env, "DELETE", `/gone/-rev/${old._rev}`, { token: env.admin }), 403, "E_REGISTRY_FORBIDDEN");
      assert.deepEqual(Object.keys((await fullDoc(env, "gone")).versions), ["1.0.0", "1.0.1"], "a refused unpublish changes nothing");
    } finally {
      env.advance(-73 * HOUR);
    }
    // The whole package, within the window: gone, but the name stays its owner's.
    await published(env, { name: "gone-too", version: "1.0.0" });
    const whole = await json(await call(env, "GET", "/gone-too?write=true", { token: env.admin }));
    assert.equal((await call(env, "DELETE", `/gone-too/-rev/${whole._rev}`, { token: env.admin })).status, 200);
    await refused(await call(env, "GET", "/gone-too"), 404, "E_REGISTRY_NOT_FOUND");
    const other = await env.token("mallory", "publish");
    await refused(await publish(env, { name: "gone-too", version: "1.0.1" }, { token: other }), 403, "E_REGISTRY_FORBIDDEN");
  });

  test("search: words, keywords:, scope: and capability: qualifiers, npm's result shape", async () => {
    const search = async (text: string) => await json(await call(env, "GET", `/-/v1/search?text=${encodeURIComponent(text)}&size=20`));
    const names = (r: Record<string, unknown>) => (r.objects as { package: { name: string } }[]).map((o) => o.package.name).sort();
    const hello = await search("hello");
    assert.deepEqual(names(hello), ["hello-plugin"]);
    const object = (hello.objects as Record<string, Json>[])[0]!;
    assert.equal(object.package.version, "1.0.1");
    assert.equal(object.package.publisher.username, "admin");
    assert.equal(typeof object.package.date, "string");
    assert.equal(typeof object.score.final, "number");
    assert.equal(hello.total, 1);
    assert.deepEqual(names(await search("keywords:greeting")), []);
    assert.deepEqual(names(await search("scope:acme")), ["@acme/tool"]);
    await published(env, { name: "netter", version: "1.0.0", extra: { keywords: ["http"], keel: { entry: "index.js", capabilities: ["net:example.com:443"], kernel: "^1" } } });
    assert.deepEqual(names(await search("capability:net")), ["netter"]);
    assert.deepEqual(names(await search("capability:net:example.com:443")), ["netter"]);
    assert.deepEqual(names(await search("capability:read")), []);
    assert.deepEqual(names(await search("keywords:http")), ["netter"]);
    await refused(await call(env, "GET", "/-/v1/search?text=a&size=0"), 400, "E_REGISTRY_REQUEST_INVALID");
  });

  test("downloads are counted per version", async () => {
    for (let i = 0; i < 3; i++) await (await call(env, "GET", "/@acme/tool/-/tool-0.1.0.tgz")).arrayBuffer();
    await (await call(env, "HEAD", "/@acme/tool/-/tool-0.1.0.tgz")).arrayBuffer();
    const counts = await json(await call(env, "GET", "/-/keel/downloads/@acme%2ftool"));
    assert.equal(counts.total, 6, "three GETs here and three in the scoped-URL test; HEADs do not count");
  });

  test("ping, unknown routes, and the npm audit endpoint", async () => {
    assert.equal((await call(env, "GET", "/-/ping")).status, 200);
    await refused(await call(env, "GET", "/-/nope"), 404, "E_REGISTRY_NOT_FOUND");
    assert.deepEqual(await json(await call(env, "POST", "/-/npm/v1/security/advisories/bulk", { body: { "hello-plugin": ["1.0.0"] } })), {});
    await refused(await call(env, "GET", "/hello-plugin/9.9.9"), 404, "E_REGISTRY_NOT_FOUND");
    await refused(await call(env, "PATCH", "/hello-plugin"), 404, "E_REGISTRY_NOT_FOUND");
  });
});

describe("registry: users, tokens and permissions", () => {
  let env: Env;
  before(async () => {
    env = await createEnv({ limits: { loginsPerMinute: 3, publishesPerMinute: 5 } });
  });
  after(async () => {
    await env.close();
  });

  test("npm login: PUT /-/user/org.couchdb.user:<name> creates the user, then checks the password; whoami; logout", async () => {
    // What npm-profile's loginCouch sends: the body, and the same credentials as Basic auth.
    const login = (name: string, password: string) =>
      call(env, "PUT", `/-/user/org.couchdb.user:${name}`, {
        body: { _id: `org.couchdb.user:${name}`, name, password, type: "user", roles: [], date: new Date().toISOString() },
        headers: { authorization: `Basic ${btoa(`${name}:${password}`)}` },
      });
    const created = await login("bob", "correct horse");
    assert.equal(created.status, 201);
    const { token } = await json(created) as { token: string };
    assert.match(token, /^keel_/);
    assert.deepEqual(await json(await call(env, "GET", "/-/whoami", { token })), { username: "bob" });
    const again = await login("bob", "correct horse");
    assert.equal(again.status, 201);
    await refused(await login("bob", "wrong password"), 401, "E_REGISTRY_UNAUTHORIZED", /Wrong password/);
    await refused(await login("bob", "correct horse"), 429, "E_REGISTRY_RATE_LIMITED");
    await refused(await login("Bob", "whatever123"), 400, "E_REGISTRY_REQUEST_INVALID");
    await refused(await call(env, "POST", "/-/v1/login", { body: {} }), 404, "E_REGISTRY_NOT_FOUND");
    // The token publishes bob's own packages.
    await published(env, { name: "bobs-pkg", version: "1.0.0" }, { token });
    assert.equal((await call(env, "DELETE", `/-/user/token/${token}`, { token })).status, 200);
    await refused(await call(env, "GET", "/-/whoami", { token }), 401, "E_REGISTRY_UNAUTHORIZED", /revoked/);
  });

  test("sign-up can be closed", async () => {
    const closed = await createEnv({ signup: false });
    try {
      await refused(await call(closed, "PUT", "/-/user/org.couchdb.user:eve", { body: { name: "eve", password: "longenough" } }), 403, "E_REGISTRY_FORBIDDEN", /sign-up is closed/);
    } finally {
      await closed.close();
    }
  });

  test("tokens: missing, malformed, wrong, expired, too weak, for another scope, not the owner", async () => {
    const spec = { name: "@acme/widget", version: "1.0.0" };
    await refused(await call(env, "PUT", "/@acme%2fwidget", { body: await publishBody(spec) }), 401, "E_REGISTRY_UNAUTHORIZED", /needs a token/);
    await refused(await publish(env, spec, { token: "keel_not-a-real-token-at-all" }), 401, "E_REGISTRY_UNAUTHORIZED", /wrong/);
    await refused(await publish(env, spec, { token: "short" }), 401, "E_REGISTRY_UNAUTHORIZED", /malformed/);
    const basic = await call(env, "GET", "/-/whoami", { headers: { authorization: "Basic " + btoa("bob:correct horse") } });
    await refused(basic, 401, "E_REGISTRY_UNAUTHORIZED", /needs a token.*no passwords but at login/);
    const expiring = await env.token("carol", "publish", { expiresAt: Date.now() + HOUR });
    env.advance(2 * HOUR);
    try {
      await refused(await publish(env, spec, { token: expiring }), 401, "E_REGISTRY_UNAUTHORIZED", /expired/);
    } finally {
      env.advance(-2 * HOUR);
    }
    const reader = await env.token("carol", "read");
    await refused(await publish(env, spec, { token: reader }), 403, "E_REGISTRY_FORBIDDEN", /"publish" token/);
    const acme = await env.token("carol", "publish", { packageScope: "@acme" });
    await refused(await publish(env, { name: "@other/widget", version: "1.0.0" }, { token: acme }), 403, "E_REGISTRY_FORBIDDEN", /limited to @acme/);
    await refused(await publish(env, { name: "unscoped-thing", version: "1.0.0" }, { token: acme }), 403, "E_REGISTRY_FORBIDDEN", /limited to @acme/);
    await published(env, spec, { token: acme });
    // The scope is carol's now: dave cannot add a package to it, nor publish hers.
    const dave = await env.token("dave", "publish");
    await refused(await publish(env, { name: "@acme/other", version: "1.0.0" }, { token: dave }), 403, "E_REGISTRY_FORBIDDEN", /scope "@acme" belongs to "carol"/);
    await refused(await publish(env, { name: "@acme/widget", version: "1.0.1" }, { token: dave }), 403, "E_REGISTRY_FORBIDDEN", /belongs to "carol"/);
    await refused(await call(env, "PUT", "/-/keel/yank/@acme/widget/1.0.0", { token: dave }), 403, "E_REGISTRY_FORBIDDEN");
    await refused(await call(env, "PUT", "/-/package/@acme%2fwidget/dist-tags/beta", { token: dave, body: "1.0.0" }), 403, "E_REGISTRY_FORBIDDEN");
    // An admin may.
    await published(env, { name: "@acme/widget", version: "1.0.1" });
  });

  test("publishes are rate limited per user", async () => {
    const erin = await env.token("erin", "publish");
    const results: number[] = [];
    for (let i = 0; i < 6; i++) results.push((await publish(env, { name: "erins", version: `1.0.${i}` }, { token: erin })).status);
    assert.deepEqual(results, [201, 201, 201, 201, 201, 429]);
  });

  test("reads can require a read token", async () => {
    const closed = await createEnv({ publicRead: false });
    try {
      await published(closed, { name: "secret", version: "1.0.0" });
      await refused(await call(closed, "GET", "/secret"), 401, "E_REGISTRY_UNAUTHORIZED");
      assert.equal((await call(closed, "GET", "/secret", { token: await closed.token("reader", "read") })).status, 200);
    } finally {
      await closed.close();
    }
  });
});

describe("registry: bad input is refused with a coded error and changes nothing", () => {
  let env: Env;
  let reference: string;
  before(async () => {
    env = await createEnv({ limits: { maxTarballBytes: 256 * 1024, maxUnpackedBytes: 1024 * 1024, maxVersions: 10_000 } });
    await published(env, { name: "reference", version: "1.0.0" });
    reference = await (await call(env, "GET", "/reference")).text();
  });
  after(async () => {
    assert.equal(await (await call(env, "GET", "/reference")).text(), reference, "the reference package is untouched");
    assert.deepEqual(await env.db.check(), []);
    await env.close();
  });

  test("tarballs with ../ paths, absolute paths, symlinks, hard links, or no package.json", async () => {
    const spec = { name: "evil", version: "1.0.0" };
    const cases: [string, Uint8Array[][]][] = [
      ["parent-path", [pjEntry(spec), rawEntry("package/../../etc/passwd", "x")]],
      ["absolute-path", [pjEntry(spec), rawEntry("/etc/passwd", "x")]],
      ["symlink", [pjEntry(spec), rawEntry("package/link", "", "2", "/etc/passwd")]],
      ["hardlink", [pjEntry(spec), rawEntry("package/hard", "", "1", "package/package.json")]],
      ["missing-package-json", [rawEntry("package/index.js", "1")]],
    ];
    for (const [reason, entries] of cases) {
      const tarball = await rawTarball(entries);
      const body = await refused(await publish(env, spec, { tarball }), 400, "E_REGISTRY_TARBALL_INVALID");
      assert.equal((body.details as Record<string, unknown>).reason, reason);
    }
    await refused(await publish(env, spec, { tarball: utf8.encode("not gzip at all") }), 400, "E_REGISTRY_TARBALL_INVALID");
    await refused(await call(env, "GET", "/evil"), 404, "E_REGISTRY_NOT_FOUND");
  });

  test("a gzip bomb is stopped at the unpacked limit", async () => {
    const spec = { name: "bomb", version: "1.0.0" };
    const size = 64 * 1024 * 1024;
    const header = rawEntry("package/zeros", new Uint8Array(0))[0]!;
    // Rewrite the size field for 64 MiB of zeros, streamed into gzip.
    header.set(utf8.encode(size.toString(8).padStart(11, "0") + "\0"), 124);
    header.set(utf8.encode("        "), 148);
    let sum = 0;
    for (const b of header) sum += b;
    header.set(utf8.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    const zeros = new Uint8Array(1024 * 1024);
    const tarball = await gzipParts([...pjEntry(spec), header, ...Array.from({ length: 64 }, () => zeros), new Uint8Array(1024)]);
    assert.ok(tarball.length < 256 * 1024, `the bomb is small (${tarball.length} bytes)`);
    const body = await refused(await publish(env, spec, { tarball }), 400, "E_REGISTRY_TARBALL_INVALID");
    assert.equal((body.details as Record<string, unknown>).reason, "unpacked-too-large");
  });

  test("an oversized upload: by Content-Length, by a streamed body, by the tarball inside", async () => {
    const big = "x".repeat(2 * 1024 * 1024);
    await refused(await call(env, "PUT", "/big", { token: env.admin, raw: big }), 413, "E_REGISTRY_TOO_LARGE");
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 40; i++) controller.enqueue(new Uint8Array(64 * 1024).fill(32));
        controller.close();
      },
    });
    const streamed = await env.app.fetch(new Request(`${BASE}/big`, { method: "PUT", body: stream, headers: { authorization: `Bearer ${env.admin}` }, duplex: "half" } as RequestInit));
    await refused(streamed, 413, "E_REGISTRY_TOO_LARGE");
    const tarball = await packTarball({ "package.json": JSON.stringify({ name: "big", version: "1.0.0" }), "noise.bin": crypto.getRandomValues(new Uint8Array(60_000)).map((b, i) => (b + i) & 0xff) });
    const huge = new Uint8Array(300 * 1024);
    huge.set(tarball);
    await refused(await publish(env, { name: "big", version: "1.0.0" }, { tarball: huge }), 413, "E_REGISTRY_TOO_LARGE");
  });

  test("a tarball whose integrity does not match the manifest, or whose length lies", async () => {
    const spec = { name: "tampered", version: "1.0.0" };
    const other = await tarballOf({ name: "tampered", version: "1.0.0", files: { "extra.js": "1" } });
    const { integrity, shasum } = await integrityOf(other);
    await refused(await publish(env, spec, { manifest: { dist: { integrity, shasum } } }), 400, "E_REGISTRY_INTEGRITY");
    const body = await publishBody(spec);
    ((body._attachments as Record<string, Record<string, unknown>>)["tampered-1.0.0.tgz"]!).length = 3;
    await refused(await call(env, "PUT", "/tampered", { token: env.admin, body }), 400, "E_REGISTRY_REQUEST_INVALID", /bytes/);
    const bad64 = await publishBody(spec);
    ((bad64._attachments as Record<string, Record<string, unknown>>)["tampered-1.0.0.tgz"]!).data = "!!!not base64!!!";
    await refused(await call(env, "PUT", "/tampered", { token: env.admin, body: bad64 }), 400, "E_REGISTRY_REQUEST_INVALID", /base64/);
  });

  test("a tarball whose package.json disagrees with the request", async () => {
    const spec = { name: "liar", version: "1.0.0" };
    const cases: [Record<string, unknown>, string][] = [
      [{ name: "liar", version: "1.0.1" }, "version"],
      [{ name: "other", version: "1.0.0" }, "name"],
      [{ name: "liar", version: "1.0.0", dependencies: { evil: "*" } }, "dependencies"],
      [{ name: "liar", version: "1.0.0", keel: { entry: "index.js", capabilities: ["run"], kernel: "^1" } }, "keel"],
    ];
    for (const [pj, field] of cases) {
      const tarball = await tarballOf(spec, pj);
      const body = await refused(await publish(env, spec, { tarball }), 400, "E_REGISTRY_MANIFEST_INVALID");
      assert.equal((body.details as Record<string, unknown>).field, field);
    }
    await refused(await publish(env, spec, { manifest: { version: "1.0.1" } }), 400, "E_REGISTRY_MANIFEST_INVALID");
    await refused(await call(env, "PUT", "/liar", { token: env.admin, body: { ...(await publishBody(spec)), name: "other" } }), 400, "E_REGISTRY_REQUEST_INVALID");
  });

  test("an invalid keel field", async () => {
    const cases: [unknown, RegExp][] = [
      ["index.js", /must be an object/],
      [{ entry: "../outside.js", capabilities: [], kernel: "^1" }, /would leave the package/],
      [{ entry: "/abs.js", capabilities: [], kernel: "^1" }, /absolute/],
      [{ entry: "missing.js", capabilities: [], kernel: "^1" }, /not in the tarball/],
      [{ entry: "index.js", capabilities: ["teleport"], kernel: "^1" }, /capabilities\[0\]/],
      [{ entry: "index.js", capabilities: ["net:http://x"], kernel: "^1" }, /capabilities\[0\]/],
      [{ entry: "index.js", capabilities: "net", kernel: "^1" }, /list of capability strings/],
      [{ entry: "index.js", capabilities: [], kernel: "banana" }, /not a semver range/],
      [{ entry: "index.js", capabilities: [], kernel: "^1", capabilites: [] }, /unknown key/],
    ];
    for (const [keel, pattern] of cases) {
      await refused(await publish(env, { name: "bad-plugin", version: "1.0.0", extra: { keel } }), 400, "E_REGISTRY_MANIFEST_INVALID", pattern);
    }
  });

  test("a publish racing another of the same version: one wins, one gets 409; so do two processes on one file", async () => {
    const spec = { name: "racer", version: "1.0.0" };
    const [a, b] = await Promise.all([publish(env, spec), publish(env, { ...spec, files: { "other.js": "2" } })]);
    assert.deepEqual([a.status, b.status].sort(), [201, 409]);
    const loser = a.status === 409 ? a : b;
    await refused(loser, 409, "E_REGISTRY_VERSION_EXISTS");
    const doc = await fullDoc(env, "racer");
    const tgz = new Uint8Array(await (await call(env, "GET", "/racer/-/racer-1.0.0.tgz")).arrayBuffer());
    assert.equal((await integrityOf(tgz)).integrity, doc.versions["1.0.0"].dist.integrity, "the winner's tarball is the one stored");

    const path = `${root}/race.db`;
    const dbA = await openRegistryDb(runtime, path);
    const dbB = await openRegistryDb(runtime, path);
    const blobs = createMemoryBlobStore();
    const one = await createEnv({ blobs }, dbA);
    const two = await createEnv({ blobs }, dbB);
    try {
      for (let i = 0; i < 5; i++) {
        const racing = { name: "cross", version: `1.0.${i}` };
        const results = await Promise.all([publish(one, racing), publish(two, { ...racing, files: { "x.js": String(i) } })]);
        assert.deepEqual(results.map((r) => r.status).sort(), [201, 409]);
        for (const r of results) await r.arrayBuffer();
      }
      assert.deepEqual(Object.keys((await fullDoc(one, "cross")).versions).length, 5);
      assert.deepEqual(await dbA.check(), []);
    } finally {
      await one.close();
      await two.close();
    }
  });

  test("malformed JSON, non-UTF-8, deep nesting, wrong shapes", async () => {
    const put = (raw: BodyInit) => call(env, "PUT", "/shape", { token: env.admin, raw, headers: { "content-type": "application/json" } });
    await refused(await put("{ not json"), 400, "E_REGISTRY_REQUEST_INVALID", /not valid JSON/);
    await refused(await put(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), 400, "E_REGISTRY_REQUEST_INVALID", /UTF-8/);
    await refused(await put("[".repeat(10_000) + "]".repeat(10_000)), 400, "E_REGISTRY_REQUEST_INVALID");
    await refused(await put('{"a":' .repeat(100) + "1" + "}".repeat(100)), 400, "E_REGISTRY_REQUEST_INVALID", /nested/);
    await refused(await put("[]"), 400, "E_REGISTRY_REQUEST_INVALID");
    await refused(await put('"string"'), 400, "E_REGISTRY_REQUEST_INVALID");
    await refused(await put('{"versions":{}, "_attachments": {"x": 1}}'), 400, "E_REGISTRY_REQUEST_INVALID");
    await refused(await put('{"__proto__": {"admin": true}, "versions": {"1.0.0": {}}, "_attachments": {"shape-1.0.0.tgz": {"data": ""}}}'), 400, "E_REGISTRY_MANIFEST_INVALID");
    await refused(await call(env, "PUT", "/-/user/org.couchdb.user:x", { raw: "nope" }), 400, "E_REGISTRY_REQUEST_INVALID");
  });

  test("package names: .., unencoded or encoded slashes, look-alikes from other scripts, confusable punctuation", async () => {
    // The URL parser itself removes "%2e%2e" segments; what is left names no package.
    await refused(await call(env, "GET", "/%2e%2e"), 404, "E_REGISTRY_NOT_FOUND");
    await refused(await call(env, "GET", "/..%2f..%2fetc"), 400, "E_REGISTRY_REQUEST_INVALID", /not a valid package name/);
    await refused(await call(env, "GET", "/.hidden"), 400, "E_REGISTRY_REQUEST_INVALID", /may not start with/);
    await refused(await call(env, "GET", "/@acme%2f.."), 400, "E_REGISTRY_REQUEST_INVALID");
    await refused(await call(env, "GET", "/a%2fb"), 400, "E_REGISTRY_REQUEST_INVALID");
    await refused(await call(env, "GET", "/%zz"), 400, "E_REGISTRY_REQUEST_INVALID", /malformed/);
    await refused(await call(env, "GET", "/reference/extra/path"), 404, "E_REGISTRY_NOT_FOUND");
    await refused(await call(env, "GET", "/@acme"), 400, "E_REGISTRY_REQUEST_INVALID", /scope without a package/);
    // "rеference" with a Cyrillic е, and a Latin look-alike in a scope.
    await refused(await call(env, "GET", `/${encodeURIComponent("r\u0435ference")}`), 400, "E_REGISTRY_REQUEST_INVALID", /ASCII/);
    await refused(await publish(env, { name: "r\u0435ference", version: "1.0.0" }), 400, "E_REGISTRY_REQUEST_INVALID", /ASCII/);
    await refused(await publish(env, { name: "Reference", version: "1.0.0" }), 400, "E_REGISTRY_REQUEST_INVALID", /capital/);
    await refused(await publish(env, { name: "http", version: "1.0.0" }), 400, "E_REGISTRY_REQUEST_INVALID", /core module/);
    await refused(await publish(env, { name: "re-ference", version: "1.0.0" }), 403, "E_REGISTRY_FORBIDDEN", /too similar to the existing package "reference"/);
    await refused(await publish(env, { name: "re.fer_ence", version: "1.0.0" }), 403, "E_REGISTRY_FORBIDDEN", /too similar/);
    await refused(await publish(env, { name: "reference", version: "v2.0.0" }), 400, "E_REGISTRY_MANIFEST_INVALID", /semver/);
  });

  test("10,000 versions of one package: served (abbreviated too), then the 10,001st is refused", async () => {
    const name = "many";
    await published(env, { name, version: "0.0.0" });
    const first = (await fullDoc(env, name)).versions["0.0.0"];
    const manifest = JSON.stringify({ name, version: "X", description: "many versions" });
    for (let i = 1; i < 10_000; i++) {
      const version = `1.${Math.floor(i / 100)}.${i % 100}`;
      await env.db.publish({
        name, version, manifest: manifest.replace('"X"', JSON.stringify(version)), abbreviated: JSON.stringify({ name, version }), readme: null,
        integrity: first.dist.integrity, shasum: first.dist.shasum, size: 1, unpackedSize: 1, fileCount: 1, signatures: "[]",
        blobKey: "sha512/00/shared.tgz", at: Date.now(), tags: ["latest"], description: null, keywords: null, capabilities: null, maxVersions: 10_000,
      }, { user: "admin", admin: true });
    }
    env.app.clearCache();
    const response = await call(env, "GET", `/${name}`, { headers: ABBREVIATED });
    const doc = await response.json();
    assert.equal(Object.keys(doc.versions).length, 10_000);
    assert.equal(doc["dist-tags"].latest, "1.99.99");
    assert.equal((await call(env, "GET", `/${name}`, { headers: { ...ABBREVIATED, "if-none-match": response.headers.get("etag")! } })).status, 304);
    await refused(await publish(env, { name, version: "2.0.0" }), 413, "E_REGISTRY_TOO_LARGE", /10000 versions/);
  });
});

// ---------------------------------------------------------------------------------------------
// The fuzz: a fixed number of iterations from a seeded PRNG, so a failure replays exactly.

/** mulberry32: small, fast, and the same sequence on every runtime. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("registry: fuzzing the publish and package-document routes", () => {
  const SEED = 0x6b65656c;
  const PUBLISHES = 1_000;
  const READS = 3_000;

  test(`${PUBLISHES} mutated publishes and ${READS} hostile document requests: no 5xx, coded errors, store intact`, { timeout: 120_000 }, async () => {
    const env = await createEnv({ limits: { maxTarballBytes: 64 * 1024, maxUnpackedBytes: 256 * 1024, publishesPerMinute: 10_000 } });
    try {
      const random = prng(SEED);
      const int = (n: number) => Math.floor(random() * n);
      const pickOne = <T>(list: readonly T[]): T => list[int(list.length)]!;
      await published(env, { name: "anchor", version: "1.0.0", extra: { keel: { entry: "index.js", capabilities: [], kernel: "^1" } } });
      const anchorDoc = await (await call(env, "GET", "/anchor")).text();
      const anchorCorgi = await (await call(env, "GET", "/anchor", { headers: ABBREVIATED })).text();
      const codes = new Set(Object.keys(ErrorCode));
      const seen = new Map<number, number>();

      const check = async (response: Response, what: string) => {
        seen.set(response.status, (seen.get(response.status) ?? 0) + 1);
        assert.ok(response.status < 500, `${what} answered ${response.status}: ${await response.clone().text()}`);
        if (response.status >= 400 && response.headers.get("content-type")?.startsWith("application/json") && (await response.clone().text()) !== "") {
          const body = await response.json() as Record<string, unknown>;
          assert.ok(codes.has(body.code as string), `${what}: ${JSON.stringify(body)}`);
          assert.equal(typeof body.error, "string");
        } else {
          await response.arrayBuffer();
        }
      };

      const junk = () => pickOne<unknown>([null, 0, -1, 1e308, "", "x".repeat(int(3000)), [], {}, [1, [2, [3]]], { a: { b: {} } }, true, "../../etc", "\u0000", "💥", "%2e%2e"]);
      type Body = Record<string, Json>;
      const attachment = (b: Body, s: PackageSpec): Body | undefined => {
        const a = b._attachments?.[`${s.name}-${s.version}.tgz`];
        return typeof a === "object" && a !== null ? a : undefined;
      };
      const manifestOf = (b: Body, s: PackageSpec): Body | undefined => {
        const m = b.versions?.[s.version];
        return typeof m === "object" && m !== null ? m : undefined;
      };
      const mutators: ((body: Body, spec: PackageSpec) => Promise<void> | void)[] = [
        (b) => { delete b[pickOne(["versions", "_attachments", "dist-tags", "name", "_id"])]; },
        (b) => { b[pickOne(["versions", "_attachments", "dist-tags", "name", "_id", "__proto__", "constructor"])] = junk(); },
        (b, s) => { const m = manifestOf(b, s); if (m) m[pickOne(["name", "version", "keel", "dependencies", "bin", "dist", "readme", "deprecated", "_npmUser"])] = junk(); },
        (b, s) => { b.versions = { [s.version]: manifestOf(b, s), "9.9.9": manifestOf(b, s) }; },
        (b, s) => { const a = attachment(b, s); if (typeof a?.data === "string") a.data = a.data.slice(0, int(a.data.length)); },
        (b, s) => {
          const a = attachment(b, s);
          if (typeof a?.data !== "string") return;
          const chars = a.data.split("");
          for (let i = 0; i < 1 + int(8); i++) chars[int(chars.length)] = pickOne(["A", "/", "+", "=", "0", "z"]);
          a.data = chars.join("");
        },
        (b, s) => { const a = attachment(b, s); if (a) a.length = junk(); },
        (b, s) => { b._attachments = { [pickOne(["../x.tgz", `${s.name}.tgz`, "", "a/b.tgz"])]: attachment(b, s) ?? junk() }; },
        (b, s) => { b["dist-tags"] = { [pickOne(["latest", "1.x", "", "v1", "x".repeat(100), "__proto__"])]: pickOne([s.version, "0.0.1", junk()]) }; },
        (b, s) => {
          const m = manifestOf(b, s);
          if (m) m.keel = { entry: pickOne(["index.js", "../a", "", "/x", "a\\b"]), capabilities: [pickOne(["net", "read:/x", "bogus", "net:[::1", "env:A*"])], kernel: pickOne(["^1", ">=1 <2", "nope", ""]) };
        },
        (b, s) => { const m = manifestOf(b, s); if (m) m.dist = { integrity: pickOne(["sha512-AAAA", "", "sha1-x"]), shasum: "0".repeat(40) }; },
        async (b, s) => {
          const bytes = await tarballOf(s);
          for (let i = 0; i < 1 + int(4); i++) bytes[int(bytes.length)] = int(256);
          b._attachments = { [`${s.name}-${s.version}.tgz`]: { data: base64(bytes), length: bytes.length } };
          const m = manifestOf(b, s);
          if (m) delete m.dist;
        },
      ];

      for (let i = 0; i < PUBLISHES; i++) {
        const spec = { name: `fuzz-${int(20)}`, version: `1.${int(3)}.${int(50)}` };
        const body = await publishBody(spec) as Record<string, Json>;
        for (let m = 0; m < 1 + int(3); m++) await pickOne(mutators)(body, spec);
        let raw = JSON.stringify(body);
        if (random() < 0.1) raw = raw.slice(0, int(raw.length));
        if (random() < 0.05) raw = raw.replace(/"/g, () => (random() < 0.01 ? "'" : '"'));
        const target = random() < 0.9 ? `/${spec.name}` : pickOne(["/anchor", "/%2e%2e", "/fuzz-1/-rev/1-0", "/@x%2f", "/fuzz-1/-/fuzz-1-1.0.0.tgz"]);
        await check(await call(env, pickOne(["PUT", "PUT", "PUT", "POST", "DELETE"]), target, { token: env.admin, raw, headers: { "content-type": "application/json" } }), `publish #${i}`);
      }

      const pieces = ["anchor", "fuzz-1", "@acme", "%2f", "%2F", "/", "..", "%2e%2e", "-", "-rev", "1.0.0", "latest", ".tgz", "%", "%zz", "%00", "\u0435", "a".repeat(300), "?write=true", "?", "#", "%40", "@", "~", "*", "'"];
      for (let i = 0; i < READS; i++) {
        let path = "/";
        for (let p = 0; p < 1 + int(5); p++) path += pickOne(pieces) + (random() < 0.5 ? "/" : "");
        let encoded: string;
        try {
          encoded = new URL(path, BASE).href;
        } catch {
          continue;
        }
        const headers: Record<string, string> = {};
        if (random() < 0.5) headers.accept = pickOne([ABBREVIATED.accept, "application/json", "*/*", "text/html", "application/vnd.npm.install-v1+json;;;"]);
        if (random() < 0.3) headers["if-none-match"] = pickOne(['"x"', "*", "W/", "", '"' + "a".repeat(500) + '"']);
        if (random() < 0.2) headers.authorization = pickOne(["Bearer ", "Bearer x", `Bearer ${env.admin}`, "Basic !!", "Bearer " + "k".repeat(600)]);
        if (random() < 0.2) headers["accept-encoding"] = pickOne(["gzip", "br", "identity", "*"]);
        const method = pickOne(["GET", "GET", "GET", "HEAD"]);
        const response = await env.app.fetch(new Request(encoded, { method, headers }));
        if (method === "HEAD") assert.equal(await response.text(), "", "HEAD has no body");
        await check(response, `${method} ${path}`);
      }

      assert.equal(await (await call(env, "GET", "/anchor")).text(), anchorDoc, "the anchor's full document is byte-identical");
      assert.equal(await (await call(env, "GET", "/anchor", { headers: ABBREVIATED })).text(), anchorCorgi);
      assert.deepEqual(await env.db.check(), []);
      await published(env, { name: "after-fuzz", version: "1.0.0" });
      assert.ok((seen.get(400) ?? 0) > PUBLISHES / 4, `most publishes were refused as bad requests: ${JSON.stringify([...seen])}`);
    } finally {
      await env.close();
    }
  });
});

describe("openRegistry", () => {
  test("creates the folder, the database and a signing key on first start, and keeps them", async () => {
    const dir = `${root}/reg`;
    const first = await openRegistry({ runtime, dir, baseUrl: "http://127.0.0.1:4873" });
    const keyid = first.signingKeys[0]!.keyid;
    const token = (await issueToken(first.db, { user: "admin", scope: "admin" })).token;
    const response = await first.app.fetch(new Request("http://127.0.0.1:4873/persisted", {
      method: "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(await publishBody({ name: "persisted", version: "1.0.0" })),
    }));
    assert.equal(response.status, 201);
    await first.close();
    for (const file of ["registry.db", "signing-key.json", "tarballs"]) assert.ok(await runtime.fs!.exists(`${dir}/${file}`), file);
    const { statSync, readdirSync } = await import("node:fs");
    assert.equal(statSync(`${dir}/signing-key.json`).mode & 0o777, 0o600, "the signing key is readable by its owner only");
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith(".tmp")), [], "no temporary key file is left behind");
    const second = await openRegistry({ runtime, dir, baseUrl: "https://registry.example.com/" });
    try {
      assert.equal(second.signingKeys[0]!.keyid, keyid, "the same key signs after a restart");
      const doc = await (await second.app.fetch(new Request("https://registry.example.com/persisted"))).json();
      assert.equal(doc.versions["1.0.0"].dist.tarball, "https://registry.example.com/persisted/-/persisted-1.0.0.tgz", "tarball URLs come from the configured public URL");
      const tgz = await second.app.fetch(new Request("https://registry.example.com/persisted/-/persisted-1.0.0.tgz"));
      assert.equal((await integrityOf(new Uint8Array(await tgz.arrayBuffer()))).integrity, doc.versions["1.0.0"].dist.integrity);
    } finally {
      await second.close();
    }
    await runtime.fs!.writeTextFile(`${dir}/signing-key.json`, "{ broken");
    await assert.rejects(openRegistry({ runtime, dir, baseUrl: "http://x" }), (e: unknown) => (e as { code?: string }).code === "E_STORE_CORRUPT");
  });
});
