/**
 * The metric contract: a streaming metric (`reset` / `update` per batch / `compute`), with optional
 * shortcuts the trainer uses when it accumulates on the GPU (`fromConfusion`, `fromTopK`,
 * `fromRegressionSums`), so nothing but a few counters is read back.
 * @module
 */

/**
 * How per-class scores combine, as scikit-learn's `average`: `"micro"` pools every row,
 * `"macro"` is the plain mean over classes, `"weighted"` the mean weighted by each class's support.
 */
export type Average = "micro" | "macro" | "weighted";

/** The averages a metric accepts, for validation and messages. */
export const AVERAGES: readonly Average[] = ["micro", "macro", "weighted"];

/** A streaming metric: reset, update per batch, compute at the end. */
export interface Metric {
  /** Canonical name, e.g. "accuracy", "f1_score" (an alias resolves to it). */
  readonly name: string;
  /**
   * What it needs: "classification" (logits or probabilities + integer labels), "regression"
   * (predictions + float targets).
   */
  readonly task: "classification" | "regression";
  /** Forgets everything seen since creation or the last reset. */
  reset(): void;
  /**
   * Adds a batch. `pred` is `[rows, cols]` row-major: for classification `cols` is the number of
   * classes and the argmax is the predicted class, or a single column for binary (probability
   * ≥ 0.5 → class 1). `target` holds integer labels `[rows]`, or values `[rows · cols]` for
   * regression.
   * @throws {KeelError} `E_METRIC_INVALID` for a shape that does not fit, or a label out of range
   * (naming the label and the row).
   */
  update(pred: Float32Array, target: Int32Array | Float32Array, shape: { rows: number; cols: number }): void;
  /**
   * The value over everything seen since the last reset; `NaN` when nothing was seen.
   * `confusion_matrix` returns the number of rows seen (see {@link ConfusionMatrixMetric.matrix}).
   */
  compute(): number;
  /**
   * For classification metrics that depend only on the confusion matrix: the value from
   * `counts[label * classes + predicted]` (length `classes²`). The trainer accumulates this on the
   * GPU and calls it, so nothing else is read back. `counts` may carry `classes` more entries,
   * `counts[classes² + label]`: rows of that label with no prediction (a NaN output), which count
   * as wrong.
   */
  fromConfusion?(counts: ArrayLike<number>, classes: number): number;
  /** top_k_accuracy: the value from the rows whose label was in the top k, and all rows. */
  fromTopK?(hits: number, total: number): number;
  /** mse / mae: the value from Σ|e|, Σe² and the element count. */
  fromRegressionSums?(absSum: number, sqSum: number, count: number): number;
  /** The options it was made with, defaults filled in (k, average, classes, ...). */
  readonly options: Readonly<Record<string, unknown>>;
}

/** A confusion matrix: `compute()` is the number of rows seen, `matrix()` the counts. */
export interface ConfusionMatrixMetric extends Metric {
  /**
   * `matrix()[label][predicted]`: rows whose true class is `label` and whose predicted class is
   * `predicted` (scikit-learn's layout). Rows with a NaN output are in no cell.
   */
  matrix(): number[][];
}

/**
 * Options a metric may take. Each built-in accepts only the ones it uses (and `classes` for every
 * classification metric); any other key is `E_METRIC_INVALID`.
 */
export interface MetricOptions {
  /** precision / recall / f1_score: how per-class scores combine. Default "macro" (see the metric). */
  readonly average?: Average;
  /** top_k_accuracy: how many of the highest scores may hold the label. Default 5. */
  readonly k?: number;
  /** Number of classes; checked against the prediction's columns on update. */
  readonly classes?: number;
  /** precision / recall / f1_score: score this one class only (binary scoring). */
  readonly positiveClass?: number;
  /** The value of a ratio whose denominator is 0 (a class never predicted, ...). Default 0. */
  readonly zeroDivision?: 0 | 1;
}

/** Makes a fresh metric from options (already checked for unknown keys by the registry). */
export type MetricFactory = (options: MetricOptions) => Metric;
