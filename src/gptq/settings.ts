/** The settings of one GPTQ branch, checked against the model before any work starts. */
import { UserError } from '../errors';
import { LlamaConfig } from '../model/config';
import { LINEARS, LinearName } from '../model/weights';
import { GptqOptions } from '../native';
import { SUPPORTED_BITS } from './format';

export const BLOCK_SIZE = 128;

/** The solver's options for these settings (either engine). */
export function solverOptions(s: QuantizeSettings): GptqOptions {
  return {
    bits: s.bits, groupSize: s.groupSize, actOrder: s.actOrder, staticGroups: s.staticGroups,
    sym: s.sym, mse: !!s.mse, dampPercent: s.dampPercent, blockSize: BLOCK_SIZE,
  };
}

/** The solver's options (GptqOptions, less the fixed block size) plus the pipeline's. */
export interface QuantizeSettings extends Omit<GptqOptions, 'blockSize'> {
  trueSequential: boolean;
  /** Round-to-nearest on the same grid, no Hessians: the baseline GPTQ is measured against. */
  rtn?: boolean;
}

/** Input width K and output width N of each linear of a decoder layer. */
export function linearShape(c: LlamaConfig, name: LinearName): { n: number; k: number } {
  const qd = c.numHeads * c.headDim, kvd = c.numKvHeads * c.headDim;
  switch (name) {
    case 'self_attn.q_proj': return { n: qd, k: c.hiddenSize };
    case 'self_attn.k_proj':
    case 'self_attn.v_proj': return { n: kvd, k: c.hiddenSize };
    case 'self_attn.o_proj': return { n: c.hiddenSize, k: qd };
    case 'mlp.gate_proj':
    case 'mlp.up_proj': return { n: c.intermediateSize, k: c.hiddenSize };
    case 'mlp.down_proj': return { n: c.hiddenSize, k: c.intermediateSize };
  }
}

export function validateSettings(s: QuantizeSettings, c: LlamaConfig): void {
  if (!SUPPORTED_BITS.includes(s.bits)) {
    throw new UserError(`--bits ${s.bits} is not supported (use 2, 3, 4 or 8)`);
  }
  if (!(s.groupSize === -1 || (Number.isInteger(s.groupSize) && s.groupSize > 0))) {
    throw new UserError(`--group-size ${s.groupSize} is invalid (use -1 or a positive divisor of the input widths)`);
  }
  if (!(Number.isFinite(s.dampPercent) && s.dampPercent >= 0 && s.dampPercent < 1)) {
    throw new UserError(`--damp ${s.dampPercent} is invalid (a fraction in [0, 1), e.g. 0.01)`);
  }
  if (!s.sym) {
    // AutoGPTQ stores zero − 1 in the v1 ('gptq') format and refuses asymmetric grids for it
    // too: a zero point of 0 underflows and reads back as 2^bits. The solver supports them.
    throw new UserError('--no-sym: asymmetric grids cannot be stored faithfully in the AutoGPTQ v1 ("gptq") format (a zero point of 0 underflows); use --sym');
  }
  if (s.staticGroups && s.groupSize === -1) {
    throw new UserError('--static-groups needs a group size (--group-size > 0)');
  }
  for (const name of LINEARS) {
    const { n, k } = linearShape(c, name);
    if (s.groupSize !== -1 && k % s.groupSize !== 0) {
      throw new UserError(`--group-size ${s.groupSize} does not divide the input width ${k} of ${name}`);
    }
    // AutoGPTQ packs 32 codes per `bits` int32 words along K, and zeros along N.
    if (k % 32 !== 0 || n % 32 !== 0) {
      throw new UserError(`${name} is ${n}×${k}: the AutoGPTQ format needs both widths to be multiples of 32`);
    }
  }
}
