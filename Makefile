# Entry points for a fresh machine. Everything that needs building is built on first use;
# the control-plane binaries are cached under ~/.cache/y360-avatar-operator/k8s/<version>/.

CARGO ?= cargo
LOCAL := .local

.PHONY: build crds control-plane helm cluster cluster-down demo test lint fmt

build:
	$(CARGO) build --workspace --bins

## Regenerate crds/ from the Rust types.
crds:
	$(CARGO) run --quiet -- crd > crds/crds.yaml
	cp crds/crds.yaml charts/y360-avatar-operator/files/crds.yaml

## Build (or reuse) kube-apiserver, etcd and kubectl.
control-plane:
	hack/control-plane/build.sh

## Build (or reuse) helm for the chart tests in tests/chart.rs.
helm:
	hack/helm/build.sh

## Start a local control plane in the background; its kubeconfig is .local/kubeconfig.
cluster: build control-plane
	@mkdir -p $(LOCAL)
	@rm -f $(LOCAL)/cluster.ready
	nohup target/debug/local-cluster up --kubeconfig $(LOCAL)/kubeconfig \
		--ready-file $(LOCAL)/cluster.ready > $(LOCAL)/cluster.log 2>&1 & echo $$! > $(LOCAL)/cluster.pid
	@for i in $$(seq 1 120); do [ -e $(LOCAL)/cluster.ready ] && break; sleep 1; done; \
		[ -e $(LOCAL)/cluster.ready ] || { cat $(LOCAL)/cluster.log; exit 1; }
	@echo "control plane ready: export KUBECONFIG=$$(pwd)/$(LOCAL)/kubeconfig"

cluster-down:
	@if [ -f $(LOCAL)/cluster.pid ]; then kill $$(cat $(LOCAL)/cluster.pid) 2>/dev/null || true; \
		rm -f $(LOCAL)/cluster.pid $(LOCAL)/cluster.ready; fi

demo:
	hack/demo.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

test: lint control-plane helm
	$(CARGO) test --workspace

## Scale benchmark of the release binary on a local control plane; see BENCHMARKS.md.
## BENCH_ARGS overrides its flags, such as BENCH_ARGS="--n 1000 --churn-minutes 1".
BENCH_ARGS ?= --n 1000,10000
.PHONY: bench
bench: control-plane
	$(CARGO) build --release --bin y360-avatar-operator
	@mkdir -p target/bench
	$(CARGO) run --release -p y360-testkit --bin bench -- --output target/bench/report.md $(BENCH_ARGS)
