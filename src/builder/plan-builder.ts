import { closest } from "../_util.ts";
import { usageError } from "../errors.ts";
import { type AnalyzeOptions, analyzePlan, type PlanAnalysis } from "../plan/analyze.ts";
import { type ResolveOptions, resolvePlan } from "../plan/resolve.ts";
import type {
  Attention,
  FsdpStrategy,
  LowMemoryOptimizer,
  ModelDefinition,
  Offload,
  Plan,
  PlanInput,
  Precision,
  QuantBits,
  QuantMethod,
  Sharding,
} from "../schema/plan.ts";
import { ALL_METHOD_FIELDS, METHOD_FIELDS } from "../schema/plan.ts";

/*
 * An immutable fluent builder over PlanInput. Every method returns a new builder; the draft is a frozen,
 * fixed-shape record (not a log of calls), so call order never leaks into the plan. The type parameter grows
 * with `model` and `hardware`, the two things `build()` needs.
 */

type Empty = Record<never, never>;
type Draft = Partial<PlanInput>;

/** What `build()` requires. */
export interface Buildable {
  readonly model: PlanInput["model"];
  readonly gpu: string;
}

export interface HardwareOptions {
  /** catalog GPU id, or "custom" with `gpuMemoryGiB` */
  readonly gpu: string;
  /** GPUs per node @default 1 */
  readonly gpus?: number;
  /** @default 1 */
  readonly nodes?: number;
  /** overrides the GPU's capacity */
  readonly gpuMemoryGiB?: number;
  /** host memory per node, checked against loading and offload */
  readonly hostRamGiB?: number;
}

export interface LoraOptions {
  /** @default 8 */
  readonly rank?: number;
  /** @default 2 × rank */
  readonly alpha?: number;
  /** @default 0 */
  readonly dropout?: number;
  /** @default "all" */
  readonly target?: "all" | readonly string[];
  readonly dora?: boolean;
  /** modules trained in full beside the adapters (embed_tokens, lm_head, …) */
  readonly additionalTarget?: readonly string[];
}

export interface QloraOptions extends LoraOptions {
  /** @default 4 */
  readonly bits?: QuantBits;
  /** @default "bnb" */
  readonly quantMethod?: QuantMethod;
}

export interface FreezeOptions {
  /** last N layers (negative: first N) @default 2 */
  readonly trainableLayers?: number;
  /** @default "all" */
  readonly trainableModules?: "all" | readonly string[];
}

export interface ProjectionOptions {
  /** rank of the projected gradients and optimizer states @default 16 */
  readonly rank?: number;
  /** step each parameter in its gradient hook (one GPU, gradient accumulation 1) @default false */
  readonly layerwise?: boolean;
}

export interface TrainingOptions {
  readonly seqLen?: number;
  readonly microBatch?: number;
  readonly gradAccum?: number;
  /** reduce gradients after every micro-batch instead of once per step (FSDP1 then keeps them sharded) @default false */
  readonly syncEachBatch?: boolean;
  readonly packing?: boolean;
  readonly gradientCheckpointing?: boolean;
  readonly attention?: Attention;
  readonly liger?: boolean;
  readonly precision?: Precision;
  readonly optimizer?: string;
  /** share of GPU memory kept free when judging fit @default 0.05 */
  readonly headroom?: number;
}

export interface MultimodalOptions {
  readonly imagesPerSample?: number;
  readonly imageMaxPixels?: number;
  /** videos per sample (the Qwen2-VL family) @default 0 */
  readonly videosPerSample?: number;
  /** frames sampled per video, at most: LLaMA-Factory's video_maxlen @default 128 */
  readonly videoFrames?: number;
  /** pixels per video frame, at most: video_max_pixels @default 65536 */
  readonly videoMaxPixels?: number;
  readonly freezeVisionTower?: boolean;
  readonly freezeProjector?: boolean;
}

function without(draft: Draft, fields: readonly (keyof PlanInput)[]): Draft {
  const copy: Record<string, unknown> = { ...draft };
  for (const f of fields) delete copy[f];
  return copy as Draft;
}

/**
 * What a method call replaces: the other methods' fields. The memory-efficient optimizer stays, so `.full().galore()`
 * and `.galore().full()` are the same plan (and `.galore().lora()` an error when built, as LLaMA-Factory rejects it).
 */
const OTHER_METHOD_FIELDS: readonly (keyof PlanInput)[] = ALL_METHOD_FIELDS.filter(
  (f) => !(METHOD_FIELDS.lowMemory as readonly string[]).includes(f),
);

/** The options each builder method reads; anything else would be dropped without a word (JavaScript callers). */
const OPTION_KEYS = {
  hardware: ["gpu", "gpus", "nodes", "gpuMemoryGiB", "hostRamGiB"],
  freeze: ["trainableLayers", "trainableModules"],
  lora: ["rank", "alpha", "dropout", "target", "dora", "additionalTarget"],
  qlora: ["rank", "alpha", "dropout", "target", "dora", "additionalTarget", "bits", "quantMethod"],
  galore: ["rank", "layerwise"],
  apollo: ["rank", "layerwise"],
  fsdp: ["version", "strategy"],
} as const;

/** Stops on an option the method does not read, naming the ones it does. */
function checkOptions(method: keyof typeof OPTION_KEYS, o: object): void {
  const keys: readonly string[] = OPTION_KEYS[method];
  const unknown = Object.keys(o).find((k) => !keys.includes(k));
  if (unknown === undefined) return;
  const [near] = closest(unknown, keys, 1);
  throw usageError(
    "BUILDER_OPTION_UNKNOWN",
    `${method}.${unknown}`,
    `${method}() has no option "${unknown}"`,
    `${near === undefined ? "" : `Did you mean "${near}"? `}Its options: ${keys.join(", ")}.`,
  );
}

/** Drops undefined values so a draft only holds what was set (PlanInput uses exact optional properties). */
function defined<T extends Record<string, unknown>>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Builds a plan step by step.
 * @example
 * const plan = PlanBuilder.create()
 *   .model("Qwen/Qwen2.5-7B-Instruct")
 *   .hardware({ gpu: "rtx4090" })
 *   .qlora({ rank: 16 })
 *   .build();
 */
export class PlanBuilder<S extends Draft = Empty> {
  readonly #draft: Draft;

  private constructor(draft: Draft) {
    this.#draft = Object.freeze({ ...draft });
  }

  /** An empty builder. */
  static create(): PlanBuilder<Empty> {
    return new PlanBuilder<Empty>({});
  }

  /** A builder from plan input (a `--spec` file's object, or `toInput()` of another builder). */
  static from<T extends Draft>(input: T): PlanBuilder<T> {
    return new PlanBuilder<T>({ ...input });
  }

  #with<T extends Draft>(draft: Draft): PlanBuilder<T> {
    return new PlanBuilder<T>(draft);
  }

  /** The model: a catalog id (case-insensitive), a folder with a config.json, or explicit dimensions. */
  model(ref: string | ModelDefinition): PlanBuilder<S & { model: string | ModelDefinition }> {
    return this.#with({ ...this.#draft, model: ref });
  }

  /** The GPUs: kind, count per node, nodes, and optionally their capacity and the nodes' RAM. */
  hardware(h: HardwareOptions): PlanBuilder<S & { gpu: string }> {
    checkOptions("hardware", h);
    return this.#with({
      ...without(this.#draft, ["gpus", "nodes", "gpuMemory", "hostRam"]),
      ...defined({
        gpu: h.gpu,
        gpus: h.gpus,
        nodes: h.nodes,
        gpuMemory: h.gpuMemoryGiB,
        hostRam: h.hostRamGiB,
      }),
    });
  }

  /** Full fine-tuning. */
  full(): PlanBuilder<S> {
    return this.#with({
      ...without(this.#draft, OTHER_METHOD_FIELDS),
      method: "full",
    });
  }

  /** Freeze tuning: the last (or first) layers train. */
  freeze(o: FreezeOptions = {}): PlanBuilder<S> {
    checkOptions("freeze", o);
    return this.#with({
      ...without(this.#draft, OTHER_METHOD_FIELDS),
      method: "freeze",
      ...defined({ freezeTrainableLayers: o.trainableLayers, freezeTrainableModules: o.trainableModules }),
    } as Draft);
  }

  /** LoRA adapters on a 16-bit base. */
  lora(o: LoraOptions = {}): PlanBuilder<S> {
    checkOptions("lora", o);
    return this.#with({
      ...without(this.#draft, OTHER_METHOD_FIELDS),
      method: "lora",
      ...loraFields(o),
    });
  }

  /** LoRA adapters on a quantized base (bitsandbytes 4-bit unless told otherwise). */
  qlora(o: QloraOptions = {}): PlanBuilder<S> {
    checkOptions("qlora", o);
    return this.#with({
      ...without(this.#draft, OTHER_METHOD_FIELDS),
      method: "qlora",
      ...loraFields(o),
      ...defined({ quantBits: o.bits, quantMethod: o.quantMethod }),
    });
  }

  /**
   * GaLore for full (or freeze) tuning: every language-model linear's optimizer states at a low rank
   * (LLaMA-Factory `use_galore`). Combine with `.full()` or `.freeze()`, in either order.
   */
  galore(o: ProjectionOptions = {}): PlanBuilder<S> {
    checkOptions("galore", o);
    return this.#lowMemory("galore", o);
  }

  /** APOLLO for full (or freeze) tuning: low-rank auxiliary optimizer states (LLaMA-Factory `use_apollo`). */
  apollo(o: ProjectionOptions = {}): PlanBuilder<S> {
    checkOptions("apollo", o);
    return this.#lowMemory("apollo", o);
  }

  /** Layer-wise BAdam for full tuning: one decoder layer trains at a time (LLaMA-Factory `use_badam`). */
  badam(): PlanBuilder<S> {
    return this.#lowMemory("badam", {});
  }

  /** Adam-mini: one second moment per block (per head for q/k), AdamW's only for embeddings and lm_head. */
  adamMini(): PlanBuilder<S> {
    return this.#lowMemory("adam_mini", {});
  }

  /** Muon: one momentum buffer per weight matrix (Newton-Schulz orthogonalised updates), AdamW for the rest. */
  muon(): PlanBuilder<S> {
    return this.#lowMemory("muon", {});
  }

  #lowMemory(optimizer: LowMemoryOptimizer, o: ProjectionOptions): PlanBuilder<S> {
    return this.#with({
      ...without(this.#draft, METHOD_FIELDS.lowMemory),
      lowMemoryOptimizer: optimizer,
      ...defined({ lowMemoryRank: o.rank, lowMemoryLayerwise: o.layerwise }),
    } as Draft);
  }

  /** DeepSpeed ZeRO (stage 1, 2 or 3). */
  zero(stage: 1 | 2 | 3): PlanBuilder<S> {
    return this.#with({ ...without(this.#draft, ["fsdpStrategy"]), sharding: `zero${stage}` as Sharding });
  }

  /** FSDP through accelerate (version 1 with a strategy, or 2). */
  fsdp(o: { version?: 1 | 2; strategy?: FsdpStrategy } = {}): PlanBuilder<S> {
    checkOptions("fsdp", o);
    const draft = without(this.#draft, ["fsdpStrategy"]);
    if (o.version === 2) return this.#with({ ...draft, sharding: "fsdp2" });
    return this.#with({ ...draft, sharding: "fsdp", ...defined({ fsdpStrategy: o.strategy }) });
  }

  /** One replica per GPU (DDP). */
  noSharding(): PlanBuilder<S> {
    return this.#with({ ...without(this.#draft, ["fsdpStrategy"]), sharding: "none" });
  }

  /** CPU offload of the optimizer, or of parameters and optimizer. */
  offload(o: Offload): PlanBuilder<S> {
    return this.#with({ ...this.#draft, offload: o });
  }

  /** Sequence, batch, precision and kernels. */
  training(o: TrainingOptions): PlanBuilder<S> {
    return this.#with({ ...this.#draft, ...defined({ ...o }) } as Draft);
  }

  /** Images and videos per sample and what of the vision side trains. */
  multimodal(o: MultimodalOptions): PlanBuilder<S> {
    return this.#with({ ...this.#draft, ...defined({ ...o }) } as Draft);
  }

  /** The dataset and chat template written into the YAML. */
  data(o: { dataset?: string; template?: string }): PlanBuilder<S> {
    return this.#with({ ...this.#draft, ...defined({ ...o }) } as Draft);
  }

  /** Applies a function to the builder (for reusable steps). */
  $call<R>(fn: (builder: this) => R): R {
    return fn(this);
  }

  /** The plan input collected so far (serializable: the `--spec` file format). */
  toInput(): Readonly<S> {
    return this.#draft as S;
  }

  /** Resolves the plan (LLaMA-Factory's defaults filled in). Throws a usage TunefitError for bad input. */
  build(this: PlanBuilder<Buildable>, options: ResolveOptions = {}): Plan {
    return resolvePlan(this.#draft, options).plan;
  }

  /** Resolves and analyzes: accounting, memory, and every issue. */
  analyze(this: PlanBuilder<Buildable>, options: AnalyzeOptions = {}): PlanAnalysis {
    return analyzePlan(this.#draft, options);
  }
}

function loraFields(o: LoraOptions): Draft {
  return defined({
    loraRank: o.rank,
    loraAlpha: o.alpha,
    loraDropout: o.dropout,
    loraTarget: o.target === undefined || o.target === "all" ? o.target : [...o.target],
    useDora: o.dora,
    additionalTarget: o.additionalTarget ? [...o.additionalTarget] : undefined,
  }) as Draft;
}
