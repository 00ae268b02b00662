/**
 * A script for `script/v1`: `params` are its defaults, overridable from the command line
 * (`keel run examples/hello/hello.ts --set name=Ada --set times=2`).
 * @module
 */

import type { ScriptContext } from "../../plugins/executor-script/mod.ts";

/** The defaults. */
export const params = { name: "world", times: 1 };

/** Greets `name`, `times` times. */
export default function hello(p: typeof params, ctx: ScriptContext): { greeting: string } {
  ctx.logger.debug(`greeting ${p.name} ${p.times} time(s)`);
  const greeting = Array.from({ length: p.times }, () => `Hello, ${p.name}!`).join(" ");
  return { greeting };
}
