/**
 * The README.md (Hub model card) `gptq push` writes to main and to every branch: YAML front matter
 * the Hub reads (base_model, license, tags, inference: false as TheBloke's GPTQ repos have it), a
 * "Provided files, and GPTQ parameters" table in the layout of TheBloke/Llama-2-70B-GPTQ (one row
 * per branch, with the perplexities of report.json when there is one) and download instructions.
 */
import type { Manifest } from '../gptq/manifest';
import type { Report, ReportRow } from '../eval/report-types';
import { exllamaCompatible, formatSize, perplexityColumns } from '../eval/report';

export interface CardBranch {
  name: string;
  manifest: Manifest;
  sizeBytes: number;
}

export interface CardInput {
  /** owner/name of the pushed repo. */
  repo: string;
  /** Hub base URL (HF_ENDPOINT or https://huggingface.co), without a trailing slash. */
  hubUrl: string;
  branches: CardBranch[];
  report?: Report | null;
  /** Hub id of the fp16 model, when known. */
  baseModel?: string;
  license?: string;
  quantizedBy?: string;
  /** model_type of the branches' config.json. */
  modelType?: string;
}

/** A YAML scalar: JSON's double-quoted strings are valid YAML. */
const y = (s: string) => JSON.stringify(s);

/** One sentence saying what the branch is, in the style of TheBloke's Desc column. */
export function describeBranch(m: Manifest): string {
  const s = m.settings;
  if (s.rtn) {
    return `${s.bits}-bit round-to-nearest baseline${s.groupSize > 0 ? `, group size ${s.groupSize}g` : ''} (no GPTQ, no calibration): for comparison only.`;
  }
  let d = `${s.bits}-bit, ${s.actOrder ? 'with' : 'without'} Act Order`;
  d += s.groupSize > 0 ? ` and group size ${s.groupSize}g.` : '. No group size, to lower VRAM requirements.';
  if (s.groupSize > 0 && s.groupSize <= 32) d += ' Highest inference quality, with maximum VRAM usage.';
  if (s.staticGroups) d += ' Static groups.';
  if (s.mse) d += ' MSE-shrunk grids.';
  if (s.qep !== undefined) d += ` QEP (quantization error propagation) with α ${s.qep}.`;
  if (s.gptaq !== undefined) d += ` GPTAQ (asymmetric calibration) with α ${s.gptaq}.`;
  if (s.recipe !== undefined) {
    d += ` Recipe \`${s.recipe}\`${s.recipeSkipped !== undefined ? ` (not applicable here, skipped: ${s.recipeSkipped})` : ''}.`;
  }
  return d;
}

/** The commit title of a branch upload: its name and settings. */
export function commitTitle(m: Manifest): string {
  const s = m.settings;
  const c = m.calibration;
  const parts = [
    `${s.bits}-bit`,
    s.groupSize > 0 ? `group size ${s.groupSize}` : 'no group size',
    `act order ${s.actOrder ? 'on' : 'off'}`,
    `damp ${s.dampPercent}`,
  ];
  if (s.staticGroups) parts.push('static groups');
  if (s.mse) parts.push('mse grid');
  if (s.qep !== undefined) parts.push(`QEP α ${s.qep}`);
  if (s.gptaq !== undefined) parts.push(`GPTAQ α ${s.gptaq}`);
  if (s.recipe !== undefined) parts.push(`recipe ${s.recipe}`);
  parts.push(s.rtn || !c ? 'round-to-nearest' : `${c.dataset} ${c.nsamples}×${c.seqlen}`);
  return `Upload GPTQ branch ${m.branch}: ${parts.join(', ')}`;
}

/** The commit description: what a reader needs to reproduce the branch. */
export function commitDescription(m: Manifest): string {
  const c = m.calibration;
  return [
    `Built by ${m.tool.name} ${m.tool.version} on ${m.createdAt} from ${m.base.model}${m.base.revision ? `@${m.base.revision}` : ''} (fingerprint ${m.base.fingerprint}).`,
    c ? `Calibration: ${c.dataset} (${c.source}, split ${c.split}), ${c.nsamples} windows of ${c.seqlen} tokens, seed ${c.seed}, digest ${c.digest}.` : 'No calibration (round-to-nearest).',
    `Settings: ${JSON.stringify(m.settings)}.`,
  ].join('\n');
}

function perplexityRow(report: Report | null | undefined, name: string): ReportRow | undefined {
  return report?.rows.find((r) => r.name === name && r.kind !== 'fp16');
}

function table(input: CardInput): string[] {
  const { report } = input;
  const withPpl = !!report && input.branches.some((b) => perplexityRow(report, b.name));
  const columns = withPpl ? perplexityColumns(report) : [];
  const head = ['Branch', 'Bits', 'GS', 'Act Order', 'Damp %', 'GPTQ Dataset', 'Seq Len', 'Size', 'ExLlama', ...columns.map((c) => c.title), 'Desc'];
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map((h) => '-'.repeat(h.length)).join(' | ')} |`];
  for (const b of input.branches) {
    const s = b.manifest.settings;
    const c = b.manifest.calibration;
    const cells = [
      `[${b.name}](${input.hubUrl}/${input.repo}/tree/${encodeURIComponent(b.name)})`,
      String(s.bits),
      s.groupSize > 0 ? String(s.groupSize) : 'None',
      s.actOrder ? 'Yes' : 'No',
      String(s.dampPercent),
      c ? c.dataset : 'none (RTN)',
      c ? String(c.seqlen) : '–',
      formatSize(b.sizeBytes),
      exllamaCompatible(s.bits),
    ];
    const row = perplexityRow(report, b.name);
    for (const col of columns) {
      const v = row ? col.value(row) : undefined;
      cells.push(v !== undefined ? v.toFixed(4) : '–');
    }
    cells.push(describeBranch(b.manifest));
    lines.push(`| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`);
  }
  return lines;
}

function perplexityNote(input: CardInput): string[] {
  const r = input.report;
  if (!r || !input.branches.some((b) => perplexityRow(r, b.name))) return [];
  const fp16 = r.rows.find((x) => x.kind === 'fp16');
  return perplexityColumns(r).flatMap((c) => {
    const base = fp16 ? c.value(fp16) : undefined;
    return [
      '',
      `${c.title}: ${c.eval.dataset} (${c.eval.source}), ${c.eval.windows} windows of ${c.eval.seqlen} tokens, ` +
        `measured by \`gptq report\` (gptq-forge) on ${r.createdAt.slice(0, 10)}` +
        (base !== undefined ? `; the fp16 base model scores ${base.toFixed(4)}.` : '.') + ' Lower is better.',
    ];
  });
}

function frontMatter(input: CardInput): string[] {
  const l = ['---'];
  if (input.baseModel) l.push(`base_model: ${y(input.baseModel)}`);
  l.push('inference: false');
  if (input.license) l.push(`license: ${y(input.license)}`);
  if (input.modelType) l.push(`model_type: ${y(input.modelType)}`);
  l.push('pipeline_tag: text-generation');
  if (input.quantizedBy) l.push(`quantized_by: ${y(input.quantizedBy)}`);
  l.push('tags:', '- gptq', '- quantized', ...(input.modelType ? [`- ${input.modelType}`] : []));
  l.push('---');
  return l;
}

export function modelCard(input: CardInput): string {
  const repoName = input.repo.split('/')[1];
  const example = input.branches.find((b) => b.name !== 'main')?.name ?? 'main';
  const base = input.baseModel ?? input.branches[0]?.manifest.base.model;
  const l: string[] = [...frontMatter(input), ''];
  l.push(`# ${repoName}`, '');
  l.push(
    `GPTQ quantizations of ${input.baseModel ? `[${input.baseModel}](${input.hubUrl}/${input.baseModel})` : `\`${base}\``}` +
      ' in the AutoGPTQ format (`quant_method: gptq`, `checkpoint_format: gptq`), made with gptq-forge.',
    'Each set of GPTQ parameters is a separate branch of this repository; `main` holds the default one.',
    '',
  );
  l.push('## Provided files, and GPTQ parameters', '');
  l.push(...table(input), ...perplexityNote(input), '');
  l.push(
    '<details>',
    '  <summary>Explanation of GPTQ parameters</summary>',
    '',
    '- Bits: the bit size of the quantised model.',
    '- GS: GPTQ group size. Higher numbers use less VRAM, but have lower quantisation accuracy. "None" is the lowest possible value.',
    '- Act Order: True or False. Also known as `desc_act`. True results in better quantisation accuracy.',
    '- Damp %: a GPTQ parameter that affects how samples are processed for quantisation (`damp_percent`, a fraction of the mean Hessian diagonal).',
    '- GPTQ dataset: the calibration dataset used during quantisation. It is not the dataset the model was trained on.',
    '- Seq Len: the length of the calibration sequences. It does not limit the sequence length of the quantised model.',
    '- ExLlama Compatibility: whether this file can be loaded with ExLlama, which currently only supports Llama models in 4-bit.',
    '',
    '</details>',
    '',
  );
  l.push('## How to download from branches', '');
  l.push('With `huggingface-cli` (one folder per branch):', '', '```shell');
  l.push(`huggingface-cli download ${input.repo} --revision ${example} --local-dir ${repoName}-${example}`, '```', '');
  l.push('With git (the weights are stored with Git LFS):', '', '```shell');
  l.push(`git clone --single-branch --branch ${example} ${input.hubUrl}/${input.repo}`, '```', '');
  l.push('With transformers (needs `optimum` and `auto-gptq` or `gptqmodel`):', '', '```python');
  l.push(
    'from transformers import AutoModelForCausalLM, AutoTokenizer',
    '',
    `model_id = "${input.repo}"`,
    `revision = "${example}"  # any branch of the table`,
    'tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)',
    'model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, device_map="auto")',
    '```',
    '',
  );
  l.push('Perplexity of a branch with gptq-forge:', '', '```shell');
  l.push(`gptq eval --model ${input.repo} --revision ${example} --dataset wikitext2`, '```', '');
  l.push('## Provenance', '');
  l.push('Every branch holds `manifest.json`: the sha256 of each file, the base model\'s fingerprint, the calibration windows\' digest, the settings and the build times.', '');
  for (const b of input.branches) {
    const m = b.manifest;
    const c = m.calibration;
    l.push(
      `- \`${b.name}\`: ${m.tool.name} ${m.tool.version}, ${m.createdAt.slice(0, 10)}; ` +
        (c ? `${c.nsamples} × ${c.seqlen} tokens of ${c.dataset} (${c.split}), seed ${c.seed}` : 'round-to-nearest, no calibration') +
        `; true-sequential ${m.settings.trueSequential ? 'on' : 'off'}, sym ${m.settings.sym ? 'on' : 'off'}.`,
    );
  }
  l.push('');
  return l.join('\n');
}
