/**
 * The CPU backend: plain `Float32Array` loops for everything, and a WebAssembly SIMD kernel
 * (f32x4, register-blocked over packed panels) for the large matrix products that dominate an
 * MLP's step. Web-standard only (no `Deno`, `Bun` or `node:` APIs), so it runs on Deno, Bun, Node
 * and edge runtimes; without WebAssembly SIMD it falls back to the JS loops.
 * @module
 */

import type { Activation, AdamStep, Backend, DType, SgdStep, Tensor } from "../backend.ts";
import { hash32 } from "../rng.ts";
import { createWasmMatmul, type WasmMatmul } from "./_matmul.ts";

/** Options for {@link createCpuBackend}. */
export interface CpuBackendOptions {
  /**
   * Threads for large matrix products: this one plus `threads − 1` workers sharing the wasm
   * memory. Default: `navigator.hardwareConcurrency` (at most 8). Where there are no workers or
   * no shared memory (edge runtimes) it runs on one; `device` says how many it got. Idle workers
   * exit after a second, so they never hold a process open for long.
   */
  readonly threads?: number;
  /** false forces the plain JS kernels (for tests and comparisons). Default: wasm when available. */
  readonly wasm?: boolean;
}

function defaultThreads(): number {
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  return typeof n === "number" && n >= 1 ? Math.min(8, Math.floor(n)) : 1;
}

/** A tensor of the CPU backend: its data is an ordinary typed array. */
class CpuTensor implements Tensor {
  readonly shape: readonly number[];
  readonly size: number;
  readonly dtype: DType;
  readonly backend = "cpu";
  data: Float32Array | Int32Array;
  constructor(shape: readonly number[], data: Float32Array | Int32Array) {
    this.shape = Object.freeze([...shape]);
    this.size = data.length;
    this.dtype = data instanceof Int32Array ? "i32" : "f32";
    this.data = data;
  }
}

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`Tensor shape [${shape.join(", ")}] must hold non-negative integers`);
    n *= d;
  }
  return n;
}

function t32(t: Tensor, what: string): CpuTensor & { data: Float32Array } {
  if (!(t instanceof CpuTensor)) throw new RangeError(`Tensor "${what}" does not belong to the cpu backend (it is from "${t.backend}")`);
  if (!(t.data instanceof Float32Array)) throw new RangeError(`Tensor "${what}" must be f32`);
  return t as CpuTensor & { data: Float32Array };
}

function ti32(t: Tensor, what: string): CpuTensor & { data: Int32Array } {
  if (!(t instanceof CpuTensor)) throw new RangeError(`Tensor "${what}" does not belong to the cpu backend (it is from "${t.backend}")`);
  if (!(t.data instanceof Int32Array)) throw new RangeError(`Tensor "${what}" must be i32`);
  return t as CpuTensor & { data: Int32Array };
}

function need(cond: boolean, message: string): void {
  if (!cond) throw new RangeError(message);
}

/** [rows, cols] of a tensor viewed as a matrix (a vector is one row). */
function dims(t: Tensor): [number, number] {
  const s = t.shape;
  if (s.length === 0) return [1, 1];
  const cols = s[s.length - 1]!;
  return [cols === 0 ? 0 : t.size / cols, cols];
}

const GELU_C = Math.sqrt(2 / Math.PI);

/** Below this many multiply-adds the JS loop beats copying into wasm memory. */
const WASM_MIN_FLOPS = 32 * 32 * 32;

/** The JS matmul: transposes into contiguous scratch when asked, then an i-k-j loop. */
function jsMatmul(
  a: Float32Array, b: Float32Array, out: Float32Array, m: number, k: number, n: number,
  transA: boolean, transB: boolean, accumulate: boolean,
): void {
  let A = a;
  if (transA) {
    A = new Float32Array(m * k);
    for (let p = 0; p < k; p++) for (let i = 0; i < m; i++) A[i * k + p] = a[p * m + i]!;
  }
  let B = b;
  if (transB) {
    B = new Float32Array(k * n);
    for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) B[p * n + j] = b[j * k + p]!;
  }
  if (!accumulate) out.fill(0, 0, m * n);
  for (let i = 0; i < m; i++) {
    const o = i * n;
    for (let p = 0; p < k; p++) {
      const av = A[i * k + p]!;
      if (av === 0) continue;
      const bo = p * n;
      for (let j = 0; j < n; j++) out[o + j]! += av * B[bo + j]!;
    }
  }
}

/**
 * Creates the CPU backend. Resolves once the wasm kernel is compiled (or known unavailable).
 * @example
 * ```ts
 * const cpu = await createCpuBackend();
 * const t = cpu.tensor(new Float32Array([1, 2]), [1, 2]);
 * ```
 */
export async function createCpuBackend(options: CpuBackendOptions = {}): Promise<Backend> {
  const threads = options.threads ?? defaultThreads();
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`Option "threads" must be a positive integer, got ${threads}`);
  let wasm: WasmMatmul | undefined;
  if (options.wasm !== false) wasm = await createWasmMatmul({ threads });
  return new CpuBackend(wasm);
}

class CpuBackend implements Backend {
  readonly name = "cpu";
  readonly device: string;
  readonly kernels: string;
  readonly lost: Promise<Error> = new Promise<Error>(() => {});
  #wasm: WasmMatmul | undefined;
  #destroyed = false;

  constructor(wasm: WasmMatmul | undefined) {
    this.#wasm = wasm;
    const threads = wasm?.threads ?? 1;
    this.device = `cpu (${wasm === undefined ? "js" : "wasm simd"}, ${threads} thread${threads === 1 ? "" : "s"})`;
    this.kernels = wasm === undefined ? "js-ikj" : wasm.kernel;
  }

  #live(): void {
    if (this.#destroyed) throw new RangeError("The cpu backend was destroyed; create a new one");
  }

  tensor(data: Float32Array | Int32Array, shape: readonly number[]): Tensor {
    this.#live();
    const n = sizeOf(shape);
    need(data.length === n, `Data of length ${data.length} does not fill shape [${shape.join(", ")}] (${n} elements)`);
    return new CpuTensor(shape, data.slice());
  }

  zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
    this.#live();
    const n = sizeOf(shape);
    return new CpuTensor(shape, dtype === "i32" ? new Int32Array(n) : new Float32Array(n));
  }

  write(t: Tensor, data: Float32Array | Int32Array): void {
    const c = t instanceof CpuTensor ? t : t32(t, "t");
    need(data.length === c.size, `Backend op write() got ${data.length} values for a tensor of ${c.size}`);
    c.data.set(data);
  }

  fill0(t: Tensor): void {
    (t instanceof CpuTensor ? t : t32(t, "t")).data.fill(0);
  }

  copy(src: Tensor, dst: Tensor): void {
    const s = src instanceof CpuTensor ? src : t32(src, "src");
    const d = dst instanceof CpuTensor ? dst : t32(dst, "dst");
    need(s.size === d.size, `Backend op copy() from ${s.size} to ${d.size} elements`);
    d.data.set(s.data);
  }

  read(t: Tensor): Promise<Float32Array | Int32Array> {
    const c = t instanceof CpuTensor ? t : t32(t, "t");
    return Promise.resolve(c.data.slice());
  }

  dispose(t: Tensor): void {
    if (t instanceof CpuTensor) t.data = new Float32Array(0);
  }

  matmul(a: Tensor, b: Tensor, out: Tensor, options: { transA?: boolean; transB?: boolean; accumulate?: boolean } = {}): void {
    const A = t32(a, "a");
    const B = t32(b, "b");
    const O = t32(out, "out");
    const transA = options.transA ?? false;
    const transB = options.transB ?? false;
    const accumulate = options.accumulate ?? false;
    need(A.shape.length === 2 && B.shape.length === 2 && O.shape.length === 2, "Backend op matmul() needs 2-D tensors");
    const m = transA ? A.shape[1]! : A.shape[0]!;
    const k = transA ? A.shape[0]! : A.shape[1]!;
    const kb = transB ? B.shape[1]! : B.shape[0]!;
    const n = transB ? B.shape[0]! : B.shape[1]!;
    need(k === kb && O.shape[0] === m && O.shape[1] === n, `Backend op matmul() shapes do not fit: a [${A.shape}], b [${B.shape}], out [${O.shape}]`);
    const done = this.#wasm !== undefined && m * n * k >= WASM_MIN_FLOPS &&
      this.#wasm.matmul(A.data, B.data, O.data, { m, k, n, transA, transB, accumulate });
    if (!done) jsMatmul(A.data, B.data, O.data, m, k, n, transA, transB, accumulate);
  }

  biasAct(x: Tensor, bias: Tensor, act: Activation, out: Tensor): void {
    const X = t32(x, "x").data;
    const b = t32(bias, "bias").data;
    const O = t32(out, "out").data;
    const [rows, cols] = dims(x);
    need(b.length === cols && O.length === X.length, "Backend op biasAct() shapes do not fit");
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      switch (act) {
        case "none":
          for (let c = 0; c < cols; c++) O[o + c] = X[o + c]! + b[c]!;
          break;
        case "relu":
          for (let c = 0; c < cols; c++) {
            const v = X[o + c]! + b[c]!;
            O[o + c] = v > 0 ? v : 0;
          }
          break;
        case "gelu":
          for (let c = 0; c < cols; c++) {
            const v = X[o + c]! + b[c]!;
            O[o + c] = 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v * v * v)));
          }
          break;
        case "tanh":
          for (let c = 0; c < cols; c++) O[o + c] = Math.tanh(X[o + c]! + b[c]!);
          break;
        case "sigmoid":
          for (let c = 0; c < cols; c++) O[o + c] = 1 / (1 + Math.exp(-(X[o + c]! + b[c]!)));
          break;
        default:
          throw new RangeError(`Unknown activation "${String(act)}"`);
      }
    }
  }

  actBackward(act: Activation, pre: Tensor, post: Tensor, dy: Tensor, dx: Tensor): void {
    const P = t32(pre, "pre").data;
    const Q = t32(post, "post").data;
    const D = t32(dy, "dy").data;
    const X = t32(dx, "dx").data;
    const n = D.length;
    need(X.length === n && P.length === n && Q.length === n, "Backend op actBackward() sizes differ");
    switch (act) {
      case "none":
        if (X !== D) X.set(D);
        break;
      case "relu":
        for (let i = 0; i < n; i++) X[i] = Q[i]! > 0 ? D[i]! : 0;
        break;
      case "gelu":
        for (let i = 0; i < n; i++) {
          const v = P[i]!;
          const t = Math.tanh(GELU_C * (v + 0.044715 * v * v * v));
          X[i] = D[i]! * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * v * v));
        }
        break;
      case "tanh":
        for (let i = 0; i < n; i++) X[i] = D[i]! * (1 - Q[i]! * Q[i]!);
        break;
      case "sigmoid":
        for (let i = 0; i < n; i++) X[i] = D[i]! * Q[i]! * (1 - Q[i]!);
        break;
      default:
        throw new RangeError(`Unknown activation "${String(act)}"`);
    }
  }

  sumRows(x: Tensor, out: Tensor, options: { accumulate?: boolean } = {}): void {
    const X = t32(x, "x").data;
    const O = t32(out, "out").data;
    const [rows, cols] = dims(x);
    need(O.length === cols, "Backend op sumRows() out must have one value per column");
    if (!options.accumulate) O.fill(0);
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      for (let c = 0; c < cols; c++) O[c]! += X[o + c]!;
    }
  }

  softmax(x: Tensor, out: Tensor): void {
    const X = t32(x, "x").data;
    const O = t32(out, "out").data;
    const [rows, cols] = dims(x);
    need(O.length === X.length, "Backend op softmax() sizes differ");
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let max = -Infinity;
      for (let c = 0; c < cols; c++) if (X[o + c]! > max) max = X[o + c]!;
      let sum = 0;
      for (let c = 0; c < cols; c++) {
        const e = Math.exp(X[o + c]! - max);
        O[o + c] = e;
        sum += e;
      }
      const inv = 1 / sum;
      for (let c = 0; c < cols; c++) O[o + c]! *= inv;
    }
  }

  softmaxCrossEntropy(logits: Tensor, labels: Tensor, dLogits: Tensor, lossSum: Tensor, scale: number): void {
    const X = t32(logits, "logits").data;
    const L = ti32(labels, "labels").data;
    const D = t32(dLogits, "dLogits").data;
    const S = t32(lossSum, "lossSum").data;
    const [rows, cols] = dims(logits);
    need(L.length === rows && D.length === X.length && S.length >= 1, "Backend op softmaxCrossEntropy() shapes do not fit");
    let total = 0;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let max = -Infinity;
      for (let c = 0; c < cols; c++) if (X[o + c]! > max) max = X[o + c]!;
      let sum = 0;
      for (let c = 0; c < cols; c++) sum += Math.exp(X[o + c]! - max);
      const logSum = Math.log(sum);
      const label = L[r]!;
      const inv = 1 / sum;
      for (let c = 0; c < cols; c++) D[o + c] = (Math.exp(X[o + c]! - max) * inv - (c === label ? 1 : 0)) * scale;
      total += label >= 0 && label < cols ? logSum - (X[o + label]! - max) : NaN;
    }
    S[0]! += total;
  }

  mse(pred: Tensor, target: Tensor, dPred: Tensor, lossSum: Tensor, scale: number): void {
    const P = t32(pred, "pred").data;
    const T = t32(target, "target").data;
    const D = t32(dPred, "dPred").data;
    const S = t32(lossSum, "lossSum").data;
    need(T.length === P.length && D.length === P.length && S.length >= 1, "Backend op mse() sizes differ");
    let total = 0;
    const s2 = 2 * scale;
    for (let i = 0; i < P.length; i++) {
      const e = P[i]! - T[i]!;
      total += e * e;
      D[i] = e * s2;
    }
    S[0]! += total;
  }

  dropout(x: Tensor, out: Tensor, mask: Tensor, p: number, seed: number): void {
    const X = t32(x, "x").data;
    const O = t32(out, "out").data;
    const M = t32(mask, "mask").data;
    need(O.length === X.length && M.length === X.length, "Backend op dropout() sizes differ");
    const keep = Math.fround(1 / (1 - p));
    // hashUniform(seed, i) >= p  ⇔  (hash32 >>> 8) >= p·2²⁴, compared as integers
    const threshold = p * 16777216;
    for (let i = 0; i < X.length; i++) {
      const m = (hash32(seed, i) >>> 8) >= threshold ? keep : 0;
      M[i] = m;
      O[i] = X[i]! * m;
    }
  }

  mul(a: Tensor, b: Tensor, out: Tensor): void {
    const A = t32(a, "a").data;
    const B = t32(b, "b").data;
    const O = t32(out, "out").data;
    need(B.length === A.length && O.length === A.length, "Backend op mul() sizes differ");
    for (let i = 0; i < A.length; i++) O[i] = A[i]! * B[i]!;
  }

  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, out: Tensor, mean: Tensor, rstd: Tensor, eps: number): void {
    const X = t32(x, "x").data;
    const G = t32(gamma, "gamma").data;
    const B = t32(beta, "beta").data;
    const O = t32(out, "out").data;
    const MU = t32(mean, "mean").data;
    const RS = t32(rstd, "rstd").data;
    const [rows, cols] = dims(x);
    need(G.length === cols && B.length === cols && O.length === X.length && MU.length === rows && RS.length === rows, "Backend op layerNorm() shapes do not fit");
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let mu = 0;
      for (let c = 0; c < cols; c++) mu += X[o + c]!;
      mu /= cols;
      let v = 0;
      for (let c = 0; c < cols; c++) {
        const d = X[o + c]! - mu;
        v += d * d;
      }
      const rs = 1 / Math.sqrt(v / cols + eps);
      MU[r] = mu;
      RS[r] = rs;
      for (let c = 0; c < cols; c++) O[o + c] = (X[o + c]! - mu) * rs * G[c]! + B[c]!;
    }
  }

  layerNormBackward(x: Tensor, gamma: Tensor, mean: Tensor, rstd: Tensor, dy: Tensor, dx: Tensor, dGamma: Tensor, dBeta: Tensor): void {
    const X = t32(x, "x").data;
    const G = t32(gamma, "gamma").data;
    const MU = t32(mean, "mean").data;
    const RS = t32(rstd, "rstd").data;
    const DY = t32(dy, "dy").data;
    const DX = t32(dx, "dx").data;
    const DG = t32(dGamma, "dGamma").data;
    const DB = t32(dBeta, "dBeta").data;
    const [rows, cols] = dims(x);
    need(G.length === cols && DG.length === cols && DB.length === cols && DY.length === X.length && DX.length === X.length, "Backend op layerNormBackward() shapes do not fit");
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      const mu = MU[r]!;
      const rs = RS[r]!;
      let s1 = 0;
      let s2 = 0;
      for (let c = 0; c < cols; c++) {
        const xhat = (X[o + c]! - mu) * rs;
        const d = DY[o + c]!;
        const dxhat = d * G[c]!;
        s1 += dxhat;
        s2 += dxhat * xhat;
        DG[c]! += d * xhat;
        DB[c]! += d;
      }
      s1 /= cols;
      s2 /= cols;
      for (let c = 0; c < cols; c++) {
        const xhat = (X[o + c]! - mu) * rs;
        DX[o + c] = rs * (DY[o + c]! * G[c]! - s1 - xhat * s2);
      }
    }
  }

  sgd(param: Tensor, grad: Tensor, velocity: Tensor, s: SgdStep): void {
    const P = t32(param, "param").data;
    const G = t32(grad, "grad").data;
    const V = t32(velocity, "velocity").data;
    need(G.length === P.length && V.length === P.length, "Backend op sgd() sizes differ");
    const { lr, momentum: mu, weightDecay: wd, nesterov } = s;
    for (let i = 0; i < P.length; i++) {
      let d = G[i]! + wd * P[i]!;
      if (mu !== 0) {
        const v = mu * V[i]! + d;
        V[i] = v;
        d = nesterov ? d + mu * v : v;
      }
      P[i]! -= lr * d;
    }
  }

  adam(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, s: AdamStep): void {
    const P = t32(param, "param").data;
    const G = t32(grad, "grad").data;
    const M = t32(m, "m").data;
    const V = t32(v, "v").data;
    need(G.length === P.length && M.length === P.length && V.length === P.length, "Backend op adam() sizes differ");
    const { lr, beta1: b1, beta2: b2, eps, weightDecay: wd, decoupled } = s;
    const stepSize = lr / (1 - b1 ** s.step);
    const bc2Sqrt = Math.sqrt(1 - b2 ** s.step);
    const decay = decoupled ? 1 - lr * wd : 1;
    const l2 = decoupled ? 0 : wd;
    for (let i = 0; i < P.length; i++) {
      const p = P[i]! * decay;
      const g = G[i]! + l2 * p;
      const mi = b1 * M[i]! + (1 - b1) * g;
      const vi = b2 * V[i]! + (1 - b2) * g * g;
      M[i] = mi;
      V[i] = vi;
      P[i] = p - stepSize * mi / (Math.sqrt(vi) / bc2Sqrt + eps);
    }
  }

  clipGradNorm(grads: readonly Tensor[], maxNorm: number, norm: Tensor): void {
    const N = t32(norm, "norm").data;
    let sq = 0;
    const arrays = grads.map((g, i) => t32(g, `grads[${i}]`).data);
    for (const g of arrays) for (let i = 0; i < g.length; i++) sq += g[i]! * g[i]!;
    const total = Math.sqrt(sq);
    N[0] = total;
    const coef = maxNorm / (total + 1e-6);
    if (coef < 1) for (const g of arrays) for (let i = 0; i < g.length; i++) g[i]! *= coef;
  }

  confusion(logits: Tensor, labels: Tensor, counts: Tensor): void {
    const X = t32(logits, "logits").data;
    const L = ti32(labels, "labels").data;
    const C = ti32(counts, "counts").data;
    const [rows, cols] = dims(logits);
    need(L.length === rows && C.length === cols * cols, "Backend op confusion() shapes do not fit");
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let best = 0;
      for (let c = 1; c < cols; c++) if (X[o + c]! > X[o + best]!) best = c;
      const label = L[r]!;
      if (label >= 0 && label < cols) C[label * cols + best]! += 1;
    }
  }

  topK(logits: Tensor, labels: Tensor, k: number, hits: Tensor): void {
    const X = t32(logits, "logits").data;
    const L = ti32(labels, "labels").data;
    const H = ti32(hits, "hits").data;
    const [rows, cols] = dims(logits);
    need(L.length === rows && H.length >= 1, "Backend op topK() shapes do not fit");
    let count = 0;
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      const label = L[r]!;
      if (label < 0 || label >= cols) continue;
      const own = X[o + label]!;
      let above = 0;
      for (let c = 0; c < cols; c++) if (c !== label && X[o + c]! >= own) above++;
      if (above < k) count++;
    }
    H[0]! += count;
  }

  regressionSums(pred: Tensor, target: Tensor, sums: Tensor): void {
    const P = t32(pred, "pred").data;
    const T = t32(target, "target").data;
    const S = t32(sums, "sums").data;
    need(T.length === P.length && S.length >= 2, "Backend op regressionSums() shapes do not fit");
    let a = 0;
    let q = 0;
    for (let i = 0; i < P.length; i++) {
      const e = P[i]! - T[i]!;
      a += Math.abs(e);
      q += e * e;
    }
    S[0]! += a;
    S[1]! += q;
  }

  flush(): void {}

  async sync(): Promise<void> {
    // Nothing is queued on the CPU; give workers that exited while idle the chance to return.
    await this.#wasm?.ready();
  }

  destroy(): void {
    // The wasm engine (memory, workers) is shared by every CPU backend of the process; its
    // workers exit on their own when idle.
    this.#destroyed = true;
    this.#wasm = undefined;
  }
}
