import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKernel, createMemoryLogger, KeelError } from "../../core/mod.ts";
import { createTrainerPlugin, selectBackend } from "./mod.ts";

/** A WebGPU entry point with no adapter: what a host without a GPU (or a software rasteriser) gives. */
const noAdapter = { requestAdapter: () => Promise.resolve(null), getPreferredCanvasFormat: () => "rgba8unorm" } as unknown as GPU;

describe("backend selection", () => {
  test('"auto" falls back to the CPU with a clear line when there is no adapter', async () => {
    const logger = createMemoryLogger();
    const backend = await selectBackend({ backend: "auto", gpu: () => noAdapter, logger });
    try {
      assert.equal(backend.name, "cpu");
      assert.ok(logger.lines.some((l) => /No WebGPU adapter.*training on the CPU/i.test(l.message)), JSON.stringify(logger.lines));
    } finally {
      backend.destroy();
    }
  });

  test('"webgpu" without an adapter is E_TRAIN_BACKEND_UNAVAILABLE saying to use the CPU', async () => {
    await assert.rejects(selectBackend({ backend: "webgpu", gpu: () => noAdapter }), (e: unknown) =>
      KeelError.is(e, "E_TRAIN_BACKEND_UNAVAILABLE") && /--backend cpu/.test((e as Error).message));
  });

  test('"cpu" and an unknown name', async () => {
    const cpu = await selectBackend({ backend: "cpu" });
    assert.equal(cpu.name, "cpu");
    cpu.destroy();
    await assert.rejects(selectBackend({ backend: "tpu" as "cpu" }), (e: unknown) => KeelError.is(e, "E_TRAIN_CONFIG"));
  });

  test("the plugin asks for gpu unless it trains on the CPU; without the grant it is refused at boot", async () => {
    assert.deepEqual(createTrainerPlugin().capabilities, ["gpu"]);
    assert.deepEqual(createTrainerPlugin({ backend: "cpu" }).capabilities, []);
    await assert.rejects(createKernel({ plugins: [createTrainerPlugin()] }), (e: unknown) => KeelError.is(e, "E_CAPABILITY_DENIED"));
    const kernel = await createKernel({ plugins: [createTrainerPlugin({ backend: "cpu" })] });
    await kernel.dispose();
  });
});
