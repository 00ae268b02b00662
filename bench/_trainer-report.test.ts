import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { accuracyOf, blockRuns, type MatmulResult, type Mode, throughput, type TrainResult, type WorkerResult } from "./_trainer-common.ts";
import { buildRows, detailsMarkdown, type Outcome, rowsToMarkdown } from "./_trainer-report.ts";

function trainResult(mode: Mode, samplesPerSecond: number, accuracy: number, label: string): TrainResult {
  return {
    kind: "train",
    mode,
    label,
    device: "test adapter",
    kernels: "test kernels",
    epochSeconds: [2, 1, 1],
    trainRows: 8000,
    samplesPerSecond,
    samplesPerSecondAll: samplesPerSecond / 2,
    accuracy,
    finalLoss: 0.3,
    setupSeconds: 1,
    peakRssMb: 300,
    notes: {},
  };
}

function matmulResult(mode: Mode, gflops: number, label: string, variants: MatmulResult["variants"] = [], ok = true): MatmulResult {
  const check = { samples: 64, maxAbsError: ok ? 1e-4 : 9, tolerance: 0.02, ok };
  return { kind: "matmul", mode, label, device: "test adapter", kernels: "k", n: 1024, runs: 5, seconds: 2 * 1024 ** 3 / gflops / 1e9, gflops, peakRssMb: 100, check, variants, notes: {} };
}

function outcome(results: WorkerResult[], failures: Outcome["failures"] = []): Outcome {
  return { results: new Map(results.map((r) => [r.mode, r])), failures, loads: new Map(), epochs: 3, trainRows: 8000 };
}

describe("trainer bench helpers", () => {
  it("leaves the first epoch out of the steady throughput unless it is the only one", () => {
    assert.deepEqual(throughput([4, 1, 1], 1000), { steady: 1000, all: 500 });
    assert.deepEqual(throughput([2], 1000), { steady: 500, all: 500 });
  });

  it("counts a row as right when its largest logit is at the label", () => {
    const logits = new Float32Array([0.1, 0.9, 0, 0.7, 0.2, 0.1, 0.3, 0.3, 0.4]);
    assert.equal(accuracyOf(logits, new Int32Array([1, 0, 0]), 3), 2 / 3);
  });

  it("sizes a timed block to about 0.7 s of matmuls, between 1 and the maximum", () => {
    assert.equal(blockRuns(0.1, 10), 7);
    assert.equal(blockRuns(5, 10), 1);
    assert.equal(blockRuns(0.001, 10), 10);
  });
});

describe("buildRows", () => {
  const results: WorkerResult[] = [
    trainResult("tfjs-webgpu-loop", 1000, 0.9, "TF.js webgpu, minimize loop"),
    trainResult("tfjs-webgpu-fit", 1200, 0.89, "TF.js webgpu, model.fit"),
    trainResult("keel-webgpu", 5400, 0.904, "Keel webgpu"),
    trainResult("tfjs-wasm-loop", 2500, 0.9, "TF.js wasm, minimize loop"),
    trainResult("tfjs-wasm-fit", 2000, 0.9, "TF.js wasm, model.fit"),
    trainResult("keel-cpu", 6000, 0.91, "Keel cpu"),
    matmulResult("mm-keel-webgpu", 18, "Keel webgpu backend.matmul", [{ label: "Keel webgpu register-tiled", gflops: 24 }]),
    matmulResult("mm-tfjs-webgpu", 3, "TF.js webgpu tf.matMul"),
  ];
  const rows = buildRows(outcome(results));
  const find = (prefix: string, part: string) => rows.find((r) => r.name.startsWith(prefix) && r.name.includes(part));

  it("measures Keel against the faster of TF.js's two training paths", () => {
    const gpu = find("train samples/s", "Keel webgpu")!;
    assert.equal(gpu.peer, "TF.js webgpu, model.fit");
    assert.equal(gpu.ratio, 4.5);
    assert.equal(gpu.met, false);
    const cpu = find("train samples/s", "Keel cpu")!;
    assert.equal(cpu.peer, "TF.js wasm, minimize loop");
    assert.equal(cpu.ratio, 2.4);
    assert.equal(cpu.met, true);
    assert.equal(find("train samples/s", "TF.js webgpu, model.fit")!.goal, undefined);
  });

  it("compares accuracy with the minimize loop in points, within half a point", () => {
    const gpu = find("test accuracy", "Keel webgpu")!;
    assert.equal(gpu.ratioText, "+0.40 pts");
    assert.equal(gpu.met, true);
    const cpu = find("test accuracy", "Keel cpu")!;
    assert.equal(cpu.ratioText, "+1.00 pts");
    assert.equal(cpu.met, false);
  });

  it("names the best WebGPU matmul of the run, a forced family included", () => {
    const mm = find("matmul", "Keel webgpu backend.matmul")!;
    assert.match(mm.peer!, /Keel webgpu register-tiled \(24\.0 GFLOP\/s\)/);
    assert.equal(mm.ratio, 0.75);
    assert.equal(mm.met, true);
  });

  it("does not count a fast run whose model did not learn, nor a wrong matmul", () => {
    const broken = buildRows(outcome([
      trainResult("tfjs-wasm-loop", 2500, 0.93, "TF.js wasm, minimize loop"),
      trainResult("keel-cpu", 14000, 0.097, "Keel cpu"),
      matmulResult("mm-keel-webgpu", 30, "Keel webgpu backend.matmul", [], false),
      matmulResult("mm-tfjs-webgpu", 3, "TF.js webgpu tf.matMul"),
    ]));
    const speed = broken.find((r) => r.name.startsWith("train samples/s") && r.name.includes("Keel cpu"))!;
    assert.equal(speed.ratio, 5.6);
    assert.equal(speed.met, false);
    assert.match(speed.goal!, /not counted: test accuracy 9\.70 %/);
    const mm = broken.find((r) => r.name.includes("Keel webgpu backend.matmul"))!;
    assert.match(mm.name, /WRONG PRODUCT/);
    assert.match(mm.peer!, /TF\.js webgpu tf\.matMul/);
    assert.equal(mm.met, false);
  });

  it("leaves goals out when a peer is missing, and lists failures", () => {
    const partial = outcome([trainResult("keel-cpu", 6000, 0.91, "Keel cpu")], [{ mode: "tfjs-wasm-loop", error: "exit 1: boom\nmore" }]);
    const row = buildRows(partial).find((r) => r.name.startsWith("train samples/s"))!;
    assert.equal(row.met, undefined);
    assert.match(detailsMarkdown(partial), /- tfjs-wasm-loop: exit 1: boom ⏎ more/);
  });

  it("writes the house table: one line per row with ratio and met", () => {
    const md = rowsToMarkdown(rows).split("\n");
    assert.equal(md[0], "| benchmark | value | runs | vs | ratio | goal | met |");
    const line = md.find((l) => l.includes("Keel webgpu [test adapter"))!;
    assert.match(line, /\| 5,400 samples\/s \| 2 \| TF\.js webgpu, model\.fit \| 4\.50× \| ≥ 5× TF\.js webgpu \| no \|$/);
  });
});
