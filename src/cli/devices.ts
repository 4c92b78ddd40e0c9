/**
 * `--devices all|N|0,1,3` and `--max-workers <n>` (branches, report): which worker processes to
 * start and how each is pinned. One worker per device: on cuda each child sees only its card
 * (CUDA_VISIBLE_DEVICES=<id>, so it is device 0 inside the worker); on cpu the native threads
 * are split between the workers.
 */
import { InvalidArgumentError, Option } from 'commander';
import { Device, visibleDeviceList } from '../device';
import { UsageError } from '../errors';
import { cudaInfo, nativeThreads } from '../native';
import { positiveInt } from './options';

/** What `--devices` asked for: every visible GPU, a number of workers, or a list of device ids. */
export type DevicesSpec = { kind: 'all' } | { kind: 'count'; n: number } | { kind: 'list'; ids: number[] };

/** `--devices` as the user wrote it (for error lines). */
export function devicesText(d: DevicesSpec): string {
  return d.kind === 'all' ? 'all' : d.kind === 'count' ? String(d.n) : d.ids.join(',');
}

/** The flags of the commands that take --devices. */
export interface DevicesFlags {
  devices?: DevicesSpec;
  maxWorkers?: number;
}

/** `--devices`; `parallel` says what runs in parallel, in which process, e.g. "build branches in parallel, one worker process". */
export function devicesOption(parallel: string): Option {
  return new Option('--devices <all|N|ids>', `${parallel} per device: all GPUs, N workers, or device ids like 0,1,3`).argParser(parseDevices);
}

/** `--max-workers` (checkDevicesFlags: only with --devices). */
export function maxWorkersOption(): Option {
  return new Option('--max-workers <n>', 'with --devices: at most this many workers').argParser(positiveInt);
}

/** --max-workers without --devices is a usage error. */
export function checkDevicesFlags(flags: DevicesFlags): void {
  if (flags.maxWorkers !== undefined && !flags.devices) throw new UsageError(`--max-workers ${flags.maxWorkers} needs --devices`);
}

/**
 * --devices for a command on `device`: every device is checked now, before any work; the
 * function returned gives the worker processes to start once the number of jobs left is known
 * (no idle worker; null to run here: without --devices, or when processSlots starts none).
 */
export function devicesWorkers(flags: DevicesFlags, device: Device): (jobs: number) => WorkerSlot[] | null {
  const { devices, maxWorkers } = flags;
  if (!devices) return () => null;
  workerSlots(devices, device, maxWorkers, Infinity);
  return (jobs) => processSlots(workerSlots(devices, device, maxWorkers, jobs));
}

/** The commander parser of `--devices` (its errors are usage errors naming the flag). */
export function parseDevices(value: string): DevicesSpec {
  const v = value.trim();
  if (v === 'all') return { kind: 'all' };
  if (/^\d+$/.test(v)) {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`expected all, a number of workers ≥ 1 or a list of device ids like 0,1,3, got ${value}.`);
    return { kind: 'count', n };
  }
  if (/^\d+(,\d+)+$/.test(v)) {
    const ids = v.split(',').map(Number);
    const twice = ids.find((id, k) => ids.indexOf(id) !== k);
    if (twice !== undefined) throw new InvalidArgumentError(`device ${twice} is listed twice, got ${value}.`);
    return { kind: 'list', ids };
  }
  throw new InvalidArgumentError(`expected all, a number of workers or a list of device ids like 0,1,3, got ${value}.`);
}

/**
 * The CUDA devices this process sees (the addon's cudaGetDeviceCount). GPTQ_FORGE_TEST_CUDA_DEVICES
 * overrides the count, for the tests of the refusals on hosts without a GPU only: nothing is run
 * on the devices it invents, since every check that uses it comes before any work.
 */
export function visibleGpus(): number {
  const knob = process.env.GPTQ_FORGE_TEST_CUDA_DEVICES;
  return knob !== undefined && /^\d+$/.test(knob) ? Number(knob) : cudaInfo().devices;
}

/** One worker process: its label in the progress display and the environment it is started with. */
export interface WorkerSlot {
  /** `gpu 3` or `cpu 1`. */
  label: string;
  /** The environment variables set for this worker (on top of the parent's). */
  env: Record<string, string>;
}

/**
 * The workers for `spec` on `device`, at most `maxWorkers` and at most `jobs` (no idle
 * workers). cuda: `all` is every visible GPU, N is devices 0..N-1, a list is those ids; each must
 * be visible. When the parent itself runs under a CUDA_VISIBLE_DEVICES list, ids index that list
 * (as CUDA numbers the visible cards). cpu: only a number of workers; each gets
 * floor(threads / N) native threads (at least 1), or GPTQ_FORGE_THREADS per worker when the user
 * set it.
 */
export function workerSlots(spec: DevicesSpec, device: Device, maxWorkers: number | undefined, jobs: number, visible = visibleGpus()): WorkerSlot[] {
  const shown = devicesText(spec);
  let ids: number[];
  if (device === 'cpu') {
    if (spec.kind !== 'count') throw new UsageError(`--devices ${shown}: with --device cpu give a number of CPU workers, e.g. --devices 2`);
    ids = Array.from({ length: spec.n }, (_, k) => k);
  } else {
    if (visible === 0) throw new UsageError(`--devices ${shown}: no CUDA device is visible (use --device cpu --devices N for CPU workers)`);
    if (spec.kind === 'all') ids = Array.from({ length: visible }, (_, k) => k);
    else if (spec.kind === 'count') {
      if (spec.n > visible) throw new UsageError(`--devices ${shown}: ${spec.n} workers need ${spec.n} GPUs, ${visible} visible (use --devices all or a smaller number)`);
      ids = Array.from({ length: spec.n }, (_, k) => k);
    } else {
      const missing = spec.ids.find((id) => id >= visible);
      if (missing !== undefined) throw new UsageError(`--devices ${shown}: device ${missing} is not visible (${visible} CUDA device(s): 0-${visible - 1})`);
      ids = spec.ids;
    }
  }
  ids = ids.slice(0, Math.max(1, Math.min(maxWorkers ?? Infinity, jobs)));
  if (device === 'cpu') {
    const set = process.env.GPTQ_FORGE_THREADS;
    const threads = set !== undefined && set.trim() !== '' ? set.trim() : String(Math.max(1, Math.floor(nativeThreads() / ids.length)));
    return ids.map((id) => ({ label: `cpu ${id}`, env: { GPTQ_FORGE_THREADS: threads } }));
  }
  const parentList = visibleDeviceList();
  return ids.map((id) => ({ label: `gpu ${id}`, env: { CUDA_VISIBLE_DEVICES: parentList.length > 0 ? parentList[id] : String(id) } }));
}

/**
 * The slots to start processes for: none when there is one slot and it is this process's own
 * device (cpu with the parent's threads; cuda on the card the parent sees as device 0). Then the
 * work runs here, as without --devices: one worker process per branch would only add its start
 * (node, model, calibration: about 1 s a branch, measured on llama2-m's eight branches).
 */
export function processSlots(slots: WorkerSlot[]): WorkerSlot[] | null {
  if (slots.length !== 1) return slots;
  const env = slots[0].env;
  if (env.CUDA_VISIBLE_DEVICES !== undefined) {
    return env.CUDA_VISIBLE_DEVICES === (visibleDeviceList()[0] ?? '0') ? null : slots;
  }
  return env.GPTQ_FORGE_THREADS === String(nativeThreads()) || env.GPTQ_FORGE_THREADS === process.env.GPTQ_FORGE_THREADS?.trim() ? null : slots;
}
