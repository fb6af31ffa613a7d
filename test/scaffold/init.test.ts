import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { emitAnalysis } from "../../src/emit/bundle.ts";
import type { EmittedFile } from "../../src/emit/files.ts";
import type { EmitOptions } from "../../src/emit/options.ts";
import { TunefitError } from "../../src/errors.ts";
import { analyzePlan } from "../../src/plan/analyze.ts";
import { initFiles, renderTemplate, SCAFFOLDS } from "../../src/scaffold/index.ts";
import { TEMPLATES } from "../../src/scaffold/templates.gen.ts";
import type { PlanInput } from "../../src/schema/plan.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));

const PLANS = {
  text: { model: "Qwen/Qwen2.5-7B-Instruct", gpu: "rtx4090", method: "qlora", loraRank: 16 },
  multimodal: {
    model: "Qwen/Qwen2-VL-7B-Instruct",
    gpu: "a100-80g",
    gpus: 2,
    method: "lora",
    imagesPerSample: 2,
    imageMaxPixels: 65536,
  },
} as const satisfies Record<string, PlanInput>;

const projects = SCAFFOLDS.flatMap((scaffold) =>
  Object.entries(PLANS).map(([kind, planInput]) => {
    const analysis = analyzePlan(planInput);
    return { scaffold, kind, planInput, analysis, files: initFiles(analysis, { scaffold, planInput }) };
  }),
);

const text = (files: readonly EmittedFile[], p: string): string => {
  const f = files.find((x) => x.path === p);
  if (f === undefined || typeof f.contents !== "string") throw new Error(`no text file ${p}`);
  return f.contents;
};
const paths = (files: readonly EmittedFile[]) => files.map((f) => f.path);
const gib = (bytes: number) => (bytes / 1024 ** 3).toFixed(2);

/** Why rendering failed, as a TunefitError. */
function failure(fn: () => unknown): TunefitError {
  try {
    fn();
  } catch (e) {
    if (e instanceof TunefitError) return e;
    throw e;
  }
  throw new Error("expected a TunefitError");
}

/** The `{...}` literal after `marker` in a rendered plan.ts (JSON: the json helper's output). */
function literalAfter(source: string, marker: string): unknown {
  const start = source.indexOf(marker);
  expect(start).toBeGreaterThanOrEqual(0);
  const from = start + marker.length;
  const end = source.indexOf("\n}", from);
  return JSON.parse(source.slice(from, end + 2));
}

describe("the embedded templates", () => {
  it("equal templates/ file by file (run npm run gen:templates after editing one)", () => {
    const dir = path.join(root, "templates");
    const onDisk = (readdirSync(dir, { recursive: true, withFileTypes: true }) as import("node:fs").Dirent[])
      .filter((d) => d.isFile())
      .map((d) => path.relative(dir, path.join(d.parentPath, d.name)).split(path.sep).join("/"))
      .sort();
    expect(Object.keys(TEMPLATES)).toEqual(onDisk);
    for (const p of onDisk) expect(TEMPLATES[p], p).toBe(readFileSync(path.join(dir, p), "utf8"));
  });

  it("give the scaffolds default and minimal", () => {
    expect(SCAFFOLDS).toEqual(["default", "minimal"]);
  });
});

describe("renderTemplate", () => {
  it("fails on a field the context lacks (strict), naming the template", () => {
    for (const [template, context] of [
      ["{{nope}}", {}],
      ["{{a.b}}", { a: {} }],
      ["{{#each list}}{{name}}{{/each}}", { list: [{}] }],
      ["{{shq missing}}", {}],
    ] as const) {
      const e = failure(() => renderTemplate(template, context, "custom/README.md.hbs"));
      expect(e.kind).toBe("usage");
      expect(e.issues[0]?.code).toBe("SCAFFOLD_TEMPLATE_INVALID");
      expect(e.issues[0]?.message).toContain("custom/README.md.hbs");
    }
    expect(failure(() => renderTemplate("{{nope}}", {}, "t")).issues[0]?.message).toContain('"nope"');
  });

  it("fails on a template that does not compile, and on an unknown helper", () => {
    expect(failure(() => renderTemplate("{{#if x}}", { x: 1 }, "t")).issues[0]?.code).toBe(
      "SCAFFOLD_TEMPLATE_INVALID",
    );
    expect(failure(() => renderTemplate("{{upper x}}", { x: "a" }, "t")).issues[0]?.code).toBe(
      "SCAFFOLD_TEMPLATE_INVALID",
    );
  });

  it("shell-quotes with shq", () => {
    expect(renderTemplate("{{shq v}}", { v: "it's" }, "t")).toBe(`'it'\\''s'`);
    expect(renderTemplate("{{shq v}}", { v: "plain-word_1.0" }, "t")).toBe("plain-word_1.0");
    expect(renderTemplate("{{shq v}}", { v: "a b;$(c)" }, "t")).toBe("'a b;$(c)'");
    expect(failure(() => renderTemplate("{{shq v}}", { v: {} }, "t")).issues[0]?.code).toBe(
      "SCAFFOLD_TEMPLATE_INVALID",
    );
  });

  it("does not escape HTML", () => {
    const v = `<image> & "quotes" 'apostrophes' \`ticks\` =`;
    expect(renderTemplate("{{v}}|{{{v}}}", { v }, "t")).toBe(`${v}|${v}`);
  });

  it("writes JSON with json and GiB with gib", () => {
    expect(renderTemplate("{{json v}}", { v: { a: [1, "<b>"] } }, "t")).toBe(
      JSON.stringify({ a: [1, "<b>"] }, null, 2),
    );
    expect(renderTemplate("{{gib v}}", { v: 12.345 * 1024 ** 3 }, "t")).toBe("12.35");
    expect(failure(() => renderTemplate("{{gib v}}", { v: "1" }, "t")).issues[0]?.code).toBe(
      "SCAFFOLD_TEMPLATE_INVALID",
    );
  });

  it("keeps its helpers to itself", async () => {
    const { default: Handlebars } = await import("handlebars");
    expect(Handlebars.helpers.shq).toBeUndefined();
    expect(Handlebars.helpers.gib).toBeUndefined();
  });
});

describe("initFiles", () => {
  for (const { scaffold, kind, planInput, analysis, files } of projects) {
    describe(`${scaffold} scaffold, ${kind} plan`, () => {
      it("writes the scaffold's files and the bundle under bundle/", () => {
        const own = paths(files).filter((p) => !p.startsWith("bundle/"));
        if (scaffold === "minimal") {
          expect(own).toEqual(["README.md", "plan.ts"]);
        } else {
          expect(own).toEqual(
            [
              ".gitignore",
              "README.md",
              "data/dataset_info.json",
              "data/my_dataset.json",
              "package.json",
              "plan.ts",
              "tsconfig.json",
              ...(kind === "multimodal" ? ["data/images/example_1.png", "data/images/example_2.png"] : []),
            ].sort(),
          );
        }
        expect(paths(files)).toContain("bundle/train.yaml");
        expect(paths(files)).toContain("bundle/launch.sh");
        expect(files.find((f) => f.path === "bundle/launch.sh")?.executable).toBe(true);
        for (const f of files) {
          if (typeof f.contents === "string") expect(f.contents, f.path).not.toMatch(/\{\{|\}\}/);
        }
      });

      it("is deterministic", () => {
        const again = initFiles(analyzePlan(planInput), { scaffold, planInput });
        expect(again).toEqual(files);
      });

      it("writes JSON files that parse", () => {
        const json = files.filter((f) => f.path.endsWith(".json"));
        expect(json.length).toBeGreaterThan(0);
        for (const f of json) expect(() => JSON.parse(f.contents as string), f.path).not.toThrow();
      });

      it("puts the analysis' memory figures in README.md", () => {
        const readme = text(files, "README.md");
        const t = analysis.memory.train;
        expect(readme).toContain(`| **device** (nvidia-smi) | ${gib(t.perGpu.deviceBytes)} |`);
        expect(readme).toContain(`| weights | ${gib(t.perGpu.breakdown.weights)} |`);
        expect(readme).toContain(`| optimizer states | ${gib(t.perGpu.breakdown.optimizer)} |`);
        expect(readme).toContain(`of ${gib(t.capacityBytes)} GiB usable`);
        expect(readme).toContain("**Predicted to fit**");
        if (scaffold === "default") {
          expect(readme).toContain(
            `| **allocated** (torch max_memory_allocated) | ${gib(t.perGpu.allocatedBytes)} |`,
          );
          expect(readme).toContain(`| method | ${planInput.method}`);
          expect(readme).toContain(`Loading: ${gib(analysis.memory.load.perGpuPeakBytes)} GiB`);
        }
      });

      it("registers the dataset train.yaml names, in the format LLaMA-Factory reads, with its files", () => {
        const yaml = parse(text(files, "bundle/train.yaml")) as Record<string, unknown>;
        const datasetDir = yaml.dataset_dir as string;
        // launch.sh runs in bundle/; LLaMA-Factory resolves dataset_dir (and media_dir, by default it) from there
        const dataDir = path.posix.join("bundle", datasetDir);
        expect(dataDir).toBe(scaffold === "default" ? "data" : "bundle/data");
        const info = JSON.parse(text(files, `${dataDir}/dataset_info.json`)) as Record<string, unknown>;
        const names = String(yaml.dataset).split(",");
        expect(names).toEqual([scaffold === "default" ? "my_dataset" : "tunefit_demo"]);
        for (const name of names) {
          const entry = info[name] as {
            file_name: string;
            formatting?: string;
            columns?: Record<string, string>;
            tags?: Record<string, string>;
          };
          expect(entry, name).toBeDefined();
          const rows = JSON.parse(text(files, `${dataDir}/${entry.file_name}`)) as Record<string, unknown>[];
          expect(rows.length).toBeGreaterThan(0);
          const formatting = entry.formatting ?? "alpaca";
          expect(formatting).toBe(kind === "multimodal" ? "sharegpt" : "alpaca");
          if (formatting === "alpaca") {
            const c = { prompt: "instruction", query: "input", response: "output", ...entry.columns };
            for (const row of rows) {
              expect(typeof row[c.prompt]).toBe("string");
              expect(typeof row[c.response]).toBe("string");
            }
          } else {
            const c: Record<string, string> = {
              messages: "conversations",
              images: "images",
              ...entry.columns,
            };
            const tags = {
              role_tag: "from",
              content_tag: "value",
              user_tag: "human",
              assistant_tag: "gpt",
              ...entry.tags,
            };
            for (const row of rows) {
              const messages = row[c.messages ?? ""] as Record<string, string>[];
              const images = row[c.images ?? ""] as string[];
              expect(messages.length % 2).toBe(0);
              messages.forEach((m, i) => {
                expect(m[tags.role_tag]).toBe(i % 2 === 0 ? tags.user_tag : tags.assistant_tag);
              });
              const placeholders = messages.map((m) => m[tags.content_tag]?.split("<image>").length ?? 1);
              expect(placeholders.reduce((a, n) => a + n - 1, 0)).toBe(PLANS.multimodal.imagesPerSample);
              expect(images).toHaveLength(PLANS.multimodal.imagesPerSample);
              for (const image of images) {
                const file = files.find((f) => f.path === path.posix.join(dataDir, image));
                expect(file?.contents, image).toBeInstanceOf(Uint8Array);
              }
            }
          }
        }
      });

      it("keeps checkpoints out of bundle/, which plan.ts replaces", () => {
        const yaml = parse(text(files, "bundle/train.yaml")) as Record<string, unknown>;
        expect(String(yaml.output_dir)).toMatch(/^\.\.\/saves\//);
      });

      it("holds in plan.ts the plan input and emit options that write this bundle", () => {
        const source = text(files, "plan.ts");
        const input = literalAfter(source, "PlanBuilder.from(") as PlanInput;
        const expected = scaffold === "default" ? { ...planInput, dataset: "my_dataset" } : planInput;
        expect(input).toEqual(expected);
        const emitOptions = literalAfter(source, "const emitOptions: EmitOptions = ") as EmitOptions;
        const bundle = emitAnalysis(analyzePlan(input), emitOptions);
        expect(bundle.map((f) => ({ ...f, path: `bundle/${f.path}` }))).toEqual(
          files.filter((f) => f.path.startsWith("bundle/")),
        );
      });
    });
  }

  it("shows the same plan as tunefit plan flags, shell-quoted", () => {
    const readme = text(projects[0]?.files ?? [], "README.md");
    expect(readme).toContain(
      "npx tunefit plan --model Qwen/Qwen2.5-7B-Instruct --gpu rtx4090 --method qlora --dataset my_dataset --lora-rank 16",
    );
  });

  it("registers the plan's own dataset name", () => {
    const planInput: PlanInput = { ...PLANS.text, dataset: "support_chats" };
    const files = initFiles(analyzePlan(planInput), { planInput });
    expect(JSON.parse(text(files, "data/dataset_info.json"))).toHaveProperty("support_chats");
    expect(paths(files)).toContain("data/support_chats.json");
    expect(parse(text(files, "bundle/train.yaml")).dataset).toBe("support_chats");
  });

  it("refuses a plan dataset the default scaffold cannot register as one local file", () => {
    const planInput: PlanInput = { ...PLANS.text, dataset: "alpaca_en,org/chats" };
    const analysis = analyzePlan(planInput);
    const e = failure(() => initFiles(analysis, { planInput }));
    expect(e.kind).toBe("usage");
    expect(e.issues[0]?.code).toBe("INIT_DATASET_NOT_LOCAL");
    expect(e.issues[0]?.hint).toContain("--scaffold minimal");
    // the minimal scaffold leaves the dataset to the user, as tunefit emit does
    const files = initFiles(analysis, { planInput, scaffold: "minimal" });
    expect(parse(text(files, "bundle/train.yaml")).dataset).toBe("alpaca_en,org/chats");
  });

  it("refuses an unknown scaffold, listing the available ones", () => {
    const planInput = PLANS.text;
    const e = failure(() => initFiles(analyzePlan(planInput), { planInput, scaffold: "fancy" }));
    expect(e.kind).toBe("usage");
    expect(e.issues[0]?.code).toBe("SCAFFOLD_UNKNOWN");
    expect(e.issues[0]?.path).toBe("scaffold");
    expect(e.issues[0]?.message).toContain('"fancy"');
    expect(e.issues[0]?.message).toContain("default, minimal");
  });

  it("writes a plan that does not fit, with its issues", () => {
    const planInput: PlanInput = { model: "Qwen/Qwen2.5-72B-Instruct", gpu: "rtx4090", method: "full" };
    const analysis = analyzePlan(planInput);
    expect(analysis.valid).toBe(false);
    const readme = text(initFiles(analysis, { planInput }), "README.md");
    expect(readme).toContain("**Predicted not to run**");
    expect(readme).toContain("## Issues");
    expect(readme).toContain(analysis.issues[0]?.code);
  });

  it("tells each node how to launch a multi-node plan", () => {
    const planInput: PlanInput = {
      model: "Qwen/Qwen2.5-7B-Instruct",
      gpu: "h100-80g",
      gpus: 8,
      nodes: 2,
      sharding: "zero3",
    };
    const files = initFiles(analyzePlan(planInput), { planInput });
    expect(paths(files)).toContain("bundle/slurm.sbatch");
    expect(text(files, "README.md")).toContain("NODE_RANK=0 MASTER_ADDR=");
    expect(text(files, "README.md")).toContain("COPY . /workspace");
  });

  it("names a local model folder relative to the project in plan.ts and to bundle/ in train.yaml", () => {
    const planInput: PlanInput = { model: "test/fixtures/configs/gemma-3-1b-it", gpu: "rtx4090" };
    const analysis = analyzePlan(planInput, { cwd: root });
    const files = initFiles(analysis, { planInput, modelPath: "../models/gemma-3-1b-it", name: "My Gemma!" });
    const input = literalAfter(text(files, "plan.ts"), "PlanBuilder.from(") as PlanInput;
    expect(input.model).toBe("../models/gemma-3-1b-it");
    expect(parse(text(files, "bundle/train.yaml")).model_name_or_path).toBe("../../models/gemma-3-1b-it");
    expect(JSON.parse(text(files, "package.json")).name).toBe("my-gemma");
  });
});

describe("the scaffolded plan.ts", () => {
  it("type-checks against the library (one tsc run over every scaffold and plan)", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tunefit-init-"));
    try {
      // and a model given by its dimensions: the literal holds the whole architecture
      const config = JSON.parse(
        readFileSync(path.join(root, "test/fixtures/configs/gemma-3-1b-it/config.json"), "utf8"),
      ) as Record<string, unknown>;
      const fromConfig = analyzePlan({
        model: { id: "my/gemma", config },
        gpu: "rtx4090",
        template: "gemma3",
      });
      const explicit: PlanInput = {
        model: { id: "my/gemma", architecture: fromConfig.plan.model.architecture },
        gpu: "rtx4090",
        template: "gemma3",
      };
      const all = [
        ...projects,
        {
          scaffold: "default",
          kind: "explicit",
          files: initFiles(analyzePlan(explicit), { planInput: explicit }),
        },
      ];
      for (const { scaffold, kind, files } of all) {
        mkdirSync(path.join(dir, `${scaffold}-${kind}`));
        writeFileSync(path.join(dir, `${scaffold}-${kind}`, "plan.ts"), text(files, "plan.ts"));
      }
      // an ES module project, as the default scaffold's package.json makes it
      writeFileSync(path.join(dir, "package.json"), JSON.stringify({ type: "module" }));
      // the repository's own compiler settings (stricter than the scaffold's), with `tunefit` mapped to src/
      writeFileSync(
        path.join(dir, "tsconfig.json"),
        JSON.stringify({
          extends: path.join(root, "tsconfig.json"),
          compilerOptions: { typeRoots: [path.join(root, "node_modules", "@types")] },
          include: ["*/plan.ts"],
        }),
      );
      const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
      const run = spawnSync(process.execPath, [tsc, "--noEmit", "-p", dir], { encoding: "utf8" });
      expect(run.stdout + run.stderr).toBe("");
      expect(run.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("default scaffold with videos", () => {
  const planInput: PlanInput = {
    model: "Qwen/Qwen2-VL-7B-Instruct",
    gpu: "a100-80g",
    videosPerSample: 2,
    videoFrames: 5,
    videoMaxPixels: 50176,
    seqLen: 4096,
  };
  const files = initFiles(analyzePlan(planInput), { scaffold: "default", planInput });
  it("registers a videos column and writes each video as the plan's frames, every frame in data/", () => {
    const info = JSON.parse(text(files, "data/dataset_info.json")) as Record<
      string,
      { columns: Record<string, string> }
    >;
    expect(info.my_dataset?.columns).toEqual({ messages: "messages", videos: "videos" });
    const rows = JSON.parse(text(files, "data/my_dataset.json")) as {
      messages: { content: string }[];
      videos: string[][];
      images?: unknown;
    }[];
    for (const row of rows) {
      expect(row.images).toBeUndefined();
      expect(row.messages[0]?.content.startsWith("<video><video>")).toBe(true);
      expect(row.videos).toHaveLength(2);
      for (const video of row.videos) {
        expect(video).toHaveLength(5);
        for (const frame of video)
          expect(files.find((f) => f.path === `data/${frame}`)?.contents).toBeInstanceOf(Uint8Array);
      }
    }
    const yaml = parse(text(files, "bundle/train.yaml")) as Record<string, unknown>;
    expect(yaml).toMatchObject({ video_maxlen: 5, video_max_pixels: 50176 });
    expect(text(files, "README.md")).toContain("`data/videos/`");
  });
});
