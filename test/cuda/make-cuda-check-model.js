#!/usr/bin/env node
/**
 * Builds the small input of test/cuda/cuda-pipeline-check.js, to be carried to a GPU host:
 *   node test/cuda/make-cuda-check-model.js <model dir> <text file> <out dir> [nsamples=16] [seqlen=512]
 * out/model: the model's config (tie_word_embeddings: true) and its embedding, norms and decoder
 * layers without lm_head (quantization reads no lm_head; this keeps llama2-s at 22 MB), plus the
 * tokenizer files; out/calib.bin: nsamples × seqlen token ids (Int32, little-endian) sampled
 * as `gptq quantize` samples them (seed 0) from the text.
 */
const fs = require('node:fs');
const path = require('node:path');
const root = path.resolve(__dirname, '../..');
const { SafetensorsFile } = require(path.join(root, 'dist/io/safetensors-reader'));
const { writeSafetensors } = require(path.join(root, 'dist/io/safetensors-writer'));
const { loadCalibration } = require(path.join(root, 'dist/gptq/calibration-set'));

(async () => {
  const [modelDir, textFile, outDir, ns = '16', sl = '512'] = process.argv.slice(2);
  const out = path.join(outDir, 'model');
  fs.mkdirSync(out, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
  config.tie_word_embeddings = true;
  fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(config, null, 2));
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json'])
    if (fs.existsSync(path.join(modelDir, f))) fs.copyFileSync(path.join(modelDir, f), path.join(out, f));
  const src = await SafetensorsFile.open(path.join(modelDir, 'model.safetensors'));
  const tensors = [];
  for (const name of src.names()) {
    if (name === 'lm_head.weight') continue;
    const info = src.info(name);
    tensors.push({ name, dtype: info.dtype, shape: info.shape, data: new Uint8Array(await src.read(name)) });
  }
  src.close();
  await writeSafetensors(path.join(out, 'model.safetensors'), tensors);
  const calib = await loadCalibration(modelDir, textFile, { split: 'train', nsamples: +ns, seqlen: +sl, seed: 0 });
  fs.writeFileSync(path.join(outDir, 'calib.bin'), Buffer.from(calib.tokens.buffer, calib.tokens.byteOffset, calib.tokens.byteLength));
  console.log(`wrote ${out} (${tensors.length} tensors) and calib.bin (${calib.nsamples} × ${calib.seqlen}, ${calib.source})`);
})().catch((e) => { console.error(e); process.exit(1); });
