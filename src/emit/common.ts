import { isDeepSpeed, isFsdp, type Plan } from "../schema/plan.ts";

/** The name of the demo dataset shipped in a bundle when the plan names no dataset. */
export const DEMO_DATASET = "tunefit_demo";
/** The bundle's dataset folder (LLaMA-Factory's `dataset_dir`), relative to the bundle. */
export const DATASET_DIR = "data";
/** File names inside a bundle (the contract's names). */
export const BUNDLE_FILES = {
  trainYaml: "train.yaml",
  deepspeed: "deepspeed.json",
  accelerate: "accelerate_fsdp.yaml",
  launch: "launch.sh",
  slurm: "slurm.sbatch",
  pytorchJob: "pytorchjob.yaml",
  readme: "README.md",
} as const;

/** True when the plan runs through DeepSpeed (a `deepspeed:` key and deepspeed.json). */
export function usesDeepSpeed(plan: Plan): boolean {
  return isDeepSpeed(plan.sharding);
}

/** True when the plan runs through accelerate's FSDP (accelerate_fsdp.yaml and `accelerate launch`). */
export function usesFsdp(plan: Plan): boolean {
  return isFsdp(plan.sharding);
}

/** LLaMA-Factory's `finetuning_type` for a method (QLoRA is LoRA on a quantized model). */
export function finetuningType(plan: Plan): "full" | "freeze" | "lora" {
  return plan.method === "qlora" ? "lora" : plan.method;
}

/** A file-name-safe slug of the model id: `Qwen/Qwen2-VL-72B-Instruct` → `qwen2-vl-72b-instruct`. */
export function modelSlug(plan: Plan): string {
  const tail = plan.model.id.replace(/\/+$/, "").split("/").pop() ?? "model";
  const slug = tail
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, "-")
    .replace(/^[-.]+|[-.]+$/g, "");
  return slug || "model";
}
