// One jest run for the whole repository: each component is a jest project with its own config.
module.exports = {
  projects: ['<rootDir>/service', '<rootDir>/plugin', '<rootDir>/e2e', '<rootDir>/istio'],
};
