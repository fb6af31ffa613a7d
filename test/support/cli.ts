import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import { type CliIo, run } from "../../src/cli/run.ts";

/** Runs the CLI in-process; returns the exit code and what it printed. */
export function cli(argv: readonly string[], cwd = process.cwd(), overrides: Partial<CliIo> = {}) {
  let stdout = "";
  let stderr = "";
  const code = run(argv, {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    cwd,
    ...overrides,
  });
  return { code, stdout, stderr };
}

/** A fresh temporary folder, removed after the test (call at module level to register the cleanup). */
export function useTempDirs(prefix: string): () => string {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
}
