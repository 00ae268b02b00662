/**
 * Console capture for runs in this realm (in-process, or inside a run worker): `console.*` is
 * replaced for the duration of a run and each call becomes a line of text on "stdout" or
 * "stderr", as the host's console would route it.
 *
 * Only `console` is captured: a script that writes to the process's streams directly
 * (`Deno.stdout.write`, `process.stdout.write`, `Bun.write(Bun.stdout, ...)`) bypasses it. Runs
 * with `isolate: "process"` capture everything, since the child's streams are read whole.
 * @module
 */

/** Which stream a line of output went to. */
export type OutputStream = "stdout" | "stderr";

/** Receives captured output, one console call at a time, newline included. */
export type OutputSink = (stream: OutputStream, text: string) => void;

/** How `console` methods map to streams (the routing Deno, Node and Bun use). */
const METHODS: Readonly<Record<string, OutputStream>> = {
  log: "stdout",
  info: "stdout",
  debug: "stdout",
  dir: "stdout",
  dirxml: "stdout",
  table: "stdout",
  trace: "stderr",
  warn: "stderr",
  error: "stderr",
};

/** Renders a non-string console argument; `inspect` when the host gives one, else JSON-ish. */
export function formatArgs(args: readonly unknown[], inspect?: (value: unknown) => string): string {
  return args.map((a) => {
    if (typeof a === "string") return a;
    if (inspect) return inspect(a);
    if (a instanceof Error) return a.stack ?? `${a.name}: ${a.message}`;
    if (typeof a === "object" && a !== null) {
      try {
        return JSON.stringify(a, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
      } catch {
        return String(a);
      }
    }
    return typeof a === "bigint" ? `${a}n` : String(a);
  }).join(" ");
}

/**
 * Replaces `console.*` so output goes to `sink`; returns the function that puts the originals
 * back. `console.assert` and `console.count` keep working through the replaced methods.
 *
 * @example
 * ```ts
 * import { captureConsole } from "./capture.ts";
 * const lines: string[] = [];
 * const restore = captureConsole((stream, text) => lines.push(`${stream}:${text}`));
 * try {
 *   console.log("loss", 0.5);
 *   console.error("oops");
 * } finally {
 *   restore();
 * }
 * if (lines.join("") !== "stdout:loss 0.5\nstderr:oops\n") throw new Error(lines.join(""));
 * ```
 */
export function captureConsole(
  sink: OutputSink,
  options: { inspect?: (value: unknown) => string } = {},
): () => void {
  const target = console as unknown as Record<string, unknown>;
  const saved = new Map<string, unknown>();
  for (const [method, stream] of Object.entries(METHODS)) {
    saved.set(method, target[method]);
    target[method] = (...args: unknown[]): void => {
      let text = formatArgs(args, options.inspect);
      if (method === "trace") text = `Trace${text === "" ? "" : `: ${text}`}`;
      sink(stream, text + "\n");
    };
  }
  saved.set("assert", target.assert);
  target.assert = (condition: unknown, ...args: unknown[]): void => {
    if (condition) return;
    const text = formatArgs(args, options.inspect);
    sink("stderr", `Assertion failed${text === "" ? "" : `: ${text}`}\n`);
  };
  let restored = false;
  return () => {
    if (restored) return;
    restored = true;
    for (const [method, fn] of saved) target[method] = fn;
  };
}
