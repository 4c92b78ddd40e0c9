/**
 * GPTQ_FORGE_DEBUG=native-calls: one stderr line per decoder layer with the number of native
 * addon calls made for it (loading its weights, quantizing it, the sink and the caller's work
 * on the finished layer; layer 0's include the embedding), by function, and a total at the end.
 */
import { debugEnabled, nativeCallCounts } from '../native';

/** Calls per function made since `from` (a nativeCallCounts() snapshot). */
export function callsSince(from: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(nativeCallCounts())) if (v > (from[k] ?? 0)) out[k] = v - (from[k] ?? 0);
  return out;
}

const sum = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);

export class NativeCallMeter {
  private readonly on = debugEnabled('native-calls');
  private readonly first = nativeCallCounts();
  private at = this.first;
  private layers = 0;

  /** Call when `layer` is complete: prints the calls since the previous layer (or the start). */
  layerDone(layer: number): void {
    if (!this.on) return;
    const c = callsSince(this.at);
    const by = Object.entries(c).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k} ${v}`).join(', ');
    process.stderr.write(`gptq-forge: layer ${layer}: ${sum(c)} native calls (${by})\n`);
    this.at = nativeCallCounts();
    this.layers++;
  }

  /** Call once every layer is done: the total since the meter was made. */
  finish(): void {
    if (!this.on) return;
    process.stderr.write(`gptq-forge: ${sum(callsSince(this.first))} native calls for ${this.layers} decoder layers\n`);
  }
}
