/**
 * Parse a Hugging Face Llama `config.json` into the few numbers GPTQ needs,
 * rejecting (with one clear line) every variant the quantizer does not implement.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { readJsonFile } from '../io/json-file';

export type LlamaDtype = 'float16' | 'bfloat16' | 'float32';

export interface LlamaConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  tieWordEmbeddings: boolean;
  /** 'float16' | 'bfloat16' | 'float32' */
  dtype: string;
  maxPositionEmbeddings: number;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  /** The raw `quantization_config` object, if the config has one. */
  quantization?: unknown;
  raw: Record<string, unknown>;
}

const DTYPES: readonly string[] = ['float16', 'bfloat16', 'float32'];
/** Defaults of transformers' LlamaConfig for keys that older/smaller configs may omit. */
const DEFAULT_ROPE_THETA = 10000;
const DEFAULT_RMS_NORM_EPS = 1e-6;
const DEFAULT_MAX_POSITIONS = 2048;

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? s.slice(0, 77) + '...' : s;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function parseLlamaConfig(json: unknown, source: string): LlamaConfig {
  const fail = (msg: string): never => {
    throw new UserError(`${source}: ${msg}`);
  };
  if (!isObject(json)) fail(`expected a JSON object, got ${Array.isArray(json) ? 'an array' : show(json)}`);
  const raw = json as Record<string, unknown>;

  const posInt = (key: string, fallback?: number): number => {
    const v = raw[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      return fail(`${key} is missing (a positive integer is required)`);
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      return fail(`${key} must be a positive integer, got ${show(v)}`);
    }
    return v;
  };
  const tokenId = (key: string, allowList: boolean): number | number[] | null => {
    const v = raw[key];
    if (v === undefined || v === null) return null;
    const ok = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;
    if (ok(v)) return v;
    if (allowList && Array.isArray(v) && v.length > 0 && v.every(ok)) return v;
    return fail(`${key} must be a non-negative integer${allowList ? ' or a list of them' : ''}, got ${show(v)}`);
  };

  // --- what kind of model this is -------------------------------------------------
  const modelType = raw.model_type;
  if (modelType === undefined) fail('model_type is missing (only llama is supported)');
  if (modelType !== 'llama') fail(`model_type ${show(modelType)} is not supported (only llama)`);

  const arch = raw.architectures;
  if (arch !== undefined && arch !== null) {
    if (!Array.isArray(arch) || arch.length === 0 || arch.some((a) => a !== 'LlamaForCausalLM')) {
      fail(`architectures ${show(arch)} is not supported (only LlamaForCausalLM)`);
    }
  }

  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') fail(`hidden_act ${show(act)} is not supported (only silu)`);

  for (const key of ['attention_bias', 'mlp_bias']) {
    const v = raw[key];
    if (v === true) fail(`${key}: true is not supported (Llama layers without biases only)`);
    if (v !== undefined && v !== null && v !== false) fail(`${key} must be true or false, got ${show(v)}`);
  }

  const tp = posInt('pretraining_tp', 1);
  if (tp > 1) fail(`pretraining_tp ${tp} is not supported (only 1)`);

  // --- RoPE: classic `rope_theta` + `rope_scaling`, or newer `rope_parameters` ----------
  const scaling = raw.rope_scaling;
  if (scaling !== undefined && scaling !== null) {
    const kind = isObject(scaling) ? scaling.rope_type ?? scaling.type : undefined;
    fail(`rope_scaling ${kind !== undefined ? `(type ${show(kind)}) ` : ''}is not supported (only plain RoPE: rope_scaling must be null)`);
  }
  let ropeTheta: number | undefined;
  const params = raw.rope_parameters;
  if (params !== undefined && params !== null) {
    if (!isObject(params)) fail(`rope_parameters must be an object, got ${show(params)}`);
    const p = params as Record<string, unknown>;
    const ropeType = p.rope_type ?? 'default';
    if (ropeType !== 'default') fail(`rope_parameters.rope_type ${show(ropeType)} is not supported (only "default")`);
    if (p.rope_theta !== undefined) {
      if (typeof p.rope_theta !== 'number' || !(p.rope_theta > 0)) {
        fail(`rope_parameters.rope_theta must be a positive number, got ${show(p.rope_theta)}`);
      }
      ropeTheta = p.rope_theta as number;
    }
  }
  const classicTheta = raw.rope_theta;
  if (classicTheta !== undefined && classicTheta !== null) {
    if (typeof classicTheta !== 'number' || !(classicTheta > 0)) {
      fail(`rope_theta must be a positive number, got ${show(classicTheta)}`);
    }
    if (ropeTheta !== undefined && ropeTheta !== classicTheta) {
      fail(`rope_theta ${show(classicTheta)} conflicts with rope_parameters.rope_theta ${ropeTheta}`);
    }
    ropeTheta = classicTheta as number;
  }

  // --- shapes -----------------------------------------------------------------------
  const hiddenSize = posInt('hidden_size');
  const intermediateSize = posInt('intermediate_size');
  const numLayers = posInt('num_hidden_layers');
  const numHeads = posInt('num_attention_heads');
  const vocabSize = posInt('vocab_size');
  const numKvHeads = posInt('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    fail(`num_key_value_heads ${numKvHeads} must divide num_attention_heads ${numHeads}`);
  }
  let headDim: number;
  if (raw.head_dim !== undefined && raw.head_dim !== null) {
    headDim = posInt('head_dim');
  } else {
    if (hiddenSize % numHeads !== 0) {
      fail(`hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads} (and no head_dim is given)`);
    }
    headDim = hiddenSize / numHeads;
  }
  if (headDim % 2 !== 0) fail(`head dimension ${headDim} must be even for RoPE`);
  const maxPositionEmbeddings = posInt('max_position_embeddings', DEFAULT_MAX_POSITIONS);

  // --- scalars ----------------------------------------------------------------------
  const eps = raw.rms_norm_eps ?? DEFAULT_RMS_NORM_EPS;
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps)) {
    fail(`rms_norm_eps must be a positive number, got ${show(eps)}`);
  }
  const tie = raw.tie_word_embeddings ?? false;
  if (typeof tie !== 'boolean') fail(`tie_word_embeddings must be true or false, got ${show(tie)}`);

  // `dtype` is the transformers >= 4.56 name, `torch_dtype` the classic one.
  const dtypeKey = raw.dtype !== undefined && raw.dtype !== null ? 'dtype' : 'torch_dtype';
  const dtypeRaw = raw[dtypeKey] ?? 'float32';
  const dtype = typeof dtypeRaw === 'string' ? dtypeRaw.replace(/^torch\./, '') : dtypeRaw;
  if (typeof dtype !== 'string' || !DTYPES.includes(dtype)) {
    fail(`${dtypeKey} ${show(dtypeRaw)} is not supported (only ${DTYPES.join(', ')})`);
  }

  const cfg: LlamaConfig = {
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    rmsNormEps: eps as number,
    ropeTheta: ropeTheta ?? DEFAULT_ROPE_THETA,
    tieWordEmbeddings: tie as boolean,
    dtype: dtype as string,
    maxPositionEmbeddings,
    bosTokenId: tokenId('bos_token_id', false) as number | null,
    eosTokenId: tokenId('eos_token_id', true),
    raw,
  };
  if (raw.quantization_config !== undefined && raw.quantization_config !== null) {
    cfg.quantization = raw.quantization_config;
  }
  return cfg;
}

/** Read and parse `<dir>/config.json`. */
export async function loadLlamaConfig(dir: string): Promise<LlamaConfig> {
  let st;
  try {
    st = await fsp.stat(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new UserError(`model folder not found: ${dir}`);
    throw new UserError(`cannot read model folder ${dir}: ${code ?? (e as Error).message}`);
  }
  if (!st.isDirectory()) throw new UserError(`not a model folder (it is a file): ${dir}`);
  const file = path.join(dir, 'config.json');
  const json = await readJsonFile(file);
  if (json === undefined) throw new UserError(`no config.json in model folder ${dir}`);
  return parseLlamaConfig(json, file);
}
