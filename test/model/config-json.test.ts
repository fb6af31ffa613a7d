import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { architectureFromConfig } from "../../src/catalog/config-json.ts";
import { findCatalogModel } from "../../src/catalog/models.ts";
import { TunefitError } from "../../src/errors.ts";
import { countParams } from "../../src/model/params.ts";

function fixture(name: string): Record<string, unknown> {
  return JSON.parse(
    readFileSync(new URL(`../fixtures/configs/${name}/config.json`, import.meta.url), "utf8"),
  );
}

function catalogTotal(id: string): number {
  const match = findCatalogModel(id);
  if (!match) throw new Error(`no catalog model ${id}`);
  return countParams(match.record.architecture).total;
}

// Published config.json files (provenance in test/fixtures/configs/SOURCES.md), read blind, one or more per
// family. Expected totals are published exact counts, or the catalog twin's reference count where the
// fixture is the same checkpoint (a fine-tune, re-upload or another serialization of it).
const cases: { dir: string; modelType: string; total: number; why: string }[] = [
  {
    dir: "llama-3.1-8b-instruct",
    modelType: "llama",
    total: catalogTotal("meta-llama/Llama-3.1-8B"),
    why: "same architecture as the catalog's Llama-3.1-8B (8,030,261,248, HF safetensors total)",
  },
  { dir: "mistral-7b-v0.3", modelType: "mistral", total: 7_248_023_552, why: "HF safetensors total" },
  {
    dir: "qwen1.5-7b-chat",
    modelType: "qwen2",
    total: 7_721_324_544,
    why: "hub safetensors total as quoted (7.72B card); not re-read here",
  },
  { dir: "qwen3-8b", modelType: "qwen3", total: 8_190_735_360, why: "HF safetensors total" },
  {
    dir: "gemma-2-9b-it",
    modelType: "gemma2",
    total: 9_241_705_984,
    why: "HF safetensors total of gemma-2-9b",
  },
  {
    dir: "gemma-3-1b-it",
    modelType: "gemma3_text",
    total: 999_885_952,
    why: "Keras exact count of gemma-3-1b",
  },
  {
    dir: "gemma-3-4b-it",
    modelType: "gemma3",
    total: 4_300_079_472,
    why: "HF safetensors total of gemma-3-4b (text_config/vision_config trimmed to non-defaults)",
  },
  { dir: "phi-3-mini-4k-instruct", modelType: "phi3", total: 3_821_079_552, why: "HF safetensors total" },
  {
    dir: "internlm2_5-20b",
    modelType: "internlm2",
    total: 19_861_149_696,
    why: "hub safetensors total as quoted (19.86B); not re-read here",
  },
  {
    dir: "baichuan2-7b-base",
    modelType: "baichuan",
    total: 7_505_973_248,
    why: "catalog formula (no safetensors metadata: .bin checkpoint)",
  },
  {
    dir: "glm-4-9b-chat",
    modelType: "chatglm",
    total: 9_399_951_360,
    why: "load log: 9,399,951,360 trainable params",
  },
  {
    dir: "glm-4-9b-chat-hf-format",
    modelType: "glm",
    total: 9_399_951_360,
    why: "the same weights in transformers' native GLM layout",
  },
  { dir: "mixtral-8x7b-v0.1", modelType: "mixtral", total: 46_702_792_704, why: "Keras exact count" },
  {
    dir: "qwen2-57b-a14b",
    modelType: "qwen2_moe",
    total: 57_408_658_944,
    why: "hub total as quoted (57.4B card); shared expert with gate",
  },
  {
    dir: "qwen3-30b-a3b-mlx-4bit",
    modelType: "qwen3_moe",
    total: 30_532_122_624,
    why: "hub total as quoted (30.5B card); the MLX copy adds only quantization keys",
  },
  {
    dir: "deepseek-v2-lite-chat-resaved",
    modelType: "deepseek_v2",
    total: 15_706_484_224,
    why: "sum of all safetensors tensors (4 shards, 5,291 tensors)",
  },
  {
    dir: "deepseek-v2.5",
    modelType: "deepseek_v2",
    total: 235_741_434_880,
    why: "DeepSeek-V2 hub total as quoted (236B card): q_lora_rank 1536, 160 experts, 2 shared",
  },
  {
    dir: "deepseek-r1",
    modelType: "deepseek_v3",
    total: 671_026_419_200,
    why: "main model without the MTP layer and FP8 scales (hub 684,531,386,000 incl. them)",
  },
  {
    dir: "qwen2-vl-7b-sk-googleflights",
    modelType: "qwen2_vl",
    total: 8_291_375_616,
    why: "full fine-tune of Qwen2-VL-7B-Instruct (hub total 8,291,375,616)",
  },
  {
    dir: "unsloth-qwen2.5-vl-7b-instruct",
    modelType: "qwen2_5_vl",
    total: 8_292_166_656,
    why: "Qwen2.5-VL-7B-Instruct hub total as quoted (8.29B)",
  },
  // This copy states vision image_size 448 (the transformers default); the released checkpoint uses 560.
  // models.md: 448 under-counts the position/tile embeddings by 27,279,360.
  {
    dir: "llama-3.2-11b-vision",
    modelType: "mllama",
    total: 10_670_220_835 - 27_279_360,
    why: "hub total minus the 448-vs-560 embedding rows",
  },
];

describe("config.json → architecture → exact count", () => {
  for (const c of cases) {
    it(`${c.dir} (${c.modelType}): ${c.why}`, () => {
      const arch = architectureFromConfig(fixture(c.dir));
      expect(arch.modelType).toBe(c.modelType);
      expect(countParams(arch).total).toBe(c.total);
    });
  }

  it("mllama with the released image_size 560 equals the hub total", () => {
    const cfg = fixture("llama-3.2-11b-vision");
    const vision = { ...(cfg.vision_config as Record<string, unknown>), image_size: 560 };
    expect(countParams(architectureFromConfig({ ...cfg, vision_config: vision })).total).toBe(10_670_220_835);
  });

  it("reads DeepSeek-V2-Lite's explicit q_lora_rank null as a plain q projection", () => {
    const arch = architectureFromConfig(fixture("deepseek-v2-lite-chat-resaved"));
    expect(arch.text.mla?.qLoraRank).toBeNull();
    expect(arch.text.moe?.moeLayers[0]).toBe(1); // first_k_dense_replace = 1
  });

  it("applies Gemma 3's class defaults to a trimmed text_config", () => {
    const arch = architectureFromConfig(fixture("gemma-3-4b-it"));
    expect(arch.text).toMatchObject({
      numHeads: 8,
      numKvHeads: 4,
      headDim: 256,
      vocabSize: 262_208,
      tieWordEmbeddings: true,
    });
  });
});

describe("config.json errors name the field and what to write", () => {
  const base = fixture("qwen3-8b");
  const issueOf = (cfg: unknown) => {
    try {
      architectureFromConfig(cfg, "my-model/config.json");
    } catch (e) {
      expect(e).toBeInstanceOf(TunefitError);
      return (e as TunefitError).issues[0];
    }
    throw new Error("expected an error");
  };

  it("rejects an unknown model_type with the supported list", () => {
    const issue = issueOf({ ...base, model_type: "bert" });
    expect(issue?.code).toBe("MODEL_TYPE_UNSUPPORTED");
    expect(issue?.path).toBe("my-model/config.json: model_type");
    expect(issue?.hint).toContain("qwen2_5_vl");
  });

  it("rejects a missing size", () => {
    const { hidden_size: _, ...rest } = base;
    const issue = issueOf(rest);
    expect(issue?.code).toBe("CONFIG_FIELD_MISSING");
    expect(issue?.path).toBe("my-model/config.json: hidden_size");
  });

  it("rejects a negative size with the value it got", () => {
    const issue = issueOf({ ...base, num_hidden_layers: -4 });
    expect(issue?.code).toBe("CONFIG_FIELD_INVALID");
    expect(issue?.message).toContain("-4");
    expect(issue?.hint).toContain("positive integer");
  });

  it("rejects a config without model_type and a non-object", () => {
    const { model_type: _, ...rest } = base;
    expect(issueOf(rest)?.path).toBe("my-model/config.json: model_type");
    expect(issueOf([1, 2])?.code).toBe("CONFIG_NOT_OBJECT");
  });

  it("reads Qwen-1's remote-code config in Qwen2's shapes and refuses Qwen-VL's", () => {
    const qwen1 = architectureFromConfig(fixture("qwen-7b"));
    expect(qwen1.modelType).toBe("qwen");
    expect(qwen1).toEqual(findCatalogModel("Qwen/Qwen-7B")?.record.architecture);
    expect(qwen1.text).toMatchObject({
      intermediateSize: 11008,
      numKvHeads: 32,
      headDim: 128,
      qkvBias: true,
    });
    // Qwen-7B and Qwen1.5-7B share every shape: the same 7.72 B
    expect(countParams(qwen1).total).toBe(
      countParams(architectureFromConfig(fixture("qwen1.5-7b-chat"))).total,
    );
    expect(countParams(qwen1).total).toBe(7_721_324_544);
    const vl = issueOf({ ...fixture("qwen-7b"), visual: { layers: 48, width: 1664 } });
    expect(vl?.code).toBe("MODEL_TYPE_UNSUPPORTED");
    expect(vl?.path).toBe("my-model/config.json: visual");
  });

  it("reads aliases of a family (yi is llama)", () => {
    expect(architectureFromConfig({ ...fixture("llama-3.1-8b-instruct"), model_type: "yi" }).modelType).toBe(
      "llama",
    );
  });
});
