/**
 * Tests are TypeScript (ts-jest). hyparquet ships ESM only, so it is transformed too.
 *
 * Two projects: `models` holds every test file that reads ../shared (models, datasets, reference
 * figures), found by what it imports: test/helpers/shared.ts, directly or through another file
 * of test/, or a literal path to ../shared; `unit` holds the rest and runs in a checkout without
 * ../shared. `jest` runs both; `jest --selectProjects unit` (npm run test:unit) or `models`
 * (npm run test:models) one of them.
 */
const fs = require('node:fs');
const path = require('node:path');

const TEST_DIR = path.join(__dirname, 'test');
const SHARED_USE = /helpers\/shared['"]|['"](\.\.\/)+shared[/'"]/;
const RELATIVE_IMPORT = /(?:from\s+|require\(\s*|import\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

function testFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return testFiles(p);
    return e.name.endsWith('.test.ts') ? [p] : [];
  });
}

/** Whether `file` (or a file of test/ it imports) uses ../shared. */
function usesShared(file, seen = new Set()) {
  if (seen.has(file)) return false;
  seen.add(file);
  const text = fs.readFileSync(file, 'utf8');
  if (SHARED_USE.test(text)) return true;
  for (const [, spec] of text.matchAll(RELATIVE_IMPORT)) {
    const base = path.resolve(path.dirname(file), spec);
    if (!base.startsWith(TEST_DIR + path.sep)) continue;
    const found = [base, `${base}.ts`, `${base}.js`, path.join(base, 'index.ts')].find((f) => fs.existsSync(f) && fs.statSync(f).isFile());
    if (found && usesShared(found, seen)) return true;
  }
  return false;
}

const files = testFiles(TEST_DIR);
const models = files.filter((f) => usesShared(f));
const unit = files.filter((f) => !models.includes(f));

const project = (displayName, list) => ({
  displayName,
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  // Exact paths (a list that may be empty: then nothing matches, rather than everything).
  testRegex: list.length > 0 ? list.map((f) => `^${escape(f)}$`) : ['^$'],
  transform: {
    '^.+\\.[tj]s$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }],
  },
  transformIgnorePatterns: ['/node_modules/(?!hyparquet)'],
});

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

module.exports = {
  // A global option: jest does not take it from a project's config.
  testTimeout: 120000,
  projects: [project('unit', unit), project('models', models)],
};
