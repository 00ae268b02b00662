import { test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../../core/mod.ts";
import { createCpuBackend } from "./cpu/mod.ts";
import { getLoss, meanLoss } from "./losses.ts";

test("cross-entropy: i32 targets, dOutput is the gradient of the batch mean", async () => {
  const be = await createCpuBackend();
  const ce = getLoss("cross-entropy");
  assert.equal(ce.name, "cross-entropy");
  assert.deepEqual(ce.targetShape(4, 10), { dtype: "i32", shape: [4] });
  const out = be.tensor(new Float32Array([0, 0, Math.log(3), 0]), [2, 2]);
  const y = be.tensor(new Int32Array([0, 0]), [2]);
  const d = be.zeros([2, 2]);
  const sum = be.zeros([1]);
  ce.apply(be, out, y, d, sum);
  const s = (await be.read(sum))[0]!;
  assert.ok(Math.abs(s - (Math.log(2) + Math.log(4 / 3))) < 1e-6, `sum ${s}`);
  assert.ok(Math.abs(meanLoss("cross-entropy", s, 2, 2) - s / 2) < 1e-12);
  const g = await be.read(d);
  // row 0: softmax [0.5, 0.5] − [1, 0], / 2 rows
  assert.ok(Math.abs(g[0]! + 0.25) < 1e-6 && Math.abs(g[1]! - 0.25) < 1e-6, `${g}`);
  be.destroy();
});

test("mse: f32 targets of the output's shape, mean over rows × outputs", async () => {
  const be = await createCpuBackend();
  const mse = getLoss("mse");
  assert.deepEqual(mse.targetShape(4, 3), { dtype: "f32", shape: [4, 3] });
  const out = be.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
  const t = be.tensor(new Float32Array([0, 2, 3, 6]), [2, 2]);
  const d = be.zeros([2, 2]);
  const sum = be.zeros([1]);
  mse.apply(be, out, t, d, sum);
  assert.deepEqual([...(await be.read(sum))], [5]);
  assert.equal(meanLoss("mse", 5, 2, 2), 1.25);
  assert.deepEqual([...(await be.read(d))], [0.5, 0, 0, -1]);
  be.destroy();
});

test("an unknown loss is E_TRAIN_CONFIG with a suggestion", () => {
  assert.throws(() => getLoss("cross_entropy"), (e: unknown) =>
    KeelError.is(e, "E_TRAIN_CONFIG") && e.message === 'Unknown loss "cross_entropy" (did you mean "cross-entropy"?); use one of "cross-entropy", "mse"');
  assert.throws(() => getLoss("hinge"), (e: unknown) => KeelError.is(e, "E_TRAIN_CONFIG") && !e.message.includes("did you mean"));
});
