// Tolerances: matmul |out − ref| ≤ 1e-4·Σ_p|a_ip·b_pj| + 1e-6; bias/relu/mul/copy 1e-6 + 1e-6·|ref|;
// gelu/tanh/sigmoid/softmax/layer norm/cross-entropy gradients 2e-5 + 1e-4·|ref|; reductions to one
// number 1e-5 + 1e-4·|ref|; SGD/Adam/AdamW after 3 steps 1e-6 + 1e-5·|ref|; dropout masks and
// integer ops exact. Reasons are in the module comment below.

/**
 * The trainer Backend conformance suite: every backend's test calls
 * `testBackend(name, make)`, and each op of {@link Backend} is checked against a naive reference
 * written here in plain JS with f64 accumulation, on odd shapes (so tiling edges are hit).
 *
 * Tolerances (what a backend computing in f32, in any summation order, with or without FMA, must
 * meet; `ref` is the f64 reference, `|·|` is absolute value):
 * - matmul: |out − ref| ≤ 1e-4 · Σ_p |a_ip · b_pj| + 1e-6 per element (the f32 dot-product error
 *   bound k · 2⁻²⁴ · Σ|ab| with headroom up to k ≈ 1,600, whatever the summation order).
 * - bias add, relu, mul, copy, write, read, fill0, sumRows of a few rows: |out − ref| ≤ 1e-6 + 1e-6·|ref|.
 * - gelu / tanh / sigmoid / softmax and their backwards, layer norm, cross-entropy gradients:
 *   |out − ref| ≤ 2e-5 + 1e-4·|ref| (WGSL's `tanh`/`exp` are not correctly rounded).
 * - Reductions into one number (loss sums, regression sums, gradient norm, long sumRows):
 *   |out − ref| ≤ 1e-5 + 1e-4·|ref|.
 * - SGD / Adam / AdamW after 3 steps: |param − ref| ≤ 1e-6 + 1e-5·|ref| (moments likewise).
 * - Dropout: the keep/drop decision is exact (`hashUniform(seed, i) >= p`, in f32 on every
 *   backend since the uniform is a multiple of 2⁻²⁴); a kept mask value is exactly
 *   `Math.fround(1 / (1 − p))` for p ∈ {0, 0.25, 0.5} and within 1 ulp for p = 0.1.
 * - Integer ops (confusion, topK, i32 tensors): exact.
 *
 * Tie rules: `confusion` takes the FIRST largest logit as the prediction; `topK` counts a hit when
 * fewer than k other classes have a logit ≥ the label's logit (a label tied with others is not
 * given the benefit of the tie: [1, 1, 1] with label 0 is a top-1 miss and a top-3 hit).
 * @module
 */

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Activation, AdamStep, Backend, SgdStep, Tensor } from "./backend.ts";
import { createRng, hashUniform } from "./rng.ts";

/** An absolute + relative tolerance: |got − want| ≤ abs + rel·|want|. */
interface Tol {
  readonly abs: number;
  readonly rel: number;
}

const EXACTISH: Tol = { abs: 1e-6, rel: 1e-6 };
const TRANSCENDENTAL: Tol = { abs: 2e-5, rel: 1e-4 };
const REDUCTION: Tol = { abs: 1e-5, rel: 1e-4 };
const OPTIMIZER: Tol = { abs: 1e-6, rel: 1e-5 };

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tol | ((i: number) => number), what: string): void {
  assert.equal(got.length, want.length, `${what}: length ${got.length}, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    const limit = typeof tol === "function" ? tol(i) : tol.abs + tol.rel * Math.abs(w);
    if (Number.isNaN(w) && Number.isNaN(g)) continue;
    if (!(Math.abs(g - w) <= limit)) {
      assert.fail(`${what}: element ${i} is ${g}, expected ${w} (tolerance ${limit.toExponential(2)})`);
    }
  }
}

function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const rng = createRng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng.next() * 2 - 1) * scale;
  return out;
}

function randomLabels(n: number, classes: number, seed: number): Int32Array {
  const rng = createRng(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.int(classes);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The reference: plain JS, f64 accumulation. Inputs are the f32 values the backend holds.

const GELU_C = Math.sqrt(2 / Math.PI);

function refAct(act: Activation, x: number): number {
  switch (act) {
    case "none":
      return x;
    case "relu":
      return x > 0 ? x : 0;
    case "gelu":
      return 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
    case "tanh":
      return Math.tanh(x);
    case "sigmoid":
      return 1 / (1 + Math.exp(-x));
  }
}

function refActGrad(act: Activation, pre: number, post: number): number {
  switch (act) {
    case "none":
      return 1;
    case "relu":
      return post > 0 ? 1 : 0;
    case "gelu": {
      const t = Math.tanh(GELU_C * (pre + 0.044715 * pre * pre * pre));
      return 0.5 * (1 + t) + 0.5 * pre * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * pre * pre);
    }
    case "tanh":
      return 1 - post * post;
    case "sigmoid":
      return post * (1 - post);
  }
}

/** out = op(a)·op(b) (+ prior), with the per-element Σ|a·b| for the tolerance. */
function refMatmul(
  a: Float32Array, b: Float32Array, m: number, k: number, n: number,
  transA: boolean, transB: boolean, prior?: Float32Array,
): { out: Float64Array; mag: Float64Array } {
  const out = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = prior === undefined ? 0 : prior[i * n + j]!;
      let g = Math.abs(s);
      for (let p = 0; p < k; p++) {
        const av = transA ? a[p * m + i]! : a[i * k + p]!;
        const bv = transB ? b[j * k + p]! : b[p * n + j]!;
        s += av * bv;
        g += Math.abs(av * bv);
      }
      out[i * n + j] = s;
      mag[i * n + j] = g;
    }
  }
  return { out, mag };
}

function refSoftmaxRow(x: ArrayLike<number>, offset: number, cols: number): Float64Array {
  let max = -Infinity;
  for (let c = 0; c < cols; c++) max = Math.max(max, x[offset + c]!);
  const out = new Float64Array(cols);
  let sum = 0;
  for (let c = 0; c < cols; c++) {
    out[c] = Math.exp(x[offset + c]! - max);
    sum += out[c]!;
  }
  for (let c = 0; c < cols; c++) out[c] = out[c]! / sum;
  return out;
}

function refLayerNorm(x: ArrayLike<number>, gamma: ArrayLike<number>, beta: ArrayLike<number>, rows: number, cols: number, eps: number) {
  const out = new Float64Array(rows * cols);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let mu = 0;
    for (let c = 0; c < cols; c++) mu += x[r * cols + c]!;
    mu /= cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (x[r * cols + c]! - mu) ** 2;
    v /= cols;
    const rs = 1 / Math.sqrt(v + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let c = 0; c < cols; c++) out[r * cols + c] = (x[r * cols + c]! - mu) * rs * gamma[c]! + beta[c]!;
  }
  return { out, mean, rstd };
}

function refLayerNormBackward(
  x: ArrayLike<number>, gamma: ArrayLike<number>, dy: ArrayLike<number>, rows: number, cols: number, eps: number,
) {
  const { mean, rstd } = refLayerNorm(x, gamma, new Float64Array(cols), rows, cols, eps);
  const dx = new Float64Array(rows * cols);
  const dGamma = new Float64Array(cols);
  const dBeta = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    let s1 = 0; // Σ dxhat
    let s2 = 0; // Σ dxhat·xhat
    for (let c = 0; c < cols; c++) {
      const xhat = (x[r * cols + c]! - mean[r]!) * rstd[r]!;
      const d = dy[r * cols + c]!;
      const dxhat = d * gamma[c]!;
      s1 += dxhat;
      s2 += dxhat * xhat;
      dGamma[c] = dGamma[c]! + d * xhat;
      dBeta[c] = dBeta[c]! + d;
    }
    for (let c = 0; c < cols; c++) {
      const xhat = (x[r * cols + c]! - mean[r]!) * rstd[r]!;
      const dxhat = dy[r * cols + c]! * gamma[c]!;
      dx[r * cols + c] = rstd[r]! * (dxhat - s1 / cols - xhat * s2 / cols);
    }
  }
  return { dx, dGamma, dBeta, mean, rstd };
}

/** PyTorch SGD (dampening 0): g += wd·p; buf = μ·buf + g; g = nesterov ? g + μ·buf : buf; p -= lr·g. */
function refSgd(p: Float64Array, g: ArrayLike<number>, buf: Float64Array, s: SgdStep): void {
  for (let i = 0; i < p.length; i++) {
    let d = g[i]! + s.weightDecay * p[i]!;
    if (s.momentum !== 0) {
      buf[i] = s.momentum * buf[i]! + d;
      d = s.nesterov ? d + s.momentum * buf[i]! : buf[i]!;
    }
    p[i] = p[i]! - s.lr * d;
  }
}

/** PyTorch Adam / AdamW with bias correction. */
function refAdam(p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, s: AdamStep): void {
  const bc1 = 1 - s.beta1 ** s.step;
  const bc2 = 1 - s.beta2 ** s.step;
  for (let i = 0; i < p.length; i++) {
    let d = g[i]!;
    if (s.decoupled) p[i] = p[i]! * (1 - s.lr * s.weightDecay);
    else d += s.weightDecay * p[i]!;
    m[i] = s.beta1 * m[i]! + (1 - s.beta1) * d;
    v[i] = s.beta2 * v[i]! + (1 - s.beta2) * d * d;
    p[i] = p[i]! - s.lr * (m[i]! / bc1) / (Math.sqrt(v[i]! / bc2) + s.eps);
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Registers the Backend contract tests for one implementation with `node:test`. `make` is called
 * once; the backend is destroyed after the suite.
 */
export function testBackend(name: string, make: () => Promise<Backend>): void {
  describe(`Backend conformance: ${name}`, () => {
    let be: Backend;
    before(async () => {
      be = await make();
    });
    after(() => {
      be?.destroy();
    });

    const f32 = async (t: Tensor): Promise<Float32Array> => {
      const out = await be.read(t);
      assert.ok(out instanceof Float32Array, "read() of an f32 tensor returns a Float32Array");
      return out;
    };
    const i32 = async (t: Tensor): Promise<Int32Array> => {
      const out = await be.read(t);
      assert.ok(out instanceof Int32Array, "read() of an i32 tensor returns an Int32Array");
      return out;
    };

    test("identity: name, device and kernels are non-empty strings", () => {
      assert.equal(be.name, name);
      assert.equal(typeof be.device, "string");
      assert.ok(be.device.length > 0);
      assert.equal(typeof be.kernels, "string");
      assert.ok(be.kernels.length > 0);
    });

    describe("memory: tensor, zeros, write, fill0, copy, read, dispose", () => {
      test("tensor() copies its source; shape, size, dtype and backend are set", async () => {
        const src = new Float32Array([1, 2, 3, 4, 5, 6]);
        const t = be.tensor(src, [2, 3]);
        src[0] = 100;
        src.fill(-1);
        assert.deepEqual([...t.shape], [2, 3]);
        assert.equal(t.size, 6);
        assert.equal(t.dtype, "f32");
        assert.equal(t.backend, name);
        const got = await f32(t);
        assert.deepEqual([...got], [1, 2, 3, 4, 5, 6]);
        // read() returns a copy too
        got[0] = 42;
        assert.deepEqual([...(await f32(t))], [1, 2, 3, 4, 5, 6]);
        be.dispose(t);
      });

      test("i32 tensors keep exact integers (beyond f32's 24 bits), zeros() of both dtypes", async () => {
        const src = new Int32Array([0, -1, 2147483647, -2147483648, 16777217, 7]);
        const t = be.tensor(src, [6]);
        src[1] = 5;
        assert.equal(t.dtype, "i32");
        assert.deepEqual([...(await i32(t))], [0, -1, 2147483647, -2147483648, 16777217, 7]);
        const zi = be.zeros([3, 1], "i32");
        assert.equal(zi.dtype, "i32");
        assert.deepEqual([...(await i32(zi))], [0, 0, 0]);
        const zf = be.zeros([5]);
        assert.equal(zf.dtype, "f32");
        assert.deepEqual([...(await f32(zf))], [0, 0, 0, 0, 0]);
        be.write(zi, new Int32Array([9, -9, 123456789]));
        assert.deepEqual([...(await i32(zi))], [9, -9, 123456789]);
        be.fill0(zi);
        assert.deepEqual([...(await i32(zi))], [0, 0, 0]);
        for (const x of [t, zi, zf]) be.dispose(x);
      });

      test("write, fill0 and copy run in queue order with other ops", async () => {
        const a = be.tensor(new Float32Array([1, 2, 3]), [3]);
        const b = be.zeros([3]);
        be.copy(a, b);
        be.write(a, new Float32Array([7, 8, 9]));
        const c = be.zeros([3]);
        be.mul(a, b, c); // [7, 16, 27]
        be.fill0(a);
        be.flush();
        assert.deepEqual([...(await f32(b))], [1, 2, 3]);
        assert.deepEqual([...(await f32(c))], [7, 16, 27]);
        assert.deepEqual([...(await f32(a))], [0, 0, 0]);
        const src = new Float32Array([4, 5, 6]);
        be.write(b, src);
        src[0] = 0; // write copies too
        await be.sync();
        assert.deepEqual([...(await f32(b))], [4, 5, 6]);
        for (const x of [a, b, c]) be.dispose(x);
      });

      test("copy of i32 tensors; a large tensor round-trips", async () => {
        const a = be.tensor(new Int32Array([3, -4, 5]), [3]);
        const b = be.zeros([3], "i32");
        be.copy(a, b);
        assert.deepEqual([...(await i32(b))], [3, -4, 5]);
        const big = randomArray(300_001, 7);
        const t = be.tensor(big, [300_001]);
        assert.deepEqual(await f32(t), big);
        for (const x of [a, b, t]) be.dispose(x);
      });

      test("tensor() and write() reject data of the wrong length with a RangeError", () => {
        assert.throws(() => be.tensor(new Float32Array(5), [2, 3]), RangeError);
        const t = be.zeros([2, 2]);
        assert.throws(() => be.write(t, new Float32Array(3)), RangeError);
        be.dispose(t);
      });

      test("dispose frees tensors without touching others; many alloc/free cycles work", async () => {
        const keep = be.tensor(new Float32Array([1, 2]), [2]);
        for (let i = 0; i < 50; i++) {
          const t = be.zeros([256, 257]);
          be.dispose(t);
        }
        assert.deepEqual([...(await f32(keep))], [1, 2]);
        be.dispose(keep);
      });
    });

    describe("matmul", () => {
      const cases: [number, number, number][] = [[1, 1, 1], [3, 5, 7], [129, 257, 65], [64, 64, 64], [2, 300, 1], [17, 1, 33]];
      for (const [m, k, n] of cases) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            for (const accumulate of [false, true]) {
              // The big case in every variant; the small ones too.
              test(`${m}×${k}·${k}×${n}${transA ? " transA" : ""}${transB ? " transB" : ""}${accumulate ? " accumulate" : ""}`, async () => {
                const a = randomArray(m * k, m * 1000 + k, 1);
                const b = randomArray(k * n, k * 1000 + n + 1, 1);
                const prior = randomArray(m * n, 99 + m + n);
                const ta = be.tensor(a, transA ? [k, m] : [m, k]);
                const tb = be.tensor(b, transB ? [n, k] : [k, n]);
                const out = be.tensor(prior, [m, n]);
                be.matmul(ta, tb, out, { transA, transB, accumulate });
                const { out: want, mag } = refMatmul(a, b, m, k, n, transA, transB, accumulate ? prior : undefined);
                assertClose(await f32(out), want, (i) => 1e-4 * mag[i]! + 1e-6, "matmul");
                for (const x of [ta, tb, out]) be.dispose(x);
              });
            }
          }
        }
      }

      test("options default to no transpose, no accumulation; zeros in give zeros out", async () => {
        const a = be.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
        const b = be.tensor(new Float32Array([5, 6, 7, 8]), [2, 2]);
        const out = be.tensor(new Float32Array([100, 100, 100, 100]), [2, 2]);
        be.matmul(a, b, out);
        assert.deepEqual([...(await f32(out))], [19, 22, 43, 50]);
        const z = be.zeros([2, 2]);
        be.matmul(z, b, out);
        assert.deepEqual([...(await f32(out))], [0, 0, 0, 0]);
        for (const x of [a, b, out, z]) be.dispose(x);
      });
    });

    describe("bias, activations, sumRows, softmax, mul", () => {
      for (const act of ["none", "relu", "gelu", "tanh", "sigmoid"] as const) {
        for (const [rows, cols] of [[1, 1], [7, 13], [33, 300]] as const) {
          test(`biasAct + actBackward "${act}" on ${rows}×${cols} (and in place)`, async () => {
            const x = randomArray(rows * cols, rows + cols, 3);
            const bias = randomArray(cols, cols + 5, 1);
            const dy = randomArray(rows * cols, rows * cols + 11, 1);
            const tx = be.tensor(x, [rows, cols]);
            const tb = be.tensor(bias, [cols]);
            const out = be.zeros([rows, cols]);
            be.biasAct(tx, tb, act, out);
            const pre = new Float32Array(rows * cols);
            const want = new Float64Array(rows * cols);
            for (let r = 0; r < rows; r++) {
              for (let c = 0; c < cols; c++) {
                pre[r * cols + c] = x[r * cols + c]! + bias[c]!;
                want[r * cols + c] = refAct(act, pre[r * cols + c]!);
              }
            }
            const tol = act === "none" || act === "relu" ? EXACTISH : TRANSCENDENTAL;
            const post = await f32(out);
            assertClose(post, want, tol, `biasAct ${act}`);
            // backward, reading the backend's own pre/post
            const tpre = be.tensor(pre, [rows, cols]);
            const tdy = be.tensor(dy, [rows, cols]);
            const dx = be.zeros([rows, cols]);
            be.actBackward(act, tpre, out, tdy, dx);
            const wantDx = new Float64Array(rows * cols);
            for (let i = 0; i < rows * cols; i++) wantDx[i] = dy[i]! * refActGrad(act, pre[i]!, post[i]!);
            assertClose(await f32(dx), wantDx, tol, `actBackward ${act}`);
            // in place: out may be x, dx may be dy
            be.biasAct(tx, tb, act, tx);
            assertClose(await f32(tx), want, tol, `biasAct ${act} in place`);
            be.actBackward(act, tpre, out, tdy, tdy);
            assertClose(await f32(tdy), wantDx, tol, `actBackward ${act} in place`);
            for (const t of [tx, tb, out, tpre, tdy, dx]) be.dispose(t);
          });
        }
      }

      test("relu backward passes nothing where the output is 0; sigmoid/tanh saturate cleanly", async () => {
        const x = be.tensor(new Float32Array([-2, 0, 3, -100, 100, 50]), [1, 6]);
        const zero = be.zeros([6]);
        const out = be.zeros([1, 6]);
        be.biasAct(x, zero, "sigmoid", out);
        const s = await f32(out);
        assert.ok(s.every((v) => Number.isFinite(v) && v >= 0 && v <= 1), `sigmoid in [0,1]: ${s}`);
        be.biasAct(x, zero, "tanh", out);
        const t = await f32(out);
        assert.ok(t.every((v) => Number.isFinite(v) && v >= -1 && v <= 1), `tanh in [-1,1]: ${t}`);
        assertClose(t, [-0.9640275800758169, 0, 0.9950547536867305, -1, 1, 1], TRANSCENDENTAL, "tanh");
        be.biasAct(x, zero, "relu", out);
        const dy = be.tensor(new Float32Array([1, 1, 1, 1, 1, 1]), [1, 6]);
        const dx = be.zeros([1, 6]);
        be.actBackward("relu", x, out, dy, dx);
        assert.deepEqual([...(await f32(dx))], [0, 0, 1, 0, 1, 1]);
        for (const v of [x, zero, out, dy, dx]) be.dispose(v);
      });

      for (const [rows, cols] of [[1, 1], [5, 7], [300, 3], [4, 1000]] as const) {
        test(`sumRows ${rows}×${cols}, and with accumulate`, async () => {
          const x = randomArray(rows * cols, rows * 7 + cols, 2);
          const tx = be.tensor(x, [rows, cols]);
          const out = be.tensor(new Float32Array(cols).fill(0.5), [cols]);
          be.sumRows(tx, out);
          const want = new Float64Array(cols);
          for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) want[c] = want[c]! + x[r * cols + c]!;
          assertClose(await f32(out), want, REDUCTION, "sumRows");
          be.sumRows(tx, out, { accumulate: true });
          assertClose(await f32(out), want.map((v) => 2 * v), REDUCTION, "sumRows accumulate");
          be.dispose(tx);
          be.dispose(out);
        });
      }

      for (const [rows, cols] of [[1, 1], [6, 10], [3, 1000]] as const) {
        test(`softmax ${rows}×${cols}`, async () => {
          const x = randomArray(rows * cols, rows + cols * 3, 8);
          const tx = be.tensor(x, [rows, cols]);
          const out = be.zeros([rows, cols]);
          be.softmax(tx, out);
          const want = new Float64Array(rows * cols);
          for (let r = 0; r < rows; r++) want.set(refSoftmaxRow(x, r * cols, cols), r * cols);
          assertClose(await f32(out), want, TRANSCENDENTAL, "softmax");
          be.dispose(tx);
          be.dispose(out);
        });
      }

      test("softmax is numerically stable on large logits", async () => {
        const x = be.tensor(new Float32Array([1000, 1001, 1002, -1000, -1001, -1002]), [2, 3]);
        const out = be.zeros([2, 3]);
        be.softmax(x, out);
        const e = [Math.exp(-2), Math.exp(-1), 1];
        const s = e[0]! + e[1]! + e[2]!;
        assertClose(await f32(out), [e[0]! / s, e[1]! / s, 1 / s, 1 / s, e[1]! / s, e[0]! / s], TRANSCENDENTAL, "softmax");
        be.dispose(x);
        be.dispose(out);
      });

      test("mul is elementwise, and may write in place", async () => {
        const a = randomArray(1001, 3);
        const b = randomArray(1001, 4);
        const ta = be.tensor(a, [1001]);
        const tb = be.tensor(b, [1001]);
        const out = be.zeros([1001]);
        be.mul(ta, tb, out);
        const want = Array.from(a, (v, i) => v * b[i]!);
        assertClose(await f32(out), want, EXACTISH, "mul");
        be.mul(ta, tb, ta);
        assertClose(await f32(ta), want, EXACTISH, "mul in place");
        for (const t of [ta, tb, out]) be.dispose(t);
      });
    });

    describe("losses", () => {
      for (const [rows, classes] of [[1, 2], [9, 10], [5, 300]] as const) {
        test(`softmaxCrossEntropy ${rows}×${classes}: gradient, scale, running loss sum, fill0`, async () => {
          const x = randomArray(rows * classes, rows * 31 + classes, 5);
          const labels = randomLabels(rows, classes, rows + classes);
          const tx = be.tensor(x, [rows, classes]);
          const tl = be.tensor(labels, [rows]);
          const d = be.zeros([rows, classes]);
          const loss = be.zeros([1]);
          const scale = 1 / rows;
          be.softmaxCrossEntropy(tx, tl, d, loss, scale);
          const wantD = new Float64Array(rows * classes);
          let wantLoss = 0;
          for (let r = 0; r < rows; r++) {
            const p = refSoftmaxRow(x, r * classes, classes);
            wantLoss += -Math.log(p[labels[r]!]!);
            for (let c = 0; c < classes; c++) wantD[r * classes + c] = (p[c]! - (c === labels[r] ? 1 : 0)) * scale;
          }
          assertClose(await f32(d), wantD, TRANSCENDENTAL, "dLogits");
          assertClose(await f32(loss), [wantLoss], REDUCTION, "lossSum");
          // a second call adds to the running sum; another scale scales the gradient
          be.softmaxCrossEntropy(tx, tl, d, loss, 2.5);
          assertClose(await f32(loss), [2 * wantLoss], REDUCTION, "lossSum after two calls");
          assertClose(await f32(d), wantD.map((v) => v * 2.5 / scale), TRANSCENDENTAL, "dLogits with scale 2.5");
          be.fill0(loss);
          be.softmaxCrossEntropy(tx, tl, d, loss, scale);
          assertClose(await f32(loss), [wantLoss], REDUCTION, "lossSum after fill0");
          for (const t of [tx, tl, d, loss]) be.dispose(t);
        });
      }

      test("softmaxCrossEntropy is stable for confident logits; an out-of-range label gives NaN", async () => {
        const x = be.tensor(new Float32Array([200, 0, -200, 0, 0, 100]), [2, 3]);
        const l = be.tensor(new Int32Array([0, 2]), [2]);
        const d = be.zeros([2, 3]);
        const loss = be.zeros([1]);
        be.softmaxCrossEntropy(x, l, d, loss, 1);
        const [v] = await f32(loss);
        assert.ok(Number.isFinite(v) && Math.abs(v!) < 1e-5, `near-zero finite loss, got ${v}`);
        be.write(l, new Int32Array([0, 3]));
        be.fill0(loss);
        be.softmaxCrossEntropy(x, l, d, loss, 1);
        assert.ok(Number.isNaN((await f32(loss))[0]), "a label outside [0, classes) makes the loss NaN");
        for (const t of [x, l, d, loss]) be.dispose(t);
      });

      for (const [rows, cols] of [[1, 1], [7, 3], [128, 100]] as const) {
        test(`mse ${rows}×${cols}: gradient, scale, running sum`, async () => {
          const p = randomArray(rows * cols, 10 + rows, 2);
          const t = randomArray(rows * cols, 20 + cols, 2);
          const tp = be.tensor(p, [rows, cols]);
          const tt = be.tensor(t, [rows, cols]);
          const d = be.zeros([rows, cols]);
          const loss = be.tensor(new Float32Array([1.5]), [1]);
          const scale = 1 / (rows * cols);
          be.mse(tp, tt, d, loss, scale);
          let sum = 0;
          const wantD = new Float64Array(rows * cols);
          for (let i = 0; i < rows * cols; i++) {
            const e = p[i]! - t[i]!;
            sum += e * e;
            wantD[i] = 2 * e * scale;
          }
          assertClose(await f32(d), wantD, EXACTISH, "dPred");
          assertClose(await f32(loss), [1.5 + sum], REDUCTION, "lossSum (adds to what was there)");
          be.mse(tp, tt, d, loss, 1);
          assertClose(await f32(loss), [1.5 + 2 * sum], REDUCTION, "lossSum after two calls");
          assertClose(await f32(d), wantD.map((v) => v / scale), EXACTISH, "dPred with scale 1");
          for (const x of [tp, tt, d, loss]) be.dispose(x);
        });
      }
    });

    describe("dropout", () => {
      for (const p of [0, 0.25, 0.5, 0.1]) {
        for (const seed of [1, 0xdeadbeef]) {
          test(`dropout p=${p} seed=${seed}: mask is exactly the hashUniform rule`, async () => {
            const n = 4099;
            const x = randomArray(n, 77, 4);
            const tx = be.tensor(x, [n]);
            const out = be.zeros([n]);
            const mask = be.zeros([n]);
            be.dropout(tx, out, mask, p, seed);
            const gotMask = await f32(mask);
            const gotOut = await f32(out);
            const keepValue = Math.fround(1 / (1 - p));
            let kept = 0;
            for (let i = 0; i < n; i++) {
              const keep = hashUniform(seed, i) >= p;
              const m = gotMask[i]!;
              if (!keep) {
                assert.ok(m === 0, `mask[${i}] is ${m}, must be 0 (dropped)`);
                assert.ok(gotOut[i] === 0, `out[${i}] is ${gotOut[i]}, must be 0 (dropped; -0 counts)`);
                continue;
              }
              kept++;
              if (p === 0.1) assert.ok(Math.abs(m - keepValue) <= keepValue * 1.2e-7, `mask[${i}] = ${m}, expected ${keepValue}`);
              else assert.equal(m, keepValue, `mask[${i}]`);
              assert.ok(Math.abs(gotOut[i]! - x[i]! * keepValue) <= 1e-6 * Math.abs(x[i]! * keepValue) + 1e-7, `out[${i}]`);
            }
            if (p === 0) assert.equal(kept, n);
            else assert.ok(Math.abs(kept / n - (1 - p)) < 0.05, `kept fraction ${kept / n} near ${1 - p}`);
            // backward is mul(dy, mask)
            const dy = be.tensor(randomArray(n, 5), [n]);
            const dx = be.zeros([n]);
            be.mul(dy, mask, dx);
            const wantDx = Array.from(await f32(dy), (v, i) => v * gotMask[i]!);
            assertClose(await f32(dx), wantDx, EXACTISH, "dropout backward");
            for (const t of [tx, out, mask, dy, dx]) be.dispose(t);
          });
        }
      }

      test("dropout masks differ between seeds and may write in place", async () => {
        const n = 512;
        const x = be.tensor(new Float32Array(n).fill(1), [n]);
        const m1 = be.zeros([n]);
        const m2 = be.zeros([n]);
        const out = be.zeros([n]);
        be.dropout(x, out, m1, 0.5, 11);
        be.dropout(x, x, m2, 0.5, 12);
        const a = await f32(m1);
        const b = await f32(m2);
        assert.notDeepEqual([...a], [...b]);
        assert.deepEqual([...(await f32(x))], [...b]);
        for (const t of [x, m1, m2, out]) be.dispose(t);
      });
    });

    describe("layer norm", () => {
      for (const [rows, cols, eps] of [[1, 2, 1e-5], [7, 13, 1e-5], [5, 300, 1e-3]] as const) {
        test(`layerNorm forward and backward ${rows}×${cols} eps=${eps}`, async () => {
          const x = randomArray(rows * cols, rows * 13 + cols, 3);
          for (let i = 0; i < x.length; i++) x[i] = x[i]! + 2; // a non-zero mean
          const gamma = randomArray(cols, cols + 1, 1);
          const beta = randomArray(cols, cols + 2, 1);
          const dy = randomArray(rows * cols, cols + 3, 1);
          const tx = be.tensor(x, [rows, cols]);
          const tg = be.tensor(gamma, [cols]);
          const tb = be.tensor(beta, [cols]);
          const out = be.zeros([rows, cols]);
          const mean = be.zeros([rows]);
          const rstd = be.zeros([rows]);
          be.layerNorm(tx, tg, tb, out, mean, rstd, eps);
          const want = refLayerNorm(x, gamma, beta, rows, cols, eps);
          assertClose(await f32(out), want.out, TRANSCENDENTAL, "layerNorm out");
          assertClose(await f32(mean), want.mean, TRANSCENDENTAL, "layerNorm mean");
          assertClose(await f32(rstd), want.rstd, { abs: 2e-5, rel: 2e-4 }, "layerNorm rstd");

          const tdy = be.tensor(dy, [rows, cols]);
          const dx = be.zeros([rows, cols]);
          const dGamma = be.tensor(new Float32Array(cols).fill(1), [cols]);
          const dBeta = be.zeros([cols]);
          be.layerNormBackward(tx, tg, mean, rstd, tdy, dx, dGamma, dBeta);
          const ref = refLayerNormBackward(x, gamma, dy, rows, cols, eps);
          // backward tolerance scales with rstd (large when the variance is tiny)
          const scaleTol = Math.max(...ref.rstd);
          assertClose(await f32(dx), ref.dx, { abs: 2e-5 * scaleTol, rel: 2e-4 }, "layerNorm dx");
          assertClose(await f32(dGamma), ref.dGamma.map((v) => v + 1), REDUCTION, "layerNorm dGamma (+=)");
          assertClose(await f32(dBeta), ref.dBeta, REDUCTION, "layerNorm dBeta");

          // The reference backward against central finite differences of the f64 forward,
          // for L = Σ dy ⊙ layerNorm(x).
          const loss = (xx: ArrayLike<number>, gg: ArrayLike<number>, bb: ArrayLike<number>): number => {
            const o = refLayerNorm(xx, gg, bb, rows, cols, eps).out;
            let s = 0;
            for (let i = 0; i < o.length; i++) s += o[i]! * dy[i]!;
            return s;
          };
          const h = 1e-6;
          const fd = (arr: Float64Array, i: number, f: () => number): number => {
            const keep = arr[i]!;
            arr[i] = keep + h;
            const up = f();
            arr[i] = keep - h;
            const down = f();
            arr[i] = keep;
            return (up - down) / (2 * h);
          };
          const x64 = Float64Array.from(x);
          const g64 = Float64Array.from(gamma);
          const b64 = Float64Array.from(beta);
          const f = () => loss(x64, g64, b64);
          for (let i = 0; i < x.length; i += Math.max(1, Math.floor(x.length / 40))) {
            const num = fd(x64, i, f);
            assert.ok(Math.abs(num - ref.dx[i]!) <= 1e-5 + 1e-4 * Math.abs(num), `FD dx[${i}]: ${num} vs ${ref.dx[i]}`);
          }
          for (let c = 0; c < cols; c += Math.max(1, Math.floor(cols / 20))) {
            const ng = fd(g64, c, f);
            assert.ok(Math.abs(ng - ref.dGamma[c]!) <= 1e-5 + 1e-4 * Math.abs(ng), `FD dGamma[${c}]`);
            const nb = fd(b64, c, f);
            assert.ok(Math.abs(nb - ref.dBeta[c]!) <= 1e-5 + 1e-4 * Math.abs(nb), `FD dBeta[${c}]`);
          }
          for (const t of [tx, tg, tb, out, mean, rstd, tdy, dx, dGamma, dBeta]) be.dispose(t);
        });
      }

      test("layerNormBackward agrees with finite differences of the backend's own forward", async () => {
        const rows = 3;
        const cols = 6;
        const eps = 1e-5;
        const x = randomArray(rows * cols, 42, 2);
        const gamma = randomArray(cols, 43, 1);
        const dy = randomArray(rows * cols, 44, 1);
        const tx = be.tensor(x, [rows, cols]);
        const tg = be.tensor(gamma, [cols]);
        const tb = be.zeros([cols]);
        const out = be.zeros([rows, cols]);
        const mean = be.zeros([rows]);
        const rstd = be.zeros([rows]);
        const tdy = be.tensor(dy, [rows, cols]);
        const dx = be.zeros([rows, cols]);
        const dG = be.zeros([cols]);
        const dB = be.zeros([cols]);
        be.layerNorm(tx, tg, tb, out, mean, rstd, eps);
        be.layerNormBackward(tx, tg, mean, rstd, tdy, dx, dG, dB);
        const grad = await f32(dx);
        const L = async (xx: Float32Array): Promise<number> => {
          be.write(tx, xx);
          be.layerNorm(tx, tg, tb, out, mean, rstd, eps);
          const o = await f32(out);
          let s = 0;
          for (let i = 0; i < o.length; i++) s += o[i]! * dy[i]!;
          return s;
        };
        const h = 1e-2; // f32: a large step, a loose tolerance
        for (let i = 0; i < x.length; i++) {
          const xp = Float32Array.from(x);
          xp[i] = x[i]! + h;
          const up = await L(xp);
          xp[i] = x[i]! - h;
          const down = await L(xp);
          const num = (up - down) / (2 * h);
          assert.ok(Math.abs(num - grad[i]!) <= 2e-2 + 2e-2 * Math.abs(num), `FD dx[${i}]: ${num} vs ${grad[i]}`);
        }
        for (const t of [tx, tg, tb, out, mean, rstd, tdy, dx, dG, dB]) be.dispose(t);
      });
    });

    describe("optimizers", () => {
      const sgdCases: SgdStep[] = [
        { lr: 0.1, momentum: 0, weightDecay: 0, nesterov: false },
        { lr: 0.05, momentum: 0.9, weightDecay: 0, nesterov: false },
        { lr: 0.05, momentum: 0.9, weightDecay: 0, nesterov: true },
        { lr: 0.01, momentum: 0.5, weightDecay: 0.1, nesterov: false },
        { lr: 0.01, momentum: 0, weightDecay: 0.2, nesterov: false },
        { lr: 0.02, momentum: 0.8, weightDecay: 0.05, nesterov: true },
      ];
      for (const s of sgdCases) {
        test(`sgd ${JSON.stringify(s)} over 3 steps matches PyTorch's SGD`, async () => {
          const n = 1037;
          const p0 = randomArray(n, 1, 1);
          const grads = [randomArray(n, 2), randomArray(n, 3), randomArray(n, 4)];
          const tp = be.tensor(p0, [n]);
          const tg = be.zeros([n]);
          const vel = be.zeros([n]);
          const p = Float64Array.from(p0);
          const buf = new Float64Array(n);
          for (const g of grads) {
            be.write(tg, g);
            be.sgd(tp, tg, vel, s);
            refSgd(p, g, buf, s);
          }
          assertClose(await f32(tp), p, OPTIMIZER, "param");
          if (s.momentum !== 0) assertClose(await f32(vel), buf, OPTIMIZER, "velocity");
          for (const t of [tp, tg, vel]) be.dispose(t);
        });
      }

      const adamCases: Omit<AdamStep, "step">[] = [
        { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false },
        { lr: 0.01, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1, decoupled: false },
        { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, decoupled: true },
        { lr: 0.1, beta1: 0, beta2: 0.5, eps: 1e-3, weightDecay: 0.3, decoupled: true },
      ];
      for (const s of adamCases) {
        test(`${s.decoupled ? "adamw" : "adam"} ${JSON.stringify(s)} over 3 steps (bias correction)`, async () => {
          const n = 1029;
          const p0 = randomArray(n, 5, 1);
          const grads = [randomArray(n, 6), randomArray(n, 7, 0.01), randomArray(n, 8, 10)];
          const tp = be.tensor(p0, [n]);
          const tg = be.zeros([n]);
          const tm = be.zeros([n]);
          const tv = be.zeros([n]);
          const p = Float64Array.from(p0);
          const m = new Float64Array(n);
          const v = new Float64Array(n);
          let step = 0;
          for (const g of grads) {
            step++;
            be.write(tg, g);
            be.adam(tp, tg, tm, tv, { ...s, step });
            refAdam(p, g, m, v, { ...s, step });
          }
          assertClose(await f32(tp), p, OPTIMIZER, "param");
          assertClose(await f32(tm), m, OPTIMIZER, "m");
          assertClose(await f32(tv), v, OPTIMIZER, "v");
          for (const t of [tp, tg, tm, tv]) be.dispose(t);
        });
      }

      test("adam's first step moves every parameter by about lr (bias correction at step 1)", async () => {
        const tp = be.tensor(new Float32Array([1, 1, 1]), [3]);
        const tg = be.tensor(new Float32Array([0.001, -5, 100]), [3]);
        const tm = be.zeros([3]);
        const tv = be.zeros([3]);
        be.adam(tp, tg, tm, tv, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false, step: 1 });
        assertClose(await f32(tp), [0.9, 1.1, 0.9], { abs: 1e-5, rel: 0 }, "param after one step");
        for (const t of [tp, tg, tm, tv]) be.dispose(t);
      });

      for (const maxNorm of [0.5, 1e6]) {
        test(`clipGradNorm maxNorm=${maxNorm} (${maxNorm < 1 ? "clips" : "leaves the gradients alone"}); norm written`, async () => {
          const gs = [randomArray(1, 1), randomArray(300, 2), randomArray(10007, 3, 0.1), randomArray(7, 4)];
          const ts = gs.map((g) => be.tensor(g, [g.length]));
          const norm = be.zeros([1]);
          be.clipGradNorm(ts, maxNorm, norm);
          let sq = 0;
          for (const g of gs) for (const v of g) sq += v * v;
          const total = Math.sqrt(sq);
          assert.ok(total > 0.5, "the test needs a norm above the clip");
          assertClose(await f32(norm), [total], REDUCTION, "norm");
          const coef = Math.min(1, maxNorm / (total + 1e-6));
          for (let i = 0; i < gs.length; i++) {
            assertClose(await f32(ts[i]!), Array.from(gs[i]!, (v) => v * coef), REDUCTION, `grad ${i}`);
          }
          if (coef < 1) {
            let after = 0;
            for (const t of ts) for (const v of await f32(t)) after += v * v;
            assert.ok(Math.abs(Math.sqrt(after) - maxNorm) < 1e-4, `clipped norm ${Math.sqrt(after)}`);
          }
          for (const t of [...ts, norm]) be.dispose(t);
        });
      }
    });

    describe("metrics", () => {
      test("confusion adds counts[label·classes + argmax]; the first largest logit wins a tie", async () => {
        const classes = 4;
        const logits = new Float32Array([
          0.1, 0.9, 0.3, 0.2, // → 1
          5, 1, 1, 1, // → 0
          1, 1, 1, 1, // tie → 0
          -1, -2, -0.5, -0.5, // tie 2,3 → 2
          0, 0, 0, 7, // → 3
        ]);
        const labels = new Int32Array([1, 2, 3, 2, 3]);
        const tl = be.tensor(logits, [5, classes]);
        const tlab = be.tensor(labels, [5]);
        const counts = be.zeros([classes * classes], "i32");
        be.confusion(tl, tlab, counts);
        be.confusion(tl, tlab, counts); // accumulates
        const want = new Array(classes * classes).fill(0);
        for (const [label, pred] of [[1, 1], [2, 0], [3, 0], [2, 2], [3, 3]] as const) want[label * classes + pred] += 2;
        assert.deepEqual([...(await i32(counts))], want);
        for (const t of [tl, tlab, counts]) be.dispose(t);
      });

      test("confusion on a large random batch matches the reference", async () => {
        const rows = 1000;
        const classes = 10;
        const logits = randomArray(rows * classes, 9);
        const labels = randomLabels(rows, classes, 10);
        const tl = be.tensor(logits, [rows, classes]);
        const tlab = be.tensor(labels, [rows]);
        const counts = be.zeros([classes * classes], "i32");
        be.confusion(tl, tlab, counts);
        const want = new Array(classes * classes).fill(0);
        for (let r = 0; r < rows; r++) {
          let best = 0;
          for (let c = 1; c < classes; c++) if (logits[r * classes + c]! > logits[r * classes + best]!) best = c;
          want[labels[r]! * classes + best]++;
        }
        assert.deepEqual([...(await i32(counts))], want);
        for (const t of [tl, tlab, counts]) be.dispose(t);
      });

      test("topK counts hits for k = 1, 2, classes; ties count against the label", async () => {
        const logits = new Float32Array([
          1, 1, 1, // label 0 tied with two others: hit only when k = 3
          0.1, 0.7, 0.2, // label 2 second: hit for k ≥ 2
          3, 2, 1, // label 0 first: hit for every k
          0.5, 0.5, 0.1, // label 1 tied with one other: hit for k ≥ 2
        ]);
        const labels = new Int32Array([0, 2, 0, 1]);
        const tl = be.tensor(logits, [4, 3]);
        const tlab = be.tensor(labels, [4]);
        for (const [k, want] of [[1, 1], [2, 3], [3, 4]] as const) {
          const hits = be.tensor(new Int32Array([10]), [1]);
          be.topK(tl, tlab, k, hits);
          assert.deepEqual([...(await i32(hits))], [10 + want], `top-${k}`);
          be.topK(tl, tlab, k, hits);
          assert.deepEqual([...(await i32(hits))], [10 + 2 * want], `top-${k} accumulates`);
          be.dispose(hits);
        }
        be.dispose(tl);
        be.dispose(tlab);
      });

      test("topK on a large random batch matches the reference", async () => {
        const rows = 777;
        const classes = 13;
        const logits = randomArray(rows * classes, 12);
        const labels = randomLabels(rows, classes, 13);
        const tl = be.tensor(logits, [rows, classes]);
        const tlab = be.tensor(labels, [rows]);
        for (const k of [1, 3, 5]) {
          const hits = be.zeros([1], "i32");
          be.topK(tl, tlab, k, hits);
          let want = 0;
          for (let r = 0; r < rows; r++) {
            const own = logits[r * classes + labels[r]!]!;
            let atLeast = 0;
            for (let c = 0; c < classes; c++) if (c !== labels[r] && logits[r * classes + c]! >= own) atLeast++;
            if (atLeast < k) want++;
          }
          assert.deepEqual([...(await i32(hits))], [want], `top-${k}`);
          be.dispose(hits);
        }
        be.dispose(tl);
        be.dispose(tlab);
      });

      test("regressionSums adds Σ|e| and Σe² across calls", async () => {
        const n = 10001;
        const p = randomArray(n, 14, 3);
        const t = randomArray(n, 15, 3);
        const tp = be.tensor(p, [n]);
        const tt = be.tensor(t, [n]);
        const sums = be.tensor(new Float32Array([1, 2]), [2]);
        be.regressionSums(tp, tt, sums);
        let abs = 0;
        let sq = 0;
        for (let i = 0; i < n; i++) {
          abs += Math.abs(p[i]! - t[i]!);
          sq += (p[i]! - t[i]!) ** 2;
        }
        assertClose(await f32(sums), [1 + abs, 2 + sq], REDUCTION, "sums");
        be.regressionSums(tp, tt, sums);
        assertClose(await f32(sums), [1 + 2 * abs, 2 + 2 * sq], REDUCTION, "sums after two calls");
        for (const x of [tp, tt, sums]) be.dispose(x);
      });
    });

    test("flush and sync resolve; lost is a promise", async () => {
      be.flush();
      await be.sync();
      assert.ok(be.lost instanceof Promise);
    });
  });
}
