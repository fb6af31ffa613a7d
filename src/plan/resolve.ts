import type { z } from "zod";
import { closest } from "../_util.ts";
import { DEQUANTIZED_ON_LOAD, staysQuantized } from "../catalog/config-json.ts";
import { OPTIMIZER_NAMES, TEMPLATES } from "../catalog/data/llamafactory.ts";
import {
  BYTES_PER_GIB,
  findGpu,
  gpuCapacityBytes,
  gpusNamed,
  otherVariants,
  suggestGpuIds,
} from "../catalog/gpus.ts";
import { findMirroredModel } from "../catalog/models.ts";
import { resolveModel } from "../catalog/resolve-model.ts";
import { type Issue, TunefitError, usageError } from "../errors.ts";
import { takesVideos } from "../model/support.ts";
import { countTrainable } from "../model/trainable.ts";
import {
  anyMethodOptimizer,
  METHOD_FIELDS,
  Plan,
  PlanInput,
  projectsGradients,
  type QuantBits,
  type QuantMethod,
  type ResolvedGpu,
  type ResolvedModel,
} from "../schema/plan.ts";

/** LLaMA-Factory's defaults for what a plan leaves out (hparams/*_args.py at ff6d4d12ee). */
export const PLAN_DEFAULTS = {
  gpus: 1,
  nodes: 1,
  headroom: 0.05,
  method: "lora",
  quantBits: 4,
  quantMethod: "bnb",
  sharding: "none",
  fsdpStrategy: "full_shard",
  offload: "none",
  seqLen: 2048, // cutoff_len
  packing: false,
  microBatch: 1, // tunefit's default; LLaMA-Factory's per_device_train_batch_size is 8
  gradAccum: 8,
  syncEachBatch: false, // the Trainer's GradientAccumulationPlugin default
  gradientCheckpointing: true, // disable_gradient_checkpointing: false
  attention: "auto", // flash_attn: auto
  liger: false,
  loraRank: 8,
  loraTarget: "all",
  loraDropout: 0,
  useDora: false,
  freezeTrainableLayers: 2,
  freezeTrainableModules: "all",
  lowMemoryRank: 16, // galore_rank, apollo_rank
  lowMemoryLayerwise: false, // galore_layerwise, apollo_layerwise
  freezeVisionTower: true,
  freezeProjector: true,
  imagesPerSample: 0,
  imageMaxPixels: 768 * 768,
  videosPerSample: 0,
  videoFrames: 128, // video_maxlen
  videoMaxPixels: 256 * 256, // video_max_pixels
} as const;

/** A module list without repeats, in its first order (PEFT and LLaMA-Factory wrap or train a module once). */
function distinct<T extends string | readonly string[]>(list: T): T {
  return (typeof list === "string" ? list : [...new Set(list)]) as T;
}

export interface ResolveOptions {
  /** the folder a relative model folder is read from; default the process's working directory */
  readonly cwd?: string;
}

/** A resolved plan and what resolving it noticed (warnings and notes; errors are thrown). */
export interface Resolution {
  readonly plan: Plan;
  readonly issues: readonly Issue[];
}

function fieldDescription(field: string): string | undefined {
  const shape = PlanInput.shape as Record<string, z.ZodType>;
  const meta = shape[field]?.meta() as { description?: string } | undefined;
  return meta?.description;
}

/** zod's issue in words a user reads (zod's own text, "Too small: expected number to be >=1", reads as a trace). */
function plainMessage(i: z.core.$ZodIssue): string {
  const bound = (inclusive: boolean | undefined, n: unknown, at: string, beyond: string) =>
    inclusive === false ? `must be ${beyond} ${n}` : `must be ${at} ${n}`;
  switch (i.code) {
    case "too_small":
      if (i.origin === "string" && Number(i.minimum) === 1) return "must not be empty";
      if (i.origin === "array" && Number(i.minimum) === 1) return "must name at least one";
      return i.origin === "number" || i.origin === "int" || i.origin === "bigint"
        ? bound(i.inclusive, i.minimum, "at least", "more than")
        : `must have at least ${i.minimum} ${i.origin === "string" ? "characters" : "items"}`;
    case "too_big":
      return i.origin === "number" || i.origin === "int" || i.origin === "bigint"
        ? bound(i.inclusive, i.maximum, "at most", "less than")
        : `must have at most ${i.maximum} ${i.origin === "string" ? "characters" : "items"}`;
    case "invalid_type":
      return i.expected === "int" ? "must be a whole number" : `must be a ${i.expected}`;
    case "invalid_value":
      return `must be one of ${i.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "not_multiple_of":
      return `must be a multiple of ${i.divisor}`;
    case "invalid_union":
      return "is not one of the accepted forms";
    default:
      return i.message;
  }
}

/** Turns zod's issues into tunefit issues that name the field and what it takes. */
export function zodIssues(error: z.ZodError, prefix = "", input?: unknown): Issue[] {
  return error.issues.map((i) => {
    const path = [prefix, ...i.path.map(String)].filter(Boolean).join(".") || "(root)";
    let value: unknown = input;
    for (const k of i.path)
      value =
        value !== null && typeof value === "object"
          ? (value as Record<PropertyKey, unknown>)[k as PropertyKey]
          : undefined;
    const shown = value === undefined || input === undefined ? "" : ` ${JSON.stringify(value)}`;
    const top = String(i.path[0] ?? "");
    const described = fieldDescription(top);
    const message =
      i.code === "unrecognized_keys"
        ? `unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => `"${k}"`).join(", ")}`
        : value === undefined &&
            input !== undefined &&
            i.path.length > 0 &&
            (i.code === "invalid_type" || i.code === "invalid_union")
          ? `${path} is required`
          : `${path}${shown}: ${plainMessage(i)}`;
    const hint =
      i.code === "unrecognized_keys"
        ? `Did you mean ${i.keys
            .map((k) => `"${closest(k, Object.keys(PlanInput.shape), 1)[0]}"`)
            .join(", ")}? Plan fields are the camelCase of the CLI flags (--lora-rank → loraRank).`
        : top === "method" && value === "dora"
          ? "DoRA is a LoRA variant: method lora with useDora true (--method lora --use-dora true)."
          : described
            ? `${top}: ${described}.`
            : "See `tunefit plan --help`.";
    return { code: "PLAN_INPUT_INVALID", severity: "error" as const, path, message, hint };
  });
}

/** The fields of `input` that only qualify another field it does not have (they do not apply). */
export function inapplicableFields(input: Partial<PlanInput>): string[] {
  return qualifierIssues(input).map((i) => i.path);
}

/** Flags that only qualify another one: given without it, the input does not form a plan. */
function qualifierIssues(input: Partial<PlanInput>): Issue[] {
  const method = input.method ?? PLAN_DEFAULTS.method;
  const issues: Issue[] = [];
  const need = (fields: (keyof PlanInput)[], ok: boolean, what: string, fix: string) => {
    for (const f of fields) {
      if (input[f] !== undefined && !ok) {
        issues.push({
          code: "FLAG_WITHOUT_QUALIFIED",
          severity: "error",
          path: f,
          message: `${f} only applies ${what}`,
          hint: fix,
        });
      }
    }
  };
  need(
    ["fsdpStrategy"],
    input.sharding === "fsdp",
    `with sharding fsdp (got ${input.sharding ?? "none"})`,
    "Add --sharding fsdp, or drop --fsdp-strategy.",
  );
  need(
    [...METHOD_FIELDS.quant],
    method === "qlora",
    `with method qlora (got ${method})`,
    "Add --method qlora, or drop the quantization flags.",
  );
  need(
    [...METHOD_FIELDS.lora],
    method === "lora" || method === "qlora",
    `with method lora or qlora (got ${method})`,
    "Add --method lora (or qlora), or drop the LoRA flags.",
  );
  need(
    [...METHOD_FIELDS.freeze],
    method === "freeze",
    `with method freeze (got ${method})`,
    "Add --method freeze, or drop the freeze flags.",
  );
  const lowMemory = input.lowMemoryOptimizer;
  // LLaMA-Factory: "Cannot use LoRA with GaLore, APOLLO or BAdam together." (finetuning_args.py:616). BAdam picks
  // the trained layer itself (its BlockOptimizer sets requires_grad block by block), so freeze's choice would not hold.
  need(
    ["lowMemoryOptimizer"],
    method === "full" || (method === "freeze" && lowMemory !== "badam") || anyMethodOptimizer(lowMemory),
    method === "freeze"
      ? `with method full (got freeze): BAdam chooses the trained layer itself`
      : `with method full${lowMemory === "badam" ? "" : " or freeze"} (got ${method}): LLaMA-Factory stops with "Cannot use LoRA with GaLore, APOLLO or BAdam together."`,
    "Add --method full, or drop --low-memory-optimizer.",
  );
  need(
    ["lowMemoryRank", "lowMemoryLayerwise"],
    projectsGradients(lowMemory),
    `with low-memory optimizer galore or apollo (got ${lowMemory ?? "none"})`,
    "Add --low-memory-optimizer galore (or apollo), or drop --low-memory-rank/--low-memory-layerwise.",
  );
  return issues;
}

function resolveGpu(input: PlanInput): ResolvedGpu {
  const memoryBytes = input.gpuMemory === undefined ? undefined : Math.round(input.gpuMemory * BYTES_PER_GIB);
  if (input.gpu.toLowerCase() === "custom") {
    if (memoryBytes === undefined) {
      throw usageError(
        "GPU_CUSTOM_NEEDS_MEMORY",
        "gpuMemory",
        "gpu custom has no capacity",
        "Add --gpu-memory GIB (e.g. --gpu-memory 48).",
      );
    }
    return {
      id: "custom",
      name: `custom GPU (${Number((memoryBytes / BYTES_PER_GIB).toFixed(2))} GiB)`,
      capacityBytes: memoryBytes,
      bf16: true,
      fp8: false,
      flashAttention2: true,
      computeCapability: null,
      denseBf16Tflops: null,
      denseFp16Tflops: null,
      memoryBandwidthGBps: null,
      linkGBps: null,
    };
  }
  const gpu = findGpu(input.gpu);
  const several = gpu ? [] : gpusNamed(input.gpu);
  if (several.length > 0) {
    throw usageError(
      "GPU_UNKNOWN",
      "gpu",
      `GPU "${input.gpu}" names ${several.length} cards: ${several
        .map((g) => `${g.id} (${(gpuCapacityBytes(g) / BYTES_PER_GIB).toFixed(0)} GiB)`)
        .join(", ")}`,
      `Pick one: ${several.map((g) => `--gpu ${g.id}`).join(" or ")}.`,
    );
  }
  if (!gpu) {
    throw usageError(
      "GPU_UNKNOWN",
      "gpu",
      `unknown GPU "${input.gpu}"`,
      `Did you mean ${suggestGpuIds(input.gpu)
        .map((s) => `"${s}"`)
        .join(", ")}? List all with \`tunefit gpus\`; any other card: --gpu custom --gpu-memory GIB.`,
    );
  }
  return {
    id: gpu.id,
    name: gpu.name,
    capacityBytes: memoryBytes ?? gpuCapacityBytes(gpu),
    bf16: gpu.bf16,
    fp8: gpu.fp8,
    flashAttention2: gpu.flashAttention2,
    computeCapability: gpu.computeCapability,
    denseBf16Tflops: gpu.denseBf16Tflops,
    denseFp16Tflops: gpu.denseFp16Tflops,
    memoryBandwidthGBps: gpu.memoryBandwidthGBps,
    linkGBps: gpu.linkGBps,
  };
}

function resolveTemplate(input: PlanInput, model: ResolvedModel, notes: Issue[]): string | null {
  const known = TEMPLATES.map((t) => t.name);
  if (input.template !== undefined) {
    if (!known.includes(input.template)) {
      throw usageError(
        "TEMPLATE_UNKNOWN",
        "template",
        `LLaMA-Factory has no chat template "${input.template}"`,
        `Did you mean ${closest(input.template, known, 3)
          .map((t) => `"${t}"`)
          .join(", ")}?`,
      );
    }
    return input.template;
  }
  if (model.defaultTemplate) return model.defaultTemplate;
  if (model.groupTemplate) {
    notes.push({
      code: "TEMPLATE_FROM_GROUP",
      severity: "warning",
      path: "template",
      message: `LLaMA-Factory has no default template for ${model.id} (a base model); using its group's "${model.groupTemplate}"`,
      hint: `Pass --template ${model.groupTemplate} to make this explicit, or --template empty for plain text ("default" is a Human:/Assistant: chat format).`,
    });
    return model.groupTemplate;
  }
  // LLaMA-Factory itself runs without a template: it parses the tokenizer's chat template, or takes `empty` where the
  // tokenizer has none (data/template.py get_template_and_fix_tokenizer). train.yaml then leaves the key out, and
  // LLaMA-Factory makes that choice; the template does not change the memory figures.
  notes.push({
    code: "TEMPLATE_UNSET",
    severity: "warning",
    path: "template",
    message: `LLaMA-Factory registers no chat template for ${model.id}; train.yaml leaves \`template\` out, so LLaMA-Factory parses the tokenizer's chat template, or uses \`empty\` (plain text) where the tokenizer has none`,
    hint: "Pass --template NAME to choose one (`tunefit models` lists the catalog's templates; --template empty for plain text).",
  });
  return null;
}

/** How a checkpoint's quantization_config names its method in words. */
const STORED_NAMES: Readonly<Record<QuantMethod, string>> = { gptq: "GPTQ", awq: "AWQ", bnb: "bitsandbytes" };

/**
 * A checkpoint stored quantized (its config.json's quantization_config) is loaded as stored: LLaMA-Factory trains
 * LoRA on it (QLoRA on the stored weights; `quantization_bit` "will not affect on the PTQ-quantized models") and
 * refuses any other method ("Quantized models can only be used for the LoRA tuning.", model/adapter.py). Returns the
 * method and quantization the plan takes from the checkpoint, or null where it takes them from the input.
 */
function storedQuantization(
  input: PlanInput,
  model: ResolvedModel,
  notes: Issue[],
): { method: "lora" | "qlora"; quantBits?: QuantBits; quantMethod?: QuantMethod } | null {
  const q = model.quantization;
  if (q === null) return null;
  const method = input.method ?? PLAN_DEFAULTS.method;
  const modelled = q.method !== null && q.bits !== null;
  const name = modelled
    ? `${q.bits}-bit ${STORED_NAMES[q.method as QuantMethod]}`
    : `quant_method ${q.declared}`;
  // fp8 and mxfp4 are dequantized while loading: a 16-bit model then, for any method
  if (staysQuantized(q) && (method === "full" || method === "freeze")) {
    throw usageError(
      "QUANTIZED_CHECKPOINT_LORA_ONLY",
      "method",
      `${model.id} is stored quantized (${name}, its config.json's quantization_config), and LLaMA-Factory trains only LoRA on a quantized model: "Quantized models can only be used for the LoRA tuning."`,
      "Use --method lora (adapters on the stored weights), or point --model at the 16-bit original for full or freeze tuning.",
    );
  }
  if (!modelled) {
    notes.push({
      code: "CHECKPOINT_QUANTIZATION_UNMODELLED",
      severity: "warning",
      path: "model",
      message: `${model.id}'s config.json stores it quantized (${name}${q.statedBits === null ? "" : `, ${q.statedBits} bits`}), which tunefit does not model: ${DEQUANTIZED_ON_LOAD.has(q.declared) ? "LLaMA-Factory dequantizes it while loading, and the figures are for those 16-bit weights" : "the figures are for its 16-bit weights, an upper bound"}${method === "qlora" ? "; quantization_bit does not apply to it, so it is planned as LoRA" : ""}`,
      hint: "Point --model at the 16-bit original to quantize it while loading (--method qlora).",
    });
    return method === "qlora" ? { method: "lora" } : null;
  }
  const asked =
    (input.quantMethod !== undefined && input.quantMethod !== q.method) ||
    (input.quantBits !== undefined && input.quantBits !== q.bits);
  notes.push(
    asked
      ? {
          code: "CHECKPOINT_QUANTIZED",
          severity: "warning",
          path:
            input.quantMethod !== undefined && input.quantMethod !== q.method ? "quantMethod" : "quantBits",
          message: `${model.id} is stored ${name}: LLaMA-Factory loads it as stored, and quantization_bit does not affect a quantized checkpoint; planned with its ${name} weights`,
          hint: "Leave the quantization width and method out for this checkpoint, or plan its 16-bit original to quantize it your way.",
        }
      : {
          code: "CHECKPOINT_QUANTIZED",
          severity: "info",
          path: "model",
          message: `${model.id} is stored ${name} (its config.json's quantization_config): LoRA trains on the stored weights, planned as QLoRA on them`,
          hint: "Nothing to change; the training YAML leaves quantization_bit out, as LLaMA-Factory reads the checkpoint's own.",
        },
  );
  return { method: "qlora", quantBits: q.bits as QuantBits, quantMethod: q.method as QuantMethod };
}

/**
 * Resolves user input into a Plan: validates it, resolves the model and GPU, fills LLaMA-Factory's defaults
 * and checks that every LoRA/freeze target exists in the model.
 * @throws TunefitError (usage) with every input problem found
 */
export function resolvePlan(raw: unknown, options: ResolveOptions = {}): Resolution {
  const parsed = PlanInput.safeParse(raw);
  if (!parsed.success) throw new TunefitError("usage", zodIssues(parsed.error, "", raw));
  const input = parsed.data;
  const qualifiers = qualifierIssues(input);
  if (qualifiers.length > 0) throw new TunefitError("usage", qualifiers);

  const notes: Issue[] = [];
  const model = resolveModel(input.model, options.cwd);
  const mirrored = model.source === "catalog" ? findMirroredModel(model.id) : undefined;
  if (mirrored) {
    notes.push({
      code: "MODEL_MIRROR",
      severity: "warning",
      path: "model",
      message: `${model.id} is not in the catalog; it is read as ${mirrored.id} (the same repository name under another organisation)`,
      hint: `If its config.json differs from ${mirrored.id}'s, pass the checkpoint folder instead (--model DIR). A ModelScope id downloads only with USE_MODELSCOPE_HUB=1 in LLaMA-Factory's environment.`,
    });
  }
  const gpu = resolveGpu(input);
  const found = gpu.id === "custom" ? undefined : findGpu(input.gpu);
  const variants = found ? otherVariants(input.gpu, found) : [];
  if (found && variants.length > 0) {
    notes.push({
      code: "GPU_VARIANT_ASSUMED",
      severity: "info",
      path: "gpu",
      message: `--gpu ${input.gpu} is read as ${found.id} (${found.name}); the catalog also has ${variants.map((v) => `${v.id} (${v.name}, ${v.memoryMib.toLocaleString("en-US")} MiB)`).join(", ")}`,
      hint: `Pass --gpu ${variants[0]?.id} for ${variants.length > 1 ? "another variant" : "that card"}: its memory${variants.every((v) => v.memoryMib === found.memoryMib) ? " is the same, its" : ","} compute and links ${variants.every((v) => v.memoryMib === found.memoryMib) ? "differ (step time)" : "differ"}.`,
    });
  }
  const stored = storedQuantization(input, model, notes);
  const method = stored?.method ?? input.method ?? PLAN_DEFAULTS.method;
  const lora = method === "lora" || method === "qlora";
  const freeze = method === "freeze";

  if (input.optimizer !== undefined && !OPTIMIZER_NAMES.includes(input.optimizer)) {
    throw usageError(
      "OPTIMIZER_UNKNOWN",
      "optimizer",
      `LLaMA-Factory does not accept optim "${input.optimizer}"`,
      `Did you mean ${closest(input.optimizer, OPTIMIZER_NAMES, 3)
        .map((o) => `"${o}"`)
        .join(", ")}?`,
    );
  }
  const imagesPerSample = input.imagesPerSample ?? PLAN_DEFAULTS.imagesPerSample;
  if (!model.architecture.vision && (imagesPerSample > 0 || input.imageMaxPixels !== undefined)) {
    throw usageError(
      "MODEL_HAS_NO_VISION",
      imagesPerSample > 0 ? "imagesPerSample" : "imageMaxPixels",
      `${model.id} is a text-only model (${model.architecture.modelType}); it takes no images`,
      "Drop the image flags, or pick a vision-language model (qwen2_vl, qwen2_5_vl, qwen3_vl, gemma3, mllama, minicpmv).",
    );
  }
  // Videos: frames through the vision tower in pairs (temporal_patch_size 2), as LLaMA-Factory's Qwen2-VL plugin
  // feeds them; the other vision-language families are planned with images only.
  const videosPerSample = input.videosPerSample ?? PLAN_DEFAULTS.videosPerSample;
  const videoField =
    videosPerSample > 0
      ? "videosPerSample"
      : input.videoFrames !== undefined
        ? "videoFrames"
        : input.videoMaxPixels !== undefined
          ? "videoMaxPixels"
          : null;
  const visionKind = model.architecture.vision?.kind;
  if (videoField !== null && !takesVideos(model.architecture)) {
    throw usageError(
      "MODEL_TAKES_NO_VIDEO",
      videoField,
      visionKind === undefined
        ? `${model.id} is a text-only model (${model.architecture.modelType}); it takes no videos`
        : `tunefit plans videos for the Qwen2-VL, Qwen2.5-VL and Qwen3-VL families; ${model.id} (${model.architecture.modelType}) is planned with images only`,
      "Drop the video flags, or plan a video's frames as images (--images-per-sample), or pick a Qwen2-VL, Qwen2.5-VL or Qwen3-VL model.",
    );
  }
  const loraRank = lora ? (input.loraRank ?? PLAN_DEFAULTS.loraRank) : null;
  const projected = projectsGradients(input.lowMemoryOptimizer);
  const plan: Plan = {
    model,
    gpu,
    gpus: input.gpus ?? PLAN_DEFAULTS.gpus,
    nodes: input.nodes ?? PLAN_DEFAULTS.nodes,
    hostRamBytes: input.hostRam === undefined ? null : Math.round(input.hostRam * BYTES_PER_GIB),
    headroom: input.headroom ?? PLAN_DEFAULTS.headroom,
    method,
    quantBits: method === "qlora" ? (stored?.quantBits ?? input.quantBits ?? PLAN_DEFAULTS.quantBits) : null,
    quantMethod:
      method === "qlora" ? (stored?.quantMethod ?? input.quantMethod ?? PLAN_DEFAULTS.quantMethod) : null,
    sharding: input.sharding ?? PLAN_DEFAULTS.sharding,
    fsdpStrategy: input.sharding === "fsdp" ? (input.fsdpStrategy ?? PLAN_DEFAULTS.fsdpStrategy) : null,
    offload: input.offload ?? PLAN_DEFAULTS.offload,
    lowMemoryOptimizer: input.lowMemoryOptimizer ?? null,
    lowMemoryRank: projected ? (input.lowMemoryRank ?? PLAN_DEFAULTS.lowMemoryRank) : null,
    lowMemoryLayerwise: projected ? (input.lowMemoryLayerwise ?? PLAN_DEFAULTS.lowMemoryLayerwise) : null,
    precision: input.precision ?? (gpu.bf16 ? "bf16" : "fp16"),
    // LLaMA-Factory builds GaLore and APOLLO only from `adamw_torch` (or 8-bit AdamW, Adafactor), while
    // transformers' default optim is adamw_torch_fused from torch 2.8 on ("Unknown optim"): written explicitly
    optimizer: input.optimizer ?? (projected ? "adamw_torch" : null),
    seqLen: input.seqLen ?? PLAN_DEFAULTS.seqLen,
    packing: input.packing ?? PLAN_DEFAULTS.packing,
    microBatch: input.microBatch ?? PLAN_DEFAULTS.microBatch,
    gradAccum: input.gradAccum ?? PLAN_DEFAULTS.gradAccum,
    syncEachBatch: input.syncEachBatch ?? PLAN_DEFAULTS.syncEachBatch,
    gradientCheckpointing: input.gradientCheckpointing ?? PLAN_DEFAULTS.gradientCheckpointing,
    attention: input.attention ?? PLAN_DEFAULTS.attention,
    liger: input.liger ?? PLAN_DEFAULTS.liger,
    loraRank,
    loraTarget: lora ? distinct(input.loraTarget ?? PLAN_DEFAULTS.loraTarget) : null,
    loraAlpha: lora ? (input.loraAlpha ?? (loraRank ?? PLAN_DEFAULTS.loraRank) * 2) : null,
    loraDropout: lora ? (input.loraDropout ?? PLAN_DEFAULTS.loraDropout) : null,
    useDora: lora ? (input.useDora ?? PLAN_DEFAULTS.useDora) : null,
    additionalTarget: lora ? distinct(input.additionalTarget ?? []) : null,
    freezeTrainableLayers: freeze
      ? (input.freezeTrainableLayers ?? PLAN_DEFAULTS.freezeTrainableLayers)
      : null,
    freezeTrainableModules: freeze
      ? distinct(input.freezeTrainableModules ?? PLAN_DEFAULTS.freezeTrainableModules)
      : null,
    freezeVisionTower: input.freezeVisionTower ?? PLAN_DEFAULTS.freezeVisionTower,
    freezeProjector: input.freezeProjector ?? PLAN_DEFAULTS.freezeProjector,
    imagesPerSample,
    imageMaxPixels: input.imageMaxPixels ?? PLAN_DEFAULTS.imageMaxPixels,
    videosPerSample,
    videoFrames: input.videoFrames ?? PLAN_DEFAULTS.videoFrames,
    videoMaxPixels: input.videoMaxPixels ?? PLAN_DEFAULTS.videoMaxPixels,
    dataset: input.dataset ?? null,
    template: resolveTemplate(input, model, notes),
  };
  // Validates LoRA targets, freeze modules and additional targets against the model's modules.
  countTrainable(model.architecture, plan);
  return { plan: Plan.parse(plan), issues: notes };
}
