/**
 * `keel info <name>[@version]`: a package's document, summarized: its versions (yanked and
 * deprecated ones marked), dist-tags, and for one version (default `latest`, or what the spec
 * resolves to) the `keel` field (capabilities, full-trust ones marked; kernel range; entry), the
 * integrity, and the `keel add` line that installs it.
 * @module
 */

import type { ArgsDef } from "citty";
import { isFullTrust, parseCapability } from "../../core/capabilities.ts";
import { KeelError } from "../../core/errors.ts";
import { resolveVersion, type VersionDocument } from "../../registry/client.ts";
import type { CliCommand, CliEnv } from "../env.ts";
import { REGISTRY_ENV, REGISTRY_TOKEN_ENV, registryClientFor } from "./add.ts";

const INFO_ARGS = {
  spec: { type: "positional", description: "The package: NAME or NAME@VERSION|RANGE|TAG (default latest)", required: true },
  registry: { type: "string", valueHint: "url", description: `The registry (default ${REGISTRY_ENV}, else keel.lock's, else http://127.0.0.1:4873); token from ${REGISTRY_TOKEN_ENV}` },
  json: { type: "boolean", description: "Print the summary as JSON on stdout" },
  debug: { type: "boolean", description: "Print stack traces and debug lines (also KEEL_DEBUG=1)" },
} as const satisfies ArgsDef;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** One capability of the shown version. */
interface CapabilityRow {
  readonly capability: string;
  readonly fullTrust: boolean;
}

async function infoCommand(env: CliEnv): Promise<void> {
  const { runtime, flags } = env;
  const [, spec, ...extra] = flags.positionals;
  if (spec === undefined) throw new KeelError("E_CLI_USAGE", "keel info needs a package, as in: keel info @acme/plugin (or @acme/plugin@1.2.0)");
  if (extra.length > 0) throw new KeelError("E_CLI_USAGE", `keel info takes one package at a time; got ${[spec, ...extra].map((s) => `"${s}"`).join(", ")}`);
  const at = spec.indexOf("@", 1);
  const name = at < 0 ? spec : spec.slice(0, at);
  const wanted = at < 0 ? "latest" : spec.slice(at + 1);
  const client = await registryClientFor(env, runtime.cwd());
  const doc = await client.packument(name);
  const resolved = resolveVersion(doc, wanted);
  const document: VersionDocument = resolved.document ?? await client.versionDocument(name, resolved.version);

  const yanked = isRecord(doc.yanked) ? doc.yanked : {};
  const versions = [...new Set([...Object.keys(doc.versions), ...Object.keys(yanked)])].map((version) => {
    const v = doc.versions[version];
    const y = yanked[version];
    return {
      version,
      ...(typeof doc.time?.[version] === "string" ? { published: doc.time[version] } : {}),
      ...(y !== undefined || v?.yanked === true ? { yanked: true, ...(y?.reason ? { yankReason: y.reason } : {}) } : {}),
      ...(typeof v?.deprecated === "string" && v.deprecated !== "" ? { deprecated: v.deprecated } : {}),
    };
  });
  const keelValue = document.keel;
  const keel = isRecord(keelValue) ? keelValue : undefined;
  const capabilities: CapabilityRow[] = (Array.isArray(keel?.capabilities) ? keel.capabilities : []).filter((c): c is string => typeof c === "string").map((capability) => {
    let fullTrust = false;
    try {
      fullTrust = isFullTrust(parseCapability(capability, { base: "/" }));
    } catch {
      // The registry validated it at publish; an unparsable one is shown as it is.
    }
    return { capability, fullTrust };
  });
  const addLine = `keel add ${name}@${resolved.version}`;
  const summary = {
    name,
    version: resolved.version,
    description: typeof document.description === "string" ? document.description : "",
    distTags: doc["dist-tags"],
    versions,
    keel: keel === undefined
      ? null
      : { entry: typeof keel.entry === "string" ? keel.entry : null, kernel: typeof keel.kernel === "string" ? keel.kernel : null, capabilities, ...(Array.isArray(keel.runtimes) ? { runtimes: keel.runtimes } : {}) },
    integrity: document.dist.integrity ?? null,
    tarball: document.dist.tarball,
    signed: Array.isArray(document.dist.signatures) && document.dist.signatures.length > 0,
    yanked: resolved.yanked,
    ...(resolved.deprecated === undefined ? {} : { deprecated: resolved.deprecated }),
    add: addLine,
  };
  if (flags.booleans.has("json")) {
    await runtime.writeStdout(JSON.stringify({ ok: true, ...summary }) + "\n");
    return;
  }
  const tagsOf = (version: string) => Object.entries(doc["dist-tags"]).filter(([, v]) => v === version).map(([t]) => t);
  const lines = [
    `${name}@${resolved.version}${summary.description === "" ? "" : `: ${summary.description}`}`,
    "",
    "versions:",
    ...versions.map((v) => {
      const marks = [
        ...tagsOf(v.version),
        ...("yanked" in v ? [`yanked${"yankReason" in v ? `: ${v.yankReason}` : ""}`] : []),
        ...("deprecated" in v ? [`deprecated: ${v.deprecated}`] : []),
      ];
      return `  ${v.version === resolved.version ? "*" : " "} ${v.version}${marks.length === 0 ? "" : `  (${marks.join("; ")})`}`;
    }),
    `dist-tags: ${Object.entries(doc["dist-tags"]).map(([t, v]) => `${t} -> ${v}`).join(", ") || "none"}`,
    "",
  ];
  if (summary.keel === null) {
    lines.push("keel: none (not a Keel plugin; keel add refuses it)");
  } else {
    lines.push(
      `keel entry:   ${summary.keel.entry ?? "?"}`,
      `kernel:       ${summary.keel.kernel ?? "?"}`,
      ...(summary.keel.runtimes === undefined ? [] : [`runtimes:     ${summary.keel.runtimes.join(", ")}`]),
      capabilities.length === 0 ? "capabilities: none" : "capabilities:",
      ...capabilities.map((c) => `  ${c.capability}${c.fullTrust ? "  [full trust: it can do anything you can]" : ""}`),
    );
  }
  lines.push(
    `integrity:    ${summary.integrity ?? "none"}${summary.signed ? " (signed by the registry)" : " (unsigned: keel add refuses it)"}`,
    ...(resolved.yanked ? ["This version is yanked: it installs only when pinned exactly"] : []),
    ...(resolved.deprecated === undefined ? [] : [`Deprecated: ${resolved.deprecated}`]),
    "",
    `install:      ${addLine}`,
  );
  await runtime.writeStdout(lines.join("\n") + "\n");
}

/** The `info` command. */
export const INFO_COMMAND: CliCommand = {
  meta: { name: "info", description: "Show a package from a registry: versions, dist-tags, capabilities, integrity, the keel add line" },
  args: INFO_ARGS,
  run: infoCommand,
};
