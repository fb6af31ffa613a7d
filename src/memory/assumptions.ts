/*
 * Every assumption of the memory model: one named value with its source. Pass a partial override to any
 * estimate function (`estimateMemory(plan, { cudaContextBytes: 800 * MiB })`) to change it.
 */

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
   * NCCL communicator buffers per process when more than one GPU takes part ("~0.5 GB per communicator",
   * okoge-kaz memory estimator).
   */
  readonly ncclBytes: number;
  /**
   * Reserved-but-unallocated memory of PyTorch's caching allocator, as a share of the memory that is allocated
   * and freed every step (activations, logits, step temporaries). Model states are allocated once and do not
   * fragment. Published pairs: +0.1–1 % in static phases (torchtune, PEFT), +12–24 % of the total in training
   * steps dominated by transient memory (fsdp_qlora benchmark: 10.24 vs 8.28 GiB, 10.22 vs 9.16 GiB).
   */
  readonly fragmentationOfTransient: number;
  /**
   * NF4 storage per quantized weight: 4 bits + double-quantized absmax constants (8/64 + 32/(64·256) bits),
   * ≈ 4.127 bits (Dettmers et al. 2023, QLoRA §2).
   */
  readonly nf4BytesPerParam: number;
  /** bitsandbytes LLM.int8 weight: 1 byte + one fp32 scale per output row (≈ 4/in bytes per weight). */
  readonly int8BytesPerParam: number;
  /** GPTQ/AWQ 4-bit with group size 128: 4 bits + fp16 scale and 4-bit zero per group (≈ 0.52 B). */
  readonly gptq4BytesPerParam: number;
  /** GPTQ 8-bit with group size 128. */
  readonly gptq8BytesPerParam: number;
  /**
   * Logits per token, in units of the vocabulary, at the loss: HF ForCausalLMLoss keeps the bf16 logits (2 B),
   * upcasts them (`logits.float()`, 4 B) and log_softmax saves its fp32 output (4 B) = 10 B × V; in backward the
   * fp32 gradient (4 B) meets the saved output. Cut-CE paper: ≈ 3 fp32 copies for Gemma 2 (24 GB at 8,192 tokens,
   * V = 256,000); torchtune chunked CE saved ≈ 2 fp32 copies.
   */
  readonly logitsBytesPerVocabToken: number;
  /** Same in fp32 training: no upcast copy (fp32 logits 4 B + saved log_softmax 4 B). */
  readonly logitsBytesPerVocabTokenFp32: number;
  /**
   * Temporaries of the optimizer step, as copies of the trainable parameters in their dtype: torch's foreach
   * AdamW materialises sqrt(exp_avg_sq) for the whole parameter group (torch/optim/adamw.py _multi_tensor_adamw).
   */
  readonly optimizerStepTempCopies: number;
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
  /** Shard size assumed when the catalog does not know the checkpoint's shards (save_pretrained's 5 GB default). */
  readonly defaultShardBytes: number;
  /**
   * accelerate 1.11 (the version LLaMA-Factory's pyproject pins) casts the whole model to fp32 after FSDP2's
   * fully_shard when mixed precision is on, frozen weights included; 1.13 casts only trainable parameters
   * (huggingface/accelerate #3848, #3985). Set false for accelerate >= 1.13.
   */
  readonly accelerateFsdp2CastsFrozenToFp32: boolean;
}

/** The defaults; each field's comment says where it comes from. */
export const DEFAULT_ASSUMPTIONS: MemoryAssumptions = {
  cudaContextBytes: 512 * MiB,
  ncclBytes: 512 * MiB,
  fragmentationOfTransient: 0.2,
  nf4BytesPerParam: 4.127 / 8,
  int8BytesPerParam: 1.0,
  gptq4BytesPerParam: 0.5 + 2.5 / 128,
  gptq8BytesPerParam: 1.0 + 2.5 / 128,
  logitsBytesPerVocabToken: 10,
  logitsBytesPerVocabTokenFp32: 8,
  optimizerStepTempCopies: 1,
  hostBytesPerProcess: 3 * 1024 * MiB,
  transformersExpertsAsLinear: true,
  defaultShardBytes: 5e9,
  accelerateFsdp2CastsFrozenToFp32: true,
};

/** Fills a partial override with the defaults. */
export function withDefaults(overrides: Partial<MemoryAssumptions> = {}): MemoryAssumptions {
  return { ...DEFAULT_ASSUMPTIONS, ...overrides };
}
