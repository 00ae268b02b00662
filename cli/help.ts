/**
 * `keel --help` and `keel <command> --help`, rendered by citty. Loaded only for help: citty
 * imports `node:util`, which boots Deno's Node compatibility layer.
 * @module
 */

import { type CommandDef, renderUsage } from "citty";
import { COMMON_ARGS } from "./commands/args.ts";
import type { CliCommand } from "./env.ts";
import { PACKAGE_VERSION } from "./version.ts";

const ROOT_EXAMPLES = `

EXAMPLES

  keel run examples/hello/hello.ts --set name=Ada     run a script, overriding a param
  keel run script.ts --json                           print { ok, result, runId, durationMs }
  keel run train.ts --sweep lr=0.1,0.01 --sweep bs=range(32,129,32) --parallel 2
                                                      a grid sweep, two runs at a time
  keel run train.ts --config sweep.ts --dry-run       print the configs a config file makes
  keel flow sequential prepare.ts train.ts            train.ts gets prepare's result (ctx.previous)
  keel runs list                                      recorded runs (.keel/runs/), newest first
  keel runs show 20261121-204512-ab12cd               one run: config, result, output
  keel config check train.ts --config sweep.ts        config keys vs the script's params
  keel plugins --plugin ./my-plugin --allow net:api.example.com:443
                                                      load a plugin isolated, grant it one host
  keel run script.ts --plugin ./p.ts --trust p        run plugin "p" in-process (full trust)
`;

/** Removes ANSI color escapes. */
export function stripAnsi(text: string): string {
  // deno-lint-ignore no-control-regex -- ANSI escapes start with ESC
  return text.replace(/\u001b\[[0-9;]*m/g, "");
}

/**
 * The help text for the whole CLI (`command` undefined) or for one command, with colors when
 * `colors` is true, and no trailing blanks.
 */
export async function renderHelp(
  commands: Readonly<Record<string, CliCommand>>,
  options: { command?: string | undefined; colors: boolean },
): Promise<string> {
  const subCommands: Record<string, CommandDef> = {};
  for (const [name, command] of Object.entries(commands)) {
    subCommands[name] = { meta: command.meta, args: command.args };
  }
  const root: CommandDef = {
    meta: {
      name: "keel",
      version: PACKAGE_VERSION,
      description: "Keel: a small kernel that runs scripts and capability-checked plugins",
    },
    args: {
      ...COMMON_ARGS,
      version: { type: "boolean", description: "Print the keel, kernel and runtime versions" },
    },
    subCommands,
  };
  const sub = options.command === undefined ? undefined : subCommands[options.command];
  const text = sub === undefined
    ? (await renderUsage(root)) + ROOT_EXAMPLES
    : await renderUsage(sub, root);
  return (options.colors ? text : stripAnsi(text)).replace(/[ \t]+$/gm, "");
}
