/**
 * Sequential models: {@link sequential} checks that the layers fit together, names them, and
 * returns a {@link Model} that initialises weights from a seed in host memory, binds them to a
 * {@link Backend}, and runs forward and backward passes there.
 *
 * Dense layers fuse the activation that follows them into one `biasAct` (the activation layer
 * stays in the spec). A final softmax: `forward(x, { logits: true })` skips it, which is what the
 * training loop does with the cross-entropy loss (that loss applies its own softmax to logits);
 * `predict` keeps it. Backward through a final softmax is not supported: train on logits.
 *
 * Build errors: sizes that do not fit, an empty model, an unknown input size, sizes that are not
 * positive integers and a softmax before the last layer throw `E_TRAIN_SHAPE`; two layers with
 * one name throw `E_TRAIN_CONFIG`.
 * @module
 */

import { KeelError } from "../../core/mod.ts";
import type { Activation, Backend, Tensor } from "./backend.ts";
import type { LayerDef } from "./layers.ts";
import type { LayerSpec, ModelSpec, NamedWeights } from "./model-spec.ts";
import { createRng, hash32 } from "./rng.ts";
import { createCpuBackend } from "./cpu/mod.ts";
import type { TrainingModel } from "../../core/mod.ts";

export * from "./layers.ts";

/** A trainable parameter with its gradient, on a backend. */
export interface BoundParam {
  readonly name: string;
  readonly param: Tensor;
  readonly grad: Tensor;
}

/** Options of {@link BoundModel.forward}. */
export interface ForwardOptions {
  readonly training: boolean;
  /** Feeds dropout masks (training only). */
  readonly seed: number;
  /** Skip a final softmax layer and return the logits before it. */
  readonly logits?: boolean;
}

/** A model compiled onto one backend: its parameters live there. */
export interface BoundModel {
  readonly backend: Backend;
  /** Every trainable parameter with its gradient buffer, in a stable order (spec order). */
  readonly params: readonly BoundParam[];
  /**
   * Forward pass of x [rows, inputFeatures]; returns the output tensor [rows, outputFeatures],
   * owned by the model (valid until the next forward with the same rows). Workspace is allocated
   * per distinct `rows` and cached, so a short last batch works. `seed` feeds dropout (training
   * only).
   */
  forward(x: Tensor, options: ForwardOptions): Tensor;
  /** Backward pass from dOutput [rows, outputFeatures] for the last forward of that many rows; writes (=, not +=) every grad. */
  backward(dOutput: Tensor): void;
  /**
   * Frees every tensor it made and unbinds the model, whose host copy keeps the weights as of
   * the last `getWeights()` (or the bind): `await model.unbind()` reads them back first.
   */
  dispose(): void;
}

/** A sequential model with its weights (host memory until bound). */
export interface Model extends TrainingModel {
  readonly spec: ModelSpec;
  readonly parameterCount: number;
  /**
   * Initialises weights deterministically from `seed` in host memory (same values on every
   * backend). Called by fit() unless weights exist already (set by setWeights or an earlier fit).
   */
  init(seed: number): void;
  readonly initialized: boolean;
  /**
   * Uploads the current host weights to `backend` and returns the compiled model; later
   * getWeights() reads from that backend. Binding again to the same backend returns the live
   * binding (its weights are the newest).
   * @throws E_TRAIN_CONFIG when not initialised, or when bound to another backend (unbind first)
   */
  bind(backend: Backend): BoundModel;
  /** The live binding, if any. */
  readonly bound: BoundModel | undefined;
  /** Reads the weights back into host memory and disposes the binding. */
  unbind(): Promise<void>;
  /**
   * The weights: from the bound backend when bound (the host copy is refreshed too), else the
   * host copy. Copies; mutating them changes nothing.
   * @throws E_TRAIN_CONFIG when not initialised
   */
  getWeights(): Promise<NamedWeights>;
  /**
   * Replaces every weight; writes to the bound backend too.
   * @throws E_TRAIN_CHECKPOINT naming a missing, unknown or mis-shaped weight
   */
  setWeights(weights: NamedWeights): void;
  /**
   * Forward pass in eval mode (dropout off, a final softmax kept) on the bound backend, or a CPU
   * backend when unbound; returns [rows, outputFeatures] row-major.
   */
  predict(x: Float32Array, options?: { batchSize?: number }): Promise<Float32Array>;
}

/** Options of {@link sequential}. */
export interface SequentialOptions {
  /** Input features, needed when the first layer does not fix them (an activation, dropout). */
  readonly inputFeatures?: number;
}

function shapeError(message: string): KeelError {
  return new KeelError("E_TRAIN_SHAPE", message);
}

function checkSize(value: unknown, layer: string, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw shapeError(`Layer "${layer}" has ${what} ${String(value)}; use a positive integer`);
  }
  return value;
}

/**
 * Builds a sequential model from layers, checking at once that each layer's input size is what
 * the one before gives.
 * @throws E_TRAIN_SHAPE (sizes, empty model, unknown input size, softmax not last), E_TRAIN_CONFIG (duplicate names)
 */
export function sequential(layers: readonly LayerDef[], options: SequentialOptions = {}): Model {
  if (!Array.isArray(layers) || layers.length === 0) throw shapeError("A model needs at least one layer; pass e.g. [dense(784, 10)]");
  const specs: LayerSpec[] = [];
  const names = new Set<string>();
  let features: number | undefined;
  let source = "the input";
  if (options.inputFeatures !== undefined) {
    const n = options.inputFeatures;
    if (typeof n !== "number" || !Number.isInteger(n) || n <= 0) throw shapeError(`Option "inputFeatures" must be a positive integer, got ${String(n)}`);
    features = n;
  }
  layers.forEach((def, index) => {
    const kind = def.kind;
    const defaultName = kind === "activation" ? `${def.activation ?? "activation"}_${index}` : `${kind}_${index}`;
    const name = def.name ?? defaultName;
    if (typeof name !== "string" || name === "") throw new KeelError("E_TRAIN_CONFIG", `Layer ${index} has an empty name; give it a non-empty name or none`);
    if (names.has(name)) throw new KeelError("E_TRAIN_CONFIG", `Two layers are named "${name}"; give each layer a unique name`);
    names.add(name);
    switch (kind) {
      case "dense":
      case "layerNorm": {
        const inF = checkSize(def.inFeatures, name, "input features");
        const outF = checkSize(def.outFeatures, name, "output features");
        if (features === undefined && index > 0) {
          throw shapeError(`Layer "${name}" follows layers with no known input size; pass { inputFeatures } to sequential()`);
        }
        if (features !== undefined && features !== inF) {
          const fix = kind === "dense" ? `dense(${features}, ${outF})` : `layerNorm(${features})`;
          throw shapeError(
            `Layer "${name}" expects ${inF} input features but ${source === "the input" ? "the input" : `layer "${source}"`} gives ${features}; make them match (e.g. ${fix})`,
          );
        }
        if (kind === "dense") specs.push({ type: "dense", name, inFeatures: inF, outFeatures: outF, bias: def.bias ?? true });
        else specs.push({ type: "layerNorm", name, features: inF, eps: def.eps ?? 1e-5 });
        features = outF;
        source = name;
        break;
      }
      case "activation": {
        const act = def.activation;
        if (act === undefined || !["relu", "gelu", "tanh", "sigmoid", "softmax"].includes(act)) {
          throw new KeelError("E_TRAIN_CONFIG", `Layer "${name}" has unknown activation "${String(act)}"; use relu, gelu, tanh, sigmoid or softmax`);
        }
        if (act === "softmax" && index !== layers.length - 1) {
          throw shapeError(`Layer "${name}" is a softmax but not the last layer; softmax may only end a model`);
        }
        if (features === undefined) throw shapeError(`Layer "${name}" is first and has no known input size; pass { inputFeatures } to sequential()`);
        specs.push({ type: "activation", name, activation: act });
        break;
      }
      case "dropout": {
        const p = def.p;
        if (typeof p !== "number" || !(p >= 0 && p < 1)) throw new RangeError(`Dropout probability must be in [0, 1), got ${String(p)}`);
        if (features === undefined) throw shapeError(`Layer "${name}" is first and has no known input size; pass { inputFeatures } to sequential()`);
        specs.push({ type: "dropout", name, p });
        break;
      }
      default:
        throw new KeelError("E_TRAIN_CONFIG", `Layer ${index} has unknown kind "${String(kind)}"; build layers with dense(), relu(), dropout(), layerNorm()`);
    }
  });
  const first = specs[0]!;
  const inputFeatures = options.inputFeatures ?? (first.type === "dense" ? first.inFeatures : first.type === "layerNorm" ? first.features : 0);
  const spec: ModelSpec = Object.freeze({
    format: "keel-sequential/1",
    inputFeatures,
    outputFeatures: features!,
    layers: Object.freeze(specs.map((s) => Object.freeze(s))),
  });
  const inits = layers.map((l) => l.init);
  return new SequentialModel(spec, inits);
}

/**
 * Rebuilds a model from its spec (a checkpoint sidecar, an exported file).
 * @throws E_TRAIN_SHAPE / E_TRAIN_CONFIG as {@link sequential}
 */
export function modelFromSpec(spec: ModelSpec): Model {
  if (spec?.format !== "keel-sequential/1" || !Array.isArray(spec.layers)) {
    throw new KeelError("E_TRAIN_CONFIG", `A model spec must have format "keel-sequential/1"; got ${JSON.stringify(spec?.format)}`);
  }
  const defs: LayerDef[] = spec.layers.map((l): LayerDef => {
    switch (l.type) {
      case "dense":
        return { kind: "dense", name: l.name, inFeatures: l.inFeatures, outFeatures: l.outFeatures, bias: l.bias };
      case "activation":
        return { kind: "activation", name: l.name, activation: l.activation };
      case "dropout":
        return { kind: "dropout", name: l.name, p: l.p };
      case "layerNorm":
        return { kind: "layerNorm", name: l.name, inFeatures: l.features, outFeatures: l.features, eps: l.eps };
      default:
        throw new KeelError("E_TRAIN_CONFIG", `A model spec has a layer of unknown type "${String((l as { type?: unknown }).type)}"`);
    }
  });
  return sequential(defs, { inputFeatures: spec.inputFeatures });
}

interface HostParam {
  readonly name: string;
  readonly shape: readonly number[];
  data: Float32Array;
}

/** The parameters of a spec, in order, with their shapes. */
function paramShapes(spec: ModelSpec): { name: string; shape: number[] }[] {
  const out: { name: string; shape: number[] }[] = [];
  for (const l of spec.layers) {
    if (l.type === "dense") {
      out.push({ name: `${l.name}.weight`, shape: [l.inFeatures, l.outFeatures] });
      if (l.bias) out.push({ name: `${l.name}.bias`, shape: [l.outFeatures] });
    } else if (l.type === "layerNorm") {
      out.push({ name: `${l.name}.gamma`, shape: [l.features] });
      out.push({ name: `${l.name}.beta`, shape: [l.features] });
    }
  }
  return out;
}

class SequentialModel implements Model {
  readonly spec: ModelSpec;
  readonly parameterCount: number;
  readonly #inits: readonly ("he" | "xavier" | undefined)[];
  readonly #shapes: { name: string; shape: number[] }[];
  #host: HostParam[] | undefined;
  #bound: Binding | undefined;

  constructor(spec: ModelSpec, inits: readonly ("he" | "xavier" | undefined)[]) {
    this.spec = spec;
    this.#inits = inits;
    this.#shapes = paramShapes(spec);
    this.parameterCount = this.#shapes.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  }

  get initialized(): boolean {
    return this.#host !== undefined;
  }

  get bound(): BoundModel | undefined {
    return this.#bound;
  }

  init(seed: number): void {
    if (typeof seed !== "number" || !Number.isFinite(seed)) throw new RangeError(`Seed must be a finite number, got ${seed}`);
    const host: HostParam[] = [];
    const layers = this.spec.layers;
    layers.forEach((l, index) => {
      if (l.type === "dense") {
        const next = layers[index + 1];
        const followedByRectifier = next?.type === "activation" && (next.activation === "relu" || next.activation === "gelu");
        const rule = this.#inits[index] ?? (followedByRectifier ? "he" : "xavier");
        const bound = rule === "he" ? Math.sqrt(6 / l.inFeatures) : Math.sqrt(6 / (l.inFeatures + l.outFeatures));
        // One stream per layer, so a layer's weights do not depend on the layers before it.
        const rng = createRng(hash32(seed >>> 0, index));
        const w = new Float32Array(l.inFeatures * l.outFeatures);
        for (let i = 0; i < w.length; i++) w[i] = (rng.next() * 2 - 1) * bound;
        host.push({ name: `${l.name}.weight`, shape: [l.inFeatures, l.outFeatures], data: w });
        if (l.bias) host.push({ name: `${l.name}.bias`, shape: [l.outFeatures], data: new Float32Array(l.outFeatures) });
      } else if (l.type === "layerNorm") {
        host.push({ name: `${l.name}.gamma`, shape: [l.features], data: new Float32Array(l.features).fill(1) });
        host.push({ name: `${l.name}.beta`, shape: [l.features], data: new Float32Array(l.features) });
      }
    });
    this.#host = host;
    if (this.#bound !== undefined) this.#bound.upload(host);
  }

  #requireHost(): HostParam[] {
    if (this.#host === undefined) {
      throw new KeelError("E_TRAIN_CONFIG", "The model has no weights yet; call model.init(seed) or model.setWeights(weights) first");
    }
    return this.#host;
  }

  bind(backend: Backend): BoundModel {
    const host = this.#requireHost();
    if (this.#bound !== undefined) {
      if (this.#bound.backend === backend) return this.#bound;
      throw new KeelError(
        "E_TRAIN_CONFIG",
        `The model is bound to the "${this.#bound.backend.name}" backend; call await model.unbind() before binding it to another`,
      );
    }
    const binding = new Binding(this.spec, backend, host, () => {
      if (this.#bound === binding) this.#bound = undefined;
    });
    this.#bound = binding;
    return binding;
  }

  async unbind(): Promise<void> {
    const b = this.#bound;
    if (b === undefined) return;
    await this.getWeights();
    b.dispose();
  }

  async getWeights(): Promise<NamedWeights> {
    const host = this.#requireHost();
    const b = this.#bound;
    if (b !== undefined) {
      const datas = await Promise.all(b.params.map((p) => b.backend.read(p.param)));
      datas.forEach((d, i) => {
        host[i]!.data = Float32Array.from(d);
      });
    }
    const out: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
    for (const p of host) out[p.name] = { shape: [...p.shape], data: p.data.slice() };
    return out;
  }

  setWeights(weights: NamedWeights): void {
    if (typeof weights !== "object" || weights === null) throw new KeelError("E_TRAIN_CHECKPOINT", "Weights must be an object of named weights");
    const expected = new Set(this.#shapes.map((s) => s.name));
    for (const name of Object.keys(weights)) {
      if (!expected.has(name)) {
        throw new KeelError("E_TRAIN_CHECKPOINT", `Weight "${name}" is not in this model (it has ${[...expected].map((n) => `"${n}"`).join(", ")}); load a checkpoint of the same model`, { details: { name } });
      }
    }
    const host: HostParam[] = [];
    for (const { name, shape } of this.#shapes) {
      const w = weights[name];
      if (w === undefined) throw new KeelError("E_TRAIN_CHECKPOINT", `Weight "${name}" is missing; load a checkpoint of the same model`, { details: { name } });
      const size = shape.reduce((a, b) => a * b, 1);
      const sameShape = Array.isArray(w.shape) && w.shape.length === shape.length && w.shape.every((d, i) => d === shape[i]);
      if (!sameShape || !(w.data instanceof Float32Array) || w.data.length !== size) {
        throw new KeelError(
          "E_TRAIN_CHECKPOINT",
          `Weight "${name}" has shape [${String(w.shape)}] with ${w.data?.length} values but the model needs [${shape.join(", ")}]; load a checkpoint of the same model`,
          { details: { name, expected: shape, got: w.shape } },
        );
      }
      host.push({ name, shape, data: w.data.slice() });
    }
    this.#host = host;
    this.#bound?.upload(host);
  }

  async predict(x: Float32Array, options: { batchSize?: number } = {}): Promise<Float32Array> {
    this.#requireHost();
    const inF = this.spec.inputFeatures;
    if (!(x instanceof Float32Array) || x.length % inF !== 0) {
      throw new KeelError("E_TRAIN_SHAPE", `Prediction needs a Float32Array of rows × ${inF} input features; got ${x?.length} values`);
    }
    const batchSize = options.batchSize ?? 1024;
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new KeelError("E_TRAIN_BATCH_SIZE", `Batch size must be a positive integer, got ${batchSize}`);
    const rows = x.length / inF;
    const outF = this.spec.outputFeatures;
    const out = new Float32Array(rows * outF);
    let binding = this.#bound;
    let temporary: Backend | undefined;
    if (binding === undefined) {
      temporary = await createCpuBackend();
      binding = new Binding(this.spec, temporary, this.#host!, () => {});
    }
    try {
      const be = binding.backend;
      for (let start = 0; start < rows; start += batchSize) {
        const n = Math.min(batchSize, rows - start);
        const input = be.tensor(x.subarray(start * inF, (start + n) * inF), [n, inF]);
        try {
          const y = binding.forward(input, { training: false, seed: 0 });
          out.set(await be.read(y), start * outF);
        } finally {
          be.dispose(input);
        }
      }
    } finally {
      if (temporary !== undefined) {
        binding.dispose();
        temporary.destroy();
      }
    }
    return out;
  }
}

/** One step of the compiled forward pass. */
type Step =
  | { readonly kind: "dense"; readonly layer: number; readonly w: number; readonly b: number | undefined; readonly act: Activation; readonly inF: number; readonly outF: number }
  | { readonly kind: "act"; readonly layer: number; readonly act: Activation; readonly features: number }
  | { readonly kind: "softmax"; readonly layer: number; readonly features: number }
  | { readonly kind: "dropout"; readonly layer: number; readonly p: number; readonly features: number }
  | { readonly kind: "layerNorm"; readonly layer: number; readonly gamma: number; readonly beta: number; readonly eps: number; readonly features: number };

/** Per-rows buffers of one step. */
interface StepWork {
  out: Tensor;
  /** dense+gelu: x·W + b before the activation. */
  pre?: Tensor;
  /** dropout mask; layer norm mean and rstd. */
  mask?: Tensor;
  mean?: Tensor;
  rstd?: Tensor;
  /** Gradient with respect to this step's input, and scratch for dense's pre-activation gradient. */
  dIn?: Tensor;
  dz?: Tensor;
}

interface Workspace {
  readonly steps: StepWork[];
  input: Tensor | undefined;
  /** Which steps ran in the last forward (a final softmax may be skipped), and in which mode. */
  ran: number;
  training: boolean;
}

function compile(spec: ModelSpec, paramIndex: Map<string, number>): Step[] {
  const steps: Step[] = [];
  const layers = spec.layers;
  let features = spec.inputFeatures;
  for (let i = 0; i < layers.length; i++) {
    const l = layers[i]!;
    switch (l.type) {
      case "dense": {
        const next = layers[i + 1];
        let act: Activation = "none";
        if (next?.type === "activation" && next.activation !== "softmax") {
          act = next.activation;
        }
        steps.push({
          kind: "dense", layer: i, w: paramIndex.get(`${l.name}.weight`)!,
          b: l.bias ? paramIndex.get(`${l.name}.bias`)! : undefined, act, inF: l.inFeatures, outF: l.outFeatures,
        });
        if (act !== "none") i++; // fused
        features = l.outFeatures;
        break;
      }
      case "activation":
        if (l.activation === "softmax") steps.push({ kind: "softmax", layer: i, features });
        else steps.push({ kind: "act", layer: i, act: l.activation, features });
        break;
      case "dropout":
        steps.push({ kind: "dropout", layer: i, p: l.p, features });
        break;
      case "layerNorm":
        steps.push({
          kind: "layerNorm", layer: i, gamma: paramIndex.get(`${l.name}.gamma`)!, beta: paramIndex.get(`${l.name}.beta`)!,
          eps: l.eps, features,
        });
        break;
    }
  }
  return steps;
}

class Binding implements BoundModel {
  readonly backend: Backend;
  readonly params: readonly BoundParam[];
  readonly #spec: ModelSpec;
  readonly #steps: Step[];
  readonly #work = new Map<number, Workspace>();
  /** Zero biases for dense layers without one and for standalone activations, by size. */
  readonly #zeros = new Map<number, Tensor>();
  readonly #onDispose: () => void;
  #disposed = false;

  constructor(spec: ModelSpec, backend: Backend, host: readonly HostParam[], onDispose: () => void) {
    this.#spec = spec;
    this.backend = backend;
    this.#onDispose = onDispose;
    const params: BoundParam[] = [];
    const index = new Map<string, number>();
    for (const p of host) {
      index.set(p.name, params.length);
      params.push({ name: p.name, param: backend.tensor(p.data, p.shape), grad: backend.zeros(p.shape) });
    }
    this.params = params;
    this.#steps = compile(spec, index);
  }

  upload(host: readonly HostParam[]): void {
    host.forEach((p, i) => this.backend.write(this.params[i]!.param, p.data));
  }

  #zeroVector(n: number): Tensor {
    let z = this.#zeros.get(n);
    if (z === undefined) {
      z = this.backend.zeros([n]);
      this.#zeros.set(n, z);
    }
    return z;
  }

  #workspace(rows: number): Workspace {
    let ws = this.#work.get(rows);
    if (ws !== undefined) return ws;
    const be = this.backend;
    let inF = this.#spec.inputFeatures;
    const steps: StepWork[] = this.#steps.map((s, i) => {
      const outF = s.kind === "dense" ? s.outF : s.features;
      const w: StepWork = { out: be.zeros([rows, outF]) };
      if (s.kind === "dense" && s.act === "gelu") w.pre = be.zeros([rows, outF]);
      if (s.kind === "dense" && s.act !== "none") w.dz = be.zeros([rows, outF]);
      if (s.kind === "dropout") w.mask = be.zeros([rows, outF]);
      if (s.kind === "layerNorm") {
        w.mean = be.zeros([rows]);
        w.rstd = be.zeros([rows]);
      }
      // The first step needs no input gradient, but layer norm writes one anyway.
      if (i > 0 || s.kind === "layerNorm") w.dIn = be.zeros([rows, inF]);
      inF = outF;
      return w;
    });
    ws = { steps, input: undefined, ran: 0, training: false };
    this.#work.set(rows, ws);
    return ws;
  }

  #live(): void {
    if (this.#disposed) throw new KeelError("E_TRAIN_CONFIG", "This bound model was disposed; bind the model again");
  }

  forward(x: Tensor, options: ForwardOptions): Tensor {
    this.#live();
    const inF = this.#spec.inputFeatures;
    if (x.shape.length !== 2 || x.shape[1] !== inF || x.dtype !== "f32") {
      throw new KeelError("E_TRAIN_SHAPE", `The model expects input of shape [rows, ${inF}] (f32); got [${x.shape.join(", ")}] (${x.dtype})`);
    }
    const rows = x.shape[0]!;
    const be = this.backend;
    const ws = this.#workspace(rows);
    ws.input = x;
    ws.training = options.training;
    const params = this.params;
    let cur = x;
    let ran = 0;
    for (let i = 0; i < this.#steps.length; i++) {
      const s = this.#steps[i]!;
      const w = ws.steps[i]!;
      switch (s.kind) {
        case "dense": {
          const bias = s.b === undefined ? this.#zeroVector(s.outF) : params[s.b]!.param;
          if (s.act === "gelu") {
            be.matmul(cur, params[s.w]!.param, w.pre!);
            be.biasAct(w.pre!, bias, "none", w.pre!);
            be.biasAct(w.pre!, this.#zeroVector(s.outF), "gelu", w.out);
          } else {
            be.matmul(cur, params[s.w]!.param, w.out);
            be.biasAct(w.out, bias, s.act, w.out);
          }
          cur = w.out;
          break;
        }
        case "act":
          be.biasAct(cur, this.#zeroVector(s.features), s.act, w.out);
          cur = w.out;
          break;
        case "softmax":
          if (options.logits === true) break;
          be.softmax(cur, w.out);
          cur = w.out;
          break;
        case "dropout":
          if (options.training && s.p > 0) {
            be.dropout(cur, w.out, w.mask!, s.p, hash32(options.seed >>> 0, s.layer));
            cur = w.out;
          } else {
            be.copy(cur, w.out);
            cur = w.out;
          }
          break;
        case "layerNorm":
          be.layerNorm(cur, params[s.gamma]!.param, params[s.beta]!.param, w.out, w.mean!, w.rstd!, s.eps);
          cur = w.out;
          break;
      }
      ran = i + 1;
      if (s.kind === "softmax" && options.logits === true) ran = i;
    }
    ws.ran = ran;
    return cur;
  }

  backward(dOutput: Tensor): void {
    this.#live();
    const rows = dOutput.shape[0]!;
    const ws = this.#work.get(rows);
    if (ws === undefined || ws.input === undefined) {
      throw new KeelError("E_TRAIN_CONFIG", `A backward pass needs a forward pass of ${rows} rows first; call forward() before backward()`);
    }
    const last = this.#steps[ws.ran - 1];
    const outF = last === undefined ? this.#spec.inputFeatures : last.kind === "dense" ? last.outF : last.features;
    if (dOutput.shape.length !== 2 || dOutput.shape[1] !== outF) {
      throw new KeelError("E_TRAIN_SHAPE", `The output gradient must have shape [${rows}, ${outF}]; got [${dOutput.shape.join(", ")}]`);
    }
    const be = this.backend;
    const params = this.params;
    let d = dOutput;
    for (let i = ws.ran - 1; i >= 0; i--) {
      const s = this.#steps[i]!;
      const w = ws.steps[i]!;
      const input = i === 0 ? ws.input : ws.steps[i - 1]!.out;
      const dIn = i === 0 && s.kind !== "layerNorm" ? undefined : w.dIn; // the first step needs no input gradient
      switch (s.kind) {
        case "dense": {
          let dz = d;
          if (s.act !== "none") {
            be.actBackward(s.act, w.pre ?? w.out, w.out, d, w.dz!);
            dz = w.dz!;
          }
          be.matmul(input, dz, params[s.w]!.grad, { transA: true });
          if (s.b !== undefined) be.sumRows(dz, params[s.b]!.grad);
          if (dIn !== undefined) be.matmul(dz, params[s.w]!.param, dIn, { transB: true });
          break;
        }
        case "act":
          if (dIn !== undefined) be.actBackward(s.act, input, w.out, d, dIn);
          break;
        case "softmax":
          throw new KeelError(
            "E_TRAIN_CONFIG",
            `Backward through the final softmax "${this.#spec.layers[s.layer]!.name}" is not supported; run forward with { logits: true } and use the cross-entropy loss`,
          );
        case "dropout":
          if (dIn !== undefined) {
            if (ws.training && s.p > 0) be.mul(d, w.mask!, dIn);
            else be.copy(d, dIn);
          }
          break;
        case "layerNorm": {
          const g = params[s.gamma]!.grad;
          const b = params[s.beta]!.grad;
          be.fill0(g);
          be.fill0(b);
          be.layerNormBackward(input, params[s.gamma]!.param, w.mean!, w.rstd!, d, dIn!, g, b);
          break;
        }
      }
      if (dIn !== undefined) d = dIn;
    }
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const be = this.backend;
    for (const p of this.params) {
      be.dispose(p.param);
      be.dispose(p.grad);
    }
    for (const ws of this.#work.values()) {
      for (const w of ws.steps) {
        for (const t of [w.out, w.pre, w.mask, w.mean, w.rstd, w.dIn, w.dz]) if (t !== undefined) be.dispose(t);
      }
    }
    for (const z of this.#zeros.values()) be.dispose(z);
    this.#work.clear();
    this.#zeros.clear();
    this.#onDispose();
  }
}
