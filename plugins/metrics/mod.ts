/**
 * metrics: streaming metrics for training and evaluation, and a registry plugins can add to.
 *
 * Built-ins: `accuracy` (alias `acc`), `precision`, `recall`, `f1_score` (alias `f1`; `average`
 * "micro", "macro" (default) or "weighted"; with two classes and no `average`, the positive
 * class's score as scikit-learn's `average="binary"`), `top_k_accuracy` (`k`, default 5),
 * `confusion_matrix`, `mse`, `mae`. Each has `reset` / `update` / `compute`; classification
 * metrics that depend only on the confusion matrix also take `fromConfusion(counts, classes)`, so
 * the trainer can count on the GPU and read back one small matrix.
 *
 * Edge cases, stated once: a ratio with a zero denominator (a class never predicted) is 0, as
 * scikit-learn's `zero_division=0` but without a warning (`zeroDivision: 1` for 1); a row whose
 * output holds NaN counts as wrong for classification metrics and makes mse / mae NaN; a metric
 * that has seen no rows computes NaN.
 *
 * The plugin asks for no capabilities and provides {@link metricsService}. Another plugin adds a
 * metric by listing `"metrics"` in `requires` and calling
 * `ctx.require(metricsService).register(name, factory)` in its `setup`.
 *
 * @example
 * ```ts
 * import { createMetricRegistry } from "./mod.ts";
 * const f1 = createMetricRegistry().getMetric("f1", { average: "weighted" });
 * f1.update(new Float32Array([0.9, 0.1, 0.2, 0.8]), new Int32Array([0, 1]), { rows: 2, cols: 2 });
 * console.assert(f1.compute() === 1);
 * ```
 * @module
 */

import { definePlugin, defineService, type ServiceKey } from "../../core/mod.ts";
import { createMetricRegistry, type MetricRegistry } from "./registry.ts";

export type { Average, ConfusionMatrixMetric, Metric, MetricFactory, MetricOptions } from "./metric.ts";
export { AVERAGES } from "./metric.ts";
export { accuracy, confusionMatrix, f1Score, precision, recall, topKAccuracy } from "./classification.ts";
export { meanAbsoluteError, meanSquaredError } from "./regression.ts";
export { createMetricRegistry, type MetricRegistry } from "./registry.ts";

/** The metric registry, as a kernel service: `ctx.require(metricsService)`. */
export const metricsService: ServiceKey<MetricRegistry> = defineService<MetricRegistry>("metrics");

/** The metrics plugin: provides {@link metricsService} with the built-ins. Asks for no capabilities. */
const metricsPlugin = definePlugin({
  name: "metrics",
  version: "0.1.0",
  kernel: "^1",
  description: "Streaming metrics (accuracy, precision / recall / F1 with micro, macro, weighted averaging, top-k, confusion matrix, MSE, MAE) and a registry for custom ones",
  setup(ctx) {
    ctx.provide(metricsService, createMetricRegistry());
  },
});

export default metricsPlugin;
