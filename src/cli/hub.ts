import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse } from "yaml";
import { isUnknownHubId, MAX_CONFIG_JSON_BYTES } from "../catalog/resolve-model.ts";

/*
 * Reading an unknown model's config.json from the Hugging Face Hub, for the CLI only: the library never touches
 * the network (a model it does not know is given to it as `{ id, config }`). The Hub is asked the way
 * huggingface_hub's `hf_hub_download` asks it: `{HF_ENDPOINT}/{id}/resolve/main/config.json`, with `HF_TOKEN` as a
 * bearer token for gated repositories. `HF_HUB_OFFLINE=1` (huggingface_hub's switch) or `TUNEFIT_OFFLINE=1` turns
 * it off.
 */

/** A model read from the Hub: its config.json, and its checkpoint's shard files where the index names them. */
export interface HubModel {
  readonly config: Record<string, unknown>;
  readonly shards: number | null;
}

/** What the CLI read from the Hub before running: the models by id, and a line per attempt. */
export interface HubConfigs {
  readonly configs: ReadonlyMap<string, HubModel>;
  readonly notes: readonly string[];
}

/** The Hub's default address (huggingface_hub `constants.ENDPOINT`). */
export const DEFAULT_HUB_ENDPOINT = "https://huggingface.co";
/** How long one request may take before it is given up. */
export const HUB_TIMEOUT_MS = 15_000;

type Env = Readonly<Record<string, string | undefined>>;

function truthy(value: string | undefined): boolean {
  return value !== undefined && /^(1|true|yes|on)$/i.test(value.trim());
}

/** Whether the environment forbids network access (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or TUNEFIT_OFFLINE). */
export function hubOffline(env: Env): boolean {
  return truthy(env.HF_HUB_OFFLINE) || truthy(env.TRANSFORMERS_OFFLINE) || truthy(env.TUNEFIT_OFFLINE);
}

/** doctor's flags that take no value (every other flag takes the next argument unless written --flag=value). */
const DOCTOR_SWITCHES = new Set([
  "--json",
  "--fix",
  "--force",
  "--debug",
  "--help",
  "-h",
  "--version",
  "--allow-unfit",
  "--",
]);

/**
 * The model ids of an argv that only the Hub can resolve: `--model ID` / `--model=ID` of plan, emit and init; for
 * doctor and import without --model, the YAML's model_name_or_path (a `model_name_or_path=…` override first), looked for as a
 * folder under --launch-dir as doctor does. Nothing for --help.
 */
export function hubIdsOf(argv: readonly string[], cwd: string): string[] {
  const command = argv[0];
  if (argv.includes("--help") || argv.includes("-h")) return [];
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
  };
  let id: string | undefined;
  let where = cwd;
  if (command === "plan" || command === "emit" || command === "init") id = flag("--model");
  else if ((command === "doctor" || command === "import") && flag("--model") === undefined) {
    const positionals: string[] = [];
    for (let i = 1; i < argv.length; i++) {
      const arg = argv[i] ?? "";
      if (arg.startsWith("-")) {
        if (!arg.includes("=") && !DOCTOR_SWITCHES.has(arg)) i++;
      } else positionals.push(arg);
    }
    const override = positionals.find((a) => a.startsWith("model_name_or_path="));
    id =
      override !== undefined
        ? yamlString(override.slice("model_name_or_path=".length))
        : yamlModelOf(positionals[0], cwd);
    // doctor finds a model folder under --launch-dir; import under the current folder
    const launchDir = flag("--launch-dir");
    if (command === "doctor" && launchDir !== undefined) where = resolve(cwd, launchDir);
  }
  return id !== undefined && isUnknownHubId(id, where) ? [id] : [];
}

/** A `key=value` override's value as OmegaConf.from_cli reads it (YAML), when it is a string. */
function yamlString(text: string): string | undefined {
  try {
    const value: unknown = parse(text, { version: "1.1" });
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}

/** model_name_or_path of a training YAML, when the file reads as a mapping that names one. */
function yamlModelOf(file: string | undefined, cwd: string): string | undefined {
  if (file === undefined) return undefined;
  try {
    const text = readFileSync(resolve(cwd, file), "utf8");
    if (text.length > MAX_CONFIG_JSON_BYTES) return undefined;
    const doc: unknown = parse(text, { version: "1.1" });
    const value =
      typeof doc === "object" && doc !== null
        ? (doc as Record<string, unknown>).model_name_or_path
        : undefined;
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined; // doctor reports the file itself
  }
}

/** Reads config.json of each id from the Hub; failures become notes, never exceptions. */
export async function fetchHubConfigs(
  ids: readonly string[],
  env: Env,
  fetchImpl: typeof fetch = fetch,
): Promise<HubConfigs> {
  const configs = new Map<string, HubModel>();
  const notes: string[] = [];
  if (ids.length === 0 || hubOffline(env)) return { configs, notes };
  const endpoint = (env.HF_ENDPOINT?.trim() || DEFAULT_HUB_ENDPOINT).replace(/\/+$/, "");
  const token = env.HF_TOKEN?.trim() || env.HUGGING_FACE_HUB_TOKEN?.trim();
  for (const id of ids) {
    const url = `${endpoint}/${id}/resolve/main/config.json`;
    try {
      const response = await fetchImpl(url, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
        signal: AbortSignal.timeout(HUB_TIMEOUT_MS),
        redirect: "follow",
      });
      if (!response.ok) {
        const why =
          response.status === 401 || response.status === 403
            ? "gated or private: set HF_TOKEN to a token with access"
            : response.status === 404
              ? "no such repository or no config.json in it"
              : `HTTP ${response.status}`;
        notes.push(`could not read config.json of ${id} from ${endpoint}: ${why}`);
        continue;
      }
      const text = await response.text();
      if (text.length > MAX_CONFIG_JSON_BYTES) {
        notes.push(`config.json of ${id} from ${endpoint} is over 4 MiB: not read`);
        continue;
      }
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        notes.push(`config.json of ${id} from ${endpoint} is not a JSON object: not read`);
        continue;
      }
      const shards = await shardCount(`${endpoint}/${id}/resolve/main`, token, fetchImpl);
      configs.set(id, { config: parsed as Record<string, unknown>, shards });
      notes.push(
        `read config.json of ${id} from ${endpoint}${shards === null ? "" : ` (${shards} checkpoint shard${shards === 1 ? "" : "s"})`}`,
      );
    } catch (e) {
      const why = e instanceof SyntaxError ? "not valid JSON" : e instanceof Error ? e.message : String(e);
      notes.push(
        `could not read config.json of ${id} from ${endpoint} (${why}); offline, pass the model's folder (--model DIR)`,
      );
    }
  }
  return { configs, notes };
}

/**
 * The safetensors files of a checkpoint: the distinct files of model.safetensors.index.json's weight_map, or 1 for a
 * lone model.safetensors; null when neither answers (the load estimate then assumes shards of 5 GB).
 */
async function shardCount(
  base: string,
  token: string | undefined,
  fetchImpl: typeof fetch,
): Promise<number | null> {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  try {
    const index = await fetchImpl(`${base}/model.safetensors.index.json`, {
      headers,
      signal: AbortSignal.timeout(HUB_TIMEOUT_MS),
    });
    if (index.ok) {
      const parsed: unknown = JSON.parse(await index.text());
      const map =
        typeof parsed === "object" && parsed !== null
          ? (parsed as Record<string, unknown>).weight_map
          : undefined;
      if (typeof map !== "object" || map === null) return null;
      const files = new Set(Object.values(map).filter((f) => typeof f === "string"));
      return files.size > 0 ? files.size : null;
    }
    const single = await fetchImpl(`${base}/model.safetensors`, {
      method: "HEAD",
      headers,
      signal: AbortSignal.timeout(HUB_TIMEOUT_MS),
    });
    return single.ok ? 1 : null;
  } catch {
    return null;
  }
}
