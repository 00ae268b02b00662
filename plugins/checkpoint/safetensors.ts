/**
 * The safetensors file format (https://github.com/huggingface/safetensors), F32 only:
 * an 8-byte little-endian header length N, N bytes of JSON header
 * (`{"__metadata__":{...},"name":{"dtype":"F32","shape":[...],"data_offsets":[begin,end]},...}`,
 * padded with spaces to a multiple of 8 bytes), then the tensors' bytes, little-endian, in the
 * order of their offsets. Writing follows the Rust library byte for byte (metadata first, tensors
 * sorted by name, compact JSON), so a file written here equals the one Python's
 * `safetensors.numpy.save_file` writes for the same float32 arrays.
 * @module
 */

import { KeelError } from "../../core/mod.ts";

/** One tensor: its shape and its values, row-major. */
export interface SafetensorsTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** What {@link decodeSafetensors} returns. */
export interface DecodedSafetensors {
  readonly tensors: Record<string, SafetensorsTensor>;
  /** The `__metadata__` string map; empty when the file has none. */
  readonly metadata: Record<string, string>;
}

/** The largest header accepted, as in the Rust library (100 MB). */
const MAX_HEADER = 100_000_000;

/** dtypes the format defines; only F32 is read, the others are refused by name. */
const KNOWN_DTYPES = new Set([
  "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64",
]);

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Encodes float32 tensors (and an optional string map of metadata) as a safetensors file.
 * @throws {RangeError} for a tensor whose data length differs from the product of its shape, or a
 * dimension that is not a non-negative integer.
 */
export function encodeSafetensors(
  tensors: Readonly<Record<string, SafetensorsTensor>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const names = Object.keys(tensors).sort(byCodeUnit);
  const header: [string, unknown][] = [];
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new TypeError(`Safetensors metadata "${k}" must be a string`);
    }
    header.push(["__metadata__", metadata]);
  }
  let offset = 0;
  for (const name of names) {
    if (name === "__metadata__") throw new RangeError('A tensor may not be named "__metadata__"');
    const t = tensors[name]!;
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new RangeError(`Tensor "${name}" has shape [${t.shape.join(", ")}]; dimensions must be non-negative integers`);
    }
    const count = elementCount(t.shape);
    if (count !== t.data.length) {
      throw new RangeError(`Tensor "${name}" has shape [${t.shape.join(", ")}] (${count} values) but ${t.data.length} values`);
    }
    header.push([name, { dtype: "F32", shape: [...t.shape], data_offsets: [offset, offset + count * 4] }]);
    offset += count * 4;
  }
  // Built by hand: an object would move integer-like names ("0") before "__metadata__".
  const json = new TextEncoder().encode(`{${header.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`);
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  let at = 8 + padded;
  const view = new DataView(out.buffer);
  for (const name of names) {
    const data = tensors[name]!.data;
    for (let i = 0; i < data.length; i++, at += 4) view.setFloat32(at, data[i]!, true);
  }
  return out;
}

function corrupt(message: string, details: Record<string, unknown> = {}): KeelError {
  return new KeelError("E_TRAIN_CHECKPOINT", message, { details });
}

function isDims(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((d) => Number.isSafeInteger(d) && d >= 0);
}

/**
 * Decodes a safetensors file holding F32 tensors, checking everything: the header length, the
 * JSON, each entry's dtype, shape and offsets (in range, matching the shape, contiguous, no
 * overlap, covering the whole data section), and the metadata map.
 * @throws {KeelError} `E_TRAIN_CHECKPOINT` for any malformed file, or a dtype other than F32.
 */
export function decodeSafetensors(bytes: Uint8Array): DecodedSafetensors {
  if (bytes.length < 8) throw corrupt(`A safetensors file needs at least 8 bytes, this one has ${bytes.length}; the file is truncated`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8) || n > BigInt(MAX_HEADER)) {
    throw corrupt(`The safetensors header claims ${n} bytes but the file has ${bytes.length - 8} after the length; the file is truncated or not safetensors`);
  }
  const headerLength = Number(n);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLength)));
  } catch (e) {
    throw corrupt(`The safetensors header is not valid UTF-8 JSON (${e instanceof Error ? e.message : String(e)}); the file is damaged`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw corrupt("The safetensors header is not a JSON object; the file is damaged or not safetensors");
  }
  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const metadata: [string, string][] = [];
  const entries: { name: string; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw corrupt('The safetensors "__metadata__" is not an object of strings');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== "string") throw corrupt(`The safetensors metadata "${k}" is not a string`);
        metadata.push([k, v]);
      }
      continue;
    }
    if (typeof raw !== "object" || raw === null) throw corrupt(`Tensor "${name}" in the safetensors header is not an object`, { tensor: name });
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info.dtype !== "string" || !KNOWN_DTYPES.has(info.dtype)) {
      throw corrupt(`Tensor "${name}" has unknown dtype ${JSON.stringify(info.dtype)}; the file is damaged`, { tensor: name });
    }
    if (info.dtype !== "F32") {
      throw corrupt(`Tensor "${name}" is ${info.dtype}; Keel reads only F32 safetensors, so convert it to float32 first`, { tensor: name });
    }
    if (!isDims(info.shape)) throw corrupt(`Tensor "${name}" has a malformed shape ${JSON.stringify(info.shape)}`, { tensor: name });
    const offsets = info.data_offsets;
    if (!isDims(offsets) || offsets.length !== 2 || offsets[0]! > offsets[1]!) {
      throw corrupt(`Tensor "${name}" has malformed data_offsets ${JSON.stringify(offsets)}`, { tensor: name });
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) {
      throw corrupt(`Tensor "${name}" ends at byte ${end} but the data section has ${dataLength}; the file is truncated`, { tensor: name });
    }
    if (end - begin !== elementCount(info.shape) * 4) {
      throw corrupt(`Tensor "${name}" spans ${end - begin} bytes but shape [${info.shape.join(", ")}] needs ${elementCount(info.shape) * 4}`, { tensor: name });
    }
    entries.push({ name, shape: info.shape, begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  for (const e of entries) {
    if (e.begin !== expected) {
      throw corrupt(
        e.begin < expected
          ? `Tensor "${e.name}" overlaps the tensor before it; the file is damaged`
          : `There is a gap before tensor "${e.name}" in the data section; the file is damaged`,
        { tensor: e.name },
      );
    }
    expected = e.end;
  }
  if (expected !== dataLength) {
    throw corrupt(`The data section has ${dataLength} bytes but the tensors cover ${expected}; the file is damaged`);
  }
  // fromEntries defines own properties, so a tensor named "__proto__" stays a tensor.
  const tensors: Record<string, SafetensorsTensor> = Object.fromEntries(entries.map((e) => {
    const count = (e.end - e.begin) / 4;
    const data = new Float32Array(count);
    const at = dataStart + e.begin;
    for (let i = 0; i < count; i++) data[i] = view.getFloat32(at + i * 4, true);
    return [e.name, { shape: e.shape, data }];
  }));
  return { tensors, metadata: Object.fromEntries(metadata) };
}
