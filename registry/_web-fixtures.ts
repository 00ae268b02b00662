/**
 * Test code only: publishes packages to a registry app through `PUT /<name>` with the body npm
 * sends, for the tests of the marketplace pages (`web.test.ts`, `tests/registry-web.test.ts`).
 * @module
 */

import { publishDocument } from "./client.ts";
import { packTarball } from "./tarball.ts";

/** A package to publish: its package.json fields, files and readme. */
export interface WebFixture {
  readonly name: string;
  readonly version: string;
  /** Merged into package.json (`description`, `keywords`, `keel`, `engines`, ...). */
  readonly packageJson?: Readonly<Record<string, unknown>>;
  /** README.md; none when undefined. */
  readonly readme?: string;
  /** More files, by path inside the package. */
  readonly files?: Readonly<Record<string, string>>;
  /** Dist-tag to set; default "latest". */
  readonly tag?: string;
}

/** Where to publish: the registry's URL and a publish token. */
export interface PublishTarget {
  readonly baseUrl: string;
  readonly token: string;
}

/** The `PUT /<name>` request npm publish would send for the fixture. */
export async function publishRequest(target: PublishTarget, fixture: WebFixture): Promise<Request> {
  const { baseUrl, token } = target;
  const pj = { name: fixture.name, version: fixture.version, main: "index.js", ...fixture.packageJson };
  const files: Record<string, string> = { "package.json": JSON.stringify(pj, null, 2), "index.js": "export default {};\n", ...fixture.files };
  if (fixture.readme !== undefined) files["README.md"] = fixture.readme;
  const doc = await publishDocument(pj, await packTarball(files), { tag: fixture.tag ?? "latest" });
  return new Request(baseUrl + doc.path, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(doc.body),
  });
}

/** Publishes through `fetch` (an app's handler or the network); throws unless the answer is 201. */
export async function publishFixture(
  target: PublishTarget & { readonly fetch: (request: Request) => Response | Promise<Response> },
  fixture: WebFixture,
): Promise<void> {
  const response = await target.fetch(await publishRequest(target, fixture));
  if (response.status !== 201) throw new Error(`Publishing ${fixture.name}@${fixture.version} answered ${response.status}: ${await response.text()}`);
}
