import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli, useTempDirs } from "../support/cli.ts";

const tempDir = useTempDirs("tunefit-init-");

const PLAN = ["--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "rtx4090"];

describe("tunefit init", () => {
  it("scaffolds the default project: README, plan.ts, data/ and the bundle", () => {
    const cwd = tempDir();
    const r = cli(["init", "proj", ...PLAN], cwd);
    expect(r.code, r.stderr).toBe(0);
    const top = readdirSync(join(cwd, "proj")).sort();
    expect(top).toEqual(expect.arrayContaining(["README.md", "bundle", "data", "package.json", "plan.ts"]));
    expect(readFileSync(join(cwd, "proj/plan.ts"), "utf8")).toContain("PlanBuilder.from(");
    expect(existsSync(join(cwd, "proj/bundle/launch.sh"))).toBe(true);
    const info = JSON.parse(readFileSync(join(cwd, "proj/data/dataset_info.json"), "utf8"));
    expect(Object.keys(info)).toContain("my_dataset");
    // run from a checkout (tunefit is not on the registry), the project depends on that checkout by its path
    const spec = JSON.parse(readFileSync(join(cwd, "proj/package.json"), "utf8")).dependencies
      .tunefit as string;
    expect(spec).toMatch(/^file:/);
    const target = JSON.parse(
      readFileSync(join(cwd, "proj", spec.slice("file:".length), "package.json"), "utf8"),
    );
    expect(target.name).toBe("tunefit");
  });

  it("--scaffold minimal writes README and plan.ts beside the bundle", () => {
    const cwd = tempDir();
    expect(cli(["init", "p", ...PLAN, "--scaffold", "minimal"], cwd).code).toBe(0);
    expect(existsSync(join(cwd, "p/plan.ts"))).toBe(true);
    expect(existsSync(join(cwd, "p/package.json"))).toBe(false);
  });

  it("refuses a non-empty folder without --force, an unknown scaffold, and a missing DIR (exit 2)", () => {
    const cwd = tempDir();
    mkdirSync(join(cwd, "p"));
    writeFileSync(join(cwd, "p/mine.txt"), "x");
    const a = cli(["init", "p", ...PLAN], cwd);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain("--force");
    expect(readdirSync(join(cwd, "p"))).toEqual(["mine.txt"]);
    expect(cli(["init", "p", ...PLAN, "--force"], cwd).code).toBe(0);
    const b = cli(["init", "q", ...PLAN, "--scaffold", "fancy", "--json"], cwd);
    expect(b.code).toBe(2);
    expect(JSON.parse(b.stdout).issues[0].message).toContain("default, minimal");
    expect(cli(["init", ...PLAN], cwd).code).toBe(2);
  });

  it("a plan that does not fit writes nothing (exit 3) unless --allow-unfit", () => {
    const cwd = tempDir();
    const seed = [
      "--model",
      "Qwen/Qwen2-VL-72B-Instruct",
      "--gpu",
      "rtx4090",
      "--gpus",
      "8",
      "--method",
      "full",
    ];
    expect(cli(["init", "p", ...seed], cwd).code).toBe(3);
    expect(existsSync(join(cwd, "p"))).toBe(false);
    expect(cli(["init", "p", ...seed, "--allow-unfit"], cwd).code).toBe(3);
    expect(existsSync(join(cwd, "p/plan.ts"))).toBe(true);
  });
});
