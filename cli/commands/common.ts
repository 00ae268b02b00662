/**
 * Flags shared by every command, described for `--help`, and the kernel boot they drive.
 * @module
 */

import type { ArgsDef } from "citty";
import { type Booted, bootKernel } from "../boot.ts";
import type { CliEnv } from "../env.ts";
import { allValues } from "../flags.ts";

/** `--plugin`, `--allow`, `--trust`, `--debug`, as citty argument definitions (for help). */
export const COMMON_ARGS = {
  plugin: {
    type: "string",
    valueHint: "path",
    description:
      "Load a local plugin (module or package dir); runs isolated unless trusted. Repeatable",
  },
  allow: {
    type: "string",
    valueHint: "cap",
    description:
      "Grant a capability to the --plugin plugins, or NAME=CAP to one of them. Repeatable",
  },
  trust: {
    type: "string",
    valueHint: "name",
    description: "Run the --plugin plugin NAME in-process instead of isolated. Repeatable",
  },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

/** Boots the kernel the command line describes. */
export function bootFromFlags(env: CliEnv, onDenied: "fail" | "skip"): Promise<Booted> {
  return bootKernel({
    runtime: env.runtime,
    logger: env.logger,
    plugins: allValues(env.flags, "plugin"),
    allow: allValues(env.flags, "allow"),
    trust: allValues(env.flags, "trust"),
    onDenied,
  });
}

/** Disposes a kernel, reporting (not throwing) a failure so it never hides the command's own. */
export async function disposeQuietly(env: CliEnv, booted: Booted): Promise<void> {
  try {
    await booted.kernel.dispose();
  } catch (e) {
    env.out.warn(`Shutting down plugins failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}
