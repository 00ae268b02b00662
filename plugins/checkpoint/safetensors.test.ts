import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { KeelError } from "../../core/mod.ts";
import { decodeSafetensors, encodeSafetensors } from "./safetensors.ts";

/**
 * `fixtures/small.safetensors`, written byte by byte from the format's spec (8-byte LE header
 * length 0x90 = 144, the compact JSON header padded with 3 spaces to a multiple of 8, then
 * float32 LE data) — what `safetensors.numpy.save_file({"a": [1, -2.5], "b": [[0.5]]},
 * metadata={"format": "pt"})` writes for float32 arrays.
 */
const SMALL_HEX = "9000000000000000" +
  "7b225f5f6d657461646174615f5f223a7b22666f726d6174223a227074227d2c2261223a7b226474797065223a22463332222c227368617065223a5b325d2c22646174615f6f666673657473223a5b302c385d7d2c2262223a7b226474797065223a22463332222c227368617065223a5b312c315d2c22646174615f6f666673657473223a5b382c31325d7d7d" +
  "202020" + "0000803f" + "000020c0" + "0000003f";

function hex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g)!.map((b) => parseInt(b, 16)));
}

/** A file with `header` (JSON text, unpadded) and `data`. */
function build(header: string, data: Uint8Array = new Uint8Array(0), claimed?: number): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(claimed ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function rejects(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(() => decodeSafetensors(bytes), (e: unknown) => {
    assert.ok(KeelError.is(e, "E_TRAIN_CHECKPOINT"), String(e));
    assert.match(e.message, pattern);
    return true;
  });
}

describe("safetensors", () => {
  test("the fixture file is the spec's bytes", async () => {
    const file = new Uint8Array(await readFile(new URL("./fixtures/small.safetensors", import.meta.url)));
    assert.deepEqual(file, hex(SMALL_HEX));
  });

  test("decodes a file built from the spec", () => {
    const { tensors, metadata } = decodeSafetensors(hex(SMALL_HEX));
    assert.deepEqual(metadata, { format: "pt" });
    assert.deepEqual(Object.keys(tensors).sort(), ["a", "b"]);
    assert.deepEqual(tensors.a!.shape, [2]);
    assert.deepEqual([...tensors.a!.data], [1, -2.5]);
    assert.deepEqual(tensors.b!.shape, [1, 1]);
    assert.deepEqual([...tensors.b!.data], [0.5]);
  });

  test("encodes byte for byte what the reference library writes (names sorted, metadata first, space padding)", () => {
    const bytes = encodeSafetensors(
      { b: { shape: [1, 1], data: new Float32Array([0.5]) }, a: { shape: [2], data: new Float32Array([1, -2.5]) } },
      { format: "pt" },
    );
    assert.deepEqual(bytes, hex(SMALL_HEX));
  });

  test("the header length is a multiple of 8 and data follows it", () => {
    for (const name of ["x", "xy", "xyz", "wxyz", "vwxyz"]) {
      const bytes = encodeSafetensors({ [name]: { shape: [3], data: new Float32Array([1, 2, 3]) } });
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      assert.equal(n % 8, 0);
      assert.equal(bytes.length, 8 + n + 12);
    }
  });

  test("round-trips empty files, empty tensors, odd names and special floats", () => {
    assert.deepEqual(decodeSafetensors(encodeSafetensors({})), { tensors: {}, metadata: {} });
    const data = new Float32Array([NaN, Infinity, -Infinity, -0, 1e-45, 3.4028234663852886e38]);
    const src = Object.fromEntries([
      ["__proto__", { shape: [2, 3], data }],
      ["0", { shape: [0], data: new Float32Array(0) }],
      ["layer/é.weight", { shape: [1], data: new Float32Array([7]) }],
    ]);
    const out = decodeSafetensors(encodeSafetensors(src, { "keel.epoch": "3" }));
    assert.deepEqual(out.metadata, { "keel.epoch": "3" });
    assert.deepEqual(Object.keys(out.tensors).sort(), ["0", "__proto__", "layer/é.weight"]);
    assert.deepEqual(Object.getPrototypeOf(out.tensors), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(out.tensors, "__proto__")!.value.shape, [2, 3]);
    assert.ok(Object.is(Object.getOwnPropertyDescriptor(out.tensors, "__proto__")!.value.data[3], -0));
    assert.deepEqual([...Object.getOwnPropertyDescriptor(out.tensors, "__proto__")!.value.data], [...data]);
    assert.equal(out.tensors["0"]!.data.length, 0);
  });

  test("refuses a tensor whose data does not fit its shape", () => {
    assert.throws(() => encodeSafetensors({ a: { shape: [2, 2], data: new Float32Array(3) } }), RangeError);
    assert.throws(() => encodeSafetensors({ a: { shape: [-1], data: new Float32Array(0) } }), RangeError);
  });

  test("rejects files shorter than the length field", () => {
    rejects(new Uint8Array(5), /truncated/);
  });

  test("rejects a header length beyond the file", () => {
    rejects(build("{}", new Uint8Array(0), 1000), /claims 1000 bytes/);
    const truncated = hex(SMALL_HEX).subarray(0, 100);
    rejects(truncated, /truncated/);
  });

  test("rejects a header that is not JSON or not an object", () => {
    rejects(build("{not json"), /not valid UTF-8 JSON/);
    rejects(build("[1,2]"), /not a JSON object/);
    rejects(build('"x"'), /not a JSON object/);
  });

  test("rejects unknown and unsupported dtypes", () => {
    rejects(build('{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)), /unknown dtype "F33"/);
    rejects(build('{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}', new Uint8Array(8)), /F64.*only F32/);
  });

  test("rejects offsets out of range, not matching the shape, overlapping or leaving gaps", () => {
    rejects(build('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(4)), /ends at byte 8.*truncated/);
    rejects(build('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', new Uint8Array(8)), /spans 8 bytes.*needs 12/);
    rejects(build('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Uint8Array(8)), /overlaps/);
    rejects(build('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Uint8Array(8)), /gap/);
    rejects(build('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(8)), /has 8 bytes but the tensors cover 4/);
    rejects(build('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', new Uint8Array(4)), /malformed data_offsets/);
    rejects(build('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', new Uint8Array(4)), /malformed shape/);
  });

  test("rejects metadata that is not a string map", () => {
    rejects(build('{"__metadata__":{"a":1}}'), /metadata "a" is not a string/);
    rejects(build('{"__metadata__":[]}'), /not an object of strings/);
  });
});
