// The case tunefit was built for: Qwen2-VL-72B fine-tuned on 8× RTX 4090 (24 GB). Inference with
// device_map="auto" spreads the model at ~18 GB per card, but plain multi-GPU training loads a full bf16
// replica onto every card and dies while loading. Run with `npm start`: it also writes the bundle of the best
// plan that fits to ./out (TUNEFIT_DEMO_OUT names another folder), replacing its own earlier output only.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { emitFiles, type PlanAnalysis, PlanBuilder, recommend, resolvePlan, writeFiles } from "tunefit";

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
const int = (n: number) => n.toLocaleString("en-US");

const seed = PlanBuilder.create()
  .model("Qwen/Qwen2-VL-72B-Instruct")
  .hardware({ gpu: "rtx4090", gpus: 8 })
  .full();

function memoryLines(a: PlanAnalysis): string[] {
  const { train, load } = a.memory;
  const b = train.perGpu.breakdown;
  return [
    `  training peak per GPU  ${gib(train.perGpu.deviceBytes)} of ${gib(train.capacityBytes)} usable ${train.fits ? "✔ fits" : "✖ does not fit"}`,
    `    weights ${gib(b.weights)} · gradients ${gib(b.gradients)} · optimizer ${gib(b.optimizer)} · activations ${gib(b.activations)} · logits ${gib(b.logits)}`,
    `  loading per GPU        ${gib(load.perGpuPeakBytes)} ` +
      (load.fits
        ? "✔"
        : `✖ runs out after ${((load.oomAtFraction ?? 0) * 100).toFixed(0)} % of the weights` +
          (load.oomAtShard ? `, in shard ${load.oomAtShard.index} of ${load.oomAtShard.of}` : "")),
  ];
}

const plain = seed.noSharding().analyze();
const { plan, params } = plain;
const bf16 = params.total * 2;
const out = [
  `tunefit demo: ${plan.model.id} on ${plan.gpus} × ${plan.gpu.name}`,
  "",
  `Parameters  ${int(params.total)} (language model ${int(params.text)}, vision ${int(params.visionTower + params.projector)})`,
  `Weights     ${(bf16 / 1e9).toFixed(1)} GB in bf16 = ${gib(bf16)}, ${plan.model.shards} shards of ~${(bf16 / (plan.model.shards ?? 1) / 1e9).toFixed(2)} GB`,
  `Each card   ${gib(plan.gpu.capacityBytes)} as nvidia-smi reports it`,
  `Inference   ${gib(plain.memory.inference.perGpuBytes)} on the fullest card with device_map="auto": ${plain.memory.inference.cpuBytes === 0 ? "it works" : `${gib(plain.memory.inference.cpuBytes)} of weights run from the CPU`}`,
  "",
  "1. Plain multi-GPU full fine-tuning (DDP): every rank loads its own full replica.",
  ...memoryLines(plain),
  "",
];

const zero3 = seed.zero(3).analyze();
out.push(
  "2. Full fine-tuning with DeepSpeed ZeRO-3: the model states are split over 8 GPUs, but 72.7 B trainable",
  "   parameters still need 16 B each (fp32 master, gradients, Adam) / 8 plus the gathered layers:",
  ...memoryLines(zero3),
  "",
);

// The usual fix: QLoRA sharded with FSDP1, loaded RAM-efficiently (rank 0 reads the checkpoint on the CPU, the
// other ranks start on the meta device), so no card ever holds a replica.
const qloraFsdp = seed.qlora().fsdp();
const qlora = qloraFsdp.analyze();
const qloraTrain = qlora.memory.train;
out.push(
  "3. QLoRA with FSDP1 and RAM-efficient loading: 4-bit base weights split over 8 GPUs, LoRA adapters trained:",
  ...memoryLines(qlora),
);
// What the step itself needs: FSDP1's wrap level stays in the allocator's cache, filling what the card leaves.
const need = (a: PlanAnalysis) => a.memory.train.perGpu.deviceBytes - a.memory.train.releasableBytes;
const liger = qloraFsdp.training({ liger: true }).analyze();
out.push(
  `  the step needs ${gib(need(qlora))}` +
    (qloraTrain.releasableBytes > 0
      ? `; the other ${gib(qloraTrain.releasableBytes)} is FSDP1's wrap level left in the allocator's cache, freed when short`
      : ""),
  `  with Liger's fused cross-entropy (no fp32 logits) it needs ${gib(need(liger))} ${liger.memory.train.fits ? "✔" : "✖"}`,
);
out.push("");

const { recommendations, evaluated } = recommend(seed.toInput(), { limit: 3 });
out.push(`4. What fits (${evaluated} plans evaluated, fastest first):`);
recommendations.forEach((r, i) => {
  out.push(
    `  ${i + 1}. ${r.summary}`,
    `     ${gib(r.deviceBytes)} per GPU, ~${r.stepSeconds.toFixed(0)} s per step`,
    `     tunefit plan ${r.args.join(" ")}`,
  );
});

// 5. The best plan's ready-to-run bundle. An existing folder is replaced only when it is an earlier demo bundle.
const best = recommendations[0];
if (best) {
  const dir = process.env.TUNEFIT_DEMO_OUT ?? "out";
  const shown = process.env.TUNEFIT_DEMO_OUT ? "$TUNEFIT_DEMO_OUT" : "./out";
  const readme = join(dir, "README.md");
  const ours =
    !existsSync(dir) ||
    (existsSync(readme) && readFileSync(readme, "utf8").startsWith("# Fine-tuning bundle:"));
  out.push("");
  if (ours) {
    const written = writeFiles(emitFiles(resolvePlan(best.input).plan), dir, { force: true });
    out.push(
      `5. Wrote the first plan's bundle (${written.files.length} files) to ${shown}: run ${shown}/launch.sh`,
    );
  } else {
    out.push(
      `5. ${shown} exists and is not a tunefit bundle: left alone (set TUNEFIT_DEMO_OUT to write elsewhere).`,
    );
  }
}
process.stdout.write(`${out.join("\n")}\n`);
