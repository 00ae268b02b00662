/**
 * End to end: `keel executor serve`, started through the real `./keel` launcher as a
 * subprocess, called with the real client, stopped with SIGTERM.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, createToolRegistry, fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { createExecutorClient } from "../plugins/sandbox/client.ts";
import { firstLine, rejectsWith } from "./helpers.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const SLOW = { timeout: 60_000 };
const KEY = "cli-test-key-0123456789abcdef";
const SECOND_KEY = "cli-second-key-0123456789";

let runtime: Runtime;
const children: ChildProcess[] = [];

before(async () => {
  runtime = await detectRuntime();
});

after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await Promise.all(children.map((c) => c.status));
});

async function keel(args: readonly string[], env: Record<string, string> = {}): Promise<ProcessOutput> {
  return await runtime.processes!.run(LAUNCHER, { args: [...args], cwd: ROOT, env: { NO_COLOR: "1", KEEL_DEBUG: "", ...env }, stdin: "null" });
}

function explain(r: ProcessOutput): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

describe("keel executor serve", () => {
  test("serves authenticated executions with the caller's tools, and exits 0 on SIGTERM", SLOW, async () => {
    const child = runtime.processes!.spawn(LAUNCHER, {
      args: ["executor", "serve", "--port", "0", "--json", "--max-concurrent", "4"],
      cwd: ROOT,
      env: { NO_COLOR: "1", KEEL_DEBUG: "", KEEL_EXECUTOR_API_KEY: `${KEY}, ${SECOND_KEY}` },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    children.push(child);
    const stderr = new Response(child.stderr).text();
    const line = await firstLine(child.stdout!);
    const { url } = JSON.parse(line ?? "") as { url: string };
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);

    const client = createExecutorClient({ url, apiKey: KEY });
    assert.deepEqual(await client.health(), { status: "ok" });
    const plain = await client.execute("return 6 * 7");
    assert.equal(plain.result, 42);
    assert.equal(plain.sandbox, "deno-ses");

    const tools = createToolRegistry();
    tools.register({
      name: "greet",
      description: "Greets the user in the context",
      inputSchema: { type: "object", properties: { greeting: { type: "string" } }, required: ["greeting"] },
      run: ({ greeting }: { greeting: string }, { context }) => `${greeting}, ${String(context.user)}`,
    });
    const second = createExecutorClient({ url, apiKey: SECOND_KEY });
    const routed = await second.execute('return await tools.greet({ greeting: "Hello" })', { registry: tools, context: { user: "Ada" } });
    assert.equal(routed.result, "Hello, Ada");
    assert.equal(routed.toolCalls, 1);

    const anonymous = await fetch(`${url}/v1/execute`, { method: "POST", body: JSON.stringify({ code: "1" }) });
    assert.equal(anonymous.status, 401);
    assert.equal((await anonymous.json() as { error: { code: string } }).error.code, "E_EXECUTOR_UNAUTHORIZED");
    await rejectsWith(createExecutorClient({ url, apiKey: "wrong-key-0123456789abc" }).execute("1"), "E_EXECUTOR_UNAUTHORIZED");

    child.kill("SIGTERM");
    const status = await child.status;
    const log = await stderr;
    assert.equal(status.code, 0, log);
    assert.match(log, new RegExp(`Executor listening on ${url.replaceAll(".", "\\.")} \\(sandbox "deno-ses", 2 API key\\(s\\)\\)`));
    assert.match(log, /SIGTERM: stopping the executor/);
    assert.doesNotMatch(log, new RegExp(KEY));
  });

  test("refuses to start without KEEL_EXECUTOR_API_KEY, or with a short key (exit 2, key not echoed)", SLOW, async () => {
    const none = await keel(["executor", "serve", "--port", "0", "--json"], { KEEL_EXECUTOR_API_KEY: "" });
    assert.equal(none.code, 2, explain(none));
    assert.match(none.stderr, /needs an API key: set KEEL_EXECUTOR_API_KEY/);
    assert.match(none.stderr, /code: E_CLI_USAGE/);
    assert.equal((JSON.parse(none.stdout) as { ok: boolean; error: { code: string } }).error.code, "E_CLI_USAGE");

    const short = await keel(["executor", "serve", "--port", "0"], { KEEL_EXECUTOR_API_KEY: `${KEY},tooshort` });
    assert.equal(short.code, 2, explain(short));
    assert.match(short.stderr, /Key 2 of KEEL_EXECUTOR_API_KEY is 8 characters long/);
    assert.doesNotMatch(short.stderr, /tooshort/);
  });

  test("usage errors exit 2 before anything starts", SLOW, async () => {
    const env = { KEEL_EXECUTOR_API_KEY: KEY };
    for (
      const [args, pattern] of [
        [["executor"], /needs an action: keel executor serve/],
        [["executor", "srve"], /no action "srve"; did you mean "serve"\?/],
        [["executor", "serve", "--backend", "vm"], /--backend takes "process" or "quickjs"; got "vm"/],
        [["executor", "serve", "--port", "70000"], /--port takes 0 to 65535/],
        [["executor", "serve", "--max-body", "0"], /--max-body takes a whole number of at least 1/],
        [["executor", "serve", "--api-key", KEY], /Unknown flag "--api-key"/],
      ] as const
    ) {
      const r = await keel(args, env);
      assert.equal(r.code, 2, `${args.join(" ")}\n${explain(r)}`);
      assert.match(r.stderr, pattern);
    }
  });

  test("--help explains the keys, the routes and every flag", SLOW, async () => {
    for (const args of [["executor", "--help"], ["executor", "serve", "--help"]]) {
      const r = await keel(args);
      assert.equal(r.code, 0, explain(r));
      for (const text of ["KEEL_EXECUTOR_API_KEY", "no unauthenticated mode", "POST /v1/execute", "tool-results", "--port", "--host", "--backend", "--max-processes", "--max-body", "--max-timeout", "--max-concurrent", "--json", "SIGTERM"]) {
        assert.ok(r.stdout.includes(text), `help lacks "${text}":\n${r.stdout}`);
      }
    }
  });
});
