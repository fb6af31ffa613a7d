import { closest } from "../_util.ts";
import { GpuRecord } from "../schema/catalog.ts";
import { GPU_RECORDS } from "./data/gpus.ts";

export const BYTES_PER_MIB = 1024 ** 2;
export const BYTES_PER_GIB = 1024 ** 3;

/** Every built-in GPU. */
export function listGpus(): readonly GpuRecord[] {
  return GPU_RECORDS;
}

/** Looks a GPU up by catalog id, case-insensitively. */
export function findGpu(id: string): GpuRecord | undefined {
  const key = id.trim().toLowerCase();
  return GPU_RECORDS.find((g) => g.id === key);
}

/** The catalog GPU ids closest to an unknown one. */
export function suggestGpuIds(id: string, max = 3): string[] {
  return closest(id, [...GPU_RECORDS.map((g) => g.id), "custom"], max);
}

/** The capacity a card reports (nvidia-smi's total), in bytes. */
export function gpuCapacityBytes(gpu: GpuRecord): number {
  return gpu.memoryMib * BYTES_PER_MIB;
}

/** Validates the generated data against the schema. */
export function validateGpuCatalog(): void {
  for (const g of GPU_RECORDS) GpuRecord.parse(g);
}
