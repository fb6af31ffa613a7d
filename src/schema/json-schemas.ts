import { z } from "zod";
import { PlanInput, planInputJsonSchema } from "./plan.ts";
import { AccelerateFsdpConfig, DeepSpeedConfig, LlamaFactoryTrainYaml } from "./targets/index.ts";

/** The files tunefit has a JSON Schema (draft 2020-12) for, e.g. for an editor's YAML extension. */
export const JSON_SCHEMA_TARGETS = ["plan", "llamafactory", "deepspeed", "accelerate"] as const;
export type JsonSchemaTarget = (typeof JSON_SCHEMA_TARGETS)[number];

const SOURCES = {
  plan: { schema: PlanInput, title: "tunefit plan file (--spec)" },
  llamafactory: {
    schema: LlamaFactoryTrainYaml,
    title: "LLaMA-Factory training YAML (llamafactory-cli train), every key LLaMA-Factory 0.9.x accepts",
  },
  deepspeed: { schema: DeepSpeedConfig, title: "DeepSpeed config JSON (keys DeepSpeed 0.18.4 accepts)" },
  accelerate: {
    schema: AccelerateFsdpConfig,
    title: "accelerate config file for FSDP1/FSDP2 (keys accelerate 1.11 accepts)",
  },
} as const;

/** The JSON Schema of one of the files tunefit reads or writes, generated from its zod schema. */
export function jsonSchemaOf(target: JsonSchemaTarget): Record<string, unknown> {
  if (target === "plan") return planInputJsonSchema();
  const { schema, title } = SOURCES[target];
  const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  return { ...json, title };
}
