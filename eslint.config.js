// @ts-check
// ESLint: typescript-eslint's recommended rules without type information (fast: no program to build; `tsc
// --noEmit` does the type checking), over every script of the repository: the TypeScript sources, tests and
// benchmarks, and the plain JavaScript of bin/ and scripts/. Tuned below to what this code does on purpose.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig([
  globalIgnores(['node_modules/', 'dist/', 'dist.lock/', '.stack/', 'coverage/', 'test/fixtures/']),
  {
    files: ['**/*.{ts,mjs,js}'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: globals.node },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A name that starts with `_` is unused on purpose: a parameter a callback's signature requires, or a
      // property taken out of an object so that the rest is what is left (`const { password: _p, ...rest }`).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // Two assignments made as one statement, `if (c) (at = mid), (lo = mid + 1);`, are this code's idiom on hot
      // paths; the rule counts every comma expression as unused. (tsc still refuses a comma's side-effect-free
      // left operand.)
      '@typescript-eslint/no-unused-expressions': 'off',
      // `let n = 0;` before a `try` that assigns it gives the variable its type and says what it is by default.
      'no-useless-assignment': 'off',
      // An error rethrown from a catch carries what went wrong in its one-line message, which is what the
      // operator reads (the CLI prints messages, not cause chains).
      'preserve-caught-error': 'off',
      // Log lines carry terminal escapes and other control characters; patterns match them on purpose.
      'no-control-regex': 'off',
      // `l` is V8's linear-time engine flag (--enable-experimental-regexp-engine), which core/regex.ts asks for.
      'no-invalid-regexp': ['error', { allowConstructorFlags: ['l'] }],
      // `let { docs, unusable } = …` where only `docs` is assigned again: one destructuring, not two.
      // A variable a closure reads before its one assignment (a cleanup defined before the resource exists) stays let.
      'prefer-const': ['error', { destructuring: 'all', ignoreReadBeforeAssign: true }],
    },
  },
  {
    // Tests and benchmarks read Elasticsearch's and other servers' JSON answers as they come.
    files: ['test/**', 'bench/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
]);
