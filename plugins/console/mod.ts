/**
 * The console plugin: a progress bar per epoch (loss, metrics, samples/s, ETA) and a summary
 * table when training ends. On a terminal the bar redraws in place; elsewhere (CI logs) it
 * prints one line per epoch.
 * @module
 */

import { definePlugin, type MetricValues, type Plugin, type TrainingContext } from "../../core/mod.ts";

/** Options for {@link createConsolePlugin}. */
export interface ConsoleOptions {
  /** Where text goes; default `console.log` per line (no in-place redraw). */
  readonly write?: (text: string) => void;
  /** Redraw the bar in place (`\r`); default false unless `write` is given and this is set. */
  readonly tty?: boolean;
  /** Bar width in characters. Default 24. */
  readonly width?: number;
  /** Redraw at most this often, in ms. Default 100. */
  readonly intervalMs?: number;
}

function fmt(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const a = Math.abs(value);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? value.toExponential(3) : value.toFixed(4);
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60);
  return `${m}m${String(Math.round(seconds - m * 60)).padStart(2, "0")}s`;
}

function metricText(values: MetricValues, prefix = ""): string {
  return Object.entries(values).map(([k, v]) => `${prefix}${k} ${fmt(v)}`).join("  ");
}

function bar(ctx: TrainingContext, width: number): string {
  const total = ctx.trainingBatches;
  const done = Math.min(ctx.trainingBatchCount, total);
  const filled = total > 0 ? Math.round((done / total) * width) : width;
  const epochs = String(ctx.epochs);
  return `epoch ${String(ctx.epoch + 1).padStart(epochs.length)}/${epochs} [${"█".repeat(filled)}${"·".repeat(width - filled)}] ${done}/${total}`;
}

/** Renders the bar line for the current state (exported for tests). */
export function progressLine(ctx: TrainingContext, options: { width?: number; now?: number } = {}): string {
  const elapsed = ((options.now ?? Date.now()) - ctx.epochStartedAt) / 1000;
  const rate = elapsed > 0 ? ctx.samplesSeen / elapsed : 0;
  const eta = rate > 0 ? (ctx.samplesPerEpoch - ctx.samplesSeen) / rate : NaN;
  const loss = ctx.extra["lastLoss"];
  return bar(ctx, options.width ?? 24) +
    (typeof loss === "number" ? `  loss ${fmt(loss)}` : "") +
    `  ${Math.round(rate).toLocaleString("en-US")} samples/s  ETA ${duration(eta)}`;
}

/** Renders the end-of-training table (exported for tests). */
export function summaryTable(ctx: TrainingContext): string {
  const rows = ctx.history;
  if (rows.length === 0) return "No epoch finished";
  const trainKeys = [...new Set(rows.flatMap((r) => Object.keys(r.training)))];
  const valKeys = [...new Set(rows.flatMap((r) => Object.keys(r.validation)))];
  const header = ["epoch", ...trainKeys, ...valKeys.map((k) => `val_${k}`), "time"];
  const body = rows.map((r) => [
    String(r.epoch + 1),
    ...trainKeys.map((k) => r.training[k] === undefined ? "" : fmt(r.training[k]!)),
    ...valKeys.map((k) => r.validation[k] === undefined ? "" : fmt(r.validation[k]!)),
    duration(r.seconds),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join("  ");
  return [line(header), widths.map((w) => "─".repeat(w)).join("  "), ...body.map(line)].join("\n");
}

/** Makes the console plugin. */
export function createConsolePlugin(options: ConsoleOptions = {}): Plugin {
  const write = options.write ?? ((text: string) => console.log(text.replace(/\n$/, "")));
  const tty = options.write !== undefined && options.tty === true;
  const interval = options.intervalMs ?? 100;
  let lastDraw = 0;
  return definePlugin({
    name: "console",
    version: "0.1.0",
    kernel: "^1",
    description: "Progress bars and a summary table for training",
    setup: () => ({
      onTrainingStart(ctx) {
        const h = ctx.hyperparameters;
        write(
          `Training on ${ctx.backend.name} (${ctx.backend.device}): ${ctx.epochs} epochs × ${ctx.trainingBatches} batches of ${String(h["batchSize"])}, ` +
            `${String(h["optimizer"])} lr ${String(h["lr"] ?? "")}, loss ${String(h["loss"])}\n`,
        );
      },
      onTrainingBatchEnd(ctx) {
        if (!tty) return;
        const now = Date.now();
        if (now - lastDraw < interval) return;
        lastDraw = now;
        write(`\r${progressLine(ctx, { ...(options.width ? { width: options.width } : {}), now })}\x1b[K`);
      },
      onEpochEnd(ctx) {
        const last = ctx.history.at(-1);
        const seconds = last?.seconds ?? 0;
        const line = bar(ctx, options.width ?? 24) +
          `  ${metricText(ctx.trainingMetrics)}` +
          (Object.keys(ctx.validationMetrics).length ? `  ${metricText(ctx.validationMetrics, "val_")}` : "") +
          `  ${Math.round(ctx.samplesSeen / Math.max(seconds, 1e-9)).toLocaleString("en-US")} samples/s  ${duration(seconds)}`;
        write(`${tty ? "\r" : ""}${line}${tty ? "\x1b[K" : ""}\n`);
        lastDraw = 0;
      },
      onTrainingEnd(ctx) {
        if (ctx.stopReason) write(`Stopped: ${ctx.stopReason}\n`);
        write(`${summaryTable(ctx)}\n`);
      },
    }),
  });
}

/** The console plugin printing lines with `console.log`. */
export default createConsolePlugin();
