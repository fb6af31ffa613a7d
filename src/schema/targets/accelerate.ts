import { z } from "zod";
import type { Issue } from "../../errors.ts";
import {
  ACCELERATE_FSDP_KEYS,
  ACCELERATE_REJECTIONS,
  ACCELERATE_TOP_LEVEL_KEYS,
} from "./data/accelerate-keys.ts";
import {
  type KindSpec,
  type KindValue,
  kindSchema,
  mergeIssues,
  schemaIssues,
  type TargetFile,
  targetIssue,
} from "./kinds.ts";

/** One top-level key of an accelerate config file (generated from accelerate-config.json). */
export type AccelerateTopLevelKey = (typeof ACCELERATE_TOP_LEVEL_KEYS)[number];
/** One key of `fsdp_config`, with the FSDP version(s) that read it. */
export type AccelerateFsdpKey = (typeof ACCELERATE_FSDP_KEYS)[number];
export type FsdpVersion = 1 | 2;

const TOP = ACCELERATE_TOP_LEVEL_KEYS.filter((k) => k.atPinned);
const FSDP_BY_KEY: ReadonlyMap<string, AccelerateFsdpKey> = new Map(
  ACCELERATE_FSDP_KEYS.map((k) => [k.key, k]),
);
const applies = (k: AccelerateFsdpKey, v: FsdpVersion) =>
  k.appliesTo === "both" || k.appliesTo === `fsdp${v}`;

/** The fsdp_config keys tunefit writes for FSDP1 (fsdp_version is left at its default 1). */
export const FSDP1_KEYS: readonly string[] = ACCELERATE_FSDP_KEYS.filter((k) => applies(k, 1)).map(
  (k) => k.key,
);
/** The fsdp_config keys tunefit writes for FSDP2. */
export const FSDP2_KEYS: readonly string[] = ACCELERATE_FSDP_KEYS.filter((k) => applies(k, 2)).map(
  (k) => k.key,
);

function fsdpSpec(k: AccelerateFsdpKey, v: FsdpVersion): KindSpec {
  return {
    kind: k.kind,
    nullable: false,
    allowed: v === 1 ? k.allowedFsdp1 : k.allowedFsdp2,
    caseInsensitive: k.caseInsensitive,
  };
}

function fsdpDescription(k: AccelerateFsdpKey, v: FsdpVersion): string {
  const semantics = v === 1 ? k.fsdp1 : k.fsdp2;
  return [k.description, semantics].filter(Boolean).join(". ") || k.key;
}

function fsdpShape(v: FsdpVersion): Record<string, z.ZodType> {
  const shape: Record<string, z.ZodType> = {};
  for (const k of ACCELERATE_FSDP_KEYS) {
    if (!k.atPinned || !applies(k, v) || k.key === "fsdp_version") continue;
    shape[k.key] = kindSchema(fsdpSpec(k, v))
      .meta({ description: fsdpDescription(k, v) })
      .optional();
  }
  return shape;
}

type FsdpShape<V extends FsdpVersion> = {
  [K in Extract<AccelerateFsdpKey, { appliesTo: "both" | `fsdp${V}` }> as K["key"] extends "fsdp_version"
    ? never
    : K["key"]]: z.ZodOptional<
    z.ZodType<KindValue<K["kind"], V extends 1 ? K["allowedFsdp1"] : K["allowedFsdp2"], false>>
  >;
};

/**
 * `fsdp_config` for FSDP1 (fsdp_version absent or 1): the keys FSDP1 reads. `fsdp_version: 1` is tolerated (it is
 * the default; `accelerate config` writes it) although tunefit leaves it out.
 */
export const AccelerateFsdp1Config = z.strictObject({
  ...(fsdpShape(1) as FsdpShape<1>),
  fsdp_version: z.literal(1).optional().meta({ description: "FSDP1 (the default)" }),
});
export type AccelerateFsdp1Config = z.infer<typeof AccelerateFsdp1Config>;

/** `fsdp_config` for FSDP2 (`fsdp_version: 2`): the keys FSDP2 reads; the FSDP1-only keys are rejected. */
export const AccelerateFsdp2Config = z.strictObject({
  ...(fsdpShape(2) as FsdpShape<2>),
  fsdp_version: z.literal(2).meta({ description: "selects FSDP2" }),
});
export type AccelerateFsdp2Config = z.infer<typeof AccelerateFsdp2Config>;

const topSpec = (k: AccelerateTopLevelKey): KindSpec =>
  k.key === "distributed_type"
    ? { kind: "string", nullable: false, allowed: ["FSDP"] }
    : { kind: k.kind, nullable: k.nullable, allowed: k.allowed };

const topShape: Record<string, z.ZodType> = {};
for (const k of TOP) {
  if (k.key === "distributed_type" || k.key === "fsdp_config") continue;
  topShape[k.key] = kindSchema(topSpec(k))
    .meta({ description: k.description ?? k.key })
    .optional();
}
type TopShape = {
  [K in AccelerateTopLevelKey as K["key"] extends "distributed_type" | "fsdp_config"
    ? never
    : K["key"]]: z.ZodOptional<z.ZodType<KindValue<K["kind"], K["allowed"], K["nullable"]>>>;
};

const topLevel = {
  ...(topShape as TopShape),
  // a TPU-only flag; LLaMA-Factory's own example configs write the string 'no', which accelerate accepts unread
  downcast_bf16: z
    .union([z.boolean(), z.enum(["no", "yes"])])
    .optional()
    .meta({ description: "TPU only (XLA_DOWNCAST_BF16); GPUs ignore it" }),
  distributed_type: z.literal("FSDP").meta({ description: "FSDP via accelerate launch" }),
};
function fileSchema(v: FsdpVersion) {
  return z.strictObject({
    ...topLevel,
    fsdp_config: (v === 1 ? AccelerateFsdp1Config : AccelerateFsdp2Config).optional(),
  });
}

/**
 * An accelerate config file for FSDP (`accelerate launch --config_file`): the top-level keys accelerate v1.11.0
 * accepts (unknown ones are rejected), `distributed_type: FSDP`, and `fsdp_config` in its FSDP1 or FSDP2 form.
 */
export const AccelerateFsdpConfig = z.strictObject({
  ...topLevel,
  fsdp_config: z.union([AccelerateFsdp2Config, AccelerateFsdp1Config]).optional(),
});
export type AccelerateFsdpConfig = z.infer<typeof AccelerateFsdpConfig>;

const FILE_SCHEMAS = { 1: fileSchema(1), 2: fileSchema(2) } as const;

function rejection(id: string, values: Readonly<Record<string, string>> = {}): string {
  const r = ACCELERATE_REJECTIONS.find((x) => x.id === id);
  if (!r) throw new Error(`no accelerate rejection "${id}"`);
  return r.message.replace(/\{(\w+)\}/g, (m, name: string) => values[name] ?? m);
}

function accelerateFile(file: string, v: FsdpVersion): TargetFile {
  return {
    file,
    spec: (path) => {
      if (path.startsWith("fsdp_config.")) {
        const k = FSDP_BY_KEY.get(path.slice("fsdp_config.".length));
        if (!k || !(applies(k, v) || k.key === "fsdp_version")) return undefined;
        return fsdpSpec(k, v);
      }
      const k = TOP.find((x) => x.key === path);
      return k ? topSpec(k) : undefined;
    },
    keys: (parent) =>
      parent === "fsdp_config" ? (v === 1 ? FSDP1_KEYS : FSDP2_KEYS) : TOP.map((k) => k.key),
    unknownKey: (parent, key) => {
      if (parent === "") {
        return `accelerate launch rejects it: "${rejection("unknown_top_level_key", { path: file, extra_keys: `['${key}']` })}"`;
      }
      const k = FSDP_BY_KEY.get(key);
      if (k)
        return `\`${key}\` is an FSDP${v === 1 ? 2 : 1} key and this config is FSDP${v}: ${k.appliesReason}.`;
      if (!key.startsWith("fsdp") && FSDP_BY_KEY.has(`fsdp_${key}`)) {
        return `accelerate reads \`${key}\` as \`fsdp_${key}\` (it adds the prefix); tunefit writes the prefixed key.`;
      }
      return `\`${key}\` is not an fsdp_config key: accelerate copies fsdp_config keys onto the launch arguments without checking them, so the value is silently ignored.`;
    },
    missingKey: (path) =>
      path === "distributed_type"
        ? `accelerate launch stops: "${rejection("missing_distributed_type")}"`
        : `\`${path}\` is required.`,
  };
}

/** A value as Python's repr shows it in accelerate's messages. */
function pyRepr(v: unknown): string {
  if (typeof v === "string") return `'${v}'`;
  if (typeof v === "boolean") return v ? "True" : "False";
  if (v === null || v === undefined) return "None";
  return JSON.stringify(v) ?? String(v);
}

/** Python truthiness, as accelerate's launcher tests its arguments. */
function pyTruthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === "object") return Object.keys(v).length > 0;
  return true;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v);

/** The cross-key rules of the references (accelerate-config.json `rejections`, distributed.md). */
function ruleIssues(t: TargetFile, cfg: Record<string, unknown>, v: FsdpVersion): Issue[] {
  const out: Issue[] = [];
  const fsdp = isRecord(cfg.fsdp_config) ? cfg.fsdp_config : {};
  // A key absent from the file takes the launcher's CLI default (a string such as "true").
  const effective = (key: string) =>
    Object.hasOwn(fsdp, key) ? fsdp[key] : FSDP_BY_KEY.get(key)?.cliDefault;

  // Launcher check for both versions; the sync default is "true", so only an explicit false trips it.
  if (
    pyTruthy(effective("fsdp_cpu_ram_efficient_loading")) &&
    !pyTruthy(effective("fsdp_sync_module_states"))
  ) {
    const cpuRam = Object.hasOwn(fsdp, "fsdp_cpu_ram_efficient_loading")
      ? `fsdp_cpu_ram_efficient_loading is ${JSON.stringify(fsdp.fsdp_cpu_ram_efficient_loading)}`
      : "fsdp_cpu_ram_efficient_loading defaults to true";
    out.push(
      targetIssue(
        t,
        "TARGET_FSDP_CPU_RAM_EFFICIENT_WITHOUT_SYNC",
        "fsdp_config.fsdp_sync_module_states",
        `accelerate launch stops (FSDP1 and FSDP2 alike): "${rejection("cpu_ram_efficient_without_sync")}"; ${cpuRam} and fsdp_sync_module_states is ${JSON.stringify(fsdp.fsdp_sync_module_states)}.`,
        v === 1
          ? "Set `fsdp_sync_module_states: true` (or `fsdp_cpu_ram_efficient_loading: false`)."
          : "Remove `fsdp_sync_module_states`: FSDP2 does not use it, and the launch default (true) passes the check.",
      ),
    );
  }

  const reshard = fsdp.fsdp_reshard_after_forward;
  if (v === 2 && reshard !== undefined && typeof reshard !== "boolean") {
    out.push(
      targetIssue(
        t,
        "TARGET_FSDP2_RESHARD_NOT_BOOL",
        "fsdp_config.fsdp_reshard_after_forward",
        `FSDP2 takes a bool here: "${rejection("fsdp2_reshard_not_bool", { x: pyRepr(reshard) })}"`,
        "Set `fsdp_reshard_after_forward: true` (reshard after forward, as FULL_SHARD) or `false` (as SHARD_GRAD_OP).",
      ),
    );
  }
  if (v === 1 && typeof reshard === "boolean") {
    out.push(
      targetIssue(
        t,
        "TARGET_FSDP1_RESHARD_BOOL",
        "fsdp_config.fsdp_reshard_after_forward",
        `FSDP1 does not take a bool here: "${rejection("fsdp1_reshard_bool", { x: pyRepr(reshard) })}"`,
        "For FSDP1 write the strategy as `fsdp_sharding_strategy` (FULL_SHARD, SHARD_GRAD_OP, …); for FSDP2 add `fsdp_version: 2`.",
      ),
    );
  }
  if (v === 2 && fsdp.fsdp_state_dict_type === "LOCAL_STATE_DICT") {
    out.push(
      targetIssue(
        t,
        "TARGET_FSDP2_LOCAL_STATE_DICT",
        "fsdp_config.fsdp_state_dict_type",
        `The FSDP plugin stops: "${rejection("fsdp2_local_state_dict")}"`,
        "Use SHARDED_STATE_DICT or FULL_STATE_DICT.",
      ),
    );
  }

  const n = cfg.num_processes;
  const machines = typeof cfg.num_machines === "number" ? cfg.num_machines : 1;
  if (typeof n === "number" && Number.isInteger(n)) {
    if (n < 1) {
      out.push(
        targetIssue(
          t,
          "TARGET_NUM_PROCESSES_TOO_SMALL",
          "num_processes",
          `num_processes is ${n}; it must be at least 1 (the total over all machines). Left at -1, accelerate launch stops: "${rejection("num_processes_unset")}"`,
          "Set `num_processes` to the number of GPUs over all machines.",
        ),
      );
    } else if (Number.isInteger(machines) && machines >= 1 && n % machines !== 0) {
      const perNode = Math.floor(n / machines);
      out.push(
        targetIssue(
          t,
          "TARGET_NUM_PROCESSES_NOT_DIVISIBLE",
          "num_processes",
          `num_processes ${n} is not a multiple of num_machines ${machines}: accelerate starts num_processes // num_machines = ${perNode} processes per machine, ${n - perNode * machines} fewer than asked.`,
          `Set \`num_processes\` to num_machines × GPUs per machine (e.g. ${machines * Math.max(perNode, 1)}).`,
        ),
      );
    }
  }
  return out;
}

/** The FSDP version a config selects: `fsdp_config.fsdp_version` 2 means FSDP2, anything else FSDP1. */
export function fsdpVersionOf(obj: unknown): FsdpVersion {
  const fsdp = isRecord(obj) && isRecord(obj.fsdp_config) ? obj.fsdp_config : {};
  return fsdp.fsdp_version === 2 || fsdp.fsdp_version === "2" ? 2 : 1;
}

/**
 * Checks an accelerate FSDP config file (as parsed YAML): the FSDP1 or FSDP2 key set, picked by
 * `fsdp_config.fsdp_version`, and the cross-key rules accelerate enforces.
 */
export function checkAccelerateFsdpConfig(obj: unknown, file = "accelerate_fsdp.yaml"): Issue[] {
  const v = fsdpVersionOf(obj);
  const t = accelerateFile(file, v);
  const fromSchema = schemaIssues(t, FILE_SCHEMAS[v], obj);
  return isRecord(obj) ? mergeIssues(fromSchema, ruleIssues(t, obj, v)) : fromSchema;
}
