/**
 * End to end: the real `npm`, `bun`, `pnpm` and `deno` CLIs against a Keel registry started by this test
 * (in-process, on 127.0.0.1 and a free port), plus `keel registry token create` and `keel registry
 * serve` through the `./keel` launcher. Every client runs with HOME, its cache and its config in
 * a temp folder, so nothing of the user's `~/.npmrc` or global caches is read or written.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, fromFileUrl, joinPath, type ProcessOutput, type Runtime, type Server } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { type OpenRegistry, openRegistry } from "../registry/mod.ts";
import { verifyVersionSignature } from "../registry/signing.ts";
import { firstLine } from "./helpers.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const BUN = joinPath(ROOT, "node_modules/.bin/bun");
const DENO = joinPath(ROOT, "node_modules/.bin/deno");
const PNPM = joinPath(ROOT, "node_modules/.bin/pnpm");
const SLOW = { timeout: 120_000 };

let runtime: Runtime;
let tmp: string;
let server: Server | undefined;
let registry: OpenRegistry | undefined;
let url = "";
let npmAvailable = false;
const children: ChildProcess[] = [];
/** Every request the registry answered: what the clients really sent. */
const seen: { method: string; path: string; status: number; ifNoneMatch: boolean; accept: string }[] = [];

before(async () => {
  runtime = await detectRuntime();
  tmp = await runtime.fs!.makeTempDir("keel-registry-clients-");
  for (const dir of ["home", "npm-cache", "bun-cache", "deno-dir", "pnpm-store", "xdg-cache", "xdg-data", "xdg-state", "xdg-config"]) await runtime.fs!.mkdir(`${tmp}/${dir}`);
  npmAvailable = await runtime.processes!.run("npm", { args: ["--version"], env: clientEnv() }).then((r) => r.success, () => false);
  let handler: (request: Request) => Response | Promise<Response> = () => new Response(null, { status: 503 });
  server = await runtime.serve!(async (request) => {
    const response = await handler(request);
    const u = new URL(request.url);
    seen.push({ method: request.method, path: u.pathname + u.search, status: response.status, ifNoneMatch: request.headers.has("if-none-match"), accept: request.headers.get("accept") ?? "" });
    return response;
  }, { hostname: "127.0.0.1", port: 0 });
  url = server.url;
  registry = await openRegistry({ runtime, dir: `${tmp}/registry`, baseUrl: url, passwordIterations: 10_000 });
  handler = registry.app.fetch;
});

after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await Promise.all(children.map((c) => c.status));
  await server?.close();
  await registry?.close();
  await runtime.fs!.remove(tmp);
});

/** The environment every client runs in: its own HOME, caches and no user config. */
function clientEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    HOME: `${tmp}/home`,
    USERPROFILE: `${tmp}/home`,
    npm_config_cache: `${tmp}/npm-cache`,
    npm_config_userconfig: `${tmp}/home/.npmrc`,
    npm_config_globalconfig: `${tmp}/home/npmrc-global`,
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_loglevel: "http",
    BUN_INSTALL_CACHE_DIR: `${tmp}/bun-cache`,
    DENO_DIR: `${tmp}/deno-dir`,
    // pnpm keeps its metadata cache, store, state and global config under the XDG folders.
    XDG_CACHE_HOME: `${tmp}/xdg-cache`,
    XDG_DATA_HOME: `${tmp}/xdg-data`,
    XDG_STATE_HOME: `${tmp}/xdg-state`,
    XDG_CONFIG_HOME: `${tmp}/xdg-config`,
    NO_COLOR: "1",
    // Above any .npmrc in precedence: a registry set in the caller's environment must not win.
    ...(url === "" ? {} : { npm_config_registry: `${url}/`, NPM_CONFIG_REGISTRY: `${url}/` }),
    ...extra,
  };
}

async function run(command: string, args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<ProcessOutput> {
  // The caller's environment minus its npm settings: `npm test` exports its own config as
  // npm_config_* variables (this machine's omits `resolved` from lockfiles, say), and those would
  // outrank the client's .npmrc.
  const inherited = Object.fromEntries(Object.entries(runtime.env.toObject()).filter(([k]) => !/^npm_/i.test(k)));
  return await runtime.processes!.run(command, { args: [...args], cwd, env: { ...inherited, ...clientEnv(env) }, clearEnv: true, stdin: "null" });
}

/** Runs the `./keel` launcher as a user would (its own environment, not the clients'). */
async function keel(args: readonly string[]): Promise<ProcessOutput> {
  return await runtime.processes!.run(LAUNCHER, { args: [...args], cwd: ROOT, env: { NO_COLOR: "1", KEEL_DEBUG: "" }, stdin: "null" });
}

function explain(r: ProcessOutput): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

async function ok(command: string, args: readonly string[], cwd: string, env: Record<string, string> = {}): Promise<ProcessOutput> {
  const r = await run(command, args, cwd, env);
  assert.equal(r.code, 0, `${command} ${args.join(" ")}\n${explain(r)}`);
  return r;
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await runtime.fs!.writeTextFile(path, JSON.stringify(value, null, 2) + "\n");
}

/** A project folder with an .npmrc pointing at the registry, with `token` when given. */
async function project(name: string, token?: string): Promise<string> {
  const dir = `${tmp}/${name}`;
  await runtime.fs!.mkdir(dir);
  const host = url.replace(/^http:/, "");
  await runtime.fs!.writeTextFile(`${dir}/.npmrc`, `registry=${url}/\n${token === undefined ? "" : `${host}/:_authToken=${token}\n`}`);
  return dir;
}

async function plugin(dir: string, name: string, version: string, extra: Record<string, unknown> = {}): Promise<void> {
  await writeJson(`${dir}/package.json`, {
    name,
    version,
    description: `${name}, a Keel plugin`,
    main: "index.js",
    keywords: ["keel", "greeting"],
    keel: { entry: "index.js", capabilities: ["net:api.example.com:443"], kernel: "^1" },
    ...extra,
  });
  await runtime.fs!.writeTextFile(`${dir}/index.js`, `module.exports = { name: ${JSON.stringify(name)}, version: ${JSON.stringify(version)} };\n`);
  await runtime.fs!.writeTextFile(`${dir}/README.md`, `# ${name}\n`);
}

async function login(name: string, password: string): Promise<string> {
  const response = await fetch(`${url}/-/user/org.couchdb.user:${name}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ _id: `org.couchdb.user:${name}`, name, password, type: "user", roles: [], date: new Date().toISOString() }),
  });
  assert.equal(response.status, 201);
  return ((await response.json()) as { token: string }).token;
}

async function installedVersion(dir: string, name: string): Promise<string> {
  return (JSON.parse(await runtime.fs!.readTextFile(`${dir}/node_modules/${name}/package.json`)) as { version: string }).version;
}

describe("real clients against keel's registry", () => {
  let acmeToken = "";
  let aliceToken = "";

  test("keel registry token create prints a token once (CI publishes without npm login)", SLOW, async () => {
    const r = await keel(["registry", "token", "create", "--user", "ci", "--scope", "publish", "--package-scope", "@acme", "--expires", "1", "--dir", `${tmp}/registry`]);
    assert.equal(r.code, 0, explain(r));
    acmeToken = r.stdout.trim();
    assert.match(acmeToken, /^keel_[A-Za-z0-9_-]{43}$/);
    assert.match(r.stderr, /Token [0-9a-f]{12} for "ci" \(scope publish, packages @acme\/\*, expires /);
    assert.doesNotMatch(r.stderr, new RegExp(acmeToken));
    const list = await keel(["registry", "token", "list", "--user", "ci", "--dir", `${tmp}/registry`]);
    assert.match(list.stdout, /publish\s+@acme\/\*/);
    assert.doesNotMatch(list.stdout, new RegExp(acmeToken), "the list never shows the token");
    const bad = await keel(["registry", "token", "create", "--user", "ci", "--scope", "root", "--dir", `${tmp}/registry`]);
    assert.equal(bad.code, 2, explain(bad));
    assert.match(bad.stderr, /--scope takes "read", "publish", "admin"/);
  });

  test("npm: publish (scoped and not), whoami, immutable versions, a token of another scope", SLOW, async (t) => {
    if (!npmAvailable) return t.skip("npm is not installed");
    const acme = await project("acme-plugin", acmeToken);
    await plugin(acme, "@acme/hello-plugin", "1.0.0", { bin: { "hello-plugin": "./cli.js" } });
    await runtime.fs!.writeTextFile(`${acme}/cli.js`, "#!/usr/bin/env node\nconsole.log('hello');\n");
    const published = await ok("npm", ["publish"], acme);
    assert.match(published.stdout, /\+ @acme\/hello-plugin@1\.0\.0/);
    assert.ok(seen.some((s) => s.method === "PUT" && s.path === "/@acme%2fhello-plugin" && s.status === 201), "npm sent PUT /@acme%2fhello-plugin");
    assert.deepEqual((await ok("npm", ["whoami"], acme)).stdout.trim(), "ci");

    const again = await run("npm", ["publish"], acme);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /cannot publish over the previously published versions/, "npm checks the document first");
    const forced = await run("npm", ["publish", "--force"], acme);
    assert.notEqual(forced.code, 0);
    assert.match(forced.stderr, /409 Conflict.*versions are immutable/, "and the registry refuses it anyway");

    const wrongScope = await project("wrong-scope", acmeToken);
    await plugin(wrongScope, "keel-outsider", "1.0.0");
    const refused = await run("npm", ["publish"], wrongScope);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /403 Forbidden.*limited to @acme/);

    aliceToken = await login("alice", "alice-password-1");
    const greeter = await project("greeter", aliceToken);
    await plugin(greeter, "keel-greeter", "1.0.0");
    await ok("npm", ["publish"], greeter);
    await plugin(greeter, "keel-greeter", "1.1.0");
    await ok("npm", ["publish"], greeter);
    assert.equal((await ok("npm", ["whoami"], greeter)).stdout.trim(), "alice");

    const badKeel = await project("bad-keel", aliceToken);
    await plugin(badKeel, "keel-bad", "1.0.0", { keel: { entry: "../escape.js", capabilities: [], kernel: "^1" } });
    const bad = await run("npm", ["publish"], badKeel);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /400 Bad Request.*keel\.entry.*would leave the package/);
  });

  test("npm: view twice (ETag and 304), dist-tag, deprecate, search, unpublish", SLOW, async (t) => {
    if (!npmAvailable) return t.skip("npm is not installed");
    const greeter = `${tmp}/greeter`;
    const before = seen.length;
    const first = await ok("npm", ["view", "keel-greeter", "--json"], greeter);
    const doc = JSON.parse(first.stdout) as { versions: string[]; keel: unknown; "dist-tags": Record<string, string> };
    assert.deepEqual(doc.versions, ["1.0.0", "1.1.0"]);
    assert.deepEqual(doc.keel, { entry: "index.js", capabilities: ["net:api.example.com:443"], kernel: "^1" });
    const second = await ok("npm", ["view", "keel-greeter", "version"], greeter);
    assert.equal(second.stdout.trim(), "1.1.0");
    assert.match(second.stderr, /GET 200 .*\/keel-greeter .*\(cache revalidated\)/);
    const revalidated = seen.slice(before).filter((s) => s.path === "/keel-greeter" && s.ifNoneMatch);
    assert.ok(revalidated.some((s) => s.status === 304), `npm revalidated with If-None-Match and got 304: ${JSON.stringify(seen.slice(before))}`);

    assert.match((await ok("npm", ["dist-tag", "add", "keel-greeter@1.0.0", "stable"], greeter)).stdout, /\+stable: keel-greeter@1\.0\.0/);
    assert.match((await ok("npm", ["dist-tag", "ls", "keel-greeter"], greeter)).stdout, /latest: 1\.1\.0\nstable: 1\.0\.0/);

    await ok("npm", ["deprecate", "keel-greeter@1.0.0", "use 1.1.0 or later"], greeter);
    assert.equal((await ok("npm", ["view", "keel-greeter@1.0.0", "deprecated"], greeter)).stdout.trim(), "use 1.1.0 or later");

    const search = await ok("npm", ["search", "greeter", "--json"], greeter);
    const hits = JSON.parse(search.stdout) as { name: string; version: string }[];
    assert.deepEqual(hits.map((h) => h.name), ["keel-greeter"]);

    await plugin(greeter, "keel-greeter", "2.0.0-beta.1");
    await ok("npm", ["publish", "--tag", "beta"], greeter);
    assert.match((await ok("npm", ["view", "keel-greeter", "dist-tags.beta"], greeter)).stdout, /2\.0\.0-beta\.1/);
    await ok("npm", ["unpublish", "keel-greeter@2.0.0-beta.1"], greeter);
    const after = JSON.parse((await ok("npm", ["view", "keel-greeter", "versions", "--json"], greeter)).stdout) as string[];
    assert.deepEqual(after, ["1.0.0", "1.1.0"]);
    const republish = await run("npm", ["publish", "--tag", "beta"], greeter);
    assert.match(republish.stderr, /409 Conflict/, "an unpublished version number is never reused");
  });

  test("npm install, bun add, pnpm add and deno resolve the same packages; a yanked version is never picked", SLOW, async (t) => {
    if (!npmAvailable) return t.skip("npm is not installed");
    // A project whose lockfile pins 1.1.0 before it is yanked.
    const pinned = await project("npm-pinned");
    await writeJson(`${pinned}/package.json`, { name: "npm-pinned", version: "1.0.0", private: true });
    await ok("npm", ["install", "keel-greeter@1.1.0"], pinned);
    await runtime.fs!.remove(`${pinned}/node_modules`);

    const yank = await fetch(`${url}/-/keel/yank/keel-greeter/1.1.0`, { method: "PUT", headers: { authorization: `Bearer ${aliceToken}` }, body: JSON.stringify({ reason: "broken" }) });
    assert.equal(yank.status, 200);

    // npm
    const npmApp = await project("npm-app");
    await writeJson(`${npmApp}/package.json`, { name: "npm-app", version: "1.0.0", private: true });
    const installed = await ok("npm", ["install", "@acme/hello-plugin@^1", "keel-greeter@^1"], npmApp);
    assert.match(installed.stderr, /deprecated keel-greeter@1\.0\.0: use 1\.1\.0 or later/);
    assert.equal(await installedVersion(npmApp, "@acme/hello-plugin"), "1.0.0");
    assert.equal(await installedVersion(npmApp, "keel-greeter"), "1.0.0", "npm skipped the yanked 1.1.0");
    const lock = JSON.parse(await runtime.fs!.readTextFile(`${npmApp}/package-lock.json`)) as { packages: Record<string, { resolved: string; integrity: string }> };
    const entry = lock.packages["node_modules/@acme/hello-plugin"]!;
    assert.equal(entry.resolved, `${url}/@acme/hello-plugin/-/hello-plugin-1.0.0.tgz`);
    assert.match(entry.integrity, /^sha512-/);
    const ran = await ok("node", ["-e", "console.log(require('@acme/hello-plugin').version, require('keel-greeter').version)"], npmApp);
    assert.equal(ran.stdout.trim(), "1.0.0 1.0.0");
    assert.ok(await runtime.fs!.exists(`${npmApp}/node_modules/.bin/hello-plugin`), "the bin is linked");
    assert.ok(seen.some((s) => s.path === "/keel-greeter" && s.accept.startsWith("application/vnd.npm.install-v1+json")), "npm asked for the abbreviated document");

    // The signature npm audit signatures would check (it needs the sigstore TUF repository online first).
    const keys = (await (await fetch(`${url}/-/npm/v1/keys`)).json()) as { keys: { keyid: string; key: string }[] };
    const manifest = (await (await fetch(`${url}/@acme%2fhello-plugin/1.0.0`)).json()) as { dist: { integrity: string; signatures: { keyid: string; sig: string }[] } };
    assert.equal(manifest.dist.integrity, entry.integrity);
    assert.equal(await verifyVersionSignature(keys.keys, "@acme/hello-plugin", "1.0.0", entry.integrity, manifest.dist.signatures[0]!), true);

    // bun
    const bunApp = await project("bun-app");
    await writeJson(`${bunApp}/package.json`, { name: "bun-app", version: "1.0.0", private: true });
    await ok(BUN, ["add", "@acme/hello-plugin@^1", "keel-greeter@^1", "--registry", `${url}/`], bunApp);
    assert.equal(await installedVersion(bunApp, "@acme/hello-plugin"), "1.0.0");
    assert.equal(await installedVersion(bunApp, "keel-greeter"), "1.0.0", "bun skipped the yanked 1.1.0");
    assert.ok(await runtime.fs!.exists(`${bunApp}/bun.lock`));
    assert.ok(seen.some((s) => s.path === "/@acme%2fhello-plugin" && s.accept.startsWith("application/vnd.npm.install-v1+json") && s.status === 200), "bun read the abbreviated document");

    // pnpm: the same .npmrc (registry and //host/:_authToken), its store and caches in the temp folder.
    const pnpmApp = await project("pnpm-app", aliceToken);
    await writeJson(`${pnpmApp}/package.json`, { name: "pnpm-app", version: "1.0.0", private: true });
    const pnpmAdded = await ok(PNPM, ["add", "@acme/hello-plugin@^1", "keel-greeter@^1", "--store-dir", `${tmp}/pnpm-store`], pnpmApp);
    assert.match(pnpmAdded.stdout, /deprecated keel-greeter@1\.0\.0/);
    assert.equal(await installedVersion(pnpmApp, "@acme/hello-plugin"), "1.0.0");
    assert.equal(await installedVersion(pnpmApp, "keel-greeter"), "1.0.0", "pnpm skipped the yanked 1.1.0");
    const pnpmLock = await runtime.fs!.readTextFile(`${pnpmApp}/pnpm-lock.yaml`);
    assert.ok(pnpmLock.includes(`'@acme/hello-plugin@1.0.0':\n    resolution: {integrity: ${entry.integrity}}`), pnpmLock);
    const greeterIntegrity = ((await (await fetch(`${url}/keel-greeter/1.0.0`)).json()) as { dist: { integrity: string } }).dist.integrity;
    assert.ok(pnpmLock.includes(`keel-greeter@1.0.0:\n    resolution: {integrity: ${greeterIntegrity}}`), pnpmLock);
    assert.ok(await runtime.fs!.exists(`${tmp}/pnpm-store/v10`), "pnpm used the temp store");
    assert.ok(await runtime.fs!.exists(`${pnpmApp}/node_modules/.bin/hello-plugin`), "pnpm linked the bin");

    // deno: the versions are minutes old, so its minimum-dependency-age policy (which reads `time`) is turned off.
    const denoApp = await project("deno-app");
    await writeJson(`${denoApp}/deno.json`, { minimumDependencyAge: 0 });
    await runtime.fs!.writeTextFile(
      `${denoApp}/main.ts`,
      'import hello from "npm:@acme/hello-plugin@^1";\nimport greeter from "npm:keel-greeter@^1";\nconsole.log(hello.version, greeter.version);\n',
    );
    const denoEnv = { NPM_CONFIG_REGISTRY: `${url}/` };
    await ok(DENO, ["install", "--entrypoint", "main.ts"], denoApp, denoEnv);
    const denoRun = await ok(DENO, ["run", "--quiet", "main.ts"], denoApp, denoEnv);
    assert.equal(denoRun.stdout.trim(), "1.0.0 1.0.0", "deno skipped the yanked 1.1.0");
    const denoLock = JSON.parse(await runtime.fs!.readTextFile(`${denoApp}/deno.lock`)) as { npm: Record<string, { integrity: string }> };
    assert.equal(denoLock.npm["@acme/hello-plugin@1.0.0"]?.integrity, entry.integrity);

    // The yanked version stays downloadable: a lockfile that pins it still installs.
    await ok("npm", ["ci"], pinned);
    assert.equal(await installedVersion(pinned, "keel-greeter"), "1.1.0");
  });
});

describe("keel registry serve", () => {
  test("listens on 127.0.0.1, prints its URL, answers, and exits 0 on SIGTERM", SLOW, async () => {
    const dir = `${tmp}/served`;
    const child = runtime.processes!.spawn(LAUNCHER, {
      args: ["registry", "serve", "--port", "0", "--json", "--dir", dir],
      cwd: ROOT,
      env: { NO_COLOR: "1", KEEL_DEBUG: "" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    children.push(child);
    const stderr = new Response(child.stderr).text();
    const info = JSON.parse((await firstLine(child.stdout!)) ?? "") as { url: string; publicUrl: string; dir: string };
    assert.match(info.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(info.publicUrl, info.url);
    assert.equal(info.dir, dir);
    assert.equal((await fetch(`${info.url}/-/ping`)).status, 200);
    const keys = (await (await fetch(`${info.url}/-/npm/v1/keys`)).json()) as { keys: unknown[] };
    assert.equal(keys.keys.length, 1);
    const missing = await fetch(`${info.url}/nothing-here`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { code: string }).code, "E_REGISTRY_NOT_FOUND");
    child.kill("SIGTERM");
    const status = await child.status;
    const log = await stderr;
    assert.equal(status.code, 0, log);
    assert.match(log, /Registry listening on http:\/\/127\.0\.0\.1:\d+ \(public URL .*, sign-up open\)/);
    assert.match(log, /SIGTERM: stopping the registry/);
    for (const file of ["registry.db", "signing-key.json", "tarballs"]) assert.ok(await runtime.fs!.exists(`${dir}/${file}`), file);
  });
});
