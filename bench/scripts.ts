/**
 * Benchmarks for script runs and sweeps (issue 3), side by side in one run, each against the
 * peer of spawning `deno run` once per member:
 *
 * 1. per-run cost of a 200-config sweep of a trivial script: in-process (a fresh module
 *    instance per run included; goal < 1 ms), in workers, and with `isolate: "process"`
 *    (goal < 30 ms);
 * 2. `keel run hello.ts` against `deno run hello.ts`, whole commands (goal <= 1.3x);
 * 3. the speed-up of a CPU-bound sweep with `parallel: 2` on this 2-core machine (goal >= 1.8x).
 *
 * Writes bench/results/scripts-<host>.{json,md}. Run: `deno task bench:scripts` (or
 * `bun bench/scripts.ts`; `--runs N` sets the repeat count of the command timings).
 * @module
 */

// The engine's files, not core/mod.ts: a sweep child loads what `keel run` loads, since Deno's
// dynamic imports (one per run) get slower as the module graph grows.
import { joinPath } from "../core/path.ts";
import { runMany, type RunManyOptions } from "../core/runs/engine.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { type BenchRow, median, timeCommands, timeRuns, writeResults } from "./_harness.ts";

const runtime = await detectRuntime();

// A child of this benchmark: one sweep in a fresh process (as one `keel run --sweep` is), timed.
if (runtime.args[0] === "--sweep-child") {
  const { file, n, options } = JSON.parse(runtime.args[1]!) as {
    file: string;
    n: number;
    options: RunManyOptions;
  };
  const t0 = performance.now();
  const results = await runMany(file, Array.from({ length: n }, (_, i) => ({ params: { i } })), {
    ...options,
    runtime,
    onOutput: () => {},
  });
  const ms = performance.now() - t0;
  const failed = results.find((r) => !r.ok);
  if (failed && !failed.ok) throw new Error(`A benchmark run failed: ${failed.error.message}`);
  await runtime.writeStdout(`${ms}\n`);
  runtime.exit?.(0);
}

const runsArg = runtime.args.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(runtime.args[runsArg + 1]) : 15;
const SWEEP = 200;
const root = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const deno = runtime.denoPath!();
const fs = runtime.fs!;
const rows: BenchRow[] = [];

function log(message: string): void {
  runtime.writeStderr(message + "\n");
}

const work = await fs.realPath(await fs.makeTempDir("keel-bench-scripts-"));
const hello = joinPath(work, "hello.ts");
const cpu = joinPath(work, "cpu.ts");
await fs.writeTextFile(
  hello,
  `export const params = { name: "world", i: 0 };
export default function hello(p: typeof params) { return { greeting: "Hello, " + p.name + "!", i: p.i }; }
if (import.meta.main) console.log(JSON.stringify(hello(params)));
`,
);
await fs.writeTextFile(
  cpu,
  `export const params = { n: 1_500_000, i: 0 };
export default function primes(p: typeof params) {
  let count = 0;
  for (let i = 2; i < p.n; i++) {
    let prime = true;
    for (let d = 2; d * d <= i; d++) if (i % d === 0) { prime = false; break; }
    if (prime) count++;
  }
  return count;
}
if (import.meta.main) console.log(primes(params));
`,
);

const quiet: RunManyOptions = { runtime, root: work, onOutput: () => {} };
const self = new URL(import.meta.url).pathname;
const host = runtime.name === "bun"
  ? [runtime.resolvePath("node_modules/.bin/bun", root), self]
  : [deno, "run", "-A", self];

/** One sweep in a fresh process; its time as that process measured it. */
async function childSweepMs(file: string, n: number, options: RunManyOptions): Promise<number> {
  const [cmd, ...args] = host;
  const out = await runtime.processes!.run(cmd!, {
    args: [
      ...args,
      "--sweep-child",
      JSON.stringify({ file, n, options: { ...options, root: work } }),
    ],
    cwd: work,
    stdin: "null",
  });
  if (!out.success) throw new Error(`The benchmark child failed: ${out.stderr}`);
  return Number(out.stdout.trim());
}
const configs = (n: number) => Array.from({ length: n }, (_, i) => ({ params: { i } }));

async function sweepMs(file: string, n: number, options: RunManyOptions): Promise<number> {
  const t0 = performance.now();
  const results = await runMany(file, configs(n), { ...quiet, ...options });
  const ms = performance.now() - t0;
  const failed = results.find((r) => !r.ok);
  if (failed && !failed.ok) throw new Error(`A benchmark run failed: ${failed.error.message}`);
  return ms;
}

try {
  // The peer: one `deno run` per member, sequentially.
  log(`deno run per member: ${RUNS} runs…`);
  const spawnRuns = await timeRuns(RUNS, async () => {
    const out = await runtime.processes!.run(deno, { args: ["run", "-A", hello], stdin: "null" });
    if (!out.success) throw new Error(out.stderr);
  }, 1);
  const perSpawn = median(spawnRuns);
  const peer = "deno run per member";
  rows.push({ name: `${peer} (hello.ts)`, median: perSpawn, unit: "ms", runs: RUNS });

  // 1. Per-run cost of a 200-config sweep, each repetition in a fresh process: Deno's dynamic
  // imports slow down as a process accumulates module instances, and one `keel run --sweep` is
  // one process.
  log(`a ${SWEEP}-config sweep, per run…`);
  const sweeps: [
    string,
    RunManyOptions,
    string | undefined,
    ((ms: number) => boolean) | undefined,
  ][] = [
    ["in-process, no records", { isolate: "none", record: false }, "< 1 ms", (ms) => ms < 1],
    ["in-process, recorded", { isolate: "none" }, undefined, undefined],
    ["workers (parallel 2), recorded", { isolate: "worker", parallel: 2 }, undefined, undefined],
    ["isolate process, recorded", { isolate: "process" }, "< 30 ms", (ms) => ms < 30],
    [
      "isolate process (parallel 2), recorded",
      { isolate: "process", parallel: 2 },
      undefined,
      undefined,
    ],
  ];
  for (const [name, options, goal, met] of sweeps) {
    const reps = options.isolate === "process" ? 3 : 7;
    const times = await timeRuns(reps, () => childSweepMs(hello, SWEEP, options), 1);
    const perRun = median(times) / SWEEP;
    rows.push({
      name: `sweep of ${SWEEP}, ${name}, per run`,
      median: perRun,
      unit: "ms",
      runs: reps * SWEEP,
      peer,
      ratio: perRun / perSpawn,
      ...(goal === undefined ? {} : { goal, met: met!(perRun) }),
    });
    await fs.remove(joinPath(work, ".keel"));
  }

  // 2. Whole commands, interleaved.
  log(`keel run vs deno run: ${RUNS} runs each…`);
  const commands = await timeCommands(runtime, {
    "deno run hello.ts": [deno, "run", "-A", hello],
    "keel run hello.ts": [`${root}/keel`, "run", hello],
    "keel run hello.ts --no-record": [`${root}/keel`, "run", hello, "--no-record"],
  }, RUNS);
  const denoRun = median(commands["deno run hello.ts"]!);
  rows.push({ name: "deno run hello.ts", median: denoRun, unit: "ms", runs: RUNS });
  for (const name of ["keel run hello.ts", "keel run hello.ts --no-record"]) {
    const m = median(commands[name]!);
    rows.push({
      name,
      median: m,
      unit: "ms",
      runs: RUNS,
      peer: "deno run hello.ts",
      ratio: m / denoRun,
      goal: "<= 1.3×",
      met: m / denoRun <= 1.3,
    });
  }
  await fs.remove(joinPath(work, ".keel"));

  // 3. A CPU-bound sweep: sequential against two at a time. The four ways take turns in each
  // round, so a noisy neighbour on this small machine slows them alike.
  const CPU_RUNS = 8; // each about a quarter of a second here
  const reps = 5;
  log(`a CPU-bound sweep of ${CPU_RUNS}, ${reps} rounds…`);
  const peerSweep = async (): Promise<void> => {
    // The peer: two `deno run` processes at a time, one per member.
    let next = 0;
    const lane = async () => {
      while (next < CPU_RUNS) {
        next++;
        const out = await runtime.processes!.run(deno, { args: ["run", "-A", cpu], stdin: "null" });
        if (!out.success) throw new Error(out.stderr);
      }
    };
    await Promise.all([lane(), lane()]);
  };
  const ways: Record<string, () => Promise<unknown>> = {
    sequential: () => sweepMs(cpu, CPU_RUNS, { isolate: "none", record: false }),
    workers: () => sweepMs(cpu, CPU_RUNS, { isolate: "worker", parallel: 2, record: false }),
    processes: () => sweepMs(cpu, CPU_RUNS, { isolate: "process", parallel: 2, record: false }),
    peer: peerSweep,
  };
  const times: Record<string, number[]> = { sequential: [], workers: [], processes: [], peer: [] };
  for (let round = 0; round <= reps; round++) {
    for (const [name, fn] of Object.entries(ways)) {
      const t0 = performance.now();
      await fn();
      if (round > 0) times[name]!.push(performance.now() - t0); // round 0 warms up
    }
  }
  const sequential = median(times.sequential!);
  rows.push({
    name: `CPU-bound sweep of ${CPU_RUNS}, sequential in-process`,
    median: sequential,
    unit: "ms",
    runs: reps,
  });
  for (const [name, key] of [["workers", "workers"], ["processes", "processes"]] as const) {
    const m = median(times[key]!);
    const speedup = sequential / m;
    rows.push({
      name: `CPU-bound sweep of ${CPU_RUNS}, parallel 2 in ${name} (speed-up ${
        speedup.toFixed(2)
      }×)`,
      median: m,
      unit: "ms",
      runs: reps,
      peer: "sequential in-process",
      ratio: m / sequential,
      goal: "speed-up >= 1.8×",
      met: speedup >= 1.8,
    });
  }
  const perMember = median(times.peer!);
  rows.push({
    name: `CPU-bound sweep of ${CPU_RUNS}, deno run per member, 2 at a time (speed-up ${
      (sequential / perMember).toFixed(2)
    }×)`,
    median: perMember,
    unit: "ms",
    runs: reps,
    peer: "sequential in-process",
    ratio: perMember / sequential,
  });
} finally {
  await fs.remove(work);
}

const md = await writeResults(runtime, `scripts-${runtime.name}`, rows, {
  date: new Date().toISOString().slice(0, 10),
  host: `${runtime.name} ${runtime.version}`,
  machine: "2 cores, 24 GiB (CI machine kind node-svc)",
});
log(md);
