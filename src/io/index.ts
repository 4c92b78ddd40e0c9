/** Reading and writing safetensors files and Hugging Face checkpoint folders. */
export * from './dtypes';
export { atomicWriteFile, tempPathFor } from './atomic';
export { Checkpoint, INDEX_FILE, SINGLE_FILE } from './checkpoint';
export { MAX_HEADER_BYTES, buildHeader } from './safetensors-header';
export type { HeaderEntry, HeaderLayout, TensorSpec } from './safetensors-header';
export { SafetensorsFile } from './safetensors-reader';
export type { OpenOptions, TensorInfo } from './safetensors-reader';
export { SafetensorsWriter, asBytes, writeSafetensors } from './safetensors-writer';
export type { TensorData } from './safetensors-writer';
export {
  DEFAULT_MAX_SHARD_BYTES,
  planShards,
  shardFileName,
  writeShardedCheckpoint,
  writeShardedCheckpointFrom,
} from './sharded-writer';
export type { ShardedWriteOptions, ShardedWriteResult } from './sharded-writer';
