// Reports that could not be delivered (no reply, timeout, 5xx, the host refused the call)
// wait here, per root context, and are sent again on the root's tick with exponential
// back-off. Each keeps the body it was first built with, request_id included, so a report
// that did arrive but whose reply was lost is applied once by the service.
//
// Bounded: at most maxQueuedReports wait at once (a report is a few hundred bytes); past
// that a new failure is dropped and counted (reports_dropped). A report is never retried
// after a 2xx, nor after a 4xx (the service will not accept it later either).

import { ByteBuf } from "./bytes";

export const TICK_MS: u32 = 250;
const FIRST_DELAY_MS: i64 = 250;
const MAX_DELAY_MS: i64 = 5000;
/** Retries sent per tick (and per VM): a long outage must not turn into a burst of calls. */
export const MAX_SENDS_PER_TICK = 200;

export class QueuedReport {
  body: ByteBuf;
  attempts: i32 = 0;
  dueMs: i64 = 0;
  /** The same report without its labels (model), for a service that refuses it with them; null if none. */
  bare: ByteBuf | null = null;
  constructor(body: ByteBuf) {
    this.body = body;
  }
}

export class Outbox {
  waiting: QueuedReport[] = [];

  /** Schedules another attempt; false (drop it) when maxQueued are already waiting. */
  retryLater(r: QueuedReport, nowMs: i64, maxQueued: i32): bool {
    if (this.waiting.length >= maxQueued) return false;
    r.attempts++;
    let delay = FIRST_DELAY_MS;
    for (let i = 1; i < r.attempts && delay < MAX_DELAY_MS; i++) delay *= 2;
    if (delay > MAX_DELAY_MS) delay = MAX_DELAY_MS;
    r.dueMs = nowMs + delay;
    this.waiting.push(r);
    return true;
  }

  /** Removes and returns the reports due at nowMs (at most MAX_SENDS_PER_TICK), oldest first. */
  takeDue(nowMs: i64): QueuedReport[] {
    const due: QueuedReport[] = [];
    const n = this.waiting.length;
    if (n == 0) return due;
    const keep: QueuedReport[] = [];
    for (let i = 0; i < n; i++) {
      const r = this.waiting[i];
      if (r.dueMs <= nowMs && due.length < MAX_SENDS_PER_TICK) due.push(r);
      else keep.push(r);
    }
    this.waiting = keep;
    return due;
  }

  get size(): i32 {
    return this.waiting.length;
  }
}
