/**
 * Waiting for Ctrl-C: the long-running commands (`keel executor serve`, `keel mcp serve`,
 * `keel registry serve`) run until the first SIGINT or SIGTERM, then shut down cleanly.
 * @module
 */

import type { Runtime } from "../../core/mod.ts";

/** Resolves with the first SIGINT or SIGTERM (never, where the host has no signals); `stop` removes the handlers. */
export function untilSignal(runtime: Runtime): { done: Promise<string>; stop: () => void } {
  const stops: (() => void)[] = [];
  const done = new Promise<string>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const stop = runtime.onSignal?.(sig, () => resolve(sig));
      if (stop) stops.push(stop);
    }
  });
  return { done, stop: () => stops.forEach((s) => s()) };
}
