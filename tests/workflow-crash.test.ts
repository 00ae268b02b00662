/**
 * Crash and resume, end to end: `./keel workflow run` as a real process against a SQLite store,
 * killed with SIGKILL once a random number of tasks have run, then `./keel workflow resume ID`.
 * Each task appends its id to a log file, so executions are counted outside the store: a task
 * that had succeeded before the kill never runs again, a task runs twice only when the kill cut
 * its first attempt short (the store then counts two attempts), and every result is there.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const KILLS = 20;
const ENV = { NO_COLOR: "1", KEEL_DEBUG: "" };

let runtime: Runtime;
let temp: string;

before(async () => {
  runtime = await detectRuntime();
  temp = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-wf-crash-"));
});

after(async () => {
  await runtime.fs!.remove(temp);
});

/** 40 tasks: a chain c0..c19, a fan-out f0..f18 from c9, and a join on c19 and every f. */
function workflow(log: string): { yaml: string; ids: string[] } {
  const tasks: { id: string; deps: string[] }[] = [];
  for (let i = 0; i < 20; i++) tasks.push({ id: `c${i}`, deps: i === 0 ? [] : [`c${i - 1}`] });
  for (let i = 0; i < 19; i++) tasks.push({ id: `f${i}`, deps: ["c9"] });
  tasks.push({ id: "join", deps: ["c19", ...tasks.filter((t) => t.id.startsWith("f")).map((t) => t.id)] });
  const yaml = ["name: crash", "tasks:"];
  for (const t of tasks) {
    const script = `echo ${t.id} >> '${log}'; echo ${t.id}`;
    yaml.push(`  - id: ${t.id}`, "    protocol: shell/v1", "    method: shell/exec", `    dependencies: [${t.deps.join(", ")}]`);
    yaml.push(`    params: { command: sh, args: ["-c", ${JSON.stringify(script)}] }`);
  }
  return { yaml: yaml.join("\n") + "\n", ids: tasks.map((t) => t.id) };
}

async function keel(args: readonly string[], cwd: string): Promise<ProcessOutput> {
  return await runtime.processes!.run(LAUNCHER, { args: [...args], cwd, env: ENV, stdin: "null" });
}

async function lines(path: string): Promise<string[]> {
  if (!(await runtime.fs!.exists(path))) return [];
  return (await runtime.fs!.readTextFile(path)).split("\n").filter((l) => l !== "");
}

function countOf(log: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const id of log) m.set(id, (m.get(id) ?? 0) + 1);
  return m;
}

interface TaskJson {
  readonly taskId: string;
  readonly status: string;
  readonly attempts: number;
}

async function statusOf(id: string, cwd: string): Promise<{ run: { status: string }; tasks: TaskJson[] }> {
  const r = await keel(["workflow", "status", id, "--json"], cwd);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { run: { status: string }; tasks: TaskJson[] };
}

test(`SIGKILL at ${KILLS} random points, then resume: every task finishes, none that succeeded runs again`, { timeout: 120_000 }, async () => {
  let kills = 0;
  for (let round = 0; kills < KILLS; round++) {
    assert.ok(round < KILLS * 2, `only ${kills} of ${round} runs were still going when killed`);
    const dir = joinPath(temp, `round-${round}`);
    await runtime.fs!.mkdir(dir);
    const log = joinPath(dir, "executions.log");
    const { yaml, ids } = workflow(log);
    await runtime.fs!.writeTextFile(joinPath(dir, "wf.yaml"), yaml);
    const k = 1 + Math.floor(Math.random() * 36);

    const child = runtime.processes!.spawn(LAUNCHER, { args: ["workflow", "run", "wf.yaml"], cwd: dir, env: ENV, stdin: "null", stdout: "null", stderr: "null" });
    let ended = false;
    void child.status.then(() => (ended = true));
    // Wait until k tasks have run (no fixed sleep: look every few ms), then kill.
    while (!ended && (await lines(log)).length < k) await new Promise((r) => setTimeout(r, 3));
    child.kill("SIGKILL");
    const exit = await child.status;
    if (exit.signal !== "SIGKILL") continue; // it finished first: not a crash, try another round

    const listed = await keel(["workflow", "list", "--json"], dir);
    const runs = JSON.parse(listed.stdout) as { id: string }[];
    if (runs.length === 0) continue; // killed before the run was stored
    const id = runs[0]!.id;
    const snapshot = await statusOf(id, dir);
    if (snapshot.run.status !== "running") continue;
    kills++;
    const succeededBefore = new Set(snapshot.tasks.filter((t) => t.status === "succeeded").map((t) => t.taskId));
    const logBefore = countOf(await lines(log));

    const resumed = await keel(["workflow", "resume", id, "--json"], dir);
    assert.equal(resumed.code, 0, `round ${round} (k=${k}): ${resumed.stderr}`);
    const out = resumed.stdout.trim().split("\n");
    const summary = JSON.parse(out[out.length - 1]!) as { status: string; results: Record<string, { stdout: string; code: number }> };
    assert.equal(summary.status, "succeeded");

    const final = await statusOf(id, dir);
    const attempts = new Map(final.tasks.map((t) => [t.taskId, t]));
    const runsOf = countOf(await lines(log));
    for (const t of ids) {
      const rec = attempts.get(t)!;
      assert.equal(rec.status, "succeeded", `round ${round}: task ${t}`);
      // Its result is there and right, whether it ran before or after the kill.
      assert.equal(summary.results[t]?.stdout, `${t}\n`, `round ${round}: result of ${t}`);
      const n = runsOf.get(t) ?? 0;
      if (succeededBefore.has(t)) {
        assert.equal(n, 1, `round ${round}: ${t} had succeeded before the kill and ran again`);
        assert.equal(rec.attempts, 1);
        assert.equal(logBefore.get(t), 1);
      } else {
        // Ran after the resume; a second execution only when the kill cut a first attempt short.
        assert.ok(n >= 1 && n <= rec.attempts && rec.attempts <= 2, `round ${round}: ${t} ran ${n} time(s) in ${rec.attempts} attempt(s)`);
      }
    }
  }
});
