// The service's own reading of its environment and rules, for checking that the manifests give
// the service what it accepts. Taken from the service's built modules (service/dist, what the
// image runs), not its sources: istio depends on the service as a package, not on its insides.
// The service has no config-check command, and a process would not show what the test reads
// (the tokens it took from the Secret are never logged). Only the fields the tests read are typed.
import * as fs from 'fs';
import * as path from 'path';
import { REPO_DIR } from './manifests';

export interface ServiceSettings {
  port: number;
  adminPort: number;
  configText?: string;
  redis?: { urls: string[] };
  tokens: string[];
  adminTokens: string[];
}

export interface ServiceRule {
  regexSource: string;
  regex: { test(key: string): boolean };
  maxTokens: number;
}

function built<T>(rel: string): T {
  const file = path.join(REPO_DIR, 'service/dist', rel);
  if (!fs.existsSync(file)) throw new Error(`service/dist/${rel} is missing: run \`make service\``);
  return require(file) as T;
}

/** The settings the service takes from `env` (service/src/config/env.ts); throws as the service would. */
export function settingsFromEnv(env: Record<string, string>): ServiceSettings {
  return built<{ settingsFromEnv(env: Record<string, string>): ServiceSettings }>('config/env.js').settingsFromEnv(env);
}

/** The rules the service reads from `text` (service/src/config/rules.ts); throws on a rule it refuses, naming `source`. */
export function parseRules(text: string, source: string): ServiceRule[] {
  return built<{ parseRules(text: string, source: string): ServiceRule[] }>('config/rules.js').parseRules(text, source);
}
