/**
 * The marketplace pages in a real browser: Debian's Chromium, headless, driven by
 * playwright-core, against a registry served by this test on 127.0.0.1 and a free port. Three
 * plugins are published, one with a readme that tries three ways to run script; the test uses the
 * pages as a person would (the form, the filter, a click into a package, a click on the link) and
 * checks that nothing ran, that the page's own script and style pass its Content-Security-Policy
 * (no violation is reported), and takes a screenshot.
 *
 * Chromium must be at /usr/bin/chromium; `.ci/run` installs it. Without it these tests fail and
 * say how to install it: they are not skipped.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { chromium } from "playwright-core";
import type { Runtime, Server } from "../core/mod.ts";
import { fromFileUrl, joinPath } from "../core/mod.ts";
import { detectRuntime } from "../runtimes/mod.ts";
import { createMemoryBlobStore, createRegistryApp, createRegistryDb, generateSigningKey, issueToken, type RegistryDb } from "../registry/mod.ts";
import { publishFixture } from "../registry/_web-fixtures.ts";

const CHROMIUM = "/usr/bin/chromium";
const INSTALL = "apt-get update && apt-get install -y --no-install-recommends chromium";
const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");
const SLOW = { timeout: 120_000 };
const XSS_README = [
  "# XSS demo heading",
  "",
  "A plugin whose readme tries to run script.",
  "",
  "<script>window.__xss = 1</script>",
  "",
  '<img src=x onerror="window.__xss=2">',
  "",
  "[link](javascript:window.__xss=3)",
  "",
  "Docs are [over here](https://example.com/docs).",
  "",
  "## Usage",
  "",
  "```ts",
  'import demo from "xss-demo";',
  "```",
  "",
].join("\n");

let runtime: Runtime;
let db: RegistryDb;
let server: Server | undefined;
let url = "";
let tmp = "";
let browser: Browser | undefined;
let context: BrowserContext | undefined;

before(async () => {
  runtime = await detectRuntime();
  tmp = await runtime.fs!.makeTempDir("keel-registry-web-");
  db = await createRegistryDb(await runtime.openSqlite!(":memory:"));
  let handler: (request: Request) => Response | Promise<Response> = () => new Response(null, { status: 503 });
  server = await runtime.serve!((request) => handler(request), { hostname: "127.0.0.1", port: 0 });
  url = server.url.replace(/\/+$/, "");
  const app = createRegistryApp({ db, blobs: createMemoryBlobStore(), baseUrl: url, signingKeys: [(await generateSigningKey()).key], passwordIterations: 1_000 });
  handler = app.fetch;
  const token = (await issueToken(db, { user: "admin", scope: "admin" })).token;
  const target = { fetch: (r: Request) => app.fetch(r), baseUrl: url, token };
  await publishFixture(target, {
    name: "xss-demo",
    version: "1.0.0",
    packageJson: { description: "Tries to run script from its readme", keywords: ["demo"], keel: { entry: "index.js", capabilities: [], kernel: "^1", runtimes: ["deno"] } },
    readme: XSS_README,
  });
  await publishFixture(target, {
    name: "net-tool",
    version: "2.1.0",
    packageJson: {
      description: "Calls one API",
      keywords: ["http", "demo"],
      types: "index.d.ts",
      keel: { entry: "index.js", capabilities: ["net:api.example.com:443"], kernel: "^1", runtimes: ["deno", "bun"] },
    },
    readme: "# Net tool\n\nCalls `api.example.com`.\n\n## Usage\n\n```ts\nawait tool.call();\n```\n",
    files: { "index.d.ts": "export {};\n", "index.test.ts": "\n" },
  });
  await publishFixture(target, {
    name: "@acme/gpu-train",
    version: "0.3.0",
    packageJson: { description: "Trains on the GPU", keel: { entry: "index.js", capabilities: ["gpu", "read:./data"], kernel: "^1" }, engines: { node: ">=20" } },
    readme: "# GPU training\n",
  });
});

after(async () => {
  await context?.close();
  await browser?.close();
  await server?.close();
  await db?.close();
  if (tmp !== "") await runtime.fs!.remove(tmp);
});

/** The browser, launched once; a clear failure when Chromium is missing. */
async function open(): Promise<Page> {
  if (!(await runtime.fs!.exists(CHROMIUM))) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}; these tests need it. Install it (as .ci/run does) with: ${INSTALL}`);
  }
  browser ??= await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu"] });
  if (context === undefined) {
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: url });
    // Injected by the driver (not subject to the page's CSP): records any CSP violation. Page
    // code is given as strings: this file is type-checked without the DOM library.
    await context.addInitScript({
      content: 'window.__violations = []; document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(e.violatedDirective + " " + e.blockedURI));',
    });
  }
  return await context.newPage();
}

async function violations(page: Page): Promise<string[]> {
  return await page.evaluate<string[]>("window.__violations");
}

async function xss(page: Page): Promise<unknown> {
  return await page.evaluate<unknown>("window.__xss");
}

describe("registry web in headless Chromium", () => {
  test("a browser at / lands on the home page, which lists the plugins with badges and scores", SLOW, async () => {
    const page = await open();
    const response = await page.goto(`${url}/`);
    assert.equal(response?.status(), 200);
    assert.equal(new URL(page.url()).pathname, "/-/web/");
    assert.equal(await page.title(), "Keel plugins");
    const names = await page.locator("li.hit .hit-head a").allTextContents();
    assert.deepEqual(names.sort(), ["@acme/gpu-train", "net-tool", "xss-demo"]);
    assert.equal(await page.locator("li.hit", { hasText: "@acme/gpu-train" }).locator(".cap.full-trust").textContent(), "gpu");
    assert.match(await page.locator("li.hit", { hasText: "net-tool" }).locator(".score").textContent() ?? "", /^\d+$/);
    assert.deepEqual(await violations(page), []);
    await page.close();
  });

  test("searching with a capability filter through the form, then clicking into a package", SLOW, async () => {
    const page = await open();
    await page.goto(`${url}/-/web/`);
    const form = page.locator("main form.search");
    await form.locator('input[name="keyword"]').fill("demo");
    await form.locator('select[name="capability"]').selectOption("net");
    await Promise.all([page.waitForURL(/\/-\/web\/search\?/), form.locator('button[type="submit"]').click()]);
    const query = new URL(page.url()).searchParams;
    assert.equal(query.get("capability"), "net");
    assert.equal(query.get("keyword"), "demo");
    assert.deepEqual(await page.locator("li.hit .hit-head a").allTextContents(), ["net-tool"]);
    assert.equal(await page.locator("#total").textContent(), "1 package found");
    assert.equal(await form.locator('select[name="capability"]').inputValue(), "net", "the form keeps the filter");

    await Promise.all([page.waitForURL(/\/-\/web\/package\/net-tool$/), page.locator("li.hit .hit-head a", { hasText: "net-tool" }).click()]);
    assert.equal(await page.locator("main h1").first().textContent(), "net-tool");
    assert.equal(await page.locator("article.readme h1").textContent(), "Net tool");
    assert.equal(await page.locator("#install-line").textContent(), "keel add net-tool");
    assert.equal(await page.locator("#capabilities .cap").textContent(), "net:api.example.com:443");
    assert.match(await page.locator("#quality").textContent() ?? "", /types\s*15\/15/);
    assert.deepEqual(await violations(page), []);
    await page.close();
  });

  test("the hostile readme renders as text: window.__xss stays undefined, even after clicking its link", SLOW, async () => {
    const page = await open();
    await page.goto(`${url}/-/web/search?keyword=demo`);
    await Promise.all([page.waitForURL(/\/-\/web\/package\/xss-demo$/), page.locator("li.hit .hit-head a", { hasText: "xss-demo" }).click()]);
    const readme = page.locator("article.readme");
    assert.equal(await readme.locator("h1").textContent(), "XSS demo heading");
    assert.ok(await readme.locator("h1").isVisible());
    assert.equal(await readme.locator("h2").textContent(), "Usage");
    assert.match(await readme.textContent() ?? "", /<script>window\.__xss = 1<\/script>/, "the script tag is shown as text");
    assert.match(await readme.textContent() ?? "", /<img src=x onerror="window\.__xss=2">/, "the image tag is shown as text");
    assert.equal(await readme.locator("script, img, iframe").count(), 0);
    assert.equal(await page.locator('[href^="javascript:" i], [src^="javascript:" i]').count(), 0);
    assert.equal(await page.locator("script").count(), 1, "only the page's own script");
    assert.equal(await readme.locator('a[href="https://example.com/docs"][rel="nofollow noopener noreferrer"]').count(), 1);
    assert.equal(await xss(page), undefined);

    // The javascript: "link" is text now; click it (and the text around it) anyway.
    const link = readme.getByText("javascript:window.__xss=3", { exact: false });
    await link.click();
    assert.equal(new URL(page.url()).pathname, "/-/web/package/xss-demo", "clicking it went nowhere");
    assert.equal(await xss(page), undefined);

    // The page's own script does run (its hash is in the CSP): the copy button copies the line.
    assert.equal(await page.locator("#install-line").textContent(), "keel add xss-demo");
    const button = page.locator('button[data-copy="install-line"]');
    await button.click();
    await page.waitForFunction(`document.querySelector('button[data-copy="install-line"]').textContent !== "Copy"`);
    if ((await button.textContent()) === "Copied") {
      assert.equal(await page.evaluate<string>("navigator.clipboard.readText()"), "keel add xss-demo");
    }
    assert.deepEqual(await violations(page), [], "no CSP violation: nothing tried to run, and the page's own script and style are allowed");

    const shot = joinPath(tmp, "registry-page.png");
    await page.screenshot({ path: shot, fullPage: true });
    const png = await runtime.fs!.readFile(shot);
    assert.ok(png.byteLength > 1000, `the screenshot has ${png.byteLength} bytes`);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "a PNG");
    // A copy for people to look at, in the ignored .keel/ folder.
    await runtime.fs!.mkdir(joinPath(ROOT, ".keel/screenshots"));
    await runtime.fs!.writeFile(joinPath(ROOT, `.keel/screenshots/registry-page-${runtime.name}.png`), png);
    await page.close();
  });

  test("an unknown package is a 404 page in the browser too, echoing the name as text", SLOW, async () => {
    const page = await open();
    const response = await page.goto(`${url}/-/web/package/${encodeURIComponent('"><script>window.__xss=4</script>')}`);
    assert.equal(response?.status(), 404);
    assert.match(await page.locator("main").textContent() ?? "", /"><script>window\.__xss=4<\/script>" is not a valid package name/);
    assert.equal(await xss(page), undefined);
    const missing = await page.goto(`${url}/-/web/package/left-pad`);
    assert.equal(missing?.status(), 404);
    assert.equal(await page.locator("main h1").textContent(), "Package not found");
    assert.deepEqual(await violations(page), []);
    await page.close();
  });
});
