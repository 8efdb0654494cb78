#!/usr/bin/env bash
# Fails when git tracks a file over 1 MiB: binaries and build outputs stay out of the tree
# (`make helm` builds helm; `make build` builds the plugin and the service).
set -uo pipefail
cd "$(dirname "$0")/.."
limit=$((1024 * 1024))
big=$(git ls-files -z | xargs -0 stat -c '%s %n' 2>/dev/null | awk -v l="$limit" '$1 > l')
if [ -n "$big" ]; then
  echo "tracked files over 1 MiB (take them out of git; build or download them instead):"
  echo "$big"
  exit 1
fi
echo "tracked files: none over 1 MiB"
