import { accelerateConfig } from "../emit/accelerate.ts";
import { BUNDLE_FILES, usesDeepSpeed, usesFsdp } from "../emit/common.ts";
import { deepspeedConfig } from "../emit/deepspeed.ts";
import type { EmittedFile } from "../emit/files.ts";
import { bundleReadme } from "../emit/readme.ts";
import { launchScript } from "../emit/scripts.ts";
import { toJson, toYaml } from "../emit/serialize.ts";
import { targetsLine } from "../emit/versions.ts";
import { LLAMAFACTORY_FIELDS } from "../schema/targets/data/llamafactory-keys.ts";
import { type DoctorReport, type Fix, REPLACES_BROKEN_ACCELERATE } from "./doctor.ts";

/*
 * The fixed setup as files: the user's YAML with only the fix's edits (every other key kept as written), the
 * DeepSpeed or accelerate config the fix adds or replaces, launch.sh, and a README saying what changed. The files
 * are meant to replace the originals in the folder the run is launched from.
 */

/** train.yaml keys LLaMA-Factory types as floats (its argument dataclasses). */
const FLOAT_FIELDS: ReadonlySet<string> = new Set(
  LLAMAFACTORY_FIELDS.filter((f) => f.kind === "float").map((f) => f.name),
);

/** The user's YAML with the fix's edits applied, keys in their original order (new keys at the end). */
export function fixedYaml(yaml: Readonly<Record<string, unknown>>, fix: Fix): Record<string, unknown> {
  let out: [string, unknown][] = Object.entries(yaml);
  const set = (key: string, value: unknown) => {
    const i = out.findIndex(([k]) => k === key);
    if (i >= 0) out[i] = [key, value];
    else out.push([key, value]);
  };
  for (const c of fix.changes) {
    if (c.kind !== "yaml") continue;
    const rename = (c.to as { rename?: string } | undefined)?.rename;
    if (rename !== undefined) out = out.map(([k, v]) => [k === c.target ? rename : k, v]);
    else if (c.to === undefined) out = out.filter(([k]) => k !== c.target);
    else set(c.target, c.to);
  }
  return Object.fromEntries(out);
}

export interface FixBundleOptions {
  /** the user's accelerate config, patched rather than replaced when only its settings change */
  readonly accelerate?: Readonly<Record<string, unknown>> | null;
}

/** The files of a fix. */
export function fixFiles(
  report: DoctorReport,
  yaml: Readonly<Record<string, unknown>>,
  fix: Fix,
  options: FixBundleOptions = {},
): EmittedFile[] {
  const plan = fix.analysis.plan;
  const files: EmittedFile[] = [];
  const changedFiles = new Set(fix.changes.filter((c) => c.kind === "file").map((c) => c.target));
  const header = [
    "LLaMA-Factory training config fixed by tunefit doctor. Changes:",
    ...fix.changes.map((c) => `  - ${c.text}`),
    `Every other key is as it was. ${targetsLine(plan.model.architecture.modelType)}`,
  ];
  const fixed = fixedYaml(yaml, fix);
  const newDeepSpeed = usesDeepSpeed(plan) && changedFiles.has(BUNDLE_FILES.deepspeed);
  // a replaced DeepSpeed config is written as deepspeed.json, which the YAML then names
  if (newDeepSpeed) fixed.deepspeed = BUNDLE_FILES.deepspeed;
  // LLaMA-Factory's float fields keep a float's spelling (num_train_epochs: 3.0), as the user wrote them
  files.push({ path: BUNDLE_FILES.trainYaml, contents: toYaml(fixed, { header, floatKeys: FLOAT_FIELDS }) });
  if (newDeepSpeed) {
    // the user's own config with only what the fix changes, where the fix carries one; else tunefit's
    const own = fix.changes.find((c) => c.kind === "file" && c.target === BUNDLE_FILES.deepspeed)?.to;
    files.push({
      path: BUNDLE_FILES.deepspeed,
      contents: toJson(
        typeof own === "object" && own !== null
          ? (own as Record<string, unknown>)
          : deepspeedConfig(plan, fix.analysis.assumptions),
      ),
    });
  }
  if (usesFsdp(plan) && changedFiles.has(BUNDLE_FILES.accelerate)) {
    const theirs = options.accelerate;
    const patchable =
      theirs !== null &&
      theirs !== undefined &&
      report.launcher === "accelerate" &&
      report.analysis.plan.sharding === plan.sharding &&
      report.analysis.plan.offload === plan.offload &&
      // a config with errors of its own is replaced, not patched
      !fix.changes.some((c) => c.text.endsWith(REPLACES_BROKEN_ACCELERATE));
    let config: Record<string, unknown> | null;
    if (patchable) {
      const fsdp = { ...((theirs.fsdp_config ?? {}) as Record<string, unknown>) };
      fsdp.fsdp_cpu_ram_efficient_loading = true;
      if (plan.sharding === "fsdp") fsdp.fsdp_sync_module_states = true;
      config = { ...theirs, fsdp_config: fsdp };
    } else {
      config = accelerateConfig(plan);
    }
    if (config !== null) {
      files.push({
        path: BUNDLE_FILES.accelerate,
        contents: toYaml(config, {
          header: [
            `accelerate FSDP config written by tunefit doctor. ${targetsLine(plan.model.architecture.modelType)}`,
          ],
        }),
      });
    }
  }
  files.push({ path: BUNDLE_FILES.launch, contents: launchScript(plan), executable: true });
  const listed = [...files.map((f) => f.path), BUNDLE_FILES.readme];
  const intro = [
    "# Fixed setup (tunefit doctor)",
    "",
    "What the original setup would do:",
    "",
    ...report.verdict.map((v) => `- ${v}`),
    "",
    `The smallest fix (${fix.changes.length} change${fix.changes.length === 1 ? "" : "s"}):`,
    "",
    ...fix.changes.map((c) => `- ${c.text}`),
    "",
    "Copy these files into the folder you launch from (they replace the originals there): train.yaml keeps every",
    "other key as it was, so relative paths in it (dataset_dir, output_dir, local models) still resolve from there.",
    "",
  ].join("\n");
  files.push({ path: BUNDLE_FILES.readme, contents: `${intro}\n${bundleReadme(fix.analysis, listed)}` });
  return files;
}
