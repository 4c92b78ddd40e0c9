// The perplexity driver (src/eval/engine.ts) over a scripted engine: the order of the stages,
// the progress, the protocol's arithmetic and the errors every engine gets from the driver.
import { UserError } from '../../src/errors';
import { EvalEngine, HeadOutput, runEvalEngine } from '../../src/eval/engine';
import { LlamaModel } from '../../src/model/llama-model';

const fakeModel = (numLayers: number) => ({ dir: '/m', config: { numLayers } }) as unknown as LlamaModel;

class Scripted implements EvalEngine {
  readonly units = { embed: 1, layer: 2, head: 3 };
  readonly nonFiniteHint = '; hint';
  calls: string[] = [];
  constructor(private readonly out: HeadOutput, private readonly badLayer = -1) {}
  async embed(tick: () => void) { this.calls.push('embed'); tick(); }
  async layer(i: number, tick: () => void) { this.calls.push(`layer ${i}`); tick(); tick(); return i === this.badLayer ? 7 : 0; }
  async head(tick: () => void) { this.calls.push('head'); tick(); tick(); tick(); return this.out; }
  async close() { this.calls.push('close'); }
}

describe('runEvalEngine', () => {
  // 2 windows of seqlen 3: targets per window = 2; stride 3 leaves one unused value per window
  const nll = Float64Array.from([1, 2, 99, 3, 5, 99]);
  const tokens = new Int32Array(6);

  it('runs embed → every layer → head → close, in order, with one progress total', async () => {
    const e = new Scripted({ nll, stride: 3, nonFinite: 0 });
    const progress: [number, number, string][] = [];
    const r = await runEvalEngine(fakeModel(2), e, tokens, 3, { onProgress: (d, t, l) => progress.push([d, t, l]) });
    expect(e.calls).toEqual(['embed', 'layer 0', 'layer 1', 'head', 'close']);
    expect(progress.map((p) => p[0])).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(new Set(progress.map((p) => p[1]))).toEqual(new Set([1 + 2 * 2 + 3]));
    expect(progress[1][2]).toBe('layer 1/2');
    // window means 1.5 and 4: ppl = exp((1.5 + 4) / 2)
    expect(r.windowNll).toEqual([1.5, 4]);
    expect(r.perplexity).toBeCloseTo(Math.exp(2.75), 12);
    expect(r.windows).toBe(2);
  });

  it('keeps the per-token NLL without the stride gaps when asked', async () => {
    const r = await runEvalEngine(fakeModel(0), new Scripted({ nll, stride: 3, nonFinite: 0 }), tokens, 3, { keepTokens: true });
    expect(Array.from(r.tokenNll!)).toEqual([1, 2, 3, 5]);
  });

  it('stops at the first layer whose hidden states are not finite, and still closes the engine', async () => {
    const e = new Scripted({ nll, stride: 3, nonFinite: 0 }, 0);
    await expect(runEvalEngine(fakeModel(3), e, tokens, 3)).rejects.toThrow(
      new UserError('/m: the hidden states are not finite after decoder layer 0 (7 NaN/Inf values; hint)'),
    );
    expect(e.calls).toEqual(['embed', 'layer 0', 'close']);
  });

  it('refuses non-finite logits and an overflowing perplexity', async () => {
    await expect(runEvalEngine(fakeModel(1), new Scripted({ nll, stride: 3, nonFinite: 2 }), tokens, 3)).rejects.toThrow(
      '/m: the logits are not finite for 2 token(s)',
    );
    const huge = Float64Array.from([800, 800, 0, 800, 800, 0]);
    await expect(runEvalEngine(fakeModel(1), new Scripted({ nll: huge, stride: 3, nonFinite: 0 }), tokens, 3)).rejects.toThrow(
      'the perplexity is not finite (exp of a mean NLL of 800.0 overflows)',
    );
  });

  it('refuses tokens that are not whole windows before any stage runs (and closes the engine)', async () => {
    const e = new Scripted({ nll, stride: 3, nonFinite: 0 });
    await expect(runEvalEngine(fakeModel(1), e, new Int32Array(5), 3)).rejects.toThrow(RangeError);
    expect(e.calls).toEqual(['close']);
  });
});
