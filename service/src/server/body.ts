/** Reading a request body, bounded. */
import type { IncomingMessage } from 'node:http';
import { BadRequest } from './input';
import { BodyTooLarge } from './replies';

/**
 * The body as UTF-8 text. More than `max` bytes: BodyTooLarge, and the rest is not kept (the
 * caller answers 413 and the connection closes after it). A body cut short: BadRequest.
 */
export function readBody(req: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    // The error is built only when it happens: 'close' follows every body, and an Error's stack costs microseconds.
    const fail = (err: () => Error) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      reject(err());
    };
    const incomplete = () => new BadRequest('request body incomplete');
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) fail(() => new BodyTooLarge(max));
      else chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => {
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks, size).toString('utf8'));
    });
    req.once('error', () => fail(incomplete));
    req.once('close', () => fail(incomplete));
  });
}
