/**
 * `keel config`: look at config files before running anything.
 *
 * - `keel config show FILE [--json]` prints every config the file defines, resolved;
 * - `keel config validate FILE [--max-runs N]` checks every config (a generator is run up to
 *   `--max-runs`) and fails with the coded error of the first bad one;
 * - `keel config check SCRIPT --config FILE` compares each config key with the script's
 *   exported `params`: a key close to a param is a likely typo.
 * @module
 */

import type { ArgsDef } from "citty";
import {
  basename,
  checkConfigKeys,
  type Config,
  type ConfigKeyCheck,
  DEFAULT_MAX_RUNS,
  editDistance,
  errorMessage,
  KeelError,
  loadConfigFile,
  toFileUrl,
} from "../../core/mod.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { type FlagSpec, lastValue } from "../flags.ts";
import { COMMON_ARGS } from "./args.ts";

/** The flags `keel config` takes besides the common ones (for `COMMAND_FLAGS` in flags.ts). */
export const CONFIG_FLAGS = {
  config: "string",
  json: "boolean",
  "max-runs": "string",
} as const satisfies FlagSpec;

const CONFIG_ARGS = {
  action: {
    type: "positional",
    description: "show FILE | validate FILE | check SCRIPT --config FILE",
    required: true,
  },
  file: {
    type: "positional",
    description: "The config file (show, validate) or the script (check)",
    required: true,
  },
  config: {
    type: "string",
    valueHint: "file",
    description: "check: the config file whose keys are compared with the script's params",
  },
  "max-runs": {
    type: "string",
    valueHint: "n",
    description: `Stop a config generator after this many configs (default ${DEFAULT_MAX_RUNS})`,
  },
  json: { type: "boolean", description: "Print the result as JSON on stdout" },
  debug: COMMON_ARGS.debug,
} as const satisfies ArgsDef;

const ACTIONS = ["show", "validate", "check"] as const;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

/** JSON text for config values: bigints as strings, functions named rather than dropped. */
function jsonText(value: unknown, indent?: number): string {
  try {
    return JSON.stringify(
      value,
      (_key, v: unknown) =>
        typeof v === "bigint"
          ? v.toString()
          : typeof v === "function"
          ? `[function ${(v as { name?: string }).name || "anonymous"}]`
          : v,
      indent,
    ) ?? "null";
  } catch (e) {
    return JSON.stringify(`[cannot be shown as JSON: ${errorMessage(e)}]`);
  }
}

function maxRunsOf(env: CliEnv): number {
  const raw = lastValue(env.flags, "max-runs");
  if (raw === undefined) return DEFAULT_MAX_RUNS;
  const n = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(n) || n < 1) {
    throw usage(
      `--max-runs takes a whole number of configs above 0, got "${raw}"; for example --max-runs 100`,
    );
  }
  return n;
}

/** The absolute path of a file named on the command line, which must exist. */
async function existingFile(
  env: CliEnv,
  given: string,
  missing: (path: string) => KeelError,
): Promise<string> {
  const path = env.runtime.resolvePath(given);
  const fs = env.runtime.fs;
  if (fs !== undefined && !(await fs.exists(path))) throw missing(path);
  return path;
}

function configFile(env: CliEnv, given: string): Promise<string> {
  return existingFile(env, given, (path) =>
    new KeelError(
      "E_CONFIG_LOAD_FAILED",
      `Config file "${given}" does not exist (looked for "${path}"); check the path`,
      { details: { file: path } },
    ));
}

async function loadAll(path: string, maxRuns: number): Promise<Config[]> {
  return await Array.fromAsync(loadConfigFile(path, { maxRuns }));
}

/** The one positional an action takes, or a usage error. */
function operand(env: CliEnv, action: string, what: string): string {
  const [, , target, ...extra] = env.flags.positionals;
  if (target === undefined) {
    throw usage(
      `keel config ${action} needs ${what}, as in: keel config ${action} ${
        action === "check" ? "train.ts --config sweep.ts" : "sweep.ts"
      }`,
    );
  }
  if (extra.length > 0) {
    throw usage(
      `keel config ${action} takes one ${what.replace(/^an? /, "")}, got also ${
        extra.map((a) => `"${a}"`).join(", ")
      }`,
    );
  }
  return target;
}

/** One resolved config as `keel config show --json` prints it. */
export interface ShownConfig extends Config {
  /** Its position in the file, from 0. */
  readonly index: number;
}

/** Renders configs for a terminal: a header per config, then each field that has something. */
export function renderConfigs(configs: readonly Config[]): string {
  const blocks = configs.map((config, i) => {
    const lines = [`config ${i + 1}/${configs.length}`];
    lines.push(`  params    ${jsonText(config.params)}`);
    if (config.args.length > 0) lines.push(`  args      ${jsonText(config.args)}`);
    if (Object.keys(config.kwargs).length > 0) lines.push(`  kwargs    ${jsonText(config.kwargs)}`);
    if (Object.keys(config.metadata).length > 0) {
      lines.push(`  metadata  ${jsonText(config.metadata)}`);
    }
    return lines.join("\n");
  });
  return blocks.join("\n");
}

async function show(env: CliEnv): Promise<void> {
  const given = operand(env, "show", "a config file");
  const maxRuns = maxRunsOf(env);
  const path = await configFile(env, given);
  const configs = await loadAll(path, maxRuns);
  if (env.flags.booleans.has("json")) {
    const shown: ShownConfig[] = configs.map((c, index) => ({
      index,
      params: c.params,
      args: c.args,
      kwargs: c.kwargs,
      metadata: c.metadata,
    }));
    await env.runtime.writeStdout(
      jsonText({ file: path, count: configs.length, configs: shown }, 2) + "\n",
    );
    return;
  }
  await env.runtime.writeStdout(renderConfigs(configs) + "\n");
  env.out.success(`"${given}" defines ${plural(configs.length, "config")}`);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

async function validate(env: CliEnv): Promise<void> {
  const given = operand(env, "validate", "a config file");
  const maxRuns = maxRunsOf(env);
  const path = await configFile(env, given);
  const configs = await loadAll(path, maxRuns);
  if (env.flags.booleans.has("json")) {
    await env.runtime.writeStdout(jsonText({ ok: true, file: path, count: configs.length }) + "\n");
    return;
  }
  env.out.success(`"${given}" is valid: ${plural(configs.length, "config")}`);
}

/** One row of `keel config check`: a key of one config. */
export interface CheckRow extends ConfigKeyCheck {
  /** Which config of the file, from 1. */
  readonly config: number;
}

/** Renders check rows as an aligned table; the CONFIG column only when there are several. */
export function renderCheckTable(rows: readonly CheckRow[], configs: number): string {
  const head = configs > 1
    ? ["CONFIG", "KEY", "STATUS", "SUGGESTION"]
    : ["KEY", "STATUS", "SUGGESTION"];
  const lines = [head];
  for (const r of rows) {
    const cells = [
      r.key,
      r.status,
      r.suggestion === undefined ? "" : `did you mean "${r.suggestion}"?`,
    ];
    lines.push(configs > 1 ? [String(r.config), ...cells] : cells);
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  return lines
    .map((l) =>
      l.map((cell, i) => (i === l.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd()
    )
    .join("\n");
}

/** Imports a script and returns its exported `params` (empty when it exports none). */
async function scriptParams(path: string, name: string): Promise<Record<string, unknown>> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(toFileUrl(path)) as Record<string, unknown>;
  } catch (e) {
    throw new KeelError(
      "E_SCRIPT_FAILED",
      `Script "${name}" could not be loaded to read its params: ${errorMessage(e)}`,
      { cause: e, details: { file: path, phase: "load" } },
    );
  }
  const params = mod.params;
  if (params === undefined) return {};
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    throw new KeelError(
      "E_CONFIG_INVALID",
      `Script "${name}" exports "params" that is not an object; export its defaults as \`export const params = { ... }\``,
      { details: { file: path } },
    );
  }
  return params as Record<string, unknown>;
}

async function check(env: CliEnv): Promise<void> {
  const given = operand(env, "check", "a script");
  const configGiven = lastValue(env.flags, "config");
  if (configGiven === undefined) {
    throw usage(
      `keel config check needs --config FILE, as in: keel config check ${given} --config sweep.ts`,
    );
  }
  const maxRuns = maxRunsOf(env);
  if (!/\.(m?[jt]sx?)$/i.test(given)) {
    throw usage(
      `keel config check reads the params of a .ts or .js script, and "${given}" is not one`,
    );
  }
  const script = await existingFile(env, given, (path) =>
    new KeelError(
      "E_SCRIPT_NOT_FOUND",
      `Script "${given}" does not exist (looked for "${path}"); check the path`,
      // The CLI's exit code for a missing script (see cli/main.ts).
      { details: { file: path, exitCode: 2 } },
    ));
  const configPath = await configFile(env, configGiven);
  const name = basename(script);
  const params = await scriptParams(script, name);
  const configs = await loadAll(configPath, maxRuns);

  const rows: CheckRow[] = configs.flatMap((c, i) =>
    checkConfigKeys(params, c.params).map((r) => ({ config: i + 1, ...r }))
  );
  const typos = rows.filter((r) => r.status === "typo");
  const fresh = [...new Set(rows.filter((r) => r.status === "new").map((r) => r.key))];
  const json = env.flags.booleans.has("json");

  if (!json) {
    if (rows.length > 0) {
      await env.runtime.writeStdout(renderCheckTable(rows, configs.length) + "\n");
    }
    if (Object.keys(params).length === 0) {
      env.out.warn(`Script "${name}" exports no params, so every config key is new to it`);
    } else if (fresh.length > 0) {
      env.out.warn(
        `${fresh.map((k) => `"${k}"`).join(", ")} ${
          fresh.length === 1 ? "is not a param" : "are not params"
        } of "${name}"; a strict run rejects ${fresh.length === 1 ? "it" : "them"}`,
      );
    }
  }
  if (typos.length > 0) {
    const listed = [...new Map(typos.map((t) => [t.key, t])).values()]
      .map((t) => `"${t.key}" (did you mean "${t.suggestion}"?)`).join(", ");
    throw new KeelError(
      "E_CONFIG_UNKNOWN_KEY",
      `Config "${configGiven}" has ${
        plural(typos.length, "likely typo")
      } for "${name}": ${listed}; rename ${
        typos.length === 1 ? "it" : "them"
      } to the script's param`,
      { details: { script, config: configPath, rows } },
    );
  }
  if (json) {
    await env.runtime.writeStdout(
      jsonText({ ok: true, script, config: configPath, configs: configs.length, rows }, 2) + "\n",
    );
    return;
  }
  env.out.success(
    `Every key of "${configGiven}" is a param of "${name}"` +
      (fresh.length > 0 ? `, or new (${plural(fresh.length, "key")})` : ""),
  );
}

async function runConfig(env: CliEnv): Promise<void> {
  const action = env.flags.positionals[1];
  if (action === undefined) {
    throw usage(
      `keel config needs an action: ${ACTIONS.join(", ")}, as in: keel config show sweep.ts`,
    );
  }
  switch (action) {
    case "show":
      return await show(env);
    case "validate":
      return await validate(env);
    case "check":
      return await check(env);
  }
  const near = ACTIONS.find((a) => editDistance(a, action) <= 2);
  throw usage(
    `keel config has no action "${action}"` +
      (near ? `; did you mean "${near}"?` : `; use ${ACTIONS.join(", ")}`),
  );
}

/**
 * Creates the `config` command: `show`, `validate` and `check` config files.
 *
 * A failure throws a KeelError for `main` to print: the loader's code (`E_CONFIG_*`), or
 * `E_CONFIG_UNKNOWN_KEY` when `check` finds a likely typo (exit 1), or `E_SCRIPT_NOT_FOUND`
 * with `details.exitCode` 2 when `check` is given a script that does not exist.
 */
export function createConfigCommand(): CliCommand {
  return {
    meta: {
      name: "config",
      description: "Show, validate, or check against a script, the configs a config file defines",
    },
    args: CONFIG_ARGS,
    run: runConfig,
  };
}
