/**
 * The metric registry: built-ins, aliases, custom metrics registered by plugins, and
 * did-you-mean for unknown names.
 * @module
 */

import { editDistance, KeelError } from "../../core/mod.ts";
import {
  accuracy,
  confusionMatrix,
  f1Score,
  OPTION_KEYS,
  precision,
  recall,
  topKAccuracy,
} from "./classification.ts";
import type { Metric, MetricFactory, MetricOptions } from "./metric.ts";
import { meanAbsoluteError, meanSquaredError } from "./regression.ts";

/** Metrics by name: make one with options, list them, add your own. */
export interface MetricRegistry {
  /**
   * A fresh metric (its own state) by name or alias ("f1" → "f1_score", "acc" → "accuracy").
   * @throws {KeelError} `E_METRIC_UNKNOWN` (with a did-you-mean) for a name nobody registered,
   * `E_METRIC_INVALID` for bad options (an unknown key, a bad `average`, `k` > `classes`, ...).
   */
  getMetric(name: string, options?: MetricOptions): Metric;
  /** Every registered metric (aliases not repeated), sorted by name. */
  listMetrics(): { name: string; task: string; description: string }[];
  /**
   * Adds a metric. Its factory gets the options as passed to `getMetric`.
   * @throws {KeelError} `E_METRIC_INVALID` when the name (or an alias) is taken or malformed.
   */
  register(
    name: string,
    factory: MetricFactory,
    info?: { description?: string; task?: "classification" | "regression" },
  ): void;
  /** True for a registered name or alias. */
  has(name: string): boolean;
}

interface Entry {
  readonly factory: MetricFactory;
  readonly description: string;
  readonly task: "classification" | "regression";
  /** Option keys a built-in accepts; a custom metric's factory checks its own (undefined). */
  readonly keys: readonly string[] | undefined;
}

const ALIASES: Readonly<Record<string, string>> = { f1: "f1_score", acc: "accuracy" };

const NAME = /^[a-z][a-z0-9_]*(?:[/.-][a-z0-9_]+)*$/;

function closest(name: string, candidates: readonly string[], limit: number): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= limit ? best : undefined;
}

function checkOptionKeys(name: string, options: MetricOptions, keys: readonly string[] | undefined): void {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new KeelError("E_METRIC_INVALID", `Options for metric "${name}" must be an object`);
  }
  if (keys === undefined) return;
  const allowed = keys;
  for (const key of Object.keys(options)) {
    if ((options as Record<string, unknown>)[key] === undefined || allowed.includes(key)) continue;
    const near = closest(key, allowed, 2);
    const hint = near ? `; did you mean "${near}"?` : allowed.length ? `; it takes ${allowed.map((k) => `"${k}"`).join(", ")}` : "; it takes no options";
    throw new KeelError("E_METRIC_INVALID", `Metric "${name}" has no option "${key}"${hint}`, {
      details: { metric: name, option: key, allowed: [...allowed] },
    });
  }
}

/** The registry's built-ins, in listing order. */
function builtIns(): [string, Entry][] {
  const c = "classification" as const;
  const entry = (name: string, factory: MetricFactory, description: string, task: "classification" | "regression" = c): [string, Entry] =>
    [name, { factory, description, task, keys: OPTION_KEYS[name] ?? [] }];
  return [
    entry("accuracy", accuracy, "Fraction of rows whose predicted class (argmax) is the label"),
    entry("precision", precision, "tp / (tp + fp) per class; average micro, macro (default) or weighted"),
    entry("recall", recall, "tp / (tp + fn) per class; average micro, macro (default) or weighted"),
    entry("f1_score", f1Score, "Harmonic mean of precision and recall per class; average micro, macro (default) or weighted"),
    entry("top_k_accuracy", topKAccuracy, "Fraction of rows whose label is among the k highest scores (k default 5)"),
    entry("confusion_matrix", confusionMatrix, "Counts of [label][predicted]; compute() is the number of rows"),
    entry("mse", () => meanSquaredError(), "Mean squared error over every element", "regression"),
    entry("mae", () => meanAbsoluteError(), "Mean absolute error over every element", "regression"),
  ];
}

/** A registry holding the built-in metrics and aliases "f1" and "acc". */
export function createMetricRegistry(): MetricRegistry {
  const entries = new Map<string, Entry>(builtIns());
  const aliases = new Map<string, string>(Object.entries(ALIASES));
  const resolve = (name: string) => aliases.get(name) ?? name;

  return {
    getMetric(name, options = {}) {
      if (typeof name !== "string") throw new KeelError("E_METRIC_UNKNOWN", `A metric name must be a string, got ${typeof name}`);
      const canonical = resolve(name);
      const entry = entries.get(canonical);
      if (!entry) {
        const known = [...entries.keys(), ...aliases.keys()];
        const near = closest(name, known, Math.max(2, Math.floor(name.length / 3)));
        throw new KeelError(
          "E_METRIC_UNKNOWN",
          `No metric is named "${name}"${near ? `; did you mean "${resolve(near)}"?` : ""} Known metrics: ${[...entries.keys()].join(", ")}; or register your own`,
          { details: { name, ...(near ? { suggestion: resolve(near) } : {}), known: [...entries.keys()] } },
        );
      }
      checkOptionKeys(canonical, options, entry.keys);
      let metric: Metric;
      try {
        metric = entry.factory(options);
      } catch (e) {
        if (KeelError.is(e)) throw e;
        throw new KeelError("E_METRIC_INVALID", `Metric "${canonical}" could not be made with these options: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      if (typeof metric !== "object" || metric === null || typeof metric.update !== "function" || typeof metric.compute !== "function" || typeof metric.reset !== "function") {
        throw new KeelError("E_METRIC_INVALID", `The factory of metric "${canonical}" did not return a metric (an object with reset, update and compute)`);
      }
      return metric;
    },

    listMetrics() {
      return [...entries].map(([name, e]) => ({ name, task: e.task, description: e.description }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    },

    register(name, factory, info = {}) {
      if (typeof name !== "string" || !NAME.test(name)) {
        throw new KeelError("E_METRIC_INVALID", `Metric name "${String(name)}" must be lowercase letters, digits and '_' (scoped with '/', '.' or '-'), like "balanced_accuracy"`);
      }
      if (entries.has(name) || aliases.has(name)) {
        const what = aliases.has(name) ? `an alias of "${aliases.get(name)}"` : "registered";
        throw new KeelError("E_METRIC_INVALID", `Metric "${name}" is already ${what}; pick another name`, { details: { name } });
      }
      if (typeof factory !== "function") {
        throw new KeelError("E_METRIC_INVALID", `Metric "${name}" needs a factory function (options) => Metric`);
      }
      const task = info.task ?? "classification";
      if (task !== "classification" && task !== "regression") {
        throw new KeelError("E_METRIC_INVALID", `Metric "${name}" task must be "classification" or "regression", got ${JSON.stringify(task)}`);
      }
      entries.set(name, { factory, description: info.description ?? "", task, keys: undefined });
    },

    has(name) {
      return entries.has(resolve(name));
    },
  };
}
