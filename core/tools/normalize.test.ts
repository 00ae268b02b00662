import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { normalizeCode, stripCodeFences } from "./normalize.ts";

const F = "`".repeat(3);
const body = (code: string) => `async () => {\n${code}\n}`;
const expr = (code: string) => `async () => {\nreturn (\n${code}\n);\n}`;

describe("normalizeCode", () => {
  const cases: [string, string, string][] = [
    ["fenced js", `${F}js\nconst x = 1;\nreturn x;\n${F}`, body("const x = 1;\nreturn x;")],
    ["fenced ts", `${F}ts\nconst x: number = 1;\nreturn x;\n${F}`, body("const x: number = 1;\nreturn x;")],
    ["fenced javascript", `${F}javascript\nreturn 1;\n${F}`, body("return 1;")],
    ["bare fence", `${F}\nreturn 1;\n${F}`, body("return 1;")],
    ["fence with prose around it", `Here is the code:\n\n${F}js\nreturn 1;\n${F}\n\nHope it helps.`, body("return 1;")],
    ["unclosed fence", `${F}js\nreturn 1;`, body("return 1;")],
    ["only the first fence", `${F}js\nreturn 1;\n${F}\n${F}js\nreturn 2;\n${F}`, body("return 1;")],
    ["whitespace is trimmed", "\n\n   return 1;  \n\n", body("return 1;")],
    ["statements with await", "const w = await tools.weather({ city: 'Oslo' });\nreturn w.temp;", body("const w = await tools.weather({ city: 'Oslo' });\nreturn w.temp;")],
    ["async arrow kept", "async () => {\n  return 1;\n}", "async () => {\n  return 1;\n}"],
    ["async arrow without spaces kept", "async()=>{return 1}", "async()=>{return 1}"],
    ["fenced async arrow kept, trailing ; dropped", `${F}js\nasync () => {\n  return 1;\n};\n${F}`, "async () => {\n  return 1;\n}"],
    ["sync arrow kept", "() => 42", "() => 42"],
    ["arrow with a parameter kept", "x => x + 1", "x => x + 1"],
    ["arrow with typed params kept", "async (a: number): Promise<number> => a", "async (a: number): Promise<number> => a"],
    ["async function kept", "async function main() {\n  return 1;\n}", "async function main() {\n  return 1;\n}"],
    ["function kept", "function () { return 1 }", "function () { return 1 }"],
    ["export default removed", "export default async () => 1;", "async () => 1"],
    ["a single expression is returned", "await tools.weather({ city: 'Oslo' })", expr("await tools.weather({ city: 'Oslo' })")],
    ["a single expression with ;", "2 + 2;", expr("2 + 2")],
    ["an expression with a trailing comment", "1 + 1 // two", expr("1 + 1 // two")],
    ["an IIFE is an expression, not a function", "(async () => 1)()", expr("(async () => 1)()")],
    ["a single return statement is a body", "return 2 + 2", body("return 2 + 2")],
    ["a single declaration is a body", "const x = 1", body("const x = 1")],
    ["a one-line statement list is a body", "const x = 1; return x", body("const x = 1; return x")],
    ["a line comment is a body", "// nothing", body("// nothing")],
    ["a block is a body", "{ return 1 }", body("{ return 1 }")],
    ["an identifier that starts like a keyword is an expression", "returnValue", expr("returnValue")],
    ["empty", "", "async () => {}"],
    ["only a fence", `${F}js\n${F}`, "async () => {}"],
    ["template literal text is not re-indented", "const s = `a\n  b`;\nreturn s;", body("const s = `a\n  b`;\nreturn s;")],
  ];
  for (const [name, input, expected] of cases) {
    test(name, () => assert.equal(normalizeCode(input), expected));
  }

  test("every result is a callable function expression", async () => {
    const runnable = [
      ["return 2 + 2", 4],
      ["2 + 2", 4],
      ["async () => 4", 4],
      [`${F}js\nconst a = await Promise.resolve(2);\nreturn a * 2;\n${F}`, 4],
      ["async function f() { return 4 }", 4],
      ["1 + 3 // four", 4],
      ["", undefined],
    ] as const;
    for (const [input, value] of runnable) {
      const f = new Function(`return (${normalizeCode(input)});`)() as () => unknown;
      assert.equal(await f(), value, input);
    }
  });

  test("a non-string is a TypeError", () => {
    assert.throws(() => normalizeCode(1 as unknown as string), TypeError);
  });
});

describe("stripCodeFences", () => {
  test("returns text without fences unchanged", () => {
    assert.equal(stripCodeFences("return 1"), "return 1");
    assert.equal(stripCodeFences(`${F}python\nprint(1)\n${F}`), "print(1)\n");
  });
});
