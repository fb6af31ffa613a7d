import { formatCount, formatGib } from "../_util.ts";

export { formatCount, formatGib };

import { YAML_KEY_OF_PLAN_FIELD } from "../doctor/to-plan.ts";
import { formatIssues, type Issue } from "../errors.ts";
import { flagName, PLAN_FLAGS } from "./flags.ts";

/** `73405560320` → `73,405,560,320`. */
export function formatInt(n: number): string {
  return n.toLocaleString("en-US");
}

/** Left-aligned text table; the first row is the header. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  const line = (row: readonly string[]) =>
    row
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  const [head, ...body] = rows;
  if (!head) return "";
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}

/** Where an issue points, with the flag spelled out when the path is a plan field. */
function where(path: string): string {
  const top = path.split(".")[0] ?? path;
  return top in PLAN_FLAGS ? `${path} (${flagName(top)})` : path;
}

/** Issues for people: `✖ message`, `→ at path (--flag)`, the hint. */
export function formatIssuesForCli(issues: readonly Issue[]): string {
  return formatIssues(issues, where);
}

/**
 * Issues for people reading a LLaMA-Factory YAML (`doctor`): a plan field is named by the key it was read from,
 * the hardware fields by doctor's own flags.
 */
export function formatIssuesForYaml(issues: readonly Issue[], yamlName: string): string {
  return formatIssues(issues, (path) => {
    const top = path.split(".")[0] ?? path;
    const key = YAML_KEY_OF_PLAN_FIELD[top];
    return key ? `${yamlName}:${key}` : where(path);
  });
}

const BAR_PARTS = [
  ["weights", "W"],
  ["gradients", "G"],
  ["optimizer", "O"],
  ["activations", "A"],
  ["logits", "L"],
  ["buffers", "B"],
  ["fragmentation", "f"],
  ["runtime", "r"],
] as const;

const ANSI: Readonly<Record<string, string>> = {
  W: "34",
  G: "36",
  O: "35",
  A: "33",
  L: "31",
  B: "32",
  f: "90",
  r: "90",
};

/**
 * A stacked bar of one GPU's memory: one letter per part, `|` at the usable capacity, the card's end at `]`.
 * Width is the character count of the card; `color` paints each part (for terminals).
 */
export function memoryBar(
  breakdown: Readonly<Record<(typeof BAR_PARTS)[number][0], number>>,
  usableBytes: number,
  cardBytes: number,
  width = 60,
  color = false,
): string {
  const total = BAR_PARTS.reduce((n, [k]) => n + breakdown[k], 0);
  const scale = width / Math.max(cardBytes, total);
  let bar = "";
  let carried = 0;
  for (const [key, letter] of BAR_PARTS) {
    carried += breakdown[key] * scale;
    const cells = Math.round(carried) - bar.length;
    bar += letter.repeat(Math.max(0, cells));
  }
  const cardCells = Math.round(cardBytes * scale);
  const usableCells = Math.round(usableBytes * scale);
  const cells = [...bar.padEnd(Math.max(cardCells, bar.length), " ")];
  if (usableCells < cells.length && cells[usableCells] === " ") cells[usableCells] = "|";
  const paint = (text: string) =>
    color
      ? text.replace(/([WGOALBfr])\1*/g, (run) => `\u001b[${ANSI[run[0] ?? ""] ?? "0"}m${run}\u001b[0m`)
      : text;
  const inside = paint(cells.slice(0, cardCells).join(""));
  const over = paint(cells.slice(cardCells).join(""));
  return `[${inside}]${over}`;
}

/** The legend of memoryBar with sizes. */
export function memoryLegend(breakdown: Readonly<Record<(typeof BAR_PARTS)[number][0], number>>): string {
  return BAR_PARTS.filter(([k]) => breakdown[k] > 0)
    .map(([k, letter]) => `${letter} ${k} ${formatGib(breakdown[k])}`)
    .join(" · ");
}
