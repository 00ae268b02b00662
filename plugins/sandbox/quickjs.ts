/**
 * The QuickJS-wasm sandbox backend for code mode: model-written JavaScript runs in QuickJS
 * compiled to WebAssembly, inside the host's own thread, so it works where no subprocess can be
 * started (edge runtimes) and may be chosen anywhere. The only ways out are the `tools` /
 * `codemode` proxy and `console`; no host object is ever put inside.
 *
 * How a run is kept apart and bounded:
 * - One WebAssembly instance per backend, loaded on the first run (the sync release variant).
 *   Each run gets a fresh QuickJS runtime and context, disposed with every handle when it ends.
 * - Time: an interrupt handler stops the code at `timeoutMs` or once the signal is aborted.
 *   While the code awaits tool calls the host waits for them, racing the deadline and the signal.
 * - Memory: QuickJS's own limit (`setMemoryLimit`) only refuses single allocations in this build,
 *   because emscripten reports no usable size for its blocks, so the total is not counted. The
 *   backend therefore gives the instance its own `WebAssembly.Memory` and charges every growth
 *   of it to the run that is executing; growth past the run's `memoryMb` is refused, QuickJS
 *   throws "out of memory", and the run ends with `E_SANDBOX_MEMORY` at its next interrupt check.
 *   Memory the instance already holds free (16 MiB at start, more after earlier runs) is reused
 *   without a charge, so a run may go over its limit by that much. WebAssembly memory never shrinks:
 *   an instance that a run drove into its limit (or that grew past 256 MiB, or broke) is thrown
 *   away and the next run gets a new one.
 * - Stack: `setMaxStackSize`, 128 KiB unless `maxStackBytes` says otherwise; deeper recursion is
 *   a catchable "stack overflow". QuickJS measures only the WebAssembly's own stack, while the
 *   same recursion also takes the host's native stack (about 1 MiB on V8), several times as much
 *   once the engine has optimized the WebAssembly, and more for some shapes (async functions,
 *   getters, generators). At 256 KiB, recursion on Deno can exhaust the host's stack first: the
 *   run then ends `E_SANDBOX_CODE_FAILED` without the code seeing it, and its instance, which
 *   QuickJS left mid-call, is retired unfreed. The default leaves the host about a third of its
 *   stack at QuickJS's limit, so there the code gets the catchable error.
 *
 * QuickJS is synchronous: runs interleave only where the code awaits a tool, and a run that
 * computes without awaiting holds the host's thread until it awaits or reaches its deadline. So an
 * abort the host would fire from a timer or an event during such a stretch cannot fire until the
 * stretch is over: `while (true) {}` ends at its deadline with `E_SANDBOX_TIMEOUT`, not
 * `E_SANDBOX_ABORTED`. An abort fired before the run, or while it awaits a tool, ends it at once.
 *
 * On Cloudflare Workers the WebAssembly must be handed over as a compiled module and clocks do
 * not advance during synchronous code; neither is handled here.
 * @module
 */

import {
  errorMessage,
  KeelError,
  type SandboxBackend,
  type SandboxError,
  type SandboxOutcome,
  type SandboxRun,
} from "../../core/mod.ts";
import {
  newQuickJSWASMModule,
  newVariant,
  type QuickJSContext,
  type QuickJSDeferredPromise,
  type QuickJSHandle,
  type QuickJSRuntime,
  type QuickJSWASMModule,
  RELEASE_SYNC,
} from "quickjs-emscripten";

/** Options for {@link createQuickJsSandbox}. */
export interface QuickJsSandboxOptions {
  /**
   * Stack size limit per execution; default 128 * 1024 bytes, at most 256 * 1024. Above the
   * default, deep recursion may exhaust a V8 host's stack before QuickJS's limit (the run still
   * ends `E_SANDBOX_CODE_FAILED`, but the code cannot catch it and the instance is replaced).
   */
  readonly maxStackBytes?: number;
}

/** What {@link QuickJsSandbox.stats} reports. */
export interface QuickJsSandboxStats {
  /** WebAssembly instances this backend has started (a new one after each run that hit its memory limit). */
  readonly instances: number;
  /** QuickJS runtimes alive now: one per run in flight, zero when idle. */
  readonly liveRuntimes: number;
  /** Bytes of linear memory of the current instance (0 before the first run). It never shrinks. */
  readonly wasmMemoryBytes: number;
}

/** A {@link SandboxBackend} on QuickJS-wasm, with counters for monitoring and tests. */
export interface QuickJsSandbox extends SandboxBackend {
  /** Counters of instances, live runtimes and memory. */
  stats(): QuickJsSandboxStats;
}

/** The largest stack a run may have: the C stack of the WebAssembly build (5 MiB) must hold it with room to spare. */
const MAX_STACK_BYTES = 256 * 1024;
/** Small enough that QuickJS's limit comes before a V8 host's own stack runs out (see the module docs). */
const DEFAULT_STACK_BYTES = 128 * 1024;
/** Below this the sandbox's own setup would overflow. */
const MIN_STACK_BYTES = 16 * 1024;
const PAGE_BYTES = 65_536;
/** The variant's INITIAL_MEMORY (16 MiB) and its own ceiling (2 GiB), in pages. */
const INITIAL_PAGES = 256;
const MAXIMUM_PAGES = 32_768;
/** An instance that grew past this is replaced once a run ends, since its memory cannot shrink. */
const RETIRE_ABOVE_BYTES = 256 * 1_048_576;
const MIB = 1_048_576;

/** Why a run was stopped from the outside. */
type Stop = "timeout" | "abort" | "memory" | "closed";

/** What the host knows about the run executing in an instance (for charging memory growth). */
interface Charge {
  budget: number;
  grown: number;
  hit: boolean;
  /** True while QuickJS runs code for the run; false while the host itself allocates. */
  guest: boolean;
}

interface Instance {
  readonly module: QuickJSWASMModule;
  readonly memory: WebAssembly.Memory;
  active: Charge | undefined;
  retired: boolean;
}

/** One pending `tools.<name>()` call. */
interface HostCall {
  readonly name: string;
  readonly deferred: QuickJSDeferredPromise;
  outcome?: { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };
}

/** What the bootstrap's runner reports for a failure, as JSON. */
interface ThrownInfo {
  readonly tool?: true;
  readonly code?: string;
  readonly name?: string;
  readonly message?: string;
  readonly stack?: string;
  readonly details?: Record<string, unknown>;
}

/** Drops indentation: a run compiles the bootstrap every time, and QuickJS pays for every character. */
function compact(source: string): string {
  return source.replace(/\n\s+/g, "\n");
}

/**
 * Evaluated in each fresh context before the code: it receives the two host functions, the
 * context JSON and the source of {@link HELPERS}, installs `tools`, `codemode`, `context` and
 * `console`, and returns the runner, which awaits the code's function and answers with one tagged
 * string: "v<json>" a value, "u" no value, "i<json>" a result that is not JSON data, "e<json>" a
 * throw. Intrinsics it relies on are captured before the code can replace them. It is kept small
 * because compiling it is most of a run's fixed cost.
 *
 * Results and tool inputs follow JSON, as in the process backend: `undefined` drops an object's
 * property and is null in an array (so is a hole), symbol keys are skipped. The result's replacer
 * reads every value as its holder's own data property and returns what it checked, so a getter or
 * a proxy cannot show the check one thing and JSON another. A tool input JSON cannot hold (a cycle,
 * a BigInt) is a catchable `E_TOOL_INPUT_INVALID` that never reaches the host. `tools.then` is
 * undefined, so that `await tools` is not a tool call.
 */
const BOOTSTRAP = compact(String.raw`(function (hostCall, hostLog, contextJson, helpersSource) {
  "use strict";
  const G = globalThis, evalSource = G.eval, P = Proxy, Err = Error, apply = Reflect.apply;
  const parse = JSON.parse, stringify = JSON.stringify, freeze = Object.freeze, keys = Object.keys;
  const isFiniteNumber = Number.isFinite, Str = String, hasOwn = Object.hasOwn, ownProperty = Object.getOwnPropertyDescriptor;
  const toolErrors = new WeakMap(), wmSet = WeakMap.prototype.set, wmGet = WeakMap.prototype.get;
  let helpers;
  const lazy = () => helpers || (helpers = evalSource(helpersSource)(
    stringify, Object, isFiniteNumber, Array.isArray, Str, hasOwn, ownProperty, Array.prototype,
  ));
  function deepFreeze(v) {
    if (typeof v === "object" && v !== null) {
      const ks = keys(v);
      for (let i = 0; i < ks.length; i++) deepFreeze(v[ks[i]]);
      freeze(v);
    }
    return v;
  }
  function toolError(info) {
    const e = new Err(info.message);
    e.code = info.code;
    if (info.details !== undefined) e.details = deepFreeze(info.details);
    apply(wmSet, toolErrors, [e, info]);
    return e;
  }
  async function call(name, input) {
    let json, out;
    if (input !== undefined) {
      try {
        json = stringify(input);
      } catch (e) {
        let why;
        try { why = Str(e && e.message); } catch { why = "it could not be read"; }
        throw toolError({ code: "E_TOOL_INPUT_INVALID", message: "The input for tool \"" + name + "\" is not JSON data (" + why + "); pass plain objects, arrays, strings, numbers, booleans or null" });
      }
    }
    try {
      out = await hostCall(name, json);
    } catch (raw) {
      throw toolError(parse(raw));
    }
    return out === undefined ? undefined : parse(out);
  }
  const tools = new P(freeze({}), { get: (_, name) => typeof name === "string" && name !== "then" ? (input) => call(name, input) : undefined });
  let full = false;
  function show(v) {
    if (typeof v === "string") return v;
    try {
      const s = stringify(v);
      if (typeof s === "string") return s;
    } catch {}
    try {
      return Str(v);
    } catch {
      return "[unprintable]";
    }
  }
  const emitter = (prefix) => function (...args) {
    if (full) return;
    let text = prefix;
    for (let i = 0; i < args.length; i++) text += (i === 0 ? "" : " ") + show(args[i]);
    full = hostLog(text) === true;
  };
  const define = (name, value) => Object.defineProperty(G, name, { value, writable: false, enumerable: false, configurable: false });
  define("tools", tools);
  define("codemode", tools);
  define("context", deepFreeze(parse(contextJson)));
  define("console", freeze({ log: emitter(""), info: emitter(""), debug: emitter(""), warn: emitter("[warn] "), error: emitter("[error] ") }));
  delete G.InternalError;
  const getPrototypeOf = Object.getPrototypeOf, objectProto = Object.prototype, arrayProto = Array.prototype;
  const isArray = Array.isArray;
  let clean;
  // Reads own data properties only, before toJSON; anything JSON would change is not clean.
  function replacer(key) {
    const d = ownProperty(this, key);
    if (d === undefined) return undefined;
    if (!hasOwn(d, "value")) {
      clean = false;
      return undefined;
    }
    const o = d.value;
    switch (typeof o) {
      case "string":
      case "boolean":
      case "undefined":
        return o;
      case "number":
        if (!isFiniteNumber(o)) clean = false;
        return o;
      case "object":
        if (o !== null) {
          const proto = getPrototypeOf(o);
          if (isArray(o) ? proto !== arrayProto : proto !== objectProto && proto !== null) clean = false;
        }
        return o;
      default:
        clean = false;
        return undefined;
    }
  }
  function thrown(e) {
    const tool = apply(wmGet, toolErrors, [e]);
    if (tool !== undefined) return { tool: true, code: tool.code, message: tool.message, details: tool.details };
    if (typeof e === "object" && e !== null && e instanceof Err) {
      const out = {};
      try { out.name = Str(e.name); } catch {}
      try { out.message = Str(e.message); } catch { out.message = ""; }
      try { if (typeof e.stack === "string" && e.stack !== "") out.stack = e.stack; } catch {}
      return out;
    }
    try {
      return { message: Str(e) };
    } catch {
      return { message: "A value that cannot be turned into a string" };
    }
  }
  return async function start(fn) {
    let value;
    try {
      value = await fn();
    } catch (e) {
      return "e" + stringify(thrown(e));
    }
    if (value === undefined) return "u";
    try {
      clean = true;
      let json;
      try {
        json = stringify(value, replacer);
      } catch {
        clean = false;
      }
      return clean ? "v" + json : lazy().explain(value);
    } catch (e) {
      return "e" + stringify(thrown(e));
    }
  };
})`);

/**
 * Compiled inside a run only when its result is not JSON data, from intrinsics the bootstrap
 * captured: `explain` names the first part of the result that is not JSON data, by the rules of
 * the bootstrap's replacer (which are those of the process backend's `plainCopy`).
 */
const HELPERS = compact(String.raw`(function (stringify, O, isFiniteNumber, isArray, Str, hasOwn, ownProperty, arrayProto) {
  "use strict";
  const getPrototypeOf = O.getPrototypeOf, keys = O.keys, objectProto = O.prototype;
  const ADVICE = {
    "a function": "return data, not functions",
    "a symbol": "return data, not symbols",
    "a BigInt": "convert it with Number() or String()",
    "a Date": "convert it with .toISOString()",
    "a Map": "convert it with Object.fromEntries()",
    "a Set": "convert it with Array.from()",
  };
  function describe(v) {
    if (typeof v === "function") return "a function";
    if (typeof v === "symbol") return "a symbol";
    if (typeof v === "bigint") return "a BigInt";
    let name;
    try {
      const proto = getPrototypeOf(v);
      name = proto && proto.constructor && proto.constructor.name;
    } catch {}
    return typeof name === "string" && name !== "" ? "a " + name : "an object with a custom prototype";
  }
  const at = (path, key) => typeof key === "number" ? path + "[" + key + "]"
    : /^[A-Za-z_$][\w$]*$/.test(key) ? path + "." + key : path + "[" + stringify(key) + "]";
  const bad = (path, found, advice) => ({ path, found, advice });
  function check(value) {
    const ancestors = [];
    function walk(v, path) {
      switch (typeof v) {
        case "string":
        case "boolean":
        case "undefined":
          return undefined;
        case "number":
          return isFiniteNumber(v) ? undefined : bad(path, Str(v), "JSON has no NaN or Infinity; return null or a string");
        case "object":
          break;
        default: {
          const what = describe(v);
          return bad(path, what, ADVICE[what] || "return plain data");
        }
      }
      if (v === null) return undefined;
      for (let i = 0; i < ancestors.length; i++) {
        if (ancestors[i] === v) return bad(path, "a reference back to one of its own parents (a cycle)", "return a tree, not a graph");
      }
      let arr, ks;
      try {
        arr = isArray(v);
        const proto = getPrototypeOf(v);
        if (arr ? proto !== arrayProto : proto !== objectProto && proto !== null) {
          const what = describe(v);
          return bad(path, what, ADVICE[what] || "return plain objects and arrays");
        }
        ks = arr ? v.length : keys(v);
      } catch (e) {
        return unreadable(path, e);
      }
      ancestors[ancestors.length] = v;
      const n = arr ? ks : ks.length;
      for (let i = 0; i < n; i++) {
        const key = arr ? i : ks[i], p = at(path, key);
        let d;
        try {
          d = ownProperty(v, key);
        } catch (e) {
          return unreadable(p, e);
        }
        if (d === undefined) continue;
        if (!hasOwn(d, "value")) return bad(p, "a getter", "return plain data, not getters");
        const found = walk(d.value, p);
        if (found) return found;
      }
      ancestors.length = ancestors.length - 1;
      return undefined;
    }
    return walk(value, "result");
  }
  function unreadable(path, e) {
    let why;
    try { why = Str(e && e.message); } catch { why = "it threw"; }
    return bad(path, "a value that could not be read (" + why + ")", "return plain data");
  }
  /** The reason a result is not JSON data, found again with its path (the bootstrap's check keeps none). */
  function explain(value) {
    let found;
    try {
      found = check(value);
    } catch (e) {
      // Nesting deep enough to overflow the stack here, or a trap that throws where the walk did not expect.
      found = unreadable("result", e);
    }
    return "i" + stringify(found || bad("result", "a value that reads differently each time it is read", "return plain data"));
  }
  return { explain };
})`);

function isOutOfMemory(info: ThrownInfo): boolean {
  return info.name === "InternalError" && info.message === "out of memory";
}

/** A tool's rejection as the code sees it: a KeelError keeps its code, anything else is `E_TOOL_FAILED`. */
function toolErrorJson(name: string, error: unknown): string {
  if (KeelError.is(error)) {
    let details: unknown;
    try {
      details = error.details === undefined ? undefined : JSON.parse(JSON.stringify(error.details));
    } catch {
      details = undefined;
    }
    return JSON.stringify({ code: error.code, message: error.message, ...(details === undefined ? {} : { details }) });
  }
  return JSON.stringify({ code: "E_TOOL_FAILED", message: `Tool "${name}" failed: ${errorMessage(error)}` });
}

/**
 * Creates the QuickJS-wasm sandbox backend (name "quickjs"). The WebAssembly is loaded on the
 * first run; `close()` ends runs waiting on tools and refuses later runs.
 *
 * @throws {TypeError} when `maxStackBytes` is not an integer.
 * @throws {RangeError} when `maxStackBytes` is over 256 KiB or under 16 KiB.
 * @example
 * ```ts ignore
 * const executor = createCodeExecutor({ tools: registry, backend: createQuickJsSandbox() });
 * const out = await executor.execute("await tools.add({ a: 2, b: 3 })", { tools: ["add"] });
 * ```
 */
export function createQuickJsSandbox(options: QuickJsSandboxOptions = {}): QuickJsSandbox {
  const maxStackBytes = options.maxStackBytes ?? DEFAULT_STACK_BYTES;
  if (typeof maxStackBytes !== "number" || !Number.isInteger(maxStackBytes)) {
    throw new TypeError(`maxStackBytes must be an integer, got ${JSON.stringify(maxStackBytes)}`);
  }
  if (maxStackBytes > MAX_STACK_BYTES || maxStackBytes < MIN_STACK_BYTES) {
    throw new RangeError(`maxStackBytes is ${maxStackBytes}; it must be between ${MIN_STACK_BYTES} and ${MAX_STACK_BYTES} bytes`);
  }

  let closed = false;
  let live: Instance | undefined;
  let loading: Promise<Instance> | undefined;
  let instances = 0;
  let liveRuntimes = 0;
  const inFlight = new Set<Promise<unknown>>();
  /** Wakes each run that waits on its tools, so that close() ends it. */
  const wakers = new Set<() => void>();

  function closedError(): KeelError {
    return new KeelError("E_SANDBOX_CLOSED", 'The "quickjs" sandbox was closed; create a new one');
  }

  async function load(): Promise<Instance> {
    const memory = new WebAssembly.Memory({ initial: INITIAL_PAGES, maximum: MAXIMUM_PAGES });
    const grow = memory.grow.bind(memory);
    const instance: { module?: QuickJSWASMModule; memory: WebAssembly.Memory; active: Charge | undefined; retired: boolean } = {
      memory,
      active: undefined,
      retired: false,
    };
    // Emscripten grows the heap through this object; refusing (throwing) makes malloc fail,
    // which QuickJS turns into an "out of memory" error inside the code.
    Object.defineProperty(memory, "grow", {
      value(pages: number): number {
        const charge = instance.active;
        if (charge !== undefined) {
          const bytes = pages * PAGE_BYTES;
          if (charge.grown + bytes > charge.budget) {
            charge.hit = true;
            if (charge.guest) throw new RangeError("Over the run's memory limit");
          }
          charge.grown += bytes;
        }
        return grow(pages);
      },
    });
    instance.module = await newQuickJSWASMModule(newVariant(RELEASE_SYNC, { wasmMemory: memory }));
    instances++;
    return instance as Instance;
  }

  function acquire(): Promise<Instance> {
    if (live !== undefined && !live.retired) return Promise.resolve(live);
    if (loading === undefined) {
      loading = load().then(
        (instance) => {
          loading = undefined;
          live = instance;
          return instance;
        },
        (e) => {
          loading = undefined;
          throw new KeelError(
            "E_SANDBOX_UNAVAILABLE",
            `QuickJS could not start here: ${errorMessage(e)}; use another sandbox backend on this host`,
            { cause: e },
          );
        },
      );
    }
    return loading;
  }

  function retire(instance: Instance): void {
    instance.retired = true;
    if (live === instance) live = undefined;
  }

  async function execute(instance: Instance, run: SandboxRun): Promise<SandboxOutcome> {
    const logs: string[] = [];
    let logChars = 0;
    let logsTruncated = false;
    const charge: Charge = { budget: run.memoryMb * MIB, grown: 0, hit: false, guest: false };
    const deadline = performance.now() + run.timeoutMs;
    let stop: Stop | undefined;
    const pending = new Set<HostCall>();
    const settled: HostCall[] = [];
    let wake: (() => void) | undefined;
    const poke = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const stopped = (): Stop | undefined => {
      if (stop !== undefined) return stop;
      if (closed) stop = "closed";
      else if (run.signal?.aborted) stop = "abort";
      else if (charge.hit) stop = "memory";
      else if (performance.now() >= deadline) stop = "timeout";
      return stop;
    };
    const done = (error: SandboxError | undefined, value?: unknown): SandboxOutcome => {
      if (error !== undefined) return { ok: false, error, logs, logsTruncated };
      return value === undefined ? { ok: true, logs, logsTruncated } : { ok: true, value, logs, logsTruncated };
    };
    const stopError = (why: Stop): SandboxError => {
      switch (why) {
        case "timeout":
          return {
            code: "E_SANDBOX_TIMEOUT",
            message: `The code ran past its deadline of ${run.timeoutMs} ms and was stopped; do less per run or raise timeoutMs`,
          };
        case "abort":
          return { code: "E_SANDBOX_ABORTED", message: "The caller aborted the execution" };
        case "memory":
          return memoryError();
        case "closed":
          throw closedError();
      }
    };
    // The host's stack ran out inside QuickJS before QuickJS's own limit did (see the module docs),
    // so the code could not catch it; usually QuickJS's catchable "stack overflow" comes first.
    const hostStackError = (): SandboxError => ({
      code: "E_SANDBOX_CODE_FAILED",
      name: "RangeError",
      message: "The code ran out of stack (recursion, or data nested thousands of levels deep); recurse less deeply or flatten the data",
    });
    const memoryError = (): SandboxError => ({
      code: "E_SANDBOX_MEMORY",
      message: `The code went over its memory limit of ${run.memoryMb} MiB and was stopped; use less memory or raise memoryMb`,
    });
    const failure = (info: ThrownInfo, fallback: "E_SANDBOX_CODE_FAILED" | "E_SANDBOX_CODE_INVALID"): SandboxError => {
      if (isOutOfMemory(info)) return memoryError();
      const error: { -readonly [K in keyof SandboxError]: SandboxError[K] } = { code: fallback, message: info.message ?? "" };
      if (info.name !== undefined) error.name = info.name;
      if (info.stack !== undefined) error.stack = info.stack;
      return error;
    };

    /** Runs `fn` with this run charged for memory growth; `guest` when QuickJS runs the code. */
    const enter = <T>(guest: boolean, fn: () => T): T => {
      const previous = instance.active;
      const wasGuest = charge.guest;
      instance.active = charge;
      charge.guest = guest;
      try {
        return fn();
      } finally {
        instance.active = previous;
        charge.guest = wasGuest;
      }
    };

    if (stopped() !== undefined) return done(stopError(stop!));

    let runtime: QuickJSRuntime | undefined;
    let vm: QuickJSContext | undefined;
    const handles: QuickJSHandle[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    run.signal?.addEventListener("abort", poke);
    wakers.add(poke);
    let broken = false;
    let outcome: SandboxOutcome;
    try {
      outcome = await enter(false, () => {
        runtime = instance.module.newRuntime();
        liveRuntimes++;
        return drive(runtime);
      });
    } catch (e) {
      if (KeelError.is(e, "E_SANDBOX_CLOSED")) throw e;
      // Something escaped the WebAssembly in the middle of a call: a trap, or the host's own stack
      // running out under deep recursion. QuickJS never finished that call (its frames, reference
      // counts and stack pointer are as they were mid-way), so freeing this runtime would trip its
      // leak assertion and abort the instance: nothing of it is freed or called again, and the
      // instance is retired (runs in flight on it finish there).
      broken = true;
      outcome = done(charge.hit ? memoryError() : e instanceof RangeError ? hostStackError() : {
        code: "E_SANDBOX_CRASHED",
        message: `QuickJS failed while running the code: ${errorMessage(e)}`,
      });
    } finally {
      run.signal?.removeEventListener("abort", poke);
      wakers.delete(poke);
      if (timer !== undefined) clearTimeout(timer);
      if (!broken) {
        try {
          enter(false, () => {
            for (const call of pending) call.deferred.dispose();
            for (const handle of handles) if (handle.alive) handle.dispose();
            vm?.dispose();
            runtime?.dispose();
          });
        } catch {
          broken = true;
        }
      }
      // A runtime that could not be freed goes with its retired instance.
      if (runtime !== undefined) liveRuntimes--;
      if (broken || charge.hit || instance.memory.buffer.byteLength > RETIRE_ABOVE_BYTES) retire(instance);
    }
    if (outcome.error?.code === "E_SANDBOX_MEMORY") retire(instance);
    return outcome;

    async function drive(rt: QuickJSRuntime): Promise<SandboxOutcome> {
      rt.setMemoryLimit(charge.budget);
      rt.setMaxStackSize(maxStackBytes);
      rt.setInterruptHandler(() => stopped() !== undefined);
      const ctx = rt.newContext();
      vm = ctx;

      const keep = <H extends QuickJSHandle>(handle: H): H => {
        handles.push(handle);
        return handle;
      };
      const describeHandle = (handle: QuickJSHandle): ThrownInfo => {
        if (ctx.typeof(handle) !== "object") return { message: String(ctx.dump(handle)) };
        const read = (key: string): string | undefined =>
          ctx.getProp(handle, key).consume((h) => (ctx.typeof(h) === "string" ? ctx.getString(h) : undefined));
        const name = read("name");
        const stack = read("stack");
        return { message: read("message") ?? "", ...(name === undefined ? {} : { name }), ...(stack ? { stack } : {}) };
      };

      const hostCall = keep(ctx.newFunction("call", (nameHandle, jsonHandle) =>
        enter(false, () => {
          const name = ctx.getString(nameHandle);
          const json = jsonHandle !== undefined && ctx.typeof(jsonHandle) === "string" ? ctx.getString(jsonHandle) : undefined;
          const input: unknown = json === undefined ? undefined : JSON.parse(json);
          const call: HostCall = { name, deferred: ctx.newPromise() };
          pending.add(call);
          // Started on a later tick, so a tool never runs while QuickJS is on the stack.
          Promise.resolve()
            .then(() => run.callTool(name, input))
            .then(
              (value) => {
                call.outcome = { ok: true, value };
              },
              (error) => {
                call.outcome = { ok: false, error };
              },
            )
            .then(() => {
              settled.push(call);
              poke();
            });
          return call.deferred.handle;
        })
      ));
      const hostLog = keep(ctx.newFunction("log", (textHandle) =>
        enter(false, () => {
          if (!logsTruncated && textHandle !== undefined) {
            const text = ctx.getString(textHandle);
            const room = run.maxLogBytes - logChars;
            if (text.length <= room) {
              logs.push(text);
              logChars += text.length;
            } else {
              if (room > 0) {
                logs.push(text.slice(0, room));
                logChars += room;
              }
              logsTruncated = true;
            }
          }
          return logsTruncated ? ctx.true : ctx.false;
        })
      ));
      const contextJson = keep(ctx.newString(JSON.stringify(run.context)));
      const helpers = keep(ctx.newString(HELPERS));
      const boot = keep(ctx.unwrapResult(ctx.evalCode(BOOTSTRAP, "keel-bootstrap.js", { type: "global", strict: true })));
      const start = keep(ctx.unwrapResult(ctx.callFunction(boot, ctx.undefined, hostCall, hostLog, contextJson, helpers)));

      const evaluated = enter(true, () => ctx.evalCode(`(${run.code}\n)`, "code.js", { type: "global", strict: true }));
      if (evaluated.error !== undefined) {
        const info = describeHandle(keep(evaluated.error));
        if (stopped() !== undefined) return done(stopError(stop!));
        return done(failure(info, info.name === "SyntaxError" ? "E_SANDBOX_CODE_INVALID" : "E_SANDBOX_CODE_FAILED"));
      }
      const fn = keep(evaluated.value);
      if (ctx.typeof(fn) !== "function") {
        return done({
          code: "E_SANDBOX_CODE_INVALID",
          message: `The code is ${ctx.typeof(fn) === "object" ? "an object" : `a ${ctx.typeof(fn)}`}, not a function expression; write a body of statements or an async arrow function`,
        });
      }
      const started = enter(true, () => ctx.callFunction(start, ctx.undefined, fn));
      if (started.error !== undefined) {
        const info = describeHandle(keep(started.error));
        if (stopped() !== undefined) return done(stopError(stop!));
        return done(failure(info, "E_SANDBOX_CODE_FAILED"));
      }
      const promise = keep(started.value);

      for (;;) {
        if (stopped() !== undefined) return done(stopError(stop!));
        for (const call of settled.splice(0)) {
          pending.delete(call);
          settle(ctx, call);
          if (stopped() !== undefined) return done(stopError(stop!));
        }
        const jobs = enter(true, () => rt.executePendingJobs());
        if (jobs.error !== undefined) {
          const info = describeHandle(jobs.error);
          jobs.error.dispose();
          if (stopped() !== undefined) return done(stopError(stop!));
          if (isOutOfMemory(info)) return done(memoryError());
        }
        if (stopped() !== undefined) return done(stopError(stop!));
        const state = ctx.getPromiseState(promise);
        if (state.type === "fulfilled") {
          const report = ctx.typeof(state.value) === "string" ? ctx.getString(state.value) : undefined;
          if (!state.notAPromise) state.value.dispose();
          return finish(report);
        }
        if (state.type === "rejected") {
          const info = describeHandle(state.error);
          state.error.dispose();
          return done(failure(info, "E_SANDBOX_CODE_FAILED"));
        }
        if (settled.length > 0) continue;
        // The code awaits: tool calls, or something nothing can settle, which ends at the deadline.
        const remaining = deadline - performance.now();
        if (remaining <= 0) continue;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(poke, remaining + 1);
        });
        clearTimeout(timer);
        timer = undefined;
      }
    }

    function settle(ctx: QuickJSContext, call: HostCall): void {
      const outcome = call.outcome!;
      let json: string | undefined;
      let rejection: string | undefined;
      if (outcome.ok) {
        try {
          json = JSON.stringify(outcome.value);
        } catch (e) {
          rejection = JSON.stringify({
            code: "E_TOOL_OUTPUT_INVALID",
            message: `Tool "${call.name}" returned a value that is not JSON data: ${errorMessage(e)}`,
          });
        }
      } else {
        rejection = toolErrorJson(call.name, outcome.error);
      }
      const text = rejection ?? json;
      const value = text === undefined ? undefined : enter(false, () => ctx.newString(text));
      try {
        enter(true, () => {
          if (rejection !== undefined) call.deferred.reject(value);
          else call.deferred.resolve(value);
        });
      } catch (e) {
        // Settling runs QuickJS, so a stop lands here as a failed call; the loop reports the stop.
        if (stopped() === undefined) throw e;
      } finally {
        value?.dispose();
        call.deferred.dispose();
      }
    }

    function finish(report: string | undefined): SandboxOutcome {
      if (charge.hit) return done(memoryError());
      if (report === undefined || report === "") {
        return done({ code: "E_SANDBOX_CRASHED", message: "The sandbox could not read what the code returned" });
      }
      const tag = report[0];
      const body = report.slice(1);
      if (tag === "u") return done(undefined);
      if (tag === "v") return done(undefined, JSON.parse(body));
      if (tag === "i") {
        const found = JSON.parse(body) as { path: string; found: string; advice: string };
        return done({
          code: "E_SANDBOX_RESULT_INVALID",
          message: `The code returned a value that is not JSON data: ${found.path} is ${found.found}; ${found.advice}`,
          details: { path: found.path, found: found.found },
        });
      }
      const info = JSON.parse(body) as ThrownInfo;
      if (info.tool && typeof info.code === "string") {
        const error = { code: info.code, message: info.message ?? "" } as { -readonly [K in keyof SandboxError]: SandboxError[K] };
        if (info.details !== undefined) error.details = info.details;
        return done(error);
      }
      return done(failure(info, "E_SANDBOX_CODE_FAILED"));
    }
  }

  return {
    name: "quickjs",
    async run(run) {
      if (closed) throw closedError();
      const instance = await acquire();
      if (closed) throw closedError();
      const running = execute(instance, run);
      inFlight.add(running);
      try {
        return await running;
      } finally {
        inFlight.delete(running);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const wake of wakers) wake();
      await Promise.allSettled([...inFlight]);
      live = undefined;
    },
    stats() {
      return { instances, liveRuntimes, wasmMemoryBytes: live?.memory.buffer.byteLength ?? 0 };
    },
  };
}
