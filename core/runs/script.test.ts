import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../errors.ts";
import { captureConsole, formatArgs } from "./capture.ts";
import { createRunId, RUN_ID_PATTERN } from "./ids.ts";
import { checkResult } from "./result.ts";
import { freshSpecifier, importStyleFor, pickEntrypoint, resolveParams } from "./script.ts";

function throwsCode(fn: () => unknown, code: string, pattern?: RegExp): KeelError {
  try {
    fn();
  } catch (e) {
    assert.ok(KeelError.is(e), `expected a KeelError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return e;
  }
  assert.fail(`expected ${code}`);
}

describe("pickEntrypoint", () => {
  const fn = () => 1;
  test("named, then default, then main, then run", () => {
    assert.equal(pickEntrypoint({ default: fn, main: fn, train: fn }, "train").name, "train");
    assert.equal(pickEntrypoint({ default: fn, main: fn, run: fn }, undefined).name, "default");
    assert.equal(pickEntrypoint({ main: fn, run: fn }, undefined).name, "main");
    assert.equal(pickEntrypoint({ run: fn }, undefined).name, "run");
  });

  test("none: E_SCRIPT_ENTRYPOINT lists the exports", () => {
    throwsCode(
      () => pickEntrypoint({ params: {}, main: "no" }, undefined, "x.ts"),
      "E_SCRIPT_ENTRYPOINT",
      /Script "x\.ts" has no entrypoint \(it exports "main", "params"\)/,
    );
    throwsCode(() => pickEntrypoint({}, undefined), "E_SCRIPT_ENTRYPOINT", /it exports nothing/);
  });

  test("a named entrypoint that is missing suggests a near one", () => {
    throwsCode(
      () => pickEntrypoint({ train: fn, params: {} }, "trian", "x.ts"),
      "E_SCRIPT_ENTRYPOINT",
      /no function "trian" \(did you mean "train"\?\)/,
    );
  });
});

describe("resolveParams", () => {
  test("overrides replace defaults; coerce converts strings", () => {
    const { params, unknown } = resolveParams({ lr: 0.1, on: false, name: "a" }, {
      lr: "0.5",
      on: "yes",
    }, { coerce: true });
    assert.deepEqual(params, { lr: 0.5, on: true, name: "a" });
    assert.deepEqual(unknown, []);
  });

  test("not strict: a new key passes and is reported", () => {
    const { params, unknown } = resolveParams({ lr: 0.1 }, { warmup: 100 });
    assert.deepEqual(params, { lr: 0.1, warmup: 100 });
    assert.deepEqual(unknown, ["warmup"]);
  });

  test("not strict: a likely typo is refused with a suggestion", () => {
    throwsCode(
      () => resolveParams({ name: "x", times: 1 }, { nmae: "y" }, { script: "hello.ts" }),
      "E_CONFIG_INVALID",
      /no param "nmae" \(did you mean "name"\?\)/,
    );
  });

  test("strict: every unknown key is refused", () => {
    throwsCode(
      () => resolveParams({ lr: 0.1 }, { warmup: 100 }, { strict: true, script: "t.ts" }),
      "E_CONFIG_UNKNOWN_KEY",
      /Script "t\.ts" has no param "warmup"/,
    );
  });

  test("a value that cannot be coerced names the key and the type", () => {
    throwsCode(
      () => resolveParams({ epochs: 10 }, { epochs: "ten" }, { coerce: true }),
      "E_CONFIG_INVALID",
      /"epochs" expects a number/,
    );
  });
});

describe("checkResult", () => {
  test("accepts JSON data and undefined", () => {
    checkResult(undefined);
    checkResult(null);
    assert.equal(checkResult({ a: [1, "x", true, null, { c: 1 }] }), false);
    assert.equal(checkResult({ a: [{ b: undefined }] }), true, "reports a property JSON drops");
  });

  for (
    const [name, value, path] of [
      ["a BigInt", { m: [{ loss: 1n }] }, "result.m[0].loss"],
      ["a function", { f: () => 1 }, "result.f"],
      ["a symbol", [Symbol("s")], "result[0]"],
      ["a Map", { "odd key": new Map() }, 'result["odd key"]'],
      ["NaN", { loss: Number.NaN }, "result.loss"],
      ["a Date", { at: new Date(0) }, "result.at"],
    ] as const
  ) {
    test(`refuses ${name}, naming its path`, () => {
      const e = throwsCode(() => checkResult(value, { script: "s.ts" }), "E_SCRIPT_RESULT");
      assert.ok(e.message.includes(`${path} is`), e.message);
      assert.equal(e.details?.path, path);
    });
  }

  test("refuses a cycle", () => {
    const node: Record<string, unknown> = {};
    node.self = node;
    throwsCode(
      () => checkResult({ node }),
      "E_SCRIPT_RESULT",
      /result\.node\.self is a reference back/,
    );
  });

  test("a shared (not cyclic) object is fine", () => {
    const shared = { a: 1 };
    checkResult({ x: shared, y: shared });
  });
});

describe("captureConsole", () => {
  test("routes console methods to stdout and stderr and restores them", () => {
    const original = console.log;
    const lines: string[] = [];
    const restore = captureConsole((stream, text) => lines.push(`${stream}|${text}`));
    try {
      console.log("a", 1, { b: 2 });
      console.info("i");
      console.warn("w");
      console.error("e");
      console.assert(false, "bad");
      console.assert(true, "fine");
    } finally {
      restore();
    }
    assert.equal(console.log, original);
    assert.deepEqual(lines, [
      'stdout|a 1 {"b":2}\n',
      "stdout|i\n",
      "stderr|w\n",
      "stderr|e\n",
      "stderr|Assertion failed: bad\n",
    ]);
  });

  test("formatArgs uses the host's inspect when given", () => {
    assert.equal(formatArgs(["x", 1n], (v) => `<${String(v)}>`), "x <1>");
  });
});

describe("run ids and fresh imports", () => {
  test("ids are time-prefixed, unique and increasing", () => {
    const at = new Date("2026-11-21T20:45:12.000Z");
    const ids = Array.from({ length: 500 }, () => createRunId(at));
    assert.ok(ids.every((id) => RUN_ID_PATTERN.test(id) && id.startsWith("20261121-204512-")));
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual([...ids].sort(), ids);
  });

  test("Bun imports fresh by path, the others by file URL", () => {
    assert.equal(importStyleFor("bun"), "path");
    assert.equal(importStyleFor("deno"), "url");
    assert.match(freshSpecifier("/a/b.ts", "path"), /^\/a\/b\.ts\?keel-run=/);
    assert.match(freshSpecifier("/a/b.ts", "url"), /^file:\/\/\/a\/b\.ts\?keel-run=/);
  });
});
