import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { KeelError } from "../errors.ts";
import { parseWorkflow } from "./parse.ts";
import { assertValidWorkflow, type ProtocolInfo, validateWorkflow } from "./validate.ts";
import { substitute } from "./substitute.ts";

const COMPAT = new URL("../../../shared/compat/gleitzeit/workflows/", import.meta.url);

async function compatFiles(): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(COMPAT, { withFileTypes: true })) {
    if (e.isFile() && e.name.endsWith(".yaml")) out.push(e.name);
    else if (e.isDirectory()) {
      for (const f of await readdir(new URL(`${e.name}/`, COMPAT))) if (f.endsWith(".yaml")) out.push(`${e.name}/${f}`);
    }
  }
  return out.sort();
}

const BASE: Record<string, ProtocolInfo> = { "python/v1": { methods: ["python/execute"] }, "mcp/v1": { methods: ["mcp/tool.*"] } };

function codeOf(fn: () => unknown): KeelError {
  try {
    fn();
  } catch (e) {
    if (KeelError.is(e)) return e;
    throw e;
  }
  assert.fail("expected a KeelError");
}

describe("Gleitzeit compat workflows", () => {
  test("every file parses (but the other-schema one) and validates against python/v1 + mcp/v1", async () => {
    const files = await compatFiles();
    assert.ok(files.length >= 25);
    const valid = ["batch_python_workflow.yaml", "mcp_workflow.yaml", "python_only_workflow.yaml", "simple_mcp_workflow.yaml", "simple_python_workflow.yaml", "test_complex_python.yaml", "test_context_workflow.yaml"];
    for (const f of files) {
      const text = await readFile(new URL(f, COMPAT), "utf8");
      if (f === "feature-branch/test_workflow.yaml") {
        const e = codeOf(() => parseWorkflow(text, { source: f }));
        assert.equal(e.code, "E_WORKFLOW_INVALID");
        assert.match(e.message, /depends_on.*rename it to "dependencies"/);
        assert.match(e.message, /has type "llm"/);
        continue;
      }
      const def = parseWorkflow(text, { source: f });
      const problems = validateWorkflow(def, { protocols: (p) => BASE[p] });
      if (valid.includes(f)) {
        assert.deepEqual(problems.map((p) => p.message), [], f);
      } else if (f === "tests/mcp_test_workflow.yaml") {
        assert.deepEqual(problems.map((p) => [p.code, p.details?.task]), [
          ["E_WORKFLOW_UNKNOWN_METHOD", "health_check"],
          ["E_WORKFLOW_UNKNOWN_METHOD", "discover_tools"],
          ["E_WORKFLOW_UNKNOWN_METHOD", "server_info"],
        ]);
      } else {
        assert.ok(problems.length > 0, f);
        for (const p of problems) {
          assert.equal(p.code, "E_WORKFLOW_UNKNOWN_PROTOCOL", `${f}: ${p.message}`);
          assert.match(p.message, /no provider for (llm|echo)\/v1/);
        }
      }
      // With every protocol provided, only the unknown mcp methods remain: references and graphs are fine.
      const all = validateWorkflow(def, { protocols: (p) => BASE[p] ?? { methods: ["*"] } });
      if (f !== "tests/mcp_test_workflow.yaml") assert.deepEqual(all.map((p) => p.message), [], f);
    }
  });

  test("fields map as Gleitzeit means them", async () => {
    const read = async (f: string) => parseWorkflow(await readFile(new URL(f, COMPAT), "utf8"), { source: f });
    const mcp = await read("simple_mcp_workflow.yaml");
    const product = mcp.tasks.find((t) => t.id === "calculate_product")!;
    assert.equal(product.protocol, "mcp/v1");
    assert.equal(product.method, "mcp/tool.multiply");
    assert.deepEqual(product.params, { a: "${calculate_sum.result}", b: 2 });
    assert.equal(product.name, "Multiply Numbers");
    const py = await read("python_only_workflow.yaml");
    assert.equal(py.timeoutMs, 30_000);
    assert.deepEqual(py.tasks.map((t) => t.priority), [3, 2, 1]);
    const byName = await read("tests/test_cli_workflow.yaml");
    assert.deepEqual(byName.tasks.map((t) => [t.id, t.dependencies]), [["generate_number", []], ["double_number", ["generate_number"]]]);
    const retry = (await read("tests/llm_test.yaml")).tasks[0]!.retry!;
    assert.equal(retry.maxAttempts, 2);
    assert.equal(retry.delayMs, 5000);
    const batch = await read("batch_python_workflow.yaml");
    assert.equal(batch.tasks.length, 1);
    const b = batch.tasks[0]!;
    assert.deepEqual([b.id, b.protocol, b.method, b.batch?.directory, b.batch?.pattern], ["batch", "python/v1", "python/execute", "examples/documents", "*.txt"]);
    assert.equal(b.params.file, "examples/scripts/read_text_file.py");
  });
});

describe("parseWorkflow: bad input", () => {
  test("malformed YAML is E_WORKFLOW_PARSE with line and column", () => {
    const e = codeOf(() => parseWorkflow("name: x\ntasks:\n  - id: a\n    method: [unclosed\n", { source: "bad.yaml" }));
    assert.equal(e.code, "E_WORKFLOW_PARSE");
    assert.equal(typeof e.details?.line, "number");
    assert.equal(typeof e.details?.column, "number");
    assert.match(e.message, /bad\.yaml.*line \d+, column \d+/);
  });

  test("malformed JSON is E_WORKFLOW_PARSE with line and column", () => {
    const e = codeOf(() => parseWorkflow('{\n  "name": "x",\n  "tasks": [\n    { "id": "a", }\n  ]\n', { source: "bad.json" }));
    assert.equal(e.code, "E_WORKFLOW_PARSE");
    assert.equal(typeof e.details?.line, "number");
  });

  test("JSON workflows parse", () => {
    const def = parseWorkflow(JSON.stringify({ name: "j", tasks: [{ id: "a", method: "mcp/tool.echo", params: { m: 1 } }] }), { format: "json" });
    assert.equal(def.tasks[0]?.protocol, "mcp/v1");
  });

  test("wrong field types are all reported at once, naming task and field", () => {
    const e = codeOf(() =>
      parseWorkflow(`
name: bad
tasks:
  - id: a
    method: 42
    dependencies: "b"
    timeout: "soon"
    params: [1, 2]
  - id: b
    method: mcp/tool.echo
    retry: { max_attempts: 0, backoff: sideways }
    priority: whenever
    continue_on_error: "yes"
  - method: mcp/tool.echo
`)
    );
    assert.equal(e.code, "E_WORKFLOW_INVALID");
    const problems = e.details?.problems as { task?: string; field: string }[];
    assert.deepEqual(problems.map((p) => `${p.task}.${p.field}`), [
      "a.method",
      "a.params",
      "a.timeout",
      "b.priority",
      "b.continue_on_error",
      "b.retry.max_attempts",
      "b.retry.backoff",
      "#3.id",
    ]);
  });

  test("a workflow without tasks, or not a mapping, is invalid", () => {
    assert.equal(codeOf(() => parseWorkflow("name: x\n")).code, "E_WORKFLOW_INVALID");
    assert.equal(codeOf(() => parseWorkflow("name: x\ntasks: []\n")).code, "E_WORKFLOW_INVALID");
    assert.equal(codeOf(() => parseWorkflow("- 1\n- 2\n")).code, "E_WORKFLOW_INVALID");
  });

  test("retry fields: backoff, delays in seconds, jitter, codes", () => {
    const def = parseWorkflow(`
tasks:
  - id: a
    method: x/y
    retry: { max_attempts: 5, backoff: linear, initial_delay: 0.5, max_delay: 2, jitter: 0.2, retry_on: [E_TASK_TIMEOUT], non_retryable: [E_X] }
`);
    assert.deepEqual(def.tasks[0]?.retry, { maxAttempts: 5, backoff: "linear", delayMs: 500, maxDelayMs: 2000, jitter: 0.2, retryOn: ["E_TASK_TIMEOUT"], nonRetryable: ["E_X"] });
  });
});

describe("validateWorkflow", () => {
  const parse = (tasks: string) => parseWorkflow(`name: v\ntasks:\n${tasks}`);

  test("reports every problem at once, each coded", () => {
    const def = parse(`
  - { id: a, method: mcp/tool.echo }
  - { id: a, method: mcp/tool.echo }
  - { id: b, method: mcp/tool.echo, dependencies: [fetch_dta] }
  - { id: fetch_data, protocol: llm/v1, method: llm/chat }
  - { id: c, protocol: mcp/v1 }
  - { id: d, method: mcp/tool.echo, params: { x: "\${fetch_data.result}" } }
  - { id: e, method: mcp/tool.echo, params: { x: "\${fetch_dat.result}" } }
  - { id: f, method: python/run }
`);
    const problems = validateWorkflow(def, { protocols: (p) => BASE[p] });
    const codes = problems.map((p) => p.code).sort();
    assert.deepEqual(codes, [
      "E_WORKFLOW_BAD_REFERENCE",
      "E_WORKFLOW_BAD_REFERENCE",
      "E_WORKFLOW_DUPLICATE_ID",
      "E_WORKFLOW_INVALID",
      "E_WORKFLOW_UNKNOWN_DEPENDENCY",
      "E_WORKFLOW_UNKNOWN_METHOD",
      "E_WORKFLOW_UNKNOWN_PROTOCOL",
    ]);
    const msg = (code: string) => problems.filter((p) => p.code === code).map((p) => p.message).join("\n");
    assert.match(msg("E_WORKFLOW_UNKNOWN_DEPENDENCY"), /did you mean "fetch_data"/);
    assert.match(msg("E_WORKFLOW_UNKNOWN_PROTOCOL"), /no provider for llm\/v1/);
    assert.match(msg("E_WORKFLOW_INVALID"), /"c" has no method/);
    assert.match(msg("E_WORKFLOW_BAD_REFERENCE"), /"fetch_data" is not among its dependencies/);
    assert.match(msg("E_WORKFLOW_BAD_REFERENCE"), /did you mean "fetch_data"/);
  });

  test("a cycle is reported with its path", async () => {
    const def = parseWorkflow(await readFile(new URL("../../tests/fixtures/workflows/bad-cycle.yaml", import.meta.url), "utf8"));
    const problems = validateWorkflow(def);
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.code, "E_WORKFLOW_CYCLE");
    assert.match(problems[0]!.message, /a -> c -> b -> a/);
  });

  test("references to transitive dependencies are accepted; shell-style ${HOME} is left alone", () => {
    const def = parse(`
  - { id: a, method: x/y }
  - { id: b, method: x/y, dependencies: [a] }
  - { id: c, method: x/y, dependencies: [b], params: { s: "\${a.result} in $\{HOME}" } }
`);
    assert.deepEqual(validateWorkflow(def), []);
  });

  test("assertValidWorkflow throws one E_WORKFLOW_INVALID listing all", () => {
    const def = parse(`
  - { id: a, method: x/y, dependencies: [zz] }
  - { id: b, method: x/y, dependencies: [yy] }
`);
    const e = codeOf(() => assertValidWorkflow(def));
    assert.equal(e.code, "E_WORKFLOW_INVALID");
    assert.equal((e.details?.problems as unknown[]).length, 2);
    assert.match(e.message, /"zz"[\s\S]*"yy"/);
  });

  test("a 10,000-task chain validates", () => {
    const tasks = Array.from({ length: 10_000 }, (_, i) => ({
      id: `t${i}`, protocol: "x/v1", method: "x/y", params: i ? { p: `\${t${i - 1}.result}` } : {}, dependencies: i ? [`t${i - 1}`] : [], priority: 2, continueOnError: false,
    }));
    assert.deepEqual(validateWorkflow({ name: "chain", tasks }), []);
  });
});

describe("substitute", () => {
  const results: Record<string, unknown> = {
    sum: { result: 100 },
    gen: { result: { numbers: [3, 4, 5], count: 3 } },
    flat: { numbers: [1, 2], label: "L" },
    echo: { response: "hi" },
    "first-echo": { result: { response: "one" } },
    nul: null,
  };
  const ids = new Set(Object.keys(results).concat(["later"]));
  const lookup = (id: string) => (id in results ? { value: results[id] } : undefined);
  const sub = (v: unknown) => substitute(v, { ids, lookup });

  test("a whole-string reference keeps its type", () => {
    assert.deepEqual(sub({ a: "${sum.result}", l: "${gen.result.numbers}", o: "${gen.result}", c: "${gen.result.count}" }), {
      a: 100,
      l: [3, 4, 5],
      o: { numbers: [3, 4, 5], count: 3 },
      c: 3,
    });
  });

  test("embedded references are stringified; objects as JSON", () => {
    assert.equal(sub("Sum was ${sum.result}, echo ${echo.response}"), "Sum was 100, echo hi");
    assert.equal(sub("nums=${gen.result.numbers}"), "nums=[3,4,5]");
    assert.equal(sub("Previous said: ${first-echo.result.response}"), "Previous said: one");
  });

  test("array indexing and the optional .result segment", () => {
    assert.equal(sub("${gen.result.numbers[1]}"), 4);
    assert.deepEqual(sub("${flat.result.numbers}"), [1, 2]);
    assert.equal(sub("${flat.label}"), "L");
    assert.deepEqual(sub("${flat}"), { numbers: [1, 2], label: "L" });
  });

  test("a null result (a task that failed with continue_on_error) gives null everywhere", () => {
    assert.equal(sub("${nul.result.deep}"), null);
    assert.equal(sub("x=${nul.result}"), "x=null");
  });

  test("unresolvable references are E_WORKFLOW_BAD_REFERENCE, never passed on as text", () => {
    for (const bad of ["${gen.result.missing}", "${gen.result.numbers[9]}", "${later.result}", "${nosuch.result}", "pre ${sum.result.x} post"]) {
      const e = codeOf(() => sub({ p: [bad] }));
      assert.equal(e.code, "E_WORKFLOW_BAD_REFERENCE", bad);
    }
    assert.equal(sub("echo ${HOME}"), "echo ${HOME}");
  });
});
