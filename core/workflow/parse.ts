/**
 * Parses YAML or JSON workflow text (Gleitzeit's format, unchanged) into a
 * {@link WorkflowDefinition}. Checks field types only; `validateWorkflow` checks the graph.
 * @module
 */

import { load } from "js-yaml";
import { KeelError } from "../errors.ts";
import type { Backoff, BatchSpec, RetryPolicy, TaskDefinition, WorkflowDefinition } from "./definition.ts";
import { PRIORITIES } from "./definition.ts";

/** Options for {@link parseWorkflow}. */
export interface ParseWorkflowOptions {
  /** Default: "json" when `source` ends in `.json`, else "yaml" (which also reads JSON). */
  readonly format?: "yaml" | "json";
  /** A path or URL, for messages. */
  readonly source?: string;
}

/** One field problem found while parsing. */
export interface FieldProblem {
  readonly task?: string;
  readonly field: string;
  readonly message: string;
}

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Parses workflow text. Task ids come from `id`, else `name` (verbatim, as Gleitzeit's
 * `${name.result}` references expect); the protocol, when not given, is derived from the method
 * (`"mcp/tool.echo"` -> `"mcp/v1"`). A top-level `type: batch` file (with `batch` and `template`)
 * becomes one batch task with id `"batch"`.
 *
 * @throws {KeelError} `E_WORKFLOW_PARSE` (with `details.line`/`details.column`) for text that is
 * not YAML/JSON; `E_WORKFLOW_INVALID` listing every field with a wrong type (`details.problems`).
 */
export function parseWorkflow(text: string, options: ParseWorkflowOptions = {}): WorkflowDefinition {
  const source = options.source;
  const format = options.format ?? (source?.toLowerCase().endsWith(".json") ? "json" : "yaml");
  const where = source === undefined ? "Workflow" : `Workflow "${source}"`;
  let data: unknown;
  if (format === "json") {
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw parseError(where, "is not valid JSON", jsonErrorPosition(text, e), e);
    }
  } else {
    try {
      // js-yaml refuses duplicate keys, as a workflow must.
      data = load(text, source === undefined ? {} : { filename: source });
    } catch (e) {
      throw parseError(where, `is not valid YAML (${yamlReason(e)})`, yamlPosition(e), e);
    }
  }
  return normalizeWorkflow(data, source === undefined ? {} : { source });
}

/** Where a JSON text stops parsing, from the engine's message ("at position N"), if it says. */
function jsonErrorPosition(text: string, e: unknown): { line: number; column: number } | undefined {
  const m = /position (\d+)/.exec(e instanceof Error ? e.message : "");
  if (m) return lineColumn(text, Number(m[1]));
  const lc = /line (\d+) column (\d+)/.exec(e instanceof Error ? e.message : "");
  if (lc) return { line: Number(lc[1]), column: Number(lc[2]) };
  // Bun's messages name no position; YAML is a superset of JSON, so its parser can point.
  try {
    load(text);
  } catch (yamlError) {
    return yamlPosition(yamlError);
  }
  return undefined;
}

function yamlReason(e: unknown): string {
  const reason = (e as { reason?: unknown } | null)?.reason;
  return typeof reason === "string" ? reason : (e instanceof Error ? e.message.split("\n")[0]! : String(e));
}

/** 1-based line and column from a js-yaml error's mark (0-based). */
function yamlPosition(e: unknown): { line: number; column: number } | undefined {
  const mark = (e as { mark?: { line?: unknown; column?: unknown } } | null)?.mark;
  if (typeof mark?.line !== "number" || typeof mark.column !== "number") return undefined;
  return { line: mark.line + 1, column: mark.column + 1 };
}

/** 1-based line and column of a character offset. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, offset));
  const line = before.split("\n").length;
  return { line, column: offset - before.lastIndexOf("\n") };
}

function parseError(where: string, what: string, pos: { line: number; column: number } | undefined, cause: unknown): KeelError {
  const at = pos ? ` at line ${pos.line}, column ${pos.column}` : "";
  return new KeelError("E_WORKFLOW_PARSE", `${where} ${what}${at}: fix the syntax and try again`, {
    cause,
    details: pos ? { line: pos.line, column: pos.column } : {},
  });
}

/**
 * Turns already-parsed data (a YAML/JSON document as a JS value) into a definition.
 * @throws {KeelError} `E_WORKFLOW_INVALID` listing every field with a wrong type.
 */
export function normalizeWorkflow(data: unknown, options: { readonly source?: string } = {}): WorkflowDefinition {
  const problems: FieldProblem[] = [];
  const where = options.source === undefined ? "The workflow" : `Workflow "${options.source}"`;
  if (!isObject(data)) {
    throw new KeelError("E_WORKFLOW_INVALID", `${where} is not a mapping with "name" and "tasks"`, {
      details: { problems: [{ field: "(root)", message: "expected a mapping" }] },
    });
  }
  const name = data.name === undefined ? (options.source ?? "workflow") : data.name;
  if (typeof name !== "string") problems.push({ field: "name", message: '"name" must be a string' });
  if (data.description !== undefined && typeof data.description !== "string") {
    problems.push({ field: "description", message: '"description" must be a string' });
  }
  const timeoutMs = seconds(data.timeout, undefined, "timeout", problems);

  let rawTasks: unknown[] = [];
  if (data.type === "batch" && data.tasks === undefined) {
    rawTasks = [topLevelBatch(data, problems)];
  } else if (data.type !== undefined && data.type !== "batch") {
    problems.push({ field: "type", message: `Workflow type "${String(data.type)}" is not supported; leave it out, or use "batch"` });
  } else if (!Array.isArray(data.tasks)) {
    problems.push({ field: "tasks", message: '"tasks" must be a list of tasks' });
  } else if (data.tasks.length === 0) {
    problems.push({ field: "tasks", message: '"tasks" is empty: a workflow needs at least one task' });
  } else {
    rawTasks = data.tasks;
  }

  const tasks: TaskDefinition[] = [];
  rawTasks.forEach((raw, i) => {
    const t = normalizeTask(raw, i, problems);
    if (t) tasks.push(t);
  });

  if (problems.length > 0) {
    const lines = problems.map((p) => `- ${p.message}`).join("\n");
    throw new KeelError("E_WORKFLOW_INVALID", `${where} has ${problems.length} problem(s):\n${lines}`, {
      details: { problems },
    });
  }
  const def: { -readonly [K in keyof WorkflowDefinition]: WorkflowDefinition[K] } = { name: name as string, tasks };
  if (typeof data.description === "string") def.description = data.description;
  if (timeoutMs !== undefined) def.timeoutMs = timeoutMs;
  if (options.source !== undefined) def.source = options.source;
  return def;
}

function topLevelBatch(data: Obj, problems: FieldProblem[]): Obj {
  const batch = isObject(data.batch) ? data.batch : undefined;
  const template = isObject(data.template) ? data.template : undefined;
  if (!batch) problems.push({ field: "batch", message: 'A "type: batch" workflow needs a "batch" mapping (directory, pattern)' });
  if (!template) problems.push({ field: "template", message: 'A "type: batch" workflow needs a "template" mapping (method, ...)' });
  const { method, protocol, retry, priority, continue_on_error, max_concurrent, params, parameters, ...rest } = template ?? {};
  const task: Obj = {
    id: "batch",
    type: "batch",
    method,
    protocol: protocol ?? data.protocol,
    params: { ...rest, ...(isObject(params) ? params : {}), ...(isObject(parameters) ? parameters : {}) },
    batch: { ...batch, max_concurrent: batch?.max_concurrent ?? max_concurrent },
  };
  if (typeof rest.timeout === "number") task.timeout = rest.timeout;
  if (retry !== undefined) task.retry = retry;
  if (priority !== undefined) task.priority = priority;
  if (continue_on_error !== undefined) task.continue_on_error = continue_on_error;
  return task;
}

function normalizeTask(raw: unknown, index: number, problems: FieldProblem[]): TaskDefinition | undefined {
  if (!isObject(raw)) {
    problems.push({ field: `tasks[${index}]`, message: `Task #${index + 1} is not a mapping` });
    return undefined;
  }
  const idRaw = raw.id ?? raw.name;
  const label = typeof idRaw === "string" ? `Task "${idRaw}"` : `Task #${index + 1}`;
  const task = typeof idRaw === "string" ? idRaw : `#${index + 1}`;
  const bad = (field: string, want: string): void => {
    problems.push({ task, field, message: `${label}: "${field}" must be ${want}` });
  };
  if (idRaw === undefined) {
    problems.push({ task, field: "id", message: `${label} has neither "id" nor "name": give it an id` });
  } else if (typeof idRaw !== "string" || idRaw === "") bad(raw.id !== undefined ? "id" : "name", "a non-empty string");
  if (raw.id !== undefined && raw.name !== undefined && typeof raw.name !== "string") bad("name", "a string");

  let method = "";
  if (raw.method !== undefined) {
    if (typeof raw.method === "string") method = raw.method;
    else bad("method", 'a string such as "python/execute"');
  }
  let protocol = "";
  if (raw.protocol !== undefined) {
    if (typeof raw.protocol === "string") protocol = raw.protocol;
    else bad("protocol", 'a string such as "python/v1"');
  } else if (method.includes("/")) {
    protocol = `${method.slice(0, method.indexOf("/"))}/v1`;
  }

  if (raw.params !== undefined && raw.parameters !== undefined) {
    problems.push({ task, field: "params", message: `${label} has both "params" and "parameters": keep one` });
  }
  const paramsRaw = raw.params ?? raw.parameters ?? {};
  let params: Obj = {};
  if (isObject(paramsRaw)) params = paramsRaw;
  else bad(raw.params !== undefined ? "params" : "parameters", "a mapping");

  let dependencies: string[] = [];
  const depsRaw = raw.dependencies ?? [];
  if (typeof depsRaw === "string") dependencies = [depsRaw];
  else if (Array.isArray(depsRaw) && depsRaw.every((d) => typeof d === "string")) dependencies = depsRaw;
  else bad("dependencies", "a list of task ids");
  if (raw.depends_on !== undefined) {
    problems.push({ task, field: "depends_on", message: `${label} uses "depends_on", which this format does not have: rename it to "dependencies"` });
  }
  if (raw.type !== undefined && raw.type !== "batch") {
    problems.push({
      task,
      field: "type",
      message: `${label} has type "${String(raw.type)}": only "batch" is a task type; name the protocol and method instead`,
    });
  }

  const timeoutMs = seconds(raw.timeout, task, "timeout", problems);
  const priority = parsePriority(raw.priority, label, task, problems);
  let continueOnError = false;
  if (raw.continue_on_error !== undefined) {
    if (typeof raw.continue_on_error === "boolean") continueOnError = raw.continue_on_error;
    else bad("continue_on_error", "true or false");
  }
  const retry = raw.retry === undefined ? undefined : parseRetry(raw.retry, label, task, problems);

  let batch: BatchSpec | undefined;
  if (raw.type === "batch" || raw.batch !== undefined) {
    batch = parseBatch(raw, label, task, problems);
  }

  const out: { -readonly [K in keyof TaskDefinition]: TaskDefinition[K] } = {
    id: task,
    protocol,
    method,
    params,
    dependencies,
    priority,
    continueOnError,
  };
  if (raw.id !== undefined && typeof raw.name === "string") out.name = raw.name;
  if (timeoutMs !== undefined) out.timeoutMs = timeoutMs;
  if (retry) out.retry = retry;
  if (batch) out.batch = batch;
  return out;
}

function parseBatch(raw: Obj, label: string, task: string, problems: FieldProblem[]): BatchSpec | undefined {
  const b: Obj = isObject(raw.batch) ? raw.batch : {};
  if (raw.batch !== undefined && !isObject(raw.batch)) {
    problems.push({ task, field: "batch", message: `${label}: "batch" must be a mapping (directory, pattern)` });
  }
  const pick = (k: string): unknown => b[k] ?? raw[k];
  let directory = pick("directory");
  let pattern = pick("pattern");
  const glob = pick("glob");
  if (typeof glob === "string") {
    const cut = glob.lastIndexOf("/");
    directory = cut < 0 ? "." : glob.slice(0, cut) || "/";
    pattern = glob.slice(cut + 1);
  }
  if (typeof directory !== "string" || typeof pattern !== "string" || pattern === "") {
    problems.push({
      task,
      field: "batch",
      message: `${label} is a batch task: give "glob" (e.g. "docs/*.txt") or "directory" and "pattern"`,
    });
    return undefined;
  }
  if (pattern.includes("/") || pattern.includes("**")) {
    problems.push({ task, field: "batch.pattern", message: `${label}: the batch pattern matches file names in one directory; "${pattern}" has "/" or "**"` });
  }
  const spec: { -readonly [K in keyof BatchSpec]: BatchSpec[K] } = { directory, pattern };
  const mc = pick("max_concurrent");
  if (mc !== undefined) {
    if (typeof mc === "number" && Number.isInteger(mc) && mc > 0) spec.maxConcurrent = mc;
    else problems.push({ task, field: "max_concurrent", message: `${label}: "max_concurrent" must be a positive whole number` });
  }
  return spec;
}

function seconds(v: unknown, task: string | undefined, field: string, problems: FieldProblem[]): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "number" && Number.isFinite(v) && v > 0) return Math.round(v * 1000);
  const label = task === undefined ? "The workflow" : `Task "${task}"`;
  problems.push(task === undefined ? { field, message: `${label}: "${field}" must be a positive number of seconds` } : {
    task,
    field,
    message: `${label}: "${field}" must be a positive number of seconds`,
  });
  return undefined;
}

function parsePriority(v: unknown, label: string, task: string, problems: FieldProblem[]): number {
  if (v === undefined) return PRIORITIES.normal;
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "string" && Object.hasOwn(PRIORITIES, v.toLowerCase())) {
    return PRIORITIES[v.toLowerCase() as keyof typeof PRIORITIES];
  }
  problems.push({ task, field: "priority", message: `${label}: "priority" must be a number or one of ${Object.keys(PRIORITIES).join(", ")}` });
  return PRIORITIES.normal;
}

const BACKOFFS: readonly Backoff[] = ["fixed", "linear", "exponential"];

function parseRetry(v: unknown, label: string, task: string, problems: FieldProblem[]): RetryPolicy | undefined {
  const bad = (field: string, want: string): void => {
    problems.push({ task, field: `retry.${field}`, message: `${label}: "retry.${field}" must be ${want}` });
  };
  if (typeof v === "number") v = { max_attempts: v };
  if (!isObject(v)) {
    problems.push({ task, field: "retry", message: `${label}: "retry" must be a mapping (max_attempts, backoff, ...)` });
    return undefined;
  }
  let maxAttempts = 3;
  const ma = v.max_attempts ?? v.attempts;
  if (ma !== undefined) {
    if (typeof ma === "number" && Number.isInteger(ma) && ma >= 1) maxAttempts = ma;
    else bad("max_attempts", "a whole number of at least 1");
  }
  let backoff: Backoff = "exponential";
  const bo = v.backoff ?? v.backoff_strategy ?? v.strategy;
  if (bo !== undefined) {
    if (typeof bo === "string" && (BACKOFFS as readonly string[]).includes(bo)) backoff = bo as Backoff;
    else bad("backoff", `one of ${BACKOFFS.join(", ")}`);
  }
  const sec = (field: string, raw: unknown, dflt: number): number => {
    if (raw === undefined) return dflt;
    if (typeof raw === "number" && Number.isFinite(raw) && raw >= 0) return Math.round(raw * 1000);
    bad(field, "a number of seconds, 0 or more");
    return dflt;
  };
  const delayKey = ["initial_delay", "base_delay", "delay"].find((k) => v[k] !== undefined) ?? "initial_delay";
  const delayMs = sec(delayKey, v[delayKey], 1000);
  const maxDelayMs = sec("max_delay", v.max_delay, 300_000);
  let jitter = 0;
  if (v.jitter !== undefined) {
    if (typeof v.jitter === "boolean") jitter = v.jitter ? 0.5 : 0;
    else if (typeof v.jitter === "number" && v.jitter >= 0 && v.jitter <= 1) jitter = v.jitter;
    else bad("jitter", "true, false or a fraction from 0 to 1");
  }
  const codes = (field: string, raw: unknown): string[] | undefined => {
    if (raw === undefined) return undefined;
    if (Array.isArray(raw) && raw.every((c) => typeof c === "string" || typeof c === "number")) return raw.map(String);
    bad(field, "a list of error codes");
    return undefined;
  };
  const retryOnKey = ["retry_on", "retryable_errors", "retry_on_codes"].find((k) => v[k] !== undefined) ?? "retry_on";
  const nonKey = ["non_retryable", "non_retryable_errors", "non_retryable_codes"].find((k) => v[k] !== undefined) ?? "non_retryable";
  const retryOn = codes(retryOnKey, v[retryOnKey]);
  const policy: { -readonly [K in keyof RetryPolicy]: RetryPolicy[K] } = {
    maxAttempts,
    backoff,
    delayMs,
    maxDelayMs,
    jitter,
    nonRetryable: codes(nonKey, v[nonKey]) ?? [],
  };
  if (retryOn) policy.retryOn = retryOn;
  return policy;
}
