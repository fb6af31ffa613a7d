import { z } from "zod";

export const Severity = z.enum(["error", "warning", "info"]);
export type Severity = z.infer<typeof Severity>;

/**
 * One finding about a plan or an input: what is wrong (with the numbers), where (`path`, a plan field as a dot
 * path, a flag, or a file field), and what to change (`hint`).
 */
export const Issue = z.strictObject({
  code: z.string().meta({ description: "stable UPPER_SNAKE identifier" }),
  severity: Severity,
  path: z.string().meta({ description: "the plan field (dot path) or input field the issue is about" }),
  message: z.string(),
  hint: z.string(),
});
export type Issue = z.infer<typeof Issue>;

/**
 * Why an operation could not complete.
 * - `usage`: the input does not form a plan (bad flag, value, file or config.json); the CLI exits 2.
 * - `internal`: a bug in tunefit; the CLI exits 1.
 */
export type ErrorKind = "usage" | "internal";

/** The one error type tunefit throws. Its issues are data; `message` is their one-line summary. */
export class TunefitError extends Error {
  readonly kind: ErrorKind;
  readonly issues: readonly Issue[];

  constructor(kind: ErrorKind, issues: readonly Issue[]) {
    super(issues.map((i) => `${i.path}: ${i.message}`).join("; ") || kind);
    this.name = "TunefitError";
    this.kind = kind;
    this.issues = issues;
  }
}

/** Builds a usage error with one issue. */
export function usageError(code: string, path: string, message: string, hint: string): TunefitError {
  return new TunefitError("usage", [{ code, severity: "error", path, message, hint }]);
}

/** True for errors tunefit raised about its input (as opposed to bugs). */
export function isUsageError(e: unknown): e is TunefitError {
  return e instanceof TunefitError && e.kind === "usage";
}

/**
 * Renders issues as text, one block each: `✖ message`, `→ at path`, then the hint. `describePath` may spell the
 * path out (the CLI adds the flag).
 */
export function formatIssues(
  issues: readonly Issue[],
  describePath: (path: string) => string = (p) => p,
): string {
  const mark = { error: "✖", warning: "⚠", info: "ℹ" } as const;
  return issues
    .map(
      (i) =>
        `${mark[i.severity]} ${i.message}\n  → at ${describePath(i.path)}${i.hint ? `\n  ${i.hint}` : ""}`,
    )
    .join("\n");
}
