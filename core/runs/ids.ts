/**
 * Run ids: `YYYYMMDD-HHMMSS-xxxxxx` (UTC time, then six hex digits), so a directory listing of
 * `.keel/runs/` sorts by start time. Within one second the hex part counts up from a random
 * start, so the ids one process makes are unique and keep their order.
 * @module
 */

let lastSecond = "";
let counter = 0;

/** The pattern every run id matches. */
export const RUN_ID_PATTERN: RegExp = /^\d{8}-\d{6}-[0-9a-f]{6}$/;

/**
 * A new run id, time-prefixed and sortable.
 *
 * @example
 * ```ts
 * import { createRunId, RUN_ID_PATTERN } from "./ids.ts";
 * const a = createRunId(new Date("2026-11-21T20:45:12Z"));
 * const b = createRunId(new Date("2026-11-21T20:45:12Z"));
 * if (!RUN_ID_PATTERN.test(a) || !a.startsWith("20261121-204512-") || !(a < b)) throw new Error("unreachable");
 * ```
 */
export function createRunId(now: Date = new Date()): string {
  const iso = now.toISOString(); // 2026-11-21T20:45:12.345Z
  const second = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + "-" + iso.slice(11, 13) +
    iso.slice(14, 16) + iso.slice(17, 19);
  if (second !== lastSecond) {
    lastSecond = second;
    // Start low enough that a long burst within one second never wraps.
    counter = crypto.getRandomValues(new Uint32Array(1))[0]! % 0x800000;
  } else {
    counter = (counter + 1) % 0x1000000;
  }
  return `${second}-${counter.toString(16).padStart(6, "0")}`;
}
