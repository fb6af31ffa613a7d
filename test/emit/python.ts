import { spawnSync } from "node:child_process";

/*
 * A Python interpreter that can import the given modules, for read-back tests (PyYAML is what accelerate reads
 * its config with; OmegaConf is what LLaMA-Factory reads train.yaml with). Debian installs python3-omegaconf for
 * /usr/bin/python3, which may not be the first python3 on PATH. With TUNEFIT_REQUIRE_PYTHON=1 (set by .ci/run)
 * a missing interpreter or module fails the tests instead of skipping them.
 */
const CANDIDATES = ["python3", "/usr/bin/python3"];

export function findPython(modules: readonly string[]): string | undefined {
  for (const exe of CANDIDATES) {
    const r = spawnSync(exe, ["-c", modules.map((m) => `import ${m}`).join("; ")], { encoding: "utf8" });
    if (r.status === 0) return exe;
  }
  return undefined;
}

export const pythonRequired = process.env.TUNEFIT_REQUIRE_PYTHON === "1";

/** Runs a Python snippet with stdin; returns stdout or throws with stderr. */
export function runPython(exe: string, code: string, input: string): string {
  const r = spawnSync(exe, ["-c", code], { input, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return r.stdout;
}
