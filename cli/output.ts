/**
 * Terminal output for the CLI: a consola instance whose lines go to stderr (stdout is kept for
 * results, so `--json` output can be piped), a kernel Logger on top of it, and the error report
 * every command ends with on failure.
 * @module
 */

import process from "node:process";
import { type ConsolaInstance, type ConsolaReporter, createConsola, type LogObject } from "consola";
import { inspect } from "node:util";
import { errorMessage, KeelError, type LogFields, type Logger } from "../core/mod.ts";

/** How the CLI writes: colors only on a terminal and without NO_COLOR. */
export interface OutputOptions {
  /** Show debug lines and stack traces (`--debug` or `KEEL_DEBUG=1`). */
  readonly debug?: boolean;
  readonly colors?: boolean;
}

const ICONS: Record<string, string> = {
  error: "✖",
  fatal: "✖",
  fail: "✖",
  warn: "⚠",
  info: "ℹ",
  success: "✔",
  ready: "✔",
  start: "◐",
  debug: "⚙",
  trace: "→",
};

const COLORS: Record<string, number> = {
  error: 31,
  fatal: 31,
  fail: 31,
  warn: 33,
  info: 36,
  success: 32,
  ready: 32,
  start: 35,
  debug: 90,
  trace: 90,
};

/** True when stderr is a terminal and NO_COLOR is not set. */
export function colorsWanted(): boolean {
  const noColor = process.env.NO_COLOR;
  return process.stderr.isTTY === true && (noColor === undefined || noColor === "") &&
    process.env.TERM !== "dumb";
}

function paint(text: string, code: number | undefined, on: boolean): string {
  return on && code !== undefined ? `\u001b[${code}m${text}\u001b[39m` : text;
}

/**
 * A reporter that prints `<icon> [tag] message`, one line per call, on stderr. Deterministic
 * (the same in a terminal, a pipe or a test run), unlike consola's environment-dependent default.
 */
export function createLineReporter(colors: boolean): ConsolaReporter {
  return {
    log(logObj: LogObject) {
      const icon = ICONS[logObj.type] ?? "";
      const text = logObj.args.map((
        a,
      ) => (typeof a === "string" ? a : inspect(a, { colors, depth: 4 }))).join(" ");
      const tag = logObj.tag ? paint(`[${logObj.tag}]`, 90, colors) + " " : "";
      const head = icon ? paint(icon, COLORS[logObj.type], colors) + " " : "";
      process.stderr.write(`${head}${tag}${text}\n`);
    },
  };
}

/** Creates the CLI's consola: info level (debug with `debug`), lines on stderr. */
export function createCliConsola(options: OutputOptions = {}): ConsolaInstance {
  return createConsola({
    level: options.debug ? 4 : 3,
    reporters: [createLineReporter(options.colors ?? colorsWanted())],
  });
}

/** A kernel {@link Logger} that writes through consola; a `plugin` field becomes the tag. */
export function createConsolaLogger(
  out: ConsolaInstance,
  fields: LogFields = {},
  debug = false,
): Logger {
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
    child: (more) => createConsolaLogger(out, { ...fields, ...more }, debug),
  };
}

/** Writes to stdout and resolves once the text is handed to the OS (safe to exit after). */
export function writeStdout(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (error) => (error ? reject(error) : resolve()));
  });
}

/** The exit code for an error: 2 for usage errors, 1 for everything else. */
export function exitCodeFor(e: unknown): number {
  return KeelError.is(e, "E_CLI_USAGE") ? 2 : 1;
}

/**
 * Prints an error the way every command ends on failure: `✖ <message>`, then `code: E_...`;
 * the stack (and causes) only with `debug`.
 */
export function reportError(out: ConsolaInstance, e: unknown, options: OutputOptions = {}): void {
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
