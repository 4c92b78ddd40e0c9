import { processSlots, WorkerSlot } from '../../src/cli/devices';
import { nativeThreads } from '../../src/native';

describe('processSlots: one slot on this process\'s own device runs here, not in a worker', () => {
  const saved = process.env.CUDA_VISIBLE_DEVICES;
  afterEach(() => {
    if (saved === undefined) delete process.env.CUDA_VISIBLE_DEVICES;
    else process.env.CUDA_VISIBLE_DEVICES = saved;
  });
  const gpu = (id: string): WorkerSlot => ({ label: `gpu ${id}`, env: { CUDA_VISIBLE_DEVICES: id } });
  const cpu = (threads: string): WorkerSlot => ({ label: 'cpu 0', env: { GPTQ_FORGE_THREADS: threads } });

  test('one GPU slot on device 0 (or the parent\'s first visible card) runs in the parent', () => {
    delete process.env.CUDA_VISIBLE_DEVICES;
    expect(processSlots([gpu('0')])).toBeNull();
    expect(processSlots([gpu('3')])).toEqual([gpu('3')]);
    process.env.CUDA_VISIBLE_DEVICES = '5,6';
    expect(processSlots([gpu('5')])).toBeNull();
    expect(processSlots([gpu('6')])).toEqual([gpu('6')]);
  });

  test('one CPU slot with the parent\'s threads runs in the parent; several slots always get workers', () => {
    const all = String(nativeThreads());
    expect(processSlots([cpu(all)])).toBeNull();
    expect(processSlots([cpu(all), cpu(all)])).toHaveLength(2);
    expect(processSlots([gpu('0'), gpu('1')])).toHaveLength(2);
  });
});
