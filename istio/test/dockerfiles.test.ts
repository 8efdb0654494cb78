// plugin/Dockerfile and service/Dockerfile cannot be built here (no Docker engine); these
// checks keep them consistent with the repository they build from.
import * as fs from 'fs';
import * as path from 'path';
import { find, loadAll, REPO_DIR } from './lib/manifests';

interface Instr {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instrs: Instr[];
}

/** A small Dockerfile reader: comments, line continuations, stages. */
function parseDockerfile(file: string): { args: Record<string, string>; stages: Stage[] } {
  const text = fs.readFileSync(path.join(REPO_DIR, file), 'utf8');
  const lines = text.split('\n').filter((l) => !/^\s*#/.test(l));
  const joined = lines.join('\n').replace(/\\\n/g, ' ');
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`${file}: cannot read line: ${line}`);
    const op = m[1].toUpperCase();
    const rest = m[2].trim();
    if (op === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=');
      args[k] = v ?? '';
    } else if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      const from = f[1].replace(/\$\{(\w+)\}/g, (_, k) => args[k] ?? '');
      stages.push({ from, name: f[2], instrs: [] });
    } else {
      if (!stages.length) throw new Error(`${file}: ${op} before FROM`);
      stages[stages.length - 1].instrs.push({ op, args: rest });
    }
  }
  return { args, stages };
}

/** Context paths a stage's COPY instructions read (not those copied from another stage). */
function contextSources(stage: Stage): string[] {
  return stage.instrs
    .filter((i) => i.op === 'COPY' && !/--from=/.test(i.args))
    .flatMap((i) =>
      i.args
        .split(/\s+/)
        .filter((a) => !a.startsWith('--'))
        .slice(0, -1),
    );
}

const rootPkg = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8'));

describe.each(['plugin/Dockerfile', 'service/Dockerfile'])('%s', (file) => {
  const { stages } = parseDockerfile(file);

  test('every file it copies from the context (the repository root) exists', () => {
    for (const s of stages) for (const src of contextSources(s)) expect([src, fs.existsSync(path.join(REPO_DIR, src))]).toEqual([src, true]);
  });

  test("stages that run npm ci have every workspace's package.json (so the root lock file is in sync)", () => {
    for (const s of stages.filter((st) => st.instrs.some((i) => i.op === 'RUN' && /npm ci/.test(i.args)))) {
      const srcs = contextSources(s);
      expect(srcs).toEqual(expect.arrayContaining(['package.json', 'package-lock.json']));
      for (const w of rootPkg.workspaces) expect(srcs).toContain(`${w}/package.json`);
    }
  });
});

describe('plugin/Dockerfile', () => {
  const { stages } = parseDockerfile('plugin/Dockerfile');
  const last = stages[stages.length - 1];

  test("the image is FROM scratch with only /plugin.wasm, built by the plugin's own build script", () => {
    expect(last.from).toBe('scratch');
    expect(last.instrs).toHaveLength(1);
    const copy = last.instrs[0];
    expect(copy.op).toBe('COPY');
    const [from, src, dest] = copy.args.split(/\s+/);
    expect(dest).toBe('/plugin.wasm');
    const build = stages.find((s) => `--from=${s.name}` === from);
    expect(build).toBeDefined();
    const pluginPkg = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'plugin', 'package.json'), 'utf8'));
    const out = /-b\s+(\S+)/.exec(pluginPkg.scripts.build)?.[1];
    expect(src.endsWith(`/plugin/${out}`)).toBe(true);
    expect(build!.instrs.some((i) => i.op === 'RUN' && /npm run build -w plugin/.test(i.args))).toBe(true);
  });
});

describe('service/Dockerfile', () => {
  const { stages } = parseDockerfile('service/Dockerfile');
  const last = stages[stages.length - 1];
  const servicePkg = JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'service', 'package.json'), 'utf8'));

  test('multi-stage, on a small Node base', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s.from).toMatch(/node:\d+-(alpine|slim)/);
  });

  test('the runtime has production dependencies only, and no sources', () => {
    const copies = last.instrs.filter((i) => i.op === 'COPY');
    expect(copies.every((c) => /--from=/.test(c.args))).toBe(true);
    const nm = copies.find((c) => /node_modules/.test(c.args))!;
    const depsStage = stages.find((s) => nm.args.includes(`--from=${s.name}`))!;
    expect(depsStage.instrs.some((i) => i.op === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args))).toBe(true);
    expect(copies.some((c) => /src/.test(c.args.split(/\s+/).slice(-1)[0]))).toBe(false);
  });

  test('it runs as a non-root user given by number (runAsNonRoot can check it), as the Deployment does', () => {
    const user = last.instrs.filter((i) => i.op === 'USER').pop()?.args;
    expect(user).toMatch(/^[1-9]\d*(:\d+)?$/);
    const pod = find(loadAll(), 'Deployment', 'asm-llm-token-rate-limit-example').spec.template.spec;
    expect(String(pod.securityContext.runAsUser)).toBe(user!.split(':')[0]);
  });

  test("it starts the service's main on the ports the Deployment expects (service port, then admin port)", () => {
    const cmd = JSON.parse(last.instrs.find((i) => i.op === 'CMD')!.args);
    expect(cmd).toEqual(['node', `service/${servicePkg.main}`]);
    const ports = last.instrs
      .find((i) => i.op === 'EXPOSE')!
      .args.split(/\s+/)
      .map(Number);
    const c = find(loadAll(), 'Deployment', 'asm-llm-token-rate-limit-example').spec.template.spec.containers[0];
    expect(c.ports.map((p: any) => p.containerPort)).toEqual(ports);
    expect(c.ports.map((p: any) => p.name)).toEqual(['http', 'admin']);
    const env = Object.fromEntries(
      last.instrs
        .filter((i) => i.op === 'ENV')
        .flatMap((i) =>
          i.args
            .split(/\s+\\?\s*/)
            .filter((kv) => kv.includes('='))
            .map((kv) => kv.split('=')),
        ),
    );
    expect([Number(env.PORT), Number(env.ADMIN_PORT)]).toEqual(ports);
  });
});
