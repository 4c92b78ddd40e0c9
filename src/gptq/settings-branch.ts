/**
 * A GPTQ branch's quantize_config.json against its config.json, read before the model is
 * opened: a group size that does not divide a linear's in_features is one line naming the
 * file, the group size and the linear (src/gptq/settings.ts's rule), never a computed shape
 * with a fractional number of groups.
 */
import * as path from 'node:path';
import { readJsonFile } from '../io/json-file';
import { loadLlamaConfig } from '../model/config';
import { parseQuantizeConfig, QUANTIZE_CONFIG_FILE } from './format';
import { checkBranchShapes } from './settings';

export async function checkBranchSettings(dir: string): Promise<void> {
  const config = await loadLlamaConfig(dir);
  const file = path.join(dir, QUANTIZE_CONFIG_FILE);
  const json = await readJsonFile(file);
  const source = json !== undefined ? file : path.join(dir, 'config.json');
  const raw = json !== undefined ? json : config.quantization;
  if (raw === undefined) return; // an fp16 model
  const q = parseQuantizeConfig(raw, source);
  checkBranchShapes(q.group_size, config, source);
}
