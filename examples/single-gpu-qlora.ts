// QLoRA of Llama-3.1-8B-Instruct on one RTX 4090: does it fit at 4,096 tokens, and how far can the batch go?
import { maxFitting, PlanBuilder } from "tunefit";

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(2)} GiB`;

const builder = PlanBuilder.create()
  .model("meta-llama/Meta-Llama-3.1-8B-Instruct")
  .hardware({ gpu: "rtx4090" })
  .qlora({ rank: 16, target: "all" })
  .training({ seqLen: 4096, microBatch: 1, gradAccum: 16 });

const a = builder.analyze();
const per = a.memory.train.perGpu;
const lines = [
  `${a.plan.model.id}, QLoRA r=16 on ${a.plan.gpu.name}, ${a.plan.seqLen} tokens`,
  `trainable parameters: ${a.trainable.trainable.toLocaleString("en-US")} (${a.trainable.loraTargets.join(", ")})`,
  `per GPU: ${gib(per.deviceBytes)} of ${gib(a.memory.train.capacityBytes)} usable → ${a.memory.train.fits ? "fits" : "does not fit"}`,
  `  weights ${gib(per.breakdown.weights)}, activations ${gib(per.breakdown.activations)}, logits ${gib(per.breakdown.logits)}`,
  `largest micro-batch that fits: ${maxFitting(builder.toInput(), "microBatch")}`,
  `with Liger's fused cross-entropy: ${maxFitting(builder.training({ liger: true }).toInput(), "microBatch")}`,
];
process.stdout.write(`${lines.join("\n")}\n`);
