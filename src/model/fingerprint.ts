/**
 * A model's fingerprint: sha256 over config.json and, for every tensor in name order, its name,
 * dtype, shape and the first and last 4 KiB of its data. Cheap (a few MB read even for 70B) and
 * different for another architecture, another size or another fine-tune of the same shape, so
 * that a branches folder never mixes the outputs of two models.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Checkpoint } from '../io/checkpoint';

const SAMPLE = 4096;

export async function modelFingerprint(dir: string, checkpoint: Checkpoint): Promise<string> {
  const h = createHash('sha256');
  h.update('gptq-forge model fingerprint v1\0');
  h.update(await fsp.readFile(path.join(dir, 'config.json')));
  for (const name of [...checkpoint.names()].sort()) {
    const info = checkpoint.info(name);
    h.update(`\0${name}\0${info.dtype}\0${info.shape.join(',')}\0`);
    h.update(await checkpoint.readSlice(name, 0, SAMPLE));
    if (info.byteLength > SAMPLE) h.update(await checkpoint.readSlice(name, info.byteLength - SAMPLE, SAMPLE));
  }
  return h.digest('hex');
}
