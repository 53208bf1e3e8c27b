#!/usr/bin/env bash
# Load benchmark of `cx serve`: prints figures, asserts nothing.
#
#   scripts/bench-serve.sh [-d SOAK_SECONDS] [-c CONNECTIONS] [-t WRK_THREADS] [-s SERVE_THREADS]
#                          [-l LOG_LEVEL] [-b BUILD_DIR]
#
#   -d  soak duration in seconds (default 60; RSS is sampled at 10 s and at the end)
#   -c  wrk connections (default 32)
#   -t  wrk threads (default 1)
#   -s  cx serve pool threads (config key "threads"; default 0 = one per core)
#   -l  cx serve log level (default info: one line per item)
#   -b  Release build directory (default build/bench; configured and built here)
#
# What runs, all on 127.0.0.1: a redis-server on a free port; `cx serve` (Release build) in
# production mode with that Redis, the test connector (libcx_test_connector.so) and per-item
# logging on (log level info, its JSON lines to a file); wrk posting signed 10-item batches of
# the test connector whose ids never repeat (nothing is deduped: every item runs the claim,
# the default handler and the completion). The Lua script signs each body with OpenSSL's HMAC()
# through LuaJIT's FFI (libcrypto is already linked into wrk), so no body file is needed
# however long the soak (the approach of ../shared/peers/loadgen/webhook.lua).
#
# Prints: requests/s, items/s (from the gateway's own events_processed_total), latency p50/p99
# (wrk), non-2xx responses, RSS of cx serve at 10 s and at the end, and the log volume.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

soak=60 conns=32 threads=1 serve_threads=0 level=info build="build/bench"
while getopts "d:c:t:s:l:b:h" opt; do
  case "$opt" in
    d) soak="$OPTARG" ;; c) conns="$OPTARG" ;; t) threads="$OPTARG" ;; b) build="$OPTARG" ;;
    s) serve_threads="$OPTARG" ;; l) level="$OPTARG" ;;
    h|*) sed -n '2,24p' "$0"; exit 2 ;;
  esac
done
[[ "$serve_threads" =~ ^[0-9]+$ ]] || { echo "bench-serve: -s must be a number" >&2; exit 2; }
for v in "$soak" "$conns" "$threads"; do
  [[ "$v" =~ ^[0-9]+$ && "$v" -gt 0 ]] || { echo "bench-serve: options must be positive integers" >&2; exit 2; }
done
(( soak >= 10 )) || { echo "bench-serve: -d must be at least 10 (RSS is sampled at 10 s)" >&2; exit 2; }

if ! command -v wrk >/dev/null; then
  echo "bench-serve: installing wrk" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
command -v redis-server >/dev/null || { echo "bench-serve: redis-server not found (scripts/deps.sh)" >&2; exit 2; }

echo "bench-serve: building $build (Release)" >&2
mkdir -p "$build"
if ! { cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCX_BUILD_TESTS=ON &&
       cmake --build "$build" -j "$(nproc)" --target cx_cli cx_test_connector; } >"$build/bench-build.log" 2>&1; then
  tail -30 "$build/bench-build.log" >&2
  exit 1
fi
cx="$root/$build/runtime/cx/cx"
lib="$root/$build/tests/libcx_test_connector.so"

tmp="$(mktemp -d /tmp/cx-bench-XXXXXX)"
redis_pid="" cx_pid=""
cleanup() {
  [ -n "$cx_pid" ] && kill -TERM "$cx_pid" 2>/dev/null && wait "$cx_pid" 2>/dev/null || true
  [ -n "$redis_pid" ] && kill -TERM "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Redis on a free loopback port, nothing persisted.
redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
  --logfile "$tmp/redis.log" &
redis_pid=$!
for _ in $(seq 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.05
done

# Secrets (fake) and the gateway.
secret="bench-secret-$RANDOM$RANDOM"
mkdir -p "$tmp/secrets/test" "$tmp/secrets/runtime"
printf '%s\n' "$secret" >"$tmp/secrets/test/secret"
printf '%s\n' "bench-pseudonym-key" >"$tmp/secrets/runtime/pseudonym_key"
printf '{"threads": %d, "limits": {"max_connections": 4096}}\n' "$serve_threads" >"$tmp/serve.json"
port="$(free_port)"
"$cx" serve --config "$tmp/serve.json" --env production --listen "127.0.0.1:$port" \
  --secrets "$tmp/secrets" --redis "127.0.0.1:$redis_port" --connector-lib "$lib" \
  --account test:bench=acme --log-level "$level" 2>"$tmp/serve.log" &
cx_pid=$!
up=""
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && { up=1; break; }
  kill -0 "$cx_pid" 2>/dev/null || { echo "bench-serve: cx serve exited:" >&2; tail -3 "$tmp/serve.log" >&2; exit 1; }
  sleep 0.05
done
[ -n "$up" ] || { echo "bench-serve: cx serve did not start" >&2; exit 1; }

cat >"$tmp/batch.lua" <<'LUA'
-- Signed 10-item batches of the test connector; ids are <nonce>-<thread>-<seq>-<i>, never reused.
local ffi = require("ffi")
ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
]]
local function crypto()
  if pcall(function() return ffi.C.EVP_sha256 end) then return ffi.C end
  for _, name in ipairs({ "libcrypto.so.3", "libcrypto.so.1.1", "crypto" }) do
    local ok, lib = pcall(ffi.load, name)
    if ok then return lib end
  end
  error("batch.lua: no HMAC() in libcrypto")
end
local C = crypto()
local SHA256 = C.EVP_sha256()
local md, mdlen = ffi.new("unsigned char[32]"), ffi.new("unsigned int[1]")
local function hmac_hex(key, data)
  C.HMAC(SHA256, key, #key, data, #data, md, mdlen)
  local t = {}
  for i = 0, 31 do t[i + 1] = string.format("%02x", md[i]) end
  return table.concat(t)
end

local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

local secret, nonce, seq = nil, nil, 0
function init(args)
  secret, nonce = args[1], args[2]
end

function request()
  seq = seq + 1
  local items = {}
  for i = 1, 10 do
    items[i] = string.format('{"id":"%s-%d-%d-%d","from":"+14155550123","text":"bench message %d"}',
                             nonce, tid, seq, i, i)
  end
  local body = '{"account":"bench","items":[' .. table.concat(items, ",") .. ']}'
  return wrk.format("POST", "/webhook/test", {
    ["Content-Type"] = "application/json",
    ["X-Test-Signature"] = "sha256=" .. hmac_hex(secret, body),
  }, body)
end
LUA

processed() {
  curl -s "http://127.0.0.1:$port/metrics" | awk '/^events_processed_total\{connector="test"/ {s += $2} END {printf "%d", s}'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$cx_pid/status"; }

echo "bench-serve: ${soak}s soak, $conns connections, $threads wrk threads, serve threads $serve_threads (0 = cores: $(nproc)), log level $level" >&2
p0="$(processed)"
(sleep 10; rss_kib >"$tmp/rss10") &
sampler=$!
wrk -t "$threads" -c "$conns" -d "${soak}s" --timeout 10s --latency -s "$tmp/batch.lua" \
  "http://127.0.0.1:$port" -- "$secret" "$(date +%s%N)" >"$tmp/wrk.out" 2>&1
rss_end="$(rss_kib)"
wait "$sampler" || true
p1="$(processed)"

rps="$(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk.out")"
# "87653 requests in 1.00m, 25.1MB read": the duration in seconds, whatever wrk's unit.
dur="$(awk '/requests in/ {for (i = 1; i <= NF; i++) if ($i == "in") {v = $(i+1); sub(/,$/, "", v);
  if (v ~ /ms$/) {sub(/ms$/, "", v); v /= 1000} else if (v ~ /us$/) {sub(/us$/, "", v); v /= 1e6}
  else if (v ~ /m$/) {sub(/m$/, "", v); v *= 60} else if (v ~ /h$/) {sub(/h$/, "", v); v *= 3600}
  else sub(/s$/, "", v); print v}}' "$tmp/wrk.out")"
p50="$(awk '/^ +50%/ {print $2}' "$tmp/wrk.out")"
p99="$(awk '/^ +99%/ {print $2}' "$tmp/wrk.out")"
non2xx="$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk.out")"
errors="$(awk '/Socket errors/ {print}' "$tmp/wrk.out")"
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) {sub(/us$/, "", v); printf "%.3f", v / 1000}
  else if (v ~ /ms$/) {sub(/ms$/, "", v); printf "%.3f", v}
  else if (v ~ /s$/) {sub(/s$/, "", v); printf "%.3f", v * 1000} else print v }'; }

printf 'requests/s        %s\n' "$rps"
printf 'items/s           %s\n' "$(awk -v a="$p0" -v b="$p1" -v d="${dur:-$soak}" 'BEGIN {printf "%.1f", (b - a) / d}')"
printf 'items processed   %s\n' "$((p1 - p0))"
printf 'latency p50 ms    %s\n' "$(to_ms "$p50")"
printf 'latency p99 ms    %s\n' "$(to_ms "$p99")"
printf 'non-2xx           %s\n' "${non2xx:-0}"
[ -n "$errors" ] && printf 'socket errors     %s\n' "${errors#*: }"
printf 'rss at 10 s MiB   %s\n' "$(awk -v k="$(cat "$tmp/rss10" 2>/dev/null || echo 0)" 'BEGIN {printf "%.1f", k / 1024}')"
printf 'rss at %s s MiB   %s\n' "$soak" "$(awk -v k="$rss_end" 'BEGIN {printf "%.1f", k / 1024}')"
printf 'log MiB           %s\n' "$(awk -v b="$(stat -c %s "$tmp/serve.log")" 'BEGIN {printf "%.1f", b / 1048576}')"
