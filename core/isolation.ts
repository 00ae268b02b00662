/**
 * Isolated plugins: each runs in its own `deno run` subprocess with permission flags generated
 * from its grant; hooks are called over JSON lines on stdio.
 * @module
 */

import type { Grant } from "./capabilities.ts";
import { KeelError } from "./errors.ts";
import type { Logger } from "./logger.ts";
import type { HookName, IsolatedPluginSpec } from "./plugin.ts";
import type { Runtime } from "./runtime.ts";

/** What {@link startIsolatedPlugin} needs. */
export interface IsolationOptions {
  readonly runtime: Runtime;
  /** The capabilities the plugin holds (its requested ones, all granted). */
  readonly grant: Grant;
  readonly logger: Logger;
}

/** A running isolated plugin. */
export interface IsolatedHandle {
  readonly pid: number;
  /** Hooks its setup returned. */
  readonly hooks: readonly HookName[];
  /** Calls a hook in the subprocess; arguments and result cross as JSON. */
  call(hook: HookName, args: readonly unknown[]): Promise<unknown>;
  /** Runs the plugin's dispose hook (bounded by the time limit) and stops the process. */
  close(): Promise<void>;
}

/** Starts an isolated plugin and runs its setup. */
export function startIsolatedPlugin(spec: IsolatedPluginSpec, _options: IsolationOptions): Promise<IsolatedHandle> {
  return Promise.reject(new KeelError("E_RUNTIME_UNSUPPORTED", `Isolation for "${spec.manifest.name}" is being built`));
}
