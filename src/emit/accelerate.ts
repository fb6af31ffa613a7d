import { fsdpWrapClasses } from "../catalog/layer-classes.ts";
import type { Plan } from "../schema/plan.ts";
import { usesFsdp } from "./common.ts";
import { type EmitOptions, resolveEmitOptions } from "./options.ts";

/*
 * accelerate_fsdp.yaml for `accelerate launch`, FSDP1 and FSDP2 from separate key sets, with the values of
 * LLaMA-Factory's examples/accelerate files (fsdp_config.yaml, fsdp2_config.yaml, fsdp_config_multiple_nodes.yaml,
 * fsdp2_config_qwen35.yaml) where they apply. Their TPU-only keys (main_training_function, downcast_bf16,
 * tpu_env, tpu_use_cluster, tpu_use_sudo) are left out: GPUs never read them, and the examples' `downcast_bf16: 'no'`
 * is a non-empty string, which Python reads as true.
 */

const STRATEGY = {
  full_shard: "FULL_SHARD",
  shard_grad_op: "SHARD_GRAD_OP",
  hybrid_shard: "HYBRID_SHARD",
  no_shard: "NO_SHARD",
} as const;

/** accelerate's `mixed_precision` for the plan's precision (the YAML's bf16/fp16 and this must agree). */
export function accelerateMixedPrecision(plan: Plan): "bf16" | "fp16" | "no" {
  // pure bf16: the weights are bf16 already; with "bf16" accelerate would upcast them to fp32 (FSDP2 the whole model)
  if (plan.precision === "pure_bf16") return "no";
  if (plan.precision === "bf16") return "bf16";
  return plan.precision === "fp16" ? "fp16" : "no";
}

/** The FSDP section: the decoder-layer class (and the vision block for multimodal models) as wrap units. */
function fsdpSection(plan: Plan): Record<string, unknown> {
  const classes = fsdpWrapClasses(plan.model.architecture);
  const wrap: Record<string, unknown> = { fsdp_auto_wrap_policy: "TRANSFORMER_BASED_WRAP" };
  const offload = plan.offload !== "none";
  if (plan.sharding === "fsdp2") {
    const section: Record<string, unknown> = {
      ...wrap,
      fsdp_cpu_ram_efficient_loading: true,
      fsdp_offload_params: offload,
      fsdp_reshard_after_forward: plan.fsdpStrategy !== "shard_grad_op" && plan.fsdpStrategy !== "no_shard",
      fsdp_state_dict_type: "FULL_STATE_DICT",
    };
    if (classes.length > 0) section.fsdp_transformer_layer_cls_to_wrap = classes.join(",");
    section.fsdp_version = 2;
    return section;
  }
  const section: Record<string, unknown> = {
    ...wrap,
    fsdp_backward_prefetch: "BACKWARD_PRE",
    fsdp_forward_prefetch: false,
    // without it every rank loads a full replica onto its GPU before sharding (the seed's failure)
    fsdp_cpu_ram_efficient_loading: true,
    fsdp_offload_params: offload,
    fsdp_sharding_strategy: STRATEGY[plan.fsdpStrategy ?? "full_shard"],
    fsdp_state_dict_type: "FULL_STATE_DICT",
    // accelerate rejects RAM-efficient loading without it
    fsdp_sync_module_states: true,
    fsdp_use_orig_params: true,
  };
  if (classes.length > 0) section.fsdp_transformer_layer_cls_to_wrap = classes.join(",");
  return section;
}

/** The accelerate config of an FSDP plan, or null when the plan does not use FSDP. */
export function accelerateConfig(plan: Plan, options: EmitOptions = {}): Record<string, unknown> | null {
  if (!usesFsdp(plan)) return null;
  const o = resolveEmitOptions(plan, options);
  const multiNode = plan.nodes > 1;
  const config: Record<string, unknown> = {
    compute_environment: "LOCAL_MACHINE",
    debug: false,
    distributed_type: "FSDP",
    fsdp_config: fsdpSection(plan),
    // launch.sh passes --machine_rank (and --main_process_ip) per node; command-line values win over the file
    machine_rank: 0,
  };
  if (multiNode) {
    config.main_process_ip = "127.0.0.1";
    config.main_process_port = o.masterPort;
  }
  Object.assign(config, {
    mixed_precision: accelerateMixedPrecision(plan),
    num_machines: plan.nodes,
    num_processes: plan.gpus * plan.nodes,
    rdzv_backend: "static",
    same_network: true,
    use_cpu: false,
  });
  return config;
}
