import { execFile } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { PlanBuilder } from "../../src/builder/plan-builder.ts";
import { type ImportOptions, type ImportResult, importTrainYaml } from "../../src/codegen/index.ts";
import { type DeepSpeedSource, readDeepSpeed, readTrainYamlFile } from "../../src/doctor/read.ts";
import { MODELLED_KEYS } from "../../src/doctor/to-plan.ts";
import { emitFiles } from "../../src/emit/bundle.ts";
import { trainYaml } from "../../src/emit/train-yaml.ts";
import { TunefitError } from "../../src/errors.ts";
import type { PlanInput } from "../../src/schema/plan.ts";

/*
 * `importTrainYaml` against LLaMA-Factory's example YAMLs and two of ours: the modelled keys become builder calls,
 * only unmodelled keys (and the listed exceptions) go through the escape hatch, and the script's train.yaml has
 * exactly the original's keys and values — in process for every case, and by running three scripts with node.
 */

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const fixture = (path: string) => fileURLToPath(new URL(`../fixtures/${path}`, import.meta.url));
const json = (path: string) => JSON.parse(readFileSync(fixture(path), "utf8")) as Record<string, unknown>;
/** The YAML as the CLI reads it (OmegaConf's rules). */
const yamlOf = (path: string) => readTrainYamlFile(fixture(path));

/** A config.json folder for Qwen/Qwen3-4B-Instruct-2507, which the catalog lacks (its dimensions do not matter here). */
const QWEN3_DIR = fixture("configs/qwen3-8b");
const QWEN2_VL_DIR = fixture("configs/qwen2-vl-7b-sk-googleflights");

const dsFile = (yaml: Record<string, unknown>, name: string): DeepSpeedSource => ({
  kind: "file",
  path: String(yaml.deepspeed),
  config: json(`targets/${name}`),
});

interface Case {
  readonly name: string;
  readonly file: string;
  readonly options: (yaml: Record<string, unknown>) => ImportOptions;
  readonly calls: readonly string[];
  /** modelled keys of the original whose value still goes through the escape hatch, each for a reason given */
  readonly escapedModelled: readonly string[];
  readonly snippets: readonly string[];
}

const CASES: readonly Case[] = [
  {
    name: "qwen3_lora_sft",
    file: "llamafactory-examples/qwen3_lora_sft.yaml",
    options: () => ({ hardware: { gpu: "a100-80g" } }),
    calls: ["model", "hardware", "lora", "training", "data"],
    escapedModelled: [],
    snippets: [
      ".lora({ rank: 8 })",
      '.data({ dataset: "identity,alpaca_en_demo", template: "qwen3_nothink" })',
    ],
  },
  {
    name: "qwen3_lora_sft_ds3",
    file: "llamafactory-examples/qwen3_lora_sft_ds3.yaml",
    options: (y) => ({ hardware: { gpu: "a100-80g", gpus: 2 }, deepspeed: dsFile(y, "ds_z3_config.json") }),
    calls: ["model", "hardware", "lora", "zero", "training", "data"],
    // deepspeed: names the user's file, tunefit's plan its own deepspeed.json
    escapedModelled: ["deepspeed"],
    snippets: [".zero(3)", "gradAccum: 2"],
  },
  {
    name: "qwen3_full_sft",
    file: "llamafactory-examples/qwen3_full_sft.yaml",
    options: (y) => ({ hardware: { gpu: "a100-80g", gpus: 2 }, deepspeed: dsFile(y, "ds_z3_config.json") }),
    calls: ["model", "hardware", "full", "zero", "training", "data"],
    escapedModelled: ["deepspeed"],
    snippets: [".full()", ".zero(3)"],
  },
  {
    name: "qwen3_lora_sft_otfq",
    file: "llamafactory-examples/qwen3_lora_sft_otfq.yaml",
    options: () => ({ hardware: { gpu: "rtx4090" } }),
    calls: ["model", "hardware", "qlora", "training", "data"],
    escapedModelled: [],
    snippets: ['.qlora({ bits: 4, quantMethod: "bnb", rank: 8 })'],
  },
  {
    name: "llama3_lora_sft_fsdp_qlora",
    file: "llamafactory-examples/llama3_lora_sft_fsdp_qlora.yaml",
    options: () => ({ hardware: { gpu: "rtx4090", gpus: 2 }, accelerate: json("targets/fsdp_config.json") }),
    calls: ["model", "hardware", "qlora", "fsdp", "training", "data"],
    escapedModelled: [],
    snippets: ['.model("meta-llama/Meta-Llama-3-8B-Instruct")', ".fsdp()", 'remove: ["quantization_method"'],
  },
  {
    name: "galore_llama3_full_sft",
    file: "llamafactory-examples/galore_llama3_full_sft.yaml",
    options: () => ({ hardware: { gpu: "a100-80g" } }),
    calls: ["model", "hardware", "full", "galore", "training", "data"],
    escapedModelled: [],
    // mlp,self_attn reaches every linear, as `all` does; the example sets no optim (written by tunefit: removed)
    snippets: [".galore({ rank: 128, layerwise: true })", 'galore_target: "mlp,self_attn"', '"optim"'],
  },
  {
    name: "qwen2_vl_freeze",
    file: "import/qwen2_vl_freeze.yaml",
    options: (y) => ({
      hardware: { gpu: "a100-80g", gpus: 4 },
      deepspeed: readDeepSpeed(y.deepspeed, fixture("import"), null, []),
    }),
    calls: ["model", "hardware", "freeze", "zero", "offload", "training", "multimodal", "data"],
    // packing: false is the default, which tunefit's train.yaml leaves out; video_max_pixels without videos in the
    // plan (mllm_demo carries images) is not written by tunefit
    escapedModelled: ["video_max_pixels", "deepspeed", "packing"],
    snippets: [
      '.freeze({ trainableLayers: 4, trainableModules: ["mlp"] })',
      '.offload("optimizer")',
      '.training({ seqLen: 4096, microBatch: 2, gradAccum: 4, precision: "bf16", attention: "fa2", liger: true })',
      ".multimodal({ imagesPerSample: 1, imageMaxPixels: 262144, freezeVisionTower: false, freezeProjector: true })",
    ],
  },
  {
    name: "qwen2_vl_video",
    file: "import/qwen2_vl_video.yaml",
    options: () => ({ hardware: { gpu: "a100-80g" } }),
    calls: ["model", "hardware", "lora", "training", "multimodal", "data"],
    // image_max_pixels is LLaMA-Factory's default only in name: tunefit writes the plan's (589,824 unless given)
    escapedModelled: [],
    snippets: [
      ".multimodal({ imageMaxPixels: 262144, videosPerSample: 1, videoFrames: 16, videoMaxPixels: 16384 })",
    ],
  },
  {
    name: "llama3_lora_options",
    file: "import/llama3_lora_options.yaml",
    options: (y) => ({
      hardware: { gpu: "h100-80g", gpus: 8 },
      deepspeed: readDeepSpeed(y.deepspeed, fixture("import"), null, []),
    }),
    calls: ["model", "hardware", "lora", "zero", "training", "data"],
    // flash_attn: auto and lora_alpha = 2 × rank are defaults tunefit leaves out; `q_proj, v_proj` it writes
    // without the space; the DeepSpeed config is inline
    escapedModelled: ["flash_attn", "lora_alpha", "lora_target", "deepspeed"],
    snippets: [
      'target: ["q_proj", "v_proj"]',
      "dora: true",
      'additionalTarget: ["embed_tokens"]',
      "gradientCheckpointing: false",
      'optimizer: "adamw_torch_fused"',
      'report_to: ["wandb", "tensorboard"]',
    ],
  },
];

const results = new Map<string, { yaml: Record<string, unknown>; result: ImportResult }>();
function imported(c: Case) {
  let r = results.get(c.name);
  if (r === undefined) {
    const yaml = yamlOf(c.file);
    r = {
      yaml,
      result: importTrainYaml(yaml, { yamlName: c.file.split("/").pop() as string, ...c.options(yaml) }),
    };
    results.set(c.name, r);
  }
  return r;
}

/** The script's builder chain, evaluated up to `toInput()`: the plan input the script collects. */
function chainInput(source: string, model?: string): unknown {
  const m = /= (PlanBuilder\.create\(\)[\s\S]*?)\.build\(\);/.exec(source);
  if (!m?.[1]) throw new Error("no builder chain in the source");
  return new Function("PlanBuilder", "model", `return ${m[1]}.toInput();`)(PlanBuilder, model);
}

/** The escape hatch the script passes to emitFiles, evaluated. */
function scriptEscapeHatch(source: string): unknown {
  const m = /emitFiles\(plan, \{\n {2}trainYaml: (\{[\s\S]*?\n {2}\}),\n\}\);/.exec(source);
  if (!m?.[1]) return {};
  return new Function(`return ${m[1]};`)();
}

/** The train.yaml of the script's bundle, built in process, as a YAML 1.1 reader sees it. */
function bundleTrainYaml(result: ImportResult, model?: string): Record<string, unknown> {
  const input = model === undefined ? result.input : { ...result.input, model };
  const plan = PlanBuilder.from(input as PlanInput & { gpu: string }).build();
  const file = emitFiles(plan, { trainYaml: result.escapeHatch }).find((f) => f.path === "train.yaml");
  const written = parse(String(file?.contents), { version: "1.1" }) as Record<string, unknown>;
  expect(written).toEqual(trainYaml(plan, { trainYaml: result.escapeHatch }));
  return written;
}

describe("importTrainYaml on LLaMA-Factory's examples and ours", () => {
  for (const c of CASES) {
    describe(c.name, () => {
      it("turns the modelled keys into builder calls, and escapes only unmodelled keys and the listed ones", () => {
        const { yaml, result } = imported(c);
        expect(result.builderCalls).toEqual(c.calls);
        for (const s of c.snippets) expect(result.source).toContain(s);
        const modelled = MODELLED_KEYS as readonly string[];
        // of the original's keys, only unmodelled ones and the listed exceptions are set through the escape hatch;
        // removed keys are ones tunefit would add that the original lacks
        const set = Object.keys(result.escapeHatch.set);
        expect(set.filter((k) => modelled.includes(k))).toEqual(c.escapedModelled);
        expect(result.escapeHatch.remove.filter((k) => k in yaml)).toEqual([]);
        expect(result.escapedKeys).not.toContain("finetuning_type");
        expect(result.modelledKeys).toContain("finetuning_type");
        expect(result.modelledKeys.every((k) => modelled.includes(k) && k in yaml)).toBe(true);
        // every modelled YAML key the plan takes: only keys the plan ignores are escaped and not modelled
        for (const k of Object.keys(yaml).filter((k) => modelled.includes(k))) {
          if (!result.modelledKeys.includes(k)) expect(result.escapedKeys, k).toContain(k);
        }
        expect(result.escapedKeys).toEqual([
          ...Object.keys(result.escapeHatch.set),
          ...result.escapeHatch.remove,
        ]);
        expect(result.hardwarePlaceholder).toBe(false);
        expect(result.source).not.toContain("PLACEHOLDER");
      });

      it("writes a script whose chain and escape hatch are the result's", () => {
        const { result } = imported(c);
        const model = result.memoryKnown ? undefined : "MODEL";
        const input = { ...result.input, ...(model ? { model } : {}) };
        expect(chainInput(result.source, model)).toEqual(PlanBuilder.from(input).toInput());
        expect(chainInput(result.source, model)).toEqual(input);
        const { set, remove } = result.escapeHatch;
        expect(scriptEscapeHatch(result.source)).toEqual({
          ...(Object.keys(set).length > 0 ? { set } : {}),
          ...(remove.length > 0 ? { remove } : {}),
        });
      });

      it("builds a plan whose train.yaml is the original, key for key", () => {
        const { yaml, result } = imported(c);
        expect(bundleTrainYaml(result, result.memoryKnown ? undefined : QWEN3_DIR)).toEqual(yaml);
      });

      it("writes the same script every time (golden)", async () => {
        const { yaml, result } = imported(c);
        const again = importTrainYaml(structuredClone(yaml), {
          yamlName: c.file.split("/").pop() as string,
          ...c.options(structuredClone(yaml)),
        });
        expect(again.source).toBe(result.source);
        await expect(result.source).toMatchFileSnapshot(`../fixtures/import/golden/${c.name}.ts`);
      });
    });
  }
});

describe("the model", () => {
  const yaml = () => yamlOf("llamafactory-examples/qwen3_lora_sft.yaml");

  it("not in the catalog: the script takes its config.json folder as the second argument, memory unknown", () => {
    const unknown = { ...yaml(), model_name_or_path: "acme/Unknown-4B-Instruct" };
    const r = importTrainYaml(unknown, { hardware: { gpu: "a100-80g" } });
    expect(r.memoryKnown).toBe(false);
    expect(r.source).toContain('const model = process.argv[3] ?? "acme/Unknown-4B-Instruct";');
    expect(r.source).toContain(".model(model)");
    expect(r.source).toMatch(/Memory unknown: tunefit's catalog lacks acme\/Unknown-4B-Instruct/);
    // the id, the vision keys and nothing else of the model's are pinned
    expect(r.escapeHatch.set.model_name_or_path).toBe("acme/Unknown-4B-Instruct");
    expect(r.escapeHatch.remove).toEqual(
      expect.arrayContaining(["image_max_pixels", "freeze_vision_tower", "freeze_multi_modal_projector"]),
    );
    // without a folder the plan does not build, as the header says
    let error: unknown;
    try {
      PlanBuilder.from(r.input as PlanInput).build();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TunefitError);
    expect((error as TunefitError).issues[0]?.code).toBe("MODEL_UNKNOWN");
    // with a text or a vision-language model's folder, the train.yaml is the original either way
    expect(bundleTrainYaml(r, QWEN3_DIR)).toEqual(unknown);
    expect(bundleTrainYaml(r, QWEN2_VL_DIR)).toEqual(unknown);
  });

  it("not in the catalog, with LLaMA-Factory's video demo: the chain still counts its video, as doctor does", () => {
    const video = { ...yamlOf("import/qwen2_vl_video.yaml"), model_name_or_path: "acme/Unknown-VL-7B" };
    const r = importTrainYaml(video, { hardware: { gpu: "a100-80g" } });
    expect(r.memoryKnown).toBe(false);
    expect(r.source).toContain("videosPerSample: 1, videoFrames: 16, videoMaxPixels: 16384");
    // with a Qwen2-VL folder, the bundle's train.yaml is the original
    expect(bundleTrainYaml(r, QWEN2_VL_DIR)).toEqual(video);
  });

  it("in the catalog under LLaMA-Factory's name (a Qwen3 2507 update of Qwen3-4B): named as written", () => {
    const r = importTrainYaml(yaml(), { hardware: { gpu: "a100-80g" } });
    expect(r.memoryKnown).toBe(true);
    expect(r.source).toContain('.model("Qwen/Qwen3-4B-Instruct-2507")');
    expect(r.escapedKeys).not.toContain("model_name_or_path");
    expect(bundleTrainYaml(r)).toEqual(yaml());
  });

  it("given as a config.json folder: its dimensions are written inline under the YAML's id", () => {
    const r = importTrainYaml(yaml(), {
      hardware: { gpu: "a100-80g" },
      model: "qwen3-8b",
      cwd: fixture("configs"),
    });
    expect(r.memoryKnown).toBe(true);
    expect(r.source).toContain('.model({\n    id: "Qwen/Qwen3-4B-Instruct-2507",\n    architecture: {');
    expect(r.source).toContain("dimensions are read from qwen3-8b/config.json");
    expect(r.escapedKeys).not.toContain("model_name_or_path");
    expect(r.modelledKeys).toContain("model_name_or_path");
    expect(bundleTrainYaml(r)).toEqual(yaml());
  });

  it("given as a catalog id: the script names it, and the YAML's model_name_or_path is kept", () => {
    const r = importTrainYaml(yaml(), { hardware: { gpu: "a100-80g" }, model: "Qwen/Qwen3-4B" });
    expect(r.memoryKnown).toBe(true);
    expect(r.source).toContain('.model("Qwen/Qwen3-4B")');
    expect(r.escapeHatch.set.model_name_or_path).toBe("Qwen/Qwen3-4B-Instruct-2507");
    expect(r.modelledKeys).not.toContain("model_name_or_path");
    expect(bundleTrainYaml(r)).toEqual(yaml());
  });

  it("a --model that does not resolve, or no model at all, is a usage error", () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof TunefitError ? `${e.kind}:${e.issues[0]?.code}` : String(e);
      }
      return "no error";
    };
    expect(code(() => importTrainYaml(yaml(), { model: "./no-such-folder" }))).toBe(
      "usage:MODEL_DIR_NOT_FOUND",
    );
    const { model_name_or_path: _, ...noModel } = yaml();
    expect(code(() => importTrainYaml(noModel))).toBe("usage:MODEL_MISSING");
    expect(code(() => importTrainYaml(yaml(), { hardware: { gpu: "nope" } }))).toBe("usage:GPU_UNKNOWN");
    const badTarget = {
      ...yamlOf("llamafactory-examples/llama3_lora_sft_fsdp_qlora.yaml"),
      lora_target: "wqkv",
    };
    expect(code(() => importTrainYaml(badTarget))).toBe("usage:LORA_TARGET_UNKNOWN");
  });
});

describe("hardware", () => {
  it("absent: one h100-80g, marked as a placeholder in the header and on the hardware line", () => {
    const yaml = yamlOf("llamafactory-examples/llama3_lora_sft_fsdp_qlora.yaml");
    const r = importTrainYaml(yaml);
    expect(r.hardwarePlaceholder).toBe(true);
    expect(r.input.gpu).toBe("h100-80g");
    expect(r.input.gpus).toBeUndefined();
    expect(r.source).toMatch(/^\/\/ PLACEHOLDER hardware: none was given, so the plan is for one h100-80g/m);
    expect(r.source).toContain('  .hardware({ gpu: "h100-80g" }) // PLACEHOLDER: set your GPUs');
    expect(bundleTrainYaml(r)).toEqual(yaml);
  });

  it("given: written as given", () => {
    const yaml = yamlOf("llamafactory-examples/llama3_lora_sft_fsdp_qlora.yaml");
    const r = importTrainYaml(yaml, { hardware: { gpu: "l40s", gpus: 8, nodes: 2 } });
    expect(r.source).toContain('.hardware({ gpu: "l40s", gpus: 8, nodes: 2 })\n');
    expect(r.input).toMatchObject({ gpu: "l40s", gpus: 8, nodes: 2 });
    const custom = importTrainYaml(yaml, { hardware: { gpu: "custom", gpuMemoryGiB: 48, hostRamGiB: 256 } });
    expect(custom.source).toContain('.hardware({ gpu: "custom", gpuMemoryGiB: 48, hostRamGiB: 256 })\n');
    expect(chainInput(custom.source)).toEqual(custom.input);
    expect(bundleTrainYaml(custom)).toEqual(yaml);
  });
});

describe("values tunefit cannot take go through the escape hatch, and the plan uses its default", () => {
  const base = () => yamlOf("llamafactory-examples/llama3_lora_sft_fsdp_qlora.yaml");
  const cases: readonly [string, Record<string, unknown>, string][] = [
    ["a template LLaMA-Factory does not register", { template: "my_template" }, "template"],
    ["an optimizer tunefit does not know", { optim: "adamw_from_the_future" }, "optim"],
    ["image settings for a text-only model", { image_max_pixels: 65536 }, "image_max_pixels"],
    ["a batch size out of range", { per_device_train_batch_size: 0 }, "per_device_train_batch_size"],
  ];
  it.each(cases)("%s", (_, change, key) => {
    const yaml = { ...base(), ...change };
    const r = importTrainYaml(yaml, { hardware: { gpu: "a100-80g" } });
    expect(r.escapeHatch.set[key]).toEqual(yaml[key]);
    expect(r.modelledKeys).not.toContain(key);
    expect(bundleTrainYaml(r)).toEqual(yaml);
  });

  it("no template for a model tunefit knows none for: none in the script, none in the YAML", () => {
    const { template: _, ...rest } = yamlOf("llamafactory-examples/qwen3_lora_sft.yaml");
    const yaml = { ...rest, model_name_or_path: "acme/Unknown-4B-Instruct" };
    const r = importTrainYaml(yaml, { hardware: { gpu: "a100-80g" } });
    expect(r.source).not.toContain("template:");
    expect(bundleTrainYaml(r, QWEN3_DIR)).toEqual(yaml);
  });

  it("odd keys and values are written as literals that evaluate to them", () => {
    const yaml = {
      ...base(),
      "odd-key": 'a "quoted"\nline',
      nested: { "x y": [1, null, true, -0.5] },
      eval_steps: Number.POSITIVE_INFINITY,
    };
    const r = importTrainYaml(yaml, { hardware: { gpu: "a100-80g" } });
    expect(scriptEscapeHatch(r.source)).toEqual(r.escapeHatch);
    expect(r.source).toContain('"odd-key": "a \\"quoted\\"\\nline"');
    expect(r.source).toContain("eval_steps: Number.POSITIVE_INFINITY");
  });
});

describe("the scripts run with node and write the original train.yaml", () => {
  let root = "";
  let usesDist = false;
  beforeAll(() => {
    // A project depending on tunefit: the built package (dist/, as a user gets it) when it is at least as new as
    // the source — always so after `npm ci`, whose prepare step builds it — else the source through tsx.
    root = mkdtempSync(join(tmpdir(), "tunefit-import-"));
    const pkg = join(root, "node_modules", "tunefit");
    mkdirSync(pkg, { recursive: true });
    const built = join(REPO, "dist", "index.js");
    const newest = (dir: string): number =>
      Math.max(
        ...readdirSync(dir, { withFileTypes: true }).map((e) =>
          e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
        ),
      );
    usesDist = existsSync(built) && statSync(built).mtimeMs >= newest(join(REPO, "src"));
    writeFileSync(
      join(pkg, "package.json"),
      JSON.stringify({
        name: "tunefit",
        type: "module",
        exports: { ".": usesDist ? "./dist/index.js" : "./src/index.ts" },
      }),
    );
    symlinkSync(join(REPO, usesDist ? "dist" : "src"), join(pkg, usesDist ? "dist" : "src"), "dir");
    writeFileSync(
      join(root, "package.json"),
      JSON.stringify({ name: "imported", type: "module", private: true }),
    );
  });
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("catalog model with FSDP, unknown model with its folder and DeepSpeed, vision-language freeze", async () => {
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
    const run = promisify(execFile);
    // CI (.ci/run) builds the package first and requires the scripts to run against it
    if (process.env.TUNEFIT_REQUIRE_BUILT === "1") expect(usesDist).toBe(true);
    const runs: readonly [string, string[]][] = [
      ["llama3_lora_sft_fsdp_qlora", []],
      ["qwen3_lora_sft_ds3", [QWEN3_DIR]],
      ["qwen2_vl_freeze", []],
    ];
    await Promise.all(
      runs.map(async ([name, extra]) => {
        const c = CASES.find((x) => x.name === name) as Case;
        const { yaml, result } = imported(c);
        const script = join(root, `${name}.ts`);
        writeFileSync(script, result.source);
        const out = join(root, `out-${name}`);
        const { stdout } = await run(process.execPath, ["--import", tsx, script, out, ...extra], {
          cwd: root,
        });
        expect(stdout).toMatch(/^Wrote \d+ files to /);
        const written = parse(readFileSync(join(out, "train.yaml"), "utf8"), { version: "1.1" });
        expect(written, name).toEqual(yaml);
      }),
    );
  }, 60_000);
});
