/**
 * Test code only: publishes packages to a registry app through `PUT /<name>` with the body npm
 * sends, for the tests of the marketplace pages (`web.test.ts`, `tests/registry-web.test.ts`).
 * @module
 */

import { integrityOf, packTarball } from "./tarball.ts";

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

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
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
  const tarball = await packTarball(files);
  const { integrity, shasum } = await integrityOf(tarball);
  const escaped = fixture.name.startsWith("@") ? "@" + encodeURIComponent(fixture.name.slice(1)) : fixture.name;
  const body = {
    _id: fixture.name,
    name: fixture.name,
    "dist-tags": { [fixture.tag ?? "latest"]: fixture.version },
    versions: { [fixture.version]: { ...pj, _id: `${fixture.name}@${fixture.version}`, dist: { integrity, shasum } } },
    _attachments: { [`${fixture.name}-${fixture.version}.tgz`]: { content_type: "application/octet-stream", data: base64(tarball), length: tarball.length } },
  };
  return new Request(`${baseUrl}/${escaped}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
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
