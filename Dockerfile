# The headgate image the deploy manifests run (deploy/kubernetes):
#   docker build -t headgate:latest .
#   docker run --rm -p 8080:8080 headgate:latest            # the built-in defaults
#   docker run --rm -p 8080:8080 -v "$PWD/templates:/etc/headgate:ro" \
#     -e HEADGATE_ADMIN_TOKEN=… headgate:latest             # your config
# Built with the toolchain and the command `.ci/run` proves
# (rust-version in Cargo.toml; `cargo build --release --locked`).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates crates
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin headgate

# glibc and nothing else: no shell, no package manager; the nonroot user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/headgate /usr/local/bin/headgate
# The defaults a first `docker run` serves; mount your own over them.
COPY templates /etc/headgate
VOLUME ["/etc/headgate"]
USER 65532:65532
EXPOSE 8080 9090
# The admin listener stays on loopback unless the config says otherwise:
# the probe runs inside the container.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/headgate", "probe", "--admin", "127.0.0.1:9090", "--path", "/healthz"]
ENTRYPOINT ["/usr/local/bin/headgate"]
CMD ["serve", "--templates", "/etc/headgate", "--listen", "0.0.0.0:8080"]
