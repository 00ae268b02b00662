/**
 * Tiny benchmark helpers: medians over repeated runs, and a results writer (JSON + Markdown).
 * @module
 */

import type { Runtime } from "../core/mod.ts";

/** One measured row. */
export interface BenchRow {
  readonly name: string;
  /** Median, in the unit given. */
  readonly median: number;
  readonly unit: "ms" | "µs" | "s" | "MB" | "runs/s" | "req/s";
  readonly runs: number;
  /** The peer this row is compared against, and the ratio median / peer median. */
  readonly peer?: string;
  readonly ratio?: number;
  readonly goal?: string;
  readonly met?: boolean;
}

/** The median of a non-empty list. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Times `fn` `runs` times after `warmup` untimed runs; returns each duration in ms. */
export async function timeRuns(runs: number, fn: () => Promise<unknown> | unknown, warmup = 1): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    out.push(performance.now() - t0);
  }
  return out;
}

/** Wall time of whole commands, interleaved so machine noise hits every command alike. */
export async function timeCommands(
  runtime: Runtime,
  commands: Readonly<Record<string, readonly [string, ...string[]]>>,
  runs: number,
): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  const names = Object.keys(commands);
  for (const name of names) out[name] = [];
  for (let i = 0; i < runs + 1; i++) {
    for (const name of names) {
      const [cmd, ...args] = commands[name]!;
      const t0 = performance.now();
      const result = await runtime.processes!.run(cmd, { args, stdin: "null" });
      const ms = performance.now() - t0;
      if (!result.success) throw new Error(`Benchmark command "${name}" failed: ${result.stderr}`);
      if (i > 0) out[name]!.push(ms); // the first round warms caches
    }
  }
  return out;
}

function fmt(n: number): string {
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(3);
}

/** A Markdown table of rows. */
export function toMarkdown(rows: readonly BenchRow[]): string {
  const lines = [
    "| benchmark | median | runs | vs | ratio | goal | met |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.name} | ${fmt(r.median)} ${r.unit} | ${r.runs} | ${r.peer ?? ""} | ${r.ratio === undefined ? "" : r.ratio.toFixed(2) + "×"} | ${r.goal ?? ""} | ${r.met === undefined ? "" : r.met ? "yes" : "no"} |`,
    );
  }
  return lines.join("\n");
}

/** Writes `bench/results/<name>.json` and `.md` and returns the Markdown. */
export async function writeResults(
  runtime: Runtime,
  name: string,
  rows: readonly BenchRow[],
  meta: Readonly<Record<string, unknown>>,
): Promise<string> {
  const dir = runtime.resolvePath("results", new URL(".", import.meta.url).pathname);
  await runtime.fs!.mkdir(dir);
  const md = `# ${name}\n\n${Object.entries(meta).map(([k, v]) => `- ${k}: ${v}`).join("\n")}\n\n${toMarkdown(rows)}\n`;
  await runtime.fs!.writeTextFile(`${dir}/${name}.json`, JSON.stringify({ meta, rows }, null, 2) + "\n");
  await runtime.fs!.writeTextFile(`${dir}/${name}.md`, md);
  return md;
}
