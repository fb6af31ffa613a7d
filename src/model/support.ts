/** Model types LLaMA-Factory's Liger patch skips (model/model_utils/liger_kernel.py:94 at ff6d4d12ee). */
export const LIGER_UNSUPPORTED: ReadonlySet<string> = new Set([
  "internlm2",
  "baichuan",
  "chatglm",
  "qwen2_moe",
  "deepseek_v2",
  "deepseek_v3",
]);
