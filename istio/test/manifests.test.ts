// The manifests in istio/manifests: every document parses and validates against its
// published schema (see lib/schemas.ts), and the values the seed depends on are right.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseAllDocuments } from 'yaml';
import { createValidator, Validator } from './lib/schemas';
import { find, loadAll, Loaded, manifestFiles, REPO_DIR } from './lib/manifests';
import { parseRules, settingsFromEnv } from './lib/service-config';

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x));
const readJson = (rel: string) => JSON.parse(fs.readFileSync(path.join(REPO_DIR, rel), 'utf8'));

let v: Validator;
let all: Loaded[];
beforeAll(() => {
  v = createValidator();
  all = loadAll();
});

/** The Deployments whose pods an object with a workload selector (WasmPlugin, EnvoyFilter) applies to, as Istio picks them. */
function selectedDeployments(o: { metadata: any; spec: any }): any[] {
  const sel: Record<string, string> = o.spec.selector?.matchLabels ?? {};
  const everywhere = o.metadata.namespace === 'istio-system'; // Istio's root namespace: every namespace
  return all
    .map((l) => l.obj)
    .filter(
      (d) =>
        d.kind === 'Deployment' &&
        (everywhere || d.metadata.namespace === o.metadata.namespace) &&
        Object.entries(sel).every(([k, val]) => d.spec.template.metadata.labels?.[k] === val),
    );
}

describe('every manifest validates against its schema', () => {
  test('the manifest files are the expected ones', () => {
    expect(manifestFiles()).toEqual([
      'dashscope.yaml',
      'egress-gateway.yaml',
      'llm-provider.yaml',
      'rate-limit-service.yaml',
      'redis.yaml',
      'sleep.yaml',
      'wasmplugin.yaml',
    ]);
  });

  test.each(manifestFiles())('%s', (file) => {
    const docs = all.filter((l) => l.file === file);
    expect(docs.length).toBeGreaterThan(0);
    for (const { obj, index } of docs) {
      const r = v.validate(obj);
      if (!r.valid) throw new Error(`${file} document ${index} (${obj.kind} ${obj.metadata?.name}) is invalid:\n  ${r.errors.join('\n  ')}`);
    }
  });

  test('the service and the client are in default (as in the guide), the gateway and the provider in llm-egress; names are unique per kind', () => {
    const seen = new Set<string>();
    const where: Record<string, string[]> = {};
    for (const { file, obj } of all) {
      const ns = obj.kind === 'Namespace' ? obj.metadata.name : obj.metadata.namespace;
      (where[ns] ??= []).push(file);
      const key = `${obj.kind}/${obj.metadata.name}`;
      expect(seen.has(key)).toBe(false);
      seen.add(key);
    }
    expect(Object.keys(where).sort()).toEqual(['default', 'llm-egress']);
    expect([...new Set(where.default)].sort()).toEqual(['rate-limit-service.yaml', 'redis.yaml', 'sleep.yaml']);
    expect([...new Set(where['llm-egress'])].sort()).toEqual(['dashscope.yaml', 'egress-gateway.yaml', 'llm-provider.yaml', 'wasmplugin.yaml']);
  });
});

test('the schemas are the releases scripts/update-schemas.js pins (regenerate after changing them)', () => {
  const script = fs.readFileSync(path.join(REPO_DIR, 'istio', 'scripts', 'update-schemas.js'), 'utf8');
  const pinned = (mod: string) => new RegExp(`module: '${mod.replace(/\./g, '\\.')}', version: '([^']+)'`).exec(script)?.[1];
  expect(v.sources.kubernetes).toMatch(new RegExp(`^k8s\\.io/kubernetes@${pinned('k8s.io/kubernetes')} \\(h1:`));
  expect(v.sources.istio).toMatch(new RegExp(`^istio\\.io/api@${pinned('istio.io/api')} \\(h1:`));
  for (const kind of [
    'v1 ConfigMap',
    'v1 Namespace',
    'v1 Secret',
    'v1 Service',
    'v1 ServiceAccount',
    'apps/v1 Deployment',
    'extensions.istio.io/v1alpha1 WasmPlugin',
    'networking.istio.io/v1 ServiceEntry',
    'networking.istio.io/v1 DestinationRule',
    'networking.istio.io/v1 Gateway',
    'networking.istio.io/v1 VirtualService',
    'networking.istio.io/v1alpha3 EnvoyFilter',
    'networking.k8s.io/v1 NetworkPolicy',
    'security.istio.io/v1 AuthorizationPolicy',
  ]) {
    expect(v.kinds()).toContain(kind);
  }
});

describe('the validator rejects what the API server would reject', () => {
  const deployment = () => clone(find(all, 'Deployment', 'asm-llm-token-rate-limit-example'));
  const wasm = () => clone(find(all, 'WasmPlugin', 'llm-token-ratelimit'));

  test('a misspelt field in a Deployment', () => {
    const d = deployment();
    d.spec.replica = d.spec.replicas;
    delete d.spec.replicas;
    const r = v.validate(d);
    expect(r.valid).toBe(false);
    expect(r.errors.join()).toMatch(/replica\b/);
  });

  test('a misspelt field deep in a pod template (container securityContext)', () => {
    const d = deployment();
    d.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem = true;
    expect(v.validate(d).valid).toBe(false);
  });

  test('a wrong type (replicas as a string) and a missing required field (container image name)', () => {
    const d = deployment();
    d.spec.replicas = '2';
    expect(v.validate(d).valid).toBe(false);
    const e = deployment();
    delete e.spec.template.spec.containers[0].name;
    expect(v.validate(e).valid).toBe(false);
  });

  test('duplicate keys in a list-map (two containers named alike)', () => {
    const d = deployment();
    d.spec.template.spec.containers.push(clone(d.spec.template.spec.containers[0]));
    const r = v.validate(d);
    expect(r.valid).toBe(false);
    expect(r.errors.join()).toMatch(/duplicate/);
  });

  test('WasmPlugin: unknown enum value, unknown field, missing url, bad port, wrong apiVersion', () => {
    const a = wasm();
    a.spec.failStrategy = 'FAIL_OPENN';
    expect(v.validate(a).valid).toBe(false);
    const b = wasm();
    b.spec.phaze = 'STATS';
    expect(v.validate(b).errors.join()).toMatch(/phaze/);
    const c = wasm();
    delete c.spec.url;
    expect(v.validate(c).valid).toBe(false);
    const d = wasm();
    d.spec.match = [{ mode: 'CLIENT', ports: [{ number: 70000 }] }];
    expect(v.validate(d).valid).toBe(false);
    const e = wasm();
    e.apiVersion = 'extensions.istio.io/v1';
    expect(v.validate(e).valid).toBe(false);
  });

  test('WasmPlugin: pluginConfig is free-form (x-kubernetes-preserve-unknown-fields), as in Istio', () => {
    const a = wasm();
    a.spec.pluginConfig.anything = { nested: [1, 2] };
    expect(v.validate(a)).toEqual({ valid: true, errors: [] });
  });

  test('AuthorizationPolicy and NetworkPolicy: misspelt fields and bad enums', () => {
    const ap = clone(find(all, 'AuthorizationPolicy', 'asm-llm-token-rate-limit-example'));
    ap.spec.action = 'ALLOWW';
    expect(v.validate(ap).valid).toBe(false);
    const ap2 = clone(find(all, 'AuthorizationPolicy', 'asm-llm-token-rate-limit-example'));
    ap2.spec.rules[0].from[0].source.principal = ['x'];
    expect(v.validate(ap2).valid).toBe(false);
    const np = clone(find(all, 'NetworkPolicy', 'asm-llm-token-rate-limit-example'));
    np.spec.ingress[0].form = np.spec.ingress[0].from;
    expect(v.validate(np).valid).toBe(false);
  });

  test('ServiceEntry and DestinationRule: misspelt fields and bad enums', () => {
    const se = clone(find(all, 'ServiceEntry', 'dashscope'));
    se.spec.resolution = 'DNS_ROUND_ROBINN';
    expect(v.validate(se).valid).toBe(false);
    const dr = clone(find(all, 'DestinationRule', 'dashscope'));
    dr.spec.trafficPolicy.portLevelSettings[0].tls.snii = 'x';
    expect(v.validate(dr).valid).toBe(false);
  });

  test('Gateway and VirtualService: misspelt fields and bad enums', () => {
    const gw = clone(find(all, 'Gateway', 'llm-egress-gateway'));
    gw.spec.servers[0].tls.mode = 'ISTIO_MUTUALL';
    expect(v.validate(gw).valid).toBe(false);
    const gw2 = clone(find(all, 'Gateway', 'llm-egress-gateway'));
    gw2.spec.servers[0].host = gw2.spec.servers[0].hosts;
    expect(v.validate(gw2).valid).toBe(false);
    const vs = clone(find(all, 'VirtualService', 'dashscope-through-egress-gateway'));
    vs.spec.http[0].route[0].destination.hots = 'x';
    expect(v.validate(vs).valid).toBe(false);
    const vs2 = clone(find(all, 'VirtualService', 'dashscope-through-egress-gateway'));
    vs2.spec.http[0].match[0].port = '80';
    expect(v.validate(vs2).valid).toBe(false);
  });

  test('metadata is checked too, and unknown kinds are refused', () => {
    const s = clone(find(all, 'Service', 'asm-llm-token-rate-limit-example'));
    s.metadata.label = { app: 'x' };
    expect(v.validate(s).valid).toBe(false);
    expect(v.validate({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } }).errors.join()).toMatch(/no schema/);
  });
});

describe('the seed works unchanged', () => {
  test("WasmPlugin is the seed's, with our image, moved from the client's sidecar to the egress gateway", () => {
    const w = find(all, 'WasmPlugin', 'llm-token-ratelimit');
    const { url, pluginConfig, ...rest } = w.spec;
    expect(rest).toEqual({
      failStrategy: 'FAIL_OPEN',
      imagePullPolicy: 'IfNotPresent',
      selector: { matchLabels: { istio: 'llm-egress-gateway' } },
      phase: 'STATS',
      priority: 10,
    });
    expect(w.metadata.namespace).toBe('llm-egress');
    expect(url).toMatch(/^oci:\/\/.+\/plugin:[\w.-]+$/);
    expect(pluginConfig).toBeDefined();
  });

  test('pluginConfig is the very object the e2e Envoy runs (e2e/config/plugin-config.json), plus the service token', () => {
    const w = clone(find(all, 'WasmPlugin', 'llm-token-ratelimit'));
    const token = w.spec.pluginConfig.rateLimitService.token;
    delete w.spec.pluginConfig.rateLimitService.token;
    expect(w.spec.pluginConfig).toStrictEqual(readJson('e2e/config/plugin-config.json'));
    // The token is the Secret's, the one the service's SERVICE_TOKENS comes from.
    expect(token).toBe(find(all, 'Secret', 'asm-llm-token-rate-limit-example-token').stringData.token);
  });

  test('rateLimitService names our Service (FQDN and port)', () => {
    const { service, port } = find(all, 'WasmPlugin', 'llm-token-ratelimit').spec.pluginConfig.rateLimitService;
    const svc = find(all, 'Service', 'asm-llm-token-rate-limit-example');
    expect(service).toBe(`${svc.metadata.name}.${svc.metadata.namespace}.svc.cluster.local`);
    expect(svc.spec.ports.map((p: any) => p.port)).toEqual([port]);
  });

  // The attack (issue 23, point 7): an application container reads its own proxy's
  // configuration (localhost:15000/config_dump), token included. So no pod that runs an
  // application may be selected: only gateway pods, which hold nothing but the proxy.
  test("no application pod gets the plugin (and its token): the WasmPlugin selects only the gateway's pods", () => {
    const w = find(all, 'WasmPlugin', 'llm-token-ratelimit');
    const selected = selectedDeployments(w);
    expect(selected.map((d) => `${d.metadata.namespace}/${d.metadata.name}`)).toEqual(['llm-egress/llm-egress-gateway']);
    for (const d of selected) {
      const pod = d.spec.template;
      expect(pod.metadata.annotations['inject.istio.io/templates']).toBe('gateway');
      expect(pod.spec.containers.map((c: any) => [c.name, c.image])).toEqual([['istio-proxy', 'auto']]);
      expect(pod.spec.initContainers).toBeUndefined();
    }
    // Not in Istio's root namespace, where a selector picks pods of every namespace.
    expect(w.metadata.namespace).not.toBe('istio-system');
    // What the check above would have caught: the seed's selector picks the sleep client.
    expect(
      selectedDeployments({ ...w, metadata: { ...w.metadata, namespace: 'default' }, spec: { ...w.spec, selector: { matchLabels: { app: 'sleep' } } } }).map(
        (d) => d.metadata.name,
      ),
    ).toEqual(['sleep']);
  });

  test('the API key (llm-provider.yaml) is added in the gateway only, not in any application pod', () => {
    const ef = find(all, 'EnvoyFilter', 'dashscope-llm-provider');
    expect(ef.metadata.namespace).toBe('llm-egress');
    expect(ef.spec.configPatches.map((p: any) => p.match.context)).toEqual(['GATEWAY']);
    const selected = selectedDeployments({ metadata: ef.metadata, spec: { selector: { matchLabels: ef.spec.workloadSelector.labels } } });
    expect(selected.map((d) => d.metadata.name)).toEqual(['llm-egress-gateway']);
    // No listener port: a gateway listens on its container port (8443), not the Service's (443).
    expect(ef.spec.configPatches[0].match.listener.portNumber).toBeUndefined();
  });

  test("dashscope.aliyuncs.com: plain HTTP on port 80 (the seed's curl), TLS originated to 443", () => {
    const host = find(all, 'WasmPlugin', 'llm-token-ratelimit').spec.pluginConfig.matches[0].host.exact;
    const se = find(all, 'ServiceEntry', 'dashscope');
    expect(se.spec.hosts).toEqual([host]);
    expect(se.spec.location).toBe('MESH_EXTERNAL');
    const p80 = se.spec.ports.find((p: any) => p.number === 80);
    expect(p80).toMatchObject({ protocol: 'HTTP', targetPort: 443 });
    const dr = find(all, 'DestinationRule', 'dashscope');
    expect(dr.spec.host).toBe(host);
    expect(dr.spec.trafficPolicy.portLevelSettings).toEqual([{ port: { number: 80 }, tls: { mode: 'SIMPLE', sni: host } }]);
  });
});

describe("the egress gateway (egress-gateway.yaml): the mesh's calls to the provider go through the proxy that runs the plugin", () => {
  const host = () => find(all, 'WasmPlugin', 'llm-token-ratelimit').spec.pluginConfig.matches[0].host.exact;
  const gwDeployment = () => find(all, 'Deployment', 'llm-egress-gateway');
  const gwService = () => find(all, 'Service', 'llm-egress-gateway');
  const fqdn = (o: any) => `${o.metadata.name}.${o.metadata.namespace}.svc.cluster.local`;

  test("the gateway's Service selects its pods; its port leads to an unprivileged container port", () => {
    const svc = gwService();
    expect(svc.spec.type).toBe('ClusterIP');
    expect(gwDeployment().spec.template.metadata.labels).toMatchObject(svc.spec.selector);
    expect(svc.spec.ports).toEqual([{ name: 'https', port: 443, targetPort: 8443, protocol: 'TCP' }]);
    const pod = gwDeployment().spec.template;
    expect(pod.spec.serviceAccountName).toBe('llm-egress-gateway');
    expect(pod.spec.containers[0].securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 1337,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
  });

  test("sidecars reach the gateway with Istio mTLS (the gateway knows the caller), for the provider's host only, bound to VirtualServices of its own namespace", () => {
    const gw = find(all, 'Gateway', 'llm-egress-gateway');
    expect(gwDeployment().spec.template.metadata.labels).toMatchObject(gw.spec.selector);
    expect(gw.spec.servers).toEqual([{ port: { number: 443, name: 'https-llm', protocol: 'HTTPS' }, hosts: [`./${host()}`], tls: { mode: 'ISTIO_MUTUAL' } }]);
    const dr = find(all, 'DestinationRule', 'llm-egress-gateway');
    expect(dr.spec.host).toBe(fqdn(gwService()));
    expect(dr.spec.trafficPolicy.portLevelSettings).toEqual([{ port: { number: 443 }, tls: { mode: 'ISTIO_MUTUAL', sni: host() } }]);
  });

  test("the VirtualService sends the seed's http://dashscope.aliyuncs.com to the gateway, and the gateway's to the provider's TLS-originating port", () => {
    const vs = find(all, 'VirtualService', 'dashscope-through-egress-gateway');
    const gw = find(all, 'Gateway', 'llm-egress-gateway');
    expect(vs.metadata.namespace).toBe(gw.metadata.namespace); // `./` hosts bind only these
    expect(vs.spec.hosts).toEqual([host()]);
    expect([...vs.spec.gateways].sort()).toEqual(['llm-egress-gateway', 'mesh']);
    const se = find(all, 'ServiceEntry', 'dashscope');
    const httpPort = se.spec.ports.find((p: any) => p.protocol === 'HTTP').number;
    expect(httpPort).toBe(80);
    const [fromMesh, fromGateway] = vs.spec.http;
    expect(fromMesh.match).toEqual([{ gateways: ['mesh'], port: httpPort }]);
    expect(fromMesh.route).toEqual([{ destination: { host: fqdn(gwService()), port: { number: gwService().spec.ports[0].port } } }]);
    expect(fromGateway.match).toEqual([{ gateways: [gw.metadata.name], port: gw.spec.servers[0].port.number }]);
    // Port 80 of the ServiceEntry: its DestinationRule opens TLS to 443 (test above).
    expect(fromGateway.route).toEqual([{ destination: { host: host(), port: { number: httpPort } } }]);
    expect(vs.spec.http).toHaveLength(2);
  });
});

describe('the rate-limit service', () => {
  const dep = () => find(all, 'Deployment', 'asm-llm-token-rate-limit-example');
  const container = () => dep().spec.template.spec.containers[0];

  test("Service port 80 reaches the container port 8080, and selects the Deployment's pods", () => {
    const svc = find(all, 'Service', 'asm-llm-token-rate-limit-example');
    const [p] = svc.spec.ports;
    const target = container().ports.find((cp: any) => cp.name === p.targetPort || cp.containerPort === p.targetPort);
    expect(p.port).toBe(80);
    expect(target.containerPort).toBe(8080);
    expect(dep().spec.template.metadata.labels).toMatchObject(svc.spec.selector);
    expect(dep().spec.selector.matchLabels).toEqual(svc.spec.selector);
  });

  test('2 replicas, probes on /healthz and /readyz, resources', () => {
    expect(dep().spec.replicas).toBe(2);
    const c = container();
    expect(c.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
    expect(c.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
    expect(Object.keys(c.resources.requests).sort()).toEqual(['cpu', 'memory']);
    expect(Object.keys(c.resources.limits).sort()).toEqual(['cpu', 'memory']);
  });

  test.each(['asm-llm-token-rate-limit-example', 'redis', 'sleep'])('%s runs non-root with a read-only root filesystem', (name) => {
    const spec = find(all, 'Deployment', name).spec.template.spec;
    expect(spec.securityContext.runAsNonRoot).toBe(true);
    expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
    for (const c of spec.containers) {
      expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    }
  });

  // The environment the container gets: env plus envFrom of the Secret's stringData.
  function containerEnv(): Record<string, string> {
    const c = container();
    const env: Record<string, string> = {};
    for (const ref of c.envFrom || []) {
      const s = find(all, 'Secret', ref.secretRef.name);
      Object.assign(env, s.stringData || {});
    }
    for (const e of c.env || []) {
      const ref = e.valueFrom?.secretKeyRef;
      env[e.name] = ref ? find(all, 'Secret', ref.name).stringData[ref.key] : e.value;
    }
    return env;
  }

  test('tokens from the Secret (secretKeyRef): the service requires them; admin port 9090 only in the pod, not in the Service', () => {
    const settings = settingsFromEnv(containerEnv());
    const secret = find(all, 'Secret', 'asm-llm-token-rate-limit-example-token');
    expect(settings.tokens).toEqual([secret.stringData.token]);
    expect(settings.adminTokens).toEqual([secret.stringData['admin-token']]);
    expect(settings.adminPort).toBe(9090);
    expect(container().ports.find((p: any) => p.name === 'admin').containerPort).toBe(9090);
    const svc = find(all, 'Service', 'asm-llm-token-rate-limit-example');
    expect(svc.spec.ports.map((p: any) => p.targetPort)).toEqual(['http']);
    for (const p of svc.spec.ports) expect([p.port, p.targetPort]).not.toContain(9090);
  });

  test('AuthorizationPolicy: only the identities of the workloads running the plugin, only the two protocol routes', () => {
    const ap = find(all, 'AuthorizationPolicy', 'asm-llm-token-rate-limit-example');
    expect(ap.spec.selector.matchLabels).toEqual(find(all, 'Service', 'asm-llm-token-rate-limit-example').spec.selector);
    expect(ap.spec.action).toBe('ALLOW');
    // Every Deployment the WasmPlugin selects is allowed, by its ServiceAccount, and nothing else.
    const clients = selectedDeployments(find(all, 'WasmPlugin', 'llm-token-ratelimit'));
    expect(clients.length).toBeGreaterThan(0);
    const principals = clients.map((d) => `cluster.local/ns/${d.metadata.namespace}/sa/${d.spec.template.spec.serviceAccountName}`);
    expect(principals).toEqual(['cluster.local/ns/llm-egress/sa/llm-egress-gateway']);
    expect(find(all, 'ServiceAccount', 'llm-egress-gateway').metadata.namespace).toBe('llm-egress');
    expect(ap.spec.rules).toHaveLength(1);
    expect(ap.spec.rules[0].from).toEqual([{ source: { principals } }]);
    expect(ap.spec.rules[0].to).toEqual([
      { operation: { ports: ['8080'], methods: ['GET'], paths: ['/ratelimit'] } },
      { operation: { ports: ['8080'], methods: ['POST'], paths: ['/update_ratelimit_record'] } },
    ]);
  });

  test("NetworkPolicy: port 8080 only from the plugin's pods (the gateway's, in its namespace), the probe port, never the admin port", () => {
    const np = find(all, 'NetworkPolicy', 'asm-llm-token-rate-limit-example');
    expect(np.spec.podSelector.matchLabels).toEqual(find(all, 'Service', 'asm-llm-token-rate-limit-example').spec.selector);
    expect(np.spec.policyTypes).toEqual(['Ingress']);
    const w = find(all, 'WasmPlugin', 'llm-token-ratelimit');
    expect(np.spec.ingress).toEqual([
      {
        from: [
          {
            podSelector: { matchLabels: w.spec.selector.matchLabels },
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': w.metadata.namespace } },
          },
        ],
        ports: [{ protocol: 'TCP', port: 8080 }],
      },
      { ports: [{ protocol: 'TCP', port: 15020 }] },
    ]);
    expect(JSON.stringify(np.spec)).not.toContain('9090');
  });

  test('the service accepts the environment it gets: rules from a file, Redis from the Secret', () => {
    const settings = settingsFromEnv(containerEnv());
    expect(settings.port).toBe(8080);
    expect(settings.configText).toBeUndefined();
    expect(settings.redis?.urls).toEqual(['redis://redis.default.svc.cluster.local:6379']);
    const redisSvc = find(all, 'Service', 'redis');
    expect(redisSvc.spec.ports[0].port).toBe(6379);
  });

  test('RATE_LIMIT_CONFIG_FILE is a key of the ConfigMap, mounted as a directory so that updates arrive', () => {
    const file: string = containerEnv().RATE_LIMIT_CONFIG_FILE;
    const mount = container().volumeMounts.find((m: any) => file.startsWith(m.mountPath + '/'));
    expect(mount).toBeDefined();
    expect(mount.subPath).toBeUndefined(); // subPath mounts never see ConfigMap updates
    const vol = dep().spec.template.spec.volumes.find((x: any) => x.name === mount.name);
    const cm = find(all, 'ConfigMap', vol.configMap.name);
    expect(Object.keys(cm.data)).toContain(file.slice(mount.mountPath.length + 1));
  });

  test("the rules pass the service's own validation and equal the local e2e rules", () => {
    const cm = find(all, 'ConfigMap', 'asm-llm-token-rate-limit-example-rules');
    const text: string = cm.data['rate-limit-config.json'];
    const rules = parseRules(text, 'ConfigMap');
    expect(rules.map((r) => r.regexSource)).toEqual(['^regular-user', '^subscriber']);
    expect(rules.find((r) => r.regex.test('subscriber'))?.maxTokens).toBe(1000);
    expect(rules.find((r) => r.regex.test('regular-user'))?.maxTokens).toBe(200);
    expect(JSON.parse(text)).toStrictEqual(readJson('e2e/config/rate-limit-config.json'));
  });

  test("the service's validation does reject a broken rule (so the check above means something)", () => {
    const broken = JSON.stringify([{ rate_limit_key_regex: '^x', redis_expired_seconds: 1, fill_interval_second: 1, tokens_per_fill: 1, max_tokenz: 1 }]);
    expect(() => parseRules(broken, 'ConfigMap')).toThrow();
  });
});

describe('make render', () => {
  test('puts your registry and key in, and the result still validates', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'istio-render-'));
    try {
      execFileSync('make', ['-s', '-C', path.join(REPO_DIR, 'istio'), 'render', 'REGISTRY=reg.test:5000/team', 'TAG=9.9.9', `RENDER_DIR=${out}`], {
        env: { ...process.env, DASHSCOPE_API_KEY: 'sk-abc123' },
        stdio: 'pipe',
      });
      expect(fs.readdirSync(out).sort()).toEqual(manifestFiles());
      const objs = fs.readdirSync(out).flatMap((f) => parseAllDocuments(fs.readFileSync(path.join(out, f), 'utf8')).map((d) => d.toJS()));
      for (const o of objs) expect(v.validate(o)).toEqual({ valid: true, errors: [] });
      const text = fs
        .readdirSync(out)
        .map((f) => fs.readFileSync(path.join(out, f), 'utf8'))
        .join('\n');
      expect(text).not.toMatch(/registry\.example\.com/);
      expect(objs.find((o) => o.kind === 'WasmPlugin').spec.url).toBe('oci://reg.test:5000/team/llm-token-ratelimit/plugin:9.9.9');
      expect(objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'asm-llm-token-rate-limit-example').spec.template.spec.containers[0].image).toBe(
        'reg.test:5000/team/llm-token-ratelimit/service:9.9.9',
      );
      expect(text).toMatch(/local API_KEY = "sk-abc123"/);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
  });
});
