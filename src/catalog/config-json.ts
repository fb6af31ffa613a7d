import { range } from "../_util.ts";
import { type TunefitError, usageError } from "../errors.ts";
import type {
  Architecture,
  ModelType,
  MoeArchitecture,
  TextArchitecture,
  VisionArchitecture,
} from "../schema/architecture.ts";
import { MAX_DIMENSION, MAX_LAYERS, ModelType as ModelTypeSchema } from "../schema/architecture.ts";
import type { CheckpointQuantization, QuantMethod } from "../schema/plan.ts";

/*
 * Hugging Face config.json → Architecture, for every supported model_type.
 *
 * A config.json leaves out whatever equals its transformers config class default, so each family below
 * carries those defaults (transformers 4.57 configuration_*.py; remote-code families: their published
 * configuration_*.py). The core sizes (hidden size, layers, heads, vocabulary, MLP width) are required at
 * the top level of flat configs: a config without them is rejected rather than silently read as the class
 * default. Nested text_config/vision_config blocks (gemma3, mllama, Qwen-VL vision) are routinely trimmed
 * to their non-default keys, so there the class defaults apply.
 */

type Json = Record<string, unknown>;

/** Model types read as another one with the same modules. */
const MODEL_TYPE_ALIASES: Readonly<Record<string, ModelType>> = {
  yi: "llama",
  mllama_text_model: "llama",
};

/** Model types whose language model's fields sit in a nested text_config, with its config class's defaults. */
const NESTED_TEXT_CONFIG: Readonly<Partial<Record<ModelType, string>>> = {
  gemma3: "gemma3_text",
  mllama: "mllama_text",
  qwen3_vl: "qwen3_vl_text",
  qwen3_vl_moe: "qwen3_vl_moe_text",
};

/** Defaults of each family's transformers config class, used for keys a config.json leaves out. */
const CLASS_DEFAULTS: Readonly<Record<string, Json>> = {
  llama: { tie_word_embeddings: false, attention_bias: false, mlp_bias: false },
  mistral: { tie_word_embeddings: false, num_key_value_heads: 8 },
  qwen: { tie_word_embeddings: false },
  qwen2: { tie_word_embeddings: false },
  qwen3: { tie_word_embeddings: false, attention_bias: false, head_dim: 128 },
  gemma: { tie_word_embeddings: true, head_dim: 256 },
  gemma2: { tie_word_embeddings: true, head_dim: 256, num_key_value_heads: 4 },
  gemma3_text: {
    vocab_size: 262_208,
    hidden_size: 2304,
    intermediate_size: 9216,
    num_hidden_layers: 26,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    head_dim: 256,
    tie_word_embeddings: true,
  },
  phi3: { tie_word_embeddings: false },
  internlm2: { tie_word_embeddings: false, bias: true },
  baichuan: { tie_word_embeddings: false },
  chatglm: {
    tie_word_embeddings: false,
    multi_query_attention: false,
    multi_query_group_num: 1,
    add_qkv_bias: false,
    add_bias_linear: false,
    rmsnorm: true,
    post_layer_norm: true,
  },
  glm: { tie_word_embeddings: false, attention_bias: true, head_dim: 128, num_key_value_heads: 2 },
  glm4: { tie_word_embeddings: false, attention_bias: true, head_dim: 128, num_key_value_heads: 2 },
  mixtral: {
    tie_word_embeddings: false,
    num_key_value_heads: 8,
    num_local_experts: 8,
    num_experts_per_tok: 2,
  },
  qwen2_moe: {
    tie_word_embeddings: false,
    num_experts: 60,
    num_experts_per_tok: 4,
    moe_intermediate_size: 1408,
    shared_expert_intermediate_size: 5632,
    decoder_sparse_step: 1,
    mlp_only_layers: [],
  },
  qwen3_moe: {
    tie_word_embeddings: false,
    attention_bias: false,
    num_experts: 128,
    num_experts_per_tok: 8,
    moe_intermediate_size: 768,
    decoder_sparse_step: 1,
    mlp_only_layers: [],
  },
  deepseek_v2: {
    tie_word_embeddings: false,
    q_lora_rank: 1536,
    kv_lora_rank: 512,
    qk_nope_head_dim: 128,
    qk_rope_head_dim: 64,
    v_head_dim: 128,
    n_shared_experts: null,
    n_routed_experts: null,
    first_k_dense_replace: 0,
    moe_layer_freq: 1,
    num_experts_per_tok: null,
    topk_method: "greedy",
  },
  deepseek_v3: {
    tie_word_embeddings: false,
    q_lora_rank: 1536,
    kv_lora_rank: 512,
    qk_nope_head_dim: 128,
    qk_rope_head_dim: 64,
    v_head_dim: 128,
    n_shared_experts: 1,
    n_routed_experts: 256,
    first_k_dense_replace: 3,
    moe_layer_freq: 1,
    num_experts_per_tok: 8,
    topk_method: "noaux_tc",
  },
  qwen2_vl: { tie_word_embeddings: false },
  qwen2_5_vl: { tie_word_embeddings: false },
  // Qwen3VLMoeTextConfig (Qwen3VLMoeConfig's text_config class): the sizes a released config states are required
  qwen3_vl_moe_text: {
    tie_word_embeddings: false,
    attention_bias: false,
    decoder_sparse_step: 1,
    mlp_only_layers: [],
  },
  // Qwen3VLTextConfig (Qwen3VLConfig's text_config class)
  qwen3_vl_text: {
    vocab_size: 151_936,
    hidden_size: 4096,
    intermediate_size: 22_016,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    head_dim: 128,
    tie_word_embeddings: false,
  },
  // MiniCPMVConfig subclasses Qwen2Config (MiniCPM-V 2.6) or LlamaConfig (MiniCPM-Llama3-V 2.5)
  minicpmv: { tie_word_embeddings: false },
  mllama_text: {
    vocab_size: 128_256,
    hidden_size: 4096,
    intermediate_size: 14_336,
    num_hidden_layers: 40,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    cross_attention_layers: [3, 8, 13, 18, 23, 28, 33, 38],
    tie_word_embeddings: false,
  },
};

/** Qwen3VLVisionConfig's defaults (Qwen3-VL-MoE's vision config class has the same). */
const QWEN3_VL_VISION: Json = {
  depth: 27,
  hidden_size: 1152,
  intermediate_size: 4304,
  num_heads: 16,
  in_channels: 3,
  patch_size: 16,
  spatial_merge_size: 2,
  temporal_patch_size: 2,
  out_hidden_size: 3584,
  num_position_embeddings: 2304,
  deepstack_visual_indexes: [8, 16, 24],
};

const VISION_DEFAULTS: Readonly<Record<string, Json>> = {
  qwen3_vl: QWEN3_VL_VISION,
  // Qwen3VLMoeVisionConfig: the same tower
  qwen3_vl_moe: QWEN3_VL_VISION,
  // MiniCPM-V's configuration_minicpm.py default_vision_config (SigLIP-400M, NaViT)
  minicpmv: {
    hidden_size: 1152,
    intermediate_size: 4304,
    num_hidden_layers: 27,
    num_attention_heads: 16,
    num_channels: 3,
    image_size: 980,
    patch_size: 14,
  },
  // Qwen2VLVisionConfig
  qwen2_vl: {
    depth: 32,
    embed_dim: 1280,
    mlp_ratio: 4,
    num_heads: 16,
    in_channels: 3,
    patch_size: 14,
    spatial_merge_size: 2,
    temporal_patch_size: 2,
  },
  // Qwen2_5_VLVisionConfig
  qwen2_5_vl: {
    depth: 32,
    hidden_size: 3584,
    intermediate_size: 3420,
    num_heads: 16,
    in_channels: 3,
    patch_size: 14,
    spatial_merge_size: 2,
    temporal_patch_size: 2,
  },
  // SiglipVisionConfig (Gemma3Config's vision_config class)
  siglip: {
    hidden_size: 768,
    intermediate_size: 3072,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    num_channels: 3,
    image_size: 224,
    patch_size: 16,
  },
  // MllamaVisionConfig (its image_size default 448 differs from the released 560: released configs state it)
  mllama: {
    hidden_size: 1280,
    intermediate_size: 5120,
    num_hidden_layers: 32,
    num_global_layers: 8,
    attention_heads: 16,
    num_channels: 3,
    image_size: 448,
    patch_size: 14,
    max_num_tiles: 4,
    vision_output_dim: 7680,
    supported_aspect_ratios: [
      [1, 1],
      [1, 2],
      [1, 3],
      [1, 4],
      [2, 1],
      [2, 2],
      [3, 1],
      [4, 1],
    ],
  },
};

/** Reads fields of one config object, naming the config.json field in every error. */
class Fields {
  readonly #cfg: Json;
  readonly #defaults: Json;
  readonly #prefix: string;
  readonly #source: string;
  readonly #modelType: string;

  constructor(cfg: Json, defaults: Json, prefix: string, source: string, modelType: string) {
    this.#cfg = cfg;
    this.#defaults = defaults;
    this.#prefix = prefix;
    this.#source = source;
    this.#modelType = modelType;
  }

  #raw(keys: readonly string[]): { key: string; value: unknown } {
    for (const key of keys) {
      const value = this.#cfg[key];
      if (value !== undefined && value !== null) return { key, value };
    }
    for (const key of keys) {
      const value = this.#defaults[key];
      if (value !== undefined) return { key, value };
    }
    return { key: keys[0] ?? "", value: undefined };
  }

  #path(key: string): string {
    return `${this.#source}: ${this.#prefix}${key}`;
  }

  /** Whether the config itself (not the class defaults) states the key. */
  has(key: string): boolean {
    return this.#cfg[key] !== undefined && this.#cfg[key] !== null;
  }

  /** A required size: a positive integer. */
  size(...keys: string[]): number {
    const { key, value } = this.#raw(keys);
    if (value === undefined) {
      throw usageError(
        "CONFIG_FIELD_MISSING",
        this.#path(key),
        `config.json (model_type "${this.#modelType}") has no "${this.#prefix}${keys.join('" or "')}"`,
        `Add "${this.#prefix}${key}": <positive integer> as the model's Hugging Face config.json has it.`,
      );
    }
    return this.#positiveInt(key, value);
  }

  /** An optional size: undefined when absent everywhere. */
  optionalSize(...keys: string[]): number | undefined {
    const { key, value } = this.#raw(keys);
    return value === undefined ? undefined : this.#positiveInt(key, value);
  }

  /** A size that the config may set to null on purpose (DeepSeek-V2-Lite's q_lora_rank). */
  nullableSize(key: string): number | null {
    if (key in this.#cfg && this.#cfg[key] === null) return null;
    return this.optionalSize(key) ?? null;
  }

  /** A non-negative integer (e.g. first_k_dense_replace). */
  count(key: string, fallback: number): number {
    const { value } = this.#raw([key]);
    if (value === undefined) return fallback;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw this.#bad(key, value, "a non-negative integer");
    }
    return value;
  }

  bool(key: string, fallback: boolean): boolean {
    const { value } = this.#raw([key]);
    if (value === undefined) return fallback;
    if (typeof value !== "boolean") throw this.#bad(key, value, "true or false");
    return value;
  }

  string(key: string): string | undefined {
    const { value } = this.#raw([key]);
    return typeof value === "string" ? value : undefined;
  }

  intList(key: string): number[] {
    const { value } = this.#raw([key]);
    if (value === undefined) return [];
    if (!Array.isArray(value) || !value.every((v) => Number.isInteger(v) && v >= 0)) {
      throw this.#bad(key, value, "a list of non-negative integers");
    }
    return value as number[];
  }

  list(key: string): unknown[] | undefined {
    const { value } = this.#raw([key]);
    return Array.isArray(value) ? value : undefined;
  }

  #positiveInt(key: string, value: unknown): number {
    const max = /layers$|^depth$/.test(key) ? MAX_LAYERS : MAX_DIMENSION;
    if (typeof value !== "number" || !Number.isInteger(value) || value <= 0 || value > max) {
      throw this.#bad(key, value, `a positive integer up to ${max.toLocaleString("en-US")}`);
    }
    return value;
  }

  #bad(key: string, value: unknown, want: string): TunefitError {
    return usageError(
      "CONFIG_FIELD_INVALID",
      this.#path(key),
      `config.json field "${this.#prefix}${key}" is ${JSON.stringify(value)}; it must be ${want}`,
      `Write "${this.#prefix}${key}" as ${want}.`,
    );
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The common decoder: llama-style field names. */
function standardText(
  f: Fields,
  modelType: ModelType,
  extra: Partial<TextArchitecture> = {},
): TextArchitecture {
  const hiddenSize = f.size("hidden_size");
  const numHeads = f.size("num_attention_heads");
  const vocabSize = f.size("vocab_size");
  const headDim = f.optionalSize("head_dim") ?? hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) {
    throw usageError(
      "CONFIG_FIELD_INVALID",
      "config.json: head_dim",
      `hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads} and there is no head_dim`,
      'Add "head_dim" as the model defines it.',
    );
  }
  const gemmaLike = modelType === "gemma2" || modelType === "gemma3_text" || modelType === "gemma3";
  const attentionBias = f.bool("attention_bias", false);
  return {
    vocabSize,
    embedRows: vocabSize,
    hiddenSize,
    numLayers: f.size("num_hidden_layers"),
    numHeads,
    numKvHeads: f.optionalSize("num_key_value_heads") ?? numHeads,
    headDim,
    intermediateSize: f.size("intermediate_size"),
    tieWordEmbeddings: f.bool("tie_word_embeddings", true),
    qkvBias: attentionBias,
    oBias: attentionBias,
    mlpBias: f.bool("mlp_bias", false),
    mlp: "gated",
    norm: "rmsnorm",
    normsPerLayer: gemmaLike ? 4 : 2,
    qkNorm: modelType === "gemma3_text" || modelType === "gemma3",
    crossAttentionLayers: [],
    maxPositionEmbeddings: f.optionalSize("max_position_embeddings") ?? null,
    moe: null,
    mla: null,
    ...extra,
  };
}

function textFor(modelType: ModelType, f: Fields): TextArchitecture {
  switch (modelType) {
    case "llama":
    case "mistral":
    case "gemma":
    case "gemma2":
    case "gemma3_text":
    case "phi3":
      return standardText(f, modelType);
    case "qwen": // Qwen-1 (remote code) in Qwen2's field names (qwen1AsQwen2): c_attn has a bias, c_proj none
    case "qwen2":
    case "qwen2_vl":
    case "qwen2_5_vl":
      // Qwen2's q/k/v bias is hard-coded in the modeling code, not a config flag.
      return standardText(f, modelType, { qkvBias: true, oBias: false });
    case "qwen3":
    case "qwen3_vl":
      return standardText(f, modelType, { qkNorm: true });
    case "glm":
      // GlmAttention: q/k/v carry config.attention_bias, o_proj has none.
      return standardText(f, modelType, { qkvBias: f.bool("attention_bias", true), oBias: false });
    case "glm4":
      return standardText(f, modelType, {
        qkvBias: f.bool("attention_bias", true),
        oBias: false,
        normsPerLayer: 4,
      });
    case "internlm2": {
      const bias = f.bool("bias", true);
      return standardText(f, modelType, { qkvBias: bias, oBias: bias });
    }
    case "baichuan":
      return standardText(f, modelType, { qkvBias: false, oBias: false });
    case "chatglm": {
      const hiddenSize = f.size("hidden_size");
      const numHeads = f.size("num_attention_heads");
      const vocabSize = f.size("padded_vocab_size", "vocab_size");
      const multiQuery = f.bool("multi_query_attention", false);
      const rms = f.bool("rmsnorm", true);
      const linearBias = f.bool("add_bias_linear", false);
      return {
        vocabSize,
        embedRows: vocabSize,
        hiddenSize,
        numLayers: f.size("num_layers", "num_hidden_layers"),
        numHeads,
        numKvHeads: multiQuery ? f.size("multi_query_group_num") : numHeads,
        headDim: f.optionalSize("kv_channels") ?? hiddenSize / numHeads,
        intermediateSize: f.size("ffn_hidden_size", "intermediate_size"),
        tieWordEmbeddings: f.bool("tie_word_embeddings", false),
        qkvBias: linearBias || f.bool("add_qkv_bias", false),
        oBias: linearBias,
        mlpBias: linearBias,
        mlp: "gated",
        norm: rms ? "rmsnorm" : "layernorm",
        normsPerLayer: 2,
        qkNorm: false,
        crossAttentionLayers: [],
        maxPositionEmbeddings: f.optionalSize("seq_length", "max_position_embeddings") ?? null,
        moe: null,
        mla: null,
      };
    }
    case "mixtral": {
      const text = standardText(f, modelType, { qkvBias: false, oBias: false });
      const moe: MoeArchitecture = {
        numExperts: f.size("num_local_experts"),
        expertsPerToken: f.size("num_experts_per_tok"),
        expertIntermediateSize: text.intermediateSize,
        sharedExpertIntermediateSize: 0,
        sharedExpertGate: false,
        routerBias: false,
        moeLayers: range(text.numLayers),
      };
      return { ...text, intermediateSize: 0, moe };
    }
    case "qwen2_moe":
    case "qwen3_moe":
    case "qwen3_vl_moe": {
      const text =
        modelType === "qwen2_moe"
          ? standardText(f, modelType, { qkvBias: true, oBias: false })
          : standardText(f, modelType, { qkNorm: true });
      const step = f.size("decoder_sparse_step");
      const mlpOnly = new Set(f.intList("mlp_only_layers"));
      const numExperts = f.count("num_experts", 0);
      const shared = modelType === "qwen2_moe" ? f.count("shared_expert_intermediate_size", 0) : 0;
      const moeLayers =
        numExperts > 0 ? range(text.numLayers).filter((i) => !mlpOnly.has(i) && (i + 1) % step === 0) : [];
      if (moeLayers.length === 0) return text;
      return {
        ...text,
        moe: {
          numExperts,
          expertsPerToken: f.size("num_experts_per_tok"),
          expertIntermediateSize: f.size("moe_intermediate_size"),
          sharedExpertIntermediateSize: shared,
          sharedExpertGate: shared > 0,
          routerBias: false,
          moeLayers,
        },
      };
    }
    case "deepseek_v2":
    case "deepseek_v3": {
      const qLoraRank = f.nullableSize("q_lora_rank");
      const mla = {
        qLoraRank,
        kvLoraRank: f.size("kv_lora_rank"),
        qkNopeHeadDim: f.size("qk_nope_head_dim"),
        qkRopeHeadDim: f.size("qk_rope_head_dim"),
        vHeadDim: f.size("v_head_dim"),
      };
      const text = standardText(f, modelType, {
        qkvBias: false,
        oBias: false,
        headDim: mla.qkNopeHeadDim + mla.qkRopeHeadDim,
        mla,
      });
      const routed = f.count("n_routed_experts", 0);
      if (routed === 0) return text;
      const firstDense = f.count("first_k_dense_replace", 0);
      const freq = f.size("moe_layer_freq");
      const expertWidth = f.size("moe_intermediate_size");
      return {
        ...text,
        moe: {
          numExperts: routed,
          expertsPerToken: f.size("num_experts_per_tok"),
          expertIntermediateSize: expertWidth,
          sharedExpertIntermediateSize: f.count("n_shared_experts", 0) * expertWidth,
          sharedExpertGate: false,
          // noaux_tc routing adds gate.e_score_correction_bias (E values) per MoE layer.
          routerBias: f.string("topk_method") === "noaux_tc",
          moeLayers: range(text.numLayers).filter((i) => i >= firstDense && i % freq === 0),
        },
      };
    }
    case "mllama":
      return {
        ...standardText(f, "llama"),
        embedRows: f.size("vocab_size") + 8, // embed_tokens has 8 extra rows; lm_head keeps vocab_size
        crossAttentionLayers: f.intList("cross_attention_layers"),
      };
    case "gemma3":
      return standardText(f, "gemma3");
    case "minicpmv": {
      // The language model's fields sit at the top level: MiniCPMVConfig subclasses Qwen2Config in MiniCPM-V 2.6
      // (sliding-window fields, no attention_bias: the q/k/v bias is hard-coded) and LlamaConfig in
      // MiniCPM-Llama3-V 2.5 (attention_bias). Later releases build on other language models (MiniCPM 2.0 on
      // MiniCPM, with scale_emb; 4.x on Qwen3, sliding-window fields beside attention_bias): not counted.
      const slidingWindow = f.has("use_sliding_window") || f.has("max_window_layers");
      if (f.has("scale_emb") || f.has("dim_model_base") || (slidingWindow && f.has("attention_bias"))) {
        throw usageError(
          "MODEL_TYPE_UNSUPPORTED",
          "config.json: model_type",
          "this MiniCPM-V builds on a language model other than Qwen2 (MiniCPM-V 2.6) or Llama 3 (MiniCPM-Llama3-V 2.5): tunefit counts only those two",
          "Use MiniCPM-V 2.6 or MiniCPM-Llama3-V 2.5, or pass explicit dimensions through the library (defineModel).",
        );
      }
      return slidingWindow
        ? standardText(f, modelType, { qkvBias: true, oBias: false })
        : standardText(f, modelType);
    }
  }
}

/** A SiglipVisionConfig's tower dimensions (Gemma 3's tower, MiniCPM-V's NaViT SigLIP). */
function siglipTower(v: Fields) {
  return {
    numLayers: v.size("num_hidden_layers"),
    hiddenSize: v.size("hidden_size"),
    intermediateSize: v.size("intermediate_size"),
    numHeads: v.size("num_attention_heads"),
    inChannels: v.size("num_channels"),
    imageSize: v.size("image_size"),
    patchSize: v.size("patch_size"),
  };
}

function visionFor(modelType: ModelType, v: Fields, textHidden: number): VisionArchitecture | null {
  switch (modelType) {
    case "qwen2_vl": {
      const embedDim = v.size("embed_dim");
      return {
        kind: "qwen2_vl",
        depth: v.size("depth"),
        embedDim,
        mlpHiddenSize: embedDim * v.size("mlp_ratio"),
        numHeads: v.size("num_heads"),
        inChannels: v.size("in_channels", "in_chans"),
        patchSize: v.size("patch_size", "spatial_patch_size"),
        temporalPatchSize: v.size("temporal_patch_size"),
        spatialMergeSize: v.size("spatial_merge_size"),
        // vision_config.hidden_size is the merger's output width; the checkpoint only loads when it equals the
        // language model's hidden size, so that is what a config without it means.
        outHiddenSize: v.optionalSize("hidden_size") ?? textHidden,
      };
    }
    case "qwen2_5_vl":
      return {
        kind: "qwen2_5_vl",
        depth: v.size("depth"),
        hiddenSize: v.size("hidden_size"),
        intermediateSize: v.size("intermediate_size"),
        numHeads: v.size("num_heads"),
        inChannels: v.size("in_channels", "in_chans"),
        patchSize: v.size("patch_size", "spatial_patch_size"),
        temporalPatchSize: v.size("temporal_patch_size"),
        spatialMergeSize: v.size("spatial_merge_size"),
        outHiddenSize: v.optionalSize("out_hidden_size") ?? textHidden,
      };
    case "qwen3_vl":
    case "qwen3_vl_moe":
      return {
        kind: "qwen3_vl",
        depth: v.size("depth"),
        hiddenSize: v.size("hidden_size"),
        intermediateSize: v.size("intermediate_size"),
        numHeads: v.size("num_heads"),
        inChannels: v.size("in_channels"),
        patchSize: v.size("patch_size"),
        temporalPatchSize: v.size("temporal_patch_size"),
        spatialMergeSize: v.size("spatial_merge_size"),
        outHiddenSize: v.optionalSize("out_hidden_size") ?? textHidden,
        numPositionEmbeddings: v.size("num_position_embeddings"),
        deepstackLayers: v.intList("deepstack_visual_indexes").length,
      };
    case "gemma3":
      return { kind: "siglip", ...siglipTower(v), mmTokensPerImage: 256 };
    case "mllama": {
      const ratios = v.list("supported_aspect_ratios");
      return {
        kind: "mllama",
        numLayers: v.size("num_hidden_layers"),
        numGlobalLayers: v.count("num_global_layers", 8),
        hiddenSize: v.size("hidden_size"),
        intermediateSize: v.size("intermediate_size"),
        numHeads: v.size("attention_heads", "num_attention_heads"),
        inChannels: v.size("num_channels"),
        imageSize: v.size("image_size"),
        patchSize: v.size("patch_size"),
        maxNumTiles: v.size("max_num_tiles"),
        maxAspectRatioId: v.optionalSize("max_aspect_ratio_id") ?? ratios?.length ?? 8,
        visionOutputDim: v.size("vision_output_dim"),
      };
    }
    case "minicpmv":
      // the image fields are set from the top level (minicpmvTop)
      return { kind: "minicpmv", ...siglipTower(v), queryNum: 64, sliceResolution: 448, maxSliceNums: 9 };
    default:
      return null;
  }
}

/**
 * MiniCPM-V's top-level image fields: query_num (tokens per slice), slice_config (scale_resolution, max_slice_nums),
 * and drop_vision_last_layer, which removes the tower's last layer after loading (modeling_minicpmv.py init_vision_module).
 */
function minicpmvTop(
  vision: Extract<VisionArchitecture, { kind: "minicpmv" }>,
  config: Json,
  source: string,
  declared: string,
): VisionArchitecture {
  const top = new Fields(config, { query_num: 64, drop_vision_last_layer: false }, "", source, declared);
  const slice = new Fields(
    isObject(config.slice_config) ? config.slice_config : {},
    { scale_resolution: 448, max_slice_nums: 9 },
    "slice_config.",
    source,
    declared,
  );
  const drop = top.bool("drop_vision_last_layer", false);
  if (drop && vision.numLayers < 2) {
    throw usageError(
      "CONFIG_FIELD_INVALID",
      `${source}: drop_vision_last_layer`,
      `drop_vision_last_layer removes the last of ${vision.numLayers} vision layer(s), leaving none`,
      "Set vision_config.num_hidden_layers to the tower's layer count before the drop.",
    );
  }
  return {
    ...vision,
    numLayers: drop ? vision.numLayers - 1 : vision.numLayers,
    queryNum: top.size("query_num"),
    sliceResolution: slice.size("scale_resolution"),
    maxSliceNums: slice.size("max_slice_nums"),
  };
}

/** The model types a config.json may declare (aliases included). */
export function supportedModelTypes(): string[] {
  return [...ModelTypeSchema.options, ...Object.keys(MODEL_TYPE_ALIASES)].sort();
}

/**
 * Qwen-1's remote code (model_type "qwen") in Qwen2's field names. Its layers have Qwen2's shapes: c_attn is q, k
 * and v in one linear with a bias, c_proj has none, and the MLP's w1/w2 are `intermediate_size // 2` wide
 * (modeling_qwen.py QWenMLP); the heads are `kv_channels` wide and every head has its own k and v. Qwen-VL's
 * config is also model_type "qwen": its vision tower (the `visual` block) is remote code tunefit does not read.
 */
function qwen1AsQwen2(config: Json, source: string): Json {
  if (isObject(config.visual)) {
    throw usageError(
      "MODEL_TYPE_UNSUPPORTED",
      `${source}: visual`,
      `${source} is Qwen-VL's remote code (model_type "qwen" with a "visual" tower): tunefit cannot count its vision tower`,
      "Use a Qwen2-VL or Qwen2.5-VL checkpoint, or write a config.json with model_type qwen2_vl and the same dimensions.",
    );
  }
  const out: Json = { ...config, num_key_value_heads: config.num_attention_heads };
  if (typeof config.intermediate_size === "number")
    out.intermediate_size = Math.floor(config.intermediate_size / 2);
  if (config.kv_channels !== undefined) out.head_dim = config.kv_channels;
  return out;
}

/**
 * Reads a Hugging Face `config.json` object into an Architecture.
 * @param source how to name the file in errors (e.g. `models/foo/config.json`)
 * @throws TunefitError (usage) naming the field and what to write
 */
export function architectureFromConfig(config: unknown, source = "config.json"): Architecture {
  if (!isObject(config)) {
    throw usageError(
      "CONFIG_NOT_OBJECT",
      source,
      `${source} must hold a JSON object, not ${Array.isArray(config) ? "an array" : typeof config}`,
      "Point --model at the folder of a Hugging Face checkpoint (its config.json is a JSON object).",
    );
  }
  const declared = config.model_type;
  if (typeof declared !== "string" || declared.length === 0) {
    throw usageError(
      "CONFIG_FIELD_MISSING",
      `${source}: model_type`,
      `${source} has no "model_type"`,
      `Add "model_type" (one of: ${supportedModelTypes().join(", ")}).`,
    );
  }
  const parsed = ModelTypeSchema.safeParse(MODEL_TYPE_ALIASES[declared] ?? declared);
  if (!parsed.success) {
    throw usageError(
      "MODEL_TYPE_UNSUPPORTED",
      `${source}: model_type`,
      `model_type "${declared}" is not a family tunefit can count`,
      `Supported model_type values: ${supportedModelTypes().join(", ")}. For another architecture, pass explicit ` +
        "dimensions through the library (defineModel).",
    );
  }
  const modelType = parsed.data;

  // Where the language model's fields live.
  let textCfg: Json = config;
  let textDefaults: Json = CLASS_DEFAULTS[modelType] ?? {};
  let prefix = "";
  const nestedText = NESTED_TEXT_CONFIG[modelType];
  if (nestedText !== undefined) {
    textCfg = isObject(config.text_config) ? config.text_config : {};
    textDefaults = CLASS_DEFAULTS[nestedText] ?? {};
    prefix = "text_config.";
  } else if ((modelType === "qwen2_vl" || modelType === "qwen2_5_vl") && isObject(config.text_config)) {
    // Newer transformers also write a text_config; its values win over the flat copies.
    textCfg = { ...config, ...config.text_config };
  }
  if (declared === "qwen") textCfg = qwen1AsQwen2(config, source);
  const f = new Fields(textCfg, textDefaults, prefix, source, declared);
  const text = textFor(modelType, f);
  if (
    (modelType === "gemma3" || modelType === "qwen3_vl" || modelType === "qwen3_vl_moe") &&
    textCfg.tie_word_embeddings === undefined
  ) {
    // the top-level flag is what PreTrainedModel ties by (Gemma 3 ties by default, Qwen3-VL does not)
    text.tieWordEmbeddings =
      typeof config.tie_word_embeddings === "boolean" ? config.tie_word_embeddings : modelType === "gemma3";
  }

  let vision: VisionArchitecture | null = null;
  const visionKind = modelType === "gemma3" ? "siglip" : modelType;
  const visionDefaults = VISION_DEFAULTS[visionKind];
  if (visionDefaults) {
    const v = new Fields(
      isObject(config.vision_config) ? config.vision_config : {},
      visionDefaults,
      "vision_config.",
      source,
      declared,
    );
    vision = visionFor(modelType, v, text.hiddenSize);
    if (vision?.kind === "siglip" && typeof config.mm_tokens_per_image === "number") {
      vision = { ...vision, mmTokensPerImage: config.mm_tokens_per_image };
    }
    if (vision?.kind === "minicpmv") vision = minicpmvTop(vision, config, source, declared);
  }
  return { modelType, text, vision };
}

/**
 * Stored formats LLaMA-Factory dequantizes while loading (model_utils/quantization.py: FineGrainedFP8Config and
 * Mxfp4Config with dequantize=True): the model trains as a 16-bit one, with any method and any sharding.
 */
export const DEQUANTIZED_ON_LOAD: ReadonlySet<string> = new Set(["fp8", "mxfp4"]);

/** Whether a checkpoint stays quantized as LLaMA-Factory loads it: LoRA only, and neither ZeRO-3 nor FSDP. */
export function staysQuantized(q: CheckpointQuantization | null): boolean {
  return q !== null && !DEQUANTIZED_ON_LOAD.has(q.declared);
}

/**
 * The checkpoint's own quantization from its config.json's `quantization_config`, as transformers' quantizers read it:
 * GPTQ and AWQ by `bits` (AWQ's older `w_bit`), bitsandbytes by `load_in_4bit` / `load_in_8bit`. LLaMA-Factory loads
 * such a checkpoint as stored and trains only LoRA on it (model_utils/quantization.py, the PTQ branch). Null where
 * the config has none.
 */
export function checkpointQuantization(config: unknown): CheckpointQuantization | null {
  if (!isObject(config) || !isObject(config.quantization_config)) return null;
  const q = config.quantization_config;
  const declared = typeof q.quant_method === "string" ? q.quant_method.toLowerCase() : "";
  const width = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
  let method: QuantMethod | null = null;
  let statedBits: number | null = null;
  if (declared === "gptq" || declared === "awq") {
    method = declared;
    statedBits = width(q.bits) ?? width(q.w_bit);
  } else if (declared === "bitsandbytes") {
    method = "bnb";
    statedBits = q.load_in_4bit === true ? 4 : q.load_in_8bit === true ? 8 : null;
  }
  const bits = statedBits === 4 || statedBits === 8 ? statedBits : null;
  return { declared: declared || "unnamed", method: bits === null ? null : method, bits, statedBits };
}
