import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { KeelError, type ErrorCodeName } from "../../core/mod.ts";
import {
  batches,
  type Dataset,
  encodeIdx,
  fromArrays,
  fromIdx,
  loadMnist,
  parseCsv,
  parseIdx,
  shuffledOrder,
  splitValidation,
  validateDataset,
} from "./data.ts";
import { createRng } from "./rng.ts";

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));
const fixtureText = (name: string) => fixture(name).toString("utf8");
const fixtureBytes = (name: string) => new Uint8Array(fixture(name));

function throwsCode(fn: () => unknown, code: ErrorCodeName, ...fragments: string[]): void {
  assert.throws(fn, (e) => {
    assert.ok(KeelError.is(e, code), `expected ${code}, got ${String(e)}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
    return true;
  });
}

function sameArray(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

function rows(data: Dataset): number[][] {
  return Array.from({ length: data.length }, (_, r) => Array.from(data.x.subarray(r * data.features, (r + 1) * data.features)));
}

describe("fromArrays", () => {
  test("rows and integer labels make a classification dataset", () => {
    const d = fromArrays([[1, 2], [3, 4], [5, 6]], [0, 2, 1]);
    assert.ok(d.x instanceof Float32Array && d.y instanceof Int32Array);
    assert.deepEqual([...d.x], [1, 2, 3, 4, 5, 6]);
    assert.deepEqual([...d.y], [0, 2, 1]);
    assert.equal(d.length, 3);
    assert.equal(d.features, 2);
    assert.equal(d.targetFeatures, 1);
    assert.equal(d.classes, 3);
    assert.equal(fromArrays([[1], [2]], [0, 1], { classes: 5 }).classes, 5);
  });

  test("flat x with features, rows of targets, and float targets make regression datasets", () => {
    const flat = fromArrays(new Float32Array([1, 2, 3, 4, 5, 6]), new Float32Array([0.5, 1.5, 2.5]), { features: 2 });
    assert.equal(flat.length, 3);
    assert.ok(flat.y instanceof Float32Array);
    assert.equal(flat.classes, undefined);
    const multi = fromArrays([[1], [2]], [[0.1, 0.2], [0.3, 0.4]]);
    assert.equal(multi.targetFeatures, 2);
    assert.deepEqual([...multi.y].map((v) => Math.round(v * 10) / 10), [0.1, 0.2, 0.3, 0.4]);
    assert.ok(fromArrays([[1], [2]], [0.5, 2]).y instanceof Float32Array);
    assert.ok(fromArrays([[1], [2]], [1, 2], { task: "regression" }).y instanceof Float32Array);
    const inferred = fromArrays(new Float32Array([1, 2, 3, 4]), new Int32Array([1, 0]));
    assert.equal(inferred.features, 2);
  });

  test("empty, ragged or mismatched input is E_TRAIN_DATA; bad labels are E_TRAIN_LABEL_RANGE", () => {
    throwsCode(() => fromArrays([], []), "E_TRAIN_DATA", "no rows");
    throwsCode(() => fromArrays([[1, 2], [3]], [0, 1]), "E_TRAIN_DATA", "Row 1", "1 features", "row 0 has 2");
    throwsCode(() => fromArrays([[1], [2]], [0, 1, 1]), "E_TRAIN_DATA", "2 rows", "3 labels");
    throwsCode(() => fromArrays([[1], [2]], [0, 1.5], { task: "classification" }), "E_TRAIN_LABEL_RANGE", "Label 1.5", "row 1", "not an integer");
    throwsCode(() => fromArrays([[1], [2]], [0, 3], { classes: 3 }), "E_TRAIN_LABEL_RANGE", "Label 3", "row 1", "[0, 3)");
    throwsCode(() => fromArrays([[1], [2]], [[0], [1]], { task: "classification" }), "E_TRAIN_DATA", "one integer label per row");
    throwsCode(() => fromArrays(new Float32Array(5), [0, 1]), "E_TRAIN_DATA", "5 values");
  });
});

describe("parseCsv", () => {
  test("a header, a quoted header name and string labels mapped in sorted order", () => {
    const d = parseCsv(fixtureText("flowers.csv"), { label: "species" });
    assert.deepEqual(d.labelNames, ["setosa", "versicolor", "virginica"]);
    assert.deepEqual([...d.y], [0, 1, 2, 0, 1]);
    assert.equal(d.classes, 3);
    assert.equal(d.features, 3);
    assert.deepEqual(rows(d)[1]!.map((v) => Math.round(v * 10) / 10), [7, 3.2, 4.7]);
    const byIndex = parseCsv(fixtureText("flowers.csv"), { label: -1 });
    assert.ok(sameArray(byIndex.x, d.x) && sameArray(byIndex.y, d.y));
    // With "petal length" as the target, the species column is a text feature: refused, not guessed.
    throwsCode(() => parseCsv(fixtureText("flowers.csv"), { label: "petal length", task: "regression" }), "E_TRAIN_DATA", '"species"', '"setosa"');
  });

  test("CRLF, a blank line, a quoted delimiter in the header, and a quoted number: regression", () => {
    const d = parseCsv(fixtureText("houses.csv"), { label: "price" });
    assert.ok(d.y instanceof Float32Array);
    assert.deepEqual([...d.y], [120.25, 199.5, 310]);
    assert.deepEqual(rows(d), [[50.5, 2], [80, 3], [120, 4]]);
    assert.equal(d.length, 3);
    assert.equal(d.classes, undefined);
  });

  test("no header, integer labels, another delimiter, quotes with doubled quotes and newlines", () => {
    const d = parseCsv('1;2;0\n3;4;2\n5;6;1\n', { label: 2, header: false, delimiter: ";" });
    assert.deepEqual([...d.y], [0, 2, 1]);
    assert.equal(d.classes, 3);
    assert.equal(d.labelNames, undefined);
    const q = parseCsv('a,label\n1,"say ""hi""\nthere"\n2,plain\n', { label: "label" });
    assert.deepEqual(q.labelNames, ["plain", 'say "hi"\nthere']);
    assert.deepEqual([...q.y], [1, 0]);
  });

  test("a text feature is not silently a category: with a numeric label it is an error naming line and column", () => {
    throwsCode(() => parseCsv("w,colour,y\n1,2,0\n3,red,1\n", { label: "y" }), "E_TRAIN_DATA", "Line 3", '"colour"', '"red"', "not a number");
    throwsCode(() => parseCsv("w,y\n1,0\n,1\n", { label: "y" }), "E_TRAIN_DATA", "Line 3", "empty");
  });

  test("malformed CSV is E_TRAIN_DATA naming what and where", () => {
    throwsCode(() => parseCsv("a,b\n1,2\n", { label: "c" }), "E_TRAIN_DATA", 'no column "c"', '"a", "b"');
    throwsCode(() => parseCsv("a,b\n1,2\n3,4,5\n", { label: "b" }), "E_TRAIN_DATA", "Line 3", "3 fields", "header has 2");
    throwsCode(() => parseCsv('a,b\n1,"2\n', { label: "b" }), "E_TRAIN_DATA", "never closed");
    throwsCode(() => parseCsv("a,b\n", { label: "b" }), "E_TRAIN_DATA", "no data rows");
    throwsCode(() => parseCsv("a,b\n1,x\n", { label: "b", task: "regression" }), "E_TRAIN_DATA", "Line 2", '"x"', "regression");
    throwsCode(() => parseCsv("1,2\n", { label: 5, header: false }), "E_TRAIN_DATA", "Label column 5");
    assert.throws(() => parseCsv("1,2\n", { label: "b", header: false }), TypeError);
  });
});

describe("IDX", () => {
  test("encodeIdx and parseIdx round-trip u8 data", () => {
    const data = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => (i * 37) % 256);
    const bytes = encodeIdx([2, 3, 4], data);
    assert.deepEqual([...bytes.subarray(0, 16)], [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]);
    const parsed = parseIdx(bytes);
    assert.equal(parsed.dtype, "u8");
    assert.deepEqual(parsed.shape, [2, 3, 4]);
    assert.deepEqual([...parsed.data], [...data]);
    assert.throws(() => encodeIdx([2, 2], new Uint8Array(3)), RangeError);
  });

  test("the fixture files carry MNIST's real headers (magic 0x803 and 0x801, 28 × 28)", () => {
    const images = fixtureBytes("digits-images-idx3-ubyte");
    const labels = fixtureBytes("digits-labels-idx1-ubyte");
    assert.deepEqual([...images.subarray(0, 16)], [0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 28, 0, 0, 0, 28]);
    assert.deepEqual([...labels.subarray(0, 8)], [0, 0, 8, 1, 0, 0, 0, 4]);
    assert.deepEqual(parseIdx(images).shape, [4, 28, 28]);
    const d = fromIdx(images, labels);
    assert.equal(d.length, 4);
    assert.equal(d.features, 784);
    assert.deepEqual([...d.y], [5, 0, 4, 1]);
    assert.equal(d.classes, 6);
    let max = 0;
    for (const v of d.x) {
      assert.ok(v >= 0 && v <= 1);
      max = Math.max(max, v);
    }
    assert.equal(max, 1);
    const raw = fromIdx(images, labels, { normalize: false });
    assert.equal(Math.max(...raw.x), 255);
    assert.ok(Math.abs(raw.x[300]! / 255 - d.x[300]!) < 1e-7);
  });

  test("big-endian i16, i32, f32 and f64 bodies decode", () => {
    const file = (type: number, shape: number[], body: number[]) => {
      const head = [0, 0, type, shape.length];
      for (const n of shape) head.push(n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
      return new Uint8Array([...head, ...body]);
    };
    assert.deepEqual([...parseIdx(file(0x0b, [2], [0xff, 0xfe, 0x01, 0x02])).data], [-2, 258]);
    assert.deepEqual([...parseIdx(file(0x0c, [1], [0xff, 0xff, 0xff, 0xfd])).data], [-3]);
    assert.deepEqual([...parseIdx(file(0x09, [2], [0xff, 0x05])).data], [-1, 5]);
    const f32 = parseIdx(file(0x0d, [1, 1], [0x3f, 0xc0, 0, 0]));
    assert.equal(f32.dtype, "f32");
    assert.deepEqual([...f32.data], [1.5]);
    assert.deepEqual([...parseIdx(file(0x0e, [1], [0xc0, 0x04, 0, 0, 0, 0, 0, 0])).data], [-2.5]);
  });

  test("truncated, trailing, gzip, foreign and mismatched files are E_TRAIN_DATA", () => {
    const images = fixtureBytes("digits-images-idx3-ubyte");
    const labels = fixtureBytes("digits-labels-idx1-ubyte");
    throwsCode(() => parseIdx(images.subarray(0, images.length - 1)), "E_TRAIN_DATA", "truncated", "3152 bytes", "has 3151");
    throwsCode(() => parseIdx(images.subarray(0, 10)), "E_TRAIN_DATA", "truncated", "header needs 16 bytes");
    throwsCode(() => parseIdx(images.subarray(0, 2)), "E_TRAIN_DATA", "truncated");
    throwsCode(() => parseIdx(new Uint8Array([...labels, 0])), "E_TRAIN_DATA", "1 bytes after its data");
    throwsCode(() => parseIdx(new Uint8Array([0x1f, 0x8b, 8, 0])), "E_TRAIN_DATA", "gzip");
    throwsCode(() => parseIdx(new TextEncoder().encode("a,b\n1,2\n")), "E_TRAIN_DATA", "not an IDX file");
    throwsCode(() => parseIdx(new Uint8Array([0, 0, 0x0a, 1, 0, 0, 0, 0])), "E_TRAIN_DATA", "type byte 0a");
    const threeLabels = encodeIdx([3], new Uint8Array([1, 2, 3]));
    throwsCode(() => fromIdx(images, threeLabels), "E_TRAIN_DATA", "4 images", "3 labels");
  });
});

/** Row hashes for disjointness: FNV-1a over the row's bits. */
function rowKeys(d: Dataset): Map<number, number[]> {
  const bits = new Uint32Array(d.x.buffer, d.x.byteOffset, d.x.length);
  const keys = new Map<number, number[]>();
  for (let r = 0; r < d.length; r++) {
    let h = 0x811c9dc5;
    for (let i = r * d.features; i < (r + 1) * d.features; i++) h = Math.imul(h ^ bits[i]!, 0x01000193) >>> 0;
    const list = keys.get(h) ?? [];
    list.push(r);
    keys.set(h, list);
  }
  return keys;
}

describe("loadMnist", () => {
  test("8,000 + 2,000 real digits: 784 features in [0, 1], labels 0–9, disjoint, the same data twice", async () => {
    const { train, test: testSet } = await loadMnist();
    assert.equal(train.length, 8000);
    assert.equal(testSet.length, 2000);
    for (const d of [train, testSet]) {
      assert.equal(d.features, 784);
      assert.equal(d.x.length, d.length * 784);
      assert.equal(d.classes, 10);
      assert.ok(d.y instanceof Int32Array);
      let min = Infinity, max = -Infinity;
      for (const v of d.x) {
        if (v < min) min = v;
        if (v > max) max = v;
      }
      assert.equal(min, 0);
      assert.equal(max, 1);
      const counts = new Array(10).fill(0);
      for (const label of d.y) counts[label]++;
      assert.ok(counts.every((n) => n > 0), `every digit occurs: ${counts}`);
      assert.equal(counts.reduce((a, b) => a + b, 0), d.length);
      validateDataset(d, { classes: 10, inputFeatures: 784 });
    }
    // No test digit equals a training digit (hash, then exact compare on a hash match).
    const trainKeys = rowKeys(train);
    for (const [h, testRows] of rowKeys(testSet)) {
      for (const r of trainKeys.get(h) ?? []) {
        for (const t of testRows) {
          assert.ok(!sameArray(train.x.subarray(r * 784, (r + 1) * 784), testSet.x.subarray(t * 784, (t + 1) * 784)), `train row ${r} equals test row ${t}`);
        }
      }
    }
    const again = await loadMnist();
    assert.ok(sameArray(again.train.x, train.x) && sameArray(again.train.y, train.y));
    assert.ok(sameArray(again.test.x, testSet.x) && sameArray(again.test.y, testSet.y));
    // Smaller sets are prefixes of the same fixed order.
    const small = await loadMnist({ train: 100, test: 50 });
    assert.ok(sameArray(small.train.x, train.x.subarray(0, 100 * 784)));
    // With train 100 the test set starts at position 100 of the order: rows 100..149 of the default train set.
    assert.ok(sameArray(small.test.x, train.x.subarray(100 * 784, 150 * 784)));
  });

  test("asking for more digits than the package has is a RangeError", async () => {
    await assert.rejects(loadMnist({ train: 9000, test: 2000 }), (e) => e instanceof RangeError && e.message.includes("10000 digits"));
    await assert.rejects(loadMnist({ train: 0 }), RangeError);
  });
});

describe("validateDataset", () => {
  const good = () => fromArrays([[0, 1], [1, 0], [1, 1]], [0, 1, 2]);

  test("a good dataset passes, with and without the model's sizes", () => {
    validateDataset(good());
    validateDataset(good(), { classes: 3, inputFeatures: 2 });
    validateDataset(good(), { outputFeatures: 4, inputFeatures: 2 });
    validateDataset(fromArrays([[1], [2]], [[0.5, 1], [2, 3]]), { outputFeatures: 2 });
  });

  test("NaN or Infinity is E_TRAIN_DATA naming the row and column", () => {
    const d = good();
    (d.x as Float32Array)[3] = Number.NaN;
    throwsCode(() => validateDataset(d), "E_TRAIN_DATA", "x at row 1, column 1", "NaN");
    const r = fromArrays([[1], [2], [3]], [[0, 1], [2, Infinity], [4, 5]]);
    throwsCode(() => validateDataset(r), "E_TRAIN_DATA", "y at row 1, column 1", "Infinity");
  });

  test("labels out of range or not integers are E_TRAIN_LABEL_RANGE naming the row and label", () => {
    throwsCode(() => validateDataset(good(), { classes: 2 }), "E_TRAIN_LABEL_RANGE", "Label 2", "row 2", "[0, 2)");
    throwsCode(() => validateDataset(good(), { outputFeatures: 2 }), "E_TRAIN_LABEL_RANGE", "Label 2", "row 2");
    const negative: Dataset = { ...good(), y: new Int32Array([0, -1, 1]) };
    throwsCode(() => validateDataset(negative), "E_TRAIN_LABEL_RANGE", "Label -1", "row 1");
    const fractional = fromArrays([[1], [2]], new Float32Array([1, 0.5]), { task: "regression" });
    throwsCode(() => validateDataset(fractional, { classes: 2 }), "E_TRAIN_LABEL_RANGE", "Label 0.5", "row 1", "not an integer");
  });

  test("empty data is E_TRAIN_DATA; sizes that do not fit the model are E_TRAIN_SHAPE", () => {
    const empty: Dataset = { x: new Float32Array(0), y: new Int32Array(0), length: 0, features: 2, targetFeatures: 1 };
    throwsCode(() => validateDataset(empty), "E_TRAIN_DATA", "empty");
    throwsCode(() => validateDataset(good(), { inputFeatures: 784 }), "E_TRAIN_SHAPE", "784 input features", "has 2");
    const reg = fromArrays([[1], [2]], [0.5, 1.5]);
    throwsCode(() => validateDataset(reg, { outputFeatures: 3 }), "E_TRAIN_SHAPE", "3 outputs", "1 targets");
    const broken: Dataset = { ...good(), length: 4 };
    throwsCode(() => validateDataset(broken), "E_TRAIN_DATA", "x holds 6 values");
  });
});

describe("shuffling and the validation split", () => {
  const data = fromArrays(Array.from({ length: 50 }, (_, r) => [r, -r]), Array.from({ length: 50 }, (_, r) => r % 5));

  test("shuffledOrder is a seeded Fisher–Yates permutation", () => {
    const a = shuffledOrder(50, 7);
    assert.deepEqual([...a].sort((p, q) => p - q), Array.from({ length: 50 }, (_, i) => i));
    assert.deepEqual([...shuffledOrder(50, 7)], [...a]);
    assert.notDeepEqual([...shuffledOrder(50, 8)], [...a]);
    const expected = createRng(7).shuffle(Array.from({ length: 50 }, (_, i) => i));
    assert.deepEqual([...a], expected);
    assert.equal(shuffledOrder(0, 1).length, 0);
    assert.throws(() => shuffledOrder(-1, 1), RangeError);
  });

  test("splitValidation is deterministic by seed and partitions the rows", () => {
    const a = splitValidation(data, { fraction: 0.2, seed: 3 });
    const b = splitValidation(data, { fraction: 0.2, seed: 3 });
    const c = splitValidation(data, { fraction: 0.2, seed: 4 });
    assert.equal(a.validation.length, 10);
    assert.equal(a.train.length, 40);
    assert.ok(sameArray(a.train.x, b.train.x) && sameArray(a.validation.y, b.validation.y));
    assert.ok(!sameArray(a.validation.x, c.validation.x));
    const ids = [...rows(a.train), ...rows(a.validation)].map((r) => r[0]!).sort((p, q) => p - q);
    assert.deepEqual(ids, Array.from({ length: 50 }, (_, i) => i));
    for (const part of [a.train, a.validation]) {
      assert.equal(part.classes, 5);
      for (let r = 0; r < part.length; r++) assert.equal(part.y[r], part.x[r * 2]! % 5, "labels travel with their rows");
    }
    assert.notDeepEqual(rows(a.validation).map((r) => r[0]), Array.from({ length: 10 }, (_, i) => 40 + i), "shuffled, not the tail");
  });

  test("a fraction outside (0, 1) is a RangeError; one row cannot be split", () => {
    for (const fraction of [0, 1, -0.1, 1.5, Number.NaN]) {
      assert.throws(() => splitValidation(data, { fraction, seed: 1 }), RangeError, String(fraction));
    }
    throwsCode(() => splitValidation(fromArrays([[1]], [0]), { fraction: 0.5, seed: 1 }), "E_TRAIN_DATA", "1 row");
  });
});

describe("batches", () => {
  const data = fromArrays(Array.from({ length: 10 }, (_, r) => [r, r + 0.5]), Array.from({ length: 10 }, (_, r) => r));

  test("every row exactly once per epoch in the given order, the last short batch included", () => {
    const order = shuffledOrder(10, 11);
    const seen: number[] = [];
    const sizes: number[] = [];
    let buffer: ArrayBufferLike | undefined;
    for (const batch of batches(data, { batchSize: 4, order })) {
      sizes.push(batch.rows);
      buffer ??= batch.x.buffer;
      assert.equal(batch.x.buffer, buffer, "the same buffer is reused");
      assert.equal(batch.x.length, batch.rows * 2);
      assert.equal(batch.y.length, batch.rows);
      for (let r = 0; r < batch.rows; r++) {
        assert.equal(batch.x[r * 2], batch.y[r], "x and y rows stay together");
        assert.equal(batch.x[r * 2 + 1], batch.y[r]! + 0.5);
        seen.push(batch.y[r]!);
      }
    }
    assert.deepEqual(sizes, [4, 4, 2]);
    assert.deepEqual(seen, [...order]);
    assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: 10 }, (_, i) => i));
  });

  test("without an order rows come in order; dropLast drops the short batch; indices count up", () => {
    const all = [...batches(data, { batchSize: 3 })].map((b) => ({ index: b.index, rows: b.rows }));
    assert.deepEqual(all, [{ index: 0, rows: 3 }, { index: 1, rows: 3 }, { index: 2, rows: 3 }, { index: 3, rows: 1 }]);
    const ys: number[] = [];
    for (const b of batches(data, { batchSize: 3, dropLast: true })) ys.push(...b.y);
    assert.deepEqual(ys, [0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const regression = fromArrays([[1], [2], [3]], [[0.5, 1], [1.5, 2], [2.5, 3]]);
    const [first] = batches(regression, { batchSize: 2 });
    assert.ok(first!.y instanceof Float32Array);
    assert.deepEqual([...first!.y], [0.5, 1, 1.5, 2]);
    const iterable = batches(data, { batchSize: 5 });
    assert.equal([...iterable].length, 2);
    assert.equal([...iterable].length, 2, "iterable again");
  });

  test("a batch size that is not a positive integer, or larger than the data, is E_TRAIN_BATCH_SIZE", () => {
    for (const batchSize of [0, -2, 1.5, Number.NaN, "4" as unknown as number]) {
      throwsCode(() => batches(data, { batchSize }), "E_TRAIN_BATCH_SIZE", "positive integer");
    }
    throwsCode(() => batches(data, { batchSize: 11 }), "E_TRAIN_BATCH_SIZE", "Batch size 11", "has 10 rows");
    assert.throws(() => batches(data, { batchSize: 2, order: new Uint32Array([0, 10]) }), RangeError);
  });
});
