#!/usr/bin/env bash
# Builds the Kubernetes control plane Spillway runs on — etcd, kube-apiserver,
# kube-controller-manager and kubectl — from the Go module proxy into a
# version-stamped folder, once. Later runs reuse what is there.
#
#   hack/build-k8s.sh [OUT_DIR]      (default: bin/k8s-v$K8S_VERSION)
#
# The first build takes ~15 minutes on 2 cores; progress is printed as the
# packages compile.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
OUT="${1:-$ROOT/bin/k8s-v$K8S_VERSION}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"
VPKG=k8s.io/component-base/version
LDFLAGS="-s -w -X $VPKG.gitVersion=v$K8S_VERSION -X $VPKG.gitMajor=${K8S_VERSION%%.*} \
  -X $VPKG.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $VPKG.gitTreeState=clean \
  -X $VPKG.buildDate=1970-01-01T00:00:00Z \
  -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"

# progress prints one line per 25 compiled packages (go build -v names each).
progress() {
	local what=$1 n=0 start=$SECONDS
	while IFS= read -r line; do
		case "$line" in
		*" "* | *:*) echo "  $line" ;; # errors and notes pass through
		*)
			n=$((n + 1))
			if ((n % 25 == 0)); then echo "  $what: $n packages compiled ($((SECONDS - start))s)"; fi
			;;
		esac
	done
	echo "  $what: done, $n packages ($((SECONDS - start))s)"
}

build_k8s() {
	local missing=()
	for b in kube-apiserver kube-controller-manager kubectl; do
		[[ -x "$OUT/$b" ]] || missing+=("k8s.io/kubernetes/cmd/$b")
	done
	if ((${#missing[@]} == 0)); then
		echo "kubernetes v$K8S_VERSION: present in $OUT"
		return
	fi
	echo "kubernetes v$K8S_VERSION: building ${missing[*]##*/} into $OUT (first build ~15 min)"
	cd "$ROOT"
	go build -v -trimpath -tags=providerless -ldflags "$LDFLAGS" -o "$OUT/" "${missing[@]}" 2>&1 | progress kubernetes
	test "${PIPESTATUS[0]}" -eq 0
}

build_etcd() {
	if [[ -x "$OUT/etcd" ]]; then
		echo "etcd v$ETCD_VERSION: present in $OUT"
		return
	fi
	echo "etcd v$ETCD_VERSION: building into $OUT (~3 min)"
	cd "$ROOT/hack/etcd"
	go build -v -trimpath -ldflags "-s -w" -o "$OUT/etcd" . 2>&1 | progress etcd
	test "${PIPESTATUS[0]}" -eq 0
}

build_k8s
build_etcd
for b in etcd kube-apiserver kube-controller-manager kubectl; do
	[[ -x "$OUT/$b" ]] || { echo "missing $OUT/$b after build" >&2; exit 1; }
done
echo "control plane binaries ready in $OUT"
