/**
 * End to end: `keel registry serve --db postgres://... --storage s3://...` as a real subprocess,
 * with Postgres (`KEEL_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test; a
 * fresh schema, dropped afterwards) and s3rver (a real S3 REST server, started in this process on
 * 127.0.0.1 and a free port). The real `npm` publishes and installs; then the tarball is looked
 * up in the bucket and the version row in Postgres. Bad `--db` / `--storage` values must stop the
 * command with a coded error.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import postgres from "postgres";
import S3rver from "s3rver";
import { AwsClient } from "aws4fetch";
import { type ChildProcess, fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { firstLine } from "./helpers.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const SLOW = { timeout: 120_000 };
const BUCKET = "keel-cli-storage";
const PASSWORD = "pw-never-printed";
const NAME = "storage-e2e-plugin";

let runtime: Runtime;
let tmp = "";
let s3: InstanceType<typeof S3rver> | undefined;
let s3Endpoint = "";
let sql: postgres.Sql | undefined;
const schema = `keel_test_${crypto.randomUUID().replace(/-/g, "").slice(0, 12)}`;
/** The Postgres URL the CLI gets: the test server's, with a password added to see it masked. */
let dbUrl = "";
const children: ChildProcess[] = [];

before(async () => {
  runtime = await detectRuntime();
  tmp = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-cli-registry-storage-"));
  for (const dir of ["home", "npm-cache"]) await runtime.fs!.mkdir(`${tmp}/${dir}`);
  const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: `${tmp}/s3rver`, configureBuckets: [{ name: BUCKET }] });
  s3 = server;
  s3Endpoint = `http://127.0.0.1:${(await server.run() as { port: number }).port}`;
  const base = new URL(runtime.env.get("KEEL_TEST_POSTGRES_URL") || "postgres://postgres@127.0.0.1:5432/test");
  // The test server trusts local logins, so a password is accepted and only shows up in logs.
  if (base.password === "") base.password = PASSWORD;
  dbUrl = base.href;
  sql = postgres(base.href, { max: 1, onnotice: () => {} });
  await sql`SELECT 1`; // fails the suite when Postgres is not there
});

after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await Promise.all(children.map((c) => c.status));
  if (sql !== undefined) {
    await sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await sql.end({ timeout: 5 });
  }
  await s3?.close();
  if (tmp !== "") await runtime.fs!.remove(tmp);
});

const AWS = { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_SESSION_TOKEN: "" };

function pgArg(): string {
  return `${dbUrl}${dbUrl.includes("?") ? "&" : "?"}schema=${schema}`;
}

function s3Arg(bucket = BUCKET): string {
  return `s3://${bucket}/tarballs?endpoint=${s3Endpoint}&region=us-east-1`;
}

async function keel(args: readonly string[], env: Record<string, string> = {}): Promise<ProcessOutput> {
  return await runtime.processes!.run(LAUNCHER, { args: [...args], cwd: tmp, env: { NO_COLOR: "1", KEEL_DEBUG: "", ...AWS, ...env }, stdin: "null" });
}

function explain(r: ProcessOutput): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** npm with its own HOME, cache and config, and none of the caller's npm_config_* settings. */
async function npm(args: readonly string[], cwd: string): Promise<ProcessOutput> {
  const inherited = Object.fromEntries(Object.entries(runtime.env.toObject()).filter(([k]) => !/^npm_/i.test(k)));
  const r = await runtime.processes!.run("npm", {
    args: [...args],
    cwd,
    env: {
      ...inherited,
      HOME: `${tmp}/home`,
      npm_config_cache: `${tmp}/npm-cache`,
      npm_config_userconfig: `${tmp}/home/.npmrc`,
      npm_config_globalconfig: `${tmp}/home/npmrc-global`,
      npm_config_update_notifier: "false",
      npm_config_fund: "false",
      npm_config_audit: "false",
      NO_COLOR: "1",
    },
    clearEnv: true,
    stdin: "null",
  });
  assert.equal(r.code, 0, `npm ${args.join(" ")}\n${explain(r)}`);
  return r;
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await runtime.fs!.writeTextFile(path, JSON.stringify(value, null, 2) + "\n");
}

/** Starts `keel registry serve` and returns what its --json line says, and the child. */
async function serve(args: readonly string[]): Promise<{ child: ChildProcess; info: Record<string, string>; stderr: Promise<string> }> {
  const child = runtime.processes!.spawn(LAUNCHER, {
    args: ["registry", "serve", "--port", "0", "--json", ...args],
    cwd: tmp,
    env: { NO_COLOR: "1", KEEL_DEBUG: "", ...AWS },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  children.push(child);
  const stderr = new Response(child.stderr).text();
  const line = await firstLine(child.stdout!);
  if (line === undefined) {
    assert.fail(`keel registry serve exited before listening: ${(await child.status).code}\n${await stderr}`);
  }
  return { child, info: JSON.parse(line) as Record<string, string>, stderr };
}

async function sha512Base64(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", bytes as Uint8Array<ArrayBuffer>));
  return btoa(String.fromCharCode(...digest));
}

describe("keel registry serve --db postgres://... --storage s3://...", () => {
  test("npm publishes and installs; the tarball lands in the bucket and the version row in Postgres", SLOW, async () => {
    const created = await keel(["registry", "token", "create", "--db", pgArg(), "--user", "ci", "--scope", "publish"]);
    assert.equal(created.code, 0, explain(created));
    const token = created.stdout.trim();
    assert.match(token, /^keel_[A-Za-z0-9_-]{43}$/);
    const [{ count }] = await sql!.unsafe(`SELECT count(*)::int AS count FROM "${schema}".tokens`) as unknown as [{ count: number }];
    assert.equal(count, 1, "the token row is in the fresh Postgres schema");

    const dir = `${tmp}/registry`;
    const { child, info, stderr } = await serve(["--dir", dir, "--db", pgArg(), "--storage", s3Arg()]);
    assert.match(info.url!, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(info.db, `Postgres ${dbUrl.replace(`:${PASSWORD}@`, ":***@")} schema "${schema}"`);
    assert.equal(info.storage, `S3 bucket "${BUCKET}" prefix "tarballs" at ${s3Endpoint} (us-east-1)`);
    const url = info.url!;

    const pkg = `${tmp}/pkg`;
    await runtime.fs!.mkdir(pkg);
    await writeJson(`${pkg}/package.json`, {
      name: NAME,
      version: "1.0.0",
      description: "A Keel plugin kept in Postgres and S3",
      main: "index.js",
      keel: { entry: "index.js", capabilities: [], kernel: "^1" },
    });
    await runtime.fs!.writeTextFile(`${pkg}/index.js`, `module.exports = "stored in s3";\n`);
    await runtime.fs!.writeTextFile(`${pkg}/.npmrc`, `registry=${url}/\n${url.replace(/^http:/, "")}/:_authToken=${token}\n`);
    const published = await npm(["publish"], pkg);
    assert.match(published.stdout, new RegExp(`\\+ ${NAME}@1\\.0\\.0`));

    const app = `${tmp}/app`;
    await runtime.fs!.mkdir(app);
    await writeJson(`${app}/package.json`, { name: "app", version: "0.0.0", private: true });
    await runtime.fs!.writeTextFile(`${app}/.npmrc`, `registry=${url}/\n`);
    await npm(["install", `${NAME}@1.0.0`], app);
    const installed = JSON.parse(await runtime.fs!.readTextFile(`${app}/node_modules/${NAME}/package.json`)) as { version: string };
    assert.equal(installed.version, "1.0.0");
    assert.equal(await runtime.fs!.readTextFile(`${app}/node_modules/${NAME}/index.js`), `module.exports = "stored in s3";\n`);

    // The version row, straight from Postgres.
    const rows = await sql!.unsafe(`SELECT name, version, blob_key, integrity, publisher FROM "${schema}".versions`) as unknown as {
      name: string;
      version: string;
      blob_key: string;
      integrity: string;
      publisher: string;
    }[];
    assert.equal(rows.length, 1);
    const row = rows[0]!;
    assert.deepEqual([row.name, row.version, row.publisher], [NAME, "1.0.0", "ci"]);
    const lock = JSON.parse(await runtime.fs!.readTextFile(`${app}/package-lock.json`)) as { packages: Record<string, { integrity: string }> };
    assert.equal(lock.packages[`node_modules/${NAME}`]?.integrity, row.integrity);

    // The tarball, straight from the bucket: under the prefix, and its bytes match the integrity.
    const client = new AwsClient({ accessKeyId: "S3RVER", secretAccessKey: "S3RVER", service: "s3", region: "us-east-1", retries: 0 });
    const listing = await (await client.fetch(`${s3Endpoint}/${BUCKET}?list-type=2`)).text();
    assert.deepEqual([...listing.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]), [`tarballs/${row.blob_key}`]);
    const object = await client.fetch(`${s3Endpoint}/${BUCKET}/tarballs/${row.blob_key}`);
    assert.equal(object.status, 200);
    assert.equal(`sha512-${await sha512Base64(new Uint8Array(await object.arrayBuffer()))}`, row.integrity);

    // Nothing went to the folder but the signing key.
    assert.ok(await runtime.fs!.exists(`${dir}/signing-key.json`));
    assert.equal(await runtime.fs!.exists(`${dir}/tarballs`), false);
    assert.equal(await runtime.fs!.exists(`${dir}/registry.db`), false);

    const list = await keel(["registry", "token", "list", "--db", pgArg(), "--user", "ci"]);
    assert.equal(list.code, 0, explain(list));
    assert.match(list.stdout, /publish\s+any package/);

    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0);
    const log = await stderr;
    assert.match(log, new RegExp(`Registry listening on http://127\\.0\\.0\\.1:\\d+ \\(public URL .*, database Postgres postgres://[^ ]*:\\*\\*\\*@.* schema "${schema}", storage S3 bucket "${BUCKET}" prefix "tarballs" at ${s3Endpoint.replace(/\./g, "\\.")} \\(us-east-1\\), sign-up open\\)`));
    for (const output of [log, published.stdout, published.stderr, list.stdout, list.stderr, created.stderr]) {
      assert.doesNotMatch(output, new RegExp(PASSWORD), "the database password is never printed");
    }
  });
});

describe("keel registry serve --db <sqlite file> --storage <folder>", () => {
  test("a SQLite file and a tarball folder outside --dir, relative to the working directory", SLOW, async () => {
    await runtime.fs!.mkdir(`${tmp}/elsewhere`);
    const { child, info, stderr } = await serve(["--dir", `${tmp}/local`, "--db", "elsewhere/reg.db", "--storage", `file://${tmp}/elsewhere/blobs`]);
    assert.equal(info.db, `SQLite ${tmp}/elsewhere/reg.db`);
    assert.equal(info.storage, `folder ${tmp}/elsewhere/blobs`);
    assert.equal((await fetch(`${info.url}/-/ping`)).status, 200);
    child.kill("SIGTERM");
    assert.equal((await child.status).code, 0, await stderr);
    assert.ok(await runtime.fs!.exists(`${tmp}/elsewhere/reg.db`));
    assert.ok(await runtime.fs!.exists(`${tmp}/local/signing-key.json`));
    assert.equal(await runtime.fs!.exists(`${tmp}/local/registry.db`), false);
    const tokens = await keel(["registry", "token", "create", "--db", "elsewhere/reg.db", "--user", "u", "--scope", "read"]);
    assert.equal(tokens.code, 0, explain(tokens));
    const list = await keel(["registry", "token", "list", "--db", `file://${tmp}/elsewhere/reg.db`, "--user", "u", "--json"]);
    assert.equal((JSON.parse(list.stdout) as unknown[]).length, 1, explain(list));
  });
});

describe("bad --db and --storage values stop the command with a coded error", () => {
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ["an unknown storage scheme", ["--storage", "ftp://files.example.com/tarballs"], {}, /--storage does not take "ftp:" URLs: use a folder path .*s3:\/\/BUCKET/],
    ["credentials in the storage URL", ["--storage", "s3://AKIDSECRETID:wJalrXUtnSECRET@bucket-a/p"], {}, /holds credentials: never put secrets in the URL; set AWS_ACCESS_KEY_ID/],
    ["S3 without credentials", ["--storage", "s3://bucket-a?endpoint=http://127.0.0.1:9"], { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" }, /S3 storage needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/],
    ["a bucket that does not exist", ["--storage", "s3://no-such-bucket?endpoint=ENDPOINT"], {}, /The S3 bucket "no-such-bucket" does not exist at http:\/\/127\.0\.0\.1:\d+: create it/],
    ["wrong S3 credentials", ["--storage", `s3://${BUCKET}?endpoint=ENDPOINT`], { AWS_ACCESS_KEY_ID: "NOBODY" }, /Access denied to S3 bucket .*InvalidAccessKeyId.*check the credentials/],
    ["an unknown database scheme", ["--db", "mysql://root@127.0.0.1/keel"], {}, /--db does not take "mysql:" URLs: use a SQLite file path .*postgres:\/\//],
    ["a Postgres that cannot be reached", ["--db", `postgres://keel:${PASSWORD}@127.0.0.1:1/test`], {}, /The registry database "postgres:\/\/keel:\*\*\*@127\.0\.0\.1:1\/test" cannot be reached/],
  ];
  for (const [what, args, env, message] of cases) {
    test(what, SLOW, async () => {
      const real = args.map((a) => a.replace("ENDPOINT", s3Endpoint));
      const r = await keel(["registry", "serve", "--port", "0", "--dir", `${tmp}/bad-${what.replace(/\W+/g, "-")}`, ...real], env);
      assert.equal(r.code, 1, explain(r));
      assert.match(r.stderr, message);
      assert.match(r.stderr, /code: E_REGISTRY_STORAGE/);
      assert.doesNotMatch(r.stderr, /Registry listening/);
      assert.doesNotMatch(r.stderr + r.stdout, new RegExp(`${PASSWORD}|wJalrXUtnSECRET`), "no secret is printed");
    });
  }

  test("the token actions refuse a bad --db too", SLOW, async () => {
    const r = await keel(["registry", "token", "list", "--user", "ci", "--db", "mongodb://127.0.0.1/keel"]);
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /--db does not take "mongodb:" URLs/);
    assert.match(r.stderr, /code: E_REGISTRY_STORAGE/);
  });

  test("--help describes --db and --storage", SLOW, async () => {
    const r = await keel(["registry", "--help"]);
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stdout, /--db[\s\S]*postgres:\/\/USER:PASSWORD@HOST:5432\/DB\[\?schema=NAME\]/);
    assert.match(r.stdout, /--storage[\s\S]*s3:\/\/BUCKET\/PREFIX\?endpoint=URL&region=REGION with AWS_ACCESS_KEY_ID/);
  });
});
