# syntax=docker/dockerfile:1
#
# Operator image: a static musl build of y360-avatar-operator on distroless/static, running
# as the nonroot user 65532. Build it from the repository root:
#
#   docker build -t <registry>/y360-avatar-operator:0.1.0 .
#
# The builder runs on Alpine, whose Rust toolchain targets musl (x86_64-unknown-linux-musl
# on amd64, aarch64-unknown-linux-musl on arm64) and links statically by default, so the
# binary needs no libc in the final image. The cache mounts need BuildKit, the default
# builder since Docker 23.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS builder
# ring and psm compile C and assembly with the system C compiler and musl headers.
RUN apk add --no-cache gcc musl-dev
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# testkit is a workspace member, so Cargo reads its manifest even though the operator binary
# does not depend on it.
COPY testkit ./testkit
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked --bin y360-avatar-operator \
    && install -D -m 0755 target/release/y360-avatar-operator /out/y360-avatar-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/y360-avatar-operator /usr/local/bin/y360-avatar-operator
USER 65532:65532
# /livez, /readyz and /metrics; the chart sets the address with --admin-address.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/y360-avatar-operator", "run"]
