#!/usr/bin/env node
// Whole-process time of `tunefit plan --recommend` on the seed's case next to a bare `node -e 0`, median of
// several runs, and the number of candidate plans evaluated. Target: at most 8× the bare node start.
import { spawnSync } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cli = resolve(root, "dist/cli.js");
const SEED = [
  "plan",
  "--model",
  "Qwen/Qwen2-VL-72B-Instruct",
  "--gpu",
  "rtx4090",
  "--gpus",
  "8",
  "--method",
  "full",
];
const RUNS = Number(process.env.RUNS ?? 7);

function time(args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { encoding: "utf8" });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  return { ms, r };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const bare = [];
const plan = [];
const recommendRuns = [];
let evaluated = 0;
for (let i = 0; i < RUNS; i++) {
  bare.push(time(["-e", "0"]).ms);
  plan.push(time([cli, ...SEED, "--json"]).ms);
  const { ms, r } = time([cli, ...SEED, "--recommend", "--json"]);
  recommendRuns.push(ms);
  if (i === 0) {
    const report = JSON.parse(r.stdout);
    evaluated = report.recommendationSearch.evaluated;
  }
}
const b = median(bare);
const p = median(plan);
const rec = median(recommendRuns);
console.log(`runs: ${RUNS} (median)`);
console.log(`node -e 0                      ${b.toFixed(0).padStart(6)} ms`);
console.log(`tunefit plan (seed)            ${p.toFixed(0).padStart(6)} ms  ${(p / b).toFixed(1)}×`);
console.log(
  `tunefit plan --recommend       ${rec.toFixed(0).padStart(6)} ms  ${(rec / b).toFixed(1)}×  (target ≤ 8×; ${evaluated} candidate plans evaluated)`,
);
