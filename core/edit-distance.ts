/**
 * Levenshtein distance, for "did you mean" suggestions. A file of its own so the command line
 * can suggest a flag or command without loading the capability parser.
 * @module
 */

/**
 * Levenshtein distance; small inputs only (names, keys).
 *
 * @example
 * ```ts
 * import { editDistance } from "./edit-distance.ts";
 * console.assert(editDistance("plugin", "plugni") === 2);
 * ```
 */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
