/**
 * What a script may return: plain JSON data, so the same value comes back from every isolation
 * mode (in-process, a worker, a subprocess) and is stored in `result.json` unchanged.
 * @module
 */

import { KeelError } from "../errors.ts";

/** Where in a value a bad part sits, as a JS-like path: `result.metrics[2].loss`. */
function at(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function describe(value: unknown): string {
  if (typeof value === "function") return "a function";
  if (typeof value === "symbol") return "a symbol";
  if (typeof value === "bigint") return "a BigInt";
  if (typeof value === "number") return String(value);
  const proto = Object.getPrototypeOf(value);
  const name = proto?.constructor?.name;
  return typeof name === "string" && name !== ""
    ? `a ${name}`
    : "an object with a custom prototype";
}

const ADVICE: Readonly<Record<string, string>> = {
  "a function": "return data, not functions",
  "a symbol": "return data, not symbols",
  "a BigInt": "convert it with Number() or String()",
  "a Date": "convert it with .toISOString()",
  "a Map": "convert it with Object.fromEntries()",
  "a Set": "convert it with Array.from()",
};

/**
 * Checks that `value` survives both `structuredClone` and a JSON round trip unchanged: `null`,
 * booleans, strings, finite numbers, arrays and plain objects of those. `undefined` is allowed at
 * the top (no result) and as an object property (dropped, as JSON does); the result is true when
 * there is such a property, so the caller can drop it too and every isolation mode returns the
 * same value.
 *
 * @throws {KeelError} `E_SCRIPT_RESULT` naming the path to the first bad part (a cycle, a
 *   function, a symbol, a BigInt, NaN or ±Infinity, a Date, Map, Set, typed array or class
 *   instance) and what to do about it.
 * @example
 * ```ts
 * import { checkResult } from "./result.ts";
 * checkResult({ loss: 0.1, tags: ["a"] });
 * try {
 *   checkResult({ metrics: [{ loss: 1n }] });
 *   throw new Error("unreachable");
 * } catch (e) {
 *   if (!String(e).includes("result.metrics[0].loss")) throw e;
 * }
 * ```
 */
export function checkResult(value: unknown, options: { script?: string } = {}): boolean {
  const script = options.script ?? "the script";
  const bad = (path: string, what: string, advice: string): KeelError =>
    new KeelError(
      "E_SCRIPT_RESULT",
      `Script "${script}" returned a value that cannot be stored as JSON: ${path} is ${what}; ${advice}`,
      { details: { path, found: what } },
    );
  const ancestors: object[] = [];
  let dropped = false;
  const walk = (v: unknown, path: string, inObject: boolean): void => {
    switch (typeof v) {
      case "string":
      case "boolean":
        return;
      case "undefined":
        if (path === "result") return;
        if (inObject) {
          dropped = true;
          return;
        }
        throw bad(path, "undefined", "use null in arrays");
      case "number":
        if (Number.isFinite(v)) return;
        throw bad(path, String(v), "JSON has no NaN or Infinity; return null or a string");
      case "object":
        break;
      default: {
        const what = describe(v);
        throw bad(path, what, ADVICE[what] ?? "return plain data");
      }
    }
    if (v === null) return;
    if (ancestors.includes(v)) {
      throw bad(
        path,
        "a reference back to one of its own parents (a cycle)",
        "return a tree, not a graph",
      );
    }
    const proto = Object.getPrototypeOf(v);
    const isArray = Array.isArray(v);
    if (!isArray && proto !== Object.prototype && proto !== null) {
      const what = describe(v);
      throw bad(path, what, ADVICE[what] ?? "return plain objects and arrays");
    }
    ancestors.push(v);
    if (isArray) {
      for (let i = 0; i < v.length; i++) walk(v[i], at(path, i), false);
    } else {
      for (const key of Object.keys(v)) {
        walk((v as Record<string, unknown>)[key], at(path, key), true);
      }
      if (Object.getOwnPropertySymbols(v).length > 0) {
        throw bad(path, "an object with symbol keys", "use string keys");
      }
    }
    ancestors.pop();
  };
  walk(value, "result", false);
  return dropped;
}
