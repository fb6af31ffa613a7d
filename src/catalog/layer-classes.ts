import type { Architecture } from "../schema/architecture.ts";
import { LAYER_CLASSES } from "./data/layer-classes.ts";

/**
 * The module classes FSDP wraps as units for a model: its decoder-layer classes and, for a multimodal model, its
 * vision-block class (LLaMA-Factory's own VLM accelerate configs wrap both). Comma-joined, this is accelerate's
 * `fsdp_transformer_layer_cls_to_wrap`.
 */
export function fsdpWrapClasses(architecture: Architecture): readonly string[] {
  const entry = LAYER_CLASSES[architecture.modelType];
  if (entry === undefined) return [];
  if (architecture.modelType === "minicpmv") {
    // MiniCPM-V 2.6 runs transformers' Qwen2 (q/k/v bias), MiniCPM-Llama3-V 2.5 its Llama (config-json.ts)
    const decoder = architecture.text.qkvBias ? "Qwen2DecoderLayer" : "LlamaDecoderLayer";
    return [decoder, ...entry.vision];
  }
  const decoder = entry.decoderByHiddenSize
    ? (entry.decoderByHiddenSize[String(architecture.text.hiddenSize)] ?? [])
    : entry.decoder;
  return architecture.vision === null ? decoder : [...decoder, ...entry.vision];
}

/** True for model types whose modeling code ships with the checkpoint (`trust_remote_code` is required). */
export function needsRemoteCode(architecture: Architecture): boolean {
  return LAYER_CLASSES[architecture.modelType]?.trustRemoteCode ?? false;
}
