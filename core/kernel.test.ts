import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ErrorCodeName, KeelError } from "./errors.ts";
import type { Executor } from "./executor.ts";
import { createKernel, type KernelOptions, orderPlugins } from "./kernel.ts";
import { createMemoryLogger } from "./logger.ts";
import { KERNEL_VERSION } from "./manifest.ts";
import { joinPath } from "./path.ts";
import type {
  Hooks,
  KernelEvent,
  Plugin,
  PluginContext,
  PluginManifest,
  RunInfo,
} from "./plugin.ts";
import type { Runtime } from "./runtime.ts";
import { defineService } from "./services.ts";
import type { TrainingContext } from "./training.ts";

type Extra = Partial<Pick<PluginManifest, "requires" | "capabilities" | "enforce">>;

/** A plugin named `name`; `setup` defaults to one that returns no hooks. */
function plugin(name: string, extra: Extra = {}, setup: Plugin["setup"] = () => {}): Plugin {
  return { name, version: "1.0.0", kernel: "^1", ...extra, setup };
}

/** A plugin whose setup and hooks write to `log` as "<what>:<name>". */
function traced(log: string[], name: string, extra: Extra = {}, hooks: Hooks = {}): Plugin {
  return plugin(name, extra, () => {
    log.push(`setup:${name}`);
    return {
      ready: () => {
        log.push(`ready:${name}`);
      },
      dispose: () => {
        log.push(`dispose:${name}`);
      },
      ...hooks,
    };
  });
}

/** A predicate for assert.rejects: a KeelError with `code` whose message includes every string. */
function coded(code: ErrorCodeName, ...parts: (string | RegExp)[]): (e: unknown) => boolean {
  return (e) => {
    assert.ok(KeelError.is(e, code), `expected ${code}, got ${String(e)}`);
    for (const p of parts) {
      if (typeof p === "string") {
        assert.ok(e.message.includes(p), `"${e.message}" should include "${p}"`);
      } else assert.match(e.message, p);
    }
    return true;
  };
}

function executor(protocol: string): Executor {
  return { protocol, methods: ["run"], execute: () => Promise.resolve(protocol) };
}

const run: RunInfo = { id: "r1", protocol: "script/v1", target: "x.ts", params: {} };

describe("createKernel: options and manifests", () => {
  test("boots with no plugins", async () => {
    const kernel = await createKernel();
    assert.equal(kernel.version, KERNEL_VERSION);
    assert.deepEqual(kernel.plugins, []);
    assert.equal(kernel.runtime, undefined);
    await kernel.dispose();
  });

  test("options that are not an object, or plugins that are not a list, are E_KERNEL_OPTIONS", async () => {
    await assert.rejects(createKernel(null as unknown as KernelOptions), coded("E_KERNEL_OPTIONS"));
    await assert.rejects(
      createKernel({ plugins: plugin("a") as unknown as Plugin[] }),
      coded("E_KERNEL_OPTIONS", '"plugins" must be a list'),
    );
  });

  test("a plugin that is not an object is E_MANIFEST_INVALID", async () => {
    await assert.rejects(
      createKernel({ plugins: [null as unknown as Plugin] }),
      coded("E_MANIFEST_INVALID", "got null"),
    );
    await assert.rejects(
      createKernel({ plugins: ["a" as unknown as Plugin] }),
      coded("E_MANIFEST_INVALID", "got string"),
    );
  });

  test("a plugin without setup() is E_MANIFEST_INVALID naming it", async () => {
    const noSetup = { name: "lazy", version: "1.0.0", kernel: "^1" } as unknown as Plugin;
    await assert.rejects(
      createKernel({ plugins: [noSetup] }),
      coded("E_MANIFEST_INVALID", 'Plugin "lazy" has no setup() function'),
    );
  });

  test("a manifest for another kernel is E_MANIFEST_KERNEL_RANGE, and nothing is set up", async () => {
    const log: string[] = [];
    const newer = { ...traced(log, "newer"), kernel: "^2" };
    await assert.rejects(
      createKernel({ plugins: [traced(log, "a"), newer] }),
      coded("E_MANIFEST_KERNEL_RANGE", 'Plugin "newer" needs kernel "^2"'),
    );
    assert.deepEqual(log, []);
  });

  test("two plugins with one name are E_PLUGIN_DUPLICATE, and nothing is set up", async () => {
    const log: string[] = [];
    await assert.rejects(
      createKernel({ plugins: [traced(log, "a"), traced(log, "b"), traced(log, "a")] }),
      coded("E_PLUGIN_DUPLICATE", 'Two plugins are named "a"; load it once'),
    );
    assert.deepEqual(log, []);
  });
});

describe("createKernel: requires and order", () => {
  test("a missing required plugin is E_PLUGIN_REQUIRES_MISSING naming both, and nothing is set up", async () => {
    const log: string[] = [];
    await assert.rejects(
      createKernel({
        plugins: [traced(log, "a"), traced(log, "report", { requires: ["a", "metrics"] })],
      }),
      coded(
        "E_PLUGIN_REQUIRES_MISSING",
        'Plugin "report" requires plugin "metrics", which is not loaded; add "metrics" to the plugins',
      ),
    );
    assert.deepEqual(log, []);
  });

  test("a cycle is E_PLUGIN_REQUIRES_CYCLE with the path in the message", async () => {
    const log: string[] = [];
    await assert.rejects(
      createKernel({
        plugins: [traced(log, "a", { requires: ["b"] }), traced(log, "b", { requires: ["a"] })],
      }),
      (e) => {
        coded(
          "E_PLUGIN_REQUIRES_CYCLE",
          "Plugins require each other in a cycle: a -> b -> a",
          "remove one of those requires",
        )(e);
        assert.deepEqual((e as KeelError).details?.cycle, ["a", "b", "a"]);
        return true;
      },
    );
    assert.deepEqual(log, []);
  });

  test("the cycle is found behind a plugin that merely depends on it", async () => {
    await assert.rejects(
      createKernel({
        plugins: [
          plugin("root"),
          plugin("c", { requires: ["a", "root"] }),
          plugin("a", { requires: ["b"] }),
          plugin("b", { requires: ["x"] }),
          plugin("x", { requires: ["a"] }),
        ],
      }),
      coded("E_PLUGIN_REQUIRES_CYCLE", "a -> b -> x -> a"),
    );
  });

  test("a plugin that requires itself is a cycle", async () => {
    await assert.rejects(
      createKernel({ plugins: [plugin("me", { requires: ["me"] })] }),
      coded("E_PLUGIN_REQUIRES_CYCLE", "me -> me"),
    );
  });

  test("plugins are set up after what they require, whatever the input order", async () => {
    const log: string[] = [];
    const kernel = await createKernel({
      plugins: [
        traced(log, "c", { requires: ["b"] }),
        traced(log, "b", { requires: ["a"] }),
        traced(log, "d"),
        traced(log, "a"),
      ],
    });
    assert.deepEqual(log.filter((l) => l.startsWith("setup:")), [
      "setup:d",
      "setup:a",
      "setup:b",
      "setup:c",
    ]);
    assert.deepEqual(kernel.plugins.map((p) => p.name), ["d", "a", "b", "c"]);
    await kernel.dispose();
  });

  test("enforce: pre first, post last, input order otherwise", async () => {
    const log: string[] = [];
    const kernel = await createKernel({
      plugins: [
        traced(log, "late", { enforce: "post" }),
        traced(log, "middle-1"),
        traced(log, "early", { enforce: "pre" }),
        traced(log, "middle-2"),
      ],
    });
    assert.deepEqual(kernel.plugins.map((p) => p.name), ["early", "middle-1", "middle-2", "late"]);
    await kernel.dispose();
  });

  test("requires wins over enforce: a pre plugin waits for what it requires", async () => {
    const kernel = await createKernel({
      plugins: [
        plugin("base"),
        plugin("first", { enforce: "pre", requires: ["base"] }),
        plugin("other", { enforce: "pre" }),
      ],
    });
    assert.deepEqual(kernel.plugins.map((p) => p.name), ["other", "base", "first"]);
    await kernel.dispose();
  });

  test("orderPlugins orders any items that carry a manifest and an index", () => {
    const items = [
      { manifest: { name: "b", version: "1.0.0", kernel: "^1", requires: ["a"] }, index: 0 },
      { manifest: { name: "a", version: "1.0.0", kernel: "^1" }, index: 1 },
    ];
    assert.deepEqual(orderPlugins(items).map((i) => i.manifest.name), ["a", "b"]);
  });
});

describe("createKernel: hooks", () => {
  test("ready runs after every setup, in plugin order", async () => {
    const log: string[] = [];
    const kernel = await createKernel({ plugins: [traced(log, "a"), traced(log, "b")] });
    assert.deepEqual(log, ["setup:a", "setup:b", "ready:a", "ready:b"]);
    await kernel.dispose();
  });

  test("order pre/post reorders handlers within one hook", async () => {
    const calls: string[] = [];
    const handler = (name: string) => () => {
      calls.push(name);
    };
    const kernel = await createKernel({
      plugins: [
        plugin("a", {}, () => ({ beforeRun: { order: "post", handler: handler("a") } })),
        plugin("b", {}, () => ({ beforeRun: handler("b") })),
        plugin("c", {}, () => ({ beforeRun: { order: "pre", handler: handler("c") } })),
      ],
    });
    await kernel.callHook("beforeRun", run);
    assert.deepEqual(calls, ["c", "b", "a"]);
    // The plugin order itself is unchanged.
    assert.deepEqual(kernel.plugins.map((p) => p.name), ["a", "b", "c"]);
    await kernel.dispose();
  });

  test("resolveExecutor returns the first non-null result and asks no further", async () => {
    const asked: string[] = [];
    const kernel = await createKernel({
      plugins: [
        plugin("none", {}, () => ({
          resolveExecutor: (p) => {
            asked.push(`none:${p}`);
            return null;
          },
        })),
        plugin("script", {}, () => ({
          resolveExecutor: (p) => {
            asked.push(`script:${p}`);
            return p === "script/v1" ? executor("script/v1") : undefined;
          },
        })),
        plugin("greedy", {}, () => ({
          resolveExecutor: (p) => {
            asked.push(`greedy:${p}`);
            return executor(`greedy:${p}`);
          },
        })),
      ],
    });
    const found = await kernel.resolveExecutor("script/v1");
    assert.equal(found.protocol, "script/v1");
    assert.equal(await found.execute({ method: "run", params: {} }), "script/v1");
    assert.deepEqual(asked, ["none:script/v1", "script:script/v1"]);
    assert.equal((await kernel.callHook("resolveExecutor", "script/v1"))?.protocol, "script/v1");
    await kernel.dispose();
  });

  test("resolveExecutor with no provider is E_EXECUTOR_MISSING naming the protocol", async () => {
    const kernel = await createKernel({
      plugins: [plugin("none", {}, () => ({ resolveExecutor: () => null }))],
    });
    await assert.rejects(
      kernel.resolveExecutor("python/v1"),
      coded(
        "E_EXECUTOR_MISSING",
        'No plugin provides an executor for "python/v1"; load a plugin that handles it',
      ),
    );
    await kernel.dispose();
  });

  test("sequential hooks run in order and await each handler", async () => {
    const calls: string[] = [];
    const step = (name: string) => async () => {
      calls.push(`${name}:start`);
      for (let i = 0; i < 10; i++) await Promise.resolve();
      calls.push(`${name}:end`);
    };
    const kernel = await createKernel({
      plugins: [
        plugin("a", {}, () => ({ beforeRun: step("a") })),
        plugin("b", {}, () => ({ beforeRun: step("b") })),
      ],
    });
    await kernel.callHook("beforeRun", run);
    assert.deepEqual(calls, ["a:start", "a:end", "b:start", "b:end"]);
    await kernel.dispose();
  });

  test("a beforeRun handler that throws refuses the run with E_HOOK_FAILED naming the plugin", async () => {
    const kernel = await createKernel({
      plugins: [plugin("guard", {}, () => ({
        beforeRun: (r) => {
          throw new Error(`no ${r.target}`);
        },
      }))],
    });
    await assert.rejects(
      kernel.callHook("beforeRun", run),
      coded("E_HOOK_FAILED", 'Plugin "guard" failed in hook "beforeRun": no x.ts'),
    );
    await kernel.dispose();
  });

  test("parallel hooks run every handler and aggregate failures naming each plugin", async () => {
    const ran: string[] = [];
    const kernel = await createKernel({
      plugins: [
        plugin("bad-1", {}, () => ({
          afterRun: () => {
            throw new Error("one");
          },
        })),
        plugin("fine", {}, () => ({
          afterRun: () => {
            ran.push("fine");
          },
        })),
        plugin("bad-2", {}, () => ({ afterRun: () => Promise.reject(new Error("two")) })),
      ],
    });
    await assert.rejects(
      kernel.callHook("afterRun", run, { ok: true, value: null, durationMs: 1 }),
      coded(
        "E_HOOK_FAILED",
        '2 plugins failed in hook "afterRun"',
        'Plugin "bad-1" failed in hook "afterRun": one',
        'Plugin "bad-2" failed in hook "afterRun": two',
      ),
    );
    assert.deepEqual(ran, ["fine"]);
    await kernel.dispose();
  });

  test("the dispose hook cannot be called through callHook", async () => {
    const log: string[] = [];
    const kernel = await createKernel({ plugins: [traced(log, "a")] });
    await assert.rejects(
      kernel.callHook("dispose"),
      (e) => e instanceof TypeError && /kernel\.dispose\(\)/.test(e.message),
    );
    assert.deepEqual(log, ["setup:a", "ready:a"]);
    await kernel.dispose();
  });

  test("an unknown hook name is E_HOOK_UNKNOWN", async () => {
    const kernel = await createKernel();
    await assert.rejects(
      kernel.callHook("transform" as "ready"),
      coded("E_HOOK_UNKNOWN", 'Hook "transform" does not exist'),
    );
    await kernel.dispose();
  });

  test("emit reaches every observer and swallows their failures into the log", async () => {
    const seen: KernelEvent[] = [];
    const logger = createMemoryLogger();
    const kernel = await createKernel({
      logger,
      plugins: [
        plugin("broken", {}, () => ({
          onEvent: () => {
            throw new Error("observer down");
          },
        })),
        plugin("watcher", {}, () => ({
          onEvent: (e) => {
            seen.push(e);
          },
        })),
      ],
    });
    await kernel.emit("run.finished", { id: "r1" });
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.type, "run.finished");
    assert.deepEqual(seen[0]?.data, { id: "r1" });
    assert.equal(typeof seen[0]?.at, "number");
    const warning = logger.lines.find((l) => l.level === "warn");
    assert.ok(warning, "the failure is logged");
    assert.match(warning.message, /"run\.finished"/);
    assert.match(warning.message, /observer down/);
    await kernel.emit("no-data");
    assert.equal(seen[1]?.data, undefined);
    await kernel.dispose();
  });
});

describe("createKernel: bad setup", () => {
  test("an unknown hook name is E_PLUGIN_HOOK_UNKNOWN with a suggestion, and earlier plugins are disposed", async () => {
    const log: string[] = [];
    await assert.rejects(
      createKernel({
        plugins: [traced(log, "a"), plugin("typo", {}, () => ({ onEvnet: () => {} }) as Hooks)],
      }),
      coded(
        "E_PLUGIN_HOOK_UNKNOWN",
        'Plugin "typo" returned hook "onEvnet", which does not exist; did you mean "onEvent"?',
      ),
    );
    assert.deepEqual(log, ["setup:a", "dispose:a"]);
  });

  test("a hook that is not a function is E_PLUGIN_HOOK_INVALID naming plugin and hook", async () => {
    await assert.rejects(
      createKernel({ plugins: [plugin("odd", {}, () => ({ ready: "soon" }) as unknown as Hooks)] }),
      coded("E_PLUGIN_HOOK_INVALID", 'Plugin "odd" hook "ready" must be a function'),
    );
  });

  test("a setup that throws is E_PLUGIN_SETUP_FAILED naming the plugin; set-up plugins are disposed in reverse", async () => {
    const log: string[] = [];
    const boom = new Error("cannot open model");
    await assert.rejects(
      createKernel({
        plugins: [
          traced(log, "a"),
          traced(log, "b"),
          plugin("broken", {}, () => {
            throw boom;
          }),
          traced(log, "never"),
        ],
      }),
      (e) => {
        coded("E_PLUGIN_SETUP_FAILED", 'Plugin "broken" failed in setup: cannot open model')(e);
        assert.equal((e as KeelError).cause, boom);
        assert.equal((e as KeelError).details?.plugin, "broken");
        return true;
      },
    );
    assert.deepEqual(log, ["setup:a", "setup:b", "dispose:b", "dispose:a"]);
  });

  test("an async setup that rejects fails the same way", async () => {
    const log: string[] = [];
    await assert.rejects(
      createKernel({
        plugins: [traced(log, "a"), plugin("slow", {}, () => Promise.reject(new Error("later")))],
      }),
      coded("E_PLUGIN_SETUP_FAILED", 'Plugin "slow" failed in setup: later'),
    );
    assert.deepEqual(log, ["setup:a", "dispose:a"]);
  });

  test("a failing ready disposes every plugin and rejects with the hook's error", async () => {
    const log: string[] = [];
    await assert.rejects(
      createKernel({
        plugins: [
          traced(log, "a"),
          traced(log, "b", {}, {
            ready: () => {
              throw new Error("not ready");
            },
          }),
          traced(log, "c"),
        ],
      }),
      coded("E_HOOK_FAILED", 'Plugin "b" failed in hook "ready": not ready'),
    );
    assert.deepEqual(log, [
      "setup:a",
      "setup:b",
      "setup:c",
      "ready:a",
      "dispose:c",
      "dispose:b",
      "dispose:a",
    ]);
  });
});

describe("createKernel: dispose", () => {
  test("runs dispose hooks in reverse plugin order, once", async () => {
    const log: string[] = [];
    const kernel = await createKernel({
      plugins: [
        traced(log, "a"),
        traced(log, "b"),
        plugin("c", {}, () => ({
          dispose: {
            order: "pre",
            handler: () => {
              log.push("dispose:c");
            },
          },
        })),
      ],
    });
    log.length = 0;
    await kernel.dispose();
    assert.deepEqual(log, ["dispose:c", "dispose:b", "dispose:a"]);
    await kernel.dispose();
    await kernel[Symbol.asyncDispose]();
    assert.deepEqual(log, ["dispose:c", "dispose:b", "dispose:a"]);
  });

  test("a second dispose() waits for the first to finish", async () => {
    const log: string[] = [];
    const kernel = await createKernel({
      plugins: [plugin("slow", {}, () => ({
        dispose: async () => {
          for (let i = 0; i < 10; i++) await Promise.resolve();
          log.push("disposed");
        },
      }))],
    });
    const first = kernel.dispose();
    await kernel.dispose();
    assert.deepEqual(log, ["disposed"]);
    await first;
  });

  test("Symbol.asyncDispose disposes", async () => {
    const log: string[] = [];
    const kernel = await createKernel({ plugins: [traced(log, "a")] });
    await kernel[Symbol.asyncDispose]();
    assert.deepEqual(log, ["setup:a", "ready:a", "dispose:a"]);
  });

  test("a failing dispose hook does not stop the others; the failures are reported together", async () => {
    const log: string[] = [];
    const kernel = await createKernel({
      plugins: [
        traced(log, "a"),
        traced(log, "b", {}, {
          dispose: () => {
            throw new Error("leak");
          },
        }),
        traced(log, "c"),
      ],
    });
    log.length = 0;
    await assert.rejects(
      kernel.dispose(),
      coded("E_HOOK_FAILED", "1 plugin(s) failed to dispose: leak"),
    );
    assert.deepEqual(log, ["dispose:c", "dispose:a"]);
  });

  test("using the kernel after dispose is E_KERNEL_DISPOSED; emit does nothing", async () => {
    const seen: string[] = [];
    const kernel = await createKernel({
      plugins: [plugin("a", {}, () => ({
        onEvent: (e) => {
          seen.push(e.type);
        },
        resolveExecutor: () => executor("x"),
      }))],
    });
    await kernel.dispose();
    await assert.rejects(
      kernel.callHook("beforeRun", run),
      coded("E_KERNEL_DISPOSED", "create a new one with createKernel()"),
    );
    await assert.rejects(kernel.resolveExecutor("x"), coded("E_KERNEL_DISPOSED"));
    await kernel.emit("late");
    assert.deepEqual(seen, []);
  });
});

describe("createKernel: services", () => {
  const Counter = defineService<{ next(): number }>("counter");

  test("a plugin requires what an earlier plugin provides", async () => {
    let got = 0;
    const kernel = await createKernel({
      plugins: [
        plugin("consumer", { requires: ["provider"] }, (ctx) => {
          got = ctx.require(Counter).next();
        }),
        plugin("provider", {}, (ctx) => {
          let n = 0;
          ctx.provide(Counter, { next: () => ++n });
        }),
      ],
    });
    assert.equal(got, 1);
    assert.equal(kernel.services.has(Counter), true);
    assert.equal(kernel.services.get(Counter).next(), 2);
    assert.deepEqual(kernel.services.list(), [{ id: "counter", provider: "provider" }]);
    await kernel.dispose();
  });

  test("two providers of one service is E_SERVICE_DUPLICATE naming both plugins", async () => {
    const log: string[] = [];
    const provider = (name: string) =>
      plugin(name, {}, (ctx) => {
        log.push(`setup:${name}`);
        ctx.provide(Counter, { next: () => 0 });
        return {
          dispose: () => {
            log.push(`dispose:${name}`);
          },
        };
      });
    await assert.rejects(
      createKernel({ plugins: [provider("one"), provider("two")] }),
      coded(
        "E_SERVICE_DUPLICATE",
        'Service "counter" is provided by both "one" and "two"; load only one of them',
      ),
    );
    assert.deepEqual(log, ["setup:one", "setup:two", "dispose:one"]);
  });

  test("requiring a service nobody provides is E_SERVICE_MISSING naming the plugin", async () => {
    await assert.rejects(
      createKernel({
        plugins: [plugin("needy", {}, (ctx) => {
          ctx.require(Counter);
        })],
      }),
      coded(
        "E_SERVICE_MISSING",
        'Plugin "needy" requires service "counter" but no loaded plugin provides it',
      ),
    );
  });
});

describe("createKernel: capabilities", () => {
  test("a plugin asking for more than it is granted is E_CAPABILITY_DENIED naming the capability and the --allow", async () => {
    const log: string[] = [];
    await assert.rejects(
      createKernel({
        plugins: [
          traced(log, "fine"),
          traced(log, "reader", { capabilities: ["read:/data", "net:example.com"] }),
        ],
        grants: { reader: ["net:example.com"] },
      }),
      (e) => {
        coded(
          "E_CAPABILITY_DENIED",
          'Plugin "reader" asks for "read:/data", which was not granted',
          "--allow read:/data",
          'grants: { "reader": ["read:/data"] }',
        )(e);
        assert.deepEqual((e as KeelError).details, { plugin: "reader", missing: ["read:/data"] });
        return true;
      },
    );
    assert.deepEqual(log, []);
  });

  test("deny by default: a plugin missing from grants gets nothing; full trust is pointed out", async () => {
    await assert.rejects(
      createKernel({ plugins: [plugin("shell", { capabilities: ["run:git", "gpu"] })] }),
      coded(
        "E_CAPABILITY_DENIED",
        '"run:git", "gpu", which were not granted',
        "--allow run:git --allow gpu",
        "run:git, gpu are full trust",
      ),
    );
  });

  test("a granted plugin boots and holds only what it asked for", async () => {
    let held: string[] = [];
    const kernel = await createKernel({
      plugins: [plugin("reader", { capabilities: ["read:/data/models", "env:HOME"] }, (ctx) => {
        held = ctx.grant.toStrings();
      })],
      grants: { reader: ["read:/data", "env:HOME", "net", "run:rm"] },
    });
    assert.deepEqual(held, ["read:/data/models", "env:HOME"]);
    await kernel.dispose();
  });

  test("onDenied: skip boots without the denied plugin and reports it", async () => {
    const log: string[] = [];
    const logger = createMemoryLogger();
    const kernel = await createKernel({
      logger,
      onDenied: "skip",
      plugins: [traced(log, "greedy", { capabilities: ["net", "env:HOME"] }), traced(log, "fine")],
      grants: { greedy: ["env:HOME"] },
    });
    assert.deepEqual(log, ["setup:fine", "ready:fine"]);
    assert.deepEqual(kernel.plugins.map((p) => [p.name, p.status]), [["fine", "loaded"], [
      "greedy",
      "denied",
    ]]);
    const denied = kernel.plugins[1]!;
    assert.deepEqual(denied.missing, ["net"]);
    assert.deepEqual(denied.requested, ["net", "env:HOME"]);
    assert.ok(KeelError.is(denied.error, "E_CAPABILITY_DENIED"));
    assert.deepEqual(denied.hooks, []);
    assert.ok(
      logger.lines.some((l) =>
        l.level === "warn" && l.message.includes('Plugin "greedy"') && l.fields.plugin === "greedy"
      ),
    );
    await kernel.dispose();
    assert.deepEqual(log, ["setup:fine", "ready:fine", "dispose:fine"]);
  });

  test("onDenied: skip still fails a plugin that requires the denied one", async () => {
    await assert.rejects(
      createKernel({
        onDenied: "skip",
        plugins: [
          plugin("greedy", { capabilities: ["net"] }),
          plugin("user", { requires: ["greedy"] }),
        ],
      }),
      coded("E_PLUGIN_REQUIRES_MISSING", 'Plugin "user" requires plugin "greedy", which was denied its capabilities'),
    );
  });

  test("grants may be a function of the manifest", async () => {
    const asked: unknown[] = [];
    const kernel = await createKernel({
      plugins: [
        plugin("a", { capabilities: ["env:HOME"] }),
        plugin("b", { capabilities: ["env:USER"] }),
      ],
      grants: (manifest) => {
        asked.push(manifest);
        return manifest.name === "a" ? ["env:HOME"] : ["env:USER"];
      },
    });
    assert.deepEqual(asked.map((m) => (m as PluginManifest).name), ["a", "b"]);
    assert.equal(
      "setup" in (asked[0] as object),
      false,
      "the policy sees the manifest, not the plugin",
    );
    assert.deepEqual(kernel.plugins.map((p) => p.status), ["loaded", "loaded"]);
    await kernel.dispose();

    await assert.rejects(
      createKernel({ plugins: [plugin("a", { capabilities: ["env:HOME"] })], grants: () => [] }),
      coded("E_CAPABILITY_DENIED", 'Plugin "a"'),
    );
  });

  test("a plugin whose name is also an Object.prototype member is not granted that member", async () => {
    // A grants table is a plain object: "constructor" must not pick up Object.prototype.constructor.
    const kernel = await createKernel({ plugins: [plugin("constructor")], grants: {} });
    assert.deepEqual(kernel.plugins.map((p) => p.status), ["loaded"]);
    await kernel.dispose();
  });

  test("relative capability paths resolve against baseDir", async () => {
    let held: string[] = [];
    const kernel = await createKernel({
      baseDir: "/project",
      plugins: [plugin("a", { capabilities: ["read:data"] }, (ctx) => {
        held = ctx.grant.toStrings();
      })],
      grants: { a: ["read:/project"] },
    });
    assert.deepEqual(held, ["read:/project/data"]);
    assert.deepEqual(kernel.plugins[0]?.requested, ["read:/project/data"]);
    await kernel.dispose();
  });

  test("kernel.plugins describes each plugin: version, requested, full trust, hooks", async () => {
    const kernel = await createKernel({
      plugins: [
        {
          ...plugin("gpu-user", {
            capabilities: ["gpu", "run:nvidia-smi", "net:example.com", "ffi:/lib/x.so"],
          }, () => ({ ready: () => {}, onEvent: () => {} })),
          version: "2.1.0",
        },
        plugin("plain"),
      ],
      grants: { "gpu-user": ["gpu", "run:nvidia-smi", "net:example.com", "ffi:/lib"] },
    });
    const [gpuUser, plain] = kernel.plugins;
    assert.deepEqual(gpuUser, {
      name: "gpu-user",
      version: "2.1.0",
      isolated: false,
      status: "loaded",
      requested: ["gpu", "run:nvidia-smi", "net:example.com", "ffi:/lib/x.so"],
      missing: [],
      fullTrust: ["gpu", "run:nvidia-smi", "ffi:/lib/x.so"],
      hooks: ["ready", "onEvent"],
    });
    assert.deepEqual(plain?.fullTrust, []);
    assert.deepEqual(plain?.hooks, []);
    assert.ok(Object.isFrozen(kernel.plugins));
    await kernel.dispose();
  });
});

describe("createKernel: with a runtime", () => {
  let runtime: Runtime;
  let dir = "";

  before(async () => {
    const { detectRuntime } = await import("../runtimes/mod.ts");
    runtime = await detectRuntime();
    dir = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-kernel-"));
    await runtime.fs!.writeTextFile(joinPath(dir, "config.json"), '{"lr":0.1}');
  });

  after(async () => {
    await runtime.fs!.remove(dir);
  });

  test("a plugin reads a granted file during setup", async () => {
    let text = "";
    const kernel = await createKernel({
      runtime,
      plugins: [plugin("cfg", { capabilities: [`read:${dir}`] }, async (ctx) => {
        text = await ctx.fs.readTextFile(joinPath(dir, "config.json"));
      })],
      grants: { cfg: [`read:${dir}`] },
    });
    assert.equal(text, '{"lr":0.1}');
    assert.equal(kernel.runtime, runtime);
    await kernel.dispose();
  });

  test("a plugin that uses what it did not ask for fails boot with E_CAPABILITY_DENIED, not a generic setup error", async () => {
    let ctxSeen: PluginContext | undefined;
    await assert.rejects(
      createKernel({
        runtime,
        plugins: [plugin("snoop", {}, async (ctx) => {
          ctxSeen = ctx;
          await ctx.fs.readTextFile(joinPath(dir, "config.json"));
        })],
        // Granted by the host, but not requested, so not held.
        grants: { snoop: [`read:${dir}`] },
      }),
      coded(
        "E_CAPABILITY_DENIED",
        'Plugin "snoop" may not read',
        `--allow read:${dir}/config.json`,
      ),
    );
    assert.equal(ctxSeen?.runtime, runtime.name);
  });

  test("relative capability paths resolve against the runtime's cwd", async () => {
    let held: string[] = [];
    const kernel = await createKernel({
      runtime,
      plugins: [plugin("rel", { capabilities: ["read:data"] }, (ctx) => {
        held = ctx.grant.toStrings();
      })],
      grants: { rel: [`read:${runtime.cwd()}`] },
    });
    assert.deepEqual(held, [`read:${joinPath(runtime.cwd(), "data")}`]);
    await kernel.dispose();
  });
});

describe("createKernel: workflows", () => {
  const math: Executor = {
    protocol: "math/v1",
    methods: ["math/add"],
    execute: ({ params }) => Promise.resolve({ result: Number(params.a) + Number(params.b) }),
  };
  const provider = (): Plugin =>
    plugin("math", {}, () => ({ resolveExecutor: (p) => (p === "math/v1" ? math : undefined) }));
  const yaml = [
    "name: sums",
    "tasks:",
    "  - id: one",
    "    method: math/add",
    "    params: { a: 1, b: 2 }",
    "  - id: two",
    "    method: math/add",
    "    dependencies: [one]",
    "    params:",
    '      a: "${one.result}"',
    "      b: 10",
  ].join("\n");

  test("kernel.workflows runs a workflow over the plugins' executors, with typed references", async () => {
    const kernel = await createKernel({ plugins: [provider()] });
    try {
      const handle = await kernel.workflows.run(yaml);
      const summary = await handle.done;
      assert.equal(summary.status, "succeeded");
      assert.deepEqual(summary.results, { one: { result: 3 }, two: { result: 13 } });
      const report = await kernel.workflows.status(handle.id);
      assert.deepEqual(report.tasks.map((t) => [t.taskId, t.status]), [["one", "succeeded"], ["two", "succeeded"]]);
    } finally {
      await kernel.dispose();
    }
  });

  test("a workflow whose protocol no plugin provides is refused before anything runs", async () => {
    const kernel = await createKernel({ plugins: [] });
    try {
      await assert.rejects(
        kernel.workflows.run(yaml),
        (e: unknown) => KeelError.is(e, "E_WORKFLOW_INVALID") && /math\/v1/.test(e.message),
      );
      assert.deepEqual(await kernel.workflows.list(), []);
    } finally {
      await kernel.dispose();
    }
  });
});

describe("plugins calling hooks (ctx.hooks)", () => {
  test("callSettled runs every handler, returns failures as E_HOOK_FAILED, and the training hooks are sequential", async () => {
    const log: string[] = [];
    let driver: PluginContext | undefined;
    const kernel = await createKernel({
      plugins: [
        plugin("driver", {}, (ctx) => {
          driver = ctx;
          assert.throws(() => ctx.hooks.has("onEpochEnd"), (e: KeelError) => e.code === "E_HOOK_NOT_READY");
        }),
        plugin("broken", {}, () => ({ onEpochEnd: () => { log.push("broken"); throw new Error("boom"); } })),
        plugin("fine", {}, () => ({ onEpochEnd: (c) => { log.push(`fine:${c.epoch}`); } })),
      ],
    });
    const ctx = { epoch: 3 } as unknown as TrainingContext;
    assert.equal(driver!.hooks.has("onEpochEnd"), true);
    assert.equal(driver!.hooks.has("onTrainingStart"), false);
    const failures = await driver!.hooks.callSettled("onEpochEnd", ctx);
    assert.deepEqual(log, ["broken", "fine:3"]);
    assert.equal(failures.length, 1);
    assert.equal(failures[0]!.code, "E_HOOK_FAILED");
    assert.match(failures[0]!.message, /Plugin "broken" failed in hook "onEpochEnd": boom/);
    await assert.rejects(driver!.hooks.call("onEpochEnd", ctx), (e: KeelError) => e.code === "E_HOOK_FAILED");
    await kernel.dispose();
  });
});
