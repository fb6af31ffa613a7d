#!/usr/bin/env node
// Translates the published measured memory cases (memory-cases-calibration.json) into tunefit plan inputs:
// bench/data/calibration-cases.json. It only translates fields; where a case's stack differs in a way no plan
// flag expresses, the difference is written into the case's `mapping` notes, and every per-case override is
// listed in `overrides` (the bench prints and counts them).
//
// Usage: node scripts/gen-bench-cases.mjs [--from DIR]   (DIR defaults to ../shared/reference)
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const fromIdx = process.argv.indexOf("--from");
const from = resolve(root, fromIdx > 0 ? process.argv[fromIdx + 1] : "../shared/reference");
const cases = JSON.parse(readFileSync(join(from, "memory-cases-calibration.json"), "utf8"));

const GiB = 1024 ** 3;

// Hub ids of the cases → what tunefit is given. Qwen-1's remote-code models are catalog models of their own
// family (model_type qwen); Qwen-VL an explicit architecture (same shapes as ViT-bigG + Qwen-7B, resampler as merger).
function modelOf(c, notes) {
  const hub = c.model.hub_id ?? "";
  const base = hub.replace(/\(-[A-Za-z]+\)$/, "");
  if (hub.startsWith("Qwen/Qwen-VL")) {
    notes.push(
      "Qwen-VL (remote code) as qwen2_vl shapes: ViT-bigG 48×1664 (MLP 8192), 448px → 1024 patches → 256 tokens; its attn_pool resampler as the merger",
    );
    return { id: "Qwen/Qwen-VL", architecture: QWEN_VL };
  }
  if (!hub && c.id.includes("mistral7b")) {
    // the benchmark names "Mistral 7B v0.2 Base" (v0.1's shapes, 32k positions, no sliding window)
    notes.push("hub id not stated: the source's Mistral 7B v0.2 Base (7.24 B)");
    return "mistral-community/Mistral-7B-v0.2";
  }
  return base;
}

const QWEN_VL = {
  modelType: "qwen2_vl",
  text: {
    vocabSize: 151936,
    embedRows: 151936,
    hiddenSize: 4096,
    numLayers: 32,
    numHeads: 32,
    numKvHeads: 32,
    headDim: 128,
    intermediateSize: 11008,
    tieWordEmbeddings: false,
    qkvBias: true,
    oBias: false,
    mlpBias: false,
    mlp: "gated",
    norm: "rmsnorm",
    normsPerLayer: 2,
    qkNorm: false,
    crossAttentionLayers: [],
    maxPositionEmbeddings: 8192,
    moe: null,
    mla: null,
  },
  vision: {
    kind: "qwen2_vl",
    depth: 48,
    embedDim: 1664,
    mlpHiddenSize: 8192,
    numHeads: 16,
    inChannels: 3,
    patchSize: 14,
    temporalPatchSize: 1,
    spatialMergeSize: 2,
    outHiddenSize: 4096,
  },
};

function gpuOf(c, notes) {
  const g = (c.distributed.gpu_model ?? "").toLowerCase();
  const table = [
    ["3090", "rtx3090"],
    ["4090", "rtx4090"],
    ["l40s", "l40s"],
    ["h100", "h100-80g"],
    ["v100", "v100-16g"],
    ["a100-sxm4-80gb", "a100-80g"],
    ["a100", "a100-80g"],
  ];
  for (const [k, id] of table) {
    if (g.includes(k)) {
      if (id === "a100-80g" && !g.includes("80")) notes.push("A100 memory size not stated: a100-80g assumed");
      return id;
    }
  }
  notes.push(
    `GPU "${c.distributed.gpu_model}" not in the catalog: h100-80g assumed (capacity does not enter the prediction)`,
  );
  return "h100-80g";
}

function methodOf(c) {
  const t = c.finetuning.type;
  if (t.startsWith("freeze")) return "freeze";
  return t;
}

function precisionOf(c) {
  const mode = (c.precision?.mode ?? "").toLowerCase();
  if (mode.startsWith("pure_bf16")) return "pure_bf16";
  if (mode.startsWith("fp16")) return "fp16";
  if (mode.startsWith("fp32")) return "fp32";
  if (mode.startsWith("bf16 weights")) return "pure_bf16"; // bf16 model without autocast (PEFT method comparison)
  return "bf16";
}

function optimizerOf(c) {
  const n = (c.optimizer?.name ?? "").toLowerCase();
  if (n.includes("pagedadamw8bit")) return "paged_adamw_8bit";
  if (n.includes("pagedadamw")) return "paged_adamw_32bit";
  if (n.includes("8-bit adamw") || n.includes("adamw8bit")) return "adamw_8bit";
  return undefined; // AdamW: LLaMA-Factory's default
}

const LEAVES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
function loraTargetOf(c, notes) {
  const text = c.finetuning.target_modules ?? "";
  if (/all-linear|c_attn, c_proj, w1, w2/.test(text)) return "all";
  if (/c_attn, attn\.c_proj, w1, w2/.test(text))
    return ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"];
  if (/output_proj \+ MLP/.test(text) || /q,k,v,output_proj/.test(text)) {
    notes.push("torchtune names: q/k/v/output_proj + MLP w1/w2/w3 = all linear");
    return text.includes("q,k,v")
      ? "all"
      : ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
  }
  const found = LEAVES.filter((l) => text.includes(l));
  if (/o_proj NOT included/.test(text)) return found.filter((l) => l !== "o_proj");
  return found.length > 0 ? found : "all";
}

function metricOf(c) {
  const m = (c.measured.metric ?? "").toLowerCase();
  if (m.includes("max_memory_reserved") || m.includes("memory_reserved")) return "reserved";
  if (m.includes("allocated") || m.includes("active")) return "allocated";
  if (m.includes("nvml") || m.includes("nvidia-smi")) return "device";
  return "reserved"; // not stated
}

function metricStated(c) {
  return /memory_reserved|allocated|active|nvml|nvidia-smi/i.test(c.measured.metric ?? "");
}

/** Rows without padding: packed, or fixed-length data, which is attended in full like packed rows. */
function packingOf(c, notes) {
  const kind = c.sequence_length.kind;
  if (/(^|[^n])packed/.test(kind)) return true;
  if (/^fixed/.test(kind)) {
    notes.push("fixed-length rows (no padding) expressed as packing: no attention mask");
    return true;
  }
  return false;
}

function bytesOf(c, notes) {
  const { value, unit } = c.measured;
  if (unit === "GiB") return value * GiB;
  if (unit === "MiB") return value * 1024 ** 2;
  if (unit.startsWith("GB(1e9)")) return value * 1e9;
  notes.push(`unit "${unit}" read as GiB (flagged)`);
  return value * GiB;
}

const out = [];
for (const c of cases) {
  const notes = [];
  const overrides = [];
  const excluded = [];
  if (c.model.hub_id?.includes("bert")) excluded.push("BERT encoder: outside the decoder families");
  if (c.torch_compile) excluded.push("torch.compile");
  if (c.optimizer?.fused_into_backward) excluded.push("optimizer step fused into backward");
  if (c.activation_offloading) excluded.push("activation offloading");

  const method = methodOf(c);
  const plan = {
    model: modelOf(c, notes),
    gpu: gpuOf(c, notes),
    gpus: c.distributed.num_gpus ?? 1,
    method,
    precision: precisionOf(c),
    seqLen: c.sequence_length.value,
    packing: packingOf(c, notes),
    microBatch: c.micro_batch_size ?? 1,
    gradAccum: c.gradient_accumulation ?? 1,
    gradientCheckpointing: Boolean(c.gradient_checkpointing?.enabled),
    attention: /flash/i.test(c.attention_impl ?? "")
      ? "fa2"
      : /eager/i.test(c.attention_impl ?? "")
        ? "eager"
        : /sdpa/i.test(c.attention_impl ?? "")
          ? "sdpa"
          : "auto",
    liger: /chunk|fused|cut/i.test(c.loss_impl ?? ""),
    template: "default",
  };
  const optimizer = optimizerOf(c);
  if (optimizer) plan.optimizer = optimizer;
  if (plan.liger) notes.push(`${c.loss_impl.split("(")[0].trim()} expressed as --liger on`);
  if (plan.precision === "pure_bf16" && !/pure_bf16/.test(c.precision?.mode ?? ""))
    notes.push("bf16 model without autocast expressed as pure_bf16 (adapters stay fp32 in PEFT)");

  const d = c.distributed;
  const strategy = (d.strategy ?? "").toLowerCase();
  if (d.zero_stage) plan.sharding = `zero${d.zero_stage}`;
  else if (/fsdp/i.test(d.framework ?? "")) {
    plan.sharding = "fsdp";
    plan.fsdpStrategy = /no_shard|ddp/.test(strategy) ? "no_shard" : "full_shard";
  }
  if (
    /qwen/i.test(c.group) &&
    plan.precision === "bf16" &&
    !plan.sharding &&
    /HF Trainer/.test(c.precision?.mode ?? "")
  ) {
    // Qwen's finetune.py trains the model as loaded in bf16: nothing makes fp32 copies of the trainable parameters
    // (LoRA adapters, modules_to_save), so their gradients and AdamW states are bf16 too
    plan.precision = "pure_bf16";
    notes.push(
      "Qwen's finetune.py trains its bf16 model without fp32 copies (bf16 trainable weights, gradients and AdamW states; the Trainer's bf16 autocast leaves bf16 matmuls as they are): pure-bf16 training, expressed as pure_bf16; its PEFT (≤ 0.6) also made the LoRA adapters bf16, where current PEFT keeps them fp32, as modelled",
    );
  }
  if (/qwen_v1/.test(c.group) && method === "full" && !plan.sharding) {
    // Qwen's repository has one full-parameter script, finetune/finetune_ds.sh, which always passes
    // --deepspeed finetune/ds_config_zero2.json, on one GPU as on several
    plan.sharding = "zero2";
    notes.push(
      "Qwen's full-parameter fine-tuning runs through finetune_ds.sh: DeepSpeed ZeRO-2 on one GPU too",
    );
  }
  if (/qwen_v1|qwen_vl/.test(c.group) && /^zero/.test(plan.sharding ?? "") && !plan.optimizer) {
    // Qwen's finetune/ds_config_zero2.json (and its ds_config_zero3.json) name their optimizer ("optimizer":
    // {"type": "AdamW"}): DeepSpeed builds its FusedAdam, fp32 states stepped in place, where the Trainer's own
    // AdamW would be torch's foreach one; doctor reads such a config the same way
    plan.optimizer = "adamw_torch_fused";
    notes.push(
      "Qwen's DeepSpeed configs name their optimizer (AdamW: DeepSpeed's FusedAdam, stepped in place), expressed as adamw_torch_fused",
    );
  }
  // The run's own DeepSpeed settings, and its loss where no flag expresses it, enter as memory-model assumptions
  // where they differ from LLaMA-Factory's (what doctor reads from a config): per-case overrides, printed and
  // counted by the bench.
  const assumptions = {};
  if (/qwen_v1/.test(c.group) && plan.sharding === "zero2") {
    // finetune_ds.sh and finetune_qlora_single_gpu.sh pass finetune/ds_config_zero2.json
    assumptions.zero12ReduceBucketElements = 2e8;
    assumptions.zeroOverlapComm = true;
    overrides.push(
      "Qwen's finetune/ds_config_zero2.json: reduce_bucket_size 2e8 and overlap_comm true (zero12ReduceBucketElements=2e8, zeroOverlapComm=true)",
    );
  }
  if (/qwen_vl/.test(c.group) && /^zero/.test(plan.sharding ?? "")) {
    // The Trainer leaves half precision to DeepSpeed ("deepspeed ... manage their own half precision": no autocast),
    // and Qwen's remote code takes CrossEntropyLoss of its bf16 logits without an upcast: log_softmax runs and
    // saves in bf16. Its peak is the logits, their contiguous shifted copy and the saved output in forward, or the
    // saved output and two gradients in backward: 3 × 2 B, where LLaMA-Factory's models upcast (12 B)
    // (modelled for Qwen-1's own model type; Qwen-VL is expressed as qwen2_vl, whose loss upcasts)
    assumptions.logitsBytesPerVocabToken = 6;
    overrides.push(
      "Qwen-VL's remote code under DeepSpeed (no autocast) takes the loss of bf16 logits in bf16, which its qwen2_vl stand-in does not: 6 B per vocabulary-token at the loss (logitsBytesPerVocabToken=6)",
    );
  }
  if (/peft_docs/.test(c.group) && /accelerate/i.test(d.framework ?? "") && plan.sharding === "zero3") {
    // PEFT's examples/sft/configs/deepspeed_config.yaml sets accelerate's DeepSpeed plugin (zero_stage 3) with no
    // config file; the plugin then writes no bucket sizes, so DeepSpeed's defaults apply
    assumptions.zero3ReduceBucketElements = 5e8;
    assumptions.zero3PrefetchBucketElements = 5e7;
    assumptions.zeroOverlapComm = true;
    overrides.push(
      "accelerate's DeepSpeed plugin (no config file) leaves DeepSpeed's defaults: reduce_bucket_size 5e8, stage3_prefetch_bucket_size 5e7, overlap_comm true (zero3ReduceBucketElements=5e8, zero3PrefetchBucketElements=5e7, zeroOverlapComm=true)",
    );
  }
  if (/qwen_v1|qwen_vl|peft_docs/.test(c.group) && /^zero/.test(plan.sharding ?? "")) {
    // llamafactory-cli's torchrun path sets PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (OPTIM_TORCH); these
    // runs launch DeepSpeed themselves (Qwen's finetune_ds.sh with torchrun, finetune_qlora_single_gpu.sh with
    // python, on a 2023 torch without expandable segments; PEFT's example with accelerate launch), so PyTorch's
    // default allocator applies
    assumptions.expandableSegments = false;
    overrides.push(
      `${/peft_docs/.test(c.group) ? "PEFT's accelerate launch runs" : "Qwen's finetune scripts (torchrun or python) run"} DeepSpeed with PyTorch's default allocator, without the expandable_segments setting llamafactory-cli's torchrun path makes (expandableSegments=false)`,
    );
  }
  if (d.offload_params) plan.offload = "params";
  else if (d.offload_optimizer) plan.offload = "optimizer";

  if (method === "lora" || method === "qlora") {
    plan.loraRank = c.finetuning.lora_rank;
    if (c.finetuning.lora_alpha) plan.loraAlpha = c.finetuning.lora_alpha;
    if (c.finetuning.lora_dropout) plan.loraDropout = c.finetuning.lora_dropout;
    plan.loraTarget = loraTargetOf(c, notes);
    if (/DoRA/.test(c.finetuning.trainable_extra ?? "")) plan.useDora = true;
    if (/embedding|wte/.test(c.finetuning.trainable_extra ?? "")) {
      // Qwen-1 names its input embedding wte
      plan.additionalTarget = [/qwen_v1/.test(c.group) ? "wte" : "embed_tokens", "lm_head"];
    }
  }
  if (method === "qlora") {
    const scheme = (c.finetuning.quantization?.scheme ?? "").toLowerCase();
    plan.quantMethod = scheme.includes("gptq") ? "gptq" : "bnb";
    plan.quantBits = c.finetuning.quantization?.bits ?? 4;
  }
  if (method === "freeze") {
    plan.freezeTrainableLayers = c.model.layers;
    plan.freezeTrainableModules = ["input_layernorm", "post_attention_layernorm"];
    notes.push(
      "LN tuning as freeze over every layer's norms (the final norm is not expressible: one H-vector)",
    );
  }
  if (typeof plan.model === "object" || String(plan.model).startsWith("Qwen/Qwen-VL")) {
    plan.imagesPerSample = 1;
    plan.imageMaxPixels = 448 * 448;
    if (/attn_pool/.test(c.finetuning.trainable_extra ?? "")) {
      if (method === "lora" || method === "qlora")
        plan.additionalTarget = [...(plan.additionalTarget ?? []), "merger"];
      else plan.freezeProjector = false;
    }
  }
  if (/qwen/i.test(c.group) && method === "qlora") notes.push("Qwen's Q-LoRA loads a GPTQ Int4 checkpoint");
  // Qwen-1's remote code computes CrossEntropyLoss on the bf16 logits. Without DeepSpeed the Trainer runs the
  // forward under bf16 autocast, whose fp32 list holds log_softmax and nll_loss: the loss is fp32, as modelled.
  // Under DeepSpeed neither the Trainer nor accelerate autocasts (DeepSpeed keeps its own bf16 model).
  if (/qwen_v1/.test(c.group) && plan.sharding)
    notes.push(
      "Qwen-1's loss runs on bf16 logits under DeepSpeed (no autocast, no fp32 upcast in its remote code): modelled for model_type qwen (6 B per vocabulary-token)",
    );
  else if (/qwen/i.test(c.group) && plan.sharding)
    notes.push(
      "Qwen-VL's loss runs on bf16 logits under DeepSpeed (no autocast, no fp32 upcast in its remote code): entered as the override logitsBytesPerVocabToken=6",
    );
  else if (/qwen/i.test(c.group))
    notes.push(
      "Qwen-1's remote code takes the loss of bf16 logits, but the Trainer's bf16 autocast runs log_softmax and nll_loss in fp32: the fp32 logits are modelled",
    );
  if (/fsdp_qlora/.test(c.group)) {
    notes.push(
      "fsdp_qlora's loop (transformers 4.38) keeps the fp32 logits of the output alive through backward: 16 B × vocabulary per token at the loss's backward peak where LLaMA-Factory's needs 12",
    );
    notes.push(
      "the PEFT of that time (0.10) cast LoRA adapters to the base weight's bf16; PEFT ≥ 0.12 keeps them in fp32, as modelled",
    );
  }
  // bitsandbytes 0.43.0–0.43.1 (the FSDP-QLoRA releases of spring 2024) saved every 4-bit linear's input in
  // MatMul4Bit.forward (`ctx.tensors = (A, B)`) for a weight gradient it never computes; 0.43.2 (PR #1270) stopped.
  if (method === "qlora" && /fsdp_qlora|peft_docs/.test(c.group)) {
    notes.push(
      "the bitsandbytes of that time (0.43.0–0.43.1) kept each 4-bit linear's input for backward (removed in 0.43.2, bitsandbytes #1270): the recomputed layer held its two norm outputs and down_proj's input once more, which current bitsandbytes, as modelled, does not",
    );
  }
  if (
    /peft_docs/.test(c.group) &&
    plan.sharding === "fsdp" &&
    /use_reentrant=True/.test(c.gradient_checkpointing?.kind ?? "")
  ) {
    notes.push(
      "reentrant checkpointing around FSDP1 units runs the recomputed forward with the unit resharded, so torch's _pre_forward unshards it once for the recompute and the pre-backward hook again (one more layer in the all-gather stream's pool, not modelled: unverified)",
    );
  }

  let measuredBytes = bytesOf(c, notes);
  if (/^aggregate/.test(c.measured.scope ?? "")) {
    measuredBytes /= d.num_gpus ?? 1;
    notes.push(
      `the source reports the sum over ${d.num_gpus} GPUs: divided by ${d.num_gpus} (symmetric ranks)`,
    );
  }
  const singleGpu = (d.num_gpus ?? 1) === 1 && !plan.sharding;
  out.push({
    id: c.id,
    group: c.group,
    tier: c.trust_tier,
    scope: excluded.length > 0 ? "excluded" : singleGpu ? "single-gpu" : "sharded",
    excluded,
    plan,
    measured: {
      bytes: Math.round(measuredBytes),
      metric: metricOf(c),
      // false where the source does not say what it read (the rule then compares with reservedBytes)
      metricStated: metricStated(c),
      value: c.measured.value,
      unit: c.measured.unit,
    },
    mapping: notes,
    overrides,
    assumptions,
  });
}

writeFileSync(join(root, "bench/data/calibration-cases.json"), `${JSON.stringify(out, null, 2)}\n`);
const by = (s) => out.filter((c) => c.scope === s).length;
console.log(
  `wrote ${out.length} cases: ${by("single-gpu")} single-GPU, ${by("sharded")} sharded, ${by("excluded")} excluded`,
);
