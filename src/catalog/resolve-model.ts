import { statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { mib, readBoundedText } from "../_read.ts";
import { usageError } from "../errors.ts";
import type { Architecture } from "../schema/architecture.ts";
import { Architecture as ArchitectureSchema } from "../schema/architecture.ts";
import type { CheckpointQuantization, ModelDefinition, ResolvedModel } from "../schema/plan.ts";
import { architectureFromConfig, checkpointQuantization } from "./config-json.ts";
import { LLAMAFACTORY_MODEL_TEMPLATES } from "./data/llamafactory.ts";
import { findCatalogModel, findMirroredModel, looksConverted, suggestModelIds } from "./models.ts";

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function looksLikePath(ref: string): boolean {
  return (
    /^(\.{1,2}[\\/]|[\\/]|~[\\/]|[A-Za-z]:[\\/])/.test(ref) || ref.endsWith("/") || ref.split("/").length > 2
  );
}

/** The largest config.json read: real ones are a few KiB (with id2label tables, some hundreds). */
export const MAX_CONFIG_JSON_BYTES = 4 * 1024 * 1024;

/** Reads `<dir>/config.json` into an Architecture. */
export function loadModelDir(dir: string, shownAs: string = dir): Architecture {
  return readModelDir(dir, shownAs).architecture;
}

/** Reads `<dir>/config.json`: the architecture and the checkpoint's own quantization. */
function readModelDir(
  dir: string,
  shownAs: string,
): { architecture: Architecture; quantization: CheckpointQuantization | null } {
  const file = join(dir, "config.json");
  const shown = join(shownAs, "config.json");
  const text = readBoundedText(file, MAX_CONFIG_JSON_BYTES, (f) =>
    f.kind === "too-large"
      ? usageError(
          "MODEL_CONFIG_TOO_LARGE",
          shown,
          `${shown} is ${mib(f.bytes)} MiB; a model's config.json is a few KiB (limit ${MAX_CONFIG_JSON_BYTES / 1024 / 1024} MiB)`,
          "Point --model at the checkpoint folder whose config.json describes the model.",
        )
      : usageError(
          "MODEL_CONFIG_MISSING",
          "model",
          `the folder ${shownAs} has no readable config.json`,
          "Point --model at a Hugging Face checkpoint folder (it holds config.json) or give a catalog id (tunefit models).",
        ),
  );
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw usageError(
      "MODEL_CONFIG_INVALID_JSON",
      shown,
      `${shown} is not valid JSON (${(e as Error).message})`,
      "Fix the JSON syntax; the file must be the model's Hugging Face config.json.",
    );
  }
  return { architecture: architectureFromConfig(json, shown), quantization: checkpointQuantization(json) };
}

/** The template LLaMA-Factory would use for an id the catalog or LLaMA-Factory's own list knows, else nulls. */
function templatesFor(id: string): Pick<ResolvedModel, "defaultTemplate" | "groupTemplate" | "shards"> {
  const match = findCatalogModel(id);
  if (match) {
    return {
      defaultTemplate: match.defaultTemplate,
      groupTemplate: match.groupTemplate,
      shards: match.shards,
    };
  }
  // a checkpoint LLaMA-Factory registers but the catalog does not carry (its dimensions come from its config.json)
  const key = id.trim().toLowerCase();
  const [defaultTemplate, groupTemplate] = Object.hasOwn(LLAMAFACTORY_MODEL_TEMPLATES, key)
    ? (LLAMAFACTORY_MODEL_TEMPLATES[key] ?? [null, null])
    : [null, null];
  return { defaultTemplate, groupTemplate, shards: null };
}

/**
 * Whether a model reference can only be a Hugging Face Hub id tunefit does not know: `org/name` that is no folder,
 * no catalog model, no copy of one under another organisation and no quantized or converted upload. Such an id
 * resolves once its config.json is given (`{ id, config }`); the CLI reads it from the Hub.
 */
export function isUnknownHubId(ref: string, cwd?: string): boolean {
  if (!/^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(ref) || looksLikePath(ref)) return false;
  if (isDirectory(cwd === undefined ? ref : resolve(cwd, ref))) return false;
  return !findCatalogModel(ref) && !findMirroredModel(ref) && !looksConverted(ref);
}

/**
 * Resolves a model reference: a local folder with a config.json (checked first, as from_pretrained does), a
 * catalog id (hub id, alias or key, case-insensitive), or an explicit definition.
 * @throws TunefitError (usage) naming the closest catalog ids when nothing matches
 */
export function resolveModel(ref: string | ModelDefinition, cwd?: string): ResolvedModel {
  if (typeof ref !== "string") {
    const architecture =
      "architecture" in ref
        ? ArchitectureSchema.parse(ref.architecture)
        : architectureFromConfig(ref.config, ref.id);
    const known = templatesFor(ref.id);
    return {
      id: ref.id,
      source: "explicit",
      dir: null,
      architecture,
      ...known,
      shards: ref.shards ?? known.shards,
      quantization: "architecture" in ref ? null : checkpointQuantization(ref.config),
    };
  }
  const dir = cwd === undefined ? ref : resolve(cwd, ref);
  if (isDirectory(dir)) {
    const { architecture, quantization } = readModelDir(dir, ref);
    // A folder named like a catalog model (e.g. a local copy of Qwen2.5-7B-Instruct) keeps its template.
    const known = templatesFor(basename(ref.replace(/[\\/]+$/, "")));
    return { id: ref, source: "config", dir: ref, architecture, ...known, shards: null, quantization };
  }
  const match = findCatalogModel(ref);
  if (match) {
    return {
      id: match.id,
      source: "catalog",
      dir: null,
      architecture: match.record.architecture,
      defaultTemplate: match.defaultTemplate,
      groupTemplate: match.groupTemplate,
      shards: match.shards,
      quantization: null,
    };
  }
  // a path (./X, ~/X, C:/X, a/b/X) names a folder, never another organisation's copy
  const mirrored = looksLikePath(ref) ? undefined : findMirroredModel(ref);
  if (mirrored) {
    // the user's id stays: it is what LLaMA-Factory downloads (resolvePlan says whose architecture is assumed)
    return {
      id: ref.trim(),
      source: "catalog",
      dir: null,
      architecture: mirrored.record.architecture,
      defaultTemplate: mirrored.defaultTemplate,
      groupTemplate: mirrored.groupTemplate,
      shards: mirrored.shards,
      quantization: null,
    };
  }
  if (looksLikePath(ref)) {
    const configFile = basename(ref) === "config.json";
    throw usageError(
      "MODEL_DIR_NOT_FOUND",
      "model",
      configFile
        ? `${ref} names the config.json itself: --model takes the folder that holds it`
        : `no folder ${ref} and no catalog model of that name`,
      configFile
        ? `Pass ${ref.slice(0, -"config.json".length).replace(/[\\/]+$/, "") || "."} instead.`
        : "Give an existing folder that holds the model's config.json, or a catalog id (tunefit models).",
    );
  }
  const suggestions = suggestModelIds(ref);
  throw usageError(
    "MODEL_UNKNOWN",
    "model",
    `unknown model "${ref}": not in the catalog and not a folder`,
    looksConverted(ref)
      ? "Its name reads as a quantized or converted upload, which the catalog does not carry: pass its downloaded " +
          "folder (--model DIR; its config.json says how it is quantized), or plan the original 16-bit checkpoint " +
          "with --method qlora."
      : `${suggestions.length > 0 ? `Did you mean ${suggestions.map((s) => `"${s}"`).join(", ")}? ` : ""}List all with \`tunefit models\`, or pass a ` +
          "folder holding the model's config.json.",
  );
}
