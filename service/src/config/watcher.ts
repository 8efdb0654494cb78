import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../log';
import { parseRules, type Rule } from './rules';

/**
 * Watches a rules file (a mounted ConfigMap: its directory swaps a symlink on update).
 * fs.watch on the directory + a light poll as fallback + reload() for SIGHUP.
 * A bad new file keeps the old rules and logs why.
 */
export class ConfigWatcher {
  private last: string;
  private fsw?: FSWatcher;
  private poll?: NodeJS.Timeout;
  private debounce?: NodeJS.Timeout;

  constructor(
    private readonly file: string,
    initialText: string,
    private readonly onRules: (rules: Rule[]) => void,
    private readonly log: Logger,
    private readonly onResult: (ok: boolean) => void = () => {},
  ) {
    this.last = initialText;
  }

  static readInitial(file: string): { text: string; rules: Rule[] } {
    const text = readFileSync(file, 'utf8');
    return { text, rules: parseRules(text, file) };
  }

  start(pollMs: number): void {
    try {
      this.fsw = watch(dirname(this.file), { persistent: false }, () => this.schedule());
      this.fsw.on('error', (err) => this.log.warn('config watch error', { err: err.message }));
    } catch (err) {
      this.log.warn('config watch unavailable, polling only', { err: (err as Error).message });
    }
    if (pollMs > 0) {
      this.poll = setInterval(() => this.reload('poll'), pollMs);
      this.poll.unref();
    }
  }

  private schedule(): void {
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.reload('watch'), 50);
    this.debounce.unref();
  }

  /** Re-reads the file; applies it if it changed and is valid. Returns true when applied. */
  reload(reason: string, force = false): boolean {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      this.log.error('config reload failed, keeping the current rules', { file: this.file, reason, err: (err as Error).message });
      this.onResult(false);
      return false;
    }
    if (text === this.last && !force) return false;
    try {
      const rules = parseRules(text, this.file);
      this.last = text;
      this.onRules(rules);
      this.log.info('config reloaded', { file: this.file, reason, rules: rules.length });
      this.onResult(true);
      return true;
    } catch (err) {
      // Remember the bad text so the poll does not log it again every period.
      this.last = text;
      this.log.error('config reload rejected, keeping the current rules', { file: this.file, reason, err: (err as Error).message });
      this.onResult(false);
      return false;
    }
  }

  stop(): void {
    this.fsw?.close();
    if (this.poll) clearInterval(this.poll);
    if (this.debounce) clearTimeout(this.debounce);
  }
}
