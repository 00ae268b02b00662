/**
 * Classification metrics: accuracy, precision, recall, F1 (micro / macro / weighted), top-k
 * accuracy and the confusion matrix. Each streams: it keeps a confusion matrix (or hit counts) as
 * batches arrive, and `compute()` reads the score off it, so streaming over batches equals one
 * pass over all rows.
 *
 * Semantics, as scikit-learn with `zero_division=0` unless `zeroDivision: 1` is given:
 * - the predicted class of a row is the argmax of its columns (the first on a tie); with a single
 *   column it is 1 when the probability is ≥ 0.5, else 0;
 * - a row whose output holds NaN has no predicted class: it counts as wrong (a miss for its
 *   label's recall and for accuracy) but as nobody's false positive;
 * - a ratio whose denominator is 0 (a class never predicted, a class with no rows) is
 *   `zeroDivision` (0 by default), without a warning;
 * - "macro" averages over the classes that occur in the labels or the predictions (scikit-learn's
 *   default label set); "weighted" weights each class by its support;
 * - with two classes and no `average`, precision / recall / F1 score class 1 (or `positiveClass`),
 *   as scikit-learn's `average="binary"`; `positiveClass` always scores just that class.
 * @module
 */

import { KeelError } from "../../core/mod.ts";
import { type Average, AVERAGES, type ConfusionMatrixMetric, type Metric, type MetricOptions } from "./metric.ts";

/** Option keys every classification metric accepts. */
const COMMON_KEYS = ["classes"] as const;

/** The option keys each built-in accepts, for the registry's unknown-key check. */
export const OPTION_KEYS: Readonly<Record<string, readonly string[]>> = {
  accuracy: [...COMMON_KEYS],
  precision: [...COMMON_KEYS, "average", "positiveClass", "zeroDivision"],
  recall: [...COMMON_KEYS, "average", "positiveClass", "zeroDivision"],
  f1_score: [...COMMON_KEYS, "average", "positiveClass", "zeroDivision"],
  top_k_accuracy: [...COMMON_KEYS, "k"],
  confusion_matrix: [...COMMON_KEYS],
  mse: [],
  mae: [],
};

function invalid(message: string, details?: Record<string, unknown>): KeelError {
  return new KeelError("E_METRIC_INVALID", message, details === undefined ? {} : { details });
}

function isCount(n: unknown, min: number): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= min;
}

/** Checks the options shared by classification metrics; returns `classes` when given. */
function checkClasses(name: string, options: MetricOptions): number | undefined {
  const { classes } = options;
  if (classes !== undefined && !isCount(classes, 1)) {
    throw invalid(`Metric "${name}" option "classes" must be a positive integer, got ${String(classes)}`);
  }
  return classes;
}

/** Checks batch shape and lengths, throwing `E_METRIC_INVALID` with the numbers involved. */
export function checkBatch(
  name: string,
  pred: Float32Array,
  target: Int32Array | Float32Array,
  shape: { rows: number; cols: number },
  targetPerRow: number,
): void {
  if (!(pred instanceof Float32Array)) throw invalid(`Metric "${name}" needs predictions as a Float32Array`);
  if (!(target instanceof Int32Array) && !(target instanceof Float32Array)) {
    throw invalid(`Metric "${name}" needs targets as an Int32Array or Float32Array`);
  }
  if (typeof shape !== "object" || shape === null || !isCount(shape.rows, 0) || !isCount(shape.cols, 1)) {
    throw invalid(`Metric "${name}" needs shape { rows, cols } with rows ≥ 0 and cols ≥ 1 integers`);
  }
  if (pred.length !== shape.rows * shape.cols) {
    throw invalid(
      `Metric "${name}" got ${pred.length} predictions for shape [${shape.rows}, ${shape.cols}]; pass rows · cols = ${shape.rows * shape.cols}`,
    );
  }
  if (target.length !== shape.rows * targetPerRow) {
    throw invalid(
      `Metric "${name}" got ${target.length} targets for ${shape.rows} rows; pass ${shape.rows * targetPerRow}` +
        (targetPerRow === 1 ? " (one integer label per row)" : ` (${targetPerRow} values per row)`),
    );
  }
}

/** The number of classes a prediction with `cols` columns stands for. */
function classesOf(cols: number): number {
  return cols === 1 ? 2 : cols;
}

/**
 * Accumulates a confusion matrix over batches: `counts[label * classes + predicted]`, plus the
 * rows whose output was NaN, per label, in `counts[classes² + label]`.
 */
class ConfusionTally {
  readonly #name: string;
  readonly #fixedClasses: number | undefined;
  #cols = 0;
  #classes = 0;
  #counts = new Float64Array(0);
  #rows = 0;

  constructor(name: string, classes: number | undefined) {
    this.#name = name;
    this.#fixedClasses = classes;
  }

  get classes(): number {
    return this.#classes;
  }

  get rows(): number {
    return this.#rows;
  }

  /** The counts, `classes² + classes` long (the NaN rows last). */
  get counts(): Float64Array {
    return this.#counts;
  }

  reset(): void {
    this.#cols = 0;
    this.#classes = 0;
    this.#counts = new Float64Array(0);
    this.#rows = 0;
  }

  #begin(cols: number): number {
    const classes = classesOf(cols);
    if (this.#fixedClasses !== undefined && this.#fixedClasses !== classes) {
      throw invalid(
        `Metric "${this.#name}" was made for ${this.#fixedClasses} classes but the predictions have ${cols} column${cols === 1 ? "" : "s"} (${classes} classes); pass predictions with one column per class`,
      );
    }
    if (this.#cols === 0) {
      this.#cols = cols;
      this.#classes = classes;
      this.#counts = new Float64Array(classes * classes + classes);
    } else if (this.#cols !== cols) {
      throw invalid(
        `Metric "${this.#name}" got predictions with ${cols} columns after ${this.#cols}; every batch must have the same columns, or call reset() first`,
      );
    }
    return classes;
  }

  add(pred: Float32Array, target: Int32Array | Float32Array, shape: { rows: number; cols: number }): void {
    checkBatch(this.#name, pred, target, shape, 1);
    const { rows, cols } = shape;
    if (rows === 0) return;
    const classes = this.#begin(cols);
    const labels = checkLabels(this.#name, target, classes, this.#rows);
    const counts = this.#counts;
    const nanBase = classes * classes;
    for (let r = 0; r < rows; r++) {
      const label = labels[r]!;
      const predicted = predictedClass(pred, r, cols);
      if (predicted < 0) counts[nanBase + label]! += 1;
      else counts[label * classes + predicted]! += 1;
    }
    this.#rows += rows;
  }
}

/** Checks every label is an integer in [0, classes) and returns them (as they are). */
function checkLabels(name: string, target: Int32Array | Float32Array, classes: number, seen: number): Int32Array | Float32Array {
  for (let r = 0; r < target.length; r++) {
    const label = target[r]!;
    if (!Number.isInteger(label) || label < 0 || label >= classes) {
      const what = Number.isInteger(label) ? `outside [0, ${classes})` : "not an integer";
      throw invalid(
        `Metric "${name}" got label ${label} at row ${r} of the batch (row ${seen + r} since reset), ${what}; labels must be class indices below the number of classes (${classes})`,
        { label, row: r, rowSinceReset: seen + r, classes },
      );
    }
  }
  return target;
}

/** The predicted class of row `r`, or -1 when its output holds NaN. */
function predictedClass(pred: Float32Array, r: number, cols: number): number {
  if (cols === 1) {
    const p = pred[r]!;
    return Number.isNaN(p) ? -1 : p >= 0.5 ? 1 : 0;
  }
  const base = r * cols;
  let best = 0;
  let bestValue = pred[base]!;
  if (Number.isNaN(bestValue)) return -1;
  for (let c = 1; c < cols; c++) {
    const v = pred[base + c]!;
    if (Number.isNaN(v)) return -1;
    if (v > bestValue) {
      bestValue = v;
      best = c;
    }
  }
  return best;
}

/** Checks `fromConfusion` input and returns the number of classes. */
function checkCounts(name: string, counts: ArrayLike<number>, classes: number, fixed: number | undefined): void {
  if (!isCount(classes, 1)) throw invalid(`Metric "${name}" needs "classes" ≥ 1 for fromConfusion, got ${String(classes)}`);
  if (fixed !== undefined && fixed !== classes) {
    throw invalid(`Metric "${name}" was made for ${fixed} classes but fromConfusion got ${classes}`);
  }
  const square = classes * classes;
  if (counts === null || typeof counts !== "object" || (counts.length !== square && counts.length !== square + classes)) {
    throw invalid(
      `Metric "${name}" fromConfusion needs ${square} counts (counts[label * ${classes} + predicted]), or ${square + classes} with the NaN rows per label last; got ${String(counts?.length)}`,
    );
  }
}

/** Per-class true positives, predicted counts and supports from confusion counts. */
interface ClassTotals {
  readonly tp: Float64Array;
  /** Rows predicted as the class (column sums). */
  readonly predicted: Float64Array;
  /** Rows labelled as the class (row sums, NaN rows included). */
  readonly support: Float64Array;
  readonly rows: number;
}

function totals(counts: ArrayLike<number>, classes: number): ClassTotals {
  const tp = new Float64Array(classes);
  const predicted = new Float64Array(classes);
  const support = new Float64Array(classes);
  let rows = 0;
  for (let l = 0; l < classes; l++) {
    for (let p = 0; p < classes; p++) {
      const n = counts[l * classes + p]!;
      if (l === p) tp[l] = n;
      predicted[p]! += n;
      support[l]! += n;
      rows += n;
    }
  }
  if (counts.length > classes * classes) {
    for (let l = 0; l < classes; l++) {
      const n = counts[classes * classes + l]!;
      support[l]! += n;
      rows += n;
    }
  }
  return { tp, predicted, support, rows };
}

function ratio(num: number, den: number, zeroDivision: number): number {
  return den === 0 ? zeroDivision : num / den;
}

/** Which score a precision / recall / F1 metric computes. */
type PrfKind = "precision" | "recall" | "f1";

/** One class's score from its totals. */
function classScore(kind: PrfKind, tp: number, predicted: number, support: number, zd: number): number {
  if (kind === "precision") return ratio(tp, predicted, zd);
  if (kind === "recall") return ratio(tp, support, zd);
  // 2tp / (2tp + fp + fn), as scikit-learn ≥ 1.3: zero_division only when the class is nowhere.
  return ratio(2 * tp, predicted + support, zd);
}

/** How a precision / recall / F1 metric reduces per-class scores. */
type PrfMode = { readonly kind: "class"; readonly positive: number } | { readonly kind: "average"; readonly average: Average };

function prfScore(kind: PrfKind, t: ClassTotals, classes: number, mode: PrfMode, zd: number): number {
  if (t.rows === 0) return Number.NaN;
  if (mode.kind === "class") {
    const c = mode.positive;
    return classScore(kind, t.tp[c]!, t.predicted[c]!, t.support[c]!, zd);
  }
  if (mode.average === "micro") {
    let tp = 0, predicted = 0, support = 0;
    for (let c = 0; c < classes; c++) {
      tp += t.tp[c]!;
      predicted += t.predicted[c]!;
      support += t.support[c]!;
    }
    return classScore(kind, tp, predicted, support, zd);
  }
  let sum = 0, weight = 0;
  for (let c = 0; c < classes; c++) {
    const present = t.support[c]! > 0 || t.predicted[c]! > 0;
    if (!present) continue;
    const score = classScore(kind, t.tp[c]!, t.predicted[c]!, t.support[c]!, zd);
    const w = mode.average === "macro" ? 1 : t.support[c]!;
    sum += score * w;
    weight += w;
  }
  return ratio(sum, weight, zd);
}

/** A classification metric over a confusion tally; subclasses read the score off the counts. */
abstract class ConfusionMetric implements Metric {
  abstract readonly name: string;
  readonly task = "classification" as const;
  readonly options: Readonly<Record<string, unknown>>;
  protected readonly tally: ConfusionTally;
  protected readonly fixedClasses: number | undefined;

  constructor(name: string, options: Readonly<Record<string, unknown>>, classes: number | undefined) {
    this.options = Object.freeze({ ...options });
    this.fixedClasses = classes;
    this.tally = new ConfusionTally(name, classes);
  }

  reset(): void {
    this.tally.reset();
  }

  update(pred: Float32Array, target: Int32Array | Float32Array, shape: { rows: number; cols: number }): void {
    this.tally.add(pred, target, shape);
  }

  compute(): number {
    if (this.tally.rows === 0) return Number.NaN;
    return this.score(this.tally.counts, this.tally.classes);
  }

  fromConfusion(counts: ArrayLike<number>, classes: number): number {
    checkCounts(this.name, counts, classes, this.fixedClasses);
    return this.score(counts, classes);
  }

  protected abstract score(counts: ArrayLike<number>, classes: number): number;
}

class AccuracyMetric extends ConfusionMetric {
  readonly name = "accuracy";

  protected score(counts: ArrayLike<number>, classes: number): number {
    const t = totals(counts, classes);
    if (t.rows === 0) return Number.NaN;
    let correct = 0;
    for (let c = 0; c < classes; c++) correct += t.tp[c]!;
    return correct / t.rows;
  }
}

class PrfMetric extends ConfusionMetric {
  readonly name: string;
  readonly #kind: PrfKind;
  readonly #average: Average | undefined;
  readonly #positive: number | undefined;
  readonly #zeroDivision: number;

  constructor(name: string, kind: PrfKind, options: MetricOptions) {
    const classes = checkClasses(name, options);
    const { average, positiveClass, zeroDivision } = options;
    if (average !== undefined && !AVERAGES.includes(average)) {
      throw invalid(`Metric "${name}" option "average" must be one of ${AVERAGES.map((a) => `"${a}"`).join(", ")}, got ${JSON.stringify(average)}`);
    }
    if (positiveClass !== undefined) {
      if (!isCount(positiveClass, 0)) throw invalid(`Metric "${name}" option "positiveClass" must be an integer ≥ 0, got ${String(positiveClass)}`);
      if (classes !== undefined && positiveClass >= classes) {
        throw invalid(`Metric "${name}" option "positiveClass" is ${positiveClass} but there are only ${classes} classes; pass a class below ${classes}`);
      }
      if (average !== undefined) {
        throw invalid(`Metric "${name}" takes "positiveClass" or "average", not both: "positiveClass" scores that one class`);
      }
    }
    if (zeroDivision !== undefined && zeroDivision !== 0 && zeroDivision !== 1) {
      throw invalid(`Metric "${name}" option "zeroDivision" must be 0 or 1, got ${String(zeroDivision)}`);
    }
    super(name, {
      ...(classes === undefined ? {} : { classes }),
      ...(positiveClass === undefined ? { average: average ?? "macro" } : { positiveClass }),
      zeroDivision: zeroDivision ?? 0,
    }, classes);
    this.name = name;
    this.#kind = kind;
    this.#average = average;
    this.#positive = positiveClass;
    this.#zeroDivision = zeroDivision ?? 0;
  }

  #mode(classes: number): PrfMode {
    if (this.#positive !== undefined) {
      if (this.#positive >= classes) {
        throw invalid(`Metric "${this.name}" option "positiveClass" is ${this.#positive} but the data has ${classes} classes`);
      }
      return { kind: "class", positive: this.#positive };
    }
    if (this.#average === undefined && classes === 2) return { kind: "class", positive: 1 };
    return { kind: "average", average: this.#average ?? "macro" };
  }

  protected score(counts: ArrayLike<number>, classes: number): number {
    return prfScore(this.#kind, totals(counts, classes), classes, this.#mode(classes), this.#zeroDivision);
  }
}

class ConfusionMatrix extends ConfusionMetric implements ConfusionMatrixMetric {
  readonly name = "confusion_matrix";

  protected score(counts: ArrayLike<number>, classes: number): number {
    return totals(counts, classes).rows;
  }

  matrix(): number[][] {
    const classes = this.tally.classes || (this.fixedClasses ?? 0);
    const counts = this.tally.counts;
    return Array.from({ length: classes }, (_, l) =>
      Array.from({ length: classes }, (_, p) => (counts.length === 0 ? 0 : counts[l * classes + p]!)));
  }
}

class TopKAccuracy implements Metric {
  readonly name = "top_k_accuracy";
  readonly task = "classification" as const;
  readonly options: Readonly<Record<string, unknown>>;
  readonly #k: number;
  readonly #classes: number | undefined;
  #cols = 0;
  #hits = 0;
  #rows = 0;

  constructor(options: MetricOptions) {
    const classes = checkClasses(this.name, options);
    const k = options.k ?? 5;
    if (!isCount(k, 1)) throw invalid(`Metric "top_k_accuracy" option "k" must be a positive integer, got ${String(k)}`);
    if (classes !== undefined && k > classes) {
      throw invalid(`Metric "top_k_accuracy" has k = ${k} but only ${classes} classes; pass k ≤ ${classes}`, { k, classes });
    }
    this.#k = k;
    this.#classes = classes;
    this.options = Object.freeze({ k, ...(classes === undefined ? {} : { classes }) });
  }

  reset(): void {
    this.#cols = 0;
    this.#hits = 0;
    this.#rows = 0;
  }

  update(pred: Float32Array, target: Int32Array | Float32Array, shape: { rows: number; cols: number }): void {
    checkBatch(this.name, pred, target, shape, 1);
    const { rows, cols } = shape;
    if (rows === 0) return;
    const classes = classesOf(cols);
    if (this.#classes !== undefined && this.#classes !== classes) {
      throw invalid(`Metric "top_k_accuracy" was made for ${this.#classes} classes but the predictions have ${cols} columns; pass one column per class`);
    }
    if (this.#k > classes) {
      throw invalid(`Metric "top_k_accuracy" has k = ${this.#k} but the predictions have only ${classes} classes; pass k ≤ ${classes}`, { k: this.#k, classes });
    }
    if (this.#cols !== 0 && this.#cols !== cols) {
      throw invalid(`Metric "top_k_accuracy" got predictions with ${cols} columns after ${this.#cols}; every batch must have the same columns, or call reset() first`);
    }
    const labels = checkLabels(this.name, target, classes, this.#rows);
    this.#cols = cols;
    let hits = 0;
    for (let r = 0; r < rows; r++) if (inTopK(pred, r, cols, labels[r]!, this.#k)) hits++;
    this.#hits += hits;
    this.#rows += rows;
  }

  compute(): number {
    return this.#rows === 0 ? Number.NaN : this.#hits / this.#rows;
  }

  fromTopK(hits: number, total: number): number {
    if (!isCount(hits, 0) || !isCount(total, 0) || hits > total) {
      throw invalid(`Metric "top_k_accuracy" fromTopK needs integers 0 ≤ hits ≤ total, got ${String(hits)} and ${String(total)}`);
    }
    return total === 0 ? Number.NaN : hits / total;
  }
}

/**
 * True when fewer than `k` classes score strictly higher than the label (so a tie with the label
 * counts as a hit); a row holding NaN is a miss.
 */
function inTopK(pred: Float32Array, r: number, cols: number, label: number, k: number): boolean {
  if (cols === 1) {
    const p = pred[r]!;
    if (Number.isNaN(p)) return false;
    const scores = [1 - p, p];
    const mine = scores[label]!;
    return (scores[1 - label]! > mine ? 1 : 0) < k;
  }
  const base = r * cols;
  const mine = pred[base + label]!;
  let above = 0;
  for (let c = 0; c < cols; c++) {
    const v = pred[base + c]!;
    if (Number.isNaN(v)) return false;
    if (v > mine) above++;
  }
  return above < k;
}

/** accuracy: the fraction of rows whose predicted class is the label. */
export function accuracy(options: MetricOptions = {}): Metric {
  return new AccuracyMetric("accuracy", { ...optionalClasses(checkClasses("accuracy", options)) }, options.classes);
}

function optionalClasses(classes: number | undefined): { classes?: number } {
  return classes === undefined ? {} : { classes };
}

/** precision: tp / (tp + fp), per class then averaged. */
export function precision(options: MetricOptions = {}): Metric {
  return new PrfMetric("precision", "precision", options);
}

/** recall: tp / (tp + fn), per class then averaged. */
export function recall(options: MetricOptions = {}): Metric {
  return new PrfMetric("recall", "recall", options);
}

/** f1_score: 2tp / (2tp + fp + fn) per class (the harmonic mean of precision and recall), then averaged. */
export function f1Score(options: MetricOptions = {}): Metric {
  return new PrfMetric("f1_score", "f1", options);
}

/**
 * top_k_accuracy: the fraction of rows whose label is among the `k` highest scores (default 5).
 * @throws {KeelError} `E_METRIC_INVALID` when `k` is more than the classes.
 */
export function topKAccuracy(options: MetricOptions = {}): Metric {
  return new TopKAccuracy(options);
}

/** confusion_matrix: `matrix()[label][predicted]`; `compute()` is the number of rows seen. */
export function confusionMatrix(options: MetricOptions = {}): ConfusionMatrixMetric {
  return new ConfusionMatrix("confusion_matrix", { ...optionalClasses(checkClasses("confusion_matrix", options)) }, options.classes);
}
