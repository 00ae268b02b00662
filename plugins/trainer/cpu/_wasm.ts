/**
 * A tiny WebAssembly text assembler for the kernel modules this folder ships (there is no wabt
 * here). It reads flat (unfolded) WAT: one `(memory ...)` or one imported shared memory,
 * functions with named `(param)` and `(local)` declarations, and one instruction per line from a small set of opcodes (i32
 * arithmetic, locals, block/loop/br/br_if, v128 loads, stores and f32x4 arithmetic). Anything
 * else is a `SyntaxError`. The test re-assembles the kernel's WAT and checks it equals the
 * embedded bytes, so the text and the binary cannot drift apart.
 * @module
 */

const TYPES: Record<string, number> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b };

/** Plain opcodes without immediates. */
const SIMPLE: Record<string, number[]> = {
  "i32.add": [0x6a],
  "i32.sub": [0x6b],
  "i32.mul": [0x6c],
  "i32.shl": [0x74],
  "i32.shr_u": [0x76],
  "i32.and": [0x71],
  "i32.eq": [0x46],
  "i32.ne": [0x47],
  "i32.lt_u": [0x49],
  "i32.lt_s": [0x48],
  "i32.ge_u": [0x4f],
  "i32.eqz": [0x45],
  "f32.add": [0x92],
  "f32.mul": [0x94],
  "drop": [0x1a],
  "return": [0x0f],
  "end": [0x0b],
  // SIMD (0xfd prefix, LEB128 sub-opcode)
  "f32x4.add": [0xfd, 0xe4, 0x01],
  "f32x4.sub": [0xfd, 0xe5, 0x01],
  "f32x4.mul": [0xfd, 0xe6, 0x01],
  "f32x4.splat": [0xfd, 0x13],
};

/** Memory instructions: opcode bytes and natural alignment (log2). */
const MEMORY: Record<string, [number[], number]> = {
  "i32.load": [[0x28], 2],
  "f32.load": [[0x2a], 2],
  "i32.store": [[0x36], 2],
  "f32.store": [[0x38], 2],
  "v128.load": [[0xfd, 0x00], 4],
  "v128.load32_splat": [[0xfd, 0x09], 2],
  "v128.store": [[0xfd, 0x0b], 4],
};

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

function name(s: string): number[] {
  const bytes = [...new TextEncoder().encode(s)];
  return [...uleb(bytes.length), ...bytes];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

interface Func {
  exportName: string | undefined;
  params: string[];
  paramTypes: number[];
  results: number[];
  locals: [string, number][];
  body: string[];
}

/** Assembles the WAT subset described in the module comment into a wasm binary. */
export function assembleWat(wat: string): Uint8Array<ArrayBuffer> {
  const lines = wat.split("\n").map((l) => l.replace(/;;.*$/, "").trim()).filter((l) => l !== "");
  let memory: { min: number; exportName: string | undefined } | undefined;
  let importedMemory: { module: string; field: string; min: number; max: number } | undefined;
  const funcs: Func[] = [];
  let cur: Func | undefined;
  for (const line of lines) {
    if (line === "(module" || line === ")" || line === "))") {
      if (line !== "(module" && cur !== undefined) {
        funcs.push(cur);
        cur = undefined;
      }
      continue;
    }
    const mem = /^\(memory(?: \(export "([^"]+)"\))? (\d+)\)$/.exec(line);
    if (mem !== null) {
      memory = { exportName: mem[1], min: Number(mem[2]) };
      continue;
    }
    const imp = /^\(import "(\w+)" "(\w+)" \(memory (\d+) (\d+) shared\)\)$/.exec(line);
    if (imp !== null) {
      importedMemory = { module: imp[1]!, field: imp[2]!, min: Number(imp[3]), max: Number(imp[4]) };
      continue;
    }
    if (line.startsWith("(func")) {
      const exp = /\(export "([^"]+)"\)/.exec(line);
      cur = { exportName: exp?.[1], params: [], paramTypes: [], results: [], locals: [], body: [] };
      for (const m of line.matchAll(/\(param \$(\w+) (\w+)\)/g)) {
        cur.params.push(m[1]!);
        cur.paramTypes.push(TYPES[m[2]!]!);
      }
      for (const m of line.matchAll(/\(result (\w+)\)/g)) cur.results.push(TYPES[m[1]!]!);
      continue;
    }
    if (cur === undefined) throw new SyntaxError(`WAT line outside a function: ${line}`);
    const local = /^\(local \$(\w+) (\w+)\)$/.exec(line);
    if (local !== null) {
      cur.locals.push([local[1]!, TYPES[local[2]!]!]);
      continue;
    }
    cur.body.push(line);
  }
  if (cur !== undefined) funcs.push(cur);

  const types = funcs.map((f) => [0x60, ...vec(f.paramTypes.map((t) => [t])), ...vec(f.results.map((t) => [t]))]);
  const codes = funcs.map((f) => {
    const index = new Map<string, number>();
    f.params.forEach((p, i) => index.set(p, i));
    f.locals.forEach(([l], i) => index.set(l, f.params.length + i));
    // locals, grouped by runs of one type
    const groups: number[][] = [];
    for (const [, t] of f.locals) {
      const last = groups.at(-1);
      if (last !== undefined && last[1] === t) last[0]!++;
      else groups.push([1, t]);
    }
    const code: number[] = [...uleb(groups.length), ...groups.flatMap(([n, t]) => [...uleb(n!), t!])];
    const labels: string[] = [];
    for (const line of f.body) {
      const [op, ...args] = line.split(/\s+/) as [string, ...string[]];
      const localIndex = (a: string | undefined): number => {
        const i = a !== undefined && a.startsWith("$") ? index.get(a.slice(1)) : undefined;
        if (i === undefined) throw new SyntaxError(`Unknown local ${a} in: ${line}`);
        return i;
      };
      if (op === "local.get" || op === "local.set" || op === "local.tee") {
        code.push(op === "local.get" ? 0x20 : op === "local.set" ? 0x21 : 0x22, ...uleb(localIndex(args[0])));
      } else if (op === "i32.const") {
        code.push(0x41, ...sleb(Number(args[0])));
      } else if (op === "block" || op === "loop") {
        labels.push(args[0] ?? "");
        code.push(op === "block" ? 0x02 : 0x03, 0x40);
      } else if (op === "if") {
        labels.push(args[0] ?? "");
        code.push(0x04, 0x40);
      } else if (op === "else") {
        code.push(0x05);
      } else if (op === "end") {
        labels.pop();
        code.push(0x0b);
      } else if (op === "br" || op === "br_if") {
        const depth = labels.length - 1 - labels.lastIndexOf(args[0] ?? "");
        if (depth >= labels.length) throw new SyntaxError(`Unknown label in: ${line}`);
        code.push(op === "br" ? 0x0c : 0x0d, ...uleb(depth));
      } else if (op === "v128.const") {
        if (args[0] !== "i32x4" || args.length !== 5) throw new SyntaxError(`Only "v128.const i32x4 a b c d" is supported: ${line}`);
        code.push(0xfd, 0x0c);
        for (const a of args.slice(1)) {
          const v = Number(a) >>> 0;
          code.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
        }
      } else if (op in MEMORY) {
        const [bytes, align] = MEMORY[op]!;
        let offset = 0;
        for (const a of args) {
          const m = /^offset=(\d+)$/.exec(a);
          if (m === null) throw new SyntaxError(`Bad memory argument in: ${line}`);
          offset = Number(m[1]);
        }
        code.push(...bytes, ...uleb(align), ...uleb(offset));
      } else if (op in SIMPLE && args.length === 0) {
        code.push(...SIMPLE[op]!);
      } else {
        throw new SyntaxError(`Unsupported WAT instruction: ${line}`);
      }
    }
    code.push(0x0b);
    return [...uleb(code.length), ...code];
  });

  const exports: number[][] = [];
  funcs.forEach((f, i) => {
    if (f.exportName !== undefined) exports.push([...name(f.exportName), 0x00, ...uleb(i)]);
  });
  if (memory?.exportName !== undefined) exports.push([...name(memory.exportName), 0x02, 0x00]);

  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...(importedMemory === undefined ? [] : section(2, vec([[
      ...name(importedMemory.module), ...name(importedMemory.field), 0x02, 0x03, ...uleb(importedMemory.min), ...uleb(importedMemory.max),
    ]]))),
    ...section(3, vec(funcs.map((_, i) => uleb(i)))),
    ...(memory === undefined ? [] : section(5, vec([[0x00, ...uleb(memory.min)]]))),
    ...section(7, vec(exports)),
    ...section(10, vec(codes)),
  ];
  return new Uint8Array(bytes);
}

/** Base64 of bytes (web-standard `btoa`). */
export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** Bytes of a base64 string (web-standard `atob`). */
export function fromBase64(b64: string): Uint8Array<ArrayBuffer> {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
