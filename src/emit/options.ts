import type { Plan } from "../schema/plan.ts";
import { modelSlug } from "./common.ts";

/** Training settings the plan does not decide (LLaMA-Factory's example values unless given). */
export interface TrainingSettings {
  /** default 1.0e-4 for LoRA/QLoRA, 1.0e-5 for full and freeze (LLaMA-Factory's examples) */
  readonly learningRate: number;
  readonly epochs: number;
  readonly warmupRatio: number;
  /** `max_samples` of the demo dataset; default 1000 as in LLaMA-Factory's examples (never set for your own) */
  readonly maxSamples: number;
  readonly loggingSteps: number;
  readonly saveSteps: number;
  /** default `saves/<model>/<finetuning type>/sft` */
  readonly outputDir: string;
  readonly preprocessingWorkers: number;
  readonly dataloaderWorkers: number;
}

export interface EmitOptions {
  /**
   * `model_name_or_path` as train.yaml should name it. Default: the hub id of a catalog model, the folder of a
   * config.json model as it was given (the CLI rewrites it relative to the bundle, whose launch.sh runs there).
   */
  readonly modelPath?: string;
  readonly training?: Partial<TrainingSettings>;
  /** container image of the Kubeflow PyTorchJob (default: a placeholder the pods cannot pull until replaced) */
  readonly image?: string;
  /** rendezvous port of multi-node launches; default 29500 */
  readonly masterPort?: number;
  /**
   * The escape hatch for train.yaml keys tunefit does not model: `set` adds keys or replaces the emitted value
   * (appended in order when new), `remove` drops emitted keys. Every key must be one LLaMA-Factory accepts; the
   * bundle check says so otherwise.
   */
  /**
   * JSON Schemas for editors: each given path or URL is named on the first line of the YAML it describes
   * (`# yaml-language-server: $schema=…`, read by VS Code's YAML extension). Write the files with
   * `tunefit schema llamafactory|accelerate`.
   */
  readonly schemas?: { readonly trainYaml?: string; readonly accelerate?: string };
  readonly trainYaml?: {
    readonly set?: Readonly<Record<string, unknown>>;
    readonly remove?: readonly string[];
  };
}

/** The placeholder image written into pytorchjob.yaml when no image is given. */
export const IMAGE_PLACEHOLDER = "REPLACE-WITH-YOUR-LLAMAFACTORY-IMAGE";

export interface ResolvedEmitOptions {
  readonly modelPath: string;
  readonly deepspeedPath: string;
  readonly training: TrainingSettings;
  readonly image: string;
  readonly masterPort: number;
}

export function resolveEmitOptions(plan: Plan, options: EmitOptions = {}): ResolvedEmitOptions {
  const type = plan.method === "qlora" ? "lora" : plan.method;
  const slug = modelSlug(plan);
  return {
    modelPath:
      options.modelPath ??
      (plan.model.source === "config" && plan.model.dir ? plan.model.dir : plan.model.id),
    deepspeedPath: "deepspeed.json",
    image: options.image ?? IMAGE_PLACEHOLDER,
    masterPort: options.masterPort ?? 29500,
    training: {
      learningRate: type === "lora" ? 1e-4 : 1e-5,
      epochs: 3,
      warmupRatio: 0.1,
      maxSamples: 1000,
      loggingSteps: 10,
      saveSteps: 500,
      outputDir: `saves/${slug}/${type}/sft`,
      preprocessingWorkers: 16,
      dataloaderWorkers: 4,
      ...options.training,
    },
  };
}
