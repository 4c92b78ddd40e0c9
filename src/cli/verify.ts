/** `gptq verify BRANCH`: structure, g_idx, hashes against the manifest, weight error against the base. */
import { Command } from 'commander';
import { UserError } from '../errors';
import { resolveManifestBase } from '../gptq/manifest';
import {
  Check, checkBaseConfig, checkCopied, checkErrors, checkFinite, checkGIdx, checkManifest, checkStructure, LinearError,
} from '../gptq/verify';
import { resolveModel } from '../hub/resolve';
import { LlamaModel } from '../model/llama-model';
import { createProgress } from './progress';

interface VerifyFlags {
  base?: string;
  baseRevision?: string;
  revision?: string;
  json?: boolean;
  quiet?: boolean;
}

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('check one GPTQ branch: structure, g_idx, NaN/Inf, sha256 against its manifest, copied tensors, config and weight error against the base model')
    .argument('<branch>', 'branch folder (or Hub repo id with --revision)')
    .option('--base <path-or-repo>', 'the fp16 model it was built from (default: the one its manifest names)')
    .option('--revision <rev>', 'Hub revision of the branch (a repo id)')
    .option('--base-revision <rev>', 'Hub revision of --base')
    .option('--json', 'print the checks as JSON on stdout')
    .option('--quiet', 'no progress output')
    .action(async (branch: string, flags: VerifyFlags) => {
      const { checks, errors } = await runVerify(branch, flags);
      if (flags.json) process.stdout.write(`${JSON.stringify({ branch, ok: checks.every((c) => c.ok), checks, linears: errors })}\n`);
      else for (const c of checks) process.stdout.write(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(11)} ${c.detail}\n`);
      const failed = checks.filter((c) => !c.ok);
      if (failed.length > 0) {
        throw new UserError(`${branch} failed ${failed.length} check(s): ${failed.map((c) => `${c.name} (${c.detail})`).join('; ')}`);
      }
    });
}

async function runVerify(branch: string, flags: VerifyFlags): Promise<{ checks: Check[]; errors: LinearError[] }> {
  const checks: Check[] = [];
  const add = (c: Check) => checks.push(c);
  const dir = await resolveModel(branch, { revision: flags.revision });
  const model = await checkStructure(dir, add);
  if (!model) return { checks, errors: [] };
  let errors: LinearError[] = [];
  try {
    await checkGIdx(model, add);
    const scan = createProgress('finite', { quiet: flags.quiet });
    try {
      await checkFinite(model, add, (done, total) => scan.update(done, total, 'tensors'));
    } finally {
      scan.stop();
    }
    const manifest = await checkManifest(dir, add);
    const baseSpec = flags.base ?? manifest?.base.model;
    if (!baseSpec) {
      const detail = 'not checked: no --base and no manifest naming the base model';
      for (const name of ['copied', 'base-config', 'weights']) add({ name, ok: true, detail });
    } else {
      const baseDir = flags.base ? await resolveModel(flags.base, { revision: flags.baseRevision }) : await resolveManifestBase(manifest!.base);
      const base = await LlamaModel.open(baseDir);
      const progress = createProgress('weights', { quiet: flags.quiet });
      try {
        if (base.quantization) throw new UserError(`--base ${baseSpec} is itself a GPTQ branch; give the fp16 model`);
        await checkCopied(model, base, add);
        checkBaseConfig(model, base, add);
        errors = await checkErrors(model, base, add, (l) => progress.update(l + 1, model.config.numLayers, `layer ${l + 1}`));
      } finally {
        progress.stop();
        await base.close();
      }
    }
  } finally {
    await model.close();
  }
  return { checks, errors };
}
