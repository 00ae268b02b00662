import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKernel, type TrainingContext } from "../../core/mod.ts";
import { fakeTrainingContext } from "../../tests/training-context.ts";
import { createConsolePlugin, progressLine, summaryTable } from "./mod.ts";

function context(): TrainingContext {
  return fakeTrainingContext({
    epochs: 2, trainingBatches: 4,
    hyperparameters: { batchSize: 32, optimizer: "adam", lr: 0.001, loss: "cross-entropy" },
    samplesPerEpoch: 128, epochStartedAt: 1_000_000, backend: { name: "cpu", device: "test cpu" },
  });
}

describe("console plugin", () => {
  test("the bar shows progress, loss, samples/s and ETA", () => {
    const ctx = context();
    ctx.trainingBatchCount = 2;
    ctx.samplesSeen = 64;
    ctx.extra["lastLoss"] = 0.5;
    const line = progressLine(ctx, { width: 8, now: 1_000_000 + 2000 });
    assert.equal(line, "epoch 1/2 [████····] 2/4  loss 0.5000  32 samples/s  ETA 2.0s");
  });

  test("prints a start line, a line per epoch, the stop reason and a summary table", async () => {
    const lines: string[] = [];
    const kernel = await createKernel({ plugins: [createConsolePlugin({ write: (t) => lines.push(t), tty: false })] });
    const ctx = context();
    await kernel.callHook("onTrainingStart", ctx);
    for (let epoch = 0; epoch < 2; epoch++) {
      ctx.epoch = epoch;
      ctx.trainingBatchCount = 4;
      ctx.samplesSeen = 128;
      ctx.trainingMetrics = { loss: 1 / (epoch + 1), accuracy: 0.5 + epoch / 4 };
      ctx.validationMetrics = { loss: 1.5 / (epoch + 1), accuracy: 0.4 + epoch / 4 };
      ctx.history.push({ epoch, training: ctx.trainingMetrics, validation: ctx.validationMetrics, seconds: 2 });
      for (let b = 0; b < 4; b++) await kernel.callHook("onTrainingBatchEnd", ctx);
      await kernel.callHook("onEpochEnd", ctx);
    }
    ctx.requestStop("early stopping: test");
    await kernel.callHook("onTrainingEnd", ctx);
    await kernel.dispose();
    const text = lines.join("");
    assert.match(lines[0]!, /^Training on cpu \(test cpu\): 2 epochs × 4 batches of 32, adam lr 0.001, loss cross-entropy\n$/);
    assert.ok(text.includes("epoch 1/2 [████████████████████████] 4/4  loss 1.0000  accuracy 0.5000  val_loss 1.5000  val_accuracy 0.4000  64 samples/s  2.0s\n"), text);
    assert.match(text, /epoch 2\/2 .* accuracy 0\.7500 /);
    assert.match(text, /Stopped: early stopping: test\n/);
    assert.doesNotMatch(text, /\r/, "no in-place redraw when not a terminal");
    const table = summaryTable(ctx).split("\n");
    assert.deepEqual(table[0]!.trim().split(/\s+/), ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "time"]);
    assert.equal(table.length, 4);
  });

  test("redraws in place on a terminal", async () => {
    const lines: string[] = [];
    const kernel = await createKernel({ plugins: [createConsolePlugin({ write: (t) => lines.push(t), tty: true, intervalMs: 0 })] });
    const ctx = context();
    ctx.trainingBatchCount = 1;
    await kernel.callHook("onTrainingBatchEnd", ctx);
    await kernel.dispose();
    assert.ok(lines[0]!.startsWith("\repoch 1/2 ") && lines[0]!.endsWith("\x1b[K"), JSON.stringify(lines[0]));
  });

  test("summary of a run with no finished epoch", () => {
    assert.equal(summaryTable(context()), "No epoch finished");
  });
});
