#!/usr/bin/env bash
# Runs the operator end to end on this machine: a local control plane, the Directory API
# stand-in and an image server on loopback, the examples from examples/, then one image
# replaced. Exits non-zero when any step fails. Everything started here is stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
namespace=y360-demo
org_id=4242
token="demo-token-$RANDOM$RANDOM"
work=$(mktemp -d -t y360-demo-XXXXXX)
pids=()

cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 20); do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.5
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $status -ne 0 ]]; then
        echo "demo failed; logs are in $work" >&2
        tail -n 30 "$work"/operator.log 2>/dev/null >&2 || true
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_file() {
    for _ in $(seq 1 "$2"); do [[ -e "$1" ]] && return 0; sleep 1; done
    echo "timed out waiting for $1" >&2
    return 1
}

step "Building the operator and the test servers"
cargo build --workspace --bins --quiet
bin="$root/target/debug"
k8s_bin=$(hack/control-plane/build.sh)
kubectl="$k8s_bin/kubectl --kubeconfig $work/kubeconfig"

step "Starting a local kube-apiserver and etcd"
"$bin/local-cluster" up --kubeconfig "$work/kubeconfig" --ready-file "$work/cluster.ready" \
    >"$work/cluster.log" 2>&1 &
pids+=($!)
wait_for_file "$work/cluster.ready" 120

step "Starting the Directory API stand-in and an image server on loopback"
api_port=$(free_port)
image_port=$(free_port)
mkdir -p "$work/images"
cp examples/images/carol.png "$work/images/carol.png"
DIRECTORY_STANDIN_TOKEN="$token" "$bin/directory-standin" --listen "127.0.0.1:$api_port" \
    --org-id "$org_id" >"$work/standin.log" 2>&1 &
pids+=($!)
"$bin/image-server" --listen "127.0.0.1:$image_port" --dir "$work/images" \
    >"$work/images.log" 2>&1 &
pids+=($!)
api_url="http://127.0.0.1:$api_port"
image_url="http://127.0.0.1:$image_port/carol.png"

step "Installing the CRDs"
$kubectl apply --server-side -f crds/
$kubectl wait --for=condition=Established --timeout=60s crd --all

step "Applying examples/ with the API URL and image URL pointed at loopback"
$kubectl apply -f examples/namespace.yaml
$kubectl -n "$namespace" create secret generic directory-token --from-literal=token="$token"
$kubectl -n "$namespace" create configmap portraits \
    --from-file=alice.png=examples/images/alice.png --from-file=bob.jpg=examples/images/bob.jpg
sed "s|https://api360.yandex.net|$api_url|" examples/directory-connection.yaml | $kubectl apply -f -
sed "s|https://images.example.com/carol.png|$image_url|" examples/useravatars.yaml | $kubectl apply -f -

step "Starting the operator"
KUBECONFIG="$work/kubeconfig" "$bin/y360-avatar-operator" run --namespace "$namespace" \
    --allow-http --allow-url-network 127.0.0.0/8 >"$work/operator.log" 2>&1 &
pids+=($!)
$kubectl -n "$namespace" wait --for=condition=Ready --timeout=60s useravatar --all
$kubectl -n "$namespace" get useravatars -o wide
for name in alice bob carol; do
    url=$($kubectl -n "$namespace" get useravatar "$name" -o jsonpath='{.status.url}')
    [[ -n "$url" ]] || { echo "UserAvatar $name is Ready but has no status.url" >&2; exit 1; }
done

uploads() { curl -sf "$api_url/_standin/uploads"; echo; }
step "Uploads the stand-in received"
uploads

step "Replacing alice's image in the ConfigMap"
$kubectl -n "$namespace" create configmap portraits --dry-run=client -o yaml \
    --from-file=alice.png=examples/images/alice-v2.png --from-file=bob.jpg=examples/images/bob.jpg \
    | $kubectl apply -f -
new_hash="sha256:$(sha256sum examples/images/alice-v2.png | cut -d' ' -f1)"
$kubectl -n "$namespace" wait --timeout=60s useravatar/alice \
    --for=jsonpath='{.status.contentHash}'="$new_hash"
$kubectl -n "$namespace" get useravatars -o wide

step "Uploads after the change: alice twice, bob and carol once"
counts=$(uploads)
echo "$counts"
python3 - "$counts" <<'PY'
import json, sys
counts = json.loads(sys.argv[1])
expected = {"1130000000000001": 2, "1130000000000002": 1, "1130000000000003": 1}
if counts != expected:
    sys.exit(f"unexpected upload counts: {counts}, expected {expected}")
PY
step "Demo finished: every example is Ready and only the replaced image was uploaded again"
