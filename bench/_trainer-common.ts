/**
 * What the trainer benchmark's orchestrator (`bench/trainer.ts`) and its per-configuration
 * subprocesses (`bench/_trainer-worker.ts`) share: the settings, the result shapes, the data and
 * the initial weights both sides start from, and the peak-RSS probe.
 * @module
 */

import { dense, loadMnist, type Model, type NamedWeights, relu, sequential } from "../plugins/trainer/mod.ts";

/** The settings one subprocess runs with (passed as JSON on its command line). */
export interface BenchSettings {
  readonly epochs: number;
  readonly trainRows: number;
  readonly testRows: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly seed: number;
  /** Read the running loss back every this many steps (Keel's WebGPU default, used by the TF.js loops too). */
  readonly lossReadEvery: number;
  /** Matmul size (n for n×n×n) and timed runs. */
  readonly matmulN: number;
  readonly matmulRuns: number;
  /** Steps per phase in the Keel step profile (0 skips it). */
  readonly profileSteps: number;
}

/** The subprocess modes. */
export const MODES = [
  "tfjs-webgpu-loop",
  "tfjs-webgpu-fit",
  "tfjs-wasm-loop",
  "tfjs-wasm-fit",
  "keel-webgpu",
  "keel-cpu",
  "mm-keel-webgpu",
  "mm-keel-cpu",
  "mm-tfjs-webgpu",
  "mm-tfjs-wasm",
] as const;

/** One subprocess configuration. */
export type Mode = (typeof MODES)[number];

/** What a training subprocess reports. */
export interface TrainResult {
  readonly kind: "train";
  readonly mode: Mode;
  /** Who trained, for humans ("TF.js 4.22 webgpu, manual minimize loop"). */
  readonly label: string;
  readonly device: string;
  readonly kernels: string;
  /** Seconds of each training epoch (no evaluation inside). */
  readonly epochSeconds: readonly number[];
  readonly trainRows: number;
  /** Training samples / second over epochs 2..N (all epochs when there is only one). */
  readonly samplesPerSecond: number;
  /** Over every epoch, the first one's warm-up (pipeline compiles, first uploads) included. */
  readonly samplesPerSecondAll: number;
  /** Test accuracy after the last epoch, 0..1. */
  readonly accuracy: number;
  /** Mean training loss of the last epoch, as the trainer reports it. */
  readonly finalLoss: number;
  /** Set-up before the first epoch: backend, model, weights (seconds). */
  readonly setupSeconds: number;
  readonly peakRssMb: number;
  /** Anything else worth printing (profile, read-back counts, threads). */
  readonly notes: Readonly<Record<string, unknown>>;
}

/** What a matmul subprocess reports. */
export interface MatmulResult {
  readonly kind: "matmul";
  readonly mode: Mode;
  readonly label: string;
  readonly device: string;
  readonly kernels: string;
  readonly n: number;
  readonly runs: number;
  /** Mean seconds per matmul over the timed runs. */
  readonly seconds: number;
  readonly gflops: number;
  readonly peakRssMb: number;
  /** Sampled entries checked against a float64 dot product: the largest absolute error, and whether it is within `tolerance`. */
  readonly check: { readonly samples: number; readonly maxAbsError: number; readonly tolerance: number; readonly ok: boolean };
  /** Extra kernels measured in the same process (Keel's two WebGPU families). */
  readonly variants: readonly { readonly label: string; readonly gflops: number }[];
  readonly notes: Readonly<Record<string, unknown>>;
}

/** A subprocess's one line of output. */
export type WorkerResult = TrainResult | MatmulResult;

/** The marker before the JSON line a subprocess prints (TF.js prints its own lines to stdout). */
export const RESULT_MARKER = "@@keel-bench-result ";

/** The layer sizes of the benchmark MLP. */
export const LAYERS = [784, 256, 128, 10] as const;

/** The benchmark MLP: 784-256-128-10 with relu, logits out. */
export function benchModel(): Model {
  return sequential([dense(784, 256), relu(), dense(256, 128), relu(), dense(128, 10)]);
}

/**
 * Keel's initial weights for the seed, as [kernel [in, out], bias [out]] per dense layer, so the
 * TF.js peers start from exactly the same point.
 */
export async function initialWeights(seed: number): Promise<{ kernel: Float32Array; bias: Float32Array; inF: number; outF: number }[]> {
  const model = benchModel();
  model.init(seed);
  const weights: NamedWeights = await model.getWeights();
  const out: { kernel: Float32Array; bias: Float32Array; inF: number; outF: number }[] = [];
  for (let i = 0; i < LAYERS.length - 1; i++) {
    const layer = model.spec.layers.filter((l) => l.type === "dense")[i]!;
    const kernel = weights[`${layer.name}.weight`];
    const bias = weights[`${layer.name}.bias`];
    if (!kernel || !bias) throw new Error(`Keel's weights have no "${layer.name}.weight"/"${layer.name}.bias"; the bench needs updating`);
    out.push({ kernel: kernel.data, bias: bias.data, inF: LAYERS[i]!, outF: LAYERS[i + 1]! });
  }
  return out;
}

/** The MNIST split every configuration trains and tests on. */
export function benchData(settings: BenchSettings): ReturnType<typeof loadMnist> {
  return loadMnist({ train: settings.trainRows, test: settings.testRows });
}

/** This process's peak resident set (VmHWM), in MB; NaN where /proc is not there. */
export function peakRssMb(): number {
  try {
    const kb = Number(/VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"))?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Samples/s over epochs 2..N (all epochs when only one ran) and over all epochs. */
export function throughput(epochSeconds: readonly number[], rows: number): { steady: number; all: number } {
  const total = epochSeconds.reduce((a, b) => a + b, 0);
  const all = (rows * epochSeconds.length) / total;
  if (epochSeconds.length < 2) return { steady: all, all };
  const rest = epochSeconds.slice(1);
  return { steady: (rows * rest.length) / rest.reduce((a, b) => a + b, 0), all };
}

/** Fraction of rows whose largest logit is at the label. */
export function accuracyOf(logits: Float32Array, labels: Int32Array | Float32Array, classes: number): number {
  let hits = 0;
  for (let r = 0; r < labels.length; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[r * classes + c]! > logits[r * classes + best]!) best = c;
    if (best === labels[r]) hits++;
  }
  return hits / labels.length;
}

/** Timed blocks per matmul measurement; the fastest counts (the machine is shared). */
export const BLOCKS = 3;

/** Matmuls per timed block: about 0.7 s of work, at least 1, at most `max`. */
export function blockRuns(secondsPerRun: number, max: number): number {
  return Math.max(1, Math.min(max, Math.round(0.7 / Math.max(secondsPerRun, 1e-5))));
}

/** A deterministic n×n matrix of values in [-1, 1). */
export function randomMatrix(n: number, seed: number): Float32Array {
  const out = new Float32Array(n * n);
  let s = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/**
 * Checks 64 entries of c = a · b (n×n, row-major) against float64 dot products. The tolerance,
 * 2e-5 · n, is far above f32 rounding and far below what a wrong kernel produces.
 */
export function checkMatmul(a: Float32Array, b: Float32Array, c: Float32Array, n: number): MatmulResult["check"] {
  let worst = 0;
  const samples = 64;
  for (let i = 0; i < samples; i++) {
    const r = (i * 7919) % n;
    const col = (i * 104729 + 13) % n;
    let dot = 0;
    for (let k = 0; k < n; k++) dot += a[r * n + k]! * b[k * n + col]!;
    const err = Math.abs(dot - c[r * n + col]!);
    worst = Number.isNaN(err) ? Infinity : Math.max(worst, err);
  }
  const tolerance = 2e-5 * n;
  return { samples, maxAbsError: worst, tolerance, ok: worst <= tolerance };
}
