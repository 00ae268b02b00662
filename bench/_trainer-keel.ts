/**
 * Keel's side of the trainer benchmark, run inside one subprocess each: `createTrainer(...).fit`
 * of the benchmark MLP on the WebGPU or the CPU backend, `trainer.evaluate` on the test rows, a
 * step profile (where a step's time goes), and the backend's `matmul` on its own.
 *
 * The backend is wrapped in a counting proxy for the fit (one integer increment per backend call,
 * so the read-backs, submits and uploads per epoch can be reported); the profile after it also
 * times each call on the host (on the CPU that is the compute itself; on WebGPU it is encoding,
 * submitting and waiting).
 * @module
 */

import { createMetricRegistry } from "../plugins/metrics/mod.ts";
import { adam, type Backend, batches, createCpuBackend, createTrainer, createWebGpuBackend, getLoss, type Tensor } from "../plugins/trainer/mod.ts";
import { webGpuTestHooks } from "../plugins/trainer/webgpu/mod.ts";
import { BLOCKS, blockRuns, checkMatmul, randomMatrix, type BenchSettings, benchData, benchModel, LAYERS, type MatmulResult, type Mode, peakRssMb, throughput, type TrainResult } from "./_trainer-common.ts";

/** A backend whose calls are counted (and timed on the host while `timing` is on). */
interface Instrumented {
  readonly backend: Backend;
  readonly counts: Record<string, number>;
  readonly hostMs: Record<string, number>;
  timing: boolean;
}

function instrument(target: Backend): Instrumented {
  const state: Instrumented = {
    backend: target,
    counts: {},
    hostMs: {},
    timing: false,
  };
  const add = (name: string, t0: number) => {
    state.hostMs[name] = (state.hostMs[name] ?? 0) + performance.now() - t0;
  };
  const proxy = new Proxy(target, {
    get(t, prop) {
      // The receiver is the real backend: its #private fields are not reachable through a proxy.
      const value: unknown = Reflect.get(t, prop, t);
      if (typeof value !== "function") return value;
      const name = String(prop);
      const fn = value as (...args: unknown[]) => unknown;
      return (...args: unknown[]) => {
        state.counts[name] = (state.counts[name] ?? 0) + 1;
        if (!state.timing) return fn.apply(t, args);
        const t0 = performance.now();
        const out = fn.apply(t, args);
        if (out instanceof Promise) return out.finally(() => add(name, t0));
        add(name, t0);
        return out;
      };
    },
  });
  return Object.assign(state, { backend: proxy });
}

async function makeBackend(kind: "webgpu" | "cpu"): Promise<Backend> {
  return kind === "webgpu" ? await createWebGpuBackend() : await createCpuBackend();
}

/** Interleaved rounds per profile measurement; the fastest is kept. */
const PROFILE_ROUNDS = 3;

const round = (n: number, digits = 2) => Number(n.toFixed(digits));

/** Per-phase time of a training step, measured S steps at a time between two `sync()`s. */
async function profileSteps(inst: Instrumented, model: ReturnType<typeof benchModel>, settings: BenchSettings, train: Awaited<ReturnType<typeof benchData>>["train"]): Promise<Record<string, unknown>> {
  const backend = inst.backend;
  const bound = model.bound;
  if (!bound) return { error: "the model is not bound after fit" };
  const steps = settings.profileSteps;
  const rows = settings.batchSize;
  const lossFn = getLoss("cross-entropy");
  const x = backend.zeros([rows, 784]);
  const y = backend.zeros([rows], "i32");
  const dOut = backend.zeros([rows, 10]);
  const lossSum = backend.zeros([1]);
  const optimizer = adam({ lr: settings.lr }).bind(backend, bound.params);
  const list: { x: Float32Array; y: Int32Array }[] = [];
  for (const b of batches(train, { batchSize: rows, dropLast: true })) {
    list.push({ x: b.x.slice(), y: (b.y as Int32Array).slice() });
    if (list.length >= steps) break;
  }
  // A whole step, and each phase on its own, repeated between two syncs: forward on the same x,
  // loss + backward from the last forward (grads are written, not added), optimizer steps. Each
  // is timed in PROFILE_ROUNDS interleaved rounds and its fastest round kept, so a burst of other
  // work on the machine does not land in one phase only.
  let out: Tensor = bound.forward(x, { training: true, seed: 0, logits: true });
  const phases: Record<string, (i: number) => void> = {
    step: (i) => {
      const b = list[i % list.length]!;
      backend.write(x, b.x);
      backend.write(y, b.y);
      out = bound.forward(x, { training: true, seed: i, logits: true });
      lossFn.apply(backend, out, y, dOut, lossSum);
      bound.backward(dOut);
      optimizer.step();
    },
    upload: (i) => {
      const b = list[i % list.length]!;
      backend.write(x, b.x);
      backend.write(y, b.y);
    },
    forward: (i) => {
      out = bound.forward(x, { training: true, seed: i, logits: true });
    },
    lossAndBackward: () => {
      lossFn.apply(backend, out, y, dOut, lossSum);
      bound.backward(dOut);
    },
    optimizer: () => optimizer.step(),
  };
  const best: Record<string, number> = {};
  let fullStepHost: Record<string, number> = {};
  for (const run of Object.values(phases)) for (let i = 0; i < 2; i++) run(i);
  await backend.sync();
  for (let r = 0; r < PROFILE_ROUNDS; r++) {
    for (const [name, run] of Object.entries(phases)) {
      await backend.sync();
      for (const k of Object.keys(inst.hostMs)) delete inst.hostMs[k];
      inst.timing = true;
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) run(i);
      await backend.sync();
      const ms = (performance.now() - t0) / steps;
      inst.timing = false;
      if (!(ms >= best[name]!)) {
        best[name] = ms;
        if (name === "step") {
          fullStepHost = Object.fromEntries(
            Object.entries(inst.hostMs).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, round(v / steps, 3)]),
          );
        }
      }
    }
  }
  // The step's eight matmul shapes on their own (as model.ts calls them), 10 of each between syncs.
  const shapes: { name: string; a: number[]; b: number[]; out: number[]; transA?: boolean; transB?: boolean }[] = [];
  for (let i = 0; i < LAYERS.length - 1; i++) {
    const inF = LAYERS[i]!;
    const outF = LAYERS[i + 1]!;
    shapes.push({ name: `fwd ${rows}x${inF}·${inF}x${outF}`, a: [rows, inF], b: [inF, outF], out: [rows, outF] });
    shapes.push({ name: `dW ${inF}x${rows}·${rows}x${outF}`, a: [rows, inF], b: [rows, outF], out: [inF, outF], transA: true });
    if (i > 0) shapes.push({ name: `dX ${rows}x${outF}·${outF}x${inF}`, a: [rows, outF], b: [inF, outF], out: [rows, inF], transB: true });
  }
  const matmulShapes: Record<string, { ms: number; gflops: number }> = {};
  for (const sh of shapes) {
    const a = backend.zeros(sh.a);
    const b = backend.zeros(sh.b);
    const o = backend.zeros(sh.out);
    const options = { transA: sh.transA ?? false, transB: sh.transB ?? false };
    backend.matmul(a, b, o, options);
    let best = Infinity;
    for (let r = 0; r < PROFILE_ROUNDS; r++) {
      await backend.sync();
      const t0 = performance.now();
      for (let i = 0; i < 10; i++) backend.matmul(a, b, o, options);
      await backend.sync();
      best = Math.min(best, (performance.now() - t0) / 10);
    }
    const k = sh.transA ? sh.a[0]! : sh.a[1]!;
    matmulShapes[sh.name] = { ms: round(best, 3), gflops: round((2 * sh.out[0]! * sh.out[1]! * k) / (best / 1000) / 1e9) };
    for (const t of [a, b, o]) backend.dispose(t);
  }
  // One read-back of a 4-byte tensor when nothing is queued: the floor under every loss read.
  const reads: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await backend.read(lossSum);
    reads.push(performance.now() - t0);
  }
  // Fixed cost per kernel: 50 tiny elementwise ops between two syncs, then 50 tiny uploads, each
  // after a tiny op so that every upload submits a non-empty encoder (as a training step does).
  const small = backend.zeros([1, 64]);
  const smallOut = backend.zeros([1, 64]);
  const tiny = new Float32Array(64);
  const perOp = async (withWrite: boolean): Promise<number> => {
    await backend.sync();
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) {
      backend.mul(small, small, smallOut);
      if (withWrite) backend.write(small, tiny);
    }
    await backend.sync();
    return (performance.now() - t0) / 50;
  };
  await perOp(true);
  const tinyOpMs = await perOp(false);
  const tinyOpAndSubmitMs = await perOp(true);
  backend.dispose(small);
  backend.dispose(smallOut);
  optimizer.dispose();
  for (const t of [x, y, dOut, lossSum]) backend.dispose(t);
  // The step's matmuls: forward, weight gradients, and input gradients of every layer but the first.
  let sum = 0;
  for (let i = 0; i < LAYERS.length - 1; i++) sum += LAYERS[i]! * LAYERS[i + 1]!;
  const flops = 2 * rows * (3 * sum - LAYERS[0]! * LAYERS[1]!);
  return {
    steps,
    msPerStep: round(best["step"]!),
    matmulGflopPerStep: round(flops / 1e9, 4),
    effectiveGflops: round(flops / (best["step"]! / 1000) / 1e9),
    msPerPhaseAlone: {
      upload: round(best["upload"]!),
      forward: round(best["forward"]!),
      lossAndBackward: round(best["lossAndBackward"]!),
      optimizer: round(best["optimizer"]!),
    },
    hostMsPerStepByCall: fullStepHost,
    matmulShapes,
    readBackMs: round(reads.sort((a, b) => a - b)[2]!),
    tinyOpMs: round(tinyOpMs, 3),
    tinyOpWithUploadMs: round(tinyOpAndSubmitMs, 3),
  };
}

/** Trains and tests the MLP with Keel's trainer on the backend `mode` names. */
export async function runKeelTraining(mode: Mode, settings: BenchSettings): Promise<TrainResult> {
  const kind = mode === "keel-webgpu" ? "webgpu" : "cpu";
  const started = performance.now();
  const inst = instrument(await makeBackend(kind));
  const backend = inst.backend;
  const { train, test } = await benchData(settings);
  const trainer = createTrainer({ backend, metrics: () => createMetricRegistry() });
  const model = benchModel();
  const setupSeconds = (performance.now() - started) / 1000;
  for (const k of Object.keys(inst.counts)) delete inst.counts[k];
  const fit = await trainer.fit(model, {
    data: train,
    loss: "cross-entropy",
    optimizer: adam({ lr: settings.lr }),
    epochs: settings.epochs,
    batchSize: settings.batchSize,
    seed: settings.seed,
  });
  const perEpoch = Object.fromEntries(
    ["read", "sync", "flush", "write", "matmul"].map((k) => [k, round((inst.counts[k] ?? 0) / fit.epochsRun, 1)]),
  );
  const totalCalls = Object.values(inst.counts).reduce((a, b) => a + b, 0);
  const evaluation = await trainer.evaluate(model, test, { loss: "cross-entropy", metrics: ["accuracy"] });
  const epochSeconds = fit.history.map((h) => h.seconds);
  const notes: Record<string, unknown> = {
    path: "createTrainer(...).fit (default lossReadEvery)",
    backendCallsPerEpoch: { ...perEpoch, all: round(totalCalls / fit.epochsRun, 0) },
    fitSamplesPerSecond: round(fit.samplesPerSecond, 0),
    testLoss: round(evaluation["loss"] ?? NaN, 4),
  };
  if (settings.profileSteps > 0) notes["profile"] = await profileSteps(inst, model, settings, train);
  const { steady, all } = throughput(epochSeconds, train.length);
  const result: TrainResult = {
    kind: "train",
    mode,
    label: `Keel ${kind}`,
    device: fit.backend.device,
    kernels: fit.backend.kernels,
    epochSeconds,
    trainRows: train.length,
    samplesPerSecond: steady,
    samplesPerSecondAll: all,
    accuracy: evaluation["accuracy"] ?? NaN,
    finalLoss: fit.trainingMetrics["loss"] ?? NaN,
    setupSeconds,
    peakRssMb: peakRssMb(),
    notes,
  };
  trainer.dispose();
  return result;
}

/** n×n×n f32 matmul through `backend.matmul`: warm-up, then `runs` between two `sync()`s. */
export async function runKeelMatmul(mode: Mode, settings: BenchSettings): Promise<MatmulResult> {
  const kind = mode === "mm-keel-webgpu" ? "webgpu" : "cpu";
  const backend = await makeBackend(kind);
  const n = settings.matmulN;
  const hostA = randomMatrix(n, 1);
  const hostB = randomMatrix(n, 2);
  const a = backend.tensor(hostA, [n, n]);
  const b = backend.tensor(hostB, [n, n]);
  const out = backend.zeros([n, n]);
  const timed = async (count: number): Promise<number> => {
    await backend.sync();
    const t0 = performance.now();
    for (let i = 0; i < count; i++) backend.matmul(a, b, out);
    await backend.sync();
    return (performance.now() - t0) / 1000;
  };
  const warm = await timed(1);
  const runs = blockRuns(await timed(1), settings.matmulRuns);
  const blocks: number[] = [];
  for (let i = 0; i < BLOCKS; i++) blocks.push((await timed(runs)) / runs);
  const seconds = Math.min(...blocks);
  const check = checkMatmul(hostA, hostB, (await backend.read(out)) as Float32Array, n);
  const variants: { label: string; gflops: number }[] = [];
  const notes: Record<string, unknown> = { firstCallSeconds: round(warm, 3), blockSeconds: blocks.map((b) => round(b, 4)) };
  if (kind === "webgpu") {
    // Both kernel families, timed by the backend's own hook (`count` matmuls and one read-back).
    const hooks = webGpuTestHooks(backend);
    for (const family of ["register-tiled", "workgroup-tiled"] as const) {
      try {
        const one = await hooks._timeMatmul(family, n, 1);
        const count = blockRuns(one / 1000, settings.matmulRuns);
        let best = Infinity;
        for (let i = 0; i < (one > 2000 ? 1 : BLOCKS); i++) best = Math.min(best, await hooks._timeMatmul(family, n, count));
        variants.push({ label: `Keel webgpu ${family}`, gflops: (2 * n ** 3 * count) / (best / 1000) / 1e9 });
      } catch (e) {
        notes[`${family}Error`] = e instanceof Error ? e.message : String(e);
      }
    }
  }
  for (const t of [a, b, out]) backend.dispose(t);
  const result: MatmulResult = {
    kind: "matmul",
    mode,
    label: `Keel ${kind} backend.matmul`,
    device: backend.device,
    kernels: backend.kernels,
    n,
    runs,
    seconds,
    gflops: (2 * n ** 3) / seconds / 1e9,
    peakRssMb: peakRssMb(),
    check,
    variants,
    notes,
  };
  backend.destroy();
  return result;
}
