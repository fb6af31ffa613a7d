// The case tunefit was built for: Qwen2-VL-72B fine-tuned on 8× RTX 4090 (24 GB) with plain multi-GPU
// training. Run with `npm start`.
import { analyzePlan, formatIssues, type PlanInput } from "tunefit";

const seed: PlanInput = {
  model: "Qwen/Qwen2-VL-72B-Instruct",
  gpu: "rtx4090",
  gpus: 8,
  method: "full",
  sharding: "none",
};

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
const billions = (n: number) => `${(n / 1e9).toFixed(2)} B`;

const { plan, params, trainable, issues } = analyzePlan(seed);
const bf16Bytes = params.total * 2;
const out = [
  `tunefit demo: ${plan.model.id} on ${plan.gpus} × ${plan.gpu.name}`,
  "",
  `Parameters        ${params.total.toLocaleString("en-US")} (${billions(params.total)})`,
  `  language model  ${params.text.toLocaleString("en-US")}`,
  `  vision tower    ${(params.visionTower + params.projector).toLocaleString("en-US")} (frozen by default)`,
  `Trainable (full)  ${trainable.trainable.toLocaleString("en-US")}`,
  `bf16 weights      ${(bf16Bytes / 1e9).toFixed(1)} GB = ${gib(bf16Bytes)} per full replica`,
  `Each card         ${gib(plan.gpu.capacityBytes)} (${plan.gpu.id}, as nvidia-smi reports it)`,
  `Checkpoint        ${plan.model.shards ?? "?"} shards of ~${(bf16Bytes / (plan.model.shards ?? 1) / 1e9).toFixed(2)} GB`,
  `Template          ${plan.template}`,
  "",
  `With sharding "${plan.sharding}" every rank loads its own full replica: ${gib(bf16Bytes)} onto a ` +
    `${gib(plan.gpu.capacityBytes)} card.`,
  issues.length > 0
    ? formatIssues(issues)
    : "No rule findings yet (memory checks arrive with the memory model).",
];
process.stdout.write(`${out.join("\n")}\n`);
