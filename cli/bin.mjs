#!/usr/bin/env node
// The package's "bin" (`npx keel`, `bunx keel`). Under Bun it runs the CLI in-process; under Node
// it starts the Deno binary Keel depends on, the same way the ./keel launcher does, with stdio
// inherited and the exit code passed through.
import process from "node:process";

/* global Bun */
if (typeof Bun !== "undefined") {
  const { main } = await import("./main.ts");
  process.exit(await main(process.argv.slice(2)));
} else {
  const { spawn } = await import("node:child_process");
  const { existsSync, realpathSync } = await import("node:fs");
  const { createRequire } = await import("node:module");
  const { dirname, join, sep } = await import("node:path");
  const { cpSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync } = await import("node:fs");
  const { homedir } = await import("node:os");

  // Deno will not strip types from .ts files under node_modules (it matches Node), so an
  // installed keel runs from a copy of its sources in a cache folder, one per version and install
  // place, whose node_modules links back to the folder keel was installed into.
  const sourcesOutsideNodeModules = (pkgRoot) => {
    const { version } = JSON.parse(readFileSync(join(pkgRoot, "package.json"), "utf8"));
    const cacheHome = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
    let hash = 0;
    for (const ch of pkgRoot) hash = (Math.imul(hash, 31) + ch.charCodeAt(0)) >>> 0;
    const target = join(cacheHome, "keel", `${version}-${hash.toString(36)}`);
    if (existsSync(join(target, "package.json"))) return target;
    const staging = `${target}.tmp-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(dirname(staging), { recursive: true });
    cpSync(pkgRoot, staging, {
      recursive: true,
      filter: (src) => !src.slice(pkgRoot.length).split(sep).includes("node_modules"),
    });
    // Dependencies: keel's own nested node_modules when it has one, else the folder it sits in.
    const nested = join(pkgRoot, "node_modules");
    const hoisted = dirname(pkgRoot).endsWith(`${sep}node_modules`)
      ? dirname(pkgRoot)
      : dirname(dirname(pkgRoot)); // a scoped install: node_modules/@scope/keel
    symlinkSync(existsSync(join(nested, "citty")) ? nested : hoisted, join(staging, "node_modules"), "dir");
    try {
      renameSync(staging, target);
    } catch {
      rmSync(staging, { recursive: true, force: true }); // another process won the race
    }
    return target;
  };
  const { fileURLToPath } = await import("node:url");

  const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
  let root = dirname(here);
  if (root.split(sep).includes("node_modules")) root = sourcesOutsideNodeModules(root);
  const findDeno = () => {
    const local = join(
      root,
      "node_modules",
      ".bin",
      process.platform === "win32" ? "deno.cmd" : "deno",
    );
    if (existsSync(local)) return local;
    try {
      // Installed as a dependency: the deno package sits beside keel in node_modules.
      const pkg = createRequire(join(root, "package.json")).resolve("deno/package.json");
      const exe = join(dirname(pkg), process.platform === "win32" ? "deno.exe" : "deno");
      if (existsSync(exe)) return exe;
    } catch {
      // not installed as a package; fall back to PATH
    }
    return "deno";
  };
  const args = [
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-run",
    "--allow-net",
    "--allow-sys",
    "--config",
    join(root, "deno.json"),
    join(root, "cli", "main.ts"),
    ...process.argv.slice(2),
  ];
  const child = spawn(findDeno(), args, { stdio: "inherit" });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(signal, () => child.kill(signal));
  }
  child.on("error", (error) => {
    process.stderr.write(
      `✖ keel needs Deno (${error.message}): run 'npm install' in ${root}, or install Deno\n`,
    );
    process.exit(1);
  });
  child.on("exit", (code, signal) => {
    process.exit(code ?? (signal === "SIGINT" ? 130 : 1));
  });
}
