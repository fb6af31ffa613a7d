import { z } from "zod";
import { Architecture } from "./architecture.ts";

/*
 * The plan. `PlanInput` is what a user writes (CLI flags, a --spec file, the builder): every field is the
 * camelCase of its CLI flag (`--lora-rank` ↔ `loraRank`), so an issue's `path` names both. `Plan` is the
 * resolved form every later stage consumes: each field filled with LLaMA-Factory's default, fields that do
 * not apply to the method set to null, the model and GPU resolved to their specs.
 */

const int = (min: number) => z.number().int().min(min);
/**
 * Bounds past any real run, so that a typo reads as an input error rather than as petabytes: 2^24 tokens per sequence
 * (the longest context windows are 1–10 M), and 2^20 sequences per micro-batch or accumulation.
 */
export const MAX_SEQ_LEN = 2 ** 24;
export const MAX_BATCH = 2 ** 20;
/** GPUs in one node (a 72-GPU NVLink rack planned as one node is the largest real case), and nodes in one run. */
export const MAX_GPUS_PER_NODE = 1024;
export const MAX_NODES = 2 ** 17;

export const Method = z.enum(["full", "freeze", "lora", "qlora"]);
export type Method = z.infer<typeof Method>;
export const Sharding = z.enum(["none", "zero1", "zero2", "zero3", "fsdp", "fsdp2"]);
export type Sharding = z.infer<typeof Sharding>;
/** The DeepSpeed ZeRO stages (a deepspeed.json, launched by torchrun). */
export function isDeepSpeed(sharding: Sharding): sharding is "zero1" | "zero2" | "zero3" {
  return sharding === "zero1" || sharding === "zero2" || sharding === "zero3";
}
/** accelerate's FSDP, version 1 or 2 (an accelerate config, launched by `accelerate launch`). */
export function isFsdp(sharding: Sharding): sharding is "fsdp" | "fsdp2" {
  return sharding === "fsdp" || sharding === "fsdp2";
}
export const FsdpStrategy = z.enum(["full_shard", "shard_grad_op", "hybrid_shard", "no_shard"]);
export type FsdpStrategy = z.infer<typeof FsdpStrategy>;
export const Offload = z.enum(["none", "optimizer", "params"]);
export type Offload = z.infer<typeof Offload>;
export const Precision = z.enum(["bf16", "fp16", "fp32", "pure_bf16"]);
export type Precision = z.infer<typeof Precision>;
export const Attention = z.enum(["auto", "eager", "sdpa", "fa2"]);
export type Attention = z.infer<typeof Attention>;
export const QuantMethod = z.enum(["bnb", "gptq", "awq"]);
export type QuantMethod = z.infer<typeof QuantMethod>;
/**
 * LLaMA-Factory's memory-efficient optimizers: GaLore and APOLLO project each matrix's gradient to a low rank and
 * keep the optimizer states there (use_galore, use_apollo; full or freeze tuning); BAdam trains one decoder layer at
 * a time, in layer mode (use_badam, badam_mode: layer; full tuning); Adam-mini keeps one second moment per block
 * (use_adam_mini) and Muon one momentum buffer per weight matrix (use_muon), for any method.
 */
export const LowMemoryOptimizer = z.enum(["galore", "apollo", "badam", "adam_mini", "muon"]);
export type LowMemoryOptimizer = z.infer<typeof LowMemoryOptimizer>;
/** GaLore and APOLLO: the two that keep their optimizer states on rank-r projections of each matrix's gradient. */
export function projectsGradients(o: LowMemoryOptimizer | null | undefined): o is "galore" | "apollo" {
  return o === "galore" || o === "apollo";
}
/** The ones LLaMA-Factory builds for any finetuning method (the others: full, and GaLore/APOLLO freeze, tuning). */
export function anyMethodOptimizer(o: LowMemoryOptimizer | null | undefined): boolean {
  return o === "adam_mini" || o === "muon";
}
/**
 * Whether `optim` is what steps the trained weights: with no memory-efficient optimizer, or under BAdam, which steps
 * its active layer with optim's class (Adam-mini and Muon ignore optim; GaLore and APOLLO take adamw_torch only).
 */
export function optimSteps(o: LowMemoryOptimizer | null | undefined): boolean {
  return o === null || o === undefined || o === "badam";
}
/** `optim` unset or `adamw_torch`: AdamW whose step may be the foreach one (the fused AdamW is the way out of it). */
export function plainAdamW(optim: string | null | undefined): boolean {
  return optim === null || optim === undefined || optim === "adamw_torch";
}
/** DeepSpeed's optimizer offload, which steps its CPU Adam whatever the optimizer (OFFLOAD_REPLACES_OPTIMIZER). */
export function deepspeedCpuAdam(p: { readonly sharding: Sharding; readonly offload: Offload }): boolean {
  return isDeepSpeed(p.sharding) && p.offload !== "none";
}
/** How each is written in prose. */
export const LOW_MEMORY_OPTIMIZER_NAMES: Readonly<Record<LowMemoryOptimizer, string>> = {
  galore: "GaLore",
  apollo: "APOLLO",
  badam: "BAdam",
  adam_mini: "Adam-mini",
  muon: "Muon",
};
export const QuantBits = z.union([z.literal(4), z.literal(8)], { error: "expected 4 or 8" });
export type QuantBits = z.infer<typeof QuantBits>;

/** A model given by its dimensions rather than by id: an Architecture, or a Hugging Face config.json object. */
const checkpointShards = z
  .number()
  .int()
  .positive()
  .max(100_000)
  .optional()
  .meta({ description: "checkpoint shard files (model-0000k-of-0000N.safetensors), where known" });
export const ModelDefinition = z.union([
  z.strictObject({ id: z.string().min(1), architecture: Architecture, shards: checkpointShards }),
  z.strictObject({
    id: z.string().min(1),
    config: z.record(z.string(), z.unknown()),
    shards: checkpointShards,
  }),
]);
export type ModelDefinition = z.infer<typeof ModelDefinition>;

/** A chat template name: letters, digits and _ . - */
export const TEMPLATE_NAME = /^[A-Za-z0-9_.-]+$/;

/** Names LLaMA-Factory looks up in dataset_info.json (or hub ids), comma-separated: nothing a shell or YAML reads. */
export const DATASET_NAMES = /^[\p{L}\p{N}_.\-/:@+]+(,[\p{L}\p{N}_.\-/:@+]+)*$/u;

const moduleList = z.array(z.string().regex(/^[A-Za-z_][\w.]*$/, "a module name")).min(1);

/** What a user specifies. Only `model` and `gpu` are required. */
export const PlanInput = z.strictObject({
  model: z.union([z.string().min(1), ModelDefinition]).meta({
    description:
      "catalog id (hub id, case-insensitive), a folder holding a config.json, or explicit dimensions",
  }),
  gpu: z.string().min(1).meta({ description: "catalog GPU id, or `custom` with gpuMemory (--gpu-memory)" }),
  gpuMemory: z
    .number()
    .positive()
    .optional()
    .meta({ description: "GPU capacity in GiB (overrides the catalog)" }),
  gpus: int(1).max(MAX_GPUS_PER_NODE).optional().meta({ description: "GPUs per node; default 1" }),
  nodes: int(1).max(MAX_NODES).optional().meta({ description: "nodes; default 1" }),
  hostRam: z.number().positive().optional().meta({ description: "host memory per node in GiB" }),
  headroom: z
    .number()
    .min(0)
    .lt(1)
    .optional()
    .meta({ description: "share of GPU memory kept free; default 0.05" }),
  method: Method.optional().meta({ description: "finetuning method; default lora" }),
  quantBits: QuantBits.optional().meta({ description: "qlora base-weight bits; default 4" }),
  quantMethod: QuantMethod.optional().meta({ description: "qlora quantization; default bnb" }),
  sharding: Sharding.optional().meta({ description: "none = one replica per GPU (DDP); default none" }),
  fsdpStrategy: FsdpStrategy.optional().meta({
    description: "FSDP1 strategy (sharding fsdp); default full_shard",
  }),
  offload: Offload.optional().meta({ description: "CPU offload; default none" }),
  lowMemoryOptimizer: LowMemoryOptimizer.optional().meta({
    description:
      "GaLore or APOLLO (method full or freeze), layer-wise BAdam (full), Adam-mini or Muon (any method); default none",
  }),
  lowMemoryRank: int(1).optional().meta({ description: "GaLore/APOLLO projection rank; default 16" }),
  lowMemoryLayerwise: z.boolean().optional().meta({
    description:
      "GaLore/APOLLO: step each parameter in its gradient hook (one GPU, grad-accum 1); default false",
  }),
  precision: Precision.optional().meta({ description: "default bf16 where the GPU supports it, else fp16" }),
  optimizer: z.string().min(1).optional().meta({ description: "LLaMA-Factory optim; default its own" }),
  seqLen: int(1).max(MAX_SEQ_LEN).optional().meta({ description: "cutoff_len; default 2048" }),
  packing: z.boolean().optional().meta({ description: "pack samples to seqLen; default false" }),
  microBatch: int(1)
    .max(MAX_BATCH)
    .optional()
    .meta({ description: "per_device_train_batch_size; default 1" }),
  gradAccum: int(1).max(MAX_BATCH).optional().meta({ description: "gradient_accumulation_steps; default 8" }),
  syncEachBatch: z.boolean().optional().meta({
    description:
      "reduce gradients after every micro-batch (accelerator_config gradient_accumulation_kwargs.sync_each_batch); default false",
  }),
  gradientCheckpointing: z.boolean().optional().meta({ description: "default true" }),
  attention: Attention.optional().meta({ description: "attention implementation; default auto" }),
  liger: z.boolean().optional().meta({ description: "Liger kernels; default false" }),
  loraRank: int(1).optional().meta({ description: "default 8" }),
  loraTarget: z
    .union([z.literal("all"), moduleList])
    .optional()
    .meta({ description: "default all" }),
  loraAlpha: int(1).optional().meta({ description: "default 2 × loraRank" }),
  loraDropout: z.number().min(0).lt(1).optional().meta({ description: "default 0" }),
  useDora: z.boolean().optional().meta({ description: "default false" }),
  additionalTarget: moduleList.optional().meta({ description: "modules trained in full beside LoRA" }),
  freezeTrainableLayers: z
    .number()
    .int()
    .refine((n) => n !== 0, "must not be 0")
    .optional()
    .meta({ description: "last N layers trained (negative: the first N); default 2" }),
  freezeTrainableModules: z
    .union([z.literal("all"), moduleList])
    .optional()
    .meta({ description: "sub-modules of the trained layers; default all" }),
  freezeVisionTower: z.boolean().optional().meta({ description: "default true" }),
  freezeProjector: z.boolean().optional().meta({ description: "default true" }),
  imagesPerSample: int(0).optional().meta({ description: "default 0" }),
  imageMaxPixels: int(1).optional().meta({ description: "default 589824 (768 × 768)" }),
  videosPerSample: int(0)
    .optional()
    .meta({ description: "videos per sample (Qwen2-VL, Qwen2.5-VL and Qwen3-VL); default 0" }),
  videoFrames: int(1)
    .optional()
    .meta({ description: "frames sampled per video, at most (video_maxlen); default 128" }),
  videoMaxPixels: int(1)
    .optional()
    .meta({ description: "pixels per video frame, at most; default 65536 (256 × 256)" }),
  dataset: z
    .string()
    .regex(
      DATASET_NAMES,
      "comma-separated dataset names of letters, digits and _ . - / : @ + (no spaces, quotes or shell characters)",
    )
    .optional()
    .meta({ description: "dataset name(s) for the YAML, comma-separated; default the demo set" }),
  template: z
    .string()
    .regex(TEMPLATE_NAME, "a template name of letters, digits and _ . -")
    .optional()
    .meta({ description: "chat template; default the model's" }),
});
export type PlanInput = z.infer<typeof PlanInput>;

/**
 * A checkpoint stored quantized, as its config.json's `quantization_config` says (transformers' quantizers: GPTQ,
 * AWQ, bitsandbytes): LLaMA-Factory loads it as it is and trains LoRA adapters on it.
 */
export const CheckpointQuantization = z.strictObject({
  /** `quant_method` as the config writes it (`bitsandbytes` for bnb) */
  declared: z.string(),
  /** the method as a plan carries it; null for one tunefit does not model (fp8, HQQ, EETQ, compressed-tensors, …) */
  method: QuantMethod.nullable(),
  /** the stored width; null where it is not 4 or 8 bits */
  bits: QuantBits.nullable(),
  /** the width as the config writes it */
  statedBits: z.number().nullable(),
});
export type CheckpointQuantization = z.infer<typeof CheckpointQuantization>;

/** The model as resolved: where it came from and its architecture. */
export const ResolvedModel = z.strictObject({
  id: z.string(),
  source: z.enum(["catalog", "config", "explicit"]),
  /** the folder of a config.json model */
  dir: z.string().nullable(),
  architecture: Architecture,
  defaultTemplate: z.string().nullable(),
  groupTemplate: z.string().nullable(),
  shards: z.number().int().positive().nullable(),
  /** the checkpoint's own quantization (a config.json model whose quantization_config tunefit reads), else null */
  quantization: CheckpointQuantization.nullable(),
});
export type ResolvedModel = z.infer<typeof ResolvedModel>;

/** The GPU as resolved: its reported capacity and capabilities. */
export const ResolvedGpu = z.strictObject({
  id: z.string(),
  name: z.string(),
  capacityBytes: z.number().int().positive().meta({ description: "as the card reports it, or gpuMemory" }),
  bf16: z.boolean(),
  fp8: z.boolean(),
  flashAttention2: z.boolean(),
  computeCapability: z.string().nullable(),
  denseBf16Tflops: z.number().nullable(),
  denseFp16Tflops: z.number().nullable(),
  memoryBandwidthGBps: z.number().nullable(),
  linkGBps: z.number().nullable(),
});
export type ResolvedGpu = z.infer<typeof ResolvedGpu>;

/** The resolved plan: every setting filled; settings the method does not use are null. */
export const Plan = z.strictObject({
  model: ResolvedModel,
  gpu: ResolvedGpu,
  gpus: int(1),
  nodes: int(1),
  hostRamBytes: z.number().int().positive().nullable(),
  headroom: z.number().min(0).lt(1),
  method: Method,
  quantBits: QuantBits.nullable(),
  quantMethod: QuantMethod.nullable(),
  sharding: Sharding,
  fsdpStrategy: FsdpStrategy.nullable(),
  offload: Offload,
  lowMemoryOptimizer: LowMemoryOptimizer.nullable(),
  lowMemoryRank: int(1).nullable(),
  lowMemoryLayerwise: z.boolean().nullable(),
  precision: Precision,
  optimizer: z.string().nullable().meta({ description: "null: LLaMA-Factory's default, not written" }),
  seqLen: int(1),
  packing: z.boolean(),
  microBatch: int(1),
  gradAccum: int(1),
  syncEachBatch: z.boolean(),
  gradientCheckpointing: z.boolean(),
  attention: Attention,
  liger: z.boolean(),
  loraRank: int(1).nullable(),
  loraTarget: z.union([z.literal("all"), z.array(z.string())]).nullable(),
  loraAlpha: int(1).nullable(),
  loraDropout: z.number().nullable(),
  useDora: z.boolean().nullable(),
  additionalTarget: z.array(z.string()).nullable(),
  freezeTrainableLayers: z.number().int().nullable(),
  freezeTrainableModules: z.union([z.literal("all"), z.array(z.string())]).nullable(),
  freezeVisionTower: z.boolean(),
  freezeProjector: z.boolean(),
  imagesPerSample: int(0),
  imageMaxPixels: int(1),
  videosPerSample: int(0),
  videoFrames: int(1),
  videoMaxPixels: int(1),
  dataset: z.string().nullable().meta({ description: "null: the bundle's demo dataset" }),
  /** null: no LLaMA-Factory template is known, and train.yaml leaves `template` out (LLaMA-Factory then reads the
   * tokenizer's chat template, or takes `empty`) */
  template: z.string().nullable(),
});
export type Plan = z.infer<typeof Plan>;

/**
 * Plan fields that belong to one method (LoRA/QLoRA, QLoRA's quantization, freeze, the memory-efficient optimizers
 * of full and freeze tuning): the qualifier groups.
 */
export const METHOD_FIELDS = {
  lora: ["loraRank", "loraAlpha", "loraDropout", "loraTarget", "useDora", "additionalTarget"],
  quant: ["quantBits", "quantMethod"],
  freeze: ["freezeTrainableLayers", "freezeTrainableModules"],
  lowMemory: ["lowMemoryOptimizer", "lowMemoryRank", "lowMemoryLayerwise"],
} as const satisfies Record<string, readonly (keyof PlanInput)[]>;

/** Every method-specific field. */
export const ALL_METHOD_FIELDS: readonly (keyof PlanInput)[] = [
  ...METHOD_FIELDS.lora,
  ...METHOD_FIELDS.quant,
  ...METHOD_FIELDS.freeze,
  ...METHOD_FIELDS.lowMemory,
];

/** The JSON Schema (draft 2020-12) of plan input: what a `--spec` file holds. */
export function planInputJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(PlanInput, { io: "input" }) as Record<string, unknown>;
}
