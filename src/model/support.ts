import type { Architecture } from "../schema/architecture.ts";

/** Model types LLaMA-Factory's Liger patch skips (model/model_utils/liger_kernel.py:94 at ff6d4d12ee). */
export const LIGER_UNSUPPORTED: ReadonlySet<string> = new Set([
  "qwen",
  "internlm2",
  "baichuan",
  "chatglm",
  "qwen2_moe",
  "deepseek_v2",
  "deepseek_v3",
  "minicpmv",
]);

/**
 * Model types whose own loss takes cross_entropy of the 16-bit logits without upcasting them: Qwen-1's remote code
 * (modeling_qwen.py QWenLMHeadModel.forward: `CrossEntropyLoss()(shift_logits, shift_labels)` on the bf16
 * `lm_logits[..., :-1, :].contiguous()`). Under autocast (the HF Trainer's bf16/fp16 without DeepSpeed) log_softmax
 * still runs in fp32; DeepSpeed, which manages its own half precision, and pure_bf16 under FSDP (no `bf16: true`,
 * so no autocast) run it in 16 bits.
 */
export const LOSS_WITHOUT_UPCAST: ReadonlySet<string> = new Set(["qwen"]);

/**
 * Whether tunefit plans videos for the model: the Qwen2-VL family's towers take frames in pairs through a 3-D patch
 * embedding (temporal_patch_size 2), as LLaMA-Factory's Qwen2-VL plugin feeds them. Other vision-language models
 * are planned with images only.
 */
export function takesVideos(architecture: Architecture): boolean {
  const kind = architecture.vision?.kind;
  return kind === "qwen2_vl" || kind === "qwen2_5_vl" || kind === "qwen3_vl";
}
