import { range } from "../_util.ts";
import { embeddingModuleNames, expertsAreLinear, type LinearGroup, linearModules } from "../model/modules.ts";
import { countParams, denseMlpParams, type ParamBreakdown, visionDepth } from "../model/params.ts";
import { LIGER_UNSUPPORTED, LOSS_WITHOUT_UPCAST, takesVideos } from "../model/support.ts";
import { countTrainable, loraTargets, type TrainableBreakdown } from "../model/trainable.ts";
import type { Architecture, TextArchitecture } from "../schema/architecture.ts";
import { isDeepSpeed, isFsdp, type Plan, projectsGradients } from "../schema/plan.ts";
import { DEFAULT_ASSUMPTIONS, type MemoryAssumptions, withDefaults } from "./assumptions.ts";
import {
  type FsdpUnits,
  largestModule,
  loadedWeightBytes,
  quantConstantBytes,
  quantizedBytesPerParam,
  quantizedParams,
  shardGroupOf,
} from "./load.ts";

/*
 * Training memory of one GPU at the step's peak, in bytes. The model follows what PyTorch keeps alive:
 * - weights in their load dtype, trainable parameters upcast to fp32 by LLaMA-Factory unless pure_bf16
 *   (model/adapter.py), quantized linears for QLoRA;
 * - gradients in the trainable dtype, optimizer states per the optimizer;
 * - activations as the tensors autograd saves per decoder layer (which depends on what is trainable), or only
 *   each layer's input with gradient checkpointing plus one recomputed layer;
 * - logits at the loss (bf16 logits, the fp32 upcast, log_softmax's saved output);
 * - buffers: dequantized weights, the autocast weight cache, DDP's gradient buckets, optimizer temporaries.
 * The peak is the larger of the backward phase and the optimizer step.
 */

/** The contract's breakdown; the first six sum to allocated, + fragmentation to reserved, + runtime to device. */
export interface MemoryBreakdown {
  readonly weights: number;
  readonly gradients: number;
  readonly optimizer: number;
  readonly activations: number;
  readonly logits: number;
  readonly buffers: number;
  readonly fragmentation: number;
  readonly runtime: number;
}

export interface TrainMemory {
  readonly breakdown: MemoryBreakdown;
  readonly allocatedBytes: number;
  readonly reservedBytes: number;
  readonly deviceBytes: number;
  /** which phase holds the peak */
  readonly phase: "backward" | "optimizer-step";
  /** tokens per micro-batch on one GPU (micro-batch × sequence length) */
  readonly tokensPerMicroBatch: number;
  /** FSDP1: the GPU's peak while FSDP wraps the model, before training (0 for other plans) */
  readonly wrapPeakBytes: number;
  /**
   * Part of `fragmentation` that is only cache: FSDP1's wrap level above what the step's compute stream holds
   * (fsdpInitCacheKept). It shows in a reserved reading when the card has room, but the caching allocator frees
   * every unsplit cached block and retries before it reports out of memory (c10/cuda/CUDACachingAllocator.cpp),
   * and at the first forward, when the root unit's all-gather needs it, no step tensor has split those blocks
   * yet. So it is counted only up to the plan's usable capacity: it fills what the card leaves, never more. The
   * step itself needs `deviceBytes − releasableBytes`. Under ZeRO-3 with `overlap_comm`, the all-gather stream's
   * pool kept at its high-water mark above what the peak holds gathered; under DeepSpeed, the segments its step's
   * flat tensors took on top of what backward reserved. 0 for other plans.
   */
  readonly releasableBytes: number;
  /** what `releasableBytes` is made of, in the order counted */
  readonly releasableSources: readonly ReleasableSource[];
  /**
   * bitsandbytes' paged optimizers (`paged_*`): this GPU's optimizer states in CUDA managed memory
   * (`BNB_PAGED_MIN_ELEMENTS`), which PyTorch's allocator does not see and `breakdown.optimizer` leaves out. 0 for
   * other optimizers.
   */
  readonly pagedOptimizerBytes: number;
  /**
   * The part of `pagedOptimizerBytes` on the GPU at the peak, counted in `breakdown.runtime`: what the card leaves
   * beside the allocator's pool, up to the usable capacity. The rest pages between host and GPU every step.
   */
  readonly pagedResidentBytes: number;
  /**
   * FSDP1: the flat parameters of its units as stored, unsharded: one decoder layer (× layers) and the root
   * (embeddings, final norm, lm_head); null for other plans. Host memory sizes parameter offload from them.
   */
  readonly fsdpUnits: FsdpUnits | null;
}

const ADAMW_LIKE = 2;

/** ZeRO-3 steps its partition in sub-groups of this many elements: sub_group_size, 1e9 in DeepSpeed's defaults
 * (runtime/zero/config.py) and in the configs tunefit writes */
const ZERO3_SUB_GROUP_ELEMENTS = 1e9;

/** Optimizer state bytes per trainable parameter of dtype `paramBytes`. */
export function optimizerBytesPerParam(optimizer: string | null, paramBytes: number): number {
  const name = optimizer ?? "adamw_torch"; // LLaMA-Factory's default optim (torch < 2.8; fused from 2.8 on)
  if (name === "sgd") return 0; // torch.optim.SGD without momentum keeps no state
  if (name === "lomo" || name === "adalomo") return 0;
  if (name === "adafactor") return 0; // factored: O(rows + cols) per matrix, counted separately
  if (name === "adamw_torch_4bit") return ADAMW_LIKE * 0.5;
  if (name.includes("ademamix"))
    return 3 * (name.includes("8bit") ? 1 : name.includes("32bit") ? 4 : paramBytes);
  if (name.includes("lion") || name.includes("rmsprop") || name === "adagrad") {
    return name.includes("8bit") ? 1 : name.includes("32bit") ? 4 : paramBytes;
  }
  if (name.includes("8bit")) return ADAMW_LIKE * 1; // bitsandbytes block-wise int8 states
  if (name.includes("32bit")) return ADAMW_LIKE * 4; // bitsandbytes 32-bit states
  return ADAMW_LIKE * paramBytes; // AdamW and relatives: exp_avg + exp_avg_sq in the parameter dtype
}

/**
 * How an optimizer's step makes its temporaries (replicated states; DeepSpeed's flat partitions are counted apart):
 * - "foreach": torch's multi-tensor AdamW and RMSprop build one list as large as the whole parameter group
 *   (`torch._foreach_sqrt` of the squared averages, torch/optim/adamw.py `_multi_tensor_adamw`), Adagrad two (its
 *   `std` and `numerator`, adagrad.py `_multi_tensor_adagrad`): `foreachStepCopies`. `adamw_torch` (transformers'
 *   default before torch 2.8) and any name not listed below, which counts high for the per-parameter loops of
 *   `adamw_anyprecision`, `grokadamw` and the like;
 * - "per-parameter": transformers' Adafactor steps one parameter at a time, with full-size fp32 temporaries of it
 *   (the update and its negation, and the fp32 copies of a 16-bit gradient and parameter);
 * - "in-place": fused kernels (`adamw_torch_fused`, apex), bitsandbytes' per-parameter kernels (8-bit, 32-bit and
 *   paged AdamW, Lion, RMSprop, AdEMAMix), torchao's compiled per-parameter step (`adamw_torch_4bit`/`_8bit`), SGD
 *   without momentum or weight decay, and LOMO/AdaLomo (which update inside backward) make none worth counting.
 * `optimizer` null is transformers' default (`defaultOptimFused`).
 */
export function optimizerStepKind(
  optimizer: string | null,
  defaultOptimFused = DEFAULT_ASSUMPTIONS.defaultOptimFused,
): "foreach" | "per-parameter" | "in-place" {
  const name = optimizer ?? (defaultOptimFused ? "adamw_torch_fused" : "adamw_torch");
  if (name === "adafactor") return "per-parameter";
  if (name === "sgd" || name === "lomo" || name === "adalomo") return "in-place";
  if (name === "adamw_torch_fused" || name === "adamw_apex_fused" || name === "adamw_torch_npu_fused")
    return "in-place";
  if (name === "adamw_torch_4bit" || name === "adamw_torch_8bit") return "in-place";
  if (/8bit|32bit|bnb|^paged_|lion|ademamix/.test(name)) return "in-place";
  return "foreach";
}

/**
 * bitsandbytes' paged optimizers keep the state of each parameter of at least 1e5 elements in CUDA managed memory
 * (bitsandbytes/optim/optimizer.py `get_state_buffer`: `F.get_paged`, which is cudaMallocManaged), outside PyTorch's
 * caching allocator, so `torch.cuda.memory_allocated` never sees it; smaller parameters get ordinary tensors. The
 * driver migrates managed pages to host memory when the GPU needs the room and back at the step (`prefetch_state`).
 */
export const BNB_PAGED_MIN_ELEMENTS = 1e5;

/**
 * The `optim` names transformers builds from bitsandbytes (trainer.py get_optimizer_cls_and_kwargs): its AdamW, Lion,
 * RMSprop and AdEMAMix in 8 and 32 bits, paged or not. torchao's `adamw_torch_4bit`/`_8bit` are not among them.
 */
export function bitsandbytesOptimizer(optimizer: string | null): boolean {
  return (
    optimizer !== null &&
    /^(adamw_bnb_8bit|adamw_8bit|ademamix(_8bit)?|lion_(8|32)bit|rmsprop_bnb(_8bit|_32bit)?|paged_.+)$/.test(
      optimizer,
    )
  );
}

/** bitsandbytes' paged AdamW, AdEMAMix and Lion (`paged_*` in transformers' OptimizerNames). */
export function isPagedOptimizer(optimizer: string | null): boolean {
  return optimizer?.startsWith("paged_") === true;
}

/**
 * Trainable parameters whose state a paged optimizer keeps in managed memory: those in tensors of at least
 * `BNB_PAGED_MIN_ELEMENTS` elements, counted on the tensors the optimizer is given (LoRA's A and B, DoRA's
 * magnitude, norms; under FSDP1 each one's local shard); under DeepSpeed it steps flat partitions, all of them large
 * (the no-decay group's partition of norms and biases aside, a few MB).
 */
function pagedStateParams(
  plan: Plan,
  trainable: TrainableBreakdown,
  groups: readonly LinearGroup[],
  deepspeed: boolean,
): number {
  if (deepspeed) return trainable.trainable;
  const t = plan.model.architecture.text;
  // FSDP1 hands the optimizer each parameter's local shard (use_orig_params views; PEFT wraps each LoRA linear as a
  // unit of its own); FSDP2's DTensors report their global size
  const shards = plan.sharding === "fsdp" ? partition(plan).optimizer : 1;
  const large = (n: number): boolean => n / shards >= BNB_PAGED_MIN_ELEMENTS;
  let small = 0;
  if (plan.method === "lora" || plan.method === "qlora") {
    const r = plan.loraRank ?? 8;
    for (const g of loraTargets(plan.model.architecture, groups, plan)) {
      const a = r * g.inFeatures;
      const b = g.outFeatures * r;
      small += g.count * ((large(a) ? 0 : a) + (large(b) ? 0 : b) + (plan.useDora ? g.outFeatures : 0));
    }
  } else {
    // full and freeze tuning: every norm weight (and LayerNorm bias) is a vector of hidden size
    const whole = plan.method === "full" && plan.lowMemoryOptimizer !== "badam";
    const layers = whole ? t.numLayers : trainable.trainableLayers.length;
    const modules = plan.method === "freeze" ? plan.freezeTrainableModules : null;
    const norms =
      modules === null || modules === "all"
        ? t.normsPerLayer
        : Math.min(t.normsPerLayer, modules.filter((m) => /norm|^ln_/.test(m)).length);
    const perNorm = t.norm === "layernorm" ? 2 : 1;
    if (!large(t.hiddenSize)) small += (layers * norms + (whole ? 1 : 0)) * perNorm * t.hiddenSize;
  }
  return Math.max(0, trainable.trainable - small);
}

/** Whole-group temporaries of a foreach step: Adagrad's `std` and `numerator`, one for the others. */
export function foreachStepCopies(optimizer: string | null): number {
  return optimizer === "adagrad" ? 2 : 1;
}

interface Ctx {
  readonly arch: Architecture;
  /** bytes of a compute-dtype activation element */
  readonly a: number;
  /** bytes of a residual-stream element (fp32 when full fine-tuning keeps fp32 embeddings under autocast) */
  readonly rb: number;
  /** autocast casts each trainable linear's fp32 input separately (full fine-tuning in mixed precision) */
  readonly castCopies: boolean;
  readonly liger: boolean;
  readonly eager: boolean;
  readonly fa2: boolean;
  readonly seqLen: number;
  /** LoRA input copies per token, summed over the whole language model */
  readonly loraPerToken: number;
  /** each bitsandbytes linear saves its input (8-bit always; 4-bit before bitsandbytes 0.43.2: bnb4bitSavesInput) */
  readonly quantSavesInput: boolean;
}

function qkvInputs(type: Architecture["modelType"], mla: boolean): number {
  if (mla) return 2; // q (or q_a) and kv_a_proj_with_mqa
  return type === "phi3" || type === "chatglm" || type === "internlm2" || type === "baichuan" ? 1 : 3;
}

/** Which weights of a decoder layer are trained (freeze tuning can pick sub-modules). */
export interface LayerTraining {
  readonly norms: boolean;
  readonly attention: boolean;
  readonly mlp: boolean;
}
const FROZEN: LayerTraining = { norms: false, attention: false, mlp: false };
const ALL: LayerTraining = { norms: true, attention: true, mlp: true };

/** Bytes autograd saves for one decoder layer, per token. */
function layerBytesPerToken(ctx: Ctx, layer: number, trained: LayerTraining): number {
  const t: TextArchitecture = ctx.arch.text;
  const { a, rb } = ctx;
  const h = t.hiddenSize;
  const qd = t.mla ? t.numHeads * (t.mla.qkNopeHeadDim + t.mla.qkRopeHeadDim) : t.numHeads * t.headDim;
  const kd = t.mla ? qd : t.numKvHeads * t.headDim;
  const vd = t.mla ? t.numHeads * t.mla.vHeadDim : t.numKvHeads * t.headDim;
  const od = t.mla ? vd : qd;

  // RMSNorm (HF) upcasts its input to fp32 and saves it; its output is saved for the weight's gradient.
  // Liger's fused RMSNorm saves the input in its own dtype and the per-row rstd.
  const norm = (ctx.liger ? a * h : 4 * h) + (trained.norms ? rb * h : 0);
  let bytes = t.normsPerLayer * norm;

  // Attention: SDPA/FlashAttention save q, k, v, the output and a fp32 log-sum-exp per head. Outside
  // FlashAttention-2, transformers expands grouped k/v to every query head first (repeat_kv), so the saved
  // k and v are query-sized.
  const kvSaved = ctx.fa2 ? kd + vd : Math.max(kd, qd) + Math.max(vd, od);
  bytes += a * (qd + kvSaved + od) + 4 * t.numHeads;
  // A trained linear saves its input; under autocast each fp32 input is cast (and saved) per linear. The norm's
  // output (weight × normalised input) is a tensor of its own: a trained norm saves the normalised input, the
  // linears after it save the product (LlamaRMSNorm: `self.weight * hidden_states.to(input_dtype)`).
  if (trained.attention && ctx.castCopies) bytes += qkvInputs(ctx.arch.modelType, t.mla !== null) * a * h;
  else if (trained.attention) bytes += a * h;
  // o_proj's input: SDPA's output transposed into a contiguous copy (transformers sdpa_attention_forward); the
  // output SDPA saves for its backward stays. FlashAttention-2's output reshapes as a view.
  if (trained.attention && !ctx.fa2 && !ctx.eager) bytes += a * od;
  // old bitsandbytes' MatMul4Bit keeps the input of every 4-bit linear: the normed hidden state q/k/v share, and
  // o_proj's (a view of the attention output FlashAttention-2 saves anyway; a contiguous copy otherwise)
  if (ctx.quantSavesInput && !trained.attention) bytes += a * h + (ctx.fa2 ? 0 : a * od);
  if (t.qkNorm) bytes += 4 * (qd + kd) + (trained.attention ? a * (qd + kd) : 0);
  if (t.mla) {
    const latent = t.mla.kvLoraRank + (t.mla.qLoraRank ?? 0);
    bytes += 4 * latent + a * (latent + t.mla.qkRopeHeadDim);
  }
  // Eager attention keeps the s×s probabilities (fp32 softmax output and its compute-dtype copy) per head.
  if (ctx.eager) bytes += t.numHeads * ctx.seqLen * (4 + a);

  const moe = t.moe;
  const inMoe = moe?.moeLayers.includes(layer) ?? false;
  const trainable = trained.mlp;
  const mlpInputCopies = (width: number) =>
    trainable && ctx.castCopies ? width * a * h : trainable ? a * h : 0;
  // Gated MLP: act(gate) saves gate, the product saves act and up (Liger's SwiGLU recomputes act: 2 tensors);
  // down_proj saves its input when it is trained.
  // old bitsandbytes also keeps the 4-bit MLP's inputs: the normed hidden state and down_proj's input
  const quantMlp = ctx.quantSavesInput && !trainable;
  const gated = (I: number) =>
    (ctx.liger ? 2 : 3) * a * I + (trainable || quantMlp ? a * I : 0) + (quantMlp ? a * h : 0);
  if (inMoe && moe) {
    const Ie = moe.expertIntermediateSize;
    bytes += 4 * moe.numExperts; // router softmax (fp32)
    // per routed copy: the gathered input (saved when the expert is trained), the MLP, the weighted output
    bytes += moe.expertsPerToken * ((trainable ? a * h : 0) + gated(Ie) + a * h);
    if (moe.sharedExpertIntermediateSize > 0)
      bytes += mlpInputCopies(2) + gated(moe.sharedExpertIntermediateSize);
  } else if (t.mlp === "gated") {
    bytes += mlpInputCopies(ctx.arch.modelType === "phi3" || ctx.arch.modelType.startsWith("glm") ? 1 : 2);
    bytes += gated(t.intermediateSize);
  } else {
    bytes +=
      mlpInputCopies(1) +
      a * t.intermediateSize +
      (trainable || quantMlp ? a * t.intermediateSize : 0) +
      (quantMlp ? a * h : 0);
  }
  return bytes + ctx.loraPerToken / t.numLayers;
}

/** LoRA's saved tensors per token over the language model: each adapted module keeps a copy of its input. */
function loraBytesPerToken(
  plan: Plan,
  groups: readonly LinearGroup[],
  targets: readonly string[],
  copyBytes: number,
  a: number,
): number {
  const t = plan.model.architecture.text;
  const r = plan.loraRank ?? 0;
  let bytes = 0;
  for (const g of groups) {
    if (g.region !== "text" || !targets.includes(g.name)) continue;
    // routed experts: each token passes through expertsPerToken of them in each MoE layer
    const passes = g.expert && t.moe ? (g.count / t.moe.numExperts) * t.moe.expertsPerToken : g.count;
    // DoRA's `(mag - 1) * base_result + mag * lora_result * scaling` saves the base result (compute dtype) and
    // the LoRA result (adapter dtype) per output feature (peft/tuners/lora/dora.py DoraLinearLayer.forward).
    const dora = plan.useDora ? (a + copyBytes) * g.outFeatures : 0;
    const perPass = copyBytes * (g.inFeatures + r) + ((plan.loraDropout ?? 0) > 0 ? g.inFeatures : 0) + dora;
    bytes += passes * perPass;
  }
  return bytes;
}

function adafactorBytes(trainable: TrainableBreakdown, groups: readonly LinearGroup[], plan: Plan): number {
  // Factored second moment: one fp32 row and one column vector per matrix.
  if (plan.method === "lora" || plan.method === "qlora") {
    const r = plan.loraRank ?? 8;
    return groups
      .filter((g) => trainable.loraTargets.includes(g.name))
      .reduce((n, g) => n + g.count * 4 * (r + g.inFeatures + g.outFeatures + r), 0);
  }
  const share = trainable.fullModules / Math.max(1, countParams(plan.model.architecture).total);
  return share * groups.reduce((n, g) => n + g.count * 4 * (g.inFeatures + g.outFeatures), 0);
}

/** GaLore's and APOLLO's optimizer side (zero for other plans). */
interface Projection {
  /** trainable parameters in projected matrices (their states are the low-rank ones below) */
  readonly params: number;
  /** states of the projected matrices: two moments of the r × max(in, out) gradient, and the projector */
  readonly bytes: number;
  /** of which the projectors */
  readonly projectorBytes: number;
  /** the step's largest temporaries, parameter by parameter */
  readonly stepTempBytes: number;
  /** the largest trainable parameter: layer-wise, the only gradient alive at a time */
  readonly largestParams: number;
}

/**
 * GaLore and APOLLO (LLaMA-Factory ff6d4d12ee train/trainer_utils.py _create_galore_optimizer,
 * _create_apollo_optimizer; galore_target/apollo_target `all` = every nn.Linear of the language model but lm_head).
 * Each 2-D weight's (out × in) gradient is projected to rank r: right (grad · Pᵀ, out × r) when out ≥ in, else left
 * (Pᵀ · grad, r × in), so the two Adam moments hold r × max(in, out) elements and the projector r × min(in, out), in
 * the parameter's dtype (galore_torch galore_projector.py; APOLLO's random projector from a seed, kept the same way).
 * An fp32 gradient (mixed precision: LLaMA-Factory upcasts) is not converted after GaLore's SVD, and its r-row
 * projector is a view that keeps the SVD's whole min(in, out)² factor alive.
 * Embeddings, norms and lm_head keep full optimizer states. Both optimizers step parameter by parameter (no foreach
 * buffer): GaLore's SVD of the largest gradient (fp32 copy, U and Vᵀ of width min(in, out)) every update_proj_gap
 * steps and the full-size update it projects back; APOLLO's scaled full-size gradient; for the embeddings and
 * lm_head, AdamW's full-size denominator and normalised gradient. Under FSDP the Trainer builds the optimizer after
 * wrapping, when FSDP1 shows each weight as a 1-D view of its shard: nothing is 2-D, nothing is projected, and the
 * states are AdamW's (rule PROJECTED_OPTIMIZER_FSDP).
 */
function projectedStates(
  plan: Plan,
  trainable: TrainableBreakdown,
  groups: readonly LinearGroup[],
  paramBytes: number,
): Projection {
  const kind = plan.lowMemoryOptimizer;
  const t = plan.model.architecture.text;
  if (!projectsGradients(kind) || isFsdp(plan.sharding))
    return { params: 0, bytes: 0, projectorBytes: 0, stepTempBytes: 0, largestParams: 0 };
  const r = plan.lowMemoryRank ?? 16;
  const share = plan.method === "freeze" ? trainable.trainableLayers.length / t.numLayers : 1;
  const text = groups.filter((g) => g.region === "text");
  const stateBytes = optimizerBytesPerParam(plan.optimizer, paramBytes);
  let params = 0;
  let bytes = 0;
  let projectorBytes = 0;
  for (const g of text) {
    const n = g.count * share;
    const rank = Math.min(r, g.inFeatures, g.outFeatures);
    params += n * g.inFeatures * g.outFeatures;
    const k = Math.min(g.inFeatures, g.outFeatures);
    // GaLore's projector of an fp32 gradient is a slice of the SVD's factor, which keeps the whole k × k factor
    // alive (get_orthogonal_matrix: `B = Vh[:rank, :]`, converted, so copied, only for 16-bit data)
    const projector = kind === "galore" && paramBytes === 4 ? 4 * k * k : rank * k * paramBytes;
    bytes += n * (rank * Math.max(g.inFeatures, g.outFeatures) * stateBytes + projector);
    projectorBytes += n * projector;
  }
  params = Math.min(params, trainable.fullModules);
  const largest = text.reduce(
    (best, g) => (g.inFeatures * g.outFeatures > best.inFeatures * best.outFeatures ? g : best),
    text[0] ?? { inFeatures: 0, outFeatures: 0 },
  );
  const largestLinear = largest.inFeatures * largest.outFeatures;
  const k = Math.min(largest.inFeatures, largest.outFeatures);
  const projectTemp =
    kind === "galore"
      ? (paramBytes === 4 ? 0 : 4 * largestLinear) +
        4 * k * (largest.inFeatures + largest.outFeatures) +
        paramBytes * largestLinear
      : 2 * paramBytes * largestLinear;
  const embeddings = plan.method === "full" ? Math.max(t.vocabSize * t.hiddenSize, 0) : 0;
  const largestParams = Math.max(largestLinear, embeddings);
  return {
    params,
    bytes,
    projectorBytes,
    stepTempBytes: Math.max(projectTemp, 2 * embeddings * paramBytes),
    largestParams,
  };
}

/**
 * The trained vocabulary × hidden tensors: the embeddings and an untied lm_head under full tuning, or the trained
 * copies LoRA's additional_target makes of them (PEFT modules_to_save copies the module, tied or not).
 */
function trainedVocabTensors(plan: Plan, params: ParamBreakdown): { embed: number; head: number } {
  if (plan.method === "full" && plan.lowMemoryOptimizer !== "badam")
    return { embed: params.embedTokens, head: params.lmHead };
  if (plan.method === "freeze") return { embed: 0, head: 0 };
  const t = plan.model.architecture.text;
  const names = embeddingModuleNames(plan.model.architecture.modelType);
  const extra = plan.additionalTarget ?? [];
  const vh = t.vocabSize * t.hiddenSize;
  return {
    embed: extra.some((m) => m === names.embed || /embed|wte/.test(m)) ? vh : 0,
    head: extra.some((m) => m === names.head || /lm_head|output/.test(m)) ? vh : 0,
  };
}

/**
 * Of those, the ones an optimizer picks out by name for AdamW's full states. Adam-mini: names with "embed", "embd",
 * "wte", "lm_head.weight" or "output.weight" (adam_mini.py embd_names; a LoRA copy of lm_head is
 * "lm_head.modules_to_save.default.weight"). LLaMA-Factory's Muon: names with "embed" or "lm_head"
 * (trainer_utils.py _create_muon_optimizer), so Qwen-1's wte and InternLM2's and ChatGLM's output layers are Muon's.
 */
function vocabTensorsWithFullStates(
  plan: Plan,
  params: ParamBreakdown,
  optimizer: "adam_mini" | "muon",
): number {
  const { embed, head } = trainedVocabTensors(plan, params);
  const names = embeddingModuleNames(plan.model.architecture.modelType);
  const lora = plan.method === "lora" || plan.method === "qlora";
  if (optimizer === "adam_mini")
    return (
      (/embed|embd|wte/.test(names.embed) ? embed : 0) +
      (!lora && (names.head === "lm_head" || names.head === "output") ? head : 0)
    );
  return (/embed/.test(names.embed) ? embed : 0) + (/lm_head/.test(names.head) ? head : 0);
}

/** Trained routed experts stored as fused 3-D tensors (not nn.Linear): Muon leaves them to AdamW. */
function fusedExpertParams(plan: Plan, trainable: TrainableBreakdown, expertsAsLinear: boolean): number {
  const arch = plan.model.architecture;
  const moe = arch.text.moe;
  if (moe === null || expertsAreLinear(arch.modelType, { expertsAsLinear })) return 0;
  const perLayer = moe.numExperts * denseMlpParams(arch.text, moe.expertIntermediateSize);
  if (plan.method === "full") return moe.moeLayers.length * perLayer;
  if (plan.method === "freeze" && freezeSelection(plan).mlp)
    return moe.moeLayers.filter((l) => trainable.trainableLayers.includes(l)).length * perLayer;
  return 0;
}

/**
 * Muon's step, parameter by parameter: for its largest matrix, the Nesterov update (gradient dtype) and the
 * Newton-Schulz iteration in bf16 (the normalised copy, X·Xᵀ, its square and their sum, B·X and a·X); for what
 * AdamW steps (embeddings, lm_head, fused experts), its full-size denominator and update (muon.py
 * `buf1 / (eps + buf2.sqrt())`).
 */
function muonStepBytes(
  plan: Plan,
  groups: readonly LinearGroup[],
  params: ParamBreakdown,
  bytes: number,
  fusedExperts: number,
): number {
  const t = plan.model.architecture.text;
  const text = groups.filter((g) => g.region === "text");
  const r = plan.loraRank ?? 8;
  const lora = plan.method === "lora" || plan.method === "qlora";
  const shapes: [number, number][] = text.map((g) =>
    lora ? [r, Math.max(g.inFeatures, g.outFeatures)] : [g.outFeatures, g.inFeatures],
  );
  // a trained vocabulary tensor whose name Muon does not exclude is one of its matrices
  const vocab = trainedVocabTensors(plan, params);
  const adamw = vocabTensorsWithFullStates(plan, params, "muon");
  if (vocab.embed + vocab.head > adamw) shapes.push([t.vocabSize, t.hiddenSize]);
  let newtonSchulz = 0;
  for (const [rows, cols] of shapes)
    newtonSchulz = Math.max(newtonSchulz, rows * cols * (bytes + 2 * 3) + Math.min(rows, cols) ** 2 * 2 * 3);
  const moe = t.moe;
  // per layer, the fused gate_up projection (experts × 2·intermediate × hidden) is the larger of its two tensors
  const expertTensor = moe && fusedExperts > 0 ? ((fusedExperts / moe.moeLayers.length) * 2) / 3 : 0;
  const adamwLargest = Math.max(adamw > 0 ? t.vocabSize * t.hiddenSize : 0, expertTensor);
  return Math.max(newtonSchulz, 2 * adamwLargest * bytes);
}

/**
 * One decoder layer's GPTQ linears in 16 bits: GPTQ's training path dequantizes each linear's weight to fp16 and
 * multiplies with `torch.matmul` (auto-gptq's qlinear_cuda_old/qlinear_cuda from 128 rows on, which training takes:
 * their CUDA kernels have no backward; GPTQModel's TorchQuantLinear), so autograd saves the dequantized weight for
 * the input's gradient until the layer's backward. bitsandbytes' MatMul4Bit and AutoAWQ's WQLinearMMFunction save
 * the packed weight and dequantize again in backward.
 */
function gptqLayerWeightBytes(plan: Plan, as: MemoryAssumptions): number {
  return (quantizedParams(plan, as) / plan.model.architecture.text.numLayers) * 2;
}

/**
 * LLaMA-Factory marks every MoE block of these families a ZeRO-3 leaf module (model/model_utils/moe.py
 * add_z3_leaf_module: MixtralSparseMoeBlock, Qwen2MoeSparseMoeBlock, Qwen3MoeSparseMoeBlock, DeepseekV2MoE,
 * DeepseekV3MoE, Qwen3VLMoeTextSparseMoeBlock): DeepSpeed fetches a leaf's parameters all at once.
 */
const Z3_LEAF_MOE = new Set([
  "mixtral",
  "qwen2_moe",
  "qwen3_moe",
  "deepseek_v2",
  "deepseek_v3",
  "qwen3_vl_moe",
]);

/** ZeRO-3's largest module gathered at once: DeepSpeed's estimator's largest module, or a whole leaf MoE block. */
function zero3LargestModule(
  plan: Plan,
  params: ParamBreakdown,
  as: MemoryAssumptions,
  quantized: number | null,
  a: number,
): { readonly params: number; readonly bytes: number } {
  const largest = largestModule(plan, params, as);
  const t = plan.model.architecture.text;
  const moe = t.moe;
  if (moe === null || !Z3_LEAF_MOE.has(plan.model.architecture.modelType)) return largest;
  const experts = moe.numExperts * denseMlpParams(t, moe.expertIntermediateSize);
  const shared =
    moe.sharedExpertIntermediateSize > 0 ? denseMlpParams(t, moe.sharedExpertIntermediateSize) : 0;
  const router = moe.numExperts * t.hiddenSize + (moe.routerBias ? moe.numExperts : 0);
  // bitsandbytes quantizes the experts where they are nn.Linear (transformers 4.x), not the fused 3-D ones
  const expertBytes = quantized !== null && as.transformersExpertsAsLinear ? quantized : a;
  const block = {
    params: experts + shared + router,
    bytes: experts * expertBytes + shared * (quantized ?? a) + router * a,
  };
  return block.bytes > largest.bytes ? block : largest;
}

/** The largest single trainable parameter: the one an optimizer stepping parameter by parameter peaks on. */
function largestTrainableParam(plan: Plan, groups: readonly LinearGroup[], params: ParamBreakdown): number {
  const text = groups.filter((g) => g.region === "text");
  const vocab = trainedVocabTensors(plan, params);
  const vocabLargest = Math.max(vocab.embed, vocab.head);
  if (plan.method === "lora" || plan.method === "qlora")
    return Math.max(
      vocabLargest,
      (plan.loraRank ?? 8) * Math.max(0, ...text.map((g) => Math.max(g.inFeatures, g.outFeatures))),
    );
  return Math.max(vocabLargest, ...text.map((g) => g.inFeatures * g.outFeatures));
}

export interface TrainInputs {
  readonly params: ParamBreakdown;
  readonly trainable: TrainableBreakdown;
}

/** Ways the model states are split across the data-parallel group. */
function partition(plan: Plan): { weights: number; gradients: number; optimizer: number; world: number } {
  const world = plan.gpus * plan.nodes;
  const shardGroup = shardGroupOf(plan);
  switch (plan.sharding) {
    case "zero1":
      return { weights: 1, gradients: 1, optimizer: world, world };
    case "zero2":
      return { weights: 1, gradients: world, optimizer: world, world };
    case "zero3":
    case "fsdp2":
      return { weights: world, gradients: world, optimizer: world, world };
    case "fsdp":
      if (plan.fsdpStrategy === "no_shard") return { weights: 1, gradients: 1, optimizer: 1, world };
      if (plan.fsdpStrategy === "shard_grad_op")
        return { weights: 1, gradients: world, optimizer: world, world };
      return { weights: shardGroup, gradients: shardGroup, optimizer: shardGroup, world };
    default:
      return { weights: 1, gradients: 1, optimizer: 1, world };
  }
}

/** Predicts the training peak of one GPU for a resolved plan. */
export function estimateTrainMemory(
  plan: Plan,
  overrides: Partial<MemoryAssumptions> = {},
  inputs?: TrainInputs,
): TrainMemory {
  const as = withDefaults(overrides);
  const arch = plan.model.architecture;
  const t = arch.text;
  const params = inputs?.params ?? countParams(arch);
  const trainable =
    inputs?.trainable ?? countTrainable(arch, { ...plan, expertsAsLinear: as.transformersExpertsAsLinear });
  const groups = linearModules(arch, { expertsAsLinear: as.transformersExpertsAsLinear });

  const fp32 = plan.precision === "fp32";
  const pure = plan.precision === "pure_bf16";
  const mixed = !fp32 && !pure;
  const a = fp32 ? 4 : 2; // compute dtype
  const deepspeed = isDeepSpeed(plan.sharding);
  // BAdam trains one decoder layer at a time (trainable.ts) and keeps its own fp32 copy of that layer
  const badam = plan.lowMemoryOptimizer === "badam";
  // LLaMA-Factory upcasts trainable parameters to fp32 unless pure_bf16 or BAdam (model/adapter.py:337-349).
  const m = pure || (badam && !fp32) ? 2 : 4;
  const isLora = plan.method === "lora" || plan.method === "qlora";
  /** every language-model weight trains at once (full tuning without BAdam) */
  const isFull = plan.method === "full" && !badam;
  const split = partition(plan);

  // ---- weights
  // accelerate 1.11 (LLaMA-Factory's pin) casts the whole model to fp32 after FSDP2's fully_shard, frozen
  // weights and bnb Params4bit storage included (fixed in 1.13/1.14): the frozen shards then take twice the bytes.
  const fsdp2Fp32 = plan.sharding === "fsdp2" && mixed && as.accelerateFsdp2CastsFrozenToFp32 ? 2 : 1;
  const frozenBase =
    (plan.method === "qlora"
      ? loadedWeightBytes(plan, params, as)
      : (params.total - (isLora ? 0 : trainable.fullModules)) * a) * fsdp2Fp32;
  // DeepSpeed keeps 16-bit model weights and puts the fp32 master copy into the optimizer state. PEFT's
  // get_peft_model upcasts 16-bit adapter weights to fp32 (autocast_adapter_dtype, on in LLaMA-Factory's call),
  // so LoRA adapters are fp32 under pure_bf16 too; DeepSpeed casts the whole module to its 16-bit dtype.
  const fullBytes = deepspeed && mixed ? a : m;
  const adapterBytes = deepspeed && !fp32 ? a : 4;
  /** bytes of one copy of every trainable parameter in its dtype (the trained weights; their gradients) */
  const trainableCopy = trainable.adapter * adapterBytes + trainable.fullModules * fullBytes;
  const weightsFull = frozenBase + trainableCopy;
  const offloadParams = plan.offload === "params";
  // bitsandbytes' block constants stay whole on every GPU: only the packed 4-bit parameter is split or offloaded
  const quantConstants = quantConstantBytes(plan, as);
  /** the rank's own weights: its share, with the quantization constants whole */
  const shardsBytes = (weightsFull - quantConstants) / split.weights + quantConstants;
  let weights = weightsFull / split.weights;
  // Gathered parameters are in the compute dtype (FSDP mixed precision's param_dtype; DeepSpeed's 16-bit copy),
  // QLoRA's quantized linears in their storage; embeddings, lm_head and norms stay 16-bit under QLoRA too.
  const quantized = quantizedBytesPerParam(plan, as);
  const layerBytes = quantized ?? a;
  const layerParams = (params.text - params.embedTokens - params.lmHead - params.finalNorm) / t.numLayers;
  /** gathered (unsharded) parameters of the forward and backward; released before the optimizer step */
  let gathered = 0;
  /** ZeRO-3: gathered at the end of the forward and of backward, when the prefetch reaches the embedding or lm_head */
  let gatheredAway = 0;
  if (split.weights > 1 || offloadParams) {
    if (plan.sharding === "zero3") {
      // DeepSpeed's estimator: 4 B × the largest module's parameters, its 16-bit parameters gathered (2 B) and its
      // 16-bit gradients computed (2 B); the embedding or lm_head is often the largest (stage3.py
      // estimate_zero3_model_states_mem_needs, largest_layer_memory). A frozen module has no gradient: LoRA and
      // freeze tuning gather the 16-bit weights only, unless additional_target trains the embedding or lm_head.
      const largest = zero3LargestModule(plan, params, as, quantized, a);
      const largestTrained =
        isFull || (plan.additionalTarget ?? []).some((m) => /embed|wte|lm_head|output/.test(m));
      // A released module's parameters are kept gathered when the trace uses them again within
      // stage3_max_reuse_distance parameters (partitioned_param_coordinator.py __params_to_release). Around the
      // loss the last layers' forward use and their backward use (recompute + backward with checkpointing) are
      // that close: the last (distance − 2 × lm_head) / 3 parameters stay gathered (/ 2 without checkpointing).
      const head = params.lmHead > 0 ? params.lmHead : params.embedTokens;
      const retained = Math.min(
        layerParams * t.numLayers,
        Math.max(0, (as.zero3MaxReuseDistance - 2 * head) / (plan.gradientCheckpointing ? 3 : 2)),
      );
      // Once the trace is complete, the prefetch keeps up to stage3_max_live_parameters elements gathered, plus the
      // parameter that crosses the bound (zero3MaxLiveParameters), in the 16-bit storage dtype (QLoRA's 4-bit weights
      // are packed in it); never more than the whole model. At the loss, lm_head is gathered within the bound, and one
      // of at least that many elements stops the prefetch there: only the next decoder-layer weight crosses it. The
      // embedding or lm_head crosses it away from the loss, at the end of the forward and of backward.
      const floor = largest.bytes + retained * layerBytes;
      const liveBytes = as.zero3MaxLiveParameters * a;
      const whole = weightsFull - quantConstants;
      const layerWeight =
        Math.max(0, ...groups.filter((g) => g.region === "text").map((g) => g.inFeatures * g.outFeatures)) *
        layerBytes;
      const grad = largestTrained ? largest.params * a : 0;
      gathered =
        (as.zero3MaxLiveParameters <= 0 || head >= as.zero3MaxLiveParameters
          ? floor
          : Math.max(floor, Math.min(whole, liveBytes + layerWeight))) + grad;
      if (as.zero3MaxLiveParameters > 0)
        gatheredAway = Math.max(floor, Math.min(whole, liveBytes + largest.bytes)) + grad;
    } else {
      // FSDP gathers one decoder layer and prefetches the next (BACKWARD_PRE), as stored (4-bit for QLoRA); the
      // root unit (embeddings, final norm, lm_head) is not resharded after forward. A gathered unit is a new
      // full-size tensor beside the rank's own shard, which stays allocated (flat_param.py `_local_shard`).
      const root = (params.embedTokens + params.lmHead + params.finalNorm) * a;
      gathered =
        plan.sharding === "fsdp2" && isLora && as.peftFsdp2WrapsRootOnly
          ? // one unit, the whole model: every weight as stored (QLoRA's linears 4-bit) and the adapters
            (plan.method === "qlora" ? loadedWeightBytes(plan, params, as) : params.total * a) + trainableCopy
          : 2 * layerParams * layerBytes + root;
    }
    weights = (offloadParams ? quantConstants : shardsBytes) + gathered;
  }

  // ---- gradients and optimizer
  const projection = projectedStates(plan, trainable, groups, m);
  let gradients = trainableCopy / split.gradients;
  // layer-wise GaLore/APOLLO steps each parameter in its post-accumulate-grad hook and frees its gradient there
  // (trainer_utils.py optimizer_hook): one parameter's gradient is alive at a time
  const layerwise = plan.lowMemoryLayerwise === true;
  if (layerwise) gradients = projection.largestParams * fullBytes;
  if (offloadParams) gradients = 0;
  /** what the optimizer step sees: the shards of the reduced gradients */
  const stepGradients = gradients;
  // FSDP1 under the HF Trainer accumulates unsharded gradients. Every micro-batch of an accumulation but the last
  // runs inside accelerate's no_sync, which is FSDP1's no_sync (the Trainer's `sync_context`, unless
  // accelerator_config's gradient_accumulation_kwargs sets sync_each_batch). FSDP1's post-backward hook then
  // returns before the reduce-scatter, and `.grad` stays the unsharded gradient in the compute dtype (torch
  // _runtime_utils.py _post_backward_hook; its docs: "FSDP will accumulate the full model gradients (instead of
  // gradient shards) until the eventual sync"), on the GPU even with CPU offload. The last micro-batch starts
  // with them, so the backward peak holds the whole model's trainable gradients in 16 bits.
  if (fsdpAccumulatesUnsharded(plan) && split.gradients > 1) gradients = trainable.trainable * a;
  // DeepSpeed's fp32 master copy of its partition; BAdam's fp32 copy of the active layer, which its base optimizer
  // steps (block_optim.py _switch_trainable_params_single_gpu: `param.clone().float()`)
  const masterBytes = (deepspeed && mixed) || (badam && !deepspeed) ? 4 : 0;
  // Adam-mini (adam_mini/adam_mini.py): an fp32 first moment for every trainable parameter, whatever its dtype; the
  // second moment is AdamW's (fp32, per parameter) only for the embedding and output blocks ("embed", "wte",
  // "lm_head.weight" in the name), and one value per head (q, k) or per block elsewhere
  const adamMini = plan.lowMemoryOptimizer === "adam_mini";
  // Muon (LLaMA-Factory third_party/muon/muon.py): one momentum buffer per 2-D trainable parameter, the embeddings and
  // lm_head excepted, in the gradient's dtype; AdamW's two moments for those and the 1-D ones (norms, counted with
  // the matrices here: their share is < 0.1 %)
  // Under FSDP the Trainer builds it after wrapping, when FSDP1's parameters are 1-D views of their shards, and
  // LLaMA-Factory hands every 1-D parameter to AdamW (rule MUON_SHARDED)
  const muon = plan.lowMemoryOptimizer === "muon" && !isFsdp(plan.sharding);
  const fusedExperts = muon ? fusedExpertParams(plan, trainable, as.transformersExpertsAsLinear) : 0;
  /** parameters with AdamW's two moments beside Adam-mini's or Muon's one */
  const fullStates = adamMini
    ? vocabTensorsWithFullStates(plan, params, "adam_mini")
    : muon
      ? vocabTensorsWithFullStates(plan, params, "muon") + fusedExperts
      : 0;
  // the optim whose states the generic branch counts: Muon ignores it (under FSDP its own AdamW steps everything)
  const statesOptim = plan.lowMemoryOptimizer === "muon" ? null : plan.optimizer;
  const stateBytes = adamMini
    ? trainable.trainable * 4 + fullStates * 4
    : muon
      ? deepspeed
        ? trainable.trainable * 4 + fullStates * 4
        : trainable.adapter * adapterBytes + trainable.fullModules * fullBytes + fullStates * fullBytes
      : statesOptim === "adafactor"
        ? deepspeed || plan.sharding === "fsdp"
          ? // DeepSpeed hands it flat 1-D fp32 partitions, FSDP1 1-D views of each weight's shard, which Adafactor
            // does not factor: a full second moment
            trainable.trainable * 4
          : // factored rows and columns (of the low-rank gradients under GaLore: fewer), and GaLore's projectors
            adafactorBytes(trainable, groups, plan) + projection.projectorBytes
        : deepspeed
          ? trainable.trainable * optimizerBytesPerParam(statesOptim, 4)
          : trainable.adapter * optimizerBytesPerParam(statesOptim, adapterBytes) +
            (trainable.fullModules - projection.params) *
              optimizerBytesPerParam(statesOptim, badam ? 4 : fullBytes) +
            projection.bytes;
  // a paged optimizer's large states live in managed memory, outside the allocator (the generic branch above only:
  // Adam-mini and Muon ignore `optim`; GaLore's 8-bit AdamW is paged too when LLaMA-Factory builds it from
  // paged_adamw_8bit, which is left in the allocator here: on the high side)
  const pagedStates =
    isPagedOptimizer(statesOptim) && plan.offload === "none" && !adamMini && projection.params === 0
      ? pagedStateParams(plan, trainable, groups, deepspeed) * optimizerBytesPerParam(statesOptim, 4)
      : 0;
  let optimizer = (trainable.trainable * masterBytes + stateBytes - pagedStates) / split.optimizer;
  if (plan.offload !== "none") optimizer = 0;
  // FSDP2's DTensor parameters report their global shape, and `get_paged(*p.shape)` sizes the buffer by it: each rank
  // pages the whole parameter's states (rule BNB_OPTIMIZER_FSDP2: the step fails there anyway)
  const pagedOptimizerBytes = plan.sharding === "fsdp2" ? pagedStates : pagedStates / split.optimizer;

  // ---- activations
  const tokens = plan.microBatch * plan.seqLen;
  const trainableLayers = new Set(
    plan.method === "freeze" || badam ? trainable.trainableLayers : isFull ? range(t.numLayers) : [],
  );
  const layerTraining = badam ? ALL : freezeSelection(plan);
  // PEFT casts each adapted input to the adapter dtype (under autocast the matmul casts it back to 16 bits)
  const copyBytes = mixed ? a : adapterBytes;
  // LLaMA-Factory skips Liger for some families; Gemma-2 under `auto` runs eager attention unless
  // FlashAttention-2 is possible (the conservative reading: eager where the GPU cannot run FA2).
  const liger = plan.liger && !LIGER_UNSUPPORTED.has(arch.modelType);
  const eager =
    plan.attention === "eager" ||
    (arch.modelType === "gemma2" && plan.attention === "auto" && !plan.gpu.flashAttention2);
  // Full fine-tuning in mixed precision computes on fp32 weights under the Trainer's autocast: the embeddings'
  // output, so the residual stream, is fp32, and autocast casts each trained linear's input on its own. DeepSpeed
  // casts the module to its 16-bit dtype and runs without autocast (the fp32 master copy is the optimizer's);
  // FSDP's mixed-precision policy (accelerate sets param_dtype to the compute dtype) gathers 16-bit parameters, so
  // the forward is 16-bit throughout and autocast's casts are no-ops there.
  const fp32Forward = isFull && mixed && !deepspeed && !isFsdp(plan.sharding);
  const ctx: Ctx = {
    arch,
    a,
    rb: fp32Forward ? 4 : a,
    castCopies: fp32Forward,
    liger,
    eager,
    // the same reading: Gemma-2 under `auto` runs FlashAttention-2 where the GPU can
    fa2:
      plan.attention === "fa2" ||
      (arch.modelType === "gemma2" && plan.attention === "auto" && plan.gpu.flashAttention2),
    seqLen: plan.seqLen,
    loraPerToken: isLora ? loraBytesPerToken(plan, groups, trainable.loraTargets, copyBytes, a) : 0,
    // bitsandbytes' 8-bit MatMul8bitLt saves its 16-bit input whenever it needs an input gradient (`ctx.tensors =
    // (CAt, subA, A)`, CAt None for frozen weights); its 4-bit MatMul4Bit did so before 0.43.2
    quantSavesInput:
      plan.method === "qlora" && plan.quantMethod === "bnb" && (plan.quantBits === 8 || as.bnb4bitSavesInput),
  };
  const perLayer = range(t.numLayers).map((l) =>
    layerBytesPerToken(ctx, l, trainableLayers.has(l) ? layerTraining : FROZEN),
  );
  const finalNorm = (liger ? a : 4) * t.hiddenSize + (isFull ? ctx.rb * t.hiddenSize + a * t.hiddenSize : 0);
  const vision = visionActivationBytes(plan, a);
  // Backward working set of one layer: the incoming and outgoing hidden-state gradients and the MLP's.
  const mlpWidth = t.moe ? t.moe.expertIntermediateSize * t.moe.expertsPerToken : t.intermediateSize;
  const working = 2 * ctx.rb * t.hiddenSize + 2 * a * mlpWidth;
  const maxLayer = Math.max(...perLayer);
  const sumLayers = perLayer.reduce((x, y) => x + y, 0);
  // Padded batches under SDPA: transformers (masking_utils) builds one boolean (b, 1, s, s) mask when the batch
  // holds padding, and torch's SDPA turns it into an additive mask in the compute dtype on every call
  // (convert_boolean_attn_mask), which the memory-efficient kernel saves for backward. Packed rows are attended in
  // full (LLaMA-Factory's packing, or fixed-length data): no mask. FlashAttention-2 unpads; eager attention's own
  // s² terms are counted in the layer.
  const maskElements = !plan.packing && !ctx.fa2 && !eager ? plan.microBatch * plan.seqLen ** 2 : 0;
  const maskPerLayer = maskElements * a;

  // ---- logits
  let logitsPeak: number;
  /** whether the loss works on fp32 logits */
  let logitsUpcast = true;
  if (liger) {
    // Liger's fused linear cross-entropy: chunks of ~BT/(V/H) rows, plus the input gradient it precomputes.
    const chunk =
      2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(tokens / Math.ceil(t.vocabSize / t.hiddenSize)))));
    logitsPeak = Math.min(tokens, chunk) * t.vocabSize * 4 * 2 + tokens * t.hiddenSize * a;
  } else {
    // a 16-bit loss where the model does not upcast and nothing autocasts: DeepSpeed manages its own precision, and
    // pure_bf16 under FSDP runs without `bf16: true` (train-yaml.ts), so without the Trainer's autocast
    const noAutocast = deepspeed || (pure && isFsdp(plan.sharding));
    const noUpcast = !fp32 && noAutocast && LOSS_WITHOUT_UPCAST.has(arch.modelType);
    logitsUpcast = !noUpcast;
    logitsPeak =
      tokens *
      t.vocabSize *
      (fp32
        ? as.logitsBytesPerVocabTokenFp32
        : noUpcast
          ? as.logitsBytesPerVocabTokenNoUpcast
          : as.logitsBytesPerVocabToken);
  }

  // logits a hand-written loop keeps in the model output through backward (0 under the HF Trainer)
  const heldLogits = liger ? 0 : tokens * t.vocabSize * as.heldOutputLogitsBytesPerVocabToken;

  // GPTQ keeps each linear's dequantized 16-bit weight for backward: one decoder layer's in its recompute, every
  // layer's from the forward on without checkpointing (freed layer by layer in backward)
  const gptqLayer =
    plan.method === "qlora" && plan.quantMethod === "gptq" ? gptqLayerWeightBytes(plan, as) : 0;
  let activations: number;
  let logits: number;
  /** what the forward has saved when it reaches lm_head, before the loss */
  let forwardEndActivations: number;
  if (plan.gradientCheckpointing) {
    const checkpoints = tokens * t.numLayers * ctx.rb * t.hiddenSize + vision.checkpointed + maskElements;
    forwardEndActivations = checkpoints;
    const recompute = tokens * (maxLayer + working) + maskPerLayer + gptqLayer;
    if (logitsPeak >= recompute) {
      activations = checkpoints;
      logits = logitsPeak + heldLogits;
    } else {
      activations = checkpoints + recompute;
      logits = heldLogits;
    }
  } else {
    activations =
      tokens * (sumLayers + finalNorm) +
      vision.saved +
      maskElements +
      t.numLayers * (maskPerLayer + gptqLayer);
    forwardEndActivations = activations;
    logits = logitsPeak + heldLogits;
  }

  // ---- buffers
  let buffers = vision.transient;
  if (plan.method === "qlora") {
    const largest = Math.max(...groups.map((g) => g.inFeatures * g.outFeatures));
    // bitsandbytes and AutoAWQ dequantize in forward and again in backward (the saved weight is the packed one);
    // GPTQ keeps the forward's 16-bit weight (counted with the activations), and unpacks the packed int32 words by a
    // shift of the expanded int32 tensor before its int8 cast (qlinear_cuda_old.py): 4 + 1 B per weight element
    buffers += plan.quantMethod === "gptq" ? 5 * largest : 2 * largest * a;
  }
  let autocastCache = 0;
  if (fp32Forward) {
    // autocast caches the bf16 cast of every fp32 weight used in forward until the forward ends; with
    // checkpointing the layers run without grad (no caching) and only lm_head's cast is cached.
    const linearParams = groups
      .filter((g) => g.region === "text")
      .reduce((n, g) => n + g.count * g.inFeatures * g.outFeatures, 0);
    autocastCache =
      a *
      (plan.gradientCheckpointing ? t.vocabSize * t.hiddenSize : linearParams + t.vocabSize * t.hiddenSize);
    buffers += autocastCache;
  }
  if (plan.sharding === "none" && split.world > 1) buffers += trainableCopy; // DDP buckets
  if (layerwise) buffers += projection.stepTempBytes; // each parameter's step runs in its gradient hook
  /** ZeRO-1/2's gradient bucket: allocated by the first gradient hook of a backward, dropped at its end */
  let zeroBucket = 0;
  if (deepspeed) {
    // With contiguous_gradients DeepSpeed allocates its reduce bucket at the configured size, however few parameters
    // train: ZeRO-1/2 `setup_buckets` makes one buffer of reduce_bucket_size elements in the model's 16-bit dtype at
    // the first backward hook (two with overlap_comm) and releases it at the step (stage_1_and_2.py); ZeRO-3 makes its
    // `__ipg_bucket_flat_buffer` once at init (stage3.py). LLaMA-Factory's ds_z2: 5e8 elements; ds_z3: "auto",
    // hidden² (transformers HfTrainerDeepSpeedConfig), beside the prefetch bucket ("auto": 0.9 × hidden²).
    const h2 = t.hiddenSize ** 2;
    if (plan.sharding === "zero3") {
      // (its prefetch bucket is a quota per module hook, not an allocation: the prefetched parameters are gathered)
      const ipg = as.zero3ReduceBucketElements > 0 ? as.zero3ReduceBucketElements : h2;
      buffers += ipg * a;
    } else {
      const elements = as.zero12ReduceBucketElements > 0 ? as.zero12ReduceBucketElements : h2;
      zeroBucket = elements * a * (as.zeroOverlapComm ? 2 : 1);
      buffers += zeroBucket;
    }
  }
  // The step's temporaries: torch's foreach AdamW materialises one parameter-sized tensor. DeepSpeed flattens its
  // partition's 16-bit gradients into a new tensor and converts that to the fp32 .grad of its master copy
  // (`self.flatten(self.averaged_gradients[i]).to(fp32)`: stage_1_and_2.py step per parameter group, stage3.py
  // _prepare_fp32_grad_for_sub_group per sub_group_size = 1e9 parameters), so both are live at once: 2 + 4 B per
  // parameter (4 B in fp32 training, where `.to` returns the flattened tensor itself). Its fused Adam adds none; the
  // Trainer's optimizer, which DeepSpeed steps where its config names none (LLaMA-Factory's configs), is torch's
  // foreach AdamW before torch 2.8: its temporary of the partition comes beside the fp32 gradient, while the 16-bit
  // gradients stay in the one buffer they were reduced into (ZeRO-1/2's `grads_in_partition`, of which every
  // parameter group's gradients are views; ZeRO-3's gradient buffer, allocated once): 4 + 4 B per parameter.
  // BAdam converts the active layer's 16-bit gradients to fp32 ones for its fp32 copy (`_grad_to_hp`), then its base
  // optimizer steps that copy (foreach AdamW's temporary); layer-wise GaLore/APOLLO step inside backward.
  const stepKind = optimizerStepKind(plan.optimizer, as.defaultOptimFused);
  /** a foreach step's temporaries, as copies of the trained parameters */
  const foreachCopies =
    stepKind === "foreach" ? foreachStepCopies(plan.optimizer) * as.optimizerStepTempCopies : 0;
  /** DeepSpeed's flat step tensors are made per parameter group (ZeRO-1/2) or per sub_group (ZeRO-3) */
  const dsFlatElements = deepspeed
    ? Math.min(
        trainable.trainable / split.optimizer,
        plan.sharding === "zero3" ? ZERO3_SUB_GROUP_ELEMENTS : Number.POSITIVE_INFINITY,
      )
    : 0;
  /**
   * bytes per element of DeepSpeed's step tensors, in the order it makes them: the flattened 16-bit gradients
   * (0 in fp32 training), their fp32 copy, then the optimizer's own temporaries once the flattened one is freed
   * (Adafactor steps the flat partition as one parameter: the update and its negation in fp32)
   */
  const dsFlatBytes: readonly [number, number, number] = [
    fp32 ? 0 : a,
    4,
    stepKind === "per-parameter" ? 8 : 4 * foreachCopies,
  ];
  const stepTemp =
    plan.offload !== "none" || layerwise
      ? 0
      : projection.params > 0
        ? projection.stepTempBytes
        : adamMini && !deepspeed
          ? // parameter by parameter: a 16-bit gradient's fp32 copy, and two fp32 temporaries (v.sqrt() and its
            // quotient for the embeddings; the update and its negation elsewhere)
            largestTrainableParam(plan, groups, params) *
            (((isLora ? adapterBytes : fullBytes) === 4 ? 0 : 4) + 8)
          : muon && !deepspeed
            ? muonStepBytes(plan, groups, params, isLora ? adapterBytes : fullBytes, fusedExperts)
            : badam && !deepspeed
              ? // the fp32 gradients replace the 16-bit ones one by one (`.float()` of an fp32 one is itself)
                trainable.fullModules * ((m === 4 ? 0 : 4 - m) + 4 * foreachCopies)
              : deepspeed
                ? dsFlatElements * Math.max(dsFlatBytes[0] + dsFlatBytes[1], dsFlatBytes[1] + dsFlatBytes[2])
                : stepKind === "foreach"
                  ? (trainableCopy * foreachCopies) / split.optimizer
                  : stepKind === "per-parameter"
                    ? // Adafactor: the update and its negation in fp32, and fp32 copies of a 16-bit gradient and weight
                      largestTrainableParam(plan, groups, params) *
                      (((isLora ? adapterBytes : fullBytes) === 4 ? 0 : 8) + 8)
                    : 0;

  const fullGradients = stepGradients;
  const states = weights + gradients + optimizer;
  let backward = states + activations + logits + buffers;
  // Parameter gradients are made during backward, layer by layer, as the saved activations are freed. The step
  // sets them to None (the HF Trainer's model.zero_grad(), torch's set_to_none default), so without gradient
  // accumulation none exists at the loss's peak, when backward begins; the other end of backward holds every
  // gradient and the first layer's working set. Each layer adds its gradients and frees its activations, so the
  // peak of backward is at one of the two ends. With accumulation the earlier micro-batches' gradients are there
  // from the start. ZeRO-1/2 alike: its partition of 16-bit gradients and its bucket are made by the backward's
  // hooks and dropped by the step (stage_1_and_2.py `_release_ipg_buffers`, `averaged_gradients[i] = None`);
  // ZeRO-3 allocates its gradient partitions once (`grad_partitions_flat_buffer`): counted whole.
  if (gradientsMadeInBackward(plan) && gradients > 0) {
    const first = perLayer[0] ?? 0;
    const endActivations =
      (plan.gradientCheckpointing
        ? tokens * (ctx.rb * t.hiddenSize + maxLayer + working) +
          vision.checkpointed +
          maskElements +
          maskPerLayer
        : tokens * (first + working) + vision.saved + maskElements + maskPerLayer) + gptqLayer;
    const endBuffers = buffers - autocastCache;
    const start = weights + optimizer + activations + logits + buffers - zeroBucket;
    const end = states + endActivations + endBuffers + heldLogits;
    if (end >= start) {
      activations = endActivations;
      logits = heldLogits;
      buffers = endBuffers;
      backward = end;
    } else {
      gradients = 0;
      buffers -= zeroBucket;
      backward = start;
    }
  }
  // ZeRO-3 away from the loss: the forward's end holds what it saved and the prefetch up to lm_head, no logits
  const gatheredAtLoss = gathered;
  if (gatheredAway > gathered) {
    const away = states - gathered + gatheredAway + forwardEndActivations + buffers + heldLogits;
    if (away > backward) {
      weights += gatheredAway - gathered;
      gathered = gatheredAway;
      activations = forwardEndActivations;
      logits = heldLogits;
      backward = away;
    }
  }
  const ddpBuckets = plan.sharding === "none" && split.world > 1 ? trainableCopy : 0;
  // the step works on the shards: FSDP has resharded every unit and DeepSpeed released its gathered parameters
  // a loop that holds the model output keeps its logits through the step too (fsdp_qlora drops it after)
  const step = states - gatheredAtLoss + stepTemp + ddpBuckets + heldLogits;
  /** what forward and backward leave reserved: their peak and its fragmentation */
  const backwardReserved =
    backward +
    (activations + logits + buffers - ddpBuckets + (plan.sharding === "zero3" ? gathered : 0)) *
      as.fragmentationOfTransient;
  const backwardActivations = Math.max(activations, forwardEndActivations);
  const phase = step > backward ? "optimizer-step" : "backward";
  if (phase === "optimizer-step") {
    gradients = fullGradients;
    weights -= gathered;
    activations = 0;
    logits = heldLogits;
    buffers = stepTemp + ddpBuckets;
  }
  // DDP's gradient buckets are allocated once and kept: they do not churn through the allocator. ZeRO-3's gathered
  // parameters do: each is all-gathered into a new tensor and freed again module by module (FSDP's units have their
  // own pool model below)
  const churningGathered = plan.sharding === "zero3" && phase === "backward" ? gathered : 0;
  const transient = activations + logits + buffers - ddpBuckets + churningGathered;
  let fragmentation = transient * as.fragmentationOfTransient;
  const fsdpUnits =
    plan.sharding === "fsdp"
      ? {
          layerBytes: layerParams * (isFull ? fullBytes : layerBytes),
          layers: t.numLayers,
          rootBytes: (params.embedTokens + params.lmHead + params.finalNorm) * (isFull ? fullBytes : a),
        }
      : null;
  const wrapPeakBytes = fsdpUnits
    ? fsdpWrapPeakBytes(
        offloadParams ? quantConstants : shardsBytes,
        fsdpUnits.layerBytes,
        fsdpUnits.rootBytes,
      )
    : 0;
  const runtime = as.cudaContextBytes + as.cudaKernelBytes + as.ncclBytes * ncclCommunicators(plan);
  let releasableBytes = 0;
  const releasableSources: ReleasableSource[] = [];
  if (plan.sharding === "fsdp") {
    const pool = fsdpPoolBytes({
      plan,
      as,
      allocated: weights + gradients + optimizer + activations + logits + buffers,
      fragmentation,
      gathered,
      stepPhase: phase === "optimizer-step",
      sharded: split.weights > 1,
      afterWrap: as.fsdpInitCacheKept ? wrapPeakBytes : 0,
      layerGatheredBytes: layerParams * layerBytes,
    });
    fragmentation += pool.reservedOnly;
    // the wrap's cache fills what the card leaves the step, never more (the allocator frees it before failing)
    const need = weights + gradients + optimizer + activations + logits + buffers + fragmentation + runtime;
    releasableBytes = Math.min(pool.cacheFloor, Math.max(0, usableCapacityBytes(plan) - need));
    fragmentation += releasableBytes;
    if (releasableBytes > 0) releasableSources.push("fsdp-wrap-level");
  }
  // ZeRO-3 with overlap_comm gathers on its own stream (parameter_offload.py: a Stream when overlap_comm;
  // partitioned_param_coordinator.py gathers inside `get_accelerator().stream(self.__allgather_stream)`), and the
  // caching allocator pools blocks per stream: that pool keeps its high-water mark, the bound plus lm_head or the
  // embedding away from the loss, while the loss holds less gathered. The difference is cache, freed (all streams)
  // before the allocator fails, so it fills what the card leaves, never more.
  if (plan.sharding === "zero3" && as.zeroOverlapComm && phase === "backward" && gatheredAway > gathered) {
    const pool = (gatheredAway - gathered) * (1 + as.fragmentationOfTransient);
    const need = weights + gradients + optimizer + activations + logits + buffers + fragmentation + runtime;
    releasableBytes = Math.min(pool, Math.max(0, usableCapacityBytes(plan) - need));
    fragmentation += releasableBytes;
    if (releasableBytes > 0) releasableSources.push("zero3-gather-pool");
  }
  // The allocator's reserve only grows (nothing empties its cache during training), and DeepSpeed's step makes
  // tensors of its whole flat partition, larger than any block forward and backward freed (their largest are
  // logits): with PyTorch's default allocator those take segments of their own on top of what backward reserved.
  // That is cache once the step is done, freed before the allocator fails. Expandable segments, which
  // llamafactory-cli's torchrun path sets, let the step reuse what backward freed.
  if (
    deepspeed &&
    plan.offload === "none" &&
    !layerwise &&
    projection.params === 0 &&
    !expandableSegmentsOn(plan, as)
  ) {
    const events: AllocatorEvent[] = [
      { alloc: dsFlatElements * dsFlatBytes[0] },
      { alloc: dsFlatElements * dsFlatBytes[1] },
      { free: dsFlatElements * dsFlatBytes[0] },
      { alloc: dsFlatElements * dsFlatBytes[2] },
    ];
    const cached = backwardCachedBlocks({
      logitsBytes: liger ? 0 : logitsPeak,
      logitsElements: tokens * t.vocabSize,
      upcast: logitsUpcast,
      a,
      activationBytes: backwardActivations,
      largestActivationBytes: tokens * Math.max(a * mlpWidth, ctx.rb * t.hiddenSize),
      zeroBucketBytes: zeroBucket,
      zeroBuckets: as.zeroOverlapComm ? 2 : 1,
    });
    // ZeRO-3's all-gather stream keeps its pool apart (the allocator caches blocks per stream): the step, on the
    // default stream, cannot reuse it
    const floor = backwardReserved + releasableBytes + newSegmentBytes(cached, events);
    const reserved = weights + gradients + optimizer + activations + logits + buffers + fragmentation;
    const room = Math.max(0, usableCapacityBytes(plan) - reserved - runtime);
    const beyond = Math.min(Math.max(0, floor - reserved), room);
    fragmentation += beyond;
    releasableBytes += beyond;
    if (beyond > 0) releasableSources.push("deepspeed-step-segments");
  }
  const rounded = roundBreakdown({
    weights,
    gradients,
    optimizer,
    activations,
    logits,
    buffers,
    fragmentation,
    runtime,
  });
  // A paged optimizer's managed pages stay on the GPU where the card has room beside the allocator's pool (nvidia-smi
  // shows them there), and the driver evicts them to host memory when it has not: counted up to the usable capacity
  // (from the rounded parts, so that a plan whose pages fill the card lands on its capacity, never a byte over)
  const pagedBytes = Math.round(pagedOptimizerBytes);
  const pagedResidentBytes = Math.min(
    pagedBytes,
    Math.max(0, usableCapacityBytes(plan) - Object.values(rounded).reduce((x, y) => x + y, 0)),
  );
  const breakdown = { ...rounded, runtime: rounded.runtime + pagedResidentBytes };
  const allocatedBytes =
    breakdown.weights +
    breakdown.gradients +
    breakdown.optimizer +
    breakdown.activations +
    breakdown.logits +
    breakdown.buffers;
  const reservedBytes = allocatedBytes + breakdown.fragmentation;
  return {
    breakdown,
    allocatedBytes,
    reservedBytes,
    deviceBytes: reservedBytes + breakdown.runtime,
    phase,
    tokensPerMicroBatch: tokens,
    wrapPeakBytes: Math.round(wrapPeakBytes),
    releasableBytes: Math.min(Math.round(releasableBytes), breakdown.fragmentation),
    releasableSources,
    pagedOptimizerBytes: pagedBytes,
    pagedResidentBytes,
    fsdpUnits,
  };
}

/** Usable capacity after the plan's headroom. */
export function usableCapacityBytes(plan: Plan): number {
  return Math.floor(plan.gpu.capacityBytes * (1 - plan.headroom));
}

/** Cache the allocator frees before it fails, counted in `fragmentation` up to the usable capacity. */
export type ReleasableSource = "fsdp-wrap-level" | "zero3-gather-pool" | "deepspeed-step-segments";

/**
 * Whether the run's allocator has expandable segments: set by the launcher for runs through torchrun (several
 * GPUs, or DeepSpeed) or accelerate (FSDP), unless the `expandableSegments` assumption says it is not.
 */
export function expandableSegmentsOn(plan: Plan, as: MemoryAssumptions): boolean {
  return as.expandableSegments && (plan.gpus * plan.nodes > 1 || plan.sharding !== "none");
}

/** One request to the caching allocator: a tensor made (`alloc`) or freed (`free`, naming an earlier alloc). */
export type AllocatorEvent = { readonly alloc: number } | { readonly free: number };

/**
 * Bytes of new segments the caching allocator reserves for `events` when its cache holds free blocks of the
 * sizes in `cachedBlocks`. PyTorch's allocator serves a request from the smallest cached block at least as large
 * (splitting it), and blocks of different segments never merge, so a request larger than every cached block
 * gets a segment of its own (c10/cuda/CUDACachingAllocator.cpp: get_free_block, then alloc_block). A freed
 * tensor's block merges back into the free part of its segment. Requests are rounded as the allocator rounds
 * large ones (2 MiB).
 */
export function newSegmentBytes(cachedBlocks: readonly number[], events: readonly AllocatorEvent[]): number {
  const round = (n: number) => Math.ceil(n / ALLOCATOR_LARGE_ROUND_BYTES) * ALLOCATOR_LARGE_ROUND_BYTES;
  /** each segment's free bytes, taken as one block */
  const segments = cachedBlocks.filter((b) => b > 0).map((b) => ({ free: round(b) }));
  const live: { size: number; segment: { free: number } }[] = [];
  let added = 0;
  for (const e of events) {
    if ("alloc" in e) {
      const size = round(e.alloc);
      if (size === 0) continue;
      let best: { free: number } | undefined;
      for (const seg of segments) {
        if (seg.free >= size && (best === undefined || seg.free < best.free)) best = seg;
      }
      if (best === undefined) {
        best = { free: size };
        segments.push(best);
        added += size;
      }
      best.free -= size;
      live.push({ size, segment: best });
    } else {
      const size = round(e.free);
      const at = live.findLastIndex((l) => l.size === size);
      const freed = live[at];
      if (freed === undefined) continue;
      live.splice(at, 1);
      freed.segment.free += size;
    }
  }
  return added;
}

/**
 * The blocks forward and backward leave in the allocator's cache: the loss's logits (one fp32
 * tensor of every logit per 4 B of its per-token bytes where it upcasts, the 16-bit ones otherwise), the
 * activations in blocks of the largest per-layer tensor, and ZeRO-1/2's gradient buckets.
 */
function backwardCachedBlocks(o: {
  logitsBytes: number;
  logitsElements: number;
  upcast: boolean;
  a: number;
  activationBytes: number;
  largestActivationBytes: number;
  zeroBucketBytes: number;
  zeroBuckets: number;
}): number[] {
  const blocks: number[] = [];
  const repeat = (size: number, count: number) => {
    for (let i = 0; i < count && size > 0; i++) blocks.push(size);
  };
  if (o.logitsBytes > 0 && o.logitsElements > 0) {
    const wide = o.upcast ? 4 : o.a;
    // a 16-bit model's upcast loss keeps its 16-bit logits too
    const narrow = o.upcast && o.a < 4 ? o.a * o.logitsElements : 0;
    repeat(wide * o.logitsElements, Math.floor((o.logitsBytes - narrow) / (wide * o.logitsElements)));
    if (narrow > 0 && o.logitsBytes >= narrow) blocks.push(narrow);
  }
  if (o.largestActivationBytes > 0) {
    repeat(o.largestActivationBytes, Math.floor(o.activationBytes / o.largestActivationBytes));
  }
  repeat(o.zeroBucketBytes / o.zeroBuckets, o.zeroBucketBytes > 0 ? o.zeroBuckets : 0);
  return blocks;
}

/**
 * sync_module_states broadcasts a unit's states in coalesced buckets of 250 MiB (torch/distributed/fsdp/_init_utils.py
 * PARAM_BROADCAST_BUCKET_SIZE), at most two in flight (c10d comm.cpp broadcast_coalesced, max_in_flight = 2).
 */
const FSDP_BROADCAST_IN_FLIGHT_BYTES = 2 * 250 * 1024 ** 2;

/** The caching allocator rounds a large request (over 10 MiB) up to a multiple of 2 MiB (kRoundLarge). */
const ALLOCATOR_LARGE_ROUND_BYTES = 2 * 1024 ** 2;

/**
 * FSDP1's wrap: each unit is moved to the GPU, broadcast from rank 0 (sync_module_states) and flattened into a new
 * tensor before it is sharded; the last unit, the root (embeddings, final norm, lm_head), is wrapped on top of
 * every other shard. The peak: the shards + the largest unit twice + its broadcast buckets.
 */
function fsdpWrapPeakBytes(shardsBytes: number, layerBytes: number, rootBytes: number): number {
  const unit = Math.max(layerBytes, rootBytes);
  return shardsBytes + 2 * unit + Math.min(unit, FSDP_BROADCAST_IN_FLIGHT_BYTES);
}

/**
 * Memory FSDP1 keeps reserved beyond the allocator's ordinary fragmentation. The caching allocator pools blocks per
 * stream, and FSDP1 all-gathers on its own unshard stream:
 * - each gathered unit is freed with `record_stream` on the compute stream (flat_param.py
 *   `_free_unsharded_flat_param`), so its block returns to the unshard stream's pool only once the compute stream has
 *   passed the free. `limit_all_gathers` (accelerate's default) lets `_max_num_inflight_all_gathers = 2` freed units
 *   queue and waits for the older before the next all-gather: `fsdpPendingFreeUnits` freed layers stay reserved
 *   beside the gathered ones. From the first forward on, that pool (gathered + pending) is reserved for good.
 * - wrapping leaves its transient in the compute stream's pool (fsdpWrapPeakBytes). Nothing empties the cache
 *   before training (accelerate, the HF Trainer, fsdp_qlora), so the compute stream's pool never drops below that
 *   level (`afterWrap`, 0 when the cache is assumed emptied). That floor is cache only: the allocator releases it
 *   before it fails (TrainMemory.releasableBytes).
 * Returns the bytes to add to the fragmentation term: the wrap's cache floor and the unshard pool's reserved-only
 * blocks.
 */
function fsdpPoolBytes(o: {
  plan: Plan;
  as: MemoryAssumptions;
  allocated: number;
  fragmentation: number;
  gathered: number;
  stepPhase: boolean;
  /** whether units are split over several ranks (FSDP runs NO_SHARD on a world of one) */
  sharded: boolean;
  afterWrap: number;
  layerGatheredBytes: number;
}): { cacheFloor: number; reservedOnly: number } {
  const resharded =
    o.sharded && (o.plan.fsdpStrategy === "full_shard" || o.plan.fsdpStrategy === "hybrid_shard");
  const gatheredNow = o.stepPhase ? 0 : o.gathered;
  // the unshard stream's pool beyond what is allocated now: the freed units not yet returned, and at the step
  // (every unit resharded) the blocks the gathered units took
  const pending = resharded ? o.as.fsdpPendingFreeUnits * o.layerGatheredBytes : 0;
  const poolReservedOnly = pending + (resharded && o.stepPhase ? o.gathered : 0);
  const computePool = o.allocated - gatheredNow + o.fragmentation;
  return { cacheFloor: Math.max(0, o.afterWrap - computePool), reservedOnly: poolReservedOnly };
}

/**
 * Whether an FSDP1 plan accumulates unsharded gradients between reductions: gradient accumulation under the HF
 * Trainer without sync_each_batch (FSDP2 has no `no_sync` for accelerate to enter).
 */
export function fsdpAccumulatesUnsharded(plan: Plan): boolean {
  return (
    plan.sharding === "fsdp" && plan.fsdpStrategy !== "no_shard" && plan.gradAccum > 1 && !plan.syncEachBatch
  );
}

/**
 * Whether no parameter gradient is on the GPU when backward begins: none is left from an earlier micro-batch
 * (grad-accum 1), ZeRO-3 does not hold its gradient partitions for good, and they are not offloaded to the CPU.
 */
export function gradientsMadeInBackward(plan: Plan): boolean {
  return plan.gradAccum === 1 && plan.sharding !== "zero3" && plan.offload !== "params";
}

/**
 * NCCL communicators each rank holds: none on one GPU; the default process group (DDP, FSDP, and the Trainer's
 * own barriers and gathers); DeepSpeed adds a clone of the world group (deepspeed/utils/groups.py
 * `_clone_world_group`); FSDP's hybrid sharding across nodes adds its intra-node and inter-node groups. Ring and
 * tree buffers are per channel and peer connection, not per rank, so the count does not grow with the world size.
 */
export function ncclCommunicators(plan: Plan): number {
  if (plan.gpus * plan.nodes === 1) return 0;
  const deepspeed = isDeepSpeed(plan.sharding);
  const hybrid = plan.fsdpStrategy === "hybrid_shard" && plan.nodes > 1;
  return 1 + (deepspeed ? 1 : 0) + (hybrid ? 2 : 0);
}

/** What freeze tuning trains inside a chosen layer; every other method trains whole layers or none. */
function freezeSelection(plan: Plan): LayerTraining {
  const modules = plan.freezeTrainableModules;
  if (plan.method !== "freeze" || modules === null || modules === "all") return ALL;
  // a norm's name can hold its neighbour's ("post_attention_layernorm"): norms are matched first
  const norms = modules.filter((m) => /norm|^ln_/.test(m)); // Qwen-1 names its norms ln_1 and ln_2
  const others = modules.filter((m) => !/norm|^ln_/.test(m));
  return {
    norms: norms.length > 0,
    attention: others.some((m) => /attn|attention/.test(m)),
    mlp: others.some((m) => /mlp|feed_forward|block_sparse_moe/.test(m)),
  };
}

function roundBreakdown(b: MemoryBreakdown): MemoryBreakdown {
  return {
    weights: Math.round(b.weights),
    gradients: Math.round(b.gradients),
    optimizer: Math.round(b.optimizer),
    activations: Math.round(b.activations),
    logits: Math.round(b.logits),
    buffers: Math.round(b.buffers),
    fragmentation: Math.round(b.fragmentation),
    runtime: Math.round(b.runtime),
  };
}

/** One image (or video frame pair) of at most `pixels` through a Qwen2-VL-family tower: pixels / patch² patches, merged
 * merge² to a token. */
function qwenFrame(
  v: { readonly patchSize: number; readonly spatialMergeSize: number },
  pixels: number,
): { patches: number; tokens: number } {
  const patches = Math.floor(pixels / v.patchSize ** 2);
  return { patches, tokens: Math.floor(patches / v.spatialMergeSize ** 2) };
}

/** Patches one image becomes in the vision tower, and the tokens it becomes in the language model. */
export function imagePatches(plan: Plan): { patches: number; tokens: number } {
  const v = plan.model.architecture.vision;
  if (!v || plan.imagesPerSample === 0) return { patches: 0, tokens: 0 };
  switch (v.kind) {
    case "qwen2_vl":
    case "qwen2_5_vl":
    case "qwen3_vl":
      return qwenFrame(v, plan.imageMaxPixels);
    case "siglip":
      return { patches: (v.imageSize / v.patchSize) ** 2, tokens: v.mmTokensPerImage };
    case "mllama": {
      const perTile = (v.imageSize / v.patchSize) ** 2 + 1;
      return { patches: perTile * v.maxNumTiles, tokens: 0 }; // cross-attention: no image tokens in the text
    }
    case "minicpmv": {
      const pieces = 1 + minicpmvSlices(plan.imageMaxPixels, v.sliceResolution, v.maxSliceNums);
      // each piece is resized to about sliceResolution² pixels; its queries sit between <image>/<slice> and its end token
      return { patches: pieces * (v.sliceResolution / v.patchSize) ** 2, tokens: pieces * (v.queryNum + 2) };
    }
  }
}

/**
 * Patches one video puts through the vision tower and tokens it puts in the text sequence, with videos in the plan:
 * LLaMA-Factory's Qwen2-VL plugin samples at most video_maxlen frames (the plan's videoFrames), each resized to at
 * most video_max_pixels (mm_plugin.py `_regularize_videos`); the tower's 3-D patch embedding takes them in pairs
 * (temporal_patch_size 2; an odd count is padded to even), so a video is ⌈frames / 2⌉ frame-pairs of
 * pixels / patch² patches, merged spatially as an image's are. The text around them is counted by
 * `mediaSequenceTokens`.
 */
export function videoPatches(plan: Plan): { patches: number; tokens: number } {
  const v = plan.model.architecture.vision;
  if (!v || plan.videosPerSample === 0) return { patches: 0, tokens: 0 };
  switch (v.kind) {
    case "qwen2_vl":
    case "qwen2_5_vl":
    case "qwen3_vl": {
      const pair = qwenFrame(v, plan.videoMaxPixels);
      const pairs = Math.ceil(plan.videoFrames / 2);
      return { patches: pairs * pair.patches, tokens: pairs * pair.tokens };
    }
    default:
      return { patches: 0, tokens: 0 };
  }
}

/** Image and video tokens of one sample, in the text sequence (the merged features, one token each). */
export function visualTokens(plan: Plan): number {
  return imagePatches(plan).tokens * plan.imagesPerSample + videoPatches(plan).tokens * plan.videosPerSample;
}

/** The video_fps LLaMA-Factory samples clips at, and gives a list of frames (data_args.py: 2.0). */
const VIDEO_FPS = 2;

/**
 * The tokens one sample's images and videos take in the sequence, with the text the Qwen2-VL family's plugins put
 * around them (mm_plugin.py): `<|vision_start|>` and `<|vision_end|>` around each image and each video; Qwen3-VL
 * writes every frame pair of a video as `<{t:.1f} seconds><|vision_start|>…<|vision_end|>`, t its middle time at
 * video_fps (the tokenizer takes the timestamp's digits one by one: `<`, the digits, `.`, a digit, ` seconds`, `>`).
 * What cutoff_len must hold of a sample beside its text.
 */
export function mediaSequenceTokens(plan: Plan): number {
  // the Qwen2-VL family's plugins, the ones that frame their media with markers, are the ones that take videos
  if (!takesVideos(plan.model.architecture)) return visualTokens(plan);
  let videoText = 2;
  if (plan.model.architecture.vision?.kind === "qwen3_vl") {
    videoText = 0;
    const pairs = Math.ceil(plan.videoFrames / 2);
    for (let g = 0; g < pairs; g++) {
      const seconds = Math.floor((4 * g + 1) / (2 * VIDEO_FPS)); // frames 2g and 2g + 1, their mean time
      videoText += 5 + String(seconds).length + 2;
    }
  }
  return visualTokens(plan) + 2 * plan.imagesPerSample + videoText * plan.videosPerSample;
}

/**
 * The crops MiniCPM-V's image processor cuts a square image of `pixels` into (image_processing_minicpmv.py
 * `get_sliced_grid`): none up to one slice's area; else the grid among multiple − 1, multiple and multiple + 1
 * crops (multiple = ⌈pixels / resolution²⌉, at most maxSliceNums) whose shape is nearest the image's.
 */
export function minicpmvSlices(pixels: number, resolution: number, maxSliceNums: number): number {
  const multiple = Math.min(Math.ceil(pixels / resolution ** 2), maxSliceNums);
  if (multiple <= 1) return 0;
  let best = 0;
  let bestError = Number.POSITIVE_INFINITY;
  for (const n of [multiple - 1, multiple, multiple + 1]) {
    if (n === 1 || n > maxSliceNums) continue;
    for (let m = 1; m <= n; m++) {
      if (n % m !== 0) continue;
      const error = Math.abs(Math.log(m / (n / m))); // a square image: log aspect ratio 0
      if (error < bestError) {
        best = n;
        bestError = error;
      }
    }
  }
  return best;
}

/** The vision tower's memory: saved activations when it is trained, else one block's forward transient. */
function visionActivationBytes(
  plan: Plan,
  a: number,
): { saved: number; checkpointed: number; transient: number } {
  const v = plan.model.architecture.vision;
  // images and videos go through the tower in two calls (the model's get_image_features, then get_video_features):
  // what they save adds up; a forward's transient, and a checkpointed layer's recompute, is the larger call's
  const nImages = imagePatches(plan).patches * plan.imagesPerSample * plan.microBatch;
  const nVideos = videoPatches(plan).patches * plan.videosPerSample * plan.microBatch;
  const n = nImages + nVideos;
  if (!v || n === 0) return { saved: 0, checkpointed: 0, transient: 0 };
  const call = Math.max(nImages, nVideos);
  const width = v.kind === "qwen2_vl" ? v.embedDim : v.hiddenSize;
  const mlp = v.kind === "qwen2_vl" ? v.mlpHiddenSize : v.intermediateSize;
  const depth = visionDepth(v);
  // one ViT block: two norms (fp32), q/k/v/out, the MLP hidden (twice for the activation)
  const block = 2 * 4 * width + a * 4 * width + 2 * a * mlp + 2 * a * width;
  // MiniCPM-V's NaViT SigLIP (remote code) runs eager attention unless FlashAttention-2 is asked for: per head, the
  // scores (16-bit), their fp32 softmax, and the probabilities cast back; backward keeps the fp32 softmax and the
  // 16-bit probabilities. Each piece attends over its own patches.
  const eagerVit = v.kind === "minicpmv" && plan.attention !== "fa2";
  const piecePatches = v.kind === "minicpmv" ? (v.sliceResolution / v.patchSize) ** 2 : 0;
  const pieces = eagerVit ? n / piecePatches : 0;
  const scores = eagerVit ? pieces * v.numHeads * piecePatches ** 2 : 0;
  const transient = call * block + scores * (a + 4 + a);
  if (plan.freezeVisionTower) return { saved: 0, checkpointed: 0, transient };
  const savedLayer = n * block + scores * (4 + a);
  const recomputed = call * block + scores * (4 + a);
  return { saved: depth * savedLayer, checkpointed: n * depth * a * width + recomputed, transient: 0 };
}
