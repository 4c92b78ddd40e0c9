/** Paths into ../shared (read-only data beside the checkout). */
import * as path from 'node:path';

export const SHARED = path.resolve(__dirname, '../../../shared');
export const sharedPath = (...parts: string[]): string => path.join(SHARED, ...parts);
export const LLAMA2_S = sharedPath('models', 'llama2-s');
export const LLAMA2_M = sharedPath('models', 'llama2-m');
export const WIKI_TEST_RAW = sharedPath('datasets', 'wikitext-2-raw-v1', 'wiki.test.raw');
export const WIKI_V1_VALID = sharedPath('datasets', 'wikitext-2-v1', 'valid.txt');
