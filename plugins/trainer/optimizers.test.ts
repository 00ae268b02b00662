import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../../core/mod.ts";
import type { Backend } from "./backend.ts";
import { createCpuBackend } from "./cpu/mod.ts";
import { adam, adamw, type OptimizerDef, optimizerFrom, sgd } from "./optimizers.ts";

// Expected values: torch.optim.SGD / Adam / AdamW's update rules worked through by hand (in
// f64) for p0 = [1, -2, 0.5] and gradients [0.5, -1, 0], [0.1, 0.2, -0.3], [-0.3, 0.4, 2]. For
// example plain SGD, lr 0.1: 1 − 0.1·(0.5 + 0.1 − 0.3) = 0.97. f32 tolerance 1e-6.
const P0 = [1, -2, 0.5];
const GRADS = [[0.5, -1, 0], [0.1, 0.2, -0.3], [-0.3, 0.4, 2]];

function close(got: ArrayLike<number>, want: readonly number[], what: string, tol = 1e-6): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i]! - want[i]!) <= tol + tol * Math.abs(want[i]!), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

describe("optimizers", () => {
  let be: Backend;
  before(async () => {
    be = await createCpuBackend();
  });
  after(() => be.destroy());

  async function run(def: OptimizerDef) {
    const params = [{ name: "w", param: be.tensor(new Float32Array(P0), [3]), grad: be.zeros([3]) }];
    const opt = def.bind(be, params);
    for (const g of GRADS) {
      be.write(params[0]!.grad, new Float32Array(g));
      opt.step();
    }
    const p = await be.read(params[0]!.param);
    const state = await opt.getState();
    return { p, state, opt, params };
  }

  test("sgd, lr 0.1, no momentum", async () => {
    const { p, state } = await run(sgd({ lr: 0.1 }));
    close(p, [0.97, -1.96, 0.33], "param");
    assert.deepEqual(Object.keys(state.buffers), []);
    assert.equal(state.step, 3);
  });

  test("sgd with momentum 0.9 (first step's buffer is the gradient)", async () => {
    const { p, state } = await run(sgd({ lr: 0.1, momentum: 0.9 }));
    close(p, [0.8755, -1.807, 0.357], "param");
    close(state.buffers["w.velocity"]!.data, [0.195, -0.23, 1.73], "velocity");
  });

  test("sgd nesterov with weight decay", async () => {
    const { p, state } = await run(sgd({ lr: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true }));
    close(p, [0.850465558191, -1.771186716382, 0.19717415057049992], "param");
    close(state.buffers["w.velocity"]!.data, [0.2196386411000001, -0.2800372822, 1.74408841805], "velocity");
  });

  test("adam with bias correction", async () => {
    const { p, state } = await run(adam({ lr: 0.01 }));
    close(p, [0.9798624611763509, -1.9835473434208155, 0.5019767049832994], "param");
    close(state.buffers["w.m"]!.data, [0.0195, -0.023, 0.173], "m");
    close(state.buffers["w.v"]!.data, [0.00034949025, 0.001197961, 0.00408991], "v");
    assert.deepEqual(state.config, { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
  });

  test("adam with L2 weight decay differs from adamw's decoupled decay", async () => {
    const a = await run(adam({ lr: 0.01, weightDecay: 0.1 }));
    close(a.p, [0.9768336007031183, -1.9792623166380274, 0.49022413444035395], "adam param");
    close(a.state.buffers["w.m"]!.data, [0.046322967864153464, -0.07694305624265683, 0.18641989693379254], "adam m");
    const w = await run(adamw({ lr: 0.01, weightDecay: 0.1 }));
    close(w.p, [0.9768934805855126, -1.9775784416813165, 0.5004707631154145], "adamw param");
    close(w.state.buffers["w.m"]!.data, [0.0195, -0.023, 0.173], "adamw m (decay does not enter the moments)");
  });

  test("defaults are PyTorch's", () => {
    assert.deepEqual(sgd().config, { lr: 0.01, momentum: 0, weightDecay: 0, nesterov: false });
    assert.deepEqual(adam().config, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    assert.deepEqual(adamw().config, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
    assert.equal(adamw().name, "adamw");
  });

  test("bad options throw RangeError with a clear message", () => {
    assert.throws(() => sgd({ lr: 0 }), { name: "RangeError", message: /Learning rate must be a finite number > 0, got 0/ });
    assert.throws(() => adam({ lr: -1 }), RangeError);
    assert.throws(() => adam({ lr: NaN }), RangeError);
    assert.throws(() => adam({ beta1: 1 }), { name: "RangeError", message: /Option "beta1" must be in \[0, 1\), got 1/ });
    assert.throws(() => adamw({ beta2: -0.1 }), RangeError);
    assert.throws(() => adam({ eps: 0 }), RangeError);
    assert.throws(() => sgd({ momentum: -0.5 }), RangeError);
    assert.throws(() => sgd({ nesterov: true }), /Nesterov momentum needs momentum > 0/);
    assert.throws(() => adamw({ weightDecay: -1 }), RangeError);
  });

  test("setLearningRate changes later steps; getState carries the current lr", async () => {
    const params = [{ name: "w", param: be.tensor(new Float32Array([1]), [1]), grad: be.tensor(new Float32Array([1]), [1]) }];
    const opt = sgd({ lr: 0.1 }).bind(be, params);
    opt.step();
    opt.setLearningRate(0.5);
    opt.step();
    close(await be.read(params[0]!.param), [1 - 0.1 - 0.5], "param");
    assert.equal(opt.stepCount, 2);
    assert.equal((await opt.getState()).config.lr, 0.5);
    assert.throws(() => opt.setLearningRate(0), RangeError);
    opt.dispose();
  });

  test("step clips the global gradient norm on the device when asked", async () => {
    const params = [
      { name: "a", param: be.tensor(new Float32Array([0, 0]), [2]), grad: be.tensor(new Float32Array([3, 0]), [2]) },
      { name: "b", param: be.tensor(new Float32Array([0]), [1]), grad: be.tensor(new Float32Array([4]), [1]) },
    ];
    const opt = sgd({ lr: 1 }).bind(be, params);
    opt.step({ clipGradNorm: 1 });
    close(await be.read(opt.gradNorm!), [5], "norm");
    close(await be.read(params[0]!.param), [-0.6, 0], "a", 1e-5);
    close(await be.read(params[1]!.param), [-0.8], "b", 1e-5);
    opt.dispose();
  });

  test("setState restores buffers, step and lr, so training resumes identically", async () => {
    const first = await run(adam({ lr: 0.01 }));
    const params = [{ name: "w", param: be.tensor(new Float32Array(first.p as Float32Array), [3]), grad: be.zeros([3]) }];
    const resumed = adam({ lr: 0.01 }).bind(be, params);
    resumed.setState(first.state);
    assert.equal(resumed.stepCount, 3);
    const g = new Float32Array([0.2, -0.1, 0.05]);
    be.write(params[0]!.grad, g);
    resumed.step();
    be.write(first.params[0]!.grad, g);
    first.opt.step();
    assert.deepEqual(await be.read(params[0]!.param), await be.read(first.params[0]!.param));
  });

  test("setState rejects missing, unknown and mis-shaped buffers with E_TRAIN_CHECKPOINT", async () => {
    const { state, opt } = await run(adam());
    const isCheckpoint = (name: string) => (e: unknown) => KeelError.is(e, "E_TRAIN_CHECKPOINT") && e.message.includes(`"${name}"`);
    const { ["w.v"]: _v, ...missing } = state.buffers;
    assert.throws(() => opt.setState({ ...state, buffers: missing }), isCheckpoint("w.v"));
    assert.throws(() => opt.setState({ ...state, buffers: { ...state.buffers, "x.m": { shape: [3], data: new Float32Array(3) } } }), isCheckpoint("x.m"));
    assert.throws(() => opt.setState({ ...state, buffers: { ...state.buffers, "w.m": { shape: [2], data: new Float32Array(2) } } }), isCheckpoint("w.m"));
    // sgd state does not fit adam
    const s = await run(sgd({ momentum: 0.9 }));
    assert.throws(() => opt.setState(s.state), isCheckpoint("w.velocity"));
  });

  test("optimizerFrom: names, definitions, lr override; unknown names suggest the closest", () => {
    assert.equal(optimizerFrom("adam").name, "adam");
    assert.equal(optimizerFrom("sgd", 0.3).config.lr, 0.3);
    const def = adamw({ weightDecay: 0.2 });
    assert.equal(optimizerFrom(def), def);
    const changed = optimizerFrom(def, 0.05);
    assert.deepEqual(changed.config, { ...def.config, lr: 0.05 });
    assert.equal(changed.name, "adamw");
    assert.throws(() => optimizerFrom("adan"), (e: unknown) => KeelError.is(e, "E_TRAIN_CONFIG") && /Unknown optimizer "adan" \(did you mean "adam"\?\)/.test(e.message));
    assert.throws(() => optimizerFrom("rmsprop"), (e: unknown) => KeelError.is(e, "E_TRAIN_CONFIG") && e.message.includes('"sgd", "adam", "adamw"'));
    assert.throws(() => optimizerFrom("adam", 0), RangeError);
  });
});
