/** keel.lock: parsing every kind of damage, the stable text form, atomic writes, capability diffs. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { capabilityDiff, formatLockfile, type LockedPlugin, type Lockfile, parseLockfile, readLockfile, writeLockfile } from "./lockfile.ts";

const SHA = `sha512-${"A".repeat(86)}==`;
const ENTRY: LockedPlugin = {
  version: "1.0.0",
  integrity: SHA,
  keyid: "SHA256:abc",
  resolved: "http://127.0.0.1:4873/p/-/p-1.0.0.tgz",
  entry: "index.js",
  capabilities: ["net:api.example.com:443"],
  granted: ["net:api.example.com:443"],
  kernel: "^1",
  files: SHA,
};
const LOCK: Lockfile = { lockfileVersion: 1, registry: "http://127.0.0.1:4873", plugins: { zeta: ENTRY, "@acme/alpha": { ...ENTRY, capabilities: [], granted: [] } } };

let runtime: Runtime;
let dir: string;

before(async () => {
  runtime = await detectRuntime();
  dir = await runtime.fs!.makeTempDir("keel-lockfile-");
});

after(async () => {
  await runtime.fs!.remove(dir);
});

describe("keel.lock", () => {
  test("round-trips with plugins sorted, a fixed key order and a final newline", () => {
    const text = formatLockfile(LOCK);
    assert.ok(text.endsWith("}\n"));
    assert.deepEqual(Object.keys(JSON.parse(text).plugins), ["@acme/alpha", "zeta"]);
    assert.deepEqual(parseLockfile(text), LOCK);
    assert.equal(formatLockfile(parseLockfile(text)), text);
  });

  test("damage of every kind is E_CONFIG_INVALID naming the entry and field", () => {
    const bad = (value: unknown, pattern: RegExp) =>
      assert.throws(() => parseLockfile(typeof value === "string" ? value : JSON.stringify(value), "/p/keel.lock"), (e) =>
        KeelError.is(e, "E_CONFIG_INVALID") && pattern.test(e.message) && /restore it from version control, or delete it/.test(e.message), String(pattern));
    const withEntry = (patch: Record<string, unknown>) => ({ ...LOCK, plugins: { p: { ...ENTRY, ...patch } } });
    bad("{", /"\/p\/keel\.lock" is not valid JSON/);
    bad([], /is not a JSON object/);
    bad({ ...LOCK, lockfileVersion: 2 }, /lockfileVersion 2, written by a newer Keel/);
    bad({ ...LOCK, lockfileVersion: undefined }, /has no "lockfileVersion": 1/);
    bad({ ...LOCK, registry: "ftp://x" }, /no "registry" URL/);
    bad({ ...LOCK, plugins: [] }, /no "plugins" object/);
    bad({ ...LOCK, plugins: { "../x": ENTRY } }, /bad entry for "\.\.\/x": not a package name/);
    bad(withEntry({ version: 1 }), /"version" is missing or has the wrong type/);
    bad(withEntry({ version: "v1" }), /"version" is not a semver version/);
    bad(withEntry({ integrity: "sha1-x" }), /"integrity" is not a sha512 integrity/);
    bad(withEntry({ files: undefined }), /"files" is missing/);
    bad(withEntry({ resolved: "file:///x" }), /"resolved" is not an http/);
    bad(withEntry({ entry: "../../etc/passwd" }), /bad entry for "p": .*would leave the package/);
    bad(withEntry({ granted: ["network:x"] }), /Unknown capability kind "network"/);
    bad(withEntry({ capabilities: "net" }), /"capabilities" is missing or has the wrong type/);
    bad(withEntry({ kernel: "one" }), /"keel\.kernel" "one" is not a semver range/);
  });

  test("writes atomically and reads back; no temp file is left; none there reads as undefined", async () => {
    assert.equal(await readLockfile(runtime, dir), undefined);
    await writeLockfile(runtime, dir, LOCK);
    await writeLockfile(runtime, dir, { ...LOCK, plugins: { zeta: ENTRY } });
    assert.deepEqual(await readLockfile(runtime, dir), { ...LOCK, plugins: { zeta: ENTRY } });
    assert.deepEqual((await runtime.fs!.readDir(dir)).map((e) => e.name), ["keel.lock"]);
  });
});

describe("capabilityDiff", () => {
  test("added: asked and not covered; removed: no longer asked; kept: covered", () => {
    assert.deepEqual(capabilityDiff([], ["env:A"]), { added: ["env:A"], removed: [], kept: [] });
    assert.deepEqual(capabilityDiff(["net:example.com", "env:A"], ["net:example.com:443", "env:B"]), {
      added: ["env:B"],
      removed: ["net:example.com", "env:A"],
      kept: ["net:example.com:443"],
    });
    assert.deepEqual(capabilityDiff(["read:data"], ["read:/project/data/x"], { base: "/project" }).kept, ["read:/project/data/x"]);
    assert.deepEqual(capabilityDiff(["env:A"], ["env:A"]), { added: [], removed: [], kept: ["env:A"] });
  });
});
