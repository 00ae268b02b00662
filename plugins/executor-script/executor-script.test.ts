import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createKernel,
  createMemoryLogger,
  type Executor,
  type Kernel,
} from "../../core/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import executorScript, { createExecutorScriptPlugin, SCRIPT_PROTOCOL, SCRIPT_RUN } from "./mod.ts";
import { rejectsWith } from "../../tests/helpers.ts";

const fixture = (name: string): string =>
  fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

describe("executor-script", () => {
  let kernel: Kernel;
  let executor: Executor;
  let temp: string;
  const logger = createMemoryLogger();

  before(async () => {
    kernel = await createKernel({
      runtime: await detectRuntime(),
      plugins: [executorScript],
      logger,
    });
    executor = await kernel.resolveExecutor(SCRIPT_PROTOCOL);
    temp = await mkdtemp(join(tmpdir(), "keel-script-"));
  });
  after(async () => {
    await kernel.dispose();
    await rm(temp, { recursive: true, force: true });
  });

  const run = (params: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> =>
    executor.execute(
      signal ? { method: SCRIPT_RUN, params, signal } : { method: SCRIPT_RUN, params },
    );


  test("answers script/v1 and no other protocol", async () => {
    assert.equal(executor.protocol, "script/v1");
    assert.deepEqual([...executor.methods], ["script/run"]);
    await rejectsWith(kernel.resolveExecutor("python/v1"), "E_EXECUTOR_MISSING");
  });

  test("runs the default export with the module's params as defaults", async () => {
    const result = await run({ file: fixture("counter.ts") });
    assert.deepEqual(result, {
      calls: 1,
      params: { step: 1, label: "count", enabled: false, tags: ["a"], extra: null },
    });
  });

  test("each run gets a fresh module instance", async () => {
    const first = (await run({ file: fixture("counter.ts"), params: { step: 5 } })) as {
      calls: number;
    };
    const second = (await run({ file: fixture("counter.ts"), params: { step: 5 } })) as {
      calls: number;
    };
    assert.equal(first.calls, 5);
    assert.equal(second.calls, 5);
  });

  test("accepts a file: URL", async () => {
    const url = new URL("./fixtures/run-only.ts", import.meta.url).href;
    assert.equal(await run({ file: url }), 42);
  });

  test("overrides replace defaults; coerce converts strings to the default's type", async () => {
    const result = (await run({
      file: fixture("counter.ts"),
      params: { step: "3", enabled: "true", label: "n", tags: '["x","y"]', extra: '{"k":1}' },
      coerce: true,
    })) as { calls: number; params: Record<string, unknown> };
    assert.equal(result.calls, 3);
    assert.deepEqual(result.params, {
      step: 3,
      label: "n",
      enabled: true,
      tags: ["x", "y"],
      extra: { k: 1 },
    });
  });

  test("an override that looks like a typo fails with a suggestion; strict refuses any unknown key", async () => {
    const e = await rejectsWith(
      run({ file: fixture("counter.ts"), params: { stpe: 2 } }),
      "E_CONFIG_INVALID",
      /"stpe"/,
    );
    assert.match(e.message, /did you mean "step"\?/);
    await rejectsWith(
      run({ file: fixture("entrypoints.ts"), params: { x: 1 }, strict: true }),
      "E_CONFIG_UNKNOWN_KEY",
      /has no params/,
    );
    // Not strict, a key unlike any param is passed on as a new one.
    assert.equal(await run({ file: fixture("run-only.ts"), params: { extra: 1 } }), 42);
  });

  test("args, kwargs and metadata reach the script's context", async () => {
    const file = join(temp, "ctx.ts");
    await writeFile(
      file,
      "export default (_p: unknown, ctx: { args: unknown; kwargs: unknown; metadata: unknown }) => ({ args: ctx.args, kwargs: ctx.kwargs, metadata: ctx.metadata });\n",
    );
    assert.deepEqual(await run({ file, args: [1], kwargs: { k: 2 }, metadata: { m: 3 } }), {
      args: [1],
      kwargs: { k: 2 },
      metadata: { m: 3 },
    });
  });

  test("a result that is not JSON data is E_SCRIPT_RESULT", async () => {
    const file = join(temp, "bigint.ts");
    await writeFile(file, "export default () => ({ n: 1n });\n");
    await rejectsWith(run({ file }), "E_SCRIPT_RESULT", /result\.n is a BigInt/);
  });

  test("records need a plugin built with the host Runtime", async () => {
    await rejectsWith(
      run({ file: fixture("run-only.ts"), record: true }),
      "E_RUNTIME_UNSUPPORTED",
      /createExecutorScriptPlugin/,
    );
    const runtime = await detectRuntime();
    const recording = await createKernel({
      runtime,
      plugins: [createExecutorScriptPlugin({ runtime, root: temp })],
    });
    try {
      const exec = await recording.resolveExecutor(SCRIPT_PROTOCOL);
      assert.equal(
        await exec.execute({
          method: SCRIPT_RUN,
          params: { file: fixture("run-only.ts"), record: true },
        }),
        42,
      );
      const runs = await readdir(join(temp, ".keel", "runs"));
      assert.equal(runs.length, 1);
      const record = JSON.parse(
        await readFile(join(temp, ".keel", "runs", runs[0]!, "run.json"), "utf8"),
      );
      assert.equal(record.status, "ok");
      assert.equal(record.entrypoint, "run");
    } finally {
      await recording.dispose();
    }
  });

  test("picks main, then run, or the entrypoint named", async () => {
    assert.equal(await run({ file: fixture("entrypoints.ts") }), "main");
    assert.equal(await run({ file: fixture("run-only.ts"), params: { x: 5 } }), 10);
    const result = await run({
      file: fixture("entrypoints.ts"),
      entrypoint: "train",
      runId: "run-1",
    });
    assert.deepEqual(result, { who: "train", runId: "run-1", aborted: false });
    assert.equal(await run({ file: `${fixture("entrypoints.ts")}#main` }), "main");
  });

  test("no entrypoint: E_SCRIPT_ENTRYPOINT lists the exports", async () => {
    await rejectsWith(
      run({ file: fixture("no-entrypoint.ts") }),
      "E_SCRIPT_ENTRYPOINT",
      /exports "main", "params"/,
    );
    await rejectsWith(
      run({ file: fixture("entrypoints.ts"), entrypoint: "value" }),
      "E_SCRIPT_ENTRYPOINT",
      /no function "value"/,
    );
  });

  test("a missing file is E_SCRIPT_NOT_FOUND", async () => {
    const missing = join(temp, "missing.ts");
    const e = await rejectsWith(run({ file: missing }), "E_SCRIPT_NOT_FOUND");
    assert.ok(e.message.includes(missing), e.message);
  });

  test("a script that throws is E_SCRIPT_FAILED with the cause", async () => {
    const e = await rejectsWith(
      run({ file: fixture("throws.ts") }),
      "E_SCRIPT_FAILED",
      /boom from the script/,
    );
    assert.ok(e.cause instanceof Error);
    assert.equal(e.cause.message, "boom from the script");
  });

  test("a script whose import is missing fails to load, and is not reported as missing itself", async () => {
    const file = join(temp, "broken.ts");
    await writeFile(file, 'import "./does-not-exist.ts";\nexport default () => 1;\n');
    await rejectsWith(run({ file }), "E_SCRIPT_FAILED", /could not be loaded/);
  });

  test("aborting the signal stops waiting for the script", async () => {
    const controller = new AbortController();
    const pending = run({ file: fixture("slow.ts") }, controller.signal);
    controller.abort(new Error("cancelled by the test"));
    await rejectsWith(pending, "E_RUN_INTERRUPTED", /cancelled by the test/);
  });

  test("bad requests are TypeErrors or RangeErrors", async () => {
    await assert.rejects(run({ file: "relative/path.ts" }), TypeError);
    await assert.rejects(run({}), TypeError);
    await assert.rejects(run({ file: fixture("counter.ts"), params: [1] }), TypeError);
    await assert.rejects(run({ file: fixture("counter.ts"), sweep: true }), /has no param "sweep"/);
    await assert.rejects(
      executor.execute({ method: "script/other", params: { file: fixture("counter.ts") } }),
      RangeError,
    );
  });
});
