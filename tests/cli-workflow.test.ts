/**
 * End to end: `keel workflow run|validate|status|list|resume`, spawned through the real `./keel`
 * launcher in a temporary working directory. The Gleitzeit compat workflows run unchanged from
 * `../shared/compat/gleitzeit/` (their relative paths resolve there, through `--cwd`).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const GLEITZEIT = fromFileUrl(new URL("../../shared/compat/gleitzeit/", import.meta.url)).replace(/\/$/, "");
const FIXTURES = joinPath(ROOT, "tests/fixtures/workflows");
const SLOW = { timeout: 60_000 };

let runtime: Runtime;
let temp: string;

interface Summary {
  readonly ok: boolean;
  readonly id: string;
  readonly status: string;
  readonly counts: Record<string, number>;
  readonly results: Record<string, Record<string, unknown>>;
  readonly failed: { taskId: string; error: { code: string; message: string } | null }[];
}

async function keel(args: readonly string[], cwd = temp): Promise<ProcessOutput> {
  return await runtime.processes!.run(LAUNCHER, { args: [...args], cwd, env: { NO_COLOR: "1", KEEL_DEBUG: "" }, stdin: "null" });
}

function explain(r: ProcessOutput): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** The summary line `--json` prints last. */
function summaryOf(r: ProcessOutput): Summary {
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]!) as Summary;
}

/** Runs a compat workflow with `--json`; asserts it succeeded and returns its results. */
async function compat(name: string, extra: readonly string[] = []): Promise<Summary["results"]> {
  const r = await keel(["workflow", "run", joinPath(GLEITZEIT, `workflows/${name}`), "--cwd", GLEITZEIT, "--json", ...extra]);
  assert.equal(r.code, 0, explain(r));
  const s = summaryOf(r);
  assert.equal(s.status, "succeeded");
  return s.results;
}

/** The `result` a python/execute task's script set. */
function py(results: Summary["results"], id: string): Record<string, unknown> {
  const r = results[id];
  assert.ok(r, `no result for "${id}"`);
  assert.equal(r.success, true);
  return r.result as Record<string, unknown>;
}

before(async () => {
  runtime = await detectRuntime();
  temp = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-cli-workflow-"));
});

after(async () => {
  await runtime.fs!.remove(temp);
});

describe("keel workflow run: the Gleitzeit workflows, unchanged", () => {
  test("simple_mcp_workflow.yaml: 100, 200 (a number), and the concatenation", SLOW, async () => {
    const r = await compat("simple_mcp_workflow.yaml");
    assert.deepEqual(r.calculate_sum, { result: 100 });
    assert.deepEqual(r.calculate_product, { result: 200 });
    assert.equal(typeof (r.calculate_product as { result: unknown }).result, "number");
    assert.deepEqual(r.combine_results, { result: "Hello from Simple MCP! | Sum was 100 | Product is 200" });
  });

  test("mcp_workflow.yaml: 123, 1230 and the echo sentence", SLOW, async () => {
    const r = await compat("mcp_workflow.yaml");
    assert.deepEqual(r.add_numbers, { result: 123 });
    assert.deepEqual(r.multiply_result, { result: 1230 });
    assert.deepEqual(r.final_concat, { result: "Echo said: Hello from MCP workflow! | Addition result: 123 | Final multiplication: 1230" });
  });

  test("simple_python_workflow.yaml: 13 words, 81 characters, stdout kept", SLOW, async () => {
    const r = await compat("simple_python_workflow.yaml");
    const result = py(r, "run_python_script");
    assert.equal(result.word_count, 13);
    assert.equal(result.character_count, 81);
    assert.match(String(r.run_python_script!.stdout), /13 words, 81 characters/);
  });

  for (const [file, gen, sum, report] of [
    ["python_only_workflow.yaml", "generate_data", "calculate_stats", "create_report"],
    ["test_complex_python.yaml", "create_data", "process_data", "final_report"],
  ] as const) {
    test(`${file}: the list passes as a list; sum and average match it`, SLOW, async () => {
      const r = await compat(file);
      const numbers = py(r, gen).numbers as number[];
      assert.ok(Array.isArray(numbers) && numbers.length === 5 && numbers.every((n) => Number.isInteger(n) && n >= 1 && n <= 100));
      const stats = py(r, sum);
      const total = numbers.reduce((a, b) => a + b, 0);
      assert.equal(stats.sum, total);
      assert.equal(stats.average, total / 5);
      assert.equal(stats.input_count, 5);
      // format_report.py reads "numbers"/"sum"/"average", which these workflows do not pass
      // (they pass "number_data"/"sum_data"), so its figures are its own defaults.
      assert.match(String(py(r, report).report), /\nSum: \d+\nAverage: \d+\.\d{2}$/);
    });
  }

  test("test_context_workflow.yaml: the second task gets every context key", SLOW, async () => {
    const r = await compat("test_context_workflow.yaml");
    assert.deepEqual(py(r, "second_task"), { context_received: true, context_keys: ["numbers", "count", "test_string", "test_number"], test: "success" });
  });

  test("batch_python_workflow.yaml: one task per examples/documents/*.txt, sorted", SLOW, async () => {
    const r = await compat("batch_python_workflow.yaml", ["--store", "memory"]);
    const batch = r.batch as unknown as { result: { file_path?: string; content?: string } }[];
    assert.equal(batch.length, 3);
    const files = ["meeting_notes.txt", "sample_story.txt", "technical_spec.txt"];
    for (let i = 0; i < 3; i++) {
      const member = py(r, `batch[${i}]`);
      assert.deepEqual(member, batch[i]!.result);
      const text = await runtime.fs!.readTextFile(joinPath(GLEITZEIT, `examples/documents/${files[i]}`));
      assert.equal(member.content, text);
    }
  });
});

describe("keel workflow validate", () => {
  test("reports every problem at once, each with its code; exit 1", SLOW, async () => {
    const r = await keel(["workflow", "validate", joinPath(FIXTURES, "broken.yaml"), "--json"]);
    assert.equal(r.code, 1, explain(r));
    const out = JSON.parse(r.stdout.trim()) as { ok: boolean; problems: { code: string; message: string; details?: Record<string, unknown> }[] };
    assert.equal(out.ok, false);
    const codes = out.problems.map((p) => p.code).sort();
    assert.deepEqual(codes, ["E_WORKFLOW_CYCLE", "E_WORKFLOW_DUPLICATE_ID", "E_WORKFLOW_UNKNOWN_DEPENDENCY", "E_WORKFLOW_UNKNOWN_PROTOCOL"]);
    const cycle = out.problems.find((p) => p.code === "E_WORKFLOW_CYCLE")!;
    assert.deepEqual(cycle.details?.path, ["a", "b", "a"]);
    assert.match(out.problems.find((p) => p.code === "E_WORKFLOW_UNKNOWN_PROTOCOL")!.message, /no provider for llm\/v1/);
    assert.equal(out.problems.find((p) => p.code === "E_WORKFLOW_UNKNOWN_DEPENDENCY")!.details?.dependency, "nowhere");

    const text = await keel(["workflow", "validate", joinPath(FIXTURES, "broken.yaml")]);
    assert.equal(text.code, 1);
    for (const code of codes) assert.match(text.stderr, new RegExp(`\\[${code}\\]`));
  });

  test("a valid workflow: exit 0; a run of an invalid one stores nothing", SLOW, async () => {
    const ok = await keel(["workflow", "validate", joinPath(GLEITZEIT, "workflows/mcp_workflow.yaml")]);
    assert.equal(ok.code, 0, explain(ok));
    const dir = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-wf-invalid-"));
    const bad = await keel(["workflow", "run", joinPath(FIXTURES, "bad-cycle.yaml")], dir);
    assert.equal(bad.code, 1, explain(bad));
    assert.match(bad.stderr, /E_WORKFLOW_CYCLE/);
    const list = await keel(["workflow", "list", "--json"], dir);
    assert.deepEqual(JSON.parse(list.stdout), []);
    await runtime.fs!.remove(dir);
  });
});

describe("keel workflow status, list, resume", () => {
  test("a failing python task: dependents skipped, the other branch runs, exit 1; status and list show it", SLOW, async () => {
    const dir = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-wf-status-"));
    const r = await keel(["workflow", "run", joinPath(FIXTURES, "failing.yaml")], dir);
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /boom: E_PYTHON_FAILED .*ValueError: boom/);
    assert.ok(await runtime.fs!.exists(joinPath(dir, ".keel/keel.db")));

    const list = await keel(["workflow", "list", "--json"], dir);
    assert.equal(list.code, 0, explain(list));
    const runs = JSON.parse(list.stdout) as { id: string; name: string; status: string }[];
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.name, "failing");
    assert.equal(runs[0]!.status, "failed");

    const status = await keel(["workflow", "status", runs[0]!.id, "--json"], dir);
    assert.equal(status.code, 0, explain(status));
    const { run, tasks } = JSON.parse(status.stdout) as { run: { status: string; error: { code: string } }; tasks: { taskId: string; status: string; attempts: number; error: { code: string } | null }[] };
    assert.equal(run.status, "failed");
    assert.equal(run.error.code, "E_WORKFLOW_FAILED");
    const by = Object.fromEntries(tasks.map((t) => [t.taskId, t]));
    assert.equal(by.boom!.status, "failed");
    assert.equal(by.boom!.error?.code, "E_PYTHON_FAILED");
    assert.equal(by.boom!.attempts, 1);
    assert.equal(by.after_boom!.status, "skipped");
    assert.equal(by.after_after!.status, "skipped");
    assert.equal(by.after_boom!.error?.code, "E_TASK_SKIPPED");
    assert.equal(by.fine!.status, "succeeded");

    const table = await keel(["workflow", "status", runs[0]!.id], dir);
    assert.equal(table.code, 0);
    assert.match(table.stdout, /boom\s+failed\s+1\s+\S+ m?s\s+E_PYTHON_FAILED/);
    const listText = await keel(["workflow", "list"], dir);
    assert.match(listText.stdout, new RegExp(`${runs[0]!.id}\\s+failed\\s+failing`));

    // A run that ended failed is not resumable.
    const resumed = await keel(["workflow", "resume", runs[0]!.id], dir);
    assert.equal(resumed.code, 1);
    assert.match(resumed.stderr, /E_WORKFLOW_INVALID/);
    await runtime.fs!.remove(dir);
  });

  test("--store memory keeps nothing: no database file, list refuses it", SLOW, async () => {
    const dir = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-wf-memory-"));
    const r = await keel(["workflow", "run", joinPath(GLEITZEIT, "workflows/simple_mcp_workflow.yaml"), "--store", "memory", "--json"], dir);
    assert.equal(r.code, 0, explain(r));
    assert.deepEqual(summaryOf(r).results.calculate_sum, { result: 100 });
    assert.equal(await runtime.fs!.exists(joinPath(dir, ".keel")), false);
    const list = await keel(["workflow", "list", "--store", "memory"], dir);
    assert.equal(list.code, 2);
    await runtime.fs!.remove(dir);
  });

  test("without --json, the final tasks' results are printed on stdout as JSON", SLOW, async () => {
    const example = joinPath(ROOT, "examples/workflows/numbers.yaml");
    const r = await keel(["workflow", "run", example, "--store", "memory"]);
    assert.equal(r.code, 0, explain(r));
    // "say" is the only task nothing depends on; the others' results stay in the store.
    assert.deepEqual(JSON.parse(r.stdout), { say: { result: "Numbers: [1,2,3,4,5] | Twice their sum: 30" } });
    assert.match(r.stderr, /Workflow "numbers" succeeded \(4 task\(s\)\)/);
  });

  test("--mcp-server starts a real stdio MCP server whose tools tasks call; without it they fail validation", SLOW, async () => {
    const dir = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-wf-mcp-"));
    const wf = joinPath(dir, "mcp.yaml");
    await runtime.fs!.writeTextFile(wf, [
      "name: mcp-server",
      "tasks:",
      "  - id: hello",
      "    method: mcp/tool.echo",
      "    parameters: { message: stressed }",
      "  - id: flipped",
      "    method: mcp/tool.reverse",
      "    dependencies: [hello]",
      '    parameters: { text: "${hello.response}" }',
    ].join("\n"));
    const server = `tools=${joinPath(ROOT, "node_modules/.bin/deno")} run -A ${joinPath(ROOT, "plugins/executor-mcp/fixtures/server.ts")}`;
    const r = await keel(["workflow", "run", wf, "--store", "memory", "--json", "--mcp-server", server], dir);
    assert.equal(r.code, 0, explain(r));
    assert.deepEqual((summaryOf(r).results.flipped as { structuredContent: unknown }).structuredContent, { reversed: "desserts" });
    assert.match(r.stderr, /"tools" run with full trust/);
    const without = await keel(["workflow", "run", wf, "--store", "memory"], dir);
    assert.equal(without.code, 1, explain(without));
    assert.match(without.stderr, /E_WORKFLOW_UNKNOWN_METHOD[^\n]*mcp\/tool\.reverse/);
    const bad = await keel(["workflow", "run", wf, "--mcp-server", "tools"], dir);
    assert.equal(bad.code, 2, explain(bad));
    await runtime.fs!.remove(dir);
  });

  test("run the Gleitzeit way, from its root without --cwd: its relative paths resolve against the working directory", SLOW, async () => {
    const r = await keel(["workflow", "run", "workflows/simple_python_workflow.yaml", "--store", "memory", "--json"], GLEITZEIT);
    assert.equal(r.code, 0, explain(r));
    const results = summaryOf(r).results as Record<string, { result?: unknown }>;
    assert.ok(Object.values(results).some((v) => JSON.stringify(v).includes("13 words")), r.stdout);
  });

  test("--json prints the events in order, then the summary", SLOW, async () => {
    const r = await keel(["workflow", "run", joinPath(GLEITZEIT, "workflows/mcp_workflow.yaml"), "--json"]);
    assert.equal(r.code, 0, explain(r));
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const events = lines.slice(0, -1);
    assert.equal(events[0]!.type, "run.started");
    assert.equal(events[events.length - 1]!.type, "run.finished");
    assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1));
    assert.equal(events.filter((e) => e.type === "task.succeeded").length, 4);
    assert.equal(summaryOf(r).ok, true);
  });

  test("resume of an unknown id: E_WORKFLOW_NOT_FOUND; usage errors exit 2", SLOW, async () => {
    const r = await keel(["workflow", "resume", "no-such-run"]);
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /code: E_WORKFLOW_NOT_FOUND/);
    const s = await keel(["workflow", "status", "no-such-run", "--json"]);
    assert.equal(s.code, 1);
    assert.match(s.stdout, /E_WORKFLOW_NOT_FOUND/);
    for (const args of [["workflow"], ["workflow", "rn", "x.yaml"], ["workflow", "run"], ["workflow", "run", "x.yaml", "--store", "disk"]]) {
      const u = await keel(args);
      assert.equal(u.code, 2, `${args.join(" ")}: ${explain(u)}`);
      assert.match(u.stderr, /E_CLI_USAGE/);
    }
  });
});
