import type { Issue } from "../errors.ts";
import { type MemoryAssumptions, withDefaults } from "../memory/assumptions.ts";
import { estimateMemory, type MemoryEstimate } from "../memory/estimate.ts";
import { imagePatches, videoPatches } from "../memory/train.ts";
import { countParams, type ParamBreakdown } from "../model/params.ts";
import { countTrainable, type TrainableBreakdown } from "../model/trainable.ts";
import type { Plan } from "../schema/plan.ts";
import { memoryIssues } from "./memory-issues.ts";
import { type ResolveOptions, resolvePlan } from "./resolve.ts";
import { checkRules, PLAN_RULES } from "./rules.ts";

/** A resolved plan with its model accounting and every issue found. */
export interface PlanAnalysis {
  readonly plan: Plan;
  readonly params: ParamBreakdown;
  readonly trainable: TrainableBreakdown;
  readonly memory: MemoryEstimate;
  /** resolution notes and rule findings, errors first */
  readonly issues: readonly Issue[];
  /** false when any issue is an error: the run would stop (a rule, or memory) */
  readonly valid: boolean;
  /** the memory-model assumptions overridden for this analysis (empty: every default) */
  readonly assumptions: Partial<MemoryAssumptions>;
}

export interface AnalyzeOptions extends ResolveOptions {
  /** overrides of the memory model's assumptions */
  readonly assumptions?: Partial<MemoryAssumptions>;
}

const ORDER = { error: 0, warning: 1, info: 2 } as const;

/** Analyzes an already resolved plan. */
export function analyzeResolvedPlan(
  plan: Plan,
  notes: readonly Issue[] = [],
  assumptions: Partial<MemoryAssumptions> = {},
): PlanAnalysis {
  const trainable = countTrainable(plan.model.architecture, {
    ...plan,
    expertsAsLinear: withDefaults(assumptions).transformersExpertsAsLinear,
  });
  const memory = estimateMemory(plan, assumptions, trainable);
  const issues = [
    ...checkRules(plan, PLAN_RULES, assumptions),
    ...memoryIssues(plan, memory, assumptions),
    ...notes,
  ].sort((a, b) => ORDER[a.severity] - ORDER[b.severity]);
  return {
    plan,
    params: countParams(plan.model.architecture),
    trainable,
    memory,
    issues,
    valid: !issues.some((i) => i.severity === "error"),
    assumptions,
  };
}

/**
 * Resolves plan input (flags, a spec file's object, the builder's draft) and analyzes it.
 * @throws TunefitError (usage) when the input does not form a plan
 */
export function analyzePlan(input: unknown, options: AnalyzeOptions = {}): PlanAnalysis {
  const { plan, issues } = resolvePlan(input, options);
  return analyzeResolvedPlan(plan, issues, options.assumptions);
}

/**
 * Every issue of a resolved plan at once: the rules LLaMA-Factory, DeepSpeed, accelerate or the GPU would stop
 * the run for, and memory (train step, loading, host RAM), each with the numbers and the fix.
 */
export function check(plan: Plan, assumptions: Partial<MemoryAssumptions> = {}): readonly Issue[] {
  return analyzeResolvedPlan(plan, [], assumptions).issues;
}

/** The `plan --json` object (the contract's shape; memory fields arrive with the memory model). */
export function planReport(analysis: PlanAnalysis) {
  const { plan, params, trainable } = analysis;
  return {
    model: {
      id: plan.model.id,
      source: plan.model.source,
      modelType: plan.model.architecture.modelType,
      params: {
        total: params.total,
        trainable: trainable.trainable,
        active: params.active,
        breakdown: {
          embedTokens: params.embedTokens,
          lmHead: params.lmHead,
          finalNorm: params.finalNorm,
          attention: params.attention,
          mlp: params.mlp,
          experts: params.experts,
          routers: params.routers,
          sharedExperts: params.sharedExperts,
          layerNorms: params.layerNorms,
          visionTower: params.visionTower,
          projector: params.projector,
        },
        adapter: trainable.adapter,
        loraTargets: trainable.loraTargets,
        trainableLayers: trainable.trainableLayers,
      },
      template: plan.template,
      shards: plan.model.shards,
    },
    hardware: {
      gpu: plan.gpu.id,
      gpusPerNode: plan.gpus,
      nodes: plan.nodes,
      gpuCapacityBytes: plan.gpu.capacityBytes,
    },
    memory: {
      train: {
        perGpu: analysis.memory.train.perGpu,
        releasableBytes: analysis.memory.train.releasableBytes,
        releasableSources: analysis.memory.train.releasableSources,
        pagedOptimizerBytes: analysis.memory.train.pagedOptimizerBytes,
        pagedToHostBytes: analysis.memory.train.pagedToHostBytes,
        capacityBytes: analysis.memory.train.capacityBytes,
        fits: analysis.memory.train.fits,
        phase: analysis.memory.train.phase,
      },
      load: analysis.memory.load,
      inference: analysis.memory.inference,
      hostRam: analysis.memory.hostRam,
    },
    batch: {
      microBatch: plan.microBatch,
      gradAccum: plan.gradAccum,
      dataParallel: plan.gpus * plan.nodes,
      globalBatch: plan.microBatch * plan.gradAccum * plan.gpus * plan.nodes,
      tokensPerStep: plan.microBatch * plan.gradAccum * plan.gpus * plan.nodes * plan.seqLen,
      // what one image becomes: patches in the vision tower, tokens in the language model's sequence
      ...(plan.imagesPerSample > 0
        ? {
            imagesPerSample: plan.imagesPerSample,
            imagePatches: imagePatches(plan).patches,
            imageTokens: imagePatches(plan).tokens,
          }
        : {}),
      // what one video becomes, at videoFrames frames
      ...(plan.videosPerSample > 0
        ? {
            videosPerSample: plan.videosPerSample,
            videoPatches: videoPatches(plan).patches,
            videoTokens: videoPatches(plan).tokens,
          }
        : {}),
    },
    plan: {
      method: plan.method,
      sharding: plan.sharding,
      fsdpStrategy: plan.fsdpStrategy,
      offload: plan.offload,
      precision: plan.precision,
      optimizer: plan.optimizer,
      seqLen: plan.seqLen,
      packing: plan.packing,
      microBatch: plan.microBatch,
      gradAccum: plan.gradAccum,
      gradientCheckpointing: plan.gradientCheckpointing,
      attention: plan.attention,
      liger: plan.liger,
      quantBits: plan.quantBits,
      quantMethod: plan.quantMethod,
      loraRank: plan.loraRank,
      loraAlpha: plan.loraAlpha,
      loraDropout: plan.loraDropout,
      loraTarget: plan.loraTarget,
      useDora: plan.useDora,
      additionalTarget: plan.additionalTarget,
      freezeTrainableLayers: plan.freezeTrainableLayers,
      freezeTrainableModules: plan.freezeTrainableModules,
      lowMemoryOptimizer: plan.lowMemoryOptimizer,
      lowMemoryRank: plan.lowMemoryRank,
      lowMemoryLayerwise: plan.lowMemoryLayerwise,
      freezeVisionTower: plan.freezeVisionTower,
      freezeProjector: plan.freezeProjector,
      imagesPerSample: plan.imagesPerSample,
      imageMaxPixels: plan.imageMaxPixels,
      videosPerSample: plan.videosPerSample,
      videoFrames: plan.videoFrames,
      videoMaxPixels: plan.videoMaxPixels,
      headroom: plan.headroom,
      hostRamBytes: plan.hostRamBytes,
      dataset: plan.dataset,
    },
    issues: analysis.issues,
    // only when some were overridden, so a default report keeps the contract's exact shape
    ...(Object.keys(analysis.assumptions).length > 0 ? { assumptions: analysis.assumptions } : {}),
  };
}
export type PlanReport = ReturnType<typeof planReport>;
