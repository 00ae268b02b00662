/**
 * Markdown to HTML that is safe to put on a page, for readmes on the registry's web pages.
 *
 * Parsing is `markdown-it` (CommonMark plus GitHub's tables, strikethrough and URL autolinks; well
 * kept, runs on Deno, Bun and edge hosts), chosen over `marked` for two reasons measured here:
 * it is safe by default (`html: false` turns every raw HTML block, inline tag and comment into
 * text, with no "raw text" mode to slip through), and it stays near-linear on hostile input,
 * where `marked` took 15 s (Deno) to 78 s (Bun) on 64 KiB of `_a_a…` or `- - - …`. The safety
 * kept on top of its defaults, in a private instance (no global plugin can change it):
 * - every link and image URL is checked again by {@link safeUrl} after parsing: links may be
 *   http(s), mailto or relative, images http(s) or relative; anything else (`javascript:`,
 *   `data:`, `vbscript:`, `file:` ...) leaves the text without the link or image;
 * - links get `rel="nofollow noopener noreferrer"`, images `referrerpolicy="no-referrer"`;
 * - nesting is capped (markdown-it's `maxNesting`), and input past {@link MARKDOWN_LIMIT} is cut.
 *
 * A sanitizer that parses the output HTML (DOMPurify, sanitize-html) would need a DOM or a full
 * HTML parser on the server; escaping at the parser leaves nothing to clean. The page's
 * Content-Security-Policy is the second line: no inline script runs there either.
 * @module
 */

import MarkdownIt from "markdown-it";
import type { MarkdownIt as Parser, StateCore, Token } from "markdown-it";

/** The most characters of Markdown rendered; the rest is cut, with a note. */
export const MARKDOWN_LIMIT = 256 * 1024;

const NAMED_REFERENCES: Readonly<Record<string, string>> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  colon: ":",
  tab: "\t",
  newline: "\n",
  nbsp: "\u00a0",
  sol: "/",
  period: ".",
  lpar: "(",
  rpar: ")",
};

/** Escapes text for HTML content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => (c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === '"' ? "&quot;" : "&#39;"));
}

/** Undoes numeric and the common named character references (`&#106;`, `&#x6A;`, `&colon;`). */
function decodeReferences(text: string): string {
  return text.replace(/&(#[xX][0-9a-fA-F]{1,8}|#[0-9]{1,10}|[a-zA-Z]{2,10});?/g, (whole, ref: string) => {
    if (ref.startsWith("#")) {
      const code = ref[1] === "x" || ref[1] === "X" ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return Number.isSafeInteger(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : "\ufffd";
    }
    return NAMED_REFERENCES[ref.toLowerCase()] ?? whole;
  });
}

/** Where a URL may appear: link targets allow `mailto:` too. */
export type UrlUse = "link" | "image";

/**
 * The URL as it may be written into an `href`/`src` (still to be HTML-escaped), or undefined
 * when it is not allowed: only http(s), mailto (links) and relative URLs pass. The check is made
 * on what a browser would read: character references undone, tab and newline removed, leading
 * and trailing control characters and spaces stripped.
 */
export function safeUrl(url: string, use: UrlUse = "link"): string | undefined {
  // deno-lint-ignore no-control-regex -- control characters are exactly what is stripped
  const cleaned = decodeReferences(url).replace(/[\t\n\r]/g, "").replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, "");
  if (cleaned.length > 4096) return undefined;
  // deno-lint-ignore no-control-regex -- a control character anywhere else is refused outright
  if (/[\u0000-\u001f\u007f]/.test(cleaned)) return undefined;
  const allowed = use === "link" ? ["http", "https", "mailto"] : ["http", "https"];
  const schemeOf = (text: string) => /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(text)?.[1]?.toLowerCase();
  const scheme = schemeOf(cleaned);
  if (scheme !== undefined) return allowed.includes(scheme) ? cleaned : undefined;
  // Relative. A browser reads "java%09script:" as a path, but refuse what only hides a scheme.
  let unescaped = cleaned;
  try {
    unescaped = decodeURIComponent(cleaned);
  } catch {
    // a stray "%": nothing was hidden by it
  }
  // deno-lint-ignore no-control-regex -- as above, after %-decoding
  const hidden = schemeOf(unescaped.replace(/[\u0000-\u0020]/g, ""));
  return hidden === undefined || allowed.includes(hidden) ? cleaned : undefined;
}

function attribute(token: Token, name: string): string {
  const value = token.attrGet(name);
  return value === null ? "" : String(value);
}

/** The core rule that checks every link and image once inline parsing (and linkify) is done. */
function checkUrls(state: StateCore): void {
  for (const block of state.tokens) {
    // Table alignment as a class: the page's CSP allows no style attribute.
    const align = /^text-align:(left|center|right)$/.exec(attribute(block, "style"))?.[1];
    if (align !== undefined && block.attrs !== null) {
      block.attrs = block.attrs.filter(([name]) => name !== "style");
      block.attrSet("class", `align-${align}`);
    }
    if (block.children === null) continue;
    const kept: Token[] = [];
    const dropped: boolean[] = [];
    for (const token of block.children) {
      if (token.type === "link_open") {
        const href = attribute(token, "href");
        // markdown-it leaves an href it refused empty; such a link goes too.
        const ok = href !== "" && safeUrl(href, "link") !== undefined;
        dropped.push(!ok);
        if (ok) {
          token.attrSet("rel", "nofollow noopener noreferrer");
          kept.push(token);
        }
      } else if (token.type === "link_close") {
        if (dropped.pop() !== true) kept.push(token);
      } else if (token.type === "image" && (attribute(token, "src") === "" || safeUrl(attribute(token, "src"), "image") === undefined)) {
        const text = new state.Token("text", "", 0);
        text.content = token.content;
        kept.push(text);
      } else {
        if (token.type === "image") {
          token.attrSet("loading", "lazy");
          token.attrSet("referrerpolicy", "no-referrer");
        }
        kept.push(token);
      }
    }
    block.children = kept;
  }
}

function createParser(): Parser {
  const md = new MarkdownIt("default", { html: false, linkify: true, typographer: false, maxNesting: 50 });
  // Refused here already (autolinks, linkify, reference definitions), then checked again above.
  md.validateLink = (url: string) => safeUrl(url, "link") !== undefined;
  md.core.ruler.push("keel_safe_urls", checkUrls);
  return md;
}

let shared: Parser | undefined;

/**
 * Renders Markdown (CommonMark with GitHub's tables, strikethrough and URL autolinks) to HTML safe
 * to insert into a page: raw HTML is shown as text and only http(s), mailto and relative URLs
 * become links (images: http(s) and relative). Input past {@link MARKDOWN_LIMIT} characters is cut.
 *
 * @example
 * ```ts
 * import { renderMarkdown } from "./markdown.ts";
 * const out = renderMarkdown("# Hi <script>alert(1)</script> [x](javascript:alert(1))");
 * if (out.includes("<script") || out.includes("javascript:alert(1)\"")) throw new Error("unsafe");
 * ```
 */
export function renderMarkdown(markdown: string): string {
  shared ??= createParser();
  const cut = markdown.length > MARKDOWN_LIMIT;
  const source = cut ? markdown.slice(0, MARKDOWN_LIMIT) : markdown;
  let out: string;
  try {
    out = shared.render(source);
  } catch {
    // markdown-it does not throw on any input we know of; if it ever does, the text is still shown.
    return `<pre>${escapeHtml(source)}</pre>`;
  }
  return cut ? `${out}<p><em>The readme is longer than ${MARKDOWN_LIMIT / 1024} KiB; the rest is not shown.</em></p>` : out;
}
