#!/usr/bin/env node
// doctor on random LLaMA-Factory YAMLs (a seeded generator: the same runs every time): every run must exit 0, 2 or 3
// with JSON, and every fix `--fix --out` writes must doctor again without an error. Prints the counts and each
// failure. `node bench/doctor-fuzz.mjs [RUNS] [SEED]`.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cli = resolve(root, "dist/cli.js");
const runs = Number(process.argv[2] ?? 200);
let seed = Number(process.argv[3] ?? 1);
// mulberry32
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (a) => a[Math.floor(random() * a.length)];
const run = (args, cwd) => {
  try {
    return {
      code: 0,
      out: execFileSync("node", [cli, ...args], { encoding: "utf8", cwd, stdio: ["ignore", "pipe", "pipe"] }),
    };
  } catch (e) {
    return { code: e.status, out: String(e.stdout), err: String(e.stderr) };
  }
};

const MODELS = [
  "meta-llama/Meta-Llama-3-8B-Instruct",
  "Qwen/Qwen2.5-7B-Instruct",
  "mistralai/Mixtral-8x7B-Instruct-v0.1",
  "Qwen/Qwen2-VL-7B-Instruct",
  "google/gemma-2-9b-it",
];
const base = mkdtempSync(join(tmpdir(), "tunefit-doctor-fuzz-"));
let ok = 0;
let fixes = 0;
const failures = [];
for (let i = 0; i < runs; i++) {
  const dir = join(base, String(i));
  mkdirSync(dir);
  const y = {
    model_name_or_path: pick(MODELS),
    finetuning_type: pick(["full", "freeze", "lora", "lora"]),
    stage: "sft",
    do_train: true,
    dataset: "alpaca_en_demo",
    output_dir: "saves/x",
  };
  if (random() < 0.6) y.bf16 = true;
  if (random() < 0.15) y.fp16 = true;
  if (random() < 0.1) y.tf32 = true;
  if (random() < 0.3) y.quantization_bit = pick([3, 4, 8]);
  if (random() < 0.2) y.quantization_method = pick(["bnb", "bitsandbytes", "hqq", "eetq"]);
  for (const k of ["pissa_init", "resize_vocab", "use_unsloth", "use_llama_pro"])
    if (random() < 0.12) y[k] = true;
  if (random() < 0.3) y.freeze_trainable_layers = pick([2, 3, 4, 7]);
  y.per_device_train_batch_size = pick([1, 2, 4]);
  y.gradient_accumulation_steps = pick([1, 8]);
  y.cutoff_len = pick([1024, 2048, 8192]);
  const gpus = String(pick([1, 2, 8]));
  const ds = { zero_optimization: { stage: pick([2, 3]) } };
  if (random() < 0.3) ds.train_micro_batch_size_per_gpu = pick([1, 2, 4]);
  if (random() < 0.2) ds.zero_optimization.offload_optimizer = { device: "cpu" };
  const mode = pick(["none", "file", "inline"]);
  if (mode === "file") {
    writeFileSync(join(dir, "ds.json"), JSON.stringify(ds));
    y.deepspeed = "ds.json";
  }
  if (mode === "inline") y.deepspeed = `'${JSON.stringify(ds)}'`;
  // LLaMA-Factory's multimodal demos now and then, with its video settings
  if (random() < 0.15) {
    y.dataset = pick(["mllm_demo", "mllm_video_demo"]);
    if (random() < 0.5) y.video_maxlen = pick([8, 16, 64]);
    if (random() < 0.3) y.video_max_pixels = pick([16384, 65536]);
  }
  const text = `${Object.entries(y)
    .map(([k, v]) => `${k}: ${v}`)
    .join("\n")}\n`;
  writeFileSync(join(dir, "t.yaml"), text);
  const gpu = pick(["a100-80g", "rtx4090", "v100-32g"]);
  const hw = ["--gpu", gpu, "--gpus", gpus];
  const a = run(["doctor", "t.yaml", ...hw, "--json"], dir);
  let report;
  try {
    report = JSON.parse(a.out);
  } catch {
    failures.push(`exit ${a.code} without JSON: ${text.replace(/\n/g, " | ")} ${a.err?.slice(0, 200) ?? ""}`);
    continue;
  }
  if (![0, 2, 3].includes(a.code)) {
    failures.push(`exit ${a.code}: ${text.replace(/\n/g, " | ")}`);
    continue;
  }
  ok++;
  const fix = report.doctor?.fix;
  if (a.code !== 3 || !fix) continue;
  fixes++;
  run(["doctor", "t.yaml", ...hw, "--fix", "--out", "fix"], dir);
  cpSync(join(dir, "fix"), dir, { recursive: true });
  const launcher =
    fix.launcher === "accelerate"
      ? ["--accelerate-config", "accelerate_fsdp.yaml", "--launcher", "accelerate"]
      : [];
  const b = run(["doctor", "train.yaml", ...hw, "--json", ...launcher], dir);
  const errors = JSON.parse(b.out).issues.filter((x) => x.severity === "error");
  if (errors.length > 0)
    failures.push(
      `fix left errors on ${gpus} × ${gpu}: ${text.replace(/\n/g, " | ")} → ${fix.changes.map((c) => c.text).join("; ")} ⇒ ${errors.map((x) => `${x.code} at ${x.path}`).join(", ")}`,
    );
}
rmSync(base, { recursive: true, force: true });
for (const f of failures) console.log(`FAIL ${f}`);
console.log(
  `doctor fuzz (seed ${process.argv[3] ?? 1}): ${runs} YAMLs, ${ok} answered with JSON and exit 0/2/3, ${fixes} fixes re-doctored, ${failures.length} failures`,
);
process.exitCode = failures.length > 0 ? 1 : 0;
