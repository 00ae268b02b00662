import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../../../core/mod.ts";
import type { Backend, Tensor } from "../backend.ts";
import { testBackend } from "../_conformance.ts";
import { createRng } from "../rng.ts";
import { createWebGpuBackend, isWebGpuAvailable, MAX_DISPATCHES, webGpuTestHooks } from "./mod.ts";

testBackend("webgpu", () => createWebGpuBackend());

function random(n: number, seed: number): Float32Array {
  const rng = createRng(seed);
  return Float32Array.from({ length: n }, () => rng.next() * 2 - 1);
}

/** out = op(a)·op(b) (+ prior) in f64, and Σ|a·b| per element for the tolerance. */
function reference(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  transA: boolean,
  transB: boolean,
  prior?: Float32Array,
): { out: Float64Array; mag: Float64Array } {
  const out = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = prior?.[i * n + j] ?? 0;
      let g = Math.abs(s);
      for (let p = 0; p < k; p++) {
        const v = (transA ? a[p * m + i]! : a[i * k + p]!) *
          (transB ? b[j * k + p]! : b[p * n + j]!);
        s += v;
        g += Math.abs(v);
      }
      out[i * n + j] = s;
      mag[i * n + j] = g;
    }
  }
  return { out, mag };
}

async function checkMatmul(
  be: Backend,
  m: number,
  k: number,
  n: number,
  transA: boolean,
  transB: boolean,
  accumulate: boolean,
) {
  const a = random(m * k, m + 3 * k);
  const b = random(k * n, k + 5 * n);
  const prior = random(m * n, m + n);
  const ta = be.tensor(a, transA ? [k, m] : [m, k]);
  const tb = be.tensor(b, transB ? [n, k] : [k, n]);
  const out = be.tensor(prior, [m, n]);
  be.matmul(ta, tb, out, { transA, transB, accumulate });
  const got = await be.read(out);
  const { out: want, mag } = reference(
    a,
    b,
    m,
    k,
    n,
    transA,
    transB,
    accumulate ? prior : undefined,
  );
  for (let i = 0; i < want.length; i++) {
    const limit = 1e-4 * mag[i]! + 1e-6;
    if (!(Math.abs(got[i]! - want[i]!) <= limit)) {
      assert.fail(`element ${i}: ${got[i]} vs ${want[i]} (±${limit})`);
    }
  }
  for (const t of [ta, tb, out]) be.dispose(t);
}

// Products big enough for the tiled kernels, covering the register tile's edge cases the
// conformance suite does not (its one big shape has edges in both rows and columns, in all four
// transpose variants): no edge and rows only (both reading A as vec4), columns only.
const TILED_CASES: [
  m: number,
  k: number,
  n: number,
  transA: boolean,
  transB: boolean,
  accumulate: boolean,
][] = [
  [128, 64, 128, false, false, false],
  [100, 128, 96, false, false, true],
  [128, 100, 90, false, true, false],
];

describe("webgpu backend", () => {
  let be: Backend;
  before(async () => {
    be = await createWebGpuBackend();
  });
  after(() => be?.destroy());

  test("names the adapter and records the kernel family autotuning chose", () => {
    assert.equal(be.name, "webgpu");
    assert.ok(be.device.length > 0 && be.device !== "unknown WebGPU adapter", be.device);
    assert.ok(be.kernels === "register-tiled" || be.kernels === "workgroup-tiled", be.kernels);
  });

  for (const [m, k, n, transA, transB, accumulate] of TILED_CASES) {
    test(`register-tiled matmul ${m}×${k}·${k}×${n}${transA ? " transA" : ""}${transB ? " transB" : ""}${accumulate ? " accumulate" : ""}`, async () => {
      const reg = await createWebGpuBackend({ kernels: "register-tiled" });
      try {
        assert.equal(reg.kernels, "register-tiled");
        await checkMatmul(reg, m, k, n, transA, transB, accumulate);
      } finally {
        reg.destroy();
      }
    });
  }

  test("register-tiled family: small products (lane kernel) in every layout, with edges", async () => {
    const reg = await createWebGpuBackend({ kernels: "register-tiled" });
    try {
      // The MLP output layer's three products (rows on lanes, 16-wide tile, 4 rows each), then
      // a 4-wide and a 1-wide tile, columns on lanes, and 1 or 4 rows per invocation.
      await checkMatmul(reg, 128, 128, 10, false, false, false);
      await checkMatmul(reg, 128, 10, 128, false, true, true);
      await checkMatmul(reg, 128, 128, 10, true, false, true);
      await checkMatmul(reg, 100, 50, 3, true, true, false);
      await checkMatmul(reg, 3, 70, 130, false, true, true);
      await checkMatmul(reg, 130, 70, 1, true, true, true);
      await checkMatmul(reg, 40, 9, 45, true, false, false);
      await checkMatmul(reg, 3, 300, 30, false, false, true);
      await checkMatmul(reg, 50, 33, 5, false, true, true);
    } finally {
      reg.destroy();
    }
  });

  test("workgroup-tiled (shared memory) matmul with edges, transA, transB and accumulate", async () => {
    const wg = await createWebGpuBackend({ kernels: "workgroup-tiled" });
    try {
      assert.equal(wg.kernels, "workgroup-tiled");
      // Two variants only: each costs seconds to compile on llvmpipe when its shader cache is cold.
      await checkMatmul(wg, 129, 65, 257, true, true, true);
      await checkMatmul(wg, 96, 128, 100, false, false, false);
    } finally {
      wg.destroy();
    }
  });

  test(`ops queued past one submit (${MAX_DISPATCHES} dispatches) each keep their own parameters`, async () => {
    const n = 5;
    const p = be.zeros([n]);
    const g = be.tensor(new Float32Array(n).fill(1), [n]);
    const v = be.zeros([n]);
    const steps = MAX_DISPATCHES * 2 + 37;
    for (let i = 1; i <= steps; i++) {
      be.sgd(p, g, v, { lr: i, momentum: 0, weightDecay: 0, nesterov: false });
    }
    // Σ lr = steps·(steps+1)/2, exact in f32 at this size.
    assert.deepEqual([...(await be.read(p))], new Array(n).fill(-(steps * (steps + 1)) / 2));
    for (const t of [p, g, v]) be.dispose(t);
  });

  test("a tensor over the adapter's buffer limits is refused with E_TRAIN_LIMITS, naming shape, bytes and limit", async () => {
    const limit = webGpuTestHooks(be)._device.limits.maxStorageBufferBindingSize;
    const rows = Math.ceil(limit / 4 / 1000) + 1;
    const error = (() => {
      try {
        be.zeros([rows, 1000]);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    assert.ok(KeelError.is(error, "E_TRAIN_LIMITS"), String(error));
    assert.match(error.message, new RegExp(`\\[${rows}, 1000\\]`));
    assert.match(error.message, new RegExp(`${rows * 4000} bytes`));
    assert.match(error.message, new RegExp(String(limit)));
    // The backend still works.
    const t = be.tensor(new Float32Array([1, 2]), [2]);
    assert.deepEqual([...(await be.read(t))], [1, 2]);
    be.dispose(t);
  });

  test("a tensor from another backend is a TypeError; so is a disposed one", () => {
    const foreign: Tensor = { shape: [1], size: 1, dtype: "f32", backend: "cpu" };
    const t = be.zeros([1]);
    assert.throws(() => be.mul(foreign, t, t), TypeError);
    be.dispose(t);
    assert.throws(() => be.fill0(t), TypeError);
  });
});

describe("webgpu availability and device loss", () => {
  const noAdapter = { requestAdapter: () => Promise.resolve(null) } as unknown as GPU;

  test("no adapter: isWebGpuAvailable is false and creating fails with E_TRAIN_BACKEND_UNAVAILABLE", async () => {
    assert.equal(await isWebGpuAvailable({ gpu: noAdapter }), false);
    await assert.rejects(createWebGpuBackend({ gpu: noAdapter }), (e: unknown) => {
      assert.ok(KeelError.is(e, "E_TRAIN_BACKEND_UNAVAILABLE"));
      assert.match(e.message, /No WebGPU adapter/);
      assert.match(e.message, /--backend cpu/);
      return true;
    });
    assert.equal(await isWebGpuAvailable(), true);
  });

  test("a lost device rejects `lost` once with E_TRAIN_DEVICE_LOST; later ops and reads fail the same way", async () => {
    const lossy = await createWebGpuBackend({ kernels: "register-tiled" });
    const t = lossy.tensor(new Float32Array([1, 2, 3]), [3]);
    assert.deepEqual([...(await lossy.read(t))], [1, 2, 3]);
    webGpuTestHooks(lossy)._device.destroy();
    const reason = await lossy.lost.then(() => undefined, (e: unknown) => e);
    assert.ok(KeelError.is(reason, "E_TRAIN_DEVICE_LOST"), String(reason));
    assert.match(reason.message, /CPU backend/);
    assert.throws(() => lossy.mul(t, t, t), (e: unknown) => KeelError.is(e, "E_TRAIN_DEVICE_LOST"));
    assert.throws(() => lossy.zeros([2]), (e: unknown) => KeelError.is(e, "E_TRAIN_DEVICE_LOST"));
    await assert.rejects(lossy.read(t), (e: unknown) => KeelError.is(e, "E_TRAIN_DEVICE_LOST"));
    await assert.rejects(lossy.sync(), (e: unknown) => KeelError.is(e, "E_TRAIN_DEVICE_LOST"));
    lossy.destroy();
  });

  test("our own destroy() is not a loss: `lost` stays pending", async () => {
    const b = await createWebGpuBackend({ kernels: "register-tiled" });
    const device = webGpuTestHooks(b)._device;
    let settled = false;
    b.lost.then(() => (settled = true), () => (settled = true));
    b.destroy();
    // device.lost resolves on destroy; the backend's handler was attached first, so it has run
    // (and, had it rejected `lost`, our callbacks above would have been queued) after a few ticks.
    const info = await device.lost;
    assert.equal(info.reason, "destroyed");
    for (let i = 0; i < 5; i++) await Promise.resolve();
    assert.equal(settled, false);
    assert.throws(() => b.zeros([1]), (e: unknown) => KeelError.is(e, "E_TRAIN_DEVICE_LOST"));
  });
});
