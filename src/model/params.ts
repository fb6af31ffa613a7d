import type { z } from "zod";
import type {
  Architecture,
  MinicpmvVision,
  MllamaVision,
  Qwen2VlVision,
  Qwen3VlVision,
  Qwen25VlVision,
  SiglipVision,
  TextArchitecture,
  VisionArchitecture,
} from "../schema/architecture.ts";

/**
 * Parameters per component, as transformers instantiates them: tied weights once, no buffers, no
 * checkpoint-only tensors (rotary inv_freq, DeepSeek's MTP layer, FP8 scales).
 */
export interface ParamBreakdown {
  readonly embedTokens: number;
  readonly lmHead: number;
  readonly finalNorm: number;
  /** attention of every decoder layer (q/k/v/o or MLA projections, biases, q/k norms, mllama's gates) */
  readonly attention: number;
  /** dense MLPs (every layer of a dense model; DeepSeek's first dense layers) */
  readonly mlp: number;
  /** routed experts of every MoE layer */
  readonly experts: number;
  readonly routers: number;
  readonly sharedExperts: number;
  /** the norms inside the decoder layers */
  readonly layerNorms: number;
  readonly visionTower: number;
  readonly projector: number;
  /** language model: everything but the vision tower and projector */
  readonly text: number;
  readonly total: number;
  /** parameters one token passes through (top-k experts of each MoE layer); = total for dense models */
  readonly active: number;
}

export function attentionParamsPerLayer(t: TextArchitecture): number {
  const H = t.hiddenSize;
  if (t.mla) {
    const { qLoraRank, kvLoraRank, qkNopeHeadDim, qkRopeHeadDim, vHeadDim } = t.mla;
    const qHead = qkNopeHeadDim + qkRopeHeadDim;
    const q =
      qLoraRank === null
        ? H * t.numHeads * qHead
        : H * qLoraRank + qLoraRank + qLoraRank * t.numHeads * qHead; // q_a_proj, q_a_layernorm, q_b_proj
    const kv =
      H * (kvLoraRank + qkRopeHeadDim) + kvLoraRank + kvLoraRank * t.numHeads * (qkNopeHeadDim + vHeadDim);
    const o = t.numHeads * vHeadDim * H;
    return q + kv + o + (t.oBias ? H : 0);
  }
  const qDim = t.numHeads * t.headDim;
  const kvDim = t.numKvHeads * t.headDim;
  return (
    H * qDim +
    2 * H * kvDim +
    qDim * H +
    (t.qkvBias ? qDim + 2 * kvDim : 0) +
    (t.oBias ? H : 0) +
    (t.qkNorm ? 2 * t.headDim : 0)
  );
}

export function denseMlpParams(t: TextArchitecture, intermediateSize: number): number {
  const H = t.hiddenSize;
  const I = intermediateSize;
  return t.mlp === "gated" ? 3 * H * I + (t.mlpBias ? 2 * I + H : 0) : 2 * H * I + (t.mlpBias ? I + H : 0);
}

function normParams(t: TextArchitecture, width: number): number {
  return t.norm === "layernorm" ? 2 * width : width;
}

function countText(t: TextArchitecture) {
  const H = t.hiddenSize;
  const moe = t.moe;
  const moeLayers = new Set(moe?.moeLayers ?? []);
  const cross = new Set(t.crossAttentionLayers);
  const attnPerLayer = attentionParamsPerLayer(t);
  // mllama cross-attention layers: q_norm and k_norm over head_dim, and two scalar tanh gates.
  const crossExtra = 2 * t.headDim + 2;

  let attention = 0;
  let mlp = 0;
  let experts = 0;
  let routers = 0;
  let sharedExperts = 0;
  let activeExperts = 0;
  for (let layer = 0; layer < t.numLayers; layer++) {
    attention += attnPerLayer + (cross.has(layer) ? crossExtra : 0);
    if (moe && moeLayers.has(layer)) {
      const expert = denseMlpParams(t, moe.expertIntermediateSize);
      experts += moe.numExperts * expert;
      activeExperts += moe.expertsPerToken * expert;
      routers += moe.numExperts * H + (moe.routerBias ? moe.numExperts : 0);
      if (moe.sharedExpertIntermediateSize > 0) {
        sharedExperts += denseMlpParams(t, moe.sharedExpertIntermediateSize) + (moe.sharedExpertGate ? H : 0);
      }
    } else {
      mlp += denseMlpParams(t, t.intermediateSize);
    }
  }
  const layerNorms = t.numLayers * t.normsPerLayer * normParams(t, H);
  const embedTokens = t.embedRows * H;
  const lmHead = t.tieWordEmbeddings ? 0 : t.vocabSize * H;
  const finalNorm = normParams(t, H);
  const text =
    embedTokens + lmHead + finalNorm + attention + mlp + experts + routers + sharedExperts + layerNorms;
  return {
    embedTokens,
    lmHead,
    finalNorm,
    attention,
    mlp,
    experts,
    routers,
    sharedExperts,
    layerNorms,
    text,
    textActive: text - experts + activeExperts,
  };
}

function countQwen2Vl(v: z.infer<typeof Qwen2VlVision>) {
  const D = v.embedDim;
  const M = v.mlpHiddenSize;
  const patch = v.inChannels * v.temporalPatchSize * v.patchSize ** 2 * D; // Conv3d, no bias
  const block = 4 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * M + M) + (M * D + D); // 2 LayerNorm, qkv, proj, fc1, fc2
  const merged = D * v.spatialMergeSize ** 2;
  const projector = 2 * D + (merged * merged + merged) + (merged * v.outHiddenSize + v.outHiddenSize);
  return { visionTower: patch + v.depth * block, projector };
}

function countQwen25Vl(v: z.infer<typeof Qwen25VlVision>) {
  const D = v.hiddenSize;
  const I = v.intermediateSize;
  const patch = v.inChannels * v.temporalPatchSize * v.patchSize ** 2 * D;
  const block = 2 * D + (3 * D * D + 3 * D) + (D * D + D) + 2 * (D * I + I) + (I * D + D); // RMSNorm ×2, gated MLP with bias
  const merged = D * v.spatialMergeSize ** 2;
  const projector = D + (merged * merged + merged) + (merged * v.outHiddenSize + v.outHiddenSize);
  return { visionTower: patch + v.depth * block, projector };
}

/** Qwen3-VL: the tower's blocks, position table and DeepStack mergers (frozen with it), and the merger. */
function countQwen3Vl(v: z.infer<typeof Qwen3VlVision>) {
  const D = v.hiddenSize;
  const I = v.intermediateSize;
  const patch = v.inChannels * v.temporalPatchSize * v.patchSize ** 2 * D + D; // Conv3d with bias
  const positions = v.numPositionEmbeddings * D;
  const block = 4 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * I + I) + (I * D + D); // 2 LayerNorm, qkv, proj, fc1, fc2
  const merged = D * v.spatialMergeSize ** 2;
  const mlp = merged * merged + merged + (merged * v.outHiddenSize + v.outHiddenSize);
  const merger = 2 * D + mlp; // LayerNorm over the patch, before the shuffle
  const deepstack = 2 * merged + mlp; // LayerNorm after the shuffle (use_postshuffle_norm)
  return {
    visionTower: patch + positions + v.depth * block + v.deepstackLayers * deepstack,
    projector: merger,
  };
}

function countSiglip(v: z.infer<typeof SiglipVision>, textHidden: number) {
  const D = v.hiddenSize;
  const I = v.intermediateSize;
  const patch = v.inChannels * v.patchSize ** 2 * D + D;
  const positions = (v.imageSize / v.patchSize) ** 2 * D;
  const layer = 4 * D + 4 * (D * D + D) + (D * I + I) + (I * D + D);
  const postLayernorm = 2 * D;
  const projector = D * textHidden + D; // mm_input_projection_weight + mm_soft_emb_norm
  return { visionTower: patch + positions + v.numLayers * layer + postLayernorm, projector };
}

function countMllama(v: z.infer<typeof MllamaVision>, textHidden: number) {
  const D = v.hiddenSize;
  const I = v.intermediateSize;
  const patches = (v.imageSize / v.patchSize) ** 2 + 1; // + class token
  const aspectRatios = v.maxAspectRatioId + 1;
  const patchEmbed = v.inChannels * v.patchSize ** 2 * D; // Conv2d, no bias
  const classEmbedding = D;
  const gatedPositional = 1 + patches * D + aspectRatios * v.maxNumTiles * patches * D;
  const tilePositional = 2 * (aspectRatios * v.maxNumTiles * D + 1);
  const layernormPrePost = 4 * D;
  const layer = 4 * D * D + (D * I + I) + (I * D + D) + 4 * D;
  const globalLayer = layer + 2;
  const projector = v.visionOutputDim * textHidden + textHidden;
  return {
    visionTower:
      patchEmbed +
      classEmbedding +
      gatedPositional +
      tilePositional +
      layernormPrePost +
      v.numLayers * layer +
      v.numGlobalLayers * globalLayer,
    projector,
  };
}

/** MiniCPM-V: the SigLIP tower (no head) and its resampler (the projector LLaMA-Factory freezes by default). */
function countMinicpmv(v: z.infer<typeof MinicpmvVision>, textHidden: number) {
  const D = v.hiddenSize;
  const I = v.intermediateSize;
  const E = textHidden;
  const patch = v.inChannels * v.patchSize ** 2 * D + D;
  const positions = (v.imageSize / v.patchSize) ** 2 * D;
  const layer = 4 * D + 4 * (D * D + D) + (D * I + I) + (I * D + D);
  const postLayernorm = 2 * D;
  // query, kv_proj (no bias), nn.MultiheadAttention (in_proj and out_proj with biases), ln_q/ln_kv/ln_post, proj
  const resampler = v.queryNum * E + D * E + (3 * E * E + 3 * E) + (E * E + E) + 3 * 2 * E + E * E;
  return { visionTower: patch + positions + v.numLayers * layer + postLayernorm, projector: resampler };
}

/** The vision tower's blocks: Qwen-VL's `depth`, the others' layers (mllama's global layers included). */
export function visionDepth(v: VisionArchitecture): number {
  switch (v.kind) {
    case "qwen2_vl":
    case "qwen2_5_vl":
    case "qwen3_vl":
      return v.depth;
    case "mllama":
      return v.numLayers + v.numGlobalLayers;
    case "siglip":
    case "minicpmv":
      return v.numLayers;
  }
}

export function countVision(
  v: VisionArchitecture,
  textHidden: number,
): { visionTower: number; projector: number } {
  switch (v.kind) {
    case "qwen2_vl":
      return countQwen2Vl(v);
    case "qwen2_5_vl":
      return countQwen25Vl(v);
    case "qwen3_vl":
      return countQwen3Vl(v);
    case "siglip":
      return countSiglip(v, textHidden);
    case "mllama":
      return countMllama(v, textHidden);
    case "minicpmv":
      return countMinicpmv(v, textHidden);
  }
}

const PARAM_CACHE = new WeakMap<Architecture, ParamBreakdown>();

/** Counts every parameter of the architecture, per component (memoized per architecture object). */
export function countParams(arch: Architecture): ParamBreakdown {
  const cached = PARAM_CACHE.get(arch);
  if (cached) return cached;
  const counted = computeParams(arch);
  PARAM_CACHE.set(arch, counted);
  return counted;
}

function computeParams(arch: Architecture): ParamBreakdown {
  const text = countText(arch.text);
  const vision = arch.vision
    ? countVision(arch.vision, arch.text.hiddenSize)
    : { visionTower: 0, projector: 0 };
  const visionTotal = vision.visionTower + vision.projector;
  return {
    embedTokens: text.embedTokens,
    lmHead: text.lmHead,
    finalNorm: text.finalNorm,
    attention: text.attention,
    mlp: text.mlp,
    experts: text.experts,
    routers: text.routers,
    sharedExperts: text.sharedExperts,
    layerNorms: text.layerNorms,
    visionTower: vision.visionTower,
    projector: vision.projector,
    text: text.text,
    total: text.text + visionTotal,
    active: text.textActive + visionTotal,
  };
}
