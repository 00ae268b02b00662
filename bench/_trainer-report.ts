/**
 * Turns the trainer benchmark's subprocess results into rows with ratios and goals (issue 7's
 * performance section), and writes them as JSON and Markdown under `bench/results/` in the house
 * format (`bench/_harness.ts`: a meta list, then `| benchmark | value | runs | vs | ratio | goal | met |`),
 * followed by side-by-side tables and Keel's step profile.
 * @module
 */

import type { MatmulResult, Mode, TrainResult, WorkerResult } from "./_trainer-common.ts";

/** One row of the results table. */
export interface TrainerRow {
  readonly name: string;
  readonly value: number;
  readonly unit: "samples/s" | "GFLOP/s" | "%" | "MB";
  /** Epochs timed (training) or matmuls timed. */
  readonly runs: number;
  readonly peer?: string;
  /** value / peer value (or a difference in points for accuracy, in `ratioText`). */
  readonly ratio?: number;
  readonly ratioText?: string;
  readonly goal?: string;
  readonly met?: boolean;
}

/** A subprocess that did not produce a result. */
export interface Failure {
  readonly mode: Mode;
  readonly error: string;
}

/** What {@link buildRows} needs. */
export interface Outcome {
  readonly results: ReadonlyMap<Mode, WorkerResult>;
  readonly failures: readonly Failure[];
  /** The 1-minute load average when each configuration ended (2 shared cores here). */
  readonly loads: ReadonlyMap<Mode, string>;
  /** Other busy processes when each configuration started. */
  readonly busy?: ReadonlyMap<Mode, readonly string[]>;
  /** Each round's samples/s or GFLOP/s, with `--repeat`. */
  readonly rounds?: ReadonlyMap<Mode, readonly number[]>;
  readonly epochs: number;
  readonly trainRows: number;
}

/** Issue 7's 1024³ figure for a WGSL kernel tuned for llvmpipe on this machine type (GFLOP/s). */
const LLVMPIPE_REFERENCE_GFLOPS = 24;

/** An accuracy this many points off the peer's means the run computed something wrong. */
const BROKEN_POINTS = 5;

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "n/a";

function train(outcome: Outcome, mode: Mode): TrainResult | undefined {
  const r = outcome.results.get(mode);
  return r?.kind === "train" ? r : undefined;
}

function matmul(outcome: Outcome, mode: Mode): MatmulResult | undefined {
  const r = outcome.results.get(mode);
  return r?.kind === "matmul" ? r : undefined;
}

/** The faster of TF.js's two training paths on one backend. */
function bestPeer(outcome: Outcome, backend: "webgpu" | "wasm"): TrainResult | undefined {
  const candidates = [train(outcome, `tfjs-${backend}-loop`), train(outcome, `tfjs-${backend}-fit`)].filter((r): r is TrainResult => r !== undefined);
  return candidates.sort((a, b) => b.samplesPerSecond - a.samplesPerSecond)[0];
}

/** Rows: throughput and accuracy per configuration, the goals, and the matmuls. */
export function buildRows(outcome: Outcome): TrainerRow[] {
  const rows: TrainerRow[] = [];
  const timedEpochs = outcome.epochs > 1 ? outcome.epochs - 1 : 1;
  const what = outcome.epochs > 1 ? `epochs 2–${outcome.epochs}` : "1 epoch, warm-up included";
  const trainModes: Mode[] = ["tfjs-webgpu-loop", "tfjs-webgpu-fit", "keel-webgpu", "tfjs-wasm-loop", "tfjs-wasm-fit", "keel-cpu"];
  const peers = { webgpu: bestPeer(outcome, "webgpu"), wasm: bestPeer(outcome, "wasm") };
  for (const mode of trainModes) {
    const r = train(outcome, mode);
    if (!r) continue;
    const keel = mode.startsWith("keel-");
    const peer = mode === "keel-webgpu" ? peers.webgpu : mode === "keel-cpu" ? peers.wasm : undefined;
    const factor = mode === "keel-webgpu" ? 5 : 2;
    const ratio = peer ? r.samplesPerSecond / peer.samplesPerSecond : undefined;
    const reference = keel ? train(outcome, mode === "keel-webgpu" ? "tfjs-webgpu-loop" : "tfjs-wasm-loop") ?? peer : undefined;
    // A fast run that did not learn is not a result: the goal does not count it.
    const broken = reference !== undefined && Math.abs(r.accuracy - reference.accuracy) > BROKEN_POINTS / 100;
    rows.push({
      name: `train samples/s (${what}): ${r.label} [${r.device}; ${r.kernels}]`,
      value: r.samplesPerSecond,
      unit: "samples/s",
      runs: timedEpochs,
      ...(keel && peer && ratio !== undefined
        ? {
          peer: peer.label,
          ratio,
          goal: `≥ ${factor}× ${peer.label.replace(/, .*/, "")}${broken ? ` (not counted: test accuracy ${fmt(r.accuracy * 100, 2)} % against ${fmt(reference.accuracy * 100, 2)} %, the run did not train correctly)` : ""}`,
          met: !broken && ratio >= factor,
        }
        : {}),
    });
  }
  for (const [mode, peerMode] of [["keel-webgpu", "tfjs-webgpu-loop"], ["keel-cpu", "tfjs-wasm-loop"]] as const) {
    const r = train(outcome, mode);
    const p = train(outcome, peerMode) ?? bestPeer(outcome, mode === "keel-webgpu" ? "webgpu" : "wasm");
    if (!r) continue;
    const diff = p ? (r.accuracy - p.accuracy) * 100 : undefined;
    rows.push({
      name: `test accuracy after ${outcome.epochs} epoch${outcome.epochs === 1 ? "" : "s"} (2,000 test digits): ${r.label}`,
      value: r.accuracy * 100,
      unit: "%",
      runs: 1,
      ...(p && diff !== undefined
        ? { peer: `${p.label} (${fmt(p.accuracy * 100, 2)}%)`, ratioText: `${diff >= 0 ? "+" : "−"}${fmt(Math.abs(diff), 2)} pts`, goal: "within 0.5 pts", met: Math.abs(diff) <= 0.5 }
        : {}),
    });
  }
  const mmModes: Mode[] = ["mm-tfjs-webgpu", "mm-keel-webgpu", "mm-tfjs-wasm", "mm-keel-cpu"];
  const webgpuCandidates: { label: string; gflops: number }[] = [];
  for (const mode of mmModes) {
    const r = matmul(outcome, mode);
    if (!r) continue;
    if (mode.includes("webgpu")) {
      // A kernel with a wrong product is no one's best.
      if (r.check.ok) webgpuCandidates.push({ label: r.label, gflops: r.gflops });
      if (r.check.ok || mode !== "mm-keel-webgpu") webgpuCandidates.push(...r.variants);
    }
  }
  const best = webgpuCandidates.sort((a, b) => b.gflops - a.gflops)[0];
  for (const mode of mmModes) {
    const r = matmul(outcome, mode);
    if (!r) continue;
    const n = `${r.n}×${r.n}×${r.n}`;
    const wrong = r.check.ok ? "" : ` — WRONG PRODUCT (max abs error ${r.check.maxAbsError.toPrecision(3)} > ${r.check.tolerance.toPrecision(3)} on ${r.check.samples} sampled entries)`;
    if (mode === "mm-keel-webgpu" && best) {
      const ratio = r.gflops / best.gflops;
      rows.push({
        name: `matmul ${n} f32: ${r.label} [${r.kernels}]${wrong}`,
        value: r.gflops,
        unit: "GFLOP/s",
        runs: r.runs,
        peer: `best WebGPU matmul in this run: ${best.label} (${fmt(best.gflops, 1)} GFLOP/s)`,
        ratio,
        goal: "≥ 0.70× best WebGPU kernel",
        met: r.check.ok && ratio >= 0.7,
      });
      if (r.device.includes("llvmpipe") && r.n === 1024) {
        rows.push({
          name: `matmul ${n} f32: ${r.label}, against the llvmpipe-tuned WGSL kernel issue 7 reports (a figure from the issue, not measured in this run)`,
          value: r.gflops,
          unit: "GFLOP/s",
          runs: r.runs,
          peer: `issue 7: ≈ ${LLVMPIPE_REFERENCE_GFLOPS} GFLOP/s`,
          ratio: r.gflops / LLVMPIPE_REFERENCE_GFLOPS,
          goal: "≥ 0.70× (reference only)",
        });
      }
      for (const v of r.variants) rows.push({ name: `matmul ${n} f32: ${v.label} (forced family, backend hook)`, value: v.gflops, unit: "GFLOP/s", runs: r.runs });
    } else if (mode === "mm-keel-cpu") {
      const peer = matmul(outcome, "mm-tfjs-wasm");
      rows.push({
        name: `matmul ${n} f32: ${r.label} [${r.device}; ${r.kernels}]${wrong}`,
        value: r.gflops,
        unit: "GFLOP/s",
        runs: r.runs,
        ...(peer ? { peer: peer.label, ratio: r.gflops / peer.gflops } : {}),
      });
    } else {
      rows.push({ name: `matmul ${n} f32: ${r.label} [${r.device}]${wrong}`, value: r.gflops, unit: "GFLOP/s", runs: r.runs });
    }
  }
  for (const mode of trainModes) {
    const r = train(outcome, mode);
    if (r) rows.push({ name: `peak RSS (VmHWM), training process: ${r.label}`, value: r.peakRssMb, unit: "MB", runs: 1 });
  }
  return rows;
}

function cell(n: number, unit: TrainerRow["unit"]): string {
  if (unit === "%") return `${fmt(n, 2)} %`;
  if (unit === "GFLOP/s") return `${fmt(n, n >= 100 ? 0 : 2)} ${unit}`;
  return `${fmt(n, 0)} ${unit}`;
}

/** The Markdown results table. */
export function rowsToMarkdown(rows: readonly TrainerRow[]): string {
  const lines = ["| benchmark | value | runs | vs | ratio | goal | met |", "|---|---|---|---|---|---|---|"];
  for (const r of rows) {
    const ratio = r.ratioText ?? (r.ratio === undefined ? "" : `${r.ratio.toFixed(2)}×`);
    lines.push(`| ${r.name} | ${cell(r.value, r.unit)} | ${r.runs} | ${r.peer ?? ""} | ${ratio} | ${r.goal ?? ""} | ${r.met === undefined ? "" : r.met ? "yes" : "no"} |`);
  }
  return lines.join("\n");
}

/** Side-by-side tables (training, matmul), the step profile and any failures. */
export function detailsMarkdown(outcome: Outcome): string {
  const out: string[] = [];
  const trains = [...outcome.results.values()].filter((r): r is TrainResult => r.kind === "train");
  if (trains.length) {
    out.push(
      "## Training, side by side",
      "",
      "| configuration | device | kernels | samples/s (steady) | samples/s (all epochs) | epoch seconds | final train loss | test accuracy | setup s | peak RSS | load after |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const r of trains) {
      out.push(
        `| ${r.label} | ${r.device} | ${r.kernels} | ${fmt(r.samplesPerSecond)} | ${fmt(r.samplesPerSecondAll)} | ${r.epochSeconds.map((s) => fmt(s, 2)).join(", ")} | ${fmt(r.finalLoss, 4)} | ${fmt(r.accuracy * 100, 2)} % | ${fmt(r.setupSeconds, 2)} | ${fmt(r.peakRssMb)} MB | ${outcome.loads.get(r.mode) ?? ""} |`,
      );
    }
    out.push("");
    for (const r of trains) {
      const { profile, ...rest } = r.notes as { profile?: unknown };
      out.push(`- ${r.label}: ${JSON.stringify(rest)}`);
      if (profile) out.push(`  - step profile: ${JSON.stringify(profile)}`);
    }
    out.push("");
  }
  const mms = [...outcome.results.values()].filter((r): r is MatmulResult => r.kind === "matmul");
  if (mms.length) {
    out.push("## Matmul, side by side", "", "| kernel | device | family | n | runs | ms per matmul | GFLOP/s | product check | peak RSS | load after |", "|---|---|---|---|---|---|---|---|---|---|");
    for (const r of mms) {
      out.push(`| ${r.label} | ${r.device} | ${r.kernels} | ${r.n} | ${r.runs} | ${fmt(r.seconds * 1000, 1)} | ${fmt(r.gflops, 2)} | ${r.check.ok ? "ok" : "WRONG"} (max abs error ${r.check.maxAbsError.toPrecision(2)}) | ${fmt(r.peakRssMb)} MB | ${outcome.loads.get(r.mode) ?? ""} |`);
      for (const v of r.variants) out.push(`| ${v.label} (hook) | ${r.device} |  | ${r.n} | ${r.runs} |  | ${fmt(v.gflops, 2)} |  |  |  |`);
    }
    out.push("");
    for (const r of mms) if (Object.keys(r.notes).length) out.push(`- ${r.label}: ${JSON.stringify(r.notes)}`);
    out.push("");
  }
  const busyLines = [...(outcome.busy ?? new Map<Mode, readonly string[]>())].filter(([, list]) => list.length > 0);
  if (busyLines.length) {
    out.push("## Other busy processes when a configuration started", "");
    for (const [mode, list] of busyLines) out.push(`- ${mode}: ${list.join("; ")}`);
    out.push("");
  }
  const multi = [...(outcome.rounds ?? new Map<Mode, readonly number[]>())].filter(([, list]) => list.length > 1);
  if (multi.length) {
    out.push("## Rounds (best reported)", "");
    for (const [mode, list] of multi) out.push(`- ${mode}: ${list.map((n) => fmt(n, n >= 100 ? 0 : 2)).join(", ")}`);
    out.push("");
  }
  if (outcome.failures.length) {
    out.push("## Failed configurations", "");
    for (const f of outcome.failures) out.push(`- ${f.mode}: ${f.error.replace(/\n/g, " ⏎ ").slice(0, 800)}`);
    out.push("");
  }
  return out.join("\n");
}
