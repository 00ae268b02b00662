/**
 * Flags shared by every command, described for `--help`, and the kernel boot they drive.
 * @module
 */

import { type Booted, bootKernel } from "../boot.ts";
import type { CliEnv } from "../env.ts";
import { allValues } from "../flags.ts";

export { COMMON_ARGS } from "./args.ts";

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
