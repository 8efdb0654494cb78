/**
 * `make demo`: the seed's scenario on this machine, as a readable transcript.
 * Starts the mock LLM, the service (embedded store) and Envoy with the plugin, sends the
 * seed's curl as regular-user and as subscriber until each is limited, then stops everything.
 */
import { startStack, Stack } from './harness/stack';
import { chat, errorMessage } from './harness/http';
import { balanceChange, bucketOf } from './harness/service';
import { PLUGIN_CONFIG_FILE, RULES_FILE } from './harness/paths';
import * as fs from 'fs';

const HOST = 'dashscope.aliyuncs.com';

async function play(stack: Stack, userType: string, max: number) {
  console.log(`\n--- user-type: ${userType} ---`);
  for (let i = 1; i <= max; i++) {
    const before = (await bucketOf(stack.service.port, userType)).balance;
    const r = await chat(stack.envoy.port, HOST, { 'user-type': userType });
    if (r.status === 200) {
      const usage = JSON.parse(r.body).usage;
      const after = await balanceChange(stack.service.port, userType, before);
      console.log(
        `#${i} ${userType}: 200 from the LLM, usage ${usage.total_tokens} tokens (prompt ${usage.prompt_tokens}, completion ${usage.completion_tokens}) -> bucket ${after}`,
      );
    } else {
      console.log(`#${i} ${userType}: ${r.status} "${errorMessage(r.body)}" (answered by Envoy; the LLM was not called)`);
      return;
    }
  }
}

async function main() {
  console.log('pluginConfig:', fs.readFileSync(PLUGIN_CONFIG_FILE, 'utf8').replace(/\s+/g, ' '));
  console.log('RATE_LIMIT_CONFIG:', fs.readFileSync(RULES_FILE, 'utf8').replace(/\s+/g, ' '));
  const stack = await startStack();
  console.log(
    `\nEnvoy :${stack.envoy.port} (admin :${stack.envoy.adminPort}) -> mock LLM :${stack.mock!.port}; rate-limit service :${stack.service.port} (embedded store)`,
  );
  console.log(
    `curl http://127.0.0.1:${stack.envoy.port}/ -H 'Host: ${HOST}' -H 'Content-Type: application/json' -H 'user-type: regular-user' --data '{"messages":[{"role":"user","content":"介绍一下你自己"}]}'`,
  );
  try {
    await play(stack, 'regular-user', 10);
    await play(stack, 'subscriber', 20);
    const other = await chat(stack.envoy.port, 'api.other.example', { 'user-type': 'regular-user' });
    console.log(`\n--- another host ---\nregular-user to api.other.example: ${other.status} (not rate-limited: only ${HOST} is matched)`);
  } finally {
    await stack.stop();
    console.log('\nstopped Envoy, the service and the mock LLM');
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
