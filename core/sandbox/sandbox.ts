/**
 * Code mode: run untrusted, model-written code whose only way out is calling registered tools.
 *
 * Two layers meet here. A {@link SandboxBackend} runs one function expression in isolation and
 * knows nothing of tools beyond a `callTool` callback (the pool of no-permission Deno
 * subprocesses with SES compartments, and QuickJS-wasm on the edge, both in `plugins/sandbox/`).
 * {@link createCodeExecutor} puts policy on top: it normalizes the code, applies the tool
 * allow-list and the call limit, validates every call through the {@link ToolRegistry} with the
 * request's frozen runtime context and correlation id, and reports one {@link ExecuteResult}.
 * @module
 */

import { type ErrorCodeName, KeelError } from "../errors.ts";
import { defineService } from "../services.ts";
import { normalizeCode } from "../tools/normalize.ts";
import { createCorrelationId, type ToolRegistry } from "../tools/registry.ts";

/** An error reported by a sandbox: what the calling code sees in {@link ExecuteResult.error}. */
export interface SandboxError {
  readonly code: ErrorCodeName;
  readonly message: string;
  /** The thrown error's name inside the sandbox ("TypeError", ...), when there was one. */
  readonly name?: string;
  /** Its stack inside the sandbox, when there was one. */
  readonly stack?: string;
  readonly details?: Readonly<Record<string, unknown>>;
}

/**
 * One execution, as a {@link SandboxBackend} receives it.
 *
 * Inside the sandbox the code sees exactly these globals besides the language's own: `tools` and
 * `codemode` (one object: any property is an async function that calls {@link callTool} with its
 * name and first argument), `context` (a deep-frozen copy of {@link context}), and `console`
 * (`log`, `info`, `debug`, `warn`, `error`, collected into the logs). No file, network,
 * environment, process, module loader or host object is reachable.
 */
export interface SandboxRun {
  /** The source of one function expression (as {@link normalizeCode} returns); it is called with no arguments and awaited. */
  readonly code: string;
  /** JSON data, readable inside as the frozen `context` global. */
  readonly context: Readonly<Record<string, unknown>>;
  /** From the start of evaluation; a run past it ends with `E_SANDBOX_TIMEOUT`. */
  readonly timeoutMs: number;
  /** Heap limit; a run over it ends with `E_SANDBOX_MEMORY`. */
  readonly memoryMb: number;
  /** Logs past this many characters are dropped and `logsTruncated` is set. */
  readonly maxLogBytes: number;
  /** Aborting ends the run with `E_SANDBOX_ABORTED`. */
  readonly signal?: AbortSignal;
  /**
   * Host side of `tools.<name>(input)`. A rejection with a KeelError reaches the code as a thrown
   * `Error` whose `code` and `message` are the KeelError's; left uncaught, the run's error keeps
   * that code.
   */
  callTool(name: string, input: unknown): Promise<unknown>;
}

/** How a run ended. Logs are kept whatever the outcome. */
export interface SandboxOutcome {
  readonly ok: boolean;
  /** The awaited return value when `ok` (JSON data; `undefined` when nothing was returned). */
  readonly value?: unknown;
  /** Why it failed when not `ok`. */
  readonly error?: SandboxError;
  readonly logs: readonly string[];
  readonly logsTruncated: boolean;
}

/**
 * Runs code in isolation. Implementations must pass `core/sandbox/_conformance.ts`. A run never
 * rejects for anything the code does (that is an outcome); it rejects only when the backend
 * itself cannot work (`E_SANDBOX_UNAVAILABLE`, `E_SANDBOX_CLOSED`).
 */
export interface SandboxBackend {
  /** What runs the code, for logs and results ("deno-ses", "quickjs"). */
  readonly name: string;
  run(run: SandboxRun): Promise<SandboxOutcome>;
  /** Stops every process or instance; runs in flight end with `E_SANDBOX_CLOSED`. */
  close(): Promise<void>;
}

/** The kernel service a sandbox plugin provides; `kernel.execute` runs code on it. */
export const sandboxService = defineService<SandboxBackend>("sandbox");

/** Options for {@link CodeExecutor.execute}. */
export interface ExecuteOptions {
  /** The tools the code may call; default every registered tool. Unknown names are `E_TOOL_UNKNOWN`. */
  readonly tools?: readonly string[];
  /** Runtime context for this request (user id, tenant, ...): plain data, read-only inside. */
  readonly context?: Readonly<Record<string, unknown>>;
  /** Default {@link EXECUTE_DEFAULTS}.timeoutMs. */
  readonly timeoutMs?: number;
  /** Default {@link EXECUTE_DEFAULTS}.memoryMb. */
  readonly memoryMb?: number;
  /** Default {@link EXECUTE_DEFAULTS}.maxToolCalls; calls past it fail with `E_SANDBOX_TOOL_LIMIT`. */
  readonly maxToolCalls?: number;
  /** Default {@link EXECUTE_DEFAULTS}.maxLogBytes. */
  readonly maxLogBytes?: number;
  /** Generated (`exec-<base36 time>-<random>`) when absent; passed to every tool call. */
  readonly correlationId?: string;
  readonly signal?: AbortSignal;
}

/** What {@link CodeExecutor.execute} returns: a result or an error, never a throw for what the code did. */
export interface ExecuteResult {
  /** The code's return value, when it succeeded. */
  readonly result?: unknown;
  /** Why it failed: a coded error. */
  readonly error?: SandboxError;
  readonly logs: readonly string[];
  readonly logsTruncated: boolean;
  readonly durationMs: number;
  readonly correlationId: string;
  /** Tool calls the code made (meta-tools included, refused calls included). */
  readonly toolCalls: number;
  /** The backend that ran it. */
  readonly sandbox: string;
}

/** Runs code with tools. */
export interface CodeExecutor {
  /**
   * Runs `code` (normalized first: fences stripped, a body wrapped as an async function).
   * @throws {KeelError} `E_TOOL_UNKNOWN` for an allow-list naming an unknown tool,
   * `E_SANDBOX_CLOSED` after {@link close}; `TypeError`/`RangeError` for bad options.
   */
  execute(code: string, options?: ExecuteOptions): Promise<ExecuteResult>;
  /** Closes the backend. */
  close(): Promise<void>;
}

/** The limits an execution gets when its options do not say. */
export const EXECUTE_DEFAULTS = Object.freeze({
  timeoutMs: 5_000,
  memoryMb: 64,
  maxToolCalls: 1_000,
  maxLogBytes: 1_048_576,
});

/** The most an execution may ask for, unless {@link CodeExecutorOptions.limits} says otherwise. */
export const EXECUTE_LIMITS = Object.freeze({
  timeoutMs: 300_000,
  memoryMb: 4_096,
  maxToolCalls: 1_000_000,
  maxLogBytes: 64 * 1_048_576,
});

/** Options for {@link createCodeExecutor}. */
export interface CodeExecutorOptions {
  readonly tools: ToolRegistry;
  readonly backend: SandboxBackend;
  /** Upper bounds for per-request options; a request over one is a `RangeError`. */
  readonly limits?: Partial<typeof EXECUTE_LIMITS>;
}

function bounded(value: number | undefined, fallback: number, max: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new TypeError(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  if (value > max) throw new RangeError(`${name} is ${value}, over this executor's limit of ${max}`);
  return value;
}

function isPlainData(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Where the code's tool calls go: counts, allow-list, registry. */
function toolGate(
  registry: ToolRegistry,
  allowed: ReadonlySet<string>,
  options: { maxToolCalls: number; context: Readonly<Record<string, unknown>>; correlationId: string },
) {
  let calls = 0;
  function deny(name: string): KeelError {
    return new KeelError(
      "E_SANDBOX_TOOL_DENIED",
      `Tool "${name}" is not available to this code; it may call: ${
        allowed.size === 0 ? "(no tools)" : [...allowed].sort().map((n) => `"${n}"`).join(", ")
      }`,
      { details: { tool: name, allowed: [...allowed].sort() } },
    );
  }
  return {
    get count(): number {
      return calls;
    },
    async call(name: string, input: unknown): Promise<unknown> {
      calls++;
      if (calls > options.maxToolCalls) {
        throw new KeelError(
          "E_SANDBOX_TOOL_LIMIT",
          `This code made more than ${options.maxToolCalls} tool calls; batch the work or raise maxToolCalls`,
          { details: { limit: options.maxToolCalls } },
        );
      }
      if (name === "__list__") {
        return registry.list().filter((t) => allowed.has(t.name)).map((t) => ({ name: t.name, description: t.description }));
      }
      if (name === "__schema__") {
        const target = isPlainData(input) ? input.name : undefined;
        if (typeof target === "string" && !allowed.has(target)) throw deny(target);
        return await registry.call(name, input);
      }
      if (!allowed.has(name)) throw deny(name);
      return await registry.call(name, input, { context: options.context, correlationId: options.correlationId });
    },
  };
}

/**
 * Creates a {@link CodeExecutor} over a tool registry and a sandbox backend.
 *
 * @example
 * ```ts ignore
 * const executor = createCodeExecutor({ tools: registry, backend: createSandbox({ runtime }) });
 * const out = await executor.execute("await tools.add({ a: 2, b: 3 })", { tools: ["add"] });
 * // out.result === 5
 * ```
 */
export function createCodeExecutor(options: CodeExecutorOptions): CodeExecutor {
  const { tools: registry, backend } = options;
  const limits = { ...EXECUTE_LIMITS, ...options.limits };
  let closed = false;

  return {
    async execute(code, opts = {}) {
      if (closed) throw new KeelError("E_SANDBOX_CLOSED", "This code executor was closed; create a new one");
      if (typeof code !== "string") throw new TypeError("execute() takes the code as a string");
      const timeoutMs = bounded(opts.timeoutMs, EXECUTE_DEFAULTS.timeoutMs, limits.timeoutMs, "timeoutMs");
      const memoryMb = bounded(opts.memoryMb, EXECUTE_DEFAULTS.memoryMb, limits.memoryMb, "memoryMb");
      const maxToolCalls = bounded(opts.maxToolCalls, EXECUTE_DEFAULTS.maxToolCalls, limits.maxToolCalls, "maxToolCalls");
      const maxLogBytes = bounded(opts.maxLogBytes, EXECUTE_DEFAULTS.maxLogBytes, limits.maxLogBytes, "maxLogBytes");
      const context = opts.context ?? {};
      if (!isPlainData(context)) throw new TypeError("context must be a plain object of JSON data");
      // Round-trips through JSON so the sandbox and the tools see the same data (and no class instances).
      const contextCopy = JSON.parse(JSON.stringify(context)) as Record<string, unknown>;
      const correlationId = opts.correlationId ?? createCorrelationId("exec");
      const allowed = new Set(opts.tools ?? registry.list().map((t) => t.name));
      for (const name of allowed) registry.schema(name); // E_TOOL_UNKNOWN for a typo in the allow-list
      const gate = toolGate(registry, allowed, { maxToolCalls, context: contextCopy, correlationId });

      const started = performance.now();
      let normalized: string;
      try {
        normalized = normalizeCode(code);
      } catch (e) {
        return {
          error: { code: "E_SANDBOX_CODE_INVALID", message: e instanceof Error ? e.message : String(e) },
          logs: [],
          logsTruncated: false,
          durationMs: performance.now() - started,
          correlationId,
          toolCalls: 0,
          sandbox: backend.name,
        };
      }
      const run: SandboxRun = {
        code: normalized,
        context: contextCopy,
        timeoutMs,
        memoryMb,
        maxLogBytes,
        callTool: (name, input) => gate.call(name, input),
        ...(opts.signal ? { signal: opts.signal } : {}),
      };
      const outcome = await backend.run(run);
      const base = {
        logs: outcome.logs,
        logsTruncated: outcome.logsTruncated,
        durationMs: performance.now() - started,
        correlationId,
        toolCalls: gate.count,
        sandbox: backend.name,
      };
      if (outcome.ok) return outcome.value === undefined ? base : { ...base, result: outcome.value };
      return {
        ...base,
        error: outcome.error ?? { code: "E_SANDBOX_CRASHED", message: `Sandbox "${backend.name}" reported a failure without an error` },
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      await backend.close();
    },
  };
}
