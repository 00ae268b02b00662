/**
 * Escape tests: untrusted plugins loaded isolated (`{ isolate: true }`) by a real kernel try
 * every way out of their grant. Each attempt must be refused with a coded error and the secret
 * must never show up in a result, an error or a log line. Positive controls run the same
 * attempts with the grant, so every denial here is the grant's doing and the tests can fail.
 *
 * Runs under `deno test --allow-all` and `bun test`: the host is whichever runtime runs the
 * test; the plugin always runs in a `deno run` subprocess.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import {
  createKernel,
  createMemoryLogger,
  errorMessage,
  KeelError,
  type Kernel,
  type MemoryLogger,
  type PluginManifest,
  type Runtime,
  type Server,
} from "../mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";

const ESCAPER = new URL("./fixtures/escape/escaper.ts", import.meta.url).href;
const BYSTANDER = new URL("./fixtures/escape/bystander.ts", import.meta.url).href;
const SECRET = `keel-secret-${crypto.randomUUID()}`;
const SECRET_ENV = "KEEL_ESCAPE_SECRET";

type Outcome =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly code: string; readonly message: string };

let runtime: Runtime;
let fs: NonNullable<Runtime["fs"]>;
let tmp: string;
let secretDir: string;
let secretFile: string;
let secretJson: string;
let publicDir: string;
let outDir: string;
let server: Server;
let otherPort: number;
const kernels: Kernel[] = [];
const logs: MemoryLogger[] = [];

function escaperManifest(capabilities: readonly string[]): PluginManifest {
  return { name: "escaper", version: "1.0.0", kernel: "^1", capabilities };
}

async function boot(
  capabilities: readonly string[],
  extra: { timeoutMs?: number; memoryMb?: number; bystander?: boolean } = {},
): Promise<Kernel> {
  const logger = createMemoryLogger();
  logs.push(logger);
  const kernel = await createKernel({
    runtime,
    logger,
    plugins: [
      ...(extra.bystander
        ? [{
          isolate: true as const,
          module: BYSTANDER,
          manifest: { name: "bystander", version: "1.0.0", kernel: "^1", enforce: "pre" as const },
        }]
        : []),
      {
        isolate: true,
        module: ESCAPER,
        manifest: escaperManifest(capabilities),
        ...(extra.timeoutMs === undefined ? {} : { timeoutMs: extra.timeoutMs }),
        ...(extra.memoryMb === undefined ? {} : { memoryMb: extra.memoryMb }),
      },
    ],
    grants: { escaper: capabilities },
  });
  kernels.push(kernel);
  return kernel;
}

async function attempt(kernel: Kernel, request: Record<string, unknown>): Promise<Outcome> {
  try {
    return { ok: true, value: await kernel.callHook("resolveExecutor", JSON.stringify(request)) };
  } catch (e) {
    return {
      ok: false,
      code: KeelError.is(e) ? e.code : `not a KeelError: ${String(e)}`,
      message: errorMessage(e),
    };
  }
}

function assertRefused(outcome: Outcome, code = "E_CAPABILITY_DENIED"): void {
  assert.equal(outcome.ok, false, `expected ${code}, got ${JSON.stringify(outcome)}`);
  if (!outcome.ok) assert.equal(outcome.code, code, outcome.message);
  assert.ok(!JSON.stringify(outcome).includes(SECRET), "the secret leaked into the outcome");
}

function assertGot(outcome: Outcome, value: unknown): void {
  assert.deepEqual(outcome, { ok: true, value });
}

async function bootError(promise: Promise<unknown>): Promise<KeelError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(KeelError.is(e), `expected a KeelError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected the kernel to refuse the plugin");
}

before(async () => {
  runtime = await detectRuntime();
  fs = runtime.fs!;
  tmp = await fs.realPath(await fs.makeTempDir("keel-escape-"));
  secretDir = `${tmp}/secret`;
  secretFile = `${secretDir}/secret.txt`;
  secretJson = `${secretDir}/secret.json`;
  publicDir = `${tmp}/public`;
  outDir = `${tmp}/out`;
  for (const dir of [secretDir, publicDir, outDir]) await fs.mkdir(dir);
  await fs.writeTextFile(secretFile, SECRET);
  await fs.writeTextFile(secretJson, JSON.stringify({ secret: SECRET }));
  await fs.writeTextFile(`${publicDir}/public.txt`, "public");
  process.env[SECRET_ENV] = SECRET;
  server = await runtime.serve!(() => new Response(SECRET), { hostname: "127.0.0.1", port: 0 });
  otherPort = server.port === 65535 ? 65534 : server.port + 1;
});

after(async () => {
  for (const kernel of kernels) await kernel.dispose().catch(() => {});
  await server?.close();
  delete process.env[SECRET_ENV];
  if (tmp) await fs.remove(tmp);
  for (const logger of logs) {
    for (const line of logger.lines) {
      assert.ok(
        !JSON.stringify(line).includes(SECRET),
        `the secret leaked into a log line: ${line.message}`,
      );
    }
  }
});

describe("an isolated plugin without the grant", () => {
  let kernel: Kernel;
  before(async () => {
    // Some unrelated grants, so the denials below are not just "nothing granted at all".
    kernel = await boot([
      `read:${publicDir}`,
      `net:127.0.0.1:${otherPort}`,
      "env:KEEL_ESCAPE_PUBLIC",
    ]);
  });

  test("boots and answers", async () => {
    assertGot(await attempt(kernel, { attempt: "ping" }), "pong");
    assertGot(
      await attempt(kernel, { attempt: "deno-read", path: `${publicDir}/public.txt` }),
      "public",
    );
  });

  test("cannot read a file outside its grant, by any API", async () => {
    for (
      const name of [
        "ctx-read",
        "deno-read",
        "deno-read-sync",
        "node-fs-read",
        "fetch-file",
        "dynamic-import",
        "worker-read",
      ]
    ) {
      const outcome = await attempt(kernel, { attempt: name, path: secretFile });
      assert.equal(outcome.ok, false, `${name}: ${JSON.stringify(outcome)}`);
      assertRefused(outcome);
    }
  });

  test("cannot read a file through require(), which Deno does not check by itself", async () => {
    assertRefused(await attempt(kernel, { attempt: "require", path: secretJson }));
  });

  test("cannot write a file", async () => {
    for (const name of ["ctx-write", "deno-write", "node-fs-write"]) {
      assertRefused(
        await attempt(kernel, { attempt: name, path: `${outDir}/${name}.txt`, text: "pwned" }),
      );
      assert.equal(await fs.exists(`${outDir}/${name}.txt`), false, `${name} wrote the file`);
    }
  });

  test("cannot read an environment variable", async () => {
    for (const name of ["ctx-env", "deno-env", "process-env"]) {
      assertRefused(await attempt(kernel, { attempt: name, name: SECRET_ENV }));
    }
  });

  test("cannot connect to a port it was not granted", async () => {
    const url = `http://127.0.0.1:${server.port}/`;
    assertRefused(await attempt(kernel, { attempt: "ctx-fetch", url }));
    assertRefused(await attempt(kernel, { attempt: "fetch", url }));
    assertRefused(
      await attempt(kernel, { attempt: "deno-connect", hostname: "127.0.0.1", port: server.port }),
    );
  });

  test("cannot start a process", async () => {
    for (const name of ["ctx-run", "deno-command", "node-exec"]) {
      assertRefused(await attempt(kernel, { attempt: name, command: "cat", args: [secretFile] }));
    }
  });

  test("cannot load native code", async () => {
    assertRefused(await attempt(kernel, { attempt: "ffi" }));
  });

  test("gets no WebGPU adapter", async () => {
    assertGot(await attempt(kernel, { attempt: "gpu" }), false);
  });
});

describe("the same plugin with the grant (positive controls)", () => {
  let kernel: Kernel;
  before(async () => {
    kernel = await boot([
      `read:${secretDir}`,
      `write:${outDir}`,
      `env:${SECRET_ENV}`,
      `net:127.0.0.1:${server.port}`,
      "run:cat",
      "ffi",
      "gpu",
    ]);
  });

  test("reads the file by every API", async () => {
    for (
      const name of [
        "ctx-read",
        "deno-read",
        "deno-read-sync",
        "node-fs-read",
        "fetch-file",
        "dynamic-import",
        "worker-read",
      ]
    ) {
      assertGot(await attempt(kernel, { attempt: name, path: secretFile }), SECRET);
    }
    assertGot(
      await attempt(kernel, { attempt: "require", path: secretJson }),
      JSON.stringify({ secret: SECRET }),
    );
  });

  test("writes the file", async () => {
    for (const name of ["ctx-write", "deno-write", "node-fs-write"]) {
      assertGot(
        await attempt(kernel, { attempt: name, path: `${outDir}/${name}.txt`, text: name }),
        "written",
      );
      assert.equal(await fs.readTextFile(`${outDir}/${name}.txt`), name);
    }
  });

  test("reads the environment variable", async () => {
    for (const name of ["ctx-env", "deno-env", "process-env"]) {
      assertGot(await attempt(kernel, { attempt: name, name: SECRET_ENV }), SECRET);
    }
  });

  test("connects to the granted port", async () => {
    const url = `http://127.0.0.1:${server.port}/`;
    assertGot(await attempt(kernel, { attempt: "ctx-fetch", url }), SECRET);
    assertGot(await attempt(kernel, { attempt: "fetch", url }), SECRET);
    assertGot(
      await attempt(kernel, { attempt: "deno-connect", hostname: "127.0.0.1", port: server.port }),
      SECRET,
    );
  });

  test("starts the granted command", async () => {
    assertGot(
      await attempt(kernel, { attempt: "ctx-run", command: "cat", args: [secretFile] }),
      SECRET,
    );
    assertGot(
      await attempt(kernel, { attempt: "deno-command", command: "cat", args: [secretFile] }),
      SECRET,
    );
  });

  test("loads native code", async () => {
    const outcome = await attempt(kernel, { attempt: "ffi" });
    assert.ok(
      outcome.ok && typeof outcome.value === "number" && outcome.value > 0,
      JSON.stringify(outcome),
    );
  });

  test("gets a WebGPU adapter when this machine's Deno has one", async () => {
    const probe = await runtime.processes!.run(runtime.denoPath!(), {
      args: ["eval", "console.log((await navigator.gpu?.requestAdapter()) != null)"],
    });
    assertGot(await attempt(kernel, { attempt: "gpu" }), probe.stdout.trim() === "true");
  });
});

describe("symlinks in a granted folder", () => {
  test("a link that leads outside the grant is refused at load", async () => {
    const dir = `${tmp}/linked`;
    await fs.mkdir(`${dir}/deep/er`);
    await fs.writeTextFile(`${dir}/fine.txt`, "fine");
    const made = await runtime.processes!.run("ln", {
      args: ["-s", secretFile, `${dir}/deep/er/leak.txt`],
    });
    assert.ok(made.success, made.stderr);
    const error = await bootError(boot([`read:${dir}`]));
    assert.equal(error.code, "E_CAPABILITY_SYMLINK", error.message);
    assert.match(error.message, /leak\.txt/);
    assert.ok(!error.message.includes(SECRET));
  });

  test("a link that stays inside the grant is fine", async () => {
    const dir = `${tmp}/inner-link`;
    await fs.mkdir(dir);
    await fs.writeTextFile(`${dir}/real.txt`, "inside");
    const made = await runtime.processes!.run("ln", {
      args: ["-s", `${dir}/real.txt`, `${dir}/alias.txt`],
    });
    assert.ok(made.success, made.stderr);
    const kernel = await boot([`read:${dir}`]);
    assertGot(await attempt(kernel, { attempt: "deno-read", path: `${dir}/alias.txt` }), "inside");
  });

  describe("after load", () => {
    let kernel: Kernel;
    let dir: string;
    before(async () => {
      dir = `${tmp}/late`;
      await fs.mkdir(dir);
      kernel = await boot([`read:${dir}`, `write:${dir}`]);
    });

    test("the plugin cannot plant a symlink or a hard link itself, even holding read and write on the folder", async () => {
      assertRefused(
        await attempt(kernel, { attempt: "symlink", target: secretFile, path: `${dir}/mine.txt` }),
      );
      assertRefused(
        await attempt(kernel, { attempt: "hardlink", target: secretFile, path: `${dir}/hard.txt` }),
      );
      assert.equal(await fs.exists(`${dir}/mine.txt`), false);
      assert.equal(await fs.exists(`${dir}/hard.txt`), false);
    });

    test("ctx.fs refuses a link someone else planted after load", async () => {
      const made = await runtime.processes!.run("ln", {
        args: ["-s", secretFile, `${dir}/planted.txt`],
      });
      assert.ok(made.success, made.stderr);
      assertRefused(await attempt(kernel, { attempt: "ctx-read", path: `${dir}/planted.txt` }));
    });

    test("KNOWN GAP: Deno's own file API follows a link someone else planted after load", async () => {
      // Deno checks the path as written and does not resolve links; the load-time walk cannot
      // see a link made later. Documented in core/isolation.ts; if Deno starts resolving links
      // this test fails and should become a denial.
      await runtime.processes!.run("ln", { args: ["-sf", secretFile, `${dir}/planted.txt`] });
      const outcome = await attempt(kernel, { attempt: "deno-read", path: `${dir}/planted.txt` });
      assert.deepEqual(outcome, { ok: true, value: SECRET });
      await fs.remove(`${dir}/planted.txt`);
    });
  });
});

describe("imports Deno loads at start, before permissions apply", () => {
  const variants = {
    "a static import": (path: string) =>
      `import secret from ${JSON.stringify(`file://${path}`)} with { type: "text" };`,
    "a dynamic import with a literal specifier": (path: string) =>
      `const secret = JSON.stringify((await import(${
        JSON.stringify(path.replace(/\.txt$/, ".json"))
      }, { with: { type: "json" } })).default);`,
    "require() with a literal specifier": (path: string) =>
      `import { createRequire } from "node:module";\nconst require = createRequire(import.meta.url);\nconst secret = JSON.stringify(require(${
        JSON.stringify(path.replace(/\.txt$/, ".json"))
      }));`,
  };
  const modules: Record<string, string> = {};
  before(async () => {
    let i = 0;
    for (const [label, line] of Object.entries(variants)) {
      const dir = `${tmp}/importer-${i++}`;
      await fs.mkdir(dir);
      modules[label] = `${dir}/plugin.ts`;
      await fs.writeTextFile(
        modules[label],
        [
          line(secretFile),
          `export default {`,
          `  name: "importer", version: "1.0.0", kernel: "^1",`,
          `  setup: () => ({ resolveExecutor: () => secret }),`,
          `};`,
          ``,
        ].join("\n"),
      );
    }
  });

  async function bootImporter(module: string, capabilities: readonly string[]): Promise<Kernel> {
    const kernel = await createKernel({
      runtime,
      plugins: [{
        isolate: true,
        module,
        manifest: { name: "importer", version: "1.0.0", kernel: "^1", capabilities },
      }],
      grants: { importer: capabilities },
    });
    kernels.push(kernel);
    return kernel;
  }

  for (const label of Object.keys(variants)) {
    test(`${label} of a file outside the package and the grant is refused at load`, async () => {
      const error = await bootError(bootImporter(modules[label]!, []));
      assert.equal(error.code, "E_CAPABILITY_DENIED", error.message);
      assert.match(error.message, /imports ".*secret\.(txt|json)"/);
      assert.ok(!error.message.includes(SECRET));
    });

    test(`${label} loads with read access to the file (positive control)`, async () => {
      const kernel = await bootImporter(modules[label]!, [`read:${secretDir}`]);
      const value = await kernel.callHook("resolveExecutor", "x");
      assert.ok(String(value).includes(SECRET));
    });
  }
});

describe("resource limits", () => {
  test("a hook that loops forever is killed at its time limit, and the host and other plugins go on", async () => {
    const kernel = await boot([], { timeoutMs: 500, bystander: true });
    assertRefused(await attempt(kernel, { attempt: "loop" }), "E_PLUGIN_TIMEOUT");
    const again = await attempt(kernel, { attempt: "loop" });
    assertRefused(again, "E_PLUGIN_CRASHED");
    if (!again.ok) assert.match(again.message, /"escaper"/);
    assertGot(await attempt(kernel, { attempt: "ping" }), "still here");
    await kernel.dispose();
  });

  test("the timeout error names the plugin and the hook", async () => {
    const kernel = await boot([], { timeoutMs: 300 });
    const outcome = await attempt(kernel, { attempt: "loop" });
    assertRefused(outcome, "E_PLUGIN_TIMEOUT");
    if (!outcome.ok) {
      assert.match(
        outcome.message,
        /Plugin "escaper" did not finish hook "resolveExecutor" within 300 ms/,
      );
    }
    await kernel.dispose();
  });

  test("a plugin that fills its heap crashes with E_PLUGIN_CRASHED, out of memory", async () => {
    const kernel = await boot([], { memoryMb: 64, timeoutMs: 30_000 });
    const outcome = await attempt(kernel, { attempt: "oom-heap" });
    assertRefused(outcome, "E_PLUGIN_CRASHED");
    if (!outcome.ok) assert.match(outcome.message, /out of memory/);
    await kernel.dispose();
  });

  test("a plugin that fills memory outside the heap (ArrayBuffers) is killed too, where /proc exists", async () => {
    if (!(await fs.exists("/proc/self/status"))) return; // the resident-size watch needs Linux
    const kernel = await boot([], { memoryMb: 64, timeoutMs: 30_000 });
    const outcome = await attempt(kernel, { attempt: "oom-buffers" });
    assertRefused(outcome, "E_PLUGIN_CRASHED");
    if (!outcome.ok) assert.match(outcome.message, /out of memory/);
    await kernel.dispose();
  });
});
