import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "./errors.ts";
import type { Executor } from "./executor.ts";
import { HOOK_NAMES, HookTable, validateHooks } from "./hooks.ts";
import { HOOK_KINDS, type HookName, type Hooks, type KernelEvent } from "./plugin.ts";

/** Lets other pending work run: enough turns of the microtask queue for a chain of awaits. */
async function ticks(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

function executor(protocol: string): Executor {
  return { protocol, methods: [], execute: () => Promise.resolve(protocol) };
}

const event: KernelEvent = { type: "test", at: 0 };

describe("validateHooks", () => {
  test("nothing returned means no hooks", () => {
    assert.deepEqual(validateHooks("a", undefined), {});
    assert.deepEqual(validateHooks("a", null), {});
  });

  test("accepts functions, { order, handler } and undefined values", () => {
    const hooks = {
      ready: () => {},
      onEvent: { order: "pre", handler: () => {} },
      afterRun: { order: "post", handler: () => {} },
      beforeRun: { order: null, handler: () => {} },
      dispose: { handler: () => {} },
      resolveExecutor: undefined,
    };
    assert.equal(validateHooks("a", hooks), hooks);
  });

  test("a setup result that is not an object is E_PLUGIN_HOOK_INVALID naming the plugin", () => {
    for (
      const [value, what] of [
        ["ready", "string"],
        [[() => {}], "an array"],
        [() => {}, "function"],
        [1, "number"],
      ] as const
    ) {
      assert.throws(
        () => validateHooks("metrics", value),
        (e) =>
          KeelError.is(e, "E_PLUGIN_HOOK_INVALID") &&
          e.message ===
            `Plugin "metrics" setup() must return an object of hooks or nothing, got ${what}` &&
          e.details?.plugin === "metrics",
      );
    }
  });

  test("an unknown hook is E_PLUGIN_HOOK_UNKNOWN with a suggestion when one is close", () => {
    assert.throws(
      () => validateHooks("metrics", { onEvnet: () => {} }),
      (e) =>
        KeelError.is(e, "E_PLUGIN_HOOK_UNKNOWN") &&
        e.message ===
          'Plugin "metrics" returned hook "onEvnet", which does not exist; did you mean "onEvent"?' &&
        e.details?.hook === "onEvnet",
    );
    assert.throws(
      () => validateHooks("m", { Ready: () => {} }),
      (e) => KeelError.is(e, "E_PLUGIN_HOOK_UNKNOWN") && /did you mean "ready"\?/.test(e.message),
    );
    assert.throws(
      () => validateHooks("m", { beforeRunn: () => {} }),
      (e) =>
        KeelError.is(e, "E_PLUGIN_HOOK_UNKNOWN") && /did you mean "beforeRun"\?/.test(e.message),
    );
  });

  test("an unknown hook with nothing close lists every hook", () => {
    assert.throws(
      () => validateHooks("m", { transform: () => {} }),
      (e) =>
        KeelError.is(e, "E_PLUGIN_HOOK_UNKNOWN") &&
        e.message.endsWith(`; hooks are ${HOOK_NAMES.join(", ")}`),
    );
  });

  test("names inherited from Object.prototype are unknown hooks", () => {
    assert.throws(
      () => validateHooks("m", { toString: () => "x" }),
      (e) => KeelError.is(e, "E_PLUGIN_HOOK_UNKNOWN"),
    );
    assert.throws(
      () => validateHooks("m", JSON.parse('{"__proto__": 1}')),
      (e) => KeelError.is(e, "E_PLUGIN_HOOK_UNKNOWN"),
    );
  });

  test("a hook that is not a function or { order, handler } is E_PLUGIN_HOOK_INVALID naming plugin and hook", () => {
    for (
      const value of [1, "fn", null, {}, { handler: 1 }, { order: "middle", handler: () => {} }, {
        order: "pre",
      }]
    ) {
      assert.throws(
        () => validateHooks("metrics", { ready: value }),
        (e) =>
          KeelError.is(e, "E_PLUGIN_HOOK_INVALID") &&
          e.message ===
            'Plugin "metrics" hook "ready" must be a function or { order: "pre" | "post", handler }' &&
          e.details?.hook === "ready",
        JSON.stringify(value),
      );
    }
  });
});

describe("HOOK_KINDS", () => {
  test("gives every hook a kind, and HOOK_NAMES lists them all", () => {
    assert.deepEqual(HOOK_KINDS, {
      ready: "sequential",
      resolveExecutor: "first",
      beforeRun: "sequential",
      afterRun: "parallel",
      onEvent: "parallel",
      dispose: "sequential",
      // bz's training lifecycle: each one in order, plugin after plugin.
      onTrainingStart: "sequential",
      onTrainingEnd: "sequential",
      onEpochStart: "sequential",
      onEpochEnd: "sequential",
      onTrainingLoopStart: "sequential",
      onTrainingLoopEnd: "sequential",
      onTrainingBatchStart: "sequential",
      onTrainingBatchEnd: "sequential",
      onValidationLoopStart: "sequential",
      onValidationLoopEnd: "sequential",
      onValidationBatchStart: "sequential",
      onValidationBatchEnd: "sequential",
      onLoadCheckpoint: "sequential",
      onSaveCheckpoint: "sequential",
    });
    assert.deepEqual(HOOK_NAMES, Object.keys(HOOK_KINDS));
  });
});

describe("HookTable: order", () => {
  test("runs handlers in plugin order, with pre first and post last", async () => {
    const calls: string[] = [];
    const h = (name: string) => () => {
      calls.push(name);
    };
    const table = new HookTable([
      { plugin: "a", hooks: { ready: { order: "post", handler: h("a") } } },
      { plugin: "b", hooks: { ready: h("b") } },
      { plugin: "c", hooks: { ready: { order: "pre", handler: h("c") } } },
      { plugin: "d", hooks: { ready: { order: null, handler: h("d") } } },
      { plugin: "e", hooks: { ready: { order: "pre", handler: h("e") } } },
      { plugin: "f", hooks: {} },
    ]);
    assert.deepEqual(table.pluginsFor("ready"), ["c", "e", "b", "d", "a"]);
    await table.call("ready");
    assert.deepEqual(calls, ["c", "e", "b", "d", "a"]);
  });

  test("dispose runs in reverse order", () => {
    const table = new HookTable(
      ["a", "b", "c"].map((plugin) => ({ plugin, hooks: { dispose: () => {} } })),
    );
    assert.deepEqual(table.pluginsFor("dispose"), ["c", "b", "a"]);
  });

  test("a hook nobody handles resolves to nothing", async () => {
    const table = new HookTable([]);
    assert.deepEqual(table.pluginsFor("ready"), []);
    assert.equal(await table.call("ready"), undefined);
    assert.equal(await table.call("resolveExecutor", "x/v1"), undefined);
    assert.equal(await table.call("onEvent", event), undefined);
  });

  test("an unknown hook name rejects with E_HOOK_UNKNOWN", async () => {
    const table = new HookTable([]);
    for (const name of ["transform", "toString"]) {
      await assert.rejects(
        table.call(name as HookName),
        (e) =>
          KeelError.is(e, "E_HOOK_UNKNOWN") && e.message.includes(`Hook "${name}" does not exist`),
      );
    }
  });
});

describe("HookTable: first", () => {
  test("returns the first non-null result and calls no later handler", async () => {
    const calls: string[] = [];
    const table = new HookTable([
      {
        plugin: "a",
        hooks: {
          resolveExecutor: (p) => {
            calls.push(`a:${p}`);
            return null;
          },
        },
      },
      {
        plugin: "b",
        hooks: {
          resolveExecutor: async (p) => {
            calls.push(`b:${p}`);
            await ticks();
            return undefined;
          },
        },
      },
      {
        plugin: "c",
        hooks: {
          resolveExecutor: async (p) => {
            calls.push(`c:${p}`);
            await ticks();
            return executor("c");
          },
        },
      },
      {
        plugin: "d",
        hooks: {
          resolveExecutor: (p) => {
            calls.push(`d:${p}`);
            return executor("d");
          },
        },
      },
    ]);
    const found = await table.call("resolveExecutor", "script/v1");
    assert.equal(found?.protocol, "c");
    assert.deepEqual(calls, ["a:script/v1", "b:script/v1", "c:script/v1"]);
  });

  test("a handler that throws stops the hook with E_HOOK_FAILED naming plugin and hook", async () => {
    const later: string[] = [];
    const table = new HookTable([
      {
        plugin: "bad",
        hooks: {
          resolveExecutor: () => {
            throw new Error("boom");
          },
        },
      },
      {
        plugin: "good",
        hooks: {
          resolveExecutor: () => {
            later.push("good");
            return executor("g");
          },
        },
      },
    ]);
    await assert.rejects(
      table.call("resolveExecutor", "x"),
      (e) =>
        KeelError.is(e, "E_HOOK_FAILED") &&
        e.message === 'Plugin "bad" failed in hook "resolveExecutor": boom' &&
        e.details?.plugin === "bad" && (e.cause as Error).message === "boom",
    );
    assert.deepEqual(later, []);
  });
});

describe("HookTable: sequential", () => {
  test("runs handlers one after another, awaiting each", async () => {
    const calls: string[] = [];
    const table = new HookTable([
      {
        plugin: "a",
        hooks: {
          beforeRun: async () => {
            calls.push("a:start");
            await ticks();
            calls.push("a:end");
          },
        },
      },
      {
        plugin: "b",
        hooks: {
          beforeRun: async () => {
            calls.push("b:start");
            await ticks();
            calls.push("b:end");
          },
        },
      },
      {
        plugin: "c",
        hooks: {
          beforeRun: () => {
            calls.push("c");
          },
        },
      },
    ]);
    await table.call("beforeRun", { id: "1", protocol: "script/v1", target: "x.ts", params: {} });
    assert.deepEqual(calls, ["a:start", "a:end", "b:start", "b:end", "c"]);
  });

  test("passes the arguments to every handler", async () => {
    const seen: string[] = [];
    const table = new HookTable(["a", "b"].map((plugin) => ({
      plugin,
      hooks: {
        beforeRun: (run) => {
          seen.push(`${plugin}:${run.id}:${run.target}`);
        },
      } satisfies Hooks,
    })));
    await table.call("beforeRun", { id: "7", protocol: "script/v1", target: "x.ts", params: {} });
    assert.deepEqual(seen, ["a:7:x.ts", "b:7:x.ts"]);
  });

  test("a failing handler stops later ones; a KeelError passes through unchanged", async () => {
    const calls: string[] = [];
    const refusal = new KeelError("E_CAPABILITY_DENIED", "Refused");
    const table = new HookTable([
      {
        plugin: "a",
        hooks: {
          beforeRun: () => {
            calls.push("a");
          },
        },
      },
      { plugin: "guard", hooks: { beforeRun: () => Promise.reject(refusal) } },
      {
        plugin: "c",
        hooks: {
          beforeRun: () => {
            calls.push("c");
          },
        },
      },
    ]);
    await assert.rejects(
      table.call("beforeRun", { id: "1", protocol: "p", target: "t", params: {} }),
      (e) => e === refusal,
    );
    assert.deepEqual(calls, ["a"]);
  });

  test("a rejected non-KeelError becomes E_HOOK_FAILED naming the plugin", async () => {
    const table = new HookTable([{ plugin: "p", hooks: { ready: () => Promise.reject("nope") } }]);
    await assert.rejects(
      table.call("ready"),
      (e) =>
        KeelError.is(e, "E_HOOK_FAILED") && e.message === 'Plugin "p" failed in hook "ready": nope',
    );
  });
});

describe("HookTable: parallel", () => {
  test("starts every handler before any finishes", async () => {
    const calls: string[] = [];
    const table = new HookTable([
      {
        plugin: "a",
        hooks: {
          onEvent: async () => {
            calls.push("a:start");
            await ticks();
            calls.push("a:end");
          },
        },
      },
      {
        plugin: "b",
        hooks: {
          onEvent: async () => {
            calls.push("b:start");
            await ticks();
            calls.push("b:end");
          },
        },
      },
    ]);
    await table.call("onEvent", event);
    assert.deepEqual(calls.slice(0, 2), ["a:start", "b:start"]);
    assert.deepEqual(new Set(calls), new Set(["a:start", "b:start", "a:end", "b:end"]));
  });

  test("waits for async handlers before resolving", async () => {
    let done = false;
    const table = new HookTable([{
      plugin: "a",
      hooks: {
        onEvent: async () => {
          await ticks();
          done = true;
        },
      },
    }]);
    await table.call("onEvent", event);
    assert.equal(done, true);
  });

  test("one failure is that plugin's E_HOOK_FAILED, after every handler ran", async () => {
    const ran: string[] = [];
    const table = new HookTable([
      {
        plugin: "bad",
        hooks: {
          onEvent: () => {
            throw new Error("boom");
          },
        },
      },
      {
        plugin: "good",
        hooks: {
          onEvent: async () => {
            await ticks();
            ran.push("good");
          },
        },
      },
    ]);
    await assert.rejects(
      table.call("onEvent", event),
      (e) =>
        KeelError.is(e, "E_HOOK_FAILED") &&
        e.message === 'Plugin "bad" failed in hook "onEvent": boom',
    );
    assert.deepEqual(ran, ["good"]);
  });

  test("two failures, sync and async, aggregate into one E_HOOK_FAILED naming both", async () => {
    const ran: string[] = [];
    const table = new HookTable([
      {
        plugin: "sync-bad",
        hooks: {
          afterRun: () => {
            throw new Error("first");
          },
        },
      },
      {
        plugin: "ok",
        hooks: {
          afterRun: () => {
            ran.push("ok");
          },
        },
      },
      {
        plugin: "async-bad",
        hooks: {
          afterRun: async () => {
            await ticks();
            throw new Error("second");
          },
        },
      },
    ]);
    await assert.rejects(
      table.call("afterRun", { id: "1", protocol: "p", target: "t", params: {} }, {
        ok: true,
        value: 1,
        durationMs: 0,
      }),
      (e) => {
        assert.ok(KeelError.is(e, "E_HOOK_FAILED"));
        assert.match(e.message, /^2 plugins failed in hook "afterRun": /);
        assert.match(e.message, /Plugin "sync-bad" failed in hook "afterRun": first/);
        assert.match(e.message, /Plugin "async-bad" failed in hook "afterRun": second/);
        assert.deepEqual(e.details?.plugins, ["sync-bad", "async-bad"]);
        assert.ok(e.cause instanceof AggregateError);
        assert.equal(e.cause.errors.length, 2);
        return true;
      },
    );
    assert.deepEqual(ran, ["ok"]);
  });

  test("two synchronous failures aggregate too", async () => {
    const table = new HookTable(["x", "y"].map((plugin) => ({
      plugin,
      hooks: {
        onEvent: () => {
          throw new Error(plugin);
        },
      } satisfies Hooks,
    })));
    await assert.rejects(
      table.call("onEvent", event),
      (e) =>
        KeelError.is(e, "E_HOOK_FAILED") && /^2 plugins failed/.test(e.message) &&
        /"x"/.test(e.message) && /"y"/.test(e.message),
    );
  });
});
