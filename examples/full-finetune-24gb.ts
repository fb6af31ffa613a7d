// Full fine-tuning of Llama-3-8B-Instruct on one 24 GB card: AdamW does not fit; which of LLaMA-Factory's
// memory-efficient optimizers does, and what each keeps on the GPU?
import { PlanBuilder } from "tunefit";

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(2)} GiB`;

const full = PlanBuilder.create()
  .model("meta-llama/Meta-Llama-3-8B-Instruct")
  .hardware({ gpu: "rtx4090" })
  .full()
  .training({ seqLen: 1024, gradAccum: 1, precision: "pure_bf16", liger: true });

const variants = [
  ["AdamW", full],
  ["BAdam (one layer at a time)", full.badam()],
  ["GaLore rank 128, layer-wise", full.galore({ rank: 128, layerwise: true })],
  ["APOLLO rank 128, layer-wise", full.apollo({ rank: 128, layerwise: true })],
  ["Adam-mini", full.adamMini()],
  ["Muon", full.muon()],
] as const;

const lines = [`${full.toInput().model}, full fine-tuning on one RTX 4090, 1,024 tokens, pure bf16, Liger`];
for (const [name, builder] of variants) {
  const a = builder.analyze();
  const b = a.memory.train.perGpu.breakdown;
  const verdict = a.valid ? "fits" : a.memory.train.fits ? "fits, but breaks a rule" : "does not fit";
  lines.push(
    `${name.padEnd(30)} ${gib(a.memory.train.perGpu.deviceBytes).padStart(10)}  ${verdict}`,
    `${"".padEnd(30)} optimizer ${gib(b.optimizer)}, gradients ${gib(b.gradients)}, weights ${gib(b.weights)}`,
  );
}
process.stdout.write(`${lines.join("\n")}\n`);
