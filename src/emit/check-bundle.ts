import { posix } from "node:path";
import { parse as parseYaml } from "yaml";
import { TEMPLATES } from "../catalog/data/llamafactory.ts";
import type { Issue } from "../errors.ts";
import { isDeepSpeed, isFsdp, type Plan } from "../schema/plan.ts";
import { checkAccelerateFsdpConfig, checkDeepSpeedConfig, checkTrainYaml } from "../schema/targets/index.ts";
import { BUNDLE_FILES } from "./common.ts";
import type { EmittedFile } from "./files.ts";

/*
 * Checks an emitted bundle the way the tools that read it would: each file against its target's schema at the
 * targeted versions, then the rules that span files (batch sizes, precision, RAM-efficient loading, the files one
 * file names). A bundle tunefit writes passes; the CLI treats a failure as a bug. doctor runs the same checks on
 * a user's files.
 */

const issue = (code: string, path: string, message: string, hint: string): Issue => ({
  code,
  severity: "error",
  path,
  message,
  hint,
});

function text(files: readonly EmittedFile[], path: string): string | undefined {
  const f = files.find((x) => x.path === path);
  if (f === undefined) return undefined;
  return typeof f.contents === "string" ? f.contents : new TextDecoder().decode(f.contents);
}

function parsed(
  files: readonly EmittedFile[],
  path: string,
  json: boolean,
  issues: Issue[],
): Record<string, unknown> | undefined {
  const t = text(files, path);
  if (t === undefined) return undefined;
  try {
    const v: unknown = json ? JSON.parse(t) : parseYaml(t, { version: "1.1" });
    if (v !== null && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
    issues.push(issue("BUNDLE_FILE_INVALID", path, `${path} is not a mapping`, "Regenerate the bundle."));
  } catch (e) {
    issues.push(
      issue(
        "BUNDLE_FILE_INVALID",
        path,
        `${path} does not parse: ${(e as Error).message.split("\n")[0]}`,
        "Regenerate the bundle.",
      ),
    );
  }
  return undefined;
}

const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);

/**
 * DeepSpeed batch values transformers checks against the training arguments: explicit ones must equal the YAML's
 * (`train_batch_size` = micro-batch × accumulation × world size), else the run stops; "auto" is filled in.
 * Unset YAML values take transformers' defaults (8 per device, 1 accumulation step).
 */
export function deepspeedBatchIssues(
  ds: Readonly<Record<string, unknown>>,
  yaml: Readonly<Record<string, unknown>>,
  world: number,
  file: string,
): Issue[] {
  const micro = num(yaml.per_device_train_batch_size) ?? 8;
  const accum = num(yaml.gradient_accumulation_steps) ?? 1;
  const expected: [string, number][] = [
    ["train_micro_batch_size_per_gpu", micro],
    ["gradient_accumulation_steps", accum],
    ["train_batch_size", micro * accum * world],
  ];
  return expected
    .filter(([key, want]) => ds[key] !== undefined && ds[key] !== "auto" && ds[key] !== want)
    .map(([key, want]) =>
      issue(
        "DEEPSPEED_BATCH_MISMATCH",
        `${file}:${key}`,
        `${key} is ${JSON.stringify(ds[key])}, but the YAML and ${world} GPU(s) give ${want} (train_batch_size = micro-batch × accumulation × world size): transformers stops with "Please correct the following DeepSpeed config values that mismatch TrainingArguments values"`,
        `Write "auto" (transformers fills it) or ${want}.`,
      ),
    );
}

/** Every problem of a bundle for the plan it was made for; an empty list for a bundle that will start. */
export function checkBundle(files: readonly EmittedFile[], plan: Plan): Issue[] {
  const issues: Issue[] = [];
  const paths = new Set(files.map((f) => f.path));
  const world = plan.gpus * plan.nodes;

  const y = parsed(files, BUNDLE_FILES.trainYaml, false, issues);
  if (y === undefined) {
    if (!paths.has(BUNDLE_FILES.trainYaml)) {
      issues.push(issue("BUNDLE_FILE_MISSING", BUNDLE_FILES.trainYaml, "the bundle has no train.yaml", ""));
    }
    return issues;
  }
  issues.push(...checkTrainYaml(y, BUNDLE_FILES.trainYaml));
  const at = (key: string) => `${BUNDLE_FILES.trainYaml}:${key}`;

  if (typeof y.template === "string" && !TEMPLATES.some((t) => t.name === y.template)) {
    issues.push(
      issue(
        "TEMPLATE_UNKNOWN",
        at("template"),
        `template ${JSON.stringify(y.template)} is not registered in LLaMA-Factory`,
        "Use one of LLaMA-Factory's templates (tunefit models lists each model's).",
      ),
    );
  }
  if (y.pure_bf16 === true && y.bf16 === true && paths.has(BUNDLE_FILES.accelerate)) {
    issues.push(
      issue(
        "PURE_BF16_UPCAST",
        at("bf16"),
        "bf16: true beside pure_bf16 under FSDP turns on accelerate's mixed precision, which upcasts the bf16 weights to fp32",
        "Drop bf16: true; pure_bf16 alone computes in bf16.",
      ),
    );
  }
  if (y.bf16 === true && y.fp16 === true) {
    issues.push(
      issue(
        "PRECISION_BOTH",
        at("fp16"),
        "bf16 and fp16 are both true; transformers rejects it",
        "Keep one.",
      ),
    );
  }

  // DeepSpeed: the file train.yaml names, and the values transformers checks against the training arguments
  const dsPath = typeof y.deepspeed === "string" ? posix.normalize(y.deepspeed) : y.deepspeed;
  const ds = typeof dsPath === "string" ? parsed(files, dsPath, true, issues) : undefined;
  if (typeof dsPath === "string" && !paths.has(dsPath)) {
    issues.push(
      issue(
        "DEEPSPEED_FILE_MISSING",
        at("deepspeed"),
        `train.yaml names ${dsPath}, which the bundle lacks`,
        "Ship the DeepSpeed JSON beside train.yaml.",
      ),
    );
  }
  if (ds !== undefined) {
    issues.push(...checkDeepSpeedConfig(ds, String(dsPath)));
    issues.push(...deepspeedBatchIssues(ds, y, world, String(dsPath)));
    const enabled = (section: string) => (ds[section] as { enabled?: unknown } | undefined)?.enabled;
    for (const [section, flag] of [
      ["fp16", y.fp16 === true],
      ["bf16", y.bf16 === true],
    ] as const) {
      const e = enabled(section);
      if (e !== undefined && e !== "auto" && e !== flag) {
        issues.push(
          issue(
            "DEEPSPEED_PRECISION_MISMATCH",
            `${dsPath}:${section}.enabled`,
            `${section}.enabled is ${e} but train.yaml has ${section}: ${flag}; transformers stops on the mismatch`,
            'Write "auto".',
          ),
        );
      }
    }
    if (paths.has(BUNDLE_FILES.accelerate)) {
      issues.push(
        issue(
          "DEEPSPEED_WITH_FSDP",
          BUNDLE_FILES.accelerate,
          "the bundle has both a DeepSpeed config and an accelerate FSDP config",
          "Use one strategy.",
        ),
      );
    }
  } else if (isDeepSpeed(plan.sharding)) {
    issues.push(
      issue(
        "DEEPSPEED_MISSING",
        at("deepspeed"),
        `the plan uses ${plan.sharding} but train.yaml names no DeepSpeed config`,
        "Add deepspeed: deepspeed.json.",
      ),
    );
  }

  // accelerate FSDP
  const acc = parsed(files, BUNDLE_FILES.accelerate, false, issues);
  if (acc !== undefined) {
    issues.push(...checkAccelerateFsdpConfig(acc, BUNDLE_FILES.accelerate));
    const accAt = (key: string) => `${BUNDLE_FILES.accelerate}:${key}`;
    const mp = acc.mixed_precision;
    // pure_bf16 runs without accelerate's mixed precision (which would upcast the bf16 weights)
    const wantMp = y.pure_bf16 === true ? "no" : y.bf16 === true ? "bf16" : y.fp16 === true ? "fp16" : "no";
    if (mp !== undefined && mp !== wantMp) {
      issues.push(
        issue(
          "MIXED_PRECISION_MISMATCH",
          accAt("mixed_precision"),
          `mixed_precision is ${JSON.stringify(mp)} but train.yaml ${y.pure_bf16 === true ? "trains in pure bf16" : `trains in ${wantMp === "no" ? "fp32" : wantMp}`}`,
          `Write mixed_precision: ${wantMp}.`,
        ),
      );
    }
    if (acc.num_processes !== world) {
      issues.push(
        issue(
          "NUM_PROCESSES_MISMATCH",
          accAt("num_processes"),
          `num_processes is ${JSON.stringify(acc.num_processes)}, but the plan has ${world} GPUs in all (accelerate counts processes over all machines)`,
          `Write num_processes: ${world}.`,
        ),
      );
    }
    if (acc.num_machines !== plan.nodes) {
      issues.push(
        issue(
          "NUM_MACHINES_MISMATCH",
          accAt("num_machines"),
          `num_machines is ${JSON.stringify(acc.num_machines)}, but the plan has ${plan.nodes} nodes`,
          `Write num_machines: ${plan.nodes}.`,
        ),
      );
    }
    const fsdp = (acc.fsdp_config ?? {}) as Record<string, unknown>;
    if (fsdp.fsdp_cpu_ram_efficient_loading !== true && world > 1) {
      issues.push({
        code: "FSDP_REPLICA_PER_RANK",
        severity: "warning",
        path: accAt("fsdp_config.fsdp_cpu_ram_efficient_loading"),
        message:
          "without fsdp_cpu_ram_efficient_loading every rank loads a full replica onto its GPU before sharding",
        hint: "Write fsdp_cpu_ram_efficient_loading: true (with fsdp_sync_module_states: true on FSDP1).",
      });
    }
  } else if (isFsdp(plan.sharding)) {
    issues.push(
      issue(
        "ACCELERATE_MISSING",
        BUNDLE_FILES.accelerate,
        `the plan uses ${plan.sharding} but the bundle has no accelerate config`,
        "Add accelerate_fsdp.yaml.",
      ),
    );
  }

  // the launcher and the files it names
  const launch = text(files, BUNDLE_FILES.launch);
  if (launch === undefined) {
    issues.push(issue("BUNDLE_FILE_MISSING", BUNDLE_FILES.launch, "the bundle has no launch.sh", ""));
  } else {
    for (const name of [BUNDLE_FILES.trainYaml, BUNDLE_FILES.accelerate]) {
      if (launch.includes(name) && !paths.has(name)) {
        issues.push(
          issue(
            "BUNDLE_FILE_MISSING",
            BUNDLE_FILES.launch,
            `launch.sh names ${name}, which the bundle lacks`,
            "",
          ),
        );
      }
    }
  }

  // the dataset LLaMA-Factory will look up
  if (typeof y.dataset_dir === "string") {
    const infoPath = `${y.dataset_dir}/dataset_info.json`;
    const info = parsed(files, infoPath, true, issues);
    if (info === undefined) {
      issues.push(
        issue("DATASET_INFO_MISSING", at("dataset_dir"), `${infoPath} is missing`, "Ship dataset_info.json."),
      );
    } else {
      for (const name of String(y.dataset ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)) {
        const entry = info[name] as { file_name?: unknown } | undefined;
        if (entry === undefined) {
          issues.push(
            issue(
              "DATASET_UNDEFINED",
              at("dataset"),
              `Undefined dataset ${name} in dataset_info.json.`,
              "Register it.",
            ),
          );
        } else if (typeof entry.file_name === "string" && !paths.has(`${y.dataset_dir}/${entry.file_name}`)) {
          issues.push(
            issue(
              "DATASET_FILE_MISSING",
              infoPath,
              `${entry.file_name} is missing from ${y.dataset_dir}/`,
              "Ship it.",
            ),
          );
        }
      }
    }
  }
  return issues;
}
