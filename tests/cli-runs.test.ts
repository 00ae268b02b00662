/**
 * End to end: `keel run` (one run, sweeps, isolation, records, bad input), `keel flow`, `keel
 * runs`, spawned as a user would through the real `./keel` launcher (Deno) and
 * `bun cli/main.ts`, each in a temporary working directory so records stay out of the repo.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { CONFIG_FLAGS as CONFIG_COMMAND_FLAGS } from "../cli/commands/config.ts";
import { CONFIG_FLAGS } from "../cli/flags.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const BUN = joinPath(ROOT, "node_modules/.bin/bun");
const SCRIPTS = joinPath(ROOT, "tests/fixtures/scripts");
const CONFIGS = joinPath(SCRIPTS, "configs");
const SLOW = { timeout: 60_000 };
const RUN_ID = /^\d{8}-\d{6}-[0-9a-f]{6}$/;

let runtime: Runtime;
let temp: string;

interface Result extends ProcessOutput {
  readonly json: () => unknown;
  readonly lines: () => Record<string, unknown>[];
}

async function keel(
  args: readonly string[],
  options: { cwd?: string; via?: "launcher" | "bun" } = {},
): Promise<Result> {
  const via = options.via ?? "launcher";
  const output = await runtime.processes!.run(via === "bun" ? BUN : LAUNCHER, {
    args: via === "bun" ? [joinPath(ROOT, "cli/main.ts"), ...args] : [...args],
    cwd: options.cwd ?? temp,
    env: { NO_COLOR: "1", KEEL_DEBUG: "" },
    stdin: "null",
  });
  return {
    ...output,
    json: () => JSON.parse(output.stdout),
    lines: () =>
      output.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function explain(r: ProcessOutput): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

const script = (name: string): string => joinPath(SCRIPTS, name);
const config = (name: string): string => joinPath(CONFIGS, name);

async function freshDir(prefix: string): Promise<string> {
  return await runtime.fs!.realPath(await runtime.fs!.makeTempDir(prefix));
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await runtime.fs!.readTextFile(path)) as Record<string, unknown>;
}

/** Polls until `check` returns a value (no fixed sleeps: a short wait between looks). */
async function waitFor<T>(
  check: () => Promise<T | undefined>,
  what: string,
  limitMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const found = await check();
    if (found !== undefined) return found;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The id of the one run recorded in `cwd` whose run.json says `status`. */
async function recordWithStatus(cwd: string, status: string): Promise<string | undefined> {
  const dir = joinPath(cwd, ".keel/runs");
  if (!(await runtime.fs!.exists(dir))) return undefined;
  for (const entry of await runtime.fs!.readDir(dir)) {
    try {
      const run = await readJson(joinPath(dir, entry.name, "run.json"));
      if (run.status === status) return entry.name;
    } catch {
      // being written
    }
  }
  return undefined;
}

before(async () => {
  runtime = await detectRuntime();
  temp = await freshDir("keel-cli-runs-");
});

after(async () => {
  await runtime.fs!.remove(temp);
});

describe("keel run: one run", () => {
  test(
    "--json reports the result and the run id; the record holds config, result and status",
    SLOW,
    async () => {
      const r = await keel(["run", script("square.ts"), "--set", "x=4", "--json"]);
      assert.equal(r.code, 0, explain(r));
      const report = r.json() as { ok: boolean; result: unknown; runId: string };
      assert.equal(report.result, 16);
      assert.match(report.runId, RUN_ID);
      const dir = joinPath(temp, ".keel/runs", report.runId);
      const run = await readJson(joinPath(dir, "run.json"));
      assert.equal(run.status, "ok");
      assert.equal(run.file, script("square.ts"));
      assert.deepEqual((await readJson(joinPath(dir, "config.json"))).params, { x: 4 });
      assert.equal(await runtime.fs!.readTextFile(joinPath(dir, "result.json")), "16\n");
    },
  );

  test("precedence: script defaults < config file < --set", SLOW, async () => {
    const r = await keel([
      "run",
      script("pair.ts"),
      "--config",
      config("layers.ts"),
      "--set",
      "b=30",
      "--json",
    ]);
    assert.equal(r.code, 0, explain(r));
    assert.deepEqual((r.json() as { result: unknown }).result, { a: 10, b: 30, label: "x" });
  });

  test("the script's output is shown and recorded", SLOW, async () => {
    const r = await keel(["run", script("echo.ts"), "--set", "text=hey"]);
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stdout, /^out: hey$/m);
    assert.match(r.stderr, /^err: hey$/m);
    const id = /\(run (\S+)\)/.exec(r.stderr)?.[1];
    assert.ok(id, r.stderr);
    assert.equal(
      await runtime.fs!.readTextFile(joinPath(temp, ".keel/runs", id, "stdout.log")),
      "out: hey\n",
    );
  });

  test("SCRIPT#name and --entrypoint pick the export", SLOW, async () => {
    const a = await keel(["run", `${script("entrypoints.ts")}#train`, "--set", "x=3", "--json"]);
    assert.equal(a.code, 0, explain(a));
    assert.equal((a.json() as { result: unknown }).result, "train 3");
    const b = await keel(["run", script("entrypoints.ts"), "--entrypoint", "run", "--json"]);
    assert.equal((b.json() as { result: unknown }).result, "run");
  });

  test("--no-record and --dry-run write no record; --dry-run runs nothing", SLOW, async () => {
    const cwd = await freshDir("keel-norecord-");
    try {
      const r = await keel(["run", script("square.ts"), "--no-record", "--json"], { cwd });
      assert.equal(r.code, 0, explain(r));
      const dry = await keel(["run", script("echo.ts"), "--sweep", "text=a,b", "--dry-run"], {
        cwd,
      });
      assert.equal(dry.code, 0, explain(dry));
      assert.match(dry.stdout, /Would run echo\.ts 2 times/);
      assert.match(dry.stdout, /^ +1 +text=a$/m);
      assert.doesNotMatch(dry.stdout + dry.stderr, /out: a/);
      const json = await keel([
        "run",
        script("pair.ts"),
        "--config",
        config("layers.ts"),
        "--set",
        "a=5",
        "--dry-run",
        "--json",
      ], { cwd });
      assert.deepEqual(
        (json.json() as { configs: { params: unknown }[] }).configs.map((c) => c.params),
        [{ a: "5", b: 20 }],
      );
      assert.equal(await runtime.fs!.exists(joinPath(cwd, ".keel")), false);
    } finally {
      await runtime.fs!.remove(cwd);
    }
  });
});

describe("keel run: sweeps", () => {
  test("each run gets a fresh module: a module-level counter stays at 1", SLOW, async () => {
    const r = await keel(["run", script("counter.ts"), "--sweep", "label=a,b,c", "--json"]);
    assert.equal(r.code, 0, explain(r));
    const lines = r.lines();
    assert.deepEqual(
      lines.filter((l) => l.type === "run").map((l) => (l.result as { calls: number }).calls),
      [1, 1, 1],
    );
    assert.deepEqual(lines[lines.length - 1], {
      type: "summary",
      ok: true,
      total: 3,
      failed: 0,
      durationMs: lines[lines.length - 1]!.durationMs,
    });
  });

  for (const isolate of ["worker", "process"] as const) {
    test(
      `--parallel 2 --isolate ${isolate}: results in input order though runs end out of order`,
      SLOW,
      async () => {
        const dir = await freshDir("keel-order-");
        try {
          const cfg = joinPath(dir, "order.json");
          await runtime.fs!.writeTextFile(
            cfg,
            JSON.stringify([
              { params: { id: "first", waitFor: "second", records: dir } },
              { params: { id: "second", records: dir } },
            ]),
          );
          const r = await keel([
            "run",
            script("ordered.ts"),
            "--config",
            cfg,
            "--parallel",
            "2",
            "--isolate",
            isolate,
          ], { cwd: dir });
          assert.equal(r.code, 0, explain(r));
          // Progress lines come as runs end: #2 before #1.
          assert.ok(r.stderr.indexOf("#2 ok") < r.stderr.indexOf("#1 ok"), r.stderr);
          const table = r.stdout.trim().split("\n");
          assert.match(table[0]!, /^#\s+STATUS\s+RUN\s+PARAMS\s+RESULT\s+TIME$/);
          assert.match(table[1]!, /^1\s+ok\s+\S+\s+id=first .*"id":"first"/);
          assert.match(table[2]!, /^2\s+ok\s+\S+\s+id=second .*"id":"second"/);
        } finally {
          await runtime.fs!.remove(dir);
        }
      },
    );
  }

  test("a failed member is reported with its config; the others finish; exit 1", SLOW, async () => {
    const r = await keel(["run", script("bad-result.ts"), "--sweep", "kind=ok,bigint,ok"]);
    assert.equal(r.code, 1, explain(r));
    assert.match(
      r.stderr,
      /Run #2 \(kind=bigint\) failed: .*result\.metrics\[1\]\.loss is a BigInt/,
    );
    assert.match(r.stderr, /code: E_SCRIPT_RESULT; see keel runs show \d{8}-/);
    assert.match(r.stderr, /✖ 1 of 3 runs failed \(#2\); the others finished/);
    assert.match(r.stderr, /code: E_RUN_FAILED/);
    assert.match(r.stdout, /^1\s+ok/m);
    assert.match(r.stdout, /^2\s+failed\s+\S+\s+kind=bigint\s+E_SCRIPT_RESULT/m);
    assert.match(r.stdout, /^3\s+ok/m);
  });

  test("--json: a line per run, then the summary, and nothing more on failure", SLOW, async () => {
    const r = await keel(["run", script("bad-result.ts"), "--sweep", "kind=ok,fn", "--json"]);
    assert.equal(r.code, 1, explain(r));
    const lines = r.lines();
    assert.equal(lines.length, 3, r.stdout);
    const failed = lines.find((l) => l.ok === false)!;
    assert.deepEqual(failed.config, { params: { kind: "fn" }, args: [], kwargs: {}, metadata: {} });
    assert.equal((failed.error as { code: string }).code, "E_SCRIPT_RESULT");
    assert.deepEqual({ ...lines[2], durationMs: 0 }, {
      type: "summary",
      ok: false,
      total: 2,
      failed: 1,
      durationMs: 0,
    });
  });

  test("the progress line gives done, running, failed and the ETA", SLOW, async () => {
    const r = await keel(["run", script("bad-result.ts"), "--sweep", "kind=ok,nan,ok"]);
    assert.equal(r.code, 1, explain(r));
    const progress = r.stderr.split("\n").filter((l) => l.startsWith("["));
    assert.equal(progress.length, 3, r.stderr);
    assert.match(progress[0]!, /^\[1\/3 done · 0 running · 0 failed · ETA [^\]]+\] #1 ok /);
    assert.match(
      progress[1]!,
      /^\[2\/3 done · 0 running · 1 failed · ETA [^\]]+\] #2 FAILED \S+ {2}kind=nan {2}E_SCRIPT_RESULT$/,
    );
    assert.match(progress[2]!, /^\[3\/3 done · 0 running · 1 failed · ETA 0 s\] #3 ok /);
  });

  test("a config file with a list sweeps; --zip and --trials shape --sweep", SLOW, async () => {
    const list = await keel([
      "run",
      script("square.ts"),
      "--config",
      config("squares.ts"),
      "--json",
    ]);
    assert.deepEqual(list.lines().filter((l) => l.type === "run").map((l) => l.result), [1, 4, 9]);
    const zip = await keel([
      "run",
      script("pair.ts"),
      "--sweep",
      "a=1,2",
      "--sweep",
      "b=3,4",
      "--zip",
      "--dry-run",
      "--json",
    ]);
    assert.deepEqual(
      (zip.json() as { configs: { params: unknown }[] }).configs.map((c) => c.params),
      [{ a: 1, b: 3 }, { a: 2, b: 4 }],
    );
    const trials = await keel([
      "run",
      script("pair.ts"),
      "--sweep",
      "a=interval(0,1)",
      "--trials",
      "4",
      "--seed",
      "7",
      "--dry-run",
      "--json",
    ]);
    assert.equal((trials.json() as { configs: unknown[] }).configs.length, 4);
  });
});

describe("keel run: bad input", () => {
  const cases: { name: string; args: string[]; code: string; pattern: RegExp }[] = [
    {
      name: "a missing script",
      args: ["run", "nope.ts"],
      code: "E_SCRIPT_NOT_FOUND",
      pattern: /Script "nope\.ts" does not exist/,
    },
    {
      name: "no entrypoint",
      args: ["run", script("no-entry.ts")],
      code: "E_SCRIPT_ENTRYPOINT",
      pattern: /has no entrypoint \(it exports "main", "params"\)/,
    },
    {
      name: "an entrypoint that throws",
      args: ["run", script("throws.ts")],
      code: "E_SCRIPT_FAILED",
      pattern: /failed in main\(\): the model diverged/,
    },
    {
      name: "a result that is not JSON",
      args: ["run", script("bad-result.ts"), "--set", "kind=cycle"],
      code: "E_SCRIPT_RESULT",
      pattern: /result\.graph\.self is a reference back/,
    },
    {
      name: "--set of an unknown key with --strict",
      args: ["run", script("square.ts"), "--set", "y=1", "--strict"],
      code: "E_CONFIG_UNKNOWN_KEY",
      pattern: /no param "y"; its params are "x"/,
    },
    {
      name: "--set of a likely typo without --strict",
      args: ["run", script("pair.ts"), "--set", "lable=y"],
      code: "E_CONFIG_INVALID",
      pattern: /no param "lable" \(did you mean "label"\?\)/,
    },
    {
      name: "a value that cannot be coerced",
      args: ["run", script("square.ts"), "--set", "x=ten"],
      code: "E_CONFIG_INVALID",
      pattern: /Param "x" expects a number/,
    },
    {
      name: "a config file that throws",
      args: ["run", script("pair.ts"), "--config", config("throws.ts")],
      code: "E_CONFIG_LOAD_FAILED",
      pattern: /the config generator broke/,
    },
    {
      name: "a config file that yields nothing",
      args: ["run", script("pair.ts"), "--config", config("empty.ts")],
      code: "E_CONFIG_EMPTY",
      pattern: /yields no configs/,
    },
    {
      name: "an infinite generator without --max-runs",
      args: ["run", script("pair.ts"), "--config", config("forever.ts")],
      code: "E_CONFIG_TOO_MANY",
      pattern: /more than 10000 configs/,
    },
    {
      name: "an infinite generator with --max-runs 5",
      args: ["run", script("pair.ts"), "--config", config("forever.ts"), "--max-runs", "5"],
      code: "E_CONFIG_TOO_MANY",
      pattern: /more than 5 configs/,
    },
    {
      name: "a range with step 0",
      args: ["run", script("square.ts"), "--sweep", "x=range(0,5,0)"],
      code: "E_SWEEP_INVALID",
      pattern: /step other than 0/,
    },
    {
      name: "an extends cycle",
      args: ["run", script("pair.ts"), "--config", config("cycle-a.ts")],
      code: "E_CONFIG_EXTENDS_CYCLE",
      pattern: /cycle-a\.ts -> cycle-b\.ts -> cycle-a\.ts/,
    },
  ];
  for (const c of cases) {
    test(`${c.name}: exit 1, ${c.code}`, SLOW, async () => {
      const r = await keel(c.args);
      assert.equal(r.code, 1, explain(r));
      assert.match(r.stderr, c.pattern);
      assert.match(r.stderr, new RegExp(`code: ${c.code}`));
    });
  }

  test("--set of a new key without --strict runs, with a warning", SLOW, async () => {
    const r = await keel(["run", script("pair.ts"), "--set", "warmup=100", "--json"]);
    assert.equal(r.code, 0, explain(r));
    assert.deepEqual((r.json() as { result: unknown }).result, {
      a: 1,
      b: 2,
      label: "x",
      warmup: 100,
    });
    assert.match(r.stderr, /has no param "warmup"; passed on as new/);
  });

  test("usage errors exit 2", SLOW, async () => {
    for (
      const args of [["run", script("square.ts"), "--parallel", "0"], [
        "run",
        script("square.ts"),
        "--isolate",
        "vm",
      ], ["run", script("square.ts"), "--seed", "1"]]
    ) {
      const r = await keel(args);
      assert.equal(r.code, 2, explain(r));
      assert.match(r.stderr, /code: E_CLI_USAGE/);
    }
  });
});

describe("interrupted runs", () => {
  test("a run killed mid-way (SIGKILL) is listed as interrupted", SLOW, async () => {
    const cwd = await freshDir("keel-killed-");
    try {
      const child = runtime.processes!.spawn(LAUNCHER, {
        args: ["run", script("slow.ts")],
        cwd,
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      });
      const id = await waitFor(() => recordWithStatus(cwd, "running"), "a running record");
      // Output reaches stdout.log while the run goes on: wait for the script's first line.
      const log = joinPath(cwd, ".keel/runs", id, "stdout.log");
      await waitFor(
        async () => ((await runtime.fs!.readTextFile(log).catch(() => "")).includes("slow: started")
          ? true
          : undefined),
        "the script's output",
      );
      child.kill("SIGKILL");
      const status = await child.status;
      assert.equal(status.signal, "SIGKILL");
      // The record on disk still says "running": nobody was left to finish it.
      assert.equal((await readJson(joinPath(cwd, ".keel/runs", id, "run.json"))).status, "running");
      const list = await keel(["runs", "list", "--json"], { cwd });
      assert.equal(list.code, 0, explain(list));
      const [record] = list.json() as {
        id: string;
        status: string;
        exitCode: number;
        error: { code: string };
      }[];
      assert.equal(record?.id, id);
      assert.equal(record?.status, "interrupted");
      assert.equal(record?.error.code, "E_RUN_INTERRUPTED");
      const show = await keel(["runs", "show", id], { cwd });
      assert.match(show.stdout, /^status {4}interrupted \(exit code 130\)$/m);
      assert.match(show.stdout, /slow: started/);
    } finally {
      await runtime.fs!.remove(cwd);
    }
  });

  test("Ctrl-C (SIGINT) ends the run and records it as interrupted", SLOW, async () => {
    const cwd = await freshDir("keel-sigint-");
    try {
      const child = runtime.processes!.spawn(LAUNCHER, {
        args: ["run", script("slow.ts")],
        cwd,
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      });
      const stderr = new Response(child.stderr).text();
      const id = await waitFor(() => recordWithStatus(cwd, "running"), "a running record");
      child.kill("SIGINT");
      const status = await child.status;
      assert.equal(status.code, 1, await stderr);
      assert.match(await stderr, /code: E_RUN_INTERRUPTED/);
      const run = await readJson(joinPath(cwd, ".keel/runs", id, "run.json"));
      assert.equal(run.status, "interrupted");
    } finally {
      await runtime.fs!.remove(cwd);
    }
  });
});

describe("keel runs", () => {
  test(
    "list is newest first and honours --limit; show gives config, result and output",
    SLOW,
    async () => {
      const cwd = await freshDir("keel-list-");
      try {
        await keel(["run", script("echo.ts"), "--set", "text=one"], { cwd });
        const second = await keel(["run", script("square.ts"), "--set", "x=7", "--json"], { cwd });
        const secondId = (second.json() as { runId: string }).runId;
        const list = await keel(["runs", "list", "--json"], { cwd });
        const records = list.json() as { id: string; file: string; status: string }[];
        assert.deepEqual(records.map((r) => [r.file, r.status]), [[script("square.ts"), "ok"], [
          script("echo.ts"),
          "ok",
        ]]);
        const limited = await keel(["runs", "list", "--json", "--limit", "1"], { cwd });
        assert.deepEqual((limited.json() as { id: string }[]).map((r) => r.id), [secondId]);
        const table = await keel(["runs", "list"], { cwd });
        assert.match(table.stdout, /^ID\s+STATUS\s+SCRIPT\s+DURATION\s+STARTED$/m);
        assert.match(table.stdout, new RegExp(`^${secondId}\\s+ok\\s+square\\.ts\\s`, "m"));
        const show = await keel(["runs", "show", records[1]!.id], { cwd });
        assert.equal(show.code, 0, explain(show));
        assert.match(show.stdout, /^params {4}\{"text":"one"\}$/m);
        assert.match(show.stdout, /^ {2}out: one$/m);
        assert.match(show.stdout, /^ {2}err: one$/m);
        const json = await keel(["runs", "show", secondId, "--json"], { cwd });
        assert.equal((json.json() as { result: unknown }).result, 49);
      } finally {
        await runtime.fs!.remove(cwd);
      }
    },
  );

  test("show of an unknown id is E_RUN_NOT_FOUND, naming the nearest ids", SLOW, async () => {
    const r = await keel(["runs", "show", "20990101-000000-000000"]);
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /No recorded run has id "20990101-000000-000000"/);
    assert.match(r.stderr, /the nearest are "\d{8}-\d{6}-[0-9a-f]{6}"/);
    assert.match(r.stderr, /code: E_RUN_NOT_FOUND/);
  });
});

describe("keel flow", () => {
  test(
    "sequential passes each result on as ctx.previous; a sweep step passes a list",
    SLOW,
    async () => {
      const r = await keel([
        "flow",
        "sequential",
        script("square.ts"),
        script("previous.ts"),
        script("square.ts"),
        script("previous.ts"),
        "--step-config",
        `3=${config("squares.ts")}`,
        "--json",
      ]);
      assert.equal(r.code, 0, explain(r));
      const flow = r.json() as { ok: boolean; steps: { value: unknown; status: string }[] };
      assert.equal(flow.ok, true);
      assert.deepEqual(flow.steps.map((s) => s.value), [9, { previous: 9 }, [1, 4, 9], {
        previous: [1, 4, 9],
      }]);
    },
  );

  test(
    "a failed step stops a sequential flow (exit 1); parallel runs every step",
    SLOW,
    async () => {
      const seq = await keel([
        "flow",
        "sequential",
        script("square.ts"),
        script("throws.ts"),
        script("square.ts"),
      ]);
      assert.equal(seq.code, 1, explain(seq));
      assert.match(seq.stdout, /^2\s+throws\.ts\s+failed\s+1\s+E_SCRIPT_FAILED$/m);
      assert.match(seq.stdout, /^3\s+square\.ts\s+skipped\s+0\s+-$/m);
      const par = await keel([
        "flow",
        "parallel",
        script("throws.ts"),
        `${script("entrypoints.ts")}#train`,
        "--json",
      ]);
      assert.equal(par.code, 1, explain(par));
      const flow = par.json() as { steps: { status: string; value: unknown }[] };
      assert.deepEqual(flow.steps.map((s) => [s.status, s.value]), [["failed", null], [
        "ok",
        "train 1",
      ]]);
    },
  );

  test(
    "a missing step and a bad --step-config are reported before anything runs",
    SLOW,
    async () => {
      const missing = await keel(["flow", "sequential", script("square.ts"), "nope.ts"]);
      assert.equal(missing.code, 1, explain(missing));
      assert.match(missing.stderr, /Script "nope\.ts" \(step 2\) does not exist/);
      const bad = await keel([
        "flow",
        "parallel",
        script("square.ts"),
        "--step-config",
        `2=${config("squares.ts")}`,
      ]);
      assert.equal(bad.code, 2, explain(bad));
    },
  );
});

describe("keel run from a Bun host", () => {
  test("one run, and a sweep in workers and in Deno subprocesses", SLOW, async () => {
    const one = await keel(["run", script("square.ts"), "--set", "x=3", "--json"], { via: "bun" });
    assert.equal(one.code, 0, explain(one));
    assert.equal((one.json() as { result: unknown }).result, 9);
    for (const isolate of ["worker", "process"]) {
      const r = await keel([
        "run",
        script("counter.ts"),
        "--sweep",
        "step=2,3",
        "--parallel",
        "2",
        "--isolate",
        isolate,
        "--json",
      ], { via: "bun" });
      assert.equal(r.code, 0, explain(r));
      // JSON lines come as runs end; each carries its index in the sweep.
      const byIndex = r.lines().filter((l) => l.type === "run").sort((a, b) =>
        (a.index as number) - (b.index as number)
      );
      assert.deepEqual(byIndex.map((l) => (l.result as { calls: number }).calls), [2, 3]);
    }
  });
});

describe("keel run on a .py script", () => {
  test("globals overridden with --set, a sweep, output recorded", SLOW, async (t) => {
    const python = await runtime.processes!.run("python3", { args: ["--version"], stdin: "null" })
      .catch(() => undefined);
    if (!python?.success) {
      t.skip("python3 is not installed");
      return;
    }
    const r = await keel([
      "run",
      script("hello.py"),
      "--set",
      "name=Ada",
      "--set",
      "times=2",
      "--json",
    ]);
    assert.equal(r.code, 0, explain(r));
    const report = r.json() as { result: unknown; runId: string };
    assert.deepEqual(report.result, { greeting: "Hello, Ada! Hello, Ada!" });
    const run = await readJson(joinPath(temp, ".keel/runs", report.runId, "run.json"));
    assert.equal(run.protocol, "python/v1");
    assert.equal(
      await runtime.fs!.readTextFile(joinPath(temp, ".keel/runs", report.runId, "stdout.log")),
      "python says Hello, Ada! Hello, Ada!\n",
    );
    const sweep = await keel([
      "run",
      script("hello.py"),
      "--sweep",
      "times=1,3",
      "--parallel",
      "2",
      "--json",
    ]);
    assert.equal(sweep.code, 0, explain(sweep));
    assert.deepEqual(
      sweep.lines().filter((l) => l.type === "run").sort((a, b) =>
        (a.index as number) - (b.index as number)
      )
        .map((l) => (l.result as { greeting: string }).greeting.split(" ").length / 2),
      [1, 3],
    );
    const typo = await keel(["run", script("hello.py"), "--set", "nmae=x"]);
    assert.equal(typo.code, 1, explain(typo));
    assert.match(typo.stderr, /did you mean "name"\?/);
  });
});

describe("examples/sweep", () => {
  test(
    "train.ts over sweep.ts: six runs in input order, each with the config's metadata",
    SLOW,
    async () => {
      const r = await keel([
        "run",
        joinPath(ROOT, "examples/sweep/train.ts"),
        "--config",
        joinPath(ROOT, "examples/sweep/sweep.ts"),
        "--parallel",
        "2",
        "--json",
      ]);
      assert.equal(r.code, 0, explain(r));
      const runs = r.lines().filter((l) => l.type === "run").sort((a, b) =>
        (a.index as number) - (b.index as number)
      );
      assert.equal(runs.length, 6);
      assert.deepEqual(runs.map((l) => (l.config as { params: unknown }).params), [
        { lr: 0.01, epochs: 50 },
        { lr: 0.01, epochs: 200 },
        { lr: 0.05, epochs: 50 },
        { lr: 0.05, epochs: 200 },
        { lr: 0.1, epochs: 50 },
        { lr: 0.1, epochs: 200 },
      ]);
      assert.ok(
        runs.every((l) =>
          (l.config as { metadata: { experiment: string } }).metadata.experiment === "lr-vs-epochs"
        ),
      );
      // More epochs at the same rate fit better.
      const loss = runs.map((l) => (l.result as { loss: number }).loss);
      assert.ok(loss[1]! < loss[0]! && loss[3]! < loss[2]!, String(loss));
    },
  );
});

describe("the command table", () => {
  test("keel config takes the flags flags.ts declares for it", () => {
    assert.deepEqual(CONFIG_FLAGS, CONFIG_COMMAND_FLAGS);
  });

  test("--help lists run, flow, runs and config", SLOW, async () => {
    const r = await keel(["--help"]);
    for (const word of ["run", "flow", "runs", "config", "plugins"]) {
      assert.match(r.stdout, new RegExp(`\\b${word}\\b`));
    }
    const runHelp = await keel(["run", "--help"]);
    for (
      const flag of [
        "--sweep",
        "--config",
        "--parallel",
        "--isolate",
        "--dry-run",
        "--no-record",
        "--strict",
      ]
    ) {
      assert.ok(runHelp.stdout.includes(flag), flag);
    }
  });
});
