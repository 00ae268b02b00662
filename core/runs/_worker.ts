/**
 * The entry of a run worker (`isolate: "worker"`): a module Web Worker that runs one script call
 * at a time, each from a fresh instance of the module, and reports its console output, log lines
 * and outcome to the host by `postMessage`. Web-standard only, like the rest of `core/`.
 * @module
 */

import type { LogFields, Logger, LogLevel } from "../logger.ts";
import { captureConsole } from "./capture.ts";
import { fromWireError, type HostMessage, type RunnerMessage, toWireError } from "./_protocol.ts";
import { callScript, type ResolvedCall } from "./script.ts";

interface WorkerScope {
  postMessage(message: RunnerMessage): void;
  addEventListener(type: "message", listener: (event: MessageEvent<HostMessage>) => void): void;
}

const scope = globalThis as unknown as WorkerScope;
let current = -1;
const goes = new Map<number, () => void>();
const cancels = new Map<number, AbortController>();

function post(message: RunnerMessage): void {
  scope.postMessage(message);
}

// Console output belongs to the call that is running; a worker runs one at a time.
captureConsole((stream, text) => post({ type: "output", id: current, stream, text }));

function loggerFor(id: number): Logger {
  const at = (level: LogLevel) => (message: string, fields?: LogFields): void => {
    let safe: LogFields | undefined;
    try {
      safe = fields === undefined ? undefined : structuredClone(fields);
    } catch {
      safe = undefined;
    }
    post(
      safe === undefined
        ? { type: "log", id, level, message }
        : { type: "log", id, level, message, fields: safe },
    );
  };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

async function run(message: Extract<HostMessage, { type: "run" }>): Promise<void> {
  const { id, call } = message;
  current = id;
  const controller = new AbortController();
  cancels.set(id, controller);
  try {
    const { value } = await callScript(call, {
      logger: loggerFor(id),
      signal: controller.signal,
      beforeCall: (resolved: ResolvedCall) => {
        post({ type: "resolved", id, resolved });
        if (!message.waitForGo) return;
        return new Promise<void>((resolve) => goes.set(id, resolve));
      },
    });
    post({ type: "done", id, ok: true, value });
  } catch (e) {
    post({ type: "done", id, ok: false, error: toWireError(e) });
  } finally {
    cancels.delete(id);
    goes.delete(id);
  }
}

scope.addEventListener("message", (event) => {
  const message = event.data;
  if (message.type === "run") void run(message);
  else if (message.type === "go") goes.get(message.id)?.();
  else if (message.type === "cancel") cancels.get(message.id)?.abort(fromWireError(message.error));
});
