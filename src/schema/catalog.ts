import { z } from "zod";
import { Architecture } from "./architecture.ts";

/** One id under which a catalog model is known (the hub id, or an alias LLaMA-Factory lists). */
export const CatalogId = z.strictObject({
  id: z.string().min(1),
  defaultTemplate: z
    .string()
    .nullable()
    .meta({ description: "LLaMA-Factory's DEFAULT_TEMPLATE for this id" }),
  groupTemplate: z
    .string()
    .nullable()
    .meta({ description: "the template of the register_model_group this id belongs to" }),
  llamafactoryName: z.string().nullable(),
  shards: z.number().int().positive().nullable().meta({ description: "checkpoint shard files, where known" }),
});
export type CatalogId = z.infer<typeof CatalogId>;

/** A built-in model: its ids and its architecture (dimensions only; counts are computed). */
export const CatalogModelRecord = z.strictObject({
  key: z.string(),
  id: z.string(),
  ids: z.array(CatalogId).min(1),
  architecture: Architecture,
  sources: z.array(z.string()),
});
export type CatalogModelRecord = z.infer<typeof CatalogModelRecord>;

/** A built-in GPU, with capacity as the card reports it (nvidia-smi's total). */
export const GpuRecord = z.strictObject({
  id: z.string(),
  name: z.string(),
  vendor: z.string(),
  memoryMib: z.number().int().positive(),
  computeCapability: z.string().nullable(),
  bf16: z.boolean(),
  fp8: z.boolean(),
  flashAttention2: z.boolean(),
  denseBf16Tflops: z.number().nullable(),
  denseFp16Tflops: z.number().nullable(),
  memoryBandwidthGBps: z.number().nullable(),
  linkGBps: z
    .number()
    .nullable()
    .meta({ description: "GPU-to-GPU bandwidth per direction (NVLink, else PCIe)" }),
  memorySource: z.string().nullable(),
});
export type GpuRecord = z.infer<typeof GpuRecord>;
