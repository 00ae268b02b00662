/**
 * Keel's trainer next to TensorFlow.js 4.22, in one run, on one machine, on the same data: the
 * `mnist` package's digits through `loadMnist` (8,000 training rows, 2,000 test rows), an MLP
 * 784-256-128-10 with relu, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), batch 128, softmax
 * cross-entropy, the same epochs (default 3), the same seed and the same initial weights (Keel's
 * deterministic init for the seed, copied into TF.js).
 *
 * Configurations, each in its own `deno run` subprocess (`bench/_trainer-worker.ts <mode>`), so
 * peak RSS (VmHWM) is per configuration and a crash costs one row:
 * - TF.js `webgpu` backend on Deno's navigator.gpu (the same adapter Keel uses), and TF.js `wasm`
 *   (SIMD; one thread, see `_trainer-tfjs.ts` for why), each two ways: a manual
 *   `optimizer.minimize` loop in Keel's batch order, and `model.fit`. The faster of the two is the
 *   peer a goal is measured against.
 * - Keel: `createTrainer({ backend }).fit(...)` on the WebGPU backend and on the CPU backend, then
 *   `trainer.evaluate`, then a step profile (upload / forward / loss + backward / optimizer,
 *   measured between `sync()`s) and the backend calls per epoch (reads, submits, uploads).
 * - Matmul n×n×n f32 (n = 1024; 4096 with `--gpu-only`): Keel WebGPU `backend.matmul` (its chosen
 *   family; both families through the backend's hook as well), Keel CPU `backend.matmul`, TF.js
 *   WebGPU and wasm `tf.matMul`. Warm-up, then runs timed between two syncs.
 *
 * Throughput is training samples per second over epochs 2..N (the first epoch's pipeline
 * compiles and first uploads are excluded; the all-epochs figure is in the side-by-side table).
 * Accuracy is compared with TF.js's minimize loop on the same backend (same init, same batches).
 *
 * Run: `./node_modules/.bin/deno run --allow-all bench/trainer.ts [--quick] [--epochs N] [--gpu-only]`
 * - `--quick`: 1 epoch on 2,000 training rows (a smoke run; writes `trainer-quick.*`, or `trainer-gpu-quick.*`).
 * - `--gpu-only`: only the WebGPU rows (Keel and TF.js) and a 4096³ matmul, for a machine with a
 *   real GPU; needs only the repo with node_modules (writes `trainer-gpu.*`).
 * - `--only mode,mode`: run just those subprocess modes (see `MODES` in `_trainer-common.ts`).
 * - `--repeat K`: K interleaved rounds, the best of each configuration reported (a shared machine).
 * - `--timeout S`: seconds one configuration may run (default 300; 180 with `--quick`).
 * Results: `bench/results/trainer.json` and `trainer.md` (date, machine, adapter, Deno version).
 * @module
 */

import { type BenchSettings, type Mode, MODES, RESULT_MARKER, type TrainResult, type WorkerResult } from "./_trainer-common.ts";
import { buildRows, detailsMarkdown, type Failure, type Outcome, rowsToMarkdown } from "./_trainer-report.ts";

const args = Deno.args;
const flag = (name: string) => args.includes(name);
const valueOf = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const quick = flag("--quick");
const gpuOnly = flag("--gpu-only");
const epochsArg = valueOf("--epochs");
const epochs = epochsArg === undefined ? (quick ? 1 : 3) : Number(epochsArg);
if (!Number.isInteger(epochs) || epochs < 1) throw new RangeError(`--epochs takes a whole number of epochs (1 or more), got "${epochsArg}"`);
const onlyArg = valueOf("--only");
const only = onlyArg?.split(",").map((s) => s.trim()).filter(Boolean);
for (const m of only ?? []) if (!MODES.includes(m as Mode)) throw new RangeError(`--only: unknown mode "${m}"; use some of ${MODES.join(", ")}`);
const repeat = Number(valueOf("--repeat") ?? 1);
if (!Number.isInteger(repeat) || repeat < 1) throw new RangeError(`--repeat takes a whole number of rounds (1 or more), got "${valueOf("--repeat")}"`);
/** Seconds one subprocess may run before it is killed and reported as failed. */
const timeoutS = Number(valueOf("--timeout") ?? (quick ? 180 : 300));

const settings: BenchSettings = {
  epochs,
  trainRows: quick ? 2000 : 8000,
  testRows: 2000,
  batchSize: 128,
  lr: 1e-3,
  seed: 42,
  lossReadEvery: 50,
  matmulN: gpuOnly ? 4096 : 1024,
  matmulRuns: gpuOnly ? 50 : 10,
  profileSteps: 10,
};

const ALL: readonly Mode[] = [
  "keel-webgpu",
  "tfjs-webgpu-loop",
  "tfjs-webgpu-fit",
  "keel-cpu",
  "tfjs-wasm-loop",
  "tfjs-wasm-fit",
  "mm-keel-webgpu",
  "mm-tfjs-webgpu",
  "mm-keel-cpu",
  "mm-tfjs-wasm",
];
const modes = ALL.filter((m) => (only ? only.includes(m) : !gpuOnly || m.includes("webgpu")));

const root = new URL("../", import.meta.url).pathname;
const worker = new URL("./_trainer-worker.ts", import.meta.url).pathname;
const log = (line: string) => console.error(line);

function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "n/a";
  }
}

const loads = new Map<Mode, string>();
/** Other processes busy when each configuration started (llvmpipe shares the same 2 cores). */
const busy = new Map<Mode, string[]>();

function busyProcesses(): string[] {
  try {
    const ps = new TextDecoder().decode(
      new Deno.Command("ps", { args: ["-eo", "pid,pcpu,etimes,args", "--sort=-pcpu", "--no-headers"], stdout: "piped", stderr: "null" }).outputSync().stdout,
    );
    const out: string[] = [];
    for (const line of ps.split("\n")) {
      const m = /^\s*(\d+)\s+([\d.]+)\s+(\d+)\s+(.*)$/.exec(line);
      if (!m || Number(m[1]) === Deno.pid || Number(m[2]) < 30 || m[4]!.startsWith("ps ")) continue;
      out.push(`${m[4]!.replace(/^\S*\//, "").slice(0, 90)} (${m[2]}% cpu)`);
      if (out.length === 3) break;
    }
    return out;
  } catch {
    return [];
  }
}

async function runMode(mode: Mode): Promise<WorkerResult | Failure> {
  const started = performance.now();
  busy.set(mode, busyProcesses());
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", worker, mode, JSON.stringify(settings)],
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
      signal: AbortSignal.timeout(timeoutS * 1000),
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const line = stdout.split("\n").find((l) => l.startsWith(RESULT_MARKER));
    if (!out.success || !line) {
      const tail = (new TextDecoder().decode(out.stderr) + stdout).trim().split("\n").slice(-8).join("\n");
      const killed = out.signal ? ` (killed by ${out.signal}${out.signal === "SIGTERM" ? `; over the ${timeoutS} s limit` : ""})` : "";
      return { mode, error: `exit ${out.code}${killed}: ${tail}` };
    }
    return JSON.parse(line.slice(RESULT_MARKER.length)) as WorkerResult;
  } catch (e) {
    return { mode, error: e instanceof Error ? e.message : String(e) };
  } finally {
    loads.set(mode, loadAverage().split(" ")[0]!);
    log(`bench/trainer: ${mode} took ${((performance.now() - started) / 1000).toFixed(1)} s (load ${loadAverage()})`);
  }
}

function machine(): string {
  try {
    const lscpu = new TextDecoder().decode(new Deno.Command("lscpu", { stdout: "piped", stderr: "null" }).outputSync().stdout);
    const model = /Model name:\s+(.+)/.exec(lscpu)?.[1]?.trim() ?? "unknown CPU";
    const cpus = /^CPU\(s\):\s+(\d+)/m.exec(lscpu)?.[1] ?? String(navigator.hardwareConcurrency);
    return `${model}, ${cpus} cores`;
  } catch {
    return `${navigator.hardwareConcurrency} cores`;
  }
}

log(`bench/trainer: ${modes.length} configurations, ${epochs} epoch(s) on ${settings.trainRows} rows, batch ${settings.batchSize}; each up to ${timeoutS} s`);
const loadBefore = loadAverage();
const results = new Map<Mode, WorkerResult>();
/** Every round's figure per mode (samples/s or GFLOP/s); the best round is the one reported. */
const rounds = new Map<Mode, number[]>();
const failures: Failure[] = [];
const figure = (r: WorkerResult) => (r.kind === "train" ? r.samplesPerSecond : r.gflops);
for (let round = 0; round < repeat; round++) {
  for (const mode of modes) {
    const r = await runMode(mode);
    if ("error" in r) {
      failures.push(r);
      log(`bench/trainer: ${mode} failed: ${r.error.split("\n")[0]}`);
      continue;
    }
    rounds.set(mode, [...(rounds.get(mode) ?? []), figure(r)]);
    const kept = results.get(mode);
    if (!kept || figure(r) > figure(kept)) results.set(mode, r);
  }
}

const outcome: Outcome = { results, failures, loads, busy, rounds, epochs, trainRows: settings.trainRows };
const rows = buildRows(outcome);
const keelGpu = results.get("keel-webgpu") ?? results.get("mm-keel-webgpu") ?? results.get("tfjs-webgpu-loop");
const wasmPeer = [...results.values()].find((r): r is TrainResult => r.kind === "train" && r.mode.startsWith("tfjs-wasm"));
const meta: Record<string, unknown> = {
  date: new Date().toISOString().slice(0, 16).replace("T", " ") + " UTC",
  machine: machine(),
  adapter: keelGpu?.device ?? "none found",
  runtime: `deno ${Deno.version.deno} (every configuration; TF.js ${String((wasmPeer?.notes["tfjs"] ?? [...results.values()].find((r) => r.notes["tfjs"])?.notes["tfjs"]) ?? "4.22")})`,
  run: `${quick ? "--quick: " : ""}${gpuOnly ? "--gpu-only: " : ""}${epochs} epoch(s) × ${settings.trainRows.toLocaleString("en-US")} training rows of the mnist package (loadMnist), ${settings.testRows.toLocaleString("en-US")} test rows; MLP 784-256-128-10 relu; Adam lr 1e-3 (eps 1e-8); batch ${settings.batchSize}; seed ${settings.seed}; same initial weights everywhere`,
  throughput: epochs > 1 ? `training samples/s over epochs 2–${epochs} (epoch 1 is warm-up: pipeline compiles); all-epoch figures in the side-by-side table` : "one epoch, warm-up included",
  peers: "TF.js webgpu and wasm, each as a manual optimizer.minimize loop (Keel's batch order, loss read every 50 steps, as Keel) and as model.fit; the faster of the two is the goal's peer",
  "wasm threads": wasmPeer ? `TF.js wasm ran with ${String(wasmPeer.notes["threads"])} thread(s), SIMD ${String(wasmPeer.notes["simd"])} (TF.js turns threads off when IS_NODE, true under Deno's npm compatibility; forcing it fails on Deno's worker_threads refusing a blob: worker)` : "n/a",
  matmul: `${settings.matmulN}³ f32; warm-up, then 3 timed blocks of "runs" matmuls (about 0.7 s each, at most ${settings.matmulRuns}) between two syncs, the fastest block counts; the TF.js sync reads one element`,
  rounds: repeat === 1 ? "1 (no repeat)" : `${repeat} rounds, configurations interleaved; the best round of each is reported, every round in the JSON`,
  memory: "VmHWM of each configuration's own process at its end",
  load: `load average ${loadBefore} before, ${loadAverage()} after (2 shared cores: other work on the machine moves every number)`,
};

const name = `trainer${gpuOnly ? "-gpu" : ""}${quick ? "-quick" : ""}`;
const table = rowsToMarkdown(rows);
const md = `# ${name}\n\n${Object.entries(meta).map(([k, v]) => `- ${k}: ${v}`).join("\n")}\n\n${table}\n\n${detailsMarkdown(outcome)}`;
const dir = new URL("./results/", import.meta.url).pathname;
await Deno.mkdir(dir, { recursive: true });
await Deno.writeTextFile(`${dir}${name}.json`, JSON.stringify({ meta, settings, rows, results: Object.fromEntries(results), loads: Object.fromEntries(loads), busy: Object.fromEntries(busy), rounds: Object.fromEntries(rounds), failures }, null, 2) + "\n");
await Deno.writeTextFile(`${dir}${name}.md`, md);
console.log(md);
log(`bench/trainer: wrote bench/results/${name}.json and .md`);
