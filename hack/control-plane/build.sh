#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from Go modules into a cache outside the repository,
# keyed by the Kubernetes version, and prints the folder that holds them. A cached build whose
# binaries report the pinned version is reused without touching Go.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$here/go.mod")
cache_root=${Y360_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/y360-avatar-operator}
out="$cache_root/k8s/$version"

cached_version_matches() {
    [[ -x "$out/kube-apiserver" && -x "$out/kubectl" && -x "$out/etcd" ]] || return 1
    [[ "$("$out/kube-apiserver" --version 2>/dev/null)" == "Kubernetes $version" ]] || return 1
    # No pipe here: grep -q would exit early and kubectl could die of SIGPIPE under pipefail.
    grep -qx "Client Version: $version" <<<"$("$out/kubectl" version --client 2>/dev/null)" || return 1
    "$out/etcd" --version >/dev/null 2>&1
}

if cached_version_matches; then
    echo "$out"
    exit 0
fi

minor=${version#v1.}
minor=${minor%%.*}
flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean"
done

mkdir -p "$out.tmp"
cd "$here"
export CGO_ENABLED=0
echo "building control plane $version into $out (a cold build takes tens of minutes)" >&2
start=$(date +%s)
go build -trimpath -ldflags "$flags" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "$flags" -o "$out.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
go build -trimpath -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
rm -rf "$out"
mv "$out.tmp" "$out"
echo "built control plane $version in $(( $(date +%s) - start ))s" >&2
echo "$out"
