/** Reading a package's file contents after `readPackageTarball` accepted it, and the files digest. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../core/mod.ts";
import { filesDigest, tarballFiles } from "./_unpack.ts";
import { packTarball, readPackageTarball } from "./tarball.ts";

const utf8 = new TextEncoder();

describe("tarballFiles", () => {
  test("returns every file's bytes, long (pax) names and nested folders included", async () => {
    const long = `lib/${"deep/".repeat(30)}file-with-a-long-name.js`;
    const files = { "package.json": '{"name":"p","version":"1.0.0"}', "index.js": "export default 1;\n", [long]: "x".repeat(5000), "bin.dat": new Uint8Array([0, 1, 255]) };
    const bytes = await packTarball(files);
    const read = await tarballFiles(bytes, (await readPackageTarball(bytes)).files);
    assert.deepEqual([...read.keys()], Object.keys(files));
    assert.equal(new TextDecoder().decode(read.get(long)), "x".repeat(5000));
    assert.deepEqual(read.get("bin.dat"), new Uint8Array([0, 1, 255]));
  });

  test("refuses an archive that reads differently from the listing it was checked against", async () => {
    const bytes = await packTarball({ "package.json": "{}", "a.js": "1" });
    await assert.rejects(tarballFiles(bytes, [{ path: "package.json", size: 2 }]), (e) => KeelError.is(e, "E_REGISTRY_TARBALL_INVALID") && /reads differently/.test(e.message));
    await assert.rejects(tarballFiles(bytes, [{ path: "package.json", size: 2 }, { path: "a.js", size: 9 }]), (e) => KeelError.is(e, "E_REGISTRY_TARBALL_INVALID"));
  });
});

describe("filesDigest", () => {
  test("depends on paths and contents, not on order", async () => {
    const a = new Map([["a.js", utf8.encode("1")], ["b/c.js", utf8.encode("2")]]);
    const b = new Map([["b/c.js", utf8.encode("2")], ["a.js", utf8.encode("1")]]);
    assert.equal(await filesDigest(a), await filesDigest(b));
    assert.match(await filesDigest(a), /^sha512-[A-Za-z0-9+/]{86}==$/);
    assert.notEqual(await filesDigest(a), await filesDigest(new Map([["a.js", utf8.encode("1")], ["b/c.js", utf8.encode("3")]])));
    assert.notEqual(await filesDigest(a), await filesDigest(new Map([["a.js", utf8.encode("1")], ["b/d.js", utf8.encode("2")]])));
    assert.notEqual(await filesDigest(a), await filesDigest(new Map([...a, ["extra", new Uint8Array()]])));
  });
});
