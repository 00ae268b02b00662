import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError, normalizeCode, type SandboxOutcome, type SandboxRun } from "../../core/mod.ts";
import { testSandbox } from "../../core/sandbox/_conformance.ts";
import { rejectsWith } from "../../tests/helpers.ts";
import { createQuickJsSandbox, type QuickJsSandbox } from "./quickjs.ts";

testSandbox("quickjs", () => createQuickJsSandbox());

/** One run as a backend receives it; `code` is normalized as the executor would. */
function job(code: string, overrides: Partial<SandboxRun> = {}): SandboxRun {
  return {
    code: normalizeCode(code),
    context: {},
    timeoutMs: 10_000,
    memoryMb: 64,
    maxLogBytes: 1_048_576,
    callTool: (name) => Promise.reject(new KeelError("E_SANDBOX_TOOL_DENIED", `No tool "${name}" here`)),
    ...overrides,
  };
}

function value(out: SandboxOutcome): unknown {
  assert.equal(out.error, undefined, `expected success, got ${JSON.stringify(out.error)}`);
  assert.ok(out.ok);
  return out.value;
}

function failedWith(out: SandboxOutcome, code: string): string {
  assert.ok(!out.ok && out.error, `expected ${code}, got ${JSON.stringify(out.value)}`);
  assert.equal(out.error.code, code, out.error.message);
  return out.error.message;
}

describe("QuickJS sandbox", () => {
  let sandbox: QuickJsSandbox;
  before(() => {
    sandbox = createQuickJsSandbox();
  });
  after(async () => {
    await sandbox.close();
  });

  test("maxStackBytes is an integer of at most 256 KiB", () => {
    assert.throws(() => createQuickJsSandbox({ maxStackBytes: 256 * 1024 + 1 }), RangeError);
    assert.throws(() => createQuickJsSandbox({ maxStackBytes: 1024 }), RangeError);
    assert.throws(() => createQuickJsSandbox({ maxStackBytes: 65_536.5 }), TypeError);
    assert.equal(createQuickJsSandbox({ maxStackBytes: 256 * 1024 }).name, "quickjs");
  });

  test("the stack limit is enforced: a smaller stack overflows sooner, catchably", async () => {
    const code = "let depth = 0;\nconst f = () => { depth++; f(); };\ntry { f(); } catch (e) { return [depth, e.message]; }\nreturn 'no overflow'";
    const small = createQuickJsSandbox({ maxStackBytes: 32 * 1024 });
    try {
      const [deep, deepMessage] = value(await sandbox.run(job(code))) as [number, string];
      const [shallow, shallowMessage] = value(await small.run(job(code))) as [number, string];
      assert.equal(deepMessage, "stack overflow");
      assert.equal(shallowMessage, "stack overflow");
      assert.ok(shallow * 2 < deep, `32 KiB reached depth ${shallow}, the default 128 KiB depth ${deep}`);
      const uncaught = await small.run(job("const f = (n) => f(n + 1) + 1; return f(0)"));
      assert.equal(failedWith(uncaught, "E_SANDBOX_CODE_FAILED"), "stack overflow");
      assert.equal(value(await small.run(job("1 + 1"))), 2);
    } finally {
      await small.close();
    }
  });

  // QuickJS counts only the WebAssembly's own stack; the host's native stack (about 1 MiB on V8)
  // takes several times as much per call, more for these shapes. At the default the code must see
  // QuickJS's catchable error for each of them, however far the host has optimized the WebAssembly.
  test("at the default stack, recursion of every shape is a catchable stack overflow", async () => {
    const shapes = [
      "const f = (n) => f(n + 1) + 1; f(0)",
      "const f = async (n) => (await f(n + 1)) + 1; await f(0)",
      "const o = { get x() { return o.x; } }; o.x",
      "const g = function* () { yield* g(); }; g().next()",
      "const p = new Proxy({}, { get: (t, k) => p[k] }); p.x",
      "const f = (n) => [n].map((x) => f(x + 1))[0]; f(0)",
    ];
    for (let round = 0; round < 5; round++) {
      for (const shape of shapes) {
        const out = await sandbox.run(job(`try { ${shape}; return 'no overflow'; } catch (e) { return e.message; }`));
        assert.equal(value(out), "stack overflow", shape);
      }
    }
    assert.equal(sandbox.stats().liveRuntimes, 0);
  });

  // With the largest stack QuickJS's limit may come after the host's (on Deno a generator recursing
  // through yield* always does): the host's RangeError unwinds through QuickJS mid-call. Freeing
  // that runtime used to trip QuickJS's leak assertion and abort the instance (E_SANDBOX_CRASHED).
  test("recursion that exhausts the host's stack before QuickJS's limit fails the run, not the sandbox", async () => {
    const big = createQuickJsSandbox({ maxStackBytes: 256 * 1024 });
    try {
      for (
        const code of [
          "const g = function* () { yield* g(); }; return g().next()",
          "const f = async (n) => (await f(n + 1)) + 1; return await f(0)",
          "let a = []; for (let i = 0; i < 100000; i++) a = [a]; return JSON.stringify(a).length",
        ]
      ) {
        const out = await big.run(job(code));
        assert.match(failedWith(out, "E_SANDBOX_CODE_FAILED"), /stack/, code);
        assert.equal(value(await big.run(job("await tools.x({}).catch((e) => e.code)"))), "E_SANDBOX_TOOL_DENIED");
        assert.equal(big.stats().liveRuntimes, 0);
      }
    } finally {
      await big.close();
    }
  });

  test("a run that hits its memory limit leaves a new WebAssembly instance to the next run", async () => {
    value(await sandbox.run(job("1")));
    const before = sandbox.stats().instances;
    value(await sandbox.run(job("new Array(1000).fill('x').join('')")));
    assert.equal(sandbox.stats().instances, before, "an ordinary run keeps the instance");
    const out = await sandbox.run(job("globalThis.keep = []; while (true) keep.push('y'.repeat(100000) + keep.length);", { memoryMb: 16 }));
    assert.match(failedWith(out, "E_SANDBOX_MEMORY"), /16 MiB/);
    assert.equal(value(await sandbox.run(job("typeof keep"))), "undefined");
    assert.equal(sandbox.stats().instances, before + 1);
    assert.ok(sandbox.stats().wasmMemoryBytes < 32 * 1_048_576, `the new instance holds ${sandbox.stats().wasmMemoryBytes} bytes`);
  });

  test("a caught out-of-memory error still ends the run with E_SANDBOX_MEMORY", async () => {
    const out = await sandbox.run(job("const keep = [];\ntry { while (true) keep.push(new Uint8Array(1048576)); } catch {}\nreturn keep.length", { memoryMb: 8 }));
    failedWith(out, "E_SANDBOX_MEMORY");
    assert.equal(value(await sandbox.run(job("3"))), 3);
  });

  // 2,000 runs take seconds; the timeout is generous so that a slow machine does not fail it.
  test("2,000 runs leave no runtime alive and do not grow the WebAssembly memory", { timeout: 120_000 }, async () => {
    const big = "z".repeat(16_384);
    const workload = (i: number): SandboxRun =>
      job(
        [
          "const echoed = await tools.echo({ i: context.i });",
          "console.log(echoed.length, context.i);",
          "try { await tools.fail({}); } catch (e) { console.warn(e.code); }",
          "if (context.i % 5 === 1) throw new RangeError('five');",
          "if (context.i % 5 === 2) return new Map();",
          "if (context.i % 5 === 3) await tools.fail({});",
          "return { echoed, i: context.i };",
        ].join("\n"),
        {
          context: { i },
          maxLogBytes: 100,
          callTool: (name) =>
            name === "echo" ? Promise.resolve(big) : Promise.reject(new KeelError("E_TOOL_FAILED", "Tool \"fail\" failed")),
        },
      );
    for (let i = 0; i < 50; i++) await sandbox.run(workload(i));
    const warm = sandbox.stats();
    const codes = new Map<string, number>();
    for (let i = 0; i < 2_000; i++) {
      const out = await sandbox.run(workload(i));
      const code = out.error?.code ?? "ok";
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(codes), {
      ok: 800,
      E_SANDBOX_CODE_FAILED: 400,
      E_SANDBOX_RESULT_INVALID: 400,
      E_TOOL_FAILED: 400,
    });
    const now = sandbox.stats();
    assert.equal(now.liveRuntimes, 0);
    assert.equal(now.instances, warm.instances, "no run should have replaced the instance");
    assert.equal(now.wasmMemoryBytes, warm.wasmMemoryBytes, "the WebAssembly memory grew over 2,000 runs");
  });

  test("an abort while the code awaits a tool ends the run with E_SANDBOX_ABORTED", async () => {
    const controller = new AbortController();
    const out = await sandbox.run(job("await tools.hang({}); return 'resumed'", {
      signal: controller.signal,
      timeoutMs: 60_000,
      callTool: () => {
        controller.abort();
        return new Promise(() => {});
      },
    }));
    failedWith(out, "E_SANDBOX_ABORTED");
    assert.equal(sandbox.stats().liveRuntimes, 0);
  });

  test("a signal aborted before the run starts ends it at once", async () => {
    failedWith(await sandbox.run(job("while (true) {}", { signal: AbortSignal.abort(), timeoutMs: 60_000 })), "E_SANDBOX_ABORTED");
  });

  test("a tool that never answers ends the run at its deadline", async () => {
    const out = await sandbox.run(job("await tools.hang({}); return 'resumed'", { timeoutMs: 200, callTool: () => new Promise(() => {}) }));
    assert.match(failedWith(out, "E_SANDBOX_TIMEOUT"), /200 ms/);
  });

  test("a tool error keeps its code when rethrown, and the code cannot forge one", async () => {
    const fail = () => Promise.reject(new KeelError("E_TOOL_FAILED", "Tool \"x\" broke", { details: { tool: "x" } }));
    const rethrown = await sandbox.run(job("try { await tools.x({}); } catch (e) { e.code = 'E_OTHER'; throw e; }", { callTool: fail }));
    assert.equal(failedWith(rethrown, "E_TOOL_FAILED"), "Tool \"x\" broke");
    assert.deepEqual(rethrown.error?.details, { tool: "x" });
    const forged = await sandbox.run(job("const e = new Error('fake'); e.code = 'E_SANDBOX_TOOL_DENIED'; throw e;"));
    assert.equal(failedWith(forged, "E_SANDBOX_CODE_FAILED"), "fake");
  });

  test("a result that is not JSON data is named by its path", async () => {
    const out = await sandbox.run(job("return { rows: [1, { when: new Date(0) }] }"));
    assert.match(failedWith(out, "E_SANDBOX_RESULT_INVALID"), /result\.rows\[1\]\.when is a Date/);
    assert.deepEqual(out.error?.details, { path: "result.rows[1].when", found: "a Date" });
    const trapped = await sandbox.run(job("return { p: new Proxy({}, { ownKeys() { throw new Error('trap'); } }) }"));
    assert.match(failedWith(trapped, "E_SANDBOX_RESULT_INVALID"), /result\.p is a value that could not be read \(trap\)/);
    assert.deepEqual(value(await sandbox.run(job("return { a: undefined, b: [null, undefined] }"))), { b: [null, null] });
  });

  test("`await tools` and `tools.then` call no tool", async () => {
    let calls = 0;
    const out = await sandbox.run(job("return [typeof (await tools), typeof tools.then, typeof codemode.then]", {
      callTool: () => {
        calls++;
        return Promise.resolve(1);
      },
    }));
    assert.deepEqual(value(out), ["object", "undefined", "undefined"]);
    assert.equal(calls, 0);
  });

  test("inside there are only ECMAScript globals besides tools, codemode, context and console", async () => {
    const names = value(await sandbox.run(job("return Object.getOwnPropertyNames(globalThis)"))) as string[];
    for (const ours of ["tools", "codemode", "context", "console"]) assert.ok(names.includes(ours), ours);
    for (const host of ["InternalError", "print", "std", "os", "scriptArgs", "setTimeout", "queueMicrotask"]) {
      assert.ok(!names.includes(host), `${host} is reachable`);
    }
    assert.equal(value(await sandbox.run(job("tools === codemode && Object.isFrozen(console)"))), true);
  });

  test("close() ends a run waiting on a tool and refuses later runs with E_SANDBOX_CLOSED", async () => {
    const own = createQuickJsSandbox();
    let called!: () => void;
    const toolCalled = new Promise<void>((resolve) => {
      called = resolve;
    });
    const running = own.run(job("await tools.hang({})", {
      callTool: () => {
        called();
        return new Promise(() => {});
      },
    }));
    await toolCalled;
    await own.close();
    await rejectsWith(running, "E_SANDBOX_CLOSED");
    await rejectsWith(own.run(job("1")), "E_SANDBOX_CLOSED");
    assert.equal(own.stats().liveRuntimes, 0);
  });
});
