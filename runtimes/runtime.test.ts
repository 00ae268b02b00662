import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { detectRuntime } from "./mod.ts";
import { testRuntime } from "./_conformance.ts";

const runtime = await detectRuntime();
const host = globalThis as {
  Deno?: { version: { deno: string }; execPath(): string };
  Bun?: { version: string; argv: readonly string[] };
};

testRuntime(runtime, {
  scriptCommand: (file) =>
    host.Deno !== undefined
      ? [host.Deno.execPath(), "run", "--allow-all", file]
      : [host.Bun?.argv[0] ?? "bun", file],
});

describe(`the ${runtime.name} adapter`, () => {
  test("detectRuntime picks the host this test runs on", () => {
    if (host.Deno !== undefined) {
      assert.equal(runtime.name, "deno");
      assert.equal(runtime.version, host.Deno.version.deno);
    } else {
      assert.ok(host.Bun !== undefined);
      assert.equal(runtime.name, "bun");
      assert.equal(runtime.version, host.Bun.version);
    }
  });

  test("provides every optional member", () => {
    assert.ok(runtime.fs !== undefined);
    assert.ok(runtime.processes !== undefined);
    assert.equal(typeof runtime.serve, "function");
    assert.equal(typeof runtime.openSqlite, "function");
    assert.equal(typeof runtime.createWorker, "function");
    assert.equal(typeof runtime.denoPath, "function");
    assert.ok(Number.isInteger(runtime.pid) && runtime.pid! > 0, "pid is set on Deno and Bun");
    assert.equal(typeof runtime.gpu, "function");
  });

  test("denoPath and gpu match the host", () => {
    if (host.Deno !== undefined) {
      assert.equal(runtime.denoPath?.(), host.Deno.execPath());
      // Deno exposes navigator.gpu (a software adapter where no GPU is present).
      assert.equal(typeof runtime.gpu?.()?.requestAdapter, "function");
    } else {
      // Bun has no WebGPU; denoPath is the deno binary Keel depends on.
      assert.equal(runtime.gpu?.(), undefined);
      assert.match(runtime.denoPath?.() ?? "", /\/deno(\.exe)?$/);
    }
  });

  test("cwd is the process's working directory", async () => {
    const out = await runtime.processes?.run("sh", { args: ["-c", "pwd -P"] });
    assert.equal(out?.stdout, `${await runtime.fs?.realPath(runtime.cwd())}\n`);
  });
});
