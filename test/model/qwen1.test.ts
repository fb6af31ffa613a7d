import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findCatalogModel } from "../../src/catalog/models.ts";
import { accelerateConfig } from "../../src/emit/accelerate.ts";
import { estimateTrainMemory } from "../../src/memory/train.ts";
import { linearModules } from "../../src/model/modules.ts";
import { countTrainable } from "../../src/model/trainable.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import type { PlanInput } from "../../src/schema/plan.ts";

// Qwen-1 (remote code, model_type qwen): Qwen2's shapes under its own module names (modeling_qwen.py).
const plan = (input: Partial<PlanInput>) =>
  resolvePlan({ model: "Qwen/Qwen-7B", gpu: "a100-80g", template: "default", ...input }).plan;

describe("Qwen-1", () => {
  it("names its linears c_attn (fused q/k/v with a bias), c_proj, w1 and w2", () => {
    const groups = linearModules(plan({}).model.architecture).map((g) => [
      g.name,
      g.inFeatures,
      g.outFeatures,
    ]);
    expect(groups).toEqual([
      ["c_attn", 4096, 3 * 4096],
      ["c_proj", 4096, 4096],
      ["w1", 4096, 11008],
      ["w2", 4096, 11008],
      ["c_proj", 11008, 4096],
    ]);
  });

  it("puts one LoRA adapter on c_attn: r · (h + 3h), not three of r · 2h", () => {
    const arch = plan({}).model.architecture;
    const r = 8;
    const onCattn = countTrainable(arch, { method: "lora", loraRank: r, loraTarget: ["c_attn"] });
    expect(onCattn.adapter).toBe(32 * r * (4096 + 3 * 4096));
    // `c_proj` names the attention output and the MLP's down projection alike: PEFT adapts both
    const onCproj = countTrainable(arch, { method: "lora", loraRank: r, loraTarget: ["c_proj"] });
    expect(onCproj.adapter).toBe(32 * r * (4096 + 4096) + 32 * r * (11008 + 4096));
  });

  it("trains wte and lm_head as additional targets, and freezes by attn/mlp/ln_1/ln_2", () => {
    const arch = plan({}).model.architecture;
    const emb = countTrainable(arch, { method: "lora", loraRank: 8, additionalTarget: ["wte", "lm_head"] });
    expect(emb.fullModules).toBe(2 * 151936 * 4096);
    const norms = countTrainable(arch, {
      method: "freeze",
      freezeTrainableLayers: 2,
      freezeTrainableModules: ["ln_1", "ln_2"],
    });
    expect(norms.trainable).toBe(2 * 2 * 4096);
  });

  it("takes its loss on bf16 logits under DeepSpeed (6 B per vocabulary-token), fp32 under autocast (12 B)", () => {
    const long = { seqLen: 8192, method: "lora", gradientCheckpointing: true } as const;
    const z2 = estimateTrainMemory(plan({ ...long, sharding: "zero2" })).breakdown.logits;
    const ddp = estimateTrainMemory(plan({ ...long })).breakdown.logits;
    expect(z2).toBe(8192 * 151936 * 6);
    expect(ddp).toBe(8192 * 151936 * 12);
    // a Qwen2 model of the same shapes upcasts under DeepSpeed too
    const qwen2 = estimateTrainMemory(
      resolvePlan({
        model: "Qwen/Qwen1.5-7B",
        gpu: "a100-80g",
        template: "default",
        ...long,
        sharding: "zero2",
      }).plan,
    ).breakdown.logits;
    expect(qwen2).toBe(8192 * 151936 * 12);
    // pure_bf16 under FSDP runs without the Trainer's autocast (no bf16: true beside it): the loss stays 16-bit
    const fsdp = (precision: "pure_bf16" | "bf16") =>
      estimateTrainMemory(plan({ ...long, gpus: 2, sharding: "fsdp", precision })).breakdown.logits;
    expect(fsdp("pure_bf16")).toBe(8192 * 151936 * 6);
    expect(fsdp("bf16")).toBe(8192 * 151936 * 12);
  });

  it("reads the bench's Qwen-1 config folders as the catalog's Qwen-1 models", () => {
    for (const [dir, id] of [
      ["qwen-1_8b", "Qwen/Qwen-1_8B"],
      ["qwen-7b", "Qwen/Qwen-7B"],
      ["qwen-14b", "Qwen/Qwen-14B"],
      ["qwen-72b", "Qwen/Qwen-72B"],
    ] as const) {
      const folder = resolvePlan(
        { model: `bench/models/${dir}`, gpu: "a100-80g", template: "default" },
        {
          cwd: join(import.meta.dirname, "../.."),
        },
      ).plan.model.architecture;
      expect(folder).toEqual(findCatalogModel(id)?.record.architecture);
    }
  });

  it("wraps QWenBlock under FSDP", () => {
    const fsdp = accelerateConfig(plan({ gpus: 2, sharding: "fsdp" }))?.fsdp_config as
      | Record<string, unknown>
      | undefined;
    expect(fsdp?.fsdp_transformer_layer_cls_to_wrap).toBe("QWenBlock");
  });
});
