import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ACCELERATE_FSDP_KEYS } from "../../src/schema/targets/data/accelerate-keys.ts";
import { DEEPSPEED_KEYS } from "../../src/schema/targets/data/deepspeed-keys.ts";
import { LLAMAFACTORY_FIELDS } from "../../src/schema/targets/data/llamafactory-keys.ts";
import {
  AccelerateFsdp1Config,
  AccelerateFsdp2Config,
  AccelerateFsdpConfig,
  checkAccelerateFsdpConfig,
  checkDeepSpeedConfig,
  checkTrainYaml,
  DeepSpeedConfig,
  FSDP1_KEYS,
  FSDP2_KEYS,
  LLAMAFACTORY_KEYS,
  LlamaFactoryTrainYaml,
} from "../../src/schema/targets/index.ts";

// LLaMA-Factory's example configs (provenance in test/fixtures/targets/SOURCES.md).
const fixture = (name: string): string =>
  readFileSync(new URL(`../fixtures/targets/${name}`, import.meta.url), "utf8");
const json = (name: string): Record<string, unknown> => JSON.parse(fixture(name));

const codesAt = (issues: readonly { code: string; path: string }[]) =>
  issues.map((i) => `${i.code} ${i.path}`);

describe("generated key tables", () => {
  it("has the 347 keys LLaMA-Factory accepts, each once", () => {
    expect(LLAMAFACTORY_FIELDS).toHaveLength(347);
    expect(new Set(LLAMAFACTORY_KEYS).size).toBe(347);
    expect(LLAMAFACTORY_KEYS).toContain("lora_rank");
    // init=False fields are not accepted in the YAML.
    expect(LLAMAFACTORY_KEYS).not.toContain("compute_dtype");
    expect(LLAMAFACTORY_KEYS).not.toContain("model_max_length");
  });

  it("maps every LLaMA-Factory field to known kinds", () => {
    const base = new Set(["string", "int", "float", "bool", "dict", "list", "json"]);
    for (const f of LLAMAFACTORY_FIELDS) {
      for (const k of f.kind.split("|")) expect(base.has(k), `${f.name}: ${f.kind}`).toBe(true);
    }
    const kindOf = (name: string) => LLAMAFACTORY_FIELDS.find((f) => f.name === name);
    expect(kindOf("vllm_config")).toMatchObject({ kind: "dict|string", nullable: true });
    expect(kindOf("report_to")).toMatchObject({ kind: "string|list", nullable: true });
    expect(kindOf("quantization_bit")).toMatchObject({ kind: "int", nullable: true, choices: null });
    expect(kindOf("finetuning_type")).toMatchObject({ kind: "string", nullable: false });
    expect(kindOf("finetuning_type")?.choices).toEqual(["lora", "oft", "freeze", "full"]);
  });

  it("marks the keys DeepSpeed fills from 'auto'", () => {
    const auto = DEEPSPEED_KEYS.filter((k) => k.hfAuto).map((k) => k.path);
    expect(auto.sort()).toEqual(
      [
        "bf16.enabled",
        "fp16.enabled",
        "gradient_accumulation_steps",
        "gradient_clipping",
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "zero_optimization.reduce_bucket_size",
        "zero_optimization.stage3_gather_16bit_weights_on_model_save",
        "zero_optimization.stage3_param_persistence_threshold",
        "zero_optimization.stage3_prefetch_bucket_size",
      ].sort(),
    );
    expect(
      DEEPSPEED_KEYS.find((k) => k.path === "zero_optimization.stage3_allgather_sequential")?.atPinned,
    ).toBe(false);
  });

  it("splits fsdp_config into FSDP1 and FSDP2 key sets", () => {
    expect(ACCELERATE_FSDP_KEYS).toHaveLength(15);
    const fsdp1Only = FSDP1_KEYS.filter((k) => !FSDP2_KEYS.includes(k));
    const fsdp2Only = FSDP2_KEYS.filter((k) => !FSDP1_KEYS.includes(k));
    expect(fsdp1Only.sort()).toEqual(
      [
        "fsdp_backward_prefetch",
        "fsdp_forward_prefetch",
        "fsdp_sharding_strategy",
        "fsdp_sync_module_states",
        "fsdp_use_orig_params",
      ].sort(),
    );
    expect(fsdp2Only.sort()).toEqual(["fsdp_reshard_after_forward", "fsdp_version"]);
    expect(FSDP1_KEYS.length + fsdp2Only.length).toBe(15);
  });
});

describe("LLaMA-Factory's example configs pass", () => {
  it.each(["ds_z3_config.json", "ds_z2_config.json", "ds_z3_offload_config.json"])("DeepSpeed %s", (name) => {
    const cfg = json(name);
    expect(checkDeepSpeedConfig(cfg)).toEqual([]);
    expect(DeepSpeedConfig.safeParse(cfg).success).toBe(true);
  });

  it("accelerate fsdp_config.yaml (FSDP1)", () => {
    const cfg = json("fsdp_config.json");
    expect(checkAccelerateFsdpConfig(cfg)).toEqual([]);
    expect(AccelerateFsdpConfig.safeParse(cfg).success).toBe(true);
    expect(AccelerateFsdp1Config.safeParse(cfg.fsdp_config).success).toBe(true);
    expect(AccelerateFsdp2Config.safeParse(cfg.fsdp_config).success).toBe(false);
  });

  it("accelerate fsdp2_config.yaml (FSDP2, RAM-efficient loading without sync_module_states)", () => {
    const cfg = json("fsdp2_config.json");
    expect(checkAccelerateFsdpConfig(cfg)).toEqual([]);
    expect(AccelerateFsdpConfig.safeParse(cfg).success).toBe(true);
    expect(AccelerateFsdp2Config.safeParse(cfg.fsdp_config).success).toBe(true);
    expect(AccelerateFsdp1Config.safeParse(cfg.fsdp_config).success).toBe(false);
  });

  it("the training YAML qwen3_lora_sft.yaml", () => {
    const yaml = parse(fixture("qwen3_lora_sft.yaml"));
    expect(Object.keys(yaml)).toHaveLength(29);
    expect(checkTrainYaml(yaml)).toEqual([]);
    expect(LlamaFactoryTrainYaml.safeParse(yaml).success).toBe(true);
  });
});

describe("checkTrainYaml", () => {
  it("rejects a misspelled key as LLaMA-Factory does, and suggests the right one", () => {
    const issues = checkTrainYaml({ lora_rnak: 8 });
    expect(issues).toEqual([
      expect.objectContaining({
        code: "TARGET_UNKNOWN_KEY",
        path: "train.yaml:lora_rnak",
        severity: "error",
      }),
    ]);
    expect(issues[0]?.message).toContain("Some keys are not used by the HfArgumentParser");
    expect(issues[0]?.hint).toContain("lora_rank");
  });

  it("rejects a value outside the choices and lists the allowed ones", () => {
    const issues = checkTrainYaml({ finetuning_type: "lora2" });
    expect(codesAt(issues)).toEqual(["TARGET_BAD_VALUE train.yaml:finetuning_type"]);
    expect(issues[0]?.message).toContain('"lora2"');
    expect(issues[0]?.message).toContain('"lora", "oft", "freeze", "full"');
  });

  it("rejects a string where an integer is needed", () => {
    const issues = checkTrainYaml({ quantization_bit: "4" });
    expect(codesAt(issues)).toEqual(["TARGET_BAD_VALUE train.yaml:quantization_bit"]);
    expect(issues[0]?.message).toContain("an integer");
    expect(checkTrainYaml({ quantization_bit: 4 })).toEqual([]);
    expect(checkTrainYaml({ quantization_bit: 4.5 })).toHaveLength(1);
  });

  it("checks each token of a space-separated fsdp string and accepts fsdp: true", () => {
    expect(checkTrainYaml({ fsdp: "full_shard auto_wrap" })).toEqual([]);
    expect(checkTrainYaml({ fsdp: ["full_shard", "auto_wrap"] })).toEqual([]);
    expect(checkTrainYaml({ fsdp: true })).toEqual([]);
    expect(codesAt(checkTrainYaml({ fsdp: "full_shard auto_wrapx" }))).toEqual([
      "TARGET_BAD_VALUE train.yaml:fsdp",
    ]);
  });
});

describe("checkDeepSpeedConfig", () => {
  const z3 = () => json("ds_z3_config.json") as { zero_optimization: Record<string, unknown> };

  it("rejects ZeRO stage 4", () => {
    const cfg = z3();
    cfg.zero_optimization.stage = 4;
    const issues = checkDeepSpeedConfig(cfg);
    expect(codesAt(issues)).toEqual(["TARGET_BAD_VALUE deepspeed.json:zero_optimization.stage"]);
    expect(issues[0]?.message).toContain("0, 1, 2, 3");
  });

  it("takes integral JSON numbers for integer fields, not fractional ones", () => {
    const cfg = z3();
    cfg.zero_optimization.stage3_prefetch_bucket_size = 500000000;
    cfg.zero_optimization.stage3_max_live_parameters = 1e9;
    expect(checkDeepSpeedConfig(cfg)).toEqual([]);
    cfg.zero_optimization.stage3_prefetch_bucket_size = 15099494.4;
    expect(codesAt(checkDeepSpeedConfig(cfg))).toEqual([
      "TARGET_BAD_VALUE deepspeed.json:zero_optimization.stage3_prefetch_bucket_size",
    ]);
  });

  it('takes "auto" only where transformers or accelerate fill it in', () => {
    const cfg = json("ds_z3_config.json") as { fp16: Record<string, unknown> };
    cfg.fp16.loss_scale = "auto";
    expect(codesAt(checkDeepSpeedConfig(cfg))).toEqual(["TARGET_BAD_VALUE deepspeed.json:fp16.loss_scale"]);
  });

  it("rejects keys the pinned DeepSpeed does not know, saying how it reacts", () => {
    const cfg = z3() as Record<string, unknown> & { zero_optimization: Record<string, unknown> };
    cfg.zero_optimization.stage3_allgather_sequential = true;
    cfg.train_micro_batch_size = 1;
    const issues = checkDeepSpeedConfig(cfg);
    expect(codesAt(issues).sort()).toEqual([
      "TARGET_UNKNOWN_KEY deepspeed.json:train_micro_batch_size",
      "TARGET_UNKNOWN_KEY deepspeed.json:zero_optimization.stage3_allgather_sequential",
    ]);
    expect(issues.find((i) => i.path.endsWith("stage3_allgather_sequential"))?.message).toContain("v0.18.5");
    expect(issues.find((i) => i.path.endsWith("train_micro_batch_size"))?.message).toContain(
      "silently ignores",
    );
  });

  it("requires zero_optimization", () => {
    expect(codesAt(checkDeepSpeedConfig({ train_batch_size: 8 }))).toEqual([
      "TARGET_MISSING_KEY deepspeed.json:zero_optimization",
    ]);
  });
});

describe("checkAccelerateFsdpConfig", () => {
  const fsdp1 = () =>
    json("fsdp_config.json") as Record<string, unknown> & { fsdp_config: Record<string, unknown> };
  const fsdp2 = () =>
    json("fsdp2_config.json") as Record<string, unknown> & { fsdp_config: Record<string, unknown> };

  it("FSDP2 rejects LOCAL_STATE_DICT", () => {
    const cfg = fsdp2();
    cfg.fsdp_config.fsdp_state_dict_type = "LOCAL_STATE_DICT";
    const issues = checkAccelerateFsdpConfig(cfg);
    expect(codesAt(issues)).toEqual([
      "TARGET_FSDP2_LOCAL_STATE_DICT accelerate_fsdp.yaml:fsdp_config.fsdp_state_dict_type",
    ]);
    expect(issues[0]?.message).toContain("FSDP2 does not support LOCAL_STATE_DICT");
    // FSDP1 takes it.
    const one = fsdp1();
    one.fsdp_config.fsdp_state_dict_type = "LOCAL_STATE_DICT";
    expect(checkAccelerateFsdpConfig(one)).toEqual([]);
  });

  it("FSDP1: RAM-efficient loading needs fsdp_sync_module_states", () => {
    const cfg = fsdp1();
    cfg.fsdp_config.fsdp_sync_module_states = false;
    const issues = checkAccelerateFsdpConfig(cfg);
    expect(codesAt(issues)).toEqual([
      "TARGET_FSDP_CPU_RAM_EFFICIENT_WITHOUT_SYNC accelerate_fsdp.yaml:fsdp_config.fsdp_sync_module_states",
    ]);
    expect(issues[0]?.message).toContain("set `--fsdp_sync_module_states` to `True`");
    // Absent, the launcher's default ("true") passes the check.
    delete cfg.fsdp_config.fsdp_sync_module_states;
    expect(checkAccelerateFsdpConfig(cfg)).toEqual([]);
    // Without RAM-efficient loading, sync may be off.
    cfg.fsdp_config.fsdp_cpu_ram_efficient_loading = false;
    cfg.fsdp_config.fsdp_sync_module_states = false;
    expect(checkAccelerateFsdpConfig(cfg)).toEqual([]);
  });

  it("FSDP2: the same launcher check trips on an explicit fsdp_sync_module_states: false", () => {
    const cfg = fsdp2();
    cfg.fsdp_config.fsdp_sync_module_states = false;
    expect(codesAt(checkAccelerateFsdpConfig(cfg))).toEqual([
      "TARGET_FSDP_CPU_RAM_EFFICIENT_WITHOUT_SYNC accelerate_fsdp.yaml:fsdp_config.fsdp_sync_module_states",
    ]);
  });

  it("fsdp_reshard_after_forward: a bool for FSDP2, never a bool for FSDP1", () => {
    const two = fsdp2();
    two.fsdp_config.fsdp_reshard_after_forward = "FULL_SHARD";
    expect(codesAt(checkAccelerateFsdpConfig(two))).toEqual([
      "TARGET_FSDP2_RESHARD_NOT_BOOL accelerate_fsdp.yaml:fsdp_config.fsdp_reshard_after_forward",
    ]);
    const one = fsdp1();
    one.fsdp_config.fsdp_reshard_after_forward = true;
    expect(codesAt(checkAccelerateFsdpConfig(one))).toEqual([
      "TARGET_FSDP1_RESHARD_BOOL accelerate_fsdp.yaml:fsdp_config.fsdp_reshard_after_forward",
    ]);
  });

  it("FSDP1-only keys are unknown under FSDP2", () => {
    const cfg = fsdp2();
    cfg.fsdp_config.fsdp_use_orig_params = true;
    const issues = checkAccelerateFsdpConfig(cfg);
    expect(codesAt(issues)).toEqual([
      "TARGET_UNKNOWN_KEY accelerate_fsdp.yaml:fsdp_config.fsdp_use_orig_params",
    ]);
    expect(issues[0]?.message).toContain("FSDP1 key");
  });

  it("rejects unknown top-level keys as accelerate does", () => {
    const cfg = fsdp1();
    cfg.num_gpus = 2;
    const issues = checkAccelerateFsdpConfig(cfg);
    expect(codesAt(issues)).toEqual(["TARGET_UNKNOWN_KEY accelerate_fsdp.yaml:num_gpus"]);
    expect(issues[0]?.message).toContain("had unknown keys");
  });

  it("num_processes must be at least 1 and a multiple of num_machines", () => {
    const cfg = fsdp1();
    cfg.num_processes = -1;
    expect(codesAt(checkAccelerateFsdpConfig(cfg))).toEqual([
      "TARGET_NUM_PROCESSES_TOO_SMALL accelerate_fsdp.yaml:num_processes",
    ]);
    cfg.num_processes = 15;
    cfg.num_machines = 2;
    expect(codesAt(checkAccelerateFsdpConfig(cfg))).toEqual([
      "TARGET_NUM_PROCESSES_NOT_DIVISIBLE accelerate_fsdp.yaml:num_processes",
    ]);
    cfg.num_processes = 16;
    expect(checkAccelerateFsdpConfig(cfg)).toEqual([]);
  });

  it("checks distributed_type and mixed_precision", () => {
    const cfg = fsdp1();
    cfg.mixed_precision = "bf32";
    delete cfg.distributed_type;
    expect(codesAt(checkAccelerateFsdpConfig(cfg)).sort()).toEqual([
      "TARGET_BAD_VALUE accelerate_fsdp.yaml:mixed_precision",
      "TARGET_MISSING_KEY accelerate_fsdp.yaml:distributed_type",
    ]);
  });
});
