/**
 * Writes one GPTQ branch in the AutoGPTQ "gptq" format, atomically: everything goes into a
 * temporary folder (the work folder's `assembly/`, see build-branch.ts) that replaces the output
 * folder only once complete, so a failed or killed run never leaves something under the output
 * name that looks finished.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { atomicWriteFile } from '../io/atomic';
import { f32ToF16Bits } from '../io/dtypes';
import { asBytes, SafetensorsWriter, TensorData, TensorSpec } from '../io/safetensors-writer';
import { LlamaModel } from '../model/llama-model';
import { LINEARS, LinearName, linearWeight } from '../model/weights';
import { packGptq } from '../native';
import { QuantizedLinear } from './engine';
import {
  makeQuantizeConfig, QUANTIZE_CONFIG_FILE, QuantizeConfig, quantizedTensorNames, quantizedTensorSpecs, safetensorsMetadata,
} from './format';
import { linearShape, QEP_CORRECTED, QuantizeSettings } from './settings';

export const WEIGHTS_FILE = 'model.safetensors';
export const MODEL_FILE_BASE_NAME = 'model';
/** Files of the source folder copied as they are (those that exist). */
const COPIED_FILES = [
  'tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json',
  'generation_config.json',
];

export interface BranchWriterOptions {
  /** Recorded as model_name_or_path (the Hub id or folder the user named). */
  modelNameOrPath: string;
}

export class BranchWriter {
  private constructor(
    readonly out: string,
    readonly tmp: string,
    private readonly model: LlamaModel,
    private readonly config: QuantizeConfig,
    private readonly writer: SafetensorsWriter,
  ) {}

  /**
   * Lays out the weights file in the folder `tmp` (created, and removed on failure) and copies
   * the unquantized tensors. The caller has checked `out` (src/io/output-guard.ts).
   */
  static async create(out: string, tmp: string, model: LlamaModel, s: QuantizeSettings, opts: BranchWriterOptions): Promise<BranchWriter> {
    await fsp.rm(tmp, { recursive: true, force: true });
    await fsp.mkdir(tmp, { recursive: true });
    try {
      const config = makeQuantizeConfig({
        bits: s.bits, groupSize: s.groupSize, dampPercent: s.dampPercent, actOrder: s.actOrder,
        staticGroups: s.staticGroups, sym: s.sym, trueSequential: s.trueSequential,
        modelNameOrPath: opts.modelNameOrPath, modelFileBaseName: MODEL_FILE_BASE_NAME,
      });
      const quantized = new Set<string>();
      const specs: TensorSpec[] = [];
      for (let layer = 0; layer < model.config.numLayers; layer++) {
        for (const name of LINEARS) {
          quantized.add(linearWeight(layer, name));
          const { n, k } = linearShape(model.config, name);
          specs.push(...quantizedTensorSpecs(prefixOf(layer, name), k, n, s.bits, s.groupSize));
        }
      }
      const copied = copiedTensorNames(model);
      for (const t of copied) {
        const info = model.checkpoint.info(t);
        specs.push({ name: t, dtype: info.dtype, shape: info.shape });
      }
      // AutoGPTQ's config has no field for the MSE grid search, QEP, GPTAQ nor recipes; the file's
      // metadata records them (the format itself is unchanged: QEP and GPTAQ only change which
      // weights GPTQ fits).
      const metadata = {
        ...safetensorsMetadata(config), ...(s.mse ? { gptq_forge_mse_grid: 'True' } : {}),
        ...(s.qep !== undefined ? { gptq_forge_qep_alpha: String(s.qep), gptq_forge_qep_linears: QEP_CORRECTED.join(',') } : {}),
        ...(s.gptaq !== undefined ? { gptq_forge_gptaq_alpha: String(s.gptaq) } : {}),
        // The recipe (src/gptq/recipes.ts) it was made with; none for the default recipe.
        ...(s.recipe !== undefined ? { gptq_forge_recipe: s.recipe } : {}),
        ...(s.recipeSkipped !== undefined ? { gptq_forge_recipe_skipped: s.recipeSkipped } : {}),
      };
      const writer = await SafetensorsWriter.create(path.join(tmp, WEIGHTS_FILE), specs, metadata);
      const bw = new BranchWriter(out, tmp, model, config, writer);
      try {
        for (const t of copied) {
          const info = model.checkpoint.info(t);
          // tensorBytes refuses a NaN/Inf by name: a branch never inherits a broken lm_head or norm
          await bw.writeTensors([{ name: t, dtype: info.dtype, shape: info.shape, data: await model.tensorBytes(t) }]);
        }
      } catch (e) {
        await writer.abort(); // closes the file, so a full disk gets its space back now
        throw e;
      }
      return bw;
    } catch (e) {
      await fsp.rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  /** sha256 of every tensor written so far, of the bytes handed to the writer. */
  readonly tensorSha256 = new Map<string, string>();

  /** Writes tensors of the weights file's layout (each once, any order). */
  async writeTensors(tensors: readonly TensorData[]): Promise<void> {
    for (const t of tensors) {
      await this.writer.write(t.name, t.data);
      this.tensorSha256.set(t.name, createHash('sha256').update(asBytes(t.data)).digest('hex'));
    }
  }

  /**
   * Completes the weights, writes the configs, copies tokenizer files, lets `beforeSwap` add
   * the last files (the manifest), then swaps the folder in.
   */
  async finish(beforeSwap?: (tmp: string) => Promise<void>): Promise<void> {
    await this.writer.close();
    const src = this.model.dir;
    const quantizeConfig = `${JSON.stringify(this.config, null, 2)}\n`;
    await atomicWriteFile(path.join(this.tmp, QUANTIZE_CONFIG_FILE), quantizeConfig);
    const config = { ...this.model.config.raw, quantization_config: this.config };
    await atomicWriteFile(path.join(this.tmp, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    for (const f of COPIED_FILES) {
      try {
        await fsp.copyFile(path.join(src, f), path.join(this.tmp, f));
        await fsp.chmod(path.join(this.tmp, f), 0o644); // the source may be read-only
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    await beforeSwap?.(this.tmp);
    await swapIn(this.tmp, this.out);
  }

  /** Removes everything written so far. */
  async abort(): Promise<void> {
    await this.writer.abort().catch(() => undefined);
    await fsp.rm(this.tmp, { recursive: true, force: true });
  }
}

/** The tensors a branch copies from its base unchanged: everything but the decoder linears. */
export function copiedTensorNames(model: LlamaModel): string[] {
  const quantized = new Set<string>();
  for (let layer = 0; layer < model.config.numLayers; layer++) {
    for (const name of LINEARS) quantized.add(linearWeight(layer, name));
  }
  return model.checkpoint.names().filter((t) => !quantized.has(t));
}

/**
 * Refuses, by name, a tensor a branch would copy (embeddings, norms, lm_head) that holds a
 * NaN/Inf: callable before any layer is quantized, so a broken base fails in seconds.
 */
export async function checkCopiedTensors(model: LlamaModel): Promise<void> {
  for (const t of copiedTensorNames(model)) await model.tensorBytes(t);
}

/** One quantized linear as the four tensors of the AutoGPTQ format (packed here unless on the GPU). */
export async function packLinear(
  layer: number, name: LinearName, solve: QuantizedLinear, shape: { n: number; k: number }, bits: number, groupSize: number,
): Promise<TensorData[]> {
  let qweight: Int32Array, qzeros: Int32Array, scales: Uint16Array;
  if (solve.packed) {
    ({ qweight, qzeros, scales } = solve.packed);
  } else {
    ({ qweight, qzeros } = await packGptq(solve.codes, solve.zeros, bits, shape.k, shape.n));
    scales = new Uint16Array(solve.scales.length);
    for (let i = 0; i < scales.length; i++) scales[i] = f32ToF16Bits(solve.scales[i]);
  }
  const names = quantizedTensorNames(prefixOf(layer, name));
  const specs = new Map(quantizedTensorSpecs(prefixOf(layer, name), shape.k, shape.n, bits, groupSize).map((t) => [t.name, t]));
  const t = (tensor: string, data: ArrayBufferView): TensorData => {
    const spec = specs.get(tensor)!;
    const n = spec.shape.reduce((a, b) => a * b, 1);
    if ((data as Int32Array).length !== n) throw new Error(`${tensor}: ${(data as Int32Array).length} values for shape [${spec.shape.join(',')}]`);
    return { ...spec, data };
  };
  return [t(names.qweight, qweight), t(names.qzeros, qzeros), t(names.scales, scales), t(names.g_idx, solve.gIdx)];
}

function prefixOf(layer: number, name: LinearName): string {
  return linearWeight(layer, name).replace(/\.weight$/, '');
}


/** Puts the finished tmp folder at `out`, replacing what is there (checked before). */
async function swapIn(tmp: string, out: string): Promise<void> {
  const old = `${tmp}.old`;
  let hadOld = false;
  try {
    await fsp.rename(out, old);
    hadOld = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  await fsp.rename(tmp, out);
  if (hadOld) await fsp.rm(old, { recursive: true, force: true });
}
