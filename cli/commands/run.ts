/**
 * `keel run <script>`: runs a script through the kernel (`script/v1`), with `beforeRun` and
 * `afterRun` hooks around it, and prints its result.
 * @module
 */

import process from "node:process";
import { type CommandDef, defineCommand } from "citty";
import { inspect } from "node:util";
import {
  basename,
  errorMessage,
  KeelError,
  type RunInfo,
  type RunOutcome,
} from "../../core/mod.ts";
import { SCRIPT_PROTOCOL, SCRIPT_RUN } from "../../plugins/executor-script/mod.ts";
import type { CliEnv } from "../env.ts";
import { allValues, lastValue, parseAssignment } from "../flags.ts";
import { writeStdout } from "../output.ts";
import { bootFromFlags, COMMON_ARGS, disposeQuietly } from "./common.ts";

const RUN_ARGS = {
  script: {
    type: "positional",
    description: "The script to run (a .ts or .js module)",
    required: true,
  },
  set: {
    type: "string",
    valueHint: "key=value",
    description:
      "Override one of the script's params; the value takes the default's type. Repeatable",
  },
  entrypoint: {
    type: "string",
    valueHint: "name",
    description: "The export to call (default: default export, main, run)",
  },
  json: {
    type: "boolean",
    description: "Print { ok, result, runId, durationMs } as JSON on stdout",
  },
  ...COMMON_ARGS,
} as const;

/** The result `--json` prints. */
export interface RunReport {
  readonly ok: true;
  readonly runId: string;
  readonly script: string;
  readonly result: unknown;
  readonly durationMs: number;
}

/** JSON text for any value: bigints become strings; a value JSON cannot hold (a cycle) is inspected. */
export function toJsonText(value: unknown, indent?: number): string {
  try {
    return JSON.stringify(
      value,
      (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v),
      indent,
    ) ?? "null";
  } catch {
    return JSON.stringify(inspect(value, { depth: 6 }));
  }
}

/** Renders a script's result for a terminal: strings as they are, anything else as JSON. */
export function formatResult(value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  return toJsonText(value, 2);
}

/** Creates the `run` command. */
export function createRunCommand(env: CliEnv): CommandDef<typeof RUN_ARGS> {
  return defineCommand({
    meta: { name: "run", description: "Run a script through the kernel (protocol script/v1)" },
    args: RUN_ARGS,
    async run({ args }) {
      const { runtime, flags, out } = env;
      const extra = flags.positionals.slice(2);
      if (extra.length) {
        throw new KeelError(
          "E_CLI_USAGE",
          `keel run takes one script, got also ${extra.map((a) => `"${a}"`).join(", ")}`,
        );
      }
      const overrides: Record<string, string> = {};
      for (const assignment of allValues(flags, "set")) {
        const [key, value] = parseAssignment(assignment, "set");
        overrides[key] = value;
      }
      const entrypoint = lastValue(flags, "entrypoint");
      const file = runtime.resolvePath(args.script);
      if (runtime.fs && !(await runtime.fs.exists(file))) {
        throw new KeelError(
          "E_SCRIPT_NOT_FOUND",
          `Script "${args.script}" does not exist (looked for "${file}"); check the path`,
          {
            details: { file },
          },
        );
      }

      const booted = await bootFromFlags(env, "fail");
      const { kernel } = booted;
      const controller = new AbortController();
      const onInterrupt = (): void => controller.abort(new Error("Interrupted (Ctrl-C)"));
      process.once("SIGINT", onInterrupt);
      try {
        const executor = await kernel.resolveExecutor(SCRIPT_PROTOCOL);
        const run: RunInfo = {
          id: crypto.randomUUID(),
          protocol: SCRIPT_PROTOCOL,
          target: file,
          params: overrides,
        };
        await kernel.callHook("beforeRun", run);
        const started = performance.now();
        let value: unknown;
        try {
          value = await executor.execute({
            method: SCRIPT_RUN,
            params: {
              file,
              params: overrides,
              coerce: true,
              runId: run.id,
              ...(entrypoint === undefined ? {} : { entrypoint }),
            },
            signal: controller.signal,
          });
        } catch (e) {
          const outcome: RunOutcome = {
            ok: false,
            error: KeelError.is(e)
              ? { code: e.code, message: e.message }
              : { message: errorMessage(e) },
            durationMs: performance.now() - started,
          };
          await kernel.callHook("afterRun", run, outcome).catch((hookError) =>
            out.warn(errorMessage(hookError))
          );
          throw e;
        }
        const durationMs = performance.now() - started;
        await kernel.callHook("afterRun", run, { ok: true, value, durationMs });
        if (flags.booleans.has("json")) {
          const report: RunReport = {
            ok: true,
            runId: run.id,
            script: file,
            result: value,
            durationMs,
          };
          await writeStdout(toJsonText(report) + "\n");
        } else {
          out.success(
            `${basename(file)} finished in ${
              durationMs < 10 ? durationMs.toFixed(1) : Math.round(durationMs)
            } ms`,
          );
          const text = formatResult(value);
          if (text !== "") await writeStdout(text + "\n");
        }
      } finally {
        process.off("SIGINT", onInterrupt);
        await disposeQuietly(env, booted);
      }
    },
  });
}
