/** Which engine quantizes a build (cpu or cuda), and what the CUDA engine refuses. */
import { UserError } from '../errors';
import { cudaAvailable, cudaUnavailableReason } from '../native';
import { Device } from './manifest';
import { QuantizeSettings } from './settings';

/** Throws a UserError when these settings cannot run on the CUDA engine here. */
export function checkCudaSettings(s: QuantizeSettings): void {
  const why = cudaUnavailableReason();
  if (why) throw new UserError(`--device cuda: ${why}`);
  if (s.rtn) throw new UserError('--device cuda does not do round-to-nearest (--rtn); use --device cpu');
  if (s.mse) throw new UserError('--device cuda does not do --mse; use --device cpu');
  if (!s.trueSequential) throw new UserError('--device cuda is true-sequential only; use --device cpu for --no-true-sequential');
}

/**
 * The engine for a build: the one asked for (cuda is checked here), or by default cuda where a
 * device is visible and the settings run on it, cpu otherwise.
 */
export function pickDevice(asked: Device | undefined, s: QuantizeSettings): Device {
  if (asked === 'cuda') checkCudaSettings(s);
  if (asked) return asked;
  return cudaAvailable() && !s.rtn && !s.mse && s.trueSequential ? 'cuda' : 'cpu';
}
