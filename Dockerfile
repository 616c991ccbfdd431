# The operator image (charts/gradients `image`): `gradients operator` and `gradients prepare`.
# Not built in CI here (no container runtime on the build machines); the binary it packages is.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gradients

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/gradients /usr/local/bin/gradients
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gradients"]
