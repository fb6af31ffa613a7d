import { staysQuantized } from "../catalog/config-json.ts";
import { TEMPLATES } from "../catalog/data/llamafactory.ts";
import type { Issue } from "../errors.ts";
import { type MemoryAssumptions, withDefaults } from "../memory/assumptions.ts";
import { loadedWeightBytes } from "../memory/load.ts";
import {
  bitsandbytesOptimizer,
  fsdpAccumulatesUnsharded,
  imagePatches,
  isPagedOptimizer,
  mediaSequenceTokens,
  videoPatches,
} from "../memory/train.ts";
import { countParams } from "../model/params.ts";
import { LIGER_UNSUPPORTED } from "../model/support.ts";
import { countTrainable } from "../model/trainable.ts";
import {
  anyMethodOptimizer,
  isDeepSpeed,
  isFsdp,
  LOW_MEMORY_OPTIMIZER_NAMES,
  type Plan,
  projectsGradients,
} from "../schema/plan.ts";

/**
 * A combination LLaMA-Factory, DeepSpeed, accelerate or the GPU stops the run for (severity error) or that
 * silently does something else than asked (warning). The issue's `path` is the first of `fields`, so the
 * same combination always reports the same path.
 */
export interface PlanRule {
  readonly code: string;
  readonly fields: readonly [keyof Plan, ...(keyof Plan)[]];
  readonly severity: Issue["severity"];
  /** `as`: the memory-model assumptions in force (defaults filled), for rules about a modelled mechanism */
  readonly applies: (plan: Plan, as: MemoryAssumptions) => boolean;
  readonly message: (plan: Plan, as: MemoryAssumptions) => string;
  readonly hint: (plan: Plan) => string;
  /** where the behaviour comes from */
  readonly source: string;
}

const SHARDED_LOADING = new Set(["zero3", "fsdp", "fsdp2"]);

/** The plan's checkpoint is stored quantized in a format LLaMA-Factory keeps quantized (not fp8 or mxfp4). */
const storedQuantized = (p: Plan): boolean => staysQuantized(p.model.quantization);
/** FSDP_UNSHARDED_ACCUMULATION speaks from 1 GiB of unsharded gradients on (LoRA's adapters stay well below). */
const UNSHARDED_WARN_BYTES = 1024 ** 3;

/** The gradients FSDP1 holds unsharded between reductions: every trainable parameter in the compute dtype. */
function unshardedGradients(p: Plan): { params: number; bytes: number; dtype: string } {
  const params = countTrainable(p.model.architecture, p).trainable;
  const fp32 = p.precision === "fp32";
  return { params, bytes: params * (fp32 ? 4 : 2), dtype: fp32 ? "fp32" : "16 bits" };
}
/** HF `optim` names that are 32-bit AdamW: what DeepSpeed's CPU Adam computes anyway. */
const ADAMW_32BIT = new Set([
  "adamw_torch",
  "adamw_torch_fused",
  "adamw_hf",
  "adamw_apex_fused",
  "adamw_anyprecision",
  "adamw_torch_xla",
  "adamw_torch_npu_fused",
  "paged_adamw_32bit",
]);

/** `optim` values LLaMA-Factory builds a GaLore optimizer from (train/trainer_utils.py _create_galore_optimizer). */
const GALORE_OPTIMS = new Set([
  "adamw_torch",
  "adamw_bnb_8bit",
  "adamw_8bit",
  "paged_adamw_8bit",
  "adafactor",
]);

function lowMemoryName(p: Plan): string {
  return LOW_MEMORY_OPTIMIZER_NAMES[p.lowMemoryOptimizer ?? "galore"];
}

/** Models whose vision towers name their layers `…layers.N.` as the language model does (BAdam's block pattern). */
const VISION_LAYERS_NAMED_LAYERS = new Set(["gemma3", "mllama", "minicpmv"]);

/**
 * torchrun's and accelerate's distributed mode as transformers' parallel_mode reads it: several processes, or
 * DeepSpeed or FSDP on any number (accelerate's distributed_type is then not NO).
 */
function distributed(p: Plan): boolean {
  return p.gpus * p.nodes > 1 || isDeepSpeed(p.sharding) || isFsdp(p.sharding);
}

const OFFLOAD_REPLACES_SOURCE =
  "accelerate accelerator.py _prepare_deepspeed (DeepSpeedCPUAdam for any client optimizer when offload_optimizer is set and zero_force_ds_cpu_optimizer is on, DeepSpeed's default)";

/** A sample's image tokens with their markers, without its videos. */
const imageSequenceTokens = (p: Plan) => mediaSequenceTokens({ ...p, videosPerSample: 0 });

/** "2 image(s) and 1 video(s)": what a sample carries. */
const mediaList = (p: Plan) =>
  [
    p.imagesPerSample > 0 ? `${p.imagesPerSample} image(s)` : "",
    p.videosPerSample > 0 ? `${p.videosPerSample} video(s)` : "",
  ]
    .filter((x) => x !== "")
    .join(" and ");

/** Every rule tunefit checks, in report order. */
export const PLAN_RULES: readonly PlanRule[] = [
  {
    code: "QLORA_8BIT_SHARDED",
    fields: ["quantBits", "sharding"],
    severity: "error",
    applies: (p) =>
      p.method === "qlora" && p.quantMethod === "bnb" && p.quantBits === 8 && SHARDED_LOADING.has(p.sharding),
    message: (p) =>
      `bitsandbytes 8-bit QLoRA cannot run under ${p.sharding}: only 4-bit works with FSDP or ZeRO-3`,
    hint: () => "Use --quant-bits 4, or --sharding zero2 / none.",
    source: "LLaMA-Factory model/model_utils/quantization.py:197-199",
  },
  {
    code: "PREQUANTIZED_SHARDED",
    fields: ["quantMethod", "sharding"],
    severity: "error",
    // a checkpoint stored quantized in any format LLaMA-Factory does not dequantize on load (it does fp8 and mxfp4)
    applies: (p) =>
      SHARDED_LOADING.has(p.sharding) &&
      ((p.method === "qlora" && p.quantMethod !== "bnb") || storedQuantized(p)),
    message: (p) =>
      `a checkpoint stored quantized (${storedQuantized(p) ? `quant_method ${p.model.quantization?.declared}` : p.quantMethod?.toUpperCase()}) cannot be loaded under ${p.sharding}: LLaMA-Factory stops with "DeepSpeed ZeRO-3 or FSDP is incompatible with PTQ-quantized models."`,
    hint: (p) =>
      storedQuantized(p)
        ? "Use --sharding zero2 / none, or point --model at the 16-bit original (quantized while loading: --method qlora)."
        : "Use --quant-method bnb (quantize on load, 4-bit), or --sharding zero2 / none.",
    source: "LLaMA-Factory model/model_utils/quantization.py:101-105",
  },
  {
    code: "PURE_BF16_ZERO3",
    fields: ["precision", "sharding"],
    severity: "error",
    applies: (p) => p.precision === "pure_bf16" && p.sharding === "zero3",
    message: () => "pure_bf16 is rejected under DeepSpeed ZeRO-3",
    hint: () =>
      "Use --precision bf16 (ZeRO-3 keeps fp32 master weights in its optimizer), or another sharding.",
    source: "LLaMA-Factory hparams/parser.py:503",
  },
  {
    code: "OFFLOAD_WITHOUT_SHARDING",
    fields: ["offload", "sharding"],
    severity: "error",
    applies: (p) => p.offload !== "none" && p.sharding === "none",
    message: (p) => `--offload ${p.offload} needs DeepSpeed ZeRO or FSDP; plain DDP has no CPU offload`,
    hint: (p) =>
      p.offload === "params" ? "Add --sharding zero3 or fsdp." : "Add --sharding zero2 (or zero3).",
    source: "DeepSpeed offload_optimizer / offload_param live in the ZeRO config",
  },
  {
    code: "OFFLOAD_PARAMS_NEEDS_ZERO3",
    fields: ["offload", "sharding"],
    severity: "error",
    applies: (p) => p.offload === "params" && (p.sharding === "zero1" || p.sharding === "zero2"),
    message: (p) =>
      `--offload params needs ZeRO-3: under ${p.sharding} DeepSpeed keeps every parameter on the GPU`,
    hint: () => "Use --sharding zero3 with --offload params, or --offload optimizer.",
    source: "DeepSpeed config docs: offload_param is valid for stage 3 only",
  },
  {
    code: "FSDP_OFFLOAD_ALL_OR_NOTHING",
    fields: ["offload", "sharding"],
    severity: "error",
    applies: (p) => p.offload === "optimizer" && isFsdp(p.sharding),
    message: () =>
      "FSDP cannot offload the optimizer alone: its CPU offload moves parameters, gradients and optimizer",
    hint: () =>
      "Use --offload params with FSDP, or DeepSpeed (--sharding zero2/zero3) for optimizer-only offload.",
    source: "accelerate fsdp_offload_params (torch FSDP CPUOffload)",
  },
  {
    code: "FA2_UNSUPPORTED_GPU",
    fields: ["attention", "gpu"],
    severity: "error",
    applies: (p) => p.attention === "fa2" && !p.gpu.flashAttention2,
    message: (p) =>
      `FlashAttention-2 needs an Ampere or newer GPU; ${p.gpu.name} has compute capability ${p.gpu.computeCapability ?? "unknown"}`,
    hint: () => "Use --attention sdpa (or auto).",
    source: "flash-attn: compute capability >= 8.0",
  },
  {
    code: "BF16_UNSUPPORTED_GPU",
    fields: ["precision", "gpu"],
    severity: "error",
    applies: (p) => (p.precision === "bf16" || p.precision === "pure_bf16") && !p.gpu.bf16,
    message: (p) => `${p.gpu.name} has no bfloat16 support`,
    hint: () => "Use --precision fp16 (or fp32).",
    source: "GPU catalog (bf16 tensor-core support)",
  },
  {
    code: "DORA_PREQUANTIZED",
    fields: ["useDora", "quantMethod"],
    severity: "error",
    applies: (p) => p.useDora === true && p.method === "qlora" && p.quantMethod !== "bnb",
    message: (p) => `DoRA is not compatible with pre-quantized ${p.quantMethod?.toUpperCase()} models`,
    hint: () => "Use --use-dora off, or --quant-method bnb.",
    source: "LLaMA-Factory model/adapter.py:244",
  },
  {
    code: "LAYERWISE_DISTRIBUTED",
    fields: ["lowMemoryLayerwise", "gpus"],
    severity: "error",
    applies: (p) => p.lowMemoryLayerwise === true && distributed(p),
    message: (p) =>
      `LLaMA-Factory stops with "Distributed training does not support layer-wise ${lowMemoryName(p)}." (${p.gpus * p.nodes} GPU(s), sharding ${p.sharding})`,
    hint: () => "Use --low-memory-layerwise off, or train on one GPU without DeepSpeed or FSDP.",
    source: "LLaMA-Factory hparams/parser.py:507-510",
  },
  {
    code: "LAYERWISE_GRAD_ACCUM",
    fields: ["lowMemoryLayerwise", "gradAccum"],
    severity: "error",
    applies: (p) => p.lowMemoryLayerwise === true && p.gradAccum !== 1,
    message: (p) =>
      `LLaMA-Factory stops with "Per-layer ${lowMemoryName(p)} does not support gradient accumulation." (grad-accum ${p.gradAccum}): each parameter steps in its gradient hook`,
    hint: (p) =>
      `Use --grad-accum 1 (and --micro-batch ${p.microBatch * p.gradAccum} for the same batch, if it fits), or --low-memory-layerwise off.`,
    source: "LLaMA-Factory train/trainer_utils.py:251, :338",
  },
  {
    code: "PROJECTED_OPTIMIZER_DEEPSPEED",
    fields: ["lowMemoryOptimizer", "sharding"],
    severity: "error",
    applies: (p) => projectsGradients(p.lowMemoryOptimizer) && isDeepSpeed(p.sharding),
    message: () => `LLaMA-Factory stops with "GaLore and APOLLO are incompatible with DeepSpeed yet."`,
    hint: () => "Use --sharding none (DDP), or --low-memory-optimizer badam with --sharding zero3.",
    source: "LLaMA-Factory hparams/parser.py:519",
  },
  {
    code: "PROJECTED_OPTIMIZER_FSDP",
    fields: ["lowMemoryOptimizer", "sharding"],
    severity: "warning",
    applies: (p) => projectsGradients(p.lowMemoryOptimizer) && isFsdp(p.sharding),
    message: (p) =>
      `${lowMemoryName(p)} under ${p.sharding} projects nothing: the Trainer builds the optimizer after FSDP wraps the model, when FSDP1 shows each weight as a 1-D view of its shard, and ${lowMemoryName(p)} projects only 2-D weights; the figures count full AdamW states (FSDP2's sharded DTensors are untested with it)`,
    hint: () =>
      "Use --sharding none (one GPU, or DDP) for low-rank states, or --low-memory-optimizer badam with --sharding zero3.",
    source:
      "LLaMA-Factory train/trainer_utils.py _create_galore_optimizer (`len(param.shape) > 1`); transformers Trainer (optimizer created after FSDP wrapping); torch FSDP1 use_orig_params sharded views",
  },
  {
    code: "PROJECTED_OPTIMIZER_OPTIM",
    fields: ["optimizer", "lowMemoryOptimizer"],
    severity: "error",
    applies: (p) =>
      (p.lowMemoryOptimizer === "galore" && p.optimizer !== null && !GALORE_OPTIMS.has(p.optimizer)) ||
      (p.lowMemoryOptimizer === "apollo" && p.optimizer !== null && p.optimizer !== "adamw_torch"),
    message: (p) => `LLaMA-Factory stops with "Unknown optim: ${p.optimizer}." for ${lowMemoryName(p)}`,
    hint: (p) =>
      p.lowMemoryOptimizer === "galore"
        ? "Use --optimizer adamw_torch, adamw_8bit, paged_adamw_8bit or adafactor."
        : "Use --optimizer adamw_torch.",
    source: "LLaMA-Factory train/trainer_utils.py:246 (GaLore), :333 (APOLLO)",
  },
  {
    code: "MUON_SHARDED",
    fields: ["lowMemoryOptimizer", "sharding"],
    severity: "warning",
    applies: (p) => p.lowMemoryOptimizer === "muon" && isFsdp(p.sharding),
    message: (p) =>
      `Muon under ${p.sharding} is AdamW: the Trainer builds the optimizer after FSDP wraps the model, when FSDP1 shows each weight as a 1-D view of its shard, and LLaMA-Factory gives every parameter that is not 2-D to AdamW (the figures count AdamW's states; FSDP2's DTensors are untested with it)`,
    hint: () => "Use --sharding none (one GPU, or DDP) for Muon.",
    source: "LLaMA-Factory train/trainer_utils.py _create_muon_optimizer (`param.ndim == 2`)",
  },
  {
    code: "BNB_OPTIMIZER_FSDP2",
    fields: ["optimizer", "sharding"],
    severity: "warning",
    applies: (p) =>
      p.sharding === "fsdp2" &&
      bitsandbytesOptimizer(p.optimizer) &&
      !anyMethodOptimizer(p.lowMemoryOptimizer),
    message: (p) =>
      `${p.optimizer} is a bitsandbytes optimizer, and bitsandbytes' optimizers fail under FSDP2 with an illegal memory access at the step (its kernels are handed FSDP2's DTensor shards; bitsandbytes issue #1633, open)${isPagedOptimizer(p.optimizer) ? "; a paged one also sizes its managed buffers by each parameter's global shape, the whole model's states on every GPU" : ""}`,
    hint: () =>
      "Use --sharding fsdp (FSDP1) or zero2/zero3 with it, or a torch optimizer under FSDP2 (--optimizer adamw_torch_fused).",
    source:
      "bitsandbytes issue #1633 (AdamW8bit + FSDP2: illegal memory access); bitsandbytes functional.py get_paged(*p.shape)",
  },
  {
    code: "BADAM_PAGED_OPTIMIZER",
    fields: ["lowMemoryOptimizer", "optimizer"],
    severity: "warning",
    applies: (p) => p.lowMemoryOptimizer === "badam" && isPagedOptimizer(p.optimizer),
    message: (p) =>
      `BAdam clears its base optimizer's state at every block switch, but ${p.optimizer} never frees a paged buffer (bitsandbytes allocates it with cudaMallocManaged and keeps it in its page manager): every switch leaves the last block's states behind, and the managed memory grows with each switch, through host RAM, for as long as the run lasts`,
    hint: () => "Use a non-paged optimizer with BAdam (--optimizer adamw_8bit or adamw_torch_fused).",
    source:
      "BAdam block_optim.py switch_trainable_params (`self.base_optimizer.state = defaultdict(...)`); bitsandbytes optim/optimizer.py get_state_buffer, functional.py get_paged",
  },
  {
    code: "MUON_DEEPSPEED",
    fields: ["lowMemoryOptimizer", "sharding"],
    severity: "error",
    applies: (p) => p.lowMemoryOptimizer === "muon" && isDeepSpeed(p.sharding) && p.offload === "none",
    message: () =>
      "Muon fails under DeepSpeed at its first step (KeyError 'use_muon'): DeepSpeed hands it its own flattened fp32 partitions, for which LLaMA-Factory's Muon has no state entry",
    hint: () => "Use --sharding none (one GPU, or DDP) for Muon, or another optimizer under DeepSpeed.",
    source:
      'LLaMA-Factory third_party/muon/muon.py step (`self.state[p]["use_muon"]`); LLaMA-Factory issue #8041',
  },
  {
    code: "BADAM_NEEDS_ZERO3",
    fields: ["lowMemoryOptimizer", "sharding"],
    severity: "error",
    applies: (p) => p.lowMemoryOptimizer === "badam" && distributed(p) && p.sharding !== "zero3",
    message: (p) =>
      `LLaMA-Factory stops with "Layer-wise BAdam only supports DeepSpeed ZeRO-3 training." (${p.gpus * p.nodes} GPU(s), sharding ${p.sharding})`,
    hint: (p) =>
      p.gpus * p.nodes > 1
        ? "Use --sharding zero3."
        : "Use --sharding zero3, or --sharding none (one GPU without DeepSpeed or FSDP is not distributed).",
    source: "LLaMA-Factory hparams/parser.py:516",
  },
  {
    code: "BADAM_NO_LAYER_BLOCKS",
    fields: ["lowMemoryOptimizer", "model"],
    severity: "error",
    applies: (p) => p.lowMemoryOptimizer === "badam" && p.model.architecture.modelType === "qwen",
    message: (p) =>
      `BAdam finds no block in ${p.model.id}: it makes one of each parameter prefix with \`layers.N.\`, and Qwen-1 names its layers transformer.h.N, so its block list is empty and its first switch fails (IndexError)`,
    hint: () =>
      "Use another optimizer (--low-memory-optimizer galore, or none), or train adapters (--method lora).",
    source: "badam/block_optim.py infer_param_groups (pattern `.*layers.[^.]*\\.`), switch_trainable_params",
  },
  {
    code: "BADAM_TRAINS_VISION",
    fields: ["lowMemoryOptimizer", "freezeVisionTower"],
    severity: "warning",
    applies: (p) =>
      p.lowMemoryOptimizer === "badam" &&
      p.freezeVisionTower &&
      VISION_LAYERS_NAMED_LAYERS.has(p.model.architecture.modelType),
    message: (p) =>
      `${p.model.id}'s vision layers are named \`…layers.N.\` too, so BAdam makes blocks of them and trains them in turn (it sets requires_grad block by block), whatever freeze_vision_tower says; the figures are for the largest language-model layer`,
    hint: () => "Expect the vision tower to change; train adapters (--method lora) to keep it frozen.",
    source: "badam/block_optim.py infer_param_groups, _switch_trainable_params_single_gpu",
  },
  {
    code: "BADAM_OFFLOAD",
    fields: ["lowMemoryOptimizer", "offload"],
    severity: "error",
    applies: (p) => p.lowMemoryOptimizer === "badam" && isDeepSpeed(p.sharding) && p.offload !== "none",
    message: () =>
      "with the optimizer offloaded, accelerate replaces BAdam's block optimizer by DeepSpeed's CPU Adam: BAdam's step never runs, so the blocks never switch and the first one trains for the whole run",
    hint: () => "Use --offload none with BAdam (its states are one layer's), or another method.",
    source: `${OFFLOAD_REPLACES_SOURCE}; badam/block_optim.py step`,
  },
  {
    code: "PROJECTED_OPTIMIZER_MIXED",
    fields: ["lowMemoryOptimizer", "precision"],
    severity: "warning",
    applies: (p) => projectsGradients(p.lowMemoryOptimizer) && p.precision !== "pure_bf16",
    message: (p) =>
      `${lowMemoryName(p)} in ${p.precision} keeps fp32 weights and gradients (LLaMA-Factory upcasts the trainable parameters): LLaMA-Factory warns "Using GaLore or APOLLO with mixed precision training may significantly increases GPU memory usage."`,
    hint: () => "Use --precision pure_bf16, as LLaMA-Factory's GaLore and APOLLO examples do.",
    source: "LLaMA-Factory hparams/parser.py:569-576",
  },
  {
    code: "IMAGE_PIXELS_BELOW_MIN",
    fields: ["imageMaxPixels"],
    severity: "error",
    applies: (p) => p.model.architecture.vision !== null && p.imageMaxPixels < 32 * 32,
    message: (p) =>
      `image_max_pixels ${p.imageMaxPixels} is below LLaMA-Factory's image_min_pixels (32 × 32 = 1024)`,
    hint: () => "Use --image-max-pixels 1024 or more.",
    source: "LLaMA-Factory hparams/model_args.py:348",
  },
  {
    code: "VIDEO_PIXELS_BELOW_MIN",
    fields: ["videoMaxPixels"],
    severity: "error",
    applies: (p) => p.videosPerSample > 0 && p.videoMaxPixels < 16 * 16,
    message: (p) =>
      `video_max_pixels ${p.videoMaxPixels} is below LLaMA-Factory's video_min_pixels (16 × 16 = 256)`,
    hint: () => "Use --video-max-pixels 256 or more.",
    source: "LLaMA-Factory hparams/model_args.py:351",
  },
  {
    code: "PACKED_MEDIA",
    fields: ["packing", "imagesPerSample", "videosPerSample"],
    severity: "warning",
    applies: (p) => p.packing && p.imagesPerSample + p.videosPerSample > 0,
    message: (p) =>
      `packing puts several samples in one ${p.seqLen}-token sequence, each with its images and videos; the vision tower's memory and time are counted for one sample's (${mediaList(p)}), so they are low by about the samples a sequence holds`,
    hint: () =>
      "Turn packing off (--packing off) to plan what one sample sends through the tower, or raise --images-per-sample or --videos-per-sample to what a packed sequence carries.",
    source:
      "LLaMA-Factory data/processor/supervised.py PackedSupervisedDatasetProcessor (each packed sample keeps its images and videos)",
  },
  {
    code: "LIGER_UNSUPPORTED_MODEL",
    fields: ["liger"],
    severity: "warning",
    applies: (p) => p.liger && LIGER_UNSUPPORTED.has(p.model.architecture.modelType),
    message: (p) =>
      `LLaMA-Factory applies no Liger kernels to ${p.model.architecture.modelType}: --liger on has no effect`,
    hint: () => "Drop --liger; memory is estimated without it.",
    source: "LLaMA-Factory model/model_utils/liger_kernel.py:94",
  },
  {
    code: "GEMMA2_ATTENTION",
    fields: ["attention"],
    severity: "warning",
    applies: (p) =>
      p.model.architecture.modelType === "gemma2" && (p.attention === "auto" || p.attention === "sdpa"),
    message: (p) =>
      p.attention === "auto"
        ? `LLaMA-Factory runs Gemma-2 with FlashAttention-2 when flash-attn is installed, else eager attention (s² memory), never SDPA; the memory shown assumes ${p.gpu.flashAttention2 ? "flash-attn is installed" : "eager attention, as this GPU has no FlashAttention-2"}`
        : "SDPA lacks Gemma-2's attention soft-capping",
    hint: (p) =>
      p.gpu.flashAttention2
        ? "Use --attention fa2 (install flash-attn)."
        : "This GPU has no FlashAttention-2: expect eager attention.",
    source: "LLaMA-Factory model/model_utils/attention.py:50-56",
  },
  {
    code: "QLORA_FULL_LOAD_PER_RANK",
    fields: ["sharding", "method"],
    severity: "warning",
    applies: (p) =>
      p.method === "qlora" &&
      p.quantMethod === "bnb" &&
      (p.sharding === "zero3" || p.sharding === "fsdp2") &&
      p.gpus * p.nodes > 1,
    message: (p) =>
      p.sharding === "zero3"
        ? `transformers skips ZeRO-3's partitioned loading (zero.Init) for bitsandbytes models: every rank loads the whole ${p.quantBits}-bit model before DeepSpeed partitions it`
        : `accelerate's FSDP2 skips RAM-efficient loading for bitsandbytes models: every rank loads the whole ${p.quantBits}-bit model before sharding`,
    hint: () =>
      "The loading figure shows it; --sharding fsdp (FSDP1 with RAM-efficient loading) loads 1/N per rank.",
    source:
      "transformers modeling_utils (zero.Init skipped when quantized); accelerate utils/fsdp_utils.py (FSDP2 + bnb)",
  },
  {
    code: "FSDP2_PEFT_ONE_UNIT",
    fields: ["sharding", "method"],
    severity: "warning",
    applies: (p, as) =>
      as.peftFsdp2WrapsRootOnly &&
      p.sharding === "fsdp2" &&
      (p.method === "lora" || p.method === "qlora") &&
      p.gpus * p.nodes > 1,
    message: (p, as) =>
      `the HF Trainer gives a PEFT model PEFT's auto-wrap policy, which accelerate's FSDP2 does not apply: the whole model is one FSDP2 unit, so every GPU gathers all ${(loadedWeightBytes(p, countParams(p.model.architecture), as) / 1024 ** 3).toFixed(1)} GiB of its weights for forward and again for backward (the memory shown)`,
    hint: () =>
      "Use --sharding fsdp (FSDP1 applies PEFT's policy and wraps each decoder layer) or zero3; with accelerate's fixes, pass --assume peftFsdp2WrapsRootOnly=false.",
    source:
      "transformers integrations/fsdp.py update_fsdp_plugin_peft (Trainer._inner_training_loop); accelerate utils/fsdp_utils.py fsdp2_prepare_auto_wrap_policy (no policy but transformer- or size-based)",
  },
  {
    code: "OFFLOAD_REPLACES_OPTIMIZER",
    fields: ["optimizer", "offload"],
    severity: "warning",
    applies: (p) =>
      p.offload !== "none" &&
      isDeepSpeed(p.sharding) &&
      p.optimizer !== null &&
      !ADAMW_32BIT.has(p.optimizer) &&
      !anyMethodOptimizer(p.lowMemoryOptimizer) &&
      p.lowMemoryOptimizer !== "badam", // BADAM_OFFLOAD
    message: (p) =>
      `with the optimizer offloaded to the CPU, accelerate replaces ${p.optimizer} by DeepSpeed's CPU Adam: AdamW with fp32 states runs, and only the learning rate and weight decay carry over`,
    hint: (p) =>
      `Leave --optimizer out (AdamW is what runs), or keep ${p.optimizer} on the GPU with --offload none (a DeepSpeed config with "zero_force_ds_cpu_optimizer": false hands ${p.optimizer} the CPU partitions instead, which it must support).`,
    source: OFFLOAD_REPLACES_SOURCE,
  },
  {
    code: "OFFLOAD_REPLACES_LOW_MEMORY_OPTIMIZER",
    fields: ["lowMemoryOptimizer", "offload"],
    severity: "warning",
    applies: (p) =>
      p.offload !== "none" && isDeepSpeed(p.sharding) && anyMethodOptimizer(p.lowMemoryOptimizer),
    message: (p) =>
      `with the optimizer offloaded to the CPU, accelerate replaces ${lowMemoryName(p)} by DeepSpeed's CPU Adam: AdamW with fp32 states runs, and only the learning rate and weight decay carry over`,
    hint: (p) =>
      `Leave --low-memory-optimizer out (AdamW is what runs), or keep ${lowMemoryName(p)} on the GPU with --offload none.`,
    source: OFFLOAD_REPLACES_SOURCE,
  },
  {
    code: "FSDP_UNSHARDED_ACCUMULATION",
    fields: ["syncEachBatch", "gradAccum"],
    severity: "warning",
    applies: (p) => fsdpAccumulatesUnsharded(p) && unshardedGradients(p).bytes >= UNSHARDED_WARN_BYTES,
    message: (p) => {
      const g = unshardedGradients(p);
      return `with --grad-accum ${p.gradAccum} the Trainer runs every micro-batch but the last in no_sync, where FSDP1 keeps unsharded gradients: each GPU holds all ${(g.params / 1e9).toFixed(2)} B trainable parameters' gradients in ${g.dtype} (${(g.bytes / 1024 ** 3).toFixed(1)} GiB), not its 1/${p.fsdpStrategy === "hybrid_shard" ? p.gpus : p.gpus * p.nodes} shard`;
    },
    hint: () =>
      "--sync-each-batch on (accelerator_config gradient_accumulation_kwargs.sync_each_batch) keeps them sharded at one reduce-scatter per micro-batch; or raise --micro-batch and lower --grad-accum. The memory shown counts them.",
    source:
      "transformers Trainer training loop (sync_context = accelerator.no_sync unless sync_each_batch); torch FSDP1 _post_backward_hook (returns before the reduce-scatter without _sync_gradients)",
  },
  {
    code: "PREQUANTIZED_CHECKPOINT_EXPECTED",
    fields: ["quantMethod", "model"],
    severity: "warning",
    applies: (p) =>
      p.method === "qlora" && p.quantMethod !== "bnb" && p.model.quantization?.method !== p.quantMethod,
    message: (p) =>
      `--quant-method ${p.quantMethod} trains a checkpoint that is already quantized (its config.json carries a quantization_config), but ${p.model.id}'s has ${p.model.quantization === null ? "none: it is a 16-bit checkpoint" : `quant_method ${p.model.quantization.declared}`}: LLaMA-Factory would load and train it as stored, while the memory shown is for ${p.quantMethod?.toUpperCase()} weights`,
    hint: (p) =>
      `Point --model at a ${p.quantMethod?.toUpperCase()} checkpoint of it (a folder with its config.json), or use --quant-method bnb to quantize while loading.`,
    source:
      "LLaMA-Factory model/model_utils/quantization.py (pre-quantized methods are read from config.quantization_config; quantization_bit applies to bitsandbytes, HQQ and EETQ only)",
  },
  {
    code: "FP8_CHECKPOINT",
    fields: ["model"],
    severity: "warning",
    applies: (p) => p.model.source === "catalog" && p.model.architecture.modelType === "deepseek_v3",
    message: (p) =>
      `${p.model.id}'s hub checkpoint stores its linear weights in FP8 (1 byte each, with fp32 block scales); the memory shown is for the bf16 weights fine-tuning trains`,
    hint: () =>
      "Convert the checkpoint to bf16 first (DeepSeek-V3's inference/fp8_cast_bf16.py) and pass that folder as --model and model_name_or_path.",
    source: "DeepSeek-V3 config.json quantization_config (quant_method fp8, weight_block_size 128×128)",
  },
  {
    code: "SEQ_LEN_BEYOND_CONTEXT",
    fields: ["seqLen"],
    severity: "warning",
    applies: (p) => {
      const max = p.model.architecture.text.maxPositionEmbeddings;
      return max !== null && p.seqLen > max;
    },
    message: (p) =>
      `--seq-len ${p.seqLen} is beyond ${p.model.id}'s ${p.model.architecture.text.maxPositionEmbeddings} positions (max_position_embeddings): the positions past them were never trained, and LLaMA-Factory extends them only when rope_scaling is set`,
    hint: () =>
      "Add rope_scaling (linear, dynamic, yarn or llama3) to the training YAML, or lower --seq-len. The memory is estimated for the length asked.",
    source:
      "LLaMA-Factory model/model_utils/rope.py configure_rope (scales only with model_args.rope_scaling)",
  },
  {
    code: "IMAGE_TOKENS_BEYOND_CUTOFF",
    fields: ["seqLen", "imagesPerSample"],
    severity: "error",
    applies: (p) => imageSequenceTokens(p) > p.seqLen,
    message: (p) =>
      `${p.imagesPerSample} image(s) of ${imagePatches(p).tokens} tokens each (${imageSequenceTokens(p)} tokens with the markers around them) do not fit a ${p.seqLen}-token sample: cutoff_len truncation cuts image tokens, and the model then stops with "Image features and image tokens do not match"`,
    hint: (p) =>
      `Raise --seq-len above ${mediaSequenceTokens(p)}, or lower --image-max-pixels or --images-per-sample.`,
    source:
      "LLaMA-Factory data/mm_plugin.py (one placeholder becomes every image token) and processor truncation to cutoff_len; transformers Qwen2-VL get_placeholder_mask",
  },
  {
    code: "VIDEO_TOKENS_BEYOND_CUTOFF",
    fields: ["seqLen", "videosPerSample", "videoFrames"],
    severity: "error",
    applies: (p) =>
      p.videosPerSample > 0 && imageSequenceTokens(p) <= p.seqLen && mediaSequenceTokens(p) > p.seqLen,
    message: (p) =>
      `${p.videosPerSample} video(s) of ${videoPatches(p).tokens} tokens each (${p.videoFrames} frames at up to ${p.videoMaxPixels} pixels)${p.imagesPerSample > 0 ? ` and ${p.imagesPerSample} image(s)` : ""} make ${mediaSequenceTokens(p)} tokens with the markers around them, more than a ${p.seqLen}-token sample: cutoff_len truncation cuts video tokens, and the model then stops with "Videos features and video tokens do not match"`,
    hint: (p) =>
      `Raise --seq-len above ${mediaSequenceTokens(p)}, or lower --video-frames (video_maxlen), --video-max-pixels or --videos-per-sample${p.imagesPerSample > 0 ? " (or --image-max-pixels, --images-per-sample)" : ""}.`,
    source:
      "LLaMA-Factory data/mm_plugin.py Qwen2VLPlugin (one placeholder becomes every video token) and processor truncation to cutoff_len; transformers Qwen2-VL get_placeholder_mask",
  },
  {
    code: "FP32_NOT_EXPRESSIBLE",
    fields: ["precision"],
    severity: "warning",
    applies: (p) => p.precision === "fp32",
    message: () =>
      "LLaMA-Factory has no fp32 switch: with neither bf16 nor fp16 set it takes the compute dtype from the checkpoint (bf16 > fp16 > fp32), so a bf16 checkpoint still loads and computes in bf16; the memory shown is for fp32 weights",
    hint: (p) =>
      p.gpu.bf16
        ? "Use --precision bf16 (what LLaMA-Factory will do for a bf16 checkpoint), or keep fp32 for an fp32 checkpoint."
        : "Use --precision fp16 on this GPU, or keep fp32 for an fp32 checkpoint.",
    source:
      "LLaMA-Factory hparams/parser.py:640-643 and model/patcher.py:375-379 (infer the dtype when unset)",
  },
  {
    code: "TEMPLATE_NOT_MULTIMODAL",
    fields: ["imagesPerSample", "videosPerSample", "template"],
    severity: "error",
    applies: (p) =>
      p.imagesPerSample + p.videosPerSample > 0 &&
      p.template !== null &&
      TEMPLATES.find((t) => t.name === p.template)?.multimodal === false,
    message: (p) => `template "${p.template}" has no multimodal plugin, but samples carry ${mediaList(p)}`,
    hint: (p) =>
      p.model.defaultTemplate
        ? `Use --template ${p.model.defaultTemplate}.`
        : "Use the model's multimodal template.",
    source: "LLaMA-Factory data/mm_plugin.py BasePlugin._validate_input",
  },
];

/** Runs every rule against a resolved plan, under the memory-model assumptions given (defaults otherwise). */
export function checkRules(
  plan: Plan,
  rules: readonly PlanRule[] = PLAN_RULES,
  assumptions: Partial<MemoryAssumptions> = {},
): Issue[] {
  const as = withDefaults(assumptions);
  return rules
    .filter((r) => r.applies(plan, as))
    .map((r) => ({
      code: r.code,
      severity: r.severity,
      path: r.fields[0],
      message: r.message(plan, as),
      hint: r.hint(plan),
    }));
}
