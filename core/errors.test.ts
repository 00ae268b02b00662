import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode, errorMessage, KeelError, type KeelErrorJson } from "./errors.ts";

describe("KeelError", () => {
  test("carries its code, message, name and details, and is an Error", () => {
    const e = new KeelError("E_PLUGIN_DUPLICATE", 'Two plugins are named "a"; load it once', {
      details: { plugin: "a" },
    });
    assert.ok(e instanceof Error);
    assert.equal(e.name, "KeelError");
    assert.equal(e.code, "E_PLUGIN_DUPLICATE");
    assert.equal(e.message, 'Two plugins are named "a"; load it once');
    assert.deepEqual(e.details, { plugin: "a" });
    assert.equal(e.cause, undefined);
  });

  test("keeps the cause it was given", () => {
    const cause = new RangeError("too big");
    const e = new KeelError("E_SCRIPT_FAILED", "Script failed", { cause });
    assert.equal(e.cause, cause);
  });

  test("is() matches any KeelError, and a code only when it is the same", () => {
    const e = new KeelError("E_SERVICE_MISSING", "Missing");
    assert.equal(KeelError.is(e), true);
    assert.equal(KeelError.is(e, "E_SERVICE_MISSING"), true);
    assert.equal(KeelError.is(e, "E_SERVICE_DUPLICATE"), false);
  });

  test("is() is false for values that are not KeelErrors", () => {
    for (
      const v of [null, undefined, 0, "E_SERVICE_MISSING", new Error("x"), {
        code: "E_SERVICE_MISSING",
      }]
    ) {
      assert.equal(KeelError.is(v), false, `KeelError.is(${String(v)})`);
    }
  });

  test("is() recognizes an error from a second copy of the package by its Symbol.for brand", () => {
    // What another copy of errors.ts would build: not an instance of this KeelError class.
    const foreign = Object.assign(new Error("From elsewhere"), {
      code: "E_CAPABILITY_DENIED",
      [Symbol.for("keel.error")]: true,
    });
    assert.equal(foreign instanceof KeelError, false);
    assert.equal(KeelError.is(foreign), true);
    assert.equal(KeelError.is(foreign, "E_CAPABILITY_DENIED"), true);
    assert.equal(KeelError.is(foreign, "E_CAPABILITY_UNKNOWN"), false);
    // A brand with any value other than true is not a KeelError.
    assert.equal(
      KeelError.is({ code: "E_CAPABILITY_DENIED", [Symbol.for("keel.error")]: "yes" }),
      false,
    );
  });

  test("toJSON() and fromJSON() round-trip code, message and details", () => {
    const e = new KeelError("E_CAPABILITY_DENIED", 'Plugin "a" may not read "/etc"', {
      details: { plugin: "a", missing: ["read:/etc"] },
    });
    const wire = JSON.parse(JSON.stringify(e)) as KeelErrorJson;
    assert.deepEqual(wire, {
      name: "KeelError",
      code: "E_CAPABILITY_DENIED",
      message: 'Plugin "a" may not read "/etc"',
      details: { plugin: "a", missing: ["read:/etc"] },
    });
    const back = KeelError.fromJSON(wire);
    assert.ok(back instanceof KeelError);
    assert.equal(back.code, "E_CAPABILITY_DENIED");
    assert.equal(back.message, e.message);
    assert.deepEqual(back.details, e.details);
  });

  test("toJSON() reduces an Error cause to its name and message, nesting a KeelError cause", () => {
    const plain = new KeelError("E_SCRIPT_FAILED", "Outer", { cause: new TypeError("inner") });
    assert.deepEqual(plain.toJSON().cause, { name: "TypeError", message: "inner" });

    const nested = new KeelError("E_PLUGIN_SETUP_FAILED", "Outer", {
      cause: new KeelError("E_SERVICE_MISSING", "Inner", { details: { service: "s" } }),
    });
    assert.deepEqual(nested.toJSON().cause, {
      name: "KeelError",
      code: "E_SERVICE_MISSING",
      message: "Inner",
      details: { service: "s" },
    });

    const odd = new KeelError("E_SCRIPT_FAILED", "Outer", { cause: 42 });
    assert.equal(odd.toJSON().cause, "42");
    assert.equal("cause" in new KeelError("E_SCRIPT_FAILED", "No cause").toJSON(), false);
  });

  test("fromJSON() keeps the cause it is given", () => {
    const back = KeelError.fromJSON({
      name: "KeelError",
      code: "E_PLUGIN_CRASHED",
      message: "Crashed",
      cause: { name: "Error", message: "segfault" },
    });
    assert.deepEqual(back.cause, { name: "Error", message: "segfault" });
    assert.equal(back.details, undefined);
  });

  test("fromJSON() turns an unknown code into E_PLUGIN_PROTOCOL and keeps the message", () => {
    const back = KeelError.fromJSON({
      name: "KeelError",
      code: "E_NOT_A_REAL_CODE" as KeelErrorJson["code"],
      message: "Something from a newer plugin",
    });
    assert.equal(back.code, "E_PLUGIN_PROTOCOL");
    assert.equal(back.message, "Something from a newer plugin");
  });

  test("fromJSON() does not accept inherited property names as codes", () => {
    const back = KeelError.fromJSON({
      name: "KeelError",
      code: "toString" as KeelErrorJson["code"],
      message: "Sneaky",
    });
    assert.equal(back.code, "E_PLUGIN_PROTOCOL");
  });
});

describe("ErrorCode", () => {
  test("every code is E_ and upper case, with a one-line meaning that has no trailing period", () => {
    const entries = Object.entries(ErrorCode);
    assert.ok(entries.length > 30);
    for (const [code, meaning] of entries) {
      assert.match(code, /^E_[A-Z_]+$/);
      // A capital, or a function name like "createKernel()".
      assert.match(meaning, /^(?:[A-Z]|[a-z]\w*\(\))/, code);
      assert.doesNotMatch(meaning, /\.$|\n/, code);
    }
  });
});

describe("errorMessage", () => {
  test("gives an Error's message and stringifies anything else", () => {
    assert.equal(errorMessage(new Error("boom")), "boom");
    assert.equal(errorMessage(new KeelError("E_SCRIPT_FAILED", "Script failed")), "Script failed");
    assert.equal(errorMessage("plain"), "plain");
    assert.equal(errorMessage(undefined), "undefined");
  });
});
