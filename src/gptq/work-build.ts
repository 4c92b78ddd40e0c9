/**
 * The build of the tool that runs (gptq-forge's version and the native addon it loads), part of
 * the identity of a resumable work folder: two builds of the same source round differently
 * (vector width, -march, CPU or CUDA engine), so a branch started by one is not continued by
 * another (the layers would mix two builds' roundings, a branch no single build makes).
 *
 * The addon does not export its build flags; what is known here:
 *   - sha256 of the addon file itself (build/Release/gptq_forge.node): the machine code that
 *     computes, so it changes with -march, compiler, flags and CUDA;
 *   - whether it was built with the CUDA backend (the addon's `cudaBuilt`);
 *   - the -march it was compiled with, as node-gyp recorded it (build/gptq_forge.target.mk),
 *     for the message only ("native" means the build host's CPU);
 *   - with --device cuda, the GPU's name (cuBLAS picks other kernels on other GPUs).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { cudaInfo, nativeAddon } from '../native';
import { Device } from './manifest';

export interface WorkBuild {
  version: string;
  addon: { sha256: string; cuda: boolean; march: string };
  /** The GPU's name, for builds on the CUDA engine. */
  gpu?: string;
}

const ROOT = path.resolve(__dirname, '../..');
let cached: Omit<WorkBuild, 'gpu'> | undefined;

function addonBuild(): Omit<WorkBuild, 'gpu'> {
  if (cached) return cached;
  const version = String((JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: unknown }).version);
  const addon = nativeAddon() as { cudaBuilt?: boolean }; // loads it (a clear error when not built)
  let sha256 = 'unknown';
  try {
    sha256 = createHash('sha256').update(readFileSync(path.join(ROOT, 'build', 'Release', 'gptq_forge.node'))).digest('hex');
  } catch {
    // loaded from elsewhere: the other fields still tell builds apart
  }
  let march = 'unknown';
  try {
    const mk = readFileSync(path.join(ROOT, 'build', 'gptq_forge.target.mk'), 'utf8');
    march = /-march=(\S+)/.exec(mk)?.[1] ?? 'unknown';
  } catch {
    // not built by node-gyp here
  }
  cached = { version, addon: { sha256, cuda: !!addon.cudaBuilt, march } };
  return cached;
}

/** The build that runs now, as a work folder of `device` records it. */
export function currentWorkBuild(device: Device): WorkBuild {
  const b: WorkBuild = { ...addonBuild() };
  if (device === 'cuda') {
    try {
      const name = cudaInfo().name;
      if (name) b.gpu = name;
    } catch {
      // no GPU name: the addon and device still identify the build
    }
  }
  return b;
}

/** One line: `gptq-forge 0.1.0, addon 1a2b3c4d5e6f (-march=native, CPU only)`. */
export function describeWorkBuild(b: WorkBuild): string {
  // b may come from a file: every value shown as one short line.
  const t = (v: unknown, n = 40) => {
    const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
    // eslint-disable-next-line no-control-regex -- control characters are what it replaces
    const one = s.replace(/[\u0000-\u001f\u007f]/g, '?');
    return one.length > n ? `${one.slice(0, n - 3)}...` : one;
  };
  const a = (b.addon ?? {}) as Partial<WorkBuild['addon']>;
  return `gptq-forge ${t(b.version)}, addon ${t(a.sha256, 12)} (-march=${t(a.march)}, ${a.cuda ? 'with CUDA' : 'CPU only'}${b.gpu ? `, GPU ${t(b.gpu)}` : ''})`;
}
