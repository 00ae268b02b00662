/**
 * DAG workflows, Gleitzeit-compatible: parse YAML/JSON, validate the graph and the protocols
 * (every problem at once, each coded), run tasks as soon as their own dependencies succeed, with
 * `${task.path}` substitution, retries with backoff, timeouts and batch fan-out over files, and
 * record every transition in a {@link Store} so a crashed run can be resumed.
 *
 * @example
 * ```ts
 * import { createMemoryStore, createWorkflowEngine } from "./mod.ts";
 *
 * const math = {
 *   protocol: "mcp/v1",
 *   methods: ["mcp/tool.add", "mcp/tool.multiply"],
 *   execute: async ({ method, params }: { method: string; params: Readonly<Record<string, unknown>> }) => {
 *     const a = Number(params.a), b = Number(params.b);
 *     return { result: method === "mcp/tool.add" ? a + b : a * b };
 *   },
 * };
 * const engine = createWorkflowEngine({ store: createMemoryStore(), resolveExecutor: async () => math });
 * const run = await engine.run(`
 * name: demo
 * tasks:
 *   - id: sum
 *     method: mcp/tool.add
 *     parameters: { a: 42, b: 58 }
 *   - id: product
 *     method: mcp/tool.multiply
 *     dependencies: [sum]
 *     parameters: { a: "\${sum.result}", b: 2 }
 * `);
 * const summary = await run.done;
 * if (summary.status !== "succeeded") throw new Error(summary.error?.message);
 * if ((summary.results.product as { result: number }).result !== 200) throw new Error("wrong product");
 * ```
 * @module
 */

export * from "./definition.ts";
export * from "./engine.ts";
export * from "./memory-store.ts";
export * from "./parse.ts";
export * from "./store.ts";
export * from "./substitute.ts";
export * from "./validate.ts";
