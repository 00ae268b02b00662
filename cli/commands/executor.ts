/**
 * `keel executor serve`: the executor service (`plugins/sandbox/server.ts`), code mode's sidecar
 * for apps that run the sandbox in another process or on another machine. Clients use
 * `createExecutorClient` from `plugins/sandbox/client.ts`; the tools the code calls run in the
 * client, over the client's own request.
 *
 * The API keys come only from `KEEL_EXECUTOR_API_KEY` (comma-separated for several, so keys can
 * be rotated), never from the command line, where `ps` would show them. There is deliberately no
 * way to start without a key: the service runs code for whoever can reach it, and a key costs one
 * `openssl rand -hex 32`. It binds 127.0.0.1 unless `--host` says otherwise, serves plain HTTP
 * (put TLS in front of it to cross a network), and runs until SIGINT or SIGTERM, when it aborts
 * the executions in flight, stops the server and the sandbox, and exits 0.
 * @module
 */

import type { ArgsDef } from "citty";
import { editDistance } from "../../core/edit-distance.ts";
import { KeelError, type Runtime, type SandboxBackend, type Server } from "../../core/mod.ts";
import { createSandbox } from "../../plugins/sandbox/mod.ts";
import { createExecutorApp, EXECUTOR_LIMITS, type ExecutorLimits, MIN_API_KEY_LENGTH } from "../../plugins/sandbox/server.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { allValues, integerFlag, lastValue } from "../flags.ts";
import { untilSignal } from "./signals.ts";

/** The environment variable that holds the API key(s). */
export const API_KEY_ENV = "KEEL_EXECUTOR_API_KEY";

const ACTIONS = ["serve"] as const;
const BACKENDS = ["process", "quickjs"] as const;
const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** One line, for `keel --help`'s list of commands. */
const DESCRIPTION =
  `serve: the executor service, code mode's sidecar: runs untrusted JavaScript for remote callers and routes the tools it calls back to them (API keys from ${API_KEY_ENV})`;

/**
 * What `keel executor --help` says under ACTION. Continuation lines are indented to the column
 * citty puts the description in, so the block reads as one cell.
 */
const ACTION_HELP = [
  "serve: run the executor service until SIGINT/SIGTERM, then abort the executions in flight,",
  "close the server and the sandbox, and exit 0. Clients: createExecutorClient in",
  "plugins/sandbox/client.ts (their tools run in the client, over its own request).",
  "",
  `API keys: ${API_KEY_ENV}=key1[,key2,...] in the environment, each at least ${MIN_API_KEY_LENGTH}`,
  "characters (e.g. `openssl rand -hex 32`); never on the command line, where ps shows it.",
  "Without one it refuses to start (E_CLI_USAGE): there is no unauthenticated mode.",
  "",
  "Routes: GET /health and GET /ready (no auth); POST /v1/execute with",
  "Authorization: Bearer <key> (or x-api-key) and { code, tools?, context?, timeoutMs?,",
  "memoryMb?, maxToolCalls? }: the result as JSON, or, when tools are declared, NDJSON lines",
  "(tool_call ..., then result) whose calls the client answers with",
  "POST /v1/executions/<id>/tool-results. Errors are { error: { code, message } }: 401 key,",
  "400 bad request, 408 slow body, 413 body too large, 503 busy (Retry-After).",
  "x-correlation-id becomes the execution's correlation id and is echoed on every response.",
].join("\n" + " ".repeat(12));

const EXECUTOR_ARGS = {
  action: { type: "positional", description: ACTION_HELP, required: true },
  port: { type: "string", valueHint: "port", description: "The port to listen on (default a free one; the URL is printed)" },
  host: {
    type: "string",
    valueHint: "host",
    description: "The address to bind (default 127.0.0.1; anything else lets other machines in: put TLS in front)",
  },
  backend: {
    type: "string",
    valueHint: "kind",
    description: '"process" (default: a pool of no-permission Deno processes with SES) or "quickjs" (WebAssembly, no processes)',
  },
  "max-processes": { type: "string", valueHint: "n", description: "process backend: sandbox processes at most (default the CPU count, 2..8)" },
  "max-body": { type: "string", valueHint: "bytes", description: `The largest request body; over it, 413 (default ${EXECUTOR_LIMITS.maxBodyBytes})` },
  "max-timeout": {
    type: "string",
    valueHint: "ms",
    description: `The most timeoutMs a request may ask for; over it, 400 (default ${EXECUTOR_LIMITS.maxTimeoutMs})`,
  },
  "max-concurrent": {
    type: "string",
    valueHint: "n",
    description: `Executions at once; past it, 503 E_SANDBOX_BUSY with Retry-After (default ${EXECUTOR_LIMITS.maxConcurrent})`,
  },
  json: { type: "boolean", description: 'Print { "url": ... } on stdout once listening (a line with the URL goes to stderr either way)' },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

/** The API keys from the environment; a usage error (naming no key) when there is none or one is unfit. */
export function apiKeysFromEnv(runtime: Runtime): string[] {
  const raw = runtime.env.get(API_KEY_ENV) ?? "";
  const keys = raw.split(",").map((k) => k.trim()).filter((k) => k !== "");
  if (keys.length === 0) {
    throw usage(
      `keel executor serve needs an API key: set ${API_KEY_ENV} (comma-separated for several), e.g. ${API_KEY_ENV}=$(openssl rand -hex 32) keel executor serve`,
    );
  }
  keys.forEach((key, i) => {
    if (key.length < MIN_API_KEY_LENGTH || !/^[\x21-\x7e]+$/.test(key)) {
      throw usage(
        `Key ${i + 1} of ${API_KEY_ENV} is ${key.length < MIN_API_KEY_LENGTH ? `${key.length} characters long` : "not printable ASCII without spaces"}; use random keys of at least ${MIN_API_KEY_LENGTH} characters, e.g. $(openssl rand -hex 32)`,
      );
    }
  });
  return keys;
}

function limitsFromFlags(env: CliEnv): Partial<ExecutorLimits> {
  const maxBodyBytes = integerFlag(env.flags, "max-body");
  const maxTimeoutMs = integerFlag(env.flags, "max-timeout");
  const maxConcurrent = integerFlag(env.flags, "max-concurrent");
  return {
    ...(maxBodyBytes === undefined ? {} : { maxBodyBytes }),
    ...(maxTimeoutMs === undefined ? {} : { maxTimeoutMs }),
    ...(maxConcurrent === undefined ? {} : { maxConcurrent }),
  };
}

async function serve(env: CliEnv): Promise<void> {
  const { runtime, flags } = env;
  if (runtime.serve === undefined) throw new KeelError("E_RUNTIME_UNSUPPORTED", `keel executor serve needs a runtime that can serve HTTP; ${runtime.name} cannot`);
  for (const flag of ["plugin", "allow", "trust"]) {
    if (allValues(flags, flag).length > 0) throw usage(`keel executor serve takes no --${flag}: the tools are the callers'`);
  }
  const backendKind = lastValue(flags, "backend") ?? "process";
  if (!(BACKENDS as readonly string[]).includes(backendKind)) {
    throw usage(`--backend takes ${BACKENDS.map((b) => `"${b}"`).join(" or ")}; got "${backendKind}"`);
  }
  const hostname = lastValue(flags, "host") ?? "127.0.0.1";
  const port = integerFlag(flags, "port", 0) ?? 0;
  if (port > 65_535) throw usage(`--port takes 0 to 65535, got ${port}`);
  const maxProcesses = integerFlag(flags, "max-processes");
  if (maxProcesses !== undefined && backendKind !== "process") throw usage('--max-processes is for --backend "process"');
  const limits = limitsFromFlags(env);
  const apiKeys = apiKeysFromEnv(runtime);

  const backend: SandboxBackend = await createSandbox({
    runtime,
    backend: backendKind as (typeof BACKENDS)[number],
    logger: env.logger,
    ...(maxProcesses === undefined ? {} : { maxProcesses }),
  });
  const signals = untilSignal(runtime);
  const app = createExecutorApp({ backend, apiKeys, limits, logger: env.logger });
  let server: Server | undefined;
  try {
    server = await runtime.serve(app.fetch, { hostname, port });
    if (!LOOPBACK.has(hostname)) {
      env.out.warn(`Listening on ${hostname}: other machines can reach this executor; only the API key guards it, and HTTP is plain: put TLS in front`);
    }
    env.out.success(`Executor listening on ${server.url} (sandbox "${backend.name}", ${apiKeys.length} API key(s)); Ctrl-C to stop`);
    if (flags.booleans.has("json")) await runtime.writeStdout(JSON.stringify({ url: server.url }) + "\n");
    void app.warmUp().then((ok) => {
      if (ok) env.logger.info(`Sandbox "${backend.name}" is ready`);
    });
    const sig = await signals.done;
    env.out.info(`${sig}: stopping the executor (${app.inFlight} execution(s) in flight are aborted)`);
  } finally {
    signals.stop();
    await app.close();
    await server?.close();
    await backend.close();
  }
}

async function executorCommand(env: CliEnv): Promise<void> {
  const [, action, ...extra] = env.flags.positionals;
  if (action === undefined) throw usage(`keel executor needs an action: keel executor serve (with ${API_KEY_ENV} set)`);
  if (!(ACTIONS as readonly string[]).includes(action)) {
    const near = ACTIONS.find((a) => editDistance(a, action) <= 2);
    throw usage(`keel executor has no action "${action}"` + (near ? `; did you mean "${near}"?` : `; use ${ACTIONS.join(", ")}`));
  }
  if (extra.length > 0) throw usage(`keel executor serve takes no arguments, got ${extra.map((e) => `"${e}"`).join(", ")}`);
  await serve(env);
}

/** The `executor` command. */
export const EXECUTOR_COMMAND: CliCommand = {
  meta: { name: "executor", description: DESCRIPTION },
  args: EXECUTOR_ARGS,
  run: executorCommand,
};
