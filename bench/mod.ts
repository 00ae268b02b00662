/**
 * Keel's benchmarks, side by side in one run: start-up against the bare runtime, kernel boot
 * and hook dispatch, and the cost of an isolated plugin. Writes bench/results/latest-<host>.{json,md}.
 *
 * Run: `deno task bench` (or `bun bench/mod.ts`; `--runs N` to change the repeat count).
 * @module
 */

import { createKernel, definePlugin, type Plugin } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { type BenchRow, median, timeCommands, timeRuns, writeResults } from "./_harness.ts";

const runtime = await detectRuntime();
const runsArg = runtime.args.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(runtime.args[runsArg + 1]) : 15;
const root = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const deno = runtime.denoPath!();
const bun = runtime.resolvePath("node_modules/.bin/bun", root);
const rows: BenchRow[] = [];

function log(message: string): void {
  runtime.writeStderr(message + "\n");
}

// 1. Start-up: the kernel's own cost over the bare runtime, median of RUNS interleaved runs.
log(`start-up: ${RUNS} runs each…`);
const startup = await timeCommands(runtime, {
  "deno run empty.ts": [deno, "run", `${root}/bench/fixtures/empty.ts`],
  "keel --version": [`${root}/keel`, "--version"],
  "keel run examples/hello/hello.ts": [`${root}/keel`, "run", `${root}/examples/hello/hello.ts`],
  "bun empty.ts": [bun, `${root}/bench/fixtures/empty.ts`],
  "bun cli/main.ts --version": [bun, `${root}/cli/main.ts`, "--version"],
}, RUNS);
const denoBase = median(startup["deno run empty.ts"]!);
const bunBase = median(startup["bun empty.ts"]!);
rows.push({ name: "deno run empty.ts", median: denoBase, unit: "ms", runs: RUNS });
for (const name of ["keel --version", "keel run examples/hello/hello.ts"]) {
  const m = median(startup[name]!);
  rows.push({ name, median: m, unit: "ms", runs: RUNS, peer: "deno run empty.ts", ratio: m / denoBase, goal: "< 1.25×", met: m / denoBase < 1.25 });
}
rows.push({ name: "bun empty.ts", median: bunBase, unit: "ms", runs: RUNS });
{
  const m = median(startup["bun cli/main.ts --version"]!);
  rows.push({ name: "bun cli/main.ts --version", median: m, unit: "ms", runs: RUNS, peer: "bun empty.ts", ratio: m / bunBase });
}

// 2. createKernel with 100 trivial plugins.
log("kernel boot and hook dispatch…");
function trivialPlugins(n: number): Plugin[] {
  return Array.from({ length: n }, (_, i) =>
    definePlugin({ name: `p${i}`, version: "1.0.0", kernel: "^1", setup: () => ({ onEvent: () => {} }) }));
}
const plugins = trivialPlugins(100);
const boot = await timeRuns(200, async () => {
  const k = await createKernel({ plugins });
  await k.dispose();
}, 20);
const bootMedian = median(boot);
rows.push({ name: "createKernel, 100 plugins", median: bootMedian, unit: "ms", runs: 200, goal: "< 5 ms", met: bootMedian < 5 });

// 3. A parallel hook across 100 plugins: median over batches of 1 000 calls, per call.
const kernel = await createKernel({ plugins });
const event = { type: "tick", at: 0 } as const;
const batches = await timeRuns(50, async () => {
  for (let i = 0; i < 1000; i++) await kernel.callHook("onEvent", event);
}, 5);
const perCallUs = median(batches); // ms per 1 000 calls is µs per call
rows.push({ name: "parallel hook, 100 plugins, per call", median: perCallUs, unit: "µs", runs: 50_000, goal: "< 50 µs", met: perCallUs < 50 });
await kernel.dispose();

// 4. An isolated plugin: process start + setup, and a hook round trip.
log("isolated plugin…");
const noop = {
  isolate: true as const,
  module: `${root}/bench/fixtures/noop-plugin.ts`,
  manifest: { name: "bench-noop", version: "1.0.0", kernel: "^1" },
};
const starts = await timeRuns(Math.max(10, RUNS), async () => {
  const k = await createKernel({ runtime, plugins: [noop] });
  await k.dispose();
}, 1);
rows.push({ name: "isolated plugin: start + setup + dispose", median: median(starts), unit: "ms", runs: starts.length });
const iso = await createKernel({ runtime, plugins: [noop] });
const trips = await timeRuns(500, () => iso.callHook("onEvent", event), 20);
rows.push({ name: "isolated plugin: hook round trip", median: median(trips) * 1000, unit: "µs", runs: 500 });
await iso.dispose();

const md = await writeResults(runtime, `latest-${runtime.name}`, rows, {
  date: new Date().toISOString().slice(0, 10),
  host: `${runtime.name} ${runtime.version}`,
  machine: "2 cores, 24 GiB (CI machine kind node-svc)",
});
log(md);
