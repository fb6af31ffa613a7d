// Private helpers; never re-exported from the package entry.

const BYTES_PER_GIB = 1024 ** 3;

/** Levenshtein distance, case-insensitive. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = cur;
  }
  return prev[t.length] ?? 0;
}

/** The candidates closest to `input`: by edit distance, ties broken alphabetically. Substring hits first. */
export function closest(input: string, candidates: readonly string[], max: number): string[] {
  const needle = input.toLowerCase();
  const scored = [...new Set(candidates)].map((c) => {
    const lower = c.toLowerCase();
    const tail = lower.slice(lower.indexOf("/") + 1);
    const contains = lower.includes(needle) || (needle.length >= 3 && needle.includes(tail));
    const d = Math.min(editDistance(needle, lower), editDistance(needle, tail));
    return { c, score: contains ? d / 10 : d };
  });
  scored.sort((x, y) => x.score - y.score || x.c.localeCompare(y.c));
  return scored.slice(0, max).map((x) => x.c);
}

/** Deep-freezes a plain value (arrays and objects). */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** 0, 1, …, n − 1. */
export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

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
