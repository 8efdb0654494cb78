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
port="$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
dir="$(mktemp -d)"
cat > "$dir/config.yml" <<CONF
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
CONF
docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do
  node -e "require('http').get('http://127.0.0.1:$port/v2/',r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))" && break
  sleep 0.2
done
make -s push REGISTRY="127.0.0.1:$port" SKOPEO_FLAGS=--dest-tls-verify=false
(cd tools/istio-fetch && go run . "127.0.0.1:$port/llm-token-ratelimit/plugin:$tag" "$wasm")
