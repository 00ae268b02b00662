/**
 * Process supervision shared by executors that run one child per call: a deadline, an abort
 * signal, stdin fed and closed, stdout and stderr read as text until the child exits and its pipes
 * drain. Web-standard only, so it runs wherever a `Runtime.spawn` does.
 * @module
 */

import type { ChildProcess, ProcessStatus } from "./runtime.ts";

/** Why {@link superviseProcess} killed a child: its deadline passed or its signal was aborted. */
export type StopReason = "timeout" | "abort";

/** Options of {@link superviseProcess}. */
export interface SuperviseOptions {
  /** Kill the child with SIGKILL after this many milliseconds; default no limit. */
  readonly timeoutMs?: number;
  /** Aborting it kills the child with SIGKILL. */
  readonly signal?: AbortSignal;
  /** Written to the child's stdin (when piped), which is then closed; default just closed. */
  readonly stdin?: string | Uint8Array;
  /** Called with each decoded chunk of stdout, as it arrives. */
  readonly onStdout?: (text: string) => void;
  /** Called with each decoded chunk of stderr, as it arrives. */
  readonly onStderr?: (text: string) => void;
  /**
   * How long, in milliseconds, output is still read after the child exits; then the readers are
   * cancelled. Default 250. It bounds the wait when a process the child started holds its pipes.
   */
  readonly drainGraceMs?: number;
}

/** How a supervised child ended. */
export interface SupervisedExit {
  readonly status: ProcessStatus;
  /** Set when {@link superviseProcess} killed the child; the first reason wins. */
  readonly stopped: StopReason | null;
}

/** The default of {@link SuperviseOptions.drainGraceMs}. */
export const DEFAULT_DRAIN_GRACE_MS = 250;

/**
 * Waits for `child` to exit, killing it (SIGKILL) when `timeoutMs` passes or `signal` aborts, and
 * reads its piped output until the pipes close or the drain grace period after the exit ends. It
 * resolves only once the output callbacks have had their last call. Processes the child started
 * are not killed; their hold on its pipes is let go of after the grace period.
 *
 * @example
 * ```ts
 * import { superviseProcess } from "./supervise.ts";
 * // A stand-in for what `ctx.spawn(cmd, { stdout: "piped" })` returns.
 * const child = {
 *   pid: 1,
 *   stdin: null,
 *   stdout: new Blob(["hi\n"]).stream(),
 *   stderr: null,
 *   status: Promise.resolve({ success: true, code: 0, signal: null }),
 *   kill() {},
 * };
 * let out = "";
 * const { status, stopped } = await superviseProcess(child, { timeoutMs: 5_000, onStdout: (text) => (out += text) });
 * if (out !== "hi\n" || !status.success || stopped !== null) throw new Error("unreachable");
 * ```
 */
export async function superviseProcess(
  child: ChildProcess,
  options: SuperviseOptions = {},
): Promise<SupervisedExit> {
  const { timeoutMs, signal, onStdout, onStderr } = options;
  let stopped: StopReason | null = null;
  const stop = (why: StopReason): void => {
    stopped ??= why;
    child.kill("SIGKILL");
  };
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => stop("timeout"), timeoutMs);
  const onAbort = (): void => stop("abort");
  if (signal?.aborted) stop("abort");
  else signal?.addEventListener("abort", onAbort, { once: true });

  const readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
  const pump = async (
    stream: ReadableStream<Uint8Array> | null,
    sink: ((text: string) => void) | undefined,
  ): Promise<void> => {
    if (stream === null) return;
    const reader = stream.getReader();
    readers.push(reader);
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const text = decoder.decode(value, { stream: true });
        if (text !== "") sink?.(text);
      }
    } catch {
      // Cancelled after the grace period, or the pipe broke: keep what arrived.
    }
    const rest = decoder.decode();
    if (rest !== "") sink?.(rest);
  };
  const drained = Promise.all([pump(child.stdout, onStdout), pump(child.stderr, onStderr)]);
  const fed = feed(child.stdin, options.stdin);

  let status: ProcessStatus;
  try {
    status = await child.status;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
  let grace: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    drained,
    new Promise<void>((resolve) => {
      grace = setTimeout(() => {
        for (const reader of readers) reader.cancel().catch(() => {});
        resolve();
      }, options.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS);
    }),
  ]);
  clearTimeout(grace);
  await drained;
  await fed;
  return { status, stopped };
}

async function feed(stdin: WritableStream<Uint8Array> | null, input: string | Uint8Array | undefined): Promise<void> {
  if (stdin === null) return;
  const writer = stdin.getWriter();
  try {
    const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
    if (bytes !== undefined && bytes.length > 0) await writer.write(bytes);
    await writer.close();
  } catch {
    // The child exited without reading all of its stdin; its status tells the rest.
  } finally {
    writer.releaseLock();
  }
}
