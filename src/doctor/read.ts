import { existsSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { isScalar, parseDocument, visit } from "yaml";
import { mib, readBoundedText } from "../_read.ts";
import { type Issue, usageError } from "../errors.ts";

/*
 * Reading a user's LLaMA-Factory setup the way LLaMA-Factory reads it: the training YAML with OmegaConf
 * (PyYAML's YAML 1.1 plus OmegaConf's float rule, so `1e-4` is a float), `key=value` overrides merged after it
 * (OmegaConf.from_cli), the DeepSpeed file that `deepspeed:` names resolved against the folder the launch runs in,
 * and an accelerate config file.
 */

/** Largest file read (a training YAML or config is a few KiB). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

// OmegaConf's loader (omegaconf/_utils.py get_yaml_loader) resolves these plain scalars as floats, beyond YAML 1.1
const OMEGACONF_FLOAT =
  /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;

function readText(path: string, shownAs: string, field: string): string {
  return readBoundedText(path, MAX_CONFIG_BYTES, (f) =>
    f.kind === "unreadable"
      ? usageError("FILE_UNREADABLE", field, `cannot read ${shownAs}`, "Give an existing file.")
      : usageError(
          "FILE_TOO_LARGE",
          field,
          `${shownAs} is ${mib(f.bytes)} MiB; a config file is a few KiB (limit ${MAX_CONFIG_BYTES / 1024 / 1024} MiB)`,
          "Check that the path names the config file.",
        ),
  );
}

/** Parses YAML as OmegaConf does; throws a usage error naming the file, line and column. */
export function parseOmegaConfYaml(text: string, shownAs: string, field: string): Record<string, unknown> {
  const doc = parseDocument(text, { version: "1.1", uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const where = e?.linePos?.[0] ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : "";
    throw usageError(
      "YAML_INVALID",
      field,
      `${shownAs} is not valid YAML${where}: ${e?.message.split("\n")[0] ?? ""}`,
      "Fix the syntax; LLaMA-Factory reads the file with OmegaConf and would stop on it too.",
    );
  }
  visit(doc, {
    Scalar(_, node) {
      if (isScalar(node) && node.type === "PLAIN" && typeof node.value === "string") {
        if (OMEGACONF_FLOAT.test(node.value)) node.value = Number.parseFloat(node.value.replace(/_/g, ""));
      }
    },
  });
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw usageError(
      "YAML_INVALID",
      field,
      `${shownAs}: ${(e as Error).message.split("\n")[0]}`,
      "Remove the aliases that expand the document; a training config needs none.",
    );
  }
  checkInterpolations(value, "", shownAs, field);
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value)) {
    throw usageError(
      "YAML_NOT_MAPPING",
      field,
      `${shownAs} is not a mapping of keys to values`,
      "Write key: value lines.",
    );
  }
  return value as Record<string, unknown>;
}

/**
 * OmegaConf parses every string holding `${` as an interpolation when the config is created, and stops with
 * GrammarParseError on one it cannot parse. LLaMA-Factory does not resolve valid ones: they pass as literal text.
 */
function checkInterpolations(value: unknown, path: string, shownAs: string, field: string): void {
  if (typeof value === "string") {
    let rest = value.replace(/\\\$\{/g, "");
    for (let prev = ""; prev !== rest; ) {
      prev = rest;
      rest = rest.replace(/\$\{[^${}]+\}/g, "");
    }
    if (rest.includes("${")) {
      throw usageError(
        "YAML_INTERPOLATION_INVALID",
        field,
        `${shownAs}: ${path || "the value"} holds ${JSON.stringify(value)}, which OmegaConf cannot parse as an interpolation (GrammarParseError)`,
        // biome-ignore lint/suspicious/noTemplateCurlyInString: OmegaConf's syntax, quoted
        "Close the ${…}, or escape a literal dollar-brace as \\${.",
      );
    }
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => {
      checkInterpolations(v, `${path}[${i}]`, shownAs, field);
    });
  } else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value))
      checkInterpolations(v, path ? `${path}.${k}` : k, shownAs, field);
  }
}

/** Reads a training YAML file. */
export function readTrainYamlFile(path: string, shownAs = path): Record<string, unknown> {
  return parseOmegaConfYaml(readText(path, shownAs, "TRAIN_YAML"), shownAs, "TRAIN_YAML");
}

/** Applies `key=value` overrides as OmegaConf.from_cli does (the value is read as a YAML scalar). */
export function applyOverrides(
  yaml: Readonly<Record<string, unknown>>,
  overrides: readonly string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...yaml };
  for (const o of overrides) {
    const eq = o.indexOf("=");
    if (eq <= 0) {
      throw usageError(
        "OVERRIDE_INVALID",
        o,
        `override ${JSON.stringify(o)} is not key=value`,
        "Write overrides after the YAML as key=value, e.g. learning_rate=1.0e-5.",
      );
    }
    const key = o.slice(0, eq).replace(/^--?/, "");
    const parsed = parseOmegaConfYaml(`v: ${o.slice(eq + 1) || "''"}`, `override ${key}`, o).v;
    out[key] = parsed;
  }
  return out;
}

export type DeepSpeedSource =
  | { readonly kind: "none" }
  | { readonly kind: "inline"; readonly config: Record<string, unknown> }
  | {
      readonly kind: "file";
      readonly path: string;
      readonly config: Record<string, unknown>;
      /** set when the file exists only beside the YAML: the path that names it from the launch folder */
      readonly fixedPath?: string;
    };

/**
 * The DeepSpeed config `deepspeed:` names: an inline mapping, a JSON string, or a path resolved against the launch
 * folder (TrainingArguments opens it relative to the working directory). A file found only beside the YAML is the
 * failure LLaMA-Factory will hit, reported as an issue.
 */
export function readDeepSpeed(
  value: unknown,
  launchDir: string,
  yamlPath: string | null,
  issues: Issue[],
  /** how issues name the YAML */
  yamlName = "train.yaml",
): DeepSpeedSource {
  const at = `${yamlName}:deepspeed`;
  if (value === undefined || value === null || value === "") return { kind: "none" };
  if (typeof value === "object" && !Array.isArray(value)) {
    return { kind: "inline", config: value as Record<string, unknown> };
  }
  if (typeof value !== "string") {
    issues.push({
      code: "DEEPSPEED_VALUE_INVALID",
      severity: "error",
      path: at,
      message: `deepspeed is ${JSON.stringify(value)}: transformers takes a path to a JSON file or a mapping`,
      hint: "Write deepspeed: path/to/ds_config.json.",
    });
    return { kind: "none" };
  }
  if (value.trim().startsWith("{")) {
    try {
      return { kind: "inline", config: JSON.parse(value) as Record<string, unknown> };
    } catch (e) {
      issues.push({
        code: "DEEPSPEED_JSON_INVALID",
        severity: "error",
        path: at,
        message: `deepspeed holds a JSON string that does not parse: ${(e as Error).message}`,
        hint: "Fix the JSON, or name a file.",
      });
      return { kind: "none" };
    }
  }
  const fromLaunch = isAbsolute(value) ? value : resolve(launchDir, value);
  let path = fromLaunch;
  if (!existsSync(fromLaunch)) {
    const besideYaml = yamlPath && !isAbsolute(value) ? join(dirname(resolve(yamlPath)), value) : null;
    const found = besideYaml !== null && existsSync(besideYaml);
    issues.push({
      code: "DEEPSPEED_FILE_NOT_FOUND",
      severity: "error",
      path: at,
      message: found
        ? `deepspeed: ${value} is resolved against the folder the launch runs in, where it does not exist; the file is beside the YAML instead, so the run stops with FileNotFoundError`
        : `deepspeed: ${value} does not exist relative to the launch folder: the run stops with FileNotFoundError`,
      hint: found
        ? "Launch from the YAML's folder (--launch-dir), or write the path relative to where you launch."
        : "Write the path of the DeepSpeed JSON relative to where you launch (or pass --launch-dir).",
    });
    if (!found) return { kind: "none" };
    path = besideYaml as string;
  }
  const text = readText(path, value, at);
  try {
    const config = JSON.parse(text) as unknown;
    if (config === null || typeof config !== "object" || Array.isArray(config))
      throw new Error("not an object");
    const base = { kind: "file", path: value, config: config as Record<string, unknown> } as const;
    return path === fromLaunch
      ? base
      : { ...base, fixedPath: relative(launchDir, path).split(sep).join("/") };
  } catch (e) {
    throw usageError(
      "DEEPSPEED_JSON_INVALID",
      at,
      `${value} is not a JSON object (${(e as Error).message.split("\n")[0]}); transformers reads it with json.load`,
      "Fix the file: strict JSON, no comments or trailing commas.",
    );
  }
}

/** Reads an accelerate config file (YAML or JSON). */
export function readAccelerateConfig(path: string, shownAs = path): Record<string, unknown> {
  return parseOmegaConfYaml(readText(path, shownAs, "--accelerate-config"), shownAs, "--accelerate-config");
}
