/**
 * One sandbox process of the "deno-ses" backend (`pool.ts` starts it): `deno run` with no
 * permission flags, an empty environment and a V8 heap cap. SES locks down the realm once; each
 * run then evaluates its code in a fresh Compartment whose only globals besides the language's
 * are `tools`/`codemode`, `context` and `console`, with a working `Date` and `Math.random` (the next one is made while the process
 * waits, since making one is most of a run's cost).
 *
 * A run ends only after a macrotask once its code settled, so microtasks it left spinning hold up
 * its own end (and its deadline), not the next run; tool calls it left behind never settle, and
 * its console stops collecting.
 *
 * Protocol, one JSON object per line. Host to child: `{ t: "run", id, code, context, maxLogBytes }`
 * and `{ t: "tool-result", id, call, ok, value | error }`. Child to host: `{ t: "ready" }`,
 * `{ t: "tool", id, call, name, input }` and `{ t: "done", id, ok, value | error, logs,
 * logsTruncated }`. The child exits when its stdin ends.
 * @module
 */

import { io } from "./_child-prelude.mjs";
import "ses";

// errorTaming "safe" keeps stacks, which name host paths, from the code (and from results).
lockdown({
  reporting: "none",
  errorTaming: "safe",
  errorTrapping: "none",
  unhandledRejectionTrapping: "none",
  consoleTaming: "unsafe",
  domainTaming: "unsafe",
  overrideTaming: "severe",
  stackFiltering: "verbose",
  evalTaming: "safe-eval",
});

/** The most characters a result or a tool input may take as JSON. */
const MAX_VALUE_CHARS = 64 * 1024 * 1024;
/** The most characters of an error's message (and stack) that are reported. */
const MAX_MESSAGE_CHARS = 16 * 1024;

const encoder = new TextEncoder();
const { stringify } = JSON;

function send(text) {
  io.writeAll(encoder.encode(text + "\n"));
}

// ---------------------------------------------------------------------------------------------
// Values crossing out of the compartment

class ResultError extends Error {}

function typeName(value) {
  if (value === null) return "null";
  if (typeof value === "number") return String(value);
  if (typeof value !== "object") return typeof value;
  const proto = Object.getPrototypeOf(value);
  const name = proto?.constructor?.name;
  return typeof name === "string" && name !== "" ? `a ${name}` : "an exotic object";
}

function at(path) {
  return path === "" ? "the result" : `result${path}`;
}

/**
 * A copy of `value` made of plain data only, read through descriptors so that getters and
 * proxies cannot show one thing to the check and another to JSON. As in JSON, `undefined` drops
 * an object's property and becomes null in an array; the caller handles it at the top.
 */
function plainCopy(value, path, ancestors) {
  switch (typeof value) {
    case "undefined":
      return undefined;
    case "string":
    case "boolean":
      return value;
    case "number":
      if (Number.isFinite(value)) return value;
      throw new ResultError(`${at(path)} is ${value}, which JSON cannot hold`);
    case "object":
      break;
    default:
      throw new ResultError(`${at(path)} is ${typeName(value)}, which JSON cannot hold`);
  }
  if (value === null) return null;
  if (ancestors.includes(value)) throw new ResultError(`${at(path)} refers back to itself (a cycle)`);
  const isArray = Array.isArray(value);
  const proto = Object.getPrototypeOf(value);
  if (isArray ? proto !== Array.prototype : proto !== Object.prototype && proto !== null) {
    throw new ResultError(`${at(path)} is ${typeName(value)}; return plain objects, arrays, strings, numbers, booleans or null`);
  }
  ancestors.push(value);
  let copy;
  if (isArray) {
    copy = [];
    const length = value.length;
    for (let i = 0; i < length; i++) {
      const d = Object.getOwnPropertyDescriptor(value, i);
      if (d === undefined) copy.push(null);
      else if ("value" in d) copy.push(plainCopy(d.value, `${path}[${i}]`, ancestors) ?? null);
      else throw new ResultError(`${at(`${path}[${i}]`)} is a getter; return plain data`);
    }
  } else {
    copy = {};
    for (const key of Reflect.ownKeys(value)) {
      const d = Object.getOwnPropertyDescriptor(value, key);
      if (d === undefined || !d.enumerable || typeof key === "symbol") continue;
      const p = /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${stringify(key)}]`;
      if (!("value" in d)) throw new ResultError(`${at(p)} is a getter; return plain data`);
      const v = plainCopy(d.value, p, ancestors);
      if (v === undefined) continue;
      Object.defineProperty(copy, key, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }
  ancestors.pop();
  return copy;
}

/** The JSON text of a result, or throws a ResultError saying why there is none. */
function resultJson(value) {
  let copy;
  try {
    copy = plainCopy(value, "", []);
  } catch (e) {
    if (e instanceof ResultError) throw e;
    if (e instanceof RangeError) throw new ResultError("the result is nested too deeply to send");
    throw new ResultError(`the result could not be read: ${String(e?.message ?? e)}`);
  }
  const text = stringify(copy);
  if (text.length > MAX_VALUE_CHARS) {
    throw new ResultError(`the result is ${text.length} characters as JSON, over the limit of ${MAX_VALUE_CHARS}; return less`);
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// Runs

/** Tool-rejection errors this child created, with what the host said. */
const toolErrors = new WeakMap();
let current = null;

function clip(text) {
  return text.length <= MAX_MESSAGE_CHARS ? text : `${text.slice(0, MAX_MESSAGE_CHARS)}… (${text.length - MAX_MESSAGE_CHARS} more characters)`;
}

function describeThrown(e) {
  const known = typeof e === "object" && e !== null ? toolErrors.get(e) : undefined;
  if (known) return known;
  const out = { code: "E_SANDBOX_CODE_FAILED", message: "" };
  try {
    if (e instanceof Error) {
      out.message = clip(String(e.message));
      out.name = clip(String(e.name));
      if (typeof e.stack === "string" && e.stack !== "") out.stack = clip(e.stack);
    } else {
      out.message = clip(String(e));
    }
  } catch {
    out.message = "The code threw a value that cannot be shown";
  }
  return out;
}

function format(value) {
  if (typeof value === "string") return value;
  try {
    const text = stringify(value);
    if (typeof text === "string") return text;
  } catch {
    // cycles, bigints: fall through
  }
  try {
    return String(value);
  } catch {
    return "[unprintable]";
  }
}

function makeConsole(run) {
  const write = (prefix) => (...args) => {
    if (run.finished || run.logsTruncated) return;
    const room = run.maxLogBytes - run.logChars;
    let line = prefix;
    for (let i = 0; i < args.length && line.length <= room; i++) {
      line += (i === 0 ? "" : " ") + format(args[i]);
    }
    if (line.length > room) {
      line = line.slice(0, room);
      run.logsTruncated = true;
    }
    if (line.length > 0 || !run.logsTruncated) {
      run.logs.push(line);
      run.logChars += line.length;
    }
  };
  const log = write("");
  return {
    log,
    info: log,
    debug: log,
    warn: write("[warn] "),
    error: write("[error] "),
  };
}

function makeTools(run) {
  const cache = new Map();
  const handler = {
    get(_target, name) {
      // `then` stays undefined so that `await tools` is not a call.
      if (typeof name !== "string" || name === "then") return undefined;
      let fn = cache.get(name);
      if (fn === undefined) {
        fn = harden((input) => callTool(run, name, input));
        cache.set(name, fn);
      }
      return fn;
    },
  };
  return new Proxy(harden(Object.create(null)), handler);
}

function toolError(error) {
  const code = typeof error?.code === "string" ? error.code : "E_TOOL_FAILED";
  const message = typeof error?.message === "string" ? error.message : "The tool failed";
  const e = new Error(message);
  e.code = code;
  toolErrors.set(e, { code, message });
  return harden(e);
}

function callTool(run, name, input) {
  // A run that has ended keeps no way out: its late calls never settle.
  if (run.finished) return new Promise(() => {});
  let json;
  try {
    json = input === undefined ? undefined : stringify(input);
  } catch (e) {
    return Promise.reject(toolError({
      code: "E_TOOL_INPUT_INVALID",
      message: `The input for tool "${name}" is not JSON data (${describeThrown(e).message}); pass plain objects, arrays, strings, numbers, booleans or null`,
    }));
  }
  if (json !== undefined && json.length > MAX_VALUE_CHARS) {
    return Promise.reject(toolError({
      code: "E_TOOL_INPUT_INVALID",
      message: `The input for tool "${name}" is ${json.length} characters as JSON, over the limit of ${MAX_VALUE_CHARS}; send less per call`,
    }));
  }
  const call = ++run.calls;
  return new Promise((resolve, reject) => {
    run.pending.set(call, { resolve, reject });
    send(
      `{"t":"tool","id":${run.id},"call":${call},"name":${stringify(name)}${json === undefined ? "" : `,"input":${json}`}}`,
    );
  });
}

function onToolResult(message) {
  const run = current;
  if (run === null || run.id !== message.id || run.finished) return;
  const pending = run.pending.get(message.call);
  if (pending === undefined) return;
  run.pending.delete(message.call);
  if (message.ok) pending.resolve(message.value);
  else pending.reject(toolError(message.error));
}

// A message to ourselves is the cheapest macrotask (setTimeout(0) waits about 2 ms).
const tick = new MessageChannel();
let ticked = null;
tick.port1.onmessage = () => {
  const resolve = ticked;
  ticked = null;
  resolve?.();
};

/** Resolves in a later macrotask, so microtasks a run left spinning hold up its own end. */
function nextTask() {
  return new Promise((resolve) => {
    ticked = resolve;
    tick.port2.postMessage(null);
  });
}

async function execute(message) {
  const run = {
    id: message.id,
    maxLogBytes: message.maxLogBytes,
    logs: [],
    logChars: 0,
    logsTruncated: false,
    finished: false,
    calls: 0,
    pending: new Map(),
  };
  current = run;
  io.watch(true);
  let outcome;
  try {
    outcome = await evaluate(run, message);
  } catch (e) {
    outcome = `"ok":false,"error":${stringify(describeThrown(e))}`;
  }
  run.finished = true;
  run.pending.clear();
  await nextTask();
  io.watch(false);
  current = null;
  send(`{"t":"done","id":${run.id},${outcome},"logs":${stringify(run.logs)},"logsTruncated":${run.logsTruncated}}`);
  prepare();
}

/** A fresh compartment made while the process waited, since making one is most of a run's cost. */
let spare = null;

/**
 * SES gives new compartments a `Date` without a clock and a `Math` without `random`, so that code
 * cannot measure time or draw entropy. Model-written code leans on both (timestamps, sampling), and
 * a deadline already bounds what timing could learn here, so compartments get the working ones
 * (hardened intrinsics of this realm, shared by reference, like the rest).
 */
const CLOCK_AND_RANDOM = { Date: globalThis.Date, Math: globalThis.Math };

function newCompartment() {
  return new Compartment({ __options__: true, globals: CLOCK_AND_RANDOM });
}

function takeCompartment() {
  const compartment = spare ?? newCompartment();
  spare = null;
  return compartment;
}

/** Makes the next run's compartment now, while the host reads the last answer. */
function prepare() {
  spare ??= newCompartment();
}

/** Runs the code; returns the middle of the done message. */
async function evaluate(run, message) {
  const tools = makeTools(run);
  const compartment = takeCompartment();
  const globals = {
    tools,
    codemode: tools,
    context: harden(message.context ?? {}),
    console: harden(makeConsole(run)),
  };
  for (const [name, value] of Object.entries(globals)) {
    Object.defineProperty(compartment.globalThis, name, { value, writable: false, enumerable: false, configurable: false });
  }
  let fn;
  try {
    // Direct eval would run as indirect eval in the compartment, which is just as confined; SES
    // rejects it only for compatibility with engines that implement direct eval natively.
    fn = compartment.evaluate(`(${message.code}\n)`, { __rejectSomeDirectEvalExpressions__: false });
  } catch (e) {
    const error = describeThrown(e);
    if (e instanceof SyntaxError) error.code = "E_SANDBOX_CODE_INVALID";
    return `"ok":false,"error":${stringify(error)}`;
  }
  if (typeof fn !== "function") {
    return `"ok":false,"error":${
      stringify({ code: "E_SANDBOX_CODE_INVALID", message: `The code is ${typeName(fn)}, not a function expression` })
    }`;
  }
  let value;
  try {
    value = await fn();
  } catch (e) {
    return `"ok":false,"error":${stringify(describeThrown(e))}`;
  }
  if (value === undefined) return `"ok":true`;
  try {
    return `"ok":true,"value":${resultJson(value)}`;
  } catch (e) {
    const why = e instanceof ResultError ? e.message : String(e);
    return `"ok":false,"error":${
      stringify({ code: "E_SANDBOX_RESULT_INVALID", message: `The code returned a value that is not JSON data: ${why}` })
    }`;
  }
}

// ---------------------------------------------------------------------------------------------
// The host connection

function onLine(line) {
  if (line === "") return;
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    return;
  }
  if (message.t === "tool-result") onToolResult(message);
  else if (message.t === "run") execute(message);
}

async function serve() {
  const decoder = new TextDecoder();
  let parts = [];
  for await (const chunk of io.stdin) {
    let text = decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = text.indexOf("\n")) >= 0) {
      parts.push(text.slice(0, nl));
      onLine(parts.length === 1 ? parts[0] : parts.join(""));
      parts = [];
      text = text.slice(nl + 1);
    }
    if (text !== "") parts.push(text);
  }
  io.exit(0);
}

prepare();
io.armWatchdog();
send(`{"t":"ready"}`);
await serve();
