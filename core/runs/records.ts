/**
 * Run records: every recorded run gets a folder `<root>/.keel/runs/<id>/` holding
 *
 * - `run.json`: id, script, entrypoint, status (`running` | `ok` | `failed` | `interrupted`),
 *   start and end times, duration, exit code, the error, and who ran it (pid and host). It is
 *   written with status `running` before anything else, so a run killed mid-way stays visible:
 *   {@link RunStore.list} reports a `running` record whose process is gone as `interrupted`;
 * - `config.json`: the resolved params, args, kwargs and metadata, written before the script's
 *   entrypoint is called (a snapshot: editing the config file later changes nothing);
 * - `result.json`: what the script returned (when it succeeded);
 * - `stdout.log`, `stderr.log`: its captured output, appended while it runs (a file appears with
 *   the first output on its stream).
 *
 * Everything goes through `runtime.fs`, so this works wherever the Runtime has files.
 * @module
 */

import type { Config } from "../config.ts";
import { editDistance } from "../edit-distance.ts";
import { KeelError } from "../errors.ts";
import { joinPath } from "../path.ts";
import type { Runtime, RuntimeFs } from "../runtime.ts";
import { ownerAlive, processIdentity } from "./_host.ts";
import { RUN_ID_PATTERN } from "./ids.ts";

/** Where a run stands. */
export type RunStatus = "running" | "ok" | "failed" | "interrupted";

/** How a run was isolated. */
export type IsolateMode = "none" | "worker" | "process";

/** The contents of `run.json`. */
export interface RunRecord {
  readonly id: string;
  /** Absolute path of the script. */
  readonly file: string;
  /** The export called, once known. */
  readonly entrypoint?: string;
  /** "script/v1" or "python/v1". */
  readonly protocol: string;
  readonly status: RunStatus;
  /** ISO 8601. */
  readonly startedAt: string;
  readonly endedAt?: string;
  readonly durationMs?: number;
  /** 0 ok, 1 failed, 130 interrupted; null while running. */
  readonly exitCode: number | null;
  /** The process that owns the record (it writes the end of it). */
  readonly pid?: number;
  /** Tells a reused pid apart (Linux). */
  readonly pidStart?: string;
  readonly host: string;
  /** The subprocess that ran the script (`isolate: "process"`). */
  readonly childPid?: number;
  readonly isolate: IsolateMode;
  /** The sweep or flow this run belongs to, and its place there. */
  readonly group?: { readonly id: string; readonly index: number; readonly total: number };
  readonly error?: { readonly code: string; readonly message: string };
}

/** The contents of `config.json`. */
export interface ConfigSnapshot {
  /** The params the script saw: its defaults with the overrides applied. */
  readonly params: Readonly<Record<string, unknown>>;
  readonly args: readonly unknown[];
  readonly kwargs: Readonly<Record<string, unknown>>;
  readonly metadata: Readonly<Record<string, unknown>>;
  /** The overrides as given (from the config file, `--set`, a sweep). */
  readonly overrides: Readonly<Record<string, unknown>>;
  /** False when the run failed before its params could be resolved. */
  readonly resolved: boolean;
}

/** A record with everything in its folder, for `keel runs show`. */
export interface RunDetails {
  readonly record: RunRecord;
  readonly config?: ConfigSnapshot;
  /** What the script returned; absent unless it succeeded. */
  readonly result?: unknown;
  readonly hasResult: boolean;
  /** The last lines of the captured output. */
  readonly stdoutTail: string;
  readonly stderrTail: string;
  readonly dir: string;
}

/** Options for {@link createRunStore}. */
export interface RunStoreOptions {
  /** The folder holding `.keel/`; default `runtime.cwd()`. */
  readonly root?: string;
}

/** Appends output to a log file, batching writes so a chatty script does not wait on the disk. */
export interface LogWriter {
  write(text: string): void;
  /** Resolves when everything written so far is on disk. */
  flush(): Promise<void>;
}

/** The run records under one root. */
export interface RunStore {
  /** `<root>/.keel/runs`. */
  readonly dir: string;
  /**
   * Looks up who owns the records this process writes (its pid and host; that may start `sh`),
   * so the first {@link RunStore.begin} need not wait for it. Optional; never fails.
   */
  prepare(): Promise<void>;
  /** Creates the run's folder and writes `run.json` with status `running`. */
  begin(
    record: Omit<RunRecord, "status" | "exitCode" | "pid" | "pidStart" | "host" | "startedAt">,
  ): Promise<RunRecord>;
  /** Writes `config.json`. */
  writeConfig(id: string, config: ConfigSnapshot): Promise<void>;
  /** Updates `run.json` (the entrypoint once known, a child's pid). */
  update(record: RunRecord): Promise<void>;
  /** A writer for `stdout.log` or `stderr.log`; with `after`, nothing is written before it settles. */
  log(id: string, stream: "stdout" | "stderr", options?: { after?: Promise<unknown> }): LogWriter;
  /** Writes `result.json` (when ok) and the final `run.json`. */
  finish(
    record: RunRecord,
    outcome:
      | { ok: true; value: unknown; durationMs?: number }
      | { ok: false; error: unknown; interrupted?: boolean; durationMs?: number },
  ): Promise<RunRecord>;
  /**
   * Every record, newest first; `running` records whose process is gone are reported as
   * `interrupted`.
   */
  list(options?: { limit?: number }): Promise<RunRecord[]>;
  /**
   * One run with its config, result and output tails. `id` may be a unique prefix.
   * @throws {KeelError} `E_RUN_NOT_FOUND`, suggesting the nearest ids.
   */
  show(id: string, options?: { tailLines?: number }): Promise<RunDetails>;
}

function errorInfo(e: unknown): { code: string; message: string } {
  if (KeelError.is(e)) return { code: e.code, message: e.message };
  return { code: "E_RUN_FAILED", message: e instanceof Error ? e.message : String(e) };
}

function requireFs(runtime: Runtime): RuntimeFs {
  if (!runtime.fs) {
    throw new KeelError(
      "E_RUNTIME_UNSUPPORTED",
      `Run records need a runtime with files; this host (${runtime.name}) has none, so run without records`,
    );
  }
  return runtime.fs;
}

/** The snapshot of a config the run failed to resolve: the overrides as given. */
export function unresolvedSnapshot(config: Config): ConfigSnapshot {
  return {
    params: config.params,
    args: config.args,
    kwargs: config.kwargs,
    metadata: config.metadata,
    overrides: config.params,
    resolved: false,
  };
}

function tail(text: string, lines: number): string {
  const all = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
  return all.slice(-lines).join("\n") + (text === "" ? "" : "\n");
}

/**
 * Opens the run records under `root` (nothing is created until a run begins).
 *
 * @example
 * ```ts
 * import { createRunStore } from "./records.ts";
 * import { detectRuntime } from "../../runtimes/mod.ts";
 * const runtime = await detectRuntime();
 * const root = await runtime.fs!.makeTempDir();
 * const store = createRunStore(runtime, { root });
 * const rec = await store.begin({ id: "20261121-204512-000001", file: "/x.ts", protocol: "script/v1", isolate: "none" });
 * await store.finish(rec, { ok: true, value: 42 });
 * const [listed] = await store.list();
 * if (listed?.status !== "ok") throw new Error("unreachable");
 * await runtime.fs!.remove(root);
 * ```
 */
export function createRunStore(runtime: Runtime, options: RunStoreOptions = {}): RunStore {
  const root = options.root ?? runtime.cwd();
  const dir = joinPath(root, ".keel", "runs");
  const runDir = (id: string): string => joinPath(dir, id);
  const writeJson = (path: string, value: unknown): Promise<void> =>
    requireFs(runtime).writeTextFile(path, JSON.stringify(value, null, 2) + "\n");

  async function readRecord(id: string): Promise<RunRecord | undefined> {
    const fs = requireFs(runtime);
    let record: RunRecord;
    try {
      record = JSON.parse(await fs.readTextFile(joinPath(runDir(id), "run.json"))) as RunRecord;
    } catch {
      return undefined; // not a run folder, or run.json is being written right now
    }
    if (typeof record !== "object" || record === null || record.id !== id) return undefined;
    if (record.status !== "running") return record;
    const alive = await ownerAlive(runtime, record);
    if (alive !== false) return record;
    return {
      ...record,
      status: "interrupted",
      exitCode: 130,
      error: {
        code: "E_RUN_INTERRUPTED",
        message: `The process that ran it (pid ${record.pid}) ended before the run finished`,
      },
    };
  }

  async function ids(): Promise<string[]> {
    const fs = requireFs(runtime);
    if (!(await fs.exists(dir))) return [];
    return (await fs.readDir(dir)).filter((e) => e.isDirectory && RUN_ID_PATTERN.test(e.name))
      .map((e) => e.name);
  }

  return {
    dir,
    async prepare() {
      await processIdentity(runtime);
    },
    async begin(start) {
      const fs = requireFs(runtime);
      const me = await processIdentity(runtime);
      const record: RunRecord = {
        ...start,
        status: "running",
        exitCode: null,
        startedAt: new Date().toISOString(),
        ...(me.pid === undefined ? {} : { pid: me.pid }),
        ...(me.pidStart === undefined ? {} : { pidStart: me.pidStart }),
        host: me.host,
      };
      const at = runDir(record.id);
      await fs.mkdir(at);
      await writeJson(joinPath(at, "run.json"), record);
      return record;
    },
    writeConfig(id, config) {
      return writeJson(joinPath(runDir(id), "config.json"), config);
    },
    update(record) {
      return writeJson(joinPath(runDir(record.id), "run.json"), record);
    },
    log(id, stream, logOptions = {}) {
      const fs = requireFs(runtime);
      const path = joinPath(runDir(id), `${stream}.log`);
      let pending = "";
      let chain: Promise<void> = logOptions.after
        ? logOptions.after.then(() => {}, () => {})
        : Promise.resolve();
      // A failed append is kept for flush() to report, never left as an unhandled rejection.
      let failure: unknown;
      return {
        write(text) {
          if (text === "") return;
          const first = pending === "";
          pending += text;
          if (!first) return;
          chain = chain.then(async () => {
            const batch = pending;
            pending = "";
            await fs.appendTextFile(path, batch);
          }).catch((e) => {
            failure ??= e;
          });
        },
        async flush() {
          await chain;
          if (failure !== undefined) throw failure;
        },
      };
    },
    async finish(record, outcome) {
      const at = runDir(record.id);
      const endedAt = new Date();
      // The caller's monotonic measure when it has one; wall clock otherwise.
      const durationMs = outcome.durationMs ?? endedAt.getTime() - Date.parse(record.startedAt);
      let final: RunRecord;
      if (outcome.ok) {
        await writeJson(
          joinPath(at, "result.json"),
          outcome.value === undefined ? null : outcome.value,
        );
        final = {
          ...record,
          status: "ok",
          exitCode: 0,
          endedAt: endedAt.toISOString(),
          durationMs,
        };
      } else {
        final = {
          ...record,
          status: outcome.interrupted ? "interrupted" : "failed",
          exitCode: outcome.interrupted ? 130 : 1,
          endedAt: endedAt.toISOString(),
          durationMs,
          error: errorInfo(outcome.error),
        };
      }
      await writeJson(joinPath(at, "run.json"), final);
      return final;
    },
    async list(listOptions = {}) {
      const all = (await ids()).sort().reverse();
      const limit = listOptions.limit ?? Infinity;
      const out: RunRecord[] = [];
      // Ids sort by start second; read a little past the limit to order within that second.
      for (const id of all) {
        if (out.length >= limit && id.slice(0, 15) !== out[out.length - 1]!.id.slice(0, 15)) break;
        const record = await readRecord(id);
        if (record !== undefined) out.push(record);
      }
      out.sort((a, b) =>
        b.startedAt < a.startedAt
          ? -1
          : b.startedAt > a.startedAt
          ? 1
          : b.id < a.id
          ? -1
          : b.id > a.id
          ? 1
          : 0
      );
      return out.slice(0, limit);
    },
    async show(id, showOptions = {}) {
      const fs = requireFs(runtime);
      const all = await ids();
      let found = all.includes(id) ? id : undefined;
      if (found === undefined) {
        const prefixed = all.filter((candidate) => candidate.startsWith(id));
        if (prefixed.length === 1) found = prefixed[0];
        else if (prefixed.length > 1) {
          throw new KeelError(
            "E_RUN_NOT_FOUND",
            `Run id "${id}" is ambiguous: ${prefixed.length} runs start with it (${
              prefixed.slice(-3).map((p) => `"${p}"`).join(", ")
            }, ...); give more of the id`,
            { details: { id, matches: prefixed.length } },
          );
        }
      }
      const record = found === undefined ? undefined : await readRecord(found);
      if (record === undefined) {
        const near = all
          .map((candidate) => ({ candidate, d: editDistance(candidate, id) }))
          .sort((a, b) => a.d - b.d || (a.candidate < b.candidate ? 1 : -1))
          .slice(0, 3)
          .map((n) => n.candidate);
        throw new KeelError(
          "E_RUN_NOT_FOUND",
          `No recorded run has id "${id}" in "${dir}"` +
            (near.length
              ? `; the nearest are ${near.map((n) => `"${n}"`).join(", ")}`
              : "; there are no recorded runs here (records are kept in .keel/runs of the directory keel ran in)") +
            "; see keel runs list",
          { details: { id, nearest: near } },
        );
      }
      const at = runDir(record.id);
      const read = async (name: string): Promise<string | undefined> => {
        try {
          return await fs.readTextFile(joinPath(at, name));
        } catch {
          return undefined;
        }
      };
      const [config, result, stdout, stderr] = await Promise.all(
        ["config.json", "result.json", "stdout.log", "stderr.log"].map(read),
      );
      const lines = showOptions.tailLines ?? 20;
      const details: RunDetails = {
        record,
        hasResult: result !== undefined,
        stdoutTail: tail(stdout ?? "", lines),
        stderrTail: tail(stderr ?? "", lines),
        dir: at,
        ...(config === undefined ? {} : { config: JSON.parse(config) as ConfigSnapshot }),
        ...(result === undefined ? {} : { result: JSON.parse(result) as unknown }),
      };
      return details;
    },
  };
}
