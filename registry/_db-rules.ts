/**
 * What the registry's databases decide the same way whatever the SQL dialect: the version order,
 * which version "latest" moves to, the manifests' and tags' invariants that `check()` reports,
 * and the errors (codes and messages) of the rules every write enforces. `db.ts` (SQLite) and
 * `db-postgres.ts` both use these, so the two answer a client alike.
 * @module
 */

import { KeelError } from "../core/errors.ts";

/** Compares two semver strings for an ascending sort (build metadata is never stored, so this is total). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[-+]/)[0]!.split(".").map(Number);
  const pb = b.split(/[-+]/)[0]!.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  const ra = a.includes("-") ? a.slice(a.indexOf("-") + 1) : undefined;
  const rb = b.includes("-") ? b.slice(b.indexOf("-") + 1) : undefined;
  if (ra === undefined || rb === undefined) return ra === rb ? 0 : ra === undefined ? 1 : -1;
  const xa = ra.split(".");
  const xb = rb.split(".");
  for (let i = 0; i < Math.max(xa.length, xb.length); i++) {
    const ia = xa[i];
    const ib = xb[i];
    if (ia === undefined) return -1;
    if (ib === undefined) return 1;
    const na = /^\d+$/.test(ia);
    const nb = /^\d+$/.test(ib);
    if (na && nb) {
      const d = Number(ia) - Number(ib);
      if (d !== 0) return d;
    } else if (na !== nb) return na ? -1 : 1;
    else if (ia !== ib) return ia < ib ? -1 : 1;
  }
  return 0;
}

/** The UTC day ("2025-01-31") downloads are counted under. */
export function utcDay(at: number): string {
  return new Date(at).toISOString().slice(0, 10);
}

/** Where "latest" goes when its version was unpublished: the highest release left, else the highest prerelease. */
export function latestOf(live: readonly string[]): string | undefined {
  const releases = live.filter((v) => !v.includes("-"));
  return [...(releases.length > 0 ? releases : live)].sort(compareVersions).at(-1);
}

/** The string entries of the `runtimes` list in a version's quality JSON; empty when absent or malformed. */
export function runtimesOf(quality: string | null | undefined): string[] {
  if (typeof quality !== "string") return [];
  try {
    const parsed: unknown = JSON.parse(quality);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return [];
    const list = (parsed as { runtimes?: unknown }).runtimes;
    return Array.isArray(list) ? list.filter((r): r is string => typeof r === "string") : [];
  } catch {
    return [];
  }
}

/** The problem with a stored version's manifests, or undefined when both are JSON. */
export function manifestProblem(id: string, manifest: string, abbreviated: string): string | undefined {
  try {
    JSON.parse(manifest);
    JSON.parse(abbreviated);
    return undefined;
  } catch {
    return `the manifest of ${id} is not JSON`;
  }
}

/** The `check()` line for a dist-tag that points at no live version. */
export function danglingTagProblem(name: string, tag: string, version: string): string {
  return `dist-tag ${name}@${tag} points at ${version}, which is not a live version`;
}

/** The `check()` line for a package row without any version. */
export function emptyPackageProblem(name: string): string {
  return `package ${name} has no versions at all (a publish was half-written)`;
}

/**
 * The one package a batch of publish records names.
 * @throws {RangeError} when there are none, or they name more than one package.
 */
export function batchName(records: readonly { readonly name: string }[]): string {
  const name = records[0]?.name;
  if (name === undefined) throw new RangeError("A batch publish needs at least one version");
  const other = records.find((r) => r.name !== name);
  if (other !== undefined) throw new RangeError(`A batch publish is of one package; it names "${name}" and "${other.name}"`);
  return name;
}

/** `E_REGISTRY_FORBIDDEN` with details. */
export function forbidden(message: string, details: Record<string, unknown> = {}): KeelError {
  return new KeelError("E_REGISTRY_FORBIDDEN", message, { details });
}

/** `E_REGISTRY_NOT_FOUND`. */
export function notFound(message: string): KeelError {
  return new KeelError("E_REGISTRY_NOT_FOUND", message);
}

/** A write on a package that does not exist. */
export function noSuchPackage(name: string): KeelError {
  return notFound(`No package "${name}" is in this registry`);
}

/** A write by someone who does not own the package. */
export function notOwner(user: string, name: string, owner: string): KeelError {
  return forbidden(`"${user}" does not own "${name}" (its owner is "${owner}"); ask the owner, or use an admin token`, { package: name });
}

/** A publish of a new version by someone who does not own the package. */
export function cannotPublish(user: string, name: string, owner: string): KeelError {
  return forbidden(`"${user}" cannot publish "${name}": it belongs to "${owner}"`, { package: name });
}

/** A new package in a scope that other users' packages hold. */
export function scopeTaken(name: string, scope: string, owners: readonly string[]): KeelError {
  return forbidden(`The scope "@${scope}" belongs to ${owners.map((o) => `"${o}"`).join(", ")}; ask them, or use an admin token`, {
    package: name,
    scope,
  });
}

/** A new package whose name folds to an existing package's. */
export function lookAlike(name: string, similar: string): KeelError {
  return forbidden(`"${name}" is too similar to the existing package "${similar}" (they differ only in case, "-", "." or "_"); choose another name`, {
    package: name,
    similar,
  });
}

/** A publish past `maxVersions`. */
export function tooManyVersions(name: string, count: number, limit: number): KeelError {
  return new KeelError("E_REGISTRY_TOO_LARGE", `"${name}" has ${count} versions, the most one package may have here; publish under a new name, or ask the registry's admin to raise the limit`, {
    details: { package: name, limit },
  });
}

/** A publish of a name@version that was ever published. */
export function versionExists(name: string, version: string): KeelError {
  return new KeelError("E_REGISTRY_VERSION_EXISTS", `${name}@${version} was published before, and versions are immutable; bump the version and publish again`, {
    details: { package: name, version },
  });
}

/** A tag on a version that is not live. */
export function noVersionToTag(name: string, version: string): KeelError {
  return notFound(`${name} has no version ${version}; tag a published version`);
}

/** A tag on a yanked version. */
export function yankedTag(name: string, version: string): KeelError {
  return forbidden(`${name}@${version} is yanked; restore it first, or tag another version`);
}

/** A yank or unpublish of a version that is not live. */
export function noSuchVersion(name: string, version: string): KeelError {
  return notFound(`${name} has no version ${version}`);
}

/** An unpublish after the window; `age` and `windowMs` in milliseconds. */
export function unpublishTooLate(name: string, version: string, age: number, windowMs: number): KeelError {
  return forbidden(
    `${name}@${version} was published ${Math.floor(age / 3_600_000)} hours ago; versions can be unpublished only within ${Math.round(windowMs / 3_600_000)} hours. Yank it instead (PUT /-/keel/yank/<package>/<version>): that hides it from resolution but keeps existing installs working`,
    { package: name, version },
  );
}
