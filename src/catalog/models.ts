import { closest, editDistance } from "../_util.ts";
import { CatalogModelRecord } from "../schema/catalog.ts";
import { MODEL_RECORDS } from "./data/models.ts";

/** A catalog model found by one of its ids. */
export interface CatalogMatch {
  readonly record: CatalogModelRecord;
  /** the id as the catalog spells it (the hub id or the alias that matched) */
  readonly id: string;
  readonly defaultTemplate: string | null;
  readonly groupTemplate: string | null;
  readonly shards: number | null;
}

const byId = new Map<string, CatalogMatch>();
for (const record of MODEL_RECORDS) {
  for (const entry of record.ids) {
    byId.set(entry.id.toLowerCase(), {
      record,
      id: entry.id,
      defaultTemplate: entry.defaultTemplate,
      groupTemplate: entry.groupTemplate,
      shards: entry.shards,
    });
  }
  byId.set(record.key.toLowerCase(), byId.get(record.id.toLowerCase()) as CatalogMatch);
}
// The repository name alone (a local folder named like the checkpoint), where it is unambiguous.
const tails = new Map<string, CatalogMatch | null>();
for (const [id, match] of byId) {
  const tail = id.slice(id.indexOf("/") + 1);
  if (tail === id) continue;
  tails.set(tail, tails.has(tail) && tails.get(tail)?.record !== match.record ? null : match);
}
for (const [tail, match] of tails) if (match && !byId.has(tail)) byId.set(tail, match);

/** Every built-in model (validated against the schema). */
export function listCatalogModels(): readonly CatalogModelRecord[] {
  return MODEL_RECORDS;
}

/** Looks a model up by hub id, alias or catalog key, case-insensitively. */
export function findCatalogModel(id: string): CatalogMatch | undefined {
  return byId.get(id.trim().toLowerCase());
}

/** Repository names of re-quantized or converted uploads, whose weights are not the catalog checkpoint's. */
const CONVERTED_NAME =
  /(bnb|\d+bit|nf4|gptq|awq|int[248]|gguf|fp8|exl2|mlx|onnx|hqq|aqlm|eetq|w\d+a\d+|quantized)/i;
/** Organisations that publish converted or quantized copies under the original repository names. */
const CONVERTING_ORG = /^(mlx-community|thebloke|lmstudio-community|bartowski|quantfactory)$/i;

/** Whether a hub id names a quantized or converted upload (its repository name says so). */
export function looksConverted(id: string): boolean {
  const slash = id.indexOf("/");
  return (
    CONVERTED_NAME.test(id.slice(id.lastIndexOf("/") + 1)) ||
    (slash > 0 && CONVERTING_ORG.test(id.slice(0, slash)))
  );
}

/**
 * A catalog model that an unknown `org/name` mirrors: the same repository name under another organisation (the
 * community and ModelScope copies, e.g. NousResearch/Llama-2-7b-hf), where the name is unambiguous and not that of
 * a quantized or converted upload.
 */
export function findMirroredModel(id: string): CatalogMatch | undefined {
  if (looksConverted(id)) return undefined;
  const ref = id.trim().toLowerCase();
  const parts = ref.split("/");
  if (parts.length !== 2 || !parts[0] || !parts[1] || byId.has(ref)) return undefined;
  return tails.get(parts[1]) ?? undefined;
}

/** The catalog ids closest to an unknown one (for "did you mean"). */
export function suggestModelIds(id: string, max = 3): string[] {
  const ids = MODEL_RECORDS.flatMap((r) => r.ids.map((e) => e.id));
  // the name without punctuation, case or organisation: "llama3-8b" is in "meta-llama/Meta-Llama-3-8B"
  const squash = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, "");
  const wanted = squash(id.slice(id.lastIndexOf("/") + 1));
  const containing =
    wanted.length >= 3
      ? ids
          .filter((c) => squash(c.slice(c.lastIndexOf("/") + 1)).includes(wanted))
          .sort((a, b) => a.length - b.length || a.localeCompare(b))
      : [];
  // near spellings only: an unrelated id ("foo/bar") gets no guess
  const near = closest(id, ids, max).filter(
    (c) => editDistance(id.toLowerCase(), c.toLowerCase()) <= Math.max(3, Math.ceil(0.4 * id.length)),
  );
  return [...new Set([...containing, ...near])].slice(0, max);
}

/** Validates the generated data against the schema; used by tests and `tunefit models`. */
export function validateCatalog(): void {
  for (const record of MODEL_RECORDS) CatalogModelRecord.parse(record);
}
