/**
 * `keel config show | validate | check`, called in-process with a CliEnv built here: a real
 * runtime whose stdout is captured, relative paths resolved against the config fixtures, an
 * output that records lines, and flags parsed as `cli/main.ts` parses them.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  createSilentLogger,
  fromFileUrl,
  KeelError,
  resolvePath,
  type Runtime,
} from "../core/mod.ts";
import type { ErrorCodeName } from "../core/errors.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { CONFIG_FLAGS, createConfigCommand } from "../cli/commands/config.ts";
import type { CliEnv } from "../cli/env.ts";
import { COMMON_FLAGS, parseFlags } from "../cli/flags.ts";
import type { CliOutput } from "../cli/output.ts";

const FIXTURES = fromFileUrl(new URL("./fixtures/configs/", import.meta.url)).replace(/\/$/, "");

let runtime: Runtime;

before(async () => {
  runtime = await detectRuntime();
});

interface Ran {
  /** What went to stdout. */
  readonly stdout: string;
  /** Lines to the output, as "level: text". */
  readonly lines: string[];
  /** What the command threw, if anything. */
  readonly error: unknown;
}

function recordingOutput(lines: string[]): CliOutput {
  const at = (level: string) => (...args: unknown[]): void => {
    lines.push(`${level}: ${args.map(String).join(" ")}`);
  };
  const out: CliOutput = {
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    success: at("success"),
    debug: at("debug"),
    log: at("log"),
    withTag: () => out,
  };
  return out;
}

/** Runs `keel <argv>` (argv starts with "config") in-process. */
async function keelConfig(...argv: string[]): Promise<Ran> {
  const chunks: string[] = [];
  const lines: string[] = [];
  const host: Runtime = {
    ...runtime,
    cwd: () => FIXTURES,
    resolvePath: (path, base) => resolvePath(path, base ?? FIXTURES),
    writeStdout: (text) => {
      chunks.push(text);
      return Promise.resolve();
    },
  };
  const env: CliEnv = {
    runtime: host,
    out: recordingOutput(lines),
    logger: createSilentLogger(),
    flags: parseFlags(argv, { ...COMMON_FLAGS, ...CONFIG_FLAGS }),
    debug: false,
  };
  let error: unknown;
  try {
    await createConfigCommand().run(env);
  } catch (e) {
    error = e;
  }
  return { stdout: chunks.join(""), lines, error };
}

function ok(r: Ran): void {
  assert.equal(r.error, undefined, `unexpected error: ${String(r.error)}\n${r.lines.join("\n")}`);
}

function failed(r: Ran, code: ErrorCodeName, pattern?: RegExp): KeelError {
  assert.ok(KeelError.is(r.error), `expected ${code}, got ${String(r.error)}`);
  assert.equal(r.error.code, code, r.error.message);
  if (pattern) assert.match(r.error.message, pattern);
  return r.error;
}

describe("keel config show", () => {
  test("prints each config with its index and the count", async () => {
    const r = await keelConfig("config", "show", "generator.ts");
    ok(r);
    assert.equal(
      r.stdout,
      [
        "config 1/4",
        '  params    {"lr":0.1,"seed":1}',
        "config 2/4",
        '  params    {"lr":0.01,"seed":1}',
        "config 3/4",
        '  params    {"lr":0.1,"seed":2}',
        "config 4/4",
        '  params    {"lr":0.01,"seed":2}',
        "",
      ].join("\n"),
    );
    assert.deepEqual(r.lines, ['success: "generator.ts" defines 4 configs']);
  });

  test("shows args, kwargs and metadata when a config has them", async () => {
    const r = await keelConfig("config", "show", "single.ts");
    ok(r);
    assert.match(r.stdout, /^config 1\/1\n/);
    assert.ok(r.stdout.includes('\n  args      ["train"]\n'), r.stdout);
    assert.ok(r.stdout.includes('\n  kwargs    {"verbose":true}\n'), r.stdout);
    assert.ok(r.stdout.includes('\n  metadata  {"note":"single"}\n'), r.stdout);
  });

  test("--json prints the resolved configs with index and count", async () => {
    const r = await keelConfig("config", "show", "child.ts", "--json");
    ok(r);
    assert.deepEqual(JSON.parse(r.stdout), {
      file: `${FIXTURES}/child.ts`,
      count: 1,
      configs: [{
        index: 0,
        params: { lr: 0.5, bs: 64, wd: 0.01 },
        args: ["base"],
        kwargs: { a: 1, b: 2 },
        metadata: { from: "child" },
      }],
    });
    assert.deepEqual(r.lines, []);
  });

  test("a JSON config file, by absolute path", async () => {
    const r = await keelConfig("config", "show", `${FIXTURES}/configs.json`, "--json");
    ok(r);
    assert.equal((JSON.parse(r.stdout) as { count: number }).count, 2);
  });

  test("a file that does not exist", async () => {
    const r = await keelConfig("config", "show", "missing.ts");
    failed(
      r,
      "E_CONFIG_LOAD_FAILED",
      /Config file "missing\.ts" does not exist \(looked for ".*\/missing\.ts"\); check the path/,
    );
    assert.equal(r.stdout, "");
  });

  test("usage errors: no action, an unknown action, no file, two files", async () => {
    failed(await keelConfig("config"), "E_CLI_USAGE", /needs an action: show, validate, check/);
    failed(
      await keelConfig("config", "shwo", "a.ts"),
      "E_CLI_USAGE",
      /no action "shwo"; did you mean "show"\?/,
    );
    failed(await keelConfig("config", "show"), "E_CLI_USAGE", /needs a config file/);
    failed(await keelConfig("config", "show", "a.ts", "b.ts"), "E_CLI_USAGE", /got also "b\.ts"/);
  });
});

describe("keel config validate", () => {
  test("a valid file: success with the count", async () => {
    const r = await keelConfig("config", "validate", "list.ts");
    ok(r);
    assert.deepEqual(r.lines, ['success: "list.ts" is valid: 3 configs']);
    const j = await keelConfig("config", "validate", "list.ts", "--json");
    ok(j);
    assert.deepEqual(JSON.parse(j.stdout), { ok: true, file: `${FIXTURES}/list.ts`, count: 3 });
  });

  test("checks every config a generator yields", async () => {
    failed(
      await keelConfig("config", "validate", "generator-throws.ts"),
      "E_CONFIG_LOAD_FAILED",
      /ran out of ideas/,
    );
    failed(
      await keelConfig("config", "validate", "bad-item.ts"),
      "E_CONFIG_INVALID",
      /\(config 2\)/,
    );
  });

  test("--max-runs stops an infinite generator", async () => {
    const r = await keelConfig("config", "validate", "infinite.ts", "--max-runs", "50");
    const e = failed(r, "E_CONFIG_TOO_MANY", /more than 50 configs/);
    assert.equal(e.details?.maxRuns, 50);
    ok(await keelConfig("config", "validate", "list.ts", "--max-runs=3"));
    failed(await keelConfig("config", "validate", "list.ts", "--max-runs=2"), "E_CONFIG_TOO_MANY");
  });

  test("a bad --max-runs is a usage error", async () => {
    for (const bad of ["0", "-1", "ten", "1.5", ""]) {
      failed(
        await keelConfig("config", "validate", "list.ts", `--max-runs=${bad}`),
        "E_CLI_USAGE",
        /--max-runs takes a whole number/,
      );
    }
  });

  test("each kind of bad file gives its code", async () => {
    failed(await keelConfig("config", "validate", "throws.ts"), "E_CONFIG_LOAD_FAILED", /blew up/);
    failed(await keelConfig("config", "validate", "empty-list.ts"), "E_CONFIG_EMPTY");
    failed(
      await keelConfig("config", "validate", "cycle-a.ts"),
      "E_CONFIG_EXTENDS_CYCLE",
      /cycle-a\.ts -> cycle-b\.ts -> cycle-a\.ts/,
    );
    failed(
      await keelConfig("config", "validate", "bad-params.ts"),
      "E_CONFIG_INVALID",
      /"params" must be an object/,
    );
    failed(
      await keelConfig("config", "validate", "bad.json"),
      "E_CONFIG_LOAD_FAILED",
      /not valid JSON/,
    );
  });
});

describe("keel config check", () => {
  test("a clean config: exit 0, a table of hits and new keys", async () => {
    const r = await keelConfig("config", "check", "script.ts", "--config", "check-clean.ts");
    ok(r);
    assert.equal(r.stdout, ["KEY   STATUS  SUGGESTION", "lr    hit", "seed  new", ""].join("\n"));
    assert.deepEqual(r.lines, [
      'warn: "seed" is not a param of "script.ts"; a strict run rejects it',
      'success: Every key of "check-clean.ts" is a param of "script.ts", or new (1 key)',
    ]);
  });

  test("a likely typo: the table, then E_CONFIG_UNKNOWN_KEY (exit 1) with the suggestion", async () => {
    const r = await keelConfig("config", "check", "script.ts", "--config", "check-typo.ts");
    const e = failed(
      r,
      "E_CONFIG_UNKNOWN_KEY",
      /Config "check-typo\.ts" has 1 likely typo for "script\.ts": "epohcs" \(did you mean "epochs"\?\)/,
    );
    assert.equal(
      r.stdout,
      [
        "KEY     STATUS  SUGGESTION",
        "lr      hit",
        'epohcs  typo    did you mean "epochs"?',
        "seed    new",
        "",
      ].join("\n"),
    );
    assert.equal((e.details?.rows as unknown[]).length, 3);
  });

  test("several configs get a CONFIG column", async () => {
    const r = await keelConfig("config", "check", "script.ts", "--config", "list.ts");
    ok(r);
    assert.equal(
      r.stdout,
      [
        "CONFIG  KEY  STATUS  SUGGESTION",
        "1       lr   hit",
        "2       lr   hit",
        "3       lr   hit",
        "",
      ].join("\n"),
    );
  });

  test("--json on success", async () => {
    const r = await keelConfig(
      "config",
      "check",
      "script.ts",
      "--config",
      "check-clean.ts",
      "--json",
    );
    ok(r);
    const report = JSON.parse(r.stdout) as { ok: boolean; rows: unknown[] };
    assert.equal(report.ok, true);
    assert.deepEqual(report.rows, [
      { config: 1, key: "lr", status: "hit" },
      { config: 1, key: "seed", status: "new" },
    ]);
  });

  test("a missing script: E_SCRIPT_NOT_FOUND with exit code 2", async () => {
    const r = await keelConfig("config", "check", "nope.ts", "--config", "check-clean.ts");
    const e = failed(r, "E_SCRIPT_NOT_FOUND", /Script "nope\.ts" does not exist/);
    assert.equal(e.details?.exitCode, 2);
  });

  test("a script that exports no params: a warning, every key new", async () => {
    const r = await keelConfig("config", "check", "base.ts", "--config", "check-clean.ts");
    ok(r);
    assert.ok(
      r.lines.includes(
        'warn: Script "base.ts" exports no params, so every config key is new to it',
      ),
    );
  });

  test("a script that throws on import", async () => {
    failed(
      await keelConfig("config", "check", "throws.ts", "--config", "check-clean.ts"),
      "E_SCRIPT_FAILED",
      /could not be loaded/,
    );
  });

  test("usage errors: no --config, a script that is not TS or JS", async () => {
    failed(await keelConfig("config", "check", "script.ts"), "E_CLI_USAGE", /needs --config FILE/);
    failed(
      await keelConfig("config", "check", "train.py", "--config", "list.ts"),
      "E_CLI_USAGE",
      /\.ts or \.js script/,
    );
    failed(
      await keelConfig("config", "check", "--config", "list.ts"),
      "E_CLI_USAGE",
      /needs a script/,
    );
  });

  test("a missing config file", async () => {
    failed(
      await keelConfig("config", "check", "script.ts", "--config", "nope.ts"),
      "E_CONFIG_LOAD_FAILED",
      /does not exist/,
    );
  });
});

describe("the command's flags", () => {
  test("an unknown flag is refused with a suggestion, as main.ts parses them", () => {
    assert.throws(
      () =>
        parseFlags(["config", "show", "a.ts", "--max-run", "3"], {
          ...COMMON_FLAGS,
          ...CONFIG_FLAGS,
        }),
      (e) => KeelError.is(e, "E_CLI_USAGE") && /did you mean --max-runs/.test(e.message),
    );
  });

  test("meta and help arguments", () => {
    const command = createConfigCommand();
    assert.equal(command.meta.name, "config");
    assert.deepEqual(Object.keys(command.args).sort(), [
      "action",
      "config",
      "debug",
      "file",
      "json",
      "max-runs",
    ]);
  });
});
