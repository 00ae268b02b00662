/**
 * TypeScript declarations generated from tools' schemas, to show a model what it may call:
 * `declare const tools: { weather(input: { city: string }): Promise<...>; }`.
 * @module
 */

import type { JsonSchema, JsonSchemaObject } from "./json-schema.ts";
import type { ToolInfo, ToolRegistry } from "./registry.ts";

/** Options for {@link generateDeclarations}. */
export interface GenerateDeclarationsOptions {
  /** The name of the declared constant; default "tools". Must be an identifier. */
  readonly namespace?: string;
  /** Also declare the meta-tools `__list__` and `__schema__`; default false. */
  readonly metaTools?: boolean;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function comment(text: string | undefined, indent: string): string {
  if (text === undefined || text.trim() === "") return "";
  const lines = text.trim().replaceAll("*/", "*\\/").split(/\r?\n/);
  if (lines.length === 1) return `${indent}/** ${lines[0]} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} *${l === "" ? "" : ` ${l}`}`).join("\n")}\n${indent} */\n`;
}

function propertyKey(name: string): string {
  return IDENTIFIER.test(name) ? name : JSON.stringify(name);
}

function literal(value: unknown): string {
  if (value === null || typeof value === "string" || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return "unknown";
}

function union(parts: readonly string[]): string {
  const unique = [...new Set(parts)];
  if (unique.length === 0) return "never";
  if (unique.includes("unknown")) return "unknown";
  return unique.join(" | ");
}

/** Parenthesises a union or intersection before `[]`. */
function arrayOf(type: string): string {
  return /^[\w$."]+$/.test(type) || /^\{[\s\S]*\}$/.test(type) || /^[\w$]+\[\]$/.test(type) ? `${type}[]` : `(${type})[]`;
}

interface Walk {
  readonly root: JsonSchema;
  readonly seen: readonly string[];
}

function typeOf(schema: JsonSchema, walk: Walk, indent: string): string {
  if (schema === true) return "unknown";
  if (schema === false) return "never";
  if (schema.$ref !== undefined) {
    if (walk.seen.includes(schema.$ref)) return "unknown";
    const target = resolve(walk.root, schema.$ref);
    if (target === undefined) return "unknown";
    return typeOf(target, { root: walk.root, seen: [...walk.seen, schema.$ref] }, indent);
  }
  if (Object.hasOwn(schema, "const")) return literal(schema.const);
  if (schema.enum !== undefined) return union(schema.enum.map(literal));
  if (schema.allOf !== undefined) {
    const parts = schema.allOf.map((s) => typeOf(s, walk, indent)).filter((t) => t !== "unknown");
    return parts.length === 0 ? "unknown" : parts.map((p) => (p.includes(" | ") ? `(${p})` : p)).join(" & ");
  }
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives !== undefined) return union(alternatives.map((s) => typeOf(s, walk, indent)));
  if (schema.type === undefined) return "unknown";
  const types = typeof schema.type === "string" ? [schema.type] : schema.type;
  return union(types.map((t) => typeName(t, schema, walk, indent)));
}

function typeName(type: string, schema: JsonSchemaObject, walk: Walk, indent: string): string {
  switch (type) {
    case "string":
    case "number":
    case "boolean":
    case "null":
      return type;
    case "integer":
      return "number";
    case "array":
      return schema.items === undefined ? "unknown[]" : arrayOf(typeOf(schema.items, walk, indent));
    default:
      return objectType(schema, walk, indent);
  }
}

function objectType(schema: JsonSchemaObject, walk: Walk, indent: string): string {
  const properties = Object.entries(schema.properties ?? {});
  const required = new Set(schema.required ?? []);
  const extra = schema.additionalProperties;
  const index = extra === undefined || extra === false || properties.length > 0 && extra === true
    ? undefined
    : properties.length > 0
    ? "unknown"
    : typeOf(extra, walk, indent);
  if (properties.length === 0) return index === undefined ? (extra === false ? "Record<string, never>" : "Record<string, unknown>") : `Record<string, ${index}>`;
  const described = properties.some(([, s]) => typeof s === "object" && s.description !== undefined);
  const inner = `${indent}  `;
  const members = properties.map(([name, s]) => {
    const member = `${propertyKey(name)}${required.has(name) ? "" : "?"}: ${typeOf(s, walk, inner)}`;
    return described ? `${comment(typeof s === "object" ? s.description : undefined, inner)}${inner}${member};` : member;
  });
  if (index !== undefined) members.push(described ? `${inner}[key: string]: ${index};` : `[key: string]: ${index}`);
  return described ? `{\n${members.join("\n")}\n${indent}}` : `{ ${members.join("; ")} }`;
}

function resolve(root: JsonSchema, ref: string): JsonSchema | undefined {
  if (ref === "#") return root;
  const m = /^#\/\$defs\/(.+)$/.exec(ref);
  if (m === null || typeof root !== "object" || root.$defs === undefined) return undefined;
  const name = m[1]!.replaceAll("~1", "/").replaceAll("~0", "~");
  return Object.hasOwn(root.$defs, name) ? root.$defs[name] : undefined;
}

function isRegistry(value: ToolRegistry | readonly ToolInfo[]): value is ToolRegistry {
  return !Array.isArray(value);
}

/**
 * Returns TypeScript declarations of `tools` for a model's prompt: one `declare const` whose
 * methods are the tools, sorted by name, each with its description as JSDoc, its input type
 * from `inputSchema` and `Promise<output type>` from `outputSchema` (`Promise<unknown>` without
 * one). Deterministic: the same tools give the same text. Properties keep their schema order;
 * optional properties (not in `required`) get `?`; `integer` becomes `number`; `enum`/`const`
 * become literal unions; `anyOf`/`oneOf` unions, `allOf` intersections; a recursive `$ref`
 * becomes `unknown`; constraints (`minimum`, `pattern`, ...) are not expressed in types.
 *
 * @example
 * ```ts
 * import { generateDeclarations } from "./declarations.ts";
 * const text = generateDeclarations([{
 *   name: "weather",
 *   description: "Current weather for a city",
 *   inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
 * }]);
 * if (!text.includes("weather(input: { city: string }): Promise<unknown>;")) throw new Error(text);
 * ```
 */
export function generateDeclarations(
  tools: ToolRegistry | readonly ToolInfo[],
  options: GenerateDeclarationsOptions = {},
): string {
  const namespace = options.namespace ?? "tools";
  if (!IDENTIFIER.test(namespace)) throw new TypeError(`Namespace "${namespace}" is not an identifier`);
  const list = [...(isRegistry(tools) ? tools.list() : tools)].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const lines: string[] = [];
  for (const tool of list) {
    const input = typeOf(tool.inputSchema, { root: tool.inputSchema, seen: ["#"] }, "  ");
    const output = tool.outputSchema === undefined ? "unknown" : typeOf(tool.outputSchema, { root: tool.outputSchema, seen: ["#"] }, "  ");
    lines.push(`${comment(tool.description, "  ")}  ${propertyKey(tool.name)}(input: ${input}): Promise<${output}>;`);
  }
  if (options.metaTools === true) {
    lines.push(
      `  /** Lists the tools you may call, sorted by name. */\n  __list__(): Promise<{ name: string; description: string }[]>;`,
      `  /** The description and JSON Schemas of one tool. */\n  __schema__(input: { name: string }): Promise<{ name: string; description: string; inputSchema: unknown; outputSchema?: unknown }>;`,
    );
  }
  return `declare const ${namespace}: {\n${lines.join("\n")}\n};\n`;
}
