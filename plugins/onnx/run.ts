/**
 * Runs an ONNX model with `onnxruntime-web`'s WebAssembly backend (one thread: the same in Deno,
 * Bun and Node, with no worker or SharedArrayBuffer needed).
 *
 * The package finds its `.wasm` next to its own module in `node_modules/onnxruntime-web/dist/`
 * under Deno (with `nodeModulesDir`) and Bun alike, so no `wasmPaths` is set unless the caller
 * passes one (a bundled or edge deployment serving the files elsewhere).
 * @module
 */

import * as ort from "onnxruntime-web";
import { KeelError } from "../../core/mod.ts";

/** A loaded model. */
export interface OnnxSession {
  /** The graph's input and output names. */
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /**
   * Runs the model on `rows` rows of `x` (row-major `[rows, x.length / rows]`) and returns the
   * first output, row-major.
   * @throws {KeelError} `E_ONNX_RUN` when the shapes do not fit the model or the run fails.
   */
  run(x: Float32Array, rows: number): Promise<Float32Array>;
  /** Frees the session; `run` afterwards throws `E_ONNX_RUN`. */
  close(): Promise<void>;
}

/** Options for {@link createOnnxSession}. */
export interface OnnxSessionOptions {
  /** Where onnxruntime-web's `.wasm` files are (a URL prefix or directory), when not next to its module. */
  readonly wasmPaths?: string;
}

function runError(message: string, cause?: unknown): KeelError {
  return new KeelError("E_ONNX_RUN", message, cause === undefined ? {} : { cause });
}

function reason(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Loads `model` (ONNX bytes) into an onnxruntime-web session on the wasm backend.
 * @throws {KeelError} `E_ONNX_RUN` when onnxruntime-web cannot load the model.
 */
export async function createOnnxSession(model: Uint8Array, options: OnnxSessionOptions = {}): Promise<OnnxSession> {
  if (!(model instanceof Uint8Array) || model.length === 0) throw new TypeError("createOnnxSession() takes the model's bytes as a non-empty Uint8Array");
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  if (options.wasmPaths !== undefined) ort.env.wasm.wasmPaths = options.wasmPaths;
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  } catch (e) {
    throw runError(`The model could not be loaded by onnxruntime-web (${reason(e)}); check that it is a valid ONNX file with opset 17 or later`, e);
  }
  let closed = false;
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  return {
    inputNames: [...session.inputNames],
    outputNames: [...session.outputNames],
    async run(x, rows) {
      if (closed) throw runError("The ONNX session was closed; create a new one with createOnnxSession()");
      if (!(x instanceof Float32Array)) throw new TypeError("run() takes a Float32Array");
      if (!Number.isInteger(rows) || rows < 1 || x.length % rows !== 0) {
        throw runError(`Cannot split ${x.length} values into ${rows} rows; pass x as [rows, features] row-major`);
      }
      if (inputName === undefined || outputName === undefined) throw runError("The ONNX model has no input or no output");
      let out: ort.InferenceSession.OnnxValueMapType;
      try {
        out = await session.run({ [inputName]: new ort.Tensor("float32", x, [rows, x.length / rows]) });
      } catch (e) {
        throw runError(`The model could not be run by onnxruntime-web (${reason(e)}); check that each row has the model's input features`, e);
      }
      const result = out[outputName];
      if (!result || !(result.data instanceof Float32Array)) throw runError(`The ONNX model's output "${outputName}" is not a float32 tensor`);
      const data = result.data.slice();
      for (const t of Object.values(out)) t.dispose();
      return data;
    },
    async close() {
      if (closed) return;
      closed = true;
      await session.release();
    },
  };
}
