/**
 * `gptq eval` end to end on the real checkpoints of ../shared, through the CLI, against
 * transformers' figures. The llama2-m run is the full protocol (81 windows × 4096 tokens):
 * about 10 minutes on two cores.
 */
import { runCli } from '../helpers/cli';
import { readSafetensors } from '../helpers/read-safetensors';
import { LLAMA2_M, LLAMA2_S, WIKI_TEST_RAW, sharedPath } from '../helpers/shared';
import * as fs from 'node:fs';

function evalJson(args: string[]): Record<string, number> {
  const r = runCli(['eval', ...args, '--json', '--quiet'], { timeoutMs: 40 * 60 * 1000 });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

test('llama2-s, seqlen 512, 2 windows: the perplexity implied by the forward golden (±0.5 %)', () => {
  const g = readSafetensors(sharedPath('reference', 'golden', 'forward-golden.safetensors'));
  const mean = (a: ArrayLike<number>) => Array.from(a).reduce((s, v) => s + v, 0) / a.length;
  const ref = Math.exp((mean(g.get('window0.nll')) + mean(g.get('window1.nll'))) / 2);
  const r = evalJson(['--model', LLAMA2_S, '--dataset', WIKI_TEST_RAW, '--seqlen', '512', '--max-windows', '2']);
  expect(r.windows).toBe(2);
  expect(r.seqlen).toBe(512);
  expect(Math.abs(r.perplexity / ref - 1)).toBeLessThan(0.005);
}, 5 * 60 * 1000);

test('llama2-m, seqlen 4096, whole wiki.test.raw: transformers perplexity ±0.2 %', () => {
  const quality = JSON.parse(fs.readFileSync(sharedPath('reference', 'quality-llama2-m-4096.json'), 'utf8'));
  const r = evalJson(['--model', LLAMA2_M, '--dataset', WIKI_TEST_RAW, '--seqlen', '4096']);
  expect(r.tokens).toBe(335688);
  expect(r.windows).toBe(81);
  expect(Math.abs(r.perplexity / quality.ppl.fp16 - 1)).toBeLessThan(0.002);
}, 40 * 60 * 1000);
