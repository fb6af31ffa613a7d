import { type PlanAnalysis, planReport } from "../plan/analyze.ts";
import type { Architecture } from "../schema/architecture.ts";
import type { Plan } from "../schema/plan.ts";
import { VERSION } from "../version.ts";
import { BUNDLE_FILES, DEMO_DATASET, usesDeepSpeed, usesFsdp } from "./common.ts";
import type { EmittedFile } from "./files.ts";
import { type EmitOptions, resolveEmitOptions } from "./options.ts";
import { commentText, planSummary } from "./scripts.ts";
import { targetsLine } from "./versions.ts";

/*
 * probe.py: a measurement script for a bundle (`tunefit emit --probe`). It runs a few real training steps —
 * LLaMA-Factory's run_exp on train.yaml, or transformers' Trainer with peft on random weights — records each
 * rank's torch and NVML memory peaks, and prints them as JSON next to tunefit's prediction. The script is a
 * fixed Python text; the plan's facts and the prediction reach it as one JSON document inside a raw string
 * (`pythonJsonLiteral`), never as code.
 */

/** The file name of the probe script inside a bundle. */
export const PROBE_FILE = "probe.py";
/** Optimizer steps probe.py runs unless told otherwise (`--steps`). */
export const PROBE_DEFAULT_STEPS = 5;
/** Model types whose Hugging Face config tunefit writes for probe.py's hf mode. */
export const HF_MODEL_TYPES = ["llama", "mistral", "qwen2", "qwen3"] as const;

/** One line for a bundle README that ships probe.py. */
export const PROBE_README_LINE =
  "`probe.py` runs a few training steps of this bundle (`python probe.py`: LLaMA-Factory, launched as launch.sh launches it; `--mode hf`: transformers + peft LoRA on random weights, no LLaMA-Factory) and prints each rank's measured peak memory next to this prediction as JSON; tunefit's tests run it only against stand-ins for torch, pynvml, transformers, peft and LLaMA-Factory, its hf mode has run on a real GPU only by hand (one H200, single-GPU LoRA, newer library versions than this bundle targets), and its LLaMA-Factory mode has never run with LLaMA-Factory itself.";

export interface ProbeOptions extends EmitOptions {
  /** optimizer steps probe.py runs by default (default 5) */
  readonly steps?: number;
}

/** A minimal Hugging Face config.json for hf mode, or why the architecture cannot have one. */
export type HfModelConfig =
  | { readonly config: Readonly<Record<string, unknown>>; readonly unsupported: null }
  | { readonly config: null; readonly unsupported: string };

const HF_CLASSES = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
  qwen3: "Qwen3ForCausalLM",
} as const;

const isHfType = (t: string): t is (typeof HF_MODEL_TYPES)[number] =>
  (HF_MODEL_TYPES as readonly string[]).includes(t);

/**
 * The config.json transformers builds the same decoder from (random weights, same shapes), for llama, mistral,
 * qwen2 and qwen3 text models whose layout those classes express: dense gated-SiLU MLP, RMSNorm, and the bias
 * and q/k-norm layout each class hard-codes. `architectureFromConfig` reads it back as the same architecture.
 * @param maxPositionEmbeddings used when the architecture does not state one
 */
export function hfModelConfig(architecture: Architecture, maxPositionEmbeddings = 4096): HfModelConfig {
  const { modelType, text } = architecture;
  const no = (why: string): HfModelConfig => ({
    config: null,
    unsupported: `hf mode cannot build this model: ${why}`,
  });
  if (!isHfType(modelType)) {
    return no(`it is a ${modelType} model; hf mode builds ${HF_MODEL_TYPES.join(", ")} text models`);
  }
  if (architecture.vision !== null) return no("it has a vision tower");
  if (text.moe !== null || text.mla !== null || text.crossAttentionLayers.length > 0) {
    return no("its decoder is not a dense one (experts, latent or cross attention)");
  }
  if (
    text.mlp !== "gated" ||
    text.norm !== "rmsnorm" ||
    text.normsPerLayer !== 2 ||
    text.intermediateSize === 0 ||
    text.embedRows !== text.vocabSize
  ) {
    return no(`its layout differs from ${HF_CLASSES[modelType]}'s`);
  }
  const qkNorm = modelType === "qwen3";
  if (text.qkNorm !== qkNorm)
    return no(`${modelType} ${qkNorm ? "has" : "has no"} q/k norms; this model differs`);
  // the biases each class can express
  const biases =
    modelType === "qwen2"
      ? text.qkvBias && !text.oBias && !text.mlpBias
      : modelType === "mistral"
        ? !text.qkvBias && !text.oBias && !text.mlpBias
        : modelType === "qwen3"
          ? text.qkvBias === text.oBias && !text.mlpBias
          : text.qkvBias === text.oBias;
  if (!biases) return no(`its attention/MLP biases differ from ${HF_CLASSES[modelType]}'s`);

  const config: Record<string, unknown> = {
    architectures: [HF_CLASSES[modelType]],
    model_type: modelType,
    vocab_size: text.vocabSize,
    hidden_size: text.hiddenSize,
    intermediate_size: text.intermediateSize,
    num_hidden_layers: text.numLayers,
    num_attention_heads: text.numHeads,
    num_key_value_heads: text.numKvHeads,
    head_dim: text.headDim,
    max_position_embeddings: text.maxPositionEmbeddings ?? maxPositionEmbeddings,
    hidden_act: "silu",
    rms_norm_eps: modelType === "qwen2" || modelType === "qwen3" ? 1e-6 : 1e-5,
    tie_word_embeddings: text.tieWordEmbeddings,
    use_cache: false,
  };
  if (modelType === "llama" || modelType === "qwen3") config.attention_bias = text.qkvBias;
  if (modelType === "llama") config.mlp_bias = text.mlpBias;
  if (modelType === "mistral") config.sliding_window = null;
  if (modelType === "qwen2" || modelType === "qwen3") config.use_sliding_window = false;
  return { config, unsupported: null };
}

/** How launch.sh starts the plan's training, which probe.py repeats: in process, torchrun, or accelerate. */
export function probeLauncher(plan: Plan): "python" | "torchrun" | "accelerate" {
  if (usesFsdp(plan)) return "accelerate";
  return plan.gpus * plan.nodes > 1 || usesDeepSpeed(plan) ? "torchrun" : "python";
}

/** Why hf mode cannot run the plan itself (whatever the model): LoRA in bf16, one GPU, DDP or FSDP only. */
function hfPlanUnsupported(plan: Plan): string[] {
  const out: string[] = [];
  if (plan.method !== "lora") {
    out.push(`hf mode trains LoRA adapters only; this plan is ${plan.method} (use the llamafactory mode)`);
  }
  if (usesDeepSpeed(plan)) {
    out.push(
      `hf mode runs one GPU, DDP or FSDP; this plan uses DeepSpeed ${plan.sharding.replace("zero", "ZeRO-")} (use the llamafactory mode)`,
    );
  }
  if (plan.precision !== "bf16") {
    out.push(
      `hf mode trains in bf16 mixed precision; this plan uses ${plan.precision} (use the llamafactory mode)`,
    );
  }
  return out;
}

/** The JSON document embedded in probe.py: the plan's facts, how it launches, the prediction, hf mode's model. */
export function probeFacts(analysis: PlanAnalysis, options: ProbeOptions = {}) {
  const { plan } = analysis;
  const steps = options.steps ?? PROBE_DEFAULT_STEPS;
  if (!Number.isInteger(steps) || steps < 1)
    throw new RangeError(`probe steps must be a positive integer, got ${steps}`);
  const o = resolveEmitOptions(plan, options);
  const hf = hfModelConfig(plan.model.architecture, plan.seqLen);
  const rank = plan.loraRank ?? 8;
  return {
    tunefit: VERSION,
    plan: {
      model: plan.model.id,
      modelType: plan.model.architecture.modelType,
      multimodal: plan.model.architecture.vision !== null,
      method: plan.method,
      sharding: plan.sharding,
      fsdpStrategy: plan.fsdpStrategy,
      offload: plan.offload,
      precision: plan.precision,
      gpu: plan.gpu.id,
      gpuName: plan.gpu.name,
      gpuCapacityBytes: plan.gpu.capacityBytes,
      gpusPerNode: plan.gpus,
      nodes: plan.nodes,
      worldSize: plan.gpus * plan.nodes,
      seqLen: plan.seqLen,
      microBatch: plan.microBatch,
      gradAccum: plan.gradAccum,
      gradientCheckpointing: plan.gradientCheckpointing,
      attention: plan.attention,
      optimizer: plan.optimizer,
    },
    launch: {
      launcher: probeLauncher(plan),
      trainYaml: BUNDLE_FILES.trainYaml,
      configFile: usesFsdp(plan) ? BUNDLE_FILES.accelerate : null,
      deepspeed: usesDeepSpeed(plan) ? o.deepspeedPath : null,
      masterPort: o.masterPort,
    },
    probe: { steps, demoDataset: DEMO_DATASET },
    prediction: planReport(analysis).memory,
    hf: {
      modelTypes: [...HF_MODEL_TYPES],
      config: hf.config,
      configUnsupported: hf.unsupported,
      planUnsupported: hfPlanUnsupported(plan),
      lora:
        plan.method === "lora"
          ? {
              r: rank,
              alpha: plan.loraAlpha ?? 2 * rank,
              dropout: plan.loraDropout ?? 0,
              // LLaMA-Factory's `all`: every linear layer but the output one, as peft's all-linear
              targetModules:
                plan.loraTarget === "all" || plan.loraTarget === null ? "all-linear" : plan.loraTarget,
              useDora: plan.useDora ?? false,
              modulesToSave: plan.additionalTarget ?? [],
            }
          : null,
    },
  };
}
export type ProbeFacts = ReturnType<typeof probeFacts>;

/**
 * JSON text inside a Python raw string, `r'''…'''`, that `json.loads` reads back as the value. The text is
 * ASCII and holds no `'` (both escaped as JSON `\uXXXX`), so nothing in the value can end the string literal;
 * a raw string leaves the JSON escapes to `json.loads`.
 */
export function pythonJsonLiteral(value: unknown): string {
  const json = JSON.stringify(value, null, 2) ?? "null";
  // every character outside printable ASCII, and the quote, becomes a JSON \u escape
  const ascii = json.replace(
    /[^\n\x20-\x26\x28-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return `r'''\n${ascii}\n'''`;
}

const PLACEHOLDER = "r'''\n__TUNEFIT_PROBE_BUNDLE__\n'''";

/** probe.py's text for an analyzed plan. Pure: the same analysis and options give the same text. */
export function probeScript(analysis: PlanAnalysis, options: ProbeOptions = {}): string {
  const facts = probeFacts(analysis, options);
  const header = [
    "#!/usr/bin/env python3",
    `# probe.py: measures the GPU memory of a few training steps of this bundle: ${commentText(planSummary(analysis.plan))}.`,
    `# Written by tunefit ${VERSION}. ${commentText(targetsLine(analysis.plan.model.architecture.modelType))}`,
    `# Run: python probe.py (LLaMA-Factory, launched as launch.sh launches it); python probe.py --mode hf (no LLaMA-Factory); --help for the rest.`,
  ];
  const body = PROBE_BODY.replace(PLACEHOLDER, () => pythonJsonLiteral(facts));
  return `${header.join("\n")}\n${body}`;
}

/** The files `tunefit emit --probe` adds to a bundle: probe.py, executable. */
export function probeFiles(analysis: PlanAnalysis, options: ProbeOptions = {}): EmittedFile[] {
  return [{ path: PROBE_FILE, contents: probeScript(analysis, options), executable: true }];
}

// The script. Python 3.8+, standard library only at the top; torch, transformers, peft, accelerate, pynvml, PyYAML
// and LLaMA-Factory are imported by the mode that needs them. Its JSON document replaces PLACEHOLDER.
const PROBE_BODY = String.raw`"""Measures the GPU memory of a few real training steps of this bundle, next to tunefit's prediction.

Modes
  llamafactory (default)  LLaMA-Factory's own training (run_exp) on train.yaml, with max_steps set and saving
                          off, launched the way launch.sh launches training (in this process, torchrun, or
                          accelerate launch with accelerate_fsdp.yaml). When train.yaml names tunefit's demo
                          dataset (short samples), it trains on generated samples that fill cutoff_len, the
                          length the prediction assumes (--data).
  hf                      transformers' Trainer with a peft LoRA adapter on random weights built from the model's
                          config (the one tunefit embedded below, or --config) and random tokens of the plan's
                          sequence length. Needs only torch, transformers, peft and accelerate. One GPU, DDP or
                          FSDP; LoRA in bf16; llama, mistral, qwen2 and qwen3 configs.

Run it from anywhere, as a plain script: it starts the bundle's launcher itself when the plan needs one. On
several nodes run it once per node with NODE_RANK and MASTER_ADDR set, as launch.sh. Under a launcher of your
own (torchrun, accelerate launch, srun) it runs as one rank and rank 0 prints the report.

Each rank records torch.cuda.max_memory_allocated, torch.cuda.max_memory_reserved and the device's used memory
(NVML through pynvml; torch.cuda.mem_get_info without it), before training (loading) and during the training
steps, in probe-rank<N>.json under --out. The first node prints one JSON report on stdout (also written to
probe-report.json there): every rank's figures, the maximum over ranks, tunefit's prediction, their ratios and
the errors (a CUDA out-of-memory error with the step it happened at). Exit status: 0 when every rank finished,
1 when one failed or is missing, 2 when the mode cannot run this plan.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib

# The plan this bundle was written for, tunefit's prediction (the "memory" object of tunefit plan --json) and
# the model config hf mode builds random weights from.
BUNDLE = json.loads(
    r'''
__TUNEFIT_PROBE_BUNDLE__
'''
)

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.abspath(__file__)
PLAN = BUNDLE["plan"]
LAUNCH = BUNDLE["launch"]
MODES = ("llamafactory", "hf")
DATA_CHOICES = ("auto", "bundle", "full-length")
HF_MODEL_TYPES = tuple(BUNDLE["hf"]["modelTypes"])
ATTENTION = {"auto": None, "eager": "eager", "sdpa": "sdpa", "fa2": "flash_attention_2"}
# Set by this script on the processes it launches: they leave the report to it.
LAUNCHED_ENV = "TUNEFIT_PROBE_LAUNCHED"
FINAL_STATUSES = ("finished", "oom", "error")
RANK_FILE = re.compile(r"^probe-rank(\d+)\.json$")
FULL_LENGTH_DATASET = "tunefit_probe_full_length"


class UsageError(Exception):
    """A bad argument or environment: exit status 2."""


class Unsupported(Exception):
    """The mode cannot run this plan or model: exit status 2."""


def log(message):
    print(f"probe.py: {message}", file=sys.stderr, flush=True)


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path, value):
    """Writes JSON atomically: a reader never sees half a file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------- arguments


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="probe.py",
        description="Runs a few training steps of this bundle and prints the measured GPU memory next to "
        "tunefit's prediction, as JSON.",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        help="llamafactory (default): LLaMA-Factory's training on train.yaml; hf: transformers Trainer + peft "
        "LoRA on random weights, without LLaMA-Factory",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=BUNDLE["probe"]["steps"],
        help="optimizer steps to run (default %(default)s)",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(HERE, "probe-results"),
        help="folder of the per-rank files and the report (default: probe-results beside probe.py)",
    )
    parser.add_argument(
        "--data",
        choices=DATA_CHOICES,
        default="auto",
        help="llamafactory mode: bundle trains on train.yaml's dataset; full-length on generated samples that "
        "fill cutoff_len, the length the prediction assumes; auto (default): full-length when train.yaml "
        "names tunefit's demo dataset (short samples), else bundle",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="llamafactory mode: one more train.yaml override (VALUE read as JSON when it parses, else as a "
        "string); repeatable",
    )
    parser.add_argument(
        "--config",
        help="hf mode: a folder holding the model's config.json (or a hub id) to build the random model from; "
        "default: the config embedded by tunefit",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds the report waits for the figures of ranks still running on other nodes (default "
        "%(default)s)",
    )
    parser.add_argument(
        "--sample-interval",
        type=float,
        default=0.2,
        help="seconds between two samples of the device's used memory (default %(default)s)",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: print the report of the probe-rank files already in --out",
    )
    what.add_argument(
        "--dry-run",
        action="store_true",
        help="run nothing: print the launch command and the environment it changes, as JSON",
    )
    what.add_argument(
        "--prediction",
        action="store_true",
        help="run nothing: print the plan and tunefit's prediction embedded in this script, as JSON",
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.wait < 0 or args.sample_interval <= 0:
        parser.error("--wait must be at least 0 and --sample-interval above 0")
    args.out = os.path.abspath(args.out)
    try:
        args.parsed_overrides = parse_overrides(args.overrides)
    except UsageError as e:
        parser.error(str(e))
    return args


def parse_overrides(items):
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item!r}: write KEY=VALUE")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return overrides


def worker_args(args):
    """The arguments the launched ranks get: this run's, every default resolved."""
    out = [
        "--mode", args.mode,
        "--steps", str(args.steps),
        "--out", args.out,
        "--data", args.data,
        "--wait", str(args.wait),
        "--sample-interval", str(args.sample_interval),
    ]  # fmt: skip
    for item in args.overrides:
        out += ["--set", item]
    if args.config:
        out += ["--config", args.config]
    return out


# ---------------------------------------------------------------------------------------------------- modes


def read_train_yaml():
    import yaml  # PyYAML: a dependency of LLaMA-Factory

    with open(os.path.join(HERE, LAUNCH["trainYaml"]), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise UsageError(f"{LAUNCH['trainYaml']} does not hold a mapping")
    return config


def full_length_wanted(args, train_yaml):
    if args.data == "full-length":
        return True
    demo = train_yaml.get("dataset") == BUNDLE["probe"]["demoDataset"]
    return args.data == "auto" and demo and not PLAN["multimodal"]


def mode_problems(args):
    """Why the mode cannot run this plan, checked before anything is launched (empty: it can)."""
    problems = []
    if args.mode == "hf":
        problems += BUNDLE["hf"]["planUnsupported"]
        if args.config:
            model_type = local_model_type(args.config)
            if model_type is not None and model_type not in HF_MODEL_TYPES:
                problems.append(
                    f"--config names a {model_type} model; hf mode builds {', '.join(HF_MODEL_TYPES)} models"
                )
        elif BUNDLE["hf"]["config"] is None:
            problems.append(BUNDLE["hf"]["configUnsupported"])
    elif args.data == "full-length" and PLAN["multimodal"]:
        problems.append("--data full-length writes text samples; this plan's model takes images or videos")
    return problems


def local_model_type(path):
    """model_type of a local config.json (None when it is not a local file: a hub id is checked after loading)."""
    file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def output_dir(args):
    """LLaMA-Factory's and the Trainer's output_dir: a scratch folder, the same for every rank of this node."""
    key = format(zlib.crc32(args.out.encode("utf-8")), "08x")
    return os.path.join(tempfile.gettempdir(), f"tunefit-probe-{key}")


def full_length_dataset(args, world_size):
    """Writes samples longer than cutoff_len (LLaMA-Factory cuts them to it) and returns the train.yaml keys."""
    folder = os.path.join(args.out, "data")
    os.makedirs(folder, exist_ok=True)
    count = max(8, (args.steps + 1) * PLAN["microBatch"] * PLAN["gradAccum"] * world_size)
    text = " ".join(["hello"] * (PLAN["seqLen"] + 64))
    samples = [{"instruction": "Repeat the word hello.", "input": "", "output": text} for _ in range(count)]
    write_json(os.path.join(folder, f"{FULL_LENGTH_DATASET}.json"), samples)
    write_json(
        os.path.join(folder, "dataset_info.json"),
        {FULL_LENGTH_DATASET: {"file_name": f"{FULL_LENGTH_DATASET}.json"}},
    )
    return {"dataset": FULL_LENGTH_DATASET, "dataset_dir": folder, "max_samples": count}


def skip_final_save():
    """LLaMA-Factory saves the model after training (under ZeRO-3 or FSDP a full gather): the probe does not."""
    import transformers

    def save_model(self, *args, **kwargs):
        return None

    transformers.Trainer.save_model = save_model


def memory_callback(recorder):
    from transformers import TrainerCallback

    class MemoryCallback(TrainerCallback):
        """Records the memory figures when training starts and after every optimizer step."""

        def on_train_begin(self, args, state, control, **kwargs):
            recorder.train_begin()

        def on_step_end(self, args, state, control, **kwargs):
            recorder.step_end(state.global_step)

    return MemoryCallback()


def run_llamafactory(args, recorder):
    config = read_train_yaml()
    overrides = {
        "max_steps": args.steps,
        "save_strategy": "no",
        "report_to": "none",
        "output_dir": output_dir(args),
        "overwrite_output_dir": True,
        "plot_loss": False,
        "logging_steps": 1,
    }
    if full_length_wanted(args, config):
        overrides.update(full_length_dataset(args, recorder.world_size))
    overrides.update(args.parsed_overrides)
    config.update(overrides)
    recorder.record["data"] = "full-length" if config.get("dataset") == FULL_LENGTH_DATASET else "bundle"
    recorder.record["trainYaml"] = {
        key: config.get(key)
        for key in (
            "model_name_or_path",
            "finetuning_type",
            "dataset",
            "cutoff_len",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "deepspeed",
            "max_steps",
        )
    }
    os.chdir(HERE)  # train.yaml's relative paths (dataset_dir, deepspeed.json) are the bundle's
    skip_final_save()
    from llamafactory.train.tuner import run_exp

    run_exp(args=config, callbacks=[memory_callback(recorder)])


def hf_config(args):
    from transformers import AutoConfig

    if args.config:
        config = AutoConfig.from_pretrained(args.config)
    else:
        values = dict(BUNDLE["hf"]["config"])
        config = AutoConfig.for_model(values.pop("model_type"), **values)
    if config.model_type not in HF_MODEL_TYPES:
        raise Unsupported(
            f"the config is a {config.model_type} model; hf mode builds {', '.join(HF_MODEL_TYPES)} models"
        )
    config.use_cache = False
    return config


def random_tokens(torch, count, seq_len, vocab_size):
    """count samples of seq_len random token ids (labels = inputs): every batch at the plan's full length."""

    class RandomTokens(torch.utils.data.Dataset):
        def __len__(self):
            return count

        def __getitem__(self, index):
            generator = torch.Generator().manual_seed(index)
            ids = torch.randint(0, vocab_size, (seq_len,), generator=generator)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    return RandomTokens()


def hf_training_arguments(args):
    kwargs = {
        "output_dir": output_dir(args),
        "per_device_train_batch_size": PLAN["microBatch"],
        "gradient_accumulation_steps": PLAN["gradAccum"],
        "max_steps": args.steps,
        "learning_rate": 1.0e-4,
        "lr_scheduler_type": "constant",
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "bf16": True,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "ddp_find_unused_parameters": False,
        "seed": 0,
    }
    if PLAN["optimizer"]:
        kwargs["optim"] = PLAN["optimizer"]
    return kwargs


def run_hf(args, recorder):
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    config = hf_config(args)
    major = int(transformers.__version__.split(".")[0])
    kwargs = {"dtype" if major >= 5 else "torch_dtype": torch.bfloat16}
    if ATTENTION[PLAN["attention"]]:
        kwargs["attn_implementation"] = ATTENTION[PLAN["attention"]]
    if LAUNCH["launcher"] == "accelerate":
        model = AutoModelForCausalLM.from_config(config, **kwargs)  # on the CPU: FSDP shards it from there
    else:
        # on the rank's GPU, where LLaMA-Factory loads the weights too (device_map {"": LOCAL_RANK})
        torch.cuda.set_device(recorder.device)
        with torch.device("cuda", recorder.device):
            model = AutoModelForCausalLM.from_config(config, **kwargs)
    if PLAN["gradientCheckpointing"]:
        # as LLaMA-Factory: reentrant checkpointing, inputs that require grad for the frozen embeddings
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    lora = BUNDLE["hf"]["lora"]
    model = get_peft_model(
        model,
        LoraConfig(
            task_type="CAUSAL_LM",
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=lora["targetModules"],
            use_dora=lora["useDora"],
            modules_to_save=lora["modulesToSave"] or None,
        ),
    )
    recorder.record["data"] = "random"
    count = (args.steps + 1) * PLAN["microBatch"] * PLAN["gradAccum"] * recorder.world_size
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**hf_training_arguments(args)),
        train_dataset=random_tokens(torch, count, PLAN["seqLen"], config.vocab_size),
        data_collator=default_data_collator,
        callbacks=[memory_callback(recorder)],
    )
    trainer.train()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


# ---------------------------------------------------------------------------------------------------- measuring


def distributed_env():
    """(rank, local rank, world size, node rank): torchrun's and accelerate's variables, else one process."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        node = os.environ.get("GROUP_RANK") or os.environ.get("NODE_RANK") or "0"
        return (
            int(os.environ["RANK"]),
            int(os.environ.get("LOCAL_RANK", "0")),
            int(os.environ["WORLD_SIZE"]),
            int(node),
        )
    return 0, 0, 1, 0


def is_oom(exc):
    """True for a CUDA out-of-memory error, also when another exception wraps it."""
    torch = sys.modules.get("torch")
    oom_type = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(oom_type, type) and isinstance(exc, oom_type):
            return True
        if "out of memory" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def package_versions(torch):
    versions = {"python": platform.python_version(), "torch": getattr(torch, "__version__", None)}
    try:
        from importlib import metadata
    except ImportError:
        return versions
    for name in ("transformers", "peft", "accelerate", "deepspeed", "llamafactory", "nvidia-ml-py"):
        try:
            versions[name] = metadata.version(name)
        except Exception:
            versions[name] = None
    return versions


class Recorder:
    """One rank's figures, kept in probe-rank<N>.json: rewritten at each event, so a rank that dies leaves its
    last figures behind."""

    def __init__(self, args, rank, local_rank, world_size, node_rank):
        self.world_size = world_size
        self.device = local_rank
        self.interval = args.sample_interval
        self.path = os.path.join(args.out, f"probe-rank{rank}.json")
        self.torch = None
        self.nvml = None
        self.handle = None
        self.phase = "load"
        self.device_peak = {"load": None, "train": None}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = None
        self.record = {
            "rank": rank,
            "localRank": local_rank,
            "nodeRank": node_rank,
            "worldSize": world_size,
            "host": socket.gethostname(),
            "mode": args.mode,
            "steps": args.steps,
            "data": None,
            "status": "loading",
            "stepsCompleted": 0,
            "maxAllocatedBytes": None,
            "maxReservedBytes": None,
            "deviceUsedBytes": None,
            "deviceUsedSource": None,
            "load": None,
            "oom": None,
            "error": None,
            "device": None,
            "versions": None,
            "updatedAt": None,
        }

    def write(self):
        self.record["updatedAt"] = now()
        write_json(self.path, self.record)

    def attach(self):
        """Imports torch, names the device and starts sampling its used memory."""
        import torch

        self.torch = torch
        self.record["versions"] = package_versions(torch)
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        props = torch.cuda.get_device_properties(self.device)
        self.record["device"] = {
            "index": self.device,
            "name": props.name,
            "totalBytes": int(props.total_memory),
        }
        self.nvml, self.handle = open_nvml(torch, self.device)
        self.sample()
        self.thread = threading.Thread(target=self.sample_loop, name="probe-sampler", daemon=True)
        self.thread.start()
        self.write()

    def device_used(self):
        if self.handle is not None:
            try:
                return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used), "nvml"
            except Exception:
                pass
        try:
            free, total = self.torch.cuda.mem_get_info(self.device)
            return int(total - free), "torch.cuda.mem_get_info"
        except Exception:
            return None, None

    def sample(self):
        used, source = self.device_used()
        if used is None:
            return
        with self.lock:
            peak = self.device_peak[self.phase]
            self.device_peak[self.phase] = used if peak is None else max(peak, used)
            self.record["deviceUsedSource"] = source

    def sample_loop(self):
        while not self.stop.wait(self.interval):
            self.sample()

    def peaks(self):
        cuda = self.torch.cuda
        return {
            "maxAllocatedBytes": int(cuda.max_memory_allocated(self.device)),
            "maxReservedBytes": int(cuda.max_memory_reserved(self.device)),
            "deviceUsedBytes": self.device_peak[self.phase],
        }

    def update(self):
        """Copies the current peaks into the record: the training figures, or the loading ones before it."""
        if self.torch is None:
            return
        self.sample()
        with self.lock:
            peaks = self.peaks()
        if self.phase == "train":
            self.record.update(peaks)
        else:
            self.record["load"] = peaks

    def train_begin(self):
        """Loading (weights, sharding, the wrapped model) is done: its peaks are kept and the counters reset."""
        self.update()
        with self.lock:
            self.torch.cuda.reset_peak_memory_stats(self.device)
            self.phase = "train"
        self.record["status"] = "training"
        self.update()
        self.write()

    def step_end(self, global_step):
        self.record["stepsCompleted"] = int(global_step)
        self.update()
        self.write()

    def finish(self):
        self.update()
        if self.phase == "train":
            self.record["status"] = "finished"
        else:
            self.record["status"] = "error"
            self.record["error"] = {"type": "NoTraining", "message": "training never started", "traceback": None}

    def fail(self, exc):
        try:
            self.update()
        except Exception:
            pass
        message = f"{exc}".strip() or type(exc).__name__
        if is_oom(exc):
            step = self.record["stepsCompleted"] + 1 if self.phase == "train" else None
            self.record["status"] = "oom"
            self.record["oom"] = {"step": step, "phase": self.phase, "message": message[:4000]}
            where = f"at step {step}" if step is not None else "while loading"
            log(f"rank {self.record['rank']}: CUDA out of memory {where}")
        else:
            self.record["status"] = "error"
            self.record["error"] = {
                "type": type(exc).__name__,
                "message": message[:4000],
                "traceback": traceback.format_exc()[-8000:],
            }
            log(f"rank {self.record['rank']}: {type(exc).__name__}: {message[:500]}")
            traceback.print_exc(file=sys.stderr)

    def close(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.write()
        if self.nvml is not None:
            with contextlib.suppress(Exception):
                self.nvml.nvmlShutdown()


def open_nvml(torch, device):
    """pynvml and the handle of this rank's GPU, or (None, None) when pynvml is absent or cannot name it."""
    try:
        import pynvml
    except ImportError:
        return None, None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None, None
    # The device's UUID names it whatever CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER say; else its visible index.
    candidates = []
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    if uuid is not None:
        text = str(uuid)
        candidates.append(("uuid", text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"))
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    entry = visible[device] if device < len(visible) else (None if visible else str(device))
    if entry is not None:
        candidates.append(("index", int(entry)) if entry.isdigit() else ("uuid", entry))
    for kind, key in candidates:
        try:
            if kind == "uuid":
                return pynvml, pynvml.nvmlDeviceGetHandleByUUID(key)
            return pynvml, pynvml.nvmlDeviceGetHandleByIndex(key)
        except Exception:
            continue
    with contextlib.suppress(Exception):
        pynvml.nvmlShutdown()
    return None, None


def run_rank(args):
    """Runs the mode as one rank and returns its record (also in probe-rank<N>.json)."""
    rank, local_rank, world_size, node_rank = distributed_env()
    os.makedirs(args.out, exist_ok=True)
    recorder = Recorder(args, rank, local_rank, world_size, node_rank)
    recorder.write()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the report alone
            recorder.attach()
            if args.mode == "hf":
                run_hf(args, recorder)
            else:
                run_llamafactory(args, recorder)
        recorder.finish()
    except KeyboardInterrupt as exc:
        recorder.fail(exc)
        recorder.close()
        raise
    except BaseException as exc:  # every failure is reported, SystemExit from argument parsers too
        recorder.fail(exc)
    recorder.close()
    return recorder.record


# ---------------------------------------------------------------------------------------------------- report


def read_rank_files(out):
    ranks, problems = {}, []
    try:
        names = sorted(os.listdir(out))
    except OSError:
        names = []
    for name in names:
        match = RANK_FILE.match(name)
        if not match:
            continue
        try:
            with open(os.path.join(out, name), encoding="utf-8") as f:
                ranks[int(match.group(1))] = json.load(f)
        except (OSError, ValueError) as e:
            problems.append({"rank": int(match.group(1)), "kind": "unreadable", "message": f"{name}: {e}"})
    return ranks, problems


def maximum(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return max(values) if values else None


def ratio(measured, predicted):
    if measured is None or not predicted:
        return None
    return round(measured / predicted, 4)


def build_report(out, mode, wait=0.0, launcher=None):
    """The report of the rank files in out; waits up to wait seconds for ranks that have not ended yet."""
    world = PLAN["worldSize"]
    deadline = time.monotonic() + wait
    while True:
        ranks, problems = read_rank_files(out)
        ended = all(ranks.get(r, {}).get("status") in FINAL_STATUSES for r in range(world))
        if ended or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    modes = sorted({r.get("mode") for r in ranks.values() if r.get("mode")})
    errors = list(problems)
    notes = []
    if mode is None:
        mode = modes[0] if len(modes) == 1 else None
    if len(modes) > 1:
        errors.append({"rank": None, "kind": "mixed", "message": f"the rank files come from several modes: {modes}"})
    rows = []
    for r in range(world):
        rec = ranks.get(r)
        if rec is None:
            errors.append(
                {
                    "rank": r,
                    "kind": "missing",
                    "message": f"no probe-rank{r}.json in {out} (rank not started, or on a node whose files "
                    "are not in this folder: copy them here and run probe.py --report-only)",
                }
            )
            continue
        rows.append(rec)
        status = rec.get("status")
        if status == "oom":
            oom = rec.get("oom") or {}
            errors.append(
                {
                    "rank": r,
                    "kind": "oom",
                    "step": oom.get("step"),
                    "phase": oom.get("phase"),
                    "message": oom.get("message"),
                }
            )
        elif status == "error":
            err = rec.get("error") or {}
            errors.append({"rank": r, "kind": "error", "message": f"{err.get('type')}: {err.get('message')}"})
        elif status not in FINAL_STATUSES:
            errors.append(
                {
                    "rank": r,
                    "kind": "stopped",
                    "message": f"rank {r} stopped while {status} after {rec.get('stepsCompleted', 0)} step(s) "
                    "without an end (ended by the launcher after another rank failed, or crashed); its "
                    "figures are those it last wrote",
                }
            )
    for r in sorted(set(ranks) - set(range(world))):
        notes.append(f"probe-rank{r}.json is beyond this plan's {world} ranks and was left out")
    if launcher is not None and launcher[1] != 0:
        errors.append({"rank": None, "kind": "launcher", "message": f"{launcher[0]} exited with status {launcher[1]}"})
    if any(rec.get("status") == "oom" for rec in rows):
        notes.append(
            "a rank ran out of memory: its figures are those of a failed run, and its device figure may hold "
            "memory the allocator mapped while attempting the failed allocation"
        )
    if any(rec.get("data") == "bundle" and (rec.get("trainYaml") or {}).get("dataset") for rec in rows):
        notes.append(
            "trained on train.yaml's dataset: batches are as long as its samples, which may be shorter than "
            "the cutoff_len the prediction assumes (--data full-length fills it)"
        )

    measured = {
        key: maximum(rec.get(key) for rec in rows)
        for key in ("maxAllocatedBytes", "maxReservedBytes", "deviceUsedBytes")
    }
    loads = [rec.get("load") or {} for rec in rows]
    measured_load = {
        key: maximum(load.get(key) for load in loads)
        for key in ("maxAllocatedBytes", "maxReservedBytes", "deviceUsedBytes")
    }
    prediction = BUNDLE["prediction"]
    per_gpu = prediction["train"]["perGpu"]
    predicted_load = prediction["load"]["perGpuPeakBytes"]
    return {
        "mode": mode,
        "tunefit": BUNDLE["tunefit"],
        "plan": PLAN,
        "steps": maximum(rec.get("steps") for rec in rows),
        "ranks": [
            {
                "rank": rec.get("rank"),
                "nodeRank": rec.get("nodeRank"),
                "localRank": rec.get("localRank"),
                "host": rec.get("host"),
                "device": rec.get("device"),
                "status": rec.get("status"),
                "data": rec.get("data"),
                "stepsCompleted": rec.get("stepsCompleted"),
                "maxAllocatedBytes": rec.get("maxAllocatedBytes"),
                "maxReservedBytes": rec.get("maxReservedBytes"),
                "deviceUsedBytes": rec.get("deviceUsedBytes"),
                "deviceUsedSource": rec.get("deviceUsedSource"),
                "load": rec.get("load"),
                "oom": rec.get("oom"),
                "versions": rec.get("versions"),
            }
            for rec in rows
        ],
        "measured": measured,
        "prediction": prediction,
        "ratio": {
            "allocated": ratio(measured["maxAllocatedBytes"], per_gpu["allocatedBytes"]),
            "reserved": ratio(measured["maxReservedBytes"], per_gpu["reservedBytes"]),
            "device": ratio(measured["deviceUsedBytes"], per_gpu["deviceBytes"]),
        },
        "load": {
            "measured": measured_load,
            "predictedPeakBytes": predicted_load,
            "ratio": ratio(measured_load["deviceUsedBytes"], predicted_load),
        },
        "errors": errors,
        "notes": notes,
    }


def unsupported_report(mode, problems):
    return {
        "mode": mode,
        "tunefit": BUNDLE["tunefit"],
        "plan": PLAN,
        "steps": None,
        "ranks": [],
        "measured": None,
        "prediction": BUNDLE["prediction"],
        "ratio": None,
        "load": None,
        "errors": [{"rank": None, "kind": "unsupported", "message": p} for p in problems],
        "notes": [],
    }


def publish(report, out):
    """Prints the report on stdout, keeps a copy beside the rank files and returns the exit status."""
    with contextlib.suppress(OSError):
        os.makedirs(out, exist_ok=True)
        write_json(os.path.join(out, "probe-report.json"), report)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    sys.stdout.flush()
    kinds = {e["kind"] for e in report["errors"]}
    return 2 if "unsupported" in kinds else 1 if kinds else 0


# ---------------------------------------------------------------------------------------------------- launching


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def enabled(env, name, default):
    return env.get(name, default).strip().lower() in ("1", "true", "y", "yes")


def launch_plan(args):
    """(launcher name, command or None to run in this process, environment, node rank), as launch.sh starts
    training: the plan's GPUs visible, torchrun for several GPUs or DeepSpeed (with the variables
    llamafactory-cli sets), accelerate launch with accelerate_fsdp.yaml for FSDP."""
    gpus, nodes, launcher = PLAN["gpusPerNode"], PLAN["nodes"], LAUNCH["launcher"]
    env = dict(os.environ)
    visible = env.get("CUDA_VISIBLE_DEVICES") or ",".join(str(i) for i in range(gpus))
    if launcher == "python":  # one GPU: the first visible one
        visible = visible.split(",")[0]
    env["CUDA_VISIBLE_DEVICES"] = visible
    env[LAUNCHED_ENV] = "1"
    node_rank = env.get("NODE_RANK") or "0"
    master_addr = env.get("MASTER_ADDR") or "127.0.0.1"
    if not node_rank.isdigit() or int(node_rank) >= nodes:
        raise UsageError(f"NODE_RANK must be a number from 0 to {nodes - 1}, got {node_rank!r}")
    if int(node_rank) > 0 and master_addr == "127.0.0.1":
        raise UsageError(f"on node {node_rank}, set MASTER_ADDR to the first node's address")
    master_port = env.get("MASTER_PORT") or str(LAUNCH["masterPort"] if nodes > 1 else free_port())
    forward = [SCRIPT, *worker_args(args)]
    if launcher == "python":
        return launcher, None, env, int(node_rank)
    if launcher == "torchrun":
        if enabled(env, "OPTIM_TORCH", "1"):  # llamafactory-cli's torchrun path sets these
            env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
            env["TORCH_NCCL_AVOID_RECORD_STREAMS"] = "1"
        command = [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes", str(nodes),
            "--node_rank", node_rank,
            "--nproc_per_node", str(gpus),
            "--master_addr", master_addr,
            "--master_port", master_port,
            *forward,
        ]  # fmt: skip
        return "torchrun", command, env, int(node_rank)
    # accelerate launch, as launch.sh (which keeps values already set)
    env["PYTORCH_CUDA_ALLOC_CONF"] = env.get("PYTORCH_CUDA_ALLOC_CONF") or "expandable_segments:True"
    env["TORCH_NCCL_AVOID_RECORD_STREAMS"] = env.get("TORCH_NCCL_AVOID_RECORD_STREAMS") or "1"
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", os.path.join(HERE, LAUNCH["configFile"]),
    ]  # fmt: skip
    if nodes > 1:
        command += ["--machine_rank", node_rank, "--main_process_ip", master_addr, "--main_process_port", master_port]
    return "accelerate launch", command + forward, env, int(node_rank)


def clear_rank_files(out, node_rank):
    """Removes this node's rank files of an earlier run (each node clears its own ranks only)."""
    gpus = PLAN["gpusPerNode"]
    for rank in range(node_rank * gpus, (node_rank + 1) * gpus):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, f"probe-rank{rank}.json"))


def main(argv=None):
    args = parse_args(argv)
    if args.prediction:
        sys.stdout.write(json.dumps({"plan": PLAN, "prediction": BUNDLE["prediction"]}, indent=2) + "\n")
        return 0
    if args.report_only:
        return publish(build_report(args.out, args.mode), args.out)
    args.mode = args.mode or "llamafactory"
    problems = mode_problems(args)
    if problems:
        return publish(unsupported_report(args.mode, problems), args.out)

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        # One rank under a launcher: ours (which reports), or the user's (rank 0 reports).
        if args.dry_run:
            shown = {"launcher": None, "command": [sys.executable, SCRIPT, *worker_args(args)], "env": {}}
            sys.stdout.write(json.dumps(shown, indent=2) + "\n")
            return 0
        record = run_rank(args)
        if os.environ.get(LAUNCHED_ENV) != "1" and record["rank"] == 0:
            publish(build_report(args.out, args.mode, wait=args.wait), args.out)
        return 0 if record["status"] == "finished" else 1

    try:
        launcher, command, env, node_rank = launch_plan(args)
    except UsageError as e:
        log(str(e))
        return 2
    if args.dry_run:
        changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
        shown = command or [sys.executable, *[SCRIPT, *worker_args(args)]]
        sys.stdout.write(json.dumps({"launcher": launcher, "command": shown, "env": changed}, indent=2) + "\n")
        return 0
    os.makedirs(args.out, exist_ok=True)
    clear_rank_files(args.out, node_rank)
    if command is None:
        os.environ["CUDA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"]
        run_rank(args)
        shutil.rmtree(output_dir(args), ignore_errors=True)
        return publish(build_report(args.out, args.mode), args.out)

    log(f"starting {launcher}: {' '.join(command)}")
    try:
        stdout = sys.stderr.fileno()  # the ranks' output goes to stderr: stdout carries the report alone
    except (AttributeError, OSError, ValueError):
        stdout = None
    status = subprocess.call(command, env=env, stdout=stdout)
    shutil.rmtree(output_dir(args), ignore_errors=True)
    if node_rank != 0:
        log(f"node {node_rank} done ({launcher} exit status {status}); the first node prints the report")
        return 0 if status == 0 else 1
    wait = args.wait if PLAN["nodes"] > 1 else 0.0
    return publish(build_report(args.out, args.mode, wait=wait, launcher=(launcher, status)), args.out)


if __name__ == "__main__":
    sys.exit(main())
`;
