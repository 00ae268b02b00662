/**
 * `keel flow sequential A.ts B.ts ...` and `keel flow parallel A.ts B.ts ...`: scripts as the
 * steps of a flow (`core/runs`' `Sequential` and `Parallel`). Each step is `file.ts` or
 * `file.ts#entry`; `--step-config N=FILE` gives step N (from 1) a config file, and a file that
 * defines several configs makes that step a sweep.
 *
 * Sequential: each step gets the previous step's value as `ctx.previous` (a list after a sweep);
 * the first failed step stops the flow. Parallel: every run of every step goes into one pool of
 * `--parallel` slots (default: one per step), taken in turn from each step, so a one-run step
 * never waits behind another step's sweep.
 * @module
 */

import type { ArgsDef } from "citty";
import { type Config, EMPTY_CONFIG } from "../../core/config.ts";
import { KeelError } from "../../core/errors.ts";
import { basename } from "../../core/path.ts";
import {
  type FlowResult,
  type FlowStep,
  Parallel,
  parseScriptRef,
  type RunResult,
  Sequential,
} from "../../core/runs/mod.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { allValues, integerFlag } from "../flags.ts";
import {
  failSweep,
  formatDuration,
  formatOverrides,
  isolateFlag,
  loadConfigs,
  maxRunsFlag,
  openSession,
  RUN_SHARED_ARGS,
  runLine,
  toJsonText,
} from "./run.ts";

const FLOW_ARGS = {
  mode: { type: "positional", description: "sequential | parallel", required: true },
  steps: {
    type: "positional",
    description: "The scripts, in order: file.ts or file.ts#entry",
    required: true,
  },
  "step-config": {
    type: "string",
    valueHint: "n=file",
    description: "Give step n (from 1) a config file; several configs make it a sweep. Repeatable",
  },
  json: { type: "boolean", description: "Print the flow's result as JSON on stdout" },
  ...RUN_SHARED_ARGS,
  parallel: {
    type: "string",
    valueHint: "n",
    description: "Runs at a time (default: 1 for sequential, one per step for parallel)",
  },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

interface PlannedStep {
  readonly given: string;
  readonly file: string;
  readonly entrypoint: string | undefined;
  readonly configs: readonly Config[];
}

async function planSteps(env: CliEnv, given: readonly string[]): Promise<PlannedStep[]> {
  const { runtime } = env;
  const maxRuns = maxRunsFlag(env);
  const byStep = new Map<number, string>();
  for (const value of allValues(env.flags, "step-config")) {
    const m = /^(\d+)=(.+)$/.exec(value);
    const n = m ? Number(m[1]) : Number.NaN;
    if (!m || n < 1 || n > given.length) {
      throw usage(
        `--step-config takes N=FILE with N from 1 to ${given.length} (the step), got "${value}"; for example --step-config 2=sweep.ts`,
      );
    }
    if (byStep.has(n)) throw usage(`--step-config gives step ${n} two config files; give one`);
    byStep.set(n, m[2]!);
  }
  const steps: PlannedStep[] = [];
  let total = 0;
  for (const [i, text] of given.entries()) {
    const ref = parseScriptRef(text, runtime);
    const shown = text.replace(/#[A-Za-z_$][\w$]*$/, "");
    if (runtime.fs && !(await runtime.fs.exists(ref.file))) {
      throw new KeelError(
        "E_SCRIPT_NOT_FOUND",
        `Script "${shown}" (step ${
          i + 1
        }) does not exist (looked for "${ref.file}"); check the path`,
        { details: { file: ref.file, step: i + 1 } },
      );
    }
    if (ref.file.endsWith(".py")) {
      throw usage(
        `Step ${
          i + 1
        } is a Python script; flows run .ts and .js scripts (run "${shown}" with keel run)`,
      );
    }
    const configFile = byStep.get(i + 1);
    const configs = configFile === undefined
      ? [EMPTY_CONFIG]
      : await loadConfigs(runtime, configFile, maxRuns);
    total += configs.length;
    steps.push({ given: text, file: ref.file, entrypoint: ref.entrypoint, configs });
  }
  if (total > maxRuns) {
    throw new KeelError(
      "E_CONFIG_TOO_MANY",
      `This flow asks for ${total} runs, more than --max-runs ${maxRuns}; raise --max-runs`,
      { details: { runs: total, maxRuns } },
    );
  }
  return steps;
}

/** The table printed after a flow. */
function renderFlowTable(result: FlowResult): string {
  const rows = [["STEP", "SCRIPT", "STATUS", "RUNS", "VALUE"]];
  for (const s of result.steps) {
    let value = s.status === "ok"
      ? toJsonText(s.value ?? null)
      : s.status === "failed"
      ? (s.results.find((r) => !r.ok) as Extract<RunResult, { ok: false }> | undefined)?.error
        .code ?? ""
      : "-";
    if (value.length > 50) value = value.slice(0, 47) + "...";
    rows.push([String(s.index + 1), basename(s.file), s.status, String(s.results.length), value]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  return rows.map((row) =>
    row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  ")
  ).join("\n");
}

/** The `flow` command. */
export const FLOW_COMMAND: CliCommand = {
  meta: {
    name: "flow",
    description: "Run scripts as a flow: sequential (each gets the previous result) or parallel",
  },
  args: FLOW_ARGS,
  async run(env) {
    const { flags, runtime, out } = env;
    const mode = flags.positionals[1];
    if (mode !== "sequential" && mode !== "parallel") {
      throw usage(
        mode === undefined
          ? "keel flow needs a mode and scripts, as in: keel flow sequential prepare.ts train.ts"
          : `keel flow takes "sequential" or "parallel", got "${mode}"`,
      );
    }
    const given = flags.positionals.slice(2);
    if (given.length === 0) {
      throw usage(
        `keel flow ${mode} needs at least one script, as in: keel flow ${mode} a.ts b.ts`,
      );
    }
    const steps = await planSteps(env, given);
    const json = flags.booleans.has("json");

    if (flags.booleans.has("dry-run")) {
      if (json) {
        await runtime.writeStdout(
          toJsonText({
            dryRun: true,
            mode,
            steps: steps.map((s) => ({
              file: s.file,
              entrypoint: s.entrypoint ?? null,
              configs: s.configs,
            })),
          }, { indent: 2 }) + "\n",
        );
        return;
      }
      const lines = [
        `Would run a ${mode} flow of ${steps.length} step${
          steps.length === 1 ? "" : "s"
        } (dry run: nothing runs, nothing is recorded):`,
      ];
      steps.forEach((s, i) => {
        lines.push(
          `  ${i + 1}. ${s.given}${
            s.configs.length > 1 ? ` (a sweep of ${s.configs.length})` : ""
          }`,
        );
        if (s.configs.length > 1 || s.configs[0] !== EMPTY_CONFIG) {
          for (const c of s.configs) lines.push(`       ${formatOverrides(c)}`);
        }
      });
      await runtime.writeStdout(lines.join("\n") + "\n");
      return;
    }

    const parallel = integerFlag(flags, "parallel");
    const isolate = isolateFlag(env);
    const session = await openSession(env, { echo: json ? "stderr" : "none", python: false });
    try {
      const flowSteps: FlowStep[] = steps.map((s) => ({
        file: s.file,
        ...(s.entrypoint === undefined ? {} : { entrypoint: s.entrypoint }),
        ...(s.configs.length > 1 ? { configs: s.configs } : { config: s.configs[0] }),
      }));
      const onResult = (r: RunResult): void => {
        if (json) return;
        const what = r.ok ? `✔ ${basename(r.file)}` : `✖ ${basename(r.file)}`;
        runtime.writeStderr(
          `${what}  ${r.recorded ? r.runId : ""}  ${formatOverrides(r.config)}  ${
            r.ok ? formatDuration(r.durationMs) : r.error.code
          }\n`,
        );
      };
      const options = {
        ...session.options,
        ...(parallel === undefined ? {} : { parallel }),
        ...(isolate === undefined ? {} : { isolate }),
        onResult,
      };
      const started = performance.now();
      const result = mode === "sequential"
        ? await new Sequential(flowSteps, options).run()
        : await new Parallel(flowSteps, options).run();
      if (json) {
        await runtime.writeStdout(
          toJsonText({
            ok: result.ok,
            mode,
            steps: result.steps.map((s) => ({
              index: s.index,
              file: s.file,
              status: s.status,
              value: s.value ?? null,
              runs: s.results.map((r, i) => runLine(r, i)),
            })),
          }) + "\n",
        );
      } else {
        await runtime.writeStdout(renderFlowTable(result) + "\n");
        if (result.ok) {
          out.success(
            `The ${mode} flow finished in ${formatDuration(performance.now() - started)}`,
          );
        }
      }
      if (session.signal.aborted) {
        throw KeelError.is(session.signal.reason)
          ? session.signal.reason
          : new KeelError("E_RUN_INTERRUPTED", "Interrupted");
      }
      const all = result.steps.flatMap((s) => s.results);
      failSweep(env, all, "runs of the flow");
    } finally {
      await session.close();
    }
  },
};
