// The case tunefit was built for: Qwen2-VL-72B fine-tuned on 8× RTX 4090 (24 GB). Inference with
// device_map="auto" spreads the model at ~18 GB per card, but plain multi-GPU training loads a full bf16
// replica onto every card and dies while loading. Run with `npm start`.
import { analyzePlan, formatIssues, type PlanAnalysis, type PlanInput } from "tunefit";

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
const int = (n: number) => n.toLocaleString("en-US");

const seed: PlanInput = {
  model: "Qwen/Qwen2-VL-72B-Instruct",
  gpu: "rtx4090",
  gpus: 8,
  method: "full",
  sharding: "none",
};

function describe(title: string, a: PlanAnalysis): string[] {
  const m = a.memory;
  const load = m.load;
  return [
    title,
    `  training peak per GPU   ${gib(m.train.perGpu.deviceBytes)} of ${gib(m.train.capacityBytes)} usable ` +
      `${m.train.fits ? "✔ fits" : "✖ does not fit"}`,
    `  loading per GPU         ${gib(load.perGpuPeakBytes)} ` +
      (load.fits
        ? "✔"
        : `✖ runs out after ${((load.oomAtFraction ?? 0) * 100).toFixed(0)} % of the weights` +
          (load.oomAtShard ? `, in shard ${load.oomAtShard.index} of ${load.oomAtShard.of}` : "")),
  ];
}

const base = analyzePlan(seed);
const { plan, params } = base;
const bf16 = params.total * 2;
const out = [
  `tunefit demo: ${plan.model.id} on ${plan.gpus} × ${plan.gpu.name}`,
  "",
  `Parameters       ${int(params.total)} (language model ${int(params.text)}, vision ${int(params.visionTower + params.projector)})`,
  `bf16 weights     ${(bf16 / 1e9).toFixed(1)} GB = ${gib(bf16)}, ${plan.model.shards} shards of ~${(bf16 / (plan.model.shards ?? 1) / 1e9).toFixed(2)} GB`,
  `Each card        ${gib(plan.gpu.capacityBytes)} as nvidia-smi reports it`,
  `Inference        ${gib(base.memory.inference.perGpuBytes)} on the fullest card with device_map="auto"`,
  "",
  ...describe(`Plain multi-GPU full fine-tuning (sharding ${plan.sharding}):`, base),
  "",
  formatIssues(base.issues.filter((i) => i.severity === "error")),
  "",
];
const fix = analyzePlan({ ...seed, method: "qlora", sharding: "fsdp", microBatch: 1, seqLen: 2048 });
out.push(...describe("QLoRA (4-bit) with FSDP full_shard, micro-batch 1 × 2048 tokens:", fix));
process.stdout.write(`${out.join("\n")}\n`);
