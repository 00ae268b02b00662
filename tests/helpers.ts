/**
 * Assertions the test files share. Test code only: it may use `node:*`.
 * @module
 */

import assert from "node:assert/strict";
import process from "node:process";
import { type ErrorCodeName, KeelError } from "../core/errors.ts";

/**
 * Asserts that `work` rejects with a KeelError of `code` whose message matches every pattern;
 * returns the error for further checks.
 */
export async function rejectsWith(
  work: Promise<unknown>,
  code: ErrorCodeName,
  ...patterns: RegExp[]
): Promise<KeelError> {
  try {
    await work;
  } catch (e) {
    assert.ok(KeelError.is(e), `expected a KeelError ${code}, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of patterns) assert.match(e.message, p);
    return e;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

/** True while a process with `pid` exists (signal 0 probes without sending anything). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}

/**
 * The first line a stream carries (a server's "listening" line), without its newline; undefined
 * when the stream ends first. The rest of the stream is left unread.
 */
export async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string | undefined> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) break;
    text += value;
  }
  reader.releaseLock();
  const at = text.indexOf("\n");
  return at < 0 ? undefined : text.slice(0, at);
}
