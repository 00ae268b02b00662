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
  const { dirname, join } = await import("node:path");
  const { fileURLToPath } = await import("node:url");

  const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
  const root = dirname(here);
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
    join(here, "main.ts"),
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
