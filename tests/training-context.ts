/**
 * A TrainingContext for testing training plugins without the trainer: every field at a neutral
 * value, a working `requestStop`, a model and optimizer with nothing in them; a test overrides
 * what it exercises (and may add helpers of its own).
 */
import type { MetricValues, TrainingContext } from "../core/mod.ts";

/** Fields a test may set; the stop state stays the fixture's own. */
export type TrainingContextOverrides = Partial<Omit<TrainingContext, "shouldStop" | "stopReason" | "requestStop">>;

/** A context with `overrides` (and any extra helper properties) applied over neutral values. */
export function fakeTrainingContext<const O extends TrainingContextOverrides>(overrides: O = {} as O): TrainingContext & O {
  let stopReason: string | undefined;
  const base = {
    epoch: 0, epochs: 1, step: 0, batch: 0, trainingBatches: 1, validationBatches: 1,
    trainingLossTotal: 0, trainingBatchCount: 0, validationLossTotal: 0, validationBatchCount: 0,
    trainingMetrics: {} as MetricValues, validationMetrics: {} as MetricValues,
    history: [] as TrainingContext["history"], hyperparameters: {}, extra: {} as Record<string, unknown>,
    samplesSeen: 0, samplesPerEpoch: 1, epochStartedAt: 0, backend: { name: "cpu", device: "test" },
    get shouldStop() {
      return stopReason !== undefined;
    },
    get stopReason() {
      return stopReason;
    },
    requestStop(reason: string) {
      stopReason ??= reason;
    },
    model: { spec: {}, getWeights: () => Promise.resolve({}), setWeights() {} } as TrainingContext["model"],
    optimizer: {
      name: "sgd",
      getState: () => Promise.resolve({ config: {}, step: 0, buffers: {} }),
      setState() {},
    } as TrainingContext["optimizer"],
  };
  return Object.assign(base, overrides) as TrainingContext & O;
}
