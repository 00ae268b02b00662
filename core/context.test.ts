import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { detectRuntime } from "../runtimes/mod.ts";
import { createGrant } from "./capabilities.ts";
import { createPluginContext, grantCoversPath, realizeGrant, realPathOrParent } from "./context.ts";
import { type ErrorCodeName, KeelError } from "./errors.ts";
import { createSilentLogger } from "./logger.ts";
import { joinPath } from "./path.ts";
import type { PluginContext } from "./plugin.ts";
import type { Runtime, RuntimeFs, RuntimeProcesses, Server } from "./runtime.ts";
import { defineService, ServiceTable } from "./services.ts";

const runtime: Runtime = await detectRuntime();
const rfs: RuntimeFs = runtime.fs!;
const processes: RuntimeProcesses = runtime.processes!;
const logger = createSilentLogger();

function context(
  grant: readonly string[],
  more: { runtime?: Runtime | undefined; services?: ServiceTable } = {},
): Promise<PluginContext> {
  return createPluginContext({
    name: "ctx-test",
    grant: createGrant(grant),
    logger,
    runtime: "runtime" in more ? more.runtime : runtime,
    ...(more.services ? { services: more.services } : {}),
  });
}

/** A predicate for assert.throws/rejects: a KeelError with `code` whose message matches every pattern. */
function coded(code: ErrorCodeName, ...patterns: (RegExp | string)[]): (e: unknown) => boolean {
  return (e) => {
    assert.ok(KeelError.is(e, code), `expected ${code}, got ${String(e)}`);
    for (const p of patterns) {
      if (typeof p === "string") {
        assert.ok(e.message.includes(p), `"${e.message}" should include "${p}"`);
      } else assert.match(e.message, p);
    }
    return true;
  };
}

async function symlink(target: string, link: string): Promise<void> {
  const out = await processes.run("ln", { args: ["-s", target, link] });
  assert.equal(out.success, true, out.stderr);
}

describe(`createPluginContext: fs (${runtime.name})`, () => {
  let root = "";
  let granted = "";
  let outside = "";

  before(async () => {
    // Real paths, so messages can be compared with the paths the checks resolve to.
    root = await rfs.realPath(await rfs.makeTempDir("keel-ctx-"));
    granted = joinPath(root, "granted");
    outside = joinPath(root, "outside");
    await rfs.mkdir(granted);
    await rfs.mkdir(outside);
    await rfs.writeTextFile(joinPath(granted, "inside.txt"), "inside");
    await rfs.writeTextFile(joinPath(outside, "secret.txt"), "secret");
    await symlink(joinPath(outside, "secret.txt"), joinPath(granted, "link-file"));
    await symlink(outside, joinPath(granted, "link-dir"));
    await symlink(joinPath(outside, "made-through-dangling.txt"), joinPath(granted, "dangling"));
    await symlink(granted, joinPath(root, "alias"));
  });

  after(async () => {
    await rfs.remove(root);
  });

  test("reads files inside the grant", async () => {
    const ctx = await context([`read:${granted}`]);
    assert.equal(await ctx.fs.readTextFile(joinPath(granted, "inside.txt")), "inside");
    assert.deepEqual(
      await ctx.fs.readFile(joinPath(granted, "inside.txt")),
      new TextEncoder().encode("inside"),
    );
    assert.equal((await ctx.fs.stat(joinPath(granted, "inside.txt"))).size, 6);
    const names = (await ctx.fs.readDir(granted)).map((e) => e.name);
    assert.ok(names.includes("inside.txt"));
  });

  test("a read outside the grant is E_CAPABILITY_DENIED naming plugin, path and the --allow to add", async () => {
    const ctx = await context([`read:${granted}`]);
    const secret = joinPath(outside, "secret.txt");
    await assert.rejects(ctx.fs.readTextFile(secret), (e) => {
      coded(
        "E_CAPABILITY_DENIED",
        `Plugin "ctx-test" may not read "${secret}": it was not granted "read:${secret}"`,
        `--allow read:${secret}`,
      )(e);
      assert.deepEqual((e as KeelError).details, {
        plugin: "ctx-test",
        missing: [`read:${secret}`],
      });
      return true;
    });
    await assert.rejects(ctx.fs.readDir(outside), coded("E_CAPABILITY_DENIED"));
    await assert.rejects(ctx.fs.stat(secret), coded("E_CAPABILITY_DENIED"));
  });

  test("a symlink inside the grant that points outside is denied", async () => {
    const ctx = await context([`read:${granted}`, `write:${granted}`]);
    const link = joinPath(granted, "link-file");
    await assert.rejects(
      ctx.fs.readTextFile(link),
      coded(
        "E_CAPABILITY_DENIED",
        `Plugin "ctx-test" may not read "${link}": it leads through a symlink to "${
          joinPath(outside, "secret.txt")
        }", outside its grant`,
      ),
    );
    await assert.rejects(
      ctx.fs.readTextFile(joinPath(granted, "link-dir", "secret.txt")),
      coded("E_CAPABILITY_DENIED", "symlink"),
    );
    await assert.rejects(
      ctx.fs.writeTextFile(link, "overwritten"),
      coded("E_CAPABILITY_DENIED", "symlink"),
    );
    assert.equal(await rfs.readTextFile(joinPath(outside, "secret.txt")), "secret");
  });

  test("a new file under a symlinked directory that points outside is denied and not written", async () => {
    const ctx = await context([`write:${granted}`]);
    await assert.rejects(
      ctx.fs.writeTextFile(joinPath(granted, "link-dir", "new.txt"), "x"),
      coded("E_CAPABILITY_DENIED", "symlink"),
    );
    await assert.rejects(
      ctx.fs.mkdir(joinPath(granted, "link-dir", "sub", "deeper")),
      coded("E_CAPABILITY_DENIED", "symlink"),
    );
    assert.equal(await rfs.exists(joinPath(outside, "new.txt")), false);
    assert.equal(await rfs.exists(joinPath(outside, "sub")), false);
  });

  test("a dangling symlink inside the grant cannot be used to create a file outside", async () => {
    const ctx = await context([`write:${granted}`]);
    await assert.rejects(
      ctx.fs.writeTextFile(joinPath(granted, "dangling"), "escaped"),
      coded("E_CAPABILITY_DENIED", 'Plugin "ctx-test"', "symlink"),
    );
    assert.equal(await rfs.exists(joinPath(outside, "made-through-dangling.txt")), false);
  });

  test("'..' in a path is resolved before the check, so it cannot escape", async () => {
    const ctx = await context([`read:${granted}`]);
    const sneaky = `${granted}/../outside/secret.txt`;
    await assert.rejects(
      ctx.fs.readTextFile(sneaky),
      coded("E_CAPABILITY_DENIED", `may not read "${joinPath(outside, "secret.txt")}"`),
    );
    // '..' that stays inside is fine.
    assert.equal(await ctx.fs.readTextFile(`${granted}/sub/../inside.txt`), "inside");
  });

  test("a relative path resolves against the runtime's cwd", async () => {
    const ctx = await context([`read:${granted}`]);
    await assert.rejects(
      ctx.fs.readTextFile("some/relative.txt"),
      coded(
        "E_CAPABILITY_DENIED",
        `may not read "${joinPath(runtime.cwd(), "some/relative.txt")}"`,
      ),
    );
  });

  test("writes a not-yet-existing file under a granted directory", async () => {
    const ctx = await context([`write:${granted}`]);
    const file = joinPath(granted, "new.txt");
    await ctx.fs.writeTextFile(file, "written");
    assert.equal(await rfs.readTextFile(file), "written");
    await ctx.fs.writeFile(joinPath(granted, "new.bin"), new Uint8Array([1, 2, 3]));
    assert.deepEqual(await rfs.readFile(joinPath(granted, "new.bin")), new Uint8Array([1, 2, 3]));
    await ctx.fs.mkdir(joinPath(granted, "made", "deep"));
    assert.equal((await rfs.stat(joinPath(granted, "made", "deep"))).isDirectory, true);
    await ctx.fs.remove(joinPath(granted, "made"));
    assert.equal(await rfs.exists(joinPath(granted, "made")), false);
  });

  test("a write grant does not allow reads and a read grant does not allow writes", async () => {
    const readOnly = await context([`read:${granted}`]);
    await assert.rejects(
      readOnly.fs.writeTextFile(joinPath(granted, "ro.txt"), "x"),
      coded("E_CAPABILITY_DENIED", "may not write", `--allow write:${granted}/ro.txt`),
    );
    await assert.rejects(
      readOnly.fs.remove(joinPath(granted, "inside.txt")),
      coded("E_CAPABILITY_DENIED"),
    );
    assert.equal(await rfs.exists(joinPath(granted, "ro.txt")), false);
    assert.equal(await rfs.exists(joinPath(granted, "inside.txt")), true);

    const writeOnly = await context([`write:${granted}`]);
    await assert.rejects(
      writeOnly.fs.readTextFile(joinPath(granted, "inside.txt")),
      coded("E_CAPABILITY_DENIED", "may not read"),
    );
  });

  test("writes outside the grant are denied and nothing is written", async () => {
    const ctx = await context([`write:${granted}`]);
    await assert.rejects(
      ctx.fs.writeTextFile(joinPath(outside, "x.txt"), "x"),
      coded("E_CAPABILITY_DENIED"),
    );
    await assert.rejects(ctx.fs.remove(outside), coded("E_CAPABILITY_DENIED"));
    assert.equal(await rfs.exists(joinPath(outside, "x.txt")), false);
    assert.equal(await rfs.exists(outside), true);
  });

  test("a granted path that is itself a symlink works through the link", async () => {
    const alias = joinPath(root, "alias");
    const ctx = await context([`read:${alias}`]);
    assert.equal(await ctx.fs.readTextFile(joinPath(alias, "inside.txt")), "inside");
    // Lexically inside the real directory, but that directory was not what was granted.
    await assert.rejects(
      ctx.fs.readTextFile(joinPath(granted, "inside.txt")),
      coded("E_CAPABILITY_DENIED"),
    );
  });

  test("a path that is empty or holds NUL is a TypeError", async () => {
    const ctx = await context([`read:${granted}`]);
    await assert.rejects(ctx.fs.readTextFile(""), TypeError);
    await assert.rejects(ctx.fs.readTextFile(`${granted}/a\0b`), TypeError);
  });

  test("realPathOrParent resolves what exists and appends the missing tail", async () => {
    assert.equal(
      await realPathOrParent(rfs, joinPath(root, "alias", "not", "yet.txt")),
      joinPath(granted, "not", "yet.txt"),
    );
    assert.equal(
      await realPathOrParent(rfs, joinPath(granted, "link-file")),
      joinPath(outside, "secret.txt"),
    );
  });

  test("realizeGrant resolves granted paths through symlinks and keeps other capabilities", async () => {
    const real = await realizeGrant(
      createGrant([`read:${root}/alias`, "net:example.com", `write:${root}/alias/new`]),
      rfs,
    );
    assert.deepEqual(real.toStrings(), [
      `read:${granted}`,
      "net:example.com",
      `write:${granted}/new`,
    ]);
  });

  test("grantCoversPath checks a path lexically against grants of one kind", () => {
    const grant = createGrant(["read:/data", "write:/out"]);
    assert.equal(grantCoversPath(grant, "read", "/data/x"), true);
    assert.equal(grantCoversPath(grant, "read", "/out/x"), false);
    assert.equal(grantCoversPath(grant, "write", "/out"), true);
    assert.equal(grantCoversPath(createGrant(["read"]), "read", "/anything"), true);
  });
});

describe(`createPluginContext: env, processes and gpu (${runtime.name})`, () => {
  test("env.get returns a granted variable and denies any other", async () => {
    const ctx = await context(["env:PATH"]);
    assert.equal(ctx.env.get("PATH"), runtime.env.get("PATH"));
    assert.ok((ctx.env.get("PATH") ?? "").length > 0);
    assert.throws(
      () => ctx.env.get("HOME"),
      coded("E_CAPABILITY_DENIED", 'Plugin "ctx-test" may not read env "HOME"', "--allow env:HOME"),
    );
  });

  test("env wildcards grant a prefix", async () => {
    const ctx = await context(["env:PA*"]);
    assert.equal(ctx.env.get("PATH"), runtime.env.get("PATH"));
    assert.throws(() => ctx.env.get("HOME"), coded("E_CAPABILITY_DENIED"));
  });

  test("run of a granted command works", async () => {
    const ctx = await context(["run:echo"]);
    const out = await ctx.run("echo", { args: ["hello", "keel"] });
    assert.equal(out.success, true);
    assert.equal(out.stdout, "hello keel\n");
  });

  test("spawn of a granted command works", async () => {
    const ctx = await context(["run:echo"]);
    const child = ctx.spawn("echo", { args: ["spawned"], stdout: "piped" });
    const text = await new Response(child.stdout).text();
    assert.equal(text, "spawned\n");
    assert.equal((await child.status).success, true);
  });

  test("spawn of an ungranted command is denied before anything starts", async () => {
    const ctx = await context(["run:echo"]);
    assert.throws(
      () => ctx.spawn("sh", { args: ["-c", "true"] }),
      coded("E_CAPABILITY_DENIED", 'Plugin "ctx-test" may not run "sh"', "--allow run:sh"),
    );
    assert.throws(
      () => ctx.spawn("/bin/echo"),
      coded("E_CAPABILITY_DENIED", "--allow run:/bin/echo"),
    );
  });

  test("run of an ungranted command rejects (it does not throw synchronously)", async () => {
    const ctx = await context(["run:echo"]);
    let pending: Promise<unknown> | undefined;
    assert.doesNotThrow(() => {
      pending = ctx.run("sh", { args: ["-c", "true"] });
    });
    await assert.rejects(pending!, coded("E_CAPABILITY_DENIED", 'may not run "sh"'));
  });

  test("gpu without a grant is denied", async () => {
    const ctx = await context([]);
    assert.throws(
      () => ctx.gpu(),
      coded("E_CAPABILITY_DENIED", 'Plugin "ctx-test" may not use the GPU', "--allow gpu"),
    );
  });

  test("gpu with a grant returns the runtime's WebGPU", async () => {
    const fake = { requestAdapter: () => Promise.resolve(null) } as unknown as GPU;
    const ctx = await context(["gpu"], { runtime: { ...runtime, gpu: () => fake } });
    assert.equal(ctx.gpu(), fake);
  });
});

describe("createPluginContext: services and identity", () => {
  test("provide and require go through the kernel's service table", async () => {
    const services = new ServiceTable();
    const Greeter = defineService<{ greet(n: string): string }>("greeter");
    const a = await createPluginContext({ name: "a", grant: createGrant([]), logger, services });
    const b = await createPluginContext({ name: "b", grant: createGrant([]), logger, services });
    a.provide(Greeter, { greet: (n) => `hi ${n}` });
    assert.equal(b.require(Greeter).greet("x"), "hi x");
    assert.throws(
      () => b.provide(Greeter, { greet: () => "" }),
      coded("E_SERVICE_DUPLICATE", 'provided by both "a" and "b"'),
    );
    assert.throws(
      () => b.require(defineService("nothing")),
      coded("E_SERVICE_MISSING", 'Plugin "b" requires service "nothing"'),
    );
  });

  test("without a service table provide and require are unsupported", async () => {
    const ctx = await createPluginContext({ name: "iso", grant: createGrant([]), logger });
    const Key = defineService<number>("k");
    assert.throws(() => ctx.provide(Key, 1), coded("E_RUNTIME_UNSUPPORTED", 'Plugin "iso"'));
    assert.throws(() => ctx.require(Key), coded("E_RUNTIME_UNSUPPORTED", 'Plugin "iso"'));
  });

  test("carries name, grant and runtime name, and is frozen", async () => {
    const ctx = await context(["env:HOME"]);
    assert.equal(ctx.name, "ctx-test");
    assert.equal(ctx.runtime, runtime.name);
    assert.deepEqual(ctx.grant.toStrings(), ["env:HOME"]);
    assert.ok(Object.isFrozen(ctx));
    assert.ok(Object.isFrozen(ctx.fs));
  });

  test("on an edge host (no runtime) files, env and processes are unsupported", async () => {
    const ctx = await context(["read:/data", "env:HOME", "run:echo"], { runtime: undefined });
    assert.equal(ctx.runtime, "edge");
    await assert.rejects(
      ctx.fs.readTextFile("/data/x"),
      coded("E_RUNTIME_UNSUPPORTED", "no file system"),
    );
    assert.throws(() => ctx.env.get("HOME"), coded("E_RUNTIME_UNSUPPORTED", "no environment"));
    assert.throws(() => ctx.env.get("PATH"), coded("E_CAPABILITY_DENIED"));
    assert.throws(() => ctx.spawn("echo"), coded("E_RUNTIME_UNSUPPORTED", "no processes"));
  });
});

describe(`createPluginContext: fetch (${runtime.name})`, () => {
  let granted: Server;
  let other: Server;
  let otherHits = 0;
  const base = (s: Server) => `http://127.0.0.1:${s.port}`;

  before(async () => {
    other = await runtime.serve!((req) => {
      otherHits++;
      return new Response(`other auth=${req.headers.get("authorization")}`);
    });
    granted = await runtime.serve!((req) => {
      const path = new URL(req.url).pathname;
      if (path === "/to-other") return Response.redirect(`${base(other)}/`, 302);
      if (path === "/to-other-307") return Response.redirect(`${base(other)}/`, 307);
      if (path === "/to-self") {
        return new Response(null, { status: 302, headers: { location: "/echo" } });
      }
      if (path === "/loop") {
        return new Response(null, { status: 302, headers: { location: "/loop" } });
      }
      if (path === "/echo") {
        return new Response(`granted ${req.method} auth=${req.headers.get("authorization")}`);
      }
      return new Response("hello from granted");
    });
  });

  after(async () => {
    await granted.close();
    await other.close();
  });

  test("a granted host:port is reachable", async () => {
    const ctx = await context([`net:127.0.0.1:${granted.port}`]);
    const res = await ctx.fetch(`${base(granted)}/`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello from granted");
    const viaUrl = await ctx.fetch(new URL(`${base(granted)}/`));
    assert.equal(await viaUrl.text(), "hello from granted");
    const viaRequest = await ctx.fetch(
      new Request(`${base(granted)}/echo`, { method: "POST", body: "x" }),
    );
    assert.equal(await viaRequest.text(), "granted POST auth=null");
  });

  test("another port on the same host is denied before connecting", async () => {
    const ctx = await context([`net:127.0.0.1:${granted.port}`]);
    const before = otherHits;
    await assert.rejects(
      ctx.fetch(`${base(other)}/`),
      coded(
        "E_CAPABILITY_DENIED",
        `Plugin "ctx-test" may not connect to "127.0.0.1:${other.port}"`,
        `--allow net:127.0.0.1:${other.port}`,
      ),
    );
    assert.equal(otherHits, before);
  });

  test("a host name is not its address: localhost is not 127.0.0.1", async () => {
    const ctx = await context([`net:127.0.0.1:${granted.port}`]);
    await assert.rejects(
      ctx.fetch(`http://localhost:${granted.port}/`),
      coded("E_CAPABILITY_DENIED", `--allow net:localhost:${granted.port}`),
    );
  });

  test("a redirect from the granted server to a non-granted host:port is denied", async () => {
    const ctx = await context([`net:127.0.0.1:${granted.port}`]);
    const before = otherHits;
    await assert.rejects(
      ctx.fetch(`${base(granted)}/to-other`),
      coded("E_CAPABILITY_DENIED", `connect to "127.0.0.1:${other.port}"`),
    );
    await assert.rejects(
      ctx.fetch(`${base(granted)}/to-other-307`, { method: "POST", body: "data" }),
      coded("E_CAPABILITY_DENIED"),
    );
    assert.equal(otherHits, before);
  });

  test("a redirect within the grant is followed", async () => {
    const ctx = await context([`net:127.0.0.1:${granted.port}`]);
    const res = await ctx.fetch(`${base(granted)}/to-self`, { method: "POST", body: "x" });
    assert.equal(res.status, 200);
    // 302 turns a POST into a GET, as browsers do.
    assert.equal(await res.text(), "granted GET auth=null");
  });

  test("redirect: manual returns the redirect itself", async () => {
    const ctx = await context([`net:127.0.0.1:${granted.port}`]);
    const before = otherHits;
    const res = await ctx.fetch(`${base(granted)}/to-other`, { redirect: "manual" });
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), `${base(other)}/`);
    await res.body?.cancel();
    assert.equal(otherHits, before);
  });

  test("a redirect loop ends with a TypeError", async () => {
    const ctx = await context([`net:127.0.0.1:${granted.port}`]);
    await assert.rejects(
      ctx.fetch(`${base(granted)}/loop`),
      (e) => e instanceof TypeError && /Too many redirects/.test(e.message),
    );
  });

  test("credentials stay on their origin: Authorization is kept on the same origin, dropped across origins", async () => {
    const ctx = await context(["net:127.0.0.1"]);
    const headers = { authorization: "Bearer s3cret" };
    const same = await ctx.fetch(`${base(granted)}/to-self`, { headers });
    assert.equal(await same.text(), "granted GET auth=Bearer s3cret");
    const cross = await ctx.fetch(`${base(granted)}/to-other`, { headers });
    assert.equal(await cross.text(), "other auth=null");
  });

  test("only http(s) URLs may be fetched", async () => {
    const ctx = await context(["net"]);
    await assert.rejects(
      ctx.fetch("data:text/plain,hi"),
      coded("E_CAPABILITY_DENIED", 'may only fetch http(s) URLs, not "data:"'),
    );
  });

  test("uses the fetch it was given", async () => {
    const seen: string[] = [];
    const ctx = await createPluginContext({
      name: "f",
      grant: createGrant(["net:example.com:443"]),
      logger,
      fetch: (input) => {
        seen.push(input instanceof Request ? input.url : String(input));
        return Promise.resolve(new Response("stubbed"));
      },
    });
    assert.equal(await (await ctx.fetch("https://example.com/a")).text(), "stubbed");
    assert.deepEqual(seen, ["https://example.com/a"]);
    await assert.rejects(
      ctx.fetch("http://example.com/a"),
      coded("E_CAPABILITY_DENIED", "--allow net:example.com:80"),
    );
    assert.equal(seen.length, 1);
  });
});
