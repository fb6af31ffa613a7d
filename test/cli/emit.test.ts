import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli, useTempDirs } from "../support/cli.ts";

const tempDir = useTempDirs("tunefit-emit-");

const FITS = [
  "--model",
  "Qwen/Qwen2-VL-72B-Instruct",
  "--gpu",
  "rtx4090",
  "--gpus",
  "8",
  "--method",
  "qlora",
];
// the seed's fix: QLoRA with FSDP1 and parameter offload (without offload the wrap's cached transient does not fit)
const FITS_FSDP = [...FITS, "--sharding", "fsdp", "--offload", "params", "--host-ram", "256"];
const SEED_FULL = [
  "--model",
  "Qwen/Qwen2-VL-72B-Instruct",
  "--gpu",
  "rtx4090",
  "--gpus",
  "8",
  "--method",
  "full",
];

describe("tunefit emit", () => {
  it("writes the bundle of a plan that fits (exit 0), launch.sh executable", () => {
    const cwd = tempDir();
    const { code, stdout } = cli(["emit", ...FITS_FSDP, "--out", "bundle"], cwd);
    expect(code).toBe(0);
    expect(stdout).toContain("Wrote 6 files to bundle");
    const files = readdirSync(join(cwd, "bundle")).sort();
    expect(files).toEqual(["README.md", "accelerate_fsdp.yaml", "data", "launch.sh", "train.yaml"]);
    expect(statSync(join(cwd, "bundle/launch.sh")).mode & 0o111).not.toBe(0);
    expect(readFileSync(join(cwd, "bundle/accelerate_fsdp.yaml"), "utf8")).toContain(
      "fsdp_cpu_ram_efficient_loading: true",
    );
  });

  it("--json prints the files and the plan --json object", () => {
    const cwd = tempDir();
    const { code, stdout } = cli(["emit", ...FITS_FSDP, "--out", "b", "--json"], cwd);
    expect(code).toBe(0);
    const out = JSON.parse(stdout);
    expect(out.files).toEqual([
      "train.yaml",
      "accelerate_fsdp.yaml",
      "launch.sh",
      "data/dataset_info.json",
      "data/tunefit_demo.json",
      "README.md",
    ]);
    expect(out.plan.model.id).toBe("Qwen/Qwen2-VL-72B-Instruct");
    expect(out.plan.memory.train.fits).toBe(true);
  });

  it("a plan that does not fit writes nothing and exits 3; --allow-unfit writes it and still exits 3", () => {
    const cwd = tempDir();
    const refused = cli(["emit", ...SEED_FULL, "--out", "b"], cwd);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain("Nothing written to b");
    expect(existsSync(join(cwd, "b"))).toBe(false);
    const forced = cli(["emit", ...SEED_FULL, "--out", "b", "--allow-unfit"], cwd);
    expect(forced.code).toBe(3);
    expect(readFileSync(join(cwd, "b/README.md"), "utf8")).toContain("**Predicted not to run**");
  });

  it("refuses a non-empty folder without --force (exit 2, untouched); --force replaces it", () => {
    const cwd = tempDir();
    mkdirSync(join(cwd, "b"));
    writeFileSync(join(cwd, "b/keep.txt"), "mine");
    const refused = cli(["emit", ...FITS_FSDP, "--out", "b"], cwd);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--force");
    expect(readdirSync(join(cwd, "b"))).toEqual(["keep.txt"]);
    const forced = cli(["emit", ...FITS_FSDP, "--out", "b", "--force"], cwd);
    expect(forced.code).toBe(0);
    expect(existsSync(join(cwd, "b/keep.txt"))).toBe(false);
    expect(existsSync(join(cwd, "b/train.yaml"))).toBe(true);
  });

  it("without --out it is a usage error naming the flag (exit 2)", () => {
    const { code, stderr } = cli(["emit", ...FITS], tempDir());
    expect(code).toBe(2);
    expect(stderr).toContain("--out");
  });

  it("rejects plan-only flags such as --recommend", () => {
    const { code, stderr } = cli(["emit", ...FITS, "--out", "b", "--recommend"], tempDir());
    expect(code).toBe(2);
    expect(stderr).toContain("recommend");
  });

  it("names a config.json model folder relative to the bundle, where launch.sh runs", () => {
    const cwd = tempDir();
    mkdirSync(join(cwd, "models/tiny"), { recursive: true });
    writeFileSync(
      join(cwd, "models/tiny/config.json"),
      readFileSync(join(import.meta.dirname, "../fixtures/configs/qwen3-8b/config.json"), "utf8"),
    );
    const { code } = cli(
      ["emit", "--model", "models/tiny", "--gpu", "rtx4090", "--template", "qwen3", "--out", "out/b"],
      cwd,
    );
    expect(code).toBe(0);
    expect(readFileSync(join(cwd, "out/b/train.yaml"), "utf8")).toContain(
      "model_name_or_path: ../../models/tiny\n",
    );
  });

  it("--dataset names the user's dataset and ships no demo data", () => {
    const cwd = tempDir();
    const { code } = cli(["emit", ...FITS_FSDP, "--dataset", "my_data", "--out", "b"], cwd);
    expect(code).toBe(0);
    expect(existsSync(join(cwd, "b/data"))).toBe(false);
    const yaml = readFileSync(join(cwd, "b/train.yaml"), "utf8");
    expect(yaml).toContain("dataset: my_data\n");
    expect(yaml).not.toContain("dataset_dir");
  });
});

describe("values that reach the bundle", () => {
  it.each(["a b", "x$(id)", "q'uote", "new\nline", "back`tick`"])(
    "--dataset %j is rejected before anything is written (exit 2, path dataset)",
    (name) => {
      const cwd = tempDir();
      const { code, stdout } = cli(["emit", ...FITS_FSDP, "--dataset", name, "--out", "b", "--json"], cwd);
      expect(code).toBe(2);
      expect(JSON.parse(stdout).issues[0].path).toBe("dataset");
      expect(existsSync(join(cwd, "b"))).toBe(false);
    },
  );
});

describe("tunefit emit --probe", () => {
  it("adds an executable probe.py that compiles, and the README says which modes ran", () => {
    const cwd = tempDir();
    const { code, stdout } = cli(
      ["emit", ...FITS_FSDP, "--out", "b", "--probe", "--probe-steps", "3", "--json"],
      cwd,
    );
    expect(code).toBe(0);
    expect(JSON.parse(stdout).files).toContain("probe.py");
    expect(statSync(join(cwd, "b/probe.py")).mode & 0o111).not.toBe(0);
    expect(readFileSync(join(cwd, "b/README.md"), "utf8")).toContain("its LLaMA-Factory mode has never run");
    const py = spawnSync("python3", ["-m", "py_compile", join(cwd, "b/probe.py")], { encoding: "utf8" });
    if (py.error === undefined) expect(py.status, py.stderr).toBe(0);
  });

  it("--probe-steps needs --probe and a whole number", () => {
    const cwd = tempDir();
    expect(cli(["emit", ...FITS_FSDP, "--out", "b", "--probe-steps", "3"], cwd).code).toBe(2);
    expect(cli(["emit", ...FITS_FSDP, "--out", "b", "--probe", "--probe-steps", "0"], cwd).code).toBe(2);
    expect(existsSync(join(cwd, "b"))).toBe(false);
  });
});
