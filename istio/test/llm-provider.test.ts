// istio/manifests/llm-provider.yaml (the stand-in for ASM's LLMProvider): its Lua filter,
// taken verbatim from the EnvoyFilter's patch, runs in a real Envoy between a client and a
// recording upstream, so the rewrite the seed's curl depends on is checked for real.
import * as http from 'http';
import { find, loadAll } from './lib/manifests';
import { recordingUpstream, startSidecar, Upstream } from './lib/sidecar';

const SEED_BODY = '{\n"messages": [\n{"role": "user", "content": "介绍一下你自己"}\n]\n}';

let envoy: Awaited<ReturnType<typeof startSidecar>> | undefined;
let upstream: Upstream;
let port: number;

/** What the upstream received, in order. */
const seen = () => upstream.requests;

/** One request with the given Host (fetch cannot set Host); resolves with the status. */
function send(port: number, o: { host: string; path?: string; headers?: Record<string, string>; body?: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: o.body === undefined ? 'GET' : 'POST', path: o.path ?? '/', headers: { host: o.host, ...o.headers }, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

beforeAll(async () => {
  const ef = find(loadAll(), 'EnvoyFilter', 'dashscope-llm-provider');
  upstream = await recordingUpstream();
  // The EnvoyFilter's Lua filter, verbatim, before the router, as in the egress gateway.
  envoy = await startSidecar([ef.spec.configPatches[0].patch.value], upstream.port);
  port = envoy.port;
}, 30000);

afterAll(async () => {
  await envoy?.stop();
  await upstream?.close();
});

beforeEach(() => {
  seen().length = 0;
});

test("the seed's request becomes a DashScope chat completion: path, key, model", async () => {
  expect(
    await send(port, { host: 'dashscope.aliyuncs.com', headers: { 'content-type': 'application/json', 'user-type': 'regular-user' }, body: SEED_BODY }),
  ).toBe(200);
  expect(seen()).toHaveLength(1);
  const [r] = seen();
  expect(r.path).toBe('/compatible-mode/v1/chat/completions');
  expect(r.headers.authorization).toBe('Bearer REPLACE_WITH_DASHSCOPE_API_KEY');
  expect(r.headers['user-type']).toBe('regular-user');
  expect(JSON.parse(r.body)).toEqual({ model: 'qwen-plus', ...JSON.parse(SEED_BODY) });
  expect(Number(r.headers['content-length'] ?? Buffer.byteLength(r.body))).toBe(Buffer.byteLength(r.body));
});

test('what the client already says is kept: path, Authorization, model; an empty object gets a model too', async () => {
  const body = JSON.stringify({ model: 'qwen-max', messages: [] });
  await send(port, {
    host: 'dashscope.aliyuncs.com',
    path: '/compatible-mode/v1/chat/completions',
    headers: { 'content-type': 'application/json', authorization: 'Bearer mine' },
    body,
  });
  await send(port, { host: 'dashscope.aliyuncs.com', headers: { 'content-type': 'application/json' }, body: ' {} ' });
  expect(seen()[0]).toMatchObject({ path: '/compatible-mode/v1/chat/completions', body });
  expect(seen()[0].headers.authorization).toBe('Bearer mine');
  expect(JSON.parse(seen()[1].body)).toEqual({ model: 'qwen-plus' });
});

test('other hosts pass untouched', async () => {
  await send(port, { host: 'example.com', headers: { 'content-type': 'application/json' }, body: SEED_BODY });
  expect(seen()).toHaveLength(1);
  expect(seen()[0].path).toBe('/');
  expect(seen()[0].headers.authorization).toBeUndefined();
  expect(seen()[0].body).toBe(SEED_BODY);
});
