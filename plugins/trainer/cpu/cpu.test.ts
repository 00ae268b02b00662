import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { testBackend } from "../_conformance.ts";
import { createRng } from "../rng.ts";
import { createCpuBackend } from "./mod.ts";
import { createWasmMatmul, GEMM_SHARED_WASM_BASE64, GEMM_SHARED_WAT, GEMM_WASM_BASE64, GEMM_WAT, IDLE_MS, type WasmMatmul } from "./_matmul.ts";
import { assembleWat, fromBase64, toBase64 } from "./_wasm.ts";

// The wasm SIMD matmul on two threads and on one, and the plain JS kernels.
testBackend("cpu", () => createCpuBackend({ threads: 2 }));
testBackend("cpu", () => createCpuBackend({ threads: 1 }));
testBackend("cpu", () => createCpuBackend({ wasm: false }));

describe("cpu backend: the wasm SIMD matmul kernel", () => {
  test("the embedded bytes are the assembled WAT, and valid wasm", () => {
    const bytes = assembleWat(GEMM_WAT);
    assert.equal(toBase64(bytes), GEMM_WASM_BASE64);
    assert.deepEqual(fromBase64(GEMM_WASM_BASE64), bytes);
    assert.equal(WebAssembly.validate(bytes), true);
    assert.equal(toBase64(assembleWat(GEMM_SHARED_WAT)), GEMM_SHARED_WASM_BASE64);
    assert.equal(WebAssembly.validate(fromBase64(GEMM_SHARED_WASM_BASE64)), true);
  });

  test("the assembler refuses what it does not know", () => {
    assert.throws(() => assembleWat('(module\n(func (export "f")\nf64.sqrt\n)\n)'), SyntaxError);
    assert.throws(() => assembleWat('(module\n(func (export "f")\nlocal.get $nope\n)\n)'), SyntaxError);
  });

  test("the backend reports the wasm kernel and its threads", async () => {
    const be = await createCpuBackend({ threads: 1 });
    assert.equal(be.device, "cpu (wasm simd, 1 thread)");
    const two = await createCpuBackend({ threads: 2 });
    assert.equal(two.device, "cpu (wasm simd, 2 threads)");
    two.destroy();
    await assert.rejects(createCpuBackend({ threads: 0 }), RangeError);
    assert.equal(be.kernels, "wasm-simd-4x8");
    be.destroy();
    const js = await createCpuBackend({ wasm: false });
    assert.equal(js.device, "cpu (js, 1 thread)");
    js.destroy();
  });

  test("two threads give bit-identical results to one, and the worker takes part", async () => {
    const one = (await createWasmMatmul({ threads: 1 }))!;
    const two = (await createWasmMatmul({ threads: 2 }))!;
    assert.equal(two.threads, 2);
    const rng = createRng(5);
    for (const [m, k, n] of [[128, 784, 256], [784, 128, 256], [129, 300, 65], [64, 512, 40]] as const) {
      const a = Float32Array.from({ length: m * k }, () => rng.next() - 0.5);
      const b = Float32Array.from({ length: k * n }, () => rng.next() - 0.5);
      const x = new Float32Array(m * n);
      const y = new Float32Array(m * n);
      one.matmul(a, b, x, { m, k, n, transA: false, transB: false, accumulate: false });
      // A busy machine can leave the worker not yet idle for a call (it then runs on this thread,
      // still exact); within a few calls it takes part.
      let helped = false;
      for (let attempt = 0; attempt < 20 && !helped; attempt++) {
        await two.ready(); // an idle worker exits after a second; this keeps it (or starts it again)
        const before = two.parallelCalls;
        y.fill(NaN);
        two.matmul(a, b, y, { m, k, n, transA: false, transB: false, accumulate: false });
        assert.deepEqual(y, x, `${m}×${k}·${k}×${n}`);
        helped = two.parallelCalls === before + 1;
      }
      assert.ok(helped, `a worker helped with ${m}×${k}·${k}×${n}`);
    }
  });

  test("workers that exit while idle come back, and results stay exact meanwhile", async () => {
    const one = (await createWasmMatmul({ threads: 1 }))!;
    const two = (await createWasmMatmul({ threads: 2 }))!;
    const rng = createRng(8);
    const [m, k, n] = [200, 256, 160];
    const a = Float32Array.from({ length: m * k }, () => rng.next() - 0.5);
    const b = Float32Array.from({ length: k * n }, () => rng.next() - 0.5);
    const want = new Float32Array(m * n);
    one.matmul(a, b, want, { m, k, n, transA: false, transB: false, accumulate: false });
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS + 300)); // the worker exits
    // The first calls run on this thread while the worker restarts (and warms up) beside them.
    for (let i = 0; i < 5; i++) {
      const got = new Float32Array(m * n);
      two.matmul(a, b, got, { m, k, n, transA: false, transB: false, accumulate: false });
      assert.deepEqual(got, want, `call ${i} while the worker restarts`);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    let helped = false;
    for (let attempt = 0; attempt < 20 && !helped; attempt++) {
      await two.ready();
      const before = two.parallelCalls;
      const got = new Float32Array(m * n);
      two.matmul(a, b, got, { m, k, n, transA: false, transB: false, accumulate: false });
      assert.deepEqual(got, want);
      helped = two.parallelCalls === before + 1;
    }
    assert.ok(helped, "the restarted worker helped");
  });

  test("workers start when a package replaced globalThis.Worker with node:worker_threads' Worker", async () => {
    // onnxruntime-web (Emscripten) sets global.Worker = require("worker_threads").Worker when it
    // loads under Bun, Deno or Node; that Worker takes no Blob URL, so the engine's workers could
    // neither start nor restart after an idle spell, and products silently ran on one thread.
    const { Worker: NodeWorker } = await import("node:worker_threads");
    const global = globalThis as { Worker: unknown };
    const webWorker = global.Worker;
    const one = (await createWasmMatmul({ threads: 1 }))!;
    const rng = createRng(13);
    const [m, k, n] = [96, 320, 200];
    const a = Float32Array.from({ length: m * k }, () => rng.next() - 0.5);
    const b = Float32Array.from({ length: k * n }, () => rng.next() - 0.5);
    const want = new Float32Array(m * n);
    one.matmul(a, b, want, { m, k, n, transA: false, transB: false, accumulate: false });
    const helps = async (engine: WasmMatmul, what: string) => {
      let helped = false;
      for (let attempt = 0; attempt < 20 && !helped; attempt++) {
        await engine.ready();
        const before = engine.parallelCalls;
        const got = new Float32Array(m * n);
        engine.matmul(a, b, got, { m, k, n, transA: false, transB: false, accumulate: false });
        assert.deepEqual(got, want, what);
        helped = engine.parallelCalls === before + 1;
      }
      assert.ok(helped, `workers helped ${what}`);
    };
    // an engine of its own (three threads), so the shared two-thread one is left alone
    global.Worker = NodeWorker;
    let three: WasmMatmul | undefined;
    try {
      three = (await createWasmMatmul({ threads: 3 }))!;
      assert.equal(three.threads, 3, "both workers started as node:worker_threads workers");
      await helps(three, "as node:worker_threads workers");
      global.Worker = webWorker;
      await new Promise((resolve) => setTimeout(resolve, IDLE_MS + 300)); // the workers exit
      await helps(three, "after restarting as web workers");
      global.Worker = NodeWorker;
      await new Promise((resolve) => setTimeout(resolve, IDLE_MS + 300));
      await helps(three, "after restarting as node:worker_threads workers");
      assert.equal(three.threads, 3);
    } finally {
      global.Worker = webWorker;
      three?.dispose();
    }
  });

  test("wasm kernel equals an f64 reference on edge shapes, transposes and accumulation", async () => {
    const kernel = await createWasmMatmul({ threads: 1 });
    assert.ok(kernel !== undefined, "this runtime has WebAssembly SIMD");
    const rng = createRng(3);
    const shapes: [number, number, number][] = [
      [1, 1, 1], [4, 1, 8], [5, 3, 9], [3, 17, 7], [128, 784, 256], [128, 256, 128], [64, 128, 10], [33, 65, 129], [256, 128, 784],
    ];
    for (const [m, k, n] of shapes) {
      for (const [transA, transB, accumulate] of [[false, false, false], [true, false, false], [false, true, true], [true, true, true]] as const) {
        const a = Float32Array.from({ length: m * k }, () => rng.next() * 2 - 1);
        const b = Float32Array.from({ length: k * n }, () => rng.next() * 2 - 1);
        const out = Float32Array.from({ length: m * n }, () => rng.next());
        const prior = out.slice();
        kernel.matmul(a, b, out, { m, k, n, transA, transB, accumulate });
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let s = accumulate ? prior[i * n + j]! : 0;
            let mag = Math.abs(s);
            for (let p = 0; p < k; p++) {
              const v = (transA ? a[p * m + i]! : a[i * k + p]!) * (transB ? b[j * k + p]! : b[p * n + j]!);
              s += v;
              mag += Math.abs(v);
            }
            const got = out[i * n + j]!;
            if (!(Math.abs(got - s) <= 1e-5 * mag + 1e-6)) {
              assert.fail(`${m}×${k}·${k}×${n} transA=${transA} transB=${transB} accumulate=${accumulate}: [${i},${j}] = ${got}, expected ${s}`);
            }
          }
        }
      }
    }
    kernel.dispose();
  });
});
