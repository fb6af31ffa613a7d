import { closest } from "../_util.ts";
import { GpuRecord } from "../schema/catalog.ts";
import { GPU_RECORDS } from "./data/gpus.ts";

export const BYTES_PER_MIB = 1024 ** 2;
export const BYTES_PER_GIB = 1024 ** 3;

/** Every built-in GPU. */
export function listGpus(): readonly GpuRecord[] {
  return GPU_RECORDS;
}

/**
 * The spelling-free key of a GPU name: vendor and product-line words, the SXM form factor and the memory type
 * dropped, a trailing memory size kept as its number ("A100-SXM4-80GB", "a100-80g" → "a10080"; "GeForce RTX 4090",
 * "4090" → "4090"; "H100 80GB HBM3" → "h10080").
 */
function gpuKey(name: string): string {
  return name
    .toLowerCase()
    .replace(/\b(nvidia|geforce|tesla|amd|instinct|huawei|rtx)\b/g, " ")
    .replace(/\b(sxm\d*|hbm\d*e?)\b/g, " ")
    .replace(/^rtx/, "")
    .replace(/[^a-z0-9]/g, "")
    .replace(/(\d)gb?$/, "$1");
}

/**
 * Names that mean one card although they do not spell its id: the H100 is the SXM5 80 GB part unless "PCIe" says
 * so, nvidia-smi calls the H800 SXM5 plain "NVIDIA H800", and the RTX 6000 Ada "NVIDIA RTX 6000 Ada Generation".
 */
const GPU_ALIASES: Readonly<Record<string, string>> = {
  h100: "h100-80g",
  h800: "h800-80g",
  "6000adageneration": "rtx6000-ada",
};

const byKey = new Map<string, GpuRecord | null>();
for (const g of GPU_RECORDS) {
  const key = gpuKey(g.id);
  byKey.set(key, byKey.has(key) ? null : g);
}

/**
 * Looks a GPU up by catalog id, case-insensitively, or by a common spelling of its name ("A100-SXM4-80GB",
 * "RTX 4090", "4090", "H100"). A name that fits several cards ("A100": 40 or 80 GB) finds none.
 */
export function findGpu(id: string): GpuRecord | undefined {
  const exact = id.trim().toLowerCase();
  const found = GPU_RECORDS.find((g) => g.id === exact);
  if (found) return found;
  const key = gpuKey(id);
  const alias = GPU_ALIASES[key];
  if (alias) return GPU_RECORDS.find((g) => g.id === alias);
  const exactKey = byKey.get(key);
  if (exactKey) return exactKey;
  // a name without its memory size, where the catalog holds one size of that card ("A800" → a800-80g)
  const sized = cardsOfSizes(key);
  return sized.length === 1 ? sized[0] : undefined;
}

/**
 * The cards whose id is the name with a memory size added ("a100" → a100-40g, a100-80g; "a800" → a800-80g;
 * "a10", "40" → none).
 */
function cardsOfSizes(key: string): readonly GpuRecord[] {
  if (key === "") return [];
  return GPU_RECORDS.filter((g) => /-\d+g$/.test(g.id) && gpuKey(g.id.replace(/-\d+g$/, "")) === key);
}

/** The cards a name fits when it fits more than one ("A100" → a100-40g, a100-80g); empty otherwise. */
export function gpusNamed(id: string): readonly GpuRecord[] {
  const hits = cardsOfSizes(gpuKey(id));
  return hits.length > 1 ? hits : [];
}

/**
 * The other cards of the family a bare name picked ("H100" → h100-80g; the family also has h100-pcie): empty when
 * the name was an id or already named the variant.
 */
export function otherVariants(id: string, gpu: GpuRecord): readonly GpuRecord[] {
  const family = gpu.id.split("-")[0] ?? gpu.id;
  if (id.trim().toLowerCase() === gpu.id || gpuKey(id) !== gpuKey(family)) return [];
  return GPU_RECORDS.filter((g) => g.id !== gpu.id && g.id.split("-")[0] === family);
}

/** The catalog GPU ids closest to an unknown one. */
export function suggestGpuIds(id: string, max = 3): string[] {
  return closest(id, [...GPU_RECORDS.map((g) => g.id), "custom"], max);
}

/** The capacity a card reports (nvidia-smi's total), in bytes. */
export function gpuCapacityBytes(gpu: GpuRecord): number {
  return gpu.memoryMib * BYTES_PER_MIB;
}

/** Validates the generated data against the schema. */
export function validateGpuCatalog(): void {
  for (const g of GPU_RECORDS) GpuRecord.parse(g);
}
