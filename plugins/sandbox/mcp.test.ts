import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client";
// The SDK's "./*" export maps types to "<path>.js.d.ts", which does not exist, so these subpaths
// name their declaration files themselves.
// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/inMemory.d.ts"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.d.ts"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/types.d.ts"
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { type CodeExecutor, createCodeExecutor, createToolRegistry, type Runtime, type Server, type ToolRegistry } from "../../core/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import { createMcpCodeServer, createMcpHttpHandler, EXECUTE_CODE_TOOL, type McpHttpHandler } from "./mcp.ts";
import { createSandbox } from "./mod.ts";

/** A sandbox run starts a process (or loads WASM) the first time. */
const SLOW = { timeout: 60_000 };

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
    name: "shout",
    description: "Upper-cases a string",
    inputSchema: { type: "string" },
    run: (text: string) => text.toUpperCase(),
  });
  registry.register({
    name: "whoami",
    description: "The caller, from the runtime context",
    inputSchema: { type: "object" },
    outputSchema: { type: "object", properties: { userId: { type: "string" } }, required: ["userId"] },
    run: (_: unknown, { context }) => ({ userId: context.userId }),
  });
  registry.register({
    name: "fail",
    description: "Always throws",
    inputSchema: { type: "object" },
    run: () => {
      throw new Error("the backend is down");
    },
  });
  return registry;
}

interface ToolResult {
  readonly isError?: boolean;
  readonly content: readonly { type: string; text?: string }[];
  readonly structuredContent?: Record<string, unknown>;
}

function firstText(result: ToolResult): string {
  const block = result.content[0];
  assert.equal(block?.type, "text");
  return block.text!;
}

let runtime: Runtime;
let registry: ToolRegistry;
let executor: CodeExecutor;

before(async () => {
  runtime = await detectRuntime();
  registry = tools();
  executor = createCodeExecutor({ tools: registry, backend: await createSandbox({ runtime }) });
});

after(async () => {
  await executor.close();
});

describe("createMcpCodeServer over an in-memory transport", () => {
  let client: Client;
  const call = async (name: string, args: Record<string, unknown>) => (await client.callTool({ name, arguments: args })) as ToolResult;

  before(async () => {
    const server = createMcpCodeServer({ tools: registry, executor, context: { userId: "u1" } });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    client = new Client({ name: "test", version: "1.0.0" });
    await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
  });

  after(async () => {
    await client.close();
  });

  test("lists every registered tool and execute_code, whose description declares the tools", async () => {
    const { tools: listed } = await client.listTools();
    assert.deepEqual(listed.map((t) => t.name), ["add", "fail", "shout", "whoami", EXECUTE_CODE_TOOL]);
    const add = listed.find((t) => t.name === "add")!;
    assert.equal(add.description, "Adds two numbers");
    assert.deepEqual(add.inputSchema.required, ["a", "b"]);
    // MCP wants objects: a number output is offered as { result }, a string input as { input }.
    assert.deepEqual(add.outputSchema, { type: "object", properties: { result: { type: "number" } }, required: ["result"] });
    assert.deepEqual(listed.find((t) => t.name === "shout")!.inputSchema.properties, { input: { type: "string" } });
    const exec = listed.find((t) => t.name === EXECUTE_CODE_TOOL)!;
    assert.deepEqual(exec.inputSchema.required, ["code"]);
    assert.match(exec.description!, /add\(input: \{ a: number; b: number \}\): Promise<number>;/);
    assert.match(exec.description!, /whoami\(input: [^\n]*\): Promise<\{ userId: string \}>;/);
    assert.match(exec.description!, /tools\.__list__\(\)/);
  });

  test("calls a registered tool: text and structured content", async () => {
    const sum = await call("add", { a: 2, b: 3 });
    assert.equal(sum.isError, undefined);
    assert.equal(firstText(sum), "5");
    assert.deepEqual(sum.structuredContent, { result: 5 });
    const me = await call("whoami", {});
    assert.deepEqual(me.structuredContent, { userId: "u1" });
    const loud = await call("shout", { input: "hi" });
    assert.equal(firstText(loud), "HI");
  });

  test("input that fails the schema, and a tool that throws, are isError results with the code", async () => {
    const bad = await call("add", { a: "two", b: 3 });
    assert.equal(bad.isError, true);
    assert.match(firstText(bad), /^E_TOOL_INPUT_INVALID: Input to tool "add" does not match its schema/);
    assert.match(firstText(bad), /\/a/);
    const failed = await call("fail", {});
    assert.equal(failed.isError, true);
    assert.equal(firstText(failed), 'E_TOOL_FAILED: Tool "fail" failed: the backend is down');
  });

  test("an unknown tool is a JSON-RPC InvalidParams error carrying E_TOOL_UNKNOWN", async () => {
    await assert.rejects(call("nope", {}), (e: unknown) => {
      assert.ok(e instanceof McpError, String(e));
      assert.equal(e.code, -32602);
      assert.match(e.message, /E_TOOL_UNKNOWN: No tool is named "nope"; this server has: "add", "execute_code"/);
      return true;
    });
  });

  test("execute_code runs code that calls tools, with logs and the context", SLOW, async () => {
    const out = await call(EXECUTE_CODE_TOOL, {
      code: 'const s = await tools.add({ a: 20, b: 22 });\nconsole.log("sum", s);\nconst me = await tools.whoami({});\nreturn { s, user: me.userId, ctx: context.userId };',
    });
    assert.equal(out.isError, undefined, firstText(out));
    const result = out.structuredContent!;
    assert.deepEqual(result.result, { s: 42, user: "u1", ctx: "u1" });
    assert.deepEqual(result.logs, ["sum 42"]);
    assert.equal(result.toolCalls, 2);
    assert.equal(typeof result.sandbox, "string");
    assert.deepEqual(JSON.parse(firstText(out)), result);
  });

  test("execute_code whose code throws is an isError result with the code and the logs", SLOW, async () => {
    const out = await call(EXECUTE_CODE_TOOL, { code: 'console.log("before");\nthrow new Error("bad plan");' });
    assert.equal(out.isError, true);
    assert.match(firstText(out), /^E_SANDBOX_CODE_FAILED: .*bad plan/);
    const result = out.structuredContent!;
    assert.equal((result.error as { code: string }).code, "E_SANDBOX_CODE_FAILED");
    assert.deepEqual(result.logs, ["before"]);
    assert.equal(result.result, undefined);
  });

  test("a tool error the code does not catch fails the run with the tool's code", SLOW, async () => {
    const out = await call(EXECUTE_CODE_TOOL, { code: "await tools.fail({})" });
    assert.equal(out.isError, true);
    assert.match(firstText(out), /^E_TOOL_FAILED: /);
  });

  test("execute_code past its timeoutMs is an isError result E_SANDBOX_TIMEOUT", SLOW, async () => {
    const out = await call(EXECUTE_CODE_TOOL, { code: "while (true) {}", timeoutMs: 300 });
    assert.equal(out.isError, true);
    assert.match(firstText(out), /^E_SANDBOX_TIMEOUT: /);
    assert.equal((out.structuredContent!.error as { code: string }).code, "E_SANDBOX_TIMEOUT");
  });

  test("execute_code with bad arguments is an isError E_TOOL_INPUT_INVALID, before any code runs", async () => {
    const noCode = await call(EXECUTE_CODE_TOOL, { code: 5 });
    assert.equal(noCode.isError, true);
    assert.match(firstText(noCode), /^E_TOOL_INPUT_INVALID: Input to tool "execute_code"/);
    const extra = await call(EXECUTE_CODE_TOOL, { code: "1", tools: ["add"] });
    assert.match(firstText(extra), /^E_TOOL_INPUT_INVALID: /);
    const tooLong = await call(EXECUTE_CODE_TOOL, { code: "1", timeoutMs: 10_000_000 });
    assert.equal(tooLong.isError, true);
    assert.match(firstText(tooLong), /^E_TOOL_INPUT_INVALID: timeoutMs is 10000000, over this executor's limit/);
  });
});

describe("createMcpCodeServer refuses a registered tool named execute_code", () => {
  test("E_TOOL_DUPLICATE", () => {
    const own = createToolRegistry();
    own.register({ name: EXECUTE_CODE_TOOL, description: "mine", inputSchema: { type: "object" }, run: () => 1 });
    assert.throws(() => createMcpCodeServer({ tools: own, executor }), { code: "E_TOOL_DUPLICATE" });
  });
});

describe("createMcpHttpHandler over streamable HTTP", () => {
  let handler: McpHttpHandler;
  let server: Server;
  let url: URL;

  before(async () => {
    handler = createMcpHttpHandler({ tools: registry, executor, context: { userId: "web" } });
    server = await runtime.serve!(handler.fetch, { hostname: "127.0.0.1", port: 0 });
    url = new URL(`${server.url}/mcp`);
  });

  after(async () => {
    await handler.close();
    await server.close();
  });

  test("a client lists the tools and runs execute_code in its own session", SLOW, async () => {
    const client = new Client({ name: "test", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(url));
    try {
      assert.equal(handler.sessions, 1);
      const { tools: listed } = await client.listTools();
      assert.ok(listed.some((t) => t.name === EXECUTE_CODE_TOOL));
      const out = (await client.callTool({
        name: EXECUTE_CODE_TOOL,
        arguments: { code: "return (await tools.add({ a: 1, b: 2 })) + ':' + (await tools.whoami({})).userId" },
      })) as ToolResult;
      assert.equal(out.isError, undefined, firstText(out));
      assert.equal(out.structuredContent!.result, "3:web");
    } finally {
      await client.close();
    }
  });

  test("another path is 404, a request without a session that is not initialize is 400", async () => {
    const other = await fetch(new URL("/other", url), { method: "POST", body: "{}" });
    assert.equal(other.status, 404);
    await other.body?.cancel();
    const noSession = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    assert.equal(noSession.status, 400);
    await noSession.body?.cancel();
    const unknown = await fetch(url, { method: "POST", headers: { "mcp-session-id": "nope" }, body: "{}" });
    assert.equal(unknown.status, 404);
    await unknown.body?.cancel();
  });

  test("a request from another origin is refused (DNS rebinding)", async () => {
    const r = await fetch(url, {
      method: "POST",
      headers: { origin: "http://evil.example", "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(r.status, 403);
    await r.body?.cancel();
    const direct = await handler.fetch(new Request(url, { method: "POST", headers: { host: "evil.example" }, body: "{}" }));
    assert.equal(direct.status, 403);
  });
});
