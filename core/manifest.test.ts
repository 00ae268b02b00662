import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ErrorCodeName, KeelError } from "./errors.ts";
import { KERNEL_VERSION, manifestOf, validateManifest } from "./manifest.ts";
import type { PluginManifest } from "./plugin.ts";

const good = { name: "hello", version: "1.0.0", kernel: "^1" } as const;

/** Asserts that `value` fails validation with `code` and a message matching every pattern. */
function assertFails(value: unknown, code: ErrorCodeName, ...patterns: RegExp[]): KeelError {
  let caught: unknown;
  try {
    validateManifest(value);
  } catch (e) {
    caught = e;
  }
  assert.ok(KeelError.is(caught, code), `expected ${code}, got ${String(caught)}`);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

describe("validateManifest: good manifests", () => {
  test("returns a minimal manifest as given", () => {
    const m = { ...good };
    assert.equal(validateManifest(m), m);
  });

  test("accepts every optional field, scoped names and unknown fields", () => {
    const m = {
      name: "@acme/metrics.v2_x~y",
      version: "2.3.4-beta.1+build.5",
      kernel: ">=1.0.0 <2",
      requires: ["logger", "@acme/db"],
      capabilities: ["read:/data", "net:example.com:443", "env:AWS_*", "gpu"],
      enforce: "pre",
      description: "Metrics",
      futureField: { anything: true },
    };
    assert.equal(validateManifest(m).name, "@acme/metrics.v2_x~y");
    assert.equal(validateManifest({ ...good, enforce: "post" }).enforce, "post");
    assert.equal(validateManifest({ ...good, requires: [], capabilities: [] }).name, "hello");
  });

  test("checks the kernel range against kernelVersion when given", () => {
    assert.equal(
      validateManifest({ ...good, kernel: "^2" }, { kernelVersion: "2.1.0" }).kernel,
      "^2",
    );
    assert.equal(KERNEL_VERSION, "1.0.0");
  });

  test("resolves relative capability paths against base", () => {
    assert.equal(
      validateManifest({ ...good, capabilities: ["read:data"] }, { base: "/project" }).name,
      "hello",
    );
  });
});

describe("validateManifest: bad manifests", () => {
  test("not an object: null, an array, a string, a number, undefined", () => {
    assertFails(null, "E_MANIFEST_INVALID", /must be an object, got null/);
    assertFails([good], "E_MANIFEST_INVALID", /must be an object, got an array/);
    assertFails("hello", "E_MANIFEST_INVALID", /must be an object, got string/);
    assertFails(42, "E_MANIFEST_INVALID", /got number/);
    assertFails(undefined, "E_MANIFEST_INVALID", /got undefined/);
  });

  test("missing or empty name says to add one", () => {
    assertFails(
      { version: "1.0.0", kernel: "^1" },
      "E_MANIFEST_NAME",
      /has no "name"; add one like "my-plugin"/,
    );
    assertFails({ ...good, name: "" }, "E_MANIFEST_NAME", /has no "name"/);
  });

  test("malformed names are rejected and quoted", () => {
    for (
      const name of [
        "Hello",
        "my plugin",
        "-x",
        ".x",
        "@scope",
        "@/x",
        "a/b",
        "ünicode",
        "x".repeat(215),
      ]
    ) {
      assertFails(
        { ...good, name },
        "E_MANIFEST_NAME",
        /is not a valid package name; use lowercase letters/,
      );
    }
    assertFails({ ...good, name: "Hello" }, "E_MANIFEST_NAME", /Plugin name "Hello"/);
    assertFails({ ...good, name: 42 }, "E_MANIFEST_NAME", /Plugin name 42/);
  });

  test("a bad version names the plugin and shows a good one", () => {
    for (const version of ["1", "1.0", "one", "", "v1.0.0", " 1.0.0", undefined, 1]) {
      const e = assertFails(
        { ...good, version },
        "E_MANIFEST_VERSION",
        /^Plugin "hello" has version/,
        /use a version like "1\.0\.0"/,
      );
      assert.equal(e.details?.plugin, "hello");
    }
  });

  test("a malformed kernel range says what a range looks like", () => {
    for (const kernel of ["not a range", ">>1", "", "  ", undefined, 1]) {
      assertFails(
        { ...good, kernel },
        "E_MANIFEST_KERNEL_RANGE",
        /^Plugin "hello" has kernel range/,
        /use a range like "\^1"/,
      );
    }
  });

  test("a kernel range this kernel does not satisfy names both and says what to install", () => {
    const e = assertFails(
      { ...good, kernel: "^2" },
      "E_MANIFEST_KERNEL_RANGE",
      /Plugin "hello" needs kernel "\^2" but this kernel is 1\.0\.0/,
      /install a version of the plugin made for kernel 1/,
    );
    assert.equal(e.details?.plugin, "hello");
    assertFails({ ...good, kernel: "<1" }, "E_MANIFEST_KERNEL_RANGE");
  });

  test("an unknown capability kind is E_CAPABILITY_UNKNOWN with a suggestion", () => {
    assertFails(
      { ...good, capabilities: ["fs:/data"] },
      "E_CAPABILITY_UNKNOWN",
      /did you mean "read"\?/,
    );
  });

  test("a capability holding '..' is E_CAPABILITY_INVALID", () => {
    assertFails({ ...good, capabilities: ["read:/data/../etc"] }, "E_CAPABILITY_INVALID", /'\.\.'/);
  });

  test("a relative capability path without a base is E_CAPABILITY_INVALID", () => {
    assertFails({ ...good, capabilities: ["read:data"] }, "E_CAPABILITY_INVALID", /base directory/);
  });

  test("requires and capabilities must be lists of non-empty strings", () => {
    for (const field of ["requires", "capabilities"]) {
      for (const value of ["a", { a: 1 }, [1], [""], [null]]) {
        assertFails(
          { ...good, [field]: value },
          "E_MANIFEST_INVALID",
          new RegExp(`Plugin "hello" has "${field}" that is not a list of non-empty strings`),
        );
      }
    }
  });

  test("duplicate entries in requires or capabilities are named", () => {
    assertFails(
      { ...good, requires: ["a", "b", "a"] },
      "E_MANIFEST_INVALID",
      /Plugin "hello" lists "a" twice in "requires"/,
    );
    assertFails(
      { ...good, capabilities: ["gpu", "gpu"] },
      "E_MANIFEST_INVALID",
      /lists "gpu" twice in "capabilities"/,
    );
  });

  test("enforce must be pre or post", () => {
    for (const enforce of ["first", "PRE", 1, null]) {
      assertFails(
        { ...good, enforce },
        "E_MANIFEST_INVALID",
        /Plugin "hello" has enforce/,
        /use "pre", "post" or leave it out/,
      );
    }
  });

  test("description must be a string", () => {
    assertFails(
      { ...good, description: 42 },
      "E_MANIFEST_INVALID",
      /description that is not a string/,
    );
  });
});

describe("manifestOf", () => {
  test("keeps the manifest fields and drops setup and unknown fields", () => {
    const plugin = {
      ...good,
      requires: ["a"],
      capabilities: ["gpu"],
      enforce: "post",
      description: "d",
      setup: () => {},
      extra: 1,
    } as unknown as PluginManifest;
    assert.deepEqual(manifestOf(plugin), {
      name: "hello",
      version: "1.0.0",
      kernel: "^1",
      requires: ["a"],
      capabilities: ["gpu"],
      enforce: "post",
      description: "d",
    });
    assert.deepEqual(manifestOf({ ...good }), { ...good });
  });
});
