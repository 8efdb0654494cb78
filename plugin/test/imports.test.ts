/**
 * The shape of the plugin's sources (assembly/): imports run one way (no module imports one
 * that, directly or not, imports it back), and every file there is part of plugin.wasm
 * (reachable from index.ts), so test code never sits among the shipped sources.
 */
import * as fs from 'fs';
import * as path from 'path';

const SRC = path.join(__dirname, '..', 'assembly');

/** Relative module paths (without .ts, from SRC) each source file imports or re-exports from. */
function importGraph(dir: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        walk(p);
        continue;
      }
      if (!e.name.endsWith('.ts')) continue;
      const src = fs.readFileSync(p, 'utf8');
      const deps: string[] = [];
      for (const m of src.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+["'](\.{1,2}\/[^"']+)["']/gm)) {
        deps.push(path.relative(dir, path.resolve(path.dirname(p), m[1])));
      }
      graph.set(path.relative(dir, p).replace(/\.ts$/, ''), deps);
    }
  };
  walk(dir);
  return graph;
}

/** Every import cycle, as "a -> b -> a". */
function cycles(graph: Map<string, string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const found: string[] = [];
  const visit = (n: string, trail: string[]): void => {
    state.set(n, 'open');
    trail.push(n);
    for (const d of graph.get(n) ?? []) {
      if (state.get(d) === 'open') found.push([...trail.slice(trail.indexOf(d)), d].join(' -> '));
      else if (!state.has(d)) visit(d, trail);
    }
    trail.pop();
    state.set(n, 'done');
  };
  for (const n of graph.keys()) if (!state.has(n)) visit(n, []);
  return found;
}

function reachable(graph: Map<string, string[]>, from: string): Set<string> {
  const seen = new Set<string>();
  const todo = [from];
  while (todo.length > 0) {
    const n = todo.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    todo.push(...(graph.get(n) ?? []));
  }
  return seen;
}

describe('plugin sources (assembly/)', () => {
  const graph = importGraph(SRC);

  test('the import reader sees the imports (index.ts imports the filter)', () => {
    expect(graph.get('index')).toContain('filter');
    for (const deps of graph.values()) for (const d of deps) expect(graph.has(d) ? d : `missing module ${d}`).toBe(d);
  });

  test('no import cycle', () => {
    expect(cycles(graph)).toEqual([]);
  });

  test('every source file is part of plugin.wasm (reachable from index.ts)', () => {
    const shipped = reachable(graph, 'index');
    expect([...graph.keys()].filter((n) => !shipped.has(n))).toEqual([]);
  });
});
