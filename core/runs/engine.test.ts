import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../errors.ts";
import { createMemoryLogger } from "../logger.ts";
import { fromFileUrl, joinPath } from "../path.ts";
import type { Runtime } from "../runtime.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import {
  createRunStore,
  type IsolateMode,
  type OutputEvent,
  runMany,
  type RunResult,
  runScript,
  type SweepProgress,
} from "./mod.ts";

const fixture = (name: string): string =>
  fromFileUrl(new URL(`../../tests/fixtures/scripts/${name}`, import.meta.url));
/** Subprocess runs start Deno processes. */
const SLOW = { timeout: 60_000 };
const ISOLATES: readonly IsolateMode[] = ["none", "worker", "process"];

let runtime: Runtime;
let root: string;

before(async () => {
  runtime = await detectRuntime();
  root = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-runs-"));
});

after(async () => {
  await runtime.fs!.remove(root);
});

/** Run options every test uses: records in the temp dir, output kept out of the test log. */
function base(extra: Record<string, unknown> = {}) {
  return { runtime, root, onOutput: () => {}, ...extra };
}

function valueOf(result: RunResult | undefined): unknown {
  assert.ok(result, "a result");
  if (!result.ok) assert.fail(`run failed: ${result.error.code} ${result.error.message}`);
  return result.value;
}

function errorOf(result: RunResult | undefined, code: string): KeelError {
  assert.ok(result, "a result");
  assert.equal(result.ok, false, "expected the run to fail");
  if (result.ok) throw new Error("unreachable");
  assert.equal(result.error.code, code, result.error.message);
  return result.error;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await runtime.fs!.readTextFile(path)) as Record<string, unknown>;
}

for (const isolate of ISOLATES) {
  describe(`runMany with isolate "${isolate}"`, () => {
    test("each run gets a fresh module instance", SLOW, async () => {
      const results = await runMany(
        fixture("counter.ts"),
        [{ params: { step: 3 } }, {}, { params: { step: 3 } }, {}],
        base({ isolate, parallel: isolate === "none" ? 1 : 2 }),
      );
      assert.deepEqual(results.map((r) => (valueOf(r) as { calls: number }).calls), [3, 1, 3, 1]);
    });

    test("records run.json, config.json, result.json and the output", SLOW, async () => {
      const events: OutputEvent[] = [];
      const [result] = await runMany(fixture("echo.ts"), [{
        params: { text: "hi" },
        metadata: { note: "n" },
      }], {
        ...base({ isolate }),
        onOutput: (e: OutputEvent) => events.push(e),
      });
      const value = valueOf(result) as { runId: string };
      assert.equal(value.runId, result!.runId);
      const dir = joinPath(root, ".keel/runs", result!.runId);
      const run = await readJson(joinPath(dir, "run.json"));
      assert.equal(run.status, "ok");
      assert.equal(run.exitCode, 0);
      assert.equal(run.entrypoint, "main");
      assert.equal(run.isolate, isolate);
      assert.equal(run.file, fixture("echo.ts"));
      assert.equal(typeof run.durationMs, "number");
      assert.ok(typeof run.endedAt === "string" && typeof run.startedAt === "string");
      const config = await readJson(joinPath(dir, "config.json"));
      assert.deepEqual(config.params, { text: "hi" });
      assert.deepEqual(config.metadata, { note: "n" });
      assert.equal(config.resolved, true);
      assert.deepEqual(await readJson(joinPath(dir, "result.json")), value);
      assert.equal(await runtime.fs!.readTextFile(joinPath(dir, "stdout.log")), "out: hi\n");
      assert.equal(await runtime.fs!.readTextFile(joinPath(dir, "stderr.log")), "err: hi\n");
      assert.deepEqual(
        events.map((e) => `${e.stream}:${e.text}`).sort(),
        ["stderr:err: hi\n", "stdout:out: hi\n"],
      );
    });

    test("run.json (running) and config.json exist before the entrypoint runs", SLOW, async () => {
      const [result] = await runMany(
        fixture("reads-record.ts"),
        [{ params: { root, lr: "0.5" } }],
        base({ isolate, coerce: true }),
      );
      assert.deepEqual(valueOf(result), { status: "running", configParams: { root, lr: 0.5 } });
    });

    test("results come back in input order when runs end out of order", SLOW, async () => {
      const dir = await runtime.fs!.makeTempDir("keel-order-");
      try {
        // The first member ends only once the second was reported, so they end out of order.
        const finished: number[] = [];
        const results = await runMany(fixture("ordered.ts"), [
          { params: { id: "first", waitFor: "second", dir } },
          { params: { id: "second", dir } },
        ], {
          ...base({ isolate, parallel: 2 }),
          onResult: (_r: RunResult, i: number) => {
            finished.push(i);
            if (i === 1) void runtime.fs!.writeTextFile(joinPath(dir, "second.reported"), "");
          },
        });
        assert.deepEqual(finished, [1, 0]);
        assert.deepEqual(results.map((r) => (valueOf(r) as { id: string }).id), [
          "first",
          "second",
        ]);
      } finally {
        await runtime.fs!.remove(dir);
      }
    });

    test("the context carries params, args, kwargs, metadata and a logger", SLOW, async () => {
      const logger = createMemoryLogger();
      const [result] = await runMany(fixture("context.ts"), [{
        params: { lr: 0.5 },
        args: [1, "two"],
        kwargs: { k: true },
        metadata: { m: "x" },
      }], base({ isolate, logger }));
      const value = valueOf(result) as Record<string, unknown>;
      assert.deepEqual(value.p, { lr: 0.5, name: "x" });
      assert.deepEqual(value.params, { lr: 0.5, name: "x" });
      assert.deepEqual(value.args, [1, "two"]);
      assert.deepEqual(value.kwargs, { k: true });
      assert.deepEqual(value.metadata, { m: "x" });
      assert.equal(value.file, fixture("context.ts"));
      assert.equal(value.runId, result!.runId);
      assert.ok(
        logger.lines.some((l) => l.level === "info" && l.message === "lr is 0.5"),
        JSON.stringify(logger.lines),
      );
    });

    test("a failing member is reported and the others finish", SLOW, async () => {
      const results = await runMany(
        fixture("bad-result.ts"),
        [{ params: { kind: "bigint" } }, { params: { kind: "cycle" } }, { params: { kind: "ok" } }],
        base({ isolate, parallel: 2 }),
      );
      const e = errorOf(results[0], "E_SCRIPT_RESULT");
      assert.match(e.message, /result\.metrics\[1\]\.loss is a BigInt/);
      errorOf(results[1], "E_SCRIPT_RESULT");
      assert.deepEqual(valueOf(results[2]), { metrics: [{ loss: 0.5 }, {}] });
      const run = await readJson(joinPath(root, ".keel/runs", results[0]!.runId, "run.json"));
      assert.equal(run.status, "failed");
      assert.equal(run.exitCode, 1);
      assert.equal((run.error as { code: string }).code, "E_SCRIPT_RESULT");
    });

    test("a script that throws is E_SCRIPT_FAILED with its message and cause", SLOW, async () => {
      const [result] = await runMany(fixture("throws.ts"), [{}], base({ isolate }));
      const e = errorOf(result, "E_SCRIPT_FAILED");
      assert.match(e.message, /Script "throws\.ts" failed in main\(\): the model diverged/);
      assert.ok(e.cause instanceof Error);
      assert.equal(e.cause.message, "the model diverged");
    });

    test(
      "no entrypoint is E_SCRIPT_ENTRYPOINT; its config.json keeps the overrides",
      SLOW,
      async () => {
        const [result] = await runMany(
          fixture("no-entry.ts"),
          [{ params: { a: 2 } }],
          base({ isolate }),
        );
        errorOf(result, "E_SCRIPT_ENTRYPOINT");
        const config = await readJson(joinPath(root, ".keel/runs", result!.runId, "config.json"));
        assert.equal(config.resolved, false);
        assert.deepEqual(config.params, { a: 2 });
      },
    );

    test("a run past its time limit fails with E_SCRIPT_TIMEOUT", SLOW, async () => {
      const [result] = await runMany(fixture("slow.ts"), [{}], base({ isolate, timeoutMs: 100 }));
      errorOf(result, "E_SCRIPT_TIMEOUT");
    });
  });
}

describe("runMany and runScript", () => {
  test("a process run stuck in a synchronous loop is killed at its time limit", SLOW, async () => {
    const [result] = await runMany(
      fixture("spin.ts"),
      [{}],
      base({ isolate: "process", timeoutMs: 300 }),
    );
    errorOf(result, "E_SCRIPT_TIMEOUT");
  });

  test("a missing script is E_SCRIPT_NOT_FOUND before anything runs", async () => {
    await assert.rejects(
      runMany(joinPath(root, "nope.ts"), [{}], base()),
      (e) => KeelError.is(e, "E_SCRIPT_NOT_FOUND") && e.message.includes(joinPath(root, "nope.ts")),
    );
  });

  test("file.ts#name picks the entrypoint; strict and coerce apply", async () => {
    assert.equal(
      valueOf(
        await runScript(
          `${fixture("entrypoints.ts")}#train`,
          base({ config: { params: { x: "4" } }, coerce: true }),
        ),
      ),
      "train 4",
    );
    assert.equal(
      valueOf(await runScript(fixture("entrypoints.ts"), base({ entrypoint: "run" }))),
      "run",
    );
    const strict = await runScript(
      fixture("square.ts"),
      base({ config: { params: { y: 1 } }, strict: true }),
    );
    errorOf(strict, "E_CONFIG_UNKNOWN_KEY");
    const loose = await runScript(fixture("square.ts"), base({ config: { params: { y: 1 } } }));
    assert.equal(valueOf(loose), 9);
  });

  test("a malformed config is E_CONFIG_INVALID", async () => {
    await assert.rejects(
      runMany(fixture("square.ts"), [{ parms: { x: 1 } }], base()),
      (e) => KeelError.is(e, "E_CONFIG_INVALID") && /did you mean "params"/.test(e.message),
    );
  });

  test("progress counts runs, failures and gives an ETA once a run is done", async () => {
    const events: SweepProgress[] = [];
    await runMany(fixture("bad-result.ts"), [
      { params: { kind: "ok" } },
      { params: { kind: "fn" } },
      { params: { kind: "ok" } },
    ], {
      ...base(),
      onProgress: (p: SweepProgress) => events.push(p),
    });
    assert.deepEqual(events[0], { total: 3, done: 0, running: 1, failed: 0, etaMs: undefined });
    const last = events[events.length - 1]!;
    assert.equal(last.done, 3);
    assert.equal(last.failed, 1);
    assert.equal(last.running, 0);
    assert.equal(last.etaMs, 0);
  });

  test(
    "cancelling stops the running run and starts no more (E_RUN_INTERRUPTED)",
    SLOW,
    async () => {
      const controller = new AbortController();
      const pending = runMany(fixture("slow.ts"), [{}, {}], {
        ...base(),
        signal: controller.signal,
        onProgress: (p: SweepProgress) => {
          if (p.running === 1) {
            queueMicrotask(() =>
              controller.abort(new KeelError("E_RUN_INTERRUPTED", "Stopped by the test"))
            );
          }
        },
      });
      const results = await pending;
      errorOf(results[0], "E_RUN_INTERRUPTED");
      errorOf(results[1], "E_RUN_INTERRUPTED");
      const run = await readJson(joinPath(root, ".keel/runs", results[0]!.runId, "run.json"));
      assert.equal(run.status, "interrupted");
      assert.equal(results[1]!.recorded, false);
    },
  );

  test("without a runtime: in-process, unrecorded; records then need one", async () => {
    const url = new URL("../../tests/fixtures/scripts/square.ts", import.meta.url).href;
    const result = await runScript(url, { config: { params: { x: 6 } } });
    assert.equal(valueOf(result), 36);
    assert.equal(result.recorded, false);
    await assert.rejects(
      runScript(url, { record: true }),
      (e) => KeelError.is(e, "E_RUNTIME_UNSUPPORTED"),
    );
    await assert.rejects(
      runMany(url, [{}], { isolate: "worker" }),
      (e) => KeelError.is(e, "E_RUNTIME_UNSUPPORTED"),
    );
  });
});

describe("the run store", () => {
  test(
    "lists newest first and reports a running record whose process is gone as interrupted",
    SLOW,
    async () => {
      const dir = await runtime.fs!.makeTempDir("keel-store-");
      try {
        const store = createRunStore(runtime, { root: dir });
        const old = await store.begin({
          id: "20260101-000000-000001",
          file: "/a.ts",
          protocol: "script/v1",
          isolate: "none",
        });
        await store.finish(old, { ok: true, value: 1 });
        const live = await store.begin({
          id: "20260101-000001-000001",
          file: "/b.ts",
          protocol: "script/v1",
          isolate: "none",
        });
        // A record owned by a process that has exited: a child we started and waited for.
        const gone = await runtime.processes!.spawn(runtime.denoPath!(), {
          args: ["--version"],
          stdout: "null",
          stderr: "null",
          stdin: "null",
        });
        await gone.status;
        const dead = { ...live, id: "20260101-000002-000001", pid: gone.pid };
        delete (dead as { pidStart?: string }).pidStart;
        await runtime.fs!.mkdir(joinPath(store.dir, dead.id));
        await runtime.fs!.writeTextFile(
          joinPath(store.dir, dead.id, "run.json"),
          JSON.stringify(dead),
        );
        const list = await store.list();
        assert.deepEqual(list.map((r) => [r.id, r.status]), [
          [dead.id, "interrupted"],
          [live.id, "running"],
          [old.id, "ok"],
        ]);
        assert.equal(list[0]!.error?.code, "E_RUN_INTERRUPTED");
        assert.deepEqual((await store.list({ limit: 1 })).map((r) => r.id), [dead.id]);
      } finally {
        await runtime.fs!.remove(dir);
      }
    },
  );

  test("show takes a unique prefix; an unknown id suggests the nearest", async () => {
    const dir = await runtime.fs!.makeTempDir("keel-store-");
    try {
      const store = createRunStore(runtime, { root: dir });
      const rec = await store.begin({
        id: "20260101-000000-00000a",
        file: "/a.ts",
        protocol: "script/v1",
        isolate: "none",
      });
      await store.writeConfig(rec.id, {
        params: { x: 1 },
        args: [],
        kwargs: {},
        metadata: {},
        overrides: {},
        resolved: true,
      });
      const log = store.log(rec.id, "stdout");
      for (let i = 1; i <= 30; i++) log.write(`line ${i}\n`);
      await log.flush();
      await store.finish(rec, { ok: true, value: { loss: 0.1 } });
      const shown = await store.show("20260101-000000-00000");
      assert.equal(shown.record.id, rec.id);
      assert.deepEqual(shown.result, { loss: 0.1 });
      assert.deepEqual(shown.config?.params, { x: 1 });
      assert.equal(shown.stdoutTail.split("\n")[0], "line 11");
      assert.equal(shown.stdoutTail.trimEnd().split("\n").length, 20);
      await assert.rejects(
        store.show("20260101-000000-00000b"),
        (e) => KeelError.is(e, "E_RUN_NOT_FOUND") && e.message.includes(`"${rec.id}"`),
      );
    } finally {
      await runtime.fs!.remove(dir);
    }
  });
});
