import { countParams } from "../model/params.ts";
import { countTrainable, type TrainableBreakdown } from "../model/trainable.ts";
import type { Plan } from "../schema/plan.ts";
import { type MemoryAssumptions, withDefaults } from "./assumptions.ts";
import {
  estimateHostMemory,
  estimateInferenceMemory,
  estimateLoadMemory,
  type HostMemory,
  type InferenceMemory,
  type LoadMemory,
} from "./load.ts";
import { estimateTrainMemory, type TrainMemory, usableCapacityBytes } from "./train.ts";

export { usableCapacityBytes };

/** The contract's `memory` object: training peak, loading, inference and host RAM. */
export interface MemoryEstimate {
  readonly train: {
    readonly perGpu: Pick<TrainMemory, "allocatedBytes" | "reservedBytes" | "deviceBytes" | "breakdown">;
    /**
     * Of `perGpu.fragmentation`, cache the allocator keeps but frees before it runs out (FSDP1's wrap level, ZeRO-3's
     * all-gather stream pool, DeepSpeed's step segments; 0 for other plans): a reserved reading shows it when the
     * card has room; it is counted only up to `capacityBytes`.
     */
    readonly releasableBytes: number;
    /** what `releasableBytes` is made of */
    readonly releasableSources: TrainMemory["releasableSources"];
    /**
     * bitsandbytes' paged optimizers: the optimizer states this GPU keeps in CUDA managed memory, outside PyTorch's
     * allocator (not in `breakdown.optimizer`); the part the card has room for is counted in `breakdown.runtime`.
     */
    readonly pagedOptimizerBytes: number;
    /**
     * Of `pagedOptimizerBytes`, what does not fit beside the peak: it pages through host memory every step. A
     * checkpoint save migrates the saving ranks' paged states to host memory whole (`hostRam` counts both).
     */
    readonly pagedToHostBytes: number;
    /** what the plan may use after headroom */
    readonly capacityBytes: number;
    readonly fits: boolean;
    readonly phase: TrainMemory["phase"];
  };
  readonly load: LoadMemory;
  readonly inference: Pick<InferenceMemory, "perGpuBytes" | "cpuBytes">;
  readonly hostRam: HostMemory;
}

/**
 * Predicts the memory of a resolved plan. Every assumption can be overridden.
 * @example estimateMemory(plan, { cudaContextBytes: 1024 ** 3 }).train.perGpu.deviceBytes
 */
export function estimateMemory(
  plan: Plan,
  overrides: Partial<MemoryAssumptions> = {},
  /** the plan's trainable parameters, when the caller has counted them already */
  counted?: TrainableBreakdown,
): MemoryEstimate {
  const as = withDefaults(overrides);
  const params = countParams(plan.model.architecture);
  const trainable =
    counted ??
    countTrainable(plan.model.architecture, { ...plan, expertsAsLinear: as.transformersExpertsAsLinear });
  const train = estimateTrainMemory(plan, as, { params, trainable });
  const capacityBytes = usableCapacityBytes(plan);
  const inference = estimateInferenceMemory(plan, plan.gpu.capacityBytes, as, params);
  return {
    train: {
      perGpu: {
        allocatedBytes: train.allocatedBytes,
        reservedBytes: train.reservedBytes,
        deviceBytes: train.deviceBytes,
        breakdown: train.breakdown,
      },
      releasableBytes: train.releasableBytes,
      releasableSources: train.releasableSources,
      pagedOptimizerBytes: train.pagedOptimizerBytes,
      pagedToHostBytes: train.pagedOptimizerBytes - train.pagedResidentBytes,
      capacityBytes,
      fits: train.deviceBytes <= capacityBytes,
      phase: train.phase,
    },
    load: estimateLoadMemory(plan, capacityBytes, as, params, train.wrapPeakBytes),
    inference: { perGpuBytes: inference.perGpuBytes, cpuBytes: inference.cpuBytes },
    hostRam: estimateHostMemory(
      plan,
      as,
      params,
      trainable.trainable,
      train.fsdpUnits,
      // where the step does not fit, no page is resident and the plan does not run: its spill is not counted
      {
        bytes: train.pagedOptimizerBytes,
        toHostBytes:
          train.deviceBytes <= capacityBytes ? train.pagedOptimizerBytes - train.pagedResidentBytes : 0,
      },
    ),
  };
}
