/**
 * GPTQ_FORGE_DEBUG=native-calls: one stderr line per decoder layer with the number of native
 * addon calls made for it (loading its weights, quantizing it, the sink and the caller's work
 * on the finished layer), and a summary line at the end.
 */
import { debugEnabled, nativeCallCount } from '../native';

export class NativeCallMeter {
  private readonly on = debugEnabled('native-calls');
  private readonly first = nativeCallCount();
  private at = this.first;
  private layers = 0;

  /** Call when `layer` is complete: prints the calls since the previous layer (or the start). */
  layerDone(layer: number): void {
    if (!this.on) return;
    const n = nativeCallCount();
    process.stderr.write(`gptq-forge: layer ${layer}: ${n - this.at} native calls\n`);
    this.at = n;
    this.layers++;
  }

  /** Call once every layer is done: the total, with the calls made before the first layer. */
  finish(): void {
    if (!this.on) return;
    const total = nativeCallCount() - this.first;
    process.stderr.write(`gptq-forge: ${total} native calls for ${this.layers} decoder layers\n`);
  }
}
