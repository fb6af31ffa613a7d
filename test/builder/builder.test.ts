import { describe, expect, it } from "vitest";
import { PlanBuilder } from "../../src/builder/plan-builder.ts";
import { TunefitError } from "../../src/errors.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";

const base = PlanBuilder.create().model("Qwen/Qwen2.5-7B-Instruct").hardware({ gpu: "a100-80g", gpus: 8 });

describe("PlanBuilder", () => {
  it("is immutable: branching a base leaves it unchanged", () => {
    const a = base.qlora({ rank: 16 }).fsdp();
    const b = base.full().zero(3);
    expect(base.toInput()).toEqual({ model: "Qwen/Qwen2.5-7B-Instruct", gpu: "a100-80g", gpus: 8 });
    expect(a.toInput()).toMatchObject({ method: "qlora", loraRank: 16, sharding: "fsdp" });
    expect(b.toInput()).toMatchObject({ method: "full", sharding: "zero3" });
    expect(Object.isFrozen(base.toInput())).toBe(true);
  });

  it("builds the same plan whatever the call order", () => {
    const x = base
      .lora({ rank: 32, target: ["q_proj", "v_proj"] })
      .training({ seqLen: 4096, microBatch: 2 })
      .zero(2);
    const y = PlanBuilder.create()
      .zero(2)
      .training({ microBatch: 2, seqLen: 4096 })
      .hardware({ gpu: "a100-80g", gpus: 8 })
      .lora({ target: ["q_proj", "v_proj"], rank: 32 })
      .model("Qwen/Qwen2.5-7B-Instruct");
    expect(JSON.stringify(x.build())).toBe(JSON.stringify(y.build()));
  });

  it("switching method drops the other method's settings, so the input stays a valid plan", () => {
    const p = base.qlora({ rank: 64, bits: 4 }).full().build();
    expect(p).toMatchObject({ method: "full", loraRank: null, quantBits: null });
    const f = base.lora({ rank: 8 }).freeze({ trainableLayers: 4 }).build();
    expect(f).toMatchObject({ method: "freeze", freezeTrainableLayers: 4, loraRank: null });
  });

  it("round-trips through toInput (the --spec format)", () => {
    const b = base.qlora().fsdp({ strategy: "hybrid_shard" }).offload("params").data({ template: "qwen" });
    expect(resolvePlan(b.toInput()).plan).toEqual(b.build());
    expect(PlanBuilder.from(b.toInput()).toInput()).toEqual(b.toInput());
  });

  it("reports bad input as a usage error and analyzes valid plans", () => {
    expect(() => base.lora({ target: ["c_attn"] }).build()).toThrow(TunefitError);
    const a = base.qlora().fsdp().analyze();
    expect(a.valid).toBe(true);
    expect(a.memory.train.fits).toBe(true);
  });
});

describe("options a method does not read (JavaScript callers, or a cast)", () => {
  it("stop with the option named and the nearest one offered, instead of being dropped", () => {
    const call = () => PlanBuilder.create().hardware({ gpu: "rtx4090", gpuMemory: 12 } as never);
    expect(call).toThrow(TunefitError);
    try {
      call();
    } catch (e) {
      expect((e as TunefitError).issues[0]).toMatchObject({
        code: "BUILDER_OPTION_UNKNOWN",
        path: "hardware.gpuMemory",
        hint: expect.stringContaining('Did you mean "gpuMemoryGiB"?'),
      });
    }
    expect(() => PlanBuilder.create().qlora({ bit: 8 } as never)).toThrow(/qlora\(\) has no option "bit"/);
    expect(() => PlanBuilder.create().fsdp({ version: 2 })).not.toThrow();
  });
});
