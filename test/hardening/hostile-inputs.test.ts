import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli, useTempDirs } from "../support/cli.ts";

const tempDir = useTempDirs("tunefit-hostile-");

/*
 * Hostile files: config.json, plan specs and training YAMLs that are broken, huge, mistyped or built to explode.
 * Each gives exit 2 with the file (and field) named, never a stack trace; nothing generated runs what it carries.
 */

const QWEN3 = readFileSync(join(import.meta.dirname, "../fixtures/configs/qwen3-8b/config.json"), "utf8");
const withConfig = (cwd: string, text: string) => {
  mkdirSync(join(cwd, "m"), { recursive: true });
  writeFileSync(join(cwd, "m/config.json"), text);
};
const plan = (cwd: string, extra: string[] = []) =>
  cli(["plan", "--model", "m", "--gpu", "h100-80g", "--template", "qwen3", ...extra], cwd);

describe("hostile config.json", () => {
  const cases: [string, (base: Record<string, unknown>) => string, RegExp][] = [
    ["invalid syntax", () => '{"model_type": "qwen3", ', /not valid JSON/],
    [
      "NaN (Python's json writes it)",
      (b) => JSON.stringify(b).replace('"hidden_size":4096', '"hidden_size":NaN'),
      /not valid JSON/,
    ],
    ["a missing field", (b) => JSON.stringify({ ...b, hidden_size: undefined }), /hidden_size/],
    ["a negative size", (b) => JSON.stringify({ ...b, num_hidden_layers: -36 }), /num_hidden_layers/],
    ["a huge size", (b) => JSON.stringify({ ...b, hidden_size: 1e300 }), /hidden_size/],
    ["a string for a number", (b) => JSON.stringify({ ...b, vocab_size: "151936" }), /vocab_size/],
    ["an array at the top", () => "[1, 2, 3]", /config\.json/],
    ["an unknown model_type", (b) => JSON.stringify({ ...b, model_type: "not-a-model" }), /model_type/],
  ];
  it.each(cases)("%s → exit 2 naming the file and field", (_, make, pattern) => {
    const cwd = tempDir();
    withConfig(cwd, make(JSON.parse(QWEN3)));
    const r = plan(cwd);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/config\.json/);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("a 10 MB file → exit 2 before it is parsed", () => {
    const cwd = tempDir();
    withConfig(cwd, `{"model_type": "qwen3", "pad": "${"x".repeat(10 * 1024 * 1024)}"}`);
    const r = plan(cwd);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/config\.json is 10\.0 MiB/);
  });

  it("a folder without a config.json → exit 2", () => {
    const cwd = tempDir();
    mkdirSync(join(cwd, "m"));
    const r = plan(cwd);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("has no readable config.json");
  });
});

describe("hostile plan specs and training YAMLs", () => {
  const bomb = (() => {
    const lines = ["a: &a [x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 10; i++) {
      const p = String.fromCharCode(96 + i);
      const n = String.fromCharCode(97 + i);
      lines.push(`${n}: &${n} [${Array(9).fill(`*${p}`).join(", ")}]`);
    }
    return `${lines.join("\n")}\n`;
  })();

  it("an alias bomb in --spec or a training YAML → exit 2", () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, "spec.yaml"), bomb);
    expect(cli(["plan", "--spec", "spec.yaml"], cwd).code).toBe(2);
    writeFileSync(join(cwd, "train.yaml"), bomb);
    expect(cli(["doctor", "train.yaml", "--gpu", "h100-80g"], cwd).code).toBe(2);
  });

  it("a 10 MB spec or YAML → exit 2 naming it", () => {
    const cwd = tempDir();
    const big = `model: Qwen/Qwen3-8B\n# ${"x".repeat(10 * 1024 * 1024)}\n`;
    writeFileSync(join(cwd, "spec.yaml"), big);
    const a = cli(["plan", "--spec", "spec.yaml", "--gpu", "h100-80g"], cwd);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain("spec.yaml");
    writeFileSync(join(cwd, "train.yaml"), big);
    const b = cli(["doctor", "train.yaml", "--gpu", "h100-80g"], cwd);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain("train.yaml is 10.0 MiB");
  });

  it("a folder or a missing path where a file belongs → exit 2 naming it", () => {
    const cwd = tempDir();
    mkdirSync(join(cwd, "spec.yaml"));
    const a = cli(["plan", "--spec", "spec.yaml", "--gpu", "h100-80g"], cwd);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain("cannot read the plan file spec.yaml");
    const b = cli(["doctor", "missing.yaml", "--gpu", "h100-80g"], cwd);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain("missing.yaml");
    expect(b.stderr).not.toMatch(/\n\s+at /);
  });

  it("a spec of the wrong shape or with wrong types → exit 2 naming the field", () => {
    const cwd = tempDir();
    writeFileSync(join(cwd, "a.yaml"), "- just\n- a list\n");
    expect(cli(["plan", "--spec", "a.yaml"], cwd).code).toBe(2);
    writeFileSync(join(cwd, "b.yaml"), "model: Qwen/Qwen3-8B\ngpu: h100-80g\ngpus: eight\n");
    const b = cli(["plan", "--spec", "b.yaml", "--json"], cwd);
    expect(b.code).toBe(2);
    expect(JSON.parse(b.stdout).issues[0].path).toBe("gpus");
  });
});

describe("generated scripts cannot be turned against the user", () => {
  it("a model folder named with quotes, $(...), backticks and non-ASCII reaches train.yaml literally and runs nothing", () => {
    const cwd = tempDir();
    const name = "it's $(touch PWNED) `touch PWNED2` ünï";
    mkdirSync(join(cwd, name));
    writeFileSync(join(cwd, name, "config.json"), QWEN3);
    const r = cli(
      [
        "emit",
        "--model",
        `./${name}`,
        "--gpu",
        "h100-80g",
        "--gpus",
        "2",
        "--template",
        "qwen3",
        "--out",
        "b",
      ],
      cwd,
    );
    expect(r.code, r.stderr).toBe(0);
    const yaml = readFileSync(join(cwd, "b/train.yaml"), "utf8");
    expect(yaml).toContain(name);
    // run every script with stub commands on PATH
    const bin = join(cwd, "bin");
    mkdirSync(bin);
    for (const cmd of ["llamafactory-cli", "accelerate", "srun", "scontrol"]) {
      writeFileSync(join(bin, cmd), "#!/usr/bin/env bash\nexit 0\n", { mode: 0o755 });
    }
    writeFileSync(join(bin, "nvidia-smi"), "#!/usr/bin/env bash\necho 'GPU 0: stub'\necho 'GPU 1: stub'\n", {
      mode: 0o755,
    });
    const res = spawnSync("bash", [join(cwd, "b/launch.sh")], {
      cwd,
      encoding: "utf8",
      env: { PATH: `${bin}:${process.env.PATH}`, HOME: cwd },
    });
    expect(res.status, res.stderr).toBe(0);
    expect(existsSync(join(cwd, "PWNED"))).toBe(false);
    expect(existsSync(join(cwd, "PWNED2"))).toBe(false);
    expect(existsSync(join(cwd, "b/PWNED"))).toBe(false);
  });
});
