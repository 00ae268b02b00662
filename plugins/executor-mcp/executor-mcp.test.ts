import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { load as parse } from "js-yaml";
import { createKernel, type Executor, type Kernel, type Runtime } from "../../core/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import executorMcp, {
  createMcpPlugin,
  MCP_CALL,
  MCP_LIST_TOOLS,
  MCP_PROTOCOL,
  type McpToolInfo,
  type McpToolResult,
} from "./mod.ts";
import { isRunning, rejectsWith } from "../../tests/helpers.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DENO = fileURLToPath(new URL("../../node_modules/.bin/deno", import.meta.url));
const SERVER = fileURLToPath(new URL("./fixtures/server.ts", import.meta.url));
const GLEITZEIT = fileURLToPath(new URL("../../../shared/compat/gleitzeit/workflows/", import.meta.url));
const FIXTURE_ARGS = ["run", "--quiet", "--allow-env", "--allow-read", `--config=${ROOT}deno.json`, SERVER];



interface CompatTask {
  id: string;
  method: string;
  parameters: Record<string, unknown>;
  dependencies?: string[];
}

/**
 * Just enough of the workflow engine to run Gleitzeit's MCP workflows in order: a whole-string
 * `${id.path}` keeps its type, an embedded one is turned into text.
 */
function substitute(value: unknown, results: Map<string, unknown>): unknown {
  const lookup = (ref: string): unknown => {
    const [id, ...path] = ref.split(".");
    let at = results.get(id!);
    for (const key of path) at = (at as Record<string, unknown>)[key];
    assert.notEqual(at, undefined, `unresolved \${${ref}}`);
    return at;
  };
  if (typeof value === "string") {
    const whole = /^\$\{([^}]+)\}$/.exec(value);
    if (whole) return lookup(whole[1]!);
    return value.replace(/\$\{([^}]+)\}/g, (_, ref: string) => String(lookup(ref)));
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, results));
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, results)]));
  }
  return value;
}

async function runCompat(executor: Executor, file: string): Promise<Map<string, unknown>> {
  const workflow = parse(await readFile(`${GLEITZEIT}${file}`, "utf8")) as { tasks: CompatTask[] };
  const results = new Map<string, unknown>();
  for (const task of workflow.tasks) {
    assert.ok(executor.methods.includes(task.method), `${task.method} is not a method`);
    const params = substitute(task.parameters, results) as Record<string, unknown>;
    results.set(task.id, await executor.execute({ method: task.method, params }));
  }
  return results;
}

describe("executor-mcp", () => {
  let runtime: Runtime;

  before(async () => {
    runtime = await detectRuntime();
  });

  describe("built-in tools", () => {
    let kernel: Kernel;
    let executor: Executor;
    before(async () => {
      kernel = await createKernel({ runtime, plugins: [executorMcp] });
      executor = await kernel.resolveExecutor(MCP_PROTOCOL);
    });
    after(() => kernel.dispose());

    test("need no capability and list their methods", () => {
      assert.deepEqual(executorMcp.capabilities, []);
      assert.deepEqual([...executor.methods], [
        "mcp/tool.echo",
        "mcp/tool.add",
        "mcp/tool.multiply",
        "mcp/tool.concat",
        MCP_CALL,
        MCP_LIST_TOOLS,
      ]);
    });

    test("take Gleitzeit's params and give its result shapes", async () => {
      const call = (method: string, params: Record<string, unknown>): Promise<unknown> =>
        executor.execute({ method, params });
      assert.deepEqual(await call("mcp/tool.echo", { message: "Hi" }), { response: "Hi" });
      assert.deepEqual(await call("mcp/tool.add", { a: 100, b: 23 }), { result: 123 });
      assert.deepEqual(await call("mcp/tool.multiply", { a: 123, b: 10 }), { result: 1230 });
      assert.deepEqual(await call("mcp/tool.multiply", { a: "123", b: 10 }), { result: 1230 });
      assert.deepEqual(await call("mcp/tool.concat", { strings: ["a", "b", 3], separator: " | " }), {
        result: "a | b | 3",
      });
      assert.deepEqual(await call("mcp/tool.concat", { strings: ["a", "b"] }), { result: "ab" });
      assert.deepEqual(await call(MCP_CALL, { tool: "add", arguments: { a: 1, b: 2 } }), { result: 3 });
    });

    test("mcp_workflow.yaml gives the results its README describes", async () => {
      const results = await runCompat(executor, "mcp_workflow.yaml");
      assert.deepEqual(results.get("add_numbers"), { result: 123 });
      assert.deepEqual(results.get("multiply_result"), { result: 1230 });
      assert.deepEqual(results.get("final_concat"), {
        result: "Echo said: Hello from MCP workflow! | Addition result: 123 | Final multiplication: 1230",
      });
    });

    test("simple_mcp_workflow.yaml gives the results its README describes", async () => {
      const results = await runCompat(executor, "simple_mcp_workflow.yaml");
      assert.deepEqual(results.get("calculate_sum"), { result: 100 });
      assert.deepEqual(results.get("calculate_product"), { result: 200 });
      assert.deepEqual(results.get("combine_results"), {
        result: "Hello from Simple MCP! | Sum was 100 | Product is 200",
      });
    });

    test("the methods Gleitzeit's test workflow names that do not exist are refused", async () => {
      for (const method of ["mcp/ping", "mcp/tools/list", "mcp/server_info"]) {
        assert.equal(executor.methods.includes(method), false);
        await assert.rejects(executor.execute({ method, params: {} }), RangeError);
      }
    });

    test("an unknown tool is E_MCP_TOOL_UNKNOWN listing the tools", async () => {
      await rejectsWith(
        executor.execute({ method: "mcp/tool.divide", params: { a: 1, b: 2 } }),
        "E_MCP_TOOL_UNKNOWN",
        /"divide".*"echo", "add", "multiply", "concat"/,
      );
    });

    test("bad arguments are TypeErrors", async () => {
      await assert.rejects(executor.execute({ method: "mcp/tool.add", params: { a: "x", b: 1 } }), TypeError);
      await assert.rejects(executor.execute({ method: "mcp/tool.echo", params: {} }), TypeError);
      await assert.rejects(executor.execute({ method: "mcp/tool.concat", params: { strings: "ab" } }), TypeError);
    });

    test("list_tools lists the built-ins", async () => {
      const { tools } = (await executor.execute({ method: MCP_LIST_TOOLS, params: {} })) as { tools: McpToolInfo[] };
      assert.deepEqual(tools.map((t) => `${t.server}/${t.name}`), [
        "builtin/echo",
        "builtin/add",
        "builtin/multiply",
        "builtin/concat",
      ]);
    });
  });

  describe("a real MCP server over stdio", () => {
    let kernel: Kernel;
    let executor: Executor;
    const plugin = createMcpPlugin({
      servers: {
        fixture: { command: DENO, args: FIXTURE_ARGS, tools: ["reverse"] },
        broken: { command: "sh", args: ["-c", "echo cannot start: no config >&2; exit 1"] },
        missing: { command: "keel-no-such-mcp-server" },
      },
    });
    const call = (params: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> =>
      executor.execute({ method: MCP_CALL, params, ...(signal ? { signal } : {}) });

    before(async () => {
      kernel = await createKernel({
        runtime,
        plugins: [plugin],
        grants: { "executor-mcp": [`run:${DENO}`, "run:sh", "run:keel-no-such-mcp-server"] },
      });
      executor = await kernel.resolveExecutor(MCP_PROTOCOL);
    });
    after(() => kernel.dispose());

    test("the manifest asks for run:<command> of each server; declared tools are methods", () => {
      assert.deepEqual(plugin.capabilities, [`run:${DENO}`, "run:sh", "run:keel-no-such-mcp-server"]);
      assert.ok(executor.methods.includes("mcp/tool.reverse"));
      assert.ok(executor.methods.includes("mcp/tool.*"));
    });

    test("lists the server's tools", async () => {
      const { tools } = (await executor.execute({ method: MCP_LIST_TOOLS, params: { server: "fixture" } })) as {
        tools: McpToolInfo[];
      };
      assert.deepEqual(tools.map((t) => t.name), ["reverse", "slow", "fail", "pid"]);
      assert.equal(tools[0]!.server, "fixture");
      assert.deepEqual((tools[0]!.inputSchema as { required: string[] }).required, ["text"]);
    });

    test("calls a tool by mcp/call and by mcp/tool.<name>", async () => {
      const expected: McpToolResult = {
        text: "olleh",
        content: [{ type: "text", text: "olleh" }],
        structuredContent: { reversed: "olleh" },
      };
      assert.deepEqual(await call({ server: "fixture", tool: "reverse", arguments: { text: "hello" } }), expected);
      assert.deepEqual(await executor.execute({ method: "mcp/tool.reverse", params: { text: "hello" } }), expected);
      // Not declared in `tools`, found by asking the server.
      const slept = (await executor.execute({ method: "mcp/tool.slow", params: { ms: 1 } })) as McpToolResult;
      assert.equal(slept.text, "slept 1 ms");
    });

    test("an error the tool reports is E_MCP_FAILED", async () => {
      await rejectsWith(
        call({ server: "fixture", tool: "fail", arguments: { message: "disk on fire" } }),
        "E_MCP_FAILED",
        /"fail" on "fixture" reported an error: disk on fire/,
      );
    });

    test("an unknown tool or server is E_MCP_TOOL_UNKNOWN listing what there is", async () => {
      await rejectsWith(
        call({ server: "fixture", tool: "rotate" }),
        "E_MCP_TOOL_UNKNOWN",
        /no tool "rotate"; it has "reverse", "slow", "fail", "pid"/,
      );
      await rejectsWith(call({ server: "nope", tool: "x" }), "E_MCP_TOOL_UNKNOWN", /"nope".*"builtin", "fixture"/);
    });

    test("a server that fails to start is E_MCP_FAILED with its stderr", async () => {
      await rejectsWith(call({ server: "broken", tool: "x" }), "E_MCP_FAILED", /"broken".*cannot start: no config/);
      await rejectsWith(call({ server: "missing", tool: "x" }), "E_MCP_FAILED", /"missing"/);
      // Searching every server for an undeclared tool meets the broken one too.
      await rejectsWith(executor.execute({ method: "mcp/tool.rotate", params: {} }), "E_MCP_FAILED");
    });

    test("aborting a call cancels it; the server stays up for the next", async () => {
      const before = (await call({ server: "fixture", tool: "pid" })) as McpToolResult;
      const controller = new AbortController();
      const work = call({ server: "fixture", tool: "slow", arguments: { ms: 30_000 } }, controller.signal);
      setTimeout(() => controller.abort(), 200);
      await rejectsWith(work, "E_RUN_INTERRUPTED");
      await rejectsWith(
        call({ server: "fixture", tool: "slow", arguments: { ms: 30_000 } }, AbortSignal.timeout(200)),
        "E_TASK_TIMEOUT",
      );
      await rejectsWith(
        call({ server: "fixture", tool: "slow", arguments: { ms: 30_000 }, timeout: 0.2 }),
        "E_TASK_TIMEOUT",
        /within 200 ms/,
      );
      const after = (await call({ server: "fixture", tool: "pid" })) as McpToolResult;
      assert.equal(after.text, before.text);
    });
  });

  test("dispose stops the server process", async () => {
    const kernel = await createKernel({
      runtime,
      plugins: [createMcpPlugin({ servers: { fixture: { command: DENO, args: FIXTURE_ARGS } } })],
      grants: { "executor-mcp": [`run:${DENO}`] },
    });
    const executor = await kernel.resolveExecutor(MCP_PROTOCOL);
    const { text } = (await executor.execute({ method: MCP_CALL, params: { server: "fixture", tool: "pid" } })) as McpToolResult;
    const pid = Number(text);
    assert.ok(pid > 0);
    assert.equal(isRunning(pid), true);
    await kernel.dispose();
    assert.equal(isRunning(pid), false);
  });

  test("a server command not granted is refused at boot", async () => {
    await rejectsWith(
      createKernel({
        runtime,
        plugins: [createMcpPlugin({ servers: { fixture: { command: DENO, args: FIXTURE_ARGS } } })],
        grants: { "executor-mcp": ["run:sh"] },
      }),
      "E_CAPABILITY_DENIED",
      /run:/,
    );
  });
});
