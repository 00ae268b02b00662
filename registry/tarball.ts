/**
 * Safe reading and writing of npm package tarballs (`.tgz`): gzip through the web-standard
 * `DecompressionStream`, tar parsed here (ustar, GNU long names, pax headers), every limit
 * checked while the bytes stream, so a gzip bomb or a hostile archive is refused without ever
 * being held in memory.
 *
 * The tar parser is written here rather than taken from npm: `tar` (node-tar) and `tar-stream`
 * need Node streams and `Buffer`, and `nanotar` buffers the whole archive; this one is ~300 lines
 * of web-standard code that runs on Deno, Bun and edge hosts.
 * @module
 */

import { KeelError } from "../core/errors.ts";

/** Size and count limits for {@link readPackageTarball}. */
export interface TarballLimits {
  /** The most gzip bytes accepted; default 10 MiB. */
  readonly maxCompressedBytes?: number;
  /**
   * The most bytes the gzip stream may expand to (tar headers and padding included, so this
   * also bounds the sum of the file sizes); default 50 MiB.
   */
  readonly maxUnpackedBytes?: number;
  /** The most regular files; default 10 000. */
  readonly maxFiles?: number;
  /** The largest `package.json` accepted; default 1 MiB. */
  readonly maxPackageJsonBytes?: number;
}

/** One regular file of a package tarball. */
export interface TarballEntry {
  /** The path inside the package, without the top folder ("package/"). */
  readonly path: string;
  /** Bytes. */
  readonly size: number;
}

/** What {@link readPackageTarball} learns from a tarball. */
export interface PackageTarball {
  /** The parsed `package.json` at the package root. */
  readonly packageJson: Record<string, unknown>;
  /**
   * The readme at the package root (README.md, readme, README.markdown, readme.txt: any case),
   * when one of at most 1 MiB exists; a `.md` file wins over the others.
   */
  readonly readme?: string;
  /** Every regular file, in archive order. */
  readonly files: readonly TarballEntry[];
  /** The sum of the file sizes (npm's `dist.unpackedSize`). */
  readonly unpackedSize: number;
}

/**
 * Why a tarball was refused: the `reason` in the details of its `E_REGISTRY_TARBALL_INVALID`
 * error. `path` is set too when one entry is to blame.
 */
export type TarballProblem =
  | "compressed-too-large"
  | "unpacked-too-large"
  | "too-many-files"
  | "package-json-too-large"
  | "bad-gzip"
  | "truncated"
  | "bad-checksum"
  | "bad-header"
  | "absolute-path"
  | "parent-path"
  | "bad-path-character"
  | "outside-top-folder"
  | "symlink"
  | "hardlink"
  | "special-file"
  | "unsupported-entry"
  | "duplicate-path"
  | "path-conflict"
  | "missing-package-json"
  | "bad-package-json";

const MiB = 1024 * 1024;
const DEFAULT_LIMITS = {
  maxCompressedBytes: 10 * MiB,
  maxUnpackedBytes: 50 * MiB,
  maxFiles: 10_000,
  maxPackageJsonBytes: 1 * MiB,
} as const;
const README_LIMIT = 1 * MiB;
/** The most bytes of one pax or GNU long-name header held in memory. */
const METADATA_LIMIT = 1 * MiB;
/**
 * Gzip input is fed in slices this small: Deno's DecompressionStream inflates each input chunk
 * into one output chunk, so a 1 MiB bomb given whole would come out as one 1 GiB chunk. Deflate
 * expands at most ~1032:1, so no output chunk exceeds ~4 MiB.
 */
const INPUT_SLICE = 4096;
const BLOCK = 512;
/** npm's fixed mtime for reproducible tarballs: 1985-10-26T08:15:00Z. */
const FIXED_MTIME = 499162500;

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const lenientUtf8 = new TextDecoder("utf-8");

/** A path from the archive, quoted, escaped and cut short, fit for a message. */
function shown(path: string): string {
  return JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}…` : path);
}

function invalid(
  reason: TarballProblem,
  message: string,
  path?: string,
  cause?: unknown,
): KeelError {
  const details: Record<string, unknown> = { reason };
  if (path !== undefined) details.path = path.length > 1024 ? `${path.slice(0, 1024)}…` : path;
  return new KeelError(
    "E_REGISTRY_TARBALL_INVALID",
    message,
    cause === undefined ? { details } : { details, cause },
  );
}

/**
 * Reads a package tarball: checks it is a safe, well-formed `.tgz` and returns its `package.json`,
 * readme and file list. Only `package.json` and the readme are held in memory; the other files
 * are counted and skipped.
 *
 * @throws {KeelError} `E_REGISTRY_TARBALL_INVALID` with `details.reason` (a {@link TarballProblem})
 * and, for a bad entry, `details.path`.
 */
export async function readPackageTarball(
  bytes: Uint8Array,
  limits: TarballLimits = {},
): Promise<PackageTarball> {
  const max = { ...DEFAULT_LIMITS, ...definedOnly(limits) };
  if (bytes.length > max.maxCompressedBytes) {
    throw invalid(
      "compressed-too-large",
      `The tarball is ${bytes.length} bytes, over the limit of ${max.maxCompressedBytes}: publish a smaller package (use "files" in package.json to leave out what it does not need)`,
    );
  }
  const source = new ByteSource(bytes, max.maxUnpackedBytes);
  try {
    const scan = await readEntries(source, max);
    // Read to the end, so a corrupt gzip trailer or a bomb after the archive is refused first.
    await source.drain();
    if (scan.packageJson === undefined) {
      throw invalid(
        "missing-package-json",
        `The tarball has no package.json in its top folder${
          scan.top === undefined ? "" : ` ${shown(`${scan.top}/`)}`
        }: run "npm pack" in the package's folder`,
      );
    }
    const result: { -readonly [K in keyof PackageTarball]: PackageTarball[K] } = {
      packageJson: parsePackageJson(scan.packageJson),
      files: scan.files,
      unpackedSize: scan.unpackedSize,
    };
    if (scan.readme !== undefined) result.readme = lenientUtf8.decode(scan.readme);
    return result;
  } finally {
    await source.close();
  }
}

interface Limits {
  readonly maxFiles: number;
  readonly maxPackageJsonBytes: number;
}

/** What one pass over the entries found. */
interface Scan {
  readonly top: string | undefined;
  readonly files: TarballEntry[];
  readonly unpackedSize: number;
  readonly packageJson: Uint8Array | undefined;
  readonly readme: Uint8Array | undefined;
}

async function readEntries(source: ByteSource, max: Limits): Promise<Scan> {
  const files: TarballEntry[] = [];
  const fileSet = new Set<string>();
  const dirSet = new Set<string>();
  const explicitDirs = new Set<string>();
  let top: string | undefined;
  let unpackedSize = 0;
  let packageJsonBytes: Uint8Array | undefined;
  let readme: { rank: number; bytes: Uint8Array } | undefined;
  let globalPax: Record<string, string> = {};
  let nextPax: Record<string, string> = {};

  for (;;) {
    const header = await source.read(BLOCK);
    // The end: two zero blocks (or a tar cut off at an entry boundary, as npm tolerates).
    if (header === undefined || isZeroBlock(header)) break;
    verifyChecksum(header);
    const type = String.fromCharCode(header[156]!);
    const headerSize = readNumber(header, 124, 12, "size");

    if (type === "x" || type === "g" || type === "L" || type === "K") {
      if (headerSize > METADATA_LIMIT) {
        throw invalid(
          "bad-header",
          `A tar metadata header is ${headerSize} bytes, over the limit of ${METADATA_LIMIT}`,
        );
      }
      const data = await source.readExact(headerSize);
      await source.skip(padding(headerSize));
      if (type === "x") nextPax = { ...nextPax, ...parsePax(data) };
      else if (type === "g") globalPax = { ...globalPax, ...parsePax(data) };
      else if (type === "L") nextPax = { ...nextPax, path: decodeName(cString(data)) };
      // "K" (a long link target) only matters for links, which are refused below.
      continue;
    }

    const rawPath = nextPax.path ?? globalPax.path ?? headerName(header);
    const paxSize = nextPax.size ?? globalPax.size;
    nextPax = {};
    const size = paxSize === undefined ? headerSize : parsePaxSize(paxSize);

    if (type === "2") {
      throw invalid(
        "symlink",
        `The tarball holds a symlink ${
          shown(rawPath)
        }: packages may only hold regular files and folders`,
        rawPath,
      );
    }
    if (type === "1") {
      throw invalid(
        "hardlink",
        `The tarball holds a hard link ${
          shown(rawPath)
        }: packages may only hold regular files and folders`,
        rawPath,
      );
    }
    if (type === "3" || type === "4" || type === "6") {
      throw invalid(
        "special-file",
        `The tarball holds a device or FIFO ${
          shown(rawPath)
        }: packages may only hold regular files and folders`,
        rawPath,
      );
    }
    const isFile = type === "0" || type === "\0" || type === "7";
    const isDir = type === "5";
    if (!isFile && !isDir) {
      throw invalid(
        "unsupported-entry",
        `The tarball holds an entry ${shown(rawPath)} of unsupported tar type ${
          JSON.stringify(type)
        }: packages may only hold regular files and folders`,
        rawPath,
      );
    }

    const segments = checkPath(rawPath);
    const [first, ...rest] = segments;
    if (first === undefined) {
      // "./" and the like: a folder entry for the archive root.
      if (isFile) {
        throw invalid("outside-top-folder", `The tarball holds a file with an empty path`, rawPath);
      }
      await source.skip(size + padding(size));
      continue;
    }
    if (top === undefined) top = first;
    else if (first !== top) {
      throw invalid(
        "outside-top-folder",
        `The tarball holds ${shown(rawPath)} outside its top folder ${
          shown(`${top}/`)
        }: a package tarball has exactly one top folder`,
        rawPath,
      );
    }
    const path = rest.join("/");

    if (isDir) {
      if (path !== "") {
        if (explicitDirs.has(path)) {
          throw invalid(
            "duplicate-path",
            `The tarball holds the folder ${shown(rawPath)} twice`,
            rawPath,
          );
        }
        if (fileSet.has(path)) {
          throw invalid(
            "path-conflict",
            `The tarball holds ${shown(rawPath)} as both a file and a folder`,
            rawPath,
          );
        }
        addParents(rest, rawPath);
        explicitDirs.add(path);
        dirSet.add(path);
      }
      await source.skip(size + padding(size));
      continue;
    }

    if (path === "") {
      throw invalid(
        "outside-top-folder",
        `The tarball holds a file ${shown(rawPath)} outside any folder: files go under "package/"`,
        rawPath,
      );
    }
    if (fileSet.has(path)) {
      throw invalid(
        "duplicate-path",
        `The tarball holds the file ${shown(rawPath)} twice`,
        rawPath,
      );
    }
    if (dirSet.has(path)) {
      throw invalid(
        "path-conflict",
        `The tarball holds ${shown(rawPath)} as both a file and a folder`,
        rawPath,
      );
    }
    addParents(rest, rawPath);
    fileSet.add(path);
    if (fileSet.size > max.maxFiles) {
      throw invalid(
        "too-many-files",
        `The tarball holds more than ${max.maxFiles} files: publish fewer (use "files" in package.json)`,
      );
    }
    files.push({ path, size });
    unpackedSize += size;

    if (path === "package.json") {
      if (size > max.maxPackageJsonBytes) {
        throw invalid(
          "package-json-too-large",
          `The package.json is ${size} bytes, over the limit of ${max.maxPackageJsonBytes}`,
          rawPath,
        );
      }
      packageJsonBytes = await source.readExact(size);
    } else {
      const rank = readmeRank(path);
      if (
        rank !== undefined && size <= README_LIMIT && (readme === undefined || rank < readme.rank)
      ) {
        readme = { rank, bytes: await source.readExact(size) };
      } else {
        await source.skip(size);
      }
    }
    await source.skip(padding(size));
  }

  function addParents(segments: readonly string[], rawPath: string): void {
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join("/");
      if (fileSet.has(parent)) {
        throw invalid(
          "path-conflict",
          `The tarball holds ${shown(rawPath)} under ${shown(parent)}, which is a file`,
          rawPath,
        );
      }
      dirSet.add(parent);
    }
  }

  return { top, files, unpackedSize, packageJson: packageJsonBytes, readme: readme?.bytes };
}

function parsePackageJson(bytes: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    let text = strictUtf8.decode(bytes);
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    value = JSON.parse(text);
  } catch (e) {
    throw invalid(
      "bad-package-json",
      `The package.json is not valid UTF-8 JSON: fix it and pack again`,
      "package.json",
      e,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(
      "bad-package-json",
      `The package.json is not a JSON object: it must be { "name": ..., "version": ... }`,
      "package.json",
    );
  }
  return value as Record<string, unknown>;
}

/** Lower is better; undefined when `path` is not a readme at the package root. */
function readmeRank(path: string): number | undefined {
  const match = /^readme(?:\.(md|markdown|txt))?$/i.exec(path);
  if (match === null) return undefined;
  const ext = match[1]?.toLowerCase();
  return ext === "md" ? 0 : ext === "markdown" ? 1 : ext === undefined ? 2 : 3;
}

/** Splits and checks an entry path; returns its segments without "" and ".". */
function checkPath(path: string): string[] {
  if (path.includes("\0")) {
    throw invalid("bad-path-character", `The tarball holds a path with a NUL character`, path);
  }
  if (path.includes("\\")) {
    throw invalid(
      "bad-path-character",
      `The tarball holds a path with a backslash ${shown(path)}`,
      path,
    );
  }
  if (path.startsWith("/") || /^[A-Za-z]:/.test(path)) {
    throw invalid("absolute-path", `The tarball holds an absolute path ${shown(path)}`, path);
  }
  const segments = path.split("/");
  if (segments.includes("..")) {
    throw invalid("parent-path", `The tarball holds a path with ".." ${shown(path)}`, path);
  }
  return segments.filter((s) => s !== "" && s !== ".");
}

function isZeroBlock(block: Uint8Array): boolean {
  for (const b of block) if (b !== 0) return false;
  return true;
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

function verifyChecksum(header: Uint8Array): void {
  const field = lenientUtf8.decode(header.subarray(148, 156));
  const match = /^ *([0-7]{1,7})[ \0]*$/.exec(field);
  if (match === null) {
    throw invalid(
      "bad-checksum",
      `A tar header has a malformed checksum: the tarball is corrupt or not a tarball`,
    );
  }
  const stored = parseInt(match[1]!, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : header[i]!;
    unsigned += b;
    signed += b >= 0x80 ? b - 0x100 : b;
  }
  if (stored !== unsigned && stored !== signed) {
    throw invalid("bad-checksum", `A tar header has a bad checksum: the tarball is corrupt`);
  }
}

/** Reads an octal (or GNU base-256) number field. */
function readNumber(header: Uint8Array, offset: number, length: number, field: string): number {
  const bytes = header.subarray(offset, offset + length);
  if ((bytes[0]! & 0x80) !== 0) {
    if (bytes[0] !== 0x80) throw invalid("bad-header", `A tar header has a negative ${field}`);
    let value = 0;
    for (let i = 1; i < bytes.length; i++) value = value * 256 + bytes[i]!;
    if (!Number.isSafeInteger(value)) {
      throw invalid("bad-header", `A tar header has a ${field} too large to read`);
    }
    return value;
  }
  let i = 0;
  while (i < bytes.length && bytes[i] === 0x20) i++;
  let value = 0;
  for (; i < bytes.length && bytes[i]! >= 0x30 && bytes[i]! <= 0x37; i++) {
    value = value * 8 + (bytes[i]! - 0x30);
  }
  for (; i < bytes.length; i++) {
    if (bytes[i] !== 0 && bytes[i] !== 0x20) {
      throw invalid("bad-header", `A tar header has a malformed ${field} field`);
    }
  }
  return value;
}

function headerName(header: Uint8Array): string {
  const name = cString(header.subarray(0, 100));
  // POSIX ustar ("ustar\0") keeps a path prefix at 345; GNU ("ustar  \0") uses those bytes for times.
  const posix = lenientUtf8.decode(header.subarray(257, 263)) === "ustar\0";
  const prefix = posix ? cString(header.subarray(345, 500)) : new Uint8Array(0);
  return prefix.length > 0 ? `${decodeName(prefix)}/${decodeName(name)}` : decodeName(name);
}

/** The bytes up to the first NUL. */
function cString(bytes: Uint8Array): Uint8Array {
  const end = bytes.indexOf(0);
  return end === -1 ? bytes : bytes.subarray(0, end);
}

function decodeName(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch (e) {
    throw invalid("bad-header", `A tar entry has a path that is not UTF-8`, undefined, e);
  }
}

/** Parses pax records: "<length> <key>=<value>\n", length counting the whole record. */
function parsePax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // Some writers pad the data with NULs.
    const space = data.indexOf(0x20, pos);
    const lengthText = space === -1 ? "" : lenientUtf8.decode(data.subarray(pos, space));
    const length = /^[0-9]{1,9}$/.test(lengthText) ? Number(lengthText) : NaN;
    if (
      !(length > space - pos + 1) || pos + length > data.length || data[pos + length - 1] !== 0x0a
    ) {
      throw invalid("bad-header", `A pax header is malformed: the tarball is corrupt`);
    }
    const record = decodeName(data.subarray(space + 1, pos + length - 1));
    const eq = record.indexOf("=");
    if (eq <= 0) throw invalid("bad-header", `A pax header is malformed: the tarball is corrupt`);
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    // An empty value unsets the key: the entry falls back to the global header or its own name.
    if (value === "") delete out[key];
    else out[key] = value;
    pos += length;
  }
  return out;
}

function parsePaxSize(text: string): number {
  if (!/^[0-9]{1,15}$/.test(text)) {
    throw invalid("bad-header", `A pax header has a malformed size ${shown(text)}`);
  }
  return Number(text);
}

function definedOnly(limits: TarballLimits): Partial<Record<keyof TarballLimits, number>> {
  const out: Partial<Record<keyof TarballLimits, number>> = {};
  for (
    const [key, value] of Object.entries(limits) as [keyof TarballLimits, number | undefined][]
  ) {
    if (value === undefined) continue;
    if (typeof value !== "number" || !(value >= 0)) {
      throw new RangeError(
        `Tarball limit "${key}" must be a number >= 0, got ${String(value)}`,
      );
    }
    out[key] = value;
  }
  return out;
}

/**
 * The decompressed bytes of a gzip buffer, read on demand: counts every byte the stream yields
 * and stops it (cancel) past the limit, and turns stream errors into `bad-gzip`.
 */
class ByteSource {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #limit: number;
  #chunk: Uint8Array = new Uint8Array(0);
  #offset = 0;
  #total = 0;
  #done = false;

  constructor(gzip: Uint8Array, limit: number) {
    let at = 0;
    const data = gzip as Uint8Array<ArrayBuffer>;
    const input = new ReadableStream<BufferSource>({
      pull(controller) {
        if (at >= data.length) {
          controller.close();
          return;
        }
        controller.enqueue(data.subarray(at, at + INPUT_SLICE));
        at += INPUT_SLICE;
      },
    }, { highWaterMark: 0 });
    this.#reader = input.pipeThrough(new DecompressionStream("gzip")).getReader();
    this.#limit = limit;
  }

  /** Makes bytes available; false at the end of the stream. */
  async #fill(): Promise<boolean> {
    while (this.#offset >= this.#chunk.length) {
      if (this.#done) return false;
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await this.#reader.read();
      } catch (e) {
        this.#done = true;
        throw invalid(
          "bad-gzip",
          `The tarball is not valid gzip (${
            e instanceof Error ? e.message : String(e)
          }): upload the .tgz that "npm pack" made`,
          undefined,
          e,
        );
      }
      if (next.done) {
        this.#done = true;
        return false;
      }
      this.#total += next.value.length;
      if (this.#total > this.#limit) {
        throw invalid(
          "unpacked-too-large",
          `The tarball unpacks to more than ${this.#limit} bytes: publish a smaller package`,
        );
      }
      this.#chunk = next.value;
      this.#offset = 0;
    }
    return true;
  }

  /** Exactly `n` bytes, or undefined at a clean end of stream; throws when it ends midway. */
  async read(n: number): Promise<Uint8Array | undefined> {
    if (!(await this.#fill())) return undefined;
    return await this.readExact(n);
  }

  /** Exactly `n` bytes (a copy); throws `truncated` when the stream ends first. */
  async readExact(n: number): Promise<Uint8Array> {
    if (n > this.#limit) {
      throw invalid(
        "unpacked-too-large",
        `A tarball entry of ${n} bytes is over the unpacked limit of ${this.#limit}`,
      );
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      if (!(await this.#fill())) {
        throw invalid(
          "truncated",
          `The tar archive ends in the middle of an entry: the tarball is truncated`,
        );
      }
      const take = Math.min(n - filled, this.#chunk.length - this.#offset);
      out.set(this.#chunk.subarray(this.#offset, this.#offset + take), filled);
      this.#offset += take;
      filled += take;
    }
    return out;
  }

  async skip(n: number): Promise<void> {
    if (n > this.#limit) {
      throw invalid(
        "unpacked-too-large",
        `A tarball entry of ${n} bytes is over the unpacked limit of ${this.#limit}`,
      );
    }
    let left = n;
    while (left > 0) {
      if (!(await this.#fill())) {
        throw invalid(
          "truncated",
          `The tar archive ends in the middle of an entry: the tarball is truncated`,
        );
      }
      const take = Math.min(left, this.#chunk.length - this.#offset);
      this.#offset += take;
      left -= take;
    }
  }

  /** Reads (and counts) whatever follows, to the end of the gzip stream. */
  async drain(): Promise<void> {
    while (await this.#fill()) this.#offset = this.#chunk.length;
  }

  async close(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#reader.cancel().catch(() => {});
  }
}

/** The `sha512` integrity (as in `dist.integrity`) and sha1 hex shasum (`dist.shasum`) of a tarball. */
export async function integrityOf(
  bytes: Uint8Array,
): Promise<{ integrity: string; shasum: string }> {
  const data = bytes as Uint8Array<ArrayBuffer>;
  const [sha512, sha1] = await Promise.all([
    crypto.subtle.digest("SHA-512", data),
    crypto.subtle.digest("SHA-1", data),
  ]);
  const hex = Array.from(new Uint8Array(sha1), (b) => b.toString(16).padStart(2, "0")).join("");
  return { integrity: `sha512-${toBase64(new Uint8Array(sha512))}`, shasum: hex };
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/**
 * Builds a `.tgz` as `npm pack` does: each file under "package/", ustar headers with mode 0644,
 * uid and gid 0 and npm's fixed mtime, so the same files give the same bytes (on one runtime:
 * Deno's and Bun's deflate differ).
 *
 * @param files Paths relative to the package root ("package.json", "lib/index.js") to contents;
 * strings are written as UTF-8.
 * @throws {TypeError} For a path that is empty, absolute, has "..", ".", an empty segment, a
 * backslash or a NUL, or is both a file and a folder.
 */
export async function packTarball(
  files: Readonly<Record<string, string | Uint8Array>>,
): Promise<Uint8Array> {
  const blocks: Uint8Array[] = [];
  const seen = new Set<string>();
  const parents = new Set<string>();
  for (const [path, content] of Object.entries(files)) {
    const segments = path.split("/");
    if (
      path === "" || path.includes("\\") || path.includes("\0") ||
      segments.some((s) => s === "" || s === "." || s === "..")
    ) {
      throw new TypeError(
        `packTarball: "${path}" is not a relative path of plain segments ("lib/index.js")`,
      );
    }
    for (let i = 1; i < segments.length; i++) parents.add(segments.slice(0, i).join("/"));
    seen.add(path);
    const data = typeof content === "string" ? utf8.encode(content) : content;
    const name = `package/${path}`;
    const nameBytes = utf8.encode(name);
    const split = splitUstarName(nameBytes);
    if (split === undefined) {
      const pax = paxRecord("path", name);
      blocks.push(
        tarHeader({ name: utf8.encode("PaxHeader/package"), size: pax.length, type: "x" }),
      );
      blocks.push(pax, new Uint8Array(padding(pax.length)));
      // Readers that ignore pax still get a name, cut at a character boundary.
      blocks.push(tarHeader({ name: cutUtf8(nameBytes, 100), size: data.length, type: "0" }));
    } else {
      blocks.push(tarHeader({ ...split, size: data.length, type: "0" }));
    }
    blocks.push(data, new Uint8Array(padding(data.length)));
  }
  for (const path of seen) {
    if (parents.has(path)) {
      throw new TypeError(`packTarball: "${path}" is both a file and a folder`);
    }
  }
  blocks.push(new Uint8Array(2 * BLOCK));
  const tar = new Blob(blocks as Uint8Array<ArrayBuffer>[]);
  return new Uint8Array(
    await new Response(tar.stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer(),
  );
}

/** Fits a name into ustar's name (100 bytes) and prefix (155 bytes) fields, or undefined. */
function splitUstarName(name: Uint8Array): { name: Uint8Array; prefix?: Uint8Array } | undefined {
  if (name.length <= 100) return { name };
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== 0x2f) continue;
    if (i <= 155 && name.length - i - 1 <= 100 && name.length - i - 1 > 0) {
      return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
    }
  }
  return undefined;
}

function cutUtf8(bytes: Uint8Array, max: number): Uint8Array {
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

function paxRecord(key: string, value: string): Uint8Array {
  const body = utf8.encode(` ${key}=${value}\n`);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) {
    length = String(length).length + body.length;
  }
  return utf8.encode(`${length} ${key}=${value}\n`);
}

function tarHeader(
  entry: { name: Uint8Array; prefix?: Uint8Array; size: number; type: "0" | "x" },
): Uint8Array {
  const header = new Uint8Array(BLOCK);
  const ascii = (text: string, offset: number) => header.set(utf8.encode(text), offset);
  const octal = (value: number, offset: number, length: number) => {
    const text = value.toString(8);
    if (text.length > length - 1) {
      throw new RangeError(`packTarball: ${value} does not fit a tar header field`);
    }
    ascii(text.padStart(length - 1, "0"), offset); // then a NUL, already there
  };
  header.set(entry.name, 0);
  octal(0o644, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(entry.size, 124, 12);
  octal(FIXED_MTIME, 136, 12);
  ascii("        ", 148);
  ascii(entry.type, 156);
  ascii("ustar\u000000", 257);
  if (entry.prefix !== undefined) header.set(entry.prefix, 345);
  let sum = 0;
  for (const b of header) sum += b;
  ascii(sum.toString(8).padStart(6, "0") + "\u0000 ", 148);
  return header;
}
