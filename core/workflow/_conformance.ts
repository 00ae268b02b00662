/**
 * The Store conformance suite: every driver's test calls `testStore(name, create)`. It checks the
 * contract of each method as the engine relies on it. `create` must return a fresh, empty store.
 * @module
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../errors.ts";
import type { Store } from "./store.ts";

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(KeelError.is(e), `expected a KeelError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

/** Registers the Store contract tests for one driver. */
export function testStore(name: string, create: () => Promise<Store>): void {
  describe(`Store conformance: ${name}`, () => {
    async function withStore(fn: (s: Store) => Promise<void>): Promise<void> {
      const s = await create();
      try {
        await fn(s);
      } finally {
        await s.close();
      }
    }
    const mkRun = (s: Store, id = "r1", taskIds = ["a", "b", "c"], at = 1000): Promise<void> =>
      s.createRun({ id, name: `wf-${id}`, definition: { name: `wf-${id}`, tasks: taskIds.map((t) => ({ id: t })) }, taskIds, at });

    test("createRun stores the run and its tasks, all pending, in the order given", () =>
      withStore(async (s) => {
        await mkRun(s, "r1", ["z", "a", "m"]);
        const run = await s.getRun("r1");
        assert.ok(run);
        assert.equal(run.status, "running");
        assert.equal(run.name, "wf-r1");
        assert.equal(run.createdAt, 1000);
        assert.equal(run.endedAt, null);
        assert.equal(run.error, null);
        assert.deepEqual(run.definition, { name: "wf-r1", tasks: [{ id: "z" }, { id: "a" }, { id: "m" }] });
        const tasks = await s.listTasks("r1");
        assert.deepEqual(tasks.map((t) => t.taskId), ["z", "a", "m"]);
        for (const t of tasks) {
          assert.equal(t.status, "pending");
          assert.equal(t.attempts, 0);
          assert.equal(t.hasResult, false);
          assert.equal(t.startedAt, null);
          assert.equal(t.error, null);
        }
        const events = await s.listEvents("r1");
        assert.deepEqual(events.map((e) => [e.seq, e.type, e.taskId]), [[1, "run.started", null]]);
      }));

    test("getRun of an unknown id is undefined; other methods on an unknown run throw E_WORKFLOW_NOT_FOUND", () =>
      withStore(async (s) => {
        assert.equal(await s.getRun("nope"), undefined);
        await rejectsWith(s.listTasks("nope"), "E_WORKFLOW_NOT_FOUND");
        await rejectsWith(s.listAttempts("nope", "a"), "E_WORKFLOW_NOT_FOUND");
        await rejectsWith(s.startAttempt("nope", "a", 1), "E_WORKFLOW_NOT_FOUND");
        await rejectsWith(s.finishAttempt("nope", "a", { status: "succeeded", at: 1, result: 1 }), "E_WORKFLOW_NOT_FOUND");
        await rejectsWith(s.markTasks("nope", ["a"], "skipped", 1, { code: "E_TASK_SKIPPED", message: "x" }), "E_WORKFLOW_NOT_FOUND");
        await rejectsWith(s.recoverRunning("nope", 1), "E_WORKFLOW_NOT_FOUND");
        await rejectsWith(s.finishRun("nope", "succeeded", 1), "E_WORKFLOW_NOT_FOUND");
        await rejectsWith(s.reopenRun("nope", 1), "E_WORKFLOW_NOT_FOUND");
        await rejectsWith(s.getResult("nope", "a"), "E_WORKFLOW_NOT_FOUND");
        await rejectsWith(s.listEvents("nope"), "E_WORKFLOW_NOT_FOUND");
      }));

    test("a task id the run does not have throws E_WORKFLOW_NOT_FOUND", () =>
      withStore(async (s) => {
        await mkRun(s);
        await rejectsWith(s.startAttempt("r1", "x", 1), "E_WORKFLOW_NOT_FOUND");
        await rejectsWith(s.getResult("r1", "x"), "E_WORKFLOW_NOT_FOUND");
      }));

    test("startAttempt numbers attempts from 1 and makes the task running", () =>
      withStore(async (s) => {
        await mkRun(s);
        assert.equal(await s.startAttempt("r1", "a", 1100), 1);
        const [a] = await s.listTasks("r1");
        assert.equal(a?.status, "running");
        assert.equal(a?.attempts, 1);
        assert.equal(a?.startedAt, 1100);
        const attempts = await s.listAttempts("r1", "a");
        assert.deepEqual(attempts.map((x) => [x.attempt, x.status, x.startedAt, x.endedAt]), [[1, "running", 1100, null]]);
      }));

    test("a succeeded attempt stores the result and makes the task succeeded", () =>
      withStore(async (s) => {
        await mkRun(s);
        await s.startAttempt("r1", "a", 1100);
        await s.finishAttempt("r1", "a", { status: "succeeded", at: 1200, result: { n: 1, list: [1, "x", null] } });
        const [a] = await s.listTasks("r1");
        assert.equal(a?.status, "succeeded");
        assert.equal(a?.endedAt, 1200);
        assert.equal(a?.hasResult, true);
        assert.deepEqual(await s.getResult("r1", "a"), { n: 1, list: [1, "x", null] });
        assert.equal(await s.getResult("r1", "b"), undefined);
        const [att] = await s.listAttempts("r1", "a");
        assert.equal(att?.status, "succeeded");
        assert.equal(att?.endedAt, 1200);
      }));

    test("results keep their JSON types: numbers, strings, booleans, null, lists, nested objects", () =>
      withStore(async (s) => {
        const values: unknown[] = [42, 1.5, "text", true, false, null, [], {}, [1, [2, [3]]], { a: { b: { c: [{ d: "e" }] } } }];
        const ids = values.map((_, i) => `t${i}`);
        await mkRun(s, "r1", ids);
        for (const [i, v] of values.entries()) {
          await s.startAttempt("r1", ids[i]!, 1);
          await s.finishAttempt("r1", ids[i]!, { status: "succeeded", at: 2, result: v });
        }
        for (const [i, v] of values.entries()) assert.deepEqual(await s.getResult("r1", ids[i]!), v);
      }));

    test("a large result (1 MB string, 10,000-item list) comes back whole", () =>
      withStore(async (s) => {
        await mkRun(s, "r1", ["big", "list"]);
        const big = "x".repeat(1 << 20) + "é✓";
        const list = Array.from({ length: 10_000 }, (_, i) => ({ i, s: `item-${i}` }));
        await s.startAttempt("r1", "big", 1);
        await s.finishAttempt("r1", "big", { status: "succeeded", at: 2, result: { text: big } });
        await s.startAttempt("r1", "list", 1);
        await s.finishAttempt("r1", "list", { status: "succeeded", at: 2, result: list });
        assert.deepEqual(await s.getResult("r1", "big"), { text: big });
        assert.deepEqual(await s.getResult("r1", "list"), list);
      }));

    test("changing a result object after storing it does not change the stored result", () =>
      withStore(async (s) => {
        await mkRun(s);
        const v = { list: [1, 2] };
        await s.startAttempt("r1", "a", 1);
        await s.finishAttempt("r1", "a", { status: "succeeded", at: 2, result: v });
        v.list.push(3);
        assert.deepEqual(await s.getResult("r1", "a"), { list: [1, 2] });
      }));

    test("a failed attempt that is not final sends the task back to pending; a final one fails it", () =>
      withStore(async (s) => {
        await mkRun(s);
        const error = { code: "E_TASK_FAILED", message: "boom", details: { exit: 1 } };
        await s.startAttempt("r1", "a", 1);
        await s.finishAttempt("r1", "a", { status: "failed", at: 2, error, final: false });
        let [a] = await s.listTasks("r1");
        assert.equal(a?.status, "pending");
        assert.equal(a?.attempts, 1);
        assert.equal(await s.startAttempt("r1", "a", 3), 2);
        await s.finishAttempt("r1", "a", { status: "failed", at: 4, error, final: true });
        [a] = await s.listTasks("r1");
        assert.equal(a?.status, "failed");
        assert.equal(a?.attempts, 2);
        assert.deepEqual(a?.error, error);
        assert.equal(a?.hasResult, false);
        const attempts = await s.listAttempts("r1", "a");
        assert.deepEqual(attempts.map((x) => [x.attempt, x.status]), [[1, "failed"], [2, "failed"]]);
        assert.deepEqual(attempts[0]?.error, error);
        const types = (await s.listEvents("r1")).map((e) => e.type);
        assert.deepEqual(types, ["run.started", "task.started", "task.retrying", "task.started", "task.failed"]);
      }));

    test("finishAttempt without a running attempt fails and changes nothing", () =>
      withStore(async (s) => {
        await mkRun(s);
        const before = await s.listEvents("r1");
        await assert.rejects(s.finishAttempt("r1", "a", { status: "succeeded", at: 2, result: 1 }));
        assert.deepEqual(await s.listEvents("r1"), before);
        const [a] = await s.listTasks("r1");
        assert.equal(a?.status, "pending");
        assert.equal(a?.hasResult, false);
      }));

    test("startAttempt on a running or succeeded task fails and changes nothing", () =>
      withStore(async (s) => {
        await mkRun(s);
        await s.startAttempt("r1", "a", 1);
        await assert.rejects(s.startAttempt("r1", "a", 2));
        await s.finishAttempt("r1", "a", { status: "succeeded", at: 3, result: 1 });
        await assert.rejects(s.startAttempt("r1", "a", 4));
        const [a] = await s.listTasks("r1");
        assert.equal(a?.attempts, 1);
        assert.equal((await s.listAttempts("r1", "a")).length, 1);
      }));

    test("markTasks marks every task given, with the reason, one event each", () =>
      withStore(async (s) => {
        await mkRun(s);
        const reason = { code: "E_TASK_SKIPPED", message: 'Skipped because task "a" failed' };
        await s.markTasks("r1", ["b", "c"], "skipped", 5, reason);
        const tasks = await s.listTasks("r1");
        assert.deepEqual(tasks.map((t) => t.status), ["pending", "skipped", "skipped"]);
        assert.deepEqual(tasks[1]?.error, reason);
        assert.equal(tasks[1]?.endedAt, 5);
        await s.markTasks("r1", ["a"], "cancelled", 6, { code: "E_WORKFLOW_TIMEOUT", message: "late" });
        assert.equal((await s.listTasks("r1"))[0]?.status, "cancelled");
        const events = (await s.listEvents("r1")).slice(1);
        assert.deepEqual(events.map((e) => [e.type, e.taskId]), [["task.skipped", "b"], ["task.skipped", "c"], ["task.cancelled", "a"]]);
      }));

    test("markTasks with an unknown task id changes nothing (one atomic write)", () =>
      withStore(async (s) => {
        await mkRun(s);
        await assert.rejects(s.markTasks("r1", ["b", "nope"], "skipped", 5, { code: "E_TASK_SKIPPED", message: "x" }));
        assert.deepEqual((await s.listTasks("r1")).map((t) => t.status), ["pending", "pending", "pending"]);
        assert.equal((await s.listEvents("r1")).length, 1);
      }));

    test("event seq is 1-based, gap-free and in order, per run", () =>
      withStore(async (s) => {
        await mkRun(s, "r1");
        await mkRun(s, "r2");
        for (const id of ["a", "b"]) {
          await s.startAttempt("r1", id, 1);
          await s.startAttempt("r2", id, 1);
          await s.finishAttempt("r1", id, { status: "succeeded", at: 2, result: id });
        }
        await s.finishRun("r1", "succeeded", 3);
        const e1 = await s.listEvents("r1");
        assert.deepEqual(e1.map((e) => e.seq), e1.map((_, i) => i + 1));
        assert.deepEqual(e1.map((e) => e.type), ["run.started", "task.started", "task.succeeded", "task.started", "task.succeeded", "run.finished"]);
        const e2 = await s.listEvents("r2");
        assert.deepEqual(e2.map((e) => e.seq), [1, 2, 3]);
        for (const e of e1) assert.equal(e.runId, "r1");
        assert.deepEqual((await s.listEvents("r1", 4)).map((e) => e.seq), [5, 6]);
        assert.deepEqual(await s.listEvents("r1", 6), []);
      }));

    test("recoverRunning closes open attempts as E_RUN_INTERRUPTED and makes the tasks pending", () =>
      withStore(async (s) => {
        await mkRun(s);
        await s.startAttempt("r1", "a", 1);
        await s.finishAttempt("r1", "a", { status: "succeeded", at: 2, result: "kept" });
        await s.startAttempt("r1", "b", 3);
        await s.startAttempt("r1", "c", 3);
        const ids = await s.recoverRunning("r1", 10);
        assert.deepEqual([...ids].sort(), ["b", "c"]);
        const tasks = await s.listTasks("r1");
        assert.deepEqual(tasks.map((t) => t.status), ["succeeded", "pending", "pending"]);
        assert.equal(tasks[1]?.attempts, 1);
        const [att] = await s.listAttempts("r1", "b");
        assert.equal(att?.status, "failed");
        assert.equal(att?.endedAt, 10);
        assert.equal(att?.error?.code, "E_RUN_INTERRUPTED");
        assert.equal(await s.getResult("r1", "a"), "kept");
        assert.equal(await s.startAttempt("r1", "b", 11), 2);
        assert.deepEqual(await s.recoverRunning("r1", 12), ["b"]);
        await s.startAttempt("r1", "b", 13);
        await s.finishAttempt("r1", "b", { status: "succeeded", at: 14, result: 2 });
        assert.deepEqual(await s.recoverRunning("r1", 15), []);
        const e = await s.listEvents("r1");
        assert.deepEqual(e.map((x) => x.seq), e.map((_, i) => i + 1));
      }));

    test("finishRun ends the run; reopenRun makes it running again", () =>
      withStore(async (s) => {
        await mkRun(s);
        const error = { code: "E_WORKFLOW_FAILED", message: "1 task failed", details: { failed: ["a"] } };
        await s.finishRun("r1", "failed", 50, error);
        let run = await s.getRun("r1");
        assert.equal(run?.status, "failed");
        assert.equal(run?.endedAt, 50);
        assert.deepEqual(run?.error, error);
        await s.reopenRun("r1", 60);
        run = await s.getRun("r1");
        assert.equal(run?.status, "running");
        assert.equal(run?.endedAt, null);
        const types = (await s.listEvents("r1")).map((e) => e.type);
        assert.deepEqual(types, ["run.started", "run.finished", "run.resumed"]);
        await s.finishRun("r1", "succeeded", 70);
        run = await s.getRun("r1");
        assert.equal(run?.status, "succeeded");
        assert.equal(run?.error, null);
      }));

    test("listRuns: newest first, default and given limit, status filter", () =>
      withStore(async (s) => {
        for (let i = 0; i < 60; i++) await mkRun(s, `r${i}`, ["a"], 1000 + i);
        await s.finishRun("r3", "failed", 2000);
        await s.finishRun("r5", "succeeded", 2000);
        const all = await s.listRuns();
        assert.equal(all.length, 50);
        assert.equal(all[0]?.id, "r59");
        assert.equal(all[49]?.id, "r10");
        assert.deepEqual((await s.listRuns({ limit: 3 })).map((r) => r.id), ["r59", "r58", "r57"]);
        assert.deepEqual((await s.listRuns({ status: "failed" })).map((r) => r.id), ["r3"]);
        assert.deepEqual((await s.listRuns({ status: "succeeded", limit: 10 })).map((r) => r.id), ["r5"]);
        assert.equal((await s.listRuns({ status: "running" })).length, 50);
      }));

    test("a duplicate run id is refused and the first run is unchanged", () =>
      withStore(async (s) => {
        await mkRun(s, "r1", ["a"]);
        await assert.rejects(mkRun(s, "r1", ["x", "y"]));
        assert.deepEqual((await s.listTasks("r1")).map((t) => t.taskId), ["a"]);
        assert.equal((await s.listEvents("r1")).length, 1);
      }));

    test("concurrent writes to different tasks of one run all land, with gap-free seq", () =>
      withStore(async (s) => {
        const ids = Array.from({ length: 50 }, (_, i) => `t${i}`);
        await mkRun(s, "r1", ids);
        await Promise.all(ids.map(async (id, i) => {
          await s.startAttempt("r1", id, i);
          await s.finishAttempt("r1", id, { status: "succeeded", at: i + 1, result: i });
        }));
        const tasks = await s.listTasks("r1");
        assert.ok(tasks.every((t) => t.status === "succeeded"));
        const e = await s.listEvents("r1");
        assert.equal(e.length, 1 + 2 * ids.length);
        assert.deepEqual(e.map((x) => x.seq), e.map((_, i) => i + 1));
        for (const [i, id] of ids.entries()) assert.equal(await s.getResult("r1", id), i);
      }));
  });
}
