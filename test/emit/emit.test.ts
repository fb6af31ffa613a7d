import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { inflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { PlanBuilder } from "../../src/builder/plan-builder.ts";
import { accelerateConfig } from "../../src/emit/accelerate.ts";
import { emitFiles } from "../../src/emit/bundle.ts";
import { checkBundle } from "../../src/emit/check-bundle.ts";
import { deepspeedConfig } from "../../src/emit/deepspeed.ts";
import type { EmittedFile } from "../../src/emit/files.ts";
import { pytorchJob } from "../../src/emit/kubeflow.ts";
import { formatYamlFloat } from "../../src/emit/serialize.ts";
import { trainYaml } from "../../src/emit/train-yaml.ts";
import { writeFiles } from "../../src/emit/write-files.ts";
import { analyzePlan } from "../../src/plan/analyze.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import type { PlanInput } from "../../src/schema/plan.ts";
import { MATRIX } from "./matrix.ts";
import { findPython, pythonRequired, runPython } from "./python.ts";

const bundles = Object.entries(MATRIX).map(([name, input]) => {
  const { plan } = resolvePlan(input);
  return { name, plan, files: emitFiles(plan) };
});

function bundle(name: string) {
  const b = bundles.find((x) => x.name === name);
  if (!b) throw new Error(`no bundle ${name}`);
  return b;
}
const textOf = (f: EmittedFile) => (typeof f.contents === "string" ? f.contents : "");
const file = (files: readonly EmittedFile[], path: string) => files.find((f) => f.path === path);

describe("bundles of the strategy matrix", () => {
  for (const { name, plan, files } of bundles) {
    it(`${name}: text files equal their golden copies`, async () => {
      for (const f of files) {
        if (typeof f.contents !== "string") continue;
        await expect(f.contents).toMatchFileSnapshot(`../golden/bundles/${name}/${f.path}`);
      }
    });

    it(`${name}: passes every target schema and cross-file rule`, () => {
      expect(checkBundle(files, plan)).toEqual([]);
    });

    it(`${name}: holds exactly the files its strategy needs`, () => {
      const paths = files.map((f) => f.path);
      expect(paths.includes("deepspeed.json")).toBe(plan.sharding.startsWith("zero"));
      expect(paths.includes("accelerate_fsdp.yaml")).toBe(plan.sharding.startsWith("fsdp"));
      expect(paths.includes("slurm.sbatch")).toBe(plan.nodes > 1);
      expect(paths.includes("pytorchjob.yaml")).toBe(plan.nodes > 1);
      expect(paths.includes("data/dataset_info.json")).toBe(plan.dataset === null);
      expect(paths[0]).toBe("train.yaml");
      expect(paths.at(-1)).toBe("README.md");
      expect(files.filter((f) => f.executable).map((f) => f.path)).toEqual(
        paths.filter((p) => p.endsWith(".sh") || p.endsWith(".sbatch")),
      );
    });

    it(`${name}: train.yaml reads back as the object it was written from`, () => {
      expect(parse(textOf(file(files, "train.yaml") as EmittedFile), { version: "1.1" })).toEqual(
        trainYaml(plan),
      );
      const ds = file(files, "deepspeed.json");
      if (ds) expect(JSON.parse(textOf(ds))).toEqual(deepspeedConfig(plan));
      const acc = file(files, "accelerate_fsdp.yaml");
      if (acc) expect(parse(textOf(acc), { version: "1.1" })).toEqual(accelerateConfig(plan));
      const job = file(files, "pytorchjob.yaml");
      if (job) {
        const host = analyzePlan(MATRIX[name] as PlanInput).memory.hostRam.perNodeBytes;
        expect(parse(textOf(job), { version: "1.1" })).toEqual(pytorchJob(plan, {}, host));
        expect(textOf(job)).toContain(`memory: ${Math.ceil(host / 1024 ** 3)}Gi`);
      }
    });
  }

  it("a file names nothing of the machine it was written on: no paths, user, host or time", () => {
    const machine = [process.cwd(), hostname(), userInfo().username, tmpdir()].filter((s) => s.length > 2);
    for (const { files } of bundles) {
      for (const f of files) {
        const t = textOf(f);
        expect(t).not.toMatch(/\/home\/|\/root\/|\/Users\/|\/tmp\/|\d{4}-\d{2}-\d{2}T\d{2}:/);
        for (const m of machine) expect(t.includes(m), `${f.path} names ${m}`).toBe(false);
      }
    }
  });

  it("the same plan built in two call orders gives byte-identical bundles", () => {
    const a = PlanBuilder.create()
      .model("Qwen/Qwen2-VL-72B-Instruct")
      .hardware({ gpu: "rtx4090", gpus: 8 })
      .qlora({ rank: 16 })
      .fsdp()
      .training({ seqLen: 4096, microBatch: 1 })
      .build();
    const b = PlanBuilder.create()
      .training({ microBatch: 1, seqLen: 4096 })
      .fsdp()
      .qlora({ rank: 16 })
      .hardware({ gpus: 8, gpu: "rtx4090" })
      .model("Qwen/Qwen2-VL-72B-Instruct")
      .build();
    const fa = emitFiles(a);
    const fb = emitFiles(b);
    expect(fb.map((f) => f.path)).toEqual(fa.map((f) => f.path));
    fa.forEach((f, i) => {
      expect(Buffer.from(fb[i]?.contents ?? "")).toEqual(Buffer.from(f.contents));
    });
  });
});

describe("scripts", () => {
  const scripts = bundles.flatMap(({ name, files }) =>
    files.filter((f) => f.executable).map((f) => ({ name: `${name}/${f.path}`, text: textOf(f) })),
  );
  it.each(scripts)("$name passes bash -n", ({ text }) => {
    const r = spawnSync("bash", ["-n"], { input: text, encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("launch.sh changes into its own folder and quits on errors before launching", () => {
    for (const { files } of bundles) {
      const t = textOf(file(files, "launch.sh") as EmittedFile);
      expect(t.startsWith("#!/usr/bin/env bash\n")).toBe(true);
      expect(t).toContain("set -euo pipefail");
      expect(t.indexOf('cd "$(dirname "${BASH_SOURCE[0]}")"')).toBeLessThan(t.indexOf("exec "));
    }
  });

  it("launch.sh uses accelerate for FSDP and llamafactory-cli (torchrun for DeepSpeed) otherwise", () => {
    for (const { plan, files } of bundles) {
      const t = textOf(file(files, "launch.sh") as EmittedFile);
      if (plan.sharding.startsWith("fsdp")) {
        expect(t).toMatch(
          /exec accelerate launch "\$\{args\[@\]\}" -m llamafactory\.launcher train\.yaml\n$/,
        );
      } else {
        expect(t).toMatch(/exec llamafactory-cli train train\.yaml\n$/);
        expect(t.includes("FORCE_TORCHRUN=1")).toBe(plan.gpus * plan.nodes > 1 || plan.sharding !== "none");
      }
    }
  });

  it("a multi-node launch.sh refuses a node rank outside the job", () => {
    const { files } = bundle("two-nodes-zero3");
    const t = textOf(file(files, "launch.sh") as EmittedFile).replace(/^exec .*$/m, "echo LAUNCH $NODE_RANK");
    const stubbed = t.replace('cd "$(dirname "${BASH_SOURCE[0]}")"', "true");
    for (const [rank, status] of [
      ["1", 0],
      ["2", 2],
      ["x", 2],
      ["-1", 2],
    ] as const) {
      const r = spawnSync("bash", ["-c", stubbed], {
        encoding: "utf8",
        env: { PATH: process.env.PATH, NODE_RANK: rank, MASTER_ADDR: "10.0.0.1" },
      });
      expect(r.status, `NODE_RANK=${rank}: ${r.stderr}`).toBe(status);
    }
    // a second node left at the default rendezvous address would wait for itself
    const lost = spawnSync("bash", ["-c", stubbed], {
      encoding: "utf8",
      env: { PATH: process.env.PATH, NODE_RANK: "1" },
    });
    expect(lost.status).toBe(2);
    expect(lost.stderr).toContain("set MASTER_ADDR");
  });
});

describe("YAML numbers and strings", () => {
  it("floats carry a dot and a signed exponent, as YAML 1.1 needs", () => {
    expect(formatYamlFloat(1e-4)).toBe("1.0e-4");
    expect(formatYamlFloat(1e-5)).toBe("1.0e-5");
    expect(formatYamlFloat(2.5e-5)).toBe("2.5e-5");
    expect(formatYamlFloat(3)).toBe("3.0");
    expect(formatYamlFloat(0.1)).toBe("0.1");
    expect(formatYamlFloat(1e9)).toBe("1.0e+9");
  });

  const yamlTexts = bundles.flatMap(({ name, files }) =>
    files
      .filter((f) => f.path.endsWith(".yaml"))
      .map((f) => ({ name: `${name}/${f.path}`, text: textOf(f) })),
  );
  const TYPED = `
import sys, json
def t(v):
    if isinstance(v, dict): return {k: t(x) for k, x in v.items()}
    if isinstance(v, list): return [t(x) for x in v]
    return [type(v).__name__, v]
`;

  const pyyaml = findPython(["yaml"]);
  it.runIf(pyyaml !== undefined || pythonRequired)("PyYAML reads every YAML file as written", () => {
    expect(pyyaml, "python3 with PyYAML").toBeDefined();
    const out = runPython(
      pyyaml as string,
      `${TYPED}\nimport yaml\nprint(json.dumps([t(yaml.safe_load(d)) for d in json.load(sys.stdin)]))`,
      JSON.stringify(yamlTexts.map((y) => y.text)),
    );
    const typed = JSON.parse(out) as Record<string, [string, unknown]>[];
    yamlTexts.forEach((y, i) => {
      const js = parse(y.text, { version: "1.1" });
      expect(untype(typed[i]), y.name).toEqual(js);
    });
    // the types LLaMA-Factory's dataclasses and accelerate expect
    const train = typed[yamlTexts.findIndex((y) => y.name === "lora-1gpu/train.yaml")] ?? {};
    expect(train.learning_rate).toEqual(["float", 1e-4]);
    expect(train.num_train_epochs).toEqual(["float", 3]);
    expect(train.warmup_ratio).toEqual(["float", 0.1]);
    expect(train.per_device_train_batch_size).toEqual(["int", 1]);
    expect(train.bf16).toEqual(["bool", true]);
    expect(train.resume_from_checkpoint).toEqual(["NoneType", null]);
    expect(train.report_to).toEqual(["str", "none"]);
    const acc = typed[yamlTexts.findIndex((y) => y.name === "fsdp-lora/accelerate_fsdp.yaml")] ?? {};
    expect((acc.fsdp_config as unknown as Record<string, unknown>)?.fsdp_sync_module_states).toEqual([
      "bool",
      true,
    ]);
    expect(acc.num_processes).toEqual(["int", 4]);
  });

  const omega = findPython(["omegaconf"]);
  it.runIf(omega !== undefined || pythonRequired)(
    "OmegaConf (LLaMA-Factory's reader) reads train.yaml as PyYAML does",
    () => {
      expect(omega, "python3 with omegaconf (Debian: python3-omegaconf)").toBeDefined();
      const trains = yamlTexts.filter((y) => y.name.endsWith("/train.yaml"));
      const out = runPython(
        omega as string,
        `${TYPED}\nimport yaml\nfrom omegaconf import OmegaConf\nres = []\nfor d in json.load(sys.stdin):\n    res.append([t(OmegaConf.to_container(OmegaConf.create(d))), t(yaml.safe_load(d))])\nprint(json.dumps(res))`,
        JSON.stringify(trains.map((y) => y.text)),
      );
      const pairs = JSON.parse(out) as [unknown, unknown][];
      expect(pairs).toHaveLength(trains.length);
      pairs.forEach(([viaOmega, viaPyYaml], i) => {
        expect(viaOmega, trains[i]?.name).toEqual(viaPyYaml);
      });
    },
  );
});

function untype(v: unknown): unknown {
  if (Array.isArray(v) && v.length === 2 && typeof v[0] === "string") return v[1];
  if (Array.isArray(v)) return v.map(untype);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, untype(x)]));
  }
  return v;
}

describe("demo dataset", () => {
  it("multimodal plans with images get PNGs of the plan's size that decode", () => {
    const { plan, files } = bundle("vlm-fsdp-qlora");
    const pngs = files.filter((f) => f.path.endsWith(".png"));
    expect(pngs.length).toBeGreaterThan(0);
    const rows = JSON.parse(textOf(file(files, "data/tunefit_demo.json") as EmittedFile)) as {
      messages: { content: string }[];
      images: string[];
    }[];
    for (const row of rows) {
      expect(row.messages[0]?.content.split("<image>").length ?? 0).toBe(plan.imagesPerSample + 1);
      for (const img of row.images) expect(files.some((f) => f.path === `data/${img}`)).toBe(true);
    }
    for (const png of pngs) {
      const b = Buffer.from(png.contents);
      expect(b.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
      const width = b.readUInt32BE(16);
      const height = b.readUInt32BE(20);
      expect(width * height).toBeLessThanOrEqual(plan.imageMaxPixels);
      expect(width).toBe(Math.floor(Math.sqrt(plan.imageMaxPixels)));
      const idatLength = b.readUInt32BE(33);
      expect(b.subarray(37, 41).toString("latin1")).toBe("IDAT");
      const raw = inflateSync(b.subarray(41, 41 + idatLength));
      expect(raw.length).toBe(height * (1 + 3 * width));
    }
  });

  it("text plans get alpaca samples registered under the dataset train.yaml names", () => {
    const { files } = bundle("lora-1gpu");
    const info = JSON.parse(textOf(file(files, "data/dataset_info.json") as EmittedFile));
    expect(info).toEqual({ tunefit_demo: { file_name: "tunefit_demo.json" } });
    const rows = JSON.parse(textOf(file(files, "data/tunefit_demo.json") as EmittedFile)) as object[];
    for (const row of rows) expect(Object.keys(row)).toEqual(["instruction", "input", "output"]);
  });
});

describe("scripts run against stub commands", () => {
  const stubs = (dir: string, gpus: number) => {
    const bin = join(dir, "bin");
    mkdirSync(bin);
    const record = (name: string) =>
      `#!/usr/bin/env bash\n{ echo "${name} $*"; echo "cwd=$PWD"; for v in FORCE_TORCHRUN NNODES NPROC_PER_NODE NODE_RANK MASTER_ADDR MASTER_PORT CUDA_VISIBLE_DEVICES; do echo "$v=\${!v-}"; done; } >> "${join(dir, "calls.log")}"\n`;
    writeFileSync(join(bin, "llamafactory-cli"), record("llamafactory-cli"), { mode: 0o755 });
    writeFileSync(join(bin, "accelerate"), record("accelerate"), { mode: 0o755 });
    writeFileSync(
      join(bin, "nvidia-smi"),
      `#!/usr/bin/env bash\nfor i in $(seq 0 ${gpus - 1}); do echo "GPU $i: stub"; done\n`,
      { mode: 0o755 },
    );
    writeFileSync(join(bin, "scontrol"), "#!/usr/bin/env bash\nprintf 'node-a\\nnode-b\\n'\n", {
      mode: 0o755,
    });
    // srun runs its command once per node, as Slurm would with one task per node
    writeFileSync(
      join(bin, "srun"),
      '#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\nfor n in 0 1; do SLURM_NODEID=$n "$@" || exit $?; done\n',
      { mode: 0o755 },
    );
    return bin;
  };

  function runIn(
    name: string,
    script: string,
    env: Record<string, string>,
    gpus: number,
    submitFromBundle = false,
  ) {
    const { files } = bundle(name);
    const root = mkdtempSync(join(tmpdir(), "tunefit-stub-"));
    try {
      const dir = join(root, "my bundle");
      writeFiles(files, dir);
      const bin = stubs(root, gpus);
      const r = spawnSync("bash", [join(dir, script)], {
        cwd: submitFromBundle ? dir : root,
        encoding: "utf8",
        env: {
          PATH: `${bin}:${process.env.PATH}`,
          HOME: root,
          ...(submitFromBundle ? { SLURM_SUBMIT_DIR: dir } : {}),
          ...env,
        },
      });
      const log = existsSync(join(root, "calls.log")) ? readFileSync(join(root, "calls.log"), "utf8") : "";
      return { status: r.status, stderr: r.stderr, log, dir };
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }

  it("one GPU: llamafactory-cli in the bundle folder, pinned to one GPU, no torchrun", () => {
    const r = runIn("lora-1gpu", "launch.sh", {}, 8);
    expect(r.status, r.stderr).toBe(0);
    expect(r.log).toContain("llamafactory-cli train train.yaml\n");
    expect(r.log).toContain(`cwd=${r.dir}\n`);
    expect(r.log).toContain("CUDA_VISIBLE_DEVICES=0\n");
    expect(r.log).toContain("FORCE_TORCHRUN=\n");
  });

  it("DDP: torchrun over exactly the plan's GPUs", () => {
    const r = runIn("ddp-lora", "launch.sh", {}, 8);
    expect(r.status, r.stderr).toBe(0);
    expect(r.log).toContain("FORCE_TORCHRUN=1\nNNODES=1\nNPROC_PER_NODE=4\n");
  });

  it("too few GPUs visible: stops before launching", () => {
    const r = runIn("ddp-lora", "launch.sh", {}, 2);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("needs 4 GPUs per node; nvidia-smi lists 2");
    expect(r.log).toBe("");
    // nvidia-smi lists every GPU of the machine: a narrower CUDA_VISIBLE_DEVICES is what the ranks would get
    const narrowed = runIn("ddp-lora", "launch.sh", { CUDA_VISIBLE_DEVICES: "0,1" }, 8);
    expect(narrowed.status).toBe(1);
    expect(narrowed.stderr).toContain("needs 4 GPUs per node; CUDA_VISIBLE_DEVICES names 2");
    expect(narrowed.log).toBe("");
  });

  it("FSDP on two nodes: accelerate with the node's rank and the rendezvous address", () => {
    const r = runIn("two-nodes-fsdp", "launch.sh", { NODE_RANK: "1", MASTER_ADDR: "10.0.0.1" }, 8);
    expect(r.status, r.stderr).toBe(0);
    expect(r.log).toContain(
      "accelerate launch --config_file accelerate_fsdp.yaml --machine_rank 1 --main_process_ip 10.0.0.1 --main_process_port 29500 -m llamafactory.launcher train.yaml\n",
    );
  });

  it("Slurm submitted from elsewhere: refuses, naming the folder", () => {
    const r = runIn(
      "two-nodes-zero3",
      "slurm.sbatch",
      { SLURM_JOB_NODELIST: "node-[a-b]", SLURM_NNODES: "2" },
      8,
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("submit it from the bundle folder");
    expect(r.log).toBe("");
  });

  it("Slurm: one launch per node, ranks 0 and 1, rendezvous on the first host", () => {
    const r = runIn(
      "two-nodes-zero3",
      "slurm.sbatch",
      { SLURM_JOB_NODELIST: "node-[a-b]", SLURM_NNODES: "2" },
      8,
      true,
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.log.match(/^llamafactory-cli train train\.yaml$/gm)).toHaveLength(2);
    expect(r.log).toContain("NODE_RANK=0\nMASTER_ADDR=node-a\nMASTER_PORT=29500\n");
    expect(r.log).toContain("NODE_RANK=1\nMASTER_ADDR=node-a\nMASTER_PORT=29500\n");
  });
});

describe("choices that keep the bundle doing what the plan says", () => {
  it("pure bf16 under FSDP runs without accelerate's mixed precision (which would upcast the weights)", () => {
    const { plan } = resolvePlan({
      model: "Qwen/Qwen3-4B",
      gpu: "h100-80g",
      gpus: 8,
      method: "full",
      sharding: "fsdp2",
      precision: "pure_bf16",
    });
    const files = emitFiles(plan);
    const y = trainYaml(plan);
    expect(y.pure_bf16).toBe(true);
    expect(y.bf16).toBeUndefined();
    expect(accelerateConfig(plan)?.mixed_precision).toBe("no");
    expect(checkBundle(files, plan)).toEqual([]);
    // and the check catches the upcasting combination
    const broken = files.map((f) =>
      f.path === "train.yaml" ? { ...f, contents: `${textOf(f)}bf16: true\n` } : f,
    );
    expect(checkBundle(broken, plan).map((i) => i.code)).toContain("PURE_BF16_UPCAST");
  });

  it("max_samples caps only the demo dataset, never the user's", () => {
    const base = { model: "Qwen/Qwen3-4B", gpu: "a100-80g" } as const;
    expect(trainYaml(resolvePlan(base).plan).max_samples).toBe(1000);
    expect(trainYaml(resolvePlan({ ...base, dataset: "mine" }).plan).max_samples).toBeUndefined();
  });

  it("a model id cannot end a YAML comment line (NEL and other line breaks are blanked)", () => {
    const { plan } = resolvePlan({ model: "Qwen/Qwen3-4B", gpu: "a100-80g" });
    const hostile = {
      ...plan,
      model: { ...plan.model, id: "org/m\u0085report_to: wandb #\nx: 1\u2028y: 2" },
    };
    const text = textOf(emitFiles(hostile)[0] as EmittedFile);
    const parsed = parse(text, { version: "1.1" }) as Record<string, unknown>;
    expect(parsed.report_to).toBe("none");
    expect(parsed.x).toBeUndefined();
    expect(parsed.model_name_or_path).toBe(hostile.model.id);
    // the one header line naming the model stays one comment line
    expect(text.split("\n").filter((l) => l.startsWith("#") && l.includes("wandb"))).toHaveLength(1);
  });
});

describe("the train.yaml escape hatch", () => {
  it("sets keys tunefit does not model and removes emitted ones, and the bundle check still holds", () => {
    const { plan } = resolvePlan({ model: "Qwen/Qwen3-4B", gpu: "a100-80g" });
    const options = { trainYaml: { set: { val_size: 0.1, learning_rate: 2e-4 }, remove: ["plot_loss"] } };
    const y = trainYaml(plan, options);
    expect(y.val_size).toBe(0.1);
    expect(y.learning_rate).toBe(2e-4);
    expect("plot_loss" in y).toBe(false);
    expect(checkBundle(emitFiles(plan, options), plan)).toEqual([]);
    const bad = emitFiles(plan, { trainYaml: { set: { not_a_key: 1 } } });
    expect(checkBundle(bad, plan).map((i) => i.code)).toEqual(["TARGET_UNKNOWN_KEY"]);
  });

  it("leaves tunefit's deepspeed.json out where train.yaml names another config or none", () => {
    const { plan } = resolvePlan({ model: "Qwen/Qwen3-4B", gpu: "a100-80g", gpus: 2, sharding: "zero3" });
    const paths = (options = {}) => emitFiles(plan, options).map((f) => f.path);
    expect(paths()).toContain("deepspeed.json");
    expect(paths({ trainYaml: { set: { deepspeed: "cfg/ds3.json" } } })).not.toContain("deepspeed.json");
    expect(paths({ trainYaml: { remove: ["deepspeed"] } })).not.toContain("deepspeed.json");
    expect(paths({ trainYaml: { set: { deepspeed: "deepspeed.json" } } })).toContain("deepspeed.json");
    // the bundle's own file by another spelling is still the bundle's own file, and the check finds it
    const dotted = { trainYaml: { set: { deepspeed: "./deepspeed.json" } } };
    expect(paths(dotted)).toContain("deepspeed.json");
    expect(checkBundle(emitFiles(plan, dotted), plan)).toEqual([]);
  });
});

describe("JSON Schemas named for editors", () => {
  it("train.yaml and accelerate_fsdp.yaml name their schema on the first line when asked, and still parse", () => {
    const { plan } = resolvePlan({ model: "Qwen/Qwen3-4B", gpu: "a100-80g", gpus: 2, sharding: "fsdp" });
    const files = emitFiles(plan, {
      schemas: {
        trainYaml: "./.vscode/llamafactory.schema.json",
        accelerate: "./.vscode/accelerate.schema.json",
      },
    });
    const train = textOf(file(files, "train.yaml") as EmittedFile);
    expect(train.split("\n")[0]).toBe("# yaml-language-server: $schema=./.vscode/llamafactory.schema.json");
    const acc = textOf(file(files, "accelerate_fsdp.yaml") as EmittedFile);
    expect(acc.split("\n")[0]).toBe("# yaml-language-server: $schema=./.vscode/accelerate.schema.json");
    expect(parse(train, { version: "1.1" })).toEqual(trainYaml(plan));
    expect(textOf(emitFiles(plan)[0] as EmittedFile)).not.toContain("yaml-language-server");
  });
});

describe("DeepSpeed batch values against the YAML", () => {
  it("an explicit value that disagrees is the run-stopping mismatch; equal values and auto pass", () => {
    const { plan, files } = bundle("zero3-full");
    const withDs = (patch: Record<string, unknown>) =>
      files.map((f) =>
        f.path === "deepspeed.json"
          ? { ...f, contents: JSON.stringify({ ...JSON.parse(textOf(f)), ...patch }) }
          : f,
      );
    const world = plan.gpus * plan.nodes;
    const right = plan.microBatch * plan.gradAccum * world;
    expect(checkBundle(withDs({ train_batch_size: right }), plan)).toEqual([]);
    const wrong = checkBundle(withDs({ train_batch_size: right + 1 }), plan);
    expect(wrong.map((i) => [i.code, i.path])).toEqual([
      ["DEEPSPEED_BATCH_MISMATCH", "deepspeed.json:train_batch_size"],
    ]);
  });
});

describe("bundle README with a paged optimizer", () => {
  it("says which part of the states sits in the runtime row and which pages through host RAM", () => {
    const { plan } = resolvePlan({
      model: "meta-llama/Llama-3.1-8B",
      gpu: "a100-80g",
      method: "full",
      precision: "pure_bf16",
      optimizer: "paged_adamw_32bit",
      seqLen: 2048,
      microBatch: 2,
      template: "llama3",
    });
    const readme = emitFiles(plan).find((f) => f.path === "README.md")?.contents ?? "";
    expect(readme).toMatch(
      /paged_adamw_32bit keeps 59\.83 GiB of optimizer states per GPU in CUDA managed memory, outside PyTorch's allocator: \d+\.\d\d GiB of it is counted in the runtime row, on the GPU, and \d+\.\d\d GiB pages through host RAM every step\./,
    );
    const plain = emitFiles({ ...plan, optimizer: "adamw_8bit" }).find(
      (f) => f.path === "README.md",
    )?.contents;
    expect(plain).not.toContain("managed memory");
  });
});
