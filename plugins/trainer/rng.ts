/**
 * Seeded randomness that the CPU and the WGSL kernels compute bit for bit alike: a counter-based
 * hash (no state to carry between ops, so a dropout mask depends only on `(seed, index)`), and a
 * small sequential generator for initialisation and shuffling.
 * @module
 */

/** A 32-bit avalanche hash of `(seed, index)` (lowbias32 of index·φ + seed). */
export function hash32(seed: number, index: number): number {
  let x = (Math.imul(index >>> 0, 0x9e3779b9) + (seed >>> 0)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Uniform in [0, 1) with 24 bits, from {@link hash32}; exactly representable in f32. */
export function hashUniform(seed: number, index: number): number {
  return (hash32(seed, index) >>> 8) / 16777216;
}

/** The same hash in WGSL, for kernels: `hash_uniform(seed, index)`. */
export const WGSL_HASH = /* wgsl */ `
fn hash32(seed: u32, index: u32) -> u32 {
  var x = index * 0x9e3779b9u + seed;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  x = x ^ (x >> 16u);
  return x;
}
fn hash_uniform(seed: u32, index: u32) -> f32 {
  return f32(hash32(seed, index) >> 8u) / 16777216.0;
}
`;

/** A seeded generator: `next()` in [0, 1), `normal()`, `int(n)`, `shuffle(array)`. */
export interface Rng {
  next(): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  /** Fisher–Yates, in place; returns `array`. */
  shuffle<T extends { length: number; [i: number]: unknown }>(array: T): T;
  /** A 32-bit seed for a child stream (a dropout layer, an epoch's shuffle). */
  fork(): number;
}

/** A sequential generator from a 32-bit seed (counter through {@link hash32}). */
export function createRng(seed: number): Rng {
  const s = seed >>> 0;
  let counter = 0;
  let spare: number | undefined;
  const next = () => hashUniform(s, counter++);
  return {
    next,
    normal() {
      if (spare !== undefined) {
        const v = spare;
        spare = undefined;
        return v;
      }
      let u = next();
      while (u === 0) u = next();
      const w = next();
      const r = Math.sqrt(-2 * Math.log(u));
      spare = r * Math.sin(2 * Math.PI * w);
      return r * Math.cos(2 * Math.PI * w);
    },
    int: (n) => Math.floor(next() * n),
    shuffle(array) {
      for (let i = array.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        const t = array[i];
        array[i] = array[j];
        array[j] = t;
      }
      return array;
    },
    fork: () => hash32(s ^ 0x5bd1e995, counter++),
  };
}
