import { type Issue, TunefitError } from "../errors.ts";
import type { MemoryAssumptions } from "../memory/assumptions.ts";
import { estimateTrainMemory, mediaSequenceTokens } from "../memory/train.ts";
import {
  ALL_METHOD_FIELDS,
  type Attention,
  deepspeedCpuAdam,
  type Method,
  type Offload,
  optimSteps,
  type Plan,
  type PlanInput,
  plainAdamW,
  type Sharding,
} from "../schema/plan.ts";
import { type AnalyzeOptions, analyzePlan, analyzeResolvedPlan, type PlanAnalysis } from "./analyze.ts";
import { resolvePlan } from "./resolve.ts";
import { PLAN_RULES } from "./rules.ts";
import { estimateStepTime, type StepTimeAssumptions } from "./step-time.ts";

/** A plan that fits, with what it changes and the flags that reproduce it. */
export interface Recommendation {
  /** what differs from the plan asked for, in words */
  readonly summary: string;
  /** the complete plan flags that, given alone to `tunefit plan`, reproduce this plan */
  readonly args: readonly string[];
  readonly input: PlanInput;
  readonly deviceBytes: number;
  /** host memory per node the plan needs (CPU offload holds the model states there) */
  readonly hostRamBytes: number;
  readonly stepSeconds: number;
  readonly fits: true;
}

export interface RecommendOptions extends AnalyzeOptions {
  /** how many to return @default 5 */
  readonly limit?: number;
  readonly stepTime?: Partial<StepTimeAssumptions>;
  readonly assumptions?: Partial<MemoryAssumptions>;
}

export interface RecommendResult {
  readonly recommendations: readonly Recommendation[];
  /** plans resolved and estimated during the search */
  readonly evaluated: number;
}

const MICRO_BATCHES = [1, 2, 4, 8, 16];
const EIGHT_BIT = "adamw_8bit";
const FUSED = "adamw_torch_fused";

/** `loraRank` → `--lora-rank`. */
function flag(field: string): string {
  return `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** `--assume NAME=VALUE` flags for memory-model overrides, so a printed command is judged the same way. */
export function assumptionArgs(assumptions: Partial<MemoryAssumptions> = {}): string[] {
  return Object.entries(assumptions).flatMap(([name, value]) => ["--assume", `${name}=${value}`]);
}

/** The CLI flags of a plan input, in a fixed order (model and hardware first). */
export function inputToArgs(input: PlanInput): string[] {
  const order = Object.keys(input).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const args: string[] = [];
  for (const key of order) {
    const value = (input as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (key === "model" && typeof value !== "string") {
      args.push("--model", (value as { id: string }).id);
      continue;
    }
    const text =
      typeof value === "boolean"
        ? value
          ? "on"
          : "off"
        : Array.isArray(value)
          ? value.join(",")
          : String(value);
    args.push(flag(key), text);
  }
  return args;
}

const LEADING = ["model", "gpu", "gpuMemory", "gpus", "nodes", "hostRam", "method"];
function rank(key: string): number {
  const i = LEADING.indexOf(key);
  return i === -1 ? LEADING.length : i;
}

interface Candidate {
  readonly input: PlanInput;
  readonly plan: Plan;
  readonly changes: readonly string[];
}

/** Method inputs are resolved once; the other dimensions vary fields of the resolved plan directly. */
function* candidates(base: PlanInput, options: RecommendOptions): Generator<Candidate> {
  const given = base.method ?? "lora";
  // full fine-tuning is also tried with layer-wise BAdam: LLaMA-Factory's full tuning of one layer at a time
  const variants: { method: Method; badam: boolean }[] = [{ method: given, badam: false }];
  if (given === "full" && base.lowMemoryOptimizer === undefined)
    variants.push({ method: "full", badam: true });
  for (const method of ["lora", "qlora"] as const)
    if (method !== given) variants.push({ method, badam: false });
  const micro0 = base.microBatch ?? 1;
  const global = micro0 * (base.gradAccum ?? 8);
  for (const { method, badam } of variants) {
    const methodInput: Record<string, unknown> = { ...base, method };
    if (method !== given) for (const k of ALL_METHOD_FIELDS) delete methodInput[k];
    if (badam) methodInput.lowMemoryOptimizer = "badam";
    delete methodInput.fsdpStrategy;
    let resolved: Plan;
    try {
      resolved = resolvePlan(methodInput, options).plan;
    } catch (e) {
      if (e instanceof TunefitError && e.kind === "usage") continue;
      throw e;
    }
    // what the GPU cannot run at all is replaced (BF16_UNSUPPORTED_GPU, FA2_UNSUPPORTED_GPU): fp16, SDPA
    const noBf16 =
      !resolved.gpu.bf16 && (resolved.precision === "bf16" || resolved.precision === "pure_bf16");
    const precision = noBf16 ? "fp16" : resolved.precision;
    const ownAttention: Attention =
      resolved.attention === "fa2" && !resolved.gpu.flashAttention2 ? "sdpa" : resolved.attention;
    // FlashAttention-2 joins the search where it saves memory (SDPA's padding mask and eager's scores grow with the
    // square of the length): at least 5 % of the plan as given
    // (a paged optimizer's resident pages fill what is freed: compared without them)
    const needs = (attention: Attention) => {
      const t = estimateTrainMemory({ ...resolved, precision, attention }, options.assumptions);
      return t.deviceBytes - t.pagedResidentBytes;
    };
    const asGiven = needs(ownAttention);
    const withFa2 = needs("fa2");
    const attentions: Attention[] =
      resolved.gpu.flashAttention2 && ownAttention !== "fa2" && asGiven - withFa2 >= 0.05 * asGiven
        ? [ownAttention, "fa2"]
        : [ownAttention];
    // full and freeze tuning step with the fused AdamW: the same states as the default foreach one, without its
    // temporary copy of every trained parameter, and faster (LLaMA-Factory builds GaLore and APOLLO from adamw_torch,
    // and Adam-mini and Muon without optim; BAdam steps its layer with optim's)
    const fused =
      (method === "full" || method === "freeze") &&
      plainAdamW(resolved.optimizer) &&
      optimSteps(resolved.lowMemoryOptimizer);
    for (const attention of attentions)
      for (const sharding of ["none", "zero2", "zero3", "fsdp"] as Sharding[]) {
        for (const offload of ["none", "optimizer", "params"] as Offload[]) {
          for (const eightBit of [false, true]) {
            // DeepSpeed's offloaded optimizer is always its CPU Adam (OFFLOAD_REPLACES_OPTIMIZER): no 8-bit there
            if (eightBit && deepspeedCpuAdam({ sharding, offload })) continue;
            for (const liger of [false, true]) {
              for (const micro of MICRO_BATCHES) {
                if (global % micro !== 0) continue;
                const gradAccum = global / micro;
                // DeepSpeed's offload steps its CPU Adam whatever the optimizer (OFFLOAD_REPLACES_OPTIMIZER)
                const stepFused = fused && !deepspeedCpuAdam({ sharding, offload });
                const optimizer = eightBit ? EIGHT_BIT : stepFused ? FUSED : resolved.optimizer;
                // FSDP1 would hold the whole model's gradients unsharded between reductions
                // (FSDP_UNSHARDED_ACCUMULATION): full and freeze tuning reduce after every micro-batch instead
                const syncEachBatch =
                  resolved.syncEachBatch ||
                  (sharding === "fsdp" && gradAccum > 1 && (method === "full" || method === "freeze"));
                const plan: Plan = {
                  ...resolved,
                  precision,
                  attention,
                  sharding,
                  fsdpStrategy: sharding === "fsdp" ? "full_shard" : null,
                  offload,
                  optimizer,
                  liger,
                  microBatch: micro,
                  gradAccum,
                  syncEachBatch,
                };
                const input: Record<string, unknown> = {
                  ...methodInput,
                  ...(precision !== resolved.precision ? { precision } : {}),
                  ...(attention !== resolved.attention ? { attention } : {}),
                  sharding,
                  offload,
                  liger,
                  microBatch: micro,
                  gradAccum,
                };
                if (syncEachBatch) input.syncEachBatch = true;
                else delete input.syncEachBatch;
                if (optimizer === null) delete input.optimizer;
                else input.optimizer = optimizer;
                const changes: string[] = [];
                if (precision !== resolved.precision) changes.push("fp16 (the GPU has no bf16)");
                if (attention !== resolved.attention)
                  changes.push(
                    attention === "fa2"
                      ? "FlashAttention-2 (no padding mask)"
                      : "SDPA attention (the GPU has no FlashAttention-2)",
                  );
                if (method !== given) {
                  changes.push(
                    method === "qlora"
                      ? "QLoRA 4-bit (adapters on a 4-bit base instead of full weights)"
                      : method === "lora"
                        ? "LoRA (adapters instead of full weights)"
                        : method,
                  );
                }
                if (badam) changes.push("BAdam (one decoder layer trains at a time)");
                if (sharding !== (base.sharding ?? "none")) changes.push(`sharding ${sharding}`);
                if (offload !== (base.offload ?? "none")) changes.push(`offload ${offload}`);
                if (eightBit && base.optimizer !== EIGHT_BIT) changes.push("8-bit AdamW");
                else if (!eightBit && stepFused) changes.push("fused AdamW (no step copy)");
                if (liger && !base.liger) changes.push("Liger kernels");
                if (syncEachBatch && !base.syncEachBatch) changes.push("gradients reduced every micro-batch");
                if (micro !== micro0) changes.push(`micro-batch ${micro} × accumulation ${gradAccum}`);
                yield { input: input as PlanInput, plan, changes };
              }
            }
          }
        }
      }
  }
}

/**
 * Searches method × sharding × offload × 8-bit optimizer (else fused AdamW for full and freeze tuning) × Liger ×
 * micro-batch (keeping the global batch) for plans that fit and break no rule, ranked by estimated step time. A
 * plan is dropped when a faster-or-equal one needs a subset of its changes, or when its paged optimizer states page
 * through host RAM every step.
 */
export function recommend(input: PlanInput, options: RecommendOptions = {}): RecommendResult {
  analyzePlan(input, options); // throws for input that does not form a plan
  const found: (Recommendation & { changes: readonly string[] })[] = [];
  let evaluated = 0;
  for (const c of candidates(input, options)) {
    evaluated++;
    const a = analyzeResolvedPlan(c.plan, [], options.assumptions);
    // a plan whose paged optimizer states page through host RAM every step fits, slowly: not recommended
    if (!a.valid || a.memory.train.pagedToHostBytes > 0) continue;
    found.push({
      summary: c.changes.length > 0 ? c.changes.join(", ") : "as given",
      args: [...inputToArgs(c.input), ...assumptionArgs(options.assumptions)],
      input: c.input,
      deviceBytes: a.memory.train.perGpu.deviceBytes,
      hostRamBytes: a.memory.hostRam.perNodeBytes,
      stepSeconds: estimateStepTime(c.plan, options.stepTime).stepSeconds,
      fits: true,
      changes: c.changes,
    });
  }
  found.sort(
    (x, y) =>
      x.stepSeconds - y.stepSeconds || x.changes.length - y.changes.length || x.deviceBytes - y.deviceBytes,
  );
  const kept: typeof found = [];
  for (const r of found) {
    const redundant = kept.some(
      (k) => k.stepSeconds <= r.stepSeconds * 1.02 && k.changes.every((ch) => r.changes.includes(ch)),
    );
    if (!redundant) kept.push(r);
  }
  const recommendations = kept.slice(0, options.limit ?? 5).map(({ changes: _, ...r }) => r);
  return { recommendations, evaluated };
}

/**
 * The largest micro-batch or sequence length at which the plan still fits (0 when even 1 does not); with a paged
 * optimizer, at which no more of its states page through host RAM than at 1.
 */
export function maxFitting(
  input: PlanInput,
  field: "microBatch" | "seqLen",
  options: AnalyzeOptions = {},
): number {
  /** the paged optimizer states the plan pages through host RAM at this value; null where it does not fit */
  const spill = (value: number): number | null => {
    try {
      const a = analyzePlan({ ...input, [field]: value }, options);
      return a.valid ? a.memory.train.pagedToHostBytes : null;
    } catch (e) {
      if (e instanceof TunefitError && e.kind === "usage") return null;
      throw e;
    }
  };
  // a sample holds its image and video tokens whole: no shorter sequence runs (IMAGE/VIDEO_TOKENS_BEYOND_CUTOFF)
  const start = field === "seqLen" ? Math.max(1, mediaSequenceTokens(resolvePlan(input, options).plan)) : 1;
  const least = spill(start);
  if (least === null) return 0;
  // a paged optimizer's states page out to make room for a longer batch rather than fail: the limit is where they
  // start to (or, when they do at 1 already, where they page out more)
  const fits = (value: number) => {
    const s = spill(value);
    return s !== null && s <= least;
  };
  const cap = field === "microBatch" ? 4096 : 1 << 21;
  let lo = start;
  let hi = 2 * start;
  while (hi <= cap && fits(hi)) {
    lo = hi;
    hi *= 2;
  }
  hi = Math.min(hi, cap + 1);
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** The plan fields the recommendation search varies. */
const SEARCHED_FIELDS: ReadonlySet<string> = new Set([
  "method",
  "quantBits",
  "quantMethod",
  "sharding",
  "fsdpStrategy",
  "offload",
  "optimizer",
  "precision",
  "attention",
  "liger",
  "microBatch",
  "gradAccum",
  "syncEachBatch",
]);

/**
 * The plan's rule errors that no recommended candidate (and no `maxFitting` search of `alsoSearched`) changes: their
 * rules read only fields the search keeps.
 */
export function keptRuleErrors(analysis: PlanAnalysis, alsoSearched?: string): Issue[] {
  return analysis.issues.filter((i) => {
    const rule = PLAN_RULES.find((r) => r.code === i.code);
    return (
      i.severity === "error" &&
      rule !== undefined &&
      !rule.fields.some((f) => SEARCHED_FIELDS.has(f) || f === alsoSearched)
    );
  });
}
