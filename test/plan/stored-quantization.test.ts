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
