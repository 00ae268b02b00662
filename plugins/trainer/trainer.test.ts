import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKernel, definePlugin, type Kernel, KeelError, type Plugin, type TrainingContext } from "../../core/mod.ts";
import metrics from "../metrics/mod.ts";
import type { Backend } from "./backend.ts";
import { createCpuBackend } from "./cpu/mod.ts";
import { type Dataset, fromArrays } from "./data.ts";
import { adam, createTrainerPlugin, dense, dropout, relu, sequential, sgd, trainerService } from "./mod.ts";
import { createRng } from "./rng.ts";
import { createTrainer } from "./trainer.ts";
import { createWebGpuBackend, isWebGpuAvailable, webGpuTestHooks } from "./webgpu/mod.ts";
import { createCheckpointPlugin } from "../checkpoint/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";

/** Three Gaussian blobs in 4 dimensions: easy, but not trivially separable by one feature. */
function blobs(rows: number, seed: number): Dataset {
  const rng = createRng(seed);
  const centers = [[2, 0, -1, 1], [-2, 1, 1, -1], [0, -2, 2, 0]];
  const x: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < rows; i++) {
    const c = i % 3;
    x.push(centers[c]!.map((m) => m + rng.normal() * 0.7));
    y.push(c);
  }
  return fromArrays(x, y, { classes: 3 });
}

const model = () => sequential([dense(4, 16), relu(), dense(16, 3)]);

/** Records every training hook it sees, as "hook" or "hook:epoch". */
function recorder(log: string[], extra: Partial<Record<string, (ctx: TrainingContext) => void>> = {}): Plugin {
  const hooks = [
    "onTrainingStart", "onTrainingEnd", "onEpochStart", "onEpochEnd", "onTrainingLoopStart", "onTrainingLoopEnd",
    "onTrainingBatchStart", "onTrainingBatchEnd", "onValidationLoopStart", "onValidationLoopEnd",
    "onValidationBatchStart", "onValidationBatchEnd", "onLoadCheckpoint", "onSaveCheckpoint",
  ] as const;
  return definePlugin({
    name: "recorder",
    version: "1.0.0",
    kernel: "^1",
    setup: () =>
      Object.fromEntries(hooks.map((h) => [h, (ctx: TrainingContext, event?: { reason: string }) => {
        log.push(event ? `${h}:${event.reason}` : h.endsWith("BatchStart") || h.endsWith("BatchEnd") ? h : `${h}:${ctx.epoch}`);
        extra[h]?.(ctx);
      }])),
  });
}

let cpu: Backend;
before(async () => {
  cpu = await createCpuBackend();
});
after(() => cpu.destroy());

async function kernelWith(...plugins: Plugin[]): Promise<Kernel> {
  return await createKernel({ plugins: [metrics, createTrainerPlugin({ use: cpu }), ...plugins] });
}

describe("trainer.fit on the CPU backend", () => {
  test("learns three blobs; metrics from the device-side confusion matrix; validation split", async () => {
    const kernel = await kernelWith();
    const trainer = kernel.services.get(trainerService);
    const result = await trainer.fit(model(), {
      data: blobs(600, 1),
      validation: { fraction: 0.2 },
      loss: "cross-entropy",
      optimizer: adam({ lr: 0.02 }),
      epochs: 8,
      batchSize: 32,
      metrics: ["accuracy", { name: "f1_score", options: { average: "macro" } }, { name: "top_k_accuracy", options: { k: 2 } }],
      seed: 3,
    });
    await kernel.dispose();
    assert.equal(result.epochsRun, 8);
    assert.equal(result.backend.name, "cpu");
    const first = result.history[0]!;
    const last = result.history.at(-1)!;
    assert.ok(last.training["loss"]! < first.training["loss"]! / 3, `loss fell: ${first.training["loss"]} → ${last.training["loss"]}`);
    assert.ok(last.validation["accuracy"]! > 0.95, `validation accuracy ${last.validation["accuracy"]}`);
    assert.ok(last.validation["f1_score"]! > 0.95);
    assert.ok(last.validation["top_k_accuracy"]! >= last.validation["accuracy"]!);
    assert.ok(result.samplesPerSecond > 0);
    assert.deepEqual(Object.keys(last.validation).sort(), ["accuracy", "f1_score", "loss", "top_k_accuracy"]);
  });

  test("the same seed gives the same losses; another seed does not", async () => {
    const run = async (seed: number) => {
      const trainer = createTrainer({ backend: cpu });
      const r = await trainer.fit(sequential([dense(4, 16), relu(), dropout(0.2), dense(16, 3)]), {
        data: blobs(300, 2), loss: "cross-entropy", optimizer: sgd({ lr: 0.1, momentum: 0.9 }), epochs: 3, batchSize: 50, seed,
      });
      return r.history.map((h) => h.training["loss"]);
    };
    const a = await run(11);
    assert.deepEqual(await run(11), a);
    assert.notDeepEqual(await run(12), a);
  });

  test("hooks run in bz's order; a failing plugin is reported and training goes on", async () => {
    const log: string[] = [];
    const broken = definePlugin({
      name: "broken",
      version: "1.0.0",
      kernel: "^1",
      setup: () => ({ onEpochEnd: () => { throw new Error("plugin bug"); } }),
    });
    const kernel = await kernelWith(recorder(log), broken);
    const result = await kernel.services.get(trainerService).fit(model(), {
      data: blobs(60, 3), validation: blobs(30, 4), loss: "cross-entropy", epochs: 2, batchSize: 30,
    });
    await kernel.dispose();
    assert.equal(result.epochsRun, 2);
    assert.equal(result.hookFailures.length, 2);
    assert.match(result.hookFailures[0]!.message, /Plugin "broken" failed in hook "onEpochEnd": plugin bug/);
    const epoch = (e: number) => [
      `onEpochStart:${e}`, `onTrainingLoopStart:${e}`,
      "onTrainingBatchStart", "onTrainingBatchEnd", "onTrainingBatchStart", "onTrainingBatchEnd",
      `onTrainingLoopEnd:${e}`, `onValidationLoopStart:${e}`, "onValidationBatchStart", "onValidationBatchEnd",
      `onValidationLoopEnd:${e}`, `onEpochEnd:${e}`, "onSaveCheckpoint:epoch",
    ];
    assert.deepEqual(log, [
      "onTrainingStart:0", "onLoadCheckpoint:resume", ...epoch(0), ...epoch(1), "onSaveCheckpoint:final", "onTrainingEnd:1",
    ]);
  });

  test("a stop requested during an epoch takes effect at the end of that epoch", async () => {
    const log: string[] = [];
    const kernel = await kernelWith(recorder(log, {
      onTrainingBatchEnd: (ctx) => {
        if (ctx.epoch === 1 && ctx.batch === 0) ctx.requestStop("enough");
      },
    }));
    const result = await kernel.services.get(trainerService).fit(model(), { data: blobs(90, 5), loss: "cross-entropy", epochs: 10, batchSize: 30 });
    await kernel.dispose();
    assert.equal(result.epochsRun, 2);
    assert.equal(result.stopped, true);
    assert.equal(result.stopReason, "enough");
    assert.equal(log.filter((l) => l.startsWith("onEpochEnd")).length, 2);
  });

  test("a failing batch is reported and skipped", async () => {
    let calls = 0;
    const flaky = new Proxy(cpu, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver);
        if (key !== "softmaxCrossEntropy") return typeof value === "function" ? value.bind(target) : value;
        return (...args: unknown[]) => {
          if (++calls === 2) throw new Error("transient failure");
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const trainer = createTrainer({ backend: flaky });
    const result = await trainer.fit(model(), { data: blobs(90, 6), loss: "cross-entropy", epochs: 1, batchSize: 30 });
    assert.equal(result.skippedBatches, 1);
    assert.equal(result.epochsRun, 1);
    assert.ok(Number.isFinite(result.trainingMetrics["loss"]!));
  });

  test("bad input gets coded errors before anything trains", async () => {
    const trainer = createTrainer({ backend: cpu });
    const data = blobs(30, 7);
    const code = (c: string) => (e: unknown) => KeelError.is(e) && e.code === c;
    await assert.rejects(trainer.fit(model(), { data, loss: "cross-entropy", epochs: 1, batchSize: 64 }), (e: unknown) =>
      code("E_TRAIN_BATCH_SIZE")(e) && /only 30 rows/.test((e as Error).message));
    await assert.rejects(trainer.fit(model(), { data, loss: "cross-entropy", epochs: 0, batchSize: 8 }), code("E_TRAIN_CONFIG"));
    await assert.rejects(trainer.fit(sequential([dense(5, 3)]), { data, loss: "cross-entropy", epochs: 1, batchSize: 8 }), code("E_TRAIN_SHAPE"));
    const badLabels = fromArrays([[0, 0, 0, 0], [1, 1, 1, 1]], [0, 7], { classes: 8 });
    await assert.rejects(trainer.fit(model(), { data: badLabels, loss: "cross-entropy", epochs: 1, batchSize: 1 }), code("E_TRAIN_LABEL_RANGE"));
    const nan = fromArrays([[0, NaN, 0, 0], [1, 1, 1, 1]], [0, 1], { classes: 3 });
    await assert.rejects(trainer.fit(model(), { data: nan, loss: "cross-entropy", epochs: 1, batchSize: 1 }), code("E_TRAIN_DATA"));
    await assert.rejects(trainer.fit(model(), { data, loss: "cross-entropy", epochs: 1, batchSize: 8, metrics: ["acuracy"] }), code("E_METRIC_UNKNOWN"));
    await assert.rejects(trainer.fit(model(), { data, loss: "hinge" as "mse", epochs: 1, batchSize: 8 }), code("E_TRAIN_CONFIG"));
  });

  test("a loss that becomes NaN stops training with E_TRAIN_NOT_FINITE", async () => {
    const trainer = createTrainer({ backend: cpu });
    const huge = fromArrays([[1e30, 1e30, 1e30, 1e30], [-1e30, 1e30, -1e30, 1e30]], [[1e30], [-1e30]], { task: "regression" });
    await assert.rejects(
      trainer.fit(sequential([dense(4, 8), relu(), dense(8, 1)]), { data: huge, loss: "mse", optimizer: sgd({ lr: 10 }), epochs: 5, batchSize: 2 }),
      (e: unknown) => KeelError.is(e, "E_TRAIN_NOT_FINITE") && /Lower the learning rate/.test((e as Error).message),
    );
  });

  test("a loss that becomes NaN keeps the last good checkpoint", async () => {
    const runtime = await detectRuntime();
    const dir = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-nan-"));
    try {
      const poison = definePlugin({
        name: "poison",
        version: "1.0.0",
        kernel: "^1",
        setup: () => ({
          async onEpochStart(ctx) {
            if (ctx.epoch !== 2) return;
            const weights = await ctx.model.getWeights();
            for (const w of Object.values(weights)) w.data.fill(Number.POSITIVE_INFINITY);
            ctx.model.setWeights(weights);
          },
        }),
      });
      const kernel = await createKernel({
        runtime,
        plugins: [createTrainerPlugin({ use: cpu }), createCheckpointPlugin({ dir }), poison],
        grants: { checkpoint: [`read:${dir}`, `write:${dir}`] },
      });
      await assert.rejects(
        kernel.services.get(trainerService).fit(model(), { data: blobs(90, 12), loss: "cross-entropy", epochs: 5, batchSize: 30 }),
        (e: unknown) => KeelError.is(e, "E_TRAIN_NOT_FINITE"),
      );
      await kernel.dispose();
      const names = (await runtime.fs!.readDir(dir)).map((e) => e.name).sort();
      assert.deepEqual(names, ["epoch-0000.json", "epoch-0000.safetensors", "epoch-0001.json", "epoch-0001.safetensors"]);
    } finally {
      await runtime.fs!.remove(dir);
    }
  });

  test("regression with mse and mae metrics", async () => {
    const rng = createRng(9);
    const x: number[][] = [];
    const y: number[][] = [];
    for (let i = 0; i < 256; i++) {
      const a = rng.next() * 2 - 1, b = rng.next() * 2 - 1;
      x.push([a, b]);
      y.push([0.5 * a - 0.25 * b + 0.1]);
    }
    const kernel = await kernelWith();
    const result = await kernel.services.get(trainerService).fit(sequential([dense(2, 1)]), {
      data: fromArrays(x, y, { task: "regression" }), loss: "mse", optimizer: adam({ lr: 0.05 }), epochs: 30, batchSize: 32, metrics: ["mse", "mae"],
    });
    await kernel.dispose();
    const last = result.trainingMetrics;
    assert.ok(last["mse"]! < 1e-3, `mse ${last["mse"]}`);
    assert.ok(Math.abs(last["mse"]! - last["loss"]!) < 1e-6, "the mse metric equals the mse loss");
    assert.ok(last["mae"]! < 0.03);
  });

  test("a cancelled fit stops with E_TRAIN_CANCELLED", async () => {
    const controller = new AbortController();
    controller.abort();
    const trainer = createTrainer({ backend: cpu });
    await assert.rejects(
      trainer.fit(model(), { data: blobs(30, 8), loss: "cross-entropy", epochs: 1, batchSize: 10, signal: controller.signal }),
      (e: unknown) => KeelError.is(e, "E_TRAIN_CANCELLED"),
    );
  });
});

describe("the same model on WebGPU and on the CPU", () => {
  test("losses agree step by step (relative 2e-3 over 30 steps)", async (t) => {
    if (!(await isWebGpuAvailable())) {
      // Not a skip in disguise: this host has no adapter, and the CPU path is tested above.
      t.diagnostic("no WebGPU adapter on this host");
      assert.equal(await isWebGpuAvailable(), false);
      return;
    }
    const gpu = await createWebGpuBackend();
    try {
      const losses = async (backend: Backend) => {
        const seen: number[] = [];
        const kernel = await createKernel({
          plugins: [
            createTrainerPlugin({ use: backend }),
            recorder([], { onTrainingBatchEnd: (ctx) => void seen.push(ctx.extra["lastBatchLoss"] as number) }),
          ],
        });
        await kernel.services.get(trainerService).fit(sequential([dense(4, 32), relu(), dropout(0.1), dense(32, 3)]), {
          data: blobs(300, 10), loss: "cross-entropy", optimizer: adam({ lr: 0.01 }), epochs: 3, batchSize: 30, seed: 5, lossReadEvery: 1,
        });
        await kernel.dispose();
        return seen;
      };
      const onCpu = await losses(cpu);
      const onGpu = await losses(gpu);
      assert.equal(onGpu.length, 30);
      for (let i = 0; i < onCpu.length; i++) {
        const rel = Math.abs(onGpu[i]! - onCpu[i]!) / Math.max(Math.abs(onCpu[i]!), 1e-6);
        assert.ok(rel < 2e-3, `step ${i}: cpu ${onCpu[i]} vs webgpu ${onGpu[i]} (relative ${rel})`);
      }
      assert.ok(onCpu.at(-1)! < onCpu[0]! / 2, "and it learned");
    } finally {
      gpu.destroy();
    }
  });

  test("a GPU device lost mid-epoch stops training with E_TRAIN_DEVICE_LOST, and hooks still see the end", async (t) => {
    if (!(await isWebGpuAvailable())) {
      t.diagnostic("no WebGPU adapter on this host");
      return;
    }
    const gpu = await createWebGpuBackend();
    const log: string[] = [];
    const kernel = await createKernel({
      plugins: [
        createTrainerPlugin({ use: gpu }),
        recorder(log, {
          onTrainingBatchEnd: (ctx) => {
            if (ctx.epoch === 0 && ctx.batch === 3) webGpuTestHooks(gpu)._device.destroy();
          },
        }),
      ],
    });
    try {
      await assert.rejects(
        kernel.services.get(trainerService).fit(model(), { data: blobs(300, 13), loss: "cross-entropy", epochs: 2, batchSize: 30, lossReadEvery: 2 }),
        (e: unknown) => KeelError.is(e, "E_TRAIN_DEVICE_LOST"),
      );
      assert.equal(log.at(-1), "onTrainingEnd:0");
      assert.ok(!log.includes("onEpochEnd:0"), "the lost epoch did not finish");
    } finally {
      await kernel.dispose();
      gpu.destroy();
    }
  });

  test("a layer over the adapter's buffer limits is refused clearly", async (t) => {
    if (!(await isWebGpuAvailable())) {
      t.diagnostic("no WebGPU adapter on this host");
      return;
    }
    const gpu = await createWebGpuBackend();
    try {
      const big = sequential([dense(4, 40_000_000), relu(), dense(40_000_000, 3)]);
      const trainer = createTrainer({ backend: gpu });
      await assert.rejects(
        trainer.fit(big, { data: blobs(30, 14), loss: "cross-entropy", epochs: 1, batchSize: 10 }),
        (e: unknown) => KeelError.is(e, "E_TRAIN_LIMITS") && /maxStorageBufferBindingSize/.test((e as Error).message),
      );
    } finally {
      gpu.destroy();
    }
  });
});
