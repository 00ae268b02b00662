import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../core/errors.ts";
import { validateKeelField } from "./keel-field.ts";

function refuses(value: unknown, pattern: RegExp, files?: string[]): void {
  assert.throws(() => validateKeelField(value, files), (e: unknown) => KeelError.is(e, "E_REGISTRY_MANIFEST_INVALID") && pattern.test(e.message));
}

describe("the keel field", () => {
  test("accepts an entry inside the package, parsed capabilities and a kernel range", () => {
    assert.deepEqual(
      validateKeelField({ entry: "./dist/plugin.js", capabilities: ["net:api.example.com:443", "read:./data", "env:HOME", "gpu"], kernel: ">=1 <3" }, ["dist/plugin.js"]),
      { entry: "dist/plugin.js", capabilities: ["net:api.example.com:443", "read:./data", "env:HOME", "gpu"], kernel: ">=1 <3" },
    );
    assert.deepEqual(validateKeelField({ entry: "a.js", capabilities: [], kernel: "^1" }).capabilities, []);
  });

  test("refuses what would let a plugin escape or mislead", () => {
    refuses(null, /must be an object/);
    refuses([], /must be an object/);
    refuses({ entry: "a.js", capabilities: [], kernel: "^1", extra: 1 }, /unknown key/);
    refuses({ capabilities: [], kernel: "^1" }, /keel\.entry" must be a string/);
    refuses({ entry: "../a.js", capabilities: [], kernel: "^1" }, /leave the package/);
    refuses({ entry: "a/../../b.js", capabilities: [], kernel: "^1" }, /leave the package/);
    refuses({ entry: "/etc/passwd", capabilities: [], kernel: "^1" }, /absolute/);
    refuses({ entry: "C:/x.js", capabilities: [], kernel: "^1" }, /absolute/);
    refuses({ entry: "a\\b.js", capabilities: [], kernel: "^1" }, /backslash/);
    refuses({ entry: "a//b.js", capabilities: [], kernel: "^1" }, /empty/);
    refuses({ entry: "gone.js", capabilities: [], kernel: "^1" }, /not in the tarball/, ["index.js"]);
    refuses({ entry: "a.js", capabilities: ["fly"], kernel: "^1" }, /Unknown capability kind "fly"/);
    refuses({ entry: "a.js", capabilities: ["net", "net"], kernel: "^1" }, /twice/);
    refuses({ entry: "a.js", capabilities: [1], kernel: "^1" }, /capability string/);
    refuses({ entry: "a.js", capabilities: ["read:../x"], kernel: "^1" }, /'\.\.'/);
    refuses({ entry: "a.js", capabilities: Array.from({ length: 65 }, (_, i) => `env:A${i}`), kernel: "^1" }, /the most is 64/);
    refuses({ entry: "a.js", capabilities: [], kernel: "" }, /not a semver range/);
    refuses({ entry: "a.js", capabilities: [], kernel: 1 }, /not a semver range/);
  });

  test("runtimes: optional, a non-empty list of known runtimes, each once", () => {
    assert.deepEqual(validateKeelField({ entry: "a.js", capabilities: [], kernel: "^1", runtimes: ["deno", "edge"] }).runtimes, ["deno", "edge"]);
    assert.equal("runtimes" in validateKeelField({ entry: "a.js", capabilities: [], kernel: "^1" }), false);
    refuses({ entry: "a.js", capabilities: [], kernel: "^1", runtimes: [] }, /keel\.runtimes/);
    refuses({ entry: "a.js", capabilities: [], kernel: "^1", runtimes: ["deno", "deno"] }, /each once/);
    refuses({ entry: "a.js", capabilities: [], kernel: "^1", runtimes: ["browser"] }, /"deno", "bun", "node", "edge"/);
    refuses({ entry: "a.js", capabilities: [], kernel: "^1", runtimes: "deno" }, /keel\.runtimes/);
  });
});
