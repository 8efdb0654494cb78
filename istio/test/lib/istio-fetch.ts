// Reads a Wasm plugin out of an OCI image layout the way Istio's agent does for a WasmPlugin
// `url: oci://...` (istio/istio pkg/wasm/imagefetcher.go, with go-containerregistry), so a test
// can check an image before it is pushed:
//   - the manifest comes from the layout's index.json (by tag, or the only one);
//   - every blob must match its descriptor's digest and size (go-containerregistry verifies);
//   - Docker manifest (application/vnd.docker.distribution.manifest.v2+json): the last layer
//     must be application/vnd.docker.image.rootfs.diff.tar.gzip;
//   - otherwise the "compat" variant: last layer application/vnd.oci.image.layer.v1.tar+gzip,
//     then the "oci" variant: exactly two layers, one application/vnd.module.wasm.content.layer.v1+wasm;
//   - compat/docker: gunzip the layer, walk the tar, return the first entry whose base name is
//     plugin.wasm.
// The tar reader here is written independently of the image writer (istio/scripts/oci-image.js).
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';

const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
const WASM_LAYER = 'application/vnd.module.wasm.content.layer.v1+wasm';
const WASM_NAME = 'plugin.wasm';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export function readBlob(dir: string, d: Descriptor): Buffer {
  const m = /^sha256:([a-f0-9]{64})$/.exec(d.digest);
  if (!m) throw new Error(`unsupported digest ${d.digest}`);
  const b = fs.readFileSync(path.join(dir, 'blobs', 'sha256', m[1]));
  const actual = 'sha256:' + crypto.createHash('sha256').update(b).digest('hex');
  if (actual !== d.digest) throw new Error(`blob ${d.digest}: digest mismatch (content is ${actual})`);
  if (b.length !== d.size) throw new Error(`blob ${d.digest}: size ${b.length}, descriptor says ${d.size}`);
  return b;
}

export function readManifest(dir: string, tag?: string): { descriptor: Descriptor; manifest: any } {
  const layout = JSON.parse(fs.readFileSync(path.join(dir, 'oci-layout'), 'utf8'));
  if (layout.imageLayoutVersion !== '1.0.0') throw new Error(`unsupported imageLayoutVersion ${layout.imageLayoutVersion}`);
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
  const all: Descriptor[] = index.manifests || [];
  const hits = tag ? all.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag) : all;
  if (hits.length !== 1) throw new Error(`expected one manifest${tag ? ` tagged ${tag}` : ''} in ${dir}/index.json, found ${hits.length}`);
  return { descriptor: hits[0], manifest: JSON.parse(readBlob(dir, hits[0]).toString('utf8')) };
}

function cstr(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? s.length : nul).toString('utf8');
}

function tarNumber(b: Buffer, start: number, len: number): number {
  if (b[start] & 0x80) {
    // base-256 (GNU) encoding
    let n = 0;
    for (let i = start + 1; i < start + len; i++) n = n * 256 + b[i];
    return n;
  }
  const s = cstr(b, start, len).trim();
  return s === '' ? 0 : parseInt(s, 8);
}

/** Like Go's filepath.Base. */
function base(p: string): string {
  const t = p.replace(/\/+$/, '');
  if (t === '') return p === '' ? '.' : '/';
  return t.slice(t.lastIndexOf('/') + 1);
}

/** Go's archive/tar + Istio's extractWasmPluginBinary: first entry whose base name is plugin.wasm. */
export function extractWasmPluginBinary(gz: Buffer): Buffer {
  let tar: Buffer;
  try {
    tar = zlib.gunzipSync(gz);
  } catch (e) {
    throw new Error(`failed to parse layer as tar.gz: ${(e as Error).message}`, { cause: e });
  }
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break; // end of archive
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    if (sum !== tarNumber(h, 148, 8)) throw new Error('archive/tar: invalid header (checksum)');
    const size = tarNumber(h, 124, 12);
    const type = String.fromCharCode(h[156] || 0x30);
    const body = tar.subarray(off + 512, off + 512 + size);
    if (body.length !== size) throw new Error('unexpected EOF');
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === 'x') {
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString('utf8'));
      if (m) longName = m[1];
      continue;
    }
    if (type === 'L') {
      longName = cstr(body, 0, body.length);
      continue;
    }
    if (type === 'g') continue;
    const magic = cstr(h, 257, 6);
    const prefix = magic === 'ustar' ? cstr(h, 345, 155) : '';
    const name = longName ?? (prefix ? `${prefix}/${cstr(h, 0, 100)}` : cstr(h, 0, 100));
    longName = undefined;
    if (base(name) === WASM_NAME) return Buffer.from(body);
  }
  throw new Error(`${WASM_NAME} not found in the archive`);
}

/** Returns the Wasm module Istio would load from the image in the OCI layout `dir`. */
export function fetchWasmLikeIstio(dir: string, tag?: string): Buffer {
  const { manifest } = readManifest(dir, tag);
  // go-containerregistry reads the config too (img.Layers needs it for diff ids).
  readBlob(dir, manifest.config);
  const layers: Descriptor[] = manifest.layers || [];
  if (manifest.mediaType === DOCKER_MANIFEST) {
    if (layers.length === 0) throw new Error('number of layers must be greater than zero');
    const last = layers[layers.length - 1];
    if (last.mediaType !== DOCKER_LAYER) throw new Error(`invalid media type ${last.mediaType} (expect ${DOCKER_LAYER})`);
    return extractWasmPluginBinary(readBlob(dir, last));
  }
  const errors: string[] = [];
  try {
    if (layers.length === 0) throw new Error('number of layers must be greater than zero');
    const last = layers[layers.length - 1];
    if (last.mediaType !== OCI_LAYER) throw new Error(`invalid media type ${last.mediaType} (expect ${OCI_LAYER})`);
    return extractWasmPluginBinary(readBlob(dir, last));
  } catch (e) {
    errors.push(`could not parse as compat variant: ${(e as Error).message}`);
  }
  try {
    if (layers.length !== 2) throw new Error(`number of layers must be 2 but got ${layers.length}`);
    const l = layers.find((x) => x.mediaType === WASM_LAYER);
    if (!l) throw new Error(`could not find the layer of type ${WASM_LAYER}`);
    return readBlob(dir, l);
  } catch (e) {
    errors.push(`could not parse as oci variant: ${(e as Error).message}`);
  }
  throw new Error(`the given image is in invalid format as an OCI image: ${errors.join('; ')}`);
}
