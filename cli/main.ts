/**
 * The `keel` command line: `keel --version`, `keel --help`, `keel plugins`, `keel run <script>`.
 *
 * Runs on Deno (`deno task keel`, the `./keel` launcher) and on Bun (`bun cli/main.ts`); the
 * runtime adapter is picked with `detectRuntime()`. Exit codes: 0 ok, 1 an error (a KeelError
 * prints `✖ <message>` and `code: E_...`), 2 a usage error.
 * @module
 */

import process from "node:process";
import type { CommandDef } from "citty";
// Only what `keel --version` needs is imported up front; commands, citty and consola load on
// demand, which keeps `keel --version` close to a bare `deno run`.
import { editDistance } from "../core/capabilities.ts";
import { KeelError } from "../core/errors.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import type { CliEnv } from "./env.ts";
import { COMMAND_FLAGS, COMMON_FLAGS, parseFlags, PLUGINS_FLAGS, RUN_FLAGS } from "./flags.ts";
import { PACKAGE_VERSION, versionLine } from "./version.ts";

const ROOT_EXAMPLES = `

EXAMPLES

  keel run examples/hello/hello.ts --set name=Ada     run a script, overriding a param
  keel run script.ts --json                           print { ok, result, runId, durationMs }
  keel plugins --plugin ./my-plugin --allow net:api.example.com:443
                                                      load a plugin isolated, grant it one host
  keel run script.ts --plugin ./p.ts --trust p        run plugin "p" in-process (full trust)
`;

function stdoutColors(): boolean {
  const noColor = process.env.NO_COLOR;
  return process.stdout.isTTY === true && (noColor === undefined || noColor === "");
}

function stripAnsi(text: string): string {
  // deno-lint-ignore no-control-regex -- ANSI escapes start with ESC
  return text.replace(/\u001b\[[0-9;]*m/g, "");
}

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

async function createRoot(
  env: CliEnv,
): Promise<{ root: CommandDef; commands: Record<string, CommandDef> }> {
  const [{ defineCommand }, { createRunCommand }, { createPluginsCommand }, { COMMON_ARGS }] =
    await Promise.all([
      import("citty"),
      import("./commands/run.ts"),
      import("./commands/plugins.ts"),
      import("./commands/common.ts"),
    ]);
  // citty types each command by its own arguments; the dispatcher only needs the common shape.
  const commands = {
    run: createRunCommand(env) as unknown as CommandDef,
    plugins: createPluginsCommand(env) as unknown as CommandDef,
  };
  const root = defineCommand({
    meta: {
      name: "keel",
      version: PACKAGE_VERSION,
      description: "Keel: a small kernel that runs scripts and capability-checked plugins",
    },
    args: {
      ...COMMON_ARGS,
      version: { type: "boolean", description: "Print the keel, kernel and runtime versions" },
    },
    subCommands: commands,
  }) as unknown as CommandDef;
  return { root, commands };
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

/** Writes to stdout and resolves once the text is handed to the OS (safe to exit after). */
function writeStdout(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (error) => (error ? reject(error) : resolve()));
  });
}

/**
 * Runs the CLI with `argv` (without the program name) and returns the exit code. Never throws:
 * errors are printed.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const envDebug = process.env.KEEL_DEBUG;
  let debug = argv.includes("--debug") ||
    (envDebug !== undefined && envDebug !== "" && envDebug !== "0");
  let json = false;
  try {
    // A first pass only finds the command; the second checks its flags strictly.
    const loose = parseFlags(argv, { ...COMMON_FLAGS, ...RUN_FLAGS, ...PLUGINS_FLAGS });
    const command = pickCommand(loose.positionals[0]);
    const flags = parseFlags(argv, {
      ...COMMON_FLAGS,
      ...(command === undefined ? {} : COMMAND_FLAGS[command]),
    });
    debug ||= flags.booleans.has("debug");
    json = flags.booleans.has("json");
    const runtime = await detectRuntime();
    if (flags.booleans.has("version")) {
      await writeStdout(versionLine(runtime) + "\n");
      return 0;
    }

    const [{ renderUsage, runCommand }, output] = await Promise.all([
      import("citty"),
      import("./output.ts"),
    ]);
    const out = output.createCliConsola({ debug });
    const env: CliEnv = {
      runtime,
      out,
      logger: output.createConsolaLogger(out, {}, debug),
      flags,
      debug,
    };
    const { root, commands } = await createRoot(env);
    if (flags.booleans.has("help") || command === undefined) {
      const text = command === undefined
        ? (await renderUsage(root)) + ROOT_EXAMPLES
        : await renderUsage(commands[command]!, root);
      await writeStdout((stdoutColors() ? text : stripAnsi(text)).replace(/[ \t]+$/gm, "") + "\n");
      if (command === undefined && argv.length > 0 && !flags.booleans.has("help")) {
        throw usage("Name a command: keel run <script> or keel plugins");
      }
      return 0;
    }
    if (command === "run" && flags.positionals.length < 2) {
      throw usage("keel run needs a script, as in: keel run examples/hello/hello.ts");
    }
    const at = flags.positionalIndexes[0]!;
    try {
      await runCommand(commands[command]!, {
        rawArgs: [...argv.slice(0, at), ...argv.slice(at + 1)],
      });
    } catch (e) {
      // citty reports its own argument errors (a missing positional) as CLIError.
      if (e instanceof Error && e.name === "CLIError") {
        throw usage(`${stripAnsi(e.message)} (keel ${command} --help)`);
      }
      throw e;
    }
    return 0;
  } catch (e) {
    const output = await import("./output.ts");
    output.reportError(output.createCliConsola({ debug }), e, { debug });
    if (json) {
      const error = KeelError.is(e)
        ? e.toJSON()
        : { name: "Error", message: e instanceof Error ? e.message : String(e) };
      await writeStdout(JSON.stringify({ ok: false, error }) + "\n").catch(() => {});
    }
    return output.exitCodeFor(e);
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
