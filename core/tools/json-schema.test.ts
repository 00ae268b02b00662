import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { checkJsonSchema, type JsonSchema, validateJsonSchema } from "./json-schema.ts";

/** [path, keyword] of each issue, for compact assertions. */
function issues(schema: JsonSchema, value: unknown): [string, string][] {
  return validateJsonSchema(schema, value).map((i) => [i.path, i.keyword]);
}

const ok = (schema: JsonSchema, value: unknown) => assert.deepEqual(issues(schema, value), [], JSON.stringify(value));

describe("validateJsonSchema: keywords", () => {
  test("type: each name, integer vs number, arrays of types (nullable)", () => {
    ok({ type: "string" }, "x");
    ok({ type: "number" }, 1.5);
    ok({ type: "integer" }, 3);
    ok({ type: "boolean" }, false);
    ok({ type: "null" }, null);
    ok({ type: "array" }, []);
    ok({ type: "object" }, {});
    ok({ type: ["string", "null"] }, null);
    ok({ type: ["string", "null"] }, "a");
    assert.deepEqual(issues({ type: "integer" }, 1.5), [["", "type"]]);
    assert.deepEqual(issues({ type: "object" }, []), [["", "type"]]);
    assert.deepEqual(issues({ type: "array" }, {}), [["", "type"]]);
    assert.deepEqual(issues({ type: "number" }, Number.NaN), [["", "type"]]);
    assert.deepEqual(issues({ type: "number" }, "1"), [["", "type"]]);
    assert.deepEqual(issues({ type: ["string", "null"] }, 1), [["", "type"]]);
    assert.match(validateJsonSchema({ type: ["string", "null"] }, 1)[0]!.message, /Expected string or null, got number/);
  });

  test("a value that is not JSON fails even without a type", () => {
    assert.deepEqual(issues({}, () => 1), [["", "type"]]);
    assert.deepEqual(issues({ type: "object" }, { f: () => 1 }), [["/f", "type"]]);
    ok({}, { a: [1, "x", null] });
  });

  test("properties and required report each path", () => {
    const s: JsonSchema = {
      type: "object",
      properties: { a: { type: "string" }, b: { type: "object", properties: { c: { type: "number" } }, required: ["c"] } },
      required: ["a", "b"],
    };
    ok(s, { a: "x", b: { c: 1 } });
    assert.deepEqual(issues(s, {}), [["/a", "required"], ["/b", "required"]]);
    assert.deepEqual(issues(s, { a: 1, b: { c: "no" } }), [["/a", "type"], ["/b/c", "type"]]);
    assert.deepEqual(issues(s, { a: "x", b: {} }), [["/b/c", "required"]]);
  });

  test("additionalProperties: false, a schema, and pointer escaping", () => {
    ok({ type: "object", additionalProperties: false }, {});
    assert.deepEqual(issues({ type: "object", properties: { a: {} }, additionalProperties: false }, { a: 1, "x/y": 2, "m~n": 3 }), [
      ["/x~1y", "additionalProperties"],
      ["/m~0n", "additionalProperties"],
    ]);
    const s: JsonSchema = { type: "object", additionalProperties: { type: "number" } };
    ok(s, { x: 1, y: 2 });
    assert.deepEqual(issues(s, { x: 1, y: "2" }), [["/y", "type"]]);
    ok({ type: "object", additionalProperties: true }, { anything: "goes" });
  });

  test("items, minItems, maxItems", () => {
    const s: JsonSchema = { type: "array", items: { type: "integer", minimum: 0 }, minItems: 1, maxItems: 3 };
    ok(s, [0, 1]);
    assert.deepEqual(issues(s, []), [["", "minItems"]]);
    assert.deepEqual(issues(s, [1, 2, 3, 4]), [["", "maxItems"]]);
    assert.deepEqual(issues(s, [1, -1, "x"]), [["/1", "minimum"], ["/2", "type"]]);
  });

  test("enum and const compare deeply", () => {
    ok({ enum: ["c", "f", null] }, null);
    ok({ enum: [{ a: [1] }] }, { a: [1] });
    assert.deepEqual(issues({ enum: ["c", "f"] }, "k"), [["", "enum"]]);
    assert.deepEqual(issues({ enum: [{ a: [1] }] }, { a: [2] }), [["", "enum"]]);
    ok({ const: { b: 1, a: 2 } }, { a: 2, b: 1 });
    assert.deepEqual(issues({ const: 1 }, 2), [["", "const"]]);
    assert.deepEqual(issues({ const: null }, undefined), [["", "type"]]);
    assert.deepEqual(issues({ const: [1, 2] }, [1]), [["", "const"]]);
  });

  test("minimum, maximum, exclusiveMinimum, exclusiveMaximum", () => {
    const s: JsonSchema = { type: "number", minimum: 0, maximum: 10 };
    ok(s, 0);
    ok(s, 10);
    assert.deepEqual(issues(s, -1), [["", "minimum"]]);
    assert.deepEqual(issues(s, 11), [["", "maximum"]]);
    const e: JsonSchema = { type: "number", exclusiveMinimum: 0, exclusiveMaximum: 1 };
    ok(e, 0.5);
    assert.deepEqual(issues(e, 0), [["", "exclusiveMinimum"]]);
    assert.deepEqual(issues(e, 1), [["", "exclusiveMaximum"]]);
  });

  test("minLength and maxLength count code points; pattern is unanchored and Unicode", () => {
    const s: JsonSchema = { type: "string", minLength: 2, maxLength: 3 };
    ok(s, "😀😀");
    assert.deepEqual(issues(s, "😀"), [["", "minLength"]]);
    assert.deepEqual(issues(s, "abcd"), [["", "maxLength"]]);
    ok({ type: "string", pattern: "^[A-Z]{2}$" }, "NO");
    ok({ type: "string", pattern: "b" }, "abc");
    assert.deepEqual(issues({ type: "string", pattern: "^[A-Z]{2}$" }, "Nor"), [["", "pattern"]]);
    assert.deepEqual(issues({ type: "string", minLength: 5, pattern: "^x" }, "abc"), [["", "minLength"], ["", "pattern"]]);
  });

  test("anyOf, oneOf, allOf", () => {
    const any: JsonSchema = { anyOf: [{ type: "string" }, { type: "number", minimum: 0 }] };
    ok(any, "a");
    ok(any, 1);
    assert.deepEqual(issues(any, -1), [["", "anyOf"]]);
    assert.match(validateJsonSchema(any, -1)[0]!.message, /\[0\] \/: Expected string, got number \| \[1\] \/: Expected at least 0/);
    const one: JsonSchema = { oneOf: [{ type: "integer" }, { type: "number", minimum: 10 }] };
    ok(one, 1);
    ok(one, 10.5);
    assert.deepEqual(issues(one, 11), [["", "oneOf"]]);
    assert.match(validateJsonSchema(one, 11)[0]!.message, /matches 2/);
    assert.deepEqual(issues(one, "x"), [["", "oneOf"]]);
    const all: JsonSchema = { allOf: [{ type: "object", required: ["a"] }, { type: "object", required: ["b"] }] };
    ok(all, { a: 1, b: 2 });
    assert.deepEqual(issues(all, {}), [["/a", "required"], ["/b", "required"]]);
  });

  test("$ref to #/$defs and to # (recursion)", () => {
    const s: JsonSchema = {
      $defs: { node: { type: "object", properties: { v: { type: "number" }, kids: { type: "array", items: { $ref: "#/$defs/node" } } }, required: ["v"] } },
      $ref: "#/$defs/node",
    };
    ok(s, { v: 1, kids: [{ v: 2, kids: [{ v: 3 }] }] });
    assert.deepEqual(issues(s, { v: 1, kids: [{ v: 2, kids: [{}] }] }), [["/kids/0/kids/0/v", "required"]]);
    const list: JsonSchema = { type: "object", properties: { next: { anyOf: [{ type: "null" }, { $ref: "#" }] } } };
    ok(list, { next: { next: { next: null } } });
    const loop: JsonSchema = { $defs: { a: { $ref: "#/$defs/a" } }, $ref: "#/$defs/a" };
    assert.deepEqual(issues(loop, 1), [["", "$ref"]]);
  });

  test("boolean schemas", () => {
    ok(true, { anything: 1 });
    assert.deepEqual(issues(false, 1), [["", "false"]]);
    assert.deepEqual(issues({ type: "object", properties: { no: false } }, { no: 1 }), [["/no", "false"]]);
  });
});

describe("checkJsonSchema", () => {
  const paths = (s: unknown) => checkJsonSchema(s).map((i) => i.path);

  test("accepts the whole subset, with annotations", () => {
    assert.deepEqual(checkJsonSchema({
      $schema: "https://json-schema.org/draft/2020-12/schema",
      title: "T",
      description: "d",
      type: ["object", "null"],
      properties: { a: { type: "string", minLength: 1, maxLength: 9, pattern: "^a", format: "email", default: "a" } },
      required: ["a"],
      additionalProperties: { type: "number", minimum: 0, maximum: 1, exclusiveMinimum: -1, exclusiveMaximum: 2 },
      $defs: { x: { type: "array", items: { enum: [1] }, minItems: 0, maxItems: 2 } },
      anyOf: [{ $ref: "#/$defs/x" }, { const: null }],
      oneOf: [true],
      allOf: [{ deprecated: false }],
    }), []);
  });

  test("rejects unknown keywords, wrong types, bad patterns and dangling refs, each with its path", () => {
    assert.deepEqual(paths({ type: "object", requried: ["a"] }), ["/requried"]);
    assert.deepEqual(paths({ type: "str" }), ["/type"]);
    assert.deepEqual(paths({ type: [] }), ["/type"]);
    assert.deepEqual(paths({ properties: { a: { type: 1 }, b: { minLength: -1 } } }), ["/properties/a/type", "/properties/b/minLength"]);
    assert.deepEqual(paths({ pattern: "(" }), ["/pattern"]);
    assert.deepEqual(paths({ $ref: "#/$defs/missing" }), ["/$ref"]);
    assert.deepEqual(paths({ $ref: "other.json" }), ["/$ref"]);
    assert.deepEqual(paths({ anyOf: [] }), ["/anyOf"]);
    assert.deepEqual(paths({ items: { enum: [] } }), ["/items/enum"]);
    assert.deepEqual(paths({ required: ["a", "a"] }), ["/required"]);
    assert.deepEqual(paths({ exclusiveMinimum: true }), ["/exclusiveMinimum"]);
    assert.deepEqual(paths("string"), [""]);
    assert.deepEqual(paths(null), [""]);
  });
});
