/**
 * The registry client through a stand-in `fetch` (every status and malformed answer), version
 * resolution on hand-made package documents, and tarball verification with real keys.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../core/mod.ts";
import { rejectsWith } from "../tests/helpers.ts";
import { createRegistryClient, type Packument, resolveVersion, verifyTarball, type VersionDocument } from "./client.ts";
import { generateSigningKey, keysDocument, type SigningKey, signVersion } from "./signing.ts";
import { integrityOf, packTarball } from "./tarball.ts";

const URL_ = "http://registry.test";

interface Seen {
  url: string;
  headers: Headers;
}

/** A fetch that answers from `routes` (by path) and records what it was asked. */
function fakeFetch(routes: Record<string, () => Response | Promise<Response>>, seen: Seen[] = []): typeof fetch {
  return ((input: string | URL | Request, init?: RequestInit) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    seen.push({ url, headers: new Headers(init?.headers) });
    const u = new URL(url);
    const route = routes[u.origin === URL_ ? u.pathname : url];
    return Promise.resolve(route === undefined ? Response.json({ error: "Not found", code: "E_REGISTRY_NOT_FOUND" }, { status: 404 }) : route());
  }) as typeof fetch;
}

function version(name: string, v: string, extra: Partial<VersionDocument> = {}): VersionDocument {
  return { name, version: v, dist: { tarball: `${URL_}/${name}/-/${name}-${v}.tgz`, integrity: "sha512-x" }, ...extra };
}

function packument(versions: VersionDocument[], tags: Record<string, string>, extra: Partial<Packument> = {}): Packument {
  return { name: versions[0]?.name ?? "p", "dist-tags": tags, versions: Object.fromEntries(versions.map((v) => [v.version, v])), ...extra };
}

describe("createRegistryClient", () => {
  test("takes an http(s) URL and drops a trailing slash", () => {
    assert.equal(createRegistryClient({ url: "http://127.0.0.1:4873/" }).url, "http://127.0.0.1:4873");
    assert.throws(() => createRegistryClient({ url: "ftp://x" }), TypeError);
    assert.throws(() => createRegistryClient({ url: "not a url" }), TypeError);
    assert.throws(() => createRegistryClient({ url: "http://x/?q=1" }), TypeError);
    assert.throws(() => createRegistryClient({ url: URL_, maxTarballBytes: 0 }), RangeError);
  });

  test("asks for scoped names as @scope%2fname and sends the token only to the registry's origin", async () => {
    const seen: Seen[] = [];
    const doc = packument([version("@acme/p", "1.0.0")], { latest: "1.0.0" });
    const client = createRegistryClient({
      url: URL_,
      token: "secret",
      fetch: fakeFetch({
        "/@acme%2Fp": () => Response.json(doc),
        "/@acme/p/-/p-1.0.0.tgz": () => new Response(new Uint8Array([1, 2, 3])),
        "http://cdn.test/p.tgz": () => new Response(new Uint8Array([4])),
      }, seen),
    });
    assert.deepEqual((await client.packument("@acme/p")).versions["1.0.0"]!.version, "1.0.0");
    assert.equal(new URL(seen[0]!.url).pathname, "/@acme%2Fp");
    assert.equal(seen[0]!.headers.get("authorization"), "Bearer secret");
    assert.deepEqual(await client.tarball(`${URL_}/@acme/p/-/p-1.0.0.tgz`), new Uint8Array([1, 2, 3]));
    assert.equal(seen[1]!.headers.get("authorization"), "Bearer secret");
    assert.deepEqual(await client.tarball("http://cdn.test/p.tgz"), new Uint8Array([4]));
    assert.equal(seen[2]!.headers.get("authorization"), null);
  });

  test("every failure is a coded error that says what to do", async () => {
    const client = (route: () => Response | Promise<Response>) => createRegistryClient({ url: URL_, fetch: fakeFetch({ "/p": route }) });
    await rejectsWith(client(() => new Response("", { status: 404 })).packument("other"), "E_REGISTRY_NOT_FOUND", /Package "other" is not in the registry at http:\/\/registry\.test/);
    await rejectsWith(client(() => Response.json({ error: "token expired" }, { status: 401 })).packument("p"), "E_REGISTRY_UNAUTHORIZED", /KEEL_REGISTRY_TOKEN/, /the registry said: token expired/);
    await rejectsWith(client(() => new Response("", { status: 403 })).packument("p"), "E_REGISTRY_FORBIDDEN");
    await rejectsWith(client(() => new Response("", { status: 429 })).packument("p"), "E_REGISTRY_RATE_LIMITED");
    await rejectsWith(client(() => new Response("boom", { status: 503 })).packument("p"), "E_REGISTRY_UNREACHABLE", /HTTP 503/);
    await rejectsWith(client(() => new Response("<html>")).packument("p"), "E_REGISTRY_UNREACHABLE", /not JSON/);
    await rejectsWith(client(() => Response.json({ name: "q", versions: {} })).packument("p"), "E_REGISTRY_UNREACHABLE", /not the package document of "p"/);
    await rejectsWith(client(() => Response.json({ name: "p" })).packument("p"), "E_REGISTRY_UNREACHABLE", /has no "versions"/);
    await rejectsWith(client(() => Response.json({ name: "p", versions: { "1.0.0": { name: "p", version: "1.0.0" } } })).packument("p"), "E_REGISTRY_UNREACHABLE", /no dist\.tarball/);
    await rejectsWith(client(() => Response.json({ name: "p", versions: { "1.0.0": { name: "x", version: "1.0.0", dist: { tarball: "t" } } } })).packument("p"), "E_REGISTRY_UNREACHABLE", /names "x"/);
    const broken = createRegistryClient({ url: URL_, fetch: () => Promise.reject(new TypeError("connection refused")) });
    await rejectsWith(broken.packument("p"), "E_REGISTRY_UNREACHABLE", /Cannot reach the registry at http:\/\/registry\.test/, /connection refused/);
    await rejectsWith(broken.packument("../etc"), "E_REGISTRY_REQUEST_INVALID", /is not a package name/);
    await rejectsWith(broken.packument("Upper"), "E_REGISTRY_REQUEST_INVALID");
  });

  test("answers over the limits are refused, declared or streamed", async () => {
    const big = new Uint8Array(2048);
    const declared = createRegistryClient({ url: URL_, maxTarballBytes: 1024, fetch: fakeFetch({ "/t.tgz": () => new Response(big, { headers: { "content-length": "2048" } }) }) });
    await rejectsWith(declared.tarball(`${URL_}/t.tgz`), "E_REGISTRY_TOO_LARGE", /over 1024 bytes/);
    const streamed = createRegistryClient({
      url: URL_,
      maxTarballBytes: 1024,
      fetch: fakeFetch({ "/t.tgz": () => new Response(new ReadableStream({ start(c) {
        c.enqueue(big.subarray(0, 1000));
        c.enqueue(big.subarray(0, 1000));
        c.close();
      } })) }),
    });
    await rejectsWith(streamed.tarball(`${URL_}/t.tgz`), "E_REGISTRY_TOO_LARGE");
    await rejectsWith(streamed.tarball("file:///etc/passwd"), "E_REGISTRY_UNREACHABLE", /not http\(s\)/);
  });

  test("keys: the published list; none when the registry has no key endpoint", async () => {
    const key = (await generateSigningKey()).key;
    const withKeys = createRegistryClient({ url: URL_, fetch: fakeFetch({ "/-/npm/v1/keys": () => Response.json({ keys: [...keysDocument([key]).keys, { keyid: 1 }] }) }) });
    assert.deepEqual(await withKeys.keys(), [{ keyid: key.keyid, key: key.publicKey, expires: null }]);
    assert.deepEqual(await createRegistryClient({ url: URL_, fetch: fakeFetch({}) }).keys(), []);
  });
});

describe("resolveVersion", () => {
  const doc = packument(
    [version("p", "1.0.0"), version("p", "1.1.0"), version("p", "1.2.0", { deprecated: "use 1.1" }), version("p", "1.3.0-beta.1"), version("p", "2.0.0"), version("p", "2.1.0", { yanked: true })],
    { latest: "1.1.0", beta: "1.3.0-beta.1" },
    { yanked: { "1.4.0": { reason: "broken", time: "2026-01-01T00:00:00.000Z" } } },
  );

  test("the latest tag by default and when it satisfies a range; else the highest match", () => {
    assert.deepEqual(resolveVersion(doc), { version: "1.1.0", document: doc.versions["1.1.0"], via: "tag", yanked: false });
    assert.equal(resolveVersion(doc, "").version, "1.1.0");
    assert.equal(resolveVersion(doc, "^1").version, "1.1.0");
    assert.equal(resolveVersion(doc, "*").version, "1.1.0");
    assert.equal(resolveVersion(doc, ">=2").version, "2.0.0");
    assert.equal(resolveVersion(doc, "1.0.x").version, "1.0.0");
    assert.equal(resolveVersion(doc, "beta").version, "1.3.0-beta.1");
  });

  test("ranges skip yanked versions, avoid deprecated ones, and match prereleases only when asked", () => {
    assert.equal(resolveVersion(doc, "^2").version, "2.0.0"); // 2.1.0 is marked yanked
    assert.throws(() => resolveVersion(doc, "^1.4.0"), (e) => KeelError.is(e, "E_REGISTRY_NOT_FOUND")); // 1.4.0 is in the yanked map
    assert.equal(resolveVersion(doc, ">=1.1.1 <2").version, "1.2.0"); // deprecated, but the only match
    assert.equal(resolveVersion(doc, ">=1.1.1 <2").deprecated, "use 1.1");
    assert.equal(resolveVersion(doc, ">=1.1.0 <2").version, "1.1.0"); // the non-deprecated one wins
    assert.equal(resolveVersion(doc, "^1.3.0-beta.0").version, "1.3.0-beta.1");
  });

  test("an exact version is taken as pinned, yanked or not", () => {
    assert.equal(resolveVersion(doc, "1.2.0").deprecated, "use 1.1");
    const yanked = resolveVersion(doc, "1.4.0");
    assert.deepEqual(yanked, { version: "1.4.0", document: undefined, via: "exact", yanked: true });
    assert.equal(resolveVersion(doc, "2.1.0").yanked, true);
    assert.throws(() => resolveVersion(doc, "9.9.9"), (e) => KeelError.is(e, "E_REGISTRY_NOT_FOUND") && /p@9\.9\.9 is not in the registry; available: 1\.0\.0, 1\.1\.0/.test(e.message));
  });

  test("a spec that is neither version, range nor tag is a request error", () => {
    assert.throws(() => resolveVersion(doc, "!!"), (e) => KeelError.is(e, "E_REGISTRY_REQUEST_INVALID"));
    assert.throws(() => resolveVersion(doc, "nightly"), (e) => KeelError.is(e, "E_REGISTRY_NOT_FOUND") && /no dist-tag "nightly"/.test(e.message));
  });
});

describe("verifyTarball", () => {
  let key: SigningKey;
  let other: SigningKey;
  let bytes: Uint8Array;
  let integrity: string;
  let doc: VersionDocument;

  before(async () => {
    key = (await generateSigningKey()).key;
    other = (await generateSigningKey()).key;
    bytes = await packTarball({ "package.json": '{"name":"@acme/p","version":"1.0.0"}' });
    integrity = (await integrityOf(bytes)).integrity;
    doc = { name: "@acme/p", version: "1.0.0", dist: { tarball: "t", integrity, signatures: [await signVersion(key, "@acme/p", "1.0.0", integrity)] } };
  });

  const keys = (...list: SigningKey[]) => keysDocument(list).keys;

  test("accepts matching bytes signed by a published key, and names the key", async () => {
    assert.deepEqual(await verifyTarball(bytes, doc, keys(other, key)), { integrity, keyid: key.keyid });
  });

  test("bytes that do not match dist.integrity, or no sha512, are E_REGISTRY_INTEGRITY", async () => {
    const changed = bytes.slice();
    changed[10] = changed[10]! ^ 1;
    await rejectsWith(verifyTarball(changed, doc, keys(key)), "E_REGISTRY_INTEGRITY", /does not match its integrity: expected sha512-/);
    await rejectsWith(verifyTarball(bytes, { ...doc, dist: { tarball: "t", shasum: "abc" } }, keys(key)), "E_REGISTRY_INTEGRITY", /has no sha512 integrity/);
    await rejectsWith(verifyTarball(bytes, { ...doc, dist: { ...doc.dist, integrity: "sha1-abc" } }, keys(key)), "E_REGISTRY_INTEGRITY");
  });

  test("a missing, foreign, forged or expired signature is E_REGISTRY_SIGNATURE", async () => {
    await rejectsWith(verifyTarball(bytes, { ...doc, dist: { ...doc.dist, signatures: [] } }, keys(key)), "E_REGISTRY_SIGNATURE", /has no registry signature/);
    await rejectsWith(verifyTarball(bytes, doc, keys(other)), "E_REGISTRY_SIGNATURE", /which the registry's keys/);
    await rejectsWith(verifyTarball(bytes, doc, []), "E_REGISTRY_SIGNATURE", /none/);
    const forged = { keyid: key.keyid, sig: (await signVersion(other, "@acme/p", "1.0.0", integrity)).sig };
    await rejectsWith(verifyTarball(bytes, { ...doc, dist: { ...doc.dist, signatures: [forged] } }, keys(key)), "E_REGISTRY_SIGNATURE", /does not verify/);
    const otherVersion = await signVersion(key, "@acme/p", "1.0.1", integrity);
    await rejectsWith(verifyTarball(bytes, { ...doc, dist: { ...doc.dist, signatures: [otherVersion] } }, keys(key)), "E_REGISTRY_SIGNATURE", /does not verify/);
    const expired = keys(key).map((k) => ({ ...k, expires: "2020-01-01T00:00:00.000Z" }));
    await rejectsWith(verifyTarball(bytes, doc, expired, { publishedAt: "2021-01-01T00:00:00.000Z" }), "E_REGISTRY_SIGNATURE");
    // Published before the key expired: still valid.
    assert.equal((await verifyTarball(bytes, doc, expired, { publishedAt: "2019-01-01T00:00:00.000Z" })).keyid, key.keyid);
  });
});
