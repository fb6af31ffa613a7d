import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { architectureFromConfig } from "../../src/catalog/config-json.ts";
import { listCatalogModels } from "../../src/catalog/models.ts";
import { emitAnalysis } from "../../src/emit/bundle.ts";
import {
  HF_MODEL_TYPES,
  hfModelConfig,
  PROBE_FILE,
  probeFacts,
  probeFiles,
  probeLauncher,
  probeScript,
  pythonJsonLiteral,
} from "../../src/emit/probe.ts";
import { writeFiles } from "../../src/emit/write-files.ts";
import { analyzeResolvedPlan, type PlanAnalysis, planReport } from "../../src/plan/analyze.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import { MATRIX } from "./matrix.ts";
import { findPython, pythonRequired } from "./python.ts";

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

const analyses = Object.fromEntries(
  Object.entries(MATRIX).map(([name, input]) => [name, analyzeResolvedPlan(resolvePlan(input).plan)]),
) as Record<keyof typeof MATRIX, PlanAnalysis>;
const analysis = (name: string): PlanAnalysis => {
  const a = analyses[name];
  if (!a) throw new Error(`no plan ${name}`);
  return a;
};
const text = (name: string) => probeScript(analysis(name));

/*
 * Stand-ins for torch, pynvml, transformers, peft, LLaMA-Factory's run_exp, torchrun and accelerate launch:
 * fixed memory figures (GiB below), so the report's numbers are known. Rank r adds r MiB to every figure.
 *   loading: allocated 1, reserved 2; each training step: allocated 10, reserved 11;
 *   NVML used 12; torch.cuda.mem_get_info used 13 (without pynvml).
 */
const STUBS: Record<string, string> = {
  "torch/__init__.py": `"""A stand-in for torch: CUDA memory counters with fixed figures."""
__version__ = "0.0+stub"
bfloat16 = "torch.bfloat16"
DEFAULT_DEVICE = None

from . import cuda, distributed, utils  # noqa: E402,F401


class Tensor(list):
    def clone(self):
        return Tensor(self)


class Generator:
    def manual_seed(self, seed):
        self.seed = seed
        return self


def randint(low, high, size, generator=None):
    seed = generator.seed if generator is not None else 0
    return Tensor((seed * 7919 + i) % high for i in range(size[0]))


def ones_like(t):
    return Tensor([1] * len(t))


class device:
    def __init__(self, kind, index=None):
        self.name = f"{kind}:{index}"

    def __enter__(self):
        global DEFAULT_DEVICE
        DEFAULT_DEVICE = self.name
        return self

    def __exit__(self, *exc):
        global DEFAULT_DEVICE
        DEFAULT_DEVICE = None
`,
  "torch/cuda.py": `import os

GIB = 1024**3
MIB = 1024**2


class OutOfMemoryError(RuntimeError):
    pass


_state = {"alloc": 0, "peak_alloc": 0, "reserved": 0, "peak_reserved": 0}


def _offset():
    return int(os.environ.get("RANK", "0")) * MIB


def _stub_use(alloc, reserved):
    _state["alloc"], _state["reserved"] = alloc, reserved
    _state["peak_alloc"] = max(_state["peak_alloc"], alloc)
    _state["peak_reserved"] = max(_state["peak_reserved"], reserved)


def is_available():
    return True


def set_device(device):
    pass


class _Props:
    name = "Stub GPU"
    total_memory = 80 * GIB


def get_device_properties(device):
    props = _Props()
    props.uuid = f"00000000-0000-0000-0000-00000000000{device}"
    return props


def max_memory_allocated(device=None):
    return _state["peak_alloc"] + _offset()


def max_memory_reserved(device=None):
    return _state["peak_reserved"] + _offset()


def reset_peak_memory_stats(device=None):
    _state["peak_alloc"], _state["peak_reserved"] = _state["alloc"], _state["reserved"]


def mem_get_info(device=None):
    return 80 * GIB - (13 * GIB + _offset()), 80 * GIB
`,
  "torch/utils/__init__.py": "from . import data  # noqa: F401\n",
  "torch/utils/data.py": "class Dataset:\n    pass\n",
  "torch/distributed/__init__.py": `def is_available():
    return True


def is_initialized():
    return False
`,
  "torch/distributed/run.py": `"""A stand-in for torchrun: starts --nproc_per_node copies of the script with the rank variables."""
import argparse
import json
import os
import subprocess
import sys

parser = argparse.ArgumentParser()
for flag in ("--nnodes", "--node_rank", "--nproc_per_node", "--master_addr", "--master_port"):
    parser.add_argument(flag)
parser.add_argument("script")
parser.add_argument("args", nargs=argparse.REMAINDER)
a = parser.parse_args()
KEYS = ("CUDA_VISIBLE_DEVICES", "PYTORCH_CUDA_ALLOC_CONF", "TORCH_NCCL_AVOID_RECORD_STREAMS", "TUNEFIT_PROBE_LAUNCHED")
if os.environ.get("STUB_LAUNCH_LOG"):
    with open(os.environ["STUB_LAUNCH_LOG"], "w") as f:
        json.dump({"launcher": "torchrun", "argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in KEYS}}, f)
nproc, nnodes, node = int(a.nproc_per_node), int(a.nnodes), int(a.node_rank)
procs = []
for local in range(nproc):
    env = dict(os.environ, RANK=str(node * nproc + local), LOCAL_RANK=str(local), WORLD_SIZE=str(nnodes * nproc),
               GROUP_RANK=str(node), MASTER_ADDR=a.master_addr, MASTER_PORT=a.master_port)
    procs.append(subprocess.Popen([sys.executable, a.script, *a.args], env=env))
sys.exit(max(p.wait() for p in procs))
`,
  "accelerate/__init__.py": "",
  "accelerate/commands/__init__.py": "",
  "accelerate/commands/launch.py": `"""A stand-in for accelerate launch: this machine's share of num_processes from --config_file."""
import argparse
import json
import os
import subprocess
import sys

import yaml

parser = argparse.ArgumentParser()
parser.add_argument("--config_file")
parser.add_argument("--machine_rank", default="0")
parser.add_argument("--main_process_ip")
parser.add_argument("--main_process_port")
parser.add_argument("script")
parser.add_argument("args", nargs=argparse.REMAINDER)
a = parser.parse_args()
with open(a.config_file) as f:
    config = yaml.safe_load(f)
KEYS = ("CUDA_VISIBLE_DEVICES", "PYTORCH_CUDA_ALLOC_CONF", "TORCH_NCCL_AVOID_RECORD_STREAMS", "TUNEFIT_PROBE_LAUNCHED")
if os.environ.get("STUB_LAUNCH_LOG"):
    with open(os.environ["STUB_LAUNCH_LOG"], "w") as f:
        json.dump({"launcher": "accelerate", "argv": sys.argv[1:], "distributedType": config.get("distributed_type"),
                   "env": {k: os.environ.get(k) for k in KEYS}}, f)
world, machines, node = int(config["num_processes"]), int(config["num_machines"]), int(a.machine_rank)
nproc = world // machines
procs = []
for local in range(nproc):
    env = dict(os.environ, RANK=str(node * nproc + local), LOCAL_RANK=str(local), WORLD_SIZE=str(world),
               GROUP_RANK=str(node))
    procs.append(subprocess.Popen([sys.executable, a.script, *a.args], env=env))
sys.exit(max(p.wait() for p in procs))
`,
  "pynvml.py": `"""A stand-in for pynvml: every device reports 12 GiB used (plus the rank in MiB)."""
import os

if os.environ.get("STUB_NO_PYNVML") == "1":
    raise ImportError("no pynvml")


class _Info:
    def __init__(self, used):
        self.used, self.total, self.free = used, 80 * 1024**3, 80 * 1024**3 - used


def nvmlInit():
    pass


def nvmlShutdown():
    pass


def nvmlDeviceGetHandleByUUID(uuid):
    assert uuid.startswith("GPU-"), uuid
    return uuid


def nvmlDeviceGetHandleByIndex(index):
    return index


def nvmlDeviceGetMemoryInfo(handle):
    return _Info(12 * 1024**3 + int(os.environ.get("RANK", "0")) * 1024**2)
`,
  "transformers.py": `"""A stand-in for transformers: the callback base class, and a Trainer that trains by calling the callbacks."""
import json
import os

import torch

__version__ = os.environ.get("STUB_TRANSFORMERS_VERSION", "4.55.0")
GIB = 1024**3
LOG = {}


class TrainerCallback:
    def on_train_begin(self, args, state, control, **kwargs):
        pass

    def on_step_begin(self, args, state, control, **kwargs):
        pass

    def on_step_end(self, args, state, control, **kwargs):
        pass


class _Config:
    def __init__(self, model_type, **values):
        self.model_type = model_type
        self.__dict__.update(values)


class AutoConfig:
    @staticmethod
    def for_model(model_type, **values):
        return _Config(model_type, **values)

    @staticmethod
    def from_pretrained(path):
        with open(os.path.join(path, "config.json")) as f:
            return _Config(**json.load(f))


class _Model:
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        LOG["gradientCheckpointing"] = gradient_checkpointing_kwargs

    def enable_input_require_grads(self):
        LOG["inputRequireGrads"] = True


class AutoModelForCausalLM:
    @staticmethod
    def from_config(config, **kwargs):
        LOG["config"] = dict(vars(config))
        LOG["fromConfig"] = {k: str(v) for k, v in kwargs.items()}
        LOG["device"] = torch.DEFAULT_DEVICE
        torch.cuda._stub_use(1 * GIB, 2 * GIB)
        return _Model()


class TrainingArguments:
    def __init__(self, **kwargs):
        LOG["trainingArguments"] = kwargs
        self.max_steps = kwargs["max_steps"]


def default_data_collator(features):
    return features


class _State:
    global_step = 0


class Trainer:
    def __init__(self, model=None, args=None, train_dataset=None, data_collator=None, callbacks=None, **kwargs):
        self.args, self.dataset, self.callbacks = args, train_dataset, callbacks or []

    def train(self):
        sample = self.dataset[3]
        LOG["dataset"] = {"count": len(self.dataset), "keys": sorted(sample), "length": len(sample["input_ids"])}
        state = _State()
        for cb in self.callbacks:
            cb.on_train_begin(self.args, state, None)
        for step in range(1, self.args.max_steps + 1):
            torch.cuda._stub_use(10 * GIB, 11 * GIB)
            state.global_step = step
            for cb in self.callbacks:
                cb.on_step_end(self.args, state, None)
        if os.environ.get("STUB_LOG"):
            with open(f"{os.environ['STUB_LOG']}.{os.environ.get('RANK', '0')}", "w") as f:
                json.dump(LOG, f)

    def save_model(self, *args, **kwargs):
        raise RuntimeError("the probe must not save the model")
`,
  "peft.py": `"""A stand-in for peft: records the LoRA config."""
from transformers import LOG


class LoraConfig:
    def __init__(self, **kwargs):
        LOG["lora"] = kwargs


def get_peft_model(model, config):
    return model
`,
  "llamafactory/__init__.py": "",
  "llamafactory/train/__init__.py": "",
  "llamafactory/train/tuner.py": `"""A stand-in for LLaMA-Factory's run_exp: loads, trains max_steps steps calling the callbacks, then saves."""
import json
import os

import torch
import transformers

GIB = 1024**3


class State:
    global_step = 0


def run_exp(args=None, callbacks=None):
    if os.environ.get("STUB_LOG"):
        with open(f"{os.environ['STUB_LOG']}.{os.environ.get('RANK', '0')}", "w") as f:
            json.dump({"args": args, "cwd": os.getcwd()}, f)
    torch.cuda._stub_use(1 * GIB, 2 * GIB)
    oom_at = int(os.environ.get("STUB_OOM_STEP", "0"))
    this_rank = os.environ.get("STUB_OOM_RANK", os.environ.get("RANK", "0")) == os.environ.get("RANK", "0")
    if oom_at == -1 and this_rank:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory while loading. Tried to allocate 4.00 GiB")
    state = State()
    for cb in callbacks:
        cb.on_train_begin(None, state, None)
    for step in range(1, args["max_steps"] + 1):
        for cb in callbacks:
            cb.on_step_begin(None, state, None)
        if step == oom_at and this_rank:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        torch.cuda._stub_use(10 * GIB, 11 * GIB)
        state.global_step = step
        for cb in callbacks:
            cb.on_step_end(None, state, None)
    transformers.Trainer().save_model()  # LLaMA-Factory saves after training; the probe skips it
`,
};

describe("probe.py as text", () => {
  it("is one executable file, the same text for the same analysis", () => {
    const files = probeFiles(analysis("lora-1gpu"));
    expect(files.map((f) => [f.path, f.executable])).toEqual([[PROBE_FILE, true]]);
    expect(files[0]?.contents).toBe(text("lora-1gpu"));
    expect(text("lora-1gpu").startsWith("#!/usr/bin/env python3\n")).toBe(true);
  });

  it("names nothing of the machine it was written on", () => {
    for (const name of Object.keys(MATRIX)) {
      expect(text(name)).not.toMatch(/\/home\/|\/root\/|\/Users\/|\/tmp\/|\/work\/|\d{4}-\d{2}-\d{2}T\d{2}:/);
    }
  });

  it("launches each strategy as launch.sh does", () => {
    const launchers = Object.fromEntries(
      Object.keys(MATRIX).map((n) => [n, probeLauncher(analysis(n).plan)]),
    );
    expect(launchers).toEqual({
      "lora-1gpu": "python",
      "qlora-1gpu": "python",
      "ddp-lora": "torchrun",
      "zero2-full": "torchrun",
      "zero3-full": "torchrun",
      "zero3-offload": "torchrun",
      "fsdp-lora": "accelerate",
      "fsdp-full-sync": "accelerate",
      "fsdp2-full": "accelerate",
      "fsdp-qlora": "accelerate",
      "vlm-fsdp-qlora": "accelerate",
      "vlm-video-lora": "python",
      "galore-1gpu": "python",
      "badam-zero3": "torchrun",
      "two-nodes-zero3": "torchrun",
      "two-nodes-fsdp": "accelerate",
    });
    const oneGpuZero = analyzeResolvedPlan(
      resolvePlan({ model: "Qwen/Qwen2.5-1.5B-Instruct", gpu: "a100-80g", method: "full", sharding: "zero2" })
        .plan,
    );
    expect(probeLauncher(oneGpuZero.plan)).toBe("torchrun"); // DeepSpeed needs a distributed launch
  });

  it("embeds the plan --json memory object as the prediction", () => {
    const a = analysis("fsdp-lora");
    const facts = probeFacts(a);
    expect(facts.prediction).toEqual(planReport(a).memory);
    expect(facts.plan.worldSize).toBe(4);
    expect(facts.launch).toEqual({
      launcher: "accelerate",
      trainYaml: "train.yaml",
      configFile: "accelerate_fsdp.yaml",
      deepspeed: null,
      masterPort: 29500,
    });
    expect(facts.probe.steps).toBe(5);
    expect(probeFacts(a, { steps: 2, masterPort: 29600 }).launch.masterPort).toBe(29600);
    expect(() => probeFacts(a, { steps: 0 })).toThrow(RangeError);
  });

  it("says which plans hf mode cannot run, and why", () => {
    expect(probeFacts(analysis("lora-1gpu")).hf.planUnsupported).toEqual([]);
    expect(probeFacts(analysis("fsdp-lora")).hf.planUnsupported).toEqual([]);
    expect(probeFacts(analysis("zero3-full")).hf.planUnsupported).toEqual([
      "hf mode trains LoRA adapters only; this plan is full (use the llamafactory mode)",
      "hf mode runs one GPU, DDP or FSDP; this plan uses DeepSpeed ZeRO-3 (use the llamafactory mode)",
    ]);
    expect(probeFacts(analysis("qlora-1gpu")).hf.planUnsupported[0]).toMatch(/LoRA adapters only; .* qlora/);
    const vlm = probeFacts(analysis("vlm-fsdp-qlora")).hf;
    expect(vlm.config).toBeNull();
    expect(vlm.configUnsupported).toMatch(/qwen2_vl model/);
  });

  it("writes LoRA settings as LLaMA-Factory reads train.yaml (alpha 2 × rank, all → all-linear)", () => {
    expect(probeFacts(analysis("lora-1gpu")).hf.lora).toEqual({
      r: 8,
      alpha: 16,
      dropout: 0,
      targetModules: "all-linear",
      useDora: false,
      modulesToSave: [],
    });
    const custom = analyzeResolvedPlan(
      resolvePlan({
        model: "Qwen/Qwen2.5-0.5B-Instruct",
        gpu: "rtx4090",
        method: "lora",
        loraRank: 16,
        loraAlpha: 8,
        loraDropout: 0.05,
        loraTarget: ["q_proj", "v_proj"],
        useDora: true,
        additionalTarget: ["embed_tokens"],
      }).plan,
    );
    expect(probeFacts(custom).hf.lora).toEqual({
      r: 16,
      alpha: 8,
      dropout: 0.05,
      targetModules: ["q_proj", "v_proj"],
      useDora: true,
      modulesToSave: ["embed_tokens"],
    });
  });
});

describe("hfModelConfig", () => {
  const dense = listCatalogModels().filter(
    (r) => (HF_MODEL_TYPES as readonly string[]).includes(r.architecture.modelType) && !r.architecture.vision,
  );

  it("covers every catalog model of the four families", () => {
    expect(dense.length).toBeGreaterThan(20);
    expect(new Set(dense.map((r) => r.architecture.modelType))).toEqual(new Set(HF_MODEL_TYPES));
  });

  it("reads back through tunefit's own config.json reader as the same architecture", () => {
    for (const r of dense) {
      const hf = hfModelConfig(r.architecture, 4096);
      expect(hf.unsupported, r.id).toBeNull();
      const back = architectureFromConfig(hf.config);
      const want = {
        ...r.architecture,
        text: {
          ...r.architecture.text,
          maxPositionEmbeddings: r.architecture.text.maxPositionEmbeddings ?? 4096,
        },
      };
      expect(back, r.id).toEqual(want);
    }
  });

  it("refuses other families and layouts the four classes cannot express", () => {
    for (const r of listCatalogModels()) {
      if (dense.includes(r)) continue;
      expect(hfModelConfig(r.architecture).config, r.id).toBeNull();
    }
    const qwen2 = dense.find((r) => r.architecture.modelType === "qwen2");
    if (!qwen2) throw new Error("no qwen2 model");
    const noBias = {
      ...qwen2.architecture,
      text: { ...qwen2.architecture.text, qkvBias: false },
    };
    expect(hfModelConfig(noBias).unsupported).toMatch(/biases differ from Qwen2ForCausalLM/);
  });
});

describe("pythonJsonLiteral", () => {
  it("is ASCII without a single quote, whatever the value holds", () => {
    const lit = pythonJsonLiteral({ id: "a'''b\"\"\"c\\\u2028\u0085é😀\ud800", n: [1, 2.5, null, true] });
    expect(lit.startsWith("r'''\n") && lit.endsWith("\n'''")).toBe(true);
    const inner = lit.slice(5, -4);
    expect(inner).not.toMatch(/'/);
    expect(inner).toMatch(/^[\n\x20-\x7e]*$/);
  });
});

// ---------------------------------------------------------------------------------------------- Python

const python = findPython(["yaml"]);
const runPy = it.runIf(python !== undefined || pythonRequired);
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function tempRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "tunefit-probe-"));
  roots.push(root);
  return root;
}

let stubDir: string | undefined;
function stubs(): string {
  if (stubDir) return stubDir;
  const dir = join(tempRoot(), "stubs");
  for (const [path, contents] of Object.entries(STUBS)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), contents);
  }
  stubDir = dir;
  return dir;
}

/** Writes the plan's bundle with probe.py; returns its folder. */
function bundle(a: PlanAnalysis): string {
  const dir = join(tempRoot(), "bundle");
  writeFiles([...emitAnalysis(a), ...probeFiles(a)], dir);
  return dir;
}

const CLEARED = [
  "PYTHONPATH",
  "RANK",
  "LOCAL_RANK",
  "WORLD_SIZE",
  "GROUP_RANK",
  "NODE_RANK",
  "MASTER_ADDR",
  "MASTER_PORT",
  "CUDA_VISIBLE_DEVICES",
  "PYTORCH_CUDA_ALLOC_CONF",
  "TORCH_NCCL_AVOID_RECORD_STREAMS",
  "OPTIM_TORCH",
  "TUNEFIT_PROBE_LAUNCHED",
];

/** Runs probe.py of a bundle, the stubs first on PYTHONPATH unless `withStubs` is false. */
function probe(
  dir: string,
  args: readonly string[],
  env: Record<string, string> = {},
  withStubs = true,
): SpawnSyncReturns<string> {
  const base: Record<string, string | undefined> = { ...process.env };
  for (const k of CLEARED) delete base[k];
  if (withStubs) base.PYTHONPATH = stubs();
  return spawnSync(python ?? "python3", [join(dir, PROBE_FILE), "--sample-interval", "0.05", ...args], {
    env: { ...base, ...env },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
}

// biome-ignore lint/suspicious/noExplicitAny: the report is JSON from Python
type Json = any;
function report(r: SpawnSyncReturns<string>): Json {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`no JSON report (status ${r.status}): ${r.stdout}\n${r.stderr}`);
  }
}
const readJson = (path: string): Json => JSON.parse(readFileSync(path, "utf8"));

describe("probe.py under Python, against stubbed torch, pynvml, transformers and LLaMA-Factory", () => {
  runPy("compiles for every strategy (single GPU, DeepSpeed, FSDP, two nodes)", () => {
    expect(python, "python3 with PyYAML").toBeDefined();
    const root = tempRoot();
    const paths = Object.keys(MATRIX).map((name) => {
      const path = join(root, `${name}.py`);
      writeFileSync(path, text(name));
      return path;
    });
    const code = "import py_compile, sys\nfor p in sys.argv[1:]: py_compile.compile(p, doraise=True)";
    const r = spawnSync(python ?? "python3", ["-c", code, ...paths], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  runPy("carries any value into Python unchanged (--prediction), with no third-party module", () => {
    const a = analysis("lora-1gpu");
    const weird = "org/x'''y\"\"\"z\\n\u2028\u0085é😀 ${HOME} `id`";
    const odd: PlanAnalysis = { ...a, plan: { ...a.plan, model: { ...a.plan.model, id: weird } } };
    const dir = bundle(odd);
    const r = probe(dir, ["--prediction"], {}, false);
    expect(r.status, r.stderr).toBe(0);
    const out = report(r);
    expect(out.plan.model).toBe(weird);
    expect(out.prediction).toEqual(JSON.parse(JSON.stringify(planReport(a).memory)));
  });

  runPy("llamafactory mode, one GPU: figures, prediction, ratios; run_exp gets the overrides", () => {
    const a = analysis("lora-1gpu");
    const dir = bundle(a);
    const log = join(tempRoot(), "args");
    const r = probe(dir, [], { STUB_LOG: log });
    expect(r.status, r.stderr).toBe(0);
    const out = report(r);
    expect(out.mode).toBe("llamafactory");
    expect(out.errors).toEqual([]);
    expect(out.ranks).toHaveLength(1);
    const rank = out.ranks[0];
    expect(rank).toMatchObject({
      rank: 0,
      status: "finished",
      stepsCompleted: 5,
      maxAllocatedBytes: 10 * GIB,
      maxReservedBytes: 11 * GIB,
      deviceUsedBytes: 12 * GIB,
      deviceUsedSource: "nvml",
      load: { maxAllocatedBytes: 1 * GIB, maxReservedBytes: 2 * GIB, deviceUsedBytes: 12 * GIB },
      oom: null,
      device: { index: 0, name: "Stub GPU", totalBytes: 80 * GIB },
      data: "full-length",
    });
    expect(rank.versions.torch).toBe("0.0+stub"); // the stand-in, not a real torch
    const predicted = planReport(a).memory;
    expect(out.prediction).toEqual(JSON.parse(JSON.stringify(predicted)));
    expect(out.measured).toEqual({
      maxAllocatedBytes: 10 * GIB,
      maxReservedBytes: 11 * GIB,
      deviceUsedBytes: 12 * GIB,
    });
    const p = predicted.train.perGpu;
    expect(out.ratio.allocated).toBeCloseTo((10 * GIB) / p.allocatedBytes, 3);
    expect(out.ratio.reserved).toBeCloseTo((11 * GIB) / p.reservedBytes, 3);
    expect(out.ratio.device).toBeCloseTo((12 * GIB) / p.deviceBytes, 3);
    expect(out.load.predictedPeakBytes).toBe(predicted.load.perGpuPeakBytes);
    expect(out.load.ratio).toBeCloseTo((12 * GIB) / predicted.load.perGpuPeakBytes, 3);
    // the same report is kept beside the rank files
    expect(readJson(join(dir, "probe-results", "probe-report.json"))).toEqual(out);

    const { args, cwd } = readJson(`${log}.0`);
    expect(cwd).toBe(dir);
    expect(args).toMatchObject({
      max_steps: 5,
      save_strategy: "no",
      report_to: "none",
      overwrite_output_dir: true,
      plot_loss: false,
      finetuning_type: "lora",
      cutoff_len: a.plan.seqLen,
      dataset: "tunefit_probe_full_length",
    });
    expect(args.output_dir.startsWith(dir)).toBe(false);
    // the generated samples fill cutoff_len, which LLaMA-Factory cuts them to
    const samples = readJson(join(args.dataset_dir, "tunefit_probe_full_length.json"));
    expect(samples[0].output.split(" ").length).toBeGreaterThan(a.plan.seqLen);
    expect(readJson(join(args.dataset_dir, "dataset_info.json"))).toEqual({
      tunefit_probe_full_length: { file_name: "tunefit_probe_full_length.json" },
    });
  });

  runPy("--data bundle and --set keep train.yaml's dataset and add keys", () => {
    const dir = bundle(analysis("lora-1gpu"));
    const log = join(tempRoot(), "args");
    const r = probe(
      dir,
      ["--data", "bundle", "--steps", "2", "--set", "packing=true", "--set", "optim=adamw_8bit"],
      {
        STUB_LOG: log,
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = report(r);
    expect(out.ranks[0]).toMatchObject({ data: "bundle", stepsCompleted: 2 });
    expect(out.notes.join(" ")).toMatch(/--data full-length/);
    expect(readJson(`${log}.0`).args).toMatchObject({
      dataset: "tunefit_demo",
      max_steps: 2,
      packing: true,
      optim: "adamw_8bit",
    });
  });

  runPy("a CUDA out-of-memory error is reported with the step it happened at", () => {
    const dir = bundle(analysis("lora-1gpu"));
    const r = probe(dir, [], { STUB_OOM_STEP: "2" });
    expect(r.status).toBe(1);
    const out = report(r);
    expect(out.ranks[0]).toMatchObject({
      status: "oom",
      stepsCompleted: 1,
      maxAllocatedBytes: 10 * GIB,
      oom: { step: 2, phase: "train", message: "CUDA out of memory. Tried to allocate 2.00 GiB" },
    });
    expect(out.errors).toEqual([
      {
        rank: 0,
        kind: "oom",
        step: 2,
        phase: "train",
        message: "CUDA out of memory. Tried to allocate 2.00 GiB",
      },
    ]);
    expect(r.stderr).toMatch(/rank 0: CUDA out of memory at step 2/);
  });

  runPy("an out-of-memory error while loading has no step and keeps the loading figures", () => {
    const dir = bundle(analysis("lora-1gpu"));
    const out = report(probe(dir, [], { STUB_OOM_STEP: "-1" }));
    expect(out.ranks[0]).toMatchObject({
      status: "oom",
      maxAllocatedBytes: null,
      load: { maxAllocatedBytes: 1 * GIB, maxReservedBytes: 2 * GIB },
      oom: { step: null, phase: "load" },
    });
    expect(out.ratio).toEqual({ allocated: null, reserved: null, device: null });
  });

  runPy("without pynvml the device figure comes from torch.cuda.mem_get_info", () => {
    const dir = bundle(analysis("lora-1gpu"));
    const out = report(probe(dir, [], { STUB_NO_PYNVML: "1" }));
    expect(out.ranks[0]).toMatchObject({
      deviceUsedBytes: 13 * GIB,
      deviceUsedSource: "torch.cuda.mem_get_info",
    });
  });

  runPy(
    "DDP: re-executes itself under torchrun with llamafactory-cli's variables; the maximum over ranks",
    () => {
      const dir = bundle(analysis("ddp-lora"));
      const launchLog = join(tempRoot(), "launch.json");
      const r = probe(dir, ["--steps", "3"], { STUB_LAUNCH_LOG: launchLog });
      expect(r.status, r.stderr).toBe(0);
      const out = report(r);
      expect(out.errors).toEqual([]);
      expect(out.ranks.map((x: Json) => [x.rank, x.localRank, x.status, x.stepsCompleted])).toEqual([
        [0, 0, "finished", 3],
        [1, 1, "finished", 3],
        [2, 2, "finished", 3],
        [3, 3, "finished", 3],
      ]);
      expect(out.measured).toEqual({
        maxAllocatedBytes: 10 * GIB + 3 * MIB,
        maxReservedBytes: 11 * GIB + 3 * MIB,
        deviceUsedBytes: 12 * GIB + 3 * MIB,
      });
      const launch = readJson(launchLog);
      expect(launch.argv.slice(0, 10)).toEqual([
        "--nnodes",
        "1",
        "--node_rank",
        "0",
        "--nproc_per_node",
        "4",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        expect.stringMatching(/^\d+$/),
      ]);
      expect(launch.argv[10]).toBe(join(dir, PROBE_FILE));
      expect(launch.env).toEqual({
        CUDA_VISIBLE_DEVICES: "0,1,2,3",
        PYTORCH_CUDA_ALLOC_CONF: "expandable_segments:True",
        TORCH_NCCL_AVOID_RECORD_STREAMS: "1",
        TUNEFIT_PROBE_LAUNCHED: "1",
      });
    },
    60_000,
  );

  runPy(
    "FSDP: re-executes itself under accelerate launch; one rank's OOM is reported beside the others",
    () => {
      const dir = bundle(analysis("fsdp-lora"));
      const launchLog = join(tempRoot(), "launch.json");
      const r = probe(dir, ["--steps", "3"], {
        STUB_LAUNCH_LOG: launchLog,
        STUB_OOM_STEP: "2",
        STUB_OOM_RANK: "1",
        CUDA_VISIBLE_DEVICES: "4,5,6,7",
      });
      expect(r.status).toBe(1);
      const out = report(r);
      expect(out.ranks.map((x: Json) => [x.rank, x.status, x.oom?.step ?? null])).toEqual([
        [0, "finished", null],
        [1, "oom", 2],
        [2, "finished", null],
        [3, "finished", null],
      ]);
      expect(out.errors.map((e: Json) => [e.kind, e.rank, e.step ?? null])).toEqual([
        ["oom", 1, 2],
        ["launcher", null, null],
      ]);
      expect(out.errors[1].message).toBe("accelerate launch exited with status 1");
      const launch = readJson(launchLog);
      expect(launch.distributedType).toBe("FSDP");
      expect(launch.argv.slice(0, 3)).toEqual([
        "--config_file",
        join(dir, "accelerate_fsdp.yaml"),
        join(dir, PROBE_FILE),
      ]);
      expect(launch.env.CUDA_VISIBLE_DEVICES).toBe("4,5,6,7"); // the user's choice is kept
    },
    60_000,
  );

  runPy(
    "two nodes: each node launches its ranks; the first node reports all of them",
    () => {
      const dir = bundle(analysis("two-nodes-zero3"));
      const refused = probe(dir, [], { NODE_RANK: "1" });
      expect(refused.status).toBe(2);
      expect(refused.stderr).toMatch(/on node 1, set MASTER_ADDR/);

      const launchLog = join(tempRoot(), "launch.json");
      const node1 = probe(dir, ["--steps", "2"], {
        NODE_RANK: "1",
        MASTER_ADDR: "10.0.0.1",
        STUB_LAUNCH_LOG: launchLog,
      });
      expect(node1.status, node1.stderr).toBe(0);
      expect(node1.stdout).toBe("");
      expect(readJson(launchLog).argv.slice(0, 10)).toEqual([
        "--nnodes",
        "2",
        "--node_rank",
        "1",
        "--nproc_per_node",
        "8",
        "--master_addr",
        "10.0.0.1",
        "--master_port",
        "29500",
      ]);
      const node0 = probe(dir, ["--steps", "2"]);
      expect(node0.status, node0.stderr).toBe(0);
      const out = report(node0);
      expect(out.ranks.map((x: Json) => [x.rank, x.nodeRank])).toEqual(
        Array.from({ length: 16 }, (_, i) => [i, i < 8 ? 0 : 1]),
      );
      expect(out.measured.maxAllocatedBytes).toBe(10 * GIB + 15 * MIB);
      expect(out.errors).toEqual([]);
    },
    90_000,
  );

  runPy("under a launcher of the user's, rank 0 reports; --report-only reads the files again", () => {
    const dir = bundle(analysis("ddp-lora"));
    const rankEnv = (r: number) => ({ RANK: String(r), LOCAL_RANK: String(r), WORLD_SIZE: "4" });
    for (const r of [3, 2, 1]) {
      const rank = probe(dir, ["--steps", "2"], rankEnv(r));
      expect(rank.status, rank.stderr).toBe(0);
      expect(rank.stdout).toBe("");
    }
    const rank0 = probe(dir, ["--steps", "2", "--wait", "5"], rankEnv(0));
    expect(rank0.status, rank0.stderr).toBe(0);
    const out = report(rank0);
    expect(out.ranks).toHaveLength(4);
    expect(out.errors).toEqual([]);
    const again = report(probe(dir, ["--report-only"], {}, false));
    expect(again.ranks).toEqual(out.ranks);
    expect(again.mode).toBe("llamafactory");
    expect(again.ratio).toEqual(out.ratio);
  });

  runPy("--report-only names the ranks that left no file, or stopped mid-run", () => {
    const dir = bundle(analysis("ddp-lora"));
    expect(probe(dir, ["--steps", "2"], { RANK: "1", LOCAL_RANK: "1", WORLD_SIZE: "4" }).status).toBe(0);
    const file = join(dir, "probe-results", "probe-rank1.json");
    writeFileSync(file, JSON.stringify({ ...readJson(file), status: "training" }));
    const r = probe(dir, ["--report-only"], {}, false);
    expect(r.status).toBe(1);
    const out = report(r);
    expect(out.errors.map((e: Json) => [e.kind, e.rank])).toEqual([
      ["missing", 0],
      ["stopped", 1],
      ["missing", 2],
      ["missing", 3],
    ]);
    expect(out.measured.maxAllocatedBytes).toBe(10 * GIB + 1 * MIB);
  });

  runPy(
    "hf mode: random weights from the embedded config on the GPU, LoRA, full-length random tokens",
    () => {
      const a = analysis("lora-1gpu");
      const dir = bundle(a);
      const log = join(tempRoot(), "hf");
      const r = probe(dir, ["--mode", "hf", "--steps", "3"], { STUB_LOG: log });
      expect(r.status, r.stderr).toBe(0);
      const out = report(r);
      expect(out.mode).toBe("hf");
      expect(out.ranks[0]).toMatchObject({ status: "finished", data: "random", maxAllocatedBytes: 10 * GIB });
      const seen = readJson(`${log}.0`);
      const hf = hfModelConfig(a.plan.model.architecture, a.plan.seqLen);
      expect(seen.config).toEqual(hf.config);
      expect(seen.fromConfig).toEqual({ torch_dtype: "torch.bfloat16" });
      expect(seen.device).toBe("cuda:0");
      expect(seen.gradientCheckpointing).toEqual({ use_reentrant: true });
      expect(seen.lora).toEqual({
        task_type: "CAUSAL_LM",
        r: 8,
        lora_alpha: 16,
        lora_dropout: 0,
        target_modules: "all-linear",
        use_dora: false,
        modules_to_save: null,
      });
      expect(seen.trainingArguments).toMatchObject({
        per_device_train_batch_size: a.plan.microBatch,
        gradient_accumulation_steps: a.plan.gradAccum,
        max_steps: 3,
        bf16: true,
        save_strategy: "no",
        report_to: "none",
      });
      expect(seen.dataset).toEqual({
        count: 4 * a.plan.microBatch * a.plan.gradAccum,
        keys: ["attention_mask", "input_ids", "labels"],
        length: a.plan.seqLen,
      });
      // transformers 5 names the dtype argument dtype
      const v5 = probe(dir, ["--mode", "hf", "--steps", "1"], {
        STUB_LOG: log,
        STUB_TRANSFORMERS_VERSION: "5.1.0",
      });
      expect(v5.status, v5.stderr).toBe(0);
      expect(readJson(`${log}.0`).fromConfig).toEqual({ dtype: "torch.bfloat16" });
    },
  );

  runPy("hf mode under FSDP builds the model on the CPU (FSDP shards it from there)", () => {
    const dir = bundle(analysis("fsdp-lora"));
    const log = join(tempRoot(), "hf");
    const r = probe(dir, ["--mode", "hf", "--steps", "1"], { STUB_LOG: log });
    expect(r.status, r.stderr).toBe(0);
    expect(report(r).ranks).toHaveLength(4);
    expect(readJson(`${log}.0`).device).toBeNull();
  });

  runPy(
    "hf mode builds from --config, and refuses a family it cannot build before importing anything",
    () => {
      const dir = bundle(analysis("lora-1gpu"));
      const cfgDir = join(tempRoot(), "cfg");
      mkdirSync(cfgDir);
      const qwen = listCatalogModels().find((r) => r.architecture.modelType === "qwen3");
      const hf = qwen && hfModelConfig(qwen.architecture);
      writeFileSync(join(cfgDir, "config.json"), JSON.stringify(hf?.config));
      const log = join(tempRoot(), "hf");
      const r = probe(dir, ["--mode", "hf", "--steps", "1", "--config", cfgDir], { STUB_LOG: log });
      expect(r.status, r.stderr).toBe(0);
      expect(readJson(`${log}.0`).config.model_type).toBe("qwen3");

      writeFileSync(join(cfgDir, "config.json"), JSON.stringify({ model_type: "gemma2" }));
      const refused = probe(dir, ["--mode", "hf", "--config", cfgDir], {}, false);
      expect(refused.status).toBe(2);
      expect(report(refused).errors).toEqual([
        {
          rank: null,
          kind: "unsupported",
          message: "--config names a gemma2 model; hf mode builds llama, mistral, qwen2, qwen3 models",
        },
      ]);
    },
  );

  runPy("hf mode reports a plan it cannot run as unsupported (exit 2), with no torch needed", () => {
    for (const name of ["zero3-full", "vlm-fsdp-qlora"]) {
      const r = probe(bundle(analysis(name)), ["--mode", "hf"], {}, false);
      expect(r.status, r.stderr).toBe(2);
      const out = report(r);
      expect(out.ranks).toEqual([]);
      expect(out.errors.length).toBeGreaterThan(0);
      expect(out.errors.every((e: Json) => e.kind === "unsupported")).toBe(true);
      expect(out.prediction).toEqual(JSON.parse(JSON.stringify(planReport(analysis(name)).memory)));
    }
  });

  runPy("--dry-run prints the launch of one node of several", () => {
    const dir = bundle(analysis("two-nodes-fsdp"));
    const r = probe(dir, ["--dry-run"], { NODE_RANK: "1", MASTER_ADDR: "10.0.0.2" }, false);
    expect(r.status, r.stderr).toBe(0);
    const out = report(r);
    expect(out.launcher).toBe("accelerate launch");
    expect(out.command.slice(1, 11)).toEqual([
      "-m",
      "accelerate.commands.launch",
      "--config_file",
      join(dir, "accelerate_fsdp.yaml"),
      "--machine_rank",
      "1",
      "--main_process_ip",
      "10.0.0.2",
      "--main_process_port",
      "29500",
    ]);
    expect(out.env).toMatchObject({ CUDA_VISIBLE_DEVICES: "0,1,2,3,4,5,6,7", TUNEFIT_PROBE_LAUNCHED: "1" });
  });
});
