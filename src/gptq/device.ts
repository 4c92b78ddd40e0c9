/** Which engine quantizes a build (cpu or cuda): src/device.ts's rule with what the CUDA engine refuses. */
import { chooseDevice, Device } from '../device';
import { QuantizeSettings } from './settings';

/** Why these settings cannot run on the CUDA engine (a sentence naming the flag), or null. */
export function cudaRefusal(s: QuantizeSettings): string | null {
  if (s.rtn) return '--device cuda does not do round-to-nearest (--rtn); use --device cpu';
  // --qep runs on the GPU (docs/gptq.md, "QEP"); its corrected linears never include down_proj
  // (QEP_CORRECTED), which the CUDA layer call refuses (checkCudaQep, src/native/cuda.ts).
  // --gptaq runs on the GPU too (every group's cross term, down_proj's included: layer_quant.h).
  if (!s.trueSequential) return '--device cuda is true-sequential only; use --device cpu for --no-true-sequential';
  return null;
}

/** Throws a UserError when these settings cannot run on the CUDA engine here. */
export function checkCudaSettings(s: QuantizeSettings): void {
  chooseDevice('cuda', cudaRefusal(s));
}

/**
 * The engine for a build: the one asked for (cuda is checked here), or by default cuda where a
 * device is visible and the settings run on it, cpu otherwise.
 */
export function pickDevice(asked: Device | undefined, s: QuantizeSettings): Device {
  return chooseDevice(asked, cudaRefusal(s));
}
