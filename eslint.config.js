// Lint for the whole repository: typescript-eslint's recommended rules on every TypeScript
// file, imports at the top and each module imported once. `npm test` runs it with zero
// warnings allowed.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

export default tseslint.config(
  {
    ignores: ['node_modules/', 'dist/', '**/dist/', 'src/generated/', 'clients/typescript/src/generated/', '.data/', 'scratch/', 'coverage/'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { 'import-x': importX },
    rules: {
      'import-x/first': 'error',
      'import-x/no-duplicates': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // `catch {}` where a failure is expected and its absence is the point (a process already gone …).
      'no-empty': ['error', { allowEmptyCatch: true }],
    },
  },
  {
    // Tests and benches read JSON answers whose shape the assertions check.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['**/*.js', '**/*.cjs', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', require: 'readonly', module: 'writable' } },
  },
);
