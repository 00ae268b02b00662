/**
 * Help text for the flags every command shares, with no other imports, so a command can spread
 * them into its own arguments without loading the kernel.
 * @module
 */

import type { ArgsDef } from "citty";

/** `--plugin`, `--allow`, `--trust`, `--debug`, as citty argument definitions (for help). */
export const COMMON_ARGS = {
  plugin: {
    type: "string",
    valueHint: "path",
    description:
      "Load a local plugin (module or package dir); runs isolated unless trusted. Repeatable",
  },
  allow: {
    type: "string",
    valueHint: "cap",
    description:
      "Grant a capability to the --plugin plugins, or NAME=CAP to one of them. Repeatable",
  },
  trust: {
    type: "string",
    valueHint: "name",
    description: "Run the --plugin plugin NAME in-process instead of isolated. Repeatable",
  },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;
