/**
 * An example plugin meant to run isolated (`keel ... --plugin examples/hello/isolated-plugin`):
 * the kernel starts it in its own `deno run` subprocess whose permission flags come from its
 * grant. It asks for one capability, `env:KEEL_GREETING`, so Deno lets it read that variable
 * and nothing else. On the event "primes" it computes the primes below `data.below` and logs
 * them with its process id, which differs from the host's.
 * @module
 */

import { definePlugin } from "../../../mod.ts";

/** The primes below `n` (a sieve). */
export function primesBelow(n: number): number[] {
  const composite = new Uint8Array(Math.max(0, n));
  const primes: number[] = [];
  for (let i = 2; i < n; i++) {
    if (composite[i]) continue;
    primes.push(i);
    for (let j = i * i; j < n; j += i) composite[j] = 1;
  }
  return primes;
}

function pid(): number | undefined {
  return (globalThis as { Deno?: { pid: number } }).Deno?.pid;
}

/** The isolated-hello plugin. Its manifest must match the `keel` field of its package.json. */
export default definePlugin({
  name: "isolated-hello",
  version: "0.1.0",
  kernel: "^1",
  capabilities: ["env:KEEL_GREETING"],
  setup(ctx) {
    const greeting = ctx.env.get("KEEL_GREETING") ?? "Hello";
    return {
      ready: () => ctx.logger.info(`${greeting} from process ${pid()}`),
      onEvent: (event) => {
        if (event.type !== "primes") return;
        const below = Number(event.data?.below ?? 50);
        const primes = primesBelow(below);
        ctx.logger.info(
          `process ${pid()} computed ${primes.length} primes below ${below}: ${primes.join(" ")}`,
        );
      },
    };
  },
});
