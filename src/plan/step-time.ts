import { DEFAULT_ASSUMPTIONS } from "../memory/assumptions.ts";
import { loadedWeightBytes } from "../memory/load.ts";
import { imagePatches, videoPatches, visualTokens } from "../memory/train.ts";
import { countParams } from "../model/params.ts";
import { countTrainable } from "../model/trainable.ts";
import { isDeepSpeed, type Plan } from "../schema/plan.ts";

/*
 * A first-order step-time model: compute at a stated utilisation of the GPU's dense throughput, plus the
 * data-parallel communication over the slowest link, plus CPU-offload traffic. Every constant is named.
 */

export interface StepTimeAssumptions {
  /**
   * Model FLOPs utilisation of a fine-tuning step with FlashAttention/SDPA in HF Trainer: 35–45 % is what
   * well-tuned dense transformer training reaches on A100/H100 (PaLM §B: 46 %; Megatron-LM reports ~40–50 %);
   * HF Trainer runs sit lower. 0.35.
   */
  readonly mfu: number;
  /** QLoRA dequantizes every weight in forward and backward; bitsandbytes 4-bit training runs ~1.5–2× slower. */
  readonly qloraSlowdown: number;
  /** PCIe 4.0 ×16 effective host↔device bandwidth, bytes/s (32 GB/s raw per direction). */
  readonly pcieBytesPerSecond: number;
  /** GPU↔GPU within a node when the catalog has no link bandwidth. */
  readonly intraNodeBytesPerSecond: number;
  /** Share of a link's peak that ring collectives reach (NCCL bus bandwidth vs peak). */
  readonly linkEfficiency: number;
  /** Between nodes: 100 Gb/s Ethernet or InfiniBand EDR (12.5 GB/s). */
  readonly interNodeBytesPerSecond: number;
  /** DeepSpeed's CPU Adam throughput, parameters per second per node (AVX2/AVX-512, tens of cores). */
  readonly cpuAdamParamsPerSecond: number;
  /** Dense bf16 TFLOPS assumed for a GPU whose catalog entry has none. */
  readonly fallbackTflops: number;
}

export const DEFAULT_STEP_TIME_ASSUMPTIONS: StepTimeAssumptions = {
  mfu: 0.35,
  qloraSlowdown: 1.6,
  pcieBytesPerSecond: 20e9,
  intraNodeBytesPerSecond: 20e9,
  linkEfficiency: 0.6,
  interNodeBytesPerSecond: 12.5e9,
  cpuAdamParamsPerSecond: 1e9,
  fallbackTflops: 100,
};

export interface StepTime {
  /** seconds per optimizer step (all micro-batches of one step) */
  readonly stepSeconds: number;
  readonly computeSeconds: number;
  readonly communicationSeconds: number;
  readonly offloadSeconds: number;
  /** training FLOPs per step on one GPU */
  readonly flopsPerGpu: number;
}

/** Estimates the time of one optimizer step. */
export function estimateStepTime(plan: Plan, overrides: Partial<StepTimeAssumptions> = {}): StepTime {
  const as = { ...DEFAULT_STEP_TIME_ASSUMPTIONS, ...overrides };
  const arch = plan.model.architecture;
  const t = arch.text;
  const params = countParams(arch);
  const trainable = countTrainable(arch, plan);
  const tokens = plan.microBatch * plan.seqLen * plan.gradAccum;
  // the language model runs per token; the vision tower per patch (below)
  const active = params.active - params.visionTower - params.projector;
  // forward 2P per token; backward 2P for input gradients + 2P for weight gradients of what trains;
  // gradient checkpointing recomputes the forward.
  const trainedShare = Math.min(1, trainable.fullModules / Math.max(1, params.total));
  const matmul =
    2 * active + 2 * active + 2 * active * trainedShare + (plan.gradientCheckpointing ? 2 * active : 0);
  // causal attention scores and values: 2·2·s·h per layer forward (half masked), ×3 with backward
  const attention =
    3 * 2 * t.numLayers * plan.seqLen * t.numHeads * t.headDim * (plan.gradientCheckpointing ? 4 / 3 : 1);
  // The vision tower: 2 FLOPs per parameter per patch forward, its merger per visual token. Frozen (the default)
  // it runs forward only, outside autograd; trained, backward adds twice the forward and checkpointing a recompute.
  // A trained merger under a frozen tower backpropagates through the merger alone.
  const samples = plan.microBatch * plan.gradAccum;
  const patches =
    imagePatches(plan).patches * plan.imagesPerSample + videoPatches(plan).patches * plan.videosPerSample;
  const trainedFactor = plan.gradientCheckpointing ? 4 : 3;
  const towerFactor = plan.freezeVisionTower ? 1 : trainedFactor;
  const mergerFactor = plan.freezeVisionTower && plan.freezeProjector ? 1 : trainedFactor;
  const vision =
    samples *
    (2 * params.visionTower * patches * towerFactor +
      2 * params.projector * visualTokens(plan) * mergerFactor);
  const flopsPerGpu = tokens * (matmul + attention) + vision;
  const tflops =
    (plan.precision === "fp32" ? (plan.gpu.denseBf16Tflops ?? as.fallbackTflops) / 2 : null) ?? // TF32
    plan.gpu.denseBf16Tflops ??
    plan.gpu.denseFp16Tflops ??
    as.fallbackTflops;
  let computeSeconds = flopsPerGpu / (tflops * 1e12 * as.mfu);
  if (plan.method === "qlora") computeSeconds *= as.qloraSlowdown;

  // communication per step, ring collectives: 2(N-1)/N of the bytes for all-reduce, (N-1)/N per gather/scatter.
  // Within a node the GPUs' link (NVLink, else PCIe at 60 % efficiency); between nodes the network.
  const world = plan.gpus * plan.nodes;
  const intraBw = plan.gpu.linkGBps
    ? plan.gpu.linkGBps * 1e9 * as.linkEfficiency
    : as.intraNodeBytesPerSecond;
  const worldBw = plan.nodes > 1 ? Math.min(intraBw, as.interNodeBytesPerSecond) : intraBw;
  const ring = (n: number) => (n > 1 ? (n - 1) / n : 0);
  const a = plan.precision === "fp32" ? 4 : 2;
  // DDP and FSDP reduce gradients once per step, unless each micro-batch reduces its own: with sync_each_batch (the
  // Trainer then skips accelerate's no_sync), and always under FSDP2 (accelerate finds no `no_sync` on it).
  // DeepSpeed is left as it was: the Trainer never enters no_sync for it, and its engine keeps its own boundary.
  const reductions =
    (plan.syncEachBatch && !isDeepSpeed(plan.sharding)) || plan.sharding === "fsdp2" ? plan.gradAccum : 1;
  const gradBytes = trainable.trainable * a * reductions;
  const weightBytes = loadedWeightBytes(plan, params, DEFAULT_ASSUMPTIONS); // as stored (quantized for QLoRA)
  const fullShard =
    plan.sharding === "zero3" ||
    plan.sharding === "fsdp2" ||
    (plan.sharding === "fsdp" && (plan.fsdpStrategy === "full_shard" || plan.fsdpStrategy === null));
  let communicationSeconds: number;
  if (plan.sharding === "fsdp" && plan.fsdpStrategy === "hybrid_shard") {
    // shard within a node (parameter gathers over the node's links), replicate across nodes (gradient all-reduce
    // of each rank's 1/gpus share over the network)
    communicationSeconds =
      (ring(plan.gpus) * gradBytes + 2 * ring(plan.gpus) * weightBytes * plan.gradAccum) / intraBw +
      (2 * ring(plan.nodes) * gradBytes) / plan.gpus / as.interNodeBytesPerSecond;
  } else if (fullShard) {
    // parameters are gathered in forward and again in backward, for every micro-batch
    communicationSeconds =
      (ring(world) * gradBytes + 2 * ring(world) * weightBytes * plan.gradAccum) / worldBw;
  } else {
    communicationSeconds = (2 * ring(world) * gradBytes) / worldBw; // DDP all-reduce = ZeRO-1/2 scatter + gather
  }

  let offloadSeconds = 0;
  if (plan.offload !== "none") {
    // gradients down and updated parameters up over PCIe, and the CPU optimizer step
    offloadSeconds +=
      (2 * trainable.trainable * a) / as.pcieBytesPerSecond +
      trainable.trainable / plan.gpus / as.cpuAdamParamsPerSecond;
  }
  if (plan.offload === "params")
    offloadSeconds += (2 * weightBytes * plan.gradAccum) / world / as.pcieBytesPerSecond;
  return {
    stepSeconds: computeSeconds + communicationSeconds + offloadSeconds,
    computeSeconds,
    communicationSeconds,
    offloadSeconds,
    flopsPerGpu,
  };
}
