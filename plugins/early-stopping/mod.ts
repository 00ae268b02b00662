/**
 * The early-stopping plugin: stops training when a monitored metric stops improving (Keras'
 * `EarlyStopping`, every option working). The stop takes effect at the end of the epoch in which
 * it is decided, not one epoch late.
 * @module
 */

import { definePlugin, KeelError, type Plugin, type TrainingContext } from "../../core/mod.ts";

/** Options for {@link createEarlyStoppingPlugin}. */
export interface EarlyStoppingOptions {
  /**
   * What to watch: "val_loss" (default), "loss", or any metric as "val_<name>" (validation) or
   * "<name>" (training), e.g. "val_accuracy". Without validation data, "val_loss" reads "loss".
   */
  readonly monitor?: string;
  /** Epochs without improvement before stopping. Default 3. */
  readonly patience?: number;
  /** Smallest change that counts as an improvement. Default 0. */
  readonly minDelta?: number;
  /** "min", "max", or "auto" (max for accuracy-like names, min otherwise). Default "auto". */
  readonly mode?: "min" | "max" | "auto";
  /** Stop unless the monitor beats this within `patience` epochs. */
  readonly baseline?: number;
  /** Never stop before this many epochs. Default 0. */
  readonly minEpochs?: number;
  /** At the end of training, put back the weights of the best epoch. Default false. */
  readonly restoreBestWeights?: boolean;
}

const MAX_LIKE = /acc|accuracy|precision|recall|f1|auc|top_k|r2/i;

/** What the plugin decided, kept in `ctx.extra.earlyStopping`. */
export interface EarlyStoppingState {
  monitor: string;
  best: number | undefined;
  bestEpoch: number | undefined;
  wait: number;
  stoppedEpoch: number | undefined;
  restored: boolean;
}

function read(ctx: TrainingContext, monitor: string): number | undefined {
  const validation = monitor.startsWith("val_");
  const name = validation ? monitor.slice(4) : monitor;
  if (validation && ctx.validationBatches === 0) return ctx.trainingMetrics[name];
  return validation ? ctx.validationMetrics[name] : ctx.trainingMetrics[name];
}

/**
 * Makes the early-stopping plugin.
 * @throws {RangeError} for a negative patience, min delta or min epochs, or an unknown mode
 */
export function createEarlyStoppingPlugin(options: EarlyStoppingOptions = {}): Plugin {
  const monitor = options.monitor ?? "val_loss";
  const patience = options.patience ?? 3;
  const minDelta = Math.abs(options.minDelta ?? 0);
  const minEpochs = options.minEpochs ?? 0;
  const mode = options.mode ?? "auto";
  if (!Number.isInteger(patience) || patience < 0) throw new RangeError(`"patience" must be a non-negative integer, got ${patience}`);
  if (!Number.isFinite(minDelta)) throw new RangeError(`"minDelta" must be a finite number, got ${options.minDelta}`);
  if (!Number.isInteger(minEpochs) || minEpochs < 0) throw new RangeError(`"minEpochs" must be a non-negative integer, got ${minEpochs}`);
  if (mode !== "min" && mode !== "max" && mode !== "auto") throw new RangeError(`"mode" must be "min", "max" or "auto", got "${String(mode)}"`);
  const direction = mode === "auto" ? (MAX_LIKE.test(monitor) ? "max" : "min") : mode;
  const better = (value: number, reference: number) => direction === "min" ? value < reference - minDelta : value > reference + minDelta;

  let state: EarlyStoppingState;
  let bestWeights: Awaited<ReturnType<TrainingContext["model"]["getWeights"]>> | undefined;
  return definePlugin({
    name: "early-stopping",
    version: "0.1.0",
    kernel: "^1",
    description: `Stops training when "${monitor}" stops improving`,
    setup: (ctx) => ({
      onTrainingStart(training) {
        state = { monitor, best: options.baseline, bestEpoch: undefined, wait: 0, stoppedEpoch: undefined, restored: false };
        bestWeights = undefined;
        training.extra["earlyStopping"] = state;
      },
      async onEpochEnd(training) {
        const value = read(training, monitor);
        if (value === undefined) {
          const known = [...Object.keys(training.trainingMetrics), ...Object.keys(training.validationMetrics).map((k) => `val_${k}`)];
          throw new KeelError("E_TRAIN_CONFIG", `Early stopping monitors "${monitor}", which this run does not report; use one of ${known.map((k) => `"${k}"`).join(", ")}`);
        }
        if (!Number.isFinite(value)) return;
        if (state.best === undefined || better(value, state.best)) {
          // A baseline only has to be beaten once; after that the best value is the reference.
          state.best = value;
          state.bestEpoch = training.epoch;
          state.wait = 0;
          if (options.restoreBestWeights) bestWeights = await training.model.getWeights();
          return;
        }
        state.wait++;
        if (state.wait >= Math.max(patience, 1) && training.epoch + 1 >= minEpochs) {
          state.stoppedEpoch = training.epoch;
          training.requestStop(
            `early stopping: "${monitor}" did not improve for ${state.wait} epoch${state.wait === 1 ? "" : "s"} ` +
              `(best ${state.best.toPrecision(5)} at epoch ${(state.bestEpoch ?? -1) + 1}${state.bestEpoch === undefined ? ", baseline" : ""})`,
          );
          ctx.logger.debug(training.stopReason ?? "early stopping");
        }
      },
      onTrainingEnd(training) {
        if (options.restoreBestWeights && bestWeights && state.bestEpoch !== undefined && state.bestEpoch !== training.history.at(-1)?.epoch) {
          training.model.setWeights(bestWeights);
          state.restored = true;
          ctx.logger.info(`Restored the weights of epoch ${state.bestEpoch + 1} (best "${monitor}" ${state.best})`);
        }
      },
    }),
  });
}

/** Early stopping on "val_loss" with patience 3. */
export default createEarlyStoppingPlugin();
