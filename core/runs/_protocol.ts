/**
 * The messages between a host and a run worker or run subprocess, and how errors cross.
 * @module
 */

import { ErrorCode, type ErrorCodeName, KeelError, type KeelErrorJson } from "../errors.ts";
import type { LogLevel } from "../logger.ts";
import type { OutputStream } from "./capture.ts";
import type { ResolvedCall, ScriptCall } from "./script.ts";

/** An error as it crosses: the KeelError's JSON plus the stacks, for `--debug`. */
export interface WireError extends KeelErrorJson {
  readonly stack?: string;
  readonly causeStack?: string;
}

/** Host to runner. */
export type HostMessage =
  | {
    readonly type: "run";
    readonly id: number;
    readonly call: ScriptCall;
    readonly waitForGo: boolean;
  }
  | { readonly type: "go"; readonly id: number }
  | { readonly type: "cancel"; readonly id: number; readonly error: WireError };

/** Runner to host. */
export type RunnerMessage =
  | {
    readonly type: "output";
    readonly id: number;
    readonly stream: OutputStream;
    readonly text: string;
  }
  | {
    readonly type: "log";
    readonly id: number;
    readonly level: LogLevel;
    readonly message: string;
    readonly fields?: Readonly<Record<string, unknown>>;
  }
  | { readonly type: "resolved"; readonly id: number; readonly resolved: ResolvedCall }
  | { readonly type: "done"; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly type: "done"; readonly id: number; readonly ok: false; readonly error: WireError };

/** Any thrown value as a {@link WireError}; non-Keel errors become `E_SCRIPT_FAILED`. */
export function toWireError(e: unknown): WireError {
  const error = KeelError.is(e)
    ? e
    : new KeelError("E_SCRIPT_FAILED", e instanceof Error ? e.message : String(e), { cause: e });
  const json = error.toJSON();
  const cause = error.cause;
  return {
    ...json,
    ...(error.stack === undefined ? {} : { stack: error.stack }),
    ...(cause instanceof Error && cause.stack !== undefined ? { causeStack: cause.stack } : {}),
  };
}

/** Rebuilds a KeelError from a {@link WireError}, its cause an Error with the original stack. */
export function fromWireError(wire: WireError): KeelError {
  const code: ErrorCodeName = Object.hasOwn(ErrorCode, wire.code) ? wire.code : "E_SCRIPT_FAILED";
  let cause: unknown;
  const c = wire.cause as
    | { name?: unknown; message?: unknown; code?: unknown }
    | string
    | undefined;
  if (typeof c === "object" && c !== null) {
    if (typeof c.code === "string" && c.name === "KeelError") {
      cause = KeelError.fromJSON(c as KeelErrorJson);
    } else {
      const err = new Error(typeof c.message === "string" ? c.message : String(c.message));
      if (typeof c.name === "string") err.name = c.name;
      cause = err;
    }
    if (wire.causeStack !== undefined && cause instanceof Error) cause.stack = wire.causeStack;
  } else if (c !== undefined) {
    cause = c;
  }
  const options: { cause?: unknown; details?: Readonly<Record<string, unknown>> } = {};
  if (cause !== undefined) options.cause = cause;
  if (wire.details !== undefined) options.details = wire.details;
  const error = new KeelError(code, wire.message, options);
  if (wire.stack !== undefined) error.stack = wire.stack;
  return error;
}
