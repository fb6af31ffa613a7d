import { z } from "zod";
import type { Issue } from "../../errors.ts";
import { DEEPSPEED_KEYS } from "./data/deepspeed-keys.ts";
import { type KindSpec, type KindValue, kindSchema, schemaIssues, type TargetFile } from "./kinds.ts";

/** One DeepSpeed config key (generated from deepspeed-config.json). */
export type DeepSpeedKey = (typeof DEEPSPEED_KEYS)[number];
export type DeepSpeedSection = DeepSpeedKey["section"];

/** Keys the pinned DeepSpeed (v0.18.4) accepts; the schemas take only these. */
const PINNED = DEEPSPEED_KEYS.filter((k) => k.atPinned);

/** Sections DeepSpeed validates with pydantic (extra="forbid"); the top level is read with dict.get. */
const PARENT_SECTION: Readonly<Record<string, DeepSpeedSection>> = {
  "": "top_level",
  zero_optimization: "zero_optimization",
  "zero_optimization.offload_param": "offload_param",
  "zero_optimization.offload_optimizer": "offload_optimizer",
  fp16: "fp16",
  bf16: "bf16",
};
const NESTED = new Set(Object.keys(PARENT_SECTION));

const specOf = (k: DeepSpeedKey): KindSpec => ({
  kind: k.kind,
  nullable: k.nullable,
  allowed: k.allowed,
  min: k.min,
  max: k.max,
  auto: k.hfAuto,
});

function describe(k: DeepSpeedKey): string {
  return [
    k.description,
    k.hfAuto ? `"auto" is filled in by ${k.hfAutoFill}` : null,
    k.deprecated ? `Deprecated: ${k.deprecated}.` : null,
  ]
    .filter(Boolean)
    .join(". ");
}

/** The strict shape of one section: its pinned keys and their accepted aliases. */
function sectionShape(section: DeepSpeedSection): Record<string, z.ZodType> {
  const shape: Record<string, z.ZodType> = {};
  for (const k of PINNED) {
    if (k.section !== section || NESTED.has(k.path)) continue;
    const value = kindSchema(specOf(k))
      .meta({ description: describe(k) })
      .optional();
    for (const name of [k.key, ...k.aliases]) shape[name] = value;
  }
  return shape;
}

type SectionKeys<S extends DeepSpeedSection> = Extract<DeepSpeedKey, { section: S; atPinned: true }>;
type SectionShape<S extends DeepSpeedSection, Omit extends string = never> = {
  [K in SectionKeys<S> as K["key"] extends Omit ? never : K["key"]]: z.ZodOptional<
    z.ZodType<KindValue<K["kind"], K["allowed"], K["nullable"]> | (K["hfAuto"] extends true ? "auto" : never)>
  >;
};

export const DeepSpeedOffloadParam = z.strictObject(
  sectionShape("offload_param") as SectionShape<"offload_param">,
);
export const DeepSpeedOffloadOptimizer = z.strictObject(
  sectionShape("offload_optimizer") as SectionShape<"offload_optimizer">,
);
export const DeepSpeedZeroOptimization = z.strictObject({
  ...(sectionShape("zero_optimization") as SectionShape<
    "zero_optimization",
    "offload_param" | "offload_optimizer"
  >),
  offload_param: DeepSpeedOffloadParam.nullable()
    .optional()
    .meta({ description: "ZeRO-3 parameter offload (valid only with stage 3)" }),
  offload_optimizer: DeepSpeedOffloadOptimizer.nullable()
    .optional()
    .meta({ description: "optimizer-state offload (stages 1-3)" }),
});
export const DeepSpeedFp16 = z.strictObject(sectionShape("fp16") as SectionShape<"fp16">);
export const DeepSpeedBf16 = z.strictObject(sectionShape("bf16") as SectionShape<"bf16">);

/**
 * The DeepSpeed JSON tunefit writes (passed to LLaMA-Factory as `deepspeed:`): top-level keys, `zero_optimization`
 * (with `offload_param` / `offload_optimizer`), `fp16` and `bf16`, each strict and limited to the keys DeepSpeed
 * v0.18.4 accepts. `"auto"` only where transformers or accelerate fill it in. Other top-level sections (optimizer,
 * scheduler, …) are accepted as plain mappings. `zero_optimization` is required (accelerate's DeepSpeedPlugin:
 * "Please specify the ZeRO optimization config in the DeepSpeed config."); its deprecated bool form is not accepted.
 */
export const DeepSpeedConfig = z.strictObject({
  ...(sectionShape("top_level") as SectionShape<"top_level", "zero_optimization" | "fp16" | "bf16">),
  zero_optimization: DeepSpeedZeroOptimization.meta({ description: "ZeRO settings (DeepSpeedZeroConfig)" }),
  fp16: DeepSpeedFp16.optional().meta({ description: "fp16 mixed precision (DeepSpeedFP16Config)" }),
  bf16: DeepSpeedBf16.optional().meta({ description: "bf16 mixed precision (DeepSpeedBF16Config)" }),
});
export type DeepSpeedConfig = z.infer<typeof DeepSpeedConfig>;

const BY_PATH: ReadonlyMap<string, DeepSpeedKey> = new Map(
  DEEPSPEED_KEYS.flatMap((k) => {
    const parent = k.path.slice(0, k.path.length - k.key.length);
    return [k.key, ...k.aliases].map((name) => [`${parent}${name}`, k] as const);
  }),
);

function deepSpeedFile(file: string): TargetFile {
  return {
    file,
    spec: (path) => {
      const k = BY_PATH.get(path);
      if (!k?.atPinned) return undefined;
      // A nested section is a mapping here (the deprecated `zero_optimization: true` form is not written).
      return NESTED.has(path) ? { kind: "dict", nullable: k.nullable, allowed: null } : specOf(k);
    },
    keys: (parent) => {
      const section = PARENT_SECTION[parent];
      return PINNED.filter((k) => k.section === section).flatMap((k) => [k.key, ...k.aliases]);
    },
    unknownKey: (parent, key) => {
      const path = parent ? `${parent}.${key}` : key;
      const known = BY_PATH.get(path);
      const newer = known
        ? `\`${path}\` is new in DeepSpeed ${known.since ?? "a later release"}, not in the pinned v0.18.4: ${known.atPinnedEffect ?? "not accepted"}.`
        : `\`${path}\` is not a DeepSpeed config key.`;
      const how =
        parent === ""
          ? "DeepSpeed reads top-level keys with dict.get, so it silently ignores the key."
          : `DeepSpeed validates \`${parent}\` with pydantic (extra="forbid") and stops with "Extra inputs are not permitted".`;
      return known ? newer : `${newer} ${how}`;
    },
    // the top level is read with dict.get: an unknown key there changes nothing
    ignoresUnknownKey: (parent) => parent === "",
    missingKey: (path) =>
      path === "zero_optimization"
        ? 'accelerate\'s DeepSpeedPlugin requires it: "Please specify the ZeRO optimization config in the DeepSpeed config."'
        : `\`${path}\` is required.`,
  };
}

/** Checks a DeepSpeed config (as parsed JSON) against the keys and values the pinned DeepSpeed accepts. */
export function checkDeepSpeedConfig(obj: unknown, file = "deepspeed.json"): Issue[] {
  return schemaIssues(deepSpeedFile(file), DeepSpeedConfig, obj);
}
