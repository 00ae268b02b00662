/**
 * A short narrated tour of Keel (`npm run demo`, or `bun examples/tour.ts`):
 * 1. boot a kernel with two in-process plugins and list them;
 * 2. try to load a plugin that asks for network access without the grant, and see the refusal;
 * 3. load a plugin isolated in its own Deno subprocess and call its hook;
 * 4. run a script through `script/v1`, with the run hooks around it;
 * 5. sweep the same script over three configs, two at a time, in Web Workers;
 * 6. run a workflow;
 * 7. code mode: run model-written code in a no-permission sandbox whose only way out is the
 *    kernel's tools, and watch it refuse a file read and stop an endless loop;
 * 8. the registry: start one, publish a plugin to it, install it with `keel add`'s checks
 *    (integrity, signature, capability approval) and load it from keel.lock, isolated;
 * 9. training: an MLP on real MNIST digits with the trainer plugin (WebGPU when an adapter
 *    exists, else the CPU), metrics computed on the device, console progress and early stopping,
 *    then the model exported to ONNX and checked against onnxruntime-web;
 * 10. shut everything down.
 * @module
 */

import process from "node:process";
import { createConsolePlugin } from "../plugins/console/mod.ts";
import { createEarlyStoppingPlugin } from "../plugins/early-stopping/mod.ts";
import metrics from "../plugins/metrics/mod.ts";
import { createOnnxSession, exportOnnx } from "../plugins/onnx/mod.ts";
import { adam, createTrainerPlugin, dense, dropout, loadMnist, relu, selectBackend, sequential, trainerService } from "../plugins/trainer/mod.ts";
import { createConsola } from "consola";
import {
  createKernel,
  fromFileUrl,
  generateDeclarations,
  grid,
  joinPath,
  KeelError,
  type Kernel,
  type LogFields,
  type Logger,
  type PluginManifest,
  sweep,
} from "../mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { createRegistryClient, publishDocument } from "../registry/client.ts";
import { addPlugin, lockedPluginEntries } from "../registry/install.ts";
import { issueToken, openRegistry, packTarball } from "../registry/mod.ts";
import executorScript from "../plugins/executor-script/mod.ts";
import executorMcp from "../plugins/executor-mcp/mod.ts";
import sandbox from "../plugins/sandbox/mod.ts";
import { add, weather, whoami } from "./code-mode/tools.ts";
import helloPlugin, { HelloService } from "./hello/hello-plugin.ts";
import netPlugin from "./hello/net-plugin.ts";

// Fixed settings, so the tour prints the same in a terminal, a pipe, CI or a test run.
const consola = createConsola({ level: 3, fancy: process.stdout.isTTY === true });
const here = (path: string): string => fromFileUrl(new URL(path, import.meta.url));

/** A kernel Logger that prints through consola, tagged with the plugin's name. */
function consolaLogger(fields: LogFields = {}): Logger {
  const out = typeof fields.plugin === "string" ? consola.withTag(fields.plugin) : consola;
  return {
    debug: (message) => out.debug(message),
    info: (message) => out.info(message),
    warn: (message) => out.warn(message),
    error: (message) => out.error(message),
    child: (more) => consolaLogger({ ...fields, ...more }),
  };
}

function listPlugins(kernel: Kernel): void {
  for (const p of kernel.plugins) {
    const caps = p.requested.length ? p.requested.join(", ") : "no capabilities";
    consola.log(
      `  • ${p.name}@${p.version}  ${p.isolated ? "isolated" : "in-process"}  ${caps}  hooks: ${
        p.hooks.join(", ") || "none"
      }`,
    );
  }
}

/** A self-contained plugin package (registry plugins are unpacked on their own, outside this repo). */
const GREETER_FILES = {
  "package.json": JSON.stringify({
    name: "tour-greeter",
    version: "1.0.0",
    description: "Greets from its own Deno subprocess",
    type: "module",
    keel: { entry: "index.js", capabilities: ["env:KEEL_GREETING"], kernel: "^1", runtimes: ["deno", "bun"] },
  }),
  "index.js": `export default {
  name: "tour-greeter", version: "1.0.0", kernel: "^1", capabilities: ["env:KEEL_GREETING"],
  setup(ctx) {
    const greeting = ctx.env.get("KEEL_GREETING") ?? "Hello";
    return { onEvent(e) { if (e.type === "greet") ctx.logger.info(greeting + ", " + e.data.name + ", from process " + Deno.pid); } };
  },
};
`,
  "README.md": "# tour-greeter\n\nGreets from its own Deno subprocess.\n",
};

async function registryTour(runtime: Awaited<ReturnType<typeof detectRuntime>>, logger: Logger): Promise<void> {
  const work = await runtime.fs!.makeTempDir("keel-tour-");
  let registry: Awaited<ReturnType<typeof openRegistry>> | undefined;
  const server = await runtime.serve!((request) => registry ? registry.app.fetch(request) : new Response(null, { status: 503 }), { port: 0 });
  try {
    registry = await openRegistry({ runtime, dir: joinPath(work, "registry"), baseUrl: server.url });
    consola.info(`A registry on ${server.url} (SQLite and tarballs in a temp folder; \`keel registry serve\` does this for real)`);
    const { token } = await issueToken(registry.db, { user: "tour", scope: "publish", now: Date.now() });
    // What `npm publish` and `keel publish` send.
    const doc = await publishDocument(JSON.parse(GREETER_FILES["package.json"]), await packTarball(GREETER_FILES));
    const { integrity } = doc;
    const published = await fetch(server.url + doc.path, {
      method: "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(doc.body),
    });
    consola.success(`Published tour-greeter@1.0.0: HTTP ${published.status}, ${integrity.slice(0, 24)}…, signed by the registry`);
    await published.body?.cancel();

    const project = joinPath(work, "project");
    await runtime.fs!.mkdir(project);
    const client = createRegistryClient({ url: server.url });
    try {
      await addPlugin({ runtime, client, spec: "tour-greeter", dir: project });
    } catch (e) {
      if (!KeelError.is(e, "E_CAPABILITY_DENIED")) throw e;
      consola.warn(`keel add without approval: ${e.code}: ${e.message.split("\n")[0]}`);
    }
    const added = await addPlugin({ runtime, client, spec: "tour-greeter@^1", dir: project, allow: ["env:KEEL_GREETING"] });
    consola.success(`keel add tour-greeter@^1 --allow env:KEEL_GREETING: ${added.status} ${added.version}, integrity and signature checked before unpacking; keel.lock grants ${added.granted.join(", ")}`);

    const { entries, grants } = await lockedPluginEntries(runtime, project);
    const locked = await createKernel({ runtime, logger, plugins: [...entries], grants });
    try {
      listPlugins(locked);
      await locked.emit("greet", { name: "Ada" });
    } finally {
      await locked.dispose();
    }
  } finally {
    await server.close();
    await registry?.close();
    await runtime.fs!.remove(work);
  }
}

async function trainingTour(runtime: Awaited<ReturnType<typeof detectRuntime>>, logger: Logger): Promise<void> {
  const backend = await selectBackend({ backend: "auto", logger });
  consola.info(`Training on ${backend.name}: ${backend.device}${backend.name === "webgpu" ? ` (matmul kernels: ${backend.kernels})` : ""}`);
  const kernel = await createKernel({
    runtime,
    logger,
    plugins: [
      metrics,
      createTrainerPlugin({ use: backend }),
      createConsolePlugin({ write: (text) => runtime.writeStderr(text) }),
      createEarlyStoppingPlugin({ monitor: "val_accuracy", patience: 2, restoreBestWeights: true }),
    ],
  });
  try {
    const { train, test } = await loadMnist({ train: 3000, test: 1000 });
    const model = sequential([dense(784, 128), relu(), dropout(0.1), dense(128, 10)]);
    const trainer = kernel.services.get(trainerService);
    const result = await trainer.fit(model, {
      data: train,
      validation: { fraction: 0.1 },
      loss: "cross-entropy",
      optimizer: adam({ lr: 2e-3 }),
      epochs: 3,
      batchSize: 64,
      metrics: ["accuracy", { name: "f1_score", options: { average: "macro" } }],
      seed: 7,
    });
    const scores = await trainer.evaluate(model, test, { loss: "cross-entropy", metrics: ["accuracy"] });
    consola.success(
      `${result.epochsRun} epochs at ${Math.round(result.samplesPerSecond).toLocaleString("en-US")} samples/s; ` +
        `held-out test accuracy ${(scores["accuracy"]! * 100).toFixed(1)}% on 1,000 digits it never saw`,
    );
    const onnx = exportOnnx(model.spec, await model.getWeights());
    const session = await createOnnxSession(onnx);
    try {
      const rows = 16;
      const x = test.x.subarray(0, rows * 784);
      const ours = await model.predict(x);
      const theirs = await session.run(x, rows);
      const diff = ours.reduce((m, v, i) => Math.max(m, Math.abs(v - theirs[i]!)), 0);
      consola.success(`Exported to ONNX (${onnx.length.toLocaleString("en-US")} bytes); onnxruntime-web agrees on ${rows} digits within ${diff.toExponential(1)}`);
    } finally {
      await session.close();
    }
  } finally {
    await kernel.dispose();
    backend.destroy();
  }
}

async function tour(): Promise<void> {
  const runtime = await detectRuntime();
  const logger = consolaLogger();
  consola.box(`Keel tour on ${runtime.name} ${runtime.version}`);

  consola.start("1. Boot a kernel with executor-script, executor-mcp and the hello plugin (in-process)");
  const kernel = await createKernel({
    runtime,
    logger,
    plugins: [executorScript, executorMcp, helloPlugin, sandbox],
    grants: { sandbox: ["run:deno"] }, // the sandbox starts Keel's Deno, with no permissions
  });
  listPlugins(kernel);

  consola.start('2. Load a plugin that asks for "net:api.example.com:443", without granting it');
  try {
    const refused = await createKernel({ runtime, logger, plugins: [executorScript, netPlugin] });
    await refused.dispose();
    throw new Error("The kernel loaded a plugin whose capability was not granted");
  } catch (e) {
    if (!KeelError.is(e, "E_CAPABILITY_DENIED")) throw e;
    consola.warn(`Refused (${e.code}): ${e.message}`);
  }
  consola.info(
    "Capabilities are denied by default: the host grants each plugin a subset of what it asks for.",
  );

  consola.start(
    "3. Load a plugin isolated, in its own Deno subprocess with permissions from its grant",
  );
  const dir = here("./hello/isolated-plugin/");
  const pkg = JSON.parse(await runtime.fs!.readTextFile(joinPath(dir, "package.json"))) as {
    name: string;
    version: string;
    keel: { entry: string; capabilities: string[]; kernel: string };
  };
  const manifest: PluginManifest = {
    name: pkg.name,
    version: pkg.version,
    kernel: pkg.keel.kernel,
    capabilities: pkg.keel.capabilities,
  };
  const isolated = await createKernel({
    runtime,
    logger,
    plugins: [{ isolate: true, module: joinPath(dir, pkg.keel.entry), manifest }],
    grants: { [pkg.name]: pkg.keel.capabilities },
  });
  try {
    listPlugins(isolated);
    consola.info(`This process is ${process.pid}; the plugin's hook runs in another one:`);
    await isolated.emit("primes", { below: 30 });
  } finally {
    await isolated.dispose();
  }

  consola.start("4. Run examples/hello/hello.ts through script/v1");
  try {
    const file = here("./hello/hello.ts");
    const executor = await kernel.resolveExecutor("script/v1");
    const run = {
      id: crypto.randomUUID(),
      protocol: "script/v1",
      target: file,
      params: { name: "world" },
    };
    await kernel.callHook("beforeRun", run);
    const started = performance.now();
    const value = await executor.execute({
      method: "script/run",
      params: { file, params: run.params, runId: run.id },
    });
    await kernel.callHook("afterRun", run, {
      ok: true,
      value,
      durationMs: performance.now() - started,
    });
    consola.success(`Result: ${JSON.stringify(value)}`);
    consola.info(`The hello service counted ${kernel.services.get(HelloService).runs()} run(s).`);

    consola.start("5. Sweep hello.ts over three configs, two at a time (a fresh module each)");
    const results = await sweep(file, grid({ name: ["Ada", "Grace", "Alan"] }), {
      runtime,
      parallel: 2,
      record: false, // `keel run` records each run under .keel/runs/; the tour leaves no files
    });
    for (const r of results) {
      consola.log(`  • ${JSON.stringify(r.config.params)} -> ${r.ok ? JSON.stringify(r.value) : r.error.code}`);
    }

    consola.start("6. Run a workflow: each task starts as soon as its own dependencies finish");
    const workflow = [
      "name: tour",
      "tasks:",
      "  - { id: sum, method: mcp/tool.add, parameters: { a: 20, b: 22 } }",
      "  - { id: product, method: mcp/tool.multiply, parameters: { a: 6, b: 7 } }",
      "  - id: both",
      "    method: mcp/tool.concat",
      "    dependencies: [sum, product]",
      '    parameters: { strings: ["sum=${sum.result}", "product=${product.result}"], separator: ", " }',
    ].join("\n");
    const handle = await kernel.workflows.run(workflow); // validated first; an in-memory store here
    for await (const event of handle.events) {
      if (event.taskId !== null && event.type !== "task.started") consola.log(`  • ${event.taskId}: ${event.type}`);
    }
    const summary = await handle.done;
    consola.success(`Workflow ${summary.status}: ${JSON.stringify(summary.results.both)}`);

    consola.start("7. Code mode: model-written code whose only way out is the kernel's tools");
    kernel.tools.register(weather);
    kernel.tools.register(add);
    kernel.tools.register(whoami);
    const declarations = generateDeclarations(kernel.tools).trimEnd().split("\n");
    consola.info("A model is prompted with TypeScript declarations of the tools:");
    consola.log(declarations.map((line) => `    ${line}`).join("\n"));
    const fence = "`".repeat(3);
    const modelWrote = [
      `${fence}js`,
      'const cities = ["Oslo", "Lisbon", "Tokyo"];',
      "const reports = await Promise.all(cities.map((city) => tools.weather({ city })));",
      "const total = await tools.add({ numbers: reports.map((r) => r.temperature) });",
      'console.log(`checked ${reports.length} cities`);',
      "return { user: (await tools.whoami({})).userId, warmest: reports.reduce((a, b) => (b.temperature > a.temperature ? b : a)).city, mean: total / reports.length };",
      fence,
    ].join("\n");
    const planned = await kernel.execute(modelWrote, { context: { userId: "ada" } });
    consola.success(
      `Result: ${JSON.stringify(planned.result)} (${planned.toolCalls} tool calls, logs ${JSON.stringify(planned.logs)}, ${planned.sandbox}, ${planned.durationMs.toFixed(1)} ms)`,
    );
    const attacks = [
      ["reads a file", "return await Deno.readTextFile('/etc/passwd')", {}],
      ["calls a tool outside its allow-list", "return await tools.whoami({})", { tools: ["add"] }],
      ["loops forever", "while (true) {}", { timeoutMs: 300 }],
    ] as const;
    for (const [what, code, options] of attacks) {
      const out = await kernel.execute(code, options);
      consola.warn(`Code that ${what}: ${out.error?.code ?? "RAN (unexpected)"}: ${out.error?.message.split("\n")[0] ?? ""}`);
    }
    const after = await kernel.execute("await tools.add({ numbers: [40, 2] })");
    consola.success(`The next execution runs as before: ${JSON.stringify(after.result)}`);

    consola.start("8. The registry: publish a plugin, keel add it, load it from keel.lock");
    await registryTour(runtime, logger);

    consola.start("9. Training: an MLP on real MNIST digits, metrics on the device, ONNX export");
    await trainingTour(runtime, logger);
  } finally {
    consola.start("10. Dispose");
    await kernel.dispose();
  }
  consola.success(
    "Done. Next: ./keel --help, ./keel run examples/hello/hello.ts --set name=Ada, ./keel workflow run examples/workflows/numbers.yaml, ./keel exec examples/code-mode/plan.js --tool examples/code-mode/tools.ts, ./keel train examples/train/mnist.config.ts",
  );
}

await tour();
