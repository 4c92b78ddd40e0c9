/**
 * The CPU kernel checks (native/kernels/cpu/checks/*_check.cc: each kernel of llama.h,
 * gemm.h and QEP's (hessian.h cross term, qep.h) against an fp64 reference with a tolerance derived from its arithmetic), built with
 * the addon's flags by native/tests/build-cpu-checks.sh and run here: every program must exit
 * 0 with at least one PASS line and no FAIL line. No GPU needed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '../..');
const checks = fs
  .readdirSync(path.join(root, 'native/kernels/cpu/checks'))
  .filter((f) => f.endsWith('_check.cc'))
  .map((f) => f.replace(/\.cc$/, ''))
  .sort();

beforeAll(() => {
  execFileSync('bash', [path.join(root, 'native/tests/build-cpu-checks.sh')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}, 600_000);

test('there are CPU kernel checks to run', () => {
  expect(checks).toEqual(expect.arrayContaining(['gemm_check', 'gptaq_check', 'llama_check', 'qep_check']));
});

for (const name of checks) {
  test(`${name}: every case passes`, () => {
    const r = spawnSync(path.join(root, 'build/cpu-checks', name), [], { encoding: 'utf8', timeout: 300_000 });
    const lines = r.stdout.split('\n');
    const failed = lines.filter((l) => l.startsWith('FAIL'));
    expect(failed).toEqual([]);
    expect(lines.filter((l) => l.startsWith('PASS')).length).toBeGreaterThan(0);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
}
