/**
 * The TensorFlow.js 4.22 peers of the trainer benchmark, run inside one subprocess each:
 * training the benchmark MLP (a manual `optimizer.minimize` loop, or `model.fit`) and a square
 * matmul, on TF.js's `webgpu` backend (Deno's navigator.gpu) or its `wasm` backend.
 *
 * Both training paths start from Keel's initial weights for the seed (copied in with
 * `setWeights`), use Adam with Keel's defaults (betas 0.9/0.999, eps 1e-8) and softmax
 * cross-entropy on logits. The manual loop also walks the batches in Keel's order (the same
 * `shuffledOrder(rows, hash32(seed, epoch))`), uploads each batch as Keel does, and reads the
 * running loss back every `lossReadEvery` steps and at the end of each epoch, as Keel's trainer
 * does; `model.fit` keeps the data on the device and shuffles with its own generator.
 *
 * The wasm binaries load from `node_modules/@tensorflow/tfjs-backend-wasm/dist/` as a file:// URL
 * through the platform's fetch (`setWasmPaths(url, true)`). TF.js turns wasm threads off when it
 * thinks it runs in Node (`IS_NODE`, which Deno's npm compatibility makes true); forcing the flag
 * fails because its pthread worker is a `blob:` URL that Deno's `node:worker_threads` refuses,
 * so the wasm peer runs on one thread (SIMD on).
 * @module
 */

import type * as TfModule from "@tensorflow/tfjs";
import { batches, hash32, shuffledOrder } from "../plugins/trainer/mod.ts";
import {
  accuracyOf,
  BLOCKS,
  blockRuns,
  checkMatmul,
  randomMatrix,
  type BenchSettings,
  benchData,
  initialWeights,
  type MatmulResult,
  type Mode,
  peakRssMb,
  throughput,
  type TrainResult,
} from "./_trainer-common.ts";

type Tf = typeof TfModule;

const DEBUG = Deno.env.get("KEEL_BENCH_DEBUG") === "1";

/** TF.js on one backend, ready. */
interface TfSetup {
  readonly tf: Tf;
  readonly device: string;
  readonly notes: Record<string, unknown>;
}

async function adapterName(): Promise<string> {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    const info = adapter?.info;
    return info ? (info.description || `${info.vendor} ${info.device}`.trim() || "unknown adapter") : "no adapter";
  } catch {
    return "no adapter";
  }
}

async function setupTf(backend: "webgpu" | "wasm"): Promise<TfSetup> {
  const tf = await import("@tensorflow/tfjs");
  const notes: Record<string, unknown> = { tfjs: tf.version.tfjs };
  if (backend === "webgpu") {
    await import("@tensorflow/tfjs-backend-webgpu");
  } else {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    wasm.setWasmPaths(new URL("../node_modules/@tensorflow/tfjs-backend-wasm/dist/", import.meta.url).href, true);
  }
  if (!(await tf.setBackend(backend))) throw new Error(`TF.js could not start its "${backend}" backend`);
  await tf.ready();
  let device: string;
  if (backend === "webgpu") {
    device = await adapterName();
  } else {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    const threads = wasm.getThreadsCount();
    const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
    const mt = await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT");
    notes["threads"] = threads;
    notes["simd"] = simd;
    notes["multithreadSupport"] = mt;
    notes["isNode"] = tf.env().getBool("IS_NODE");
    device = `cpu (tfjs wasm${simd ? " simd" : ""}, ${threads} thread${threads === 1 ? "" : "s"})`;
  }
  return { tf, device, notes };
}

function buildModel(tf: Tf, init: Awaited<ReturnType<typeof initialWeights>>): TfModule.Sequential {
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [784], units: 256, activation: "relu" }));
  model.add(tf.layers.dense({ units: 128, activation: "relu" }));
  model.add(tf.layers.dense({ units: 10 }));
  const tensors = init.flatMap((l) => [tf.tensor2d(l.kernel, [l.inF, l.outF]), tf.tensor1d(l.bias)]);
  model.setWeights(tensors);
  for (const t of tensors) t.dispose();
  return model;
}

/** Trains and tests the MLP with TF.js; `mode` picks the backend and the loop. */
export async function runTfjsTraining(mode: Mode, settings: BenchSettings): Promise<TrainResult> {
  const backend = mode.startsWith("tfjs-webgpu") ? "webgpu" : "wasm";
  const useFit = mode.endsWith("-fit");
  const started = performance.now();
  const { tf, device, notes } = await setupTf(backend);
  const { train, test } = await benchData(settings);
  const model = buildModel(tf, await initialWeights(settings.seed));
  const optimizer = tf.train.adam(settings.lr, 0.9, 0.999, 1e-8);
  const epochSeconds: number[] = [];
  let finalLoss = NaN;
  let setupSeconds: number;

  if (useFit) {
    const xs = tf.tensor2d(train.x, [train.length, 784]);
    const ys = tf.tidy(() => tf.oneHot(tf.tensor1d(train.y as Int32Array, "int32"), 10).toFloat());
    model.compile({ optimizer, loss: (yTrue: TfModule.Tensor, yPred: TfModule.Tensor) => tf.losses.softmaxCrossEntropy(yTrue, yPred) });
    setupSeconds = (performance.now() - started) / 1000;
    let epochStarted = 0;
    await model.fit(xs, ys, {
      epochs: settings.epochs,
      batchSize: settings.batchSize,
      shuffle: true,
      verbose: 0,
      callbacks: {
        onEpochBegin: () => {
          epochStarted = performance.now();
          return Promise.resolve();
        },
        onEpochEnd: (_epoch: number, logs?: TfModule.Logs) => {
          epochSeconds.push((performance.now() - epochStarted) / 1000);
          finalLoss = Number(logs?.["loss"]);
          return Promise.resolve();
        },
      },
    });
    xs.dispose();
    ys.dispose();
    notes["path"] = "model.fit (data uploaded once, fit's own shuffle)";
  } else {
    setupSeconds = (performance.now() - started) / 1000;
    let step = 0;
    for (let epoch = 0; epoch < settings.epochs; epoch++) {
      const t0 = performance.now();
      let lossSum = tf.scalar(0);
      let rowsSeen = 0;
      const order = shuffledOrder(train.length, hash32(settings.seed, epoch));
      for (const batch of batches(train, { batchSize: settings.batchSize, order })) {
        const rows = batch.rows;
        const next = tf.tidy(() => {
          const x = tf.tensor2d(batch.x.slice(), [rows, 784]);
          const y = tf.oneHot(tf.tensor1d(batch.y.slice() as Int32Array, "int32"), 10);
          const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as TfModule.Tensor) as TfModule.Scalar, true)!;
          return lossSum.add(loss.mul(rows));
        });
        lossSum.dispose();
        lossSum = next as TfModule.Scalar;
        rowsSeen += rows;
        step++;
        if (DEBUG) console.error(`step ${step} ${(performance.now() - t0).toFixed(0)} ms`);
        if (step % settings.lossReadEvery === 0) {
          const mean = (await lossSum.data())[0]! / rowsSeen;
          if (!Number.isFinite(mean)) throw new Error(`TF.js loss became ${mean} at step ${step}`);
        }
      }
      finalLoss = (await lossSum.data())[0]! / rowsSeen;
      lossSum.dispose();
      epochSeconds.push((performance.now() - t0) / 1000);
    }
    notes["path"] = `optimizer.minimize loop (Keel's batch order, per-batch upload, loss read every ${settings.lossReadEvery} steps)`;
  }

  const testX = tf.tensor2d(test.x, [test.length, 784]);
  const pred = model.predict(testX, { batchSize: 256 }) as TfModule.Tensor;
  const logits = (await pred.data()) as Float32Array;
  const accuracy = accuracyOf(logits, test.y, 10);
  testX.dispose();
  pred.dispose();
  notes["tensorsAlive"] = tf.memory().numTensors;
  const { steady, all } = throughput(epochSeconds, train.length);
  return {
    kind: "train",
    mode,
    label: `TF.js ${tf.version.tfjs} ${backend}, ${useFit ? "model.fit" : "minimize loop"}`,
    device,
    kernels: backend === "webgpu" ? "tfjs-webgpu (shared-memory tiles)" : "xnnpack",
    epochSeconds,
    trainRows: train.length,
    samplesPerSecond: steady,
    samplesPerSecondAll: all,
    accuracy,
    finalLoss,
    setupSeconds,
    peakRssMb: peakRssMb(),
    notes,
  };
}

/** n×n×n f32 matmul with TF.js: warm-up, then `runs` back to back, synced by reading one element. */
export async function runTfjsMatmul(mode: Mode, settings: BenchSettings): Promise<MatmulResult> {
  const backend = mode === "mm-tfjs-webgpu" ? "webgpu" : "wasm";
  const { tf, device, notes } = await setupTf(backend);
  const n = settings.matmulN;
  const hostA = randomMatrix(n, 1);
  const hostB = randomMatrix(n, 2);
  const a = tf.tensor2d(hostA, [n, n]);
  const b = tf.tensor2d(hostB, [n, n]);
  const once = async (count: number): Promise<number> => {
    const t0 = performance.now();
    const outs: TfModule.Tensor[] = [];
    for (let i = 0; i < count; i++) outs.push(tf.matMul(a, b));
    const corner = tf.slice(outs.at(-1)!, [0, 0], [1, 1]);
    await corner.data();
    const s = (performance.now() - t0) / 1000;
    corner.dispose();
    for (const o of outs) o.dispose();
    return s;
  };
  const warm = await once(1);
  const runs = blockRuns(await once(1), settings.matmulRuns);
  const blocks: number[] = [];
  for (let i = 0; i < BLOCKS; i++) blocks.push((await once(runs)) / runs);
  const seconds = Math.min(...blocks);
  const product = tf.matMul(a, b);
  const check = checkMatmul(hostA, hostB, (await product.data()) as Float32Array, n);
  product.dispose();
  notes["firstCallSeconds"] = Number(warm.toFixed(3));
  notes["blockSeconds"] = blocks.map((b) => Number(b.toFixed(4)));
  return {
    kind: "matmul",
    mode,
    label: `TF.js ${tf.version.tfjs} ${backend} tf.matMul`,
    device,
    kernels: backend === "webgpu" ? "tfjs-webgpu matmul" : "xnnpack",
    n,
    runs,
    seconds,
    gflops: (2 * n ** 3) / seconds / 1e9,
    peakRssMb: peakRssMb(),
    check,
    variants: [],
    notes,
  };
}
