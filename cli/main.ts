/**
 * The `keel` command line: `keel --version`, `keel --help`, `keel run <script>` (one run or a
 * sweep), `keel flow sequential|parallel <scripts...>`, `keel runs list|show`, `keel config
 * show|validate|check`, `keel plugins`, `keel workflow run|validate|status|list|resume`, `keel exec`
 * (code mode), `keel executor serve`, `keel mcp serve`, `keel registry serve|token`, `keel add`
 * / `keel remove` (plugins from a registry, recorded in `keel.lock`), and `keel publish`,
 * `keel search`, `keel info`, `keel login` (the npm protocol, thin), and `keel train <config>`
 * (the WebGPU/CPU trainer).
 *
 * Runs on Deno (`deno task keel`, the `./keel` launcher) and on Bun (`bun cli/main.ts`); the
 * runtime adapter is picked with `detectRuntime()`. Exit codes: 0 ok, 1 an error (a KeelError
 * prints `✖ <message>` and `code: E_...`), 2 a usage error (or what an error's
 * `details.exitCode` says, as `keel config check` does for a missing script).
 *
 * Start-up is kept close to a bare `deno run`: everything goes through the Runtime port (no
 * `node:process`, which boots Deno's Node compatibility layer), `keel --version` loads only
 * this file, `flags.ts`, `version.ts` and the runtime adapter, and each command, the output
 * and citty (for help only) load on demand.
 * @module
 */

import { editDistance } from "../core/edit-distance.ts";
import { KeelError } from "../core/errors.ts";
import type { Runtime } from "../core/runtime.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import type { CliCommand, CliEnv } from "./env.ts";
import { ALL_FLAGS, COMMAND_FLAGS, COMMON_FLAGS, parseFlags } from "./flags.ts";
import { versionLine } from "./version.ts";

type OutputModule = typeof import("./output.ts");
type HelpModule = typeof import("./help.ts");
type RunModule = typeof import("./commands/run.ts");
type FlowModule = typeof import("./commands/flow.ts");
type RunsModule = typeof import("./commands/runs.ts");
type ConfigModule = typeof import("./commands/config.ts");
type PluginsModule = typeof import("./commands/plugins.ts");
type WorkflowModule = typeof import("./commands/workflow.ts");
type ExecModule = typeof import("./commands/exec.ts");
type ExecutorModule = typeof import("./commands/executor.ts");
type McpModule = typeof import("./commands/mcp.ts");
type RegistryModule = typeof import("./commands/registry.ts");
type AddModule = typeof import("./commands/add.ts");
type RemoveModule = typeof import("./commands/remove.ts");
type PublishModule = typeof import("./commands/publish.ts");
type SearchModule = typeof import("./commands/search.ts");
type InfoModule = typeof import("./commands/info.ts");
type LoginModule = typeof import("./commands/login.ts");
type TrainModule = typeof import("./commands/train.ts");

/**
 * Imports a module of the CLI when it is first needed. The specifier is computed on purpose:
 * Deno loads the whole graph behind every literal `import("...")` before the program starts
 * (about 2 ms here, for the kernel and citty), even when the branch never runs. The price is
 * that Deno asks for read access to these files, which every way of starting Keel grants (and
 * without which an error is still reported, as a plain line).
 */
function load<T>(path: string): Promise<T> {
  return import(new URL(path, import.meta.url).href) as Promise<T>;
}

/** Loads each command on demand; the keys are those of `COMMAND_FLAGS`. */
const COMMANDS: Readonly<Record<string, () => Promise<CliCommand>>> = {
  run: async () => (await load<RunModule>("./commands/run.ts")).RUN_COMMAND,
  flow: async () => (await load<FlowModule>("./commands/flow.ts")).FLOW_COMMAND,
  runs: async () => (await load<RunsModule>("./commands/runs.ts")).RUNS_COMMAND,
  config: async () => (await load<ConfigModule>("./commands/config.ts")).createConfigCommand(),
  plugins: async () => (await load<PluginsModule>("./commands/plugins.ts")).PLUGINS_COMMAND,
  workflow: async () => (await load<WorkflowModule>("./commands/workflow.ts")).WORKFLOW_COMMAND,
  exec: async () => (await load<ExecModule>("./commands/exec.ts")).EXEC_COMMAND,
  executor: async () => (await load<ExecutorModule>("./commands/executor.ts")).EXECUTOR_COMMAND,
  mcp: async () => (await load<McpModule>("./commands/mcp.ts")).MCP_COMMAND,
  registry: async () => (await load<RegistryModule>("./commands/registry.ts")).REGISTRY_COMMAND,
  add: async () => (await load<AddModule>("./commands/add.ts")).ADD_COMMAND,
  remove: async () => (await load<RemoveModule>("./commands/remove.ts")).REMOVE_COMMAND,
  publish: async () => (await load<PublishModule>("./commands/publish.ts")).PUBLISH_COMMAND,
  search: async () => (await load<SearchModule>("./commands/search.ts")).SEARCH_COMMAND,
  info: async () => (await load<InfoModule>("./commands/info.ts")).INFO_COMMAND,
  login: async () => (await load<LoginModule>("./commands/login.ts")).LOGIN_COMMAND,
  train: async () => (await load<TrainModule>("./commands/train.ts")).TRAIN_COMMAND,
};

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

/** The exit code for an error: its `details.exitCode`, else 2 for usage errors, else 1. */
function exitCodeFor(e: unknown): number {
  const code = KeelError.is(e) ? e.details?.exitCode : undefined;
  if (typeof code === "number" && Number.isInteger(code) && code > 0 && code < 256) return code;
  return KeelError.is(e, "E_CLI_USAGE") ? 2 : 1;
}

/** Which command the positionals name, or a usage error with a suggestion. */
function pickCommand(name: string | undefined): string | undefined {
  if (name === undefined || Object.hasOwn(COMMAND_FLAGS, name)) return name;
  const near = Object.keys(COMMAND_FLAGS).find((c) => editDistance(c, name) <= 2);
  throw usage(
    `Unknown command "${name}"` +
      (near
        ? `; did you mean "${near}"?`
        : `; commands are ${Object.keys(COMMAND_FLAGS).join(", ")}`),
  );
}

async function loadCommands(): Promise<Record<string, CliCommand>> {
  const names = Object.keys(COMMANDS);
  const loaded = await Promise.all(names.map((name) => COMMANDS[name]!()));
  return Object.fromEntries(names.map((name, i) => [name, loaded[i]!]));
}

/**
 * Runs the CLI with `argv` (without the program name) and returns the exit code. Never throws:
 * errors are printed. `runtime` defaults to the host's (`detectRuntime()`).
 */
export async function main(argv: readonly string[], runtime?: Runtime): Promise<number> {
  let host: Runtime;
  try {
    host = runtime ?? await detectRuntime();
  } catch (e) {
    // No runtime, so no writeStderr: the console is all there is.
    console.error(`✖ ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
  const envDebug = host.env.get("KEEL_DEBUG");
  let debug = argv.includes("--debug") ||
    (envDebug !== undefined && envDebug !== "" && envDebug !== "0");
  let json = false;
  try {
    // A first pass only finds the command; the second checks its flags strictly.
    const loose = parseFlags(argv, ALL_FLAGS);
    const command = pickCommand(loose.positionals[0]);
    const flags = parseFlags(argv, {
      ...COMMON_FLAGS,
      ...(command === undefined ? {} : COMMAND_FLAGS[command]),
    });
    debug ||= flags.booleans.has("debug");
    json = flags.booleans.has("json");
    if (flags.booleans.has("version")) {
      await host.writeStdout(versionLine(host) + "\n");
      return 0;
    }

    if (flags.booleans.has("help") || command === undefined) {
      const [{ renderHelp }, { colorsWanted }, commands] = await Promise.all([
        load<HelpModule>("./help.ts"),
        load<OutputModule>("./output.ts"),
        loadCommands(),
      ]);
      const text = await renderHelp(commands, {
        command,
        colors: colorsWanted(host, "stdout"),
      });
      await host.writeStdout(text + "\n");
      if (command === undefined && argv.length > 0 && !flags.booleans.has("help")) {
        throw usage(
          "Name a command: keel run <script>, keel flow, keel runs, keel config or keel plugins",
        );
      }
      return 0;
    }

    const [output, cliCommand] = await Promise.all([
      load<OutputModule>("./output.ts"),
      COMMANDS[command]!(),
    ]);
    const out = output.createCliOutput(host, { debug });
    const env: CliEnv = {
      runtime: host,
      out,
      logger: output.createCliLogger(out, {}, debug),
      flags,
      debug,
    };
    await cliCommand.run(env);
    return 0;
  } catch (e) {
    const output = await load<OutputModule>("./output.ts").catch(() => undefined);
    if (output === undefined) {
      // Deno refused the import (no read access): the message still gets out, plainly.
      host.writeStderr(`✖ ${e instanceof Error ? e.message : String(e)}\n`);
    } else {
      output.reportError(output.createCliOutput(host, { debug }), e, { debug });
    }
    // A command that already printed its JSON (a sweep's summary line) says so in the error.
    if (json && !(KeelError.is(e) && e.details?.reported === true)) {
      const error = KeelError.is(e)
        ? e.toJSON()
        : { name: "Error", message: e instanceof Error ? e.message : String(e) };
      await host.writeStdout(JSON.stringify({ ok: false, error }) + "\n").catch(() => {});
    }
    return exitCodeFor(e);
  }
}

if (import.meta.main) {
  const runtime = await detectRuntime();
  const code = await main(runtime.args, runtime);
  // A host without `exit` (none that runs this file today) ends when nothing is left to do.
  runtime.exit?.(code);
}
