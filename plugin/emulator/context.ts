/** What the host keeps per context (root or stream) between calls into the plugin. */
import { HeaderList } from './wire';

export interface LocalResponse {
  status: number;
  details: string;
  body: Buffer;
  headers: HeaderList;
}

export class ContextState {
  id: number;
  rootId: number;
  alive = true;
  maps = new Map<number, HeaderList>();
  buffers = new Map<number, Buffer>();
  continued: number[] = [];
  localResponse: LocalResponse | null = null;
  /** Request body held by Envoy (not yet upstream). */
  heldBody: Buffer = Buffer.alloc(0);
  /** The plugin's last request-body status was StopIterationAndBuffer. */
  bufferingBody = false;
  /** Request body that went upstream, in order. */
  forwardedBody: Buffer[] = [];
  /**
   * The request headers callback returned Continue: Envoy then drops its pointer to the request
   * headers (Context::decodeHeaders), and later callbacks cannot read them (BadArgument).
   */
  requestHeadersGone = false;
  constructor(id: number, rootId: number) {
    this.id = id;
    this.rootId = rootId;
  }
}
