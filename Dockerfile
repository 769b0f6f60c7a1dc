# syntax=docker/dockerfile:1
#
# One image for both processes: the entrypoint is `modelgate`, and the arguments pick the
# subcommand (`controller` or `gateway ...`), as config/manager/ and charts/modelgate do.
#
#   docker build -t ghcr.io/modelgate/modelgate:0.1.0 .
#
# NOTE: this file is NOT built on the project's build machine, which has no Docker engine (and
# reaches no container registry); tests/kind/run.sh builds it where Docker is. CI runs the same
# image assembled without Docker from the release binary (tests/node/images.sh: the binary, the
# libraries it loads, CA certificates, the nonroot account), and tests/node.rs checks that the
# two agree on ENTRYPOINT, CMD, USER, EXPOSE and where the binary is: keep them in step. Keep
# the builder's Debian release equal to the runtime's (glibc).

ARG RUST_VERSION=1.95

# --- build -----------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src

# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit. Stub targets stand in for the real sources;
# their own build products are then removed, so that the real sources are always compiled
# below (COPY keeps the build context's file times, which may be older than the stubs').
COPY Cargo.toml Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src \
    && rm -rf target/release/.fingerprint/modelgate-* target/release/deps/modelgate-* \
        target/release/deps/libmodelgate-* target/release/modelgate*

COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked \
    && install -D -m 0755 target/release/modelgate /out/modelgate \
    && /out/modelgate --version

# --- run -------------------------------------------------------------------------------------
# Distroless "cc": glibc, libgcc, CA certificates and nothing else (no shell, no package
# manager). The `nonroot` variant runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="modelgate" \
      org.opencontainers.image.description="Kubernetes operator and OpenAI-compatible gateway that gives LLM models stable, meaningful names" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/modelgate /usr/local/bin/modelgate
USER 65532:65532
# 12000: the gateway's OpenAI-compatible API; 12001: the gateway's admin port
# (/healthz, /readyz, /metrics); 12002: the controller's admin port.
EXPOSE 12000 12001 12002
ENTRYPOINT ["/usr/local/bin/modelgate"]
CMD ["--help"]
