import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  createKernel,
  createMemoryLogger,
  type Executor,
  type Kernel,
  type Runtime,
} from "../../core/mod.ts";
import { detectRuntime } from "../../runtimes/mod.ts";
import executorPython, {
  createPythonExecutor,
  PYTHON_DESCRIBE,
  PYTHON_EXECUTE,
  PYTHON_PROTOCOL,
  PYTHON_RUN,
  type PythonExecuteResult,
} from "./mod.ts";
import { isRunning, rejectsWith } from "../../tests/helpers.ts";

const fixture = (name: string): string =>
  fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
/**
 * Gleitzeit's own examples, from the compat material beside the checkout (`../shared/compat`, as
 * in CI), laid out as its workflows expect: run with this as the working directory.
 */
const GLEITZEIT = fileURLToPath(new URL("../../../shared/compat/gleitzeit", import.meta.url));
const DOCUMENTS = ["meeting_notes.txt", "sample_story.txt", "technical_spec.txt"];



describe("executor-python", () => {
  let runtime: Runtime;
  let kernel: Kernel;
  let executor: Executor;
  let temp: string;
  const logger = createMemoryLogger();

  before(async () => {
    runtime = await detectRuntime();
    kernel = await createKernel({
      runtime,
      plugins: [executorPython],
      grants: { "executor-python": ["run:python3"] },
      logger,
    });
    executor = await kernel.resolveExecutor(PYTHON_PROTOCOL);
    temp = await mkdtemp(join(tmpdir(), "keel-python-"));
  });
  after(async () => {
    await kernel.dispose();
    await rm(temp, { recursive: true, force: true });
  });

  const run = (params: Record<string, unknown>, signal?: AbortSignal): Promise<unknown> =>
    executor.execute(
      signal ? { method: PYTHON_RUN, params, signal } : { method: PYTHON_RUN, params },
    );
  const exec = (
    params: Record<string, unknown>,
    signal?: AbortSignal,
  ): Promise<PythonExecuteResult> =>
    executor.execute(
      signal ? { method: PYTHON_EXECUTE, params, signal } : { method: PYTHON_EXECUTE, params },
    ) as Promise<PythonExecuteResult>;
  const gleitzeit = (
    script: string,
    context?: Record<string, unknown>,
  ): Promise<PythonExecuteResult> =>
    exec({
      file: `examples/scripts/${script}`,
      cwd: GLEITZEIT,
      timeout: 30,
      ...(context ? { context } : {}),
    });

  test("answers python/v1 with run, execute and describe", () => {
    assert.equal(executor.protocol, "python/v1");
    assert.deepEqual(
      [...executor.methods].sort(),
      [PYTHON_DESCRIBE, PYTHON_EXECUTE, PYTHON_RUN].sort(),
    );
  });

  test("refuses to boot without the run:python3 grant", async () => {
    await rejectsWith(
      createKernel({ runtime, plugins: [executorPython], grants: {} }),
      "E_CAPABILITY_DENIED",
      /run:python3/,
    );
  });

  describe("python/run", () => {
    test("runs main() with the script's own defaults when nothing is overridden", async () => {
      const result = (await run({ file: fixture("train.py") })) as Record<string, unknown>;
      assert.deepEqual(result, {
        lr: 0.001,
        epochs: 3,
        steps: 30,
        batch: 32,
        width: 64,
        depth: 2,
        layers: [64, 64],
        name: "baseline",
        tags: ["a", "b"],
        options: { dropout: 0.1, shuffle: true },
        seed: null,
        device: "cpu",
        mode: "short",
        warmup: 2,
        lr_history: [0.001, 0.001],
        local_lr: 99,
        class_lr: 0.5,
        lr_type: "float",
        args: [],
        kwargs: {},
      });
    });

    test("injects overrides before the module body runs, so computed globals see them", async () => {
      const result = (await run({ file: fixture("train.py"), globals: { epochs: 20 } })) as Record<
        string,
        unknown
      >;
      assert.equal(result.epochs, 20);
      assert.equal(result.steps, 200);
      assert.equal(result.mode, "long", "an if block at module level sees the computed value");
    });

    test("keeps the override through every kind of module-scope assignment", async () => {
      const result = (await run({
        file: fixture("train.py"),
        globals: {
          batch: 8, // annotated
          width: 16, // one name of a tuple assignment
          device: "tpu", // assigned inside try
          mode: "forced", // assigned in both branches of an if
          warmup: 10, // then `warmup += 1`
          lr: 0.5, // read inside a for loop; also a local and a class attribute elsewhere
          tags: [],
          options: { dropout: 0 },
          seed: 42,
        },
      })) as Record<string, unknown>;
      assert.equal(result.batch, 8);
      assert.equal(result.width, 16);
      assert.equal(result.depth, 2, "the other name of the tuple keeps its default");
      assert.deepEqual(result.layers, [16, 16]);
      assert.equal(result.device, "tpu");
      assert.equal(result.mode, "forced");
      assert.equal(result.warmup, 11, "an augmented assignment applies to the override");
      assert.deepEqual(result.lr_history, [0.5, 0.5]);
      assert.equal(result.local_lr, 99, "a function's local of the same name is not touched");
      assert.equal(result.class_lr, 0.5, "a class attribute of the same name is not touched");
      assert.deepEqual(result.tags, []);
      assert.deepEqual(result.options, { dropout: 0 });
      assert.equal(result.seed, 42);
    });

    test("an integral override of a float default stays a float", async () => {
      const result = (await run({ file: fixture("train.py"), globals: { lr: 1 } })) as Record<
        string,
        unknown
      >;
      assert.equal(result.lr, 1);
      assert.equal(result.lr_type, "float");
    });

    test("overrides names in chained and starred assignments", async () => {
      assert.deepEqual(await run({ file: fixture("chained.py"), globals: { a: 5, rest: [] } }), {
        a: 5,
        b: 1,
        first: 1,
        rest: [],
        c: 6,
      });
      assert.deepEqual(await run({ file: fixture("chained.py") }), {
        a: 1,
        b: 1,
        first: 1,
        rest: [2, 3],
        c: 2,
      });
    });

    test("a global the script never assigns is still defined for it", async () => {
      const result = await run({
        file: fixture("main_guard.py"),
        globals: { extra: 1, factor: 3 },
      });
      assert.deepEqual(result, { value: 63, ran_as: "__main__" });
    });

    test("passes args and kwargs to main()", async () => {
      const result = (await run({
        file: fixture("train.py"),
        args: [1, "two"],
        kwargs: { three: [3] },
      })) as Record<string, unknown>;
      assert.deepEqual(result.args, [1, "two"]);
      assert.deepEqual(result.kwargs, { three: [3] });
    });

    test("calls run() when there is no main(), with args and kwargs", async () => {
      assert.equal(
        await run({ file: fixture("run_entry.py"), args: [1], kwargs: { y: 2, scale: 10 } }),
        1030,
      );
      assert.equal(
        await run({ file: fixture("run_entry.py"), args: [1], globals: { offset: 0 } }),
        2,
      );
    });

    test("calls a named entrypoint", async () => {
      assert.equal(await run({ file: fixture("run_entry.py"), entrypoint: "other" }), "other");
    });

    test("a named entrypoint that does not exist is E_SCRIPT_ENTRYPOINT listing the functions", async () => {
      const e = await rejectsWith(
        run({ file: fixture("run_entry.py"), entrypoint: "train" }),
        "E_SCRIPT_ENTRYPOINT",
        /no function "train".*"other", "run"/,
      );
      assert.deepEqual(e.details?.callables, ["other", "run"]);
    });

    test("args that do not fit the entrypoint are E_CONFIG_INVALID", async () => {
      await rejectsWith(
        run({ file: fixture("run_entry.py"), kwargs: { nope: 1 } }),
        "E_CONFIG_INVALID",
        /does not accept the args and kwargs/,
      );
    });

    test("without main() or run() the main block runs and `result` is the result", async () => {
      assert.deepEqual(await run({ file: fixture("main_guard.py") }), {
        value: 42,
        ran_as: "__main__",
      });
    });

    test("a main block that calls main() does not make main() run twice", async () => {
      assert.deepEqual(await run({ file: fixture("main_and_guard.py") }), { calls: ["keel"] });
    });

    test("a `run` imported from elsewhere is not taken for the entrypoint", async () => {
      assert.equal(await run({ file: fixture("imported_run.py") }), "module result");
    });

    test("runs an async main() to completion", async () => {
      assert.deepEqual(await run({ file: fixture("async_main.py"), kwargs: { n: 7 } }), {
        n: 7,
        async: true,
      });
    });

    test("sys.exit(0) ends the script normally", async () => {
      assert.deepEqual(await run({ file: fixture("exits_zero.py") }), { done: true });
    });

    test("a name Python owns, or that is no identifier, cannot be overridden", async () => {
      await rejectsWith(
        run({ file: fixture("train.py"), globals: { __file__: "x" } }),
        "E_CONFIG_INVALID",
        /"__file__"/,
      );
      await rejectsWith(
        run({ file: fixture("train.py"), globals: { "learning-rate": 1 } }),
        "E_CONFIG_INVALID",
        /not a Python identifier/,
      );
    });

    test("sends the script's output to the logger line by line, without the result frame", async () => {
      const runId = crypto.randomUUID();
      await run({ file: fixture("train.py"), globals: { name: "logged" }, runId });
      const lines = logger.lines.filter((l) => l.fields.run === runId);
      assert.deepEqual(
        lines.map((l) => [l.message, l.fields.stream, l.fields.script]),
        [["training logged for 3 epochs at lr=0.001", "stdout", "train.py"]],
      );
    });

    test("a plain script's stdout and stderr lines reach the logger, the last unterminated one too", async () => {
      const runId = crypto.randomUUID();
      const result = await run({ file: fixture("unicode_out.py"), runId });
      assert.deepEqual(result, { text: "naïve café ☕", emoji: "🎉" });
      const lines = logger.lines.filter((l) => l.fields.run === runId);
      assert.deepEqual(
        lines.map((l) => [l.fields.stream, l.message]).sort(),
        [
          ["stderr", "to stderr ✗"],
          ["stdout", "héllo wörld ✓ 世界 🎉"],
          ["stdout", "no newline at the end"],
        ],
      );
    });

    test("imports modules next to the script; its dataclasses pickle", async () => {
      // Copied to a temp dir: importing the helper may write a __pycache__ next to it.
      const dir = await mkdtemp(join(temp, "sibling-"));
      for (const name of ["uses_sibling.py", "sibling_helper.py"]) {
        await copyFile(fixture(name), join(dir, name));
      }
      assert.deepEqual(await run({ file: join(dir, "uses_sibling.py"), globals: { size: 5 } }), {
        size: 10,
        label: "s",
      });
    });

    test("accepts a file: URL", async () => {
      const result = await run({ file: pathToFileURL(fixture("main_guard.py")).href });
      assert.deepEqual(result, { value: 42, ran_as: "__main__" });
    });
  });

  describe("python/describe", () => {
    test("returns the literal module-level defaults without running the script", async () => {
      assert.deepEqual(
        await executor.execute({ method: PYTHON_DESCRIBE, params: { file: fixture("train.py") } }),
        {
          lr: 0.001,
          epochs: 3,
          batch: 32,
          width: 64,
          depth: 2,
          name: "baseline",
          tags: ["a", "b"],
          options: { dropout: 0.1, shuffle: true },
          seed: null,
          warmup: 1,
          lr_history: [],
        },
      );
    });

    test("does not run the script", async () => {
      // forever.py would never end if it ran; it has no literal defaults either.
      assert.deepEqual(
        await executor.execute({
          method: PYTHON_DESCRIBE,
          params: { file: fixture("forever.py") },
        }),
        {},
      );
    });

    test("a missing script is E_SCRIPT_NOT_FOUND", async () => {
      await rejectsWith(
        executor.execute({ method: PYTHON_DESCRIBE, params: { file: join(temp, "nope.py") } }),
        "E_SCRIPT_NOT_FOUND",
      );
    });
  });

  describe("python/execute (Gleitzeit contract)", () => {
    test("count_words.py: 13 words, 81 characters, and its printed line", async () => {
      const out = await gleitzeit("count_words.py");
      assert.equal(out.success, true);
      const result = out.result as Record<string, unknown>;
      assert.equal(result.word_count, 13);
      assert.equal(result.character_count, 81);
      assert.equal(out.stdout, "Text analysis: 13 words, 81 characters\n");
    });

    test("python_only_workflow: numbers, their sum, and a report", async () => {
      const numbers = (await gleitzeit("generate_numbers.py")).result as {
        numbers: number[];
        count: number;
      };
      assert.equal(numbers.count, 5);
      assert.equal(numbers.numbers.length, 5);
      assert.ok(numbers.numbers.every((n) => Number.isInteger(n) && n >= 1 && n <= 100));

      const sum = (await gleitzeit("calculate_sum.py", { numbers: numbers.numbers }))
        .result as Record<string, number>;
      const total = numbers.numbers.reduce((a, b) => a + b, 0);
      assert.deepEqual(sum, { sum: total, average: total / 5, input_count: 5 });

      // The context python_only_workflow.yaml gives the report task (number_data, sum_data):
      // format_report.py reads "numbers", "sum" and "average", so it reports nothing. That is the
      // script's contract, which the executor passes through unchanged.
      type Report = { report: string; timestamp: string; success: boolean };
      const asGiven = (await gleitzeit("format_report.py", { number_data: numbers, sum_data: sum }))
        .result as Report;
      assert.equal(asGiven.success, true);
      assert.equal(asGiven.report, "Report: 0 numbers []\nSum: 0\nAverage: 0.00");
      assert.ok(!Number.isNaN(Date.parse(asGiven.timestamp)));
      // With the keys format_report.py reads, the report carries the sum and the average.
      const flat = (await gleitzeit("format_report.py", { numbers: numbers.numbers, ...sum }))
        .result as Report;
      assert.match(flat.report, new RegExp(`Sum: ${total}\\n`));
      assert.match(flat.report, new RegExp(`Average: ${(total / 5).toFixed(2)}$`));
    });

    test("calculate_sum.py falls back to its own list without a context", async () => {
      assert.deepEqual((await gleitzeit("calculate_sum.py")).result, {
        sum: 150,
        average: 30,
        input_count: 5,
      });
    });

    test("test_context.py receives the context keys with their types", async () => {
      const context = { numbers: [1, 2, 3], count: 3, test_string: "hello world", test_number: 42 };
      assert.deepEqual((await gleitzeit("test_context.py", context)).result, {
        context_received: true,
        context_keys: ["numbers", "count", "test_string", "test_number"],
        test: "success",
      });
      const echo = await exec({
        code: "result = {k: type(v).__name__ for k, v in context.items()}",
        context,
      });
      assert.deepEqual(echo.result, {
        numbers: "list",
        count: "int",
        test_string: "str",
        test_number: "int",
      });
    });

    test("calculate_stats.py: statistics of a comma-separated string", async () => {
      assert.deepEqual(
        (await gleitzeit("calculate_stats.py", { numbers_str: "10, 20, 30, 40" })).result,
        {
          numbers: [10, 20, 30, 40],
          count: 4,
          mean: 25,
          median: 25,
          standard_deviation: 12.91,
          min: 10,
          max: 40,
        },
      );
    });

    test("process_vision.py: colour and shape words of a description", async () => {
      const description = "A red circle next to a blue square on a white background";
      assert.deepEqual((await gleitzeit("process_vision.py", { description })).result, {
        colors_found: ["red", "blue", "white"],
        shapes_found: ["square", "circle"],
        description_length: description.length,
      });
    });

    test("batch_python_workflow: read_text_file.py for each document", async () => {
      for (const name of DOCUMENTS) {
        const filePath = `examples/documents/${name}`;
        const result = (await gleitzeit("read_text_file.py", { file_path: filePath }))
          .result as Record<
            string,
            unknown
          >;
        const content = await readFile(join(GLEITZEIT, filePath), "utf8");
        assert.equal(result.success, true);
        assert.equal(result.file_path, filePath);
        assert.equal(result.content, content);
        assert.equal(result.char_count, content.length);
        assert.equal(result.word_count, content.split(/\s+/).filter(Boolean).length);
        assert.equal(result.file_size, new TextEncoder().encode(content).length);
      }
    });

    test("runs inline code with its context", async () => {
      const out = await exec({
        code: "print('hi')\nresult = context['x'] * 2",
        context: { x: 21 },
      });
      assert.deepEqual(out, { success: true, result: 42, stdout: "hi\n", stderr: "" });
    });

    test("a script that sets no result resolves with result null", async () => {
      assert.equal((await exec({ code: "x = 1" })).result, null);
    });

    test("returns stdout and stderr exactly, unicode included", async () => {
      const out = await exec({ file: fixture("unicode_out.py") });
      assert.deepEqual(out.result, { text: "naïve café ☕", emoji: "🎉" });
      assert.equal(out.stdout, "héllo wörld ✓ 世界 🎉\nno newline at the end");
      assert.equal(out.stderr, "to stderr ✗\n");
    });

    test("keeps blank lines and a missing final newline as printed", async () => {
      assert.equal((await exec({ code: "print('a')\nprint()\nresult = 1" })).stdout, "a\n\n");
      assert.equal((await exec({ code: "print('a', end='')" })).stdout, "a");
      assert.equal((await exec({ code: "result = 1" })).stdout, "");
    });

    test("a large result arrives whole; a large output keeps its last part", async () => {
      const big = await exec({ code: "result = ['x' * 1000 for _ in range(5000)]" });
      assert.equal((big.result as string[]).length, 5000);
      assert.ok((big.result as string[]).every((s) => s.length === 1000));
      const chatty = await exec({
        code: "for i in range(30000):\n    print('%05d' % i + '.' * 60)\nresult = 'ok'",
      });
      assert.equal(chatty.result, "ok");
      assert.match(chatty.stdout, /^\[\d+ earlier characters dropped\]\n/);
      assert.ok(chatty.stdout.endsWith("29999" + ".".repeat(60) + "\n"));
      assert.ok(chatty.stdout.length <= 1_000_100);
    });

    test("a script printing something like a result frame cannot fake its result", async () => {
      const out = await exec({ file: fixture("spoof.py") });
      assert.equal(out.result, "real");
      assert.match(out.stdout, /"spoofed"/);
      assert.equal(out.stdout.split("\n").length, 2);
    });

    test("tuples, NaN, infinities and number keys become JSON", async () => {
      const out = await exec({ file: fixture("not_json.py"), context: { kind: "floats" } });
      assert.deepEqual(out.result, { nan: null, inf: null, tuple: [1, 2], keys: { "1": "one" } });
    });
  });

  describe("failures", () => {
    test("an exception is E_PYTHON_FAILED with its type, message and frames", async () => {
      const e = await rejectsWith(
        run({ file: fixture("raises.py") }),
        "E_PYTHON_FAILED",
        /raised ValueError: learning rate must be positive, got -1 \(raises\.py:6 in check\)/,
      );
      assert.equal(e.details?.type, "ValueError");
      const frames = e.details?.frames as { file: string; function: string; line: number }[];
      assert.deepEqual(
        frames.map((f) => f.function),
        ["main", "check"],
        "the runner's own frames are left out",
      );
      assert.equal(frames[1]?.file, fixture("raises.py"));
      assert.match(
        String(e.details?.traceback),
        /Traceback[\s\S]*raises\.py", line 6, in check[\s\S]*ValueError/,
      );
    });

    test("an exception in python/execute is a failure too, not a success", async () => {
      await rejectsWith(
        exec({ code: "result = 1\nraise KeyError('k')" }),
        "E_PYTHON_FAILED",
        /KeyError/,
      );
    });

    test("a syntax error is E_PYTHON_FAILED naming the line", async () => {
      const e = await rejectsWith(
        run({ file: fixture("syntax_error.py") }),
        "E_PYTHON_FAILED",
        /SyntaxError/,
      );
      assert.equal((e.details?.syntax as { line: number }).line, 2);
    });

    test("sys.exit(3) is E_PYTHON_FAILED with the exit code", async () => {
      const e = await rejectsWith(
        run({ file: fixture("exits.py") }),
        "E_PYTHON_FAILED",
        /exited with code 3/,
      );
      assert.equal(e.details?.exitCode, 3);
      await rejectsWith(
        exec({ file: fixture("exits.py") }),
        "E_PYTHON_FAILED",
        /exited with code 3/,
      );
      await rejectsWith(
        exec({ code: "import sys\nsys.exit('bye')" }),
        "E_PYTHON_FAILED",
        /code 1: bye/,
      );
    });

    test("a process that dies without reporting is E_PYTHON_FAILED", async () => {
      const e = await rejectsWith(
        exec({ code: "import os, sys\nprint('dying', file=sys.stderr, flush=True)\nos._exit(4)" }),
        "E_PYTHON_FAILED",
        /exited with code 4 before .* reported a result: dying/,
      );
      assert.equal(e.details?.exitCode, 4);
    });

    test("a script that never ends is stopped at its timeout and its process is gone", async () => {
      const pidFile = join(temp, "forever.pid");
      const e = await rejectsWith(
        exec({ file: fixture("forever.py"), context: { pid_file: pidFile }, timeout: 1 }),
        "E_SCRIPT_TIMEOUT",
        /"forever\.py" did not finish within 1 s/,
      );
      const pid = e.details?.pid as number;
      assert.ok(Number.isInteger(pid) && pid > 0);
      assert.equal(isRunning(pid), false);
      // The pid reported is the script's own process (the runner runs the script in-process).
      const written = await readFile(pidFile, "utf8").catch(() => undefined);
      if (written !== undefined) assert.equal(Number(written), pid);
    });

    test("a result reported before the time limit stands when only shutdown overruns it", async () => {
      const code = "import threading, time\n" +
        "threading.Thread(target=lambda: time.sleep(60)).start()\n" +
        "result = 'done'";
      const out = await exec({ code, timeout: 1 });
      assert.equal(out.result, "done");
      assert.ok(
        logger.lines.some((l) => l.level === "warn" && /did not exit within/.test(l.message)),
      );
    });

    test("the executor's timeoutMs applies when the params give none", async () => {
      const quick = createPythonExecutor({ spawn: runtime.processes!.spawn, timeoutMs: 300 });
      await rejectsWith(
        quick.execute({ method: PYTHON_RUN, params: { file: fixture("forever.py") } }),
        "E_SCRIPT_TIMEOUT",
        /within 300 ms/,
      );
    });

    test("aborting the request stops the script", async () => {
      const pidFile = join(temp, "aborted.pid");
      const controller = new AbortController();
      const work = exec(
        { file: fixture("forever.py"), context: { pid_file: pidFile } },
        controller.signal,
      );
      // Abort once the script has started (it writes its pid first).
      for (;;) {
        const text = await readFile(pidFile, "utf8").catch(() => "");
        if (text !== "") break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      controller.abort();
      await rejectsWith(work, "E_RUN_INTERRUPTED");
      assert.equal(isRunning(Number(await readFile(pidFile, "utf8"))), false);
    });

    test("a result that is not JSON is E_SCRIPT_RESULT naming its type", async () => {
      const set = await rejectsWith(
        exec({ file: fixture("not_json.py"), context: { kind: "set" } }),
        "E_SCRIPT_RESULT",
        /result\["bad"\] is a set/,
      );
      assert.equal(set.details?.type, "set");
      const object = await rejectsWith(
        exec({ file: fixture("not_json.py"), context: { kind: "object" } }),
        "E_SCRIPT_RESULT",
        /result\[0\] is a Model/,
      );
      assert.equal(object.details?.type, "Model");
      await rejectsWith(
        exec({ file: fixture("not_json.py"), context: { kind: "cycle" } }),
        "E_SCRIPT_RESULT",
        /cycle/,
      );
      await rejectsWith(
        exec({ code: "result = {'when': __import__('datetime').date(2024, 1, 1)}" }),
        "E_SCRIPT_RESULT",
        /result\["when"\] is a datetime\.date/,
      );
    });

    test("a missing script is E_SCRIPT_NOT_FOUND", async () => {
      const missing = join(temp, "missing.py");
      await rejectsWith(
        run({ file: missing }),
        "E_SCRIPT_NOT_FOUND",
        /missing\.py" does not exist/,
      );
      await rejectsWith(exec({ file: missing }), "E_SCRIPT_NOT_FOUND");
    });

    test("a missing working directory is E_RUNTIME_NOT_FOUND", async () => {
      await rejectsWith(
        exec({ code: "result = 1", cwd: join(temp, "no-such-dir") }),
        "E_RUNTIME_NOT_FOUND",
        /no-such-dir/,
      );
    });

    test("no python interpreter is E_PYTHON_NOT_FOUND", async () => {
      const missing = createPythonExecutor({
        spawn: runtime.processes!.spawn,
        python: "keel-no-such-python3",
      });
      await rejectsWith(
        missing.execute({ method: PYTHON_EXECUTE, params: { code: "result = 1" } }),
        "E_PYTHON_NOT_FOUND",
        /"keel-no-such-python3"/,
      );
    });

    test("bad params are TypeError or RangeError", async () => {
      await assert.rejects(run({}), TypeError);
      await assert.rejects(run({ file: fixture("train.py"), globals: [1] }), TypeError);
      await assert.rejects(run({ file: fixture("train.py"), args: { a: 1 } }), TypeError);
      await assert.rejects(run({ file: fixture("train.py"), kwargs: "x" }), TypeError);
      await assert.rejects(run({ file: fixture("train.py"), entrypoint: "" }), TypeError);
      await assert.rejects(run({ file: "https://example.com/train.py" }), TypeError);
      await assert.rejects(exec({}), /exactly one of "file"/);
      await assert.rejects(exec({ file: fixture("spoof.py"), code: "x" }), TypeError);
      await assert.rejects(exec({ code: "x", context: [1] }), TypeError);
      await assert.rejects(exec({ code: "x", timeout: "5" }), TypeError);
      await assert.rejects(exec({ code: "x", timeout: -1 }), RangeError);
      await assert.rejects(run({ file: fixture("train.py"), globals: { big: 1n } }), TypeError);
      await assert.rejects(executor.execute({ method: "python/eval", params: {} }), RangeError);
    });
  });
});
