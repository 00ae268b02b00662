/**
 * The Logger port: the kernel and plugins log through it; the host picks the sink.
 * @module
 */

/** Severity levels, lowest first. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Structured fields attached to a log line. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Where log lines go. The CLI backs it with its stderr output; embedders bring their own. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger whose lines carry `fields` as well (for example `{ plugin: "metrics" }`). */
  child?(fields: LogFields): Logger;
}

/** A logger that drops everything: the default when embedding code gives none. */
export function createSilentLogger(): Logger {
  const drop = (): void => {};
  return { debug: drop, info: drop, warn: drop, error: drop };
}

/** A logger that records lines in memory; for tests and for replaying boot messages. */
export interface MemoryLogger extends Logger {
  readonly lines: { level: LogLevel; message: string; fields: LogFields }[];
}

/** Creates a {@link MemoryLogger}. */
export function createMemoryLogger(): MemoryLogger {
  const lines: MemoryLogger["lines"] = [];
  const at = (level: LogLevel) => (message: string, fields: LogFields = {}): void => {
    lines.push({ level, message, fields });
  };
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/** A child logger when the sink supports it, else one that merges `fields` itself. */
export function childLogger(logger: Logger, fields: LogFields): Logger {
  if (logger.child) return logger.child(fields);
  const merge = (level: LogLevel) => (message: string, more?: LogFields): void =>
    logger[level](message, { ...fields, ...more });
  return { debug: merge("debug"), info: merge("info"), warn: merge("warn"), error: merge("error") };
}
