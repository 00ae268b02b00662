/**
 * End to end: `keel train`, spawned through the real `./keel` launcher (and once through
 * `bun cli/main.ts`), on the spirals example: progress, metrics, checkpoints and resume,
 * TensorBoard files, ONNX export, and the errors a user can hit.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { decodeSafetensors } from "../plugins/checkpoint/safetensors.ts";
import { readEvents } from "../plugins/tensorboard/events.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const BUN = joinPath(ROOT, "node_modules/.bin/bun");
const SPIRALS = "examples/train/spirals.config.ts";
const SLOW = { timeout: 120_000 };

let runtime: Runtime;
let temp: string;

async function keel(args: readonly string[], options: { via?: "launcher" | "bun" } = {}): Promise<ProcessOutput> {
  const bun = options.via === "bun";
  return await runtime.processes!.run(bun ? BUN : LAUNCHER, {
    args: bun ? [joinPath(ROOT, "cli/main.ts"), ...args] : [...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", KEEL_DEBUG: "" },
    stdin: "null",
  });
}

function explain(r: ProcessOutput): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

before(async () => {
  runtime = await detectRuntime();
  temp = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-cli-train-"));
  await runtime.fs!.writeTextFile(joinPath(temp, "bad-loss.config.ts"), 'export default { model: {}, data: {}, loss: "hinge", epochs: 1, batchSize: 1 };\n');
  await runtime.fs!.writeTextFile(joinPath(temp, "typo.config.ts"), 'export default { model: {}, data: {}, loss: "mse", epochs: 1, batchSize: 1, epoch: 3 };\n');
});

after(async () => {
  await runtime.fs!.remove(temp);
});

describe("keel train", () => {
  test("trains on the CPU, prints progress and a summary, writes checkpoints, TensorBoard events and ONNX", SLOW, async () => {
    const checkpoints = joinPath(temp, "ck");
    const logs = joinPath(temp, "tb");
    const onnx = joinPath(temp, "spirals.onnx");
    const r = await keel(["train", SPIRALS, "--backend", "cpu", "--epochs", "3", "--checkpoint-dir", checkpoints, "--logdir", logs, "--export-onnx", onnx, "--json"]);
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stderr, /Backend: cpu on cpu \(/, explain(r));
    assert.match(r.stderr, /epoch 3\/3 \[█+\] 30\/30 .*val_accuracy \d\.\d{4}/);
    assert.match(r.stderr, /epoch +loss +accuracy +f1_score +val_loss +val_accuracy +val_f1_score +time/);
    assert.match(r.stderr, /Trained 3 epochs on cpu in/);
    const result = JSON.parse(r.stdout) as { epochsRun: number; history: unknown[]; backend: { name: string } };
    assert.equal(result.epochsRun, 3);
    assert.equal(result.backend.name, "cpu");

    const files = (await runtime.fs!.readDir(checkpoints)).map((e) => e.name).sort();
    assert.deepEqual(files, ["epoch-0000.json", "epoch-0000.safetensors", "epoch-0001.json", "epoch-0001.safetensors", "epoch-0002.json", "epoch-0002.safetensors"]);
    const weights = decodeSafetensors(await runtime.fs!.readFile(joinPath(checkpoints, "epoch-0002.safetensors")));
    assert.deepEqual(weights.tensors["dense_0.weight"]?.shape, [2, 64]);

    const [eventFile] = (await runtime.fs!.readDir(logs)).map((e) => e.name);
    assert.match(eventFile!, /^events\.out\.tfevents\.\d+\./);
    const events = readEvents(await runtime.fs!.readFile(joinPath(logs, eventFile!)));
    const tags = new Set(events.flatMap((e) => (e.summary?.value ?? []).map((v) => v.tag)));
    for (const tag of ["train/loss", "train/accuracy", "val/loss", "val/accuracy"]) assert.ok(tags.has(tag), `${tag} in ${[...tags]}`);

    const model = await runtime.fs!.readFile(onnx);
    assert.ok(model.length > 1000);
  });

  test("a second run resumes from the latest checkpoint; --no-resume starts over", SLOW, async () => {
    const checkpoints = joinPath(temp, "resume");
    const first = await keel(["train", SPIRALS, "--backend", "cpu", "--epochs", "2", "--checkpoint-dir", checkpoints]);
    assert.equal(first.code, 0, explain(first));
    const second = await keel(["train", SPIRALS, "--backend", "cpu", "--epochs", "4", "--checkpoint-dir", checkpoints, "--json"]);
    assert.equal(second.code, 0, explain(second));
    assert.match(second.stderr, /Resumed from checkpoint "epoch-0001.json": 2 epochs done, continuing at epoch 3 \(step 60\)/);
    const resumed = JSON.parse(second.stdout) as { startEpoch: number; epochsRun: number; history: { epoch: number }[] };
    assert.equal(resumed.startEpoch, 2);
    assert.equal(resumed.epochsRun, 2);
    assert.deepEqual(resumed.history.map((h) => h.epoch), [0, 1, 2, 3]);
    const fresh = await keel(["train", SPIRALS, "--backend", "cpu", "--epochs", "1", "--checkpoint-dir", checkpoints, "--no-resume", "--json"]);
    assert.equal(fresh.code, 0, explain(fresh));
    assert.doesNotMatch(fresh.stderr, /Resumed/);
    assert.equal((JSON.parse(fresh.stdout) as { startEpoch: number }).startEpoch, 0);
  });

  test("auto picks WebGPU when there is an adapter and says which; the same run works under Bun", SLOW, async () => {
    const r = await keel(["train", SPIRALS, "--epochs", "1", "--batch-size", "300", "--checkpoint-dir", joinPath(temp, "auto"), "--json"]);
    assert.equal(r.code, 0, explain(r));
    const backend = (JSON.parse(r.stdout) as { backend: { name: string; device: string } }).backend;
    if (backend.name === "webgpu") assert.match(r.stderr, /Backend: webgpu on .+ \(matmul kernels: [a-z-]+\)/);
    else assert.match(r.stderr, /training on the CPU/);
    const bun = await keel(["train", SPIRALS, "--backend", "cpu", "--epochs", "1", "--checkpoint-dir", joinPath(temp, "bun")], { via: "bun" });
    assert.equal(bun.code, 0, explain(bun));
    assert.match(bun.stderr, /Trained 1 epoch on cpu/);
  });

  test("bad input: missing config, invalid config, unknown backend, bad numbers", SLOW, async () => {
    const missing = await keel(["train", "nope.config.ts"]);
    assert.equal(missing.code, 2, explain(missing));
    assert.match(missing.stderr, /code: E_CONFIG_LOAD_FAILED/);
    const badLoss = await keel(["train", joinPath(temp, "bad-loss.config.ts"), "--backend", "cpu"]);
    assert.equal(badLoss.code, 1, explain(badLoss));
    assert.match(badLoss.stderr, /code: E_TRAIN_CONFIG/);
    assert.match(badLoss.stderr, /"loss" must be "cross-entropy" or "mse"/);
    const typo = await keel(["train", joinPath(temp, "typo.config.ts"), "--backend", "cpu"]);
    assert.match(typo.stderr, /unknown field "epoch"/, explain(typo));
    const backend = await keel(["train", SPIRALS, "--backend", "tpu"]);
    assert.equal(backend.code, 2, explain(backend));
    assert.match(backend.stderr, /--backend takes "auto", "webgpu" or "cpu"; got "tpu"/);
    const lr = await keel(["train", SPIRALS, "--lr", "-1", "--backend", "cpu"]);
    assert.equal(lr.code, 2, explain(lr));
    const tooBig = await keel(["train", SPIRALS, "--backend", "cpu", "--batch-size", "5000", "--no-resume", "--checkpoint-dir", joinPath(temp, "big")]);
    assert.equal(tooBig.code, 1, explain(tooBig));
    assert.match(tooBig.stderr, /code: E_TRAIN_BATCH_SIZE/);
  });

  test("the MNIST example trains for an epoch on the CPU and scores on its held-out digits", SLOW, async () => {
    const r = await keel([
      "train", "examples/train/mnist.config.ts", "--backend", "cpu", "--epochs", "1", "--no-resume",
      "--checkpoint-dir", joinPath(temp, "mnist"), "--logdir", joinPath(temp, "mnist-tb"),
    ]);
    assert.equal(r.code, 0, explain(r));
    const accuracy = Number(/Test: loss [\d.]+ {2}accuracy ([\d.]+)/.exec(r.stderr)?.[1]);
    assert.ok(accuracy > 0.8, `held-out accuracy after one epoch: ${accuracy}\n${explain(r)}`);
  });

  test("--help documents the command", SLOW, async () => {
    const r = await keel(["train", "--help"]);
    assert.equal(r.code, 0, explain(r));
    for (const flag of ["--backend", "--epochs", "--no-resume", "--checkpoint-dir", "--logdir", "--export-onnx"]) assert.match(r.stdout + r.stderr, new RegExp(flag));
  });
});
