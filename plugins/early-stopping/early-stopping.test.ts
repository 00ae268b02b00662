import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKernel, type TrainingContext } from "../../core/mod.ts";
import { fakeTrainingContext } from "../../tests/training-context.ts";
import { createEarlyStoppingPlugin, type EarlyStoppingOptions, type EarlyStoppingState } from "./mod.ts";

type Weights = Record<string, { shape: readonly number[]; data: Float32Array }>;

/** A training context whose "model" holds one weight that equals the epoch it was set in. */
function context(): TrainingContext & { weights: Weights } {
  const ctx: TrainingContext & { weights: Weights } = fakeTrainingContext({
    epochs: 100,
    weights: { w: { shape: [1], data: new Float32Array([0]) } } as Weights,
    model: {
      spec: {},
      getWeights: () => Promise.resolve({ w: { shape: [1], data: Float32Array.from(ctx.weights["w"]!.data) } }),
      setWeights: (w: Weights) => { ctx.weights = w; },
    },
  });
  return ctx;
}

/** Runs epochs with these validation losses (or `metric` values) until the plugin stops; returns the epochs run. */
async function run(options: EarlyStoppingOptions, values: number[], metric = "loss", where: "validation" | "training" = "validation") {
  const kernel = await createKernel({ plugins: [createEarlyStoppingPlugin(options)] });
  const ctx = context();
  await kernel.callHook("onTrainingStart", ctx);
  let epochs = 0;
  for (const [epoch, value] of values.entries()) {
    ctx.epoch = epoch;
    ctx.weights = { w: { shape: [1], data: new Float32Array([epoch]) } };
    ctx.trainingMetrics = { loss: 1 };
    ctx.validationMetrics = { loss: 1 };
    (where === "validation" ? ctx.validationMetrics : ctx.trainingMetrics)[metric] = value;
    ctx.history.push({ epoch, training: ctx.trainingMetrics, validation: ctx.validationMetrics, seconds: 0 });
    epochs++;
    await kernel.callHook("onEpochEnd", ctx);
    if (ctx.shouldStop) break;
  }
  await kernel.callHook("onTrainingEnd", ctx);
  await kernel.dispose();
  return { epochs, ctx, state: ctx.extra["earlyStopping"] as EarlyStoppingState };
}

describe("early stopping", () => {
  test("stops in the epoch where patience runs out, not one later", async () => {
    const { epochs, state, ctx } = await run({ patience: 2 }, [1.0, 0.8, 0.9, 0.85, 0.7, 0.6]);
    assert.equal(epochs, 4); // best at epoch 2 (0.8); 0.9 and 0.85 are two epochs without improvement
    assert.equal(state.bestEpoch, 1);
    assert.equal(state.stoppedEpoch, 3);
    assert.match(ctx.stopReason!, /"val_loss" did not improve for 2 epochs/);
  });

  test("minDelta: a smaller improvement does not count", async () => {
    const { epochs } = await run({ patience: 1, minDelta: 0.05 }, [1.0, 0.97, 0.96, 0.5]);
    assert.equal(epochs, 2);
    const loose = await run({ patience: 1, minDelta: 0.005 }, [1.0, 0.97, 0.96, 0.5]);
    assert.equal(loose.epochs, 4);
  });

  test("mode max (and auto for accuracy) watches for increases", async () => {
    const max = await run({ monitor: "val_accuracy", mode: "max", patience: 1 }, [0.5, 0.6, 0.55, 0.9], "accuracy");
    assert.equal(max.epochs, 3);
    const auto = await run({ monitor: "val_accuracy", patience: 1 }, [0.5, 0.6, 0.55, 0.9], "accuracy");
    assert.equal(auto.epochs, 3);
    const min = await run({ monitor: "val_accuracy", mode: "min", patience: 1 }, [0.5, 0.6, 0.55, 0.9], "accuracy");
    assert.equal(min.epochs, 2);
  });

  test("baseline: stops when the baseline is not beaten within patience", async () => {
    const { epochs, state } = await run({ patience: 2, baseline: 0.5 }, [0.9, 0.8, 0.7, 0.4]);
    assert.equal(epochs, 2);
    assert.equal(state.bestEpoch, undefined);
    const beaten = await run({ patience: 2, baseline: 0.5 }, [0.45, 0.44, 0.43, 0.42]);
    assert.equal(beaten.epochs, 4);
  });

  test("minEpochs: never stops before it", async () => {
    const { epochs } = await run({ patience: 1, minEpochs: 4 }, [1, 2, 3, 4, 5, 6]);
    assert.equal(epochs, 4);
  });

  test("restoreBestWeights puts back the best epoch's weights", async () => {
    const { ctx, state } = await run({ patience: 2, restoreBestWeights: true }, [1.0, 0.5, 0.9, 0.95]);
    assert.equal(state.restored, true);
    assert.deepEqual([...ctx.weights["w"]!.data], [1]);
    const without = await run({ patience: 2 }, [1.0, 0.5, 0.9, 0.95]);
    assert.deepEqual([...without.ctx.weights["w"]!.data], [3]);
  });

  test("monitors a training metric by its plain name; val_ falls back to training without validation", async () => {
    const { epochs } = await run({ monitor: "accuracy", patience: 1 }, [0.5, 0.4], "accuracy", "training");
    assert.equal(epochs, 2);
  });

  test("a monitor the run does not report is a coded error naming what exists", async () => {
    const kernel = await createKernel({ plugins: [createEarlyStoppingPlugin({ monitor: "val_f1" })] });
    const ctx = context();
    ctx.validationMetrics = { loss: 1, accuracy: 0.5 };
    ctx.trainingMetrics = { loss: 1 };
    await kernel.callHook("onTrainingStart", ctx);
    await assert.rejects(kernel.callHook("onEpochEnd", ctx), (e: Error & { code?: string }) => {
      assert.equal(e.code, "E_TRAIN_CONFIG");
      assert.match(e.message, /"val_f1".*"val_accuracy"/);
      return true;
    });
    await kernel.dispose();
  });

  test("bad options are RangeErrors", () => {
    assert.throws(() => createEarlyStoppingPlugin({ patience: -1 }), RangeError);
    assert.throws(() => createEarlyStoppingPlugin({ minEpochs: 1.5 }), RangeError);
    assert.throws(() => createEarlyStoppingPlugin({ mode: "up" as "min" }), RangeError);
  });
});
