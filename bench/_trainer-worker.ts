/**
 * One configuration of the trainer benchmark in its own process, so each has its own peak RSS and
 * a crash costs only its row: `deno run --allow-all bench/_trainer-worker.ts <mode> '<settings json>'`.
 * Prints one line, {@link RESULT_MARKER} + JSON ({@link WorkerResult}), then exits.
 * @module
 */

import { type BenchSettings, type Mode, MODES, RESULT_MARKER, type WorkerResult } from "./_trainer-common.ts";

const [modeArg, settingsArg] = Deno.args;
if (!MODES.includes(modeArg as Mode) || settingsArg === undefined) {
  console.error(`Usage: _trainer-worker.ts <${MODES.join("|")}> '<settings json>'`);
  Deno.exit(2);
}
const mode = modeArg as Mode;
const settings = JSON.parse(settingsArg) as BenchSettings;

let result: WorkerResult;
if (mode === "keel-webgpu" || mode === "keel-cpu") {
  const { runKeelTraining } = await import("./_trainer-keel.ts");
  result = await runKeelTraining(mode, settings);
} else if (mode === "mm-keel-webgpu" || mode === "mm-keel-cpu") {
  const { runKeelMatmul } = await import("./_trainer-keel.ts");
  result = await runKeelMatmul(mode, settings);
} else if (mode.startsWith("mm-")) {
  const { runTfjsMatmul } = await import("./_trainer-tfjs.ts");
  result = await runTfjsMatmul(mode, settings);
} else {
  const { runTfjsTraining } = await import("./_trainer-tfjs.ts");
  result = await runTfjsTraining(mode, settings);
}
console.log(RESULT_MARKER + JSON.stringify(result));
// TF.js and WebGPU keep handles open; the result is out, so leave now.
Deno.exit(0);
