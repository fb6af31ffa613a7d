import { z } from "zod";

/**
 * The largest dimension accepted (10 million): far above any real model's (vocabularies reach ~260 thousand,
 * widths ~30 thousand), low enough that parameter counts stay exact JavaScript integers.
 */
export const MAX_DIMENSION = 10_000_000;
const count = z.number().int().nonnegative().max(MAX_DIMENSION);
const positive = z.number().int().positive().max(MAX_DIMENSION);
/** The most layers (or blocks) accepted: real models have at most a few hundred. */
export const MAX_LAYERS = 10_000;
const layers = z.number().int().positive().max(MAX_LAYERS);

/**
 * The model families tunefit counts exactly. Each is a Hugging Face `model_type`; the family decides the
 * names of the linear modules (what LoRA targets) and the family-specific details of the count.
 */
export const ModelType = z.enum([
  "llama",
  "mistral",
  "qwen",
  "qwen2",
  "qwen3",
  "gemma",
  "gemma2",
  "gemma3_text",
  "gemma3",
  "phi3",
  "internlm2",
  "baichuan",
  "chatglm",
  "glm",
  "glm4",
  "mixtral",
  "qwen2_moe",
  "qwen3_moe",
  "deepseek_v2",
  "deepseek_v3",
  "qwen2_vl",
  "qwen2_5_vl",
  "qwen3_vl",
  "qwen3_vl_moe",
  "mllama",
  "minicpmv",
]);
export type ModelType = z.infer<typeof ModelType>;

/** Mixture-of-experts layout of the decoder. */
export const MoeArchitecture = z.strictObject({
  numExperts: positive.meta({ description: "routed experts per MoE layer" }),
  expertsPerToken: positive.meta({ description: "experts each token is routed to (top-k)" }),
  expertIntermediateSize: positive.meta({ description: "width of one routed expert's MLP" }),
  sharedExpertIntermediateSize: count.meta({
    description:
      "width of the always-active shared MLP (DeepSeek: n_shared_experts × moe_intermediate_size); 0 = none",
  }),
  sharedExpertGate: z.boolean().meta({ description: "Qwen-MoE's sigmoid gate on the shared expert (H → 1)" }),
  routerBias: z.boolean().meta({ description: "DeepSeek-V3's e_score_correction_bias (E values)" }),
  moeLayers: z.array(count).meta({ description: "indices of decoder layers whose MLP is a MoE block" }),
});
export type MoeArchitecture = z.infer<typeof MoeArchitecture>;

/** Multi-head latent attention (DeepSeek-V2/V3). */
export const MlaArchitecture = z.strictObject({
  qLoraRank: positive.nullable().meta({ description: "null: q is a plain projection (DeepSeek-V2-Lite)" }),
  kvLoraRank: positive,
  qkNopeHeadDim: positive,
  qkRopeHeadDim: positive,
  vHeadDim: positive,
});
export type MlaArchitecture = z.infer<typeof MlaArchitecture>;

/** The language model: every decoder-only family reduces to these dimensions. */
export const TextArchitecture = z.strictObject({
  vocabSize: positive.meta({ description: "rows of lm_head" }),
  embedRows: positive.meta({ description: "rows of embed_tokens (mllama appends 8 rows)" }),
  hiddenSize: positive,
  numLayers: layers.meta({ description: "decoder layers, cross-attention layers included" }),
  numHeads: positive,
  numKvHeads: positive,
  headDim: positive.meta({ description: "explicit head_dim when the config has one, else hidden/heads" }),
  intermediateSize: count.meta({ description: "dense MLP width (0 when every layer is MoE)" }),
  tieWordEmbeddings: z.boolean(),
  qkvBias: z.boolean(),
  oBias: z.boolean(),
  mlpBias: z.boolean(),
  mlp: z.enum(["gated", "plain"]),
  norm: z.enum(["rmsnorm", "layernorm"]),
  normsPerLayer: positive,
  qkNorm: z.boolean().meta({ description: "RMSNorm over head_dim on q and k (Qwen3, Gemma 3)" }),
  crossAttentionLayers: z.array(count).meta({ description: "mllama's gated cross-attention layers" }),
  maxPositionEmbeddings: positive.nullable(),
  moe: MoeArchitecture.nullable(),
  mla: MlaArchitecture.nullable(),
});
export type TextArchitecture = z.infer<typeof TextArchitecture>;

/** Qwen2-VL's ViT: LayerNorm, plain GELU MLP of width embedDim × mlp_ratio. */
export const Qwen2VlVision = z.strictObject({
  kind: z.literal("qwen2_vl"),
  depth: layers,
  embedDim: positive,
  mlpHiddenSize: positive,
  numHeads: positive,
  inChannels: positive,
  patchSize: positive,
  temporalPatchSize: positive,
  spatialMergeSize: positive,
  outHiddenSize: positive,
});

/** The dimensions Qwen2.5-VL's and Qwen3-VL's ViTs share. */
const qwenVitFields = {
  depth: layers,
  hiddenSize: positive,
  intermediateSize: positive,
  numHeads: positive,
  inChannels: positive,
  patchSize: positive,
  temporalPatchSize: positive,
  spatialMergeSize: positive,
  outHiddenSize: positive,
};

/** Qwen2.5-VL's ViT: RMSNorm, gated SiLU MLP with biases, window attention. */
export const Qwen25VlVision = z.strictObject({ kind: z.literal("qwen2_5_vl"), ...qwenVitFields });

/**
 * Qwen3-VL's ViT: LayerNorm, plain GELU MLP with biases, a learned position table (numPositionEmbeddings rows) and
 * DeepStack: the merged features of a few blocks (deepstack_visual_indexes) go through mergers of their own into
 * the first decoder layers.
 */
export const Qwen3VlVision = z.strictObject({
  kind: z.literal("qwen3_vl"),
  ...qwenVitFields,
  numPositionEmbeddings: positive,
  deepstackLayers: count.meta({ description: "DeepStack mergers (len(deepstack_visual_indexes))" }),
});

/** Gemma 3's SigLIP tower and its projector (avg-pooled to mmTokensPerImage tokens). */
export const SiglipVision = z.strictObject({
  kind: z.literal("siglip"),
  numLayers: layers,
  hiddenSize: positive,
  intermediateSize: positive,
  numHeads: positive,
  inChannels: positive,
  imageSize: positive,
  patchSize: positive,
  mmTokensPerImage: positive,
});

/** Llama 3.2 Vision's tiled ViT (local + gated global layers). */
export const MllamaVision = z.strictObject({
  kind: z.literal("mllama"),
  numLayers: layers,
  numGlobalLayers: count,
  hiddenSize: positive,
  intermediateSize: positive,
  numHeads: positive,
  inChannels: positive,
  imageSize: positive,
  patchSize: positive,
  maxNumTiles: positive,
  maxAspectRatioId: positive,
  visionOutputDim: positive,
});

/**
 * MiniCPM-V 2.5/2.6 (remote code): a NaViT SigLIP tower without its head, and a perceiver resampler (one
 * cross-attention of queryNum learned queries over the patches) into the language model's width. An image is
 * sliced: the whole image at about sliceResolution² pixels plus up to maxSliceNums crops of that size, each
 * becoming queryNum tokens.
 */
export const MinicpmvVision = z.strictObject({
  kind: z.literal("minicpmv"),
  numLayers: layers,
  hiddenSize: positive,
  intermediateSize: positive,
  numHeads: positive,
  inChannels: positive,
  imageSize: positive.meta({
    description: "sizes the learned position table: (imageSize / patchSize)² rows",
  }),
  patchSize: positive,
  queryNum: positive.meta({ description: "tokens per slice (the resampler's queries)" }),
  sliceResolution: positive.meta({ description: "scale_resolution: the side of one slice, in pixels" }),
  maxSliceNums: positive.meta({ description: "most crops an image is cut into, besides the whole image" }),
});

export const VisionArchitecture = z.discriminatedUnion("kind", [
  Qwen2VlVision,
  Qwen25VlVision,
  Qwen3VlVision,
  SiglipVision,
  MllamaVision,
  MinicpmvVision,
]);
export type VisionArchitecture = z.infer<typeof VisionArchitecture>;

/** A model's architecture: dimensions only. Parameter counts are always computed from it. */
export const Architecture = z.strictObject({
  modelType: ModelType,
  text: TextArchitecture,
  vision: VisionArchitecture.nullable(),
});
export type Architecture = z.infer<typeof Architecture>;
