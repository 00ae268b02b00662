/**
 * `keel search <text>`: searches a registry (`GET /-/v1/search`, npm's search API) and prints a
 * table of name, version, description and capabilities. `--capability KIND` (a kind like `net`,
 * or a whole capability string), `--keyword K` and `--runtime R` narrow it; each is repeatable.
 * @module
 */

import type { ArgsDef } from "citty";
import { KeelError } from "../../core/errors.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { allValues } from "../flags.ts";
import { REGISTRY_ENV, registryClientFor } from "./add.ts";
import { registryRequest } from "./publish.ts";

const SEARCH_ARGS = {
  text: { type: "positional", description: "Words to search for in names, descriptions and keywords", required: false },
  capability: { type: "string", valueHint: "kind", description: "Only plugins asking for this capability kind (net, env, read...) or capability. Repeatable" },
  keyword: { type: "string", valueHint: "word", description: "Only packages with this keyword. Repeatable" },
  runtime: { type: "string", valueHint: "name", description: "Only plugins that say they run on deno, bun, node or edge. Repeatable" },
  registry: { type: "string", valueHint: "url", description: `The registry (default ${REGISTRY_ENV}, else keel.lock's, else http://127.0.0.1:4873)` },
  json: { type: "boolean", description: "Print the hits as JSON on stdout" },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

/** One hit of `keel search`. */
interface SearchHit {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  readonly capabilities: readonly string[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A qualifier value: one word, no spaces (the registry splits the text on whitespace). */
function qualifier(flag: string, values: readonly string[]): string[] {
  return values.map((v) => {
    if (v === "" || /\s/.test(v)) throw new KeelError("E_CLI_USAGE", `--${flag} takes one word without spaces; got "${v}"`);
    return `${flag === "keyword" ? "keywords" : flag}:${v}`;
  });
}

/** Cuts `text` to `width` characters, with "…" when cut. */
function cut(text: string, width: number): string {
  return text.length <= width ? text : text.slice(0, width - 1) + "…";
}

async function searchCommand(env: CliEnv): Promise<void> {
  const { runtime, flags } = env;
  const words = flags.positionals.slice(1);
  const terms = [
    ...words,
    ...qualifier("capability", allValues(flags, "capability")),
    ...qualifier("keyword", allValues(flags, "keyword")),
    ...qualifier("runtime", allValues(flags, "runtime")),
  ];
  if (terms.length === 0) throw new KeelError("E_CLI_USAGE", "keel search needs words or a filter, as in: keel search weather --capability net");
  const text = terms.join(" ");
  const client = await registryClientFor(env, runtime.cwd());
  const token = runtime.env.get("KEEL_REGISTRY_TOKEN");
  const answer = await registryRequest(client.url, {
    method: "GET",
    path: `/-/v1/search?${new URLSearchParams({ text, size: "50" })}`,
    what: `the search for "${text}"`,
    ...(token === undefined || token === "" ? {} : { token }),
  });
  const objects = isRecord(answer) && Array.isArray(answer.objects) ? answer.objects : [];
  const hits: SearchHit[] = objects.flatMap((o): SearchHit[] => {
    const p = isRecord(o) && isRecord(o.package) ? o.package : undefined;
    if (p === undefined || typeof p.name !== "string") return [];
    const keel = isRecord(p.keel) && Array.isArray(p.keel.capabilities) ? p.keel.capabilities.filter((c): c is string => typeof c === "string") : [];
    return [{ name: p.name, version: typeof p.version === "string" ? p.version : "", description: typeof p.description === "string" ? p.description : "", capabilities: keel }];
  });
  const total = isRecord(answer) && typeof answer.total === "number" ? answer.total : hits.length;
  if (flags.booleans.has("json")) {
    await runtime.writeStdout(JSON.stringify({ ok: true, text, total, hits }) + "\n");
    return;
  }
  if (hits.length === 0) {
    env.out.info(`Nothing in ${client.url} matches "${text}"`);
    return;
  }
  const rows = [["NAME", "VERSION", "DESCRIPTION", "CAPABILITIES"], ...hits.map((h) => [
    h.name,
    h.version,
    cut(h.description.replace(/\s+/g, " "), 50),
    h.capabilities.length === 0 ? "-" : h.capabilities.join(", "),
  ])];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((cell, i) => (i < 3 ? cell.padEnd(widths[i]!) : cell)).join("  ").trimEnd());
  await runtime.writeStdout(lines.join("\n") + "\n");
  if (total > hits.length) env.out.info(`${total} matches; showing the first ${hits.length}: narrow the search`);
}

/** The `search` command. */
export const SEARCH_COMMAND: CliCommand = {
  meta: { name: "search", description: "Search a registry for plugins, by words, capability, keyword or runtime" },
  args: SEARCH_ARGS,
  run: searchCommand,
};
