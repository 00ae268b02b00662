/**
 * onnx: exports trained models to ONNX and runs them with `onnxruntime-web` (wasm backend).
 * Training stays Keel's; onnxruntime-web has no training API.
 *
 * - As a library: `exportOnnx(spec, weights, options?)` → ONNX bytes (see `./export.ts` for the
 *   layer mapping) and `createOnnxSession(bytes)` → `{ run(x, rows), close() }`.
 * - As a plugin: provides {@link onnxService} (`{ export, createSession }`) to other plugins, and
 *   with `exportTo` writes the trained model there at `onTrainingEnd` (capability `write:<path>`).
 * @module
 */

import { defineService, definePlugin, errorMessage, KeelError, type Plugin, type ServiceKey } from "../../core/mod.ts";
import { exportOnnx, type ExportOnnxOptions, type OnnxModelSpec, type OnnxWeights } from "./export.ts";
import { createOnnxSession, type OnnxSession, type OnnxSessionOptions } from "./run.ts";

export {
  DEFAULT_OPSET,
  exportOnnx,
  type ExportOnnxOptions,
  type OnnxLayerSpec,
  type OnnxModelSpec,
  type OnnxWeights,
  ONNX_IR_VERSION,
} from "./export.ts";
export { createOnnxSession, type OnnxSession, type OnnxSessionOptions } from "./run.ts";

/** What the onnx plugin offers other plugins. */
export interface OnnxService {
  /** {@link exportOnnx}. */
  export(spec: OnnxModelSpec, weights: OnnxWeights, options?: ExportOnnxOptions): Uint8Array;
  /** {@link createOnnxSession}. */
  createSession(model: Uint8Array, options?: OnnxSessionOptions): Promise<OnnxSession>;
}

/** The service key of the onnx plugin. */
export const onnxService: ServiceKey<OnnxService> = defineService<OnnxService>("onnx");

/** Options for {@link createOnnxPlugin}. */
export interface OnnxPluginOptions {
  /** Write the trained model to this `.onnx` file when training ends. */
  readonly exportTo?: string;
  /** How to export it. */
  readonly export?: ExportOnnxOptions;
}

/**
 * Creates the onnx plugin.
 *
 * @example
 * ```ts ignore
 * const kernel = await createKernel({
 *   runtime,
 *   plugins: [trainer, createOnnxPlugin({ exportTo: "model.onnx" })],
 *   grants: { onnx: ["write:model.onnx"] },
 * });
 * const onnx = kernel.services.get(onnxService);
 * ```
 */
export function createOnnxPlugin(options: OnnxPluginOptions = {}): Plugin {
  const { exportTo } = options;
  if (exportTo !== undefined && (typeof exportTo !== "string" || exportTo === "")) {
    throw new TypeError('ONNX option "exportTo" must be a non-empty path');
  }
  return definePlugin({
    name: "onnx",
    version: "0.1.0",
    kernel: "^1",
    description: "Exports trained models to ONNX and runs them with onnxruntime-web",
    capabilities: exportTo === undefined ? [] : [`write:${exportTo}`],
    setup(plugin) {
      plugin.provide(onnxService, {
        export: (spec, weights, exportOptions) => exportOnnx(spec, weights, exportOptions),
        createSession: (model, sessionOptions) => createOnnxSession(model, sessionOptions),
      });
      if (exportTo === undefined) return;
      return {
        onTrainingEnd: async (ctx) => {
          const bytes = exportOnnx(ctx.model.spec as OnnxModelSpec, await ctx.model.getWeights(), options.export);
          try {
            await plugin.fs.writeFile(exportTo, bytes);
          } catch (e) {
            throw new KeelError("E_ONNX_EXPORT", `Could not write the ONNX model to "${exportTo}" (${errorMessage(e)}); check the path and its grant`, {
              cause: e,
              details: { path: exportTo },
            });
          }
          plugin.logger.info(`Exported the model to "${exportTo}" (${bytes.length} bytes)`, { path: exportTo, bytes: bytes.length });
        },
      };
    },
  });
}

/** The onnx plugin without an automatic export: it provides {@link onnxService}. */
export default createOnnxPlugin();
