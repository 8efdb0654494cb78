/**
 * `make up` / `make down`: the local stack left running, to point a client at.
 * up: mock LLM (or LLM_UPSTREAM), the service (embedded store, or REDIS_URL) and Envoy with the
 * plugin, each a detached process logging to <run dir>/*.log; their PIDs go to <run dir>/stack.json.
 * PLUGIN_CONFIG and RULES choose the plugin's configuration and the service's rules (files);
 * by default, the ready-made pair for an OpenAI-compatible upstream in e2e/config/openai/.
 * down: stops every stack `up` started (each run dir is listed in a registry), or only the one
 * in STACK_RUN_DIR when that is set.
 */
import { spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { stringify } from 'yaml';
import { envoyConfig, Endpoint } from './harness/envoy-config';
import { PLUGIN_WASM, REPO, SERVICE_MAIN, envoyBin, requireBuilt } from './harness/paths';
import { freePort } from './harness/ports';
import { request } from './harness/http';
import { alive, waitFor, GiveUp } from './harness/process';

const DEFAULT_RUN = path.join(REPO, '.run');
// STACK_RUN_DIR keeps a stack apart from another one (tests, a second stack).
const RUN = process.env.STACK_RUN_DIR || DEFAULT_RUN;
const STATE = path.join(RUN, 'stack.json');
// Every run dir a stack was started in, so that `make down` finds them all.
const REGISTRY = process.env.STACK_REGISTRY || path.join(DEFAULT_RUN, 'stacks.json');
const DEFAULT_PLUGIN_CONFIG = path.join(REPO, 'e2e/config/openai/plugin-config.json');
const DEFAULT_RULES = path.join(REPO, 'e2e/config/openai/rate-limit-config.json');

function detached(dir: string, name: string, cmd: string, args: string[], env: Record<string, string>): number {
  const log = fs.openSync(path.join(dir, `${name}.log`), 'w');
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log], env: { PATH: process.env.PATH ?? '', ...env } });
  child.unref();
  if (!child.pid) throw new Error(`could not start ${name}`);
  return child.pid;
}

/** Waits until :port answers `p`; gives up at once (with its log) if the process died. */
async function answers(port: number, p: string, pid: number, log: string) {
  return waitFor(`:${port}${p}`, async () => {
    if (!alive(pid)) throw new GiveUp(`it exited; the end of ${log}:\n${fs.readFileSync(log, 'utf8').slice(-3000)}`);
    return (await request(port, { path: p, timeoutMs: 500 }).catch(() => ({ status: 599 }))).status < 500 ? true : undefined;
  }, 20000, 100);
}

/** LLM_UPSTREAM: http://host:port or https://host[:port]. */
function parseUpstream(u: string): Endpoint {
  const url = new URL(u);
  const tls = url.protocol === 'https:';
  if (!tls && url.protocol !== 'http:') throw new Error(`LLM_UPSTREAM must be an http:// or https:// URL, got ${JSON.stringify(u)}`);
  return { host: url.hostname, port: Number(url.port || (tls ? 443 : 80)), tls };
}

/** A JSON file named by an environment variable, with an error that names both. */
function jsonFile(variable: string, file: string): unknown {
  if (!fs.existsSync(file)) throw new Error(`${variable}=${file}: no such file`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${variable}=${file}: not valid JSON (${(e as Error).message})`);
  }
}

function readRegistry(): string[] {
  try {
    return JSON.parse(fs.readFileSync(REGISTRY, 'utf8'));
  } catch {
    return [];
  }
}

function writeRegistry(dirs: string[]): void {
  fs.mkdirSync(path.dirname(REGISTRY), { recursive: true });
  if (dirs.length) fs.writeFileSync(REGISTRY, JSON.stringify(dirs, null, 2));
  else fs.rmSync(REGISTRY, { force: true });
}

// Sample values the printed commands send for the headers the key templates read.
const SAMPLE: Record<string, string> = { authorization: 'Bearer sk-alice', 'x-user': 'alice', 'user-type': 'regular-user' };

interface Plan {
  /** Host header curl must send (the first exact host rule), if the config matches hosts. */
  host?: string;
  headers: Record<string, string>;
  /** The key the sample request is limited by, when the templates only read headers. */
  key?: string;
}

/** What a sample request must carry for this plugin config, and the key it gets. */
function plan(config: any): Plan {
  const hostRule = (config.matches ?? []).find((m: any) => m.host);
  const out: Plan = { host: hostRule?.host?.exact, headers: {} };
  let key: string | undefined = '';
  const templates: string[] = config.rateLimitKeys ?? [];
  const first = templates[0] ?? '';
  for (const t of templates) {
    for (const m of t.matchAll(/{{\s*(hash\()?\s*request\.headers\.([A-Za-z0-9_-]+)\s*\)?\s*}}/g)) {
      const name = m[2].toLowerCase();
      out.headers[name] ??= SAMPLE[name] ?? 'demo';
    }
  }
  key = first.replace(/{{\s*(hash\()?\s*request\.headers\.([A-Za-z0-9_-]+)\s*\)?\s*}}/g, (_all, hashed, name) => {
    const v = out.headers[name.toLowerCase()];
    return hashed ? crypto.createHash('sha256').update(v).digest('hex').slice(0, 32).toUpperCase() : v;
  });
  out.key = key.includes('{{') ? undefined : key;
  return out;
}

function printCommands(p: Plan, envoyPort: number, envoyAdmin: number, serviceAdmin: number, adminToken: string): void {
  const hdrs = Object.entries(p.headers).map(([k, v]) => ` -H '${k}: ${v}'`).join('');
  const hostHeader = p.host ? ` -H 'Host: ${p.host}'` : '';
  console.log(`\n  curl -i http://127.0.0.1:${envoyPort}/v1/chat/completions${hostHeader}${hdrs} \\\n    -H 'Content-Type: application/json' --data '{"model":"qwen-plus","messages":[{"role":"user","content":"hi"}]}'`);
  if (!p.host) {
    // Node's fetch cannot set Host, so this works only when the config matches any host (the default).
    const apiKey = (p.headers.authorization ?? 'Bearer sk-alice').replace(/^Bearer /, '');
    const extra = Object.entries(p.headers).filter(([k]) => k !== 'authorization');
    const defaultHeaders = extra.length ? `,defaultHeaders:${JSON.stringify(Object.fromEntries(extra))}` : '';
    console.log(`\n  # with the openai SDK for Node, from the repository's root (npm ci installed it):`);
    console.log(`  node -e 'const OpenAI=require("openai");new OpenAI({apiKey:"${apiKey}",baseURL:"http://127.0.0.1:${envoyPort}/v1"${defaultHeaders},maxRetries:0}).chat.completions.create({model:"qwen-plus",messages:[{role:"user",content:"hi"}]}).then(r=>console.log("usage",JSON.stringify(r.usage)),e=>console.log("error",e.status,e.message))'`);
  } else {
    console.log(`\n  (the config matches Host ${p.host}: clients that cannot set Host, like the openai SDK for Node, need a config that matches any host)`);
  }
  const bucket = p.key ? encodeURIComponent(p.key) : '<key>';
  console.log(`\n  curl -H 'Authorization: Bearer ${adminToken}' http://127.0.0.1:${serviceAdmin}/buckets/${bucket}  # the bucket's balance`);
  console.log(`  curl http://127.0.0.1:${envoyAdmin}/stats?filter=llm_ratelimit  # the plugin's counters`);
}

async function up() {
  if (fs.existsSync(STATE)) throw new Error(`a stack is already up (${STATE}): run \`make down\` first`);
  requireBuilt(PLUGIN_WASM, 'make plugin');
  requireBuilt(SERVICE_MAIN, 'make service');
  const pluginConfigFile = path.resolve(process.env.PLUGIN_CONFIG || DEFAULT_PLUGIN_CONFIG);
  const rulesFile = path.resolve(process.env.RULES || DEFAULT_RULES);
  const pluginConfig = jsonFile('PLUGIN_CONFIG', pluginConfigFile);
  jsonFile('RULES', rulesFile); // the service validates it (and says which rule is wrong)
  fs.mkdirSync(RUN, { recursive: true });
  writeRegistry([...readRegistry().filter((d) => d !== RUN), RUN]);
  const pids: Record<string, number> = {};
  const save = () => fs.writeFileSync(STATE, JSON.stringify(pids, null, 2));
  save();
  try {
    let llm: Endpoint;
    if (process.env.LLM_UPSTREAM) {
      llm = parseUpstream(process.env.LLM_UPSTREAM);
    } else {
      llm = { host: '127.0.0.1', port: await freePort() };
      pids.mockLlm = detached(RUN, 'mock-llm', process.execPath, [path.join(__dirname, 'mock-llm.js'), String(llm.port)], {});
      save();
      await answers(llm.port, '/__mock/requests', pids.mockLlm, path.join(RUN, 'mock-llm.log'));
    }
    const servicePort = await freePort();
    const serviceAdminPort = await freePort();
    const adminToken = `local-admin-${crypto.randomBytes(12).toString('hex')}`;
    pids.service = detached(RUN, 'service', process.execPath, [SERVICE_MAIN], {
      PORT: String(servicePort),
      ADMIN_PORT: String(serviceAdminPort),
      ADMIN_TOKENS: adminToken,
      RATE_LIMIT_CONFIG_FILE: rulesFile,
      ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
    });
    save();
    await answers(serviceAdminPort, '/healthz', pids.service, path.join(RUN, 'service.log'));
    const envoyPort = Number(process.env.ENVOY_PORT || 10000);
    const adminPort = await freePort();
    const configFile = path.join(RUN, 'envoy.yaml');
    fs.writeFileSync(configFile, stringify(envoyConfig({
      listen: { host: '127.0.0.1', port: envoyPort },
      admin: { host: '127.0.0.1', port: adminPort },
      llm,
      rateLimitService: { host: '127.0.0.1', port: servicePort },
      wasmPath: PLUGIN_WASM,
      pluginConfig,
    })));
    pids.envoy = detached(RUN, 'envoy', envoyBin(), ['-c', configFile, '--disable-hot-restart', '-l', 'warning', '--component-log-level', 'wasm:info'], {});
    save();
    await answers(adminPort, '/ready', pids.envoy, path.join(RUN, 'envoy.log'));
    console.log(`Stack is up (logs in ${path.relative(REPO, RUN) || RUN}/). Envoy :${envoyPort}, admin :${adminPort}, service :${servicePort} (admin :${serviceAdminPort}), LLM ${llm.tls ? 'https' : 'http'}://${llm.host}:${llm.port}`);
    console.log(`pluginConfig: ${path.relative(REPO, pluginConfigFile)}, rules: ${path.relative(REPO, rulesFile)}`);
    printCommands(plan(pluginConfig), envoyPort, adminPort, serviceAdminPort, adminToken);
    console.log('\nStop it with: make down');
  } catch (e) {
    await downDir(RUN);
    throw e;
  }
}

/** Stops the stack of one run dir; false if none was up there. */
async function downDir(dir: string): Promise<boolean> {
  const state = path.join(dir, 'stack.json');
  writeRegistry(readRegistry().filter((d) => d !== dir));
  if (!fs.existsSync(state)) return false;
  const pids: Record<string, number> = JSON.parse(fs.readFileSync(state, 'utf8'));
  for (const [name, pid] of Object.entries(pids).reverse()) {
    if (!alive(pid)) {
      console.log(`${name} (pid ${pid}) was not running`);
      continue;
    }
    process.kill(pid, 'SIGTERM');
    await waitFor(`${name} to exit`, () => (alive(pid) ? undefined : true), 5000).catch(() => process.kill(pid, 'SIGKILL'));
    console.log(`stopped ${name} (pid ${pid})`);
  }
  fs.unlinkSync(state);
  return true;
}

async function down() {
  const dirs = process.env.STACK_RUN_DIR ? [RUN] : [...new Set([...readRegistry(), DEFAULT_RUN])];
  let any = false;
  for (const d of dirs) if (await downDir(d)) any = true;
  if (!any) console.log('no stack is up');
}

const cmd = process.argv[2];
(cmd === 'up' ? up() : cmd === 'down' ? down() : Promise.reject(new Error('usage: stack-cli.js up|down'))).catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
