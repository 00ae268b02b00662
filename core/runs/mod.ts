/**
 * Script runs, sweeps and flows: KohakuEngine's model in TypeScript. A script is a module whose
 * exported `params` are its defaults and whose default export (or `main`, or `run`) is called
 * with the resolved params and a {@link RunContext}:
 *
 * ```ts ignore
 * // train.ts
 * export const params = { lr: 0.001, epochs: 10 };
 * export default async function main(p: typeof params, ctx: RunContext) {
 *   return { loss: 0.1 };
 * }
 * ```
 *
 * Run it with {@link run}, sweep it with {@link sweep} or {@link runMany} (in-process, in Web
 * Workers or in subprocesses; results in input order), chain scripts with {@link Sequential}
 * and {@link Parallel}. With a runtime, every run is recorded under `.keel/runs/<id>/`
 * ({@link createRunStore}); without one (an edge host) runs are in-process and unrecorded.
 * @module
 */

export { captureConsole, formatArgs, type OutputSink, type OutputStream } from "./capture.ts";
export {
  createInProcessRunner,
  createProcessRunner,
  createWorkerRunner,
  type OutputEvent,
  parseScriptRef,
  type RunFailure,
  type RunHooks,
  runMany,
  type RunManyOptions,
  type RunnerIo,
  type RunOptions,
  type RunResult,
  runScript,
  type RunScriptOptions,
  type RunSuccess,
  type ScriptRunner,
  type SweepProgress,
} from "./engine.ts";
export {
  Flow,
  type FlowOptions,
  type FlowResult,
  type FlowStep,
  Parallel,
  run,
  Script,
  type ScriptOptions,
  Sequential,
  type StepResult,
  sweep,
  type SweepOptions,
} from "./flow.ts";
export { createRunId, RUN_ID_PATTERN } from "./ids.ts";
export {
  type ConfigSnapshot,
  createRunStore,
  type IsolateMode,
  type LogWriter,
  type RunDetails,
  type RunRecord,
  type RunStatus,
  type RunStore,
  type RunStoreOptions,
} from "./records.ts";
export { checkResult } from "./result.ts";
export {
  ENTRYPOINT_NAMES,
  type ImportStyle,
  importStyleFor,
  pickEntrypoint,
  type ResolvedCall,
  resolveParams,
  type RunContext,
  type ScriptCall,
  type ScriptEntrypoint,
} from "./script.ts";
