import { describe, expect, it } from "vitest";
import { run } from "../../src/cli/run.ts";
import { analyzePlan } from "../../src/plan/analyze.ts";
import { inputToArgs, maxFitting, recommend } from "../../src/plan/recommend.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import { estimateStepTime } from "../../src/plan/step-time.ts";
import type { PlanInput } from "../../src/schema/plan.ts";

const SEED: PlanInput = { model: "Qwen/Qwen2-VL-72B-Instruct", gpu: "rtx4090", gpus: 8, method: "full" };

function flagsToObject(args: readonly string[]): PlanInput {
  let stdout = "";
  const code = run(["plan", ...args, "--json"], {
    stdout: (t) => (stdout += t),
    stderr: () => {},
    cwd: process.cwd(),
  });
  expect(code).toBe(0);
  return JSON.parse(stdout);
}

describe("recommend", () => {
  const result = recommend(SEED);

  it("returns only plans that fit, fastest first, each reproducible from its flags alone", () => {
    expect(result.recommendations.length).toBeGreaterThan(0);
    expect(result.evaluated).toBeGreaterThan(100);
    const times = result.recommendations.map((r) => r.stepSeconds);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    for (const r of result.recommendations) {
      const a = analyzePlan(r.input);
      expect(a.valid).toBe(true);
      expect(a.memory.train.perGpu.deviceBytes).toBe(r.deviceBytes);
      const report = flagsToObject(r.args) as unknown as {
        memory: { train: { perGpu: { deviceBytes: number } } };
      };
      expect(report.memory.train.perGpu.deviceBytes).toBe(r.deviceBytes);
    }
  });

  it("says what a method change trades", () => {
    expect(result.recommendations.every((r) => /adapters/.test(r.summary))).toBe(true);
  });

  it("tries full fine-tuning one layer at a time (BAdam), never with DeepSpeed's offload (BADAM_OFFLOAD)", () => {
    const llama = recommend({
      model: "meta-llama/Meta-Llama-3-8B-Instruct",
      gpu: "rtx4090",
      method: "full",
    }).recommendations;
    const badam = llama.filter((r) => /BAdam/.test(r.summary));
    expect(badam.length).toBeGreaterThan(0);
    for (const r of badam) {
      expect(r.input).toMatchObject({ method: "full", lowMemoryOptimizer: "badam" });
      expect(r.input.offload === "none" || r.input.sharding === "none").toBe(true);
    }
  });

  it("steps full fine-tuning with the fused AdamW (no copy of the parameters), except under DeepSpeed's offload", () => {
    const full = recommend({
      model: "Qwen/Qwen2.5-7B-Instruct",
      gpu: "a100-80g",
      gpus: 2,
      method: "full",
    }).recommendations.filter((r) => r.input.method === "full");
    expect(full.length).toBeGreaterThan(0);
    for (const r of full) {
      const cpuAdam = r.input.offload !== "none" && /^zero/.test(r.input.sharding ?? "");
      if (r.input.optimizer !== "adamw_8bit")
        expect(r.input.optimizer).toBe(cpuAdam ? undefined : "adamw_torch_fused");
      expect(/fused AdamW/.test(r.summary)).toBe(r.input.optimizer === "adamw_torch_fused");
    }
    // Adam-mini and Muon are built without optim: no fused AdamW is offered for them
    const mini = recommend({
      model: "Qwen/Qwen2.5-7B-Instruct",
      gpu: "a100-80g",
      gpus: 2,
      method: "full",
      lowMemoryOptimizer: "adam_mini",
    }).recommendations.filter((r) => r.input.lowMemoryOptimizer === "adam_mini");
    expect(mini.length).toBeGreaterThan(0);
    for (const r of mini) expect(r.input.optimizer).not.toBe("adamw_torch_fused");
  });

  it("keeps the global batch", () => {
    for (const r of result.recommendations)
      expect((r.input.microBatch ?? 1) * (r.input.gradAccum ?? 8)).toBe(8);
  });

  it("replaces what the GPU cannot run (bf16, FlashAttention-2 on a V100) instead of finding nothing", () => {
    const input: PlanInput = { model: "Qwen/Qwen3-4B", gpu: "v100-32g", precision: "bf16", attention: "fa2" };
    expect(analyzePlan(input).valid).toBe(false);
    const found = recommend(input).recommendations;
    expect(found.length).toBeGreaterThan(0);
    for (const r of found) {
      expect(r.input).toMatchObject({ precision: "fp16", attention: "sdpa" });
      expect(r.summary).toMatch(/fp16 \(the GPU has no bf16\).*SDPA attention/);
    }
  });

  it("tries FlashAttention-2 where SDPA's padding mask costs memory (long sequences), and not otherwise", () => {
    const long: PlanInput = {
      model: "meta-llama/Llama-3.1-8B-Instruct",
      gpu: "a100-80g",
      seqLen: 81920,
      liger: true,
    };
    const found = recommend(long).recommendations;
    expect(found[0]?.input.attention).toBe("fa2");
    expect(found[0]?.summary).toContain("FlashAttention-2");
    expect(analyzePlan(long).issues.find((i) => i.code === "TRAIN_OOM")?.hint).toContain("--attention fa2");
    // at 2,048 tokens the mask is small: the search keeps its size
    const short = recommend({ model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "a100-80g" });
    expect(short.recommendations.every((r) => r.input.attention === undefined)).toBe(true);
  });

  it("never ranks first a plan slower than the one asked for, when that one fits", () => {
    const input: PlanInput = { model: "Qwen/Qwen2.5-0.5B-Instruct", gpu: "h100-80g" };
    const asGiven = estimateStepTime(resolvePlan(input).plan).stepSeconds;
    const ok = recommend(input);
    expect(ok.recommendations[0]?.stepSeconds).toBeLessThanOrEqual(asGiven);
  });
});

describe("maxFitting", () => {
  it("searches sequence lengths from the image tokens up: a shorter sample cannot hold them", () => {
    const input: PlanInput = {
      model: "Qwen/Qwen2-VL-7B-Instruct",
      gpu: "a100-80g",
      imagesPerSample: 3,
      imageMaxPixels: 1_000_000,
    };
    const s = maxFitting(input, "seqLen");
    expect(s).toBeGreaterThan(3 * 1275);
    expect(analyzePlan({ ...input, seqLen: s }).valid).toBe(true);
    expect(analyzePlan({ ...input, seqLen: s + 1 }).valid).toBe(false);
    // below the image tokens the plan breaks a rule, not the memory
    const short = analyzePlan({ ...input, seqLen: 2048 });
    expect(short.issues.find((i) => i.severity === "error")?.code).toBe("IMAGE_TOKENS_BEYOND_CUTOFF");
  });

  it("finds the largest micro-batch and sequence length that fit, and they are tight", () => {
    const input: PlanInput = { model: "Qwen/Qwen2.5-7B-Instruct", gpu: "a100-80g" };
    const mb = maxFitting(input, "microBatch");
    expect(mb).toBeGreaterThan(1);
    expect(analyzePlan({ ...input, microBatch: mb }).valid).toBe(true);
    expect(analyzePlan({ ...input, microBatch: mb + 1 }).valid).toBe(false);
    const seq = maxFitting(input, "seqLen");
    expect(analyzePlan({ ...input, seqLen: seq }).valid).toBe(true);
    expect(analyzePlan({ ...input, seqLen: seq + 1 }).valid).toBe(false);
  });

  it("is 0 when even 1 does not fit", () => {
    expect(maxFitting(SEED, "microBatch")).toBe(0);
  });
});

describe("step time", () => {
  it("grows with tokens, shrinks with faster GPUs, and charges ZeRO-3 more communication than ZeRO-2", () => {
    const t = (input: Record<string, unknown>) =>
      estimateStepTime(
        resolvePlan({ model: "Qwen/Qwen2.5-7B-Instruct", gpu: "a100-80g", gpus: 8, ...input }).plan,
      );
    expect(t({ microBatch: 2 }).computeSeconds).toBeCloseTo(2 * t({ microBatch: 1 }).computeSeconds, 6);
    expect(t({ gpu: "h100-80g" }).computeSeconds).toBeLessThan(t({}).computeSeconds);
    expect(t({ method: "full", sharding: "zero3" }).communicationSeconds).toBeGreaterThan(
      t({ method: "full", sharding: "zero2" }).communicationSeconds,
    );
    expect(t({ method: "qlora" }).computeSeconds).toBeGreaterThan(t({}).computeSeconds);
  });

  it("runs a vision tower per patch, not per token: forward only while frozen", () => {
    const flops = (input: Partial<PlanInput>) =>
      estimateStepTime(resolvePlan({ model: "Qwen/Qwen2-VL-7B-Instruct", gpu: "a100-80g", ...input }).plan)
        .flopsPerGpu;
    const text = flops({});
    // no patches, no tower: the same FLOPs as its language model alone
    const lm = estimateStepTime(resolvePlan({ model: "Qwen/Qwen2-7B-Instruct", gpu: "a100-80g" }).plan);
    expect(text).toBeCloseTo(lm.flopsPerGpu, -9);
    // 16 frames of 65,536 pixels: 8 × 334 patches through 675.8 M parameters (tower + merger), forward only,
    // for each of the 8 samples of a step
    const frozen = flops({ videosPerSample: 1, videoFrames: 16 }) - text;
    expect(frozen / (8 * 2 * 8 * 334 * 675.8e6)).toBeCloseTo(1, 1);
    // trained (with checkpointing): forward, recompute and backward, four times as much
    expect(
      (flops({ videosPerSample: 1, videoFrames: 16, freezeVisionTower: false }) - text) / frozen,
    ).toBeCloseTo(4, 1);
  });
});

describe("inputToArgs", () => {
  it("writes model and hardware first and on/off for switches", () => {
    expect(
      inputToArgs({ liger: true, model: "m", gpu: "t4", loraTarget: ["q_proj", "v_proj"], method: "lora" }),
    ).toEqual([
      "--model",
      "m",
      "--gpu",
      "t4",
      "--method",
      "lora",
      "--liger",
      "on",
      "--lora-target",
      "q_proj,v_proj",
    ]);
  });
});
