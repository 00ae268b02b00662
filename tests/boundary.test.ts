/**
 * The import boundaries of DESIGN.md, checked on the source:
 * - `core/` and `mod.ts` name no runtime global (`Deno`, `Bun`, `process`) and import no `node:*`
 *   module and no npm package outside a short edge-safe allow-list;
 * - `plugins/*` import only `core/mod.ts` (plus npm packages);
 * - nothing imports `cli/`; `runtimes/` import only `core/`.
 * The type side of the same rule is `deno check --config .ci/core.deno.json mod.ts`.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";

const ROOT = new URL("../", import.meta.url);
const EDGE_SAFE_PACKAGES = new Set(["std-semver", "js-yaml"]);

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    for (const entry of await readdir(new URL(rel, ROOT), { withFileTypes: true })) {
      const path = `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        if (entry.name !== "node_modules" && entry.name !== "fixtures") await walk(path);
      } else if (/\.(ts|mts|js|mjs)$/.test(entry.name) && !/\.test\.ts$|_conformance\.ts$|\.d\.ts$/.test(entry.name)) {
        out.push(path);
      }
    }
  }
  await walk(dir);
  return out.sort();
}

/** Source without comments (doc examples may import anything). */
function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

/** Code with comments and string contents blanked, so docs and messages may mention `Deno`. */
function codeOnly(text: string): string {
  return stripComments(text)
    .replace(/`(?:\\.|[^`\\])*`/g, "``")
    .replace(/"(?:\\.|[^"\\\n])*"/g, '""')
    .replace(/'(?:\\.|[^'\\\n])*'/g, "''");
}

function specifiers(source: string): string[] {
  const text = stripComments(source);
  const out: string[] = [];
  const re = /(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|import\s+["']([^"']+)["']/g;
  for (const m of text.matchAll(re)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

function resolveSpecifier(from: string, spec: string): string {
  return new URL(spec, new URL(from, ROOT)).pathname.slice(new URL(ROOT).pathname.length);
}

async function read(path: string): Promise<string> {
  return await readFile(new URL(path, ROOT), "utf8");
}

/** Violations of the runtime-free rule in one file. */
export function runtimeViolations(text: string): string[] {
  const found: string[] = [];
  const code = codeOnly(text);
  for (const name of ["Deno", "Bun", "process", "__dirname", "Buffer"]) {
    if (new RegExp(`(?<![\\w.$])${name}\\b(?!\\s*:)`).test(code)) found.push(`names ${name}`);
  }
  if (/(?<![\w.$])require\s*\(/.test(code)) found.push("names require");
  for (const spec of specifiers(text)) {
    if (spec.startsWith("node:") || spec.startsWith("bun:") || spec.startsWith("jsr:")) found.push(`imports ${spec}`);
    else if (!spec.startsWith(".") && !EDGE_SAFE_PACKAGES.has(spec.replace(/^npm:/, "").replace(/@[^/]*$/, ""))) {
      found.push(`imports ${spec}, which is not on the edge-safe list`);
    }
  }
  return found;
}

describe("import boundaries", () => {
  test("the checker itself flags runtime globals and node: imports", () => {
    assert.deepEqual(runtimeViolations('const x = Deno.cwd();'), ["names Deno"]);
    assert.deepEqual(runtimeViolations('import fs from "node:fs";'), ["imports node:fs"]);
    assert.deepEqual(runtimeViolations('if (process.env.X) {}'), ["names process"]);
    assert.deepEqual(runtimeViolations('import x from "lodash";'), ["imports lodash, which is not on the edge-safe list"]);
    assert.deepEqual(runtimeViolations('/** Deno.cwd() in a doc */ const s = "process";'), []);
    assert.deepEqual(runtimeViolations('import { parse } from "std-semver";'), []);
    assert.deepEqual(runtimeViolations('const m = require("x");'), ["names require"]);
    assert.deepEqual(runtimeViolations('const ctx = { require<T>(k: T) { return k; } }; ctx.require(1);'), []);
  });

  test("core/ and mod.ts are runtime-free", async () => {
    const files = ["mod.ts", ...(await sources("core"))];
    assert.ok(files.length > 5, "expected core sources to check");
    const problems: string[] = [];
    for (const file of files) {
      for (const v of runtimeViolations(await read(file))) problems.push(`${file}: ${v}`);
    }
    assert.deepEqual(problems, []);
  });

  test("core/ imports nothing outside core/", async () => {
    const problems: string[] = [];
    for (const file of await sources("core")) {
      for (const spec of specifiers(await read(file))) {
        if (spec.startsWith(".") && !resolveSpecifier(file, spec).startsWith("core/")) problems.push(`${file} -> ${spec}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test("plugins import only core/mod.ts from the repository", async () => {
    const problems: string[] = [];
    for (const file of await sources("plugins")) {
      const own = file.split("/").slice(0, 2).join("/") + "/";
      for (const spec of specifiers(await read(file))) {
        if (!spec.startsWith(".")) continue;
        const target = resolveSpecifier(file, spec);
        if (target !== "core/mod.ts" && !target.startsWith(own)) problems.push(`${file} -> ${spec}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test("registry/ imports only core/ and itself, and names no runtime global (it runs on Deno, Bun and edge hosts)", async () => {
    const problems: string[] = [];
    for (const file of await sources("registry")) {
      if (/\.test\.ts$|conformance\.ts$/.test(file)) continue; // test code
      const text = await read(file);
      for (const spec of specifiers(text)) {
        if (spec.startsWith("node:")) problems.push(`${file} -> ${spec}`);
        if (!spec.startsWith(".")) continue;
        const target = resolveSpecifier(file, spec);
        if (!target.startsWith("core/") && !target.startsWith("registry/")) problems.push(`${file} -> ${spec}`);
      }
      for (const line of text.split("\n")) {
        const code = line.replace(/\/\/.*$/, "");
        if (/^\s*\*/.test(line)) continue;
        if (/\b(?:Deno|Bun|process)\.[a-z]/.test(code)) problems.push(`${file}: ${line.trim()}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test("nothing imports cli/, and runtimes/ import only core/", async () => {
    const problems: string[] = [];
    for (const dir of ["core", "runtimes", "plugins", "examples", "registry", "tests", "bench"]) {
      let files: string[] = [];
      try {
        files = await sources(dir);
      } catch {
        continue; // a folder that does not exist yet
      }
      for (const file of files) {
        for (const spec of specifiers(await read(file))) {
          if (!spec.startsWith(".")) continue;
          const target = resolveSpecifier(file, spec);
          if (target.startsWith("cli/")) problems.push(`${file} -> ${spec}`);
          if (dir === "runtimes" && !target.startsWith("core/") && !target.startsWith("runtimes/")) problems.push(`${file} -> ${spec}`);
        }
      }
    }
    assert.deepEqual(problems, []);
  });
});
