/**
 * `make up` / `make down`: the local stack left running for manual curl.
 * up: mock LLM (or LLM_UPSTREAM), the service (embedded store, or REDIS_URL) and Envoy with the
 * plugin, each a detached process logging to .run/*.log; their PIDs go to .run/stack.json.
 * down: stops those PIDs.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { stringify } from 'yaml';
import { envoyConfig, Endpoint } from './harness/envoy-config';
import { PLUGIN_CONFIG_FILE, PLUGIN_WASM, REPO, RULES_FILE, SERVICE_MAIN, envoyBin, readJson, requireBuilt } from './harness/paths';
import { freePort } from './harness/ports';
import { request } from './harness/http';
import { waitFor } from './harness/process';

// STACK_RUN_DIR lets tests keep their stack apart from one a user left running.
const RUN = process.env.STACK_RUN_DIR || path.join(REPO, '.run');
const STATE = path.join(RUN, 'stack.json');

function detached(name: string, cmd: string, args: string[], env: Record<string, string>): number {
  const log = fs.openSync(path.join(RUN, `${name}.log`), 'w');
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log], env: { PATH: process.env.PATH ?? '', ...env } });
  child.unref();
  if (!child.pid) throw new Error(`could not start ${name}`);
  return child.pid;
}

async function answers(port: number, p: string) {
  return waitFor(`:${port}${p}`, async () => ((await request(port, { path: p, timeoutMs: 500 })).status < 500 ? true : undefined), 20000, 100);
}

/** LLM_UPSTREAM: http://host:port or https://host[:port]. */
function parseUpstream(u: string): Endpoint {
  const url = new URL(u);
  const tls = url.protocol === 'https:';
  if (!tls && url.protocol !== 'http:') throw new Error(`LLM_UPSTREAM must be an http:// or https:// URL, got ${JSON.stringify(u)}`);
  return { host: url.hostname, port: Number(url.port || (tls ? 443 : 80)), tls };
}

async function up() {
  if (fs.existsSync(STATE)) throw new Error(`a stack is already up (${STATE}): run \`make down\` first`);
  requireBuilt(PLUGIN_WASM, 'make plugin');
  requireBuilt(SERVICE_MAIN, 'make service');
  fs.mkdirSync(RUN, { recursive: true });
  const pids: Record<string, number> = {};
  const save = () => fs.writeFileSync(STATE, JSON.stringify(pids, null, 2));
  try {
    let llm: Endpoint;
    if (process.env.LLM_UPSTREAM) {
      llm = parseUpstream(process.env.LLM_UPSTREAM);
    } else {
      llm = { host: '127.0.0.1', port: await freePort() };
      pids.mockLlm = detached('mock-llm', process.execPath, [path.join(__dirname, 'mock-llm.js'), String(llm.port)], {});
      save();
      await answers(llm.port, '/__mock/requests');
    }
    const servicePort = await freePort();
    const serviceAdminPort = await freePort();
    pids.service = detached('service', process.execPath, [SERVICE_MAIN], {
      PORT: String(servicePort),
      ADMIN_PORT: String(serviceAdminPort),
      ADMIN_TOKENS: 'local-admin-token-change-me',
      RATE_LIMIT_CONFIG_FILE: RULES_FILE,
      ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
    });
    save();
    await answers(servicePort, '/healthz');
    const envoyPort = Number(process.env.ENVOY_PORT || 10000);
    const adminPort = await freePort();
    const configFile = path.join(RUN, 'envoy.yaml');
    fs.writeFileSync(configFile, stringify(envoyConfig({
      listen: { host: '127.0.0.1', port: envoyPort },
      admin: { host: '127.0.0.1', port: adminPort },
      llm,
      rateLimitService: { host: '127.0.0.1', port: servicePort },
      wasmPath: PLUGIN_WASM,
      pluginConfig: readJson(PLUGIN_CONFIG_FILE),
    })));
    pids.envoy = detached('envoy', envoyBin(), ['-c', configFile, '--disable-hot-restart', '-l', 'warning', '--component-log-level', 'wasm:info'], {});
    save();
    await answers(adminPort, '/ready');
    console.log(`Stack is up (logs in ${path.relative(REPO, RUN) || RUN}/). Envoy :${envoyPort}, admin :${adminPort}, service :${servicePort}, LLM ${llm.tls ? 'https' : 'http'}://${llm.host}:${llm.port}`);
    console.log(`\n  curl -i http://127.0.0.1:${envoyPort}/ -H 'Host: dashscope.aliyuncs.com' -H 'Content-Type: application/json' \\\n    -H 'user-type: regular-user' --data '{"messages":[{"role":"user","content":"介绍一下你自己"}]}'`);
    console.log(`  curl -H 'Authorization: Bearer local-admin-token-change-me' http://127.0.0.1:${serviceAdminPort}/buckets/regular-user  # the bucket's balance`);
    console.log(`  curl http://127.0.0.1:${adminPort}/stats?filter=llm_ratelimit  # the plugin's counters`);
    console.log('\nStop it with: make down');
  } catch (e) {
    await down();
    throw e;
  }
}

async function down() {
  if (!fs.existsSync(STATE)) {
    console.log('no stack is up');
    return;
  }
  const pids: Record<string, number> = JSON.parse(fs.readFileSync(STATE, 'utf8'));
  for (const [name, pid] of Object.entries(pids).reverse()) {
    try {
      process.kill(pid, 'SIGTERM');
      await waitFor(`${name} to exit`, () => { try { process.kill(pid, 0); return undefined; } catch { return true; } }, 5000).catch(() => process.kill(pid, 'SIGKILL'));
      console.log(`stopped ${name} (pid ${pid})`);
    } catch {
      console.log(`${name} (pid ${pid}) was not running`);
    }
  }
  fs.unlinkSync(STATE);
}

const cmd = process.argv[2];
(cmd === 'up' ? up() : cmd === 'down' ? down() : Promise.reject(new Error('usage: stack-cli.js up|down'))).catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
