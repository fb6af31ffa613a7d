import { Document, isMap, isPair, isScalar, type ScalarTag } from "yaml";

/*
 * The one serializer of emitted files. YAML is written as YAML 1.1, the dialect PyYAML (accelerate, Kubernetes
 * tooling) and OmegaConf (LLaMA-Factory's reader) resolve: strings such as `no`, `on` or `1e-4` are quoted, and
 * floats always carry a dot and a signed exponent (`1.0e-4`), since YAML 1.1 reads `1e-4` as a string.
 * JSON is strict (two-space indent, no trailing commas), as `json.load` wants it.
 */

/** A number that must be written as a float even when its value is integral (`num_train_epochs: 3.0`). */
class YamlFloat {
  readonly value: number;
  constructor(value: number) {
    this.value = value;
  }
}

/** Formats a float the way YAML 1.1 and OmegaConf both read as a float: `0.1`, `3.0`, `1.0e-4`, `1.0e+9`. */
export function formatYamlFloat(value: number): string {
  if (!Number.isFinite(value)) return Number.isNaN(value) ? ".nan" : value > 0 ? ".inf" : "-.inf";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e7)) {
    const [mantissa = "0", exponent = "0"] = value.toExponential().split("e");
    const m = mantissa.includes(".") ? mantissa : `${mantissa}.0`;
    const e = exponent.startsWith("-") ? exponent : `+${exponent.replace("+", "")}`;
    return `${m}e${e}`;
  }
  const s = String(value);
  return s.includes(".") ? s : `${s}.0`;
}

const floatTag: ScalarTag = {
  tag: "tag:yaml.org,2002:float",
  default: true,
  identify: (v) => v instanceof YamlFloat,
  resolve: (s) => Number.parseFloat(s),
  stringify: (item) => formatYamlFloat((item.value as YamlFloat).value),
};

export interface YamlOptions {
  /** comment lines at the top of the file (without `#`) */
  readonly header?: readonly string[];
  /** top-level key → comment line written above it, after a blank line (LLaMA-Factory's `### model` sections) */
  readonly sectionComments?: Readonly<Record<string, string>>;
  /** top-level keys whose numbers are floats even when integral */
  readonly floatKeys?: ReadonlySet<string>;
}

function tagFloats(value: unknown, floatKey: boolean): unknown {
  if (typeof value === "number") {
    return floatKey || !Number.isInteger(value) ? new YamlFloat(value) : value;
  }
  if (Array.isArray(value)) return value.map((v) => tagFloats(v, false));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tagFloats(v, false)]));
  }
  return value;
}

/** Serializes a plain object as a YAML 1.1 document. Deterministic: key order is the object's. */
export function toYaml(value: Readonly<Record<string, unknown>>, options: YamlOptions = {}): string {
  const floatKeys = options.floatKeys ?? new Set<string>();
  const tagged = Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, tagFloats(v, floatKeys.has(k))]),
  );
  const doc = new Document(tagged, { version: "1.1", customTags: [floatTag] });
  const sections = options.sectionComments ?? {};
  if (isMap(doc.contents)) {
    for (const item of doc.contents.items) {
      if (!isPair(item) || !isScalar(item.key)) continue;
      const comment = sections[String(item.key.value)];
      if (comment !== undefined) {
        item.key.commentBefore = comment.startsWith("#") ? comment.slice(1) : ` ${comment}`;
        item.key.spaceBefore = true;
      }
    }
  }
  const body = doc.toString({
    lineWidth: 0,
    singleQuote: true,
    indentSeq: true,
    nullStr: "null",
    trueStr: "true",
    falseStr: "false",
  });
  const header = (options.header ?? [])
    // biome-ignore lint/suspicious/noControlCharactersInRegex: a line break inside a comment would end it
    .map((line) => line.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, " "))
    .map((line) => (line ? `# ${line}` : "#"))
    .join("\n");
  const text = header ? `${header}\n${body.startsWith("\n") ? "" : "\n"}${body}` : body;
  return text.replace(/^\n+/, "");
}

/** Serializes a value as strict JSON with a two-space indent and a final newline. */
export function toJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
