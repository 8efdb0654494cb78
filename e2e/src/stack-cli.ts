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
import { envoyArgs, envoyPorts } from './harness/envoy';
import { PLUGIN_WASM, REPO, SERVICE_MAIN, envoyBin, requireBuilt } from './harness/paths';
import { listeningLine } from './harness/ports';
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

/** Why waiting for a detached process is over: it exited (the end of its log), or undefined while it runs. */
const exitedWithLog = (pid: number, log: string) => () =>
  alive(pid) ? undefined : `it exited; the end of ${log}:\n${fs.readFileSync(log, 'utf8').slice(-3000)}`;

/** The "listening" line of a process that took port 0 and logged the port(s) it got. */
async function listening(what: string, pid: number, log: string): Promise<Record<string, unknown>> {
  const exited = exitedWithLog(pid, log);
  return waitFor(
    `${what} to listen`,
    () => {
      const gone = exited();
      if (gone !== undefined) throw new GiveUp(gone);
      return listeningLine(fs.readFileSync(log, 'utf8'));
    },
    20000,
    100,
  );
}

/** ENVOY_PORT: 10000 by default; 0 lets Envoy take a free port (printed in the "Stack is up" line). */
function envoyListenPort(): number {
  const v = process.env.ENVOY_PORT;
  if (v === undefined || v === '') return 10000;
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw new Error(`ENVOY_PORT=${v}: must be a port number 0-65535 (0: any free port)`);
  return Number(v);
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
    throw new Error(`${variable}=${file}: not valid JSON (${(e as Error).message})`, { cause: e });
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
  const templates: string[] = config.rateLimitKeys ?? [];
  const first = templates[0] ?? '';
  for (const t of templates) {
    for (const m of t.matchAll(/{{\s*(hash\()?\s*request\.headers\.([A-Za-z0-9_-]+)\s*\)?\s*}}/g)) {
      const name = m[2].toLowerCase();
      out.headers[name] ??= SAMPLE[name] ?? 'demo';
    }
  }
  const key = first.replace(/{{\s*(hash\()?\s*request\.headers\.([A-Za-z0-9_-]+)\s*\)?\s*}}/g, (_all, hashed, name) => {
    const v = out.headers[name.toLowerCase()];
    return hashed ? crypto.createHash('sha256').update(v).digest('hex').slice(0, 32).toUpperCase() : v;
  });
  out.key = key.includes('{{') ? undefined : key;
  return out;
}

function printCommands(p: Plan, envoyPort: number, envoyAdmin: number, serviceAdmin: number, adminToken: string): void {
  const hdrs = Object.entries(p.headers)
    .map(([k, v]) => ` -H '${k}: ${v}'`)
    .join('');
  const hostHeader = p.host ? ` -H 'Host: ${p.host}'` : '';
  console.log(
    `\n  curl -i http://127.0.0.1:${envoyPort}/v1/chat/completions${hostHeader}${hdrs} \\\n    -H 'Content-Type: application/json' --data '{"model":"qwen-plus","messages":[{"role":"user","content":"hi"}]}'`,
  );
  if (!p.host) {
    // Node's fetch cannot set Host, so this works only when the config matches any host (the default).
    const apiKey = (p.headers.authorization ?? 'Bearer sk-alice').replace(/^Bearer /, '');
    const extra = Object.entries(p.headers).filter(([k]) => k !== 'authorization');
    const defaultHeaders = extra.length ? `,defaultHeaders:${JSON.stringify(Object.fromEntries(extra))}` : '';
    console.log(`\n  # with the openai SDK for Node, from the repository's root (npm ci installed it):`);
    console.log(
      `  node -e 'const OpenAI=require("openai");new OpenAI({apiKey:"${apiKey}",baseURL:"http://127.0.0.1:${envoyPort}/v1"${defaultHeaders},maxRetries:0}).chat.completions.create({model:"qwen-plus",messages:[{role:"user",content:"hi"}]}).then(r=>console.log("usage",JSON.stringify(r.usage)),e=>console.log("error",e.status,e.message))'`,
    );
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
  const listenPort = envoyListenPort();
  fs.mkdirSync(RUN, { recursive: true });
  writeRegistry([...readRegistry().filter((d) => d !== RUN), RUN]);
  const pids: Record<string, number> = {};
  const save = () => fs.writeFileSync(STATE, JSON.stringify(pids, null, 2));
  save();
  try {
    // Every process binds port 0 and says which port it got: none is picked for it in advance.
    let llm: Endpoint;
    if (process.env.LLM_UPSTREAM) {
      llm = parseUpstream(process.env.LLM_UPSTREAM);
    } else {
      pids.mockLlm = detached(RUN, 'mock-llm', process.execPath, [path.join(__dirname, 'mock-llm.js'), '0'], {});
      save();
      llm = { host: '127.0.0.1', port: (await listening('the mock LLM', pids.mockLlm, path.join(RUN, 'mock-llm.log'))).port as number };
    }
    const adminToken = `local-admin-${crypto.randomBytes(12).toString('hex')}`;
    pids.service = detached(RUN, 'service', process.execPath, [SERVICE_MAIN], {
      PORT: '0',
      ADMIN_PORT: '0',
      ADMIN_TOKENS: adminToken,
      RATE_LIMIT_CONFIG_FILE: rulesFile,
      ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
    });
    save();
    const svc = await listening('the service', pids.service, path.join(RUN, 'service.log'));
    const servicePort = svc.port as number;
    const serviceAdminPort = svc.admin_port as number;
    const configFile = path.join(RUN, 'envoy.yaml');
    const adminAddressFile = path.join(RUN, 'envoy-admin-address');
    fs.rmSync(adminAddressFile, { force: true }); // a stale one would name an old port
    fs.writeFileSync(
      configFile,
      stringify(
        envoyConfig({
          listen: { host: '127.0.0.1', port: listenPort },
          admin: { host: '127.0.0.1', port: 0 },
          llm,
          rateLimitService: { host: '127.0.0.1', port: servicePort },
          wasmPath: PLUGIN_WASM,
          pluginConfig,
        }),
      ),
    );
    pids.envoy = detached(RUN, 'envoy', envoyBin(), envoyArgs(configFile, adminAddressFile), {});
    save();
    const { port: envoyPort, adminPort } = await envoyPorts(adminAddressFile, exitedWithLog(pids.envoy, path.join(RUN, 'envoy.log')), 20000);
    console.log(
      `Stack is up (logs in ${path.relative(REPO, RUN) || RUN}/). Envoy :${envoyPort}, admin :${adminPort}, service :${servicePort} (admin :${serviceAdminPort}), LLM ${llm.tls ? 'https' : 'http'}://${llm.host}:${llm.port}`,
    );
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
