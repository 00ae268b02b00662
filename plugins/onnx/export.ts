/**
 * Exports a trained sequential model (the trainer's `ModelSpec` plus its named weights) to an
 * ONNX `ModelProto`, encoded by hand (no protobuf library): IR version 8, default opset 17.
 *
 * | layer | ONNX |
 * |---|---|
 * | dense with bias | `Gemm(x, W, b)` (W is `[in, out]`, so no transpose) |
 * | dense without bias | `MatMul(x, W)` |
 * | relu, tanh, sigmoid | `Relu`, `Tanh`, `Sigmoid` |
 * | softmax | `Softmax(axis = -1)` |
 * | gelu (tanh approximation) | opset < 20: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` as `Pow`, `Mul`, `Add`, `Tanh` nodes; opset ≥ 20: `Gelu(approximate = "tanh")` |
 * | dropout | nothing (inference) |
 * | layerNorm | `LayerNormalization(x, gamma, beta, axis = -1, epsilon)` |
 *
 * Opset 17 is the default because it is the first with `LayerNormalization` and what most
 * runtimes accept; the explicit GELU formula is the same function `Gelu(approximate="tanh")`
 * computes, so nothing is lost. Weights go into initializers as little-endian `raw_data`.
 * @module
 */

import { KeelError } from "../../core/mod.ts";
import { ProtoWriter } from "./_proto.ts";

/**
 * One layer of a sequential model; the same shape as the trainer's `LayerSpec`
 * (`plugins/trainer/model-spec.ts`), repeated here because plugins import only `core/`.
 */
export type OnnxLayerSpec =
  | { readonly type: "dense"; readonly name: string; readonly inFeatures: number; readonly outFeatures: number; readonly bias: boolean }
  | { readonly type: "activation"; readonly name: string; readonly activation: "relu" | "gelu" | "tanh" | "sigmoid" | "softmax" }
  | { readonly type: "dropout"; readonly name: string; readonly p: number }
  | { readonly type: "layerNorm"; readonly name: string; readonly features: number; readonly eps: number };

/** A sequential model, as the trainer's `ModelSpec`. */
export interface OnnxModelSpec {
  readonly format: "keel-sequential/1";
  readonly inputFeatures: number;
  readonly outputFeatures: number;
  readonly layers: readonly OnnxLayerSpec[];
}

/**
 * Weights by name, as the trainer's `NamedWeights`: `<layer>.weight` (`[in, out]`) and
 * `<layer>.bias` (`[out]`) for dense layers, `<layer>.gamma` and `<layer>.beta` for layer norm.
 */
export interface OnnxWeights {
  readonly [name: string]: { readonly shape: readonly number[]; readonly data: Float32Array };
}

/** Options for {@link exportOnnx}. */
export interface ExportOnnxOptions {
  /** The default opset's version: 17 (the default) to 23. */
  readonly opset?: number;
  /** `producer_name`. Default "keel". */
  readonly producer?: string;
  /** The graph input's name. Default "input". */
  readonly inputName?: string;
  /** The graph output's name. Default "output". */
  readonly outputName?: string;
  /** The batch dimension: "dynamic" (a symbolic dimension "N", the default) or a fixed size. */
  readonly batch?: "dynamic" | number;
}

/** ONNX `TensorProto.DataType.FLOAT`. */
const FLOAT = 1;
/** ONNX `AttributeProto.AttributeType`. */
const ATTR = { float: 1, int: 2, string: 3 } as const;
/** The IR version written; opsets 17 to 23 are all allowed with it by onnxruntime. */
export const ONNX_IR_VERSION = 8;
/** The opset written unless another is asked for. */
export const DEFAULT_OPSET = 17;

type Attribute = { name: string; float: number } | { name: string; int: number } | { name: string; string: string };

interface Node {
  readonly op: string;
  readonly name: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes?: readonly Attribute[];
}

interface Initializer {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

function exportError(message: string, details: Record<string, unknown> = {}): KeelError {
  return new KeelError("E_ONNX_EXPORT", message, { details });
}

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0;
}

function attributeProto(a: Attribute): ProtoWriter {
  const w = new ProtoWriter().string(1, a.name);
  if ("float" in a) w.float(2, a.float).int(20, ATTR.float);
  else if ("int" in a) w.int(3, BigInt.asUintN(64, BigInt(a.int))).int(20, ATTR.int);
  else w.string(4, a.string).int(20, ATTR.string);
  return w;
}

function nodeProto(n: Node): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name).string(4, n.op);
  for (const a of n.attributes ?? []) w.message(5, attributeProto(a));
  return w;
}

function tensorProto(t: Initializer): ProtoWriter {
  const w = new ProtoWriter();
  for (const d of t.shape) w.int(1, d);
  w.int(2, FLOAT).string(8, t.name);
  const raw = new Uint8Array(t.data.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < t.data.length; i++) view.setFloat32(i * 4, t.data[i]!, true);
  return w.bytes(9, raw);
}

function valueInfo(name: string, batch: "dynamic" | number, features: number): ProtoWriter {
  const shape = new ProtoWriter()
    .message(1, batch === "dynamic" ? new ProtoWriter().string(2, "N") : new ProtoWriter().int(1, batch))
    .message(1, new ProtoWriter().int(1, features));
  const tensorType = new ProtoWriter().int(1, FLOAT).message(2, shape);
  return new ProtoWriter().string(1, name).message(2, new ProtoWriter().message(1, tensorType));
}

/**
 * Builds the ONNX model for `spec` with `weights`.
 * @throws {KeelError} `E_ONNX_EXPORT` for a malformed spec, an unknown layer or activation, a
 * missing weight, or a weight or layer whose shape does not fit.
 * @throws {RangeError} for an opset outside 17–23 or a bad batch size.
 */
export function exportOnnx(spec: OnnxModelSpec, weights: OnnxWeights, options: ExportOnnxOptions = {}): Uint8Array {
  const opset = options.opset ?? DEFAULT_OPSET;
  if (!Number.isInteger(opset) || opset < 17 || opset > 23) {
    throw new RangeError(`ONNX opset ${String(opset)} is not supported: use 17 to 23 (LayerNormalization needs 17)`);
  }
  const batch = options.batch ?? "dynamic";
  if (batch !== "dynamic" && !isCount(batch)) throw new RangeError(`ONNX option "batch" must be "dynamic" or a positive integer, got ${String(batch)}`);
  const inputName = options.inputName ?? "input";
  const outputName = options.outputName ?? "output";
  if (inputName === "" || outputName === "" || inputName === outputName) {
    throw new RangeError("ONNX input and output names must be non-empty and differ");
  }
  if (typeof spec !== "object" || spec === null || spec.format !== "keel-sequential/1" || !Array.isArray(spec.layers)) {
    throw exportError('The model spec is not a "keel-sequential/1" spec; pass the trainer\'s model.spec');
  }
  if (!isCount(spec.inputFeatures) || !isCount(spec.outputFeatures)) {
    throw exportError("The model spec's inputFeatures and outputFeatures must be positive integers");
  }

  const nodes: Node[] = [];
  const initializers: Initializer[] = [];
  const constants = new Map<number, string>();
  const used = new Set<string>();
  let current = inputName;
  let features = spec.inputFeatures;

  const weight = (layer: string, param: string, shape: readonly number[]): string => {
    const name = `${layer}.${param}`;
    const w = Object.hasOwn(weights, name) ? weights[name] : undefined;
    if (!w) throw exportError(`Weight "${name}" is missing; export with the weights of the model the spec describes`, { weight: name });
    if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i])) {
      throw exportError(`Weight "${name}" has shape [${w.shape.join(", ")}], layer "${layer}" needs [${shape.join(", ")}]`, { weight: name });
    }
    if (!(w.data instanceof Float32Array) || w.data.length !== shape.reduce((a, b) => a * b, 1)) {
      throw exportError(`Weight "${name}" holds ${w.data?.length ?? "no"} values, shape [${shape.join(", ")}] needs ${shape.reduce((a, b) => a * b, 1)}`, { weight: name });
    }
    if (!used.has(name)) {
      used.add(name);
      initializers.push({ name, shape: [...shape], data: w.data });
    }
    return name;
  };
  const constant = (value: number): string => {
    let name = constants.get(value);
    if (!name) {
      name = `const_${constants.size}`;
      constants.set(value, name);
      initializers.push({ name, shape: [], data: new Float32Array([value]) });
    }
    return name;
  };
  const emit = (op: string, name: string, inputs: string[], attributes?: Attribute[]): void => {
    const out = `${name}:out`;
    nodes.push({ op, name, inputs, outputs: [out], ...(attributes ? { attributes } : {}) });
    current = out;
  };

  const names = new Set<string>();
  for (const [index, layer] of spec.layers.entries()) {
    if (typeof layer !== "object" || layer === null || typeof layer.name !== "string" || layer.name === "") {
      throw exportError(`Layer ${index} of the model spec has no name`, { layer: index });
    }
    if (names.has(layer.name)) throw exportError(`Two layers are named "${layer.name}"; layer names must be unique`, { layer: layer.name });
    names.add(layer.name);
    const type = (layer as { type?: unknown }).type;
    switch (layer.type) {
      case "dense": {
        if (!isCount(layer.inFeatures) || !isCount(layer.outFeatures)) throw exportError(`Dense layer "${layer.name}" needs positive inFeatures and outFeatures`, { layer: layer.name });
        if (layer.inFeatures !== features) {
          throw exportError(`Dense layer "${layer.name}" takes ${layer.inFeatures} features but gets ${features} from the layer before it`, { layer: layer.name });
        }
        const w = weight(layer.name, "weight", [layer.inFeatures, layer.outFeatures]);
        if (layer.bias) emit("Gemm", layer.name, [current, w, weight(layer.name, "bias", [layer.outFeatures])]);
        else emit("MatMul", layer.name, [current, w]);
        features = layer.outFeatures;
        break;
      }
      case "activation": {
        const act = layer.activation;
        if (act === "relu") emit("Relu", layer.name, [current]);
        else if (act === "tanh") emit("Tanh", layer.name, [current]);
        else if (act === "sigmoid") emit("Sigmoid", layer.name, [current]);
        else if (act === "softmax") emit("Softmax", layer.name, [current], [{ name: "axis", int: -1 }]);
        else if (act === "gelu" && opset >= 20) emit("Gelu", layer.name, [current], [{ name: "approximate", string: "tanh" }]);
        else if (act === "gelu") {
          const x = current;
          const n = layer.name;
          emit("Pow", `${n}/cube`, [x, constant(3)]);
          emit("Mul", `${n}/scale_cube`, [current, constant(0.044715)]);
          emit("Add", `${n}/inner`, [x, current]);
          emit("Mul", `${n}/scale_inner`, [current, constant(Math.sqrt(2 / Math.PI))]);
          emit("Tanh", `${n}/tanh`, [current]);
          emit("Add", `${n}/one_plus`, [current, constant(1)]);
          emit("Mul", `${n}/times_x`, [x, current]);
          emit("Mul", n, [current, constant(0.5)]);
        } else {
          throw exportError(`Layer "${layer.name}" has activation ${JSON.stringify(act)}, which ONNX export does not know; use relu, gelu, tanh, sigmoid or softmax`, { layer: layer.name });
        }
        break;
      }
      case "dropout":
        break; // Inference: dropout is the identity.
      case "layerNorm": {
        if (layer.features !== features) {
          throw exportError(`Layer norm "${layer.name}" normalizes ${layer.features} features but gets ${features}`, { layer: layer.name });
        }
        if (typeof layer.eps !== "number" || !(layer.eps > 0)) throw exportError(`Layer norm "${layer.name}" needs a positive eps`, { layer: layer.name });
        emit("LayerNormalization", layer.name, [current, weight(layer.name, "gamma", [features]), weight(layer.name, "beta", [features])], [
          { name: "axis", int: -1 },
          { name: "epsilon", float: layer.eps },
        ]);
        break;
      }
      default:
        throw exportError(`Layer "${layer.name}" has type ${JSON.stringify(type)}, which ONNX export does not know`, { layer: layer.name });
    }
  }
  if (features !== spec.outputFeatures) {
    throw exportError(`The layers end with ${features} features but the spec says outputFeatures is ${spec.outputFeatures}`);
  }
  // The last node writes the graph output; a model of only dropout layers is one Identity.
  const last = nodes.pop();
  nodes.push(last ? { ...last, outputs: [outputName] } : { op: "Identity", name: "identity", inputs: [inputName], outputs: [outputName] });

  const graph = new ProtoWriter();
  for (const n of nodes) graph.message(1, nodeProto(n));
  graph.string(2, "keel-sequential");
  for (const t of initializers) graph.message(5, tensorProto(t));
  graph.message(11, valueInfo(inputName, batch, spec.inputFeatures));
  graph.message(12, valueInfo(outputName, batch, spec.outputFeatures));

  return new ProtoWriter()
    .int(1, ONNX_IR_VERSION)
    .string(2, options.producer ?? "keel")
    .string(3, "0.1.0")
    .message(7, graph)
    .message(8, new ProtoWriter().int(2, opset))
    .finish();
}
