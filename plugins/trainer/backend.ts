/**
 * The trainer's compute port: one small interface, two implementations (`cpu/`, `webgpu/`), one
 * contract suite (`_conformance.ts`). Layers, losses and optimizers are written once against it.
 *
 * Every operation only *enqueues* work and writes into tensors the caller allocated; nothing is
 * read back until {@link Backend.read}. On WebGPU that keeps a whole run of steps inside a few
 * command submissions (Deno pays ≈ 12 ms per `mapAsync`); on the CPU the ops run at once.
 *
 * Layout: row-major. A matrix is a tensor of shape `[rows, cols]`; a batch of activations is
 * `[batch, features]`. Labels are `i32` tensors of shape `[batch]`.
 * @module
 */

/** Element types a tensor can hold. */
export type DType = "f32" | "i32";

/** Activations the backends fuse with a bias add. */
export const ACTIVATIONS = ["none", "relu", "gelu", "tanh", "sigmoid"] as const;
/** An activation name. `gelu` is the tanh approximation (as PyTorch's `approximate="tanh"`). */
export type Activation = (typeof ACTIVATIONS)[number];

/** A handle to memory a backend owns (a GPU buffer, a Float32Array). */
export interface Tensor {
  readonly shape: readonly number[];
  /** Product of `shape`. */
  readonly size: number;
  readonly dtype: DType;
  /** The backend that made it ("cpu", "webgpu"); a tensor is only valid on its own backend. */
  readonly backend: string;
}

/** Hyperparameters of one SGD step (PyTorch's `torch.optim.SGD` semantics). */
export interface SgdStep {
  readonly lr: number;
  /** 0 turns momentum off (then `velocity` is unused). */
  readonly momentum: number;
  /** L2 penalty added to the gradient: g += weightDecay · p. */
  readonly weightDecay: number;
  readonly nesterov: boolean;
}

/** Hyperparameters of one Adam/AdamW step (PyTorch's `Adam` / `AdamW` semantics). */
export interface AdamStep {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** true: AdamW (p -= lr·wd·p before the update); false: Adam (g += wd·p). */
  readonly decoupled: boolean;
  /** 1-based step number, for bias correction. */
  readonly step: number;
}

/**
 * What a backend does. Shapes are checked by the layers before they call in; a backend may
 * assume they are right (but must throw `RangeError` rather than corrupt memory when they are not).
 */
export interface Backend {
  /** "cpu" or "webgpu". */
  readonly name: string;
  /** What it runs on, for humans: the adapter's name, or "cpu (wasm simd, 2 threads)". */
  readonly device: string;
  /** Which kernel family it chose (e.g. "llvmpipe-register-tiled" or "shared-memory-tiled"). */
  readonly kernels: string;

  /** A new tensor holding a copy of `data`. */
  tensor(data: Float32Array | Int32Array, shape: readonly number[]): Tensor;
  /** A new zero-filled tensor. */
  zeros(shape: readonly number[], dtype?: DType): Tensor;
  /** Overwrites all of `t` with `data` (same length), in queue order with the other ops. */
  write(t: Tensor, data: Float32Array | Int32Array): void;
  /** Sets every element of `t` to 0, in queue order. */
  fill0(t: Tensor): void;
  /** Copies `src` into `dst` (same size), in queue order. */
  copy(src: Tensor, dst: Tensor): void;
  /** Waits for queued work and returns a copy of `t`'s contents. */
  read(t: Tensor): Promise<Float32Array | Int32Array>;
  /** Frees `t`; using it afterwards is a bug. */
  dispose(t: Tensor): void;

  /**
   * out = op(a) · op(b), where op transposes when asked. a: [m,k] (or [k,m] with transA),
   * b: [k,n] (or [n,k] with transB), out: [m,n]. With `accumulate`, out += instead of =.
   */
  matmul(a: Tensor, b: Tensor, out: Tensor, options?: { transA?: boolean; transB?: boolean; accumulate?: boolean }): void;
  /** out[r,c] = act(x[r,c] + bias[c]). x, out: [rows, cols]; bias: [cols]. `out` may be `x`. */
  biasAct(x: Tensor, bias: Tensor, act: Activation, out: Tensor): void;
  /**
   * dx = dy ⊙ act'(·). `pre` is the activation's input (x + bias) and `post` its output; relu,
   * tanh and sigmoid read `post`, gelu reads `pre`. `dx` may be `dy`.
   */
  actBackward(act: Activation, pre: Tensor, post: Tensor, dy: Tensor, dx: Tensor): void;
  /** out[c] = Σ_r x[r,c] (the bias gradient). With `accumulate`, out += instead of =. */
  sumRows(x: Tensor, out: Tensor, options?: { accumulate?: boolean }): void;
  /** out[r,:] = softmax(x[r,:]) (numerically stable). */
  softmax(x: Tensor, out: Tensor): void;

  /**
   * Softmax cross-entropy over logits [batch, classes] and i32 labels [batch]:
   * dLogits = (softmax − onehot) · scale, and lossSum[0] += Σ_rows −log softmax[label]
   * (a running total on the device; the caller resets it with `fill0`). A label outside
   * [0, classes) contributes NaN to lossSum (the trainer checks labels before upload).
   */
  softmaxCrossEntropy(logits: Tensor, labels: Tensor, dLogits: Tensor, lossSum: Tensor, scale: number): void;
  /** dPred = 2(pred − target) · scale; lossSum[0] += Σ (pred − target)². */
  mse(pred: Tensor, target: Tensor, dPred: Tensor, lossSum: Tensor, scale: number): void;

  /**
   * Inverted dropout: mask[i] = (uniform(seed, i) ≥ p) / (1 − p); out = x ⊙ mask. `uniform` is
   * the counter-based hash in `rng.ts` (`hashUniform`), so CPU and GPU draw the same mask.
   */
  dropout(x: Tensor, out: Tensor, mask: Tensor, p: number, seed: number): void;
  /** out = a ⊙ b (elementwise; dropout backward is `mul(dy, mask, dx)`). */
  mul(a: Tensor, b: Tensor, out: Tensor): void;

  /**
   * Layer norm over the last axis of x [rows, cols]: out = (x − μ)·rstd·gamma + beta, saving
   * mean[rows] and rstd[rows] for the backward pass.
   */
  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, out: Tensor, mean: Tensor, rstd: Tensor, eps: number): void;
  /** Gradients of layer norm: dx (=), dGamma and dBeta (+=, so the caller zeroes them per step). */
  layerNormBackward(
    x: Tensor, gamma: Tensor, mean: Tensor, rstd: Tensor, dy: Tensor,
    dx: Tensor, dGamma: Tensor, dBeta: Tensor,
  ): void;

  /** One SGD step on `param` in place; `velocity` is the momentum buffer (same shape). */
  sgd(param: Tensor, grad: Tensor, velocity: Tensor, step: SgdStep): void;
  /** One Adam/AdamW step on `param` in place; m and v are its moment buffers (same shape). */
  adam(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: AdamStep): void;
  /**
   * Scales every gradient by min(1, maxNorm / (‖grads‖₂ + 1e-6)) (global norm, as PyTorch's
   * `clip_grad_norm_`), without reading anything back. `norm` ([1] f32) receives ‖grads‖₂.
   */
  clipGradNorm(grads: readonly Tensor[], maxNorm: number, norm: Tensor): void;

  /**
   * Adds this batch to a confusion matrix: counts[label · classes + argmax(logits row)] += 1.
   * logits [batch, classes] f32, labels [batch] i32, counts [classes · classes] i32.
   */
  confusion(logits: Tensor, labels: Tensor, counts: Tensor): void;
  /** hits[0] += number of rows whose label is among the k largest logits. hits: [1] i32. */
  topK(logits: Tensor, labels: Tensor, k: number, hits: Tensor): void;
  /** sums[0] += Σ|pred − target|, sums[1] += Σ(pred − target)². sums: [2] f32. */
  regressionSums(pred: Tensor, target: Tensor, sums: Tensor): void;

  /** Submits what is queued (a no-op on the CPU). */
  flush(): void;
  /** Resolves when everything queued so far has run. */
  sync(): Promise<void>;
  /**
   * Rejects (once) when the device is lost; the trainer races it against its reads to fall back
   * or stop cleanly. Never settles on the CPU.
   */
  readonly lost: Promise<Error>;
  /** Frees everything this backend made. */
  destroy(): void;
}
