import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { listGpus } from "../../src/catalog/gpus.ts";
import { findCatalogModel, listCatalogModels } from "../../src/catalog/models.ts";
import { run } from "../../src/cli/run.ts";
import { emitAnalysis } from "../../src/emit/bundle.ts";
import { checkBundle } from "../../src/emit/check-bundle.ts";
import { TunefitError } from "../../src/errors.ts";
import { DEFAULT_ASSUMPTIONS } from "../../src/memory/assumptions.ts";
import { takesVideos } from "../../src/model/support.ts";
import { analyzePlan } from "../../src/plan/analyze.ts";
import { inputToArgs } from "../../src/plan/recommend.ts";
import { PLAN_RULES } from "../../src/plan/rules.ts";
import {
  Attention,
  FsdpStrategy,
  LowMemoryOptimizer,
  Method,
  Offload,
  type PlanInput,
  Precision,
  QuantMethod,
  Sharding,
} from "../../src/schema/plan.ts";

/*
 * Property tests over random plans. The run count is a knob: TUNEFIT_PROP_RUNS (1,000 in `npm test`,
 * 10,000 in `npm run test:props`). Generators reach every enum value of the plan (asserted after the run).
 */
const RUNS = Number(process.env.TUNEFIT_PROP_RUNS ?? 1000);
const TIMEOUT = Math.max(120_000, RUNS * 200);

const MODELS = listCatalogModels().map((m) => m.ids[0]?.id as string);
const VISION = new Set(
  listCatalogModels()
    .filter((m) => m.architecture.vision !== null)
    .map((m) => m.ids[0]?.id as string),
);
const IMAGE_FIELDS = ["freezeVisionTower", "freezeProjector", "imagesPerSample", "imageMaxPixels"];
const VIDEO = new Set(
  listCatalogModels()
    .filter((m) => takesVideos(m.architecture))
    .map((m) => m.ids[0]?.id as string),
);
const VIDEO_FIELDS = ["videosPerSample", "videoFrames", "videoMaxPixels"];
const GPUS = listGpus().map((g) => g.id);
const OPTIMIZERS = ["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "sgd", "adafactor", "adamw_bnb_8bit"];

const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });

const methodArb: fc.Arbitrary<Partial<PlanInput>> = fc.oneof(
  fc.record({ method: fc.constant("full" as const) }),
  fc.record({ method: fc.constant("full" as const), lowMemoryOptimizer: fc.constant("badam" as const) }),
  fc.record({
    method: fc.constantFrom(...Method.options),
    lowMemoryOptimizer: fc.constantFrom("adam_mini" as const, "muon" as const),
  }),
  fc.record({
    method: fc.constantFrom("full" as const, "freeze" as const),
    lowMemoryOptimizer: fc.constantFrom("galore" as const, "apollo" as const),
    lowMemoryRank: opt(fc.constantFrom(4, 16, 128)),
    lowMemoryLayerwise: opt(fc.boolean()),
  }),
  fc.record({
    method: fc.constant("freeze" as const),
    freezeTrainableLayers: opt(fc.integer({ min: -3, max: 3 }).filter((n) => n !== 0)),
  }),
  fc.record({
    method: fc.constant("lora" as const),
    loraRank: opt(fc.constantFrom(4, 8, 16, 64)),
    loraAlpha: opt(fc.constantFrom(8, 16, 32)),
    loraDropout: opt(fc.constantFrom(0, 0.05, 0.1)),
    useDora: opt(fc.boolean()),
  }),
  fc.record({
    method: fc.constant("qlora" as const),
    quantBits: opt(fc.constantFrom(4 as const, 8 as const)),
    quantMethod: opt(fc.constantFrom(...QuantMethod.options)),
    loraRank: opt(fc.constantFrom(8, 16)),
    useDora: opt(fc.boolean()),
  }),
);

const planArb: fc.Arbitrary<PlanInput> = fc
  .record({
    model: fc.constantFrom(...MODELS),
    gpu: fc.constantFrom(...GPUS),
    gpus: opt(fc.constantFrom(1, 2, 4, 8)),
    nodes: opt(fc.constantFrom(1, 2, 4)),
    hostRam: opt(fc.constantFrom(64, 256, 1024)),
    headroom: opt(fc.constantFrom(0, 0.05, 0.2)),
    sharding: opt(fc.constantFrom(...Sharding.options)),
    fsdpStrategy: opt(fc.constantFrom(...FsdpStrategy.options)),
    offload: opt(fc.constantFrom(...Offload.options)),
    precision: opt(fc.constantFrom(...Precision.options)),
    optimizer: opt(fc.constantFrom(...OPTIMIZERS)),
    seqLen: opt(fc.constantFrom(256, 2048, 8192)),
    packing: opt(fc.boolean()),
    microBatch: opt(fc.constantFrom(1, 2, 4)),
    gradAccum: opt(fc.constantFrom(1, 8)),
    gradientCheckpointing: opt(fc.boolean()),
    attention: opt(fc.constantFrom(...Attention.options)),
    liger: opt(fc.boolean()),
    freezeVisionTower: opt(fc.boolean()),
    freezeProjector: opt(fc.boolean()),
    imagesPerSample: opt(fc.constantFrom(0, 1, 2)),
    imageMaxPixels: opt(fc.constantFrom(512, 65536, 262144)),
    videosPerSample: opt(fc.constantFrom(0, 1, 2)),
    videoFrames: opt(fc.constantFrom(1, 4, 16, 128)),
    videoMaxPixels: opt(fc.constantFrom(100, 16384, 65536)),
    dataset: opt(fc.constantFrom("alpaca_en_demo", "identity,alpaca_en_demo")),
  })
  .chain((base) => methodArb.map((m) => ({ ...base, ...m })))
  .map((raw) => {
    const input: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(raw)) if (v !== undefined) input[k] = v;
    if (input.sharding !== "fsdp") delete input.fsdpStrategy;
    if (!VISION.has(input.model as string)) for (const k of IMAGE_FIELDS) delete input[k];
    if (!VIDEO.has(input.model as string)) for (const k of VIDEO_FIELDS) delete input[k];
    const known = findCatalogModel(input.model as string);
    if (!known?.defaultTemplate && !known?.groupTemplate) input.template = "default";
    return input as PlanInput;
  });

describe(`plan properties (${RUNS} runs)`, () => {
  it(
    "every plan analyzes without throwing; memory adds up; every emitted file parses and passes its schema; rules report their own path",
    () => {
      const seen: Record<string, Set<unknown>> = {};
      const note = (k: string, v: unknown) => {
        seen[k] ??= new Set();
        seen[k].add(v);
      };
      const fired = new Set<string>();
      fc.assert(
        fc.property(planArb, (input) => {
          const a = analyzePlan(input);
          const p = a.plan;
          for (const k of [
            "method",
            "sharding",
            "fsdpStrategy",
            "offload",
            "precision",
            "attention",
            "quantBits",
            "quantMethod",
            "lowMemoryOptimizer",
          ] as const) {
            note(k, p[k]);
          }
          // memory invariants
          const t = a.memory.train.perGpu;
          const b = t.breakdown;
          for (const v of [...Object.values(b), t.allocatedBytes, t.reservedBytes, t.deviceBytes]) {
            expect(Number.isSafeInteger(v) && v >= 0).toBe(true);
          }
          expect(b.weights + b.gradients + b.optimizer + b.activations + b.logits + b.buffers).toBe(
            t.allocatedBytes,
          );
          expect(t.allocatedBytes + b.fragmentation).toBe(t.reservedBytes);
          expect(t.reservedBytes + b.runtime).toBe(t.deviceBytes);
          expect(a.memory.train.fits).toBe(t.deviceBytes <= a.memory.train.capacityBytes);
          expect(a.memory.load.perGpuPeakBytes).toBeGreaterThan(0);
          expect(a.memory.hostRam.perNodeBytes).toBeGreaterThan(0);
          // rules: each applying rule is reported at the first field of its definition
          for (const r of PLAN_RULES) {
            if (!r.applies(p, DEFAULT_ASSUMPTIONS)) continue;
            fired.add(r.code);
            expect(a.issues.some((i) => i.code === r.code && i.path === r.fields[0])).toBe(true);
          }
          // the bundle: every file parses, every key passes its target's schema and the cross-file rules
          const files = emitAnalysis(a);
          for (const f of files) {
            if (typeof f.contents !== "string") continue;
            if (f.path.endsWith(".yaml"))
              expect(() => parse(f.contents as string, { version: "1.1" })).not.toThrow();
            if (f.path.endsWith(".json")) expect(() => JSON.parse(f.contents as string)).not.toThrow();
          }
          const problems = checkBundle(files, p).filter((i) => i.severity === "error");
          expect(problems).toEqual([]);
        }),
        { numRuns: RUNS, seed: 20261128 },
      );
      // the generators reached every enum value of the plan
      expect([...(seen.method ?? [])].sort()).toEqual([...Method.options].sort());
      expect([...(seen.sharding ?? [])].sort()).toEqual([...Sharding.options].sort());
      expect([...(seen.fsdpStrategy ?? [])].filter(Boolean).sort()).toEqual([...FsdpStrategy.options].sort());
      expect([...(seen.offload ?? [])].sort()).toEqual([...Offload.options].sort());
      expect([...(seen.precision ?? [])].sort()).toEqual([...Precision.options].sort());
      expect([...(seen.attention ?? [])].sort()).toEqual([...Attention.options].sort());
      expect([...(seen.quantBits ?? [])].filter(Boolean).sort()).toEqual([4, 8]);
      expect([...(seen.lowMemoryOptimizer ?? [])].filter(Boolean).sort()).toEqual(
        [...LowMemoryOptimizer.options].sort(),
      );
      expect([...(seen.quantMethod ?? [])].filter(Boolean).sort()).toEqual([...QuantMethod.options].sort());
      // and made most rules fire (the rest need rarer combinations, covered by the rule fixtures)
      expect(fired.size).toBeGreaterThanOrEqual(10);
    },
    TIMEOUT,
  );

  it(
    "PyTorch's default allocator (expandableSegments=false) changes only the reserve: allocated stays, reserved never drops, a plan that fits still fits",
    () => {
      fc.assert(
        fc.property(planArb, (input) => {
          const expandable = analyzePlan(input).memory.train;
          const segmented = analyzePlan(input, { assumptions: { expandableSegments: false } }).memory.train;
          const t = segmented.perGpu;
          const b = t.breakdown;
          expect(b.weights + b.gradients + b.optimizer + b.activations + b.logits + b.buffers).toBe(
            t.allocatedBytes,
          );
          expect(t.allocatedBytes + b.fragmentation).toBe(t.reservedBytes);
          expect(t.allocatedBytes).toBe(expandable.perGpu.allocatedBytes);
          expect(t.reservedBytes).toBeGreaterThanOrEqual(expandable.perGpu.reservedBytes);
          expect(segmented.releasableBytes).toBeLessThanOrEqual(b.fragmentation);
          if (expandable.fits) expect(segmented.fits).toBe(true);
        }),
        { numRuns: Math.ceil(RUNS / 4), seed: 20261207 },
      );
    },
    TIMEOUT,
  );

  /** One invalid value per field, as the CLI receives it. */
  const INVALID: readonly [keyof PlanInput, string][] = [
    ["gpus", "0"],
    ["gpus", "-2"],
    ["nodes", "1.5"],
    ["gpuMemory", "-8"],
    ["hostRam", "0"],
    ["headroom", "1"],
    ["method", "sft"],
    ["sharding", "zero4"],
    ["offload", "disk"],
    ["precision", "fp8"],
    ["optimizer", "adamw_9bit"],
    ["seqLen", "0"],
    ["microBatch", "2.5"],
    ["gradAccum", "-1"],
    ["attention", "flash"],
    ["liger", "maybe"],
    ["packing", "2"],
    ["imagesPerSample", "-1"],
    ["imageMaxPixels", "0"],
    ["dataset", "a b"],
    ["template", "x;y"],
    ["gpu", "rtx9090"],
    ["model", "nobody/nothing-7b"],
  ];

  it(
    "a random invalid mutation of one field gives exit 2 whose path is that field",
    () => {
      fc.assert(
        fc.property(planArb, fc.constantFrom(...INVALID), (input, [field, bad]) => {
          const args = inputToArgs(input);
          const flag = `--${field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
          let stdout = "";
          const code = run(["plan", ...args, flag, bad, "--json"], {
            stdout: (t) => {
              stdout += t;
            },
            stderr: () => {},
            cwd: process.cwd(),
          });
          expect(code).toBe(2);
          const issues = (JSON.parse(stdout) as { issues: { path: string }[] }).issues;
          expect(issues.some((i) => i.path === field || i.path.startsWith(`${field}.`))).toBe(true);
        }),
        { numRuns: Math.max(100, Math.floor(RUNS / 5)), seed: 20261128 },
      );
    },
    TIMEOUT,
  );

  it("the library raises usage errors (never anything else) for the same mutations", () => {
    const base: PlanInput = { model: "Qwen/Qwen3-4B", gpu: "a100-80g" };
    for (const [field, bad] of [
      ["gpus", 0],
      ["gpus", "8"],
      ["seqLen", Number.NaN],
      ["headroom", Number.POSITIVE_INFINITY],
      ["method", null],
    ] as const) {
      try {
        analyzePlan({ ...base, [field]: bad });
        expect.unreachable(`${field} = ${String(bad)} was accepted`);
      } catch (e) {
        expect(e).toBeInstanceOf(TunefitError);
        expect((e as TunefitError).kind).toBe("usage");
        expect((e as TunefitError).issues[0]?.path).toBe(field);
      }
    }
  });
});
