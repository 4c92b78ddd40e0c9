/**
 * `gptq report --devices`: the perplexities the report has to measure, each one `gptq eval`
 * child process (the same protocol and code as the report's own measurement, so the same number)
 * on one worker's device; the report is then assembled as in a sequential run.
 */
import { Device } from '../device';
import { WorkerSlot } from './devices';
import { createWorkersProgress } from './progress-workers';
import { runPool } from './workers';

export interface EvalJob {
  /** The report row (`fp16`, a branch, a baseline). */
  name: string;
  modelDir: string;
  /** Which --dataset column. */
  column: number;
  dataset: string;
}

/** The progress label of one measurement; the dataset is named when the report has more than one column. */
export function evalLabel(name: string, dataset: string, columns: number): string {
  return columns > 1 ? `eval ${name} on ${dataset}` : `eval ${name}`;
}

/** Each job's perplexity, keyed `${column}\0${modelDir}` (the report's lookup). */
export async function evaluateOnWorkers(
  slots: WorkerSlot[], jobs: EvalJob[], o: { split?: string; seqlen: number; maxWindows?: number; device: Device; quiet?: boolean; columns: number },
): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (jobs.length === 0) return out;
  const args = (j: EvalJob) => [
    'eval', '--model', j.modelDir, '--dataset', j.dataset, ...(o.split ? ['--split', o.split] : []), '--seqlen', String(o.seqlen),
    ...(o.maxWindows !== undefined ? ['--max-windows', String(o.maxWindows)] : []), '--device', o.device, '--json', '--quiet',
  ];
  const progress = createWorkersProgress(jobs.length, { quiet: o.quiet, noun: 'evaluations' });
  const label = (j: EvalJob) => evalLabel(j.name, j.dataset, o.columns);
  try {
    const results = await runPool(slots, jobs.map((j) => ({ what: label(j), args: args(j) })), {
      onStart: (slot, job, pid) => progress.start(slot, slots[slot].label, label(jobs[job]), pid),
      onLine: (_slot, _job, line) => progress.line(line),
      onEnd: (slot, _job, ok) => progress.finish(slot, ok ? 'done' : 'failed'),
    });
    results.forEach((r, k) => out.set(`${jobs[k].column}\0${jobs[k].modelDir}`, (JSON.parse(r.stdout) as { perplexity: number }).perplexity));
  } finally {
    progress.stop();
  }
  return out;
}
