/**
 * The child side of a run with `isolate: "process"` (see `createProcessRunner` in
 * `core/runs/engine.ts`): started as `deno run -A run-child.ts` by a Deno or a Bun host, one
 * process per run. It reads one request line from stdin, runs the script from a fresh process,
 * and reports to the host in lines on stderr that start with a marker holding the request's
 * nonce (so nothing the script prints can pass for one). The script's own stdout and stderr
 * reach the host as they are, direct writes included.
 *
 * The script is the user's own code, so the process has every permission (`-A`).
 * @module
 */

import type { LogFields, Logger, LogLevel } from "../../core/logger.ts";
import { type RunnerMessage, toWireError } from "../../core/runs/_protocol.ts";
import { callScript, type ScriptCall } from "../../core/runs/script.ts";

const encoder = new TextEncoder();
// Taken before the script runs, so a script that replaces them cannot cut the channel.
const stderr = Deno.stderr;
const writeSync = Deno.stderr.writeSync.bind(Deno.stderr);
const exit: (code?: number) => never = Deno.exit;

/** The request line the host writes. */
interface ChildRequest {
  readonly nonce: string;
  readonly call: ScriptCall;
  readonly waitForGo: boolean;
}

function sender(nonce: string): (message: RunnerMessage) => void {
  const marker = `\u001eKEEL-RUN-${nonce} `;
  return (message) => {
    let text: string;
    try {
      text = JSON.stringify(message);
    } catch {
      if (message.type !== "log") throw new Error("unreachable: results are checked before");
      text = JSON.stringify({ ...message, fields: undefined });
    }
    const bytes = encoder.encode(`${marker}${text}\n`);
    for (let done = 0; done < bytes.length;) done += writeSync.call(stderr, bytes.subarray(done));
  };
}

/**
 * Reads stdin line by line, with `Deno.stdin.read`: `Deno.stdin.readable` would load the web
 * streams machinery, which costs several milliseconds of every run's start.
 */
async function* lines(): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  const chunk = new Uint8Array(64 * 1024);
  let buffered = "";
  for (;;) {
    const n = await Deno.stdin.read(chunk);
    if (n === null) return;
    buffered += decoder.decode(chunk.subarray(0, n), { stream: true });
    let at: number;
    while ((at = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
    }
  }
}

async function main(): Promise<void> {
  const input = lines();
  const first = await input.next();
  if (first.done === true) exit(2);
  const request = JSON.parse(first.value) as ChildRequest;
  const send = sender(request.nonce);
  const at = (level: LogLevel) => (message: string, fields?: LogFields): void =>
    send(
      fields === undefined
        ? { type: "log", id: 0, level, message }
        : { type: "log", id: 0, level, message, fields },
    );
  const logger: Logger = {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
  };
  try {
    const { value } = await callScript(request.call, {
      logger,
      beforeCall: async (resolved) => {
        send({ type: "resolved", id: 0, resolved });
        if (request.waitForGo) await input.next();
      },
    });
    send({ type: "done", id: 0, ok: true, value });
  } catch (e) {
    send({ type: "done", id: 0, ok: false, error: toWireError(e) });
  }
  // Timers or handles the script left open must not keep the run alive.
  exit(0);
}

if (import.meta.main) await main();
