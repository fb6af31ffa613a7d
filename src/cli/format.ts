import { BYTES_PER_GIB } from "../catalog/gpus.ts";
import type { Issue } from "../errors.ts";
import { flagName, PLAN_FLAGS } from "./flags.ts";

/** `12345678901` → `11.50 GiB`. */
export function formatGib(bytes: number): string {
  return `${(bytes / BYTES_PER_GIB).toFixed(2)} GiB`;
}

/** `73405560320` → `73.41 B`, `494032768` → `494.03 M`. */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)} K`;
  return String(n);
}

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
  const mark = { error: "✖", warning: "⚠", info: "ℹ" } as const;
  return issues
    .map((i) => `${mark[i.severity]} ${i.message}\n  → at ${where(i.path)}\n  ${i.hint}`)
    .join("\n");
}
