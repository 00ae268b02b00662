/**
 * Training config files for `keel train`: a module whose default export is
 * `defineTrainConfig({ model, data, loss, optimizer, epochs, batchSize, ... })`.
 * @module
 */

import { KeelError } from "../../core/mod.ts";
import type { Dataset } from "./data.ts";
import type { Model } from "./model.ts";
import type { OptimizerDef } from "./optimizers.ts";
import type { MetricRequest } from "./trainer.ts";

/** The data a config provides: training rows, and validation rows or a fraction to hold out. */
export interface TrainData {
  readonly train: Dataset;
  readonly validation?: Dataset | { readonly fraction: number };
  /** Rows to report a final test score on (never trained on). */
  readonly test?: Dataset;
}

/** What a training config holds. */
export interface TrainConfig {
  /** The model, or a function making it (so each run starts fresh). */
  readonly model: Model | (() => Model);
  /** The data, or a function loading it. */
  readonly data: TrainData | (() => TrainData | Promise<TrainData>);
  readonly loss: "cross-entropy" | "mse";
  readonly optimizer?: OptimizerDef | "sgd" | "adam" | "adamw";
  readonly lr?: number;
  readonly epochs: number;
  readonly batchSize: number;
  readonly metrics?: readonly MetricRequest[];
  readonly seed?: number;
  readonly clipGradNorm?: number;
  readonly lossReadEvery?: number;
  /** Early stopping (the early-stopping plugin's options), or false/undefined for none. */
  readonly earlyStopping?: false | {
    readonly monitor?: string;
    readonly patience?: number;
    readonly minDelta?: number;
    readonly mode?: "min" | "max" | "auto";
    readonly baseline?: number;
    readonly minEpochs?: number;
    readonly restoreBestWeights?: boolean;
  };
  /** Checkpoints: a folder (default `.keel/checkpoints/<config name>`), or false for none. */
  readonly checkpoint?: false | { readonly dir?: string; readonly every?: number; readonly keep?: number };
  /** TensorBoard event files: a log folder, or false (default) for none. */
  readonly tensorboard?: false | { readonly logDir?: string };
  /** Export the trained model to ONNX at this path. */
  readonly onnx?: false | { readonly exportTo: string };
}

/** Identity helper that types a training config. */
export function defineTrainConfig<const C extends TrainConfig>(config: C): C {
  return config;
}

const KEYS = new Set([
  "model", "data", "loss", "optimizer", "lr", "epochs", "batchSize", "metrics", "seed", "clipGradNorm",
  "lossReadEvery", "earlyStopping", "checkpoint", "tensorboard", "onnx",
]);

/**
 * Checks a config module's default export.
 * @throws {KeelError} `E_TRAIN_CONFIG` naming the field and what it should be
 */
export function validateTrainConfig(value: unknown, source: string): TrainConfig {
  const bad = (message: string) => new KeelError("E_TRAIN_CONFIG", `${source}: ${message}`, { details: { source } });
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad("the default export must be defineTrainConfig({ model, data, loss, epochs, batchSize, ... })");
  }
  const c = value as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (!KEYS.has(key)) throw bad(`unknown field "${key}"; fields are ${[...KEYS].join(", ")}`);
  }
  if (c["model"] === undefined) throw bad('"model" is missing: sequential([dense(784, 128), relu(), dense(128, 10)])');
  if (c["data"] === undefined) throw bad('"data" is missing: { train, validation? } or a function returning it');
  if (c["loss"] !== "cross-entropy" && c["loss"] !== "mse") throw bad(`"loss" must be "cross-entropy" or "mse", got ${JSON.stringify(c["loss"])}`);
  for (const key of ["epochs", "batchSize"]) {
    const v = c[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw bad(`"${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return value as TrainConfig;
}
