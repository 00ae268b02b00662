/**
 * A minimal protobuf writer for the ONNX messages this plugin writes. Private to the folder.
 * @module
 */

/** Protobuf wire types. */
export const WIRE = { varint: 0, i64: 1, len: 2, i32: 5 } as const;

/** Builds one message; nested messages are built with their own writer and added as bytes. */
export class ProtoWriter {
  readonly #chunks: Uint8Array[] = [];
  #small: number[] = [];
  #length = 0;

  #flushSmall(): void {
    if (this.#small.length) {
      this.#chunks.push(Uint8Array.from(this.#small));
      this.#small = [];
    }
  }

  #byte(b: number): void {
    this.#small.push(b);
    this.#length++;
  }

  #raw(bytes: Uint8Array): void {
    if (bytes.length < 64) {
      for (const b of bytes) this.#byte(b);
      return;
    }
    this.#flushSmall();
    this.#chunks.push(bytes);
    this.#length += bytes.length;
  }

  #varint(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    while (v >= 0x80n) {
      this.#byte(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.#byte(Number(v));
  }

  #tag(field: number, wire: number): void {
    this.#varint(BigInt(field * 8 + wire));
  }

  /** An int32/int64/enum field. */
  int(field: number, value: number | bigint): this {
    this.#tag(field, WIRE.varint);
    this.#varint(BigInt(value));
    return this;
  }

  /** A float (fixed32) field. */
  float(field: number, value: number): this {
    this.#tag(field, WIRE.i32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.#raw(b);
    return this;
  }

  /** A bytes or embedded-message field. */
  bytes(field: number, value: Uint8Array): this {
    this.#tag(field, WIRE.len);
    this.#varint(BigInt(value.length));
    this.#raw(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, value: ProtoWriter): this {
    return this.bytes(field, value.finish());
  }

  finish(): Uint8Array {
    this.#flushSmall();
    const out = new Uint8Array(this.#length);
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}
