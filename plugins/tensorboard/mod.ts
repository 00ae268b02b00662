/**
 * tensorboard: writes training scalars as TensorBoard event files (`tensorboard --logdir .keel/runs`).
 *
 * Per step, `train/loss_step` at `onTrainingBatchEnd`, but only when a new loss is known: the
 * trainer reads the loss back every N steps (`lossReadEvery`), not every step, so a value is
 * written at the batches where `ctx.trainingLossTotal` or `ctx.extra.lastLoss` changed. The value
 * is `ctx.extra.lastLoss` when the trainer put a finite number there (Keel's trainer puts the
 * epoch's running mean loss as of that step), else the mean over the batches since the previous
 * read-back (`Δ trainingLossTotal / Δ trainingBatchCount`). `everySteps` thins this out further.
 *
 * Per epoch, at `onEpochEnd`, with the epoch (0-based) as the step: `train/<metric>` for every
 * value in `ctx.trainingMetrics` (so `train/loss`) and `val/<metric>` for `ctx.validationMetrics`.
 *
 * Each `fit` gets one file, `events.out.tfevents.<unix seconds>.<hostname>`, in `logDir`
 * (default `.keel/runs/<timestamp>`, a new folder per run). Events are buffered in memory and the
 * whole file is rewritten at each epoch's end and at the training's end (`ctx.fs` can neither
 * append nor rename). A scalar record is about 50 bytes, so even 100 000 steps make a file of a
 * few MB; a reader never sees a record cut in half except while a write is in progress.
 *
 * Capability: `write:<logDir>` (`write:.keel/runs` by default).
 * @module
 */

import { definePlugin, joinPath, type Plugin, type TrainingContext } from "../../core/mod.ts";
import { encodeEventRecord, FILE_VERSION, type SummaryValue } from "./events.ts";

export {
  crc32c,
  encodeEvent,
  encodeEventRecord,
  FILE_VERSION,
  frameRecord,
  maskedCrc32c,
  readEvents,
  type SummaryValue,
  type TensorBoardEvent,
} from "./events.ts";

/** Where runs go when no `logDir` is given; each run gets `<timestamp>` below it. */
export const DEFAULT_RUNS_DIR = ".keel/runs";

/** Options for {@link createTensorBoardPlugin}. */
export interface TensorBoardOptions {
  /** The run's directory. Default `.keel/runs/<timestamp>` (a new one for every `fit`). */
  readonly logDir?: string;
  /** Write `train/loss_step` at most every `everySteps` optimizer steps. Default 1. */
  readonly everySteps?: number;
  /** The last part of the file name. Default "keel" (a plugin cannot read the host name without `sys`). */
  readonly hostname?: string;
  /** The clock, in ms since the Unix epoch; for tests. Default `Date.now`. */
  readonly now?: () => number;
}

/** `2026-11-22T01-19-15-123Z`: an ISO time without characters some file systems refuse. */
function timestampFolder(ms: number): string {
  return new Date(ms).toISOString().replace(/[:.]/g, "-");
}

/** The tfevents file name TensorBoard looks for: `events.out.tfevents.<unix seconds>.<hostname>`. */
export function eventFileName(ms: number, hostname = "keel"): string {
  return `events.out.tfevents.${Math.floor(ms / 1000)}.${hostname}`;
}

function scalars(prefix: string, values: Readonly<Record<string, number>>): SummaryValue[] {
  return Object.entries(values)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => ({ tag: `${prefix}/${k}`, simpleValue: v }));
}

/** One event file being written. */
class EventFile {
  readonly path: string;
  readonly #chunks: Uint8Array[] = [];
  #size = 0;
  #dirty = true;

  constructor(path: string) {
    this.path = path;
  }

  add(record: Uint8Array): void {
    this.#chunks.push(record);
    this.#size += record.length;
    this.#dirty = true;
  }

  /** The whole file, or undefined when nothing changed since the last call. */
  take(): Uint8Array | undefined {
    if (!this.#dirty) return undefined;
    this.#dirty = false;
    const out = new Uint8Array(this.#size);
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    // Keep one chunk: the next flush copies one array instead of many small ones.
    this.#chunks.splice(0, this.#chunks.length, out);
    return out;
  }
}

/**
 * Creates the TensorBoard plugin.
 *
 * @example
 * ```ts ignore
 * const kernel = await createKernel({
 *   runtime,
 *   plugins: [trainer, createTensorBoardPlugin({ logDir: "runs/mnist" })],
 *   grants: { tensorboard: ["write:runs/mnist"] },
 * });
 * ```
 * @throws {RangeError} for `everySteps` that is not an integer ≥ 1.
 */
export function createTensorBoardPlugin(options: TensorBoardOptions = {}): Plugin {
  const everySteps = options.everySteps ?? 1;
  if (!Number.isInteger(everySteps) || everySteps < 1) {
    throw new RangeError(`TensorBoard option "everySteps" must be an integer ≥ 1, got ${String(options.everySteps)}`);
  }
  if (options.logDir !== undefined && (typeof options.logDir !== "string" || options.logDir === "")) {
    throw new TypeError('TensorBoard option "logDir" must be a non-empty path');
  }
  const hostname = options.hostname ?? "keel";
  if (!/^[A-Za-z0-9._-]+$/.test(hostname)) throw new TypeError(`TensorBoard option "hostname" must be a plain name, got ${JSON.stringify(hostname)}`);
  const now = options.now ?? Date.now;
  const scope = options.logDir ?? DEFAULT_RUNS_DIR;

  return definePlugin({
    name: "tensorboard",
    version: "0.1.0",
    kernel: "^1",
    description: "Writes training scalars (per step and per epoch) as TensorBoard event files",
    capabilities: [`write:${scope}`],
    setup(plugin) {
      let file: EventFile | undefined;
      const used = new Set<string>();
      /** `trainingLossTotal` and `trainingBatchCount` at the last read-back this epoch. */
      let readTotal = 0;
      let readCount = 0;
      /** What the previous batch end saw, to notice a read-back. */
      let seenTotal = 0;
      let seenLastLoss: number | undefined;
      let lastLogged: number | undefined;

      function event(step: number, value: SummaryValue[]): void {
        if (!file || value.length === 0) return;
        file.add(encodeEventRecord({ wallTime: now() / 1000, step, summary: { value } }));
      }

      async function flush(): Promise<void> {
        const bytes = file?.take();
        if (file && bytes) await plugin.fs.writeFile(file.path, bytes);
      }

      return {
        onTrainingStart: async () => {
          const started = now();
          const dir = options.logDir ?? joinPath(DEFAULT_RUNS_DIR, timestampFolder(started));
          let name = eventFileName(started, hostname);
          // Two runs into one logDir within a second must not share a file.
          for (let n = 1; used.has(joinPath(dir, name)); n++) name = `${eventFileName(started, hostname)}.${n}`;
          used.add(joinPath(dir, name));
          file = new EventFile(joinPath(dir, name));
          file.add(encodeEventRecord({ wallTime: started / 1000, fileVersion: FILE_VERSION }));
          readTotal = 0;
          readCount = 0;
          seenTotal = 0;
          seenLastLoss = undefined;
          lastLogged = undefined;
          await plugin.fs.mkdir(dir);
          await flush();
        },
        onEpochStart: () => {
          readTotal = 0;
          readCount = 0;
          seenTotal = 0;
        },
        onTrainingBatchEnd: (ctx: TrainingContext) => {
          // A new loss is known when the trainer read one back: the total or `lastLoss` changed.
          const extra = ctx.extra.lastLoss;
          const lastLoss = typeof extra === "number" && Number.isFinite(extra) ? extra : undefined;
          const fresh = ctx.trainingLossTotal !== seenTotal || (lastLoss !== undefined && lastLoss !== seenLastLoss);
          seenTotal = ctx.trainingLossTotal;
          seenLastLoss = lastLoss;
          if (!fresh || ctx.trainingBatchCount <= readCount) return;
          const loss = lastLoss ?? (ctx.trainingLossTotal - readTotal) / (ctx.trainingBatchCount - readCount);
          readTotal = ctx.trainingLossTotal;
          readCount = ctx.trainingBatchCount;
          if (lastLogged !== undefined && ctx.step - lastLogged < everySteps) return;
          lastLogged = ctx.step;
          event(ctx.step, [{ tag: "train/loss_step", simpleValue: loss }]);
        },
        onEpochEnd: async (ctx: TrainingContext) => {
          event(ctx.epoch, [...scalars("train", ctx.trainingMetrics), ...scalars("val", ctx.validationMetrics)]);
          await flush();
        },
        onTrainingEnd: async () => {
          await flush();
        },
      };
    },
  });
}

/** The TensorBoard plugin writing to `.keel/runs/<timestamp>`. */
export default createTensorBoardPlugin();
