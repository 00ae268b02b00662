import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKernel, KeelError, type Kernel, type Runtime, type TrainingContext } from "../../core/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import { fakeTrainingContext } from "../../tests/training-context.ts";
import onnxDefault, { createOnnxPlugin, createOnnxSession, exportOnnx, type OnnxModelSpec, onnxService, type OnnxWeights } from "./mod.ts";

// ---- a seeded generator and a plain float64 reference forward pass, independent of the exporter ----

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SPEC: OnnxModelSpec = {
  format: "keel-sequential/1",
  inputFeatures: 6,
  outputFeatures: 4,
  layers: [
    { type: "dense", name: "dense_0", inFeatures: 6, outFeatures: 16, bias: true },
    { type: "activation", name: "gelu_1", activation: "gelu" },
    { type: "dropout", name: "dropout_2", p: 0.5 },
    { type: "layerNorm", name: "norm_3", features: 16, eps: 1e-5 },
    { type: "dense", name: "dense_4", inFeatures: 16, outFeatures: 12, bias: true },
    { type: "activation", name: "tanh_5", activation: "tanh" },
    { type: "dense", name: "dense_6", inFeatures: 12, outFeatures: 10, bias: false },
    { type: "activation", name: "sigmoid_7", activation: "sigmoid" },
    { type: "dense", name: "dense_8", inFeatures: 10, outFeatures: 8, bias: true },
    { type: "activation", name: "relu_9", activation: "relu" },
    { type: "dense", name: "dense_10", inFeatures: 8, outFeatures: 4, bias: true },
    { type: "activation", name: "softmax_11", activation: "softmax" },
  ],
};

function randomWeights(spec: OnnxModelSpec, seed: number): Record<string, { shape: number[]; data: Float32Array }> {
  const rand = mulberry32(seed);
  const uniform = (n: number, scale: number, shift = 0) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale + shift);
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const l of spec.layers) {
    if (l.type === "dense") {
      out[`${l.name}.weight`] = { shape: [l.inFeatures, l.outFeatures], data: uniform(l.inFeatures * l.outFeatures, 1.5 / Math.sqrt(l.inFeatures)) };
      if (l.bias) out[`${l.name}.bias`] = { shape: [l.outFeatures], data: uniform(l.outFeatures, 0.5) };
    } else if (l.type === "layerNorm") {
      out[`${l.name}.gamma`] = { shape: [l.features], data: uniform(l.features, 0.5, 1) };
      out[`${l.name}.beta`] = { shape: [l.features], data: uniform(l.features, 0.3) };
    }
  }
  return out;
}

function reference(spec: OnnxModelSpec, w: OnnxWeights, x: Float32Array, rows: number): number[][] {
  let h: number[][] = Array.from({ length: rows }, (_, r) => Array.from(x.subarray(r * spec.inputFeatures, (r + 1) * spec.inputFeatures)));
  for (const l of spec.layers) {
    if (l.type === "dense") {
      const W = w[`${l.name}.weight`]!.data;
      const b = l.bias ? w[`${l.name}.bias`]!.data : undefined;
      h = h.map((row) =>
        Array.from({ length: l.outFeatures }, (_, j) => {
          let s = b ? b[j]! : 0;
          for (let i = 0; i < l.inFeatures; i++) s += row[i]! * W[i * l.outFeatures + j]!;
          return s;
        })
      );
    } else if (l.type === "activation") {
      const f = {
        relu: (v: number) => Math.max(0, v),
        tanh: Math.tanh,
        sigmoid: (v: number) => 1 / (1 + Math.exp(-v)),
        gelu: (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
      };
      const act = l.activation;
      if (act === "softmax") {
        h = h.map((row) => {
          const m = Math.max(...row);
          const e = row.map((v) => Math.exp(v - m));
          const s = e.reduce((a, b) => a + b, 0);
          return e.map((v) => v / s);
        });
      } else {
        const fn = f[act];
        h = h.map((row) => row.map((v) => fn(v)));
      }
    } else if (l.type === "layerNorm") {
      const g = w[`${l.name}.gamma`]!.data;
      const be = w[`${l.name}.beta`]!.data;
      h = h.map((row) => {
        const mean = row.reduce((a, b) => a + b, 0) / row.length;
        const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / row.length;
        return row.map((v, i) => ((v - mean) / Math.sqrt(variance + l.eps)) * g[i]! + be[i]!);
      });
    }
  }
  return h;
}

function maxAbsDiff(got: Float32Array, want: number[][]): number {
  const flat = want.flat();
  assert.equal(got.length, flat.length);
  return Math.max(...flat.map((v, i) => Math.abs(v - got[i]!)));
}

function inputs(rows: number, features: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: rows * features }, () => rand() * 4 - 2);
}

// ---- a tiny protobuf walker (schema-free) to look inside the exported bytes ----

type Field = { field: number; wire: number; int?: bigint; bytes?: Uint8Array; f32?: number };

function walk(bytes: Uint8Array): Field[] {
  const out: Field[] = [];
  let at = 0;
  const varint = () => {
    let v = 0n;
    for (let s = 0n; ; s += 7n) {
      const b = bytes[at++]!;
      v |= BigInt(b & 0x7f) << s;
      if (b < 0x80) return v;
    }
  };
  while (at < bytes.length) {
    const key = Number(varint());
    const field = key >> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ field, wire, int: varint() });
    else if (wire === 2) {
      const n = Number(varint());
      out.push({ field, wire, bytes: bytes.subarray(at, at + n) });
      at += n;
    } else if (wire === 5) {
      out.push({ field, wire, f32: new DataView(bytes.buffer, bytes.byteOffset + at, 4).getFloat32(0, true) });
      at += 4;
    } else if (wire === 1) at += 8;
    else throw new Error(`wire ${wire}`);
  }
  assert.equal(at, bytes.length, "the message ends exactly at its last field");
  return out;
}
const text = (b: Uint8Array | undefined) => new TextDecoder().decode(b);
const sub = (fields: Field[], n: number) => fields.filter((f) => f.field === n);

function isCode(code: "E_ONNX_EXPORT" | "E_ONNX_RUN", pattern?: RegExp) {
  return (e: unknown) => {
    assert.ok(KeelError.is(e, code), `expected ${code}, got ${String(e)}`);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

describe("exportOnnx", () => {
  const weights = randomWeights(SPEC, 7);

  test("writes a ModelProto with IR 8, opset 17, producer keel, a dynamic batch and the expected ops", () => {
    const model = walk(exportOnnx(SPEC, weights));
    assert.equal(sub(model, 1)[0]!.int, 8n);
    assert.equal(text(sub(model, 2)[0]!.bytes), "keel");
    const opset = walk(sub(model, 8)[0]!.bytes!);
    assert.deepEqual(opset.map((f) => [f.field, f.int]), [[2, 17n]]);
    const graph = walk(sub(model, 7)[0]!.bytes!);
    const nodes = sub(graph, 1).map((n) => walk(n.bytes!));
    assert.deepEqual(nodes.map((n) => text(sub(n, 4)[0]!.bytes)), [
      "Gemm", "Pow", "Mul", "Add", "Mul", "Tanh", "Add", "Mul", "Mul", // dense_0 + gelu (tanh formula)
      "LayerNormalization", "Gemm", "Tanh", "MatMul", "Sigmoid", "Gemm", "Relu", "Gemm", "Softmax",
    ]);
    assert.equal(text(sub(nodes[0]!, 1)[0]!.bytes), "input");
    assert.deepEqual(sub(nodes.at(-1)!, 2).map((f) => text(f.bytes)), ["output"]);
    const softmaxAxis = walk(sub(nodes.at(-1)!, 5)[0]!.bytes!);
    assert.equal(text(sub(softmaxAxis, 1)[0]!.bytes), "axis");
    assert.equal(BigInt.asIntN(64, sub(softmaxAxis, 3)[0]!.int!), -1n);
    const ln = nodes[9]!;
    const attrs = sub(ln, 5).map((a) => walk(a.bytes!));
    assert.deepEqual(attrs.map((a) => text(sub(a, 1)[0]!.bytes)), ["axis", "epsilon"]);
    assert.ok(Math.abs(sub(attrs[1]!, 2)[0]!.f32! - 1e-5) < 1e-10);
    const inits = sub(graph, 5).map((t) => walk(t.bytes!));
    const dense0 = inits.find((t) => text(sub(t, 8)[0]!.bytes) === "dense_0.weight")!;
    assert.deepEqual(sub(dense0, 1).map((d) => d.int), [6n, 16n]);
    assert.equal(sub(dense0, 2)[0]!.int, 1n);
    const raw = sub(dense0, 9)[0]!.bytes!;
    assert.equal(new DataView(raw.buffer, raw.byteOffset).getFloat32(4, true), weights["dense_0.weight"]!.data[1]);
    // No initializer for dropout; dense_6 has no bias.
    const names = inits.map((t) => text(sub(t, 8)[0]!.bytes));
    assert.ok(!names.some((n) => n.startsWith("dropout_2")));
    assert.ok(!names.includes("dense_6.bias"));
    const input = walk(sub(graph, 11)[0]!.bytes!);
    assert.equal(text(sub(input, 1)[0]!.bytes), "input");
    const tensorType = walk(sub(walk(sub(input, 2)[0]!.bytes!), 1)[0]!.bytes!);
    const dims = sub(walk(sub(tensorType, 2)[0]!.bytes!), 1).map((d) => walk(d.bytes!)[0]!);
    assert.deepEqual([dims[0]!.field, text(dims[0]!.bytes)], [2, "N"]);
    assert.deepEqual([dims[1]!.field, dims[1]!.int], [1, 6n]);
  });

  test("opset 20 uses Gelu(approximate=\"tanh\")", () => {
    const model = walk(exportOnnx(SPEC, weights, { opset: 20 }));
    const graph = walk(sub(model, 7)[0]!.bytes!);
    const ops = sub(graph, 1).map((n) => text(sub(walk(n.bytes!), 4)[0]!.bytes));
    assert.deepEqual(ops.slice(0, 3), ["Gemm", "Gelu", "LayerNormalization"]);
    const gelu = walk(sub(graph, 1)[1]!.bytes!);
    const attr = walk(sub(gelu, 5)[0]!.bytes!);
    assert.deepEqual([text(sub(attr, 1)[0]!.bytes), text(sub(attr, 4)[0]!.bytes)], ["approximate", "tanh"]);
  });

  test("refuses unknown layers, missing weights and shapes that do not fit, with E_ONNX_EXPORT", () => {
    const withLayers = (layers: unknown[], extra: Partial<OnnxModelSpec> = {}) => ({ ...SPEC, ...extra, layers } as OnnxModelSpec);
    const dense = SPEC.layers[0]!;
    assert.throws(() => exportOnnx(withLayers([{ type: "conv2d", name: "c" }]), weights), isCode("E_ONNX_EXPORT", /"c" has type "conv2d"/));
    assert.throws(() => exportOnnx(withLayers([dense, { type: "activation", name: "a", activation: "swish" }]), weights), isCode("E_ONNX_EXPORT", /activation "swish"/));
    const { ["dense_4.bias"]: _, ...missing } = weights;
    assert.throws(() => exportOnnx(SPEC, missing), isCode("E_ONNX_EXPORT", /Weight "dense_4.bias" is missing/));
    assert.throws(
      () => exportOnnx(SPEC, { ...weights, "dense_0.weight": { shape: [16, 6], data: new Float32Array(96) } }),
      isCode("E_ONNX_EXPORT", /"dense_0.weight" has shape \[16, 6\], layer "dense_0" needs \[6, 16\]/),
    );
    assert.throws(
      () => exportOnnx(SPEC, { ...weights, "norm_3.gamma": { shape: [16], data: new Float32Array(3) } }),
      isCode("E_ONNX_EXPORT", /holds 3 values/),
    );
    assert.throws(
      () => exportOnnx(withLayers([{ ...dense, inFeatures: 5 }]), weights),
      isCode("E_ONNX_EXPORT", /takes 5 features but gets 6/),
    );
    assert.throws(() => exportOnnx(withLayers([dense]), weights), isCode("E_ONNX_EXPORT", /end with 16 features but the spec says outputFeatures is 4/));
    assert.throws(() => exportOnnx(withLayers([dense, { ...dense }]), weights), isCode("E_ONNX_EXPORT", /Two layers are named "dense_0"/));
    assert.throws(() => exportOnnx({ format: "other" } as unknown as OnnxModelSpec, weights), isCode("E_ONNX_EXPORT", /keel-sequential\/1/));
    assert.throws(() => exportOnnx(SPEC, weights, { opset: 16 }), RangeError);
    assert.throws(() => exportOnnx(SPEC, weights, { batch: 0 }), RangeError);
  });
});

describe("onnxruntime-web runs the export", () => {
  const weights = randomWeights(SPEC, 11);
  const rows = 9;
  const x = inputs(rows, SPEC.inputFeatures, 3);
  const want = reference(SPEC, weights, x, rows);

  for (const opset of [17, 20]) {
    test(`matches a float64 reference forward pass within 1e-4 (opset ${opset})`, async () => {
      const session = await createOnnxSession(exportOnnx(SPEC, weights, { opset }));
      try {
        assert.deepEqual(session.inputNames, ["input"]);
        assert.deepEqual(session.outputNames, ["output"]);
        const got = await session.run(x, rows);
        const diff = maxAbsDiff(got, want);
        assert.ok(diff < 1e-4, `max abs diff ${diff}`);
        // The model is not trivial: rows differ and probabilities are not uniform.
        assert.ok(Math.abs(got[0]! - got[4]!) > 1e-3 && Math.abs(got[0]! - 0.25) > 1e-3);
        // A single row and a different batch size work too (dynamic batch).
        const one = await session.run(x.subarray(0, 6), 1);
        assert.ok(maxAbsDiff(one, want.slice(0, 1)) < 1e-4);
      } finally {
        await session.close();
      }
    });
  }

  test("each activation alone matches the reference (wide input range)", async () => {
    for (const activation of ["relu", "gelu", "tanh", "sigmoid", "softmax"] as const) {
      const spec: OnnxModelSpec = {
        format: "keel-sequential/1",
        inputFeatures: 5,
        outputFeatures: 5,
        layers: [{ type: "activation", name: "act", activation }],
      };
      const input = Float32Array.from({ length: 20 }, (_, i) => (i - 10) * 0.7);
      const session = await createOnnxSession(exportOnnx(spec, {}));
      const diff = maxAbsDiff(await session.run(input, 4), reference(spec, {}, input, 4));
      await session.close();
      assert.ok(diff < 1e-5, `${activation}: max abs diff ${diff}`);
    }
  });

  test("a model of only dropout is the identity", async () => {
    const spec: OnnxModelSpec = { format: "keel-sequential/1", inputFeatures: 3, outputFeatures: 3, layers: [{ type: "dropout", name: "d", p: 0.2 }] };
    const session = await createOnnxSession(exportOnnx(spec, {}));
    assert.deepEqual([...await session.run(new Float32Array([1, 2, 3]), 1)], [1, 2, 3]);
    await session.close();
  });

  test("errors come back as E_ONNX_RUN", async () => {
    await assert.rejects(createOnnxSession(new Uint8Array([1, 2, 3, 4])), isCode("E_ONNX_RUN", /could not be loaded by onnxruntime-web/));
    const session = await createOnnxSession(exportOnnx(SPEC, weights, { batch: 2 }));
    await assert.rejects(session.run(new Float32Array(5), 2), isCode("E_ONNX_RUN", /Cannot split 5 values into 2 rows/));
    await assert.rejects(session.run(new Float32Array(15), 3), isCode("E_ONNX_RUN", /could not be run by onnxruntime-web/));
    assert.equal((await session.run(x.subarray(0, 12), 2)).length, 8);
    await session.close();
    await assert.rejects(session.run(x.subarray(0, 12), 2), isCode("E_ONNX_RUN", /closed/));
  });
});

describe("onnx plugin", () => {
  let runtime: Runtime;
  let temp: string;
  const kernels: Kernel[] = [];
  before(async () => {
    runtime = await detectRuntime();
    temp = await mkdtemp(join(tmpdir(), "keel-onnx-"));
  });
  after(async () => {
    for (const k of kernels) await k.dispose();
    await rm(temp, { recursive: true, force: true });
  });

  function trainingContext(weights: OnnxWeights): TrainingContext {
    return fakeTrainingContext({
      validationBatches: 0,
      model: { spec: SPEC, getWeights: () => Promise.resolve({ ...weights }), setWeights() {} },
    });
  }

  test("the default plugin asks for nothing and provides the onnx service", async () => {
    assert.deepEqual(onnxDefault.capabilities, []);
    const kernel = await createKernel({ runtime, plugins: [onnxDefault] });
    kernels.push(kernel);
    const onnx = kernel.services.get(onnxService);
    const weights = randomWeights(SPEC, 5);
    const session = await onnx.createSession(onnx.export(SPEC, weights));
    const x = inputs(2, 6, 9);
    assert.ok(maxAbsDiff(await session.run(x, 2), reference(SPEC, weights, x, 2)) < 1e-4);
    await session.close();
  });

  test("exportTo writes the trained model at onTrainingEnd", async () => {
    const path = join(temp, "model.onnx");
    const kernel = await createKernel({ runtime, plugins: [createOnnxPlugin({ exportTo: path })], grants: { onnx: [`write:${path}`] } });
    kernels.push(kernel);
    const weights = randomWeights(SPEC, 21);
    await kernel.callHook("onTrainingEnd", trainingContext(weights));
    const bytes = new Uint8Array(await readFile(path));
    const session = await createOnnxSession(bytes);
    const x = inputs(3, 6, 4);
    assert.ok(maxAbsDiff(await session.run(x, 3), reference(SPEC, weights, x, 3)) < 1e-4);
    await session.close();
  });

  test("a model that cannot be exported fails the hook with E_ONNX_EXPORT, and exportTo needs its grant", async () => {
    const path = join(temp, "bad.onnx");
    const kernel = await createKernel({ runtime, plugins: [createOnnxPlugin({ exportTo: path })], grants: { onnx: [`write:${path}`] } });
    kernels.push(kernel);
    await assert.rejects(kernel.callHook("onTrainingEnd", trainingContext({})), isCode("E_ONNX_EXPORT", /Weight "dense_0.weight" is missing/));
    await assert.rejects(readFile(path));
    await assert.rejects(
      createKernel({ runtime, plugins: [createOnnxPlugin({ exportTo: path })] }),
      (e: unknown) => KeelError.is(e, "E_CAPABILITY_DENIED"),
    );
  });
});
