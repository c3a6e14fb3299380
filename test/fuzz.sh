#!/usr/bin/env bash
# Runs every native Go fuzz target in the repository for SECONDS each
# (default 60), one after the other, and stops at the first failure with
# the path of the failing input (which go test writes under the
# package's testdata/fuzz/FuzzXxx/: commit it with the fix, and every
# `go test` replays it). Prints, per target, the executions and the new
# corpus entries found.
#
#   test/fuzz.sh [SECONDS]        FUZZ_WORKERS=N sets -parallel (default 2)
#
# `go test ./...` already runs every target's seeds and committed corpus
# (CI's brief run); this is the campaign.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
workers="${FUZZ_WORKERS:-2}"
case "$secs" in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac

# Only packages with a Fuzz function in a test file are listed (listing
# compiles the package's tests).
pkgs=$(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
  xargs -n1 dirname | sort -u)

results=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for dir in $pkgs; do
  pkg="./${dir#./}"
  for name in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "== $pkg $name (${secs}s)"
    if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "${secs}s" -parallel "$workers" "$pkg" >"$log" 2>&1; then
      tail -n 40 "$log"
      input=$(grep -oE 'testdata/fuzz/[^ ]+' "$log" | tail -n 1 || true)
      echo
      echo "FAIL: $pkg $name"
      [ -n "$input" ] && echo "failing input: ${dir#./}/$input"
      exit 1
    fi
    last=$(grep -E '^fuzz: elapsed:' "$log" | tail -n 1)
    execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
    new=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
    results+=("$(printf '%-45s %-32s %12s %8s' "$name" "$pkg" "${execs:-?}" "${new:-?}")")
  done
done

echo
printf '%-45s %-32s %12s %8s\n' target package executions new
for r in "${results[@]}"; do echo "$r"; done
