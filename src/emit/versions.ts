/*
 * The versions the emitted files target, and every choice that depends on them, in one place. LLaMA-Factory pins
 * its dependencies (pyproject and the runtime `check_dependencies`); the bundle is written for that range and names
 * it in a header comment of each YAML file and script.
 */

export const TARGET_VERSIONS = {
  llamaFactory: "0.9.x (hiyouga/LlamaFactory@ff6d4d12ee)",
  transformers: ">=4.55.0,<=5.8.0, not 4.57.0 or 5.6.0",
  deepspeed: ">=0.10.0,<=0.18.4 (LLaMA-Factory checks it at start)",
  accelerate: ">=1.3.0,<=1.11.0 (its pyproject; the runtime check allows up to 1.15.0)",
  peft: ">=0.18.0,<=0.18.1",
  torch: ">=2.7 for FSDP2 (accelerate 1.11 passes ignored_params to fully_shard, which torch 2.6 lacks)",
  kubeflowTrainingOperator: "kubeflow.org/v1 PyTorchJob (training-operator v1.x)",
} as const;

/**
 * Model types newer than the bottom of the transformers range: the least version that has them (transformers
 * release notes: Qwen3-VL arrived in v4.57.0, which the range leaves out).
 */
export const MODEL_TYPE_MIN_TRANSFORMERS: Readonly<Partial<Record<string, string>>> = {
  qwen3_vl: ">=4.57.1",
};

/** The transformers range for a model type: the targeted one, with the least version that has the type. */
export function transformersRange(modelType?: string): string {
  const least = modelType === undefined ? undefined : MODEL_TYPE_MIN_TRANSFORMERS[modelType];
  return least === undefined
    ? TARGET_VERSIONS.transformers
    : `${TARGET_VERSIONS.transformers} (${least} for ${modelType}, which older releases do not have)`;
}

/** One line naming the targeted versions, for file headers (with the model type's least transformers). */
export function targetsLine(modelType?: string): string {
  return `Targets LLaMA-Factory ${TARGET_VERSIONS.llamaFactory}, transformers ${transformersRange(modelType)}, DeepSpeed <=0.18.4, accelerate <=1.11.0.`;
}

/**
 * Version-dependent choices. Each names what differs across the targeted range and what the emitters write so that
 * every version in it reads the file the same way.
 */
export const VERSION_CHOICES = {
  warmup: {
    key: "warmup_ratio",
    why: "warmup_ratio is accepted by every transformers in range (a real field in 4.x, deprecated but migrated to warmup_steps in 5.0–5.14, removed only in 5.15); warmup_steps is an int in 4.x and a float ratio in 5.x, so a fractional value fails on 4.x.",
  },
  reportTo: {
    value: "none",
    why: "report_to defaults to 'all' installed integrations in 4.x and to 'none' in 5.x; written explicitly.",
  },
  overwriteOutputDir: {
    why: "overwrite_output_dir was removed from transformers 5.0, but LLaMA-Factory defines the field itself, so it is accepted across the range.",
  },
  fsdpLaunch: {
    via: "accelerate",
    why: "FSDP goes through `accelerate launch` with accelerate_fsdp.yaml, never the YAML's `fsdp:` key: `fsdp: true` alone gives no auto-wrap policy (one unit for the whole model), and under transformers 5.x the key no longer exports ACCELERATE_USE_FSDP before LLaMA-Factory loads the model, so every rank would load a full replica.",
  },
  fsdp1Strategy: {
    key: "fsdp_sharding_strategy",
    why: "under accelerate launch the FSDP1 plugin reads FSDP_SHARDING_STRATEGY first (always exported, default FULL_SHARD), so the strategy is written under that key, not fsdp_reshard_after_forward.",
  },
  fsdp2Keys: {
    why: "FSDP2 takes fsdp_reshard_after_forward as a bool and drops the FSDP1-only keys (backward/forward prefetch, use_orig_params, sync_module_states); the two versions are written from separate key sets, as `accelerate to-fsdp2` maps them.",
  },
  fsdp2Upcast: {
    why: "accelerate 1.11's FSDP2 casts the whole model, frozen weights included, to fp32 after sharding (only trainable ones from 1.13); the memory model follows 1.11.",
  },
  moeExperts: {
    why: "transformers 5.x stores MoE experts as fused 3-D tensors, which `lora_target: all` (nn.Linear modules only) does not adapt; in 4.x each expert is a set of nn.Linear modules it does adapt. The trainable count follows the memory model's transformersExpertsAsLinear assumption; Qwen3-VL-MoE's experts are fused in every release.",
  },
  deepspeedAuto: {
    why: "batch sizes, gradient clipping, fp16/bf16 and ZeRO-3 bucket sizes are 'auto': transformers' HfTrainerDeepSpeedConfig fills them from the training arguments, so they cannot disagree with train.yaml.",
  },
} as const;
