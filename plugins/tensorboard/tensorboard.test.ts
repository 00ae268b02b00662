import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKernel, KeelError, type Kernel, type Runtime } from "../../core/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import { fakeTrainingContext } from "../../tests/training-context.ts";
import tensorboardDefault, {
  crc32c,
  createTensorBoardPlugin,
  encodeEvent,
  encodeEventRecord,
  eventFileName,
  frameRecord,
  maskedCrc32c,
  readEvents,
  type TensorBoardEvent,
} from "./mod.ts";

function hex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g)!.map((b) => parseInt(b, 16)));
}
const ascii = (s: string) => new TextEncoder().encode(s);

/**
 * Built from the specs by hand (TFRecord framing, Event/Summary/Value protobuf), with an
 * independent bitwise CRC32C: Event { wall_time: 1.5, step: 3, summary { value { tag: "loss",
 * simple_value: 0.25 } } } is 09 <1.5 as f64 LE> 10 03 2a 0d (0a 0b (0a 04 "loss" 15 <0.25 as f32 LE>)).
 */
const LOSS_EVENT = "09000000000000f83f10032a0d0a0b0a046c6f7373150000803e";
const LOSS_RECORD = "1a00000000000000" + "129bd82d" + LOSS_EVENT + "d054b255";
/** Event { wall_time: 1.7e9, file_version: "brain.Event:2" }, framed. */
const VERSION_RECORD = "1800000000000000a37f4b22" + "0900000040fc54d941" + "1a0d627261696e2e4576656e743a32" + "eced8f9d";

function rejects(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(() => readEvents(bytes), (e: unknown) => {
    assert.ok(KeelError.is(e, "E_TENSORBOARD_RECORD"), String(e));
    assert.match(e.message, pattern);
    return true;
  });
}

describe("tfevents encoding", () => {
  test("CRC32C test vectors", () => {
    assert.equal(crc32c(ascii("123456789")), 0xe3069283);
    assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
    assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
    assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
    assert.equal(crc32c(new Uint8Array(0)), 0);
  });

  test("masked CRC is the rotated CRC plus 0xa282ead8", () => {
    const crc = 0xe3069283;
    assert.equal(maskedCrc32c(ascii("123456789")), ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0);
  });

  test("encodes a scalar event byte for byte", () => {
    const event = { wallTime: 1.5, step: 3, summary: { value: [{ tag: "loss", simpleValue: 0.25 }] } };
    assert.deepEqual(encodeEvent(event), hex(LOSS_EVENT));
    assert.deepEqual(frameRecord(hex(LOSS_EVENT)), hex(LOSS_RECORD));
    assert.deepEqual(encodeEventRecord(event), hex(LOSS_RECORD));
  });

  test("encodes the file_version event byte for byte", () => {
    assert.deepEqual(encodeEventRecord({ wallTime: 1.7e9, fileVersion: "brain.Event:2" }), hex(VERSION_RECORD));
  });

  test("step 0 is left out, simple_value 0 is written (it sits in a oneof), negative steps are 10-byte varints", () => {
    assert.deepEqual(encodeEvent({ wallTime: 1.5, step: 0 }), hex("09000000000000f83f"));
    assert.deepEqual(encodeEvent({ wallTime: 1.5, summary: { value: [{ tag: "a", simpleValue: 0 }] } }), hex("09000000000000f83f2a0a0a080a01611500000000"));
    assert.deepEqual(encodeEvent({ wallTime: 0, step: -1 }), hex("10ffffffffffffffffff01"));
    assert.deepEqual(encodeEvent({ wallTime: 0, step: 300 }), hex("10ac02"));
    assert.throws(() => encodeEvent({ wallTime: 0, step: 1.5 }), RangeError);
  });

  test("round-trips through readEvents", () => {
    const events: TensorBoardEvent[] = [
      { wallTime: 1700000000.25, step: 0, fileVersion: "brain.Event:2" },
      { wallTime: 1700000001.5, step: 7, summary: { value: [{ tag: "train/loss", simpleValue: 0.5 }, { tag: "val/accuracy", simpleValue: 0.875 }] } },
      { wallTime: 1700000002, step: -5, summary: { value: [{ tag: "x", simpleValue: 0 }, { tag: "nan", simpleValue: NaN }] } },
      { wallTime: 1700000003, step: 2 ** 40, summary: { value: [{ tag: "ünï/cødé", simpleValue: -1.25 }] } },
    ];
    const bytes = new Uint8Array(events.map(encodeEventRecord).reduce((n, r) => n + r.length, 0));
    let at = 0;
    for (const r of events.map(encodeEventRecord)) (bytes.set(r, at), at += r.length);
    const back = readEvents(bytes);
    assert.equal(back.length, 4);
    assert.deepEqual(back[0], events[0]);
    assert.deepEqual(back[1], events[1]);
    assert.equal(back[2]!.step, -5);
    assert.deepEqual(back[2]!.summary!.value[0], { tag: "x", simpleValue: 0 });
    assert.ok(Number.isNaN(back[2]!.summary!.value[1]!.simpleValue));
    assert.deepEqual(back[3], events[3]);
    assert.deepEqual(readEvents(hex(LOSS_RECORD)), [{ wallTime: 1.5, step: 3, summary: { value: [{ tag: "loss", simpleValue: 0.25 }] } }]);
  });

  test("reads events with fields it does not know (a TF2-style scalar with metadata and a tensor)", () => {
    // Value { tag: "t" (1), metadata (9) { plugin_data (1) { plugin_name: "scalars" } }, tensor (8) { dtype: 1 } }
    const metadata = [0x4a, 0x0b, 0x0a, 0x09, 0x0a, 0x07, ...ascii("scalars")];
    const value = [0x0a, 0x01, ...ascii("t"), ...metadata, 0x42, 0x02, 0x08, 0x01];
    const event = Uint8Array.from([0x09, ...new Uint8Array(new Float64Array([2]).buffer), 0x10, 0x04, 0x2a, value.length + 2, 0x0a, value.length, ...value, 0x20, 0x05]);
    assert.deepEqual(readEvents(frameRecord(event)), [{ wallTime: 2, step: 4, summary: { value: [{ tag: "t" }] } }]);
  });

  test("detects a corrupted data CRC, a corrupted length, and truncation", () => {
    const data = hex(LOSS_RECORD);
    data[20]! ^= 0x01;
    rejects(data, /data CRC of the record at byte 0 does not match/);
    const length = hex(LOSS_RECORD);
    length[0] = 0x1b;
    rejects(length, /length CRC of the record at byte 0/);
    const crc = hex(LOSS_RECORD);
    crc[crc.length - 1]! ^= 0x80;
    rejects(crc, /data CRC/);
    const two = new Uint8Array([...hex(VERSION_RECORD), ...hex(LOSS_RECORD)]);
    rejects(two.subarray(0, two.length - 5), /record at byte 40 claims 26 bytes but the file ends first/);
    rejects(two.subarray(0, 45), /record at byte 40 is cut short/);
    rejects(frameRecord(Uint8Array.from([0x0a, 0x05, 0x61])), /cut short/);
    rejects(frameRecord(Uint8Array.from([0x0b])), /wire type 3/);
  });
});

function makeContext() {
  return fakeTrainingContext({ epochs: 2, trainingBatches: 4, samplesPerEpoch: 128 });
}

describe("tensorboard plugin", () => {
  let runtime: Runtime;
  let temp: string;
  const kernels: Kernel[] = [];
  before(async () => {
    runtime = await detectRuntime();
    temp = await mkdtemp(join(tmpdir(), "keel-tb-"));
  });
  after(async () => {
    for (const k of kernels) await k.dispose();
    await rm(temp, { recursive: true, force: true });
  });

  async function boot(logDir: string, extra: { everySteps?: number } = {}): Promise<Kernel> {
    let clock = 1_700_000_000_000;
    const kernel = await createKernel({
      runtime,
      plugins: [createTensorBoardPlugin({ logDir, now: () => (clock += 250), ...extra })],
      grants: { tensorboard: [`write:${logDir}`] },
    });
    kernels.push(kernel);
    return kernel;
  }

  /**
   * Two epochs of 4 batches, as Keel's trainer drives them: trainingBatchCount grows every batch,
   * the loss total (and extra.lastLoss) only when the loss is read back, every 2 steps.
   */
  async function fit(kernel: Kernel, ctx: ReturnType<typeof makeContext>, lastLoss = false): Promise<void> {
    await kernel.callHook("onTrainingStart", ctx);
    const losses = [[1.0, 0.8, 0.6, 0.4], [0.3, 0.25, 0.2, 0.15]];
    for (ctx.epoch = 0; ctx.epoch < 2; ctx.epoch++) {
      await kernel.callHook("onEpochStart", ctx);
      ctx.trainingLossTotal = 0;
      ctx.trainingBatchCount = 0;
      for (ctx.batch = 0; ctx.batch < 4; ctx.batch++) {
        await kernel.callHook("onTrainingBatchStart", ctx);
        ctx.step++;
        ctx.trainingBatchCount++;
        if (ctx.batch % 2 === 1) {
          ctx.trainingLossTotal += losses[ctx.epoch]![ctx.batch - 1]! + losses[ctx.epoch]![ctx.batch]!;
          if (lastLoss) ctx.extra.lastLoss = losses[ctx.epoch]![ctx.batch]!;
        }
        await kernel.callHook("onTrainingBatchEnd", ctx);
      }
      ctx.trainingMetrics = { loss: ctx.trainingLossTotal / 4, accuracy: 0.5 + ctx.epoch / 4 };
      ctx.validationMetrics = { loss: 0.5 - ctx.epoch / 10, accuracy: 0.625 };
      await kernel.callHook("onEpochEnd", ctx);
    }
    ctx.epoch--;
    await kernel.callHook("onTrainingEnd", ctx);
  }

  const scalarsOf = (events: TensorBoardEvent[]) =>
    events.flatMap((e) => (e.summary?.value ?? []).map((v) => [v.tag, e.step, Math.round(v.simpleValue! * 1e6) / 1e6] as const));

  test("the default plugin asks to write .keel/runs", () => {
    assert.equal(tensorboardDefault.name, "tensorboard");
    assert.deepEqual(tensorboardDefault.capabilities, ["write:.keel/runs"]);
    assert.equal(eventFileName(1_700_000_000_999), "events.out.tfevents.1700000000.keel");
  });

  test("writes a valid tfevents file with per-step and per-epoch scalars", async () => {
    const logDir = join(temp, "run-a");
    const kernel = await boot(logDir);
    await fit(kernel, makeContext());
    const names = await readdir(logDir);
    assert.deepEqual(names, ["events.out.tfevents.1700000000.keel"]);
    const events = readEvents(new Uint8Array(await readFile(join(logDir, names[0]!))));
    assert.deepEqual(events[0], { wallTime: 1700000000.25, step: 0, fileVersion: "brain.Event:2" });
    assert.deepEqual(scalarsOf(events), [
      ["train/loss_step", 2, 0.9],
      ["train/loss_step", 4, 0.5],
      ["train/loss", 0, 0.7],
      ["train/accuracy", 0, 0.5],
      ["val/loss", 0, 0.5],
      ["val/accuracy", 0, 0.625],
      ["train/loss_step", 6, 0.275],
      ["train/loss_step", 8, 0.175],
      ["train/loss", 1, 0.225],
      ["train/accuracy", 1, 0.75],
      ["val/loss", 1, 0.4],
      ["val/accuracy", 1, 0.625],
    ]);
    for (let i = 1; i < events.length; i++) assert.ok(events[i]!.wallTime > events[i - 1]!.wallTime);
  });

  test("uses ctx.extra.lastLoss when the trainer provides it, and thins steps with everySteps", async () => {
    const logDir = join(temp, "run-b");
    const kernel = await boot(logDir, { everySteps: 4 });
    await fit(kernel, makeContext(), true);
    const [name] = await readdir(logDir);
    const steps = scalarsOf(readEvents(new Uint8Array(await readFile(join(logDir, name!))))).filter(([tag]) => tag === "train/loss_step");
    assert.deepEqual(steps, [["train/loss_step", 2, 0.8], ["train/loss_step", 6, 0.25]]);
  });

  test("flushes at each epoch's end, so a crashed run keeps its finished epochs", async () => {
    const logDir = join(temp, "run-c");
    const kernel = await boot(logDir);
    const ctx = makeContext();
    await kernel.callHook("onTrainingStart", ctx);
    const [name] = await readdir(logDir);
    assert.equal(readEvents(new Uint8Array(await readFile(join(logDir, name!)))).length, 1);
    ctx.trainingMetrics = { loss: 2 };
    await kernel.callHook("onEpochEnd", ctx);
    assert.deepEqual(scalarsOf(readEvents(new Uint8Array(await readFile(join(logDir, name!))))), [["train/loss", 0, 2]]);
  });

  test("a second fit into the same logDir gets its own file", async () => {
    const logDir = join(temp, "run-d");
    const kernel = await boot(logDir);
    await kernel.callHook("onTrainingStart", makeContext());
    await kernel.callHook("onTrainingStart", makeContext());
    assert.deepEqual((await readdir(logDir)).sort(), ["events.out.tfevents.1700000000.keel", "events.out.tfevents.1700000000.keel.1"]);
  });

  test("refuses bad options and a logDir it was not granted", async () => {
    assert.throws(() => createTensorBoardPlugin({ everySteps: 0 }), RangeError);
    assert.throws(() => createTensorBoardPlugin({ logDir: "" }), TypeError);
    assert.throws(() => createTensorBoardPlugin({ hostname: "a/b" }), TypeError);
    await assert.rejects(
      createKernel({ runtime, plugins: [createTensorBoardPlugin({ logDir: join(temp, "x") })], grants: {} }),
      (e: unknown) => KeelError.is(e, "E_CAPABILITY_DENIED"),
    );
  });
});
