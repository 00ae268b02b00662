import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKernel, type Executor, type Kernel, type Runtime } from "../../core/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import executorShell, { createShellPlugin, SHELL_EXEC, SHELL_PROTOCOL, type ShellExecResult } from "./mod.ts";
import { isRunning, rejectsWith } from "../../tests/helpers.ts";



const COMMANDS = ["echo", "sh", "cat", "sleep", "pwd", "keel-no-such-program-x"];

describe("executor-shell", () => {
  let runtime: Runtime;
  let kernel: Kernel;
  let executor: Executor;
  let temp: string;

  const exec = (params: Record<string, unknown>, signal?: AbortSignal): Promise<ShellExecResult> =>
    executor.execute({ method: SHELL_EXEC, params, ...(signal ? { signal } : {}) }) as Promise<ShellExecResult>;

  before(async () => {
    runtime = await detectRuntime();
    kernel = await createKernel({
      runtime,
      plugins: [createShellPlugin({ commands: COMMANDS })],
      grants: { "executor-shell": COMMANDS.map((c) => `run:${c}`) },
    });
    executor = await kernel.resolveExecutor(SHELL_PROTOCOL);
    temp = await mkdtemp(join(tmpdir(), "keel-shell-"));
  });
  after(async () => {
    await kernel.dispose();
    await rm(temp, { recursive: true, force: true });
  });

  test("exposes shell/exec", () => {
    assert.equal(executor.protocol, "shell/v1");
    assert.deepEqual([...executor.methods], ["shell/exec"]);
  });

  test("runs a program directly with its args and returns stdout, stderr and code", async () => {
    const result = await exec({ command: "echo", args: ["hello", "$HOME", "*"] });
    // No shell: "$HOME" and "*" arrive as they are.
    assert.deepEqual(result, { stdout: "hello $HOME *\n", stderr: "", code: 0 });
  });

  test("a shell only when asked for, with env, cwd and stdin", async () => {
    const result = await exec({
      command: "sh",
      args: ["-c", 'read line; echo "$line $GREETING"; pwd; echo oops >&2'],
      env: { GREETING: "world" },
      cwd: temp,
      stdin: "hello\n",
    });
    const [first, where] = result.stdout.trimEnd().split("\n");
    assert.equal(first, "hello world");
    assert.equal(await realpath(where!), await realpath(temp));
    assert.equal(result.stderr, "oops\n");
    assert.equal(result.code, 0);
  });

  test("stdin is empty without the param", async () => {
    const result = await exec({ command: "cat" });
    assert.equal(result.stdout, "");
  });

  test("a non-zero exit is E_SHELL_FAILED with the code and stderr tail", async () => {
    const e = await rejectsWith(
      exec({ command: "sh", args: ["-c", "echo first >&2; echo broken pipe >&2; exit 3"] }),
      "E_SHELL_FAILED",
      /exited with code 3: first \| broken pipe/,
    );
    assert.equal(e.details?.exitCode, 3);
    assert.equal(e.details?.stderr, "first\nbroken pipe\n");
  });

  test("allow_failure returns the result of a non-zero exit", async () => {
    const result = await exec({ command: "sh", args: ["-c", "echo out; exit 7"], allow_failure: true });
    assert.deepEqual(result, { stdout: "out\n", stderr: "", code: 7 });
  });

  test("a timeout kills the process and is E_TASK_TIMEOUT", async () => {
    const e = await rejectsWith(exec({ command: "sleep", args: ["30"], timeout: 0.2 }), "E_TASK_TIMEOUT", /within 200 ms/);
    const pid = e.details?.pid as number;
    assert.equal(typeof pid, "number");
    assert.equal(isRunning(pid), false);
  });

  test("aborting the request kills the process", async () => {
    const controller = new AbortController();
    const work = exec({ command: "sleep", args: ["30"] }, controller.signal);
    setTimeout(() => controller.abort(), 100);
    const e = await rejectsWith(work, "E_RUN_INTERRUPTED", /cancelled/);
    assert.equal(isRunning(e.details?.pid as number), false);
  });

  test("a TimeoutError abort reason is E_TASK_TIMEOUT", async () => {
    await rejectsWith(exec({ command: "sleep", args: ["30"] }, AbortSignal.timeout(100)), "E_TASK_TIMEOUT");
  });

  test("a missing program is E_RUNTIME_SPAWN", async () => {
    await rejectsWith(exec({ command: "keel-no-such-program-x" }), "E_RUNTIME_SPAWN", /keel-no-such-program-x/);
  });

  test("a program outside the grant is E_CAPABILITY_DENIED", async () => {
    await rejectsWith(exec({ command: "ls" }), "E_CAPABILITY_DENIED", /run:ls/);
  });

  test("bad params are TypeErrors, an unknown method a RangeError", async () => {
    await assert.rejects(exec({ command: "" }), TypeError);
    await assert.rejects(exec({ command: "echo", args: [1] }), TypeError);
    await assert.rejects(exec({ command: "echo", timeout: -1 }), RangeError);
    await assert.rejects(executor.execute({ method: "shell/run", params: {} }), RangeError);
  });

  test("an ungranted command is refused at boot", async () => {
    await rejectsWith(
      createKernel({
        runtime,
        plugins: [createShellPlugin({ commands: ["echo", "rm"] })],
        grants: { "executor-shell": ["run:echo"] },
      }),
      "E_CAPABILITY_DENIED",
      /run:rm/,
    );
  });

  test("the default export asks for run, any program", async () => {
    assert.deepEqual(executorShell.capabilities, ["run"]);
    await rejectsWith(
      createKernel({ runtime, plugins: [executorShell], grants: { "executor-shell": ["run:echo"] } }),
      "E_CAPABILITY_DENIED",
    );
    const k = await createKernel({ runtime, plugins: [executorShell], grants: { "executor-shell": ["run"] } });
    try {
      const ex = await k.resolveExecutor(SHELL_PROTOCOL);
      const result = await ex.execute({ method: SHELL_EXEC, params: { command: "echo", args: ["ok"] } });
      assert.deepEqual(result, { stdout: "ok\n", stderr: "", code: 0 });
    } finally {
      await k.dispose();
    }
  });
});

async function realpath(path: string): Promise<string> {
  const { realpath } = await import("node:fs/promises");
  return await realpath(path);
}
