import { describe, expect, it } from "vitest";
import { flagName, PLAN_FLAGS } from "../../src/cli/flags.ts";
import type { PlanInput } from "../../src/schema/plan.ts";
import { cli } from "../support/cli.ts";

/*
 * Every plan flag of the contract, given a bad value, stops with exit 2 and one message naming that flag's field.
 * Each flag runs with the flags that make it meaningful (its qualifier), so the error is about the value.
 */

const BASE = ["--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "a100-80g"];
/** What a flag needs beside it to mean something. */
const CONTEXT: Partial<Record<keyof PlanInput, string[]>> = {
  quantBits: ["--method", "qlora"],
  quantMethod: ["--method", "qlora"],
  fsdpStrategy: ["--sharding", "fsdp"],
  freezeTrainableLayers: ["--method", "freeze"],
  freezeTrainableModules: ["--method", "freeze"],
  lowMemoryOptimizer: ["--method", "full"],
  lowMemoryRank: ["--method", "full", "--low-memory-optimizer", "galore"],
  lowMemoryLayerwise: ["--method", "full", "--low-memory-optimizer", "galore"],
  gpuMemory: [],
};

/** Bad values per flag: wrong type, out of range, unknown enum value, unknown id. */
const BAD: Record<keyof PlanInput, readonly string[]> = {
  model: ["no-such/model-7b", ""],
  gpu: ["rtx9090", ""],
  gpuMemory: ["0", "-4", "lots"],
  gpus: ["0", "-1", "1.5", "eight", "1000000"],
  nodes: ["0", "-2", "2.5", "1000000"],
  hostRam: ["0", "-1", "big"],
  headroom: ["1", "-0.1", "1.5", "x"],
  method: ["sft", "LoRA2"],
  quantBits: ["3", "16", "four"],
  quantMethod: ["hqq", "gguf"],
  sharding: ["zero4", "ddp"],
  fsdpStrategy: ["hybrid", "FULL"],
  offload: ["nvme", "all"],
  lowMemoryOptimizer: ["lion", "GaLore"],
  lowMemoryRank: ["0", "1.5", "-16"],
  lowMemoryLayerwise: ["per-layer"],
  precision: ["fp8", "int8"],
  optimizer: ["adamw_9bit", "sgdd"],
  seqLen: ["0", "-512", "2k"],
  packing: ["maybe", "2"],
  microBatch: ["0", "1.5", "-1"],
  gradAccum: ["0", "0.5"],
  syncEachBatch: ["often"],
  gradientCheckpointing: ["sometimes"],
  attention: ["flash", "fa3x"],
  liger: ["yes please"],
  loraRank: ["0", "-8", "8.5"],
  loraTarget: ["q_proj;v_proj", "all,q_proj!"],
  loraAlpha: ["0", "1.5"],
  loraDropout: ["1", "-0.1", "x"],
  useDora: ["perhaps"],
  additionalTarget: ["embed tokens", "all"],
  freezeTrainableLayers: ["0", "1.5"],
  freezeTrainableModules: ["mlp;self_attn"],
  freezeVisionTower: ["sure"],
  freezeProjector: ["nah"],
  imagesPerSample: ["-1", "1.5"],
  imageMaxPixels: ["0", "-5"],
  videosPerSample: ["-1", "1.5"],
  videoFrames: ["0", "-2", "x"],
  videoMaxPixels: ["0", "-5"],
  dataset: ["a b", "x$(id)", "q'uote", "back`tick`"],
  template: ["qwen 2", "x;rm"],
};

describe("every plan flag rejects bad values (exit 2, the flag's field named)", () => {
  it("covers every flag of the contract", () => {
    expect(Object.keys(BAD).sort()).toEqual(Object.keys(PLAN_FLAGS).sort());
  });

  const cases = (Object.keys(BAD) as (keyof PlanInput)[]).flatMap((field) =>
    (BAD[field] ?? []).map((value) => ({ field, value })),
  );
  it.each(cases)("$field = $value", ({ field, value }) => {
    const flag = flagName(field);
    const base =
      field === "model" || field === "gpu" ? BASE.filter((_, i, a) => a[i - (i % 2)] !== flag) : BASE;
    const { code, stdout, stderr } = cli(["plan", ...base, ...(CONTEXT[field] ?? []), flag, value, "--json"]);
    expect(code, stderr).toBe(2);
    const out = JSON.parse(stdout) as { error: string; issues: { path: string; message: string }[] };
    expect(out.error).toBe("usage");
    // the field, or an element of it (loraTarget.0)
    expect(out.issues.some((i) => i.path === field || i.path.startsWith(`${field}.`))).toBe(true);
    expect(stderr).not.toMatch(/\n\s+at /); // never a stack trace
  });

  it("a flag that only qualifies an absent flag is refused with its own path", () => {
    for (const [field, flagArgs] of [
      ["fsdpStrategy", ["--fsdp-strategy", "full_shard"]],
      ["quantBits", ["--quant-bits", "4"]],
      ["loraRank", ["--method", "full", "--lora-rank", "8"]],
      ["freezeTrainableLayers", ["--freeze-trainable-layers", "2"]],
    ] as const) {
      const { code, stdout } = cli(["plan", ...BASE, ...flagArgs, "--json"]);
      expect(code).toBe(2);
      expect(JSON.parse(stdout).issues[0].path).toBe(field);
    }
  });

  it("unknown flags and arguments are refused, naming them", () => {
    const a = cli(["plan", ...BASE, "--lora-rnak", "8"]);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain("lora-rnak");
    const b = cli(["emit", ...BASE, "--out", "x", "stray"]);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain("stray");
  });
});
