/**
 * Losses: each turns the model's output and the targets into a running loss sum on the device and
 * the gradient of the batch's mean loss. Cross-entropy takes logits (it applies its own softmax)
 * and i32 class labels; MSE takes f32 targets of the output's shape.
 * @module
 */

import { KeelError } from "../../core/mod.ts";
import type { Backend, DType, Tensor } from "./backend.ts";
import { didYouMean } from "./_names.ts";

/** The losses there are. */
export type LossName = "cross-entropy" | "mse";

/** The names {@link getLoss} accepts. */
export const LOSS_NAMES: readonly LossName[] = ["cross-entropy", "mse"];

/** A loss function over a batch. */
export interface Loss {
  readonly name: LossName;
  /**
   * Accumulates the batch loss sum into lossSum [1] and writes dOutput (mean over the batch:
   * scale = 1/rows, for mse 1/(rows·outputs)).
   */
  apply(backend: Backend, output: Tensor, target: Tensor, dOutput: Tensor, lossSum: Tensor): void;
  /** Targets' dtype and shape for `rows` rows. */
  targetShape(rows: number, outputs: number): { dtype: DType; shape: number[] };
}

const crossEntropy: Loss = Object.freeze({
  name: "cross-entropy" as const,
  apply(backend: Backend, output: Tensor, target: Tensor, dOutput: Tensor, lossSum: Tensor): void {
    const rows = output.shape[0]!;
    backend.softmaxCrossEntropy(output, target, dOutput, lossSum, 1 / rows);
  },
  targetShape(rows: number): { dtype: DType; shape: number[] } {
    return { dtype: "i32", shape: [rows] };
  },
});

const mse: Loss = Object.freeze({
  name: "mse" as const,
  apply(backend: Backend, output: Tensor, target: Tensor, dOutput: Tensor, lossSum: Tensor): void {
    backend.mse(output, target, dOutput, lossSum, 1 / output.size);
  },
  targetShape(rows: number, outputs: number): { dtype: DType; shape: number[] } {
    return { dtype: "f32", shape: [rows, outputs] };
  },
});

/**
 * The loss called `name` ("cross-entropy" or "mse").
 * @throws E_TRAIN_CONFIG for another name, with a suggestion
 */
export function getLoss(name: string): Loss {
  if (name === "cross-entropy") return crossEntropy;
  if (name === "mse") return mse;
  throw new KeelError(
    "E_TRAIN_CONFIG",
    `Unknown loss "${String(name)}"${didYouMean(String(name), LOSS_NAMES)}; use one of ${LOSS_NAMES.map((n) => `"${n}"`).join(", ")}`,
  );
}

/**
 * The mean loss of a batch from its sum: sum / rows for cross-entropy, sum / (rows · outputs)
 * for mse.
 */
export function meanLoss(name: LossName, sum: number, rows: number, outputs: number): number {
  return name === "mse" ? sum / (rows * outputs) : sum / rows;
}
