/**
 * sandbox: code mode. Runs untrusted, model-written JavaScript whose only way out is the kernel's
 * registered tools, on one of two backends behind the `SandboxBackend` port:
 * - `"process"` (`createProcessSandbox` in `./pool.ts`): a pool of long-lived `deno run` subprocesses with
 *   no permissions at all, a fresh SES Compartment per execution after `lockdown()`; a missed
 *   deadline or an out-of-memory kills and replaces that process only.
 * - `"quickjs"` (`createQuickJsSandbox` in `./quickjs.ts`): a QuickJS-wasm context per execution, for hosts
 *   where no subprocess can start (edge runtimes).
 *
 * The plugin provides the kernel's `sandboxService` (so `kernel.execute(code, options)` works) and
 * answers the `code/v1` workflow protocol: method `code/execute` with params
 * `{ code, tools?, context?, timeoutMs?, memoryMb?, maxToolCalls? }`, resolving to the code's
 * result; a failed execution throws its coded error.
 *
 * Capabilities: the default export uses the process backend and asks for `run:deno` (Keel's own
 * Deno binary, started with no permissions); `createSandboxPlugin({ backend: "quickjs" })` asks
 * for nothing.
 * @module
 */

import {
  type CodeExecutor,
  createCodeExecutor,
  definePlugin,
  type ExecuteRequest,
  type Executor,
  KeelError,
  type Logger,
  type Plugin,
  type Runtime,
  type SandboxBackend,
  type SandboxOutcome,
  type SandboxRun,
  sandboxService,
  type SpawnOptions,
  type ToolRegistry,
} from "../../core/mod.ts";
import type { ProcessSandbox, ProcessSandboxOptions } from "./pool.ts";

/** The workflow protocol this plugin answers `resolveExecutor` for. */
export const CODE_PROTOCOL = "code/v1";

/** Runs code with the kernel's tools. */
export const CODE_EXECUTE = "code/execute";

/** Which backend runs the code. `"auto"`: the process pool where Deno can be started, else QuickJS. */
export type SandboxBackendKind = "auto" | "process" | "quickjs";

/** Options for {@link createSandbox}. */
export interface CreateSandboxOptions {
  readonly backend?: SandboxBackendKind;
  /** Needed by the process backend (processes and `denoPath`). */
  readonly runtime?: Runtime;
  readonly maxProcesses?: number;
  readonly minProcesses?: number;
  readonly maxQueue?: number;
  readonly logger?: Logger;
}

function poolOptions(
  options: CreateSandboxOptions,
  spawnDeno: ProcessSandboxOptions["spawnDeno"],
): ProcessSandboxOptions {
  return {
    spawnDeno,
    ...(options.maxProcesses === undefined ? {} : { maxProcesses: options.maxProcesses }),
    ...(options.minProcesses === undefined ? {} : { minProcesses: options.minProcesses }),
    ...(options.maxQueue === undefined ? {} : { maxQueue: options.maxQueue }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  };
}

/**
 * Creates a sandbox backend. The process backend is loaded and started only here, QuickJS's WASM
 * only on its first run, so a host pays for the one it uses.
 * @throws {KeelError} `E_SANDBOX_UNAVAILABLE` when `"process"` is asked for on a runtime that
 * cannot start Deno.
 */
export async function createSandbox(options: CreateSandboxOptions = {}): Promise<SandboxBackend> {
  const kind = options.backend ?? "auto";
  const { runtime } = options;
  const canSpawn = runtime?.processes !== undefined && runtime.denoPath !== undefined;
  if (kind === "quickjs" || (kind === "auto" && !canSpawn)) {
    const { createQuickJsSandbox } = await import("./quickjs.ts");
    return createQuickJsSandbox();
  }
  if (kind !== "process" && kind !== "auto") {
    throw new TypeError(`Unknown sandbox backend ${JSON.stringify(kind)}: use "process", "quickjs" or "auto"`);
  }
  const { createProcessSandbox, denoSpawner } = await import("./pool.ts");
  if (!runtime) {
    throw new KeelError("E_SANDBOX_UNAVAILABLE", 'The "process" sandbox needs a runtime that can start Deno; pass one, or use backend "quickjs"');
  }
  return createProcessSandbox(poolOptions(options, denoSpawner(runtime)));
}

/** Options for {@link createSandboxPlugin}. */
export interface SandboxPluginOptions {
  /** Default `"process"`. */
  readonly backend?: "process" | "quickjs";
  readonly maxProcesses?: number;
  readonly minProcesses?: number;
  readonly maxQueue?: number;
}

/** A backend that is created on its first run, so a kernel boots without starting processes. */
function lazyBackend(name: string, make: () => Promise<SandboxBackend>): SandboxBackend {
  let backend: Promise<SandboxBackend> | undefined;
  let closed = false;
  return {
    name,
    async run(run: SandboxRun): Promise<SandboxOutcome> {
      if (closed) throw new KeelError("E_SANDBOX_CLOSED", "The sandbox was closed with its kernel");
      backend ??= make();
      return await (await backend).run(run);
    },
    async close() {
      closed = true;
      if (backend) await (await backend).close();
    },
  };
}

interface CodeParams {
  readonly code: string;
  readonly tools?: readonly string[];
  readonly context?: Record<string, unknown>;
  readonly timeoutMs?: number;
  readonly memoryMb?: number;
  readonly maxToolCalls?: number;
}

function codeParams(request: ExecuteRequest): CodeParams {
  const params = request.params as Partial<CodeParams> | undefined;
  if (typeof params !== "object" || params === null || typeof params.code !== "string") {
    throw new KeelError("E_CONFIG_INVALID", `Method "${CODE_EXECUTE}" takes params { code: string, tools?, context?, timeoutMs?, memoryMb? }`, {
      details: { method: request.method },
    });
  }
  return params as CodeParams;
}

function codeExecutor(executor: () => CodeExecutor): Executor {
  return {
    protocol: CODE_PROTOCOL,
    methods: [CODE_EXECUTE],
    async execute(request) {
      if (request.method !== CODE_EXECUTE) {
        throw new KeelError("E_WORKFLOW_UNKNOWN_METHOD", `Protocol "${CODE_PROTOCOL}" has one method, "${CODE_EXECUTE}"; got "${request.method}"`, {
          details: { protocol: CODE_PROTOCOL, method: request.method },
        });
      }
      const p = codeParams(request);
      const out = await executor().execute(p.code, {
        ...(p.tools === undefined ? {} : { tools: p.tools }),
        ...(p.context === undefined ? {} : { context: p.context }),
        ...(p.timeoutMs === undefined ? {} : { timeoutMs: p.timeoutMs }),
        ...(p.memoryMb === undefined ? {} : { memoryMb: p.memoryMb }),
        ...(p.maxToolCalls === undefined ? {} : { maxToolCalls: p.maxToolCalls }),
        ...(request.signal === undefined ? {} : { signal: request.signal }),
      });
      if (out.error) {
        throw new KeelError(out.error.code, out.error.message, { details: { logs: out.logs, correlationId: out.correlationId } });
      }
      return out.result ?? null;
    },
  };
}

/**
 * Creates the sandbox plugin.
 *
 * @example
 * ```ts ignore
 * import { createKernel } from "keel";
 * import sandbox from "keel/plugins/sandbox";
 * const kernel = await createKernel({ runtime, plugins: [sandbox], grant: ["run:deno"] });
 * kernel.tools.register({ name: "add", description: "Adds", inputSchema: {...}, run: ({ a, b }) => a + b });
 * const out = await kernel.execute("await tools.add({ a: 1, b: 2 })");
 * ```
 */
export function createSandboxPlugin(options: SandboxPluginOptions = {}): Plugin {
  const kind = options.backend ?? "process";
  return definePlugin({
    name: "sandbox",
    version: "0.1.0",
    kernel: "^1",
    description: "Code mode: runs untrusted code whose only way out is the kernel's tools",
    capabilities: kind === "process" ? ["run:deno"] : [],
    setup(ctx) {
      const backend = lazyBackend(kind === "process" ? "deno-ses" : "quickjs", async () => {
        if (kind === "quickjs") return (await import("./quickjs.ts")).createQuickJsSandbox();
        const { createProcessSandbox } = await import("./pool.ts");
        const spawnDeno = (args: readonly string[], spawn: SpawnOptions) => ctx.spawn("deno", { ...spawn, args });
        const pool: ProcessSandbox = createProcessSandbox(poolOptions({ ...options, logger: ctx.logger }, spawnDeno));
        return pool;
      });
      ctx.provide(sandboxService, backend);
      let executor: CodeExecutor | undefined;
      const tools: ToolRegistry = ctx.tools;
      return {
        resolveExecutor: (protocol) => protocol === CODE_PROTOCOL ? codeExecutor(() => (executor ??= createCodeExecutor({ tools, backend }))) : undefined,
        dispose: () => backend.close(),
      };
    },
  });
}

/** The sandbox plugin with the process backend (asks for `run:deno`). */
export default createSandboxPlugin();

// The backends' own modules (`./pool.ts`, `./quickjs.ts`) are imported on demand, not re-exported,
// so importing this plugin does not load QuickJS or the pool.
export type { ProcessSandbox, ProcessSandboxOptions } from "./pool.ts";
export type { QuickJsSandboxOptions } from "./quickjs.ts";
