/**
 * End to end: the real `./keel login`, `./keel publish`, `./keel search`, `./keel info` and then
 * `./keel add` as subprocesses, against a registry this test serves on 127.0.0.1.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { parseLockfile } from "../registry/lockfile.ts";
import { fixtureFiles, startTestRegistry, type TestRegistry } from "./registry-fixtures.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const SLOW = { timeout: 180_000 };
const NAME = "weather-fixture";
const NET = "net:api.example.com:443";
const RUN = "run:git";

let runtime: Runtime;
let tmp: string;
let reg: TestRegistry;
/** Every request the registry received, as "METHOD /path". */
const seen: string[] = [];

before(async () => {
  runtime = await detectRuntime();
  tmp = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-cli-registry-"));
  reg = await startTestRegistry(runtime, `${tmp}/registry`);
  reg.filters.push((request) => {
    seen.push(`${request.method} ${new URL(request.url).pathname}`);
    return undefined;
  });
});

after(async () => {
  await reg?.close();
  await runtime.fs!.remove(tmp);
});

interface Result extends ProcessOutput {
  readonly json: () => Record<string, unknown>;
}

async function keel(args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<Result> {
  const output = await runtime.processes!.run(LAUNCHER, {
    args: [...args],
    cwd,
    env: { NO_COLOR: "1", KEEL_DEBUG: "", KEEL_REGISTRY: reg.url, KEEL_REGISTRY_TOKEN: "", KEEL_REGISTRY_PASSWORD: "", ...env },
    stdin: "null",
  });
  return { ...output, json: () => JSON.parse(output.stdout) as Record<string, unknown> };
}

function explain(r: ProcessOutput): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

let dirs = 0;
/** A temp folder holding `files`. */
async function folder(files: Record<string, string> = {}): Promise<string> {
  const dir = `${tmp}/dir-${++dirs}`;
  await runtime.fs!.mkdir(dir);
  for (const [path, text] of Object.entries(files)) {
    const slash = path.lastIndexOf("/");
    if (slash > 0) await runtime.fs!.mkdir(`${dir}/${path.slice(0, slash)}`);
    await runtime.fs!.writeTextFile(`${dir}/${path}`, text);
  }
  return dir;
}

/** A plugin folder: the fixture files, plus what must never be published. */
async function pluginDir(name: string, version: string, options: { keel?: boolean; capabilities?: string[] } = {}): Promise<string> {
  const files = fixtureFiles({ name, version, capabilities: options.capabilities ?? [NET, RUN], keel: options.keel ?? true });
  const pj = JSON.parse(files["package.json"]!) as Record<string, unknown>;
  pj.keywords = ["weather"];
  return await folder({
    ...files,
    "package.json": JSON.stringify(pj, null, 2) + "\n",
    "node_modules/dep/index.js": "export {};\n",
    ".keel/state.json": "{}\n",
    "keel.lock": "{}\n",
  });
}

describe("keel login / publish / search / info, then keel add", () => {
  let token = "";

  test("login prints a token once on stdout; a wrong password is refused", SLOW, async () => {
    const cwd = await folder();
    const missing = await keel(["login", "--user", "me"], cwd);
    assert.equal(missing.code, 2, explain(missing));
    assert.match(missing.stderr, /KEEL_REGISTRY_PASSWORD/);
    assert.equal(missing.stdout, "");

    const ok = await keel(["login", "--user", "me"], cwd, { KEEL_REGISTRY_PASSWORD: "correct horse battery" });
    assert.equal(ok.code, 0, explain(ok));
    token = ok.stdout.trim();
    assert.match(token, /^\S{16,}$/);
    assert.equal(ok.stdout, token + "\n");
    assert.match(ok.stderr, /export KEEL_REGISTRY_TOKEN=\$\(keel login --user me\)/);
    assert.deepEqual(await runtime.fs!.readDir(cwd), [], "login writes no file");

    const wrong = await keel(["login", "--user", "me"], cwd, { KEEL_REGISTRY_PASSWORD: "not the password" });
    assert.equal(wrong.code, 1, explain(wrong));
    assert.match(wrong.stderr, /code: E_REGISTRY_UNAUTHORIZED/);
    assert.equal(wrong.stdout, "");
  });

  test("publish refuses a folder without a keel field, and --dry-run sends nothing", SLOW, async () => {
    const plain = await pluginDir("plain-package", "1.0.0", { keel: false });
    const before = seen.length;
    const refused = await keel(["publish", plain], tmp, { KEEL_REGISTRY_TOKEN: token });
    assert.equal(refused.code, 1, explain(refused));
    assert.match(refused.stderr, /has no "keel" field.*add one to package\.json: "keel": \{ "entry"/);
    assert.match(refused.stderr, /code: E_REGISTRY_MANIFEST_INVALID/);

    const dir = await pluginDir(NAME, "1.0.0");
    const dry = await keel(["publish", "--dry-run", "--json"], dir, { KEEL_REGISTRY_TOKEN: token });
    assert.equal(dry.code, 0, explain(dry));
    const report = dry.json();
    assert.equal(report.dryRun, true);
    assert.equal(report.name, NAME);
    assert.deepEqual([...(report.files as string[])].sort(), ["README.md", "index.js", "lib/util.js", "package.json"]);
    assert.match(String(report.integrity), /^sha512-/);
    assert.deepEqual(seen.slice(before), [], "neither the refusal nor the dry run sent a request");
    const info = await keel(["info", NAME], tmp);
    assert.equal(info.code, 1, explain(info));
    assert.match(info.stderr, /code: E_REGISTRY_NOT_FOUND/);
  });

  test("publish with the login token; again is E_REGISTRY_VERSION_EXISTS", SLOW, async () => {
    const dir = await pluginDir(NAME, "1.0.0");
    const noToken = await keel(["publish"], dir);
    assert.equal(noToken.code, 1, explain(noToken));
    assert.match(noToken.stderr, /code: E_REGISTRY_UNAUTHORIZED/);

    const published = await keel(["publish"], dir, { KEEL_REGISTRY_TOKEN: token });
    assert.equal(published.code, 0, explain(published));
    assert.match(published.stdout, new RegExp(`Published ${NAME}@1\\.0\\.0 \\(tag latest\\)`));
    assert.match(published.stdout, /files: +4\n/);
    assert.match(published.stdout, /integrity: sha512-/);
    assert.doesNotMatch(published.stdout, /node_modules|keel\.lock|\.keel/);
    assert.ok(seen.includes(`PUT /${NAME}`));

    const again = await keel(["publish"], dir, { KEEL_REGISTRY_TOKEN: token });
    assert.equal(again.code, 1, explain(again));
    assert.match(again.stderr, /code: E_REGISTRY_VERSION_EXISTS/);
  });

  test("search finds it by text and by --capability, and not by another capability", SLOW, async () => {
    const byText = await keel(["search", "weather"], tmp);
    assert.equal(byText.code, 0, explain(byText));
    assert.match(byText.stdout, /^NAME +VERSION +DESCRIPTION +CAPABILITIES\n/);
    assert.match(byText.stdout, new RegExp(`${NAME} +1\\.0\\.0 +${NAME}, a test plugin +${NET}, ${RUN}`));

    const byCap = await keel(["search", "--capability", "net", "--json"], tmp);
    assert.equal(byCap.code, 0, explain(byCap));
    const hits = byCap.json().hits as { name: string; capabilities: string[] }[];
    assert.deepEqual(hits.map((h) => h.name), [NAME]);
    assert.deepEqual(hits[0]!.capabilities, [NET, RUN]);

    const none = await keel(["search", "--capability", "gpu", "--json"], tmp);
    assert.equal(none.code, 0, explain(none));
    assert.deepEqual(none.json().hits, []);

    const empty = await keel(["search"], tmp);
    assert.equal(empty.code, 2, explain(empty));
  });

  test("info shows versions, capabilities with full trust marked, and the keel add line", SLOW, async () => {
    const info = await keel(["info", NAME], tmp);
    assert.equal(info.code, 0, explain(info));
    assert.match(info.stdout, /\* 1\.0\.0 {2}\(latest\)/);
    assert.match(info.stdout, new RegExp(`capabilities:\n {2}${NET}\n {2}${RUN} {2}\\[full trust`));
    assert.match(info.stdout, /kernel: +\^1/);
    assert.match(info.stdout, /keel entry: +index\.js/);
    assert.match(info.stdout, /integrity: +sha512-\S+ \(signed by the registry\)/);
    assert.match(info.stdout, new RegExp(`install: +keel add ${NAME}@1\\.0\\.0`));

    const json = (await keel(["info", `${NAME}@^1`, "--json"], tmp)).json();
    assert.equal(json.version, "1.0.0");
    assert.deepEqual((json.keel as { capabilities: unknown }).capabilities, [{ capability: NET, fullTrust: false }, { capability: RUN, fullTrust: true }]);

    const missing = await keel(["info", `${NAME}@9.9.9`], tmp);
    assert.equal(missing.code, 1, explain(missing));
    assert.match(missing.stderr, /code: E_REGISTRY_NOT_FOUND/);
  });

  test("keel add installs what keel publish sent", SLOW, async () => {
    const project = await folder();
    const added = await keel(["add", NAME, "--yes"], project);
    assert.equal(added.code, 0, explain(added));
    assert.match(added.stderr, new RegExp(`Added ${NAME}@1\\.0\\.0, granted ${NET}, ${RUN}`));
    const lock = parseLockfile(await runtime.fs!.readTextFile(`${project}/keel.lock`));
    assert.equal(lock.plugins[NAME]!.version, "1.0.0");
    const installed = `${project}/.keel/plugins/${NAME}/1.0.0`;
    const original = fixtureFiles({ name: NAME, version: "1.0.0", capabilities: [NET, RUN] });
    assert.equal(await runtime.fs!.readTextFile(`${installed}/index.js`), original["index.js"]);
    assert.equal(await runtime.fs!.readTextFile(`${installed}/lib/util.js`), original["lib/util.js"]);
    assert.equal(await runtime.fs!.exists(`${installed}/keel.lock`), false);
    assert.equal(await runtime.fs!.exists(`${installed}/node_modules`), false);
  });
});
