// One jest run for the whole repository: each component is a jest project with its own config.
module.exports = {
  // Global: applies to every project (per-project values are ignored by jest).
  testTimeout: 30000,
  projects: ['<rootDir>/service', '<rootDir>/plugin', '<rootDir>/e2e', '<rootDir>/istio'],
};
