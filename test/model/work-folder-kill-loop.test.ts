/**
 * The "Must show": 20 times, `gptq branches` (two small llama2-s branches, a checkpoint
 * after every layer) is SIGKILLed at a random moment, a random file of its work folders gets
 * random bytes flipped, and `--resume` runs. It must either refuse with one line naming the
 * file (and then the way out that line gives must build the branch), or finish with every file
 * bit-identical (sha256) to an uninterrupted build: never a different branch with exit 0.
 * Nothing outside the output folder may change. The randomness is seeded: the seed is printed,
 * and WORK_KILL_SEED=<seed> replays a run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hashBranch } from '../../src/gptq/branch-hash';
import { runCli } from '../helpers/cli';
import { LLAMA2_S } from '../helpers/shared';
import { branchesArgs, flipBytes, oneErrorLine, runKilled, seeded, treeHashes, writeTinyMatrix } from '../helpers/work-folder';

jest.setTimeout(420_000);

const BRANCHES = ['main', 'b3'];
const ROUNDS = 20;

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out.sort();
}

test(`SIGKILL at a random point, a random work file corrupted, --resume: refused naming the file or bit-identical, ${ROUNDS} times`, async () => {
  const seed = Number(process.env.WORK_KILL_SEED ?? Date.now() % 1e9);
  console.log(`work-folder kill loop: seed ${seed} (WORK_KILL_SEED=${seed} replays it)`);
  const rand = seeded(seed);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'work-kill-'));
  const modelBefore = treeHashes(LLAMA2_S);
  try {
    const matrix = writeTinyMatrix(path.join(tmp, 'm.json'), ['main', 'b3']);
    const t0 = Date.now();
    const r = runCli(branchesArgs(matrix, path.join(tmp, 'ref')));
    const full = Date.now() - t0;
    expect(r.code).toBe(0);
    const ref = Object.fromEntries(await Promise.all(BRANCHES.map(async (b) => [b, await hashBranch(path.join(tmp, 'ref', b))] as const)));

    const tally = { refused: 0, identical: 0, corrupted: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const out = path.join(tmp, `out-${round}`);
      const args = branchesArgs(matrix, out);
      const outside = treeHashes(tmp, [out]);
      const at = Math.floor(rand() * full * 1.05);
      await runKilled(args, { ms: at });
      // Corrupt one random file of the work folders (layer files, activations, state.json, lock, temporaries).
      const candidates = fs.existsSync(out) ? fs.readdirSync(out).filter((d) => d.endsWith('.partial')).flatMap((d) => filesUnder(path.join(out, d))) : [];
      let victim: string | null = null;
      if (candidates.length > 0) {
        victim = candidates[Math.floor(rand() * candidates.length)];
        flipBytes(victim, rand, 1 + Math.floor(rand() * 4));
        tally.corrupted++;
      }
      const what = `round ${round} (seed ${seed}, killed at ${at} ms, corrupted ${victim ?? 'nothing'})`;
      const res = runCli([...args, '--resume']);
      if (res.code !== 0) {
        const line = oneErrorLine(res);
        if (!victim || !line.includes(victim)) throw new Error(`${what}: refused without naming the corrupted file: ${line}`);
        expect(res.code).toBe(1);
        tally.refused++;
        // The way out the line gives: remove the work folder it names, and resume.
        // A corrupted lock can read as another host's: then the way out is to remove that lock.
        const m = / remove (\S+\.partial) to build /.exec(line) ?? /if that run is gone, remove (\S+\.partial\/lock)/.exec(line);
        if (!m) throw new Error(`${what}: no way out in: ${line}`);
        expect(path.dirname(m[1].replace(/\/lock$/, ''))).toBe(out);
        fs.rmSync(m[1], { recursive: true, force: true });
        const again = runCli([...args, '--resume']);
        if (again.code !== 0) throw new Error(`${what}: the way out failed: ${again.stderr}`);
      } else {
        tally.identical++;
      }
      for (const b of BRANCHES) {
        const got = await hashBranch(path.join(out, b));
        if (JSON.stringify(got) !== JSON.stringify(ref[b])) throw new Error(`${what}: ${b} differs from the uninterrupted build`);
      }
      expect(fs.readdirSync(out).sort()).toEqual([...BRANCHES].sort());
      expect(treeHashes(tmp, [out])).toEqual(outside);
      fs.rmSync(out, { recursive: true, force: true });
    }
    console.log(`work-folder kill loop: seed ${seed}: ${tally.corrupted} corrupted, ${tally.refused} refused naming the file, ${tally.identical} finished bit-identical`);
    expect(treeHashes(LLAMA2_S)).toEqual(modelBefore);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
