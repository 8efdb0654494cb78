// The Helm chart (deploy/helm/llm-token-ratelimit), with a real `helm` (`make helm` builds
// v3.22.0 from the Go module proxy into .tools/bin): `helm lint --strict` is clean, every
// rendering validates against the same Kubernetes and Istio schemas as istio/manifests, the
// chart at ci/istio-manifests-values.yaml renders exactly the raw manifests' objects, the plugin
// runs in a gateway unless the sidecar topology is asked for (then with a warning), and bad
// values stop the rendering with a message naming the value.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { parseAllDocuments } from 'yaml';
import { createValidator, Validator } from './lib/schemas';
import { loadFile, REPO_DIR } from './lib/manifests';

const CHART = path.join(REPO_DIR, 'deploy/helm/llm-token-ratelimit');
const PARITY_VALUES = path.join(CHART, 'ci/istio-manifests-values.yaml');
const HELM_VERSION = 'v3.22.0';
const TOKEN = 'test-service-token-0123456789abcdef';

/** The helm binary: HELM_BIN, else .tools/bin/helm (make helm), else none (the test fails saying how to get it). */
function helmBin(): string {
  const candidates = [process.env.HELM_BIN, path.join(REPO_DIR, '.tools/bin/helm')].filter(Boolean) as string[];
  for (const c of candidates) if (fs.existsSync(c)) return c;
  throw new Error(
    `helm not found (looked at ${candidates.join(', ')}): run \`make helm\` from the repository root (builds helm ${HELM_VERSION} from the Go module proxy into .tools/bin; needs Go >= 1.26), or set HELM_BIN=/path/to/helm`,
  );
}

function helm(args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(helmBin(), args, {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, HELM_CACHE_HOME: '/tmp/llmrl-helm/cache', HELM_CONFIG_HOME: '/tmp/llmrl-helm/config', HELM_DATA_HOME: '/tmp/llmrl-helm/data' },
  });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** `helm template` with these value files and --set flags; the objects, or the error text. */
function render(values: string[], set: string[] = []): any[] {
  const flags = set.flatMap((s) => (s.startsWith('string:') ? ['--set-string', s.slice(7)] : ['--set', s]));
  const r = helm(['template', 'llmrl', CHART, '--namespace', 'default', ...values.flatMap((f) => ['-f', f]), ...flags]);
  if (r.code !== 0) throw new Error(`helm template failed: ${r.err}`);
  return parseAllDocuments(r.out, { uniqueKeys: true })
    .map((d) => {
      if (d.errors.length) throw new Error(d.errors.map((e) => e.message).join('; '));
      return d.toJS();
    })
    .filter((o) => o);
}

function renderError(set: string[]): string {
  const r = helm(['template', 'llmrl', CHART, '--namespace', 'default', ...set.flatMap((s) => ['--set', s])]);
  expect(r.code).not.toBe(0);
  return r.err;
}

const MINIMAL = [`serviceTokens.token=${TOKEN}`, 'redis.address=redis.example.internal:6379'];
// The plugin on Istio's ingress gateway, installed in a namespace of its own (Istio's "Installing Gateways").
const INGRESS = [
  'wasmPlugin.gateway.namespace=istio-ingress',
  'wasmPlugin.gateway.serviceAccount=istio-ingressgateway',
  'wasmPlugin.gateway.selector.matchLabels.istio=ingressgateway',
];
const SIDECAR_WARNING = 'llm-token-ratelimit/warning';

let v: Validator;
beforeAll(() => {
  v = createValidator();
});

function expectValid(objs: any[]): void {
  expect(objs.length).toBeGreaterThan(0);
  for (const o of objs) {
    const r = v.validate(o);
    if (!r.valid) throw new Error(`${o.kind} ${o.metadata?.name} is invalid:\n  ${r.errors.join('\n  ')}`);
  }
}

test(`helm is ${HELM_VERSION}`, () => {
  const r = helm(['version', '--short']);
  expect(r.code).toBe(0);
  // A `go install` build reports major.minor only (the release ldflags are not set).
  expect(r.out.trim()).toMatch(/^v3\.22(\.0)?\b/);
});

test("helm lint --strict is clean, with the default values and with the raw manifests' values", () => {
  for (const args of [MINIMAL.flatMap((s) => ['--set', s]), ['-f', PARITY_VALUES]]) {
    const r = helm(['lint', '--strict', CHART, ...args]);
    if (r.code !== 0) throw new Error(`helm lint failed:\n${r.out}\n${r.err}`);
    expect(r.out).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(r.out).not.toMatch(/\[(WARNING|ERROR)\]/);
  }
});

test.each([
  ['defaults (token and Redis address given)', [] as string[]],
  [
    'bundled Redis, Redis Cluster with a password, helm labels off',
    ['redis.address=', 'redis.bundled.enabled=true', 'redis.cluster=true', 'redis.password=secret', 'helmLabels=false'],
  ],
  [
    'existing Secrets and ConfigMap, digest, pull secret, plugin token in pluginConfig',
    [
      'serviceTokens.token=',
      'serviceTokens.existingSecret=my-tokens',
      'redis.existingSecret=my-redis',
      'rules.existingConfigMap=my-rules',
      `wasmPlugin.pluginConfig.rateLimitService.token=${TOKEN}`,
      'wasmPlugin.digest=sha256:' + 'a'.repeat(64),
      'wasmPlugin.imagePullSecret=regcred',
    ],
  ],
  [
    'policies and PDB off, extra env, namespace selector',
    [
      'authorizationPolicy.enabled=false',
      'networkPolicy.enabled=false',
      'podDisruptionBudget.enabled=false',
      'extraEnv[0].name=WORKERS',
      'string:extraEnv[0].value=2',
      'networkPolicy.enabled=true',
      'networkPolicy.clientNamespaceSelector.matchLabels.team=llm',
    ],
  ],
  ['the ingress-gateway variant', INGRESS],
  ['the sidecar opt-in', ['wasmPlugin.topology=sidecar']],
])('%s: every object validates against the Kubernetes and Istio schemas', (_name, set) => {
  const objs = render([], [...MINIMAL, ...set]);
  expectValid(objs);
  const kinds = objs.map((o) => o.kind).sort();
  if (set.includes('rules.existingConfigMap=my-rules')) {
    expect(kinds).not.toContain('ConfigMap');
    const dep = objs.find((o) => o.kind === 'Deployment');
    expect(dep.spec.template.spec.volumes.find((x: any) => x.name === 'rules').configMap.name).toBe('my-rules');
    expect(dep.spec.template.spec.containers[0].envFrom[0].secretRef.name).toBe('my-redis');
    expect(objs.filter((o) => o.kind === 'Secret')).toEqual([]);
    const wp = objs.find((o) => o.kind === 'WasmPlugin');
    expect(wp.spec.url).toBe(`oci://registry.example.com/llm-token-ratelimit/plugin@sha256:${'a'.repeat(64)}`);
    expect(wp.spec.pluginConfig.rateLimitService).toEqual({ service: 'llm-token-ratelimit.default.svc.cluster.local', port: 80, token: TOKEN });
  }
  if (set.includes('redis.bundled.enabled=true')) {
    expect(
      objs
        .filter((o) => o.metadata.name === 'llm-token-ratelimit-redis')
        .map((o) => o.kind)
        .sort(),
    ).toEqual(['Deployment', 'Secret', 'Service']);
    const secret = objs.find((o) => o.kind === 'Secret' && o.metadata.name === 'llm-token-ratelimit-redis');
    expect(secret.stringData).toEqual({
      REDIS_ADDRESS: 'llm-token-ratelimit-redis.default.svc.cluster.local:6379',
      REDIS_PASSWORD: 'secret',
      REDIS_CLUSTER: 'true',
    });
  }
  if (set.includes('podDisruptionBudget.enabled=false')) {
    expect(kinds).not.toContain('PodDisruptionBudget');
    expect(kinds).not.toContain('AuthorizationPolicy');
    expect(objs.find((o) => o.kind === 'NetworkPolicy').spec.ingress[0].from[0].namespaceSelector).toEqual({ matchLabels: { team: 'llm' } });
    expect(objs.find((o) => o.kind === 'Deployment').spec.template.spec.containers[0].env).toContainEqual({ name: 'WORKERS', value: '2' });
  }
});

test('the defaults: the token reaches the service (secretKeyRef) and the plugin; the admin port is in neither the Service nor the NetworkPolicy', () => {
  const objs = render([], MINIMAL);
  const dep = objs.find((o) => o.kind === 'Deployment');
  const c = dep.spec.template.spec.containers[0];
  expect(c.env).toContainEqual({ name: 'SERVICE_TOKENS', valueFrom: { secretKeyRef: { name: 'llm-token-ratelimit-token', key: 'token' } } });
  expect(objs.find((o) => o.kind === 'Secret' && o.metadata.name === 'llm-token-ratelimit-token').stringData.token).toBe(TOKEN);
  expect(objs.find((o) => o.kind === 'WasmPlugin').spec.pluginConfig.rateLimitService).toEqual({
    service: 'llm-token-ratelimit.default.svc.cluster.local',
    port: 80,
    token: TOKEN,
  });
  expect(c.ports.map((p: any) => p.containerPort)).toEqual([8080, 9090]);
  expect(objs.find((o) => o.kind === 'Service').spec.ports).toEqual([{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]);
  const np = objs.find((o) => o.kind === 'NetworkPolicy');
  expect(np.spec.ingress.flatMap((i: any) => i.ports.map((p: any) => p.port))).toEqual([8080, 15020]);
  expect(objs.find((o) => o.kind === 'PodDisruptionBudget').spec).toEqual({ minAvailable: 1, selector: { matchLabels: { app: 'llm-token-ratelimit' } } });
  expect(dep.metadata.labels['app.kubernetes.io/managed-by']).toBe('Helm');
});

test("the default topology is the gateway: the WasmPlugin selects the egress gateway's pods in its namespace, and only its identity and pods may call the service", () => {
  const objs = render([], MINIMAL);
  const wp = objs.find((o) => o.kind === 'WasmPlugin');
  expect(wp.metadata.namespace).toBe('llm-egress');
  expect(wp.spec.selector).toEqual({ matchLabels: { istio: 'llm-egress-gateway' } });
  expect(wp.spec.match).toBeUndefined();
  expect(wp.metadata.annotations).toBeUndefined();
  const ap = objs.find((o) => o.kind === 'AuthorizationPolicy');
  expect(ap.metadata.namespace).toBe('default');
  expect(ap.spec.rules.map((r: any) => r.from)).toEqual([[{ source: { principals: ['cluster.local/ns/llm-egress/sa/llm-egress-gateway'] } }]]);
  const np = objs.find((o) => o.kind === 'NetworkPolicy');
  expect(np.spec.ingress[0].from).toEqual([
    { podSelector: { matchLabels: { istio: 'llm-egress-gateway' } }, namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'llm-egress' } } },
  ]);
  // Everything else stays in the release's namespace.
  expect(objs.filter((o) => o.metadata.namespace !== 'default').map((o) => o.kind)).toEqual(['WasmPlugin']);
  expect(helm(['template', 'llmrl', CHART, '--namespace', 'default', ...MINIMAL.flatMap((x) => ['--set', x])]).out).not.toContain('WARNING');
});

test("the ingress-gateway variant: the same, with that gateway's namespace, labels and ServiceAccount", () => {
  const objs = render([], [...MINIMAL, ...INGRESS]);
  const wp = objs.find((o) => o.kind === 'WasmPlugin');
  expect([wp.metadata.namespace, wp.spec.selector]).toEqual(['istio-ingress', { matchLabels: { istio: 'ingressgateway' } }]);
  expect(objs.find((o) => o.kind === 'AuthorizationPolicy').spec.rules[0].from[0].source.principals).toEqual([
    'cluster.local/ns/istio-ingress/sa/istio-ingressgateway',
  ]);
  expect(objs.find((o) => o.kind === 'NetworkPolicy').spec.ingress[0].from[0].namespaceSelector).toEqual({
    matchLabels: { 'kubernetes.io/metadata.name': 'istio-ingress' },
  });
});

test("the sidecar opt-in renders with its warning (annotation and comment), in the release's namespace, admitting the sidecars' identities", () => {
  const r = helm(['template', 'llmrl', CHART, '--namespace', 'default', ...[...MINIMAL, 'wasmPlugin.topology=sidecar'].flatMap((x) => ['--set', x])]);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/# WARNING \(wasmPlugin\.topology: sidecar\):[^\n]*\n#[^\n]*\n# its own proxy \(localhost:15000\/config_dump\)/);
  const objs = render(
    [],
    [...MINIMAL, 'wasmPlugin.topology=sidecar', 'wasmPlugin.sidecar.serviceAccounts[0]=sleep', 'wasmPlugin.sidecar.serviceAccounts[1]=batch'],
  );
  const wp = objs.find((o) => o.kind === 'WasmPlugin');
  expect(wp.metadata.namespace).toBe('default');
  expect(wp.metadata.annotations[SIDECAR_WARNING]).toMatch(
    /can read the service token from their sidecar \(localhost:15000\/config_dump\) and check or charge any key/,
  );
  expect(wp.spec.selector).toEqual({ matchLabels: { app: 'sleep' } });
  expect(wp.spec.match).toEqual([{ mode: 'CLIENT', ports: [{ number: 80 }] }]);
  expect(objs.find((o) => o.kind === 'AuthorizationPolicy').spec.rules[0].from[0].source.principals).toEqual([
    'cluster.local/ns/default/sa/sleep',
    'cluster.local/ns/default/sa/batch',
  ]);
  expect(objs.find((o) => o.kind === 'NetworkPolicy').spec.ingress[0].from).toEqual([{ podSelector: { matchLabels: { app: 'sleep' } } }]);
  // Explicit principals replace the derived ones.
  const own = render([], [...MINIMAL, 'authorizationPolicy.principals[0]=spiffe.example/ns/a/sa/b']);
  expect(own.find((o) => o.kind === 'AuthorizationPolicy').spec.rules[0].from[0].source.principals).toEqual(['spiffe.example/ns/a/sa/b']);
});

test('at ci/istio-manifests-values.yaml the chart renders exactly the objects of istio/manifests (plus its PodDisruptionBudget)', () => {
  const chart = render([PARITY_VALUES]);
  expectValid(chart);
  const raw = ['rate-limit-service.yaml', 'wasmplugin.yaml', 'redis.yaml'].flatMap((f) => loadFile(f).map((l) => l.obj));
  const id = (o: any) => `${o.kind}/${o.metadata.name}`;
  // The rules are JSON text in both: compared as JSON.
  const normal = (o: any) => {
    const c = JSON.parse(JSON.stringify(o));
    if (c.kind === 'ConfigMap') c.data['rate-limit-config.json'] = JSON.parse(c.data['rate-limit-config.json']);
    return c;
  };
  for (const r of raw) {
    const c = chart.find((o) => id(o) === id(r));
    if (!c) throw new Error(`the chart does not render ${id(r)}`);
    expect({ [id(r)]: normal(c) }).toEqual({ [id(r)]: normal(r) });
  }
  expect(chart.filter((o) => !raw.some((r) => id(r) === id(o))).map(id)).toEqual(['PodDisruptionBudget/asm-llm-token-rate-limit-example']);
});

test('bad values stop the rendering, naming the value', () => {
  expect(renderError(['redis.address=x:6379'])).toContain('serviceTokens.token is required');
  expect(renderError([`serviceTokens.token=${TOKEN}`])).toContain('set redis.address, redis.url or redis.existingSecret');
  expect(renderError(['serviceTokens.token=short', 'redis.address=x:6379'])).toContain('serviceTokens.token must be at least 16 characters');
  expect(renderError(['serviceTokens.existingSecret=s', 'redis.address=x:6379'])).toContain("the plugin needs the service's token");
  expect(renderError([...MINIMAL, 'wasmPlugin.topology=sidecar', 'wasmPlugin.sidecar.serviceAccounts=null'])).toContain(
    'authorizationPolicy.principals is empty and wasmPlugin.sidecar.serviceAccounts too',
  );
  expect(renderError([...MINIMAL, 'wasmPlugin.topology=mesh'])).toContain('wasmPlugin.topology must be gateway or sidecar, got "mesh"');
  expect(renderError([...MINIMAL, 'wasmPlugin.gateway.namespace=istio-system'])).toContain(
    'wasmPlugin.gateway.namespace is "istio-system", Istio\'s root namespace',
  );
  expect(renderError([...MINIMAL, 'wasmPlugin.gateway.serviceAccount='])).toContain('wasmPlugin.gateway.serviceAccount is empty');
  expect(renderError([...MINIMAL, 'wasmPlugin.gateway.selector=null'])).toContain('wasmPlugin.gateway.selector.matchLabels is empty');
  expect(renderError([...MINIMAL, 'wasmPlugin.topology=sidecar', 'wasmPlugin.sidecar.selector.matchLabels=null'])).toContain(
    'wasmPlugin.sidecar.selector.matchLabels is empty',
  );
  // The values that used to say where the plugin runs are refused, not silently ignored.
  expect(renderError([...MINIMAL, 'wasmPlugin.selector.matchLabels.app=sleep'])).toContain('wasmPlugin.selector and wasmPlugin.match are no longer read');
});
