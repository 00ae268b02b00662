// Counts leaf tests in `deno test` pretty output (NO_COLOR). A test with steps prints
// "name ..." when it opens and "name ... ok" when it closes; only leaves are counted, so the
// totals match what `bun test` counts for the same files.
import { readFileSync } from "node:fs";

const text = readFileSync(process.argv[2], "utf8");
const open = new Set();
let passed = 0;
let failed = 0;
let ignored = 0;
for (const line of text.split("\n")) {
  if (/^ ERRORS $/.test(line) || /^ FAILURES $/.test(line)) break;
  const opening = /^(\s*)(.*) \.\.\.$/.exec(line);
  if (opening) {
    open.add(`${opening[1].length}:${opening[2]}`);
    continue;
  }
  const result = /^(\s*)(.*) \.\.\. (ok|FAILED|ignored)\b/.exec(line);
  if (!result) continue;
  const key = `${result[1].length}:${result[2]}`;
  if (open.has(key)) {
    open.delete(key);
    continue;
  }
  if (result[3] === "ok") passed++;
  else if (result[3] === "FAILED") failed++;
  else ignored++;
}
console.log(`${passed} ${failed} ${ignored}`);
