import { linearModules } from "../model/modules.ts";
import { countParams, type ParamBreakdown, visionDepth } from "../model/params.ts";
import { isDeepSpeed, isFsdp, type Plan } from "../schema/plan.ts";
import { type MemoryAssumptions, withDefaults } from "./assumptions.ts";

/*
 * Loading, inference and host memory.
 *
 * Loading: LLaMA-Factory passes device_map={"": cuda:LOCAL_RANK} unless ZeRO-3 or FSDP with RAM-efficient
 * loading is on (model/patcher.py:429-434), so with plain DDP (and ZeRO-1/2) every rank materialises a full
 * replica on its own GPU, shard after shard, all ranks in lockstep. bitsandbytes quantizes while loading, and
 * skips partitioned loading under ZeRO-3: each rank then holds the whole quantized model.
 *
 * Inference: LLaMA-Factory's chat uses device_map="auto" (hparams/parser.py get_infer_args): accelerate's
 * get_balanced_memory gives each GPU but the last model/n + 1.25 × the largest no-split block, the first GPU
 * keeps room for the largest layer, and infer_auto_device_map fills the GPUs in module order; what fits on no GPU
 * goes to the CPU (get_max_memory lists the host's memory after the GPUs).
 */

export interface LoadMemory {
  /** peak on one GPU while the weights are loaded, runtime included */
  readonly perGpuPeakBytes: number;
  /** bytes of weights each rank loads onto its GPU (with parameter offload: what passes through it at once) */
  readonly weightsBytes: number;
  readonly fits: boolean;
  /** share of the weights loaded when memory runs out (absent when it fits) */
  readonly oomAtFraction?: number;
  /** the checkpoint shard (1-based) being loaded when memory runs out, when the shard count is known */
  readonly oomAtShard?: { readonly index: number; readonly of: number };
  /** FSDP1 runs out while it wraps its last unit (embeddings, final norm, lm_head) on top of the other shards */
  readonly oomWhileWrapping?: true;
}

export interface InferenceMemory {
  /** the fullest GPU's share of the weights plus its runtime memory */
  readonly perGpuBytes: number;
  /** weights placed on each GPU, in order */
  readonly perGpuWeightsBytes: readonly number[];
  /** weights that fit on no GPU: accelerate places them on the CPU (0 when the GPUs hold the model) */
  readonly cpuBytes: number;
}

export interface HostMemory {
  readonly perNodeBytes: number;
}

function bytesPerWeight(plan: Plan): number {
  return plan.precision === "fp32" ? 4 : 2;
}

/** The ranks a sharded unit is split over: the node's GPUs under hybrid sharding, else every GPU. */
export function shardGroupOf(plan: Plan): number {
  return plan.fsdpStrategy === "hybrid_shard" ? plan.gpus : plan.gpus * plan.nodes;
}

/** The vision tower's blocks (Qwen2-VL's `depth`, the others' layers); 0 without a vision tower. */
function visionBlocks(plan: Plan): number {
  const v = plan.model.architecture.vision;
  // mllama's global layers are not counted here: loading splits by the local ones
  return v ? (v.kind === "mllama" ? v.numLayers : visionDepth(v)) : 0;
}

/** Bytes per parameter of a quantized linear weight for QLoRA plans; null for every other method. */
export function quantizedBytesPerParam(plan: Plan, as: MemoryAssumptions): number | null {
  if (plan.method !== "qlora") return null;
  if (plan.quantMethod === "bnb") return plan.quantBits === 8 ? as.int8BytesPerParam : as.nf4BytesPerParam;
  return plan.quantBits === 8 ? as.gptq8BytesPerParam : as.gptq4BytesPerParam;
}

/** Parameters of the quantized linears of a QLoRA plan (0 for other methods). */
export function quantizedParams(plan: Plan, as: MemoryAssumptions): number {
  if (plan.method !== "qlora") return 0;
  const groups = linearModules(plan.model.architecture, { expertsAsLinear: as.transformersExpertsAsLinear });
  // bitsandbytes quantizes every nn.Linear on load except lm_head (vision tower included); GPTQ/AWQ checkpoints
  // quantize the language model's blocks only (the calibration runs on them).
  const quantized = (g: (typeof groups)[number]) =>
    plan.quantMethod === "bnb" ? g.region !== "projector" : g.region === "text";
  return groups.filter(quantized).reduce((n, g) => n + g.count * g.inFeatures * g.outFeatures, 0);
}

/**
 * Bytes per quantized weight that bitsandbytes keeps outside the parameter: NF4's block constants (the
 * double-quantized absmax, `nf4BytesPerParam` less the packed 4 bits) live in a QuantState on the module, which FSDP
 * and ZeRO-3 neither shard nor offload (bitsandbytes `fix_4bit_weight_quant_state_from_module`: "the quant state got
 * lost when the parameter got converted. This happens for example for fsdp"). 0 for other plans.
 */
export function unshardedQuantBytesPerParam(plan: Plan, as: MemoryAssumptions): number {
  if (plan.method !== "qlora" || plan.quantMethod !== "bnb" || plan.quantBits !== 4) return 0;
  return Math.max(0, as.nf4BytesPerParam - 0.5);
}

/** Bytes of those block constants over the whole model: what every rank keeps whole (0 for other plans). */
export function quantConstantBytes(plan: Plan, as: MemoryAssumptions): number {
  return quantizedParams(plan, as) * unshardedQuantBytesPerParam(plan, as);
}

/** Bytes of the weights as loaded (compute dtype, or quantized for QLoRA). */
export function loadedWeightBytes(plan: Plan, params: ParamBreakdown, as: MemoryAssumptions): number {
  const a = bytesPerWeight(plan);
  if (plan.method !== "qlora") return params.total * a;
  const linear = quantizedParams(plan, as);
  return linear * (quantizedBytesPerParam(plan, as) ?? a) + (params.total - linear) * a;
}

/**
 * The module with the most parameters of its own, and its bytes as loaded: the embedding, lm_head or the largest
 * linear (quantized under QLoRA). ZeRO-3 gathers parameters module by module (transformers' ZeRO-3 loader gathers
 * one module's own parameters at a time; DeepSpeed's estimator calls it the largest layer).
 */
export function largestModule(
  plan: Plan,
  params: ParamBreakdown,
  as: MemoryAssumptions,
): { readonly params: number; readonly bytes: number } {
  const a = bytesPerWeight(plan);
  const groups = linearModules(plan.model.architecture, { expertsAsLinear: as.transformersExpertsAsLinear });
  const linear = Math.max(...groups.map((g) => g.inFeatures * g.outFeatures));
  const largest = Math.max(linear, params.embedTokens, params.lmHead);
  const quantized = quantizedBytesPerParam(plan, as);
  return { params: largest, bytes: largest * (largest === linear && quantized !== null ? quantized : a) };
}

/** Whether each rank loads a full replica (true) or only its partition. */
export function loadsFullReplica(plan: Plan): boolean {
  if (plan.sharding === "none" || plan.sharding === "zero1" || plan.sharding === "zero2") return true;
  if (plan.sharding === "fsdp" && plan.fsdpStrategy === "no_shard") return true;
  // bitsandbytes skips ZeRO-3's partitioned loading, and accelerate's FSDP2 skips RAM-efficient loading for
  // bitsandbytes models: every rank first holds the whole quantized model
  return (
    plan.method === "qlora" &&
    plan.quantMethod === "bnb" &&
    (plan.sharding === "zero3" || plan.sharding === "fsdp2")
  );
}

/**
 * Peak memory of one GPU while the model loads. `fits` compares with the usable capacity (after headroom);
 * where memory runs out is computed against the card itself. No collective has run yet, so NCCL holds nothing.
 * `wrapPeakBytes` is FSDP1's wrap (train.ts): the shards plus the last unit moved, broadcast and flattened, which
 * comes after the checkpoint is read (on the CPU with RAM-efficient loading).
 */
export function estimateLoadMemory(
  plan: Plan,
  usableBytes: number,
  overrides: Partial<MemoryAssumptions> = {},
  params: ParamBreakdown = countParams(plan.model.architecture),
  wrapPeakBytes = 0,
): LoadMemory {
  const as = withDefaults(overrides);
  const runtime = as.cudaContextBytes;
  const total = loadedWeightBytes(plan, params, as);
  const shardGroup = shardGroupOf(plan);
  const replica = loadsFullReplica(plan);
  // Parameter offload keeps each rank's partition in host memory from the start: zero.Init stores its partitions on
  // offload_param's device (partition_parameters.py Init: remote_device), so the GPU holds the one module being
  // loaded, gathered; FSDP1 moves each shard to the CPU once made (_init_utils.py `flat_param_to(cpu)`), so only
  // the wrap's transient remains (wrapPeakBytes). FSDP2 is left at its shards: not read.
  const offloaded = plan.offload === "params" && !replica;
  // bitsandbytes' block constants are not parameters: every rank keeps them whole
  const constants = quantConstantBytes(plan, as);
  const weightsBytes = Math.round(
    offloaded && plan.sharding === "zero3"
      ? largestModule(plan, params, as).bytes
      : offloaded && plan.sharding === "fsdp"
        ? constants
        : replica
          ? total
          : (total - constants) / shardGroup + constants,
  );
  const wrapping = wrapPeakBytes > weightsBytes;
  const perGpuPeakBytes = (wrapping ? wrapPeakBytes : weightsBytes) + runtime;
  if (perGpuPeakBytes <= usableBytes) return { perGpuPeakBytes, weightsBytes, fits: true };
  const room = Math.max(0, plan.gpu.capacityBytes - runtime);
  // the shards fit; wrapping the last unit, with every other shard in place and the whole checkpoint read, does not
  if (wrapping && weightsBytes <= room)
    return { perGpuPeakBytes, weightsBytes, fits: false, oomAtFraction: 1, oomWhileWrapping: true };
  const oomAtFraction = Math.min(1, Math.round((room / weightsBytes) * 1e4) / 1e4);
  const shards = plan.model.shards;
  return {
    perGpuPeakBytes,
    weightsBytes,
    fits: false,
    oomAtFraction,
    ...(shards
      ? {
          oomAtShard: { index: Math.min(shards, Math.floor((room / weightsBytes) * shards) + 1), of: shards },
        }
      : {}),
  };
}

interface Block {
  readonly bytes: number;
  readonly noSplit: boolean;
}

/** The model's top-level modules in the order transformers registers them, as accelerate sees them. */
function blocks(plan: Plan, params: ParamBreakdown, as: MemoryAssumptions): Block[] {
  const a = bytesPerWeight(plan);
  const t = plan.model.architecture.text;
  // a pre-quantized (GPTQ/AWQ) checkpoint is served as stored: its decoder layers' linears in 4 or 8 bits
  const stored =
    plan.method === "qlora" && plan.quantMethod !== "bnb" ? quantizedBytesPerParam(plan, as) : null;
  const layerBytes = stored ?? a;
  const out: Block[] = [];
  if (params.visionTower + params.projector > 0) {
    // the vision tower splits into its blocks; approximate them as equal no-split units
    const depth = Math.max(1, visionBlocks(plan));
    for (let i = 0; i < depth; i++)
      out.push({ bytes: ((params.visionTower + params.projector) * a) / depth, noSplit: true });
  }
  out.push({ bytes: params.embedTokens * a, noSplit: false });
  const layer =
    ((params.text - params.embedTokens - params.lmHead - params.finalNorm) * layerBytes) / t.numLayers;
  for (let i = 0; i < t.numLayers; i++) out.push({ bytes: layer, noSplit: true });
  out.push({ bytes: params.finalNorm * a, noSplit: false });
  // a tied lm_head shares embed_tokens' storage and costs nothing more
  out.push({ bytes: params.lmHead * a, noSplit: false });
  return out;
}

/** accelerate's get_balanced_memory on one GPU without max_memory: 90 % of the free memory holds weights. */
const ONE_GPU_SHARE = 0.9;

/** The model served with device_map="auto" across the GPUs of one node (batch 1, short prompt). */
export function estimateInferenceMemory(
  plan: Plan,
  capacityBytes: number,
  overrides: Partial<MemoryAssumptions> = {},
  params: ParamBreakdown = countParams(plan.model.architecture),
): InferenceMemory {
  const as = withDefaults(overrides);
  const n = plan.gpus;
  const runtime = as.cudaContextBytes;
  const list = blocks(plan, params, as);
  const total = list.reduce((s, b) => s + b.bytes, 0);
  const largestNoSplit = Math.max(...list.filter((b) => b.noSplit).map((b) => b.bytes));
  const free = capacityBytes - runtime; // get_max_memory: what mem_get_info reports free
  const perGpu = total / n + 1.25 * largestNoSplit;
  // one GPU: get_balanced_memory keeps 10 % back when no max_memory is given ("90% is a good compromise");
  // several: every GPU but the last is capped at perGpu
  const budgets = Array.from({ length: n }, (_, i) =>
    n === 1 ? ONE_GPU_SHARE * free : i === n - 1 ? free : Math.min(perGpu, free),
  );
  // the main device keeps room for the largest layer, one GPU or several (infer_auto_device_map main_devices)
  if (budgets.length > 0) budgets[0] = (budgets[0] ?? 0) - largestNoSplit;
  // infer_auto_device_map walks the devices in order, GPUs then "cpu": a block that does not fit moves on for good
  const placed = Array.from({ length: n }, () => 0);
  let cpu = 0;
  let device = 0;
  for (const b of list) {
    while (device < n && (placed[device] ?? 0) + b.bytes > (budgets[device] ?? 0)) device++;
    if (device < n) placed[device] = (placed[device] ?? 0) + b.bytes;
    else cpu += b.bytes;
  }
  const rounded = placed.map((x) => Math.round(x));
  return {
    perGpuBytes: rounded.reduce((m, x) => Math.max(m, x), 0) + runtime,
    perGpuWeightsBytes: rounded,
    cpuBytes: Math.round(cpu),
  };
}

/** Rounds a pinned host allocation as torch's CachingHostAllocator does: up to the next power of two. */
export function pinnedBytes(bytes: number): number {
  return bytes <= 0 ? 0 : 2 ** Math.ceil(Math.log2(bytes));
}

/** FSDP1's units as stored, unsharded (TrainMemory.fsdpUnits). */
export interface FsdpUnits {
  readonly layerBytes: number;
  readonly layers: number;
  readonly rootBytes: number;
}

/**
 * Host memory of one rank under FSDP1 parameter offload. Each unit's shard is pinned, and beside it a pinned
 * gradient buffer of the same size, frozen units included (flat_param.py init_flat_param_attributes: `_local_shard
 * .pin_memory()`, `_cpu_grad = zeros_like(...).pin_memory()`). torch's CachingHostAllocator rounds each pinned
 * allocation up to a power of two. The optimizer steps on the CPU: AdamW's two fp32 states per trainable parameter
 * of the shard. A vision tower's blocks are units of their own.
 */
function fsdpOffloadRankBytes(
  plan: Plan,
  units: FsdpUnits,
  params: ParamBreakdown,
  trainableParams: number,
  shardGroup: number,
): number {
  const pinnedPair = (unitBytes: number) => 2 * pinnedBytes(unitBytes / shardGroup);
  const blocks = visionBlocks(plan);
  const visionBytes = (params.visionTower + params.projector) * bytesPerWeight(plan);
  return (
    units.layers * pinnedPair(units.layerBytes) +
    pinnedPair(units.rootBytes) +
    (blocks > 0 ? blocks * pinnedPair(visionBytes / blocks) : 0) +
    (trainableParams * 8) / shardGroup
  );
}

/** Host memory per node: the training processes, what loading stages on the CPU, and CPU offload. */
export function estimateHostMemory(
  plan: Plan,
  overrides: Partial<MemoryAssumptions> = {},
  params: ParamBreakdown = countParams(plan.model.architecture),
  trainableParams = 0,
  /** FSDP1's units (TrainMemory.fsdpUnits); with parameter offload they size the pinned host copies */
  fsdpUnits: FsdpUnits | null = null,
  /**
   * per GPU, a paged optimizer's states (TrainMemory.pagedOptimizerBytes) and the part of them that does not fit
   * on it (− pagedResidentBytes)
   */
  paged: { readonly bytes: number; readonly toHostBytes: number } = { bytes: 0, toHostBytes: 0 },
): HostMemory {
  const as = withDefaults(overrides);
  const total = loadedWeightBytes(plan, params, as);
  const shardBytes = plan.model.shards ? total / plan.model.shards : Math.min(total, as.defaultShardBytes);
  let loading: number;
  if (plan.sharding === "zero3" && !loadsFullReplica(plan)) {
    loading = plan.gpus * shardBytes; // zero.Init: each rank reads the checkpoint shard by shard
  } else if (isFsdp(plan.sharding)) {
    loading = total; // cpu_ram_efficient_loading: rank 0 holds the full state dict, the others meta tensors
  } else {
    loading = plan.gpus * shardBytes; // each rank maps one safetensors shard at a time
  }
  // ZeRO/FSDP offload: each node keeps its share of the fp32 master weights, Adam states and the fp32 gradients
  // the CPU optimizer steps on (16 B per trainable parameter; DeepSpeed's estimator multiplies its CPU figure by
  // an additional_buffer_factor of 1.5 on top), and with parameter offload also its share of the weights. Under
  // DeepSpeed that optimizer is always Adam: accelerate swaps any other for DeepSpeedCPUAdam
  // (OFFLOAD_REPLACES_OPTIMIZER warns).
  const processes = plan.gpus * as.hostBytesPerProcess;
  // Managed pages evicted from a GPU live in host memory (cudaMallocManaged backs a page on one side at a time). A
  // checkpoint save reads the paged states through the CPU (torch.save of the optimizer's state dict, whose paged
  // tensors are CPU views of managed memory), which migrates them all to host memory: on rank 0 (the Trainer saves a
  // replicated optimizer once), on every rank under DeepSpeed and FSDP (their shards)
  const savers = isDeepSpeed(plan.sharding) || isFsdp(plan.sharding) ? plan.gpus : 1;
  const pagedAtSave = savers * paged.bytes + (plan.gpus - savers) * paged.toHostBytes;
  const saving = saveGatherBytes(plan, params, total, as) + pagedAtSave;
  if (plan.sharding === "fsdp" && plan.offload === "params" && fsdpUnits !== null) {
    // each unit is moved to the GPU to be wrapped (freeing its CPU weights) before its shard comes back pinned:
    // the checkpoint on the CPU and the pinned shards peak one after the other, not together
    const shardGroup = shardGroupOf(plan);
    const pinned = plan.gpus * fsdpOffloadRankBytes(plan, fsdpUnits, params, trainableParams, shardGroup);
    return { perNodeBytes: Math.round(processes + Math.max(loading, pinned + saving)) };
  }
  let offload = 0;
  if (plan.offload !== "none") offload += (trainableParams * 16) / plan.nodes;
  if (plan.offload === "params") offload += total / plan.nodes;
  return { perNodeBytes: Math.round(processes + offload + Math.max(loading, saving)) };
}

/**
 * The full state dict rank 0 gathers into host memory when the model is saved, beside what offload still holds
 * there: ZeRO-3 with stage3_gather_16bit_weights_on_model_save (LLaMA-Factory's ds_z3 configs and tunefit's) builds
 * a consolidated 16-bit state dict on rank 0's CPU (DeepSpeed engine.py _zero3_consolidated_16bit_state_dict), and
 * FSDP with FULL_STATE_DICT gathers every parameter to rank 0's CPU (offload_to_cpu, rank0_only; accelerate
 * save_fsdp_model), a LoRA run too, since the adapter is filtered out of the full dict afterwards. FSDP holds
 * trained parameters as LLaMA-Factory upcast them (fp32 under mixed precision). 0 for other strategies.
 */
function saveGatherBytes(plan: Plan, params: ParamBreakdown, total: number, as: MemoryAssumptions): number {
  if (plan.sharding === "zero3") return total;
  if (!isFsdp(plan.sharding) || (plan.sharding === "fsdp" && plan.fsdpStrategy === "no_shard")) return 0;
  const mixed = plan.precision === "bf16" || plan.precision === "fp16";
  // accelerate 1.11's FSDP2 casts the whole model to fp32 (accelerateFsdp2CastsFrozenToFp32)
  const wholeFp32 = plan.sharding === "fsdp2" && mixed && as.accelerateFsdp2CastsFrozenToFp32;
  const upcast = plan.method === "full" && mixed;
  return wholeFp32 || upcast ? params.total * 4 : total;
}
