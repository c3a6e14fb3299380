#!/usr/bin/env bash
# One run of the storage-engine comparison (BENCHMARKS.md "PostgreSQL
# tables"): a fresh iotgate on store.engine ENGINE, the fleet's create
# burst of N devices through the REST API (64 clients), their first
# connect, then three reconnect storms. Run it alternately per engine:
#
#   test/bench/pgpair.sh badger   /tmp/pg/b1 19000 mqtt
#   test/bench/pgpair.sh postgres /tmp/pg/p1 19000 mqtt
#   BIN=/tmp/pg/main-bin test/bench/pgpair.sh postgres /tmp/pg/m1   # another build
#
# ENGINE: badger or postgres (a PostgreSQL 15 of its own, started for the
# run in OUT/pg on a loopback port: Debian's postgresql package, fsync
# on, iotgate's store.postgres.max_conns 32). PROTO: mqtt (default; at
# most 19,000 devices under a 20,000-descriptor limit) or lwm2m. BIN: a
# directory holding iotgate and iotgate-fleet (default: built from this
# tree into OUT/bin). It prints one line: creates/s, the server's CPU per
# create, ops per commit, the storms' rates and the load average, and
# leaves the fleet's JSON summary in OUT/fleet.json. PPROF=1 also saves
# the server's CPU profiles of the create and connect storms in OUT/pprof.
set -euo pipefail
ENGINE=${1:?engine: badger or postgres}
OUT=${2:?output directory}
N=${3:-19000}
PROTO=${4:-mqtt}
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BIN=${BIN:-$OUT/bin}
if [ ! -x "$BIN/iotgate" ]; then
  mkdir -p "$BIN"
  go build -o "$BIN/iotgate" ./cmd/iotgate
  go build -o "$BIN/iotgate-fleet" ./cmd/iotgate-fleet
fi
API_PORT=28180 DEBUG_PORT=26160 MQTT_PORT=21983 COAP_PORT=25783 PG_PORT=25432
TOKEN=bench-token-0123456789

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${PGDATA_DIR:-}" ]; then $AS_PG "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

STORE="engine: badger"
if [ "$ENGINE" = postgres ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  AS_PG=""
  [ "$(id -u)" -eq 0 ] && AS_PG="runuser -u postgres --"
  PGDATA_DIR=$OUT/pg/data
  mkdir -p "$OUT/pg" && chmod 777 "$OUT/pg"
  $AS_PG "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 >"$OUT/pg/initdb.log"
  $AS_PG "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$OUT/pg/server.log" -w start \
    -o "-p $PG_PORT -k $OUT/pg -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=100" >/dev/null
  $AS_PG "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres iotgate
  STORE="engine: postgres
  postgres:
    url: postgres://postgres@127.0.0.1:$PG_PORT/iotgate?sslmode=disable
    max_conns: 32"
fi

cat >"$OUT/iotgate.yaml" <<EOF
data_dir: $OUT/gate
debug_listen: 127.0.0.1:$DEBUG_PORT
api:
  listen: 127.0.0.1:$API_PORT
  tls_listen: ""
  credentials:
    - project_id: bench
      token: $TOKEN
limits:
  api:
    rate: 0
  descriptors:
    reserve: 512
    api: 128
store:
  $STORE
coap:
  listen: 127.0.0.1:$COAP_PORT
  dtls_listen: ""
mqtt:
  listen: 127.0.0.1:$MQTT_PORT
  tls_listen: ""
EOF
"$BIN/iotgate" -config "$OUT/iotgate.yaml" >>"$OUT/iotgate.log" 2>&1 &
GATE=$!; PIDS+=("$GATE")
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$API_PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$API_PORT/healthz" >/dev/null || { echo "pgpair: iotgate did not start; see $OUT/iotgate.log" >&2; exit 1; }

COMMON=(-label "$ENGINE-$PROTO" -api "http://127.0.0.1:$API_PORT" -project bench -token "$TOKEN" -n "$N"
  -rounds 3 -server-pid "$GATE" -debug-url "http://127.0.0.1:$DEBUG_PORT" -json "$OUT/fleet.json")
[ -n "${PPROF:-}" ] && COMMON+=(-pprof "$OUT/pprof")
if [ "$PROTO" = lwm2m ]; then
  "$BIN/iotgate-fleet" "${COMMON[@]}" -protocols lwm2m -coap "127.0.0.1:$COAP_PORT" -uplink-interval 300s \
    -commands 100 -lifetime 3600 -concurrency 256 -graceful=false -hold 5s 2>>"$OUT/fleet.log" || true
else
  "$BIN/iotgate-fleet" "${COMMON[@]}" -protocols mqtt -mqtt "127.0.0.1:$MQTT_PORT" -uplink-interval 60s \
    -commands 200 -concurrency 96 -hold 10s 2>>"$OUT/fleet.log" || true
fi
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
jq -r --arg engine "$ENGINE" --arg load "$LOAD" '.protocols[0] as $p |
  "\($engine) \($p.protocol) n=\($p.devices) creates/s=\($p.create.per_second|floor) failed=\($p.create.failed)" +
  " cpu/create=\($p.create.cpu.server_us_per_op|floor)us ops/commit=\($p.create.ops_per_commit // 0 | .*10|floor/10)" +
  " storms/s=\([$p.reconnect_rounds[]?.per_second|floor]|map(tostring)|join("/")) median=\($p.reconnect.per_second // 0|floor)" +
  " load=\($load)"' "$OUT/fleet.json" | tee "$OUT/summary.txt"
