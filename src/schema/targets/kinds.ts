// Shared by the three target schemas: value kinds -> zod, and zod errors -> tunefit issues.
import { z } from "zod";
import { closest, editDistance } from "../../_util.ts";
import type { Issue } from "../../errors.ts";

/**
 * A normalized value kind of the generated key tables: one of string, int, float, bool, dict, list, json, or a
 * union of them joined by `|` (`dict|string`, `string|list`).
 */
type SplitKinds<S extends string> = S extends `${infer A}|${infer B}` ? A | SplitKinds<B> : S;

type KindPart<K extends string, A, Tokens extends boolean> = K extends "string"
  ? Tokens extends true
    ? string
    : A extends readonly string[]
      ? A[number]
      : string
  : K extends "int" | "float"
    ? A extends readonly number[]
      ? A[number]
      : number
    : K extends "bool"
      ? boolean
      : K extends "dict"
        ? Record<string, unknown>
        : K extends "list"
          ? (A extends readonly string[] ? A[number] : string)[]
          : unknown;

/** The TypeScript type of a value of `Kind` with allowed values `A` (a tuple, or null for any). */
export type KindValue<Kind extends string, A, Nullable extends boolean> =
  | KindPart<SplitKinds<Kind>, A, Kind extends `${string}list${string}` ? true : false>
  | (Nullable extends true ? null : never);

export interface KindSpec {
  readonly kind: string;
  readonly nullable: boolean;
  /** Allowed values (strings or numbers); null = any of the kind. */
  readonly allowed: readonly (string | number)[] | null;
  readonly min?: number | null;
  readonly max?: number | null;
  /** Also accept the string "auto" (filled in by transformers/accelerate). */
  readonly auto?: boolean;
  /** String values compare case-insensitively with `allowed`. */
  readonly caseInsensitive?: boolean;
}

const isTokens = (s: KindSpec) => s.kind.split("|").includes("list");
const strings = (s: KindSpec) => (s.allowed ?? []).filter((v): v is string => typeof v === "string");
const numbers = (s: KindSpec) => (s.allowed ?? []).filter((v): v is number => typeof v === "number");

function stringSchema(s: KindSpec): z.ZodType {
  const allowed = strings(s);
  if (allowed.length === 0) return z.string();
  // With a list form, a string is a space-separated list of the same values (transformers splits it).
  if (isTokens(s))
    return z.string().refine((v) => v.split(/\s+/).every((t) => t === "" || allowed.includes(t)));
  if (s.caseInsensitive) return z.string().refine((v) => allowed.includes(v.toUpperCase()));
  return z.enum(allowed as [string, ...string[]]);
}

function numberSchema(s: KindSpec, int: boolean): z.ZodType {
  const allowed = numbers(s);
  if (allowed.length > 0) return z.union(allowed.map((v) => z.literal(v)));
  let n = int ? z.number().int() : z.number();
  if (s.min != null) n = n.min(s.min);
  if (s.max != null) n = n.max(s.max);
  return n;
}

/** The zod schema of one value (not optional). */
export function kindSchema(s: KindSpec): z.ZodType {
  const parts = s.kind.split("|").map((k): z.ZodType => {
    switch (k) {
      case "string":
        return stringSchema(s);
      case "int":
        return numberSchema(s, true);
      case "float":
        return numberSchema(s, false);
      case "bool":
        return z.boolean();
      case "dict":
        return z.record(z.string(), z.unknown());
      case "list":
        return z.array(strings(s).length > 0 ? z.enum(strings(s) as [string, ...string[]]) : z.string());
      case "json":
        return z.unknown();
      default:
        throw new Error(`unknown value kind "${k}"`);
    }
  });
  if (s.auto) parts.push(z.literal("auto"));
  const one = parts.length === 1 && parts[0] ? parts[0] : z.union(parts);
  return s.nullable ? one.nullable() : one;
}

const show = (v: unknown) => JSON.stringify(v) ?? String(v);

/** What a value of this kind may be, in words: `one of "lora", "full"`, `an integer ≥ 0 or "auto"`. */
export function describeKind(s: KindSpec): string {
  const words = s.kind.split("|").map((k) => {
    switch (k) {
      case "string": {
        const allowed = strings(s);
        if (allowed.length === 0) return "a string";
        return isTokens(s)
          ? `a space-separated string of ${allowed.map(show).join(", ")}`
          : `one of ${allowed.map(show).join(", ")}${s.caseInsensitive ? " (any case)" : ""}`;
      }
      case "int":
      case "float": {
        const allowed = numbers(s);
        if (allowed.length > 0) return `one of ${allowed.join(", ")}`;
        const bounds = [s.min != null ? `≥ ${s.min}` : "", s.max != null ? `≤ ${s.max}` : ""].filter(Boolean);
        return `${k === "int" ? "an integer" : "a number"}${bounds.length ? ` ${bounds.join(" and ")}` : ""}`;
      }
      case "bool":
        return "a bool";
      case "dict":
        return "a mapping";
      case "list":
        return strings(s).length > 0 ? `a list of ${strings(s).map(show).join(", ")}` : "a list of strings";
      default:
        return "any value";
    }
  });
  if (s.auto) words.push('"auto"');
  if (s.nullable) words.push("null");
  return words.length > 1 ? `${words.slice(0, -1).join(", ")} or ${words.at(-1)}` : (words[0] ?? "");
}

/** How one target file is checked: its name, and the words for a bad value or an unknown key. */
export interface TargetFile {
  readonly file: string;
  /** The allowed-value spec of a dotted key path, undefined for a path that is not a key. */
  spec(path: string): KindSpec | undefined;
  /** Known keys under a dotted parent path ("" = top level), for "did you mean". */
  keys(parent: string): readonly string[];
  /** Why an unknown key is a problem (which tool rejects or ignores it, and how). */
  unknownKey(parent: string, key: string): string;
  /** Whether the tool silently ignores an unknown key there (a warning, not an error); never, when absent. */
  ignoresUnknownKey?(parent: string): boolean;
  /** Message for a missing required key. */
  missingKey(path: string): string;
}

const at = (file: TargetFile, path: string) => (path ? `${file.file}:${path}` : file.file);

function valueAt(obj: unknown, path: readonly PropertyKey[]): { found: boolean; value: unknown } {
  let cur: unknown = obj;
  for (const seg of path) {
    if (cur === null || typeof cur !== "object" || !Object.hasOwn(cur, seg))
      return { found: false, value: undefined };
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return { found: true, value: cur };
}

/** "Did you mean …" for a misspelled key, or the plain advice to remove it. */
export function unknownKeyHint(key: string, known: readonly string[]): string {
  const [best] = closest(key, known, 1);
  if (best === undefined) return "Remove the key.";
  const near =
    editDistance(key, best) <= Math.max(2, Math.floor(key.length / 4)) ||
    (key.length >= 4 && best.toLowerCase().includes(key.toLowerCase()));
  return near ? `Did you mean \`${best}\`?` : "Remove the key.";
}

/** An issue about a key path of a target file. */
export function targetIssue(
  file: TargetFile,
  code: string,
  path: string,
  message: string,
  hint: string,
  severity: Issue["severity"] = "error",
): Issue {
  return { code, severity, path: at(file, path), message, hint };
}

/** Validates `value` against `schema` and turns each zod error into a TARGET_* issue, one per path and code. */
export function schemaIssues(file: TargetFile, schema: z.ZodType, value: unknown): Issue[] {
  const result = schema.safeParse(value);
  if (result.success) return [];
  const out: Issue[] = [];
  for (const zi of result.error.issues) {
    const parent = zi.path.map(String);
    if (zi.code === "unrecognized_keys") {
      for (const key of zi.keys) {
        const path = [...parent, key].join(".");
        out.push(
          targetIssue(
            file,
            "TARGET_UNKNOWN_KEY",
            path,
            file.unknownKey(parent.join("."), key),
            unknownKeyHint(key, file.keys(parent.join("."))),
            file.ignoresUnknownKey?.(parent.join(".")) ? "warning" : "error",
          ),
        );
      }
      continue;
    }
    // Report at the deepest key the tables know (a list element's error belongs to the list key).
    let cut = parent.length;
    while (cut > 0 && file.spec(parent.slice(0, cut).join(".")) === undefined) cut--;
    const keyPath = parent.slice(0, cut);
    const path = keyPath.join(".");
    const spec = file.spec(path);
    const { found, value: got } = valueAt(value, keyPath);
    if (!found) {
      out.push(targetIssue(file, "TARGET_MISSING_KEY", path, file.missingKey(path), `Add \`${path}\`.`));
      continue;
    }
    const allowed = spec ? describeKind(spec) : zi.message;
    out.push(
      targetIssue(
        file,
        "TARGET_BAD_VALUE",
        path,
        `${path || "the file"} is ${show(got)}; allowed: ${allowed}.`,
        `Set \`${path}\` to ${allowed}.`,
      ),
    );
  }
  const seen = new Set<string>();
  return out.filter((i) => {
    const id = `${i.code} ${i.path}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/** Rule issues win over the generic schema issue at the same path. */
export function mergeIssues(fromSchema: readonly Issue[], fromRules: readonly Issue[]): Issue[] {
  const taken = new Set(fromRules.map((i) => i.path));
  return [...fromSchema.filter((i) => !taken.has(i.path)), ...fromRules];
}
