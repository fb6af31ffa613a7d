/** The seed's fix: QLoRA of Qwen2-VL-72B under FSDP1 on 8 × RTX 4090 (README's seed paragraph). */
export const SEED_QLORA_FSDP = {
  model: "Qwen/Qwen2-VL-72B-Instruct",
  gpu: "rtx4090",
  gpus: 8,
  method: "qlora",
  sharding: "fsdp",
} as const;
