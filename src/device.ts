/**
 * The one rule that picks the engine of a job (quantize, branches, eval, report): the device
 * asked for, checked; or by default cuda where the addon has CUDA, a GPU is visible and the
 * job's settings run there, cpu otherwise.
 */
import { UserError } from './errors';
import { cudaAvailable, cudaUnavailableReason } from './native';

export type Device = 'cpu' | 'cuda';

/**
 * `cudaRefusal`: why this job's settings cannot run on the GPU (a whole sentence naming the
 * flag and the way out), or null when they can. Asking for cuda where it cannot run is a
 * UserError; by default such a job runs on the CPU.
 */
export function chooseDevice(asked: Device | undefined, cudaRefusal: string | null = null): Device {
  if (asked === 'cuda') {
    const why = cudaUnavailableReason();
    if (why) throw new UserError(`--device cuda: ${why}`);
    if (cudaRefusal) throw new UserError(cudaRefusal);
  }
  if (asked) return asked;
  return cudaAvailable() && cudaRefusal === null ? 'cuda' : 'cpu';
}
