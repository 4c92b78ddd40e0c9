'use strict';
/** One `gptq` child process of a benchmark script, with its own native thread count. */
const { spawn } = require('node:child_process');
const path = require('node:path');
const { root } = require('./args');

/**
 * Runs `gptq ARGV --json --quiet` with GPTQ_FORGE_THREADS=threads. Resolves { code, out, err,
 * json }: json is the last stdout line parsed when the child exited 0, else null.
 */
function gptqChild(argv, threads) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(root, 'bin/gptq.js'), ...argv, '--json', '--quiet'], {
      env: { ...process.env, GPTQ_FORGE_THREADS: String(threads) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('close', (code) => {
      try {
        resolve({ code, out, err, json: code === 0 ? JSON.parse(out.trim().split('\n').pop()) : null });
      } catch (e) {
        reject(new Error(`gptq ${argv.join(' ')}: its last line of stdout is not JSON (${e.message})`));
      }
    });
    child.on('error', reject);
  });
}

/** gptqChild's JSON; a non-zero exit rejects with the command and the child's stderr. */
async function gptqJson(argv, threads) {
  const r = await gptqChild(argv, threads);
  if (r.code !== 0) throw new Error(`gptq ${argv.join(' ')} exited ${r.code}: ${r.err.trim()}`);
  return r.json;
}

module.exports = { gptqChild, gptqJson };
