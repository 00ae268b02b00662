/**
 * Shapes model-written code into one function expression that a sandbox can call as
 * `(<code>)()`, as codemode's `normalizeCode` does. No parser: a few exact, documented rules.
 * @module
 */

const FENCE_OPEN = /^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*$/m;
const FENCE_CLOSE = /^[ \t]*```[ \t]*$/m;
const FUNCTION_HEAD = [
  /^(?:async\s+)?function\b/,
  /^(?:async\s*)?\([^()]*\)\s*(?::[^=]*?)?=>/,
  /^(?:async\s+)?[A-Za-z_$][\w$]*\s*=>/,
];
const STATEMENT_START =
  /^(?:(?:return|const|let|var|if|for|while|do|switch|try|throw|function|class|import|export|break|continue|debugger|using)(?![\w$])|[{;]|\/\/|\/\*)/;

/** Removes Markdown code fences: the content of the first fenced block, or the text as is. */
export function stripCodeFences(text: string): string {
  const open = FENCE_OPEN.exec(text);
  if (open === null) return text;
  const rest = text.slice(open.index + open[0].length + 1);
  const close = FENCE_CLOSE.exec(rest);
  return close === null ? rest : rest.slice(0, close.index);
}

/**
 * Returns `text` as the source of one function expression, by these rules, in order:
 * 1. The content of the first Markdown code fence (three backticks with any language tag, `js`,
 *    `ts`, `javascript` or none) is taken when there is one; a fence left unclosed runs to the end.
 *    Text outside the fence (a model's prose) is dropped.
 * 2. The result is trimmed, and a leading `export default ` is removed.
 * 3. Empty code becomes `async () => {}`.
 * 4. Code that starts like a function expression (`async () =>`, `(a) =>`, `x =>`,
 *    `async function`, `function`) is kept as it is, less one trailing `;`.
 * 5. A single line that does not start with a statement keyword (`return`, `const`, `if`, ...)
 *    and holds no `;` is an expression: it becomes `async () => {\nreturn (\n<line>\n);\n}`, so
 *    `await tools.weather({ city: "Oslo" })` returns its result.
 * 6. Anything else is a body of statements: `async () => {\n<code>\n}`. It must `return` its
 *    result. The code itself is never re-indented, so template literals keep their text.
 *
 * TypeScript is not transpiled here; a `ts` fence's content is returned as written.
 *
 * @example
 * ```ts
 * import { normalizeCode } from "./normalize.ts";
 * const fence = "`".repeat(3);
 * const code = normalizeCode(`${fence}js\nconst r = await tools.add({ a: 1, b: 2 });\nreturn r;\n${fence}`);
 * if (code !== "async () => {\nconst r = await tools.add({ a: 1, b: 2 });\nreturn r;\n}") throw new Error(code);
 * ```
 */
export function normalizeCode(text: string): string {
  if (typeof text !== "string") throw new TypeError("normalizeCode() takes a string");
  let code = stripCodeFences(text).trim();
  if (code.startsWith("export default ")) code = code.slice("export default ".length).trim();
  if (code === "" || code === ";") return "async () => {}";
  if (FUNCTION_HEAD.some((re) => re.test(code))) return code.endsWith(";") ? code.slice(0, -1).trimEnd() : code;
  const line = code.endsWith(";") ? code.slice(0, -1).trimEnd() : code;
  if (!line.includes("\n") && !line.includes(";") && !STATEMENT_START.test(line)) {
    return `async () => {\nreturn (\n${line}\n);\n}`;
  }
  return `async () => {\n${code}\n}`;
}
