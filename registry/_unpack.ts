/**
 * The file contents of a package tarball, for `keel add`, and a digest over a package's files,
 * which `keel.lock` records so a plugin whose files changed after install is refused at load.
 *
 * `readPackageTarball` (tarball.ts) checks an archive and lists its files but keeps no contents;
 * this reads them, and is only ever called on bytes `readPackageTarball` already accepted (a
 * safe, well-formed `.tgz` within the size limits): it still refuses anything unexpected, and its
 * result must list exactly the files `readPackageTarball` listed, so the two parsers cannot
 * disagree about what is in the package.
 * @module
 */

import { KeelError } from "../core/errors.ts";
import type { TarballEntry } from "./tarball.ts";

const BLOCK = 512;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function broken(message: string): KeelError {
  return new KeelError("E_REGISTRY_TARBALL_INVALID", `${message}; nothing was installed`, { details: { reason: "bad-header" } });
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return strictUtf8.decode(end === -1 ? bytes : bytes.subarray(0, end));
}

function octal(bytes: Uint8Array): number {
  if ((bytes[0]! & 0x80) !== 0) {
    let value = 0;
    for (let i = 1; i < bytes.length; i++) value = value * 256 + bytes[i]!;
    return value;
  }
  const text = new TextDecoder().decode(bytes).replace(/[\0 ]+$/, "").trim();
  if (!/^[0-7]*$/.test(text)) throw broken("A tar header has a malformed size");
  return text === "" ? 0 : parseInt(text, 8);
}

function pax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length && data[pos] !== 0) {
    const space = data.indexOf(0x20, pos);
    const length = Number(new TextDecoder().decode(data.subarray(pos, space)));
    if (space < 0 || !Number.isInteger(length) || length <= 0 || pos + length > data.length) throw broken("A pax header is malformed");
    const record = strictUtf8.decode(data.subarray(space + 1, pos + length - 1));
    const eq = record.indexOf("=");
    if (eq > 0) {
      const value = record.slice(eq + 1);
      if (value === "") delete out[record.slice(0, eq)];
      else out[record.slice(0, eq)] = value;
    }
    pos += length;
  }
  return out;
}

/**
 * Every regular file of an (already checked) package tarball, by its path inside the package
 * (without the top folder), in archive order.
 *
 * @param expected What `readPackageTarball` listed; the result must agree with it exactly.
 * @throws {KeelError} `E_REGISTRY_TARBALL_INVALID` when the archive holds anything else, or
 *   disagrees with `expected`.
 */
export async function tarballFiles(gzip: Uint8Array, expected: readonly TarballEntry[]): Promise<Map<string, Uint8Array>> {
  // Safe to inflate whole: readPackageTarball already counted every byte this expands to.
  const source = new Blob([gzip as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream("gzip"));
  const tar = new Uint8Array(await new Response(source).arrayBuffer());
  const files = new Map<string, Uint8Array>();
  let global: Record<string, string> = {};
  let next: Record<string, string> = {};
  let at = 0;
  while (at + BLOCK <= tar.length) {
    const header = tar.subarray(at, at + BLOCK);
    if (header.every((b) => b === 0)) break;
    const type = String.fromCharCode(header[156]!);
    let size = octal(header.subarray(124, 136));
    const dataAt = at + BLOCK;
    const paddedEnd = (size: number) => dataAt + Math.ceil(size / BLOCK) * BLOCK;
    if (type === "x" || type === "g" || type === "L" || type === "K") {
      const data = tar.subarray(dataAt, dataAt + size);
      if (type === "x") next = { ...next, ...pax(data) };
      else if (type === "g") global = { ...global, ...pax(data) };
      else if (type === "L") next = { ...next, path: cString(data) };
      at = paddedEnd(size);
      continue;
    }
    const posix = new TextDecoder().decode(header.subarray(257, 263)) === "ustar\0";
    const prefix = posix ? cString(header.subarray(345, 500)) : "";
    const name = cString(header.subarray(0, 100));
    const raw = next.path ?? global.path ?? (prefix === "" ? name : `${prefix}/${name}`);
    const paxSize = next.size ?? global.size;
    if (paxSize !== undefined) size = Number(paxSize);
    next = {};
    if (type === "5") {
      at = paddedEnd(size);
      continue;
    }
    if (type !== "0" && type !== "\0" && type !== "7") throw broken(`The tarball holds an entry of tar type ${JSON.stringify(type)}`);
    const segments = raw.split("/").filter((s) => s !== "" && s !== ".");
    const path = segments.slice(1).join("/");
    if (segments.some((s) => s === "..") || raw.startsWith("/") || raw.includes("\\") || path === "" || files.has(path)) {
      throw broken(`The tarball holds an unexpected path ${JSON.stringify(raw.slice(0, 200))}`);
    }
    if (dataAt + size > tar.length) throw broken("The tarball is truncated");
    files.set(path, tar.slice(dataAt, dataAt + size));
    at = paddedEnd(size);
  }
  const listed = [...files].map(([path, data]) => `${path}:${data.length}`);
  const wanted = expected.map((e) => `${e.path}:${e.size}`);
  if (listed.length !== wanted.length || listed.some((l, i) => l !== wanted[i])) {
    throw broken("The tarball reads differently on a second pass (its entries are ambiguous)");
  }
  return files;
}

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A digest over a package's files: sha512 of the sorted lines `<path>\0<sha512 hex of its bytes>\n`,
 * as `sha512-<base64>`. The same files give the same digest wherever they lie.
 */
export async function filesDigest(files: ReadonlyMap<string, Uint8Array>): Promise<string> {
  const paths = [...files.keys()].sort();
  const lines: string[] = [];
  for (const path of paths) {
    const digest = await crypto.subtle.digest("SHA-512", files.get(path)! as Uint8Array<ArrayBuffer>);
    lines.push(`${path}\0${hex(digest)}\n`);
  }
  const total = await crypto.subtle.digest("SHA-512", utf8.encode(lines.join("")) as Uint8Array<ArrayBuffer>);
  let binary = "";
  for (const b of new Uint8Array(total)) binary += String.fromCharCode(b);
  return `sha512-${btoa(binary)}`;
}
