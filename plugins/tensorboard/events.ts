/**
 * TensorBoard event files, written and read by hand: TFRecord framing with masked CRC32C, and the
 * few protobuf messages scalars need.
 *
 * A record is `uint64 LE length`, `uint32 LE masked CRC32C of those 8 bytes`, the data, and
 * `uint32 LE masked CRC32C of the data`, where mask(crc) = ((crc >>> 15) | (crc << 17)) + 0xa282ead8.
 * Each record's data is an `Event`:
 *
 * ```proto
 * message Event   { double wall_time = 1; int64 step = 2; oneof what { string file_version = 3; Summary summary = 5; } }
 * message Summary { repeated Value value = 1; }
 * message Value   { string tag = 1; float simple_value = 2; }
 * ```
 *
 * Fields at their proto3 default (wall time and step 0, an empty tag) are left out, as protobuf
 * writers do; members of a oneof (`file_version`, `summary`, `simple_value`) are written when set.
 * @module
 */

import { KeelError } from "../../core/mod.ts";

/** One scalar of a summary. */
export interface SummaryValue {
  readonly tag: string;
  /** Stored as a float32 (`simple_value`); absent on values of other kinds when reading. */
  readonly simpleValue?: number;
}

/** An event as written to and read from a tfevents file. */
export interface TensorBoardEvent {
  /** Seconds since the Unix epoch (fractional). */
  readonly wallTime: number;
  readonly step?: number;
  /** Set on the first event of a file: "brain.Event:2". */
  readonly fileVersion?: string;
  readonly summary?: { readonly value: readonly SummaryValue[] };
}

/** What every tfevents file starts with. */
export const FILE_VERSION = "brain.Event:2";

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32C (Castagnoli), as TFRecord uses. `crc32c("123456789") === 0xe3069283`. */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC32C of `bytes`. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const crc = crc32c(bytes);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** Frames `data` as one TFRecord. */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** A protobuf writer for the handful of wire types events need. */
class ProtoWriter {
  readonly #parts: number[] = [];

  varint(value: bigint): this {
    let v = BigInt.asUintN(64, value);
    while (v >= 0x80n) {
      this.#parts.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.#parts.push(Number(v));
    return this;
  }

  tag(field: number, wire: number): this {
    return this.varint(BigInt((field << 3) | wire));
  }

  double(field: number, value: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    this.tag(field, 1);
    this.#parts.push(...b);
    return this;
  }

  float(field: number, value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.tag(field, 5);
    this.#parts.push(...b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, 2).varint(BigInt(value.length));
    for (const b of value) this.#parts.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.#parts);
  }
}

/**
 * Encodes an `Event` message (without framing).
 * @throws {RangeError} for a step that is not a safe integer.
 */
export function encodeEvent(event: TensorBoardEvent): Uint8Array {
  const w = new ProtoWriter();
  if (event.wallTime !== 0) w.double(1, event.wallTime);
  if (event.step !== undefined && event.step !== 0) {
    if (!Number.isSafeInteger(event.step)) throw new RangeError(`An event step must be a safe integer, got ${event.step}`);
    w.tag(2, 0).varint(BigInt(event.step));
  }
  if (event.fileVersion !== undefined) w.string(3, event.fileVersion);
  if (event.summary !== undefined) {
    const summary = new ProtoWriter();
    for (const v of event.summary.value) {
      const value = new ProtoWriter();
      if (v.tag !== "") value.string(1, v.tag);
      // simple_value sits in a oneof, so it is written even when 0 (presence is tracked).
      if (v.simpleValue !== undefined) value.float(2, v.simpleValue);
      summary.bytes(1, value.finish());
    }
    w.bytes(5, summary.finish());
  }
  return w.finish();
}

/** An event file's record for `event`: `frameRecord(encodeEvent(event))`. */
export function encodeEventRecord(event: TensorBoardEvent): Uint8Array {
  return frameRecord(encodeEvent(event));
}

function bad(message: string, offset: number): KeelError {
  return new KeelError("E_TENSORBOARD_RECORD", message, { details: { offset } });
}

/** A protobuf reader over one message; unknown fields are skipped by wire type. */
class ProtoReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #base: number;
  #at = 0;

  constructor(bytes: Uint8Array, base: number) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#base = base;
  }

  get done(): boolean {
    return this.#at >= this.#bytes.length;
  }

  #need(n: number): void {
    if (this.#at + n > this.#bytes.length) throw bad("An event's protobuf is cut short; the file is damaged", this.#base + this.#at);
  }

  varint(): bigint {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      this.#need(1);
      const b = this.#bytes[this.#at++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return BigInt.asUintN(64, result);
    }
    throw bad("An event's protobuf has a varint longer than 10 bytes; the file is damaged", this.#base + this.#at);
  }

  double(): number {
    this.#need(8);
    const v = this.#view.getFloat64(this.#at, true);
    this.#at += 8;
    return v;
  }

  float(): number {
    this.#need(4);
    const v = this.#view.getFloat32(this.#at, true);
    this.#at += 4;
    return v;
  }

  bytes(): Uint8Array {
    const n = Number(this.varint());
    this.#need(n);
    const out = this.#bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  get offset(): number {
    return this.#base + this.#at;
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) (this.#need(8), this.#at += 8);
    else if (wire === 2) this.bytes();
    else if (wire === 5) (this.#need(4), this.#at += 4);
    else throw bad(`An event's protobuf has wire type ${wire}, which events do not use; the file is damaged`, this.#base + this.#at);
  }
}

function decodeValue(bytes: Uint8Array, base: number): SummaryValue {
  const r = new ProtoReader(bytes, base);
  let tag = "";
  let simpleValue: number | undefined;
  while (!r.done) {
    const key = Number(r.varint());
    const field = key >>> 3;
    if (field === 1 && (key & 7) === 2) tag = new TextDecoder().decode(r.bytes());
    else if (field === 2 && (key & 7) === 5) simpleValue = r.float();
    else r.skip(key & 7);
  }
  return simpleValue === undefined ? { tag } : { tag, simpleValue };
}

function decodeEvent(bytes: Uint8Array, base: number): TensorBoardEvent {
  const r = new ProtoReader(bytes, base);
  let wallTime = 0;
  let step = 0;
  let fileVersion: string | undefined;
  let summary: SummaryValue[] | undefined;
  while (!r.done) {
    const key = Number(r.varint());
    const field = key >>> 3;
    const wire = key & 7;
    if (field === 1 && wire === 1) wallTime = r.double();
    else if (field === 2 && wire === 0) step = Number(BigInt.asIntN(64, r.varint()));
    else if (field === 3 && wire === 2) fileVersion = new TextDecoder().decode(r.bytes());
    else if (field === 5 && wire === 2) {
      const at = r.offset;
      const s = new ProtoReader(r.bytes(), at);
      summary ??= [];
      while (!s.done) {
        const k = Number(s.varint());
        if (k >>> 3 === 1 && (k & 7) === 2) {
          const vAt = s.offset;
          summary.push(decodeValue(s.bytes(), vAt));
        } else s.skip(k & 7);
      }
    } else r.skip(wire);
  }
  return {
    wallTime,
    step,
    ...(fileVersion === undefined ? {} : { fileVersion }),
    ...(summary === undefined ? {} : { summary: { value: summary } }),
  };
}

/**
 * Reads every event of a tfevents file, checking both CRCs of every record. Values of kinds other
 * than `simple_value` come back with their tag only.
 * @throws {KeelError} `E_TENSORBOARD_RECORD` for a truncated record, a CRC mismatch or a malformed event.
 */
export function readEvents(bytes: Uint8Array): TensorBoardEvent[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const events: TensorBoardEvent[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 12 > bytes.length) throw bad(`The record at byte ${at} is cut short (its header needs 12 bytes); the file is truncated`, at);
    if (view.getUint32(at + 8, true) !== maskedCrc32c(bytes.subarray(at, at + 8))) {
      throw bad(`The length CRC of the record at byte ${at} does not match; the file is damaged`, at);
    }
    const length = view.getBigUint64(at, true);
    if (length > BigInt(bytes.length - at - 16)) {
      throw bad(`The record at byte ${at} claims ${length} bytes but the file ends first; the file is truncated`, at);
    }
    const n = Number(length);
    const data = bytes.subarray(at + 12, at + 12 + n);
    if (view.getUint32(at + 12 + n, true) !== maskedCrc32c(data)) {
      throw bad(`The data CRC of the record at byte ${at} does not match; the file is damaged`, at);
    }
    events.push(decodeEvent(data, at + 12));
    at += 16 + n;
  }
  return events;
}
