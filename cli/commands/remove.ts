/**
 * `keel remove <name>`: uninstalls a plugin `keel add` installed in the current folder: its
 * entry leaves keel.lock and its `.keel/plugins/<name>/` folder is deleted (keel.lock itself,
 * when no plugin is left in it).
 * @module
 */

import type { ArgsDef } from "citty";
import { KeelError } from "../../core/mod.ts";
import { removePlugin } from "../../registry/install.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { allValues } from "../flags.ts";

const REMOVE_ARGS = {
  name: { type: "positional", description: "The plugin's name, as keel.lock records it (e.g. @acme/plugin)", required: true },
  json: { type: "boolean", description: "Print what was removed as JSON on stdout" },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

async function removeCommand(env: CliEnv): Promise<void> {
  const { runtime, flags } = env;
  const [, name, ...extra] = flags.positionals;
  if (name === undefined) throw usage("keel remove needs a plugin name, as in: keel remove @acme/plugin");
  if (extra.length > 0) throw usage(`keel remove takes one plugin at a time; got ${[name, ...extra].map((s) => `"${s}"`).join(", ")}`);
  for (const flag of ["plugin", "allow", "trust"]) {
    if (allValues(flags, flag).length > 0) throw usage(`keel remove takes no --${flag}`);
  }
  // A version after the name ("@acme/plugin@1.0.0") names the same plugin.
  const at = name.indexOf("@", 1);
  const result = await removePlugin({ runtime, dir: runtime.cwd(), name: at < 0 ? name : name.slice(0, at), logger: env.logger });
  if (flags.booleans.has("json")) {
    await runtime.writeStdout(JSON.stringify({ ok: true, ...result }) + "\n");
    return;
  }
  env.out.success(`Removed ${result.name}@${result.version}${result.lockfileRemoved ? " (no plugin left: keel.lock deleted)" : ""}`);
}

/** The `remove` command. */
export const REMOVE_COMMAND: CliCommand = {
  meta: { name: "remove", description: "Uninstall a plugin keel add installed: its keel.lock entry and its files" },
  args: REMOVE_ARGS,
  run: removeCommand,
};
