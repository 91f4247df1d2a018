# One image for every Keygraph service: `keygraph identity|auth|authz|router`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin keygraph

# libssl3: passkeys (webauthn-rs) verify with OpenSSL.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/keygraph --create-home keygraph
COPY --from=build /src/target/release/keygraph /usr/local/bin/keygraph
USER keygraph
WORKDIR /var/lib/keygraph
ENV KEYGRAPH__DATA_DIR=/var/lib/keygraph \
    KEYGRAPH__LOG__FORMAT=json
ENTRYPOINT ["keygraph"]
CMD ["router"]
