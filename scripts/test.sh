#!/usr/bin/env bash
# The whole suite: every *.test.ts under Deno, the same files under Bun, the doc examples,
# `deno check` (including core/ against web-standard types only), `deno lint`.
# Prints "N passed, M failed" last: N and M count test cases across both runtimes; a failed
# check or lint adds one failure each.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/node_modules/.bin"
if [ ! -x "$BIN/deno" ] || [ ! -x "$BIN/bun" ]; then
  echo "deno and bun come from npm: run 'npm install' first" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
export NO_COLOR=1
export KEEL_TEST_POSTGRES_URL="${KEEL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
passed=0
failed=0
status=0

step() { printf '\n=== %s\n' "$1"; }

step "deno test (type-checked, with doc examples)"
timeout 900 "$BIN/deno" test --allow-all --doc --parallel 2>&1 | tee "$logs/deno.txt"
deno_rc=${PIPESTATUS[0]}
read -r dp df di < <(node scripts/count-deno.mjs "$logs/deno.txt")
echo "deno: $dp passed, $df failed, $di ignored (exit $deno_rc)"
passed=$((passed + dp)); failed=$((failed + df))
if [ "$deno_rc" -ne 0 ] && [ "$df" -eq 0 ]; then failed=$((failed + 1)); fi
[ "$deno_rc" -ne 0 ] && status=1

step "bun test (the same files)"
timeout 900 "$BIN/bun" test --timeout 60000 2>&1 | tee "$logs/bun.txt"
bun_rc=${PIPESTATUS[0]}
bp=$(grep -Eo '^ *[0-9]+ pass$' "$logs/bun.txt" | grep -Eo '[0-9]+' | tail -1)
bf=$(grep -Eo '^ *[0-9]+ fail$' "$logs/bun.txt" | grep -Eo '[0-9]+' | tail -1)
bp=${bp:-0}; bf=${bf:-0}
echo "bun: $bp passed, $bf failed (exit $bun_rc)"
passed=$((passed + bp)); failed=$((failed + bf))
if [ "$bun_rc" -ne 0 ] && [ "$bf" -eq 0 ]; then failed=$((failed + 1)); fi
[ "$bun_rc" -ne 0 ] && status=1

step "deno check (whole tree; core/ and mod.ts against esnext + dom only)"
if "$BIN/deno" task check; then echo "check: ok"; else echo "check: FAILED"; failed=$((failed + 1)); status=1; fi

step "deno lint"
if "$BIN/deno" lint; then echo "lint: ok"; else echo "lint: FAILED"; failed=$((failed + 1)); status=1; fi

echo
echo "$passed passed, $failed failed"
exit $status
