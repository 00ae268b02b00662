/**
 * End to end: `keel exec`, spawned through the real `./keel` launcher (and once through
 * `bun cli/main.ts`), with the code-mode example tools.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const BUN = joinPath(ROOT, "node_modules/.bin/bun");
const TOOLS = "examples/code-mode/tools.ts";
const PLAN = "examples/code-mode/plan.js";
/** Spawning keel, and the sandbox's first process, take a moment. */
const SLOW = { timeout: 60_000 };

let runtime: Runtime;
let temp: string;

async function keel(args: readonly string[], options: { via?: "launcher" | "bun" } = {}): Promise<ProcessOutput> {
  const bun = options.via === "bun";
  return await runtime.processes!.run(bun ? BUN : LAUNCHER, {
    args: bun ? [joinPath(ROOT, "cli/main.ts"), ...args] : [...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", KEEL_DEBUG: "" },
    stdin: "null",
  });
}

function explain(r: ProcessOutput): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** Asserts a failed command: its exit code, the `code:` line, and nothing on stdout. */
function failedWith(r: ProcessOutput, exit: number, code: string, message?: RegExp): void {
  assert.equal(r.code, exit, explain(r));
  assert.match(r.stderr, new RegExp(`code: ${code}\\b`), explain(r));
  if (message) assert.match(r.stderr, message, explain(r));
  assert.equal(r.stdout, "", explain(r));
}

before(async () => {
  runtime = await detectRuntime();
  temp = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-cli-exec-"));
  await runtime.fs!.writeTextFile(joinPath(temp, "throws.js"), 'console.log("about to fail");\nthrow new Error("the plan is wrong");\n');
  await runtime.fs!.writeTextFile(joinPath(temp, "spin.js"), "while (true) {}\n");
  await runtime.fs!.writeTextFile(joinPath(temp, "no-tools.ts"), "export const helper = 1;\n");
  await runtime.fs!.writeTextFile(joinPath(temp, "broken.ts"), "export default [ this is not code\n");
  await runtime.fs!.writeTextFile(
    joinPath(temp, "another-add.ts"),
    'export const tools = [{ name: "add", description: "Also adds", inputSchema: { type: "object" }, run: () => 0 }];\n',
  );
});

after(async () => {
  await runtime.fs!.remove(temp);
});

describe("keel exec", () => {
  test("runs the plan with the example tools: the result on stdout, its logs on stderr", SLOW, async () => {
    const r = await keel(["exec", PLAN, "--tool", TOOLS, "--context", '{"userId":"u1"}']);
    assert.equal(r.code, 0, explain(r));
    assert.deepEqual(JSON.parse(r.stdout), { user: "u1", warmest: "Lisbon", meanTemperatureC: 11.7, sunny: ["Lisbon"] });
    assert.match(r.stderr, /^tools: add, weather, whoami$/m);
    assert.match(r.stderr, /^checked 3 cities for u1$/m);
  });

  test("--json prints the whole result: value, logs, tool calls, correlation id, sandbox", SLOW, async () => {
    const r = await keel(["exec", PLAN, "--tool", TOOLS, "--json"]);
    assert.equal(r.code, 0, explain(r));
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(r.stdout.trim().split("\n").length, 1);
    assert.deepEqual(out.result, { user: null, warmest: "Lisbon", meanTemperatureC: 11.7, sunny: ["Lisbon"] });
    assert.deepEqual(out.logs, ["tools: add, weather, whoami", "checked 3 cities for nobody"]);
    assert.equal(out.toolCalls, 6); // __list__, three weather, add, whoami
    assert.equal(out.logsTruncated, false);
    assert.match(String(out.correlationId), /^exec-/);
    assert.equal(typeof out.sandbox, "string");
    assert.equal(out.error, undefined);
  });

  test("--backend quickjs runs the same plan in QuickJS", SLOW, async () => {
    const r = await keel(["exec", PLAN, "--tool", TOOLS, "--backend", "quickjs", "--json"]);
    assert.equal(r.code, 0, explain(r));
    const out = JSON.parse(r.stdout) as { sandbox: string; result: { warmest: string } };
    assert.equal(out.sandbox, "quickjs");
    assert.equal(out.result.warmest, "Lisbon");
  });

  test("reads the code from stdin with -", SLOW, async () => {
    const r = await runtime.processes!.run("sh", {
      args: ["-c", `printf '%s' 'await tools.add({ numbers: [1, 2, 3.5] })' | "${LAUNCHER}" exec - --tool ${TOOLS}`],
      cwd: ROOT,
      env: { NO_COLOR: "1", KEEL_DEBUG: "" },
    });
    assert.equal(r.code, 0, explain(r));
    assert.equal(r.stdout, "6.5\n");
  });

  test("runs on Bun too (bun cli/main.ts)", SLOW, async () => {
    const r = await keel(["exec", PLAN, "--tool", TOOLS, "--context", '{"userId":"b"}'], { via: "bun" });
    assert.equal(r.code, 0, explain(r));
    assert.equal((JSON.parse(r.stdout) as { user: string }).user, "b");
  });

  test("code that throws exits 1 with the coded error; its logs still reach stderr", SLOW, async () => {
    const r = await keel(["exec", joinPath(temp, "throws.js")]);
    failedWith(r, 1, "E_SANDBOX_CODE_FAILED", /✖ .*the plan is wrong/);
    assert.match(r.stderr, /^about to fail$/m);
  });

  test("with --json a failure prints the whole result once, with the error, and exits 1", SLOW, async () => {
    const r = await keel(["exec", joinPath(temp, "throws.js"), "--json"]);
    assert.equal(r.code, 1, explain(r));
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, 1, explain(r));
    const out = JSON.parse(lines[0]!) as { error: { code: string; message: string }; logs: string[]; result?: unknown };
    assert.equal(out.error.code, "E_SANDBOX_CODE_FAILED");
    assert.match(out.error.message, /the plan is wrong/);
    assert.deepEqual(out.logs, ["about to fail"]);
    assert.equal("result" in out, false);
  });

  test("a tool error the code does not catch exits 1 with the tool's code", SLOW, async () => {
    const code = joinPath(temp, "bad-city.js");
    await runtime.fs!.writeTextFile(code, 'return await tools.weather({ city: "Atlantis" });\n');
    const r = await keel(["exec", code, "--tool", TOOLS]);
    failedWith(r, 1, "E_TOOL_FAILED", /No weather for "Atlantis"/);
  });

  test("--timeout stops runaway code: E_SANDBOX_TIMEOUT, exit 1", SLOW, async () => {
    const r = await keel(["exec", joinPath(temp, "spin.js"), "--timeout", "300"]);
    failedWith(r, 1, "E_SANDBOX_TIMEOUT");
  });
});

describe("keel exec: bad input", () => {
  test("no file is a usage error (exit 2)", SLOW, async () => {
    failedWith(await keel(["exec", "--tool", TOOLS]), 2, "E_CLI_USAGE", /keel exec needs the code to run/);
  });

  test("a missing file is E_SCRIPT_NOT_FOUND (exit 2); a directory cannot be read (exit 2)", SLOW, async () => {
    failedWith(await keel(["exec", "no-such-plan.js"]), 2, "E_SCRIPT_NOT_FOUND", /Code file "no-such-plan\.js" does not exist/);
    failedWith(await keel(["exec", temp]), 2, "E_CLI_USAGE", /Cannot read code file/);
  });

  test("--context that is not a JSON object is a usage error (exit 2)", SLOW, async () => {
    failedWith(await keel(["exec", PLAN, "--context", "{userId: u1}"]), 2, "E_CLI_USAGE", /--context takes a JSON object.*is not JSON/);
    failedWith(await keel(["exec", PLAN, "--context", "[1,2]"]), 2, "E_CLI_USAGE", /--context takes a JSON object.*got an array/);
  });

  test("--backend, --timeout and --memory are checked (exit 2)", SLOW, async () => {
    failedWith(await keel(["exec", PLAN, "--backend", "docker"]), 2, "E_CLI_USAGE", /--backend takes "auto", "process", "quickjs"; got "docker"/);
    failedWith(await keel(["exec", PLAN, "--timeout", "soon"]), 2, "E_CLI_USAGE", /--timeout takes a whole number/);
    failedWith(await keel(["exec", PLAN, "--timeout", "999999999"]), 2, "E_CLI_USAGE", /--timeout is at most 300000/);
    failedWith(await keel(["exec", PLAN, "--memory", "0"]), 2, "E_CLI_USAGE", /--memory takes a whole number of at least 1/);
  });

  test("--plugin is refused: code mode takes its tools from --tool (exit 2)", SLOW, async () => {
    failedWith(await keel(["exec", PLAN, "--plugin", "./p.ts"]), 2, "E_CLI_USAGE", /keel exec does not take --plugin/);
  });

  test("a missing tool module (exit 2), one with no tools, and one that does not parse (exit 1)", SLOW, async () => {
    failedWith(await keel(["exec", PLAN, "--tool", "./nope.ts"]), 2, "E_CONFIG_LOAD_FAILED", /Tool module "\.\/nope\.ts" does not exist/);
    failedWith(
      await keel(["exec", PLAN, "--tool", joinPath(temp, "no-tools.ts")]),
      1,
      "E_CONFIG_INVALID",
      /exports no tools \(its exports: "helper"\)/,
    );
    failedWith(await keel(["exec", PLAN, "--tool", joinPath(temp, "broken.ts")]), 1, "E_CONFIG_LOAD_FAILED", /could not be imported/);
  });

  test("two tool modules defining one name is E_TOOL_DUPLICATE naming both (exit 1); one module twice is fine", SLOW, async () => {
    failedWith(
      await keel(["exec", PLAN, "--tool", TOOLS, "--tool", joinPath(temp, "another-add.ts")]),
      1,
      "E_TOOL_DUPLICATE",
      /Tool "add" is defined twice, in "examples\/code-mode\/tools\.ts" and in ".*another-add\.ts"; rename one/,
    );
    const r = await keel(["exec", PLAN, "--tool", TOOLS, "--tool", `./${TOOLS}`]);
    assert.equal(r.code, 0, explain(r));
  });
});
