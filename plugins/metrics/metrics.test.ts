import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKernel, definePlugin, KeelError, type ErrorCodeName } from "../../core/mod.ts";
import metricsPlugin, {
  type ConfusionMatrixMetric,
  createMetricRegistry,
  type Metric,
  metricsService,
} from "./mod.ts";

function throwsCode(fn: () => unknown, code: ErrorCodeName, ...fragments: string[]): void {
  assert.throws(fn, (e) => {
    assert.ok(KeelError.is(e, code), `expected ${code}, got ${String(e)}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
    return true;
  });
}

function close(actual: number, expected: number, tolerance = 1e-12): void {
  assert.ok(Math.abs(actual - expected) <= tolerance, `${actual} is not within ${tolerance} of ${expected}`);
}

/** One-hot-ish scores whose argmax is `predicted`, with varied magnitudes. */
function scores(predicted: readonly number[], classes: number): Float32Array {
  const out = new Float32Array(predicted.length * classes);
  predicted.forEach((p, r) => {
    for (let c = 0; c < classes; c++) out[r * classes + c] = ((r + c) % 3) * 0.1 - 1;
    out[r * classes + p] = 2 + r * 0.01;
  });
  return out;
}

// A 3-class, imbalanced example (supports 6, 4, 2). Confusion matrix [label][predicted]:
//   0: [4, 1, 1]   1: [1, 2, 1]   2: [1, 0, 1]   → tp = 4, 2, 1; predicted = 6, 3, 3.
// By hand (scikit-learn's formulas):
//   precision per class 4/6, 2/3, 1/3 → macro 5/9, weighted (6·2/3 + 4·2/3 + 2·1/3)/12 = 11/18, micro 7/12
//   recall    per class 4/6, 2/4, 1/2 → macro 5/9, weighted = micro = 7/12 (Σ support·tp/support / N = Σtp / N, always)
//   f1 = 2tp/(2tp+fp+fn) per class 8/12, 4/7, 2/5 → macro 172/315, weighted (6·2/3 + 4·4/7 + 2·2/5)/12 = 62/105, micro 7/12
const LABELS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2];
const PREDICTED = [0, 0, 0, 0, 1, 2, 1, 1, 0, 2, 2, 0];
const EXPECTED = {
  accuracy: 7 / 12,
  precision: { micro: 7 / 12, macro: 5 / 9, weighted: 11 / 18 },
  recall: { micro: 7 / 12, macro: 5 / 9, weighted: 7 / 12 },
  f1_score: { micro: 7 / 12, macro: 172 / 315, weighted: 62 / 105 },
} as const;

/** A tiny exact reference of scikit-learn's precision_recall_fscore_support from label lists. */
function reference(kind: "precision" | "recall" | "f1_score", average: "micro" | "macro" | "weighted", yTrue: number[], yPred: number[]): number {
  const classes = [...new Set([...yTrue, ...yPred])].sort((a, b) => a - b);
  const count = (f: (t: number, p: number) => boolean) => yTrue.filter((t, i) => f(t, yPred[i]!)).length;
  const score = (tp: number, fp: number, fn: number) =>
    kind === "precision" ? (tp + fp === 0 ? 0 : tp / (tp + fp)) : kind === "recall" ? (tp + fn === 0 ? 0 : tp / (tp + fn)) : 2 * tp / (2 * tp + fp + fn);
  if (average === "micro") {
    const tp = count((t, p) => t === p);
    return score(tp, yTrue.length - tp, yTrue.length - tp);
  }
  let sum = 0, weight = 0;
  for (const c of classes) {
    const tp = count((t, p) => t === c && p === c);
    const fp = count((t, p) => t !== c && p === c);
    const fn = count((t, p) => t === c && p !== c);
    const w = average === "macro" ? 1 : tp + fn;
    sum += w * score(tp, fp, fn);
    weight += w;
  }
  return sum / weight;
}

describe("classification metrics on a fixed imbalanced example", () => {
  const registry = createMetricRegistry();
  const pred = scores(PREDICTED, 3);
  const target = new Int32Array(LABELS);
  const shape = { rows: 12, cols: 3 };

  test("accuracy is 7/12", () => {
    const m = registry.getMetric("accuracy");
    m.update(pred, target, shape);
    close(m.compute(), EXPECTED.accuracy);
  });

  for (const kind of ["precision", "recall", "f1_score"] as const) {
    test(`${kind}: micro, macro and weighted equal the hand values and the exact reference`, () => {
      const values: Record<string, number> = {};
      for (const average of ["micro", "macro", "weighted"] as const) {
        const m = registry.getMetric(kind, { average });
        m.update(pred, target, shape);
        values[average] = m.compute();
        close(values[average], EXPECTED[kind][average]);
        close(values[average], reference(kind, average, LABELS, PREDICTED));
      }
      assert.notEqual(values.micro, values.macro);
      assert.notEqual(values.macro, values.weighted);
      if (kind === "recall") {
        // Weighted recall is Σtp / N, which is micro recall, for every input.
        close(values.weighted!, values.micro!);
      } else {
        assert.notEqual(values.micro, values.weighted);
      }
    });
  }

  test("the default average is macro for more than two classes", () => {
    const m = registry.getMetric("f1_score");
    assert.equal(m.options.average, "macro");
    m.update(pred, target, shape);
    close(m.compute(), 172 / 315);
  });

  test("streaming over 3 batches equals one pass, and reset forgets", () => {
    for (const [name, options] of [["accuracy", {}], ["precision", { average: "weighted" }], ["recall", { average: "macro" }], ["f1_score", { average: "weighted" }], ["top_k_accuracy", { k: 2 }]] as const) {
      const whole = registry.getMetric(name, options);
      whole.update(pred, target, shape);
      const streamed = registry.getMetric(name, options);
      streamed.update(scores([0, 0, 0, 0, 0], 3), new Int32Array([2, 2, 2, 2, 2]), { rows: 5, cols: 3 });
      streamed.reset();
      for (const [from, to] of [[0, 5], [5, 9], [9, 12]] as const) {
        streamed.update(pred.subarray(from * 3, to * 3), target.subarray(from, to), { rows: to - from, cols: 3 });
      }
      close(streamed.compute(), whole.compute());
    }
  });

  test("fromConfusion on the same counts equals update / compute", () => {
    const counts = [4, 1, 1, 1, 2, 1, 1, 0, 1];
    for (const [name, options] of [["accuracy", {}], ["precision", { average: "micro" }], ["precision", { average: "weighted" }], ["recall", { average: "macro" }], ["f1_score", { average: "macro" }], ["f1_score", { average: "weighted" }], ["confusion_matrix", {}]] as const) {
      const m = registry.getMetric(name, options);
      m.update(pred, target, shape);
      assert.ok(m.fromConfusion, name);
      close(m.fromConfusion(counts, 3), m.compute());
      close(m.fromConfusion(new Uint32Array(counts), 3), m.compute());
    }
  });

  test("confusion_matrix is [label][predicted]; compute() is the row count", () => {
    const m = registry.getMetric("confusion_matrix") as ConfusionMatrixMetric;
    m.update(pred, target, shape);
    assert.deepEqual(m.matrix(), [[4, 1, 1], [1, 2, 1], [1, 0, 1]]);
    assert.equal(m.compute(), 12);
    m.reset();
    assert.ok(Number.isNaN(m.compute()));
  });
});

describe("binary, zero division and NaN outputs", () => {
  const registry = createMetricRegistry();
  // One probability column: ≥ 0.5 → class 1. Predicted 1,1,0,0,1,0 for labels 1,0,1,0,1,0.
  const prob = new Float32Array([0.9, 0.5, 0.49, 0.1, 0.7, 0.2]);
  const labels = new Int32Array([1, 0, 1, 0, 1, 0]);
  const shape = { rows: 6, cols: 1 };
  // tp1 = 2, fp1 = 1, fn1 = 1; tp0 = 2, fp0 = 1, fn0 = 1.

  test("one column with no average scores class 1, as average=\"binary\"", () => {
    const p = registry.getMetric("precision");
    p.update(prob, labels, shape);
    close(p.compute(), 2 / 3);
    const r = registry.getMetric("recall");
    r.update(prob, labels, shape);
    close(r.compute(), 2 / 3);
    const acc = registry.getMetric("acc");
    acc.update(prob, labels, shape);
    close(acc.compute(), 4 / 6);
  });

  test("an explicit average or positiveClass is honoured on binary data", () => {
    // Labels 1,1,1,1,0,0; predicted 1,1,1,0,0,1 → class 1: tp 3, fp 1, fn 1; class 0: tp 1, fp 1, fn 1.
    const p = new Float32Array([0.8, 0.8, 0.8, 0.2, 0.2, 0.8]);
    const y = new Int32Array([1, 1, 1, 1, 0, 0]);
    const f1 = (options: object) => {
      const m = registry.getMetric("f1", options);
      m.update(p, y, shape);
      return m.compute();
    };
    close(f1({}), 6 / 8);
    close(f1({ positiveClass: 0 }), 2 / 4);
    close(f1({ average: "macro" }), (6 / 8 + 2 / 4) / 2);
    close(f1({ average: "weighted" }), (4 * 6 / 8 + 2 * 2 / 4) / 6);
    close(f1({ average: "micro" }), 4 / 6);
  });

  test("a class never predicted scores zeroDivision (0 by default, or 1)", () => {
    // Labels 0,0,1,2; predicted 0,0,0,2: class 1 is never predicted.
    const pred = scores([0, 0, 0, 2], 3);
    const y = new Int32Array([0, 0, 1, 2]);
    const precisionWith = (zeroDivision?: 0 | 1) => {
      const m = registry.getMetric("precision", { average: "macro", ...(zeroDivision === undefined ? {} : { zeroDivision }) });
      m.update(pred, y, { rows: 4, cols: 3 });
      return m.compute();
    };
    close(precisionWith(), (2 / 3 + 0 + 1) / 3);
    close(precisionWith(0), (2 / 3 + 0 + 1) / 3);
    close(precisionWith(1), (2 / 3 + 1 + 1) / 3);
  });

  test("macro averages over classes present in labels or predictions only", () => {
    // 4 columns, but class 3 is neither a label nor predicted: scikit-learn leaves it out.
    const m = registry.getMetric("recall", { average: "macro" });
    m.update(scores([0, 1, 1, 2], 4), new Int32Array([0, 1, 2, 2]), { rows: 4, cols: 4 });
    close(m.compute(), (1 + 1 + 0.5) / 3);
  });

  test("a row whose output holds NaN counts as wrong, and as no class's false positive", () => {
    const pred = new Float32Array([5, 0, 0, Number.NaN, 0, 5, 0, 0]);
    const y = new Int32Array([0, 0, 1, 1]);
    const shape4 = { rows: 4, cols: 2 };
    const acc = registry.getMetric("accuracy");
    acc.update(pred, y, shape4);
    close(acc.compute(), 2 / 4);
    const p = registry.getMetric("precision", { average: "macro" });
    p.update(pred, y, shape4);
    // Row 1 (NaN) is nobody's false positive: class 0 is predicted for rows 0 and 3 (a tie: the first), class 1 for row 2.
    close(p.compute(), (1 / 2 + 1) / 2);
    const cm = registry.getMetric("confusion_matrix") as ConfusionMatrixMetric;
    cm.update(pred, y, shape4);
    assert.deepEqual(cm.matrix(), [[1, 0], [1, 1]]);
    assert.equal(cm.compute(), 4);
    const topK = registry.getMetric("top_k_accuracy", { k: 2 });
    topK.update(pred, y, shape4);
    close(topK.compute(), 3 / 4);
    // The NaN rows per label, after the square: the same value through fromConfusion.
    close(acc.fromConfusion!([1, 0, 1, 1, 1, 0], 2), 2 / 4);
  });

  test("a metric that has seen nothing computes NaN", () => {
    for (const name of ["accuracy", "f1_score", "top_k_accuracy", "mse", "mae"]) {
      assert.ok(Number.isNaN(registry.getMetric(name, name === "top_k_accuracy" ? { k: 1 } : {}).compute()), name);
    }
  });
});

describe("top_k_accuracy", () => {
  const registry = createMetricRegistry();
  // 4 classes. Row 0: label 2 is 2nd highest; row 1: label 0 is highest; row 2: label 3 is lowest;
  // row 3: label 1 ties the highest.
  const pred = new Float32Array([
    0.1, 0.5, 0.3, 0.1,
    0.7, 0.1, 0.1, 0.1,
    0.4, 0.3, 0.2, 0.1,
    0.4, 0.4, 0.1, 0.1,
  ]);
  const y = new Int32Array([2, 0, 3, 1]);
  const shape = { rows: 4, cols: 4 };

  test("counts a row when fewer than k classes score above its label", () => {
    const expected = [3 / 4, 3 / 4, 3 / 4, 1];
    for (const k of [1, 2, 3, 4]) {
      const m = registry.getMetric("top_k_accuracy", { k });
      m.update(pred, y, shape);
      close(m.compute(), k === 1 ? 2 / 4 : expected[k - 1]!);
      close(m.fromTopK!(k === 1 ? 2 : 3, 4), k === 1 ? 2 / 4 : 3 / 4);
    }
  });

  test("k defaults to 5, and k > classes is E_METRIC_INVALID", () => {
    const m = registry.getMetric("top_k_accuracy");
    assert.equal(m.options.k, 5);
    throwsCode(() => m.update(pred, y, shape), "E_METRIC_INVALID", "k = 5", "4 classes");
    throwsCode(() => registry.getMetric("top_k_accuracy", { k: 3, classes: 2 }), "E_METRIC_INVALID", "k = 3");
    throwsCode(() => registry.getMetric("top_k_accuracy", { k: 0 }), "E_METRIC_INVALID", '"k"');
    throwsCode(() => registry.getMetric("top_k_accuracy", { k: 1.5 }), "E_METRIC_INVALID", '"k"');
  });
});

describe("regression metrics", () => {
  const registry = createMetricRegistry();
  // Errors: 0.5, -1, 2, 0, -0.25, 1 → Σ|e| = 4.75, Σe² = 0.25 + 1 + 4 + 0 + 0.0625 + 1 = 6.3125.
  const pred = new Float32Array([1.5, 1, 5, 2, 0.75, 4]);
  const target = new Float32Array([1, 2, 3, 2, 1, 3]);

  test("mse and mae over every element of a 3 × 2 prediction", () => {
    const mse = registry.getMetric("mse");
    const mae = registry.getMetric("mae");
    for (const m of [mse, mae]) m.update(pred, target, { rows: 3, cols: 2 });
    close(mse.compute(), 6.3125 / 6);
    close(mae.compute(), 4.75 / 6);
    close(mse.fromRegressionSums!(4.75, 6.3125, 6), 6.3125 / 6);
    close(mae.fromRegressionSums!(4.75, 6.3125, 6), 4.75 / 6);
    assert.equal(mse.task, "regression");
  });

  test("streaming equals one pass; a NaN prediction makes the value NaN", () => {
    const m = registry.getMetric("mse");
    m.update(pred.subarray(0, 2), target.subarray(0, 2), { rows: 1, cols: 2 });
    m.update(pred.subarray(2), target.subarray(2), { rows: 2, cols: 2 });
    close(m.compute(), 6.3125 / 6);
    m.update(new Float32Array([Number.NaN, 0]), new Float32Array([0, 0]), { rows: 1, cols: 2 });
    assert.ok(Number.isNaN(m.compute()));
  });

  test("targets of the wrong length are E_METRIC_INVALID", () => {
    throwsCode(() => registry.getMetric("mae").update(pred, target.subarray(0, 3), { rows: 3, cols: 2 }), "E_METRIC_INVALID", "3 targets", "pass 6");
  });
});

describe("bad inputs", () => {
  const registry = createMetricRegistry();

  test("a label out of range names the label and the row", () => {
    const m = registry.getMetric("accuracy");
    m.update(scores([0, 1], 3), new Int32Array([0, 1]), { rows: 2, cols: 3 });
    throwsCode(() => m.update(scores([0, 1, 2], 3), new Int32Array([0, 7, 1]), { rows: 3, cols: 3 }), "E_METRIC_INVALID", "label 7", "row 1 of the batch", "row 3 since reset", "[0, 3)");
    throwsCode(() => registry.getMetric("f1").update(scores([0], 3), new Int32Array([-1]), { rows: 1, cols: 3 }), "E_METRIC_INVALID", "label -1", "row 0");
    throwsCode(() => registry.getMetric("recall").update(scores([0], 3), new Float32Array([1.5]), { rows: 1, cols: 3 }), "E_METRIC_INVALID", "label 1.5", "not an integer");
    throwsCode(() => registry.getMetric("top_k_accuracy", { k: 1 }).update(scores([0], 3), new Int32Array([3]), { rows: 1, cols: 3 }), "E_METRIC_INVALID", "label 3");
  });

  test("shapes that do not fit, and classes that disagree, are E_METRIC_INVALID", () => {
    const m = registry.getMetric("accuracy", { classes: 4 });
    throwsCode(() => m.update(new Float32Array(5), new Int32Array(2), { rows: 2, cols: 3 }), "E_METRIC_INVALID", "5 predictions");
    throwsCode(() => m.update(new Float32Array(6), new Int32Array(3), { rows: 2, cols: 3 }), "E_METRIC_INVALID", "3 targets");
    throwsCode(() => m.update(new Float32Array(6), new Int32Array(2), { rows: 2, cols: 3 }), "E_METRIC_INVALID", "4 classes");
    const n = registry.getMetric("accuracy");
    n.update(new Float32Array(6), new Int32Array(2), { rows: 2, cols: 3 });
    throwsCode(() => n.update(new Float32Array(4), new Int32Array(2), { rows: 2, cols: 2 }), "E_METRIC_INVALID", "2 columns after 3");
    throwsCode(() => registry.getMetric("precision").fromConfusion!([1, 2, 3], 2), "E_METRIC_INVALID", "4 counts");
  });

  test("bad options are E_METRIC_INVALID, with a did-you-mean for a misspelt key", () => {
    throwsCode(() => registry.getMetric("f1_score", { average: "binary" as "micro" }), "E_METRIC_INVALID", '"average"', '"micro"');
    throwsCode(() => registry.getMetric("f1_score", { averge: "micro" } as object), "E_METRIC_INVALID", '"averge"', 'did you mean "average"');
    throwsCode(() => registry.getMetric("accuracy", { average: "micro" }), "E_METRIC_INVALID", 'no option "average"');
    throwsCode(() => registry.getMetric("mse", { classes: 3 }), "E_METRIC_INVALID", "takes no options");
    throwsCode(() => registry.getMetric("precision", { zeroDivision: 2 as 0 }), "E_METRIC_INVALID", '"zeroDivision"');
    throwsCode(() => registry.getMetric("precision", { positiveClass: 3, classes: 3 }), "E_METRIC_INVALID", '"positiveClass"');
    throwsCode(() => registry.getMetric("precision", { classes: 0 }), "E_METRIC_INVALID", '"classes"');
  });
});

describe("the registry", () => {
  test("an unknown name is E_METRIC_UNKNOWN with a did-you-mean", () => {
    const registry = createMetricRegistry();
    throwsCode(() => registry.getMetric("acuracy"), "E_METRIC_UNKNOWN", '"acuracy"', 'did you mean "accuracy"');
    throwsCode(() => registry.getMetric("F1_Score"), "E_METRIC_UNKNOWN", 'did you mean "f1_score"');
    throwsCode(() => registry.getMetric("perplexity"), "E_METRIC_UNKNOWN", '"perplexity"', "Known metrics: accuracy");
  });

  test("aliases resolve to the canonical metric; listMetrics lists each once", () => {
    const registry = createMetricRegistry();
    assert.equal(registry.getMetric("f1").name, "f1_score");
    assert.equal(registry.getMetric("acc").name, "accuracy");
    assert.ok(registry.has("f1") && registry.has("acc") && registry.has("mae"));
    assert.equal(registry.has("f2"), false);
    const names = registry.listMetrics().map((m) => m.name);
    assert.deepEqual(names, ["accuracy", "confusion_matrix", "f1_score", "mae", "mse", "precision", "recall", "top_k_accuracy"]);
    assert.equal(registry.listMetrics().find((m) => m.name === "mse")?.task, "regression");
    assert.ok(registry.listMetrics().every((m) => m.description.length > 0));
  });

  test("each getMetric call is a fresh metric", () => {
    const registry = createMetricRegistry();
    const a = registry.getMetric("accuracy");
    a.update(scores([0], 2), new Int32Array([0]), { rows: 1, cols: 2 });
    assert.ok(Number.isNaN(registry.getMetric("accuracy").compute()));
    assert.equal(a.compute(), 1);
  });

  test("register adds a metric; a taken name or alias is E_METRIC_INVALID", () => {
    const registry = createMetricRegistry();
    registry.register("count_rows", () => countRows(), { description: "Rows seen" });
    const m = registry.getMetric("count_rows");
    m.update(new Float32Array(4), new Int32Array(2), { rows: 2, cols: 2 });
    assert.equal(m.compute(), 2);
    assert.deepEqual(registry.listMetrics().find((x) => x.name === "count_rows"), { name: "count_rows", task: "classification", description: "Rows seen" });
    throwsCode(() => registry.register("count_rows", () => countRows()), "E_METRIC_INVALID", '"count_rows" is already registered');
    throwsCode(() => registry.register("f1", () => countRows()), "E_METRIC_INVALID", 'alias of "f1_score"');
    throwsCode(() => registry.register("Bad Name", () => countRows()), "E_METRIC_INVALID", '"Bad Name"');
    registry.register("broken", () => ({}) as Metric);
    throwsCode(() => registry.getMetric("broken"), "E_METRIC_INVALID", "did not return a metric");
  });
});

function countRows(): Metric {
  let rows = 0;
  return {
    name: "count_rows",
    task: "classification",
    options: {},
    reset: () => void (rows = 0),
    update: (_pred, _target, shape) => void (rows += shape.rows),
    compute: () => rows,
  };
}

describe("the metrics plugin in a kernel", () => {
  test("provides the registry; another plugin that requires it registers a custom metric", async () => {
    /** Balanced accuracy: mean recall over classes, from the confusion matrix. */
    const balancedAccuracy = (registry: ReturnType<typeof createMetricRegistry>) => (): Metric => {
      const inner = registry.getMetric("recall", { average: "macro" });
      return {
        name: "balanced_accuracy",
        task: "classification",
        options: {},
        reset: () => inner.reset(),
        update: (pred, target, shape) => inner.update(pred, target, shape),
        compute: () => inner.compute(),
      };
    };
    const custom = definePlugin({
      name: "custom-metrics",
      version: "1.0.0",
      kernel: "^1",
      requires: ["metrics"],
      setup(ctx) {
        const registry = ctx.require(metricsService);
        registry.register("balanced_accuracy", balancedAccuracy(registry), { description: "Mean per-class recall" });
      },
    });
    // Listed first on purpose: `requires` orders the setup.
    const kernel = await createKernel({ plugins: [custom, metricsPlugin] });
    try {
      assert.deepEqual(kernel.plugins.map((p) => p.name), ["metrics", "custom-metrics"]);
      assert.deepEqual(kernel.plugins.find((p) => p.name === "metrics")?.requested, []);
      const registry = kernel.services.get(metricsService);
      assert.ok(registry.listMetrics().some((m) => m.name === "balanced_accuracy"));
      const m = registry.getMetric("balanced_accuracy");
      m.update(scores(PREDICTED, 3), new Int32Array(LABELS), { rows: 12, cols: 3 });
      close(m.compute(), 5 / 9);
    } finally {
      await kernel.dispose();
    }
  });

  test("a plugin that registers a built-in's name fails setup (E_PLUGIN_SETUP_FAILED caused by E_METRIC_INVALID)", async () => {
    const clash = definePlugin({
      name: "clash",
      version: "1.0.0",
      kernel: "^1",
      requires: ["metrics"],
      setup(ctx) {
        ctx.require(metricsService).register("accuracy", () => countRows());
      },
    });
    await assert.rejects(createKernel({ plugins: [metricsPlugin, clash] }), (e) => {
      const cause = (e as { cause?: unknown }).cause;
      return KeelError.is(e, "E_PLUGIN_SETUP_FAILED") && KeelError.is(cause, "E_METRIC_INVALID") && e.message.includes('"accuracy" is already registered');
    });
  });
});
