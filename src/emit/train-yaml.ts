import { anyMethodOptimizer, type Plan, projectsGradients } from "../schema/plan.ts";
import { DATASET_DIR, DEMO_DATASET, finetuningType, usesDeepSpeed, usesFsdp } from "./common.ts";
import { type EmitOptions, resolveEmitOptions } from "./options.ts";

const FLASH_ATTN = { auto: null, eager: "disabled", sdpa: "sdpa", fa2: "fa2" } as const;

/** Keys of train.yaml whose numbers LLaMA-Factory reads as floats (written `3.0`, `1.0e-4`). */
export const TRAIN_YAML_FLOAT_KEYS: ReadonlySet<string> = new Set([
  "learning_rate",
  "num_train_epochs",
  "warmup_ratio",
  "lora_dropout",
]);

/** Section comments of train.yaml, as in LLaMA-Factory's examples: the first key of each section. */
export const TRAIN_YAML_SECTIONS: Readonly<Record<string, string>> = {
  model_name_or_path: "### model",
  stage: "### method",
  dataset: "### dataset",
  output_dir: "### output",
  per_device_train_batch_size: "### train",
};

/**
 * The LLaMA-Factory training YAML as a plain object, keys in the order of LLaMA-Factory's examples (model, method,
 * dataset, output, train). Only keys the targeted versions accept; defaults are left out unless LLaMA-Factory's
 * examples write them.
 */
export function trainYaml(plan: Plan, options: EmitOptions = {}): Record<string, unknown> {
  const o = resolveEmitOptions(plan, options);
  const multimodal = plan.model.architecture.vision !== null;
  const type = finetuningType(plan);
  const y: Record<string, unknown> = {};

  // ### model
  y.model_name_or_path = o.modelPath;
  if (multimodal) y.image_max_pixels = plan.imageMaxPixels;
  // the frames the plan counts: video_maxlen caps what LLaMA-Factory samples from a video file
  if (multimodal && plan.videosPerSample > 0) {
    y.video_max_pixels = plan.videoMaxPixels;
    y.video_maxlen = plan.videoFrames;
  }
  y.trust_remote_code = true;
  // a checkpoint stored quantized is loaded as stored (its quantization_config): quantization_bit would be ignored
  if (plan.method === "qlora" && plan.quantMethod === "bnb" && plan.model.quantization === null) {
    y.quantization_bit = plan.quantBits;
    y.quantization_method = "bnb";
  }
  const flash = FLASH_ATTN[plan.attention];
  if (flash !== null) y.flash_attn = flash;
  if (plan.liger) y.enable_liger_kernel = true;

  // ### method
  y.stage = "sft";
  y.do_train = true;
  y.finetuning_type = type;
  if (type === "lora") {
    y.lora_rank = plan.loraRank;
    if (plan.loraAlpha !== null && plan.loraAlpha !== 2 * (plan.loraRank ?? 8)) y.lora_alpha = plan.loraAlpha;
    if (plan.loraDropout) y.lora_dropout = plan.loraDropout;
    y.lora_target = plan.loraTarget === "all" ? "all" : (plan.loraTarget ?? []).join(",");
    if (plan.additionalTarget?.length) y.additional_target = plan.additionalTarget.join(",");
    if (plan.useDora) y.use_dora = true;
  }
  if (type === "freeze") {
    y.freeze_trainable_layers = plan.freezeTrainableLayers;
    y.freeze_trainable_modules =
      plan.freezeTrainableModules === "all" ? "all" : (plan.freezeTrainableModules ?? []).join(",");
  }
  // the memory-efficient optimizers (finetuning_args.py GaloreArguments, ApolloArguments, BAdamArgument)
  if (projectsGradients(plan.lowMemoryOptimizer)) {
    const k = plan.lowMemoryOptimizer;
    y[`use_${k}`] = true;
    y[`${k}_target`] = "all";
    y[`${k}_rank`] = plan.lowMemoryRank;
    if (plan.lowMemoryLayerwise) y[`${k}_layerwise`] = true;
  }
  if (anyMethodOptimizer(plan.lowMemoryOptimizer)) y[`use_${plan.lowMemoryOptimizer}`] = true;
  if (plan.lowMemoryOptimizer === "badam") {
    y.use_badam = true;
    // LLaMA-Factory's defaults, written out as its example (examples/extras/badam/llama3_full_sft.yaml) does
    y.badam_mode = "layer";
    y.badam_switch_mode = "ascending";
    y.badam_switch_interval = 50;
  }
  if (multimodal) {
    y.freeze_vision_tower = plan.freezeVisionTower;
    y.freeze_multi_modal_projector = plan.freezeProjector;
  }
  if (!plan.gradientCheckpointing) y.disable_gradient_checkpointing = true;
  if (plan.precision === "pure_bf16") y.pure_bf16 = true;
  if (usesDeepSpeed(plan)) y.deepspeed = o.deepspeedPath;

  // ### dataset
  y.dataset = plan.dataset ?? DEMO_DATASET;
  if (plan.dataset === null) y.dataset_dir = DATASET_DIR;
  if (plan.template !== null) y.template = plan.template;
  y.cutoff_len = plan.seqLen;
  if (plan.packing) y.packing = true;
  if (plan.dataset === null) y.max_samples = o.training.maxSamples; // never cut the user's own dataset
  y.preprocessing_num_workers = o.training.preprocessingWorkers;
  y.dataloader_num_workers = o.training.dataloaderWorkers;

  // ### output
  y.output_dir = o.training.outputDir;
  y.logging_steps = o.training.loggingSteps;
  y.save_steps = o.training.saveSteps;
  y.plot_loss = true;
  y.overwrite_output_dir = true;
  y.save_only_model = false;
  y.report_to = "none";

  // ### train
  y.per_device_train_batch_size = plan.microBatch;
  y.gradient_accumulation_steps = plan.gradAccum;
  // transformers' AcceleratorConfig → accelerate's GradientAccumulationPlugin: the Trainer then reduces the
  // gradients after every micro-batch instead of entering no_sync (FSDP1 keeps them sharded)
  if (plan.syncEachBatch) y.accelerator_config = { gradient_accumulation_kwargs: { sync_each_batch: true } };
  y.learning_rate = o.training.learningRate;
  y.num_train_epochs = o.training.epochs;
  y.lr_scheduler_type = "cosine";
  y.warmup_ratio = o.training.warmupRatio;
  // pure_bf16 alone already computes in bf16; beside FSDP, `bf16: true` would make accelerate upcast the weights
  if (plan.precision === "bf16" || (plan.precision === "pure_bf16" && !usesFsdp(plan))) y.bf16 = true;
  if (plan.precision === "fp16") y.fp16 = true;
  if (plan.optimizer !== null) y.optim = plan.optimizer;
  y.ddp_timeout = 180000000;
  y.resume_from_checkpoint = null;

  for (const key of options.trainYaml?.remove ?? []) delete y[key];
  for (const [key, value] of Object.entries(options.trainYaml?.set ?? {})) y[key] = value;
  return y;
}
