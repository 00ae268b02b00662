/**
 * A quality score per version, 0 to 100, in the spirit of JSR's: it rewards what makes a plugin
 * easy to judge and to use, read from the published tarball alone.
 *
 * The work is split in two. At publish, {@link qualitySignals} reads the facts from the tarball
 * (its file list is not kept anywhere else) and the registry stores them with the version as
 * JSON. When a page is shown, {@link scoreQuality} turns the facts into points; so the weights
 * below can change without re-reading any tarball.
 *
 * | check        | points | how                                                                   |
 * |--------------|--------|-----------------------------------------------------------------------|
 * | readme       | 20     | 10 for any readme, 20 from {@link LONG_README} characters              |
 * | description  | 10     | `description` in package.json                                         |
 * | docs         | 15     | 8 for a "Usage"/"Example"/"Getting started"/"API" section, 7 for a code block |
 * | types        | 15     | `types`/`typings`, a `types` condition in `exports`, `.d.ts` files or TypeScript source |
 * | capabilities | 15     | 10 for a `keel` field (it declares what the plugin may do), 5 more when none is full trust (run, ffi, gpu) |
 * | tests        | 10     | test files in the tarball (`*.test.ts`, `*_test.ts`, `*.spec.js`, `test/`, `__tests__/` ...) |
 * | runtimes     | 15     | 10 for one runtime declared, 15 for two or more: `keel.runtimes`, `engines` keys, or runtime conditions in `exports` |
 * @module
 */

import { isFullTrust, parseCapability } from "../core/capabilities.ts";
import { KEEL_RUNTIMES, type KeelRuntime } from "./keel-field.ts";

/** Where a version's types come from; null when it has none that we can see. */
export type TypesSource = "field" | "exports" | "declarations" | "typescript";

/** The facts a score is made from; stored as JSON with each version. */
export interface QualitySignals {
  /** Characters of the readme, trimmed; 0 without one. */
  readonly readmeLength: number;
  /** Whether the readme has a usage, example, getting-started or API section. */
  readonly usageSection: boolean;
  /** Fenced code blocks in the readme. */
  readonly codeBlocks: number;
  readonly description: boolean;
  readonly types: TypesSource | null;
  /** `keel.capabilities`; null when the package has no `keel` field (not a plugin). */
  readonly capabilities: readonly string[] | null;
  /** Test files in the tarball; null when the file list is unknown. */
  readonly testFiles: number | null;
  /** Runtimes declared, in {@link KEEL_RUNTIMES} order. */
  readonly runtimes: readonly KeelRuntime[];
}

/** The name of each check, in the order they are shown. */
export const QUALITY_CHECKS = ["readme", "description", "docs", "types", "capabilities", "tests", "runtimes"] as const;

/** One of {@link QUALITY_CHECKS}. */
export type QualityCheckName = (typeof QUALITY_CHECKS)[number];

/** One line of a score's breakdown. */
export interface QualityCheck {
  readonly name: QualityCheckName;
  readonly points: number;
  readonly max: number;
  /** What was found, or what to add; plain text. */
  readonly detail: string;
}

/** A version's score and how it was made. */
export interface QualityReport {
  /** 0 to 100. */
  readonly score: number;
  readonly checks: readonly QualityCheck[];
  /** Requested capabilities that amount to full trust (run, ffi, gpu). */
  readonly fullTrust: readonly string[];
}

/** A readme this long (in characters) earns all of its points. */
export const LONG_README = 400;

/** What {@link qualitySignals} reads: a package's `package.json`, readme and files. */
export interface QualityInput {
  readonly packageJson: Readonly<Record<string, unknown>>;
  readonly readme?: string | undefined;
  /** The tarball's files; without them, tests are unknown and types come from fields only. */
  readonly files?: readonly { readonly path: string }[] | undefined;
}

const USAGE_HEADING = /^ {0,3}#{1,6}[ \t]+(?:[^\n]*?\b)?(usage|examples?|getting started|quick ?start|how to use|api)\b/im;
const CODE_FENCE = /^ {0,3}(```|~~~)/gm;
const TEST_FILE = /(?:^|\/)(?:__tests__|tests?|specs?)\/|[._-](?:test|spec)\.[cm]?[jt]sx?$/i;
const DECLARATION = /\.d\.[cm]?ts$/i;
const TYPESCRIPT = /\.(?:[cm]?ts|tsx)$/i;
/** `exports` conditions that name a runtime. */
const CONDITION_RUNTIMES: Readonly<Record<string, KeelRuntime>> = {
  deno: "deno",
  bun: "bun",
  node: "node",
  workerd: "edge",
  "edge-light": "edge",
  worker: "edge",
  netlify: "edge",
};

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Every key used anywhere in an `exports` tree (bounded, iteratively). */
function exportConditions(exports: unknown): Set<string> {
  const keys = new Set<string>();
  const stack: unknown[] = [exports];
  let budget = 10_000;
  while (stack.length > 0 && budget-- > 0) {
    const value = stack.pop();
    if (Array.isArray(value)) stack.push(...value);
    else if (isObject(value)) {
      for (const [key, child] of Object.entries(value)) {
        keys.add(key);
        stack.push(child);
      }
    }
  }
  return keys;
}

function typesSource(pj: Readonly<Record<string, unknown>>, files: readonly { readonly path: string }[] | undefined): TypesSource | null {
  if ((typeof pj.types === "string" && pj.types !== "") || (typeof pj.typings === "string" && pj.typings !== "")) return "field";
  if (exportConditions(pj.exports).has("types")) return "exports";
  const paths = (files ?? []).map((f) => f.path).filter((p) => !p.includes("node_modules/"));
  if (paths.some((p) => DECLARATION.test(p))) return "declarations";
  if (paths.some((p) => TYPESCRIPT.test(p))) return "typescript";
  return null;
}

function declaredRuntimes(pj: Readonly<Record<string, unknown>>): KeelRuntime[] {
  const found = new Set<KeelRuntime>();
  const keel = pj.keel;
  if (isObject(keel) && Array.isArray(keel.runtimes)) {
    for (const r of keel.runtimes) if ((KEEL_RUNTIMES as readonly unknown[]).includes(r)) found.add(r as KeelRuntime);
  }
  if (isObject(pj.engines)) {
    for (const key of Object.keys(pj.engines)) {
      const runtime = CONDITION_RUNTIMES[key];
      if (runtime !== undefined && runtime !== "edge") found.add(runtime);
    }
  }
  for (const key of exportConditions(pj.exports)) {
    const runtime = CONDITION_RUNTIMES[key];
    if (runtime !== undefined) found.add(runtime);
  }
  return KEEL_RUNTIMES.filter((r) => found.has(r));
}

/**
 * Reads the facts a score is made from: at publish, from the tarball's `package.json`, readme
 * and file list.
 */
export function qualitySignals(input: QualityInput): QualitySignals {
  const pj = input.packageJson;
  const readme = (input.readme ?? "").trim();
  const keel = pj.keel;
  const capabilities = isObject(keel) && Array.isArray(keel.capabilities)
    ? keel.capabilities.filter((c): c is string => typeof c === "string")
    : null;
  const files = input.files;
  return {
    readmeLength: readme.length,
    usageSection: USAGE_HEADING.test(readme),
    codeBlocks: Math.floor((readme.match(CODE_FENCE)?.length ?? 0) / 2),
    description: typeof pj.description === "string" && pj.description.trim() !== "",
    types: typesSource(pj, files),
    capabilities,
    testFiles: files === undefined ? null : files.filter((f) => !f.path.includes("node_modules/") && TEST_FILE.test(f.path)).length,
    runtimes: declaredRuntimes(pj),
  };
}

/** Signals stored as JSON, read back; undefined for null or anything malformed. */
export function parseQualitySignals(json: string | null): QualitySignals | undefined {
  if (json === null) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!isObject(value)) return undefined;
  const v = value;
  const count = (x: unknown) => (typeof x === "number" && Number.isSafeInteger(x) && x >= 0 ? x : 0);
  const types = ["field", "exports", "declarations", "typescript"].includes(v.types as string) ? (v.types as TypesSource) : null;
  return {
    readmeLength: count(v.readmeLength),
    usageSection: v.usageSection === true,
    codeBlocks: count(v.codeBlocks),
    description: v.description === true,
    types,
    capabilities: Array.isArray(v.capabilities) ? v.capabilities.filter((c): c is string => typeof c === "string") : null,
    testFiles: v.testFiles === null ? null : count(v.testFiles),
    runtimes: Array.isArray(v.runtimes) ? KEEL_RUNTIMES.filter((r) => (v.runtimes as unknown[]).includes(r)) : [],
  };
}

/** The capabilities that amount to full trust; an unparsable one counts as full trust. */
function fullTrustOf(capabilities: readonly string[]): string[] {
  return capabilities.filter((text) => {
    try {
      return isFullTrust(parseCapability(text, { base: "/" }));
    } catch {
      return true;
    }
  });
}

const TYPES_DETAIL: Readonly<Record<TypesSource, string>> = {
  field: 'A "types" field in package.json',
  exports: 'A "types" condition in "exports"',
  declarations: "Declaration files (.d.ts) in the package",
  typescript: "TypeScript source in the package",
};

/** Turns stored signals into a score from 0 to 100 with its breakdown. */
export function scoreQuality(signals: QualitySignals): QualityReport {
  const s = signals;
  const fullTrust = s.capabilities === null ? [] : fullTrustOf(s.capabilities);
  const checks: QualityCheck[] = [];
  const add = (name: QualityCheckName, points: number, max: number, detail: string) => checks.push({ name, points, max, detail });

  if (s.readmeLength === 0) add("readme", 0, 20, "No readme: add a README.md");
  else if (s.readmeLength < LONG_README) add("readme", 10, 20, `A short readme (${s.readmeLength} characters); say what the package does and how to use it`);
  else add("readme", 20, 20, `A readme of ${s.readmeLength} characters`);

  add("description", s.description ? 10 : 0, 10, s.description ? "A description in package.json" : 'No "description" in package.json');

  const docs = (s.usageSection ? 8 : 0) + (s.codeBlocks > 0 ? 7 : 0);
  const docParts = [
    s.usageSection ? "a usage or example section" : 'no "Usage" or "Example" section',
    s.codeBlocks > 0 ? `${s.codeBlocks} code block${s.codeBlocks === 1 ? "" : "s"}` : "no code block",
  ];
  add("docs", docs, 15, `The readme has ${docParts.join(" and ")}`);

  add("types", s.types === null ? 0 : 15, 15, s.types === null ? 'No types: add .d.ts files (and "types") or publish TypeScript' : TYPES_DETAIL[s.types]);

  if (s.capabilities === null) add("capabilities", 0, 15, 'No "keel" field: the capabilities it needs are not declared');
  else if (s.capabilities.length === 0) add("capabilities", 15, 15, "Declares that it needs no capabilities");
  else if (fullTrust.length === 0) add("capabilities", 15, 15, `Declares ${s.capabilities.length} capabilit${s.capabilities.length === 1 ? "y" : "ies"}, none full trust`);
  else add("capabilities", 10, 15, `Declares its capabilities; ${fullTrust.join(", ")} ${fullTrust.length === 1 ? "is" : "are"} full trust`);

  if (s.testFiles === null) add("tests", 0, 10, "Unknown: the file list was not recorded for this version");
  else add("tests", s.testFiles > 0 ? 10 : 0, 10, s.testFiles > 0 ? `${s.testFiles} test file${s.testFiles === 1 ? "" : "s"} in the package` : "No test files in the package");

  const n = s.runtimes.length;
  add("runtimes", n === 0 ? 0 : n === 1 ? 10 : 15, 15, n === 0 ? 'No runtime declared: add "keel.runtimes" or "engines"' : `Declares ${s.runtimes.join(", ")}`);

  return { score: checks.reduce((sum, c) => sum + c.points, 0), checks, fullTrust };
}
