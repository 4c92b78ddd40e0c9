/**
 * `gptq push` sends only files inside the branch folder: a file of the manifest that is a
 * symbolic link (or lies under a linked folder) pointing outside is refused, even when its hash
 * matches the manifest, before any request.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCliAsync } from '../helpers/cli';
import { expectOneError, treeHash } from '../helpers/hostile';
import { startHubServer } from '../helpers/hub-server';
import { settings, writeManifest } from '../helpers/manifest-fixture';
import { LLAMA2_S } from '../helpers/shared';

const TOKEN = 'hf_PushNamesSecret0123456789';
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-push-names-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function branch(root: string): string {
  const b = path.join(root, 'out', 'main');
  fs.mkdirSync(b, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) fs.copyFileSync(path.join(LLAMA2_S, f), path.join(b, f));
  fs.writeFileSync(path.join(b, 'quantize_config.json'), JSON.stringify({ bits: 4, group_size: 128, desc_act: false, sym: true, damp_percent: 0.01, true_sequential: true, static_groups: false, model_file_base_name: 'model', quant_method: 'gptq', checkpoint_format: 'gptq' }));
  return b;
}

test.each(['file', 'folder'])('a manifest file reached through a linked %s outside the branch', async (kind) => {
  const root = path.join(tmp, kind);
  const b = branch(root);
  const secret = path.join(root, 'secret');
  fs.mkdirSync(secret);
  fs.writeFileSync(path.join(secret, 'model.safetensors'), 'not the user\'s to send');
  if (kind === 'file') fs.symlinkSync(path.join(secret, 'model.safetensors'), path.join(b, 'model.safetensors'));
  writeManifest(b, 'main', settings(4, 128, false, true), null);
  if (kind === 'folder') {
    fs.symlinkSync(secret, path.join(b, 'weights'));
    // writeManifest lists top-level entries; name the file under the linked folder by hand.
    const m = JSON.parse(fs.readFileSync(path.join(b, 'manifest.json'), 'utf8'));
    const size = fs.statSync(path.join(secret, 'model.safetensors')).size;
    const sha256 = createHash('sha256').update(fs.readFileSync(path.join(secret, 'model.safetensors'))).digest('hex');
    m.files = m.files.filter((f: { path: string }) => f.path !== 'weights').concat([{ path: 'weights/model.safetensors', size, sha256 }]);
    fs.writeFileSync(path.join(b, 'manifest.json'), JSON.stringify(m, null, 2));
  }
  const server = await startHubServer({}, { token: TOKEN });
  try {
    const before = treeHash(root);
    const r = await runCliAsync(['push', path.join(root, 'out'), '--repo', 'you/names'], {
      timeoutMs: 30_000, env: { HF_ENDPOINT: server.url, HF_TOKEN: TOKEN, HF_HUB_CACHE: path.join(root, 'cache') },
    });
    expectOneError(r, 1, kind === 'file' ? /main\/model\.safetensors is a symbolic link; .*refusing to push/ : /main\/weights\/model\.safetensors lies outside main\/ .*refusing to push/, TOKEN);
    expect(server.requests).toEqual([]);
    expect(treeHash(root)).toEqual(before);
  } finally {
    await server.close();
  }
});
