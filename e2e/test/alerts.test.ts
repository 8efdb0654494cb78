/**
 * The alerting rules (deploy/grafana/alerts.yaml, and prometheusrule.yaml with the same groups)
 * read only what exists, and the signals they rest on behave as the rules assume, in the real
 * Envoy loading the real plugin:
 * - every metric an alert expression names is exported by Envoy + plugin (/stats/prometheus) or
 *   by the service's admin /metrics (a misspelt or absent name fails the test, naming the alert);
 * - a proxy running the plugin exports the plugin's gauge from the start, before any traffic
 *   (so LLMRateLimitPluginNotLoaded stays quiet on an idle proxy), and a live proxy without the
 *   plugin (what Istio's FAIL_OPEN leaves when the module cannot be fetched) exports
 *   envoy_server_live and none of the plugin's series (so the rule's `unless` selects it);
 * - a plugin whose service cluster Envoy does not know sets the gauge to 1 and counts the
 *   request as failed open (LLMRateLimitServiceUnreachable, LLMRateLimitFailingOpen).
 * Prometheus itself is not run here (no promtool): the rule files' shape is checked below.
 */
import * as fs from 'fs';
import * as path from 'path';
import { parse } from 'yaml';
import { startStack, Stack } from '../src/harness/stack';
import { Envoy, startEnvoy } from '../src/harness/envoy';
import { chat, request } from '../src/harness/http';
import { PLUGIN_CONFIG_FILE, PLUGIN_WASM, REPO, readJson } from '../src/harness/paths';
import { exported, metricNames } from '../src/harness/prometheus';

const RULES = path.join(REPO, 'deploy/grafana/alerts.yaml');
const OPERATOR_RULES = path.join(REPO, 'deploy/grafana/prometheusrule.yaml');
const HOST = 'dashscope.aliyuncs.com';

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const rules = (): Rule[] => parse(fs.readFileSync(RULES, 'utf8')).groups.flatMap((g: { rules: Rule[] }) => g.rules);

const scrapeEnvoy = async (e: Envoy) => exported((await request(e.adminPort, { path: '/stats/prometheus' })).body);

describe('the rule files', () => {
  test('alerts.yaml is a Prometheus rule file: groups of alerting rules with the fields Prometheus accepts', () => {
    const doc = parse(fs.readFileSync(RULES, 'utf8'));
    expect(Object.keys(doc)).toEqual(['groups']);
    const groupNames = new Set<string>();
    const alertNames = new Set<string>();
    for (const g of doc.groups) {
      expect(Object.keys(g).filter((k) => !['name', 'interval', 'rules'].includes(k))).toEqual([]);
      expect(typeof g.name).toBe('string');
      expect(groupNames.has(g.name)).toBe(false);
      groupNames.add(g.name);
      expect(g.rules.length).toBeGreaterThan(0);
      for (const r of g.rules) {
        const where = `rule ${r.alert}`;
        expect([where, Object.keys(r).filter((k) => !['alert', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations'].includes(k))]).toEqual([where, []]);
        expect(r.alert).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
        expect(alertNames.has(r.alert)).toBe(false);
        alertNames.add(r.alert);
        expect(typeof r.expr).toBe('string');
        if (r.for !== undefined) expect([where, r.for]).toEqual([where, expect.stringMatching(/^\d+[smhd]$/)]);
        expect([where, r.labels?.severity]).toEqual([where, expect.stringMatching(/^(critical|warning|info)$/)]);
        expect([where, typeof r.annotations?.summary, typeof r.annotations?.description]).toEqual([where, 'string', 'string']);
        // Brackets balance (outside strings): a cheap guard against a truncated expression.
        let depth = 0;
        for (const c of r.expr.replace(/"[^"]*"/g, '""')) {
          if ('({['.includes(c)) depth++;
          if (')}]'.includes(c)) depth--;
          expect([where, depth >= 0]).toEqual([where, true]);
        }
        expect([where, depth]).toEqual([where, 0]);
        expect([where, metricNames(r.expr).length > 0]).toEqual([where, true]);
      }
    }
  });

  test('prometheusrule.yaml holds exactly the groups of alerts.yaml', () => {
    const op = parse(fs.readFileSync(OPERATOR_RULES, 'utf8'));
    expect(op.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(op.kind).toBe('PrometheusRule');
    expect(op.metadata.name).toBe('llm-token-ratelimit');
    expect(op.spec.groups).toEqual(parse(fs.readFileSync(RULES, 'utf8')).groups);
  });

  test('metricNames reads names out of expressions (and not label values)', () => {
    expect(metricNames('(envoy_server_live{app="llm_ratelimit_x"} == 1) unless on (job, instance) llm_ratelimit_service_unreachable')).toEqual([
      'envoy_server_live',
      'llm_ratelimit_service_unreachable',
    ]);
  });
});

describe('what the rules read, in the real Envoy + plugin', () => {
  let stack: Stack;
  let plain: Envoy;
  let misdirected: Envoy;
  beforeAll(async () => {
    stack = await startStack();
    const llm = { host: '127.0.0.1', port: stack.mock!.port };
    const rateLimitService = { host: '127.0.0.1', port: stack.service.port };
    // What FAIL_OPEN leaves when the module cannot be fetched: the proxy, without the plugin.
    plain = await startEnvoy({ llm, rateLimitService, concurrency: 1 });
    // The plugin calling a cluster Envoy does not know (failOpen: true, the default).
    const pluginConfig = readJson(PLUGIN_CONFIG_FILE) as { rateLimitService: object };
    misdirected = await startEnvoy({
      llm,
      rateLimitService,
      concurrency: 1,
      wasmPath: PLUGIN_WASM,
      pluginConfig: { ...pluginConfig, rateLimitService: { cluster: 'no-such-cluster' } },
    });
  }, 60_000);
  afterAll(async () => {
    await misdirected?.stop();
    await plain?.stop();
    await stack?.stop();
  });

  test('every metric an alert names is exported by Envoy + plugin or the service, before any traffic', async () => {
    const e = await scrapeEnvoy(stack.envoy);
    const svc = await request(stack.service.adminPort, { path: '/metrics' });
    expect(svc.status).toBe(200);
    const s = exported(svc.body);
    const missing: string[] = [];
    for (const r of rules()) {
      for (const name of metricNames(r.expr)) {
        const from = name.startsWith('llmrl_') ? s : e;
        if (!from.samples.has(name) && !from.declared.has(name)) missing.push(`${name} (in ${r.alert})`);
      }
    }
    expect(missing).toEqual([]);
    // The series LLMRateLimitPluginNotLoaded looks for is there on an idle proxy, at 0.
    expect(e.samples.get('llm_ratelimit_service_unreachable')).toBe(0);
    expect(e.samples.get('envoy_server_live')).toBe(1);
  });

  test('a live proxy without the plugin exports envoy_server_live and none of the plugin series', async () => {
    const e = await scrapeEnvoy(plain);
    expect(e.samples.get('envoy_server_live')).toBe(1);
    expect([...e.samples.keys(), ...e.declared].filter((n) => n.startsWith('llm_ratelimit_'))).toEqual([]);
  });

  test('a plugin that cannot reach its service cluster: gauge 1, the request failed open', async () => {
    const r = await chat(misdirected.port, HOST, { 'user-type': 'regular-user' });
    expect(r.status).toBe(200);
    const e = await scrapeEnvoy(misdirected);
    expect(e.samples.get('llm_ratelimit_service_unreachable')).toBe(1);
    expect(e.samples.get('llm_ratelimit_check_failed_open')).toBe(1);
  });
});
