/**
 * The training loop: `createTrainer(...).fit(model, options)`. It keeps every tensor on the
 * backend for the whole epoch (batches are written in, nothing is read back per step), reads the
 * running loss every `lossReadEvery` steps, accumulates classification metrics on the device (a
 * confusion matrix, top-k hits) and drives bz's lifecycle hooks, reporting a failing plugin
 * without stopping.
 * @module
 */

import { errorMessage, KeelError, type Logger, type MetricValues, type PluginHooks, type TrainingContext } from "../../core/mod.ts";
import type { Backend, Tensor } from "./backend.ts";
import { batches, type Dataset, shuffledOrder, splitValidation, validateDataset } from "./data.ts";
import { getLoss, type Loss, meanLoss } from "./losses.ts";
import type { ModelSpec } from "./model-spec.ts";
import type { BoundModel, Model } from "./model.ts";
import { type BoundOptimizer, type OptimizerDef, optimizerFrom } from "./optimizers.ts";
import { hash32 } from "./rng.ts";

/** A streaming metric as the metrics plugin makes them (structural, so the trainer does not import it). */
export interface TrainerMetric {
  readonly name: string;
  readonly task: "classification" | "regression";
  readonly options: Readonly<Record<string, unknown>>;
  reset(): void;
  update(pred: Float32Array, target: Int32Array | Float32Array, shape: { rows: number; cols: number }): void;
  compute(): number;
  fromConfusion?(counts: ArrayLike<number>, classes: number): number;
  fromTopK?(hits: number, total: number): number;
  fromRegressionSums?(absSum: number, sqSum: number, count: number): number;
}

/** Where metrics come from: the metrics plugin's registry. */
export interface TrainerMetricSource {
  getMetric(name: string, options?: Record<string, unknown>): TrainerMetric;
}

/** A metric to compute: a name ("accuracy") or a name with options. */
export type MetricRequest = string | { readonly name: string; readonly options?: Record<string, unknown>; readonly as?: string };

/** What {@link Trainer.fit} takes. */
export interface FitOptions {
  /** Training data (see `data.ts`: `fromArrays`, `parseCsv`, `fromIdx`, `loadMnist`). */
  readonly data: Dataset;
  /** Validation data, or a fraction of `data` to hold out (shuffled with the seed). */
  readonly validation?: Dataset | { readonly fraction: number };
  readonly loss: "cross-entropy" | "mse";
  /** `adam({ lr })`, `sgd(...)`, `adamw(...)`, or a name ("adam") with `lr`. */
  readonly optimizer?: OptimizerDef | "sgd" | "adam" | "adamw";
  readonly lr?: number;
  readonly epochs: number;
  readonly batchSize: number;
  /** Metric names for training and validation ("accuracy", "f1_score", ...). */
  readonly metrics?: readonly MetricRequest[];
  /** Seeds initialisation, shuffling and dropout. Default 42. */
  readonly seed?: number;
  /** Shuffle the training rows every epoch. Default true. */
  readonly shuffle?: boolean;
  /** Clip the global gradient norm to this, on the device. */
  readonly clipGradNorm?: number;
  /**
   * Read the running loss back every this many steps (and at every epoch's end). Each read waits
   * for the device (≈ 12 ms on Deno's WebGPU), so the default is 1 on the CPU and 50 on WebGPU.
   */
  readonly lossReadEvery?: number;
  /** Anything else to record with the run (shown to plugins as `ctx.hyperparameters`). */
  readonly hyperparameters?: Readonly<Record<string, unknown>>;
  /** Cancels training at the next batch (`E_TRAIN_CANCELLED`); hooks still see `onTrainingEnd`. */
  readonly signal?: AbortSignal;
}

/** What {@link Trainer.fit} returns. */
export interface FitResult {
  readonly epochsRun: number;
  /** The first epoch this call ran (above 0 after a resume). */
  readonly startEpoch: number;
  readonly stopped: boolean;
  readonly stopReason: string | undefined;
  readonly history: TrainingContext["history"];
  readonly trainingMetrics: MetricValues;
  readonly validationMetrics: MetricValues;
  readonly backend: { readonly name: string; readonly device: string; readonly kernels: string };
  /** Training samples per second over the whole call (validation excluded). */
  readonly samplesPerSecond: number;
  readonly seconds: number;
  /** Plugins that failed in a hook (reported, training went on). */
  readonly hookFailures: readonly KeelError[];
  /** Batches that failed and were skipped. */
  readonly skippedBatches: number;
}

/** A trainer bound to a backend. */
export interface Trainer {
  /** The backend it trains on (made on first use). */
  backend(): Promise<Backend>;
  /**
   * Trains `model` on `options.data`.
   * @throws {KeelError} `E_TRAIN_CONFIG`, `E_TRAIN_DATA`, `E_TRAIN_LABEL_RANGE`, `E_TRAIN_SHAPE`,
   * `E_TRAIN_BATCH_SIZE`, `E_TRAIN_NOT_FINITE`, `E_TRAIN_DEVICE_LOST`, `E_METRIC_UNKNOWN`
   */
  fit(model: Model, options: FitOptions): Promise<FitResult>;
  /** Loss and metrics of `model` on `data` (eval mode). */
  evaluate(model: Model, data: Dataset, options: { loss: "cross-entropy" | "mse"; batchSize?: number; metrics?: readonly MetricRequest[] }): Promise<MetricValues>;
  /** Frees the backend. */
  dispose(): void;
}

/** What {@link createTrainer} needs. */
export interface TrainerOptions {
  /** The backend, or a function making it on first use. */
  readonly backend: Backend | (() => Promise<Backend>);
  /** The kernel's hooks (`ctx.hooks` in a plugin); without them no lifecycle hooks run. */
  readonly hooks?: PluginHooks;
  /** Metrics (the metrics plugin's registry); without it only "loss" is reported. */
  readonly metrics?: () => TrainerMetricSource | undefined;
  readonly logger?: Logger;
}

function configError(message: string, details?: Record<string, unknown>): KeelError {
  return new KeelError("E_TRAIN_CONFIG", message, details ? { details } : undefined);
}

function positiveInt(value: unknown, what: string, code: "E_TRAIN_CONFIG" | "E_TRAIN_BATCH_SIZE" = "E_TRAIN_CONFIG"): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
    throw new KeelError(code, `"${what}" must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** A metric bound to how the trainer feeds it. */
interface PlannedMetric {
  readonly key: string;
  readonly metric: TrainerMetric;
  readonly via: "confusion" | "topk" | "regression" | "predictions";
  readonly k: number;
}

/** Device-side accumulators for one loop (training or validation). */
interface Accumulators {
  readonly lossSum: Tensor;
  readonly confusion: Tensor | undefined;
  readonly topK: Map<number, Tensor>;
  readonly regression: Tensor | undefined;
}

/** The per-rows tensors a batch is written into. */
interface BatchTensors {
  readonly x: Tensor;
  readonly y: Tensor;
  readonly dOut: Tensor;
}

/**
 * Batch tensors made on first use for each distinct row count (a short last batch gets its
 * own), kept for the whole run and freed by `dispose`.
 */
function batchTensors(backend: Backend, loss: Loss, spec: ModelSpec): { get(rows: number): BatchTensors; dispose(): void } {
  const perRows = new Map<number, BatchTensors>();
  return {
    get(rows) {
      let t = perRows.get(rows);
      if (!t) {
        const target = loss.targetShape(rows, spec.outputFeatures);
        t = { x: backend.zeros([rows, spec.inputFeatures]), y: backend.zeros(target.shape, target.dtype), dOut: backend.zeros([rows, spec.outputFeatures]) };
        perRows.set(rows, t);
      }
      return t;
    },
    dispose() {
      for (const t of perRows.values()) {
        backend.dispose(t.x);
        backend.dispose(t.y);
        backend.dispose(t.dOut);
      }
      perRows.clear();
    },
  };
}

/** What `validateDataset` checks data against for this model and task. */
function datasetCheck(spec: ModelSpec, task: "classification" | "regression"): Parameters<typeof validateDataset>[1] {
  return task === "classification"
    ? { classes: spec.outputFeatures, inputFeatures: spec.inputFeatures }
    : { outputFeatures: spec.outputFeatures, inputFeatures: spec.inputFeatures };
}

class HookRunner {
  readonly failures: KeelError[] = [];
  readonly #hooks: PluginHooks | undefined;
  readonly #logger: Logger | undefined;
  readonly #has = new Map<string, boolean>();

  constructor(hooks: PluginHooks | undefined, logger: Logger | undefined) {
    this.#hooks = hooks;
    this.#logger = logger;
  }

  has(name: Parameters<PluginHooks["has"]>[0]): boolean {
    if (!this.#hooks) return false;
    let v = this.#has.get(name);
    if (v === undefined) this.#has.set(name, v = this.#hooks.has(name));
    return v;
  }

  async call(name: Parameters<PluginHooks["has"]>[0], ctx: TrainingContext, reason?: string): Promise<void> {
    if (!this.has(name)) return;
    const args = (reason === undefined ? [ctx] : [ctx, { reason }]) as never;
    const failures = await (this.#hooks!.callSettled as (n: string, ...a: unknown[]) => Promise<KeelError[]>)(name, ...(args as unknown[]));
    for (const f of failures) {
      this.failures.push(f);
      this.#logger?.warn(`${f.message} (training goes on)`);
    }
  }
}

/**
 * Makes a trainer. In a kernel, use the trainer plugin's service instead (it passes the
 * kernel's hooks and the metrics registry).
 */
export function createTrainer(options: TrainerOptions): Trainer {
  let backendPromise: Promise<Backend> | undefined;
  const getBackend = () => (backendPromise ??= typeof options.backend === "function" ? options.backend() : Promise.resolve(options.backend));
  const logger = options.logger;

  function planMetrics(requests: readonly MetricRequest[], task: "classification" | "regression"): PlannedMetric[] {
    if (requests.length === 0) return [];
    const source = options.metrics?.();
    const planned: PlannedMetric[] = [];
    for (const req of requests) {
      const name = typeof req === "string" ? req : req.name;
      const opts = typeof req === "string" ? {} : req.options ?? {};
      if (!source) {
        throw new KeelError("E_METRIC_UNKNOWN", `Metric "${name}" needs the metrics plugin; load it (plugins: [metrics, trainer]) or leave "metrics" out`);
      }
      const metric = source.getMetric(name, opts);
      const key = typeof req === "string" ? metric.name : req.as ?? metric.name;
      if (metric.task !== task) {
        throw new KeelError("E_METRIC_INVALID", `Metric "${key}" is a ${metric.task} metric but the loss makes this a ${task} task`);
      }
      const k = typeof metric.options["k"] === "number" ? metric.options["k"] : 0;
      const via = metric.fromConfusion ? "confusion" : metric.fromTopK ? "topk" : metric.fromRegressionSums ? "regression" : "predictions";
      planned.push({ key, metric, via, k });
    }
    return planned;
  }

  function makeAccumulators(backend: Backend, metrics: readonly PlannedMetric[], classes: number): Accumulators {
    const needConfusion = metrics.some((m) => m.via === "confusion");
    const topK = new Map<number, Tensor>();
    for (const m of metrics) if (m.via === "topk" && !topK.has(m.k)) topK.set(m.k, backend.zeros([1], "i32"));
    return {
      lossSum: backend.zeros([1]),
      confusion: needConfusion ? backend.zeros([classes * classes], "i32") : undefined,
      topK,
      regression: metrics.some((m) => m.via === "regression") ? backend.zeros([2]) : undefined,
    };
  }

  function resetAccumulators(backend: Backend, acc: Accumulators, metrics: readonly PlannedMetric[]): void {
    backend.fill0(acc.lossSum);
    if (acc.confusion) backend.fill0(acc.confusion);
    for (const t of acc.topK.values()) backend.fill0(t);
    if (acc.regression) backend.fill0(acc.regression);
    for (const m of metrics) if (m.via === "predictions") m.metric.reset();
  }

  function disposeAccumulators(backend: Backend, acc: Accumulators): void {
    backend.dispose(acc.lossSum);
    if (acc.confusion) backend.dispose(acc.confusion);
    for (const t of acc.topK.values()) backend.dispose(t);
    if (acc.regression) backend.dispose(acc.regression);
  }

  /** Queues the device-side metric updates for one batch; returns true when predictions must be read. */
  function accumulate(backend: Backend, acc: Accumulators, metrics: readonly PlannedMetric[], out: Tensor, y: Tensor): boolean {
    if (acc.confusion) backend.confusion(out, y, acc.confusion);
    for (const [k, t] of acc.topK) backend.topK(out, y, k, t);
    if (acc.regression) backend.regressionSums(out, y, acc.regression);
    return metrics.some((m) => m.via === "predictions");
  }

  async function collect(
    backend: Backend,
    acc: Accumulators,
    metrics: readonly PlannedMetric[],
    info: { loss: "cross-entropy" | "mse"; samples: number; outputs: number; classes: number },
  ): Promise<MetricValues> {
    const values: MetricValues = {};
    const lossSum = (await backend.read(acc.lossSum))[0]!;
    values["loss"] = meanLoss(info.loss, lossSum, info.samples, info.outputs);
    const confusion = acc.confusion ? await backend.read(acc.confusion) : undefined;
    const regression = acc.regression ? await backend.read(acc.regression) : undefined;
    for (const m of metrics) {
      if (m.via === "confusion") values[m.key] = m.metric.fromConfusion!(confusion!, info.classes);
      else if (m.via === "topk") values[m.key] = m.metric.fromTopK!((await backend.read(acc.topK.get(m.k)!))[0]!, info.samples);
      else if (m.via === "regression") values[m.key] = m.metric.fromRegressionSums!(regression![0]!, regression![1]!, info.samples * info.outputs);
      else values[m.key] = m.metric.compute();
    }
    return values;
  }

  async function raceLost<T>(backend: Backend, p: Promise<T>): Promise<T> {
    try {
      return await Promise.race([p, backend.lost.then((e) => Promise.reject(e))]);
    } catch (e) {
      // A destroyed device fails the read before `lost` settles: ask it, briefly.
      throw (await lostWithin(backend, 250)) ?? e;
    }
  }

  async function runValidation(
    backend: Backend,
    bound: BoundModel,
    data: Dataset,
    plan: { loss: "cross-entropy" | "mse"; batchSize: number; metrics: readonly PlannedMetric[]; classes: number; acc: Accumulators },
    tensorsFor: (rows: number) => BatchTensors,
    onBatch?: (index: number, phase: "start" | "end") => Promise<void>,
  ): Promise<MetricValues> {
    const lossFn = getLoss(plan.loss);
    resetAccumulators(backend, plan.acc, plan.metrics);
    for (const batch of batches(data, { batchSize: Math.min(plan.batchSize, data.length) })) {
      await onBatch?.(batch.index, "start");
      const t = tensorsFor(batch.rows);
      backend.write(t.x, batch.x);
      backend.write(t.y, batch.y);
      const out = bound.forward(t.x, { training: false, seed: 0, logits: true });
      lossFn.apply(backend, out, t.y, t.dOut, plan.acc.lossSum);
      if (accumulate(backend, plan.acc, plan.metrics, out, t.y)) {
        const pred = (await raceLost(backend, backend.read(out))) as Float32Array;
        for (const m of plan.metrics) {
          if (m.via === "predictions") m.metric.update(pred, batch.y, { rows: batch.rows, cols: out.shape[1]! });
        }
      }
      await onBatch?.(batch.index, "end");
    }
    backend.flush();
    return await raceLost(backend, collect(backend, plan.acc, plan.metrics, {
      loss: plan.loss,
      samples: data.length,
      outputs: plan.loss === "mse" ? data.targetFeatures : 1,
      classes: plan.classes,
    }));
  }

  return {
    backend: getBackend,

    async fit(model, fitOptions) {
      if (typeof fitOptions !== "object" || fitOptions === null) throw configError("fit() takes (model, options)");
      const started = performance.now();
      const epochs = positiveInt(fitOptions.epochs, "epochs");
      const batchSize = positiveInt(fitOptions.batchSize, "batchSize", "E_TRAIN_BATCH_SIZE");
      const seed = fitOptions.seed ?? 42;
      if (!Number.isInteger(seed)) throw configError(`"seed" must be an integer, got ${JSON.stringify(seed)}`);
      const lossName = fitOptions.loss;
      const lossFn = getLoss(lossName);
      const spec = model.spec;
      const task = lossName === "cross-entropy" ? "classification" : "regression";
      const classes = task === "classification" ? spec.outputFeatures : 0;

      let train = fitOptions.data;
      let validation: Dataset | undefined;
      if (fitOptions.validation && "fraction" in fitOptions.validation) {
        const split = splitValidation(train, { fraction: fitOptions.validation.fraction, seed });
        train = split.train;
        validation = split.validation;
      } else {
        validation = fitOptions.validation as Dataset | undefined;
      }
      const check = datasetCheck(spec, task);
      validateDataset(train, check);
      if (validation) validateDataset(validation, check);
      if (batchSize > train.length) {
        throw new KeelError("E_TRAIN_BATCH_SIZE", `"batchSize" is ${batchSize} but the training data has only ${train.length} rows; use a batch size of at most ${train.length}`);
      }
      const clip = fitOptions.clipGradNorm;
      if (clip !== undefined && !(clip > 0)) throw configError(`"clipGradNorm" must be a positive number, got ${JSON.stringify(clip)}`);
      const metrics = planMetrics(fitOptions.metrics ?? [], task);
      const optimizerDef = optimizerFrom(fitOptions.optimizer ?? "adam", fitOptions.lr);

      const backend = await getBackend();
      const lossReadEvery = fitOptions.lossReadEvery === undefined
        ? (backend.name === "cpu" ? 1 : 50)
        : positiveInt(fitOptions.lossReadEvery, "lossReadEvery");
      if (!model.initialized) model.init(seed);
      const bound = model.bind(backend);
      const optimizer: BoundOptimizer = optimizerDef.bind(backend, bound.params);
      const trainAcc = makeAccumulators(backend, metrics, classes);
      const valAcc = makeAccumulators(backend, metrics, classes);
      const outputs = spec.outputFeatures;
      const tensors = batchTensors(backend, lossFn, spec);

      const hooks = new HookRunner(options.hooks, logger);
      const trainingBatches = Math.ceil(train.length / batchSize);
      const validationBatches = validation ? Math.ceil(validation.length / Math.min(batchSize, validation.length)) : 0;
      let stopReason: string | undefined;
      const history: TrainingContext["history"] = [];
      const ctx: TrainingContext = {
        epoch: 0,
        epochs,
        step: 0,
        batch: 0,
        trainingBatches,
        validationBatches,
        trainingLossTotal: 0,
        trainingBatchCount: 0,
        validationLossTotal: 0,
        validationBatchCount: 0,
        trainingMetrics: {},
        validationMetrics: {},
        history,
        hyperparameters: Object.freeze({
          ...fitOptions.hyperparameters,
          optimizer: optimizerDef.name,
          ...optimizerDef.config,
          loss: lossName,
          epochs,
          batchSize,
          seed,
          ...(clip !== undefined ? { clipGradNorm: clip } : {}),
        }),
        extra: {},
        samplesSeen: 0,
        samplesPerEpoch: train.length,
        epochStartedAt: Date.now(),
        backend: { name: backend.name, device: backend.device },
        get shouldStop() {
          return stopReason !== undefined;
        },
        get stopReason() {
          return stopReason;
        },
        requestStop(reason: string) {
          stopReason ??= String(reason || "stop requested");
        },
        model,
        optimizer,
      };

      let trainedSamples = 0;
      let trainSeconds = 0;
      let skippedBatches = 0;
      let startEpoch = 0;
      let epochsRun = 0;
      const abort = () => {
        if (fitOptions.signal?.aborted) {
          throw new KeelError("E_TRAIN_CANCELLED", "Training was cancelled; the last checkpoint is kept", { details: { reason: String(fitOptions.signal.reason ?? "aborted") } });
        }
      };

      try {
        await hooks.call("onTrainingStart", ctx);
        await hooks.call("onLoadCheckpoint", ctx, "resume");
        startEpoch = ctx.epoch;
        for (let epoch = startEpoch; epoch < epochs; epoch++) {
          abort();
          ctx.epoch = epoch;
          ctx.trainingLossTotal = 0;
          ctx.trainingBatchCount = 0;
          ctx.validationLossTotal = 0;
          ctx.validationBatchCount = 0;
          ctx.samplesSeen = 0;
          ctx.epochStartedAt = Date.now();
          const epochStarted = performance.now();
          await hooks.call("onEpochStart", ctx);

          // Training loop.
          await hooks.call("onTrainingLoopStart", ctx);
          resetAccumulators(backend, trainAcc, metrics);
          const order = fitOptions.shuffle === false ? undefined : shuffledOrder(train.length, hash32(seed, epoch));
          let lastReadSamples = 0;
          let lastReadSum = 0;
          for (const batch of batches(train, order ? { batchSize, order } : { batchSize })) {
            abort();
            ctx.batch = batch.index;
            await hooks.call("onTrainingBatchStart", ctx);
            try {
              const t = tensors.get(batch.rows);
              backend.write(t.x, batch.x);
              backend.write(t.y, batch.y);
              const out = bound.forward(t.x, { training: true, seed: hash32(seed ^ 0x2545f491, ctx.step), logits: true });
              lossFn.apply(backend, out, t.y, t.dOut, trainAcc.lossSum);
              if (accumulate(backend, trainAcc, metrics, out, t.y)) {
                const pred = (await raceLost(backend, backend.read(out))) as Float32Array;
                for (const m of metrics) {
                  if (m.via === "predictions") m.metric.update(pred, batch.y, { rows: batch.rows, cols: out.shape[1]! });
                }
              }
              bound.backward(t.dOut);
              optimizer.step(clip !== undefined ? { clipGradNorm: clip } : {});
            } catch (e) {
              if (KeelError.is(e) && (e.code === "E_TRAIN_DEVICE_LOST" || e.code === "E_TRAIN_LIMITS")) throw e;
              const lost = await lostWithin(backend, 250);
              if (lost) throw lost;
              skippedBatches++;
              logger?.warn(`Training batch ${batch.index} of epoch ${epoch + 1} failed and was skipped: ${errorMessage(e)}`);
              continue;
            }
            ctx.step++;
            ctx.trainingBatchCount++;
            ctx.samplesSeen += batch.rows;
            if (ctx.step % lossReadEvery === 0) {
              backend.flush();
              const sum = (await raceLost(backend, backend.read(trainAcc.lossSum)))[0]!;
              const mean = meanLoss(lossName, sum, ctx.samplesSeen, lossName === "mse" ? outputs : 1);
              if (!Number.isFinite(mean)) throw notFinite(epoch, ctx.step, mean);
              ctx.trainingLossTotal = mean * ctx.trainingBatchCount;
              ctx.extra["lastLoss"] = mean;
              // With a read every step, the difference of two running sums is this batch's loss.
              if (lossReadEvery === 1) {
                ctx.extra["lastBatchLoss"] = meanLoss(lossName, sum - lastReadSum, batch.rows, lossName === "mse" ? outputs : 1);
              }
              lastReadSum = sum;
              lastReadSamples = ctx.samplesSeen;
            }
            await hooks.call("onTrainingBatchEnd", ctx);
          }
          backend.flush();
          const trainingMetrics = await raceLost(backend, collect(backend, trainAcc, metrics, {
            loss: lossName,
            samples: Math.max(ctx.samplesSeen, 1),
            outputs: lossName === "mse" ? outputs : 1,
            classes,
          }));
          const epochTrainSeconds = (performance.now() - epochStarted) / 1000;
          trainSeconds += epochTrainSeconds;
          trainedSamples += ctx.samplesSeen;
          if (!Number.isFinite(trainingMetrics["loss"]!)) throw notFinite(epoch, ctx.step, trainingMetrics["loss"]!);
          if (lastReadSamples !== ctx.samplesSeen) ctx.extra["lastLoss"] = trainingMetrics["loss"];
          ctx.trainingLossTotal = trainingMetrics["loss"]! * ctx.trainingBatchCount;
          ctx.trainingMetrics = trainingMetrics;
          await hooks.call("onTrainingLoopEnd", ctx);

          // Validation loop.
          if (validation) {
            await hooks.call("onValidationLoopStart", ctx);
            const validationMetrics = await runValidation(
              backend,
              bound,
              validation,
              { loss: lossName, batchSize, metrics, classes, acc: valAcc },
              tensors.get,
              async (index, phase) => {
                ctx.batch = index;
                if (phase === "start") await hooks.call("onValidationBatchStart", ctx);
                else {
                  ctx.validationBatchCount++;
                  await hooks.call("onValidationBatchEnd", ctx);
                }
              },
            );
            ctx.validationLossTotal = validationMetrics["loss"]! * ctx.validationBatchCount;
            ctx.validationMetrics = validationMetrics;
            await hooks.call("onValidationLoopEnd", ctx);
          }

          history.push({
            epoch,
            training: ctx.trainingMetrics,
            validation: ctx.validationMetrics,
            seconds: (performance.now() - epochStarted) / 1000,
          });
          epochsRun++;
          await hooks.call("onEpochEnd", ctx);
          await hooks.call("onSaveCheckpoint", ctx, "epoch");
          if (stopReason !== undefined) break;
        }
        await hooks.call("onSaveCheckpoint", ctx, "final");
      } catch (e) {
        stopReason ??= `error: ${errorMessage(e)}`;
        throw e;
      } finally {
        await hooks.call("onTrainingEnd", ctx).catch(() => {});
        tensors.dispose();
        disposeAccumulators(backend, trainAcc);
        disposeAccumulators(backend, valAcc);
      }

      const last = history.at(-1);
      return {
        epochsRun,
        startEpoch,
        stopped: stopReason !== undefined,
        stopReason,
        history,
        trainingMetrics: last?.training ?? {},
        validationMetrics: last?.validation ?? {},
        backend: { name: backend.name, device: backend.device, kernels: backend.kernels },
        samplesPerSecond: trainSeconds > 0 ? trainedSamples / trainSeconds : 0,
        seconds: (performance.now() - started) / 1000,
        hookFailures: hooks.failures,
        skippedBatches,
      };
    },

    async evaluate(model, data, evalOptions) {
      const backend = await getBackend();
      const lossName = evalOptions.loss;
      const lossFn = getLoss(lossName);
      const spec = model.spec;
      const task = lossName === "cross-entropy" ? "classification" : "regression";
      const classes = task === "classification" ? spec.outputFeatures : 0;
      validateDataset(data, datasetCheck(spec, task));
      if (!model.initialized) throw configError("The model has no weights yet; train it or setWeights() first");
      const metrics = planMetrics(evalOptions.metrics ?? [], task);
      const bound = model.bind(backend);
      const acc = makeAccumulators(backend, metrics, classes);
      const tensors = batchTensors(backend, lossFn, spec);
      try {
        return await runValidation(backend, bound, data, { loss: lossName, batchSize: evalOptions.batchSize ?? 256, metrics, classes, acc }, tensors.get);
      } finally {
        tensors.dispose();
        disposeAccumulators(backend, acc);
      }
    },

    dispose() {
      void backendPromise?.then((b) => b.destroy(), () => {});
      backendPromise = undefined;
    },
  };
}

/** The device-lost error when `backend.lost` rejects within `ms`, else undefined. */
function lostWithin(backend: Backend, ms: number): Promise<KeelError | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const wait = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  const lost = backend.lost.then(
    () => undefined,
    (e: unknown) => KeelError.is(e) ? e : new KeelError("E_TRAIN_DEVICE_LOST", `The GPU device was lost: ${errorMessage(e)}; resume with --backend cpu`, { cause: e }),
  );
  return Promise.race([lost, wait]).finally(() => clearTimeout(timer));
}

function notFinite(epoch: number, step: number, value: number): KeelError {
  return new KeelError(
    "E_TRAIN_NOT_FINITE",
    `The training loss became ${value} at step ${step} (epoch ${epoch + 1}); training stopped and the last good checkpoint was kept. ` +
      "Lower the learning rate, set clipGradNorm, or check the data for extreme values",
    { details: { epoch, step, value: String(value) } },
  );
}
