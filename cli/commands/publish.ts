/**
 * `keel publish [dir]`: publishes a plugin folder to a registry as `npm publish` does: reads
 * `dir/package.json` (default the current folder), checks its `keel` field, collects the files
 * (the `files` field of package.json when present, else everything but `node_modules/`, `.git/`,
 * `.keel/` and `keel.lock`; symlinks are never followed), packs them, and sends npm's publish
 * body (`PUT /<name>`) with the token from `KEEL_REGISTRY_TOKEN`. `--dry-run` shows what would
 * be published and sends nothing.
 *
 * Also home of {@link registryRequest}, the one write-capable HTTP call that `keel publish`,
 * `keel login` and `keel search` share.
 * @module
 */

import type { ArgsDef } from "citty";
import { ErrorCode, type ErrorCodeName, errorMessage, KeelError } from "../../core/errors.ts";
import { checkPackageName, escapePackageName, publishDocument } from "../../registry/client.ts";
import { validateKeelField } from "../../registry/keel-field.ts";
import { integrityOf, packTarball } from "../../registry/tarball.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { lastValue } from "../flags.ts";
import { REGISTRY_ENV, REGISTRY_TOKEN_ENV, registryClientFor } from "./add.ts";

const PUBLISH_ARGS = {
  dir: { type: "positional", description: "The plugin folder, holding package.json (default the current folder)", required: false },
  tag: { type: "string", valueHint: "tag", description: "The dist-tag to set (default latest)" },
  registry: { type: "string", valueHint: "url", description: `The registry (default ${REGISTRY_ENV}, else keel.lock's, else http://127.0.0.1:4873); token from ${REGISTRY_TOKEN_ENV}` },
  "dry-run": { type: "boolean", description: "Show what would be published; send nothing" },
  json: { type: "boolean", description: "Print what was published as JSON on stdout" },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

/** Folders and files never published when package.json has no `files` field. */
const IGNORED = new Set(["node_modules", ".git", ".keel", "keel.lock"]);
/** Published whatever `files` says, as npm does. */
const ALWAYS = /^(package\.json|readme(\.[^/]*)?|license(\.[^/]*)?|licence(\.[^/]*)?)$/i;

function usage(message: string): KeelError {
  return new KeelError("E_CLI_USAGE", message);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Options for {@link registryRequest}. */
export interface RegistryRequest {
  readonly method: "GET" | "PUT";
  /** The path after the registry URL, starting with "/". */
  readonly path: string;
  readonly body?: unknown;
  /** Sent as `Authorization: Bearer`. */
  readonly token?: string;
  /** What the request does, for messages ("the publish of x@1.0.0"). */
  readonly what: string;
}

/**
 * Sends one JSON request to the registry at `url` and returns the parsed answer. An error answer
 * becomes a KeelError with the registry's own code when it sent a known one (so a 409 is
 * `E_REGISTRY_VERSION_EXISTS`), else a code from the status.
 * @throws {KeelError} `E_REGISTRY_*`
 */
export async function registryRequest(url: string, request: RegistryRequest): Promise<unknown> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (request.body !== undefined) headers["content-type"] = "application/json";
  if (request.token !== undefined) headers.authorization = `Bearer ${request.token}`;
  let response: Response;
  try {
    response = await fetch(url + request.path, {
      method: request.method,
      headers,
      ...(request.body === undefined ? {} : { body: JSON.stringify(request.body) }),
      signal: AbortSignal.timeout(120_000),
    });
  } catch (e) {
    throw new KeelError("E_REGISTRY_UNREACHABLE", `Cannot reach the registry at ${url} for ${request.what} (${errorMessage(e)}); check the URL (--registry or ${REGISTRY_ENV}) and that the registry runs`, { cause: e });
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = text === "" ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (response.ok) {
    if (body === undefined) throw new KeelError("E_REGISTRY_UNREACHABLE", `The registry at ${url} answered ${request.what} with something that is not JSON; is ${url} an npm registry?`);
    return body;
  }
  const said = isRecord(body) && typeof body.error === "string" ? body.error.slice(0, 500) : "";
  const sent = isRecord(body) && typeof body.code === "string" && Object.hasOwn(ErrorCode, body.code) && body.code.startsWith("E_REGISTRY_")
    ? body.code as ErrorCodeName
    : undefined;
  const details = { url: url + request.path, status: response.status };
  if (sent !== undefined && said !== "") throw new KeelError(sent, said, { details });
  const more = said === "" ? "" : ` (the registry said: ${said})`;
  const code: ErrorCodeName = response.status === 401
    ? "E_REGISTRY_UNAUTHORIZED"
    : response.status === 403
    ? "E_REGISTRY_FORBIDDEN"
    : response.status === 404
    ? "E_REGISTRY_NOT_FOUND"
    : response.status === 409
    ? "E_REGISTRY_VERSION_EXISTS"
    : response.status === 413
    ? "E_REGISTRY_TOO_LARGE"
    : response.status === 429
    ? "E_REGISTRY_RATE_LIMITED"
    : response.status >= 500
    ? "E_REGISTRY_UNREACHABLE"
    : "E_REGISTRY_REQUEST_INVALID";
  throw new KeelError(code, `The registry at ${url} refused ${request.what} with HTTP ${response.status}${more}`, { details });
}

/** Turns an npm `files` entry into a test of a package path (plain paths, folders, `*` and `**`). */
function filesMatcher(entry: string): (path: string) => boolean {
  const clean = entry.replace(/^\.?\/+/, "").replace(/\/+$/, "");
  if (!/[*?]/.test(clean)) return (path) => path === clean || path.startsWith(clean + "/");
  const pattern = clean.split("/").map((segment) =>
    segment === "**" ? "(?:.*)" : segment.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]")
  ).join("/").replace(/\(\?:\.\*\)\//g, "(?:.*/)?");
  const re = new RegExp(`^${pattern}(?:/.*)?$`);
  return (path) => re.test(path);
}

/** What {@link collectFiles} found. */
interface Collected {
  readonly files: Record<string, Uint8Array>;
  readonly skippedLinks: string[];
}

/** Reads the files to publish, never following a symlink; refuses one over `maxBytes`. */
async function collectFiles(env: CliEnv, dir: string, filesField: unknown, maxBytes: number): Promise<Collected> {
  const fs = env.runtime.fs!;
  let include: ((path: string) => boolean) | undefined;
  if (filesField !== undefined) {
    if (!Array.isArray(filesField) || filesField.some((f) => typeof f !== "string" || f.trim() === "" || f.startsWith("!"))) {
      throw new KeelError("E_REGISTRY_MANIFEST_INVALID", 'The "files" field of package.json must be a list of paths or globs, e.g. ["dist", "README.md"] (negations "!x" are not supported)');
    }
    const matchers = (filesField as string[]).map(filesMatcher);
    include = (path) => ALWAYS.test(path) || matchers.some((m) => m(path));
  }
  const files: Record<string, Uint8Array> = {};
  const skippedLinks: string[] = [];
  let total = 0;
  async function walk(rel: string): Promise<void> {
    const entries = await fs.readDir(rel === "" ? dir : `${dir}/${rel}`);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
      if (IGNORED.has(entry.name) && (rel === "" || entry.name === "node_modules" || entry.name === ".git")) continue;
      // lstat, not the listing alone: a symlink is skipped whatever it points at.
      const info = await fs.lstat(`${dir}/${path}`);
      if (entry.isSymlink || info.isSymlink) {
        skippedLinks.push(path);
        continue;
      }
      if (info.isDirectory) {
        await walk(path);
        continue;
      }
      if (!info.isFile || (include !== undefined && !include(path))) continue;
      if (info.size > maxBytes) {
        throw new KeelError("E_REGISTRY_TOO_LARGE", `"${path}" is ${info.size} bytes, over the registry's tarball limit of ${maxBytes}; leave it out with the "files" field of package.json`, {
          details: { path, size: info.size, limit: maxBytes },
        });
      }
      total += info.size;
      if (total > maxBytes * 8) {
        throw new KeelError("E_REGISTRY_TOO_LARGE", `The files to publish add up to over ${maxBytes * 8} bytes; list what to publish in the "files" field of package.json`, { details: { limit: maxBytes } });
      }
      files[path] = await fs.readFile(`${dir}/${path}`);
    }
  }
  await walk("");
  return { files, skippedLinks };
}

/** What `keel publish` reports. */
interface PublishReport {
  readonly name: string;
  readonly version: string;
  readonly tag: string;
  readonly integrity: string;
  readonly shasum: string;
  readonly size: number;
  readonly unpackedSize: number;
  readonly fileCount: number;
  readonly files: readonly string[];
  readonly capabilities: readonly string[];
  readonly registry: string;
  readonly dryRun: boolean;
}

async function publishCommand(env: CliEnv): Promise<void> {
  const { runtime, flags } = env;
  const [, dirArg, ...extra] = flags.positionals;
  if (extra.length > 0) throw usage(`keel publish takes one folder; got ${[dirArg, ...extra].map((s) => `"${s}"`).join(", ")}`);
  const dir = runtime.resolvePath(dirArg ?? ".").replace(/\/+$/, "") || "/";
  const fs = runtime.fs;
  if (fs === undefined) throw new KeelError("E_CLI_USAGE", "keel publish needs a file system; this host has none");
  const tag = lastValue(flags, "tag") ?? "latest";
  if (!/^[A-Za-z][A-Za-z0-9._-]{0,127}$/.test(tag) || /^v?\d/.test(tag)) {
    throw usage(`--tag takes a dist-tag like "latest" or "beta" (a letter first, not a version); got "${tag}"`);
  }
  const dryRun = flags.booleans.has("dry-run");

  let pj: unknown;
  try {
    pj = JSON.parse(await fs.readTextFile(`${dir}/package.json`));
  } catch (e) {
    if (KeelError.is(e, "E_RUNTIME_NOT_FOUND")) {
      throw new KeelError("E_REGISTRY_MANIFEST_INVALID", `No package.json in ${dir}; run keel publish in a plugin folder, or name one: keel publish path/to/plugin`, { cause: e });
    }
    throw new KeelError("E_REGISTRY_MANIFEST_INVALID", `${dir}/package.json is not valid JSON (${errorMessage(e)}); fix it and publish again`, { cause: e });
  }
  if (!isRecord(pj)) throw new KeelError("E_REGISTRY_MANIFEST_INVALID", `${dir}/package.json must hold an object`);
  const { name, version } = pj;
  if (typeof name !== "string") throw new KeelError("E_REGISTRY_MANIFEST_INVALID", `${dir}/package.json has no "name"; add one, e.g. "@acme/plugin"`);
  checkPackageName(name);
  if (typeof version !== "string" || !/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/.test(version)) {
    throw new KeelError("E_REGISTRY_MANIFEST_INVALID", `${dir}/package.json has no semver "version" like "1.0.0" (got ${JSON.stringify(version)}); add or fix it`);
  }
  if (pj.keel === undefined) {
    throw new KeelError("E_REGISTRY_MANIFEST_INVALID", `${name}@${version} has no "keel" field, so it is not a Keel plugin; add one to package.json: "keel": { "entry": "index.js", "capabilities": [], "kernel": "^1" }`, {
      details: { field: "keel" },
    });
  }
  validateKeelField(pj.keel);

  const client = await registryClientFor(env, dir);
  const { files, skippedLinks } = await collectFiles(env, dir, pj.files, client.maxTarballBytes);
  for (const link of skippedLinks) env.out.warn(`Skipped the symlink "${link}": symlinks are never published`);
  const paths = Object.keys(files);
  const keel = validateKeelField(pj.keel, paths);
  const bytes = await packTarball(files);
  if (bytes.byteLength > client.maxTarballBytes) {
    throw new KeelError("E_REGISTRY_TOO_LARGE", `The tarball of ${name}@${version} is ${bytes.byteLength} bytes, over the registry's limit of ${client.maxTarballBytes}; leave files out with the "files" field of package.json`, {
      details: { size: bytes.byteLength, limit: client.maxTarballBytes },
    });
  }
  const { integrity, shasum } = await integrityOf(bytes);
  const file = `${name}-${version}.tgz`;
  const report: PublishReport = {
    name,
    version,
    tag,
    integrity,
    shasum,
    size: bytes.byteLength,
    unpackedSize: Object.values(files).reduce((sum, f) => sum + f.byteLength, 0),
    fileCount: paths.length,
    files: paths,
    capabilities: keel.capabilities,
    registry: client.url,
    dryRun,
  };

  if (!dryRun) {
    const token = runtime.env.get(REGISTRY_TOKEN_ENV);
    if (token === undefined || token === "") {
      throw new KeelError("E_REGISTRY_UNAUTHORIZED", `Publishing needs a token in ${REGISTRY_TOKEN_ENV}; get one with: export ${REGISTRY_TOKEN_ENV}=$(keel login --user NAME)`);
    }
    const tarballUrl = `${client.url}/${escapePackageName(name)}/-/${file.slice(file.lastIndexOf("/") + 1)}`;
    const doc = await publishDocument({ ...pj, name, version }, bytes, { tag, tarballUrl });
    await registryRequest(client.url, { method: "PUT", path: doc.path, token, what: `the publish of ${name}@${version}`, body: doc.body });
  }

  if (flags.booleans.has("json")) {
    await runtime.writeStdout(JSON.stringify({ ok: true, ...report }) + "\n");
    return;
  }
  const lines = [
    `${dryRun ? "Would publish" : "Published"} ${name}@${version} (tag ${tag}) to ${client.url}`,
    `  files:     ${paths.length}`,
    ...paths.map((p) => `    ${p} (${files[p]!.byteLength} B)`),
    `  size:      ${report.size} B packed, ${report.unpackedSize} B unpacked`,
    `  integrity: ${integrity}`,
    `  asks for:  ${keel.capabilities.length === 0 ? "no capabilities" : keel.capabilities.join(", ")}`,
  ];
  await runtime.writeStdout(lines.join("\n") + "\n");
  if (dryRun) env.out.info("Dry run: nothing was sent");
  else env.out.success(`+ ${name}@${version}; install it with: keel add ${name}@${version}`);
}

/** The `publish` command. */
export const PUBLISH_COMMAND: CliCommand = {
  meta: { name: "publish", description: "Publish a plugin folder to a registry (npm's publish protocol); --dry-run shows what would go" },
  args: PUBLISH_ARGS,
  run: publishCommand,
};
