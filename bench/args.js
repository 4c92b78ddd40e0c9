'use strict';
/** Command-line flags of the benchmark scripts: `--name value` pairs. */
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function flag(name, dflt) {
  const args = process.argv.slice(2);
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
}

/** ../shared beside the checkout, or --shared DIR. */
function sharedDir() {
  return path.resolve(flag('--shared', path.join(root, '../shared')));
}

module.exports = { root, flag, sharedDir };
