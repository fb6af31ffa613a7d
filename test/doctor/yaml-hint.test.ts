import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { yamlHint } from "../../src/doctor/to-plan.ts";

// Every string literal of the plan rules and memory issues that names a plan flag, as doctor would show it.
const SOURCES = ["../../src/plan", "../../src/memory"].flatMap((dir) => {
  const folder = join(import.meta.dirname, dir);
  return readdirSync(folder)
    .filter((f) => f.endsWith(".ts"))
    .map((f) => readFileSync(join(folder, f), "utf8"));
});
const HINTS = [
  ...new Set(
    SOURCES.flatMap((text) =>
      [...text.matchAll(/["`]([^"`\n]*--[a-z][^"`\n]*)["`]/g)].map((m) => m[1] ?? ""),
    ),
  ),
]
  .filter((h) => !h.startsWith("--") || h.includes(" "))
  // a template literal's placeholders stand for a value (a template name, a quantization method…)
  .map((h) => h.replace(/\$\{[^}]*\}/g, "value"));

// flags doctor itself takes, or that have no YAML counterpart by design
const KEPT =
  /--(gpu|gpus|nodes|host-ram|gpu-memory|assume|model|launcher|accelerate-config|launch-dir|config|json|help|num_processes|debug)\b/g;

describe("yamlHint", () => {
  it("finds the hints it is meant for", () => {
    expect(HINTS.length).toBeGreaterThan(20);
  });

  it.each(HINTS)("leaves no plan flag in %s", (hint) => {
    const rewritten = yamlHint(hint).replace(KEPT, "");
    expect(rewritten).not.toMatch(/--[a-z]/);
    // no stage or value left dangling from a flag's phrase
    expect(rewritten).not.toMatch(/config\/zero|or zero3|\/ none|\(or qlora\)|[Tt]urn on disable/);
  });

  it("says what the flags mean in the YAML", () => {
    expect(yamlHint("turn on --gradient-checkpointing")).toBe("set disable_gradient_checkpointing: false");
    expect(yamlHint("Add --sharding zero2 (or zero3).")).toBe("Add a ZeRO-2 (or ZeRO-3) deepspeed: config.");
    expect(yamlHint("--sharding zero3 --offload params")).toBe(
      "a ZeRO-3 deepspeed: config with offload_param and offload_optimizer",
    );
    expect(yamlHint("Add --method lora (or qlora), or drop the LoRA flags.")).toBe(
      "Add finetuning_type: lora (QLoRA: with quantization_bit: 4), or drop the LoRA flags.",
    );
    expect(yamlHint("--attention eager")).toBe("flash_attn: disabled");
    expect(yamlHint("Leave --optimizer out (AdamW is what runs)")).toBe(
      "Leave optim unset (AdamW is what runs)",
    );
    expect(yamlHint("Use --image-max-pixels 1024 or more.")).toBe("Use image_max_pixels: 1024 or more.");
  });
});
