import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../errors.ts";
import { fromFileUrl } from "../path.ts";
import type { Runtime } from "../runtime.ts";
import { grid } from "../sweep.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import { Parallel, run, Script, Sequential, sweep } from "./mod.ts";

const fixture = (name: string): string =>
  fromFileUrl(new URL(`../../tests/fixtures/scripts/${name}`, import.meta.url));
const SLOW = { timeout: 60_000 };

let runtime: Runtime;
let root: string;

before(async () => {
  runtime = await detectRuntime();
  root = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-flows-"));
});

after(async () => {
  await runtime.fs!.remove(root);
});

function base(extra: Record<string, unknown> = {}) {
  return { runtime, root, onOutput: () => {}, ...extra };
}

describe("run, sweep and Script", () => {
  test("run() resolves with the value and throws the run's error", async () => {
    assert.equal(await run(fixture("square.ts"), base({ config: { params: { x: 5 } } })), 25);
    await assert.rejects(
      run(fixture("throws.ts"), base()),
      (e) => KeelError.is(e, "E_SCRIPT_FAILED") && /the model diverged/.test(e.message),
    );
    await assert.rejects(
      run(fixture("no-entry.ts"), base()),
      (e) => KeelError.is(e, "E_SCRIPT_ENTRYPOINT"),
    );
  });

  test("sweep() takes a grid, a list or a generator; results keep the source's order", async () => {
    const fromGrid = await sweep(fixture("square.ts"), grid({ x: [1, 2, 3] }), base());
    assert.deepEqual(fromGrid.map((r) => r.ok && r.value), [1, 4, 9]);
    function* gen() {
      for (const x of [4, 5]) yield { params: { x } };
    }
    const fromGen = await sweep(fixture("square.ts"), gen, base({ parallel: 2 }));
    assert.deepEqual(fromGen.map((r) => r.ok && r.value), [16, 25]);
  });

  test("an infinite generator stops at maxRuns with E_CONFIG_TOO_MANY; an empty one is E_CONFIG_EMPTY", async () => {
    function* forever() {
      for (let x = 0;; x++) yield { params: { x } };
    }
    await assert.rejects(
      sweep(fixture("square.ts"), forever, base()),
      (e) => KeelError.is(e, "E_CONFIG_TOO_MANY"),
    );
    await assert.rejects(
      sweep(fixture("square.ts"), forever, base({ maxRuns: 3 })),
      (e) => KeelError.is(e, "E_CONFIG_TOO_MANY") && /more than 3 configs/.test(e.message),
    );
    await assert.rejects(
      sweep(fixture("square.ts"), [], base()),
      (e) => KeelError.is(e, "E_CONFIG_EMPTY"),
    );
  });

  test("a Script runs with its config, or sweeps its configs", async () => {
    const script = new Script(fixture("square.ts"), base({ config: { params: { x: 3 } } }));
    assert.equal(await script.run(), 9);
    assert.equal(await script.run({ config: { params: { x: 4 } } }), 16);
    const many = new Script(
      `${fixture("entrypoints.ts")}#train`,
      base({ configs: [{ params: { x: 1 } }, { params: { x: 2 } }] }),
    );
    assert.deepEqual((await many.sweep()).map((r) => r.ok && r.value), ["train 1", "train 2"]);
    assert.throws(() => new Script(fixture("square.ts"), { config: {}, configs: [] }), TypeError);
  });
});

describe("Sequential", () => {
  test("passes each step's value to the next as ctx.previous (a list after a sweep)", async () => {
    const flow = new Sequential([
      { file: fixture("square.ts"), config: { params: { x: 3 } } },
      fixture("previous.ts"),
      new Script(fixture("square.ts"), { configs: [{ params: { x: 1 } }, { params: { x: 2 } }] }),
      fixture("previous.ts"),
    ], base());
    const result = await flow.run();
    assert.equal(result.ok, true);
    assert.deepEqual(result.steps.map((s) => s.value), [9, { previous: 9 }, [1, 4], {
      previous: [1, 4],
    }]);
  });

  test("a failed step stops the flow: the steps after it are skipped", async () => {
    const result = await new Sequential([
      fixture("square.ts"),
      fixture("throws.ts"),
      fixture("square.ts"),
    ], base()).run();
    assert.equal(result.ok, false);
    assert.deepEqual(result.steps.map((s) => s.status), ["ok", "failed", "skipped"]);
    const failed = result.steps[1]!.results[0]!;
    assert.ok(!failed.ok && failed.error.code === "E_SCRIPT_FAILED");
  });

  test("a missing step script fails before any step runs", async () => {
    await assert.rejects(
      new Sequential([fixture("square.ts"), fixture("missing.ts")], base()).run(),
      (e) => KeelError.is(e, "E_SCRIPT_NOT_FOUND"),
    );
  });

  test("ctx.previous reaches a worker and a subprocess too", SLOW, async () => {
    for (const isolate of ["worker", "process"] as const) {
      const result = await new Sequential([
        { file: fixture("square.ts"), config: { params: { x: 2 } } },
        fixture("previous.ts"),
      ], base({ isolate })).run();
      assert.deepEqual(result.steps[1]!.value, { previous: 4 }, isolate);
    }
  });
});

describe("Parallel", () => {
  const order = globalThis as { __keelStartOrder?: string[] };
  beforeEach(() => {
    delete order.__keelStartOrder;
  });

  test("a one-config step is not queued behind a twenty-config step", async () => {
    const sweepStep = {
      file: fixture("order.ts"),
      configs: Array.from({ length: 20 }, (_, i) => ({ params: { tag: `sweep-${i}` } })),
    };
    const single = { file: fixture("order.ts"), config: { params: { tag: "single" } } };
    // One slot: the order in which runs start is the order the pool takes them.
    const result = await new Parallel([sweepStep, single], base({ parallel: 1 })).run();
    assert.equal(result.ok, true);
    assert.equal(result.steps[1]!.value, 1, `started: ${order.__keelStartOrder?.join(", ")}`);
    assert.deepEqual(result.steps[0]!.value, [0, ...Array.from({ length: 19 }, (_, i) => i + 2)]);
  });

  test("with two slots the single step is dispatched among the first two runs", async () => {
    // The order the pool hands runs out, seen by beforeRun as each run is dispatched. (When each
    // script's body starts also depends on how long its module import takes.)
    const dispatched: string[] = [];
    const result = await new Parallel([
      {
        file: fixture("order.ts"),
        configs: Array.from({ length: 20 }, (_, i) => ({ params: { tag: `s${i}` } })),
      },
      { file: fixture("order.ts"), config: { params: { tag: "single" } } },
    ], base({
      parallel: 2,
      isolate: "none",
      hooks: { beforeRun: (r: { config: { params: Record<string, unknown> } }) => void dispatched.push(String(r.config.params.tag)) },
    })).run();
    assert.equal(result.ok, true);
    assert.equal(dispatched.length, 21);
    assert.ok(dispatched.indexOf("single") < 2, `dispatched: ${dispatched.join(", ")}`);
  });

  test(
    "groups results per step, in each step's config order, and reports failures",
    SLOW,
    async () => {
      const result = await new Parallel([
        {
          file: fixture("square.ts"),
          configs: [{ params: { x: 1 } }, { params: { x: 2 } }, { params: { x: 3 } }],
        },
        fixture("throws.ts"),
        { file: fixture("square.ts"), config: { params: { x: 10 } } },
      ], base({ parallel: 2 })).run();
      assert.equal(result.ok, false);
      assert.deepEqual(result.steps.map((s) => s.status), ["ok", "failed", "ok"]);
      assert.deepEqual(result.steps[0]!.value, [1, 4, 9]);
      assert.equal(result.steps[2]!.value, 100);
    },
  );
});
