/**
 * Perplexity with the GPTQ paper's protocol (engine.ts's driver) on the native CPU or CUDA
 * engine. The CPU engine goes layer by layer: the hidden states of every window stay in memory
 * while one decoder layer's weights at a time are loaded, applied and dropped, the same shape
 * of computation the quantizer runs.
 */
import { Device } from '../device';
import { decoderLayer, embed, NativeDims, windowNll } from '../native';
import { LlamaModel } from '../model/llama-model';
import { EvalEngine, HeadOutput, PerplexityResult, runEvalEngine, windowCount } from './engine';
import { CudaEvalEngine, CudaEvalStats } from './perplexity-cuda';

export type { PerplexityResult } from './engine';

export interface PerplexityOptions {
  /** The engine (default cpu; the CLI picks it with chooseDevice). */
  device?: Device;
  /** CPU engine: store activations as fp16 between ops, as an fp16 model in transformers does (the GPU always does). */
  round16: boolean;
  /** CPU engine: windows per native call, the granularity of progress reports (default 4). */
  windowsPerCall?: number;
  /** CUDA engine: windows per chunk of the forward (default 4). */
  chunkWindows?: number;
  /** Keep per-token NLL (and argmax on the CPU engine) in the result, for golden comparisons. */
  keepTokens?: boolean;
  /** Called after each unit of work: done / total, with a short label. */
  onProgress?: (done: number, total: number, label: string) => void;
}

/** `tokens` holds `windows × seqlen` ids, window after window. */
export async function evaluatePerplexity(
  model: LlamaModel, tokens: Int32Array, seqlen: number, opts: PerplexityOptions,
): Promise<PerplexityResult & { stats?: CudaEvalStats }> {
  windowCount(tokens, seqlen);
  if (opts.device === 'cuda') {
    const engine = await CudaEvalEngine.open(model, tokens, seqlen, opts.chunkWindows ?? 4);
    const res = await runEvalEngine(model, engine, tokens, seqlen, opts);
    return { ...res, stats: engine.stats };
  }
  return runEvalEngine(model, new CpuEvalEngine(model, tokens, seqlen, opts.round16, opts.windowsPerCall ?? 4), tokens, seqlen, opts);
}

/** The native CPU engine: fp32 (or fp16-rounded) hidden states of every window in memory. */
class CpuEvalEngine implements EvalEngine {
  readonly units: { embed: number; layer: number; head: number };
  readonly nonFiniteHint: string;
  private readonly dims: NativeDims;
  private readonly chunks: number[][] = [];
  private hidden: Float32Array[] = [];

  constructor(private readonly model: LlamaModel, private readonly tokens: Int32Array, private readonly seqlen: number, round16: boolean, perCall: number) {
    const windows = tokens.length / seqlen;
    const per = Math.max(1, perCall);
    for (let w = 0; w < windows; w += per) {
      this.chunks.push(Array.from({ length: Math.min(per, windows - w) }, (_, k) => w + k));
    }
    this.dims = model.dims(round16);
    this.units = { embed: 1, layer: this.chunks.length, head: this.chunks.length };
    this.nonFiniteHint = round16 ? '; activations are stored in fp16, see --fp32-activations' : '';
  }

  async embed(tick: () => void): Promise<void> {
    const c = this.model.config;
    const windows = this.tokens.length / this.seqlen;
    this.hidden = Array.from({ length: windows }, () => new Float32Array(this.seqlen * c.hiddenSize));
    await embed(this.tokens, await this.model.embedding(), c.vocabSize, this.hidden);
    tick();
  }

  async layer(layer: number, tick: () => void): Promise<number> {
    const weights = await this.model.layer(layer);
    let nonFinite = 0;
    for (const chunk of this.chunks) {
      nonFinite += await decoderLayer(chunk.map((w) => this.hidden[w]), weights, this.dims, this.seqlen);
      tick();
    }
    return nonFinite;
  }

  async head(tick: () => void): Promise<HeadOutput> {
    const S = this.seqlen;
    const windows = this.tokens.length / S;
    const norm = await this.model.finalNorm();
    const lmHead = await this.model.lmHead();
    const nll = new Float32Array(windows * (S - 1));
    const argmax = new Int32Array(windows * S);
    let nonFinite = 0;
    for (const chunk of this.chunks) {
      const first = chunk[0], end = chunk[chunk.length - 1] + 1;
      const out = await windowNll(chunk.map((w) => this.hidden[w]), this.tokens.subarray(first * S, end * S), norm, lmHead, this.dims, S);
      nll.set(out.nll, first * (S - 1));
      argmax.set(out.argmax, first * S);
      nonFinite += out.nonFinite;
      tick();
    }
    return { nll, stride: S - 1, nonFinite, argmax };
  }

  async close(): Promise<void> {
    this.hidden = [];
  }
}
