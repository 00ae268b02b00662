/**
 * Code mode as an MCP server: every registered tool, plus one `execute_code` tool that runs
 * JavaScript in the sandbox with those tools as `tools.*`. Its description carries the tools'
 * TypeScript declarations ({@link generateDeclarations}), so a model sees what it may call.
 *
 * Built on the SDK's low-level `Server` (our tools have JSON Schemas, not zod). Errors follow the
 * MCP spec (2025-11-25): a tool that fails, input that does not match a schema, and code that
 * fails or times out are tool results with `isError: true` and the coded message
 * (`E_SANDBOX_TIMEOUT: ...`), so a model can read them and try again; a name that is no tool is
 * a JSON-RPC error (`-32602`, "Unknown tools" under "Protocol Errors"), with `data.code`
 * `E_TOOL_UNKNOWN`.
 *
 * MCP wants objects on both sides of a tool: a tool whose input schema is not `type: "object"` is
 * offered as `{ input: <schema> }`, and an output that is not a plain object comes back as
 * `structuredContent: { result: <output> }` (its output schema wrapped to match).
 *
 * {@link createMcpHttpHandler} serves it over streamable HTTP as a fetch handler (one session per
 * client); stdio is the host's to wire (`StdioServerTransport` needs Node streams).
 * @module
 */

import { Server } from "@modelcontextprotocol/sdk/server";
// The SDK's "./*" export maps types to "<path>.js.d.ts", which does not exist, so these subpaths
// name their declaration files themselves.
// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/server/webStandardStreamableHttp.d.ts"
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
// @ts-types="../../node_modules/@modelcontextprotocol/sdk/dist/esm/types.d.ts"
import { type CallToolResult, CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError, type Tool } from "@modelcontextprotocol/sdk/types.js";
import {
  type CodeExecutor,
  errorMessage,
  type ExecuteOptions,
  type ExecuteResult,
  formatSchemaIssues,
  generateDeclarations,
  type JsonSchema,
  type JsonSchemaObject,
  KeelError,
  type ToolInfo,
  type ToolRegistry,
  validateJsonSchema,
} from "../../core/mod.ts";

/** The name of the tool that runs code. */
export const EXECUTE_CODE_TOOL = "execute_code";

/** The input schema of {@link EXECUTE_CODE_TOOL}. */
export const EXECUTE_CODE_INPUT: JsonSchemaObject = {
  type: "object",
  properties: {
    code: {
      type: "string",
      description: "JavaScript: the body of an async function (end with `return <value>`), one expression, or a function expression",
    },
    timeoutMs: { type: "integer", minimum: 1, description: "Stop the code after this many milliseconds" },
  },
  required: ["code"],
  additionalProperties: false,
};

/** The output schema of {@link EXECUTE_CODE_TOOL}: an `ExecuteResult`. */
export const EXECUTE_CODE_OUTPUT: JsonSchemaObject = {
  type: "object",
  properties: {
    result: { description: "What the code returned (absent when it returned nothing or failed)" },
    error: {
      type: "object",
      properties: { code: { type: "string" }, message: { type: "string" } },
      required: ["code", "message"],
    },
    logs: { type: "array", items: { type: "string" } },
    logsTruncated: { type: "boolean" },
    durationMs: { type: "number" },
    correlationId: { type: "string" },
    toolCalls: { type: "integer" },
    sandbox: { type: "string" },
  },
  required: ["logs", "logsTruncated", "durationMs", "correlationId", "toolCalls", "sandbox"],
};

/** Options for {@link createMcpCodeServer}. */
export interface McpCodeServerOptions {
  /** The tools offered, directly and as `tools.*` inside `execute_code`; read at each request. */
  readonly tools: ToolRegistry;
  /** Runs `execute_code`; it should run over the same registry. */
  readonly executor: CodeExecutor;
  /** The server's name in the MCP handshake; default "keel". */
  readonly name?: string;
  /** Its version; default "0.1.0". */
  readonly version?: string;
  /** Runtime context every call gets (direct tool calls and code alike): plain data, read-only. */
  readonly context?: Readonly<Record<string, unknown>>;
  /** Limits for `execute_code`; its `timeoutMs` is the default when a call gives none. */
  readonly limits?: Pick<ExecuteOptions, "timeoutMs" | "memoryMb" | "maxToolCalls" | "maxLogBytes">;
}

const INSTRUCTIONS = `Prefer ${EXECUTE_CODE_TOOL} when a task takes more than one tool call: write JavaScript that calls ` +
  "the tools (`await tools.<name>(input)`), combines their results and returns only what you need.";

type McpSchema = Tool["inputSchema"];

function isObjectSchema(schema: JsonSchema | undefined): boolean {
  return typeof schema === "object" && schema !== null && schema.type === "object";
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A registered tool as MCP lists it (see the module docs for the wrapping). */
function mcpTool(info: ToolInfo): Tool {
  const inputSchema = (isObjectSchema(info.inputSchema)
    ? info.inputSchema
    : { type: "object", properties: { input: info.inputSchema }, required: ["input"], additionalProperties: false }) as McpSchema;
  const tool: Tool = { name: info.name, description: info.description, inputSchema };
  if (info.outputSchema !== undefined) {
    tool.outputSchema = (isObjectSchema(info.outputSchema)
      ? info.outputSchema
      : { type: "object", properties: { result: info.outputSchema }, required: ["result"] }) as McpSchema;
  }
  return tool;
}

/** The description of `execute_code`: how to write the code, and the tools' declarations. */
export function executeCodeDescription(tools: ToolRegistry | readonly ToolInfo[]): string {
  return [
    "Runs JavaScript in a sandbox and returns what it returns, as JSON, with its console output in `logs`.",
    "The code is the body of an async function: use `await`, and `return` the result (a single expression is returned as is).",
    "It cannot reach files, the network, processes or modules; its only way out is the async functions on `tools`, declared below.",
    "`await tools.__list__()` lists them and `await tools.__schema__({ name })` gives one's JSON Schemas.",
    "A failed tool call throws an Error whose `code` says why (E_TOOL_INPUT_INVALID, E_TOOL_FAILED, ...); catch it or let the run fail.",
    "",
    "```ts",
    generateDeclarations(tools).trimEnd(),
    "```",
  ].join("\n");
}

function text(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value) ?? "null";
}

function toolError(e: unknown): CallToolResult {
  const message = KeelError.is(e)
    ? `${e.code}: ${e.message}`
    : e instanceof RangeError || e instanceof TypeError
    ? `E_TOOL_INPUT_INVALID: ${e.message}`
    : `Unexpected error: ${errorMessage(e)}`;
  return { isError: true, content: [{ type: "text", text: message }] };
}

function executeResult(out: ExecuteResult): CallToolResult {
  const structuredContent = JSON.parse(JSON.stringify(out)) as Record<string, unknown>;
  const json = { type: "text" as const, text: JSON.stringify(out) };
  if (out.error === undefined) return { content: [json], structuredContent };
  return { isError: true, content: [{ type: "text", text: `${out.error.code}: ${out.error.message}` }, json], structuredContent };
}

function unknownTool(name: string, registry: ToolRegistry): McpError {
  const known = [...registry.list().map((t) => t.name), EXECUTE_CODE_TOOL].sort();
  return new McpError(
    ErrorCode.InvalidParams,
    `E_TOOL_UNKNOWN: No tool is named "${name}"; this server has: ${known.map((n) => `"${n}"`).join(", ")}`,
    { code: "E_TOOL_UNKNOWN", tool: name, known },
  );
}

function checkNoClash(registry: ToolRegistry): void {
  if (registry.get(EXECUTE_CODE_TOOL) === undefined) return;
  throw new KeelError("E_TOOL_DUPLICATE", `A registered tool is named "${EXECUTE_CODE_TOOL}", which the MCP server offers itself; rename the tool`, {
    details: { tool: EXECUTE_CODE_TOOL },
  });
}

/**
 * Creates an MCP server (the SDK's low-level `Server`, not yet connected) that offers every tool of
 * `options.tools` plus `execute_code`. Connect it to one transport: `await server.connect(t)`.
 * @throws {KeelError} `E_TOOL_DUPLICATE` when a registered tool is named `execute_code`.
 */
export function createMcpCodeServer(options: McpCodeServerOptions): Server {
  const { tools: registry, executor } = options;
  checkNoClash(registry);
  const context = options.context ?? {};
  const limits = options.limits ?? {};
  const server = new Server(
    { name: options.name ?? "keel", version: options.version ?? "0.1.0" },
    { capabilities: { tools: {} }, instructions: INSTRUCTIONS },
  );

  server.setRequestHandler(ListToolsRequestSchema, () => {
    const infos = registry.list().filter((t) => t.name !== EXECUTE_CODE_TOOL);
    return {
      tools: [
        ...infos.map(mcpTool),
        {
          name: EXECUTE_CODE_TOOL,
          title: "Run code with the tools",
          description: executeCodeDescription(infos),
          inputSchema: EXECUTE_CODE_INPUT as unknown as McpSchema,
          outputSchema: EXECUTE_CODE_OUTPUT as unknown as McpSchema,
        },
      ],
    };
  });

  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const { name } = request.params;
    const args: Record<string, unknown> = request.params.arguments ?? {};
    if (name === EXECUTE_CODE_TOOL) {
      const issues = validateJsonSchema(EXECUTE_CODE_INPUT, args);
      if (issues.length > 0) {
        return toolError(new KeelError("E_TOOL_INPUT_INVALID", `Input to tool "${EXECUTE_CODE_TOOL}" does not match its schema:\n${formatSchemaIssues(issues)}`));
      }
      const timeoutMs = (args.timeoutMs as number | undefined) ?? limits.timeoutMs;
      try {
        const out = await executor.execute(args.code as string, {
          ...limits,
          ...(timeoutMs === undefined ? {} : { timeoutMs }),
          context,
          signal: extra.signal,
        });
        return executeResult(out);
      } catch (e) {
        return toolError(e);
      }
    }
    const tool = registry.get(name);
    if (tool === undefined) throw unknownTool(name, registry);
    const input = isObjectSchema(tool.inputSchema) ? args : args.input;
    try {
      const output = await registry.call(name, input, { context });
      return {
        content: [{ type: "text", text: text(output) }],
        structuredContent: isPlainObject(output) && (tool.outputSchema === undefined || isObjectSchema(tool.outputSchema))
          ? output
          : { result: output ?? null },
      };
    } catch (e) {
      return toolError(e);
    }
  });
  return server;
}

/** Options for {@link createMcpHttpHandler}. */
export interface McpHttpHandlerOptions extends McpCodeServerOptions {
  /** The path it answers on; default "/mcp". Other paths get 404. */
  readonly path?: string;
  /**
   * Host names (without port) the `Host` and `Origin` headers may name, against DNS rebinding;
   * default the loopback names. `"any"` turns the check off (for a server bound to a public address).
   */
  readonly allowedHosts?: readonly string[] | "any";
}

/** A fetch handler speaking MCP's streamable HTTP transport, one session per client. */
export interface McpHttpHandler {
  /** Answers one request: pass it to `runtime.serve`. */
  fetch(request: Request): Promise<Response>;
  /** Sessions open now. */
  readonly sessions: number;
  /** Ends every session. The executor is the caller's to close. */
  close(): Promise<void>;
}

const LOOPBACK = ["127.0.0.1", "localhost", "[::1]", "::1"];

function jsonRpcError(status: number, code: number, message: string): Response {
  return new Response(JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null }), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function hostnameOf(hostHeader: string): string {
  // "[::1]:8080" keeps its brackets; "127.0.0.1:8080" loses the port.
  return hostHeader.startsWith("[") ? hostHeader.slice(0, hostHeader.indexOf("]") + 1) : hostHeader.replace(/:\d+$/, "");
}

/**
 * Creates a fetch handler that serves {@link createMcpCodeServer} over MCP's streamable HTTP
 * transport (the SDK's `WebStandardStreamableHTTPServerTransport`), with a new server per session.
 *
 * @example
 * ```ts ignore
 * const mcp = createMcpHttpHandler({ tools, executor });
 * const server = await runtime.serve(mcp.fetch, { port: 0 });
 * // clients connect to `${server.url}/mcp`
 * ```
 */
export function createMcpHttpHandler(options: McpHttpHandlerOptions): McpHttpHandler {
  const path = options.path ?? "/mcp";
  const allowed = options.allowedHosts === "any" ? undefined : new Set((options.allowedHosts ?? LOOPBACK).map((h) => h.toLowerCase()));
  const sessions = new Map<string, { server: Server; transport: WebStandardStreamableHTTPServerTransport }>();
  let closed = false;
  // Fails now, not at the first client, when the registry has an "execute_code" of its own.
  checkNoClash(options.tools);

  function hostAllowed(request: Request): boolean {
    if (allowed === undefined) return true;
    const host = request.headers.get("host");
    if (host !== null && !allowed.has(hostnameOf(host).toLowerCase())) return false;
    const origin = request.headers.get("origin");
    if (origin !== null) {
      try {
        if (!allowed.has(new URL(origin).hostname.toLowerCase())) return false;
      } catch {
        return false;
      }
    }
    return true;
  }

  return {
    get sessions() {
      return sessions.size;
    },
    async fetch(request) {
      if (new URL(request.url).pathname !== path) return jsonRpcError(404, ErrorCode.InvalidRequest, `Not found: MCP is served at ${path}`);
      if (!hostAllowed(request)) return jsonRpcError(403, ErrorCode.InvalidRequest, "Forbidden: this MCP server answers only requests for a local host");
      if (closed) return jsonRpcError(503, ErrorCode.ConnectionClosed, "The MCP server is shutting down");
      const id = request.headers.get("mcp-session-id");
      if (id !== null) {
        const session = sessions.get(id);
        if (session === undefined) return jsonRpcError(404, -32001, `Session "${id}" not found; start a new one with an initialize request`);
        return await session.transport.handleRequest(request);
      }
      // No session yet: only an initialize request starts one; the transport answers anything else with 400.
      const server = createMcpCodeServer(options);
      const transport = new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => crypto.randomUUID(),
        onsessioninitialized: (sid) => {
          sessions.set(sid, { server, transport });
        },
        onsessionclosed: (sid) => {
          sessions.delete(sid);
        },
      });
      transport.onclose = () => {
        if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
      };
      await server.connect(transport);
      const response = await transport.handleRequest(request);
      if (transport.sessionId === undefined) await server.close();
      return response;
    },
    async close() {
      closed = true;
      const open = [...sessions.values()];
      sessions.clear();
      await Promise.allSettled(open.map(({ server }) => server.close()));
    },
  };
}
