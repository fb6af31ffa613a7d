import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { trainYaml } from "../../src/emit/train-yaml.ts";
import { TunefitError } from "../../src/errors.ts";
import { analyzePlan } from "../../src/plan/analyze.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";

/** Mistral-7B-v0.3's config.json, with a quantization_config as a quantized upload of it carries. */
const mistral = JSON.parse(
  readFileSync(new URL("../fixtures/configs/mistral-7b-v0.3/config.json", import.meta.url), "utf8"),
) as Record<string, unknown>;
const stored = (quantization_config: Record<string, unknown>) => ({
  id: "someone/Mistral-7B-v0.3-quantized",
  config: { ...mistral, quantization_config },
});
const GPTQ4 = { quant_method: "gptq", bits: 4, group_size: 128, desc_act: false };
const base = { gpu: "rtx3090", template: "mistral" } as const;

describe("a checkpoint stored quantized (its config.json's quantization_config)", () => {
  it("trains LoRA on the stored weights: planned as QLoRA with its method and width", () => {
    const r = resolvePlan({ ...base, model: stored(GPTQ4) });
    expect([r.plan.method, r.plan.quantMethod, r.plan.quantBits]).toEqual(["qlora", "gptq", 4]);
    expect(r.issues.find((i) => i.code === "CHECKPOINT_QUANTIZED")?.severity).toBe("info");
    // the same memory as asking for GPTQ on the 16-bit architecture, without the warning that it is 16-bit
    const asked = analyzePlan({
      ...base,
      model: { id: "plain", config: mistral },
      method: "qlora",
      quantMethod: "gptq",
    });
    const read = analyzePlan({ ...base, model: stored(GPTQ4) });
    expect(read.memory.train.perGpu.breakdown.weights).toBe(asked.memory.train.perGpu.breakdown.weights);
    expect(asked.issues.map((i) => i.code)).toContain("PREQUANTIZED_CHECKPOINT_EXPECTED");
    expect(read.issues.map((i) => i.code)).not.toContain("PREQUANTIZED_CHECKPOINT_EXPECTED");
    // 4-bit weights: well under the 16-bit checkpoint's 14.5 GB
    expect(read.memory.train.perGpu.breakdown.weights).toBeLessThan(6 * 1024 ** 3);
  });

  it("reads AWQ's width and bitsandbytes' load_in_* flags; the YAML leaves quantization_bit to the checkpoint", () => {
    const awq = resolvePlan({
      ...base,
      model: stored({ quant_method: "awq", w_bit: 4, q_group_size: 128 }),
    }).plan;
    expect([awq.quantMethod, awq.quantBits]).toEqual(["awq", 4]);
    const bnb = resolvePlan({
      ...base,
      model: stored({ quant_method: "bitsandbytes", load_in_8bit: true }),
    }).plan;
    expect([bnb.method, bnb.quantMethod, bnb.quantBits]).toEqual(["qlora", "bnb", 8]);
    expect(trainYaml(bnb)).not.toHaveProperty("quantization_bit");
    // quantizing a 16-bit checkpoint while loading still writes it
    expect(
      trainYaml(resolvePlan({ ...base, model: { id: "plain", config: mistral }, method: "qlora" }).plan),
    ).toMatchObject({
      quantization_bit: 4,
    });
  });

  it("keeps the stored width over --quant-bits, with a warning, and refuses full or freeze tuning", () => {
    const r = resolvePlan({ ...base, model: stored(GPTQ4), method: "qlora", quantBits: 8 });
    expect(r.plan.quantBits).toBe(4);
    expect(r.issues.find((i) => i.code === "CHECKPOINT_QUANTIZED")).toMatchObject({
      severity: "warning",
      path: "quantBits",
    });
    for (const method of ["full", "freeze"] as const) {
      let error: unknown;
      try {
        resolvePlan({ ...base, model: stored(GPTQ4), method });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(TunefitError);
      expect((error as TunefitError).issues[0]).toMatchObject({
        code: "QUANTIZED_CHECKPOINT_LORA_ONLY",
        path: "method",
      });
    }
  });

  it("says where it cannot model the stored format, and counts 16-bit weights there", () => {
    for (const q of [
      { quant_method: "fp8", weight_block_size: [128, 128] },
      { quant_method: "gptq", bits: 3 },
    ]) {
      const r = resolvePlan({ ...base, model: stored(q) });
      expect(r.plan.method).toBe("lora");
      expect(r.issues.map((i) => i.code)).toContain("CHECKPOINT_QUANTIZATION_UNMODELLED");
    }
  });
});

describe("what LLaMA-Factory refuses on a quantized checkpoint, whatever its format", () => {
  const codes = (input: Record<string, unknown>) =>
    analyzePlan({ ...base, ...input }).issues.map((i) => i.code);
  it("refuses ZeRO-3 and FSDP for every stored format it keeps quantized, bitsandbytes included", () => {
    for (const q of [
      GPTQ4,
      { quant_method: "bitsandbytes", load_in_4bit: true },
      { quant_method: "gptq", bits: 3 },
    ])
      for (const sharding of ["zero3", "fsdp", "fsdp2"] as const)
        expect(codes({ model: stored(q), gpus: 2, sharding })).toContain("PREQUANTIZED_SHARDED");
    expect(codes({ model: stored(GPTQ4), gpus: 2, sharding: "zero2" })).not.toContain("PREQUANTIZED_SHARDED");
    // fp8 is dequantized while loading: a 16-bit model, sharded like one
    expect(codes({ model: stored({ quant_method: "fp8" }), gpus: 2, sharding: "zero3" })).not.toContain(
      "PREQUANTIZED_SHARDED",
    );
  });

  it("refuses full tuning on formats it does not model too, except those dequantized while loading", () => {
    expect(() =>
      resolvePlan({ ...base, model: stored({ quant_method: "gptq", bits: 3 }), method: "full" }),
    ).toThrow(/Quantized models can only be used for the LoRA tuning/);
    expect(resolvePlan({ ...base, model: stored({ quant_method: "fp8" }), method: "full" }).plan.method).toBe(
      "full",
    );
  });

  it("plans QLoRA asked of a format it does not model as LoRA on the 16-bit weights it counts", () => {
    const r = resolvePlan({ ...base, model: stored({ quant_method: "fp8" }), method: "qlora" });
    expect([r.plan.method, r.plan.quantBits]).toEqual(["lora", null]);
    expect(r.issues.find((i) => i.code === "CHECKPOINT_QUANTIZATION_UNMODELLED")?.message).toContain(
      "planned as LoRA",
    );
  });
});
