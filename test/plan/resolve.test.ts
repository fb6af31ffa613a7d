import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { emitFiles } from "../../src/emit/bundle.ts";
import { TunefitError } from "../../src/errors.ts";
import { analyzePlan } from "../../src/plan/analyze.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import { PLAN_RULES } from "../../src/plan/rules.ts";

function usageIssues(input: unknown) {
  try {
    resolvePlan(input);
  } catch (e) {
    expect(e).toBeInstanceOf(TunefitError);
    expect((e as TunefitError).kind).toBe("usage");
    return (e as TunefitError).issues;
  }
  throw new Error("expected a usage error");
}

describe("resolvePlan defaults", () => {
  it("drops repeats from module lists: PEFT wraps a module once", () => {
    const once = analyzePlan({
      model: "Qwen/Qwen2.5-7B-Instruct",
      gpu: "a100-80g",
      loraTarget: ["q_proj", "v_proj"],
      additionalTarget: ["lm_head"],
    });
    const twice = analyzePlan({
      model: "Qwen/Qwen2.5-7B-Instruct",
      gpu: "a100-80g",
      loraTarget: ["q_proj", "v_proj", "q_proj"],
      additionalTarget: ["lm_head", "lm_head"],
    });
    expect(twice.plan.loraTarget).toEqual(["q_proj", "v_proj"]);
    expect(twice.plan.additionalTarget).toEqual(["lm_head"]);
    expect(twice.trainable).toEqual(once.trainable);
    expect(twice.memory.train.perGpu.deviceBytes).toBe(once.memory.train.perGpu.deviceBytes);
    const freeze = resolvePlan({
      model: "Qwen/Qwen2.5-7B-Instruct",
      gpu: "a100-80g",
      method: "freeze",
      freezeTrainableModules: ["mlp", "mlp"],
    }).plan;
    expect(freeze.freezeTrainableModules).toEqual(["mlp"]);
  });

  it("fills LLaMA-Factory's defaults", () => {
    const { plan } = resolvePlan({ model: "Qwen/Qwen2.5-7B-Instruct", gpu: "a100-80g" });
    expect(plan).toMatchObject({
      method: "lora",
      loraRank: 8,
      loraAlpha: 16,
      loraDropout: 0,
      loraTarget: "all",
      sharding: "none",
      precision: "bf16",
      gradientCheckpointing: true,
      seqLen: 2048,
      microBatch: 1,
      gradAccum: 8,
      template: "qwen",
      freezeTrainableLayers: null,
      quantBits: null,
      fsdpStrategy: null,
    });
    expect(plan.gpu.capacityBytes).toBe(81_920 * 1024 ** 2);
  });

  it("falls back to fp16 on GPUs without bf16", () => {
    expect(resolvePlan({ model: "Qwen/Qwen2.5-0.5B", gpu: "t4" }).plan.precision).toBe("fp16");
  });

  it("uses the group template for base models, with a warning", () => {
    const { plan, issues } = resolvePlan({ model: "meta-llama/Meta-Llama-3-8B", gpu: "h100-80g" });
    expect(plan.template).toBe("llama3");
    expect(issues.map((i) => i.code)).toEqual(["TEMPLATE_FROM_GROUP"]);
  });

  it("takes LLaMA-Factory's template for a checkpoint it lists that the catalog does not carry", () => {
    // Codestral-22B is read from a config.json (here Mistral-7B-v0.3's, for the shapes); LLaMA-Factory lists it
    const config = JSON.parse(
      readFileSync(new URL("../fixtures/configs/mistral-7b-v0.3/config.json", import.meta.url), "utf8"),
    ) as Record<string, unknown>;
    const listed = resolvePlan({ model: { id: "mistralai/Codestral-22B-v0.1", config }, gpu: "h100-80g" });
    expect(listed.plan.template).toBe("mistral");
    expect(listed.issues).toEqual([]);
    // ids are looked up as data: an id named like an object property is just unlisted
    for (const id of ["constructor", "__proto__", "toString"]) {
      expect(resolvePlan({ model: { id, config }, gpu: "h100-80g" }).plan.template).toBeNull();
    }
    const unlisted = resolvePlan({ model: { id: "someone/codestral-finetune", config }, gpu: "h100-80g" });
    expect(unlisted.plan.template).toBeNull();
    expect(unlisted.issues.map((i) => i.code)).toEqual(["TEMPLATE_UNSET"]);
  });

  it("leaves the template to LLaMA-Factory, with a warning, where it registers none for the model (Baichuan2)", () => {
    const { plan, issues } = resolvePlan({ model: "baichuan-inc/Baichuan2-13B-Base", gpu: "a100-80g" });
    expect(plan.template).toBeNull();
    expect(issues).toEqual([
      expect.objectContaining({ code: "TEMPLATE_UNSET", severity: "warning", path: "template" }),
    ]);
    // train.yaml then has no template key: LLaMA-Factory parses the tokenizer's chat template, or uses `empty`
    expect(emitFiles(plan).find((f) => f.path === "train.yaml")?.contents).not.toMatch(/^template:/m);
    expect(
      resolvePlan({ model: "baichuan-inc/Baichuan2-13B-Base", gpu: "a100-80g", template: "default" }).plan
        .template,
    ).toBe("default");
  });

  it("finds a GPU by the usual spellings of its name", () => {
    const gpuOf = (gpu: string) => resolvePlan({ model: "Qwen/Qwen2.5-7B", gpu }).plan.gpu.id;
    for (const [name, id] of [
      ["A100-SXM4-80GB", "a100-80g"],
      ["a100-40gb", "a100-40g"],
      ["NVIDIA GeForce RTX 4090", "rtx4090"],
      ["4090", "rtx4090"],
      ["RTX A6000", "a6000"],
      ["H100", "h100-80g"],
      ["H100 80GB HBM3", "h100-80g"],
      ["H100-PCIe", "h100-pcie"],
      ["V100-32GB", "v100-32g"],
      // nvidia-smi's names of the export parts and China-market cards
      ["NVIDIA A800-SXM4-80GB", "a800-80g"],
      ["NVIDIA H800", "h800-80g"],
      ["NVIDIA H20", "h20"],
      ["H200", "h200"],
      ["NVIDIA L20", "l20"],
      ["NVIDIA A40", "a40"],
      ["NVIDIA RTX A5000", "a5000"],
      ["NVIDIA RTX 6000 Ada Generation", "rtx6000-ada"],
      ["RTX 6000 Ada", "rtx6000-ada"],
      // a name without its memory size, where the catalog holds one size of that card
      ["A800", "a800-80g"],
      ["a10", "a10g"],
    ] as const) {
      expect(gpuOf(name), name).toBe(id);
    }
    // a bare family name that picks one variant says which, and names the others
    const notes = (gpu: string) =>
      resolvePlan({ model: "Qwen/Qwen2.5-7B", gpu }).issues.filter((i) => i.code === "GPU_VARIANT_ASSUMED");
    expect(notes("H100")[0]?.message).toContain("read as h100-80g");
    expect(notes("H100")[0]?.hint).toContain("--gpu h100-pcie");
    for (const named of ["h100-80g", "H100-PCIe", "H100 80GB HBM3", "H200", "4090"])
      expect(notes(named)).toEqual([]);
    // a size-less name of a card the catalog holds in two sizes asks; a truncated one is no card
    expect(() => gpuOf("v100")).toThrow(/v100-16g .*v100-32g|names 2 cards/);
    for (const truncated of ["h10", "40", "40g", "b", "t"])
      expect(() => gpuOf(truncated)).toThrow(/unknown GPU/);
    // their capacities as nvidia-smi reports them
    const mib = (gpu: string) =>
      resolvePlan({ model: "Qwen/Qwen2.5-7B", gpu }).plan.gpu.capacityBytes / 1024 ** 2;
    expect([mib("a800-80g"), mib("h800-80g"), mib("h20"), mib("l20"), mib("a40")]).toEqual([
      81_920, 81_559, 97_871, 46_068, 46_068,
    ]);
  });

  it("takes --gpu custom with --gpu-memory, and --gpu-memory as an override", () => {
    expect(resolvePlan({ model: "Qwen/Qwen3-8B", gpu: "custom", gpuMemory: 48 }).plan.gpu.capacityBytes).toBe(
      48 * 1024 ** 3,
    );
    expect(
      resolvePlan({ model: "Qwen/Qwen3-8B", gpu: "rtx4090", gpuMemory: 20 }).plan.gpu.capacityBytes,
    ).toBe(20 * 1024 ** 3);
    expect(usageIssues({ model: "Qwen/Qwen3-8B", gpu: "custom" })[0]?.path).toBe("gpuMemory");
  });

  it("accepts explicit dimensions and raw config objects through the library", () => {
    const base = resolvePlan({ model: "Qwen/Qwen3-8B", gpu: "h100-80g" }).plan;
    const explicit = resolvePlan({
      model: { id: "my-qwen3", architecture: base.model.architecture },
      gpu: "h100-80g",
      template: "qwen3",
    });
    expect(explicit.plan.model).toMatchObject({ id: "my-qwen3", source: "explicit" });
  });
});

describe("input that does not form a plan", () => {
  it("names the closest catalog ids for an unknown model or GPU", () => {
    expect(usageIssues({ model: "Qwen/Qwen2.5-7B-Instrct", gpu: "h100-80g" })[0]?.hint).toContain(
      "Qwen/Qwen2.5-7B-Instruct",
    );
    expect(usageIssues({ model: "Qwen/Qwen2.5-7B", gpu: "h10" })[0]?.hint).toContain("h100-80g");
    // a short name without the organisation finds the model it names; a name like nothing gets no guess
    expect(usageIssues({ model: "llama3-8b", gpu: "h100-80g" })[0]?.hint).toMatch(
      /^Did you mean "meta-llama\/Meta-Llama-3-8B"/,
    );
    expect(usageIssues({ model: "foo/bar", gpu: "h100-80g" })[0]?.hint).not.toContain("Did you mean");
  });

  it("reads a copy under another organisation as the catalog model of that repository name, with a warning", () => {
    const { plan, issues } = resolvePlan({ model: "NousResearch/Llama-2-7b-hf", gpu: "a100-80g" });
    const original = resolvePlan({ model: "meta-llama/Llama-2-7b-hf", gpu: "a100-80g" }).plan;
    // the id LLaMA-Factory downloads stays the user's; the dimensions and template are the original's
    expect(plan.model.id).toBe("NousResearch/Llama-2-7b-hf");
    expect(plan.model.architecture).toEqual(original.model.architecture);
    expect(plan.template).toBe(original.template);
    expect(emitFiles(plan).find((f) => f.path === "train.yaml")?.contents).toMatch(
      /^model_name_or_path: NousResearch\/Llama-2-7b-hf$/m,
    );
    expect(issues.find((i) => i.code === "MODEL_MIRROR")).toMatchObject({
      severity: "warning",
      path: "model",
      message: expect.stringContaining("read as meta-llama/Llama-2-7b-hf"),
    });
    // an instruct copy takes the instruct id's own template
    expect(
      resolvePlan({ model: "LLM-Research/Meta-Llama-3-8B-Instruct", gpu: "a100-80g" }).plan.template,
    ).toBe("llama3");
    // catalog ids themselves carry no such warning
    expect(original.model.id).toBe("meta-llama/Llama-2-7b-hf");
    expect(
      resolvePlan({ model: "meta-llama/Llama-2-7b-hf", gpu: "a100-80g" }).issues.map((i) => i.code),
    ).not.toContain("MODEL_MIRROR");
  });

  it("does not read a quantized or converted upload as its 16-bit original", () => {
    for (const model of [
      "unsloth/llama-3-8b-bnb-4bit",
      "TheBloke/Llama-2-7b-hf-GPTQ",
      "someone/Llama-2-7b-hf-AWQ",
      "someone/Meta-Llama-3-8B-Instruct-w4a16",
      "someone/Meta-Llama-3-8B-Instruct-Int4",
      // the repository name alone would match: the organisation publishes converted copies
      "mlx-community/Meta-Llama-3-8B-Instruct",
      "TheBloke/Llama-2-7b-hf",
    ]) {
      const [issue] = usageIssues({ model, gpu: "a100-80g" });
      expect(issue?.code).toBe("MODEL_UNKNOWN");
      expect(issue?.hint).toContain("its config.json says how it is quantized");
    }
  });

  it("reads a missing folder as a missing folder, not as another organisation's copy", () => {
    for (const model of [
      "./Llama-2-7b-hf",
      "../Llama-2-7b-hf",
      "~/Llama-2-7b-hf",
      "C:/Llama-2-7b-hf",
      "a/b/Llama-2-7b-hf",
    ]) {
      expect(usageIssues({ model, gpu: "a100-80g" })[0]?.code).toBe("MODEL_DIR_NOT_FOUND");
    }
    // the match is case-insensitive, as the hub's is
    expect(
      resolvePlan({ model: "nousresearch/LLAMA-2-7B-HF", gpu: "a100-80g" }).plan.model.architecture,
    ).toEqual(resolvePlan({ model: "meta-llama/Llama-2-7b-hf", gpu: "a100-80g" }).plan.model.architecture);
  });

  it("asks which card a name means when it fits several (A100: 40 or 80 GB)", () => {
    const [issue] = usageIssues({ model: "Qwen/Qwen2.5-7B", gpu: "A100" });
    expect(issue?.code).toBe("GPU_UNKNOWN");
    expect(issue?.message).toContain("a100-40g (40 GiB), a100-80g (80 GiB)");
    expect(issue?.hint).toBe("Pick one: --gpu a100-40g or --gpu a100-80g.");
  });

  it("rejects qualifier flags without the flag they qualify", () => {
    expect(
      usageIssues({ model: "Qwen/Qwen3-8B", gpu: "h100-80g", fsdpStrategy: "shard_grad_op" })[0]?.path,
    ).toBe("fsdpStrategy");
    expect(usageIssues({ model: "Qwen/Qwen3-8B", gpu: "h100-80g", quantBits: 4 })[0]?.path).toBe("quantBits");
    expect(
      usageIssues({ model: "Qwen/Qwen3-8B", gpu: "h100-80g", method: "full", loraRank: 16 })[0]?.path,
    ).toBe("loraRank");
    expect(usageIssues({ model: "Qwen/Qwen3-8B", gpu: "h100-80g", freezeTrainableLayers: 4 })[0]?.path).toBe(
      "freezeTrainableLayers",
    );
  });

  it("rejects out-of-range values and unknown fields with the field named", () => {
    expect(usageIssues({ model: "Qwen/Qwen3-8B", gpu: "h100-80g", microBatch: 0 })[0]?.path).toBe(
      "microBatch",
    );
    const unknown = usageIssues({ model: "Qwen/Qwen3-8B", gpu: "h100-80g", loraRnak: 8 })[0];
    expect(unknown?.message).toContain('"loraRnak"');
    expect(unknown?.hint).toContain('"loraRank"');
  });

  it("rejects images for a text-only model and unknown optimizers or templates", () => {
    expect(usageIssues({ model: "Qwen/Qwen3-8B", gpu: "h100-80g", imagesPerSample: 1 })[0]?.code).toBe(
      "MODEL_HAS_NO_VISION",
    );
    expect(usageIssues({ model: "Qwen/Qwen3-8B", gpu: "h100-80g", optimizer: "adamw" })[0]?.path).toBe(
      "optimizer",
    );
    expect(usageIssues({ model: "Qwen/Qwen3-8B", gpu: "h100-80g", template: "qwen4" })[0]?.hint).toContain(
      "qwen",
    );
  });
});

describe("rules that stop a run", () => {
  const base = { model: "Qwen/Qwen2.5-0.5B-Instruct", gpu: "a100-80g", gpus: 2 } as const;
  const GALORE = { method: "full", lowMemoryOptimizer: "galore", precision: "pure_bf16" } as const;
  const cases: [string, Record<string, unknown>][] = [
    ["QLORA_8BIT_SHARDED", { method: "qlora", quantBits: 8, sharding: "zero3" }],
    ["PREQUANTIZED_SHARDED", { method: "qlora", quantMethod: "gptq", sharding: "fsdp" }],
    ["PURE_BF16_ZERO3", { precision: "pure_bf16", sharding: "zero3" }],
    ["OFFLOAD_WITHOUT_SHARDING", { offload: "optimizer" }],
    ["OFFLOAD_PARAMS_NEEDS_ZERO3", { offload: "params", sharding: "zero2" }],
    ["FSDP_OFFLOAD_ALL_OR_NOTHING", { offload: "optimizer", sharding: "fsdp2" }],
    ["FA2_UNSUPPORTED_GPU", { gpu: "v100-32g", precision: "fp16", attention: "fa2" }],
    ["BF16_UNSUPPORTED_GPU", { gpu: "t4", precision: "bf16" }],
    ["TEMPLATE_NOT_MULTIMODAL", { model: "Qwen/Qwen2-VL-2B-Instruct", imagesPerSample: 1, template: "qwen" }],
    ["DORA_PREQUANTIZED", { method: "qlora", quantMethod: "gptq", useDora: true }],
    ["IMAGE_PIXELS_BELOW_MIN", { model: "Qwen/Qwen2-VL-2B-Instruct", imageMaxPixels: 512 }],
    ["LIGER_UNSUPPORTED_MODEL", { model: "internlm/internlm2_5-7b-chat", liger: true }],
    ["GEMMA2_ATTENTION", { model: "google/gemma-2-2b-it", attention: "sdpa" }],
    ["QLORA_FULL_LOAD_PER_RANK", { method: "qlora", sharding: "zero3" }],
    ["FSDP2_PEFT_ONE_UNIT", { method: "lora", sharding: "fsdp2" }],
    ["FP32_NOT_EXPRESSIBLE", { precision: "fp32" }],
    ["PREQUANTIZED_CHECKPOINT_EXPECTED", { method: "qlora", quantMethod: "gptq" }],
    [
      "FP8_CHECKPOINT",
      {
        model: "deepseek-ai/DeepSeek-V3",
        gpu: "h200",
        gpus: 8,
        nodes: 4,
        sharding: "zero3",
        method: "lora",
      },
    ],
    ["SEQ_LEN_BEYOND_CONTEXT", { model: "meta-llama/Llama-2-7b-chat-hf", seqLen: 8192 }],
    ["IMAGE_TOKENS_BEYOND_CUTOFF", { model: "Qwen/Qwen2-VL-2B-Instruct", imagesPerSample: 2, seqLen: 1024 }],
    [
      "VIDEO_PIXELS_BELOW_MIN",
      { model: "Qwen/Qwen2-VL-2B-Instruct", videosPerSample: 1, videoMaxPixels: 100 },
    ],
    [
      "PACKED_MEDIA",
      { model: "Qwen/Qwen2-VL-2B-Instruct", imagesPerSample: 1, imageMaxPixels: 50176, packing: true },
    ],
    [
      "VIDEO_TOKENS_BEYOND_CUTOFF",
      { model: "Qwen/Qwen2-VL-2B-Instruct", videosPerSample: 1, videoFrames: 64, seqLen: 1024 },
    ],
    [
      "FSDP_UNSHARDED_ACCUMULATION",
      { model: "Qwen/Qwen2.5-1.5B-Instruct", method: "full", sharding: "fsdp" },
    ],
    [
      "OFFLOAD_REPLACES_OPTIMIZER",
      { optimizer: "adamw_8bit", sharding: "zero2", offload: "optimizer", hostRam: 512 },
    ],
    ["LAYERWISE_DISTRIBUTED", { ...GALORE, lowMemoryLayerwise: true, gradAccum: 1 }],
    ["LAYERWISE_GRAD_ACCUM", { ...GALORE, gpus: 1, lowMemoryLayerwise: true }],
    ["PROJECTED_OPTIMIZER_DEEPSPEED", { ...GALORE, sharding: "zero2" }],
    [
      "PROJECTED_OPTIMIZER_FSDP",
      { ...GALORE, lowMemoryOptimizer: "apollo", sharding: "fsdp", syncEachBatch: true },
    ],
    [
      "BADAM_NO_LAYER_BLOCKS",
      { method: "full", gpus: 1, lowMemoryOptimizer: "badam", model: "Qwen/Qwen-7B" },
    ],
    [
      "BADAM_TRAINS_VISION",
      { method: "full", gpus: 1, lowMemoryOptimizer: "badam", model: "google/gemma-3-4b-it" },
    ],
    [
      "BADAM_OFFLOAD",
      { method: "full", lowMemoryOptimizer: "badam", sharding: "zero3", offload: "optimizer" },
    ],
    ["PROJECTED_OPTIMIZER_OPTIM", { ...GALORE, gpus: 1, optimizer: "adamw_torch_fused" }],
    ["BADAM_NEEDS_ZERO3", { method: "full", lowMemoryOptimizer: "badam" }],
    ["PROJECTED_OPTIMIZER_MIXED", { method: "full", gpus: 1, lowMemoryOptimizer: "galore" }],
    ["MUON_SHARDED", { method: "lora", lowMemoryOptimizer: "muon", sharding: "fsdp" }],
    ["BNB_OPTIMIZER_FSDP2", { method: "full", optimizer: "adamw_8bit", sharding: "fsdp2" }],
    [
      "BADAM_PAGED_OPTIMIZER",
      { method: "full", lowMemoryOptimizer: "badam", optimizer: "paged_adamw_8bit", gpus: 1 },
    ],
    ["MUON_DEEPSPEED", { method: "lora", lowMemoryOptimizer: "muon", sharding: "zero3" }],
    [
      "OFFLOAD_REPLACES_LOW_MEMORY_OPTIMIZER",
      { lowMemoryOptimizer: "adam_mini", sharding: "zero3", offload: "optimizer", hostRam: 512 },
    ],
  ];
  it("FSDP2_PEFT_ONE_UNIT is silent when its assumption is turned off", () => {
    const input = { ...base, method: "lora", sharding: "fsdp2" } as const;
    const codes = (assumptions = {}) => analyzePlan(input, { assumptions }).issues.map((i) => i.code);
    expect(codes()).toContain("FSDP2_PEFT_ONE_UNIT");
    expect(codes({ peftFsdp2WrapsRootOnly: false })).not.toContain("FSDP2_PEFT_ONE_UNIT");
  });

  it("covers every rule of the table", () => {
    expect(cases.map(([code]) => code).sort()).toEqual(PLAN_RULES.map((r) => r.code).sort());
  });
  for (const [code, extra] of cases) {
    const rule = PLAN_RULES.find((r) => r.code === code);
    it(`${code} fires alone, at the first field of its definition`, () => {
      const analysis = analyzePlan({ ...base, ...extra });
      const found = analysis.issues.filter((i) => i.severity === rule?.severity);
      expect(found.map((i) => i.code)).toEqual([code]);
      expect(found[0]?.path).toBe(rule?.fields[0]);
      expect(analysis.valid).toBe(rule?.severity !== "error");
    });
  }
  it("each rule has a fixture that does not trigger it: the base plan", () => {
    const codes = analyzePlan(base).issues.map((i) => i.code);
    for (const r of PLAN_RULES) expect(codes).not.toContain(r.code);
  });
  it("a plain plan breaks no rule", () => {
    expect(analyzePlan(base).valid).toBe(true);
  });
  it("FSDP_UNSHARDED_ACCUMULATION stays quiet with sync_each_batch, one micro-batch per step, FSDP2 or adapters", () => {
    const codes = (extra: Record<string, unknown>) =>
      analyzePlan({
        ...base,
        model: "Qwen/Qwen2.5-1.5B-Instruct",
        method: "full",
        sharding: "fsdp",
        ...extra,
      }).issues.map((i) => i.code);
    expect(codes({})).toContain("FSDP_UNSHARDED_ACCUMULATION");
    for (const extra of [
      { syncEachBatch: true },
      { gradAccum: 1 },
      { sharding: "fsdp2" },
      { method: "lora" },
    ]) {
      expect(codes(extra), JSON.stringify(extra)).not.toContain("FSDP_UNSHARDED_ACCUMULATION");
    }
  });

  it("OFFLOAD_REPLACES_OPTIMIZER stays quiet where AdamW runs anyway or nothing is swapped", () => {
    const codes = (extra: Record<string, unknown>) =>
      analyzePlan({ ...base, sharding: "zero3", offload: "optimizer", hostRam: 512, ...extra }).issues.map(
        (i) => i.code,
      );
    expect(codes({})).not.toContain("OFFLOAD_REPLACES_OPTIMIZER");
    expect(codes({ optimizer: "adamw_torch_fused" })).not.toContain("OFFLOAD_REPLACES_OPTIMIZER");
    expect(codes({ optimizer: "paged_adamw_32bit" })).not.toContain("OFFLOAD_REPLACES_OPTIMIZER");
    expect(codes({ optimizer: "sgd", offload: "none" })).not.toContain("OFFLOAD_REPLACES_OPTIMIZER");
    expect(codes({ optimizer: "adafactor", offload: "params" })).toContain("OFFLOAD_REPLACES_OPTIMIZER");
    // FSDP's CPU offload steps the optimizer it was given
    expect(codes({ optimizer: "sgd", sharding: "fsdp", offload: "params" })).not.toContain(
      "OFFLOAD_REPLACES_OPTIMIZER",
    );
  });
});

describe("memory-efficient optimizers in a plan", () => {
  const base = { model: "Qwen/Qwen2.5-0.5B-Instruct", gpu: "a100-80g" } as const;
  const codes = (input: Record<string, unknown>) => {
    try {
      resolvePlan({ ...base, ...input });
      return [];
    } catch (e) {
      return (e as TunefitError).issues.map((i) => `${i.code} ${i.path}`);
    }
  };
  it("takes GaLore and APOLLO on full or freeze tuning, BAdam on full tuning only", () => {
    expect(codes({ method: "full", lowMemoryOptimizer: "galore" })).toEqual([]);
    expect(codes({ method: "freeze", lowMemoryOptimizer: "apollo" })).toEqual([]);
    expect(codes({ method: "full", lowMemoryOptimizer: "badam" })).toEqual([]);
    expect(codes({ method: "lora", lowMemoryOptimizer: "galore" })).toEqual([
      "FLAG_WITHOUT_QUALIFIED lowMemoryOptimizer",
    ]);
    expect(codes({ method: "freeze", lowMemoryOptimizer: "badam" })).toEqual([
      "FLAG_WITHOUT_QUALIFIED lowMemoryOptimizer",
    ]);
    expect(codes({ method: "full", lowMemoryOptimizer: "badam", lowMemoryRank: 8 })).toEqual([
      "FLAG_WITHOUT_QUALIFIED lowMemoryRank",
    ]);
  });
  it("fills the rank and layer-wise switch for GaLore and APOLLO only, and writes their optim", () => {
    const galore = resolvePlan({ ...base, method: "full", lowMemoryOptimizer: "galore" }).plan;
    expect([galore.lowMemoryRank, galore.lowMemoryLayerwise, galore.optimizer]).toEqual([
      16,
      false,
      "adamw_torch",
    ]);
    const badam = resolvePlan({ ...base, method: "full", lowMemoryOptimizer: "badam" }).plan;
    expect([badam.lowMemoryRank, badam.lowMemoryLayerwise, badam.optimizer]).toEqual([null, null, null]);
    const eight = resolvePlan({
      ...base,
      method: "full",
      lowMemoryOptimizer: "galore",
      optimizer: "adamw_8bit",
    }).plan;
    expect(eight.optimizer).toBe("adamw_8bit");
  });
});

describe("input errors in words", () => {
  it("say the bound or the form a value must take, not zod's own text", () => {
    const base = { model: "Qwen/Qwen2.5-7B-Instruct", gpu: "a100-80g" };
    expect(usageIssues({ ...base, seqLen: 0 })[0]?.message).toBe("seqLen 0: must be at least 1");
    expect(usageIssues({ ...base, microBatch: 1.5 })[0]?.message).toBe(
      "microBatch 1.5: must be a whole number",
    );
    expect(usageIssues({ ...base, headroom: 1 })[0]?.message).toBe("headroom 1: must be less than 1");
    expect(usageIssues({ ...base, sharding: "zero4" })[0]?.message).toMatch(
      /^sharding "zero4": must be one of "none"/,
    );
    for (const i of [
      ...usageIssues({ ...base, seqLen: 0 }),
      ...usageIssues({ ...base, loraTarget: 7 }),
      ...usageIssues({ ...base, model: "" }),
    ])
      expect(i.message).not.toMatch(/Too small|Too big|Invalid input|expected/);
  });
});

describe("bounds past any real run", () => {
  it("read a typo as an input error, not as petabytes", () => {
    const base = { model: "Qwen/Qwen2.5-7B-Instruct", gpu: "a100-80g" };
    expect(usageIssues({ ...base, seqLen: 99_999_999_999 })[0]?.message).toBe(
      "seqLen 99999999999: must be at most 16777216",
    );
    expect(usageIssues({ ...base, microBatch: 2 ** 21 })[0]?.path).toBe("microBatch");
    expect(() => resolvePlan({ ...base, seqLen: 1_048_576 })).not.toThrow();
  });
});
