/**
 * The Keel kernel: plugins, capabilities, hooks, services, errors and the ports (Runtime,
 * Logger, Executor) that hosts implement. Web-standard only: no `Deno`, `Bun`, `process` or
 * `node:*`, so it runs on Deno, Bun, Node and edge runtimes alike.
 * @module
 */

export * from "./capabilities.ts";
export * from "./config.ts";
export * from "./context.ts";
export * from "./errors.ts";
export * from "./executor.ts";
export * from "./hooks.ts";
export * from "./isolation.ts";
export * from "./kernel.ts";
export * from "./logger.ts";
export * from "./manifest.ts";
export * from "./path.ts";
export * from "./plugin.ts";
export * from "./runs/mod.ts";
export * from "./runtime.ts";
export * from "./runtime-support.ts";
export * from "./sandbox/mod.ts";
export * from "./services.ts";
export * from "./supervise.ts";
export * from "./sweep.ts";
export * from "./tools/mod.ts";
export * from "./training.ts";
export * from "./workflow/mod.ts";
