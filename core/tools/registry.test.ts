import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../errors.ts";
import { createToolRegistry, type ToolContext, type ToolDefinition } from "./registry.ts";
import { rejectsWith } from "../../tests/helpers.ts";

const weather: ToolDefinition<{ city: string; units?: "c" | "f" }, { temp: number; city: string }> = {
  name: "weather",
  description: "Current weather for a city",
  inputSchema: {
    type: "object",
    properties: { city: { type: "string", minLength: 1 }, units: { enum: ["c", "f"] } },
    required: ["city"],
    additionalProperties: false,
  },
  outputSchema: { type: "object", properties: { temp: { type: "number" }, city: { type: "string" } }, required: ["temp", "city"] },
  run: ({ city, units }) => ({ temp: units === "f" ? 39 : 4, city }),
};


function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  assert.fail("expected a throw");
}

describe("tool registry: register", () => {
  test("list, get and schema show registered tools sorted by name, without run", () => {
    const tools = createToolRegistry();
    tools.register(weather);
    tools.register({ name: "add", description: "Adds", inputSchema: { type: "object" }, run: () => 0 });
    assert.deepEqual(tools.list().map((t) => t.name), ["add", "weather"]);
    assert.equal("run" in tools.list()[0]!, false);
    assert.equal(tools.get("weather"), weather);
    assert.equal(tools.get("nope"), undefined);
    assert.deepEqual(tools.schema("weather"), {
      name: "weather",
      description: weather.description,
      inputSchema: weather.inputSchema,
      outputSchema: weather.outputSchema,
    });
    assert.ok(KeelError.is(thrown(() => tools.schema("nope")), "E_TOOL_UNKNOWN"));
    assert.equal(tools.unregister("add"), true);
    assert.equal(tools.unregister("add"), false);
  });

  test("a duplicate name is E_TOOL_DUPLICATE unless overwrite", async () => {
    const tools = createToolRegistry();
    tools.register(weather);
    const e = thrown(() => tools.register({ ...weather, run: () => ({ temp: 1, city: "x" }) }));
    assert.ok(KeelError.is(e, "E_TOOL_DUPLICATE"));
    assert.match(e.message, /"weather".*overwrite: true/);
    tools.register({ ...weather, run: () => ({ temp: 99, city: "x" }) }, { overwrite: true });
    assert.deepEqual(await tools.call("weather", { city: "Oslo" }), { temp: 99, city: "x" });
    assert.equal(tools.list().length, 1);
  });

  test("bad names are E_TOOL_NAME_INVALID", () => {
    const tools = createToolRegistry();
    for (const name of ["", "1abc", "has-dash", "a.b", "__list__", "__x", "a".repeat(65), 7]) {
      const e = thrown(() => tools.register({ ...weather, name: name as string }));
      assert.ok(KeelError.is(e, "E_TOOL_NAME_INVALID"), String(name));
    }
    tools.register({ ...weather, name: "get_weather$2" });
  });

  test("invalid schemas are E_TOOL_SCHEMA_INVALID with every problem", () => {
    const tools = createToolRegistry();
    const e = thrown(() => tools.register({ ...weather, inputSchema: { type: "object", properties: { a: { type: "text" } }, requried: [] } as never }));
    assert.ok(KeelError.is(e, "E_TOOL_SCHEMA_INVALID"));
    assert.deepEqual((e.details?.issues as { path: string }[]).map((i) => i.path), ["/properties/a/type", "/requried"]);
    const o = thrown(() => tools.register({ ...weather, outputSchema: { $ref: "#/$defs/nope" } }));
    assert.ok(KeelError.is(o, "E_TOOL_SCHEMA_INVALID"));
    assert.equal(o.details?.schema, "outputSchema");
    assert.deepEqual(tools.list(), []);
  });

  test("a missing run or description is a TypeError", () => {
    const tools = createToolRegistry();
    assert.throws(() => tools.register({ ...weather, run: undefined as never }), TypeError);
    assert.throws(() => tools.register({ ...weather, description: undefined as never }), TypeError);
  });
});

describe("tool registry: call", () => {
  test("valid input runs the tool and returns its output", async () => {
    const tools = createToolRegistry();
    tools.register(weather);
    assert.deepEqual(await tools.call("weather", { city: "Oslo", units: "f" }), { temp: 39, city: "Oslo" });
  });

  test("an unknown tool is E_TOOL_UNKNOWN naming the registered ones", async () => {
    const tools = createToolRegistry();
    tools.register(weather);
    const e = await rejectsWith(tools.call("wether", {}), "E_TOOL_UNKNOWN");
    assert.match(e.message, /"wether".*"weather"/);
  });

  test("invalid input is E_TOOL_INPUT_INVALID listing every problem, and the tool does not run", async () => {
    const tools = createToolRegistry();
    let ran = false;
    tools.register({ ...weather, run: () => (ran = true, { temp: 0, city: "" }) });
    const e = await rejectsWith(tools.call("weather", { city: "", units: "k", extra: 1 }), "E_TOOL_INPUT_INVALID");
    assert.deepEqual((e.details?.issues as { path: string; keyword: string }[]).map((i) => [i.path, i.keyword]), [
      ["/city", "minLength"],
      ["/units", "enum"],
      ["/extra", "additionalProperties"],
    ]);
    assert.match(e.message, /\/city: Expected at least 1 characters, got 0\n\/units: Expected one of "c", "f", got "k"\n\/extra: Unexpected property "extra"/);
    await rejectsWith(tools.call("weather", undefined), "E_TOOL_INPUT_INVALID");
    assert.equal(ran, false);
  });

  test("output that fails outputSchema is E_TOOL_OUTPUT_INVALID", async () => {
    const tools = createToolRegistry();
    tools.register({ ...weather, run: () => ({ temp: "warm" }) as never });
    const e = await rejectsWith(tools.call("weather", { city: "Oslo" }), "E_TOOL_OUTPUT_INVALID");
    assert.deepEqual((e.details?.issues as { path: string }[]).map((i) => i.path), ["/city", "/temp"]);
  });

  test("without outputSchema any output passes", async () => {
    const tools = createToolRegistry();
    tools.register({ name: "free", description: "d", inputSchema: true, run: () => "anything" });
    assert.equal(await tools.call("free", 42), "anything");
  });

  test("a throwing tool is E_TOOL_FAILED with the cause kept (sync and async)", async () => {
    const tools = createToolRegistry();
    const boom = new Error("upstream down");
    tools.register({ name: "sync", description: "d", inputSchema: true, run: () => { throw boom; } });
    tools.register({ name: "later", description: "d", inputSchema: true, run: async () => { await Promise.resolve(); throw boom; } });
    for (const name of ["sync", "later"]) {
      const e = await rejectsWith(tools.call(name, {}, { correlationId: "c-1" }), "E_TOOL_FAILED");
      assert.equal(e.cause, boom);
      assert.match(e.message, /upstream down/);
      assert.equal(e.details?.correlationId, "c-1");
    }
  });

  test("the tool gets a deeply frozen copy of the context and a correlation id", async () => {
    const tools = createToolRegistry();
    let seen: ToolContext | undefined;
    tools.register({ name: "peek", description: "d", inputSchema: true, run: (_i, ctx) => { seen = ctx; return ctx.context.userId; } });
    const context = { userId: "u1", tenant: { id: "t1", roles: ["admin"] } };
    assert.equal(await tools.call("peek", {}, { context, correlationId: "req-7" }), "u1");
    assert.equal(seen!.correlationId, "req-7");
    assert.equal(seen!.toolName, "peek");
    assert.deepEqual(seen!.context, context);
    assert.notEqual(seen!.context, context);
    assert.ok(Object.isFrozen(seen!) && Object.isFrozen(seen!.context) && Object.isFrozen(seen!.context.tenant));
    assert.ok(Object.isFrozen((seen!.context.tenant as { roles: string[] }).roles));
    assert.equal(Object.isFrozen(context), false);
    await tools.call("peek", {});
    assert.match(seen!.correlationId, /^tool-[0-9a-z]+-[0-9a-z]+$/);
    assert.deepEqual(seen!.context, {});
  });

  test("a tool that tries to change the context fails, and the caller's context is unchanged", async () => {
    const tools = createToolRegistry();
    tools.register({
      name: "escalate",
      description: "d",
      inputSchema: true,
      run: (_i, ctx) => {
        (ctx.context as { tenant: { id: string } }).tenant.id = "other";
        return "changed";
      },
    });
    tools.register({ name: "swap", description: "d", inputSchema: true, run: (_i, ctx) => { (ctx as { context: unknown }).context = {}; } });
    const context = { tenant: { id: "t1" } };
    const e = await rejectsWith(tools.call("escalate", {}, { context }), "E_TOOL_FAILED");
    assert.ok(e.cause instanceof TypeError);
    await rejectsWith(tools.call("swap", {}, { context }), "E_TOOL_FAILED");
    assert.equal(context.tenant.id, "t1");
  });

  test("a context holding a function or class instance is refused", async () => {
    const tools = createToolRegistry();
    tools.register({ name: "t", description: "d", inputSchema: true, run: () => 1 });
    await assert.rejects(tools.call("t", {}, { context: { f: () => 1 } }), TypeError);
    await assert.rejects(tools.call("t", {}, { context: { d: new Date() } }), TypeError);
  });
});

describe("tool registry: meta-tools", () => {
  test("__list__ returns names and descriptions sorted; __schema__ returns one tool's schemas", async () => {
    const tools = createToolRegistry();
    tools.register(weather);
    tools.register({ name: "add", description: "Adds two numbers", inputSchema: { type: "object" }, run: () => 0 });
    assert.deepEqual(await tools.call("__list__", undefined), [
      { name: "add", description: "Adds two numbers" },
      { name: "weather", description: "Current weather for a city" },
    ]);
    assert.deepEqual(await tools.call("__schema__", { name: "weather" }), tools.schema("weather"));
    await rejectsWith(tools.call("__schema__", { name: "nope" }), "E_TOOL_UNKNOWN");
    await rejectsWith(tools.call("__schema__", {}), "E_TOOL_INPUT_INVALID");
    assert.deepEqual(tools.list().map((t) => t.name), ["add", "weather"]);
    assert.equal(tools.get("__list__"), undefined);
  });
});
