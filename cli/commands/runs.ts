/**
 * `keel runs list` and `keel runs show ID`: the run records under `.keel/runs/` of the working
 * directory. A record still marked "running" whose process is gone is listed as "interrupted".
 * @module
 */

import type { ArgsDef } from "citty";
import { editDistance } from "../../core/edit-distance.ts";
import { KeelError } from "../../core/errors.ts";
import { basename } from "../../core/path.ts";
import { createRunStore, type RunDetails, type RunRecord } from "../../core/runs/mod.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { integerFlag } from "../flags.ts";
import { formatDuration, toJsonText } from "./run.ts";

const RUNS_ARGS = {
  action: { type: "positional", description: "list | show ID", required: true },
  id: {
    type: "positional",
    description: "show: the run id (a unique prefix is enough)",
    required: false,
  },
  limit: {
    type: "string",
    valueHint: "n",
    description: "list: how many, newest first (default 20)",
  },
  json: { type: "boolean", description: "Print JSON on stdout" },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

const ACTIONS = ["list", "show"] as const;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

/** `2026-11-21 20:45:12` in local time. */
function localTime(iso: string | undefined): string {
  if (iso === undefined) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number): string => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${
    p(d.getMinutes())
  }:${p(d.getSeconds())}`;
}

/** The `keel runs list` table. */
export function renderRunsTable(records: readonly RunRecord[]): string {
  const rows = [["ID", "STATUS", "SCRIPT", "DURATION", "STARTED"]];
  for (const r of records) {
    rows.push([
      r.id,
      r.status,
      basename(r.file) + (r.entrypoint && r.entrypoint !== "default" ? `#${r.entrypoint}` : ""),
      r.durationMs === undefined ? "-" : formatDuration(r.durationMs),
      localTime(r.startedAt),
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  return rows.map((row) =>
    row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  ")
  ).join("\n");
}

function renderDetails(d: RunDetails): string {
  const r = d.record;
  const lines = [
    `run       ${r.id}`,
    `status    ${r.status}${r.exitCode === null ? "" : ` (exit code ${r.exitCode})`}`,
    `script    ${r.file}${
      r.entrypoint && r.entrypoint !== "default" ? `#${r.entrypoint}` : ""
    }  (${r.protocol}, isolate ${r.isolate})`,
    `started   ${localTime(r.startedAt)}`,
  ];
  if (r.endedAt) {
    lines.push(`ended     ${localTime(r.endedAt)}  (${formatDuration(r.durationMs ?? 0)})`);
  }
  lines.push(
    `host      ${r.host}${r.pid === undefined ? "" : `, pid ${r.pid}`}${
      r.childPid === undefined ? "" : `, child pid ${r.childPid}`
    }`,
  );
  if (r.group) lines.push(`group     ${r.group.id} (run ${r.group.index + 1} of ${r.group.total})`);
  if (r.error) lines.push(`error     ${r.error.code}: ${r.error.message}`);
  if (d.config) {
    lines.push(
      `params    ${toJsonText(d.config.params)}${
        d.config.resolved ? "" : "  (not resolved: the run failed before)"
      }`,
    );
    for (const k of ["args", "kwargs", "metadata"] as const) {
      const v = d.config[k];
      if ((Array.isArray(v) ? v.length : Object.keys(v).length) > 0) {
        lines.push(`${k.padEnd(10)}${toJsonText(v)}`);
      }
    }
  }
  if (d.hasResult) lines.push("result", indent(toJsonText(d.result ?? null, { indent: 2 })));
  lines.push(d.stdoutTail ? "stdout (last lines)" : "stdout    (empty)");
  if (d.stdoutTail) lines.push(indent(d.stdoutTail.trimEnd()));
  lines.push(d.stderrTail ? "stderr (last lines)" : "stderr    (empty)");
  if (d.stderrTail) lines.push(indent(d.stderrTail.trimEnd()));
  lines.push(`files     ${d.dir}`);
  return lines.join("\n");
}

function indent(text: string): string {
  return text.split("\n").map((l) => `  ${l}`).join("\n");
}

async function runsCommand(env: CliEnv): Promise<void> {
  const { flags, runtime } = env;
  const [, action, id, ...extra] = flags.positionals;
  const json = flags.booleans.has("json");
  if (!runtime.fs) {
    throw new KeelError("E_RUNTIME_UNSUPPORTED", "Run records need a runtime with files");
  }
  const store = createRunStore(runtime);
  if (action === "list") {
    if (id !== undefined) {
      throw usage(`keel runs list takes no id; to see one run: keel runs show ${id}`);
    }
    const limit = integerFlag(flags, "limit") ?? 20;
    const records = await store.list({ limit });
    if (json) {
      await runtime.writeStdout(toJsonText(records, { indent: 2 }) + "\n");
      return;
    }
    if (records.length === 0) {
      env.out.info(`No recorded runs in ${store.dir}; keel run records each run there`);
      return;
    }
    await runtime.writeStdout(renderRunsTable(records) + "\n");
    return;
  }
  if (action === "show") {
    if (id === undefined) {
      throw usage(
        "keel runs show needs a run id, as in: keel runs show 20261121-204512-ab12cd (see keel runs list)",
      );
    }
    if (extra.length) {
      throw usage(`keel runs show takes one id, got also ${extra.map((e) => `"${e}"`).join(", ")}`);
    }
    const details = await store.show(id);
    await runtime.writeStdout(
      (json ? toJsonText(details, { indent: 2 }) : renderDetails(details)) + "\n",
    );
    return;
  }
  if (action === undefined) {
    throw usage("keel runs needs an action: keel runs list, or keel runs show ID");
  }
  const near = ACTIONS.find((a) => editDistance(a, action) <= 2);
  throw usage(
    `keel runs has no action "${action}"` +
      (near ? `; did you mean "${near}"?` : `; use ${ACTIONS.join(" or ")}`),
  );
}

/** The `runs` command. */
export const RUNS_COMMAND: CliCommand = {
  meta: { name: "runs", description: "List recorded runs, or show one (config, result, output)" },
  args: RUNS_ARGS,
  run: runsCommand,
};
