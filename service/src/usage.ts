/**
 * Usage records (USAGE_RECORDS=stdout or a file path): one JSON line per applied update, a
 * stable format for billing and analysis pipelines (docs/operations.md, "Usage records").
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { AppliedCharge } from './limiter/limiter';
import type { Logger } from './log';
import type { UpdateBody } from './server/input';

export interface UsageRecorder {
  record(body: UpdateBody, charges: AppliedCharge[]): void;
  close(): void;
}

/** The record of one applied update (field order is the documented one). */
export function usageRecord(body: UpdateBody, charges: AppliedCharge[], now = new Date()): Record<string, unknown> {
  const charge: Record<string, number> = {};
  for (const c of charges) charge[c.key] = (charge[c.key] ?? 0) + c.charge;
  const rec: Record<string, unknown> = {
    record: 'usage',
    v: 1,
    time: now.toISOString(),
    keys: body.keys,
    prompt_tokens: body.usage.prompt_tokens,
    completion_tokens: body.usage.completion_tokens,
    total_tokens: body.usage.total_tokens,
    ...body.parts,
    charge,
    estimated: body.estimated,
  };
  if (body.reserved > 0) rec.reserved_tokens = body.reserved;
  if (body.requestId !== undefined) rec.request_id = body.requestId;
  if (body.reservationId !== undefined) rec.reservation_id = body.reservationId;
  if (body.model !== undefined) rec.model = body.model;
  if (body.metadataErrors.length > 0) rec.metadata_errors = body.metadataErrors.map((e) => `${e.field}: ${e.error}`);
  return rec;
}

/**
 * `target` 'stdout' writes to the process's stdout (between the log lines, told apart by
 * `"record":"usage"`); anything else is a file opened for appending (O_APPEND: lines from
 * several workers never interleave). Throws when the file cannot be opened.
 */
export function createUsageRecorder(target: string, logger: Logger): UsageRecorder {
  let lastError = 0;
  const failed = (err: Error) => {
    if (Date.now() - lastError < 10_000) return;
    lastError = Date.now();
    logger.error('usage record not written', { usage_records: target, err: err.message });
  };
  if (target === 'stdout') {
    return {
      record: (body, charges) => void process.stdout.write(JSON.stringify(usageRecord(body, charges)) + '\n'),
      close: () => undefined,
    };
  }
  let fd: number | undefined = openSync(target, 'a', 0o640);
  return {
    record: (body, charges) => {
      if (fd === undefined) return;
      try {
        writeSync(fd, JSON.stringify(usageRecord(body, charges)) + '\n');
      } catch (err) {
        failed(err as Error);
      }
    },
    close: () => {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}
