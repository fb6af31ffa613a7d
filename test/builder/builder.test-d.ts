import { describe, expectTypeOf, it } from "vitest";
import { PlanBuilder } from "../../src/builder/plan-builder.ts";
import type { Plan } from "../../src/schema/plan.ts";

describe("PlanBuilder typing", () => {
  it("builds only once model and hardware are set", () => {
    const ready = PlanBuilder.create().model("Qwen/Qwen2.5-7B-Instruct").hardware({ gpu: "rtx4090" });
    expectTypeOf(ready.build).returns.toEqualTypeOf<Plan>();
    // @ts-expect-error: no model and no hardware yet
    PlanBuilder.create().build();
    // @ts-expect-error: hardware is missing
    PlanBuilder.create().model("Qwen/Qwen2.5-7B-Instruct").qlora().build();
    // @ts-expect-error: the model is missing
    PlanBuilder.create().hardware({ gpu: "h100-80g" }).lora().build();
  });

  it("keeps the draft's type through method and strategy steps, in any order", () => {
    const a = PlanBuilder.create()
      .qlora({ rank: 16 })
      .fsdp()
      .hardware({ gpu: "rtx4090", gpus: 8 })
      .model("x");
    expectTypeOf(a.toInput()).toMatchTypeOf<{ model: unknown; gpu: string }>();
  });

  it("takes only the documented option values", () => {
    // @ts-expect-error: 3-bit QLoRA does not exist
    PlanBuilder.create().qlora({ bits: 3 });
    // @ts-expect-error: ZeRO has stages 1-3
    PlanBuilder.create().zero(4);
  });
});
