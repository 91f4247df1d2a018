#!/bin/sh
# Gateway start script for the federation-gateway-audit CLI (--run-script).
# The audit runs `sh gateway.sh <test-suite-id>` once per suite and kills it afterwards.
# Maps the audit's conventions onto keygraph's env-var configuration.
set -eu
echo "[gateway.sh] suite=$1 pid=$$" >&2

ID="$1"
HERE="$(cd "$(dirname "$0")" && pwd)"
AUDIT_PORT="${AUDIT_PORT:-4200}"          # where the audit CLI serves subgraphs + supergraphs
GATEWAY_PORT="${GATEWAY_PORT:-4100}"      # where keygraph listens (NOT 4000: see run.sh)
KEYGRAPH_BIN="${KEYGRAPH_BIN:?run through run.sh}"

mkdir -p "$HERE/out/supergraphs" /tmp/audit-data
SG="$HERE/out/supergraphs/$ID.graphql"

# Equivalent of `npm start supergraph -- --test $ID`, without the tsx start-up cost.
# Subgraph URLs inside it are http://127.0.0.1:$AUDIT_PORT/$ID/<subgraph>.
# The audit registers its routes asynchronously after its server starts listening, so
# early requests get 404: retry for up to ~30 s.
i=0
until curl -sf "http://127.0.0.1:$AUDIT_PORT/$ID/supergraph" -o "$SG"; do
  i=$((i + 1))
  if [ "$i" -ge 60 ]; then
    echo "[gateway.sh] could not fetch supergraph for $ID from :$AUDIT_PORT" >&2
    curl -sS "http://127.0.0.1:$AUDIT_PORT/$ID/supergraph" >&2 || true
    exit 1
  fi
  sleep 0.5
done
echo "[gateway.sh] supergraph $SG fetched after $i retries" >&2

# KEYGRAPH__TOKENS__{JWKS,REVOCATIONS}_URL=null is rejected by keygraph
# ("setting `tokens.jwks_url`: `null` is not an http(s) URL"), so the nulls go in a
# YAML override file instead (YAML null is accepted there).
CONF="$HERE/keygraph-audit.yaml"
[ -f "$CONF" ] || printf 'tokens:\n  jwks_url: null\n  revocations_url: null\n' > "$CONF"

export KEYGRAPH__ROUTER__SUPERGRAPH_FILE="$SG"
export KEYGRAPH__ROUTER__LISTEN="127.0.0.1:$GATEWAY_PORT"
export KEYGRAPH__ROUTER__POLL_INTERVAL_SECS=0
export KEYGRAPH__ROUTER__RATE_LIMIT__MAX=1000000
export KEYGRAPH__HTTP__SHUTDOWN_GRACE_SECS=1
export KEYGRAPH__DATA_DIR=/tmp/audit-data
export NO_COLOR=1

exec "$KEYGRAPH_BIN" --config "$CONF" router
