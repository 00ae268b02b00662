/**
 * The Runtime conformance suite: every adapter's test calls {@link testRuntime}, so Deno, Bun and
 * later hosts are held to the same behaviour. Optional members are tested when present.
 * @module
 */

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeelError } from "../core/errors.ts";
import { isAbsolutePath, joinPath, toFileUrl } from "../core/path.ts";
import type {
  ChildProcess,
  ProcessOutput,
  Runtime,
  RuntimeFs,
  RuntimeProcesses,
  Server,
  SqliteHandle,
} from "../core/runtime.ts";

/** What the suite needs to know about the host beyond the Runtime itself. */
export interface ConformanceOptions {
  /**
   * The command line that runs the module `file` on the host under test with every permission,
   * e.g. `[deno, "run", "--allow-all", file]`. The standard-stream, exit and signal tests run a
   * child script this way; without it (or without `processes` and `fs`) they are skipped.
   */
  readonly scriptCommand?: (file: string) => readonly [string, ...string[]];
}

/** Registers the Runtime conformance tests for `runtime` with `node:test`. */
export function testRuntime(runtime: Runtime, options: ConformanceOptions = {}): void {
  describe(`Runtime conformance: ${runtime.name}`, () => {
    let tmp = "";

    before(async () => {
      if (runtime.fs !== undefined) tmp = await runtime.fs.makeTempDir("keel-conformance-");
    });

    after(async () => {
      if (runtime.fs !== undefined && tmp !== "") await runtime.fs.remove(tmp);
    });

    describe("identity, env, cwd and paths", () => {
      test("name and version describe the host", () => {
        assert.ok(["deno", "bun", "node", "edge"].includes(runtime.name));
        assert.match(runtime.version, /^\d+\.\d+\.\d+/);
      });

      test("env.get and env.toObject agree", () => {
        const all = runtime.env.toObject();
        assert.equal(typeof all, "object");
        for (const [key, value] of Object.entries(all)) {
          assert.equal(typeof value, "string");
          assert.equal(runtime.env.get(key), value);
        }
        assert.equal(runtime.env.get("KEEL_CONFORMANCE_SURELY_UNSET_0b8f"), undefined);
        assert.equal("KEEL_CONFORMANCE_SURELY_UNSET_0b8f" in all, false);
      });

      test("cwd is an absolute path", () => {
        const cwd = runtime.cwd();
        assert.ok(isAbsolutePath(cwd), cwd);
        assert.equal(runtime.resolvePath("."), joinPath(cwd));
      });

      test("resolvePath resolves relative paths against cwd", () => {
        const cwd = runtime.cwd();
        assert.equal(runtime.resolvePath("a/b.txt"), joinPath(cwd, "a/b.txt"));
        assert.equal(runtime.resolvePath("./a/./b/../c"), joinPath(cwd, "a/c"));
      });

      test("resolvePath normalizes absolute paths", () => {
        assert.equal(runtime.resolvePath("/x/y/../z"), "/x/z");
        assert.equal(runtime.resolvePath("/x//y/./"), "/x/y");
        assert.equal(runtime.resolvePath("/../.."), "/");
      });

      test("resolvePath uses the base argument", () => {
        assert.equal(runtime.resolvePath("c", "/a/b"), "/a/b/c");
        assert.equal(runtime.resolvePath("../c", "/a/b/"), "/a/c");
        assert.equal(runtime.resolvePath("/abs", "/a/b"), "/abs");
        assert.equal(runtime.resolvePath("..", "/"), "/");
        // A relative base is itself taken from cwd.
        assert.equal(runtime.resolvePath("x", "rel"), joinPath(runtime.cwd(), "rel/x"));
      });

      if (runtime.gpu !== undefined) {
        test("gpu returns a WebGPU entry point or undefined", () => {
          const gpu = runtime.gpu?.();
          if (gpu !== undefined) assert.equal(typeof gpu.requestAdapter, "function");
        });
      }
    });

    describeConsole(runtime);
    if (
      options.scriptCommand !== undefined && runtime.processes !== undefined &&
      runtime.fs !== undefined
    ) {
      describeChildConsole({
        runtime,
        processes: runtime.processes,
        fs: runtime.fs,
        scriptCommand: options.scriptCommand,
        root: () => tmp,
      });
    }
    if (runtime.fs !== undefined) {
      describeFs(runtime, runtime.fs, () => tmp);
    }
    if (runtime.processes !== undefined) {
      describeProcesses(runtime, runtime.processes, () => tmp);
    }
    if (runtime.serve !== undefined) {
      describeServe(runtime.serve.bind(runtime));
    }
    if (runtime.openSqlite !== undefined && runtime.fs !== undefined) {
      describeSqlite(runtime.openSqlite.bind(runtime), runtime.fs, () => tmp);
    }
    if (runtime.createWorker !== undefined && runtime.fs !== undefined) {
      describeWorker(runtime.createWorker.bind(runtime), runtime.fs, () => tmp);
    }
    if (runtime.denoPath !== undefined) {
      describeDenoPath(runtime, runtime.denoPath.bind(runtime));
    }
  });
}

const encoder = new TextEncoder();

function isNotFound(e: unknown): boolean {
  return KeelError.is(e, "E_RUNTIME_NOT_FOUND");
}

function isSpawnError(e: unknown): boolean {
  return KeelError.is(e, "E_RUNTIME_SPAWN");
}

// ---------------------------------------------------------------------------------------------

const STD_STREAMS = ["stdin", "stdout", "stderr"] as const;

function describeConsole(runtime: Runtime): void {
  describe("args, terminals, inspect and signals", () => {
    test("args is a list of strings", () => {
      assert.ok(Array.isArray(runtime.args));
      for (const arg of runtime.args) assert.equal(typeof arg, "string");
    });

    test("isTerminal answers a boolean for each standard stream", () => {
      for (const stream of STD_STREAMS) assert.equal(typeof runtime.isTerminal(stream), "boolean");
    });

    test("inspect renders nested objects, strings and bigints without colors", () => {
      const text = runtime.inspect({ outer: { inner: [1, "two"] }, big: 3n });
      for (const part of ["outer", "inner", "1", "two", "3n"]) {
        assert.ok(text.includes(part), `${part} in ${text}`);
      }
      assert.ok(!text.includes("\u001b["), text);
      assert.ok(!text.includes("[object Object]"), text);
    });

    test("inspect shows a cycle instead of failing", () => {
      const loop: Record<string, unknown> = { name: "loop" };
      loop.self = loop;
      assert.match(runtime.inspect(loop), /Circular/);
    });

    test("inspect honours depth and colors", () => {
      const shallow = runtime.inspect({ a: { b: { c: {} } } }, { depth: 0 });
      assert.match(shallow, /\[Object/);
      assert.doesNotMatch(shallow, /b:/);
      assert.ok(runtime.inspect("x", { colors: true }).includes("\u001b["));
      assert.ok(!runtime.inspect("x", { colors: false }).includes("\u001b["));
    });

    if (runtime.onSignal !== undefined) {
      const onSignal = runtime.onSignal.bind(runtime);
      test("onSignal returns an unsubscribe", () => {
        const off = onSignal("SIGTERM", () => {});
        assert.equal(typeof off, "function");
        off();
        off();
      });
    }
  });
}

interface ChildConsoleOptions {
  readonly runtime: Runtime;
  readonly processes: RuntimeProcesses;
  readonly fs: RuntimeFs;
  readonly scriptCommand: (file: string) => readonly [string, ...string[]];
  readonly root: () => string;
}

/** A script that writes through the runtime `runtimes/mod.ts` picks, in a child process. */
const WRITER_SCRIPT = `
const runtime = await detectRuntime();
runtime.writeStderr("args " + JSON.stringify(runtime.args) + "\\n");
runtime.writeStderr("terminals " + JSON.stringify(STREAMS.map((s) => runtime.isTerminal(s))) + "\\n");
runtime.writeStderr("no newline, ");
runtime.writeStderr("then one\\n");
runtime.writeStderr("e".repeat(100000) + "\\n");
// More than a pipe holds, so the write has to wait for the reader before it resolves.
await runtime.writeStdout("x".repeat(200000) + "\\n");
await runtime.writeStdout("done ✓\\n");
// Concurrent writes, not awaited one by one: each lands whole, in call order.
await Promise.all(Array.from({ length: 50 }, (_, i) => runtime.writeStdout(String(i).padStart(2, "0") + "y".repeat(5000) + "\\n")));
runtime.exit?.(3);
`;

/** A script that handles SIGTERM (exiting 7) and subscribes then unsubscribes SIGINT. */
const SIGNAL_SCRIPT = `
const runtime = await detectRuntime();
const off = runtime.onSignal?.("SIGINT", () => runtime.writeStderr("SIGINT handled\\n"));
off?.();
runtime.onSignal?.("SIGTERM", () => {
  runtime.writeStderr("SIGTERM handled\\n");
  runtime.exit?.(7);
});
await runtime.writeStdout("ready\\n");
setTimeout(() => {}, 15000);
`;

function describeChildConsole(options: ChildConsoleOptions): void {
  const { runtime, processes, fs, scriptCommand, root } = options;
  const detect = new URL("./mod.ts", import.meta.url).href;
  const prelude = `import { detectRuntime } from ${JSON.stringify(detect)};\n` +
    `const STREAMS = ${JSON.stringify(STD_STREAMS)};\n`;

  async function script(name: string, body: string): Promise<readonly [string, ...string[]]> {
    const dir = joinPath(root(), "console");
    await fs.mkdir(dir);
    const file = joinPath(dir, name);
    await fs.writeTextFile(file, prelude + body);
    return scriptCommand(file);
  }

  describe("writeStdout, writeStderr and exit, in a child process", () => {
    test("every byte arrives, in order, before exit; args are passed; exit sets the code", async () => {
      const [command, ...args] = await script("writer.mjs", WRITER_SCRIPT);
      const out = await processes.run(command, {
        args: [...args, "one", "two words", "--flag"],
        stdin: "null",
      });
      assert.equal(
        out.stderr,
        'args ["one","two words","--flag"]\nterminals [false,false,false]\n' +
          "no newline, then one\n" + "e".repeat(100000) + "\n",
      );
      const concurrent = Array.from({ length: 50 }, (_, i) => String(i).padStart(2, "0") + "y".repeat(5000) + "\n");
      assert.equal(out.stdout, "x".repeat(200000) + "\ndone ✓\n" + concurrent.join(""));
      assert.equal(out.code, runtime.exit === undefined ? 0 : 3);
    });
  });

  if (runtime.onSignal === undefined) return;
  describe("onSignal, in a child process", () => {
    async function signalled(signal: "SIGTERM" | "SIGINT"): Promise<ProcessOutput> {
      const [command, ...args] = await script("signals.mjs", SIGNAL_SCRIPT);
      const child = processes.spawn(command, {
        args,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(15_000),
      });
      const stderr = readAll(child.stderr);
      assert.ok(child.stdout !== null);
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let stdout = "";
      while (!stdout.includes("ready\n")) {
        const chunk = await reader.read();
        if (chunk.done) break;
        stdout += chunk.value;
      }
      child.kill(signal);
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        stdout += chunk.value;
      }
      return { ...(await child.status), stdout, stderr: await stderr };
    }

    test("a handler runs instead of the default", async () => {
      const out = await signalled("SIGTERM");
      assert.equal(out.stdout, "ready\n");
      assert.equal(out.stderr, "SIGTERM handled\n");
      assert.deepEqual([out.code, out.signal], [runtime.exit === undefined ? 0 : 7, null]);
    });

    test("after unsubscribing, the default ends the process", async () => {
      const out = await signalled("SIGINT");
      assert.equal(out.stdout, "ready\n");
      assert.equal(out.stderr, "");
      assert.equal(out.signal, "SIGINT");
      assert.equal(out.success, false);
    });
  });
}

// ---------------------------------------------------------------------------------------------

function describeFs(runtime: Runtime, fs: RuntimeFs, root: () => string): void {
  describe("fs", () => {
    let dir = "";
    before(async () => {
      dir = joinPath(root(), "fs");
      await fs.mkdir(dir);
    });

    test("writeTextFile and readTextFile round-trip UTF-8, and writing truncates", async () => {
      const file = joinPath(dir, "text.txt");
      await fs.writeTextFile(file, "héllo, wörld ✓ 🚀\nline two");
      assert.equal(await fs.readTextFile(file), "héllo, wörld ✓ 🚀\nline two");
      await fs.writeTextFile(file, "short");
      assert.equal(await fs.readTextFile(file), "short");
      assert.deepEqual(await fs.readFile(file), encoder.encode("short"));
    });

    test("writeFile and readFile round-trip every byte value", async () => {
      const file = joinPath(dir, "bytes.bin");
      const data = new Uint8Array(256).map((_, i) => i);
      await fs.writeFile(file, data);
      const back = await fs.readFile(file);
      assert.ok(back instanceof Uint8Array);
      assert.deepEqual(back, data);
      assert.equal((await fs.stat(file)).size, 256);
    });

    test("appendTextFile creates the file, then appends", async () => {
      const file = joinPath(dir, "log.txt");
      await fs.appendTextFile(file, "one\n");
      await fs.appendTextFile(file, "two\n");
      assert.equal(await fs.readTextFile(file), "one\ntwo\n");
    });

    test("mkdir creates parents and accepts an existing directory", async () => {
      const deep = joinPath(dir, "m/n/o");
      await fs.mkdir(deep);
      await fs.mkdir(deep);
      assert.equal((await fs.stat(deep)).isDirectory, true);
      assert.equal((await fs.stat(joinPath(dir, "m"))).isDirectory, true);
    });

    test("readDir lists names and kinds", async () => {
      const listed = joinPath(dir, "listed");
      await fs.mkdir(joinPath(listed, "sub"));
      await fs.writeTextFile(joinPath(listed, "a.txt"), "a");
      await fs.writeTextFile(joinPath(listed, "b.txt"), "b");
      const entries = (await fs.readDir(listed)).sort((x, y) => x.name.localeCompare(y.name));
      assert.deepEqual(entries, [
        { name: "a.txt", isFile: true, isDirectory: false, isSymlink: false },
        { name: "b.txt", isFile: true, isDirectory: false, isSymlink: false },
        { name: "sub", isFile: false, isDirectory: true, isSymlink: false },
      ]);
      assert.deepEqual(await fs.readDir(joinPath(listed, "sub")), []);
    });

    test("remove deletes a file, a whole tree, and ignores a missing path", async () => {
      const tree = joinPath(dir, "tree");
      await fs.mkdir(joinPath(tree, "x/y"));
      await fs.writeTextFile(joinPath(tree, "x/y/leaf.txt"), "leaf");
      await fs.writeTextFile(joinPath(tree, "top.txt"), "top");
      await fs.remove(joinPath(tree, "top.txt"));
      assert.equal(await fs.exists(joinPath(tree, "top.txt")), false);
      assert.equal(await fs.exists(joinPath(tree, "x/y/leaf.txt")), true);
      await fs.remove(tree);
      assert.equal(await fs.exists(tree), false);
      await fs.remove(tree);
    });

    test("chmod sets permission bits; a missing file is E_RUNTIME_NOT_FOUND", async () => {
      assert.ok(fs.chmod, "Deno and Bun hosts have chmod");
      const path = joinPath(dir, "secret.txt");
      await fs.writeTextFile(path, "s");
      await fs.chmod(path, 0o600);
      const { statSync } = await import("node:fs");
      assert.equal(statSync(path).mode & 0o777, 0o600);
      await fs.chmod(path, 0o644);
      assert.equal(statSync(path).mode & 0o777, 0o644);
      await assert.rejects(fs.chmod(joinPath(dir, "nope.txt"), 0o600), (e: unknown) => KeelError.is(e, "E_RUNTIME_NOT_FOUND"));
    });

    test("rename moves a file, replacing the target; a missing source is E_RUNTIME_NOT_FOUND", async () => {
      const from = joinPath(dir, "rename-from.txt");
      const to = joinPath(dir, "rename-to.txt");
      await fs.writeTextFile(from, "new");
      await fs.writeTextFile(to, "old");
      await fs.rename(from, to);
      assert.equal(await fs.exists(from), false);
      assert.equal(await fs.readTextFile(to), "new");
      await assert.rejects(fs.rename(from, to), (e: unknown) => KeelError.is(e, "E_RUNTIME_NOT_FOUND"));
    });

    test("stat describes files and directories", async () => {
      const file = joinPath(dir, "stat.txt");
      await fs.writeTextFile(file, "12345");
      const info = await fs.stat(file);
      assert.equal(info.isFile, true);
      assert.equal(info.isDirectory, false);
      assert.equal(info.isSymlink, false);
      assert.equal(info.size, 5);
      assert.equal(typeof info.mtimeMs, "number");
      assert.ok((info.mtimeMs ?? 0) > Date.UTC(2020, 0, 1));
      const dirInfo = await fs.stat(dir);
      assert.equal(dirInfo.isDirectory, true);
      assert.equal(dirInfo.isFile, false);
    });

    test("exists tells files and directories from missing paths", async () => {
      const file = joinPath(dir, "exists.txt");
      await fs.writeTextFile(file, "");
      assert.equal(await fs.exists(file), true);
      assert.equal(await fs.exists(dir), true);
      assert.equal(await fs.exists(joinPath(dir, "nope.txt")), false);
      assert.equal(await fs.exists(joinPath(file, "below-a-file")), false);
    });

    test("makeTempDir makes a fresh, empty, absolute directory with the prefix", async () => {
      const a = await fs.makeTempDir("keel-prefix-");
      const b = await fs.makeTempDir("keel-prefix-");
      try {
        assert.notEqual(a, b);
        for (const made of [a, b]) {
          assert.ok(isAbsolutePath(made), made);
          assert.ok((made.split("/").pop() ?? "").startsWith("keel-prefix-"), made);
          assert.equal((await fs.stat(made)).isDirectory, true);
          assert.deepEqual(await fs.readDir(made), []);
        }
        const plain = await fs.makeTempDir();
        assert.equal((await fs.stat(plain)).isDirectory, true);
        await fs.remove(plain);
      } finally {
        await fs.remove(a);
        await fs.remove(b);
      }
    });

    test("a relative path is taken from cwd", async () => {
      const file = joinPath(dir, "relative.txt");
      await fs.writeTextFile(file, "found by a relative path");
      const depth = runtime.cwd().split("/").filter((part) => part !== "").length;
      const relative = "../".repeat(depth) + file.slice(1);
      assert.equal(await fs.readTextFile(relative), "found by a relative path");
    });

    test("a missing path raises E_RUNTIME_NOT_FOUND", async () => {
      const missing = joinPath(dir, "missing/file.txt");
      await assert.rejects(fs.readFile(missing), isNotFound);
      await assert.rejects(fs.readTextFile(missing), isNotFound);
      await assert.rejects(fs.readDir(missing), isNotFound);
      await assert.rejects(fs.stat(missing), isNotFound);
      await assert.rejects(fs.lstat(missing), isNotFound);
      await assert.rejects(fs.realPath(missing), isNotFound);
      await assert.rejects(fs.writeTextFile(missing, "x"), isNotFound);
      await assert.rejects(fs.writeFile(missing, new Uint8Array([1])), isNotFound);
      await assert.rejects(fs.appendTextFile(missing, "x"), isNotFound);
      await assert.rejects(fs.readTextFile(missing), (e: unknown) => {
        assert.ok(KeelError.is(e));
        assert.ok(e.message.includes(`"${missing}"`), e.message);
        assert.match(e.message, /^[A-Z]/);
        assert.doesNotMatch(e.message, /\.$/);
        return true;
      });
      assert.equal(await fs.exists(joinPath(dir, "missing")), false);
    });

    if (runtime.processes !== undefined) {
      const processes = runtime.processes;
      describe("symlinks", () => {
        let target = "";
        let link = "";
        before(async () => {
          target = joinPath(dir, "real-dir");
          link = joinPath(dir, "link-dir");
          await fs.mkdir(target);
          await fs.writeTextFile(joinPath(target, "inside.txt"), "through the link");
          // The port has no symlink call; `ln` makes one the same way on every POSIX host.
          const made = await processes.run("ln", { args: ["-s", target, link] });
          assert.equal(made.code, 0, made.stderr);
        });

        test("stat follows a symlink; lstat does not", async () => {
          const followed = await fs.stat(link);
          assert.equal(followed.isDirectory, true);
          assert.equal(followed.isSymlink, false);
          const own = await fs.lstat(link);
          assert.equal(own.isSymlink, true);
          assert.equal(own.isDirectory, false);
          assert.equal((await fs.lstat(target)).isSymlink, false);
        });

        test("readDir reports a symlink entry", async () => {
          const entry = (await fs.readDir(dir)).find((e) => e.name === "link-dir");
          assert.deepEqual(entry, {
            name: "link-dir",
            isFile: false,
            isDirectory: false,
            isSymlink: true,
          });
        });

        test("realPath resolves every symlink", async () => {
          const real = await fs.realPath(joinPath(link, "inside.txt"));
          assert.equal(real, joinPath(await fs.realPath(target), "inside.txt"));
          assert.equal((await fs.lstat(real)).isSymlink, false);
          assert.equal(await fs.readTextFile(real), "through the link");
          assert.equal(await fs.readTextFile(joinPath(link, "inside.txt")), "through the link");
        });

        test("a dangling symlink does not exist, and remove deletes the link only", async () => {
          const dangling = joinPath(dir, "dangling");
          const made = await processes.run("ln", {
            args: ["-s", joinPath(dir, "no-such-target"), dangling],
          });
          assert.equal(made.code, 0, made.stderr);
          assert.equal(await fs.exists(dangling), false);
          assert.equal((await fs.lstat(dangling)).isSymlink, true);
          await assert.rejects(fs.stat(dangling), isNotFound);
          await fs.remove(dangling);
          await assert.rejects(fs.lstat(dangling), isNotFound);
          const linkToRemove = joinPath(dir, "link-to-remove");
          const again = await processes.run("ln", { args: ["-s", target, linkToRemove] });
          assert.equal(again.code, 0, again.stderr);
          await fs.remove(linkToRemove);
          assert.equal(await fs.readTextFile(joinPath(target, "inside.txt")), "through the link");
        });
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------

async function readAll(stream: ReadableStream<Uint8Array> | null): Promise<string> {
  assert.ok(stream !== null, "expected a piped stream");
  return await new Response(stream).text();
}

function describeProcesses(
  runtime: Runtime,
  processes: RuntimeProcesses,
  root: () => string,
): void {
  describe("processes", () => {
    test("spawn pipes stdin to stdout (cat)", async () => {
      const child = processes.spawn("cat", { stdin: "piped", stdout: "piped", stderr: "null" });
      assert.ok(Number.isInteger(child.pid) && child.pid > 0);
      assert.equal(child.stderr, null);
      assert.ok(child.stdin !== null);
      const output = readAll(child.stdout);
      const writer = child.stdin.getWriter();
      await writer.write(encoder.encode("hello, "));
      await writer.write(encoder.encode("cat ✓\n"));
      await writer.close();
      assert.equal(await output, "hello, cat ✓\n");
      assert.deepEqual(await child.status, { success: true, code: 0, signal: null });
    });

    test("pid is this process: a child sees it as its parent", async () => {
      if (runtime.pid === undefined) return; // optional: an edge host has no process id
      const out = await processes.run("sh", { args: ["-c", "echo $PPID"], stdin: "null" });
      assert.equal(Number(out.stdout.trim()), runtime.pid);
    });

    test("streams that are not piped are null", async () => {
      const child = processes.spawn("true", { stdin: "null", stdout: "null", stderr: "null" });
      assert.equal(child.stdin, null);
      assert.equal(child.stdout, null);
      assert.equal(child.stderr, null);
      assert.deepEqual(await child.status, { success: true, code: 0, signal: null });
    });

    test("status reports the exit code", async () => {
      const child = processes.spawn("sh", { args: ["-c", "exit 3"], stdin: "null" });
      assert.deepEqual(await child.status, { success: false, code: 3, signal: null });
    });

    test("run collects stdout, stderr and the exit code", async () => {
      const out = await processes.run("sh", { args: ["-c", "echo out; echo err >&2; exit 7"] });
      assert.deepEqual(out, {
        success: false,
        code: 7,
        signal: null,
        stdout: "out\n",
        stderr: "err\n",
      });
      const ok = await processes.run("sh", {
        args: ["-c", "printf '%s|' \"$@\"", "sh", "a b", "", "c"],
      });
      assert.deepEqual(ok, { success: true, code: 0, signal: null, stdout: "a b||c|", stderr: "" });
    });

    test("kill with SIGKILL ends the process with that signal", async () => {
      const child = processes.spawn("sleep", { args: ["60"], stdin: "null", stdout: "null" });
      child.kill("SIGKILL");
      const status = await child.status;
      assert.equal(status.signal, "SIGKILL");
      assert.equal(status.success, false);
      child.kill("SIGKILL");
    });

    test("kill defaults to SIGTERM", async () => {
      const child = processes.spawn("sleep", { args: ["60"], stdin: "null", stdout: "null" });
      child.kill();
      const status = await child.status;
      assert.equal(status.signal, "SIGTERM");
      assert.equal(status.success, false);
    });

    test("kill after exit is not an error", async () => {
      const child = processes.spawn("true", { stdin: "null" });
      await child.status;
      child.kill();
      child.kill("SIGKILL");
    });

    test("aborting the signal kills the process with SIGKILL", async () => {
      const controller = new AbortController();
      const child = processes.spawn("sleep", {
        args: ["60"],
        stdin: "null",
        signal: controller.signal,
      });
      controller.abort();
      const status = await child.status;
      assert.equal(status.signal, "SIGKILL");
      assert.equal(status.success, false);
    });

    test("run with an aborted signal ends with SIGKILL", async () => {
      const controller = new AbortController();
      const running = processes.run("sleep", { args: ["60"], signal: controller.signal });
      controller.abort();
      const out = await running;
      assert.equal(out.signal, "SIGKILL");
      assert.equal(out.success, false);
      const already = await processes.run("sleep", { args: ["60"], signal: AbortSignal.abort() });
      assert.equal(already.signal, "SIGKILL");
    });

    test("env adds to the parent's environment", async () => {
      const out = await processes.run("sh", {
        args: ["-c", 'printf "%s|%s" "$KEEL_CONFORMANCE_VAR" "$PATH"'],
        env: { KEEL_CONFORMANCE_VAR: "value with spaces" },
      });
      assert.equal(out.stdout, `value with spaces|${runtime.env.get("PATH") ?? ""}`);
    });

    test("clearEnv passes only the given variables", async () => {
      const out = await processes.run("env", { clearEnv: true, env: { KEEL_ONLY: "1" } });
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stdout, "KEEL_ONLY=1\n");
      const empty = await processes.run("env", { clearEnv: true });
      assert.equal(empty.stdout, "");
    });

    test("cwd sets the working directory", async () => {
      const dir = root();
      assert.notEqual(dir, "", "needs fs.makeTempDir");
      const out = await processes.run("sh", { args: ["-c", "pwd -P"], cwd: dir });
      const expected = runtime.fs === undefined ? dir : await runtime.fs.realPath(dir);
      assert.equal(out.stdout, `${expected}\n`);
    });

    test("a missing command raises E_RUNTIME_SPAWN", async () => {
      const missing = "keel-conformance-no-such-command";
      assert.throws(() => processes.spawn(missing, { stdin: "null" }), isSpawnError);
      await assert.rejects(processes.run(missing), (e: unknown) => {
        assert.ok(isSpawnError(e));
        assert.ok((e as Error).message.includes(`"${missing}"`), (e as Error).message);
        return true;
      });
    });

    test("a missing cwd raises E_RUNTIME_SPAWN", () => {
      let child: ChildProcess | undefined;
      assert.throws(() => {
        child = processes.spawn("true", { cwd: joinPath(root(), "no-such-dir"), stdin: "null" });
      }, isSpawnError);
      assert.equal(child, undefined);
    });
  });
}

// ---------------------------------------------------------------------------------------------

type Serve = NonNullable<Runtime["serve"]>;

function describeServe(serve: Serve): void {
  describe("serve", () => {
    let server: Server | undefined;

    before(async () => {
      server = await serve(async (request) => {
        const url = new URL(request.url);
        return Response.json(
          {
            method: request.method,
            path: url.pathname,
            query: url.searchParams.get("q"),
            header: request.headers.get("x-keel"),
            body: await request.text(),
          },
          { status: url.pathname === "/created" ? 201 : 200, headers: { "x-served-by": "keel" } },
        );
      }, { port: 0 });
    });

    after(async () => {
      await server?.close();
    });

    test("binds 127.0.0.1 on a free port and reports its URL", () => {
      assert.ok(server !== undefined);
      assert.equal(server.hostname, "127.0.0.1");
      assert.ok(Number.isInteger(server.port) && server.port > 0 && server.port < 65536);
      assert.equal(server.url, `http://127.0.0.1:${server.port}`);
    });

    test("answers GET with the handler's response", async () => {
      assert.ok(server !== undefined);
      const response = await fetch(`${server.url}/hello?q=42`, { headers: { "x-keel": "yes" } });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("x-served-by"), "keel");
      assert.deepEqual(await response.json(), {
        method: "GET",
        path: "/hello",
        query: "42",
        header: "yes",
        body: "",
      });
    });

    test("passes a POST body and the handler's status through", async () => {
      assert.ok(server !== undefined);
      const response = await fetch(`${server.url}/created`, { method: "POST", body: "payload ✓" });
      assert.equal(response.status, 201);
      const json = await response.json() as { method: string; body: string };
      assert.equal(json.method, "POST");
      assert.equal(json.body, "payload ✓");
    });

    test("close stops the server, and closing twice is fine", async () => {
      const other = await serve(() => new Response("up"));
      assert.equal(other.hostname, "127.0.0.1");
      assert.notEqual(other.port, server?.port);
      await other.close();
      await other.close();
      await assert.rejects(fetch(other.url));
    });

    test("aborting the signal stops the server", async () => {
      const controller = new AbortController();
      const other = await serve(() => new Response("up"), { signal: controller.signal });
      controller.abort();
      await other.close();
      await assert.rejects(fetch(other.url));
    });
  });
}

// ---------------------------------------------------------------------------------------------

type OpenSqlite = NonNullable<Runtime["openSqlite"]>;

function describeSqlite(openSqlite: OpenSqlite, fs: RuntimeFs, root: () => string): void {
  describe("openSqlite", () => {
    let db: SqliteHandle | undefined;
    let file = "";

    before(async () => {
      const dir = joinPath(root(), "sqlite");
      await fs.mkdir(dir);
      file = joinPath(dir, "test.db");
      db = await openSqlite(file);
    });

    after(() => {
      db?.close();
    });

    function handle(): SqliteHandle {
      assert.ok(db !== undefined);
      return db;
    }

    test("exec runs DDL and pragmas, and WAL mode takes effect", async () => {
      const sql = handle();
      sql.exec(`
        PRAGMA journal_mode = WAL;
        CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, data BLOB, big INTEGER);
        CREATE INDEX items_name ON items (name);
      `);
      assert.deepEqual(sql.all("PRAGMA journal_mode"), [{ journal_mode: "wal" }]);
      assert.equal(await fs.exists(file), true);
      sql.run("INSERT INTO items (name) VALUES (?)", ["wal-probe"]);
      assert.equal(await fs.exists(`${file}-wal`), true);
      sql.run("DELETE FROM items");
    });

    test("run inserts with parameters and reports changes and the row id", () => {
      const sql = handle();
      const first = sql.run(
        "INSERT INTO items (id, name, score, data, big) VALUES (?, ?, ?, ?, ?)",
        [
          1,
          "alpha",
          0.5,
          new Uint8Array([0, 1, 2, 255]),
          null,
        ],
      );
      assert.deepEqual(first, { changes: 1, lastInsertRowid: 1 });
      const second = sql.run("INSERT INTO items (name, score) VALUES (?, ?)", ["beta", 2]);
      assert.deepEqual(second, { changes: 1, lastInsertRowid: 2 });
      const updated = sql.run("UPDATE items SET score = score + 1");
      assert.equal(updated.changes, 2);
    });

    test("all returns plain objects keyed by column name", () => {
      const rows = handle().all("SELECT id, name, score, data, big FROM items ORDER BY id");
      assert.deepEqual(rows, [
        { id: 1, name: "alpha", score: 1.5, data: new Uint8Array([0, 1, 2, 255]), big: null },
        { id: 2, name: "beta", score: 3, data: null, big: null },
      ]);
      assert.deepEqual(handle().all("SELECT name FROM items WHERE score > ?", [2]), [{
        name: "beta",
      }]);
      assert.deepEqual(handle().all("SELECT name FROM items WHERE name = ?", ["nobody"]), []);
    });

    test("values returns arrays in column order", () => {
      const rows = handle().values("SELECT id, name FROM items ORDER BY id DESC");
      assert.deepEqual(rows, [[2, "beta"], [1, "alpha"]]);
      assert.deepEqual(handle().values("SELECT count(*), ? FROM items", ["x"]), [[2, "x"]]);
    });

    test("blobs come back as Uint8Array", () => {
      const sql = handle();
      const bytes = new Uint8Array(300).map((_, i) => (i * 7) % 256);
      sql.run("INSERT INTO items (id, name, data) VALUES (?, ?, ?)", [10, "blob", bytes]);
      const [row] = sql.values("SELECT data FROM items WHERE id = ?", [10]);
      const data = row?.[0];
      assert.ok(data instanceof Uint8Array);
      assert.deepEqual(data, bytes);
      const empty = new Uint8Array(0);
      sql.run("INSERT INTO items (id, name, data) VALUES (?, ?, ?)", [11, "empty", empty]);
      assert.equal(sql.all("SELECT typeof(data) AS t FROM items WHERE id = 11")[0]?.t, "blob");
    });

    test("integers are numbers when safe and bigints beyond 2^53", () => {
      const sql = handle();
      const huge = 2n ** 62n + 1n;
      sql.run("INSERT INTO items (id, name, big) VALUES (?, ?, ?)", [20, "big", huge]);
      sql.run("INSERT INTO items (id, name, big) VALUES (?, ?, ?)", [21, "bigint-param", 12n]);
      assert.deepEqual(sql.all("SELECT big FROM items WHERE id IN (20, 21) ORDER BY id"), [
        { big: huge },
        { big: 12 },
      ]);
      assert.deepEqual(sql.values("SELECT -big FROM items WHERE id = 20"), [[-huge]]);
    });

    test("a bad statement throws, and the connection stays usable", () => {
      const sql = handle();
      assert.throws(() => sql.all("SELECT * FROM no_such_table"), /no_such_table/);
      assert.throws(() =>
        sql.run("INSERT INTO items (id, name) VALUES (?, ?)", [1, "duplicate id"])
      );
      assert.deepEqual(sql.values("SELECT name FROM items WHERE id = 1"), [["alpha"]]);
    });

    test("opening a database in a missing directory rejects", async () => {
      await assert.rejects(openSqlite(joinPath(root(), "no-such-dir/test.db")));
    });

    test("closed data persists and can be opened again", async () => {
      const path = joinPath(root(), "sqlite/reopen.db");
      const first = await openSqlite(path);
      first.exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)");
      first.run("INSERT INTO kv VALUES (?, ?)", ["answer", "42"]);
      first.close();
      assert.throws(() => first.all("SELECT * FROM kv"));
      const second = await openSqlite(path);
      try {
        assert.deepEqual(second.all("SELECT k, v FROM kv"), [{ k: "answer", v: "42" }]);
      } finally {
        second.close();
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------

type CreateWorker = NonNullable<Runtime["createWorker"]>;

function describeWorker(createWorker: CreateWorker, fs: RuntimeFs, root: () => string): void {
  describe("createWorker", () => {
    test("starts a module worker that answers messages", async () => {
      const dir = joinPath(root(), "worker");
      await fs.mkdir(dir);
      // A static import proves the worker runs as a module, not a classic script.
      await fs.writeTextFile(joinPath(dir, "suffix.js"), 'export const suffix = "!";\n');
      await fs.writeTextFile(
        joinPath(dir, "echo.js"),
        'import { suffix } from "./suffix.js";\n' +
          "self.onmessage = (event) => self.postMessage({ echo: event.data.text + suffix, n: event.data.n * 2 });\n",
      );
      const worker = createWorker(new URL(toFileUrl(joinPath(dir, "echo.js"))), { name: "echo" });
      try {
        const reply = new Promise<unknown>((resolve, reject) => {
          worker.onmessage = (event: MessageEvent) => resolve(event.data);
          worker.onerror = (event: ErrorEvent) => {
            event.preventDefault();
            reject(new Error(event.message));
          };
        });
        worker.postMessage({ text: "ping", n: 21 });
        assert.deepEqual(await reply, { echo: "ping!", n: 42 });
      } finally {
        worker.terminate();
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------

type DenoPath = NonNullable<Runtime["denoPath"]>;

function describeDenoPath(runtime: Runtime, denoPath: DenoPath): void {
  describe("denoPath", () => {
    test("returns an existing absolute executable", async () => {
      const path = denoPath();
      assert.ok(isAbsolutePath(path), path);
      if (runtime.fs !== undefined) {
        assert.equal((await runtime.fs.stat(path)).isFile, true);
      }
    });

    if (runtime.processes !== undefined) {
      const processes = runtime.processes;
      test("runs deno --version", async () => {
        const out = await processes.run(denoPath(), { args: ["--version"] });
        assert.equal(out.code, 0, out.stderr);
        assert.match(out.stdout, /^deno \d+\.\d+\.\d+/);
      });
    }
  });
}
