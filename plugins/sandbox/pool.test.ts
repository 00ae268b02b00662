import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import process from "node:process";
import type { ChildProcess, ProcessStatus, Runtime, SandboxOutcome, SandboxRun, SpawnOptions } from "../../core/mod.ts";
import { testSandbox } from "../../core/sandbox/_conformance.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import { isRunning, rejectsWith } from "../../tests/helpers.ts";
import { createProcessSandbox, denoSpawner, type ProcessSandbox, type ProcessSandboxOptions } from "./pool.ts";

testSandbox("deno-ses", async () => createProcessSandbox({ spawnDeno: denoSpawner(await detectRuntime()) }));

/** A run as the executor would send it, with tool calls going to `callTool`. */
function job(code: string, callTool: SandboxRun["callTool"] = () => Promise.resolve(null), extra: Partial<SandboxRun> = {}): SandboxRun {
  return { code, context: {}, timeoutMs: 20_000, memoryMb: 64, maxLogBytes: 10_000, callTool, ...extra };
}

/** A promise with its resolve function outside. */
function gate<T = void>(): { promise: Promise<T>; open(value: T): void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

/** Resolves on the `n`th tool call of a run; the call itself waits for `release`. */
function heldTool(): { called: Promise<void>; release(value: unknown): void; callTool: SandboxRun["callTool"] } {
  const called = gate();
  const released = gate<unknown>();
  return {
    called: called.promise,
    release: released.open,
    callTool: () => {
      called.open();
      return released.promise;
    },
  };
}

const HOLD = "async () => await tools.hold({})";

describe("deno-ses process pool", () => {
  let runtime: Runtime;
  const children: ChildProcess[] = [];
  const pools: ProcessSandbox[] = [];

  before(async () => {
    runtime = await detectRuntime();
  });
  after(async () => {
    await Promise.all(pools.map((p) => p.close()));
  });

  /** A pool whose processes are recorded in `children`. */
  function pool(options: Partial<ProcessSandboxOptions> = {}): { sandbox: ProcessSandbox; spawned: ChildProcess[] } {
    const spawn = denoSpawner(runtime);
    const spawned: ChildProcess[] = [];
    const sandbox = createProcessSandbox({
      spawnDeno: (args, opts) => {
        const child = spawn(args, opts);
        spawned.push(child);
        children.push(child);
        return child;
      },
      ...options,
    });
    pools.push(sandbox);
    return { sandbox, spawned };
  }

  test("a run past its deadline has its process killed and replaced, while a run in another process completes", async () => {
    const { sandbox, spawned } = pool({ maxProcesses: 2, minProcesses: 2 });
    await sandbox.warm();
    assert.equal(spawned.length, 2);
    const held = heldTool();
    const healthy = sandbox.run(job(HOLD, held.callTool));
    await held.called;
    const looping = await sandbox.run(job("async () => { while (true) {} }", undefined, { timeoutMs: 300 }));
    assert.equal(looping.error?.code, "E_SANDBOX_TIMEOUT");
    held.release("still here");
    const out = await healthy;
    assert.equal(out.ok, true, JSON.stringify(out.error));
    assert.equal(out.value, "still here");

    const statuses = await Promise.race(
      spawned.map((c, i) => c.status.then((s): [number, ProcessStatus] => [i, s])),
    );
    const [dead, status] = statuses;
    assert.equal(status.signal, "SIGKILL");
    assert.equal(isRunning(spawned[dead]!.pid), false);
    assert.equal(isRunning(spawned[1 - dead]!.pid), true);
    assert.equal(sandbox.stats().killed, 1);

    // Two runs at once need two processes: the survivor and a new one.
    const both = await Promise.all([sandbox.run(job("async () => 1")), sandbox.run(job("async () => 2"))]);
    assert.deepEqual(both.map((o) => o.value), [1, 2]);
    assert.equal(spawned.length, 3);
    assert.equal(sandbox.stats().started, 3);
    assert.ok(!spawned.slice(0, 2).some((c) => c.pid === spawned[2]!.pid));
  });

  test("maxProcesses is honoured: runs wait in a queue and complete in order", async () => {
    const { sandbox, spawned } = pool({ maxProcesses: 1 });
    await sandbox.warm();
    const order: number[] = [];
    const seen: number[] = [];
    const runs = Array.from({ length: 6 }, (_, i) =>
      sandbox.run(job(`async () => await tools.note({ i: ${i} })`, (_name, input) => {
        seen.push((input as { i: number }).i);
        return Promise.resolve((input as { i: number }).i);
      })).then((o) => {
        order.push(o.value as number);
        return o;
      }));
    assert.deepEqual({ ...sandbox.stats(), started: 0, killed: 0 }, { processes: 1, busy: 1, queued: 5, started: 0, killed: 0 });
    const outs = await Promise.all(runs);
    assert.deepEqual(outs.map((o) => o.value), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5]);
    assert.equal(spawned.length, 1);
    assert.equal(sandbox.stats().queued, 0);
  });

  test("a run past maxQueue is refused with E_SANDBOX_BUSY; the others complete", async () => {
    const { sandbox } = pool({ maxProcesses: 1, maxQueue: 1 });
    await sandbox.warm();
    const held = heldTool();
    const first = sandbox.run(job(HOLD, held.callTool));
    await held.called;
    const second = sandbox.run(job("async () => 'second'"));
    await rejectsWith(sandbox.run(job("async () => 'third'")), "E_SANDBOX_BUSY", /maxQueue/);
    held.release("first");
    assert.deepEqual([(await first).value, (await second).value], ["first", "second"]);
  });

  test("an abort stops code stuck in a synchronous loop with E_SANDBOX_ABORTED, and the next run works", async () => {
    const { sandbox } = pool({ maxProcesses: 1 });
    await sandbox.warm();
    const controller = new AbortController();
    const out = await sandbox.run(job(
      "async () => { await tools.looping({}); while (true) {} }",
      () => {
        // Answered first, so the code goes on into its loop; the abort comes after.
        setTimeout(() => controller.abort(), 50);
        return Promise.resolve(null);
      },
      { signal: controller.signal, timeoutMs: 60_000 },
    ));
    assert.equal(out.error?.code, "E_SANDBOX_ABORTED");
    assert.equal(sandbox.stats().killed, 1);
    assert.equal((await sandbox.run(job("async () => 'next'"))).value, "next");
  });

  test("an abort while queued ends that run with E_SANDBOX_ABORTED and leaves the process alone", async () => {
    const { sandbox, spawned } = pool({ maxProcesses: 1 });
    await sandbox.warm();
    const held = heldTool();
    const first = sandbox.run(job(HOLD, held.callTool));
    await held.called;
    const controller = new AbortController();
    const queued = sandbox.run(job("async () => 'never'", undefined, { signal: controller.signal }));
    controller.abort();
    const out = await queued;
    assert.equal(out.error?.code, "E_SANDBOX_ABORTED");
    assert.equal(sandbox.stats().queued, 0);
    held.release("first");
    assert.equal((await first).value, "first");
    assert.equal(sandbox.stats().killed, 0);
    assert.equal(spawned.length, 1);
  });

  test("close() kills every process and rejects queued and running runs with E_SANDBOX_CLOSED", async () => {
    const { sandbox, spawned } = pool({ maxProcesses: 1 });
    await sandbox.warm();
    const held = heldTool();
    const running = sandbox.run(job(HOLD, held.callTool));
    await held.called;
    const queued = sandbox.run(job("async () => 'queued'"));
    const pids = spawned.map((c) => c.pid);
    assert.ok(pids.every(isRunning));
    const refused = [rejectsWith(running, "E_SANDBOX_CLOSED"), rejectsWith(queued, "E_SANDBOX_CLOSED")];
    await sandbox.close();
    await Promise.all(refused);
    assert.deepEqual(pids.map(isRunning), pids.map(() => false));
    await rejectsWith(sandbox.run(job("async () => 1")), "E_SANDBOX_CLOSED");
    await rejectsWith(sandbox.warm(), "E_SANDBOX_CLOSED");
    assert.equal(sandbox.stats().processes, 0);
  });

  test(
    "the spawned deno gets no --allow-* flag and none of the host's environment",
    { skip: !existsSync("/proc/self/environ") && "needs /proc" },
    async () => {
      process.env.KEEL_POOL_TEST_SECRET = "pool-secret";
      try {
        const { sandbox, spawned } = pool({ maxProcesses: 1 });
        await sandbox.warm();
        const pid = spawned[0]!.pid;
        const args = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").filter((a) => a !== "");
        assert.ok(args.includes("run") && args.includes("--no-prompt"), args.join(" "));
        assert.ok(args.some((a) => a.endsWith("child.mjs")), args.join(" "));
        assert.deepEqual(args.filter((a) => /^--allow|^-A$/.test(a)), []);
        const env = (await readFile(`/proc/${pid}/environ`, "utf8")).split("\0").filter((e) => e !== "");
        assert.deepEqual(env.map((e) => e.split("=")[0]).sort(), ["DENO_NO_UPDATE_CHECK", "NO_COLOR"]);
      } finally {
        delete process.env.KEEL_POOL_TEST_SECRET;
      }
    },
  );

  test("a sandbox process exits by itself when its stdin closes (the host is gone)", async () => {
    const spawn = denoSpawner(runtime);
    let cut!: () => void;
    let child!: ChildProcess;
    const sandbox = createProcessSandbox({
      maxProcesses: 1,
      spawnDeno: (args: readonly string[], opts: SpawnOptions) => {
        child = spawn(args, opts);
        // Stands between the pool and the real stdin, so the test can end it as a dying host would.
        let controller!: TransformStreamDefaultController<Uint8Array>;
        const pipe = new TransformStream<Uint8Array, Uint8Array>({ start: (c) => void (controller = c) });
        pipe.readable.pipeTo(child.stdin!).catch(() => {});
        cut = () => controller.terminate();
        return { ...child, stdin: pipe.writable, kill: child.kill, status: child.status };
      },
    });
    pools.push(sandbox);
    await sandbox.warm();
    assert.equal((await sandbox.run(job("async () => 'up'"))).value, "up");
    cut();
    const status = await child.status;
    assert.deepEqual([status.code, status.signal], [0, null]);
    assert.equal(isRunning(child.pid), false);
  });

  test("bad options and runs are refused before anything starts", async () => {
    const spawnDeno = denoSpawner(runtime);
    assert.throws(() => createProcessSandbox({ spawnDeno, maxProcesses: 0 }), TypeError);
    assert.throws(() => createProcessSandbox({ spawnDeno, minProcesses: 3, maxProcesses: 2 }), RangeError);
    const { sandbox, spawned } = pool();
    await assert.rejects(sandbox.run(job("async () => 1", undefined, { memoryMb: 0 })), TypeError);
    await assert.rejects(sandbox.run({ ...job("async () => 1"), context: { n: 1n } as unknown as Record<string, unknown> }), TypeError);
    assert.equal(spawned.length, 0);
  });

  test("denoSpawner refuses a runtime that cannot start processes with E_SANDBOX_UNAVAILABLE", async () => {
    const edge = { ...runtime, name: "edge", processes: undefined } as unknown as Runtime;
    try {
      denoSpawner(edge);
      assert.fail("expected E_SANDBOX_UNAVAILABLE");
    } catch (e) {
      await rejectsWith(Promise.reject(e), "E_SANDBOX_UNAVAILABLE");
    }
  });

  test("a deno that cannot start fails the waiting runs with E_SANDBOX_UNAVAILABLE", async () => {
    const spawn = denoSpawner(runtime);
    const sandbox = createProcessSandbox({
      // A script that does not exist stands in for a broken install.
      spawnDeno: (args, opts) => spawn(args.map((a) => a.endsWith("child.mjs") ? `${a}.missing.mjs` : a), opts),
    });
    pools.push(sandbox);
    const runs: Promise<SandboxOutcome>[] = [sandbox.run(job("async () => 1")), sandbox.run(job("async () => 2"))];
    for (const r of runs) await rejectsWith(r, "E_SANDBOX_UNAVAILABLE", /before it was ready/);
    await rejectsWith(sandbox.warm(), "E_SANDBOX_UNAVAILABLE");
  });
});
