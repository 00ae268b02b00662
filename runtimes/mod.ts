/**
 * Picks the Runtime adapter for the host this code runs on.
 *
 * Each adapter is loaded with a dynamic import, so Bun never evaluates Deno-specific code and
 * Deno never evaluates Bun-specific code (`bun:sqlite` does not exist on Deno, nor `Deno.*` on Bun).
 *
 * @example
 * ```ts
 * import { detectRuntime } from "./mod.ts";
 * const runtime = await detectRuntime();
 * console.log(runtime.name, runtime.version);
 * ```
 * @module
 */

import { KeelError } from "../core/errors.ts";
import type { Runtime } from "../core/runtime.ts";

export type { Runtime } from "../core/runtime.ts";

/**
 * Returns the Runtime for the current host (Deno or Bun).
 * @throws {KeelError} `E_RUNTIME_UNSUPPORTED` on any other host.
 */
export async function detectRuntime(): Promise<Runtime> {
  const host = globalThis as { Deno?: unknown; Bun?: unknown };
  if (host.Deno !== undefined) {
    const { createDenoRuntime } = await import("./deno/mod.ts");
    return createDenoRuntime();
  }
  if (host.Bun !== undefined) {
    const { createBunRuntime } = await import("./bun/mod.ts");
    return createBunRuntime();
  }
  throw new KeelError(
    "E_RUNTIME_UNSUPPORTED",
    "This host is neither Deno nor Bun: run Keel with Deno (2.x) or Bun (1.x), or pass a Runtime to createKernel() yourself",
  );
}
