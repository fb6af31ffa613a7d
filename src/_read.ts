// Private helper; never re-exported from the package entry. The library reads a user's files in three places (a
// model folder's config.json, the LLaMA-Factory setup doctor checks, the CLI's --spec file), each with a size limit.
import { readFileSync, statSync } from "node:fs";

/** Why a bounded read failed: no readable file there, or a file over the limit (its size in bytes). */
export type ReadFailure =
  | { readonly kind: "unreadable" }
  | { readonly kind: "too-large"; readonly bytes: number };

/**
 * Reads a UTF-8 text file of at most `limitBytes`.
 * @throws what `fail` returns, for a missing path, a directory, an unreadable file or one over the limit
 */
export function readBoundedText(path: string, limitBytes: number, fail: (f: ReadFailure) => Error): string {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new Error("not a file");
    size = st.size;
  } catch {
    throw fail({ kind: "unreadable" });
  }
  if (size > limitBytes) throw fail({ kind: "too-large", bytes: size });
  try {
    return readFileSync(path, "utf8");
  } catch {
    throw fail({ kind: "unreadable" });
  }
}

/** A size in MiB with one decimal, for the messages of the readers above. */
export const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
