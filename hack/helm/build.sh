#!/usr/bin/env bash
# Builds helm from its Go module into a cache outside the repository, keyed by the helm
# version, and prints the path of the binary. A cached binary that reports the pinned version
# is reused without touching Go.
#
# Offline, `helm template` and `helm lint` assume the Kubernetes version compiled into helm
# (v1.20 in upstream sources built without release flags). The build sets it to v1.36, the
# version of the local control plane in hack/control-plane, so `.Capabilities.KubeVersion`
# and the deprecation checks of `helm lint` match the clusters the chart targets.
set -euo pipefail

version=v3.21.4
kube_major=1
kube_minor=36

cache_root=${Y360_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/y360-avatar-operator}
out="$cache_root/helm/$version"
helm="$out/helm"

cached_version_matches() {
    [[ -x "$helm" ]] || return 1
    [[ "$("$helm" version --template '{{.Version}}' 2>/dev/null)" == "$version" ]]
}

if cached_version_matches; then
    echo "$helm"
    exit 0
fi

flags="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    flags+=" -X $pkg.k8sVersionMajor=$kube_major -X $pkg.k8sVersionMinor=$kube_minor"
done

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
export CGO_ENABLED=0
# go install builds a module@version outside any go.mod, so the working directory does not
# matter; GOBIN points the output at the temporary directory.
echo "building helm $version into $out (a cold build takes a few minutes)" >&2
start=$(date +%s)
GOBIN="$out.tmp" go install -trimpath -ldflags "$flags" "helm.sh/helm/v3/cmd/helm@$version"
rm -rf "$out"
mv "$out.tmp" "$out"
if ! cached_version_matches; then
    echo "the helm built into $out does not report version $version" >&2
    exit 1
fi
echo "built helm $version in $(( $(date +%s) - start ))s" >&2
echo "$helm"
