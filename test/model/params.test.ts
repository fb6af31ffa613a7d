import { describe, expect, it } from "vitest";
import { findCatalogModel, listCatalogModels, validateCatalog } from "../../src/catalog/models.ts";
import { countParams } from "../../src/model/params.ts";
import expected from "../fixtures/catalog-expected.json" with { type: "json" };

type Expected = Record<
  string,
  {
    total: number;
    text: number;
    vision: number;
    embedTokens: number;
    lmHead: number;
    active: number | null;
    officialExact: number | null;
    checkpointExtras: number;
  }
>;
const reference = expected as Expected;

describe("catalog parameter accounting", () => {
  it("validates every generated record against the schema", () => {
    expect(() => validateCatalog()).not.toThrow();
    // one record per reference entry: models.json and scripts/data/extra-models.json
    expect(listCatalogModels()).toHaveLength(Object.keys(reference).length);
    expect(Object.keys(reference)).toHaveLength(101);
  });

  it("names every id once: no checkpoint resolves to two catalog models", () => {
    const ids = listCatalogModels().flatMap((r) => r.ids.map((i) => i.id.toLowerCase()));
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
  });

  for (const record of listCatalogModels()) {
    it(`${record.id}: computed components equal the reference formula`, () => {
      const want = reference[record.id];
      expect(want, "reference entry").toBeDefined();
      const got = countParams(record.architecture);
      expect(got.total).toBe(want?.total);
      expect(got.text).toBe(want?.text);
      expect(got.visionTower + got.projector).toBe(want?.vision);
      expect(got.embedTokens).toBe(want?.embedTokens);
      expect(got.lmHead).toBe(want?.lmHead);
      if (want?.active != null) expect(got.active).toBe(want.active);
      // the publisher's own total, where one is stated: with or without the checkpoint's extra tensors
      if (want?.officialExact != null)
        expect([got.total, got.total + want.checkpointExtras]).toContain(want.officialExact);
    });
  }

  it("finds the seed's model case-insensitively and by alias", () => {
    expect(findCatalogModel("qwen/qwen2-vl-72b-instruct")?.record.key).toBe("Qwen2-VL-72B");
    expect(findCatalogModel("Qwen/Qwen2.5-7B-Instruct")?.record.key).toBe("Qwen2.5-7B");
    expect(findCatalogModel("zai-org/glm-4-9b-chat")?.record.key).toBe("GLM-4-9B");
  });

  it("accepts both names of a renamed repository, with LLaMA-Factory's template", () => {
    // the hub's current name and LLaMA-Factory's older one of the same checkpoint
    for (const id of ["meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B-Instruct"]) {
      const match = findCatalogModel(id);
      expect(match?.record.key).toBe("Llama-3.1-8B");
      expect(match?.defaultTemplate).toBe("llama3");
    }
    expect(findCatalogModel("meta-llama/Llama-3.1-70B-Instruct")?.record.key).toBe("Llama-3.1-70B");
    expect(findCatalogModel("THUDM/glm-4-9b-chat")?.groupTemplate).toBe("glm4");
  });

  it("maps checkpoints that keep a catalog model's dimensions to it, each with its own template", () => {
    const cases: [string, string, string][] = [
      ["deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "Qwen2.5-7B", "deepseekr1"],
      ["deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "Llama-3.1-70B", "deepseekr1"],
      ["Qwen/Qwen2.5-Coder-7B-Instruct", "Qwen2.5-7B", "qwen"],
      ["Qwen/QwQ-32B", "Qwen2.5-32B", "qwen"],
      ["meta-llama/Llama-3.3-70B-Instruct", "Llama-3.1-70B", "llama3"],
      ["Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen3-30B-A3B", "qwen3_nothink"],
    ];
    for (const [id, key, template] of cases) {
      const match = findCatalogModel(id);
      expect(match?.record.key, id).toBe(key);
      expect(match?.defaultTemplate, id).toBe(template);
    }
    // the 1.5B distill unties Qwen2.5-1.5B's embeddings: its own record, not an alias
    expect(findCatalogModel("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")?.record.key).toBe(
      "DeepSeek-R1-Distill-Qwen-1.5B",
    );
  });
});
