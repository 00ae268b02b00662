/**
 * WGSL sources for the WebGPU backend. Each kernel is described once (bindings, uniform fields,
 * body) and the backend builds both the shader and its explicit bind group layout from that
 * description, so the two never disagree.
 * @module
 */

import { WGSL_HASH } from "../rng.ts";
import type { Activation } from "../backend.ts";

/** How a kernel uses one storage binding. */
export type Access = "read" | "rw" | "atomic-i32";

/** One storage binding of a kernel (binding 0 is always the uniform `P`). */
export interface Binding {
  readonly name: string;
  readonly access: Access;
  /** WGSL element type; default f32 ("atomic-i32" ignores it). */
  readonly type?: "f32" | "i32" | "u32" | "vec4<f32>";
}

/** A scalar field of a kernel's uniform struct. */
export type Field = readonly [name: string, type: "u32" | "i32" | "f32"];

/** A compute kernel: its cache key, bindings, uniform fields and full WGSL source. */
export interface Kernel {
  readonly key: string;
  readonly bindings: readonly Binding[];
  readonly fields: readonly Field[];
  /** The shader without its declarations (for {@link aliasKernel}). */
  readonly body: string;
  readonly code: string;
}

/** Threads per workgroup of the one-dimensional kernels. */
export const WG = 256;
/** Workgroups the first pass of a grid reduction uses at most (partial sums per reduction). */
export const REDUCE_GROUPS = 64;

function header(bindings: readonly Binding[], fields: readonly Field[]): string {
  const struct = `struct Params {\n${fields.map(([n, t]) => `  ${n}: ${t},`).join("\n")}\n}\n` +
    "@group(0) @binding(0) var<uniform> P: Params;\n";
  const decls = bindings.map((b, i) => {
    if (b.access === "atomic-i32") {
      return `@group(0) @binding(${i + 1}) var<storage, read_write> ${b.name}: array<atomic<i32>>;`;
    }
    const mode = b.access === "read" ? "read" : "read_write";
    return `@group(0) @binding(${i + 1}) var<storage, ${mode}> ${b.name}: array<${
      b.type ?? "f32"
    }>;`;
  });
  return struct + decls.join("\n") + "\n";
}

function kernel(
  key: string,
  bindings: readonly Binding[],
  fields: readonly Field[],
  body: string,
): Kernel {
  // A uniform struct needs at least one field; pad so every struct is 16 bytes or more.
  const padded = [...fields];
  while (padded.length < 4) padded.push([`_pad${padded.length}`, "u32"]);
  return { key, bindings, fields: padded, body, code: header(bindings, padded) + body };
}

/**
 * The same kernel for a call that passes one tensor in several places (`out` = `x`): WebGPU
 * forbids binding one buffer twice when either binding is writable, so each repeated binding
 * (`same[i]` = the index of its first occurrence, or i) is dropped and its name rewritten to the
 * first one's.
 */
export function aliasKernel(k: Kernel, same: readonly number[]): Kernel {
  let body = k.body;
  const kept: Binding[] = [];
  const keptIndex = new Map<number, number>();
  k.bindings.forEach((b, i) => {
    const first = same[i] ?? i;
    if (first === i) {
      keptIndex.set(i, kept.length);
      kept.push(b);
      return;
    }
    const target = kept[keptIndex.get(first)!]!;
    if (b.access !== "read" && target.access === "read") {
      kept[keptIndex.get(first)!] = { ...target, access: b.access };
    }
    body = body.replace(new RegExp(`\\b${b.name}\\[`, "g"), `${target.name}[`);
  });
  return {
    key: `${k.key}|${same.join(",")}`,
    bindings: kept,
    fields: k.fields,
    body,
    code: header(kept, k.fields) + body,
  };
}

/** The flat index of a 1-D kernel launched as a 2-D grid (`span` = threads per grid row). */
const FLAT = /* wgsl */ `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * P.span;
  if (i >= P.n) { return; }
`;

const SAFE_TANH = /* wgsl */ `
fn tanh_s(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }
const GELU_C: f32 = 0.7978845608028654;
fn gelu(x: f32) -> f32 { return 0.5 * x * (1.0 + tanh_s(GELU_C * (x + 0.044715 * x * x * x))); }
fn gelu_grad(x: f32) -> f32 {
  let t = tanh_s(GELU_C * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
}
`;

function activationExpr(act: Activation, v: string): string {
  switch (act) {
    case "none":
      return v;
    case "relu":
      return `max(${v}, 0.0)`;
    case "gelu":
      return `gelu(${v})`;
    case "tanh":
      return `tanh_s(${v})`;
    case "sigmoid":
      return `(1.0 / (1.0 + exp(-${v})))`;
  }
}

/** out[r,c] = act(x[r,c] + bias[c]). */
export function biasActKernel(act: Activation): Kernel {
  return kernel(
    `biasAct:${act}`,
    [
      { name: "x", access: "rw" },
      { name: "bias", access: "read" },
      { name: "o", access: "rw" },
    ],
    [["n", "u32"], ["span", "u32"], ["cols", "u32"]],
    SAFE_TANH + FLAT + `
  let v = x[i] + bias[i % P.cols];
  o[i] = ${activationExpr(act, "v")};
}`,
  );
}

/** dx = dy ⊙ act'(·). */
export function actBackwardKernel(act: Activation): Kernel {
  const grad: Record<Activation, string> = {
    none: "g",
    relu: "select(0.0, g, post[i] > 0.0)",
    gelu: "g * gelu_grad(pre[i])",
    tanh: "g * (1.0 - post[i] * post[i])",
    sigmoid: "g * post[i] * (1.0 - post[i])",
  };
  return kernel(
    `actBackward:${act}`,
    [
      { name: "pre", access: "rw" },
      { name: "post", access: "rw" },
      { name: "dy", access: "rw" },
      { name: "dx", access: "rw" },
    ],
    [["n", "u32"], ["span", "u32"]],
    SAFE_TANH + FLAT + `
  let g = dy[i];
  dx[i] = ${grad[act]};
}`,
  );
}

/** out = a ⊙ b. */
export const mulKernel: Kernel = kernel(
  "mul",
  [
    { name: "a", access: "rw" },
    { name: "b", access: "rw" },
    { name: "o", access: "rw" },
  ],
  [["n", "u32"], ["span", "u32"]],
  FLAT + `
  o[i] = a[i] * b[i];
}`,
);

/** Inverted dropout with the shared counter hash; `threshold` = ceil(p · 2^24). */
export const dropoutKernel: Kernel = kernel(
  "dropout",
  [
    { name: "x", access: "rw" },
    { name: "o", access: "rw" },
    { name: "mask", access: "rw" },
  ],
  [["n", "u32"], ["span", "u32"], ["seed", "u32"], ["threshold", "u32"], ["scale", "f32"]],
  WGSL_HASH + FLAT + `
  // (hash >> 8) / 2^24 >= p  <=>  (hash >> 8) >= ceil(p * 2^24): the same test as hashUniform(seed, i) >= p
  // on the CPU, in integers so no rounding of p can make them disagree.
  let keep = (hash32(P.seed, i) >> 8u) >= P.threshold;
  let m = select(0.0, P.scale, keep);
  mask[i] = m;
  o[i] = x[i] * m;
}`,
);

/** out[c] (+)= Σ_r x[r,c]: one thread per column. */
export const sumRowsKernel: Kernel = kernel(
  "sumRows",
  [
    { name: "x", access: "read" },
    { name: "o", access: "rw" },
  ],
  [["rows", "u32"], ["cols", "u32"], ["accumulate", "u32"]],
  `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= P.cols) { return; }
  var s = 0.0;
  for (var r = 0u; r < P.rows; r++) { s += x[r * P.cols + c]; }
  if (P.accumulate != 0u) { s += o[c]; }
  o[c] = s;
}`,
);

const ROW = /* wgsl */ `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  if (r >= P.rows) { return; }
  let base = r * P.cols;
`;

/** out[r,:] = softmax(x[r,:]), one thread per row. */
export const softmaxKernel: Kernel = kernel(
  "softmax",
  [
    { name: "x", access: "rw" },
    { name: "o", access: "rw" },
  ],
  [["rows", "u32"], ["cols", "u32"]],
  ROW + `
  var mx = x[base];
  for (var c = 1u; c < P.cols; c++) { mx = max(mx, x[base + c]); }
  var s = 0.0;
  for (var c = 0u; c < P.cols; c++) { s += exp(x[base + c] - mx); }
  let inv = 1.0 / s;
  for (var c = 0u; c < P.cols; c++) { o[base + c] = exp(x[base + c] - mx) * inv; }
}`,
);

/** dLogits = (softmax − onehot)·scale; rowLoss[r] = −log softmax[label] (NaN for a bad label). */
export const softmaxCrossEntropyKernel: Kernel = kernel(
  "softmaxCE",
  [
    { name: "x", access: "rw" },
    { name: "labels", access: "read", type: "i32" },
    { name: "d", access: "rw" },
    { name: "rowLoss", access: "rw" },
  ],
  [["rows", "u32"], ["cols", "u32"], ["scale", "f32"], ["nanBits", "u32"]],
  ROW + `
  var mx = x[base];
  for (var c = 1u; c < P.cols; c++) { mx = max(mx, x[base + c]); }
  var s = 0.0;
  for (var c = 0u; c < P.cols; c++) { s += exp(x[base + c] - mx); }
  let label = labels[r];
  let ok = label >= 0 && u32(label) < P.cols;
  let lc = select(0u, u32(label), ok);
  let logZ = mx + log(s);
  let xl = x[base + lc];
  let inv = 1.0 / s;
  for (var c = 0u; c < P.cols; c++) {
    let p = exp(x[base + c] - mx) * inv;
    d[base + c] = (p - select(0.0, 1.0, ok && c == lc)) * P.scale;
  }
  // A NaN from a uniform: a NaN constant is a shader-creation error in WGSL.
  let nan = bitcast<f32>(P.nanBits);
  rowLoss[r] = select(nan, logZ - xl, ok);
}`,
);

/** Layer norm forward, one thread per row (two-pass variance, biased as PyTorch). */
export const layerNormKernel: Kernel = kernel(
  "layerNorm",
  [
    { name: "x", access: "read" },
    { name: "gamma", access: "read" },
    { name: "beta", access: "read" },
    { name: "o", access: "rw" },
    { name: "mean", access: "rw" },
    { name: "rstd", access: "rw" },
  ],
  [["rows", "u32"], ["cols", "u32"], ["eps", "f32"]],
  ROW + `
  let nc = f32(P.cols);
  var s = 0.0;
  for (var c = 0u; c < P.cols; c++) { s += x[base + c]; }
  let mu = s / nc;
  var v = 0.0;
  for (var c = 0u; c < P.cols; c++) { let d = x[base + c] - mu; v += d * d; }
  let rs = 1.0 / sqrt(v / nc + P.eps);
  for (var c = 0u; c < P.cols; c++) { o[base + c] = (x[base + c] - mu) * rs * gamma[c] + beta[c]; }
  mean[r] = mu;
  rstd[r] = rs;
}`,
);

/** Layer norm backward, dx: one thread per row. */
export const layerNormBackwardDxKernel: Kernel = kernel(
  "layerNormBackwardDx",
  [
    { name: "x", access: "read" },
    { name: "gamma", access: "read" },
    { name: "mean", access: "read" },
    { name: "rstd", access: "read" },
    { name: "dy", access: "read" },
    { name: "dx", access: "rw" },
  ],
  [["rows", "u32"], ["cols", "u32"]],
  ROW + `
  let mu = mean[r];
  let rs = rstd[r];
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = 0u; c < P.cols; c++) {
    let g = dy[base + c] * gamma[c];
    sg += g;
    sgx += g * (x[base + c] - mu) * rs;
  }
  let nc = f32(P.cols);
  let mg = sg / nc;
  let mgx = sgx / nc;
  for (var c = 0u; c < P.cols; c++) {
    let xh = (x[base + c] - mu) * rs;
    dx[base + c] = rs * (dy[base + c] * gamma[c] - mg - xh * mgx);
  }
}`,
);

/** Layer norm backward, dGamma and dBeta (+=): one thread per column. */
export const layerNormBackwardParamsKernel: Kernel = kernel(
  "layerNormBackwardParams",
  [
    { name: "x", access: "read" },
    { name: "mean", access: "read" },
    { name: "rstd", access: "read" },
    { name: "dy", access: "read" },
    { name: "dGamma", access: "rw" },
    { name: "dBeta", access: "rw" },
  ],
  [["rows", "u32"], ["cols", "u32"]],
  `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= P.cols) { return; }
  var sg = 0.0;
  var sb = 0.0;
  for (var r = 0u; r < P.rows; r++) {
    let g = dy[r * P.cols + c];
    sb += g;
    sg += g * (x[r * P.cols + c] - mean[r]) * rstd[r];
  }
  dGamma[c] += sg;
  dBeta[c] += sb;
}`,
);

/** SGD with momentum, weight decay and Nesterov (PyTorch, dampening 0). */
export const sgdKernel: Kernel = kernel(
  "sgd",
  [
    { name: "p", access: "rw" },
    { name: "g", access: "read" },
    { name: "vel", access: "rw" },
  ],
  [["n", "u32"], ["span", "u32"], ["lr", "f32"], ["momentum", "f32"], ["wd", "f32"], [
    "nesterov",
    "u32",
  ]],
  FLAT + `
  var d = g[i] + P.wd * p[i];
  if (P.momentum != 0.0) {
    let v = P.momentum * vel[i] + d;
    vel[i] = v;
    d = select(v, d + P.momentum * v, P.nesterov != 0u);
  }
  p[i] = p[i] - P.lr * d;
}`,
);

/** Adam / AdamW (PyTorch's formulation: step = lr / bc1, denom = √v / √bc2 + eps). */
export const adamKernel: Kernel = kernel(
  "adam",
  [
    { name: "p", access: "rw" },
    { name: "g", access: "read" },
    { name: "m", access: "rw" },
    { name: "v", access: "rw" },
  ],
  [
    ["n", "u32"],
    ["span", "u32"],
    ["lr", "f32"],
    ["beta1", "f32"],
    ["beta2", "f32"],
    ["eps", "f32"],
    ["wd", "f32"],
    ["decoupled", "u32"],
    ["stepSize", "f32"],
    ["sqrtBc2", "f32"],
  ],
  FLAT + `
  var w = p[i];
  var grad = g[i];
  if (P.decoupled != 0u) { w = w * (1.0 - P.lr * P.wd); } else { grad = grad + P.wd * w; }
  let mi = P.beta1 * m[i] + (1.0 - P.beta1) * grad;
  let vi = P.beta2 * v[i] + (1.0 - P.beta2) * grad * grad;
  m[i] = mi;
  v[i] = vi;
  p[i] = w - P.stepSize * mi / (sqrt(vi) / P.sqrtBc2 + P.eps);
}`,
);

/**
 * First pass of a grid reduction: each of ≤ REDUCE_GROUPS workgroups strides over the elements
 * and writes `comps` partial sums to partial[(offset + group) · comps + comp].
 */
function gridReduce(
  key: string,
  bindings: readonly Binding[],
  extraFields: readonly Field[],
  comps: 1 | 2,
  body: string,
): Kernel {
  const acc = comps === 1 ? "f32" : "vec2<f32>";
  const zero = comps === 1 ? "0.0" : "vec2<f32>(0.0)";
  const store = comps === 1
    ? "partial[P.offset + wid.x] = sh[0];"
    : "partial[(P.offset + wid.x) * 2u] = sh[0].x;\n    partial[(P.offset + wid.x) * 2u + 1u] = sh[0].y;";
  return kernel(
    key,
    [...bindings, { name: "partial", access: "rw" }],
    [["n", "u32"], ["offset", "u32"], ...extraFields],
    `
var<workgroup> sh: array<${acc}, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  var s = ${zero};
  let stride = nwg.x * ${WG}u;
  for (var i = wid.x * ${WG}u + lid.x; i < P.n; i += stride) {
${body}
  }
  sh[lid.x] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w >> 1u) {
    if (lid.x < w) { sh[lid.x] = sh[lid.x] + sh[lid.x + w]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    ${store}
  }
}`,
  );
}

/** MSE pass 1: dPred = 2(pred − target)·scale, partial Σ(pred − target)². */
export const msePartialKernel: Kernel = gridReduce(
  "msePartial",
  [
    { name: "pred", access: "rw" },
    { name: "tgt", access: "rw" },
    { name: "d", access: "rw" },
  ],
  [["scale", "f32"]],
  1,
  `
    let e = pred[i] - tgt[i];
    d[i] = 2.0 * e * P.scale;
    s += e * e;`,
);

/** regressionSums pass 1: partial Σ|e| and Σe². */
export const regressionPartialKernel: Kernel = gridReduce(
  "regressionPartial",
  [
    { name: "pred", access: "read" },
    { name: "tgt", access: "read" },
  ],
  [],
  2,
  `
    let e = pred[i] - tgt[i];
    s += vec2<f32>(abs(e), e * e);`,
);

/** clipGradNorm pass 1 (one dispatch per gradient): partial Σg². */
export const sumSquaresPartialKernel: Kernel = gridReduce(
  "sumSquaresPartial",
  [
    { name: "g", access: "read" },
  ],
  [],
  1,
  `
    let v = g[i];
    s += v * v;`,
);

/**
 * Second pass: one workgroup sums `count` values src[j · stride + comp] in a fixed order and
 * writes dst[dstIndex]: mode 0 adds to it, mode 1 stores √sum.
 */
export const finishReduceKernel: Kernel = kernel(
  "finishReduce",
  [
    { name: "src", access: "read" },
    { name: "dst", access: "rw" },
  ],
  [["count", "u32"], ["stride", "u32"], ["comp", "u32"], ["dstIndex", "u32"], ["mode", "u32"]],
  `
var<workgroup> sh: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  var s = 0.0;
  for (var j = lid.x; j < P.count; j += ${WG}u) { s += src[j * P.stride + P.comp]; }
  sh[lid.x] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w >> 1u) {
    if (lid.x < w) { sh[lid.x] = sh[lid.x] + sh[lid.x + w]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    if (P.mode == 0u) { dst[P.dstIndex] = dst[P.dstIndex] + sh[0]; } else { dst[P.dstIndex] = sqrt(sh[0]); }
  }
}`,
);

/** clipGradNorm pass 3: g *= min(1, maxNorm / (norm + 1e-6)). */
export const clipScaleKernel: Kernel = kernel(
  "clipScale",
  [
    { name: "g", access: "rw" },
    { name: "norm", access: "read" },
  ],
  [["n", "u32"], ["span", "u32"], ["maxNorm", "f32"]],
  FLAT + `
  g[i] = g[i] * min(1.0, P.maxNorm / (norm[0] + 1e-6));
}`,
);

/** confusion: counts[label · classes + argmax] += 1 (rows with a bad label are skipped). */
export const confusionKernel: Kernel = kernel(
  "confusion",
  [
    { name: "x", access: "read" },
    { name: "labels", access: "read", type: "i32" },
    { name: "counts", access: "atomic-i32" },
  ],
  [["rows", "u32"], ["cols", "u32"]],
  ROW + `
  var best = 0u;
  var bv = x[base];
  for (var c = 1u; c < P.cols; c++) { let v = x[base + c]; if (v > bv) { bv = v; best = c; } }
  let label = labels[r];
  if (label >= 0 && u32(label) < P.cols) { atomicAdd(&counts[u32(label) * P.cols + best], 1); }
}`,
);

/**
 * topK: a row is a hit when fewer than k other classes have a logit ≥ its label's (a tie does
 * not favour the label), as the conformance suite states.
 */
export const topKKernel: Kernel = kernel(
  "topK",
  [
    { name: "x", access: "read" },
    { name: "labels", access: "read", type: "i32" },
    { name: "hits", access: "atomic-i32" },
  ],
  [["rows", "u32"], ["cols", "u32"], ["k", "u32"]],
  ROW + `
  let label = labels[r];
  if (label < 0 || u32(label) >= P.cols) { return; }
  let l = u32(label);
  let xv = x[base + l];
  var above = 0u;
  for (var c = 0u; c < P.cols; c++) {
    let v = x[base + c];
    if (c != l && v >= xv) { above++; }
  }
  if (above < P.k) { atomicAdd(&hits[0], 1); }
}`,
);

/** Options of a register-tiled matmul variant. */
export interface RegisterTiling {
  /** Output rows and columns per invocation (tn a multiple of 4). */
  readonly tm: number;
  readonly tn: number;
  /** Invocations per workgroup, side by side along the columns. */
  readonly wgx: number;
}

/** Flags that pick a matmul variant; part of the pipeline key. */
export interface MatmulFlags {
  readonly transA: boolean;
  readonly transB: boolean;
  /** m is not a multiple of the rows a workgroup covers (loads clamp, stores check). */
  readonly edgeM: boolean;
  /** n is not a multiple of the tile's columns. */
  readonly edgeN: boolean;
  /** A is not transposed and k is a multiple of 4: read A four k at a time (register family). */
  readonly vecA?: boolean;
}

const MATMUL_FIELDS: readonly Field[] = [["m", "u32"], ["n", "u32"], ["k", "u32"], [
  "accumulate",
  "u32",
]];

/**
 * The llvmpipe family: no shared memory, each invocation keeps a tm×tn block of outputs in
 * (fully unrolled) vec4 accumulators and streams k. llvmpipe runs invocations as SIMD lanes on
 * CPU cores, so a big register block amortises its gathers the way a CPU GEMM micro-kernel does.
 */
export function registerTiledMatmul(t: RegisterTiling, f: MatmulFlags): Kernel {
  const { tm, tn } = t;
  const q = tn / 4;
  const vecB = !f.transB && !f.edgeN;
  const vecO = !f.edgeN;
  const lines: string[] = [];
  // Rows come from the workgroup id, so every lane of a workgroup reads the same A element and
  // llvmpipe turns those loads into one scalar load; only B's loads are per-lane gathers. No
  // early return: columns past n are clamped on load and skipped on store, so control flow stays
  // uniform and nothing runs under an execution mask.
  lines.push(`@compute @workgroup_size(${t.wgx}, 1)`);
  lines.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {",
  );
  lines.push(`  let c0 = (wid.x * ${t.wgx}u + lid.x) * ${tn}u;`);
  lines.push(`  let r0 = wid.y * ${tm}u;`);
  for (let i = 0; i < tm; i++) {
    const r = f.edgeM ? `min(r0 + ${i}u, P.m - 1u)` : `r0 + ${i}u`;
    lines.push(f.transA ? `  let ar${i} = ${r};` : `  let ar${i} = (${r}) * P.k;`);
  }
  if (vecB) {
    lines.push(`  let cv = min(c0, P.n - ${tn}u) / 4u;`);
  } else {
    for (let j = 0; j < tn; j++) {
      const c = `min(c0 + ${j}u, P.n - 1u)`;
      lines.push(f.transB ? `  let bc${j} = (${c}) * P.k;` : `  let bc${j} = ${c};`);
    }
  }
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < q; j++) lines.push(`  var acc${i}_${j} = vec4<f32>(0.0);`);
  }
  if (f.vecA) {
    // k in steps of 4: each row's four A values are one uniform vec4 load.
    lines.push("  for (var k4 = 0u; k4 < P.k; k4 += 4u) {");
    for (let i = 0; i < tm; i++) lines.push(`    let a${i} = a[(ar${i} + k4) / 4u];`);
    for (let s = 0; s < 4; s++) {
      lines.push(`    { let kk = k4 + ${s}u;`);
      if (vecB) {
        lines.push("    let bb = kk * (P.n / 4u) + cv;");
        for (let j = 0; j < q; j++) lines.push(`    let b${j} = b[bb + ${j}u];`);
      } else {
        const bIdx = (j: number) => f.transB ? `b[bc${j} + kk]` : `b[kk * P.n + bc${j}]`;
        for (let j = 0; j < q; j++) {
          lines.push(
            `    let b${j} = vec4<f32>(${[0, 1, 2, 3].map((e) => bIdx(4 * j + e)).join(", ")});`,
          );
        }
      }
      for (let i = 0; i < tm; i++) {
        for (let j = 0; j < q; j++) {
          lines.push(`    acc${i}_${j} = fma(vec4<f32>(a${i}[${s}]), b${j}, acc${i}_${j});`);
        }
      }
      lines.push("    }");
    }
    lines.push("  }");
  } else {
    lines.push("  for (var kk = 0u; kk < P.k; kk++) {");
    if (vecB) {
      lines.push("    let bb = kk * (P.n / 4u) + cv;");
      for (let j = 0; j < q; j++) lines.push(`    let b${j} = b[bb + ${j}u];`);
    } else {
      const bIdx = (j: number) => f.transB ? `b[bc${j} + kk]` : `b[kk * P.n + bc${j}]`;
      for (let j = 0; j < q; j++) {
        lines.push(
          `    let b${j} = vec4<f32>(${[0, 1, 2, 3].map((e) => bIdx(4 * j + e)).join(", ")});`,
        );
      }
    }
    if (f.transA) lines.push("    let ak = kk * P.m;");
    for (let i = 0; i < tm; i++) {
      lines.push(`    let a${i} = ${f.transA ? `a[ak + ar${i}]` : `a[ar${i} + kk]`};`);
      for (let j = 0; j < q; j++) {
        lines.push(`    acc${i}_${j} = fma(vec4<f32>(a${i}), b${j}, acc${i}_${j});`);
      }
    }
    lines.push("  }");
  }
  lines.push("  let add = P.accumulate != 0u;");
  lines.push("  if (c0 >= P.n) { return; }");
  if (!vecO) lines.push(`  var rowv: array<vec4<f32>, ${q}>;`);
  for (let i = 0; i < tm; i++) {
    const guard = f.edgeM ? `if (r0 + ${i}u < P.m) ` : "";
    lines.push(`  ${guard}{`);
    lines.push(`    let ob = (r0 + ${i}u) * P.n + c0;`);
    for (let j = 0; j < q; j++) {
      if (vecO) {
        lines.push(
          `    { let at = ob / 4u + ${j}u; var v = acc${i}_${j}; if (add) { v += o[at]; } o[at] = v; }`,
        );
      } else {
        lines.push(`    rowv[${j}] = acc${i}_${j};`);
      }
    }
    if (!vecO) {
      // A loop over a row copy rather than tn unrolled guarded stores: much less code to compile.
      lines.push(`    for (var j = 0u; j < ${tn}u; j++) {`);
      lines.push(
        "      if (c0 + j < P.n) { let at = ob + j; var v = rowv[j / 4u][j % 4u]; if (add) { v += o[at]; } o[at] = v; }",
      );
      lines.push("    }");
    }
    lines.push("  }");
  }
  lines.push("}");
  const key = `mm-reg:${tm}x${tn}:${t.wgx}:${+f.transA}${+f.transB}${+f.edgeM}${+f
    .edgeN}${+(f.vecA === true)}`;
  return kernel(
    key,
    [
      { name: "a", access: "read", type: f.vecA ? "vec4<f32>" : "f32" },
      { name: "b", access: "read", type: vecB ? "vec4<f32>" : "f32" },
      { name: "o", access: "rw", type: vecO ? "vec4<f32>" : "f32" },
    ],
    MATMUL_FIELDS,
    lines.join("\n"),
  );
}

/**
 * The real-GPU family: (4·threads)² output tiles staged through workgroup memory, threads² per
 * workgroup, 4×4 outputs per thread, k in steps of 16. `threads` is 16 on a GPU; 8 on a software
 * adapter, where llvmpipe's compile time grows with the workgroup (≈20 s cold at 16, ≈4 s at 8).
 */
export function workgroupTiledMatmul(f: MatmulFlags, threads: 8 | 16): Kernel {
  const T = threads;
  const S = 4 * threads;
  const per = (16 * S) / (T * T); // tile elements each thread loads, of A and of B
  const aIdx = f.transA ? "kk * P.m + row" : "row * P.k + kk";
  const bIdx = f.transB ? "col * P.k + kk" : "kk * P.n + col";
  const code = /* wgsl */ `
var<workgroup> As: array<f32, ${16 * S}>;
var<workgroup> Bs: array<f32, ${16 * S}>;
fn loadA(row: u32, kk: u32) -> f32 {
  if (row < P.m && kk < P.k) { return a[${aIdx}]; }
  return 0.0;
}
fn loadB(kk: u32, col: u32) -> f32 {
  if (kk < P.k && col < P.n) { return b[${bIdx}]; }
  return 0.0;
}
@compute @workgroup_size(${T}, ${T})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tid = lid.y * ${T}u + lid.x;
  let rowBase = wid.y * ${S}u;
  let colBase = wid.x * ${S}u;
  var acc: array<vec4<f32>, 4>;
  for (var t = 0u; t < P.k; t += 16u) {
    for (var l = 0u; l < ${per}u; l++) {
      let e = tid + l * ${T * T}u;
      ${
    f.transA ? `let ar = e % ${S}u; let ak = e / ${S}u;` : "let ar = e / 16u; let ak = e % 16u;"
  }
      As[ak * ${S}u + ar] = loadA(rowBase + ar, t + ak);
      ${
    f.transB ? "let bc = e / 16u; let bk = e % 16u;" : `let bc = e % ${S}u; let bk = e / ${S}u;`
  }
      Bs[bk * ${S}u + bc] = loadB(t + bk, colBase + bc);
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let bo = kk * ${S}u + lid.x;
      let bv = vec4<f32>(Bs[bo], Bs[bo + ${T}u], Bs[bo + ${2 * T}u], Bs[bo + ${3 * T}u]);
      for (var i = 0u; i < 4u; i++) {
        acc[i] = fma(vec4<f32>(As[kk * ${S}u + lid.y + ${T}u * i]), bv, acc[i]);
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let row = rowBase + lid.y + ${T}u * i;
    if (row < P.m) {
      for (var j = 0u; j < 4u; j++) {
        let col = colBase + lid.x + ${T}u * j;
        if (col < P.n) {
          let at = row * P.n + col;
          var v = acc[i][j];
          if (P.accumulate != 0u) { v += o[at]; }
          o[at] = v;
        }
      }
    }
  }
}`;
  return kernel(
    `mm-wg:${T}:${+f.transA}${+f.transB}`,
    [
      { name: "a", access: "read" },
      { name: "b", access: "read" },
      { name: "o", access: "rw" },
    ],
    MATMUL_FIELDS,
    code,
  );
}

/**
 * One output per invocation, a plain k loop: for small products, where the unrolled families'
 * compile time (seconds on llvmpipe) would cost more than it saves.
 */
export function smallMatmul(transA: boolean, transB: boolean): Kernel {
  const aIdx = transA ? "kk * P.m + r" : "r * P.k + kk";
  const bIdx = transB ? "c * P.k + kk" : "kk * P.n + c";
  return kernel(
    `mm-small:${+transA}${+transB}`,
    [
      { name: "a", access: "read" },
      { name: "b", access: "read" },
      { name: "o", access: "rw" },
    ],
    MATMUL_FIELDS,
    `
@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let r = gid.y;
  if (r >= P.m || c >= P.n) { return; }
  var s = 0.0;
  for (var kk = 0u; kk < P.k; kk++) { s = fma(a[${aIdx}], b[${bIdx}], s); }
  let at = r * P.n + c;
  if (P.accumulate != 0u) { s += o[at]; }
  o[at] = s;
}`,
  );
}

/**
 * The small-product kernel for llvmpipe-like adapters: invocations along the rows
 * (`rowsOnLanes`) or the columns of the output, each keeping `rb` of those and `tile` outputs of
 * the other dimension in registers. The tile's operand is indexed by the workgroup id only, so a
 * SIMD group shares its loads; `rb` lane rows reuse each of them. Small workgroups (one 256-bit
 * SIMD group) keep a 128-row product spread over several cores.
 */
export function laneMatmul(
  transA: boolean,
  transB: boolean,
  rowsOnLanes: boolean,
  tile: 1 | 4 | 16,
  rb: number,
  lanes: number,
): Kernel {
  const R = rowsOnLanes;
  const lines: string[] = [];
  lines.push(`@compute @workgroup_size(${lanes}, 1)`);
  lines.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {",
  );
  const LD = R ? "P.m" : "P.n";
  const TD = R ? "P.n" : "P.m";
  lines.push(`  let l0 = wid.x * ${lanes * rb}u + lid.x;`);
  lines.push(`  let t0 = wid.y * ${tile}u;`);
  let laneIdx: (i: number) => string;
  let tileIdx: (j: number) => string;
  // Lane i's index along its dimension is l0 + i·lanes (clamped for loads).
  for (let i = 0; i < rb; i++) {
    const lc = `min(l0 + ${i * lanes}u, ${LD} - 1u)`;
    const strided = R ? !transA : transB;
    lines.push(strided ? `  let la${i} = (${lc}) * P.k;` : `  let la${i} = ${lc};`);
  }
  for (let j = 0; j < tile; j++) {
    const t = `min(t0 + ${j}u, ${TD} - 1u)`;
    const strided = R ? transB : !transA;
    lines.push(strided ? `  let tb${j} = (${t}) * P.k;` : `  let tb${j} = ${t};`);
  }
  if (R) {
    laneIdx = transA ? (i) => `a[kk * P.m + la${i}]` : (i) => `a[la${i} + kk]`;
    tileIdx = transB ? (j) => `b[tb${j} + kk]` : (j) => `b[kk * P.n + tb${j}]`;
  } else {
    laneIdx = transB ? (i) => `b[la${i} + kk]` : (i) => `b[kk * P.n + la${i}]`;
    tileIdx = transA ? (j) => `a[kk * P.m + tb${j}]` : (j) => `a[tb${j} + kk]`;
  }
  for (let i = 0; i < rb; i++) {
    for (let j = 0; j < tile; j++) lines.push(`  var acc${i}_${j} = 0.0;`);
  }
  lines.push("  for (var kk = 0u; kk < P.k; kk++) {");
  for (let i = 0; i < rb; i++) lines.push(`    let x${i} = ${laneIdx(i)};`);
  for (let j = 0; j < tile; j++) {
    lines.push(`    let y${j} = ${tileIdx(j)};`);
    for (let i = 0; i < rb; i++) {
      // a·b in that order, as the other kernels multiply.
      lines.push(
        R
          ? `    acc${i}_${j} = fma(x${i}, y${j}, acc${i}_${j});`
          : `    acc${i}_${j} = fma(y${j}, x${i}, acc${i}_${j});`,
      );
    }
  }
  lines.push("  }");
  lines.push("  let add = P.accumulate != 0u;");
  // A loop over a copy of each lane row rather than rb·tile unrolled guarded stores: much less
  // code for llvmpipe to compile.
  lines.push(`  var row: array<f32, ${tile}>;`);
  for (let i = 0; i < rb; i++) {
    lines.push(`  { let l = l0 + ${i * lanes}u; if (l < ${LD}) {`);
    for (let j = 0; j < tile; j++) lines.push(`    row[${j}] = acc${i}_${j};`);
    const at = R ? "l * P.n + t0 + j" : "(t0 + j) * P.n + l";
    lines.push(`    for (var j = 0u; j < min(${tile}u, ${TD} - t0); j++) {`);
    lines.push(`      let at = ${at}; var v = row[j]; if (add) { v += o[at]; } o[at] = v;`);
    lines.push("    }");
    lines.push("  } }");
  }
  lines.push("}");
  return kernel(
    `mm-lane:${+transA}${+transB}${+R}:${tile}:${rb}:${lanes}`,
    [
      { name: "a", access: "read" },
      { name: "b", access: "read" },
      { name: "o", access: "rw" },
    ],
    MATMUL_FIELDS,
    lines.join("\n"),
  );
}
