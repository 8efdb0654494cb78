#!/usr/bin/env node
/**
 * Runs a TypeScript bench script of e2e/bench without a build step, the way ts-jest runs the
 * e2e tests: each .ts file is transpiled on require (typescript.transpileModule, the repository's
 * tsconfig options). Type checking is separate: `tsc -p e2e/bench --noEmit` (make bench does it).
 *   node e2e/bench/run.js e2e/bench/envoy-bench.ts
 */
'use strict';
const fs = require('fs');
const path = require('path');
const ts = require('typescript');

const compilerOptions = {
  module: ts.ModuleKind.CommonJS,
  target: ts.ScriptTarget.ES2022,
  esModuleInterop: true,
  inlineSourceMap: true,
};
require.extensions['.ts'] = (module, filename) => {
  const src = fs.readFileSync(filename, 'utf8');
  const out = ts.transpileModule(src, { compilerOptions, fileName: filename });
  module._compile(out.outputText, filename);
};

const script = process.argv[2];
if (!script) {
  console.error('usage: node e2e/bench/run.js <script.ts> [args...]');
  process.exit(2);
}
process.argv.splice(1, 1); // the script sees itself as argv[1]
require(path.resolve(script));
