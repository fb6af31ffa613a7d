import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { doctor as doctorFn } from "../../src/doctor/doctor.ts";
import { parseOmegaConfYaml } from "../../src/doctor/read.ts";
import { setupToPlan } from "../../src/doctor/to-plan.ts";
import type { TunefitError } from "../../src/errors.ts";
import { checkTrainYaml } from "../../src/schema/targets/index.ts";
import { cli as runCli, useTempDirs } from "../support/cli.ts";

const tempDir = useTempDirs("tunefit-doctor-");

const FIXTURES = join(import.meta.dirname, "../fixtures/doctor");
const cli = (argv: string[], cwd = FIXTURES) => runCli(argv, cwd);

interface DoctorJson {
  issues: { code: string; severity: string; path: string }[];
  plan: Record<string, unknown>;
  memory: { load: { fits: boolean; oomAtShard?: { index: number; of: number } }; train: { fits: boolean } };
  doctor: {
    verdict: string[];
    unmodelledKeys: string[];
    fix: {
      changes: { kind: string; target: string; text: string }[];
      launcher: string;
      args: string[];
    } | null;
    alternatives: { changes: { text: string }[] }[];
    byHand: string[];
  };
}
/** A Qwen2.5-7B YAML with these keys, read for one H100 without DeepSpeed or accelerate. */
const qwenSetup = (y: Record<string, unknown>) =>
  setupToPlan(
    { model_name_or_path: "Qwen/Qwen2.5-7B", ...y },
    { kind: "none" },
    null,
    { gpu: "h100" },
    undefined,
  );

const doctorJson = (argv: string[], cwd?: string) => {
  const r = cli([...argv, "--json"], cwd);
  return { code: r.code, json: JSON.parse(r.stdout) as DoctorJson };
};

describe("tunefit doctor: verdicts and fixes", () => {
  it("the seed: every rank loads a full replica and runs out in shard 7 of 38; full training cannot fit; the fix is LoRA/QLoRA with sharding", () => {
    const { code, json } = doctorJson(["doctor", "seed/train.yaml", "--gpu", "rtx4090", "--gpus", "8"]);
    expect(code).toBe(3);
    expect(json.doctor.verdict[0]).toMatch(
      /every rank loads a full 146\.8 GB \(136\.7 GiB\) replica onto a 24\.0 GiB card: out of memory after about 17 % of the weights \(shard 7 of 38\)/,
    );
    expect(json.issues.map((i) => i.code)).toEqual(expect.arrayContaining(["LOAD_REPLICA_OOM", "TRAIN_OOM"]));
    const fix = json.doctor.fix;
    expect(fix).not.toBeNull();
    // full fine-tuning stays out of reach: every fix trains adapters
    for (const f of [fix, ...json.doctor.alternatives]) {
      expect(f?.changes.map((c) => c.text)).toContain("finetuning_type: lora");
    }
    // with RAM-efficient FSDP or ZeRO-3 (never QLoRA under ZeRO-3, which loads the whole 4-bit model per card)
    expect(
      fix?.changes.some((c) => c.target === "accelerate_fsdp.yaml" || c.target === "deepspeed.json"),
    ).toBe(true);
    for (const f of [fix, ...json.doctor.alternatives]) {
      const texts = f?.changes.map((c) => c.text).join(" ") ?? "";
      expect(texts.includes("quantization_bit: 4") && texts.includes("ZeRO-3")).toBe(false);
    }
    expect(json.doctor.unmodelledKeys).toEqual(
      expect.arrayContaining(["output_dir", "learning_rate", "warmup_ratio", "stage"]),
    );
  });

  it("counts mllm_demo's one image per sample, or the images --images-per-sample gives", () => {
    const run = (...extra: string[]) =>
      doctorJson(["doctor", "seed/train.yaml", "--gpu", "h200", "--gpus", "8", ...extra]).json as unknown as {
        issues: { code: string; path: string }[];
        batch: { imagesPerSample?: number; imageTokens?: number };
      };
    const demo = run();
    expect(demo.issues).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: "IMAGES_ASSUMED", path: "seed/train.yaml:dataset" }),
      ]),
    );
    // image_max_pixels 262144 over 14-px patches merged 2 × 2: 1,337 patches, 334 tokens
    expect(demo.batch).toMatchObject({ imagesPerSample: 1, imageTokens: 334 });
    const none = run("--images-per-sample", "0");
    expect(none.batch.imagesPerSample).toBeUndefined();
    expect(none.issues.map((i) => i.code)).not.toContain("IMAGES_ASSUMED");
    expect(run("--images-per-sample", "3").batch.imagesPerSample).toBe(3);
    expect(cli(["doctor", "seed/train.yaml", "--gpu", "h200", "--images-per-sample", "two"]).code).toBe(2);
  });

  it("mends a text template for mllm_demo's images with the model's own, and stops on a text-only model", () => {
    const dir = tempDir();
    const base =
      "stage: sft\ndo_train: true\nfinetuning_type: lora\ndataset: mllm_demo\noutput_dir: saves/x\nbf16: true\n";
    writeFileSync(
      join(dir, "vl.yaml"),
      `model_name_or_path: Qwen/Qwen3-VL-4B-Instruct\ntemplate: qwen3\n${base}`,
    );
    const vl = doctorJson(["doctor", "vl.yaml", "--gpu", "a100-80g"], dir).json as unknown as DoctorJson & {
      issues: { code: string; path: string }[];
    };
    expect(vl.issues).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: "TEMPLATE_NOT_MULTIMODAL", path: "vl.yaml:template" }),
      ]),
    );
    expect(vl.doctor.fix?.changes.map((c) => c.text)).toEqual([
      "template: qwen3_vl_nothink (the model's template, with its multimodal plugin)",
    ]);
    writeFileSync(join(dir, "text.yaml"), `model_name_or_path: Qwen/Qwen3-8B\ntemplate: qwen3\n${base}`);
    const text = doctorJson(["doctor", "text.yaml", "--gpu", "a100-80g"], dir).json as unknown as {
      issues: { code: string; severity: string }[];
      batch: { imagesPerSample?: number };
    };
    expect(text.issues).toEqual(
      expect.arrayContaining([expect.objectContaining({ code: "IMAGES_ON_TEXT_MODEL", severity: "error" })]),
    );
    expect(text.batch.imagesPerSample).toBeUndefined();
  });

  it("counts mllm_video_demo's videos at video_maxlen frames for the Qwen2-VL family, and says where it cannot", () => {
    const dir = tempDir();
    const base =
      "stage: sft\ndo_train: true\nfinetuning_type: lora\ndataset: mllm_video_demo\noutput_dir: saves/x\nbf16: true\n";
    type Out = {
      issues: { code: string; path: string; severity: string }[];
      batch: { videosPerSample?: number; videoTokens?: number };
      plan: { videoFrames: number; videoMaxPixels: number };
    };
    const run = (yaml: string, ...flags: string[]) => {
      writeFileSync(join(dir, "video.yaml"), yaml);
      return doctorJson(["doctor", "video.yaml", "--gpu", "a100-80g", ...flags], dir).json as unknown as Out;
    };
    // one video per sample, at LLaMA-Factory's video_maxlen (128): 64 frame pairs of 256 patches, 64 tokens each
    const demo = run(`model_name_or_path: Qwen/Qwen3-VL-4B-Instruct\n${base}`);
    expect(demo.issues).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: "VIDEOS_ASSUMED", path: "video.yaml:dataset", severity: "info" }),
        // 4,096 video tokens would not fit LLaMA-Factory's default cutoff_len of 2,048, if the demo's clips gave
        // 128 frames: a warning, as their length is assumed
        expect.objectContaining({ code: "VIDEO_TOKENS_BEYOND_CUTOFF", severity: "warning" }),
      ]),
    );
    expect(demo.batch).toMatchObject({ videosPerSample: 1, videoTokens: 64 * 64 });
    // the YAML's video_maxlen and video_max_pixels are the plan's frames and frame size
    const short = run(
      `model_name_or_path: Qwen/Qwen3-VL-4B-Instruct\nvideo_maxlen: 16\nvideo_max_pixels: 16384\n${base}`,
      "--videos-per-sample",
      "2",
    );
    expect(short.plan).toMatchObject({ videoFrames: 16, videoMaxPixels: 16384 });
    expect(short.batch).toMatchObject({ videosPerSample: 2, videoTokens: 8 * 16 });
    expect(short.issues.map((i) => i.code)).not.toContain("VIDEOS_ASSUMED");
    // a model whose template takes videos but whose videos tunefit does not plan: the figures are a floor
    const minicpm = run(`model_name_or_path: openbmb/MiniCPM-V-2_6\n${base}`);
    expect(minicpm.issues).toEqual(
      expect.arrayContaining([expect.objectContaining({ code: "VIDEOS_NOT_COUNTED", severity: "warning" })]),
    );
    expect(minicpm.batch.videosPerSample).toBeUndefined();
    // Gemma 3's template has no video token, and a text-only model's none at all: LLaMA-Factory stops
    const gemma = run(`model_name_or_path: google/gemma-3-4b-it\n${base}`);
    expect(gemma.issues).toEqual(
      expect.arrayContaining([expect.objectContaining({ code: "VIDEOS_NOT_SUPPORTED", severity: "error" })]),
    );
    const text = run(`model_name_or_path: Qwen/Qwen3-8B\n${base}`);
    expect(text.issues).toEqual(
      expect.arrayContaining([expect.objectContaining({ code: "VIDEOS_ON_TEXT_MODEL", severity: "error" })]),
    );
    // stated videos on the text-only model, or a 0 on the video demo: LLaMA-Factory still stops on them
    for (const n of ["1", "0"]) {
      const stated = doctorJson(["doctor", "video.yaml", "--gpu", "h200", "--videos-per-sample", n], dir);
      expect(stated.code).toBe(3);
      expect((stated.json as unknown as Out).issues.map((i) => i.code)).toContain("VIDEOS_ON_TEXT_MODEL");
    }
    // on a model whose template takes videos but which tunefit plans none for, stated videos are a floor too
    const mini = run(
      `model_name_or_path: openbmb/MiniCPM-V-2_6\ntemplate: minicpm_v\n${base}`,
      "--videos-per-sample",
      "2",
    );
    expect(mini.issues.map((i) => i.code)).toContain("VIDEOS_NOT_COUNTED");
    // Qwen2-VL with a multimodal template that has no video token stops too
    const wrong = run(`model_name_or_path: Qwen/Qwen2-VL-7B-Instruct\ntemplate: gemma3\n${base}`);
    expect(wrong.issues).toEqual(
      expect.arrayContaining([expect.objectContaining({ code: "VIDEOS_NOT_SUPPORTED", severity: "error" })]),
    );
    expect(cli(["doctor", "video.yaml", "--gpu", "h200", "--videos-per-sample", "-1"], dir).code).toBe(2);
  });

  it("counts the video keys as modelled only where the plan has videos", () => {
    const dir = tempDir();
    const keys = (dataset: string) => {
      writeFileSync(
        join(dir, "train.yaml"),
        `model_name_or_path: Qwen/Qwen2-VL-7B-Instruct\nfinetuning_type: lora\ndataset: ${dataset}\nvideo_maxlen: 16\nvideo_max_pixels: 16384\nbf16: true\n`,
      );
      const json = doctorJson(["doctor", "train.yaml", "--gpu", "h100-80g"], dir).json as unknown as {
        doctor: { modelledKeys: string[]; unmodelledKeys: string[] };
      };
      return json.doctor;
    };
    expect(keys("mllm_video_demo").modelledKeys).toEqual(
      expect.arrayContaining(["video_maxlen", "video_max_pixels"]),
    );
    expect(keys("identity").unmodelledKeys).toEqual(
      expect.arrayContaining(["video_maxlen", "video_max_pixels"]),
    );
  });

  it("stops on a pixel budget under LLaMA-Factory's minimum whatever the dataset, and leaves it to the user", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "train.yaml"),
      "model_name_or_path: Qwen/Qwen2-VL-7B-Instruct\nfinetuning_type: lora\ndataset: identity\nvideo_max_pixels: 100\nbf16: true\n",
    );
    const r = doctorJson(["doctor", "train.yaml", "--gpu", "h100-80g"], dir);
    expect(r.code).toBe(3);
    const issues = (r.json as unknown as { issues: { code: string; path: string }[] }).issues;
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: "VIDEO_PIXELS_BELOW_MIN", path: "train.yaml:video_max_pixels" }),
      ]),
    );
    expect(r.json.doctor.fix).toBeNull();
    expect(cli(["doctor", "train.yaml", "--gpu", "h100-80g"], dir).stdout).not.toContain(
      "more or larger GPUs",
    );
  });

  it("finds a fix for an out-of-memory video demo whose assumed clips would overrun the cutoff (a warning)", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "train.yaml"),
      "model_name_or_path: Qwen/Qwen2-VL-7B-Instruct\nstage: sft\ndo_train: true\nfinetuning_type: lora\ndataset: mllm_video_demo\noutput_dir: saves/x\nbf16: true\ncutoff_len: 2048\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 8\n",
    );
    const r = doctorJson(["doctor", "train.yaml", "--gpu", "l4"], dir);
    expect(r.code).toBe(3);
    expect(r.json.doctor.fix).not.toBeNull();
  });

  it("raises cutoff_len over the sample's video tokens in every fix, and the fixed YAML doctors clean", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "train.yaml"),
      "model_name_or_path: Qwen/Qwen2-VL-7B-Instruct\nstage: sft\ndo_train: true\nfinetuning_type: full\ndataset: mllm_video_demo\noutput_dir: saves/x\nbf16: true\ncutoff_len: 2048\n",
    );
    // the videos are stated (--videos-per-sample), not assumed: 128 frames reach LLaMA-Factory's cap
    const first = doctorJson(["doctor", "train.yaml", "--gpu", "rtx4090", "--videos-per-sample", "1"], dir);
    expect(first.code).toBe(3);
    const report = first.json as unknown as DoctorJson & { issues: { code: string; path: string }[] };
    // 128 frames: 64 pairs of 83 tokens, 5,312 in all; the issue points at the key to change
    expect(report.issues).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: "VIDEO_TOKENS_BEYOND_CUTOFF", path: "seqLen" }),
      ]),
    );
    const texts = report.doctor.fix?.changes.map((c) => c.text) ?? [];
    expect(texts).toContain("cutoff_len: 6144 (room for the sample's image and video tokens)");
    cli(
      ["doctor", "train.yaml", "--gpu", "rtx4090", "--videos-per-sample", "1", "--fix", "--out", "fixed"],
      dir,
    );
    const again = doctorJson(
      ["doctor", "fixed/train.yaml", "--gpu", "rtx4090", "--videos-per-sample", "1"],
      dir,
    );
    expect(again.code).toBe(0);
  });

  it("reads the accelerate config a tunefit FSDP bundle launches with, and agrees with plan", () => {
    const dir = tempDir();
    const flags = [
      "--model",
      "Qwen/Qwen2.5-7B-Instruct",
      "--gpu",
      "h100-80g",
      "--gpus",
      "8",
      "--method",
      "full",
    ];
    expect(cli(["emit", ...flags, "--sharding", "fsdp", "--out", "bundle"], dir).code).toBe(0);
    const planned = JSON.parse(cli(["plan", ...flags, "--sharding", "fsdp", "--json"], dir).stdout) as {
      memory: { train: { perGpu: { deviceBytes: number } } };
    };
    type Out = {
      issues: { code: string; path: string }[];
      plan: { sharding: string };
      memory: { train: { perGpu: { deviceBytes: number } } };
    };
    const doctored = doctorJson(["doctor", "bundle/train.yaml", "--gpu", "h100-80g", "--gpus", "8"], dir)
      .json as unknown as Out;
    expect(doctored.plan.sharding).toBe("fsdp");
    expect(doctored.memory.train.perGpu.deviceBytes).toBe(planned.memory.train.perGpu.deviceBytes);
    expect(doctored.issues).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: "ACCELERATE_CONFIG_BESIDE", path: "bundle/accelerate_fsdp.yaml" }),
      ]),
    );
    // a torchrun launch does not read it
    const torchrun = doctorJson(
      ["doctor", "bundle/train.yaml", "--gpu", "h100-80g", "--gpus", "8", "--launcher", "torchrun"],
      dir,
    ).json as unknown as Out;
    expect(torchrun.plan.sharding).toBe("none");
    expect(torchrun.issues.map((i) => i.code)).not.toContain("ACCELERATE_CONFIG_BESIDE");
  });

  it("says what to change in the YAML's own terms, not as plan flags", () => {
    const { json } = doctorJson(["doctor", "seed/train.yaml", "--gpu", "rtx4090", "--gpus", "8"]);
    const hints = (json.issues as unknown as { hint: string }[]).map((i) => i.hint).join("\n");
    // the plan's flags that have a YAML key or config file; hardware and doctor's own flags may stay
    expect(hints).not.toMatch(
      /--(sharding|offload|method|optimizer|precision|seq-len|micro-batch|grad-accum|liger|attention|quant-bits|lora-rank)\b/,
    );
    expect(hints).toContain("finetuning_type: lora with quantization_bit: 4");
    expect(hints).toContain("a ZeRO-3 deepspeed: config or an accelerate FSDP config");
  });

  it("FSDP without RAM-efficient loading: the fix is that one accelerate setting", () => {
    const { code, json } = doctorJson([
      "doctor",
      "fsdp-replica/train.yaml",
      "--gpu",
      "a100-80g",
      "--gpus",
      "8",
      "--accelerate-config",
      "fsdp-replica/accelerate.yaml",
    ]);
    expect(code).toBe(3);
    expect(json.issues[0]).toMatchObject({ code: "FSDP_LOAD_REPLICA", severity: "error" });
    expect(json.doctor.verdict.join(" ")).toMatch(/every rank loads a full 141\.1 GB \(131\.4 GiB\) replica/);
    expect(json.doctor.fix?.changes).toEqual([
      expect.objectContaining({ kind: "file", target: "accelerate_fsdp.yaml" }),
    ]);
    expect(json.doctor.fix?.launcher).toBe("accelerate");
  });

  it("an accelerate config that starts another number of processes than the GPUs given is named", () => {
    const issues = (gpus: string) =>
      doctorJson([
        "doctor",
        "fsdp-replica/train.yaml",
        "--gpu",
        "a100-80g",
        "--gpus",
        gpus,
        "--accelerate-config",
        "fsdp-replica/accelerate.yaml",
      ]).json.issues.map((i) => i.code);
    expect(issues("4")).toContain("ACCELERATE_PROCESSES_MISMATCH"); // num_processes: 8
    expect(issues("8")).not.toContain("ACCELERATE_PROCESSES_MISMATCH");
  });

  it("FSDP1 with gradient accumulation: the fix reduces after every micro-batch and keeps full fine-tuning", () => {
    const { code, json } = doctorJson([
      "doctor",
      "fsdp-accumulation/train.yaml",
      "--gpu",
      "rtx5090",
      "--gpus",
      "8",
      "--accelerate-config",
      "fsdp-accumulation/accelerate.yaml",
    ]);
    expect(code).toBe(3);
    expect(json.issues.map((i: { code: string }) => i.code)).toEqual(
      expect.arrayContaining(["TRAIN_OOM", "FSDP_UNSHARDED_ACCUMULATION"]),
    );
    // a switch that keeps the method beats LoRA, which is as few edits but trains something else
    expect(json.doctor.fix?.changes).toEqual([
      {
        kind: "yaml",
        target: "accelerator_config",
        text: expect.stringContaining("sync_each_batch: true"),
      },
    ]);
    expect(json.doctor.fix?.args).toEqual(
      expect.arrayContaining(["--method", "full", "--sync-each-batch", "on"]),
    );
  });

  it("a DeepSpeed file that is not there: the run it names (ZeRO-3) is judged, and the fix writes that config", () => {
    // LLaMA-Factory's own example, launched from a folder without its examples/deepspeed
    const { code, json } = doctorJson([
      "doctor",
      "../llamafactory-examples/qwen3_lora_sft_ds3.yaml",
      "--gpu",
      "rtx4090",
      "--gpus",
      "2",
    ]);
    expect(code).toBe(3);
    expect(json.issues[0]).toMatchObject({ code: "DEEPSPEED_FILE_NOT_FOUND", severity: "error" });
    expect(json.doctor.fix?.changes).toEqual([
      expect.objectContaining({
        kind: "file",
        target: "deepspeed.json",
        text: expect.stringContaining("ZeRO-3"),
      }),
    ]);
    expect(json.doctor.fix?.args).toEqual(expect.arrayContaining(["--sharding", "zero3"]));
  });

  it("a fix mends the setup's own config files: a DeepSpeed config with errors is replaced, a conflicting one removed", () => {
    const dir = tempDir();
    const yaml = [
      "model_name_or_path: Qwen/Qwen2.5-7B-Instruct",
      "stage: sft",
      "do_train: true",
      "finetuning_type: lora",
      "dataset: alpaca_en_demo",
      "template: qwen",
      "per_device_train_batch_size: 2",
      "gradient_accumulation_steps: 8",
      "bf16: true",
      "output_dir: saves/x",
    ].join("\n");
    writeFileSync(
      join(dir, "ds3.json"),
      JSON.stringify({ train_micro_batch_size_per_gpu: 4, zero_optimization: { stage: 3 } }),
    );
    writeFileSync(join(dir, "mismatch.yaml"), `${yaml}\ndeepspeed: ds3.json\n`);
    writeFileSync(join(dir, "empty.yaml"), `${yaml}\ndeepspeed: {}\n`);
    writeFileSync(
      join(dir, "fsdp.yaml"),
      "distributed_type: FSDP\nnum_processes: 8\nmixed_precision: bf16\nfsdp_config:\n  fsdp_cpu_ram_efficient_loading: true\n  fsdp_sync_module_states: true\n",
    );
    const gpus = ["--gpu", "a100-80g", "--gpus", "8"];
    // the batch size written in the config contradicts the YAML's: the plan fits, so the config is what to mend
    const mismatch = doctorJson(["doctor", "mismatch.yaml", ...gpus], dir).json;
    expect(mismatch.issues[0]).toMatchObject({
      severity: "error",
      path: "ds3.json:train_micro_batch_size_per_gpu",
    });
    expect(mismatch.doctor.fix?.changes.map((c) => [c.kind, c.target])).toEqual([["file", "deepspeed.json"]]);
    // the same contradiction written inline under deepspeed: is mended the same way
    writeFileSync(
      join(dir, "inline.yaml"),
      `${yaml}\ndeepspeed: '{"train_micro_batch_size_per_gpu": 4, "zero_optimization": {"stage": 3}}'\n`,
    );
    const inline = doctorJson(["doctor", "inline.yaml", ...gpus], dir).json;
    expect(inline.issues[0]).toMatchObject({
      severity: "error",
      path: "inline.yaml:deepspeed:train_micro_batch_size_per_gpu",
    });
    expect(inline.doctor.fix?.changes.map((c) => [c.kind, c.target])).toEqual([["file", "deepspeed.json"]]);
    // ZeRO-3 without its settings: the config is dropped (or rewritten), never left as it is
    expect(
      doctorJson(["doctor", "empty.yaml", ...gpus], dir).json.doctor.fix?.changes.map((c) => c.text),
    ).toEqual(["remove deepspeed"]);
    // FSDP through accelerate with a DeepSpeed config in the YAML: one strategy, the accelerate one launched
    const both = doctorJson(
      ["doctor", "mismatch.yaml", ...gpus, "--accelerate-config", "fsdp.yaml", "--launcher", "accelerate"],
      dir,
    ).json;
    expect(both.issues.map((i) => i.code)).toContain("DEEPSPEED_WITH_FSDP");
    expect(both.doctor.fix?.changes.map((c) => c.text)).toEqual(["remove deepspeed"]);
    // an accelerate config with a value accelerate rejects is written anew, not patched
    writeFileSync(join(dir, "plain.yaml"), `${yaml}\n`);
    writeFileSync(
      join(dir, "bad.yaml"),
      "distributed_type: FSDP\nnum_processes: 8\nmixed_precision: bf16\nfsdp_config:\n  fsdp_sharding_strategy: QUARTER_SHARD\n",
    );
    const acc = ["--accelerate-config", "bad.yaml", "--launcher", "accelerate"];
    expect(doctorJson(["doctor", "plain.yaml", ...gpus, ...acc], dir).json.doctor.fix?.changes).toEqual([
      expect.objectContaining({
        kind: "file",
        target: "accelerate_fsdp.yaml",
        text: expect.stringContaining("errors above"),
      }),
    ]);
    cli(["doctor", "plain.yaml", ...gpus, ...acc, "--fix", "--out", "acc"], dir);
    expect(readFileSync(join(dir, "acc/accelerate_fsdp.yaml"), "utf8")).toContain(
      "fsdp_sharding_strategy: FULL_SHARD",
    );
    // and the files it writes run as they are
    expect(cli(["doctor", "mismatch.yaml", ...gpus, "--fix", "--out", "fixed"], dir).code).toBe(3);
    // only the contradicting batch size changes: the user's other settings stay
    expect(JSON.parse(readFileSync(join(dir, "fixed/deepspeed.json"), "utf8"))).toEqual({
      train_micro_batch_size_per_gpu: "auto",
      zero_optimization: { stage: 3 },
    });
    const again = cli(["doctor", "train.yaml", ...gpus], join(dir, "fixed"));
    expect(again.stdout).toContain("It runs as it is");
    expect(again.code).toBe(0);
  });

  it("bf16 on a V100: the fix is fp16, not more GPUs", () => {
    const { code, json } = doctorJson([
      "doctor",
      "../llamafactory-examples/qwen3_lora_sft.yaml",
      "--gpu",
      "v100-32g",
    ]);
    expect(code).toBe(3);
    expect(json.issues.map((i) => i.code)).toContain("BF16_UNSUPPORTED_GPU");
    expect(json.doctor.fix?.changes.map((c) => c.text)).toEqual([
      "remove bf16",
      "fp16: true (the GPU has no bf16)",
    ]);
  });

  it("8-bit QLoRA under ZeRO-3: the fix is 4-bit", () => {
    const { code, json } = doctorJson(
      ["doctor", "train.yaml", "--gpu", "rtx4090", "--gpus", "4"],
      join(FIXTURES, "qlora-8bit-zero3"),
    );
    expect(code).toBe(3);
    expect(json.issues[0]?.code).toBe("QLORA_8BIT_SHARDED");
    expect(json.doctor.fix?.changes.map((c) => c.text)).toEqual(["quantization_bit: 4"]);
  });

  it("pure_bf16 with ZeRO-3: the fix is to drop pure_bf16", () => {
    const { code, json } = doctorJson(
      ["doctor", "train.yaml", "--gpu", "a100-80g", "--gpus", "8"],
      join(FIXTURES, "pure-bf16-zero3"),
    );
    expect(code).toBe(3);
    expect(json.issues[0]?.code).toBe("PURE_BF16_ZERO3");
    expect(json.doctor.fix?.changes.map((c) => c.text)).toEqual(["remove pure_bf16"]);
  });

  it("a healthy ZeRO-3 LoRA run of a 7B model on 4× 24 GB: no change, exit 0", () => {
    const r = cli(
      ["doctor", "train.yaml", "--gpu", "rtx4090", "--gpus", "4"],
      join(FIXTURES, "healthy-zero3"),
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("It runs as it is");
    const { json } = doctorJson(
      ["doctor", "train.yaml", "--gpu", "rtx4090", "--gpus", "4"],
      join(FIXTURES, "healthy-zero3"),
    );
    expect(json.doctor.fix).toBeNull();
    expect(json.issues.filter((i) => i.severity === "error")).toEqual([]);
  });

  it("a misspelled key: LLaMA-Factory's own error, and the rename", () => {
    const { code, json } = doctorJson(
      ["doctor", "train.yaml", "--gpu", "rtx4090", "--gpus", "4"],
      join(FIXTURES, "misspelled"),
    );
    expect(code).toBe(3);
    expect(json.doctor.verdict[0]).toContain("Some keys are not used by the HfArgumentParser: ['lora_rnak']");
    expect(json.doctor.fix?.changes.map((c) => c.text)).toEqual(["rename lora_rnak to lora_rank"]);
  });

  it("a DeepSpeed file found only beside the YAML is the failure it will be, fixed by its path from the launch folder", () => {
    const { code, json } = doctorJson([
      "doctor",
      "healthy-zero3/train.yaml",
      "--gpu",
      "rtx4090",
      "--gpus",
      "4",
    ]);
    expect(code).toBe(3);
    expect(json.issues[0]?.code).toBe("DEEPSPEED_FILE_NOT_FOUND");
    expect(json.doctor.fix?.changes.map((c) => c.text)).toEqual([
      "deepspeed: healthy-zero3/ds_z3_config.json (the file as seen from the launch folder)",
    ]);
    // --launch-dir says where the run starts
    const from = cli([
      "doctor",
      "healthy-zero3/train.yaml",
      "--gpu",
      "rtx4090",
      "--gpus",
      "4",
      "--launch-dir",
      "healthy-zero3",
    ]);
    expect(from.code).toBe(0);
  });
});

describe("tunefit doctor: reading the setup as LLaMA-Factory does", () => {
  it("key=value overrides after the YAML are merged (OmegaConf.from_cli)", () => {
    const cwd = join(FIXTURES, "healthy-zero3");
    const { json } = doctorJson(
      [
        "doctor",
        "train.yaml",
        "per_device_train_batch_size=64",
        "cutoff_len=8192",
        "--gpu",
        "rtx4090",
        "--gpus",
        "4",
      ],
      cwd,
    );
    expect(json.issues.map((i) => i.code)).toContain("TRAIN_OOM");
  });

  it("reads image_max_pixels on a text-only model as LLaMA-Factory does: set, never used", () => {
    const yaml = {
      model_name_or_path: "Qwen/Qwen2.5-7B-Instruct",
      finetuning_type: "lora",
      bf16: true,
      image_max_pixels: 262144,
    };
    const text = setupToPlan(yaml, { kind: "none" }, null, { gpu: "a100-80g" }, undefined);
    expect(text.input.imageMaxPixels).toBeUndefined();
    expect(text.issues.map((i) => [i.code, i.severity, i.path])).toEqual([
      ["IMAGE_SETTING_UNUSED", "info", "train.yaml:image_max_pixels"],
    ]);
    // a vision-language model takes it
    const vl = setupToPlan(
      { ...yaml, model_name_or_path: "Qwen/Qwen2-VL-7B-Instruct" },
      { kind: "none" },
      null,
      { gpu: "a100-80g" },
      undefined,
    );
    expect(vl.input.imageMaxPixels).toBe(262144);
    expect(vl.issues).toEqual([]);
  });

  it("takes YAML lists where LLaMA-Factory's split_arg does (lora_target, dataset, …)", () => {
    const yaml = {
      model_name_or_path: "Qwen/Qwen2.5-7B-Instruct",
      finetuning_type: "lora",
      lora_target: ["q_proj", "v_proj"],
      additional_target: ["embed_tokens"],
      dataset: ["alpaca_en_demo", "identity"],
    };
    expect(checkTrainYaml(yaml)).toEqual([]);
    const { input } = setupToPlan(yaml, { kind: "none" }, null, { gpu: "a100-80g" }, undefined);
    expect(input).toMatchObject({
      loraTarget: ["q_proj", "v_proj"],
      additionalTarget: ["embed_tokens"],
      dataset: "alpaca_en_demo,identity",
    });
    // a list of anything but names is still refused, as split_arg would hand it on to fail later
    expect(checkTrainYaml({ ...yaml, lora_target: [1, 2] }).map((i) => i.code)).toEqual(["TARGET_BAD_VALUE"]);
  });

  it("stops where LLaMA-Factory or transformers would: a bitsandbytes width, fp16 beside bf16, tf32 before Ampere", () => {
    const stops = (y: Record<string, unknown>, gpu = "h100") =>
      setupToPlan({ model_name_or_path: "Qwen/Qwen2.5-7B", ...y }, { kind: "none" }, null, { gpu }, undefined)
        .issues.filter((i) => i.code === "LLAMAFACTORY_REJECTS" && i.severity === "error")
        .map((i) => i.path);
    expect(stops({ quantization_bit: 3 })).toEqual(["train.yaml:quantization_bit"]);
    expect(stops({ quantization_bit: 4 })).toEqual([]);
    // other methods take other widths: HQQ 1–6 or 8 bits, EETQ 8 only
    expect(stops({ quantization_bit: 3, quantization_method: "hqq" })).toEqual([]);
    expect(stops({ quantization_bit: 7, quantization_method: "hqq" })).toEqual([
      "train.yaml:quantization_bit",
    ]);
    expect(stops({ quantization_bit: 8, quantization_method: "eetq" })).toEqual([]);
    expect(stops({ quantization_bit: 4, quantization_method: "eetq" })).toEqual([
      "train.yaml:quantization_bit",
    ]);
    // a checkpoint stored quantized takes its own width: LLaMA-Factory only warns that quantization_bit does nothing
    const gptq = {
      id: "someone/Qwen2.5-7B-GPTQ",
      config: {
        model_type: "qwen2",
        hidden_size: 3584,
        intermediate_size: 18944,
        num_attention_heads: 28,
        num_hidden_layers: 28,
        num_key_value_heads: 4,
        vocab_size: 152064,
        quantization_config: { quant_method: "gptq", bits: 4 },
      },
    };
    const onStored = setupToPlan(
      { model_name_or_path: "x", quantization_bit: 3 },
      { kind: "none" },
      null,
      { gpu: "h100" },
      gptq,
    );
    expect(onStored.issues.filter((i) => i.code === "LLAMAFACTORY_REJECTS")).toEqual([]);
    // the one to drop is the one the card cannot run
    expect(stops({ bf16: true, fp16: true })).toEqual(["train.yaml:fp16"]);
    expect(stops({ bf16: true, fp16: true }, "v100-32g")).toEqual(["train.yaml:bf16"]);
    expect(stops({ tf32: true })).toEqual([]);
    expect(stops({ tf32: true, fp16: true }, "v100-32g")).toEqual(["train.yaml:tf32"]);
    // LLaMA Pro spreads the trained layers evenly: Qwen2.5-7B's 28 layers take 4 or 7 of them, not 3
    const pro = { finetuning_type: "freeze", use_llama_pro: true };
    expect(stops({ ...pro, freeze_trainable_layers: 3 })).toEqual(["train.yaml:freeze_trainable_layers"]);
    expect(stops({ ...pro, freeze_trainable_layers: 7 })).toEqual([]);
    expect(stops({ ...pro, finetuning_type: "full" })).toEqual(["train.yaml:use_llama_pro"]);
  });

  it("counts HQQ and EETQ as bitsandbytes of the next width up, says so, and keeps LLaMA-Factory's stops", () => {
    const read = (y: Record<string, unknown>, deepspeed: "none" | "zero3" = "none") => {
      const ds =
        deepspeed === "none"
          ? ({ kind: "none" } as const)
          : ({
              kind: "inline",
              config: { zero_optimization: { stage: 3 }, bf16: { enabled: "auto" } },
            } as const);
      return setupToPlan(
        { model_name_or_path: "Qwen/Qwen2.5-7B", finetuning_type: "lora", ...y },
        ds,
        null,
        { gpu: "h100", gpus: 2 },
        undefined,
      );
    };
    for (const [method, bits, counted] of [
      ["hqq", 2, 4],
      ["hqq", 4, 4],
      ["hqq", 6, 8],
      ["eetq", 8, 8],
    ] as const) {
      const { input, issues } = read({ quantization_method: method, quantization_bit: bits });
      expect(input).toMatchObject({ method: "qlora", quantBits: counted });
      expect(issues.map((i) => [i.code, i.severity, i.path])).toContainEqual([
        "QUANTIZATION_APPROXIMATED",
        "warning",
        "train.yaml:quantization_method",
      ]);
    }
    // bitsandbytes is modelled: no approximation
    expect(read({ quantization_bit: 4 }).issues.map((i) => i.code)).not.toContain(
      "QUANTIZATION_APPROXIMATED",
    );
    // model_utils/quantization.py raises for HQQ and EETQ under ZeRO-3 or FSDP
    const z3 = read({ quantization_method: "hqq", quantization_bit: 4 }, "zero3").issues.filter(
      (i) => i.code === "LLAMAFACTORY_REJECTS",
    );
    expect(z3.map((i) => [i.path, i.message])).toEqual([
      [
        "train.yaml:quantization_method",
        expect.stringContaining("HQQ quantization is incompatible with DeepSpeed ZeRO-3 or FSDP."),
      ],
    ]);
  });

  it("counts HQQ's storage: its packed weights and a 16-bit scale and zero per group of 64", () => {
    // Qwen2.5-7B: 6,525,288,448 weights in the decoder's linears, quantized; embeddings and lm_head stay 16-bit
    const weights = (method: string, bits: number) =>
      doctorFn({
        yaml: {
          model_name_or_path: "Qwen/Qwen2.5-7B",
          finetuning_type: "lora",
          quantization_method: method,
          quantization_bit: bits,
          bf16: true,
          template: "qwen",
        },
        hardware: { gpu: "h100" },
      } as never).analysis.memory.train.perGpu.breakdown.weights;
    const linears = 6_525_288_448;
    const meta = 4 / 64;
    expect(weights("hqq", 4) - weights("bnb", 4)).toBeCloseTo(linears * (0.5 + meta - 4.127 / 8), -4);
    expect(weights("hqq", 2) - weights("hqq", 4)).toBeCloseTo(linears * (0.25 - 0.5), -4);
    expect(weights("hqq", 8) - weights("bnb", 8)).toBeCloseTo(linears * meta, -4);
  });

  it("names LLaMA-Factory's HQQ stop under ZeRO-3, not bitsandbytes' 8-bit one, and shards only with bitsandbytes", () => {
    const dir = tempDir();
    writeFileSync(join(dir, "ds_z3.json"), JSON.stringify({ zero_optimization: { stage: 3 } }));
    writeFileSync(
      join(dir, "train.yaml"),
      "model_name_or_path: Qwen/Qwen2.5-32B\nfinetuning_type: lora\nquantization_bit: 8\nquantization_method: hqq\nbf16: true\ntemplate: qwen\ndeepspeed: ds_z3.json\n",
    );
    const report = JSON.parse(
      cli(["doctor", "train.yaml", "--gpu", "rtx4090", "--gpus", "2", "--json"], dir).stdout,
    ) as DoctorJson & {
      issues: { code: string; path: string; hint: string }[];
    };
    const codes = report.issues.map((i) => i.code);
    expect(codes).not.toContain("QLORA_8BIT_SHARDED");
    expect(report.issues).toContainEqual(
      expect.objectContaining({ code: "LLAMAFACTORY_REJECTS", path: "train.yaml:quantization_method" }),
    );
    // every way out that shards names bitsandbytes' 4 bits
    for (const i of report.issues)
      if (/a ZeRO-3 deepspeed: config|an accelerate FSDP config/.test(i.hint))
        expect(i.hint, i.code).toContain("quantization_method: bnb");
  });

  it("mends a 4-bit EETQ with quantization_bit: 8, and the fixed YAML doctors clean", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "train.yaml"),
      "model_name_or_path: Qwen/Qwen2.5-7B\nfinetuning_type: lora\nquantization_bit: 4\nquantization_method: eetq\nbf16: true\ntemplate: qwen\n",
    );
    const first = cli(["doctor", "train.yaml", "--gpu", "h100-80g", "--json"], dir);
    expect(first.code).toBe(3);
    const report = JSON.parse(first.stdout) as DoctorJson;
    expect(report.doctor.fix?.changes.map((c) => c.text)).toEqual(["quantization_bit: 8"]);
    cli(["doctor", "train.yaml", "--gpu", "h100-80g", "--fix", "--out", "fixed"], dir);
    const again = cli(["doctor", "fixed/train.yaml", "--gpu", "h100-80g", "--json"], dir);
    expect(again.code).toBe(0);
    expect((JSON.parse(again.stdout) as DoctorJson).issues.map((i) => i.code)).toEqual([
      "QUANTIZATION_APPROXIMATED",
    ]);
  });

  it("packs as LLaMA-Factory does: neat_packing turns packing on, and unset packing follows stage pt", () => {
    const packing = (y: Record<string, unknown>) => qwenSetup(y).input.packing ?? false;
    expect(packing({ stage: "sft" })).toBe(false);
    expect(packing({ stage: "pt" })).toBe(true);
    expect(packing({ stage: "pt", packing: false })).toBe(false);
    expect(packing({ stage: "sft", packing: false, neat_packing: true })).toBe(true);
  });

  it("warns where a switch changes memory in a way the model leaves out, and which way the figure errs", () => {
    const warn = (y: Record<string, unknown>) =>
      qwenSetup(y)
        .issues.filter((i) => i.code === "NOT_MODELLED")
        .map((i) => i.path);
    // GaLore over every linear is planned (lowMemoryOptimizer); on a few modules, its figure stays an upper bound
    expect(warn({ finetuning_type: "full", use_galore: true, use_adam_mini: false })).toEqual([]);
    expect(warn({ finetuning_type: "full", use_galore: true, galore_target: "q_proj,v_proj" })).toEqual([
      "train.yaml:use_galore",
    ]);
    expect(warn({ finetuning_type: "full", use_badam: true, badam_mode: "ratio" })).toEqual([
      "train.yaml:use_badam",
    ]);
    // Adam-mini on any method is planned; beside GaLore, which LLaMA-Factory builds first, it is unused
    expect(warn({ finetuning_type: "lora", use_adam_mini: true })).toEqual([]);
    expect(warn({ finetuning_type: "full", use_muon: true })).toEqual([]);
    expect(qwenSetup({ finetuning_type: "full", use_muon: true }).input.lowMemoryOptimizer).toBe("muon");
    expect(qwenSetup({ finetuning_type: "lora", use_adam_mini: true }).input.lowMemoryOptimizer).toBe(
      "adam_mini",
    );
    const both = qwenSetup({ finetuning_type: "full", use_galore: true, use_adam_mini: true });
    expect(both.input.lowMemoryOptimizer).toBe("galore");
    expect(both.issues.map((i) => `${i.code} ${i.path}`)).toContain(
      "OPTIMIZER_SWITCH_UNUSED train.yaml:use_adam_mini",
    );
    expect(warn({ finetuning_type: "full", use_galore: true, use_adam_mini: true })).toEqual([]);
    // LoRA+ is built before BAdam, Adam-mini and Muon: Muon is unused, and the plan is plain AdamW
    // GaLore without optim: transformers' default (adamw_torch_fused from torch 2.8) is one LLaMA-Factory rejects
    const codes = (y: Record<string, unknown>) => qwenSetup(y).issues.map((i) => `${i.code} ${i.path}`);
    expect(codes({ finetuning_type: "full", use_galore: true })).toContain(
      "OPTIM_DEFAULT_FUSED train.yaml:optim",
    );
    expect(codes({ finetuning_type: "full", use_galore: true, optim: "adamw_torch" })).toEqual([]);
    const loraplus = qwenSetup({
      finetuning_type: "lora",
      bf16: true,
      loraplus_lr_ratio: 16,
      use_muon: true,
    });
    expect(loraplus.input.lowMemoryOptimizer).toBeUndefined();
    expect(loraplus.issues.map((i) => i.code)).toEqual(["OPTIMIZER_SWITCH_UNUSED"]);
    expect(warn({ finetuning_type: "oft" })).toEqual(["train.yaml:finetuning_type"]);
    expect(warn({ stage: "dpo" })).toEqual(["train.yaml:stage"]);
    expect(warn({ stage: "pt" })).toEqual([]);
    expect(warn({ finetuning_type: "lora" })).toEqual([]);
  });

  it("a DeepSpeed top-level key DeepSpeed ignores is a warning, and no YAML edit is proposed for it", () => {
    const dir = tempDir();
    cpSync(join(FIXTURES, "healthy-zero3"), dir, { recursive: true });
    const ds = JSON.parse(readFileSync(join(dir, "ds_z3_config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(
      join(dir, "ds_z3_config.json"),
      JSON.stringify({ ...ds, comms_config: { verbose: false } }),
    );
    const { code, json } = doctorJson(["doctor", "train.yaml", "--gpu", "a100-80g", "--gpus", "4"], dir);
    expect(code).toBe(0);
    expect(json.issues.filter((i) => i.code === "TARGET_UNKNOWN_KEY")).toEqual([
      expect.objectContaining({ severity: "warning", path: "ds_z3_config.json:comms_config" }),
    ]);
    expect(json.doctor.fix).toBeNull();
  });

  it("fixes a full fine-tuning step one copy of the weights over the card with the fused AdamW", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "train.yaml"),
      "model_name_or_path: meta-llama/Llama-3.2-1B-Instruct\nfinetuning_type: full\ntemplate: llama3\ndataset: alpaca_en_demo\ncutoff_len: 1024\nbf16: true\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 8\n",
    );
    const { code, json } = doctorJson(["doctor", "train.yaml", "--gpu", "rtx4090"], dir);
    expect(code).toBe(3);
    expect(json.doctor.fix?.changes.map((c) => c.text)).toEqual([
      "optim: adamw_torch_fused (no step copy of the weights, which adamw_torch, the default before torch 2.8, makes)",
    ]);
    const out = join(dir, "fixed");
    expect(cli(["doctor", "train.yaml", "--gpu", "rtx4090", "--fix", "--out", out], dir).code).toBe(3);
    expect(parse(readFileSync(join(out, "train.yaml"), "utf8")).optim).toBe("adamw_torch_fused");
  });

  it("sets the fused AdamW only with a DeepSpeed config's own optimizer section gone, and never for GaLore", () => {
    const dir = tempDir();
    const base =
      "model_name_or_path: meta-llama/Llama-3.2-3B-Instruct\nfinetuning_type: full\ntemplate: llama3\ndataset: identity\ncutoff_len: 1024\nbf16: true\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 8\n";
    // DeepSpeed's AdamW with "torch_adam": torch's foreach AdamW, which `optim` cannot replace while the section is there
    writeFileSync(
      join(dir, "ds.json"),
      JSON.stringify({
        zero_optimization: { stage: 2 },
        optimizer: { type: "AdamW", params: { torch_adam: true } },
      }),
    );
    writeFileSync(join(dir, "train.yaml"), `${base}deepspeed: ds.json\n`);
    const own = doctorJson(["doctor", "train.yaml", "--gpu", "l40s", "--gpus", "2"], dir).json.doctor;
    const fixes = [own.fix, ...own.alternatives].map((f) => f?.changes.map((c) => c.text) ?? []);
    const fused = fixes.filter((t) => t.some((c) => c.startsWith("optim: adamw_torch_fused")));
    expect(fused.length).toBeGreaterThan(0);
    for (const t of fused) expect(t.some((c) => c.includes('without its "optimizer" section'))).toBe(true);
    // GaLore on a few modules (not planned) is still built from adamw_torch, and never under DeepSpeed
    writeFileSync(join(dir, "galore.yaml"), `${base}use_galore: true\ngalore_target: q_proj,v_proj\n`);
    const galore = doctorJson(["doctor", "galore.yaml", "--gpu", "t4"], dir).json;
    const codes = galore.issues.map((i) => i.code);
    expect(codes).toContain("TRAIN_OOM");
    expect(codes).toContain("OPTIM_DEFAULT_FUSED");
    expect(codes).not.toContain("DEFAULT_OPTIM_STEP_COPY");
    for (const i of galore.issues as unknown as { hint: string }[])
      expect(i.hint).not.toContain("fused AdamW");
    for (const f of [galore.doctor.fix, ...galore.doctor.alternatives])
      expect(f?.changes.map((c) => c.text).join(" ") ?? "").not.toMatch(/deepspeed\.json|DeepSpeed/);
  });

  it("counts the optimizer a DeepSpeed config builds itself, says optim is unused, and fixes by dropping it", () => {
    const own = { type: "AdamW", params: { lr: "auto", betas: "auto", eps: "auto", weight_decay: "auto" } };
    const zero2 = { zero_optimization: { stage: 2 }, bf16: { enabled: "auto" } };
    const yaml = {
      model_name_or_path: "Qwen/Qwen2.5-3B-Instruct",
      finetuning_type: "full",
      deepspeed: "ds.json",
      cutoff_len: 512,
      bf16: true,
      optim: "adamw_8bit",
    };
    const setup = (ds: Record<string, unknown>, y: Record<string, unknown> = yaml) =>
      setupToPlan(
        y,
        { kind: "file", path: "ds.json", config: ds },
        null,
        { gpu: "a100-40g", gpus: 2 },
        undefined,
      );
    // without an "optimizer" section the YAML's optim trains
    expect(setup(zero2).input.optimizer).toBe("adamw_8bit");
    const withOwn = setup({ ...zero2, optimizer: own });
    expect(withOwn.input.optimizer).toBe("adamw_torch_fused"); // DeepSpeed's FusedAdam: fp32 states, in place
    expect(withOwn.issues.map((i) => `${i.code} ${i.path}`)).toEqual([
      "DEEPSPEED_OWN_OPTIMIZER train.yaml:optim",
    ]);
    // LLaMA-Factory's own optimizers are not built either
    const muon = setup({ ...zero2, optimizer: own }, { ...yaml, optim: undefined, use_muon: true });
    expect(muon.input.lowMemoryOptimizer).toBeUndefined();
    expect(muon.issues.map((i) => `${i.code} ${i.path}`)).toEqual([
      "DEEPSPEED_OWN_OPTIMIZER train.yaml:use_muon",
    ]);
    // the hints name what LLaMA-Factory would build without the section: Adam-mini, built before Muon
    const both = setup({ ...zero2, optimizer: own }, { ...yaml, use_adam_mini: true, use_muon: true });
    expect(both.issues.map((i) => i.path)).toEqual([
      "train.yaml:optim",
      "train.yaml:use_adam_mini",
      "train.yaml:use_muon",
    ]);
    for (const i of both.issues)
      expect(i.hint).toMatch(/^Remove the "optimizer" section from ds\.json to train with Adam-mini,/);
    // unless LLaMA-Factory's parser stops the run first: GaLore or APOLLO under DeepSpeed whatever their targets
    // (PROJECTED_OPTIMIZER_DEEPSPEED, LLAMAFACTORY_REJECTS), BAdam in ratio mode or under a stage other than 3
    for (const extra of [
      { use_galore: true },
      { use_galore: true, galore_target: "q_proj" },
      { use_badam: true },
    ]) {
      const stopped = setup({ ...zero2, optimizer: own }, { ...yaml, optim: "adamw_torch", ...extra });
      expect(stopped.input.optimizer).toBe("adamw_torch");
      expect(stopped.issues.map((i) => i.code)).not.toContain("DEEPSPEED_OWN_OPTIMIZER");
    }
    // DeepSpeed's "torch_adam" builds torch's foreach AdamW
    const torchAdam = setup({ ...zero2, optimizer: { type: "AdamW", params: { torch_adam: true } } });
    expect(torchAdam.input.optimizer).toBe("adamw_torch");
    // a type tunefit does not model is counted as AdamW, and said so
    const lamb = setup({ ...zero2, optimizer: { type: "Lamb" } }, { ...yaml, optim: undefined });
    expect(lamb.issues.map((i) => `${i.code} ${i.severity} ${i.path}`)).toEqual([
      "DEEPSPEED_OWN_OPTIMIZER info ds.json:optimizer",
    ]);

    const dir = tempDir();
    writeFileSync(join(dir, "ds.json"), JSON.stringify({ ...zero2, optimizer: own }));
    writeFileSync(
      join(dir, "train.yaml"),
      Object.entries(yaml)
        .map(([k, v]) => `${k}: ${v}\n`)
        .join(""),
    );
    const { code, json } = doctorJson(["doctor", "train.yaml", "--gpu", "a100-40g", "--gpus", "2"], dir);
    expect(code).toBe(3); // AdamW's fp32 states do not fit; the 8-bit ones the YAML asks for do
    expect(json.doctor.fix?.changes.map((c) => c.text)).toEqual([
      'replace the DeepSpeed config by one without its "optimizer" section (ZeRO-2), so that adamw_8bit is what trains',
    ]);
    expect(json.doctor.fix?.args.join(" ")).toContain("--optimizer adamw_8bit");
    // the out-of-memory hint's 8-bit optimizer needs the section gone too
    const oom = (json.issues as unknown as { code: string; hint: string }[]).find(
      (i) => i.code === "TRAIN_OOM",
    );
    expect(oom?.hint).toContain('(optim: adamw_8bit, with the "optimizer" section removed from ds.json)');

    // with Muon on, dropping the section builds Muon, which fails under DeepSpeed (MUON_DEEPSPEED): no such fix
    writeFileSync(
      join(dir, "train.yaml"),
      Object.entries({ ...yaml, use_muon: true })
        .map(([k, v]) => `${k}: ${v}\n`)
        .join(""),
    );
    const muonRun = doctorJson(["doctor", "train.yaml", "--gpu", "a100-40g", "--gpus", "2"], dir).json;
    for (const f of [muonRun.doctor.fix, ...muonRun.doctor.alternatives])
      expect(f?.changes.map((c) => c.text).join(" ") ?? "").not.toContain('without its "optimizer" section');
  });

  it("takes the YAML's rope_scaling as the extension SEQ_LEN_BEYOND_CONTEXT asks for", () => {
    const dir = tempDir();
    const yaml =
      "model_name_or_path: meta-llama/Llama-2-7b-hf\nfinetuning_type: lora\nbf16: true\ncutoff_len: 8192\n";
    writeFileSync(join(dir, "plain.yaml"), yaml);
    writeFileSync(join(dir, "yarn.yaml"), `${yaml}rope_scaling: yarn\n`);
    const codes = (f: string) =>
      doctorJson(["doctor", f, "--gpu", "h200", "--gpus", "8"], dir).json.issues.map((i) => i.code);
    expect(codes("plain.yaml")).toContain("SEQ_LEN_BEYOND_CONTEXT");
    expect(codes("yarn.yaml")).not.toContain("SEQ_LEN_BEYOND_CONTEXT");
  });

  it("plans GaLore, APOLLO and layer-mode BAdam from their switches and checks LLaMA-Factory's stops for them", () => {
    const dir = tempDir();
    const base =
      "model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct\nfinetuning_type: full\npure_bf16: true\ncutoff_len: 1024\n";
    writeFileSync(
      join(dir, "galore.yaml"),
      `${base}use_galore: true\ngalore_layerwise: true\ngalore_rank: 128\n`,
    );
    writeFileSync(join(dir, "badam.yaml"), `${base}use_badam: true\nbadam_mode: layer\n`);
    writeFileSync(join(dir, "lora.yaml"), `${base.replace("full", "lora")}use_apollo: true\n`);
    writeFileSync(join(dir, "ratio.yaml"), `${base}use_badam: true\nbadam_mode: ratio\n`);
    const run = (f: string, gpus: string) =>
      doctorJson(["doctor", f, "--gpu", "a100-80g", "--gpus", gpus], dir);
    const errors = (f: string, gpus: string) =>
      run(f, gpus)
        .json.issues.filter((i) => i.severity === "error")
        .map((i) => `${i.code} ${i.path}`);
    // the switches the plan carries are checked by its rules
    expect(errors("galore.yaml", "8")).toEqual(["LAYERWISE_DISTRIBUTED galore.yaml:galore_layerwise"]);
    expect(run("galore.yaml", "8").json.doctor.byHand).toEqual(["galore.yaml:galore_layerwise"]);
    expect(errors("badam.yaml", "8")).toEqual(["BADAM_NEEDS_ZERO3 badam.yaml:use_badam"]);
    // the fix search mends it where it is (LLaMA-Factory's one distributed BAdam: ZeRO-3), and does not trade BAdam
    // for adapters while the step fits
    const badam8 = run("badam.yaml", "8").json.doctor;
    expect(badam8.fix?.changes.map((c) => c.text).join(" ")).toContain("ZeRO-3");
    expect([badam8.fix, ...badam8.alternatives].every((f) => !/use_badam/.test(JSON.stringify(f)))).toBe(
      true,
    );
    // what LLaMA-Factory rejects outright, and BAdam's ratio mode, stay doctor's own checks
    expect(errors("lora.yaml", "1")).toEqual(["LLAMAFACTORY_REJECTS lora.yaml:finetuning_type"]);
    expect(errors("ratio.yaml", "8")).toEqual(["LLAMAFACTORY_REJECTS ratio.yaml:badam_mode"]);
    // on one GPU: planned, not an upper bound; full fine-tuning with AdamW would not fit the same card
    const one = run("badam.yaml", "1");
    expect(one.code).toBe(0);
    expect(one.json.issues.map((i) => i.code)).not.toContain("NOT_MODELLED");
    expect(one.json.doctor.verdict.join(" ")).not.toMatch(/upper bound/);
    const galore = run("galore.yaml", "1");
    expect(galore.code).toBe(0);
    expect(galore.json.plan.lowMemoryRank).toBe(128);
    writeFileSync(join(dir, "adam.yaml"), base);
    expect(run("adam.yaml", "1").code).toBe(3);
  });

  it("LLaMA-Factory's BAdam example (no bf16 or fp16) is pure bf16 training, and fits one RTX 3090 as BAdam's paper says", () => {
    const dir = tempDir();
    cpSync(
      new URL("../fixtures/llamafactory-examples/badam_llama3_full_sft.yaml", import.meta.url),
      join(dir, "badam.yaml"),
    );
    const { code, json } = doctorJson(["doctor", "badam.yaml", "--gpu", "rtx3090"], dir);
    expect(code).toBe(0);
    expect(json.plan.precision).toBe("pure_bf16");
    expect(json.plan.lowMemoryOptimizer).toBe("badam");
    expect(json.issues.map((i) => i.code)).toEqual(["PRECISION_FROM_CHECKPOINT"]);
    // on a card without bf16 LLaMA-Factory computes in fp16
    expect(doctorJson(["doctor", "badam.yaml", "--gpu", "v100-32g"], dir).json.plan.precision).toBe("fp16");
    // LoRA alike (only the adapters are upcast); full tuning upcasts every weight: fp32, with its warning
    const bare = "model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct\ncutoff_len: 1024\n";
    writeFileSync(join(dir, "lora.yaml"), `${bare}finetuning_type: lora\n`);
    writeFileSync(join(dir, "full.yaml"), `${bare}finetuning_type: full\n`);
    expect(doctorJson(["doctor", "lora.yaml", "--gpu", "h100"], dir).json.plan.precision).toBe("pure_bf16");
    const full = doctorJson(["doctor", "full.yaml", "--gpu", "h100"], dir).json;
    expect(full.plan.precision).toBe("fp32");
    expect(full.issues.map((i) => i.code)).toContain("FP32_NOT_EXPRESSIBLE");
    // an additional_target copy is upcast too, and DeepSpeed follows the Trainer's fp32: not read from the checkpoint
    writeFileSync(join(dir, "head.yaml"), `${bare}finetuning_type: lora\nadditional_target: embed_tokens\n`);
    expect(doctorJson(["doctor", "head.yaml", "--gpu", "h100"], dir).json.plan.precision).toBe("fp32");
    writeFileSync(join(dir, "z3.json"), JSON.stringify({ zero_optimization: { stage: 3 } }));
    writeFileSync(join(dir, "z3.yaml"), `${bare}finetuning_type: lora\ndeepspeed: z3.json\n`);
    const z3 = doctorJson(
      ["doctor", "z3.yaml", "--gpu", "h100", "--gpus", "2", "--launch-dir", dir],
      dir,
    ).json;
    expect(z3.plan.precision).toBe("fp32");
    expect(z3.issues.map((i) => i.code)).not.toContain("PURE_BF16_ZERO3");
  });

  it("GaLore over targets that reach every linear of this model is planned; Mixtral's experts are not under `mlp`", () => {
    const dir = tempDir();
    const yaml = (model: string) =>
      `model_name_or_path: ${model}\nfinetuning_type: full\npure_bf16: true\nuse_galore: true\ngalore_target: mlp,self_attn\n`;
    writeFileSync(join(dir, "llama.yaml"), yaml("meta-llama/Meta-Llama-3-8B-Instruct"));
    writeFileSync(join(dir, "mixtral.yaml"), yaml("mistralai/Mixtral-8x7B-Instruct-v0.1"));
    const codes = (f: string) =>
      doctorJson(["doctor", f, "--gpu", "h200"], dir).json.issues.map((i) => `${i.code} ${i.path}`);
    expect(codes("llama.yaml")).not.toContain("NOT_MODELLED llama.yaml:use_galore");
    expect(codes("mixtral.yaml")).toContain("NOT_MODELLED mixtral.yaml:use_galore");
  });

  it("finds fixes for an out-of-memory GaLore run: pure bf16, or adapters without the switch", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "galore.yaml"),
      "model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct\nfinetuning_type: full\nbf16: true\nuse_galore: true\ncutoff_len: 1024\nper_device_train_batch_size: 1\n",
    );
    const { code, json } = doctorJson(["doctor", "galore.yaml", "--gpu", "a100-80g"], dir);
    expect(code).toBe(3);
    const fixes = [json.doctor.fix, ...json.doctor.alternatives].map((f) =>
      (f?.changes ?? []).map((c) => c.text).join("; "),
    );
    expect(fixes.some((f) => f.includes("pure_bf16: true"))).toBe(true);
    expect(fixes.some((f) => f.includes("remove use_galore") && f.includes("finetuning_type: lora"))).toBe(
      true,
    );
  });

  it("keeps the stop where no memory-saving switch could cover the gap, and leaves LLaMA-Factory's stops to the user", () => {
    const dir = tempDir();
    const base = "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nfinetuning_type: full\nbf16: true\n";
    // Unsloth's offloaded checkpointing saves activations; the full fine-tune's optimizer step is over the card
    writeFileSync(join(dir, "unsloth.yaml"), `${base}use_unsloth_gc: true\n`);
    const unsloth = doctorJson(["doctor", "unsloth.yaml", "--gpu", "h100"], dir);
    expect(unsloth.code).toBe(3);
    expect(unsloth.json.issues.find((i) => i.code === "TRAIN_OOM")?.severity).toBe("error");
    // layer-wise GaLore with gradient accumulation: LLaMA-Factory stops, and only the YAML's author can choose
    writeFileSync(
      join(dir, "galore.yaml"),
      `${base}use_galore: true\ngalore_layerwise: true\ngradient_accumulation_steps: 4\n`,
    );
    const galore = doctorJson(["doctor", "galore.yaml", "--gpu", "h100"], dir);
    expect(galore.code).toBe(3);
    expect(galore.json.doctor.byHand).toEqual(["galore.yaml:galore_layerwise"]);
    expect(galore.json.issues.map((i) => i.code)).toContain("LAYERWISE_GRAD_ACCUM");
    expect(galore.json.doctor.fix).toBeNull();
  });

  it("reads an unquoted flash_attn: off (YAML 1.1's false) as the old spelling of disabled", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "off.yaml"),
      "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nfinetuning_type: lora\nbf16: true\nflash_attn: off\n",
    );
    const { json } = doctorJson(["doctor", "off.yaml", "--gpu", "a100-80g"], dir);
    expect(json.doctor.fix?.changes.map((c) => c.text)).toEqual([
      "flash_attn: disabled (LLaMA-Factory's current name for false)",
    ]);
  });

  it("never fixes into a stop on a key the fix keeps: PiSSA or resize_vocab under quantization, Unsloth under ZeRO-3", () => {
    const dir = tempDir();
    const base =
      "model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct\nfinetuning_type: lora\ncutoff_len: 2048\nbf16: true\n";
    writeFileSync(join(dir, "pissa.yaml"), `${base}pissa_init: true\n`);
    writeFileSync(join(dir, "resize.yaml"), `${base}resize_vocab: true\n`);
    writeFileSync(join(dir, "both.yaml"), `${base}pissa_init: true\nquantization_bit: 4\n`);
    for (const f of ["pissa.yaml", "resize.yaml"]) {
      const { json } = doctorJson(["doctor", f, "--gpu", "t4", "--gpus", "2"], dir);
      for (const fix of [json.doctor.fix, ...json.doctor.alternatives])
        expect(fix?.changes.map((c) => c.text) ?? []).not.toContain("quantization_bit: 4");
    }
    // the setup itself: LLaMA-Factory's own stop, left to the user
    const both = doctorJson(["doctor", "both.yaml", "--gpu", "a100-80g"], dir);
    expect(both.code).toBe(3);
    expect(both.json.doctor.byHand).toContain("both.yaml:pissa_init");
  });

  it("full tuning beside quantization_bit stops (parser.py:237), and the fix drops the key or trains adapters", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "fullq.yaml"),
      "model_name_or_path: Qwen/Qwen2.5-1.5B-Instruct\nfinetuning_type: full\nquantization_bit: 8\nbf16: true\n",
    );
    const { code, json } = doctorJson(["doctor", "fullq.yaml", "--gpu", "a100-80g"], dir);
    expect(code).toBe(3);
    expect(json.issues.find((i) => i.path === "fullq.yaml:quantization_bit")?.severity).toBe("error");
    const texts = json.doctor.fix?.changes.map((c) => c.text) ?? [];
    expect(texts.some((t) => t === "remove quantization_bit" || t === "finetuning_type: lora")).toBe(true);
    // the fixed YAML re-doctors without that stop
    cli(["doctor", "fullq.yaml", "--gpu", "a100-80g", "--fix", "--out", "fix"], dir);
    const again = doctorJson(["doctor", "train.yaml", "--gpu", "a100-80g"], join(dir, "fix"));
    expect(again.json.issues.filter((i) => i.severity === "error")).toEqual([]);
  });

  it("a fix that changes the micro-batch keeps a DeepSpeed config's written batch sizes consistent", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "ds.json"),
      JSON.stringify({ train_micro_batch_size_per_gpu: 8, zero_optimization: { stage: 3 } }),
    );
    writeFileSync(
      join(dir, "mb.yaml"),
      "model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct\nfinetuning_type: lora\nbf16: true\nper_device_train_batch_size: 8\ngradient_accumulation_steps: 1\ncutoff_len: 4096\nenable_liger_kernel: true\ndeepspeed: ds.json\n",
    );
    const { json } = doctorJson(["doctor", "mb.yaml", "--gpu", "rtx4090", "--gpus", "2"], dir);
    const fixes = [json.doctor.fix, ...json.doctor.alternatives].filter((f) => f !== null);
    const smaller = fixes.filter((f) =>
      f.changes.some((c) => c.text.startsWith("per_device_train_batch_size")),
    );
    expect(smaller.length).toBeGreaterThan(0);
    for (const f of smaller) expect(f.changes.some((c) => c.text.includes("DeepSpeed config"))).toBe(true);
  });

  it("tries bf16: true for a YAML without a precision key, the one edit LLaMA-Factory recommends", () => {
    const dir = tempDir();
    // under DeepSpeed a YAML without bf16 or fp16 trains in fp32 (the Trainer's precision)
    writeFileSync(
      join(dir, "fp32.yaml"),
      'model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct\nfinetuning_type: lora\nper_device_train_batch_size: 1\ncutoff_len: 2048\ndeepspeed: {"zero_optimization": {"stage": 3}}\n',
    );
    const { json } = doctorJson(["doctor", "fp32.yaml", "--gpu", "rtx4090", "--gpus", "2"], dir);
    expect(json.memory.train.fits).toBe(false);
    expect(json.doctor.fix?.changes.map((c) => c.text)).toEqual(["bf16: true"]);
  });

  it("reads a quantization_method LLaMA-Factory does not know as no quantization: 16-bit LoRA, with a warning", () => {
    // parse_dict takes the string as written, and configure_quantization's branches have no else
    const dir = tempDir();
    const base = "model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct\nquantization_bit: 4\nbf16: true\n";
    writeFileSync(join(dir, "old.yaml"), `${base}quantization_method: bitsandbytes\n`);
    writeFileSync(join(dir, "bnb.yaml"), `${base}quantization_method: bnb\n`);
    const old = doctorJson(["doctor", "old.yaml", "--gpu", "a100-80g"], dir);
    expect(old.code).toBe(0);
    expect(old.json.plan.method).toBe("lora");
    expect(old.json.issues.find((i) => i.path === "old.yaml:quantization_method")).toMatchObject({
      severity: "warning",
      hint: "Write quantization_method: bnb to quantize as meant.",
    });
    expect(doctorJson(["doctor", "bnb.yaml", "--gpu", "a100-80g"], dir).json.plan.method).toBe("qlora");
    // where 16-bit does not fit, a fix that quantizes names the method LLaMA-Factory knows
    const small = doctorJson(["doctor", "old.yaml", "--gpu", "custom", "--gpu-memory", "12"], dir).json;
    expect(small.doctor.fix?.changes.map((c) => c.text)).toContain(
      "quantization_method: bnb (LLaMA-Factory's current name for bitsandbytes)",
    );
  });

  it("names the YAML as given in a missing DeepSpeed file's issue", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "sft.yaml"),
      "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\nfinetuning_type: lora\ndeepspeed: nowhere/ds.json\n",
    );
    const { json } = doctorJson(["doctor", "sft.yaml", "--gpu", "a100-80g", "--gpus", "2"], dir);
    expect(json.issues.find((i) => i.code === "DEEPSPEED_FILE_NOT_FOUND")?.path).toBe("sft.yaml:deepspeed");
  });

  it("reads floats as OmegaConf does (1e-4 is a number) and keeps unknown strings", () => {
    expect(parseOmegaConfYaml("a: 1e-4\nb: 1.0e-4\nc: '1e-4'\nd: no\n", "x", "x")).toEqual({
      a: 1e-4,
      b: 1e-4,
      c: "1e-4",
      d: false,
    });
  });

  it("an interpolation OmegaConf cannot parse is an input error naming the key (exit 2)", () => {
    const cwd = tempDir();
    cpSync(join(FIXTURES, "healthy-zero3"), cwd, { recursive: true });
    writeFileSync(
      join(cwd, "bad.yaml"),
      `${readFileSync(join(cwd, "train.yaml"), "utf8")}run_name: saves/\${oops\n`,
    );
    const r = cli(["doctor", "bad.yaml", "--gpu", "rtx4090", "--gpus", "4"], cwd);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("run_name");
    expect(r.stderr).toContain("GrammarParseError");
    // a valid one passes as literal text, as LLaMA-Factory leaves it
    writeFileSync(
      join(cwd, "ok.yaml"),
      `${readFileSync(join(cwd, "train.yaml"), "utf8")}run_name: \${oc.env:USER}\n`,
    );
    expect(cli(["doctor", "ok.yaml", "--gpu", "rtx4090", "--gpus", "4"], cwd).code).toBe(0);
  });

  it("bad input is exit 2 with the file or flag named: missing --gpu, invalid YAML, alias bombs, unknown model", () => {
    const cwd = tempDir();
    expect(cli(["doctor", "x.yaml", "--gpu", "h100-80g"], cwd).stderr).toContain("cannot read x.yaml");
    writeFileSync(join(cwd, "t.yaml"), "model_name_or_path: Qwen/Qwen3-4B\n");
    const noGpu = cli(["doctor", "t.yaml"], cwd);
    expect(noGpu.code).toBe(2);
    expect(noGpu.stderr).toContain("--gpu");
    writeFileSync(join(cwd, "bad.yaml"), "a: [1, 2\nb: 3\n");
    const bad = cli(["doctor", "bad.yaml", "--gpu", "h100-80g"], cwd);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad\.yaml is not valid YAML \(line \d+/);
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"];
    for (const n of "bcdefghij")
      bomb.push(
        `${n}: &${n} [*${String.fromCharCode(n.charCodeAt(0) - 1)}, *${String.fromCharCode(n.charCodeAt(0) - 1)}, *${String.fromCharCode(n.charCodeAt(0) - 1)}, *${String.fromCharCode(n.charCodeAt(0) - 1)}, *${String.fromCharCode(n.charCodeAt(0) - 1)}, *${String.fromCharCode(n.charCodeAt(0) - 1)}, *${String.fromCharCode(n.charCodeAt(0) - 1)}, *${String.fromCharCode(n.charCodeAt(0) - 1)}, *${String.fromCharCode(n.charCodeAt(0) - 1)}]`,
      );
    writeFileSync(join(cwd, "bomb.yaml"), `${bomb.join("\n")}\n`);
    const b = cli(["doctor", "bomb.yaml", "--gpu", "h100-80g"], cwd);
    expect(b.code).toBe(2);
    writeFileSync(
      join(cwd, "unknown.yaml"),
      "model_name_or_path: someone/SomeModel-7B\nfinetuning_type: lora\n",
    );
    const u = cli(["doctor", "unknown.yaml", "--gpu", "h100-80g"], cwd);
    expect(u.code).toBe(2);
    expect(u.stderr).toContain("model_name_or_path");
    expect(u.stderr).toContain("--model DIR");
  });

  it("--model DIR gives the architecture of a model the catalog lacks", () => {
    const cwd = tempDir();
    cpSync(join(import.meta.dirname, "../fixtures/configs/qwen3-8b"), join(cwd, "m"), { recursive: true });
    writeFileSync(
      join(cwd, "t.yaml"),
      "model_name_or_path: /models/private-qwen3\nfinetuning_type: lora\ntemplate: qwen3\nbf16: true\nper_device_train_batch_size: 1\n",
    );
    const r = cli(["doctor", "t.yaml", "--gpu", "h100-80g", "--model", "m"], cwd);
    expect(r.code).toBe(0);
  });
});

describe("accelerator_config", () => {
  const fsdp = { distributed_type: "FSDP", fsdp_config: { fsdp_sharding_strategy: "FULL_SHARD" } };
  const setup = (accelerator_config: unknown) =>
    setupToPlan(
      {
        model_name_or_path: "Qwen/Qwen2.5-7B-Instruct",
        finetuning_type: "full",
        gradient_accumulation_steps: 8,
        ...(accelerator_config === undefined ? {} : { accelerator_config }),
      },
      { kind: "none" },
      fsdp,
      { gpu: "a100-80g", gpus: 8 },
      undefined,
    );

  it("reads sync_each_batch from a mapping or a JSON string, and keeps the key as written", () => {
    const kwargs = { gradient_accumulation_kwargs: { sync_each_batch: true } };
    for (const value of [kwargs, JSON.stringify(kwargs)]) {
      const s = setup(value);
      expect(s.input.syncEachBatch).toBe(true);
      expect(s.unmodelled).toContain("accelerator_config");
    }
    expect(setup(undefined).input.syncEachBatch).toBeUndefined();
    expect(setup({ split_batches: true }).input.syncEachBatch).toBeUndefined();
    expect(setup("{not json").input.syncEachBatch).toBeUndefined();
  });
});

describe("tunefit doctor --fix --out", () => {
  it("writes the fixed YAML with every other key kept, the added config and launch.sh", () => {
    const out = tempDir();
    const r = cli([
      "doctor",
      "seed/train.yaml",
      "--gpu",
      "rtx4090",
      "--gpus",
      "8",
      "--fix",
      "--out",
      join(out, "fix"),
    ]);
    expect(r.code).toBe(3);
    const original = parse(readFileSync(join(FIXTURES, "seed/train.yaml"), "utf8")) as Record<
      string,
      unknown
    >;
    const fixed = parse(readFileSync(join(out, "fix/train.yaml"), "utf8"), { version: "1.1" }) as Record<
      string,
      unknown
    >;
    expect(fixed.finetuning_type).toBe("lora");
    for (const [k, v] of Object.entries(original)) {
      if (k !== "finetuning_type") expect(fixed[k], k).toEqual(v);
    }
    expect(existsSync(join(out, "fix/launch.sh"))).toBe(true);
    const extra =
      existsSync(join(out, "fix/accelerate_fsdp.yaml")) || existsSync(join(out, "fix/deepspeed.json"));
    expect(extra).toBe(true);
    expect(readFileSync(join(out, "fix/README.md"), "utf8")).toContain("shard 7 of 38");
    // floats keep their spelling, as written
    expect(readFileSync(join(out, "fix/train.yaml"), "utf8")).toMatch(/^num_train_epochs: 3\.0$/m);
  });

  it("patches the user's accelerate config rather than replacing it", () => {
    const out = tempDir();
    cli([
      "doctor",
      "fsdp-replica/train.yaml",
      "--gpu",
      "a100-80g",
      "--gpus",
      "8",
      "--accelerate-config",
      "fsdp-replica/accelerate.yaml",
      "--fix",
      "--out",
      join(out, "fix"),
    ]);
    const theirs = parse(readFileSync(join(FIXTURES, "fsdp-replica/accelerate.yaml"), "utf8")) as Record<
      string,
      unknown
    >;
    const fixed = parse(readFileSync(join(out, "fix/accelerate_fsdp.yaml"), "utf8"), {
      version: "1.1",
    }) as Record<string, unknown>;
    expect(fixed).toEqual({
      ...theirs,
      fsdp_config: {
        ...(theirs.fsdp_config as object),
        fsdp_cpu_ram_efficient_loading: true,
        fsdp_sync_module_states: true,
      },
    });
  });

  it("a healthy setup writes nothing", () => {
    const out = tempDir();
    const r = cli(
      ["doctor", "train.yaml", "--gpu", "rtx4090", "--gpus", "4", "--fix", "--out", join(out, "fix")],
      join(FIXTURES, "healthy-zero3"),
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Nothing to fix");
    expect(existsSync(join(out, "fix"))).toBe(false);
  });
});

describe("tunefit doctor: a paged optimizer", () => {
  it("runs as it is where the states page through host RAM, and says how much of the peak they are", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "train.yaml"),
      "model_name_or_path: meta-llama/Llama-3.1-8B\ntemplate: llama3\nstage: sft\ndo_train: true\n" +
        "finetuning_type: full\ndataset: alpaca_en_demo\ncutoff_len: 2048\nper_device_train_batch_size: 2\n" +
        "optim: paged_adamw_32bit\npure_bf16: true\noutput_dir: out\n",
    );
    const r = cli(["doctor", "train.yaml", "--gpu", "a100-80g"], dir);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Of it, \d+\.\d GiB is the paged optimizer's states/);
    expect(r.stdout).toContain("→ at train.yaml:optim"); // the plan field, named by the key it was read from
    const { json } = doctorJson(["doctor", "train.yaml", "--gpu", "a100-80g"], dir);
    expect(json.issues).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: "PAGED_OPTIMIZER_SPILLS", severity: "warning", path: "optimizer" }),
      ]),
    );
    expect(json.memory.train.fits).toBe(true);
  });
});

describe("tunefit doctor: a ZeRO-3 config that offloads only the parameters", () => {
  it("counts the optimizer states on the GPU, as DeepSpeed keeps them, and says so", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "train.yaml"),
      "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\ntemplate: qwen\nstage: sft\ndo_train: true\n" +
        "finetuning_type: full\ndataset: alpaca_en_demo\ncutoff_len: 2048\nper_device_train_batch_size: 1\n" +
        "bf16: true\ndeepspeed: ds.json\noutput_dir: out\n",
    );
    const ds = (zero: Record<string, unknown>) =>
      writeFileSync(join(dir, "ds.json"), JSON.stringify({ zero_optimization: { stage: 3, ...zero } }));
    const run = () => doctorJson(["doctor", "train.yaml", "--gpu", "a100-80g", "--gpus", "4"], dir).json;
    ds({ offload_param: { device: "cpu" } });
    const paramsOnly = run() as unknown as DoctorJson & {
      memory: { train: { perGpu: { breakdown: { optimizer: number } } } };
    };
    expect(paramsOnly.issues).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: "DEEPSPEED_PARAM_OFFLOAD_ONLY", severity: "warning" }),
      ]),
    );
    // fp32 master and Adam states of 7.6 B parameters over 4 GPUs stay on each GPU
    expect(paramsOnly.memory.train.perGpu.breakdown.optimizer).toBeGreaterThan(20 * 1024 ** 3);
    ds({ offload_param: { device: "cpu" }, offload_optimizer: { device: "cpu" } });
    const both = run() as unknown as typeof paramsOnly;
    expect(both.issues.map((i) => i.code)).not.toContain("DEEPSPEED_PARAM_OFFLOAD_ONLY");
    expect(both.memory.train.perGpu.breakdown.optimizer).toBe(0);
  });
});

describe("doctor() from JavaScript", () => {
  it("reads null or missing config sources as none, and refuses a YAML or hardware it cannot use as input", () => {
    const yaml = { model_name_or_path: "Qwen/Qwen2.5-7B-Instruct", finetuning_type: "lora", bf16: true };
    const loose = { yaml, deepspeed: null, hardware: { gpu: "a100-80g" } } as never;
    const report = doctorFn(loose);
    expect(report.launcher).toBe("torchrun");
    expect(report.analysis.plan.sharding).toBe("none");
    for (const [bad, code] of [
      [{ yaml: "model_name_or_path: x", hardware: { gpu: "a100-80g" } }, "DOCTOR_YAML_NOT_MAPPING"],
      [{ yaml }, "DOCTOR_HARDWARE_MISSING"],
    ] as const) {
      let error: unknown;
      try {
        doctorFn(bad as never);
      } catch (e) {
        error = e;
      }
      expect((error as TunefitError).issues[0]?.code).toBe(code);
    }
  });
});

describe("doctor's input errors, said against the YAML", () => {
  it("names the YAML key and the bound, not the plan field and zod's wording", () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "bad.yaml"),
      "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\ncutoff_len: 0\nlora_rank: -4\n",
    );
    writeFileSync(join(dir, "nomodel.yaml"), "stage: sft\n");
    const bad = doctorJson(["doctor", "bad.yaml", "--gpu", "a100-80g"], dir);
    expect(bad.code).toBe(2);
    const r = cli(["doctor", "bad.yaml", "--gpu", "a100-80g"], dir);
    const out = r.stdout + r.stderr;
    expect(out).toContain("cutoff_len 0: must be at least 1");
    expect(out).toContain("at bad.yaml:cutoff_len");
    expect(out).toContain("at bad.yaml:lora_rank");
    expect(out).not.toMatch(/seqLen|--seq-len|Too small/);
    // a value the reading of the files already stopped on is said once
    writeFileSync(join(dir, "ds123.yaml"), "model_name_or_path: Qwen/Qwen2.5-7B-Instruct\ndeepspeed: 123\n");
    const once = doctorJson(["doctor", "ds123.yaml", "--gpu", "a100-80g"], dir).json;
    expect(
      once.issues.filter((i) => i.path === "ds123.yaml:deepspeed" && i.severity === "error"),
    ).toHaveLength(1);
    const none = cli(["doctor", "nomodel.yaml", "--gpu", "a100-80g"], dir);
    expect(none.code).toBe(2);
    expect(none.stdout + none.stderr).toContain("model_name_or_path is missing");
  });
});
