# syntax=docker/dockerfile:1
# The ripcord binary (CLI and daemon) in a distroless, non-root image.
#   docker build -t ripcord .
#   docker run --rm ripcord --help
# Without a docker daemon (CI): scripts/image builds a FROM-scratch OCI layout with umoci, a
# static binary, uid 65532, and verifies it (see docs/daemon.md, "Image").

# --- build ---------------------------------------------------------------------------------
# The production binary: --no-default-features leaves the simulated cluster (crate ripcord-sim,
# `ripcord demo` and `ripcord sim`) out. The workspace still names the sim crate, so its
# manifest comes along.
FROM rust:1.89-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits reuse the cached dependency layer.
COPY Cargo.toml Cargo.lock ./
COPY crates/ripcord-sim/Cargo.toml ./crates/ripcord-sim/
COPY benches ./benches
RUN mkdir -p src crates/ripcord-sim/src && echo 'fn main() {}' > src/main.rs \
    && echo '' > src/lib.rs && echo '' > crates/ripcord-sim/src/lib.rs \
    && cargo build --release --locked --no-default-features \
    && rm -rf src crates/ripcord-sim/src
COPY src ./src
COPY crates ./crates
COPY playbooks ./playbooks
COPY tests/data/scenarios ./tests/data/scenarios
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --no-default-features --bin ripcord \
    && strip target/release/ripcord

# --- run -----------------------------------------------------------------------------------
# glibc + libgcc, no shell, no package manager; runs as uid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/ripcord /usr/local/bin/ripcord
USER 65532:65532
# The state volume (journals, snapshots, approvals, drill reports).
ENV RIPCORD_STATE_DIR=/var/lib/ripcord
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ripcord"]
CMD ["daemon"]
