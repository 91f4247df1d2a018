#!/bin/sh
# Gateway start script for the federation-gateway-audit CLI (--run-script).
# The audit runs `sh gateway.sh <test-suite-id>` once per suite and kills it afterwards.
# Maps the audit's conventions onto keygraph's env-var configuration.
set -eu
echo "[gateway.sh] suite=$1 pid=$$" >&2

ID="$1"
AUDIT_DIR="${AUDIT_DIR:?run through run.sh}"
AUDIT_PORT="${AUDIT_PORT:-4200}"          # where the audit CLI serves subgraphs + supergraphs
GATEWAY_PORT="${GATEWAY_PORT:-4100}"      # where keygraph listens (NOT 4000: see run.sh)
KEYGRAPH_BIN="${KEYGRAPH_BIN:?run through run.sh}"

# Everything this writes stays under $AUDIT_DIR (target/federation-audit), outside the tree.
mkdir -p "$AUDIT_DIR/supergraphs" "$AUDIT_DIR/data"
SG="$AUDIT_DIR/supergraphs/$ID.graphql"

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

# No auth service here: tokens are neither fetched keys nor revocations.
export KEYGRAPH__TOKENS__JWKS_URL=null
export KEYGRAPH__TOKENS__REVOCATIONS_URL=null
export KEYGRAPH__ROUTER__SUPERGRAPH_FILE="$SG"
export KEYGRAPH__ROUTER__LISTEN="127.0.0.1:$GATEWAY_PORT"
export KEYGRAPH__ROUTER__POLL_INTERVAL_SECS=0
export KEYGRAPH__ROUTER__RATE_LIMIT__PER_ADDRESS__QUERY=1000000
export KEYGRAPH__ROUTER__RATE_LIMIT__PER_ADDRESS__MUTATION=1000000
export KEYGRAPH__HTTP__SHUTDOWN_GRACE_SECS=1
export KEYGRAPH__DATA_DIR="$AUDIT_DIR/data"
export NO_COLOR=1

exec "$KEYGRAPH_BIN" router
