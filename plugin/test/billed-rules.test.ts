// The billing rules behind issue 23's fixtures, each with the way a response could get them
// wrong: parts never outgrow their counts (and never move the charge), a server-side fallback
// bills the served hop only, Moonshot's choices[i].usage is read where it is and nowhere
// deeper, Titan's bare inputTextTokenCount only in an embeddings response, Cohere's
// cached_tokens only as far as the billed prompt holds it. Run on the scanner alone (whole
// and byte by byte); the fixture corpus runs the same formats through the whole plugin.
import { compileHarness, Scanner, Parts } from './scanner';
import { invokeChunk } from './eventstream';

let mod: WebAssembly.Module;
beforeAll(() => {
  mod = compileHarness();
}, 120000);

type Billed = Pick<Parts, 'found' | 'prompt' | 'completion' | 'total' | 'cacheRead' | 'cacheWrite' | 'reasoning'>;

/** The billed parts of `body`, fed whole and byte by byte (both must agree). */
function billed(contentType: string, body: string | Buffer): Billed {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const out: Billed[] = [];
  for (const chunks of [[b], [...b].map((x) => Buffer.from([x]))]) {
    const s = new Scanner(mod).begin(contentType);
    for (const c of chunks) s.feed(c);
    const p = s.parts();
    out.push({
      found: p.found,
      prompt: p.prompt,
      completion: p.completion,
      total: p.total,
      cacheRead: p.cacheRead,
      cacheWrite: p.cacheWrite,
      reasoning: p.reasoning,
    });
  }
  expect(out[1]).toEqual(out[0]);
  return out[0];
}
const json = (o: object) => billed('application/json', JSON.stringify(o));
const sse = (...events: object[]) => billed('text/event-stream', events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join(''));
const counts = (prompt: number, completion: number, cacheRead = 0, cacheWrite = 0, reasoning = 0): Billed => ({
  found: true,
  prompt,
  completion,
  total: prompt + completion,
  cacheRead,
  cacheWrite,
  reasoning,
});

describe('a part never outgrows its count, and never moves the charge', () => {
  test('cached_tokens above prompt_tokens: the cache read is the whole prompt, the charge is the stated one', () => {
    expect(json({ usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120, prompt_tokens_details: { cached_tokens: 5000 } } })).toEqual(
      counts(100, 20, 100),
    );
  });

  test('reasoning_tokens above completion_tokens: reasoning is the whole completion', () => {
    expect(json({ usage: { prompt_tokens: 10, completion_tokens: 30, total_tokens: 40, completion_tokens_details: { reasoning_tokens: 900 } } })).toEqual(
      counts(10, 30, 0, 0, 30),
    );
  });

  test('read + write above the prompt: the (cheap) read gives way, the write and the charge stay', () => {
    // base 10 + write 40 = prompt 50; a read of 500 "inside" a base of 10 cannot be.
    expect(
      json({ usage: { prompt_tokens: 10, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 500 }, cache_creation_input_tokens: 40 } }),
    ).toEqual(counts(50, 5, 10, 40));
  });

  test('consistent parts are reported as stated', () => {
    expect(json({ usage: { input_tokens: 30, cache_read_input_tokens: 2000, cache_creation_input_tokens: 100, output_tokens: 7 } })).toEqual(
      counts(2130, 7, 2000, 100),
    );
  });
});

describe('Anthropic server-side fallback: the served hop is billed, declined hops are not', () => {
  const hop = (type: string, model: string, i: number, o: number, r = 0, w = 0) => ({
    type,
    model,
    input_tokens: i,
    cache_creation_input_tokens: w,
    cache_read_input_tokens: r,
    output_tokens: o,
  });

  test('two declined hops (the requested model, then a first fallback) and the served one', () => {
    const usage = {
      input_tokens: 515,
      output_tokens: 90,
      iterations: [hop('message', 'claude-fable-5', 500, 0), hop('message', 'claude-opus-5', 510, 12), hop('fallback_message', 'claude-opus-4-8', 515, 90)],
    };
    expect(json({ type: 'message', usage })).toEqual(counts(515, 90));
  });

  test('without a fallback_message entry, every entry is billed (compaction, server-tool loops)', () => {
    const usage = {
      input_tokens: 20,
      output_tokens: 5,
      iterations: [hop('compaction', 'm', 900, 100), hop('message', 'm', 20, 5), hop('message', 'm', 30, 6)],
    };
    expect(json({ usage })).toEqual(counts(950, 111));
  });

  test('other entries next to a fallback stay billed (compaction, advisor); entries without a type too', () => {
    const usage = {
      iterations: [
        hop('message', 'a', 400, 0, 100),
        hop('compaction', 'b', 1000, 200),
        hop('advisor_message', 'c', 50, 10),
        { input_tokens: 3, output_tokens: 1 },
        hop('fallback_message', 'b', 300, 40, 0, 64),
      ],
    };
    expect(json({ usage })).toEqual(counts(1000 + 50 + 3 + 300 + 64, 200 + 10 + 1 + 40, 0, 64));
  });

  test('streamed: message_start counts the declined model, message_delta replaces it with the served hop', () => {
    const r = sse(
      { type: 'message_start', message: { model: 'claude-fable-5', usage: { input_tokens: 408, output_tokens: 1 } } },
      { type: 'content_block_start', index: 0, content_block: { type: 'fallback', from: { model: 'claude-fable-5' }, to: { model: 'claude-opus-4-8' } } },
      {
        type: 'message_delta',
        delta: { stop_reason: 'end_turn' },
        usage: {
          input_tokens: 412,
          output_tokens: 264,
          iterations: [hop('message', 'claude-fable-5', 408, 0), hop('fallback_message', 'claude-opus-4-8', 412, 264)],
        },
      },
    );
    expect(r).toEqual(counts(412, 264));
  });
});

describe('Moonshot: usage in choices[i], and nowhere deeper', () => {
  const chunk = (choice: object, extra: object = {}) => ({ id: 'c', object: 'chat.completion.chunk', model: 'moonshot-v1-8k', choices: [choice], ...extra });

  test("read from the last chunk's choice, with its cached_tokens", () => {
    expect(
      sse(
        chunk({ index: 0, delta: { content: 'hi' } }),
        chunk({ index: 0, delta: {}, finish_reason: 'stop', usage: { prompt_tokens: 40, completion_tokens: 2, total_tokens: 42, cached_tokens: 32 } }),
      ),
    ).toEqual(counts(40, 2, 32));
  });

  test('not under delta, message or a nested array of a choice; not in another top-level array', () => {
    const u = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 };
    for (const body of [
      chunk({ index: 0, delta: { usage: u } }),
      { choices: [{ message: { role: 'assistant', usage: u } }] },
      { choices: [[{ usage: u }]] },
      { data: [{ usage: u }] },
      { choices: [{ index: 0, logprobs: { content: [{ usage: u }] } }] },
    ])
      expect([body, json(body).found]).toEqual([body, false]);
  });

  test('a "usage" written by the model (text or tool arguments) is text, not usage', () => {
    const u = '{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}';
    expect(json({ choices: [{ index: 0, message: { content: u, tool_calls: [{ function: { arguments: u } }] } }] }).found).toBe(false);
  });

  test('top-level usage after the choices is still read (OpenAI include_usage)', () => {
    expect(
      sse(chunk({ index: 0, delta: { content: 'x' } }), { id: 'c', choices: [], usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 } }),
    ).toEqual(counts(9, 3));
  });
});

describe('Amazon Titan: inputTextTokenCount is the bill only for embeddings', () => {
  test('G1 and V2 embeddings, the count before or after the vector, whitespace around it', () => {
    expect(json({ embedding: [0.1, -0.2], inputTextTokenCount: 7 })).toEqual(counts(7, 0));
    expect(json({ inputTextTokenCount: 12, embeddingsByType: { binary: [1, 0] } })).toEqual(counts(12, 0));
    expect(billed('application/json', '{ "inputTextTokenCount" :\n 31 , "embedding" : [ 0.5 ] }\n')).toEqual(counts(31, 0));
  });

  test('Titan Text (no embedding) is not billed as its prompt alone: not found, so estimated', () => {
    expect(json({ inputTextTokenCount: 12, results: [{ tokenCount: 300, outputText: 'x', completionReason: 'FINISH' }] }).found).toBe(false);
  });

  test("Titan Text streamed: the invocation metrics bill prompt and output, the chunks' count does not replace them", () => {
    const b = Buffer.concat([
      invokeChunk({ outputText: 'a', index: 0, totalOutputTextTokenCount: null, inputTextTokenCount: 12 }),
      invokeChunk({
        outputText: '',
        index: 0,
        totalOutputTextTokenCount: 40,
        completionReason: 'FINISH',
        inputTextTokenCount: null,
        'amazon-bedrock-invocationMetrics': { inputTokenCount: 12, outputTokenCount: 40 },
      }),
    ]);
    expect(billed('application/vnd.amazon.eventstream', b)).toEqual(counts(12, 40));
  });

  test('not a count: fractions, exponents, negatives, null, strings, absurd sizes, nested objects', () => {
    for (const v of ['7.5', '7e2', '-7', 'null', '"7"', '99999999999999999999', '1000000000000001']) {
      expect([v, billed('application/json', `{"embedding":[0.1],"inputTextTokenCount":${v}}`).found]).toEqual([v, false]);
    }
    expect(json({ result: { embedding: [0.1], inputTextTokenCount: 7 } }).found).toBe(false);
    expect(json({ embedding: [0.1], meta: { inputTextTokenCount: 7 } }).found).toBe(false);
  });

  test('a stated usage wins over the bare count', () => {
    expect(json({ embedding: [0.1], inputTextTokenCount: 7, usage: { prompt_tokens: 9, total_tokens: 9 } })).toEqual(counts(9, 0));
  });
});

describe('Cohere: cached_tokens counts processed tokens; the cache read is what the billed prompt holds', () => {
  test('at least cached - (processed - billed) of the billed prompt was read from the cache', () => {
    expect(
      json({ usage: { billed_units: { input_tokens: 1021, output_tokens: 87 }, tokens: { input_tokens: 2178, output_tokens: 87 }, cached_tokens: 1536 } }),
    ).toEqual(counts(1021, 87, 379));
  });

  test('the cache could be all unbilled tokens: no cache read', () => {
    expect(
      json({ usage: { billed_units: { input_tokens: 5, output_tokens: 418 }, tokens: { input_tokens: 71, output_tokens: 418 }, cached_tokens: 64 } }),
    ).toEqual(counts(5, 418));
  });

  test('billed units without the processed count: the billed share is unknown, none is claimed', () => {
    expect(json({ usage: { billed_units: { input_tokens: 50, output_tokens: 9 }, cached_tokens: 40 } })).toEqual(counts(50, 9));
  });

  test('processed tokens only (billed as such): the cache read as stated, within the prompt', () => {
    expect(json({ usage: { tokens: { input_tokens: 210, output_tokens: 24 }, cached_tokens: 128 } })).toEqual(counts(210, 24, 128));
    expect(json({ usage: { tokens: { input_tokens: 210, output_tokens: 24 }, cached_tokens: 4096 } })).toEqual(counts(210, 24, 210));
  });
});
