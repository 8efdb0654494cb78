// The plugin's OCI image (istio/scripts/oci-image.js, `make -C istio image`): Istio's fetcher
// gets exactly plugin/build/plugin.wasm out of it, the layout follows the OCI image-spec
// schemas, and the build is reproducible.
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { extractWasmPluginBinary, fetchWasmLikeIstio, readBlob, readManifest } from './lib/istio-fetch';
import { createOciValidator } from './lib/oci-schemas';
import { ISTIO_DIR, REPO_DIR } from './lib/manifests';

const oci = require('../scripts/oci-image.js');

const PLUGIN_WASM = path.join(REPO_DIR, 'plugin', 'build', 'plugin.wasm');
const TAG = JSON.parse(fs.readFileSync(path.join(ISTIO_DIR, 'package.json'), 'utf8')).version;
const sha256 = (b: Buffer) => 'sha256:' + crypto.createHash('sha256').update(b).digest('hex');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'istio-image-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Runs `make -C istio image` into a fresh directory; returns the directory and make's output. */
function makeImage(name: string, env: NodeJS.ProcessEnv = {}): { dir: string; out: string } {
  const dir = path.join(tmp, name);
  const out = execFileSync('make', ['-s', '-C', ISTIO_DIR, 'image', `OCI_DIR=${dir}`], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  return { dir, out };
}

/** A small valid Wasm module (header plus a custom section) with the given payload. */
function fakeWasm(payload: string): Buffer {
  const name = Buffer.from('test');
  const data = Buffer.from(payload);
  const body = Buffer.concat([Buffer.from([name.length]), name, data]);
  if (body.length > 127) throw new Error('keep fake payloads short');
  return Buffer.concat([Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 0, body.length]), body]);
}

function treeBytes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = sha256(fs.readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

describe('make image with plugin/build/plugin.wasm', () => {
  let dir: string;
  let wasm: Buffer;
  beforeAll(() => {
    if (!fs.existsSync(PLUGIN_WASM)) {
      throw new Error(`${PLUGIN_WASM} is missing: run make plugin (from the repository root) before these tests`);
    }
    wasm = fs.readFileSync(PLUGIN_WASM);
    ({ dir } = makeImage('real'));
  });

  test("Istio's fetcher, given the image, gets exactly plugin/build/plugin.wasm", () => {
    const got = fetchWasmLikeIstio(dir, TAG);
    expect(got.length).toBe(wasm.length);
    expect(got.equals(wasm)).toBe(true);
  });

  test('GNU tar agrees: the last layer is a gzip tar with plugin.wasm at its root, and nothing else', () => {
    const { manifest } = readManifest(dir, TAG);
    const layer = manifest.layers[manifest.layers.length - 1];
    expect(layer.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    const file = path.join(dir, 'blobs', 'sha256', layer.digest.slice(7));
    expect(execFileSync('tar', ['-tzf', file], { encoding: 'utf8' })).toBe('plugin.wasm\n');
    expect(execFileSync('tar', ['-xzOf', file, 'plugin.wasm']).equals(wasm)).toBe(true);
  });

  test('the layout, index, manifest and config follow the OCI image-spec schemas', () => {
    const check = createOciValidator();
    const read = (f: string) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    expect(check('image-layout-schema.json', read('oci-layout'))).toEqual([]);
    const index = read('index.json');
    expect(check('image-index-schema.json', index)).toEqual([]);
    const { manifest } = readManifest(dir, TAG);
    expect(check('image-manifest-schema.json', manifest)).toEqual([]);
    const config = JSON.parse(readBlob(dir, manifest.config).toString('utf8'));
    expect(check('config-schema.json', config)).toEqual([]);
    // The schemas do catch mistakes.
    expect(check('image-manifest-schema.json', { ...manifest, layers: [] })).not.toEqual([]);
    expect(check('config-schema.json', { ...config, rootfs: { type: 'layers' } })).not.toEqual([]);
  });

  test('config.rootfs.diff_ids is the digest of the uncompressed layer; no stray blobs', () => {
    const { manifest } = readManifest(dir, TAG);
    const config = JSON.parse(readBlob(dir, manifest.config).toString('utf8'));
    const layers: Buffer[] = manifest.layers.map((l: any) => readBlob(dir, l));
    expect(config.rootfs.diff_ids).toEqual(layers.map((l) => sha256(zlib.gunzipSync(l))));
    const blobs = fs.readdirSync(path.join(dir, 'blobs', 'sha256')).sort();
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
    const referenced = [index.manifests[0].digest, manifest.config.digest, ...manifest.layers.map((l: any) => l.digest)].map((d: string) => d.slice(7)).sort();
    expect(blobs).toEqual(referenced);
  });

  test('reproducible: a second build gives the same digest and byte-identical files', () => {
    const again = makeImage('again');
    expect(treeBytes(again.dir)).toEqual(treeBytes(dir));
    const digest = /manifest (sha256:[a-f0-9]{64})/.exec(again.out)?.[1];
    expect(digest).toBe(readManifest(dir, TAG).descriptor.digest);
  });

  test('make image fails with a clear message when the plugin is not built', () => {
    let msg = '';
    try {
      execFileSync('make', ['-s', '-C', ISTIO_DIR, 'image', `OCI_DIR=${path.join(tmp, 'none')}`, `PLUGIN_WASM=${path.join(tmp, 'missing.wasm')}`], {
        encoding: 'utf8',
        stdio: 'pipe',
      });
    } catch (e) {
      msg = String((e as { stdout?: string }).stdout) + String((e as { stderr?: string }).stderr);
    }
    expect(msg).toMatch(/run make plugin/);
  });
});

describe('the image writer and the fetcher model, on small modules', () => {
  const write = (name: string, wasm: Buffer, opts: { tag?: string; epoch?: number } = { tag: 't' }) => {
    const f = path.join(tmp, `${name}.wasm`);
    fs.writeFileSync(f, wasm);
    const dir = path.join(tmp, name);
    const digest: string = oci.writeLayout(f, dir, opts);
    return { dir, digest };
  };

  test('contents and build time are in the digest; the same inputs give the same digest', () => {
    const a = write('a', fakeWasm('one'));
    expect(write('a2', fakeWasm('one')).digest).toBe(a.digest);
    expect(write('b', fakeWasm('two')).digest).not.toBe(a.digest);
    expect(write('c', fakeWasm('one'), { tag: 't', epoch: 1700000000 }).digest).not.toBe(a.digest);
    expect(fetchWasmLikeIstio(a.dir, 't').equals(fakeWasm('one'))).toBe(true);
  });

  test('tar framing is right whatever the size (0, 511, 512, 513 and 4096 bytes of payload)', () => {
    for (const n of [0, 511, 512, 513, 4096]) {
      const data = crypto.randomBytes(n);
      const tar: Buffer = oci.tarOneFile('plugin.wasm', data, 0);
      expect(tar.length % 512).toBe(0);
      expect(extractWasmPluginBinary(zlib.gzipSync(tar)).equals(data)).toBe(true);
    }
  });

  test('the writer refuses a file that is not WebAssembly', () => {
    const f = path.join(tmp, 'not.wasm');
    fs.writeFileSync(f, 'hello world');
    expect(() => oci.writeLayout(f, path.join(tmp, 'not'))).toThrow(/not a WebAssembly module/);
  });

  test('the fetcher model rejects a tampered layer, a wrong layer type and a layer without plugin.wasm', () => {
    const { dir } = write('tamper', fakeWasm('x'));
    const { manifest } = readManifest(dir, 't');
    const layerFile = path.join(dir, 'blobs', 'sha256', manifest.layers[0].digest.slice(7));
    const good = fs.readFileSync(layerFile);
    fs.writeFileSync(layerFile, Buffer.concat([good.subarray(0, good.length - 1), Buffer.from([good[good.length - 1] ^ 1])]));
    expect(() => fetchWasmLikeIstio(dir, 't')).toThrow(/digest mismatch/);

    const other = write('wrongtype', fakeWasm('y'));
    const m = readManifest(other.dir, 't');
    const mf = JSON.parse(JSON.stringify(m.manifest));
    mf.layers[0].mediaType = 'application/vnd.oci.image.layer.v1.tar';
    const body = Buffer.from(JSON.stringify(mf));
    fs.writeFileSync(path.join(other.dir, 'blobs', 'sha256', sha256(body).slice(7)), body);
    fs.writeFileSync(
      path.join(other.dir, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ ...m.descriptor, digest: sha256(body), size: body.length }],
      }),
    );
    expect(() => fetchWasmLikeIstio(other.dir, 't')).toThrow(/invalid format as an OCI image/);

    const wrongName = zlib.gzipSync(oci.tarOneFile('module.wasm', fakeWasm('z'), 0));
    expect(() => extractWasmPluginBinary(wrongName)).toThrow(/plugin.wasm not found/);
    // A nested path is fine for Istio (it compares the base name).
    expect(extractWasmPluginBinary(zlib.gzipSync(oci.tarOneFile('dir/plugin.wasm', fakeWasm('n'), 0))).equals(fakeWasm('n'))).toBe(true);
  });
});
