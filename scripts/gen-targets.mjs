#!/usr/bin/env node
// Regenerates the key tables of the three target tools from the reference data set:
//   llamafactory-args.json  -> src/schema/targets/data/llamafactory-keys.ts
//     every training-YAML key `llamafactory-cli train` accepts (HfArgumentParser over the 5 dataclasses,
//     LLaMA-Factory ff6d4d12ee with the transformers 5.x TrainingArguments of huggingface/transformers@00349ae87e)
//   deepspeed-config.json   -> src/schema/targets/data/deepspeed-keys.ts
//     DeepSpeed JSON keys of the sections top_level, zero_optimization, offload_param, offload_optimizer, fp16, bf16
//     (deepspeedai/DeepSpeed@edaa722, each key checked against the pinned v0.18.4 = b35d9eb01b), with the "auto"
//     values transformers (integrations/deepspeed.py@3a80c16) and accelerate fill in
//   accelerate-config.json  -> src/schema/targets/data/accelerate-keys.ts
//     accelerate config-file keys (top level and fsdp_config; huggingface/accelerate@16cb6eb, each key checked
//     against the pinned v1.11.0 = 9a81156b4b) and the launcher's rejection messages
//
// Usage: node scripts/gen-targets.mjs [--from DIR]   (DIR defaults to ../shared/reference)
// Every python/pydantic type string is mapped through an explicit table; an unknown one stops the script.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const fromIdx = process.argv.indexOf("--from");
const from = resolve(root, fromIdx > 0 ? process.argv[fromIdx + 1] : "../shared/reference");
const read = (name) => JSON.parse(readFileSync(join(from, name), "utf8"));

const lfArgs = read("llamafactory-args.json");
const dsRef = read("deepspeed-config.json");
const accRef = read("accelerate-config.json");

function fail(message) {
  throw new Error(`gen-targets: ${message}`);
}

/** Kinds in a fixed order, so a union always reads the same ("dict|string", "string|list"). */
const KIND_ORDER = ["dict", "string", "list", "int", "float", "bool", "json"];
function joinKinds(kinds) {
  const set = new Set(kinds);
  // A member we cannot check (an object only Python code can build) makes the whole value opaque.
  if (set.has("json")) return "json";
  return KIND_ORDER.filter((k) => set.has(k)).join("|");
}

/** First sentence or clause of a reference note: the short description. */
function firstClause(text) {
  if (!text) return null;
  const cut = text.search(/;\s|\.\s/);
  return (cut > 0 ? text.slice(0, cut) : text).replace(/\.$/, "").trim();
}

// ---------------------------------------------------------------- LLaMA-Factory

/** Splits a python union at its top-level `|` (not inside brackets). */
function splitUnion(type) {
  const parts = [];
  let depth = 0;
  let cur = "";
  for (const ch of type) {
    if (ch === "[") depth++;
    if (ch === "]") depth--;
    if (ch === "|" && depth === 0) {
      parts.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  parts.push(cur.trim());
  return parts;
}

const lfEnums = lfArgs.enums;
const isEnumName = (t) => t in lfEnums || `transformers.${t}` in lfEnums;

/** One python annotation member -> { kind } or { nullable } ; null when unknown. */
function lfMember(t) {
  if (t === "None") return { nullable: true };
  const opt = /^Optional\[(.*)\]$/.exec(t);
  if (opt) return { members: [...splitUnion(opt[1]), "None"] };
  if (t === "str" || t === "Path") return { kind: "string" };
  if (t === "int") return { kind: "int" };
  if (t === "float") return { kind: "float" };
  if (t === "bool") return { kind: "bool" };
  if (t === "dict" || /^dict\[.*\]$/.test(t)) return { kind: "dict" };
  if (/^list\[.*\]$/.test(t)) return { kind: "list" };
  if (/^Literal\[.*\]$/.test(t)) return { kind: "string", needsChoices: true };
  if (isEnumName(t)) return { kind: "string", needsChoices: true };
  // Python objects a YAML file cannot spell; parse_dict passes whatever is given straight through.
  if (t === "GenerationConfig" || t === "ParallelismConfig") return { kind: "json" };
  return null;
}

function lfKind(field) {
  const kinds = [];
  let nullable = false;
  const queue = splitUnion(field.type);
  while (queue.length > 0) {
    const t = queue.shift();
    const m = lfMember(t);
    if (!m) fail(`llamafactory-args.json: unknown type member "${t}" in "${field.type}" (${field.name})`);
    if (m.members) queue.push(...m.members);
    if (m.nullable) nullable = true;
    if (m.kind) kinds.push(m.kind);
    if (m.needsChoices && !field.choices) fail(`${field.name}: "${t}" without a choices list`);
  }
  if (kinds.length === 0) fail(`${field.name}: no kind in "${field.type}"`);
  // transformers _process_fsdp_args maps `fsdp: true` to [full_shard] (see the field's note and llamafactory.md
  // §2.5), although the annotation does not list bool.
  if (field.name === "fsdp") kinds.push("bool");
  // The dataclasses' __post_init__ split these with split_arg, which splits a string on commas and passes any
  // other value through: a YAML list of names works as well (LLaMA-Factory hparams/finetuning_args.py and
  // data_args.py).
  if (SPLIT_ARG_FIELDS.has(field.name)) kinds.push("list");
  return { kind: joinKinds(kinds), nullable };
}

const SPLIT_ARG_FIELDS = new Set([
  "freeze_trainable_modules",
  "freeze_extra_modules",
  "lora_target",
  "oft_target",
  "additional_target",
  "galore_target",
  "apollo_target",
  "dataset",
  "eval_dataset",
]);

const lfFields = lfArgs.fields
  .filter((f) => f.accepted_in_yaml === true)
  .map((f) => {
    const { kind, nullable } = lfKind(f);
    return {
      name: f.name,
      parser: f.parser_dataclass,
      dataclass: f.dataclass,
      kind,
      nullable,
      default: f.default,
      choices: f.choices ?? null,
      help: f.help ?? "",
      note: f.note ?? null,
      transformersVersions: f.transformers_versions ?? null,
    };
  });
if (lfFields.length !== lfArgs.counts_total_accepted) {
  fail(`${lfFields.length} accepted fields, the reference counts ${lfArgs.counts_total_accepted}`);
}
if (new Set(lfFields.map((f) => f.name)).size !== lfFields.length)
  fail("duplicate LLaMA-Factory field names");

// ---------------------------------------------------------------- DeepSpeed

const DS_SECTIONS = ["top_level", "zero_optimization", "offload_param", "offload_optimizer", "fp16", "bf16"];
const dsPrefix = {
  top_level: "",
  zero_optimization: "zero_optimization.",
  offload_param: "zero_optimization.offload_param.",
  offload_optimizer: "zero_optimization.offload_optimizer.",
  fp16: "fp16.",
  bf16: "bf16.",
};
/** Reference type string -> [kind, nullable]. */
const DS_TYPES = {
  int: ["int", false],
  "int|null": ["int", true],
  float: ["float", false],
  bool: ["bool", false],
  "Optional[bool]": ["bool", true],
  str: ["string", false],
  "str|null": ["string", true],
  "Optional[Path]": ["string", true],
  OffloadDeviceEnum: ["string", false],
  ZeroStageEnum: ["int", false],
  object: ["dict", false],
  "object|bool": ["dict|bool", false],
  "Optional[Dict[str, Any]]": ["dict", true],
  "Optional[DeepSpeedZeroOffloadParamConfig]": ["dict", true],
  "Optional[DeepSpeedZeroOffloadOptimizerConfig]": ["dict", true],
  "Optional[ZenFlowConfig]": ["dict", true],
  DeepSpeedZeroLeafModuleConfig: ["dict", false],
};

// "auto": keys transformers' HfTrainerDeepSpeedConfig or accelerate's _prepare_deepspeed replace. DeepSpeed itself
// drops "auto" inside its pydantic sections and chokes on it at the top level, so only these keys may carry it.
const dsAllPaths = new Set(
  DS_SECTIONS.flatMap((s) =>
    Object.entries(dsRef[s]).map(([k, v]) => `${dsPrefix[s]}${s === "top_level" ? (v.json_key ?? k) : k}`),
  ),
);
const hfAuto = dsRef.hf_auto_values;
const autoFill = new Map();
for (const [who, table] of [
  ["transformers Trainer", hfAuto.transformers_trainer.trainer_config_process],
  ["transformers Trainer", hfAuto.transformers_trainer.trainer_config_finalize],
  ["accelerate", hfAuto.accelerate_without_trainer],
]) {
  for (const [key, text] of Object.entries(table)) {
    if (typeof text !== "string" || /not an auto key|always overwritten/.test(text)) continue;
    for (const path of key.split(" / ")) {
      if (dsAllPaths.has(path) && !autoFill.has(path)) autoFill.set(path, `${who}: ${text}`);
    }
  }
}

const dsKeys = DS_SECTIONS.flatMap((section) =>
  Object.entries(dsRef[section]).map(([name, e]) => {
    const key = e.json_key ?? name;
    const path = `${dsPrefix[section]}${key}`;
    const t = DS_TYPES[e.type];
    if (!t) fail(`deepspeed-config.json: unknown type "${e.type}" (${path})`);
    if (typeof e.at_pinned !== "boolean") fail(`${path}: at_pinned missing`);
    if (e.hf_auto && !autoFill.has(path)) fail(`${path}: hf_auto without a fill rule in hf_auto_values`);
    return {
      section,
      key,
      path,
      aliases: (e.aliases_accepted ?? []).filter((a) => a !== key),
      type: e.type,
      kind: t[0],
      nullable: t[1],
      default: e.default ?? null,
      defaultAtPinned: "pinned_default" in e ? e.pinned_default : (e.default ?? null),
      allowed: e.allowed ?? null,
      min: e.ge ?? null,
      max: e.le ?? null,
      hfAuto: autoFill.has(path),
      hfAutoFill: autoFill.get(path) ?? null,
      atPinned: e.at_pinned,
      since: e.since ?? null,
      atPinnedEffect: e.at_pinned_effect ?? null,
      deprecated: e.deprecated ? (e.replaced_by ?? "deprecated") : null,
      description: firstClause(e.doc ?? e.note ?? null),
    };
  }),
);

// ---------------------------------------------------------------- accelerate

/** Reference type string -> [kind, nullable]. */
const ACC_TYPES = {
  enum: ["string", false],
  str: ["string", false],
  "str|null": ["string", true],
  bool: ["bool", false],
  int: ["int", false],
  "int|null": ["int", true],
  dict: ["dict", false],
  "list[str]|null": ["list", true],
  path: ["string", false],
  "comma-separated class names (case-sensitive)": ["string", false],
  "regex string (fullmatch on module names)": ["string", false],
};
function accKind(where, e) {
  if (e.type !== undefined) {
    const t = ACC_TYPES[e.type];
    if (!t) fail(`accelerate-config.json: unknown type "${e.type}" (${where})`);
    return t;
  }
  const allowed = e.allowed ?? e.allowed_fsdp1;
  if (allowed?.every((v) => typeof v === "number")) return ["int", false];
  if (allowed?.every((v) => typeof v === "string")) return ["string", false];
  return null;
}

const accTop = Object.entries(accRef.top_level).map(([key, e]) => {
  const t = accKind(key, e);
  if (!t) fail(`accelerate top_level.${key}: no type`);
  return {
    key,
    type: e.type,
    kind: t[0],
    nullable: t[1],
    required: e.required === true,
    allowed: e.pinned_allowed ?? e.allowed ?? null,
    default: e.default ?? null,
    atPinned: e.at_pinned,
    description: firstClause(e.note ?? null),
  };
});
// Accepted by the pinned v1.11.0 but gone from the current top_level table (removed in v1.13.0).
for (const [key, text] of Object.entries(accRef._meta.pinned.top_level_extra_at_pinned ?? {})) {
  accTop.push({
    key,
    type: "dict",
    kind: "dict",
    nullable: false,
    required: false,
    allowed: null,
    default: null,
    atPinned: true,
    description: firstClause(text),
  });
}

// Which FSDP version reads each fsdp_config key. The reference's to_fsdp2_conversion drops or renames the FSDP1-only
// keys; the two explicit entries are the version switch and the FSDP2 spelling of the sharding strategy.
const conversion = accRef.to_fsdp2_conversion.key_mapping;
const FSDP_APPLIES = {
  fsdp_version: [
    "fsdp2",
    "selects FSDP2; FSDP1 is the default (cli/plugin default 1), so tunefit writes the key only for FSDP2",
  ],
  fsdp_reshard_after_forward: [
    "fsdp2",
    "the FSDP2 strategy, a bool; under FSDP1 accelerate launch always exports fsdp_sharding_strategy (default FULL_SHARD), which wins over a strategy written here, and a bool raises",
  ],
};
function fsdpApplies(key, e) {
  const mapped = conversion[key];
  let applies;
  let reason;
  if (FSDP_APPLIES[key]) [applies, reason] = FSDP_APPLIES[key];
  else if (mapped === "REMOVED") [applies, reason] = ["fsdp1", `to-fsdp2 removes it; FSDP2: ${e.fsdp2}`];
  else if (mapped === "NOT_YET_IMPLEMENTED")
    [applies, reason] = ["fsdp1", `not implemented in FSDP2: ${e.fsdp2}`];
  else if (mapped && mapped !== key)
    [applies, reason] = ["fsdp1", `to-fsdp2 converts it to ${mapped}; FSDP2: ${e.fsdp2}`];
  else
    [applies, reason] = [
      "both",
      e.fsdp2 ? `read by both versions; FSDP2: ${e.fsdp2}` : "read by both versions",
    ];
  // Cross-check the explicit entries against the conversion table.
  if (mapped && mapped !== key && applies !== "fsdp1")
    fail(`${key}: to-fsdp2 maps it to ${mapped} but applies=${applies}`);
  return { applies, reason };
}

const accFsdp = Object.entries(accRef.fsdp_config).map(([key, e]) => {
  let t = accKind(`fsdp_config.${key}`, e);
  if (key === "fsdp_reshard_after_forward") t = ["bool", false]; // FSDP2 form (rejection fsdp2_reshard_not_bool)
  if (!t) fail(`accelerate fsdp_config.${key}: no type`);
  const { applies, reason } = fsdpApplies(key, e);
  const allowed = e.allowed ?? null;
  return {
    key,
    type: e.type ?? null,
    kind: t[0],
    appliesTo: applies,
    appliesReason: reason,
    allowedFsdp1: e.allowed_fsdp1 ?? allowed,
    allowedFsdp2: e.allowed_fsdp2 ?? allowed,
    caseInsensitive: e.case === "case-insensitive",
    cliDefault: e.cli_default ?? null,
    pluginDefault: e.plugin_default ?? e.default ?? null,
    atPinned: e.at_pinned,
    fsdp1: e.fsdp1 ?? null,
    fsdp2: e.fsdp2 ?? null,
    description: firstClause(e.note ?? e.fsdp1 ?? null),
  };
});

const accRejections = accRef.rejections.map((r) => ({
  id: r.id,
  message: r.message,
  condition: r.condition ?? null,
  atPinned: r.at_pinned ?? null,
}));

// ---------------------------------------------------------------- write

const banner = (what) =>
  `// Generated by scripts/gen-targets.mjs from the reference ${what}. Do not edit by hand.\n`;
const data = (value) => JSON.stringify(value, null, 2);
/** "deepspeedai/DeepSpeed@edaa722 (version.txt …)" -> "deepspeedai/DeepSpeed@edaa722" */
const upstreamOf = (text) => text.replace(/\s*\(.*$/, "");
const lf = lfArgs.upstream;
writeFileSync(
  join(root, "src/schema/targets/data/llamafactory-keys.ts"),
  `${banner(`llamafactory-args.json (LLaMA-Factory ${lf.llamafactory.short}, transformers TrainingArguments ${lf.transformers.training_args_py_short})`)}
/** Every key \`llamafactory-cli train <yaml>\` accepts, in dataclass order. \`default\` is the python source text. */
export const LLAMAFACTORY_FIELDS = ${data(lfFields)} as const;
`,
);
writeFileSync(
  join(root, "src/schema/targets/data/deepspeed-keys.ts"),
  `${banner(`deepspeed-config.json (${upstreamOf(dsRef._meta.deepspeed)}; pinned ${dsRef._meta.pinned.tag} = ${dsRef._meta.pinned.commit.slice(0, 10)})`)}
/** DeepSpeed config keys of the sections tunefit writes; \`atPinned\` = accepted by DeepSpeed ${dsRef._meta.pinned.tag}. */
export const DEEPSPEED_KEYS = ${data(dsKeys)} as const;
`,
);
writeFileSync(
  join(root, "src/schema/targets/data/accelerate-keys.ts"),
  `${banner(`accelerate-config.json (${upstreamOf(accRef._meta.accelerate)}; pinned ${accRef._meta.pinned.tag} = ${accRef._meta.pinned.commit.slice(0, 10)})`)}
/** Top-level keys of an accelerate config file (ClusterConfig); unknown ones are rejected. */
export const ACCELERATE_TOP_LEVEL_KEYS = ${data(accTop)} as const;

/** Keys of \`fsdp_config\` with the FSDP version that reads them; unknown ones are silently ignored by accelerate. */
export const ACCELERATE_FSDP_KEYS = ${data(accFsdp)} as const;

/** Error messages of accelerate launch / the FSDP plugin, by id. */
export const ACCELERATE_REJECTIONS = ${data(accRejections)} as const;
`,
);

function count(xs, f) {
  const n = new Map();
  for (const x of xs) n.set(f(x), (n.get(f(x)) ?? 0) + 1);
  return [...n].map(([k, v]) => `${k} ${v}`).join(", ");
}
console.log(`llamafactory: ${lfFields.length} keys; kinds: ${count(lfFields, (f) => f.kind)}`);
console.log(
  `deepspeed: ${dsKeys.length} keys (${dsKeys.filter((k) => k.atPinned).length} at pinned, ${dsKeys.filter((k) => k.hfAuto).length} "auto"); ${count(dsKeys, (k) => k.section)}`,
);
console.log(
  `accelerate: ${accTop.length} top-level keys, ${accFsdp.length} fsdp_config keys (${count(accFsdp, (k) => k.appliesTo)}), ${accRejections.length} rejections`,
);
