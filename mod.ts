/**
 * Keel: a Deno/Bun-first scriptable runtime for ML and AI work.
 *
 * ```ts
 * import { createKernel, definePlugin } from "./mod.ts";
 * const kernel = await createKernel({
 *   plugins: [definePlugin({ name: "hello", version: "1.0.0", kernel: "^1", setup: () => ({}) })],
 * });
 * await kernel.dispose();
 * ```
 * @module
 */

export * from "./core/mod.ts";
