/**
 * Finding a WebGPU adapter: `navigator.gpu` where the runtime has one (Deno, browsers), else
 * Dawn through the `webgpu` npm package (Bun, Node), first with its default backends (a real
 * GPU through Vulkan/Metal/D3D) and then OpenGL ES in compatibility mode (Mesa's llvmpipe on a
 * machine without a GPU).
 * @module
 */

/** A way to get an adapter; `gpu` is kept alive as long as the device is used. */
export interface AdapterChoice {
  readonly gpu: GPU;
  readonly adapter: GPUAdapter;
}

interface DawnModule {
  create(flags: string[]): GPU;
}

interface ProcessLike {
  env?: Record<string, string | undefined>;
  platform?: string;
}

/** Requests an adapter from `gpu`, retrying with feature level "compatibility" (OpenGL ES). */
async function requestFrom(
  gpu: GPU,
  powerPreference: GPUPowerPreference | undefined,
): Promise<GPUAdapter | null> {
  const base: GPURequestAdapterOptions = powerPreference === undefined ? {} : { powerPreference };
  try {
    const adapter = await gpu.requestAdapter(base);
    if (adapter) return adapter;
    // `featureLevel` is newer than some type packages.
    return await gpu.requestAdapter(
      { ...base, featureLevel: "compatibility" } as GPURequestAdapterOptions,
    );
  } catch {
    return null;
  }
}

/**
 * Mesa's EGL needs `EGL_PLATFORM=surfaceless` on a machine without a display. Node passes
 * `process.env` writes to the C environment; Bun does not, so there we call libc's setenv.
 */
async function ensureSurfacelessEgl(proc: ProcessLike): Promise<void> {
  if (
    proc.env === undefined || proc.env["EGL_PLATFORM"] !== undefined || proc.platform !== "linux"
  ) return;
  proc.env["EGL_PLATFORM"] = "surfaceless";
  if (!("Bun" in globalThis)) return;
  try {
    const specifier = "bun:ffi";
    const ffi = await import(specifier) as {
      dlopen(lib: string, symbols: Record<string, { args: string[]; returns: string }>): {
        symbols: Record<string, (...args: unknown[]) => number>;
        close(): void;
      };
      ptr(view: Uint8Array): unknown;
    };
    const libc = ffi.dlopen("libc.so.6", {
      setenv: { args: ["cstring", "cstring", "i32"], returns: "i32" },
    });
    const name = new TextEncoder().encode("EGL_PLATFORM\0");
    const value = new TextEncoder().encode("surfaceless\0");
    libc.symbols["setenv"]?.(ffi.ptr(name), ffi.ptr(value), 0);
    libc.close();
  } catch {
    // Not glibc: EGL then uses whatever platform it finds, as it would in Node.
  }
}

/**
 * The first adapter we can get: from `gpu` when given, else `navigator.gpu`, else Dawn.
 * Returns undefined when there is none.
 */
export async function findAdapter(
  gpu: GPU | undefined,
  powerPreference: GPUPowerPreference | undefined,
): Promise<AdapterChoice | undefined> {
  if (gpu !== undefined) {
    const adapter = await requestFrom(gpu, powerPreference);
    return adapter ? { gpu, adapter } : undefined;
  }
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu !== undefined) {
    const adapter = await requestFrom(nav.gpu, powerPreference);
    return adapter ? { gpu: nav.gpu, adapter } : undefined;
  }
  const proc = (globalThis as { process?: ProcessLike }).process;
  if (proc === undefined) return undefined;
  await ensureSurfacelessEgl(proc);
  let dawn: DawnModule;
  try {
    // A variable specifier: only Bun and Node reach this line, and type checkers for edge code
    // must not try to resolve a native addon.
    const specifier = "webgpu";
    dawn = await import(specifier) as DawnModule;
  } catch {
    return undefined;
  }
  for (const flags of [[], ["backend=opengles"]]) {
    let candidate: GPU;
    try {
      candidate = dawn.create(flags);
    } catch {
      continue;
    }
    const adapter = await requestFrom(candidate, powerPreference);
    if (adapter) return { gpu: candidate, adapter };
  }
  return undefined;
}

/** A human name for an adapter: its description, or Dawn's device string on OpenGL ES. */
export function describeAdapter(adapter: GPUAdapter): string {
  const info = adapter.info as Partial<GPUAdapterInfo> | undefined;
  const description = info?.description ?? "";
  const device = info?.device ?? "";
  if (description !== "" && !description.startsWith("OpenGL")) return description;
  if (device !== "" && device !== "0") {
    return description === "" ? device : `${device} (${description})`;
  }
  return description || info?.vendor || "unknown WebGPU adapter";
}

/** The adapter's limits as a plain record, to request all of them for the device. */
export function adapterLimits(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  const limits = adapter.limits as unknown as Record<string, unknown>;
  const names = new Set<string>();
  for (const name in limits) names.add(name);
  for (
    let proto = Object.getPrototypeOf(limits);
    proto && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto)
  ) {
    for (const name of Object.getOwnPropertyNames(proto)) names.add(name);
  }
  for (const name of names) {
    const value = limits[name];
    if (typeof value === "number" && name.startsWith("m")) out[name] = value;
  }
  return out;
}
