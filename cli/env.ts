/**
 * What every command receives: the runtime, the output, the parsed command line.
 * @module
 */

import type { ConsolaInstance } from "consola";
import type { Logger, Runtime } from "../core/mod.ts";
import type { ParsedFlags } from "./flags.ts";

/** The environment a command runs in. */
export interface CliEnv {
  readonly runtime: Runtime;
  /** Human-readable lines (stderr). Results go to stdout. */
  readonly out: ConsolaInstance;
  /** The kernel's logger, writing through `out`. */
  readonly logger: Logger;
  /** The whole command line, flags before the command name included. */
  readonly flags: ParsedFlags;
  /** `--debug` or `KEEL_DEBUG=1`. */
  readonly debug: boolean;
}
