import path from "node:path";
import Handlebars from "handlebars";
import { emitAnalysis } from "../emit/bundle.ts";
import { checkBundle } from "../emit/check-bundle.ts";
import { DATASET_DIR, modelSlug } from "../emit/common.ts";
import { demoFrameSide, demoImageSide, solidPng } from "../emit/dataset.ts";
import type { EmittedFile } from "../emit/files.ts";
import { type EmitOptions, resolveEmitOptions } from "../emit/options.ts";
import { MEMORY_PARTS, md, planRows } from "../emit/readme.ts";
import { planSummary, shellQuote } from "../emit/scripts.ts";
import { TunefitError, usageError } from "../errors.ts";
import type { PlanAnalysis } from "../plan/analyze.ts";
import { assumptionArgs, inputToArgs } from "../plan/recommend.ts";
import type { Plan, PlanInput } from "../schema/plan.ts";
import { VERSION } from "../version.ts";
import { TEMPLATES } from "./templates.gen.ts";

/*
 * `tunefit init`: a project folder rendered from a scaffold (templates/<name>/, embedded at build time by
 * scripts/gen-templates.mjs) plus the plan's bundle under bundle/. Templates are Handlebars in strict mode without
 * HTML escaping; a file's path is a template too (`data/{{dataset.file}}.hbs`). Files ending in `.hbs` are
 * rendered and lose the suffix; other files are copied as they are.
 *
 * A scaffold with `data/dataset_info.json.hbs` owns the project's data: the plan names its dataset (`my_dataset`
 * unless the plan gives one), and train.yaml reads it with `dataset_dir: ../data`. LLaMA-Factory resolves
 * `dataset_dir` (and the images, through `media_dir`, which defaults to it) against the folder it runs in, and
 * launch.sh changes into bundle/ first, so `../data` is the project's data/ and the bundle runs as written. Other
 * scaffolds keep the bundle's own data (the demo set unless the plan names a dataset), exactly as `tunefit emit`.
 */

/** Where the bundle goes inside the project. */
export const BUNDLE_DIR = "bundle";
/** The dataset a data-owning scaffold registers when the plan names none. */
export const SCAFFOLD_DATASET = "my_dataset";
/** The scaffold used when none is named. */
export const DEFAULT_SCAFFOLD = "default";

const TEMPLATE_SUFFIX = ".hbs";
/** The template that makes a scaffold own the project's data (see above). */
const DATASET_INFO_TEMPLATE = `${DATASET_DIR}/dataset_info.json${TEMPLATE_SUFFIX}`;
/** A dataset name usable as a file name and a dataset_info.json key. */
const LOCAL_DATASET = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const BYTES_PER_GIB = 1024 ** 3;

/** The scaffolds `tunefit init --scaffold` accepts, from the embedded templates, sorted. */
export const SCAFFOLDS: readonly string[] = Object.freeze(
  [...new Set(Object.keys(TEMPLATES).map((key) => key.slice(0, key.indexOf("/"))))].sort(),
);

export interface InitOptions {
  /** the scaffold (a folder of templates/) @default "default" */
  readonly scaffold?: string;
  /** the plan input the analysis was made from; the project's plan.ts holds it (with the scaffold's dataset) */
  readonly planInput: PlanInput;
  /**
   * The folder of a config.json model as the project should name it, relative to the project folder (the CLI
   * passes the `--model` folder relative to DIR). Default: the folder as the plan names it.
   */
  readonly modelPath?: string;
  /** the project's package name; default `<model>-finetune` */
  readonly name?: string;
  /**
   * How the project's package.json depends on tunefit: a version range (default `^<this version>`), or a
   * `file:` path to a local copy (the CLI run from a checkout names that checkout).
   */
  readonly tunefitSpec?: string;
}

const hb = Handlebars.create();

function oneArgument(helper: string, args: readonly unknown[]): unknown {
  // Handlebars passes its options object last
  if (args.length !== 2) throw new Error(`the ${helper} helper takes one value, got ${args.length - 1}`);
  return args[0];
}

hb.registerHelper("shq", (...args: unknown[]) => {
  const value = oneArgument("shq", args);
  if (typeof value !== "string" && typeof value !== "number") {
    throw new Error(
      `the shq helper quotes a string or number, got ${value === null ? "null" : typeof value}`,
    );
  }
  return shellQuote(String(value));
});
hb.registerHelper("json", (...args: unknown[]) => {
  const value = oneArgument("json", args);
  const text = JSON.stringify(value, null, 2) as string | undefined;
  if (text === undefined) throw new Error(`the json helper got a value JSON cannot hold (${typeof value})`);
  return text;
});
hb.registerHelper("gib", (...args: unknown[]) => {
  const value = oneArgument("gib", args);
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new Error(`the gib helper takes a number of bytes, got ${JSON.stringify(value) ?? typeof value}`);
  }
  return (value / BYTES_PER_GIB).toFixed(2);
});

/**
 * Renders a Handlebars template: strict (a field the context lacks is an error, not an empty string), without HTML
 * escaping, with the helpers `shq` (POSIX shell quoting), `json` (JSON with a two-space indent) and `gib` (bytes →
 * GiB with two decimals, `12.34`). The helpers live in an isolated Handlebars instance.
 * @param name the template's name, for error messages
 * @throws TunefitError (usage, SCAFFOLD_TEMPLATE_INVALID) when the template does not compile or render
 */
export function renderTemplate(text: string, context: object, name: string): string {
  try {
    return hb.compile(text, { strict: true, noEscape: true })(context);
  } catch (error) {
    if (error instanceof TunefitError) throw error;
    const message = (error instanceof Error ? error.message : String(error)).split("\n")[0];
    throw usageError(
      "SCAFFOLD_TEMPLATE_INVALID",
      "scaffold",
      `the scaffold template ${name} does not render: ${message}`,
      "Use only the fields init passes (docs/init.md lists them) and the helpers shq, json and gib.",
    );
  }
}

function planTable(analysis: PlanAnalysis): { setting: string; value: string }[] {
  return planRows(analysis, "the bundle's demo set").map(([setting, value]) => ({ setting, value }));
}

/** An npm package name: lowercase letters, digits and `- . _`, not starting with `.` or `_`. */
function packageName(name: string | undefined, plan: Plan): string {
  const raw = name ?? `${modelSlug(plan)}-finetune`;
  const cleaned = raw
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[-._]+|[-.]+$/g, "")
    .slice(0, 214);
  return cleaned || "tunefit-project";
}

interface DatasetContext {
  readonly name: string;
  readonly file: string;
  readonly dir: string;
  readonly formatting: "alpaca" | "sharegpt";
  /** sharegpt messages with images or videos (a multimodal plan with either per sample) */
  readonly media: boolean;
  /** the samples carry images */
  readonly images: boolean;
  /** `<image>` once per image of a sample */
  readonly imageTags: string;
  /** each sample's images, relative to data/ */
  readonly imagePaths: readonly string[];
  /** the samples carry videos, each a list of frame images (LLaMA-Factory takes them as sampled) */
  readonly videos: boolean;
  /** `<video>` once per video of a sample */
  readonly videoTags: string;
  /** each sample's videos: the plan's frames, relative to data/ */
  readonly videoLists: readonly (readonly string[])[];
  /** the distinct frame images */
  readonly framePaths: readonly string[];
}

const EXAMPLE_COLOURS: readonly (readonly [number, number, number])[] = [
  [200, 60, 60],
  [60, 160, 80],
  [60, 90, 200],
  [220, 180, 40],
];

/** The dataset a data-owning scaffold registers: the plan's own (one local name), else `my_dataset`. */
function datasetContext(plan: Plan): DatasetContext {
  const name = plan.dataset ?? SCAFFOLD_DATASET;
  if (!LOCAL_DATASET.test(name)) {
    throw usageError(
      "INIT_DATASET_NOT_LOCAL",
      "dataset",
      `this scaffold registers the plan's dataset in data/dataset_info.json as a local file; "${name}" is not one dataset name of letters, digits and _ . -`,
      `Leave --dataset out (the scaffold registers ${SCAFFOLD_DATASET}), give one local name, or use --scaffold minimal and register your datasets yourself.`,
    );
  }
  const images = plan.model.architecture.vision !== null && plan.imagesPerSample > 0;
  const n = images ? plan.imagesPerSample : 0;
  const videos = plan.model.architecture.vision !== null && plan.videosPerSample > 0;
  const m = videos ? plan.videosPerSample : 0;
  const framePaths = videos ? EXAMPLE_COLOURS.map((_, i) => `videos/frame_${i + 1}.png`) : [];
  return {
    name,
    file: `${name}.json`,
    dir: DATASET_DIR,
    formatting: images || videos ? "sharegpt" : "alpaca",
    media: images || videos,
    images,
    imageTags: "<image>".repeat(n),
    imagePaths: Array.from({ length: n }, (_, i) => `images/example_${i + 1}.png`),
    videos,
    videoTags: "<video>".repeat(m),
    videoLists: Array.from({ length: m }, (_, k) =>
      Array.from({ length: plan.videoFrames }, (_, f) => framePaths[(k + f) % framePaths.length] ?? ""),
    ),
    framePaths,
  };
}

function modelPathIn(plan: Plan, options: InitOptions): string | null {
  if (plan.model.source !== "config" || plan.model.dir === null) return null;
  return options.modelPath ?? plan.model.dir;
}

/** A path as the bundle names it: relative to bundle/ unless absolute. */
const fromBundle = (p: string) => (path.posix.isAbsolute(p) ? p : path.posix.relative(BUNDLE_DIR, p) || ".");

/**
 * The files of a new project for an analyzed plan: the scaffold's templates rendered with the plan, and the plan's
 * bundle under bundle/ (what the project's plan.ts writes). Write them with `writeFiles(files, dir)`, which refuses a
 * non-empty folder without `force`. Pure: the same analysis and options give byte-identical files, in a fixed order.
 * @throws TunefitError (usage) for an unknown scaffold (SCAFFOLD_UNKNOWN), a template that does not render
 *   (SCAFFOLD_TEMPLATE_INVALID), or a plan dataset a data-owning scaffold cannot register (INIT_DATASET_NOT_LOCAL)
 */
export function initFiles(analysis: PlanAnalysis, options: InitOptions): EmittedFile[] {
  const scaffold = options.scaffold ?? DEFAULT_SCAFFOLD;
  if (!SCAFFOLDS.includes(scaffold)) {
    throw usageError(
      "SCAFFOLD_UNKNOWN",
      "scaffold",
      `there is no scaffold "${scaffold}"; the scaffolds are ${SCAFFOLDS.join(", ")}`,
      `Pass --scaffold ${SCAFFOLDS.join(" or ")} (${DEFAULT_SCAFFOLD} when left out). --template is the chat template.`,
    );
  }
  const prefix = `${scaffold}/`;
  const templates = Object.keys(TEMPLATES)
    .filter((key) => key.startsWith(prefix))
    .map((key) => ({ key, file: key.slice(prefix.length), text: TEMPLATES[key] ?? "" }));
  const ownsData = templates.some((t) => t.file === DATASET_INFO_TEMPLATE);

  // the plan as the project's plan.ts holds it
  const modelPath = modelPathIn(analysis.plan, options);
  let plan: Plan = analysis.plan;
  let planInput: PlanInput = { ...options.planInput };
  if (modelPath !== null) {
    plan = { ...plan, model: { ...plan.model, id: modelPath, dir: modelPath } };
    planInput = { ...planInput, model: modelPath };
  }
  const dataset = ownsData ? datasetContext(plan) : null;
  if (dataset !== null && plan.dataset === null) {
    plan = { ...plan, dataset: dataset.name };
    planInput = { ...planInput, dataset: dataset.name };
  }
  const projectAnalysis: PlanAnalysis = { ...analysis, plan };

  // Checkpoints go beside bundle/, which plan.ts replaces as a whole; a data-owning scaffold's datasets are in ../data.
  const outputDir = `../${resolveEmitOptions(plan).training.outputDir}`;
  const emitOptions: EmitOptions = {
    training: { outputDir },
    ...(dataset === null ? {} : { trainYaml: { set: { dataset_dir: `../${DATASET_DIR}` } } }),
  };
  const bundle = emitAnalysis(
    projectAnalysis,
    modelPath === null ? emitOptions : { ...emitOptions, modelPath: fromBundle(modelPath) },
  );

  const { memory } = analysis;
  const t = memory.train;
  const context = {
    scaffold,
    tunefit: {
      version: VERSION,
      range: options.tunefitSpec ?? `^${VERSION}`,
      // what `npm install` takes to fetch it: the package name, or the local copy's path
      install: options.tunefitSpec?.startsWith("file:")
        ? options.tunefitSpec.slice("file:".length)
        : "tunefit",
    },
    project: {
      name: packageName(options.name, plan),
      description: `LLaMA-Factory fine-tune: ${planSummary(plan)}`,
    },
    summary: md(planSummary(plan)),
    valid: analysis.valid,
    planInput,
    emitOptions,
    cli: {
      args:
        typeof planInput.model === "string"
          ? [...inputToArgs(planInput), ...assumptionArgs(analysis.assumptions)]
          : null,
    },
    // memory-model overrides the project keeps (tunefit init --assume), or null
    assumptions: Object.keys(analysis.assumptions).length > 0 ? analysis.assumptions : null,
    gpu: {
      name: md(plan.gpu.name),
      capacityBytes: plan.gpu.capacityBytes,
      headroomPercent: Math.round(plan.headroom * 100),
    },
    rows: planTable(projectAnalysis),
    memory: {
      phase: t.phase,
      parts: MEMORY_PARTS.map(([key, label]) => ({ key, label, bytes: t.perGpu.breakdown[key] })),
      allocatedBytes: t.perGpu.allocatedBytes,
      reservedBytes: t.perGpu.reservedBytes,
      deviceBytes: t.perGpu.deviceBytes,
      capacityBytes: t.capacityBytes,
      fits: t.fits,
      loadPeakBytes: memory.load.perGpuPeakBytes,
      loadFits: memory.load.fits,
      hostRamPerNodeBytes: memory.hostRam.perNodeBytes,
      inferencePerGpuBytes: memory.inference.perGpuBytes,
      inferenceCpuBytes: memory.inference.cpuBytes,
    },
    issues: analysis.issues.map((i) => ({
      severity: i.severity,
      code: i.code,
      path: md(i.path),
      message: md(i.message),
      hint: md(i.hint),
    })),
    dataset,
    bundle: {
      dir: BUNDLE_DIR,
      files: bundle.map((f) => f.path),
      multiNode: plan.nodes > 1,
    },
  };

  const files: EmittedFile[] = [];
  for (const { key, file, text } of templates) {
    const isTemplate = file.endsWith(TEMPLATE_SUFFIX);
    const name = isTemplate ? file.slice(0, -TEMPLATE_SUFFIX.length) : file;
    const out = renderTemplate(name, context, `${key} (its path)`);
    if (out === BUNDLE_DIR || out.startsWith(`${BUNDLE_DIR}/`)) {
      throw usageError(
        "SCAFFOLD_TEMPLATE_INVALID",
        "scaffold",
        `the scaffold template ${key} writes ${out}, inside ${BUNDLE_DIR}/, which holds the plan's bundle`,
        `Move the template out of ${BUNDLE_DIR}/.`,
      );
    }
    const contents = isTemplate ? renderTemplate(text, context, key) : text;
    files.push({ path: out, contents });
  }
  if (dataset !== null) {
    const side = demoImageSide(plan);
    dataset.imagePaths.forEach((p, i) => {
      const colour = EXAMPLE_COLOURS[i % EXAMPLE_COLOURS.length] ?? [128, 128, 128];
      files.push({ path: `${DATASET_DIR}/${p}`, contents: solidPng(side, side, colour) });
    });
    const frameSide = demoFrameSide(plan);
    dataset.framePaths.forEach((p, i) => {
      const colour = EXAMPLE_COLOURS[i % EXAMPLE_COLOURS.length] ?? [128, 128, 128];
      files.push({ path: `${DATASET_DIR}/${p}`, contents: solidPng(frameSide, frameSide, colour) });
    });
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  // The bundle must pass its own checks, with the project's data/ where train.yaml's ../data points.
  const problems = checkBundle(
    [
      ...bundle,
      ...files
        .filter((f) => f.path.startsWith(`${DATASET_DIR}/`))
        .map((f) => ({ ...f, path: `../${f.path}` })),
    ],
    plan,
  ).filter((i) => i.severity === "error");
  if (problems.length > 0) throw new TunefitError("internal", problems);

  return [...files, ...bundle.map((f) => ({ ...f, path: `${BUNDLE_DIR}/${f.path}` }))];
}
