/**
 * `addPlugin` / `removePlugin` / `lockedPluginEntries` against a real registry (served on
 * 127.0.0.1, fixtures published through its HTTP publish route), and the kernel booting what
 * was installed, isolated, with exactly the granted capabilities.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { createKernel, joinPath, KeelError, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { rejectsWith } from "../tests/helpers.ts";
import { startTestRegistry, type TestRegistry } from "../tests/registry-fixtures.ts";
import { createRegistryClient, type RegistryClient, resolveVersion } from "./client.ts";
import { addPlugin, type AddPluginOptions, type ApprovalPrompt, lockedPluginEntries, removePlugin } from "./install.ts";
import { LOCKFILE_NAME, parseLockfile, readLockfile } from "./lockfile.ts";
import { signVersion, generateSigningKey } from "./signing.ts";

const SLOW = { timeout: 60_000 };
const HELLO = "@acme/hello";
const A = "env:KEEL_FIXTURE_A";
const NET = "net:api.example.com:443";

let runtime: Runtime;
let tmp: string;
let reg: TestRegistry;
let client: RegistryClient;
let projects = 0;

before(async () => {
  runtime = await detectRuntime();
  tmp = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-install-"));
  reg = await startTestRegistry(runtime, `${tmp}/registry`);
  client = createRegistryClient({ url: reg.url });
  await reg.publish({ name: HELLO, version: "1.0.0", capabilities: [A] });
  await reg.publish({ name: HELLO, version: "1.2.0", capabilities: [A] });
  await reg.yank(HELLO, "1.2.0");
  await reg.publish({ name: HELLO, version: "1.1.0", capabilities: [A] });
  await reg.publish({ name: HELLO, version: "2.0.0", capabilities: [A, NET], tags: ["next"] });
  await reg.publish({ name: "plain", version: "1.0.0", capabilities: [NET, "env:KEEL_FIXTURE_B"] });
  await reg.publish({ name: "nocaps", version: "1.0.0" });
  await reg.publish({ name: "not-a-plugin", version: "1.0.0", keel: false });
  await reg.publish({ name: "future", version: "1.0.0", kernel: "^2" });
  await reg.publish({ name: "@acme/tamper", version: "1.0.0", capabilities: [A] });
  process.env.KEEL_FIXTURE_A = "a-value";
  process.env.KEEL_FIXTURE_B = "b-value";
});

after(async () => {
  delete process.env.KEEL_FIXTURE_A;
  delete process.env.KEEL_FIXTURE_B;
  await reg?.close();
  await runtime.fs!.remove(tmp);
});

/** A fresh project folder. */
async function project(): Promise<string> {
  const dir = `${tmp}/project-${++projects}`;
  await runtime.fs!.mkdir(dir);
  return dir;
}

function add(dir: string, spec: string, more: Partial<AddPluginOptions> = {}) {
  return addPlugin({ runtime, client, spec, dir, ...more });
}

async function exists(path: string): Promise<boolean> {
  return await runtime.fs!.exists(path);
}

/** Every path under `dir`, relative, sorted: what a test compares to prove nothing was written. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const e of await runtime.fs!.readDir(rel === "" ? dir : `${dir}/${rel}`)) {
      const path = rel === "" ? e.name : `${rel}/${e.name}`;
      out.push(path);
      if (e.isDirectory) await walk(path);
    }
  };
  await walk("");
  return out.sort();
}

describe("addPlugin", () => {
  test("--yes resolves latest, verifies, unpacks under .keel/plugins and records keel.lock", SLOW, async () => {
    const dir = await project();
    const result = await add(dir, HELLO, { yes: true });
    assert.equal(result.status, "added");
    assert.equal(result.version, "1.1.0");
    assert.equal(result.approvedBy, "yes");
    assert.deepEqual(result.granted, [A]);
    const folder = `${dir}/.keel/plugins/@acme/hello/1.1.0`;
    assert.equal(result.path, folder);
    assert.deepEqual(await tree(folder), ["README.md", "index.js", "lib", "lib/util.js", "package.json"]);
    assert.match(await runtime.fs!.readTextFile(`${folder}/lib/util.js`), /"1\.1\.0"/);

    const text = await runtime.fs!.readTextFile(`${dir}/${LOCKFILE_NAME}`);
    assert.ok(text.endsWith("}\n"));
    const lock = parseLockfile(text);
    const doc = await client.packument(HELLO);
    const dist = doc.versions["1.1.0"]!.dist;
    assert.deepEqual(lock, {
      lockfileVersion: 1,
      registry: reg.url,
      plugins: {
        [HELLO]: {
          version: "1.1.0",
          integrity: dist.integrity,
          keyid: reg.registry.signingKeys[0]!.keyid,
          resolved: dist.tarball,
          entry: "index.js",
          capabilities: [A],
          granted: [A],
          kernel: "^1",
          files: lock.plugins[HELLO]!.files,
        },
      },
    });
    assert.match(lock.plugins[HELLO]!.files, /^sha512-/);
    // Keys in a fixed order, so the file diffs well.
    assert.deepEqual(Object.keys(JSON.parse(text).plugins[HELLO]), ["version", "integrity", "keyid", "resolved", "entry", "capabilities", "granted", "kernel", "files"]);

    const again = await add(dir, HELLO);
    assert.equal(again.status, "unchanged");
    assert.equal(await runtime.fs!.readTextFile(`${dir}/${LOCKFILE_NAME}`), text);
  });

  test("without approval it refuses with E_CAPABILITY_DENIED and writes nothing", SLOW, async () => {
    const dir = await project();
    const e = await rejectsWith(add(dir, HELLO), "E_CAPABILITY_DENIED", /asks for "env:KEEL_FIXTURE_A"/, /nothing was installed/, /--allow env:KEEL_FIXTURE_A/, /@acme\/hello@1\.1\.0/);
    assert.deepEqual(e.details?.missing, [A]);
    assert.deepEqual(await tree(dir), []);

    // With another plugin installed, the lockfile keeps its exact bytes.
    await add(dir, "nocaps");
    const before = await runtime.fs!.readTextFile(`${dir}/${LOCKFILE_NAME}`);
    const files = await tree(dir);
    await rejectsWith(add(dir, HELLO), "E_CAPABILITY_DENIED");
    assert.equal(await runtime.fs!.readTextFile(`${dir}/${LOCKFILE_NAME}`), before);
    assert.deepEqual(await tree(dir), files);
  });

  test("a plugin asking for nothing installs without approval", SLOW, async () => {
    const dir = await project();
    const r = await add(dir, "nocaps");
    assert.equal(r.approvedBy, "none");
    assert.deepEqual(r.granted, []);
    assert.ok(await exists(`${dir}/.keel/plugins/nocaps/1.0.0/index.js`));
  });

  test("an interactive approve sees the capabilities; declining writes nothing", SLOW, async () => {
    const dir = await project();
    const seen: ApprovalPrompt[] = [];
    await rejectsWith(add(dir, "plain", { approve: (p) => (seen.push(p), Promise.resolve(false)) }), "E_CAPABILITY_DENIED", /you declined/);
    assert.deepEqual(await tree(dir), []);
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0]!.needed, [NET, "env:KEEL_FIXTURE_B"]);
    assert.match(seen[0]!.text, /plain@1\.0\.0 asks for these capabilities:\n {2}\+ net:api\.example\.com:443\n {2}\+ env:KEEL_FIXTURE_B/);
    const r = await add(dir, "plain", { approve: () => Promise.resolve(true) });
    assert.equal(r.approvedBy, "prompt");
    assert.deepEqual((await readLockfile(runtime, dir))!.plugins.plain!.granted, [NET, "env:KEEL_FIXTURE_B"]);
  });

  test("--allow covering exactly what is asked installs; covering part refuses naming the rest", SLOW, async () => {
    const partial = await project();
    const e = await rejectsWith(add(partial, "plain", { allow: [NET] }), "E_CAPABILITY_DENIED", /"env:KEEL_FIXTURE_B", which --allow does not cover/);
    assert.deepEqual(e.details?.missing, ["env:KEEL_FIXTURE_B"]);
    assert.deepEqual(await tree(partial), []);

    const exact = await project();
    const r = await add(exact, "plain", { allow: [NET, "env:KEEL_FIXTURE_B"] });
    assert.equal(r.approvedBy, "allow");
    assert.deepEqual(r.granted, [NET, "env:KEEL_FIXTURE_B"]);

    // A broader grant covers a narrower request; what is recorded is what was asked for.
    const broad = await project();
    const b = await add(broad, "plain", { allow: ["net:api.example.com", "env:KEEL_FIXTURE_*"] });
    assert.deepEqual(b.granted, [NET, "env:KEEL_FIXTURE_B"]);

    await rejectsWith(add(await project(), "plain", { allow: ["network:x"] }), "E_CAPABILITY_UNKNOWN");
  });

  test("a tampered tarball is refused (E_REGISTRY_INTEGRITY) and nothing is unpacked", SLOW, async () => {
    const dir = await project();
    const filter = async (request: Request, response: Response) => {
      if (!new URL(request.url).pathname.endsWith("/tamper-1.0.0.tgz")) return undefined;
      const bytes = new Uint8Array(await response.arrayBuffer());
      bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0xff;
      return new Response(bytes, { headers: { "content-type": "application/octet-stream" } });
    };
    reg.filters.push(filter);
    try {
      await rejectsWith(add(dir, "@acme/tamper", { yes: true }), "E_REGISTRY_INTEGRITY", /does not match its integrity/, /nothing was installed/);
    } finally {
      reg.filters.splice(reg.filters.indexOf(filter), 1);
    }
    assert.deepEqual(await tree(dir), []);
    // Untampered, the same plugin installs.
    assert.equal((await add(dir, "@acme/tamper", { yes: true })).status, "added");
  });

  test("a signature that does not verify, or none, is refused (E_REGISTRY_SIGNATURE)", SLOW, async () => {
    const other = (await generateSigningKey()).key;
    const rewrite = (change: (dist: Record<string, unknown>, integrity: string) => Promise<void>) => async (request: Request, response: Response) => {
      const path = decodeURIComponent(new URL(request.url).pathname);
      if (path !== "/@acme/tamper") return undefined;
      const doc = await response.json() as { versions: Record<string, { dist: Record<string, unknown> }> };
      for (const v of Object.values(doc.versions)) await change(v.dist, v.dist.integrity as string);
      return Response.json(doc);
    };
    const cases = [
      // Signed by another key under the registry's keyid.
      rewrite(async (dist, integrity) => {
        const sig = await signVersion(other, "@acme/tamper", "1.0.0", integrity);
        dist.signatures = [{ keyid: reg.registry.signingKeys[0]!.keyid, sig: sig.sig }];
      }),
      // The registry's signature over another version.
      rewrite(async (dist, integrity) => {
        dist.signatures = [await signVersion(reg.registry.signingKeys[0]!, "@acme/tamper", "9.9.9", integrity)];
      }),
      rewrite((dist) => {
        delete dist.signatures;
        return Promise.resolve();
      }),
      rewrite(async (dist, integrity) => {
        dist.signatures = [await signVersion(other, "@acme/tamper", "1.0.0", integrity)];
      }),
    ];
    const patterns = [/does not verify/, /does not verify/, /has no registry signature/, /which the registry's keys/];
    for (const [i, filter] of cases.entries()) {
      const dir = await project();
      reg.filters.push(filter);
      try {
        await rejectsWith(add(dir, "@acme/tamper", { yes: true }), "E_REGISTRY_SIGNATURE", patterns[i]!);
      } finally {
        reg.filters.splice(reg.filters.indexOf(filter), 1);
      }
      assert.deepEqual(await tree(dir), []);
    }
  });

  test("ranges and dist-tags resolve against the registry; a yanked version only when pinned", SLOW, async () => {
    const doc = await client.packument(HELLO);
    assert.equal(resolveVersion(doc).version, "1.1.0");
    assert.equal(resolveVersion(doc, "^1").version, "1.1.0");
    // Only the yanked 1.2.0 satisfies these: a range never picks it.
    assert.throws(() => resolveVersion(doc, ">=1.1.1 <2"), (e) => KeelError.is(e, "E_REGISTRY_NOT_FOUND"));
    assert.equal(resolveVersion(doc, "1.2.0").yanked, true);
    assert.equal(resolveVersion(doc, "~1.0.0").version, "1.0.0");
    assert.equal(resolveVersion(doc, "next").version, "2.0.0");
    assert.equal(resolveVersion(doc, "*").version, "1.1.0"); // latest wins when it satisfies
    assert.equal(resolveVersion(doc, ">=2").version, "2.0.0");
    assert.throws(() => resolveVersion(doc, "^3"), (e) => KeelError.is(e, "E_REGISTRY_NOT_FOUND") && /available: 1\.0\.0, 1\.1\.0, 2\.0\.0/.test(e.message));
    assert.throws(() => resolveVersion(doc, "beta"), (e) => KeelError.is(e, "E_REGISTRY_NOT_FOUND") && /no dist-tag "beta"/.test(e.message));

    const dir = await project();
    assert.equal((await add(dir, `${HELLO}@~1.0`, { yes: true })).version, "1.0.0");
    assert.equal((await add(await project(), `${HELLO}@next`, { yes: true })).version, "2.0.0");
    const pinned = await add(await project(), `${HELLO}@1.2.0`, { yes: true });
    assert.equal(pinned.version, "1.2.0");
    assert.equal(pinned.yanked, true);
    await rejectsWith(add(await project(), `${HELLO}@^1.2.0`, { yes: true }), "E_REGISTRY_NOT_FOUND", /No version of @acme\/hello satisfies "\^1\.2\.0"/);
  });

  test("an upgrade asking for more stops, showing the difference, until approved again", SLOW, async () => {
    const dir = await project();
    await add(dir, `${HELLO}@1.0.0`, { yes: true });
    // Same capabilities: no approval needed; the old version's files go.
    const same = await add(dir, `${HELLO}@1.1.0`);
    assert.equal(same.status, "upgraded");
    assert.equal(same.previousVersion, "1.0.0");
    assert.equal(same.approvedBy, "none");
    assert.equal(await exists(`${dir}/.keel/plugins/@acme/hello/1.0.0`), false);
    const lockBefore = await runtime.fs!.readTextFile(`${dir}/${LOCKFILE_NAME}`);
    const filesBefore = await tree(dir);

    const e = await rejectsWith(add(dir, `${HELLO}@next`), "E_CAPABILITY_DENIED", /@acme\/hello@2\.0\.0 asks for "net:api\.example\.com:443"/, /keel\.lock still has 1\.1\.0/, /\+ net:api\.example\.com:443 {2}\(new\)/, /--allow net:api\.example\.com:443/);
    assert.deepEqual(e.details?.added, [NET]);
    assert.equal(e.details?.previousVersion, "1.1.0");
    assert.doesNotMatch(e.message, /\+ env:KEEL_FIXTURE_A/); // granted before: not new
    assert.equal(await runtime.fs!.readTextFile(`${dir}/${LOCKFILE_NAME}`), lockBefore);
    assert.deepEqual(await tree(dir), filesBefore);
    // --allow for only what is new is enough: the rest was granted before.
    await rejectsWith(add(dir, `${HELLO}@next`, { allow: ["env:OTHER"] }), "E_CAPABILITY_DENIED", /which --allow does not cover/);

    const up = await add(dir, `${HELLO}@next`, { yes: true });
    assert.equal(up.status, "upgraded");
    assert.deepEqual(up.diff, { added: [NET], removed: [], kept: [A] });
    const lock = (await readLockfile(runtime, dir))!;
    assert.equal(lock.plugins[HELLO]!.version, "2.0.0");
    assert.deepEqual(lock.plugins[HELLO]!.granted, [A, NET]);
    assert.equal(await exists(`${dir}/.keel/plugins/@acme/hello/1.1.0`), false);

    // Back down: asks for less, needs nothing.
    const down = await add(dir, `${HELLO}@1.1.0`);
    assert.equal(down.status, "downgraded");
    assert.deepEqual(down.diff.removed, [NET]);
    assert.deepEqual((await readLockfile(runtime, dir))!.plugins[HELLO]!.granted, [A]);
  });

  test("packages that are not plugins, or need another kernel, are refused before anything is written", SLOW, async () => {
    const dir = await project();
    await rejectsWith(add(dir, "not-a-plugin", { yes: true }), "E_REGISTRY_MANIFEST_INVALID", /not a Keel plugin/);
    await rejectsWith(add(dir, "future", { yes: true }), "E_MANIFEST_KERNEL_RANGE", /needs kernel "\^2"/);
    await rejectsWith(add(dir, "@acme/missing", { yes: true }), "E_REGISTRY_NOT_FOUND", /"@acme\/missing" is not in the registry/);
    await rejectsWith(add(dir, "Bad Name!", { yes: true }), "E_REGISTRY_REQUEST_INVALID", /is not a package name/);
    await rejectsWith(add(dir, `${HELLO}@!!`, { yes: true }), "E_REGISTRY_REQUEST_INVALID", /neither a version, a semver range nor a dist-tag/);
    assert.deepEqual(await tree(dir), []);
  });

  test("an unreachable registry, a corrupt lock, and a second registry are coded errors", SLOW, async () => {
    const closed = await runtime.serve!(() => new Response(null), { hostname: "127.0.0.1", port: 0 });
    await closed.close();
    const dir = await project();
    await rejectsWith(addPlugin({ runtime, client: createRegistryClient({ url: closed.url }), spec: HELLO, dir, yes: true }), "E_REGISTRY_UNREACHABLE", /Cannot reach the registry/);

    await runtime.fs!.writeTextFile(`${dir}/${LOCKFILE_NAME}`, "{ not json");
    await rejectsWith(add(dir, HELLO, { yes: true }), "E_CONFIG_INVALID", /keel\.lock" is not valid JSON/);
    await rejectsWith(lockedPluginEntries(runtime, dir), "E_CONFIG_INVALID");
    await runtime.fs!.remove(`${dir}/${LOCKFILE_NAME}`);

    await add(dir, "nocaps");
    const elsewhere = createRegistryClient({ url: closed.url });
    await rejectsWith(addPlugin({ runtime, client: elsewhere, spec: HELLO, dir, yes: true }), "E_REGISTRY_REQUEST_INVALID", /keel\.lock records plugins from/);
  });
});

describe("concurrent changes to one project", () => {
  test("adds and removes running at the same time keep every entry of keel.lock", SLOW, async () => {
    const dir = await project();
    await Promise.all([add(dir, "nocaps"), add(dir, HELLO, { yes: true }), add(dir, "plain", { yes: true })]);
    assert.deepEqual(Object.keys((await readLockfile(runtime, dir))!.plugins).sort(), ["@acme/hello", "nocaps", "plain"]);
    await Promise.all([removePlugin({ runtime, dir, name: "plain" }), removePlugin({ runtime, dir, name: "nocaps" })]);
    assert.deepEqual(Object.keys((await readLockfile(runtime, dir))!.plugins), ["@acme/hello"]);
  });
});

describe("removePlugin", () => {
  test("undoes keel add: the entry, the folder, and keel.lock once empty", SLOW, async () => {
    const dir = await project();
    await add(dir, "nocaps");
    const afterOne = await tree(dir);
    const lockOne = await runtime.fs!.readTextFile(`${dir}/${LOCKFILE_NAME}`);
    await add(dir, HELLO, { yes: true });
    const removed = await removePlugin({ runtime, dir, name: HELLO });
    assert.deepEqual(removed, { name: HELLO, version: "1.1.0", path: `${dir}/.keel/plugins/@acme/hello/1.1.0`, lockfileRemoved: false });
    assert.deepEqual(await tree(dir), afterOne);
    assert.equal(await runtime.fs!.readTextFile(`${dir}/${LOCKFILE_NAME}`), lockOne);

    await rejectsWith(removePlugin({ runtime, dir, name: HELLO }), "E_REGISTRY_NOT_FOUND", /"@acme\/hello" is not installed/, /installed: "nocaps"/);
    assert.equal((await removePlugin({ runtime, dir, name: "nocaps" })).lockfileRemoved, true);
    assert.deepEqual(await tree(dir), [".keel"]);
    await rejectsWith(removePlugin({ runtime, dir, name: "nocaps" }), "E_REGISTRY_NOT_FOUND", /no plugin is installed here/);
  });
});

describe("lockedPluginEntries and the kernel", () => {
  test("boots the locked plugin isolated, granted exactly what keel.lock records", SLOW, async () => {
    const dir = await project();
    await add(dir, HELLO, { yes: true });
    const locked = await lockedPluginEntries(runtime, dir);
    assert.deepEqual(locked.grants, { [HELLO]: [A] });
    assert.equal(locked.entries.length, 1);
    const entry = locked.entries[0]!;
    assert.equal(entry.isolate, true);
    assert.equal(entry.module, joinPath(dir, ".keel/plugins/@acme/hello/1.1.0/index.js"));
    assert.deepEqual(entry.manifest, { name: HELLO, version: "1.1.0", kernel: "^1", capabilities: [A] });

    const kernel = await createKernel({ runtime, plugins: locked.entries, grants: locked.grants, baseDir: dir });
    try {
      const info = kernel.plugins[0]!;
      assert.equal(info.isolated, true);
      assert.equal(info.status, "loaded");
      assert.deepEqual(info.requested, [A]);
      assert.deepEqual(info.missing, []);
      const e = await kernel.callHook("beforeRun", { id: "r1", protocol: "script/v1", target: "x", params: {} }).then(
        () => assert.fail("the fixture's beforeRun throws its report"),
        (err: unknown) => err as Error,
      );
      const report = JSON.parse(/REPORT(.*?)END/.exec(e.message)![1]!) as { grant: string[]; a: string; b: string };
      assert.deepEqual(report.grant, [A]);
      assert.equal(report.a, "a-value");
      // Not granted: Deno itself refuses (or the variable was never passed in).
      assert.notEqual(report.b, "b-value");
      assert.match(report.b, /^(denied:|unset$)/);
    } finally {
      await kernel.dispose();
    }
  });

  test("a plugin whose files went missing or changed is refused with E_PLUGIN_LOAD_FAILED", SLOW, async () => {
    const dir = await project();
    await add(dir, HELLO, { yes: true });
    const folder = `${dir}/.keel/plugins/@acme/hello/1.1.0`;
    await runtime.fs!.writeTextFile(`${folder}/lib/util.js`, "export const util = 'changed';\n");
    await rejectsWith(lockedPluginEntries(runtime, dir), "E_PLUGIN_LOAD_FAILED", /changed since it was installed/, /run keel add @acme\/hello@1\.1\.0/);
    // keel add puts it right.
    assert.equal((await add(dir, `${HELLO}@1.1.0`)).status, "reinstalled");
    assert.equal((await lockedPluginEntries(runtime, dir)).entries.length, 1);

    await runtime.fs!.writeTextFile(`${folder}/extra.js`, "export {};\n");
    await rejectsWith(lockedPluginEntries(runtime, dir), "E_PLUGIN_LOAD_FAILED", /changed since it was installed/);
    await runtime.fs!.remove(folder);
    await rejectsWith(lockedPluginEntries(runtime, dir), "E_PLUGIN_LOAD_FAILED", /is missing; run keel add @acme\/hello@1\.1\.0/);
  });

  test("no keel.lock: nothing to load", async () => {
    assert.deepEqual(await lockedPluginEntries(runtime, await project()), { entries: [], grants: {} });
  });
});
