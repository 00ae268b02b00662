/**
 * The Executor port: runs one method of a protocol (`script/v1`, `python/v1`, `shell/v1`, ...).
 * Executors are found through the `resolveExecutor` hook.
 * @module
 */

/** What an executor is asked to do. */
export interface ExecuteRequest {
  /** e.g. "script/run", "python/execute". */
  readonly method: string;
  readonly params: Readonly<Record<string, unknown>>;
  /** Aborted on timeout or cancellation; executors must stop work and release resources. */
  readonly signal?: AbortSignal;
}

/** Runs the methods of one protocol. */
export interface Executor {
  /** e.g. "script/v1". */
  readonly protocol: string;
  /** Methods it accepts; used to validate workflows before they run. */
  readonly methods: readonly string[];
  execute(request: ExecuteRequest): Promise<unknown>;
}
