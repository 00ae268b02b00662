/**
 * Runs in a sandbox process before SES loads (see `child.mjs`, which imports this module first).
 *
 * It takes what the child needs from `Deno` while it is still untouched, stops unhandled
 * rejections from ending the process (a run may leave one behind), starts the memory watchdog,
 * and deletes `globalThis.process`: SES reads `process.env` during lockdown, which throws
 * NotCapable in a process without env permission.
 * @module
 */

/** The V8 heap cap this process was started with (the first script argument), in MiB. */
const memoryMb = Number(Deno.args[0]) > 0 ? Number(Deno.args[0]) : 64;
/** Resident memory allowed beyond the heap cap (the second argument), in MiB. */
const headroomMb = Number(Deno.args[1]) > 0 ? Number(Deno.args[1]) : 64;

const stdout = Deno.stdout;
const writeStdoutSync = Deno.stdout.writeSync;
const memoryUsage = Deno.memoryUsage;

globalThis.addEventListener("unhandledrejection", (event) => event.preventDefault());
globalThis.addEventListener("error", (event) => event.preventDefault());

// The watchdog is a thread of its own, so it sees memory grow while a synchronous loop holds the
// main thread. Slots: 0 a run is active, 1 the resident limit in KiB, 2 the limit was reported.
// Over the limit it writes a marker line to stderr and the host kills the process. It also
// notices when the host is gone (the parent pid changes, or stderr is a broken pipe) while a run
// holds the main thread, which then cannot read the end of stdin: it brings the whole process
// down by filling its own heap, since Deno.exit in a worker ends only the worker.
const WATCHDOG = `
const encoder = new TextEncoder();
self.onmessage = (event) => {
  const state = new Int32Array(event.data);
  const parent = Deno.ppid;
  const die = () => { const keep = []; for (;;) keep.push(new Array(1e6).fill(1.5)); };
  for (;;) {
    if (Atomics.load(state, 0) === 0) { Atomics.wait(state, 0, 0); continue; }
    const kb = Math.round(Deno.memoryUsage().rss / 1024);
    if (kb > Atomics.load(state, 1) && Atomics.load(state, 2) === 0) {
      Atomics.store(state, 2, 1);
      try { Deno.stderr.writeSync(encoder.encode("\\nKEEL_SANDBOX_MEMORY " + kb + "\\n")); } catch { die(); }
    }
    if (Deno.ppid !== parent) die();
    Atomics.wait(state, 0, 1, 20);
  }
};
`;

const watchState = new Int32Array(new SharedArrayBuffer(12));
const watchdog = new Worker(`data:text/javascript,${encodeURIComponent(WATCHDOG)}`, {
  type: "module",
});
watchdog.postMessage(watchState.buffer);

/** What the child takes from the host process before SES runs. */
export const io = Object.freeze({
  /** Host messages arrive here. */
  stdin: Deno.stdin.readable,
  /** Ends the process. */
  exit: Deno.exit,
  /** Writes all of `bytes` to stdout before returning, so protocol lines never interleave. */
  writeAll(bytes) {
    let written = 0;
    while (written < bytes.length) written += writeStdoutSync.call(stdout, bytes.subarray(written));
  },
  /** Sets the resident limit from the size now (call once SES is locked down). */
  armWatchdog() {
    const kb = Math.round(memoryUsage().rss / 1024);
    Atomics.store(watchState, 1, kb + (memoryMb + headroomMb) * 1024);
  },
  /** Marks a run as active (the watchdog polls) or not (it sleeps). */
  watch(active) {
    if (active) {
      Atomics.store(watchState, 2, 0);
      Atomics.store(watchState, 0, 1);
      Atomics.notify(watchState, 0);
    } else {
      Atomics.store(watchState, 0, 0);
    }
  },
});

delete globalThis.process;
