import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DEFAULT_ASSUMPTIONS, parseAssumptions } from "../../src/memory/assumptions.ts";
import { cli, useTempDirs } from "../support/cli.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const BASE = ["--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "rtx4090"];
const tempDir = useTempDirs("tunefit-assume-");

function planJson(extra: readonly string[]) {
  const r = cli(["plan", ...BASE, ...extra, "--json"]);
  return { ...r, json: JSON.parse(r.stdout) };
}

describe("parseAssumptions", () => {
  it("reads numbers, sizes with units for the …Bytes fields, and switches", () => {
    expect(
      parseAssumptions([
        "cudaContextBytes=1.5GiB",
        "cudaKernelBytes=870MiB",
        "defaultShardBytes=5E9",
        "hostBytesPerProcess=3GiB",
        "fragmentationOfTransient=0.25",
        "accelerateFsdp2CastsFrozenToFp32=off",
        "transformersExpertsAsLinear=true",
      ]),
    ).toEqual({
      cudaContextBytes: 1.5 * GiB,
      cudaKernelBytes: 870 * MiB,
      defaultShardBytes: 5e9,
      hostBytesPerProcess: 3 * GiB,
      fragmentationOfTransient: 0.25,
      accelerateFsdp2CastsFrozenToFp32: false,
      transformersExpertsAsLinear: true,
    });
  });

  it("has every assumption documented in docs/memory-model.md's table", () => {
    const doc = readFileSync(join("docs", "memory-model.md"), "utf8");
    for (const name of Object.keys(DEFAULT_ASSUMPTIONS)) expect(doc, name).toContain(`| \`${name}\` `);
  });

  it("refuses unknown names and values of the wrong kind, naming the entry", () => {
    for (const [entry, pattern] of [
      ["cudaContext=1GiB", /no memory-model assumption is called "cudaContext"/],
      ["cudaContextBytes", /expected a number from 0 to 1e15 of bytes/],
      ["cudaContextBytes=-1", /expected a number from 0 to 1e15/],
      ["cudaContextBytes=1 parsec", /expected a number from 0 to 1e15/],
      ["cudaContextBytes=1e400", /expected a number from 0 to 1e15/],
      ["fragmentationOfTransient=1GiB", /expected a number from 0 to 1e15$/],
      ["nf4BytesPerParam=1GiB", /expected a number from 0 to 1e15$/],
      ["accelerateFsdp2CastsFrozenToFp32=yes", /is a switch/],
    ] as const) {
      expect(() => parseAssumptions([entry]), entry).toThrow(pattern);
    }
    expect(() => parseAssumptions(["ncclBytes=1GiB", "ncclBytes=2GiB"])).toThrow(/ncclBytes is given twice/);
  });
});

/** doctor's JSON for the train.yaml (and DeepSpeed config) in a folder, on 4 GPUs of the given kind */
const doctorOn = (d: string, gpu = "a100-80g") =>
  JSON.parse(
    cli(["doctor", join(d, "train.yaml"), "--gpu", gpu, "--gpus", "4", "--launch-dir", d, "--json"]).stdout,
  );

describe("--assume", () => {
  it("changes the prediction and is echoed in plan --json", () => {
    const base = planJson([]);
    const r = planJson(["--assume", "cudaContextBytes=1GiB", "--assume", "fragmentationOfTransient=0"]);
    expect(r.code).toBe(base.code);
    expect(base.json.assumptions).toBeUndefined();
    expect(r.json.assumptions).toEqual({ cudaContextBytes: GiB, fragmentationOfTransient: 0 });
    const b = r.json.memory.train.perGpu.breakdown;
    expect(b.runtime).toBe(GiB + DEFAULT_ASSUMPTIONS.cudaKernelBytes);
    expect(b.fragmentation).toBe(0);
    expect(r.json.memory.train.perGpu.allocatedBytes).toBe(base.json.memory.train.perGpu.allocatedBytes);
  });

  it("is listed in the human report", () => {
    const r = cli(["plan", ...BASE, "--assume", "cudaContextBytes=1GiB"]);
    expect(r.stdout).toMatch(
      /^Assumed {3}cudaContextBytes=1073741824 \(memory model overrides, --assume\)$/m,
    );
  });

  it("keeps the overrides in every recommended command", () => {
    const r = planJson(["--recommend", "--assume", "cudaContextBytes=1GiB"]);
    expect(r.json.recommendations.length).toBeGreaterThan(0);
    for (const x of r.json.recommendations)
      expect(x.args.slice(-2)).toEqual(["--assume", "cudaContextBytes=1073741824"]);
  });

  it("exits 2 at --assume for an unknown name, listing the names", () => {
    const r = cli(["plan", ...BASE, "--assume", "contextBytes=1GiB"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no memory-model assumption is called "contextBytes"/);
    expect(r.stderr).toMatch(/→ at --assume/);
    expect(r.stderr).toMatch(/cudaContextBytes, cudaKernelBytes/);
  });

  it("can turn a fitting plan into one that does not fit (exit 3)", () => {
    expect(cli(["plan", ...BASE]).code).toBe(0);
    expect(cli(["plan", ...BASE, "--assume", "cudaContextBytes=20GiB"]).code).toBe(3);
  });

  it("reaches emit's README, doctor's verdict and init's plan.ts", () => {
    const out = join(tempDir(), "bundle");
    expect(cli(["emit", ...BASE, "--assume", "cudaContextBytes=1GiB", "--out", out]).code).toBe(0);
    expect(readFileSync(join(out, "README.md"), "utf8")).toContain(
      "These figures use overridden assumptions: `cudaContextBytes=1073741824`.",
    );

    const yaml = join("test", "fixtures", "doctor", "healthy-zero3", "train.yaml");
    const args = ["doctor", yaml, "--gpu", "rtx4090", "--gpus", "4", "--json"];
    const plain = JSON.parse(cli(args).stdout);
    const assumed = JSON.parse(cli([...args, "--assume", "cudaContextBytes=2GiB"]).stdout);
    expect(assumed.memory.train.perGpu.deviceBytes - plain.memory.train.perGpu.deviceBytes).toBe(
      2 * GiB - DEFAULT_ASSUMPTIONS.cudaContextBytes,
    );

    const project = join(tempDir(), "proj");
    expect(cli(["init", project, ...BASE, "--assume", "cudaContextBytes=1GiB"]).code).toBe(0);
    const planTs = readFileSync(join(project, "plan.ts"), "utf8");
    expect(planTs).toMatch(/^const assumptions = \{\n {2}"cudaContextBytes": 1073741824\n\};$/m);
    expect(planTs).toContain("plan.analyze({ cwd: here, assumptions });");
    expect(readFileSync(join(project, "README.md"), "utf8")).toContain(
      "--assume cudaContextBytes=1073741824",
    );
  });

  it("keeps the overrides in doctor's fix commands, and in --max's search", () => {
    const seed = join("test", "fixtures", "doctor", "seed", "train.yaml");
    const args = ["doctor", seed, "--gpu", "rtx4090", "--gpus", "8", "--json", "--assume", "ncclBytes=1GiB"];
    const r = JSON.parse(cli(args).stdout);
    expect(r.doctor.fix.args.slice(-2)).toEqual(["--assume", `ncclBytes=${GiB}`]);
    const max = (extra: readonly string[]) =>
      planJson(["--max", "micro-batch", ...extra]).json.max.microBatch;
    expect(max(["--assume", "cudaContextBytes=8GiB"])).toBeLessThan(max([]));
  });

  it("writes the ZeRO-3 reuse distance it assumes into deepspeed.json, and doctor reads a config's own", () => {
    const z3 = [
      "--model",
      "Qwen/Qwen2.5-7B-Instruct",
      "--gpu",
      "a100-80g",
      "--gpus",
      "4",
      "--sharding",
      "zero3",
    ];
    const out = join(tempDir(), "bundle");
    expect(cli(["emit", ...z3, "--assume", "zero3MaxReuseDistance=0", "--out", out]).code).toBe(0);
    const ds = JSON.parse(readFileSync(join(out, "deepspeed.json"), "utf8"));
    expect(ds.zero_optimization.stage3_max_reuse_distance).toBe(0);

    const dir = tempDir();
    const yaml = readFileSync(join("test", "fixtures", "doctor", "healthy-zero3", "train.yaml"), "utf8");
    const config = JSON.parse(
      readFileSync(join("test", "fixtures", "doctor", "healthy-zero3", "ds_z3_config.json"), "utf8"),
    );
    writeFileSync(join(dir, "train.yaml"), yaml);
    writeFileSync(
      join(dir, "ds_z3_config.json"),
      JSON.stringify({
        ...config,
        zero_optimization: { ...config.zero_optimization, stage3_max_reuse_distance: 0 },
      }),
    );
    const doctor = (d: string) => doctorOn(d, "rtx4090");
    expect(doctor(dir).assumptions).toEqual({ zero3MaxReuseDistance: 0 });
    expect(doctor(join("test", "fixtures", "doctor", "healthy-zero3")).assumptions).toBeUndefined();

    // doctor --fix writes the same reuse distance into the deepspeed.json of its fix
    const fixed = join(tempDir(), "fixed");
    const seed = join("test", "fixtures", "doctor", "seed", "train.yaml");
    const fixArgs = ["doctor", seed, "--gpu", "rtx4090", "--gpus", "8", "--fix", "--out", fixed];
    cli([...fixArgs, "--assume", "zero3MaxReuseDistance=0"]);
    const written = JSON.parse(readFileSync(join(fixed, "deepspeed.json"), "utf8"));
    expect(written.zero_optimization.stage3_max_reuse_distance).toBe(0);
  });

  it("sizes ZeRO-3's buckets as the config does: DeepSpeed's defaults where it leaves them out", () => {
    const dir = tempDir();
    const fixture = join("test", "fixtures", "doctor", "healthy-zero3");
    const config = JSON.parse(readFileSync(join(fixture, "ds_z3_config.json"), "utf8"));
    // what accelerate's DeepSpeed plugin passes without a config file: no bucket sizes, no overlap_comm
    const { reduce_bucket_size, stage3_prefetch_bucket_size, overlap_comm, ...rest } =
      config.zero_optimization;
    expect([reduce_bucket_size, stage3_prefetch_bucket_size, overlap_comm]).toEqual(["auto", "auto", false]);
    writeFileSync(join(dir, "train.yaml"), readFileSync(join(fixture, "train.yaml"), "utf8"));
    writeFileSync(join(dir, "ds_z3_config.json"), JSON.stringify({ ...config, zero_optimization: rest }));

    const bare = doctorOn(dir);
    expect(bare.assumptions).toEqual({
      zero3ReduceBucketElements: 5e8,
      zero3PrefetchBucketElements: 5e7,
      zeroOverlapComm: true,
    });
    // the IPG buffer at 5e8 elements, in bf16, replaces hidden²; the prefetch bucket is a quota per module hook,
    // not a buffer (what it gathers is bounded by stage3_max_live_parameters, which both configs leave at 1e9)
    const auto = doctorOn(fixture);
    const h = 3_584; // Qwen2.5-7B's hidden size
    const delta = bare.memory.train.perGpu.breakdown.buffers - auto.memory.train.perGpu.breakdown.buffers;
    expect(delta).toBeCloseTo((5e8 - h * h) * 2, -1);
    expect(bare.memory.train.perGpu.breakdown.weights).toBe(auto.memory.train.perGpu.breakdown.weights);

    // and an emitted deepspeed.json writes what it assumes
    const out = join(tempDir(), "bundle");
    const args = ["--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "a100-80g", "--gpus", "4"];
    const assume = [
      "--assume",
      "zero3ReduceBucketElements=5e8",
      "--assume",
      "zero3PrefetchBucketElements=5e7",
    ];
    expect(cli(["emit", ...args, "--sharding", "zero3", ...assume, "--out", out]).code).toBe(0);
    const ds = JSON.parse(readFileSync(join(out, "deepspeed.json"), "utf8"));
    expect(ds.zero_optimization.reduce_bucket_size).toBe(500000000);
    expect(ds.zero_optimization.stage3_prefetch_bucket_size).toBe(50000000);
    expect(ds.zero_optimization.stage3_max_live_parameters).toBe(1000000000);
  });

  it("reads stage3_max_live_parameters from the config: the prefetch keeps that many elements gathered", () => {
    const dir = tempDir();
    const fixture = join("test", "fixtures", "doctor", "healthy-zero3");
    const config = JSON.parse(readFileSync(join(fixture, "ds_z3_config.json"), "utf8"));
    expect(config.zero_optimization.stage3_max_live_parameters).toBe(1e9);
    writeFileSync(join(dir, "train.yaml"), readFileSync(join(fixture, "train.yaml"), "utf8"));
    // Qwen2.5-7B: at the loss, the bound plus an MLP weight stays above lm_head (152,064 × 3,584) for both values
    const live = 6e8;
    writeFileSync(
      join(dir, "ds_z3_config.json"),
      JSON.stringify({
        ...config,
        zero_optimization: { ...config.zero_optimization, stage3_max_live_parameters: live },
      }),
    );

    const fewer = doctorOn(dir);
    expect(fewer.assumptions).toEqual({ zero3MaxLiveParameters: live });
    const weights = (d: { memory: { train: { perGpu: { breakdown: { weights: number } } } } }) =>
      d.memory.train.perGpu.breakdown.weights;
    expect(weights(doctorOn(fixture)) - weights(fewer)).toBeCloseTo((1e9 - live) * 2, -1);

    // an explicit stage3_prefetch_bucket_size of 0 turns the prefetch off (not "auto")
    writeFileSync(
      join(dir, "ds_z3_config.json"),
      JSON.stringify({
        ...config,
        zero_optimization: { ...config.zero_optimization, stage3_prefetch_bucket_size: 0 },
      }),
    );
    expect(doctorOn(dir).assumptions).toEqual({ zero3MaxLiveParameters: 0 });
  });
});
