/**
 * Regression metrics: mean squared error and mean absolute error over every element of
 * `[rows, cols]` predictions (scikit-learn's `multioutput="uniform_average"`, which for outputs of
 * equal length is the mean over all elements). Sums are kept in float64, so streaming over
 * batches equals one pass up to rounding.
 *
 * A NaN prediction makes the result NaN: a regression error has no "wrong" to count, and a NaN
 * that vanished into an average would hide a diverged model.
 * @module
 */

import { KeelError } from "../../core/mod.ts";
import { checkBatch } from "./classification.ts";
import type { Metric } from "./metric.ts";

class RegressionMetric implements Metric {
  readonly name: "mse" | "mae";
  readonly task = "regression" as const;
  readonly options: Readonly<Record<string, unknown>> = Object.freeze({});
  #absSum = 0;
  #sqSum = 0;
  #count = 0;

  constructor(name: "mse" | "mae") {
    this.name = name;
  }

  reset(): void {
    this.#absSum = 0;
    this.#sqSum = 0;
    this.#count = 0;
  }

  update(pred: Float32Array, target: Int32Array | Float32Array, shape: { rows: number; cols: number }): void {
    checkBatch(this.name, pred, target, shape, shape?.cols);
    let abs = 0;
    let sq = 0;
    for (let i = 0; i < pred.length; i++) {
      const e = pred[i]! - target[i]!;
      abs += Math.abs(e);
      sq += e * e;
    }
    this.#absSum += abs;
    this.#sqSum += sq;
    this.#count += pred.length;
  }

  compute(): number {
    return this.fromRegressionSums(this.#absSum, this.#sqSum, this.#count);
  }

  fromRegressionSums(absSum: number, sqSum: number, count: number): number {
    if (typeof count !== "number" || !Number.isInteger(count) || count < 0) {
      throw new KeelError("E_METRIC_INVALID", `Metric "${this.name}" fromRegressionSums needs an element count ≥ 0, got ${String(count)}`);
    }
    if (count === 0) return Number.NaN;
    return (this.name === "mse" ? sqSum : absSum) / count;
  }
}

/** mse: the mean of (prediction − target)² over every element. */
export function meanSquaredError(): Metric {
  return new RegressionMetric("mse");
}

/** mae: the mean of |prediction − target| over every element. */
export function meanAbsoluteError(): Metric {
  return new RegressionMetric("mae");
}
