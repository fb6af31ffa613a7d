import { posix } from "node:path";
import type { MemoryAssumptions } from "../memory/assumptions.ts";
import { analyzeResolvedPlan, type PlanAnalysis } from "../plan/analyze.ts";
import type { Plan } from "../schema/plan.ts";
import { accelerateConfig } from "./accelerate.ts";
import { BUNDLE_FILES } from "./common.ts";
import { demoDatasetFiles } from "./dataset.ts";
import { deepspeedConfig } from "./deepspeed.ts";
import type { EmittedFile } from "./files.ts";
import { pytorchJob } from "./kubeflow.ts";
import type { EmitOptions } from "./options.ts";
import { probeFiles } from "./probe.ts";
import { bundleReadme } from "./readme.ts";
import { launchScript, planSummary, slurmScript } from "./scripts.ts";
import { toJson, toYaml } from "./serialize.ts";
import { TRAIN_YAML_FLOAT_KEYS, TRAIN_YAML_SECTIONS, trainYaml } from "./train-yaml.ts";
import { targetsLine } from "./versions.ts";

export interface EmitBundleOptions extends EmitOptions {
  /** add probe.py, which runs a few real steps and prints measured peaks next to the prediction */
  readonly probe?: boolean;
  /** training steps probe.py runs (default 5) */
  readonly probeSteps?: number;
}

export interface EmitFilesOptions extends EmitBundleOptions {
  /** overrides of the memory model's assumptions (for the README's memory table) */
  readonly assumptions?: Partial<MemoryAssumptions>;
}

/** The yaml-language-server modeline naming a file's JSON Schema (first line of the file). */
const modeline = (schema: string | undefined) =>
  schema === undefined ? [] : [`yaml-language-server: $schema=${schema.replace(/\s/g, "%20")}`];

const headerFor = (plan: Plan, what: string) => [
  `${what} for ${planSummary(plan)}.`,
  `Written by tunefit. ${targetsLine(plan.model.architecture.modelType)}`,
];

/**
 * The bundle of an analyzed plan: train.yaml, launch.sh, the DeepSpeed or accelerate config the strategy needs,
 * Slurm and Kubeflow manifests for several nodes, the demo dataset unless the plan names one, and README.md.
 * Pure: the same analysis and options give byte-identical files, in a fixed order.
 */
export function emitAnalysis(analysis: PlanAnalysis, options: EmitBundleOptions = {}): EmittedFile[] {
  const { plan } = analysis;
  const files: EmittedFile[] = [];
  files.push({
    path: BUNDLE_FILES.trainYaml,
    contents: toYaml(trainYaml(plan, options), {
      header: [
        ...modeline(options.schemas?.trainYaml),
        ...headerFor(plan, "LLaMA-Factory training config"),
        "Launch with ./launch.sh (see README.md).",
      ],
      sectionComments: TRAIN_YAML_SECTIONS,
      floatKeys: TRAIN_YAML_FLOAT_KEYS,
    }),
  });
  const ds = deepspeedConfig(plan, analysis.assumptions);
  // a train.yaml whose escape hatch names another DeepSpeed config (tunefit import keeps the user's) or drops the
  // key would leave tunefit's unread beside it
  const named = options.trainYaml?.set?.deepspeed;
  const ownConfig =
    (named !== undefined &&
      (typeof named !== "string" || posix.normalize(named) !== BUNDLE_FILES.deepspeed)) ||
    (options.trainYaml?.remove ?? []).includes("deepspeed");
  if (ds !== null && !ownConfig) files.push({ path: BUNDLE_FILES.deepspeed, contents: toJson(ds) });
  const acc = accelerateConfig(plan, options);
  if (acc !== null) {
    files.push({
      path: BUNDLE_FILES.accelerate,
      contents: toYaml(acc, {
        header: [...modeline(options.schemas?.accelerate), ...headerFor(plan, "accelerate FSDP config")],
      }),
    });
  }
  files.push({ path: BUNDLE_FILES.launch, contents: launchScript(plan, options), executable: true });
  if (plan.nodes > 1) {
    files.push({ path: BUNDLE_FILES.slurm, contents: slurmScript(plan, options), executable: true });
    const job = pytorchJob(plan, options, analysis.memory.hostRam.perNodeBytes);
    if (job !== null) {
      files.push({
        path: BUNDLE_FILES.pytorchJob,
        contents: toYaml(job, {
          header: [
            ...headerFor(plan, "Kubeflow PyTorchJob"),
            "Replace the image with one that holds LLaMA-Factory and this bundle (see README.md).",
          ],
        }),
      });
    }
  }
  files.push(...demoDatasetFiles(plan));
  if (options.probe) {
    files.push(
      ...probeFiles(
        analysis,
        options.probeSteps === undefined ? options : { ...options, steps: options.probeSteps },
      ),
    );
  }
  const listed = [...files.map((f) => f.path), BUNDLE_FILES.readme];
  files.push({ path: BUNDLE_FILES.readme, contents: bundleReadme(analysis, listed) });
  return files;
}

/**
 * The ready-to-run bundle of a resolved plan as `{path, contents}` records; write them with `writeFiles`.
 * @example writeFiles(emitFiles(plan), "out")
 */
export function emitFiles(plan: Plan, options: EmitFilesOptions = {}): EmittedFile[] {
  return emitAnalysis(analyzeResolvedPlan(plan, [], options.assumptions), options);
}
