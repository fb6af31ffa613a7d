/*
 * Every assumption of the memory model: one named value with its source. Pass a partial override to any
 * estimate function (`estimateMemory(plan, { cudaContextBytes: 800 * MiB })`) to change it.
 */

import { usageError } from "../errors.ts";

const MiB = 1024 ** 2;

export interface MemoryAssumptions {
  /**
   * Non-PyTorch memory of one process on its GPU: CUDA context, kernels (lazy module loading), cuBLAS/cuDNN
   * handles. Sources: "~300–500 MB per GPU" (Fujii et al. estimator), "I assume 650 MB" (gpu_poor README), 1.3 GB
   * on a V100 before CUDA lazy loading (transformers model_memory_anatomy.md). Lazy loading is the default since
   * CUDA 11.7 / PyTorch 2.x.
   */
  readonly cudaContextBytes: number;
  /**
   * Non-PyTorch memory a training step adds to the bare context: the kernel modules it loads lazily (attention,
   * GEMM, optimizer and loss kernels) and library handles. Measured: 1.35 GiB of device memory beyond
   * `max_memory_reserved` after LoRA training steps of two models on one H200 (torch 2.11, CUDA 13; the same
   * 1.35 GiB for both, docs/memory-model.md), and 1.3 GB for "the kernels alone" on a V100 before lazy loading
   * (transformers model_memory_anatomy.md): 1.35 GiB − the 512 MiB context.
   */
  readonly cudaKernelBytes: number;
  /**
   * NCCL buffers of one communicator on one process ("~0.5 GB per communicator", okoge-kaz memory estimator).
   * How many communicators a plan holds: `ncclCommunicators` in train.ts.
   */
  readonly ncclBytes: number;
  /**
   * Reserved-but-unallocated memory of PyTorch's caching allocator, as a share of the memory that is allocated
   * and freed every step (activations, logits, step temporaries). Model states are allocated once and do not
   * fragment. Measured with the default allocator: 0.22 and 0.31 of the predicted transient memory in two
   * probe.py runs on one H200 (allocated predicted within 0.6 % there; docs/memory-model.md); +0.1–1 % of the
   * total in static phases (torchtune, PEFT). FSDP1's all-gather stream pool and wrap transient
   * come on top (fsdpPendingFreeUnits, fsdpInitCacheKept).
   */
  readonly fragmentationOfTransient: number;
  /**
   * Whether a run launched through torchrun or accelerate sets `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`:
   * llamafactory-cli's torchrun path does unless `OPTIM_TORCH=0` (launcher.py), which covers every run on several
   * GPUs and DeepSpeed on one (FORCE_TORCHRUN), and tunefit's launch.sh does for accelerate (FSDP). A plan on one
   * GPU without sharding runs as one plain process, with PyTorch's default allocator either way. The default
   * allocator gives a large request a segment of its own when no cached block is large enough, and blocks of
   * different segments never merge (c10/cuda/CUDACachingAllocator.cpp), so DeepSpeed's step, which makes tensors
   * of its whole flat partition, reserves them on top of the smaller blocks forward and backward left cached;
   * expandable segments grow in place and let the step reuse that memory.
   */
  readonly expandableSegments: boolean;
  /**
   * NF4 storage per quantized weight: 4 bits + double-quantized absmax constants (8/64 + 32/(64·256) bits),
   * ≈ 4.127 bits (Dettmers et al. 2023, QLoRA §2). The constants beyond the packed 4 bits are not part of the
   * parameter: FSDP and ZeRO-3 keep them whole on every GPU (load.ts unshardedQuantBytesPerParam).
   */
  readonly nf4BytesPerParam: number;
  /** bitsandbytes LLM.int8 weight: 1 byte + one fp32 scale per output row (≈ 4/in bytes per weight). */
  readonly int8BytesPerParam: number;
  /** GPTQ/AWQ 4-bit with group size 128: 4 bits + fp16 scale and 4-bit zero per group (≈ 0.52 B). */
  readonly gptq4BytesPerParam: number;
  /** GPTQ 8-bit with group size 128. */
  readonly gptq8BytesPerParam: number;
  /**
   * Logits per token, in units of the vocabulary, at the loss's peak. HF ForCausalLMLoss upcasts the bf16 logits
   * (`logits.float()`) and cross_entropy's log_softmax saves its fp32 output: 2 + 4 + 4 = 10 B in forward. The
   * peak is in backward: nll_loss's fp32 input gradient (4 B) and log_softmax's fp32 output gradient (4 B) are
   * live beside the saved output (4 B) = 12 B, while the upcast copy is gone and the Trainer has dropped the
   * model output (torch LogSoftmaxBackward saves its result; transformers loss_utils.py ForCausalLMLoss). One H200
   * run of Qwen2.5-1.5B at 8,192 tokens measured 2.43 GiB more allocated than the 10 B reading: 2 B × V × tokens
   * is 2.32 GiB (docs/memory-model.md). Cut-CE paper: ≈ 3 fp32 copies (24 GB for Gemma 2 at 8,192 tokens).
   */
  readonly logitsBytesPerVocabToken: number;
  /**
   * Same in fp32 training: the fp32 logits (4 B) and the saved output (4 B) in forward; the saved output and the
   * two gradients (12 B) in backward.
   */
  readonly logitsBytesPerVocabTokenFp32: number;
  /**
   * Same for a model whose loss takes the 16-bit logits as they are (Qwen-1's remote code) where nothing autocasts
   * (DeepSpeed): the logits, their shifted contiguous copy and log_softmax's 16-bit output, 2 + 2 + 2 B; in backward
   * the saved output and the two 16-bit gradients. Qwen's own profiling of Qwen-7B Q-LoRA under ZeRO-2 rises 9.6 GiB
   * from 2,048 to 8,192 tokens: 6 B gives +8.4 GiB, 12 B +14.9 (docs/memory-model.md).
   */
  readonly logitsBytesPerVocabTokenNoUpcast: number;
  /**
   * Logits the training loop keeps alive through backward, per vocabulary-token: 0 under the HF Trainer, whose
   * compute_loss returns the loss alone, so the model output is dropped before backward (LLaMA-Factory's case). A
   * hand-written loop that holds `output` until after the step keeps `output.logits`: 2 with transformers ≥ 4.46
   * (bf16 logits; the loss function upcasts its own copy), 4 before (LlamaForCausalLM returned `logits.float()`),
   * e.g. fsdp_qlora's train.py with transformers 4.38. They stay beside the loss's backward peak and every
   * recomputed layer. Liger's fused loss makes no logits.
   */
  readonly heldOutputLogitsBytesPerVocabToken: number;
  /**
   * Temporaries of the optimizer step, as copies of the trainable parameters in their dtype: torch's foreach
   * AdamW materialises sqrt(exp_avg_sq) for the whole parameter group (torch/optim/adamw.py _multi_tensor_adamw).
   */
  readonly optimizerStepTempCopies: number;
  /**
   * What a plan without an optimizer steps with, transformers' default `optim`: `adamw_torch` (torch's foreach
   * AdamW, a temporary copy of the trained parameters at the step) before torch 2.8, `adamw_torch_fused` (none)
   * from torch 2.8 on (training_args.py `default_optim`). false models the earlier default, the larger of the two.
   */
  readonly defaultOptimFused: boolean;
  /**
   * Host memory per training process beside model weights (Python, torch, CUDA host allocations, dataloader):
   * a CUDA-initialised torch process alone takes 2–3 GiB of RSS.
   */
  readonly hostBytesPerProcess: number;
  /**
   * transformers 4.x builds MoE experts from nn.Linear modules (LoRA `all` and bitsandbytes reach them); 5.x
   * fuses them into 3-D parameters. LLaMA-Factory ff6d4d12ee supports both (transformers >=4.55,<=5.8).
   */
  readonly transformersExpertsAsLinear: boolean;
  /**
   * bitsandbytes before 0.43.2 saved each 4-bit linear's input for backward (MatMul4Bit.forward `ctx.tensors =
   * (A, B)`), which the input gradient does not need; PR #1270 ("delete useless buffered activation", July 2024)
   * saves `(None, B)`. With it on, QLoRA saves the inputs of q/k/v, o_proj, gate/up and down_proj in every layer
   * autograd keeps (one recomputed layer under gradient checkpointing, all of them without). Off: current
   * bitsandbytes, as LLaMA-Factory installs it.
   */
  readonly bnb4bitSavesInput: boolean;
  /**
   * DeepSpeed ZeRO-3's `stage3_max_reuse_distance`, in parameters: 1e9 in LLaMA-Factory's ds_z3_config.json.
   * Gathered parameters reused within this distance are not released. The deepspeed.json tunefit writes takes
   * this value, and doctor reads it from the config it is given.
   */
  readonly zero3MaxReuseDistance: number;
  /**
   * DeepSpeed ZeRO-3's `stage3_max_live_parameters`, in elements: 1e9 in LLaMA-Factory's ds_z3_config.json (and
   * DeepSpeed's default). Once its trace of a step is complete, ZeRO-3 prefetches on every module's pre-hook: each
   * call gathers at least the next parameter of the trace while fewer than this many elements are available
   * (partitioned_param_coordinator.py fetch_sub_module: `min(max_n_available_params − n_available_params,
   * prefetch_bucket_sz)`, checked before each parameter is added). The count holds every gathered parameter (fetched
   * on demand, prefetched or kept for reuse; persistent ones aside). Hooks fire on every called module, parents and
   * parameter-less ones included (several per weight), so the prefetch runs ahead until this bound, plus the
   * parameter that crosses it. 0 stands for no prefetch (doctor reads a config's explicit
   * `stage3_prefetch_bucket_size: 0` so, which turns it off). The deepspeed.json tunefit writes takes this value, and
   * doctor reads it from the config it is given.
   */
  readonly zero3MaxLiveParameters: number;
  /**
   * DeepSpeed ZeRO-1/2's `reduce_bucket_size`, in elements: 5e8 in LLaMA-Factory's ds_z2_config.json. With
   * contiguous_gradients the bucket is allocated at this size in the 16-bit dtype (1 GB at 5e8) however few
   * parameters train (stage_1_and_2.py setup_buckets). 0 stands for "auto": hidden² (transformers'
   * HfTrainerDeepSpeedConfig). The deepspeed.json tunefit writes takes this value; doctor reads the config's own.
   */
  readonly zero12ReduceBucketElements: number;
  /**
   * DeepSpeed ZeRO-3's `reduce_bucket_size`, in elements: "auto" (0 here, hidden² through transformers'
   * HfTrainerDeepSpeedConfig) in LLaMA-Factory's ds_z3_config.json. With contiguous_gradients stage3.py allocates
   * its `__ipg_bucket_flat_buffer` at this size in the 16-bit dtype once at init, however few parameters train. A
   * config that leaves the key out gets DeepSpeed's default, 5e8 (1 GB), which is what accelerate's DeepSpeed plugin
   * without a config file passes. The deepspeed.json tunefit writes takes this value; doctor reads the config's own.
   */
  readonly zero3ReduceBucketElements: number;
  /**
   * DeepSpeed ZeRO-3's `stage3_prefetch_bucket_size`, in elements: how much one module's pre-hook may start to
   * gather ahead of use (a quota per call, not a buffer: what stays gathered is bounded by
   * `zero3MaxLiveParameters`). "auto" (0 here, 0.9 × hidden²) in LLaMA-Factory's ds_z3_config.json; DeepSpeed's
   * default when the key is absent is 5e7. The deepspeed.json tunefit writes takes this value; doctor reads the
   * config's own.
   */
  readonly zero3PrefetchBucketElements: number;
  /**
   * DeepSpeed's `overlap_comm`: false in LLaMA-Factory's ds_z2 and ds_z3 configs. True doubles ZeRO-1/2's reduce
   * bucket (a second buffer so reduction overlaps backward). Under ZeRO-3 it moves the all-gathers to a side
   * stream, whose allocator pool keeps its high-water mark of gathered parameters (counted as releasable cache). The deepspeed.json tunefit writes takes this value; doctor
   * reads the config's own (DeepSpeed's default when absent: true for stage 3, false otherwise).
   */
  readonly zeroOverlapComm: boolean;
  /**
   * All-gathered FSDP1 units that are freed but still reserved when the next all-gather allocates: the unit is freed
   * with `record_stream` on the compute stream, and `limit_all_gathers` waits only for the older of
   * `_max_num_inflight_all_gathers = 2` queued frees (torch/distributed/fsdp/_limiter_utils.py, flat_param.py).
   */
  readonly fsdpPendingFreeUnits: number;
  /**
   * Whether the FSDP1 wrap's transient (the largest unit moved to the GPU, broadcast by sync_module_states and
   * flattened) stays cached in the compute stream's pool through training. True for accelerate and the HF Trainer,
   * which do not empty the cache between wrapping and the first step. fsdp_qlora's 7B QLoRA: 3.72 GiB reserved
   * after wrapping (benchmarks_03_2024.md) for about 2.1 GiB of shards.
   */
  readonly fsdpInitCacheKept: boolean;
  /** Shard size assumed when the catalog does not know the checkpoint's shards (save_pretrained's 5 GB default). */
  readonly defaultShardBytes: number;
  /**
   * accelerate 1.11 (the version LLaMA-Factory's pyproject pins) casts the whole model to fp32 after FSDP2's
   * fully_shard when mixed precision is on, frozen weights included; 1.13 casts only trainable parameters
   * (huggingface/accelerate #3848, #3985). Set false for accelerate >= 1.13.
   */
  readonly accelerateFsdp2CastsFrozenToFp32: boolean;
  /**
   * Whether FSDP2 makes a LoRA/QLoRA model one unit. The HF Trainer replaces the FSDP plugin's auto-wrap policy for
   * a PEFT model with PEFT's fsdp_auto_wrap_policy, a partial of torch's `_or_policy` (transformers
   * integrations/fsdp.py update_fsdp_plugin_peft, called in _inner_training_loop before accelerator.prepare).
   * accelerate's FSDP2 recognises only transformer_auto_wrap_policy and size_based_auto_wrap_policy and returns no
   * policy otherwise (utils/fsdp_utils.py fsdp2_prepare_auto_wrap_policy), so fully_shard wraps the root alone:
   * every GPU gathers the whole model for forward and again for backward.
   */
  readonly peftFsdp2WrapsRootOnly: boolean;
}

/** The defaults; each field's comment says where it comes from. */
export const DEFAULT_ASSUMPTIONS: MemoryAssumptions = {
  cudaContextBytes: 512 * MiB,
  cudaKernelBytes: 870 * MiB,
  ncclBytes: 512 * MiB,
  fragmentationOfTransient: 0.25,
  expandableSegments: true,
  nf4BytesPerParam: 4.127 / 8,
  int8BytesPerParam: 1.0,
  gptq4BytesPerParam: 0.5 + 2.5 / 128,
  gptq8BytesPerParam: 1.0 + 2.5 / 128,
  logitsBytesPerVocabToken: 12,
  logitsBytesPerVocabTokenFp32: 12,
  logitsBytesPerVocabTokenNoUpcast: 6,
  heldOutputLogitsBytesPerVocabToken: 0,
  optimizerStepTempCopies: 1,
  defaultOptimFused: false,
  hostBytesPerProcess: 3 * 1024 * MiB,
  transformersExpertsAsLinear: true,
  bnb4bitSavesInput: false,
  zero3MaxReuseDistance: 1e9,
  zero3MaxLiveParameters: 1e9,
  zero12ReduceBucketElements: 5e8,
  zero3ReduceBucketElements: 0,
  zero3PrefetchBucketElements: 0,
  zeroOverlapComm: false,
  fsdpPendingFreeUnits: 1,
  fsdpInitCacheKept: true,
  defaultShardBytes: 5e9,
  accelerateFsdp2CastsFrozenToFp32: true,
  peftFsdp2WrapsRootOnly: true,
};

/** Fills a partial override with the defaults. */
export function withDefaults(overrides: Partial<MemoryAssumptions> = {}): MemoryAssumptions {
  return { ...DEFAULT_ASSUMPTIONS, ...overrides };
}

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
};

/**
 * Overrides written as `NAME=VALUE` (the CLI's `--assume`): a number, with a size unit for the `…Bytes` fields
 * (`cudaContextBytes=1GiB`), or `true`/`false` for the switches.
 * @throws TunefitError (usage) naming the entry, for an unknown name or a value of the wrong kind
 */
export function parseAssumptions(entries: readonly string[], path = "--assume"): Partial<MemoryAssumptions> {
  const names = Object.keys(DEFAULT_ASSUMPTIONS) as (keyof MemoryAssumptions)[];
  const out: Record<string, number | boolean> = {};
  for (const entry of entries) {
    const eq = entry.indexOf("=");
    const name = (eq < 0 ? entry : entry.slice(0, eq)).trim();
    const raw = eq < 0 ? "" : entry.slice(eq + 1).trim();
    if (!names.includes(name as keyof MemoryAssumptions)) {
      throw usageError(
        "ASSUMPTION_UNKNOWN",
        path,
        `${path} ${JSON.stringify(entry)}: no memory-model assumption is called ${JSON.stringify(name)}`,
        `Write NAME=VALUE with one of: ${names.join(", ")}.`,
      );
    }
    if (name in out) {
      throw usageError(
        "FLAG_VALUE_INVALID",
        path,
        `${path} ${JSON.stringify(entry)}: ${name} is given twice`,
        `Give each assumption once.`,
      );
    }
    const fallback = DEFAULT_ASSUMPTIONS[name as keyof MemoryAssumptions];
    if (typeof fallback === "boolean") {
      if (!/^(true|false|on|off)$/.test(raw)) {
        throw usageError(
          "FLAG_VALUE_INVALID",
          path,
          `${path} ${JSON.stringify(entry)}: ${name} is a switch (default ${fallback})`,
          `Write ${name}=true or ${name}=false.`,
        );
      }
      out[name] = raw === "true" || raw === "on";
      continue;
    }
    // a size in bytes (cudaContextBytes, hostBytesPerProcess), not a rate per parameter or per token
    const sized = /Bytes(PerProcess)?$/.test(name);
    const m = /^(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)$/.exec(raw);
    const unit = m?.[2] ?? "";
    const scale = unit === "" ? 1 : sized ? SIZE_UNITS[unit] : undefined;
    const value = m && scale !== undefined ? Number(m[1]) * scale : Number.NaN;
    if (!Number.isFinite(value) || value > 1e15) {
      throw usageError(
        "FLAG_VALUE_INVALID",
        path,
        `${path} ${JSON.stringify(entry)}: expected a number from 0 to 1e15${sized ? " of bytes; a unit such as MiB or GiB may follow" : ""}`,
        `Write e.g. ${name}=${sized ? "1GiB" : fallback} (default ${fallback}).`,
      );
    }
    out[name] = value;
  }
  return out as Partial<MemoryAssumptions>;
}
