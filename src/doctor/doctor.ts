import { findGpu } from "../catalog/gpus.ts";
import { deepspeedBatchIssues } from "../emit/check-bundle.ts";
import { usesFsdp } from "../emit/common.ts";
import { type Issue, TunefitError, usageError } from "../errors.ts";
import { DEFAULT_ASSUMPTIONS, type MemoryAssumptions } from "../memory/assumptions.ts";
import { estimateLoadMemory } from "../memory/load.ts";
import { mediaSequenceTokens } from "../memory/train.ts";
import { analyzePlan, type PlanAnalysis } from "../plan/analyze.ts";
import { estimateStepTime } from "../plan/step-time.ts";
import {
  type Attention,
  anyMethodOptimizer,
  deepspeedCpuAdam,
  isDeepSpeed,
  isFsdp,
  LOW_MEMORY_OPTIMIZER_NAMES,
  LowMemoryOptimizer,
  METHOD_FIELDS,
  type Method,
  type ModelDefinition,
  type Offload,
  optimSteps,
  type PlanInput,
  type Precision,
  plainAdamW,
  projectsGradients,
  type Sharding,
} from "../schema/plan.ts";
import { checkAccelerateFsdpConfig, checkDeepSpeedConfig, checkTrainYaml } from "../schema/targets/index.ts";
import type { DeepSpeedSource } from "./read.ts";
import {
  acceleratorConfigOf,
  type Hardware,
  KNOWN_QUANTIZATION_METHODS,
  keptKeyStops,
  type Launcher,
  lowMemoryKey,
  type SetupPlan,
  setupToPlan,
  upperBoundSwitches,
  upstreamStop,
  YAML_KEY_OF_PLAN_FIELD,
  yamlHint,
} from "./to-plan.ts";

/*
 * doctor: what an existing LLaMA-Factory setup will do on given hardware, and the smallest change that makes it
 * run. "Smallest" counts what the user edits — changed YAML keys, a changed launcher, added or changed files —
 * and breaks ties by the estimated step time.
 */

export interface DoctorInput {
  /** the training YAML as LLaMA-Factory reads it (overrides applied) */
  readonly yaml: Readonly<Record<string, unknown>>;
  /** how the YAML is named in messages */
  readonly yamlName?: string;
  readonly deepspeed: DeepSpeedSource;
  readonly accelerate: Readonly<Record<string, unknown>> | null;
  readonly launcher: Launcher;
  readonly hardware: Hardware;
  /**
   * a catalog id or config.json folder to estimate with, when model_name_or_path is not one, or the model's
   * definition (`{ id, config }`: e.g. the config.json the CLI read from the Hub for model_name_or_path)
   */
  readonly model?: string | ModelDefinition;
  /** the folder relative model paths are resolved from (the launch folder) */
  readonly cwd?: string;
  /** issues found while reading the files */
  readonly readIssues?: readonly Issue[];
  /** overrides of the memory model's assumptions, for the verdict and every candidate fix */
  readonly assumptions?: Partial<MemoryAssumptions>;
  /** images each training sample carries (the dataset's; a YAML holds none) */
  readonly imagesPerSample?: number;
  /** videos each training sample carries (the dataset's) */
  readonly videosPerSample?: number;
}

/** One edit of the setup. */
export interface Change {
  readonly kind: "yaml" | "launcher" | "file";
  /** the YAML key, `launcher`, or the file name */
  readonly target: string;
  /** the new value (YAML) or description; undefined removes the key */
  readonly to?: unknown;
  readonly text: string;
}

export interface Fix {
  readonly input: PlanInput;
  readonly launcher: Launcher;
  readonly changes: readonly Change[];
  /**
   * edits (changed YAML keys, launcher, added or changed files), plus STRATEGY_CHANGE_COST when the sharding or
   * launcher changes and METHOD_CHANGE_COST when the method does
   */
  readonly cost: number;
  readonly deviceBytes: number;
  readonly stepSeconds: number;
  /** the analysis of the fixed plan */
  readonly analysis: PlanAnalysis;
}

export interface DoctorReport {
  readonly setup: SetupPlan;
  readonly launcher: Launcher;
  readonly analysis: PlanAnalysis;
  /** config-file problems first, then the plan's */
  readonly issues: readonly Issue[];
  /** what will happen, in sentences with numbers */
  readonly verdict: readonly string[];
  /** null when the setup runs as it is */
  readonly fix: Fix | null;
  /** other fixes, cheapest first */
  readonly alternatives: readonly Fix[];
  /**
   * Errors in the training YAML that no change tunefit can choose addresses (a value outside a key's choices with
   * no known successor): they are to be corrected by hand, and no fix is searched until they are.
   */
  readonly byHand: readonly Issue[];
  readonly valid: boolean;
}

/**
 * Host memory per node a fix may rely on when --host-ram is not given, in GiB. CPU offload moves the model states
 * to the host (16 bytes per trained parameter with Adam): without a bound, "offload everything" would fix any
 * setup on paper. 512 GiB is what 8-GPU servers are commonly fitted with (e.g. NVIDIA DGX A100: 1 TB; typical
 * 8× RTX 4090 / L40S servers: 256–512 GB). Override with `hostRam` in the hardware.
 */
export const ASSUMED_HOST_RAM_GIB = 512;

/**
 * What changing the parallel strategy (sharding or launcher) adds to a fix's count of edits: it changes how the
 * whole run executes, more than any one key, so a fix that keeps the user's strategy wins a tie of edits.
 */
export const STRATEGY_CHANGE_COST = 1;

/**
 * What changing the method (full → LoRA, LoRA → QLoRA, …) adds to a fix's count of edits: it changes what the run
 * trains and so its result, not only how it executes, so a fix that keeps the user's method wins a tie of edits.
 */
export const METHOD_CHANGE_COST = 1;

/** a checkpoint's size as the Hub shows it (GB of 10⁹ bytes), with the GiB the card's capacity is given in */
const gb = (bytes: number) => `${(bytes / 1e9).toFixed(1)} GB (${(bytes / 1024 ** 3).toFixed(1)} GiB)`;
const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
const ORDER = { error: 0, warning: 1, info: 2 } as const;

/** Config-file issues: unknown keys and bad values as LLaMA-Factory, DeepSpeed and accelerate would fail on them. */
function configIssues(input: DoctorInput, setup: SetupPlan, world: number): Issue[] {
  const name = input.yamlName ?? "train.yaml";
  const issues: Issue[] = [...(input.readIssues ?? []), ...setup.issues];
  // a value reading the files already stopped on (deepspeed: 123) is not reported twice
  const read = new Set((input.readIssues ?? []).filter((i) => i.severity === "error").map((i) => i.path));
  issues.push(
    ...checkTrainYaml(input.yaml, name)
      .filter((i) => !read.has(i.path))
      .map((i) => (i.path === `${name}:quantization_method` ? unknownQuantizationMethod(i, input.yaml) : i)),
  );
  const ds = input.deepspeed;
  if (ds.kind !== "none") {
    issues.push(...checkDeepSpeedConfig(ds.config, ds.kind === "file" ? ds.path : `${name}:deepspeed`));
    issues.push(
      ...deepspeedBatchIssues(
        ds.config,
        input.yaml,
        world,
        ds.kind === "file" ? ds.path : `${name}:deepspeed`,
      ),
    );
    if (input.launcher === "torchrun" && world === 1) {
      issues.push({
        code: "DEEPSPEED_NEEDS_TORCHRUN",
        severity: "warning",
        path: `${name}:deepspeed`,
        message:
          'with one GPU, llamafactory-cli runs without torchrun unless FORCE_TORCHRUN=1 is set, and LLaMA-Factory then stops with "Please use FORCE_TORCHRUN=1 to launch DeepSpeed training."',
        hint: "Launch with FORCE_TORCHRUN=1 llamafactory-cli train … (the launch.sh tunefit writes does).",
      });
    }
  }
  if (input.accelerate !== null) {
    if (input.launcher === "torchrun") {
      issues.push({
        code: "ACCELERATE_CONFIG_UNUSED",
        severity: "warning",
        path: "--accelerate-config",
        message:
          "llamafactory-cli (torchrun) does not read an accelerate config: FSDP settings there are ignored",
        hint: "Launch with accelerate launch --config_file … (--launcher accelerate).",
      });
    } else if (input.accelerate.distributed_type === "FSDP") {
      issues.push(...checkAccelerateFsdpConfig(input.accelerate, "accelerate config"));
      // accelerate launch starts num_processes ranks (over num_machines), whatever the machine has
      const processes = input.accelerate.num_processes;
      if (typeof processes === "number" && Number.isInteger(processes) && processes !== world) {
        issues.push({
          code: "ACCELERATE_PROCESSES_MISMATCH",
          severity: "warning",
          path: "accelerate config:num_processes",
          message: `the accelerate config starts ${processes} process(es) (num_processes), but the hardware given is ${world} GPU(s): accelerate launch runs ${processes} ranks, and the figures here are for ${world}`,
          hint: `Set num_processes: ${world} in the accelerate config (or pass --num_processes ${world} to accelerate launch), or give --gpus/--nodes for the ${processes} GPU(s) it will use.`,
        });
      }
      if (ds.kind !== "none") {
        issues.push({
          code: "DEEPSPEED_WITH_FSDP",
          severity: "error",
          path: `${name}:deepspeed`,
          message:
            "the YAML names a DeepSpeed config and accelerate is set up for FSDP: one strategy at a time",
          hint: "Remove deepspeed: from the YAML, or launch with llamafactory-cli.",
        });
      }
    }
  }
  // LLaMA-Factory's "distributed" is transformers' parallel_mode: several processes, or DeepSpeed (under torchrun) or
  // FSDP (under accelerate) on any number
  const distributed =
    world > 1 ||
    input.deepspeed.kind !== "none" ||
    (input.launcher === "accelerate" && input.accelerate?.distributed_type === "FSDP");
  // a switch the plan carries is checked by the plan's own rules (LAYERWISE_*, PROJECTED_OPTIMIZER_*, BADAM_*)
  if (setup.input.lowMemoryOptimizer === undefined)
    issues.push(...optimizerSwitchIssues(input.yaml, name, distributed, setup.input.sharding === "zero3"));
  return issues;
}

/**
 * LLaMA-Factory reads YAML values into its dataclasses as written (HfArgumentParser.parse_dict converts no enum), and
 * configure_quantization's method chain has no else: a quantization_method it does not know quantizes nothing. The
 * run trains LoRA on the 16-bit model, which is what the plan counts.
 */
function unknownQuantizationMethod(i: Issue, yaml: Readonly<Record<string, unknown>>): Issue {
  if (i.code !== "TARGET_BAD_VALUE") return i;
  const legacy = yaml.quantization_method === "bitsandbytes";
  return {
    ...i,
    severity: "warning",
    message: `quantization_method is ${JSON.stringify(yaml.quantization_method)}, which LLaMA-Factory does not know${legacy ? " (bitsandbytes is bnb since its QuantizationMethod renamed it)" : ""}: no quantization branch runs, so the model loads unquantized and LoRA trains on 16-bit weights, as counted here`,
    hint: `Write quantization_method: ${legacy ? "bnb" : "bnb (or hqq, eetq)"} to quantize as meant.`,
  };
}

/** Plan rules on keys no candidate of the fix search changes (layer-wise updates, GaLore's optim). */
const BY_HAND_RULES = new Set([
  "LAYERWISE_DISTRIBUTED",
  "LAYERWISE_GRAD_ACCUM",
  "PROJECTED_OPTIMIZER_OPTIM",
  // the dataset's media against the model or template: the dataset is the user's to change
  "IMAGES_ON_TEXT_MODEL",
  // a pixel budget under LLaMA-Factory's minimum: the user's to choose
  "IMAGE_PIXELS_BELOW_MIN",
  "VIDEO_PIXELS_BELOW_MIN",
  "VIDEOS_ON_TEXT_MODEL",
  "VIDEOS_NOT_SUPPORTED",
]);

/**
 * The memory-saving switches of a YAML that could bring an over-the-card training figure under the card: the
 * figure without every term they shrink (optimizer states and gradients for the optimizers, BAdam's fp32 upcast
 * of the weights too, activations for Unsloth's offloaded checkpointing) fits. Empty when even that does not fit:
 * then the out-of-memory stands.
 */
function coverableBySwitches(
  y: Readonly<Record<string, unknown>>,
  analysis: PlanAnalysis,
  setup: SetupPlan,
): string[] {
  const switches = upperBoundSwitches(y, setup);
  if (switches.length === 0) return [];
  const t = analysis.memory.train;
  const b = t.perGpu.breakdown;
  let saved = 0;
  if (switches.some((k) => k !== "use_unsloth" && k !== "use_unsloth_gc")) saved += b.optimizer + b.gradients;
  if (switches.includes("use_badam")) saved += b.weights / 2;
  if (switches.includes("use_unsloth") || switches.includes("use_unsloth_gc")) saved += b.activations;
  return t.perGpu.deviceBytes - saved <= t.capacityBytes ? switches : [];
}

/**
 * LLaMA-Factory's checks on GaLore, APOLLO and BAdam, which a plan cannot carry but a YAML can (hparams/parser.py
 * get_train_args, finetuning_args.py __post_init__, train/trainer_utils.py; LLaMA-Factory ff6d4d12ee).
 * "Distributed" is torchrun's parallel mode: more than one process, or DeepSpeed.
 */
function optimizerSwitchIssues(
  y: Readonly<Record<string, unknown>>,
  name: string,
  distributed: boolean,
  zero3: boolean,
): Issue[] {
  const on = (key: string) => y[key] === true;
  const galore = on("use_galore");
  const apollo = on("use_apollo");
  const badam = on("use_badam");
  if (!galore && !apollo && !badam) return [];
  const out: Issue[] = [];
  const stop = (key: string, upstream: string, message: string, hint: string) =>
    out.push(upstreamStop(name, key, upstream, message, hint));
  const type = typeof y.finetuning_type === "string" ? y.finetuning_type : "lora";
  const accumulation = typeof y.gradient_accumulation_steps === "number" ? y.gradient_accumulation_steps : 1;
  if (type === "lora")
    stop(
      "finetuning_type",
      "finetuning_args.py:616",
      "Cannot use LoRA with GaLore, APOLLO or BAdam together.",
      "Set finetuning_type: full (these optimizers train full weights), or drop the optimizer switch.",
    );
  if (Number(galore) + Number(apollo) + Number(badam) > 1)
    stop(
      badam ? "use_badam" : "use_apollo",
      "finetuning_args.py:619",
      "Cannot use GaLore, APOLLO or BAdam together.",
      "Keep one of use_galore, use_apollo and use_badam.",
    );
  if (distributed && galore && on("galore_layerwise"))
    stop(
      "galore_layerwise",
      "parser.py:507",
      "Distributed training does not support layer-wise GaLore.",
      "Set galore_layerwise: false, or train on one GPU.",
    );
  if (distributed && apollo && on("apollo_layerwise"))
    stop(
      "apollo_layerwise",
      "parser.py:510",
      "Distributed training does not support layer-wise APOLLO.",
      "Set apollo_layerwise: false, or train on one GPU.",
    );
  if (distributed && badam && y.badam_mode === "ratio")
    stop(
      "badam_mode",
      "parser.py:514",
      "Radio-based BAdam does not yet support distributed training, use layer-wise BAdam.",
      "Set badam_mode: layer (with DeepSpeed ZeRO-3), or train on one GPU.",
    );
  if (distributed && badam && y.badam_mode !== "ratio" && !zero3)
    stop(
      "use_badam",
      "parser.py:516",
      "Layer-wise BAdam only supports DeepSpeed ZeRO-3 training.",
      "Add a ZeRO-3 DeepSpeed config (deepspeed: …), or train on one GPU.",
    );
  if ((galore || apollo) && y.deepspeed !== undefined && y.deepspeed !== null)
    stop(
      galore ? "use_galore" : "use_apollo",
      "parser.py:519",
      "GaLore and APOLLO are incompatible with DeepSpeed yet.",
      "Remove deepspeed: from the YAML.",
    );
  if (galore && on("galore_layerwise") && accumulation !== 1)
    stop(
      "gradient_accumulation_steps",
      "trainer_utils.py:251",
      "Per-layer GaLore does not support gradient accumulation.",
      "Set gradient_accumulation_steps: 1 (and raise per_device_train_batch_size to keep the batch).",
    );
  if (apollo && on("apollo_layerwise") && accumulation !== 1)
    stop(
      "gradient_accumulation_steps",
      "trainer_utils.py:338",
      "Per-layer APOLLO does not support gradient accumulation.",
      "Set gradient_accumulation_steps: 1 (and raise per_device_train_batch_size to keep the batch).",
    );
  if ((galore || apollo) && !on("pure_bf16"))
    out.push({
      code: "LLAMAFACTORY_WARNS",
      severity: "warning",
      path: `${name}:${galore ? "use_galore" : "use_apollo"}`,
      message:
        'LLaMA-Factory warns "Using GaLore or APOLLO with mixed precision training may significantly increases GPU memory usage." (parser.py:574): the trained weights are upcast to fp32',
      hint: "Set pure_bf16: true, as LLaMA-Factory's GaLore and APOLLO examples do.",
    });
  return out;
}

/** The launcher a plan needs: accelerate for FSDP, llamafactory-cli otherwise. */
const launcherOf = (sharding: Sharding): Launcher => (isFsdp(sharding) ? "accelerate" : "torchrun");

interface Variant {
  method: Method;
  quantBits?: 4 | 8;
  /** the setup's GaLore, APOLLO or BAdam is dropped (adapters cannot take them) */
  dropLowMemory?: boolean;
  /** the setup's DeepSpeed config is rewritten without its "optimizer" section, so the YAML's optim applies */
  dropDeepSpeedOptimizer?: boolean;
  sharding: Sharding;
  offload: Offload;
  precision: Precision;
  liger: boolean;
  attention?: Attention;
  microBatch: number;
  gradAccum: number;
  syncEachBatch: boolean;
  /** the fused AdamW in place of the default foreach one (full and freeze tuning: no step copy of the weights) */
  optimizer?: string;
  /** a cutoff_len that holds the sample's image and video tokens, where the setup's does not */
  seqLen?: number;
}

/** The edits that turn the setup into a variant, and their count. */
function changesFor(
  yaml: Readonly<Record<string, unknown>>,
  base: PlanInput,
  baseLauncher: Launcher,
  ramEfficient: boolean,
  v: Variant,
  deepspeedMissing = false,
  /** what trains once the setup's DeepSpeed config drops its own optimizer */
  trains = "transformers' default AdamW",
  /** the setup's DeepSpeed or accelerate config has errors of its own: a fix that keeps the strategy replaces it */
  broken: BrokenConfigs = { deepspeed: false, accelerate: false },
): Change[] {
  const ch: Change[] = [];
  const type = (m: Method) => (m === "qlora" ? "lora" : m);
  const baseMethod = base.method ?? "lora";
  if (type(v.method) !== type(baseMethod)) {
    ch.push({
      kind: "yaml",
      target: "finetuning_type",
      to: type(v.method),
      text: `finetuning_type: ${type(v.method)}`,
    });
  }
  // the YAML's own quantization_bit, whatever the method read from it: one the fix keeps, LLaMA-Factory applies
  const yamlBits = typeof yaml.quantization_bit === "number" ? yaml.quantization_bit : undefined;
  const baseBits = baseMethod === "qlora" ? (base.quantBits ?? 4) : yamlBits;
  const bits = v.method === "qlora" ? (v.quantBits ?? 4) : undefined;
  if (bits !== baseBits) {
    ch.push({
      kind: "yaml",
      target: "quantization_bit",
      to: bits,
      text: bits === undefined ? "remove quantization_bit" : `quantization_bit: ${bits}`,
    });
  }
  // a quantization_method LLaMA-Factory does not know quantizes nothing (unknownQuantizationMethod): a fix that
  // quantizes names bitsandbytes as it does now
  const qm = yaml.quantization_method;
  if (bits !== undefined && typeof qm === "string" && !KNOWN_QUANTIZATION_METHODS.includes(qm)) {
    ch.push({
      kind: "yaml",
      target: "quantization_method",
      to: "bnb",
      text: `quantization_method: bnb (${qm === "bitsandbytes" ? "LLaMA-Factory's current name for bitsandbytes" : "bitsandbytes, which it knows"})`,
    });
  }
  // adapters take no GaLore, APOLLO or BAdam (finetuning_args.py:616), planned or not; where the plan's optimizer is
  // dropped, the switches LLaMA-Factory left unused go too, or the next of them would be built in its place
  const toLora = type(v.method) === "lora" && type(baseMethod) !== "lora";
  for (const k of LowMemoryOptimizer.options) {
    const key = `use_${k}`;
    const rejected = k === "galore" || k === "apollo" || k === "badam";
    if (yaml[key] === true && ((toLora && rejected) || v.dropLowMemory))
      ch.push({
        kind: "yaml",
        target: key,
        text: `remove ${key} (LLaMA-Factory trains adapters without it)`,
      });
  }
  if (v.precision !== base.precision) {
    // a precision read from the checkpoint (PRECISION_FROM_CHECKPOINT) is no key of the YAML
    if (base.precision === "pure_bf16" && yaml.pure_bf16 === true)
      ch.push({ kind: "yaml", target: "pure_bf16", text: "remove pure_bf16" });
    if (v.precision === "pure_bf16")
      ch.push({
        kind: "yaml",
        target: "pure_bf16",
        to: true,
        text: "pure_bf16: true (16-bit weights and states)",
      });
    if (v.precision === "bf16" && yaml.bf16 !== true) {
      ch.push({ kind: "yaml", target: "bf16", to: true, text: "bf16: true" });
    }
    if (v.precision === "fp16") {
      if (yaml.bf16 === true) ch.push({ kind: "yaml", target: "bf16", text: "remove bf16" });
      ch.push({ kind: "yaml", target: "fp16", to: true, text: "fp16: true (the GPU has no bf16)" });
    }
  }
  if (v.attention !== undefined && v.attention !== (base.attention ?? "auto")) {
    ch.push({
      kind: "yaml",
      target: "flash_attn",
      to: v.attention,
      text: `flash_attn: ${v.attention} (the GPU has no FlashAttention-2)`,
    });
  }
  const baseSharding = base.sharding ?? "none";
  const launcher = launcherOf(v.sharding);
  if (launcher !== baseLauncher) {
    ch.push({
      kind: "launcher",
      target: "launcher",
      to: launcher,
      text:
        launcher === "accelerate"
          ? "launch with accelerate launch --config_file accelerate_fsdp.yaml (see launch.sh)"
          : "launch with llamafactory-cli train (see launch.sh)",
    });
  }
  const strategyChanged =
    v.sharding !== baseSharding ||
    v.offload !== (base.offload ?? "none") ||
    (isFsdp(v.sharding) && !ramEfficient);
  if (isDeepSpeed(v.sharding)) {
    if (deepspeedMissing) {
      // one edit: the bundle's deepspeed.json, which the fixed YAML then names
      ch.push({
        kind: "file",
        target: "deepspeed.json",
        text: `write deepspeed.json (${v.sharding.replace("zero", "ZeRO-")}${v.offload !== "none" ? `, offload ${v.offload}` : ""}) and name it in deepspeed: (the file the YAML names is not there)`,
      });
    } else if (!isDeepSpeed(baseSharding)) {
      ch.push({ kind: "yaml", target: "deepspeed", to: "deepspeed.json", text: "deepspeed: deepspeed.json" });
      ch.push({
        kind: "file",
        target: "deepspeed.json",
        text: `add deepspeed.json (${v.sharding.replace("zero", "ZeRO-")}${v.offload !== "none" ? `, offload ${v.offload}` : ""})`,
      });
    } else if (!strategyChanged && broken.deepspeedPatch !== undefined) {
      // only its batch sizes contradict the YAML: those become "auto", every other setting stays
      ch.push(autoBatchChange(broken.deepspeedPatch.config, broken.deepspeedPatch.keys));
    } else if (strategyChanged || broken.deepspeed) {
      ch.push({
        kind: "file",
        target: "deepspeed.json",
        text: `replace the DeepSpeed config (${v.sharding.replace("zero", "ZeRO-")}${v.offload !== "none" ? `, offload ${v.offload}` : ""})${broken.deepspeed && !strategyChanged ? ' by tunefit\'s, whose batch sizes are "auto" (the one named has the errors above)' : ""}`,
      });
    }
  } else if (isDeepSpeed(baseSharding) || deepspeedMissing || yamlNamesDeepSpeed(yaml)) {
    ch.push({ kind: "yaml", target: "deepspeed", text: "remove deepspeed" });
  }
  if (v.dropDeepSpeedOptimizer) {
    ch.push({
      kind: "file",
      target: "deepspeed.json",
      text: `replace the DeepSpeed config by one without its "optimizer" section (${v.sharding.replace("zero", "ZeRO-")}${v.offload !== "none" ? `, offload ${v.offload}` : ""}), so that ${trains} is what trains`,
    });
  }
  if (isFsdp(v.sharding)) {
    const what = `${v.sharding === "fsdp2" ? "FSDP2" : "FSDP1"} with RAM-efficient loading${v.offload !== "none" ? ", parameter offload" : ""}`;
    if (!isFsdp(baseSharding) || baseLauncher !== "accelerate") {
      ch.push({ kind: "file", target: "accelerate_fsdp.yaml", text: `add accelerate_fsdp.yaml (${what})` });
    } else if (strategyChanged || broken.accelerate) {
      ch.push({
        kind: "file",
        target: "accelerate_fsdp.yaml",
        text: `replace the accelerate config (${what})${broken.accelerate ? ` ${REPLACES_BROKEN_ACCELERATE}` : ""}`,
      });
    }
  }
  if (v.optimizer !== undefined && v.optimizer !== base.optimizer) {
    ch.push({
      kind: "yaml",
      target: "optim",
      to: v.optimizer,
      text: `optim: ${v.optimizer} (no step copy of the weights, which adamw_torch, the default before torch 2.8, makes)`,
    });
  }
  if (v.liger !== (base.liger ?? false)) {
    ch.push({
      kind: "yaml",
      target: "enable_liger_kernel",
      to: v.liger,
      text: `enable_liger_kernel: ${v.liger}`,
    });
  }
  if (v.syncEachBatch && !(base.syncEachBatch ?? false)) {
    ch.push({
      kind: "yaml",
      target: "accelerator_config",
      to: withSyncEachBatch(yaml.accelerator_config),
      text: "accelerator_config: {gradient_accumulation_kwargs: {sync_each_batch: true}} (reduce the gradients after every micro-batch)",
    });
  }
  if (v.seqLen !== undefined && v.seqLen !== base.seqLen) {
    ch.push({
      kind: "yaml",
      target: "cutoff_len",
      to: v.seqLen,
      text: `cutoff_len: ${v.seqLen} (room for the sample's image and video tokens)`,
    });
  }
  if (v.microBatch !== base.microBatch) {
    ch.push({
      kind: "yaml",
      target: "per_device_train_batch_size",
      to: v.microBatch,
      text: `per_device_train_batch_size: ${v.microBatch}`,
    });
    ch.push({
      kind: "yaml",
      target: "gradient_accumulation_steps",
      to: v.gradAccum,
      text: `gradient_accumulation_steps: ${v.gradAccum} (same global batch)`,
    });
    // a DeepSpeed config that writes the batch sizes out would now contradict them: they become "auto"
    const dsc = broken.deepspeedConfig;
    const explicit = BATCH_KEYS.filter((k) => typeof dsc?.[k] === "number");
    if (dsc !== undefined && isDeepSpeed(v.sharding) && explicit.length > 0) {
      const at = ch.findIndex((c) => c.kind === "file" && c.target === "deepspeed.json");
      const own = at < 0 ? dsc : (ch[at]?.to as Record<string, unknown> | undefined);
      // tunefit's own config (a replacement without `to`) has them "auto" already
      if (own !== undefined) {
        const patch = autoBatchChange(own, explicit);
        if (at < 0) ch.push(patch);
        else ch[at] = patch;
      }
    }
  }
  return ch;
}

/** The user's DeepSpeed config with these batch keys "auto" (transformers fills them), written as deepspeed.json. */
function autoBatchChange(config: Readonly<Record<string, unknown>>, keys: readonly string[]): Change {
  return {
    kind: "file",
    target: "deepspeed.json",
    to: { ...config, ...Object.fromEntries(keys.map((k) => [k, "auto"])) },
    text: `write the DeepSpeed config with ${keys.join(", ")} set to "auto" (transformers fills ${keys.length === 1 ? "it" : "them"} from the YAML; every other setting kept) as deepspeed.json, named in deepspeed:`,
  };
}

/** The DeepSpeed batch sizes transformers checks against the training arguments. */
const BATCH_KEYS = [
  "train_micro_batch_size_per_gpu",
  "gradient_accumulation_steps",
  "train_batch_size",
] as const;

/**
 * The input with what JavaScript callers leave out or null filled as the types mean it (no DeepSpeed config, no
 * accelerate config, torchrun), and a YAML that is no mapping refused as input.
 */
function normalizedInput(given: DoctorInput): DoctorInput {
  const loose = given as Partial<DoctorInput> & { yaml?: unknown };
  if (typeof loose.yaml !== "object" || loose.yaml === null || Array.isArray(loose.yaml))
    throw usageError(
      "DOCTOR_YAML_NOT_MAPPING",
      "yaml",
      "doctor() needs the training YAML as an object of its keys",
      "Pass the parsed YAML (parseOmegaConfYaml reads it as LLaMA-Factory does).",
    );
  if (typeof loose.hardware !== "object" || loose.hardware === null || typeof loose.hardware.gpu !== "string")
    throw usageError(
      "DOCTOR_HARDWARE_MISSING",
      "hardware.gpu",
      "doctor() needs the hardware to judge the setup on",
      'Pass hardware: { gpu: "a100-80g", gpus: 8 } (a catalog GPU id, or "custom" with gpuMemory).',
    );
  return {
    ...given,
    deepspeed: loose.deepspeed ?? { kind: "none" },
    accelerate: loose.accelerate ?? null,
    launcher: loose.launcher ?? "torchrun",
  };
}

/**
 * An input error of the plan read from the YAML, said against the YAML: the key it was read from, in the YAML's terms
 * (`cutoff_len 0: must be at least 1` at train.yaml:cutoff_len, not `seqLen` at --seq-len).
 */
function asYamlIssue(i: Issue, input: DoctorInput): Issue {
  const name = input.yamlName ?? "train.yaml";
  const given = input.yaml.model_name_or_path;
  if (i.path === "model" && input.model === undefined && (typeof given !== "string" || given.trim() === ""))
    return {
      ...i,
      code: "MODEL_MISSING",
      path: `${name}:model_name_or_path`,
      message: "model_name_or_path is missing: LLaMA-Factory has no model to train",
      hint: "Add model_name_or_path: a hub id (e.g. Qwen/Qwen2.5-7B-Instruct) or a local checkpoint folder, or pass --model.",
    };
  if (i.path === "model")
    return {
      ...i,
      path: `${name}:model_name_or_path`,
      hint: `${i.hint} For a model the catalog lacks, pass --model DIR (a folder with its config.json).`,
    };
  const field = i.path.split(".")[0] ?? "";
  const key = Object.hasOwn(YAML_KEY_OF_PLAN_FIELD, field) ? YAML_KEY_OF_PLAN_FIELD[field] : undefined;
  if (key === undefined || key.includes(" ")) return { ...i, hint: yamlHint(i.hint) };
  return {
    ...i,
    path: `${name}:${key}`,
    message: i.message.startsWith(field) ? `${key}${i.message.slice(field.length)}` : i.message,
    hint: i.code === "PLAN_INPUT_INVALID" ? `Correct ${key} in ${name}.` : yamlHint(i.hint),
  };
}

/** How a fix says it writes a new accelerate config in place of one with errors (which is then not patched). */
export const REPLACES_BROKEN_ACCELERATE = "by tunefit's (the one given has the errors above)";

/** The YAML's deepspeed key holds something (a path, inline JSON, or an object), whatever its state. */
function yamlNamesDeepSpeed(yaml: Readonly<Record<string, unknown>>): boolean {
  return yaml.deepspeed !== undefined && yaml.deepspeed !== null && yaml.deepspeed !== "";
}

/**
 * Which of the setup's own config files have errors no plan change mends: the DeepSpeed config (as the YAML names
 * it: a file, or inline under deepspeed:) and the accelerate config. A fix that keeps their strategy writes them anew.
 */
interface BrokenConfigs {
  readonly deepspeed: boolean;
  readonly accelerate: boolean;
  /** where the DeepSpeed config's only errors are batch sizes that contradict the YAML: it, and those keys */
  readonly deepspeedPatch?: { readonly config: Record<string, unknown>; readonly keys: readonly string[] };
  /** the setup's DeepSpeed config as read (a fix that changes the batch keeps it consistent) */
  readonly deepspeedConfig?: Readonly<Record<string, unknown>>;
}

function brokenConfigs(issues: readonly Issue[], input: DoctorInput, yamlName: string): BrokenConfigs {
  const ds = input.deepspeed;
  const under = (path: string, root: string) => path === root || path.startsWith(`${root}:`);
  // what the fix search mends otherwise: a file not there (written anew, or found by its path), a strategy in two
  // places (one removed), loading without RAM-efficiency (the two settings patched in)
  const errors = issues.filter(
    (i) =>
      i.severity === "error" &&
      i.code !== "DEEPSPEED_FILE_NOT_FOUND" &&
      i.code !== "DEEPSPEED_WITH_FSDP" &&
      i.code !== "FSDP_LOAD_REPLICA",
  );
  const patched = /fsdp_(cpu_ram_efficient_loading|sync_module_states)$/;
  const dsErrors = errors.filter(
    (i) => under(i.path, `${yamlName}:deepspeed`) || (ds.kind === "file" && under(i.path, ds.path)),
  );
  const batchOnly = dsErrors.length > 0 && dsErrors.every((i) => i.code === "DEEPSPEED_BATCH_MISMATCH");
  const keys = dsErrors.map((i) => i.path.slice(i.path.lastIndexOf(":") + 1));
  return {
    deepspeed: dsErrors.length > 0,
    ...(ds.kind === "none" ? {} : { deepspeedConfig: ds.config }),
    accelerate: errors.some((i) => under(i.path, "accelerate config") && !patched.test(i.path)),
    ...(batchOnly && ds.kind !== "none" ? { deepspeedPatch: { config: ds.config, keys } } : {}),
  };
}

/**
 * The DeepSpeed file the YAML names but that is not there (DEEPSPEED_FILE_NOT_FOUND, not even beside the YAML), with
 * the config its name stands for: LLaMA-Factory's examples/deepspeed names the stage and the offload
 * (ds_z3_config.json, ds_z2_offload_config.json), as do most others (ds_config_zero3.json, zero_stage2.json). The
 * config is undefined when the name says nothing; every fix then writes deepspeed.json or removes the key.
 */
function missingDeepSpeed(input: DoctorInput): { config?: Record<string, unknown> } | null {
  const value = input.yaml.deepspeed;
  if (input.deepspeed.kind !== "none" || typeof value !== "string") return null;
  if (!(input.readIssues ?? []).some((i) => i.code === "DEEPSPEED_FILE_NOT_FOUND")) return null;
  const name = value.split(/[\\/]/).pop()?.toLowerCase() ?? "";
  const m = /z(?:ero)?[_-]?(?:stage)?[_-]?([0-3])(?![0-9])/.exec(name);
  if (!m) return {};
  const stage = Number(m[1]);
  const cpu = { device: "cpu" };
  const offload = /offload/.test(name)
    ? stage === 3
      ? { offload_optimizer: cpu, offload_param: cpu }
      : { offload_optimizer: cpu }
    : {};
  return { config: { zero_optimization: { stage, ...offload } } };
}

/** The YAML's accelerator_config (a mapping or a JSON string) with gradient_accumulation_kwargs.sync_each_batch set. */
function withSyncEachBatch(value: unknown): Record<string, unknown> {
  const theirs = acceleratorConfigOf(value) ?? {};
  const kwargs = theirs.gradient_accumulation_kwargs;
  return {
    ...theirs,
    gradient_accumulation_kwargs: {
      ...(typeof kwargs === "object" && kwargs !== null ? kwargs : {}),
      sync_each_batch: true,
    },
  };
}

/**
 * The candidate plans of the fix search. `dropLowMemory`: adapters may replace the setup's GaLore, APOLLO or BAdam
 * (offered only where the training step does not fit; a stop about how they run is mended where they are).
 */
interface VariantContext {
  /** adapters may replace the setup's GaLore, APOLLO or BAdam */
  readonly dropLowMemory: boolean;
  /** the `optim` a fused AdamW would replace: the YAML's, where a DeepSpeed config builds its own optimizer */
  readonly optim: string | null | undefined;
  /** the memory-efficient optimizer that `optim` then serves, if any */
  readonly lowMemory: PlanInput["lowMemoryOptimizer"];
  /** `use_galore` or `use_apollo` is on, planned or not: LLaMA-Factory runs them without DeepSpeed, from adamw_torch */
  readonly projected: boolean;
  /** the YAML quantizes with EETQ, which takes 8 bits only */
  readonly eightBitOnly: boolean;
  /** the cutoff_len every candidate takes: the sample's image and video tokens do not fit the setup's */
  readonly seqLen?: number;
}

function* variants(base: PlanInput, context: VariantContext): Generator<Variant> {
  const { dropLowMemory } = context;
  const method = base.method ?? "lora";
  const methods: { method: Method; quantBits?: 4 | 8; dropLowMemory?: boolean }[] = [
    base.quantBits === undefined ? { method } : { method, quantBits: base.quantBits },
  ];
  // adapters take no GaLore, APOLLO or BAdam (finetuning_args.py:616): those variants drop the switch
  const lowMemory = base.lowMemoryOptimizer;
  const keeps = lowMemory === undefined || anyMethodOptimizer(lowMemory);
  if ((method === "full" || method === "freeze") && (keeps || dropLowMemory)) {
    const drop = keeps ? {} : { dropLowMemory: true };
    methods.push({ method: "lora", ...drop }, { method: "qlora", quantBits: 4, ...drop });
  }
  if (method === "lora") methods.push({ method: "qlora", quantBits: 4 });
  if (method === "qlora" && base.quantBits === 8) methods.push({ method: "qlora", quantBits: 4 });
  if (method === "qlora" && base.quantBits !== 8 && context.eightBitOnly)
    methods.push({ method: "qlora", quantBits: 8 });
  const precisions: Precision[] = [base.precision ?? "bf16"];
  if (base.precision === "pure_bf16") precisions.push("bf16");
  // GaLore and APOLLO are meant for pure bf16 (LLaMA-Factory warns otherwise): 16-bit weights, gradients and states
  if (projectsGradients(lowMemory) && base.precision === "bf16") precisions.push("pure_bf16");
  // what the GPU cannot run at all (BF16_UNSUPPORTED_GPU, FA2_UNSUPPORTED_GPU) has one way out each
  const gpu = findGpu(base.gpu);
  if (gpu && !gpu.bf16 && (base.precision === "bf16" || base.precision === "pure_bf16"))
    precisions.push("fp16");
  // no precision key at all (fp32 training): mixed precision, the one key LLaMA-Factory recommends
  if (base.precision === "fp32") precisions.push(gpu === undefined || gpu.bf16 ? "bf16" : "fp16");
  const attention: Attention | undefined =
    gpu && !gpu.flashAttention2 && base.attention === "fa2" ? "sdpa" : undefined;
  // GaLore, APOLLO and Muon run without DeepSpeed and become AdamW under FSDP: their fixes keep one replica per GPU
  const replicated = projectsGradients(lowMemory) || lowMemory === "muon" || context.projected;
  const shardings = [
    ...new Set<Sharding>(
      replicated
        ? [base.sharding ?? "none", "none"]
        : [base.sharding ?? "none", "none", "zero2", "zero3", "fsdp"],
    ),
  ];
  const micro0 = base.microBatch ?? 1;
  const global = micro0 * (base.gradAccum ?? 1);
  const micros = [micro0];
  for (let m = micro0 >> 1; m >= 1; m >>= 1) if (global % m === 0) micros.push(m);
  // replicated optimizers: DeepSpeed's offload would swap them for its CPU Adam
  // full and freeze tuning may step with the fused AdamW: the default's states without its copy of every trained
  // parameter (not where GaLore or APOLLO need adamw_torch, nor under DeepSpeed's offload, which steps its CPU Adam)
  const fusable = plainAdamW(context.optim) && optimSteps(context.lowMemory) && !context.projected;
  for (const m of methods)
    for (const precision of precisions)
      for (const sharding of shardings)
        for (const offload of (replicated ? ["none"] : ["none", "optimizer", "params"]) as Offload[])
          for (const liger of [...new Set([base.liger ?? false, true])])
            for (const microBatch of micros) {
              const gradAccum = global / microBatch;
              const syncEachBatch = base.syncEachBatch ?? false;
              const v: Variant = {
                ...m,
                ...(context.seqLen === undefined ? {} : { seqLen: context.seqLen }),
                precision,
                sharding,
                offload,
                liger,
                ...(attention ? { attention } : {}),
                microBatch,
                gradAccum,
                syncEachBatch,
              };
              yield v;
              // FSDP1 otherwise holds unsharded gradients between reductions (FSDP_UNSHARDED_ACCUMULATION)
              if (!syncEachBatch && sharding === "fsdp" && gradAccum > 1) yield { ...v, syncEachBatch: true };
              if (
                fusable &&
                (m.method === "full" || m.method === "freeze") &&
                !deepspeedCpuAdam({ sharding, offload })
              )
                yield { ...v, optimizer: "adamw_torch_fused" };
            }
}

function applyVariant(base: PlanInput, v: Variant): PlanInput {
  const { dropLowMemory, dropDeepSpeedOptimizer, ...fields } = v;
  const out: Record<string, unknown> = { ...base, ...fields };
  if (dropLowMemory) for (const k of METHOD_FIELDS.lowMemory) delete out[k];
  if (v.method !== "qlora") {
    delete out.quantBits;
    delete out.quantMethod;
  }
  if (v.method !== "lora" && v.method !== "qlora") {
    for (const k of ["loraRank", "loraAlpha", "loraDropout", "loraTarget", "useDora", "additionalTarget"])
      delete out[k];
  }
  if (v.method !== "freeze") {
    delete out.freezeTrainableLayers;
    delete out.freezeTrainableModules;
  }
  if (v.sharding !== "fsdp") delete out.fsdpStrategy;
  if (v.quantBits === undefined) delete out.quantBits;
  return out as PlanInput;
}

/**
 * A fix that replaces the setup's DeepSpeed config with tunefit's, or drops DeepSpeed, drops the optimizer that config
 * built too: the run then trains with the YAML's `optim` (or the Trainer's default).
 */
function withoutDeepSpeedOptimizer(candidate: PlanInput, setup: SetupPlan, v: Variant): PlanInput {
  const without = setup.withoutDeepSpeedOptimizer;
  if (without === undefined || (keepsDeepSpeedConfig(setup, v) && !v.dropDeepSpeedOptimizer))
    return candidate;
  const out: Record<string, unknown> = { ...candidate };
  delete out.optimizer;
  if (without.optim !== null) out.optimizer = without.optim;
  if (v.optimizer !== undefined) out.optimizer = v.optimizer; // the fused AdamW the fix sets
  const lowMemory = builtLowMemory(setup, v);
  if (lowMemory !== null) {
    out.lowMemoryOptimizer = lowMemory.optimizer;
    if (lowMemory.rank !== undefined) out.lowMemoryRank = lowMemory.rank;
    if (lowMemory.layerwise !== undefined) out.lowMemoryLayerwise = lowMemory.layerwise;
  }
  return out as PlanInput;
}

/**
 * A hint that sets `optim` or an optimizer switch, where the DeepSpeed config's own optimizer would override either:
 * the section goes too.
 */
function ownOptimizerHint(hint: string, setup: SetupPlan): string {
  const config = setup.withoutDeepSpeedOptimizer?.config;
  return config === undefined
    ? hint
    : hint.replace(
        /\((optim: [\w.]+|use_\w+: true)/g,
        `($1, with the "optimizer" section removed from ${config}`,
      );
}

/**
 * LLaMA-Factory's own optimizer that a fix's variant builds once the DeepSpeed config's own section is gone (adapters
 * take no BAdam: a LoRA variant keeps none), or null.
 */
function builtLowMemory(setup: SetupPlan, v: Variant): SetupPlan["switches"]["planned"] {
  const lowMemory = setup.withoutDeepSpeedOptimizer?.lowMemory ?? null;
  return lowMemory !== null && (anyMethodOptimizer(lowMemory.optimizer) || v.method === "full")
    ? lowMemory
    : null;
}

/** What trains once a fix drops the DeepSpeed config's own optimizer: LLaMA-Factory's own where the variant takes it. */
function ownOptimizerTrains(setup: SetupPlan, v: Variant): string | undefined {
  const without = setup.withoutDeepSpeedOptimizer;
  if (without === undefined) return undefined;
  const lowMemory = builtLowMemory(setup, v);
  if (lowMemory !== null) return LOW_MEMORY_OPTIMIZER_NAMES[lowMemory.optimizer];
  const optim = v.optimizer ?? without.optim;
  return optim ?? "transformers' default AdamW";
}

/** Whether a fix keeps the setup's DeepSpeed config (the same stage and offload). */
function keepsDeepSpeedConfig(setup: SetupPlan, v: Variant): boolean {
  return v.sharding === setup.input.sharding && v.offload === (setup.input.offload ?? "none");
}

/** The fix search's candidates, with one more where the setup's DeepSpeed config is kept but its optimizer dropped. */
function* withDeepSpeedOptimizerDropped(variants: Iterable<Variant>, setup: SetupPlan): Generator<Variant> {
  for (const v of variants) {
    const own = setup.withoutDeepSpeedOptimizer !== undefined && keepsDeepSpeedConfig(setup, v);
    // optim, fused or not, trains only once the config's own optimizer is gone
    if (!(own && v.optimizer !== undefined)) yield v;
    // under DeepSpeed's offload its CPU Adam steps whatever the config names (OFFLOAD_REPLACES_OPTIMIZER)
    if (own && v.offload === "none") yield { ...v, dropDeepSpeedOptimizer: true };
  }
}

/** Issues of an FSDP setup whose accelerate config leaves RAM-efficient loading off: every rank loads a replica. */
function replicaLoadIssue(analysis: PlanAnalysis): Issue | null {
  const plan = analysis.plan;
  const replica = estimateLoadMemory(
    { ...plan, sharding: "none" },
    analysis.memory.train.capacityBytes,
    analysis.assumptions,
  );
  if (replica.fits) {
    return {
      code: "FSDP_LOAD_REPLICA",
      severity: "warning",
      path: "accelerate config:fsdp_config.fsdp_cpu_ram_efficient_loading",
      message: `without fsdp_cpu_ram_efficient_loading every rank loads a full replica (${gb(replica.weightsBytes)}) onto its GPU before sharding; it fits, but takes ${plan.gpus}× the host and load time`,
      hint: "Set fsdp_cpu_ram_efficient_loading: true and fsdp_sync_module_states: true.",
    };
  }
  const where = replica.oomAtShard ? ` (shard ${replica.oomAtShard.index} of ${replica.oomAtShard.of})` : "";
  return {
    code: "FSDP_LOAD_REPLICA",
    severity: "error",
    path: "accelerate config:fsdp_config.fsdp_cpu_ram_efficient_loading",
    message: `without fsdp_cpu_ram_efficient_loading every rank loads a full ${gb(replica.weightsBytes)} replica onto its ${gib(plan.gpu.capacityBytes)} card before FSDP shards it: out of memory after about ${Math.round((replica.oomAtFraction ?? 0) * 100)} % of the weights${where}`,
    hint: "Set fsdp_cpu_ram_efficient_loading: true and fsdp_sync_module_states: true (rank 0 loads on CPU, the others on the meta device).",
  };
}

function verdictOf(
  report: Pick<DoctorReport, "analysis" | "issues"> & { readonly upperBound?: readonly string[] },
): string[] {
  const { analysis } = report;
  const { plan, memory } = analysis;
  const lines: string[] = [];
  const stop = report.issues.filter(
    (i) =>
      i.severity === "error" &&
      (i.code.startsWith("TARGET_") || i.code.startsWith("DEEPSPEED_") || i.code === "LLAMAFACTORY_REJECTS"),
  );
  if (stop.length > 0) {
    lines.push(
      `LLaMA-Factory stops before training: ${stop[0]?.message}${stop.length > 1 ? ` (and ${stop.length - 1} more)` : ""}`,
    );
  }
  const replica = report.issues.find((i) => i.code === "FSDP_LOAD_REPLICA" && i.severity === "error");
  const wrap = report.issues.find((i) => i.code === "LOAD_FSDP_WRAP_OOM");
  if (replica) lines.push(`Loading: ${replica.message}.`);
  else if (wrap) lines.push(`Loading: ${wrap.message}.`);
  else if (!memory.load.fits) {
    const l = memory.load;
    const where = l.oomAtShard ? ` (shard ${l.oomAtShard.index} of ${l.oomAtShard.of})` : "";
    const who = report.issues.some((i) => i.code === "LOAD_REPLICA_OOM")
      ? `every rank loads a full ${gb(l.weightsBytes)} replica onto a ${gib(plan.gpu.capacityBytes)} card`
      : plan.gpus * plan.nodes === 1
        ? `the ${gb(l.weightsBytes)} of weights do not fit on the one ${gib(plan.gpu.capacityBytes)} card`
        : `each rank's ${gb(l.weightsBytes)} of weights do not fit on a ${gib(plan.gpu.capacityBytes)} card`;
    lines.push(
      `Loading: ${who}: out of memory after about ${Math.round((l.oomAtFraction ?? 0) * 100)} % of the weights${where}.`,
    );
  } else {
    lines.push(`Loading: ${gib(memory.load.perGpuPeakBytes)} per GPU at the peak, fits.`);
  }
  const t = memory.train;
  const bound = report.upperBound ?? [];
  lines.push(
    t.fits
      ? `Training: ${gib(t.perGpu.deviceBytes)} per GPU at the peak (${t.phase}) of ${gib(t.capacityBytes)} usable: fits.` +
          (t.pagedOptimizerBytes > 0
            ? ` Of it, ${gib(t.pagedOptimizerBytes - t.pagedToHostBytes)} is the paged optimizer's states, which yield to host RAM when the GPU needs the room.`
            : "")
      : bound.length > 0
        ? `Training: at most ${gib(t.perGpu.deviceBytes)} per GPU (${t.phase}; an upper bound with ${bound.join(", ")}) of ${gib(t.capacityBytes)} usable: may not fit.`
        : `Training: the step needs ${gib(t.perGpu.deviceBytes)} per GPU (${t.phase}) but ${gib(t.capacityBytes)} is usable: out of memory.`,
  );
  return lines;
}

/**
 * The memory-model assumptions a DeepSpeed config sets for itself (where it differs from LLaMA-Factory's own):
 * `stage3_max_reuse_distance`, `stage3_max_live_parameters`, `reduce_bucket_size` ("auto" is hidden²; DeepSpeed's default when absent: 5e8),
 * ZeRO-3's `stage3_prefetch_bucket_size` ("auto" is 0.9 × hidden²; absent: 5e7; an explicit 0 turns the prefetch
 * off) and `overlap_comm` (DeepSpeed's
 * default when absent: true for stage 3, false otherwise). `--assume` overrides them.
 */
function deepspeedAssumptions(deepspeed: DoctorInput["deepspeed"]): Partial<MemoryAssumptions> {
  if (deepspeed.kind === "none") return {};
  const zero = deepspeed.config.zero_optimization;
  if (typeof zero !== "object" || zero === null) return {};
  const z = zero as Record<string, unknown>;
  const out: { -readonly [K in keyof MemoryAssumptions]?: MemoryAssumptions[K] } = {};
  const count = (v: unknown) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined);
  const reuse = count(z.stage3_max_reuse_distance);
  if (reuse !== undefined && reuse !== DEFAULT_ASSUMPTIONS.zero3MaxReuseDistance)
    out.zero3MaxReuseDistance = reuse;
  const live = count(z.stage3_max_live_parameters);
  if (live !== undefined && live !== DEFAULT_ASSUMPTIONS.zero3MaxLiveParameters)
    out.zero3MaxLiveParameters = live;
  const stage = count(z.stage) ?? 0;
  // what DeepSpeed's config takes when a key is absent (deepspeed/runtime/zero/config.py)
  const sized = (v: unknown, absent: number) => (v === "auto" ? 0 : (count(v) ?? absent));
  if (stage === 1 || stage === 2) {
    const bucket = sized(z.reduce_bucket_size, 5e8);
    if (bucket !== DEFAULT_ASSUMPTIONS.zero12ReduceBucketElements) out.zero12ReduceBucketElements = bucket;
  }
  if (stage === 3) {
    const bucket = sized(z.reduce_bucket_size, 5e8);
    if (bucket !== DEFAULT_ASSUMPTIONS.zero3ReduceBucketElements) out.zero3ReduceBucketElements = bucket;
    const prefetch = sized(z.stage3_prefetch_bucket_size, 5e7);
    if (prefetch !== DEFAULT_ASSUMPTIONS.zero3PrefetchBucketElements)
      out.zero3PrefetchBucketElements = prefetch;
    // an explicit 0 turns the prefetch off (`if self.__prefetch_bucket_sz > 0`), which "auto" (0 here) does not: no
    // parameter is then gathered ahead, as with no live parameters to spare
    if (z.stage3_prefetch_bucket_size === 0) out.zero3MaxLiveParameters = 0;
  }
  const overlap = typeof z.overlap_comm === "boolean" ? z.overlap_comm : stage === 3;
  if (overlap !== DEFAULT_ASSUMPTIONS.zeroOverlapComm) out.zeroOverlapComm = overlap;
  return out;
}

/**
 * HQQ's storage, where the plan counts HQQ as bitsandbytes (QUANTIZATION_APPROXIMATED): LLaMA-Factory's HqqConfig
 * keeps transformers' group of 64 weights with a 16-bit scale and zero each (4 B per 64 weights), beside the weights
 * packed as hqq's BitPack packs them (1, 2, 4 bits as they are, 3 bits ten to an int32; other widths in 8 bits).
 */
function hqqAssumptions(yaml: Readonly<Record<string, unknown>>): Partial<MemoryAssumptions> {
  const bits = yaml.quantization_bit;
  if (yaml.quantization_method !== "hqq" || typeof bits !== "number") return {};
  const meta = 4 / HQQ_GROUP_SIZE;
  // the YAML's width where it is counted as NF4, or the 4 bits a fix may write; 8-bit storage for the rest
  const packed = bits === 1 || bits === 2 ? bits / 8 : bits === 3 ? 32 / 10 / 8 : 0.5;
  return { nf4BytesPerParam: packed + meta, int8BytesPerParam: 1 + meta };
}

/** transformers' HqqConfig group_size default, which LLaMA-Factory's call keeps */
const HQQ_GROUP_SIZE = 64;

/**
 * Predicts what an existing setup does and finds the smallest fix.
 * @throws TunefitError (usage) when the setup does not form a plan (e.g. a model neither the catalog nor --model knows)
 */
export function doctor(given: DoctorInput): DoctorReport {
  const input = normalizedInput(given);
  // a DeepSpeed file that is not there: the run stops, but what it meant to run is in its name
  const missing = missingDeepSpeed(input);
  const deepspeed: DeepSpeedSource =
    missing?.config === undefined ? input.deepspeed : { kind: "inline", config: missing.config };
  const setup = setupToPlan(input.yaml, deepspeed, input.accelerate, input.hardware, input.model, {
    ...(input.imagesPerSample === undefined ? {} : { imagesPerSample: input.imagesPerSample }),
    ...(input.videosPerSample === undefined ? {} : { videosPerSample: input.videosPerSample }),
    ...(input.cwd === undefined ? {} : { cwd: input.cwd }),
    ...(input.yamlName === undefined ? {} : { yamlName: input.yamlName }),
  });
  const world = (input.hardware.gpus ?? 1) * (input.hardware.nodes ?? 1);
  const assumptions = {
    ...deepspeedAssumptions(input.deepspeed),
    ...hqqAssumptions(input.yaml),
    ...input.assumptions,
  };
  const opts = {
    ...(input.cwd === undefined ? {} : { cwd: input.cwd }),
    ...(Object.keys(assumptions).length > 0 ? { assumptions } : {}),
  };
  let analysis: PlanAnalysis;
  try {
    analysis = analyzePlan(setup.input, opts);
  } catch (e) {
    if (e instanceof TunefitError && e.kind === "usage") {
      throw new TunefitError(
        "usage",
        e.issues.map((i) => asYamlIssue(i, input)),
      );
    }
    throw e;
  }
  const issues = configIssues(input, setup, world);
  const fsdp = usesFsdp(analysis.plan) && input.launcher === "accelerate";
  if (fsdp && !setup.ramEfficientLoading) {
    const r = replicaLoadIssue(analysis);
    if (r) issues.push(r);
  }
  // the YAML's rope_scaling extends the positions (LLaMA-Factory configure_rope), which the plan cannot carry
  const scaled = input.yaml.rope_scaling !== undefined && input.yaml.rope_scaling !== null;
  const projected = input.yaml.use_galore === true || input.yaml.use_apollo === true;
  // with a memory-saving optimizer or kernel tunefit does not model, its training figure is only an upper bound:
  // over the card, it may still fit
  const upperBound = coverableBySwitches(input.yaml, analysis, setup);
  // HQQ and EETQ shard under neither ZeRO-3 nor FSDP, at any width: LLaMA-Factory's own stop says so (keptKeyStops),
  // not bitsandbytes' rules for 8 bits or for loading under ZeRO-3, and the ways out that shard name bitsandbytes'
  // 4 bits
  const otherQuant = input.yaml.quantization_method === "hqq" || input.yaml.quantization_method === "eetq";
  const shardWithBnb = (hint: string) =>
    otherQuant
      ? hint.replace(
          /(Use |with |\()(quantization_bit: 4 (and |with )?)?(a ZeRO-3|an accelerate FSDP)/g,
          "$1quantization_method: bnb, quantization_bit: 4 and $4",
        )
      : hint;
  issues.push(
    ...analysis.issues
      .filter(
        (i) => !(otherQuant && (i.code === "QLORA_8BIT_SHARDED" || i.code === "QLORA_FULL_LOAD_PER_RANK")),
      )
      .filter((i) => !(scaled && i.code === "SEQ_LEN_BEYOND_CONTEXT"))
      // GaLore and APOLLO, planned or not, are built from adamw_torch only: no fused AdamW for them
      .filter((i) => !(projected && i.code === "DEFAULT_OPTIM_STEP_COPY"))
      .map((i) =>
        projected ? { ...i, hint: i.hint.replace(/, step with the fused AdamW \([^()]*\)/, "") } : i,
      )
      .map((i) => ({ ...i, hint: shardWithBnb(ownOptimizerHint(yamlHint(i.hint), setup)) }))
      // the images are the dataset's, which the YAML cannot change: the template is what to mend
      .map((i) =>
        i.code === "TEMPLATE_NOT_MULTIMODAL"
          ? { ...i, path: `${input.yamlName ?? "train.yaml"}:template` }
          : i,
      )
      // the memory-efficient optimizer's fields are the YAML's own keys (use_galore, galore_layerwise, …)
      .map((i) => {
        const key = lowMemoryKey(i.path, analysis.plan.lowMemoryOptimizer);
        return key === null ? i : { ...i, path: `${input.yamlName ?? "train.yaml"}:${key}` };
      })
      // mllm_video_demo's clips are counted at video_maxlen frames, the most LLaMA-Factory samples from them: a
      // cutoff short of that many frames' tokens stops the run only if its clips are that long
      .map((i) =>
        i.code === "VIDEO_TOKENS_BEYOND_CUTOFF" && setup.issues.some((s) => s.code === "VIDEOS_ASSUMED")
          ? {
              ...i,
              severity: "warning" as const,
              message: `if the clips give video_maxlen frames: ${i.message}`,
            }
          : i,
      )
      .map((i) =>
        i.code === "TRAIN_OOM" && upperBound.length > 0
          ? {
              ...i,
              severity: "warning" as const,
              message: `may not fit: ${i.message}; this is an upper bound, as ${upperBound.join(", ")} saves memory tunefit counts`,
            }
          : i,
      ),
  );
  issues.sort((a, b) => ORDER[a.severity] - ORDER[b.severity]);
  const valid = !issues.some((i) => i.severity === "error");
  const verdict = verdictOf({ analysis, issues, upperBound });

  let fix: Fix | null = null;
  const alternatives: Fix[] = [];
  const yamlName = input.yamlName ?? "train.yaml";
  const keyFixes = valid ? [] : keyChanges(issues, yamlName, input.yaml);
  // a text template for samples with images: the model's own multimodal template mends it, in every candidate
  let searched = setup.input;
  const textTemplate = issues.some((i) => i.code === "TEMPLATE_NOT_MULTIMODAL" && i.severity === "error");
  const mmTemplate = analysis.plan.model.defaultTemplate ?? analysis.plan.model.groupTemplate;
  if (textTemplate && mmTemplate !== null) {
    keyFixes.push({
      kind: "yaml",
      target: "template",
      to: mmTemplate,
      text: `template: ${mmTemplate} (the model's template, with its multimodal plugin)`,
    });
    searched = { ...setup.input, template: mmTemplate };
  }
  // values no change can choose: corrected by hand before any fix is worth searching
  // and LLaMA-Factory's stops for GaLore, APOLLO and BAdam, whose keys no candidate plan changes
  const byHand = issues.filter(
    (i) =>
      i.severity === "error" &&
      // quantization_bit's stops are mended by the search: each candidate sets or removes the key
      ((i.code === "LLAMAFACTORY_REJECTS" && i.path !== `${yamlName}:quantization_bit`) ||
        BY_HAND_RULES.has(i.code) ||
        (i.code === "TEMPLATE_NOT_MULTIMODAL" && mmTemplate === null) ||
        (i.code === "TARGET_BAD_VALUE" &&
          i.path.startsWith(`${yamlName}:`) &&
          // an inline DeepSpeed config with a bad value is replaced like a file (brokenConfigs)
          !i.path.startsWith(`${yamlName}:deepspeed:`) &&
          !keyFixes.some((c) => `${yamlName}:${c.target}` === i.path))),
  );
  if (!valid && byHand.length === 0) {
    const ds = input.deepspeed;
    const broken = brokenConfigs(issues, input, yamlName);
    if (ds.kind === "file" && ds.fixedPath !== undefined) {
      keyFixes.push({
        kind: "yaml",
        target: "deepspeed",
        to: ds.fixedPath,
        text: `deepspeed: ${ds.fixedPath} (the file as seen from the launch folder)`,
      });
    }
    const found: Fix[] = [];
    const seen = new Set<string>();
    const hostBound = input.hardware.hostRam === undefined ? { hostRam: ASSUMED_HOST_RAM_GIB } : {};
    const without = setup.withoutDeepSpeedOptimizer;
    const context: VariantContext = {
      dropLowMemory: !analysis.memory.train.fits,
      optim: without === undefined ? searched.optimizer : without.optim,
      lowMemory: without === undefined ? searched.lowMemoryOptimizer : without.lowMemory?.optimizer,
      projected: input.yaml.use_galore === true || input.yaml.use_apollo === true,
      eightBitOnly: input.yaml.quantization_method === "eetq",
      // LLaMA-Factory cuts a sample to cutoff_len, image and video tokens too, and the model then stops: the
      // cutoff goes up to the next multiple of 1,024 above them, room for the text
      ...(issues.some(
        (i) =>
          (i.code === "IMAGE_TOKENS_BEYOND_CUTOFF" || i.code === "VIDEO_TOKENS_BEYOND_CUTOFF") &&
          i.severity === "error",
      )
        ? { seqLen: Math.ceil((mediaSequenceTokens(analysis.plan) + 1) / 1024) * 1024 }
        : {}),
    };
    // a checkpoint stored quantized is loaded as stored: quantization_bit changes nothing there
    const stored = analysis.plan.model.quantization?.method != null;
    for (const v of withDeepSpeedOptimizerDropped(variants(searched, context), setup)) {
      if (stored && v.method === "qlora" && (setup.input.method ?? "lora") !== "qlora") continue;
      const built = withoutDeepSpeedOptimizer(applyVariant(searched, v), setup, v);
      // without bf16/fp16 keys the precision is the checkpoint's only without DeepSpeed or FSDP; under them the
      // Trainer trains in fp32 (setupToPlan), unless the candidate itself writes a precision key
      const noPrecisionKey =
        input.yaml.bf16 !== true && input.yaml.fp16 !== true && input.yaml.pure_bf16 !== true;
      const candidate: PlanInput =
        noPrecisionKey &&
        (built.sharding ?? "none") !== "none" &&
        built.precision === searched.precision &&
        searched.precision !== "fp32"
          ? { ...built, precision: "fp32" }
          : built;
      let a: PlanAnalysis;
      try {
        a = analyzePlan({ ...candidate, ...hostBound }, opts);
      } catch (e) {
        if (e instanceof TunefitError && e.kind === "usage") continue;
        throw e;
      }
      // the demo's assumed clip length makes a short cutoff a warning for the candidates too (as for the setup)
      const assumedClips = setup.issues.some((s) => s.code === "VIDEOS_ASSUMED");
      const stops = a.issues.filter(
        (i) => i.severity === "error" && !(assumedClips && i.code === "VIDEO_TOKENS_BEYOND_CUTOFF"),
      );
      if (stops.length > 0) continue;
      // LLaMA-Factory's stops on the keys the fix keeps as written (pissa_init or resize_vocab under quantization,
      // use_unsloth under ZeRO-3, use_llama_pro with full tuning)
      if (keptKeyStops(input.yaml, candidate, stored, yamlName).length > 0) continue;
      const changes = [
        ...keyFixes,
        ...changesFor(
          input.yaml,
          setup.input,
          input.launcher,
          setup.ramEfficientLoading,
          v,
          missing !== null,
          ownOptimizerTrains(setup, v),
          broken,
        ),
      ];
      if (changes.length === 0 && keyFixes.length === 0) continue;
      const key = changes.map((c) => c.text).join("|");
      if (seen.has(key)) continue;
      seen.add(key);
      const strategyChanged =
        v.sharding !== (setup.input.sharding ?? "none") || launcherOf(v.sharding) !== input.launcher;
      const methodChanged = v.method !== (setup.input.method ?? "lora");
      found.push({
        input: candidate,
        launcher: launcherOf(v.sharding),
        changes,
        cost:
          changes.length +
          (strategyChanged ? STRATEGY_CHANGE_COST : 0) +
          (methodChanged ? METHOD_CHANGE_COST : 0),
        deviceBytes: a.memory.train.perGpu.deviceBytes,
        stepSeconds: estimateStepTime(a.plan).stepSeconds,
        analysis: a,
      });
    }
    found.sort((x, y) => x.cost - y.cost || x.stepSeconds - y.stepSeconds || x.deviceBytes - y.deviceBytes);
    fix = found[0] ?? null;
    // when the plan itself runs and only the files need mending, other plans are no alternative
    if (!analysis.valid) alternatives.push(...found.slice(1, 4));
  }
  return { setup, launcher: input.launcher, analysis, issues, verdict, fix, alternatives, byHand, valid };
}

/**
 * Values earlier LLaMA-Factory releases accepted under another name, by key: QuantizationMethod.BNB was
 * "bitsandbytes", and AttentionFunction.DISABLED was "off" (hparams/model_args.py, extras/constants.py).
 */
const LEGACY_VALUES: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  quantization_method: { bitsandbytes: "bnb" },
  // YAML 1.1 reads an unquoted `off` as false; the boolean flash_attn of earlier releases meant FlashAttention-2
  flash_attn: { off: "disabled", false: "disabled", true: "fa2" },
};

/**
 * Renames of misspelled training-YAML keys and removals of unknown ones: LLaMA-Factory stops on any unknown key.
 * Issues about the other files (a DeepSpeed or accelerate config) are not edits of the YAML.
 */
function keyChanges(
  issues: readonly Issue[],
  yamlName: string,
  yaml: Readonly<Record<string, unknown>>,
): Change[] {
  const out: Change[] = [];
  for (const i of issues) {
    if (i.code === "TARGET_BAD_VALUE" && i.severity === "error" && i.path.startsWith(`${yamlName}:`)) {
      const key = i.path.slice(yamlName.length + 1);
      const renamed = LEGACY_VALUES[key]?.[String(yaml[key])];
      if (renamed !== undefined)
        out.push({
          kind: "yaml",
          target: key,
          to: renamed,
          text: `${key}: ${renamed} (LLaMA-Factory's current name for ${String(yaml[key])})`,
        });
      continue;
    }
    if (i.code !== "TARGET_UNKNOWN_KEY" || i.severity !== "error" || !i.path.startsWith(`${yamlName}:`))
      continue;
    const key = i.path.slice(yamlName.length + 1);
    if (key.includes(".")) continue;
    const suggestion = /Did you mean `([\w.]+)`/.exec(i.hint)?.[1];
    out.push(
      suggestion
        ? { kind: "yaml", target: key, to: { rename: suggestion }, text: `rename ${key} to ${suggestion}` }
        : { kind: "yaml", target: key, text: `remove ${key} (not a LLaMA-Factory argument)` },
    );
  }
  return out;
}
