import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { listCatalogModels } from "../../src/catalog/models.ts";
import { parseFlagValue } from "../../src/cli/flags.ts";
import { type CliIo, run } from "../../src/cli/run.ts";
import { VERSION } from "../../src/version.ts";

function cli(argv: string[], cwd = process.cwd(), overrides: Partial<CliIo> = {}) {
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

const SEED = [
  "plan",
  "--model",
  "Qwen/Qwen2-VL-72B-Instruct",
  "--gpu",
  "rtx4090",
  "--gpus",
  "8",
  "--method",
  "full",
];

describe("tunefit plan --json", () => {
  it("prints the contract's fields for the seed case, which does not fit (exit 3)", () => {
    const { code, stdout } = cli([...SEED, "--json"]);
    expect(code).toBe(3);
    const report = JSON.parse(stdout);
    expect(report.model.id).toBe("Qwen/Qwen2-VL-72B-Instruct");
    expect(report.model.params).toMatchObject({ total: 73_405_560_320, trainable: 72_706_203_648 });
    expect(report.hardware).toEqual({
      gpu: "rtx4090",
      gpusPerNode: 8,
      nodes: 1,
      gpuCapacityBytes: 24_564 * 1024 ** 2,
    });
    const { train, load, inference, hostRam } = report.memory;
    const b = train.perGpu.breakdown;
    expect(b.weights + b.gradients + b.optimizer + b.activations + b.logits + b.buffers).toBe(
      train.perGpu.allocatedBytes,
    );
    expect(train.perGpu.allocatedBytes + b.fragmentation).toBe(train.perGpu.reservedBytes);
    expect(train.perGpu.reservedBytes + b.runtime).toBe(train.perGpu.deviceBytes);
    expect(train.fits).toBe(false);
    expect(train.capacityBytes).toBe(Math.floor(24_564 * 1024 ** 2 * 0.95));
    expect(train.releasableBytes).toBe(0); // DDP leaves no cache the model counts as releasable
    expect(train.releasableSources).toEqual([]);
    expect(load).toMatchObject({ fits: false, oomAtShard: { index: 7, of: 38 } });
    expect(load.oomAtFraction).toBeCloseTo(0.17, 2);
    expect(inference.perGpuBytes).toBeGreaterThan(17 * 1024 ** 3);
    expect(inference.perGpuBytes).toBeLessThan(20 * 1024 ** 3);
    expect(hostRam.perNodeBytes).toBeGreaterThan(0);
    expect(report.issues.map((i: { code: string; path: string }) => [i.code, i.path])).toEqual([
      ["LOAD_REPLICA_OOM", "sharding"],
      ["TRAIN_OOM", "microBatch"],
    ]);
  });

  it("fits the seed's QLoRA under FSDP1: the wrap's cache counts only up to what the plan may use", () => {
    const { code, stdout } = cli([...SEED, "--method", "qlora", "--sharding", "fsdp", "--json"]);
    expect(code).toBe(0);
    const { train } = JSON.parse(stdout).memory;
    expect(train.fits).toBe(true);
    expect(train.releasableBytes).toBeGreaterThan(0);
    expect(train.releasableBytes).toBeLessThanOrEqual(train.perGpu.breakdown.fragmentation);
    expect(train.perGpu.deviceBytes).toBeLessThanOrEqual(train.capacityBytes);
    expect(train.releasableSources).toEqual(["fsdp-wrap-level"]);
  });

  it("names DeepSpeed's step segments as the cache in the report and the JSON, without expandable segments", () => {
    const args = [
      "plan",
      "--model",
      "Qwen/Qwen3-8B",
      "--gpu",
      "a100-80g",
      "--gpus",
      "8",
      "--sharding",
      "zero3",
    ];
    const full = cli([...args, "--method", "full", "--json"]);
    expect(JSON.parse(full.stdout).memory.train.releasableSources).toEqual([]);
    args.push("--method", "full", "--assume", "expandableSegments=false");
    const segmented = cli([...args, "--json"]);
    expect(segmented.code).toBe(0);
    expect(JSON.parse(segmented.stdout).memory.train.releasableSources).toEqual(["deepspeed-step-segments"]);
    expect(cli(args).stdout).toContain(
      "is the extra segments DeepSpeed's step took (beyond backward's reserve) left in the allocator's cache",
    );
  });

  it("matches the model id case-insensitively and keeps the last of a repeated flag", () => {
    const { stdout } = cli([
      "plan",
      "--model",
      "QWEN/qwen2.5-7b",
      "--gpu",
      "t4",
      "--gpu",
      "h100-80g",
      "--json",
    ]);
    const report = JSON.parse(stdout);
    expect(report.model.id).toBe("Qwen/Qwen2.5-7B");
    expect(report.hardware.gpu).toBe("h100-80g");
  });

  it("takes --debug and --json before the command, and --version after it", () => {
    const plan = ["plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "a100-80g"];
    const lead = cli(["--json", "--debug", ...plan]);
    expect(lead.code).toBe(0);
    expect(JSON.parse(lead.stdout).model.id).toBe("Qwen/Qwen2.5-7B-Instruct");
    // a leading switch goes before a doctor's `--` overrides, not after them
    const dir = mkdtempSync(join(tmpdir(), "tunefit-lead-"));
    writeFileSync(
      join(dir, "t.yaml"),
      "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nfinetuning_type: lora\n",
    );
    const overridden = cli(["--json", "doctor", "t.yaml", "--gpu", "a100-80g", "--", "cutoff_len=4096"], dir);
    expect(JSON.parse(overridden.stdout).plan.seqLen).toBe(4096);
    const version = cli(["plan", "--version"]);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toBe(cli(["--version"]).stdout.trim());
  });

  it("refuses doctor --out without --fix, and import --out naming a folder", () => {
    const dir = mkdtempSync(join(tmpdir(), "tunefit-out-"));
    writeFileSync(
      join(dir, "train.yaml"),
      "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nstage: sft\ndo_train: true\nfinetuning_type: lora\n",
    );
    const doctor = cli(["doctor", "train.yaml", "--gpu", "a100-80g", "--out", "fixed"], dir);
    expect(doctor.code).toBe(2);
    expect(doctor.stderr).toContain("without --fix doctor writes nothing");
    const imported = cli(["import", "train.yaml", "--out", "."], dir);
    expect(imported.code).toBe(2);
    expect(imported.stderr).toContain("is a folder");
    // doctor judges fit with the headroom given, as plan does
    const usable = (headroom: string) =>
      JSON.parse(
        cli(["doctor", "train.yaml", "--gpu", "a100-80g", "--headroom", headroom, "--json"], dir).stdout,
      ).memory.train.capacityBytes as number;
    expect(usable("0.2")).toBeLessThan(usable("0.05"));
  });

  it("says which rule --recommend and --max cannot get past, rather than asking for more GPUs", () => {
    const base = [
      "plan",
      "--model",
      "Qwen/Qwen2-VL-7B-Instruct",
      "--gpu",
      "h100-80g",
      "--videos-per-sample",
      "1",
    ];
    const blocked = "the plan breaks VIDEO_TOKENS_BEYOND_CUTOFF (--seq-len), which every candidate keeps";
    expect(cli([...base, "--recommend"]).stdout).toContain(`none fits: ${blocked}`);
    expect(cli([...base, "--max", "micro-batch"]).stdout).toContain(`No micro-batch fits: ${blocked}`);
    // --max seq-len searches from the sample's media tokens up, past that rule
    expect(cli([...base, "--max", "seq-len"]).stdout).toMatch(/Largest seq-len that fits: \d+/);
    const big = [
      "plan",
      "--model",
      "Qwen/Qwen2-VL-72B-Instruct",
      "--gpu",
      "rtx4090",
      "--videos-per-sample",
      "4",
    ];
    expect(cli([...big, "--max", "seq-len"]).stdout).toContain(
      "No seq-len fits: none from 21256 (the tokens of the sample's images and videos, with their markers) up",
    );
  });

  it("reads sizes in GiB, GB, TiB and TB, and names a custom card by its GiB", () => {
    const report = (...flags: string[]) =>
      JSON.parse(cli(["plan", "--model", "Qwen/Qwen2.5-7B-Instruct", ...flags, "--json"]).stdout);
    const a = report("--gpu", "custom", "--gpu-memory", "512GB", "--host-ram", "1TB");
    expect(a.hardware.gpuCapacityBytes).toBe(512e9);
    expect(a.plan.hostRamBytes).toBe(1e12);
    const b = report("--gpu", "custom", "--gpu-memory", "0.5TiB", "--host-ram", "2T");
    expect(b.hardware.gpuCapacityBytes).toBe(512 * 1024 ** 3);
    expect(b.plan.hostRamBytes).toBe(2 * 1024 ** 4);
    const text = cli([
      "plan",
      "--model",
      "Qwen/Qwen2.5-7B-Instruct",
      "--gpu",
      "custom",
      "--gpu-memory",
      "512GB",
    ]);
    expect(text.stdout).toContain("custom GPU (476.84 GiB)");
  });

  it("reads a --spec file and lets flags override it", () => {
    const dir = mkdtempSync(join(tmpdir(), "tunefit-spec-"));
    writeFileSync(
      join(dir, "plan.yaml"),
      "model: Qwen/Qwen3-8B\ngpu: a100-80g\nmethod: lora\nloraRank: 16\n",
    );
    const { code, stdout } = cli(["plan", "--spec", "plan.yaml", "--lora-rank", "32", "--json"], dir);
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.plan.loraRank).toBe(32);
    expect(report.plan.loraAlpha).toBe(64);
  });

  it("drops a spec's fields that a flag makes inapplicable, and says so; a spec inconsistent by itself stays an error", () => {
    const dir = mkdtempSync(join(tmpdir(), "tunefit-spec-"));
    writeFileSync(
      join(dir, "plan.yaml"),
      "model: Qwen/Qwen3-8B\ngpu: a100-80g\nloraRank: 16\nsharding: fsdp\nfsdpStrategy: shard_grad_op\n",
    );
    const r = cli(
      ["plan", "--spec", "plan.yaml", "--method", "full", "--sharding", "zero3", "--gpus", "8", "--json"],
      dir,
    );
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.plan).toMatchObject({
      method: "full",
      sharding: "zero3",
      loraRank: null,
      fsdpStrategy: null,
    });
    expect(r.stderr).toContain("fsdpStrategy (--fsdp-strategy), loraRank (--lora-rank) dropped");
    // the same field given as a flag is the user's word: still an error
    expect(cli(["plan", "--spec", "plan.yaml", "--method", "full", "--lora-rank", "8"], dir).code).toBe(2);
    // a --model that takes no videos (or no images) drops the spec's video (and image) fields
    writeFileSync(
      join(dir, "vl.yaml"),
      "model: Qwen/Qwen2-VL-7B-Instruct\ngpu: a100-80g\nvideosPerSample: 1\nvideoFrames: 16\nimagesPerSample: 1\nseqLen: 4096\n",
    );
    const gemma = cli(["plan", "--spec", "vl.yaml", "--model", "google/gemma-3-4b-it", "--json"], dir);
    expect(gemma.code).toBe(0);
    expect(JSON.parse(gemma.stdout).plan).toMatchObject({ videosPerSample: 0, imagesPerSample: 1 });
    expect(gemma.stderr).toContain(
      "videosPerSample (--videos-per-sample), videoFrames (--video-frames) dropped",
    );
    const text = cli(["plan", "--spec", "vl.yaml", "--model", "Qwen/Qwen2.5-7B-Instruct", "--json"], dir);
    expect(JSON.parse(text.stdout).plan).toMatchObject({ videosPerSample: 0, imagesPerSample: 0 });
    writeFileSync(join(dir, "bad.yaml"), "model: Qwen/Qwen3-8B\ngpu: a100-80g\nmethod: full\nloraRank: 16\n");
    expect(cli(["plan", "--spec", "bad.yaml"], dir).code).toBe(2);
  });

  it("reads a model folder with a config.json, relative to the working directory", () => {
    const dir = mkdtempSync(join(tmpdir(), "tunefit-model-"));
    mkdirSync(join(dir, "models"));
    cpSync(
      new URL("../fixtures/configs/deepseek-v2-lite-chat-resaved", import.meta.url),
      join(dir, "models", "dsv2"),
      {
        recursive: true,
      },
    );
    const { code, stdout, stderr } = cli(
      ["plan", "--model", "models/dsv2", "--gpu", "h100-80g", "--template", "deepseek", "--json"],
      dir,
    );
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.model).toMatchObject({ id: "models/dsv2", source: "config", modelType: "deepseek_v2" });
    expect(report.model.params.total).toBe(15_706_484_224);
  });
});

describe("exit codes", () => {
  it("0 for a valid plan that fits, with a human report and a memory bar", () => {
    const { code, stdout } = cli(["plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "a100-80g"]);
    expect(code).toBe(0);
    expect(stdout).toContain("7,615,616,512");
    expect(stdout).toContain("✔ fits");
    expect(stdout).toMatch(/\[W+.*\]/);
    expect(stdout).toMatch(
      /Step time ~\d+\.\d s per optimizer step \(compute \d+\.\d s, communication 0\.0 s;/,
    );
  });

  it("says why a full fine-tune without accumulation shows no gradients at its peak", () => {
    const full = ["plan", "--model", "meta-llama/Llama-3.2-3B", "--gpu", "h100-80g", "--method", "full"];
    const long = [...full, "--template", "llama3", "--micro-batch", "4", "--seq-len", "4096"];
    expect(cli([...long, "--grad-accum", "1"]).stdout).toContain("no gradients at this peak");
    expect(cli([...long, "--grad-accum", "2"]).stdout).not.toContain("no gradients at this peak");
  });

  it("names the optimizer the step is counted with, transformers' default as the assumption says", () => {
    const full = ["plan", "--model", "meta-llama/Llama-3.2-3B", "--gpu", "h100-80g", "--method", "full"];
    expect(cli(full).stdout).toContain("optimizer adamw_torch (transformers' default before torch 2.8)");
    expect(cli([...full, "--assume", "defaultOptimFused=true"]).stdout).toContain(
      "optimizer adamw_torch_fused (transformers' default from torch 2.8)",
    );
    expect(cli([...full, "--optimizer", "adamw_8bit"]).stdout).toContain("bf16, optimizer adamw_8bit\n");
    expect(cli([...full, "--low-memory-optimizer", "badam"]).stdout).toContain(
      "optimizer BAdam over adamw_torch",
    );
  });

  it("3 for the seed case: the loading OOM is reported with its shard", () => {
    const { code, stdout } = cli(SEED);
    expect(code).toBe(3);
    expect(stdout).toContain("shard 7 of 38");
  });

  it("3 for a plan that breaks a rule, reported with its path", () => {
    const { code, stdout } = cli([
      "plan",
      "--model",
      "Qwen/Qwen2.5-7B-Instruct",
      "--gpu",
      "v100-32g",
      "--attention",
      "fa2",
      "--json",
    ]);
    expect(code).toBe(3);
    const report = JSON.parse(stdout);
    expect(report.issues.map((i: { code: string; path: string }) => [i.code, i.path])).toEqual([
      ["FA2_UNSUPPORTED_GPU", "attention"],
    ]);
  });

  it("2 for an unknown flag, a bad value, a missing required flag, an unknown model", () => {
    expect(cli(["plan", "--model", "Qwen/Qwen3-8B", "--gpu", "h100-80g", "--bogus", "1"]).code).toBe(2);
    const bad = cli(["plan", "--model", "Qwen/Qwen3-8B", "--gpu", "h100-80g", "--micro-batch", "two"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--micro-batch");
    expect(cli(["plan", "--gpu", "h100-80g"]).stderr).toContain("--model is required");
    const unknown = cli(["plan", "--model", "llama-3-8b-instruct", "--gpu", "h100-80g"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Meta-Llama-3-8B-Instruct");
  });

  it("names the flag or command an unknown one most likely meant", () => {
    const hintOf = (argv: string[]) => cli(argv).stderr;
    const base = ["plan", "--model", "Qwen/Qwen3-8B", "--gpu", "h100-80g"];
    expect(hintOf([...base, "--lora_rank", "16"])).toContain("Did you mean --lora-rank?");
    expect(hintOf([...base, "--batch-size", "4"])).toContain("Did you mean --micro-batch?");
    expect(hintOf([...base, "--cutoff_len", "4096"])).toContain("Did you mean --seq-len?");
    expect(hintOf([...base, "--lora-rnak", "16"])).toContain("Did you mean --lora-rank?");
    expect(hintOf([...base, "--frobnicate", "1"])).not.toContain("Did you mean");
    const plam = cli(["plam"]);
    expect(plam.code).toBe(2);
    expect(plam.stderr).toContain("Did you mean plan?");
  });

  it("reads --host-ram and --gpu-memory in GiB, with GiB or GB (10^9 bytes) written after the number", () => {
    const hardware = (extra: string[]) =>
      JSON.parse(cli(["plan", "--model", "Qwen/Qwen3-8B", "--gpu", "custom", ...extra, "--json"]).stdout)
        .hardware;
    expect(hardware(["--gpu-memory", "24GiB"]).gpuCapacityBytes).toBe(24 * 1024 ** 3);
    expect(hardware(["--gpu-memory", "24"]).gpuCapacityBytes).toBe(24 * 1024 ** 3);
    expect(hardware(["--gpu-memory", "80GB"]).gpuCapacityBytes).toBeCloseTo(80e9, -3);
    const bad = cli(["plan", "--model", "Qwen/Qwen3-8B", "--gpu", "h100-80g", "--host-ram", "lots"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("a number of GiB");
  });

  it("refuses a LLaMA-Factory training YAML given as --spec, pointing at doctor and import", () => {
    const r = cli([
      "plan",
      "--spec",
      "test/fixtures/llamafactory-examples/qwen3_lora_sft.yaml",
      "--gpu",
      "rtx4090",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("is a LLaMA-Factory training YAML");
    expect(r.stderr).toContain("tunefit doctor");
  });

  it("reads a switch as on|off, or as true/false, yes/no, 1/0; anything else is exit 2", () => {
    for (const [raw, want] of [
      ["on", true],
      ["TRUE", true],
      ["yes", true],
      ["1", true],
      ["off", false],
      ["false", false],
      ["No", false],
      ["0", false],
    ] as const) {
      expect(parseFlagValue("packing", raw)).toBe(want);
    }
    const bad = cli(["plan", "--model", "Qwen/Qwen3-8B", "--gpu", "h100-80g", "--packing", "maybe"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--packing "maybe": expected on|off');
    const packed = JSON.parse(
      cli(["plan", "--model", "Qwen/Qwen3-8B", "--gpu", "h100-80g", "--packing", "true", "--json"]).stdout,
    );
    expect(packed.plan.packing).toBe(true);
  });

  it("2 for a qualifier without its flag, naming the flag", () => {
    const r = cli([
      "plan",
      "--model",
      "Qwen/Qwen3-8B",
      "--gpu",
      "h100-80g",
      "--fsdp-strategy",
      "hybrid_shard",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatchInlineSnapshot(`
      "✖ fsdpStrategy only applies with sharding fsdp (got none)
        → at fsdpStrategy (--fsdp-strategy)
        Add --sharding fsdp, or drop --fsdp-strategy.
      "
    `);
  });

  it("2 for an invalid config.json, naming the file and field", () => {
    const dir = mkdtempSync(join(tmpdir(), "tunefit-bad-"));
    mkdirSync(join(dir, "broken"));
    writeFileSync(join(dir, "broken", "config.json"), "{ not json");
    expect(cli(["plan", "--model", "broken", "--gpu", "h100-80g"], dir).stderr).toContain(
      "broken/config.json is not valid JSON",
    );
    mkdirSync(join(dir, "neg"));
    writeFileSync(join(dir, "neg", "config.json"), JSON.stringify({ model_type: "llama", hidden_size: -1 }));
    const neg = cli(["plan", "--model", "neg", "--gpu", "h100-80g"], dir);
    expect(neg.code).toBe(2);
    expect(neg.stderr).toContain('"hidden_size" is -1');
  });

  it("1 for an internal fault: one line, the stack only with --debug", () => {
    const boom = () => {
      throw new Error("disk on fire");
    };
    const plain = cli(SEED, process.cwd(), { stdout: boom });
    expect(plain.code).toBe(1);
    expect(plain.stderr).toBe("tunefit: internal error: disk on fire (run with --debug for the stack)\n");
    const debug = cli([...SEED, "--debug"], process.cwd(), { stdout: boom });
    expect(debug.code).toBe(1);
    expect(debug.stderr).toContain("at ");
  });
});

describe("doctor's report for people", () => {
  it("points plan-level issues at the YAML key they were read from, and hardware ones at doctor's flags", () => {
    const yaml = join("test", "fixtures", "doctor", "seed", "train.yaml");
    const { stdout } = cli(["doctor", yaml, "--gpu", "rtx4090", "--gpus", "8"]);
    // the YAML as the command named it, like the issues found in the files
    expect(stdout).toContain(`→ at ${yaml}:per_device_train_batch_size\n`);
    expect(stdout).not.toMatch(/→ at train\.yaml:/);
    expect(stdout).not.toMatch(/→ at \w+ \(--/);
    // plan keeps the plan's field and flag
    const plan = cli([...SEED, "--micro-batch", "1"]);
    expect(plan.stdout).toContain("→ at microBatch (--micro-batch)");
  });
});

describe("catalog commands", () => {
  it("--version prints the package version", () => {
    expect(cli(["--version"]).stdout).toBe(`${VERSION}\n`);
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    expect(VERSION).toBe(pkg.version);
  });

  it("models --json lists every catalog model with computed counts", () => {
    const models = JSON.parse(cli(["models", "--json"]).stdout);
    expect(models).toHaveLength(listCatalogModels().length);
    expect(models.find((m: { id: string }) => m.id === "deepseek-ai/DeepSeek-V3").params).toEqual({
      total: 671_026_419_200,
      active: 37_552_297_472,
    });
  });

  it("gpus --json lists at least the contract's GPU ids", () => {
    const ids = JSON.parse(cli(["gpus", "--json"]).stdout).map((g: { id: string }) => g.id);
    for (const id of "rtx3090 rtx4090 a10g l4 l40s a6000 a100-40g a100-80g h100-80g h200 v100-16g v100-32g t4".split(
      " ",
    )) {
      expect(ids).toContain(id);
    }
  });

  it("has help for every command", () => {
    for (const c of [["--help"], ["plan", "--help"], ["models", "--help"], ["gpus", "--help"]]) {
      const r = cli(c);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("Usage: tunefit");
    }
    expect(cli(["plan", "--help"]).stdout).toContain("--lora-rank");
    expect(cli(["frobnicate"]).code).toBe(2);
  });
});

describe("the built CLI", () => {
  it("runs as a binary with the contract's exit codes", () => {
    const bin = new URL("../../dist/cli.js", import.meta.url).pathname;
    const ok = spawnSync(process.execPath, [bin, "--version"], { encoding: "utf8" });
    expect(ok.status).toBe(0);
    expect(ok.stdout.trim()).toBe(VERSION);
    const usage = spawnSync(process.execPath, [bin, "plan", "--gpu", "nope"], { encoding: "utf8" });
    expect(usage.status).toBe(2);
    expect(usage.stderr).not.toContain("    at ");
  });
});

describe("plan --recommend and --max", () => {
  it("lists plans that fit with the flags that reproduce them, in the contract's shape", () => {
    const { code, stdout } = cli([...SEED, "--recommend", "--json"]);
    expect(code).toBe(3);
    const report = JSON.parse(stdout);
    expect(report.recommendations.length).toBeGreaterThan(0);
    for (const r of report.recommendations) {
      expect(Object.keys(r).sort()).toEqual([
        "args",
        "deviceBytes",
        "fits",
        "hostRamBytes",
        "stepSeconds",
        "summary",
      ]);
      expect(r.fits).toBe(true);
      expect(r.args.slice(0, 4)).toEqual(["--model", "Qwen/Qwen2-VL-72B-Instruct", "--gpu", "rtx4090"]);
    }
    expect(report.recommendationSearch.evaluated).toBeGreaterThan(100);
  });

  it("prints the largest micro-batch that fits", () => {
    const { code, stdout } = cli([
      "plan",
      "--model",
      "Qwen/Qwen2.5-7B-Instruct",
      "--gpu",
      "a100-80g",
      "--max",
      "micro-batch",
      "--json",
    ]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout).max.microBatch).toBeGreaterThan(1);
    expect(
      cli(["plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "a100-80g", "--max", "batch"]).code,
    ).toBe(2);
  });

  it("colours the bar only when asked (a TTY without NO_COLOR)", () => {
    const plain = cli(["plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "a100-80g"]);
    expect(plain.stdout).not.toContain("\u001b[");
    const coloured = cli(
      ["plan", "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "a100-80g"],
      process.cwd(),
      { color: true },
    );
    expect(coloured.stdout).toContain("\u001b[");
  });
});

describe("tunefit schema", () => {
  it("prints the plan file's JSON Schema, which describes every plan field", () => {
    const { code, stdout } = cli(["schema", "plan"]);
    expect(code).toBe(0);
    const schema = JSON.parse(stdout);
    expect(schema.$schema).toContain("2020-12");
    expect(schema.required).toEqual(["model", "gpu"]);
    expect(schema.additionalProperties).toBe(false);
    expect(Object.keys(schema.properties)).toContain("loraRank");
    expect(schema.properties.loraRank.description).toBe("default 8");
  });

  it("prints LLaMA-Factory's training YAML schema: all 347 accepted keys, described, unknown keys refused", () => {
    const { code, stdout } = cli(["schema", "llamafactory"]);
    expect(code).toBe(0);
    const schema = JSON.parse(stdout);
    expect(Object.keys(schema.properties)).toHaveLength(347);
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties.finetuning_type.enum).toEqual(
      expect.arrayContaining(["lora", "freeze", "full"]),
    );
    expect(schema.properties.learning_rate.description).toMatch(/learning rate/i);
  });

  it("prints the DeepSpeed and accelerate schemas with the keys tunefit emits", () => {
    const ds = JSON.parse(cli(["schema", "deepspeed"]).stdout);
    expect(Object.keys(ds.properties)).toEqual(
      expect.arrayContaining(["train_batch_size", "zero_optimization", "bf16", "fp16", "gradient_clipping"]),
    );
    const acc = JSON.parse(cli(["schema", "accelerate"]).stdout);
    expect(Object.keys(acc.properties)).toEqual(
      expect.arrayContaining(["distributed_type", "fsdp_config", "mixed_precision", "num_processes"]),
    );
  });

  it("refuses targets it does not have", () => {
    expect(cli(["schema", "kubernetes"]).code).toBe(2);
    expect(cli(["schema"]).code).toBe(2);
  });
});

describe("arguments, the same rules for every command", () => {
  const issue = (argv: string[]) => {
    const { code, stdout } = cli([...argv, "--json"]);
    return { code, issue: JSON.parse(stdout).issues[0] };
  };

  it("a command that takes none refuses one, naming it", () => {
    for (const argv of [
      ["plan", "extra"],
      ["models", "extra"],
      ["gpus", "extra"],
    ]) {
      const { code, issue: i } = issue(argv);
      expect(code).toBe(2);
      expect(i).toMatchObject({ code: "ARGUMENT_UNEXPECTED", path: "extra" });
      expect(i.hint).toContain(`tunefit ${argv[0]} --help`);
    }
  });

  it("a missing (or empty) required argument has its command's code, before any other check", () => {
    expect(issue(["import"]).issue).toMatchObject({ code: "TRAIN_YAML_MISSING", path: "TRAIN_YAML" });
    expect(issue(["doctor"]).issue).toMatchObject({ code: "TRAIN_YAML_MISSING", path: "TRAIN_YAML" });
    expect(issue(["init", ""]).issue).toMatchObject({ code: "DIR_MISSING", path: "DIR" });
    expect(issue(["schema"]).issue).toMatchObject({ code: "SCHEMA_UNKNOWN", path: "schema" });
  });

  it("one argument more than a command takes is refused; doctor's key=value overrides are not", () => {
    expect(issue(["schema", "plan", "deepspeed"]).issue).toMatchObject({
      code: "ARGUMENT_UNEXPECTED",
      path: "deepspeed",
    });
    expect(issue(["init", "a", "b"]).issue.path).toBe("b");
    // doctor reads on to its file: the override is taken, and the missing file is what is reported
    expect(issue(["doctor", "missing.yaml", "cutoff_len=1024", "--gpu", "h100-80g"]).issue).toMatchObject({
      code: "FILE_UNREADABLE",
      path: "TRAIN_YAML",
    });
  });

  it("--help answers before the arguments are checked", () => {
    for (const command of ["plan", "emit", "doctor", "import", "init", "models", "gpus", "schema"]) {
      const { code, stdout } = cli([command, "--help"]);
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`^Usage: tunefit ${command}`));
    }
  });
});

describe("hints that lead somewhere", () => {
  const PLAN = ["--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "rtx4090"];
  it("a flag of another command names that command; doctor's plan flags name their YAML key", () => {
    const emit = cli(["emit", ...PLAN, "--recommend"]);
    expect(emit.code).toBe(2);
    expect(emit.stderr + emit.stdout).toContain("--recommend is a flag of tunefit plan");
    const doctor = cli(["doctor", "train.yaml", "--gpu", "a100-80g", "--method", "qlora"]);
    expect(doctor.code).toBe(2);
    expect(doctor.stderr + doctor.stdout).toContain("override finetuning_type after the file");
    const dora = cli(["plan", ...PLAN, "--method", "dora"]);
    expect(dora.stderr + dora.stdout).toContain("--method lora --use-dora true");
  });

  it("--max micro-batch at the plan's own micro-batch says nothing about the accumulation", () => {
    const r = cli(["plan", ...PLAN, "--max", "micro-batch"]);
    expect(r.stdout).toMatch(/Largest micro-batch that fits: 1\n/);
    expect(r.stdout).not.toContain("--grad-accum to keep the global batch");
  });
});
