/**
 * The training lifecycle the trainer plugin drives and other plugins observe (bz's hooks, as
 * kernel hooks). Type-only: the trainer lives in `plugins/trainer/`.
 * @module
 */

/** Metric values by name ("accuracy", "f1_score", "loss", ...). */
export type MetricValues = Record<string, number>;

/**
 * What every training hook receives: one object for the whole run, mutated as it goes.
 * Plugins read it, write `extra`, and call `requestStop`.
 */
export interface TrainingContext {
  /** Current epoch, 0-based. */
  epoch: number;
  /** Epochs asked for. */
  readonly epochs: number;
  /** Optimizer steps taken so far (across epochs, including resumed ones). */
  step: number;
  /** Batch index inside the current loop (training or validation). */
  batch: number;
  /** Batches per epoch in the training loop and in the validation loop. */
  readonly trainingBatches: number;
  readonly validationBatches: number;
  /** Σ batch losses this epoch so far, as far as read back (see `lossReadEvery`). */
  trainingLossTotal: number;
  trainingBatchCount: number;
  validationLossTotal: number;
  validationBatchCount: number;
  /** Training metrics of the last finished epoch (plus "loss"). */
  trainingMetrics: MetricValues;
  /** Validation metrics of the last finished validation loop (plus "loss"). */
  validationMetrics: MetricValues;
  /** One entry per finished epoch. */
  readonly history: { epoch: number; training: MetricValues; validation: MetricValues; seconds: number }[];
  /** lr, batchSize, optimizer, seed, ... as the run was configured. */
  readonly hyperparameters: Readonly<Record<string, unknown>>;
  /** Free space for plugins. */
  readonly extra: Record<string, unknown>;
  /** Samples seen in the current epoch, and the epoch's sample count. */
  samplesSeen: number;
  readonly samplesPerEpoch: number;
  /** When the current epoch started (ms since epoch, wall clock). */
  epochStartedAt: number;
  /** What it runs on: backend ("webgpu", "cpu") and device name. */
  readonly backend: { readonly name: string; readonly device: string };
  /** True once someone asked to stop; takes effect at the end of the current epoch. */
  readonly shouldStop: boolean;
  readonly stopReason: string | undefined;
  /** Stops training at the end of this epoch (not one epoch late). */
  requestStop(reason: string): void;
  /**
   * The model being trained (`plugins/trainer`'s `Model`): `getWeights()`, `setWeights()`,
   * `spec`. Typed loosely here because core does not know the trainer.
   */
  readonly model: TrainingModel;
  /** The optimizer state, for checkpoints: `getState()` / `setState()`. */
  readonly optimizer: TrainingOptimizer;
}

/** What checkpoint plugins need from a model. */
export interface TrainingModel {
  readonly spec: unknown;
  getWeights(): Promise<Record<string, { shape: readonly number[]; data: Float32Array }>>;
  setWeights(weights: Record<string, { shape: readonly number[]; data: Float32Array }>): void;
}

/** What checkpoint plugins need from an optimizer. */
export interface TrainingOptimizer {
  readonly name: string;
  getState(): Promise<{ config: Record<string, unknown>; step: number; buffers: Record<string, { shape: readonly number[]; data: Float32Array }> }>;
  setState(state: { config: Record<string, unknown>; step: number; buffers: Record<string, { shape: readonly number[]; data: Float32Array }> }): void;
}

/** What `onSaveCheckpoint` / `onLoadCheckpoint` receive beyond the context. */
export interface CheckpointEvent {
  /** "epoch" at an epoch's end, "best" when a monitor improved, "final", or "resume" on load. */
  readonly reason: string;
}
