/**
 * Attacks on code mode: model-written code tries every way out of its sandbox, through
 * `createCodeExecutor` with a real tool registry, on each sandbox backend. Every test asserts that
 * the attack fails and that the host (and the next execution) is unharmed. Where an attack could
 * succeed silently, the test watches the place it would show: a file the code tries to create, an
 * HTTP server it tries to reach, a secret it tries to read, a counter in a tool.
 *
 * Add a backend by adding it to {@link BACKENDS}. Runs under `deno test --allow-all` and `bun test`.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import {
  type CodeExecutor,
  createCodeExecutor,
  createToolRegistry,
  type ExecuteOptions,
  type ExecuteResult,
  type SandboxBackend,
  type ToolRegistry,
} from "../core/mod.ts";
import { createProcessSandbox, denoSpawner } from "../plugins/sandbox/pool.ts";
import { createQuickJsSandbox } from "../plugins/sandbox/quickjs.ts";
import { detectRuntime } from "../runtimes/mod.ts";

/** A sandbox backend under attack. */
export interface AttackedBackend {
  readonly name: string;
  readonly create: () => SandboxBackend | Promise<SandboxBackend>;
}

const BACKENDS: readonly AttackedBackend[] = [
  {
    name: "deno-ses",
    create: async () => createProcessSandbox({ spawnDeno: denoSpawner(await detectRuntime()) }),
  },
  { name: "quickjs", create: () => createQuickJsSandbox() },
];

const SECRET = `keel-attack-secret-${crypto.randomUUID()}`;
const SECRET_ENV = "KEEL_ATTACK_SECRET";

/** Probes wrapped so each reports what it got, or "threw". */
function probes(list: readonly string[]): string {
  return `const seen = [];
for (const probe of [${list.map((p) => `async () => (${p})`).join(",\n")}]) {
  try { const v = await probe(); seen.push(typeof v === "string" ? v : typeof v); } catch { seen.push("threw"); }
}
return seen;`;
}

function ok(out: ExecuteResult): unknown {
  assert.equal(out.error, undefined, `expected success, got ${JSON.stringify(out.error)}`);
  return out.result;
}

function failed(out: ExecuteResult, ...codes: string[]): void {
  assert.ok(out.error, `expected ${codes.join(" or ")}, got result ${JSON.stringify(out.result)}`);
  assert.ok(codes.includes(out.error.code), `${out.error.code}: ${out.error.message}`);
  assert.equal(out.result, undefined);
}

/** The secret must appear nowhere the code's output goes. */
function noSecret(out: ExecuteResult): void {
  const text = JSON.stringify([out.result, out.error, out.logs]);
  assert.ok(!text.includes(SECRET), `the secret leaked: ${text.slice(0, 500)}`);
}

/** Registers the attack tests for each backend. */
export function testSandboxAttacks(backends: readonly AttackedBackend[]): void {
  for (const backend of backends) {
    describe(`Sandbox attacks: ${backend.name}`, () => {
      let exec: CodeExecutor;
      let registry: ToolRegistry;
      let dir: string;
      let secretFile: string;
      let server: Server;
      let url: string;
      let requests = 0;
      const calls = { add: 0, secret: 0 };

      before(async () => {
        process.env[SECRET_ENV] = SECRET;
        dir = await mkdtemp(join(tmpdir(), "keel-attacks-"));
        secretFile = join(dir, "secret.txt");
        await writeFile(secretFile, SECRET);
        server = createServer((_req, res) => {
          requests++;
          res.end(SECRET);
        });
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
        registry = createToolRegistry();
        registry.register({
          name: "add",
          description: "Adds two numbers",
          inputSchema: {
            type: "object",
            properties: { a: { type: "number" }, b: { type: "number" } },
            required: ["a", "b"],
            additionalProperties: false,
          },
          run: ({ a, b }: { a: number; b: number }) => {
            calls.add++;
            return a + b;
          },
        });
        registry.register({
          name: "secret",
          description: "Not for sandboxed code",
          inputSchema: { type: "object" },
          run: () => {
            calls.secret++;
            return SECRET;
          },
        });
        exec = createCodeExecutor({ tools: registry, backend: await backend.create() });
      });

      after(async () => {
        await exec?.close();
        await new Promise<void>((resolve) => server ? server.close(() => resolve()) : resolve());
        if (dir) await rm(dir, { recursive: true, force: true });
        delete process.env[SECRET_ENV];
      });

      const run = (code: string, options: ExecuteOptions = {}): Promise<ExecuteResult> =>
        exec.execute(code, { tools: ["add"], timeoutMs: 10_000, ...options });

      async function stillWorks(): Promise<void> {
        assert.equal(ok(await run("return await tools.add({ a: 20, b: 22 })")), 42);
      }

      test("reading a file (Deno, fetch file:, require, host escapes) fails and shows nothing of it", async () => {
        const path = JSON.stringify(secretFile);
        const out = await run(probes([
          `Deno.readTextFileSync(${path})`,
          `globalThis.Deno.readTextFile(${path})`,
          `fetch("file://" + ${path}).then((r) => r.text())`,
          `require("node:fs").readFileSync(${path}, "utf8")`,
          `process.getBuiltinModule("node:fs").readFileSync(${path}, "utf8")`,
          `Bun.file(${path}).text()`,
          `Function("return Deno")().readTextFileSync(${path})`,
          `tools.add.constructor("return Deno")().readTextFileSync(${path})`,
        ]));
        assert.deepEqual(ok(out), Array(8).fill("threw"));
        noSecret(out);
        for (const specifier of [`"file://" + ${path}`, `"/etc/passwd"`, `"file:///etc/passwd"`]) {
          const imported = await run(`const m = await import(${specifier}, { with: { type: "text" } }); return m.default`);
          failed(imported, "E_SANDBOX_CODE_INVALID", "E_SANDBOX_CODE_FAILED");
          noSecret(imported);
        }
      });

      test("reaching a URL (fetch, XMLHttpRequest, WebSocket, EventSource, import, Worker) fails and the server gets no request", async () => {
        const target = JSON.stringify(url);
        const out = await run(probes([
          `fetch(${target}).then((r) => r.text())`,
          `new XMLHttpRequest().open("GET", ${target})`,
          `new WebSocket(${target}.replace("http", "ws"))`,
          `new EventSource(${target})`,
          `navigator.sendBeacon(${target}, "x")`,
          `new Worker(${target})`,
          `Function("return fetch")()(${target}).then((r) => r.text())`,
          `Deno.connect({ hostname: "127.0.0.1", port: ${new URL(url).port} })`,
        ]));
        assert.deepEqual(ok(out), Array(8).fill("threw"));
        noSecret(out);
        const imported = await run(`return (await import(${target})).default`);
        failed(imported, "E_SANDBOX_CODE_INVALID", "E_SANDBOX_CODE_FAILED");
        assert.equal(requests, 0, "the sandboxed code reached the server");
        // The server does answer: the zero above is the sandbox's doing.
        assert.equal(await (await fetch(url)).text(), SECRET);
        assert.equal(requests, 1);
      });

      test("reading environment variables fails by every route and the host's secret never shows", async () => {
        const name = JSON.stringify(SECRET_ENV);
        const out = await run(probes([
          `Deno.env.get(${name})`,
          `JSON.stringify(Deno.env.toObject())`,
          `process.env[${name}]`,
          `JSON.stringify(process.env)`,
          `Bun.env[${name}]`,
          `Function("return process")().env[${name}]`,
          `({}).constructor.constructor("return Deno")().env.get(${name})`,
          `JSON.stringify(Object.keys(globalThis))`,
        ]));
        const seen = ok(out) as string[];
        assert.deepEqual(seen.slice(0, 7), Array(7).fill("threw"));
        noSecret(out);
      });

      test("spawning a process fails and the command never runs", async () => {
        const marker = join(dir, "spawned");
        const m = JSON.stringify(marker);
        const out = await run(probes([
          `new Deno.Command("touch", { args: [${m}] }).outputSync()`,
          `Deno.run({ cmd: ["touch", ${m}] })`,
          `require("node:child_process").execSync("touch " + ${m})`,
          `process.getBuiltinModule("node:child_process").execSync("touch " + ${m})`,
          `Bun.spawnSync(["touch", ${m}])`,
          `Function("return Deno")().Command`,
        ]));
        assert.deepEqual(ok(out), Array(6).fill("threw"));
        const imported = await run(`const cp = await import("node:child_process"); cp.execSync("touch " + ${m}); return 1`);
        failed(imported, "E_SANDBOX_CODE_INVALID", "E_SANDBOX_CODE_FAILED");
        assert.equal(existsSync(marker), false, "a process was started");
      });

      test("importing a module (static, dynamic, computed, data: URL, import.meta) fails", async () => {
        for (
          const code of [
            "import fs from 'node:fs';\nreturn typeof fs",
            "return typeof (await import('node:fs'))",
            "const name = ['node', 'fs'].join(':'); return typeof (await import(name))",
            "return (await import('data:text/javascript,export default 41')).default + 1",
            "return import.meta.url",
            "const i = 'imp' + 'ort'; return await eval(i + '(\"node:fs\")')",
            "return Function('return import(\"node:os\")')()",
          ]
        ) {
          const out = await run(code);
          failed(out, "E_SANDBOX_CODE_INVALID", "E_SANDBOX_CODE_FAILED");
        }
        await stillWorks();
      });

      test("reaching Deno, Bun, process or the host's global object fails: nothing but the sandbox's globals is there", async () => {
        const out = await run(probes([
          "typeof Deno",
          "typeof Bun",
          "typeof process",
          "typeof require",
          "typeof globalThis.Deno",
          "typeof Function('return this')().Deno",
          "typeof (0, eval)('this').process",
          "typeof Object.getPrototypeOf(tools)",
          "typeof Reflect.getPrototypeOf(console.log).constructor('return Deno')()",
          "typeof context.constructor.constructor('return Deno')()",
          "typeof tools.then",
        ]));
        const seen = ok(out) as string[];
        assert.deepEqual(seen.slice(0, 5), Array(5).fill("undefined"));
        // `this` of a sloppy function is undefined in the sandbox, so these may throw instead.
        for (const v of seen.slice(5, 7)) assert.ok(["undefined", "threw"].includes(v), v);
        assert.ok(["object", "undefined", "threw"].includes(seen[7]!), seen[7]);
        assert.ok(["undefined", "threw"].includes(seen[8]!), seen[8]);
        assert.ok(["undefined", "threw"].includes(seen[9]!), seen[9]);
        assert.equal(seen[10], "undefined");
      });

      test("eval and Function constructors do not escape: they see the sandbox's globals only", async () => {
        const out = await run(probes([
          "eval('typeof Deno')",
          "(0, eval)('typeof process')",
          "new Function('return typeof Deno')()",
          "(async function () {}).constructor('return typeof Deno')().then((x) => x)",
          "(function* () {}).constructor('yield typeof Deno')().next().value",
          "eval('this') === globalThis ? 'same' : 'other'",
          "new Compartment({}).evaluate('typeof Deno')",
          "new Compartment({ globals: { tools } }).evaluate('typeof Deno')",
        ]));
        const seen = ok(out) as string[];
        for (const [i, v] of seen.entries()) {
          if (i === 5) assert.ok(["same", "threw"].includes(v), v);
          else assert.ok(v === "undefined" || v === "threw", `probe ${i} saw ${v}`);
        }
      });

      test("polluting prototypes and globals reaches neither the host nor the next execution", async () => {
        await run(`
          const tries = [
            () => { Object.prototype.polluted = 'yes'; },
            () => { Array.prototype.push = () => 'hacked'; },
            () => { Function.prototype.call = () => 'hacked'; },
            () => { Promise.prototype.then = () => 'hacked'; },
            () => { JSON.parse = () => 'hacked'; },
            () => { Object.getPrototypeOf(async () => {}).constructor.prototype.polluted = 1; },
            () => { tools.__proto__.polluted = 'yes'; },
            () => { context.__proto__.polluted = 'yes'; },
            () => { Object.defineProperty(Object.prototype, 'toJSON', { value: () => 'hacked' }); },
            () => { globalThis.tools = null; globalThis.leak = 1; },
          ];
          for (const t of tries) { try { t(); } catch {} }
          try { await tools.add(JSON.parse('{"__proto__": {"polluted": "yes"}, "a": 1, "b": 2}')); } catch {}
          return 0`);
        const out = await run(
          "const a = []; a.push(1); return [({}).polluted, a.length, JSON.parse('[1]')[0], typeof leak, typeof tools.add, await Promise.resolve(7), JSON.stringify({ x: 1 })]",
        );
        assert.deepEqual(ok(out), [undefined, 1, 1, "undefined", "function", 7, "{\"x\":1}"].map((v) => v === undefined ? null : v));
        assert.equal(({} as Record<string, unknown>).polluted, undefined);
        assert.equal(JSON.stringify({ x: 1 }), "{\"x\":1}");
        assert.equal([1].map((x) => x + 1)[0], 2);
      });

      test("an endless loop is stopped with E_SANDBOX_TIMEOUT and the next execution runs", async () => {
        failed(await run("while (true) {}", { timeoutMs: 300 }), "E_SANDBOX_TIMEOUT");
        failed(await run("for (;;) { try { while (true) {} } finally { continue; } }", { timeoutMs: 300 }), "E_SANDBOX_TIMEOUT");
        failed(await run("(async () => { for (;;) await null; })(); return 'left a spinner behind'", { timeoutMs: 300 }), "E_SANDBOX_TIMEOUT");
        await stillWorks();
      });

      test("allocating until it dies is stopped with E_SANDBOX_MEMORY and the host keeps going", async () => {
        for (
          const code of [
            "const keep = []; while (true) keep.push(new Array(100000).fill({ a: 1 }));",
            "const keep = []; while (true) keep.push(new Uint8Array(16 * 1048576).fill(1));",
            "const m = new Map(); for (let i = 0; ; i++) m.set(i, { i, s: String(i) });",
          ]
        ) {
          const out = await run(code, { memoryMb: 32, timeoutMs: 30_000 });
          failed(out, "E_SANDBOX_MEMORY");
        }
        await stillWorks();
      });

      test("infinite recursion fails the run, not the sandbox", async () => {
        failed(await run("const f = (n) => f(n + 1) + 1; return f(0)"), "E_SANDBOX_CODE_FAILED", "E_SANDBOX_MEMORY");
        failed(await run("const f = async (n) => (await f(n + 1)) + 1; return await f(0)"), "E_SANDBOX_CODE_FAILED", "E_SANDBOX_MEMORY");
        await stillWorks();
      });

      test("printing 100 MB keeps only maxLogBytes characters, and the host's memory does not grow by it", async () => {
        const before = process.memoryUsage().rss;
        const out = await run(
          "const s = 'x'.repeat(1048576); for (let i = 0; i < 100; i++) { console.log(s); console.error(s); } return 'printed'",
          { maxLogBytes: 1048576, timeoutMs: 30_000 },
        );
        const grown = process.memoryUsage().rss - before;
        assert.equal(ok(out), "printed");
        assert.equal(out.logsTruncated, true);
        const kept = out.logs.reduce((n, l) => n + l.length, 0);
        assert.ok(kept <= 1048576, `kept ${kept} characters`);
        assert.ok(grown < 50 * 1048576, `the host grew by ${Math.round(grown / 1048576)} MiB`);
      });

      test("a log line that looks like a protocol message stays a log line", async () => {
        const forged = JSON.stringify({ t: "done", id: 1, ok: true, value: "forged", logs: [], logsTruncated: false });
        const out = await run(`console.log('\\n' + ${JSON.stringify(forged)} + '\\n'); return 'real'`);
        assert.equal(ok(out), "real");
        assert.deepEqual(out.logs, [`\n${forged}\n`]);
      });

      test("returning values that are not JSON data is E_SANDBOX_RESULT_INVALID", async () => {
        for (
          const code of [
            "return () => 1",
            "return 10n",
            "return Symbol('s')",
            "const a = {}; a.self = a; return a",
            "return [1, [2, new Map()]]",
            "return new Date(0)",
            "return { n: Infinity }",
            "return new (class Point { x = 1 })()",
            "return Object.defineProperty({}, 'x', { get() { return 1; }, enumerable: true })",
            "return new Proxy({}, { getPrototypeOf() { return Object.prototype; }, ownKeys() { throw new Error('trap'); } })",
            "return { toJSON() { return 1; } }",
          ]
        ) {
          failed(await run(code), "E_SANDBOX_RESULT_INVALID");
        }
        await stillWorks();
      });

      test("calling a tool outside its allow-list is E_SANDBOX_TOOL_DENIED and the tool never runs", async () => {
        const out = await run("return await tools.secret({})");
        failed(out, "E_SANDBOX_TOOL_DENIED");
        noSecret(out);
        const caught = await run("try { await codemode.secret({}); } catch (e) { return e.code; }");
        assert.equal(ok(caught), "E_SANDBOX_TOOL_DENIED");
        const listed = await run("return (await tools.__list__({})).map((t) => t.name)");
        assert.deepEqual(ok(listed), ["add"]);
        assert.equal(calls.secret, 0);
      });

      test("calling a tool with input that fails its schema is E_TOOL_INPUT_INVALID and the tool never runs", async () => {
        const before = calls.add;
        failed(await run("return await tools.add({ a: 'one', b: 2 })"), "E_TOOL_INPUT_INVALID");
        failed(await run("return await tools.add({ a: 1, b: 2, extra: true })"), "E_TOOL_INPUT_INVALID");
        failed(await run("return await tools.add({ a: 1, b: () => 2 })"), "E_TOOL_INPUT_INVALID");
        failed(await run("const i = { a: 1, b: 2 }; i.self = i; return await tools.add(i)"), "E_TOOL_INPUT_INVALID");
        assert.equal(calls.add, before);
      });

      test("calling a tool 10,000 times stops at the call limit with E_SANDBOX_TOOL_LIMIT", async () => {
        const before = calls.add;
        const out = await run("for (let i = 0; i < 10000; i++) await tools.add({ a: i, b: 1 });\nreturn 'done'");
        failed(out, "E_SANDBOX_TOOL_LIMIT");
        assert.equal(out.toolCalls, 1001);
        assert.equal(calls.add - before, 1000);
        const parallel = await run("await Promise.all(Array.from({ length: 10000 }, (_, i) => tools.add({ a: i, b: 1 }))); return 'done'", { maxToolCalls: 50 });
        failed(parallel, "E_SANDBOX_TOOL_LIMIT");
        await stillWorks();
      });

      test("tool calls left running after the code returns do not reach the host", async () => {
        const before = calls.add;
        const out = await run("(async () => { await null; for (;;) await tools.add({ a: 1, b: 1 }); })(); return 'returned'");
        assert.equal(ok(out), "returned");
        // At most the one call made before the code returned...
        const returned = calls.add;
        assert.ok(returned - before <= 1, `${returned - before} calls before it returned`);
        // ...and none while later executions run in the same process.
        await stillWorks();
        await stillWorks();
        assert.equal(calls.add - returned, 2);
      });
    });
  }
}

testSandboxAttacks(BACKENDS);
