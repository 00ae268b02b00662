/**
 * The WebAssembly SIMD matmul of the CPU backend. C = A · B over packed panels: A in panels of
 * MR = 4 rows ([k][4] per panel), B in panels of NR = 8 columns ([k][8] per panel), C padded to
 * multiples of 4 × 8, so the micro-kernel never sees an edge. Its 4 × 8 register block keeps 8
 * f32x4 accumulators, 2 vectors of B and a broadcast of A in registers (11 of x86-64's 16 xmm),
 * and per k step does 2 loads, 4 broadcast loads and 8 mul + 8 add for 64 flops.
 *
 * JS packs the operands straight into wasm memory (transposes are free there: the packing reads
 * with the right strides), calls `gemm` once per k block of {@link KC}, and copies (or adds) the
 * unpadded block of C back. With threads, the memory is a shared one and worker threads (started
 * running {@link WORKER_SOURCE}) take slices of the column panels; each panel is computed the same
 * way whichever thread runs it, so results are bit-identical for any thread count.
 *
 * {@link GEMM_WAT} is the source; {@link GEMM_WASM_BASE64} its bytes, assembled by `_wasm.ts`
 * (a test checks they agree).
 * @module
 */

import { fromBase64 } from "./_wasm.ts";

/** Rows of A per micro-tile. */
export const MR = 4;
/** Columns of B per micro-tile. */
export const NR = 8;

const ROWS = [0, 1, 2, 3] as const;

/** Depth of one k block: a B micro-panel slice (KC·NR·4 = 8 KiB) stays in L1. */
export const KC = 256;
/** Rows of one A block: its packed slice (MC·KC·4 = 128 KiB) stays in L2. */
export const MC = 128;

const ACC = [0, 1, 2, 3, 4, 5, 6, 7] as const;

/** Emits `body`, then `local += step; br loop` inside `block $done loop $loop`, leaving when local >= limit. */
function forLoop(local: string, from: string, limit: string, step: string, body: string): string {
  return `${from}
local.set $${local}
block $${local}_done
loop $${local}_loop
local.get $${local}
${limit}
i32.ge_u
br_if $${local}_done
${body}
local.get $${local}
${step}
i32.add
local.set $${local}
br $${local}_loop
end
end`;
}

/**
 * The kernel module in flat WAT (what `_wasm.ts` assembles): with its own memory, or (`shared`)
 * importing a shared memory that worker threads use too. `gemm` computes the column panels
 * [jb0, jb1) of C, so threads split the columns.
 */
function gemmWat(shared: boolean): string {
  return `(module
${shared ? `(import "env" "memory" (memory 1 ${MAX_PAGES} shared))` : '(memory (export "memory") 1)'}
;; C[mp, np] = Ap · Bp, Ap packed in panels of ${MR} rows ([k][${MR}] each), Bp in panels of ${NR}
;; columns ([k][${NR}] each); mp, np multiples of ${MR}, ${NR}; k >= 1. One call adds the k block
;; [p0, p0 + ${KC}) (the first block overwrites C). Loops: row blocks of ${MC} (ic) → column
;; panels (jb) → row panels (ib) → k inside the block. The caller loops over k blocks, so the
;; engines see many short calls and can swap in optimised code between them.
(func (export "gemm") (param $ap i32) (param $bp i32) (param $c i32) (param $mp i32) (param $np i32) (param $k i32) (param $jb0 i32) (param $jb1 i32) (param $p0 i32)
(local $kk i32)
(local $ic i32)
(local $icEnd i32)
(local $jb i32)
(local $ib i32)
(local $pa i32)
(local $pb i32)
(local $end i32)
(local $crow i32)
(local $ctile i32)
(local $stride i32)
(local $a v128)
(local $b0 v128)
(local $b1 v128)
${ACC.map((i) => `(local $c${i} v128)`).join("\n")}
;; stride of a C row in bytes
local.get $np
i32.const 2
i32.shl
local.set $stride
;; kk = min(${KC}, k - p0)
local.get $k
local.get $p0
i32.sub
local.tee $kk
i32.const ${KC}
i32.ge_u
if
i32.const ${KC}
local.set $kk
end
${forLoop("ic", "i32.const 0", "local.get $mp", `i32.const ${MC}`, `;; icEnd = min(ic + ${MC}, mp)
local.get $ic
i32.const ${MC}
i32.add
local.tee $icEnd
local.get $mp
i32.ge_u
if
local.get $mp
local.set $icEnd
end
${forLoop("jb", "local.get $jb0", "local.get $jb1", `i32.const ${NR}`, forLoop("ib", "local.get $ic", "local.get $icEnd", `i32.const ${MR}`, `;; pa = ap + (ib·k + p0·${MR})·4; end = pa + kk·${MR * 4}
local.get $ap
local.get $ib
local.get $k
i32.mul
local.get $p0
i32.const ${MR}
i32.mul
i32.add
i32.const 2
i32.shl
i32.add
local.tee $pa
local.get $kk
i32.const ${MR * 4}
i32.mul
i32.add
local.set $end
;; pb = bp + (jb·k + p0·${NR})·4
local.get $bp
local.get $jb
local.get $k
i32.mul
local.get $p0
i32.const ${NR}
i32.mul
i32.add
i32.const 2
i32.shl
i32.add
local.set $pb
;; ctile = c + (ib·np + jb)·4
local.get $c
local.get $ib
local.get $np
i32.mul
local.get $jb
i32.add
i32.const 2
i32.shl
i32.add
local.tee $ctile
local.set $crow
;; the first k block starts from 0, later ones from what C holds
local.get $p0
i32.eqz
if
v128.const i32x4 0 0 0 0
${[0, 1, 2, 3, 4, 5, 6].map((i) => `local.tee $c${i}`).join("\n")}
local.set $c7
else
${ROWS.map((r) => `local.get $crow
v128.load
local.set $c${2 * r}
local.get $crow
v128.load offset=16
local.set $c${2 * r + 1}
local.get $crow
local.get $stride
i32.add
local.set $crow`).join("\n")}
end
loop $kloop
local.get $pb
v128.load
local.set $b0
local.get $pb
v128.load offset=16
local.set $b1
${ROWS.map((r) => `local.get $pa
v128.load32_splat offset=${4 * r}
local.tee $a
local.get $b0
f32x4.mul
local.get $c${2 * r}
f32x4.add
local.set $c${2 * r}
local.get $a
local.get $b1
f32x4.mul
local.get $c${2 * r + 1}
f32x4.add
local.set $c${2 * r + 1}`).join("\n")}
local.get $pb
i32.const ${NR * 4}
i32.add
local.set $pb
local.get $pa
i32.const ${MR * 4}
i32.add
local.tee $pa
local.get $end
i32.ne
br_if $kloop
end
local.get $ctile
local.set $crow
${ROWS.map((r) => `local.get $crow
local.get $c${2 * r}
v128.store
local.get $crow
local.get $c${2 * r + 1}
v128.store offset=16
local.get $crow
local.get $stride
i32.add
local.set $crow`).join("\n")}`))}`)}
)
)
`;
}

/** Pages (64 KiB) a shared memory may grow to: 1 GiB. */
export const MAX_PAGES = 16384;

/** The single-thread module, with its own memory. */
export const GEMM_WAT: string = gemmWat(false);
/** The module worker threads share: it imports `env.memory`, a shared memory. */
export const GEMM_SHARED_WAT: string = gemmWat(true);

/** {@link GEMM_WAT} assembled (see `_wasm.ts`). */
export const GEMM_WASM_BASE64 =
  "AGFzbQEAAAABDQFgCX9/f39/f39/fwADAgEABQMBAAEHEQIEZ2VtbQAABm1lbW9yeQIACtcEAdQEAgt/C3sgBEECdCETIAUgCGsiCUGAAk8EQEGAAiEJC0EAIQoCQANAIAogA08NASAKQYABaiILIANPBEAgAyELCyAGIQwCQANAIAwgB08NASAKIQ0CQANAIA0gC08NASAAIA0gBWwgCEEEbGpBAnRqIg4gCUEQbGohECABIAwgBWwgCEEIbGpBAnRqIQ8gAiANIARsIAxqQQJ0aiISIREgCEUEQP0MAAAAAAAAAAAAAAAAAAAAACIXIhgiGSIaIhsiHCIdIR4FIBH9AAQAIRcgEf0ABBAhGCARIBNqIREgEf0ABAAhGSAR/QAEECEaIBEgE2ohESAR/QAEACEbIBH9AAQQIRwgESATaiERIBH9AAQAIR0gEf0ABBAhHiARIBNqIRELA0AgD/0ABAAhFSAP/QAEECEWIA79CQIAIhQgFf3mASAX/eQBIRcgFCAW/eYBIBj95AEhGCAO/QkCBCIUIBX95gEgGf3kASEZIBQgFv3mASAa/eQBIRogDv0JAggiFCAV/eYBIBv95AEhGyAUIBb95gEgHP3kASEcIA79CQIMIhQgFf3mASAd/eQBIR0gFCAW/eYBIB795AEhHiAPQSBqIQ8gDkEQaiIOIBBHDQALIBIhESARIBf9CwQAIBEgGP0LBBAgESATaiERIBEgGf0LBAAgESAa/QsEECARIBNqIREgESAb/QsEACARIBz9CwQQIBEgE2ohESARIB39CwQAIBEgHv0LBBAgESATaiERIA1BBGohDQwACwsgDEEIaiEMDAALCyAKQYABaiEKDAALCws=";

/** {@link GEMM_SHARED_WAT} assembled. */
export const GEMM_SHARED_WASM_BASE64 =
  "AGFzbQEAAAABDQFgCX9/f39/f39/fwACEgEDZW52Bm1lbW9yeQIDAYCAAQMCAQAHCAEEZ2VtbQAACtcEAdQEAgt/C3sgBEECdCETIAUgCGsiCUGAAk8EQEGAAiEJC0EAIQoCQANAIAogA08NASAKQYABaiILIANPBEAgAyELCyAGIQwCQANAIAwgB08NASAKIQ0CQANAIA0gC08NASAAIA0gBWwgCEEEbGpBAnRqIg4gCUEQbGohECABIAwgBWwgCEEIbGpBAnRqIQ8gAiANIARsIAxqQQJ0aiISIREgCEUEQP0MAAAAAAAAAAAAAAAAAAAAACIXIhgiGSIaIhsiHCIdIR4FIBH9AAQAIRcgEf0ABBAhGCARIBNqIREgEf0ABAAhGSAR/QAEECEaIBEgE2ohESAR/QAEACEbIBH9AAQQIRwgESATaiERIBH9AAQAIR0gEf0ABBAhHiARIBNqIRELA0AgD/0ABAAhFSAP/QAEECEWIA79CQIAIhQgFf3mASAX/eQBIRcgFCAW/eYBIBj95AEhGCAO/QkCBCIUIBX95gEgGf3kASEZIBQgFv3mASAa/eQBIRogDv0JAggiFCAV/eYBIBv95AEhGyAUIBb95gEgHP3kASEcIA79CQIMIhQgFf3mASAd/eQBIR0gFCAW/eYBIB795AEhHiAPQSBqIQ8gDkEQaiIOIBBHDQALIBIhESARIBf9CwQAIBEgGP0LBBAgESATaiERIBEgGf0LBAAgESAa/QsEECARIBNqIREgESAb/QsEACARIBz9CwQQIBEgE2ohESARIB39CwQAIBEgHv0LBBAgESATaiERIA1BBGohDQwACwsgDEEIaiEMDAALCyAKQYABaiEKDAALCws=";

/** Shape and options of one matmul call. */
export interface MatmulShape {
  readonly m: number;
  readonly k: number;
  readonly n: number;
  readonly transA: boolean;
  readonly transB: boolean;
  readonly accumulate: boolean;
}

/** The compiled kernel with its memory (and worker threads). */
export interface WasmMatmul {
  /** Kernel family, for `Backend.kernels`. */
  readonly kernel: string;
  /**
   * Threads a large product runs on: the calling thread and its workers, less any worker that
   * failed to start or restart.
   */
  readonly threads: number;
  /** Products so far that workers helped with (for tests and benchmarks). */
  readonly parallelCalls: number;
  /**
   * out = op(a)·op(b) (+= with accumulate); a, b, out are row-major JS arrays. Returns false
   * (and does nothing) when the packed operands do not fit the wasm memory (over 1 GiB shared,
   * 4 GiB otherwise), so the caller can fall back.
   */
  matmul(a: Float32Array, b: Float32Array, out: Float32Array, shape: MatmulShape): boolean;
  /**
   * Resolves when every worker that exited while idle is running again; the running ones start
   * their idle time afresh.
   */
  ready(): Promise<void>;
  dispose(): void;
}

type Gemm = (ap: number, bp: number, c: number, mp: number, np: number, k: number, jb0: number, jb1: number, p0: number) => void;

/** Runs every k block of columns [jb0, jb1). */
function gemmBlocks(gemm: Gemm, ap: number, bp: number, c: number, mp: number, np: number, k: number, jb0: number, jb1: number): void {
  for (let p0 = 0; p0 < k; p0 += KC) gemm(ap, bp, c, mp, np, k, jb0, jb1, p0);
}

/**
 * The control block shared with the workers (an Int32Array): a generation counter they wait on,
 * a quit flag, the call's arguments, and per worker a state and its column range.
 */
export const CTRL = {
  GEN: 0,
  QUIT: 1,
  ARGS: 2, // ap, bp, c, mp, np, k
  WORKERS: 16, // per worker: state, jb0, jb1, error
  STRIDE: 4,
  SIZE: 16 + 4 * 64,
} as const;

/**
 * Worker states. The main thread claims an IDLE worker (IDLE → CLAIMED, which also stops it
 * from exiting), writes its arguments, then marks it ASSIGNED and bumps the generation; a worker
 * only works when it sees ASSIGNED, so it never reads half-written arguments, and it returns
 * to IDLE when done.
 */
export const STATE = { GONE: 0, IDLE: 1, ASSIGNED: 2, CLAIMED: 3 } as const;

/** A worker with no work for this long exits, so it never keeps a process alive for long. */
export const IDLE_MS = 1000;

/**
 * The worker thread's program (plain JS, no file to find after bundling, no read permission to
 * ask Deno for): `run(data, post, close)` instantiates the shared-memory kernel, then waits on
 * the generation counter; when assigned it computes its column panels and goes back to idle.
 * After {@link IDLE_MS} without work it exits, so an idle pool never holds a process open; the
 * main thread starts it again when needed. {@link WEB_WORKER_SOURCE} and
 * {@link NODE_WORKER_SOURCE} wire it to the two kinds of worker.
 */
export const WORKER_SOURCE = `
const run = (data, post, close) => {
  const { bytes, memory, index } = data;
  const ctrl = new Int32Array(data.ctrl);
  const at = ${CTRL.WORKERS} + index * ${CTRL.STRIDE};
  let gemm;
  try {
    gemm = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports.gemm;
    for (let i = 0; i < 300; i++) gemm(0, 2048, 4096, 8, 8, 64, 0, 8, 0); // reach the optimising tier
  } catch {
    post("failed"); // the main thread counts this worker out (never thrown: Deno would end the process)
    close();
    return;
  }
  let seen = Atomics.load(ctrl, ${CTRL.GEN});
  Atomics.store(ctrl, at, ${STATE.IDLE});
  post("ready");
  for (;;) {
    Atomics.wait(ctrl, ${CTRL.GEN}, seen, ${IDLE_MS});
    if (Atomics.load(ctrl, ${CTRL.QUIT}) !== 0) break;
    const gen = Atomics.load(ctrl, ${CTRL.GEN});
    if (gen === seen) {
      // no work for a while: leave, unless the main thread claimed us just now
      if (Atomics.compareExchange(ctrl, at, ${STATE.IDLE}, ${STATE.GONE}) === ${STATE.IDLE}) break;
      continue;
    }
    seen = gen;
    if (Atomics.load(ctrl, at) !== ${STATE.ASSIGNED}) continue;
    try {
      const a = (i) => Atomics.load(ctrl, ${CTRL.ARGS} + i);
      const k = a(5);
      for (let p0 = 0; p0 < k; p0 += ${KC}) gemm(a(0), a(1), a(2), a(3), a(4), k, Atomics.load(ctrl, at + 1), Atomics.load(ctrl, at + 2), p0);
    } catch {
      Atomics.store(ctrl, at + 3, 1);
    }
    Atomics.store(ctrl, at, ${STATE.IDLE});
    Atomics.notify(ctrl, at);
  }
  // The state is GONE already (idle exit), or the engine quit. Never write it here: a new
  // worker may own this slot by now.
  close();
};
`;

/**
 * {@link WORKER_SOURCE} as a web worker (started from a Blob URL). Bun's web workers have no
 * close(): returning leaves them idle and unreferenced, and the main thread terminates them when
 * it starts a new one.
 */
export const WEB_WORKER_SOURCE = `${WORKER_SOURCE}
self.onmessage = (e) => run(e.data, (m) => self.postMessage(m), () => {
  if (typeof self.close === "function") self.close();
});
`;

/**
 * {@link WORKER_SOURCE} as a `node:worker_threads` worker (started from a data: URL), for when
 * `globalThis.Worker` is that one: Emscripten-built packages such as onnxruntime-web set
 * `global.Worker = require("worker_threads").Worker` when they load under Bun, Deno or Node, and
 * that Worker neither takes a Blob URL nor delivers messages to `self.onmessage`.
 */
export const NODE_WORKER_SOURCE = `import { parentPort } from "node:worker_threads";
${WORKER_SOURCE}
parentPort.once("message", (data) => run(data, (m) => parentPort.postMessage(m), () => {
  if (typeof parentPort.close === "function") parentPort.close();
  else if (typeof self === "object" && typeof self.close === "function") self.close();
}));
`;

/**
 * The first 8 KiB of the memory belong to the warm-up calls (A at 0, B at 2 KiB, C at 4 KiB):
 * a worker that restarts warms up while the main thread may be multiplying, so products start
 * above them.
 */
const SCRATCH_FLOATS = 2048;

/** Below this many multiply-adds a product runs on one thread. */
const PARALLEL_MIN = 1 << 20;

/** True when this runtime compiles WebAssembly with SIMD. */
function hasWasmSimd(): boolean {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(fromBase64(GEMM_WASM_BASE64));
  } catch {
    return false;
  }
}

/** Shared memory, workers and Atomics.wait on this thread: what threads need. */
function canThread(): boolean {
  try {
    if (typeof Worker !== "function" || typeof SharedArrayBuffer !== "function" || typeof Atomics !== "object") return false;
    return WebAssembly.validate(fromBase64(GEMM_SHARED_WASM_BASE64));
  } catch {
    return false;
  }
}

/** A started worker thread, of either kind. */
interface WorkerThread {
  postMessage(message: unknown): void;
  terminate(): unknown;
}

interface Slot {
  worker: WorkerThread | undefined;
  spawning: Promise<void> | undefined;
  /** It failed to start (no worker support after all, a bundler lost the file): never retry. */
  broken: boolean;
}

type NodeStyleWorker = WorkerThread & {
  on(event: string, listener: (value: unknown) => void): unknown;
  unref?(): void;
};
type AnyWorkerConstructor = new (url: string | URL, options?: { type?: "module" }) => unknown;

let webWorkerUrl: string | undefined;
let nodeWorkerUrl: URL | undefined;

/**
 * Starts a worker running {@link WORKER_SOURCE} with whatever `globalThis.Worker` is now: a web
 * worker from a Blob URL, or, where a package replaced it with `node:worker_threads`' Worker
 * (see {@link NODE_WORKER_SOURCE}), a Node-style one from a data: URL. It is looked up on every
 * start, because an engine's workers restart after each idle spell, and a package may replace the
 * global between two starts. Throws where no worker can be started.
 */
function startWorker(onMessage: (message: unknown) => void, onError: () => void): WorkerThread {
  const Ctor = globalThis.Worker as unknown as AnyWorkerConstructor;
  const nodeStyle = typeof (Ctor.prototype as { on?: unknown } | undefined)?.on === "function";
  if (!nodeStyle) {
    webWorkerUrl ??= URL.createObjectURL(new Blob([WEB_WORKER_SOURCE], { type: "text/javascript" }));
    const worker = new Ctor(webWorkerUrl, { type: "module" }) as Worker;
    (worker as { unref?: () => void }).unref?.(); // Bun: never keep the process alive
    worker.onmessage = (e) => onMessage(e.data);
    worker.onerror = (e) => {
      e.preventDefault?.(); // Deno would end the process on an unhandled worker error
      onError();
    };
    return worker;
  }
  nodeWorkerUrl ??= new URL(`data:text/javascript,${encodeURIComponent(NODE_WORKER_SOURCE)}`);
  const worker = new Ctor(nodeWorkerUrl) as NodeStyleWorker;
  worker.unref?.(); // never keep the process alive
  worker.on("message", onMessage);
  worker.on("error", onError);
  worker.on("exit", onError); // before "ready": it died; after: ignored
  return worker;
}

/** One engine per thread count, shared by every CPU backend of the process (ops are synchronous). */
const engines = new Map<number, Promise<WasmMatmul | undefined>>();

/**
 * The kernel on `threads` threads (1 = this one only); resolves to undefined where WebAssembly
 * SIMD is unavailable. Workers are started here; one that is not ready within a few seconds, or
 * that exits after {@link IDLE_MS} without work, is (re)started in the background and helps
 * once it is up, so results never depend on how many threads took part.
 */
export function createWasmMatmul(options: { threads?: number } = {}): Promise<WasmMatmul | undefined> {
  const threads = Math.max(1, Math.floor(options.threads ?? 1));
  let engine = engines.get(threads);
  if (engine === undefined) {
    engine = startEngine(threads);
    engines.set(threads, engine);
  }
  return engine;
}

async function startEngine(threads: number): Promise<WasmMatmul | undefined> {
  if (!hasWasmSimd()) return undefined;
  const useThreads = threads > 1 && canThread();
  let memory: WebAssembly.Memory;
  let gemm: Gemm;
  let sharedBytes: Uint8Array<ArrayBuffer> | undefined;
  try {
    if (useThreads) {
      sharedBytes = fromBase64(GEMM_SHARED_WASM_BASE64);
      memory = new WebAssembly.Memory({ initial: 16, maximum: MAX_PAGES, shared: true });
      const { instance } = await WebAssembly.instantiate(sharedBytes, { env: { memory } });
      gemm = instance.exports.gemm as Gemm;
    } else {
      const { instance } = await WebAssembly.instantiate(fromBase64(GEMM_WASM_BASE64));
      memory = instance.exports.memory as WebAssembly.Memory;
      gemm = instance.exports.gemm as Gemm;
    }
  } catch {
    return undefined;
  }
  let heap = new Float32Array(memory.buffer);
  // V8 and JSC first run wasm in a baseline tier and optimise hot functions later (V8 cannot
  // swap a call that is running), so a few hundred small calls here make the first steps fast.
  for (let i = 0; i < 300; i++) gemm(0, 2048, 4096, 8, 8, 64, 0, 8, 0);

  const ensure = (floats: number): boolean => {
    const bytes = floats * 4;
    if (bytes > memory.buffer.byteLength) {
      const pages = Math.ceil((bytes - memory.buffer.byteLength) / 65536);
      try {
        memory.grow(pages);
      } catch {
        return false;
      }
      heap = new Float32Array(memory.buffer);
    }
    return true;
  };

  // Workers: slots[w] is worker w; ctrl is shared with all of them.
  const ctrl = new Int32Array(new SharedArrayBuffer(CTRL.SIZE * 4));
  const slots: Slot[] = [];
  const stateAt = (w: number) => CTRL.WORKERS + w * CTRL.STRIDE;
  const spawn = (w: number): Promise<void> => {
    const slot = slots[w]!;
    slot.worker?.terminate();
    slot.worker = undefined;
    let resolve!: () => void;
    const spawning = new Promise<void>((r) => resolve = r);
    slot.spawning = spawning;
    let thread: WorkerThread | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return; // a later error (after "ready") does not make the slot broken
      settled = true;
      clearTimeout(timer);
      if (slot.spawning === spawning) slot.spawning = undefined;
      if (!ok) slot.broken = true;
      resolve();
    };
    const onMessage = (message: unknown) => {
      if (message !== "ready") done(false);
      else if (!settled) done(true);
      // ready after the timeout (a busy machine): it is idle and helps, so it counts again
      else if (slot.worker === thread) slot.broken = false;
    };
    try {
      thread = startWorker(onMessage, () => done(false));
      slot.worker = thread;
      timer = setTimeout(() => done(false), 5000);
      thread.postMessage({ bytes: sharedBytes, memory, ctrl: ctrl.buffer, index: w });
    } catch {
      done(false);
    }
    return spawning;
  };
  if (useThreads) {
    for (let w = 0; w < threads - 1; w++) slots.push({ worker: undefined, spawning: undefined, broken: false });
    await Promise.all(slots.map((_, w) => spawn(w)));
  }

  /** Claims idle workers (and restarts exited ones in the background). */
  const claim = (): number[] => {
    const claimed: number[] = [];
    for (let w = 0; w < slots.length; w++) {
      const at = stateAt(w);
      if (Atomics.compareExchange(ctrl, at, STATE.IDLE, STATE.CLAIMED) === STATE.IDLE) claimed.push(w);
      else if (Atomics.load(ctrl, at) === STATE.GONE && slots[w]!.spawning === undefined && !slots[w]!.broken) void spawn(w);
    }
    return claimed;
  };

  let disposed = false;
  let parallelCalls = 0;
  return {
    kernel: `wasm-simd-${MR}x${NR}`,
    // the threads that run: a worker that failed to start, or to restart, is not counted
    get threads() {
      return 1 + slots.filter((slot) => !slot.broken).length;
    },
    get parallelCalls() {
      return parallelCalls;
    },
    matmul(a, b, out, { m, k, n, transA, transB, accumulate }) {
      if (m === 0 || n === 0) return true;
      if (k === 0) {
        if (!accumulate) out.fill(0, 0, m * n);
        return true;
      }
      const mp = Math.ceil(m / MR) * MR;
      const np = Math.ceil(n / NR) * NR;
      const apOff = SCRATCH_FLOATS; // below: the warm-up scratch a (re)starting worker writes
      const bpOff = apOff + mp * k;
      const cOff = bpOff + np * k;
      // offsets are byte addresses in wasm's i32 arithmetic: stay below 2³¹
      if (4 * (cOff + mp * np) >= 2 ** 31 || !ensure(cOff + mp * np)) return false;
      const h = heap;
      packA(h, apOff, a, m, k, mp, transA);
      packB(h, bpOff, b, k, n, np, transB);
      const panels = np / NR;
      const claimed = slots.length > 0 && m * n * k >= PARALLEL_MIN && panels > 1 && !disposed ? claim() : [];
      if (claimed.length === 0) {
        gemmBlocks(gemm, apOff * 4, bpOff * 4, cOff * 4, mp, np, k, 0, np);
      } else {
        const parts = Math.min(claimed.length + 1, panels);
        // release workers there is no work for
        for (const w of claimed.slice(parts - 1)) Atomics.store(ctrl, stateAt(w), STATE.IDLE);
        const helpers = claimed.slice(0, parts - 1);
        parallelCalls++;
        const cut = (i: number) => Math.round((panels * i) / parts) * NR;
        const args = [apOff * 4, bpOff * 4, cOff * 4, mp, np, k];
        args.forEach((v, i) => Atomics.store(ctrl, CTRL.ARGS + i, v));
        helpers.forEach((w, i) => {
          Atomics.store(ctrl, stateAt(w) + 1, cut(i + 1));
          Atomics.store(ctrl, stateAt(w) + 2, cut(i + 2));
          Atomics.store(ctrl, stateAt(w) + 3, 0);
          Atomics.store(ctrl, stateAt(w), STATE.ASSIGNED);
        });
        Atomics.add(ctrl, CTRL.GEN, 1);
        Atomics.notify(ctrl, CTRL.GEN);
        gemmBlocks(gemm, apOff * 4, bpOff * 4, cOff * 4, mp, np, k, 0, cut(1));
        let failed = false;
        for (const w of helpers) {
          const at = stateAt(w);
          // A worker only leaves ASSIGNED by finishing (it catches its own errors), so wait.
          while (Atomics.load(ctrl, at) === STATE.ASSIGNED) Atomics.wait(ctrl, at, STATE.ASSIGNED, 1000);
          if (Atomics.load(ctrl, at + 3) !== 0) failed = true;
        }
        if (failed) gemmBlocks(gemm, apOff * 4, bpOff * 4, cOff * 4, mp, np, k, cut(1), np);
      }
      if (!accumulate) {
        if (np === n) out.set(h.subarray(cOff, cOff + m * n));
        else for (let i = 0; i < m; i++) out.set(h.subarray(cOff + i * np, cOff + i * np + n), i * n);
      } else {
        for (let i = 0; i < m; i++) {
          const src = cOff + i * np;
          const dst = i * n;
          for (let j = 0; j < n; j++) out[dst + j]! += h[src + j]!;
        }
      }
      return true;
    },
    async ready() {
      // Wake the idle workers without work: each starts a fresh IDLE_MS before it may exit.
      Atomics.add(ctrl, CTRL.GEN, 1);
      Atomics.notify(ctrl, CTRL.GEN);
      await Promise.all(slots.map((slot, w) => {
        if (slot.spawning !== undefined) return slot.spawning;
        if (slot.broken || disposed || Atomics.load(ctrl, stateAt(w)) !== STATE.GONE) return undefined;
        return spawn(w);
      }));
    },
    dispose() {
      // Engines are shared by every backend of the process; this one stops its workers for good.
      disposed = true;
      engines.delete(threads);
      Atomics.store(ctrl, CTRL.QUIT, 1);
      Atomics.add(ctrl, CTRL.GEN, 1);
      Atomics.notify(ctrl, CTRL.GEN);
      for (const slot of slots) slot.worker?.terminate();
      slots.length = 0;
    },
  };
}

/** Packs op(A) [m,k] into panels of MR rows: h[off + (i/MR)·k·MR + p·MR + i%MR]; pads rows with 0. */
function packA(h: Float32Array, off: number, a: Float32Array, m: number, k: number, mp: number, trans: boolean): void {
  for (let ib = 0; ib < mp; ib += MR) {
    const base = off + ib * k;
    if (!trans) {
      for (let r = 0; r < MR; r++) {
        const i = ib + r;
        if (i < m) {
          const src = i * k;
          for (let p = 0, d = base + r; p < k; p++, d += MR) h[d] = a[src + p]!;
        } else {
          for (let p = 0, d = base + r; p < k; p++, d += MR) h[d] = 0;
        }
      }
    } else if (ib + MR <= m) {
      // a is [k, m]: the MR values of one p are contiguous
      for (let p = 0, s = ib, d = base; p < k; p++, s += m, d += MR) {
        h[d] = a[s]!;
        h[d + 1] = a[s + 1]!;
        h[d + 2] = a[s + 2]!;
        h[d + 3] = a[s + 3]!;
      }
    } else {
      for (let p = 0; p < k; p++) {
        for (let r = 0; r < MR; r++) h[base + p * MR + r] = ib + r < m ? a[p * m + ib + r]! : 0;
      }
    }
  }
}

/** Packs op(B) [k,n] into panels of NR columns: h[off + (j/NR)·k·NR + p·NR + j%NR]; pads with 0. */
function packB(h: Float32Array, off: number, b: Float32Array, k: number, n: number, np: number, trans: boolean): void {
  for (let jb = 0; jb < np; jb += NR) {
    const base = off + jb * k;
    if (!trans && jb + NR <= n) {
      for (let p = 0, s = jb, d = base; p < k; p++, s += n, d += NR) {
        h[d] = b[s]!;
        h[d + 1] = b[s + 1]!;
        h[d + 2] = b[s + 2]!;
        h[d + 3] = b[s + 3]!;
        h[d + 4] = b[s + 4]!;
        h[d + 5] = b[s + 5]!;
        h[d + 6] = b[s + 6]!;
        h[d + 7] = b[s + 7]!;
      }
    } else if (!trans) {
      for (let p = 0; p < k; p++) {
        for (let c = 0; c < NR; c++) h[base + p * NR + c] = jb + c < n ? b[p * n + jb + c]! : 0;
      }
    } else {
      // b is [n, k]: column j of op(B) is row j of b, contiguous
      for (let c = 0; c < NR; c++) {
        const j = jb + c;
        if (j < n) {
          const src = j * k;
          for (let p = 0, d = base + c; p < k; p++, d += NR) h[d] = b[src + p]!;
        } else {
          for (let p = 0, d = base + c; p < k; p++, d += NR) h[d] = 0;
        }
      }
    }
  }
}
