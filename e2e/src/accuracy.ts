/**
 * `make bench-accuracy`: how far concurrent requests overspend a fresh bucket, with the plugin's
 * reservation off and on. 64 requests of known usage arrive 10 ms apart, each answered by the mock
 * LLM after 300 ms, so many are in flight before the first usage is reported. Writes
 * docs/bench/accuracy.json (then scripts/accuracy-chart.mjs draws docs/accuracy.svg).
 */
import * as fs from 'fs';
import * as path from 'path';
import { startStack } from './harness/stack';
import { chat } from './harness/http';
import { bucketOf } from './harness/service';
import { waitFor } from './harness/process';
import { REPO } from './harness/paths';
import { RLS_PORT, RLS_SERVICE } from './harness/envoy-config';

const HOST = 'dashscope.aliyuncs.com';
const CAPACITY = 2000;
const REQUESTS = 64;
const SPACING_MS = 10;
const UPSTREAM_MS = 300;
const MAX_TOKENS = 128;
const PROMPT = 'Summarise the attached quarterly report in three short bullet points for the board.';
const PROMPT_TOKENS = 17; // what a tokenizer would say for PROMPT; the mock reports it

/** Deterministic completion sizes between 40 and MAX_TOKENS (a fixed LCG, so every run is the same). */
function completions(n: number): number[] {
  let x = 12345;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return 40 + (x % (MAX_TOKENS - 40 + 1));
  });
}

export interface AccuracyRun {
  reserve: boolean;
  capacity: number;
  admitted: number;
  rejected: number;
  spent: number;
  overspend: number;
  finalBalance: number | null;
  /** For the chart: each answered request's completion time and the running total spent. */
  timeline: { ms: number; spent: number }[];
}

async function run(reserve: boolean): Promise<AccuracyRun> {
  const key = `acc-${reserve ? 'on' : 'off'}`;
  const stack = await startStack({
    rules: [{ rate_limit_key_regex: '^acc-', redis_expired_seconds: 3600, fill_interval_second: 3600, tokens_per_fill: 1, max_tokens: CAPACITY }],
    pluginConfig: {
      matches: [{ host: { exact: HOST } }],
      rateLimitKeys: ['{{request.headers.x-client}}'],
      rateLimitService: { service: RLS_SERVICE, port: RLS_PORT },
      ...(reserve ? { reserve: { enabled: true } } : {}),
    },
  });
  try {
    const sizes = completions(REQUESTS);
    const t0 = Date.now();
    const results = await Promise.all(
      sizes.map(async (c, i) => {
        await new Promise((r) => setTimeout(r, i * SPACING_MS));
        const r = await chat(
          stack.envoy.port,
          HOST,
          { 'x-client': key, 'x-mock-delay-ms': String(UPSTREAM_MS), 'x-mock-usage': `${PROMPT_TOKENS},${c}` },
          {
            model: 'qwen-plus',
            max_tokens: MAX_TOKENS,
            messages: [{ role: 'user', content: PROMPT }],
          },
        );
        return { status: r.status, ms: Date.now() - t0, tokens: r.status === 200 ? (JSON.parse(r.body).usage.total_tokens as number) : 0 };
      }),
    );
    const answered = results.filter((r) => r.status === 200).sort((a, b) => a.ms - b.ms);
    const spent = answered.reduce((n, r) => n + r.tokens, 0);
    // Wait for the last asynchronous reports, so the bucket shows the final figure.
    const expected = CAPACITY - spent;
    const finalBalance = await waitFor(
      'the last reports',
      async () => {
        const b = (await bucketOf(stack.service.port, key)).balance;
        return b === expected ? b : undefined;
      },
      5000,
    ).catch(async () => (await bucketOf(stack.service.port, key)).balance);
    let running = 0;
    return {
      reserve,
      capacity: CAPACITY,
      admitted: answered.length,
      rejected: results.filter((r) => r.status === 429).length,
      spent,
      overspend: spent - CAPACITY,
      finalBalance,
      timeline: answered.map((r) => ({ ms: r.ms, spent: (running += r.tokens) })),
    };
  } finally {
    await stack.stop();
  }
}

async function main() {
  const runs = [await run(false), await run(true)];
  const out = {
    date: new Date().toISOString(),
    setup: { capacity: CAPACITY, requests: REQUESTS, spacingMs: SPACING_MS, upstreamMs: UPSTREAM_MS, maxTokens: MAX_TOKENS, promptTokens: PROMPT_TOKENS },
    // The goal for reservation on: overspend within one request's estimation error, which for a
    // request that names max_tokens is at most its whole cost.
    goalMaxOverspend: PROMPT_TOKENS + MAX_TOKENS,
    runs,
  };
  const file = path.join(REPO, 'docs/bench/accuracy.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  console.log(
    `fresh bucket of ${CAPACITY} tokens; ${REQUESTS} requests ${SPACING_MS} ms apart, each answered after ${UPSTREAM_MS} ms (max_tokens ${MAX_TOKENS})`,
  );
  console.log('reservation | admitted | rejected | tokens spent | beyond capacity');
  for (const r of runs)
    console.log(
      `${r.reserve ? 'on ' : 'off'}         | ${String(r.admitted).padStart(8)} | ${String(r.rejected).padStart(8)} | ${String(r.spent).padStart(12)} | ${String(r.overspend).padStart(6)} (${((100 * r.overspend) / CAPACITY).toFixed(0)}%)`,
    );
  console.log(`wrote ${path.relative(REPO, file)}`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
