/**
 * The SQLite workflow store's cost per task transition (startAttempt + finishAttempt, two
 * commits), with `synchronous=NORMAL` and `FULL`, against the floor of one bare SQLite commit
 * (`BEGIN IMMEDIATE; INSERT; COMMIT`) on the same handle with the same setting. Also the same
 * bare insert driven through drizzle's sqlite-proxy, which is why the store's writes are raw SQL.
 *
 * Run: `./node_modules/.bin/deno run --allow-all bench/workflow-store.ts` (or `bun bench/workflow-store.ts`).
 * @module
 */

import { drizzle } from "drizzle-orm/sqlite-proxy";
import { integer, sqliteTable } from "drizzle-orm/sqlite-core";
import type { SqlValue } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { createSqliteStore } from "../plugins/store-sqlite/mod.ts";
import { type BenchRow, median, writeResults } from "./_harness.ts";

const TASKS = 2000;
const COMMITS = 2000;

const floorTable = sqliteTable("bench_floor", { x: integer("x").notNull() });

const runtime = await detectRuntime();
const dir = await runtime.fs!.makeTempDir("keel-bench-store-");
const rows: BenchRow[] = [];
const us = (ms: number) => ms * 1000;

try {
  for (const synchronous of ["NORMAL", "FULL"] as const) {
    const path = `${dir}/store-${synchronous}.db`;
    const handle = await runtime.openSqlite!(path);
    const store = await createSqliteStore(handle, { synchronous });

    // The floor: one bare commit of one small row.
    handle.exec("CREATE TABLE bench_floor (x INTEGER NOT NULL)");
    const floor: number[] = [];
    for (let i = 0; i < COMMITS + 100; i++) {
      const t0 = performance.now();
      handle.exec("BEGIN IMMEDIATE");
      handle.run("INSERT INTO bench_floor (x) VALUES (?)", [i]);
      handle.exec("COMMIT");
      if (i >= 100) floor.push(performance.now() - t0);
    }

    // The same commit with the insert built and run by drizzle's sqlite-proxy.
    const db = drizzle((sql, params, method) => {
      if (method === "run") {
        handle.run(sql, params as SqlValue[]);
        return Promise.resolve({ rows: [] });
      }
      return Promise.resolve({ rows: handle.values(sql, params as SqlValue[]) });
    });
    const viaDrizzle: number[] = [];
    for (let i = 0; i < COMMITS + 100; i++) {
      const t0 = performance.now();
      handle.exec("BEGIN IMMEDIATE");
      await db.insert(floorTable).values({ x: i });
      handle.exec("COMMIT");
      if (i >= 100) viaDrizzle.push(performance.now() - t0);
    }

    // A transition: start and finish one attempt of one task (two transactions).
    const taskIds = Array.from({ length: TASKS + 100 }, (_, i) => `task-${i}`);
    await store.createRun({ id: "bench", name: "bench", definition: { tasks: taskIds.length }, taskIds, at: Date.now() });
    const transition: number[] = [];
    for (let i = 0; i < taskIds.length; i++) {
      const taskId = taskIds[i]!;
      const t0 = performance.now();
      await store.startAttempt("bench", taskId, Date.now());
      await store.finishAttempt("bench", taskId, { status: "succeeded", at: Date.now(), result: { i, ok: true } });
      if (i >= 100) transition.push(performance.now() - t0);
    }
    await store.close();

    const floorUs = us(median(floor));
    const transitionUs = us(median(transition));
    rows.push({ name: `raw insert commit, synchronous=${synchronous}`, median: floorUs, unit: "µs", runs: floor.length });
    rows.push({
      name: `drizzle proxy insert commit, synchronous=${synchronous}`,
      median: us(median(viaDrizzle)),
      unit: "µs",
      runs: viaDrizzle.length,
      peer: "raw insert commit",
      ratio: median(viaDrizzle) / median(floor),
    });
    rows.push({
      name: `store transition (start + finish), synchronous=${synchronous}`,
      median: transitionUs,
      unit: "µs",
      runs: transition.length,
      peer: "raw insert commit",
      ratio: transitionUs / floorUs,
      goal: "< 200 µs per task",
      met: transitionUs < 200,
    });
  }
} finally {
  await runtime.fs!.remove(dir);
}

const md = await writeResults(runtime, `workflow-store-${runtime.name}`, rows, {
  date: new Date().toISOString(),
  runtime: `${runtime.name} ${runtime.version}`,
  file: "a fresh SQLite file in the system temp dir, WAL mode",
  transition: "startAttempt + finishAttempt of one task = two commits (BEGIN IMMEDIATE ... COMMIT)",
  tasks: TASKS,
  commits: COMMITS,
});
await runtime.writeStdout(md);
