#!/usr/bin/env bash
# Installs every Debian 12 package the build and the tests need. Idempotent: does nothing
# when all are present. Needs root (or sudo) only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git curl
  protobuf-compiler libprotobuf-dev protobuf-c-compiler libprotobuf-c-dev nanopb libnanopb-dev
  python3 python3-jinja2 python3-protobuf
  libcmocka-dev libjansson-dev libhiredis-dev libmicrohttpd-dev libcurl4-openssl-dev libssl-dev
  redis-server clang libclang-rt-14-dev valgrind
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
