import type { Issue } from "../errors.ts";
import type { MemoryEstimate } from "../memory/estimate.ts";
import { loadsFullReplica } from "../memory/load.ts";
import type { Plan } from "../schema/plan.ts";

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

/** What the memory estimate means for the run: the issues that would stop it, with numbers and the fix. */
export function memoryIssues(plan: Plan, memory: MemoryEstimate): Issue[] {
  const issues: Issue[] = [];
  const cap = memory.train.capacityBytes;
  const load = memory.load;
  if (!load.fits) {
    const where = load.oomAtShard
      ? ` while loading shard ${load.oomAtShard.index} of ${load.oomAtShard.of}`
      : ` after ${((load.oomAtFraction ?? 0) * 100).toFixed(0)} % of the weights`;
    if (load.oomWhileWrapping) {
      issues.push({
        code: "LOAD_FSDP_WRAP_OOM",
        severity: "error",
        path: "sharding",
        message:
          `FSDP wraps the model unit by unit on the GPU, and its last unit (embeddings, final norm, lm_head) is moved, ` +
          `broadcast and flattened on top of the other shards (${gib(load.weightsBytes)}): ${gib(load.perGpuPeakBytes)} ` +
          `at the peak, more than the ${gib(cap)} usable (${gib(plan.gpu.capacityBytes)} less ${(plan.headroom * 100).toFixed(0)} % headroom)`,
        hint: "Use --offload params (each shard goes to the CPU once made), more GPUs, or --sharding zero3 (zero.Init partitions each module as it is built).",
      });
    } else if (loadsFullReplica(plan)) {
      issues.push({
        code: "LOAD_REPLICA_OOM",
        severity: "error",
        path: "sharding",
        message:
          `with sharding ${plan.sharding} every rank loads a full replica of the weights (${gib(load.weightsBytes)}) onto ` +
          `its own ${gib(plan.gpu.capacityBytes)} card: loading runs out of memory${where}`,
        hint:
          plan.method === "qlora"
            ? "Use --sharding fsdp (RAM-efficient loading: each rank holds 1/N), or more GPUs."
            : "Use --sharding zero3 or fsdp so each rank loads 1/N of the weights, and/or --method qlora.",
      });
    } else {
      issues.push({
        code: "LOAD_SHARD_OOM",
        severity: "error",
        path: "gpus",
        message: `each GPU's share of the weights (${gib(load.weightsBytes)}) does not fit on ${gib(plan.gpu.capacityBytes)}${where}`,
        hint: "Use more GPUs (--gpus/--nodes), --offload params, or --method qlora.",
      });
    }
  }
  if (!memory.train.fits) {
    const b = memory.train.perGpu.breakdown;
    const dynamic = b.activations + b.logits;
    const states = b.weights + b.gradients + b.optimizer;
    const hint =
      dynamic > states / 2
        ? "Lower --micro-batch or --seq-len, turn on --gradient-checkpointing or --liger, or shard (--sharding zero3)."
        : plan.sharding === "none"
          ? "Shard the model states (--sharding zero3 or fsdp), use --method lora/qlora, or an 8-bit optimizer."
          : plan.method === "qlora"
            ? "Use more GPUs (--gpus/--nodes) or --offload params."
            : "Use more GPUs, --offload optimizer/params, or --method qlora.";
    issues.push({
      code: "TRAIN_OOM",
      severity: "error",
      path: "microBatch",
      message:
        `the training step needs ${gib(memory.train.perGpu.deviceBytes)} per GPU (weights ${gib(b.weights)}, gradients ` +
        `${gib(b.gradients)}, optimizer ${gib(b.optimizer)}, activations ${gib(b.activations)}, logits ${gib(b.logits)}, ` +
        `buffers ${gib(b.buffers)}, allocator reserve ${gib(b.fragmentation)}, runtime ${gib(b.runtime)}) ` +
        `but ${gib(cap)} is usable (${gib(plan.gpu.capacityBytes)} less ${(plan.headroom * 100).toFixed(0)} % headroom)`,
      hint,
    });
  }
  const host = memory.hostRam.perNodeBytes;
  if (plan.hostRamBytes !== null && host > plan.hostRamBytes) {
    issues.push({
      code: "HOST_RAM_OOM",
      severity: "error",
      path: "hostRam",
      message: `each node needs about ${gib(host)} of host memory (processes, loading${plan.offload !== "none" ? ", CPU offload" : ""}) but has ${gib(plan.hostRamBytes)}`,
      hint:
        plan.offload !== "none"
          ? "Offload less (--offload optimizer or none), or use more nodes."
          : "Use a node with more RAM.",
    });
  } else if (plan.hostRamBytes === null && plan.offload !== "none") {
    issues.push({
      code: "HOST_RAM_UNCHECKED",
      severity: "warning",
      path: "hostRam",
      message: `CPU offload needs about ${gib(host)} of host memory per node; the node's RAM was not given`,
      hint: "Pass --host-ram GIB to check it.",
    });
  }
  return issues;
}
