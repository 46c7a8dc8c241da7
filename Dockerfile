# syntax=docker/dockerfile:1
# The operator image: a static-ish Rust binary on distroless (glibc, CA certificates, no shell),
# running as the distroless `nonroot` user (65532). Build:
#   docker build -t connector-auth-operator:0.1.0 .
# The Helm chart expects the binary at /connector-auth-operator and passes `run` plus its
# settings as environment variables.

FROM rust:1-bookworm AS build
WORKDIR /src
# Only what `cargo build` needs (see .dockerignore). The workspace member crates/fake-apiserver
# is a dev-dependency, but Cargo reads its manifest to load the workspace.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
# Cache mounts keep the registry and target dir across builds (BuildKit); the binary is copied
# out because the cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin connector-auth-operator \
    && install -D -m 0755 target/release/connector-auth-operator /out/connector-auth-operator

# bookworm builder, debian12 runtime: the same glibc.
FROM gcr.io/distroless/cc-debian12:nonroot
# glibc malloc, tuned for a process that holds many small objects and sees bursts of
# short-lived buffers (a restart lists and reads every resource at once): one arena, and a
# fixed threshold above which buffers are mapped and unmapped rather than kept. Peak RSS at
# 10,000 resources on restart: 101 MiB without, 57 MiB with (BENCHMARKS.md, "Memory"). The
# scale benchmark runs the operator with this same line.
ENV GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072
COPY --from=build /out/connector-auth-operator /connector-auth-operator
USER 65532:65532
# Metrics, /healthz and /readyz; the OAuth2 consent callback (when CALLBACK_URL is set).
EXPOSE 8080 8081
ENTRYPOINT ["/connector-auth-operator"]
CMD ["run"]
