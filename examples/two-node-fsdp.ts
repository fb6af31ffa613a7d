// LoRA of Llama-3.1-70B over two nodes of 8× H100 with FSDP (full shard vs hybrid shard within a node).
import { estimateStepTime, PlanBuilder } from "tunefit";

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

const base = PlanBuilder.create()
  .model("meta-llama/Llama-3.1-70B")
  .hardware({ gpu: "h100-80g", gpus: 8, nodes: 2 })
  .lora({ rank: 16 })
  .data({ template: "llama3" })
  .training({ seqLen: 8192, microBatch: 1, gradAccum: 2, liger: true });

for (const strategy of ["full_shard", "hybrid_shard"] as const) {
  const a = base.fsdp({ strategy }).analyze();
  const t = estimateStepTime(a.plan);
  process.stdout.write(
    `FSDP ${strategy}: ${gib(a.memory.train.perGpu.deviceBytes)} per GPU, ` +
      `global batch ${a.plan.microBatch * a.plan.gradAccum * a.plan.gpus * a.plan.nodes} × ${a.plan.seqLen} tokens, ` +
      `~${t.stepSeconds.toFixed(1)} s/step (compute ${t.computeSeconds.toFixed(1)} s, communication ${t.communicationSeconds.toFixed(1)} s)\n`,
  );
}
