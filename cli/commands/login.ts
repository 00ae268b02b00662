/**
 * `keel login --user NAME`: logs in to a registry as `npm login` does
 * (`PUT /-/user/org.couchdb.user:<name>`; a registry with open sign-up creates the user) and
 * prints the token it issues, once, on stdout, so that
 * `export KEEL_REGISTRY_TOKEN=$(keel login --user me)` works. The password comes from
 * `KEEL_REGISTRY_PASSWORD`, never a flag (where `ps` would show it). Nothing is written to disk.
 * @module
 */

import type { ArgsDef } from "citty";
import { KeelError } from "../../core/errors.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { lastValue } from "../flags.ts";
import { REGISTRY_ENV, REGISTRY_TOKEN_ENV, registryClientFor } from "./add.ts";
import { registryRequest } from "./publish.ts";

/** The environment variable holding the password `keel login` sends. */
export const REGISTRY_PASSWORD_ENV = "KEEL_REGISTRY_PASSWORD";

const LOGIN_ARGS = {
  user: { type: "string", valueHint: "name", description: `The user to log in as (the password comes from ${REGISTRY_PASSWORD_ENV})`, required: true },
  registry: { type: "string", valueHint: "url", description: `The registry (default ${REGISTRY_ENV}, else keel.lock's, else http://127.0.0.1:4873)` },
  json: { type: "boolean", description: "Print { user, token } as JSON on stdout" },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

async function loginCommand(env: CliEnv): Promise<void> {
  const { runtime, flags } = env;
  const [, ...extra] = flags.positionals;
  if (extra.length > 0) {
    throw usage(`keel login takes no arguments (the password comes from ${REGISTRY_PASSWORD_ENV}, never the command line); got ${extra.map((s) => `"${s}"`).join(", ")}`);
  }
  const user = lastValue(flags, "user");
  if (user === undefined || user === "") throw usage("keel login needs --user NAME, as in: KEEL_REGISTRY_PASSWORD=... keel login --user me");
  if (user.length > 64 || /[\s/:%?#]/.test(user)) throw usage(`--user takes a user name (letters, digits, ".", "_", "-"); got "${user.slice(0, 64)}"`);
  const password = runtime.env.get(REGISTRY_PASSWORD_ENV);
  if (password === undefined || password === "") {
    throw usage(`keel login reads the password from ${REGISTRY_PASSWORD_ENV}; set it (read -s ${REGISTRY_PASSWORD_ENV}; export ${REGISTRY_PASSWORD_ENV}) and run again`);
  }
  const client = await registryClientFor(env, runtime.cwd());
  const id = `org.couchdb.user:${user}`;
  const answer = await registryRequest(client.url, {
    method: "PUT",
    path: `/-/user/${encodeURIComponent(id)}`,
    what: `the login of "${user}"`,
    body: { _id: id, name: user, password, type: "user", roles: [], date: new Date().toISOString() },
  });
  const token = typeof answer === "object" && answer !== null ? (answer as Record<string, unknown>).token : undefined;
  if (typeof token !== "string" || token === "") {
    throw new KeelError("E_REGISTRY_UNREACHABLE", `The registry at ${client.url} answered the login without a token; is it an npm registry?`);
  }
  await runtime.writeStdout((flags.booleans.has("json") ? JSON.stringify({ ok: true, user, registry: client.url, token }) : token) + "\n");
  env.out.success(`Logged in to ${client.url} as "${user}"`);
  env.out.info(`The token is printed once, above, and saved nowhere; use it with: export ${REGISTRY_TOKEN_ENV}=$(keel login --user ${user})`);
}

/** The `login` command. */
export const LOGIN_COMMAND: CliCommand = {
  meta: { name: "login", description: `Log in to a registry and print a publish token (password from ${REGISTRY_PASSWORD_ENV})` },
  args: LOGIN_ARGS,
  run: loginCommand,
};
