/**
 * The executor service: code mode's sidecar, for when the sandbox must live in another process
 * or on another machine than the app whose tools the code calls. {@link createExecutorApp}
 * returns a Hono app; serve its `fetch` with `Runtime.serve` (or any fetch-style server), as
 * `keel executor serve` does. `./client.ts` is its client.
 *
 * ## Protocol (version 1)
 *
 * Every response carries `x-correlation-id`: the request's own when it is printable ASCII of at
 * most 128 characters, else a new `<prefix>-<base36 time>-<random>` (prefix `"exec"` unless
 * configured). It is the execution's correlation id, which every tool call sees. Every error
 * body is `{ "error": { "code": "E_...", "message": "...", "details"?: {...} } }`.
 *
 * - `GET /health` → 200 `{ "status": "ok" }`, no auth: the process answers.
 * - `GET /ready` → 200 `{ "ready": true, "sandbox": "<backend name>" }` once the backend has run
 *   code (a warm-up run starts with the app; any successful execution counts too), else 503
 *   `{ "ready": false, ... }`, which also starts a new warm-up when the last one failed. No auth.
 * - `POST /v1/execute` with `Authorization: Bearer <key>` or `x-api-key: <key>`. The key is
 *   compared with every configured key in constant time (SHA-256 digests of both, compared
 *   without an early exit). A missing or wrong key is 401 `E_EXECUTOR_UNAUTHORIZED` with
 *   `WWW-Authenticate: Bearer`. The body is JSON:
 *   `{ code: string, tools?: ToolInfo[], context?: object, timeoutMs?, memoryMb?, maxToolCalls? }`
 *   where `tools` are the caller's tools (`{ name, description, inputSchema, outputSchema? }`);
 *   every declared tool may be called, and inputs and outputs are validated here against their
 *   schemas (and again by the caller's own registry). Unknown fields are refused.
 *   - Over `maxConcurrent` executions in flight: 503 `E_SANDBOX_BUSY` with `Retry-After`,
 *     before the body is read.
 *   - A body over `maxBodyBytes` (by `Content-Length`, or counted as it streams, so a chunked
 *     upload is caught too): 413 `E_EXECUTOR_REQUEST_TOO_LARGE`. A body not complete within
 *     `bodyTimeoutMs` of the request: 408 `E_EXECUTOR_REQUEST_TIMEOUT`.
 *   - Malformed JSON, a wrong shape, or a limit over this server's cap: 400
 *     `E_EXECUTOR_REQUEST_INVALID`, the message saying what is wrong. An invalid tool schema:
 *     400 `E_TOOL_SCHEMA_INVALID` (and `E_TOOL_NAME_INVALID`, `E_TOOL_DUPLICATE` likewise).
 *   - The backend cannot run code (`E_SANDBOX_BUSY`, `E_SANDBOX_UNAVAILABLE`,
 *     `E_SANDBOX_CLOSED`): 503 with that code.
 *   - With no tools declared, the answer is 200 `application/json`: the `ExecuteResult`
 *     (`{ result?, error?, logs, logsTruncated, durationMs, correlationId, toolCalls, sandbox }`;
 *     what the code did, failures included, is a result, not an HTTP error).
 *   - With tools, the answer is 200 `application/x-ndjson`, one JSON object a line: zero or more
 *     `{ "type": "tool_call", "execution": "<id>", "call": <n>, "name", "input" }`, then one
 *     `{ "type": "result", ...ExecuteResult }`, or, when the backend failed after the stream began,
 *     one `{ "type": "error", "error": { code, message } }`. Empty lines are keep-alives (sent
 *     every `keepAliveMs`, so idle connections are not cut by proxies or the host); skip them.
 * - `POST /v1/executions/<id>/tool-results` (same auth) answers one tool call with
 *   `{ "call": n, "ok": true, "value": ... }` or
 *   `{ "call": n, "ok": false, "error": { "code", "message", "details"? } }`: 204, or 404 for an
 *   unknown or finished execution or call. A failed call rejects inside the sandbox with the
 *   caller's code when it is a Keel code (`E_TOOL_INPUT_INVALID`, ...), else `E_TOOL_FAILED`.
 *   A call not answered by the execution's deadline fails with `E_SANDBOX_TIMEOUT`.
 *
 * Tool calls thus travel back over the caller's own request, so the calling app need not accept
 * connections. When the caller goes away mid-stream, the execution is aborted and its pending
 * calls dropped. (A no-tools execution whose caller went away runs on to its deadline, which
 * `maxTimeoutMs` bounds: Deno's `request.signal` is not used, since it also fires on success.)
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import {
  createCodeExecutor,
  type CodeExecutorOptions,
  createCorrelationId,
  createSilentLogger,
  createToolRegistry,
  EXECUTE_DEFAULTS,
  ErrorCode,
  type ErrorCodeName,
  type ExecuteResult,
  type JsonSchema,
  KeelError,
  type Logger,
  type SandboxBackend,
  type ToolInfo,
  type ToolRegistry,
} from "../../core/mod.ts";

/** The limits of an executor service; each is a positive integer. */
export interface ExecutorLimits {
  /** The largest request body, in bytes. Default 1 MiB. */
  readonly maxBodyBytes: number;
  /** How long a client may take to send its body, from the request's start. Default 10 s. */
  readonly bodyTimeoutMs: number;
  /** The most `timeoutMs` a request may ask for. Default 60 s. */
  readonly maxTimeoutMs: number;
  /** The most `memoryMb` a request may ask for. Default 512. */
  readonly maxMemoryMb: number;
  /** The most `maxToolCalls` a request may ask for. Default 10 000. */
  readonly maxToolCalls: number;
  /** Executions in flight at once; past it, 503 `E_SANDBOX_BUSY`. Default 64. */
  readonly maxConcurrent: number;
}

/** The limits an executor service has unless its options say otherwise. */
export const EXECUTOR_LIMITS: ExecutorLimits = Object.freeze({
  maxBodyBytes: 1_048_576,
  bodyTimeoutMs: 10_000,
  maxTimeoutMs: 60_000,
  maxMemoryMb: 512,
  maxToolCalls: 10_000,
  maxConcurrent: 64,
});

/** The shortest API key {@link createExecutorApp} accepts. */
export const MIN_API_KEY_LENGTH = 16;

/** Options for {@link createExecutorApp}. */
export interface ExecutorAppOptions {
  /** Runs the code. The app never closes it: that is its owner's job, after {@link ExecutorApp.close}. */
  readonly backend: SandboxBackend;
  /** Accepted API keys (at least one; each printable ASCII without spaces, at least 16 characters). */
  readonly apiKeys: readonly string[];
  readonly limits?: Partial<ExecutorLimits>;
  /** Prefix of generated correlation ids; default `"exec"`. */
  readonly correlationPrefix?: string;
  /** How often an NDJSON stream sends an empty keep-alive line; default 5000 ms. */
  readonly keepAliveMs?: number;
  readonly logger?: Logger;
}

/** The body of `POST /v1/execute`. */
export interface ExecutorRequest {
  readonly code: string;
  readonly tools?: readonly ToolInfo[];
  readonly context?: Readonly<Record<string, unknown>>;
  readonly timeoutMs?: number;
  readonly memoryMb?: number;
  readonly maxToolCalls?: number;
}

/** A line of the NDJSON answer to `POST /v1/execute` with tools. */
export type ExecutorStreamLine =
  | { readonly type: "tool_call"; readonly execution: string; readonly call: number; readonly name: string; readonly input: unknown }
  | ({ readonly type: "result" } & ExecuteResult)
  | { readonly type: "error"; readonly error: ExecutorErrorBody["error"] };

/** The body of `POST /v1/executions/<id>/tool-results`. */
export type ToolResultBody =
  | { readonly call: number; readonly ok: true; readonly value?: unknown }
  | {
    readonly call: number;
    readonly ok: false;
    readonly error: { readonly code: string; readonly message: string; readonly details?: Readonly<Record<string, unknown>> };
  };

/** The body of every error response. */
export interface ExecutorErrorBody {
  readonly error: { readonly code: ErrorCodeName; readonly message: string; readonly details?: Readonly<Record<string, unknown>> };
}

/** The Hono app of the executor service, with its lifecycle. */
export type ExecutorApp = Hono<{ Variables: Vars }> & {
  /** Runs (or joins) a trivial warm-up execution; true once the backend has run code. */
  warmUp(): Promise<boolean>;
  /** Executions in flight (JSON and streams). */
  readonly inFlight: number;
  /** Refuses new executions (503 `E_SANDBOX_CLOSED`) and aborts those in flight; the backend stays open. */
  close(): Promise<void>;
};

type Vars = { correlationId: string };

const CORRELATION_HEADER = "x-correlation-id";
const CORRELATION_ID = /^[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?$/;
const API_KEY = /^[\x21-\x7e]+$/;
const REQUEST_FIELDS = ["code", "tools", "context", "timeoutMs", "memoryMb", "maxToolCalls"] as const;
const TOOL_FIELDS = ["name", "description", "inputSchema", "outputSchema"] as const;
const ANSWER_FIELDS = ["call", "ok", "value", "error"] as const;
const BACKEND_DOWN: ReadonlySet<string> = new Set(["E_SANDBOX_BUSY", "E_SANDBOX_UNAVAILABLE", "E_SANDBOX_CLOSED"]);

/** An error that becomes an HTTP answer with `status`. */
class HttpFailure extends Error {
  readonly status: number;
  readonly code: ErrorCodeName;
  readonly details: Readonly<Record<string, unknown>> | undefined;
  readonly headers: Readonly<Record<string, string>>;
  constructor(
    status: number,
    code: ErrorCodeName,
    message: string,
    options: { details?: Readonly<Record<string, unknown>> | undefined; headers?: Readonly<Record<string, string>> } = {},
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = options.details;
    this.headers = options.headers ?? {};
  }
}

function invalid(message: string, status = 400): HttpFailure {
  return new HttpFailure(status, "E_EXECUTOR_REQUEST_INVALID", message);
}

function errorBody(code: ErrorCodeName, message: string, details?: Readonly<Record<string, unknown>>): ExecutorErrorBody {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}

/** A KeelError (or anything thrown) as an HTTP failure: 503 for a backend that cannot run, 400 for tool definitions. */
function failureOf(e: unknown): HttpFailure {
  if (e instanceof HttpFailure) return e;
  if (KeelError.is(e)) {
    const status = BACKEND_DOWN.has(e.code) ? 503 : e.code.startsWith("E_TOOL_") ? 400 : 500;
    return new HttpFailure(status, e.code, e.message, {
      details: e.details,
      headers: status === 503 ? { "retry-after": "1" } : {},
    });
  }
  if (e instanceof RangeError || e instanceof TypeError) return invalid(e.message);
  return new HttpFailure(500, "E_SANDBOX_CRASHED", `The executor service failed: ${e instanceof Error ? e.message : String(e)}`);
}

function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function unknownFields(value: Record<string, unknown>, known: readonly string[], where: string): void {
  const extra = Object.keys(value).filter((k) => !known.includes(k));
  if (extra.length > 0) {
    throw invalid(`${where} has unknown field(s) ${extra.map((k) => `"${k}"`).join(", ")}; its fields are ${known.map((k) => `"${k}"`).join(", ")}`);
  }
}

/** A request limit: absent (the default, never over the cap), or a positive integer within `cap`. */
function requestLimit(body: Record<string, unknown>, name: string, fallback: number, cap: number): number {
  const value = body[name];
  if (value === undefined) return Math.min(fallback, cap);
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw invalid(`"${name}" must be a positive integer, got ${JSON.stringify(value)}`);
  }
  if (value > cap) throw invalid(`"${name}" is ${value}, over this executor's limit of ${cap}; ask for at most ${cap}`);
  return value;
}

interface ParsedRequest {
  readonly code: string;
  readonly tools: readonly ToolInfo[];
  readonly context: Record<string, unknown>;
  readonly timeoutMs: number;
  readonly memoryMb: number;
  readonly maxToolCalls: number;
}

function parseToolInfo(value: unknown, index: number): ToolInfo {
  const where = `"tools[${index}]"`;
  if (!isPlainObject(value)) throw invalid(`${where} must be an object { name, description, inputSchema, outputSchema? }`);
  unknownFields(value, TOOL_FIELDS, where);
  if (typeof value.name !== "string") throw invalid(`${where}.name must be a string`);
  if (typeof value.description !== "string") throw invalid(`${where}.description must be a string (tool "${value.name}")`);
  if (value.inputSchema === undefined) throw invalid(`${where}.inputSchema is missing (tool "${value.name}"); pass a JSON Schema, or true for any input`);
  const info = { name: value.name, description: value.description, inputSchema: value.inputSchema as JsonSchema };
  return value.outputSchema === undefined ? info : { ...info, outputSchema: value.outputSchema as JsonSchema };
}

function parseRequest(text: string, limits: ExecutorLimits): ParsedRequest {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw invalid(`The body is not valid JSON (${e instanceof Error ? e.message : String(e)}); send { "code": "..." }`);
  }
  if (!isPlainObject(body)) throw invalid('The body must be a JSON object { "code": "...", "tools"?, "context"?, "timeoutMs"?, "memoryMb"?, "maxToolCalls"? }');
  unknownFields(body, REQUEST_FIELDS, "The body");
  if (typeof body.code !== "string") throw invalid(`"code" must be a string of JavaScript, got ${body.code === undefined ? "nothing" : typeof body.code}`);
  const tools = body.tools === undefined ? [] : body.tools;
  if (!Array.isArray(tools)) throw invalid('"tools" must be an array of { name, description, inputSchema, outputSchema? }');
  const context = body.context === undefined ? {} : body.context;
  if (!isPlainObject(context)) throw invalid('"context" must be a JSON object');
  return {
    code: body.code,
    tools: tools.map(parseToolInfo),
    context,
    timeoutMs: requestLimit(body, "timeoutMs", EXECUTE_DEFAULTS.timeoutMs, limits.maxTimeoutMs),
    memoryMb: requestLimit(body, "memoryMb", EXECUTE_DEFAULTS.memoryMb, limits.maxMemoryMb),
    maxToolCalls: requestLimit(body, "maxToolCalls", EXECUTE_DEFAULTS.maxToolCalls, limits.maxToolCalls),
  };
}

function parseAnswer(text: string): ToolResultBody {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw invalid(`The body is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!isPlainObject(body)) throw invalid('A tool result must be { "call", "ok": true, "value" } or { "call", "ok": false, "error": { "code", "message" } }');
  unknownFields(body, ANSWER_FIELDS, "The tool result");
  if (typeof body.call !== "number" || !Number.isSafeInteger(body.call) || body.call < 1) throw invalid('"call" must be the positive integer of a tool_call line');
  if (body.ok === true) return { call: body.call, ok: true, value: body.value };
  if (body.ok !== false) throw invalid('"ok" must be true or false');
  const error = body.error;
  if (!isPlainObject(error) || typeof error.code !== "string" || typeof error.message !== "string") {
    throw invalid('A failed tool result needs "error": { "code": string, "message": string }');
  }
  if (error.details !== undefined && !isPlainObject(error.details)) throw invalid('"error.details" must be an object');
  return {
    call: body.call,
    ok: false,
    error: { code: error.code, message: error.message, ...(error.details === undefined ? {} : { details: error.details }) },
  };
}

/**
 * Reads a request body within `maxBytes` and before `deadline` (epoch ms). The declared
 * `Content-Length` is checked first, then the bytes are counted as they arrive, so neither a
 * lying nor a chunked client gets past the limit.
 */
async function readBody(request: Request, maxBytes: number, started: number, timeoutMs: number): Promise<string> {
  const declared = request.headers.get("content-length");
  const tooLarge = (size: string) =>
    new HttpFailure(413, "E_EXECUTOR_REQUEST_TOO_LARGE", `The request body is ${size}, over this executor's limit of ${maxBytes} bytes; send less code, context or fewer tools`, {
      details: { limit: maxBytes },
    });
  if (declared !== null) {
    if (!/^\s*\d+\s*$/.test(declared)) throw invalid(`Content-Length ${JSON.stringify(declared)} is not a byte count`);
    if (Number(declared) > maxBytes) throw tooLarge(`${Number(declared)} bytes`);
  }
  if (request.body === null) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new HttpFailure(408, "E_EXECUTOR_REQUEST_TIMEOUT", `The request body did not arrive within ${timeoutMs}ms; send the whole body at once`, {
        details: { limitMs: timeoutMs, received: size },
      }));
    }, Math.max(0, started + timeoutMs - Date.now()));
  });
  try {
    for (;;) {
      const { done, value } = await Promise.race([reader.read(), timeout]);
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) throw tooLarge(`over ${maxBytes} bytes`);
      chunks.push(value);
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    if (e instanceof HttpFailure) throw e;
    throw invalid(`The request body could not be read: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    clearTimeout(timer);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw invalid("The request body is not UTF-8 text");
  }
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

/** The key a request presents: `Authorization: Bearer <key>`, else `x-api-key`. */
function presentedKey(request: Request): string | undefined {
  const auth = request.headers.get("authorization");
  const bearer = auth === null ? undefined : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth)?.[1];
  return bearer ?? request.headers.get("x-api-key")?.trim() ?? undefined;
}

/** One pending tool call of a streaming execution. */
interface PendingCall {
  readonly name: string;
  resolve(value: unknown): void;
  reject(error: KeelError): void;
}

/** A streaming execution that tool results can be posted to. */
interface Execution {
  readonly pending: Map<number, PendingCall>;
}

/** Errors a forwarded call rejects with that reach the code as they are, not wrapped in `E_TOOL_FAILED`. */
const callerErrors = new WeakSet<object>();

function passThrough(error: KeelError): KeelError {
  callerErrors.add(error);
  return error;
}

function callerError(name: string, error: { code: string; message: string; details?: Readonly<Record<string, unknown>> }): KeelError {
  const known = Object.hasOwn(ErrorCode, error.code);
  return passThrough(
    new KeelError(known ? (error.code as ErrorCodeName) : "E_TOOL_FAILED", known ? error.message : `Tool "${name}" failed: ${error.message}`, {
      details: { ...error.details, tool: name, ...(known ? {} : { callerCode: error.code }) },
    }),
  );
}

/** A registry of the caller's tools whose `run` forwards each call to `forward`. */
function forwardingRegistry(tools: readonly ToolInfo[], forward: (name: string, input: unknown) => Promise<unknown>): ToolRegistry {
  const inner = createToolRegistry();
  for (const info of tools) inner.register({ ...info, run: (input: unknown) => forward(info.name, input) });
  return {
    ...inner,
    async call(name, input, options) {
      try {
        return await inner.call(name, input, options);
      } catch (e) {
        if (KeelError.is(e, "E_TOOL_FAILED") && callerErrors.has(e.cause as object)) throw e.cause;
        throw e;
      }
    },
  };
}

function resolveLimits(given: Partial<ExecutorLimits> | undefined): ExecutorLimits {
  const out: Record<string, number> = { ...EXECUTOR_LIMITS };
  for (const [name, value] of Object.entries(given ?? {})) {
    if (!Object.hasOwn(EXECUTOR_LIMITS, name)) {
      throw new TypeError(`Unknown executor limit "${name}"; limits are ${Object.keys(EXECUTOR_LIMITS).join(", ")}`);
    }
    if (value !== undefined) out[name] = positiveInteger(value, `limits.${name}`);
  }
  return out as unknown as ExecutorLimits;
}

function checkKeys(keys: readonly string[]): void {
  if (!Array.isArray(keys) || keys.length === 0) {
    throw new TypeError("createExecutorApp() needs at least one API key in apiKeys");
  }
  keys.forEach((key, i) => {
    if (typeof key !== "string" || !API_KEY.test(key)) {
      throw new TypeError(`apiKeys[${i}] must be printable ASCII without spaces`);
    }
    if (key.length < MIN_API_KEY_LENGTH) {
      throw new TypeError(`apiKeys[${i}] has ${key.length} characters; use a random key of at least ${MIN_API_KEY_LENGTH} (e.g. 32 hex digits)`);
    }
  });
}

/**
 * Creates the executor service's Hono app. Serve `app.fetch`; on shutdown call
 * {@link ExecutorApp.close}, stop the server, then close the backend.
 *
 * @example
 * ```ts ignore
 * const backend = await createSandbox({ runtime, backend: "process" });
 * const app = createExecutorApp({ backend, apiKeys: [key] });
 * const server = await runtime.serve!(app.fetch, { port: 8787 });
 * ```
 * @throws {TypeError} for no API key, a key shorter than {@link MIN_API_KEY_LENGTH}, or a bad limit.
 */
export function createExecutorApp(options: ExecutorAppOptions): ExecutorApp {
  const { backend } = options;
  if (typeof backend?.run !== "function") throw new TypeError("createExecutorApp() needs a sandbox backend (see createSandbox)");
  checkKeys(options.apiKeys);
  const limits = resolveLimits(options.limits);
  const prefix = options.correlationPrefix ?? "exec";
  if (!/^[A-Za-z0-9_.]{1,32}$/.test(prefix)) throw new TypeError(`correlationPrefix must be 1-32 letters, digits, "_" or ".", got ${JSON.stringify(prefix)}`);
  const keepAliveMs = positiveInteger(options.keepAliveMs ?? 5_000, "keepAliveMs");
  const logger = options.logger ?? createSilentLogger();
  const keyDigests = Promise.all(options.apiKeys.map(sha256));
  const executions = new Map<string, Execution>();
  const inFlight = new Set<AbortController>();
  let closed = false;
  let ready = false;
  let warming: Promise<boolean> | undefined;

  function warmUp(): Promise<boolean> {
    if (ready) return Promise.resolve(true);
    warming ??= backend.run({
      code: "async () => 1",
      context: {},
      timeoutMs: Math.min(30_000, limits.maxTimeoutMs),
      memoryMb: Math.min(EXECUTE_DEFAULTS.memoryMb, limits.maxMemoryMb),
      maxLogBytes: 1_024,
      callTool: () => Promise.reject(new KeelError("E_SANDBOX_TOOL_DENIED", "The warm-up run has no tools")),
    }).then((outcome) => {
      if (outcome.ok && outcome.value === 1) ready = true;
      else logger.warn(`Sandbox "${backend.name}" failed its warm-up run: ${outcome.error?.message ?? "wrong value"}`, { code: outcome.error?.code });
      return ready;
    }, (e: unknown) => {
      logger.warn(`Sandbox "${backend.name}" cannot run code yet: ${e instanceof Error ? e.message : String(e)}`);
      return false;
    }).finally(() => {
      warming = undefined;
    });
    return warming;
  }
  void warmUp();

  async function authorize(request: Request): Promise<void> {
    const given = presentedKey(request);
    const digest = await sha256(given ?? "");
    let match = 0;
    for (const key of await keyDigests) {
      let diff = 0;
      for (let i = 0; i < key.length; i++) diff |= key[i]! ^ digest[i]!;
      match |= diff === 0 ? 1 : 0;
    }
    if (given === undefined || match === 0) {
      throw new HttpFailure(
        401,
        "E_EXECUTOR_UNAUTHORIZED",
        given === undefined
          ? 'This executor needs an API key: send "Authorization: Bearer <key>" (or "x-api-key: <key>")'
          : "The API key is wrong; send one of the keys the executor was started with (KEEL_EXECUTOR_API_KEY)",
        { headers: { "www-authenticate": 'Bearer realm="keel-executor"' } },
      );
    }
  }

  /** Takes an execution slot, or fails with 503. */
  function acquire(): AbortController {
    if (closed) throw new HttpFailure(503, "E_SANDBOX_CLOSED", "This executor is shutting down; send the request to another one", { headers: { "retry-after": "1" } });
    if (inFlight.size >= limits.maxConcurrent) {
      throw new HttpFailure(503, "E_SANDBOX_BUSY", `This executor runs ${limits.maxConcurrent} execution(s) at once and all are busy; retry later`, {
        details: { maxConcurrent: limits.maxConcurrent },
        headers: { "retry-after": "1" },
      });
    }
    const controller = new AbortController();
    inFlight.add(controller);
    return controller;
  }

  function finished(result: ExecuteResult): void {
    if (result.error === undefined) ready = true;
    logger.info(`Execution ${result.correlationId} ${result.error ? `failed: ${result.error.code}` : "succeeded"}`, {
      correlationId: result.correlationId,
      ok: result.error === undefined,
      code: result.error?.code,
      durationMs: Math.round(result.durationMs),
      toolCalls: result.toolCalls,
    });
  }

  function execute(parsed: ParsedRequest, tools: ToolRegistry, correlationId: string, signal: AbortSignal): Promise<ExecuteResult> {
    const executor = createCodeExecutor({
      tools,
      backend,
      // Typed with EXECUTE_LIMITS' literal values; any number works (this server's caps, checked above).
      limits: { timeoutMs: limits.maxTimeoutMs, memoryMb: limits.maxMemoryMb, maxToolCalls: limits.maxToolCalls } as NonNullable<CodeExecutorOptions["limits"]>,
    });
    return executor.execute(parsed.code, {
      tools: parsed.tools.map((t) => t.name),
      context: parsed.context,
      timeoutMs: parsed.timeoutMs,
      memoryMb: parsed.memoryMb,
      maxToolCalls: parsed.maxToolCalls,
      correlationId,
      signal,
    });
  }

  function stream(c: Context<{ Variables: Vars }>, parsed: ParsedRequest, correlationId: string, controller: AbortController): Response {
    const id = crypto.randomUUID();
    const execution: Execution = { pending: new Map() };
    const deadline = Date.now() + parsed.timeoutMs;
    const encoder = new TextEncoder();
    let sink: ReadableStreamDefaultController<Uint8Array> | undefined;
    let open = true;
    let calls = 0;
    const send = (text: string): void => {
      if (!open || sink === undefined) return;
      try {
        sink.enqueue(encoder.encode(text + "\n"));
      } catch {
        open = false;
      }
    };
    const dropPending = (error: KeelError): void => {
      for (const call of execution.pending.values()) call.reject(error);
      execution.pending.clear();
    };
    const forward = (name: string, input: unknown): Promise<unknown> => {
      const call = ++calls;
      return new Promise<unknown>((resolve, reject) => {
        const timer = setTimeout(() => {
          execution.pending.delete(call);
          reject(passThrough(new KeelError("E_SANDBOX_TIMEOUT", `The caller did not answer tool call ${call} ("${name}") before the execution's deadline`, { details: { tool: name, call } })));
        }, Math.max(0, deadline - Date.now()));
        execution.pending.set(call, {
          name,
          resolve: (value) => {
            clearTimeout(timer);
            resolve(value);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        });
        send(JSON.stringify({ type: "tool_call", execution: id, call, name, input } satisfies ExecutorStreamLine));
      });
    };
    const body = new ReadableStream<Uint8Array>({
      start(s) {
        sink = s;
      },
      cancel() {
        // The caller went away: nobody is left to answer tool calls or read the result.
        open = false;
        logger.info(`Execution ${correlationId}: the caller disconnected; aborting it`, { correlationId });
        controller.abort();
        dropPending(passThrough(new KeelError("E_SANDBOX_ABORTED", "The caller disconnected")));
      },
    });
    executions.set(id, execution);
    const keepAlive = setInterval(() => send(""), keepAliveMs);
    void (async () => {
      try {
        const result = await execute(parsed, forwardingRegistry(parsed.tools, forward), correlationId, controller.signal);
        finished(result);
        send(JSON.stringify({ type: "result", ...result }));
      } catch (e) {
        const failure = failureOf(e);
        logger.warn(`Execution ${correlationId} could not run: ${failure.message}`, { correlationId, code: failure.code });
        send(JSON.stringify({ type: "error", error: errorBody(failure.code, failure.message, failure.details).error } satisfies ExecutorStreamLine));
      } finally {
        clearInterval(keepAlive);
        executions.delete(id);
        dropPending(passThrough(new KeelError("E_SANDBOX_ABORTED", "The execution ended before this tool call was answered")));
        inFlight.delete(controller);
        if (open) {
          open = false;
          try {
            sink?.close();
          } catch { /* already cancelled */ }
        }
      }
    })();
    return c.body(body, 200, { "content-type": "application/x-ndjson; charset=utf-8", "cache-control": "no-store" });
  }

  const app = new Hono<{ Variables: Vars }>();

  app.use("*", async (c, next) => {
    const given = c.req.header(CORRELATION_HEADER)?.trim();
    const id = given !== undefined && CORRELATION_ID.test(given) ? given : createCorrelationId(prefix);
    c.set("correlationId", id);
    c.header(CORRELATION_HEADER, id);
    await next();
  });

  app.onError((e, c) => {
    const failure = failureOf(e);
    if (failure.status >= 500) logger.error(`Executor request failed: ${failure.message}`, { code: failure.code, correlationId: c.get("correlationId") });
    return c.json(errorBody(failure.code, failure.message, failure.details), failure.status as ContentfulStatusCode, failure.headers);
  });

  app.notFound((c) =>
    c.json(
      errorBody(
        "E_EXECUTOR_REQUEST_INVALID",
        `No route for ${c.req.method} ${new URL(c.req.url).pathname}; the routes are GET /health, GET /ready, POST /v1/execute and POST /v1/executions/<id>/tool-results`,
      ),
      404,
    )
  );

  app.get("/health", (c) => c.json({ status: "ok" }));

  app.get("/ready", (c) => {
    if (ready && !closed) return c.json({ ready: true, sandbox: backend.name });
    if (!closed) void warmUp();
    return c.json({ ready: false, sandbox: backend.name, reason: closed ? "closed" : "warming up" }, 503, { "retry-after": "1" });
  });

  app.post("/v1/execute", async (c) => {
    const started = Date.now();
    await authorize(c.req.raw);
    const controller = acquire();
    let streaming = false;
    try {
      const parsed = parseRequest(await readBody(c.req.raw, limits.maxBodyBytes, started, limits.bodyTimeoutMs), limits);
      const correlationId = c.get("correlationId");
      if (parsed.tools.length > 0) {
        // Tool definitions are checked before the stream starts, so a bad schema is a plain 400.
        forwardingRegistry(parsed.tools, () => Promise.resolve());
        streaming = true;
        return stream(c, parsed, correlationId, controller);
      }
      const result = await execute(parsed, createToolRegistry(), correlationId, controller.signal);
      finished(result);
      return c.json(result);
    } finally {
      if (!streaming) inFlight.delete(controller);
    }
  });

  app.post("/v1/executions/:id/tool-results", async (c) => {
    const started = Date.now();
    await authorize(c.req.raw);
    const answer = parseAnswer(await readBody(c.req.raw, limits.maxBodyBytes, started, limits.bodyTimeoutMs));
    const execution = executions.get(c.req.param("id"));
    const pending = execution?.pending.get(answer.call);
    if (execution === undefined || pending === undefined) {
      return c.json(
        errorBody("E_EXECUTOR_REQUEST_INVALID", execution === undefined ? "No execution in flight has this id; it finished, timed out or never existed" : `Execution has no pending tool call ${answer.call}`),
        404,
      );
    }
    execution.pending.delete(answer.call);
    if (answer.ok) pending.resolve(answer.value);
    else pending.reject(callerError(pending.name, answer.error));
    return c.body(null, 204);
  });

  const extras = {
    warmUp,
    close(): Promise<void> {
      closed = true;
      for (const controller of inFlight) controller.abort();
      return Promise.resolve();
    },
  };
  Object.defineProperty(app, "inFlight", { get: () => inFlight.size, enumerable: true });
  return Object.assign(app, extras) as ExecutorApp;
}
