import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKernel, definePlugin, type Kernel } from "../../core/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import { rejectsWith } from "../../tests/helpers.ts";
import sandbox, { CODE_PROTOCOL, createSandbox, createSandboxPlugin } from "./mod.ts";

const runtime = await detectRuntime();

const addTool = {
  name: "add",
  description: "Adds two numbers",
  inputSchema: {
    type: "object",
    properties: { a: { type: "number" }, b: { type: "number" } },
    required: ["a", "b"],
    additionalProperties: false,
  },
  run: ({ a, b }: { a: number; b: number }) => a + b,
} as const;

/** A plugin that registers a tool through its context, as a third-party plugin would. */
const tenantTools = definePlugin({
  name: "tenant-tools",
  version: "1.0.0",
  kernel: "^1",
  setup(ctx) {
    ctx.tools.register({
      name: "tenant",
      description: "The tenant the host set for this request",
      inputSchema: { type: "object" },
      run: (_input: unknown, { context }) => context.tenant ?? null,
    });
  },
});

describe("sandbox plugin", () => {
  const kernels: Kernel[] = [];
  after(async () => {
    await Promise.all(kernels.map((k) => k.dispose()));
  });
  async function boot(...args: Parameters<typeof createKernel>): Promise<Kernel> {
    const kernel = await createKernel(...args);
    kernels.push(kernel);
    return kernel;
  }

  test("kernel.execute without a sandbox plugin is E_SANDBOX_UNAVAILABLE", async () => {
    const kernel = await boot({ runtime });
    await rejectsWith(kernel.execute("1 + 1"), "E_SANDBOX_UNAVAILABLE");
  });

  test("the process sandbox asks for run:deno and is refused without it", async () => {
    assert.deepEqual(sandbox.capabilities, ["run:deno"]);
    await rejectsWith(createKernel({ runtime, plugins: [sandbox] }), "E_CAPABILITY_DENIED");
  });

  test("kernel.execute runs code with kernel tools and plugin tools, context read-only", async () => {
    const kernel = await boot({ runtime, plugins: [sandbox, tenantTools], grants: { sandbox: ["run:deno"] } });
    kernel.tools.register(addTool);
    const out = await kernel.execute(
      "const sum = await tools.add({ a: 2, b: 3 });\ntry { context.tenant = 'other'; } catch {}\nreturn { sum, tenant: await tools.tenant({}), seen: context.tenant }",
      { context: { tenant: "acme" } },
    );
    assert.equal(out.error, undefined, JSON.stringify(out.error));
    assert.deepEqual(out.result, { sum: 5, tenant: "acme", seen: "acme" });
    assert.equal(out.sandbox, "deno-ses");
    const denied = await kernel.execute("await tools.tenant({})", { tools: ["add"] });
    assert.equal(denied.error?.code, "E_SANDBOX_TOOL_DENIED");
    await rejectsWith(kernel.execute("1", { tools: ["nope"] }), "E_TOOL_UNKNOWN");
  });

  test("the QuickJS backend needs no grant", async () => {
    const quick = createSandboxPlugin({ backend: "quickjs" });
    assert.deepEqual(quick.capabilities, []);
    const kernel = await boot({ runtime, plugins: [quick] });
    kernel.tools.register(addTool);
    const out = await kernel.execute("await tools.add({ a: 20, b: 22 })");
    assert.deepEqual([out.result, out.sandbox], [42, "quickjs"]);
  });

  test("code/v1 runs as a workflow protocol, results flowing between tasks", async () => {
    const kernel = await boot({ runtime, plugins: [sandbox], grants: { sandbox: ["run:deno"] } });
    kernel.tools.register(addTool);
    const handle = await kernel.workflows.run(JSON.stringify({
      name: "code",
      tasks: [
        { id: "sum", method: "code/execute", parameters: { code: "await tools.add({ a: 1, b: 2 })" } },
        {
          id: "double",
          method: "code/execute",
          dependencies: ["sum"],
          parameters: { code: "return context.n * 2", context: { n: "${sum.result}" }, tools: [] },
        },
        { id: "bad", method: "code/execute", parameters: { code: "throw new Error('no')" } },
      ],
    }));
    const summary = await handle.done;
    assert.deepEqual({ sum: summary.results.sum, double: summary.results.double }, { sum: 3, double: 6 });
    assert.deepEqual(summary.failed.map((f) => [f.taskId, f.error?.code]), [["bad", "E_SANDBOX_CODE_FAILED"]]);
    const executor = await kernel.resolveExecutor(CODE_PROTOCOL);
    await rejectsWith(executor.execute({ method: "code/run", params: {} }), "E_WORKFLOW_UNKNOWN_METHOD");
    await rejectsWith(executor.execute({ method: "code/execute", params: { code: 42 } }), "E_CONFIG_INVALID");
  });

  test("disposing the kernel closes the sandbox", async () => {
    const kernel = await createKernel({ runtime, plugins: [sandbox], grants: { sandbox: ["run:deno"] } });
    assert.equal((await kernel.execute("'warm'")).result, "warm");
    await kernel.dispose();
    await rejectsWith(kernel.execute("1"), "E_KERNEL_DISPOSED");
  });

  test("createSandbox picks a backend; process without a runtime is E_SANDBOX_UNAVAILABLE", async () => {
    const quick = await createSandbox({ backend: "quickjs" });
    assert.equal(quick.name, "quickjs");
    await quick.close();
    const auto = await createSandbox({});
    assert.equal(auto.name, "quickjs", "no runtime: QuickJS");
    await auto.close();
    await rejectsWith(createSandbox({ backend: "process" }), "E_SANDBOX_UNAVAILABLE");
    await assert.rejects(createSandbox({ backend: "wasm" as "quickjs" }), TypeError);
  });
});
