import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { detectRuntime } from "../runtimes/mod.ts";
import type { ChildProcess, RuntimeProcesses } from "./runtime.ts";
import { superviseProcess } from "./supervise.ts";

/** Throws unless no process `pid` exists any more. */
function assertGone(pid: number): void {
  assert.throws(() => process.kill(pid, 0), { code: "ESRCH" }, `process ${pid} is still running`);
}

describe("superviseProcess", () => {
  let processes: RuntimeProcesses;
  before(async () => {
    const runtime = await detectRuntime();
    assert.ok(runtime.processes, `runtime "${runtime.name}" has no processes`);
    processes = runtime.processes;
  });

  function sh(script: string, stdin: "piped" | "null" = "null"): ChildProcess {
    return processes.spawn("sh", { args: ["-c", script], stdin, stdout: "piped", stderr: "piped" });
  }

  test("feeds stdin, collects both streams and reports a normal exit", async () => {
    let out = "";
    let err = "";
    const result = await superviseProcess(sh("cat; echo oops >&2; exit 3", "piped"), {
      stdin: "hello",
      timeoutMs: 30_000,
      onStdout: (text) => (out += text),
      onStderr: (text) => (err += text),
    });
    assert.deepEqual(result, { status: { success: false, code: 3, signal: null }, stopped: null });
    assert.equal(out, "hello");
    assert.equal(err, "oops\n");
  });

  test("kills the child with SIGKILL when the deadline passes", async () => {
    const child = sh("exec sleep 30");
    const { status, stopped } = await superviseProcess(child, { timeoutMs: 50 });
    assert.equal(stopped, "timeout");
    assert.equal(status.success, false);
    assert.equal(status.signal, "SIGKILL");
    assertGone(child.pid);
  });

  test("kills the child when the signal aborts", async () => {
    const controller = new AbortController();
    const child = sh("echo ready; exec sleep 30");
    let out = "";
    const { status, stopped } = await superviseProcess(child, {
      signal: controller.signal,
      onStdout: (text) => {
        out += text;
        controller.abort();
      },
    });
    assert.equal(stopped, "abort");
    assert.equal(status.signal, "SIGKILL");
    assert.equal(out, "ready\n");
    assertGone(child.pid);
  });

  test("a signal aborted before the call kills the child at once", async () => {
    const { stopped, status } = await superviseProcess(sh("exec sleep 30"), { signal: AbortSignal.abort() });
    assert.equal(stopped, "abort");
    assert.equal(status.signal, "SIGKILL");
  });

  test("stops waiting for output after the grace period when a grandchild holds the pipes", async () => {
    let out = "";
    const { status, stopped } = await superviseProcess(sh("sleep 30 & echo $!"), {
      drainGraceMs: 50,
      onStdout: (text) => (out += text),
    });
    const grandchild = Number(out.trim());
    try {
      assert.equal(stopped, null);
      assert.equal(status.code, 0);
      assert.ok(Number.isInteger(grandchild) && grandchild > 0, `expected a pid, got ${JSON.stringify(out)}`);
      assert.doesNotThrow(() => process.kill(grandchild, 0), "the grandchild is not killed with its parent");
    } finally {
      if (grandchild > 0) process.kill(grandchild, "SIGKILL");
    }
  });
});
