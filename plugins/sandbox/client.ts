/**
 * The client of the executor service (`./server.ts`, `keel executor serve`): runs code in a
 * remote sandbox while the tools it calls run here, through the caller's own
 * {@link ToolRegistry}, so the calling app need not accept connections.
 *
 * Retries only what cannot have run any code: a connection refused or another network error
 * before a response, HTTP 503 (busy, shutting down, sandbox unavailable), and an attempt that got
 * no response within its time. Waits `min(maxMs, baseMs * 2^n) * random()` between attempts
 * (full jitter), or the server's `Retry-After` when that is at most `maxMs`. A 4xx, or a stream
 * that already started, is never retried.
 * @module
 */

import {
  createCorrelationId,
  EXECUTE_DEFAULTS,
  ErrorCode,
  type ErrorCodeName,
  type ExecuteResult,
  KeelError,
  type ToolInfo,
  type ToolRegistry,
} from "../../core/mod.ts";
import type { ExecutorErrorBody, ExecutorRequest, ExecutorStreamLine, ToolResultBody } from "./server.ts";

/** A `fetch`-compatible function (for tests, proxies, or a host's own client). */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/** How {@link ExecutorClient} retries. */
export interface RetryOptions {
  /** Attempts in all, the first included; default 3. */
  readonly maxAttempts?: number;
  /** Default 100. */
  readonly baseMs?: number;
  /** The longest wait between attempts; default 2000. */
  readonly maxMs?: number;
}

/** Options for {@link createExecutorClient}. */
export interface ExecutorClientOptions {
  /** The service's base URL, as `keel executor serve` prints it (`http://127.0.0.1:8787`). */
  readonly url: string | URL;
  /** Sent as `Authorization: Bearer <key>`. */
  readonly apiKey: string;
  readonly retry?: RetryOptions;
  /** Default the global `fetch`. */
  readonly fetch?: FetchLike;
  /**
   * How long to wait for the server beyond the execution's own `timeoutMs` (default 10 000).
   * An attempt with no response by then is abandoned and retried; an exchange already streaming
   * is cut off with `E_EXECUTOR_UNREACHABLE`. `health()` and `ready()` wait this long in all.
   */
  readonly timeoutMs?: number;
}

/** Options for {@link ExecutorClient.execute}. */
export interface RemoteExecuteOptions {
  /** The caller's tools; each call the code makes runs here through `registry.call`. */
  readonly registry?: ToolRegistry;
  /** Allow-list: the registry's tools the code may call; default all of them. Unknown names are `E_TOOL_UNKNOWN`. */
  readonly tools?: readonly string[];
  /** Runtime context (plain JSON data): read-only inside the sandbox, and passed to every tool. */
  readonly context?: Readonly<Record<string, unknown>>;
  readonly timeoutMs?: number;
  readonly memoryMb?: number;
  readonly maxToolCalls?: number;
  /** Sent as `x-correlation-id` (kept across retries); generated (`exec-...`) when absent. */
  readonly correlationId?: string;
  /** Aborting ends the exchange (the server then aborts the execution) with `E_SANDBOX_ABORTED`. */
  readonly signal?: AbortSignal;
}

/** Talks to one executor service. */
export interface ExecutorClient {
  /**
   * Runs `code` remotely; tool calls run here. Resolves with the execution's result, failures
   * of the code included (as {@link ExecuteResult.error}).
   * @throws {KeelError} `E_EXECUTOR_UNREACHABLE` (after the last attempt, `details.attempts`
   * lists each), `E_EXECUTOR_UNAUTHORIZED`, the server's code for another 4xx
   * (`E_EXECUTOR_REQUEST_INVALID`, `E_EXECUTOR_REQUEST_TOO_LARGE`, `E_TOOL_SCHEMA_INVALID`, ...)
   * or for a backend failure during a stream, `E_TOOL_UNKNOWN` for an allow-list naming an
   * unknown tool, `E_SANDBOX_ABORTED` when `signal` aborts.
   */
  execute(code: string, options?: RemoteExecuteOptions): Promise<ExecuteResult>;
  /**
   * `GET /health`.
   * @throws {KeelError} `E_EXECUTOR_UNREACHABLE` when the service does not answer 200.
   */
  health(): Promise<{ status: "ok" }>;
  /** `GET /ready`: true when the service answers that its sandbox runs code; false otherwise, unreachable included. */
  ready(): Promise<boolean>;
}

/** One failed attempt, as `details.attempts` of `E_EXECUTOR_UNREACHABLE` lists it. */
export interface AttemptFailure {
  readonly attempt: number;
  /** The HTTP status, when the server answered. */
  readonly status?: number;
  /** The server's error code, when it sent one. */
  readonly code?: string;
  readonly message: string;
}

const EXECUTION_ID = /^[A-Za-z0-9-]{1,64}$/;

function positive(value: number | undefined, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw new RangeError(`${name} must be a number of at least ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function baseUrl(url: string | URL): URL {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    throw new TypeError(`The executor URL ${JSON.stringify(String(url))} is not a URL; pass one like "http://127.0.0.1:8787"`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new TypeError(`The executor URL must be http: or https:, got "${parsed.protocol}"`);
  }
  if (!parsed.pathname.endsWith("/")) parsed.pathname += "/";
  parsed.search = "";
  parsed.hash = "";
  return parsed;
}

/** Waits `ms`, or rejects when `signal` aborts. */
function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted());
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(aborted());
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function aborted(): KeelError {
  return new KeelError("E_SANDBOX_ABORTED", "The caller aborted the execution");
}

/** `Retry-After` in ms (seconds or an HTTP date), or undefined. */
function retryAfterMs(response: Response): number | undefined {
  const header = response.headers.get("retry-after")?.trim();
  if (!header) return undefined;
  if (/^\d+$/.test(header)) return Number(header) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** The server's `{ error: { code, message, details } }`, or a stand-in from the status. */
async function serverError(response: Response): Promise<{ code: string | undefined; message: string; details?: Record<string, unknown> }> {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text) as Partial<ExecutorErrorBody>;
    if (typeof body.error?.code === "string" && typeof body.error.message === "string") {
      return { code: body.error.code, message: body.error.message, ...(body.error.details ? { details: { ...body.error.details } } : {}) };
    }
  } catch { /* not JSON: fall through */ }
  return { code: undefined, message: `HTTP ${response.status}${text ? `: ${text.slice(0, 200)}` : ""}` };
}

function knownCode(code: string | undefined, fallback: ErrorCodeName): ErrorCodeName {
  return code !== undefined && Object.hasOwn(ErrorCode, code) ? code as ErrorCodeName : fallback;
}

/** Splits a byte stream into trimmed lines; blank ones are the server's keep-alives. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let at: number;
      while ((at = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, at).trim();
        buffer = buffer.slice(at + 1);
        yield line;
      }
    }
    buffer += decoder.decode();
    if (buffer.trim() !== "") yield buffer.trim();
  } finally {
    reader.releaseLock();
  }
}

function isResult(value: unknown): value is ExecuteResult {
  const v = value as Partial<ExecuteResult> | null;
  return typeof v === "object" && v !== null && Array.isArray(v.logs) && typeof v.correlationId === "string";
}

/** A KeelError, or anything thrown by a tool, as the `error` of a tool result. */
function answerError(e: unknown): Extract<ToolResultBody, { ok: false }>["error"] {
  if (KeelError.is(e)) {
    let details: Record<string, unknown> | undefined;
    try {
      details = e.details === undefined ? undefined : JSON.parse(JSON.stringify(e.details));
    } catch { /* details that are not JSON stay here */ }
    return { code: e.code, message: e.message, ...(details === undefined ? {} : { details }) };
  }
  return { code: "E_TOOL_FAILED", message: e instanceof Error ? e.message : String(e) };
}

/**
 * Creates a client of an executor service.
 *
 * @example
 * ```ts ignore
 * const client = createExecutorClient({ url: "http://127.0.0.1:8787", apiKey });
 * const out = await client.execute("await tools.add({ a: 2, b: 3 })", { registry, context: { user: "u1" } });
 * // out.result === 5; "add" ran here, with the context and out.correlationId
 * ```
 * @throws {TypeError} for a URL that is not http(s) or an empty API key; `RangeError` for a bad retry option.
 */
export function createExecutorClient(options: ExecutorClientOptions): ExecutorClient {
  const base = baseUrl(options.url);
  if (typeof options.apiKey !== "string" || options.apiKey.trim() === "") {
    throw new TypeError("createExecutorClient() needs the apiKey the executor was started with");
  }
  const maxAttempts = Math.floor(positive(options.retry?.maxAttempts, 3, "retry.maxAttempts"));
  const baseMs = positive(options.retry?.baseMs, 100, "retry.baseMs", 0);
  const maxMs = positive(options.retry?.maxMs, 2_000, "retry.maxMs", 0);
  const slackMs = positive(options.timeoutMs, 10_000, "timeoutMs");
  const doFetch: FetchLike = options.fetch ?? ((input, init) => fetch(input, init));
  const auth = { authorization: `Bearer ${options.apiKey}` };
  const where = base.href.replace(/\/$/, "");

  function unreachable(attempts: readonly AttemptFailure[]): KeelError {
    const last = attempts[attempts.length - 1];
    return new KeelError(
      "E_EXECUTOR_UNREACHABLE",
      `The executor at "${where}" did not answer after ${attempts.length} attempt(s) (last: ${last?.message ?? "?"}); check that it runs (keel executor serve) and the URL`,
      { details: { url: where, attempts } },
    );
  }

  /** One exchange's time limit and the caller's signal, as one signal. */
  function exchangeSignal(limitMs: number, signal: AbortSignal | undefined): { signal: AbortSignal; timedOut: () => boolean; done: () => void } {
    const controller = new AbortController();
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      controller.abort();
    }, limitMs);
    const onAbort = (): void => controller.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) controller.abort();
    return {
      signal: controller.signal,
      timedOut: () => expired,
      done: () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      },
    };
  }

  /** The wait before attempt `failed + 1`. */
  function backoff(failed: number, response?: Response): number {
    const after = response === undefined ? undefined : retryAfterMs(response);
    if (after !== undefined && after <= maxMs) return after;
    return Math.min(maxMs, baseMs * 2 ** (failed - 1)) * Math.random();
  }

  /**
   * POSTs `body` until a response that is not a 503 arrives, retrying network errors, 503s and
   * attempts with no response in time. Returns that response with the exchange still running
   * (`done` must be called); throws for everything else.
   */
  async function post(
    path: string,
    body: string,
    headers: Record<string, string>,
    limitMs: number,
    signal: AbortSignal | undefined,
  ): Promise<{ response: Response; timedOut: () => boolean; done: () => void }> {
    const attempts: AttemptFailure[] = [];
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const exchange = exchangeSignal(limitMs, signal);
      let response: Response;
      try {
        response = await doFetch(new URL(path, base).href, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json", ...headers },
          body,
          signal: exchange.signal,
        });
      } catch (e) {
        exchange.done();
        if (signal?.aborted) throw aborted();
        attempts.push({
          attempt,
          message: exchange.timedOut() ? `no response within ${limitMs}ms` : e instanceof Error ? e.message : String(e),
        });
        if (attempt < maxAttempts) await delay(backoff(attempt), signal);
        continue;
      }
      if (response.status !== 503) return { response, ...exchange };
      const error = await serverError(response);
      exchange.done();
      attempts.push({ attempt, status: 503, ...(error.code === undefined ? {} : { code: error.code }), message: error.message });
      if (attempt < maxAttempts) await delay(backoff(attempt, response), signal);
    }
    throw unreachable(attempts);
  }

  /** A KeelError for a final answer that is not 2xx (503 is handled by the retries). */
  async function refusal(response: Response): Promise<KeelError> {
    const error = await serverError(response);
    const details = { ...error.details, status: response.status, ...(error.code === undefined ? {} : { serverCode: error.code }) };
    if (response.status === 401) {
      return new KeelError("E_EXECUTOR_UNAUTHORIZED", `The executor at "${where}" refused the API key: ${error.message}`, { details });
    }
    if (response.status >= 500) {
      return new KeelError("E_EXECUTOR_UNREACHABLE", `The executor at "${where}" failed (HTTP ${response.status}): ${error.message}`, { details });
    }
    return new KeelError(knownCode(error.code, "E_EXECUTOR_REQUEST_INVALID"), error.message, { details });
  }

  async function get(path: string): Promise<Response> {
    const exchange = exchangeSignal(slackMs, undefined);
    try {
      const response = await doFetch(new URL(path, base).href, { method: "GET", signal: exchange.signal });
      await response.clone().arrayBuffer(); // the whole answer within the time limit
      return response;
    } catch (e) {
      throw new KeelError(
        "E_EXECUTOR_UNREACHABLE",
        `The executor at "${where}" did not answer ${path}: ${exchange.timedOut() ? `no response within ${slackMs}ms` : e instanceof Error ? e.message : String(e)}`,
        { details: { url: where } },
      );
    } finally {
      exchange.done();
    }
  }

  return {
    async execute(code, opts = {}) {
      if (typeof code !== "string") throw new TypeError("execute() takes the code as a string");
      const registry = opts.registry;
      if (opts.tools !== undefined && registry === undefined) {
        throw new TypeError("execute() got an allow-list of tools but no registry to run them; pass { registry }");
      }
      const infos: ToolInfo[] = registry === undefined ? [] : (opts.tools ?? registry.list().map((t) => t.name)).map((name) => registry.schema(name));
      const allowed = new Set(infos.map((t) => t.name));
      const correlationId = opts.correlationId ?? createCorrelationId("exec");
      const context = opts.context ?? {};
      const request: ExecutorRequest = {
        code,
        ...(infos.length === 0 ? {} : { tools: infos }),
        ...(opts.context === undefined ? {} : { context: opts.context }),
        ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
        ...(opts.memoryMb === undefined ? {} : { memoryMb: opts.memoryMb }),
        ...(opts.maxToolCalls === undefined ? {} : { maxToolCalls: opts.maxToolCalls }),
      };
      const limitMs = (opts.timeoutMs ?? EXECUTE_DEFAULTS.timeoutMs) + slackMs;
      const headers = { "x-correlation-id": correlationId };
      const { response, timedOut, done } = await post("v1/execute", JSON.stringify(request), headers, limitMs, opts.signal);
      try {
        if (!response.ok) throw await refusal(response);
        const type = response.headers.get("content-type") ?? "";
        if (type.startsWith("application/json")) {
          const result: unknown = await response.json();
          if (!isResult(result)) throw new KeelError("E_EXECUTOR_UNREACHABLE", `The executor at "${where}" sent a result of the wrong shape`, { details: { url: where } });
          return result;
        }
        if (!type.startsWith("application/x-ndjson") || response.body === null) {
          throw new KeelError("E_EXECUTOR_UNREACHABLE", `The executor at "${where}" answered with "${type}", not JSON or NDJSON; is the URL an executor?`, { details: { url: where } });
        }

        /** Runs one tool call here and posts its answer; the stream goes on meanwhile. */
        const answer = async (line: Extract<ExecutorStreamLine, { type: "tool_call" }>): Promise<void> => {
          let body: ToolResultBody;
          if (!allowed.has(line.name)) {
            body = { call: line.call, ok: false, error: { code: "E_SANDBOX_TOOL_DENIED", message: `Tool "${line.name}" was not offered to this execution` } };
          } else {
            try {
              const value = await registry!.call(line.name, line.input, { context, correlationId });
              body = { call: line.call, ok: true, value };
            } catch (e) {
              body = { call: line.call, ok: false, error: answerError(e) };
            }
          }
          let text: string;
          try {
            text = JSON.stringify(body);
          } catch (e) {
            text = JSON.stringify({
              call: line.call,
              ok: false,
              error: { code: "E_TOOL_OUTPUT_INVALID", message: `Tool "${line.name}" returned a value that is not JSON: ${e instanceof Error ? e.message : String(e)}` },
            });
          }
          const posted = await post(`v1/executions/${encodeURIComponent(line.execution)}/tool-results`, text, headers, slackMs, opts.signal);
          posted.done();
          // 404: the execution ended (deadline, abort) before this answer; its result says why.
          if (!posted.response.ok && posted.response.status !== 404) throw await refusal(posted.response);
          await posted.response.body?.cancel();
        };

        // A tool answer that cannot be delivered ends the exchange at the next line or keep-alive.
        let failure: unknown;
        for await (const text of lines(response.body)) {
          if (failure !== undefined) throw failure;
          if (text === "") continue;
          let line: ExecutorStreamLine;
          try {
            line = JSON.parse(text) as ExecutorStreamLine;
          } catch {
            throw new KeelError("E_EXECUTOR_UNREACHABLE", `The executor at "${where}" sent a line that is not JSON`, { details: { url: where, line: text.slice(0, 200) } });
          }
          if (line.type === "tool_call") {
            if (!EXECUTION_ID.test(String(line.execution)) || !Number.isSafeInteger(line.call) || typeof line.name !== "string") {
              throw new KeelError("E_EXECUTOR_UNREACHABLE", `The executor at "${where}" sent a malformed tool call`, { details: { url: where } });
            }
            void answer(line).catch((e: unknown) => {
              failure ??= e;
            });
          } else if (line.type === "result") {
            const { type: _type, ...result } = line;
            if (!isResult(result)) throw new KeelError("E_EXECUTOR_UNREACHABLE", `The executor at "${where}" sent a result of the wrong shape`, { details: { url: where } });
            return result;
          } else if (line.type === "error") {
            const error = line.error as { code?: string; message?: string; details?: Record<string, unknown> } | undefined;
            throw new KeelError(knownCode(error?.code, "E_EXECUTOR_UNREACHABLE"), error?.message ?? "The executor failed", {
              details: { ...error?.details, url: where },
            });
          }
          // Other types are from a newer server: skipped.
        }
        if (failure !== undefined) throw failure;
        throw new KeelError("E_EXECUTOR_UNREACHABLE", `The executor at "${where}" closed the stream before the result`, { details: { url: where } });
      } catch (e) {
        if (opts.signal?.aborted) throw aborted();
        if (KeelError.is(e)) throw e;
        throw new KeelError(
          "E_EXECUTOR_UNREACHABLE",
          timedOut()
            ? `The executor at "${where}" did not finish within ${limitMs}ms (the execution's timeoutMs plus ${slackMs}ms)`
            : `The connection to the executor at "${where}" broke: ${e instanceof Error ? e.message : String(e)}`,
          { cause: e, details: { url: where } },
        );
      } finally {
        done();
        await response.body?.cancel().catch(() => {});
      }
    },

    async health() {
      const response = await get("health");
      if (!response.ok) {
        const error = await serverError(response);
        throw new KeelError("E_EXECUTOR_UNREACHABLE", `The executor at "${where}" is not healthy (HTTP ${response.status}): ${error.message}`, {
          details: { url: where, status: response.status },
        });
      }
      return await response.json() as { status: "ok" };
    },

    async ready() {
      try {
        const response = await get("ready");
        const body = await response.json().catch(() => undefined) as { ready?: unknown } | undefined;
        return response.ok && body?.ready === true;
      } catch {
        return false;
      }
    },
  };
}
