/**
 * End to end: `keel mcp serve` through the real `./keel` launcher, spoken to by the MCP SDK's own
 * clients: over stdio (`StdioClientTransport`) and over streamable HTTP (`--http`).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client";
// The SDK's "./*" export maps types to "<path>.js.d.ts", which does not exist, so these subpaths
// name their declaration files themselves.
// @ts-types="../node_modules/@modelcontextprotocol/sdk/dist/esm/client/stdio.d.ts"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
// @ts-types="../node_modules/@modelcontextprotocol/sdk/dist/esm/client/streamableHttp.d.ts"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type ChildProcess, fromFileUrl, joinPath, type ProcessOutput, type Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = joinPath(ROOT, "keel");
const TOOLS = "examples/code-mode/tools.ts";
/** Spawning keel, and the sandbox's first process, take a moment. */
const SLOW = { timeout: 60_000 };
const ENV = { NO_COLOR: "1", KEEL_DEBUG: "" };

interface ToolResult {
  readonly isError?: boolean;
  readonly content: readonly { type: string; text?: string }[];
  readonly structuredContent?: Record<string, unknown>;
}

let runtime: Runtime;
let plan: string;

before(async () => {
  runtime = await detectRuntime();
  plan = await runtime.fs!.readTextFile(joinPath(ROOT, "examples/code-mode/plan.js"));
});

/** Lists the tools and runs the example plan through execute_code. */
async function exercise(client: Client): Promise<void> {
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name), ["add", "weather", "whoami", "execute_code"]);
  const exec = tools.find((t) => t.name === "execute_code")!;
  assert.match(exec.description!, /^ {2}weather\(input: \{\n[^}]*city: string;\n[^}]*units\?: "c" \| "f";\n {2}\}\): Promise<\{ city: string; temperature: number;/m);

  const oslo = (await client.callTool({ name: "weather", arguments: { city: "Oslo" } })) as ToolResult;
  assert.deepEqual(oslo.structuredContent, { city: "Oslo", temperature: 4, units: "c", conditions: "rain" });

  const out = (await client.callTool({ name: "execute_code", arguments: { code: plan } })) as ToolResult;
  assert.equal(out.isError, undefined, out.content[0]?.text);
  assert.deepEqual(out.structuredContent!.result, { user: null, warmest: "Lisbon", meanTemperatureC: 11.7, sunny: ["Lisbon"] });
  assert.deepEqual(out.structuredContent!.logs, ["tools: add, weather, whoami", "checked 3 cities for nobody"]);

  const failed = (await client.callTool({ name: "execute_code", arguments: { code: "while (true) {}", timeoutMs: 300 } })) as ToolResult;
  assert.equal(failed.isError, true);
  assert.match(failed.content[0]!.text!, /^E_SANDBOX_TIMEOUT: /);
}

async function readAll(stream: ReadableStream<Uint8Array> | null): Promise<string> {
  if (stream === null) return "";
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) text += chunk;
  return text;
}

/** The first line a stream carries; the rest is left unread for `rest`. */
async function firstLine(stream: ReadableStream<Uint8Array>): Promise<{ line: string; rest: Promise<string> }> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const rest = (async () => {
    let more = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return more;
      more += value;
    }
  })();
  const at = text.indexOf("\n");
  return { line: at < 0 ? text : text.slice(0, at), rest };
}

describe("keel mcp serve (stdio)", () => {
  test("an SDK client lists the tools, calls one, and runs execute_code", SLOW, async () => {
    const transport = new StdioClientTransport({
      command: LAUNCHER,
      args: ["mcp", "serve", "--tool", TOOLS],
      cwd: ROOT,
      env: ENV,
      stderr: "pipe",
    });
    const client = new Client({ name: "cli-test", version: "1.0.0" });
    await client.connect(transport);
    try {
      await exercise(client);
    } finally {
      await client.close();
    }
  });

  test("stops by itself, exit 0, when stdin closes; human lines go to stderr only", SLOW, async () => {
    const child: ChildProcess = runtime.processes!.spawn(LAUNCHER, {
      args: ["mcp", "serve", "--tool", TOOLS],
      cwd: ROOT,
      env: ENV,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    });
    const [stdout, stderr] = [readAll(child.stdout), readAll(child.stderr)];
    await child.stdin!.close();
    const status = await child.status;
    assert.equal(status.code, 0, await stderr);
    assert.equal(await stdout, "");
    assert.match(await stderr, /MCP server "keel" on stdio: 3 tool\(s\) and execute_code/);
  });
});

describe("keel mcp serve --http", () => {
  let child: ChildProcess;
  let url: string;
  let stderr: Promise<string>;

  before(async () => {
    child = runtime.processes!.spawn(LAUNCHER, {
      args: ["mcp", "serve", "--http", "--json", "--port", "0", "--tool", TOOLS],
      cwd: ROOT,
      env: ENV,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    stderr = readAll(child.stderr);
    const { line } = await firstLine(child.stdout!);
    url = (JSON.parse(line) as { url: string }).url;
  });

  after(async () => {
    child.kill("SIGTERM");
    await child.status;
  });

  test("prints its URL on 127.0.0.1 and serves an SDK client over streamable HTTP", SLOW, async () => {
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    const client = new Client({ name: "cli-test", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(url)));
    try {
      await exercise(client);
    } finally {
      await client.close();
    }
  });

  test("SIGTERM stops it with exit 0", SLOW, async () => {
    child.kill("SIGTERM");
    const status = await child.status;
    const text = await stderr;
    assert.equal(status.code, 0, text);
    assert.match(text, /MCP server listening on http:\/\/127\.0\.0\.1:\d+\/mcp/);
    assert.match(text, /SIGTERM: stopping the MCP server/);
  });
});

describe("keel mcp: bad input", () => {
  async function keel(args: readonly string[]): Promise<ProcessOutput> {
    return await runtime.processes!.run(LAUNCHER, { args: [...args], cwd: ROOT, env: ENV, stdin: "null" });
  }
  function usage(r: ProcessOutput, message: RegExp): void {
    const why = `exit ${r.code}\n${r.stderr}`;
    assert.equal(r.code, 2, why);
    assert.match(r.stderr, /code: E_CLI_USAGE/, why);
    assert.match(r.stderr, message, why);
    // With --json every command reports a failure as one JSON line on stdout.
    if (r.stdout !== "") assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, "E_CLI_USAGE");
  }

  test("no action, an unknown one (with a suggestion), and stray arguments", SLOW, async () => {
    usage(await keel(["mcp"]), /keel mcp needs an action/);
    usage(await keel(["mcp", "serv"]), /keel mcp has no action "serv"; did you mean "serve"\?/);
    usage(await keel(["mcp", "serve", "tools.ts"]), /takes no arguments.*give tools with --tool/);
  });

  test("--port, --host and --json need --http (stdout is the protocol's)", SLOW, async () => {
    usage(await keel(["mcp", "serve", "--port", "8080"]), /--port is for --http/);
    usage(await keel(["mcp", "serve", "--json"]), /over stdio, stdout carries only MCP messages/);
  });

  test("a bad --backend or a missing --tool module fail before serving", SLOW, async () => {
    usage(await keel(["mcp", "serve", "--backend", "vm"]), /--backend takes/);
    const r = await keel(["mcp", "serve", "--tool", "./missing.ts"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /code: E_CONFIG_LOAD_FAILED/);
    assert.equal(r.stdout, "");
  });
});
