import { TEMPLATES } from "../catalog/data/llamafactory.ts";
import { findGpu } from "../catalog/gpus.ts";
import { resolveModel } from "../catalog/resolve-model.ts";
import type { Issue } from "../errors.ts";
import { freezeModuleNames, linearModules } from "../model/modules.ts";
import { takesVideos } from "../model/support.ts";
import type { Architecture } from "../schema/architecture.ts";
import {
  anyMethodOptimizer,
  DATASET_NAMES,
  LOW_MEMORY_OPTIMIZER_NAMES,
  type LowMemoryOptimizer,
  type ModelDefinition,
  type PlanInput,
  type ResolvedModel,
  TEMPLATE_NAME,
} from "../schema/plan.ts";
import type { DeepSpeedSource } from "./read.ts";

/*
 * A LLaMA-Factory setup (training YAML, DeepSpeed config, accelerate config, launcher) as a tunefit plan. Keys
 * tunefit models become plan fields; every other key is kept as it is and listed, never dropped.
 */

export type Launcher = "torchrun" | "accelerate";

export interface Hardware {
  readonly gpu: string;
  readonly gpus?: number;
  readonly nodes?: number;
  readonly gpuMemory?: number;
  readonly hostRam?: number;
  /** share of GPU memory kept free when judging fit (tunefit's, not the YAML's) */
  readonly headroom?: number;
}

export interface SetupPlan {
  readonly input: PlanInput;
  /** keys of the YAML that became plan fields */
  readonly modelled: readonly string[];
  /** keys tunefit does not model, kept as written */
  readonly unmodelled: readonly string[];
  readonly issues: readonly Issue[];
  /** accelerate's FSDP RAM-efficient loading (true when no accelerate config is used) */
  readonly ramEfficientLoading: boolean;
  /** the YAML's optimizer switches, as LLaMA-Factory's build order reads them */
  readonly switches: OptimizerSwitches;
  /**
   * Set when the DeepSpeed config builds its own optimizer (the plan's optimizer then stands for it): what a run
   * without that config, or with tunefit's, trains with instead — the YAML's `optim` (null when absent) and the
   * memory-efficient optimizer LLaMA-Factory then builds, with `trains` naming it in words.
   */
  readonly withoutDeepSpeedOptimizer?: {
    readonly optim: string | null;
    readonly lowMemory: OptimizerSwitches["planned"];
    readonly trains: string;
    /** the DeepSpeed config's name, as the YAML gives it */
    readonly config: string;
  };
}

/** The LLaMA-Factory key a plan field is read from (setupToPlan below), for issues shown against a YAML. */
export const YAML_KEY_OF_PLAN_FIELD: Readonly<Record<string, string>> = {
  model: "model_name_or_path",
  template: "template",
  method: "finetuning_type",
  quantBits: "quantization_bit",
  quantMethod: "quantization_method",
  precision: "bf16 / fp16 / pure_bf16",
  sharding: "deepspeed (or the accelerate FSDP config)",
  fsdpStrategy: "fsdp_sharding_strategy (accelerate config)",
  offload: "the DeepSpeed or FSDP offload settings",
  seqLen: "cutoff_len",
  packing: "packing",
  microBatch: "per_device_train_batch_size",
  gradAccum: "gradient_accumulation_steps",
  syncEachBatch: "accelerator_config",
  gradientCheckpointing: "disable_gradient_checkpointing",
  attention: "flash_attn",
  liger: "enable_liger_kernel",
  optimizer: "optim",
  lowMemoryOptimizer: "use_galore / use_apollo / use_badam / use_adam_mini / use_muon",
  lowMemoryRank: "galore_rank / apollo_rank",
  lowMemoryLayerwise: "galore_layerwise / apollo_layerwise",
  loraRank: "lora_rank",
  loraAlpha: "lora_alpha",
  loraDropout: "lora_dropout",
  loraTarget: "lora_target",
  useDora: "use_dora",
  additionalTarget: "additional_target",
  freezeTrainableLayers: "freeze_trainable_layers",
  freezeTrainableModules: "freeze_trainable_modules",
  freezeVisionTower: "freeze_vision_tower",
  freezeProjector: "freeze_multi_modal_projector",
  imageMaxPixels: "image_max_pixels",
  videoFrames: "video_maxlen",
  videoMaxPixels: "video_max_pixels",
};

/**
 * What a plan hint's CLI flags are in a LLaMA-Factory YAML (and the DeepSpeed or accelerate config beside it), most
 * specific first. Hardware and doctor's own flags (--gpu, --gpus, --nodes, --host-ram, --assume, --model…) stay:
 * doctor takes them.
 */
const YAML_PHRASES: readonly (readonly [RegExp, string])[] = [
  // combinations first
  [/--method lora --use-dora true/g, "finetuning_type: lora with use_dora: true"],
  [/turn on --gradient-checkpointing/gi, "set disable_gradient_checkpointing: false"],
  [
    /--sharding zero3 --offload params/g,
    "a ZeRO-3 deepspeed: config with offload_param and offload_optimizer",
  ],
  [/--sharding fsdp --offload params/g, "an accelerate FSDP config with fsdp_offload_params: true"],
  [/--sharding zero3 or fsdp/g, "a ZeRO-3 deepspeed: config or an accelerate FSDP config"],
  [/--sharding zero2 \/ none/g, "a ZeRO-2 deepspeed: config, or no deepspeed: at all"],
  [/--sharding zero2 \(or zero3\)/g, "a ZeRO-2 (or ZeRO-3) deepspeed: config"],
  [/--sharding zero2\/zero3/g, "a ZeRO-2 or ZeRO-3 deepspeed: config"],
  [/--sharding fsdp \(([^)]*)\) or zero3/g, "an accelerate FSDP config ($1) or a ZeRO-3 deepspeed: config"],
  [/--sharding zero([123])/g, "a ZeRO-$1 deepspeed: config"],
  [/--sharding fsdp2/g, "an accelerate FSDP2 config (fsdp_version: 2)"],
  [/--sharding fsdp/g, "an accelerate FSDP config"],
  [/--sharding none/g, "no deepspeed: and no FSDP config"],
  [/--sharding/g, "deepspeed: or an accelerate FSDP config"],
  [/--offload optimizer or params/g, "optimizer or parameter offload (offload_optimizer / offload_param)"],
  [/--offload params with FSDP/g, "fsdp_offload_params: true in the accelerate FSDP config"],
  [/--offload params/g, "parameter offload (offload_param and offload_optimizer; FSDP: fsdp_offload_params)"],
  [/--offload optimizer/g, "optimizer offload (offload_optimizer in the deepspeed: config)"],
  [/--offload none/g, "no offload settings"],
  [/--offload/g, "the DeepSpeed or FSDP offload settings"],
  [/--low-memory-optimizer badam with --sharding zero3/g, "use_badam: true with a ZeRO-3 deepspeed: config"],
  [/without --low-memory-optimizer (galore|apollo|badam|adam_mini|muon)/g, "without use_$1"],
  [/--low-memory-optimizer badam instead of (galore|apollo|muon)/g, "use_badam: true in place of use_$1"],
  [/--low-memory-optimizer (galore|apollo) \(or apollo\)/g, "use_$1: true (or use_apollo: true)"],
  [/--low-memory-optimizer (galore|apollo|badam|adam_mini|muon)/g, "use_$1: true"],
  [/--low-memory-optimizer/g, "use_galore / use_apollo / use_badam / use_adam_mini / use_muon"],
  [
    /--low-memory-rank\/--low-memory-layerwise/g,
    "galore_rank/galore_layerwise (apollo_rank/apollo_layerwise)",
  ],
  [/--low-memory-layerwise off/g, "galore_layerwise: false (apollo_layerwise: false)"],
  [/--low-memory-layerwise/g, "galore_layerwise (apollo_layerwise)"],
  [/--low-memory-rank/g, "galore_rank (apollo_rank)"],
  [/--method lora or qlora/g, "finetuning_type: lora, or QLoRA with quantization_bit: 4"],
  [/--method lora \(or qlora\)/g, "finetuning_type: lora (QLoRA: with quantization_bit: 4)"],
  [/--method qlora/g, "finetuning_type: lora with quantization_bit: 4"],
  [/--method (full|freeze|lora)/g, "finetuning_type: $1"],
  [/--optimizer out/g, "optim unset"],
  [/--optimizer (\w+)/g, "optim: $1"],
  [/--precision pure_bf16/g, "pure_bf16: true"],
  [/--precision (bf16|fp16)/g, "$1: true"],
  [/--quant-bits (\d+)/g, "quantization_bit: $1"],
  [/--quant-method (\w+)/g, "quantization_method: $1"],
  [/--liger on/g, "enable_liger_kernel: true"],
  [/--liger/g, "enable_liger_kernel"],
  [/--attention eager/g, "flash_attn: disabled"],
  [/--attention (fa2|sdpa)/g, "flash_attn: $1"],
  [/--use-dora off/g, "use_dora: false"],
  [/--sync-each-batch on/g, "accelerator_config: {gradient_accumulation_kwargs: {sync_each_batch: true}}"],
  [/--template (\w+)/g, "template: $1"],
  [/--seq-len/g, "cutoff_len"],
  [/--micro-batch/g, "per_device_train_batch_size"],
  [/--grad-accum/g, "gradient_accumulation_steps"],
  [/--lora-rank/g, "lora_rank"],
  [/--image-max-pixels (\d+)/g, "image_max_pixels: $1"],
  [/--image-max-pixels/g, "image_max_pixels"],
  [/Turn packing off \(--packing off\)/g, "Turn packing off (packing: false)"],
  [/raise --images-per-sample or --videos-per-sample to/g, "give doctor the images or videos per sample of"],
  [/--images-per-sample/g, "the images per sample in the dataset"],
  [/--video-frames \(video_maxlen\)/g, "video_maxlen"],
  [/--video-frames (\d+)/g, "video_maxlen: $1"],
  [/--video-frames/g, "video_maxlen"],
  [/--video-max-pixels (\d+)/g, "video_max_pixels: $1"],
  [/--video-max-pixels/g, "video_max_pixels"],
  [/--videos-per-sample/g, "the videos per sample in the dataset"],
  [/--gradient-checkpointing/g, "disable_gradient_checkpointing"],
  [/--fsdp-strategy/g, "fsdp_sharding_strategy"],
  // flags run together ("--quant-bits 4 --sharding zero3 --offload …") read as a list of keys
  [/quantization_bit: (\d+) (a ZeRO-3|an accelerate FSDP)/g, "quantization_bit: $1 and $2"],
];

/** A plan issue's hint in the YAML's terms (see YAML_PHRASES). */
export function yamlHint(hint: string): string {
  return YAML_PHRASES.reduce((text, [pattern, phrase]) => text.replace(pattern, phrase), hint);
}

/** transformers' `accelerator_config` as a mapping: given as one, or as a JSON string (null when neither). */
export function acceleratorConfigOf(value: unknown): Record<string, unknown> | null {
  let config = value;
  if (typeof value === "string" && value.trim().startsWith("{")) {
    try {
      config = JSON.parse(value);
    } catch {
      return null;
    }
  }
  return typeof config === "object" && config !== null && !Array.isArray(config)
    ? (config as Record<string, unknown>)
    : null;
}

/** Whether `accelerator_config` asks the Trainer to reduce gradients after every micro-batch. */
function syncEachBatchOf(value: unknown): boolean {
  const kwargs = acceleratorConfigOf(value)?.gradient_accumulation_kwargs;
  return (
    typeof kwargs === "object" &&
    kwargs !== null &&
    (kwargs as Record<string, unknown>).sync_each_batch === true
  );
}

/** The YAML key a memory-efficient optimizer's plan field is read from, or null for other paths. */
export function lowMemoryKey(path: string, optimizer: LowMemoryOptimizer | null): string | null {
  if (optimizer === null) return null;
  if (path === "lowMemoryOptimizer") return `use_${optimizer}`;
  if (path === "lowMemoryRank") return `${optimizer}_rank`;
  if (path === "lowMemoryLayerwise") return `${optimizer}_layerwise`;
  return null;
}

/** The keys of a memory-efficient optimizer the plan carries (the others, such as galore_scale, are kept as written). */
function lowMemoryKeys(optimizer: LowMemoryOptimizer): string[] {
  if (anyMethodOptimizer(optimizer)) return [`use_${optimizer}`];
  return optimizer === "badam"
    ? ["use_badam", "badam_mode"]
    : [`use_${optimizer}`, `${optimizer}_target`, `${optimizer}_rank`, `${optimizer}_layerwise`];
}

/** YAML keys that map onto plan fields (or are decided by them). */
export const MODELLED_KEYS = [
  "model_name_or_path",
  "finetuning_type",
  "quantization_bit",
  "quantization_method",
  "deepspeed",
  "bf16",
  "fp16",
  "pure_bf16",
  "cutoff_len",
  "packing",
  "per_device_train_batch_size",
  "gradient_accumulation_steps",
  "disable_gradient_checkpointing",
  "flash_attn",
  "enable_liger_kernel",
  "lora_rank",
  "lora_alpha",
  "lora_dropout",
  "lora_target",
  "use_dora",
  "additional_target",
  "freeze_trainable_layers",
  "freeze_trainable_modules",
  "freeze_vision_tower",
  "freeze_multi_modal_projector",
  "image_max_pixels",
  "video_max_pixels",
  "video_maxlen",
  "optim",
  "dataset",
  "template",
] as const;

/**
 * LLaMA-Factory switches that change memory in ways tunefit does not model, and which way its figures err
 * (LLaMA-Factory's argument help; the optimizers' papers).
 */
const NOT_MODELLED: Readonly<Record<string, string>> = {
  use_galore:
    "GaLore (here with LoRA, beside APOLLO or BAdam, or on targets other than every attention and MLP linear) keeps the targeted matrices' optimizer states in a low-rank projection, where tunefit counts full AdamW states (the optimizer figure is an upper bound)",
  use_apollo:
    "APOLLO (here with LoRA, beside GaLore or BAdam, or on targets other than every attention and MLP linear) keeps low-rank optimizer states, where tunefit counts full AdamW states (the optimizer figure is an upper bound)",
  use_badam:
    "BAdam (here in ratio mode, with LoRA or freeze tuning, or beside GaLore or APOLLO) trains a part of the weights at a time, where tunefit counts every trainable parameter (an upper bound)",
  use_adam_mini:
    "Adam-mini keeps one second moment per parameter block, where tunefit counts AdamW's per-parameter second moments (an upper bound)",
  use_muon:
    "Muon keeps one momentum buffer for the weight matrices, where tunefit counts AdamW's two states (an upper bound)",
  use_unsloth:
    "Unsloth replaces kernels and offloads the checkpointed activations to the CPU, where tunefit keeps them on the GPU (an upper bound)",
  use_unsloth_gc:
    "Unsloth's gradient checkpointing offloads the checkpointed activations to the CPU, where tunefit keeps them on the GPU (an upper bound)",
  torch_compile:
    "torch.compile fuses kernels and changes the saved activations; tunefit models eager PyTorch",
  use_llama_pro:
    "LLaMA Pro trains every (num_layers / freeze_trainable_layers)-th layer from the front, where tunefit counts the last freeze_trainable_layers layers: backward runs through more of the model than counted (the activations are a lower bound)",
  finetuning_type:
    "OFT is estimated as LoRA with the same targets and rank; OFT's orthogonal blocks have a different size",
  stage:
    "tunefit models supervised fine-tuning; preference and reward stages run the chosen and rejected sequences of each pair in one batch (twice the sequences), DPO and KTO with full or freeze tuning hold a frozen reference model beside the trained one, and PPO adds a reward model, a value head and generation (the figures are a lower bound)",
};

/** The NOT_MODELLED switches that save memory tunefit counts: its training figure is an upper bound with them. */
const UPPER_BOUND_SWITCHES = [
  "use_galore",
  "use_apollo",
  "use_badam",
  "use_adam_mini",
  "use_muon",
  "use_unsloth",
  "use_unsloth_gc",
] as const;

/**
 * The switches on in a YAML that make tunefit's training figure an upper bound (empty for most YAMLs); `planned` is
 * the memory-efficient optimizer the plan carries, which is modelled.
 */
export function upperBoundSwitches(yaml: Readonly<Record<string, unknown>>, setup: SetupPlan): string[] {
  const { planned, ignored } = setup.switches;
  const accounted = new Set([`use_${planned?.optimizer}`, ...ignored.map((i) => i.key)]);
  // a DeepSpeed config's own optimizer leaves every optimizer switch unbuilt (DEEPSPEED_OWN_OPTIMIZER)
  const own = setup.withoutDeepSpeedOptimizer !== undefined;
  const unbuilt = (k: string) => own && k !== "use_unsloth" && k !== "use_unsloth_gc";
  return UPPER_BOUND_SWITCHES.filter((k) => yaml[k] === true && !accounted.has(k) && !unbuilt(k));
}

/**
 * Whether galore_target/apollo_target reach every language-model linear of `arch` by LLaMA-Factory's substring match
 * on module names (`target in name`): `all`, or names inside each attention and MLP block's name (`self_attn`,
 * `mlp`; Mixtral's experts sit in `block_sparse_moe`, Qwen-1's attention in `attn`), or inside every linear's own
 * name. Without the model's architecture, only `all` is known to.
 */
function coversEveryLinear(value: unknown, arch: Architecture | null): boolean {
  if (value === undefined || value === null || isAll(value)) return true;
  if (!names(value) || arch === null) return false;
  const targets = list(value);
  const reached = (name: string) => targets.some((t) => name.includes(t));
  const blocks = freezeModuleNames(arch);
  const parents = [
    ...blocks.attention,
    ...blocks.mlp,
    ...(arch.modelType === "mllama" ? ["cross_attn"] : []),
  ];
  const leaves = linearModules(arch)
    .filter((g) => g.region === "text")
    .map((g) => g.name);
  return parents.every(reached) || leaves.every(reached);
}

/**
 * The order in which LLaMA-Factory builds its optimizers, the first switch on winning (train/trainer_utils.py
 * create_custom_optimizer at ff6d4d12ee; GaLore, APOLLO and BAdam together are rejected before that).
 */
const BUILD_ORDER = ["galore", "apollo", "loraplus", "badam", "adam_mini", "muon"] as const;

/** What LLaMA-Factory builds from a YAML's optimizer switches, and the switches it then leaves unused. */
export interface OptimizerSwitches {
  /** the switch as the plan carries it (lowMemoryOptimizer), or null: none, LoRA+, or one tunefit does not model */
  readonly planned: { optimizer: LowMemoryOptimizer; rank?: number; layerwise?: boolean } | null;
  /** switches on that LLaMA-Factory does not use, and what it builds instead */
  readonly ignored: readonly { key: string; builds: string }[];
}

/**
 * The optimizer switches of a YAML. The one LLaMA-Factory builds is planned where tunefit models it: Adam-mini and Muon
 * on any method, BAdam in layer mode on full tuning, GaLore and APOLLO on full or freeze tuning over targets that reach
 * every language-model linear. With LoRA+ (`loraplus_lr_ratio`) or GaLore/APOLLO before them, the later switches are
 * unused. Two of GaLore, APOLLO and BAdam, or one with LoRA, are LLaMA-Factory's stops (doctor checks them).
 */
export function optimizerSwitches(
  yaml: Readonly<Record<string, unknown>>,
  arch: Architecture | null,
): OptimizerSwitches {
  const on = (k: (typeof BUILD_ORDER)[number]) =>
    k === "loraplus"
      ? yaml.loraplus_lr_ratio !== undefined && yaml.loraplus_lr_ratio !== null
      : yaml[`use_${k}`] === true;
  const type = typeof yaml.finetuning_type === "string" ? yaml.finetuning_type : "lora";
  const exclusive = (["galore", "apollo", "badam"] as const).filter(on);
  if (exclusive.length > 1 || (exclusive.length > 0 && type !== "full" && type !== "freeze"))
    return { planned: null, ignored: [] };
  const winner = BUILD_ORDER.find(on);
  if (winner === undefined) return { planned: null, ignored: [] };
  const builds = winner === "loraplus" ? "LoRA+ (loraplus_lr_ratio)" : LOW_MEMORY_OPTIMIZER_NAMES[winner];
  const ignored = BUILD_ORDER.filter((k) => k !== winner && k !== "loraplus" && on(k)).map((k) => ({
    key: `use_${k}`,
    builds,
  }));
  if (winner === "loraplus") return { planned: null, ignored };
  const optimizer: LowMemoryOptimizer = winner;
  if (anyMethodOptimizer(optimizer)) return { planned: { optimizer }, ignored };
  if (optimizer === "badam")
    return {
      planned: type === "full" && (yaml.badam_mode ?? "layer") === "layer" ? { optimizer } : null,
      ignored,
    };
  if (!coversEveryLinear(yaml[`${optimizer}_target`], arch)) return { planned: null, ignored };
  const rank = num(yaml[`${optimizer}_rank`]);
  const layerwise = yaml[`${optimizer}_layerwise`];
  return {
    planned: {
      optimizer,
      ...(rank !== undefined && Number.isInteger(rank) && rank >= 1 ? { rank } : {}),
      ...(typeof layerwise === "boolean" ? { layerwise } : {}),
    },
    ignored,
  };
}

/**
 * LLaMA-Factory's stops on keys the plan does not carry but a plan can trip (hparams/parser.py 240, 243, 496, 533;
 * finetuning_args.py 613): PiSSA initialisation or a resized vocabulary on a quantized model, Unsloth under ZeRO-3,
 * LLaMA Pro with full tuning. Checked on the setup and on every candidate fix, which keeps these keys as written.
 */
/** LLaMA-Factory's QuantizationMethod values that configure_quantization acts on (on the fly). */
export const KNOWN_QUANTIZATION_METHODS: readonly string[] = ["bnb", "gptq", "awq", "hqq", "eetq"];

/** A stop LLaMA-Factory (or transformers) makes on a YAML key: `who` stops with `message` (`where` in its code). */
export function upstreamStop(
  name: string,
  key: string,
  where: string,
  message: string,
  hint: string,
  who = "LLaMA-Factory",
): Issue {
  return {
    code: "LLAMAFACTORY_REJECTS",
    severity: "error",
    path: `${name}:${key}`,
    message: `${who} stops with "${message}"${where === "" ? "" : ` (${where})`}`,
    hint,
  };
}

export function keptKeyStops(
  yaml: Readonly<Record<string, unknown>>,
  plan: {
    readonly method?: string | undefined;
    readonly sharding?: string | undefined;
    readonly quantBits?: number | undefined;
  },
  quantizedCheckpoint: boolean,
  name: string,
): Issue[] {
  const out: Issue[] = [];
  const stop = (key: string, where: string, message: string, hint: string) =>
    out.push(upstreamStop(name, key, where, message, hint));
  const quantized = plan.method === "qlora" || quantizedCheckpoint;
  if (quantized && yaml.pissa_init === true)
    stop(
      "pissa_init",
      "hparams/parser.py:240",
      "Please use scripts/pissa_init.py to initialize PiSSA for a quantized model.",
      "Remove pissa_init (or initialise PiSSA offline with scripts/pissa_init.py), or train without quantization.",
    );
  if (yaml.pissa_init === true && plan.sharding === "zero3")
    stop(
      "pissa_init",
      "hparams/parser.py:496",
      "Please use scripts/pissa_init.py to initialize PiSSA in DeepSpeed ZeRO-3.",
      "Remove pissa_init (or initialise PiSSA offline with scripts/pissa_init.py), or use a ZeRO-2 (or no) DeepSpeed config.",
    );
  if (quantized && yaml.resize_vocab === true)
    stop(
      "resize_vocab",
      "hparams/parser.py:243",
      "Cannot resize embedding layers of a quantized model.",
      "Remove resize_vocab, or train without quantization.",
    );
  if (yaml.use_unsloth === true && plan.sharding === "zero3")
    stop(
      "use_unsloth",
      "hparams/parser.py:533",
      "Unsloth is incompatible with DeepSpeed ZeRO-3.",
      "Remove use_unsloth, or use a ZeRO-2 (or no) DeepSpeed config.",
    );
  // HQQ and EETQ (configure_quantization checks the width first, then the sharding); a 4-bit EETQ, the YAML's or a
  // fix's, is refused where the plan counts one (other widths are refused with the YAML's own, in setupToPlan)
  const onTheFly = yaml.quantization_method;
  const eetqWidth =
    onTheFly === "eetq" && plan.method === "qlora" && !quantizedCheckpoint && (plan.quantBits ?? 4) !== 8;
  if (eetqWidth)
    stop(
      "quantization_bit",
      "model/model_utils/quantization.py:220",
      "EETQ only accepts 8-bit quantization.",
      "Set quantization_bit: 8, or quantization_method: bnb for 4-bit QLoRA.",
    );
  else if (
    (onTheFly === "hqq" || onTheFly === "eetq") &&
    plan.method === "qlora" &&
    !quantizedCheckpoint &&
    (plan.sharding === "zero3" || plan.sharding === "fsdp" || plan.sharding === "fsdp2")
  )
    stop(
      "quantization_method",
      `model/model_utils/quantization.py:${onTheFly === "hqq" ? 211 : 223}`,
      `${onTheFly === "hqq" ? "HQQ" : "EETQ"} quantization is incompatible with DeepSpeed ZeRO-3 or FSDP.`,
      "Use quantization_method: bnb with quantization_bit: 4 (4-bit QLoRA shards under ZeRO-3 and FSDP), or ZeRO-2 (or no) sharding.",
    );
  if (yaml.use_llama_pro === true && plan.method === "full")
    stop(
      "use_llama_pro",
      "finetuning_args.py:613",
      "`use_llama_pro` is only valid for Freeze or LoRA training.",
      "Remove use_llama_pro, or use finetuning_type: freeze.",
    );
  return out;
}

/** HQQ's widths (model_utils/quantization.py: `quantization_bit not in [8, 6, 5, 4, 3, 2, 1]` raises). */
const HQQ_BITS: readonly number[] = [1, 2, 3, 4, 5, 6, 8];

/**
 * The bitsandbytes width an HQQ or EETQ quantization is counted at (the next one up: 4 for HQQ's 1–4 bits, 8 for
 * its 5, 6 and 8 and for EETQ's 8), or null for any other method or a width LLaMA-Factory refuses.
 */
function onTheFlyWidth(method: string, bits: number | undefined): 4 | 8 | null {
  if (bits === undefined) return null;
  if (method === "hqq" && HQQ_BITS.includes(bits)) return bits <= 4 ? 4 : 8;
  if (method === "eetq" && bits === 8) return 8;
  return null;
}

/** Whether a key's value turns on what NOT_MODELLED describes. */
function notModelledOn(key: string, value: unknown): boolean {
  if (key === "finetuning_type") return value === "oft";
  if (key === "stage") return value === "dpo" || value === "kto" || value === "rm" || value === "ppo";
  return value === true;
}

const ATTENTION: Record<string, PlanInput["attention"]> = {
  auto: "auto",
  disabled: "eager",
  sdpa: "sdpa",
  fa2: "fa2",
};

/** LLaMA-Factory's split_arg: a string split on commas; a YAML list of names taken as it is. */
const list = (v: unknown): string[] =>
  (Array.isArray(v) ? v.map(String) : String(v).split(",")).map((s) => s.trim()).filter(Boolean);
/** A value split_arg reads: a string or a list of strings. */
const names = (v: unknown): boolean =>
  typeof v === "string" || (Array.isArray(v) && v.every((x) => typeof x === "string"));
/** Whether a split_arg value names exactly "all". */
const isAll = (v: unknown): boolean => list(v).length === 1 && list(v)[0] === "all";

const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

/** A DeepSpeed config's stage and what it offloads (to the CPU or NVMe). */
function deepspeedZero(ds: Record<string, unknown>): { stage: number; param: boolean; optim: boolean } {
  const zero = (ds.zero_optimization ?? {}) as Record<string, unknown>;
  const off = (o: unknown) => {
    const device = ((o ?? {}) as { device?: unknown }).device;
    return device === "cpu" || device === "nvme";
  };
  return { stage: num(zero.stage) ?? 0, param: off(zero.offload_param), optim: off(zero.offload_optimizer) };
}

/** The DeepSpeed stage and offload of a config. */
function deepspeedSharding(ds: Record<string, unknown>): Pick<PlanInput, "sharding" | "offload"> {
  const { stage, param, optim } = deepspeedZero(ds);
  const sharding = stage >= 3 ? "zero3" : stage === 2 ? "zero2" : stage === 1 ? "zero1" : "none";
  // parameter offload alone keeps the optimizer on the GPU, which no plan offload says: counted without offload
  return { sharding, offload: param && optim ? "params" : optim ? "optimizer" : "none" };
}

/** A ZeRO-3 config that offloads the parameters but not the optimizer states. */
function offloadsParamsOnly(ds: Record<string, unknown>): boolean {
  const { stage, param, optim } = deepspeedZero(ds);
  return stage >= 3 && param && !optim;
}

/**
 * The optimizer a DeepSpeed config builds itself (its "optimizer" section), as the `optim` name with the same states
 * and step; null without one. Adam and AdamW are DeepSpeed's FusedAdam (torch's AdamW with `"torch_adam": true`) and
 * Lion its FusedLion (fp32 states updated in place; DeepSpeedCPUAdam when offloaded, which the plan's offload
 * counts); Adagrad is torch's. Other types (LAMB, the 1-bit variants) are counted as AdamW and said so.
 */
function deepspeedOwnOptimizer(
  ds: Record<string, unknown>,
): { readonly type: string; readonly optim: string; readonly modelled: boolean } | null {
  const section = ds.optimizer;
  if (typeof section !== "object" || section === null) return null;
  const type = String((section as { type?: unknown }).type ?? "AdamW");
  const t = type.toLowerCase();
  const params = (section as { params?: unknown }).params;
  // "torch_adam": true makes DeepSpeed build torch's AdamW (foreach) in place of its FusedAdam
  const torchAdam =
    typeof params === "object" && params !== null && (params as { torch_adam?: unknown }).torch_adam === true;
  if ((t === "adam" || t === "adamw") && torchAdam) return { type, optim: "adamw_torch", modelled: true };
  if (t === "lion") return { type, optim: "lion_32bit", modelled: true };
  if (t === "adagrad") return { type, optim: "adagrad", modelled: true };
  return { type, optim: "adamw_torch_fused", modelled: t === "adam" || t === "adamw" };
}

const truthy = (v: unknown) => v === true || (typeof v === "string" && /^(true|yes|y|on|1)$/i.test(v));

/** The model as resolved, or null when it does not resolve (resolving the plan reports the model). */
function resolvedOrNull(model: string | ModelDefinition, cwd: string | undefined): ResolvedModel | null {
  try {
    return resolveModel(model, cwd);
  } catch {
    return null;
  }
}

/**
 * The plan of a setup. `model` is the catalog id or config.json folder to estimate with (defaults to
 * model_name_or_path); `cwd` is where a relative model folder is found, `yamlName` how issues name the YAML.
 */
export function setupToPlan(
  yaml: Readonly<Record<string, unknown>>,
  deepspeed: DeepSpeedSource,
  accelerate: Readonly<Record<string, unknown>> | null,
  hardware: Hardware,
  model: string | ModelDefinition | undefined,
  where: {
    readonly cwd?: string;
    readonly yamlName?: string;
    readonly imagesPerSample?: number;
    readonly videosPerSample?: number;
  } = {},
): SetupPlan {
  const issues: Issue[] = [];
  const input: Record<string, unknown> = { ...hardware };
  const y = yaml;
  const modelRef: string | ModelDefinition =
    model ?? (typeof y.model_name_or_path === "string" ? y.model_name_or_path : "");
  const modelName = typeof modelRef === "string" ? modelRef : modelRef.id;
  // resolved once here: its architecture and stored quantization answer several of the checks below
  const resolved = resolvedOrNull(modelRef, where.cwd);
  input.model = modelRef;

  const type = typeof y.finetuning_type === "string" ? y.finetuning_type : "lora";
  const bits = num(y.quantization_bit);
  const qmethod = typeof y.quantization_method === "string" ? y.quantization_method : "bnb";
  // HQQ and EETQ quantize on the fly too (configure_quantization): counted as bitsandbytes of the next width up
  const countedBits = onTheFlyWidth(qmethod, bits);
  if (type === "full" || type === "freeze") input.method = type;
  else if (countedBits !== null && resolved?.quantization == null) {
    input.method = "qlora";
    input.quantBits = countedBits;
    issues.push({
      code: "QUANTIZATION_APPROXIMATED",
      severity: "warning",
      path: `${where.yamlName ?? "train.yaml"}:quantization_method`,
      message:
        qmethod === "hqq"
          ? `quantization_method hqq (${bits} bits) is counted as bitsandbytes ${countedBits === 4 ? "NF4" : "8-bit"} with HQQ's storage (its packed weights and a 16-bit scale and zero per group of 64): tunefit does not model HQQ's kernels, whose dequantized weights in forward and backward are counted as bitsandbytes' are`
          : "quantization_method eetq (8 bits) is counted as bitsandbytes 8-bit: tunefit does not model EETQ's int8 kernels; the int8 weights (1 B each) are counted, their working memory as bitsandbytes'",
      hint: "Use quantization_method: bnb for figures tunefit models exactly.",
    });
  }
  // a quantization_method LLaMA-Factory does not know takes none of configure_quantization's branches (there is no
  // else): the model loads unquantized, and LoRA trains on 16-bit weights
  else if (bits !== undefined && (bits === 4 || bits === 8) && KNOWN_QUANTIZATION_METHODS.includes(qmethod)) {
    input.method = "qlora";
    input.quantBits = bits;
    if (qmethod === "bnb" || qmethod === "gptq" || qmethod === "awq") input.quantMethod = qmethod;
  } else input.method = "lora";
  const yamlName = where.yamlName ?? "train.yaml";
  const rejects = (key: string, upstream: string, message: string, hint: string) =>
    issues.push(upstreamStop(yamlName, key, "", message, hint, upstream));
  // bitsandbytes quantizes on the fly to 4 or 8 bits only (model_utils/quantization.py configure_quantization); the
  // figures are then those of LoRA on the 16-bit model, which is what no run gets to
  // a checkpoint stored quantized takes its own (LLaMA-Factory warns that quantization_bit "will not affect" it)
  if (bits !== undefined && bits !== 4 && bits !== 8 && qmethod === "bnb" && resolved?.quantization == null)
    rejects(
      "quantization_bit",
      "LLaMA-Factory",
      "Bitsandbytes only accepts 4-bit or 8-bit quantization.",
      `Set quantization_bit: 4 (QLoRA) or 8, or remove it to train the 16-bit model (${bits} is not a bitsandbytes width).`,
    );
  // HQQ's and EETQ's widths (model_utils/quantization.py configure_quantization)
  if (bits !== undefined && qmethod === "hqq" && !HQQ_BITS.includes(bits) && resolved?.quantization == null)
    rejects(
      "quantization_bit",
      "LLaMA-Factory",
      "HQQ only accepts 1/2/3/4/5/6/8-bit quantization.",
      `Set quantization_bit to one of 1, 2, 3, 4, 5, 6, 8 (${bits} is not an HQQ width), or remove it to train the 16-bit model.`,
    );
  if (bits !== undefined && qmethod === "eetq" && bits !== 4 && bits !== 8 && resolved?.quantization == null)
    rejects(
      "quantization_bit",
      "LLaMA-Factory",
      "EETQ only accepts 8-bit quantization.",
      "Set quantization_bit: 8, or quantization_method: bnb for another width.",
    );
  // transformers' TrainingArguments checks (training_args.py __post_init__)
  if (y.fp16 === true && y.bf16 === true) {
    const bf16Card = hardware.gpu.toLowerCase() === "custom" || findGpu(hardware.gpu)?.bf16 === true;
    rejects(
      bf16Card ? "fp16" : "bf16",
      "transformers",
      "At most one of fp16 and bf16 can be True, but not both",
      bf16Card
        ? "Remove fp16: true (bf16 mixed precision, which this card runs)."
        : "Remove bf16: true (this card has no bf16: fp16 mixed precision).",
    );
  }
  const cc = findGpu(hardware.gpu)?.computeCapability;
  if (y.tf32 === true && typeof cc === "string" && Number.parseFloat(cc) < 8)
    rejects(
      "tf32",
      "transformers",
      "--tf32 requires Ampere or a newer GPU arch, cuda>=11 and torch>=1.7",
      `Remove tf32: true: the GPU's compute capability is ${cc} (TF32 needs 8.0, Ampere, or newer).`,
    );

  // strategy: DeepSpeed file, accelerate FSDP, or DDP
  let ramEfficientLoading = true;
  if (deepspeed.kind !== "none") {
    Object.assign(input, deepspeedSharding(deepspeed.config));
    if (offloadsParamsOnly(deepspeed.config))
      issues.push({
        code: "DEEPSPEED_PARAM_OFFLOAD_ONLY",
        severity: "warning",
        path: `${deepspeed.kind === "file" ? deepspeed.path : "deepspeed"}:zero_optimization.offload_param`,
        message:
          "the config offloads the parameters but not the optimizer states: DeepSpeed keeps the fp32 master weights, gradients and Adam states on the GPU, which is what the figures count; they also count the 16-bit parameter shards on the GPU, which this config moves to the CPU (an upper bound by those shards)",
        hint: "Add offload_optimizer (device cpu) as well to move the optimizer states off the GPU (DeepSpeed's CPU Adam steps them there).",
      });
  }
  if (accelerate !== null && accelerate.distributed_type === "FSDP") {
    const f = (accelerate.fsdp_config ?? {}) as Record<string, unknown>;
    const v2 = num(f.fsdp_version) === 2 || f.fsdp_version === "2";
    input.sharding = v2 ? "fsdp2" : "fsdp";
    if (!v2) {
      const s = String(f.fsdp_sharding_strategy ?? "FULL_SHARD").toUpperCase();
      const map: Record<string, PlanInput["fsdpStrategy"]> = {
        FULL_SHARD: "full_shard",
        "1": "full_shard",
        SHARD_GRAD_OP: "shard_grad_op",
        "2": "shard_grad_op",
        NO_SHARD: "no_shard",
        "3": "no_shard",
        HYBRID_SHARD: "hybrid_shard",
        "4": "hybrid_shard",
      };
      const strategy = map[s];
      if (strategy && strategy !== "full_shard") input.fsdpStrategy = strategy;
    }
    input.offload = truthy(f.fsdp_offload_params) ? "params" : "none";
    ramEfficientLoading = truthy(f.fsdp_cpu_ram_efficient_loading);
  }

  const switches = optimizerSwitches(y, resolved?.architecture ?? null);
  // precision as LLaMA-Factory resolves it
  if (y.pure_bf16 === true) input.precision = "pure_bf16";
  else if (y.bf16 === true) input.precision = "bf16";
  else if (y.fp16 === true) input.precision = "fp16";
  else if (
    input.sharding === undefined &&
    (input.method === "lora" || input.method === "qlora" || y.use_badam === true) &&
    !(names(y.additional_target) && list(y.additional_target).length > 0)
  ) {
    // Without bf16 or fp16 LLaMA-Factory takes a 16-bit compute dtype from the checkpoint (bf16 on a bf16 card, else
    // fp16: parser.py:640-643, patcher.py infer_optim_dtype) and nothing autocasts. It upcasts only what trains: LoRA's
    // adapters (fp32 under pure_bf16 too), and nothing under BAdam. That is pure 16-bit training (LLaMA-Factory's own
    // BAdam example is written this way). Full and freeze tuning, whose trained weights it upcasts, stay fp32
    // (FP32_NOT_EXPRESSIBLE), as do additional_target copies (upcast too) and DeepSpeed or FSDP, whose own precision
    // settings then follow the Trainer's fp32.
    const bf16 = hardware.gpu.toLowerCase() === "custom" || findGpu(hardware.gpu)?.bf16 === true;
    input.precision = bf16 ? "pure_bf16" : "fp16";
    issues.push({
      code: "PRECISION_FROM_CHECKPOINT",
      severity: "info",
      path: `${where.yamlName ?? "train.yaml"}:bf16`,
      message: `neither bf16 nor fp16 is set: LLaMA-Factory loads a ${bf16 ? "bf16 checkpoint in bf16 on this card" : "checkpoint in fp16 on this card (it has no bf16)"} and nothing autocasts; ${y.use_badam === true ? "BAdam keeps the weights 16-bit" : "only the adapters are fp32"}, so the figures are for 16-bit training${bf16 ? " of a bf16 checkpoint" : ""}`,
      hint: bf16
        ? "Set pure_bf16: true to say so, or bf16: true for mixed precision."
        : "Set fp16: true for mixed precision.",
    });
  } else input.precision = "fp32";

  const seq = num(y.cutoff_len);
  input.seqLen = seq ?? 2048; // LLaMA-Factory's default cutoff_len
  // LLaMA-Factory: neat_packing turns packing on (parser.py), and unset packing follows `stage == "pt"`
  if (y.packing === true || y.neat_packing === true || (y.packing == null && y.stage === "pt")) {
    input.packing = true;
  }
  // transformers' defaults when the YAML leaves them out
  input.microBatch = num(y.per_device_train_batch_size) ?? 8;
  input.gradAccum = num(y.gradient_accumulation_steps) ?? 1;
  if (y.disable_gradient_checkpointing === true) input.gradientCheckpointing = false;
  // read, not modelled: the rest of accelerator_config is kept as written
  if (syncEachBatchOf(y.accelerator_config)) input.syncEachBatch = true;
  if (typeof y.flash_attn === "string" && ATTENTION[y.flash_attn]) input.attention = ATTENTION[y.flash_attn];
  if (y.enable_liger_kernel === true) input.liger = true;
  if (input.method === "lora" || input.method === "qlora") {
    if (num(y.lora_rank) !== undefined) input.loraRank = y.lora_rank;
    if (num(y.lora_alpha) !== undefined) input.loraAlpha = y.lora_alpha;
    if (num(y.lora_dropout) !== undefined) input.loraDropout = y.lora_dropout;
    if (names(y.lora_target) && list(y.lora_target).length > 0 && !isAll(y.lora_target))
      input.loraTarget = list(y.lora_target);
    if (y.use_dora === true) input.useDora = true;
    if (names(y.additional_target) && list(y.additional_target).length > 0)
      input.additionalTarget = list(y.additional_target);
  }
  if (input.method === "freeze") {
    if (num(y.freeze_trainable_layers) !== undefined) input.freezeTrainableLayers = y.freeze_trainable_layers;
    if (
      names(y.freeze_trainable_modules) &&
      list(y.freeze_trainable_modules).length > 0 &&
      !isAll(y.freeze_trainable_modules)
    ) {
      input.freezeTrainableModules = list(y.freeze_trainable_modules);
    }
  }
  if (typeof y.freeze_vision_tower === "boolean") input.freezeVisionTower = y.freeze_vision_tower;
  if (typeof y.freeze_multi_modal_projector === "boolean")
    input.freezeProjector = y.freeze_multi_modal_projector;
  if (num(y.image_max_pixels) !== undefined) {
    // LLaMA-Factory reads image_max_pixels for every model and uses it only on images
    // a model that does not resolve here keeps the setting (resolving the plan reports the model)
    // kept unless the model is known to take no images (resolving the plan reports a model it cannot read)
    if (resolved === null || resolved.architecture.vision !== null) input.imageMaxPixels = y.image_max_pixels;
    else
      issues.push({
        code: "IMAGE_SETTING_UNUSED",
        severity: "info",
        path: `${where.yamlName ?? "train.yaml"}:image_max_pixels`,
        message: `image_max_pixels has no effect: ${modelName} is a text-only model, so LLaMA-Factory reads it and never uses it`,
        hint: "Nothing to change; remove the key if it was meant for a vision-language model.",
      });
  }
  // A DeepSpeed config with an "optimizer" section builds that optimizer itself: the Trainer hands DeepSpeed a
  // DummyOptim and never calls create_optimizer, so neither `optim` nor LLaMA-Factory's own optimizers are built
  // LLaMA-Factory's parser stops GaLore and APOLLO under DeepSpeed, and BAdam with LoRA, in ratio mode or under any
  // DeepSpeed stage but 3, before any optimizer is built (parser.py get_train_args, finetuning_args.py): those stops
  // are what such a run meets (LLAMAFACTORY_REJECTS, PROJECTED_OPTIMIZER_DEEPSPEED, BADAM_NEEDS_ZERO3)
  const stopsFirst =
    y.use_galore === true ||
    y.use_apollo === true ||
    (y.use_badam === true && (type === "lora" || y.badam_mode === "ratio" || input.sharding !== "zero3"));
  const own = deepspeed.kind === "none" || stopsFirst ? null : deepspeedOwnOptimizer(deepspeed.config);
  const dsName =
    deepspeed.kind === "file" ? deepspeed.path : typeof y.deepspeed === "string" ? y.deepspeed : "deepspeed";
  // what LLaMA-Factory builds once the section is gone: its own optimizer where a switch is on, else optim's
  const trains =
    switches.planned !== null
      ? LOW_MEMORY_OPTIMIZER_NAMES[switches.planned.optimizer]
      : y.loraplus_lr_ratio !== undefined && y.loraplus_lr_ratio !== null
        ? "LoRA+"
        : typeof y.optim === "string"
          ? y.optim
          : "transformers' default AdamW";
  const replaced = (key: string, what: string) =>
    issues.push({
      code: "DEEPSPEED_OWN_OPTIMIZER",
      severity: "warning",
      path: `${where.yamlName ?? "train.yaml"}:${key}`,
      message: `${what} is not used: ${dsName} defines its own optimizer (${own?.type}), which the Trainer hands to DeepSpeed instead of building one (transformers integrations/deepspeed.py deepspeed_optim_sched)${own?.modelled ? "" : `; ${own?.type} is counted as AdamW (two fp32 states)`}`,
      hint: `Remove the "optimizer" section from ${dsName} to train with ${trains}, or remove ${key}.`,
    });
  if (own === null) {
    if (typeof y.optim === "string") input.optimizer = y.optim;
  } else {
    input.optimizer = own.optim;
    if (typeof y.optim === "string") replaced("optim", `optim: ${y.optim}`);
    // nor are LLaMA-Factory's own optimizers (create_custom_optimizer)
    if (switches.planned !== null)
      replaced(`use_${switches.planned.optimizer}`, `use_${switches.planned.optimizer}: true`);
    for (const { key } of switches.ignored) replaced(key, `${key}: true`);
    if (y.loraplus_lr_ratio !== undefined && y.loraplus_lr_ratio !== null)
      replaced("loraplus_lr_ratio", "loraplus_lr_ratio (LoRA+)");
    if (!own.modelled && !issues.some((i) => i.code === "DEEPSPEED_OWN_OPTIMIZER"))
      issues.push({
        code: "DEEPSPEED_OWN_OPTIMIZER",
        severity: "info",
        path: `${dsName}:optimizer`,
        message: `${dsName} defines its own optimizer (${own.type}); tunefit counts it as AdamW (two fp32 states per trained parameter)`,
        hint: "Nothing to change; the figures are approximate for this optimizer.",
      });
  }
  const lowMemory = own === null ? switches.planned : null;
  for (const { key, builds } of own === null ? switches.ignored : [])
    issues.push({
      code: "OPTIMIZER_SWITCH_UNUSED",
      severity: "warning",
      path: `${where.yamlName ?? "train.yaml"}:${key}`,
      message: `${key}: true is not used: LLaMA-Factory builds ${builds} first (train/trainer_utils.py create_custom_optimizer); the figures are for ${builds}`,
      hint: `Remove ${key}, or the switch LLaMA-Factory builds first, to say which optimizer is meant.`,
    });
  // planned or not (on fewer modules, with LoRA): LLaMA-Factory builds either from optim
  if ((y.use_galore === true || y.use_apollo === true) && y.optim === undefined) {
    const which = LOW_MEMORY_OPTIMIZER_NAMES[y.use_galore === true ? "galore" : "apollo"];
    issues.push({
      code: "OPTIM_DEFAULT_FUSED",
      severity: "warning",
      path: `${where.yamlName ?? "train.yaml"}:optim`,
      message: `optim is not set, so transformers' default applies: adamw_torch_fused from torch 2.8 on, from which LLaMA-Factory builds no ${which} optimizer ("Unknown optim: adamw_torch_fused.", train/trainer_utils.py); the figures here are for adamw_torch`,
      hint: "Add optim: adamw_torch (what LLaMA-Factory builds GaLore and APOLLO from).",
    });
  }
  if (lowMemory !== null) {
    input.lowMemoryOptimizer = lowMemory.optimizer;
    if (lowMemory.rank !== undefined) input.lowMemoryRank = lowMemory.rank;
    if (lowMemory.layerwise !== undefined) input.lowMemoryLayerwise = lowMemory.layerwise;
  }
  // a YAML list of dataset names is written back comma-separated (split_arg reads both alike)
  const dataset =
    typeof y.dataset === "string" ? y.dataset : names(y.dataset) ? list(y.dataset).join(",") : "";
  if (DATASET_NAMES.test(dataset)) {
    input.dataset = dataset;
  }
  // Images per sample are the dataset's: given (doctor's --images-per-sample), or one for LLaMA-Factory's own
  // mllm_demo (data/mllm_demo.json: one image per sample); other datasets are not read
  // Videos per sample are the dataset's too: given (doctor's --videos-per-sample), or one for LLaMA-Factory's
  // mllm_video_demo (data/mllm_video_demo.json: one video per sample), planned on a Qwen2-VL-family model at
  // video_maxlen frames of video_max_pixels. A text-only model, or a template whose plugin has no video token, stops
  // on a video (mm_plugin.py _validate_input); other models' videos (and mllm_video_audio_demo's audio) are not in
  // the figures.
  const videoDemo = list(dataset).find((d) => d === "mllm_video_demo" || d === "mllm_video_audio_demo");
  const videoKind = resolved !== null && takesVideos(resolved.architecture);
  const textOnly = resolved !== null && resolved.architecture.vision === null;
  const templateName =
    typeof y.template === "string" ? y.template : (resolved?.defaultTemplate ?? resolved?.groupTemplate);
  const template = TEMPLATES.find((t) => t.name === templateName);
  // a text template is mended by the plan's TEMPLATE_NOT_MULTIMODAL fix; a multimodal one without a video token is
  // the user's to change (as is a text-only model)
  const noVideoPlugin = textOnly || (template?.multimodal === true && !template.video);
  const carriesVideos = videoDemo !== undefined || (where.videosPerSample ?? 0) > 0;
  const planVideos = (videos: number) => {
    input.videosPerSample = videos;
    if (videos > 0) {
      if (num(y.video_maxlen) !== undefined) input.videoFrames = y.video_maxlen;
      if (num(y.video_max_pixels) !== undefined) input.videoMaxPixels = y.video_max_pixels;
    }
  };
  const source = videoDemo ?? "the dataset";
  if (carriesVideos && noVideoPlugin) {
    issues.push({
      code: textOnly ? "VIDEOS_ON_TEXT_MODEL" : "VIDEOS_NOT_SUPPORTED",
      severity: "error",
      path: `${where.yamlName ?? "train.yaml"}:dataset`,
      message: textOnly
        ? `${source} carries videos, but ${modelName} is a text-only model: LLaMA-Factory stops with "This model does not support video input" (data/mm_plugin.py)`
        : `${source} carries videos, but template ${templateName}'s plugin takes none: LLaMA-Factory stops with "This model does not support video input" (data/mm_plugin.py)`,
      hint: textOnly
        ? "Use a dataset without videos (e.g. identity, alpaca_en_demo), or a vision-language model."
        : "Use a dataset without videos (mllm_demo, identity), or a model whose template takes videos (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA-NeXT-Video, …).",
    });
  } else if (where.videosPerSample !== undefined && (videoKind || resolved === null)) {
    planVideos(where.videosPerSample);
  } else if (videoDemo === "mllm_video_demo" && (videoKind || resolved === null)) {
    planVideos(1);
    const frames = num(y.video_maxlen) ?? 128;
    issues.push({
      code: "VIDEOS_ASSUMED",
      severity: "info",
      path: `${where.yamlName ?? "train.yaml"}:dataset`,
      message: `mllm_video_demo carries one video per sample (LLaMA-Factory's data/mllm_video_demo.json): the memory counts one video per sample at video_maxlen (${frames}) frames of up to video_max_pixels, the most LLaMA-Factory samples from a clip file; a clip shorter than video_maxlen / video_fps seconds gives fewer`,
      hint: "For datasets with more videos per sample, pass --videos-per-sample N; set video_maxlen to the frames your clips give to see their memory.",
    });
  } else if (carriesVideos) {
    issues.push({
      code: "VIDEOS_NOT_COUNTED",
      severity: "warning",
      path: `${where.yamlName ?? "train.yaml"}:dataset`,
      message: `${source} carries ${videoDemo === "mllm_video_audio_demo" ? "videos with audio" : "videos"}, which tunefit counts for the Qwen2-VL, Qwen2.5-VL and Qwen3-VL families only${videoDemo === "mllm_video_audio_demo" ? " and without their audio" : ""}: the memory shown is a lower bound`,
      hint: "Read the figures as a floor, or plan with --images-per-sample set to the frames a video becomes.",
    });
  }
  // LLaMA-Factory checks its pixel budgets for every run (model_args.py ProcessorArguments.__post_init__), whatever
  // the dataset: the plan's rules see them only where it plans images or videos
  for (const [kind, min, planned] of [
    ["video", 16 * 16, (input.videosPerSample as number | undefined) ?? 0],
    ["image", 32 * 32, resolved !== null && resolved.architecture.vision !== null ? 1 : 0],
  ] as const) {
    const max = num(y[`${kind}_max_pixels`]);
    const least = num(y[`${kind}_min_pixels`]) ?? min;
    if (max !== undefined && max < least && planned === 0) {
      // not "read and never used" then: LLaMA-Factory stops on it
      const unused = issues.findIndex((i) => i.code === "IMAGE_SETTING_UNUSED");
      if (kind === "image" && unused >= 0) issues.splice(unused, 1);
      issues.push({
        code: kind === "video" ? "VIDEO_PIXELS_BELOW_MIN" : "IMAGE_PIXELS_BELOW_MIN",
        severity: "error",
        path: `${where.yamlName ?? "train.yaml"}:${kind}_max_pixels`,
        message: `${kind}_max_pixels ${max} is below ${kind}_min_pixels (${least}): LLaMA-Factory stops while reading its arguments, videos or images in the dataset or not`,
        hint: `Set ${kind}_max_pixels to ${least} or more, or remove it.`,
      });
    }
  }
  const demoImages = list(dataset).includes("mllm_demo");
  const vision = demoImages && resolved !== null ? resolved.architecture.vision !== null : null;
  const carriesImages = demoImages || (where.imagesPerSample ?? 0) > 0;
  if (carriesImages && textOnly) {
    issues.push({
      code: "IMAGES_ON_TEXT_MODEL",
      severity: "error",
      path: `${where.yamlName ?? "train.yaml"}:dataset`,
      message: `${demoImages ? "mllm_demo" : "the dataset"} carries images, but ${modelName} is a text-only model: LLaMA-Factory stops with "This model does not support image input" (data/mm_plugin.py)`,
      hint: "Use a text dataset (e.g. identity, alpaca_en_demo), or a vision-language model.",
    });
  } else if (where.imagesPerSample !== undefined) input.imagesPerSample = where.imagesPerSample;
  else if (demoImages && vision === true) {
    input.imagesPerSample = 1;
    issues.push({
      code: "IMAGES_ASSUMED",
      severity: "info",
      path: `${where.yamlName ?? "train.yaml"}:dataset`,
      message:
        "mllm_demo carries one image per sample (LLaMA-Factory's data/mllm_demo.json): the memory counts one image per sample at image_max_pixels",
      hint: "For datasets with more images per sample, pass --images-per-sample N.",
    });
  }
  if (typeof y.template === "string" && TEMPLATE_NAME.test(y.template)) input.template = y.template;

  const name = where.yamlName ?? "train.yaml";
  for (const [key, effect] of Object.entries(NOT_MODELLED)) {
    const value = y[key];
    if (!notModelledOn(key, value)) continue;
    if (lowMemory !== null && key === `use_${lowMemory.optimizer}`) continue;
    if (switches.ignored.some((i) => i.key === key)) continue;
    if (issues.some((i) => i.code === "DEEPSPEED_OWN_OPTIMIZER" && i.path === `${name}:${key}`)) continue;
    issues.push({
      code: "NOT_MODELLED",
      severity: "warning",
      path: `${name}:${key}`,
      message: `${key}: ${String(value)} is not in tunefit's memory model: ${effect}`,
      hint: "Read the memory figures with that in mind; the run itself is unaffected.",
    });
  }

  if (bits !== undefined && type !== "lora" && type !== "oft")
    issues.push(
      upstreamStop(
        yamlName,
        "quantization_bit",
        "hparams/parser.py:237",
        "Quantization is only compatible with the LoRA or OFT method.",
        `Remove quantization_bit to train ${type === "full" ? "all weights" : "the frozen layers' complement"} in 16 bits, or use finetuning_type: lora.`,
      ),
    );
  // LLaMA Pro spreads freeze tuning's trained layers evenly (model/adapter.py:82)
  const proLayers = y.use_llama_pro === true && type === "freeze" ? (resolved?.architecture ?? null) : null;
  const proEvery = num(y.freeze_trainable_layers) ?? 2;
  if (proLayers !== null && proEvery !== 0 && proLayers.text.numLayers % proEvery !== 0)
    issues.push(
      upstreamStop(
        yamlName,
        "freeze_trainable_layers",
        "model/adapter.py:82",
        `\`num_layers\` ${proLayers.text.numLayers} should be divisible by \`num_layer_trainable\` ${proEvery}.`,
        `Set freeze_trainable_layers to a divisor of ${proLayers.text.numLayers} (LLaMA Pro trains every ${proLayers.text.numLayers}/N-th layer).`,
      ),
    );
  issues.push(
    ...keptKeyStops(
      y,
      {
        method: input.method as string | undefined,
        sharding: input.sharding as string | undefined,
        quantBits: input.quantBits as number | undefined,
      },
      resolved?.quantization != null,
      yamlName,
    ),
  );

  const planned = lowMemory === null ? [] : lowMemoryKeys(lowMemory.optimizer);
  // the video keys enter the plan only with its videos; without them they are kept as written
  const videoKeys =
    ((input.videosPerSample as number | undefined) ?? 0) > 0 ? [] : ["video_maxlen", "video_max_pixels"];
  const isModelled = (k: string) =>
    ((MODELLED_KEYS as readonly string[]).includes(k) && !videoKeys.includes(k)) || planned.includes(k);
  const modelled = Object.keys(y).filter(isModelled);
  const unmodelled = Object.keys(y).filter((k) => !isModelled(k));
  return {
    input: input as PlanInput,
    modelled,
    unmodelled,
    issues,
    ramEfficientLoading,
    switches,
    ...(own === null
      ? {}
      : {
          withoutDeepSpeedOptimizer: {
            optim: typeof y.optim === "string" ? y.optim : null,
            lowMemory: switches.planned,
            trains,
            config: dsName,
          },
        }),
  };
}
