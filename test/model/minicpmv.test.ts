import { describe, expect, it } from "vitest";
import { architectureFromConfig } from "../../src/catalog/config-json.ts";
import { trainYaml } from "../../src/emit/train-yaml.ts";
import { TunefitError } from "../../src/errors.ts";
import { estimateTrainMemory, imagePatches, minicpmvSlices } from "../../src/memory/train.ts";
import { countParams } from "../../src/model/params.ts";
import { countTrainable } from "../../src/model/trainable.ts";
import { analyzePlan, planReport } from "../../src/plan/analyze.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import { catalogArchitecture, fsdpWrapOf } from "../support/catalog.ts";
import { cli } from "../support/cli.ts";

// MiniCPM-V (remote code, model_type minicpmv): the language model's fields at the top level, a NaViT SigLIP
// vision_config, and a resampler of query_num queries. The configs below are built for these tests in the layout
// of the published config.json files (not copies of them); the catalog entries come from scripts/data/extra-models.json.

const vision = {
  hidden_size: 1152,
  image_size: 980,
  intermediate_size: 4304,
  model_type: "siglip",
  num_attention_heads: 16,
  num_hidden_layers: 27,
  patch_size: 14,
};

const qwen2Based = {
  architectures: ["MiniCPMV"],
  model_type: "minicpmv",
  hidden_size: 3584,
  intermediate_size: 18944,
  num_attention_heads: 28,
  num_hidden_layers: 28,
  num_key_value_heads: 4,
  vocab_size: 151666,
  max_position_embeddings: 32768,
  max_window_layers: 28,
  use_sliding_window: false,
  query_num: 64,
  slice_config: { max_slice_nums: 9, patch_size: 14, scale_resolution: 448, model_type: "minicpmv" },
  vision_config: vision,
};

const llamaBased = {
  architectures: ["MiniCPMV"],
  model_type: "minicpmv",
  hidden_size: 4096,
  intermediate_size: 14336,
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  vocab_size: 128256,
  max_position_embeddings: 8192,
  query_num: 96,
  slice_config: { max_slice_nums: 9, patch_size: 14, scale_resolution: 448 },
  vision_config: vision,
};

describe("MiniCPM-V accounting", () => {
  it("reads a Qwen2-based config (2.6) as the catalog's MiniCPM-V-2.6", () => {
    const arch = architectureFromConfig(qwen2Based);
    expect(arch).toEqual(catalogArchitecture("openbmb/MiniCPM-V-2_6"));
    expect(arch.text.qkvBias).toBe(true);
    const p = countParams(arch);
    expect(p.total).toBe(8_099_175_152);
    expect(p.visionTower).toBe(417_792_240);
    expect(p.projector).toBe(68_619_264);
  });

  it("reads a config without Qwen2's sliding-window fields as Llama (2.5): no q/k/v bias", () => {
    const arch = architectureFromConfig(llamaBased);
    expect(arch).toEqual(catalogArchitecture("openbmb/MiniCPM-Llama3-V-2_5"));
    expect(arch.text.qkvBias).toBe(false);
    expect(countParams(arch).total).toBe(8_537_092_336);
    // the same dimensions with Qwen2's bias differ by exactly the q/k/v biases of 32 layers
    const withBias = architectureFromConfig({ ...llamaBased, use_sliding_window: false });
    expect(countParams(withBias).total - countParams(arch).total).toBe(32 * (4096 + 2 * 1024));
  });

  it("drops the tower's last layer when drop_vision_last_layer is set", () => {
    const kept = countParams(architectureFromConfig(qwen2Based)).visionTower;
    const dropped = architectureFromConfig({ ...qwen2Based, drop_vision_last_layer: true });
    expect(dropped.vision?.kind === "minicpmv" && dropped.vision.numLayers).toBe(26);
    expect(kept - countParams(dropped).visionTower).toBe(15_239_504); // one SigLIP layer of 1152 / 4304
  });

  it("refuses MiniCPM-V releases on other language models (MiniCPM 2.0's MiniCPM, 4.x's Qwen3)", () => {
    const code = (config: Record<string, unknown>) => {
      try {
        architectureFromConfig(config);
        return "read";
      } catch (e) {
        return e instanceof TunefitError ? e.issues[0]?.code : "threw";
      }
    };
    expect(code({ ...qwen2Based, attention_bias: false, head_dim: 128 })).toBe("MODEL_TYPE_UNSUPPORTED");
    expect(code({ ...llamaBased, scale_emb: 12, dim_model_base: 256 })).toBe("MODEL_TYPE_UNSUPPORTED");
    expect(code(llamaBased)).toBe("read");
  });

  it("names its projector `resampler`, as LLaMA-Factory's composite-model key does", () => {
    const arch = catalogArchitecture("openbmb/MiniCPM-V-2_6");
    expect(
      countTrainable(arch, { method: "lora", loraRank: 8, additionalTarget: ["resampler"] }).fullModules,
    ).toBe(68_619_264);
  });

  it("takes query_num and slice_config from the config, with the 2.6 defaults where absent", () => {
    const { query_num: _q, slice_config: _s, ...bare } = qwen2Based;
    const v = architectureFromConfig(bare).vision;
    expect(v).toMatchObject({ kind: "minicpmv", queryNum: 64, sliceResolution: 448, maxSliceNums: 9 });
    const custom = architectureFromConfig({ ...qwen2Based, slice_config: { max_slice_nums: 4 } }).vision;
    expect(custom).toMatchObject({ maxSliceNums: 4, sliceResolution: 448 });
  });
});

describe("MiniCPM-V images", () => {
  it("cuts a square image into the grid get_sliced_grid picks", () => {
    // ⌈pixels / 448²⌉ = multiple; candidates multiple − 1 … multiple + 1 (none of 1, none over the cap);
    // a square image takes the squarest grid, the first found on ties
    expect(minicpmvSlices(448 * 448, 448, 9)).toBe(0); // one slice's area: the whole image only
    expect(minicpmvSlices(448 * 448 + 1, 448, 9)).toBe(2); // multiple 2: 2 and 3 → 1×2 first
    expect(minicpmvSlices(768 * 768, 448, 9)).toBe(4); // multiple 3: 2, 3, 4 → 2×2
    expect(minicpmvSlices(6 * 448 * 448, 448, 9)).toBe(6); // multiple 6: 5, 6, 7 → 2×3
    expect(minicpmvSlices(8 * 448 * 448, 448, 9)).toBe(9); // multiple 8: 7, 8, 9 → 3×3
    expect(minicpmvSlices(4000 * 4000, 448, 9)).toBe(9); // capped at max_slice_nums
    expect(minicpmvSlices(4000 * 4000, 448, 1)).toBe(0);
  });

  it("gives each piece (the whole image and each crop) 1,024 patches and query_num + 2 tokens", () => {
    const plan = (imageMaxPixels: number) =>
      resolvePlan({ model: "openbmb/MiniCPM-V-2_6", gpu: "a100-80g", imagesPerSample: 1, imageMaxPixels })
        .plan;
    expect(imagePatches(plan(768 * 768))).toEqual({ patches: 5 * 1024, tokens: 5 * 66 });
    expect(imagePatches(plan(448 * 448))).toEqual({ patches: 1024, tokens: 66 });
    expect(imagePatches(plan(2000 * 2000))).toEqual({ patches: 10 * 1024, tokens: 10 * 66 });
  });

  it("reports what an image becomes beside the batch (plan --json batch, the Images line)", () => {
    const input = { model: "openbmb/MiniCPM-V-2_6", gpu: "a100-80g", imagesPerSample: 2 } as const;
    expect(planReport(analyzePlan(input)).batch).toMatchObject({
      imagesPerSample: 2,
      imagePatches: 5 * 1024,
      imageTokens: 5 * 66,
    });
    const human = cli([
      "plan",
      "--model",
      input.model,
      "--gpu",
      input.gpu,
      "--images-per-sample",
      "2",
    ]).stdout;
    expect(human).toContain("Images    2 per sample × 330 tokens (5,120 patches in the vision tower)");
    expect(human).toContain("660 of the 2,048 tokens");
    expect(planReport(analyzePlan({ ...input, imagesPerSample: 0 })).batch).not.toHaveProperty("imageTokens");
  });

  it("counts the tower's eager attention scores unless FlashAttention-2 runs it", () => {
    const transient = (attention: "auto" | "fa2") =>
      estimateTrainMemory(
        resolvePlan({ model: "openbmb/MiniCPM-V-2_6", gpu: "a100-80g", imagesPerSample: 1, attention }).plan,
      ).breakdown;
    // frozen tower: one block's forward; eager adds 5 pieces × 16 heads × 1024² scores at 2 + 4 + 2 bytes
    const scores = 5 * 16 * 1024 ** 2;
    expect(transient("auto").buffers - transient("fa2").buffers).toBe(scores * 8);
  });

  it("saves more while the tower trains, and checkpointing keeps less of it", () => {
    const act = (input: Record<string, unknown>) =>
      estimateTrainMemory(
        resolvePlan({
          model: "openbmb/MiniCPM-V-2_6",
          gpu: "h200",
          imagesPerSample: 1,
          freezeVisionTower: false,
          ...input,
        }).plan,
      ).breakdown.activations;
    expect(act({ gradientCheckpointing: false })).toBeGreaterThan(act({ gradientCheckpointing: true }));
  });
});

describe("MiniCPM-V bundles", () => {
  const input = {
    gpu: "rtx4090",
    gpus: 4,
    method: "qlora",
    sharding: "fsdp",
    imagesPerSample: 1,
  } as const;
  const plan = resolvePlan({ model: "openbmb/MiniCPM-V-2_6", ...input }).plan;

  it("trains with LLaMA-Factory's minicpm_v template and its remote code", () => {
    const y = trainYaml(plan);
    expect(y.template).toBe("minicpm_v");
    expect(y.trust_remote_code).toBe(true);
    expect(y.freeze_vision_tower).toBe(true);
  });

  it("wraps the Qwen2 decoder layers and the SigLIP blocks under FSDP", () => {
    expect(fsdpWrapOf(plan)).toBe("Qwen2DecoderLayer,SiglipEncoderLayer");
    const llama = resolvePlan({ model: "openbmb/MiniCPM-Llama3-V-2_5", template: "default", ...input }).plan;
    expect(fsdpWrapOf(llama)).toBe("LlamaDecoderLayer,SiglipEncoderLayer");
  });
});
