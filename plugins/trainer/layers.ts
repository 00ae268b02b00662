/**
 * Layer definitions: what `dense(784, 256)`, `relu()`, `dropout(0.1)` and `layerNorm(256)` return.
 * They are plain descriptions; {@link sequential} (in `model.ts`) names them, checks that they fit
 * together and turns them into a {@link ModelSpec}.
 *
 * Initialisation rule (dense): He/Kaiming uniform, U(±√(6 / in)), when the next layer is relu or
 * gelu; Xavier/Glorot uniform, U(±√(6 / (in + out))), otherwise. `init` overrides the rule. Biases
 * start at 0; layer norm starts at gamma = 1, beta = 0.
 * @module
 */

import type { LayerSpec } from "./model-spec.ts";

/** An activation layer's function. */
export type ActivationName = Extract<LayerSpec, { type: "activation" }>["activation"];

/** A layer before it is placed in a model: its kind, an optional name and its settings. */
export interface LayerDef {
  readonly kind: LayerSpec["type"];
  /** The name given by the caller; `sequential` defaults it to `${type}_${index}`. */
  readonly name: string | undefined;
  /** dense: input and output features; layerNorm: `features` in both. */
  readonly inFeatures?: number;
  readonly outFeatures?: number;
  /** dense only. */
  readonly bias?: boolean;
  readonly init?: "he" | "xavier";
  /** activation only. */
  readonly activation?: ActivationName;
  /** dropout only. */
  readonly p?: number;
  /** layerNorm only. */
  readonly eps?: number;
}

/** Options every layer takes. */
export interface LayerOptions {
  /** Unique in the model; the prefix of its weights' names ("dense_0.weight"). */
  readonly name?: string;
}

/** A fully connected layer: y = x · W + b, W of shape [inFeatures, outFeatures]. */
export function dense(
  inFeatures: number,
  outFeatures: number,
  options: LayerOptions & { readonly bias?: boolean; readonly init?: "he" | "xavier" } = {},
): LayerDef {
  const def: { -readonly [K in keyof LayerDef]: LayerDef[K] } = {
    kind: "dense",
    name: options.name,
    inFeatures,
    outFeatures,
    bias: options.bias ?? true,
  };
  if (options.init !== undefined) {
    if (options.init !== "he" && options.init !== "xavier") throw new RangeError(`Option "init" must be "he" or "xavier", got "${String(options.init)}"`);
    def.init = options.init;
  }
  return def;
}

function activation(name: ActivationName, options: LayerOptions): LayerDef {
  return { kind: "activation", name: options.name, activation: name };
}

/** max(0, x). */
export function relu(options: LayerOptions = {}): LayerDef {
  return activation("relu", options);
}
/** GELU, tanh approximation (PyTorch's `approximate="tanh"`). */
export function gelu(options: LayerOptions = {}): LayerDef {
  return activation("gelu", options);
}
/** Hyperbolic tangent. */
export function tanh(options: LayerOptions = {}): LayerDef {
  return activation("tanh", options);
}
/** Logistic sigmoid. */
export function sigmoid(options: LayerOptions = {}): LayerDef {
  return activation("sigmoid", options);
}
/**
 * Softmax over the features; only allowed as the last layer. With the cross-entropy loss the
 * trainer trains on the logits before it (the loss applies its own softmax) and `predict` keeps it.
 */
export function softmax(options: LayerOptions = {}): LayerDef {
  return activation("softmax", options);
}

/**
 * Inverted dropout: in training each feature is zeroed with probability `p` and the rest scaled
 * by 1/(1−p); in evaluation it passes values through.
 * @throws RangeError unless 0 ≤ p < 1
 */
export function dropout(p: number, options: LayerOptions = {}): LayerDef {
  if (typeof p !== "number" || !(p >= 0 && p < 1)) throw new RangeError(`Dropout probability must be in [0, 1), got ${p}`);
  return { kind: "dropout", name: options.name, p };
}

/** Layer normalisation over the features, with learned gamma (init 1) and beta (init 0). */
export function layerNorm(features: number, options: LayerOptions & { readonly eps?: number } = {}): LayerDef {
  const eps = options.eps ?? 1e-5;
  if (!(eps > 0) || !Number.isFinite(eps)) throw new RangeError(`Layer norm eps must be a positive number, got ${eps}`);
  return { kind: "layerNorm", name: options.name, inFeatures: features, outFeatures: features, eps };
}
