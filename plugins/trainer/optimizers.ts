/**
 * Optimizers with PyTorch's semantics: `sgd` (momentum, Nesterov, L2 weight decay), `adam` (L2
 * weight decay added to the gradient) and `adamw` (decoupled weight decay). A definition is
 * backend-free; `bind(backend, params)` allocates its state buffers next to the parameters, and
 * every step runs on the device with nothing read back.
 * @module
 */

import { KeelError } from "../../core/mod.ts";
import type { TrainingOptimizer } from "../../core/mod.ts";
import type { Backend, Tensor } from "./backend.ts";
import type { BoundModel } from "./model.ts";
import { didYouMean } from "./_names.ts";

/** The optimizers there are. */
export type OptimizerName = "sgd" | "adam" | "adamw";

/** An optimizer's settings, ready to bind to a model's parameters on a backend. */
export interface OptimizerDef {
  readonly name: OptimizerName;
  readonly config: Readonly<Record<string, number | boolean>>;
  bind(backend: Backend, params: BoundModel["params"]): BoundOptimizer;
}

/** Optimizer state as checkpoints store it. */
export type OptimizerState = Awaited<ReturnType<TrainingOptimizer["getState"]>>;

/** An optimizer bound to parameters on a backend. */
export interface BoundOptimizer extends TrainingOptimizer {
  /** One step over every param with its grad (optionally clipping the global grad norm first, on the device). */
  step(options?: { clipGradNorm?: number }): void;
  readonly stepCount: number;
  /** The learning rate the next step uses. */
  readonly learningRate: number;
  /** Sets the learning rate for later steps (schedules). */
  setLearningRate(lr: number): void;
  /** [1] f32: the global gradient norm before clipping, written by the last clipped step. */
  readonly gradNorm: Tensor | undefined;
  /**
   * Buffers named `${param}.m` / `${param}.v` (adam, adamw) or `${param}.velocity` (sgd with
   * momentum), the step count and the config (with the current lr).
   */
  getState(): Promise<OptimizerState>;
  /**
   * Restores a state from {@link getState}; the learning rate comes back too.
   * @throws E_TRAIN_CHECKPOINT naming a missing, unknown or mis-shaped buffer
   */
  setState(state: OptimizerState): void;
  dispose(): void;
}

function checkLr(lr: unknown): number {
  if (typeof lr !== "number" || !(lr > 0) || !Number.isFinite(lr)) throw new RangeError(`Learning rate must be a finite number > 0, got ${String(lr)}`);
  return lr;
}

function checkBeta(name: string, b: unknown): number {
  if (typeof b !== "number" || !(b >= 0 && b < 1)) throw new RangeError(`Option "${name}" must be in [0, 1), got ${String(b)}`);
  return b;
}

function checkNonNegative(name: string, v: unknown): number {
  if (typeof v !== "number" || !(v >= 0) || !Number.isFinite(v)) throw new RangeError(`Option "${name}" must be a finite number ≥ 0, got ${String(v)}`);
  return v;
}

/** Options of {@link sgd}. */
export interface SgdOptions {
  readonly lr?: number;
  readonly momentum?: number;
  readonly weightDecay?: number;
  readonly nesterov?: boolean;
}

/**
 * Stochastic gradient descent as `torch.optim.SGD` (dampening 0): lr 0.01, momentum 0,
 * weightDecay 0 (L2, added to the gradient), nesterov false (needs momentum > 0).
 * @throws RangeError for a bad option
 */
export function sgd(options: SgdOptions = {}): OptimizerDef {
  const lr = checkLr(options.lr ?? 0.01);
  const momentum = checkNonNegative("momentum", options.momentum ?? 0);
  const weightDecay = checkNonNegative("weightDecay", options.weightDecay ?? 0);
  const nesterov = options.nesterov ?? false;
  if (typeof nesterov !== "boolean") throw new RangeError(`Option "nesterov" must be a boolean, got ${String(nesterov)}`);
  if (nesterov && momentum === 0) throw new RangeError("Nesterov momentum needs momentum > 0");
  const config = Object.freeze({ lr, momentum, weightDecay, nesterov });
  return Object.freeze({
    name: "sgd" as const,
    config,
    bind: (backend: Backend, params: BoundModel["params"]): BoundOptimizer =>
      new Bound("sgd", config, backend, params, momentum === 0 ? [] : ["velocity"], (o, p, bufs) => {
        backend.sgd(p.param, p.grad, bufs[0] ?? p.grad, { lr: o.lr, momentum, weightDecay, nesterov });
      }),
  });
}

/** Options of {@link adam} and {@link adamw}. */
export interface AdamOptions {
  readonly lr?: number;
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  readonly weightDecay?: number;
}

function adamDef(name: "adam" | "adamw", options: AdamOptions, defaultDecay: number): OptimizerDef {
  const lr = checkLr(options.lr ?? 1e-3);
  const beta1 = checkBeta("beta1", options.beta1 ?? 0.9);
  const beta2 = checkBeta("beta2", options.beta2 ?? 0.999);
  const eps = options.eps ?? 1e-8;
  if (typeof eps !== "number" || !(eps > 0) || !Number.isFinite(eps)) throw new RangeError(`Option "eps" must be a finite number > 0, got ${String(eps)}`);
  const weightDecay = checkNonNegative("weightDecay", options.weightDecay ?? defaultDecay);
  const config = Object.freeze({ lr, beta1, beta2, eps, weightDecay });
  const decoupled = name === "adamw";
  return Object.freeze({
    name,
    config,
    bind: (backend: Backend, params: BoundModel["params"]): BoundOptimizer =>
      new Bound(name, config, backend, params, ["m", "v"], (o, p, bufs) => {
        backend.adam(p.param, p.grad, bufs[0]!, bufs[1]!, { lr: o.lr, beta1, beta2, eps, weightDecay, decoupled, step: o.stepCount });
      }),
  });
}

/**
 * Adam as `torch.optim.Adam`: lr 1e-3, betas 0.9 / 0.999, eps 1e-8, weightDecay 0 (L2, added
 * to the gradient).
 * @throws RangeError for a bad option
 */
export function adam(options: AdamOptions = {}): OptimizerDef {
  return adamDef("adam", options, 0);
}

/**
 * AdamW as `torch.optim.AdamW`: Adam with decoupled weight decay (p -= lr·wd·p), default 0.01.
 * @throws RangeError for a bad option
 */
export function adamw(options: AdamOptions = {}): OptimizerDef {
  return adamDef("adamw", options, 0.01);
}

const OPTIMIZERS = { sgd, adam, adamw } as const;

/**
 * An optimizer by name ("sgd", "adam", "adamw"), or a definition as is; `lr`, when given,
 * replaces its learning rate.
 * @throws E_TRAIN_CONFIG for an unknown name, with a suggestion
 */
export function optimizerFrom(nameOrDef: string | OptimizerDef, lr?: number): OptimizerDef {
  if (typeof nameOrDef === "string") {
    const make = Object.hasOwn(OPTIMIZERS, nameOrDef) ? OPTIMIZERS[nameOrDef as OptimizerName] : undefined;
    if (make === undefined) {
      const names = Object.keys(OPTIMIZERS);
      throw new KeelError(
        "E_TRAIN_CONFIG",
        `Unknown optimizer "${nameOrDef}"${didYouMean(nameOrDef, names)}; use one of ${names.map((n) => `"${n}"`).join(", ")}`,
      );
    }
    return make(lr === undefined ? {} : { lr });
  }
  if (typeof nameOrDef !== "object" || nameOrDef === null || !Object.hasOwn(OPTIMIZERS, nameOrDef.name)) {
    throw new KeelError("E_TRAIN_CONFIG", `An optimizer must be "sgd", "adam", "adamw" or made by sgd() / adam() / adamw()`);
  }
  if (lr === undefined) return nameOrDef;
  return (OPTIMIZERS[nameOrDef.name] as (o: Record<string, unknown>) => OptimizerDef)({ ...nameOrDef.config, lr });
}

type StepFn = (o: Bound, p: BoundModel["params"][number], buffers: readonly Tensor[]) => void;

class Bound implements BoundOptimizer {
  readonly name: OptimizerName;
  readonly #config: Readonly<Record<string, number | boolean>>;
  readonly #backend: Backend;
  readonly #params: BoundModel["params"];
  readonly #bufferNames: readonly string[];
  readonly #buffers: Tensor[][];
  readonly #step: StepFn;
  #lr: number;
  #count = 0;
  #norm: Tensor | undefined;
  #disposed = false;

  constructor(
    name: OptimizerName, config: Readonly<Record<string, number | boolean>>, backend: Backend,
    params: BoundModel["params"], bufferNames: readonly string[], step: StepFn,
  ) {
    this.name = name;
    this.#config = config;
    this.#backend = backend;
    this.#params = params;
    this.#bufferNames = bufferNames;
    this.#buffers = params.map((p) => bufferNames.map(() => backend.zeros(p.param.shape)));
    this.#step = step;
    this.#lr = config.lr as number;
  }

  get stepCount(): number {
    return this.#count;
  }
  get lr(): number {
    return this.#lr;
  }
  get learningRate(): number {
    return this.#lr;
  }
  get gradNorm(): Tensor | undefined {
    return this.#norm;
  }

  setLearningRate(lr: number): void {
    this.#lr = checkLr(lr);
  }

  step(options: { clipGradNorm?: number } = {}): void {
    if (this.#disposed) throw new KeelError("E_TRAIN_CONFIG", "This optimizer was disposed; bind it again");
    const clip = options.clipGradNorm;
    if (clip !== undefined) {
      if (!(clip > 0) || !Number.isFinite(clip)) throw new RangeError(`Option "clipGradNorm" must be a finite number > 0, got ${clip}`);
      this.#norm ??= this.#backend.zeros([1]);
      this.#backend.clipGradNorm(this.#params.map((p) => p.grad), clip, this.#norm);
    }
    this.#count++;
    this.#params.forEach((p, i) => this.#step(this, p, this.#buffers[i]!));
  }

  async getState(): Promise<OptimizerState> {
    const buffers: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
    for (let i = 0; i < this.#params.length; i++) {
      const p = this.#params[i]!;
      for (let j = 0; j < this.#bufferNames.length; j++) {
        const data = await this.#backend.read(this.#buffers[i]![j]!);
        buffers[`${p.name}.${this.#bufferNames[j]}`] = { shape: [...p.param.shape], data: Float32Array.from(data) };
      }
    }
    return { config: { ...this.#config, lr: this.#lr }, step: this.#count, buffers };
  }

  setState(state: OptimizerState): void {
    if (typeof state !== "object" || state === null || typeof state.buffers !== "object" || state.buffers === null) {
      throw new KeelError("E_TRAIN_CHECKPOINT", "Optimizer state must have config, step and buffers; the checkpoint is corrupt");
    }
    const step = state.step;
    if (!Number.isInteger(step) || step < 0) throw new KeelError("E_TRAIN_CHECKPOINT", `Optimizer state has step ${String(step)}; expected an integer ≥ 0`);
    const expected = new Map<string, [number, number]>();
    this.#params.forEach((p, i) => this.#bufferNames.forEach((b, j) => expected.set(`${p.name}.${b}`, [i, j])));
    for (const name of Object.keys(state.buffers)) {
      if (!expected.has(name)) {
        throw new KeelError("E_TRAIN_CHECKPOINT", `Optimizer buffer "${name}" does not belong to this ${this.name} optimizer and model; resume with the same model and optimizer`, { details: { name } });
      }
    }
    const writes: [Tensor, Float32Array][] = [];
    for (const [name, [i, j]] of expected) {
      const buf = state.buffers[name];
      const shape = this.#params[i]!.param.shape;
      if (buf === undefined) throw new KeelError("E_TRAIN_CHECKPOINT", `Optimizer buffer "${name}" is missing; resume with the same model and optimizer`, { details: { name } });
      const size = shape.reduce((a, b) => a * b, 1);
      const sameShape = Array.isArray(buf.shape) && buf.shape.length === shape.length && buf.shape.every((d, k) => d === shape[k]);
      if (!sameShape || !(buf.data instanceof Float32Array) || buf.data.length !== size) {
        throw new KeelError(
          "E_TRAIN_CHECKPOINT",
          `Optimizer buffer "${name}" has shape [${String(buf.shape)}] but the parameter is [${shape.join(", ")}]; resume with the same model and optimizer`,
          { details: { name } },
        );
      }
      writes.push([this.#buffers[i]![j]!, buf.data]);
    }
    const lr = state.config?.lr;
    if (lr !== undefined) this.#lr = checkLr(lr);
    for (const [t, d] of writes) this.#backend.write(t, d);
    this.#count = step;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const bufs of this.#buffers) for (const t of bufs) this.#backend.dispose(t);
    if (this.#norm !== undefined) this.#backend.dispose(this.#norm);
  }
}
