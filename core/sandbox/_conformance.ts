/**
 * The sandbox conformance suite: every {@link SandboxBackend}'s test calls
 * `testSandbox(name, create)`. It drives the backend through {@link createCodeExecutor} with a real
 * tool registry, so it checks the contract as users meet it: results, logs, tools, limits, and
 * the attacks every backend must turn away (escapes, pollution between runs, runaway code).
 * Backend-specific attacks (files, network, processes) live in each backend's own tests.
 * @module
 */

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createToolRegistry, type ToolRegistry } from "../tools/registry.ts";
import { type CodeExecutor, createCodeExecutor, type ExecuteResult, type SandboxBackend } from "./sandbox.ts";

function tools(): ToolRegistry {
  const registry = createToolRegistry();
  registry.register({
    name: "add",
    description: "Adds two numbers",
    inputSchema: {
      type: "object",
      properties: { a: { type: "number" }, b: { type: "number" } },
      required: ["a", "b"],
      additionalProperties: false,
    },
    outputSchema: { type: "number" },
    run: ({ a, b }: { a: number; b: number }) => a + b,
  });
  registry.register({
    name: "whoami",
    description: "The caller's tenant, from the runtime context",
    inputSchema: { type: "object" },
    run: (_: unknown, { context, correlationId }) => ({ tenant: context.tenant, correlationId }),
  });
  registry.register({
    name: "fail",
    description: "Always throws",
    inputSchema: { type: "object" },
    run: () => {
      throw new Error("tool broke");
    },
  });
  registry.register({
    name: "secret",
    description: "Not for sandboxed code",
    inputSchema: { type: "object" },
    run: () => "the secret",
  });
  return registry;
}

function ok(out: ExecuteResult): unknown {
  assert.equal(out.error, undefined, `expected success, got ${JSON.stringify(out.error)}`);
  return out.result;
}

function failed(out: ExecuteResult, code: string): string {
  assert.ok(out.error, `expected ${code}, got result ${JSON.stringify(out.result)}`);
  assert.equal(out.error.code, code, out.error.message);
  assert.equal(out.result, undefined);
  return out.error.message;
}

/** Registers the sandbox contract tests for one backend; `create` returns a fresh backend. */
export function testSandbox(name: string, create: () => SandboxBackend | Promise<SandboxBackend>): void {
  describe(`Sandbox conformance: ${name}`, () => {
    let backend: SandboxBackend;
    let exec: CodeExecutor;
    const safe = ["add", "whoami", "fail"];
    before(async () => {
      backend = await create();
      exec = createCodeExecutor({ tools: tools(), backend });
    });
    after(async () => {
      await exec.close();
    });
    const run = (code: string, options: Parameters<CodeExecutor["execute"]>[1] = {}) =>
      exec.execute(code, { tools: safe, timeoutMs: 10_000, ...options });

    test("returns the value of an expression, a body's return, and a function's result", async () => {
      assert.equal(ok(await run("2 + 2")), 4);
      assert.deepEqual(ok(await run("const x = [1, 'a', null, { b: true }];\nreturn { x };")), { x: [1, "a", null, { b: true }] });
      assert.equal(ok(await run("async () => 'fn'")), "fn");
      const out = await run("return undefined");
      assert.equal(out.error, undefined);
      assert.ok(!("result" in out));
      assert.equal(out.sandbox, backend.name);
      assert.ok(out.durationMs >= 0);
      assert.match(out.correlationId, /^exec-[0-9a-z]+-[0-9a-z]+$/);
    });

    test("Date and Math.random work, as model-written code expects", async () => {
      const out = await run("const t = Date.now(); const r = Math.random(); return [typeof t, t > 1.7e12, r >= 0 && r < 1, new Date(0).toISOString()]");
      assert.deepEqual(ok(out), ["number", true, true, "1970-01-01T00:00:00.000Z"]);
    });

    test("collects console output in order, with warn and error marked", async () => {
      const out = await run("console.log('a', 1, { b: 2 }); console.warn('w'); console.error('e'); console.info('i'); return 0");
      assert.deepEqual(out.logs, ["a 1 {\"b\":2}", "[warn] w", "[error] e", "i"]);
      assert.equal(out.logsTruncated, false);
    });

    test("calls tools through `tools` and `codemode`, with the host's context and correlation id", async () => {
      const out = await run(
        "const a = await tools.add({ a: 2, b: 3 }); const b = await codemode.add({ a: a, b: 1 }); const w = await tools.whoami({}); return [a, b, w]",
        { context: { tenant: "t-1" }, correlationId: "req-42" },
      );
      assert.deepEqual(ok(out), [5, 6, { tenant: "t-1", correlationId: "req-42" }]);
      assert.equal(out.toolCalls, 3);
    });

    test("the runtime context is readable and cannot be changed by the code", async () => {
      const out = await run(
        "try { context.tenant = 'evil'; } catch {}\ntry { context.nested.id = 9; } catch {}\ntry { delete context.tenant; } catch {}\nconst w = await tools.whoami({});\nreturn [context.tenant, context.nested.id, w.tenant, Object.isFrozen(context)]",
        { context: { tenant: "t-1", nested: { id: 1 } } },
      );
      assert.deepEqual(ok(out), ["t-1", 1, "t-1", true]);
    });

    test("a tool error reaches the code as a catchable error with its code", async () => {
      const out = await run(
        "const seen = [];\nfor (const call of [() => tools.add({ a: 'x', b: 1 }), () => tools.fail({}), () => tools.secret({}), () => tools.nope({})]) {\n  try { await call(); seen.push('no error'); } catch (e) { seen.push(e.code); }\n}\nreturn seen",
      );
      assert.deepEqual(ok(out), ["E_TOOL_INPUT_INVALID", "E_TOOL_FAILED", "E_SANDBOX_TOOL_DENIED", "E_SANDBOX_TOOL_DENIED"]);
    });

    test("tool input that is not JSON data is a catchable E_TOOL_INPUT_INVALID and never reaches the tool", async () => {
      const out = await run(
        "const cyclic = { a: 1, b: 2 }; cyclic.self = cyclic;\nconst seen = [];\nfor (const input of [cyclic, { a: 1n, b: 2 }]) {\n  try { await tools.add(input); seen.push('no error'); } catch (e) { seen.push(e.code); }\n}\nreturn seen",
      );
      assert.deepEqual(ok(out), ["E_TOOL_INPUT_INVALID", "E_TOOL_INPUT_INVALID"]);
      assert.equal(out.toolCalls, 0);
      const uncaught = await run("const i = { a: 1, b: 2 }; i.self = i; return await tools.add(i)");
      assert.match(failed(uncaught, "E_TOOL_INPUT_INVALID"), /"add" is not JSON data/);
      assert.equal(uncaught.toolCalls, 0);
    });

    test("an uncaught tool error fails the run with the tool's code", async () => {
      const message = failed(await run("await tools.add({ a: 1 })"), "E_TOOL_INPUT_INVALID");
      assert.match(message, /"b"/);
      failed(await run("await tools.secret({})"), "E_SANDBOX_TOOL_DENIED");
    });

    test("meta-tools list and describe only the allowed tools", async () => {
      const out = await run("const list = await tools.__list__({}); const s = await tools.__schema__({ name: 'add' }); return [list.map((t) => t.name), s.inputSchema.required]");
      assert.deepEqual(ok(out), [["add", "fail", "whoami"], ["a", "b"]]);
      failed(await run("await tools.__schema__({ name: 'secret' })"), "E_SANDBOX_TOOL_DENIED");
    });

    test("10,000 tool calls stop at the call limit", async () => {
      const out = await run("for (let i = 0; i < 10000; i++) await tools.add({ a: i, b: 1 });\nreturn 'done'", { maxToolCalls: 100 });
      failed(out, "E_SANDBOX_TOOL_LIMIT");
      assert.equal(out.toolCalls, 101);
    });

    test("an error the code throws is E_SANDBOX_CODE_FAILED with its name and message", async () => {
      const out = await run("throw new TypeError('bad thing')");
      assert.equal(failed(out, "E_SANDBOX_CODE_FAILED"), "bad thing");
      assert.equal(out.error?.name, "TypeError");
      assert.equal(failed(await run("throw 'a string'"), "E_SANDBOX_CODE_FAILED"), "a string");
    });

    test("code that does not compile is E_SANDBOX_CODE_INVALID", async () => {
      failed(await run("return (1 +;"), "E_SANDBOX_CODE_INVALID");
      failed(await run("import fs from 'node:fs';\nreturn fs"), "E_SANDBOX_CODE_INVALID");
    });

    test("a result that is not JSON data is E_SANDBOX_RESULT_INVALID", async () => {
      for (const code of ["return () => 1", "return 10n", "const a = {}; a.self = a; return a", "return new Map()", "return { n: NaN }", "return Symbol('s')"]) {
        failed(await run(code), "E_SANDBOX_RESULT_INVALID");
      }
    });

    test("a result follows JSON: undefined is dropped from objects and null in arrays, symbol keys are skipped", async () => {
      assert.deepEqual(ok(await run("return { a: undefined, b: [undefined, 1], c: [, 2], [Symbol('s')]: 3 }")), { b: [null, 1], c: [null, 2] });
      assert.deepEqual(ok(await run("return [undefined]")), [null]);
    });

    test("a result that is data only through a getter, a class or a proxy is E_SANDBOX_RESULT_INVALID, naming where", async () => {
      const getter = "Object.defineProperty({}, 'at', { get() { return 1; }, enumerable: true })";
      assert.match(failed(await run(`return { rows: [1, { when: ${getter} }] }`), "E_SANDBOX_RESULT_INVALID"), /result\.rows\[1\]\.when\.at is a getter/);
      assert.match(failed(await run("return [Object.defineProperty([], 0, { get() { return 1; }, enumerable: true })]"), "E_SANDBOX_RESULT_INVALID"), /result\[0\]\[0\] is a getter/);
      assert.match(failed(await run("return { p: new (class Point { x = 1 })() }"), "E_SANDBOX_RESULT_INVALID"), /result\.p is a Point/);
      for (
        const code of [
          "return new Proxy({}, { getPrototypeOf() { return Object.prototype; }, ownKeys() { throw new Error('trap'); } })",
          "return new Proxy({ x: 1 }, { getOwnPropertyDescriptor() { throw new Error('trap'); } })",
          "return { toJSON() { return 1; } }",
        ]
      ) {
        failed(await run(code), "E_SANDBOX_RESULT_INVALID");
      }
    });

    test("no host object is reachable: Deno, Bun, process, fetch, require, host globals", async () => {
      const out = await run(
        "return [typeof Deno, typeof Bun, typeof process, typeof fetch, typeof require, typeof XMLHttpRequest, typeof WebSocket, typeof Worker, typeof navigator, typeof setTimeout === 'function' ? 'timer' : 'none']",
      );
      const names = ok(out) as string[];
      assert.deepEqual(names.slice(0, 9), Array(9).fill("undefined"));
    });

    test("eval, Function and constructors do not lead out", async () => {
      const out = await run(
        `const probes = [
          () => eval('typeof Deno'),
          () => Function('return typeof Deno')(),
          () => (0, eval)('typeof process'),
          () => ({}).constructor.constructor('return typeof Deno')(),
          () => tools.add.constructor('return typeof Deno')(),
          () => (async () => {}).constructor('return typeof Deno')(),
          () => Object.getPrototypeOf(function* () {}).constructor('return typeof Deno')().next().value,
          () => console.log.constructor('return typeof Deno')(),
          () => (function () { return typeof this; })(),
        ];
        const seen = [];
        for (const p of probes) { try { const v = await p(); seen.push(v === 'object' ? 'object' : v); } catch { seen.push('threw'); } }
        return seen;`,
      );
      const seen = ok(out) as string[];
      for (const [i, v] of seen.entries()) {
        assert.ok(v === "undefined" || v === "threw" || (i === 8 && v === "undefined"), `probe ${i} saw ${v}`);
      }
    });

    test("module imports are refused: dynamic, data: URL", async () => {
      for (const code of ["return await import('data:text/javascript,export default 1')", "const m = 'node:fs'; return await import(m)"]) {
        const out = await run(code);
        assert.ok(out.error, `import ran: ${JSON.stringify(out.result)}`);
        assert.ok(["E_SANDBOX_CODE_INVALID", "E_SANDBOX_CODE_FAILED"].includes(out.error.code), out.error.code);
      }
    });

    test("prototype pollution and globals do not reach the next execution or the host", async () => {
      await run(
        "try { Object.prototype.polluted = 'yes'; } catch {}\ntry { Array.prototype.map = () => 'hacked'; } catch {}\ntry { JSON.stringify = () => 'hacked'; } catch {}\nglobalThis.leak = 1; return 0",
      );
      const out = await run("return [({}).polluted === undefined, [1].map((x) => x + 1)[0], JSON.stringify({ a: 1 }), typeof leak]");
      assert.deepEqual(ok(out), [true, 2, "{\"a\":1}", "undefined"]);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });

    test("an endless loop is stopped at its deadline, and the next execution runs", async () => {
      const out = await run("while (true) {}", { timeoutMs: 300 });
      failed(out, "E_SANDBOX_TIMEOUT");
      failed(await run("await new Promise(() => {})", { timeoutMs: 300 }), "E_SANDBOX_TIMEOUT");
      assert.equal(ok(await run("1 + 1")), 2);
    });

    test("allocating until it dies is E_SANDBOX_MEMORY, and the next execution runs", async () => {
      const out = await run("const keep = []; while (true) keep.push(new Array(100000).fill({ a: 1 }));", { memoryMb: 32, timeoutMs: 30_000 });
      failed(out, "E_SANDBOX_MEMORY");
      const buffers = await run("const keep = []; while (true) keep.push(new Uint8Array(16 * 1048576).fill(1));", { memoryMb: 32, timeoutMs: 30_000 });
      failed(buffers, "E_SANDBOX_MEMORY");
      assert.equal(ok(await run("1 + 1")), 2);
    });

    test("infinite recursion fails the run, not the sandbox", async () => {
      const out = await run("const f = (n) => f(n + 1) + 1; return f(0)");
      assert.ok(out.error && ["E_SANDBOX_CODE_FAILED", "E_SANDBOX_MEMORY"].includes(out.error.code), JSON.stringify(out.error));
      assert.equal(ok(await run("1 + 1")), 2);
    });

    test("printing 100 MB keeps only the first maxLogBytes characters", async () => {
      const out = await run("const s = 'x'.repeat(1048576); for (let i = 0; i < 100; i++) console.log(s); return 'printed'", { maxLogBytes: 2 * 1048576, timeoutMs: 30_000 });
      assert.equal(ok(out), "printed");
      assert.equal(out.logsTruncated, true);
      const total = out.logs.reduce((n, l) => n + l.length, 0);
      assert.ok(total <= 2 * 1048576, `kept ${total} characters`);
      assert.ok(total >= 1048576, `kept only ${total} characters`);
    });

    // Aborting code stuck in a synchronous loop needs another thread to notice: the process
    // backend tests that on its own; QuickJS runs on the host's thread, so it can stop only code
    // that awaits (a synchronous loop there ends at its deadline instead).
    test("an execution aborted while it awaits ends with E_SANDBOX_ABORTED", async () => {
      const controller = new AbortController();
      const pending = run("await new Promise(() => {})", { signal: controller.signal, timeoutMs: 30_000 });
      setTimeout(() => controller.abort(), 100);
      failed(await pending, "E_SANDBOX_ABORTED");
      assert.equal(ok(await run("3")), 3);
    });

    test("concurrent executions keep their own context and results", async () => {
      const outs = await Promise.all(
        Array.from({ length: 12 }, (_, i) => run("const w = await tools.whoami({}); return [context.i, w.tenant]", { context: { i, tenant: `t${i}` } })),
      );
      assert.deepEqual(outs.map(ok), Array.from({ length: 12 }, (_, i) => [i, `t${i}`]));
    });
  });
}
