#!/usr/bin/env bash
# The graphql-http conformance audit (GraphQL over HTTP) against keygraph's router:
#   cargo build && scripts/graphql-http-audit/run.sh
# Starts the built binary (KEYGRAPH_BIN, default target/debug/keygraph) on its embedded
# default in a temporary directory, on ports from AUDIT_BASE_PORT (default 4300) up, installs
# graphql-http from the npm registry under target/graphql-http-audit/, runs every server audit,
# and exits 1 when a MUST audit fails.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
WORK=$REPO_ROOT/target/graphql-http-audit
BIN=${KEYGRAPH_BIN:-$REPO_ROOT/target/debug/keygraph}
BASE=${AUDIT_BASE_PORT:-4300}
[ -x "$BIN" ] || { echo "no keygraph binary at $BIN (cargo build first)" >&2; exit 1; }

mkdir -p "$WORK"
if [ ! -d "$WORK/node_modules/graphql-http" ]; then
  ( cd "$WORK" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error graphql-http@1 graphql@16 )
fi
cp "$SCRIPT_DIR/audit.mjs" "$WORK/audit.mjs"

data=$(mktemp -d)
router=$BASE identity=$((BASE + 1)) auth=$((BASE + 2)) authz=$((BASE + 3))
url() { echo "http://127.0.0.1:$1"; }
env \
  KEYGRAPH__DATA_DIR="$data" KEYGRAPH__LOG__FILTER=warn \
  KEYGRAPH__ROUTER__LISTEN=127.0.0.1:$router KEYGRAPH__ROUTER__POLL_INTERVAL_SECS=0 \
  KEYGRAPH__IDENTITY__LISTEN=127.0.0.1:$identity KEYGRAPH__AUTH__LISTEN=127.0.0.1:$auth \
  KEYGRAPH__AUTHZ__LISTEN=127.0.0.1:$authz \
  KEYGRAPH__TOKENS__JWKS_URL="$(url $auth)/.well-known/jwks.json" \
  KEYGRAPH__TOKENS__REVOCATIONS_URL="$(url $auth)/internal/revocations" \
  KEYGRAPH__IDENTITY__AUTH_URL="$(url $auth)" KEYGRAPH__IDENTITY__AUTHZ_URL="$(url $authz)" \
  KEYGRAPH__AUTHZ__IDENTITY_URL="$(url $identity)" KEYGRAPH__AUTH__IDENTITY_URL="$(url $identity)" \
  KEYGRAPH__AUTH__AUTHZ_URL="$(url $authz)" \
  KEYGRAPH__ROUTER__SUBGRAPHS__IDENTITY__URL="$(url $identity)/graphql" \
  KEYGRAPH__ROUTER__SUBGRAPHS__AUTH__URL="$(url $auth)/graphql" \
  KEYGRAPH__ROUTER__SUBGRAPHS__AUTHZ__URL="$(url $authz)/graphql" \
  KEYGRAPH__IDENTITY__FIRST_ADMIN__PASSWORD="graphql-http audit admin 42" \
  "$BIN" >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 150); do
  curl -sf "$(url $router)/ready" >/dev/null && break
  kill -0 $pid 2>/dev/null || { echo "keygraph exited before it was ready" >&2; exit 1; }
  sleep 0.2
done
node "$WORK/audit.mjs" "$(url $router)/graphql"
