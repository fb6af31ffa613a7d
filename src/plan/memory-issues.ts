import type { Issue } from "../errors.ts";
import { DEFAULT_ASSUMPTIONS, type MemoryAssumptions } from "../memory/assumptions.ts";
import type { MemoryEstimate } from "../memory/estimate.ts";
import { loadsFullReplica } from "../memory/load.ts";
import { estimateTrainMemory, fsdpAccumulatesUnsharded, isPagedOptimizer } from "../memory/train.ts";
import { LIGER_UNSUPPORTED } from "../model/support.ts";
import {
  anyMethodOptimizer,
  deepspeedCpuAdam,
  optimSteps,
  type Plan,
  plainAdamW,
  projectsGradients,
} from "../schema/plan.ts";

/** GiB to one decimal; under 0.05 GiB (which would read 0.0) in MiB */
const gib = (bytes: number) =>
  bytes > 0 && bytes < 0.05 * 1024 ** 3
    ? `${(bytes / 1024 ** 2).toFixed(1)} MiB`
    : `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

/**
 * The ways out of a training step that does not fit, those that apply to this plan only: what is already on is not
 * suggested, sharding only where there are several GPUs to shard over, and a per-token remedy (shorter sequences,
 * a smaller micro-batch, checkpointing, Liger) only where the model says it saves at least 2 % (under FSDP1 the
 * wrap's cached transient can set the peak whatever the step does). The per-token ways come first when they save
 * more than a quarter of the total.
 */
function trainOomHint(plan: Plan, memory: MemoryEstimate, assumptions: Partial<MemoryAssumptions>): string {
  const world = plan.gpus * plan.nodes;
  const now = memory.train.perGpu.deviceBytes;
  // a paged optimizer's resident pages fill whatever a change frees (they yield when the card needs the room): what
  // the change saves is measured without them
  const saving = (changed: Partial<Plan>) => {
    const t = estimateTrainMemory({ ...plan, ...changed }, assumptions);
    return now - (t.deviceBytes - t.pagedResidentBytes);
  };
  const perToken: { text: string; saves: number }[] = [];
  const add = (text: string, saves: number) => {
    if (saves >= 0.02 * now) perToken.push({ text, saves });
  };
  if (plan.microBatch > 1)
    add(
      "lower --micro-batch (raise --grad-accum to keep the global batch)",
      saving({ microBatch: Math.floor(plan.microBatch / 2) }),
    );
  add("lower --seq-len", saving({ seqLen: Math.max(1, Math.floor(plan.seqLen / 2)) }));
  if (!plan.gradientCheckpointing)
    add("turn on --gradient-checkpointing", saving({ gradientCheckpointing: true }));
  if (!plan.liger && !LIGER_UNSUPPORTED.has(plan.model.architecture.modelType))
    add("turn on --liger (no fp32 logits)", saving({ liger: true }));
  if (plan.attention !== "fa2" && plan.gpu.flashAttention2)
    add("use FlashAttention-2 (--attention fa2: no padding mask)", saving({ attention: "fa2" }));
  const states: string[] = [];
  const lowMemory = plan.lowMemoryOptimizer;
  if (projectsGradients(lowMemory) || lowMemory === "muon") {
    // LLaMA-Factory runs GaLore and APOLLO without DeepSpeed (PROJECTED_OPTIMIZER_DEEPSPEED), Muon fails under it
    // (MUON_DEEPSPEED), and under FSDP they become AdamW (PROJECTED_OPTIMIZER_FSDP, MUON_SHARDED): what is left is
    // their own settings, or another method
    if (plan.precision !== "pure_bf16" && plan.gpu.bf16)
      states.push("train in --precision pure_bf16 (16-bit weights, gradients and states)");
    if (lowMemory !== "muon" && !plan.lowMemoryLayerwise && world === 1)
      states.push(
        "step each parameter in its gradient hook (--low-memory-layerwise on, with --grad-accum 1)",
      );
    if (plan.method === "full")
      states.push(`train one layer at a time (--low-memory-optimizer badam instead of ${lowMemory})`);
    if (lowMemory !== "muon")
      states.push(`train adapters (--method lora or qlora, without --low-memory-optimizer ${lowMemory})`);
    else if (plan.method === "full" || plan.method === "freeze")
      states.push("train adapters (--method lora or qlora)");
    else if (plan.method === "lora") states.push("quantize the base (--method qlora)");
  } else {
    const badam = lowMemory === "badam";
    const fullySharded =
      plan.sharding === "zero3" || (plan.sharding === "fsdp" && plan.fsdpStrategy !== "no_shard");
    // BAdam runs distributed only under ZeRO-3 (BADAM_NEEDS_ZERO3), and not with DeepSpeed's offload (BADAM_OFFLOAD)
    // 8-bit bitsandbytes weights cannot be sharded (QLORA_8BIT_SHARDED): 4-bit ones can
    const shardWith = badam
      ? "--sharding zero3"
      : eightBitBnb(plan)
        ? "--quant-bits 4 and --sharding zero3 or fsdp"
        : "--sharding zero3 or fsdp";
    if (world > 1 && !fullySharded) states.push(`shard the model states (${shardWith})`);
    if (world > 1 && fullySharded) states.push("use more GPUs (--gpus/--nodes)");
    if (fsdpAccumulatesUnsharded(plan)) {
      const saves = saving({ syncEachBatch: true });
      if (saves >= 0.02 * now)
        states.push(
          `reduce the gradients after every micro-batch (--sync-each-batch on: FSDP1 keeps them sharded, ${gib(saves)} less)`,
        );
    }
    const offload = badam ? null : offloadHint(plan);
    if (offload !== null) states.push(offload);
    if (world === 1) states.push(`use more GPUs with ${shardWith}`);
    if (plan.method === "full" || plan.method === "freeze")
      states.push(
        `train adapters (--method lora or qlora${badam ? ", without --low-memory-optimizer badam" : ""})`,
      );
    else if (plan.method === "lora") states.push("quantize the base (--method qlora)");
    // LLaMA-Factory's BAdam trains full weights one decoder layer at a time (on one GPU, or under ZeRO-3)
    if (plan.method === "full" && lowMemory === null && (world === 1 || plan.sharding === "zero3"))
      states.push("train one layer at a time (--low-memory-optimizer badam)");
    // DeepSpeed's offloaded optimizer is always its CPU Adam (OFFLOAD_REPLACES_OPTIMIZER): no 8-bit there
    const cpuAdam = deepspeedCpuAdam(plan);
    // the default foreach AdamW makes a temporary as large as the parameters at the step; the fused one makes none
    if (!cpuAdam && plainAdamW(plan.optimizer) && optimSteps(lowMemory)) {
      const saves = saving({ optimizer: "adamw_torch_fused" });
      if (saves >= 0.02 * now)
        states.push(
          `step with the fused AdamW (--optimizer adamw_torch_fused: no temporary copy of the parameters, ${gib(saves)} less)`,
        );
    }
    if (
      plan.method === "full" &&
      !anyMethodOptimizer(lowMemory) &&
      !cpuAdam &&
      !(plan.optimizer ?? "").includes("8bit")
    ) {
      // a paged optimizer's states are outside the step's count already: only its 8-bit sibling keeps that
      states.push(
        isPagedOptimizer(plan.optimizer)
          ? "use the 8-bit paged optimizer (--optimizer paged_adamw_8bit)"
          : "use an 8-bit optimizer (--optimizer adamw_8bit)",
      );
    }
  }
  const tokenWays = perToken.sort((x, y) => y.saves - x.saves).map((w) => w.text);
  const dynamicFirst = (perToken[0]?.saves ?? 0) > 0.25 * now;
  const ways = dynamicFirst ? [...tokenWays, ...states] : [...states, ...tokenWays];
  const text = ways.length > 1 ? `${ways.slice(0, -1).join(", ")}, or ${ways.at(-1)}` : (ways[0] ?? "");
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
}

/** 8-bit bitsandbytes QLoRA, which neither ZeRO-3 nor FSDP can shard (rule QLORA_8BIT_SHARDED). */
function eightBitBnb(plan: Plan): boolean {
  return plan.method === "qlora" && plan.quantMethod === "bnb" && plan.quantBits === 8;
}

/** The next CPU offload this plan can take, with the sharding it needs (the OFFLOAD_* rules). */
function offloadHint(plan: Plan): string | null {
  const hint = offloadWay(plan);
  return hint !== null && eightBitBnb(plan)
    ? hint.replace(/--sharding (zero3|fsdp)/g, "--quant-bits 4 --sharding $1")
    : hint;
}

function offloadWay(plan: Plan): string | null {
  if (plan.offload === "params") return null;
  switch (plan.sharding) {
    case "none":
      return "offload to the CPU (--sharding zero3 with --offload optimizer or params)";
    case "zero1":
    case "zero2":
      return plan.offload === "none"
        ? "offload to the CPU (--offload optimizer, or --sharding zero3 --offload params)"
        : "offload the parameters too (--sharding zero3 --offload params)";
    case "zero3":
      return plan.offload === "none"
        ? "offload to the CPU (--offload optimizer or params)"
        : "offload the parameters too (--offload params)";
    default:
      return "offload to the CPU (--offload params)";
  }
}

/** What the memory estimate means for the run: the issues that would stop it, with numbers and the fix. */
export function memoryIssues(
  plan: Plan,
  memory: MemoryEstimate,
  assumptions: Partial<MemoryAssumptions> = {},
): Issue[] {
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
    } else if (loadsFullReplica(plan) && plan.gpus * plan.nodes > 1) {
      issues.push({
        code: "LOAD_REPLICA_OOM",
        severity: "error",
        path: "sharding",
        message:
          `with sharding ${plan.sharding} every rank loads a full replica of the weights (${gib(load.weightsBytes)}) onto ` +
          `its own ${gib(plan.gpu.capacityBytes)} card: loading runs out of memory${where}`,
        hint:
          plan.method === "qlora"
            ? `Use ${eightBitBnb(plan) ? "--quant-bits 4 with " : ""}--sharding fsdp (RAM-efficient loading: each rank holds 1/N of the weights).`
            : "Use --sharding zero3 or fsdp so each rank loads 1/N of the weights, and/or --method qlora.",
      });
    } else if (plan.gpus * plan.nodes === 1) {
      issues.push({
        code: "LOAD_SHARD_OOM",
        severity: "error",
        path: "gpus",
        message: `the weights (${gib(load.weightsBytes)}) do not fit on the one ${gib(plan.gpu.capacityBytes)} card: loading runs out of memory${where}`,
        hint:
          plan.method === "qlora"
            ? `Use more GPUs with ${eightBitBnb(plan) ? "--quant-bits 4 and " : ""}--sharding fsdp (each holds 1/N of the 4-bit weights), or ${eightBitBnb(plan) ? "--quant-bits 4 " : ""}--sharding fsdp --offload params (the weights wait in host RAM).`
            : "Use --method qlora (4-bit weights), --sharding zero3 --offload params (the weights wait in host RAM), or more GPUs with --sharding zero3 or fsdp.",
      });
    } else {
      issues.push({
        code: "LOAD_SHARD_OOM",
        severity: "error",
        path: "gpus",
        message: `each GPU's share of the weights (${gib(load.weightsBytes)}) does not fit on ${gib(plan.gpu.capacityBytes)}${where}`,
        hint:
          plan.method === "qlora"
            ? "Use more GPUs (--gpus/--nodes) or --offload params."
            : "Use more GPUs (--gpus/--nodes), --offload params, or --method qlora.",
      });
    }
  }
  if (!memory.train.fits) {
    const b = memory.train.perGpu.breakdown;
    const hint = trainOomHint(plan, memory, assumptions);
    issues.push({
      code: "TRAIN_OOM",
      severity: "error",
      path: "microBatch",
      message:
        `the training step needs ${gib(memory.train.perGpu.deviceBytes)} per GPU (weights ${gib(b.weights)}, gradients ` +
        `${gib(b.gradients)}, optimizer ${gib(b.optimizer)}${memory.train.pagedOptimizerBytes > 0 ? ` + ${gib(memory.train.pagedOptimizerBytes)} paged, which yields to host RAM` : ""}, activations ${gib(b.activations)}, logits ${gib(b.logits)}, ` +
        `buffers ${gib(b.buffers)}, allocator reserve ${gib(b.fragmentation)}, runtime ${gib(b.runtime)}) ` +
        `but ${gib(cap)} is usable (${gib(plan.gpu.capacityBytes)} less ${(plan.headroom * 100).toFixed(0)} % headroom)`,
      hint,
    });
  }
  // a plan without an optimizer steps with transformers' default, which became the fused AdamW at torch 2.8: where
  // that decides whether the step fits, say so
  const defaultFused = assumptions.defaultOptimFused ?? DEFAULT_ASSUMPTIONS.defaultOptimFused;
  if (
    plan.optimizer === null &&
    !defaultFused &&
    optimSteps(plan.lowMemoryOptimizer) &&
    !deepspeedCpuAdam(plan) &&
    !memory.train.fits
  ) {
    const fused = estimateTrainMemory({ ...plan, optimizer: "adamw_torch_fused" }, assumptions).deviceBytes;
    if (fused <= cap)
      issues.push({
        code: "DEFAULT_OPTIM_STEP_COPY",
        severity: "info",
        path: "optimizer",
        message:
          `the step does not fit with transformers' default optim before torch 2.8, adamw_torch, whose foreach step ` +
          `copies every trained parameter; from torch 2.8 on the default is adamw_torch_fused, which makes no copy, ` +
          `and the step then needs ${gib(fused)} per GPU: it fits`,
        hint: "Set --optimizer adamw_torch_fused to train with the fused AdamW on any torch, or pass --assume defaultOptimFused=true for a torch of 2.8 or newer.",
      });
  }
  // paged states beyond what the card leaves do not stop the run: the driver moves them through host memory
  const paged = memory.train.pagedOptimizerBytes;
  const toHost = memory.train.pagedToHostBytes;
  if (toHost > 0 && memory.train.fits) {
    issues.push({
      code: "PAGED_OPTIMIZER_SPILLS",
      severity: "warning",
      path: "optimizer",
      message:
        `${gib(toHost)} of the ${gib(paged)} of ${plan.optimizer}'s states per GPU do not fit beside the training ` +
        `peak (it takes ${gib(memory.train.perGpu.deviceBytes - (paged - toHost))} of the ${gib(cap)} usable, leaving ` +
        `${gib(paged - toHost)} for them): bitsandbytes keeps ` +
        `them in CUDA managed memory, which the driver evicts to host RAM while forward and backward need the room ` +
        `and brings back at every step: the run fits, but each step copies ${gib(2 * toHost)} over PCIe`,
      hint:
        plan.sharding !== "none"
          ? `Keeping them on the GPU takes ${gib(toHost)} less elsewhere: use more GPUs (--gpus/--nodes), or lower the peak (--micro-batch, --seq-len).`
          : plan.gpus * plan.nodes > 1
            ? `Keeping them on the GPU takes ${gib(toHost)} less elsewhere: shard the optimizer states with --sharding zero2 (or zero3), or lower the peak (--micro-batch, --seq-len).`
            : `Keeping them on the GPU takes ${gib(toHost)} less elsewhere: lower the peak (--micro-batch, --seq-len)${plan.gradientCheckpointing ? "" : " or turn on --gradient-checkpointing"}, or use more GPUs with --sharding zero2 (or zero3).`,
    });
  }
  const host = memory.hostRam.perNodeBytes;
  if (plan.hostRamBytes !== null && host > plan.hostRamBytes) {
    issues.push({
      code: "HOST_RAM_OOM",
      severity: "error",
      path: "hostRam",
      message: `each node needs about ${gib(host)} of host memory (processes, loading${plan.offload !== "none" ? ", CPU offload" : ""}${toHost > 0 ? ", paged optimizer states" : ""}) but has ${gib(plan.hostRamBytes)}`,
      hint:
        plan.offload === "params"
          ? "Offload less (--offload optimizer or none), or use more nodes."
          : plan.offload === "optimizer"
            ? "Offload nothing (--offload none), or use more nodes."
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
