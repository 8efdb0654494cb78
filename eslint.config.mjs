// ESLint for the whole tree: type-aware rules (floating promises, unused values) on the
// TypeScript that runs on Node; syntax-level rules on the AssemblyScript plugin sources,
// whose types (i32, usize, …) only the AssemblyScript compiler knows. Formatting is Prettier's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// AssemblyScript sources (compiled by asc, not tsc).
const AS = ['plugin/assembly/**/*.ts', 'plugin/test-harness/**/*.ts', 'e2e/bench/noop-filter/**/*.ts'];
// AssemblyScript files with decorators on functions (@inline, @external), which no TypeScript
// parser accepts: asc alone checks them (also listed in .prettierignore).
const AS_UNPARSABLE = [
  'e2e/bench/noop-filter/read-host.ts',
  ...['abi', 'base64', 'billed', 'bytes', 'eventstream', 'index', 'prompt-estimate', 'usage-keys', 'usage'].map((f) => `plugin/assembly/${f}.ts`),
];
const unused = ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }];

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**',
      '**/dist/**',
      'plugin/build/**',
      '.venv/**',
      '.tools/**',
      '.run/**',
      'test-results/**',
      'docs/bench/**',
      'istio/tools/**',
      'coverage/**',
      ...AS_UNPARSABLE,
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  // A const that a callback reads before it is assigned would throw: such a let stays a let.
  { rules: { 'prefer-const': ['error', { ignoreReadBeforeAssign: true }] } },
  {
    files: ['**/*.ts'],
    ignores: AS,
    languageOptions: { parserOptions: { project: ['./tsconfig.lint.json'], tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': unused,
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // AssemblyScript: TypeScript syntax, its own types and decorators.
    files: AS,
    rules: {
      // Exported host callbacks keep the ABI's parameters whether they read them or not.
      '@typescript-eslint/no-unused-vars': ['error', { args: 'none', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'off',
      'no-undef': 'off',
      // AssemblyScript locals are declared with a value (its typed zero) before a branch assigns them.
      'no-useless-assignment': 'off',
      '@typescript-eslint/no-inferrable-types': 'off',
      '@typescript-eslint/no-namespace': 'off',
    },
  },
  {
    // CommonJS scripts run by node as they are.
    files: ['**/*.js', '**/*.cjs'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: {
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        console: 'readonly',
        __dirname: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        URL: 'readonly',
        fetch: 'readonly',
      },
    },
  },
);
