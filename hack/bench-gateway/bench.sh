#!/usr/bin/env bash
# Benchmark spillway-gateway against a direct connection and nginx, all on
# 127.0.0.1. Installs Debian's nginx with apt-get when it is missing (never
# started as a service: the benchmark runs its own instance with a temporary
# config), builds the gateway, runs the bounded Go benchmark and prints ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
  echo "installing nginx with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the package from starting nginx on port 80 of every interface.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y nginx >/dev/null || { apt-get update >/dev/null && apt-get install -y nginx >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
mkdir -p bin
go build -o bin/spillway-gateway ./cmd/spillway-gateway
go build -o bin/bench-gateway ./hack/bench-gateway
exec bin/bench-gateway -gateway bin/spillway-gateway -nginx "$NGINX" "$@"
