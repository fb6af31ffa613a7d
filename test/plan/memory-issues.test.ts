import { describe, expect, it } from "vitest";
import { analyzePlan } from "../../src/plan/analyze.ts";

// Qwen2.5-72B QLoRA under FSDP on 2 × RTX 4090: the 4-bit shards fit, wrapping the big-vocabulary root and the
// step do not
const a = analyzePlan({
  model: "Qwen/Qwen2.5-72B-Instruct",
  gpu: "rtx4090",
  gpus: 2,
  method: "qlora",
  sharding: "fsdp",
  microBatch: 1,
  seqLen: 512,
});

describe("TRAIN_OOM", () => {
  const oom = a.issues.find((i) => i.code === "TRAIN_OOM");

  it("names every part, so the parts add up to the total it gives", () => {
    expect(oom).toBeDefined();
    const numbers = [...(oom?.message ?? "").matchAll(/(\d+\.\d) GiB/g)].map((m) => Number(m[1]));
    const [total, ...rest] = numbers;
    const parts = rest.slice(0, 8); // weights … runtime; then usable, card
    expect(parts).toHaveLength(8);
    expect(Math.abs(parts.reduce((x, y) => x + y, 0) - (total ?? 0))).toBeLessThanOrEqual(0.4);
    expect(oom?.message).toContain("allocator reserve");
  });

  it("does not suggest QLoRA to a QLoRA plan", () => {
    expect(oom?.hint).not.toContain("--method qlora");
    expect(oom?.hint).toContain("--offload params");
  });
});

describe("LOAD_FSDP_WRAP_OOM", () => {
  it("says that FSDP's wrap of the last unit runs out, with the numbers and the way out", () => {
    const wrap = a.issues.find((i) => i.code === "LOAD_FSDP_WRAP_OOM");
    expect(wrap?.message).toMatch(/on top of the other shards \(\d+\.\d GiB\): \d+\.\d GiB at the peak/);
    expect(wrap?.hint).toContain("--offload params");
    expect(a.issues.some((i) => i.code === "LOAD_SHARD_OOM")).toBe(false);
  });
});
