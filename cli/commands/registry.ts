/**
 * `keel registry serve` runs Keel's npm-protocol package registry (`registry/`) from one folder
 * (default `.keel/registry/`: `registry.db`, `tarballs/`, `signing-key.json`); `keel registry
 * token create|list|revoke` manages its access tokens, so CI can publish without an interactive
 * `npm login`.
 *
 * The registry binds 127.0.0.1:4873 unless told otherwise and serves plain HTTP (put TLS in front
 * of it to cross a network). Tarball URLs are built from `--public-url` (default the address it
 * listens on), never from request headers; set it once to the URL clients use, since lockfiles
 * record tarball URLs. It runs until SIGINT or SIGTERM, then stops the server, closes the database
 * and exits 0.
 *
 * `--db` puts the database elsewhere: another SQLite file, or Postgres (`postgres://...`, with an
 * optional `?schema=`); the token actions take it too. `--storage` puts tarballs in another
 * folder or an S3-compatible bucket (`s3://bucket/prefix?endpoint=...`, credentials from
 * `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`). The signing key stays in `--dir`.
 * @module
 */

import type { ArgsDef } from "citty";
import { editDistance } from "../../core/edit-distance.ts";
import { KeelError, type Server } from "../../core/mod.ts";
import {
  type BlobStore,
  type DbSpec,
  describeDb,
  describeStorage,
  issueToken,
  openBlobStore,
  openRegistry,
  openRegistryDb,
  parseDbOption,
  parseStorageOption,
  type RegistryDb,
  type StorageSpec,
  TOKEN_SCOPES,
  type TokenScope,
} from "../../registry/mod.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { allValues, integerFlag, lastValue } from "../flags.ts";
import { untilSignal } from "./signals.ts";

const ACTIONS = ["serve", "token"] as const;
const TOKEN_ACTIONS = ["create", "list", "revoke"] as const;
const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);
/** Verdaccio's port, which npm users know for a local registry. */
export const DEFAULT_REGISTRY_PORT = 4873;
/** Where the registry keeps its files unless --dir says otherwise. */
export const DEFAULT_REGISTRY_DIR = ".keel/registry";

const DESCRIPTION =
  "serve: an npm-protocol registry for Keel plugins (npm, bun and deno install from it); token create|list|revoke: access tokens for CI";

const ACTION_HELP = [
  "serve: run the registry until SIGINT/SIGTERM. Point clients at it with",
  "registry=<url>/ in .npmrc (npm, bun) or NPM_CONFIG_REGISTRY=<url>/ (deno); npm login asks",
  "for a name and password (sign-up is open on 127.0.0.1, closed elsewhere: see --signup).",
  "token create --user NAME --scope read|publish|admin [--package-scope @acme] [--expires DAYS]:",
  "prints a new token once, on stdout (creates the user when missing); put it in .npmrc as",
  "//host:port/:_authToken=<token>. token list --user NAME; token revoke <id>.",
  "",
  "Files (--dir, default .keel/registry): registry.db (SQLite), tarballs/, signing-key.json",
  "(the key that signs every version; keep it secret and backed up). --db and --storage move the",
  "database and the tarballs elsewhere (Postgres, S3); the signing key stays in --dir.",
].join("\n" + " ".repeat(12));

const REGISTRY_ARGS = {
  action: { type: "positional", description: ACTION_HELP, required: true },
  port: { type: "string", valueHint: "port", description: `serve: the port to listen on (default ${DEFAULT_REGISTRY_PORT}; 0 picks a free one)` },
  host: { type: "string", valueHint: "host", description: "serve: the address to bind (default 127.0.0.1; anything else lets other machines in: put TLS in front)" },
  dir: { type: "string", valueHint: "path", description: `The registry's folder (default ${DEFAULT_REGISTRY_DIR})` },
  "public-url": {
    type: "string",
    valueHint: "url",
    description: "serve: the URL clients reach the registry at, which tarball URLs are built from (default http://<host>:<port>)",
  },
  signup: { type: "string", valueHint: "open|closed", description: "serve: whether npm adduser may create users (default open on a loopback address, closed otherwise)" },
  "require-keel": { type: "boolean", description: 'serve: refuse packages without a "keel" field (a plugins-only registry)' },
  db: {
    type: "string",
    valueHint: "path|url",
    description:
      "serve, token: the database: a SQLite file (default <dir>/registry.db), or postgres://USER:PASSWORD@HOST:5432/DB[?schema=NAME] (tables are made on first use)",
  },
  storage: {
    type: "string",
    valueHint: "path|url",
    description:
      "serve: where tarballs go: a folder (default <dir>/tarballs) or file:///path, or s3://BUCKET/PREFIX?endpoint=URL&region=REGION with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) set",
  },
  user: { type: "string", valueHint: "name", description: "token: the user the token acts as" },
  scope: { type: "string", valueHint: "scope", description: 'token create: "read", "publish" or "admin" (each includes the ones before)' },
  "package-scope": { type: "string", valueHint: "@scope", description: "token create: limit the token to packages of one scope, e.g. @acme" },
  expires: { type: "string", valueHint: "days", description: "token create: days until the token expires (default never)" },
  json: { type: "boolean", description: "Print JSON on stdout (serve: { url, publicUrl, dir, db, storage } once listening)" },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

function pick<T extends string>(given: string, allowed: readonly T[], what: string): T {
  if ((allowed as readonly string[]).includes(given)) return given as T;
  const near = allowed.find((a) => editDistance(a, given) <= 2);
  throw usage(`${what} has no action "${given}"` + (near ? `; did you mean "${near}"?` : `; use ${allowed.join(", ")}`));
}

function noCommonFlags(env: CliEnv, what: string): void {
  for (const flag of ["plugin", "allow", "trust"]) {
    if (allValues(env.flags, flag).length > 0) throw usage(`${what} takes no --${flag}`);
  }
}

/** Flags that belong to another action are a usage error, not silently ignored. */
function onlyFlags(env: CliEnv, allowed: readonly string[], what: string): void {
  const given = [...env.flags.strings.keys(), ...env.flags.booleans];
  const common = new Set(["plugin", "allow", "trust", "debug", "help", "version", "json"]);
  const extra = given.filter((f) => !common.has(f) && !allowed.includes(f));
  if (extra.length > 0) throw usage(`${what} takes no ${extra.map((f) => `--${f}`).join(", ")}`);
}

function registryDir(env: CliEnv): string {
  return env.runtime.resolvePath(lastValue(env.flags, "dir") ?? DEFAULT_REGISTRY_DIR);
}

/** `--db` parsed, with a relative SQLite path resolved; the folder's registry.db without it. */
function dbSpec(env: CliEnv): DbSpec {
  const given = lastValue(env.flags, "db");
  if (given === undefined) return { kind: "sqlite", path: `${registryDir(env)}/registry.db` };
  const spec = parseDbOption(given);
  return spec.kind === "sqlite" ? { kind: "sqlite", path: env.runtime.resolvePath(spec.path) } : spec;
}

/** `--storage` parsed, with a relative folder resolved; the folder's tarballs/ without it. */
function storageSpec(env: CliEnv): StorageSpec {
  const given = lastValue(env.flags, "storage");
  if (given === undefined) return { kind: "folder", dir: `${registryDir(env)}/tarballs` };
  const spec = parseStorageOption(given, env.runtime.env);
  return spec.kind === "folder" ? { kind: "folder", dir: env.runtime.resolvePath(spec.dir) } : spec;
}

type PostgresModule = typeof import("../../registry/db-postgres.ts");

/** Opens the database `spec` names. Postgres' driver is loaded only when asked for. */
async function openDb(env: CliEnv, spec: DbSpec): Promise<RegistryDb> {
  if (spec.kind === "sqlite") return await openRegistryDb(env.runtime, spec.path);
  // A computed specifier, so that Deno loads the driver only for a Postgres --db.
  const { openPostgresRegistryDb } = await import(new URL("../../registry/db-postgres.ts", import.meta.url).href) as PostgresModule;
  try {
    return await openPostgresRegistryDb(spec.url, spec.schema === undefined ? {} : { schema: spec.schema });
  } catch (e) {
    if (KeelError.is(e)) throw e;
    const password = URL.canParse(spec.url) ? decodeURIComponent(new URL(spec.url).password) : "";
    const said = e instanceof Error ? e.message : String(e);
    throw new KeelError(
      "E_REGISTRY_STORAGE",
      `Cannot open the registry database ${describeDb(spec)} (${password === "" ? said : said.split(password).join("***")}): check the --db URL and that Postgres is running`,
      { cause: e },
    );
  }
}

async function serve(env: CliEnv, extra: readonly string[]): Promise<void> {
  const { runtime, flags } = env;
  if (extra.length > 0) throw usage(`keel registry serve takes no arguments, got ${extra.map((e) => `"${e}"`).join(", ")}`);
  onlyFlags(env, ["port", "host", "dir", "public-url", "signup", "require-keel", "db", "storage"], "keel registry serve");
  if (runtime.serve === undefined) throw new KeelError("E_RUNTIME_UNSUPPORTED", `keel registry serve needs a runtime that can serve HTTP; ${runtime.name} cannot`);
  const hostname = lastValue(flags, "host") ?? "127.0.0.1";
  const port = integerFlag(flags, "port", 0) ?? DEFAULT_REGISTRY_PORT;
  if (port > 65_535) throw usage(`--port takes 0 to 65535, got ${port}`);
  const publicUrl = lastValue(flags, "public-url");
  if (publicUrl !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(publicUrl);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== "http:" && parsed.protocol !== "https:") || parsed.search !== "" || parsed.hash !== "") {
      throw usage(`--public-url takes an http(s) URL without query or fragment, e.g. https://registry.example.com; got "${publicUrl}"`);
    }
  }
  const signupFlag = lastValue(flags, "signup");
  if (signupFlag !== undefined && signupFlag !== "open" && signupFlag !== "closed") throw usage(`--signup takes "open" or "closed", got "${signupFlag}"`);
  const loopback = LOOPBACK.has(hostname);
  const signup = signupFlag === undefined ? loopback : signupFlag === "open";
  const dir = registryDir(env);
  // Bad --db and --storage values fail here, before anything listens.
  const givenDb = lastValue(flags, "db") === undefined ? undefined : dbSpec(env);
  const givenStorage = lastValue(flags, "storage") === undefined ? undefined : storageSpec(env);
  const dbText = describeDb(givenDb ?? dbSpec(env));
  const storageText = describeStorage(givenStorage ?? storageSpec(env));

  // The app needs the public URL, which may need the port, which needs the server: bind first.
  let handler: (request: Request) => Response | Promise<Response> = () =>
    new Response(JSON.stringify({ error: "The registry is starting; retry", code: "E_REGISTRY_UNREACHABLE" }), { status: 503, headers: { "retry-after": "1" } });
  const signals = untilSignal(runtime);
  let server: Server | undefined;
  let close: (() => Promise<void>) | undefined;
  let db: RegistryDb | undefined;
  try {
    try {
      server = await runtime.serve((request) => handler(request), { hostname, port });
    } catch (e) {
      throw new KeelError("E_RUNTIME_UNSUPPORTED", `Cannot listen on ${hostname}:${port} (${e instanceof Error ? e.message : String(e)}); pick another --port, or stop what holds it`, { cause: e });
    }
    const baseUrl = (publicUrl ?? server.url).replace(/\/+$/, "");
    if (givenDb !== undefined) db = await openDb(env, givenDb);
    let blobs: BlobStore | undefined;
    if (givenStorage !== undefined) {
      blobs = openBlobStore(givenStorage, runtime);
      // One read now, so a missing bucket or wrong credentials stop the start, not a publish.
      await blobs.has(".keel-startup-check");
    }
    const registry = await openRegistry({
      runtime,
      dir,
      baseUrl,
      logger: env.logger,
      signup,
      requireKeelField: flags.booleans.has("require-keel"),
      ...(db === undefined ? {} : { db }),
      ...(blobs === undefined ? {} : { blobs }),
    });
    close = registry.close;
    handler = registry.app.fetch;
    if (!loopback) env.out.warn(`Listening on ${hostname}: other machines can reach this registry; HTTP is plain: put TLS in front`);
    env.out.success(
      `Registry listening on ${server.url} (public URL ${baseUrl}, folder ${dir}, database ${dbText}, storage ${storageText}, sign-up ${signup ? "open" : "closed"}); Ctrl-C to stop`,
    );
    if (flags.booleans.has("json")) await runtime.writeStdout(JSON.stringify({ url: server.url, publicUrl: baseUrl, dir, db: dbText, storage: storageText }) + "\n");
    const sig = await signals.done;
    env.out.info(`${sig}: stopping the registry`);
  } finally {
    signals.stop();
    await server?.close();
    await close?.();
    await db?.close();
  }
}

async function withDb<T>(env: CliEnv, fn: (db: RegistryDb) => Promise<T>): Promise<T> {
  const db = await openDb(env, dbSpec(env));
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

function requiredUser(env: CliEnv, what: string): string {
  const user = lastValue(env.flags, "user");
  if (user === undefined || user === "") throw usage(`${what} needs --user NAME`);
  return user;
}

async function token(env: CliEnv, rest: readonly string[]): Promise<void> {
  const [sub, ...extra] = rest;
  if (sub === undefined) throw usage("keel registry token needs an action: create, list or revoke");
  const action = pick(sub, TOKEN_ACTIONS, "keel registry token");
  const json = env.flags.booleans.has("json");
  if (action === "create") {
    if (extra.length > 0) throw usage(`keel registry token create takes no arguments, got ${extra.map((e) => `"${e}"`).join(", ")}`);
    onlyFlags(env, ["dir", "db", "user", "scope", "package-scope", "expires"], "keel registry token create");
    const user = requiredUser(env, "keel registry token create");
    const scope = lastValue(env.flags, "scope");
    if (scope === undefined) throw usage(`keel registry token create needs --scope ${TOKEN_SCOPES.join("|")}`);
    if (!(TOKEN_SCOPES as readonly string[]).includes(scope)) throw usage(`--scope takes ${TOKEN_SCOPES.map((s) => `"${s}"`).join(", ")}; got "${scope}"`);
    const days = integerFlag(env.flags, "expires");
    const packageScope = lastValue(env.flags, "package-scope");
    if (packageScope !== undefined && !/^@?[a-z0-9][a-z0-9._-]*$/.test(packageScope)) throw usage(`--package-scope takes a scope like @acme, got "${packageScope}"`);
    const now = Date.now();
    const { token: secret, record } = await withDb(env, (db) =>
      issueToken(db, {
        user,
        scope: scope as TokenScope,
        packageScope,
        expiresAt: days === undefined ? undefined : now + days * 86_400_000,
        description: "keel registry token create",
        now,
      })
    );
    const expires = record.expiresAt === null ? "never" : new Date(record.expiresAt).toISOString();
    env.out.success(`Token ${record.id} for "${user}" (scope ${record.scope}${record.packageScope === null ? "" : `, packages @${record.packageScope}/*`}, expires ${expires}); it is shown only this once`);
    await env.runtime.writeStdout(
      json
        ? JSON.stringify({ token: secret, id: record.id, user, scope: record.scope, packageScope: record.packageScope === null ? null : `@${record.packageScope}`, expiresAt: record.expiresAt === null ? null : expires }) + "\n"
        : secret + "\n",
    );
    return;
  }
  if (action === "list") {
    if (extra.length > 0) throw usage("keel registry token list takes no arguments");
    onlyFlags(env, ["dir", "db", "user"], "keel registry token list");
    const user = requiredUser(env, "keel registry token list");
    const list = await withDb(env, (db) => db.listTokens(user));
    if (json) {
      await env.runtime.writeStdout(JSON.stringify(list) + "\n");
      return;
    }
    const lines = list.map((t) =>
      `${t.id}  ${t.scope.padEnd(7)}  ${t.packageScope === null ? "any package" : `@${t.packageScope}/*`}  created ${new Date(t.createdAt).toISOString()}  expires ${t.expiresAt === null ? "never" : new Date(t.expiresAt).toISOString()}${t.description === null ? "" : `  (${t.description})`}`
    );
    await env.runtime.writeStdout(lines.length === 0 ? `No tokens for "${user}"\n` : lines.join("\n") + "\n");
    return;
  }
  const [id, ...more] = extra;
  if (id === undefined || more.length > 0) throw usage("keel registry token revoke takes one token id (see keel registry token list --user NAME)");
  onlyFlags(env, ["dir", "db"], "keel registry token revoke");
  const removed = await withDb(env, (db) => db.revokeToken(id));
  if (!removed) throw new KeelError("E_REGISTRY_NOT_FOUND", `No token has the id "${id}"; list them with keel registry token list --user NAME`);
  env.out.success(`Revoked token ${id}`);
  if (json) await env.runtime.writeStdout(JSON.stringify({ revoked: id }) + "\n");
}

async function registryCommand(env: CliEnv): Promise<void> {
  const [, action, ...rest] = env.flags.positionals;
  if (action === undefined) throw usage("keel registry needs an action: keel registry serve, or keel registry token create --user NAME --scope publish");
  noCommonFlags(env, "keel registry");
  const picked = pick(action, ACTIONS, "keel registry");
  if (picked === "serve") await serve(env, rest);
  else await token(env, rest);
}

/** The `registry` command. */
export const REGISTRY_COMMAND: CliCommand = {
  meta: { name: "registry", description: DESCRIPTION },
  args: REGISTRY_ARGS,
  run: registryCommand,
};
