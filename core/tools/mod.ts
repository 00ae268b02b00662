/**
 * Tools for code mode: a registry of named functions with JSON Schemas (validated on the way in
 * and out, with a frozen runtime context), TypeScript declarations of them for a model's prompt,
 * and {@link normalizeCode} to shape model-written code into one callable function expression.
 *
 * The sandbox that runs that code, and `kernel.execute`, build on these; this module has no
 * runtime dependency, so it works on Deno, Bun, Node and edge hosts.
 *
 * @example
 * ```ts
 * import { createToolRegistry, generateDeclarations, KeelError, normalizeCode } from "../mod.ts";
 *
 * const tools = createToolRegistry();
 * tools.register({
 *   name: "weather",
 *   description: "Current weather for a city",
 *   inputSchema: {
 *     type: "object",
 *     properties: { city: { type: "string", minLength: 1 }, units: { enum: ["c", "f"] } },
 *     required: ["city"],
 *     additionalProperties: false,
 *   },
 *   outputSchema: { type: "object", properties: { temp: { type: "number" } }, required: ["temp"] },
 *   run: (input: { city: string }, { context }) => ({ temp: input.city === "Oslo" ? 4 : 20, user: context.userId }),
 * });
 *
 * const out = await tools.call("weather", { city: "Oslo" }, { context: { userId: "u1" } });
 * if ((out as { temp: number }).temp !== 4) throw new Error("wrong temperature");
 *
 * try {
 *   await tools.call("weather", { city: "", units: "k" });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!KeelError.is(e, "E_TOOL_INPUT_INVALID")) throw e;
 *   const paths = (e.details?.issues as { path: string }[]).map((i) => i.path);
 *   if (paths.join() !== "/city,/units") throw new Error(paths.join());
 * }
 *
 * const prompt = generateDeclarations(tools);
 * if (!prompt.includes('weather(input: { city: string; units?: "c" | "f" }): Promise<{ temp: number }>;')) {
 *   throw new Error(prompt);
 * }
 * const fence = "`".repeat(3);
 * if (normalizeCode(`${fence}js\nreturn 2 + 2\n${fence}`) !== "async () => {\nreturn 2 + 2\n}") throw new Error("normalize");
 * ```
 * @module
 */

export * from "./declarations.ts";
export * from "./json-schema.ts";
export * from "./normalize.ts";
export * from "./registry.ts";
