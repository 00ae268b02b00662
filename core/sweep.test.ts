import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  choice,
  createRng,
  grid,
  interval,
  parseSweepFlags,
  randomSearch,
  range,
  sweepConfigs,
  zip,
} from "./sweep.ts";
import { KeelError } from "./errors.ts";

/** Asserts that `work` throws E_SWEEP_INVALID whose message matches each pattern. */
function invalid(work: () => unknown, ...patterns: RegExp[]): KeelError {
  let caught: unknown;
  try {
    work();
  } catch (e) {
    caught = e;
  }
  assert.ok(
    KeelError.is(caught, "E_SWEEP_INVALID"),
    `expected E_SWEEP_INVALID, got ${String(caught)}`,
  );
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

describe("range", () => {
  test("Python semantics: stop is exclusive, step defaults to 1, negative steps count down", () => {
    assert.deepEqual(range(0, 4), [0, 1, 2, 3]);
    assert.deepEqual(range(32, 129, 32), [32, 64, 96, 128]);
    assert.deepEqual(range(32, 128, 32), [32, 64, 96]);
    assert.deepEqual(range(5, 0, -2), [5, 3, 1]);
    assert.deepEqual(range(0, 5, -1), []);
    assert.deepEqual(range(3, 3), []);
  });

  test("float steps without float noise, and without the stop", () => {
    assert.deepEqual(range(0, 0.5, 0.1), [0, 0.1, 0.2, 0.3, 0.4]);
    assert.deepEqual(range(0.1, 0.7, 0.2), [0.1, 0.3, 0.5]);
  });

  test("a step of 0, a bound that is not finite, too many values", () => {
    invalid(() => range(1, 5, 0), /step other than 0/, /range\(1, 5, 0\)/);
    invalid(() => range(0, Infinity), /finite numbers/);
    invalid(() => range(0, 1, Number.NaN), /finite numbers/);
    invalid(() => range(0, 2_000_000), /at most 1000000 values/);
    assert.equal(range(0, 1_000_000).length, 1_000_000);
  });
});

describe("createRng", () => {
  test("the same seed gives the same numbers, in [0, 1)", () => {
    const a = createRng(123);
    const b = createRng(123);
    const xs = Array.from({ length: 1000 }, () => a());
    assert.deepEqual(xs, Array.from({ length: 1000 }, () => b()));
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    assert.ok(new Set(xs).size > 990, "numbers vary");
  });

  test("different seeds give different numbers", () => {
    assert.notEqual(createRng(1)(), createRng(2)());
  });

  test("a known first value, so the sequence is the same on every runtime", () => {
    // mulberry32(0), first output.
    assert.equal(createRng(0)(), 0.26642920868471265);
  });
});

describe("choice and interval", () => {
  test("choice picks every value sometimes and nothing else", () => {
    const rng = createRng(5);
    const d = choice(["a", "b", "c"]);
    const seen = new Set(Array.from({ length: 200 }, () => d.sample(rng)));
    assert.deepEqual([...seen].sort(), ["a", "b", "c"]);
    assert.equal(d.kind, "choice");
    assert.deepEqual(d.values, ["a", "b", "c"]);
    invalid(() => choice([]), /at least one value/);
  });

  test("a uniform interval stays in [low, high)", () => {
    const rng = createRng(9);
    const d = interval(0.1, 0.5);
    const xs = Array.from({ length: 500 }, () => d.sample(rng) as number);
    assert.ok(xs.every((x) => x >= 0.1 && x < 0.5));
    assert.ok(Math.min(...xs) < 0.15 && Math.max(...xs) > 0.45);
  });

  test("a log interval spreads over orders of magnitude", () => {
    const rng = createRng(9);
    const d = interval(1e-5, 1e-1, { log: true });
    const xs = Array.from({ length: 500 }, () => d.sample(rng) as number);
    assert.ok(xs.every((x) => x >= 1e-5 && x < 1e-1));
    // Uniform would put almost nothing below 1e-3; log-uniform puts about half there.
    const small = xs.filter((x) => x < 1e-3).length;
    assert.ok(small > 180 && small < 320, `${small} of 500 below 1e-3`);
  });

  test("an integer interval gives whole numbers, both bounds included", () => {
    const rng = createRng(3);
    const d = interval(1, 4, { integer: true });
    const xs = new Set(Array.from({ length: 300 }, () => d.sample(rng)));
    assert.deepEqual([...xs].sort(), [1, 2, 3, 4]);
    const logInt = interval(1, 1000, { integer: true, log: true });
    const ys = Array.from({ length: 300 }, () => logInt.sample(rng) as number);
    assert.ok(ys.every((y) => Number.isInteger(y) && y >= 1 && y <= 1000));
  });

  test("bad bounds", () => {
    invalid(() => interval(2, 1), /low bound below its high bound/, /interval\(2, 1\)/);
    invalid(() => interval(1, 1), /low bound below/);
    invalid(() => interval(0, 1, { log: true }), /above 0/);
    invalid(() => interval(0.2, 0.8, { integer: true }), /whole number/);
    invalid(() => interval(0, Infinity), /finite/);
  });
});

describe("grid", () => {
  test("every combination, the first key varying slowest", () => {
    const configs = grid({ a: [1, 2], b: ["x", "y", "z"] });
    assert.deepEqual(configs.map((c) => c.params), [
      { a: 1, b: "x" },
      { a: 1, b: "y" },
      { a: 1, b: "z" },
      { a: 2, b: "x" },
      { a: 2, b: "y" },
      { a: 2, b: "z" },
    ]);
  });

  test("on top of a base config", () => {
    const [first] = grid({ lr: [0.1] }, {
      params: { lr: 1, bs: 8 },
      args: ["x"],
      metadata: { m: 1 },
    });
    assert.deepEqual(first!.params, { lr: 0.1, bs: 8 });
    assert.deepEqual(first!.args, ["x"]);
    assert.deepEqual(first!.metadata, { m: 1 });
  });

  test("an empty space is one run of the base", () => {
    assert.deepEqual(grid({}).map((c) => c.params), [{}]);
  });

  test("an empty list, a value that is not a list, a bad base", () => {
    invalid(() => grid({ lr: [] }), /Param "lr" of grid\(\) has an empty list/);
    invalid(() => grid({ lr: 0.1 } as unknown as Record<string, unknown[]>), /must be a list/);
    assert.throws(
      () => grid({ a: [1] }, { params: [] } as never),
      (e) => KeelError.is(e, "E_CONFIG_INVALID"),
    );
  });

  test("too many combinations", () => {
    const big = Array.from({ length: 1001 }, (_, i) => i);
    invalid(() => grid({ a: big, b: big }), /at most 1000000 combinations/);
  });
});

describe("zip", () => {
  test("values side by side", () => {
    assert.deepEqual(zip({ lr: [0.1, 0.01], warmup: [100, 500] }).map((c) => c.params), [
      { lr: 0.1, warmup: 100 },
      { lr: 0.01, warmup: 500 },
    ]);
  });

  test("lists of different lengths name each length", () => {
    const e = invalid(
      () => zip({ lr: [0.1, 0.01, 0.001], bs: [32, 64] }),
      /"lr" has 3, "bs" has 2/,
    );
    assert.deepEqual(e.details?.lengths, { lr: 3, bs: 2 });
  });

  test("an empty list", () => {
    invalid(() => zip({ lr: [] }), /empty list/);
  });
});

describe("randomSearch", () => {
  const space = {
    lr: interval(1e-4, 1e-1, { log: true }),
    layers: interval(1, 4, { integer: true }),
    opt: ["adam", "sgd", "rmsprop"],
  };

  test("the same seed gives the same configs", () => {
    const a = randomSearch(space, { trials: 20, seed: 7 });
    const b = randomSearch(space, { trials: 20, seed: 7 });
    assert.equal(a.length, 20);
    assert.deepEqual(a.map((c) => c.params), b.map((c) => c.params));
  });

  test("different seeds give different configs", () => {
    const a = randomSearch(space, { trials: 5, seed: 1 }).map((c) => c.params.lr);
    const b = randomSearch(space, { trials: 5, seed: 2 }).map((c) => c.params.lr);
    assert.notDeepEqual(a, b);
  });

  test("samples lie in their spaces and sit on the base", () => {
    const configs = randomSearch(space, { trials: 50, seed: 3 }, { params: { epochs: 2 } });
    for (const { params } of configs) {
      assert.ok((params.lr as number) >= 1e-4 && (params.lr as number) < 1e-1);
      assert.ok([1, 2, 3, 4].includes(params.layers as number));
      assert.ok(["adam", "sgd", "rmsprop"].includes(params.opt as string));
      assert.equal(params.epochs, 2);
    }
  });

  test("bad trials, an empty list, a value that is neither list nor distribution", () => {
    invalid(() => randomSearch(space, { trials: 0 }), /whole number of trials/);
    invalid(() => randomSearch(space, { trials: 1.5 }), /whole number of trials/);
    invalid(() => randomSearch({ a: [] }, { trials: 1 }), /empty list/);
    invalid(
      () => randomSearch({ a: 3 } as never, { trials: 1 }),
      /list of values or a distribution/,
    );
  });
});

describe("parseSweepFlags", () => {
  test("lists: JSON values, else text", () => {
    const { axes, distributions } = parseSweepFlags([
      "lr=0.001,0.01,0.1",
      "name=ada, bob",
      "shape=[1,2],[3,4]",
      "flag=true,false",
      "one=7",
      "loose=.5,+1,5.",
      "quoted='a,b',\"c,d\"",
    ]);
    assert.deepEqual(axes, {
      lr: [0.001, 0.01, 0.1],
      name: ["ada", "bob"],
      shape: [[1, 2], [3, 4]],
      flag: [true, false],
      one: [7],
      loose: [0.5, 1, 5],
      quoted: ["a,b", "c,d"],
    });
    assert.deepEqual(distributions, {});
  });

  test("range", () => {
    const { axes } = parseSweepFlags(["bs=range(32,129,32)", "n=range(3)", "down=range(3, 0, -1)"]);
    assert.deepEqual(axes, { bs: [32, 64, 96, 128], n: [0, 1, 2], down: [3, 2, 1] });
  });

  test("choice and interval become distributions", () => {
    const { axes, distributions } = parseSweepFlags([
      "opt=choice(adam,sgd,1)",
      "drop=interval(0.1,0.5)",
      "lr=interval(1e-4,1e-1,log)",
      "layers=interval(1,10,int)",
      "width=interval(8,512,log,int)",
    ]);
    assert.deepEqual(axes, {});
    assert.deepEqual(distributions.opt!.values, ["adam", "sgd", 1]);
    const rng = createRng(1);
    for (let i = 0; i < 50; i++) {
      const drop = distributions.drop!.sample(rng) as number;
      assert.ok(drop >= 0.1 && drop < 0.5);
      const lr = distributions.lr!.sample(rng) as number;
      assert.ok(lr >= 1e-4 && lr < 1e-1);
      const layers = distributions.layers!.sample(rng) as number;
      assert.ok(Number.isInteger(layers) && layers >= 1 && layers <= 10);
      const width = distributions.width!.sample(rng) as number;
      assert.ok(Number.isInteger(width) && width >= 8 && width <= 512);
    }
  });

  test("malformed flags", () => {
    invalid(() => parseSweepFlags(["lr="]), /no values after "="/);
    invalid(() => parseSweepFlags(["=1"]), /no param name/);
    invalid(() => parseSweepFlags(["lr"]), /not key=values/);
    invalid(() => parseSweepFlags(["bs=range(1,2"]), /missing a closing "\)"/);
    invalid(
      () => parseSweepFlags(["x=interval(2,1)"]),
      /"x=interval\(2,1\)"/,
      /low bound below its high bound/,
    );
    invalid(() => parseSweepFlags(["x=interval(1)"]), /a low and a high bound/);
    invalid(() => parseSweepFlags(["x=interval(1,2,cubic)"]), /"log" and "int", got "cubic"/);
    invalid(() => parseSweepFlags(["bs=range(1,2,0)"]), /step other than 0/);
    invalid(() => parseSweepFlags(["bs=range(a,2)"]), /range\(\) takes numbers, got "a"/);
    invalid(() => parseSweepFlags(["bs=range()"]), /1 to 3 numbers/);
    invalid(() => parseSweepFlags(["bs=range(5,1)"]), /range is empty/);
    invalid(
      () => parseSweepFlags(["bs=rnage(1,5)"]),
      /"rnage\(\)", which does not exist \(did you mean "range"\?\)/,
    );
    invalid(() => parseSweepFlags(["x=choice()"]), /choice\(\) needs values/);
    invalid(() => parseSweepFlags(["lr=0.1,,0.2"]), /empty value/);
    invalid(() => parseSweepFlags(["lr=[1,2"]), /missing a closing "\]"/);
    invalid(() => parseSweepFlags(["lr=1]"]), /unmatched "\]"/);
    invalid(() => parseSweepFlags(['lr="a']), /unclosed quote/);
    invalid(() => parseSweepFlags(["bs=range(1,2),range(3,4)"]), /unmatched "\)"/);
    invalid(() => parseSweepFlags(["lr=1,2", "lr=3"]), /sets "lr" twice/);
  });
});

describe("sweepConfigs", () => {
  test("a grid by default, a zip on request", () => {
    const parsed = parseSweepFlags(["lr=0.1,0.01", "bs=32,64"]);
    assert.deepEqual(sweepConfigs(parsed, {}).map((c) => c.params), [
      { lr: 0.1, bs: 32 },
      { lr: 0.1, bs: 64 },
      { lr: 0.01, bs: 32 },
      { lr: 0.01, bs: 64 },
    ]);
    assert.deepEqual(sweepConfigs(parsed, { mode: "zip" }).map((c) => c.params), [
      { lr: 0.1, bs: 32 },
      { lr: 0.01, bs: 64 },
    ]);
  });

  test("trials: a random search over lists and distributions, seeded", () => {
    const parsed = parseSweepFlags(["opt=adam,sgd", "lr=interval(1e-4,1e-1,log)"]);
    const a = sweepConfigs(parsed, { trials: 4, seed: 11 }, { params: { epochs: 1 } });
    assert.equal(a.length, 4);
    assert.deepEqual(
      a.map((c) => c.params),
      sweepConfigs(parsed, { trials: 4, seed: 11 }, { params: { epochs: 1 } }).map((c) => c.params),
    );
    assert.ok(a.every((c) => c.params.epochs === 1 && typeof c.params.lr === "number"));
  });

  test("a distribution without --trials says to add it", () => {
    invalid(
      () => sweepConfigs(parseSweepFlags(["lr=interval(0.1,1)"]), {}),
      /"lr" is a distribution/,
      /add --trials N/,
    );
  });

  test("trials cannot be zipped", () => {
    invalid(
      () => sweepConfigs(parseSweepFlags(["lr=1,2"]), { mode: "zip", trials: 2 }),
      /cannot be zipped/,
    );
  });

  test("zip lengths are checked", () => {
    invalid(
      () => sweepConfigs(parseSweepFlags(["lr=1,2", "bs=1"]), { mode: "zip" }),
      /"lr" has 2, "bs" has 1/,
    );
  });

  test("no sweep flags: one run of the base", () => {
    assert.deepEqual(
      sweepConfigs(parseSweepFlags([]), {}, { params: { a: 1 } }).map((c) => c.params),
      [{ a: 1 }],
    );
  });
});
