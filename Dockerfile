# The operator image (charts/gradients `image`): `gradients operator`, `gradients prepare` and
# `gradients seal`. A registry build: `docker build -t REPO/gradients:TAG .`. The e2e tests build
# its final stage without a daemon (e2e/images/build operator executes it with the cargo-built
# binary as the build stage's output).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gradients

FROM debian:bookworm-slim
# CA certificates: the operator and its preparation and seal Jobs reach S3 endpoints over HTTPS
# (the storage client trusts the system's roots, and refuses to start without any).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build /src/target/release/gradients /usr/local/bin/gradients
# A numeric non-root user (the chart's pod security context runs it as 65532 too).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gradients"]
