import { type Issue, TunefitError } from "../errors.ts";
import type { PlanInput } from "../schema/plan.ts";

/*
 * The plan flags of the CLI contract. Each flag is the kebab-case of its PlanInput field, so the table
 * below only says how to read the text; a test checks that it covers PlanInput exactly.
 */

type Kind =
  | { type: "string" }
  | { type: "int" }
  | { type: "number" }
  | { type: "gib" }
  | { type: "onoff" }
  | { type: "list"; allowAll: boolean };

export const PLAN_FLAGS: Readonly<Record<keyof PlanInput, Kind>> = {
  model: { type: "string" },
  gpu: { type: "string" },
  gpuMemory: { type: "gib" },
  gpus: { type: "int" },
  nodes: { type: "int" },
  hostRam: { type: "gib" },
  headroom: { type: "number" },
  method: { type: "string" },
  quantBits: { type: "int" },
  quantMethod: { type: "string" },
  sharding: { type: "string" },
  fsdpStrategy: { type: "string" },
  offload: { type: "string" },
  lowMemoryOptimizer: { type: "string" },
  lowMemoryRank: { type: "int" },
  lowMemoryLayerwise: { type: "onoff" },
  precision: { type: "string" },
  optimizer: { type: "string" },
  seqLen: { type: "int" },
  packing: { type: "onoff" },
  microBatch: { type: "int" },
  gradAccum: { type: "int" },
  syncEachBatch: { type: "onoff" },
  gradientCheckpointing: { type: "onoff" },
  attention: { type: "string" },
  liger: { type: "onoff" },
  loraRank: { type: "int" },
  loraTarget: { type: "list", allowAll: true },
  loraAlpha: { type: "int" },
  loraDropout: { type: "number" },
  useDora: { type: "onoff" },
  additionalTarget: { type: "list", allowAll: false },
  freezeTrainableLayers: { type: "int" },
  freezeTrainableModules: { type: "list", allowAll: true },
  freezeVisionTower: { type: "onoff" },
  freezeProjector: { type: "onoff" },
  imagesPerSample: { type: "int" },
  imageMaxPixels: { type: "int" },
  videosPerSample: { type: "int" },
  videoFrames: { type: "int" },
  videoMaxPixels: { type: "int" },
  dataset: { type: "string" },
  template: { type: "string" },
};

/** `loraRank` → `--lora-rank`. */
export function flagName(field: string): string {
  return `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** `--lora-rank` → `loraRank`, or undefined for a flag that is no plan flag. */
export function fieldOfFlag(flag: string): keyof PlanInput | undefined {
  const field = flag.replace(/^--/, "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  return field in PLAN_FLAGS ? (field as keyof PlanInput) : undefined;
}

function bad(field: string, raw: string, want: string): Issue {
  return {
    code: "FLAG_VALUE_INVALID",
    severity: "error",
    path: field,
    message: `${flagName(field)} ${JSON.stringify(raw)}: expected ${want}`,
    hint: `Write ${flagName(field)} ${want}.`,
  };
}

const ON_WORDS = ["on", "true", "yes", "1"];
const OFF_WORDS = ["off", "false", "no", "0"];

/** Reads one flag's text into the value PlanInput takes (ranges are checked by the schema). */
export function parseFlagValue(field: keyof PlanInput, raw: string): unknown | Issue {
  const kind = PLAN_FLAGS[field];
  switch (kind.type) {
    case "string":
      return raw;
    case "int":
      return /^[+-]?\d+$/.test(raw.trim()) ? Number(raw) : bad(field, raw, "an integer");
    case "number": {
      const n = Number(raw);
      return raw.trim() !== "" && Number.isFinite(n) ? n : bad(field, raw, "a number");
    }
    case "gib": {
      // GiB, as the flag says; a unit may follow: GiB (or G) as is, TiB (or T) × 1024, GB and TB (10^9 and 10^12
      // bytes) converted
      const m = /^\s*(\d+(?:\.\d+)?)\s*(gib|g|gb|tib|t|tb)?\s*$/i.exec(raw);
      if (!m) return bad(field, raw, "a number of GiB (a unit may follow: 24GiB, 512GB, 2TiB, 1TB)");
      const n = Number(m[1]);
      const unit = m[2]?.toLowerCase();
      return unit === "gb"
        ? (n * 1e9) / 1024 ** 3
        : unit === "tb"
          ? (n * 1e12) / 1024 ** 3
          : unit === "tib" || unit === "t"
            ? n * 1024
            : n;
    }
    case "onoff": {
      // on|off as the contract writes them; true/false, yes/no and 1/0 as scripts tend to
      const word = raw.trim().toLowerCase();
      if (ON_WORDS.includes(word)) return true;
      if (OFF_WORDS.includes(word)) return false;
      return bad(field, raw, "on|off");
    }
    case "list": {
      if (kind.allowAll && raw.trim() === "all") return "all";
      const items = raw.split(",").map((s) => s.trim());
      return items.every((s) => s.length > 0)
        ? items
        : bad(field, raw, kind.allowAll ? "all or NAME[,NAME…]" : "NAME[,NAME…]");
    }
  }
}

function isIssue(v: unknown): v is Issue {
  return typeof v === "object" && v !== null && "code" in v && "severity" in v && "path" in v;
}

/** Turns parsed flag strings into a partial PlanInput; throws one usage error with every bad value. */
export function flagsToInput(values: Readonly<Record<string, string | undefined>>): Partial<PlanInput> {
  const out: Record<string, unknown> = {};
  const issues: Issue[] = [];
  for (const field of Object.keys(PLAN_FLAGS) as (keyof PlanInput)[]) {
    const raw = values[field];
    if (raw === undefined) continue;
    const value = parseFlagValue(field, raw);
    if (isIssue(value)) issues.push(value);
    else out[field] = value;
  }
  if (issues.length > 0) throw new TunefitError("usage", issues);
  return out as Partial<PlanInput>;
}
