/**
 * `keel run <script>`: runs a script through the kernel (`script/v1`), with `beforeRun` and
 * `afterRun` hooks around it, and prints its result.
 * @module
 */

import type { ArgsDef } from "citty";
import {
  basename,
  errorMessage,
  KeelError,
  type RunInfo,
  type RunOutcome,
} from "../../core/mod.ts";
import { SCRIPT_PROTOCOL, SCRIPT_RUN } from "../../plugins/executor-script/mod.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { allValues, lastValue, parseAssignment } from "../flags.ts";
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
} as const satisfies ArgsDef;

/** The result `--json` prints. */
export interface RunReport {
  readonly ok: true;
  readonly runId: string;
  readonly script: string;
  readonly result: unknown;
  readonly durationMs: number;
}

/** How {@link toJsonText} writes. */
export interface JsonTextOptions {
  /** Spaces per level; default none (one line). */
  readonly indent?: number;
  /** Renders a value JSON cannot hold (a cycle); default `String(value)`. */
  readonly inspect?: (value: unknown) => string;
}

/** JSON text for any value: bigints become strings; a value JSON cannot hold (a cycle) is inspected. */
export function toJsonText(value: unknown, options: JsonTextOptions = {}): string {
  try {
    return JSON.stringify(
      value,
      (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v),
      options.indent,
    ) ?? "null";
  } catch {
    return JSON.stringify((options.inspect ?? String)(value));
  }
}

/** Renders a script's result for a terminal: strings as they are, anything else as JSON. */
export function formatResult(value: unknown, inspect?: (value: unknown) => string): string {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  return toJsonText(value, inspect === undefined ? { indent: 2 } : { indent: 2, inspect });
}

/** The `run` command. */
export const RUN_COMMAND: CliCommand = {
  meta: { name: "run", description: "Run a script through the kernel (protocol script/v1)" },
  args: RUN_ARGS,
  run: runScript,
};

async function runScript(env: CliEnv): Promise<void> {
  const { runtime, flags, out } = env;
  const script = flags.positionals[1];
  if (script === undefined) {
    throw new KeelError(
      "E_CLI_USAGE",
      "keel run needs a script, as in: keel run examples/hello/hello.ts",
    );
  }
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
  const file = runtime.resolvePath(script);
  if (runtime.fs && !(await runtime.fs.exists(file))) {
    throw new KeelError(
      "E_SCRIPT_NOT_FOUND",
      `Script "${script}" does not exist (looked for "${file}"); check the path`,
      {
        details: { file },
      },
    );
  }

  const inspect = (value: unknown): string => runtime.inspect(value, { depth: 6 });
  const booted = await bootFromFlags(env, "fail");
  const { kernel } = booted;
  const controller = new AbortController();
  // A one-shot listener: the first Ctrl-C aborts the run, a second one ends Keel.
  const stopListening = runtime.onSignal?.("SIGINT", () => {
    stopListening?.();
    controller.abort(new Error("Interrupted (Ctrl-C)"));
  });
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
      await runtime.writeStdout(toJsonText(report, { inspect }) + "\n");
    } else {
      out.success(
        `${basename(file)} finished in ${
          durationMs < 10 ? durationMs.toFixed(1) : Math.round(durationMs)
        } ms`,
      );
      const text = formatResult(value, inspect);
      if (text !== "") await runtime.writeStdout(text + "\n");
    }
  } finally {
    stopListening?.();
    await disposeQuietly(env, booted);
  }
}
