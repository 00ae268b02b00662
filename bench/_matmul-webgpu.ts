/**
 * Matmul throughput of the WebGPU backend's kernel families on this machine's adapter:
 * `deno run -A bench/_matmul-webgpu.ts [size] [all|auto|tiles] [repeat] [tiles]` (or `bun`).
 * Prints GFLOP/s per family (or per register tile with "tiles"), timing `repeat` back-to-back
 * matmuls and one read-back; "auto" also times the start-up autotuning.
 */
import {
  createWebGpuBackend,
  type RegisterTiling,
  webGpuTestHooks,
} from "../plugins/trainer/webgpu/mod.ts";

const args: string[] = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
  (globalThis as unknown as { process: { argv: string[] } }).process.argv.slice(2);
const size = Number(args[0] ?? 1024);
const what = args[1] ?? "all";
const repeat = Number(args[2] ?? 10);
const t0 = performance.now();
const backend = await createWebGpuBackend({ kernels: what === "auto" ? "auto" : "register-tiled" });
if (what === "auto") {
  console.log(`autotuning chose "${backend.kernels}" in ${(performance.now() - t0).toFixed(0)} ms`);
}
const hooks = webGpuTestHooks(backend);
console.log(`adapter: ${backend.device}; ${size}³ matmul, ${repeat} per timing`);
const flops = 2 * size ** 3 * repeat;

async function measure(label: string, family: "register-tiled" | "workgroup-tiled"): Promise<void> {
  const t0 = performance.now();
  await hooks._timeMatmul(family, 128, 1); // compiles the pipeline (128³ is past the small-product kernel)
  const compile = performance.now() - t0;
  let best = Infinity;
  for (let i = 0; i < 3; i++) best = Math.min(best, await hooks._timeMatmul(family, size, repeat));
  console.log(
    `${label.padEnd(32)} ${(flops / best / 1e6).toFixed(1).padStart(7)} GFLOP/s  (${
      best.toFixed(0)
    } ms; first 128³ call ${compile.toFixed(0)} ms)`,
  );
}

if (what === "tiles") {
  const tiles: (RegisterTiling & { vecA: boolean })[] =
    (args[3] ?? "32x16:8,16x16:8,8x16:8,16x8:8,32x8:8")
      .split(",").map((s) => {
        const [t, w] = s.split(":") as [string, string, string?];
        const [tm, tn] = t.split("x").map(Number) as [number, number];
        return { tm, tn, wgx: Number(w), vecA: !s.endsWith(":scalar") };
      });
  for (const t of tiles) {
    hooks._setTiling(t, t.vecA);
    await measure(
      `register-tiled ${t.tm}x${t.tn} wg ${t.wgx}${t.vecA ? "" : " scalar A"}`,
      "register-tiled",
    );
  }
} else {
  if (what === "all" || what === "auto" || what === "register-tiled") {
    await measure("register-tiled", "register-tiled");
  }
  if (what === "all" || what === "auto" || what === "workgroup-tiled") {
    await measure("workgroup-tiled", "workgroup-tiled");
  }
}
backend.destroy();
