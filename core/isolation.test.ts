import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createGrant } from "./capabilities.ts";
import { KeelError } from "./errors.ts";
import { createKernel } from "./kernel.ts";
import {
  checkGrantedPaths,
  denoPermissionFlags,
  isolatedEnvironment,
  type IsolatedHandle,
  readIsolatedManifest,
  startIsolatedPlugin,
} from "./isolation.ts";
import { createMemoryLogger, type MemoryLogger } from "./logger.ts";
import type { IsolatedPluginSpec, PluginManifest } from "./plugin.ts";
import type { Runtime } from "./runtime.ts";
import { detectRuntime } from "../runtimes/mod.ts";

const fixture = (name: string): string =>
  new URL(`../tests/fixtures/escape/${name}`, import.meta.url).href;

const QUIRKY: PluginManifest = {
  name: "quirky",
  version: "1.0.0",
  kernel: "^1",
  capabilities: ["env:QUIRKY_FLAG"],
};

async function rejection(promise: Promise<unknown>): Promise<KeelError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(KeelError.is(e), `expected a KeelError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected a rejection");
}

describe("denoPermissionFlags", () => {
  const base = [
    "--no-prompt",
    "--no-config",
    "--no-lock",
    "--node-modules-dir=manual",
    "--no-remote",
    "--cached-only",
  ];

  test("an empty grant allows nothing and caps the heap", () => {
    assert.deepEqual(denoPermissionFlags(createGrant([])), [
      ...base,
      "--v8-flags=--max-old-space-size=256",
      "--deny-env=DENO_WEBGPU_BACKEND",
    ]);
  });

  test("scoped capabilities become comma lists, one flag per kind", () => {
    const flags = denoPermissionFlags(
      createGrant([
        "net:api.example.com:443",
        "net:localhost",
        "read:/data",
        "read:/models",
        "write:/out",
        "env:HOME",
        "env:AWS_*",
        "sys:hostname",
      ]),
      { memoryMb: 512 },
    );
    assert.deepEqual(flags, [
      ...base,
      "--v8-flags=--max-old-space-size=512",
      "--allow-read=/data,/models",
      "--allow-write=/out",
      "--allow-net=api.example.com:443,localhost",
      "--allow-env=HOME,AWS_*",
      "--allow-sys=hostname",
      "--deny-env=DENO_WEBGPU_BACKEND",
    ]);
  });

  test("an unscoped capability gives the bare flag, even next to scoped ones", () => {
    const flags = denoPermissionFlags(createGrant(["net", "net:example.com", "read:/a", "read"]));
    assert.ok(flags.includes("--allow-net"));
    assert.ok(flags.includes("--allow-read"));
    assert.ok(!flags.some((f) => f.startsWith("--allow-net=") || f.startsWith("--allow-read=")));
  });

  test("run and ffi appear only when granted; gpu lifts the WebGPU lock", () => {
    const none = denoPermissionFlags(createGrant(["net:example.com"]));
    assert.ok(!none.some((f) => f.startsWith("--allow-run") || f.startsWith("--allow-ffi")));
    const all = denoPermissionFlags(createGrant(["run:git", "run:python3", "ffi", "gpu"]));
    assert.ok(all.includes("--allow-run=git,python3"));
    assert.ok(all.includes("--allow-ffi"));
    assert.ok(!all.includes("--deny-env=DENO_WEBGPU_BACKEND"));
    assert.ok(!all.some((f) => f.startsWith("--allow-read") || f.startsWith("--allow-net")));
  });

  test("duplicates collapse", () => {
    const flags = denoPermissionFlags(createGrant(["read:/a", "read:/a", "read:/b"]));
    assert.ok(flags.includes("--allow-read=/a,/b"));
  });

  test("a scope holding a comma is refused, since Deno would read two entries", () => {
    assert.throws(
      () => denoPermissionFlags(createGrant(["read:/data,/etc"])),
      (e: unknown) => KeelError.is(e, "E_CAPABILITY_INVALID"),
    );
    assert.throws(
      () => denoPermissionFlags(createGrant(["run:git,sh"])),
      (e: unknown) => KeelError.is(e, "E_CAPABILITY_INVALID"),
    );
  });

  test("a bad memory size is a RangeError", () => {
    assert.throws(() => denoPermissionFlags(createGrant([]), { memoryMb: 0 }), RangeError);
    assert.throws(() => denoPermissionFlags(createGrant([]), { memoryMb: 1.5 }), RangeError);
  });
});

describe("isolatedEnvironment", () => {
  const host = {
    PATH: "/bin",
    HOME: "/home/u",
    SECRET_TOKEN: "s3cret",
    AWS_KEY: "k",
    AWS_REGION: "r",
    OTHER: "o",
  };

  test("passes only what Deno needs, plus granted variables", () => {
    const env = isolatedEnvironment(createGrant(["env:AWS_*"]), host);
    assert.equal(env.PATH, "/bin");
    assert.equal(env.HOME, "/home/u");
    assert.equal(env.AWS_KEY, "k");
    assert.equal(env.AWS_REGION, "r");
    assert.equal(env.SECRET_TOKEN, undefined);
    assert.equal(env.OTHER, undefined);
    assert.equal(env.DENO_WEBGPU_BACKEND, "none");
  });

  test("an unscoped env grant passes everything; gpu keeps WebGPU on", () => {
    const env = isolatedEnvironment(createGrant(["env", "gpu"]), host);
    assert.equal(env.SECRET_TOKEN, "s3cret");
    assert.equal(env.DENO_WEBGPU_BACKEND, undefined);
  });
});

describe("with a runtime", () => {
  let runtime: Runtime;
  let tmp: string;
  const handles: IsolatedHandle[] = [];

  before(async () => {
    runtime = await detectRuntime();
    tmp = await runtime.fs!.realPath(await runtime.fs!.makeTempDir("keel-isolation-"));
  });

  after(async () => {
    for (const h of handles) await h.close();
    await runtime.fs!.remove(tmp);
  });

  async function start(
    spec: Partial<IsolatedPluginSpec> & { module: string; manifest: PluginManifest },
    logger = createMemoryLogger(),
  ) {
    const handle = await startIsolatedPlugin(
      { isolate: true, ...spec },
      { runtime, grant: createGrant(spec.manifest.capabilities ?? []), logger },
    );
    handles.push(handle);
    return handle;
  }

  describe("checkGrantedPaths", () => {
    test("a symlink inside the grant is fine and a symlink outside it is refused", async () => {
      const fs = runtime.fs!;
      const granted = `${tmp}/granted`;
      await fs.mkdir(`${granted}/sub`);
      await fs.mkdir(`${tmp}/elsewhere`);
      await fs.writeTextFile(`${granted}/sub/a.txt`, "a");
      await runtime.processes!.run("ln", {
        args: ["-s", `${granted}/sub/a.txt`, `${granted}/inside`],
      });
      const ok = await checkGrantedPaths(createGrant([`read:${granted}`]), fs, { plugin: "p" });
      assert.deepEqual(ok.toStrings(), [`read:${granted}`]);

      await runtime.processes!.run("ln", {
        args: ["-s", `${tmp}/elsewhere`, `${granted}/sub/out`],
      });
      const error = await rejection(
        checkGrantedPaths(createGrant([`read:${granted}`]), fs, { plugin: "p" }),
      );
      assert.equal(error.code, "E_CAPABILITY_SYMLINK");
      assert.equal(error.details?.plugin, "p");
      assert.equal(error.details?.link, `${granted}/sub/out`);
      // Also granting where it leads makes it fine.
      await checkGrantedPaths(createGrant([`read:${granted}`, `read:${tmp}/elsewhere`]), fs);
    });

    test("a dangling link is refused, a missing granted path is fine, a huge tree is refused", async () => {
      const fs = runtime.fs!;
      const dir = `${tmp}/dangling`;
      await fs.mkdir(dir);
      await runtime.processes!.run("ln", { args: ["-s", `${tmp}/nowhere`, `${dir}/gone`] });
      assert.equal(
        (await rejection(checkGrantedPaths(createGrant([`read:${dir}`]), fs))).code,
        "E_CAPABILITY_SYMLINK",
      );
      await checkGrantedPaths(createGrant([`write:${tmp}/not-yet`]), fs);
      const wide = `${tmp}/wide`;
      await fs.mkdir(wide);
      for (let i = 0; i < 5; i++) await fs.writeTextFile(`${wide}/${i}.txt`, "");
      const error = await rejection(
        checkGrantedPaths(createGrant([`read:${wide}`]), fs, { maxEntries: 3 }),
      );
      assert.equal(error.code, "E_CAPABILITY_SYMLINK");
      assert.match(error.message, /narrower path/);
    });

    test("a granted path that is itself a link is resolved, and both paths are granted", async () => {
      const fs = runtime.fs!;
      await fs.mkdir(`${tmp}/target-dir`);
      await runtime.processes!.run("ln", { args: ["-s", `${tmp}/target-dir`, `${tmp}/alias-dir`] });
      const grant = await checkGrantedPaths(createGrant([`read:${tmp}/alias-dir`]), fs);
      assert.deepEqual(grant.toStrings(), [`read:${tmp}/alias-dir`, `read:${tmp}/target-dir`]);
    });
  });

  test("a hook's pre/post order crosses the process boundary and the kernel honours it", async () => {
    const manifest: PluginManifest = { name: "ordered", version: "1.0.0", kernel: "^1" };
    const handle = await start({ module: fixture("ordered.ts"), manifest });
    assert.deepEqual({ ...handle.orders }, { onEvent: "pre", beforeRun: "post" });
    assert.deepEqual([...handle.hooks].sort(), ["beforeRun", "onEvent", "ready"]);

    // The isolated plugin comes first in plugin order, but its beforeRun is "post": the
    // in-process handler must run before it throws.
    const ran: string[] = [];
    const kernel = await createKernel({
      runtime,
      plugins: [
        { isolate: true, module: fixture("ordered.ts"), manifest },
        {
          name: "local",
          version: "1.0.0",
          kernel: "^1",
          setup: () => ({ beforeRun: () => void ran.push("local") }),
        },
      ],
    });
    try {
      const run = { id: "r1", protocol: "script/v1", target: "x.ts", params: {} };
      const e = await rejection(kernel.callHook("beforeRun", run));
      assert.equal(e.code, "E_HOOK_FAILED");
      assert.match(e.message, /the post handler ran/);
      assert.deepEqual(ran, ["local"]);
    } finally {
      await kernel.dispose();
    }
  });

  test("junk and console output on stdout are logged, never break the protocol", async () => {
    const logger = createMemoryLogger();
    const handle = await start({ module: fixture("quirky.ts"), manifest: QUIRKY }, logger);
    assert.deepEqual([...handle.hooks].sort(), ["dispose", "resolveExecutor"]);
    assert.equal(await handle.call("resolveExecutor", ["junk"]), "after junk");
    assert.equal(await handle.call("resolveExecutor", ["console"]), "after console");
    assert.equal(await handle.call("resolveExecutor", ["stderr"]), "after stderr");
    assert.deepEqual(await handle.call("resolveExecutor", ["other"]), { args: "other" });
    const text = (l: MemoryLogger["lines"][number]) =>
      `${l.level} ${l.message} ${JSON.stringify(l.fields)}`;
    const lines = logger.lines.map(text);
    assert.ok(lines.some((l) => l.startsWith("info junk at load {not json")), lines.join("\n"));
    assert.ok(lines.some((l) => l.startsWith("info junk in a hook, no newline")), lines.join("\n"));
    assert.ok(
      lines.some((l) => l.startsWith("info hello from console.log { n: 1 }")),
      lines.join("\n"),
    );
    assert.ok(lines.some((l) => l.startsWith("error and console.error")), lines.join("\n"));
    assert.ok(
      lines.some((l) => l.startsWith("info set up") && l.includes("ctx.logger")),
      lines.join("\n"),
    );
    assert.ok(lines.some((l) => l.startsWith("debug raw stderr line")), lines.join("\n"));
  });

  test("a hook that throws comes back as E_HOOK_FAILED naming the plugin and hook; a KeelError keeps its code", async () => {
    const handle = await start({ module: fixture("quirky.ts"), manifest: QUIRKY });
    const error = await rejection(handle.call("resolveExecutor", ["throw"]));
    assert.equal(error.code, "E_HOOK_FAILED");
    assert.equal(error.message, 'Plugin "quirky" failed in hook "resolveExecutor": boom');
    assert.deepEqual(error.details, { plugin: "quirky", hook: "resolveExecutor" });
    assert.equal(
      (await rejection(handle.call("resolveExecutor", ["throw-keel"]))).code,
      "E_CONFIG_INVALID",
    );
    // The plugin keeps serving after a failed call.
    assert.deepEqual(await handle.call("resolveExecutor", ["echo"]), { echoed: "echo" });
  });

  test("a value JSON cannot carry is E_PLUGIN_PROTOCOL, and a hook it does not have is refused", async () => {
    const handle = await start({ module: fixture("quirky.ts"), manifest: QUIRKY });
    assert.equal(
      (await rejection(handle.call("resolveExecutor", ["function"]))).code,
      "E_PLUGIN_PROTOCOL",
    );
    assert.equal((await rejection(handle.call("beforeRun", []))).code, "E_HOOK_UNKNOWN");
  });

  test("a process that exits fails the call and every later one with E_PLUGIN_CRASHED", async () => {
    const handle = await start({ module: fixture("quirky.ts"), manifest: QUIRKY });
    const error = await rejection(handle.call("resolveExecutor", ["exit"]));
    assert.equal(error.code, "E_PLUGIN_CRASHED");
    assert.match(error.message, /exited with code 3 during hook "resolveExecutor"/);
    assert.equal(
      (await rejection(handle.call("resolveExecutor", ["echo"]))).code,
      "E_PLUGIN_CRASHED",
    );
    // Nothing left to dispose, so neither dispose nor close fails.
    assert.equal(await handle.call("dispose", []), undefined);
    await handle.close();
  });

  test("dispose that never finishes is bounded by the time limit; close is idempotent", async () => {
    const logger = createMemoryLogger();
    const handle = await start(
      { module: fixture("quirky.ts"), manifest: QUIRKY, timeoutMs: 300 },
      logger,
    );
    assert.equal(await handle.call("resolveExecutor", ["hang-dispose"]), "armed");
    await handle.close();
    await handle.close();
    assert.ok(
      logger.lines.some((l) =>
        l.level === "warn" && /did not finish hook "dispose" within 300 ms/.test(l.message)
      ),
    );
    assert.equal(
      (await rejection(handle.call("resolveExecutor", ["echo"]))).code,
      "E_PLUGIN_DISPOSED",
    );
  });

  test("the module's manifest must agree with the declared one", async () => {
    const wrongName = await rejection(
      start({ module: fixture("quirky.ts"), manifest: { ...QUIRKY, name: "not-quirky" } }),
    );
    assert.equal(wrongName.code, "E_PLUGIN_PROTOCOL");
    assert.match(wrongName.message, /exports name "quirky"/);
    const wrongVersion = await rejection(
      start({ module: fixture("quirky.ts"), manifest: { ...QUIRKY, version: "1.0.1" } }),
    );
    assert.equal(wrongVersion.code, "E_PLUGIN_PROTOCOL");
    const moreCaps = await rejection(
      start({ module: fixture("quirky.ts"), manifest: { ...QUIRKY, capabilities: [] } }),
    );
    assert.equal(moreCaps.code, "E_CAPABILITY_DENIED");
    assert.deepEqual(moreCaps.details?.missing, ["env:QUIRKY_FLAG"]);
  });

  test("load and setup failures are coded", async () => {
    const manifest = (name: string): PluginManifest => ({ name, version: "1.0.0", kernel: "^1" });
    const missing = await rejection(
      start({ module: `${tmp}/does-not-exist.ts`, manifest: manifest("missing") }),
    );
    assert.equal(missing.code, "E_PLUGIN_LOAD_FAILED");
    const noDefault = await rejection(
      start({ module: fixture("no-default.ts"), manifest: manifest("no-default") }),
    );
    assert.equal(noDefault.code, "E_PLUGIN_LOAD_FAILED");
    const throws = await rejection(
      start({ module: fixture("setup-throws.ts"), manifest: manifest("setup-throws") }),
    );
    assert.equal(throws.code, "E_HOOK_FAILED");
    assert.deepEqual(throws.details, { plugin: "setup-throws", hook: "setup" });
    // Through the kernel it reads as an in-process plugin's setup failure does.
    const viaKernel = await rejection(createKernel({
      runtime,
      plugins: [{
        isolate: true,
        module: fixture("setup-throws.ts"),
        manifest: manifest("setup-throws"),
      }],
    }));
    assert.equal(viaKernel.code, "E_PLUGIN_SETUP_FAILED");
    assert.equal(viaKernel.message, 'Plugin "setup-throws" failed in setup: setup went wrong');
    const hangs = await rejection(
      start({
        module: fixture("setup-hangs.ts"),
        manifest: manifest("setup-hangs"),
        setupTimeoutMs: 1_000,
      }),
    );
    assert.equal(hangs.code, "E_PLUGIN_TIMEOUT");
    assert.match(hangs.message, /setupTimeoutMs/);
  });

  test("readIsolatedManifest returns the module's manifest without giving its code any permission", async () => {
    const marker = "/tmp/keel-describe-only-was-here";
    await runtime.fs!.remove(marker);
    const manifest = await readIsolatedManifest(fixture("describe-only.ts"), { runtime });
    assert.deepEqual(manifest, {
      name: "describe-only",
      version: "2.3.4",
      kernel: "^1",
      capabilities: ["net:example.com:443"],
      description: "Reads nothing",
    });
    assert.equal(await runtime.fs!.exists(marker), false);
    assert.equal(
      (await rejection(readIsolatedManifest(fixture("no-default.ts"), { runtime }))).code,
      "E_PLUGIN_LOAD_FAILED",
    );
  });
});
