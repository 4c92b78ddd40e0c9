/** A manifest.json for a branch folder built in a test (what `gptq branches` writes last). */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MANIFEST_FILE, MANIFEST_FORMAT, type CalibrationRef, type Manifest } from '../../src/gptq/manifest';
import type { QuantizeSettings } from '../../src/gptq/settings';

export const sha256File = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

export function writeManifest(
  dir: string, branch: string, settings: QuantizeSettings, calibration: CalibrationRef | null, base = 'meta-llama/Llama-2-7b-hf',
): Manifest {
  const files = fs.readdirSync(dir).filter((f) => f !== MANIFEST_FILE).sort()
    .map((f) => ({ path: f, size: fs.statSync(path.join(dir, f)).size, sha256: sha256File(path.join(dir, f)) }));
  const m: Manifest = {
    format: MANIFEST_FORMAT,
    branch,
    tool: { name: 'gptq-forge', version: '0.1.0' },
    base: { model: base, revision: null, fingerprint: 'f'.repeat(64) },
    settings,
    calibration,
    device: 'cpu',
    files,
    tensors: {},
    timings: { seconds: 1, load: 0, forward: 0, hessian: 0, solve: 1, sink: 0, assemble: 0 },
    resumes: 0,
    createdAt: '2026-11-27T12:00:00.000Z',
  };
  fs.writeFileSync(path.join(dir, MANIFEST_FILE), `${JSON.stringify(m, null, 2)}\n`);
  return m;
}

export const settings = (bits: number, groupSize: number, actOrder: boolean, rtn = false): QuantizeSettings => ({
  bits, groupSize, actOrder, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, trueSequential: true, rtn,
});

export const wikitextCalibration = (nsamples: number, seqlen: number): CalibrationRef => ({
  dataset: 'wikitext2', source: 'Salesforce/wikitext/wikitext-2-raw-v1/train-00000-of-00001.parquet', split: 'train',
  nsamples, seqlen, seed: 0, digest: 'd'.repeat(64),
});
