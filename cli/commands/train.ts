/**
 * `keel train <config.ts>`: trains the model a config file describes (`defineTrainConfig`), on
 * WebGPU when an adapter exists and on the CPU otherwise (it says which, and why), with the
 * console, metrics, checkpoint (resumes from the latest matching checkpoint unless
 * `--no-resume`), early-stopping, tensorboard and onnx plugins as the config asks.
 * @module
 */

import type { ArgsDef } from "citty";
import { createKernel, errorMessage, KeelError, type Plugin, toFileUrl } from "../../core/mod.ts";
import { createCheckpointPlugin } from "../../plugins/checkpoint/mod.ts";
import { createConsolePlugin } from "../../plugins/console/mod.ts";
import { createEarlyStoppingPlugin } from "../../plugins/early-stopping/mod.ts";
import metrics from "../../plugins/metrics/mod.ts";
import { createOnnxPlugin } from "../../plugins/onnx/mod.ts";
import { createTensorBoardPlugin } from "../../plugins/tensorboard/mod.ts";
import {
  type BackendChoice,
  createTrainerPlugin,
  type FitResult,
  type Model,
  selectBackend,
  type TrainData,
  trainerService,
  validateTrainConfig,
} from "../../plugins/trainer/mod.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { integerFlag, lastValue } from "../flags.ts";

const TRAIN_ARGS = {
  config: { type: "positional", description: "A module whose default export is defineTrainConfig({ model, data, loss, epochs, batchSize, ... })", required: true },
  backend: { type: "string", valueHint: "kind", description: '"auto" (default: WebGPU when an adapter exists, else the CPU), "webgpu" or "cpu"' },
  epochs: { type: "string", valueHint: "n", description: "Override the config's epochs" },
  "batch-size": { type: "string", valueHint: "n", description: "Override the config's batch size" },
  lr: { type: "string", valueHint: "rate", description: "Override the learning rate" },
  seed: { type: "string", valueHint: "n", description: "Override the seed (initialisation, shuffling, dropout)" },
  "no-resume": { type: "boolean", description: "Start fresh instead of resuming from the latest matching checkpoint (the default)" },
  "checkpoint-dir": { type: "string", valueHint: "dir", description: "Where checkpoints go (default .keel/checkpoints/<config name>)" },
  logdir: { type: "string", valueHint: "dir", description: "Write TensorBoard event files here" },
  "export-onnx": { type: "string", valueHint: "file", description: "Export the trained model to this ONNX file" },
  json: { type: "boolean", description: "Print the result (history, metrics, backend, samples/s) as JSON on stdout" },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

function numberFlag(env: CliEnv, name: string): number | undefined {
  const raw = lastValue(env.flags, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n <= 0) throw usage(`--${name} takes a positive number, got "${raw}"`);
  return n;
}

async function trainCommand(env: CliEnv): Promise<void> {
  const { runtime, flags, out } = env;
  const [, given, ...extra] = flags.positionals;
  if (given === undefined) throw usage("keel train needs a config file, as in: keel train examples/train/mnist.config.ts");
  if (extra.length > 0) throw usage(`keel train takes one config file, got also ${extra.map((e) => `"${e}"`).join(", ")}`);
  const choice = (lastValue(flags, "backend") ?? "auto") as BackendChoice;
  if (!["auto", "webgpu", "cpu"].includes(choice)) throw usage(`--backend takes "auto", "webgpu" or "cpu"; got "${choice}"`);
  const epochs = integerFlag(flags, "epochs");
  const batchSize = integerFlag(flags, "batch-size");
  const lr = numberFlag(env, "lr");
  const seed = integerFlag(flags, "seed");
  const resume = !flags.booleans.has("no-resume");

  const path = runtime.resolvePath(given);
  if (runtime.fs !== undefined && !(await runtime.fs.exists(path))) {
    throw new KeelError("E_CONFIG_LOAD_FAILED", `Training config "${given}" does not exist (looked for "${path}"); check the path`, {
      details: { source: given, exitCode: 2 },
    });
  }
  let namespace: { default?: unknown };
  try {
    namespace = await import(toFileUrl(path));
  } catch (e) {
    throw new KeelError("E_CONFIG_LOAD_FAILED", `Training config "${given}" could not be imported: ${errorMessage(e)}`, { cause: e, details: { source: given } });
  }
  const config = validateTrainConfig(namespace.default, given);
  const name = (path.split("/").pop() ?? "train").replace(/\.(config\.)?[cm]?[jt]s$/, "");

  // The backend first, so the first line says what training runs on.
  const backend = await selectBackend({ backend: choice, logger: env.logger });
  out.info(`Backend: ${backend.name} on ${backend.device}${backend.name === "webgpu" ? ` (matmul kernels: ${backend.kernels})` : ""}`);

  const plugins: Plugin[] = [metrics, createTrainerPlugin({ use: backend })];
  const grants: Record<string, string[]> = {};
  const isTty = runtime.isTerminal("stderr");
  plugins.push(createConsolePlugin({ write: (text) => runtime.writeStderr(text), tty: isTty }));
  if (config.earlyStopping) plugins.push(createEarlyStoppingPlugin(config.earlyStopping));
  const checkpointDir = lastValue(flags, "checkpoint-dir") ?? (config.checkpoint === false ? undefined : config.checkpoint?.dir ?? `.keel/checkpoints/${name}`);
  if (checkpointDir !== undefined) {
    const dir = runtime.resolvePath(checkpointDir);
    await runtime.fs?.mkdir(dir);
    const cp = config.checkpoint || {};
    plugins.push(createCheckpointPlugin({
      dir,
      resume,
      ...(cp.every !== undefined ? { every: cp.every } : {}),
      ...(cp.keep !== undefined ? { keep: cp.keep } : {}),
    }));
    grants["checkpoint"] = [`read:${dir}`, `write:${dir}`];
  }
  const logDir = lastValue(flags, "logdir") ?? (config.tensorboard ? config.tensorboard.logDir ?? `.keel/runs/${name}` : undefined);
  if (logDir !== undefined) {
    const dir = runtime.resolvePath(logDir);
    await runtime.fs?.mkdir(dir);
    plugins.push(createTensorBoardPlugin({ logDir: dir }));
    grants["tensorboard"] = [`write:${dir}`];
  }
  const onnxPath = lastValue(flags, "export-onnx") ?? (config.onnx ? config.onnx.exportTo : undefined);
  if (onnxPath !== undefined) {
    const file = runtime.resolvePath(onnxPath);
    plugins.push(createOnnxPlugin({ exportTo: file }));
    grants["onnx"] = [`write:${file}`];
  }

  const kernel = await createKernel({ runtime, plugins, grants, logger: env.logger });
  let result: FitResult;
  let data: TrainData;
  let model: Model;
  try {
    model = typeof config.model === "function" ? config.model() : config.model;
    data = typeof config.data === "function" ? await config.data() : config.data;
    const trainer = kernel.services.get(trainerService);
    result = await trainer.fit(model, {
      data: data.train,
      ...(data.validation ? { validation: data.validation } : {}),
      loss: config.loss,
      ...(config.optimizer !== undefined ? { optimizer: config.optimizer } : {}),
      ...(lr ?? config.lr) !== undefined ? { lr: (lr ?? config.lr)! } : {},
      epochs: epochs ?? config.epochs,
      batchSize: batchSize ?? config.batchSize,
      ...(config.metrics ? { metrics: config.metrics } : {}),
      ...(seed ?? config.seed) !== undefined ? { seed: (seed ?? config.seed)! } : {},
      ...(config.clipGradNorm !== undefined ? { clipGradNorm: config.clipGradNorm } : {}),
      ...(config.lossReadEvery !== undefined ? { lossReadEvery: config.lossReadEvery } : {}),
      hyperparameters: { config: given },
    });
    let test: Record<string, number> | undefined;
    if (data.test) {
      test = await trainer.evaluate(model, data.test, { loss: config.loss, ...(config.metrics ? { metrics: config.metrics } : {}) });
      out.success(`Test: ${Object.entries(test).map(([k, v]) => `${k} ${v.toFixed(4)}`).join("  ")}`);
    }
    out.success(
      `Trained ${result.epochsRun} epoch${result.epochsRun === 1 ? "" : "s"} on ${result.backend.name} in ${result.seconds.toFixed(1)} s ` +
        `(${Math.round(result.samplesPerSecond).toLocaleString("en-US")} samples/s)` +
        (checkpointDir !== undefined ? `; checkpoints in ${checkpointDir}` : "") +
        (onnxPath !== undefined ? `; ONNX model at ${onnxPath}` : ""),
    );
    for (const f of result.hookFailures) out.warn(f.message);
    if (flags.booleans.has("json")) {
      await runtime.writeStdout(JSON.stringify({ ...result, hookFailures: result.hookFailures.map((f) => f.toJSON()), test }, null, 2) + "\n");
    }
  } finally {
    await kernel.dispose();
    backend.destroy();
  }
}

/** The `keel train` command. */
export const TRAIN_COMMAND: CliCommand = {
  meta: {
    name: "train",
    description: "Train the model a config file describes, on WebGPU or the CPU, with progress, metrics, checkpoints (resume) and early stopping",
  },
  args: TRAIN_ARGS,
  run: trainCommand,
};
