import { findCatalogModel } from "../../src/catalog/models.ts";
import { accelerateConfig } from "../../src/emit/accelerate.ts";
import type { Architecture } from "../../src/schema/architecture.ts";
import type { Plan } from "../../src/schema/plan.ts";

/** A catalog model's architecture; throws for an id the catalog lacks. */
export function catalogArchitecture(id: string): Architecture {
  const match = findCatalogModel(id);
  if (!match) throw new Error(`no catalog model ${id}`);
  return match.record.architecture;
}

/** The classes the emitted accelerate FSDP config wraps (fsdp_transformer_layer_cls_to_wrap). */
export function fsdpWrapOf(plan: Plan): unknown {
  return (accelerateConfig(plan)?.fsdp_config as Record<string, unknown> | undefined)
    ?.fsdp_transformer_layer_cls_to_wrap;
}
