import { createRequire } from "node:module";
import { isDeepStrictEqual } from "node:util";
import type * as TsMorph from "ts-morph";
import type { CodeBlockWriter, WriterFunction } from "ts-morph";
import { listCatalogModels } from "../catalog/models.ts";
import { resolveModel } from "../catalog/resolve-model.ts";
import type { DeepSpeedSource } from "../doctor/read.ts";
import { type Hardware, MODELLED_KEYS, setupToPlan } from "../doctor/to-plan.ts";
import { trainYaml } from "../emit/train-yaml.ts";
import { type Issue, isUsageError, TunefitError, usageError } from "../errors.ts";
import { takesVideos } from "../model/support.ts";
import { resolvePlan } from "../plan/resolve.ts";
import type { Architecture } from "../schema/architecture.ts";
import type { ModelDefinition, Plan, PlanInput } from "../schema/plan.ts";

// ts-morph (with the TypeScript compiler) takes about half a second to load: loaded on first use only, so the CLI's
// other commands do not pay for it
let tsMorph: typeof TsMorph | undefined;
function morph(): typeof TsMorph {
  tsMorph ??= createRequire(import.meta.url)("ts-morph") as typeof TsMorph;
  return tsMorph;
}

/*
 * `tunefit import`: an existing LLaMA-Factory training YAML as a TypeScript script that builds the same plan with
 * PlanBuilder and writes a bundle whose train.yaml holds every key and value of the original. The YAML is mapped
 * onto a plan by doctor's `setupToPlan`; what the plan's train.yaml would differ in (keys tunefit does not model,
 * values it writes differently, keys it adds) goes through the escape hatch, `emitFiles(plan, { trainYaml })`.
 */

export interface ImportOptions {
  /** the GPUs to plan for (as PlanBuilder.hardware takes them); absent: one h100-80g, marked as a placeholder */
  readonly hardware?: ImportHardware;
  /**
   * a config.json folder (or catalog id) giving the dimensions of a model the catalog lacks, or its definition
   * (`{ id, config }`: the config.json the CLI read from the Hugging Face Hub)
   */
  readonly model?: string | ModelDefinition;
  /** the DeepSpeed config `deepspeed:` names, as `readDeepSpeed` reads it; default none */
  readonly deepspeed?: DeepSpeedSource;
  /** the accelerate config the YAML is launched with (FSDP), if any */
  readonly accelerate?: Readonly<Record<string, unknown>> | null;
  /** how the YAML is named in the script's header comment */
  readonly yamlName?: string;
  /** the folder model folders are resolved from; default the process's working directory */
  readonly cwd?: string;
}

export interface ImportHardware {
  /** catalog GPU id, or "custom" with `gpuMemoryGiB` */
  readonly gpu: string;
  readonly gpus?: number;
  readonly nodes?: number;
  readonly gpuMemoryGiB?: number;
  readonly hostRamGiB?: number;
}

export interface ImportResult {
  /** the script, formatted (2-space indent) */
  readonly source: string;
  /** the builder's methods the script calls, in order (between `create()` and `build()`) */
  readonly builderCalls: readonly string[];
  /** YAML keys that shaped the builder chain, in the YAML's order */
  readonly modelledKeys: readonly string[];
  /**
   * keys that go through the escape hatch (set, in the YAML's order, then removed ones). A key can be modelled and
   * escaped at once when tunefit models the setting but writes it differently (`deepspeed:` names tunefit's
   * deepspeed.json; `lora_target` with spaces; `model_name_or_path` when the dimensions come from elsewhere)
   */
  readonly escapedKeys: readonly string[];
  /** true when no hardware was given and the script plans for one h100-80g */
  readonly hardwarePlaceholder: boolean;
  /**
   * false when the model is neither in the catalog nor given as a config.json folder: the script still writes the
   * train.yaml, but building the plan needs the model's config.json (its second argument)
   */
  readonly memoryKnown: boolean;
  /** the plan input the script's builder chain collects (`PlanBuilder.from(input)` builds the same plan) */
  readonly input: PlanInput;
  /** the escape hatch the script passes to emitFiles */
  readonly escapeHatch: {
    readonly set: Readonly<Record<string, unknown>>;
    readonly remove: readonly string[];
  };
}

/** The GPU a script plans for when none is given. */
export const PLACEHOLDER_GPU = "h100-80g";

/** train.yaml keys tunefit writes or not depending on the model (a vision tower or not). */
const ARCHITECTURE_KEYS = ["image_max_pixels", "freeze_vision_tower", "freeze_multi_modal_projector"];

/** Plan fields checked against the model's modules; resolved without them when the model is unknown. */
const MODULE_FIELDS = [
  "loraTarget",
  "additionalTarget",
  "freezeTrainableLayers",
  "freezeTrainableModules",
] as const;

/** Plan fields a usage error may drop (the YAML key then goes through the escape hatch); never the hardware. */
const DROPPABLE: ReadonlySet<string> = new Set([
  "quantBits",
  "quantMethod",
  "sharding",
  "fsdpStrategy",
  "offload",
  "precision",
  "optimizer",
  "seqLen",
  "packing",
  "microBatch",
  "gradAccum",
  "syncEachBatch",
  "gradientCheckpointing",
  "attention",
  "liger",
  "loraRank",
  "loraAlpha",
  "loraDropout",
  "useDora",
  "freezeVisionTower",
  "freezeProjector",
  "imageMaxPixels",
  "dataset",
  "template",
]);

/** How the script names the model. */
type ModelSource =
  | { readonly kind: "catalog"; readonly ref: string }
  | {
      readonly kind: "dimensions";
      readonly id: string;
      readonly architecture: Architecture;
      /** the folder (or definition) the dimensions were read from */
      readonly from: string | ModelDefinition;
    }
  | { readonly kind: "unknown"; readonly id: string };

type Input = Record<string, unknown>;

/** Where setupToPlan finds a relative model folder: the import's own folder. */
const setupWhere = (options: ImportOptions) => (options.cwd === undefined ? {} : { cwd: options.cwd });

/**
 * Turns a LLaMA-Factory training YAML (as `readTrainYamlFile` reads it) into a TypeScript script that builds the
 * same plan with PlanBuilder and writes a bundle whose train.yaml has exactly the original's keys and values.
 * Pure and deterministic: the same YAML and options give the same source.
 * @throws TunefitError (usage) when the YAML names no model, the hardware is unknown, or `model` does not resolve
 */
export function importTrainYaml(
  yaml: Readonly<Record<string, unknown>>,
  options: ImportOptions = {},
): ImportResult {
  const hardware = options.hardware ?? { gpu: PLACEHOLDER_GPU };
  const deepspeed = options.deepspeed ?? { kind: "none" };
  const accelerate = options.accelerate ?? null;
  const setup = setupToPlan(
    yaml,
    deepspeed,
    accelerate,
    setupHardware(hardware),
    options.model,
    setupWhere(options),
  );
  const model = modelSource(yaml, options);

  // the chain's input: setupToPlan's, with the model as the script names it and what cannot resolve taken out
  const input: Input = { ...setup.input };
  const { plan, chainInput } = resolveForImport(input, model, options.cwd);

  // what the plan's train.yaml would hold, against the original
  const emitted = trainYaml(plan);
  const pinned = new Set<string>();
  if (model.kind === "unknown") {
    // the model (a folder given when the script runs) and its vision tower are unknown here
    pinned.add("model_name_or_path");
    for (const k of ARCHITECTURE_KEYS) pinned.add(k);
  }
  // without a template the plan writes none, unless the script's folder is named like a catalog model
  if (plan.template === null) pinned.add("template");
  const set: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(yaml)) {
    if (pinned.has(key) || !Object.hasOwn(emitted, key) || !isDeepStrictEqual(emitted[key], value)) {
      set[key] = value;
    }
  }
  const remove = Object.keys(emitted).filter((k) => !Object.hasOwn(yaml, k));
  for (const k of pinned) if (!Object.hasOwn(yaml, k) && !remove.includes(k)) remove.push(k);

  const check = trainYaml(plan, { trainYaml: { set, remove } });
  if (!isDeepStrictEqual(sortedKeys(check), sortedKeys(yaml))) {
    throw new TunefitError("internal", [
      {
        code: "IMPORT_ROUND_TRIP_FAILED",
        severity: "error",
        path: "TRAIN_YAML",
        message: "the imported plan's train.yaml does not reproduce the original",
        hint: "Report this as a bug, with the YAML.",
      },
    ]);
  }

  const modelledKeys = modelled(yaml, setup.input, chainInput, set, deepspeed, accelerate, options);
  const calls = chainCalls(chainInput, model, hardware, options.hardware === undefined);
  const source = renderScript({
    calls,
    model,
    set,
    remove,
    yamlName: options.yamlName,
    placeholder: options.hardware === undefined,
  });
  const scriptInput = { ...chainInput, model: model.kind === "unknown" ? model.id : chainInput.model };
  return {
    source,
    builderCalls: calls.map((c) => c.name),
    modelledKeys,
    escapedKeys: [...Object.keys(set), ...remove],
    hardwarePlaceholder: options.hardware === undefined,
    memoryKnown: model.kind !== "unknown",
    input: scriptInput as PlanInput,
    escapeHatch: { set, remove },
  };
}

/** The hardware as setupToPlan takes it (PlanInput's field names). */
function setupHardware(h: ImportHardware): Hardware {
  return defined([
    ["gpu", h.gpu],
    ["gpus", h.gpus],
    ["nodes", h.nodes],
    ["gpuMemory", h.gpuMemoryGiB],
    ["hostRam", h.hostRamGiB],
  ]) as unknown as Hardware;
}

function sortedKeys(o: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(
    Object.keys(o)
      .sort()
      .map((k) => [k, o[k]]),
  );
}

/** The model the script names: a catalog id, inline dimensions read from a config.json, or an unknown id. */
function modelSource(yaml: Readonly<Record<string, unknown>>, options: ImportOptions): ModelSource {
  const named = typeof yaml.model_name_or_path === "string" ? yaml.model_name_or_path.trim() : "";
  const ref = options.model ?? named;
  if (ref === "") {
    throw usageError(
      "MODEL_MISSING",
      "TRAIN_YAML:model_name_or_path",
      "the YAML names no model_name_or_path",
      "Add model_name_or_path to the YAML, or give the model with --model.",
    );
  }
  let resolved: ReturnType<typeof resolveModel>;
  try {
    resolved = resolveModel(ref, options.cwd);
  } catch (e) {
    // a model the user gives must resolve; the YAML's own may be a hub id tunefit does not know
    if (options.model !== undefined || !isUsageError(e)) throw e;
    return { kind: "unknown", id: named };
  }
  if (resolved.source === "catalog" && typeof ref === "string") return { kind: "catalog", ref };
  return {
    kind: "dimensions",
    id: named || (typeof ref === "string" ? ref : ref.id),
    architecture: resolved.architecture,
    from: ref,
  };
}

/** A catalog model with a vision tower: the stand-in that resolves an unknown model's plan. */
function standInArchitecture(): Architecture {
  // a vision-language model that takes videos too, so that neither images nor videos are dropped for it
  const record =
    listCatalogModels().find((m) => takesVideos(m.architecture)) ??
    listCatalogModels().find((m) => m.architecture.vision !== null) ??
    listCatalogModels()[0];
  if (record === undefined) throw new TunefitError("internal", []);
  return record.architecture;
}

/**
 * Resolves the plan the script builds. Values tunefit cannot take (an unregistered template or optimizer, an
 * out-of-range number, image settings for a text model) are dropped from the chain, so their keys go through the
 * escape hatch; a YAML without a template for a model LLaMA-Factory registers none for keeps none.
 * An unknown model resolves with a stand-in architecture: only which keys the plan writes depends on it.
 */
function resolveForImport(
  input: Input,
  model: ModelSource,
  cwd: string | undefined,
): { plan: Plan; chainInput: Input } {
  const chain: Input = { ...input };
  if (chain.offload === "none") delete chain.offload; // the default, which the chain does not spell out
  if (model.kind === "catalog") chain.model = model.ref;
  else if (model.kind === "dimensions") chain.model = { id: model.id, architecture: model.architecture };
  else chain.model = { id: model.id, architecture: standInArchitecture() };

  if (model.kind === "dimensions" && chain.template === undefined) {
    // a folder named like a catalog model keeps its template (resolveModel), which the inline id may not find
    const folder = resolveModel(model.from, cwd);
    const template = folder.defaultTemplate ?? folder.groupTemplate;
    if (template !== null) chain.template = template;
  }

  const tries = Object.keys(chain).length + 2;
  for (let i = 0; ; i++) {
    const attempt: Input = { ...chain };
    if (model.kind === "unknown") for (const f of MODULE_FIELDS) delete attempt[f];
    try {
      let plan = resolvePlan(attempt, cwd === undefined ? {} : { cwd }).plan;
      if (model.kind === "unknown") {
        const patched: Record<string, unknown> = { ...plan };
        for (const f of MODULE_FIELDS) if (chain[f] !== undefined) patched[f] = chain[f];
        plan = patched as Plan;
      }
      return { plan, chainInput: chain };
    } catch (e) {
      if (!isUsageError(e) || i >= tries || !dropUnresolvable(e.issues, chain)) throw e;
    }
  }
}

/** Takes out of the chain what an error is about; false when it is about something that must not be dropped. */
function dropUnresolvable(issues: readonly Issue[], chain: Input): boolean {
  let changed = false;
  for (const issue of issues) {
    if (issue.code === "ADDITIONAL_TARGET_UNKNOWN" && chain.additionalTarget !== undefined) {
      delete chain.additionalTarget; // a module whose size tunefit does not know; LLaMA-Factory may still train it
      changed = true;
      continue;
    }
    if (issue.code === "MODEL_HAS_NO_VISION" || issue.code === "MODEL_TAKES_NO_VIDEO") {
      for (const f of issue.code === "MODEL_HAS_NO_VISION"
        ? ["imageMaxPixels", "imagesPerSample"]
        : ["videosPerSample", "videoFrames", "videoMaxPixels"]) {
        if (chain[f] !== undefined) {
          delete chain[f];
          changed = true;
        }
      }
      continue;
    }
    const field = issue.path.split(".")[0] ?? "";
    if (DROPPABLE.has(field) && chain[field] !== undefined) {
      delete chain[field];
      changed = true;
    } else {
      return false;
    }
  }
  return changed;
}

/**
 * YAML keys that shaped the chain: each modelled key whose value the plan's train.yaml reproduces, and each escaped
 * one the chain still reflects: removing it from the YAML would change a field the chain sets (`deepspeed:` when
 * its config was read; `model_name_or_path` when it names the model).
 */
function modelled(
  yaml: Readonly<Record<string, unknown>>,
  base: PlanInput,
  chain: Input,
  set: Readonly<Record<string, unknown>>,
  deepspeed: DeepSpeedSource,
  accelerate: Readonly<Record<string, unknown>> | null,
  options: ImportOptions,
): string[] {
  const hardware = setupHardware(options.hardware ?? { gpu: PLACEHOLDER_GPU });
  const known = MODELLED_KEYS as readonly string[];
  const baseFields = base as Input;
  return Object.keys(yaml).filter((key) => {
    if (!known.includes(key)) return false;
    if (!Object.hasOwn(set, key)) return true;
    if (key === "deepspeed") return deepspeed.kind !== "none" && chain.sharding !== undefined;
    if (key === "model_name_or_path") return options.model === undefined;
    const without: Record<string, unknown> = { ...yaml };
    delete without[key];
    const ablated = setupToPlan(without, deepspeed, accelerate, hardware, options.model, setupWhere(options))
      .input as Input;
    const fields = new Set([...Object.keys(baseFields), ...Object.keys(ablated)]);
    return [...fields].some(
      (f) =>
        f !== "model" &&
        !isDeepStrictEqual(ablated[f], baseFields[f]) &&
        chain[f] !== undefined &&
        isDeepStrictEqual(chain[f], baseFields[f]),
    );
  });
}

/** One call of the builder chain: its name, its arguments (values written as literals, or raw source), a comment. */
interface Call {
  readonly name: string;
  readonly args: readonly Arg[];
  readonly comment?: string;
}

type Arg = { readonly raw: string } | { readonly value: unknown };

const defined = (entries: readonly (readonly [string, unknown])[]): Record<string, unknown> =>
  Object.fromEntries(entries.filter(([, v]) => v !== undefined));

const objArgs = (o: Record<string, unknown>): Arg[] => (Object.keys(o).length === 0 ? [] : [{ value: o }]);

/** The builder chain for a plan input, one call per concern. */
function chainCalls(c: Input, model: ModelSource, hardware: ImportHardware, placeholder: boolean): Call[] {
  const calls: Call[] = [];
  calls.push({
    name: "model",
    args: [model.kind === "unknown" ? { raw: "model" } : { value: c.model }],
  });
  calls.push({
    name: "hardware",
    args: [
      {
        value: defined([
          ["gpu", hardware.gpu],
          ["gpus", hardware.gpus],
          ["nodes", hardware.nodes],
          ["gpuMemoryGiB", hardware.gpuMemoryGiB],
          ["hostRamGiB", hardware.hostRamGiB],
        ]),
      },
    ],
    ...(placeholder ? { comment: "PLACEHOLDER: set your GPUs (tunefit gpus lists the ids)" } : {}),
  });
  const lora = (): [string, unknown][] => [
    ["rank", c.loraRank],
    ["alpha", c.loraAlpha],
    ["dropout", c.loraDropout],
    ["target", c.loraTarget],
    ["dora", c.useDora],
    ["additionalTarget", c.additionalTarget],
  ];
  const method = c.method ?? "lora";
  if (method === "full") calls.push({ name: "full", args: [] });
  else if (method === "freeze") {
    calls.push({
      name: "freeze",
      args: objArgs(
        defined([
          ["trainableLayers", c.freezeTrainableLayers],
          ["trainableModules", c.freezeTrainableModules],
        ]),
      ),
    });
  } else if (method === "qlora") {
    calls.push({
      name: "qlora",
      args: objArgs(defined([["bits", c.quantBits], ["quantMethod", c.quantMethod], ...lora()])),
    });
  } else calls.push({ name: "lora", args: objArgs(defined(lora())) });
  const lowMemory = c.lowMemoryOptimizer;
  if (
    lowMemory === "galore" ||
    lowMemory === "apollo" ||
    lowMemory === "badam" ||
    lowMemory === "adam_mini" ||
    lowMemory === "muon"
  ) {
    calls.push({
      name: lowMemory === "adam_mini" ? "adamMini" : lowMemory,
      args: objArgs(
        defined([
          ["rank", c.lowMemoryRank],
          ["layerwise", c.lowMemoryLayerwise],
        ]),
      ),
    });
  }

  const sharding = c.sharding;
  if (sharding === "zero1" || sharding === "zero2" || sharding === "zero3") {
    calls.push({ name: "zero", args: [{ value: Number(sharding.slice(4)) }] });
  } else if (sharding === "fsdp") {
    calls.push({ name: "fsdp", args: objArgs(defined([["strategy", c.fsdpStrategy]])) });
  } else if (sharding === "fsdp2") {
    calls.push({ name: "fsdp", args: [{ value: { version: 2 } }] });
  } else if (sharding === "none") calls.push({ name: "noSharding", args: [] });
  if (c.offload !== undefined && c.offload !== "none")
    calls.push({ name: "offload", args: [{ value: c.offload }] });

  const training = defined(
    (
      [
        "seqLen",
        "microBatch",
        "gradAccum",
        "syncEachBatch",
        "precision",
        "packing",
        "gradientCheckpointing",
        "attention",
        "liger",
        "optimizer",
      ] as const
    ).map((f) => [f, c[f]] as const),
  );
  if (Object.keys(training).length > 0) calls.push({ name: "training", args: [{ value: training }] });
  const multimodal = defined(
    (
      [
        "imagesPerSample",
        "imageMaxPixels",
        "videosPerSample",
        "videoFrames",
        "videoMaxPixels",
        "freezeVisionTower",
        "freezeProjector",
      ] as const
    ).map((f) => [f, c[f]] as const),
  );
  if (Object.keys(multimodal).length > 0) calls.push({ name: "multimodal", args: [{ value: multimodal }] });
  const data = defined([
    ["dataset", c.dataset],
    ["template", c.template],
  ]);
  if (Object.keys(data).length > 0) calls.push({ name: "data", args: [{ value: data }] });
  return calls;
}

// ---------------------------------------------------------------------------------------------------------------
// Source text

/** Biome's line width in this project; literals wider than the room left break over lines. */
const LINE_WIDTH = 110;
const INDENT = "  ";

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

function propertyKey(key: string): string {
  if (key === "__proto__") return `["__proto__"]`; // a quoted __proto__ key would set the prototype
  return IDENTIFIER.test(key) ? key : JSON.stringify(key);
}

function scalar(value: unknown): string | undefined {
  if (value === null) return "null";
  if (value === undefined) return "undefined";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "boolean") return String(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "Number.NaN";
    if (value === Number.POSITIVE_INFINITY) return "Number.POSITIVE_INFINITY";
    if (value === Number.NEGATIVE_INFINITY) return "Number.NEGATIVE_INFINITY";
    return Object.is(value, -0) ? "-0" : String(value);
  }
  if (value instanceof Date) return `new Date(${JSON.stringify(value.toISOString())})`;
  return undefined;
}

/** A value as a TypeScript literal on one line. */
function flat(value: unknown): string {
  const s = scalar(value);
  if (s !== undefined) return s;
  if (Array.isArray(value)) return `[${value.map(flat).join(", ")}]`;
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return "{}";
  return `{ ${entries.map(([k, v]) => `${propertyKey(k)}: ${flat(v)}`).join(", ")} }`;
}

/**
 * A value as a TypeScript literal starting at column `column` of a line indented by `indent`, followed by
 * `suffix` characters: on one line when it fits the width, else one element or property a line (as Biome does).
 */
function literal(value: unknown, indent: number, column: number, suffix: number): string {
  const one = flat(value);
  if (column + one.length + suffix <= LINE_WIDTH || scalar(value) !== undefined) return one;
  const inner = INDENT.repeat(indent + 1);
  const close = INDENT.repeat(indent);
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    if (value.every((v) => typeof v === "number")) {
      // numbers fill the lines, as Biome (and Prettier) print them
      const rows: string[] = [];
      for (const v of value.map(flat)) {
        const last = rows[rows.length - 1];
        if (last !== undefined && inner.length + last.length + 2 + v.length + 1 <= LINE_WIDTH) {
          rows[rows.length - 1] = `${last}, ${v}`;
        } else rows.push(v);
      }
      return `[\n${rows.map((r) => `${inner}${r},`).join("\n")}\n${close}]`;
    }
    const items = value.map((v) => `${inner}${literal(v, indent + 1, inner.length, 1)},`);
    return `[\n${items.join("\n")}\n${close}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return "{}";
  const props = entries.map(([k, v]) => {
    const key = `${inner}${propertyKey(k)}: `;
    return `${key}${literal(v, indent + 1, key.length, 1)},`;
  });
  return `{\n${props.join("\n")}\n${close}}`;
}

interface ScriptParts {
  readonly calls: readonly Call[];
  readonly model: ModelSource;
  readonly set: Readonly<Record<string, unknown>>;
  readonly remove: readonly string[];
  readonly yamlName: string | undefined;
  readonly placeholder: boolean;
}

/** Words wrapped into comment lines of the line width. */
function commentLines(paragraph: string, width = LINE_WIDTH - 3): string[] {
  // a line break inside a comment would end it (the YAML's name and the model id are the user's)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  const words = paragraph.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, " ").split(/ +/);
  const lines: string[] = [];
  let line = "";
  for (const word of words) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "") lines.push(line);
  return lines;
}

/** The paragraphs of the script's header comment. */
function headerParagraphs(p: ScriptParts): string[] {
  const name = p.yamlName ?? "a LLaMA-Factory training YAML";
  const escaped = Object.keys(p.set).length + p.remove.length;
  const paragraphs = [
    `Imported by \`tunefit import\` from ${name}: builds the same plan with tunefit's PlanBuilder and writes its ` +
      `bundle, whose train.yaml has every key and value of the original (${escaped} ` +
      `${escaped === 1 ? "key goes" : "keys go"} through the escape hatch below).`,
  ];
  if (p.model.kind === "unknown") {
    paragraphs.push(
      `Memory unknown: tunefit's catalog lacks ${p.model.id}, so building the plan needs its config.json. ` +
        "Run: npx tsx THIS_FILE OUT_DIR MODEL_DIR, with the folder that holds it.",
    );
  } else {
    paragraphs.push("Run: npx tsx THIS_FILE [OUT_DIR] (default ./out; an existing folder is replaced).");
  }
  if (p.model.kind === "dimensions") {
    const from = p.model.from;
    paragraphs.push(
      typeof from === "string"
        ? `The model's dimensions are read from ${from}/config.json, written inline.`
        : `The model's dimensions are read from the config.json of ${from.id} on the Hugging Face Hub, written inline.`,
    );
  }
  if (p.placeholder) {
    paragraphs.push(
      `PLACEHOLDER hardware: none was given, so the plan is for one ${PLACEHOLDER_GPU}; set your GPUs in .hardware().`,
    );
  }
  return paragraphs;
}

function chainWriter(calls: readonly Call[]): WriterFunction {
  return (writer) => {
    writer.write("PlanBuilder.create()");
    for (const call of calls) {
      writer.newLine();
      const head = `${INDENT}.${call.name}(`;
      const args = call.args
        .map((a) => ("raw" in a ? a.raw : literal(a.value, 1, head.length, 1)))
        .join(", ");
      writer.write(`${head}${args})`);
      if (call.comment !== undefined) writer.write(` // ${call.comment}`);
    }
    writer.newLine();
    writer.write(`${INDENT}.build()`);
  };
}

function emitWriter(set: Readonly<Record<string, unknown>>, remove: readonly string[]): WriterFunction {
  return (writer) => {
    const hatch = defined([
      ["set", Object.keys(set).length > 0 ? set : undefined],
      ["remove", remove.length > 0 ? remove : undefined],
    ]);
    if (Object.keys(hatch).length === 0) {
      writer.write("emitFiles(plan)");
      return;
    }
    // always broken over lines: the escape hatch is what a reader looks for
    const lines = Object.entries(hatch).map(([k, v]) => {
      const key = `${INDENT.repeat(2)}${k}: `;
      const text =
        k === "set"
          ? `{\n${Object.entries(v as Record<string, unknown>)
              .map(([sk, sv]) => {
                const head = `${INDENT.repeat(3)}${propertyKey(sk)}: `;
                return `${head}${literal(sv, 3, head.length, 1)},`;
              })
              .join("\n")}\n${INDENT.repeat(2)}}`
          : literal(v, 2, key.length, 1);
      return `${key}${text},`;
    });
    writer.write(`emitFiles(plan, {\n${INDENT}trainYaml: {\n${lines.join("\n")}\n${INDENT}},\n})`);
  };
}

function renderScript(p: ScriptParts): string {
  const project = new (morph().Project)({
    useInMemoryFileSystem: true,
    manipulationSettings: {
      indentationText: morph().IndentationText.TwoSpaces,
      newLineKind: morph().NewLineKind.LineFeed,
      quoteKind: morph().QuoteKind.Double,
      useTrailingCommas: true,
    },
  });
  const file = project.createSourceFile("import.ts", "");
  file.addImportDeclaration({
    leadingTrivia: (writer) => {
      for (const line of headerParagraphs(p).flatMap((para) => commentLines(para)))
        writer.writeLine(`// ${line}`);
    },
    namedImports: ["emitFiles", "PlanBuilder", "writeFiles"],
    moduleSpecifier: "tunefit",
  });
  // ts-morph separates the imports from the first statement; every later one gets a blank line before it
  let first = true;
  const gap = (writer: CodeBlockWriter) => {
    if (!first) writer.blankLine();
    first = false;
  };
  if (p.model.kind === "unknown") {
    file.addVariableStatement({
      leadingTrivia: (writer) => {
        gap(writer);
        for (const line of commentLines(
          `Not in tunefit's catalog: the folder holding the model's config.json, from the second argument ` +
            "(without one, the id is read as a folder path from the current folder).",
        )) {
          writer.writeLine(`// ${line}`);
        }
      },
      declarationKind: morph().VariableDeclarationKind.Const,
      declarations: [{ name: "model", initializer: `process.argv[3] ?? ${JSON.stringify(p.model.id)}` }],
    });
  }
  file.addVariableStatement({
    leadingTrivia: gap,
    declarationKind: morph().VariableDeclarationKind.Const,
    declarations: [{ name: "plan", initializer: chainWriter(p.calls) }],
  });
  const hatch = [
    Object.keys(p.set).length > 0
      ? "`set` keeps the original's values of keys tunefit does not model or writes differently"
      : "",
    p.remove.length > 0 ? "`remove` drops keys tunefit may add that the original does not have" : "",
  ].filter(Boolean);
  file.addVariableStatement({
    leadingTrivia: (writer) => {
      gap(writer);
      if (hatch.length === 0) return;
      for (const line of commentLines(`The escape hatch: ${hatch.join("; ")}.`))
        writer.writeLine(`// ${line}`);
    },
    declarationKind: morph().VariableDeclarationKind.Const,
    declarations: [{ name: "files", initializer: emitWriter(p.set, p.remove) }],
  });
  file.addVariableStatement({
    leadingTrivia: gap,
    declarationKind: morph().VariableDeclarationKind.Const,
    declarations: [
      { name: "written", initializer: 'writeFiles(files, process.argv[2] ?? "out", { force: true })' },
    ],
  });
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the script's template literal
  file.addStatements("console.log(`Wrote ${written.files.length} files to ${written.dir}`);");
  file.formatText({
    indentSize: 2,
    tabSize: 2,
    convertTabsToSpaces: true,
    newLineCharacter: "\n",
    semicolons: morph().ts.SemicolonPreference.Insert,
    ensureNewLineAtEndOfFile: true,
  });
  const text = file.getFullText();
  return text.endsWith("\n") ? text : `${text}\n`;
}
