#!/usr/bin/env bash
# The fleet comparison of BENCHMARKS.md, on this machine, in one run:
# iotgate against the baselines it is judged by, each loaded by the same
# iotgate-fleet on loopback, one server at a time, so every ratio in the
# table compares figures measured minutes apart on the same machine.
#
#   test/bench/run.sh                 # the full comparison (about 7 minutes here)
#   QUICK=1 test/bench/run.sh         # small fleets, to check the script
#   ROUNDS=1 test/bench/run.sh        # one reconnect storm per server (default 3)
#   PARTS="mqtt lwm2m" test/bench/run.sh  # only these parts (default: all of
#                                     # mqtt mqtts lwm2m dtls registry; lwm2mhold
#                                     # only when asked for)
#
# It installs mosquitto if missing, builds iotgate and iotgate-fleet,
# then runs:
#   1. MQTT: $MQTT_N devices created through the REST API (the REST
#      storm, 64 clients), connected (first connect), held with uplinks
#      and commands, disconnected and reconnected at once (the storm after
#      an outage; $ROUNDS storms, the median one compared); the same
#      against bare mochi-mqtt (allow-all) and against mosquitto with a
#      password file holding the same devices.
#   2. MQTTS: $MQTTS_N devices, TLS and secret auth (no baseline).
#   3. LwM2M NoSec: $LWM2M_N registrations held, the re-register storm;
#      the same against a bare go-coap /rd handler, then against that
#      handler observing /19/0/0 after each Register (as iotgate does).
#   4. DTLS-PSK: $DTLS_N handshakes and registrations; the same handshakes
#      against a bare pion/dtls server.
#   5. The registry's Go benchmarks up to $REG_MAX devices.
#   6. (lwm2mhold, only when in PARTS) $HOLD_N NoSec registrations held
#      by one iotgate (a million by default; no storms), its memory per
#      registration at the plateau, after a garbage collection. The
#      fleet simulates them over shared sockets (-shared-sockets: a
#      socket per 4,096 devices, each device its own source address),
#      and iotgate runs with the Go soft memory limit $HOLD_GOMEMLIMIT
#      (GOMEMLIMIT, README "Memory"; empty: none).
# and writes everything (JSON summaries, server logs, CPU and heap
# profiles and their top entries) under $OUT, and the Markdown table to
# $OUT/table.md and standard output.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

if [ -n "${QUICK:-}" ]; then
  : "${MQTT_N:=2000}" "${MQTTS_N:=500}" "${LWM2M_N:=3000}" "${DTLS_N:=500}" "${REG_MAX:=10000}" "${HOLD:=3s}"
fi
MQTT_N=${MQTT_N:-19000}     # the open-file limit (20,000) bounds the server's sockets
MQTTS_N=${MQTTS_N:-5000}
LWM2M_N=${LWM2M_N:-100000}
DTLS_N=${DTLS_N:-5000}
REG_MAX=${REG_MAX:-1000000}
HOLD_N=${HOLD_N:-1000000}
HOLD_GOMEMLIMIT=${HOLD_GOMEMLIMIT-5GiB}
HOLD=${HOLD:-10s}
# Reconnect storms per server: each ratio compares the median storms.
ROUNDS=${ROUNDS:-3}
PARTS=${PARTS:-mqtt mqtts lwm2m dtls registry}
# part NAME: whether NAME is among the parts to run.
part() { [[ " $PARTS " == *" $1 "* ]]; }
OUT=${OUT:-$(mktemp -d /tmp/iotgate-bench.XXXXXX)}
mkdir -p "$OUT/pprof" "$OUT/bin"
echo "run.sh: results in $OUT" >&2

# Fixed loopback ports below the ephemeral range, so the fleet's own
# sockets cannot take them.
API_PORT=28080 DEBUG_PORT=26060 MQTT_PORT=21883 MQTTS_PORT=28883 COAP_PORT=25683 DTLS_PORT=25684
MOCHI_PORT=21884 MOSQ_PORT=21885 GOCOAP_PORT=25685 PION_PORT=25686 BASE_DEBUG_PORT=26061
TOKEN=bench-token-0123456789
TS=$(date -u +%Y%m%d%H)   # one ClientId timestamp for the whole run

if ! command -v mosquitto >/dev/null || ! command -v mosquitto_passwd >/dev/null; then
  echo "run.sh: installing mosquitto" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq mosquitto >/dev/null
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

echo "run.sh: building" >&2
go build -o "$OUT/bin/iotgate" ./cmd/iotgate
go build -o "$OUT/bin/iotgate-fleet" ./cmd/iotgate-fleet
FLEET=$OUT/bin/iotgate-fleet

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# wait_tcp PORT: until something accepts on 127.0.0.1:PORT (10 s).
wait_tcp() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run.sh: nothing listens on port $1" >&2; return 1
}

# stop PID: SIGTERM and wait.
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# iotgate with every listener, info logging (the default), debug_listen
# for memory, goroutines and profiles. Devices persist across restarts in
# $OUT/iotgate; each protocol gets a fresh process so that its memory is
# measured from the same starting point as its baseline's.
cat >"$OUT/iotgate.yaml" <<EOF
data_dir: $OUT/iotgate
debug_listen: 127.0.0.1:$DEBUG_PORT
api:
  listen: 127.0.0.1:$API_PORT
  tls_listen: ""
  credentials:
    - project_id: bench
      token: $TOKEN
# The REST storm measures throughput from one credential: its rate limit
# (50/s by default) is off.
limits:
  api:
    rate: 0
  # The MQTT part holds 19,000 devices under a 20,000-descriptor limit;
  # the default cut (1,024 reserved, a tenth of the rest for the REST
  # API) would leave the MQTT listeners 17,047 and refuse the others.
  descriptors:
    reserve: 512
    api: 128
# A product holds at most 500,000 devices by default; the hold's fleet is
# one product.
registry:
  max_devices_per_product: $(( HOLD_N > 500000 ? HOLD_N : 500000 ))
coap:
  listen: 127.0.0.1:$COAP_PORT
  dtls_listen: 127.0.0.1:$DTLS_PORT
mqtt:
  listen: 127.0.0.1:$MQTT_PORT
  tls_listen: 127.0.0.1:$MQTTS_PORT
EOF
start_iotgate() {
  "$OUT/bin/iotgate" -config "$OUT/iotgate.yaml" >>"$OUT/iotgate.log" 2>&1 &
  GATE=$!; PIDS+=("$GATE")
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$API_PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "run.sh: iotgate did not start; see $OUT/iotgate.log" >&2; return 1
}

# start_baseline KIND PORT [ARGS]: iotgate-fleet's bare server.
start_baseline() {
  local kind=$1 port=$2; shift 2
  "$FLEET" baseline "$kind" -listen "127.0.0.1:$port" -debug "127.0.0.1:$BASE_DEBUG_PORT" "$@" \
    >"$OUT/$kind.addr" 2>>"$OUT/$kind.log" &
  BASE=$!; PIDS+=("$BASE")
  for _ in $(seq 100); do [ -s "$OUT/$kind.addr" ] && return 0; sleep 0.1; done
  echo "run.sh: baseline $kind did not start" >&2; return 1
}

# fleet NAME ARGS: one iotgate-fleet run, its summary in $OUT/NAME.json.
fleet() {
  local name=$1; shift
  echo "run.sh: $name" >&2
  timeout "${FLEET_TIMEOUT:-900}" "$FLEET" -label "$name" -timestamp "$TS" -hold "$HOLD" -json "$OUT/$name.json" "$@" 2>>"$OUT/fleet.log" \
    || echo "run.sh: $name reported errors (see $OUT/$name.json and $OUT/fleet.log)" >&2
}
GATE_API=(-api "http://127.0.0.1:$API_PORT" -project bench -token "$TOKEN")
# At most 96 connects in flight: mosquitto listens with a backlog of 100,
# and a storm that overflows it measures SYN retransmission timers (1 s),
# not the broker.
MQTT_HOLD=(-uplink-interval 60s -commands 200 -concurrency 96 -rounds "$ROUNDS")

# 1. MQTT: iotgate, bare mochi, mosquitto.
if part mqtt; then
  start_iotgate
  fleet iotgate-mqtt "${GATE_API[@]}" -protocols mqtt -n "$MQTT_N" -mqtt "127.0.0.1:$MQTT_PORT" "${MQTT_HOLD[@]}" \
    -server-pid "$GATE" -debug-url "http://127.0.0.1:$DEBUG_PORT" -pprof "$OUT/pprof/iotgate"
  stop "$GATE"

  # Bare mochi with iotgate's per-connection sizes (iotgate-fleet baseline
  # defaults to them: an 8-slot write queue and a 512-byte read buffer;
  # mochi's defaults, 8,192 slots and 2 KiB, preallocate 66 KiB more).
  start_baseline mochi "$MOCHI_PORT"
  fleet mochi-mqtt -api "" -protocols mqtt -n "$MQTT_N" -mqtt "127.0.0.1:$MOCHI_PORT" "${MQTT_HOLD[@]}" \
    -server-pid "$BASE" -debug-url "http://127.0.0.1:$BASE_DEBUG_PORT" -pprof "$OUT/pprof/mochi"
  stop "$BASE"

  # mosquitto with a password file of the same devices and passwords.
  "$FLEET" passwords -n "$MQTT_N" -timestamp "$TS" >"$OUT/mosquitto.pw"
  mosquitto_passwd -U "$OUT/mosquitto.pw"
  cat >"$OUT/mosquitto.conf" <<EOF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous false
password_file $OUT/mosquitto.pw
persistence false
user root
EOF
  "$MOSQUITTO" -c "$OUT/mosquitto.conf" >>"$OUT/mosquitto.log" 2>&1 &
  MOSQ=$!; PIDS+=("$MOSQ")
  wait_tcp "$MOSQ_PORT"
  fleet mosquitto-mqtt -api "" -protocols mqtt -n "$MQTT_N" -mqtt "127.0.0.1:$MOSQ_PORT" "${MQTT_HOLD[@]}" -server-pid "$MOSQ"
  stop "$MOSQ"
fi

# 2. MQTTS (iotgate only).
if part mqtts; then
  start_iotgate
  fleet iotgate-mqtts "${GATE_API[@]}" -protocols mqtts -n "$MQTTS_N" -mqtts "127.0.0.1:$MQTTS_PORT" \
    -cafile "$OUT/iotgate/tls/ca.pem" -uplink-interval 60s -server-pid "$GATE" -debug-url "http://127.0.0.1:$DEBUG_PORT"
  stop "$GATE"
fi

# 3. LwM2M NoSec: 100,000 registrations over several fleet processes.
if part lwm2m; then
  # The fleet drops its sockets without de-registering (-graceful=false),
  # as modules do when a cell goes down, then re-registers all at once.
  LWM2M_HOLD=(-uplink-interval 300s -commands 100 -lifetime 3600 -concurrency 256 -graceful=false -hold 5s -rounds "$ROUNDS" -gc)
  start_iotgate
  fleet iotgate-lwm2m "${GATE_API[@]}" -protocols lwm2m -n "$LWM2M_N" -coap "127.0.0.1:$COAP_PORT" "${LWM2M_HOLD[@]}" \
    -server-pid "$GATE" -debug-url "http://127.0.0.1:$DEBUG_PORT" -pprof "$OUT/pprof/iotgate"
  stop "$GATE"
  start_baseline coap "$GOCOAP_PORT"
  fleet gocoap-lwm2m -api "" -protocols lwm2m -n "$LWM2M_N" -coap "127.0.0.1:$GOCOAP_PORT" "${LWM2M_HOLD[@]}" \
    -server-pid "$BASE" -debug-url "http://127.0.0.1:$BASE_DEBUG_PORT" -pprof "$OUT/pprof/gocoap"
  stop "$BASE"
  # The same go-coap server observing /19/0/0 after each Register, the
  # exchange an LwM2M server adds to it (iotgate does): the bare server's
  # ratio is the target, this one says how much of the gap is that
  # exchange's.
  start_baseline coap "$GOCOAP_PORT" -observe
  fleet gocoap-observe-lwm2m -api "" -protocols lwm2m -n "$LWM2M_N" -coap "127.0.0.1:$GOCOAP_PORT" "${LWM2M_HOLD[@]}" \
    -server-pid "$BASE" -debug-url "http://127.0.0.1:$BASE_DEBUG_PORT" -pprof "$OUT/pprof/gocoap-observe"
  stop "$BASE"
fi

# 4. DTLS-PSK: handshake and register against iotgate, handshake alone
if part dtls; then
  # against pion.
  start_iotgate
  fleet iotgate-dtls "${GATE_API[@]}" -protocols dtls -n "$DTLS_N" -dtls "127.0.0.1:$DTLS_PORT" -uplink-interval 300s \
    -commands 20 -rounds "$ROUNDS" -server-pid "$GATE" -debug-url "http://127.0.0.1:$DEBUG_PORT" -pprof "$OUT/pprof/iotgate"
  stop "$GATE"
  start_baseline dtls "$PION_PORT"
  fleet pion-dtls -api "" -protocols dtls -handshake-only -n "$DTLS_N" -dtls "127.0.0.1:$PION_PORT" -rounds "$ROUNDS" \
    -server-pid "$BASE" -debug-url "http://127.0.0.1:$BASE_DEBUG_PORT" -pprof "$OUT/pprof/pion"
  stop "$BASE"
fi

# 5. The registry's benchmarks.
if part registry; then
  echo "run.sh: registry benchmarks up to $REG_MAX devices" >&2
  IOTGATE_BENCH_MAX=$REG_MAX go test -run '^$' -bench 'AuthPaths|CreateBatch' -benchmem -benchtime 0.2s -timeout 20m \
    ./registry/ >"$OUT/registry-bench.txt" 2>&1 || echo "run.sh: registry benchmarks failed (see $OUT/registry-bench.txt)" >&2
fi

# 6. A million NoSec registrations held by one node (UDP needs no file
# descriptor per device; the fleet spreads its sockets over worker
# processes and 4,096 source addresses). Its own devices (prefix "hold"),
# created through the API, registered once and held: no storms, no
# uplinks; the memory sample follows a collection in the server.
if part lwm2mhold; then
  if [ -n "$HOLD_GOMEMLIMIT" ]; then GOMEMLIMIT=$HOLD_GOMEMLIMIT start_iotgate; else start_iotgate; fi
  FLEET_TIMEOUT=3600 fleet iotgate-lwm2m-hold "${GATE_API[@]}" -prefix hold -protocols lwm2m -n "$HOLD_N" \
    -shared-sockets -per-process 250000 \
    -coap "127.0.0.1:$COAP_PORT" -lifetime 86400 -concurrency 256 -graceful=false -reconnect=false -hold 20s \
    -commands 100 -gc -deadline 55m -server-pid "$GATE" -debug-url "http://127.0.0.1:$DEBUG_PORT" \
    -pprof "$OUT/pprof/iotgate-hold"
  stop "$GATE"
fi

# What dominates each cost: the top of every profile taken.
for p in "$OUT"/pprof/*/*.pprof; do
  [ -s "$p" ] || continue
  case $p in
    *.heap.pprof) idx=-sample_index=inuse_space; case $p in *create*) idx=-sample_index=alloc_space;; esac ;;
    *) idx="" ;;
  esac
  go tool pprof -top -nodecount=25 $idx "$p" >"${p%.pprof}.top.txt" 2>/dev/null || true
done

go run ./test/bench/report -dir "$OUT" | tee "$OUT/table.md"
echo "run.sh: done in ${SECONDS}s; results in $OUT" >&2
