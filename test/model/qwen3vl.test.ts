import { describe, expect, it } from "vitest";
import { architectureFromConfig } from "../../src/catalog/config-json.ts";
import { findCatalogModel } from "../../src/catalog/models.ts";
import { emitFiles } from "../../src/emit/bundle.ts";
import { DEFAULT_ASSUMPTIONS } from "../../src/memory/assumptions.ts";
import { loadedWeightBytes } from "../../src/memory/load.ts";
import { imagePatches } from "../../src/memory/train.ts";
import { linearModules } from "../../src/model/modules.ts";
import { countParams } from "../../src/model/params.ts";
import { countTrainable } from "../../src/model/trainable.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import { catalogArchitecture, fsdpWrapOf } from "../support/catalog.ts";

// Qwen3-VL (transformers' qwen3_vl): Qwen3's decoder in a nested text_config, and a ViT with a learned position
// table, a merger and DeepStack mergers. The config below has the layout of Qwen/Qwen3-VL-4B-Instruct's config.json
// (its public copies), with the fields that set the shapes.
const qwen3vl4b = {
  architectures: ["Qwen3VLForConditionalGeneration"],
  model_type: "qwen3_vl",
  tie_word_embeddings: true,
  text_config: {
    model_type: "qwen3_vl_text",
    head_dim: 128,
    hidden_size: 2560,
    intermediate_size: 9728,
    max_position_embeddings: 262144,
    num_attention_heads: 32,
    num_hidden_layers: 36,
    num_key_value_heads: 8,
    tie_word_embeddings: true,
    vocab_size: 151936,
  },
  vision_config: {
    deepstack_visual_indexes: [5, 11, 17],
    depth: 24,
    hidden_size: 1024,
    in_channels: 3,
    intermediate_size: 4096,
    model_type: "qwen3_vl",
    num_heads: 16,
    num_position_embeddings: 2304,
    out_hidden_size: 2560,
    patch_size: 16,
    spatial_merge_size: 2,
    temporal_patch_size: 2,
  },
};

describe("Qwen3-VL", () => {
  it("reads its config.json (text_config nested, tied by the top-level flag) as the catalog's 4B", () => {
    const arch = architectureFromConfig(qwen3vl4b);
    expect(arch).toEqual(catalogArchitecture("Qwen/Qwen3-VL-4B-Instruct"));
    expect(arch.text).toMatchObject({ qkNorm: true, tieWordEmbeddings: true, headDim: 128 });
    const p = countParams(arch);
    expect(p.total).toBe(4_437_815_808);
    expect(p.text).toBe(4_022_468_096); // Qwen3-4B
    // 24 blocks of 12,596,224, the position table, the patch embedding and three DeepStack mergers; the merger apart
    expect(p.visionTower).toBe(1_573_888 + 2_359_296 + 24 * 12_596_224 + 3 * 27_277_824);
    expect(p.projector).toBe(27_271_680);
  });

  it("counts the 8B as Qwen3-8B and a 27 × 1,152 tower", () => {
    const p = countParams(catalogArchitecture("Qwen/Qwen3-VL-8B-Instruct"));
    expect(p.total).toBe(8_767_123_696);
    expect(p.text).toBe(8_190_735_360);
    // the Thinking release keeps the Instruct one's shapes, with LLaMA-Factory's thinking template
    const thinking = findCatalogModel("Qwen/Qwen3-VL-8B-Thinking");
    expect(thinking?.record.id).toBe("Qwen/Qwen3-VL-8B-Instruct");
    expect(thinking?.defaultTemplate).toBe("qwen3_vl");
  });

  it("makes an image 16 × 16 patches, four per token", () => {
    const plan = resolvePlan({
      model: "Qwen/Qwen3-VL-4B-Instruct",
      gpu: "a100-80g",
      imagesPerSample: 1,
      imageMaxPixels: 262144,
    }).plan;
    expect(imagePatches(plan)).toEqual({ patches: 1024, tokens: 256 });
    expect(plan.template).toBe("qwen3_vl_nothink"); // LLaMA-Factory's template for it
  });

  it("trains the tower's linears and DeepStack mergers with LoRA only when the tower is not frozen", () => {
    const arch = catalogArchitecture("Qwen/Qwen3-VL-4B-Instruct");
    const frozen = countTrainable(arch, { method: "lora", loraRank: 8, loraTarget: "all" });
    const open = countTrainable(arch, {
      method: "lora",
      loraRank: 8,
      loraTarget: "all",
      freezeVisionTower: false,
    });
    const perBlock = 8 * (1024 + 3072) + 8 * (1024 + 1024) + 8 * (1024 + 4096) + 8 * (4096 + 1024);
    const perDeepstack = 8 * (4096 + 4096) + 8 * (4096 + 2560);
    expect(open.adapter - frozen.adapter).toBe(24 * perBlock + 3 * perDeepstack);
    expect(frozen.loraTargets).not.toContain("linear_fc1");
  });

  it("says in the bundle's README which transformers has it", () => {
    const plan = resolvePlan({ model: "Qwen/Qwen3-VL-4B-Instruct", gpu: "a100-80g" }).plan;
    const readme = emitFiles(plan).find((f) => f.path === "README.md")?.contents ?? "";
    expect(readme).toContain("(>=4.57.1 for qwen3_vl, which older releases do not have)");
    // and in the header of every file it writes
    const yaml = emitFiles(plan).find((f) => f.path === "train.yaml")?.contents ?? "";
    expect(yaml).toContain("transformers >=4.55.0,<=5.8.0, not 4.57.0 or 5.6.0 (>=4.57.1 for qwen3_vl");
    const other = emitFiles(resolvePlan({ model: "Qwen/Qwen3-8B", gpu: "a100-80g" }).plan);
    expect(other.find((f) => f.path === "README.md")?.contents).not.toContain(
      "which older releases do not have",
    );
  });

  it("counts Qwen3-VL-30B-A3B's fused experts, which LoRA-all and bitsandbytes do not reach", () => {
    const arch = catalogArchitecture("Qwen/Qwen3-VL-30B-A3B-Instruct");
    const p = countParams(arch);
    expect(p.total).toBe(31_070_754_032);
    expect(p.text).toBe(30_532_122_624); // Qwen3-30B-A3B
    const names = linearModules(arch).map((g) => g.name);
    expect(names).toContain("gate"); // the router is an nn.Linear
    expect(linearModules(arch).some((g) => g.expert)).toBe(false);
    // the same text model as Qwen3-30B-A3B: there LoRA-all adapts the experts too
    const lora = (id: string) =>
      countTrainable(catalogArchitecture(id), { method: "lora", loraRank: 8, loraTarget: "all" }).adapter;
    expect(lora("Qwen/Qwen3-30B-A3B")).toBeGreaterThan(10 * lora("Qwen/Qwen3-VL-30B-A3B-Instruct"));
    // QLoRA: bitsandbytes quantizes nn.Linear modules only, so the fused experts load in 16 bits
    const loaded = (id: string) =>
      loadedWeightBytes(
        resolvePlan({ model: id, gpu: "h100-80g", method: "qlora" }).plan,
        countParams(catalogArchitecture(id)),
        DEFAULT_ASSUMPTIONS,
      );
    const experts = 48 * 128 * 3 * 2048 * 768;
    expect(loaded("Qwen/Qwen3-VL-30B-A3B-Instruct") - loaded("Qwen/Qwen3-30B-A3B")).toBeGreaterThan(
      experts * 1.4,
    );
    const moe = resolvePlan({
      model: "Qwen/Qwen3-VL-30B-A3B-Instruct",
      gpu: "h100-80g",
      gpus: 4,
      sharding: "fsdp",
    });
    expect(fsdpWrapOf(moe.plan)).toBe("Qwen3VLMoeTextDecoderLayer,Qwen3VLMoeVisionBlock");
  });

  it("wraps Qwen3VLTextDecoderLayer and Qwen3VLVisionBlock under FSDP", () => {
    const plan = resolvePlan({
      model: "Qwen/Qwen3-VL-8B-Instruct",
      gpu: "rtx4090",
      gpus: 4,
      sharding: "fsdp",
    }).plan;
    expect(fsdpWrapOf(plan)).toBe("Qwen3VLTextDecoderLayer,Qwen3VLVisionBlock");
  });
});
