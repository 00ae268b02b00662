/**
 * The trainer plugin: a WebGPU compute trainer with a CPU backend of the same API.
 *
 * ```ts
 * import { createKernel } from "../../core/mod.ts";
 * import metrics from "../metrics/mod.ts";
 * import { adam, createTrainerPlugin, dense, fromArrays, relu, sequential, trainerService } from "./mod.ts";
 *
 * const kernel = await createKernel({ plugins: [metrics, createTrainerPlugin({ backend: "cpu" })] });
 * const data = fromArrays([[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0]); // xor
 * const model = sequential([dense(2, 16), relu(), dense(16, 2)]);
 * const result = await kernel.services.get(trainerService).fit(model, {
 *   data, loss: "cross-entropy", optimizer: adam({ lr: 0.05 }), epochs: 200, batchSize: 4, metrics: ["accuracy"], seed: 1,
 * });
 * await kernel.dispose();
 * if (result.trainingMetrics["accuracy"] !== 1) throw new Error("xor was not learned");
 * ```
 * It drives bz's training lifecycle as kernel hooks (`onEpochEnd`, ...), so the console,
 * early-stopping, checkpoint and tensorboard plugins work with it; it asks the metrics plugin for
 * metrics and computes the classification ones on the device.
 * @module
 */

import { defineService, definePlugin, KeelError, type Logger, type Plugin } from "../../core/mod.ts";
import type { Backend } from "./backend.ts";
import { createCpuBackend } from "./cpu/mod.ts";
import { createTrainer, type Trainer, type TrainerMetricSource } from "./trainer.ts";
import { createWebGpuBackend } from "./webgpu/mod.ts";

export type { Activation, AdamStep, Backend, DType, SgdStep, Tensor } from "./backend.ts";
export { ACTIVATIONS } from "./backend.ts";
export type { LayerSpec, ModelSpec, NamedWeights } from "./model-spec.ts";
export { createRng, hash32, hashUniform } from "./rng.ts";
export { createCpuBackend } from "./cpu/mod.ts";
export { createWebGpuBackend, isWebGpuAvailable } from "./webgpu/mod.ts";
export * from "./model.ts";
export { getLoss, type Loss, type LossName, meanLoss } from "./losses.ts";
export { adam, adamw, type BoundOptimizer, type OptimizerDef, optimizerFrom, sgd } from "./optimizers.ts";
export * from "./data.ts";
export { createTrainer } from "./trainer.ts";
export { defineTrainConfig, type TrainConfig, type TrainData, validateTrainConfig } from "./config.ts";
export type { FitOptions, FitResult, MetricRequest, Trainer, TrainerMetric, TrainerMetricSource, TrainerOptions } from "./trainer.ts";

/** The trainer, as the trainer plugin provides it. */
export const trainerService = defineService<Trainer>("trainer");

const metricsKey = defineService<TrainerMetricSource>("metrics");

/** Which backend to train on: "auto" picks WebGPU when an adapter exists, else the CPU. */
export type BackendChoice = "auto" | "webgpu" | "cpu";

/** Options for {@link selectBackend}. */
export interface SelectBackendOptions {
  readonly backend?: BackendChoice;
  /** The WebGPU entry point (a plugin passes `ctx.gpu()`); default the host's. */
  readonly gpu?: () => GPU | undefined;
  /** CPU worker threads. */
  readonly threads?: number;
  /** Matmul kernel family on WebGPU ("auto" times both at start). */
  readonly kernels?: "auto" | "register-tiled" | "workgroup-tiled";
  /** Told why "auto" fell back to the CPU. */
  readonly logger?: Logger;
}

/**
 * Makes the backend asked for. With "auto", a host without a WebGPU adapter gets the CPU backend
 * and the logger says why.
 * @throws {KeelError} `E_TRAIN_BACKEND_UNAVAILABLE` when "webgpu" is asked for and there is none
 */
export async function selectBackend(options: SelectBackendOptions = {}): Promise<Backend> {
  const choice = options.backend ?? "auto";
  if (choice !== "auto" && choice !== "webgpu" && choice !== "cpu") {
    throw new KeelError("E_TRAIN_CONFIG", `Unknown backend "${String(choice)}"; use "auto", "webgpu" or "cpu"`);
  }
  const cpu = () => createCpuBackend(options.threads === undefined ? {} : { threads: options.threads });
  if (choice === "cpu") return await cpu();
  let gpu: GPU | undefined;
  try {
    gpu = options.gpu?.();
  } catch (e) {
    if (choice === "webgpu") throw e;
    options.logger?.info(`WebGPU is not available (${(e as Error).message}); training on the CPU`);
    return await cpu();
  }
  try {
    return await createWebGpuBackend({
      ...(gpu ? { gpu } : {}),
      ...(options.kernels ? { kernels: options.kernels } : {}),
    });
  } catch (e) {
    if (choice === "webgpu" || !KeelError.is(e, "E_TRAIN_BACKEND_UNAVAILABLE")) throw e;
    options.logger?.info(`${(e as Error).message.split(";")[0]}; training on the CPU`);
    return await cpu();
  }
}

/** Options for {@link createTrainerPlugin}. */
export interface TrainerPluginOptions extends Omit<SelectBackendOptions, "gpu" | "logger"> {
  /** A backend made elsewhere (tests, benchmarks); overrides `backend`. */
  readonly use?: Backend;
}

/**
 * The trainer plugin. It asks for `gpu` unless `backend: "cpu"` (the CPU backend needs nothing).
 * Hooks of other plugins run during `fit`; load the `metrics` plugin for metrics.
 */
export function createTrainerPlugin(options: TrainerPluginOptions = {}): Plugin {
  const wantsGpu = !options.use && options.backend !== "cpu";
  let trainer: Trainer | undefined;
  return definePlugin({
    name: "trainer",
    version: "0.1.0",
    kernel: "^1",
    capabilities: wantsGpu ? ["gpu"] : [],
    description: "WebGPU compute trainer (CPU fallback) with bz's training lifecycle hooks",
    setup(ctx) {
      const backend = options.use ?? (() =>
        selectBackend({
          ...options,
          gpu: () => (wantsGpu ? ctx.gpu() : undefined),
          logger: ctx.logger,
        }));
      trainer = createTrainer({
        backend,
        hooks: ctx.hooks,
        logger: ctx.logger,
        metrics: () => {
          try {
            return ctx.require(metricsKey);
          } catch {
            return undefined;
          }
        },
      });
      ctx.provide(trainerService, trainer);
      return {
        dispose() {
          if (!options.use) trainer?.dispose();
        },
      };
    },
  });
}

/** The trainer plugin on the best backend there is (asks for `gpu`). */
export default createTrainerPlugin();
