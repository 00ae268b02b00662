/**
 * The plugin contract: a serializable manifest plus `setup(ctx)` returning hooks.
 * @module
 */

import type { ToolRegistry } from "./tools/registry.ts";
import type { Grant } from "./capabilities.ts";
import type { KeelError } from "./errors.ts";
import type { Executor } from "./executor.ts";
import type { Logger } from "./logger.ts";
import type { CheckpointEvent, TrainingContext } from "./training.ts";
import type { ProcessOutput, SpawnOptions, ChildProcess, DirEntry, FileInfo } from "./runtime.ts";
import type { ServiceKey } from "./services.ts";

/** How a hook's handlers combine (Rollup's hook kinds). */
export type HookKind = "first" | "sequential" | "parallel";

/** What a run hook sees. */
export interface RunInfo {
  readonly id: string;
  /** e.g. "script/v1". */
  readonly protocol: string;
  /** The script path, task id, ... */
  readonly target: string;
  readonly params: Readonly<Record<string, unknown>>;
}

/** How a run ended. */
export type RunOutcome =
  | { readonly ok: true; readonly value: unknown; readonly durationMs: number }
  | { readonly ok: false; readonly error: { code?: string; message: string }; readonly durationMs: number };

/** Something the kernel reports to observers (`onEvent`). */
export interface KernelEvent {
  readonly type: string;
  readonly at: number;
  readonly data?: Readonly<Record<string, unknown>>;
}

/**
 * Every hook a plugin may return. Add a hook here and to {@link HOOK_KINDS} together; a hook
 * without a kind is a compile error.
 */
export interface HookSignatures {
  /** After every plugin is set up, in plugin order. */
  ready(): void | Promise<void>;
  /** The first plugin that returns an executor for `protocol` wins. */
  resolveExecutor(protocol: string): Executor | null | undefined | Promise<Executor | null | undefined>;
  /** Before a script, task or job runs; may throw to refuse it. */
  beforeRun(run: RunInfo): void | Promise<void>;
  /** After a run ends, concurrently across plugins. */
  afterRun(run: RunInfo, outcome: RunOutcome): void | Promise<void>;
  /** Observers of kernel events, concurrently. */
  onEvent(event: KernelEvent): void | Promise<void>;
  /** On kernel dispose, in reverse plugin order. */
  dispose(): void | Promise<void>;
  /** Training (bz's lifecycle): a run of `trainer.fit` starts, before the first epoch. */
  onTrainingStart(ctx: TrainingContext): void | Promise<void>;
  /** After the last epoch (or a stop, or an error that ended training). */
  onTrainingEnd(ctx: TrainingContext): void | Promise<void>;
  onEpochStart(ctx: TrainingContext): void | Promise<void>;
  /** After the epoch's training and validation loops; `requestStop` here stops now. */
  onEpochEnd(ctx: TrainingContext): void | Promise<void>;
  onTrainingLoopStart(ctx: TrainingContext): void | Promise<void>;
  onTrainingLoopEnd(ctx: TrainingContext): void | Promise<void>;
  onTrainingBatchStart(ctx: TrainingContext): void | Promise<void>;
  onTrainingBatchEnd(ctx: TrainingContext): void | Promise<void>;
  onValidationLoopStart(ctx: TrainingContext): void | Promise<void>;
  onValidationLoopEnd(ctx: TrainingContext): void | Promise<void>;
  onValidationBatchStart(ctx: TrainingContext): void | Promise<void>;
  onValidationBatchEnd(ctx: TrainingContext): void | Promise<void>;
  /** Before the first epoch: a checkpoint plugin may restore weights, optimizer state and epoch. */
  onLoadCheckpoint(ctx: TrainingContext, event: CheckpointEvent): void | Promise<void>;
  /** When a checkpoint should be written (each epoch's end, and at the end). */
  onSaveCheckpoint(ctx: TrainingContext, event: CheckpointEvent): void | Promise<void>;
}

/** The name of a hook. */
export type HookName = keyof HookSignatures;

/** How each hook combines. `dispose` runs sequentially in reverse order. */
export const HOOK_KINDS = {
  ready: "sequential",
  resolveExecutor: "first",
  beforeRun: "sequential",
  afterRun: "parallel",
  onEvent: "parallel",
  dispose: "sequential",
  onTrainingStart: "sequential",
  onTrainingEnd: "sequential",
  onEpochStart: "sequential",
  onEpochEnd: "sequential",
  onTrainingLoopStart: "sequential",
  onTrainingLoopEnd: "sequential",
  onTrainingBatchStart: "sequential",
  onTrainingBatchEnd: "sequential",
  onValidationLoopStart: "sequential",
  onValidationLoopEnd: "sequential",
  onValidationBatchStart: "sequential",
  onValidationBatchEnd: "sequential",
  onLoadCheckpoint: "sequential",
  onSaveCheckpoint: "sequential",
} as const satisfies Record<HookName, HookKind>;

/** A hook handler, or `{ order, handler }` to run before/after the plugin-order handlers. */
export type HookValue<F> = F | { readonly order?: "pre" | "post" | null; readonly handler: F };

/** What `setup` returns: any subset of the hooks. */
export type Hooks = { [K in HookName]?: HookValue<HookSignatures[K]> };

/** File access for a plugin, checked against its grant (read/write) on every call. */
export interface PluginFs {
  readFile(path: string): Promise<Uint8Array>;
  readTextFile(path: string): Promise<string>;
  writeFile(path: string, data: Uint8Array): Promise<void>;
  writeTextFile(path: string, text: string): Promise<void>;
  readDir(path: string): Promise<DirEntry[]>;
  stat(path: string): Promise<FileInfo>;
  mkdir(path: string): Promise<void>;
  remove(path: string): Promise<void>;
}

/**
 * Calling other plugins' hooks from a plugin (the trainer drives the training lifecycle this
 * way). Usable once every plugin is set up (from `ready` on); before that `E_HOOK_NOT_READY`.
 */
export interface PluginHooks {
  /** Calls hook `name` the way its kind says; throws what a handler throws. */
  call<K extends HookName>(name: K, ...args: Parameters<HookSignatures[K]>): Promise<unknown>;
  /** Calls every handler in order and returns the failures (as `E_HOOK_FAILED`), never throwing them. */
  callSettled<K extends HookName>(name: K, ...args: Parameters<HookSignatures[K]>): Promise<KeelError[]>;
  /** True when some plugin handles `name`. */
  has(name: HookName): boolean;
}

/** What a plugin's `setup` receives. Every door to the outside checks the grant. */
export interface PluginContext {
  /** The plugin's own name. */
  readonly name: string;
  readonly logger: Logger;
  /** The capabilities this plugin holds (what it requested, all covered by the host's grant). */
  readonly grant: Grant;
  /** The host runtime's name ("deno", "bun", "edge", ...). */
  readonly runtime: string;
  /** `fetch`, allowed only to granted `net` hosts (redirects are checked too). */
  fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
  readonly fs: PluginFs;
  readonly env: { get(name: string): string | undefined };
  /**
   * Starts a granted command (`run:<command>`). The command `"deno"` is Keel's own Deno binary
   * (the runtime's `denoPath`), granted as `run:deno`.
   */
  spawn(command: string, options?: SpawnOptions): ChildProcess;
  /** Runs a granted command to completion. */
  run(command: string, options?: Omit<SpawnOptions, "stdout" | "stderr">): Promise<ProcessOutput>;
  /**
   * The kernel's tools, which code mode (`kernel.execute`) offers to sandboxed code; a plugin
   * registers its own here. Isolated plugins have none (`E_RUNTIME_UNSUPPORTED`).
   */
  readonly tools: ToolRegistry;
  /** Other plugins' hooks; isolated plugins have none (`E_RUNTIME_UNSUPPORTED`). */
  readonly hooks: PluginHooks;
  /** WebGPU (`gpu`), or `E_RUNTIME_UNSUPPORTED` where the host has none. */
  gpu(): GPU;
  /**
   * Offers a service to other plugins.
   * @throws {KeelError} `E_SERVICE_DUPLICATE` when another plugin already provides it.
   */
  provide<T>(key: ServiceKey<T>, value: T): void;
  /**
   * A service some plugin set up earlier provides (list the provider in `requires`).
   * @throws {KeelError} `E_SERVICE_MISSING`
   */
  require<T>(key: ServiceKey<T>): T;
}

/** The serializable part of a plugin: what a registry stores and a host checks before running. */
export interface PluginManifest {
  /** npm-style: lowercase, optionally scoped ("@acme/metrics"). */
  readonly name: string;
  /** Semver. */
  readonly version: string;
  /** Semver range of kernels it works with, e.g. "^1". */
  readonly kernel: string;
  /** Plugin names that must be set up first. */
  readonly requires?: readonly string[];
  /** Capability strings it asks for. */
  readonly capabilities?: readonly string[];
  /** Moves the plugin before ("pre") or after ("post") the others. */
  readonly enforce?: "pre" | "post";
  readonly description?: string;
}

/** A plugin: a manifest plus `setup`, which returns hooks and closes over `ctx` (no `this`). */
export interface Plugin extends PluginManifest {
  setup(ctx: PluginContext): Hooks | void | Promise<Hooks | void>;
}

/**
 * Identity helper that types a plugin.
 *
 * @example
 * ```ts
 * import { definePlugin } from "./plugin.ts";
 * export default definePlugin({
 *   name: "hello", version: "1.0.0", kernel: "^1",
 *   setup: (ctx) => ({ ready: () => ctx.logger.info("hello") }),
 * });
 * ```
 */
export function definePlugin<const P extends Plugin>(plugin: P): P {
  return plugin;
}

/**
 * A plugin that runs isolated in its own `deno run` subprocess, with permission flags generated
 * from its grant. Every plugin from a registry is loaded this way unless the user trusts it.
 */
export interface IsolatedPluginSpec {
  readonly isolate: true;
  /** Absolute path or `file:` URL of a module whose default export is a {@link Plugin}. */
  readonly module: string;
  /** The manifest as declared (a package.json `keel` field); the module's must agree. */
  readonly manifest: PluginManifest;
  /** Per hook call; the process is killed when it passes. Default 10 000. */
  readonly timeoutMs?: number;
  /** Process start plus `setup`. Default 15 000. */
  readonly setupTimeoutMs?: number;
  /**
   * V8 old-space cap for the process, in MiB. Default 256. On Linux the whole process is also
   * killed past `memoryMb + 256` MiB resident (memory outside the V8 heap, such as ArrayBuffers).
   */
  readonly memoryMb?: number;
}

/** What `createKernel` accepts as a plugin. */
export type PluginEntry = Plugin | IsolatedPluginSpec;

/** True when `entry` asks to be isolated. */
export function isIsolatedSpec(entry: PluginEntry): entry is IsolatedPluginSpec {
  return (entry as IsolatedPluginSpec).isolate === true;
}
