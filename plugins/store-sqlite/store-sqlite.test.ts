import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { getTableConfig } from "drizzle-orm/sqlite-core";
import { detectRuntime } from "../../runtimes/mod.ts";
import { KeelError, type Runtime, type SqliteHandle, type Store } from "../../core/mod.ts";
import { testStore } from "../../core/workflow/_store-conformance.ts";
import { createSqliteStore, openSqliteStore } from "./mod.ts";
import { schema, SCHEMA_VERSION } from "./schema.ts";
import { rejectsWith } from "../../tests/helpers.ts";

const runtime: Runtime = await detectRuntime();
const fs = runtime.fs!;
const root = await fs.makeTempDir("keel-store-sqlite-");
let counter = 0;
function freshPath(): string {
  return `${root}/db-${++counter}/keel.db`;
}

after(async () => {
  await fs.remove(root);
});

testStore("sqlite", () => openSqliteStore(runtime, freshPath()));

/** A raw connection to a fresh file, for tests that drive the handle themselves. */
async function openHandle(path = freshPath()): Promise<SqliteHandle> {
  await fs.mkdir(path.slice(0, path.lastIndexOf("/")));
  return await runtime.openSqlite!(path);
}


async function seed(store: Store, runId = "run-1"): Promise<void> {
  await store.createRun({ id: runId, name: "seed", definition: { tasks: ["a", "b", "c"] }, taskIds: ["a", "b", "c"], at: 1 });
  await store.startAttempt(runId, "a", 2);
  await store.finishAttempt(runId, "a", { status: "succeeded", at: 3, result: { n: 1, list: [1, 2] } });
  await store.startAttempt(runId, "b", 4);
  await store.finishAttempt(runId, "b", {
    status: "failed",
    at: 5,
    error: { code: "E_TASK_FAILED", message: "boom" },
    final: false,
  });
  await store.startAttempt(runId, "b", 6);
}

async function snapshot(store: Store, runId: string): Promise<unknown> {
  const taskList = await store.listTasks(runId);
  return {
    run: await store.getRun(runId),
    runs: await store.listRuns(),
    tasks: taskList,
    attempts: await Promise.all(taskList.map((t) => store.listAttempts(runId, t.taskId))),
    results: await Promise.all(taskList.map((t) => store.getResult(runId, t.taskId))),
    events: await store.listEvents(runId),
  };
}

describe("store-sqlite", () => {
  test("the DDL creates exactly the tables, columns, keys and indexes of the drizzle schema", async () => {
    const path = freshPath();
    (await openSqliteStore(runtime, path)).close();
    const h = await runtime.openSqlite!(path);
    try {
      for (const table of Object.values(schema)) {
        const config = getTableConfig(table);
        const info = h.all(`PRAGMA table_info(${config.name})`);
        assert.deepEqual(
          info.map((c) => [c["name"], c["type"], c["notnull"] === 1 || c["pk"] !== 0]).sort(),
          config.columns.map((c) => [c.name, c.getSQLType().toUpperCase(), c.notNull || c.primary]).sort(),
          `columns of ${config.name}`,
        );
        const pk = info.filter((c) => Number(c["pk"]) > 0).sort((a, b) => Number(a["pk"]) - Number(b["pk"]))
          .map((c) => c["name"]);
        const declared = config.primaryKeys[0]?.columns.map((c) => c.name) ??
          config.columns.filter((c) => c.primary).map((c) => c.name);
        assert.deepEqual(pk, declared, `primary key of ${config.name}`);
        const indexes = h.all(`PRAGMA index_list(${config.name})`).filter((i) => i["origin"] === "c")
          .map((i) => i["name"]).sort();
        assert.deepEqual(indexes, config.indexes.map((i) => i.config.name).sort(), `indexes of ${config.name}`);
        const fks = h.all(`PRAGMA foreign_key_list(${config.name})`).map((f) => `${f["from"]}->${f["table"]}.${f["to"]}`)
          .sort();
        const declaredFks = config.foreignKeys.flatMap((fk) => {
          const ref = fk.reference();
          return ref.columns.map((c, i) => `${c.name}->${getTableConfig(ref.foreignTable).name}.${ref.foreignColumns[i]!.name}`);
        }).sort();
        assert.deepEqual(fks, declaredFks, `foreign keys of ${config.name}`);
      }
      assert.equal(h.values("PRAGMA user_version")[0]![0], SCHEMA_VERSION);
    } finally {
      h.close();
    }
  });

  test("reopening the file gives back everything written", async () => {
    const path = freshPath();
    const store = await openSqliteStore(runtime, path);
    await seed(store);
    await store.markTasks("run-1", ["c"], "skipped", 7, { code: "E_TASK_SKIPPED", message: "dep failed" });
    const before = await snapshot(store, "run-1");
    await store.close();
    const again = await openSqliteStore(runtime, path);
    try {
      assert.deepEqual(await snapshot(again, "run-1"), before);
      // And it keeps working where it stopped.
      await again.finishAttempt("run-1", "b", { status: "succeeded", at: 8, result: "ok" });
      assert.equal(await again.getResult("run-1", "b"), "ok");
      assert.deepEqual((await again.listEvents("run-1")).map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8]);
    } finally {
      await again.close();
    }
  });

  test("the file is in WAL mode with foreign keys on and the synchronous level asked for", async () => {
    for (const [option, level] of [["NORMAL", 1], ["FULL", 2]] as const) {
      const handle = await openHandle();
      const store = await createSqliteStore(handle, { synchronous: option });
      try {
        assert.equal(handle.values("PRAGMA journal_mode")[0]![0], "wal");
        assert.equal(handle.values("PRAGMA synchronous")[0]![0], level);
        assert.equal(handle.values("PRAGMA foreign_keys")[0]![0], 1);
      } finally {
        await store.close();
      }
    }
  });

  test("a result over the blob threshold is stored as a blob and round-trips", async () => {
    const handle = await openHandle();
    const store = await createSqliteStore(handle, { blobThreshold: 1024 });
    try {
      await store.createRun({ id: "r", name: "blob", definition: {}, taskIds: ["small", "big"], at: 1 });
      const big = { text: "é".repeat(2000), list: Array.from({ length: 100 }, (_, i) => i) };
      for (const [taskId, result] of [["small", { n: 1 }], ["big", big]] as const) {
        await store.startAttempt("r", taskId, 2);
        await store.finishAttempt("r", taskId, { status: "succeeded", at: 3, result });
      }
      assert.deepEqual(await store.getResult("r", "big"), big);
      assert.deepEqual(await store.getResult("r", "small"), { n: 1 });
      const rows = handle.all("SELECT task_id, json IS NULL AS blobbed, blob_id FROM results ORDER BY task_id");
      assert.deepEqual(rows.map((r) => [r["task_id"], r["blobbed"]]), [["big", 1], ["small", 0]]);
      const [blob] = handle.all("SELECT size FROM blobs");
      assert.equal(blob!["size"], new TextEncoder().encode(JSON.stringify(big)).length);
      assert.equal((await store.listTasks("r")).every((t) => t.hasResult), true);
    } finally {
      await store.close();
    }
  });

  test("a write while another connection holds the lock fails with E_STORE_LOCKED, then succeeds", async () => {
    const path = freshPath();
    const store = await openSqliteStore(runtime, path, { busyTimeoutMs: 50 });
    const other = await runtime.openSqlite!(path);
    try {
      await seed(store);
      other.exec("BEGIN EXCLUSIVE");
      const error = await rejectsWith(store.finishAttempt("run-1", "b", { status: "succeeded", at: 9, result: 1 }), "E_STORE_LOCKED");
      assert.match(error.message, /locked by another process/);
      // Reads still answer (WAL), and the failed write left nothing behind.
      assert.equal((await store.listTasks("run-1"))[1]!.status, "running");
      other.exec("ROLLBACK");
      await store.finishAttempt("run-1", "b", { status: "succeeded", at: 9, result: 1 });
      assert.equal(await store.getResult("run-1", "b"), 1);
    } finally {
      other.close();
      await store.close();
    }
  });

  describe("a read-only database", () => {
    const isRoot = process.getuid?.() === 0;
    const made: string[] = [];
    async function makeReadOnly(path: string): Promise<boolean> {
      // root ignores permission bits; the immutable attribute stops it (ext4, xfs, btrfs).
      const args = isRoot ? ["+i", path] : undefined;
      await runtime.processes!.run("chmod", { args: [path.endsWith(".db") ? "444" : "555", path] });
      made.push(path);
      if (args === undefined) return true;
      const out = await runtime.processes!.run("chattr", { args });
      return out.success;
    }
    after(async () => {
      for (const path of made.reverse()) {
        if (isRoot) await runtime.processes!.run("chattr", { args: ["-i", path] });
        await runtime.processes!.run("chmod", { args: ["755", path] });
      }
    });

    test("a read-only file: reads answer, writes fail with E_STORE_READ_ONLY", async (t) => {
      const path = freshPath();
      const store = await openSqliteStore(runtime, path);
      await seed(store);
      const before = await snapshot(store, "run-1");
      await store.close();
      if (!await makeReadOnly(path)) return t.skip("this file system cannot make a file read-only for root");
      let reopened: Store;
      try {
        reopened = await openSqliteStore(runtime, path);
      } catch (e) {
        // Some SQLite builds cannot open a WAL file read-only at all; that too must be this code.
        assert.ok(KeelError.is(e, "E_STORE_READ_ONLY"), String(e));
        return;
      }
      try {
        assert.deepEqual(await snapshot(reopened, "run-1"), before);
        const error = await rejectsWith(reopened.finishAttempt("run-1", "b", { status: "succeeded", at: 9, result: 1 }), "E_STORE_READ_ONLY");
        assert.match(error.message, /writable/);
        assert.deepEqual(await snapshot(reopened, "run-1"), before);
      } finally {
        await reopened.close();
      }
    });

    test("a read-only file in a read-only directory fails with E_STORE_READ_ONLY", async (t) => {
      const path = freshPath();
      const store = await openSqliteStore(runtime, path);
      await seed(store);
      await store.close();
      if (!await makeReadOnly(path) || !await makeReadOnly(path.slice(0, path.lastIndexOf("/")))) {
        return t.skip("this file system cannot make a file read-only for root");
      }
      let opened: Store | undefined;
      try {
        opened = await openSqliteStore(runtime, path);
        await rejectsWith(opened.createRun({ id: "y", name: "y", definition: null, taskIds: [], at: 0 }), "E_STORE_READ_ONLY");
      } catch (e) {
        assert.ok(KeelError.is(e, "E_STORE_READ_ONLY"), String(e));
        assert.match(e.message, /writable/);
      } finally {
        await opened?.close();
      }
    });

    test("a store in a directory that cannot be created fails with E_STORE_READ_ONLY", async (t) => {
      const dir = `${root}/locked-parent-${++counter}`;
      await fs.mkdir(dir);
      if (!await makeReadOnly(dir)) return t.skip("this file system cannot make a directory read-only for root");
      await rejectsWith(openSqliteStore(runtime, `${dir}/sub/keel.db`), "E_STORE_READ_ONLY");
    });
  });

  test("a full disk (max_page_count) fails the write with E_STORE_FULL and keeps the store consistent", async () => {
    const handle = await openHandle();
    const store = await createSqliteStore(handle, { blobThreshold: 1024 });
    try {
      await seed(store);
      const pages = Number(handle.values("PRAGMA page_count")[0]![0]);
      handle.exec(`PRAGMA max_page_count = ${pages + 4}`);
      const before = await snapshot(store, "run-1");
      const huge = { pad: "x".repeat(200_000) };
      const error = await rejectsWith(store.finishAttempt("run-1", "b", { status: "succeeded", at: 9, result: huge }), "E_STORE_FULL");
      assert.match(error.message, /free some space/);
      // Nothing of the failed transition was kept, and reads still answer.
      assert.deepEqual(await snapshot(store, "run-1"), before);
      assert.deepEqual(handle.values("PRAGMA integrity_check"), [["ok"]]);
      assert.deepEqual(handle.values("PRAGMA foreign_key_check"), []);
      // Small writes that fit still go through, and once there is room again the big one does too.
      await store.markTasks("run-1", ["c"], "skipped", 10, { code: "E_TASK_SKIPPED", message: "x" });
      handle.exec("PRAGMA max_page_count = 1073741823");
      await store.finishAttempt("run-1", "b", { status: "succeeded", at: 11, result: huge });
      assert.deepEqual(await store.getResult("run-1", "b"), huge);
      assert.deepEqual((await store.listEvents("run-1")).map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8]);
    } finally {
      await store.close();
    }
  });

  describe("a file that is not a Keel store fails with E_STORE_CORRUPT", () => {
    test("not SQLite at all", async () => {
      const path = freshPath();
      await fs.mkdir(path.slice(0, path.lastIndexOf("/")));
      await fs.writeTextFile(path, "these are not the pages you are looking for\n".repeat(200));
      const error = await rejectsWith(openSqliteStore(runtime, path), "E_STORE_CORRUPT");
      assert.match(error.message, /new store file/);
      // The file is left as it was.
      assert.match(await fs.readTextFile(path), /^these are not the pages/);
    });

    test("another application's SQLite database", async () => {
      const path = freshPath();
      const h = await openHandle(path);
      h.exec("CREATE TABLE photos (id INTEGER PRIMARY KEY)");
      h.close();
      const error = await rejectsWith(openSqliteStore(runtime, path), "E_STORE_CORRUPT");
      assert.match(error.message, /not a Keel workflow store/);
    });

    test("a store written by a newer Keel", async () => {
      const path = freshPath();
      (await openSqliteStore(runtime, path)).close();
      const h = await runtime.openSqlite!(path);
      h.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
      h.close();
      const error = await rejectsWith(openSqliteStore(runtime, path), "E_STORE_CORRUPT");
      assert.match(error.message, /upgrade Keel/);
    });
  });

  describe("killed with SIGKILL at random points", () => {
    const path = freshPath();
    const fixture = new URL("./fixtures/write-loop.ts", import.meta.url).pathname;
    const kills = 24;
    const reported = new Map<string, number>();

    before(async () => {
      for (let k = 0; k < kills; k++) {
        const runId = `crash-${k}`;
        // Anywhere from the first write to a few hundred in; each kill lands mid-loop.
        const target = 1 + Math.floor(Math.random() * 300);
        const child = runtime.processes!.spawn(runtime.denoPath!(), {
          args: ["run", "--allow-all", fixture, path, runId],
          stdout: "piped",
          stderr: "piped",
        });
        let seen = 0;
        const reader = child.stdout!.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        while (seen < target) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          const lines = buffer.split("\n");
          buffer = lines.pop()!;
          for (const line of lines) if (line !== "") seen = Number(line);
        }
        child.kill("SIGKILL");
        const status = await child.status;
        await reader.cancel().catch(() => undefined);
        await child.stderr!.cancel().catch(() => undefined);
        assert.equal(seen >= target, true, `the writer stopped early at ${seen} of ${target} writes`);
        assert.equal(status.signal, "SIGKILL");
        reported.set(runId, seen);
      }
    });

    test("every transition is whole, nothing reported is lost, event seqs are gap-free", async () => {
      const store = await openSqliteStore(runtime, path);
      const check = await runtime.openSqlite!(path);
      try {
        assert.deepEqual(check.values("PRAGMA integrity_check"), [["ok"]]);
        assert.deepEqual(check.values("PRAGMA foreign_key_check"), []);
        for (const [runId, seen] of reported) {
          const events = await store.listEvents(runId);
          assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), `gap-free seqs of ${runId}`);
          // One event per write: every write the child reported as done is there (it may have
          // done a few more between its report and the kill).
          assert.ok(events.length >= seen, `${runId}: ${events.length} events, ${seen} reported`);
          const taskList = await store.listTasks(runId);
          assert.equal(taskList.length, 10_000);
          let started = 0;
          for (const task of taskList) {
            if (task.attempts === 0) {
              assert.equal(task.status, "pending");
              assert.equal(task.hasResult, false);
              continue;
            }
            const tries = await store.listAttempts(runId, task.taskId);
            started += tries.length;
            assert.deepEqual(tries.map((a) => a.attempt), tries.map((_, i) => i + 1), `${runId}/${task.taskId} attempts`);
            assert.equal(tries.length, task.attempts);
            const last = tries.at(-1)!;
            assert.equal(tries.filter((a) => a.status === "running").length, task.status === "running" ? 1 : 0);
            if (task.status === "running") assert.equal(last.status, "running");
            if (task.status === "pending") assert.equal(last.status, "failed");
            if (task.status === "succeeded") {
              assert.equal(last.status, "succeeded");
              assert.equal(task.hasResult, true);
              const result = await store.getResult(runId, task.taskId) as { i: number; attempt: number };
              assert.equal(result.attempt, task.attempts);
              assert.equal(`t${result.i}`, task.taskId);
            } else {
              assert.equal(task.hasResult, false);
              assert.equal(await store.getResult(runId, task.taskId), undefined);
            }
          }
          assert.equal(events.filter((e) => e.type === "task.started").length, started);
          // Resume's first step closes what the kill left open.
          await store.recoverRunning(runId, Date.now());
          assert.equal((await store.listTasks(runId)).some((t) => t.status === "running"), false);
        }
      } finally {
        check.close();
        await store.close();
      }
    });
  });
});
