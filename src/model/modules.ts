import type {
  Architecture,
  ModelType,
  TextArchitecture,
  VisionArchitecture,
} from "../schema/architecture.ts";

/*
 * The model's nn.Linear modules, grouped by leaf name: what LoRA can target, what bitsandbytes quantizes,
 * and what `lora_target: all` resolves to. Names follow transformers 4.x modeling code (remote code for
 * chatglm, internlm2, baichuan), where MoE experts are nn.Linear modules. Under transformers 5.x routed
 * experts became fused 3-D parameters that LoRA-all does not reach; pass `expertsAsLinear: false` for that.
 * Source of the resolved names: LLaMA-Factory ff6d4d12ee model/model_utils/misc.py find_all_linear_modules,
 * run per model_type against transformers 4.57.6 and 5.18.0.
 */

/** Where a module sits: LLaMA-Factory freezes the vision tower and projector by default. */
export type Region = "text" | "vision" | "projector";

/** One group of identical nn.Linear modules. */
export interface LinearGroup {
  /** leaf module name, as PEFT matches it (q_proj, w1, query_key_value…) */
  readonly name: string;
  readonly region: Region;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** how many modules of this shape carry this name */
  readonly count: number;
  /** true for routed-expert linears (sparse: only top-k run per token) */
  readonly expert: boolean;
}

export interface ModuleOptions {
  /** transformers 4.x: experts are nn.Linear (default). 5.x: fused expert tensors, not Linear. */
  readonly expertsAsLinear?: boolean;
}

type Add = (name: string, inF: number, outF: number, count: number, expert?: boolean) => void;

function attentionLinears(t: TextArchitecture, type: ModelType, add: Add, layers: number): void {
  const H = t.hiddenSize;
  const q = t.numHeads * t.headDim;
  const kv = t.numKvHeads * t.headDim;
  if (t.mla) {
    const m = t.mla;
    const qHead = m.qkNopeHeadDim + m.qkRopeHeadDim;
    if (m.qLoraRank === null) add("q_proj", H, t.numHeads * qHead, layers);
    else {
      add("q_a_proj", H, m.qLoraRank, layers);
      add("q_b_proj", m.qLoraRank, t.numHeads * qHead, layers);
    }
    add("kv_a_proj_with_mqa", H, m.kvLoraRank + m.qkRopeHeadDim, layers);
    add("kv_b_proj", m.kvLoraRank, t.numHeads * (m.qkNopeHeadDim + m.vHeadDim), layers);
    add("o_proj", t.numHeads * m.vHeadDim, H, layers);
    return;
  }
  switch (type) {
    case "phi3":
      add("qkv_proj", H, q + 2 * kv, layers);
      add("o_proj", q, H, layers);
      return;
    case "chatglm":
      add("query_key_value", H, q + 2 * kv, layers);
      add("dense", q, H, layers);
      return;
    case "internlm2":
      add("wqkv", H, q + 2 * kv, layers);
      add("wo", q, H, layers);
      return;
    case "baichuan":
      add("W_pack", H, 3 * q, layers);
      add("o_proj", q, H, layers);
      return;
    case "qwen": // Qwen-1 remote code (modeling_qwen.py QWenAttention)
      add("c_attn", H, q + 2 * kv, layers);
      add("c_proj", q, H, layers);
      return;
    default:
      add("q_proj", H, q, layers);
      add("k_proj", H, kv, layers);
      add("v_proj", H, kv, layers);
      add("o_proj", q, H, layers);
  }
}

function denseMlpLinears(type: ModelType, H: number, I: number, add: Add, layers: number, prefix = ""): void {
  if (layers === 0 || I === 0) return;
  switch (type) {
    case "phi3":
    case "glm":
    case "glm4":
      add("gate_up_proj", H, 2 * I, layers);
      add("down_proj", I, H, layers);
      return;
    case "chatglm":
      add("dense_h_to_4h", H, 2 * I, layers);
      add("dense_4h_to_h", I, H, layers);
      return;
    case "internlm2":
      add("w1", H, I, layers);
      add("w3", H, I, layers);
      add("w2", I, H, layers);
      return;
    case "qwen": // QWenMLP: c_proj(w1(x) * silu(w2(x)))
      add("w1", H, I, layers);
      add("w2", H, I, layers);
      add("c_proj", I, H, layers);
      return;
    default:
      add(`${prefix}gate_proj`, H, I, layers);
      add(`${prefix}up_proj`, H, I, layers);
      add(`${prefix}down_proj`, I, H, layers);
  }
}

function textLinears(arch: Architecture, add: Add, opts: ModuleOptions): void {
  const t = arch.text;
  const type = arch.modelType;
  const H = t.hiddenSize;
  attentionLinears(t, type, add, t.numLayers); // mllama's cross-attention layers use the same names
  const moeLayers = t.moe?.moeLayers.length ?? 0;
  denseMlpLinears(type, H, t.intermediateSize, add, t.numLayers - moeLayers);
  const moe = t.moe;
  if (!moe || moeLayers === 0) return;
  const expertsAsLinear = expertsAreLinear(type, opts);
  const E = moe.numExperts;
  const Ie = moe.expertIntermediateSize;
  if (type === "mixtral") {
    if (expertsAsLinear) {
      add("gate", H, E, moeLayers); // the router is an nn.Linear in 4.x
      add("w1", H, Ie, moeLayers * E, true);
      add("w3", H, Ie, moeLayers * E, true);
      add("w2", Ie, H, moeLayers * E, true);
    }
    return;
  }
  // Qwen3-VL-MoE keeps its router an nn.Linear beside fused experts
  if (type === "qwen3_vl_moe") add("gate", H, E, moeLayers);
  if (expertsAsLinear) {
    // Qwen-MoE's router is an nn.Linear named "gate"; DeepSeek's MoEGate is not a Linear.
    if (type === "qwen2_moe" || type === "qwen3_moe") add("gate", H, E, moeLayers);
    add("gate_proj", H, Ie, moeLayers * E, true);
    add("up_proj", H, Ie, moeLayers * E, true);
    add("down_proj", Ie, H, moeLayers * E, true);
  }
  if (moe.sharedExpertIntermediateSize > 0) {
    denseMlpLinears(type, H, moe.sharedExpertIntermediateSize, add, moeLayers);
    if (moe.sharedExpertGate) add("shared_expert_gate", H, 1, moeLayers);
  }
}

function visionLinears(v: VisionArchitecture, textHidden: number, add: Add, addProjector: Add): void {
  switch (v.kind) {
    case "qwen2_vl": {
      const D = v.embedDim;
      add("qkv", D, 3 * D, v.depth);
      add("proj", D, D, v.depth);
      add("fc1", D, v.mlpHiddenSize, v.depth);
      add("fc2", v.mlpHiddenSize, D, v.depth);
      const merged = D * v.spatialMergeSize ** 2;
      addProjector("0", merged, merged, 1);
      addProjector("2", merged, v.outHiddenSize, 1);
      return;
    }
    case "qwen2_5_vl": {
      const D = v.hiddenSize;
      add("qkv", D, 3 * D, v.depth);
      add("proj", D, D, v.depth);
      add("gate_proj", D, v.intermediateSize, v.depth);
      add("up_proj", D, v.intermediateSize, v.depth);
      add("down_proj", v.intermediateSize, D, v.depth);
      const merged = D * v.spatialMergeSize ** 2;
      addProjector("0", merged, merged, 1);
      addProjector("2", merged, v.outHiddenSize, 1);
      return;
    }
    case "qwen3_vl": {
      const D = v.hiddenSize;
      add("qkv", D, 3 * D, v.depth);
      add("proj", D, D, v.depth);
      add("linear_fc1", D, v.intermediateSize, v.depth);
      add("linear_fc2", v.intermediateSize, D, v.depth);
      const merged = D * v.spatialMergeSize ** 2;
      // the DeepStack mergers belong to the tower (LLaMA-Factory's vision_model_keys), the last merger is the projector
      add("linear_fc1", merged, merged, v.deepstackLayers);
      add("linear_fc2", merged, v.outHiddenSize, v.deepstackLayers);
      addProjector("linear_fc1", merged, merged, 1);
      addProjector("linear_fc2", merged, v.outHiddenSize, 1);
      return;
    }
    case "siglip": {
      const D = v.hiddenSize;
      for (const name of ["q_proj", "k_proj", "v_proj", "out_proj"]) add(name, D, D, v.numLayers);
      add("fc1", D, v.intermediateSize, v.numLayers);
      add("fc2", v.intermediateSize, D, v.numLayers);
      return; // Gemma 3's projector is a bare weight matrix, not an nn.Linear
    }
    case "mllama": {
      const D = v.hiddenSize;
      const layers = v.numLayers + v.numGlobalLayers;
      for (const name of ["q_proj", "k_proj", "v_proj", "o_proj"]) add(name, D, D, layers);
      add("fc1", D, v.intermediateSize, layers);
      add("fc2", v.intermediateSize, D, layers);
      addProjector("multi_modal_projector", v.visionOutputDim, textHidden, 1);
      return;
    }
    case "minicpmv": {
      const D = v.hiddenSize;
      for (const name of ["q_proj", "k_proj", "v_proj", "out_proj"]) add(name, D, D, v.numLayers);
      add("fc1", D, v.intermediateSize, v.numLayers);
      add("fc2", v.intermediateSize, D, v.numLayers);
      // the resampler: kv_proj and nn.MultiheadAttention's out_proj (its q/k/v are one in_proj tensor)
      addProjector("kv_proj", D, textHidden, 1);
      addProjector("out_proj", textHidden, textHidden, 1);
      return;
    }
  }
}

/**
 * Model types whose routed experts are fused 3-D parameters in every transformers release (Qwen3-VL-MoE's
 * `experts.gate_up_proj` / `experts.down_proj`, as its checkpoints store them): no nn.Linear for LoRA or
 * bitsandbytes to find.
 */
const FUSED_EXPERTS: ReadonlySet<ModelType> = new Set(["qwen3_vl_moe"]);

/** Whether a model's routed experts are nn.Linear modules under the transformers the options name. */
export function expertsAreLinear(type: ModelType, opts: ModuleOptions): boolean {
  return (opts.expertsAsLinear ?? true) && !FUSED_EXPERTS.has(type);
}

const MODULE_CACHE = new WeakMap<Architecture, Map<boolean, LinearGroup[]>>();

/** Every nn.Linear of the model except lm_head, grouped by (region, name, shape). Memoized per architecture. */
export function linearModules(arch: Architecture, opts: ModuleOptions = {}): LinearGroup[] {
  const key = opts.expertsAsLinear ?? true;
  let byKey = MODULE_CACHE.get(arch);
  if (!byKey) {
    byKey = new Map();
    MODULE_CACHE.set(arch, byKey);
  }
  const cached = byKey.get(key);
  if (cached) return cached;
  const groups = computeLinearModules(arch, opts);
  byKey.set(key, groups);
  return groups;
}

function computeLinearModules(arch: Architecture, opts: ModuleOptions): LinearGroup[] {
  const groups: LinearGroup[] = [];
  const adder =
    (region: Region): Add =>
    (name, inFeatures, outFeatures, count, expert = false) => {
      if (count > 0) groups.push({ name, region, inFeatures, outFeatures, count, expert });
    };
  textLinears(arch, adder("text"), opts);
  if (arch.vision) visionLinears(arch.vision, arch.text.hiddenSize, adder("vision"), adder("projector"));
  return groups;
}

/** The decoder-layer sub-modules `freeze_trainable_modules` may name, per family (besides `all`). */
export function freezeModuleNames(arch: Architecture): {
  attention: string[];
  mlp: string[];
  norms: string[];
} {
  switch (arch.modelType) {
    case "chatglm":
      return {
        attention: ["self_attention"],
        mlp: ["mlp"],
        norms: ["input_layernorm", "post_attention_layernorm"],
      };
    case "internlm2":
      return { attention: ["attention"], mlp: ["feed_forward"], norms: ["attention_norm", "ffn_norm"] };
    case "qwen":
      return { attention: ["attn"], mlp: ["mlp"], norms: ["ln_1", "ln_2"] };
    case "mixtral":
      return {
        attention: ["self_attn"],
        mlp: ["block_sparse_moe"],
        norms: ["input_layernorm", "post_attention_layernorm"],
      };
    case "gemma2":
    case "gemma3":
    case "gemma3_text":
      return {
        attention: ["self_attn"],
        mlp: ["mlp"],
        norms: [
          "input_layernorm",
          "post_attention_layernorm",
          "pre_feedforward_layernorm",
          "post_feedforward_layernorm",
        ],
      };
    case "glm4":
      return {
        attention: ["self_attn"],
        mlp: ["mlp"],
        norms: [
          "input_layernorm",
          "post_attention_layernorm",
          "post_self_attn_layernorm",
          "post_mlp_layernorm",
        ],
      };
    default:
      return {
        attention: ["self_attn"],
        mlp: ["mlp"],
        norms: ["input_layernorm", "post_attention_layernorm"],
      };
  }
}

/** Module names `additional_target` may name for the embeddings and the output head, per family. */
export function embeddingModuleNames(type: ModelType): { embed: string; head: string } {
  switch (type) {
    case "chatglm":
      return { embed: "word_embeddings", head: "output_layer" };
    case "internlm2":
      return { embed: "tok_embeddings", head: "output" };
    case "qwen":
      return { embed: "wte", head: "lm_head" };
    default:
      return { embed: "embed_tokens", head: "lm_head" };
  }
}
