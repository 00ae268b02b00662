/**
 * What every command receives (the runtime, the output, the parsed command line), and the shape
 * of a command.
 * @module
 */

import type { ArgsDef } from "citty";
import type { Logger, Runtime } from "../core/mod.ts";
import type { ParsedFlags } from "./flags.ts";
import type { CliOutput } from "./output.ts";

/** The environment a command runs in. */
export interface CliEnv {
  readonly runtime: Runtime;
  /** Human-readable lines (stderr). Results go to stdout. */
  readonly out: CliOutput;
  /** The kernel's logger, writing through `out`. */
  readonly logger: Logger;
  /** The whole command line, flags before the command name included. */
  readonly flags: ParsedFlags;
  /** `--debug` or `KEEL_DEBUG=1`. */
  readonly debug: boolean;
}

/**
 * A command: what `--help` says about it (citty renders it), and what it does. The command line
 * is parsed by `flags.ts` before `run` is called, so citty is loaded only to render help.
 */
export interface CliCommand {
  readonly meta: { readonly name: string; readonly description: string };
  /** Its arguments and flags, as citty describes them for `--help`. */
  readonly args: ArgsDef;
  run(env: CliEnv): Promise<void>;
}
