import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { accelerateConfig } from "../../src/emit/accelerate.ts";
import { deepspeedConfig } from "../../src/emit/deepspeed.ts";
import { trainYaml } from "../../src/emit/train-yaml.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import type { PlanInput } from "../../src/schema/plan.ts";
import { LLAMAFACTORY_FIELDS } from "../../src/schema/targets/data/llamafactory-keys.ts";

/*
 * Value-level comparison with LLaMA-Factory's own example configs (copies in test/fixtures) for equivalent plans:
 * every key of the example has the same value in tunefit's file, except the keys that name the example's own
 * model, data and paths; every key tunefit adds holds LLaMA-Factory's default (so it changes nothing) or is
 * listed here with the reason.
 */

const fixture = (dir: string, name: string) =>
  readFileSync(new URL(`../fixtures/${dir}/${name}`, import.meta.url), "utf8");
const example = (name: string) => parse(fixture("llamafactory-examples", name)) as Record<string, unknown>;

/** Keys that name the example's model, data or output rather than a setting. */
const NAMING = new Set(["model_name_or_path", "dataset", "template", "output_dir", "deepspeed"]);

/** LLaMA-Factory's default of a key, from the python source text of its dataclass field. */
function lfDefault(key: string): unknown {
  const field = LLAMAFACTORY_FIELDS.find((f) => f.name === key);
  if (!field) throw new Error(`${key} is not a LLaMA-Factory key`);
  const d = field.default;
  if (d === "None") return null;
  if (d === "True") return true;
  if (d === "False") return false;
  if (/^-?\d+(\.\d+)?(e-?\d+)?$/.test(d)) return Number(d);
  const quoted = /^'(.*)'$/.exec(d) ?? /^"(.*)"$/.exec(d);
  if (quoted) return quoted[1];
  return `<python: ${d}>`;
}

/** Keys tunefit writes beside an example's, each with a value that is not the dataclass default, and why. */
const ADDED_ON_PURPOSE: Readonly<Record<string, string>> = {
  dataset_dir: "the bundle's demo dataset folder (LLaMA-Factory's default is also 'data')",
  quantization_method: "bnb, LLaMA-Factory's default method, written as the otfq example writes it",
};

function compare(ours: Record<string, unknown>, theirs: Record<string, unknown>) {
  for (const [key, value] of Object.entries(theirs)) {
    if (NAMING.has(key)) continue;
    expect(ours[key], `${key}`).toEqual(value);
  }
  for (const [key, value] of Object.entries(ours)) {
    if (key in theirs || NAMING.has(key) || key in ADDED_ON_PURPOSE) continue;
    expect(value, `${key} (added by tunefit) must be LLaMA-Factory's default`).toEqual(lfDefault(key));
  }
}

const plan = (input: PlanInput) => resolvePlan(input).plan;
const CASES: readonly [string, PlanInput][] = [
  ["qwen3_lora_sft.yaml", { model: "Qwen/Qwen3-4B", gpu: "a100-80g" }],
  [
    "qwen3_lora_sft_ds3.yaml",
    { model: "Qwen/Qwen3-4B", gpu: "a100-80g", gpus: 2, sharding: "zero3", gradAccum: 2 },
  ],
  [
    "qwen3_full_sft.yaml",
    { model: "Qwen/Qwen3-4B", gpu: "a100-80g", gpus: 2, method: "full", sharding: "zero3", gradAccum: 2 },
  ],
  ["qwen3_lora_sft_otfq.yaml", { model: "Qwen/Qwen3-4B", gpu: "a100-80g", method: "qlora" }],
  [
    "llama3_lora_sft_fsdp_qlora.yaml",
    {
      model: "meta-llama/Meta-Llama-3-8B-Instruct",
      gpu: "rtx4090",
      gpus: 2,
      method: "qlora",
      sharding: "fsdp",
    },
  ],
  [
    "qwen3vl_lora_sft.yaml",
    { model: "Qwen/Qwen3-VL-4B-Instruct", gpu: "a100-80g", imagesPerSample: 1, imageMaxPixels: 262144 },
  ],
];

describe("train.yaml equals LLaMA-Factory's example for the equivalent plan", () => {
  it.each(CASES)("%s", (name, input) => {
    const ours = trainYaml(plan(input));
    const theirs = example(name);
    // resume_from_checkpoint: null is an explicit default in some examples and absent in others
    if (!("resume_from_checkpoint" in theirs)) delete ours.resume_from_checkpoint;
    // overwrite_cache: true (re-tokenize on every run) appears only in the older fsdp_qlora example
    delete theirs.overwrite_cache;
    // tunefit plans images, not videos: LLaMA-Factory reads video_max_pixels only for a dataset's video samples
    delete theirs.video_max_pixels;
    compare(ours, theirs);
  });

  it("a DeepSpeed plan names deepspeed.json, and the examples name a ZeRO-3 file", () => {
    expect(trainYaml(plan(CASES[2]?.[1] as PlanInput)).deepspeed).toBe("deepspeed.json");
    expect(example("qwen3_full_sft.yaml").deepspeed).toMatch(/ds_z3_config\.json$/);
  });
});

describe("the memory-efficient optimizers' keys equal LLaMA-Factory's extras examples", () => {
  /** the example's `### method` keys, and the precision it trains in */
  const methodKeys = (y: Record<string, unknown>, prefix: string) =>
    Object.fromEntries(
      Object.entries(y).filter(([k]) => k.startsWith(prefix) || k === "finetuning_type" || k === "pure_bf16"),
    );
  const llama3 = { model: "meta-llama/Meta-Llama-3-8B-Instruct", gpu: "a100-80g", method: "full" } as const;
  it("GaLore, layer-wise at rank 128 (galore_target mlp,self_attn reaches the same linears as all)", () => {
    const theirs = methodKeys(example("galore_llama3_full_sft.yaml"), "galore_");
    const ours = trainYaml(
      plan({
        ...llama3,
        lowMemoryOptimizer: "galore",
        lowMemoryRank: 128,
        lowMemoryLayerwise: true,
        gradAccum: 1,
        precision: "pure_bf16",
      }),
    );
    const { galore_target: target, galore_scale: scale, ...rest } = theirs as Record<string, unknown>;
    expect(target).toBe("mlp,self_attn");
    expect(scale).toBe(2); // a step-size factor: no memory, left at LLaMA-Factory's default
    expect(ours.galore_target).toBe("all");
    expect(methodKeys(ours, "galore_")).toMatchObject(rest);
    expect(ours.use_galore).toBe(true);
    expect(ours.optim).toBe("adamw_torch");
  });
  it("BAdam in layer mode", () => {
    const theirs = methodKeys(example("badam_llama3_full_sft.yaml"), "badam_");
    const { badam_verbose: verbose, ...rest } = theirs as Record<string, unknown>;
    expect(verbose).toBe(2); // logging only
    const ours = trainYaml(plan({ ...llama3, lowMemoryOptimizer: "badam" }));
    expect(methodKeys(ours, "badam_")).toEqual(rest);
    expect(ours.use_badam).toBe(true);
    expect(ours.pure_bf16).toBeUndefined();
  });
});

describe("deepspeed.json equals LLaMA-Factory's examples/deepspeed files", () => {
  const ds = (name: string) => JSON.parse(fixture("targets", name)) as Record<string, unknown>;
  const base = { model: "Qwen/Qwen3-4B", gpu: "a100-80g", gpus: 4, method: "full" } as const;
  it("ZeRO-2", () => {
    expect(deepspeedConfig(plan({ ...base, sharding: "zero2" }))).toEqual(ds("ds_z2_config.json"));
  });
  it("ZeRO-3", () => {
    expect(deepspeedConfig(plan({ ...base, sharding: "zero3" }))).toEqual(ds("ds_z3_config.json"));
  });
  it("ZeRO-3 with parameter and optimizer offload", () => {
    expect(deepspeedConfig(plan({ ...base, sharding: "zero3", offload: "params" }))).toEqual(
      ds("ds_z3_offload_config.json"),
    );
  });
  it("ZeRO-2 with optimizer offload is ds_z2 plus offload_optimizer (ds_z2_offload_config.json)", () => {
    const ours = deepspeedConfig(plan({ ...base, sharding: "zero2", offload: "optimizer" })) as {
      zero_optimization: Record<string, unknown>;
    };
    const z2 = ds("ds_z2_config.json") as { zero_optimization: Record<string, unknown> };
    expect(ours).toEqual({
      ...z2,
      zero_optimization: { ...z2.zero_optimization, offload_optimizer: { device: "cpu", pin_memory: true } },
    });
  });
  it("integral sizes are JSON integers", () => {
    const text = JSON.stringify(deepspeedConfig(plan({ ...base, sharding: "zero2" })));
    expect(text).toContain('"reduce_bucket_size":500000000');
    expect(text).not.toMatch(/\de\d/);
  });
});

describe("accelerate_fsdp.yaml equals LLaMA-Factory's examples/accelerate files", () => {
  const acc = (name: string) => JSON.parse(fixture("targets", name)) as Record<string, unknown>;
  const base = {
    model: "meta-llama/Meta-Llama-3-8B-Instruct",
    gpu: "rtx4090",
    gpus: 2,
    method: "qlora",
  } as const;
  const withoutWrapClasses = (c: Record<string, unknown> | null) => {
    const { fsdp_transformer_layer_cls_to_wrap: cls, ...fsdp } = (c?.fsdp_config ?? {}) as Record<
      string,
      unknown
    >;
    expect(cls).toBe("LlamaDecoderLayer");
    return { ...c, fsdp_config: fsdp };
  };
  it("FSDP1 (fsdp_config.yaml), plus the decoder-layer class", () => {
    const ours = withoutWrapClasses(accelerateConfig(plan({ ...base, sharding: "fsdp" })));
    expect(ours).toMatchObject(acc("fsdp_config.json"));
  });
  it("FSDP2 (fsdp2_config.yaml), plus the decoder-layer class", () => {
    const ours = withoutWrapClasses(accelerateConfig(plan({ ...base, sharding: "fsdp2" })));
    expect(ours).toMatchObject(acc("fsdp2_config.json"));
  });
  it("a multimodal model wraps its vision blocks too (as fsdp2_config_qwen35.yaml does)", () => {
    const c = accelerateConfig(
      plan({ model: "Qwen/Qwen2-VL-7B-Instruct", gpu: "a100-80g", gpus: 4, sharding: "fsdp2" }),
    );
    expect((c?.fsdp_config as Record<string, unknown> | undefined)?.fsdp_transformer_layer_cls_to_wrap).toBe(
      "Qwen2VLDecoderLayer,Qwen2VLVisionBlock",
    );
  });
  it("several nodes: num_processes counts every GPU (fsdp_config_multiple_nodes.yaml)", () => {
    const c = accelerateConfig(plan({ ...base, gpus: 8, nodes: 2, sharding: "fsdp" }));
    expect(c).toMatchObject({
      num_machines: 2,
      num_processes: 16,
      main_process_port: 29500,
      machine_rank: 0,
    });
  });
});
