/**
 * `keel exec <file.js|-> [--tool ./tools.ts ...]`: code mode from the command line. Runs the
 * JavaScript in a sandbox (no files, network, processes or environment) whose only way out is the
 * tools the `--tool` modules export, and prints what it returns as JSON on stdout; its
 * `console.*` lines go to stderr. A failed run prints its coded error (`E_SANDBOX_TIMEOUT`, ...)
 * and exits 1.
 *
 * The tool modules themselves are trusted host code: they are imported into this process, with
 * its permissions. Only the code runs sandboxed.
 * @module
 */

import type { ArgsDef } from "citty";
import {
  type CodeExecutor,
  createCodeExecutor,
  createToolRegistry,
  errorMessage,
  EXECUTE_LIMITS,
  KeelError,
  type ToolRegistry,
  toFileUrl,
} from "../../core/mod.ts";
import { createSandbox, type SandboxBackendKind } from "../../plugins/sandbox/mod.ts";
import { registerToolModules, type ToolModule } from "../../plugins/sandbox/tools-module.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { allValues, integerFlag, lastValue } from "../flags.ts";

const BACKENDS = ["auto", "process", "quickjs"] as const;

/** The help text of `--tool` and `--backend`, shared with `keel mcp serve`. */
export const CODE_MODE_ARGS = {
  tool: {
    type: "string",
    valueHint: "module",
    description:
      "A module whose default export is a tool, an array of tools, or a function returning them (or that exports `tools`). Imported into this process: trusted code. Repeatable",
  },
  backend: {
    type: "string",
    valueHint: "kind",
    description: 'What runs the code: "process" (a pool of no-permission Deno processes), "quickjs" (WASM, in-process), or "auto" (default: process where Deno can start)',
  },
} as const satisfies ArgsDef;

const EXEC_ARGS = {
  file: { type: "positional", description: 'The JavaScript to run (a body that ends with `return`, one expression, or a function), or "-" for stdin', required: true },
  ...CODE_MODE_ARGS,
  context: { type: "string", valueHint: "json", description: "A JSON object the code reads as `context` and tools receive (user id, tenant, ...)" },
  timeout: { type: "string", valueHint: "ms", description: "Stop the code after this many milliseconds (default 5000)" },
  memory: { type: "string", valueHint: "mb", description: "The code's heap limit in megabytes (default 64)" },
  json: { type: "boolean", description: "Print the whole result on stdout: { result, error, logs, durationMs, toolCalls, ... }" },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

/** Refuses `--plugin`, `--allow` and `--trust`: code mode takes its tools from `--tool`. */
export function refusePluginFlags(env: CliEnv, command: string): void {
  for (const flag of ["plugin", "allow", "trust"]) {
    if (allValues(env.flags, flag).length > 0) {
      throw usage(`${command} does not take --${flag}; give the code its tools with --tool ./tools.ts`);
    }
  }
}

/** `--backend`, checked. */
export function backendFlag(env: CliEnv): SandboxBackendKind {
  const given = lastValue(env.flags, "backend") ?? "auto";
  if (!(BACKENDS as readonly string[]).includes(given)) {
    throw usage(`--backend takes ${BACKENDS.map((b) => `"${b}"`).join(", ")}; got "${given}"`);
  }
  return given as SandboxBackendKind;
}

/**
 * Imports each `--tool` module (relative to the working directory) and registers its tools in a
 * new registry.
 * @throws {KeelError} `E_CONFIG_LOAD_FAILED` for a module that is missing (exit 2) or fails to
 * import; `E_CONFIG_INVALID` for one that exports no tools; the registry's `E_TOOL_*` codes.
 */
export async function loadTools(env: CliEnv): Promise<ToolRegistry> {
  const { runtime } = env;
  const modules: ToolModule[] = [];
  const seen = new Set<string>();
  for (const given of allValues(env.flags, "tool")) {
    const path = runtime.resolvePath(given);
    if (seen.has(path)) continue; // the same module twice is one import, not a clash with itself
    seen.add(path);
    if (runtime.fs !== undefined && !(await runtime.fs.exists(path))) {
      throw new KeelError("E_CONFIG_LOAD_FAILED", `Tool module "${given}" does not exist (looked for "${path}"); check the path`, {
        details: { source: given, exitCode: 2 },
      });
    }
    let namespace: unknown;
    try {
      namespace = await import(toFileUrl(path));
    } catch (e) {
      throw new KeelError("E_CONFIG_LOAD_FAILED", `Tool module "${given}" could not be imported: ${errorMessage(e)}`, {
        cause: e,
        details: { source: given },
      });
    }
    modules.push({ source: given, namespace });
  }
  const registry = createToolRegistry();
  const names = await registerToolModules(registry, modules);
  env.logger.debug(`tools: ${names.length === 0 ? "(none)" : names.join(", ")}`);
  return registry;
}

/** A code executor over `tools` on the `--backend` sandbox. */
export async function executorFromFlags(env: CliEnv, tools: ToolRegistry): Promise<CodeExecutor> {
  const backend = await createSandbox({ runtime: env.runtime, backend: backendFlag(env), logger: env.logger });
  return createCodeExecutor({ tools, backend });
}

function bounded(env: CliEnv, flag: string, max: number): number | undefined {
  const value = integerFlag(env.flags, flag);
  if (value !== undefined && value > max) throw usage(`--${flag} is at most ${max}, got ${value}`);
  return value;
}

function contextFlag(env: CliEnv): Record<string, unknown> | undefined {
  const raw = lastValue(env.flags, "context");
  if (raw === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (e) {
    throw usage(`--context takes a JSON object, as in --context '{"userId":"u1"}'; "${raw}" is not JSON (${errorMessage(e)})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw usage(`--context takes a JSON object, as in --context '{"userId":"u1"}'; got ${Array.isArray(value) ? "an array" : value === null ? "null" : `a ${typeof value}`}`);
  }
  return value as Record<string, unknown>;
}

/**
 * All of stdin. The Runtime port has no stdin, and Deno wants --allow-all to read /dev/stdin, so
 * this path (and only this one) loads Node's process object.
 */
async function readStdin(): Promise<string> {
  const { default: process } = await import("node:process");
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of process.stdin as AsyncIterable<Uint8Array | string>) {
    text += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
  }
  return text + decoder.decode();
}

async function readCode(env: CliEnv, given: string): Promise<string> {
  const { runtime } = env;
  if (given === "-") {
    try {
      return await readStdin();
    } catch (e) {
      throw usage(`Cannot read the code from stdin: ${errorMessage(e)}`);
    }
  }
  if (runtime.fs === undefined) throw new KeelError("E_RUNTIME_UNSUPPORTED", "keel exec needs a runtime with files");
  const path = runtime.resolvePath(given);
  try {
    return await runtime.fs.readTextFile(path);
  } catch (e) {
    if (KeelError.is(e, "E_RUNTIME_NOT_FOUND")) {
      throw new KeelError("E_SCRIPT_NOT_FOUND", `Code file "${given}" does not exist (looked for "${path}"); check the path, or pass - to read stdin`, {
        details: { file: path, exitCode: 2 },
      });
    }
    throw usage(`Cannot read code file "${given}": ${errorMessage(e)}`);
  }
}

/** Ctrl-C and SIGTERM abort the run; call the returned function when done. */
function abortOnSignals(env: CliEnv, controller: AbortController): () => void {
  const stops: (() => void)[] = [];
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    const stop = env.runtime.onSignal?.(sig, () => controller.abort());
    if (stop) stops.push(stop);
  }
  return () => stops.forEach((s) => s());
}

async function execCommand(env: CliEnv): Promise<void> {
  const { runtime, flags } = env;
  const [, given, ...extra] = flags.positionals;
  if (given === undefined) throw usage('keel exec needs the code to run: a file, or - for stdin, as in: keel exec plan.js --tool ./tools.ts');
  if (extra.length > 0) throw usage(`keel exec runs one file, got also ${extra.map((e) => `"${e}"`).join(", ")}`);
  refusePluginFlags(env, "keel exec");
  const json = flags.booleans.has("json");
  const context = contextFlag(env);
  const timeoutMs = bounded(env, "timeout", EXECUTE_LIMITS.timeoutMs);
  const memoryMb = bounded(env, "memory", EXECUTE_LIMITS.memoryMb);
  backendFlag(env); // a typo fails before any module is imported
  const code = await readCode(env, given);
  const tools = await loadTools(env);
  const executor = await executorFromFlags(env, tools);
  const controller = new AbortController();
  const stopSignals = abortOnSignals(env, controller);
  try {
    const out = await executor.execute(code, {
      signal: controller.signal,
      ...(context === undefined ? {} : { context }),
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      ...(memoryMb === undefined ? {} : { memoryMb }),
    });
    for (const line of out.logs) runtime.writeStderr(line + "\n");
    if (out.logsTruncated) env.out.warn("The code's logs were cut short at the log limit");
    if (json) await runtime.writeStdout(JSON.stringify(out) + "\n");
    else if (out.error === undefined && out.result !== undefined) await runtime.writeStdout(JSON.stringify(out.result, null, 2) + "\n");
    if (out.error !== undefined) {
      if (env.debug && out.error.stack !== undefined) env.out.log(out.error.stack);
      throw new KeelError(out.error.code, out.error.message, {
        details: {
          ...out.error.details,
          correlationId: out.correlationId,
          // --json already printed the whole result; an interrupted run exits as a signalled one does.
          ...(json ? { reported: true } : {}),
          ...(out.error.code === "E_SANDBOX_ABORTED" ? { exitCode: 130 } : {}),
        },
      });
    }
  } finally {
    stopSignals();
    await executor.close();
  }
}

/** The `exec` command. */
export const EXEC_COMMAND: CliCommand = {
  meta: {
    name: "exec",
    description:
      "Run JavaScript in a sandbox whose only way out is the --tool modules' tools; print its result as JSON (logs on stderr)",
  },
  args: EXEC_ARGS,
  run: execCommand,
};
