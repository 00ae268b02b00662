/**
 * End to end: the real `./keel add`, `./keel remove` and `./keel plugins` (and `bun cli/main.ts`)
 * as subprocesses in a project folder, against a registry this test serves on 127.0.0.1.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { parseLockfile } from "../registry/lockfile.ts";
import { startTestRegistry, type TestRegistry } from "./registry-fixtures.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const BUN = joinPath(ROOT, "node_modules/.bin/bun");
const SLOW = { timeout: 120_000 };
const HELLO = "@acme/hello";
const A = "env:KEEL_FIXTURE_A";
const NET = "net:api.example.com:443";

let runtime: Runtime;
let tmp: string;
let reg: TestRegistry;

before(async () => {
  runtime = await detectRuntime();
  tmp = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-cli-add-"));
  reg = await startTestRegistry(runtime, `${tmp}/registry`);
  await reg.publish({ name: HELLO, version: "1.0.0", capabilities: [A] });
  await reg.publish({ name: HELLO, version: "2.0.0", capabilities: [A, NET] });
  await reg.publish({ name: "plain", version: "1.0.0", capabilities: [NET, "env:KEEL_FIXTURE_B"] });
});

after(async () => {
  await reg?.close();
  await runtime.fs!.remove(tmp);
});

interface Result extends ProcessOutput {
  readonly json: () => Record<string, unknown>;
}

async function keel(args: readonly string[], cwd: string, options: { env?: Record<string, string>; via?: "launcher" | "bun" } = {}): Promise<Result> {
  const bun = options.via === "bun";
  const output = await runtime.processes!.run(bun ? BUN : LAUNCHER, {
    args: bun ? [joinPath(ROOT, "cli/main.ts"), ...args] : [...args],
    cwd,
    env: { NO_COLOR: "1", KEEL_DEBUG: "", KEEL_REGISTRY: "", KEEL_REGISTRY_TOKEN: "", ...options.env },
    stdin: "null",
  });
  return { ...output, json: () => JSON.parse(output.stdout) as Record<string, unknown> };
}

function explain(r: ProcessOutput): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

let projects = 0;
async function project(): Promise<string> {
  const dir = `${tmp}/project-${++projects}`;
  await runtime.fs!.mkdir(dir);
  return dir;
}

async function lockText(dir: string): Promise<string | undefined> {
  return await runtime.fs!.readTextFile(`${dir}/keel.lock`).catch(() => undefined);
}

/** Whether util-linux `script` is here to give keel a pseudo-terminal. */
const pty = await detectRuntime()
  .then((r) => r.processes!.run("script", { args: ["--version"], stdin: "null" }))
  .then((r) => r.success && /util-linux/.test(r.stdout + r.stderr), () => false);

describe("keel add / remove / plugins", () => {
  test("add --yes installs and records keel.lock; plugins lists it isolated with exactly its grant; remove undoes it", SLOW, async () => {
    const dir = await project();
    const added = await keel(["add", `${HELLO}@^1`, "--yes", "--registry", reg.url], dir);
    assert.equal(added.code, 0, explain(added));
    assert.match(added.stderr, /@acme\/hello@1\.0\.0 asks for these capabilities:\n {2}\+ env:KEEL_FIXTURE_A/);
    assert.match(added.stderr, /✔ Added @acme\/hello@1\.0\.0, granted env:KEEL_FIXTURE_A; recorded in keel\.lock/);
    const lock = parseLockfile((await lockText(dir))!);
    assert.equal(lock.registry, reg.url);
    assert.deepEqual(lock.plugins[HELLO]!.granted, [A]);
    assert.ok(await runtime.fs!.exists(`${dir}/.keel/plugins/@acme/hello/1.0.0/index.js`));

    const listed = await keel(["plugins", "--json"], dir);
    assert.equal(listed.code, 0, explain(listed));
    const rows = JSON.parse(listed.stdout) as { name: string; mode: string; status: string; source: string; module?: string; capabilities: { capability: string; granted: boolean }[] }[];
    const row = rows.find((r) => r.name === HELLO);
    assert.ok(row, listed.stdout);
    assert.equal(row.mode, "isolated");
    assert.equal(row.status, "loaded");
    assert.equal(row.source, "registry");
    assert.equal(row.module, `${dir}/.keel/plugins/@acme/hello/1.0.0/index.js`);
    assert.deepEqual(row.capabilities, [{ capability: A, granted: true, fullTrust: false }]);

    // Every command that boots the kernel loads it: a run's beforeRun hook is the plugin's.
    await runtime.fs!.writeTextFile(`${dir}/s.ts`, "export default () => 1;\n");
    const run = await keel(["run", "s.ts"], dir, { env: { KEEL_FIXTURE_A: "from-host", KEEL_FIXTURE_B: "secret" } });
    assert.notEqual(run.code, 0, explain(run));
    const report = JSON.parse(/REPORT(.*?)END/.exec(run.stderr)?.[1] ?? "null") as { grant: string[]; a: string; b: string } | null;
    assert.ok(report, explain(run));
    assert.deepEqual(report.grant, [A]);
    assert.equal(report.a, "from-host");
    assert.notEqual(report.b, "secret");

    const table = await keel(["plugins"], dir);
    assert.match(table.stdout, /@acme\/hello\s+1\.0\.0\s+isolated \(keel\.lock\)\s+loaded\s+env:KEEL_FIXTURE_A \(granted\)/);

    const removed = await keel(["remove", HELLO], dir);
    assert.equal(removed.code, 0, explain(removed));
    assert.match(removed.stderr, /✔ Removed @acme\/hello@1\.0\.0 \(no plugin left: keel\.lock deleted\)/);
    assert.equal(await lockText(dir), undefined);
    assert.equal(await runtime.fs!.exists(`${dir}/.keel/plugins/@acme`), false);
    const after = await keel(["plugins", "--json"], dir);
    assert.equal(after.code, 0, explain(after));
    assert.equal((JSON.parse(after.stdout) as { name: string }[]).some((r) => r.name === HELLO), false);

    const again = await keel(["remove", HELLO], dir);
    assert.equal(again.code, 1, explain(again));
    assert.match(again.stderr, /✖ Plugin "@acme\/hello" is not installed/);
    assert.match(again.stderr, /code: E_REGISTRY_NOT_FOUND/);
  });

  test("without a terminal and without --yes or --allow it refuses, naming what to pass, and writes nothing", SLOW, async () => {
    const dir = await project();
    const r = await keel(["add", "plain"], dir, { env: { KEEL_REGISTRY: reg.url } });
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /✖ plain@1\.0\.0 asks for "net:api\.example\.com:443", "env:KEEL_FIXTURE_B", which you have not approved; nothing was installed/);
    assert.match(r.stderr, /keel add plain@1\.0\.0 --allow net:api\.example\.com:443 --allow env:KEEL_FIXTURE_B \(or --yes\)/);
    assert.match(r.stderr, /code: E_CAPABILITY_DENIED/);
    assert.deepEqual(await runtime.fs!.readDir(dir), []);

    const partial = await keel(["add", "plain", "--allow", NET, "--json"], dir, { env: { KEEL_REGISTRY: reg.url } });
    assert.equal(partial.code, 1, explain(partial));
    const error = (partial.json().error as { code: string; details: { missing: string[] } });
    assert.equal(error.code, "E_CAPABILITY_DENIED");
    assert.deepEqual(error.details.missing, ["env:KEEL_FIXTURE_B"]);
    assert.deepEqual(await runtime.fs!.readDir(dir), []);

    const exact = await keel(["add", "plain", "--allow", NET, "--allow", "env:KEEL_FIXTURE_B", "--json"], dir, { env: { KEEL_REGISTRY: reg.url } });
    assert.equal(exact.code, 0, explain(exact));
    const out = exact.json();
    assert.equal(out.ok, true);
    assert.equal(out.status, "added");
    assert.equal(out.approvedBy, "allow");
    assert.deepEqual(out.granted, [NET, "env:KEEL_FIXTURE_B"]);
  });

  test("an upgrade asking for more stops with the difference; --yes approves it; keel.lock's registry is the default", SLOW, async () => {
    const dir = await project();
    const first = await keel(["add", `${HELLO}@1.0.0`, "--yes", "--registry", reg.url], dir);
    assert.equal(first.code, 0, explain(first));
    const before = await lockText(dir);
    // No --registry and no KEEL_REGISTRY: the one keel.lock records.
    const up = await keel(["add", HELLO], dir);
    assert.equal(up.code, 1, explain(up));
    assert.match(up.stderr, /@acme\/hello@2\.0\.0 asks for "net:api\.example\.com:443", which the installed version 1\.0\.0 was not granted; keel\.lock still has 1\.0\.0/);
    assert.match(up.stderr, /\(installed: 1\.0\.0\)/);
    assert.match(up.stderr, /\+ net:api\.example\.com:443 {2}\(new\)/);
    assert.equal(await lockText(dir), before);
    const yes = await keel(["add", HELLO, "--yes"], dir);
    assert.equal(yes.code, 0, explain(yes));
    assert.match(yes.stderr, /✔ Upgraded @acme\/hello@2\.0\.0 \(was 1\.0\.0\), granted env:KEEL_FIXTURE_A, net:api\.example\.com:443/);
    assert.deepEqual(parseLockfile((await lockText(dir))!).plugins[HELLO]!.granted, [A, NET]);

    // Bun hosts boot the same isolated plugin.
    const bun = await keel(["plugins", "--json"], dir, { via: "bun" });
    assert.equal(bun.code, 0, explain(bun));
    const row = (JSON.parse(bun.stdout) as { name: string; version: string; mode: string; status: string }[]).find((r) => r.name === HELLO);
    assert.deepEqual(row && { version: row.version, mode: row.mode, status: row.status }, { version: "2.0.0", mode: "isolated", status: "loaded" });

    // Files changed after install: every command refuses to boot, and says how to fix it.
    await runtime.fs!.writeTextFile(`${dir}/.keel/plugins/@acme/hello/2.0.0/index.js`, "export default {};\n");
    const broken = await keel(["plugins"], dir);
    assert.equal(broken.code, 1, explain(broken));
    assert.match(broken.stderr, /changed since it was installed.*run keel add @acme\/hello@2\.0\.0 to install it again/);
    assert.match(broken.stderr, /code: E_PLUGIN_LOAD_FAILED/);
    const fixed = await keel(["add", `${HELLO}@2.0.0`], dir);
    assert.equal(fixed.code, 0, explain(fixed));
    assert.match(fixed.stderr, /Reinstalled @acme\/hello@2\.0\.0/);
  });

  // A terminal on stdin: util-linux `script` runs keel under a pseudo-terminal, fed our answer.
  test("on a terminal it asks \"Grant these capabilities? [y/N]\" and does what the answer says", { ...SLOW, skip: !pty && "needs util-linux script for a pseudo-terminal" }, async () => {
    const dir = await project();
    const typed = async (answer: string) => {
      const child = runtime.processes!.spawn("script", {
        args: ["-qec", `'${LAUNCHER}' add ${HELLO}@1.0.0 --registry ${reg.url}`, "/dev/null"],
        cwd: dir,
        env: { NO_COLOR: "1", KEEL_DEBUG: "" },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      });
      const writer = child.stdin!.getWriter();
      // Typed ahead: the terminal holds the line until keel reads it.
      await writer.write(new TextEncoder().encode(`${answer}\n`));
      const [out, status] = await Promise.all([new Response(child.stdout!).text(), child.status, new Response(child.stderr!).text()]);
      await writer.close().catch(() => {});
      return { code: status.code, out };
    };
    const no = await typed("n");
    assert.equal(no.code, 1, no.out);
    assert.match(no.out, /\+ env:KEEL_FIXTURE_A[\s\S]*Grant these capabilities\? \[y\/N\]/);
    assert.match(no.out, /which you declined; nothing was installed/);
    assert.equal(await lockText(dir), undefined);
    const yes = await typed("y");
    assert.equal(yes.code, 0, yes.out);
    assert.match(yes.out, /✔ Added @acme\/hello@1\.0\.0, granted env:KEEL_FIXTURE_A/);
    assert.deepEqual(parseLockfile((await lockText(dir))!).plugins[HELLO]!.granted, [A]);
  });

  test("bad command lines are usage errors (exit 2)", SLOW, async () => {
    const dir = await project();
    for (
      const [args, pattern] of [
        [["add"], /keel add needs a plugin/],
        [["add", "a", "b"], /one plugin at a time/],
        [["add", "plain", "--registry", "ftp://x"], /--registry takes an http\(s\) URL/],
        [["add", "plain", "--plugin", "./p.ts"], /keel add takes no --plugin/],
        [["remove"], /keel remove needs a plugin name/],
        [["add", "plain", "--yse"], /Unknown flag|--yes/],
      ] as const
    ) {
      const r = await keel(args, dir);
      assert.equal(r.code, 2, `${args.join(" ")}\n${explain(r)}`);
      assert.match(r.stderr, pattern);
    }
    const unreachable = await keel(["add", "plain", "--yes", "--registry", "http://127.0.0.1:9"], dir);
    assert.equal(unreachable.code, 1, explain(unreachable));
    assert.match(unreachable.stderr, /code: E_REGISTRY_UNREACHABLE/);
    assert.deepEqual(await runtime.fs!.readDir(dir), []);
  });
});
