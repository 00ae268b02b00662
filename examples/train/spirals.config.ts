/**
 * Three interleaved spirals (made here, seeded): a small problem that trains in seconds on any
 * backend. `keel train examples/train/spirals.config.ts --backend cpu`.
 */
import { adamw, createRng, defineTrainConfig, dense, fromArrays, gelu, layerNorm, sequential } from "../../plugins/trainer/mod.ts";

function spirals(rows: number, seed: number) {
  const rng = createRng(seed);
  const x: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < rows; i++) {
    const arm = i % 3;
    const t = rng.next();
    const angle = t * 3 * Math.PI + (arm * 2 * Math.PI) / 3;
    x.push([t * Math.cos(angle) + rng.normal() * 0.02, t * Math.sin(angle) + rng.normal() * 0.02]);
    y.push(arm);
  }
  return fromArrays(x, y, { classes: 3 });
}

export default defineTrainConfig({
  model: () => sequential([dense(2, 64), gelu(), layerNorm(64), dense(64, 64), gelu(), dense(64, 3)]),
  data: () => ({ train: spirals(1500, 1), validation: spirals(300, 2) }),
  loss: "cross-entropy",
  optimizer: adamw({ lr: 0.01, weightDecay: 1e-4 }),
  epochs: 20,
  batchSize: 50,
  metrics: ["accuracy", { name: "f1_score", options: { average: "macro" } }],
  seed: 1,
  clipGradNorm: 5,
  earlyStopping: { monitor: "val_accuracy", patience: 5, restoreBestWeights: true },
});
