#!/usr/bin/env bash
# Optional check, not run by the jest tests: builds the plugin image (`make image`), pushes it
# with skopeo to a throw-away registry on 127.0.0.1, and loads it back with Istio's own image
# fetcher (tools/istio-fetch, istio.io/istio/pkg/wasm), which must return exactly
# plugin/build/plugin.wasm.
# Needs: skopeo and docker-registry (Debian: apt-get install -y skopeo docker-registry), Go.
# Usage: make -C istio check-istio-fetch
set -euo pipefail
cd "$(dirname "$0")/.."
for c in skopeo docker-registry go node; do
  command -v "$c" >/dev/null || { echo "check-istio-fetch needs $c (apt-get install -y skopeo docker-registry; Go)"; exit 1; }
done
wasm="$(cd .. && pwd)/plugin/build/plugin.wasm"
tag="$(node -p "require('./package.json').version")"
make -s image
dir="$(mktemp -d)"
# Port 0: the registry takes a free port and logs it ("listening on 127.0.0.1:PORT").
cat > "$dir/config.yml" <<CONF
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:0
CONF
docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
port=""
for _ in $(seq 1 50); do
  port="$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$dir/registry.log" | head -1 | sed 's/.*://' || true)"
  [ -n "$port" ] && node -e "require('http').get('http://127.0.0.1:$port/v2/',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))" && break
  kill -0 $pid 2>/dev/null || { echo "docker-registry exited:"; cat "$dir/registry.log"; exit 1; }
  sleep 0.2
done
[ -n "$port" ] || { echo "docker-registry did not say which port it took:"; cat "$dir/registry.log"; exit 1; }
make -s push REGISTRY="127.0.0.1:$port" SKOPEO_FLAGS=--dest-tls-verify=false
(cd tools/istio-fetch && go run . "127.0.0.1:$port/llm-token-ratelimit/plugin:$tag" "$wasm")
