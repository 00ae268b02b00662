/**
 * executor-mcp: the `mcp/v1` protocol. Calls built-in deterministic tools and the tools of any MCP
 * server spoken to over stdio (`@modelcontextprotocol/sdk`'s `Client`).
 *
 * Methods:
 * - `mcp/tool.<name>`: the params *are* the tool's arguments (Gleitzeit's form, so its workflows
 *   run unchanged). The built-in tools, which need nothing granted:
 *   - `mcp/tool.echo` `{ message }` → `{ response: message }`
 *   - `mcp/tool.add` `{ a, b }` → `{ result: a + b }`
 *   - `mcp/tool.multiply` `{ a, b }` → `{ result: a * b }`
 *   - `mcp/tool.concat` `{ strings, separator? }` → `{ result: strings.join(separator) }`
 *     (`separator` defaults to `""`; non-string items are turned into strings).
 *   `a` and `b` are numbers, or strings holding one (`"42"`); anything else is a `TypeError`.
 *   A name that is not built in goes to the first configured server (in config order) that has
 *   the tool; built-ins win over a server's tool of the same name (reach that with `mcp/call`).
 * - `mcp/call` `{ server?, tool, arguments?, timeout? }` calls `tool` on `server` (without
 *   `server`: looked up as `mcp/tool.<tool>` is). `timeout` is in seconds.
 * - `mcp/list_tools` `{ server? }` → `{ tools: [{ server, name, description?, inputSchema }] }`;
 *   built-ins are listed with `server: "builtin"`; without `server` every server is started and
 *   listed.
 *
 * A server tool resolves to {@link McpToolResult} `{ text, content, structuredContent? }`: the
 * MCP content blocks, their text parts joined by newlines, and the structured content when the
 * tool gave one.
 *
 * `mcp/ping`, `mcp/tools/list` and `mcp/server_info` (named by Gleitzeit's test workflow) are not
 * methods: calling them is a `RangeError`, and a workflow naming them fails validation.
 *
 * Servers: {@link createMcpPlugin} takes `servers: { name: { command, args?, env?, cwd?, tools? } }`.
 * The manifest asks for `run:<command>` for each, and the process is started through `ctx.spawn`
 * (never `node:child_process`), so the grant is checked. A server starts on its first use, is reused
 * after, and is stopped when the kernel is disposed (stdin closed, then SIGTERM, then SIGKILL);
 * one that exits is started again on the next use. Tools a server declares in `tools` are listed in
 * the executor's `methods` as `mcp/tool.<name>`, so workflows naming them validate before any
 * server starts. With any server configured, `methods` also holds `mcp/tool.*` (a prefix, as the
 * workflow validator reads it), since a server's other tools are known only once it runs.
 *
 * Errors: a tool nobody has is `E_MCP_TOOL_UNKNOWN`, naming the tools there are; a server that
 * cannot be started or dies during the handshake, or a tool that reports an error (`isError`) or
 * throws, is `E_MCP_FAILED` (with the server's stderr tail when it died). Aborting the request
 * cancels the call (MCP `notifications/cancelled`) and throws the signal's reason when it is a
 * KeelError, `E_TASK_TIMEOUT` for a `TimeoutError` or the call's own `timeout`, else
 * `E_RUN_INTERRUPTED`; the server stays up for the next call.
 * @module
 */

// The SDK's "./*" export maps types to "<path>.js.d.ts", which does not exist, so subpaths such
// as "types.js" do not type-check under Deno; "./client" is a named export with correct types.
import { Client } from "@modelcontextprotocol/sdk/client";
import {
  type ChildProcess,
  definePlugin,
  type ExecuteRequest,
  type Executor,
  KeelError,
  type Logger,
  type Plugin,
  type PluginContext,
} from "../../core/mod.ts";

/** The protocol this plugin answers `resolveExecutor` for. */
export const MCP_PROTOCOL = "mcp/v1";

/** The prefix of the per-tool methods: `mcp/tool.echo`. */
export const MCP_TOOL_PREFIX = "mcp/tool.";

/** Calls a tool on a named server. */
export const MCP_CALL = "mcp/call";

/** Lists the tools of the built-ins and the servers. */
export const MCP_LIST_TOOLS = "mcp/list_tools";

/** The `server` name built-in tools are listed under. */
export const BUILTIN_SERVER = "builtin";

/** The built-in tools' names. */
export const BUILTIN_TOOLS = ["echo", "add", "multiply", "concat"] as const;

/** How to start one MCP server over stdio. */
export interface McpServerConfig {
  /** The program; the manifest asks for `run:<command>`. */
  readonly command: string;
  readonly args?: readonly string[];
  /** Variables added to the inherited environment. */
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  /** Tools it has, listed in the executor's `methods` as `mcp/tool.<name>` for validation. */
  readonly tools?: readonly string[];
}

/** What a server tool resolves to. */
export interface McpToolResult {
  /** The text content blocks, joined by newlines. */
  readonly text: string;
  /** The MCP content blocks as the server sent them. */
  readonly content: readonly unknown[];
  readonly structuredContent?: Readonly<Record<string, unknown>>;
}

/** One entry of `mcp/list_tools`. */
export interface McpToolInfo {
  readonly server: string;
  readonly name: string;
  readonly description?: string;
  readonly inputSchema: unknown;
}

/** What {@link createMcpExecutor} needs. */
export interface McpExecutorOptions {
  /** Starts a server; pass the plugin context's `spawn` so the grant is checked. */
  readonly spawn?: PluginContext["spawn"];
  readonly servers?: Readonly<Record<string, McpServerConfig>>;
  readonly logger?: Logger;
  /** Default limit per server call, in milliseconds; default none (the request's signal rules). */
  readonly timeoutMs?: number;
  /** How long the handshake with a starting server may take, in milliseconds; default 30 000. */
  readonly startTimeoutMs?: number;
}

/** Options of {@link createMcpPlugin}. */
export type McpPluginOptions = Omit<McpExecutorOptions, "spawn" | "logger">;

/** An executor that also stops its servers. */
export interface McpExecutor extends Executor {
  /** Stops every server it started; later calls start them again. */
  close(): Promise<void>;
}

/** The SDK's Transport interface, taken from `Client.connect` (see the import above). */
type Transport = Parameters<Client["connect"]>[0];
type JSONRPCMessage = Parameters<Transport["send"]>[0];

/** MCP's JSON-RPC code for a request that timed out (the SDK's `ErrorCode.RequestTimeout`). */
const MCP_REQUEST_TIMEOUT = -32001;
const NO_LIMIT_MS = 2_147_483_647;
const STDERR_TAIL_CHARS = 4_000;

/**
 * Creates the `mcp/v1` executor.
 * @throws {TypeError} for a malformed server config.
 */
export function createMcpExecutor(options: McpExecutorOptions = {}): McpExecutor {
  const servers = checkServers(options.servers ?? {});
  const names = Object.keys(servers);
  if (names.length > 0 && options.spawn === undefined) {
    throw new TypeError("createMcpExecutor() needs `spawn` to start MCP servers");
  }
  if (options.timeoutMs !== undefined) checkMs(options.timeoutMs, "timeoutMs");
  if (options.startTimeoutMs !== undefined) checkMs(options.startTimeoutMs, "startTimeoutMs");
  const startTimeoutMs = options.startTimeoutMs ?? 30_000;
  const connections = new Map<string, Promise<Connection>>();

  const declared = names.flatMap((n) => (servers[n]!.tools ?? []).map((t) => `${MCP_TOOL_PREFIX}${t}`));
  const methods = Object.freeze([
    ...new Set([
      ...BUILTIN_TOOLS.map((t) => `${MCP_TOOL_PREFIX}${t}`),
      ...declared,
      // A server's tools are known only once it runs; the workflow validator reads "*" as a prefix.
      ...(names.length > 0 ? [`${MCP_TOOL_PREFIX}*`] : []),
      MCP_CALL,
      MCP_LIST_TOOLS,
    ]),
  ]);

  function connect(name: string): Promise<Connection> {
    let pending = connections.get(name);
    if (pending === undefined) {
      pending = startServer(name, servers[name]!, {
        spawn: options.spawn!,
        startTimeoutMs,
        logger: options.logger,
        onGone: () => {
          if (connections.get(name) === pending) connections.delete(name);
        },
      });
      connections.set(name, pending);
      pending.catch(() => {
        if (connections.get(name) === pending) connections.delete(name);
      });
    }
    return pending;
  }

  async function toolsOf(name: string): Promise<McpToolInfo[]> {
    return (await connect(name)).tools;
  }

  function unknownServer(server: string): KeelError {
    return new KeelError(
      "E_MCP_TOOL_UNKNOWN",
      `No MCP server is named "${server}"; configured: ${quoteAll([BUILTIN_SERVER, ...names])}`,
      { details: { server, servers: [BUILTIN_SERVER, ...names] } },
    );
  }

  /** Which server has `tool`: built-ins first, then servers in config order (started as needed). */
  async function locate(tool: string): Promise<string> {
    if ((BUILTIN_TOOLS as readonly string[]).includes(tool)) return BUILTIN_SERVER;
    const owner = names.find((n) => servers[n]!.tools?.includes(tool));
    if (owner !== undefined) return owner;
    const available: string[] = [...BUILTIN_TOOLS];
    for (const n of names) {
      const tools = await toolsOf(n);
      if (tools.some((t) => t.name === tool)) return n;
      available.push(...tools.map((t) => t.name));
    }
    throw new KeelError(
      "E_MCP_TOOL_UNKNOWN",
      `No MCP tool is named "${tool}"; available: ${quoteAll(available)}`,
      { details: { tool, available } },
    );
  }

  async function callOn(
    server: string,
    tool: string,
    args: Record<string, unknown>,
    timeoutMs: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    if (signal?.aborted) throw interrupted(tool, signal.reason);
    if (server === BUILTIN_SERVER) return callBuiltin(tool, args);
    if (!Object.hasOwn(servers, server)) throw unknownServer(server);
    const connection = await connect(server);
    if (!connection.tools.some((t) => t.name === tool)) {
      const available = connection.tools.map((t) => t.name);
      throw new KeelError(
        "E_MCP_TOOL_UNKNOWN",
        `MCP server "${server}" has no tool "${tool}"; it has ${quoteAll(available)}`,
        { details: { server, tool, available } },
      );
    }
    return await connection.call(tool, args, timeoutMs ?? options.timeoutMs, signal);
  }

  async function listTools(server: string | undefined): Promise<{ tools: McpToolInfo[] }> {
    if (server === BUILTIN_SERVER) return { tools: builtinInfo() };
    if (server !== undefined) {
      if (!Object.hasOwn(servers, server)) throw unknownServer(server);
      return { tools: await toolsOf(server) };
    }
    const tools = builtinInfo();
    for (const n of names) tools.push(...(await toolsOf(n)));
    return { tools };
  }

  return Object.freeze({
    protocol: MCP_PROTOCOL,
    methods,
    async execute(request: ExecuteRequest): Promise<unknown> {
      const { method, signal } = request;
      const params = request.params;
      if (!isRecord(params)) throw new TypeError(`"${method}" takes an object of params`);
      if (method.startsWith(MCP_TOOL_PREFIX) && method.length > MCP_TOOL_PREFIX.length) {
        const tool = method.slice(MCP_TOOL_PREFIX.length);
        return await callOn(await locate(tool), tool, { ...params }, undefined, signal);
      }
      if (method === MCP_CALL) {
        const { server, tool, arguments: args, timeout } = params;
        if (typeof tool !== "string" || tool === "") {
          throw new TypeError(`"${MCP_CALL}" takes params { server?, tool, arguments?, timeout? }; "tool" must be a tool name`);
        }
        if (server !== undefined && (typeof server !== "string" || server === "")) {
          throw new TypeError(`"${MCP_CALL}" param "server" must be a server name`);
        }
        if (args !== undefined && !isRecord(args)) {
          throw new TypeError(`"${MCP_CALL}" param "arguments" must be an object of tool arguments`);
        }
        const timeoutMs = checkTimeout(MCP_CALL, timeout);
        const where = server ?? (await locate(tool));
        return await callOn(where, tool, { ...(args ?? {}) }, timeoutMs, signal);
      }
      if (method === MCP_LIST_TOOLS) {
        const { server } = params;
        if (server !== undefined && (typeof server !== "string" || server === "")) {
          throw new TypeError(`"${MCP_LIST_TOOLS}" param "server" must be a server name`);
        }
        return await listTools(server);
      }
      throw new RangeError(
        `Executor "${MCP_PROTOCOL}" has no method "${method}"; use "${MCP_TOOL_PREFIX}<tool>", "${MCP_CALL}" or "${MCP_LIST_TOOLS}"`,
      );
    },
    async close(): Promise<void> {
      const open = [...connections.values()];
      connections.clear();
      await Promise.all(open.map(async (p) => {
        try {
          await (await p).close();
        } catch {
          // A server that never started has nothing to stop.
        }
      }));
    },
  });
}

/**
 * An `mcp/v1` plugin with the built-in tools and the given stdio servers; its manifest asks for
 * `run:<command>` for each server.
 * @throws {TypeError} for a malformed server config.
 */
export function createMcpPlugin(options: McpPluginOptions = {}): Plugin {
  const servers = checkServers(options.servers ?? {});
  const capabilities = [...new Set(Object.values(servers).map((s) => `run:${s.command}`))];
  return definePlugin({
    name: "executor-mcp",
    version: "0.1.0",
    kernel: "^1",
    description: "mcp/v1: built-in tools (echo, add, multiply, concat) and MCP servers over stdio",
    capabilities,
    setup(ctx) {
      const executor = createMcpExecutor({ ...options, servers, spawn: ctx.spawn, logger: ctx.logger });
      return {
        resolveExecutor: (protocol) => (protocol === MCP_PROTOCOL ? executor : undefined),
        dispose: () => executor.close(),
      };
    },
  });
}

/** The executor-mcp plugin with the built-in tools only; it asks for nothing. */
const executorMcp: Plugin = createMcpPlugin();
export default executorMcp;

// ---------------------------------------------------------------------------------------------
// Built-in tools

function builtinInfo(): McpToolInfo[] {
  const num = { type: ["number", "string"] };
  const schema = (properties: Record<string, unknown>, required: string[]): unknown => ({
    type: "object",
    properties,
    required,
  });
  return [
    { server: BUILTIN_SERVER, name: "echo", description: "Returns { response: message }", inputSchema: schema({ message: { type: "string" } }, ["message"]) },
    { server: BUILTIN_SERVER, name: "add", description: "Returns { result: a + b }", inputSchema: schema({ a: num, b: num }, ["a", "b"]) },
    { server: BUILTIN_SERVER, name: "multiply", description: "Returns { result: a * b }", inputSchema: schema({ a: num, b: num }, ["a", "b"]) },
    {
      server: BUILTIN_SERVER,
      name: "concat",
      description: "Returns { result: strings joined by separator }",
      inputSchema: schema({ strings: { type: "array" }, separator: { type: "string" } }, ["strings"]),
    },
  ];
}

function callBuiltin(tool: string, args: Record<string, unknown>): unknown {
  switch (tool) {
    case "echo": {
      const { message } = args;
      if (typeof message !== "string") {
        throw new TypeError(`Tool "echo" takes { message: string }, got message ${JSON.stringify(message)}`);
      }
      return { response: message };
    }
    case "add":
      return { result: numberArg(tool, "a", args.a) + numberArg(tool, "b", args.b) };
    case "multiply":
      return { result: numberArg(tool, "a", args.a) * numberArg(tool, "b", args.b) };
    case "concat": {
      const { strings, separator } = args;
      if (!Array.isArray(strings)) {
        throw new TypeError(`Tool "concat" takes { strings: array, separator?: string }; "strings" must be an array`);
      }
      if (separator !== undefined && typeof separator !== "string") {
        throw new TypeError(`Tool "concat" param "separator" must be a string`);
      }
      const parts = strings.map((s) => (typeof s === "string" ? s : typeof s === "object" && s !== null ? JSON.stringify(s) : String(s)));
      return { result: parts.join(separator ?? "") };
    }
    default:
      throw new KeelError("E_MCP_TOOL_UNKNOWN", `No built-in MCP tool is named "${tool}"; available: ${quoteAll(BUILTIN_TOOLS)}`, {
        details: { tool, available: [...BUILTIN_TOOLS] },
      });
  }
}

function numberArg(tool: string, name: string, value: unknown): number {
  if (typeof value === "number" && Number.isFinite(value)) return value;
  if (typeof value === "string" && value.trim() !== "") {
    const n = Number(value);
    if (Number.isFinite(n)) return n;
  }
  throw new TypeError(`Tool "${tool}" param "${name}" must be a number, got ${JSON.stringify(value)}`);
}

// ---------------------------------------------------------------------------------------------
// Servers

interface Connection {
  readonly tools: McpToolInfo[];
  call(tool: string, args: Record<string, unknown>, timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<McpToolResult>;
  close(): Promise<void>;
}

interface StartOptions {
  readonly spawn: PluginContext["spawn"];
  readonly startTimeoutMs: number;
  readonly logger: Logger | undefined;
  readonly onGone: () => void;
}

async function startServer(name: string, config: McpServerConfig, options: StartOptions): Promise<Connection> {
  const transport = new SpawnStdioTransport(name, config, options);
  const client = new Client({ name: "keel", version: "0.1.0" });
  let handshake = true;
  let closing = false;
  transport.onGone = () => {
    options.onGone();
    // Only an exit nobody asked for is news; a close at dispose is expected.
    if (!handshake && !closing) {
      options.logger?.warn(`MCP server "${name}" exited; it starts again on next use`, { server: name });
    }
  };
  try {
    await client.connect(transport, { timeout: options.startTimeoutMs });
    const tools: McpToolInfo[] = [];
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor === undefined ? {} : { cursor }, { timeout: options.startTimeoutMs });
      for (const t of page.tools) {
        tools.push({
          server: name,
          name: t.name,
          ...(t.description === undefined ? {} : { description: t.description }),
          inputSchema: t.inputSchema,
        });
      }
      cursor = page.nextCursor;
    } while (cursor !== undefined);
    handshake = false;
    return {
      tools,
      call: (tool, args, timeoutMs, signal) => callTool(client, transport, { server: name, tool, args, timeoutMs, signal }),
      close: () => {
        closing = true;
        return client.close();
      },
    };
  } catch (e) {
    await client.close().catch(() => {});
    await transport.close();
    if (KeelError.is(e, "E_CAPABILITY_DENIED")) throw e;
    const stderr = transport.stderrTail();
    throw new KeelError(
      "E_MCP_FAILED",
      `MCP server "${name}" (${config.command}) could not be started: ${messageOf(e)}${tailNote(stderr)}; check its command, args and that it speaks MCP on stdio`,
      { cause: e, details: { server: name, command: config.command, stderr } },
    );
  }
}

interface CallSpec {
  readonly server: string;
  readonly tool: string;
  readonly args: Record<string, unknown>;
  readonly timeoutMs: number | undefined;
  readonly signal: AbortSignal | undefined;
}

async function callTool(client: Client, transport: SpawnStdioTransport, spec: CallSpec): Promise<McpToolResult> {
  const { server, tool, signal } = spec;
  let result;
  try {
    result = await client.callTool({ name: tool, arguments: spec.args }, undefined, {
      timeout: spec.timeoutMs ?? NO_LIMIT_MS,
      ...(signal === undefined ? {} : { signal }),
    });
  } catch (e) {
    if (signal?.aborted) throw interrupted(tool, signal.reason, { server, tool });
    if (e instanceof Error && (e as { code?: unknown }).code === MCP_REQUEST_TIMEOUT) {
      const ms = spec.timeoutMs ?? 0;
      throw new KeelError(
        "E_TASK_TIMEOUT",
        `MCP tool "${tool}" on "${server}" did not answer within ${ms} ms and was cancelled; raise its "timeout"`,
        { cause: e, details: { server, tool, timeoutMs: ms } },
      );
    }
    const stderr = transport.stderrTail();
    throw new KeelError("E_MCP_FAILED", `MCP tool "${tool}" on "${server}" failed: ${messageOf(e)}${tailNote(stderr)}`, {
      cause: e,
      details: { server, tool, stderr },
    });
  }
  const content = Array.isArray(result.content) ? (result.content as unknown[]) : [];
  const text = content
    .filter((c): c is { type: "text"; text: string } => isRecord(c) && c.type === "text" && typeof c.text === "string")
    .map((c) => c.text)
    .join("\n");
  if (result.isError === true) {
    throw new KeelError("E_MCP_FAILED", `MCP tool "${tool}" on "${server}" reported an error: ${text || "(no message)"}`, {
      details: { server, tool, content },
    });
  }
  const structured = result.structuredContent;
  return isRecord(structured) ? { text, content, structuredContent: structured } : { text, content };
}

/**
 * MCP's stdio transport (newline-delimited JSON-RPC) over a process started with the plugin's
 * `spawn`, so the `run:` grant is checked; the SDK's own transport would use `node:child_process`.
 */
class SpawnStdioTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: ((message: JSONRPCMessage) => void) | undefined;
  /** Called once when the process is gone, whoever ended it. */
  onGone: (() => void) | undefined;
  readonly #name: string;
  readonly #config: McpServerConfig;
  readonly #options: StartOptions;
  #child: ChildProcess | undefined;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #stderr = "";
  #closed = false;
  #exited: Promise<void> = Promise.resolve();

  constructor(name: string, config: McpServerConfig, options: StartOptions) {
    this.#name = name;
    this.#config = config;
    this.#options = options;
  }

  start(): Promise<void> {
    let child: ChildProcess;
    try {
      child = this.#options.spawn(this.#config.command, {
        args: this.#config.args ?? [],
        ...(this.#config.env === undefined ? {} : { env: this.#config.env }),
        ...(this.#config.cwd === undefined ? {} : { cwd: this.#config.cwd }),
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      });
    } catch (e) {
      return Promise.reject(e);
    }
    this.#child = child;
    this.#writer = child.stdin!.getWriter();
    void this.#readStdout(child.stdout!);
    void this.#readStderr(child.stderr!);
    this.#exited = child.status.then(() => this.#finish(), () => this.#finish());
    return Promise.resolve();
  }

  async send(message: JSONRPCMessage): Promise<void> {
    if (this.#closed || this.#writer === undefined) throw new Error(`MCP server "${this.#name}" is not running`);
    await this.#writer.write(new TextEncoder().encode(JSON.stringify(message) + "\n"));
  }

  /** Closes stdin, then SIGTERM after 500 ms, then SIGKILL after 2 s; resolves once the process is gone. */
  async close(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return this.#finish();
    if (!this.#closed) {
      this.#closed = true;
      this.#writer?.close().catch(() => {});
      const term = setTimeout(() => child.kill("SIGTERM"), 500);
      const kill = setTimeout(() => child.kill("SIGKILL"), 2_000);
      try {
        await child.status;
      } catch {
        // Its status is all we wait for.
      } finally {
        clearTimeout(term);
        clearTimeout(kill);
      }
    }
    await this.#exited;
  }

  stderrTail(): string {
    return this.#stderr;
  }

  #gone = false;
  #finish(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#closed = true;
    this.onGone?.();
    this.onclose?.();
  }

  async #readStdout(stream: ReadableStream<Uint8Array>): Promise<void> {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        pending += value;
        for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
          const line = pending.slice(0, nl).replace(/\r$/, "");
          pending = pending.slice(nl + 1);
          if (line.trim() === "") continue;
          let message: unknown;
          try {
            message = JSON.parse(line);
          } catch (e) {
            this.onerror?.(new Error(`MCP server "${this.#name}" wrote a line that is not JSON: ${messageOf(e)}`));
            continue;
          }
          if (!isRecord(message) || message.jsonrpc !== "2.0") {
            this.onerror?.(new Error(`MCP server "${this.#name}" wrote a line that is not JSON-RPC 2.0: ${line.slice(0, 200)}`));
            continue;
          }
          // The SDK checks each message against its own schemas as it handles it.
          this.onmessage?.(message as JSONRPCMessage);
        }
      }
    } catch (e) {
      if (!this.#closed) this.onerror?.(e instanceof Error ? e : new Error(String(e)));
    }
  }

  async #readStderr(stream: ReadableStream<Uint8Array>): Promise<void> {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.#stderr = (this.#stderr + value).slice(-STDERR_TAIL_CHARS);
        for (const line of value.split("\n")) {
          if (line.trim() !== "") this.#options.logger?.debug(line, { server: this.#name, stream: "stderr" });
        }
      }
    } catch {
      // The process is gone; what arrived is kept.
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Params and errors

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkServers(raw: Readonly<Record<string, McpServerConfig>>): Readonly<Record<string, McpServerConfig>> {
  if (!isRecord(raw)) throw new TypeError(`"servers" must be an object of { name: { command, args? } }`);
  for (const [name, config] of Object.entries(raw)) {
    if (name === "" || name === BUILTIN_SERVER) {
      throw new TypeError(`An MCP server may not be named ${JSON.stringify(name)}; pick another name`);
    }
    if (!isRecord(config) || typeof config.command !== "string" || config.command === "" || config.command.includes("\0")) {
      throw new TypeError(`MCP server "${name}" needs { command, args?, env?, cwd?, tools? } with a program as "command"`);
    }
    if (config.args !== undefined && (!Array.isArray(config.args) || !config.args.every((a) => typeof a === "string"))) {
      throw new TypeError(`MCP server "${name}": "args" must be an array of strings`);
    }
    if (config.env !== undefined && (!isRecord(config.env) || !Object.values(config.env).every((v) => typeof v === "string"))) {
      throw new TypeError(`MCP server "${name}": "env" must be an object of string values`);
    }
    if (config.cwd !== undefined && (typeof config.cwd !== "string" || config.cwd === "")) {
      throw new TypeError(`MCP server "${name}": "cwd" must be a non-empty path`);
    }
    if (config.tools !== undefined && (!Array.isArray(config.tools) || !config.tools.every((t) => typeof t === "string" && t !== ""))) {
      throw new TypeError(`MCP server "${name}": "tools" must be an array of tool names`);
    }
  }
  return raw;
}

function checkMs(ms: number, name: string): void {
  if (typeof ms !== "number" || !(ms > 0) || !Number.isFinite(ms)) {
    throw new RangeError(`"${name}" must be a positive number of milliseconds, got ${String(ms)}`);
  }
}

function checkTimeout(method: string, timeout: unknown): number | undefined {
  if (timeout === undefined) return undefined;
  if (typeof timeout !== "number" || Number.isNaN(timeout)) {
    throw new TypeError(`"${method}" param "timeout" must be a number of seconds`);
  }
  if (!(timeout > 0) || !Number.isFinite(timeout)) {
    throw new RangeError(`"${method}" param "timeout" must be a positive number of seconds, got ${timeout}`);
  }
  return Math.min(Math.ceil(timeout * 1000), NO_LIMIT_MS);
}

function interrupted(tool: string, reason: unknown, details: Record<string, unknown> = { tool }): KeelError {
  if (KeelError.is(reason)) return reason;
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return new KeelError("E_TASK_TIMEOUT", `MCP tool "${tool}" was cancelled: ${reason.message}`, { cause: reason, details });
  }
  return new KeelError("E_RUN_INTERRUPTED", `MCP tool "${tool}" was cancelled: its run was cancelled`, { cause: reason, details });
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function quoteAll(names: readonly string[]): string {
  return names.length === 0 ? "none" : names.map((n) => `"${n}"`).join(", ");
}

function tailNote(stderr: string): string {
  const last = stderr.trimEnd().split("\n").slice(-3).join(" | ").trim();
  return last === "" ? "" : ` (stderr: ${last.length > 300 ? last.slice(-300) : last})`;
}
