// Loads istio/manifests/*.yaml into plain objects (one per YAML document).
import * as fs from 'fs';
import * as path from 'path';
import { parseAllDocuments } from 'yaml';

export const ISTIO_DIR = path.join(__dirname, '..', '..');
export const REPO_DIR = path.join(ISTIO_DIR, '..');
export const MANIFEST_DIR = path.join(ISTIO_DIR, 'manifests');

export interface Loaded {
  file: string;
  index: number;
  obj: any;
}

export function manifestFiles(): string[] {
  return fs
    .readdirSync(MANIFEST_DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
}

/** Parses a file strictly: YAML errors and warnings (e.g. duplicate keys) throw. */
export function loadFile(file: string): Loaded[] {
  const text = fs.readFileSync(path.join(MANIFEST_DIR, file), 'utf8');
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true });
  const out: Loaded[] = [];
  (Array.isArray(docs) ? docs : [docs]).forEach((doc, index) => {
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length) throw new Error(`${file} document ${index}: ${problems.map((p) => p.message).join('; ')}`);
    const obj = doc.toJS();
    if (obj !== null && obj !== undefined) out.push({ file, index, obj });
  });
  return out;
}

export function loadAll(): Loaded[] {
  return manifestFiles().flatMap(loadFile);
}

export function find(all: Loaded[], kind: string, name: string): any {
  const hit = all.filter((l) => l.obj.kind === kind && l.obj.metadata?.name === name);
  if (hit.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${hit.length}`);
  return hit[0].obj;
}
