/** Small JSON files of a model folder (config.json, quantize_config.json, …). */
import { promises as fsp } from 'node:fs';
import { UserError } from '../errors';

/** The parsed file, or undefined when it does not exist; a UserError naming it otherwise. */
export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new UserError(`cannot read ${file}: ${code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: invalid JSON (${(e as Error).message.replace(/\s+/g, ' ')})`);
  }
}
