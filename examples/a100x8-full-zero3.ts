// Full fine-tuning of Qwen2.5-32B-Instruct on one node of 8× A100-80GB with DeepSpeed ZeRO-3: per-GPU memory,
// what loading costs, and the host RAM the node needs with optimizer offload.
import { PlanBuilder } from "tunefit";

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

const base = PlanBuilder.create()
  .model("Qwen/Qwen2.5-32B-Instruct")
  .hardware({ gpu: "a100-80g", gpus: 8, hostRamGiB: 1024 })
  .full()
  .zero(3)
  .training({ seqLen: 4096, microBatch: 1, gradAccum: 4 });

for (const [label, builder] of [
  ["ZeRO-3", base],
  ["ZeRO-3 + optimizer offload", base.offload("optimizer")],
] as const) {
  const a = builder.analyze();
  const m = a.memory;
  process.stdout.write(
    `${label}: ${gib(m.train.perGpu.deviceBytes)} per GPU (${m.train.fits ? "fits" : "does not fit"}), ` +
      `loading ${gib(m.load.perGpuPeakBytes)} per GPU, host RAM ${gib(m.hostRam.perNodeBytes)} per node` +
      `${a.issues.length ? ` — ${a.issues.map((i) => i.code).join(", ")}` : ""}\n`,
  );
}
