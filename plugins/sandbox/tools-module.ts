/**
 * The tools-module format `keel exec --tool` and `keel mcp serve --tool` load: an ES module whose
 * default export is a tool definition, an array of them, or a function (sync or async) returning
 * one or an array, and/or whose named export `tools` is an array of them.
 *
 * ```ts ignore
 * // tools.ts
 * export default [{
 *   name: "add",
 *   description: "Adds two numbers",
 *   inputSchema: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } }, required: ["a", "b"] },
 *   run: ({ a, b }: { a: number; b: number }) => a + b,
 * }];
 * ```
 *
 * Importing the module is the host's job (a dynamic `import()`); this file only reads what the
 * module exports, so it runs on any runtime.
 * @module
 */

import { errorMessage, KeelError, type ToolDefinition, type ToolRegistry } from "../../core/mod.ts";

/** A module already imported, with where it came from (for messages). */
export interface ToolModule {
  /** The path or URL it was imported from, as the user wrote it. */
  readonly source: string;
  /** The module namespace object `import()` resolved to. */
  readonly namespace: unknown;
}

const FORMAT = 'export default a tool ({ name, description, inputSchema, run }), an array of tools, or a function returning either; or export const tools = [...]';

function invalid(source: string, what: string): KeelError {
  return new KeelError("E_CONFIG_INVALID", `Tool module "${source}" ${what}; ${FORMAT}`, { details: { source } });
}

function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** Checks the shape a tool definition needs before the registry checks its name and schemas. */
function asTool(value: unknown, source: string, where: string): ToolDefinition {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid(source, `has ${describeValue(value)} at ${where} where a tool definition was expected`);
  }
  // The name and the schemas are the registry's to check (E_TOOL_NAME_INVALID, E_TOOL_SCHEMA_INVALID).
  const tool = value as Partial<ToolDefinition>;
  const label = typeof tool.name === "string" ? `tool "${tool.name}" (${where})` : where;
  if (typeof tool.description !== "string") throw invalid(source, `has no string "description" for ${label}`);
  if (typeof tool.run !== "function") throw invalid(source, `has no "run" function for ${label}`);
  return value as ToolDefinition;
}

function asTools(value: unknown, source: string, where: string): ToolDefinition[] {
  if (Array.isArray(value)) return value.map((v, i) => asTool(v, source, `${where}[${i}]`));
  return [asTool(value, source, where)];
}

/**
 * Reads the tool definitions a module exports (see the module docs for the format). A default
 * export that is a function is called with no arguments and awaited.
 * @param namespace The module namespace object, as `import()` resolved it.
 * @param source Where it came from, for messages.
 * @throws {KeelError} `E_CONFIG_INVALID` when the module exports no tools, or something that is
 * not a tool where one is expected; `E_CONFIG_LOAD_FAILED` when its default function throws.
 */
export async function toolsFromModule(namespace: unknown, source: string): Promise<ToolDefinition[]> {
  if (typeof namespace !== "object" || namespace === null) throw invalid(source, "is not a module");
  const ns = namespace as Record<string, unknown>;
  const found: ToolDefinition[] = [];
  let any = false;
  if (ns.default !== undefined) {
    any = true;
    let value: unknown = ns.default;
    let where = "the default export";
    if (typeof value === "function") {
      try {
        value = await (value as () => unknown)();
      } catch (e) {
        throw new KeelError(
          "E_CONFIG_LOAD_FAILED",
          `Tool module "${source}": its default export threw: ${errorMessage(e)}`,
          { cause: e, details: { source } },
        );
      }
      where = "what the default export returned";
      if (value === undefined || value === null) throw invalid(source, `returned ${String(value)} from its default function`);
    }
    found.push(...asTools(value, source, where));
  }
  if (ns.tools !== undefined) {
    any = true;
    if (!Array.isArray(ns.tools)) throw invalid(source, `exports "tools" as ${describeValue(ns.tools)}, not an array`);
    found.push(...asTools(ns.tools, source, 'the "tools" export'));
  }
  if (!any) {
    const names = Object.keys(ns);
    throw invalid(source, `exports no tools (${names.length === 0 ? "it exports nothing" : `its exports: ${names.map((n) => `"${n}"`).join(", ")}`})`);
  }
  if (found.length === 0) throw invalid(source, "exports an empty list of tools");
  return found;
}

/**
 * Registers the tools of several modules, all or nothing: when one fails (an invalid name or
 * schema, or a name two modules share) none of them stays registered.
 * @returns The names registered, in module order.
 * @throws {KeelError} what {@link toolsFromModule} throws; the registry's `E_TOOL_NAME_INVALID`,
 * `E_TOOL_SCHEMA_INVALID` or `E_TOOL_DUPLICATE`, with the module named in the message.
 */
export async function registerToolModules(registry: ToolRegistry, modules: readonly ToolModule[]): Promise<string[]> {
  const sources = new Map<string, string>();
  const added: string[] = [];
  try {
    for (const { source, namespace } of modules) {
      for (const tool of await toolsFromModule(namespace, source)) {
        const earlier = sources.get(tool.name);
        if (earlier !== undefined) {
          throw new KeelError(
            "E_TOOL_DUPLICATE",
            `Tool "${tool.name}" is defined twice, in "${earlier}" and in "${source}"; rename one`,
            { details: { tool: tool.name, sources: [earlier, source] } },
          );
        }
        try {
          registry.register(tool);
        } catch (e) {
          if (!KeelError.is(e)) throw invalid(source, `has an invalid tool: ${errorMessage(e)}`);
          throw new KeelError(e.code, `Tool module "${source}": ${e.message}`, { cause: e, details: { ...e.details, source } });
        }
        sources.set(tool.name, source);
        added.push(tool.name);
      }
    }
  } catch (e) {
    for (const name of added) registry.unregister(name);
    throw e;
  }
  return added;
}
