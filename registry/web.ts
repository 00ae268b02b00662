/**
 * The registry's marketplace pages: server-rendered HTML (Hono's `html` helper, which escapes
 * every value put into it), no client build. `app.ts` mounts them under {@link WEB_PATH}; npm
 * package names cannot start with "-", so no page can shadow a package.
 *
 * - `GET /-/web/`: a search form with filters and the most recently updated packages.
 * - `GET /-/web/search?q=&capability=&keyword=&runtime=&page=`: `capability` is a kind (net,
 *   read, write, env, run, ffi, sys, gpu), `runtime` one of deno, bun, node, edge.
 * - `GET /-/web/package/<name>` (scoped: `/-/web/package/@scope/name`), and
 *   `.../v/<version>` for one version: readme, versions (publish time, tags, yanked and
 *   deprecated marks, downloads, score), the capabilities asked for (full trust marked), the
 *   quality breakdown, and the `keel add` line with a copy button.
 *
 * Every answer carries a Content-Security-Policy that allows one script and one stylesheet, the
 * page's own, by their SHA-256 hashes; nothing else inline runs, and nothing loads from elsewhere
 * but images over https. Readmes are rendered by `markdown.ts` (raw HTML shown as text, unsafe
 * URLs dropped) once per version and kept in memory.
 * @module
 */

import { Hono } from "hono";
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { CAPABILITY_KINDS } from "../core/capabilities.ts";
import { createSilentLogger, type Logger } from "../core/logger.ts";
import { nameProblem } from "./_names.ts";
import type { PackageSnapshot, RegistryDb, SearchHit, VersionRecord } from "./db.ts";
import { KEEL_RUNTIMES } from "./keel-field.ts";
import { renderMarkdown, safeUrl } from "./markdown.ts";
import { parseQualitySignals, type QualityReport, qualitySignals, scoreQuality } from "./quality.ts";

/** Where `app.ts` mounts the pages. */
export const WEB_PATH = "/-/web";

/** A package as the app's document cache holds it. */
export interface WebPackage {
  readonly snapshot: PackageSnapshot;
  /** The dist-tags served (none on a yanked version; `latest` always set). */
  readonly tags: Readonly<Record<string, string>>;
}

/** Options for {@link createWebApp}. */
export interface WebAppOptions {
  readonly db: RegistryDb;
  /** Writes download counts held in memory before pages read them. */
  readonly flushDownloads?: () => Promise<void>;
  /** The registry's public URL; links are built under its path. */
  readonly baseUrl: string;
  /** The package's live data (the app passes its cached documents'); undefined when it has none. */
  readonly readPackage: (name: string) => Promise<WebPackage | undefined>;
  readonly logger?: Logger;
  /** Bytes of rendered readmes kept in memory. Default 16 MiB. */
  readonly cacheBytes?: number;
}

type Html = HtmlEscapedString;

const PAGE_SIZE = 20;
const MAX_PAGE = 500;

/** `html`, which is synchronous as long as no value is a Promise: none here is. */
function h(strings: TemplateStringsArray, ...values: unknown[]): Html {
  const out = html(strings, ...values);
  if (out instanceof Promise) throw new TypeError("A page fragment was asynchronous");
  return out;
}

const STYLE = `
:root{--fg:#1d2330;--muted:#5b6475;--line:#e3e6ec;--bg:#fafbfc;--card:#fff;--accent:#2456d3;--warn:#a4370b;--warnbg:#fff1e8;--ok:#17794a;--mid:#9a6a00}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
header.top{display:flex;gap:1.5rem;align-items:center;padding:.7rem 1.5rem;background:#11182a;color:#fff}
header.top a.brand{color:#fff;font-weight:700;font-size:1.1rem}
header.top form{flex:1;max-width:32rem}header.top input{width:100%}
main{max-width:72rem;margin:0 auto;padding:1.5rem}
input,select,button{font:inherit;padding:.35rem .5rem;border:1px solid #c5cad4;border-radius:6px;background:#fff;color:var(--fg)}
button{cursor:pointer;background:var(--accent);border-color:var(--accent);color:#fff}
form.search{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1rem;margin-bottom:1.2rem}
form.search label{display:flex;flex-direction:column;font-size:.8rem;color:var(--muted);gap:.2rem}
form.search .q{flex:1 1 18rem}form.search .q input{width:100%}
ul.hits{list-style:none;margin:0;padding:0}
li.hit{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.8rem 1rem;margin-bottom:.7rem}
.hit-head{display:flex;gap:.6rem;align-items:baseline;flex-wrap:wrap}
.hit-head a{font-weight:650;font-size:1.05rem}
.version{color:var(--muted);font-family:ui-monospace,monospace;font-size:.9rem}
.desc{margin:.3rem 0;color:#333b4d}
.meta{color:var(--muted);font-size:.85rem;display:flex;gap:1rem;flex-wrap:wrap}
.badges{display:flex;gap:.35rem;flex-wrap:wrap;margin:.3rem 0}
.cap{font-family:ui-monospace,monospace;font-size:.8rem;padding:.05rem .45rem;border-radius:999px;background:#e8eefc;color:#1b3f99;border:1px solid #cdd9f7}
.cap.full-trust{background:var(--warnbg);color:var(--warn);border-color:#f4c7ad}
.kw{font-size:.8rem;color:var(--muted);background:#f0f2f5;border-radius:4px;padding:0 .35rem}
.score{font-weight:700;font-size:.85rem;border-radius:6px;padding:.05rem .45rem;color:#fff;background:var(--ok)}
.score.mid{background:var(--mid)}.score.low{background:var(--warn)}
.layout{display:grid;grid-template-columns:minmax(0,1fr) 20rem;gap:1.5rem}
@media (max-width:60rem){.layout{grid-template-columns:1fr}}
.panel{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1rem;margin-bottom:1rem}
.panel h2{font-size:.95rem;margin:0 0 .6rem;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.install{display:flex;gap:.5rem;align-items:center}
.install code{flex:1;background:#11182a;color:#e8ecf5;padding:.5rem .7rem;border-radius:6px;user-select:all;overflow-x:auto;white-space:nowrap}
.banner{background:var(--warnbg);color:var(--warn);border:1px solid #f4c7ad;border-radius:8px;padding:.6rem .8rem;margin:.6rem 0}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.readme{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1rem 1.5rem;overflow-wrap:anywhere}
.readme pre{background:#f3f5f8;padding:.8rem;border-radius:6px;overflow-x:auto}
.readme img{max-width:100%}
.readme .align-left{text-align:left}.readme .align-center{text-align:center}.readme .align-right{text-align:right}
ul.caps{list-style:none;padding:0;margin:0;display:flex;flex-direction:column;gap:.3rem}
.note{color:var(--muted);font-size:.85rem}
.pager{display:flex;gap:1rem;margin-top:1rem}
h1{margin:.2rem 0;font-size:1.7rem;overflow-wrap:anywhere}
footer{color:var(--muted);font-size:.8rem;text-align:center;padding:2rem}
`.trim();

/** Copies the text of the element a `data-copy` button names. */
const SCRIPT =
  `document.addEventListener("click",function(e){var b=e.target instanceof Element?e.target.closest("[data-copy]"):null;if(!b)return;var t=document.getElementById(b.getAttribute("data-copy")||"");if(!t||!navigator.clipboard)return;navigator.clipboard.writeText(t.textContent||"").then(function(){b.textContent="Copied"},function(){b.textContent="Select and copy"})});`;

async function sha256Base64(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return btoa(String.fromCharCode(...digest));
}

let policy: Promise<string> | undefined;

/** The Content-Security-Policy of every page: only the page's own script and style, by hash. */
export function contentSecurityPolicy(): Promise<string> {
  policy ??= Promise.all([sha256Base64(SCRIPT), sha256Base64(STYLE)]).then(([script, style]) =>
    [
      "default-src 'none'",
      `script-src 'sha256-${script}'`,
      `style-src 'sha256-${style}'`,
      "img-src 'self' https:",
      "form-action 'self'",
      "base-uri 'none'",
      "frame-ancestors 'none'",
    ].join("; ")
  );
  return policy;
}

/** A size-bounded map, least recently used out first. */
class Lru<V> {
  readonly #entries = new Map<string, { value: V; size: number }>();
  readonly #max: number;
  #bytes = 0;
  constructor(maxBytes: number) {
    this.#max = maxBytes;
  }
  get(key: string): V | undefined {
    const hit = this.#entries.get(key);
    if (hit === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, hit);
    return hit.value;
  }
  set(key: string, value: V, size: number): void {
    if (size > this.#max) return;
    const old = this.#entries.get(key);
    if (old !== undefined) {
      this.#bytes -= old.size;
      this.#entries.delete(key);
    }
    this.#entries.set(key, { value, size });
    this.#bytes += size;
    for (const [k, e] of this.#entries) {
      if (this.#bytes <= this.#max) break;
      this.#entries.delete(k);
      this.#bytes -= e.size;
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseManifest(v: VersionRecord): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(v.manifest);
    return isObject(parsed) ? parsed : {};
  } catch {
    return {};
  }
}

function stringList(value: unknown, limit: number): string[] {
  return Array.isArray(value) ? value.filter((x): x is string => typeof x === "string").slice(0, limit) : [];
}

/** An http(s) URL from a manifest field, or undefined (relative, other schemes, junk). */
function externalUrl(value: unknown): string | undefined {
  let text = typeof value === "string" ? value : isObject(value) && typeof value.url === "string" ? value.url : undefined;
  if (text === undefined) return undefined;
  text = text.trim().replace(/^git\+/, "").replace(/\.git$/, "");
  const github = /^github:([\w.-]+\/[\w.-]+)$/.exec(text);
  if (github !== undefined && github !== null) text = `https://github.com/${github[1]}`;
  const url = safeUrl(text, "link");
  return url !== undefined && /^https?:\/\//i.test(url) ? url : undefined;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function day(ms: number): Html {
  return h`<time datetime="${iso(ms)}" title="${iso(ms)}">${iso(ms).slice(0, 10)}</time>`;
}

function count(n: number): string {
  return n.toLocaleString("en-US");
}

function scoreBadge(score: number): Html {
  const level = score >= 70 ? "high" : score >= 40 ? "mid" : "low";
  return h`<span class="score ${level}" title="Quality score ${score} of 100">${score}</span>`;
}

function isFullTrustText(capability: string, fullTrust: readonly string[]): boolean {
  return fullTrust.includes(capability);
}

function capabilityBadges(capabilities: readonly string[] | null, fullTrust: readonly string[]): Html {
  if (capabilities === null) return h``;
  if (capabilities.length === 0) return h`<span class="cap" title="Asks for no capabilities">no capabilities</span>`;
  return h`${capabilities.map((c) =>
    isFullTrustText(c, fullTrust) ? h`<span class="cap full-trust" title="Full trust">${c}</span>` : h`<span class="cap">${c}</span>`
  )}`;
}

/** The form state of a search. */
interface SearchForm {
  readonly q: string;
  readonly capability: string;
  readonly keyword: string;
  readonly runtime: string;
}

const EMPTY_FORM: SearchForm = { q: "", capability: "", keyword: "", runtime: "" };

function option(value: string, selected: boolean): Html {
  return h`<option value="${value}"${selected ? raw(" selected") : ""}>${value}</option>`;
}

/**
 * Creates the marketplace pages as a Hono app, to mount at {@link WEB_PATH}.
 *
 * @example
 * ```ts ignore
 * app.route(WEB_PATH, createWebApp({ db, baseUrl, readPackage }));
 * ```
 */
export function createWebApp(options: WebAppOptions): Hono {
  const { db, readPackage } = options;
  const logger = options.logger ?? createSilentLogger();
  const prefix = new URL(options.baseUrl).pathname.replace(/\/+$/, "");
  const root = `${prefix}${WEB_PATH}`;
  const readmes = new Lru<string>(options.cacheBytes ?? 16 * 1024 * 1024);
  const reports = new Lru<QualityReport>(4 * 1024 * 1024);

  function packageHref(name: string, version?: string): string {
    const path = name.split("/").map((s) => encodeURIComponent(s).replace(/^%40/, "@")).join("/");
    return `${root}/package/${path}${version === undefined ? "" : `/v/${encodeURIComponent(version)}`}`;
  }

  function searchHref(form: Partial<SearchForm> & { page?: number }): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) if (v !== undefined && v !== "" && !(k === "page" && v === 1)) params.set(k, String(v));
    const query = params.toString();
    return `${root}/search${query === "" ? "" : `?${query}`}`;
  }

  /** The score of a version: from the signals stored at publish, else from its manifest and readme. */
  function reportOf(v: VersionRecord): QualityReport {
    const key = `${v.name}@${v.version}`;
    const hit = reports.get(key);
    if (hit !== undefined) return hit;
    const signals = parseQualitySignals(v.quality) ?? qualitySignals({ packageJson: parseManifest(v), readme: v.readme ?? undefined });
    const report = scoreQuality(signals);
    reports.set(key, report, 1024);
    return report;
  }

  /** A version's readme as HTML, rendered once: a version's readme never changes. */
  function readmeOf(v: VersionRecord): string | undefined {
    if (v.readme === null || v.readme.trim() === "") return undefined;
    const key = `${v.name}@${v.version}`;
    const hit = readmes.get(key);
    if (hit !== undefined) return hit;
    const rendered = renderMarkdown(v.readme);
    readmes.set(key, rendered, rendered.length * 2);
    return rendered;
  }

  function searchForm(form: SearchForm): Html {
    return h`<form class="search" action="${root}/search" method="get" role="search">
<label class="q">Search<input type="search" name="q" value="${form.q}" placeholder="Name, description or keyword" maxlength="200"></label>
<label>Capability<select name="capability"><option value="">any</option>${CAPABILITY_KINDS.map((k) => option(k, form.capability === k))}</select></label>
<label>Keyword<input type="text" name="keyword" value="${form.keyword}" maxlength="100" size="12"></label>
<label>Runtime<select name="runtime"><option value="">any</option>${KEEL_RUNTIMES.map((r) => option(r, form.runtime === r))}</select></label>
<button type="submit">Search</button>
</form>`;
  }

  function layout(title: string, body: Html): Html {
    return h`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><style>${raw(STYLE)}</style></head>
<body><header class="top"><a class="brand" href="${root}/">Keel plugins</a>
<form action="${root}/search" method="get" role="search"><input type="search" name="q" placeholder="Search plugins" aria-label="Search plugins" maxlength="200"></form></header>
<main>${body}</main>
<footer>A Keel registry. Install with <code>keel add &lt;name&gt;</code>; npm, bun and deno install from it too.</footer>
<script>${raw(SCRIPT)}</script></body></html>`;
  }

  async function respond(body: Html, status = 200): Promise<Response> {
    return new Response(String(body), {
      status,
      headers: {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": await contentSecurityPolicy(),
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
      },
    });
  }

  function errorPage(status: number, title: string, message: string): Promise<Response> {
    return respond(layout(`${title} · Keel plugins`, h`<h1>${title}</h1><p>${message}</p>${searchForm(EMPTY_FORM)}`), status);
  }

  async function hitItem(hit: SearchHit): Promise<Html> {
    const [v, downloads] = await Promise.all([db.getVersion(hit.pkg.name, hit.version), options.flushDownloads?.().then(() => db.downloads(hit.pkg.name)) ?? db.downloads(hit.pkg.name)]);
    const report = v === undefined ? undefined : reportOf(v);
    const total = Object.values(downloads).reduce((a, b) => a + b, 0);
    const keywords = (hit.pkg.keywords ?? []).slice(0, 12);
    return h`<li class="hit"><div class="hit-head"><a href="${packageHref(hit.pkg.name)}">${hit.pkg.name}</a><span class="version">${hit.version}</span>${
      report === undefined ? "" : scoreBadge(report.score)
    }</div>
${hit.pkg.description === null ? "" : h`<p class="desc">${hit.pkg.description}</p>`}
<div class="badges">${capabilityBadges(hit.pkg.capabilities, report?.fullTrust ?? [])}</div>
<div class="meta"><span>${count(total)} download${total === 1 ? "" : "s"}</span><span>updated ${day(hit.pkg.modifiedAt)}</span>${
      keywords.length === 0 ? "" : h`<span>${keywords.map((k) => h`<a class="kw" href="${searchHref({ keyword: k })}">${k}</a> `)}</span>`
    }</div></li>`;
  }

  async function results(form: SearchForm, page: number): Promise<{ total: number; list: Html }> {
    const words = form.q.split(/\s+/).filter((w) => w !== "").slice(0, 10);
    const { total, hits } = await db.search({
      words,
      keywords: form.keyword === "" ? [] : [form.keyword],
      capabilities: form.capability === "" ? [] : [form.capability],
      runtimes: form.runtime === "" ? [] : [form.runtime],
      from: (page - 1) * PAGE_SIZE,
      size: PAGE_SIZE,
    });
    const items = await Promise.all(hits.map(hitItem));
    return { total, list: items.length === 0 ? h`<p class="note">No packages match.</p>` : h`<ul class="hits">${items}</ul>` };
  }

  const web = new Hono();

  web.onError((e) => {
    logger.error(`A registry page failed: ${e instanceof Error ? e.message : String(e)}`);
    return errorPage(500, "Something went wrong", "The registry could not show this page; try again in a moment.");
  });

  async function home(): Promise<Response> {
    const { list } = await results(EMPTY_FORM, 1);
    return respond(layout("Keel plugins", h`${searchForm(EMPTY_FORM)}<h1>Recently updated</h1>${list}`));
  }

  // Mounted at WEB_PATH, "/" is "/-/web"; "/-/web/" reaches the catch-all below.
  web.get("/", home);

  web.get("/search", async (c) => {
    const url = new URL(c.req.url);
    const get = (key: string, max: number) => (url.searchParams.get(key) ?? "").trim().slice(0, max);
    const form: SearchForm = { q: get("q", 200), capability: get("capability", 20), keyword: get("keyword", 100).toLowerCase(), runtime: get("runtime", 20) };
    const pageParam = get("page", 10);
    const page = pageParam === "" ? 1 : Number(pageParam);
    const problems: string[] = [];
    if (form.capability !== "" && !(CAPABILITY_KINDS as readonly string[]).includes(form.capability)) {
      problems.push(`Unknown capability "${form.capability}": choose one of ${CAPABILITY_KINDS.join(", ")}`);
    }
    if (form.runtime !== "" && !(KEEL_RUNTIMES as readonly string[]).includes(form.runtime)) {
      problems.push(`Unknown runtime "${form.runtime}": choose one of ${KEEL_RUNTIMES.join(", ")}`);
    }
    if (!Number.isSafeInteger(page) || page < 1 || page > MAX_PAGE) problems.push(`The page must be a whole number from 1 to ${MAX_PAGE}`);
    if (problems.length > 0) {
      return respond(layout("Search · Keel plugins", h`${searchForm(form)}${problems.map((p) => h`<p class="banner">${p}</p>`)}`), 400);
    }
    const { total, list } = await results(form, page);
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const pager = h`<nav class="pager">${page > 1 ? h`<a rel="prev" href="${searchHref({ ...form, page: page - 1 })}">← Previous</a>` : ""}${
      page < pages && page < MAX_PAGE ? h`<a rel="next" href="${searchHref({ ...form, page: page + 1 })}">Next →</a>` : ""
    }</nav>`;
    const title = form.q === "" ? "Search" : `${form.q} · Search`;
    return respond(layout(`${title} · Keel plugins`, h`${searchForm(form)}<p class="note" id="total">${count(total)} package${total === 1 ? "" : "s"} found${
      pages > 1 ? `, page ${page} of ${pages}` : ""
    }</p>${list}${pager}`));
  });

  web.get("/package/*", async (c) => {
    const path = new URL(c.req.url).pathname;
    const at = path.indexOf(`${WEB_PATH}/package/`);
    const segments = path.slice(at + `${WEB_PATH}/package/`.length).split("/").filter((s) => s !== "");
    let decoded: string[];
    try {
      decoded = segments.map((s) => decodeURIComponent(s));
    } catch {
      return errorPage(404, "Not found", "The address has a malformed %-escape.");
    }
    const [first, second] = decoded;
    if (first === undefined) return errorPage(404, "Not found", "Name a package: /-/web/package/<name>.");
    const scoped = first.startsWith("@") && !first.includes("/");
    const name = scoped ? `${first}/${second ?? ""}` : first;
    const rest = decoded.slice(scoped ? 2 : 1);
    if (nameProblem(name) !== undefined) return errorPage(404, "Not found", `"${name.slice(0, 214)}" is not a valid package name.`);
    const wanted = rest[0] === "v" && rest.length === 2 ? rest[1] : undefined;
    if (rest.length > 0 && wanted === undefined) return errorPage(404, "Not found", `No page of ${name} is at this address.`);
    const pkg = await readPackage(name);
    if (pkg === undefined) return errorPage(404, "Package not found", `No package "${name}" is in this registry.`);
    const { snapshot, tags } = pkg;
    const latest = snapshot.versions.find((v) => v.version === tags.latest) ?? snapshot.versions.at(-1);
    const shown = wanted === undefined ? latest : snapshot.versions.find((v) => v.version === wanted);
    if (shown === undefined) return errorPage(404, "Version not found", `${name} has no version "${(wanted ?? "").slice(0, 100)}".`);
    await options.flushDownloads?.();
    const downloads = await db.downloads(name);
    return respond(packagePage(pkg, shown, shown === latest, downloads));
  });

  web.all("*", (c) => {
    if (c.req.method === "GET" && new URL(c.req.url).pathname.endsWith(`${WEB_PATH}/`)) return home();
    return errorPage(404, "Not found", "No page is at this address.");
  });

  function packagePage(pkg: WebPackage, v: VersionRecord, isLatest: boolean, downloads: Readonly<Record<string, number>>): Html {
    const { snapshot, tags } = pkg;
    const name = snapshot.pkg.name;
    const manifest = parseManifest(v);
    const keel = isObject(manifest.keel) ? manifest.keel : undefined;
    const capabilities = keel === undefined ? null : stringList(keel.capabilities, 64);
    const report = reportOf(v);
    const signals = parseQualitySignals(v.quality);
    const runtimes = signals?.runtimes ?? [];
    const description = typeof manifest.description === "string" ? manifest.description : "";
    const keywords = stringList(manifest.keywords, 50);
    const license = typeof manifest.license === "string" ? manifest.license.slice(0, 100) : undefined;
    const homepage = externalUrl(manifest.homepage);
    const repository = externalUrl(manifest.repository);
    const total = Object.values(downloads).reduce((a, b) => a + b, 0);
    const install = `keel add ${isLatest ? name : `${name}@${v.version}`}`;
    const tagsOf = (version: string) => Object.entries(tags).filter(([, target]) => target === version).map(([tag]) => tag);
    const readme = readmeOf(v);

    const banners: Html[] = [];
    if (v.yankedAt !== null) {
      banners.push(h`<p class="banner">This version was yanked on ${day(v.yankedAt)}${v.yankReason ? h`: ${v.yankReason}` : ""}. New installs do not pick it.</p>`);
    }
    if (v.deprecated !== null) banners.push(h`<p class="banner">Deprecated: ${v.deprecated}</p>`);
    if (!isLatest && v.yankedAt === null) {
      banners.push(h`<p class="note">You are viewing ${v.version}; the latest is <a href="${packageHref(name)}">${tags.latest ?? ""}</a>.</p>`);
    }

    const capabilityPanel = capabilities === null
      ? h`<p class="note">No <code>keel</code> field: a plain npm package, not a Keel plugin, so it declares no capabilities.</p>`
      : capabilities.length === 0
      ? h`<p>Asks for <strong>no capabilities</strong>.</p>`
      : h`<ul class="caps">${capabilities.map((c) =>
        isFullTrustText(c, report.fullTrust)
          ? h`<li><span class="cap full-trust">${c}</span> <strong class="note">full trust</strong></li>`
          : h`<li><span class="cap">${c}</span></li>`
      )}</ul>${
        report.fullTrust.length > 0
          ? h`<p class="note">Full trust: a subprocess, native code or the GPU driver can do anything the host can; grant it only to code you trust.</p>`
          : ""
      }`;

    const versionRows = [...snapshot.versions].reverse().map((x) => {
      const marks: Html[] = [];
      if (x.yankedAt !== null) marks.push(h`<span class="cap full-trust" title="${x.yankReason ?? ""}">yanked</span>`);
      if (x.deprecated !== null) marks.push(h`<span class="cap full-trust" title="${x.deprecated}">deprecated</span>`);
      for (const tag of tagsOf(x.version)) marks.push(h`<span class="kw">${tag}</span>`);
      return h`<tr${x === v ? raw(' aria-current="true"') : ""}><td><a href="${packageHref(name, x.version)}">${x.version}</a></td><td>${day(x.publishedAt)}</td><td>${marks}</td><td class="num">${
        count(downloads[x.version] ?? 0)
      }</td><td class="num">${scoreBadge(reportOf(x).score)}</td></tr>`;
    });

    const body = h`<div class="layout"><div>
<h1>${name}</h1><p><span class="version">${v.version}</span> ${scoreBadge(report.score)} <span class="note">published ${day(v.publishedAt)} by ${v.publisher}</span></p>
${description === "" ? "" : h`<p class="desc">${description}</p>`}
${banners}
<div class="panel"><h2>Install</h2>${
      capabilities === null
        ? h`<div class="install"><code id="install-line">npm install ${isLatest ? name : `${name}@${v.version}`}</code><button type="button" data-copy="install-line">Copy</button></div>`
        : h`<div class="install"><code id="install-line">${install}</code><button type="button" data-copy="install-line">Copy</button></div><p class="note">Shows the capabilities asked for and asks you to approve them.</p>`
    }</div>
${readme === undefined ? h`<p class="note">No readme.</p>` : h`<article class="readme">${raw(readme)}</article>`}
<div class="panel" id="versions"><h2>Versions</h2><table><thead><tr><th>Version</th><th>Published</th><th></th><th class="num">Downloads</th><th class="num">Score</th></tr></thead><tbody>${versionRows}</tbody></table></div>
<div class="panel" id="quality"><h2>Quality ${scoreBadge(report.score)}</h2><table><tbody>${
      report.checks.map((check) => h`<tr><td>${check.name}</td><td class="num">${check.points}/${check.max}</td><td class="note">${check.detail}</td></tr>`)
    }</tbody></table></div>
</div><aside>
<div class="panel" id="capabilities"><h2>Capabilities</h2>${capabilityPanel}</div>
<div class="panel" id="downloads"><h2>Downloads</h2><p><strong>${count(total)}</strong> in all, ${count(downloads[v.version] ?? 0)} of ${v.version}</p></div>
<div class="panel"><h2>About</h2><table><tbody>
${runtimes.length === 0 ? "" : h`<tr><th>Runtimes</th><td>${runtimes.join(", ")}</td></tr>`}
${keel !== undefined && typeof keel.kernel === "string" ? h`<tr><th>Kernel</th><td>${keel.kernel}</td></tr>` : ""}
${license === undefined ? "" : h`<tr><th>License</th><td>${license}</td></tr>`}
${homepage === undefined ? "" : h`<tr><th>Homepage</th><td><a href="${homepage}" rel="nofollow noopener noreferrer">${homepage}</a></td></tr>`}
${repository === undefined ? "" : h`<tr><th>Repository</th><td><a href="${repository}" rel="nofollow noopener noreferrer">${repository}</a></td></tr>`}
<tr><th>Owner</th><td>${snapshot.pkg.owner}</td></tr>
<tr><th>Files</th><td>${count(v.fileCount)}, ${count(v.unpackedSize)} bytes</td></tr>
${keywords.length === 0 ? "" : h`<tr><th>Keywords</th><td>${keywords.map((k) => h`<a class="kw" href="${searchHref({ keyword: k })}">${k}</a> `)}</td></tr>`}
</tbody></table></div>
</aside></div>`;
    return layout(`${name} · Keel plugins`, body);
  }

  return web;
}
