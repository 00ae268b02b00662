import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../../core/mod.ts";
import type { Backend, Tensor } from "./backend.ts";
import { createCpuBackend } from "./cpu/mod.ts";
import { getLoss } from "./losses.ts";
import { dense, dropout, gelu, layerNorm, type Model, modelFromSpec, relu, sequential, sigmoid, softmax, tanh } from "./model.ts";
import { adam } from "./optimizers.ts";
import { createRng } from "./rng.ts";

function throwsCode(fn: () => unknown, code: "E_TRAIN_SHAPE" | "E_TRAIN_CONFIG" | "E_TRAIN_CHECKPOINT", ...mentions: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(KeelError.is(e), `expected a KeelError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const m of mentions) assert.ok(e.message.includes(m), `message ${JSON.stringify(e.message)} should mention ${m}`);
    assert.match(e.message, /^[A-Z]/);
    assert.doesNotMatch(e.message, /\.$/);
    return true;
  });
}

describe("sequential: building and validation", () => {
  test("a dense layer that does not fit names both layers and both sizes", () => {
    throwsCode(
      () => sequential([dense(784, 256), relu(), dense(128, 10)]),
      "E_TRAIN_SHAPE",
      'Layer "dense_2" expects 128 input features but layer "dense_0" gives 256',
    );
    throwsCode(() => sequential([dense(10, 4, { name: "enc" }), layerNorm(5, { name: "norm" })]), "E_TRAIN_SHAPE", '"norm"', '"enc"', "5", "4");
    throwsCode(() => sequential([dense(10, 4)], { inputFeatures: 12 }), "E_TRAIN_SHAPE", '"dense_0" expects 10', "the input gives 12");
  });

  test("empty models, unknown input sizes and bad sizes are E_TRAIN_SHAPE", () => {
    throwsCode(() => sequential([]), "E_TRAIN_SHAPE", "at least one layer");
    throwsCode(() => sequential([relu(), dense(3, 2)]), "E_TRAIN_SHAPE", '"relu_0"', "inputFeatures");
    throwsCode(() => sequential([dropout(0.1)]), "E_TRAIN_SHAPE", '"dropout_0"');
    throwsCode(() => sequential([dense(0, 3)]), "E_TRAIN_SHAPE", '"dense_0"', "positive integer");
    throwsCode(() => sequential([dense(3, 2.5)]), "E_TRAIN_SHAPE", '"dense_0"', "2.5");
    throwsCode(() => sequential([dense(3, 4), layerNorm(-4)]), "E_TRAIN_SHAPE", '"layerNorm_1"');
    throwsCode(() => sequential([relu()], { inputFeatures: 0 }), "E_TRAIN_SHAPE", "inputFeatures");
  });

  test("softmax anywhere but last, and duplicate names, are refused", () => {
    throwsCode(() => sequential([dense(4, 3), softmax(), dense(3, 2)]), "E_TRAIN_SHAPE", '"softmax_1"', "last");
    throwsCode(() => sequential([dense(4, 3, { name: "a" }), relu({ name: "a" })]), "E_TRAIN_CONFIG", '"a"');
  });

  test("dropout and layerNorm check their arguments", () => {
    assert.throws(() => dropout(1), RangeError);
    assert.throws(() => dropout(-0.1), RangeError);
    assert.throws(() => dropout(NaN), RangeError);
    assert.throws(() => layerNorm(4, { eps: 0 }), RangeError);
  });

  test("names default to type_index; the spec describes the model", () => {
    const m = sequential([dense(6, 5), relu(), dropout(0.2), layerNorm(5), dense(5, 3, { bias: false }), softmax()]);
    assert.deepEqual(m.spec.layers.map((l) => l.name), ["dense_0", "relu_1", "dropout_2", "layerNorm_3", "dense_4", "softmax_5"]);
    assert.equal(m.spec.format, "keel-sequential/1");
    assert.equal(m.spec.inputFeatures, 6);
    assert.equal(m.spec.outputFeatures, 3);
    assert.deepEqual(m.spec.layers[3], { type: "layerNorm", name: "layerNorm_3", features: 5, eps: 1e-5 });
    assert.equal(m.parameterCount, 6 * 5 + 5 + 5 + 5 + 5 * 3);
    const g = sequential([gelu(), tanh(), sigmoid()], { inputFeatures: 3 });
    assert.deepEqual(g.spec.layers.map((l) => l.name), ["gelu_0", "tanh_1", "sigmoid_2"]);
    assert.equal(g.parameterCount, 0);
    assert.deepEqual(modelFromSpec(JSON.parse(JSON.stringify(m.spec))).spec, m.spec);
  });
});

describe("weights", () => {
  test("init is deterministic: the same seed gives identical weights, another seed different ones", async () => {
    const make = () => sequential([dense(20, 30), relu(), dense(30, 4), layerNorm(4)]);
    const a = make();
    const b = make();
    assert.equal(a.initialized, false);
    a.init(42);
    b.init(42);
    assert.equal(a.initialized, true);
    const wa = await a.getWeights();
    const wb = await b.getWeights();
    assert.deepEqual(wa, wb);
    b.init(43);
    assert.notDeepEqual((await b.getWeights())["dense_0.weight"]!.data, wa["dense_0.weight"]!.data);
    assert.deepEqual(Object.keys(wa), ["dense_0.weight", "dense_0.bias", "dense_2.weight", "dense_2.bias", "layerNorm_3.gamma", "layerNorm_3.beta"]);
    assert.deepEqual(wa["dense_0.weight"]!.shape, [20, 30]);
    // He uniform before relu, Xavier uniform otherwise; biases 0; gamma 1, beta 0.
    const he = Math.sqrt(6 / 20);
    const xavier = Math.sqrt(6 / 34);
    const w0 = wa["dense_0.weight"]!.data;
    const w2 = wa["dense_2.weight"]!.data;
    assert.ok(w0.every((v) => Math.abs(v) <= he) && Math.max(...w0.map(Math.abs)) > 0.9 * he);
    assert.ok(w2.every((v) => Math.abs(v) <= xavier) && Math.max(...w2.map(Math.abs)) > 0.9 * xavier);
    assert.ok(wa["dense_0.bias"]!.data.every((v) => v === 0));
    assert.ok(wa["layerNorm_3.gamma"]!.data.every((v) => v === 1));
    // an explicit init overrides the rule
    const x = sequential([dense(20, 30, { init: "xavier" }), relu()]);
    x.init(42);
    const wx = (await x.getWeights())["dense_0.weight"]!.data;
    assert.ok(wx.every((v) => Math.abs(v) <= Math.sqrt(6 / 50)));
  });

  test("getWeights before init or setWeights is E_TRAIN_CONFIG; bind too", async () => {
    const m = sequential([dense(2, 2)]);
    await assert.rejects(m.getWeights(), (e: unknown) => KeelError.is(e, "E_TRAIN_CONFIG"));
    const be = await createCpuBackend();
    throwsCode(() => m.bind(be), "E_TRAIN_CONFIG", "init");
    be.destroy();
  });

  test("setWeights/getWeights round trip, on the host and through a bound backend", async () => {
    const m = sequential([dense(3, 2), tanh(), layerNorm(2)]);
    m.init(1);
    const w = await m.getWeights();
    const changed: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
    for (const [k, v] of Object.entries(w)) changed[k] = { shape: v.shape, data: v.data.map((x, i) => x + i + 1) };
    m.setWeights(changed);
    assert.deepEqual(await m.getWeights(), changed);
    const be = await createCpuBackend();
    const bound = m.bind(be);
    assert.deepEqual(await be.read(bound.params[0]!.param), changed["dense_0.weight"]!.data);
    m.setWeights(w); // writes through to the bound backend
    assert.deepEqual(await be.read(bound.params[0]!.param), w["dense_0.weight"]!.data);
    be.write(bound.params[1]!.param, new Float32Array([7, 8]));
    assert.deepEqual([...(await m.getWeights())["dense_0.bias"]!.data], [7, 8]);
    assert.equal(m.bind(be), bound, "binding again to the same backend returns the live binding");
    const other = await createCpuBackend();
    throwsCode(() => m.bind(other), "E_TRAIN_CONFIG", "unbind");
    await m.unbind();
    assert.equal(m.bound, undefined);
    assert.deepEqual([...(await m.getWeights())["dense_0.bias"]!.data], [7, 8], "unbind keeps the trained weights");
    other.destroy();
    be.destroy();
  });

  test("setWeights names the missing, unknown or mis-shaped weight", async () => {
    const m = sequential([dense(3, 2), layerNorm(2)]);
    m.init(1);
    const w = await m.getWeights();
    const { ["layerNorm_1.beta"]: _beta, ...missing } = w;
    throwsCode(() => m.setWeights(missing), "E_TRAIN_CHECKPOINT", '"layerNorm_1.beta"', "missing");
    throwsCode(() => m.setWeights({ ...w, "dense_9.weight": { shape: [1], data: new Float32Array(1) } }), "E_TRAIN_CHECKPOINT", '"dense_9.weight"');
    throwsCode(() => m.setWeights({ ...w, "dense_0.weight": { shape: [2, 3], data: new Float32Array(6) } }), "E_TRAIN_CHECKPOINT", '"dense_0.weight"', "[3, 2]");
    throwsCode(() => m.setWeights({ ...w, "dense_0.bias": { shape: [2], data: new Float32Array(3) } }), "E_TRAIN_CHECKPOINT", '"dense_0.bias"');
    assert.deepEqual(await m.getWeights(), w, "a failed setWeights changes nothing");
  });
});

describe("forward, backward and training on the CPU backend", () => {
  let be: Backend;
  before(async () => {
    be = await createCpuBackend();
  });
  after(() => be.destroy());

  test("predict: unbound and bound agree, batches agree, a final softmax is kept", async () => {
    const m = sequential([dense(4, 8), gelu(), dropout(0.5), dense(8, 3), softmax()]);
    m.init(3);
    const x = new Float32Array(Array.from({ length: 4 * 7 }, (_, i) => Math.sin(i)));
    const unbound = await m.predict(x);
    assert.equal(unbound.length, 7 * 3);
    for (let r = 0; r < 7; r++) {
      const s = unbound[r * 3]! + unbound[r * 3 + 1]! + unbound[r * 3 + 2]!;
      assert.ok(Math.abs(s - 1) < 1e-5, `row ${r} sums to ${s}`);
    }
    assert.deepEqual(await m.predict(x, { batchSize: 3 }), unbound);
    m.bind(be);
    assert.deepEqual(await m.predict(x), unbound);
    await assert.rejects(m.predict(new Float32Array(5)), (e: unknown) => KeelError.is(e, "E_TRAIN_SHAPE"));
    await m.unbind();
  });

  test("logits: true skips a final softmax; backward through it is refused; short batches work", async () => {
    const m = sequential([dense(2, 3), softmax()]);
    m.init(1);
    const b = m.bind(be);
    const x = be.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
    const logits = await be.read(b.forward(x, { training: true, seed: 1, logits: true }));
    const w = await m.getWeights();
    const W = w["dense_0.weight"]!.data;
    assert.ok(Math.abs(logits[0]! - (1 * W[0]! + 2 * W[3]!)) < 1e-6);
    const probs = await be.read(b.forward(x, { training: false, seed: 1 }));
    assert.ok(Math.abs(probs[0]! + probs[1]! + probs[2]! - 1) < 1e-6);
    throwsCode(() => b.backward(be.zeros([2, 3])), "E_TRAIN_CONFIG", '"softmax_1"', "logits: true");
    const x1 = be.tensor(new Float32Array([1, 2]), [1, 2]);
    const y1 = b.forward(x1, { training: true, seed: 1, logits: true });
    assert.deepEqual([...y1.shape], [1, 3]);
    b.backward(be.zeros([1, 3]));
    throwsCode(() => b.forward(be.zeros([2, 5]), { training: false, seed: 0 }), "E_TRAIN_SHAPE", "[rows, 2]");
    await m.unbind();
  });

  test("backward writes gradients (=, not +=) and dropout uses the seed", async () => {
    const m = sequential([dense(3, 4), relu(), dropout(0.5), layerNorm(4), dense(4, 2)]);
    m.init(5);
    const b = m.bind(be);
    const x = be.tensor(new Float32Array([0.1, -0.2, 0.3, 1, 2, 3, -1, 0.5, 0.25]), [3, 3]);
    const d = be.tensor(new Float32Array([1, -1, 0.5, 0.5, -0.2, 0.3]), [3, 2]);
    b.forward(x, { training: true, seed: 9 });
    b.backward(d);
    const once = await Promise.all(b.params.map((p) => be.read(p.grad)));
    b.forward(x, { training: true, seed: 9 });
    b.backward(d);
    const twice = await Promise.all(b.params.map((p) => be.read(p.grad)));
    assert.deepEqual(twice, once);
    const y9 = await be.read(b.forward(x, { training: true, seed: 9 }));
    const y10 = await be.read(b.forward(x, { training: true, seed: 10 }));
    assert.notDeepEqual(y9, y10);
    await m.unbind();
  });

  test("a small separable 2-class problem: loss falls and accuracy passes 0.95 in 200 Adam steps", async () => {
    const rows = 128;
    const rng = createRng(7);
    const xs = new Float32Array(rows * 2);
    const ys = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      const label = r % 2;
      ys[r] = label;
      xs[r * 2] = (label ? 1 : -1) + rng.normal() * 0.4;
      xs[r * 2 + 1] = (label ? -1 : 1) + rng.normal() * 0.4;
    }
    const m = sequential([dense(2, 16), relu(), dropout(0.1), dense(16, 2)]);
    m.init(1);
    const b = m.bind(be);
    const opt = adam({ lr: 0.01 }).bind(be, b.params);
    const loss = getLoss("cross-entropy");
    const x = be.tensor(xs, [rows, 2]);
    const y = be.tensor(ys, [rows]);
    const dOut = be.zeros([rows, 2]);
    const lossSum = be.zeros([1]);
    const losses: number[] = [];
    for (let step = 0; step < 200; step++) {
      be.fill0(lossSum);
      const out = b.forward(x, { training: true, seed: step });
      loss.apply(be, out, y, dOut, lossSum);
      b.backward(dOut);
      opt.step();
      losses.push((await be.read(lossSum))[0]! / rows);
    }
    assert.ok(losses[0]! > 0.3, `initial loss ${losses[0]}`);
    assert.ok(losses.at(-1)! < losses[0]! * 0.2, `loss fell from ${losses[0]} to ${losses.at(-1)}`);
    const probs = await m.predict(xs);
    let correct = 0;
    for (let r = 0; r < rows; r++) if ((probs[r * 2 + 1]! > probs[r * 2]! ? 1 : 0) === ys[r]) correct++;
    assert.ok(correct / rows > 0.95, `accuracy ${correct / rows}`);
    opt.dispose();
    await m.unbind();
  });
});

// Gradient check: central differences of the f32 forward + loss against backward(). With
// h = 1e-3 the f32 rounding error of (L(θ+h) − L(θ−h)) / 2h is about 2⁻²⁴ · L / h ≈ 1e-4 and
// the truncation error h² · L''' / 6 stays under 1e-3 even where layer norm is sharply curved
// (h = 1e-2 is 2% off there), so the tolerance is |fd − grad| ≤ 1e-3 + 1e-2 · |grad|.
describe("gradient check (finite differences) of dense → gelu → layerNorm → dense", () => {
  let be: Backend;
  before(async () => {
    be = await createCpuBackend();
  });
  after(() => be.destroy());

  async function check(lossName: "mse" | "cross-entropy", target: Tensor, m: Model): Promise<void> {
    const rows = 6;
    const loss = getLoss(lossName);
    const b = m.bind(be);
    const rng = createRng(11);
    const x = be.tensor(Float32Array.from({ length: rows * 4 }, () => rng.normal()), [rows, 4]);
    const dOut = be.zeros([rows, 3]);
    const lossSum = be.zeros([1]);
    const L = async (): Promise<number> => {
      be.fill0(lossSum);
      loss.apply(be, b.forward(x, { training: true, seed: 0 }), target, dOut, lossSum);
      const s = (await be.read(lossSum))[0]!;
      return lossName === "mse" ? s / (rows * 3) : s / rows;
    };
    await L();
    b.backward(dOut);
    let checked = 0;
    for (const p of b.params) {
      const grad = await be.read(p.grad);
      const values = Float32Array.from(await be.read(p.param));
      for (let i = 0; i < values.length; i++) {
        const keep = values[i]!;
        const h = 1e-3;
        values[i] = keep + h;
        be.write(p.param, values);
        const up = await L();
        values[i] = keep - h;
        be.write(p.param, values);
        const down = await L();
        values[i] = keep;
        be.write(p.param, values);
        const fd = (up - down) / (2 * h);
        assert.ok(Math.abs(fd - grad[i]!) <= 1e-3 + 1e-2 * Math.abs(grad[i]!), `${lossName} ${p.name}[${i}]: finite difference ${fd}, backward ${grad[i]}`);
        checked++;
      }
    }
    assert.equal(checked, m.parameterCount);
    await m.unbind();
  }

  const make = () => {
    const m = sequential([dense(4, 5), gelu(), layerNorm(5), dense(5, 3)]);
    m.init(21);
    return m;
  };

  test("with mse", async () => {
    const rng = createRng(12);
    await check("mse", be.tensor(Float32Array.from({ length: 18 }, () => rng.normal()), [6, 3]), make());
  });

  test("with cross-entropy", async () => {
    await check("cross-entropy", be.tensor(new Int32Array([0, 1, 2, 2, 1, 0]), [6]), make());
  });
});
