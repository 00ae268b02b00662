/**
 * The executor service and its client, end to end: a real server (`Runtime.serve`), the real
 * process sandbox, the real client. Raw HTTP (node:net) plays the clients that lie about their
 * body, stream it chunked, or trickle it.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import {
  createToolRegistry,
  type ExecuteResult,
  type Logger,
  type Runtime,
  type SandboxBackend,
  type Server,
  type ToolRegistry,
} from "../../core/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import { rejectsWith } from "../../tests/helpers.ts";
import { createSandbox } from "./mod.ts";
import { type AttemptFailure, createExecutorClient, type FetchLike } from "./client.ts";
import { createExecutorApp, type ExecutorApp, type ExecutorAppOptions } from "./server.ts";

const SLOW = { timeout: 60_000 };
const KEY = "test-key-0123456789abcdef";
const OTHER_KEY = "other-key-ABCDEFGHIJKLMNOP";
const GENERATED_ID = /^exec-[0-9a-z]+-[0-9a-z]+$/;

let runtime: Runtime;
let backend: SandboxBackend;
const apps: ExecutorApp[] = [];
const servers: Server[] = [];

before(async () => {
  runtime = await detectRuntime();
  backend = await createSandbox({ runtime, backend: "process" });
});

after(async () => {
  await Promise.all(apps.map((a) => a.close()));
  await Promise.all(servers.map((s) => s.close()));
  await backend.close();
});

async function serve(handler: (request: Request) => Response | Promise<Response>): Promise<Server> {
  const server = await runtime.serve!(handler, { hostname: "127.0.0.1", port: 0 });
  servers.push(server);
  return server;
}

async function start(options: Partial<ExecutorAppOptions> = {}): Promise<{ app: ExecutorApp; url: string }> {
  const app = createExecutorApp({ backend, apiKeys: [KEY, OTHER_KEY], ...options });
  apps.push(app);
  const server = await serve(app.fetch);
  return { app, url: server.url };
}

/** A fetch that counts its calls and remembers the correlation id of each. */
function countingFetch(): { fetch: FetchLike; calls: string[]; ids: (string | null)[] } {
  const calls: string[] = [];
  const ids: (string | null)[] = [];
  return {
    calls,
    ids,
    fetch: (input, init) => {
      calls.push(input);
      ids.push(new Headers(init.headers).get("x-correlation-id"));
      return fetch(input, init);
    },
  };
}

function post(url: string, body: unknown, headers: Record<string, string> = { authorization: `Bearer ${KEY}` }): Promise<Response> {
  return fetch(`${url}/v1/execute`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function errorOf(response: Response): Promise<{ code: string; message: string; details?: Record<string, unknown> }> {
  const body = await response.json() as { error: { code: string; message: string; details?: Record<string, unknown> } };
  assert.ok(body.error, JSON.stringify(body));
  return body.error;
}

interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * Sends `parts` (written one after another) over a raw TCP connection and resolves with the
 * first response. The connection stays open meanwhile, as a slow or lying client's would.
 */
function rawHttp(url: string, parts: readonly string[]): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let data = "";
    let settled = false;
    const finish = (fail?: Error): void => {
      const split = data.indexOf("\r\n\r\n");
      if (split < 0) {
        if (fail) {
          settled = true;
          socket.destroy();
          reject(fail);
        }
        return;
      }
      const [statusLine, ...lines] = data.slice(0, split).split("\r\n");
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const at = line.indexOf(":");
        headers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
      }
      const body = data.slice(split + 4);
      const length = Number(headers["content-length"] ?? NaN);
      if (!fail && !(body.length >= length)) return;
      settled = true;
      socket.destroy();
      resolve({ status: Number(statusLine!.split(" ")[1]), headers, body });
    };
    socket.setEncoding("utf8");
    socket.on("connect", () => {
      for (const part of parts) socket.write(part);
    });
    socket.on("data", (chunk: string) => {
      data += chunk;
      if (!settled) finish();
    });
    socket.on("error", (e) => {
      if (!settled) finish(e);
    });
    socket.on("close", () => {
      if (!settled) finish(new Error(`connection closed after ${JSON.stringify(data)}`));
    });
  });
}

function head(url: string, extra: string): string {
  const { host } = new URL(url);
  return `POST /v1/execute HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\n${extra}\r\n`;
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A logger that lets a test await a line matching a pattern. */
function watchingLogger(): Logger & { waitFor(pattern: RegExp): Promise<string> } {
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const at = (message: string): void => {
    lines.push(message);
    for (const w of [...waiters]) {
      if (w.pattern.test(message)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(message);
      }
    }
  };
  return {
    debug: at,
    info: at,
    warn: at,
    error: at,
    waitFor(pattern) {
      const found = lines.find((l) => pattern.test(l));
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve) => waiters.push({ pattern, resolve }));
    },
  };
}

function callerTools(): ToolRegistry {
  const tools = createToolRegistry();
  tools.register({
    name: "add",
    description: "Adds two numbers",
    inputSchema: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } }, required: ["a", "b"], additionalProperties: false },
    outputSchema: { type: "number" },
    run: ({ a, b }: { a: number; b: number }) => a + b,
  });
  tools.register({
    name: "whoami",
    description: "The context and correlation id the tool sees",
    inputSchema: { type: "object" },
    run: (_input: unknown, ctx) => ({ user: ctx.context.user, correlationId: ctx.correlationId, frozen: Object.isFrozen(ctx.context) }),
  });
  tools.register({
    name: "fail",
    description: "Always throws",
    inputSchema: true,
    run: () => {
      throw new Error("the database is down");
    },
  });
  tools.register({
    name: "badOutput",
    description: "Returns output its schema refuses",
    inputSchema: true,
    outputSchema: { type: "string" },
    run: () => 42,
  });
  return tools;
}

describe("executor service: executions", () => {
  let url: string;
  before(async () => {
    ({ url } = await start());
  });

  test("code without tools answers JSON with the result, logs and a generated correlation id", SLOW, async () => {
    const client = createExecutorClient({ url, apiKey: KEY });
    const out = await client.execute('console.log("hi", context.n); return 1 + context.n', { context: { n: 2 } });
    assert.equal(out.error, undefined, JSON.stringify(out.error));
    assert.equal(out.result, 3);
    assert.deepEqual(out.logs, ["hi 2"]);
    assert.equal(out.sandbox, backend.name);
    assert.equal(out.toolCalls, 0);
    assert.match(out.correlationId, GENERATED_ID);
  });

  test("the code's own failure is a result, not an HTTP error", SLOW, async () => {
    const client = createExecutorClient({ url, apiKey: KEY });
    const out = await client.execute('throw new TypeError("nope")');
    assert.equal(out.error?.code, "E_SANDBOX_CODE_FAILED");
    assert.match(out.error?.message ?? "", /nope/);
  });

  test("the caller's tools run in the caller, with its context and correlation id", SLOW, async () => {
    const client = createExecutorClient({ url, apiKey: KEY });
    const out = await client.execute(
      "const sum = await tools.add({ a: 2, b: 3 }); const who = await tools.whoami({}); return { sum, who, ctx: context.user }",
      { registry: callerTools(), context: { user: "ada" }, correlationId: "req-42" },
    );
    assert.equal(out.error, undefined, JSON.stringify(out.error));
    assert.deepEqual(out.result, { sum: 5, who: { user: "ada", correlationId: "req-42", frozen: true }, ctx: "ada" });
    assert.equal(out.toolCalls, 2);
    assert.equal(out.correlationId, "req-42");
  });

  test("concurrent tool calls are answered each to its own call", SLOW, async () => {
    const client = createExecutorClient({ url, apiKey: KEY });
    const out = await client.execute(
      "return await Promise.all([1, 2, 3, 4, 5].map((a) => tools.add({ a, b: 10 })))",
      { registry: callerTools() },
    );
    assert.deepEqual(out.result, [11, 12, 13, 14, 15]);
    assert.equal(out.toolCalls, 5);
  });

  test("schema failures, tool errors and the allow-list are seen by the code with their codes", SLOW, async () => {
    const client = createExecutorClient({ url, apiKey: KEY });
    const code = `
      const seen = {};
      for (const [name, input] of [["add", { a: "x", b: 1 }], ["fail", {}], ["badOutput", {}], ["whoami", {}]]) {
        try { await tools[name](input); seen[name] = "ok"; } catch (e) { seen[name] = e.code + ": " + e.message; }
      }
      return seen;`;
    const out = await client.execute(code, { registry: callerTools(), tools: ["add", "fail", "badOutput"] });
    const seen = out.result as Record<string, string>;
    assert.match(seen.add!, /^E_TOOL_INPUT_INVALID: Input to tool "add" does not match its schema/);
    assert.match(seen.fail!, /^E_TOOL_FAILED: Tool "fail" failed: the database is down$/);
    assert.match(seen.badOutput!, /^E_TOOL_OUTPUT_INVALID: /);
    assert.match(seen.whoami!, /^E_SANDBOX_TOOL_DENIED: /);
  });

  test("an uncaught tool error keeps its code in the result; an unknown allow-listed name fails here", SLOW, async () => {
    const client = createExecutorClient({ url, apiKey: KEY });
    const out = await client.execute("await tools.fail({})", { registry: callerTools() });
    assert.equal(out.error?.code, "E_TOOL_FAILED");
    assert.match(out.error?.message ?? "", /the database is down/);
    await rejectsWith(client.execute("1", { registry: callerTools(), tools: ["nope"] }), "E_TOOL_UNKNOWN");
  });

  test("a tool call the caller never answers ends at the execution's deadline with E_SANDBOX_TIMEOUT", SLOW, async () => {
    const never = deferred<number>();
    const tools = createToolRegistry();
    tools.register({ name: "hang", description: "Never answers", inputSchema: true, run: () => never.promise });
    const client = createExecutorClient({ url, apiKey: KEY });
    const out = await client.execute("return await tools.hang({})", { registry: tools, timeoutMs: 300 });
    assert.equal(out.error?.code, "E_SANDBOX_TIMEOUT", JSON.stringify(out.error));
    assert.equal(out.toolCalls, 1);
    never.resolve(0); // its late answer finds no execution (404) and is dropped
  });

  test("the NDJSON protocol: tool_call lines, keep-alives, 404 for unknown calls, then the result", SLOW, async () => {
    const { url: fast } = await start({ keepAliveMs: 5 });
    const response = await post(fast, {
      code: "return await tools.echo({ v: 1 })",
      tools: [{ name: "echo", description: "Echoes", inputSchema: { type: "object" } }],
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/x-ndjson/);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    async function nextLine(): Promise<string> {
      for (;;) {
        const at = buffer.indexOf("\n");
        if (at >= 0) {
          const line = buffer.slice(0, at);
          buffer = buffer.slice(at + 1);
          return line;
        }
        const { done, value } = await reader.read();
        assert.ok(!done, "the stream ended early");
        buffer += value;
      }
    }
    let first = "";
    while ((first = await nextLine()) === ""); // keep-alives may come before the call
    const call = JSON.parse(first) as { type: string; execution: string; call: number; name: string; input: unknown };
    assert.deepEqual({ ...call, execution: "" }, { type: "tool_call", execution: "", call: 1, name: "echo", input: { v: 1 } });
    while ((await nextLine()) !== ""); // a keep-alive comes while the call waits
    const answer = (path: string, body: unknown, key = KEY) =>
      fetch(`${fast}/v1/executions/${path}/tool-results`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify(body) });
    assert.equal((await answer(call.execution, { call: 1, ok: true }, "wrong-key-0123456789abcdef")).status, 401);
    const unknownCall = await answer(call.execution, { call: 2, ok: true, value: 1 });
    assert.equal(unknownCall.status, 404);
    assert.equal((await errorOf(unknownCall)).code, "E_EXECUTOR_REQUEST_INVALID");
    assert.equal((await answer("no-such-execution", { call: 1, ok: true, value: 1 })).status, 404);
    const badAnswer = await answer(call.execution, { call: 1, ok: "yes" });
    assert.equal(badAnswer.status, 400);
    assert.match((await errorOf(badAnswer)).message, /"ok" must be true or false/);
    assert.equal((await answer(call.execution, { call: 1, ok: true, value: { v: 2 } })).status, 204);
    let line = "";
    while ((line = await nextLine()) === "");
    const result = JSON.parse(line) as { type: string } & ExecuteResult;
    assert.equal(result.type, "result");
    assert.deepEqual(result.result, { v: 2 });
    assert.equal((await answer(call.execution, { call: 1, ok: true, value: 1 })).status, 404);
    await reader.cancel();
  });

  test("a caller's error with a code Keel does not know becomes E_TOOL_FAILED", SLOW, async () => {
    const response = await post(url, {
      code: "try { await tools.echo({}) } catch (e) { return e.code + ': ' + e.message }",
      tools: [{ name: "echo", description: "Echoes", inputSchema: true }],
    });
    const text = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    while (!buffer.includes("\n")) buffer = (buffer + ((await text.read()).value ?? "")).replace(/^\n+/, "");
    const call = JSON.parse(buffer.slice(0, buffer.indexOf("\n"))) as { execution: string };
    buffer = buffer.slice(buffer.indexOf("\n") + 1);
    const posted = await fetch(`${url}/v1/executions/${call.execution}/tool-results`, {
      method: "POST",
      headers: { "x-api-key": KEY },
      body: JSON.stringify({ call: 1, ok: false, error: { code: "ECONNRESET", message: "upstream went away" } }),
    });
    assert.equal(posted.status, 204);
    for (;;) {
      const { done, value } = await text.read();
      if (done) break;
      buffer += value;
    }
    const result = JSON.parse(buffer.trim().split("\n").filter((l) => l !== "").pop()!) as ExecuteResult;
    assert.equal(result.result, 'E_TOOL_FAILED: Tool "echo" failed: upstream went away');
  });
});

describe("executor service: health, readiness, shutdown", () => {
  test("/health answers without auth; /ready once the warm-up ran; 503 after close()", SLOW, async () => {
    const { app, url } = await start();
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok" });
    assert.equal(await app.warmUp(), true);
    const ready = await fetch(`${url}/ready`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { ready: true, sandbox: backend.name });
    const client = createExecutorClient({ url, apiKey: KEY, retry: { maxAttempts: 1 } });
    assert.deepEqual(await client.health(), { status: "ok" });
    assert.equal(await client.ready(), true);

    await app.close();
    const notReady = await fetch(`${url}/ready`);
    assert.equal(notReady.status, 503);
    assert.equal((await notReady.json() as { ready: boolean }).ready, false);
    assert.equal(await client.ready(), false);
    const refused = await post(url, { code: "1" });
    assert.equal(refused.status, 503);
    assert.equal((await errorOf(refused)).code, "E_SANDBOX_CLOSED");
    const e = await rejectsWith(client.execute("1"), "E_EXECUTOR_UNREACHABLE");
    assert.equal((e.details?.attempts as AttemptFailure[])[0]?.code, "E_SANDBOX_CLOSED");
  });

  test("an unknown route is a coded 404", SLOW, async () => {
    const { url } = await start();
    const response = await fetch(`${url}/v1/execute`);
    assert.equal(response.status, 404);
    assert.match((await errorOf(response)).message, /POST \/v1\/execute/);
  });
});

describe("executor service: authentication", () => {
  let url: string;
  before(async () => {
    ({ url } = await start());
  });

  test("a missing or wrong key is 401 with WWW-Authenticate; either configured key works", SLOW, async () => {
    const missing = await post(url, { code: "1" }, {});
    assert.equal(missing.status, 401);
    assert.match(missing.headers.get("www-authenticate") ?? "", /^Bearer/);
    const error = await errorOf(missing);
    assert.equal(error.code, "E_EXECUTOR_UNAUTHORIZED");
    assert.match(error.message, /Authorization: Bearer/);
    assert.match(missing.headers.get("x-correlation-id") ?? "", GENERATED_ID);
    for (const wrong of [KEY.slice(0, -1) + "X", KEY.slice(0, -1), KEY + "f", `${KEY},${OTHER_KEY}`, KEY.toUpperCase()]) {
      const r = await post(url, { code: "1" }, { authorization: `Bearer ${wrong}` });
      assert.equal(r.status, 401, wrong);
      assert.match((await errorOf(r)).message, /API key is wrong/);
    }
    const basic = await post(url, { code: "1" }, { authorization: `Basic ${KEY}` });
    assert.equal(basic.status, 401);
    await basic.body?.cancel();
    for (const headers of [{ authorization: `Bearer ${KEY}` }, { authorization: `bearer ${OTHER_KEY}` }, { "x-api-key": KEY }]) {
      const r = await post(url, { code: "return 7" }, headers);
      assert.equal(r.status, 200, JSON.stringify(headers));
      assert.equal((await r.json() as ExecuteResult).result, 7);
    }
  });

  test("the client reports a wrong key as E_EXECUTOR_UNAUTHORIZED, without retrying", SLOW, async () => {
    const counting = countingFetch();
    const client = createExecutorClient({ url, apiKey: "not-the-key-0123456789", fetch: counting.fetch });
    await rejectsWith(client.execute("1"), "E_EXECUTOR_UNAUTHORIZED", /refused the API key/);
    assert.equal(counting.calls.length, 1);
  });

  test("createExecutorApp refuses no key, a short key and a key with spaces", () => {
    assert.throws(() => createExecutorApp({ backend, apiKeys: [] }), TypeError);
    assert.throws(() => createExecutorApp({ backend, apiKeys: ["short"] }), /at least 16/);
    assert.throws(() => createExecutorApp({ backend, apiKeys: [""] }), TypeError);
    assert.throws(() => createExecutorApp({ backend, apiKeys: ["has a space in it 0123456789"] }), /without spaces/);
    assert.throws(() => createExecutorApp({ backend, apiKeys: [KEY], limits: { maxBodyBytes: 0 } }), /maxBodyBytes must be a positive integer/);
  });
});

describe("executor service: bad requests", () => {
  let url: string;
  before(async () => {
    ({ url } = await start({ limits: { maxBodyBytes: 1024, bodyTimeoutMs: 200 } }));
  });

  test("a body over the limit by Content-Length is 413 before any body arrives", SLOW, async () => {
    const r = await rawHttp(url, [head(url, "Content-Length: 5000\r\n")]);
    assert.equal(r.status, 413);
    assert.equal(JSON.parse(r.body).error.code, "E_EXECUTOR_REQUEST_TOO_LARGE");
    assert.match(JSON.parse(r.body).error.message, /5000 bytes, over this executor's limit of 1024 bytes/);
  });

  test("a chunked body without Content-Length is counted as it streams: 413", SLOW, async () => {
    const chunk = "x".repeat(512);
    const chunked = `${(512).toString(16)}\r\n${chunk}\r\n`.repeat(3);
    const r = await rawHttp(url, [head(url, "Transfer-Encoding: chunked\r\n") + chunked]);
    assert.equal(r.status, 413);
    assert.equal(JSON.parse(r.body).error.code, "E_EXECUTOR_REQUEST_TOO_LARGE");
  });

  test("a client that trickles its body gets 408 after bodyTimeoutMs", SLOW, async () => {
    const r = await rawHttp(url, [head(url, "Content-Length: 100\r\n"), '{"code": "'] );
    assert.equal(r.status, 408);
    assert.equal(JSON.parse(r.body).error.code, "E_EXECUTOR_REQUEST_TIMEOUT");
    assert.match(JSON.parse(r.body).error.message, /within 200ms/);
  });

  test("malformed JSON and wrong shapes are 400 saying what is wrong", SLOW, async () => {
    const cases: [unknown, RegExp][] = [
      ['{"code": ', /not valid JSON/],
      ["[1, 2]", /must be a JSON object/],
      [{}, /"code" must be a string of JavaScript, got nothing/],
      [{ code: 42 }, /"code" must be a string of JavaScript, got number/],
      [{ code: "1", timeout: 5 }, /unknown field\(s\) "timeout"; its fields are "code", "tools"/],
      [{ code: "1", tools: {} }, /"tools" must be an array/],
      [{ code: "1", tools: null }, /"tools" must be an array/],
      [{ code: "1", tools: [{ name: "x", description: "d" }] }, /"tools\[0\]".inputSchema is missing/],
      [{ code: "1", tools: [{ name: "x", description: "d", inputSchema: true, run: "no" }] }, /"tools\[0\]" has unknown field\(s\) "run"/],
      [{ code: "1", context: [1] }, /"context" must be a JSON object/],
    ];
    for (const [body, pattern] of cases) {
      const r = await post(url, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      const error = await errorOf(r);
      assert.equal(error.code, "E_EXECUTOR_REQUEST_INVALID");
      assert.match(error.message, pattern);
    }
  });

  test("limits that are not positive integers or over the server's caps are 400", SLOW, async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ timeoutMs: 0 }, /"timeoutMs" must be a positive integer, got 0/],
      [{ timeoutMs: 60_001 }, /"timeoutMs" is 60001, over this executor's limit of 60000/],
      [{ memoryMb: 513 }, /"memoryMb" is 513, over this executor's limit of 512/],
      [{ maxToolCalls: "5" }, /"maxToolCalls" must be a positive integer, got "5"/],
      [{ timeoutMs: 1.5 }, /"timeoutMs" must be a positive integer/],
    ];
    for (const [limits, pattern] of cases) {
      const r = await post(url, { code: "1", ...limits });
      assert.equal(r.status, 400, JSON.stringify(limits));
      assert.match((await errorOf(r)).message, pattern);
    }
  });

  test("an invalid tool schema or name is 400 with the tool's code", SLOW, async () => {
    const schema = await post(url, { code: "1", tools: [{ name: "t", description: "d", inputSchema: { type: "object", requried: ["a"] } }] });
    assert.equal(schema.status, 400);
    const error = await errorOf(schema);
    assert.equal(error.code, "E_TOOL_SCHEMA_INVALID");
    assert.match(error.message, /Tool "t" has an invalid inputSchema/);
    const name = await post(url, { code: "1", tools: [{ name: "__x", description: "d", inputSchema: true }] });
    assert.equal(name.status, 400);
    assert.equal((await errorOf(name)).code, "E_TOOL_NAME_INVALID");
  });

  test("the client surfaces a 400 with the server's code and does not retry it", SLOW, async () => {
    const counting = countingFetch();
    const client = createExecutorClient({ url, apiKey: KEY, fetch: counting.fetch });
    await rejectsWith(client.execute("1", { timeoutMs: 999_999 }), "E_EXECUTOR_REQUEST_INVALID", /over this executor's limit/);
    assert.equal(counting.calls.length, 1);
  });
});

describe("executor service: concurrency and disconnects", () => {
  test("past maxConcurrent executions, 503 E_SANDBOX_BUSY with Retry-After", SLOW, async () => {
    const { app, url } = await start({ limits: { maxConcurrent: 1 } });
    const entered = deferred();
    const release = deferred<number>();
    const tools = createToolRegistry();
    tools.register({
      name: "hold",
      description: "Waits until the test releases it",
      inputSchema: true,
      run: () => {
        entered.resolve();
        return release.promise;
      },
    });
    const client = createExecutorClient({ url, apiKey: KEY });
    const first = client.execute("return await tools.hold({})", { registry: tools, timeoutMs: 30_000 });
    await entered.promise;
    assert.equal(app.inFlight, 1);
    const busy = await post(url, { code: "1" });
    assert.equal(busy.status, 503);
    assert.equal(busy.headers.get("retry-after"), "1");
    const error = await errorOf(busy);
    assert.equal(error.code, "E_SANDBOX_BUSY");
    assert.match(error.message, /1 execution\(s\) at once/);
    release.resolve(9);
    assert.equal((await first).result, 9);
    assert.equal(app.inFlight, 0);
    assert.equal((await (await post(url, { code: "return 2" })).json() as ExecuteResult).result, 2);
  });

  test("a caller that disconnects mid-stream aborts the execution and frees its slot", SLOW, async () => {
    const logger = watchingLogger();
    const { app, url } = await start({ keepAliveMs: 10, logger });
    const entered = deferred();
    const never = deferred<number>();
    const tools = createToolRegistry();
    tools.register({ name: "hold", description: "Never answers", inputSchema: true, run: () => (entered.resolve(), never.promise) });
    const controller = new AbortController();
    const client = createExecutorClient({ url, apiKey: KEY });
    const run = client.execute("return await tools.hold({})", { registry: tools, timeoutMs: 30_000, correlationId: "gone-1", signal: controller.signal });
    await entered.promise;
    controller.abort();
    await rejectsWith(run, "E_SANDBOX_ABORTED");
    assert.match(await logger.waitFor(/^Execution gone-1 failed/), /E_SANDBOX_ABORTED/);
    assert.equal(app.inFlight, 0);
    never.resolve(0);
  });
});

describe("executor client: retries and correlation ids", () => {
  test("connection refused: E_EXECUTOR_UNREACHABLE after maxAttempts attempts", SLOW, async () => {
    const probe = await runtime.serve!(() => new Response(""), { hostname: "127.0.0.1", port: 0 });
    const url = probe.url;
    await probe.close(); // nothing listens there now
    const counting = countingFetch();
    const client = createExecutorClient({ url, apiKey: KEY, fetch: counting.fetch, retry: { maxAttempts: 3, baseMs: 1, maxMs: 5 } });
    const e = await rejectsWith(client.execute("1"), "E_EXECUTOR_UNREACHABLE", /after 3 attempt\(s\)/);
    assert.equal(counting.calls.length, 3);
    const attempts = e.details?.attempts as AttemptFailure[];
    assert.deepEqual(attempts.map((a) => a.attempt), [1, 2, 3]);
    assert.ok(attempts.every((a) => a.status === undefined && a.message !== ""));
  });

  test("503 twice, then the answer: success on attempt 3, one correlation id throughout", SLOW, async () => {
    const { app } = await start();
    let executes = 0;
    const flaky = await serve((request) => {
      if (new URL(request.url).pathname === "/v1/execute" && ++executes <= 2) {
        return Response.json({ error: { code: "E_SANDBOX_BUSY", message: "busy" } }, { status: 503, headers: { "retry-after": "0" } });
      }
      return app.fetch(request);
    });
    const counting = countingFetch();
    const client = createExecutorClient({ url: flaky.url, apiKey: KEY, fetch: counting.fetch, retry: { baseMs: 1, maxMs: 10 } });
    const out = await client.execute("return 40 + 2");
    assert.equal(out.result, 42);
    assert.equal(counting.calls.length, 3);
    assert.equal(executes, 3);
    assert.match(out.correlationId, GENERATED_ID);
    assert.deepEqual(counting.ids, [out.correlationId, out.correlationId, out.correlationId]);
  });

  test("503 on every attempt: E_EXECUTOR_UNREACHABLE naming the server's code", SLOW, async () => {
    const always = await serve(() => Response.json({ error: { code: "E_SANDBOX_BUSY", message: "busy" } }, { status: 503 }));
    const counting = countingFetch();
    const client = createExecutorClient({ url: always.url, apiKey: KEY, fetch: counting.fetch, retry: { maxAttempts: 2, baseMs: 1, maxMs: 2 } });
    const e = await rejectsWith(client.execute("1"), "E_EXECUTOR_UNREACHABLE");
    assert.equal(counting.calls.length, 2);
    assert.deepEqual((e.details?.attempts as AttemptFailure[]).map((a) => [a.status, a.code]), [[503, "E_SANDBOX_BUSY"], [503, "E_SANDBOX_BUSY"]]);
  });

  test("the server echoes a given correlation id, and replaces an unusable one", SLOW, async () => {
    const { url } = await start({ correlationPrefix: "exec" });
    const given = await post(url, { code: "return 1" }, { authorization: `Bearer ${KEY}`, "x-correlation-id": "trace-abc.123" });
    assert.equal(given.headers.get("x-correlation-id"), "trace-abc.123");
    assert.equal((await given.json() as ExecuteResult).correlationId, "trace-abc.123");
    const none = await post(url, { code: "return 1" });
    const id = none.headers.get("x-correlation-id") ?? "";
    assert.match(id, GENERATED_ID);
    assert.equal((await none.json() as ExecuteResult).correlationId, id);
    const tooLong = await post(url, { code: "return 1" }, { authorization: `Bearer ${KEY}`, "x-correlation-id": "x".repeat(129) });
    assert.match(tooLong.headers.get("x-correlation-id") ?? "", GENERATED_ID);
    await tooLong.body?.cancel();
    const client = createExecutorClient({ url, apiKey: KEY });
    assert.equal((await client.execute("1", { correlationId: "mine-7" })).correlationId, "mine-7");
  });

  test("createExecutorClient refuses a URL that is not http(s) and an empty key", () => {
    assert.throws(() => createExecutorClient({ url: "ftp://x", apiKey: KEY }), /http: or https:/);
    assert.throws(() => createExecutorClient({ url: "not a url", apiKey: KEY }), TypeError);
    assert.throws(() => createExecutorClient({ url: "http://127.0.0.1:1", apiKey: "" }), TypeError);
    assert.throws(() => createExecutorClient({ url: "http://127.0.0.1:1", apiKey: KEY, retry: { maxAttempts: 0 } }), RangeError);
  });
});
