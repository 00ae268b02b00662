import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "./errors.ts";
import { defineService, ServiceTable } from "./services.ts";

interface Metrics {
  mean(xs: number[]): number;
}

const Metrics = defineService<Metrics>("metrics");
const metrics: Metrics = { mean: (xs) => xs.reduce((a, b) => a + b, 0) / xs.length };

describe("defineService", () => {
  test("makes a frozen key with the id", () => {
    for (const id of ["metrics", "a-b", "acme/metrics", "a1/b-2/c3"]) {
      const key = defineService(id);
      assert.equal(key.id, id);
      assert.ok(Object.isFrozen(key));
    }
  });

  test("rejects an id that is not lowercase words with a TypeError quoting it", () => {
    for (const id of ["", "Metrics", "my metrics", "1metrics", "a//b", "a/", "-a", "a_b"]) {
      assert.throws(
        () => defineService(id),
        (e) => e instanceof TypeError && e.message.includes(`"${id}"`),
        id,
      );
    }
    assert.throws(() => defineService(42 as unknown as string), TypeError);
  });
});

describe("ServiceTable", () => {
  test("a provided service can be required by key, and by another key with the same id", () => {
    const table = new ServiceTable();
    assert.equal(table.has(Metrics), false);
    table.provide(Metrics, metrics, "stats");
    assert.equal(table.has(Metrics), true);
    assert.equal(table.get(Metrics), metrics);
    assert.equal(table.get(Metrics).mean([1, 2, 3]), 2);
    assert.equal(table.get(defineService<Metrics>("metrics")), metrics);
    assert.deepEqual(table.list(), [{ id: "metrics", provider: "stats" }]);
  });

  test("a falsy service value is still provided", () => {
    const table = new ServiceTable();
    const Flag = defineService<number>("flag");
    table.provide(Flag, 0, "p");
    assert.equal(table.has(Flag), true);
    assert.equal(table.get(Flag), 0);
  });

  test("a second provider is E_SERVICE_DUPLICATE naming both plugins; the first stays", () => {
    const table = new ServiceTable();
    table.provide(Metrics, metrics, "stats");
    assert.throws(
      () => table.provide(Metrics, { mean: () => 0 }, "other-stats"),
      (e) =>
        KeelError.is(e, "E_SERVICE_DUPLICATE") &&
        e.message ===
          'Service "metrics" is provided by both "stats" and "other-stats"; load only one of them' &&
        JSON.stringify(e.details?.providers) === '["stats","other-stats"]',
    );
    assert.equal(table.get(Metrics), metrics);
  });

  test("requiring a service nobody provides is E_SERVICE_MISSING and says what to load", () => {
    const table = new ServiceTable();
    assert.throws(() => table.get(Metrics), (e) =>
      KeelError.is(e, "E_SERVICE_MISSING") &&
      e.message ===
        'Asked for service "metrics" but no loaded plugin provides it; load a plugin that provides "metrics"' &&
      e.details?.service === "metrics");
    assert.throws(() => table.get(Metrics, "report"), (e) =>
      KeelError.is(e, "E_SERVICE_MISSING") &&
      e.message.startsWith('Plugin "report" requires service "metrics"') &&
      e.message.endsWith('and list it in "report".requires so it is set up first') &&
      e.details?.plugin === "report");
  });

  test("removeProvider drops only that plugin's services", () => {
    const table = new ServiceTable();
    const Db = defineService<string>("db");
    const Cache = defineService<string>("cache");
    table.provide(Metrics, metrics, "stats");
    table.provide(Db, "sqlite", "store");
    table.provide(Cache, "lru", "store");
    table.removeProvider("store");
    assert.deepEqual(table.list(), [{ id: "metrics", provider: "stats" }]);
    assert.equal(table.has(Db), false);
    table.provide(Db, "postgres", "other-store");
    assert.equal(table.get(Db), "postgres");
  });
});
