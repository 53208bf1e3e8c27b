#!/usr/bin/env bash
# Head-to-head: `cx serve` against the reference Node implementation of the same webhook
# pipeline, in one run, with the same load generator. Prints figures and ratios; asserts nothing.
#
#   scripts/bench-h2h.sh [-d SECONDS] [-c "8 32"] [-w "1 2"] [-T "0"] [-M "inline queued"]
#                        [-s SOAK_SECONDS]
#
#   -d  seconds per measured run (default 15)
#   -c  wrk connection counts (default "8 32")
#   -w  Node peer worker counts (default "1 2"; 1 = one process, N = node:cluster with N)
#   -T  cx serve pool-thread counts (config key "threads"; default "0" = one per core)
#   -M  cx serve handler modes (default "inline queued"): inline runs claim, handler and
#       completion in the request, as the Node peer does; queued (the production default)
#       answers once each item is claimed and in the Redis work queue, and the gateway's
#       workers run the handlers meanwhile
#   -s  cx serve soak (first thread count and mode) at 32 connections, RSS sampled at 10 s and
#       at the end (default 60; 0 skips it)
#
# Environment: PEERS_DIR (default ../shared/peers beside the repository: node-webhook/ and
# loadgen/loadgen.sh), BUILD_DIR (default build/bench).
#
# What runs, all on 127.0.0.1 and all on this machine's cores: one redis-server (free port, no
# persistence); `cx serve` (Release) in production mode with that Redis, the built-in WhatsApp
# connector and log level warn; the Node peer (fastify + zod + ioredis, LOG_LEVEL=warn), each
# alone in turn; `loadgen.sh -m unique`: signed 10-item WhatsApp Cloud API batches whose message
# ids never repeat, so every item is claimed, handled and completed. Before each run: FLUSHALL,
# a 5 s warm-up for each freshly started server. The Node peer's dependencies are installed
# once with `npm ci` into a copy under BUILD_DIR (the peers directory stays untouched).
#
# Per run: items/s answered and p50/p99 (wrk, coordinated-omission corrected); for cx also the
# items its handlers ran during the window (events_processed_total: in queued mode the workers
# may trail the acks); the server's CPU (all its processes, 100 = one core) and RSS; then ratios
# cx/Node (items/s) and Node/cx (p99) for each connection count, against Node's best worker count.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

dur=15 conns="8 32" workers="1 2" cx_threads="0" modes="inline queued" soak=60
while getopts "d:c:w:T:M:s:h" opt; do
  case "$opt" in
    d) dur="$OPTARG" ;; c) conns="$OPTARG" ;; w) workers="$OPTARG" ;; T) cx_threads="$OPTARG" ;;
    M) modes="$OPTARG" ;; s) soak="$OPTARG" ;;
    h|*) sed -n '2,34p' "$0"; exit 2 ;;
  esac
done
peers="${PEERS_DIR:-$root/../shared/peers}"
build="${BUILD_DIR:-build/bench}"
loadgen="$peers/loadgen/loadgen.sh"
[ -x "$loadgen" ] && [ -d "$peers/node-webhook" ] ||
  { echo "bench-h2h: no peers at $peers (set PEERS_DIR)" >&2; exit 2; }
for bin in node npm redis-server redis-cli curl; do
  command -v "$bin" >/dev/null || { echo "bench-h2h: $bin not found" >&2; exit 2; }
done
if ! command -v wrk >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

log "building cx (Release) in $build"
mkdir -p "$build"
if ! { cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release &&
       cmake --build "$build" -j "$(nproc)" --target cx_cli; } >"$build/h2h-build.log" 2>&1; then
  tail -30 "$build/h2h-build.log" >&2
  exit 1
fi
cx="$root/$build/runtime/cx/cx"

peer="$root/$build/node-peer"
if [ ! -f "$peer/dist/server.js" ] || [ "$peers/node-webhook/package-lock.json" -nt "$peer/dist/server.js" ]; then
  log "installing and building the Node peer in $peer"
  rm -rf "$peer" && mkdir -p "$peer"
  cp -a "$peers/node-webhook/." "$peer/"
  (cd "$peer" && npm ci --no-audit --no-fund >/dev/null 2>&1 && npm run --silent build >/dev/null)
fi

tmp="$(mktemp -d /tmp/cx-h2h-XXXXXX)"
redis_pid="" server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    # shellcheck disable=SC2046
    kill -TERM "$server_pid" $(children "$server_pid") 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
cleanup() {
  stop_server
  [ -n "$redis_pid" ] && kill -TERM "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr '\n' ' ' || true; }
cpu_ticks() { # utime + stime of the pids, in clock ticks
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    t=$(( t + $(sed -E 's/^.*\) //' "/proc/$p/stat" | awk '{print $12 + $13}') ))
  done
  echo "$t"
}
rss_kib() { local t=0 p v; for p in "$@"; do v="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"; t=$(( t + ${v:-0} )); done; echo "$t"; }
rcli() { redis-cli -h 127.0.0.1 -p "$redis_port" "$@"; }
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]); [v := v[k] for k in sys.argv[2].split(".")]; print(v)' "$1" "$2"; }

redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
  --logfile "$tmp/redis.log" &
redis_pid=$!
for _ in $(seq 100); do rcli ping >/dev/null 2>&1 && break; sleep 0.05; done

secret="h2h-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$tmp/secrets/whatsapp" "$tmp/secrets/runtime"
printf '%s' "$secret" >"$tmp/secrets/whatsapp/app_secret"
printf '%s' "h2h-verify" >"$tmp/secrets/whatsapp/verify_token"
printf '%s' "h2h-pseudonym-key-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" >"$tmp/secrets/runtime/pseudonym_key"
port="$(free_port)"

# start_cx THREADS / start_node WORKERS: the server on $port, ready when this returns.
wait_up() {
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port$1" >/dev/null 2>&1 && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench-h2h: server did not start:" >&2; tail -5 "$tmp/server.log" >&2; exit 1
}
start_cx() { # THREADS MODE
  printf '{"threads": %d, "handler_mode": "%s", "limits": {"max_connections": 4096}}\n' "$1" "$2" \
    >"$tmp/serve.json"
  "$cx" serve --config "$tmp/serve.json" --env production --listen "127.0.0.1:$port" \
    --secrets "$tmp/secrets" --redis "127.0.0.1:$redis_port" --connectors whatsapp \
    --account whatsapp:106540352242922=loadgen --log-level warn >"$tmp/server.log" 2>&1 &
  server_pid=$!
  wait_up /ready
}
start_node() {
  (cd "$peer" && WORKERS="$1" PORT="$port" HOST=127.0.0.1 REDIS_URL="redis://127.0.0.1:$redis_port" \
     APP_SECRET="$secret" LOG_LEVEL=warn exec node dist/server.js) >"$tmp/server.log" 2>&1 &
  server_pid=$!
  wait_up /health
  sleep 1 # cluster workers
}

# Items the gateway's handlers ran so far ("-" for the Node peer, which has no such metric).
processed() {
  local m
  m="$(curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null || true)"
  awk '/^events_processed_total\{connector="whatsapp"/ {s += $2; n = 1} END {if (n) printf "%d", s; else print "-"}' <<<"$m"
}

# run NAME CONNS SECONDS: one measured loadgen run; appends a row to $tmp/rows.
run() {
  local name="$1" c="$2" d="$3" pids t0 t1 p0 p1 out res
  pids="$server_pid $(children "$server_pid")"
  # shellcheck disable=SC2086
  t0="$(cpu_ticks $pids)"; p0="$(processed)"
  out="$("$loadgen" -p "$port" -s "$secret" -m unique -c "$c" -d "$d" -P $(( 9000 * d )) 2>&1)"
  # shellcheck disable=SC2086
  t1="$(cpu_ticks $pids)"; p1="$(processed)"
  res="$(grep '^LOADGEN_RESULT ' <<<"$out" | sed 's/^LOADGEN_RESULT //')"
  [ -n "$res" ] || { echo "bench-h2h: loadgen failed:" >&2; tail -5 <<<"$out" >&2; exit 1; }
  local items p50 p99 reqs errs keys cpu rss
  items="$(field "$res" items_per_s)"; p50="$(field "$res" latency_ms.p50)"
  p99="$(field "$res" latency_ms.p99)"; reqs="$(field "$res" requests)"
  errs="$(python3 -c 'import json,sys; print(sum(json.loads(sys.argv[1])["errors"].values()))' "$res")"
  cpu="$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v d="$(field "$res" duration_s)" \
    'BEGIN {printf "%.0f", (b - a) / hz / d * 100}')"
  # shellcheck disable=SC2086
  rss="$(awk -v k="$(rss_kib $pids)" 'BEGIN {printf "%.1f", k / 1024}')"
  local ran="-"
  [ "$p0" != "-" ] && ran="$(awk -v a="$p0" -v b="$p1" -v d="$(field "$res" duration_s)" 'BEGIN {printf "%.0f", (b - a) / d}')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$items" "$p50" "$p99" "$cpu" "$rss" \
    "$errs" "$reqs" "$ran" >>"$tmp/rows"
  log "$name c=$c: $items items/s, p50 $p50 ms, p99 $p99 ms, cpu $cpu%, rss $rss MiB"
}

log "redis $(redis-server --version | awk '{print $3}'), node $(node --version), $(wrk --version 2>&1 | head -1 | awk '{print "wrk", $2}'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
# Each server starts on an empty Redis; its runs then add unique keys, as in production.
for t in $cx_threads; do
  for m in $modes; do
    rcli flushall >/dev/null
    start_cx "$t" "$m"
    "$loadgen" -p "$port" -s "$secret" -m unique -c 32 -d 5 -P 20000 >/dev/null 2>&1 # warm-up
    for c in $conns; do run "cx $m (threads=$t)" "$c" "$dur"; done
    stop_server
  done
done
for w in $workers; do
  rcli flushall >/dev/null
  start_node "$w"
  "$loadgen" -p "$port" -s "$secret" -m unique -c 32 -d 5 -P 20000 >/dev/null 2>&1
  for c in $conns; do run "node(workers=$w)" "$c" "$dur"; done
  stop_server
done

echo
echo "| server | conns | items/s answered | p50 ms | p99 ms | handlers ran, items/s | server CPU % | RSS MiB | socket errors | requests |"
echo "|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' '{printf "| %s | %s | %.0f | %.2f | %.2f | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $10, $6, $7, $8, $9}' "$tmp/rows"
echo
echo "| cx mode | conns | best cx items/s | best Node items/s | items/s cx / Node | p99 Node / cx |"
echo "|---|---|---|---|---|---|"
for m in $modes; do
  for c in $conns; do
    awk -F'\t' -v c="$c" -v m="cx $m " '$2 == c && index($1, m) == 1 && $3 > bc {bc = $3; pc = $5}
      $2 == c && $1 ~ /^node/ && $3 > bn {bn = $3; pn = $5}
      END {printf "| %s | %s | %.0f | %.0f | %.2fx | %.2fx |\n", substr(m, 4), c, bc, bn, bc / bn, pn / pc}' "$tmp/rows"
  done
done

if [ "$soak" -gt 0 ]; then
  t="${cx_threads%% *}" m="${modes%% *}"
  rcli flushall >/dev/null
  start_cx "$t" "$m"
  (sleep 10; rss_kib "$server_pid" >"$tmp/rss10") &
  sampler=$!
  "$loadgen" -p "$port" -s "$secret" -m unique -c 32 -d "$soak" -P 200000 >"$tmp/soak.out" 2>&1
  rss_end="$(rss_kib "$server_pid")"
  wait "$sampler" || true
  res="$(grep '^LOADGEN_RESULT ' "$tmp/soak.out" | sed 's/^LOADGEN_RESULT //')"
  echo
  printf 'soak: cx serve (%s, threads=%s) %s s at 32 connections: %s items/s, p99 %s ms, RSS %s MiB at 10 s, %s MiB at %s s\n' \
    "$m" "$t" "$soak" "$(field "$res" items_per_s)" "$(field "$res" latency_ms.p99)" \
    "$(awk -v k="$(cat "$tmp/rss10")" 'BEGIN {printf "%.1f", k / 1024}')" \
    "$(awk -v k="$rss_end" 'BEGIN {printf "%.1f", k / 1024}')" "$soak"
  stop_server
fi
