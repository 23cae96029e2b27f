# Multi-stage build of the xct binary.
#   docker build -t xct-operator:0.1.0 .                          # CPU
#   docker build --build-arg FLAVOR=cuda -t xct-operator:0.1.0-cuda .   # CUDA (llama.cpp with --features cuda)
# Nothing in this repository's CI can build or run a container (no engine
# on its machines): this file is reviewed, not tested. See README "Container image".
ARG FLAVOR=cpu
ARG CUDA_VERSION=12.6.3

FROM docker.io/library/rust:1.95-bookworm AS build-cpu
RUN apt-get update && apt-get install -y --no-install-recommends cmake libclang-dev && rm -rf /var/lib/apt/lists/*
ENV CARGO_FEATURES=""

FROM docker.io/nvidia/cuda:${CUDA_VERSION}-devel-ubuntu22.04 AS build-cuda
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates build-essential cmake libclang-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
ENV CARGO_FEATURES="cuda"

FROM build-${FLAVOR} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src src
COPY testapi testapi
COPY eval eval
RUN cargo build --release --locked --bin xct --features "${CARGO_FEATURES}" && strip target/release/xct

FROM docker.io/library/debian:bookworm-slim AS runtime-cpu
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 ca-certificates && rm -rf /var/lib/apt/lists/*

FROM docker.io/nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu22.04 AS runtime-cuda
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 ca-certificates && rm -rf /var/lib/apt/lists/*

FROM runtime-${FLAVOR}
COPY --from=build /src/target/release/xct /usr/local/bin/xct
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/xct"]
CMD ["controller"]
