/**
 * The Store conformance suite, under the name the drivers import. The suite itself lives in
 * `_conformance.ts`, the file name the import-boundary check allows to use `node:test`.
 * @module
 */
export { testStore } from "./_conformance.ts";
