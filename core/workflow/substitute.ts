/**
 * `${task.path}` references in task params: finding them (for validation) and replacing them
 * with earlier results (at run time).
 *
 * - A string that is exactly one reference keeps the referenced value's type.
 * - A reference inside a longer string is stringified: strings as they are, objects and arrays as
 *   JSON, `null` as "null".
 * - Paths: `.key` and `[index]`. A leading `.result` is skipped when the task's result is not an
 *   object with a `result` key, so `${t.result.count}` works whether an executor returns
 *   `{ result: { count } }` (Gleitzeit's shape) or `{ count }`.
 * - `${NAME}` where NAME names no task and has no `.`/`[` (a shell variable) is left as text;
 *   anything else that does not resolve is an error, never passed on as literal `${...}` text.
 * @module
 */

import { KeelError } from "../errors.ts";

const REF = /\$\{([^{}]+)\}/g;
const WHOLE = /^\$\{([^{}]+)\}$/;

/** One parsed reference. */
export interface Reference {
  /** The text between `${` and `}`. */
  readonly text: string;
  readonly taskId: string;
  readonly path: readonly (string | number)[];
}

/**
 * Splits the inside of a `${...}` into a task id and a path. `ids` are the known task ids; the
 * longest one that prefixes the text wins (so ids may hold dots or hyphens). Returns undefined
 * when no known id fits; `looksLikeTask` then tells whether it was meant as a task reference.
 */
export function parseReference(text: string, ids: ReadonlySet<string>): Reference | undefined {
  let best: string | undefined;
  for (let i = text.length; i > 0; i--) {
    if (i < text.length && text[i] !== "." && text[i] !== "[") continue;
    const head = text.slice(0, i);
    if (ids.has(head)) {
      best = head;
      break;
    }
  }
  if (best === undefined) return undefined;
  const path = parsePath(text.slice(best.length));
  return path === undefined ? undefined : { text, taskId: best, path };
}

/** The task id a reference that names no known task seems to mean (before the first `.`/`[`). */
export function referenceHead(text: string): string | undefined {
  const m = /^([^.[]+)[.[]/.exec(text);
  return m?.[1];
}

function parsePath(rest: string): (string | number)[] | undefined {
  const out: (string | number)[] = [];
  const re = /\.([^.[\]]+)|\[(\d+)\]/y;
  let at = 0;
  while (at < rest.length) {
    re.lastIndex = at;
    const m = re.exec(rest);
    if (!m) return undefined;
    out.push(m[1] !== undefined ? m[1] : Number(m[2]));
    at = re.lastIndex;
  }
  return out;
}

/** Every `${...}` text in a value (strings inside objects and arrays included). */
export function findReferenceTexts(value: unknown, out: string[] = []): string[] {
  if (typeof value === "string") {
    for (const m of value.matchAll(REF)) out.push(m[1]!);
  } else if (Array.isArray(value)) {
    for (const v of value) findReferenceTexts(v, out);
  } else if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) findReferenceTexts(v, out);
  }
  return out;
}

/** Whether `${text}` is meant as a task reference even though it names no known task. */
export function looksLikeTaskReference(text: string): boolean {
  return /[.[]/.test(text);
}

/** Reads `path` from a task's result (see the module docs for the optional `.result`). */
export function resolveReferencePath(result: unknown, path: readonly (string | number)[], ref: string): unknown {
  let segs = path;
  if (segs[0] === "result" && !(isRecord(result) && Object.hasOwn(result, "result"))) segs = segs.slice(1);
  let cur = result;
  for (const seg of segs) {
    if (typeof seg === "number" ? Array.isArray(cur) && seg < cur.length : isRecord(cur) && Object.hasOwn(cur, seg)) {
      cur = (cur as Record<string | number, unknown>)[seg];
    } else {
      throw new KeelError("E_WORKFLOW_BAD_REFERENCE", `Reference "\${${ref}}" does not resolve: the result has no ${typeof seg === "number" ? `index ${seg}` : `key "${seg}"`}; check the path against the task's result`, {
        details: { reference: ref, segment: seg },
      });
    }
  }
  return cur;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Options for {@link substitute}. */
export interface SubstituteOptions {
  /** Every task id of the workflow. */
  readonly ids: ReadonlySet<string>;
  /**
   * The result of a task that may be referenced: `{ value }`, or undefined when the task may not be
   * referenced here (not a dependency, or no result yet).
   */
  readonly lookup: (taskId: string) => { readonly value: unknown } | undefined;
}

/**
 * Replaces every reference in `value` (deeply; object keys are left alone).
 * @throws {KeelError} `E_WORKFLOW_BAD_REFERENCE` when a reference does not resolve.
 *
 * @example
 * ```ts
 * import { substitute } from "./substitute.ts";
 * const results: Record<string, unknown> = { sum: { result: 100 } };
 * const out = substitute({ a: "${sum.result}", s: "Sum was ${sum.result}" }, {
 *   ids: new Set(["sum"]),
 *   lookup: (id) => (id in results ? { value: results[id] } : undefined),
 * });
 * console.assert(JSON.stringify(out) === '{"a":100,"s":"Sum was 100"}');
 * ```
 */
export function substitute(value: unknown, options: SubstituteOptions): unknown {
  if (typeof value === "string") return substituteString(value, options);
  if (Array.isArray(value)) return value.map((v) => substitute(v, options));
  if (isRecord(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, options);
    return out;
  }
  return value;
}

function resolveText(text: string, options: SubstituteOptions): { value: unknown } | undefined {
  const ref = parseReference(text, options.ids);
  if (ref === undefined) {
    if (!looksLikeTaskReference(text)) return undefined;
    throw new KeelError("E_WORKFLOW_BAD_REFERENCE", `Reference "\${${text}}" names no task of this workflow; check the task id`, {
      details: { reference: text },
    });
  }
  const found = options.lookup(ref.taskId);
  if (found === undefined) {
    throw new KeelError("E_WORKFLOW_BAD_REFERENCE", `Reference "\${${text}}" names task "${ref.taskId}", which has no result here: make it a dependency`, {
      details: { reference: text, task: ref.taskId },
    });
  }
  // A task that failed with continue_on_error has a null result: every path into it is null.
  if (found.value === null) return { value: null };
  return { value: resolveReferencePath(found.value, ref.path, text) };
}

function substituteString(s: string, options: SubstituteOptions): unknown {
  if (!s.includes("${")) return s;
  const whole = WHOLE.exec(s);
  if (whole) {
    const r = resolveText(whole[1]!, options);
    return r === undefined ? s : r.value;
  }
  return s.replace(REF, (all, text: string) => {
    const r = resolveText(text, options);
    if (r === undefined) return all;
    return stringify(r.value);
  });
}

function stringify(v: unknown): string {
  if (typeof v === "string") return v;
  if (v === undefined) return "null";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
