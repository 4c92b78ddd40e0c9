/**
 * Jest environment for tests that run onnxruntime-node: its addon creates typed arrays in
 * Node's own realm, and onnxruntime-common checks `data instanceof Float32Array` against the
 * test's vm realm, which fails. Sharing the typed-array constructors of the outer realm makes
 * both realms agree (use with a `@jest-environment ./test/helpers/ort-environment.js` docblock).
 */
const { TestEnvironment } = require('jest-environment-node');

class OrtEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of [
      'Float32Array', 'Float64Array', 'Int8Array', 'Uint8Array', 'Int16Array', 'Uint16Array',
      'Int32Array', 'Uint32Array', 'BigInt64Array', 'BigUint64Array', 'ArrayBuffer',
    ]) {
      this.global[name] = globalThis[name];
    }
  }
}

module.exports = OrtEnvironment;
