// ESLint (flat config) with typescript-eslint's type-aware rules.
//
// Rule set: eslint's `recommended` plus typescript-eslint's `recommendedTypeChecked` (which
// includes no-floating-promises, no-misused-promises, await-thenable, the no-unsafe-* family
// and require-await), type information from tsconfig.test.json (src/ and test/). On top:
// promise rules as errors also for `void`-returning callbacks (checksVoidReturn), unused
// variables allowed when named `_…`; require-await off: an `async` function without `await`
// here implements a Promise-returning interface (test doubles of a download, loaders that
// may do I/O) and turns a throw into a rejection, which is what its callers handle. In test/ the no-unsafe-* family is off: tests read the
// CLI's JSON output (`any`) and check its shape with expect, so a wrong shape fails the test
// anyway, and a cast on every JSON.parse would be noise. Not used: the `strict`/`stylistic`
// sets and consistent-type-imports (style, not bugs; they would touch most files).
// `npm run lint` fails on warnings too (--max-warnings 0), unused eslint-disable comments included.
//
// Linted: src/, test/, bin/, the JS config files. Not linted: bench/ (its scripts are moving),
// native/, scripts/, build outputs.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/**', 'build/**', 'node_modules/**', 'bench/**', 'native/**', 'scripts/**', 'offline/**', 'carry/**', 'tmp/**'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
      globals: globals.node,
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: globals.node },
  },
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs' },
  },
);
