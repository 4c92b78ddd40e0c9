/**
 * The one rule that picks the engine of a job (quantize, branches, eval, report): the device
 * asked for, checked; or by default cuda where the addon has CUDA, a GPU is visible and the
 * job's settings run there, cpu otherwise.
 */
import { UserError } from './errors';
import { cudaAvailable, cudaInfo, cudaUnavailableReason } from './native';

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

/** The card or host that ran a job, as the manifest records it (`builtOn`). */
export type DeviceRecord = { kind: 'cpu' } | { kind: 'cuda'; index: number; name: string };

/**
 * What `device` is here: for cuda, the index of the card on the host (the one
 * CUDA_VISIBLE_DEVICES pins this process to when it names a single numeric id, as the workers of
 * `--devices` are pinned; else 0, the first visible card) and its name.
 */
export function deviceRecord(device: Device): DeviceRecord {
  if (device === 'cpu') return { kind: 'cpu' };
  const list = visibleDeviceList();
  return { kind: 'cuda', index: list.length === 1 && /^\d+$/.test(list[0]) ? Number(list[0]) : 0, name: cudaInfo().name ?? 'unknown' };
}

/** This process's CUDA_VISIBLE_DEVICES list (empty when unset): the one reader of it. */
export function visibleDeviceList(): string[] {
  return (process.env.CUDA_VISIBLE_DEVICES ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
}
