/** One HTTP stream through the filter: a test sends it headers and bodies the way Envoy would. */
import { BUFFER, FilterDataStatus, HEADER_MAP } from './abi';
import { ContextState, LocalResponse } from './context';
import type { ProxyWasmHost } from './host';
import { HeaderList } from './wire';

export class Stream {
  constructor(
    readonly host: ProxyWasmHost,
    readonly id: number,
  ) {}

  get state(): ContextState {
    return this.host.state(this.id);
  }
  get localResponse(): LocalResponse | null {
    return this.state.localResponse;
  }
  /** Times the plugin resumed the request (proxy_continue_stream(0)). */
  get requestContinued(): number {
    return this.state.continued.filter((t) => t === 0).length;
  }
  requestHeaders(): HeaderList {
    return this.state.maps.get(HEADER_MAP.requestHeaders) ?? [];
  }

  sendRequestHeaders(headers: HeaderList, endOfStream = false): number {
    this.state.maps.set(
      HEADER_MAP.requestHeaders,
      headers.map(([k, v]) => [k.toLowerCase(), v]),
    );
    const r = this.host.call('proxy_on_request_headers', this.id, this.id, headers.length, endOfStream ? 1 : 0);
    if (r === 0) this.state.requestHeadersGone = true;
    return r;
  }

  sendRequestBody(chunk: string | Buffer, endOfStream = false): number {
    const st = this.state;
    const c = Buffer.from(chunk);
    // After StopIterationAndBuffer the plugin sees the whole buffered body; otherwise the chunk.
    const visible = st.bufferingBody ? Buffer.concat([st.heldBody, c]) : c;
    const invisible = st.bufferingBody ? Buffer.alloc(0) : st.heldBody;
    st.buffers.set(BUFFER.requestBody, visible);
    const r = this.host.call('proxy_on_request_body', this.id, this.id, visible.length, endOfStream ? 1 : 0);
    const cur = st.buffers.get(BUFFER.requestBody) ?? Buffer.alloc(0); // the plugin may have replaced it
    if (r === FilterDataStatus.Continue) {
      st.forwardedBody.push(invisible, cur);
      st.heldBody = Buffer.alloc(0);
      st.bufferingBody = false;
    } else if (r !== FilterDataStatus.StopIterationNoBuffer) {
      st.heldBody = Buffer.concat([invisible, cur]);
      st.bufferingBody = r === FilterDataStatus.StopIterationAndBuffer;
    }
    return r;
  }

  /** The request body that went upstream so far. */
  upstreamRequestBody(): Buffer {
    return Buffer.concat(this.state.forwardedBody);
  }

  sendRequestTrailers(trailers: HeaderList): number {
    this.state.maps.set(HEADER_MAP.requestTrailers, trailers);
    return this.host.call('proxy_on_request_trailers', this.id, this.id, trailers.length);
  }

  sendResponseHeaders(headers: HeaderList, endOfStream = false): number {
    this.state.maps.set(
      HEADER_MAP.responseHeaders,
      headers.map(([k, v]) => [k.toLowerCase(), v]),
    );
    return this.host.call('proxy_on_response_headers', this.id, this.id, headers.length, endOfStream ? 1 : 0);
  }

  sendResponseBody(chunk: string | Buffer, endOfStream = false): number {
    const b = Buffer.from(chunk);
    this.state.buffers.set(BUFFER.responseBody, b);
    return this.host.call('proxy_on_response_body', this.id, this.id, b.length, endOfStream ? 1 : 0);
  }

  sendResponseTrailers(trailers: HeaderList): number {
    this.state.maps.set(HEADER_MAP.responseTrailers, trailers);
    return this.host.call('proxy_on_response_trailers', this.id, this.id, trailers.length);
  }

  /** Stream teardown as Envoy does it: done, log, delete. The context is gone afterwards. */
  end(): void {
    this.host.call('proxy_on_done', this.id, this.id);
    this.host.call('proxy_on_log', this.id, this.id);
    this.host.call('proxy_on_delete', this.id, this.id);
    this.state.alive = false;
  }
}
