/**
 * A toy training script for `keel run`: fits y = 3x + 1 by gradient descent. Its exported
 * `params` are its defaults, and every one can be set from the command line or a config file:
 *
 * ```sh
 * ./keel run examples/sweep/train.ts --set lr=0.05
 * ./keel run examples/sweep/train.ts --config examples/sweep/sweep.ts --parallel 2
 * ./keel run examples/sweep/train.ts --sweep lr=0.01,0.1 --sweep epochs=range(50,201,50)
 * ```
 * @module
 */

import type { RunContext } from "../../mod.ts";

/** The defaults. */
export const params = { lr: 0.01, epochs: 100, seed: 1 };

/** A small seeded generator, so every run with the same seed sees the same data. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

/** Trains, logging every quarter of the epochs, and returns the final loss and weights. */
export default function train(
  p: typeof params,
  ctx: RunContext,
): { loss: number; w: number; b: number } {
  const random = rng(p.seed);
  const xs = Array.from({ length: 64 }, () => random() * 2 - 1);
  const ys = xs.map((x) => 3 * x + 1 + (random() - 0.5) * 0.1);
  let w = 0;
  let b = 0;
  let loss = Infinity;
  for (let epoch = 1; epoch <= p.epochs; epoch++) {
    let gw = 0;
    let gb = 0;
    loss = 0;
    for (let i = 0; i < xs.length; i++) {
      const err = w * xs[i]! + b - ys[i]!;
      gw += (2 * err * xs[i]!) / xs.length;
      gb += (2 * err) / xs.length;
      loss += (err * err) / xs.length;
    }
    w -= p.lr * gw;
    b -= p.lr * gb;
    if (epoch % Math.max(1, Math.floor(p.epochs / 4)) === 0) {
      console.log(`epoch ${epoch}: loss ${loss.toFixed(4)}`);
    }
    if (ctx.signal.aborted) break;
  }
  const round = (n: number) => Number(n.toFixed(4));
  return { loss: round(loss), w: round(w), b: round(b) };
}
