/**
 * `keel add <spec>`: installs a plugin from a registry into the current folder (the project):
 * resolves the spec (a version, a semver range or a dist-tag; default `latest`), downloads and
 * verifies the tarball (sha512 integrity and the registry's signature, before anything is
 * unpacked), shows the capabilities it asks for and gets them approved, unpacks it under
 * `.keel/plugins/<name>/<version>/` and records it in `keel.lock`. Every command run in this
 * folder then loads it isolated, granted exactly what was approved.
 *
 * Approval: `--yes` approves everything; `--allow CAP` (repeatable) approves what the flags
 * cover and refuses if the plugin asks for more; otherwise, when stdin is a terminal, it asks
 * "Grant these capabilities? [y/N]"; otherwise (CI) it refuses with `E_CAPABILITY_DENIED`,
 * naming the flags to pass. An upgrade that asks for nothing new needs no approval.
 *
 * The registry is `--registry URL`, else `KEEL_REGISTRY`, else the one keel.lock records, else
 * `http://127.0.0.1:4873` (what `keel registry serve` listens on); a token, when the registry
 * needs one to read, comes from `KEEL_REGISTRY_TOKEN` (never the command line, where `ps`
 * would show it).
 * @module
 */

import type { ArgsDef } from "citty";
import { KeelError } from "../../core/mod.ts";
import { createRegistryClient, type RegistryClient } from "../../registry/client.ts";
import { addPlugin, type ApprovalPrompt } from "../../registry/install.ts";
import { readLockfile } from "../../registry/lockfile.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { allValues, lastValue } from "../flags.ts";

/** The registry `keel add` uses when nothing else names one: `keel registry serve`'s default address. */
export const DEFAULT_REGISTRY_URL = "http://127.0.0.1:4873";
/** The environment variable naming the registry. */
export const REGISTRY_ENV = "KEEL_REGISTRY";
/** The environment variable holding a registry token. */
export const REGISTRY_TOKEN_ENV = "KEEL_REGISTRY_TOKEN";

const ADD_ARGS = {
  spec: {
    type: "positional",
    description: "The plugin: NAME, NAME@VERSION, NAME@RANGE (^1.2, ~1.0.3, >=1 <3) or NAME@TAG (default latest)",
    required: true,
  },
  registry: {
    type: "string",
    valueHint: "url",
    description: `The registry (default ${REGISTRY_ENV}, else the one keel.lock records, else ${DEFAULT_REGISTRY_URL}); token from ${REGISTRY_TOKEN_ENV}`,
  },
  allow: {
    type: "string",
    valueHint: "cap",
    description: "Approve a capability the plugin asks for, without a prompt; it must cover all of them. Repeatable",
  },
  yes: { type: "boolean", description: "Approve every capability the plugin asks for (CI). Read them first" },
  json: { type: "boolean", description: "Print what was installed as JSON on stdout" },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

/** The registry client the command line and environment describe. */
export async function registryClientFor(env: CliEnv, dir: string): Promise<RegistryClient> {
  const { runtime } = env;
  const flag = lastValue(env.flags, "registry");
  const fromEnv = runtime.env.get(REGISTRY_ENV);
  const fromLock = flag === undefined && (fromEnv === undefined || fromEnv === "") ? (await readLockfile(runtime, dir))?.registry : undefined;
  const url = flag ?? (fromEnv !== undefined && fromEnv !== "" ? fromEnv : undefined) ?? fromLock ?? DEFAULT_REGISTRY_URL;
  const token = runtime.env.get(REGISTRY_TOKEN_ENV);
  try {
    return createRegistryClient({ url, ...(token === undefined || token === "" ? {} : { token }) });
  } catch (e) {
    if (e instanceof TypeError) {
      throw usage(`${flag !== undefined ? "--registry" : REGISTRY_ENV} takes an http(s) URL like ${DEFAULT_REGISTRY_URL}; got "${url}"`);
    }
    throw e;
  }
}

/**
 * One line from stdin. The Runtime port has no stdin, so this (interactive) path alone loads
 * Node's process object, as `keel exec -` does.
 */
async function readLine(): Promise<string> {
  const { default: process } = await import("node:process");
  const stdin = process.stdin;
  return await new Promise<string>((resolve) => {
    let text = "";
    const done = (line: string) => {
      stdin.off("data", onData);
      stdin.off("end", onEnd);
      stdin.pause();
      resolve(line);
    };
    const onData = (chunk: unknown) => {
      text += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk as Uint8Array);
      const nl = text.indexOf("\n");
      if (nl >= 0) done(text.slice(0, nl));
    };
    const onEnd = () => done(text);
    stdin.on("data", onData);
    stdin.on("end", onEnd);
    stdin.resume();
  });
}

async function askApproval(env: CliEnv, prompt: ApprovalPrompt): Promise<boolean> {
  env.runtime.writeStderr(`${prompt.text}\n`);
  if (prompt.fullTrust.length > 0) {
    env.out.warn(`${prompt.fullTrust.join(", ")}: full trust, the plugin could do anything you can`);
  }
  env.runtime.writeStderr("Grant these capabilities? [y/N] ");
  const answer = (await readLine()).trim().toLowerCase();
  return answer === "y" || answer === "yes";
}

async function addCommand(env: CliEnv): Promise<void> {
  const { runtime, flags } = env;
  const [, spec, ...extra] = flags.positionals;
  if (spec === undefined) throw usage("keel add needs a plugin, as in: keel add @acme/plugin (or @acme/plugin@^1)");
  if (extra.length > 0) throw usage(`keel add takes one plugin at a time; got ${[spec, ...extra].map((s) => `"${s}"`).join(", ")}`);
  for (const flag of ["plugin", "trust"]) {
    if (allValues(flags, flag).length > 0) throw usage(`keel add takes no --${flag}`);
  }
  const allow = allValues(flags, "allow");
  const yes = flags.booleans.has("yes");
  const dir = runtime.cwd();
  const client = await registryClientFor(env, dir);
  const interactive = !yes && allow.length === 0 && runtime.isTerminal("stdin");
  const result = await addPlugin({
    runtime,
    client,
    spec,
    dir,
    allow,
    yes,
    ...(interactive ? { approve: (prompt: ApprovalPrompt) => askApproval(env, prompt) } : {}),
    logger: env.logger,
  });
  if (flags.booleans.has("json")) {
    await runtime.writeStdout(JSON.stringify({ ok: true, ...result }) + "\n");
    return;
  }
  const granted = result.granted.length === 0 ? "no capabilities" : `granted ${result.granted.join(", ")}`;
  const what = result.status === "unchanged"
    ? `${result.name}@${result.version} is already installed (${granted})`
    : `${result.status === "added" ? "Added" : result.status[0]!.toUpperCase() + result.status.slice(1)} ${result.name}@${result.version}` +
      `${result.previousVersion === undefined ? "" : ` (was ${result.previousVersion})`}, ${granted}; recorded in keel.lock`;
  env.out.success(what);
}

/** The `add` command. */
export const ADD_COMMAND: CliCommand = {
  meta: {
    name: "add",
    description: "Install a plugin from a registry: verify it, approve its capabilities, record it in keel.lock",
  },
  args: ADD_ARGS,
  run: addCommand,
};
