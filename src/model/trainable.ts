import { range } from "../_util.ts";
import { usageError } from "../errors.ts";
import type { Architecture, VisionArchitecture } from "../schema/architecture.ts";
import type { LowMemoryOptimizer, Method } from "../schema/plan.ts";
import {
  embeddingModuleNames,
  expertsAreLinear,
  freezeModuleNames,
  type LinearGroup,
  linearModules,
} from "./modules.ts";
import { attentionParamsPerLayer, countParams, denseMlpParams } from "./params.ts";

/*
 * What each finetuning method trains, as LLaMA-Factory ff6d4d12ee sets it up (model/adapter.py,
 * model/model_utils/misc.py and visual.py):
 * - full: every parameter except the vision tower and projector while they are frozen (the defaults);
 * - freeze: the last N decoder layers (first N for negative N), whole or the named sub-modules; the
 *   substring pattern ".{id}." also unfreezes experts.{id} of every other MoE layer under transformers 4.x
 *   and vision blocks {id} when the vision tower is not frozen;
 * - lora/qlora: rank-r A and B matrices on each targeted nn.Linear (`all` = every Linear of the language
 *   model, plus the vision tower's when it is not frozen; never lm_head or the projector), a magnitude
 *   vector per module with DoRA, and `additional_target` modules trained in full;
 * - full with BAdam (layer mode): one decoder layer at a time. BAdam's BlockOptimizer makes a block of each
 *   `layers.N.` prefix and, with LLaMA-Factory's call (include_embedding and include_lm_head false), never trains
 *   the embeddings, the final norm or lm_head (badam/block_optim.py infer_param_groups). The figures are for the
 *   largest language-model layer, the one whose block peaks (vision layers named `layers.N.` are blocks too, and
 *   smaller: rule BADAM_TRAINS_VISION).
 */

export interface TrainableOptions {
  readonly method: Method;
  readonly loraRank?: number | null;
  readonly loraTarget?: "all" | readonly string[] | null;
  readonly useDora?: boolean | null;
  readonly additionalTarget?: readonly string[] | null;
  readonly freezeTrainableLayers?: number | null;
  readonly freezeTrainableModules?: "all" | readonly string[] | null;
  readonly freezeVisionTower?: boolean;
  readonly freezeProjector?: boolean;
  /** BAdam trains one decoder layer at a time */
  readonly lowMemoryOptimizer?: LowMemoryOptimizer | null;
  /** transformers 4.x (default): MoE experts are nn.Linear modules. */
  readonly expertsAsLinear?: boolean;
}

export interface TrainableBreakdown {
  /** all trainable parameters */
  readonly trainable: number;
  /** LoRA A/B matrices and DoRA magnitudes (new parameters, not in the base model) */
  readonly adapter: number;
  /** base-model parameters trained in full (full, freeze, additional_target) */
  readonly fullModules: number;
  /** resolved LoRA target leaf names, sorted; empty for other methods */
  readonly loraTargets: readonly string[];
  /** the decoder layer ids freeze tuning trains; empty for other methods */
  readonly trainableLayers: readonly number[];
}

function span(from: number, to: number): number[] {
  return range(Math.max(0, to - from)).map((i) => i + from);
}

function normParams(arch: Architecture): number {
  return arch.text.norm === "layernorm" ? 2 * arch.text.hiddenSize : arch.text.hiddenSize;
}

/** Parameters of one decoder layer, split the way freeze_trainable_modules names them. */
function layerParts(arch: Architecture, layer: number): { attention: number; mlp: number; norm: number } {
  const t = arch.text;
  const cross = t.crossAttentionLayers.includes(layer) ? 2 * t.headDim + 2 : 0;
  let mlp: number;
  if (t.moe?.moeLayers.includes(layer)) {
    const m = t.moe;
    mlp =
      m.numExperts * denseMlpParams(t, m.expertIntermediateSize) +
      m.numExperts * t.hiddenSize +
      (m.routerBias ? m.numExperts : 0) +
      (m.sharedExpertIntermediateSize > 0
        ? denseMlpParams(t, m.sharedExpertIntermediateSize) + (m.sharedExpertGate ? t.hiddenSize : 0)
        : 0);
  } else {
    mlp = denseMlpParams(t, t.intermediateSize);
  }
  return { attention: attentionParamsPerLayer(t) + cross, mlp, norm: normParams(arch) };
}

/** Per-block parameter counts of the vision tower, by the ModuleList index freeze's ".{id}." can hit. */
function visionBlocks(v: VisionArchitecture): { count: number; params: number }[] {
  switch (v.kind) {
    case "qwen2_vl": {
      const D = v.embedDim;
      const M = v.mlpHiddenSize;
      return [{ count: v.depth, params: 4 * D + 4 * D * D + 4 * D + 2 * D * M + M + D }];
    }
    case "qwen2_5_vl": {
      const D = v.hiddenSize;
      const I = v.intermediateSize;
      return [{ count: v.depth, params: 2 * D + 4 * D * D + 4 * D + 3 * D * I + 2 * I + D }];
    }
    case "qwen3_vl": {
      const D = v.hiddenSize;
      const I = v.intermediateSize;
      const merged = D * v.spatialMergeSize ** 2;
      return [
        { count: v.depth, params: 4 * D + 4 * D * D + 4 * D + 2 * D * I + I + D },
        // deepstack_merger_list.{i}: its LayerNorm after the shuffle and two linears
        {
          count: v.deepstackLayers,
          params: 2 * merged + merged * merged + merged + merged * v.outHiddenSize + v.outHiddenSize,
        },
      ];
    }
    case "siglip":
    case "minicpmv": {
      const D = v.hiddenSize;
      const I = v.intermediateSize;
      return [{ count: v.numLayers, params: 4 * D + 4 * (D * D + D) + 2 * D * I + I + D }];
    }
    case "mllama": {
      const D = v.hiddenSize;
      const I = v.intermediateSize;
      const layer = 4 * D * D + 2 * D * I + I + D + 4 * D;
      return [
        { count: v.numLayers, params: layer },
        { count: v.numGlobalLayers, params: layer + 2 },
      ];
    }
  }
}

function freezeTrainable(arch: Architecture, opts: TrainableOptions): { params: number; layers: number[] } {
  const t = arch.text;
  const n = opts.freezeTrainableLayers ?? 2;
  const L = t.numLayers;
  const layers = n > 0 ? span(Math.max(L - n, 0), L) : span(0, Math.min(-n, L));
  const modules = opts.freezeTrainableModules ?? "all";
  const names = freezeModuleNames(arch);
  let selected = { attention: true, mlp: true, norms: names.norms.length };
  if (modules !== "all") {
    const valid = [...names.attention, ...names.mlp, ...names.norms];
    const unknown = modules.filter((m) => !valid.includes(m));
    if (unknown.length > 0) {
      throw usageError(
        "FREEZE_MODULE_UNKNOWN",
        "freezeTrainableModules",
        `${arch.modelType} decoder layers have no sub-module named ${unknown.map((u) => `"${u}"`).join(", ")}`,
        `Use "all" or a comma-separated subset of: ${valid.join(", ")}.`,
      );
    }
    selected = {
      attention: modules.some((m) => names.attention.includes(m)),
      mlp: modules.some((m) => names.mlp.includes(m)),
      norms: modules.filter((m) => names.norms.includes(m)).length,
    };
  }
  let params = 0;
  for (const layer of layers) {
    const parts = layerParts(arch, layer);
    const normCount = Math.min(selected.norms, t.normsPerLayer);
    params +=
      (selected.attention ? parts.attention : 0) + (selected.mlp ? parts.mlp : 0) + normCount * parts.norm;
  }
  if (modules === "all") {
    // ".{id}." is a plain substring: it also matches experts.{id} in the other MoE layers (transformers 4.x)…
    const moe = t.moe;
    if (moe && expertsAreLinear(arch.modelType, opts)) {
      const expert = denseMlpParams(t, moe.expertIntermediateSize);
      const hits = layers.filter((id) => id < moe.numExperts).length;
      const otherMoeLayers = moe.moeLayers.filter((l) => !layers.includes(l)).length;
      params += hits * otherMoeLayers * expert;
    }
    // …and the vision blocks with the same index when the tower is trainable.
    if (arch.vision && opts.freezeVisionTower === false) {
      for (const block of visionBlocks(arch.vision)) {
        params += layers.filter((id) => id < block.count).length * block.params;
      }
    }
  }
  return { params, layers };
}

function allowedRegion(group: LinearGroup, opts: TrainableOptions, targetAll: boolean): boolean {
  if (group.region === "text") return true;
  if (group.region === "vision") return opts.freezeVisionTower === false;
  return !targetAll && opts.freezeProjector === false;
}

/** The linear groups LoRA adapts, as PEFT resolves `lora_target` (`all`: every allowed nn.Linear). */
export function loraTargets(
  arch: Architecture,
  groups: readonly LinearGroup[],
  opts: TrainableOptions,
): LinearGroup[] {
  const target = opts.loraTarget ?? "all";
  if (target === "all") return groups.filter((g) => allowedRegion(g, opts, true));
  const allowed = groups.filter((g) => allowedRegion(g, opts, false));
  const available = [...new Set(allowed.map((g) => g.name))].sort();
  const unknown = target.filter((name) => !allowed.some((g) => g.name === name));
  if (unknown.length > 0) {
    throw usageError(
      "LORA_TARGET_UNKNOWN",
      "loraTarget",
      `${arch.modelType} has no trainable nn.Linear named ${unknown.map((u) => `"${u}"`).join(", ")} ` +
        "(PEFT would stop with 'Target modules not found')",
      `Use "all" or a comma-separated subset of: ${available.join(", ")}.`,
    );
  }
  return allowed.filter((g) => target.includes(g.name));
}

/** The projector's module name as PEFT's modules_to_save matches it (LLaMA-Factory's projector keys). */
function projectorName(arch: Architecture): string | null {
  if (!arch.vision) return null;
  if (arch.vision.kind === "qwen2_vl" || arch.vision.kind === "qwen2_5_vl" || arch.vision.kind === "qwen3_vl")
    return "merger";
  return arch.vision.kind === "minicpmv" ? "resampler" : "multi_modal_projector";
}

function additionalParams(arch: Architecture, names: readonly string[]): number {
  const { embed, head } = embeddingModuleNames(arch.modelType);
  const projector = projectorName(arch);
  const t = arch.text;
  let params = 0;
  for (const name of names) {
    if (name === embed) params += t.embedRows * t.hiddenSize;
    else if (name === head) params += t.vocabSize * t.hiddenSize;
    else if (name === "norm") params += normParams(arch);
    else if (projector !== null && (name === projector || name === `visual.${projector}`)) {
      params += countParams(arch).projector;
    } else {
      throw usageError(
        "ADDITIONAL_TARGET_UNKNOWN",
        "additionalTarget",
        `tunefit does not know the size of additional target "${name}" in ${arch.modelType}`,
        `Use ${[embed, head, "norm", ...(projector ? [projector] : [])].join(", ")}.`,
      );
    }
  }
  return params;
}

/**
 * Counts the parameters a method trains.
 * @throws TunefitError (usage) for LoRA targets, freeze modules or additional targets the model lacks
 */
export function countTrainable(arch: Architecture, opts: TrainableOptions): TrainableBreakdown {
  const counts = countParams(arch);
  switch (opts.method) {
    case "full": {
      if (opts.lowMemoryOptimizer === "badam") {
        const sizes = range(arch.text.numLayers).map((l) => {
          const p = layerParts(arch, l);
          return p.attention + p.mlp + arch.text.normsPerLayer * p.norm;
        });
        const largest = Math.max(...sizes);
        const layer = sizes.indexOf(largest);
        return {
          trainable: largest,
          adapter: 0,
          fullModules: largest,
          loraTargets: [],
          trainableLayers: [layer],
        };
      }
      const frozen =
        (opts.freezeVisionTower === false ? 0 : counts.visionTower) +
        (opts.freezeProjector === false ? 0 : counts.projector);
      const trainable = counts.total - frozen;
      return { trainable, adapter: 0, fullModules: trainable, loraTargets: [], trainableLayers: [] };
    }
    case "freeze": {
      const { params, layers } = freezeTrainable(arch, opts);
      const projector = arch.vision && opts.freezeProjector === false ? counts.projector : 0;
      const trainable = params + projector;
      return { trainable, adapter: 0, fullModules: trainable, loraTargets: [], trainableLayers: layers };
    }
    case "lora":
    case "qlora": {
      const rank = opts.loraRank ?? 8;
      const groups = loraTargets(arch, linearModules(arch, opts), opts);
      let adapter = 0;
      for (const g of groups) {
        adapter += g.count * (rank * (g.inFeatures + g.outFeatures) + (opts.useDora ? g.outFeatures : 0));
      }
      const fullModules = additionalParams(arch, opts.additionalTarget ?? []);
      return {
        trainable: adapter + fullModules,
        adapter,
        fullModules,
        loraTargets: [...new Set(groups.map((g) => g.name))].sort(),
        trainableLayers: [],
      };
    }
  }
}
