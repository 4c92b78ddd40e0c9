/** `gptq push DIR --repo OWNER/NAME`: upload the finished branches of a `gptq branches` folder to the Hub. */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { readJsonFile } from '../io/json-file';
import { formatSize } from '../eval/report';
import { CardBranch, commitDescription, commitTitle, modelCard } from '../hub/model-card';
import {
  CARD_FILE, FinishedBranch, UploadFile, memoryFile, scanBranches, selectBranches, verifyBranch,
} from '../hub/push-branches';
import { HubPusher, checkRepoName, hubToken, sameFile, staleFiles } from '../hub/push';
import { hubEndpoint } from '../hub/download';
import { createProgress } from './progress';

interface PushFlags {
  repo: string;
  only?: string;
  private?: boolean;
  dryRun?: boolean;
  baseModel?: string;
  license?: string;
  quantizedBy?: string;
  quiet?: boolean;
}

export function registerPush(program: Command): void {
  program
    .command('push')
    .description('upload the finished branches of a `gptq branches` folder to a Hugging Face model repo (one git branch each)')
    .argument('<dir>', 'folder of branch folders, each with a manifest.json')
    .requiredOption('--repo <owner/name>', 'Hub model repo (created if it does not exist)')
    .option('--only <names>', 'comma-separated branch names to push (default: every finished branch)')
    .option('--private', 'create the repo private')
    .option('--dry-run', 'check every file and print what would be pushed and the model card; no network, no token needed')
    .option('--base-model <id>', 'Hub id of the fp16 model for the model card (default: the manifests\' base model when it is a Hub id)')
    .option('--license <id>', 'license for the model card (default: the base model folder\'s, when it says)')
    .option('--quantized-by <name>', 'quantized_by of the model card')
    .option('--quiet', 'no progress output')
    .action(async (dir: string, flags: PushFlags) => {
      await runPush(dir, flags);
    });
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const log = (flags: PushFlags, line: string) => {
  if (!flags.quiet) process.stderr.write(`${line}\n`);
};

/** license: from the base model folder's README front matter or config.json, when it is local. */
async function baseLicense(base: string): Promise<string | undefined> {
  const st = await fsp.stat(base).catch(() => null);
  if (!st?.isDirectory()) return undefined;
  const readme = await fsp.readFile(path.join(base, 'README.md'), 'utf8').catch(() => '');
  const fm = /^---\r?\n([\s\S]*?)\r?\n---/.exec(readme);
  const m = fm && /^license:\s*["']?([^"'\s#]+)/m.exec(fm[1]);
  if (m) return m[1];
  const cfg = (await readJsonFile(path.join(base, 'config.json')).catch(() => undefined)) as { license?: unknown } | undefined;
  return typeof cfg?.license === 'string' ? cfg.license : undefined;
}

async function cardFor(flags: PushFlags, hubUrl: string, branches: FinishedBranch[], report: Parameters<typeof modelCard>[0]['report']): Promise<Buffer> {
  const base = branches[0].manifest.base.model;
  const baseIsLocal = !!(await fsp.stat(base).catch(() => null));
  const cfg = (await readJsonFile(path.join(branches[0].dir, 'config.json')).catch(() => undefined)) as { model_type?: unknown } | undefined;
  const cardBranches: CardBranch[] = branches.map((b) => ({ name: b.name, manifest: b.manifest, sizeBytes: b.sizeBytes }));
  const baseModel = flags.baseModel ?? (!baseIsLocal && HUB_ID.test(base) ? base : undefined);
  if (!baseModel) log(flags, `model card: no base_model (the manifests name ${base}, not a Hub id; pass --base-model ID)`);
  const text = modelCard({
    repo: flags.repo, hubUrl, branches: cardBranches, report, baseModel,
    license: flags.license ?? (await baseLicense(base)),
    quantizedBy: flags.quantizedBy,
    modelType: typeof cfg?.model_type === 'string' ? cfg.model_type : undefined,
  });
  return Buffer.from(text, 'utf8');
}

async function verifyAll(flags: PushFlags, branches: FinishedBranch[]): Promise<Map<string, UploadFile[]>> {
  const out = new Map<string, UploadFile[]>();
  for (const b of branches) {
    const progress = createProgress(`verify ${b.name}`, { quiet: flags.quiet });
    out.set(b.name, await verifyBranch(b, (d, t, f) => progress.update(d, t, f)));
    progress.stop();
    log(flags, `verified ${b.name}: ${b.manifest.files.length} files, ${formatSize(b.sizeBytes)}, sha256 as in manifest.json`);
  }
  return out;
}

/** Pushes one branch in one commit; returns the new head (or the old one when up to date). */
async function pushBranch(
  flags: PushFlags, pusher: HubPusher, branch: string, head: string, files: UploadFile[],
  title: string, description: string,
): Promise<{ head: string; sent: number; deleted: number }> {
  const remote = await pusher.files(head);
  const changed = files.filter((f) => !sameFile(f, remote.get(f.path)));
  const deletes = staleFiles(remote, files);
  if (changed.length === 0 && deletes.length === 0) {
    log(flags, `${branch}: up to date (${files.length} files already there)`);
    return { head, sent: 0, deleted: 0 };
  }
  const bytes = changed.reduce((a, f) => a + f.size, 0);
  log(flags, `${branch}: sending ${changed.length} of ${files.length} files (${formatSize(bytes)})${deletes.length ? `, deleting ${deletes.length} (${deletes.join(', ')})` : ''}`);
  for (const f of changed) log(flags, `  ${branch}/${f.path} (${formatSize(f.size)}) ${remote.has(f.path) ? 'changed' : 'new'}`);
  const sizes = new Map(changed.map((f) => [f.path, f.size]));
  const uploaded = new Map<string, number>();
  const announced = new Set<string>();
  const progress = createProgress(`push ${branch}`, { quiet: flags.quiet });
  const oid = await pusher.commit(branch, head, title, description, changed, deletes, (e) => {
    if (e.kind === 'phase') {
      if (e.phase === 'committing') progress.update(bytes, bytes, 'committing');
      return;
    }
    const size = sizes.get(e.path) ?? 0;
    if (e.state === 'hashing') {
      progress.update([...uploaded.values()].reduce((a, x) => a + x, 0), bytes, `hashing ${e.path}`);
      return;
    }
    uploaded.set(e.path, e.progress * size);
    progress.update([...uploaded.values()].reduce((a, x) => a + x, 0), bytes, `uploading ${e.path}`);
    if (e.progress >= 1 && !announced.has(e.path)) {
      announced.add(e.path);
      log(flags, `  uploaded ${branch}/${e.path} to LFS`);
    }
  });
  progress.stop();
  return { head: oid, sent: changed.length, deleted: deletes.length };
}

export async function runPush(dir: string, flags: PushFlags): Promise<void> {
  checkRepoName(flags.repo);
  const scan = await scanBranches(dir);
  const selected = selectBranches(scan, flags.only, dir);
  for (const s of scan.skipped) log(flags, `skipping ${s.name}: ${s.reason}`);
  if (scan.reportProblem) log(flags, `warning: ignoring report.json: ${scan.reportProblem}`);
  for (const b of selected) {
    if (b.manifest.files.some((f) => f.path === CARD_FILE)) log(flags, `warning: ${b.name}/${CARD_FILE} is replaced by the generated model card`);
  }
  // The token is checked before any hashing or request.
  const token = flags.dryRun ? undefined : hubToken();
  const hubUrl = hubEndpoint();
  const verified = await verifyAll(flags, selected);

  if (flags.dryRun || token === undefined) {
    const card = await cardFor(flags, hubUrl, selected, scan.report);
    const out: string[] = [`dry run: would push ${selected.length} branch(es) of ${dir} to ${hubUrl}/${flags.repo}${flags.private ? ' (private if created)' : ''}`];
    for (const b of selected) {
      const files = verified.get(b.name)!;
      out.push(`${b.name} → branch ${b.name}: ${files.length + 1} files (${files.map((f) => f.path).join(', ')}, ${CARD_FILE}), ${formatSize(b.sizeBytes)}`);
      out.push(`  commit: ${commitTitle(b.manifest)}`);
    }
    if (!selected.some((b) => b.name === 'main')) out.push(`main: ${CARD_FILE} only`);
    out.push(`--- ${CARD_FILE} ---`, card.toString('utf8'));
    process.stdout.write(`${out.join('\n')}\n`);
    return;
  }

  const pusher = new HubPusher(flags.repo, token, hubUrl);
  const created = await pusher.ensureRepo(flags.private ? 'private' : undefined);
  log(flags, created ? `created ${flags.private ? 'private ' : ''}repo ${hubUrl}/${flags.repo}` : `repo ${hubUrl}/${flags.repo} exists`);
  if (!created && flags.private) log(flags, `warning: --private: ${flags.repo} already exists; its visibility is left as it is`);
  const heads = await pusher.branches();
  const pushesMain = selected.some((b) => b.name === 'main');
  // Every repo has a main; it holds one of our branches only if it has a manifest.json.
  const mainRemote = pushesMain ? undefined : await pusher.files(heads.get('main')!);
  const onHub = (b: FinishedBranch) => (b.name === 'main' ? !!mainRemote?.has('manifest.json') : heads.has(b.name));
  // The card lists what will be on the Hub: the branches pushed now and the finished ones already there.
  const listed = scan.branches.filter((b) => selected.includes(b) || onHub(b));
  const card = memoryFile(CARD_FILE, await cardFor(flags, hubUrl, listed, scan.report));

  const results: string[] = [];
  const order = [...selected.filter((b) => b.name === 'main'), ...selected.filter((b) => b.name !== 'main')];
  if (mainRemote) {
    // README-only update of main: keep main's other files.
    if (!sameFile(card, mainRemote.get(CARD_FILE))) {
      const oid = await pusher.commit('main', heads.get('main')!, 'Update model card (gptq-forge)', `Branches: ${listed.map((b) => b.name).join(', ')}`, [card], []);
      heads.set('main', oid);
      log(flags, 'main: model card updated');
    }
  }
  for (const b of order) {
    let head = heads.get(b.name);
    if (head === undefined) {
      const from = heads.get('main')!;
      await pusher.createBranch(b.name, from);
      log(flags, `created branch ${b.name} from main (${from.slice(0, 8)})`);
      head = from;
    }
    const files = [...verified.get(b.name)!, card];
    const r = await pushBranch(flags, pusher, b.name, head, files, commitTitle(b.manifest), commitDescription(b.manifest));
    heads.set(b.name, r.head);
    results.push(
      r.sent || r.deleted
        ? `pushed ${b.name} → ${hubUrl}/${flags.repo}/tree/${encodeURIComponent(b.name)} (commit ${r.head.slice(0, 12)}; ${r.sent} sent, ${r.deleted} deleted, ${files.length - r.sent} unchanged)`
        : `${b.name}: already up to date at ${r.head.slice(0, 12)}`,
    );
  }
  process.stdout.write(`${results.join('\n')}\n`);
}
