import { formatCount, formatGib } from "../_util.ts";
import { DEFAULT_ASSUMPTIONS } from "../memory/assumptions.ts";
import { imagePatches, videoPatches } from "../memory/train.ts";
import type { PlanAnalysis } from "../plan/analyze.ts";
import {
  anyMethodOptimizer,
  deepspeedCpuAdam,
  LOW_MEMORY_OPTIMIZER_NAMES,
  optimSteps,
} from "../schema/plan.ts";
import { BUNDLE_FILES, usesDeepSpeed, usesFsdp } from "./common.ts";
import { BUNDLE_MOUNT } from "./kubeflow.ts";
import { IMAGE_PLACEHOLDER } from "./options.ts";
import { PROBE_FILE, PROBE_README_LINE } from "./probe.ts";
import { commentText, planSummary } from "./scripts.ts";
import { TARGET_VERSIONS, transformersRange, VERSION_CHOICES } from "./versions.ts";

/** Markdown text with no line breaks or table pipes from user-given values. */
export const md = (s: string) => commentText(s).replace(/\|/g, "\\|");

/** The memory breakdown's parts with the labels the READMEs use. */
export const MEMORY_PARTS = [
  ["weights", "weights"],
  ["gradients", "gradients"],
  ["optimizer", "optimizer states"],
  ["activations", "activations"],
  ["logits", "logits (loss)"],
  ["buffers", "buffers (communication, gathered units)"],
  ["fragmentation", "allocator reserve (fragmentation)"],
  ["runtime", "CUDA context, NCCL, other"],
] as const;

/** The plan as (setting, value) rows for a README table; `demoDataset` describes the demo dataset when used. */
export function planRows(analysis: PlanAnalysis, demoDataset: string): [string, string][] {
  const { plan, params, trainable } = analysis;
  const world = plan.gpus * plan.nodes;
  return [
    [
      "model",
      `${md(plan.model.id)} (${plan.model.architecture.modelType}, ${formatCount(params.total)} parameters)`,
    ],
    [
      "trainable parameters",
      `${formatCount(trainable.trainable)}${plan.lowMemoryOptimizer === "badam" ? " (one decoder layer at a time)" : ""}`,
    ],
    [
      "method",
      plan.method === "qlora" && !anyMethodOptimizer(plan.lowMemoryOptimizer)
        ? `qlora (${plan.quantBits}-bit ${plan.quantMethod})`
        : plan.lowMemoryOptimizer === "badam"
          ? `${plan.method} with BAdam (layer mode)`
          : plan.lowMemoryOptimizer !== null && anyMethodOptimizer(plan.lowMemoryOptimizer)
            ? `${plan.method === "qlora" ? `qlora (${plan.quantBits}-bit ${plan.quantMethod})` : plan.method} with ${LOW_MEMORY_OPTIMIZER_NAMES[plan.lowMemoryOptimizer]}`
            : plan.lowMemoryOptimizer !== null
              ? `${plan.method} with ${LOW_MEMORY_OPTIMIZER_NAMES[plan.lowMemoryOptimizer]} (rank ${plan.lowMemoryRank}${plan.lowMemoryLayerwise ? ", layer-wise" : ""})`
              : plan.method,
    ],
    ["hardware", `${plan.nodes} node(s) × ${plan.gpus}× ${md(plan.gpu.name)}`],
    ["sharding", plan.sharding === "fsdp" ? `fsdp (FSDP1 ${plan.fsdpStrategy})` : plan.sharding],
    ["offload", plan.offload],
    ["precision", plan.precision],
    ["sequence length", `${plan.seqLen}${plan.packing ? " (packed)" : ""}`],
    [
      "batch",
      `${plan.microBatch} per GPU × ${plan.gradAccum} accumulation × ${world} GPUs = ${plan.microBatch * plan.gradAccum * world} samples per step${plan.syncEachBatch ? "; gradients reduced after every micro-batch (`accelerator_config` sync_each_batch)" : ""}`,
    ],
    ["gradient checkpointing", plan.gradientCheckpointing ? "on" : "off"],
    // the media the memory counts per sample: a dataset with more, larger or longer ones needs more
    ...(plan.imagesPerSample > 0
      ? [
          [
            "images per sample",
            `${plan.imagesPerSample}, at up to ${plan.imageMaxPixels} pixels (image_max_pixels): ${imagePatches(plan).tokens > 0 ? `${imagePatches(plan).tokens} tokens each` : "read through cross-attention, no tokens in the sequence"}`,
          ] as [string, string],
        ]
      : []),
    ...(plan.videosPerSample > 0
      ? [
          [
            "videos per sample",
            `${plan.videosPerSample}, at up to ${plan.videoFrames} frames (video_maxlen) of ${plan.videoMaxPixels} pixels (video_max_pixels): ${videoPatches(plan).tokens} tokens each`,
          ] as [string, string],
        ]
      : []),
    [
      "template",
      plan.template === null
        ? "not set (LLaMA-Factory reads the tokenizer's chat template)"
        : md(plan.template),
    ],
    ["dataset", plan.dataset === null ? demoDataset : md(plan.dataset)],
  ];
}

/** README.md of a bundle: the plan, the memory table, how to launch, and what was assumed and not executed. */
export function bundleReadme(analysis: PlanAnalysis, files: readonly string[]): string {
  const { plan, memory } = analysis;
  const t = memory.train;
  const out: string[] = [];
  out.push(`# Fine-tuning bundle: ${md(planSummary(plan))}`, "");
  out.push(
    analysis.valid
      ? `**Predicted to fit**: ${formatGib(t.perGpu.deviceBytes)} per GPU at the training peak (${t.phase}), of ${formatGib(t.capacityBytes)} usable on a ${md(plan.gpu.name)} (${formatGib(plan.gpu.capacityBytes)} less ${Math.round(plan.headroom * 100)} % headroom).`
      : `**Predicted not to run** (written with --allow-unfit): ${formatGib(t.perGpu.deviceBytes)} per GPU at the training peak, of ${formatGib(t.capacityBytes)} usable. See the issues below.`,
    "",
  );
  out.push("## Plan", "");
  out.push("| setting | value |", "|---|---|");
  const rows = planRows(analysis, "the demo set in data/ (replace it with yours)");
  for (const [k, v] of rows) out.push(`| ${k} | ${v} |`);
  out.push("");

  out.push("## Memory per GPU (predicted)", "");
  out.push("| part | GiB |", "|---|---:|");
  for (const [key, label] of MEMORY_PARTS) {
    out.push(`| ${label} | ${(t.perGpu.breakdown[key] / 1024 ** 3).toFixed(2)} |`);
  }
  out.push(
    `| **allocated** (torch max_memory_allocated) | ${(t.perGpu.allocatedBytes / 1024 ** 3).toFixed(2)} |`,
    `| **reserved** (torch max_memory_reserved) | ${(t.perGpu.reservedBytes / 1024 ** 3).toFixed(2)} |`,
    `| **device** (nvidia-smi) | ${(t.perGpu.deviceBytes / 1024 ** 3).toFixed(2)} |`,
    "",
  );
  if (t.pagedOptimizerBytes > 0)
    out.push(
      `${plan.optimizer} keeps ${formatGib(t.pagedOptimizerBytes)} of optimizer states per GPU in CUDA managed memory, outside PyTorch's allocator: ` +
        `${formatGib(t.pagedOptimizerBytes - t.pagedToHostBytes)} of it is counted in the runtime row, on the GPU` +
        (t.pagedToHostBytes > 0
          ? `, and ${formatGib(t.pagedToHostBytes)} pages through host RAM every step.`
          : "."),
      "",
    );
  const load = memory.load;
  out.push(
    `- Loading: ${formatGib(load.perGpuPeakBytes)} per GPU at the peak${
      load.fits
        ? "."
        : load.oomWhileWrapping
          ? ": out of memory while FSDP wraps its last unit (embeddings, lm_head) on top of the other shards."
          : `: out of memory after ${Math.round((load.oomAtFraction ?? 0) * 100)} % of the weights${load.oomAtShard ? ` (shard ${load.oomAtShard.index} of ${load.oomAtShard.of})` : ""}.`
    }`,
    `- Host RAM at its peak: ${formatGib(memory.hostRam.perNodeBytes)} per node${plan.hostRamBytes ? ` of ${formatGib(plan.hostRamBytes)}` : ""} (the processes, loading, CPU offload, and the full state dict a sharded save gathers on the first node).`,
    `- Inference with device_map="auto" on one node: ${formatGib(memory.inference.perGpuBytes)} on the fullest GPU${memory.inference.cpuBytes > 0 ? `; ${formatGib(memory.inference.cpuBytes)} of weights fit on no GPU and run from the CPU (slow)` : ""}.`,
    "",
  );
  if (analysis.issues.length > 0) {
    out.push("## Issues", "");
    for (const i of analysis.issues) {
      out.push(
        `- **${i.severity}** \`${i.code}\` (${md(i.path)}): ${md(i.message)}${i.hint ? ` ${md(i.hint)}` : ""}`,
      );
    }
    out.push("");
  }

  out.push("## Launch", "");
  if (plan.nodes === 1) {
    out.push("```bash", "./launch.sh", "```", "");
  } else {
    out.push(
      `On each of the ${plan.nodes} nodes (same bundle path and data on every node):`,
      "",
      "```bash",
      "NODE_RANK=0 MASTER_ADDR=<first node's address> ./launch.sh   # on the first node",
      "NODE_RANK=1 MASTER_ADDR=<first node's address> ./launch.sh   # on the second, and so on",
      "```",
      "",
      `With Slurm, from this folder: \`sbatch ${BUNDLE_FILES.slurm}\` (one task per node; the first node is the rendezvous).`,
      "",
      `With Kubeflow's training operator: build an image that holds LLaMA-Factory and this bundle at \`${BUNDLE_MOUNT}\`, e.g.`,
      "",
      "```dockerfile",
      "FROM <your LLaMA-Factory image>",
      `COPY . ${BUNDLE_MOUNT}`,
      "```",
      "",
      `then replace \`${IMAGE_PLACEHOLDER}\` in \`${BUNDLE_FILES.pytorchJob}\` with it and \`kubectl apply -f ${BUNDLE_FILES.pytorchJob}\`.`,
      `The pods' own storage goes with them: mount a persistent volume on every pod where train.yaml's \`output_dir\` lands (relative to \`${BUNDLE_MOUNT}\`), or the checkpoints and the saved model are lost when the job ends.`,
      "",
    );
  }
  if (usesDeepSpeed(plan)) {
    out.push(
      `\`launch.sh\` runs \`llamafactory-cli train train.yaml\` with \`FORCE_TORCHRUN=1\`; \`train.yaml\` names \`${BUNDLE_FILES.deepspeed}\`, a path relative to the folder the launch runs in (launch.sh changes into this folder first).`,
      "",
    );
  } else if (usesFsdp(plan)) {
    out.push(
      `\`launch.sh\` runs \`accelerate launch --config_file ${BUNDLE_FILES.accelerate}${plan.nodes > 1 ? " --machine_rank $NODE_RANK --main_process_ip $MASTER_ADDR --main_process_port $MASTER_PORT" : ""} -m llamafactory.launcher train.yaml\`. ${VERSION_CHOICES.fsdpLaunch.why}`,
      "",
    );
  }

  out.push("## Files", "");
  for (const f of files) out.push(`- \`${f}\``);
  out.push("");
  if (files.includes(PROBE_FILE)) out.push(PROBE_README_LINE, "");

  out.push("## Targeted versions", "");
  out.push(
    `- LLaMA-Factory ${TARGET_VERSIONS.llamaFactory}`,
    `- transformers ${transformersRange(plan.model.architecture.modelType)}`,
    `- DeepSpeed ${TARGET_VERSIONS.deepspeed}`,
    `- accelerate ${TARGET_VERSIONS.accelerate}`,
    `- peft ${TARGET_VERSIONS.peft}`,
  );
  if (plan.sharding === "fsdp2") out.push(`- torch ${TARGET_VERSIONS.torch}`);
  if (plan.method === "qlora" && plan.quantMethod === "bnb" && (plan.sharding === "zero3" || usesFsdp(plan)))
    out.push(
      "- bitsandbytes >=0.43.0 (LLaMA-Factory checks it for 4-bit weights under ZeRO-3 or FSDP: model_utils/quantization.py)",
    );
  // LLaMA-Factory requires each optimizer's package when its switch is on (hparams/parser.py:278-291)
  if (plan.lowMemoryOptimizer === "galore") out.push("- galore_torch (`pip install galore-torch`)");
  if (plan.lowMemoryOptimizer === "apollo") out.push("- apollo_torch (`pip install apollo-torch`)");
  if (plan.lowMemoryOptimizer === "badam") out.push("- badam >=1.2.1 (`pip install badam`)");
  if (plan.lowMemoryOptimizer === "adam_mini") out.push("- adam-mini (`pip install adam-mini`)");
  out.push("");

  out.push("## What was assumed, and what was not executed", "");
  out.push(
    "- Memory is a prediction of tunefit's model (its assumptions are named constants, overridable through the library and `--assume`), not a measurement.",
    ...(Object.keys(analysis.assumptions).length > 0
      ? [
          `- These figures use overridden assumptions: ${Object.entries(analysis.assumptions)
            .map(([k, v]) => `\`${k}=${v}\``)
            .join(", ")}.`,
        ]
      : []),
    "- Nothing in this bundle was executed when it was written: not LLaMA-Factory, DeepSpeed, accelerate, bitsandbytes, torchrun, Slurm or Kubernetes. tunefit checks each bundle statically before writing it: every key and value of train.yaml against LLaMA-Factory's accepted arguments, the DeepSpeed and accelerate files against their schemas at the targeted versions, and the cross-file rules (batch sizes, mixed precision, RAM-efficient loading). Its own tests also run `bash -n` and stubbed launches on bundles of every strategy.",
    `- Training settings the plan does not decide (learning rate, epochs, warm-up, scheduler, logging and saving) are LLaMA-Factory's example values; edit train.yaml to change them. ${VERSION_CHOICES.warmup.why}`,
  );
  if (plan.dataset === null) {
    out.push(
      "- The demo dataset in data/ exists so that the bundle runs as written; it is not training data. Put your own dataset in data/ (registered in data/dataset_info.json) and set `dataset:` in train.yaml, or emit again with --dataset.",
    );
  } else {
    out.push(
      "- The dataset is yours: train.yaml names it, and LLaMA-Factory looks it up in `data/dataset_info.json` relative to this folder (its default `dataset_dir`); put it there or set `dataset_dir`.",
    );
  }
  // optim unset: transformers' default changed at torch 2.8, and with it the step's temporary
  const stepsWithOptim =
    (plan.method === "full" || plan.method === "freeze") &&
    optimSteps(plan.lowMemoryOptimizer) &&
    !deepspeedCpuAdam(plan);
  if (plan.optimizer === null && stepsWithOptim) {
    const fused = analysis.assumptions.defaultOptimFused ?? DEFAULT_ASSUMPTIONS.defaultOptimFused;
    out.push(
      `- train.yaml leaves \`optim\` to transformers' default: \`adamw_torch\` before torch 2.8, \`adamw_torch_fused\` from 2.8 on. The memory above assumes ${fused ? "the fused one, which steps in place" : "`adamw_torch`, whose foreach step makes a temporary copy of the trained parameters"}; set \`optim: adamw_torch_fused\` to train with the fused AdamW on any torch.`,
    );
  }
  if (plan.model.source === "config") {
    out.push(
      "- `model_name_or_path` points to a local folder; the path must hold the weights as well as config.json, and a relative path is read from this folder.",
    );
  }
  if (plan.method === "qlora" && plan.quantMethod !== "bnb") {
    out.push(
      `- ${plan.quantMethod?.toUpperCase()} means \`model_name_or_path\` must name a pre-quantized ${plan.quantMethod?.toUpperCase()} checkpoint; train.yaml carries no quantization keys for it.`,
    );
  }
  out.push("");
  return `${out.join("\n")}`;
}
