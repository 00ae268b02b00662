/**
 * `keel plugins`: boots the kernel and lists every plugin with how it runs and what it asked
 * for. A plugin refused for a missing grant is listed as "denied" instead of failing the command.
 * @module
 */

import type { ArgsDef } from "citty";
import type { PluginInfo } from "../../core/mod.ts";
import type { PluginOrigin } from "../boot.ts";
import type { CliCommand } from "../env.ts";
import { bootFromFlags, COMMON_ARGS, disposeQuietly } from "./common.ts";

const PLUGINS_ARGS = {
  json: { type: "boolean", description: "Print the list as JSON on stdout" },
  ...COMMON_ARGS,
} as const satisfies ArgsDef;

/** One capability a plugin asked for. */
export interface CapabilityRow {
  readonly capability: string;
  readonly granted: boolean;
  /** run, ffi and gpu: a grant amounts to full trust. */
  readonly fullTrust: boolean;
}

/** One line of `keel plugins --json`. */
export interface PluginRow {
  readonly name: string;
  readonly version: string;
  /** "isolated" (own Deno subprocess) or "in-process". */
  readonly mode: "isolated" | "in-process";
  readonly status: "loaded" | "denied";
  /** "registry": installed with `keel add` (keel.lock). */
  readonly source: PluginOrigin["source"];
  readonly module?: string;
  readonly capabilities: readonly CapabilityRow[];
  readonly hooks: readonly string[];
}

/** Describes a plugin the kernel reports. */
export function pluginRow(info: PluginInfo, origin: PluginOrigin | undefined): PluginRow {
  const row: PluginRow = {
    name: info.name,
    version: info.version,
    mode: info.isolated ? "isolated" : "in-process",
    status: info.status,
    source: origin?.source ?? "local",
    capabilities: info.requested.map((capability) => ({
      capability,
      granted: !info.missing.includes(capability),
      fullTrust: info.fullTrust.includes(capability),
    })),
    hooks: [...info.hooks],
  };
  return origin?.module === undefined ? row : { ...row, module: origin.module };
}

/** Renders rows as an aligned table. */
export function renderTable(rows: readonly PluginRow[]): string {
  const lines = [["NAME", "VERSION", "MODE", "STATUS", "CAPABILITIES"]];
  for (const r of rows) {
    const caps = r.capabilities.length
      ? r.capabilities.map((c) =>
        `${c.capability} ${c.granted ? "(granted)" : "(NOT granted)"}${
          c.fullTrust ? " [full trust]" : ""
        }`
      ).join(", ")
      : "none";
    lines.push([
      r.name,
      r.version,
      r.mode + (r.source === "first-party" ? " (first-party)" : r.source === "registry" ? " (keel.lock)" : ""),
      r.status,
      caps,
    ]);
  }
  const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  return lines.map((l) =>
    l.map((cell, i) => (i === l.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")
  ).join("\n");
}

/** The `plugins` command. */
export const PLUGINS_COMMAND: CliCommand = {
  meta: {
    name: "plugins",
    description: "List loaded plugins: how each runs, what it asks for, what was granted",
  },
  args: PLUGINS_ARGS,
  async run(env) {
    const booted = await bootFromFlags(env, "skip");
    try {
      const rows = booted.kernel.plugins.map((p) => pluginRow(p, booted.origins.get(p.name)));
      if (env.flags.booleans.has("json")) {
        await env.runtime.writeStdout(JSON.stringify(rows, null, 2) + "\n");
        return;
      }
      // A denied plugin was already reported by the kernel, with the --allow that grants it.
      await env.runtime.writeStdout(renderTable(rows) + "\n");
    } finally {
      await disposeQuietly(env, booted);
    }
  },
};
