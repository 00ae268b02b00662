import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { detectRuntime } from "../../runtimes/mod.ts";
import { generateDeclarations } from "./declarations.ts";
import { createToolRegistry, type ToolInfo } from "./registry.ts";

function registry() {
  const tools = createToolRegistry();
  tools.register({
    name: "weather",
    description: "Current weather for a city",
    inputSchema: {
      type: "object",
      properties: { city: { type: "string" }, units: { enum: ["c", "f"] } },
      required: ["city"],
    },
    outputSchema: {
      type: "object",
      properties: {
        temp: { type: "number", description: "Degrees in the requested units" },
        conditions: { type: ["string", "null"] },
      },
      required: ["temp", "conditions"],
    },
    run: () => ({ temp: 4, conditions: null }),
  });
  tools.register({
    name: "search",
    description: "Searches documents.\nReturns at most `limit` hits.",
    inputSchema: {
      type: "object",
      properties: { query: { type: "string" }, limit: { type: "integer" }, "tag-list": { type: "array", items: { type: "string" } } },
      required: ["query"],
      additionalProperties: false,
    },
    outputSchema: {
      $defs: { hit: { type: "object", properties: { id: { const: "doc" }, score: { type: "number" } }, required: ["id", "score"] } },
      type: "array",
      items: { $ref: "#/$defs/hit" },
    },
    run: () => [],
  });
  tools.register({
    name: "misc",
    description: "",
    inputSchema: {
      type: "object",
      properties: {
        any: {},
        either: { anyOf: [{ type: "string" }, { type: "number" }] },
        both: { allOf: [{ type: "object", properties: { a: { type: "string" } } }, { type: "object", properties: { b: { type: "boolean" } } }] },
        map: { type: "object", additionalProperties: { type: "number" } },
        tree: { type: "object", properties: { kids: { type: "array", items: { $ref: "#" } } } },
        list: { type: "array", items: { type: ["string", "null"] } },
      },
    },
    run: () => null,
  });
  return tools;
}

const EXPECTED = `declare const tools: {
  misc(input: { any?: unknown; either?: string | number; both?: { a?: string } & { b?: boolean }; map?: Record<string, number>; tree?: { kids?: unknown[] }; list?: (string | null)[] }): Promise<unknown>;
  /**
   * Searches documents.
   * Returns at most \`limit\` hits.
   */
  search(input: { query: string; limit?: number; "tag-list"?: string[] }): Promise<{ id: "doc"; score: number }[]>;
  /** Current weather for a city */
  weather(input: { city: string; units?: "c" | "f" }): Promise<{
    /** Degrees in the requested units */
    temp: number;
    conditions: string | null;
  }>;
};
`;

describe("generateDeclarations", () => {
  test("renders a small registry exactly, sorted by name", () => {
    assert.equal(generateDeclarations(registry()), EXPECTED);
  });

  test("is deterministic: a list in another order gives the same text", () => {
    const list: ToolInfo[] = registry().list().reverse();
    assert.equal(generateDeclarations(list), EXPECTED);
  });

  test("namespace and metaTools options", () => {
    const text = generateDeclarations(registry(), { namespace: "codemode", metaTools: true });
    assert.ok(text.startsWith("declare const codemode: {\n"));
    assert.match(text, /__list__\(\): Promise<\{ name: string; description: string \}\[\]>;/);
    assert.match(text, /__schema__\(input: \{ name: string \}\)/);
    assert.throws(() => generateDeclarations([], { namespace: "not valid" }), TypeError);
    assert.equal(generateDeclarations([]), "declare const tools: {\n\n};\n");
  });

  test("a description holding */ cannot end the comment early", () => {
    const text = generateDeclarations([{ name: "x", description: "a */ b", inputSchema: { type: "object" } }]);
    assert.match(text, /\/\*\* a \*\\\/ b \*\//);
  });

  test("the generated text type-checks with deno check, and a wrong call does not", async () => {
    const runtime = await detectRuntime();
    const fs = runtime.fs!;
    const deno = new URL("../../node_modules/.bin/deno", import.meta.url).pathname;
    const dir = await fs.makeTempDir("keel-decl-");
    try {
      const decl = generateDeclarations(registry(), { metaTools: true });
      const good = `${decl}
export async function main(): Promise<number> {
  const w = await tools.weather({ city: "Oslo", units: "c" });
  const hits = await tools.search({ query: "q", "tag-list": ["a"] });
  await tools.misc({ either: 1, both: { a: "x", b: true }, map: { k: 1 }, list: [null, "s"] });
  const names = (await tools.__list__()).map((t) => t.name);
  return w.temp + (w.conditions?.length ?? 0) + hits.length + names.length;
}
`;
      await fs.writeTextFile(`${dir}/good.ts`, good);
      await fs.writeTextFile(`${dir}/bad.ts`, `${decl}\nexport const p = tools.weather({ city: 1, units: "k" });\n`);
      const ok = await runtime.processes!.run(deno, { args: ["check", "--quiet", "good.ts"], cwd: dir });
      assert.equal(ok.code, 0, ok.stderr + ok.stdout);
      const bad = await runtime.processes!.run(deno, { args: ["check", "--quiet", "bad.ts"], cwd: dir });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr + bad.stdout, /TS2322/);
    } finally {
      await fs.remove(dir);
    }
  });
});
