#!/usr/bin/env node
// Memory-model accuracy against published measured peaks (bench/data/calibration-cases.json, translated from
// the calibration set by scripts/gen-bench-cases.mjs). Prints per case measured vs predicted, then summaries:
// per scope, per tier, per source group, and a leave-one-group-out error for the one tunable assumption.
// Metric rule: allocated/active peak → allocatedBytes; max_memory_reserved → reservedBytes; nvidia-smi →
// deviceBytes; not stated → reservedBytes.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { analyzePlan, estimateMemory, resolvePlan } from "../dist/index.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cases = JSON.parse(readFileSync(resolve(root, "bench/data/calibration-cases.json"), "utf8"));
const GiB = 1024 ** 3;
/** share of what the card leaves PyTorch from which a reserved reading counts as capped by the card */
const AT_LIMIT_SHARE = 0.94;

/**
 * The prediction for a case: with the run's own settings that enter as memory-model assumptions (its per-case
 * overrides, `c.assumptions`), unless `plain` asks for the model's defaults alone.
 */
function predict(c, overrides = {}, plain = false) {
  const { plan } = resolvePlan(c.plan, { cwd: root });
  const m = estimateMemory(plan, { ...(plain ? {} : c.assumptions), ...overrides }).train.perGpu;
  const key = { allocated: "allocatedBytes", reserved: "reservedBytes", device: "deviceBytes" }[
    c.measured.metric
  ];
  return { bytes: m[key], breakdown: m.breakdown };
}

const median = (xs) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
const pct = (x) => `${(x * 100).toFixed(1)}%`;

const skipped = cases.filter((c) => c.excluded.some((e) => e.startsWith("BERT")));
const rows = cases
  .filter((c) => !skipped.includes(c))
  .map((c) => {
    const p = predict(c);
    const plain = predict(c, {}, true);
    return {
      c,
      predicted: p.bytes,
      breakdown: p.breakdown,
      error: (p.bytes - c.measured.bytes) / c.measured.bytes,
      plainError: (plain.bytes - c.measured.bytes) / c.measured.bytes,
    };
  });

console.log(
  "case".padEnd(64),
  "scope".padEnd(10),
  "tier",
  "metric".padEnd(9),
  "measured",
  "predicted",
  "error",
);
for (const r of rows) {
  console.log(
    r.c.id.padEnd(64),
    r.c.scope.padEnd(10),
    r.c.tier.padEnd(4),
    r.c.measured.metric.padEnd(9),
    `${(r.c.measured.bytes / GiB).toFixed(2)}`.padStart(8),
    `${(r.predicted / GiB).toFixed(2)}`.padStart(9),
    `${r.error >= 0 ? "+" : ""}${pct(r.error)}`.padStart(7),
  );
}

function summary(label, list) {
  if (list.length === 0) return;
  const abs = list.map((r) => Math.abs(r.error));
  const worst = list.reduce((w, r) => (Math.abs(r.error) > Math.abs(w.error) ? r : w));
  console.log(
    `${label.padEnd(44)} n=${String(list.length).padStart(2)}  median |err| ${pct(median(abs)).padStart(6)}  ` +
      `max ${pct(Math.max(...abs)).padStart(6)} (${worst.c.id})  >30%: ${abs.filter((x) => x > 0.3).length}`,
  );
}

for (const c of skipped) console.log(c.id.padEnd(64), "not predicted:", c.excluded.join("; "));

console.log("\nSummary (GiB = 2^30 bytes; 'GB (ambiguous)' read as GiB)");
const single = rows.filter((r) => r.c.scope === "single-gpu");
summary("single GPU, no ZeRO/FSDP (target)", single);
summary(
  "  tier A",
  single.filter((r) => r.c.tier === "A"),
);
summary(
  "  tier B",
  single.filter((r) => r.c.tier === "B"),
);
const sharded = rows.filter((r) => r.c.scope === "sharded");
summary("sharded (ZeRO/FSDP)", sharded);
summary(
  "  multi-GPU",
  sharded.filter((r) => (r.c.plan.gpus ?? 1) > 1),
);
summary(
  "excluded (compile, fused step, act. offload, BERT)",
  rows.filter((r) => r.c.scope === "excluded"),
);
console.log("\nPer source group (single GPU):");
for (const g of [...new Set(single.map((r) => r.c.group))])
  summary(
    `  ${g}`,
    single.filter((r) => r.c.group === g),
  );
console.log("\nPer source group (sharded):");
for (const g of [...new Set(sharded.map((r) => r.c.group))])
  summary(
    `  ${g}`,
    sharded.filter((r) => r.c.group === g),
  );

// A reading above the card's own capacity cannot be what the unit rule makes of it.
const overCapacity = rows.filter((r) => {
  const { plan } = resolvePlan(r.c.plan, { cwd: root });
  return r.c.measured.bytes > plan.gpu.capacityBytes;
});
if (overCapacity.length > 0) {
  console.log("\nReadings above the card's capacity as the unit rule reads them (kept as read):");
  for (const r of overCapacity) {
    const { plan } = resolvePlan(r.c.plan, { cwd: root });
    console.log(
      `  ${r.c.id}: ${r.c.measured.value} ${r.c.measured.unit} → ${(r.c.measured.bytes / GiB).toFixed(2)} GiB per GPU, ` +
        `over ${plan.gpu.id}'s ${(plan.gpu.capacityBytes / GiB).toFixed(2)} GiB; read as GB it is ` +
        `${((r.c.measured.bytes / GiB) * (1e9 / GiB)).toFixed(2)} GiB`,
    );
  }
}

// A reserved peak at what the card leaves PyTorch (its capacity less the predicted CUDA context, kernels and NCCL):
// the caching allocator frees its cached blocks and retries before it reports out of memory, so such a run's
// reserved memory is capped by the card. The reading is then a floor on what the run would reserve on a larger
// card, and a prediction below it is low by at least the difference.
const atLimit = rows.filter((r) => {
  if (r.c.measured.metric !== "reserved" || r.c.scope === "excluded") return false;
  const { plan } = resolvePlan(r.c.plan, { cwd: root });
  const limit = plan.gpu.capacityBytes - r.breakdown.runtime;
  return r.c.measured.bytes >= AT_LIMIT_SHARE * limit;
});
if (atLimit.length > 0) {
  console.log(
    `\nReserved readings at the card's limit (≥ ${AT_LIMIT_SHARE * 100} % of capacity less the predicted runtime): the ` +
      "allocator frees its cache and retries before failing, so a run that reaches the limit reads the limit: these " +
      "readings are floors of what the runs would reserve on a larger card",
  );
  for (const r of atLimit) {
    const { plan } = resolvePlan(r.c.plan, { cwd: root });
    const limit = plan.gpu.capacityBytes - r.breakdown.runtime;
    console.log(
      `  ${r.c.id.padEnd(56)} measured ${(r.c.measured.bytes / GiB).toFixed(2)} of ${(limit / GiB).toFixed(2)} GiB ` +
        `on ${plan.gpu.id}; predicted ${(r.predicted / GiB).toFixed(2)} (${r.error >= 0 ? "+" : ""}${pct(r.error)})`,
    );
  }
}

// The rule reads an unstated metric as max_memory_reserved. What the same rows give read as nvidia-smi (the
// prediction's deviceBytes: reserved + CUDA context, kernels and NCCL) shows how much rests on that reading.
const unstated = rows.filter((r) => r.c.scope !== "excluded" && r.c.measured.metricStated === false);
if (unstated.length > 0) {
  console.log(
    "\nSources that do not state their metric (read as reserved above): the same rows read as nvidia-smi, and, where " +
      "the unit is an ambiguous GB, as reserved memory in GB of 10⁹ bytes",
  );
  for (const g of [...new Set(unstated.map((r) => r.c.group))]) {
    for (const scope of ["single-gpu", "sharded"]) {
      const list = unstated.filter((r) => r.c.group === g && r.c.scope === scope);
      if (list.length === 0) continue;
      const asDevice = list.map((r) => {
        const { plan } = resolvePlan(r.c.plan, { cwd: root });
        const device = estimateMemory(plan, r.c.assumptions).train.perGpu.deviceBytes;
        return Math.abs((device - r.c.measured.bytes) / r.c.measured.bytes);
      });
      const asRule = list.map((r) => Math.abs(r.error));
      // "GB (ambiguous)" is read as GiB by the unit rule; read as 10⁹ bytes the reading is 0.931 of that
      const ambiguous = list.filter((r) => r.c.measured.unit === "GB (ambiguous)");
      const asGB = ambiguous.map((r) => {
        const bytes = (r.c.measured.bytes / GiB) * 1e9;
        return Math.abs((r.predicted - bytes) / bytes);
      });
      console.log(
        `  ${`${g} (${scope})`.padEnd(48)} n=${String(list.length).padStart(2)}  median |err| as reserved ` +
          `${pct(median(asRule)).padStart(6)}, as nvidia-smi ${pct(median(asDevice)).padStart(6)} ` +
          `(max ${pct(Math.max(...asDevice))})` +
          (ambiguous.length === list.length
            ? `, as reserved in GB of 10⁹ bytes ${pct(median(asGB)).padStart(6)} (max ${pct(Math.max(...asGB))})`
            : ""),
      );
    }
  }
}

const overridden = rows.filter((r) => r.c.overrides.length > 0);
console.log(
  `\nPer-case overrides: ${overridden.length} (tier A: ${overridden.filter((r) => r.c.tier === "A").length}): ` +
    "a run's own DeepSpeed settings where they differ from LLaMA-Factory's configs (entered as the assumptions " +
    "doctor reads from a config), its launcher's allocator where it is not llamafactory-cli's (expandableSegments), " +
    "and the loss of a remote-code model that does not upcast its logits (entered as logitsBytesPerVocabToken). " +
    "Each case's error with and without them:",
);
const signed = (x) => `${x >= 0 ? "+" : ""}${pct(x)}`;
for (const r of overridden)
  console.log(
    `  ${r.c.id.padEnd(44)} ${signed(r.error).padStart(7)} (without: ${signed(r.plainError).padStart(7)}): ` +
      r.c.overrides.join("; "),
  );
if (overridden.length > 0) {
  console.log("Summary without per-case overrides:");
  const plain = (list) => list.map((r) => ({ ...r, error: r.plainError }));
  summary("  single GPU, no ZeRO/FSDP (target)", plain(single));
  summary("  sharded (ZeRO/FSDP)", plain(sharded));
  summary("    multi-GPU", plain(sharded.filter((r) => (r.c.plan.gpus ?? 1) > 1)));
}
// Stacks whose own training loop keeps the model output alive through backward, which no plan flag expresses (the
// HF Trainer, LLaMA-Factory's, drops it first). Shown as what-ifs through the assumption a user of such a loop would
// set; never counted above, and tier-A cases take no overrides.
const HELD_OUTPUT = [
  {
    group: "answerai_fsdp_qlora_benchmarks",
    bytes: 4,
    why: "train.py keeps `output` until after optimizer.step(); transformers 4.38's LlamaForCausalLM returns logits.float()",
  },
  {
    group: "peft_metamathqa_benchmark",
    bytes: 2,
    why: "run.py keeps `outputs` through loss.backward(); current transformers returns bf16 logits",
  },
];
console.log(
  "\nWhat-ifs, not counted: loops that hold the model output through backward (heldOutputLogitsBytesPerVocabToken)",
);
for (const h of HELD_OUTPUT) {
  const list = rows.filter((r) => r.c.group === h.group);
  const held = list.map((r) => {
    const p = predict(r.c, { heldOutputLogitsBytesPerVocabToken: h.bytes });
    return (p.bytes - r.c.measured.bytes) / r.c.measured.bytes;
  });
  const abs = (xs) => xs.map((x) => Math.abs(x));
  console.log(
    `  ${h.group} (${h.bytes} B: ${h.why}): median |err| ${pct(median(abs(list.map((r) => r.error))))} → ` +
      `${pct(median(abs(held)))}, max ${pct(Math.max(...abs(list.map((r) => r.error))))} → ${pct(Math.max(...abs(held)))}`,
  );
}

// bitsandbytes before 0.43.2 saved every 4-bit linear's input (bnb4bitSavesInput): fsdp_qlora's runs asked for
// bitsandbytes >= 0.43.0 (the first with FSDP's quant_storage, March 2024); 0.43.2 came in July 2024
{
  const list = rows.filter(
    (r) => r.c.group === "answerai_fsdp_qlora_benchmarks" && r.c.plan.method === "qlora",
  );
  const old = list.map(
    (r) => (predict(r.c, { bnb4bitSavesInput: true }).bytes - r.c.measured.bytes) / r.c.measured.bytes,
  );
  const abs = (xs) => xs.map((x) => Math.abs(x));
  console.log(
    "  answerai_fsdp_qlora_benchmarks, QLoRA rows (bitsandbytes 0.43.0/0.43.1, before 0.43.2 stopped saving each 4-bit " +
      `linear's input: bnb4bitSavesInput): median |err| ${pct(median(abs(list.map((r) => r.error))))} → ` +
      `${pct(median(abs(old)))}, max ${pct(Math.max(...abs(list.map((r) => r.error))))} → ${pct(Math.max(...abs(old)))} (n=${list.length})`,
  );
}

console.log("\nMapping notes for the single-GPU cases (stack differences no flag expresses):");
for (const c of cases.filter((x) => x.scope === "single-gpu" && x.mapping.length > 0)) {
  console.log(`  ${c.id}: ${c.mapping.join("; ")}`);
}

// tunefit's own probe.py runs (not calibration cases): every metric, since each run measured all three.
const probe = JSON.parse(readFileSync(resolve(root, "bench/data/probe-runs.json"), "utf8"));
console.log("\nprobe.py runs on one H200 (own measurements, not counted above). In-sample, not a check: the");
console.log(
  "fragmentation share and cudaKernelBytes were set from their reserved and device figures, and their",
);
console.log("allocated gap prompted the reading of the loss's backward peak:");
console.log("  run".padEnd(40), "allocated", "reserved ", "device   ", "(measured / predicted GiB, error)");
for (const r of probe.runs) {
  const { plan } = resolvePlan(r.plan, { cwd: root });
  const m = estimateMemory(plan).train.perGpu;
  const cell = (key, bytes) => {
    const measured = r.measuredGiB[key];
    const predicted = bytes / GiB;
    const err = (predicted - measured) / measured;
    return `${measured.toFixed(2)} / ${predicted.toFixed(2)} ${err >= 0 ? "+" : ""}${pct(err)}`;
  };
  console.log(
    `  ${r.id}`.padEnd(40),
    cell("allocated", m.allocatedBytes),
    "|",
    cell("reserved", m.reservedBytes),
    "|",
    cell("device", m.deviceBytes),
  );
}

// Published runs outside the calibration set that share everything but one setting: the differences between them do
// not depend on the metric or on unknown inputs they share (here the longest batch), so they check the mechanisms.
const cross = JSON.parse(readFileSync(resolve(root, "bench/data/cross-checks.json"), "utf8"));
console.log("\nCross-checks (published runs outside the calibration set; reserved peaks, GiB):");
for (const set of cross.sets) {
  const reserved = (run, seqLen) =>
    estimateMemory(resolvePlan({ ...run.plan, seqLen }, { cwd: root }).plan).train.perGpu.reservedBytes;
  const cap = set.runs[0].plan.seqLen;
  // the length at which a run's prediction meets its measurement (the rows' longest batch, if the model is right)
  const meets = (run) => {
    let len = 64;
    while (len < cap && reserved(run, len + 1) <= run.measuredBytes) len += 1;
    return len;
  };
  const [first, ...rest] = set.runs;
  console.log(`  ${set.id}: ${set.note}`);
  for (const run of rest) {
    const measured = (run.measuredBytes - first.measuredBytes) / GiB;
    const predicted = (reserved(run, cap) - reserved(first, cap)) / GiB;
    console.log(
      `    ${run.id} − ${first.id}: measured ${measured.toFixed(2)}, predicted ${predicted.toFixed(2)} at ${cap} tokens`,
    );
  }
  console.log(
    `    length at which each prediction meets its measurement: ${set.runs.map((r) => `${r.id} ${meets(r)}`).join(", ")} tokens`,
  );
}

// Another stack's published table, with its metric fixed by its code: allocated peaks in GB of 10^9 bytes.
{
  const ind = cross.independent;
  console.log(`\nIndependent stack (${ind.id}; allocated peaks, GB of 10^9 bytes): ${ind.stack}`);
  const errs = [];
  for (const run of ind.runs) {
    const { plan } = resolvePlan(run.plan, { cwd: root });
    const at = (over) => estimateMemory(plan, over).train.perGpu.allocatedBytes / 1e9;
    const predicted = at({});
    const err = (predicted - run.measuredGB) / run.measuredGB;
    // QLoRA as its bitsandbytes 0.41.1 ran it: every 4-bit linear's input saved
    const asRun = plan.method === "qlora" ? at({ bnb4bitSavesInput: true }) : predicted;
    const errAsRun = (asRun - run.measuredGB) / run.measuredGB;
    errs.push([err, errAsRun]);
    console.log(
      `  ${run.id}`.padEnd(28),
      `measured ${run.measuredGB.toFixed(2)}, predicted ${predicted.toFixed(2)} (${err >= 0 ? "+" : ""}${pct(err)})` +
        (plan.method === "qlora"
          ? `; with bitsandbytes 0.41.1's saved inputs (bnb4bitSavesInput) ${asRun.toFixed(2)} (${errAsRun >= 0 ? "+" : ""}${pct(errAsRun)})`
          : ""),
    );
  }
  const abs = (i) => errs.map((e) => Math.abs(e[i]));
  console.log(
    `  median |err| ${pct(median(abs(0)))} (max ${pct(Math.max(...abs(0)))}); as run, with its bitsandbytes: ${pct(median(abs(1)))} (max ${pct(Math.max(...abs(1)))})`,
  );
}

// Out-of-memory reports that name the request which failed inside DeepSpeed's step: what was allocated then is the
// model states plus the step's tensors made before it. ZeRO-1/2: the flattened 16-bit gradients, then their fp32
// copy. ZeRO-3 steps sub-group by sub-group (sub_group_size 1e9 elements in LLaMA-Factory's ds_z3_config and in the
// configs tunefit writes), and at the first step torch's AdamW makes each sub-group's moments as it reaches it: before
// sub-group k's second moment, the 16-bit shards of every parameter, the 16-bit gradient partition, the fp32 master
// partition, the moments of the k − 1 sub-groups done, and sub-group k's fp32 gradient and first moment.
{
  const oom = cross.oomAtStep;
  const ZERO3_SUB_GROUP_ELEMENTS = 1e9;
  console.log(`\nAt a named request in DeepSpeed's step (${oom.id}; GiB): ${oom.source}`);
  for (const run of oom.runs) {
    const a = analyzePlan(run.plan, { cwd: root, assumptions: run.assumptions ?? {} });
    const m = a.memory.train.perGpu;
    const b = m.breakdown;
    const world = a.plan.gpus * a.plan.nodes;
    const partition = a.trainable.trainable / world;
    const measured = (x, y) => `measured ${x.toFixed(2)}, predicted ${y.toFixed(2)} (${pct((y - x) / x)})`;
    if (run.request === "fp32-copy") {
      const states = b.weights + b.gradients + b.optimizer;
      // the flattened 16-bit partition is live when its fp32 copy is requested
      const before = (states + partition * 2) / GiB;
      const request = (partition * 4) / GiB;
      console.log(
        `  ${run.id}`.padEnd(30),
        `already allocated: ${measured(run.allocatedGiB, before)}; ` +
          `request: measured ${run.requestGiB.toFixed(2)}, predicted ${request.toFixed(2)}; ${run.url}`,
      );
      continue;
    }
    // zero3-exp-avg-sq: the states the step starts from, then one sub-group after another
    const shards = (a.params.total * 2) / world;
    const master = partition * 4;
    const sub = Math.min(ZERO3_SUB_GROUP_ELEMENTS, partition);
    const groups = Math.ceil(partition / ZERO3_SUB_GROUP_ELEMENTS);
    const before = [];
    for (let k = 1; k <= groups; k++) {
      const done = Math.min(partition, (k - 1) * ZERO3_SUB_GROUP_ELEMENTS) * 8;
      before.push(
        (shards + b.gradients + master + done + Math.min(sub, partition - (k - 1) * sub) * 8) / GiB,
      );
    }
    const nearest = before.reduce(
      (n, x, i) => (Math.abs(x - run.allocatedGiB) < Math.abs(before[n] - run.allocatedGiB) ? i : n),
      0,
    );
    const runtime = run.processGiB - run.allocatedGiB - run.reservedUnallocatedGiB;
    const fits = m.deviceBytes <= run.capacityGiB * GiB;
    console.log(
      `  ${run.id}`.padEnd(30),
      `already allocated before each sub-group's second moment (${groups} sub-groups): ${before.map((x) => x.toFixed(2)).join(" | ")}; ` +
        `measured ${run.allocatedGiB.toFixed(2)}; the message does not name the sub-group: the reading lies ${pct((before[nearest] - run.allocatedGiB) / run.allocatedGiB)} from sub-group ${nearest + 1}'s, the predictions being ${((before[1] ?? 0) - (before[0] ?? 0)).toFixed(2)} apart (a check of the step's start, its increments and the request, not of which sub-group failed); ` +
        `request: measured ${run.requestGiB.toFixed(2)}, predicted ${((sub * 4) / GiB).toFixed(2)} (one sub-group in fp32, closed at the first parameter past 1e9 elements); ` +
        `memory outside PyTorch (in use − allocated − cached): ${measured(runtime, b.runtime / GiB)}; ` +
        `the training step: predicted ${(m.deviceBytes / GiB).toFixed(2)} per GPU on ${run.capacityGiB.toFixed(2)}: ${fits ? "fits (it did not)" : "out of memory, as it was"}; ${run.url}`,
    );
  }
}

// Host memory printed beside two calibration cases: the per-node figure tunefit checks against --host-ram.
console.log(`\nHost RAM per node (published beside calibration cases; GiB):`);
for (const run of cross.hostRam.runs) {
  const c = cases.find((x) => x.id === run.case);
  const predicted = estimateMemory(resolvePlan(c.plan, { cwd: root }).plan).hostRam.perNodeBytes / GiB;
  console.log(
    `  ${run.case}`.padEnd(50),
    `measured ${run.measuredGiB} (${run.reading}), predicted ${predicted.toFixed(1)}, ${pct((predicted - run.measuredGiB) / run.measuredGiB)}`,
  );
}

// Leave-one-group-out: refit the one tunable assumption (allocator fragmentation share) on the other groups,
// then score the held-out group with it.
const grid = [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4];
const score = (list, f) =>
  median(
    list.map((r) =>
      Math.abs(
        (predict(r.c, { fragmentationOfTransient: f }).bytes - r.c.measured.bytes) / r.c.measured.bytes,
      ),
    ),
  );
console.log("\nLeave-one-group-out (fragmentationOfTransient refitted without the group):");
const logo = [];
for (const g of [...new Set(single.map((r) => r.c.group))]) {
  const train = single.filter((r) => r.c.group !== g);
  const test = single.filter((r) => r.c.group === g);
  const best = grid.reduce((b, f) => (score(train, f) < score(train, b) ? f : b), grid[0]);
  for (const r of test)
    logo.push(
      Math.abs(
        (predict(r.c, { fragmentationOfTransient: best }).bytes - r.c.measured.bytes) / r.c.measured.bytes,
      ),
    );
  console.log(`  ${g.padEnd(42)} fitted ${best.toFixed(2)}  held-out median |err| ${pct(score(test, best))}`);
}
console.log(`  overall held-out median |err| ${pct(median(logo))}, max ${pct(Math.max(...logo))}`);
