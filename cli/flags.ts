/**
 * Command-line flags. citty renders each command's help; this module reads the command line for
 * what citty does not do: repeatable flags (`--set`, `--sweep`, `--plugin`, `--allow`,
 * `--trust`), flags given before the command name, and unknown flags (a usage error with a
 * suggestion instead of being ignored).
 * @module
 */

// Direct imports, not core/mod.ts: `keel --version` stays quick by loading only what it needs.
import { editDistance } from "../core/edit-distance.ts";
import { KeelError } from "../core/errors.ts";

/** Whether a flag takes a value. */
export type FlagKind = "string" | "boolean";

/** The flags a command accepts, by long name. */
export type FlagSpec = Readonly<Record<string, FlagKind>>;

/** Flags every command accepts. */
export const COMMON_FLAGS = {
  plugin: "string",
  allow: "string",
  trust: "string",
  debug: "boolean",
  help: "boolean",
  version: "boolean",
} as const satisfies FlagSpec;

/** The flags `keel run` takes besides the common ones. */
export const RUN_FLAGS = {
  set: "string",
  entrypoint: "string",
  json: "boolean",
  strict: "boolean",
  config: "string",
  sweep: "string",
  zip: "boolean",
  trials: "string",
  seed: "string",
  "max-runs": "string",
  parallel: "string",
  isolate: "string",
  "dry-run": "boolean",
  "no-record": "boolean",
} as const satisfies FlagSpec;

/** The flags `keel flow` takes besides the common ones. */
export const FLOW_FLAGS = {
  "step-config": "string",
  strict: "boolean",
  "max-runs": "string",
  parallel: "string",
  isolate: "string",
  json: "boolean",
  "dry-run": "boolean",
  "no-record": "boolean",
} as const satisfies FlagSpec;

/** The flags `keel runs` takes besides the common ones. */
export const RUNS_FLAGS = { json: "boolean", limit: "string" } as const satisfies FlagSpec;

/**
 * The flags `keel config` takes (the same as `CONFIG_FLAGS` in `commands/config.ts`, which is
 * not imported here: it loads the whole kernel, and `keel --version` must stay quick).
 */
export const CONFIG_FLAGS = {
  config: "string",
  json: "boolean",
  "max-runs": "string",
} as const satisfies FlagSpec;

/** The flags `keel plugins` takes besides the common ones. */
export const PLUGINS_FLAGS = { json: "boolean" } as const satisfies FlagSpec;

/** The flags `keel workflow` takes besides the common ones. */
export const WORKFLOW_FLAGS = {
  store: "string",
  db: "string",
  cwd: "string",
  json: "boolean",
  timeout: "string",
  "max-concurrent": "string",
  "mcp-server": "string",
  limit: "string",
} as const satisfies FlagSpec;

/** The flags `keel exec` takes besides the common ones. */
export const EXEC_FLAGS = {
  tool: "string",
  context: "string",
  timeout: "string",
  memory: "string",
  backend: "string",
  json: "boolean",
} as const satisfies FlagSpec;

/** The flags `keel train` takes besides the common ones. */
export const TRAIN_FLAGS = {
  backend: "string",
  epochs: "string",
  "batch-size": "string",
  lr: "string",
  seed: "string",
  "no-resume": "boolean",
  "checkpoint-dir": "string",
  logdir: "string",
  "export-onnx": "string",
  json: "boolean",
} as const satisfies FlagSpec;

/** The flags `keel executor` takes besides the common ones. */
export const EXECUTOR_FLAGS = {
  port: "string",
  host: "string",
  backend: "string",
  "max-processes": "string",
  "max-body": "string",
  "max-timeout": "string",
  "max-concurrent": "string",
  json: "boolean",
} as const satisfies FlagSpec;

/** The flags `keel mcp` takes besides the common ones. */
export const MCP_FLAGS = {
  tool: "string",
  http: "boolean",
  port: "string",
  host: "string",
  backend: "string",
  json: "boolean",
} as const satisfies FlagSpec;

/** The flags `keel registry` takes besides the common ones. */
export const REGISTRY_FLAGS = {
  port: "string",
  host: "string",
  dir: "string",
  "public-url": "string",
  signup: "string",
  "require-keel": "boolean",
  db: "string",
  storage: "string",
  user: "string",
  scope: "string",
  "package-scope": "string",
  expires: "string",
  json: "boolean",
} as const satisfies FlagSpec;

/** The flags `keel add` takes besides the common ones (`--allow` approves capabilities). */
export const ADD_FLAGS = {
  registry: "string",
  yes: "boolean",
  json: "boolean",
} as const satisfies FlagSpec;

/** The flags `keel remove` takes besides the common ones. */
export const REMOVE_FLAGS = { json: "boolean" } as const satisfies FlagSpec;

/** The flags `keel publish` takes besides the common ones. */
export const PUBLISH_FLAGS = {
  registry: "string",
  tag: "string",
  "dry-run": "boolean",
  json: "boolean",
} as const satisfies FlagSpec;

/** The flags `keel search` takes besides the common ones. */
export const SEARCH_FLAGS = {
  registry: "string",
  capability: "string",
  keyword: "string",
  runtime: "string",
  json: "boolean",
} as const satisfies FlagSpec;

/** The flags `keel info` takes besides the common ones. */
export const INFO_FLAGS = { registry: "string", json: "boolean" } as const satisfies FlagSpec;

/** The flags `keel login` takes besides the common ones (the password is never a flag). */
export const LOGIN_FLAGS = { registry: "string", user: "string", json: "boolean" } as const satisfies FlagSpec;

/** Each command's own flags; the common ones apply to all. */
export const COMMAND_FLAGS: Readonly<Record<string, FlagSpec>> = {
  run: RUN_FLAGS,
  flow: FLOW_FLAGS,
  runs: RUNS_FLAGS,
  config: CONFIG_FLAGS,
  plugins: PLUGINS_FLAGS,
  workflow: WORKFLOW_FLAGS,
  exec: EXEC_FLAGS,
  train: TRAIN_FLAGS,
  executor: EXECUTOR_FLAGS,
  mcp: MCP_FLAGS,
  registry: REGISTRY_FLAGS,
  add: ADD_FLAGS,
  remove: REMOVE_FLAGS,
  publish: PUBLISH_FLAGS,
  search: SEARCH_FLAGS,
  info: INFO_FLAGS,
  login: LOGIN_FLAGS,
};

/** Every flag of every command (a first pass over the command line only finds the command). */
export const ALL_FLAGS: FlagSpec = Object.assign({}, COMMON_FLAGS, ...Object.values(COMMAND_FLAGS));

/** Short forms. */
const SHORT: Readonly<Record<string, string>> = { h: "help", v: "version" };

/** What {@link parseFlags} found. */
export interface ParsedFlags {
  /** Every value of each string flag, in order. */
  readonly strings: ReadonlyMap<string, readonly string[]>;
  /** Boolean flags that were set. */
  readonly booleans: ReadonlySet<string>;
  /** Arguments that are not flags, in order (the command name first, when given). */
  readonly positionals: readonly string[];
  /** Where each positional stands in the command line. */
  readonly positionalIndexes: readonly number[];
}

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

/**
 * Splits a command line into flags and positionals. `--name value`, `--name=value` and
 * `--no-name` (booleans) are accepted; everything after `--` is positional.
 *
 * @throws {KeelError} `E_CLI_USAGE` for an unknown flag (with a suggestion) or a missing value.
 */
export function parseFlags(argv: readonly string[], spec: FlagSpec): ParsedFlags {
  const strings = new Map<string, string[]>();
  const booleans = new Set<string>();
  const positionals: string[] = [];
  const positionalIndexes: number[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      for (let j = i + 1; j < argv.length; j++) {
        positionals.push(argv[j]!);
        positionalIndexes.push(j);
      }
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      positionalIndexes.push(i);
      continue;
    }
    const eq = arg.indexOf("=");
    const rawName = arg.startsWith("--")
      ? arg.slice(2, eq < 0 ? undefined : eq)
      : arg.slice(1, eq < 0 ? undefined : eq);
    const long = arg.startsWith("--") ? rawName : SHORT[rawName];
    const negated = long?.startsWith("no-") === true && spec[long.slice(3)] === "boolean";
    const name = negated ? long!.slice(3) : long;
    const kind = name === undefined ? undefined : spec[name];
    if (name === undefined || kind === undefined) throw unknownFlag(arg, spec);
    if (kind === "boolean") {
      if (eq >= 0) throw usage(`Flag --${name} takes no value; write --${name} or --no-${name}`);
      if (negated) booleans.delete(name);
      else booleans.add(name);
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      if (value === undefined || (value.startsWith("--") && value.length > 2)) {
        throw usage(`Flag --${name} needs a value, as in --${name} <value>`);
      }
      i++;
    }
    const list = strings.get(name) ?? [];
    list.push(value);
    strings.set(name, list);
  }
  return { strings, booleans, positionals, positionalIndexes };
}

function unknownFlag(arg: string, spec: FlagSpec): KeelError {
  const given = arg.replace(/^-+/, "").split("=")[0] ?? "";
  const near = Object.keys(spec)
    .map((name) => ({ name, d: editDistance(name, given) }))
    .filter(({ d }) => d <= 2)
    .sort((a, b) => a.d - b.d)[0]?.name;
  return usage(
    `Unknown flag "${arg}"` + (near ? `; did you mean --${near}?` : "; see keel --help"),
  );
}

/** The last value of a string flag. */
export function lastValue(flags: ParsedFlags, name: string): string | undefined {
  const values = flags.strings.get(name);
  return values?.[values.length - 1];
}

/** Every value of a string flag. */
export function allValues(flags: ParsedFlags, name: string): readonly string[] {
  return flags.strings.get(name) ?? [];
}

/**
 * Splits `key=value` (from `--set`). The value may hold `=`; the key may not be empty.
 *
 * @throws {KeelError} `E_CLI_USAGE`
 */
export function parseAssignment(text: string, flag: string): [string, string] {
  const eq = text.indexOf("=");
  if (eq <= 0) {
    throw usage(`--${flag} takes key=value, got "${text}"; for example --${flag} name=Ada`);
  }
  return [text.slice(0, eq), text.slice(eq + 1)];
}

/**
 * A whole number flag (`--parallel 2`, `--max-runs 100`), or undefined when not given.
 *
 * @throws {KeelError} `E_CLI_USAGE` when it is not a whole number of at least `min`.
 */
export function integerFlag(flags: ParsedFlags, name: string, min = 1): number | undefined {
  const raw = lastValue(flags, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^\s*-?\d+\s*$/.test(raw) || !Number.isSafeInteger(n) || n < min) {
    throw usage(
      `--${name} takes a whole number of at least ${min}, got "${raw}"; for example --${name} ${
        Math.max(min, 2)
      }`,
    );
  }
  return n;
}
