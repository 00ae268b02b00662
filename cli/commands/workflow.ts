/**
 * `keel workflow run FILE | validate FILE | status ID | list | resume ID`: DAG workflows (YAML or
 * JSON, Gleitzeit's format) on the core workflow engine, persisted in SQLite (`.keel/keel.db` of
 * the working directory, WAL) unless `--store memory`.
 *
 * Executors come from a kernel booted here: `script/v1`, `python/v1` (granted `run:python3`),
 * `mcp/v1` (the built-in tools) and, only when the workflow has `shell/v1` tasks, `shell/v1`
 * granted `run` (any program: full trust, and a warning says so). Relative paths in a workflow
 * (python `file`, batch `directory`) resolve against the workflow file's directory, or `--cwd`.
 * @module
 */

import type { ArgsDef } from "citty";
import { editDistance } from "../../core/edit-distance.ts";
import { KeelError } from "../../core/errors.ts";
import type { ExecuteRequest, Executor } from "../../core/executor.ts";
import { createKernel, type Kernel } from "../../core/kernel.ts";
import { dirname } from "../../core/path.ts";
import type { PluginEntry, PluginManifest } from "../../core/plugin.ts";
import {
  createMemoryStore,
  createWorkflowEngine,
  parseWorkflow,
  type RunSummary,
  type Store,
  type TaskRecord,
  type TaskStatus,
  validateWorkflow,
  type WorkflowDefinition,
  type WorkflowEngine,
  type WorkflowRunHandle,
  type WorkflowRunRecord,
} from "../../core/workflow/mod.ts";
import executorMcp, { createMcpPlugin, type McpServerConfig } from "../../plugins/executor-mcp/mod.ts";
import executorPython from "../../plugins/executor-python/mod.ts";
import executorScript from "../../plugins/executor-script/mod.ts";
import executorShell from "../../plugins/executor-shell/mod.ts";
import { openSqliteStore } from "../../plugins/store-sqlite/mod.ts";
import { lockedPluginEntries } from "../../registry/install.ts";
import { parseAllow, readLocalPlugin } from "../boot.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { COMMON_ARGS } from "./args.ts";
import { allValues, integerFlag, lastValue } from "../flags.ts";
import { formatDuration, toJsonText } from "./run.ts";

/** The default store file, relative to the working directory. */
export const DEFAULT_DB = ".keel/keel.db";

const WORKFLOW_ARGS = {
  action: { type: "positional", description: "run FILE | validate FILE | status ID | list | resume ID", required: true },
  target: { type: "positional", description: "The workflow file (run, validate) or run id (status, resume)", required: false },
  store: { type: "string", valueHint: "kind", description: 'Where runs are kept: "sqlite" (default, .keel/keel.db, WAL) or "memory" (run only, nothing kept)' },
  db: { type: "string", valueHint: "path", description: `The SQLite store file (default ${DEFAULT_DB})` },
  cwd: { type: "string", valueHint: "dir", description: "Resolve the workflow's relative paths (python files, batch directories) here; default the workflow file's folder, or the working directory when they exist only there" },
  timeout: { type: "string", valueHint: "s", description: "The whole run's time limit in seconds (overrides the workflow's)" },
  "max-concurrent": { type: "string", valueHint: "n", description: "Tasks running at once (default 32)" },
  "mcp-server": {
    type: "string",
    valueHint: "name=command args",
    description:
      "run/resume: an MCP server over stdio whose tools mcp/tool.<tool> tasks may call (split on spaces; repeatable). It is granted run:<command>: full trust",
  },
  limit: { type: "string", valueHint: "n", description: "list: how many, newest first (default 20)" },
  json: { type: "boolean", description: "run/resume: JSON lines of events, then a summary; others: JSON" },
  plugin: { ...COMMON_ARGS.plugin, description: "Load a local plugin that provides executors; runs isolated. Repeatable" },
  allow: COMMON_ARGS.allow,
  debug: COMMON_ARGS.debug,
} as const satisfies ArgsDef;

const ACTIONS = ["run", "validate", "status", "list", "resume"] as const;
const SHELL = "shell/v1";

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

/** A KeelError whose report main.ts prints, with `details.reported` so `--json` adds no second line. */
function failure(code: "E_WORKFLOW_FAILED" | "E_WORKFLOW_INVALID" | "E_RUN_INTERRUPTED", message: string, exitCode = 1): KeelError {
  return new KeelError(code, message, { details: { reported: true, exitCode } });
}

async function openStore(env: CliEnv, need: "any" | "kept"): Promise<Store> {
  const kind = lastValue(env.flags, "store") ?? "sqlite";
  if (kind === "memory") {
    if (need === "kept") throw usage('--store memory keeps nothing between commands; status, list and resume read the SQLite store');
    return createMemoryStore();
  }
  if (kind !== "sqlite") throw usage(`--store takes "sqlite" or "memory", got "${kind}"`);
  const path = env.runtime.resolvePath(lastValue(env.flags, "db") ?? DEFAULT_DB);
  return await openSqliteStore(env.runtime, path, { synchronous: "NORMAL" });
}

/** An executor whose python/v1 calls run in `base` unless a task names its own `cwd`. */
function inDirectory(executor: Executor, base: string): Executor {
  return {
    ...executor,
    protocol: executor.protocol,
    methods: executor.methods,
    execute: (request: ExecuteRequest) =>
      executor.execute({ ...request, params: request.params.cwd === undefined ? { ...request.params, cwd: base } : request.params }),
  };
}

interface Booted {
  readonly kernel: Kernel;
  readonly resolveExecutor: (protocol: string) => Promise<Executor | undefined>;
}

/** Boots the executors a workflow needs; shell/v1 only when `shell`. */
async function bootExecutors(env: CliEnv, options: { shell: boolean; base: string }): Promise<Booted> {
  const { runtime } = env;
  if (allValues(env.flags, "trust").length > 0) throw usage("keel workflow does not take --trust yet; --plugin plugins run isolated");
  const locals = [];
  for (const path of allValues(env.flags, "plugin")) locals.push(await readLocalPlugin(runtime, path));
  const names = new Set(locals.map((l) => String(l.manifest.name)));
  const { all, byName } = parseAllow(allValues(env.flags, "allow"), { pluginNames: names, base: runtime.cwd() });
  const servers = mcpServers(env, options.base);
  const mcp = Object.keys(servers).length ? createMcpPlugin({ servers }) : executorMcp;
  if (Object.keys(servers).length) {
    env.out.warn(
      `MCP server(s) ${Object.keys(servers).map((n) => `"${n}"`).join(", ")} run with full trust (${
        [...new Set(Object.values(servers).map((c) => `run:${c.command}`))].join(", ")
      })`,
    );
  }
  const firstParty: PluginEntry[] = [executorScript, executorPython, mcp, ...(options.shell ? [executorShell] : [])];
  const firstNames = new Set(firstParty.map((p) => (p as PluginManifest).name));
  // Plugins `keel add` installed here: isolated, granted exactly what keel.lock records.
  const locked = await lockedPluginEntries(runtime, runtime.cwd());
  const entries: PluginEntry[] = [
    ...firstParty,
    ...locals.map((l): PluginEntry => ({ isolate: true, module: l.module, manifest: l.manifest })),
    ...locked.entries,
  ];
  const kernel = await createKernel({
    runtime,
    logger: env.logger,
    plugins: entries,
    grants: (m: PluginManifest) =>
      firstNames.has(m.name)
        ? [...(m.capabilities ?? [])]
        : Object.hasOwn(locked.grants, m.name)
        ? [...locked.grants[m.name]!]
        : [...all, ...(byName.get(m.name) ?? [])],
  });
  const resolveExecutor = async (protocol: string): Promise<Executor | undefined> => {
    const found = await kernel.callHook("resolveExecutor", protocol) ?? undefined;
    return found && protocol === "python/v1" ? inDirectory(found, options.base) : found;
  };
  return { kernel, resolveExecutor };
}

/** `--mcp-server NAME=COMMAND ARGS...` flags as MCP server configs, started in `cwd`. */
function mcpServers(env: CliEnv, cwd: string): Record<string, McpServerConfig> {
  const out: Record<string, McpServerConfig> = {};
  for (const value of allValues(env.flags, "mcp-server")) {
    const at = value.indexOf("=");
    const name = value.slice(0, at).trim();
    const [command, ...args] = value.slice(at + 1).trim().split(/\s+/).filter((p) => p !== "");
    if (at <= 0 || name === "" || command === undefined) {
      throw usage(`--mcp-server takes NAME=COMMAND [ARGS...], e.g. --mcp-server "files=npx -y some-mcp-server"; got "${value}"`);
    }
    if (Object.hasOwn(out, name)) throw usage(`--mcp-server "${name}" is given twice; give each server its own name`);
    out[name] = { command, args, cwd };
  }
  return out;
}

async function disposeQuietly(env: CliEnv, kernel: Kernel): Promise<void> {
  try {
    await kernel.dispose();
  } catch (e) {
    env.out.warn(`Shutting down plugins failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function usesShell(def: WorkflowDefinition): boolean {
  return def.tasks.some((t) => t.protocol === SHELL);
}

function warnShell(env: CliEnv): void {
  env.out.warn("This workflow has shell/v1 tasks: they run with full trust (any program, as you)");
}

async function readWorkflow(env: CliEnv, file: string): Promise<{ def: WorkflowDefinition; path: string; text: string }> {
  const { runtime } = env;
  const path = runtime.resolvePath(file);
  let text: string;
  try {
    text = await runtime.fs!.readTextFile(path);
  } catch (e) {
    throw new KeelError("E_WORKFLOW_NOT_FOUND", `Workflow file "${file}" cannot be read (${e instanceof Error ? e.message : String(e)}): check the path`, { cause: e });
  }
  return { def: parseWorkflow(text, { source: path }), path, text };
}

/**
 * The folder a workflow's relative paths (python `file`, batch `directory`) resolve against:
 * `--cwd`, else the workflow file's folder, unless those paths exist only under the working
 * directory, which is how Gleitzeit resolves them. One choice per workflow: tasks never mix.
 */
async function baseDir(env: CliEnv, def: WorkflowDefinition): Promise<string> {
  const { runtime } = env;
  const flag = lastValue(env.flags, "cwd");
  if (flag !== undefined) return runtime.resolvePath(flag);
  const own = def.source !== undefined && def.source.startsWith("/") ? dirname(def.source) : runtime.cwd();
  const relative = def.tasks.flatMap((t) => [t.params.file, t.batch?.directory])
    .filter((p): p is string => typeof p === "string" && p !== "" && !p.startsWith("/") && !p.includes("${"));
  if (relative.length === 0 || own === runtime.cwd()) return own;
  const allExist = async (base: string): Promise<boolean> => {
    for (const p of relative) if (!(await runtime.fs!.exists(runtime.resolvePath(p, base)))) return false;
    return true;
  };
  if (await allExist(own)) return own;
  return (await allExist(runtime.cwd())) ? runtime.cwd() : own;
}

function engineOptions(env: CliEnv, store: Store, booted: Booted, base: string): Parameters<typeof createWorkflowEngine>[0] {
  const max = integerFlag(env.flags, "max-concurrent");
  return {
    store,
    resolveExecutor: booted.resolveExecutor,
    runtime: env.runtime,
    cwd: base,
    logger: env.debug ? env.logger : { ...env.logger, info: () => {} },
    ...(max === undefined ? {} : { maxConcurrent: max }),
  };
}

function timeoutMs(env: CliEnv): number | undefined {
  const raw = lastValue(env.flags, "timeout");
  if (raw === undefined) return undefined;
  const s = Number(raw);
  if (!(s > 0) || !Number.isFinite(s)) throw usage(`--timeout takes seconds (a positive number), got "${raw}"`);
  return s * 1000;
}

/** Ctrl-C and SIGTERM abort the returned signal; call the stop function when done. */
function cancelOnSignals(env: CliEnv): { signal: AbortSignal; stop: () => void } {
  const controller = new AbortController();
  const stops: (() => void)[] = [];
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    const stop = env.runtime.onSignal?.(sig, () => {
      env.out.warn(`Interrupted by ${sig}${sig === "SIGINT" ? " (Ctrl-C)" : ""}: cancelling the run`);
      controller.abort();
    });
    if (stop) stops.push(stop);
  }
  return { signal: controller.signal, stop: () => stops.forEach((s) => s()) };
}

/** Follows a run: a progress line on stderr (or JSON lines on stdout), then the outcome. */
async function follow(env: CliEnv, engine: WorkflowEngine, handle: WorkflowRunHandle): Promise<void> {
  const { runtime } = env;
  const json = env.flags.booleans.has("json");
  const tty = runtime.isTerminal("stderr");
  const initial = await engine.status(handle.id);
  const state = new Map<string, TaskStatus>(initial.tasks.map((t) => [t.taskId, t.status === "running" ? "pending" : t.status]));
  const total = state.size;
  let lastDraw = 0;
  let drawn = "";
  const line = (): string => {
    const c = { done: 0, running: 0, failed: 0, skipped: 0, cancelled: 0, queued: 0 };
    for (const s of state.values()) {
      if (s === "succeeded") c.done++;
      else if (s === "running") c.running++;
      else if (s === "failed") c.failed++;
      else if (s === "skipped") c.skipped++;
      else if (s === "cancelled") c.cancelled++;
      else c.queued++;
    }
    return `[workflow ${handle.id.slice(0, 8)}] ${c.done}/${total} done, ${c.running} running, ${c.failed} failed, ${c.queued} queued` +
      (c.skipped ? `, ${c.skipped} skipped` : "") + (c.cancelled ? `, ${c.cancelled} cancelled` : "");
  };
  const draw = (force: boolean): void => {
    if (json) return;
    const now = Date.now();
    if (!force && now - lastDraw < (tty ? 50 : 1000)) return;
    const text = line();
    if (text === drawn) return;
    lastDraw = now;
    drawn = text;
    runtime.writeStderr(tty ? `\r\u001b[2K${text}` : `${text}\n`);
  };
  if (!json) env.out.info(`Run ${handle.id}: ${total} task(s)`);
  for await (const e of handle.events) {
    if (json) await runtime.writeStdout(JSON.stringify(e) + "\n");
    if (e.taskId !== null) {
      const s: TaskStatus | undefined = e.type === "task.started"
        ? "running"
        : e.type === "task.succeeded"
        ? "succeeded"
        : e.type === "task.failed"
        ? "failed"
        : e.type === "task.skipped"
        ? "skipped"
        : e.type === "task.cancelled"
        ? "cancelled"
        : e.type === "task.retrying" || e.type === "task.interrupted"
        ? "pending"
        : undefined;
      if (s) state.set(e.taskId, s);
      if (s === "failed" && !json) {
        if (tty) runtime.writeStderr("\r\u001b[2K");
        const err = e.data?.error as { code?: string; message?: string } | undefined;
        env.out.error(`Task "${e.taskId}" failed: ${err?.code ?? "?"} ${err?.message ?? ""}`.trimEnd());
        drawn = "";
      }
    }
    draw(false);
  }
  const summary = await handle.done;
  draw(true);
  if (tty && !json) runtime.writeStderr("\n");
  report(env, summary);
  if (json) await runtime.writeStdout(JSON.stringify({ ok: summary.status === "succeeded", ...summary }) + "\n");
  else if (summary.status === "succeeded") await printFinalResults(env, initial.run.definition, summary);
  if (summary.status === "cancelled") {
    throw failure("E_RUN_INTERRUPTED", `Workflow run "${summary.id}" was cancelled (its running tasks were stopped); run the workflow again to start over`, 130);
  }
  if (summary.status !== "succeeded") {
    throw failure("E_WORKFLOW_FAILED", summary.error?.message ?? `Workflow run "${summary.id}" failed`);
  }
}

/**
 * Prints the results of the final tasks (those no other task depends on), as `keel run` prints a
 * script's result: JSON on stdout, keyed by task id. Every result is in `--json` and the store.
 */
async function printFinalResults(env: CliEnv, definition: unknown, summary: RunSummary): Promise<void> {
  const tasks = (definition as { tasks?: readonly { id: string; dependencies?: readonly string[] }[] } | null)?.tasks ?? [];
  const needed = new Set(tasks.flatMap((t) => t.dependencies ?? []));
  const finals: Record<string, unknown> = {};
  for (const t of tasks) {
    if (!needed.has(t.id) && Object.hasOwn(summary.results, t.id)) finals[t.id] = summary.results[t.id];
  }
  if (Object.keys(finals).length) await env.runtime.writeStdout(toJsonText(finals, { indent: 2 }) + "\n");
}

function report(env: CliEnv, summary: RunSummary): void {
  if (env.flags.booleans.has("json")) return;
  for (const f of summary.failed) env.out.log(`  ✖ ${f.taskId}: ${f.error?.code ?? "?"} ${f.error?.message ?? ""}`.trimEnd());
  if (summary.status === "succeeded") {
    env.out.success(`Workflow "${summary.name}" succeeded (${summary.counts.succeeded} task(s)); run ${summary.id}`);
  }
}

async function runAction(env: CliEnv, file: string | undefined, resumeId: string | undefined): Promise<void> {
  const store = await openStore(env, resumeId === undefined ? "any" : "kept");
  let kernel: Kernel | undefined;
  const signals = cancelOnSignals(env);
  try {
    let def: WorkflowDefinition;
    let text: string | undefined;
    if (resumeId !== undefined) {
      const rec = await store.getRun(resumeId);
      if (!rec) throw new KeelError("E_WORKFLOW_NOT_FOUND", `No workflow run has the id "${resumeId}": list runs with "keel workflow list"`, { details: { runId: resumeId } });
      def = rec.definition as WorkflowDefinition;
    } else {
      ({ def, text } = await readWorkflow(env, file!));
    }
    const base = await baseDir(env, def);
    const shell = usesShell(def);
    if (shell) warnShell(env);
    const booted = await bootExecutors(env, { shell, base });
    kernel = booted.kernel;
    const engine = createWorkflowEngine(engineOptions(env, store, booted, base));
    const limit = timeoutMs(env);
    const opts = { signal: signals.signal, ...(limit === undefined ? {} : { timeoutMs: limit }) };
    const handle = resumeId !== undefined
      ? await engine.resume(resumeId, opts)
      : await engine.run(text!, { ...opts, source: def.source ?? file! });
    await follow(env, engine, handle);
  } finally {
    signals.stop();
    if (kernel) await disposeQuietly(env, kernel);
    await store.close();
  }
}

async function validateAction(env: CliEnv, file: string): Promise<void> {
  const json = env.flags.booleans.has("json");
  let problems: { code: string; message: string; details?: unknown }[];
  let def: WorkflowDefinition | undefined;
  try {
    def = (await readWorkflow(env, file)).def;
    problems = [];
  } catch (e) {
    if (!KeelError.is(e) || (e.code !== "E_WORKFLOW_PARSE" && e.code !== "E_WORKFLOW_INVALID")) throw e;
    const listed = e.details?.problems;
    problems = Array.isArray(listed) && listed.length > 0
      ? listed.map((p: { task?: string; field?: string; message?: string }) => ({ code: e.code, message: p.task ? `Task "${p.task}": ${p.message}` : String(p.message), details: p }))
      : [{ code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) }];
  }
  if (def !== undefined) {
    const booted = await bootExecutors(env, { shell: usesShell(def), base: await baseDir(env, def) });
    try {
      const protocols = new Map<string, Executor | undefined>();
      for (const t of def.tasks) if (t.protocol !== "" && !protocols.has(t.protocol)) protocols.set(t.protocol, await booted.resolveExecutor(t.protocol).catch(() => undefined));
      problems = validateWorkflow(def, { protocols: (p) => protocols.get(p) }).map((p) => p.toJSON() as { code: string; message: string; details?: unknown });
    } finally {
      await disposeQuietly(env, booted.kernel);
    }
  }
  if (json) await env.runtime.writeStdout(JSON.stringify({ ok: problems.length === 0, problems }) + "\n");
  if (problems.length === 0) {
    if (!json) env.out.success(`Workflow "${def!.name}" is valid (${def!.tasks.length} task(s))`);
    return;
  }
  if (!json) for (const p of problems) env.out.log(`  ✖ [${p.code}] ${p.message}`);
  throw failure("E_WORKFLOW_INVALID", `Workflow "${file}" has ${problems.length} problem(s)`);
}

function durationOf(t: TaskRecord): string {
  return t.startedAt !== null && t.endedAt !== null ? formatDuration(t.endedAt - t.startedAt) : "-";
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  ").trimEnd()).join("\n");
}

function localTime(ms: number | null): string {
  return ms === null ? "-" : new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

async function statusAction(env: CliEnv, id: string): Promise<void> {
  const store = await openStore(env, "kept");
  try {
    const engine = createWorkflowEngine({ store, resolveExecutor: () => Promise.resolve(undefined) });
    const { run, tasks } = await engine.status(id);
    if (env.flags.booleans.has("json")) {
      const { definition: _d, ...rest } = run;
      await env.runtime.writeStdout(toJsonText({ run: rest, tasks }, { indent: 2 }) + "\n");
      return;
    }
    const lines = [
      `run       ${run.id}`,
      `name      ${run.name}`,
      `status    ${run.status}`,
      `created   ${localTime(run.createdAt)}${run.endedAt === null ? "" : `  (${formatDuration(run.endedAt - run.createdAt)})`}`,
    ];
    if (run.error) lines.push(`error     ${run.error.code}: ${run.error.message}`);
    const rows = [["TASK", "STATUS", "ATTEMPTS", "DURATION", "ERROR"]];
    for (const t of tasks) rows.push([t.taskId, t.status, String(t.attempts), durationOf(t), t.error ? `${t.error.code}: ${t.error.message}` : ""]);
    await env.runtime.writeStdout(lines.join("\n") + "\n\n" + table(rows) + "\n");
  } finally {
    await store.close();
  }
}

async function listAction(env: CliEnv): Promise<void> {
  const store = await openStore(env, "kept");
  try {
    const runs: WorkflowRunRecord[] = await store.listRuns({ limit: integerFlag(env.flags, "limit") ?? 20 });
    if (env.flags.booleans.has("json")) {
      await env.runtime.writeStdout(toJsonText(runs.map(({ definition: _d, ...r }) => r), { indent: 2 }) + "\n");
      return;
    }
    if (runs.length === 0) {
      env.out.info("No workflow runs yet; start one with: keel workflow run FILE");
      return;
    }
    const rows = [["ID", "STATUS", "NAME", "DURATION", "CREATED"]];
    for (const r of runs) rows.push([r.id, r.status, r.name, r.endedAt === null ? "-" : formatDuration(r.endedAt - r.createdAt), localTime(r.createdAt)]);
    await env.runtime.writeStdout(table(rows) + "\n");
  } finally {
    await store.close();
  }
}

async function workflowCommand(env: CliEnv): Promise<void> {
  const [, action, target, ...extra] = env.flags.positionals;
  if (action === undefined) throw usage(`keel workflow needs an action: ${ACTIONS.join(", ")}`);
  if (!(ACTIONS as readonly string[]).includes(action)) {
    const near = ACTIONS.find((a) => editDistance(a, action) <= 2);
    throw usage(`keel workflow has no action "${action}"` + (near ? `; did you mean "${near}"?` : `; use ${ACTIONS.join(", ")}`));
  }
  if (extra.length > 0) throw usage(`keel workflow ${action} takes one argument, got also ${extra.map((e) => `"${e}"`).join(", ")}`);
  if (!env.runtime.fs) throw new KeelError("E_RUNTIME_UNSUPPORTED", "keel workflow needs a runtime with files");
  if (action === "list") {
    if (target !== undefined) throw usage(`keel workflow list takes no argument; to see one run: keel workflow status ${target}`);
    return await listAction(env);
  }
  if (target === undefined) {
    throw usage(action === "run" || action === "validate" ? `keel workflow ${action} needs a workflow file, as in: keel workflow ${action} wf.yaml` : `keel workflow ${action} needs a run id (see keel workflow list)`);
  }
  if (action === "run") return await runAction(env, target, undefined);
  if (action === "resume") return await runAction(env, undefined, target);
  if (action === "validate") return await validateAction(env, target);
  return await statusAction(env, target);
}

/** The `workflow` command. */
export const WORKFLOW_COMMAND: CliCommand = {
  meta: {
    name: "workflow",
    description:
      "Run, validate, inspect and resume DAG workflows (YAML/JSON). shell/v1 tasks run with full trust (any program, as you)",
  },
  args: WORKFLOW_ARGS,
  run: workflowCommand,
};
