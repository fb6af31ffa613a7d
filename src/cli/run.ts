import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import { readBoundedText } from "../_read.ts";
import { closest, editDistance } from "../_util.ts";
import { gpuCapacityBytes, listGpus } from "../catalog/gpus.ts";
import { listCatalogModels } from "../catalog/models.ts";
import { importTrainYaml } from "../codegen/import.ts";
import { ASSUMED_HOST_RAM_GIB, type DoctorReport, doctor, type Fix } from "../doctor/doctor.ts";
import { fixFiles } from "../doctor/fix-bundle.ts";
import {
  applyOverrides,
  MAX_CONFIG_BYTES,
  readAccelerateConfig,
  readDeepSpeed,
  readTrainYamlFile,
} from "../doctor/read.ts";
import { type Hardware, type Launcher, YAML_KEY_OF_PLAN_FIELD } from "../doctor/to-plan.ts";
import { emitAnalysis } from "../emit/bundle.ts";
import { checkBundle } from "../emit/check-bundle.ts";
import { BUNDLE_FILES } from "../emit/common.ts";
import { writeFiles } from "../emit/write-files.ts";
import { type Issue, isUsageError, TunefitError, usageError } from "../errors.ts";
import { DEFAULT_ASSUMPTIONS, type MemoryAssumptions, parseAssumptions } from "../memory/assumptions.ts";
import {
  gradientsMadeInBackward,
  imagePatches,
  mediaSequenceTokens,
  type ReleasableSource,
  videoPatches,
} from "../memory/train.ts";
import { countParams } from "../model/params.ts";
import { analyzePlan, type PlanAnalysis, planReport } from "../plan/analyze.ts";
import {
  assumptionArgs,
  inputToArgs,
  keptRuleErrors,
  maxFitting,
  type RecommendResult,
  recommend,
} from "../plan/recommend.ts";
import { inapplicableFields, resolvePlan } from "../plan/resolve.ts";
import { DEFAULT_STEP_TIME_ASSUMPTIONS, estimateStepTime } from "../plan/step-time.ts";
import { DEFAULT_SCAFFOLD, initFiles, SCAFFOLDS } from "../scaffold/index.ts";
import { JSON_SCHEMA_TARGETS, type JsonSchemaTarget, jsonSchemaOf } from "../schema/json-schemas.ts";
import {
  anyMethodOptimizer,
  LOW_MEMORY_OPTIMIZER_NAMES,
  type ModelDefinition,
  PlanInput,
  projectsGradients,
} from "../schema/plan.ts";
import { checkTrainYaml } from "../schema/targets/index.ts";
import { VERSION } from "../version.ts";
import { fieldOfFlag, flagName, flagsToInput, PLAN_FLAGS, parseFlagValue } from "./flags.ts";
import {
  formatCount,
  formatGib,
  formatInt,
  formatIssuesForCli,
  formatIssuesForYaml,
  memoryBar,
  memoryLegend,
  table,
} from "./format.ts";
import type { HubModel } from "./hub.ts";

/** What the CLI reads and writes; tests pass their own. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** the folder relative paths are read from */
  readonly cwd: string;
  /** colour the memory bar (a TTY without NO_COLOR) @default false */
  readonly color?: boolean;
  /** models read from the Hugging Face Hub before the run (config.json, shard count), by id (src/cli/hub.ts) */
  readonly hubConfigs?: ReadonlyMap<string, HubModel>;
}

/** Exit codes of the CLI contract. */
export const EXIT = { ok: 0, internal: 1, usage: 2, unfit: 3 } as const;

const GLOBAL_OPTIONS = {
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
  debug: { type: "boolean" },
  json: { type: "boolean" },
} as const;

type OptionSpec = { type: "string"; multiple?: boolean } | { type: "boolean" };

/** The flag values of one command line, as node:util parseArgs returns them. */
type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

function planOptions(): Record<string, OptionSpec> {
  const options: Record<string, OptionSpec> = {
    spec: { type: "string" },
    assume: { type: "string", multiple: true },
    recommend: { type: "boolean" },
    max: { type: "string" },
  };
  for (const field of Object.keys(PLAN_FLAGS)) options[flagName(field).slice(2)] = { type: "string" };
  return options;
}

function describe(field: string): string {
  const shape = PlanInput.shape as Record<string, { meta(): { description?: string } | undefined }>;
  return shape[field]?.meta()?.description ?? "";
}

function usage(command?: string): string {
  if (command === "plan") {
    const rows = [
      ["flag", "meaning"],
      ["--spec FILE", "a plan file (YAML or JSON, the builder's serialized form); flags override it"],
      ...Object.keys(PLAN_FLAGS).map((f) => [flagName(f), describe(f)]),
      [
        "--assume NAME=VALUE",
        "override a memory-model assumption (repeatable): cudaContextBytes=1GiB, fragmentationOfTransient=0.3, accelerateFsdp2CastsFrozenToFp32=false, …",
      ],
      ["--recommend", "also search the strategies and list the plans that fit, fastest first"],
      ["--max micro-batch|seq-len", "also find the largest micro-batch (or sequence length) that fits"],
      ["--json", "print the plan as JSON"],
    ];
    return [
      "Usage: tunefit plan --model ID|DIR --gpu ID [plan flags] [--json]",
      "",
      "Resolves the plan, counts the model's parameters, predicts per-GPU memory, checks every rule, and prints a report.",
      "Exit codes: 0 valid and fits, 3 does not fit or breaks a rule, 2 bad input, 1 internal error.",
      "",
      table(rows),
      "",
    ].join("\n");
  }
  if (command === "emit") {
    return [
      "Usage: tunefit emit --model ID|DIR --gpu ID [plan flags] --out DIR [--force] [--allow-unfit] [--json]",
      "",
      "Writes the ready-to-run bundle of the plan into DIR: train.yaml, launch.sh, deepspeed.json or",
      "accelerate_fsdp.yaml as the strategy needs, slurm.sbatch and pytorchjob.yaml for several nodes, a demo",
      "dataset unless --dataset names yours, and README.md. The bundle is written whole or not at all.",
      "",
      table([
        ["flag", "meaning"],
        ["--out DIR", "the bundle folder (required)"],
        ["--force", "replace DIR when it exists and is not empty"],
        ["--allow-unfit", "write a plan that does not fit or breaks a rule (exit code stays 3)"],
        [
          "--probe [--probe-steps N]",
          "add probe.py: runs N real steps (default 5) and prints measured peaks vs the prediction",
        ],
        ["--json", 'print { "files": [...], "plan": {...} }'],
        ["plan flags", "as for tunefit plan (see tunefit plan --help)"],
      ]),
      "",
      "Exit codes: 0 written, 3 does not fit or breaks a rule (nothing written without --allow-unfit),",
      "2 bad input or a non-empty DIR without --force, 1 internal error.",
      "",
    ].join("\n");
  }
  if (command === "doctor") {
    return [
      "Usage: tunefit doctor TRAIN_YAML [key=value ...] --gpu ID [--gpus N] [--nodes N] [--model DIR]",
      "                      [--launch-dir DIR] [--accelerate-config FILE] [--launcher torchrun|accelerate]",
      "                      [--fix --out DIR [--force]] [--json]",
      "",
      "Reads a LLaMA-Factory training YAML as LLaMA-Factory does (key=value overrides after it), the DeepSpeed",
      "JSON it names (relative to --launch-dir, default the current folder) and an accelerate config; predicts",
      "what happens on the hardware, and prints the smallest fix (fewest edits, then the fastest step).",
      "",
      table([
        ["flag", "meaning"],
        ["--gpu ID, --gpus N, --nodes N", "the hardware (a YAML holds none); --gpu is required"],
        ["--gpu-memory GIB, --host-ram GIB, --headroom X", "as for tunefit plan"],
        ["--model DIR", "a config.json folder for a model the catalog lacks"],
        ["--launch-dir DIR", "the folder the run is launched from (relative paths resolve there)"],
        [
          "--accelerate-config FILE",
          "the accelerate config of an accelerate launch (implies --launcher accelerate)",
        ],
        [
          "--launcher torchrun|accelerate",
          "llamafactory-cli (torchrun) or accelerate launch; default from the files",
        ],
        ["--fix --out DIR", "write the fixed files (YAML with every other key kept, configs, launch.sh)"],
        ["--assume NAME=VALUE", "override a memory-model assumption, as for tunefit plan (repeatable)"],
        [
          "--images-per-sample N",
          "images each sample of the dataset carries (default: 1 for mllm_demo, else 0)",
        ],
        [
          "--videos-per-sample N",
          "videos each sample carries, counted at video_maxlen frames (default: 1 for mllm_video_demo, else 0)",
        ],
        ["--json", "print the plan --json object with verdict, unmodelled keys and the fix"],
      ]),
      "",
      "Exit codes: 0 runs as it is, 3 would fail (the fix is printed), 2 bad input, 1 internal error.",
      "",
    ].join("\n");
  }
  if (command === "import") {
    return [
      "Usage: tunefit import TRAIN_YAML [--gpu ID --gpus N --nodes N] [--model DIR] [--launch-dir DIR]",
      "                      [--accelerate-config FILE] [--out FILE.ts [--force]]",
      "",
      "Writes a TypeScript script that builds the same plan with tunefit's builder and, run as",
      "`npx tsx FILE.ts OUT_DIR` in a project that depends on tunefit, writes a train.yaml with every key and",
      "value of the original. Keys tunefit does not model go through an explicit escape hatch (counted on stderr).",
      "Without --gpu the script plans for one h100-80g, marked as a placeholder. Without --out it prints the script.",
      "",
    ].join("\n");
  }
  if (command === "init") {
    return [
      "Usage: tunefit init DIR --model ID|DIR --gpu ID [plan flags] [--scaffold NAME] [--force] [--allow-unfit] [--json]",
      "",
      "Scaffolds a project folder from templates: a README with the plan and its memory table, plan.ts (the plan",
      "as code; `npx tsx plan.ts --emit` rewrites the bundle), the emitted bundle in bundle/, and for the default",
      `scaffold data/ with a dataset_info.json for your own data. Scaffolds: ${SCAFFOLDS.join(", ")} (default ${DEFAULT_SCAFFOLD}).`,
      "A non-empty DIR is refused without --force. --template stays the chat template.",
      "",
      "Exit codes: 0 written, 3 does not fit or breaks a rule (nothing written without --allow-unfit), 2 bad input, 1 internal error.",
      "",
    ].join("\n");
  }
  if (command === "schema") {
    return [
      `Usage: tunefit schema ${JSON_SCHEMA_TARGETS.join("|")}`,
      "",
      "Prints a JSON Schema (draft 2020-12): of a plan file (the format --spec reads), of LLaMA-Factory's training",
      "YAML, of a DeepSpeed config, or of an accelerate FSDP config. Editors use them to complete and check the files.",
      "",
    ].join("\n");
  }
  if (command === "models") return "Usage: tunefit models [--json]\n\nLists the built-in model catalog.\n";
  if (command === "gpus") return "Usage: tunefit gpus [--json]\n\nLists the built-in GPU catalog.\n";
  return [
    `tunefit ${VERSION} — will your LLaMA-Factory fine-tune fit, and how do you launch it?`,
    "",
    "Usage: tunefit <command> [options]",
    "",
    "Commands:",
    "  plan     resolve a plan: parameters, per-GPU memory, rules, --recommend, --max",
    "  emit     write the ready-to-run bundle of a plan (--out DIR)",
    "  doctor   predict what an existing LLaMA-Factory YAML will do, and the smallest fix",
    "  import   turn an existing LLaMA-Factory YAML into a TypeScript script that uses the builder",
    "  init     scaffold a project folder: README, plan.ts, the bundle, data/ for your dataset",
    "  models   list the built-in models",
    "  gpus     list the built-in GPUs",
    "  schema   print a JSON Schema for editors: plan, llamafactory, deepspeed, accelerate",
    "",
    "Options: --help, --version, --debug (stack traces of internal errors), --json",
    "",
  ].join("\n");
}

function readSpec(file: string, io: CliIo): Record<string, unknown> {
  const path = resolve(io.cwd, file);
  const text = readBoundedText(path, MAX_CONFIG_BYTES, (f) =>
    f.kind === "too-large"
      ? usageError(
          "SPEC_TOO_LARGE",
          "--spec",
          `${file} is over ${MAX_CONFIG_BYTES / 1024 / 1024} MiB; a plan file is a few hundred bytes`,
          "Check that --spec names the plan file.",
        )
      : usageError(
          "SPEC_UNREADABLE",
          "--spec",
          `cannot read the plan file ${file}`,
          "Give an existing YAML or JSON file.",
        ),
  );
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (e) {
    throw usageError(
      "SPEC_INVALID",
      "--spec",
      `${file} is neither valid YAML nor JSON (${(e as Error).message.split("\n")[0]})`,
      "Fix the syntax; a plan file is a mapping of plan fields (camelCase of the flags).",
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw usageError(
      "SPEC_INVALID",
      "--spec",
      `${file} must hold a mapping of plan fields`,
      "Write e.g. `model: Qwen/Qwen2.5-7B-Instruct` and `gpu: a100-80g` on their own lines.",
    );
  }
  // a LLaMA-Factory training YAML is read by doctor and import, not as a plan file
  const trainKeys = [
    "model_name_or_path",
    "finetuning_type",
    "cutoff_len",
    "per_device_train_batch_size",
  ].filter((k) => Object.hasOwn(value, k));
  if (trainKeys.length > 0) {
    throw usageError(
      "SPEC_IS_TRAIN_YAML",
      "--spec",
      `${file} is a LLaMA-Factory training YAML (${trainKeys.join(", ")}), not a tunefit plan file`,
      `Run tunefit doctor ${file} --gpu ID [--gpus N] to predict it and find a fix, or tunefit import ${file} to turn it into a plan script.`,
    );
  }
  return value as Record<string, unknown>;
}

function parse(
  argv: readonly string[],
  options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }>,
  command?: CommandName,
) {
  // `--gpus -1` would read -1 as a flag; join a negative number to its flag so the value check names it
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const next = argv[i + 1];
    const name = a.startsWith("--") && !a.includes("=") ? a.slice(2) : undefined;
    if (name && options[name]?.type === "string" && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      args.push(`${a}=${next}`);
      i++;
    } else args.push(a);
  }
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (e) {
    const message = (e as Error).message;
    const flag = /'(--?[\w-]+)/.exec(message)?.[1];
    if (flag === undefined || !/^Unknown option/.test(message)) {
      throw usageError(
        "FLAG_UNKNOWN",
        flag ?? "arguments",
        message.split("\n")[0] ?? message,
        "Run with --help to see the flags.",
      );
    }
    const guess = flagGuess(flag, Object.keys(options));
    const bare = flag.replace(/^--?/, "");
    const field = fieldOfFlag(flag);
    const key = field === undefined ? undefined : YAML_KEY_OF_PLAN_FIELD[field];
    // doctor reads the plan from the YAML; another command's flag is named with its command
    const elsewhere = (Object.keys(COMMANDS) as CommandName[]).filter(
      (c) => c !== command && Object.hasOwn(COMMANDS[c].options, bare),
    );
    const where =
      command === "doctor" && key !== undefined && !key.includes(" ")
        ? `doctor reads ${flag} from the YAML: override ${key} after the file (tunefit doctor train.yaml ${key}=VALUE${field === "method" ? "; QLoRA is finetuning_type=lora quantization_bit=4" : ""}). `
        : guess.length === 0 && elsewhere.length > 0
          ? `${flag} is a flag of ${elsewhere.map((c) => `tunefit ${c}`).join(" and ")}. `
          : "";
    throw usageError(
      "FLAG_UNKNOWN",
      flag,
      `unknown flag ${flag}`,
      `${where}${guess.length > 0 ? `Did you mean ${guess.map((g) => `--${g}`).join(" or ")}? ` : ""}Run with --help to see the flags.`,
    );
  }
}

/** What other tools and LLaMA-Factory call some of tunefit's flags. */
const FLAG_SYNONYMS: Readonly<Record<string, string>> = {
  "batch-size": "micro-batch",
  "per-device-train-batch-size": "micro-batch",
  "gradient-accumulation-steps": "grad-accum",
  "cutoff-len": "seq-len",
  "max-seq-len": "seq-len",
  "max-seq-length": "seq-len",
  "max-length": "seq-len",
  "lora-r": "lora-rank",
  "quantization-bit": "quant-bits",
  deepspeed: "sharding",
  zero: "sharding",
  fsdp: "sharding",
  "num-gpus": "gpus",
  "nproc-per-node": "gpus",
  "finetuning-type": "method",
  "model-name-or-path": "model",
};

/** The flags an unknown one most likely meant: its kebab-case spelling, a known synonym, else the closest names. */
function flagGuess(flag: string, names: readonly string[]): string[] {
  const bare = flag.replace(/^-+/, "");
  const kebab = bare
    .replace(/_/g, "-")
    .replace(/([a-z])([A-Z])/g, "$1-$2")
    .toLowerCase();
  if (kebab !== bare && names.includes(kebab)) return [kebab];
  const synonym = FLAG_SYNONYMS[kebab];
  if (synonym !== undefined && names.includes(synonym)) return [synonym];
  return closest(kebab, names, 2).filter((n) => editDistance(kebab, n) <= Math.max(2, kebab.length / 3));
}

function missingRequired(input: Record<string, unknown>): Issue[] {
  return (["model", "gpu"] as const)
    .filter((f) => input[f] === undefined)
    .map((f) => ({
      code: "FLAG_REQUIRED",
      severity: "error" as const,
      path: f,
      message: `${flagName(f)} is required`,
      hint:
        f === "model" ? "Add --model ID|DIR (see `tunefit models`)." : "Add --gpu ID (see `tunefit gpus`).",
    }));
}

/** "a of b", with MiB where the two GiB figures would round alike (a margin under 0.01 GiB either way). */
function atLimit(bytes: number, capacity: number): string {
  const same = formatGib(bytes) === formatGib(capacity);
  const mib = (b: number) => `${Math.round(b / 1024 ** 2).toLocaleString("en-US")} MiB`;
  return same ? `${mib(bytes)} of ${mib(capacity)}` : `${formatGib(bytes)} of ${formatGib(capacity)}`;
}

/** The optimizer a plan steps with, as `plan` prints it: the memory-efficient one, or optim (its default said so). */
function optimizerLine(p: PlanAnalysis["plan"], assumptions: Partial<MemoryAssumptions>): string {
  const fused = assumptions.defaultOptimFused ?? DEFAULT_ASSUMPTIONS.defaultOptimFused;
  const optim =
    p.optimizer ??
    (fused
      ? "adamw_torch_fused (transformers' default from torch 2.8)"
      : "adamw_torch (transformers' default before torch 2.8)");
  if (p.lowMemoryOptimizer === null) return optim;
  const name = LOW_MEMORY_OPTIMIZER_NAMES[p.lowMemoryOptimizer];
  return anyMethodOptimizer(p.lowMemoryOptimizer) ? name : `${name} over ${optim}`;
}

function humanPlan(a: PlanAnalysis, color = false): string {
  const p = a.plan;
  const arch = p.model.architecture;
  const lines = [
    `Model     ${p.model.id} (${arch.modelType}${arch.vision ? ", vision-language" : ""}${arch.text.moe ? ", MoE" : ""})`,
    `Hardware  ${p.nodes} node(s) × ${p.gpus} × ${p.gpu.name}, ${formatGib(p.gpu.capacityBytes)} each`,
    `Strategy  ${p.method}${p.quantBits ? ` ${p.quantBits}-bit ${p.quantMethod}` : ""}, sharding ${p.sharding}` +
      `${p.fsdpStrategy ? ` (${p.fsdpStrategy})` : ""}, offload ${p.offload}, ${p.precision}, ` +
      `optimizer ${optimizerLine(p, a.assumptions)}`,
    `Batch     micro-batch ${p.microBatch} × seq ${p.seqLen}${p.packing ? " (packed)" : ""}, grad-accum ${p.gradAccum}, ` +
      `checkpointing ${p.gradientCheckpointing ? "on" : "off"}, attention ${p.attention}`,
    `          global batch ${p.microBatch * p.gradAccum * p.gpus * p.nodes} sequences = micro-batch ${p.microBatch} × ` +
      `accumulation ${p.gradAccum} × ${p.gpus * p.nodes} GPU(s), ` +
      `${formatInt(p.microBatch * p.gradAccum * p.gpus * p.nodes * p.seqLen)} tokens per step`,
    ...(p.imagesPerSample > 0
      ? [
          imagePatches(p).tokens === 0
            ? `Images    ${p.imagesPerSample} per sample, ${formatInt(imagePatches(p).patches)} patches each in the vision tower, read through cross-attention (no tokens in the sequence)`
            : `Images    ${p.imagesPerSample} per sample × ${formatInt(imagePatches(p).tokens)} tokens ` +
              `(${formatInt(imagePatches(p).patches)} patches in the vision tower) at up to ${formatInt(p.imageMaxPixels)} pixels: ` +
              `${formatInt(p.imagesPerSample * imagePatches(p).tokens)} of the ${formatInt(p.seqLen)} tokens`,
        ]
      : []),
    ...(p.videosPerSample > 0
      ? [
          `Videos    ${p.videosPerSample} per sample × ${formatInt(videoPatches(p).tokens)} tokens ` +
            `(${formatInt(videoPatches(p).patches)} patches in the vision tower): ${p.videoFrames} frames (video_maxlen) ` +
            `at up to ${formatInt(p.videoMaxPixels)} pixels, in pairs: ` +
            `${formatInt(p.videosPerSample * videoPatches(p).tokens)} of the ${formatInt(p.seqLen)} tokens`,
        ]
      : []),
    `Template  ${p.template ?? "not set: LLaMA-Factory reads the tokenizer's chat template (or uses empty)"}`,
    ...(Object.keys(a.assumptions).length > 0
      ? [
          `Assumed   ${Object.entries(a.assumptions)
            .map(([k, v]) => `${k}=${v}`)
            .join(", ")} (memory model overrides, --assume)`,
        ]
      : []),
    "",
    table([
      ["parameters", "count", "exact"],
      ["total", formatCount(a.params.total), formatInt(a.params.total)],
      ...(a.params.active !== a.params.total
        ? [["active per token", formatCount(a.params.active), formatInt(a.params.active)]]
        : []),
      ...(a.params.visionTower > 0
        ? [
            [
              "vision tower + projector",
              formatCount(a.params.visionTower + a.params.projector),
              formatInt(a.params.visionTower + a.params.projector),
            ],
          ]
        : []),
      [
        a.plan.lowMemoryOptimizer === "badam" ? "trainable (one layer at a time)" : "trainable",
        formatCount(a.trainable.trainable),
        formatInt(a.trainable.trainable),
      ],
    ]),
  ];
  if (a.trainable.loraTargets.length > 0) lines.push(`LoRA targets: ${a.trainable.loraTargets.join(", ")}`);
  if (a.plan.lowMemoryOptimizer === "badam")
    lines.push(
      `BAdam trains one decoder layer at a time (the embeddings and lm_head stay frozen); the figures are for the largest, layer ${a.trainable.trainableLayers.join(", ")}`,
    );
  else if (a.trainable.trainableLayers.length > 0)
    lines.push(`Trained layers: ${a.trainable.trainableLayers.join(", ")}`);
  const lowMemory = a.plan.lowMemoryOptimizer;
  if (lowMemory === "muon")
    lines.push(
      "Muon: one momentum buffer per weight matrix; AdamW's two moments for the embeddings, lm_head, norms and fused experts",
    );
  if (lowMemory === "adam_mini")
    lines.push(
      "Adam-mini: an fp32 first moment per trainable parameter; one second moment per head or block (per parameter only for the embeddings and lm_head)",
    );
  if (projectsGradients(lowMemory))
    lines.push(
      `${LOW_MEMORY_OPTIMIZER_NAMES[lowMemory]} rank ${a.plan.lowMemoryRank}${a.plan.lowMemoryLayerwise ? ", layer-wise" : ""}: optimizer states of every language-model linear at rank ${a.plan.lowMemoryRank}; embeddings, norms and lm_head keep full states`,
    );
  const m = a.memory;
  const per = m.train.perGpu;
  const load = m.load.fits
    ? "✔"
    : m.load.oomWhileWrapping
      ? "✖ runs out while FSDP wraps its last unit (embeddings, lm_head) on top of the other shards"
      : `✖ runs out at ${((m.load.oomAtFraction ?? 0) * 100).toFixed(0)} % of the weights` +
        (m.load.oomAtShard ? ` (shard ${m.load.oomAtShard.index} of ${m.load.oomAtShard.of})` : "");
  lines.push(
    "",
    `Per-GPU memory at the training peak (${m.train.phase}): ${atLimit(per.deviceBytes, m.train.capacityBytes)} usable ${m.train.fits ? "✔ fits" : "✖ does not fit"}`,
    `  ${memoryBar(per.breakdown, m.train.capacityBytes, p.gpu.capacityBytes, 60, color)}`,
    `  ${memoryLegend(per.breakdown)}`,
    `  allocated ${formatGib(per.allocatedBytes)} · reserved ${formatGib(per.reservedBytes)} · ` +
      `nvidia-smi ${formatGib(per.deviceBytes)}`,
    ...(m.train.releasableBytes > 0
      ? [
          `  of the fragmentation, ${formatGib(m.train.releasableBytes)} is ${m.train.releasableSources.map((s) => RELEASABLE_SOURCE[s]).join(" and ")} left in the allocator's cache: ` +
            "it fills what the card leaves, and is freed before the allocator runs out",
        ]
      : []),
    ...(m.train.pagedOptimizerBytes > 0 && m.train.fits
      ? [
          `  ${formatGib(m.train.pagedOptimizerBytes)} of optimizer states in bitsandbytes' paged (CUDA managed) memory, outside ` +
            `PyTorch's allocator: ${formatGib(m.train.pagedOptimizerBytes - m.train.pagedToHostBytes)} of it on the GPU, counted in the runtime (r)` +
            (m.train.pagedToHostBytes > 0
              ? `; ${formatGib(m.train.pagedToHostBytes)} pages through host RAM every step`
              : ""),
        ]
      : []),
    ...(m.train.phase === "backward" &&
    per.breakdown.gradients === 0 &&
    a.trainable.trainable > 0 &&
    gradientsMadeInBackward(p)
      ? ["  no gradients at this peak: it comes as backward begins, before it makes them (grad-accum 1)"]
      : []),
    `Loading    ${formatGib(m.load.perGpuPeakBytes)} per GPU ${load}`,
    `Inference  ${formatGib(m.inference.perGpuBytes)} on the fullest GPU (device_map="auto" over ${p.gpus})` +
      (m.inference.cpuBytes > 0
        ? `; ${formatGib(m.inference.cpuBytes)} of weights fit on no GPU and run from the CPU (slow)`
        : ""),
    `Host RAM   ${formatGib(m.hostRam.perNodeBytes)} per node${p.hostRamBytes === null ? " (not checked: --host-ram)" : ""}`,
    stepTimeLine(p),
    "",
  );
  lines.push(a.issues.length > 0 ? formatIssuesForCli(a.issues) : "✔ the plan is valid and fits");
  return `${lines.join("\n")}\n`;
}

/** The step-time estimate in one line (a rough figure from the GPU's dense throughput and its links). */
function stepTimeLine(p: PlanAnalysis["plan"]): string {
  const t = estimateStepTime(p);
  const parts = [
    `compute ${t.computeSeconds.toFixed(1)} s`,
    `communication ${t.communicationSeconds.toFixed(1)} s`,
  ];
  if (t.offloadSeconds > 0) parts.push(`offload ${t.offloadSeconds.toFixed(1)} s`);
  if (p.gpu.denseBf16Tflops === null && p.gpu.denseFp16Tflops === null)
    parts.push(
      `${DEFAULT_STEP_TIME_ASSUMPTIONS.fallbackTflops} TFLOPS assumed: the catalog has none for this GPU`,
    );
  if (p.nodes > 1)
    parts.push(
      `${DEFAULT_STEP_TIME_ASSUMPTIONS.interNodeBytesPerSecond / 1e9} GB/s between nodes assumed (one 100 Gb/s link per node; faster fabrics shorten the communication)`,
    );
  return `Step time ~${t.stepSeconds.toFixed(1)} s per optimizer step (${parts.join(", ")}; an estimate, not a measurement)`;
}

const blockingText = (blocking: readonly Issue[]) =>
  blocking.length > 0
    ? `the plan breaks ${blocking.map((i) => `${i.code} (${flagName(i.path)})`).join(", ")}, which every candidate keeps: change that first (above)`
    : undefined;

function humanExtras(
  r: RecommendResult | undefined,
  max: string | undefined,
  maxValue: number | undefined,
  gradAccum?: number,
  microBatch?: number,
  context: { blocking: readonly Issue[]; maxBlocking: readonly Issue[]; mediaTokens: number } = {
    blocking: [],
    maxBlocking: [],
    mediaTokens: 0,
  },
): string {
  const out: string[] = [];
  if (r) {
    out.push(
      "",
      `Recommendations (${r.recommendations.length} of the plans that fit; ${r.evaluated} evaluated, fastest first):`,
    );
    if (r.recommendations.length === 0)
      out.push(`  none fits: ${blockingText(context.blocking) ?? "more or larger GPUs are needed"}`);
    r.recommendations.forEach((x, i) => {
      out.push(
        `  ${i + 1}. ${x.summary}: ${formatGib(x.deviceBytes)} per GPU` +
          `${x.input.offload !== undefined && x.input.offload !== "none" ? `, ${formatGib(x.hostRamBytes)} host RAM per node` : ""}, ~${x.stepSeconds.toFixed(1)} s/step`,
        `     tunefit plan ${x.args.join(" ")}`,
      );
    });
  }
  if (max !== undefined) {
    out.push(
      "",
      maxValue
        ? `Largest ${max} that fits: ${maxValue}${max === "micro-batch" && gradAccum !== undefined && maxValue !== microBatch ? ` (with --grad-accum ${gradAccum} kept: ${maxValue * gradAccum} sequences per GPU per step; ${maxValue > (microBatch ?? 1) ? "lower" : "raise"} --grad-accum to keep the global batch)` : ""}`
        : context.maxBlocking.length > 0
          ? `No ${max} fits: ${blockingText(context.maxBlocking)}.`
          : max === "seq-len" && context.mediaTokens > 0
            ? `No seq-len fits: none from ${context.mediaTokens} (the tokens of the sample's images and videos, with their markers) up. The plan's issues above say what else to change.`
            : `No ${max} fits: even 1 does not. The plan's issues above say what else to change (the training step's hint lists the ways out).`,
    );
  }
  return out.length > 0 ? `${out.join("\n")}\n` : "";
}

/** doctor's --images-per-sample and --videos-per-sample: whole numbers, 0 or more. */
function mediaFlags(values: Values): { imagesPerSample?: number; videosPerSample?: number } {
  const out: { imagesPerSample?: number; videosPerSample?: number } = {};
  for (const [flag, field] of [
    ["images-per-sample", "imagesPerSample"],
    ["videos-per-sample", "videosPerSample"],
  ] as const) {
    const raw = values[flag];
    if (typeof raw !== "string") continue;
    const parsed = parseFlagValue(field, raw);
    if (typeof parsed === "object" && parsed !== null) throw new TunefitError("usage", [parsed as Issue]);
    if ((parsed as number) < 0)
      throw usageError(
        "FLAG_VALUE_INVALID",
        field,
        `--${flag} ${raw}: expected a whole number, 0 or more`,
        `Write --${flag} N with N ≥ 0.`,
      );
    out[field] = parsed as number;
  }
  return out;
}

/** The YAML's model_name_or_path as the Hub gave it (src/cli/hub.ts), when it was read from there. */
function hubModelOfYaml(yaml: Readonly<Record<string, unknown>>, io: CliIo): ModelDefinition | undefined {
  const id = typeof yaml.model_name_or_path === "string" ? yaml.model_name_or_path : undefined;
  const fetched = id === undefined ? undefined : io.hubConfigs?.get(id);
  return id !== undefined && fetched !== undefined ? hubDefinition(id, fetched) : undefined;
}

/** A model read from the Hub, as the library takes it: its id, config.json and shard count. */
function hubDefinition(id: string, fetched: HubModel): ModelDefinition {
  return { id, config: fetched.config, ...(fetched.shards === null ? {} : { shards: fetched.shards }) };
}

/** The plan input of the plan flags: the --spec file's fields, overridden by the flags given beside it. */
function planInputFromFlags(values: Record<string, unknown>, io: CliIo): Record<string, unknown> {
  const byField: Record<string, string | undefined> = {};
  for (const field of Object.keys(PLAN_FLAGS)) {
    const v = values[flagName(field).slice(2)];
    if (typeof v === "string") byField[field] = v;
  }
  const spec = typeof values.spec === "string" ? readSpec(values.spec, io) : {};
  const flags = flagsToInput(byField);
  const input: Record<string, unknown> = { ...spec, ...flags };
  // a flag that changes what a spec's field qualifies (--method full over a LoRA spec) drops that field, as the
  // flag's meaning asks; a spec that is inconsistent by itself is reported as it is
  if (typeof values.spec === "string") {
    const before = new Set(inapplicableFields(spec as Partial<PlanInput>));
    const dropped = inapplicableFields(input as Partial<PlanInput>).filter(
      (f) => !before.has(f) && !(f in flags) && f in spec,
    );
    for (const f of dropped) delete input[f];
    // a --model that takes no images (or videos) drops the spec's image (video) fields too
    if ("model" in flags) {
      for (const [code, fields] of [
        [
          "MODEL_HAS_NO_VISION",
          ["imagesPerSample", "imageMaxPixels", "videosPerSample", "videoFrames", "videoMaxPixels"],
        ],
        ["MODEL_TAKES_NO_VIDEO", ["videosPerSample", "videoFrames", "videoMaxPixels"]],
      ] as const) {
        const fromSpec = fields.filter((f) => f in spec && !(f in flags) && f in input);
        if (fromSpec.length === 0 || fields.some((f) => f in flags)) continue;
        try {
          resolvePlan(input, { cwd: io.cwd });
        } catch (e) {
          if (!(e instanceof TunefitError) || !e.issues.some((x) => x.code === code)) continue;
          for (const f of fromSpec) delete input[f];
          dropped.push(...fromSpec);
        }
      }
    }
    if (dropped.length > 0)
      io.stderr(
        `ℹ ${values.spec}: ${dropped.map((f) => `${f} (${flagName(f)})`).join(", ")} dropped: the flags given make ${dropped.length > 1 ? "them" : "it"} not apply\n`,
      );
  }
  const missing = missingRequired(input);
  if (missing.length > 0) throw new TunefitError("usage", missing);
  // a model read from the Hub enters as its config.json, under its hub id
  const fetched = typeof input.model === "string" ? io.hubConfigs?.get(input.model) : undefined;
  if (fetched !== undefined) input.model = hubDefinition(String(input.model), fetched);
  return input;
}

/** The memory-model overrides of the repeatable --assume NAME=VALUE flag. */
function assumptionsOf(values: Record<string, unknown>) {
  const entries = values.assume;
  return parseAssumptions(Array.isArray(entries) ? entries.filter((e) => typeof e === "string") : []);
}

/**
 * Refuses to write a plan that does not fit or breaks a rule, unless --allow-unfit: prints the plan (or its JSON
 * with no files) and says nothing was written to `target`.
 */
function refusedUnfit(analysis: PlanAnalysis, values: Values, io: CliIo, target: string): boolean {
  if (analysis.valid || values["allow-unfit"] === true) return false;
  if (values.json) io.stdout(`${JSON.stringify({ files: [], plan: planReport(analysis) }, null, 2)}\n`);
  else io.stdout(humanPlan(analysis, io.color ?? false));
  io.stderr(
    `Nothing written to ${target}: the plan does not fit or breaks a rule (above). Fix it, or pass --allow-unfit to write it anyway.\n`,
  );
  return true;
}

/** A config.json model folder, named relative to the written folder (where launch.sh runs). */
function modelPathFrom(plan: PlanAnalysis["plan"], dir: string, io: CliIo): string | undefined {
  return plan.model.source === "config" && plan.model.dir !== null
    ? relative(dir, resolve(io.cwd, plan.model.dir)) || "."
    : undefined;
}

function runEmit(values: Values, _args: readonly string[], io: CliIo): number {
  const input = planInputFromFlags(values, io);
  const out = values.out;
  if (typeof out !== "string" || out === "") {
    throw usageError(
      "OUT_MISSING",
      "--out",
      "tunefit emit needs --out DIR: the folder the bundle is written to",
      "Add --out DIR (a new or empty folder; --force replaces a non-empty one).",
    );
  }
  const analysis = analyzePlan(input, { cwd: io.cwd, assumptions: assumptionsOf(values) });
  if (refusedUnfit(analysis, values, io, out)) return EXIT.unfit;
  const dir = resolve(io.cwd, out);
  const { plan } = analysis;
  const modelPath = modelPathFrom(plan, dir, io);
  const stepsRaw = values["probe-steps"];
  const probeSteps = typeof stepsRaw === "string" ? Number(stepsRaw) : undefined;
  if (probeSteps !== undefined && (!Number.isInteger(probeSteps) || probeSteps < 1 || probeSteps > 10_000)) {
    throw usageError(
      "FLAG_VALUE_INVALID",
      "--probe-steps",
      `--probe-steps ${JSON.stringify(stepsRaw)}: expected a whole number of steps from 1 to 10000`,
      "Write e.g. --probe-steps 5.",
    );
  }
  if (probeSteps !== undefined && values.probe !== true) {
    throw usageError(
      "FLAG_QUALIFIER",
      "--probe-steps",
      "--probe-steps needs --probe",
      "Add --probe, or drop --probe-steps.",
    );
  }
  const files = emitAnalysis(analysis, {
    ...(modelPath === undefined ? {} : { modelPath }),
    ...(values.probe === true ? { probe: true } : {}),
    ...(probeSteps === undefined ? {} : { probeSteps }),
  });
  const problems = checkBundle(files, plan).filter((i) => i.severity === "error");
  if (problems.length > 0) {
    throw new Error(
      `the emitted bundle breaks its own checks: ${problems.map((p) => `${p.path}: ${p.message}`).join("; ")}`,
    );
  }
  const written = writeFiles(files, dir, { force: values.force === true });
  if (values.json) {
    io.stdout(`${JSON.stringify({ files: written.files, plan: planReport(analysis) }, null, 2)}\n`);
  } else {
    io.stdout(
      `${humanPlan(analysis, io.color ?? false)}\nWrote ${written.files.length} files to ${out}:\n${written.files.map((f) => `  ${f}`).join("\n")}\n\nLaunch: ${join(out, "launch.sh")}  (README.md says how, and what was not executed)\n`,
    );
  }
  return analysis.valid ? EXIT.ok : EXIT.unfit;
}

/** Writes one file whole (a temporary file beside it, then a rename); an existing file only with --force. */
function writeOneFile(path: string, text: string, force: boolean, flag: string): void {
  if (existsSync(path) && statSync(path).isDirectory()) {
    throw usageError(
      "OUTPUT_IS_FOLDER",
      flag,
      `${path} is a folder; ${flag} names the file to write`,
      `Give a file path, e.g. ${flag} ${join(path, "plan.ts")}.`,
    );
  }
  if (existsSync(path) && !force) {
    throw usageError(
      "OUTPUT_EXISTS",
      flag,
      `${path} exists`,
      "Pass --force to replace it, or choose another file name.",
    );
  }
  const tmp = join(dirname(path), `.${basename(path)}.tunefit-${process.pid}`);
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw usageError(
      "OUTPUT_WRITE_FAILED",
      flag,
      `cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      "Check that the folder exists and is writable.",
    );
  }
}

/** how the report names each part of the cache the allocator frees before it fails */
const RELEASABLE_SOURCE: Readonly<Record<ReleasableSource, string>> = {
  "fsdp-wrap-level": "FSDP1's wrap level",
  "zero3-gather-pool": "ZeRO-3's all-gather stream pool (overlap_comm) at its high-water mark",
  "deepspeed-step-segments": "the extra segments DeepSpeed's step took (beyond backward's reserve)",
};

/** The hardware flags doctor and import take (a training YAML holds no hardware). */
const HARDWARE_FLAGS = ["gpu", "gpus", "nodes", "gpuMemory", "hostRam"] as const;
/** doctor judges fit as plan does: with the share of memory kept free */
const DOCTOR_HARDWARE_FLAGS = [...HARDWARE_FLAGS, "headroom"] as const;
const hardwareOptions = (flags: readonly string[] = HARDWARE_FLAGS) =>
  Object.fromEntries(flags.map((f) => [flagName(f).slice(2), { type: "string" as const }]));

function hardwareFromFlags(
  values: Record<string, unknown>,
  flags: readonly string[] = HARDWARE_FLAGS,
): Partial<PlanInput> {
  const byField: Record<string, string | undefined> = {};
  for (const f of flags) {
    const v = values[flagName(f).slice(2)];
    if (typeof v === "string") byField[f] = v;
  }
  return flagsToInput(byField);
}

/** A LLaMA-Factory setup as the tools read it: the YAML (with overrides), its DeepSpeed config, an accelerate config. */
function readSetup(
  yamlFile: string,
  overrides: readonly string[],
  values: Record<string, unknown>,
  io: CliIo,
) {
  const launchDir = resolve(io.cwd, typeof values["launch-dir"] === "string" ? values["launch-dir"] : ".");
  const yamlPath = resolve(io.cwd, yamlFile);
  const yaml = applyOverrides(readTrainYamlFile(yamlPath, yamlFile), overrides);
  const readIssues: Issue[] = [];
  const deepspeed = readDeepSpeed(yaml.deepspeed, launchDir, yamlPath, readIssues, yamlFile);
  const accFile = values["accelerate-config"];
  let accelerate =
    typeof accFile === "string" ? readAccelerateConfig(resolve(io.cwd, accFile), accFile) : null;
  // tunefit's own FSDP bundles launch with the accelerate config beside train.yaml: read it unless the run is said
  // to be something else (a DeepSpeed config in the YAML, another config, or a torchrun launch)
  const beside = join(dirname(yamlPath), BUNDLE_FILES.accelerate);
  if (
    accelerate === null &&
    yaml.deepspeed === undefined &&
    values.launcher !== "torchrun" &&
    existsSync(beside)
  ) {
    const shown = join(dirname(yamlFile), BUNDLE_FILES.accelerate);
    accelerate = readAccelerateConfig(beside, shown);
    readIssues.push({
      code: "ACCELERATE_CONFIG_BESIDE",
      severity: "info",
      path: shown,
      message: `read ${shown}, the accelerate config beside ${yamlFile} (a tunefit bundle launches with it: accelerate launch --config_file ${BUNDLE_FILES.accelerate})`,
      hint: "Pass --accelerate-config FILE to name the config your launch uses, or --launcher torchrun for a launch without accelerate.",
    });
  }
  return { launchDir, yaml, deepspeed, accelerate, readIssues };
}

function runImport(values: Values, [yamlFile]: readonly string[], io: CliIo): number {
  if (yamlFile === undefined) throw new Error("import runs with its TRAIN_YAML");
  const hw = hardwareFromFlags(values);
  if (hw.gpu === undefined && (hw.gpus !== undefined || hw.nodes !== undefined)) {
    throw usageError(
      "FLAG_REQUIRED",
      "gpu",
      "--gpus/--nodes need --gpu",
      "Add --gpu ID (tunefit gpus lists them).",
    );
  }
  const { yaml, deepspeed, accelerate } = readSetup(yamlFile, [], values, io);
  const model = typeof values.model === "string" ? values.model : hubModelOfYaml(yaml, io);
  const result = importTrainYaml(yaml, {
    ...(hw.gpu === undefined
      ? {}
      : {
          hardware: {
            gpu: hw.gpu,
            ...(hw.gpus === undefined ? {} : { gpus: hw.gpus }),
            ...(hw.nodes === undefined ? {} : { nodes: hw.nodes }),
            ...(hw.gpuMemory === undefined ? {} : { gpuMemoryGiB: hw.gpuMemory }),
            ...(hw.hostRam === undefined ? {} : { hostRamGiB: hw.hostRam }),
          },
        }),
    ...(model === undefined ? {} : { model }),
    deepspeed,
    accelerate,
    yamlName: basename(yamlFile),
    cwd: io.cwd,
  });
  const kept = Object.keys(result.escapeHatch.set);
  const dropped = result.escapeHatch.remove;
  const list = (keys: readonly string[]) => `${keys.length} key${keys.length === 1 ? "" : "s"}`;
  const notes = [
    `${list(kept)} kept as the original writes them (escape hatch \`set\`: tunefit does not model them, or writes them otherwise): ${kept.join(", ") || "none"}`,
    `${list(dropped)} tunefit would write that the original leaves out, dropped (escape hatch \`remove\`): ${dropped.join(", ") || "none"}`,
    `${result.modelledKeys.length} keys became builder calls (${result.builderCalls.join(", ")})`,
  ];
  if (result.hardwarePlaceholder)
    notes.push("hardware: one h100-80g, a placeholder (a YAML holds none); give --gpu/--gpus");
  if (!result.memoryKnown) {
    notes.push(
      "the model is not in the catalog: run the script with its config.json folder as the second argument",
    );
  }
  const keyIssues = checkTrainYaml(yaml, yamlFile).map((i) => ({ ...i, severity: "warning" as const }));
  if (typeof values.out === "string") {
    writeOneFile(resolve(io.cwd, values.out), result.source, values.force === true, "--out");
    io.stdout(`Wrote ${values.out}. Run it: npx tsx ${values.out} OUT_DIR\n`);
  } else {
    io.stdout(result.source);
  }
  io.stderr(`${notes.map((n) => `tunefit import: ${n}`).join("\n")}\n`);
  if (keyIssues.length > 0) io.stderr(`${formatIssuesForCli(keyIssues)}\n`);
  return EXIT.ok;
}

/** The folder of the tunefit package this CLI runs from (its package.json), or null where none is found. */
function ownPackageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: unknown };
      if (pkg.name === "tunefit") return dir;
    } catch {
      // no package.json here: look further up
    }
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/**
 * How a scaffold depends on tunefit: the version range where this tunefit was installed as a package, or a `file:`
 * path to the checkout the CLI runs from (tunefit is not on the npm registry then, and `npm install` there fails).
 */
function tunefitSpecFor(dir: string): string | undefined {
  const root = ownPackageRoot();
  if (root === null || root.split(sep).includes("node_modules")) return undefined;
  return `file:${(relative(dir, root) || ".").split(sep).join("/")}`;
}

function runInit(values: Values, [target]: readonly string[], io: CliIo): number {
  if (target === undefined) throw new Error("init runs with its DIR");
  const input = planInputFromFlags(values, io);
  const analysis = analyzePlan(input, { cwd: io.cwd, assumptions: assumptionsOf(values) });
  if (refusedUnfit(analysis, values, io, target)) return EXIT.unfit;
  const dir = resolve(io.cwd, target);
  const modelPath = modelPathFrom(analysis.plan, dir, io);
  const scaffold = typeof values.scaffold === "string" ? values.scaffold : undefined;
  const spec = tunefitSpecFor(dir);
  const files = initFiles(analysis, {
    planInput: input as PlanInput,
    name: basename(dir),
    ...(scaffold === undefined ? {} : { scaffold }),
    ...(spec === undefined ? {} : { tunefitSpec: spec }),
    ...(modelPath === undefined ? {} : { modelPath }),
  });
  const written = writeFiles(files, dir, { force: values.force === true });
  if (values.json) {
    io.stdout(`${JSON.stringify({ files: written.files, plan: planReport(analysis) }, null, 2)}\n`);
  } else {
    io.stdout(
      `Scaffolded ${target} (${written.files.length} files):\n${written.files.map((f) => `  ${f}`).join("\n")}\n\nNext: cd ${target} && npm install && npm run plan   (README.md explains the rest)\n`,
    );
  }
  return analysis.valid ? EXIT.ok : EXIT.unfit;
}

function runDoctor(values: Values, [yamlFile, ...overrides]: readonly string[], io: CliIo): number {
  if (yamlFile === undefined) throw new Error("doctor runs with its TRAIN_YAML");
  const hw = hardwareFromFlags(values, DOCTOR_HARDWARE_FLAGS);
  if (hw.gpu === undefined) {
    throw usageError(
      "FLAG_REQUIRED",
      "gpu",
      "tunefit doctor needs --gpu: a training YAML does not say what it runs on",
      "Add --gpu ID (tunefit gpus lists them) and --gpus N.",
    );
  }
  const launcherFlag = values.launcher;
  if (launcherFlag !== undefined && launcherFlag !== "torchrun" && launcherFlag !== "accelerate") {
    throw usageError(
      "FLAG_VALUE_INVALID",
      "--launcher",
      `--launcher ${JSON.stringify(launcherFlag)}: expected torchrun|accelerate`,
      "Write --launcher torchrun (llamafactory-cli) or --launcher accelerate.",
    );
  }
  if (values.fix && typeof values.out !== "string") {
    throw usageError(
      "OUT_MISSING",
      "--out",
      "--fix needs --out DIR: the folder the fixed files go to",
      "Add --out DIR.",
    );
  }
  if (!values.fix && typeof values.out === "string") {
    throw usageError(
      "FLAG_QUALIFIER",
      "--out",
      "--out names where --fix writes the fixed files; without --fix doctor writes nothing",
      "Add --fix to write the fixed files to it, or drop --out.",
    );
  }
  const { launchDir, yaml, deepspeed, accelerate, readIssues } = readSetup(yamlFile, overrides, values, io);
  const launcher: Launcher = launcherFlag ?? (accelerate !== null ? "accelerate" : "torchrun");
  const hardware = hw as Hardware;
  const flagModel = typeof values.model === "string" ? values.model : undefined;
  const model = flagModel ?? hubModelOfYaml(yaml, io);
  const report = doctor({
    yaml,
    yamlName: yamlFile,
    deepspeed,
    accelerate,
    launcher,
    hardware,
    ...(model === undefined ? {} : { model }),
    cwd: flagModel === undefined ? launchDir : io.cwd,
    readIssues,
    assumptions: assumptionsOf(values),
    ...mediaFlags(values),
  });
  const json = {
    ...planReport(report.analysis),
    issues: report.issues,
    doctor: {
      launcher: report.launcher,
      verdict: report.verdict,
      modelledKeys: report.setup.modelled,
      unmodelledKeys: report.setup.unmodelled,
      fix: report.fix && fixJson(report.fix, report.analysis.assumptions),
      alternatives: report.alternatives.map((f) => fixJson(f, report.analysis.assumptions)),
      byHand: report.byHand.map((i) => i.path),
    },
  };
  let written: string[] = [];
  if (values.fix && report.fix !== null) {
    const files = fixFiles(report, yaml, report.fix, { accelerate });
    written = [
      ...writeFiles(files, resolve(io.cwd, values.out as string), { force: values.force === true }).files,
    ];
  }
  if (values.json) {
    io.stdout(`${JSON.stringify(values.fix ? { ...json, files: written } : json, null, 2)}\n`);
  } else {
    io.stdout(humanDoctor(report, yamlFile));
    if (values.fix) {
      io.stdout(
        report.fix === null
          ? report.valid
            ? "\nNothing to fix: nothing written.\n"
            : report.byHand.length > 0
              ? "\nThe YAML has values to correct by hand first: nothing written.\n"
              : "\nNo fix found within the search: nothing written.\n"
          : `\nWrote ${written.length} files to ${values.out}:\n${written.map((f) => `  ${f}`).join("\n")}\n`,
      );
    }
  }
  return report.valid ? EXIT.ok : EXIT.unfit;
}

function fixJson(f: Fix, assumptions: Partial<MemoryAssumptions>) {
  return {
    changes: f.changes.map((c) => ({ kind: c.kind, target: c.target, text: c.text })),
    cost: f.cost,
    launcher: f.launcher,
    args: [...inputToArgs(f.input), ...assumptionArgs(assumptions)],
    deviceBytes: f.deviceBytes,
    stepSeconds: f.stepSeconds,
  };
}

function humanDoctor(r: DoctorReport, yamlFile: string): string {
  const p = r.analysis.plan;
  const out = [
    `tunefit doctor: ${yamlFile} (${p.model.id}, ${p.method}, sharding ${p.sharding}) on ${p.nodes > 1 ? `${p.nodes} nodes × ` : ""}${p.gpus} × ${p.gpu.name}, launched with ${r.launcher === "accelerate" ? "accelerate launch" : p.gpus * p.nodes > 1 ? "llamafactory-cli (torchrun)" : "llamafactory-cli"}`,
    "",
    "What will happen:",
    ...r.verdict.map((v) => `  ${v}`),
    "",
  ];
  if (r.issues.length > 0) out.push(formatIssuesForYaml(r.issues, yamlFile), "");
  if (r.setup.unmodelled.length > 0) {
    out.push(
      `Kept as written (${r.setup.unmodelled.length} key${r.setup.unmodelled.length === 1 ? "" : "s"} tunefit does not model): ${r.setup.unmodelled.join(", ")}`,
      "",
    );
  }
  if (r.valid && !r.analysis.memory.train.fits) {
    out.push(
      "⚠ LLaMA-Factory accepts it as it is; whether the step fits is open: tunefit's figure is an upper bound here.",
    );
  } else if (r.valid) {
    out.push("✔ It runs as it is: no change needed.");
  } else if (r.byHand.length > 0) {
    out.push(
      `✖ Correct by hand first (no value can be chosen for you): ${[...new Set(r.byHand.map((i) => i.path.slice(i.path.lastIndexOf(":") + 1)))].join(", ")}; then run doctor again.`,
    );
  } else if (r.fix === null) {
    out.push(
      "✖ No fix found among method × precision × sharding × offload × Liger × micro-batch changes: more or larger GPUs are needed.",
    );
  } else {
    const f = r.fix;
    out.push(
      `Smallest fix: ${f.changes.length} change${f.changes.length === 1 ? "" : "s"} (${formatGib(f.deviceBytes)} per GPU, ~${f.stepSeconds.toFixed(0)} s per step):`,
      ...(r.alternatives.some((a) => a.changes.length < f.changes.length)
        ? [
            "  (a fix that changes your method or parallel strategy counts one edit more, so this one ranks first)",
          ]
        : []),
      ...f.changes.map((c) => `  - ${c.text}`),
    );
    if (r.alternatives.length > 0) {
      out.push("", "Other fixes:");
      for (const a of r.alternatives) {
        out.push(
          `  ${a.changes.length} change${a.changes.length === 1 ? "" : "s"}, ~${a.stepSeconds.toFixed(0)} s per step: ${a.changes.map((c) => c.text).join("; ")}`,
        );
      }
    }
    if (r.analysis.plan.hostRamBytes === null) {
      out.push(
        "",
        `Fixes with CPU offload were held to ${ASSUMED_HOST_RAM_GIB} GiB of host RAM per node; pass --host-ram GIB for yours.`,
      );
    }
    out.push("", `Write the fixed files: tunefit doctor ${yamlFile} … --fix --out DIR`);
  }
  return `${out.join("\n")}\n`;
}

function runPlan(values: Values, _args: readonly string[], io: CliIo): number {
  const input = planInputFromFlags(values, io);
  const max = values.max;
  if (max !== undefined && max !== "micro-batch" && max !== "seq-len") {
    throw usageError(
      "FLAG_VALUE_INVALID",
      "--max",
      `--max ${JSON.stringify(max)}: expected micro-batch|seq-len`,
      "Write --max micro-batch or --max seq-len.",
    );
  }
  const options = { cwd: io.cwd, assumptions: assumptionsOf(values) };
  const analysis = analyzePlan(input, options);
  const report: Record<string, unknown> = planReport(analysis);
  const planInput = input as PlanInput;
  let recommendations: RecommendResult | undefined;
  if (values.recommend) {
    recommendations = recommend(planInput, options);
    report.recommendations = recommendations.recommendations.map(({ input: _, ...r }) => r);
    report.recommendationSearch = { evaluated: recommendations.evaluated };
  }
  let maxValue: number | undefined;
  if (max !== undefined) {
    const field = max === "micro-batch" ? "microBatch" : "seqLen";
    maxValue = maxFitting(planInput, field, options);
    report.max = { [field]: maxValue };
  }
  if (values.json) io.stdout(`${JSON.stringify(report, null, 2)}\n`);
  else
    io.stdout(
      humanPlan(analysis, io.color ?? false) +
        humanExtras(recommendations, max, maxValue, analysis.plan.gradAccum, analysis.plan.microBatch, {
          blocking: keptRuleErrors(analysis),
          maxBlocking: keptRuleErrors(analysis, max === "seq-len" ? "seqLen" : "microBatch"),
          mediaTokens: mediaSequenceTokens(analysis.plan),
        }),
    );
  return analysis.valid ? EXIT.ok : EXIT.unfit;
}

function runModels(values: Values, _args: readonly string[], io: CliIo): number {
  const rows = listCatalogModels().map((m) => {
    const params = countParams(m.architecture);
    const main = m.ids[0];
    return {
      id: m.id,
      key: m.key,
      modelType: m.architecture.modelType,
      params: { total: params.total, active: params.active },
      vision: m.architecture.vision !== null,
      template: main?.defaultTemplate ?? main?.groupTemplate ?? null,
      aliases: m.ids.slice(1).map((i) => i.id),
    };
  });
  if (values.json) {
    io.stdout(`${JSON.stringify(rows, null, 2)}\n`);
  } else {
    io.stdout(
      `${table([
        ["id", "type", "params", "template", "aliases"],
        ...rows.map((r) => [
          r.id,
          r.modelType,
          formatCount(r.params.total) +
            (r.params.active !== r.params.total ? ` (${formatCount(r.params.active)} active)` : ""),
          r.template ?? "(none: the tokenizer's)",
          r.aliases.join(", "),
        ]),
      ])}\n`,
    );
  }
  return EXIT.ok;
}

function runGpus(values: Values, _args: readonly string[], io: CliIo): number {
  const gpus = listGpus();
  if (values.json) {
    io.stdout(
      `${JSON.stringify(
        gpus.map((g) => ({ ...g, capacityBytes: gpuCapacityBytes(g) })),
        null,
        2,
      )}\n`,
    );
  } else {
    io.stdout(
      `${table([
        ["id", "name", "memory", "cc", "bf16", "fa2", "bf16 TFLOPS"],
        ...gpus.map((g) => [
          g.id,
          g.name,
          `${formatInt(g.memoryMib)} MiB`,
          g.computeCapability ?? "-",
          g.bf16 ? "yes" : "no",
          g.flashAttention2 ? "yes" : "no",
          g.denseBf16Tflops === null ? "-" : String(g.denseBf16Tflops),
        ]),
      ])}\n`,
    );
  }
  return EXIT.ok;
}

function runSchema(_values: Values, [target]: readonly string[], io: CliIo): number {
  if (!JSON_SCHEMA_TARGETS.includes(target as JsonSchemaTarget)) {
    throw usageError(
      "SCHEMA_UNKNOWN",
      target ?? "schema",
      `no JSON Schema for "${target}" in this version`,
      `Available: ${JSON_SCHEMA_TARGETS.join(", ")}.`,
    );
  }
  io.stdout(`${JSON.stringify(jsonSchemaOf(target as JsonSchemaTarget), null, 2)}\n`);
  return EXIT.ok;
}

/** The positional arguments of a command: one required (its name, and what is said when it is missing), and more or not. */
interface Arguments {
  readonly name: string;
  readonly missingCode: string;
  readonly missing: string;
  readonly hint: string;
  /** further arguments after it (doctor's key=value overrides) */
  readonly rest?: boolean;
}

interface Command {
  /** flags beside --help, --version, --debug and --json */
  readonly options: Record<string, OptionSpec>;
  /** none when the command takes no positional argument */
  readonly args?: Arguments;
  readonly run: (values: Values, args: readonly string[], io: CliIo) => number;
}

const WRITE_OPTIONS = { force: { type: "boolean" }, "allow-unfit": { type: "boolean" } } as const;
const SETUP_OPTIONS = {
  model: { type: "string" },
  "launch-dir": { type: "string" },
  "accelerate-config": { type: "string" },
  out: { type: "string" },
  force: { type: "boolean" },
} as const;

/** Plan flags without --recommend and --max, which only plan answers. */
function writerPlanOptions(): Record<string, OptionSpec> {
  const { recommend: _r, max: _m, ...flags } = planOptions();
  return flags;
}

const COMMANDS = {
  plan: { options: planOptions(), run: runPlan },
  emit: {
    options: {
      ...writerPlanOptions(),
      ...WRITE_OPTIONS,
      out: { type: "string" },
      probe: { type: "boolean" },
      "probe-steps": { type: "string" },
    },
    run: runEmit,
  },
  doctor: {
    options: {
      ...hardwareOptions(DOCTOR_HARDWARE_FLAGS),
      ...SETUP_OPTIONS,
      launcher: { type: "string" },
      fix: { type: "boolean" },
      assume: { type: "string", multiple: true },
      "images-per-sample": { type: "string" },
      "videos-per-sample": { type: "string" },
    },
    args: {
      name: "TRAIN_YAML",
      missingCode: "TRAIN_YAML_MISSING",
      missing: "tunefit doctor needs the training YAML",
      hint: "Write tunefit doctor path/to/train.yaml --gpu ID --gpus N.",
      rest: true,
    },
    run: runDoctor,
  },
  import: {
    options: { ...hardwareOptions(), ...SETUP_OPTIONS },
    args: {
      name: "TRAIN_YAML",
      missingCode: "TRAIN_YAML_MISSING",
      missing: "tunefit import needs the training YAML",
      hint: "Write tunefit import path/to/train.yaml.",
    },
    run: runImport,
  },
  init: {
    options: { ...writerPlanOptions(), ...WRITE_OPTIONS, scaffold: { type: "string" } },
    args: {
      name: "DIR",
      missingCode: "DIR_MISSING",
      missing: "tunefit init needs the project folder",
      hint: "Write tunefit init DIR --model ID --gpu ID.",
    },
    run: runInit,
  },
  models: { options: {}, run: runModels },
  gpus: { options: {}, run: runGpus },
  schema: {
    options: {},
    args: {
      name: "schema",
      missingCode: "SCHEMA_UNKNOWN",
      missing: "tunefit schema needs a target",
      hint: `Available: ${JSON_SCHEMA_TARGETS.join(", ")}.`,
    },
    run: runSchema,
  },
} as const satisfies Record<string, Command>;

type CommandName = keyof typeof COMMANDS;

/** Checks the positional arguments against what the command takes; an empty one counts as missing. */
function checkArguments(command: CommandName, args: Arguments | undefined, positionals: readonly string[]) {
  const [first, ...extra] = positionals;
  if (args !== undefined && (first === undefined || first === "")) {
    throw usageError(args.missingCode, args.name, args.missing, args.hint);
  }
  const unexpected = args === undefined ? first : args.rest ? undefined : extra[0];
  if (unexpected !== undefined) {
    throw usageError(
      "ARGUMENT_UNEXPECTED",
      unexpected,
      `unexpected argument "${unexpected}"`,
      `tunefit ${command} takes ${args === undefined ? "no arguments: its settings are flags" : `one argument, ${args.name}`}; see tunefit ${command} --help.`,
    );
  }
}

function dispatch(argv: readonly string[], io: CliIo): number {
  // global switches may come before the command (tunefit --debug plan …)
  const lead = [];
  let at = 0;
  while (argv[at] === "--debug" || argv[at] === "--json") lead.push(argv[at++] as string);
  const [command, ...afterCommand] = argv.slice(at);
  const rest = [...lead, ...afterCommand];
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    io.stdout(usage());
    return EXIT.ok;
  }
  if (command === "--version" || command === "-v") {
    io.stdout(`${VERSION}\n`);
    return EXIT.ok;
  }
  if (!Object.hasOwn(COMMANDS, command)) {
    const guess = closest(command, Object.keys(COMMANDS), 1).filter((c) => editDistance(command, c) <= 2);
    throw usageError(
      "COMMAND_UNKNOWN",
      command,
      `unknown command "${command}"`,
      `${guess.length > 0 ? `Did you mean ${guess[0]}? ` : ""}Commands: ${Object.keys(COMMANDS).join(", ")}. Run tunefit --help.`,
    );
  }
  const name = command as CommandName;
  const spec: Command = COMMANDS[name];
  const { values, positionals } = parse(rest, { ...GLOBAL_OPTIONS, ...spec.options }, name);
  if (values.help) {
    io.stdout(usage(name));
    return EXIT.ok;
  }
  if (values.version) {
    io.stdout(`${VERSION}\n`);
    return EXIT.ok;
  }
  checkArguments(name, spec.args, positionals);
  return spec.run(values, positionals, io);
}

/**
 * Runs the CLI: returns the exit code. Usage errors print their issues (exit 2); anything else is an internal
 * error: one line, the stack only with --debug (exit 1).
 */
export function run(argv: readonly string[], io: CliIo): number {
  const debug = argv.includes("--debug");
  const json = argv.includes("--json");
  try {
    return dispatch(argv, io);
  } catch (e) {
    if (isUsageError(e)) {
      if (json) io.stdout(`${JSON.stringify({ error: "usage", issues: e.issues }, null, 2)}\n`);
      io.stderr(`${formatIssuesForCli(e.issues)}\n`);
      return EXIT.usage;
    }
    const message = e instanceof Error ? e.message : String(e);
    io.stderr(
      `tunefit: internal error: ${message.split("\n")[0]}${debug ? "" : " (run with --debug for the stack)"}\n`,
    );
    if (debug && e instanceof Error && e.stack) io.stderr(`${e.stack}\n`);
    return EXIT.internal;
  }
}
