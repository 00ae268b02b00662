/**
 * Readme rendering: what a hostile readme can try (script tags, event handler attributes,
 * javascript:/data:/vbscript: URLs in every disguise, comments, nesting tricks), checked on the
 * structure of the output: every tag and attribute must be one the renderer itself writes.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { escapeHtml, MARKDOWN_LIMIT, renderMarkdown, safeUrl } from "./markdown.ts";

/** The tags and attributes markdown-it's renderer (and our rule) writes; nothing else may appear. */
const TAGS = new Set(["h1", "h2", "h3", "h4", "h5", "h6", "p", "a", "img", "em", "strong", "s", "code", "pre", "blockquote", "ul", "ol", "li", "hr", "br", "table", "thead", "tbody", "tr", "th", "td"]);
const ATTRIBUTES = new Set(["href", "src", "alt", "title", "rel", "class", "start", "loading", "referrerpolicy"]);

/** Asserts the HTML is made only of allowed, well-formed tags, and every URL is allowed. */
function assertSafe(out: string, source = ""): void {
  const tags = [...out.matchAll(/<(\/?)([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z-]+(?:="[^"<>]*")?)*)\s*>/g)];
  assert.equal(tags.length, out.match(/<[^\s]/g)?.length ?? 0, `every "<" opens an allowed, well-formed tag\n${source}\n=> ${out}`);
  for (const [whole, , name, attributes] of tags) {
    assert.ok(TAGS.has(name!.toLowerCase()), `tag <${name}> in ${whole}\n${source}`);
    for (const [, attribute, value] of (attributes ?? "").matchAll(/\s([a-zA-Z-]+)(?:="([^"]*)")?/g)) {
      assert.ok(ATTRIBUTES.has(attribute!.toLowerCase()), `attribute ${attribute} in ${whole}\n${source}`);
      if (attribute === "href" || attribute === "src") {
        const decoded = (value ?? "").replace(/&amp;/g, "&").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">");
        assert.doesNotMatch(decoded, /&#|&[a-z]+;/i, `no character reference left for the browser to undo: ${whole}`);
        // deno-lint-ignore no-control-regex -- what the URL parser strips before reading the scheme
        const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(decoded.replace(/[\t\n\r]/g, "").replace(/^[\u0000-\u0020]+/, ""))?.[1]?.toLowerCase();
        assert.ok(scheme === undefined || ["http", "https", "mailto"].includes(scheme), `URL scheme ${scheme} in ${whole}`);
        if (attribute === "src") assert.notEqual(scheme, "mailto");
      }
    }
    if (name === "a" && !whole.startsWith("</")) assert.match(whole, /rel="nofollow noopener noreferrer"/);
  }
}

function render(markdown: string): string {
  const out = renderMarkdown(markdown);
  assertSafe(out, markdown);
  return out;
}

describe("renderMarkdown: Markdown still renders", () => {
  test("headings, emphasis, lists, tables, code, allowed links and images", () => {
    const out = render([
      "# Title", "", "Some *em* and **strong** and ~~del~~ and `code`.", "",
      "- one", "- two", "", "1. first", "", "| a | b |", "|---|:-:|", "| 1 | 2 |", "",
      "```ts", "const a = 1 < 2;", "```", "",
      "[site](https://example.com/a?b=1&c=2 \"The site\") [mail](mailto:a@example.com) [rel](./docs/x.md) [frag](#usage)",
      "![logo](https://example.com/logo.png) ![local](img/a.png)", "", "> quoted",
    ].join("\n"));
    assert.match(out, /<h1>Title<\/h1>/);
    assert.match(out, /<em>em<\/em> and <strong>strong<\/strong> and <s>del<\/s> and <code>code<\/code>/);
    assert.match(out, /<li>two<\/li>/);
    assert.match(out, /<th class="align-center">b<\/th>/, "alignment as a class: the CSP allows no style attribute");
    assert.match(out, /<pre><code class="language-ts">const a = 1 &lt; 2;/);
    assert.match(out, /<a href="https:\/\/example\.com\/a\?b=1&amp;c=2" title="The site" rel="nofollow noopener noreferrer">site<\/a>/);
    assert.match(out, /<a href="mailto:a@example\.com" rel="nofollow noopener noreferrer">mail<\/a>/);
    assert.match(out, /<a href="\.\/docs\/x\.md" rel="nofollow noopener noreferrer">rel<\/a>/);
    assert.match(out, /<a href="#usage" rel="nofollow noopener noreferrer">frag<\/a>/);
    assert.match(out, /<img src="https:\/\/example\.com\/logo\.png" alt="logo" loading="lazy" referrerpolicy="no-referrer">/);
    assert.match(out, /<img src="img\/a\.png" alt="local"/);
    assert.match(out, /<blockquote>\n<p>quoted<\/p>/);
  });

  test("URLs in text and <autolinks> become links with rel", () => {
    const out = render("See https://example.com and <https://a.example/x> and <me@example.com>.");
    assert.match(out, /<a href="https:\/\/example\.com" rel="nofollow noopener noreferrer">https:\/\/example\.com<\/a>/);
    assert.match(out, /<a href="https:\/\/a\.example\/x" rel="nofollow noopener noreferrer">/);
    assert.match(out, /<a href="mailto:me@example\.com" rel="nofollow noopener noreferrer">me@example\.com<\/a>/);
  });
});

describe("renderMarkdown: hostile readmes", () => {
  test("script tags, block and inline, any case, are text", () => {
    for (const source of [
      "<script>window.__xss = 1</script>",
      "text <script>window.__xss = 1</script> text",
      "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
      "# Heading <script>alert(1)</script>",
      "- item <script>alert(1)</script>",
      "<script\n>alert(1)</script\n>",
    ]) {
      const out = render(source);
      assert.doesNotMatch(out, /<script/i, source);
      assert.match(out, /&lt;script|&lt;SCRIPT/, source);
    }
  });

  test("event handler attributes on raw HTML are text", () => {
    for (const source of [
      '<img src=x onerror="window.__xss=2">',
      'inline <img src=x onerror="window.__xss=2"> inline',
      "<svg onload=alert(1)>",
      '<a href="https://ok.example" onclick="alert(1)">x</a>',
      "<div onmouseover='alert(1)'>\n\nhover\n\n</div>",
      '<iframe src="javascript:alert(1)"></iframe>',
      '<details open ontoggle="alert(1)"><summary>x</summary></details>',
      '<style>body{background:url("javascript:alert(1)")}</style>',
      '<form action="javascript:alert(1)"><button>go</button></form>',
      '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
      '<base href="https://evil.example/">',
    ]) {
      const out = render(source);
      assert.doesNotMatch(out, /<(img|svg|div|iframe|details|style|form|meta|base)\b/i, source);
      assert.doesNotMatch(out, /<a [^>]*onclick/i, source);
    }
  });

  test("javascript:, data:, vbscript: and file: URLs, in every disguise, leave the text only", () => {
    const disguises = [
      "javascript:window.__xss=3",
      "JaVaScRiPt:alert(1)",
      "&#106;avascript:alert(1)",
      "&#x6A;avascript:alert(1)",
      "&#0000106avascript:alert(1)",
      "javascript&colon;alert(1)",
      "javascript&#58;alert(1)",
      "java&#x09;script:alert(1)",
      "java&Tab;script:alert(1)",
      "&#x20;javascript:alert(1)",
      "<javascript:alert(1)>",
      "<java\tscript:alert(1)>",
      "vbscript:msgbox(1)",
      "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
      "file:///etc/passwd",
    ];
    for (const url of disguises) {
      for (const source of [`[click me](${url})`, `![pic](${url})`, `[click me][r]\n\n[r]: ${url}`]) {
        const out = render(source);
        assert.doesNotMatch(out, /<a |<img /, source);
      }
    }
    assert.doesNotMatch(render("<javascript:alert(1)>"), /<a /);
    assert.doesNotMatch(render("![x](data:image/png;base64,iVBORw0KGgo=)"), /<img/);
    assert.doesNotMatch(render("![x](mailto:a@example.com)"), /<img/, "mailto is for links, not images");
  });

  test("HTML comments are shown, not hidden", () => {
    const out = render("before <!-- <script>alert(1)</script> --> after\n\n<!--\nhidden block\n-->");
    assert.match(out, /before &lt;!-- &lt;script&gt;alert\(1\)&lt;\/script&gt; --&gt; after/);
    assert.match(out, /&lt;!--\nhidden block\n--&gt;/);
  });

  test("nested tricks: split tags, HTML in link text and titles, attribute breakouts, code", () => {
    const cases = [
      "<<script>script>alert(1)<</script>/script>",
      "<scr<script>ipt>alert(1)</scr</script>ipt>",
      "[<img src=x onerror=alert(1)>](https://ok.example)",
      '[a](https://ok.example "\\" onmouseover=\\"alert(1)")',
      '[a](https://ok.example \'" onmouseover="alert(1)\')',
      '![a" onerror="alert(1)](https://ok.example/i.png)',
      '![<img src=x onerror=alert(1)>](https://ok.example/i.png)',
      "[![img](javascript:alert(1))](javascript:alert(2))",
      "```js\" onmouseover=\"alert(1)\n<script>alert(1)</script>\n```",
      "`<script>alert(1)</script>`",
      "| <img src=x onerror=alert(1)> | [x](javascript:alert(1)) |\n|---|---|\n| <script>a</script> | b |",
      "> <script>alert(1)</script>\n> > <img src=x onerror=alert(1)>",
      "\\<script>alert(1)\\</script>",
      "\\<img src=x onerror=alert(1)// b",
      "&lt;script&gt;alert(1)&lt;/script&gt;",
      "<a href='javascript:alert(1)'>x</a>",
      "[x](https://ok.example/\"onmouseover=\"alert(1))",
      // marked passes text after an inline raw-text tag through unescaped; not here.
      "a <script><<img src=x onerror=alert(1)// b",
      "a <code><<img src=x onerror=alert(1) b",
      "a <pre>x <<svg/onload=alert(1)// b",
      "a <style><<iframe srcdoc=x// b",
    ];
    for (const source of cases) {
      const out = render(source);
      assert.doesNotMatch(out, /<script/i, source);
    }
    assert.match(render('[a](https://ok.example "\\" onmouseover=\\"x")'), /title="&quot; onmouseover=&quot;x"/);
  });

  test("a long readme renders, and past the limit is cut with a note", () => {
    const section = "## Section\n\nSome text with a [link](https://example.com) and `code`.\n\n```\ncode block\n```\n\n";
    const long = section.repeat(Math.ceil(MARKDOWN_LIMIT / section.length) + 100);
    const out = render(long);
    assert.match(out, /The readme is longer than 256 KiB; the rest is not shown/);
    const atLimit = render(section.repeat(Math.floor(MARKDOWN_LIMIT / section.length)));
    assert.doesNotMatch(atLimit, /longer than/);
    assert.equal(atLimit.match(/<h2>Section<\/h2>/g)?.length, Math.floor(MARKDOWN_LIMIT / section.length));
  });

  test("deep nesting does not overflow the stack", () => {
    for (const source of [">".repeat(50_000) + " x", "- ".repeat(5_000) + "x", "[".repeat(20_000) + "x" + "](y)".repeat(20_000), "*a".repeat(20_000), "<".repeat(50_000)]) {
      render(source);
    }
  });

  test("seeded mixes of hostile fragments are always safe", () => {
    const fragments = [
      "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))", "![y](data:image/png;base64,AA)",
      "<!-- c -->", "&#106;", "avascript:", "](", "[", ")", "<", ">", '"', "'", "`", "```", "\n", "\n\n", "# ", "> ", "- ",
      "| a |\n|---|\n", "https://ok.example", "<a href=", "onclick=", "&colon;", "*", "_", "\\", "www.", "mailto:", "<div>", "</div>",
      "<script>", "<code>", "<pre>", "<style>", "<img src=x onerror=alert(1)//", "\\<", "<<", "&lt;", "&#x3C;",
    ];
    let seed = 0x2545f491;
    const next = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 0x1_0000_0000;
    };
    for (let i = 0; i < 500; i++) {
      let source = "";
      const n = 2 + Math.floor(next() * 12);
      for (let j = 0; j < n; j++) source += fragments[Math.floor(next() * fragments.length)];
      render(source);
    }
  });
});

describe("safeUrl and escapeHtml", () => {
  test("allows http(s), mailto (links) and relative URLs; refuses the rest", () => {
    assert.equal(safeUrl("https://example.com/a?b=1&c=2"), "https://example.com/a?b=1&c=2");
    assert.equal(safeUrl(" http://example.com "), "http://example.com");
    assert.equal(safeUrl("mailto:a@example.com"), "mailto:a@example.com");
    assert.equal(safeUrl("mailto:a@example.com", "image"), undefined);
    assert.equal(safeUrl("./a/b.md"), "./a/b.md");
    assert.equal(safeUrl("#top"), "#top");
    assert.equal(safeUrl("//cdn.example/x"), "//cdn.example/x");
    assert.equal(safeUrl("a?b=1&amp;c=2"), "a?b=1&c=2");
    assert.equal(safeUrl("a%20b/c%2"), "a%20b/c%2");
    for (const bad of ["javascript:x", "java%09script:x", "%6Aavascript:x", "%20javascript:x", " \u0001javascript:x", "java\nscript:x", "&#106;avascript:x", "data:,x", "vbscript:x", "file:///x", "blob:https://x/1", "a\u0000b", "x".repeat(5000)]) {
      assert.equal(safeUrl(bad), undefined, JSON.stringify(bad));
    }
  });

  test("escapes the five characters that matter in text and attributes", () => {
    assert.equal(escapeHtml(`<a href="x" title='y'>&</a>`), "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
  });
});
