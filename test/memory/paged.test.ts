import { describe, expect, it } from "vitest";
import { estimateMemory } from "../../src/memory/estimate.ts";
import { BNB_PAGED_MIN_ELEMENTS, estimateTrainMemory } from "../../src/memory/train.ts";
import { analyzePlan, analyzeResolvedPlan, planReport } from "../../src/plan/analyze.ts";
import { maxFitting, recommend } from "../../src/plan/recommend.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import type { Plan } from "../../src/schema/plan.ts";

function plan(input: Record<string, unknown>): Plan {
  return resolvePlan({ template: "default", ...input }).plan;
}

/** Llama-3.1-8B full fine-tuning in pure bf16 on one A100-80GB at 2,048 tokens: its states alone nearly fill it. */
const LLAMA8B_FULL = {
  model: "meta-llama/Llama-3.1-8B",
  gpu: "a100-80g",
  method: "full",
  precision: "pure_bf16",
  seqLen: 2048,
  template: "llama3",
} as const;

/** Llama-2-7B: 6,738,415,616 parameters; every linear is 4096 wide on one side. */
const llama7b = (input: Record<string, unknown>) =>
  plan({ model: "meta-llama/Llama-2-7b-hf", gpu: "h200", seqLen: 1024, microBatch: 1, ...input });

describe("bitsandbytes' paged optimizers", () => {
  it("keep the states of large parameters outside PyTorch's allocator", () => {
    const paged = estimateTrainMemory(llama7b({ method: "full", optimizer: "paged_adamw_8bit" }));
    const plain = estimateTrainMemory(llama7b({ method: "full", optimizer: "adamw_8bit" }));
    // every norm (4096 elements) is small: its state stays an ordinary tensor
    const norms = (32 * 2 + 1) * 4096;
    expect(paged.pagedOptimizerBytes).toBe((6_738_415_616 - norms) * 2);
    expect(paged.breakdown.optimizer).toBe(norms * 2);
    expect(plain.pagedOptimizerBytes).toBe(0);
    expect(plain.allocatedBytes - paged.allocatedBytes).toBe(paged.pagedOptimizerBytes);
    // on a card with room the pages stay on the GPU: nvidia-smi sees them, in the runtime
    expect(paged.pagedResidentBytes).toBe(paged.pagedOptimizerBytes);
    expect(paged.breakdown.runtime - plain.breakdown.runtime).toBe(paged.pagedOptimizerBytes);
    expect(paged.deviceBytes).toBe(plain.deviceBytes);
  });

  it("page LoRA's states only where an adapter matrix reaches 1e5 elements", () => {
    const at = (loraRank: number) =>
      estimateTrainMemory(
        llama7b({
          method: "lora",
          loraRank,
          loraTarget: ["q_proj", "v_proj"],
          optimizer: "paged_adamw_32bit",
        }),
      );
    expect(16 * 4096).toBeLessThan(BNB_PAGED_MIN_ELEMENTS);
    const r16 = at(16);
    expect(r16.pagedOptimizerBytes).toBe(0);
    expect(r16.breakdown.optimizer).toBe(64 * 2 * 16 * 4096 * 8); // A and B of 64 modules, two fp32 states
    const r32 = at(32);
    expect(r32.pagedOptimizerBytes).toBe(64 * 2 * 32 * 4096 * 8);
    expect(r32.breakdown.optimizer).toBe(0);
    // FSDP gives the optimizer each parameter's local shard: half of 131,072 elements is under the threshold
    const fsdp = estimateTrainMemory(
      llama7b({
        method: "lora",
        loraRank: 32,
        loraTarget: ["q_proj", "v_proj"],
        optimizer: "paged_adamw_32bit",
        gpus: 2,
        sharding: "fsdp",
      }),
    );
    expect(fsdp.pagedOptimizerBytes).toBe(0);
  });

  it("page DeepSpeed's flat partitions whole, beside its fp32 master copy", () => {
    const z2 = estimateTrainMemory(
      llama7b({ method: "full", gpus: 4, sharding: "zero2", optimizer: "paged_adamw_32bit" }),
    );
    expect(z2.pagedOptimizerBytes).toBe((6_738_415_616 * 8) / 4);
    expect(z2.breakdown.optimizer).toBe((6_738_415_616 * 4) / 4); // the master copy is DeepSpeed's own tensor
  });

  it("yield to the allocator where the card is short: the plan fits, the rest pages through host RAM", () => {
    const p = plan({ ...LLAMA8B_FULL, optimizer: "paged_adamw_32bit", microBatch: 2 });
    const m = estimateMemory(p);
    const t = m.train;
    expect(t.pagedOptimizerBytes).toBeGreaterThan(59 * 1024 ** 3); // 8.03 B × 8 B
    expect(t.pagedToHostBytes).toBeGreaterThan(0);
    expect(t.fits).toBe(true);
    expect(t.perGpu.deviceBytes).toBeLessThanOrEqual(t.capacityBytes);
    const resident = t.pagedOptimizerBytes - t.pagedToHostBytes;
    // the resident pages fill the card to its usable capacity exactly, never a byte over
    expect(t.perGpu.deviceBytes).toBe(t.capacityBytes);
    // the evicted pages live in host memory, and a checkpoint save reads them all through the CPU
    const none = estimateMemory({ ...p, optimizer: "adamw_8bit" });
    expect(m.hostRam.perNodeBytes).toBeGreaterThan(none.hostRam.perNodeBytes + t.pagedToHostBytes);
    expect(m.hostRam.perNodeBytes).toBeGreaterThanOrEqual(t.pagedOptimizerBytes + 3 * 1024 ** 3);
    const analysis = analyzeResolvedPlan(p);
    const spill = analysis.issues.find((i) => i.code === "PAGED_OPTIMIZER_SPILLS");
    expect(spill?.severity).toBe("warning");
    expect(spill?.message).toContain("paged_adamw_32bit");
    expect(analysis.issues.some((i) => i.code === "TRAIN_OOM")).toBe(false);
    const report = planReport(analysis).memory.train;
    expect(report.pagedOptimizerBytes).toBe(t.pagedOptimizerBytes);
    expect(report.pagedToHostBytes).toBe(t.pagedToHostBytes);
    // the same states in ordinary tensors would not fit
    expect(t.perGpu.deviceBytes - resident + t.pagedOptimizerBytes).toBeGreaterThan(t.capacityBytes);
    expect(estimateMemory({ ...p, optimizer: "paged_adamw_8bit" }).train.pagedToHostBytes).toBe(0);
  });

  it("change nothing for optimizers that build their own states", () => {
    for (const lowMemoryOptimizer of ["adam_mini", "galore"] as const) {
      const t = estimateTrainMemory(
        llama7b({ method: "full", optimizer: "paged_adamw_8bit", lowMemoryOptimizer }),
      );
      expect(t.pagedOptimizerBytes).toBe(0);
    }
    const offload = estimateTrainMemory(
      llama7b({
        method: "full",
        gpus: 2,
        sharding: "zero3",
        offload: "optimizer",
        optimizer: "paged_adamw_8bit",
      }),
    );
    expect(offload.pagedOptimizerBytes).toBe(0);
  });
});

describe("bitsandbytes' paged optimizers in the plan's answers", () => {
  it("a plan whose pages fill the card lands on its capacity, never a byte over", () => {
    for (const optimizer of ["paged_adamw_32bit", "paged_ademamix_32bit"]) {
      const m = estimateMemory(
        plan({
          model: "mistralai/Mistral-Small-24B-Base-2501",
          gpu: "rtx4090",
          method: "qlora",
          loraRank: 16,
          sharding: "fsdp",
          gpus: 2,
          optimizer,
          seqLen: 2048,
          microBatch: 2,
        }),
      );
      expect(m.train.pagedToHostBytes).toBeGreaterThan(0);
      expect(m.train.perGpu.deviceBytes).toBeLessThanOrEqual(m.train.capacityBytes);
      expect(m.train.fits).toBe(true);
    }
  });

  it("TRAIN_OOM weighs each way out without the pages that would fill what it frees", () => {
    const input = {
      model: "Qwen/Qwen2.5-1.5B",
      gpu: "rtx4090",
      method: "full",
      optimizer: "paged_adamw_32bit",
      microBatch: 2,
      seqLen: 2048,
      template: "default",
    };
    const oom = analyzeResolvedPlan(plan(input)).issues.find((i) => i.code === "TRAIN_OOM");
    expect(oom?.message).toContain("paged, which yields to host RAM");
    expect(oom?.hint).toContain("lower --micro-batch");
    expect(oom?.hint).toContain("--optimizer paged_adamw_8bit");
    expect(oom?.hint).not.toContain("--optimizer adamw_8bit");
  });

  it("--max stops where the states would start to page out, as the same states in the allocator would", () => {
    const input = LLAMA8B_FULL;
    const paged = maxFitting({ ...input, optimizer: "paged_adamw_8bit" }, "microBatch");
    const plain = maxFitting({ ...input, optimizer: "adamw_8bit" }, "microBatch");
    expect(paged).toBeGreaterThan(0);
    expect(Math.abs(paged - plain)).toBeLessThanOrEqual(1); // only bitsandbytes' small side tensors differ
    expect(
      estimateMemory(plan({ ...input, optimizer: "paged_adamw_8bit", microBatch: paged })).train
        .pagedToHostBytes,
    ).toBe(0);
  });

  it("--recommend leaves out plans whose states page through host RAM", () => {
    const { recommendations } = recommend({ ...LLAMA8B_FULL, optimizer: "paged_adamw_32bit", microBatch: 8 });
    expect(recommendations.length).toBeGreaterThan(0);
    for (const r of recommendations) expect(analyzePlan(r.input).memory.train.pagedToHostBytes).toBe(0);
  });

  it("Muon ignores optim, and FSDP2's DTensors page each parameter's whole states", () => {
    const muon = (optimizer?: string) =>
      estimateTrainMemory(
        llama7b({ method: "full", lowMemoryOptimizer: "muon", gpus: 2, sharding: "fsdp", optimizer }),
      );
    expect(muon("paged_adamw_8bit").pagedOptimizerBytes).toBe(0);
    expect(muon("paged_adamw_8bit").breakdown.optimizer).toBe(muon().breakdown.optimizer);
    const fsdp2 = estimateTrainMemory(
      llama7b({ method: "full", gpus: 4, sharding: "fsdp2", optimizer: "paged_adamw_8bit" }),
    );
    const fsdp1 = estimateTrainMemory(
      llama7b({ method: "full", gpus: 4, sharding: "fsdp", optimizer: "paged_adamw_8bit" }),
    );
    expect(fsdp2.pagedOptimizerBytes).toBeGreaterThan(3.9 * fsdp1.pagedOptimizerBytes);
  });
});
