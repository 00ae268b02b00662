/**
 * Versions: the package's, the kernel's, and the runtime's.
 * @module
 */

import pkg from "../package.json" with { type: "json" };
import { KERNEL_VERSION } from "../core/version.ts";
import type { Runtime } from "../core/runtime.ts";

/** The version of the keel package. */
export const PACKAGE_VERSION: string = pkg.version;

/** One line for `keel --version`: `keel 0.1.0 (kernel 1.0.0, deno 2.9.5)`. */
export function versionLine(runtime: Pick<Runtime, "name" | "version">): string {
  return `keel ${PACKAGE_VERSION} (kernel ${KERNEL_VERSION}, ${runtime.name} ${runtime.version})`;
}
