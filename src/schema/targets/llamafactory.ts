import { z } from "zod";
import type { Issue } from "../../errors.ts";
import { LLAMAFACTORY_FIELDS } from "./data/llamafactory-keys.ts";
import { type KindSpec, type KindValue, kindSchema, schemaIssues, type TargetFile } from "./kinds.ts";

/** One key `llamafactory-cli train` accepts (generated from llamafactory-args.json). */
export type LlamaFactoryField = (typeof LLAMAFACTORY_FIELDS)[number];
export type LlamaFactoryKey = LlamaFactoryField["name"];

/** Every training-YAML key LLaMA-Factory accepts, in its dataclass order. */
export const LLAMAFACTORY_KEYS: readonly LlamaFactoryKey[] = LLAMAFACTORY_FIELDS.map((f) => f.name);

const FIELD_BY_NAME: ReadonlyMap<string, LlamaFactoryField> = new Map(
  LLAMAFACTORY_FIELDS.map((f) => [f.name, f]),
);

const specOf = (f: LlamaFactoryField): KindSpec => ({
  kind: f.kind,
  nullable: f.nullable,
  allowed: f.choices,
});

type Shape = {
  [F in LlamaFactoryField as F["name"]]: z.ZodOptional<
    z.ZodType<KindValue<F["kind"], F["choices"], F["nullable"]>>
  >;
};

const shape: Record<string, z.ZodType> = {};
for (const f of LLAMAFACTORY_FIELDS) {
  const description = f.note ? `${f.help} ${f.note}` : f.help;
  shape[f.name] = kindSchema(specOf(f)).meta({ description }).optional();
}

/**
 * A LLaMA-Factory training YAML (`llamafactory-cli train <yaml>`): every key optional, unknown keys rejected, as
 * HfArgumentParser.parse_dict rejects them. Values are checked by kind and choices, which LLaMA-Factory itself
 * does not do (parse_dict passes values straight to the dataclasses).
 */
export const LlamaFactoryTrainYaml = z.strictObject(shape as Shape);
export type LlamaFactoryTrainYaml = z.infer<typeof LlamaFactoryTrainYaml>;

function trainYamlFile(file: string): TargetFile {
  return {
    file,
    spec: (path) => {
      const f = FIELD_BY_NAME.get(path);
      return f ? specOf(f) : undefined;
    },
    keys: () => LLAMAFACTORY_KEYS,
    unknownKey: (_parent, key) =>
      `\`${key}\` is not a LLaMA-Factory training argument: llamafactory-cli train stops with "ValueError: Some keys are not used by the HfArgumentParser: ['${key}']".`,
    missingKey: (path) => `\`${path}\` is required.`,
  };
}

/** Checks a training YAML (as parsed) against the keys and values LLaMA-Factory accepts. */
export function checkTrainYaml(obj: unknown, file = "train.yaml"): Issue[] {
  return schemaIssues(trainYamlFile(file), LlamaFactoryTrainYaml, obj);
}
