/**
 * End to end: the real `./keel` launcher (Deno) and `bun cli/main.ts`, spawned as a user would,
 * through the runtime's own process API (so the file runs the same under `deno test` and
 * `bun test`). Also the `npm run demo` tour.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { symlink } from "node:fs/promises";
import { fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const BUN = joinPath(ROOT, "node_modules/.bin/bun");
const DENO = joinPath(ROOT, "node_modules/.bin/deno");
/** Spawning a Deno or Bun process takes a moment; the tour boots an isolated plugin. */
const SLOW = { timeout: 60_000 };

let runtime: Runtime;
let temp: string;

interface Result extends ProcessOutput {
  readonly json: () => unknown;
}

/** Runs the CLI: the launcher, or `bun cli/main.ts`. */
async function keel(
  args: readonly string[],
  options: { cwd?: string; via?: "launcher" | "bun"; bin?: string } = {},
): Promise<Result> {
  const via = options.via ?? "launcher";
  const command = options.bin ?? (via === "bun" ? BUN : LAUNCHER);
  const argv = via === "bun" ? [joinPath(ROOT, "cli/main.ts"), ...args] : [...args];
  const output = await runtime.processes!.run(command, {
    args: argv,
    cwd: options.cwd ?? ROOT,
    env: { NO_COLOR: "1", KEEL_DEBUG: "" },
    stdin: "null",
  });
  return { ...output, json: () => JSON.parse(output.stdout) };
}

function explain(r: ProcessOutput): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

before(async () => {
  runtime = await detectRuntime();
  temp = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-cli-"));
  await runtime.fs!.writeTextFile(
    joinPath(temp, "count.ts"),
    "export const params = { n: 2, label: 'x', loud: false };\n" +
      "export default (p: { n: number; label: string; loud: boolean }) => ({ items: Array.from({ length: p.n }, () => p.label), loud: p.loud });\n",
  );
  await runtime.fs!.writeTextFile(
    joinPath(temp, "throws.ts"),
    "export function main(): never {\n  throw new Error('the model diverged');\n}\n",
  );
});

after(async () => {
  await runtime.fs!.remove(temp);
});

for (const via of ["launcher", "bun"] as const) {
  describe(`keel via ${via === "launcher" ? "./keel (Deno)" : "bun cli/main.ts"}`, () => {
    test("--version prints the package, kernel and runtime versions", SLOW, async () => {
      const r = await keel(["--version"], { via });
      assert.equal(r.code, 0, explain(r));
      const pkg = JSON.parse(await runtime.fs!.readTextFile(joinPath(ROOT, "package.json"))) as {
        version: string;
      };
      const name = via === "launcher" ? "deno" : "bun";
      assert.match(
        r.stdout.trim(),
        new RegExp(
          `^keel ${
            pkg.version.replaceAll(".", "\\.")
          } \\(kernel \\d+\\.\\d+\\.\\d+, ${name} \\d+\\.\\d+\\.\\d+`,
        ),
      );
    });

    test("--help lists the commands and the common flags", SLOW, async () => {
      const r = await keel(["--help"], { via });
      assert.equal(r.code, 0, explain(r));
      for (const word of ["USAGE", "run", "plugins", "--plugin", "--allow", "--trust"]) {
        assert.ok(r.stdout.includes(word), word);
      }
      assert.ok(!r.stdout.includes("\u001b["), "no colors with NO_COLOR");
      const runHelp = await keel(["run", "--help"], { via });
      assert.equal(runHelp.code, 0, explain(runHelp));
      assert.match(runHelp.stdout, /--set/);
      assert.match(runHelp.stdout, /--entrypoint/);
    });

    test("plugins --json lists executor-script, in-process and first-party", SLOW, async () => {
      const r = await keel(["plugins", "--json"], { via });
      assert.equal(r.code, 0, explain(r));
      const rows = r.json() as {
        name: string;
        mode: string;
        status: string;
        source: string;
        hooks: string[];
      }[];
      const script = rows.find((p) => p.name === "executor-script");
      assert.ok(script, r.stdout);
      assert.equal(script.mode, "in-process");
      assert.equal(script.status, "loaded");
      assert.equal(script.source, "first-party");
      assert.deepEqual(script.hooks, ["resolveExecutor"]);
    });

    test(
      "run examples/hello/hello.ts --set name=Ada --json returns the greeting",
      SLOW,
      async () => {
        // From a temp dir, so the run's record does not land in the checkout.
        const hello = joinPath(ROOT, "examples/hello/hello.ts");
        const r = await keel(["run", hello, "--set", "name=Ada", "--json"], { via, cwd: temp });
        assert.equal(r.code, 0, explain(r));
        const report = r.json() as { ok: boolean; result: unknown; runId: string; script: string };
        assert.equal(report.ok, true);
        assert.deepEqual(report.result, { greeting: "Hello, Ada!" });
        assert.equal(report.script, joinPath(ROOT, "examples/hello/hello.ts"));
        assert.match(report.runId, /^\d{8}-\d{6}-[0-9a-f]{6}$/); // a run id: sortable, time first
      },
    );

    test("--set values take the type of the default", SLOW, async () => {
      const r = await keel([
        "run",
        "count.ts",
        "--set",
        "n=3",
        "--set=label=y",
        "--set",
        "loud=true",
        "--json",
      ], { via, cwd: temp });
      assert.equal(r.code, 0, explain(r));
      assert.deepEqual((r.json() as { result: unknown }).result, {
        items: ["y", "y", "y"],
        loud: true,
      });
    });

    test("a missing script exits 1 with E_SCRIPT_NOT_FOUND", SLOW, async () => {
      const r = await keel(["run", "no-such-script.ts"], { via, cwd: temp });
      assert.equal(r.code, 1, explain(r));
      assert.match(r.stderr, /✖ Script "no-such-script\.ts" does not exist/);
      assert.match(r.stderr, /code: E_SCRIPT_NOT_FOUND/);
      assert.ok(r.stderr.includes(joinPath(temp, "no-such-script.ts")), "names where it looked");
    });

    test("--set of an unknown key exits 1 with a suggestion", SLOW, async () => {
      const r = await keel(
        ["run", joinPath(ROOT, "examples/hello/hello.ts"), "--set", "nmae=Ada"],
        {
          via,
          cwd: temp,
        },
      );
      assert.equal(r.code, 1, explain(r));
      assert.match(r.stderr, /no param "nmae" \(did you mean "name"\?\)/);
      assert.match(r.stderr, /code: E_CONFIG_INVALID/);
    });

    test("a script that throws exits 1 with E_SCRIPT_FAILED and no stack trace", SLOW, async () => {
      const r = await keel(["run", "throws.ts"], { via, cwd: temp });
      assert.equal(r.code, 1, explain(r));
      assert.match(r.stderr, /✖ Script "throws\.ts" failed in main\(\): the model diverged/);
      assert.match(r.stderr, /code: E_SCRIPT_FAILED/);
      assert.doesNotMatch(r.stderr, /^\s+at /m);
      const debug = await keel(["run", "throws.ts", "--debug"], { via, cwd: temp });
      assert.equal(debug.code, 1, explain(debug));
      assert.match(debug.stderr, /^\s+at /m, "--debug shows the stack");
    });

    test("--json reports a failure as JSON too", SLOW, async () => {
      const r = await keel(["run", "throws.ts", "--json"], { via, cwd: temp });
      assert.equal(r.code, 1, explain(r));
      const report = r.json() as { ok: boolean; error: { code: string } };
      assert.equal(report.ok, false);
      assert.equal(report.error.code, "E_SCRIPT_FAILED");
    });

    test("usage errors exit 2", SLOW, async () => {
      const hello = joinPath(ROOT, "examples/hello/hello.ts");
      const flag = await keel(["run", hello, "--sett", "name=Ada"], { via, cwd: temp });
      assert.equal(flag.code, 2, explain(flag));
      assert.match(flag.stderr, /Unknown flag "--sett"; did you mean --set\?/);
      assert.match(flag.stderr, /code: E_CLI_USAGE/);
      const command = await keel(["rnu"], { via, cwd: temp });
      assert.equal(command.code, 2, explain(command));
      assert.match(command.stderr, /did you mean "run"\?/);
      const set = await keel(["run", hello, "--set", "name"], { via, cwd: temp });
      assert.equal(set.code, 2, explain(set));
    });

    test("a --plugin asking for an ungranted capability is refused, naming it", SLOW, async () => {
      const r = await keel([
        "run",
        joinPath(ROOT, "examples/hello/hello.ts"),
        "--plugin",
        joinPath(ROOT, "examples/hello/net-plugin.ts"),
      ], { via, cwd: temp });
      assert.equal(r.code, 1, explain(r));
      assert.match(r.stderr, /code: E_CAPABILITY_DENIED/);
      assert.match(r.stderr, /"net:api\.example\.com:443"/);
      assert.match(r.stderr, /--allow net:api\.example\.com:443/);
    });

    test("keel plugins lists a --plugin as isolated, and denied until granted", SLOW, async () => {
      const denied = await keel(["plugins", "--json", "--plugin", "examples/hello/net-plugin.ts"], {
        via,
      });
      assert.equal(denied.code, 0, explain(denied));
      const row = (denied.json() as {
        name: string;
        status: string;
        mode: string;
        capabilities: { capability: string; granted: boolean }[];
      }[])
        .find((p) => p.name === "weather");
      assert.ok(row, denied.stdout);
      assert.equal(row.status, "denied");
      assert.equal(row.mode, "isolated");
      assert.deepEqual(row.capabilities, [{
        capability: "net:api.example.com:443",
        granted: false,
        fullTrust: false,
      }]);

      const granted = await keel([
        "plugins",
        "--json",
        "--plugin",
        "examples/hello/net-plugin.ts",
        "--allow",
        "weather=net:api.example.com:443",
      ], { via });
      assert.equal(granted.code, 0, explain(granted));
      const loaded =
        (granted.json() as { name: string; status: string; capabilities: { granted: boolean }[] }[])
          .find((p) => p.name === "weather");
      assert.equal(loaded?.status, "loaded");
      assert.equal(loaded?.capabilities[0]?.granted, true);
    });
  });
}

describe("the ./keel launcher", () => {
  test(
    "runs from another directory, resolving paths against it, through a symlink",
    SLOW,
    async () => {
      const link = joinPath(temp, "bin-keel");
      await symlink(LAUNCHER, link);
      const r = await keel(["run", "count.ts", "--set", "n=1", "--json"], { cwd: temp, bin: link });
      assert.equal(r.code, 0, explain(r));
      const report = r.json() as { script: string; result: unknown };
      assert.equal(report.script, joinPath(temp, "count.ts"));
      assert.deepEqual(report.result, { items: ["x"], loud: false });
    },
  );

  test("uses the permission flags of deno.json's keel task, as cli/bin.mjs does", async () => {
    const config = JSON.parse(await runtime.fs!.readTextFile(joinPath(ROOT, "deno.json"))) as {
      tasks: Record<string, string>;
    };
    const flags = config.tasks.keel!.split(/\s+/).filter((w) => w.startsWith("--"));
    assert.ok(flags.length > 0);
    const launcher = await runtime.fs!.readTextFile(LAUNCHER);
    const bin = await runtime.fs!.readTextFile(joinPath(ROOT, "cli/bin.mjs"));
    for (const flag of flags) {
      assert.ok(launcher.includes(flag), `./keel passes ${flag}`);
      assert.ok(bin.includes(`"${flag}"`), `cli/bin.mjs passes ${flag}`);
    }
  });
});

describe("cli/bin.mjs, the package's bin", () => {
  test("under Bun it runs the CLI in-process", SLOW, async () => {
    const r = await runtime.processes!.run(BUN, {
      args: ["cli/bin.mjs", "--version"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
    });
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stdout, /^keel \S+ \(kernel \S+, bun /);
  });

  test("under Node it runs Deno, passing the exit code through", SLOW, async (t) => {
    const node = await runtime.processes!.run("node", { args: ["--version"], stdin: "null" }).catch(
      () => undefined,
    );
    if (!node?.success) {
      t.skip("node is not installed");
      return;
    }
    const ok = await runtime.processes!.run("node", {
      args: ["cli/bin.mjs", "--version"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
    });
    assert.equal(ok.code, 0, explain(ok));
    assert.match(ok.stdout, /^keel \S+ \(kernel \S+, deno /);
    const missing = await runtime.processes!.run("node", {
      args: [joinPath(ROOT, "cli/bin.mjs"), "run", "nope.ts"],
      cwd: temp,
      env: { NO_COLOR: "1" },
      stdin: "null",
    });
    assert.equal(missing.code, 1, explain(missing));
    assert.match(missing.stderr, /code: E_SCRIPT_NOT_FOUND/);
  });
});

describe("the tour", () => {
  test("npm run demo exits 0 and shows the capability refusal", SLOW, async () => {
    const pkg = JSON.parse(await runtime.fs!.readTextFile(joinPath(ROOT, "package.json"))) as {
      scripts: Record<string, string>;
    };
    const [program, ...args] = pkg.scripts.demo!.split(/\s+/);
    assert.equal(program, "deno");
    // From a temp dir, so the tour's run records do not land in the checkout.
    const r = await runtime.processes!.run(DENO, {
      args: args.map((a) => (a.endsWith(".ts") ? joinPath(ROOT, a) : a)),
      cwd: temp,
      env: { NO_COLOR: "1" },
      stdin: "null",
    });
    assert.equal(r.code, 0, explain(r));
    const text = r.stdout + r.stderr;
    assert.match(text, /E_CAPABILITY_DENIED/);
    assert.match(text, /net:api\.example\.com:443/);
    assert.match(text, /Hello, world!/);
    assert.match(text, /Workflow succeeded: \{"result":"sum=42, product=42"\}/);
    assert.match(text, /Code that loops forever: E_SANDBOX_TIMEOUT/);
    assert.match(text, /keel add without approval: E_CAPABILITY_DENIED/);
    assert.match(text, /\[tour-greeter\] Hello, Ada, from process \d+/);
    assert.match(text, /Training on (webgpu|cpu): /);
    assert.match(text, /epoch 3\/3 \[█+\] 43\/43 .*val_accuracy 0\.\d{4}/);
    const accuracy = Number(/held-out test accuracy ([\d.]+)%/.exec(text)?.[1]);
    assert.ok(accuracy > 85, `the tour's MNIST model reaches ${accuracy}% on held-out digits`);
    assert.match(text, /onnxruntime-web agrees on 16 digits within \d\.\de-[5-9]/);
  });

  test("bun examples/tour.ts exits 0", SLOW, async () => {
    const r = await runtime.processes!.run(BUN, {
      args: [joinPath(ROOT, "examples/tour.ts")],
      cwd: temp,
      env: { NO_COLOR: "1" },
      stdin: "null",
    });
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stdout + r.stderr, /E_CAPABILITY_DENIED/);
    assert.match(r.stdout + r.stderr, /\[tour-greeter\] Hello, Ada, from process \d+/);
    assert.match(r.stdout + r.stderr, /onnxruntime-web agrees on 16 digits/);
  });
});
