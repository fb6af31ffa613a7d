import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { analyzePlan } from "../../src/plan/analyze.ts";
import { cli } from "../support/cli.ts";
import { SEED_QLORA_FSDP } from "../support/seed.ts";

const README = readFileSync(join(import.meta.dirname, "../../README.md"), "utf8");
const GiB = 1024 ** 3;
const fixed1 = (bytes: number) => (bytes / GiB).toFixed(1);

describe("README figures come from the CLI as it is", () => {
  it("the report excerpt is what its command prints", () => {
    const r = cli(["plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "rtx4090"]);
    expect(r.code).toBe(0);
    const printed = r.stdout.split("\n");
    const start = printed.findIndex((l) => l.startsWith("Per-GPU memory at the training peak"));
    expect(start).toBeGreaterThan(0);
    // the bar and its legend, as printed
    expect(README).toContain(printed.slice(start, start + 3).join("\n"));
  });

  it("the seed paragraph's QLoRA + FSDP1 figures", () => {
    const seed = SEED_QLORA_FSDP;
    const offload = analyzePlan({ ...seed, offload: "params" }).memory;
    const usable = offload.train.capacityBytes;
    expect(README).toContain(
      `parameter offload fits: ${fixed1(offload.train.perGpu.deviceBytes)} of ${fixed1(usable)} GiB usable, ${fixed1(offload.hostRam.perNodeBytes)} GiB of host RAM per node`,
    );
    const kept = analyzePlan(seed).memory.train;
    const need = kept.perGpu.deviceBytes - kept.releasableBytes;
    expect(README).toContain(`Without offload the step needs\n${fixed1(need)} GiB`);
    const liger = analyzePlan({ ...seed, liger: true }).memory.train;
    expect(README).toContain(`it needs ${fixed1(liger.perGpu.deviceBytes - liger.releasableBytes)} GiB`);
  });
});
