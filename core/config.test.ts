import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  applyParams,
  checkConfigKeys,
  closestName,
  coerceValue,
  type Config,
  defineConfig,
  EMPTY_CONFIG,
  expandConfigs,
  loadConfigFile,
  mergeConfigs,
  normalizeConfig,
  parseAssignment,
} from "./config.ts";
import { type ErrorCodeName, KeelError } from "./errors.ts";

const FIXTURES = new URL("../tests/fixtures/configs/", import.meta.url);

function fixture(name: string): string {
  return new URL(name, FIXTURES).href;
}

async function load(
  name: string,
  options: Parameters<typeof loadConfigFile>[1] = {},
): Promise<Config[]> {
  return await Array.fromAsync(loadConfigFile(fixture(name), options));
}

/** Asserts that `work` throws a KeelError with `code` whose message matches each pattern. */
async function rejectsWith(
  work: () => unknown,
  code: ErrorCodeName,
  ...patterns: RegExp[]
): Promise<KeelError> {
  let caught: unknown;
  try {
    await work();
  } catch (e) {
    caught = e;
  }
  assert.ok(KeelError.is(caught), `expected a KeelError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

function plain(config: Config): unknown {
  return JSON.parse(JSON.stringify(config));
}

describe("normalizeConfig", () => {
  test("fills every field and freezes the result", () => {
    const c = normalizeConfig({ params: { lr: 0.1 } }, "x");
    assert.deepEqual(plain(c), { params: { lr: 0.1 }, args: [], kwargs: {}, metadata: {} });
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.params) && Object.isFrozen(c.args));
  });

  test("copies, so changing the input later changes nothing", () => {
    const params: Record<string, unknown> = { lr: 0.1 };
    const c = normalizeConfig({ params }, "x");
    params.lr = 9;
    assert.equal(c.params.lr, 0.1);
  });

  test("rejects a value that is not an object, naming where", async () => {
    await rejectsWith(
      () => normalizeConfig(42, "cfg.ts"),
      "E_CONFIG_INVALID",
      /"cfg\.ts" is a number/,
    );
    await rejectsWith(
      () => normalizeConfig([], "cfg.ts"),
      "E_CONFIG_INVALID",
      /an array, not a config/,
    );
    await rejectsWith(() => normalizeConfig(null, "cfg.ts"), "E_CONFIG_INVALID", /null/);
  });

  test("rejects params that are not an object, naming the field", async () => {
    const e = await rejectsWith(
      () => normalizeConfig({ params: [1] }, "cfg.ts"),
      "E_CONFIG_INVALID",
      /In "cfg\.ts", "params" must be an object/,
      /got an array/,
    );
    assert.equal(e.details?.field, "params");
    await rejectsWith(
      () => normalizeConfig({ kwargs: "a" }, "cfg.ts"),
      "E_CONFIG_INVALID",
      /"kwargs"/,
    );
    await rejectsWith(
      () => normalizeConfig({ metadata: new Map() }, "cfg.ts"),
      "E_CONFIG_INVALID",
      /"metadata"/,
    );
  });

  test("rejects args that are not a list", async () => {
    const e = await rejectsWith(
      () => normalizeConfig({ args: { a: 1 } }, "cfg.ts"),
      "E_CONFIG_INVALID",
      /"args" must be a list, got an object/,
    );
    assert.equal(e.details?.field, "args");
  });

  test("rejects a bad extends", async () => {
    await rejectsWith(
      () => normalizeConfig({ extends: 3 }, "cfg.ts"),
      "E_CONFIG_INVALID",
      /"extends"/,
    );
    await rejectsWith(
      () => normalizeConfig({ extends: [""] }, "cfg.ts"),
      "E_CONFIG_INVALID",
      /"extends"/,
    );
  });

  test("rejects an unknown field, with a suggestion and where params go", async () => {
    await rejectsWith(
      () => normalizeConfig({ param: { lr: 1 } }, "cfg.ts"),
      "E_CONFIG_INVALID",
      /"param" is not a config field \(did you mean "params"\?\)/,
    );
    await rejectsWith(
      () => normalizeConfig({ globals: { lr: 1 } }, "cfg.ts"),
      "E_CONFIG_INVALID",
      /did you mean "params"/,
    );
    await rejectsWith(
      () => normalizeConfig({ lr: 0.1 }, "cfg.ts"),
      "E_CONFIG_INVALID",
      /"lr" is not a config field \(a config has "params", .*\); put script params under "params", as in \{ params: \{ lr: \.\.\. \} \}/,
    );
  });

  test("defineConfig returns its argument", () => {
    const c = { params: { lr: 1 } } as const;
    assert.equal(defineConfig(c), c);
  });
});

describe("mergeConfigs", () => {
  const base = normalizeConfig(
    { params: { a: 1, b: 1 }, args: [1, 2], kwargs: { k: 1 }, metadata: { m: 1 } },
    "base",
  );

  test("merges params, kwargs and metadata key by key; the override wins", () => {
    const over = normalizeConfig(
      { params: { b: 2, c: 3 }, kwargs: { j: 2 }, metadata: { m: 2 } },
      "over",
    );
    assert.deepEqual(plain(mergeConfigs(base, over)), {
      params: { a: 1, b: 2, c: 3 },
      args: [1, 2],
      kwargs: { k: 1, j: 2 },
      metadata: { m: 2 },
    });
  });

  test("replaces args only when the override has some", () => {
    assert.deepEqual(mergeConfigs(base, normalizeConfig({ args: ["x"] }, "over")).args, ["x"]);
    assert.deepEqual(mergeConfigs(base, EMPTY_CONFIG).args, [1, 2]);
  });
});

describe("loadConfigFile", () => {
  test("a single config", async () => {
    const configs = await load("single.ts");
    assert.equal(configs.length, 1);
    assert.deepEqual(plain(configs[0]!), {
      params: { lr: 0.01, layers: [64, 64] },
      args: ["train"],
      kwargs: { verbose: true },
      metadata: { note: "single" },
    });
  });

  test("a list", async () => {
    const configs = await load("list.ts");
    assert.deepEqual(configs.map((c) => c.params.lr), [0.1, 0.01, 0.001]);
  });

  test("a generator function, in the order it yields", async () => {
    const configs = await load("generator.ts");
    assert.deepEqual(configs.map((c) => c.params), [
      { lr: 0.1, seed: 1 },
      { lr: 0.01, seed: 1 },
      { lr: 0.1, seed: 2 },
      { lr: 0.01, seed: 2 },
    ]);
  });

  test("an async generator function", async () => {
    const configs = await load("async-generator.ts");
    assert.deepEqual(configs.map((c) => c.params.step), [0, 1, 2]);
  });

  test("a function returning a list, and an async function returning one config", async () => {
    assert.deepEqual((await load("function-list.ts")).map((c) => c.params.n), [1, 2]);
    assert.deepEqual((await load("async-function.ts")).map((c) => c.params.ready), [true]);
  });

  test("no default export: every exported value that is not a function is a param", async () => {
    const [config, ...rest] = await load("globals.ts");
    assert.equal(rest.length, 0);
    assert.deepEqual(plain(config!), {
      params: { layers: [128, 64], lr: 3e-4, name: "mlp" },
      args: [],
      kwargs: {},
      metadata: {},
    });
  });

  test("no default export but a config_gen function: it is the generator", async () => {
    assert.deepEqual((await load("config-gen.ts")).map((c) => c.params.k), [1, 2]);
  });

  test("a JSON file with a list", async () => {
    const configs = await load("configs.json");
    assert.deepEqual(configs.map(plain), [
      { params: { lr: 0.1 }, args: [1], kwargs: {}, metadata: {} },
      { params: { lr: 0.2 }, args: [], kwargs: {}, metadata: { tag: "b" } },
    ]);
  });

  test("takes an absolute path as well as a file: URL", async () => {
    const path = decodeURIComponent(new URL("list.ts", FIXTURES).pathname);
    assert.equal((await Array.fromAsync(loadConfigFile(path))).length, 3);
  });

  test("a file that throws: E_CONFIG_LOAD_FAILED with the cause", async () => {
    const e = await rejectsWith(
      () => load("throws.ts"),
      "E_CONFIG_LOAD_FAILED",
      /Config file "throws\.ts" could not be loaded: the config file blew up/,
    );
    assert.ok(e.cause instanceof Error);
  });

  test("a generator that throws midway: E_CONFIG_LOAD_FAILED after the configs it gave", async () => {
    const seen: Config[] = [];
    await rejectsWith(
      async () => {
        for await (const c of loadConfigFile(fixture("generator-throws.ts"))) seen.push(c);
      },
      "E_CONFIG_LOAD_FAILED",
      /"generator-throws\.ts" threw after 1 config: ran out of ideas/,
    );
    assert.equal(seen.length, 1);
  });

  test("a file that does not exist", async () => {
    await rejectsWith(
      () => load("nope.ts"),
      "E_CONFIG_LOAD_FAILED",
      /"nope\.ts"/,
      /check the path/,
    );
    await rejectsWith(
      () => load("nope.json"),
      "E_CONFIG_LOAD_FAILED",
      /"nope\.json" could not be read/,
    );
  });

  test("malformed JSON", async () => {
    await rejectsWith(
      () => load("bad.json"),
      "E_CONFIG_LOAD_FAILED",
      /"bad\.json" is not valid JSON/,
    );
  });

  test("a file type it cannot load", async () => {
    await rejectsWith(
      () => load("notes.yaml"),
      "E_CONFIG_LOAD_FAILED",
      /\.ts, \.js, \.mjs or \.json/,
    );
  });

  test("yields nothing: E_CONFIG_EMPTY", async () => {
    await rejectsWith(
      () => load("empty-list.ts"),
      "E_CONFIG_EMPTY",
      /"empty-list\.ts" yields no configs/,
    );
    await rejectsWith(() => load("empty-generator.ts"), "E_CONFIG_EMPTY", /yields no configs/);
    await rejectsWith(() => load("no-exports.ts"), "E_CONFIG_EMPTY", /exports no config/);
  });

  test("an infinite generator is stopped by maxRuns: E_CONFIG_TOO_MANY", async () => {
    const seen: Config[] = [];
    const e = await rejectsWith(
      async () => {
        for await (const c of loadConfigFile(fixture("infinite.ts"), { maxRuns: 5 })) seen.push(c);
      },
      "E_CONFIG_TOO_MANY",
      /"infinite\.ts" yields more than 5 configs/,
      /--max-runs/,
    );
    assert.equal(seen.length, 5);
    assert.equal(e.details?.maxRuns, 5);
  });

  test("exactly maxRuns configs is fine", async () => {
    assert.equal((await load("list.ts", { maxRuns: 3 })).length, 3);
    await rejectsWith(() => load("list.ts", { maxRuns: 2 }), "E_CONFIG_TOO_MANY");
  });

  test("a bad maxRuns is a programmer error", async () => {
    await assert.rejects(() => load("list.ts", { maxRuns: 0 }), RangeError);
  });

  test("wrong field types name the file and the field", async () => {
    await rejectsWith(
      () => load("bad-params.ts"),
      "E_CONFIG_INVALID",
      /In "bad-params\.ts", "params" must be an object/,
    );
    await rejectsWith(
      () => load("bad-args.json"),
      "E_CONFIG_INVALID",
      /In "bad-args\.json", "args" must be a list/,
    );
    await rejectsWith(
      () => load("unknown-field.ts"),
      "E_CONFIG_INVALID",
      /"lr" is not a config field/,
    );
  });

  test("a bad item in a list names its position", async () => {
    await rejectsWith(
      () => load("bad-item.ts"),
      "E_CONFIG_INVALID",
      /"bad-item\.ts" \(config 2\) is a number/,
    );
  });

  test("a KeelError raised while the file loads keeps its code and gains the file name", async () => {
    await rejectsWith(
      () => load("sweep-error.ts"),
      "E_SWEEP_INVALID",
      /same length/,
      /\(in "sweep-error\.ts"\)/,
    );
  });

  test("uses the importer and reader it is given", async () => {
    const imported: string[] = [];
    const configs = await load("list.ts", {
      importModule: (url) => {
        imported.push(url);
        return Promise.resolve({ default: { params: { fake: true } } });
      },
    });
    assert.deepEqual(imported, [fixture("list.ts")]);
    assert.deepEqual(configs.map((c) => c.params), [{ fake: true }]);
    const fromText = await load("whatever.json", {
      readText: () => Promise.resolve('{"params":{"x":1}}'),
    });
    assert.deepEqual(fromText.map((c) => c.params), [{ x: 1 }]);
  });
});

describe("extends", () => {
  test("applies bases first, in order; the extending file wins", async () => {
    const [config] = await load("child.ts");
    assert.deepEqual(plain(config!), {
      params: { lr: 0.5, bs: 64, wd: 0.01 },
      args: ["base"],
      kwargs: { a: 1, b: 2 },
      metadata: { from: "child" },
    });
    assert.equal((config as { extends?: unknown }).extends, undefined);
  });

  test("resolves relative to the extending file, through more than one level", async () => {
    const [config] = await load("sub/nested.ts");
    assert.deepEqual(config!.params, { lr: 0.5, bs: 8, wd: 0.01 });
  });

  test("a sweep in a config file may extend a base", async () => {
    const configs = await load("grid-extends.ts");
    assert.deepEqual(configs.map((c) => c.params), [
      { lr: 1, bs: 32, wd: 0 },
      { lr: 2, bs: 32, wd: 0 },
    ]);
    assert.deepEqual(configs[0]!.args, ["base"]);
  });

  test("a cycle a -> b -> a: E_CONFIG_EXTENDS_CYCLE naming the chain", async () => {
    await rejectsWith(
      () => load("cycle-a.ts"),
      "E_CONFIG_EXTENDS_CYCLE",
      /cycle-a\.ts -> cycle-b\.ts -> cycle-a\.ts/,
    );
  });

  test("a file that extends itself", async () => {
    await rejectsWith(() => load("self.ts"), "E_CONFIG_EXTENDS_CYCLE", /self\.ts -> self\.ts/);
  });

  test("a base that yields more than one config", async () => {
    await rejectsWith(
      () => load("extends-list.ts"),
      "E_CONFIG_INVALID",
      /"list\.ts" is used as a base/,
    );
  });

  test("a base that does not exist", async () => {
    await rejectsWith(
      () => load("extends-missing.ts"),
      "E_CONFIG_LOAD_FAILED",
      /does-not-exist\.ts/,
    );
  });

  test("a base used by many configs is loaded once", async () => {
    let imports = 0;
    const configs = await Array.fromAsync(
      expandConfigs(
        [{ extends: "./base.ts" }, { extends: "./base.ts" }, { extends: "./base.ts" }],
        {
          file: fixture("in-code.ts"),
          importModule: async (url) => {
            imports++;
            return await import(url);
          },
        },
      ),
    );
    assert.equal(configs.length, 3);
    assert.equal(imports, 1);
  });
});

describe("expandConfigs", () => {
  test("a single config, a list, an iterable, an async iterable, a function", async () => {
    const lrs = async (source: unknown): Promise<unknown[]> =>
      (await Array.fromAsync(expandConfigs(source))).map((c) => c.params.lr);
    assert.deepEqual(await lrs({ params: { lr: 1 } }), [1]);
    assert.deepEqual(await lrs([{ params: { lr: 1 } }, { params: { lr: 2 } }]), [1, 2]);
    assert.deepEqual(await lrs(new Set([{ params: { lr: 3 } }])), [3]);
    assert.deepEqual(
      await lrs((async function* () {
        yield { params: { lr: 4 } };
      })()),
      [4],
    );
    assert.deepEqual(await lrs(() => ({ params: { lr: 5 } })), [5]);
    assert.deepEqual(await lrs(Promise.resolve([{ params: { lr: 6 } }])), [6]);
  });

  test("names the source in errors", async () => {
    await rejectsWith(
      () => Array.fromAsync(expandConfigs([{}, { params: 1 }], { where: "my sweep" })),
      "E_CONFIG_INVALID",
      /In "my sweep" \(config 2\), "params" must be an object/,
    );
    await rejectsWith(
      () => Array.fromAsync(expandConfigs([], { where: "my sweep" })),
      "E_CONFIG_EMPTY",
      /"my sweep"/,
    );
    await rejectsWith(
      () =>
        Array.fromAsync(expandConfigs(() => {
          throw new Error("nope");
        }, { where: "my sweep" })),
      "E_CONFIG_LOAD_FAILED",
      /Config "my sweep" threw: nope/,
    );
  });

  test("stops an infinite generator at maxRuns and closes it", async () => {
    let closed = false;
    function* forever(): Generator<{ params: { i: number } }> {
      try {
        for (let i = 0;; i++) yield { params: { i } };
      } finally {
        closed = true;
      }
    }
    await rejectsWith(
      () => Array.fromAsync(expandConfigs(forever, { maxRuns: 3 })),
      "E_CONFIG_TOO_MANY",
    );
    assert.ok(closed, "the generator was closed");
  });

  test("a relative extends needs a file to resolve against", async () => {
    await rejectsWith(
      () => Array.fromAsync(expandConfigs({ extends: "./base.ts" })),
      "E_CONFIG_INVALID",
      /relative path/,
    );
    const [viaUrl] = await Array.fromAsync(expandConfigs({ extends: fixture("base.ts") }));
    assert.equal(viaUrl!.params.bs, 32);
  });

  test("is lazy: stopping early stops the source", async () => {
    let made = 0;
    function* counted(): Generator<object> {
      for (;;) {
        made++;
        yield {};
      }
    }
    for await (const _ of expandConfigs(counted)) break;
    assert.equal(made, 1);
  });
});

describe("parseAssignment", () => {
  test("splits at the first =, keeps dotted keys as they are", () => {
    assert.deepEqual(parseAssignment("lr=0.1"), ["lr", "0.1"]);
    assert.deepEqual(parseAssignment("q=a=b"), ["q", "a=b"]);
    assert.deepEqual(parseAssignment("model.depth=3"), ["model.depth", "3"]);
    assert.deepEqual(parseAssignment("name="), ["name", ""]);
  });

  test("a missing = or an empty key", async () => {
    await rejectsWith(
      () => parseAssignment("lr"),
      "E_CONFIG_INVALID",
      /"lr" is not an assignment; write key=value/,
    );
    await rejectsWith(() => parseAssignment("=1"), "E_CONFIG_INVALID", /no key before "="/);
  });
});

describe("coerceValue", () => {
  test("numbers", async () => {
    assert.equal(coerceValue("lr", "1e-3", 0.1), 0.001);
    assert.equal(coerceValue("n", " 12 ", 1), 12);
    assert.equal(coerceValue("n", "-3", 1), -3);
    const e = await rejectsWith(
      () => coerceValue("lr", "abc", 0.1),
      "E_CONFIG_INVALID",
      /Param "lr" expects a number \(its default is 0\.1\), got "abc"/,
    );
    assert.deepEqual(e.details, { key: "lr", value: "abc", expected: "a number" });
    await rejectsWith(() => coerceValue("lr", "", 0.1), "E_CONFIG_INVALID");
    await rejectsWith(() => coerceValue("lr", "Infinity", 0.1), "E_CONFIG_INVALID", /finite/);
  });

  test("booleans", async () => {
    for (const t of ["true", "TRUE", "1", "yes", "on"]) {
      assert.equal(coerceValue("b", t, false), true);
    }
    for (const f of ["false", "0", "no", "off"]) assert.equal(coerceValue("b", f, true), false);
    await rejectsWith(
      () => coerceValue("b", "maybe", false),
      "E_CONFIG_INVALID",
      /expects a boolean/,
      /"maybe"/,
    );
  });

  test("strings stay as they are", () => {
    assert.equal(coerceValue("s", "42", "x"), "42");
    assert.equal(coerceValue("s", "", "x"), "");
  });

  test("bigints", async () => {
    assert.equal(coerceValue("n", "12345678901234567890", 1n), 12345678901234567890n);
    await rejectsWith(() => coerceValue("n", "1.5", 1n), "E_CONFIG_INVALID", /an integer/);
  });

  test("arrays and objects take JSON of the same kind", async () => {
    assert.deepEqual(coerceValue("xs", "[1,2]", []), [1, 2]);
    assert.deepEqual(coerceValue("o", '{"a":1}', { a: 0 }), { a: 1 });
    await rejectsWith(
      () => coerceValue("xs", "{}", [1]),
      "E_CONFIG_INVALID",
      /expects a JSON array/,
    );
    await rejectsWith(
      () => coerceValue("xs", "1,2", [1]),
      "E_CONFIG_INVALID",
      /expects a JSON array/,
    );
    await rejectsWith(
      () => coerceValue("o", "[]", {}),
      "E_CONFIG_INVALID",
      /expects a JSON object/,
    );
    await rejectsWith(
      () => coerceValue("o", "null", {}),
      "E_CONFIG_INVALID",
      /expects a JSON object/,
    );
  });

  test("a null or missing default takes JSON, else the text", () => {
    assert.equal(coerceValue("x", "3", null), 3);
    assert.equal(coerceValue("x", "hello", null), "hello");
    assert.deepEqual(coerceValue("x", '{"a":1}', undefined), { a: 1 });
    assert.equal(coerceValue("x", "hello", undefined), "hello");
    assert.equal(coerceValue("x", ".5", undefined), 0.5);
    assert.equal(coerceValue("x", "007", null), 7);
  });

  test("a default text cannot set", async () => {
    await rejectsWith(() => coerceValue("f", "x", () => 1), "E_CONFIG_INVALID", /a function/);
  });
});

describe("applyParams", () => {
  const defaults = { lr: 0.1, epochs: 3, name: "run" };

  test("overrides on top of the defaults", () => {
    assert.deepEqual(applyParams(defaults, { lr: 0.5 }), {
      params: { lr: 0.5, epochs: 3, name: "run" },
      unknown: [],
    });
  });

  test("coerces strings with coerce, and only strings", () => {
    const { params } = applyParams(defaults, { lr: "0.01", epochs: 7 }, { coerce: true });
    assert.equal(params.lr, 0.01);
    assert.equal(params.epochs, 7);
    assert.equal(applyParams(defaults, { lr: "0.01" }).params.lr, "0.01");
  });

  test("strict (the default): an unknown key is E_CONFIG_UNKNOWN_KEY with a suggestion", async () => {
    const e = await rejectsWith(
      () => applyParams(defaults, { epohcs: 5 }, { where: "train.ts" }),
      "E_CONFIG_UNKNOWN_KEY",
      /Script "train\.ts" has no param "epohcs" \(did you mean "epochs"\?\); its params are "lr", "epochs", "name"/,
    );
    assert.equal(e.details?.suggestion, "epochs");
    await rejectsWith(
      () => applyParams(defaults, { zzz: 1 }, { strict: true }),
      "E_CONFIG_UNKNOWN_KEY",
      /has no param "zzz"; its params are/,
    );
  });

  test("a script with no params", async () => {
    await rejectsWith(
      () => applyParams({}, { lr: 1 }),
      "E_CONFIG_UNKNOWN_KEY",
      /has no params, so "lr" cannot be set/,
    );
  });

  test("non-strict: an unknown key is kept and reported", () => {
    const result = applyParams(defaults, { seed: "7", lr: 1 }, { strict: false, coerce: true });
    assert.deepEqual(result, {
      params: { lr: 1, epochs: 3, name: "run", seed: 7 },
      unknown: ["seed"],
    });
  });

  test("a coercion failure names the key", async () => {
    await rejectsWith(
      () => applyParams(defaults, { lr: "fast" }, { coerce: true }),
      "E_CONFIG_INVALID",
      /"lr"/,
    );
  });

  test("defaults that are not an object", async () => {
    await rejectsWith(
      () => applyParams([1] as unknown as Record<string, unknown>, {}, { where: "s.ts" }),
      "E_CONFIG_INVALID",
      /exports "params" that is an array/,
    );
  });
});

describe("checkConfigKeys and closestName", () => {
  test("hit, typo with a suggestion, new", () => {
    assert.deepEqual(
      checkConfigKeys({ lr: 0.1, epochs: 3, batch_size: 32 }, {
        lr: 1,
        epohcs: 2,
        batchsize: 8,
        seed: 1,
      }),
      [
        { key: "lr", status: "hit" },
        { key: "epohcs", status: "typo", suggestion: "epochs" },
        { key: "batchsize", status: "typo", suggestion: "batch_size" },
        { key: "seed", status: "new" },
      ],
    );
  });

  test("closestName ignores case and far names", () => {
    assert.equal(closestName("LR", ["lr"]), "lr");
    assert.equal(closestName("x", ["lr"]), undefined);
    assert.equal(closestName("dropout", ["lr", "epochs"]), undefined);
  });
});
