import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { architectureFromConfig } from "../../src/catalog/config-json.ts";
import { findCatalogModel } from "../../src/catalog/models.ts";
import type { TunefitError } from "../../src/errors.ts";
import { linearModules } from "../../src/model/modules.ts";
import { attentionParamsPerLayer, countParams, denseMlpParams } from "../../src/model/params.ts";
import { countTrainable } from "../../src/model/trainable.ts";
import type { Architecture } from "../../src/schema/architecture.ts";

function arch(id: string): Architecture {
  const m = findCatalogModel(id);
  if (!m) throw new Error(id);
  return m.record.architecture;
}

describe("LoRA trainable parameters", () => {
  // PEFT's print_trainable_parameters for these setups is widely quoted: 4,194,304 (Llama-2-7B, r=8,
  // q_proj+v_proj), 20,971,520 (Llama-3-8B, r=8, all linear), 20,185,088 (Qwen2.5-7B, r=8, all linear).
  it("Llama-2-7B, r=8, q_proj,v_proj → 4,194,304", () => {
    const t = countTrainable(arch("meta-llama/Llama-2-7b-hf"), {
      method: "lora",
      loraRank: 8,
      loraTarget: ["q_proj", "v_proj"],
    });
    expect(t.trainable).toBe(4_194_304);
  });

  it("Llama-3-8B, r=8, all → 20,971,520 on the seven projections", () => {
    const t = countTrainable(arch("meta-llama/Meta-Llama-3-8B"), { method: "lora", loraRank: 8 });
    expect(t.trainable).toBe(20_971_520);
    expect(t.loraTargets).toEqual([
      "down_proj",
      "gate_proj",
      "k_proj",
      "o_proj",
      "q_proj",
      "up_proj",
      "v_proj",
    ]);
  });

  it("Qwen2.5-7B-Instruct, r=8, all → 20,185,088", () => {
    expect(countTrainable(arch("Qwen/Qwen2.5-7B-Instruct"), { method: "qlora", loraRank: 8 }).trainable).toBe(
      20_185_088,
    );
  });

  it("grows linearly with the rank; DoRA adds one magnitude per output feature", () => {
    const a = arch("Qwen/Qwen3-8B");
    const r8 = countTrainable(a, { method: "lora", loraRank: 8 }).adapter;
    const r32 = countTrainable(a, { method: "lora", loraRank: 32 }).adapter;
    expect(r32).toBe(4 * r8);
    const dora = countTrainable(a, { method: "lora", loraRank: 8, useDora: true }).adapter;
    const outs = linearModules(a).reduce((n, g) => n + g.count * g.outFeatures, 0);
    expect(dora - r8).toBe(outs);
  });

  it("adds additional_target modules in full", () => {
    const a = arch("meta-llama/Llama-3.2-1B");
    const plain = countTrainable(a, { method: "lora" }).trainable;
    const more = countTrainable(a, {
      method: "lora",
      additionalTarget: ["embed_tokens", "lm_head"],
    }).trainable;
    expect(more - plain).toBe(2 * 128_256 * 2048);
  });

  it("trains a VLM's projector in full when named as an additional target", () => {
    const a = arch("Qwen/Qwen2-VL-7B-Instruct");
    const more = countTrainable(a, { method: "lora", additionalTarget: ["merger"] });
    expect(more.fullModules).toBe(countParams(a).projector);
    expect(() =>
      countTrainable(arch("Qwen/Qwen3-8B"), { method: "lora", additionalTarget: ["merger"] }),
    ).toThrow(/merger/);
  });

  it("targets the vision tower only when it is not frozen, and never the projector with all", () => {
    const a = arch("Qwen/Qwen2-VL-7B-Instruct");
    const frozen = countTrainable(a, { method: "lora" });
    const open = countTrainable(a, { method: "lora", freezeVisionTower: false });
    expect(frozen.loraTargets).not.toContain("qkv");
    expect(open.loraTargets).toEqual(expect.arrayContaining(["qkv", "proj", "fc1", "fc2"]));
    const D = 1280;
    const visionAdapter = 32 * 8 * (D + 3 * D + (D + D) + (D + 4 * D) + (4 * D + D));
    expect(open.adapter - frozen.adapter).toBe(visionAdapter);
  });

  it("covers MoE experts and routers under transformers 4.x, only attention under 5.x", () => {
    const a = arch("mistralai/Mixtral-8x7B-v0.1");
    expect(countTrainable(a, { method: "lora" }).loraTargets).toEqual([
      "gate",
      "k_proj",
      "o_proj",
      "q_proj",
      "v_proj",
      "w1",
      "w2",
      "w3",
    ]);
    expect(countTrainable(a, { method: "lora", expertsAsLinear: false }).loraTargets).toEqual([
      "k_proj",
      "o_proj",
      "q_proj",
      "v_proj",
    ]);
  });

  it("resolves all per family as LLaMA-Factory does", () => {
    const names = (id: string) => countTrainable(arch(id), { method: "lora" }).loraTargets;
    expect(names("microsoft/Phi-3-mini-4k-instruct")).toEqual([
      "down_proj",
      "gate_up_proj",
      "o_proj",
      "qkv_proj",
    ]);
    expect(names("THUDM/glm-4-9b")).toEqual(["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"]);
    expect(names("internlm/internlm2_5-7b")).toEqual(["w1", "w2", "w3", "wo", "wqkv"]);
    expect(names("baichuan-inc/Baichuan2-7B-Base")).toEqual([
      "W_pack",
      "down_proj",
      "gate_proj",
      "o_proj",
      "up_proj",
    ]);
    expect(names("deepseek-ai/DeepSeek-V3")).toEqual([
      "down_proj",
      "gate_proj",
      "kv_a_proj_with_mqa",
      "kv_b_proj",
      "o_proj",
      "q_a_proj",
      "q_b_proj",
      "up_proj",
    ]);
  });

  it("rejects a target the model lacks, listing the valid names", () => {
    try {
      countTrainable(arch("Qwen/Qwen2.5-7B"), { method: "lora", loraTarget: ["q_proj", "c_attn"] });
      expect.unreachable();
    } catch (e) {
      const issue = (e as TunefitError).issues[0];
      expect(issue?.path).toBe("loraTarget");
      expect(issue?.message).toContain('"c_attn"');
      expect(issue?.hint).toContain("q_proj");
    }
  });
});

describe("full and freeze trainable parameters", () => {
  it("full fine-tuning of a VLM trains the language model only by default", () => {
    const a = arch("Qwen/Qwen2-VL-72B-Instruct");
    const p = countParams(a);
    expect(countTrainable(a, { method: "full" }).trainable).toBe(p.text);
    expect(
      countTrainable(a, { method: "full", freezeVisionTower: false, freezeProjector: false }).trainable,
    ).toBe(p.total);
  });

  it("freeze trains the last 2 layers by default, the first N for negative N", () => {
    const a = arch("meta-llama/Llama-2-7b-hf");
    const perLayer = 202_383_360; // models.json formula_params.per_layer
    const last = countTrainable(a, { method: "freeze" });
    expect(last.trainableLayers).toEqual([30, 31]);
    expect(last.trainable).toBe(2 * perLayer);
    expect(countTrainable(a, { method: "freeze", freezeTrainableLayers: -3 }).trainableLayers).toEqual([
      0, 1, 2,
    ]);
    const attnOnly = countTrainable(a, { method: "freeze", freezeTrainableModules: ["self_attn"] });
    expect(attnOnly.trainable).toBe(2 * attentionParamsPerLayer(a.text));
  });

  it("reproduces the experts.{id} substring quirk of MoE models under transformers 4.x", () => {
    // layer-classes: Qwen3-30B-A3B's default freeze also unfreezes 276 expert tensors (experts 46, 47 of the
    // other 46 layers; gate/up/down each).
    const cfg = JSON.parse(
      readFileSync(
        new URL("../fixtures/configs/qwen3-30b-a3b-mlx-4bit/config.json", import.meta.url),
        "utf8",
      ),
    );
    const a = architectureFromConfig(cfg);
    const intended = 2 * (attentionParamsPerLayer(a.text) + 2 * a.text.hiddenSize);
    const moe = a.text.moe;
    if (!moe) throw new Error("expected MoE");
    const layerMlp =
      moe.numExperts * denseMlpParams(a.text, moe.expertIntermediateSize) +
      moe.numExperts * a.text.hiddenSize;
    const expert = denseMlpParams(a.text, moe.expertIntermediateSize);
    expect(countTrainable(a, { method: "freeze" }).trainable).toBe(
      intended + 2 * layerMlp + (276 / 3) * expert,
    );
    expect(countTrainable(a, { method: "freeze", expertsAsLinear: false }).trainable).toBe(
      intended + 2 * layerMlp,
    );
  });

  it("rejects an unknown sub-module", () => {
    expect(() =>
      countTrainable(arch("Qwen/Qwen3-8B"), { method: "freeze", freezeTrainableModules: ["attn"] }),
    ).toThrow(/no sub-module named "attn"/);
  });
});

describe("properties over the whole catalog", () => {
  it("the linear modules never hold more parameters than the model", () => {
    for (const { record } of [
      "meta-llama/Llama-2-70b-hf",
      "deepseek-ai/DeepSeek-V3",
      "google/gemma-3-27b-pt",
      "meta-llama/Llama-3.2-11B-Vision",
    ].map((id) => ({ record: findCatalogModel(id)?.record }))) {
      if (!record) throw new Error("missing");
      const weights = linearModules(record.architecture).reduce(
        (n, g) => n + g.count * g.inFeatures * g.outFeatures,
        0,
      );
      expect(weights).toBeLessThanOrEqual(countParams(record.architecture).total);
    }
  });

  it("every method trains at most the whole model (+ adapters), at least one parameter", () => {
    for (const id of [
      "Qwen/Qwen2.5-0.5B",
      "mistralai/Mixtral-8x7B-v0.1",
      "google/gemma-3-4b-pt",
      "THUDM/glm-4-9b",
    ]) {
      const a = arch(id);
      const total = countParams(a).total;
      for (const method of ["full", "freeze", "lora", "qlora"] as const) {
        const t = countTrainable(a, { method });
        expect(t.trainable).toBeGreaterThan(0);
        expect(t.fullModules).toBeLessThanOrEqual(total);
      }
    }
  });
});
