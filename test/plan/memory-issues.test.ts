import { describe, expect, it } from "vitest";
import { analyzePlan } from "../../src/plan/analyze.ts";
import { SEED_QLORA_FSDP } from "../support/seed.ts";

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

describe("TRAIN_OOM's hint: only the ways out that apply to the plan", () => {
  const hintOf = (input: Parameters<typeof analyzePlan>[0]) =>
    analyzePlan(input).issues.find((i) => i.code === "TRAIN_OOM")?.hint ?? "";
  // Llama-3.1-8B QLoRA on one RTX 4090 at 2 × 4096 tokens: the logits are the larger part
  const long = {
    model: "meta-llama/Llama-3.1-8B",
    gpu: "rtx4090",
    method: "qlora",
    template: "llama3",
    seqLen: 4096,
    microBatch: 2,
  } as const;

  it("leaves out what is already on, and starts with the per-token parts when they dominate, largest saving first", () => {
    const on = hintOf(long);
    // Liger drops the fp32 logits, the largest part of this peak; then halving the sequence, then the micro-batch
    expect(on).toMatch(/^Turn on --liger \(no fp32 logits\), lower --seq-len, lower --micro-batch/);
    expect(on).not.toContain("--gradient-checkpointing");
    expect(on).not.toContain("--method qlora");
    expect(on).not.toContain("shard the model states"); // one GPU: nothing to shard over
    expect(on).toContain("--sharding zero3 with --offload");
    const off = hintOf({ ...long, gradientCheckpointing: false, liger: true, microBatch: 1, seqLen: 16384 });
    expect(off.toLowerCase()).toContain("turn on --gradient-checkpointing");
    expect(off.toLowerCase()).toContain("lower --seq-len");
    expect(off).not.toContain("--liger");
    expect(off).not.toContain("--micro-batch");
  });

  it("counts FSDP1's wrap cache only up to the usable capacity: the allocator frees it before it fails", () => {
    const seed = SEED_QLORA_FSDP;
    const kept = analyzePlan(seed);
    const dropped = analyzePlan(seed, { assumptions: { fsdpInitCacheKept: false } });
    const t = kept.memory.train;
    // the step itself fits the 24 GB cards; the wrap's cache fills the rest of what the plan may use
    expect(kept.valid).toBe(true);
    expect(t.releasableBytes).toBeGreaterThan(0);
    expect(t.perGpu.deviceBytes).toBeLessThanOrEqual(t.capacityBytes);
    expect(t.perGpu.deviceBytes - t.releasableBytes).toBe(dropped.memory.train.perGpu.deviceBytes);
    // on a card with room the whole wrap level shows, as a reserved reading would
    const big = analyzePlan({ ...seed, gpu: "h100-80g" }).memory.train;
    expect(big.releasableBytes).toBeGreaterThan(t.releasableBytes);
    // a step that does not fit gets no cache on top, and per-token ways out again
    const four = analyzePlan({ ...seed, microBatch: 4 });
    expect(four.memory.train.releasableBytes).toBe(0);
    expect(hintOf({ ...seed, microBatch: 4 })).toContain("lower --micro-batch");
  });

  it("starts with the model states when they dominate, and only suggests offload the sharding allows", () => {
    const full = { model: "Qwen/Qwen2.5-72B-Instruct", gpu: "a100-80g", gpus: 8, method: "full" } as const;
    const ddp = hintOf(full);
    expect(ddp).toMatch(/^Shard the model states/);
    expect(ddp).toContain("--method lora or qlora");
    expect(ddp).toContain("8-bit optimizer");
    const z2 = hintOf({ ...full, sharding: "zero2" });
    expect(z2).toContain("(--offload optimizer, or --sharding zero3 --offload params)");
    const z3 = hintOf({ ...full, sharding: "zero3", seqLen: 512 });
    expect(z3).toMatch(/^Use more GPUs/);
    expect(z3).toContain("(--offload optimizer or params)");
    expect(z3).not.toContain("shard the model states");
    // the offloaded optimizer is DeepSpeed's CPU Adam whatever --optimizer says: no 8-bit suggestion
    const z3off = hintOf({ ...full, gpus: 2, sharding: "zero3", offload: "optimizer", hostRam: 4096 });
    expect(z3).toContain("8-bit optimizer");
    expect(z3off).not.toContain("8-bit optimizer");
    // the default foreach AdamW's step copy (4 B per fp32 parameter) is worth naming; the fused AdamW makes none
    const step = hintOf({ model: "Qwen/Qwen2.5-7B", gpu: "rtx4090", method: "full", seqLen: 512 });
    expect(step).toMatch(
      /step with the fused AdamW \(--optimizer adamw_torch_fused: no temporary copy of the parameters, \d+\.\d GiB less\)/,
    );
    expect(
      hintOf({ model: "Qwen/Qwen2.5-7B", gpu: "rtx4090", method: "full", optimizer: "adamw_torch_fused" }),
    ).not.toContain("fused AdamW");
    const fsdp = hintOf({ ...full, sharding: "fsdp", seqLen: 512 });
    expect(fsdp).toContain("--offload params");
    expect(fsdp).not.toContain("--offload optimizer");
  });
});

describe("loading on one GPU", () => {
  const load = (input: Record<string, unknown>) =>
    analyzePlan({ model: "Qwen/Qwen2.5-72B-Instruct", gpu: "rtx4090", ...input }).issues.find((i) =>
      i.code.startsWith("LOAD_"),
    );

  it("says the weights do not fit on the one card, with no replica or sharding over one GPU", () => {
    const lora = load({ method: "lora" });
    expect(lora).toMatchObject({ code: "LOAD_SHARD_OOM", path: "gpus" });
    expect(lora?.message).toMatch(/^the weights \(135\.4 GiB\) do not fit on the one 24\.0 GiB card/);
    expect(lora?.hint).toContain("--sharding zero3 --offload params");
    const qlora = load({ method: "qlora" });
    expect(qlora?.message).not.toContain("replica");
    expect(qlora?.hint).not.toContain("--method qlora");
    expect(qlora?.hint).toContain("--sharding fsdp --offload params");
  });

  it("the ways out it names load: ZeRO-3 or FSDP1 with parameter offload", () => {
    expect(load({ method: "lora", sharding: "zero3", offload: "params" })).toBeUndefined();
    expect(load({ method: "qlora", sharding: "fsdp", offload: "params" })).toBeUndefined();
  });
});

describe("DEFAULT_OPTIM_STEP_COPY", () => {
  // Llama-3.2-1B full fine-tuning on one RTX 4090: the foreach AdamW's step copy of the fp32 weights decides it
  const input = {
    model: "meta-llama/Llama-3.2-1B-Instruct",
    gpu: "rtx4090",
    method: "full",
    seqLen: 1024,
    microBatch: 1,
    gradAccum: 8,
  } as const;
  const codes = (extra: Record<string, unknown> = {}, assumptions = {}) =>
    analyzePlan({ ...input, ...extra }, { assumptions }).issues.map((i) => i.code);

  it("says that transformers' default from torch 2.8 on fits where adamw_torch's step copy does not", () => {
    const info = analyzePlan(input).issues.find((i) => i.code === "DEFAULT_OPTIM_STEP_COPY");
    expect(info?.severity).toBe("info");
    expect(info?.message).toMatch(/the step then needs \d+\.\d GiB per GPU: it fits/);
    expect(codes()).toContain("TRAIN_OOM");
    // the fused AdamW, named or assumed as the default, fits
    expect(codes({ optimizer: "adamw_torch_fused" })).not.toContain("TRAIN_OOM");
    expect(codes({}, { defaultOptimFused: true })).not.toContain("TRAIN_OOM");
    expect(codes({}, { defaultOptimFused: true })).not.toContain("DEFAULT_OPTIM_STEP_COPY");
    // not where optim is named, nor where the fused AdamW would not fit either
    expect(codes({ optimizer: "adamw_torch" })).not.toContain("DEFAULT_OPTIM_STEP_COPY");
    expect(codes({ model: "Qwen/Qwen2.5-7B" })).not.toContain("DEFAULT_OPTIM_STEP_COPY");
  });
});

describe("hints for 8-bit QLoRA, which neither ZeRO-3 nor FSDP shards", () => {
  it("every way through sharding goes with 4-bit weights, and taking it breaks no rule", () => {
    const base = {
      model: "Qwen/Qwen2.5-72B-Instruct",
      gpu: "l40s",
      gpus: 4,
      method: "qlora",
      quantBits: 8,
      sharding: "zero2",
    } as const;
    const issues = analyzePlan(base).issues.filter(
      (i) => i.code === "TRAIN_OOM" || i.code === "LOAD_REPLICA_OOM",
    );
    expect(issues.map((i) => i.code).sort()).toEqual(["LOAD_REPLICA_OOM", "TRAIN_OOM"]);
    for (const i of issues) {
      for (const m of i.hint.matchAll(/--sharding (zero3|fsdp)/g)) {
        expect(i.hint.slice(0, m.index), i.hint).toMatch(/--quant-bits 4( and| with)? $/);
      }
    }
    const taken = analyzePlan({ ...base, quantBits: 4, sharding: "fsdp" });
    expect(taken.issues.map((i) => i.code)).not.toContain("QLORA_8BIT_SHARDED");
    expect(analyzePlan({ ...base, sharding: "fsdp" }).issues.map((i) => i.code)).toContain(
      "QLORA_8BIT_SHARDED",
    );
  });
});
