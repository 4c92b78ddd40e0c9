/**
 * Progress of a `--devices` run on stderr: on a terminal one cli-progress bar per worker (device,
 * branch, layer i/N, elapsed) and a total bar (branches done/total, elapsed); elsewhere one line
 * per event (a worker starts a branch, finishes a layer, finishes a branch), never a redrawn bar.
 */
import * as cliProgress from 'cli-progress';

export interface WorkersProgress {
  /** Worker `slot` (labelled `label`, e.g. `gpu 3`) started `branch` as process `pid`. */
  start(slot: number, label: string, branch: string, pid: number): void;
  /** done/total linears of the branch; the label names the layer (`layer 3/80 q_proj …`). */
  update(slot: number, done: number, total: number, label: string): void;
  /** A branch is over (built, resumed, failed): counts towards the total. */
  finish(slot: number, what: string): void;
  /** A line of text (a worker's warning) that does not break the bars. */
  line(text: string): void;
  stop(): void;
}

const elapsed = (t0: number) => `${((Date.now() - t0) / 1000).toFixed(0)} s`;
/** `layer 3/80` of a driver progress label, or null. */
const layerOf = (label: string) => /layer (\d+)\/(\d+)/.exec(label);

export function createWorkersProgress(branches: number, opts: { quiet?: boolean; noun?: string } = {}): WorkersProgress {
  const noun = opts.noun ?? 'branches';
  const t0 = Date.now();
  let finished = 0;
  if (opts.quiet) return { start() {}, update() {}, finish() { finished++; }, line: (t) => process.stderr.write(`${t}\n`), stop() {} };
  if (process.stderr.isTTY) {
    const multi = new cliProgress.MultiBar(
      { stream: process.stderr, format: '{who} | {branch} [{bar}] {layer} | {elapsed}', hideCursor: true, clearOnComplete: false },
      cliProgress.Presets.shades_classic,
    );
    const total = multi.create(branches, 0, { who: 'total', branch: `${branches} ${noun}`, layer: `0/${branches} done`, elapsed: '0 s' });
    const bars = new Map<number, { bar: cliProgress.SingleBar; started: number; branch: string; label: string }>();
    const tick = setInterval(() => {
      for (const b of bars.values()) b.bar.update({ elapsed: elapsed(b.started) });
      total.update(finished, { layer: `${finished}/${branches} done`, elapsed: elapsed(t0) });
    }, 1000);
    tick.unref();
    return {
      start(slot, label, branch, pid) {
        const have = bars.get(slot);
        const payload = { who: label.padEnd(6), branch, layer: `pid ${pid}`, elapsed: '0 s' };
        if (have) {
          have.bar.setTotal(1);
          have.bar.update(0, payload);
          Object.assign(have, { started: Date.now(), branch, label });
        } else bars.set(slot, { bar: multi.create(1, 0, payload), started: Date.now(), branch, label });
      },
      update(slot, done, totalLinears, label) {
        const b = bars.get(slot);
        if (!b) return;
        const m = layerOf(label);
        b.bar.setTotal(totalLinears);
        b.bar.update(done, { layer: m ? `layer ${m[1]}/${m[2]}` : label, elapsed: elapsed(b.started) });
      },
      finish(slot, what) {
        finished++;
        const b = bars.get(slot);
        b?.bar.update({ layer: what });
        total.update(finished, { layer: `${finished}/${branches} done`, elapsed: elapsed(t0) });
      },
      line: (text) => multi.log(`${text}\n`),
      stop() {
        clearInterval(tick);
        multi.stop();
      },
    };
  }
  const slots = new Map<number, { label: string; branch: string; started: number; layer: number }>();
  return {
    start(slot, label, branch, pid) {
      slots.set(slot, { label, branch, started: Date.now(), layer: -1 });
      process.stderr.write(`${label}: ${branch}: started (worker pid ${pid})\n`);
    },
    update(slot, done, totalLinears, label) {
      const s = slots.get(slot);
      const m = layerOf(label);
      if (!s || !m) return;
      // The label names the layer being worked on: when it moves on, the one before is finished.
      const [layer, layers] = [Number(m[1]), Number(m[2])];
      const finishedLayer = done === totalLinears ? layer : layer - 1;
      if (s.layer < 0) s.layer = layer - 1; // the first event: the layers before it are done (a resume)
      if (finishedLayer <= s.layer) return;
      s.layer = finishedLayer;
      process.stderr.write(`${s.label}: ${s.branch}: layer ${finishedLayer}/${layers} (${elapsed(s.started)})\n`);
    },
    finish(slot, what) {
      finished++;
      const s = slots.get(slot);
      process.stderr.write(`${s ? `${s.label}: ${s.branch}: ` : ''}${what}; total ${finished}/${branches} ${noun} (${elapsed(t0)})\n`);
    },
    line: (text) => process.stderr.write(`${text}\n`),
    stop() {},
  };
}
