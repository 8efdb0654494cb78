// One free-port finder for tests, benchmarks and the local stack (make up): the e2e harness's.
export { freePort } from '../e2e/src/harness/ports';
