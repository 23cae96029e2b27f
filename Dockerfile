# Multi-stage build of the xct binary. Each image is a target:
#   docker build -t xct-operator:0.1.0 .                        # CPU (the last stage, the default)
#   docker build --target cuda -t xct-operator:0.1.0-cuda .     # CUDA (llama.cpp with --features cuda)
#   docker build --target cpu-prebuilt -t xct-operator:0.1.0 CONTEXT
#       # CPU, with the binary not compiled here: CONTEXT holds it as ./xct
#       # (built on Debian 12). scripts/check-image.sh builds and runs the CPU
#       # image this way; the CUDA image is not built on this project's
#       # machines (see README "Container image").
# Stages are chosen by target, not by a build argument, so that builders
# which skip unused stages (BuildKit, buildah) never fetch the other bases.
ARG CUDA_VERSION=12.6.3

# The workspace the two build stages compile.
FROM scratch AS sources
COPY Cargo.toml Cargo.lock rustfmt.toml /src/
COPY src /src/src
COPY testapi /src/testapi
COPY eval /src/eval
COPY scripts/dist-dynamic.sh scripts/build-cuda.sh /src/scripts/

FROM docker.io/library/rust:1.95-bookworm AS build-cpu
RUN apt-get update && apt-get install -y --no-install-recommends cmake libclang-dev && rm -rf /var/lib/apt/lists/*
COPY --from=sources /src /src
WORKDIR /src
RUN cargo build --release --locked --bin xct && strip target/release/xct

# CUDA: ggml's backends as libraries loaded at start (dynamic-backends),
# the CUDA one compiled for A100 (sm_80) and H100/H200 (sm_90); the CPU
# ones for every x86-64 level, used where no GPU is visible.
# scripts/build-cuda.sh holds the build; scripts/check-cuda-build.sh runs
# it without this image (README "GPU").
FROM docker.io/nvidia/cuda:${CUDA_VERSION}-devel-ubuntu22.04 AS build-cuda
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential cmake libclang-dev pkg-config patchelf \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
COPY --from=sources /src /src
WORKDIR /src
RUN scripts/build-cuda.sh /opt/xct

# The CUDA image: /opt/xct holds xct, its libraries and the backends it
# loads from its own folder. Its runtime settings are the CPU image's
# (below); keep the two in step.
FROM docker.io/nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu22.04 AS cuda
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build-cuda /opt/xct /opt/xct
RUN ln -s /opt/xct/xct /usr/local/bin/xct
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/xct"]
CMD ["controller"]

# The CPU runtime: non-root, the health port, `xct controller` by default.
FROM docker.io/library/debian:bookworm-slim AS cpu-runtime
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 ca-certificates && rm -rf /var/lib/apt/lists/*
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/xct"]
CMD ["controller"]

FROM cpu-runtime AS cpu-prebuilt
COPY xct /usr/local/bin/xct

FROM cpu-runtime AS cpu
COPY --from=build-cpu /src/target/release/xct /usr/local/bin/xct
