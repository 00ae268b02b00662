/**
 * A real Keel registry for tests of `keel add`: served on 127.0.0.1 and a free port, with plugin
 * fixtures published through the HTTP publish route (`PUT /<name>`, npm's body), and a hook to
 * rewrite answers (to serve tampered tarballs or documents). Test code only.
 * @module
 */

import type { Runtime, Server } from "../core/mod.ts";
import { issueToken, type OpenRegistry, openRegistry } from "../registry/mod.ts";
import { escapePackageName, publishDocument } from "../registry/client.ts";
import { packTarball } from "../registry/tarball.ts";

/** A plugin package to publish. */
export interface FixturePlugin {
  readonly name: string;
  readonly version: string;
  readonly capabilities?: readonly string[];
  /** The kernel range; default "^1". */
  readonly kernel?: string;
  /** False: publish a package without a `keel` field. */
  readonly keel?: boolean;
  /** The dist-tags the publish sets; default { latest: version }. */
  readonly tags?: readonly string[];
}

/**
 * The module of a fixture plugin: a plain object (no imports) whose `beforeRun` throws a report
 * of what the isolated process sees: its grant, and two environment variables read straight
 * from Deno (so the runtime's permission wall answers, not the context).
 */
export function fixtureModule(p: FixturePlugin): string {
  return `export default {
  name: ${JSON.stringify(p.name)},
  version: ${JSON.stringify(p.version)},
  kernel: ${JSON.stringify(p.kernel ?? "^1")},
  capabilities: ${JSON.stringify(p.capabilities ?? [])},
  setup(ctx) {
    const read = (name) => {
      try {
        return Deno.env.get(name) ?? "unset";
      } catch (e) {
        return "denied:" + e.name;
      }
    };
    return {
      beforeRun() {
        throw new Error("REPORT" + JSON.stringify({ grant: ctx.grant.toStrings(), a: read("KEEL_FIXTURE_A"), b: read("KEEL_FIXTURE_B") }) + "END");
      },
    };
  },
};
`;
}

/** The files of a fixture plugin's package. */
export function fixtureFiles(p: FixturePlugin): Record<string, string> {
  const pj: Record<string, unknown> = {
    name: p.name,
    version: p.version,
    description: `${p.name}, a test plugin`,
    type: "module",
    main: "index.js",
  };
  if (p.keel !== false) pj.keel = { entry: "index.js", capabilities: [...(p.capabilities ?? [])], kernel: p.kernel ?? "^1" };
  return {
    "package.json": JSON.stringify(pj, null, 2) + "\n",
    "index.js": fixtureModule(p),
    "lib/util.js": `export const util = ${JSON.stringify(p.version)};\n`,
    "README.md": `# ${p.name}\n`,
  };
}

/** Rewrites an answer, or returns undefined to leave it. */
export type Filter = (request: Request, response: Response) => Promise<Response | undefined> | Response | undefined;

/** A registry served for a test. */
export interface TestRegistry {
  readonly url: string;
  readonly registry: OpenRegistry;
  /** A publish token of user "acme". */
  readonly token: string;
  /** Answer rewriters, applied in order; tests push and splice them. */
  readonly filters: Filter[];
  /** Publishes a fixture through `PUT /<name>`; throws unless 201. */
  publish(p: FixturePlugin): Promise<void>;
  /** Yanks a version through `PUT /-/keel/yank/<name>/<version>`. */
  yank(name: string, version: string): Promise<void>;
  close(): Promise<void>;
}

/** Starts a registry in `dir` on 127.0.0.1 and a free port. */
export async function startTestRegistry(runtime: Runtime, dir: string): Promise<TestRegistry> {
  // The server starts first: the registry's public URL needs its port.
  const opened: { registry?: OpenRegistry } = {};
  const filters: Filter[] = [];
  const server: Server = await runtime.serve!(async (request) => {
    const registry = opened.registry;
    if (registry === undefined) return new Response(null, { status: 503 });
    // Plain bodies, so a filter can read and rewrite them.
    const headers = new Headers(request.headers);
    headers.delete("accept-encoding");
    const plain = new Request(request, { headers });
    let response = await registry.app.fetch(plain);
    for (const filter of filters) response = (await filter(plain, response.clone())) ?? response;
    return response;
  }, { hostname: "127.0.0.1", port: 0 });
  const url = server.url;
  const registry = await openRegistry({ runtime, dir, baseUrl: url, passwordIterations: 1_000 });
  opened.registry = registry;
  const { token } = await issueToken(registry.db, { user: "acme", scope: "admin", now: Date.now() });
  const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  return {
    url,
    registry,
    token,
    filters,
    async publish(p) {
      const files = fixtureFiles(p);
      const pj = JSON.parse(files["package.json"]!) as Record<string, unknown> & { name: string; version: string };
      const tags = p.tags ?? ["latest"];
      const doc = await publishDocument(pj, await packTarball(files), { tag: tags[0]!, tarballUrl: `${url}/${p.name}/-/${p.name}-${p.version}.tgz` });
      const body = { ...doc.body, "dist-tags": Object.fromEntries(tags.map((t) => [t, p.version])) };
      const response = await fetch(url + doc.path, { method: "PUT", headers: auth, body: JSON.stringify(body) });
      const text = await response.text();
      if (response.status !== 201) throw new Error(`publish ${p.name}@${p.version}: ${response.status} ${text}`);
    },
    async yank(name, version) {
      const response = await fetch(`${url}/-/keel/yank/${escapePackageName(name)}/${version}`, { method: "PUT", headers: auth, body: JSON.stringify({ reason: "broken" }) });
      const text = await response.text();
      if (!response.ok) throw new Error(`yank ${name}@${version}: ${response.status} ${text}`);
    },
    async close() {
      await server.close();
      await registry.close();
    },
  };
}
