// istio/manifests/llm-provider.yaml (the stand-in for ASM's LLMProvider): its Lua filter,
// taken verbatim from the EnvoyFilter's patch, runs in a real Envoy between a client and a
// recording upstream, so the rewrite the seed's curl depends on is checked for real.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { stringify } from 'yaml';
import { find, loadAll, REPO_DIR } from './lib/manifests';

const ENVOY = process.env.ENVOY_BIN || path.join(REPO_DIR, '.venv', 'bin', 'envoy');
const SEED_BODY = '{\n"messages": [\n{"role": "user", "content": "介绍一下你自己"}\n]\n}';

interface Seen {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function send(port: number, o: { host: string; path?: string; headers?: Record<string, string>; body?: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: o.body === undefined ? 'GET' : 'POST', path: o.path ?? '/', headers: { host: o.host, ...(o.headers || {}) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end(o.body);
  });
}

let envoy: ChildProcess | undefined;
let upstream: http.Server;
let port: number;
let output = '';
const seen: Seen[] = [];
let filter: any;

beforeAll(async () => {
  if (!fs.existsSync(ENVOY)) throw new Error(`Envoy not found at ${ENVOY}: run make envoy (or set ENVOY_BIN)`);
  const ef = find(loadAll(), 'EnvoyFilter', 'dashscope-llm-provider');
  filter = ef.spec.configPatches[0].patch.value;

  upstream = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ path: req.url!, headers: req.headers, body });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const upstreamPort = (upstream.address() as net.AddressInfo).port;
  port = await freePort();
  const adminPort = await freePort();
  const config = {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    static_resources: {
      listeners: [{
        name: 'outbound_80',
        address: { socket_address: { address: '127.0.0.1', port_value: port } },
        filter_chains: [{
          filters: [{
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: 'outbound_80',
              route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'upstream' } }] }] },
              http_filters: [filter, { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
            },
          }],
        }],
      }],
      clusters: [{
        name: 'upstream',
        type: 'STATIC',
        connect_timeout: '1s',
        load_assignment: { cluster_name: 'upstream', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: upstreamPort } } } }] }] },
      }],
    },
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'istio-lua-'));
  fs.writeFileSync(path.join(dir, 'envoy.yaml'), stringify(config));
  envoy = spawn(ENVOY, ['-c', path.join(dir, 'envoy.yaml'), '--disable-hot-restart', '--concurrency', '1', '-l', 'warning'], { stdio: ['ignore', 'pipe', 'pipe'] });
  envoy.stdout!.on('data', (d) => (output += d));
  envoy.stderr!.on('data', (d) => (output += d));
  const deadline = Date.now() + 20000;
  for (;;) {
    if (envoy.exitCode !== null) throw new Error(`Envoy exited (${envoy.exitCode}):\n${output.slice(-3000)}`);
    const ready = await new Promise<boolean>((r) => {
      const q = http.get({ host: '127.0.0.1', port: adminPort, path: '/ready' }, (res) => { res.resume(); r(res.statusCode === 200); });
      q.on('error', () => r(false));
    });
    if (ready) break;
    if (Date.now() > deadline) throw new Error(`Envoy not ready:\n${output.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}, 30000);

afterAll(async () => {
  if (envoy && envoy.exitCode === null) {
    const exited = new Promise((r) => envoy!.once('exit', r));
    envoy.kill('SIGTERM');
    await exited;
  }
  await new Promise((r) => upstream?.close(r));
});

beforeEach(() => {
  seen.length = 0;
});

test('the seed\'s request becomes a DashScope chat completion: path, key, model', async () => {
  expect(await send(port, { host: 'dashscope.aliyuncs.com', headers: { 'content-type': 'application/json', 'user-type': 'regular-user' }, body: SEED_BODY })).toBe(200);
  expect(seen).toHaveLength(1);
  const [r] = seen;
  expect(r.path).toBe('/compatible-mode/v1/chat/completions');
  expect(r.headers.authorization).toBe('Bearer REPLACE_WITH_DASHSCOPE_API_KEY');
  expect(r.headers['user-type']).toBe('regular-user');
  expect(JSON.parse(r.body)).toEqual({ model: 'qwen-plus', ...JSON.parse(SEED_BODY) });
  expect(Number(r.headers['content-length'] ?? Buffer.byteLength(r.body))).toBe(Buffer.byteLength(r.body));
});

test('what the client already says is kept: path, Authorization, model; an empty object gets a model too', async () => {
  const body = JSON.stringify({ model: 'qwen-max', messages: [] });
  await send(port, { host: 'dashscope.aliyuncs.com', path: '/compatible-mode/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: 'Bearer mine' }, body });
  await send(port, { host: 'dashscope.aliyuncs.com', headers: { 'content-type': 'application/json' }, body: ' {} ' });
  expect(seen[0]).toMatchObject({ path: '/compatible-mode/v1/chat/completions', body });
  expect(seen[0].headers.authorization).toBe('Bearer mine');
  expect(JSON.parse(seen[1].body)).toEqual({ model: 'qwen-plus' });
});

test('other hosts pass untouched', async () => {
  await send(port, { host: 'example.com', headers: { 'content-type': 'application/json' }, body: SEED_BODY });
  expect(seen).toHaveLength(1);
  expect(seen[0].path).toBe('/');
  expect(seen[0].headers.authorization).toBeUndefined();
  expect(seen[0].body).toBe(SEED_BODY);
});
