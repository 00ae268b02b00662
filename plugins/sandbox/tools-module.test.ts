import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createToolRegistry, type ToolDefinition } from "../../core/mod.ts";
import { rejectsWith } from "../../tests/helpers.ts";
import { registerToolModules, toolsFromModule } from "./tools-module.ts";

function tool(name: string, extra: Partial<ToolDefinition> = {}): ToolDefinition {
  return { name, description: `The ${name} tool`, inputSchema: { type: "object" }, run: () => name, ...extra };
}

/** What `import()` resolves to: a null-prototype namespace object. */
function ns(exports: Record<string, unknown>): unknown {
  return Object.assign(Object.create(null), exports);
}

const names = (tools: readonly ToolDefinition[]) => tools.map((t) => t.name);

describe("toolsFromModule", () => {
  test("reads a default tool, a default array, and a default function (sync or async)", async () => {
    assert.deepEqual(names(await toolsFromModule(ns({ default: tool("a") }), "m.ts")), ["a"]);
    assert.deepEqual(names(await toolsFromModule(ns({ default: [tool("a"), tool("b")] }), "m.ts")), ["a", "b"]);
    assert.deepEqual(names(await toolsFromModule(ns({ default: () => [tool("a")] }), "m.ts")), ["a"]);
    assert.deepEqual(names(await toolsFromModule(ns({ default: () => Promise.resolve(tool("c")) }), "m.ts")), ["c"]);
  });

  test("reads a named `tools` array, together with a default export", async () => {
    assert.deepEqual(names(await toolsFromModule(ns({ tools: [tool("x"), tool("y")] }), "m.ts")), ["x", "y"]);
    assert.deepEqual(names(await toolsFromModule(ns({ default: tool("a"), tools: [tool("b")], other: 1 }), "m.ts")), ["a", "b"]);
  });

  test("a module with no tools is E_CONFIG_INVALID naming its exports", async () => {
    await rejectsWith(toolsFromModule(ns({}), "empty.ts"), "E_CONFIG_INVALID", /"empty\.ts" exports no tools \(it exports nothing\)/);
    await rejectsWith(toolsFromModule(ns({ helper: 1, weather: tool("w") }), "m.ts"), "E_CONFIG_INVALID", /its exports: "helper", "weather"/);
    await rejectsWith(toolsFromModule(ns({ default: [] }), "m.ts"), "E_CONFIG_INVALID", /an empty list of tools/);
  });

  test("something that is not a tool is E_CONFIG_INVALID saying where", async () => {
    await rejectsWith(toolsFromModule(ns({ default: 42 }), "m.ts"), "E_CONFIG_INVALID", /has a number at the default export/);
    await rejectsWith(toolsFromModule(ns({ default: [tool("a"), "b"] }), "m.ts"), "E_CONFIG_INVALID", /a string at the default export\[1\]/);
    await rejectsWith(toolsFromModule(ns({ tools: tool("a") }), "m.ts"), "E_CONFIG_INVALID", /exports "tools" as an object, not an array/);
    await rejectsWith(toolsFromModule(ns({ default: () => undefined }), "m.ts"), "E_CONFIG_INVALID", /returned undefined/);
    await rejectsWith(
      toolsFromModule(ns({ default: { name: "a", description: "A", inputSchema: {} } }), "m.ts"),
      "E_CONFIG_INVALID",
      /no "run" function for tool "a"/,
    );
    await rejectsWith(toolsFromModule(ns({ default: tool("a", { description: 3 as unknown as string }) }), "m.ts"), "E_CONFIG_INVALID", /no string "description"/);
  });

  test("a default function that throws is E_CONFIG_LOAD_FAILED with its message", async () => {
    const e = await rejectsWith(
      toolsFromModule(ns({ default: () => { throw new Error("no API key"); } }), "m.ts"),
      "E_CONFIG_LOAD_FAILED",
      /"m\.ts": its default export threw: no API key/,
    );
    assert.equal((e.cause as Error).message, "no API key");
  });
});

describe("registerToolModules", () => {
  test("registers every module's tools and returns their names", async () => {
    const registry = createToolRegistry();
    const added = await registerToolModules(registry, [
      { source: "a.ts", namespace: ns({ default: [tool("a1"), tool("a2")] }) },
      { source: "b.ts", namespace: ns({ tools: [tool("b1")] }) },
    ]);
    assert.deepEqual(added, ["a1", "a2", "b1"]);
    assert.deepEqual(registry.list().map((t) => t.name), ["a1", "a2", "b1"]);
    assert.equal(await registry.call("b1", {}), "b1");
  });

  test("the registry's codes come through with the module named, and nothing stays registered", async () => {
    const registry = createToolRegistry();
    await rejectsWith(
      registerToolModules(registry, [
        { source: "ok.ts", namespace: ns({ default: tool("fine") }) },
        { source: "bad.ts", namespace: ns({ default: tool("not a name") }) },
      ]),
      "E_TOOL_NAME_INVALID",
      /^Tool module "bad\.ts": Tool name "not a name" is invalid/,
    );
    assert.deepEqual(registry.list(), []);
    await rejectsWith(
      registerToolModules(registry, [{ source: "s.ts", namespace: ns({ default: tool("s", { inputSchema: { type: "nope" } as never }) }) }]),
      "E_TOOL_SCHEMA_INVALID",
      /^Tool module "s\.ts": Tool "s" has an invalid inputSchema/,
    );
  });

  test("two modules defining one name is E_TOOL_DUPLICATE naming both", async () => {
    const registry = createToolRegistry();
    await rejectsWith(
      registerToolModules(registry, [
        { source: "one.ts", namespace: ns({ default: tool("same") }) },
        { source: "two.ts", namespace: ns({ default: tool("same") }) },
      ]),
      "E_TOOL_DUPLICATE",
      /"same" is defined twice, in "one\.ts" and in "two\.ts"/,
    );
    assert.deepEqual(registry.list(), []);
  });

  test("a name already in the registry is E_TOOL_DUPLICATE, and the earlier tool stays", async () => {
    const registry = createToolRegistry();
    registry.register(tool("taken"));
    await rejectsWith(
      registerToolModules(registry, [{ source: "m.ts", namespace: ns({ default: [tool("new"), tool("taken")] }) }]),
      "E_TOOL_DUPLICATE",
      /^Tool module "m\.ts": A tool named "taken" is already registered/,
    );
    assert.deepEqual(registry.list().map((t) => t.name), ["taken"]);
  });
});
