#!/usr/bin/env node
'use strict';
// Entry point: parse argv with commander, run the command, print errors as one line.
const path = require('node:path');
let main;
try {
  main = require(path.join(__dirname, '..', 'dist', 'cli', 'main.js'));
} catch (e) {
  process.stderr.write(`gptq: error: not built (${e.message.split('\n')[0]}); run \`npm run build\`\n`);
  process.exit(1);
}
main.run(process.argv).then(
  (code) => { process.exitCode = code; },
  (e) => {
    process.stderr.write(`gptq: error: ${main.describeError(e)}\n`);
    process.exitCode = 1;
  },
);
