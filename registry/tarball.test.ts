import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import process from "node:process";
import { promisify } from "node:util";
import { KeelError } from "../core/errors.ts";
import { rejectsWith } from "../tests/helpers.ts";
import {
  integrityOf,
  packTarball,
  readPackageTarball,
  type TarballLimits,
  type TarballProblem,
} from "./tarball.ts";

const run = promisify(execFile);
const utf8 = new TextEncoder();
const MiB = 1024 * 1024;
const PACKAGE_JSON = JSON.stringify({
  name: "@keel/demo",
  version: "1.0.0",
  keel: { entry: "index.js" },
});
let tmp = "";

before(async () => {
  tmp = await mkdtemp(`${tmpdir()}/keel-tarball-`);
});

after(async () => {
  if (tmp !== "") await rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Building raw archives, good and bad, byte by byte.

interface RawEntry {
  readonly name: string;
  /** The tar type flag; default "0" (a regular file). */
  readonly type?: string;
  readonly data?: string | Uint8Array;
  /** The size written in the header; default the data's length. */
  readonly size?: number;
  readonly linkname?: string;
  readonly prefix?: string;
  readonly format?: "ustar" | "gnu" | "v7";
  readonly badChecksum?: boolean;
}

function bytesOf(data: string | Uint8Array | undefined): Uint8Array {
  return typeof data === "string" ? utf8.encode(data) : data ?? new Uint8Array(0);
}

function rawHeader(entry: RawEntry): Uint8Array {
  const header = new Uint8Array(512);
  const put = (value: string, offset: number) => header.set(utf8.encode(value), offset);
  put(entry.name, 0);
  put("0000644\0", 100);
  put("0000000\0", 108);
  put("0000000\0", 116);
  put((entry.size ?? bytesOf(entry.data).length).toString(8).padStart(11, "0") + "\0", 124);
  put("14340055604\0", 136);
  put(entry.type ?? "0", 156);
  put(entry.linkname ?? "", 157);
  const format = entry.format ?? "ustar";
  if (format === "ustar") put("ustar\u000000", 257);
  if (format === "gnu") put("ustar  \0", 257);
  if (entry.prefix !== undefined) put(entry.prefix, 345);
  put("        ", 148);
  let sum = 0;
  for (const b of header) sum += b;
  put(sum.toString(8).padStart(6, "0") + "\0 ", 148);
  if (entry.badChecksum === true) header[153]! ^= 1;
  return header;
}

/** A tar archive of `entries`, ending with the two zero blocks unless `end` is false. */
function rawTar(entries: readonly RawEntry[], { end = true } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    const data = bytesOf(entry.data);
    parts.push(rawHeader(entry), data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  if (end) parts.push(new Uint8Array(1024));
  return concat(parts);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function paxData(records: Record<string, string>): string {
  let out = "";
  for (const [key, value] of Object.entries(records)) {
    const body = ` ${key}=${value}\n`;
    let length = body.length + 1;
    while (String(length).length + utf8.encode(body).length !== length) {
      length = String(length).length + utf8.encode(body).length;
    }
    out += `${length}${body}`;
  }
  return out;
}

/** Gzips chunks one by one, never holding more than one input chunk. */
async function gzipChunks(chunks: Iterable<Uint8Array>): Promise<Uint8Array> {
  const stream = new CompressionStream("gzip");
  const output = new Response(stream.readable).arrayBuffer();
  const writer = stream.writable.getWriter();
  for (const chunk of chunks) await writer.write(chunk as Uint8Array<ArrayBuffer>);
  await writer.close();
  return new Uint8Array(await output);
}

function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  return gzipChunks([bytes]);
}

function* zeros(total: number, chunk = MiB): Generator<Uint8Array> {
  const block = new Uint8Array(chunk);
  for (let left = total; left > 0; left -= chunk) {
    yield left >= chunk ? block : block.subarray(0, left);
  }
}

const packageEntry: RawEntry = { name: "package/package.json", data: PACKAGE_JSON };

/** Asserts that reading `tgz` fails with `E_REGISTRY_TARBALL_INVALID` for `reason`. */
async function refused(
  tgz: Uint8Array | Promise<Uint8Array>,
  reason: TarballProblem,
  path?: string,
  limits?: TarballLimits,
): Promise<KeelError> {
  const e = await rejectsWith(readPackageTarball(await tgz, limits), "E_REGISTRY_TARBALL_INVALID");
  assert.equal(e.details?.reason, reason, e.message);
  if (path !== undefined) assert.equal(e.details?.path, path);
  assert.match(e.message, /^[A-Z]/);
  return e;
}

// ---------------------------------------------------------------------------------------------

describe("packTarball and readPackageTarball", () => {
  test("round trip: package.json, readme, files, sizes", async () => {
    const binary = Uint8Array.from({ length: 1500 }, (_, i) => (i * 7) % 256);
    const longPath = `lib/${"a".repeat(70)}/${"b".repeat(70)}.js`; // over 100 bytes: ustar prefix
    const veryLongPath = `lib/${"c".repeat(120)}/${"d".repeat(120)}/${"e".repeat(120)}.js`; // pax path
    const files = {
      "package.json": PACKAGE_JSON,
      "README.md": "# Demo\n\nHällo ✓\n",
      "index.js": "export default 42;\n",
      "bin/data.bin": binary,
      "empty.txt": "",
      [longPath]: "long",
      [veryLongPath]: "very long",
      "lib/ünïcödé.js": "unicode",
    };
    const tgz = await packTarball(files);
    const read = await readPackageTarball(tgz);
    assert.deepEqual(read.packageJson, JSON.parse(PACKAGE_JSON));
    assert.equal(read.readme, "# Demo\n\nHällo ✓\n");
    assert.deepEqual(
      read.files,
      Object.entries(files).map(([path, data]) => ({ path, size: bytesOf(data).length })),
    );
    assert.equal(read.unpackedSize, read.files.reduce((n, f) => n + f.size, 0));
  });

  test("the same files give the same bytes", async () => {
    const files = { "package.json": PACKAGE_JSON, "a.js": "a", "b/c.js": "c" };
    assert.deepEqual(await packTarball(files), await packTarball(files));
  });

  test("headers are ustar, mode 0644, uid 0, npm's fixed mtime", async () => {
    const tgz = await packTarball({ "package.json": PACKAGE_JSON });
    const tar = new Uint8Array(
      await new Response(
        new Blob([tgz as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
          new DecompressionStream("gzip"),
        ),
      ).arrayBuffer(),
    );
    const text = (from: number, to: number) => new TextDecoder().decode(tar.subarray(from, to));
    assert.equal(text(0, 20), "package/package.json");
    assert.equal(text(100, 107), "0000644");
    assert.equal(text(108, 115), "0000000");
    assert.equal(parseInt(text(136, 147), 8), Date.UTC(1985, 9, 26, 8, 15) / 1000);
    assert.equal(text(156, 157), "0");
    assert.equal(text(257, 265), "ustar\u000000");
    assert.equal(tar.length % 512, 0);
  });

  test("refuses paths that are not plain relative paths", async () => {
    for (const path of ["", "/abs", "../up", "a/../b", "a//b", "./a", "a\\b", "a\0b", "a/"]) {
      await assert.rejects(packTarball({ [path]: "x" }), TypeError, JSON.stringify(path));
    }
    await assert.rejects(packTarball({ "a": "file", "a/b": "below a file" }), TypeError);
  });

  test("picks the readme at the root, preferring .md, any case", async () => {
    const readmeOf = async (files: Record<string, string>) =>
      (await readPackageTarball(await packTarball({ "package.json": PACKAGE_JSON, ...files })))
        .readme;
    assert.equal(
      await readmeOf({ "readme.txt": "txt", "ReadMe.MD": "md", "README": "none" }),
      "md",
    );
    assert.equal(await readmeOf({ "readme.txt": "txt", "README": "none" }), "none");
    assert.equal(
      await readmeOf({ "README.markdown": "markdown", "readme.txt": "txt" }),
      "markdown",
    );
    assert.equal(await readmeOf({ "readme.txt": "txt" }), "txt");
    assert.equal(await readmeOf({ "docs/README.md": "nested", "README.rst": "rst" }), undefined);
    assert.equal(await readmeOf({}), undefined);
    assert.equal((await readmeOf({ "README.md": "x".repeat(MiB) }))?.length, MiB);
    assert.equal(
      await readmeOf({ "README.md": "x".repeat(MiB + 1) }),
      undefined,
      "a readme over 1 MiB is left out",
    );
  });

  test("accepts any single top folder, folder entries, GNU and v7 headers, long names", async () => {
    const longName = `node-fetch/lib/${"x".repeat(150)}/index.js`;
    const tar = rawTar([
      { name: "node-fetch/", type: "5" },
      { name: "node-fetch/package.json", data: PACKAGE_JSON, format: "gnu" },
      { name: "node-fetch/lib/", type: "5", format: "v7" },
      { name: "././@LongLink", type: "L", data: `${longName}\0`, format: "gnu" },
      { name: "node-fetch/lib/truncated-name", data: "gnu long", format: "gnu" },
      {
        name: "PaxHeader/x",
        type: "x",
        data: paxData({ path: "node-fetch/lib/pax-ñame.js", mtime: "1.5" }),
      },
      { name: "node-fetch/lib/ascii-fallback.js", data: "pax" },
      { name: "b.js", prefix: "node-fetch/lib/prefixed", data: "prefix" },
      { name: "node-fetch/./lib//dots.js", data: "dots" },
    ]);
    const read = await readPackageTarball(await gzip(tar));
    assert.deepEqual(read.files, [
      { path: "package.json", size: PACKAGE_JSON.length },
      { path: longName.slice("node-fetch/".length), size: 8 },
      { path: "lib/pax-ñame.js", size: 3 },
      { path: "lib/prefixed/b.js", size: 6 },
      { path: "lib/dots.js", size: 4 },
    ]);
  });

  test("ignores bytes after the end of the archive (as npm does)", async () => {
    const tar = concat([rawTar([packageEntry]), utf8.encode("trailing junk")]);
    assert.deepEqual(
      (await readPackageTarball(await gzip(tar))).packageJson,
      JSON.parse(PACKAGE_JSON),
    );
    // Without the two zero blocks, a tar that ends at an entry boundary is read too.
    assert.equal(
      (await readPackageTarball(await gzip(rawTar([packageEntry], { end: false })))).files.length,
      1,
    );
  });

  test("limits are options", async () => {
    const tgz = await packTarball({
      "package.json": PACKAGE_JSON,
      "a.js": "a".repeat(4000),
      "b.js": "b",
      "c.js": "c",
    });
    await refused(tgz, "compressed-too-large", undefined, { maxCompressedBytes: 100 });
    await refused(tgz, "too-many-files", undefined, { maxFiles: 3 });
    await refused(tgz, "package-json-too-large", "package/package.json", {
      maxPackageJsonBytes: 20,
    });
    await refused(tgz, "unpacked-too-large", undefined, { maxUnpackedBytes: 3000 });
    assert.equal(
      (await readPackageTarball(tgz, { maxFiles: 4, maxUnpackedBytes: 10_000 })).files.length,
      4,
    );
    await assert.rejects(readPackageTarball(tgz, { maxFiles: -1 }), RangeError);
  });
});

describe("readPackageTarball refuses unsafe or broken tarballs", () => {
  const badTar = async (entries: RawEntry[], reason: TarballProblem, path?: string) =>
    await refused(gzip(rawTar([packageEntry, ...entries])), reason, path);

  test("paths that leave the package", async () => {
    await badTar([{ name: "../evil", data: "x" }], "parent-path", "../evil");
    await badTar([{ name: "/etc/passwd", data: "x" }], "absolute-path", "/etc/passwd");
    await badTar([{ name: "package/../../x", data: "x" }], "parent-path", "package/../../x");
    await badTar([{ name: "package/a/../../../x", data: "x" }], "parent-path");
    await badTar([{ name: "C:/Windows/x", data: "x" }], "absolute-path");
    await badTar([{ name: "package\\..\\evil", data: "x" }], "bad-path-character");
    await badTar([{ name: "passwd", prefix: "/etc", data: "x" }], "absolute-path", "/etc/passwd");
    await badTar([{ name: "../evil/", type: "5" }], "parent-path");
  });

  test("pax and GNU long names are checked, not the harmless name beside them", async () => {
    const pax = (records: Record<string, string>): RawEntry => ({
      name: "PaxHeader/x",
      type: "x",
      data: paxData(records),
    });
    await badTar(
      [pax({ path: "package/../../evil" }), { name: "package/ok.js", data: "x" }],
      "parent-path",
      "package/../../evil",
    );
    await badTar(
      [pax({ path: "/etc/cron.d/x" }), { name: "package/ok.js", data: "x" }],
      "absolute-path",
    );
    await badTar(
      [pax({ path: "package/a\0b" }), { name: "package/ok.js", data: "x" }],
      "bad-path-character",
    );
    await badTar(
      [{ name: "././@LongLink", type: "L", data: "../../.bashrc\0" }, {
        name: "package/ok.js",
        data: "x",
      }],
      "parent-path",
      "../../.bashrc",
    );
    await badTar([
      { name: "pax_global_header", type: "g", data: paxData({ path: "/etc/passwd" }) },
      { name: "package/ok.js", data: "x" },
    ], "absolute-path");
    await badTar([{ name: "PaxHeader/x", type: "x", data: "not a pax record" }, {
      name: "package/ok.js",
      data: "x",
    }], "bad-header");
  });

  test("links, devices and other entry types", async () => {
    await badTar(
      [{ name: "package/link", type: "2", linkname: "/etc/passwd" }],
      "symlink",
      "package/link",
    );
    await badTar(
      [{ name: "package/hard", type: "1", linkname: "package/package.json" }],
      "hardlink",
      "package/hard",
    );
    await badTar([{ name: "package/tty", type: "3" }], "special-file");
    await badTar([{ name: "package/disk", type: "4" }], "special-file");
    await badTar([{ name: "package/fifo", type: "6" }], "special-file");
    await badTar([{ name: "package/sparse", type: "S", data: "x" }], "unsupported-entry");
  });

  test("duplicates and a path that is both file and folder", async () => {
    await badTar(
      [{ name: "package/a.js", data: "1" }, { name: "package/a.js", data: "2" }],
      "duplicate-path",
      "package/a.js",
    );
    await badTar(
      [{ name: "package/a.js", data: "1" }, { name: "package/./a.js", data: "2" }],
      "duplicate-path",
    );
    await refused(
      gzip(rawTar([packageEntry, packageEntry])),
      "duplicate-path",
      "package/package.json",
    );
    await badTar(
      [{ name: "package/lib", data: "file" }, { name: "package/lib/x.js", data: "x" }],
      "path-conflict",
    );
    await badTar(
      [{ name: "package/lib/x.js", data: "x" }, { name: "package/lib", data: "file" }],
      "path-conflict",
    );
    await badTar([{ name: "package/lib/x.js", data: "x" }, {
      name: "package/lib/x.js/",
      type: "5",
    }], "path-conflict");
  });

  test("entries outside the one top folder", async () => {
    await badTar([{ name: "other/x.js", data: "x" }], "outside-top-folder", "other/x.js");
    await refused(
      gzip(rawTar([{ name: "package.json", data: PACKAGE_JSON }])),
      "outside-top-folder",
      "package.json",
    );
  });

  test("a missing or broken package.json", async () => {
    await refused(gzip(rawTar([{ name: "package/index.js", data: "x" }])), "missing-package-json");
    await refused(
      gzip(rawTar([{ name: "package/sub/package.json", data: PACKAGE_JSON }])),
      "missing-package-json",
    );
    await refused(gzip(rawTar([])), "missing-package-json");
    for (const data of ["[1, 2]", "null", "42", '{"name": ', "", Uint8Array.of(0x7b, 0xff, 0x7d)]) {
      await refused(
        gzip(rawTar([{ name: "package/package.json", data }])),
        "bad-package-json",
        "package.json",
      );
    }
    // A byte-order mark is allowed, as npm allows it.
    const bom = await readPackageTarball(
      await gzip(rawTar([{ name: "package/package.json", data: `\uFEFF${PACKAGE_JSON}` }])),
    );
    assert.deepEqual(bom.packageJson, JSON.parse(PACKAGE_JSON));
  });

  test("truncated archives", async () => {
    // A file whose data stops early, in a gzip stream that is itself complete.
    await refused(
      gzip(
        rawTar([packageEntry, { name: "package/big.js", size: 5000, data: "only this" }], {
          end: false,
        }),
      ),
      "truncated",
    );
    // A header cut in the middle.
    await refused(
      gzip(
        rawTar([packageEntry, { name: "package/a.js", data: "x" }], { end: false }).subarray(
          0,
          1024 + 300,
        ),
      ),
      "truncated",
    );
    // The .tgz itself cut short.
    const tgz = await packTarball({ "package.json": PACKAGE_JSON, "a.js": "a".repeat(20_000) });
    await refused(tgz.subarray(0, tgz.length - 20), "bad-gzip");
    await refused(tgz.subarray(0, tgz.length >> 1), "bad-gzip");
  });

  test("a bad tar checksum", async () => {
    await refused(gzip(rawTar([{ ...packageEntry, badChecksum: true }])), "bad-checksum");
    await refused(
      gzip(rawTar([packageEntry, { name: "package/a.js", data: "x", badChecksum: true }])),
      "bad-checksum",
    );
  });

  test("random bytes, an empty file, a corrupt gzip trailer, junk after the gzip stream", async () => {
    await refused(crypto.getRandomValues(new Uint8Array(4096)), "bad-gzip");
    await refused(new Uint8Array(0), "bad-gzip");
    await refused(utf8.encode("<html>Not a tarball</html>"), "bad-gzip");
    const tgz = await packTarball({ "package.json": PACKAGE_JSON });
    const badCrc = tgz.slice();
    badCrc[badCrc.length - 6]! ^= 0xff;
    await refused(badCrc, "bad-gzip");
    await refused(concat([tgz, utf8.encode("junk")]), "bad-gzip");
    // Valid gzip around bytes that are no tar.
    await refused(gzip(crypto.getRandomValues(new Uint8Array(4096))), "bad-checksum");
  });

  describe("gzip bombs", () => {
    let bomb: Uint8Array = new Uint8Array(0);
    let bombAfterPackage: Uint8Array = new Uint8Array(0);

    before(async () => {
      // 1 GiB of zeros, compressed 1 MiB at a time to about 1 MiB.
      bomb = await gzipChunks(zeros(1024 * MiB));
      bombAfterPackage = await gzipChunks((function* () {
        yield rawTar([packageEntry]);
        yield* zeros(1024 * MiB);
      })());
    });

    test("1 GiB of zeros is refused once 50 MiB have come out", async () => {
      assert.ok(
        bomb.length < 10 * MiB,
        `the bomb is ${bomb.length} bytes, under the compressed limit`,
      );
      await refused(bomb, "unpacked-too-large");
    });

    test("a valid package followed by 1 GiB of zeros is refused", async () => {
      await refused(bombAfterPackage, "unpacked-too-large");
    });

    test("a header claiming a 1 GiB file is refused before its data is read", async () => {
      const header = rawTar([packageEntry, { name: "package/huge.bin", size: 1024 * MiB }], {
        end: false,
      });
      await refused(
        gzipChunks((function* () {
          yield header;
          yield* zeros(64 * MiB);
        })()),
        "unpacked-too-large",
      );
    });

    test("files that are each under the limit but together over it are refused while streaming", async () => {
      const file = (name: string): Uint8Array => rawTar([{ name, size: 30 * MiB }], { end: false });
      await refused(
        gzipChunks((function* () {
          yield rawTar([packageEntry], { end: false });
          yield file("package/a.bin");
          yield* zeros(30 * MiB);
          yield file("package/b.bin");
          yield* zeros(30 * MiB);
          yield new Uint8Array(1024);
        })()),
        "unpacked-too-large",
      );
    });
  });
});

describe("with the real npm CLI", () => {
  let fixture = "";
  let packed: { tgz: Uint8Array; json: NpmPackJson } | undefined;

  interface NpmPackJson {
    name: string;
    version: string;
    filename: string;
    integrity: string;
    shasum: string;
    unpackedSize: number;
    files: { path: string; size: number }[];
  }

  const npmEnv = () => ({
    ...process.env,
    npm_config_cache: `${tmp}/npm-cache`,
    npm_config_update_notifier: "false",
    npm_config_audit: "false",
    npm_config_fund: "false",
    npm_config_loglevel: "error",
  });

  before(async () => {
    fixture = `${tmp}/fixture`;
    const files: Record<string, string | Uint8Array> = {
      "package.json": JSON.stringify(
        { name: "@keel/fixture", version: "0.3.1", main: "index.js", keel: { entry: "index.js" } },
        null,
        2,
      ),
      "README.md": "# Fixture\n\nA package packed by the real npm.\n",
      "index.js": "module.exports = 'fixture';\n",
      "lib/deep/util.js": "exports.x = 1;\n",
      [`lib/${"long".repeat(30)}/${"name".repeat(10)}.js`]: "// long path\n",
      "lib/ünïcödé.js": "// unicode\n",
      "data/blob.bin": Uint8Array.from({ length: 3000 }, (_, i) => (i * 31) % 256),
      "empty.txt": "",
    };
    for (const [path, data] of Object.entries(files)) {
      const full = `${fixture}/${path}`;
      await mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
      await writeFile(full, data);
    }
    const out = await mkdtemp(`${tmp}/packed-`);
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", out], {
      cwd: fixture,
      env: npmEnv(),
    });
    const json = (JSON.parse(stdout) as NpmPackJson[])[0]!;
    packed = { tgz: new Uint8Array(await readFile(`${out}/${json.filename}`)), json };
  });

  test("reads what npm pack made", async () => {
    const { tgz, json } = packed!;
    const read = await readPackageTarball(tgz);
    assert.equal(read.packageJson.name, "@keel/fixture");
    assert.equal(read.packageJson.version, "0.3.1");
    assert.deepEqual(read.packageJson.keel, { entry: "index.js" });
    assert.equal(read.readme, "# Fixture\n\nA package packed by the real npm.\n");
    const byPath = (a: { path: string }, b: { path: string }) =>
      a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
    assert.deepEqual(
      [...read.files].sort(byPath),
      json.files.map(({ path, size }) => ({ path, size })).sort(byPath),
    );
    assert.equal(read.unpackedSize, json.unpackedSize);
  });

  test("integrityOf matches npm pack's integrity and shasum", async () => {
    const { tgz, json } = packed!;
    assert.deepEqual(await integrityOf(tgz), { integrity: json.integrity, shasum: json.shasum });
  });

  test("npm install accepts what packTarball made", async () => {
    const tgz = await packTarball({
      "package.json": JSON.stringify({
        name: "keel-packed",
        version: "2.0.0",
        main: "lib/index.js",
      }),
      "lib/index.js": "module.exports = { answer: 42 };\n",
      [`lib/${"p".repeat(90)}/${"q".repeat(90)}.js`]: "// prefix-split path\n",
      [`lib/${"r".repeat(200)}/${"s".repeat(200)}.js`]: "// pax path\n",
      "README.md": "# Packed\n",
    });
    const project = await mkdtemp(`${tmp}/install-`);
    await writeFile(`${project}/keel-packed-2.0.0.tgz`, tgz);
    await writeFile(
      `${project}/package.json`,
      JSON.stringify({ name: "consumer", version: "1.0.0", private: true }),
    );
    await run("npm", [
      "install",
      "--offline",
      "--ignore-scripts",
      "--no-package-lock",
      "./keel-packed-2.0.0.tgz",
    ], {
      cwd: project,
      env: npmEnv(),
    });
    const installed = `${project}/node_modules/keel-packed`;
    assert.equal(
      await readFile(`${installed}/lib/index.js`, "utf8"),
      "module.exports = { answer: 42 };\n",
    );
    assert.equal(
      await readFile(`${installed}/lib/${"p".repeat(90)}/${"q".repeat(90)}.js`, "utf8"),
      "// prefix-split path\n",
    );
    assert.equal(
      await readFile(`${installed}/lib/${"r".repeat(200)}/${"s".repeat(200)}.js`, "utf8"),
      "// pax path\n",
    );
    assert.equal(JSON.parse(await readFile(`${installed}/package.json`, "utf8")).version, "2.0.0");
  });
});

describe("integrityOf", () => {
  test("is sha512 base64 and sha1 hex, as node:crypto computes them", async () => {
    for (
      const bytes of [
        new Uint8Array(0),
        utf8.encode("abc"),
        crypto.getRandomValues(new Uint8Array(60_000)),
      ]
    ) {
      assert.deepEqual(await integrityOf(bytes), {
        integrity: `sha512-${createHash("sha512").update(bytes).digest("base64")}`,
        shasum: createHash("sha1").update(bytes).digest("hex"),
      });
    }
  });
});
