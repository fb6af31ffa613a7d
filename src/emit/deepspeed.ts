import { type MemoryAssumptions, withDefaults } from "../memory/assumptions.ts";
import type { Plan } from "../schema/plan.ts";
import { usesDeepSpeed } from "./common.ts";

/*
 * deepspeed.json, equal in shape and values to LLaMA-Factory's examples/deepspeed files (ds_z2_config.json,
 * ds_z2_offload_config.json, ds_z3_config.json, ds_z3_offload_config.json at ff6d4d12ee), except that integral
 * sizes are written as JSON integers (500000000, not 5e8): DeepSpeed's int fields take both, and integers read
 * the same in every JSON reader. ZeRO-1 has no LLaMA-Factory file; it takes the ZeRO-2 key set with stage 1.
 * "auto" values are filled by transformers from train.yaml (HfTrainerDeepSpeedConfig), so they always agree.
 */

/** The top-level block every LLaMA-Factory DeepSpeed example shares. */
function commonBlock(): Record<string, unknown> {
  return {
    train_batch_size: "auto",
    train_micro_batch_size_per_gpu: "auto",
    gradient_accumulation_steps: "auto",
    gradient_clipping: "auto",
    zero_allow_untested_optimizer: true,
    fp16: {
      enabled: "auto",
      loss_scale: 0,
      loss_scale_window: 1000,
      initial_scale_power: 16,
      hysteresis: 2,
      min_loss_scale: 1,
    },
    bf16: { enabled: "auto" },
  };
}

const CPU_OFFLOAD = { device: "cpu", pin_memory: true } as const;

/**
 * The DeepSpeed config of a ZeRO plan, or null when the plan does not use DeepSpeed. The values the memory model
 * depends on come from its assumptions (LLaMA-Factory's own by default): `stage3_max_reuse_distance`
 * (`zero3MaxReuseDistance`), `stage3_max_live_parameters` (`zero3MaxLiveParameters`), ZeRO-1/2's `reduce_bucket_size` (`zero12ReduceBucketElements`, 0 for "auto"),
 * ZeRO-3's `reduce_bucket_size` and `stage3_prefetch_bucket_size` (`zero3ReduceBucketElements`,
 * `zero3PrefetchBucketElements`, 0 for "auto") and
 * `overlap_comm` (`zeroOverlapComm`), so an override of an assumption is what the run gets too.
 */
export function deepspeedConfig(
  plan: Plan,
  assumptions: Partial<MemoryAssumptions> = {},
): Record<string, unknown> | null {
  if (!usesDeepSpeed(plan)) return null;
  const stage = plan.sharding === "zero1" ? 1 : plan.sharding === "zero2" ? 2 : 3;
  const as = withDefaults(assumptions);
  const offload: Record<string, unknown> = {};
  if (plan.offload !== "none") offload.offload_optimizer = { ...CPU_OFFLOAD };
  if (plan.offload === "params") offload.offload_param = { ...CPU_OFFLOAD };
  const zero =
    stage === 3
      ? {
          stage,
          ...offload,
          overlap_comm: as.zeroOverlapComm,
          contiguous_gradients: true,
          sub_group_size: 1000000000,
          reduce_bucket_size:
            as.zero3ReduceBucketElements > 0 ? Math.round(as.zero3ReduceBucketElements) : "auto",
          stage3_prefetch_bucket_size:
            as.zero3PrefetchBucketElements > 0 ? Math.round(as.zero3PrefetchBucketElements) : "auto",
          stage3_param_persistence_threshold: "auto",
          stage3_max_live_parameters: Math.round(as.zero3MaxLiveParameters),
          stage3_max_reuse_distance: Math.round(as.zero3MaxReuseDistance),
          stage3_gather_16bit_weights_on_model_save: true,
        }
      : {
          stage,
          ...offload,
          allgather_partitions: true,
          allgather_bucket_size: 500000000,
          overlap_comm: as.zeroOverlapComm,
          reduce_scatter: true,
          reduce_bucket_size:
            as.zero12ReduceBucketElements > 0 ? Math.round(as.zero12ReduceBucketElements) : "auto",
          contiguous_gradients: true,
          round_robin_gradients: true,
        };
  return { ...commonBlock(), zero_optimization: zero };
}
