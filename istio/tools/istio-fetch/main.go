// Fetches a Wasm plugin image with Istio's own image fetcher (istio.io/istio/pkg/wasm, the
// code the Istio agent runs for a WasmPlugin `url: oci://...`) and compares the module with
// a file. Used by istio/scripts/check-istio-fetch.sh; not part of the jest tests.
//
//	go run . REGISTRY/NAME:TAG path/to/plugin.wasm
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"istio.io/istio/pkg/wasm"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: istio-fetch IMAGE WASM_FILE")
		os.Exit(2)
	}
	image, file := os.Args[1], os.Args[2]
	want, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Insecure: the check pushes to a throw-away registry on 127.0.0.1 without TLS.
	fetcher := wasm.NewImageFetcher(context.Background(), wasm.ImageFetcherOption{Insecure: true})
	fetch, digest, err := fetcher.PrepareFetch(image)
	if err != nil {
		fmt.Fprintln(os.Stderr, "istio fetcher:", err)
		os.Exit(1)
	}
	got, err := fetch()
	if err != nil {
		fmt.Fprintln(os.Stderr, "istio fetcher:", err)
		os.Exit(1)
	}
	if !bytes.Equal(got, want) {
		fmt.Fprintf(os.Stderr, "istio fetcher got %d bytes that differ from %s (%d bytes)\n", len(got), file, len(want))
		os.Exit(1)
	}
	fmt.Printf("ok: Istio's fetcher loaded %s (manifest sha256:%s): %d bytes, identical to %s\n", image, digest, len(got), file)
}
