/**
 * The serializable description of a model: what `sequential([...])` builds, what checkpoints
 * store in their sidecar and what the ONNX exporter reads. Weights are named
 * `<layer name>.<param>`; a dense weight is `[inFeatures, outFeatures]` (x · W, the transpose of
 * PyTorch's `Linear.weight`), its bias `[outFeatures]`; layer norm has `.gamma` and `.beta`.
 * @module
 */

import type { Activation } from "./backend.ts";

/** One layer. `name` is unique in the model ("dense_0", "relu_1", ... unless given). */
export type LayerSpec =
  | { readonly type: "dense"; readonly name: string; readonly inFeatures: number; readonly outFeatures: number; readonly bias: boolean }
  | { readonly type: "activation"; readonly name: string; readonly activation: Exclude<Activation, "none"> | "softmax" }
  | { readonly type: "dropout"; readonly name: string; readonly p: number }
  | { readonly type: "layerNorm"; readonly name: string; readonly features: number; readonly eps: number };

/** A sequential model: layers in order, from `[batch, inputFeatures]` to `[batch, outputFeatures]`. */
export interface ModelSpec {
  readonly format: "keel-sequential/1";
  readonly inputFeatures: number;
  readonly outputFeatures: number;
  readonly layers: readonly LayerSpec[];
}

/** A named parameter and its values, as checkpoints and the ONNX exporter see them. */
export interface NamedWeights {
  readonly [name: string]: { readonly shape: readonly number[]; readonly data: Float32Array };
}
