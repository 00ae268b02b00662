/**
 * A small, strict validator for the subset of JSON Schema (2020-12 spelling) that tool schemas
 * use. Strict means two things: a schema that uses a keyword outside the subset is rejected
 * (a typo such as `requried` must not silently accept everything), and validation reports every
 * problem, each with the JSON pointer of the offending value, instead of stopping at the first.
 *
 * Supported: `type` (a name or a list of names, so `["string", "null"]` is a nullable string),
 * `properties`, `required`, `additionalProperties` (a boolean or a schema), `items`, `enum`,
 * `const`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (numbers), `minLength`,
 * `maxLength` (in code points), `pattern` (a Unicode regular expression, unanchored), `minItems`,
 * `maxItems`, `anyOf`, `oneOf`, `allOf`, `$ref` to `#` or `#/$defs/<name>`, `$defs`, and the
 * boolean schemas `true` and `false`. Annotations (`title`, `description`, `default`, `examples`,
 * `format`, `$schema`, `$id`, `$comment`, `deprecated`, `readOnly`, `writeOnly`) are allowed and
 * ignored.
 * @module
 */

/** The name of a JSON type, as `type` spells it. */
export type JsonSchemaTypeName = "string" | "number" | "integer" | "boolean" | "null" | "array" | "object";

/** A JSON Schema of the supported subset: an object schema, or `true` (anything) / `false` (nothing). */
export type JsonSchema = boolean | JsonSchemaObject;

/** An object schema of the supported subset. */
export interface JsonSchemaObject {
  readonly type?: JsonSchemaTypeName | readonly JsonSchemaTypeName[];
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: JsonSchema;
  readonly items?: JsonSchema;
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly anyOf?: readonly JsonSchema[];
  readonly oneOf?: readonly JsonSchema[];
  readonly allOf?: readonly JsonSchema[];
  readonly $ref?: string;
  readonly $defs?: Readonly<Record<string, JsonSchema>>;
  readonly title?: string;
  readonly description?: string;
  readonly default?: unknown;
  readonly examples?: readonly unknown[];
  readonly format?: string;
  readonly $schema?: string;
  readonly $id?: string;
  readonly $comment?: string;
  readonly deprecated?: boolean;
  readonly readOnly?: boolean;
  readonly writeOnly?: boolean;
}

/** One problem found by {@link validateJsonSchema} or {@link checkJsonSchema}. */
export interface SchemaIssue {
  /** JSON pointer (RFC 6901) of the offending value, or of the offending schema part; "" is the root. */
  readonly path: string;
  /** The keyword that failed ("type", "required", ...). */
  readonly keyword: string;
  /** What is wrong, for people. */
  readonly message: string;
}

const TYPE_NAMES: ReadonlySet<string> = new Set(["string", "number", "integer", "boolean", "null", "array", "object"]);
const ANNOTATIONS = ["title", "description", "format", "$schema", "$id", "$comment"] as const;
const MAX_DEPTH = 256;

/** Appends one reference token to a JSON pointer, escaping `~` and `/`. */
export function joinPointer(pointer: string, token: string | number): string {
  return `${pointer}/${String(token).replaceAll("~", "~0").replaceAll("/", "~1")}`;
}

/** The JSON type of `value`, or undefined when it is not a JSON value (a function, NaN, ...). */
function jsonType(value: unknown): Exclude<JsonSchemaTypeName, "integer"> | undefined {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  switch (typeof value) {
    case "string":
      return "string";
    case "boolean":
      return "boolean";
    case "number":
      return Number.isFinite(value) ? "number" : undefined;
    case "object":
      return "object";
    default:
      return undefined;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Deep equality of JSON values, as `enum` and `const` compare (object key order does not matter). */
function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

function show(value: unknown): string {
  try {
    const text = JSON.stringify(value);
    if (text === undefined) return String(value);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  } catch {
    return String(value);
  }
}

function matchesType(value: unknown, type: string): boolean {
  if (type === "integer") return typeof value === "number" && Number.isInteger(value);
  return jsonType(value) === type;
}

/** Looks up `#` or `#/$defs/<name>` in the root schema. */
function resolveRef(root: JsonSchema, ref: string): JsonSchema | undefined {
  if (ref === "#") return root;
  const m = /^#\/\$defs\/(.+)$/.exec(ref);
  if (m === null || typeof root !== "object") return undefined;
  const name = m[1]!.replaceAll("~1", "/").replaceAll("~0", "~");
  const defs = root.$defs;
  return defs !== undefined && Object.hasOwn(defs, name) ? defs[name] : undefined;
}

/**
 * Validates `value` against `schema` and returns every problem; an empty list means valid.
 * `schema` should have passed {@link checkJsonSchema}; parts it does not understand are ignored.
 *
 * @example
 * ```ts
 * import { validateJsonSchema } from "./json-schema.ts";
 * const issues = validateJsonSchema(
 *   { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
 *   { city: 7 },
 * );
 * if (issues[0]?.path !== "/city" || issues[0]?.keyword !== "type") throw new Error("unexpected");
 * ```
 */
export function validateJsonSchema(schema: JsonSchema, value: unknown): SchemaIssue[] {
  const issues: SchemaIssue[] = [];
  validateAt(schema, value, "", schema, issues, 0);
  return issues;
}

function validateAt(schema: JsonSchema, value: unknown, path: string, root: JsonSchema, out: SchemaIssue[], depth: number): void {
  const add = (keyword: string, message: string, at = path): void => {
    out.push({ path: at, keyword, message });
  };
  if (schema === true) return;
  if (schema === false) return add("false", "No value is allowed here");
  if (depth > MAX_DEPTH) return add("$ref", `Schema references nest deeper than ${MAX_DEPTH} levels`);

  if (schema.$ref !== undefined) {
    const target = resolveRef(root, schema.$ref);
    if (target === undefined) add("$ref", `Reference "${schema.$ref}" does not resolve`);
    else validateAt(target, value, path, root, out, depth + 1);
  }

  if (schema.type !== undefined) {
    const types: readonly string[] = typeof schema.type === "string" ? [schema.type] : schema.type;
    if (!types.some((t) => matchesType(value, t))) {
      const actual = jsonType(value) ?? typeof value;
      return add("type", `Expected ${types.join(" or ")}, got ${actual}`);
    }
  } else if (jsonType(value) === undefined) {
    return add("type", `Expected a JSON value, got ${typeof value === "number" ? String(value) : typeof value}`);
  }

  if (schema.enum !== undefined && !schema.enum.some((e) => jsonEqual(e, value))) {
    add("enum", `Expected one of ${schema.enum.map(show).join(", ")}, got ${show(value)}`);
  }
  if (Object.hasOwn(schema, "const") && !jsonEqual(schema.const, value)) {
    add("const", `Expected ${show(schema.const)}, got ${show(value)}`);
  }

  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) add("minimum", `Expected at least ${schema.minimum}, got ${value}`);
    if (schema.maximum !== undefined && value > schema.maximum) add("maximum", `Expected at most ${schema.maximum}, got ${value}`);
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) {
      add("exclusiveMinimum", `Expected more than ${schema.exclusiveMinimum}, got ${value}`);
    }
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) {
      add("exclusiveMaximum", `Expected less than ${schema.exclusiveMaximum}, got ${value}`);
    }
  }

  if (typeof value === "string") {
    const length = [...value].length;
    if (schema.minLength !== undefined && length < schema.minLength) {
      add("minLength", `Expected at least ${schema.minLength} characters, got ${length}`);
    }
    if (schema.maxLength !== undefined && length > schema.maxLength) {
      add("maxLength", `Expected at most ${schema.maxLength} characters, got ${length}`);
    }
    if (schema.pattern !== undefined) {
      let re: RegExp | undefined;
      try {
        re = new RegExp(schema.pattern, "u");
      } catch {
        add("pattern", `Pattern ${show(schema.pattern)} is not a valid regular expression`);
      }
      if (re !== undefined && !re.test(value)) add("pattern", `Expected a string matching ${show(schema.pattern)}, got ${show(value)}`);
    }
  }

  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) {
      add("minItems", `Expected at least ${schema.minItems} items, got ${value.length}`);
    }
    if (schema.maxItems !== undefined && value.length > schema.maxItems) {
      add("maxItems", `Expected at most ${schema.maxItems} items, got ${value.length}`);
    }
    if (schema.items !== undefined) {
      for (let i = 0; i < value.length; i++) validateAt(schema.items, value[i], joinPointer(path, i), root, out, depth + 1);
    }
  }

  if (isPlainObject(value)) {
    for (const name of schema.required ?? []) {
      if (!Object.hasOwn(value, name)) add("required", `Missing required property "${name}"`, joinPointer(path, name));
    }
    const properties = schema.properties ?? {};
    for (const [name, v] of Object.entries(value)) {
      const at = joinPointer(path, name);
      if (Object.hasOwn(properties, name)) validateAt(properties[name]!, v, at, root, out, depth + 1);
      else if (schema.additionalProperties === false) add("additionalProperties", `Unexpected property "${name}"`, at);
      else if (schema.additionalProperties !== undefined) validateAt(schema.additionalProperties, v, at, root, out, depth + 1);
      else if (jsonType(v) === undefined && v !== undefined) add("type", `Expected a JSON value, got ${typeof v}`, at);
    }
  }

  if (schema.allOf !== undefined) {
    for (const sub of schema.allOf) validateAt(sub, value, path, root, out, depth + 1);
  }
  if (schema.anyOf !== undefined) {
    const branches = schema.anyOf.map((sub) => branchIssues(sub, value, path, root, depth));
    if (!branches.some((b) => b.length === 0)) {
      add("anyOf", `Expected a value matching at least one of ${branches.length} schemas: ${summarize(branches)}`);
    }
  }
  if (schema.oneOf !== undefined) {
    const branches = schema.oneOf.map((sub) => branchIssues(sub, value, path, root, depth));
    const passing = branches.filter((b) => b.length === 0).length;
    if (passing === 0) add("oneOf", `Expected a value matching exactly one of ${branches.length} schemas, it matches none: ${summarize(branches)}`);
    else if (passing > 1) add("oneOf", `Expected a value matching exactly one of ${branches.length} schemas, it matches ${passing}`);
  }
}

function branchIssues(sub: JsonSchema, value: unknown, path: string, root: JsonSchema, depth: number): SchemaIssue[] {
  const issues: SchemaIssue[] = [];
  validateAt(sub, value, path, root, issues, depth + 1);
  return issues;
}

function summarize(branches: readonly SchemaIssue[][]): string {
  return branches.map((b, i) => `[${i}] ${b.map((x) => `${x.path || "/"}: ${x.message}`).join("; ")}`).join(" | ");
}

/** Formats issues one per line, as error messages list them. */
export function formatSchemaIssues(issues: readonly SchemaIssue[]): string {
  return issues.map((i) => `${i.path === "" ? "(root)" : i.path}: ${i.message}`).join("\n");
}

/**
 * Checks that `schema` itself is a schema of the supported subset and returns every problem
 * (paths point into the schema). Unknown keywords, wrong keyword types, bad patterns and `$ref`s
 * that do not resolve are problems.
 *
 * @example
 * ```ts
 * import { checkJsonSchema } from "./json-schema.ts";
 * const issues = checkJsonSchema({ type: "object", requried: ["city"] });
 * if (issues[0]?.path !== "/requried") throw new Error("a typo must be caught");
 * ```
 */
export function checkJsonSchema(schema: unknown): SchemaIssue[] {
  const issues: SchemaIssue[] = [];
  checkAt(schema, "", schema, issues);
  return issues;
}

function isNonNegativeInteger(v: unknown): boolean {
  return typeof v === "number" && Number.isInteger(v) && v >= 0;
}

function checkAt(schema: unknown, path: string, root: unknown, out: SchemaIssue[]): void {
  const add = (keyword: string, message: string): void => {
    out.push({ path: joinPointer(path, keyword), keyword, message });
  };
  if (typeof schema === "boolean") return;
  if (!isPlainObject(schema)) {
    out.push({ path, keyword: "schema", message: `A schema must be an object or a boolean, got ${jsonType(schema) ?? typeof schema}` });
    return;
  }
  const subList = (key: string) => {
    const v = schema[key];
    if (!Array.isArray(v) || v.length === 0) return add(key, `"${key}" must be a non-empty array of schemas`);
    v.forEach((s, i) => checkAt(s, joinPointer(joinPointer(path, key), i), root, out));
  };
  const subMap = (key: string) => {
    const v = schema[key];
    if (!isPlainObject(v)) return add(key, `"${key}" must be an object of schemas`);
    for (const [name, s] of Object.entries(v)) checkAt(s, joinPointer(joinPointer(path, key), name), root, out);
  };
  for (const [key, v] of Object.entries(schema)) {
    switch (key) {
      case "type": {
        const list = typeof v === "string" ? [v] : v;
        if (!Array.isArray(list) || list.length === 0 || !list.every((t) => typeof t === "string" && TYPE_NAMES.has(t))) {
          add(key, `"type" must be one of ${[...TYPE_NAMES].join(", ")} or a non-empty list of them`);
        } else if (new Set(list).size !== list.length) add(key, `"type" lists a type twice`);
        break;
      }
      case "properties":
      case "$defs":
        subMap(key);
        break;
      case "additionalProperties":
      case "items":
        checkAt(v, joinPointer(path, key), root, out);
        break;
      case "anyOf":
      case "oneOf":
      case "allOf":
        subList(key);
        break;
      case "required":
        if (!Array.isArray(v) || !v.every((n) => typeof n === "string") || new Set(v).size !== v.length) {
          add(key, `"required" must be a list of distinct property names`);
        }
        break;
      case "enum":
        if (!Array.isArray(v) || v.length === 0) add(key, `"enum" must be a non-empty array`);
        break;
      case "const":
      case "default":
      case "examples":
        break;
      case "minimum":
      case "maximum":
      case "exclusiveMinimum":
      case "exclusiveMaximum":
        if (typeof v !== "number" || !Number.isFinite(v)) add(key, `"${key}" must be a finite number`);
        break;
      case "minLength":
      case "maxLength":
      case "minItems":
      case "maxItems":
        if (!isNonNegativeInteger(v)) add(key, `"${key}" must be a non-negative integer`);
        break;
      case "pattern":
        if (typeof v !== "string") add(key, `"pattern" must be a string`);
        else {
          try {
            new RegExp(v, "u");
          } catch (e) {
            add(key, `"pattern" is not a valid regular expression: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
        break;
      case "$ref":
        if (typeof v !== "string") add(key, `"$ref" must be a string`);
        else if (resolveRef(root as JsonSchema, v) === undefined) {
          add(key, `Reference "${v}" does not resolve: only "#" and "#/$defs/<name>" of the same schema are supported`);
        }
        break;
      case "deprecated":
      case "readOnly":
      case "writeOnly":
        if (typeof v !== "boolean") add(key, `"${key}" must be a boolean`);
        break;
      default:
        if ((ANNOTATIONS as readonly string[]).includes(key)) {
          if (typeof v !== "string") add(key, `"${key}" must be a string`);
        } else {
          add(key, `Unsupported keyword "${key}": tool schemas use a strict subset of JSON Schema`);
        }
    }
  }
  if (path !== "" && Object.hasOwn(schema, "$defs")) add("$defs", `"$defs" is only supported at the root of a schema`);
}
