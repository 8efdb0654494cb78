/** Structured JSON-lines logger on stdout. Never logs request bodies. */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** Lifecycle line printed whatever LOG_LEVEL is (e.g. "listening", which harnesses wait for). */
  always(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(
  level: Level = 'info',
  write: (line: string) => void = (l) => process.stdout.write(l),
  /** Fields on every line (a cluster worker adds `worker`). */
  base?: Record<string, unknown>,
): Logger {
  const min = ORDER[level] ?? ORDER.info;
  const emit = (lvl: Level, msg: string, fields?: Record<string, unknown>, force = false) => {
    if (ORDER[lvl] < min && !force) return;
    const rec: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, msg, ...base };
    if (fields) for (const k of Object.keys(fields)) rec[k] = errToJson(fields[k]);
    write(JSON.stringify(rec) + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    always: (m, f) => emit('info', m, f, true),
  };
}

function errToJson(v: unknown): unknown {
  return v instanceof Error ? v.message : v;
}

/** A logger that drops everything (tests, benches). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {}, always() {} };
