/**
 * The trainer's WebGPU backend: WGSL compute kernels behind the {@link Backend} port.
 *
 * Ops only record dispatches into one command encoder (one compute pass where possible); the
 * encoder is submitted every {@link MAX_DISPATCHES} dispatches and on `flush()`, `read()`,
 * `sync()` and `write()`. Each op's small parameters take a fresh slot of a uniform ring that is
 * uploaded with one `writeBuffer` just before its submit, so ops still waiting in an encoder never
 * see parameters of later ops. Matmul comes in two families — register-tiled (no shared memory;
 * fast on llvmpipe and other CPU-like adapters) and workgroup-tiled (shared memory; fast on real
 * GPUs) — and `kernels: "auto"` times both at start-up and keeps the faster.
 *
 * Runs on Deno's `navigator.gpu` and, in Bun and Node, on Dawn from the `webgpu` npm package.
 * @module
 */

import { KeelError } from "../../../core/mod.ts";
import type { Activation, AdamStep, Backend, DType, SgdStep, Tensor } from "../backend.ts";
import { adapterLimits, describeAdapter, findAdapter } from "./_gpu.ts";
import {
  actBackwardKernel,
  adamKernel,
  aliasKernel,
  biasActKernel,
  clipScaleKernel,
  confusionKernel,
  dropoutKernel,
  finishReduceKernel,
  type Kernel,
  laneMatmul,
  layerNormBackwardDxKernel,
  layerNormBackwardParamsKernel,
  layerNormKernel,
  type MatmulFlags,
  msePartialKernel,
  mulKernel,
  REDUCE_GROUPS,
  registerTiledMatmul,
  type RegisterTiling,
  regressionPartialKernel,
  sgdKernel,
  smallMatmul,
  softmaxCrossEntropyKernel,
  softmaxKernel,
  sumRowsKernel,
  sumSquaresPartialKernel,
  topKKernel,
  WG,
  workgroupTiledMatmul,
} from "./_kernels.ts";

/** A matmul kernel family. */
export type KernelFamily = "register-tiled" | "workgroup-tiled";

/** Options of {@link createWebGpuBackend}. */
export interface WebGpuBackendOptions {
  /** A GPU to use; default navigator.gpu (Deno) or the `webgpu` npm package's (Bun/Node). */
  readonly gpu?: GPU;
  readonly powerPreference?: GPUPowerPreference;
  /**
   * Force a kernel family instead of autotuning: "register-tiled" (fast on llvmpipe/CPU-like
   * adapters) or "workgroup-tiled" (shared memory; fast on real GPUs).
   */
  readonly kernels?: "auto" | KernelFamily;
}

/** Dispatches recorded before the encoder is submitted on its own. */
export const MAX_DISPATCHES = 256;

// The WebGPU flag values, spelled out so the module needs no GPU* globals (Dawn in Bun and Node
// does not install them).
const USAGE = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
} as const;
const COMPUTE_STAGE = 0x4;
const MAP_READ = 0x1;

/** The register tile the llvmpipe family uses (outputs per invocation and workgroup shape). */
const REGISTER_TILING: RegisterTiling = { tm: 16, tn: 16, wgx: 8 };

/**
 * Products with fewer multiply-adds than this use a small-product kernel (the lane kernel on the
 * register-tiled family, else a plain one-output-per-invocation one): the tiled families are
 * unrolled, and llvmpipe takes about a second to compile each variant.
 */
const SMALL_MATMUL = 1 << 20;

/** Invocations per workgroup of the small-product kernel on the register-tiled family. */
const LANES = 8;

/** Kernel families already timed, by adapter name, so a second backend does not re-tune. */
const tuned = new Map<string, KernelFamily>();

let nextTensorId = 1;

class GpuTensor implements Tensor {
  readonly shape: readonly number[];
  readonly size: number;
  readonly dtype: DType;
  readonly backend = "webgpu";
  readonly buffer: GPUBuffer;
  readonly id: number = nextTensorId++;
  readonly owner: WebGpuBackend;
  disposed = false;

  constructor(
    owner: WebGpuBackend,
    shape: readonly number[],
    size: number,
    dtype: DType,
    buffer: GPUBuffer,
  ) {
    this.owner = owner;
    this.shape = Object.freeze([...shape]);
    this.size = size;
    this.dtype = dtype;
    this.buffer = buffer;
  }
}

interface CompiledKernel {
  readonly kernel: Kernel;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new RangeError(
        `Shape [${shape.join(", ")}] has a dimension that is not a non-negative integer`,
      );
    }
    n *= d;
  }
  return n;
}

function lastDim(t: Tensor): number {
  return t.shape.length === 0 ? 1 : t.shape[t.shape.length - 1]!;
}

function expectSize(t: Tensor, size: number, what: string): void {
  if (t.size !== size) {
    throw new RangeError(
      `Tensor "${what}" has shape [${
        t.shape.join(", ")
      }] (${t.size} elements) but the op needs ${size}`,
    );
  }
}

/** The live backend; made by {@link createWebGpuBackend}. */
class WebGpuBackend implements Backend {
  readonly name = "webgpu";
  readonly device: string;
  kernels: KernelFamily = "register-tiled";
  readonly lost: Promise<Error>;

  #gpu: GPU | undefined;
  #device: GPUDevice;
  #queue: GPUQueue;
  #maxTensorBytes: number;
  #maxTensorLimit: string;
  #maxGroups: number;
  #destroyed = false;
  #lostError: KeelError | undefined;
  #gpuError: string | undefined;
  #tiling: RegisterTiling = REGISTER_TILING;
  #vecA = true;

  #encoder: GPUCommandEncoder | undefined;
  #pass: GPUComputePassEncoder | undefined;
  #dispatches = 0;
  #pendingDestroy: GPUBuffer[] = [];

  #slotBytes: number;
  #uniform: GPUBuffer;
  #uniformData: ArrayBuffer;
  #u32: Uint32Array;
  #i32: Int32Array;
  #f32: Float32Array;

  #compiled = new Map<string, CompiledKernel>();
  #bindGroups = new Map<string, GPUBindGroup>();
  #groupsByTensor = new Map<number, string[]>();
  #live = new Set<GpuTensor>();
  #scratch: GpuTensor | undefined;

  #sharedThreads: 8 | 16;

  constructor(gpu: GPU, device: GPUDevice, adapterName: string, software: boolean) {
    this.#sharedThreads = software ? 8 : 16;
    this.#gpu = gpu;
    this.#device = device;
    this.#queue = device.queue;
    this.device = adapterName;
    const limits = device.limits;
    if (limits.maxBufferSize < limits.maxStorageBufferBindingSize) {
      this.#maxTensorBytes = limits.maxBufferSize;
      this.#maxTensorLimit = "maxBufferSize";
    } else {
      this.#maxTensorBytes = limits.maxStorageBufferBindingSize;
      this.#maxTensorLimit = "maxStorageBufferBindingSize";
    }
    this.#maxGroups = limits.maxComputeWorkgroupsPerDimension;
    const align = Math.max(limits.minUniformBufferOffsetAlignment, 16);
    this.#slotBytes = Math.ceil(64 / align) * align;
    this.#uniformData = new ArrayBuffer(this.#slotBytes * MAX_DISPATCHES);
    this.#u32 = new Uint32Array(this.#uniformData);
    this.#i32 = new Int32Array(this.#uniformData);
    this.#f32 = new Float32Array(this.#uniformData);
    this.#uniform = device.createBuffer({
      size: this.#uniformData.byteLength,
      usage: USAGE.UNIFORM | USAGE.COPY_DST,
    });

    let rejectLost: (e: Error) => void = () => {};
    this.lost = new Promise<Error>((_, reject) => {
      rejectLost = reject;
    });
    this.lost.catch(() => {});
    device.lost.then((info) => {
      if (this.#destroyed) return;
      this.#lostError = new KeelError(
        "E_TRAIN_DEVICE_LOST",
        `The WebGPU device "${adapterName}" was lost (${info.reason ?? "unknown"}${
          info.message ? `: ${info.message}` : ""
        }); ` +
          "create a new backend or use the CPU backend (--backend cpu)",
      );
      this.#encoder = undefined;
      this.#pass = undefined;
      rejectLost(this.#lostError);
    });
    device.addEventListener("uncapturederror", (event) => {
      const e = (event as GPUUncapturedErrorEvent).error;
      this.#gpuError ??= e.message;
    });
  }

  /** The underlying device, for tests that simulate a device loss. */
  get _device(): GPUDevice {
    return this.#device;
  }

  /** Sets the register tile (for benchmarks). */
  _setTiling(tiling: RegisterTiling, vecA = true): void {
    this.#tiling = tiling;
    this.#vecA = vecA;
  }

  // ---- tensors ----

  tensor(data: Float32Array | Int32Array, shape: readonly number[]): Tensor {
    this.#alive();
    const size = sizeOf(shape);
    if (data.length !== size) {
      throw new RangeError(
        `Data has ${data.length} elements but shape [${shape.join(", ")}] needs ${size}`,
      );
    }
    const dtype: DType = data instanceof Int32Array ? "i32" : "f32";
    const t = this.#allocate(shape, size, dtype, true);
    const mapped = t.buffer.getMappedRange();
    if (dtype === "i32") new Int32Array(mapped, 0, size).set(data);
    else new Float32Array(mapped, 0, size).set(data);
    t.buffer.unmap();
    return t;
  }

  zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
    this.#alive();
    return this.#allocate(shape, sizeOf(shape), dtype, false);
  }

  write(t: Tensor, data: Float32Array | Int32Array): void {
    const g = this.#t(t, "t");
    if (data.length !== g.size) {
      throw new RangeError(`Data has ${data.length} elements but the tensor holds ${g.size}`);
    }
    // writeBuffer runs before the next submit: submit what is queued first so it sees old values.
    this.flush();
    if (g.size === 0) return;
    const src = data.buffer instanceof ArrayBuffer
      ? data as Float32Array<ArrayBuffer> | Int32Array<ArrayBuffer>
      : data.slice();
    this.#queue.writeBuffer(g.buffer, 0, src.buffer, src.byteOffset, g.size * 4);
  }

  fill0(t: Tensor): void {
    const g = this.#t(t, "t");
    this.#endPass().clearBuffer(g.buffer);
    this.#count();
  }

  copy(src: Tensor, dst: Tensor): void {
    const s = this.#t(src, "src");
    const d = this.#t(dst, "dst");
    expectSize(d, s.size, "dst");
    if (s.size === 0 || s === d) return;
    this.#endPass().copyBufferToBuffer(s.buffer, 0, d.buffer, 0, s.size * 4);
    this.#count();
  }

  async read(t: Tensor): Promise<Float32Array | Int32Array> {
    const g = this.#t(t, "t");
    const bytes = Math.max(16, g.size * 4);
    const staging = this.#device.createBuffer({
      size: bytes,
      usage: USAGE.MAP_READ | USAGE.COPY_DST,
    });
    this.#endPass().copyBufferToBuffer(g.buffer, 0, staging, 0, bytes);
    this.flush();
    try {
      await this.#raceLost(staging.mapAsync(MAP_READ));
      const copy = staging.getMappedRange().slice(0, g.size * 4);
      staging.unmap();
      this.#throwGpuError();
      return g.dtype === "i32" ? new Int32Array(copy) : new Float32Array(copy);
    } finally {
      staging.destroy();
    }
  }

  dispose(t: Tensor): void {
    const g = this.#t(t, "t");
    g.disposed = true;
    this.#live.delete(g);
    this.#forgetBindGroups(g);
    if (this.#encoder) this.#pendingDestroy.push(g.buffer);
    else g.buffer.destroy();
  }

  // ---- compute ----

  matmul(
    a: Tensor,
    b: Tensor,
    out: Tensor,
    options: { transA?: boolean; transB?: boolean; accumulate?: boolean } = {},
  ): void {
    const ga = this.#t(a, "a");
    const gb = this.#t(b, "b");
    const go = this.#t(out, "out");
    if (ga.shape.length !== 2 || gb.shape.length !== 2) {
      throw new RangeError("matmul needs two matrices");
    }
    const transA = options.transA === true;
    const transB = options.transB === true;
    const [a0, a1] = ga.shape as [number, number];
    const [b0, b1] = gb.shape as [number, number];
    const m = transA ? a1 : a0;
    const k = transA ? a0 : a1;
    const kb = transB ? b1 : b0;
    const n = transB ? b0 : b1;
    if (k !== kb) throw new RangeError(`matmul inner dimensions differ: ${k} and ${kb}`);
    expectSize(go, m * n, "out");
    if (ga === go || gb === go) throw new RangeError("matmul cannot write into one of its inputs");
    const accumulate = options.accumulate === true;
    if (m === 0 || n === 0) return;
    if (k === 0) {
      if (!accumulate) this.fill0(go);
      return;
    }
    const values = [m, n, k, accumulate ? 1 : 0];
    if (m * n * k < SMALL_MATMUL && m * n >= 64 && this.kernels === "register-tiled") {
      // Invocations along the longer side, each with 4 of its rows (or columns) and up to 16
      // outputs of the other side in registers: about 3× the old one-output kernel on llvmpipe
      // for the 128×10 products around an MLP's output layer; 1 per invocation when 4 would
      // leave a single workgroup. (8 is ~20% faster again but triples llvmpipe's cold compile,
      // to ~0.9 s a variant; 4 costs ~0.3 s, once per machine with Mesa's shader cache.) Under
      // 64 outputs (a single row of logits) the one-output kernel is as fast or faster.
      const rows = m >= n;
      const along = rows ? m : n;
      const other = rows ? n : m;
      const tile = other === 1 ? 1 : other <= 4 ? 4 : 16;
      const tiles = Math.ceil(other / tile);
      const groups = (rb: number) => Math.ceil(along / (LANES * rb)) * tiles;
      const rb = groups(4) >= 2 ? 4 : 1;
      this.#dispatch(
        () => laneMatmul(transA, transB, rows, tile, rb, LANES),
        `mm-lane:${+transA}${+transB}${+rows}:${tile}:${rb}:${LANES}`,
        [ga, gb, go],
        values,
        Math.ceil(along / (LANES * rb)),
        tiles,
      );
    } else if (m * n * k < SMALL_MATMUL) {
      this.#dispatch(
        () => smallMatmul(transA, transB),
        `mm-small:${+transA}${+transB}`,
        [ga, gb, go],
        values,
        Math.ceil(n / 8),
        Math.ceil(m / 8),
      );
    } else if (this.kernels === "register-tiled") {
      const t = this.#tiling;
      const edgeN = n % t.tn !== 0;
      // Reading A four k at a time is ~1.5× faster but four times the code; only the common
      // vec4 B case gets it, so rarer variants stay quick to compile.
      const vecA = this.#vecA && !transA && !transB && !edgeN && k % 4 === 0;
      const flags: MatmulFlags = { transA, transB, edgeM: m % t.tm !== 0, edgeN, vecA };
      const gx = Math.ceil(Math.ceil(n / t.tn) / t.wgx);
      const gy = Math.ceil(m / t.tm);
      this.#dispatch(
        () => registerTiledMatmul(t, flags),
        `mm-reg:${t.tm}x${t.tn}:${t.wgx}:${+transA}${+transB}${+flags.edgeM}${+flags
          .edgeN}${+vecA}`,
        [ga, gb, go],
        values,
        gx,
        gy,
      );
    } else {
      const flags: MatmulFlags = { transA, transB, edgeM: true, edgeN: true };
      const threads = this.#sharedThreads;
      const gx = Math.ceil(n / (4 * threads));
      const gy = Math.ceil(m / (4 * threads));
      this.#dispatch(
        () => workgroupTiledMatmul(flags, threads),
        `mm-wg:${threads}:${+transA}${+transB}`,
        [ga, gb, go],
        values,
        gx,
        gy,
      );
    }
  }

  biasAct(x: Tensor, bias: Tensor, act: Activation, out: Tensor): void {
    const gx = this.#t(x, "x");
    const gb = this.#t(bias, "bias");
    const go = this.#t(out, "out");
    const cols = lastDim(gx);
    expectSize(gb, cols, "bias");
    expectSize(go, gx.size, "out");
    if (cols === 0) return;
    this.#flat(() => biasActKernel(act), `biasAct:${act}`, [gx, gb, go], gx.size, [cols]);
  }

  actBackward(act: Activation, pre: Tensor, post: Tensor, dy: Tensor, dx: Tensor): void {
    const gp = this.#t(pre, "pre");
    const gq = this.#t(post, "post");
    const gd = this.#t(dy, "dy");
    const gx = this.#t(dx, "dx");
    expectSize(gq, gp.size, "post");
    expectSize(gd, gp.size, "dy");
    expectSize(gx, gp.size, "dx");
    this.#flat(() => actBackwardKernel(act), `actBackward:${act}`, [gp, gq, gd, gx], gp.size, []);
  }

  sumRows(x: Tensor, out: Tensor, options: { accumulate?: boolean } = {}): void {
    const gx = this.#t(x, "x");
    const go = this.#t(out, "out");
    const cols = lastDim(gx);
    expectSize(go, cols, "out");
    if (cols === 0) return;
    const rows = gx.size / cols;
    this.#dispatch(() => sumRowsKernel, "sumRows", [gx, go], [
      rows,
      cols,
      options.accumulate === true ? 1 : 0,
    ], Math.ceil(cols / WG));
  }

  softmax(x: Tensor, out: Tensor): void {
    const gx = this.#t(x, "x");
    const go = this.#t(out, "out");
    expectSize(go, gx.size, "out");
    const cols = lastDim(gx);
    if (cols === 0 || gx.size === 0) return;
    const rows = gx.size / cols;
    this.#dispatch(() => softmaxKernel, "softmax", [gx, go], [rows, cols], Math.ceil(rows / 64));
  }

  softmaxCrossEntropy(
    logits: Tensor,
    labels: Tensor,
    dLogits: Tensor,
    lossSum: Tensor,
    scale: number,
  ): void {
    const gx = this.#t(logits, "logits");
    const gl = this.#t(labels, "labels");
    const gd = this.#t(dLogits, "dLogits");
    const gs = this.#t(lossSum, "lossSum");
    const cols = lastDim(gx);
    const rows = cols === 0 ? 0 : gx.size / cols;
    expectSize(gl, rows, "labels");
    expectSize(gd, gx.size, "dLogits");
    if (gs.size < 1) throw new RangeError('Tensor "lossSum" is empty');
    if (rows === 0) return;
    const scratch = this.#scratchFor(rows);
    this.#dispatch(() => softmaxCrossEntropyKernel, "softmaxCE", [gx, gl, gd, scratch], [
      rows,
      cols,
      scale,
      0x7fc00000,
    ], Math.ceil(rows / 64));
    this.#finish(scratch, rows, 1, 0, gs, 0, 0);
  }

  mse(pred: Tensor, target: Tensor, dPred: Tensor, lossSum: Tensor, scale: number): void {
    const gp = this.#t(pred, "pred");
    const gt = this.#t(target, "target");
    const gd = this.#t(dPred, "dPred");
    const gs = this.#t(lossSum, "lossSum");
    expectSize(gt, gp.size, "target");
    expectSize(gd, gp.size, "dPred");
    if (gs.size < 1) throw new RangeError('Tensor "lossSum" is empty');
    if (gp.size === 0) return;
    const groups = Math.min(REDUCE_GROUPS, Math.ceil(gp.size / WG));
    const scratch = this.#scratchFor(groups);
    this.#dispatch(
      () => msePartialKernel,
      "msePartial",
      [gp, gt, gd, scratch],
      [gp.size, 0, scale],
      groups,
    );
    this.#finish(scratch, groups, 1, 0, gs, 0, 0);
  }

  dropout(x: Tensor, out: Tensor, mask: Tensor, p: number, seed: number): void {
    const gx = this.#t(x, "x");
    const go = this.#t(out, "out");
    const gm = this.#t(mask, "mask");
    expectSize(go, gx.size, "out");
    expectSize(gm, gx.size, "mask");
    if (!(p >= 0 && p < 1)) throw new RangeError(`Dropout probability ${p} is outside [0, 1)`);
    const threshold = Math.ceil(p * 16777216);
    this.#flat(() => dropoutKernel, "dropout", [gx, go, gm], gx.size, [
      seed >>> 0,
      threshold,
      1 / (1 - p),
    ]);
  }

  mul(a: Tensor, b: Tensor, out: Tensor): void {
    const ga = this.#t(a, "a");
    const gb = this.#t(b, "b");
    const go = this.#t(out, "out");
    expectSize(gb, ga.size, "b");
    expectSize(go, ga.size, "out");
    this.#flat(() => mulKernel, "mul", [ga, gb, go], ga.size, []);
  }

  layerNorm(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    out: Tensor,
    mean: Tensor,
    rstd: Tensor,
    eps: number,
  ): void {
    const gx = this.#t(x, "x");
    const cols = lastDim(gx);
    const rows = cols === 0 ? 0 : gx.size / cols;
    const gg = this.#t(gamma, "gamma");
    const gb = this.#t(beta, "beta");
    const go = this.#t(out, "out");
    const gm = this.#t(mean, "mean");
    const gr = this.#t(rstd, "rstd");
    expectSize(gg, cols, "gamma");
    expectSize(gb, cols, "beta");
    expectSize(go, gx.size, "out");
    expectSize(gm, rows, "mean");
    expectSize(gr, rows, "rstd");
    if (rows === 0) return;
    this.#dispatch(
      () => layerNormKernel,
      "layerNorm",
      [gx, gg, gb, go, gm, gr],
      [rows, cols, eps],
      Math.ceil(rows / 64),
    );
  }

  layerNormBackward(
    x: Tensor,
    gamma: Tensor,
    mean: Tensor,
    rstd: Tensor,
    dy: Tensor,
    dx: Tensor,
    dGamma: Tensor,
    dBeta: Tensor,
  ): void {
    const gx = this.#t(x, "x");
    const cols = lastDim(gx);
    const rows = cols === 0 ? 0 : gx.size / cols;
    const gg = this.#t(gamma, "gamma");
    const gm = this.#t(mean, "mean");
    const gr = this.#t(rstd, "rstd");
    const gdy = this.#t(dy, "dy");
    const gdx = this.#t(dx, "dx");
    const gdg = this.#t(dGamma, "dGamma");
    const gdb = this.#t(dBeta, "dBeta");
    expectSize(gg, cols, "gamma");
    expectSize(gm, rows, "mean");
    expectSize(gr, rows, "rstd");
    expectSize(gdy, gx.size, "dy");
    expectSize(gdx, gx.size, "dx");
    expectSize(gdg, cols, "dGamma");
    expectSize(gdb, cols, "dBeta");
    if (rows === 0) return;
    if (gdx === gdy || gdx === gx) {
      throw new RangeError("layerNormBackward cannot write dx over dy or x");
    }
    this.#dispatch(
      () => layerNormBackwardDxKernel,
      "layerNormBackwardDx",
      [gx, gg, gm, gr, gdy, gdx],
      [rows, cols],
      Math.ceil(rows / 64),
    );
    this.#dispatch(
      () => layerNormBackwardParamsKernel,
      "layerNormBackwardParams",
      [gx, gm, gr, gdy, gdg, gdb],
      [rows, cols],
      Math.ceil(cols / WG),
    );
  }

  sgd(param: Tensor, grad: Tensor, velocity: Tensor, step: SgdStep): void {
    const gp = this.#t(param, "param");
    const gg = this.#t(grad, "grad");
    const gv = this.#t(velocity, "velocity");
    expectSize(gg, gp.size, "grad");
    expectSize(gv, gp.size, "velocity");
    this.#flat(() => sgdKernel, "sgd", [gp, gg, gv], gp.size, [
      step.lr,
      step.momentum,
      step.weightDecay,
      step.nesterov ? 1 : 0,
    ]);
  }

  adam(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, step: AdamStep): void {
    const gp = this.#t(param, "param");
    const gg = this.#t(grad, "grad");
    const gm = this.#t(m, "m");
    const gv = this.#t(v, "v");
    expectSize(gg, gp.size, "grad");
    expectSize(gm, gp.size, "m");
    expectSize(gv, gp.size, "v");
    if (!(step.step >= 1)) throw new RangeError(`Adam step ${step.step} must be 1 or more`);
    const bc1 = 1 - Math.pow(step.beta1, step.step);
    const bc2 = 1 - Math.pow(step.beta2, step.step);
    this.#flat(() => adamKernel, "adam", [gp, gg, gm, gv], gp.size, [
      step.lr,
      step.beta1,
      step.beta2,
      step.eps,
      step.weightDecay,
      step.decoupled ? 1 : 0,
      step.lr / bc1,
      Math.sqrt(bc2),
    ]);
  }

  clipGradNorm(grads: readonly Tensor[], maxNorm: number, norm: Tensor): void {
    const gs = grads.map((g, i) => this.#t(g, `grads[${i}]`));
    const gn = this.#t(norm, "norm");
    if (gn.size < 1) throw new RangeError('Tensor "norm" is empty');
    const counts = gs.map((g) => Math.min(REDUCE_GROUPS, Math.ceil(g.size / WG)));
    const total = counts.reduce((s, c) => s + c, 0);
    const scratch = this.#scratchFor(Math.max(total, 1));
    let offset = 0;
    gs.forEach((g, i) => {
      const groups = counts[i]!;
      if (groups === 0) return;
      this.#dispatch(() => sumSquaresPartialKernel, "sumSquaresPartial", [g, scratch], [
        g.size,
        offset,
      ], groups);
      offset += groups;
    });
    this.#finish(scratch, total, 1, 0, gn, 0, 1);
    for (const g of gs) this.#flat(() => clipScaleKernel, "clipScale", [g, gn], g.size, [maxNorm]);
  }

  confusion(logits: Tensor, labels: Tensor, counts: Tensor): void {
    const gx = this.#t(logits, "logits");
    const gl = this.#t(labels, "labels");
    const gc = this.#t(counts, "counts");
    const cols = lastDim(gx);
    const rows = cols === 0 ? 0 : gx.size / cols;
    expectSize(gl, rows, "labels");
    expectSize(gc, cols * cols, "counts");
    if (gc.dtype !== "i32") throw new RangeError('Tensor "counts" must be i32');
    if (rows === 0) return;
    this.#dispatch(
      () => confusionKernel,
      "confusion",
      [gx, gl, gc],
      [rows, cols],
      Math.ceil(rows / 64),
    );
  }

  topK(logits: Tensor, labels: Tensor, k: number, hits: Tensor): void {
    const gx = this.#t(logits, "logits");
    const gl = this.#t(labels, "labels");
    const gh = this.#t(hits, "hits");
    const cols = lastDim(gx);
    const rows = cols === 0 ? 0 : gx.size / cols;
    expectSize(gl, rows, "labels");
    if (gh.size < 1 || gh.dtype !== "i32") {
      throw new RangeError('Tensor "hits" must be a [1] i32 tensor');
    }
    if (!Number.isInteger(k) || k < 0) {
      throw new RangeError(`Top-k needs a non-negative integer k, got ${k}`);
    }
    if (rows === 0) return;
    this.#dispatch(() => topKKernel, "topK", [gx, gl, gh], [rows, cols, k], Math.ceil(rows / 64));
  }

  regressionSums(pred: Tensor, target: Tensor, sums: Tensor): void {
    const gp = this.#t(pred, "pred");
    const gt = this.#t(target, "target");
    const gs = this.#t(sums, "sums");
    expectSize(gt, gp.size, "target");
    if (gs.size < 2) throw new RangeError('Tensor "sums" must hold 2 elements');
    if (gp.size === 0) return;
    const groups = Math.min(REDUCE_GROUPS, Math.ceil(gp.size / WG));
    const scratch = this.#scratchFor(groups * 2);
    this.#dispatch(() => regressionPartialKernel, "regressionPartial", [gp, gt, scratch], [
      gp.size,
      0,
    ], groups);
    this.#finish(scratch, groups, 2, 0, gs, 0, 0);
    this.#finish(scratch, groups, 2, 1, gs, 1, 0);
  }

  // ---- queue ----

  flush(): void {
    this.#alive();
    if (this.#encoder === undefined) return;
    this.#endPass();
    const encoder = this.#encoder;
    this.#encoder = undefined;
    if (this.#dispatches > 0) {
      this.#queue.writeBuffer(
        this.#uniform,
        0,
        this.#uniformData,
        0,
        this.#dispatches * this.#slotBytes,
      );
    }
    this.#dispatches = 0;
    this.#queue.submit([encoder.finish()]);
    for (const buffer of this.#pendingDestroy) buffer.destroy();
    this.#pendingDestroy = [];
  }

  async sync(): Promise<void> {
    this.flush();
    await this.#raceLost(this.#queue.onSubmittedWorkDone());
    this.#throwGpuError();
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#encoder = undefined;
    this.#pass = undefined;
    for (const t of this.#live) t.buffer.destroy();
    this.#live.clear();
    this.#bindGroups.clear();
    this.#groupsByTensor.clear();
    this.#compiled.clear();
    this.#uniform.destroy();
    this.#device.destroy();
    // Dawn keeps Bun and Node alive while its GPU object is reachable.
    this.#gpu = undefined;
  }

  /** Runs one `size`-cube matmul `repeat` times and waits; for autotuning and benchmarks. */
  async _timeMatmul(family: KernelFamily, size: number, repeat: number): Promise<number> {
    const previous = this.kernels;
    this.kernels = family;
    const data = new Float32Array(size * size);
    for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 1000) / 1000 - 0.5;
    const a = this.tensor(data, [size, size]);
    const b = this.tensor(data, [size, size]);
    const out = this.zeros([size, size]);
    try {
      this.matmul(a, b, out);
      await this.read(out); // compiles the pipeline and warms the caches
      const start = performance.now();
      for (let i = 0; i < repeat; i++) this.matmul(a, b, out);
      await this.read(out);
      return performance.now() - start;
    } finally {
      this.kernels = previous;
      this.dispose(a);
      this.dispose(b);
      this.dispose(out);
    }
  }

  // ---- internals ----

  #alive(): void {
    if (this.#lostError) throw this.#lostError;
    if (this.#destroyed) {
      throw new KeelError(
        "E_TRAIN_DEVICE_LOST",
        'The "webgpu" backend was destroyed; create a new one to keep computing',
      );
    }
  }

  #t(t: Tensor, what: string): GpuTensor {
    this.#alive();
    if (!(t instanceof GpuTensor) || t.owner !== this) {
      throw new TypeError(
        `Tensor "${what}" does not belong to this "webgpu" backend (it is from "${t.backend}")`,
      );
    }
    if (t.disposed) throw new TypeError(`Tensor "${what}" was disposed`);
    return t;
  }

  #allocate(shape: readonly number[], size: number, dtype: DType, mapped: boolean): GpuTensor {
    const bytes = size * 4;
    if (bytes > this.#maxTensorBytes) {
      throw new KeelError(
        "E_TRAIN_LIMITS",
        `A tensor of shape [${
          shape.join(", ")
        }] needs ${bytes} bytes, over this adapter's ${this.#maxTensorLimit} of ` +
          `${this.#maxTensorBytes} bytes; use a smaller batch or layer, or the CPU backend (--backend cpu)`,
        {
          details: {
            shape: [...shape],
            bytes,
            limit: this.#maxTensorBytes,
            limitName: this.#maxTensorLimit,
          },
        },
      );
    }
    // Round up to 16 bytes so vec4 views of the buffer are always valid bindings.
    const buffer = this.#device.createBuffer({
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST,
      mappedAtCreation: mapped,
    });
    const t = new GpuTensor(this, shape, size, dtype, buffer);
    this.#live.add(t);
    return t;
  }

  #scratchFor(elements: number): GpuTensor {
    if (this.#scratch === undefined || this.#scratch.size < elements) {
      if (this.#scratch) this.dispose(this.#scratch);
      const size = Math.max(1024, 2 ** Math.ceil(Math.log2(elements)));
      this.#scratch = this.#allocate([size], size, "f32", false);
    }
    return this.#scratch;
  }

  #finish(
    src: GpuTensor,
    count: number,
    stride: number,
    comp: number,
    dst: GpuTensor,
    dstIndex: number,
    mode: 0 | 1,
  ): void {
    this.#dispatch(() => finishReduceKernel, "finishReduce", [src, dst], [
      count,
      stride,
      comp,
      dstIndex,
      mode,
    ], 1);
  }

  #encoderNow(): GPUCommandEncoder {
    this.#alive();
    this.#encoder ??= this.#device.createCommandEncoder();
    return this.#encoder;
  }

  #endPass(): GPUCommandEncoder {
    const encoder = this.#encoderNow();
    if (this.#pass) {
      this.#pass.end();
      this.#pass = undefined;
    }
    return encoder;
  }

  /** Counts a recorded command toward the automatic submit. */
  #count(): void {
    // Copies and clears use no uniform slot; they still count so a long run of them submits.
    if (this.#dispatches >= MAX_DISPATCHES) this.flush();
  }

  #compile(key: string, make: () => Kernel): CompiledKernel {
    let c = this.#compiled.get(key);
    if (c) return c;
    const kernel = make();
    const entries: GPUBindGroupLayoutEntry[] = [{
      binding: 0,
      visibility: COMPUTE_STAGE,
      buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: kernel.fields.length * 4 },
    }];
    kernel.bindings.forEach((b, i) => {
      entries.push({
        binding: i + 1,
        visibility: COMPUTE_STAGE,
        buffer: { type: b.access === "read" ? "read-only-storage" : "storage" },
      });
    });
    const layout = this.#device.createBindGroupLayout({ entries });
    const module = this.#device.createShaderModule({ code: kernel.code });
    const pipeline = this.#device.createComputePipeline({
      layout: this.#device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
    });
    c = { kernel, pipeline, layout };
    this.#compiled.set(key, c);
    return c;
  }

  #bindGroup(c: CompiledKernel, key: string, tensors: readonly GpuTensor[]): GPUBindGroup {
    const groupKey = key + "|" + tensors.map((t) => t.id).join(",");
    let group = this.#bindGroups.get(groupKey);
    if (group) return group;
    const entries: GPUBindGroupEntry[] = [{
      binding: 0,
      resource: { buffer: this.#uniform, offset: 0, size: this.#slotBytes },
    }];
    tensors.forEach((t, i) => entries.push({ binding: i + 1, resource: { buffer: t.buffer } }));
    group = this.#device.createBindGroup({ layout: c.layout, entries });
    this.#bindGroups.set(groupKey, group);
    for (const t of new Set(tensors)) {
      const keys = this.#groupsByTensor.get(t.id);
      if (keys) keys.push(groupKey);
      else this.#groupsByTensor.set(t.id, [groupKey]);
    }
    return group;
  }

  #forgetBindGroups(t: GpuTensor): void {
    for (const key of this.#groupsByTensor.get(t.id) ?? []) this.#bindGroups.delete(key);
    this.#groupsByTensor.delete(t.id);
  }

  #dispatch(
    make: () => Kernel,
    key: string,
    tensors: readonly GpuTensor[],
    values: readonly number[],
    gx: number,
    gy = 1,
  ): void {
    if (gx === 0 || gy === 0) return;
    if (gx > this.#maxGroups || gy > this.#maxGroups) {
      throw new KeelError(
        "E_TRAIN_LIMITS",
        `Kernel "${key}" needs ${gx}×${gy} workgroups, over this adapter's maxComputeWorkgroupsPerDimension of ${this.#maxGroups}; use smaller tensors`,
      );
    }
    const same = tensors.map((t) => tensors.indexOf(t));
    let bound = tensors;
    if (same.some((first, i) => first !== i)) {
      const base = make;
      make = () => aliasKernel(base(), same);
      key = `${key}|${same.join(",")}`;
      bound = tensors.filter((_, i) => same[i] === i);
    }
    const c = this.#compile(key, make);
    const group = this.#bindGroup(c, key, bound);
    this.#encoderNow();
    const slot = this.#dispatches++;
    const base = (slot * this.#slotBytes) / 4;
    c.kernel.fields.forEach(([, type], i) => {
      const v = values[i] ?? 0;
      if (type === "f32") this.#f32[base + i] = v;
      else if (type === "i32") this.#i32[base + i] = v;
      else this.#u32[base + i] = v >>> 0;
    });
    this.#pass ??= this.#encoder!.beginComputePass();
    this.#pass.setPipeline(c.pipeline);
    this.#pass.setBindGroup(0, group, [slot * this.#slotBytes]);
    this.#pass.dispatchWorkgroups(gx, gy);
    this.#count();
  }

  /** A 1-D kernel over `n` elements, as a 2-D grid when it needs more than 65535 workgroups. */
  #flat(
    make: () => Kernel,
    key: string,
    tensors: readonly GpuTensor[],
    n: number,
    extra: readonly number[],
  ): void {
    if (n === 0) return;
    const groups = Math.ceil(n / WG);
    const gx = Math.min(groups, this.#maxGroups);
    const gy = Math.ceil(groups / gx);
    this.#dispatch(make, key, tensors, [n, gx * WG, ...extra], gx, gy);
  }

  async #raceLost<T>(work: Promise<T>): Promise<T> {
    try {
      return await Promise.race([work, this.lost.then(() => work)]);
    } catch (e) {
      if (this.#lostError) throw this.#lostError;
      if (this.#destroyed) {
        throw new KeelError(
          "E_TRAIN_DEVICE_LOST",
          'The "webgpu" backend was destroyed while waiting for the GPU',
          { cause: e },
        );
      }
      throw e;
    }
  }

  #throwGpuError(): void {
    if (this.#gpuError !== undefined) {
      const message = this.#gpuError;
      this.#gpuError = undefined;
      throw new Error(
        `WebGPU reported an error in a kernel of the "webgpu" backend (a bug in Keel): ${message}`,
      );
    }
  }
}

/**
 * Makes a WebGPU backend on the first adapter found (see {@link WebGpuBackendOptions.gpu}),
 * requesting the adapter's maximum limits, and picks a matmul kernel family.
 * @throws {KeelError} `E_TRAIN_BACKEND_UNAVAILABLE` when no adapter or device can be had.
 */
export async function createWebGpuBackend(options: WebGpuBackendOptions = {}): Promise<Backend> {
  const choice = await findAdapter(options.gpu, options.powerPreference);
  if (choice === undefined) {
    throw new KeelError(
      "E_TRAIN_BACKEND_UNAVAILABLE",
      "No WebGPU adapter is available on this host; use the CPU backend (--backend cpu)",
    );
  }
  const { gpu, adapter } = choice;
  const name = describeAdapter(adapter);
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits: adapterLimits(adapter) });
  } catch (e) {
    try {
      // Some limits an adapter reports cannot be requested on every implementation; the ones
      // compute needs most are still worth asking for.
      const l = adapter.limits;
      device = await adapter.requestDevice({
        requiredLimits: {
          maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
          maxBufferSize: l.maxBufferSize,
          maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
          maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
          maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
          maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
          maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        },
      });
    } catch {
      throw new KeelError(
        "E_TRAIN_BACKEND_UNAVAILABLE",
        `The WebGPU adapter "${name}" would not create a device; use the CPU backend (--backend cpu)`,
        { cause: e },
      );
    }
  }
  const software = adapterIsSoftware(adapter);
  const backend = new WebGpuBackend(gpu, device, name, software);
  const family = options.kernels ?? "auto";
  if (family !== "auto") {
    backend.kernels = family;
  } else {
    let best = tuned.get(name);
    if (best === undefined) {
      const reg = await backend._timeMatmul("register-tiled", 512, 1);
      const wg = await backend._timeMatmul("workgroup-tiled", 512, 1);
      best = reg <= wg ? "register-tiled" : "workgroup-tiled";
      tuned.set(name, best);
    }
    backend.kernels = best;
  }
  return backend;
}

function adapterIsSoftware(adapter: GPUAdapter): boolean {
  const info = adapter.info as Partial<GPUAdapterInfo> & { isFallbackAdapter?: boolean };
  if (info.isFallbackAdapter === true) return true;
  const text = `${info.description ?? ""} ${info.device ?? ""} ${info.vendor ?? ""}`.toLowerCase();
  return /llvmpipe|lavapipe|swiftshader|softpipe/.test(text);
}

/** True when a WebGPU adapter can be had (from `options.gpu`, navigator.gpu or Dawn). */
export async function isWebGpuAvailable(options: { gpu?: GPU } = {}): Promise<boolean> {
  return (await findAdapter(options.gpu, undefined)) !== undefined;
}

/** The hooks tests and benchmarks use; not part of the {@link Backend} port. */
export interface WebGpuTestHooks {
  /** The GPUDevice, to simulate a device loss with `destroy()`. */
  readonly _device: GPUDevice;
  /** Times `repeat` size³ matmuls of one family (ms, including one read-back). */
  _timeMatmul(family: KernelFamily, size: number, repeat: number): Promise<number>;
  /** Overrides the register-tiled family's tile, and whether it reads A as vec4 along k. */
  _setTiling(tiling: RegisterTiling, vecA?: boolean): void;
}

/** The test hooks of a backend made by {@link createWebGpuBackend}; throws for any other. */
export function webGpuTestHooks(backend: Backend): WebGpuTestHooks {
  if (!(backend instanceof WebGpuBackend)) {
    throw new TypeError('The backend is not a "webgpu" backend');
  }
  return backend;
}

export type { RegisterTiling } from "./_kernels.ts";
