#!/usr/bin/env bash
# The figures of SECURITY.md's summary table, from one run: every test
# behind the hardening's acceptance, verbose, then the refusal
# benchmark. Writes the whole log to $OUT/security.log and the figure
# lines to standard output.
#
#   test/security.sh            # about 5 minutes here
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/iotgate-security.XXXXXX)}
mkdir -p "$OUT"
LOG=$OUT/security.log
# The Alibaba SDK's registration over HTTPS needs the npm clients.
[ -d test/node/node_modules ] || npm ci --prefix test/node >/dev/null
echo "security.sh: log in $LOG" >&2
{
  date -u +"run %Y-%m-%dT%H:%M:%SZ, commit $(git rev-parse --short HEAD)"
  IOTGATE_FLOOD=1 go test -count=1 -v -timeout 30m ./test/ -run \
    '^(TestDiskFull|TestMQTTConnectClaimsRSS|TestLwM2MSpoofedClientHelloFlood|TestMQTTBruteForceFlood|TestAliInteropNodeSDK|TestCrashLoop|TestRESTSlowClientFlood)$' || true
  go test -count=1 -v ./mqtt/ -run '^(TestMQTTBruteForceIsBanned|TestMQTTRefusedFloodHoldsNoMemory|TestMQTTConnectBoundedBeforeAuth)$' || true
  go test -count=1 -v ./lwm2m/ -run '^TestLwM2MNoSecRefusalsAreAlike$' || true
  go test -count=1 -v ./api/ -run '^TestDynamicRegistrationHTTPS$' || true
  go test -count=1 -run '^$' -bench 'BenchmarkConnectRefusal' -benchtime 400000x ./mqtt/ || true
} >"$LOG" 2>&1
grep -E '^(run |--- |ok|FAIL|Benchmark)|_test\.go:[0-9]+: ' "$LOG" | grep -v 'server log:' || true
