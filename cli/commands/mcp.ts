/**
 * `keel mcp serve [--tool ./tools.ts ...] [--http]`: code mode as an MCP server. It offers every
 * tool of the `--tool` modules plus `execute_code`, which runs JavaScript in the sandbox with those
 * tools as `tools.*` (see `plugins/sandbox/mcp.ts`).
 *
 * Over stdio (the default) stdout carries only protocol messages; every human line goes to
 * stderr. The server stops when stdin closes, or on SIGINT/SIGTERM. With `--http` it serves the
 * streamable HTTP transport on 127.0.0.1 (a free port unless `--port`) until SIGINT/SIGTERM.
 * @module
 */

import type { ArgsDef } from "citty";
import { editDistance } from "../../core/edit-distance.ts";
import { KeelError, type Runtime } from "../../core/mod.ts";
import { createMcpCodeServer, createMcpHttpHandler, type McpCodeServerOptions } from "../../plugins/sandbox/mcp.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { integerFlag, lastValue } from "../flags.ts";
import { backendFlag, CODE_MODE_ARGS, executorFromFlags, loadTools, refusePluginFlags } from "./exec.ts";
import { PACKAGE_VERSION } from "../version.ts";
import { untilSignal } from "./signals.ts";

const ACTIONS = ["serve"] as const;
const LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"];
const LOOPBACK = new Set(LOOPBACK_NAMES);

const MCP_ARGS = {
  action: { type: "positional", description: "serve", required: true },
  ...CODE_MODE_ARGS,
  http: { type: "boolean", description: "Serve MCP's streamable HTTP transport (at /mcp) instead of stdio" },
  port: { type: "string", valueHint: "port", description: "--http: the port (default a free one, printed on stderr)" },
  host: { type: "string", valueHint: "host", description: "--http: the address to bind (default 127.0.0.1; anything else lets other machines in)" },
  json: { type: "boolean", description: '--http: print { "url": ... } on stdout once listening' },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

async function serveStdio(env: CliEnv, options: McpCodeServerOptions): Promise<void> {
  // The SDK's stdio transport speaks Node streams, so this path (and only this one) loads Node's
  // process object; on Deno that boots the Node compatibility layer, once, for a long-lived server.
  const { default: process } = await import("node:process");
  // @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/server/stdio.d.ts"
  const { StdioServerTransport } = await import("@modelcontextprotocol/sdk/server/stdio.js");
  const server = createMcpCodeServer(options);
  const signals = untilSignal(env.runtime);
  const stdinClosed = new Promise<string>((resolve) => {
    process.stdin.once("end", () => resolve("end of stdin"));
    process.stdin.once("close", () => resolve("end of stdin"));
  });
  const serverClosed = new Promise<string>((resolve) => {
    server.onclose = () => resolve("the transport closed");
  });
  server.onerror = (e) => env.logger.debug(`MCP: ${e.message}`);
  try {
    await server.connect(new StdioServerTransport(process.stdin, process.stdout));
    env.out.info(`MCP server "keel" on stdio: ${options.tools.list().length} tool(s) and execute_code`);
    const why = await Promise.race([signals.done, stdinClosed, serverClosed]);
    env.logger.debug(`MCP server stopping: ${why}`);
  } finally {
    signals.stop();
    await server.close().catch(() => {});
  }
}

async function serveHttp(env: CliEnv, options: McpCodeServerOptions): Promise<void> {
  const { runtime } = env;
  if (runtime.serve === undefined) throw new KeelError("E_RUNTIME_UNSUPPORTED", `keel mcp serve --http needs a runtime that can serve HTTP; ${runtime.name} cannot`);
  const hostname = lastValue(env.flags, "host") ?? "127.0.0.1";
  const port = integerFlag(env.flags, "port", 0) ?? 0;
  if (port > 65_535) throw usage(`--port takes 0 to 65535, got ${port}`);
  const local = LOOPBACK.has(hostname);
  if (!local) env.out.warn(`Serving on ${hostname}: other machines can call these tools and run code; there is no authentication`);
  const handler = createMcpHttpHandler({ ...options, allowedHosts: local ? LOOPBACK_NAMES : "any" });
  const signals = untilSignal(runtime);
  let server: Awaited<ReturnType<NonNullable<Runtime["serve"]>>> | undefined;
  try {
    server = await runtime.serve(handler.fetch, { hostname, port });
    const url = `${server.url}/mcp`;
    env.out.success(`MCP server listening on ${url} (${options.tools.list().length} tool(s) and execute_code); Ctrl-C to stop`);
    if (env.flags.booleans.has("json")) await runtime.writeStdout(JSON.stringify({ url }) + "\n");
    const sig = await signals.done;
    env.out.info(`${sig}: stopping the MCP server`);
  } finally {
    signals.stop();
    await handler.close();
    await server?.close();
  }
}

async function mcpCommand(env: CliEnv): Promise<void> {
  const { flags } = env;
  const [, action, ...extra] = flags.positionals;
  if (action === undefined) throw usage("keel mcp needs an action: keel mcp serve --tool ./tools.ts");
  if (!(ACTIONS as readonly string[]).includes(action)) {
    const near = ACTIONS.find((a) => editDistance(a, action) <= 2);
    throw usage(`keel mcp has no action "${action}"` + (near ? `; did you mean "${near}"?` : `; use ${ACTIONS.join(", ")}`));
  }
  if (extra.length > 0) throw usage(`keel mcp serve takes no arguments, got ${extra.map((e) => `"${e}"`).join(", ")}; give tools with --tool`);
  refusePluginFlags(env, "keel mcp serve");
  const http = flags.booleans.has("http");
  if (!http) {
    for (const flag of ["port", "host"]) {
      if (lastValue(flags, flag) !== undefined) throw usage(`--${flag} is for --http; over stdio there is no port to bind`);
    }
    if (flags.booleans.has("json")) throw usage("--json prints the URL of --http; over stdio, stdout carries only MCP messages");
  }
  backendFlag(env); // a typo fails before any module is imported
  const tools = await loadTools(env);
  if (tools.list().length === 0) env.out.warn("No --tool given: execute_code runs code that can call no tools");
  const executor = await executorFromFlags(env, tools);
  const options: McpCodeServerOptions = { tools, executor, name: "keel", version: PACKAGE_VERSION };
  try {
    if (http) await serveHttp(env, options);
    else await serveStdio(env, options);
  } finally {
    await executor.close();
  }
}

/** The `mcp` command. */
export const MCP_COMMAND: CliCommand = {
  meta: {
    name: "mcp",
    description:
      "serve: an MCP server (stdio, or --http) with the --tool modules' tools plus execute_code, which runs a model's JavaScript in a sandbox that can call them",
  },
  args: MCP_ARGS,
  run: mcpCommand,
};
