// Prints "N passed, N failed" for the whole run from jest's --json output.
// A missing or unreadable results file (the build failed before jest ran) counts as one failure.
const fs = require('fs');
const [file, rc] = process.argv.slice(2);
let passed = 0;
let failed;
try {
  const r = JSON.parse(fs.readFileSync(file, 'utf8'));
  passed = r.numPassedTests;
  // Suites that failed to run (syntax error, failed beforeAll) have no failed tests: count them.
  failed = r.numFailedTests + r.numRuntimeErrorTestSuites;
} catch (e) {
  console.error(`no jest results at ${file}: ${e.message}`);
  failed = 1;
}
if (failed === 0 && rc && rc !== '0') failed = 1;
console.log(`${passed} passed, ${failed} failed`);
