/**
 * The tool registry: named functions with JSON Schemas for their input and output, the only way
 * out of a code-mode sandbox. {@link ToolRegistry.call} validates the input before a tool runs
 * and the output after, and hands the tool a frozen copy of the caller's runtime context.
 * @module
 */

import { KeelError } from "../errors.ts";
import { checkJsonSchema, formatSchemaIssues, type JsonSchema, type SchemaIssue, validateJsonSchema } from "./json-schema.ts";

/** What a tool's `run` receives besides its input. */
export interface ToolContext {
  /** The runtime context the host set for this request (user id, tenant, ...); deeply frozen. */
  readonly context: Readonly<Record<string, unknown>>;
  /** Identifies the request across logs, tool calls and services. */
  readonly correlationId: string;
  /** The tool being run. */
  readonly toolName: string;
}

/** A tool as registered: a name, a description for the model, schemas, and the function. */
export interface ToolDefinition<I = unknown, O = unknown> {
  /** An identifier (`/^[A-Za-z_$][A-Za-z0-9_$]*$/`, at most 64 characters, not starting with "__"). */
  readonly name: string;
  /** One or two sentences for the model: what the tool does and when to use it. */
  readonly description: string;
  /** JSON Schema of the input; the input is checked against it before `run`. */
  readonly inputSchema: JsonSchema;
  /** JSON Schema of the output; when present the output is checked against it after `run`. */
  readonly outputSchema?: JsonSchema;
  /** Does the work. The input has already passed `inputSchema`. */
  run(input: I, ctx: ToolContext): O | Promise<O>;
}

/** What discovery shows of a tool: everything but `run`. */
export interface ToolInfo {
  readonly name: string;
  readonly description: string;
  readonly inputSchema: JsonSchema;
  readonly outputSchema?: JsonSchema;
}

/** Options for {@link ToolRegistry.register}. */
export interface RegisterToolOptions {
  /** Replace a tool of the same name instead of failing with `E_TOOL_DUPLICATE`. */
  readonly overwrite?: boolean;
}

/** Options for {@link ToolRegistry.call}. */
export interface CallToolOptions {
  /** The runtime context for this request; deep-copied and frozen before any tool sees it. */
  readonly context?: Readonly<Record<string, unknown>>;
  /** Passed through to the tool; generated (`tool-<base36 time>-<random>`) when absent. */
  readonly correlationId?: string;
}

/** Registered tools, by name. */
export interface ToolRegistry {
  /**
   * Adds a tool.
   * @throws {KeelError} `E_TOOL_NAME_INVALID`, `E_TOOL_SCHEMA_INVALID`, or `E_TOOL_DUPLICATE`
   * when the name is taken and `overwrite` is not set.
   */
  register<I, O>(tool: ToolDefinition<I, O>, options?: RegisterToolOptions): void;
  /** Removes a tool; true when it was registered. */
  unregister(name: string): boolean;
  /** Every tool without its `run`, sorted by name. */
  list(): ToolInfo[];
  /** The tool registered as `name`, or undefined. */
  get(name: string): ToolDefinition | undefined;
  /**
   * The schemas and description of `name`.
   * @throws {KeelError} `E_TOOL_UNKNOWN`.
   */
  schema(name: string): ToolInfo;
  /**
   * Calls a tool: validates `input`, runs the tool with a frozen context, validates its output.
   * Two built-in meta-tools answer without being registered (they are what code in a sandbox
   * uses to discover the tools): `__list__` (input ignored) returns
   * `{ name, description }[]` sorted by name, and `__schema__` with `{ name }` returns that
   * tool's {@link ToolInfo}.
   * @throws {KeelError} `E_TOOL_UNKNOWN`, `E_TOOL_INPUT_INVALID`, `E_TOOL_OUTPUT_INVALID`
   * (details.issues lists every problem with its JSON pointer), or `E_TOOL_FAILED` with the
   * tool's error as `cause`.
   */
  call(name: string, input: unknown, options?: CallToolOptions): Promise<unknown>;
}

/** The names of the built-in meta-tools of {@link ToolRegistry.call}. */
export const META_TOOLS = ["__list__", "__schema__"] as const;

const NAME = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const MAX_NAME_LENGTH = 64;

/** Returns a new correlation id: `<prefix>-<base36 time>-<random>`. */
export function createCorrelationId(prefix = "tool"): string {
  const random = crypto.getRandomValues(new Uint32Array(2));
  return `${prefix}-${Date.now().toString(36)}-${random[0]!.toString(36)}${random[1]!.toString(36)}`;
}

/** A deep, frozen copy of a JSON-like value; functions and other non-data are refused. */
function frozenCopy(value: unknown, path: string): unknown {
  if (value === null || typeof value !== "object") {
    if (typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") {
      throw new TypeError(`Runtime context at "${path || "/"}" holds a ${typeof value}: pass plain data only`);
    }
    return value;
  }
  if (Array.isArray(value)) return Object.freeze(value.map((v, i) => frozenCopy(v, `${path}/${i}`)));
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError(`Runtime context at "${path || "/"}" holds a class instance: pass plain data only`);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = frozenCopy(v, `${path}/${k}`);
  return Object.freeze(out);
}

function info(tool: ToolDefinition): ToolInfo {
  return tool.outputSchema === undefined
    ? { name: tool.name, description: tool.description, inputSchema: tool.inputSchema }
    : { name: tool.name, description: tool.description, inputSchema: tool.inputSchema, outputSchema: tool.outputSchema };
}

function schemaError(name: string, which: string, issues: readonly SchemaIssue[]): KeelError {
  return new KeelError(
    "E_TOOL_SCHEMA_INVALID",
    `Tool "${name}" has an invalid ${which}; fix these:\n${formatSchemaIssues(issues)}`,
    { details: { tool: name, schema: which, issues } },
  );
}

/**
 * Creates an empty tool registry.
 *
 * @example
 * ```ts
 * import { createToolRegistry } from "./registry.ts";
 * const tools = createToolRegistry();
 * tools.register({
 *   name: "add",
 *   description: "Adds two numbers",
 *   inputSchema: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } }, required: ["a", "b"] },
 *   run: ({ a, b }: { a: number; b: number }) => a + b,
 * });
 * if (await tools.call("add", { a: 2, b: 3 }) !== 5) throw new Error("wrong sum");
 * ```
 */
export function createToolRegistry(): ToolRegistry {
  const tools = new Map<string, ToolDefinition>();

  function schema(name: string): ToolInfo {
    const tool = tools.get(name);
    if (tool === undefined) {
      const known = [...tools.keys()].sort();
      throw new KeelError(
        "E_TOOL_UNKNOWN",
        `No tool is named "${name}"; registered tools: ${known.length === 0 ? "(none)" : known.map((n) => `"${n}"`).join(", ")}`,
        { details: { tool: name, known } },
      );
    }
    return info(tool);
  }

  function list(): ToolInfo[] {
    return [...tools.values()].map(info).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  return {
    register(tool, options = {}) {
      if (typeof tool !== "object" || tool === null) throw new TypeError("register() takes a tool definition object");
      const name: unknown = tool.name;
      if (typeof name !== "string" || !NAME.test(name) || name.length > MAX_NAME_LENGTH || name.startsWith("__")) {
        throw new KeelError(
          "E_TOOL_NAME_INVALID",
          `Tool name ${JSON.stringify(name)} is invalid: use an identifier of at most ${MAX_NAME_LENGTH} characters (letters, digits, "_", "$") that does not start with "__"`,
          { details: { tool: name } },
        );
      }
      if (typeof tool.description !== "string") throw new TypeError(`Tool "${name}" needs a string description`);
      if (typeof tool.run !== "function") throw new TypeError(`Tool "${name}" needs a run function`);
      const inputIssues = checkJsonSchema(tool.inputSchema);
      if (inputIssues.length > 0) throw schemaError(name, "inputSchema", inputIssues);
      if (tool.outputSchema !== undefined) {
        const outputIssues = checkJsonSchema(tool.outputSchema);
        if (outputIssues.length > 0) throw schemaError(name, "outputSchema", outputIssues);
      }
      if (tools.has(name) && options.overwrite !== true) {
        throw new KeelError(
          "E_TOOL_DUPLICATE",
          `A tool named "${name}" is already registered; pick another name or pass { overwrite: true }`,
          { details: { tool: name } },
        );
      }
      tools.set(name, tool as ToolDefinition);
    },
    unregister: (name) => tools.delete(name),
    list,
    get: (name) => tools.get(name),
    schema,
    async call(name, input, options = {}) {
      if (name === "__list__") return list().map((t) => ({ name: t.name, description: t.description }));
      if (name === "__schema__") {
        const target = typeof input === "object" && input !== null ? (input as { name?: unknown }).name : undefined;
        if (typeof target !== "string") {
          throw new KeelError("E_TOOL_INPUT_INVALID", `Tool "__schema__" takes { name: string }; pass the name of a tool`, {
            details: { tool: name, issues: [{ path: "/name", keyword: "required", message: 'Missing required property "name"' }] },
          });
        }
        return schema(target);
      }
      const tool = tools.get(name);
      if (tool === undefined) schema(name); // throws E_TOOL_UNKNOWN
      const def = tool!;
      const inputIssues = validateJsonSchema(def.inputSchema, input);
      if (inputIssues.length > 0) {
        throw new KeelError("E_TOOL_INPUT_INVALID", `Input to tool "${name}" does not match its schema:\n${formatSchemaIssues(inputIssues)}`, {
          details: { tool: name, issues: inputIssues },
        });
      }
      const ctx: ToolContext = Object.freeze({
        context: frozenCopy(options.context ?? {}, "") as Readonly<Record<string, unknown>>,
        correlationId: options.correlationId ?? createCorrelationId(),
        toolName: name,
      });
      let output: unknown;
      try {
        output = await def.run(input, ctx);
      } catch (e) {
        throw new KeelError("E_TOOL_FAILED", `Tool "${name}" failed: ${e instanceof Error ? e.message : String(e)}`, {
          cause: e,
          details: { tool: name, correlationId: ctx.correlationId },
        });
      }
      if (def.outputSchema !== undefined) {
        const outputIssues = validateJsonSchema(def.outputSchema, output);
        if (outputIssues.length > 0) {
          throw new KeelError(
            "E_TOOL_OUTPUT_INVALID",
            `Tool "${name}" returned output that does not match its output schema (a bug in the tool):\n${formatSchemaIssues(outputIssues)}`,
            { details: { tool: name, issues: outputIssues } },
          );
        }
      }
      return output;
    },
  };
}
