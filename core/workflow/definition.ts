/**
 * The normalized shape of a workflow: what `parseWorkflow` returns, what `validateWorkflow`
 * checks, and what the engine stores (as JSON) and runs. Times are in milliseconds here; the
 * YAML/JSON files say seconds, as Gleitzeit's do.
 * @module
 */

/** How the wait between attempts grows. */
export type Backoff = "fixed" | "linear" | "exponential";

/** When and how a failed task is tried again. */
export interface RetryPolicy {
  /** Attempts in all, the first one included; 1 means no retry. */
  readonly maxAttempts: number;
  readonly backoff: Backoff;
  /** The wait after the first failed attempt. */
  readonly delayMs: number;
  /** The longest wait, whatever the backoff says. */
  readonly maxDelayMs: number;
  /** 0..1: the wait is shortened by up to this fraction, at random (0: no jitter). */
  readonly jitter: number;
  /** When set, only errors with one of these codes are retried. */
  readonly retryOn?: readonly string[];
  /** Errors with these codes are never retried. */
  readonly nonRetryable: readonly string[];
}

/** A task that fans out over files: one member task per file matching `pattern` in `directory`. */
export interface BatchSpec {
  /** Relative to the engine's working directory. */
  readonly directory: string;
  /** A file-name glob (`*`, `?`, `[abc]`); no `**`. */
  readonly pattern: string;
  /** Members running at once; unset: only the engine's limit applies. */
  readonly maxConcurrent?: number;
}

/** One task. */
export interface TaskDefinition {
  readonly id: string;
  readonly name?: string;
  /** e.g. "python/v1"; "" when neither given nor derivable from the method. */
  readonly protocol: string;
  /** e.g. "python/execute"; "" when missing (validation reports it). */
  readonly method: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly dependencies: readonly string[];
  readonly timeoutMs?: number;
  readonly retry?: RetryPolicy;
  /** Higher runs first among ready tasks; "low" 1, "normal" 2 (default), "high" 3, "urgent" 4, "critical" 5. */
  readonly priority: number;
  readonly continueOnError: boolean;
  readonly batch?: BatchSpec;
  /** Set by batch expansion on member tasks: the batch task's id and this member's file. */
  readonly member?: { readonly of: string; readonly index: number; readonly file: string };
  /** Set by batch expansion on the batch task: its members, in file order. */
  readonly members?: readonly string[];
}

/** A parsed workflow. */
export interface WorkflowDefinition {
  readonly name: string;
  readonly description?: string;
  readonly tasks: readonly TaskDefinition[];
  /** The whole run's time limit. */
  readonly timeoutMs?: number;
  /** Where it came from (a path or URL), for messages. */
  readonly source?: string;
}

/** Priority names Gleitzeit uses, as numbers (higher first). */
export const PRIORITIES = { low: 1, normal: 2, high: 3, urgent: 4, critical: 5 } as const;
