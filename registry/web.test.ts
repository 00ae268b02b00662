/**
 * The marketplace pages through the app's fetch handler: the search filters, the package page
 * (readme, versions with their marks, capabilities, downloads, quality, the `keel add` line),
 * 404s, the security headers, and hostile names, descriptions, keywords and readmes.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Runtime } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { createRegistryApp, type RegistryApp } from "./app.ts";
import { createMemoryBlobStore } from "./blobs.ts";
import { createRegistryDb, type RegistryDb } from "./db.ts";
import { issueToken } from "./mod.ts";
import { generateSigningKey } from "./signing.ts";
import { publishFixture, type WebFixture } from "./_web-fixtures.ts";

const BASE = "http://registry.test";
const HOSTILE = `"><script>alert(1)</script><img src=x onerror=alert(2)>`;

let runtime: Runtime;
let db: RegistryDb;
let app: RegistryApp;
let admin: string;

function publish(fixture: WebFixture, token = admin): Promise<void> {
  return publishFixture({ fetch: (r) => app.fetch(r), baseUrl: BASE, token }, fixture);
}

async function get(path: string, headers: Record<string, string> = {}): Promise<Response> {
  return await app.fetch(new Request(BASE + path, { headers }));
}

async function page(path: string, status = 200): Promise<string> {
  const response = await get(path);
  const body = await response.text();
  assert.equal(response.status, status, body.slice(0, 500));
  assert.match(response.headers.get("content-type") ?? "", /^text\/html; charset=utf-8/);
  return body;
}

/** Names of the packages a results page lists, in order. */
function listed(body: string): string[] {
  return [...body.matchAll(/<li class="hit"><div class="hit-head"><a href="[^"]*">([^<]*)<\/a>/g)].map((m) => m[1]!);
}

/**
 * Asserts the page has no markup but its own: every tag is well-formed with double-quoted
 * attributes (so the attribute names read here are the ones a browser reads), no attribute is an
 * event handler, no URL is javascript:/data:/vbscript:, and the only script is the page's own.
 */
function assertInert(body: string): void {
  const tags = [...body.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:="[^"<>]*")?)*)\s*\/?>/g)];
  assert.equal(tags.length, body.match(/<\/?[a-zA-Z]/g)?.length, "every tag is well-formed");
  for (const [tag, , attributes] of tags) {
    for (const [, name, value] of (attributes ?? "").matchAll(/\s([a-zA-Z-]+)(?:="([^"]*)")?/g)) {
      assert.doesNotMatch(name!, /^on/i, `no event handler attribute: ${tag}`);
      if (name === "href" || name === "src" || name === "action") assert.doesNotMatch(value ?? "", /^\s*(?:javascript|data|vbscript):/i, tag);
    }
  }
  assert.equal(tags.filter((t) => t[1]!.toLowerCase() === "script" && !t[0].startsWith("</")).length, 1, "only the page's own script");
  assert.equal(tags.filter((t) => t[1]!.toLowerCase() === "img").length, 0, "no image from hostile text");
}

before(async () => {
  runtime = await detectRuntime();
  db = await createRegistryDb(await runtime.openSqlite!(":memory:"));
  app = createRegistryApp({ db, blobs: createMemoryBlobStore(), baseUrl: BASE, signingKeys: [(await generateSigningKey()).key], passwordIterations: 1_000 });
  admin = (await issueToken(db, { user: "admin", scope: "admin" })).token;

  await publish({
    name: "fetch-tool",
    version: "1.0.0",
    packageJson: {
      description: "Fetches pages for a workflow",
      keywords: ["http", "tools"],
      keel: { entry: "index.js", capabilities: ["net:api.example.com:443"], kernel: "^1", runtimes: ["deno", "bun"] },
      types: "index.d.ts",
      license: "MIT",
      homepage: "javascript:alert(1)",
      repository: { type: "git", url: "git+https://github.com/acme/fetch-tool.git" },
    },
    readme: "# Fetch tool\n\nFetches pages.\n\n## Usage\n\n```ts\nimport tool from \"fetch-tool\";\n```\n\n" + "More words. ".repeat(40),
    files: { "index.d.ts": "export {};\n", "test/fetch.test.ts": "// a test\n" },
  });
  await publish({
    name: "fetch-tool",
    version: "1.1.0",
    packageJson: {
      description: "Fetches pages for a workflow",
      keywords: ["http", "tools"],
      keel: { entry: "index.js", capabilities: ["net:api.example.com:443"], kernel: "^1", runtimes: ["deno", "bun"] },
      types: "index.d.ts",
    },
    readme: "# Fetch tool 1.1\n",
    files: { "index.d.ts": "export {};\n" },
  });
  await publish({
    name: "@acme/gpu-train",
    version: "0.3.0",
    packageJson: {
      description: "Trains on the GPU",
      keywords: ["ml", "gpu"],
      keel: { entry: "index.js", capabilities: ["gpu", "run:nvidia-smi", "read:./data"], kernel: "^1" },
      engines: { node: ">=20" },
    },
    readme: "# GPU training\n",
  });
  await publish({ name: "plain-lib", version: "2.0.0", packageJson: { description: "Not a plugin", keywords: ["util"] } });
  await publish({
    name: "hostile-pkg",
    version: "1.0.0",
    packageJson: {
      description: HOSTILE,
      keywords: [HOSTILE, `" onmouseover="alert(3)`, "tools"],
      keel: { entry: "index.js", capabilities: [], kernel: "^1" },
      homepage: "javascript:alert(4)",
      license: `<b onclick="alert(5)">MIT</b>`,
    },
    readme: `# Hostile\n\n<script>alert(6)</script>\n\n<img src=x onerror="alert(7)">\n\n[click](javascript:alert(8)) ![i](data:image/png;base64,iVBORw0KGgo=) ![s](data:image/svg+xml,<svg onload=alert(9)>)\n\n<!-- <script>alert(10)</script> -->\n`,
  });
});

after(async () => {
  await db.close();
});

describe("registry web: pages and headers", () => {
  test("the home page lists packages with version, description, capability badges, score and downloads", async () => {
    const response = await get("/-/web/");
    assert.equal(response.status, 200);
    const body = await response.text();
    assert.deepEqual(listed(body).sort(), ["@acme/gpu-train", "fetch-tool", "hostile-pkg", "plain-lib"]);
    assert.match(body, /<a href="\/-\/web\/package\/fetch-tool">fetch-tool<\/a><span class="version">1\.1\.0<\/span><span class="score \w+" title="Quality score (\d+) of 100">\1<\/span>/);
    assert.match(body, /<span class="cap">net:api\.example\.com:443<\/span>/);
    assert.match(body, /<span class="cap full-trust" title="Full trust">gpu<\/span>/);
    assert.match(body, /0 downloads/);
    assert.match(body, /<select name="capability">.*<option value="ffi">ffi<\/option>/s);
    assert.match(body, /<select name="runtime">.*<option value="edge">edge<\/option>/s);
    assert.equal((await get("/-/web")).status, 200);
  });

  test("every page has a CSP that allows only its own script and style, by hash", async () => {
    for (const path of ["/-/web/", "/-/web/package/fetch-tool", "/-/web/package/nope", "/-/web/search?capability=bogus"]) {
      const response = await get(path);
      const csp = response.headers.get("content-security-policy") ?? "";
      const body = await response.text();
      assert.match(csp, /default-src 'none'/, path);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/, path);
      const script = /<script>([\s\S]*?)<\/script>/.exec(body)?.[1] ?? "";
      const style = /<style>([\s\S]*?)<\/style>/.exec(body)?.[1] ?? "";
      const hash = async (text: string) => btoa(String.fromCharCode(...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)))));
      assert.match(csp, new RegExp(`script-src 'sha256-${(await hash(script)).replace(/[+/]/g, "\\$&")}'`), path);
      assert.match(csp, new RegExp(`style-src 'sha256-${(await hash(style)).replace(/[+/]/g, "\\$&")}'`), path);
      assert.equal(response.headers.get("x-content-type-options"), "nosniff");
      assert.equal(response.headers.get("x-frame-options"), "DENY");
    }
  });

  test("GET / redirects a browser to the pages; npm clients still get the JSON 404", async () => {
    const browser = await get("/", { accept: "text/html,application/xhtml+xml,*/*;q=0.8" });
    assert.equal(browser.status, 302);
    assert.equal(browser.headers.get("location"), "/-/web/");
    const npm = await get("/", { accept: "application/json" });
    assert.equal(npm.status, 404);
    assert.equal((await npm.json() as { code: string }).code, "E_REGISTRY_NOT_FOUND");
    assert.equal((await get("/")).status, 404);
  });

  test("unknown packages, versions and pages are HTML 404s that echo nothing unescaped", async () => {
    const missing = await page("/-/web/package/left-pad", 404);
    assert.match(missing, /No package &quot;left-pad&quot; is in this registry/);
    assert.match(await page("/-/web/package/fetch-tool/v/9.9.9", 404), /fetch-tool has no version &quot;9\.9\.9&quot;/);
    assert.match(await page("/-/web/package/fetch-tool/readme", 404), /No page of fetch-tool/);
    const hostile = await page(`/-/web/package/${encodeURIComponent(HOSTILE)}`, 404);
    assert.match(hostile, /is not a valid package name/);
    assertInert(hostile);
    assert.match(await page("/-/web/package/%E0%A4%A", 404), /malformed/);
    assert.match(await page("/-/web/nothing/here", 404), /No page is at this address/);
    assert.match(await page("/-/web/package/", 404), /Name a package/);
  });

  test("reads can be private: the pages need a read token too", async () => {
    const privateDb = await createRegistryDb(await runtime.openSqlite!(":memory:"));
    try {
      const closed = createRegistryApp({ db: privateDb, blobs: createMemoryBlobStore(), baseUrl: BASE, signingKeys: [], publicRead: false });
      const response = await closed.fetch(new Request(`${BASE}/-/web/`));
      assert.equal(response.status, 401);
      const reader = (await issueToken(privateDb, { user: "r", scope: "read" })).token;
      assert.equal((await closed.fetch(new Request(`${BASE}/-/web/`, { headers: { authorization: `Bearer ${reader}` } }))).status, 200);
    } finally {
      await privateDb.close();
    }
  });

  test("a registry served under a path links under that path", async () => {
    const otherDb = await createRegistryDb(await runtime.openSqlite!(":memory:"));
    try {
      const under = createRegistryApp({ db: otherDb, blobs: createMemoryBlobStore(), baseUrl: "https://example.test/npm/", signingKeys: [] });
      const body = await (await under.fetch(new Request("https://example.test/-/web/"))).text();
      assert.match(body, /action="\/npm\/-\/web\/search"/);
      assert.equal((await under.fetch(new Request("https://example.test/", { headers: { accept: "text/html" } }))).headers.get("location"), "/npm/-/web/");
    } finally {
      await otherDb.close();
    }
  });
});

describe("registry web: search", () => {
  test("filters by capability kind, keyword, runtime and words, alone and together", async () => {
    assert.deepEqual(listed(await page("/-/web/search?capability=net")), ["fetch-tool"]);
    assert.deepEqual(listed(await page("/-/web/search?capability=gpu")), ["@acme/gpu-train"]);
    assert.deepEqual(listed(await page("/-/web/search?capability=run")), ["@acme/gpu-train"]);
    assert.deepEqual(listed(await page("/-/web/search?capability=ffi")), []);
    assert.deepEqual(listed(await page("/-/web/search?keyword=tools")).sort(), ["fetch-tool", "hostile-pkg"]);
    assert.deepEqual(listed(await page("/-/web/search?keyword=TOOLS&capability=net")), ["fetch-tool"]);
    assert.deepEqual(listed(await page("/-/web/search?runtime=bun")), ["fetch-tool"]);
    assert.deepEqual(listed(await page("/-/web/search?runtime=node")), ["@acme/gpu-train"]);
    assert.deepEqual(listed(await page("/-/web/search?runtime=edge")), []);
    assert.deepEqual(listed(await page("/-/web/search?q=workflow")), ["fetch-tool"]);
    assert.deepEqual(listed(await page("/-/web/search?q=gpu&runtime=deno")), []);
    const all = await page("/-/web/search?q=");
    assert.equal(listed(all).length, 4);
    assert.match(all, /<p class="note" id="total">4 packages found<\/p>/);
  });

  test("the form keeps what was asked, escaped; bad filters are a 400 page that says what to choose", async () => {
    const body = await page(`/-/web/search?q=${encodeURIComponent(HOSTILE)}&keyword=${encodeURIComponent(HOSTILE)}&runtime=deno`);
    assertInert(body);
    assert.match(body, /<input type="search" name="q" value="&quot;&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(body, /<option value="deno" selected>deno<\/option>/);
    const bad = await page(`/-/web/search?capability=${encodeURIComponent(HOSTILE)}`, 400);
    assertInert(bad);
    assert.match(bad, /Unknown capability &quot;&quot;&gt;&lt;script&gt;/);
    assert.match(bad, /choose one of net, read, write, env, run, ffi, sys, gpu/);
    assert.match(await page("/-/web/search?runtime=browser", 400), /Unknown runtime &quot;browser&quot;: choose one of deno, bun, node, edge/);
    assert.match(await page("/-/web/search?page=0", 400), /page must be a whole number/);
    assert.match(await page("/-/web/search?page=abc", 400), /page must be a whole number/);
  });

  test("hostile descriptions and keywords in results are text", async () => {
    const body = await page("/-/web/search?q=hostile");
    assert.deepEqual(listed(body), ["hostile-pkg"]);
    assertInert(body);
    assert.match(body, /<p class="desc">&quot;&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;&lt;img src=x onerror=alert\(2\)&gt;<\/p>/);
    assert.match(body, /&quot; onmouseover=&quot;alert\(3\)/);
  });

  test("the npm search endpoint takes runtime: too", async () => {
    const response = await get("/-/v1/search?text=runtime:deno");
    const result = await response.json() as { objects: { package: { name: string } }[] };
    assert.deepEqual(result.objects.map((o) => o.package.name), ["fetch-tool"]);
  });
});

describe("registry web: the package page", () => {
  test("shows the readme, versions, capabilities, downloads, the quality breakdown and the keel add line", async () => {
    const tarball = await get("/fetch-tool/-/fetch-tool-1.0.0.tgz");
    assert.equal(tarball.status, 200);
    await tarball.arrayBuffer();
    const body = await page("/-/web/package/fetch-tool");
    assert.match(body, /<h1>fetch-tool<\/h1>/);
    assert.match(body, /<article class="readme"><h1>Fetch tool 1\.1<\/h1>/);
    assert.match(body, /<code id="install-line">keel add fetch-tool<\/code><button type="button" data-copy="install-line">Copy<\/button>/);
    assert.match(body, /<a href="\/-\/web\/package\/fetch-tool\/v\/1\.1\.0">1\.1\.0<\/a><\/td><td><time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z"/);
    assert.match(body, /<a href="\/-\/web\/package\/fetch-tool\/v\/1\.0\.0">1\.0\.0<\/a>.*?<td class="num">1<\/td>/s);
    assert.match(body, /<strong>1<\/strong> in all, 0 of 1\.1\.0/);
    assert.match(body, /<span class="cap">net:api\.example\.com:443<\/span>/);
    assert.match(body, /<tr><td>types<\/td><td class="num">15\/15<\/td><td class="note">A &quot;types&quot; field in package.json<\/td><\/tr>/);
    assert.match(body, /<tr><td>runtimes<\/td><td class="num">15\/15<\/td><td class="note">Declares deno, bun<\/td><\/tr>/);
    assert.match(body, /<tr><th>Runtimes<\/th><td>deno, bun<\/td><\/tr>/);
    assert.match(body, /<span class="kw">latest<\/span>/);

    const old = await page("/-/web/package/fetch-tool/v/1.0.0");
    assert.match(old, /<code id="install-line">keel add fetch-tool@1\.0\.0<\/code>/);
    assert.match(old, /You are viewing 1\.0\.0; the latest is <a href="\/-\/web\/package\/fetch-tool">1\.1\.0<\/a>/);
    assert.match(old, /<h2 id="usage">|<h2>Usage<\/h2>/);
    assert.match(old, /<tr><td>tests<\/td><td class="num">10\/10<\/td><td class="note">1 test file in the package<\/td><\/tr>/);
    assert.match(old, /<a href="https:\/\/github\.com\/acme\/fetch-tool" rel="nofollow noopener noreferrer">/);
    assert.doesNotMatch(old, /<tr><th>Homepage<\/th>/, "a javascript: homepage is not linked");
  });

  test("scoped packages, either path form; full-trust capabilities are marked", async () => {
    const body = await page("/-/web/package/@acme/gpu-train");
    assert.equal(await page("/-/web/package/@acme%2fgpu-train"), body);
    assert.match(body, /<li><span class="cap full-trust">gpu<\/span> <strong class="note">full trust<\/strong><\/li>/);
    assert.match(body, /<li><span class="cap full-trust">run:nvidia-smi<\/span> <strong class="note">full trust<\/strong><\/li>/);
    assert.match(body, /<li><span class="cap">read:\.\/data<\/span><\/li>/);
    assert.match(body, /<tr><td>capabilities<\/td><td class="num">10\/15<\/td><td class="note">Declares its capabilities; gpu, run:nvidia-smi are full trust<\/td><\/tr>/);
    assert.match(body, /keel add @acme\/gpu-train/);
  });

  test("a package without a keel field says so and shows npm install", async () => {
    const body = await page("/-/web/package/plain-lib");
    assert.match(body, /not a Keel plugin/);
    assert.match(body, /<code id="install-line">npm install plain-lib<\/code>/);
    assert.match(body, /<p class="note">No readme\.<\/p>/);
  });

  test("yanked and deprecated versions are marked, in the table and on their own page", async () => {
    await publish({ name: "marked-pkg", version: "1.0.0", packageJson: { keel: { entry: "index.js", capabilities: [], kernel: "^1" } }, readme: "# One\n" });
    await publish({ name: "marked-pkg", version: "1.0.1", packageJson: { keel: { entry: "index.js", capabilities: [], kernel: "^1" } }, readme: "# Two\n" });
    const yank = await app.fetch(new Request(`${BASE}/-/keel/yank/marked-pkg/1.0.1`, { method: "PUT", headers: { authorization: `Bearer ${admin}` }, body: JSON.stringify({ reason: `broken <script>alert(11)</script>` }) }));
    assert.equal(yank.status, 200);
    const doc = await (await get("/marked-pkg?write=true")).json() as { versions: Record<string, Record<string, unknown>> };
    doc.versions["1.0.0"]!.deprecated = `use 2 <img src=x onerror=alert(12)>`;
    const deprecate = await app.fetch(new Request(`${BASE}/marked-pkg`, { method: "PUT", headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" }, body: JSON.stringify(doc) }));
    assert.equal(deprecate.status, 200, await deprecate.text());

    const body = await page("/-/web/package/marked-pkg");
    assertInert(body);
    assert.match(body, /<article class="readme"><h1>One<\/h1>/, "latest falls back past the yanked version");
    assert.match(body, /<span class="cap full-trust" title="broken &lt;script&gt;alert\(11\)&lt;\/script&gt;">yanked<\/span>/);
    assert.match(body, /<span class="cap full-trust" title="use 2 &lt;img src=x onerror=alert\(12\)&gt;">deprecated<\/span>/);
    assert.match(body, /Deprecated: use 2 &lt;img/);
    const yanked = await page("/-/web/package/marked-pkg/v/1.0.1");
    assert.match(yanked, /This version was yanked on <time[^>]*>\d{4}-\d\d-\d\d<\/time>: broken &lt;script&gt;/);
  });

  test("a hostile package: description, keywords, license, homepage and readme all stay text", async () => {
    const body = await page("/-/web/package/hostile-pkg");
    assertInert(body);
    assert.match(body, /<article class="readme"><h1>Hostile<\/h1>\n<p>&lt;script&gt;alert\(6\)&lt;\/script&gt;<\/p>/);
    assert.match(body, /&lt;img src=x onerror=&quot;alert\(7\)&quot;&gt;/);
    assert.match(body, /<p>\[click\]\(javascript:alert\(8\)\) !\[i\]\(data:image\/png;base64,iVBORw0KGgo=\) !\[s\]\(data:image\/svg\+xml,&lt;svg onload=alert\(9\)&gt;\)<\/p>/, "the javascript: link and the data: images stay text");
    assert.match(body, /&lt;!-- &lt;script&gt;alert\(10\)&lt;\/script&gt; --&gt;/);
    assert.match(body, /<tr><th>License<\/th><td>&lt;b onclick=&quot;alert\(5\)&quot;&gt;MIT&lt;\/b&gt;<\/td><\/tr>/);
    assert.doesNotMatch(body, /<tr><th>Homepage<\/th>/);
    assert.match(body, /Asks for <strong>no capabilities<\/strong>/);
  });

  test("the page answers the same after a publish changes it, and the new version shows", async () => {
    const before = await page("/-/web/package/plain-lib");
    assert.equal(await page("/-/web/package/plain-lib"), before);
    await publish({ name: "plain-lib", version: "2.1.0", packageJson: { description: "Now with a readme" }, readme: "# Plain 2.1\n" });
    const after = await page("/-/web/package/plain-lib");
    assert.match(after, /<article class="readme"><h1>Plain 2\.1<\/h1>/);
    assert.match(after, /<span class="version">2\.1\.0<\/span>/);
  });
});
