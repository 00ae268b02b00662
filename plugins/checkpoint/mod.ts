/**
 * checkpoint: saves the model and optimizer after epochs and resumes from the latest matching
 * checkpoint when training starts again.
 *
 * Each checkpoint is a pair in `dir`:
 * - `epoch-0003.safetensors`: the model's weights under their own names and the optimizer's
 *   buffers under `optimizer/<name>` (F32, see `./safetensors.ts`);
 * - `epoch-0003.json`, the sidecar: `{ format: "keel-checkpoint/1", epoch, step, signature, model,
 *   optimizer: { name, config, step }, hyperparameters, history, metrics, createdAt,
 *   files: { weights, sha256 } }`.
 *
 * The number is `ctx.epoch` at save time: the 0-based epoch just finished (`epoch-0000` holds
 * the state after the first epoch); resuming from it continues at epoch 1.
 *
 * Writes are ordered so that a sidecar exists only for a complete pair (`ctx.fs` has no rename):
 * an old sidecar of the same name is removed first, then the weights are written, the sidecar
 * last; the sidecar records the weights' SHA-256, checked on load. Older checkpoints are pruned
 * (`keep`) only after a save succeeded, and a state whose loss or weights are NaN/Infinity is
 * never saved, so the last good checkpoint survives a diverging run.
 *
 * A checkpoint *matches* a run when its training signature is the same: the SHA-256 of the
 * canonical JSON of `{ model: <model spec>, optimizer: <optimizer name>, loss: <hyperparameters.loss> }`.
 * Learning rate, batch size, seed and epochs are left out on purpose, so a run can be resumed
 * with more epochs or a new learning rate; a different architecture, optimizer or loss starts fresh.
 *
 * Resume never stops training: a corrupt checkpoint (bad JSON, a weights file that is missing,
 * truncated or fails its SHA-256, names or shapes that do not fit the model) is skipped with a
 * warning and the previous good one is used; when none is usable, training starts fresh.
 *
 * Capabilities: `read:<dir>` and `write:<dir>`.
 * @module
 */

import {
  definePlugin,
  errorMessage,
  joinPath,
  KeelError,
  type Logger,
  type MetricValues,
  type Plugin,
  type PluginFs,
  type TrainingContext,
} from "../../core/mod.ts";
import { decodeSafetensors, encodeSafetensors, type SafetensorsTensor } from "./safetensors.ts";

export { decodeSafetensors, type DecodedSafetensors, encodeSafetensors, type SafetensorsTensor } from "./safetensors.ts";

/** The sidecar's `format`. */
export const CHECKPOINT_FORMAT = "keel-checkpoint/1";

/** The prefix of optimizer buffers inside a checkpoint's safetensors file. */
export const OPTIMIZER_PREFIX = "optimizer/";

/** Options for {@link createCheckpointPlugin}. */
export interface CheckpointOptions {
  /** Directory of the checkpoints (relative paths resolve against the kernel's base dir). */
  readonly dir: string;
  /** Save after every `every` epochs (and at the end). Default 1. */
  readonly every?: number;
  /** How many of the latest checkpoints to keep (an integer ≥ 1, or `Infinity`). Default 3. */
  readonly keep?: number;
  /** Restore the latest matching checkpoint before the first epoch. Default true (`--no-resume` sets false). */
  readonly resume?: boolean;
  /**
   * A metric to watch for the best checkpoint: `"val_loss"`, `"val/accuracy"`, `"train_loss"`,
   * or a bare name, looked up in the validation metrics first, then the training metrics.
   */
  readonly monitor?: string;
  /** Whether a lower or higher value is better. Default "max" for accuracy-like names, else "min". */
  readonly mode?: "min" | "max";
  /** Also keep `best.safetensors` / `best.json`, rewritten when `monitor` improves. Default true when `monitor` is set. */
  readonly saveBest?: boolean;
}

/** One entry of `ctx.history`. */
export type HistoryEntry = TrainingContext["history"][number];

/** The JSON sidecar written next to each checkpoint's safetensors file. */
export interface CheckpointSidecar {
  readonly format: typeof CHECKPOINT_FORMAT;
  /** The 0-based epoch just finished when it was saved. */
  readonly epoch: number;
  readonly step: number;
  /** The training signature (hex SHA-256); see the module docs. */
  readonly signature: string;
  readonly model: unknown;
  readonly optimizer: { readonly name: string; readonly config: Record<string, unknown>; readonly step: number };
  readonly hyperparameters: Readonly<Record<string, unknown>>;
  readonly history: readonly HistoryEntry[];
  readonly metrics: { readonly training: MetricValues; readonly validation: MetricValues };
  /** ISO 8601. */
  readonly createdAt: string;
  /** Why it was written: "epoch", "final" or "best". */
  readonly reason: string;
  /** The monitored metric when it was written, if a `monitor` is set. */
  readonly monitor?: { readonly name: string; readonly mode: "min" | "max"; readonly value: number };
  readonly files: { readonly weights: string; readonly sha256: string };
}

/** The file stem of epoch `epoch`'s checkpoint: `epoch-0003`. */
export function checkpointStem(epoch: number): string {
  return `epoch-${String(epoch).padStart(4, "0")}`;
}

/** Keys sorted at every level, no whitespace: the same value always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    const text = JSON.stringify(value);
    return text === undefined ? "null" : text;
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined && typeof v !== "function")
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/** Hex SHA-256 of `bytes` (Web Crypto). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The training signature of a run: what must be equal for a checkpoint to be resumed (the model
 * spec, the optimizer's name and the loss; see the module docs).
 */
export async function trainingSignature(ctx: Pick<TrainingContext, "model" | "optimizer" | "hyperparameters">): Promise<string> {
  const loss = ctx.hyperparameters.loss;
  const text = canonicalJson({
    format: "keel-signature/1",
    model: ctx.model.spec,
    optimizer: ctx.optimizer.name,
    loss: typeof loss === "string" ? loss : null,
  });
  return await sha256Hex(new TextEncoder().encode(text));
}

const ACCURACY_LIKE = /acc|f1|precision|recall|auc|top/i;

/** Reads the monitored metric from the context; undefined when the run does not have it. */
function monitored(ctx: TrainingContext, name: string): number | undefined {
  const prefixed = /^(val|validation|train|training)[_/](.+)$/.exec(name);
  if (prefixed) {
    const table = prefixed[1]!.startsWith("val") ? ctx.validationMetrics : ctx.trainingMetrics;
    return table[prefixed[2]!];
  }
  return ctx.validationMetrics[name] ?? ctx.trainingMetrics[name];
}

function isFiniteMetric(values: MetricValues): boolean {
  const loss = values.loss;
  return loss === undefined || Number.isFinite(loss);
}

function checkInteger(name: string, value: number | undefined, fallback: number, allowInfinity = false): number {
  if (value === undefined) return fallback;
  if (allowInfinity && value === Infinity) return value;
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`Checkpoint option "${name}" must be an integer ≥ 1${allowInfinity ? " or Infinity" : ""}, got ${String(value)}`);
  }
  return value;
}

interface Found {
  readonly file: string;
  readonly sidecar: CheckpointSidecar;
}

function parseSidecar(text: string, file: string): CheckpointSidecar {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new KeelError("E_TRAIN_CHECKPOINT", `Checkpoint sidecar "${file}" is not valid JSON (${errorMessage(e)}); it was cut short or damaged`, {
      details: { file },
    });
  }
  const s = raw as Partial<CheckpointSidecar> | null;
  const ok = typeof s === "object" && s !== null && s.format === CHECKPOINT_FORMAT &&
    Number.isInteger(s.epoch) && s.epoch! >= 0 && Number.isInteger(s.step) && s.step! >= 0 &&
    typeof s.signature === "string" && Array.isArray(s.history) &&
    typeof s.optimizer === "object" && s.optimizer !== null && typeof s.optimizer.name === "string" &&
    typeof s.files === "object" && s.files !== null && typeof s.files.weights === "string" &&
    typeof s.files.sha256 === "string" && !s.files.weights.includes("/") && !s.files.weights.includes("\\");
  if (!ok) {
    throw new KeelError("E_TRAIN_CHECKPOINT", `Checkpoint sidecar "${file}" is not a "${CHECKPOINT_FORMAT}" sidecar; it is damaged or from another tool`, {
      details: { file },
    });
  }
  return s as CheckpointSidecar;
}

function createdAtOf(s: CheckpointSidecar): number {
  const t = Date.parse(s.createdAt);
  return Number.isNaN(t) ? 0 : t;
}

/** Newest first: by `createdAt`, then by epoch. */
function newestFirst(a: Found, b: Found): number {
  return createdAtOf(b.sidecar) - createdAtOf(a.sidecar) || b.sidecar.epoch - a.sidecar.epoch;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The checkpoint plugin over `ctx.fs`, for one run at a time. */
class CheckpointStore {
  readonly #fs: PluginFs;
  readonly #dir: string;
  readonly #logger: Logger;

  constructor(fs: PluginFs, dir: string, logger: Logger) {
    this.#fs = fs;
    this.#dir = dir;
    this.#logger = logger;
  }

  path(file: string): string {
    return joinPath(this.#dir, file);
  }

  /** Every `epoch-*.json` sidecar that parses; the others are reported through `onCorrupt`. */
  async list(onCorrupt: (file: string, error: unknown) => void): Promise<Found[]> {
    let entries;
    try {
      entries = await this.#fs.readDir(this.#dir);
    } catch (e) {
      if (KeelError.is(e, "E_RUNTIME_NOT_FOUND")) return [];
      throw e;
    }
    const found: Found[] = [];
    for (const entry of entries) {
      if (!entry.isFile || !/^epoch-\d+\.json$/.test(entry.name)) continue;
      try {
        found.push({ file: entry.name, sidecar: parseSidecar(await this.#fs.readTextFile(this.path(entry.name)), entry.name) });
      } catch (e) {
        onCorrupt(entry.name, e);
      }
    }
    return found.sort(newestFirst);
  }

  /** Reads and checks a checkpoint's weights file. */
  async readWeights(found: Found): Promise<Record<string, SafetensorsTensor>> {
    const name = found.sidecar.files.weights;
    let bytes: Uint8Array;
    try {
      bytes = await this.#fs.readFile(this.path(name));
    } catch (e) {
      throw new KeelError("E_TRAIN_CHECKPOINT", `Checkpoint weights "${name}" could not be read (${errorMessage(e)})`, { cause: e, details: { file: name } });
    }
    const sha = await sha256Hex(bytes);
    if (sha !== found.sidecar.files.sha256) {
      throw new KeelError("E_TRAIN_CHECKPOINT", `Checkpoint weights "${name}" do not match the SHA-256 in "${found.file}"; the file is damaged or was overwritten`, {
        details: { file: name, expected: found.sidecar.files.sha256, actual: sha },
      });
    }
    return decodeSafetensors(bytes).tensors;
  }

  /**
   * Writes `<stem>.safetensors` then `<stem>.json`. The sidecar's text is built before anything
   * is written, so a sidecar that cannot be serialized leaves the directory as it was.
   */
  async writePair(stem: string, weights: Uint8Array, sidecar: (sha: string, weightsFile: string) => CheckpointSidecar): Promise<CheckpointSidecar> {
    const weightsFile = `${stem}.safetensors`;
    const sidecarFile = `${stem}.json`;
    const meta = sidecar(await sha256Hex(weights), weightsFile);
    const text = `${JSON.stringify(meta, null, 2)}\n`;
    await this.#fs.mkdir(this.#dir);
    // The old sidecar goes first, so no sidecar ever points at half-written weights.
    await this.#fs.remove(this.path(sidecarFile));
    await this.#fs.writeFile(this.path(weightsFile), weights);
    await this.#fs.writeTextFile(this.path(sidecarFile), text);
    return meta;
  }

  async remove(found: Found): Promise<void> {
    await this.#fs.remove(this.path(found.file));
    await this.#fs.remove(this.path(found.sidecar.files.weights));
    this.#logger.debug(`Removed old checkpoint "${found.file}"`, { file: found.file });
  }

  async readBest(): Promise<CheckpointSidecar | undefined> {
    try {
      return parseSidecar(await this.#fs.readTextFile(this.path("best.json")), "best.json");
    } catch {
      return undefined;
    }
  }
}

/**
 * Creates the checkpoint plugin.
 *
 * @example
 * ```ts ignore
 * import { createKernel } from "keel";
 * import { createCheckpointPlugin } from "keel/plugins/checkpoint";
 * const kernel = await createKernel({
 *   runtime,
 *   plugins: [trainer, createCheckpointPlugin({ dir: "runs/ckpt", keep: 2 })],
 *   grants: { checkpoint: ["read:runs/ckpt", "write:runs/ckpt"] },
 * });
 * ```
 * @throws {RangeError} for `every` or `keep` that is not an integer ≥ 1, or an unknown `mode`.
 */
export function createCheckpointPlugin(options: CheckpointOptions): Plugin {
  if (typeof options !== "object" || options === null || typeof options.dir !== "string" || options.dir === "") {
    throw new TypeError('createCheckpointPlugin() needs { dir: "<directory>" }');
  }
  const dir = options.dir;
  const every = checkInteger("every", options.every, 1);
  const keep = checkInteger("keep", options.keep, 3, true);
  const resume = options.resume ?? true;
  const monitor = options.monitor;
  if (options.mode !== undefined && options.mode !== "min" && options.mode !== "max") {
    throw new RangeError(`Checkpoint option "mode" must be "min" or "max", got ${JSON.stringify(options.mode)}`);
  }
  const mode = options.mode ?? (monitor !== undefined && ACCURACY_LIKE.test(monitor) ? "max" : "min");
  const saveBest = options.saveBest ?? monitor !== undefined;
  if (saveBest && monitor === undefined) throw new TypeError('Checkpoint option "saveBest" needs a "monitor" metric');

  return definePlugin({
    name: "checkpoint",
    version: "0.1.0",
    kernel: "^1",
    description: "Saves model and optimizer state as safetensors checkpoints and resumes from the latest matching one",
    capabilities: [`read:${dir}`, `write:${dir}`],
    setup(plugin) {
      const logger = plugin.logger;
      const store = new CheckpointStore(plugin.fs, dir, logger);
      /** Epochs saved by this run (so "final" does not write the same epoch twice). */
      const saved = new Set<number>();
      let finished: number | undefined;
      let resumed = false;
      let best: number | undefined;
      let signature: string | undefined;

      const signatureOf = async (ctx: TrainingContext) => (signature ??= await trainingSignature(ctx));
      const warnCorrupt = (file: string, e: unknown) =>
        logger.warn(`Skipping checkpoint "${file}": ${errorMessage(e)}`, { file, dir });

      async function load(ctx: TrainingContext): Promise<void> {
        const sig = await signatureOf(ctx);
        const candidates = await store.list(warnCorrupt);
        const matching = candidates.filter((c) => c.sidecar.signature === sig);
        const others = candidates.length - matching.length;
        if (others > 0) {
          logger.info(`Ignoring ${others} checkpoint(s) in "${dir}" from another model, optimizer or loss`, { dir, count: others });
        }
        const skipped: string[] = [];
        for (const found of matching) {
          try {
            await restore(ctx, found);
          } catch (e) {
            warnCorrupt(found.file, e);
            skipped.push(found.file);
            continue;
          }
          const fellBack = skipped.length ? ` (after skipping damaged ${skipped.map((s) => `"${s}"`).join(", ")})` : "";
          const log = skipped.length ? logger.warn.bind(logger) : logger.info.bind(logger);
          log(`Resumed from checkpoint "${found.file}": ${found.sidecar.epoch + 1} epoch${found.sidecar.epoch === 0 ? "" : "s"} done, continuing at epoch ${found.sidecar.epoch + 2} (step ${found.sidecar.step})${fellBack}`, {
            file: found.file,
            epoch: found.sidecar.epoch,
            skipped,
          });
          resumed = true;
          return;
        }
        if (skipped.length) {
          logger.warn(`No usable checkpoint in "${dir}": ${skipped.map((s) => `"${s}"`).join(", ")} ${skipped.length === 1 ? "is" : "are"} damaged; training starts fresh`, { dir, skipped });
        }
      }

      async function restore(ctx: TrainingContext, found: Found): Promise<void> {
        const tensors = await store.readWeights(found);
        const current = await ctx.model.getWeights();
        const model: Record<string, SafetensorsTensor> = {};
        const buffers: Record<string, SafetensorsTensor> = {};
        for (const [name, t] of Object.entries(tensors)) {
          if (name.startsWith(OPTIMIZER_PREFIX)) buffers[name.slice(OPTIMIZER_PREFIX.length)] = t;
          else model[name] = t;
        }
        for (const [name, t] of Object.entries(current)) {
          const got = model[name];
          if (!got) throw new KeelError("E_TRAIN_CHECKPOINT", `Checkpoint "${found.file}" has no weight "${name}"`, { details: { file: found.file, weight: name } });
          if (!sameShape(got.shape, t.shape)) {
            throw new KeelError("E_TRAIN_CHECKPOINT", `Checkpoint "${found.file}" has weight "${name}" of shape [${got.shape.join(", ")}], the model needs [${t.shape.join(", ")}]`, {
              details: { file: found.file, weight: name },
            });
          }
        }
        const extra = Object.keys(model).filter((n) => !Object.hasOwn(current, n));
        if (extra.length) {
          throw new KeelError("E_TRAIN_CHECKPOINT", `Checkpoint "${found.file}" has weights the model does not: ${extra.map((n) => `"${n}"`).join(", ")}`, {
            details: { file: found.file, extra },
          });
        }
        const before = await ctx.optimizer.getState();
        ctx.model.setWeights(model);
        try {
          ctx.optimizer.setState({ config: found.sidecar.optimizer.config ?? {}, step: found.sidecar.optimizer.step ?? found.sidecar.step, buffers });
        } catch (e) {
          // Leave the run as it was: fresh weights and optimizer, not half a checkpoint.
          ctx.model.setWeights(current);
          ctx.optimizer.setState(before);
          throw new KeelError("E_TRAIN_CHECKPOINT", `Checkpoint "${found.file}" has optimizer state the optimizer refused (${errorMessage(e)})`, { cause: e });
        }
        ctx.epoch = found.sidecar.epoch + 1;
        ctx.step = found.sidecar.step;
        ctx.history.splice(0, ctx.history.length, ...found.sidecar.history.map((h) => structuredClone(h)));
        if (found.sidecar.monitor && found.sidecar.monitor.name === monitor) best = found.sidecar.monitor.value;
        const bestSidecar = saveBest ? await store.readBest() : undefined;
        if (bestSidecar?.monitor && bestSidecar.signature === found.sidecar.signature && bestSidecar.monitor.name === monitor) {
          best = bestSidecar.monitor.value;
        }
      }

      /** Why the current state must not be saved, or undefined when it may be. */
      function notFinite(ctx: TrainingContext, weights: Record<string, SafetensorsTensor>): string | undefined {
        if (!isFiniteMetric(ctx.trainingMetrics) || !isFiniteMetric(ctx.validationMetrics)) return "the loss is NaN or Infinity";
        for (const [name, t] of Object.entries(weights)) {
          for (const v of t.data) if (!Number.isFinite(v)) return `weight "${name}" holds NaN or Infinity`;
        }
        return undefined;
      }

      async function save(ctx: TrainingContext, epoch: number, reason: string, stem: string): Promise<CheckpointSidecar | undefined> {
        const weights = await ctx.model.getWeights();
        const why = notFinite(ctx, weights);
        if (why) {
          logger.warn(`Not saving checkpoint "${stem}": ${why}; the last good checkpoint is kept`, { epoch, reason });
          return undefined;
        }
        const state = await ctx.optimizer.getState();
        const tensors: Record<string, SafetensorsTensor> = { ...weights };
        for (const [name, t] of Object.entries(state.buffers)) tensors[`${OPTIMIZER_PREFIX}${name}`] = t;
        const value = monitor === undefined ? undefined : monitored(ctx, monitor);
        const sig = await signatureOf(ctx);
        const bytes = encodeSafetensors(tensors, { format: CHECKPOINT_FORMAT, epoch: String(epoch), step: String(ctx.step) });
        try {
          return await store.writePair(stem, bytes, (sha256, weightsFile) => ({
            format: CHECKPOINT_FORMAT,
            epoch,
            step: ctx.step,
            signature: sig,
            model: ctx.model.spec,
            optimizer: { name: ctx.optimizer.name, config: state.config, step: state.step },
            hyperparameters: ctx.hyperparameters,
            history: ctx.history,
            metrics: { training: ctx.trainingMetrics, validation: ctx.validationMetrics },
            createdAt: new Date().toISOString(),
            reason,
            ...(monitor !== undefined && value !== undefined ? { monitor: { name: monitor, mode, value } } : {}),
            files: { weights: weightsFile, sha256 },
          }));
        } catch (e) {
          throw new KeelError("E_TRAIN_CHECKPOINT", `Could not write checkpoint "${stem}" to "${dir}" (${errorMessage(e)}); check the directory's space and permissions`, {
            cause: e,
            details: { dir, epoch },
          });
        }
      }

      async function prune(sig: string): Promise<void> {
        if (keep === Infinity) return;
        const ours = (await store.list(() => {})).filter((f) => f.sidecar.signature === sig);
        for (const old of ours.slice(keep)) await store.remove(old);
      }

      async function saveEpoch(ctx: TrainingContext, epoch: number, reason: string): Promise<void> {
        if (saved.has(epoch)) return;
        const written = await save(ctx, epoch, reason, checkpointStem(epoch));
        if (!written) return;
        saved.add(epoch);
        await prune(written.signature);
      }

      async function saveBestIfImproved(ctx: TrainingContext, epoch: number, force: boolean): Promise<void> {
        if (!saveBest || monitor === undefined) return;
        const value = monitored(ctx, monitor);
        if (value === undefined || !Number.isFinite(value)) {
          if (force) await save(ctx, epoch, "best", "best");
          return;
        }
        const better = best === undefined || (mode === "min" ? value < best : value > best);
        if (!better && !force) return;
        if (await save(ctx, epoch, "best", "best")) best = value;
      }

      return {
        onLoadCheckpoint: async (ctx, event) => {
          if (!resume) return;
          logger.debug(`Looking for a checkpoint to resume from in "${dir}"`, { dir, reason: event.reason });
          try {
            await load(ctx);
          } catch (e) {
            logger.warn(`Could not resume from "${dir}" (${errorMessage(e)}); training starts fresh`, { dir });
          }
        },
        onEpochEnd: (ctx) => {
          finished = ctx.epoch;
        },
        onSaveCheckpoint: async (ctx, event) => {
          if (event.reason === "best") {
            await saveBestIfImproved(ctx, ctx.epoch, true);
            return;
          }
          if (event.reason === "final") {
            // Nothing trained since a resume: the loaded checkpoint is already the final state.
            if (resumed && finished === undefined) return;
            await saveEpoch(ctx, finished ?? ctx.epoch, "final");
            return;
          }
          await saveBestIfImproved(ctx, ctx.epoch, false);
          if ((ctx.epoch + 1) % every === 0) await saveEpoch(ctx, ctx.epoch, event.reason);
        },
      };
    },
  });
}

/** The checkpoint plugin saving to `.keel/checkpoints` every epoch, keeping 3. */
export default createCheckpointPlugin({ dir: ".keel/checkpoints" });
