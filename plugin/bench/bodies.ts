/** Response bodies the plugin micro-benchmarks feed through the emulator (bench.ts, compare.ts). */

/** An OpenAI chat completion of about `size` bytes (realistic content: escapes, multi-byte text). */
export function jsonBody(size: number): Buffer {
  const tail = '"}}],"usage":{"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}}';
  const head = '{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"';
  const fill = Math.max(0, size - head.length - tail.length);
  const unit = 'Hello, \\"world\\" 通义千问 ';
  const content = unit.repeat(Math.ceil(fill / Buffer.byteLength(unit)));
  let b = Buffer.from(head + content + tail);
  if (b.length > size) b = Buffer.concat([b.subarray(0, head.length + fill), Buffer.from(tail)]);
  return b;
}

/** An OpenAI chat stream of `events` content chunks and a final usage chunk. */
export function sseBody(events: number): Buffer {
  let s = '';
  for (let i = 0; i < events; i++) {
    s += `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"token ${i} 通义"}}],"usage":null}\n\n`;
  }
  s += 'data: {"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":1000,"total_tokens":1010}}\n\ndata: [DONE]\n\n';
  return Buffer.from(s);
}

/** An Anthropic Messages stream of `events` text deltas, usage in message_start and message_delta. */
export function anthropicSse(events: number): Buffer {
  let s =
    'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":25,"cache_read_input_tokens":900,"output_tokens":1}}}\n\n';
  for (let i = 0; i < events; i++)
    s += `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"token ${i} 通义"}}\n\n`;
  s +=
    'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1000}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n';
  return Buffer.from(s);
}

/** `b` cut into chunks of `size` bytes. */
export function chunks(b: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size));
  return out;
}
