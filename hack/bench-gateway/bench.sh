#!/usr/bin/env bash
# Benchmark spillway-gateway against a direct connection and nginx, all on
# 127.0.0.1. Installs Debian's nginx with apt-get when it is missing (never
# started as a service: the benchmark runs its own instance with a temporary
# config), builds the gateway, runs the bounded Go benchmark and prints ratios.
#
# CPU split (with taskset and at least 2 CPUs): the proxy under test (gateway
# or nginx) runs alone on PROXY_CPUS (default: the last CPU) with as many
# workers as CPUs there (gateway GOMAXPROCS, nginx worker_processes); the load
# generator and the engine run on LOAD_CPUS (default: the others). Set
# PROXY_CPUS= (empty) to pin nothing. Extra arguments go to hack/bench-gateway.
set -euo pipefail
cd "$(dirname "$0")/../.."
SKIP_NGINX=
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
  echo "installing nginx with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the package from starting nginx on port 80 of every interface.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "nginx is missing and apt-get is not available: comparing with the direct connection only" >&2
    SKIP_NGINX=-skip-nginx
  elif ! { apt-get install -y nginx >/dev/null || { apt-get update >/dev/null && apt-get install -y nginx >/dev/null; }; }; then
    echo "apt-get could not install nginx (offline? not root?): comparing with the direct connection only" >&2
    SKIP_NGINX=-skip-nginx
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
mkdir -p bin
go build -o bin/spillway-gateway ./cmd/spillway-gateway
go build -o bin/bench-gateway ./hack/bench-gateway
ncpu=$(nproc)
PIN=()
if command -v taskset >/dev/null 2>&1 && (( ncpu >= 2 )); then
  PROXY_CPUS=${PROXY_CPUS-$((ncpu - 1))}
  LOAD_CPUS=${LOAD_CPUS-0-$((ncpu - 2))}
  if [[ -n "$PROXY_CPUS" ]]; then
    PIN=(taskset -c "$LOAD_CPUS")
    set -- -proxy-cpus "$PROXY_CPUS" "$@"
  fi
else
  echo "taskset missing or one CPU: proxies and load share the CPUs" >&2
fi
exec "${PIN[@]}" bin/bench-gateway -gateway bin/spillway-gateway -nginx "$NGINX" $SKIP_NGINX "$@"
