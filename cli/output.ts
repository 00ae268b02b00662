/**
 * Terminal output for the CLI: lines on stderr (stdout is kept for results, so `--json` output
 * can be piped), a kernel Logger on top of them, and the error report every command ends with
 * on failure.
 *
 * The output is consola, from its `core` entry with a reporter of ours that writes through the
 * Runtime port (`writeStderr`, `inspect`, `isTerminal`): consola's main entry would boot Deno's
 * Node compatibility layer (`node:process`, `node:tty`, `node:util`) on every start.
 * @module
 */

import { createConsola, type LogObject } from "consola/core";
// Direct imports, not core/mod.ts: every command loads this file, `keel --version` included.
import { errorMessage, KeelError } from "../core/errors.ts";
import type { LogFields, Logger } from "../core/logger.ts";
import type { Runtime } from "../core/runtime.ts";

/** How the CLI writes: colors only on a terminal and without NO_COLOR. */
export interface OutputOptions {
  /** Show debug lines and stack traces (`--debug` or `KEEL_DEBUG=1`). */
  readonly debug?: boolean;
  readonly colors?: boolean;
}

/** What the output needs from the runtime. */
export type OutputRuntime = Pick<Runtime, "env" | "isTerminal" | "writeStderr" | "inspect">;

/** True when `stream` (default stderr) is a terminal, NO_COLOR is not set and TERM is not dumb. */
export function colorsWanted(
  runtime: Pick<Runtime, "env" | "isTerminal">,
  stream: "stdout" | "stderr" = "stderr",
): boolean {
  const noColor = runtime.env.get("NO_COLOR");
  return runtime.isTerminal(stream) && (noColor === undefined || noColor === "") &&
    runtime.env.get("TERM") !== "dumb";
}

function paint(text: string, code: number | undefined, on: boolean): string {
  return on && code !== undefined ? `\u001b[${code}m${text}\u001b[39m` : text;
}

/** The CLI's human-readable output: one line per call, on stderr. */
export interface CliOutput {
  error(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  info(...args: unknown[]): void;
  success(...args: unknown[]): void;
  /** Shown only with `--debug`. */
  debug(...args: unknown[]): void;
  /** A line without an icon. */
  log(...args: unknown[]): void;
  /** The same output with `[tag]` before each line (`[outer:inner]` when nested). */
  withTag(tag: string): CliOutput;
}

/** The icon and color of each consola log type the CLI uses; other types print plain. */
const KINDS: Readonly<Record<string, { icon: string; color: number | undefined }>> = {
  error: { icon: "✖", color: 31 },
  fatal: { icon: "✖", color: 31 },
  warn: { icon: "⚠", color: 33 },
  log: { icon: "", color: undefined },
  info: { icon: "ℹ", color: 36 },
  start: { icon: "◐", color: 35 },
  success: { icon: "✔", color: 32 },
  ready: { icon: "✔", color: 32 },
  debug: { icon: "⚙", color: 90 },
};

/**
 * Creates the CLI's output: a consola instance whose lines are `<icon> [tag] message` on stderr,
 * at info level (debug with `debug`), colored when `colors` (default: stderr is a terminal
 * without NO_COLOR). Values that are not strings are inspected by the runtime.
 */
export function createCliOutput(runtime: OutputRuntime, options: OutputOptions = {}): CliOutput {
  const colors = options.colors ?? colorsWanted(runtime);
  const reporter = {
    log(entry: LogObject): void {
      const { icon, color } = KINDS[entry.type] ?? { icon: "", color: undefined };
      const text = entry.args.map((a) =>
        typeof a === "string" ? a : runtime.inspect(a, { colors, depth: 4 })
      ).join(" ");
      const head = icon ? paint(icon, color, colors) + " " : "";
      const label = entry.tag ? paint(`[${entry.tag}]`, 90, colors) + " " : "";
      runtime.writeStderr(`${head}${label}${text}\n`);
    },
  };
  // throttle 0: every line is printed, none folded into "repeated N times".
  return createConsola({ level: options.debug ? 4 : 3, reporters: [reporter], throttle: 0 });
}

/** A kernel {@link Logger} that writes through the CLI output; a `plugin` field becomes the tag. */
export function createCliLogger(out: CliOutput, fields: LogFields = {}, debug = false): Logger {
  const tagged = typeof fields.plugin === "string" ? out.withTag(fields.plugin) : out;
  const line = (message: string, more?: LogFields): string => {
    if (!debug) return message;
    const extra = { ...fields, ...more };
    delete (extra as Record<string, unknown>).plugin;
    return Object.keys(extra).length ? `${message} ${JSON.stringify(extra)}` : message;
  };
  return {
    debug: (m, f) => tagged.debug(line(m, f)),
    info: (m, f) => tagged.info(line(m, f)),
    warn: (m, f) => tagged.warn(line(m, f)),
    error: (m, f) => tagged.error(line(m, f)),
    child: (more) => createCliLogger(out, { ...fields, ...more }, debug),
  };
}

/**
 * Prints an error the way every command ends on failure: `✖ <message>`, then `code: E_...`;
 * the stack (and causes) only with `debug`.
 */
export function reportError(out: CliOutput, e: unknown, options: OutputOptions = {}): void {
  if (KeelError.is(e)) {
    out.error(e.message);
    out.log(`  code: ${e.code}`);
    if (e.code === "E_CLI_USAGE") out.log("  See keel --help");
  } else {
    out.error(`Unexpected error: ${errorMessage(e)}`);
    if (!options.debug) out.log("  Run again with --debug (or KEEL_DEBUG=1) for the stack trace");
  }
  if (options.debug) {
    let cause: unknown = e;
    for (let depth = 0; cause !== undefined && depth < 5; depth++) {
      out.log(cause instanceof Error && cause.stack ? cause.stack : String(cause));
      cause = cause instanceof Error ? cause.cause : undefined;
      if (cause !== undefined) out.log("caused by:");
    }
  }
}
