import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createKernel,
  createMemoryLogger,
  KeelError,
  type Kernel,
  type MemoryLogger,
  type Runtime,
  type TrainingContext,
} from "../../core/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import { fakeTrainingContext } from "../../tests/training-context.ts";
import checkpointDefault, { type CheckpointOptions, type CheckpointSidecar, createCheckpointPlugin, decodeSafetensors, trainingSignature } from "./mod.ts";

type Weights = Record<string, { shape: readonly number[]; data: Float32Array }>;

const SPEC = {
  format: "keel-sequential/1",
  inputFeatures: 3,
  outputFeatures: 2,
  layers: [
    { type: "dense", name: "dense_0", inFeatures: 3, outFeatures: 2, bias: true },
    { type: "activation", name: "relu_1", activation: "relu" },
  ],
};

function copy(w: Weights): Weights {
  return Object.fromEntries(Object.entries(w).map(([k, t]) => [k, { shape: [...t.shape], data: t.data.slice() }]));
}

/** A plain TrainingContext with real Float32Array weights and an Adam-like optimizer state. */
function makeContext(options: { spec?: unknown; optimizer?: string; loss?: string; seed?: number } = {}) {
  let weights: Weights = {
    "dense_0.weight": { shape: [3, 2], data: new Float32Array(6).map((_, i) => (options.seed ?? 0) + i * 0.25) },
    "dense_0.bias": { shape: [2], data: new Float32Array([0.5, -0.5]) },
  };
  let optState = {
    config: { lr: 0.001, beta1: 0.9 } as Record<string, unknown>,
    step: 0,
    buffers: {
      "dense_0.weight.m": { shape: [3, 2], data: new Float32Array(6) },
      "dense_0.weight.v": { shape: [3, 2], data: new Float32Array(6) },
    } as Weights,
  };
  const history: TrainingContext["history"] = [];
  const ctx = fakeTrainingContext({
    epochs: 10,
    trainingBatches: 4,
    history,
    hyperparameters: { lr: 0.001, batchSize: 32, loss: options.loss ?? "cross-entropy", optimizer: options.optimizer ?? "adam" },
    samplesPerEpoch: 128,
    model: {
      spec: options.spec ?? SPEC,
      getWeights: () => Promise.resolve(copy(weights)),
      setWeights: (w: Weights) => {
        weights = copy(w);
      },
    },
    optimizer: {
      name: options.optimizer ?? "adam",
      getState: () => Promise.resolve({ config: { ...optState.config }, step: optState.step, buffers: copy(optState.buffers) }),
      setState: (s: typeof optState) => {
        optState = { config: { ...s.config }, step: s.step, buffers: copy(s.buffers) };
      },
    },
    /** Test helpers (not part of the interface). */
    weights: () => weights,
    optState: () => optState,
  });
  return ctx;
}

type Ctx = ReturnType<typeof makeContext>;

/** What one training epoch does to the state, deterministically. */
function trainEpoch(ctx: Ctx, loss = 1 / (ctx.epoch + 1)): void {
  for (const t of Object.values(ctx.weights())) for (let i = 0; i < t.data.length; i++) t.data[i]! += 1;
  for (const t of Object.values(ctx.optState().buffers)) for (let i = 0; i < t.data.length; i++) t.data[i]! += 0.5;
  ctx.step += 4;
  ctx.optState().step = ctx.step;
  ctx.trainingMetrics = { loss, accuracy: 0.5 + ctx.epoch / 100 };
  ctx.validationMetrics = { loss: loss * 1.1 };
  ctx.history.push({ epoch: ctx.epoch, training: ctx.trainingMetrics, validation: ctx.validationMetrics, seconds: 1 });
}

describe("checkpoint plugin", () => {
  let runtime: Runtime;
  let temp: string;
  const kernels: Kernel[] = [];

  before(async () => {
    runtime = await detectRuntime();
    temp = await mkdtemp(join(tmpdir(), "keel-ckpt-"));
  });
  after(async () => {
    for (const k of kernels) await k.dispose();
    await rm(temp, { recursive: true, force: true });
  });

  let n = 0;
  async function boot(options: Partial<CheckpointOptions> & { dir?: string } = {}): Promise<{ kernel: Kernel; dir: string; logger: MemoryLogger }> {
    const dir = options.dir ?? join(temp, `run-${n++}`);
    const logger = createMemoryLogger();
    const kernel = await createKernel({
      runtime,
      logger,
      plugins: [createCheckpointPlugin({ ...options, dir })],
      grants: { checkpoint: [`read:${dir}`, `write:${dir}`] },
    });
    kernels.push(kernel);
    return { kernel, dir, logger };
  }

  /** Runs epochs [ctx.epoch, until) the way the trainer calls the hooks. */
  async function train(kernel: Kernel, ctx: Ctx, until: number, final = true): Promise<void> {
    await kernel.callHook("onLoadCheckpoint", ctx, { reason: "resume" });
    for (; ctx.epoch < until; ctx.epoch++) {
      trainEpoch(ctx);
      await kernel.callHook("onEpochEnd", ctx);
      await kernel.callHook("onSaveCheckpoint", ctx, { reason: "epoch" });
    }
    ctx.epoch--;
    if (final) await kernel.callHook("onSaveCheckpoint", ctx, { reason: "final" });
  }

  const files = async (dir: string) => (await readdir(dir)).sort();
  const sidecar = async (dir: string, file: string): Promise<CheckpointSidecar> => JSON.parse(await readFile(join(dir, file), "utf8"));

  test("the default plugin asks for .keel/checkpoints", () => {
    assert.equal(checkpointDefault.name, "checkpoint");
    assert.deepEqual(checkpointDefault.capabilities, ["read:.keel/checkpoints", "write:.keel/checkpoints"]);
  });

  test("writes a safetensors file and a sidecar per epoch, keeping the latest 3", async () => {
    const { kernel, dir } = await boot();
    const ctx = makeContext();
    await train(kernel, ctx, 5);
    assert.deepEqual(await files(dir), [
      "epoch-0002.json", "epoch-0002.safetensors", "epoch-0003.json", "epoch-0003.safetensors", "epoch-0004.json", "epoch-0004.safetensors",
    ]);
    const meta = await sidecar(dir, "epoch-0004.json");
    assert.equal(meta.format, "keel-checkpoint/1");
    assert.equal(meta.epoch, 4);
    assert.equal(meta.step, 20);
    assert.equal(meta.signature, await trainingSignature(ctx));
    assert.match(meta.signature, /^[0-9a-f]{64}$/);
    assert.deepEqual(meta.model, SPEC);
    assert.deepEqual(meta.optimizer, { name: "adam", config: { lr: 0.001, beta1: 0.9 }, step: 20 });
    assert.deepEqual(meta.hyperparameters, ctx.hyperparameters);
    assert.equal(meta.history.length, 5);
    assert.deepEqual(meta.metrics.training, ctx.trainingMetrics);
    assert.ok(!Number.isNaN(Date.parse(meta.createdAt)));
    assert.equal(meta.files.weights, "epoch-0004.safetensors");
    const bytes = new Uint8Array(await readFile(join(dir, "epoch-0004.safetensors")));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    assert.equal(meta.files.sha256, Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""));
    const { tensors, metadata } = decodeSafetensors(bytes);
    assert.deepEqual(Object.keys(tensors).sort(), ["dense_0.bias", "dense_0.weight", "optimizer/dense_0.weight.m", "optimizer/dense_0.weight.v"]);
    assert.deepEqual([...tensors["dense_0.weight"]!.data], [...ctx.weights()["dense_0.weight"]!.data]);
    assert.deepEqual([...tensors["optimizer/dense_0.weight.m"]!.data], new Array(6).fill(2.5));
    assert.equal(metadata.epoch, "4");
  });

  test("resumes from the latest matching checkpoint: weights, optimizer, epoch, step and history", async () => {
    const first = await boot();
    const ctx = makeContext();
    await train(first.kernel, ctx, 3, false); // "crashes" after epoch 2 was saved
    const saved = ctx.weights();

    const second = await boot({ dir: first.dir });
    const fresh = makeContext();
    await second.kernel.callHook("onLoadCheckpoint", fresh, { reason: "resume" });
    assert.equal(fresh.epoch, 3);
    assert.equal(fresh.step, 12);
    assert.deepEqual(fresh.weights(), saved);
    assert.equal(fresh.optState().step, 12);
    assert.deepEqual([...fresh.optState().buffers["dense_0.weight.v"]!.data], new Array(6).fill(1.5));
    assert.deepEqual(fresh.optState().config, { lr: 0.001, beta1: 0.9 });
    assert.deepEqual(fresh.history.map((h) => h.epoch), [0, 1, 2]);
    assert.deepEqual(fresh.history, ctx.history);
    assert.ok(second.logger.lines.some((l) => l.level === "info" && /Resumed from checkpoint "epoch-0002.json": 3 epochs done, continuing at epoch 4/.test(l.message)));

    // It goes on from there and "final" does not rewrite an epoch it saved.
    for (; fresh.epoch < 5; fresh.epoch++) {
      trainEpoch(fresh);
      await second.kernel.callHook("onEpochEnd", fresh);
      await second.kernel.callHook("onSaveCheckpoint", fresh, { reason: "epoch" });
    }
    assert.deepEqual((await files(first.dir)).filter((f) => f.endsWith(".json")), ["epoch-0002.json", "epoch-0003.json", "epoch-0004.json"]);
    assert.equal((await sidecar(first.dir, "epoch-0004.json")).history.length, 5);
  });

  test("resume: false starts fresh and leaves the context alone", async () => {
    const first = await boot();
    await train(first.kernel, makeContext(), 2);
    const second = await boot({ dir: first.dir, resume: false });
    const fresh = makeContext();
    const before = copy(fresh.weights());
    await second.kernel.callHook("onLoadCheckpoint", fresh, { reason: "resume" });
    assert.equal(fresh.epoch, 0);
    assert.equal(fresh.step, 0);
    assert.deepEqual(fresh.weights(), before);
    assert.equal(fresh.history.length, 0);
    // A fresh run's checkpoints are the newest: after one epoch, a resume picks epoch 0 of this run.
    trainEpoch(fresh);
    await second.kernel.callHook("onEpochEnd", fresh);
    await second.kernel.callHook("onSaveCheckpoint", fresh, { reason: "epoch" });
    const third = await boot({ dir: first.dir });
    const again = makeContext();
    await third.kernel.callHook("onLoadCheckpoint", again, { reason: "resume" });
    assert.equal(again.epoch, 1);
    assert.deepEqual(again.weights(), fresh.weights());
  });

  test("ignores checkpoints with another signature (model, optimizer or loss)", async () => {
    const first = await boot();
    await train(first.kernel, makeContext(), 2);
    for (const other of [
      makeContext({ optimizer: "sgd" }),
      makeContext({ loss: "mse" }),
      makeContext({ spec: { ...SPEC, layers: [SPEC.layers[0]] } }),
    ]) {
      assert.notEqual(await trainingSignature(other), await trainingSignature(makeContext()));
      const second = await boot({ dir: first.dir });
      const before = copy(other.weights());
      await second.kernel.callHook("onLoadCheckpoint", other, { reason: "resume" });
      assert.equal(other.epoch, 0);
      assert.deepEqual(other.weights(), before);
      assert.ok(second.logger.lines.some((l) => /Ignoring 2 checkpoint\(s\).*another model, optimizer or loss/.test(l.message)));
    }
    // Other hyperparameters (lr, batch size) do not matter.
    const lr = makeContext();
    (lr.hyperparameters as Record<string, unknown>).lr = 0.1;
    assert.equal(await trainingSignature(lr), await trainingSignature(makeContext()));
  });

  test("another run's pruning leaves checkpoints with another signature alone", async () => {
    const first = await boot({ keep: 1 });
    await train(first.kernel, makeContext({ optimizer: "sgd" }), 3);
    const second = await boot({ dir: first.dir, keep: 1 });
    await train(second.kernel, makeContext(), 2);
    assert.deepEqual(await files(first.dir), ["epoch-0001.json", "epoch-0001.safetensors", "epoch-0002.json", "epoch-0002.safetensors"]);
    assert.equal((await sidecar(first.dir, "epoch-0001.json")).optimizer.name, "adam");
    assert.equal((await sidecar(first.dir, "epoch-0002.json")).optimizer.name, "sgd");
  });

  test("a corrupted weights file (flipped bytes) falls back to the previous checkpoint and says which", async () => {
    const first = await boot();
    const ctx = makeContext();
    await train(first.kernel, ctx, 3);
    const path = join(first.dir, "epoch-0002.safetensors");
    const bytes = new Uint8Array(await readFile(path));
    bytes[bytes.length - 3]! ^= 0xff;
    await writeFile(path, bytes);

    const second = await boot({ dir: first.dir });
    const fresh = makeContext();
    await second.kernel.callHook("onLoadCheckpoint", fresh, { reason: "resume" });
    assert.equal(fresh.epoch, 2);
    assert.equal(fresh.step, 8);
    assert.deepEqual([...fresh.weights()["dense_0.bias"]!.data], [2.5, 1.5]);
    assert.deepEqual(fresh.history.map((h) => h.epoch), [0, 1]);
    const warns = second.logger.lines.filter((l) => l.level === "warn").map((l) => l.message);
    assert.ok(warns.some((m) => /Skipping checkpoint "epoch-0002.json".*SHA-256/.test(m)), warns.join("\n"));
    assert.ok(warns.some((m) => /Resumed from checkpoint "epoch-0001.json".*after skipping damaged "epoch-0002.json"/.test(m)), warns.join("\n"));
  });

  test("a truncated sidecar or a missing weights file is skipped too", async () => {
    const first = await boot();
    await train(first.kernel, makeContext(), 3);
    const text = await readFile(join(first.dir, "epoch-0002.json"), "utf8");
    await writeFile(join(first.dir, "epoch-0002.json"), text.slice(0, text.length / 2));
    await rm(join(first.dir, "epoch-0001.safetensors"));

    const second = await boot({ dir: first.dir });
    const fresh = makeContext();
    await second.kernel.callHook("onLoadCheckpoint", fresh, { reason: "resume" });
    assert.equal(fresh.epoch, 1);
    const warns = second.logger.lines.filter((l) => l.level === "warn").map((l) => l.message);
    assert.ok(warns.some((m) => /"epoch-0002.json" is not valid JSON/.test(m)), warns.join("\n"));
    assert.ok(warns.some((m) => /"epoch-0001.safetensors" could not be read/.test(m)), warns.join("\n"));
  });

  test("all checkpoints corrupt: training starts fresh with a warning, never a throw", async () => {
    const first = await boot();
    await train(first.kernel, makeContext(), 2);
    for (const f of await files(first.dir)) {
      if (f.endsWith(".safetensors")) await writeFile(join(first.dir, f), new Uint8Array([1, 2, 3]));
    }
    const second = await boot({ dir: first.dir });
    const fresh = makeContext();
    const before = copy(fresh.weights());
    await second.kernel.callHook("onLoadCheckpoint", fresh, { reason: "resume" });
    assert.equal(fresh.epoch, 0);
    assert.deepEqual(fresh.weights(), before);
    assert.ok(second.logger.lines.some((l) => l.level === "warn" && /No usable checkpoint.*training starts fresh/.test(l.message)));
  });

  test("a checkpoint whose weights do not fit the model is skipped, leaving the model untouched", async () => {
    const first = await boot();
    const ctx = makeContext();
    await train(first.kernel, ctx, 1);
    // Same signature, but the weights file holds other shapes (hand-edited): checked before use.
    const { encodeSafetensors } = await import("./safetensors.ts");
    const bytes = encodeSafetensors({ "dense_0.weight": { shape: [2, 3], data: new Float32Array(6) }, "dense_0.bias": { shape: [2], data: new Float32Array(2) } });
    await writeFile(join(first.dir, "epoch-0000.safetensors"), bytes);
    const meta = await sidecar(first.dir, "epoch-0000.json");
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
    await writeFile(join(first.dir, "epoch-0000.json"), JSON.stringify({ ...meta, files: { ...meta.files, sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("") } }));
    const second = await boot({ dir: first.dir });
    const fresh = makeContext();
    const before = copy(fresh.weights());
    await second.kernel.callHook("onLoadCheckpoint", fresh, { reason: "resume" });
    assert.equal(fresh.epoch, 0);
    assert.deepEqual(fresh.weights(), before);
    assert.ok(second.logger.lines.some((l) => /shape \[2, 3\], the model needs \[3, 2\]/.test(l.message)));
  });

  test("an empty or missing directory is a fresh start without warnings", async () => {
    const { kernel, logger } = await boot();
    const ctx = makeContext();
    await kernel.callHook("onLoadCheckpoint", ctx, { reason: "resume" });
    assert.equal(ctx.epoch, 0);
    assert.deepEqual(logger.lines.filter((l) => l.level === "warn"), []);
  });

  test("every N epochs, plus the final epoch; keep: 2 prunes only after a successful save", async () => {
    const { kernel, dir } = await boot({ every: 2, keep: 2 });
    await train(kernel, makeContext(), 7);
    // Epochs 1, 3, 5 by `every`, 6 as the final one; keep 2.
    assert.deepEqual((await files(dir)).filter((f) => f.endsWith(".json")), ["epoch-0005.json", "epoch-0006.json"]);
    assert.equal((await sidecar(dir, "epoch-0006.json")).reason, "final");
  });

  test("a NaN loss or NaN weights never replace the last good checkpoint", async () => {
    const { kernel, dir, logger } = await boot({ keep: 1 });
    const ctx = makeContext();
    await train(kernel, ctx, 2, false);
    const good = await readFile(join(dir, "epoch-0001.safetensors"));
    ctx.epoch = 2;
    trainEpoch(ctx, NaN);
    await kernel.callHook("onEpochEnd", ctx);
    await kernel.callHook("onSaveCheckpoint", ctx, { reason: "final" });
    ctx.trainingMetrics = { loss: 0.1 };
    ctx.validationMetrics = {};
    ctx.weights()["dense_0.bias"]!.data[0] = Infinity;
    await kernel.callHook("onSaveCheckpoint", ctx, { reason: "epoch" });
    assert.deepEqual(await files(dir), ["epoch-0001.json", "epoch-0001.safetensors"]);
    assert.deepEqual(await readFile(join(dir, "epoch-0001.safetensors")), good);
    const warns = logger.lines.filter((l) => l.level === "warn").map((l) => l.message);
    assert.ok(warns.some((m) => /Not saving checkpoint "epoch-0002": the loss is NaN/.test(m)), warns.join("\n"));
    assert.ok(warns.some((m) => /weight "dense_0.bias" holds NaN or Infinity/.test(m)), warns.join("\n"));
  });

  test("a checkpoint that cannot be written fails with E_TRAIN_CHECKPOINT and leaves the directory as it was", async () => {
    const { kernel, dir } = await boot();
    const ctx = makeContext();
    await train(kernel, ctx, 1, false);
    const before = await files(dir);
    (ctx.hyperparameters as Record<string, unknown>).seed = 10n; // JSON cannot hold a BigInt
    ctx.epoch = 1;
    trainEpoch(ctx);
    await assert.rejects(
      kernel.callHook("onSaveCheckpoint", ctx, { reason: "epoch" }),
      (e: unknown) => KeelError.is(e, "E_TRAIN_CHECKPOINT") && /Could not write checkpoint "epoch-0001"/.test(e.message),
    );
    assert.deepEqual(await files(dir), before);
  });

  test("saveBest keeps best.safetensors for the monitored metric, and a resume remembers the best value", async () => {
    const first = await boot({ monitor: "val_loss" });
    const ctx = makeContext();
    const losses = [0.9, 0.5, 0.7];
    await first.kernel.callHook("onLoadCheckpoint", ctx, { reason: "resume" });
    for (; ctx.epoch < losses.length; ctx.epoch++) {
      trainEpoch(ctx, losses[ctx.epoch]);
      await first.kernel.callHook("onEpochEnd", ctx);
      await first.kernel.callHook("onSaveCheckpoint", ctx, { reason: "epoch" });
    }
    const best = await sidecar(first.dir, "best.json");
    assert.equal(best.epoch, 1);
    assert.deepEqual(best.monitor, { name: "val_loss", mode: "min", value: 0.5 * 1.1 });
    assert.ok(decodeSafetensors(new Uint8Array(await readFile(join(first.dir, "best.safetensors")))).tensors["dense_0.bias"]);

    const second = await boot({ dir: first.dir, monitor: "val_loss" });
    const fresh = makeContext();
    await second.kernel.callHook("onLoadCheckpoint", fresh, { reason: "resume" });
    assert.equal(fresh.epoch, 3);
    trainEpoch(fresh, 0.6); // worse than the best (0.5): best.json stays at epoch 1
    await second.kernel.callHook("onEpochEnd", fresh);
    await second.kernel.callHook("onSaveCheckpoint", fresh, { reason: "epoch" });
    assert.equal((await sidecar(first.dir, "best.json")).epoch, 1);
    fresh.epoch++;
    trainEpoch(fresh, 0.1);
    await second.kernel.callHook("onEpochEnd", fresh);
    await second.kernel.callHook("onSaveCheckpoint", fresh, { reason: "epoch" });
    assert.equal((await sidecar(first.dir, "best.json")).epoch, 4);
  });

  test("refuses bad options and paths outside its grant", async () => {
    assert.throws(() => createCheckpointPlugin({ dir: "x", every: 0 }), RangeError);
    assert.throws(() => createCheckpointPlugin({ dir: "x", keep: 1.5 }), RangeError);
    assert.throws(() => createCheckpointPlugin({ dir: "x", mode: "up" as "min" }), RangeError);
    assert.throws(() => createCheckpointPlugin({ dir: "x", saveBest: true }), TypeError);
    assert.throws(() => createCheckpointPlugin({ dir: "" }), TypeError);
    const dir = join(temp, "denied");
    await assert.rejects(
      createKernel({ runtime, plugins: [createCheckpointPlugin({ dir })], grants: { checkpoint: [`read:${dir}`] } }),
      (e: Error & { code?: string }) => e.code === "E_CAPABILITY_DENIED" && e.message.includes(`write:${dir}`),
    );
  });
});
