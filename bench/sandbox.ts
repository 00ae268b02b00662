/**
 * Code mode, side by side in one run:
 * - a warm execution of `return 2 + 2` through the process pool (`deno-ses`) and through QuickJS,
 *   p50 and p99 (goals: p50 < 1 ms, p99 < 5 ms);
 * - a tool call's round trip from inside the sandbox (executions making 100 calls, less one
 *   making none, per call; goal p50 < 0.3 ms);
 * - the seed's design, a fresh `deno run` per execution (no permissions, no SES even, so the
 *   peer is favoured), against the pool (goal ≥ 30× faster per execution);
 * - 1,000 executions with 32 in flight: throughput, and host memory (RSS) before, after, and
 *   after a second 1,000 (no growth beyond noise).
 *
 * Run: `./node_modules/.bin/deno task bench:sandbox` (or `bun bench/sandbox.ts`).
 * @module
 */

import { type CodeExecutor, createCodeExecutor, createToolRegistry, type ExecuteResult } from "../core/mod.ts";
import { createProcessSandbox, denoSpawner } from "../plugins/sandbox/pool.ts";
import { createQuickJsSandbox } from "../plugins/sandbox/quickjs.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { type BenchRow, median, writeResults } from "./_harness.ts";

const runtime = await detectRuntime();
const rows: BenchRow[] = [];
const WARM_RUNS = 2_000;
const SPAWN_RUNS = 15;

function log(message: string): void {
  runtime.writeStderr(message + "\n");
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function rssMb(): number {
  // deno-lint-ignore no-process-global
  return process.memoryUsage().rss / 1_048_576;
}

function check(out: ExecuteResult, expected: unknown): void {
  if (out.error || JSON.stringify(out.result) !== JSON.stringify(expected)) {
    throw new Error(`Benchmark execution went wrong: ${JSON.stringify(out.error ?? out.result)}`);
  }
}

async function times(exec: CodeExecutor, code: string, expected: unknown, runs: number): Promise<number[]> {
  for (let i = 0; i < 200; i++) check(await exec.execute(code, { tools: ["noop"] }), expected);
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = await exec.execute(code, { tools: ["noop"] });
    out.push(performance.now() - t0);
    check(r, expected);
  }
  return out;
}

const tools = createToolRegistry();
tools.register({ name: "noop", description: "Returns its input", inputSchema: { type: "object" }, run: (input: unknown) => input });

async function measureBackend(label: string, exec: CodeExecutor): Promise<number> {
  log(`${label}: warm executions…`);
  const base = await times(exec, "return 2 + 2", 4, WARM_RUNS);
  const p50 = percentile(base, 50);
  const p99 = percentile(base, 99);
  rows.push({ name: `${label}: return 2 + 2, p50`, median: p50 * 1000, unit: "µs", runs: WARM_RUNS, goal: "< 1 ms", met: p50 < 1 });
  rows.push({ name: `${label}: return 2 + 2, p99`, median: p99 * 1000, unit: "µs", runs: WARM_RUNS, goal: "< 5 ms", met: p99 < 5 });
  // A tool call's round trip: executions making 100 calls in a row, less the p50 of one making
  // none, per call (one call per execution is lost in the noise of a whole execution).
  const hundred = await times(exec, "let n = 0; for (let i = 0; i < 100; i++) n += (await tools.noop({ a: 1 })).a; return n", 100, 300);
  const perCall = hundred.map((t) => Math.max(0, t - p50) / 100);
  const rtt = percentile(perCall, 50);
  rows.push({ name: `${label}: tool call round trip, p50 (100 calls per execution)`, median: rtt * 1000, unit: "µs", runs: 300, goal: "< 0.3 ms", met: rtt < 0.3 });
  rows.push({ name: `${label}: tool call round trip, p99`, median: percentile(perCall, 99) * 1000, unit: "µs", runs: 300 });
  return p50;
}

// 1. The pool.
const pool = createProcessSandbox({ spawnDeno: denoSpawner(runtime) });
await pool.warm();
const poolExec = createCodeExecutor({ tools, backend: pool });
const poolP50 = await measureBackend("deno-ses pool", poolExec);

// 2. QuickJS.
const quickExec = createCodeExecutor({ tools, backend: createQuickJsSandbox() });
await measureBackend("quickjs", quickExec);
await quickExec.close();

// 3. The seed's design: one fresh `deno run` per execution.
log("fresh deno run per execution…");
const deno = runtime.denoPath!();
const dir = await runtime.fs!.makeTempDir("keel-bench-sandbox-");
const script = `${dir}/once.mjs`;
await runtime.fs!.writeTextFile(script, "const f = (0, eval)('(async () => 2 + 2)'); console.log(JSON.stringify(await f()));\n");
const spawnTimes: number[] = [];
for (let i = 0; i < SPAWN_RUNS + 1; i++) {
  const t0 = performance.now();
  const out = await runtime.processes!.run(deno, { args: ["run", "--no-prompt", "--no-config", "--no-remote", script], stdin: "null" });
  const ms = performance.now() - t0;
  if (out.stdout.trim() !== "4") throw new Error(`The fresh-process execution failed: ${out.stderr}`);
  if (i > 0) spawnTimes.push(ms);
}
await runtime.fs!.remove(dir);
const spawnMedian = median(spawnTimes);
rows.push({ name: "fresh deno run per execution (the seed's design)", median: spawnMedian, unit: "ms", runs: SPAWN_RUNS });
rows.push({
  name: "pool execution vs fresh deno run",
  median: poolP50 * 1000,
  unit: "µs",
  runs: WARM_RUNS,
  peer: "fresh deno run per execution",
  ratio: spawnMedian / poolP50,
  goal: "≥ 30× faster",
  met: spawnMedian / poolP50 >= 30,
});

// 4. 1,000 executions with 32 in flight, twice; host memory before and after.
async function burst(n: number, inFlight: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  async function worker(): Promise<void> {
    while (next < n) {
      const i = next++;
      check(await poolExec.execute("const r = await tools.noop({ i: context.i }); return r.i", { tools: ["noop"], context: { i } }), i);
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker));
  return performance.now() - t0;
}
log("1,000 executions, 32 in flight…");
const before = rssMb();
const first = await burst(1_000, 32);
const afterFirst = rssMb();
const second = await burst(1_000, 32);
const afterSecond = rssMb();
rows.push({ name: "1,000 executions, 32 in flight: throughput", median: 1_000 / ((first + second) / 2 / 1000), unit: "runs/s", runs: 2 });
rows.push({ name: "host RSS before", median: before, unit: "MB", runs: 1 });
rows.push({ name: "host RSS after 1,000", median: afterFirst, unit: "MB", runs: 1 });
rows.push({ name: "host RSS after 2,000", median: afterSecond, unit: "MB", runs: 1, goal: "no growth beyond noise (< 10 MB from the first 1,000)", met: afterSecond - afterFirst < 10 });
await poolExec.close();

const md = await writeResults(runtime, `sandbox-${runtime.name}`, rows, {
  date: new Date().toISOString().slice(0, 10),
  runtime: `${runtime.name} ${runtime.version}`,
  cpus: navigator.hardwareConcurrency,
  processes: pool.stats().started,
});
runtime.writeStdout(md);
