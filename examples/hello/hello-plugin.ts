/**
 * A small first-party-style plugin: logs when the kernel is ready, counts runs with
 * `beforeRun`/`afterRun`, and provides a tiny service other plugins (and the host) can use.
 *
 * ```ts ignore
 * import { createKernel } from "../../mod.ts";
 * import hello, { HelloService } from "./hello-plugin.ts";
 * const kernel = await createKernel({ plugins: [hello] });
 * kernel.services.get(HelloService).greet("Ada"); // "Hello, Ada!"
 * ```
 * @module
 */

import { definePlugin, defineService } from "../../mod.ts";

/** What the hello plugin offers. */
export interface Hello {
  /** A greeting for `name`. */
  greet(name: string): string;
  /** How many runs have finished since the kernel booted. */
  runs(): number;
}

/** The key under which the hello plugin provides {@link Hello}. */
export const HelloService = defineService<Hello>("hello");

/** The hello plugin. */
export default definePlugin({
  name: "hello",
  version: "0.1.0",
  kernel: "^1",
  description: "Logs when ready, counts runs, provides the hello service",
  setup(ctx) {
    let started = 0;
    let finished = 0;
    ctx.provide(HelloService, { greet: (name) => `Hello, ${name}!`, runs: () => finished });
    return {
      ready: () => ctx.logger.info(`ready on ${ctx.runtime}`),
      beforeRun: (run) => {
        started++;
        ctx.logger.info(
          `run #${started} starting: ${run.target.slice(run.target.lastIndexOf("/") + 1)}`,
        );
      },
      afterRun: (_run, outcome) => {
        finished++;
        const how = outcome.ok ? "ok" : `failed (${outcome.error.code ?? "error"})`;
        ctx.logger.info(`run #${finished} ${how} in ${outcome.durationMs.toFixed(1)} ms`);
      },
    };
  },
});
