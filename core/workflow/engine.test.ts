import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { KeelError } from "../errors.ts";
import type { ExecuteRequest, Executor } from "../executor.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import { createWorkflowEngine, retryDelay, type WorkflowEngineOptions } from "./engine.ts";
import { createMemoryStore } from "./memory-store.ts";
import type { Store, WorkflowEvent } from "./store.ts";

type Handler = (req: ExecuteRequest) => unknown;

/** An executor for protocol `x/v1` whose methods are `x/<name>`, each a handler. */
function executor(handlers: Record<string, Handler>, protocol = "x/v1"): Executor {
  const prefix = protocol.split("/")[0]!;
  return {
    protocol,
    methods: Object.keys(handlers).map((m) => `${prefix}/${m}`),
    execute: async (req) => await handlers[req.method.slice(prefix.length + 1)]!(req),
  };
}

function engineWith(handlers: Record<string, Handler>, extra: Partial<WorkflowEngineOptions> = {}) {
  const store = extra.store ?? createMemoryStore();
  const ex = executor(handlers);
  const engine = createWorkflowEngine({ store, resolveExecutor: (p) => Promise.resolve(p === "x/v1" ? ex : undefined), ...extra });
  return { store, engine };
}

async function collect(events: AsyncIterable<WorkflowEvent>): Promise<WorkflowEvent[]> {
  const out: WorkflowEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

const ev = (events: WorkflowEvent[]) => events.map((e) => `${e.type}${e.taskId ? ` ${e.taskId}` : ""}`);
const wf = (tasks: string, head = "name: t") => `${head}\ntasks:\n${tasks}`;

describe("workflow engine: scheduling", () => {
  test("a dependent of a fast task starts while a slow sibling still runs", async () => {
    const slow = Promise.withResolvers<void>();
    const { engine } = engineWith({
      slow: async () => {
        await slow.promise;
        return "slow";
      },
      fast: () => "fast",
      after: () => {
        slow.resolve(); // only reachable if "after" started before "slow" ended
        return "after";
      },
    });
    const run = await engine.run(wf(`
  - { id: s, method: x/slow }
  - { id: f, method: x/fast }
  - { id: a, method: x/after, dependencies: [f] }
`));
    const [summary, events] = await Promise.all([run.done, collect(run.events)]);
    assert.equal(summary.status, "succeeded");
    const order = ev(events);
    assert.ok(order.indexOf("task.started a") < order.indexOf("task.succeeded s"), order.join("\n"));
    assert.equal(order.at(-1), "run.finished");
    assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1));
  });

  test("ready tasks start highest priority first within the concurrency limit", async () => {
    const started: string[] = [];
    const { engine } = engineWith({ go: ({ params }) => started.push(String(params.n)) }, { maxConcurrent: 1 });
    const run = await engine.run(wf(`
  - { id: low, method: x/go, priority: low, params: { n: low } }
  - { id: p1, method: x/go, priority: 1, params: { n: p1 } }
  - { id: urgent, method: x/go, priority: urgent, params: { n: urgent } }
  - { id: high, method: x/go, priority: high, params: { n: high } }
  - { id: normal, method: x/go, params: { n: normal } }
`));
    assert.equal((await run.done).status, "succeeded");
    assert.deepEqual(started, ["urgent", "high", "normal", "low", "p1"]);
  });

  test("the concurrency limit holds", async () => {
    let now = 0, peak = 0;
    const { engine } = engineWith({
      go: async () => {
        peak = Math.max(peak, ++now);
        await new Promise((r) => setTimeout(r, 1));
        now--;
      },
    }, { maxConcurrent: 3 });
    const tasks = Array.from({ length: 12 }, (_, i) => `  - { id: t${i}, method: x/go }`).join("\n");
    assert.equal((await (await engine.run(wf(tasks))).done).status, "succeeded");
    assert.equal(peak, 3);
  });

  test("Gleitzeit's simple_mcp_workflow.yaml runs unchanged and gives the results its README describes", async () => {
    const text = await readFile(new URL("../../../shared/compat/gleitzeit/workflows/simple_mcp_workflow.yaml", import.meta.url), "utf8");
    const mcp = executor({
      "tool.echo": ({ params }) => ({ response: params.message }),
      "tool.add": ({ params }) => ({ result: (params.a as number) + (params.b as number) }),
      "tool.multiply": ({ params }) => {
        assert.equal(typeof params.a, "number");
        return { result: (params.a as number) * (params.b as number) };
      },
      "tool.concat": ({ params }) => ({ result: (params.strings as string[]).join(params.separator as string) }),
    }, "mcp/v1");
    const engine = createWorkflowEngine({ store: createMemoryStore(), resolveExecutor: (p) => Promise.resolve(p === "mcp/v1" ? mcp : undefined) });
    const summary = await (await engine.run(text)).done;
    assert.equal(summary.status, "succeeded");
    assert.deepEqual(summary.results.calculate_sum, { result: 100 });
    assert.deepEqual(summary.results.calculate_product, { result: 200 });
    assert.deepEqual(summary.results.combine_results, { result: "Hello from Simple MCP! | Sum was 100 | Product is 200" });
  });
});

describe("workflow engine: failures", () => {
  test("a failed task skips its transitive dependents, other branches finish, the run fails", async () => {
    const ran: string[] = [];
    const { engine, store } = engineWith({
      ok: ({ params }) => ran.push(String(params.n)),
      boom: () => {
        throw new KeelError("E_SHELL_FAILED", "exit 2");
      },
    });
    const run = await engine.run(wf(`
  - { id: a, method: x/boom }
  - { id: b, method: x/ok, dependencies: [a], params: { n: b } }
  - { id: c, method: x/ok, dependencies: [b], params: { n: c } }
  - { id: d, method: x/ok, params: { n: d } }
  - { id: e, method: x/ok, dependencies: [d], params: { n: e } }
`));
    const s = await run.done;
    assert.equal(s.status, "failed");
    assert.equal(s.error?.code, "E_WORKFLOW_FAILED");
    assert.deepEqual(ran.sort(), ["d", "e"]);
    assert.deepEqual(s.failed.map((f) => [f.taskId, f.error?.code]), [["a", "E_SHELL_FAILED"]]);
    const tasks = await store.listTasks(run.id);
    assert.deepEqual(tasks.map((t) => [t.taskId, t.status]), [["a", "failed"], ["b", "skipped"], ["c", "skipped"], ["d", "succeeded"], ["e", "succeeded"]]);
    assert.equal(tasks[1]?.error?.code, "E_TASK_SKIPPED");
    assert.equal((await store.getRun(run.id))?.status, "failed");
  });

  test("continue_on_error: dependents run, references to the failed result are null, the run succeeds", async () => {
    const seen: unknown[] = [];
    const { engine } = engineWith({
      boom: () => {
        throw new Error("nope");
      },
      see: ({ params }) => seen.push(params.v, params.s),
    });
    const s = await (await engine.run(wf(`
  - { id: a, method: x/boom, continue_on_error: true }
  - { id: b, method: x/see, dependencies: [a], params: { v: "\${a.result.x}", s: "got \${a.result}" } }
`))).done;
    assert.equal(s.status, "succeeded");
    assert.deepEqual(seen, [null, "got null"]);
    assert.deepEqual(s.counts, { pending: 0, running: 0, succeeded: 1, failed: 1, skipped: 0, cancelled: 0 });
    assert.equal(s.failed[0]?.error?.code, "E_TASK_FAILED");
  });

  test("a reference that does not resolve fails the task without running it", async () => {
    let called = false;
    const { engine, store } = engineWith({ a: () => ({ x: 1 }), b: () => (called = true) });
    const run = await engine.run(wf(`
  - { id: a, method: x/a }
  - { id: b, method: x/b, dependencies: [a], params: { y: "\${a.result.y}" }, retry: { max_attempts: 3 } }
`));
    const s = await run.done;
    assert.equal(called, false);
    assert.equal(s.failed[0]?.error?.code, "E_WORKFLOW_BAD_REFERENCE");
    assert.equal((await store.listAttempts(run.id, "b")).length, 1);
  });

  test("a result that is not JSON fails the task with E_TASK_RESULT", async () => {
    for (const bad of [() => 1n, () => ({ f: () => 1 }), () => new Map(), () => NaN, () => { const o: Record<string, unknown> = {}; o.self = o; return o; }]) {
      const { engine } = engineWith({ bad });
      const s = await (await engine.run(wf(`  - { id: a, method: x/bad, retry: { max_attempts: 3 } }`))).done;
      assert.equal(s.status, "failed");
      assert.equal(s.failed[0]?.error?.code, "E_TASK_RESULT", String(bad));
    }
  });

  test("an invalid workflow is refused before anything is stored, with every problem", async () => {
    const { engine, store } = engineWith({ a: () => 1 });
    await assert.rejects(
      engine.run(wf(`
  - { id: a, method: x/a, dependencies: [b] }
  - { id: b, method: x/a, dependencies: [a] }
  - { id: c, method: llm/chat }
  - { id: d, method: x/nope }
`)),
      (e: unknown) => {
        assert.ok(KeelError.is(e, "E_WORKFLOW_INVALID"));
        assert.match(e.message, /cycle/);
        assert.match(e.message, /no provider for llm\/v1/);
        assert.match(e.message, /"x\/nope"/);
        return true;
      },
    );
    assert.deepEqual(await store.listRuns(), []);
    await assert.rejects(engine.run("tasks: [ {id: a"), (e: unknown) => KeelError.is(e, "E_WORKFLOW_PARSE"));
  });
});

describe("workflow engine: retries and timeouts", () => {
  for (const [backoff, expected] of [["fixed", [100, 100, 100]], ["linear", [100, 200, 300]], ["exponential", [100, 200, 400]]] as const) {
    test(`retries with ${backoff} backoff wait the computed delays`, async () => {
      const delays: number[] = [];
      let calls = 0;
      const { engine, store } = engineWith({
        flaky: () => {
          if (++calls < 4) throw new Error(`fail ${calls}`);
          return "ok";
        },
      }, { sleep: (ms) => (delays.push(ms), Promise.resolve()) });
      const run = await engine.run(wf(`  - { id: a, method: x/flaky, retry: { max_attempts: 4, backoff: ${backoff}, initial_delay: 0.1 } }`));
      const s = await run.done;
      assert.equal(s.status, "succeeded");
      assert.deepEqual(delays, expected);
      const attempts = await store.listAttempts(run.id, "a");
      assert.deepEqual(attempts.map((a) => a.status), ["failed", "failed", "failed", "succeeded"]);
      const types = ev(await store.listEvents(run.id)).filter((t) => t.startsWith("task."));
      assert.equal(types.filter((t) => t === "task.retrying a").length, 3);
    });
  }

  test("max_delay caps and jitter shortens the wait", () => {
    const policy = { maxAttempts: 9, backoff: "exponential", delayMs: 100, maxDelayMs: 1000, jitter: 0.2, nonRetryable: [] } as const;
    assert.equal(retryDelay(policy, 1, () => 0), 100);
    assert.equal(retryDelay(policy, 1, () => 0.5), 90);
    assert.equal(retryDelay(policy, 8, () => 0), 1000);
    assert.equal(retryDelay(policy, 8, () => 1), 800);
  });

  test("after max_attempts the task fails", async () => {
    const { engine, store } = engineWith({ no: () => { throw new Error("always"); } }, { sleep: () => Promise.resolve() });
    const run = await engine.run(wf(`  - { id: a, method: x/no, retry: { max_attempts: 3, backoff: fixed } }`));
    assert.equal((await run.done).status, "failed");
    assert.equal((await store.listTasks(run.id))[0]?.attempts, 3);
  });

  test("non-retryable codes fail at once; retry_on limits what retries", async () => {
    for (const retry of ["{ max_attempts: 5, non_retryable: [E_SHELL_FAILED] }", "{ max_attempts: 5, retry_on: [E_TASK_TIMEOUT] }"]) {
      const { engine, store } = engineWith({ no: () => { throw new KeelError("E_SHELL_FAILED", "exit 1"); } }, { sleep: () => Promise.resolve() });
      const run = await engine.run(wf(`  - { id: a, method: x/no, retry: ${retry} }`));
      assert.equal((await run.done).status, "failed");
      assert.equal((await store.listAttempts(run.id, "a")).length, 1, retry);
    }
  });

  test("a task timeout aborts the executor's signal and fails with E_TASK_TIMEOUT", async () => {
    let signal: AbortSignal | undefined;
    const timeout = Promise.withResolvers<void>();
    const { engine, store } = engineWith({
      hang: (req) => {
        signal = req.signal;
        timeout.resolve(); // let the (fake) clock fire once the task is running
        return new Promise((_, reject) => req.signal!.addEventListener("abort", () => reject(new Error("stopped"))));
      },
    }, { sleep: () => timeout.promise });
    const run = await engine.run(wf(`  - { id: a, method: x/hang, timeout: 5 }`));
    const s = await run.done;
    assert.equal(signal?.aborted, true);
    assert.equal(s.failed[0]?.error?.code, "E_TASK_TIMEOUT");
    assert.equal((await store.listTasks(run.id))[0]?.status, "failed");
  });

  test("an executor that ignores its signal still times out", async () => {
    const timeout = Promise.withResolvers<void>();
    const { engine } = engineWith({ deaf: () => (timeout.resolve(), new Promise(() => {})) }, { sleep: () => timeout.promise });
    const s = await (await engine.run(wf(`  - { id: a, method: x/deaf, timeout: 1 }`))).done;
    assert.equal(s.failed[0]?.error?.code, "E_TASK_TIMEOUT");
  });

  test("a run timeout aborts running tasks, cancels the rest, and fails the run", async () => {
    const runTimer = Promise.withResolvers<void>();
    let signal: AbortSignal | undefined;
    const { engine, store } = engineWith({
      hang: (req) => {
        signal = req.signal;
        runTimer.resolve();
        return new Promise((_, reject) => req.signal!.addEventListener("abort", () => reject(req.signal!.reason)));
      },
      ok: () => 1,
    }, { sleep: () => runTimer.promise });
    const run = await engine.run(wf(`
  - { id: a, method: x/hang }
  - { id: b, method: x/ok, dependencies: [a] }
`, "name: t\ntimeout: 30"));
    const s = await run.done;
    assert.equal(signal?.aborted, true);
    assert.equal(s.status, "failed");
    assert.equal(s.error?.code, "E_WORKFLOW_TIMEOUT");
    const tasks = await store.listTasks(run.id);
    assert.deepEqual(tasks.map((t) => [t.status, t.error?.code]), [["failed", "E_WORKFLOW_TIMEOUT"], ["cancelled", "E_WORKFLOW_TIMEOUT"]]);
    assert.equal((await store.getRun(run.id))?.error?.code, "E_WORKFLOW_TIMEOUT");
  });

  test("cancel() aborts running tasks and ends the run cancelled", async () => {
    const started = Promise.withResolvers<void>();
    const { engine } = engineWith({ hang: (req) => (started.resolve(), new Promise((_, rej) => req.signal!.addEventListener("abort", () => rej(new Error("x"))))) });
    const run = await engine.run(wf(`  - { id: a, method: x/hang }\n  - { id: b, method: x/hang, dependencies: [a] }`));
    await started.promise;
    run.cancel();
    const s = await run.done;
    assert.equal(s.status, "cancelled");
    assert.deepEqual(s.counts.cancelled, 1);
  });
});

describe("workflow engine: batch", () => {
  test("type: batch expands sorted files into member tasks with max_concurrent; its result is the list", async () => {
    const runtime = await detectRuntime();
    const fs = runtime.fs!;
    const dir = await fs.makeTempDir("keel-batch-");
    try {
      for (const name of ["b.txt", "a.txt", "c.txt", "skip.md"]) await fs.writeTextFile(`${dir}/${name}`, name.repeat(2));
      let now = 0, peak = 0;
      const { engine, store } = engineWith({
        read: async ({ params }) => {
          peak = Math.max(peak, ++now);
          const ctx = params.context as { file_path: string };
          assert.equal(ctx.file_path, params.file_path);
          const text = await fs.readTextFile(ctx.file_path);
          await new Promise((r) => setTimeout(r, 1));
          now--;
          return { result: { file: ctx.file_path.slice(dir.length + 1), length: text.length } };
        },
        sum: ({ params }) => ({ result: (params.items as { result: { length: number } }[]).map((i) => i.result.length) }),
      }, { runtime, cwd: dir });
      const run = await engine.run(wf(`
  - { id: files, type: batch, method: x/read, batch: { directory: ".", pattern: "*.txt" }, max_concurrent: 1 }
  - { id: total, method: x/sum, dependencies: [files], params: { items: "\${files.result}" } }
`));
      const s = await run.done;
      assert.equal(s.status, "succeeded", JSON.stringify(s.failed));
      assert.equal(peak, 1);
      assert.deepEqual((await store.listTasks(run.id)).map((t) => t.taskId), ["files[0]", "files[1]", "files[2]", "files", "total"]);
      assert.deepEqual((s.results.files as { result: { file: string } }[]).map((r) => r.result.file), ["a.txt", "b.txt", "c.txt"]);
      assert.deepEqual(s.results.total, { result: [10, 10, 10] });
    } finally {
      await fs.remove(dir);
    }
  });

  test("Gleitzeit's top-level batch file expands over examples/documents", async () => {
    const runtime = await detectRuntime();
    const root = decodeURIComponent(new URL("../../../shared/compat/gleitzeit/", import.meta.url).pathname);
    const text = await readFile(`${root}workflows/batch_python_workflow.yaml`, "utf8");
    const seen: unknown[] = [];
    const py = executor({ execute: ({ params }) => (seen.push(params), { result: { ok: true } }) }, "python/v1");
    const engine = createWorkflowEngine({ store: createMemoryStore(), runtime, cwd: root, resolveExecutor: (p) => Promise.resolve(p === "python/v1" ? py : undefined) });
    const s = await (await engine.run(text)).done;
    assert.equal(s.status, "succeeded");
    assert.equal(seen.length, 3);
    for (const p of seen as { file: string; context: { file_path: string } }[]) {
      assert.equal(p.file, "examples/scripts/read_text_file.py");
      assert.match(p.context.file_path, /examples\/documents\/[^/]+\.txt$/);
    }
    assert.equal((s.results.batch as unknown[]).length, 3);
  });
});

describe("workflow engine: scale and resume", () => {
  test("a 10,000-task chain with substitution completes on the memory store", async () => {
    const { engine } = engineWith({ inc: ({ params }) => ({ result: (params.n as number) + 1 }) });
    const tasks = Array.from({ length: 10_000 }, (_, i) => ({
      id: `t${i}`, protocol: "x/v1", method: "x/inc", params: { n: i === 0 ? 0 : `\${t${i - 1}.result}` }, dependencies: i === 0 ? [] : [`t${i - 1}`], priority: 2, continueOnError: false,
    }));
    const s = await (await engine.run({ name: "chain", tasks })).done;
    assert.equal(s.status, "succeeded");
    assert.equal(s.counts.succeeded, 10_000);
    assert.deepEqual(s.results.t9999, { result: 10_000 });
  });

  test("a 10,000-task fan-out completes", async () => {
    const { engine } = engineWith({ one: () => 1, all: ({ params }) => (params.xs as unknown[]).length });
    const tasks = Array.from({ length: 10_000 }, (_, i) => ({ id: `t${i}`, protocol: "x/v1", method: "x/one", params: {}, dependencies: ["root"], priority: 2, continueOnError: false }));
    const s = await (await engine.run({ name: "fan", tasks: [{ id: "root", protocol: "x/v1", method: "x/one", params: {}, dependencies: [], priority: 2, continueOnError: false }, ...tasks] })).done;
    assert.equal(s.counts.succeeded, 10_001);
  });

  test("resume after a crash: succeeded tasks never run again and feed substitutions", async () => {
    const store: Store = createMemoryStore();
    const counts: Record<string, number> = {};
    const count = (id: string) => (counts[id] = (counts[id] ?? 0) + 1);
    const hung = Promise.withResolvers<void>();
    // The first engine: "b" never finishes, as if the process died while it ran.
    const first = createWorkflowEngine({
      store,
      resolveExecutor: () => Promise.resolve(executor({
        run: ({ params }) => {
          count(String(params.id));
          if (params.id === "b") {
            hung.resolve();
            return new Promise(() => {});
          }
          return { result: `${params.id}:${params.in ?? ""}` };
        },
      })),
    });
    const text = wf(`
  - { id: a, method: x/run, params: { id: a } }
  - { id: b, method: x/run, dependencies: [a], params: { id: b, in: "\${a.result}" } }
  - { id: c, method: x/run, dependencies: [b], params: { id: c, in: "\${b.result}" } }
  - { id: d, method: x/run, params: { id: d } }
`);
    const abandoned = await first.run(text, { id: "run-1" });
    await hung.promise;
    while ((await store.listTasks("run-1")).find((t) => t.taskId === "d")?.status !== "succeeded") await new Promise((r) => setTimeout(r, 1));
    void abandoned;

    const second = createWorkflowEngine({
      store,
      resolveExecutor: () => Promise.resolve(executor({ run: ({ params }) => (count(String(params.id)), { result: `${params.id}:${params.in ?? ""}` }) })),
    });
    const handle = await second.resume("run-1");
    const s = await handle.done;
    assert.equal(s.status, "succeeded");
    assert.deepEqual(counts, { a: 1, b: 2, c: 1, d: 1 });
    assert.deepEqual(s.results.c, { result: "c:b:a:" });
    const attempts = await store.listAttempts("run-1", "b");
    assert.deepEqual(attempts.map((a) => [a.status, a.error?.code ?? null]), [["failed", "E_RUN_INTERRUPTED"], ["succeeded", null]]);
    const types = ev(await store.listEvents("run-1"));
    assert.ok(types.includes("run.resumed"));
    assert.equal(types.at(-1), "run.finished");
    assert.equal((await second.status("run-1")).run.status, "succeeded");
    // A finished run resumes to its summary without running anything.
    const again = await (await second.resume("run-1")).done;
    assert.equal(again.status, "succeeded");
    assert.deepEqual(counts, { a: 1, b: 2, c: 1, d: 1 });
    await assert.rejects(second.resume("nope"), (e: unknown) => KeelError.is(e, "E_WORKFLOW_NOT_FOUND"));
    await assert.rejects(second.status("nope"), (e: unknown) => KeelError.is(e, "E_WORKFLOW_NOT_FOUND"));
    assert.deepEqual((await second.list()).map((r) => r.id), ["run-1"]);
  });
});
