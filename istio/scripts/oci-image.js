#!/usr/bin/env node
// @ts-check
// Writes the plugin's container image as an OCI image layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md),
// without a Docker daemon or any dependency: the same image `docker build -f plugin/Dockerfile plugin`
// makes (FROM scratch, plugin.wasm at the root), in the form Istio's Wasm image fetcher accepts
// (its "compat" variant: the last layer is a gzip tar holding a file named plugin.wasm, media
// type application/vnd.oci.image.layer.v1.tar+gzip).
//
// Reproducible: file times, ownership and the image's creation time are fixed (SOURCE_DATE_EPOCH,
// default 0) and the layout is rewritten from scratch, so the same plugin.wasm gives the same digest.
//
// Usage: node oci-image.js --wasm plugin/build/plugin.wasm --out istio/build/oci [--tag 0.1.0]
// Prints the manifest digest. Push with: skopeo copy oci:<out>:<tag> docker://<registry>/<name>:<tag>
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};
const WASM_NAME = 'plugin.wasm';

const sha256 = (/** @type {Buffer} */ b) => 'sha256:' + crypto.createHash('sha256').update(b).digest('hex');

/** One tar header field: `value` as NUL-terminated octal of `width` bytes. */
function octal(value, width) {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/**
 * A POSIX ustar archive holding one regular file (mode 0644, owner 0:0, mtime `mtime`).
 * @param {string} name @param {Buffer} data @param {number} mtime
 */
function tarOneFile(name, data, mtime) {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
  const h = Buffer.alloc(512, 0);
  h.write(name, 0, 'utf8');
  h.write(octal(0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(data.length, 12), 124, 'ascii');
  h.write(octal(mtime, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // checksum placeholder: 8 spaces
  h.write('0', 156, 'ascii'); // regular file
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512, 0);
  return Buffer.concat([h, data, pad, Buffer.alloc(1024, 0)]);
}

/**
 * Builds the image in memory.
 * @param {Buffer} wasm @param {{tag?: string, epoch?: number}} [opts]
 */
function buildImage(wasm, opts = {}) {
  const epoch = opts.epoch ?? 0;
  const created = new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
  const tar = tarOneFile(WASM_NAME, wasm, epoch);
  // gzip header written by zlib has no name and mtime 0: the bytes depend only on the input.
  const layer = zlib.gzipSync(tar, { level: 9 });
  const config = Buffer.from(
    JSON.stringify({
      created,
      // A Wasm module has no CPU architecture; these are what `docker build` of plugin/Dockerfile
      // on amd64 records, so registries and tools that expect a platform are satisfied.
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
      history: [{ created, created_by: `COPY ${WASM_NAME} /${WASM_NAME}` }],
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: sha256(config), size: config.length },
      layers: [{ mediaType: MEDIA.layer, digest: sha256(layer), size: layer.length }],
    }),
  );
  const ref = { mediaType: MEDIA.manifest, digest: sha256(manifest), size: manifest.length };
  if (opts.tag) ref.annotations = { 'org.opencontainers.image.ref.name': opts.tag };
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests: [ref] }));
  return { digest: ref.digest, index, blobs: [config, layer, manifest] };
}

/**
 * Writes the image as an OCI image layout in `out` (replacing what was there). Returns the manifest digest.
 * @param {string} wasmFile @param {string} out @param {{tag?: string, epoch?: number}} [opts]
 */
function writeLayout(wasmFile, out, opts = {}) {
  const wasm = fs.readFileSync(wasmFile);
  if (wasm.length < 8 || wasm.readUInt32BE(0) !== 0x0061736d) throw new Error(`${wasmFile} is not a WebAssembly module`);
  const img = buildImage(wasm, opts);
  fs.rmSync(out, { recursive: true, force: true });
  const blobDir = path.join(out, 'blobs', 'sha256');
  fs.mkdirSync(blobDir, { recursive: true });
  for (const b of img.blobs) fs.writeFileSync(path.join(blobDir, sha256(b).slice('sha256:'.length)), b);
  fs.writeFileSync(path.join(out, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(path.join(out, 'index.json'), img.index);
  return img.digest;
}

module.exports = { buildImage, writeLayout, tarOneFile, MEDIA, WASM_NAME };

if (require.main === module) {
  const args = process.argv.slice(2);
  const opt = (name, def) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : def;
  };
  const wasm = opt('wasm');
  const out = opt('out');
  if (!wasm || !out) {
    console.error('usage: oci-image.js --wasm FILE --out DIR [--tag TAG]');
    process.exit(2);
  }
  if (!fs.existsSync(wasm)) {
    console.error(`${wasm} not found: run make plugin`);
    process.exit(1);
  }
  const epoch = process.env.SOURCE_DATE_EPOCH ? Number(process.env.SOURCE_DATE_EPOCH) : 0;
  const digest = writeLayout(wasm, out, { tag: opt('tag'), epoch });
  console.log(digest);
}
