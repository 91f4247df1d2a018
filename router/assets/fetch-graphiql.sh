#!/usr/bin/env bash
# Rebuilds router/assets/graphiql from the npm registry: GraphiQL and the React it runs on,
# served by the router itself so a browser never fetches anything from the internet.
# Pinned versions; SHA256SUMS records what was vendored.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)/graphiql"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent graphiql@3.9.0 react@18.3.1 react-dom@18.3.1 >/dev/null
for f in *.tgz; do mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}" --strip-components=1; done
cp graphiql-3.9.0/graphiql.min.js graphiql-3.9.0/graphiql.min.css "$here/"
cp react-18.3.1/umd/react.production.min.js react-dom-18.3.1/umd/react-dom.production.min.js "$here/"
cp graphiql-3.9.0/LICENSE "$here/LICENSE.graphiql"
cp react-18.3.1/LICENSE "$here/LICENSE.react"
cp react-dom-18.3.1/LICENSE "$here/LICENSE.react-dom"
cd "$here" && sha256sum --check SHA256SUMS
