import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { listCatalogModels } from "../../src/catalog/models.ts";
import { DEFAULT_ASSUMPTIONS } from "../../src/memory/assumptions.ts";
import { estimateMemory } from "../../src/memory/estimate.ts";
import {
  estimateInferenceMemory,
  estimateLoadMemory,
  loadedWeightBytes,
  pinnedBytes,
  quantizedParams,
} from "../../src/memory/load.ts";
import {
  estimateTrainMemory,
  newSegmentBytes,
  optimizerBytesPerParam,
  optimizerStepKind,
  usableCapacityBytes,
} from "../../src/memory/train.ts";
import { countParams } from "../../src/model/params.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import type { Plan } from "../../src/schema/plan.ts";

const GiB = 1024 ** 3;

function plan(input: Record<string, unknown>): Plan {
  return resolvePlan({ template: "default", ...input }).plan;
}

const TEXT_MODELS = [
  "meta-llama/Llama-3.2-1B",
  "Qwen/Qwen2.5-7B",
  "google/gemma-2-9b",
  "mistralai/Mixtral-8x7B-v0.1",
  "microsoft/Phi-3-mini-4k-instruct",
];
const METHODS = ["full", "freeze", "lora", "qlora"] as const;

/** Full fine-tuning of Llama-3.2-3B in pure bf16 on one H200 (3,212,749,824 parameters, tied embeddings). */
const fullLlama3B = (input: Record<string, unknown>, over = {}) =>
  estimateTrainMemory(
    plan({ model: "meta-llama/Llama-3.2-3B", gpu: "h200", method: "full", precision: "pure_bf16", ...input }),
    over,
  );

describe("breakdown", () => {
  it("always sums exactly to allocated, reserved and device bytes", () => {
    for (const model of listCatalogModels().map((m) => m.id)) {
      for (const method of METHODS) {
        for (const gc of [true, false]) {
          const m = estimateMemory(
            plan({ model, gpu: "h100-80g", method, gradientCheckpointing: gc, microBatch: 2 }),
          ).train.perGpu;
          const b = m.breakdown;
          expect(b.weights + b.gradients + b.optimizer + b.activations + b.logits + b.buffers).toBe(
            m.allocatedBytes,
          );
          expect(m.allocatedBytes + b.fragmentation).toBe(m.reservedBytes);
          expect(m.reservedBytes + b.runtime).toBe(m.deviceBytes);
          for (const v of Object.values(b)) expect(Number.isInteger(v) && v >= 0).toBe(true);
        }
      }
    }
  });
});

describe("activation properties (text-only models, backward phase, no eager attention)", () => {
  const train = (input: Record<string, unknown>) => estimateTrainMemory(plan({ gpu: "h200", ...input }));

  it("grow linearly with the micro-batch", () => {
    for (const model of TEXT_MODELS) {
      for (const method of METHODS) {
        for (const gc of [true, false]) {
          const one = train({ model, method, microBatch: 1, gradientCheckpointing: gc, seqLen: 1024 });
          const four = train({ model, method, microBatch: 4, gradientCheckpointing: gc, seqLen: 1024 });
          if (one.phase !== "backward" || four.phase !== "backward") continue;
          const dyn = (t: typeof one) => t.breakdown.activations + t.breakdown.logits;
          // with checkpointing the larger of the logits and the recomputed layer is kept: each is linear
          expect(Math.abs(dyn(four) - 4 * dyn(one))).toBeLessThanOrEqual(8);
        }
      }
    }
  });

  it("grow at least linearly with the sequence length", () => {
    for (const model of TEXT_MODELS) {
      for (const attention of ["sdpa", "eager"] as const) {
        const short = train({ model, microBatch: 1, seqLen: 512, attention, gradientCheckpointing: false });
        const long = train({ model, microBatch: 1, seqLen: 4096, attention, gradientCheckpointing: false });
        expect(long.breakdown.activations).toBeGreaterThanOrEqual(8 * short.breakdown.activations - 8);
      }
    }
  });

  it("never grow when gradient checkpointing is turned on (models with 2+ layers)", () => {
    for (const model of listCatalogModels().map((m) => m.id)) {
      for (const method of METHODS) {
        const off = train({ model, method, gradientCheckpointing: false, seqLen: 2048 });
        const on = train({ model, method, gradientCheckpointing: true, seqLen: 2048 });
        expect(on.breakdown.activations + on.breakdown.logits).toBeLessThanOrEqual(
          off.breakdown.activations + off.breakdown.logits,
        );
      }
    }
  });

  it("Liger removes the fp32 logits copies", () => {
    for (const model of TEXT_MODELS) {
      const plain = train({ model, microBatch: 4, seqLen: 4096, gradientCheckpointing: true });
      const liger = train({ model, microBatch: 4, seqLen: 4096, gradientCheckpointing: true, liger: true });
      const tokens = 4 * 4096;
      const vocab = plan({ model, gpu: "h200" }).model.architecture.text.vocabSize;
      expect(plain.breakdown.logits + plain.breakdown.activations).toBeGreaterThanOrEqual(
        tokens * vocab * 10,
      );
      expect(liger.breakdown.logits).toBeLessThan(tokens * vocab * 2);
    }
  });
});

describe("mechanisms", () => {
  const m = (input: Record<string, unknown>) =>
    estimateTrainMemory(plan({ gpu: "h200", model: "Qwen/Qwen2.5-7B", ...input })).breakdown;

  it("peaks at the loss's backward: 12 B × vocabulary per token, in bf16 and fp32 training alike", () => {
    // checkpointing on: the loss outweighs one recomputed layer at 152,064 × 8,192 tokens
    for (const precision of ["bf16", "fp32"] as const) {
      const b = m({ method: "lora", microBatch: 4, seqLen: 2048, precision });
      expect(b.logits).toBe(4 * 2048 * 152_064 * 12);
    }
  });

  it("a loop that holds the model output keeps its logits beside the loss's peak and every recomputed layer", () => {
    const input = { method: "lora", microBatch: 4, seqLen: 2048 };
    const held = (bytes: number, extra = {}) =>
      estimateTrainMemory(plan({ gpu: "h200", model: "Qwen/Qwen2.5-7B", ...input, ...extra }), {
        heldOutputLogitsBytesPerVocabToken: bytes,
      }).breakdown;
    // the HF Trainer drops the output before backward: nothing held by default
    expect(held(0).logits).toBe(m(input).logits);
    expect(held(4).logits - held(0).logits).toBe(4 * 2048 * 152_064 * 4);
    // eager attention's s² scores make the recomputed layer the peak: the held logits stay beside it
    const mistral = { model: "mistralai/Mistral-7B-v0.1", attention: "eager" };
    expect(held(0, mistral).logits).toBe(0);
    expect(held(2, mistral).logits).toBe(4 * 2048 * 32_000 * 2);
    // Liger's fused loss makes no logits to hold
    expect(held(4, { liger: true }).logits).toBe(held(0, { liger: true }).logits);
  });

  it("saves a trained linear's input apart from the norm before it, and o_proj's contiguous input under SDPA", () => {
    // Llama-3.2-3B, no checkpointing, 2 × 4,096 packed tokens (the start of backward is the peak): activations =
    // 28 layers × per-token bytes × 8,192.
    // A norm's weighted output is a tensor of its own, saved by the linears after it: full fine-tuning saves it
    // twice per layer (attention, MLP) beside each norm's normalised input, and o_proj saves SDPA's output
    // transposed into a contiguous copy. 3 × 2 B × 3,072 per layer and token in all.
    const acts = (attention: string) =>
      fullLlama3B({
        gradientCheckpointing: false,
        gradAccum: 1,
        microBatch: 2,
        seqLen: 4096,
        packing: true,
        attention,
      }).breakdown.activations;
    const norms = 2 * (4 + 2) * 3_072; // fp32 input + bf16 normalised input, twice per layer
    const attention = 2 * (3_072 + 2 * 3_072 + 3_072) + 4 * 24; // q, repeat_kv's k and v, out; fp32 lse
    const mlp = 4 * 2 * 8_192; // gate, act(gate), up, their product
    const inputs = 3 * 2 * 3_072; // q/k/v's input, o_proj's input, gate/up's input
    const perLayerToken = norms + attention + mlp + inputs;
    // the last layer's output and the final norm (fp32 input, bf16 normalised input, weighted output) come on top
    expect(acts("sdpa") - 28 * 8_192 * perLayerToken).toBe(8_192 * (4 + 2 + 2) * 3_072);
    // FlashAttention-2 saves k and v ungrouped (1,024 wide) and o_proj's input is a view of its output
    expect(acts("sdpa") - acts("fa2")).toBe(28 * 8_192 * (2 * 2 * (3_072 - 1_024) + 2 * 3_072));
  });

  it("counts LN tuning's norms as the only trained module, whatever the norm's name says", () => {
    const acts = (modules: string[]) =>
      estimateTrainMemory(
        plan({
          model: "meta-llama/Llama-3.2-3B",
          gpu: "h200",
          method: "freeze",
          freezeTrainableLayers: 28,
          freezeTrainableModules: modules,
          gradientCheckpointing: false,
        }),
      ).breakdown.activations;
    // "post_attention_layernorm" is a norm, not attention
    expect(acts(["post_attention_layernorm"])).toBe(acts(["input_layernorm"]));
    expect(acts(["input_layernorm", "self_attn"])).toBeGreaterThan(acts(["input_layernorm"]));
  });

  it("counts the bare CUDA context plus the kernels a training step loads, and NCCL with several GPUs", () => {
    const MiB = 1024 ** 2;
    expect(m({ method: "lora" }).runtime).toBe((512 + 870) * MiB);
    expect(m({ method: "lora", gpus: 2 }).runtime).toBe((512 + 870 + 512) * MiB);
    // DeepSpeed clones the world group: a second communicator
    expect(m({ method: "lora", gpus: 2, sharding: "zero2" }).runtime).toBe((512 + 870 + 2 * 512) * MiB);
    // hybrid sharding across nodes adds its intra-node and inter-node groups
    const hybrid = m({ method: "lora", gpus: 8, nodes: 2, sharding: "fsdp", fsdpStrategy: "hybrid_shard" });
    expect(hybrid.runtime).toBe((512 + 870 + 3 * 512) * MiB);
  });

  it("upcasts trainable parameters to fp32 unless pure_bf16", () => {
    const full = m({ method: "full" });
    const pure = m({ method: "full", precision: "pure_bf16" });
    expect(full.weights).toBe(7_615_616_512 * 4);
    expect(pure.weights).toBe(7_615_616_512 * 2);
    expect(full.gradients).toBe(2 * pure.gradients);
  });

  it("keeps LoRA adapters in fp32 under pure_bf16 (PEFT's autocast_adapter_dtype), additional targets in bf16", () => {
    const lora = (precision: string, input: Record<string, unknown> = {}) =>
      m({ method: "lora", precision, loraRank: 8, ...input });
    expect(lora("pure_bf16").gradients).toBe(lora("bf16").gradients);
    expect(lora("pure_bf16").optimizer).toBe(lora("bf16").optimizer);
    const withHead = { additionalTarget: ["lm_head"] };
    const head = 152_064 * 3_584;
    expect(lora("bf16", withHead).gradients - lora("pure_bf16", withHead).gradients).toBe(head * 2);
  });

  it("stores QLoRA's base weights in NF4 with 16-bit embeddings and lm_head", () => {
    const q = m({ method: "qlora" }).weights;
    const lora = m({ method: "lora" }).weights;
    expect(q).toBeLessThan(0.45 * lora);
    expect(q).toBeGreaterThan(2 * 544_997_376 * 2); // embed_tokens + lm_head stay bf16
  });

  it("keeps GPTQ's dequantized 16-bit weights for backward: one decoder layer's with checkpointing, all without", () => {
    // Qwen2.5-7B: 28 layers of q, k, v, o (3584·(3584 + 512 + 512 + 3584)) and gate, up, down (3·3584·18944)
    const layerLinears = 3584 * (3584 + 512 + 512 + 3584) + 3 * 3584 * 18944;
    // Liger keeps the loss small, so a recomputed layer sets the peak; AWQ's checkpoint is as large as GPTQ's
    const q = (quantMethod: string, gradientCheckpointing: boolean) =>
      m({ method: "qlora", microBatch: 1, seqLen: 256, liger: true, quantMethod, gradientCheckpointing });
    for (const checkpointing of [true, false]) {
      const gptq = q("gptq", checkpointing);
      const awq = q("awq", checkpointing); // AutoAWQ saves the packed weight and dequantizes again
      expect(gptq.weights).toBe(awq.weights);
      // AWQ dequantizes in forward and again in backward (2 × 2 B per element of the largest linear); GPTQ's
      // transient is its unpacking: the shifted int32 words and their int8 cast (4 + 1 B)
      expect(awq.buffers).toBe(2 * 2 * 3584 * 18944);
      expect(gptq.buffers).toBe(5 * 3584 * 18944);
      expect(gptq.activations - awq.activations).toBe((checkpointing ? 1 : 28) * layerLinears * 2);
    }
  });

  it("makes the step's temporaries by how each optimizer steps: a whole copy for foreach, none in place", () => {
    // Qwen2.5-7B full fine-tuning at 256 tokens: with a temporary the step is the peak, without it backward is
    const run = (optimizer: string) =>
      estimateTrainMemory(
        plan({
          gpu: "h200",
          model: "Qwen/Qwen2.5-7B",
          method: "full",
          seqLen: 256,
          microBatch: 1,
          optimizer,
        }),
      );
    const fp32Copy = 7_615_616_512 * 4; // every parameter trains in fp32 (LLaMA-Factory's upcast)
    expect(optimizerStepKind(null)).toBe("foreach");
    const foreach = run("adamw_torch");
    expect(foreach.phase).toBe("optimizer-step");
    expect(foreach.breakdown.buffers).toBe(fp32Copy);
    expect(run("adagrad").breakdown.buffers).toBe(2 * fp32Copy); // its `std` and `numerator` lists
    const fused = run("adamw_torch_fused"); // the same states, stepped in place
    expect(fused.phase).toBe("backward");
    expect(foreach.allocatedBytes - fused.allocatedBytes).toBeGreaterThan(0.9 * fp32Copy);
    for (const inPlace of ["adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "lion_8bit", "sgd"])
      expect(optimizerStepKind(inPlace)).toBe("in-place");
    // Adafactor steps one parameter at a time: two fp32 temporaries of the largest (embed_tokens, 152,064 × 3,584)
    const adafactor = run("adafactor");
    expect(adafactor.phase).toBe("optimizer-step");
    expect(adafactor.breakdown.buffers).toBe(152_064 * 3584 * 8);
  });

  it("prices optimizers by their states", () => {
    expect(optimizerBytesPerParam(null, 4)).toBe(8);
    expect(optimizerBytesPerParam("adamw_8bit", 4)).toBe(2);
    expect(optimizerBytesPerParam("paged_adamw_8bit", 4)).toBe(2);
    expect(optimizerBytesPerParam("sgd", 4)).toBe(0);
    expect(m({ method: "full", optimizer: "adafactor" }).optimizer).toBeLessThan(
      0.02 * m({ method: "full" }).optimizer,
    );
  });

  it("adds LoRA dropout's input masks", () => {
    expect(m({ gradientCheckpointing: false, loraDropout: 0.1 }).activations).toBeGreaterThan(
      m({ gradientCheckpointing: false }).activations,
    );
  });

  it("keeps the eager attention's s² terms, which sdpa on packed rows does not", () => {
    const eager = m({ attention: "eager", gradientCheckpointing: false, seqLen: 4096, packing: true });
    const sdpa = m({ attention: "sdpa", gradientCheckpointing: false, seqLen: 4096, packing: true });
    expect(eager.activations - sdpa.activations).toBeGreaterThan(28 * 28 * 4096 * 4096 * 6 * 0.99);
  });

  it("saves SDPA's additive padding mask per layer for padded batches, none for packed rows or FA2", () => {
    const act = (input: Record<string, unknown>) =>
      m({ attention: "sdpa", seqLen: 4096, microBatch: 2, ...input }).activations;
    const s2 = 2 * 4096 ** 2; // micro-batch × s²
    // the boolean mask (1 B) once, and its bf16 conversion saved by every layer (28), or by the recomputed one
    expect(act({ gradientCheckpointing: false }) - act({ gradientCheckpointing: false, packing: true })).toBe(
      s2 * (1 + 28 * 2),
    );
    // with checkpointing the bf16 copy belongs to the recomputed layer, which the loss outweighs here
    expect(act({}) - act({ packing: true })).toBe(s2);
    expect(act({ attention: "fa2" })).toBe(act({ attention: "fa2", packing: true }));
  });

  it("counts image tokens' vision work only as a transient while the tower is frozen", () => {
    const vl = (input: Record<string, unknown>) =>
      estimateTrainMemory(
        plan({ gpu: "h200", model: "Qwen/Qwen2-VL-7B-Instruct", imagesPerSample: 2, ...input }),
      ).breakdown;
    expect(vl({ freezeVisionTower: false, gradientCheckpointing: false }).activations).toBeGreaterThan(
      vl({ gradientCheckpointing: false }).activations,
    );
  });

  it("lets every assumption be overridden", () => {
    const p = plan({ model: "Qwen/Qwen2.5-7B", gpu: "h100-80g" });
    const a = estimateMemory(p).train.perGpu;
    const b = estimateMemory(p, { cudaContextBytes: DEFAULT_ASSUMPTIONS.cudaContextBytes + GiB }).train
      .perGpu;
    expect(b.deviceBytes - a.deviceBytes).toBe(GiB);
  });
});

describe("bitsandbytes before 0.43.2 (bnb4bitSavesInput)", () => {
  it("saves each 4-bit linear's input in every layer autograd keeps, and nothing for other methods", () => {
    const acts = (input: Record<string, unknown>, over = {}) =>
      estimateTrainMemory(
        plan({ model: "meta-llama/Llama-2-7b-hf", gpu: "h200", seqLen: 1024, attention: "sdpa", ...input }),
        over,
      ).breakdown.activations;
    const old = { bnb4bitSavesInput: true };
    const noGc = { method: "qlora", gradientCheckpointing: false };
    // q/k/v's normed input, o_proj's (SDPA's contiguous copy), the post-attention normed state, down_proj's input
    const perLayer = 2 * (4096 + 4096 + 4096 + 11008);
    expect(acts(noGc, old) - acts(noGc)).toBe(32 * 1024 * perLayer);
    // FlashAttention-2's output is saved anyway: o_proj's input is a view of it
    expect(acts({ ...noGc, attention: "fa2" }, old) - acts({ ...noGc, attention: "fa2" })).toBe(
      32 * 1024 * 2 * (4096 + 4096 + 11008),
    );
    // checkpointing keeps one recomputed layer's: the peak there once Liger takes the logits away, and at the
    // loss (no layer recomputed yet) with them
    const gc = { method: "qlora", liger: true };
    expect(acts(gc, old) - acts(gc)).toBe(1024 * perLayer);
    expect(acts({ method: "qlora" }, old)).toBe(acts({ method: "qlora" }));
    // 8-bit bitsandbytes (MatMul8bitLt) saves them in every version: the same bytes, with or without the switch
    const eight = { ...noGc, quantBits: 8 };
    expect(acts(eight)).toBe(acts(noGc, old));
    // neither GPTQ nor 16-bit LoRA
    for (const input of [
      eight,
      { ...noGc, quantMethod: "gptq" },
      { method: "lora", gradientCheckpointing: false },
    ])
      expect(acts(input, old)).toBe(acts(input));
  });
});

describe("gradients during backward", () => {
  const train = fullLlama3B;

  it("holds no parameter gradient at the loss's peak without accumulation, every one with it", () => {
    // 2 × 4,096 tokens without checkpointing: the start of backward (activations + logits) is the peak
    const one = train({ microBatch: 2, seqLen: 4096, gradientCheckpointing: false, gradAccum: 1 });
    const two = train({ microBatch: 2, seqLen: 4096, gradientCheckpointing: false, gradAccum: 2 });
    expect(one.phase).toBe("backward");
    expect(one.breakdown.gradients).toBe(0);
    expect(one.breakdown.logits).toBeGreaterThan(0);
    expect(two.breakdown.gradients).toBe(3_212_749_824 * 2);
    expect(two.allocatedBytes - one.allocatedBytes).toBe(two.breakdown.gradients);
  });

  it("lets ZeRO-1/2 make their gradient partition and bucket during backward; ZeRO-3 holds its partitions", () => {
    const long = { microBatch: 2, seqLen: 4096, gradientCheckpointing: false, gradAccum: 1, gpus: 2 };
    const z2 = train({ ...long, sharding: "zero2" }).breakdown;
    expect(z2.gradients).toBe(0);
    // at the loss's peak no bucket yet; the DeepSpeed buffers left are none
    expect(z2.buffers).toBe(0);
    const z3 = train({ ...long, sharding: "zero3" }).breakdown;
    expect(z3.gradients).toBe(3_212_749_824); // 2 B / 2 GPUs
  });

  it("peaks at the end of backward, with every gradient and no logits, when the step is short", () => {
    // 256 tokens: the gradients (6.4 GB) outweigh the activations and logits; without the optimizer step's
    // temporary copy the peak is the end of backward
    const short = train({ seqLen: 256, gradAccum: 1 }, { optimizerStepTempCopies: 0 });
    expect(short.phase).toBe("backward");
    expect(short.breakdown.gradients).toBe(3_212_749_824 * 2);
    expect(short.breakdown.logits).toBe(0);
  });

  it("never needs less memory with accumulation than without, for any catalog model and method", () => {
    for (const model of TEXT_MODELS) {
      for (const method of METHODS) {
        for (const gc of [true, false]) {
          const at = (gradAccum: number) =>
            estimateTrainMemory(
              plan({
                model,
                gpu: "h200",
                method,
                gradientCheckpointing: gc,
                microBatch: 2,
                seqLen: 2048,
                gradAccum,
              }),
            ).allocatedBytes;
          expect(at(4)).toBeGreaterThanOrEqual(at(1));
        }
      }
    }
  });
});

describe("loading and inference", () => {
  it("finds the seed's failing shard: 73.4 B bf16 params on a 24,564 MiB card, 38 shards", () => {
    const p = plan({ model: "Qwen/Qwen2-VL-72B-Instruct", gpu: "rtx4090", gpus: 8, method: "full" });
    const load = estimateLoadMemory(p, p.gpu.capacityBytes);
    expect(load.weightsBytes).toBe(73_405_560_320 * 2);
    // (24,564 MiB − 512 MiB context) / 146.8 GB = 0.172 → 6 shards loaded, the 7th runs out
    expect(load.oomAtFraction).toBeCloseTo(((24_564 - 512) * 1024 ** 2) / (73_405_560_320 * 2), 3);
    expect(load.oomAtShard).toEqual({ index: 7, of: 38 });
  });

  it("computes oomAtFraction for other models and GPUs, and no shard without a shard count", () => {
    const p = plan({ model: "meta-llama/Meta-Llama-3-70B", gpu: "a100-40g", gpus: 4 });
    const load = estimateLoadMemory(p, p.gpu.capacityBytes);
    expect(load.fits).toBe(false);
    expect(load.oomAtFraction).toBeCloseTo((40_960 - 512) / ((70_553_706_496 * 2) / 1024 ** 2), 3);
    expect(load.oomAtShard).toBeUndefined();
    const shardCount = plan({ model: "meta-llama/Meta-Llama-3-8B-Instruct", gpu: "t4" });
    const t4 = estimateLoadMemory(shardCount, shardCount.gpu.capacityBytes);
    expect(t4.oomAtShard).toEqual({ index: 4, of: 4 });
  });

  it("loads only the rank's share under ZeRO-3 and FSDP, the whole quantized model for bnb under ZeRO-3", () => {
    const base = { model: "Qwen/Qwen2.5-72B-Instruct", gpu: "a100-80g", gpus: 8 };
    const z3 = plan({ ...base, method: "full", sharding: "zero3" });
    expect(estimateLoadMemory(z3, z3.gpu.capacityBytes).weightsBytes).toBe(
      Math.round((72_706_203_648 * 2) / 8),
    );
    const q3 = plan({ ...base, method: "qlora", sharding: "zero3" });
    const qf = plan({ ...base, method: "qlora", sharding: "fsdp" });
    const whole = estimateLoadMemory(q3, q3.gpu.capacityBytes).weightsBytes;
    // FSDP's share: the packed 4-bit weights and 16-bit rest / 8, with NF4's block constants whole
    const constants = quantizedParams(qf, DEFAULT_ASSUMPTIONS) * (DEFAULT_ASSUMPTIONS.nf4BytesPerParam - 0.5);
    const share = estimateLoadMemory(qf, qf.gpu.capacityBytes).weightsBytes;
    expect(Math.abs(whole - (8 * (share - constants) + constants))).toBeLessThanOrEqual(8);
  });

  it("keeps the partitions in host memory with parameter offload: the GPU holds the module or unit in flight", () => {
    const base = { model: "Qwen/Qwen2.5-72B-Instruct", gpu: "rtx4090", method: "lora", offload: "params" };
    // Qwen2.5-72B: embed_tokens and lm_head are its largest modules, 152,064 × 8,192 each
    const largest = 152_064 * 8_192 * 2;
    for (const gpus of [1, 2, 8]) {
      const z3 = plan({ ...base, gpus, sharding: "zero3" });
      const load = estimateMemory(z3).load;
      expect(load.weightsBytes).toBe(largest);
      expect(load.perGpuPeakBytes).toBe(largest + DEFAULT_ASSUMPTIONS.cudaContextBytes);
    }
    // FSDP1: no shard stays on the GPU; the peak is wrapping the root unit (embeddings, norm, lm_head)
    const fsdpPlan = plan({ ...base, gpus: 2, sharding: "fsdp" });
    const fsdp = estimateMemory(fsdpPlan).load;
    expect(fsdp.weightsBytes).toBe(0);
    expect(fsdp.perGpuPeakBytes).toBe(
      estimateTrainMemory(fsdpPlan).wrapPeakBytes + DEFAULT_ASSUMPTIONS.cudaContextBytes,
    );
    expect(fsdp.perGpuPeakBytes).toBeGreaterThan(2 * 2 * largest);
    // bitsandbytes skips zero.Init: every rank still holds the whole 4-bit model, offload or not
    const q = { ...base, gpus: 2, method: "qlora", sharding: "zero3" };
    expect(estimateMemory(plan(q)).load.weightsBytes).toBe(
      estimateMemory(plan({ ...q, offload: "none" })).load.weightsBytes,
    );
  });

  it("rounds pinned host memory as torch's caching host allocator does: up to a power of two", () => {
    expect([3, 1024 ** 2, 1024 ** 2 + 1, 0].map(pinnedBytes)).toEqual([4, 1024 ** 2, 2 * 1024 ** 2, 0]);
  });

  it("FSDP1 parameter offload pins each unit's shard and a gradient buffer beside it, frozen units too", () => {
    // Llama-2-70B QLoRA on 2 GPUs (PEFT's FSDP+QLoRA example): 80 layer units and the root, sharded over 2 ranks
    const input = {
      model: "meta-llama/Llama-2-70b-hf",
      gpu: "rtx4090",
      gpus: 2,
      method: "qlora",
      sharding: "fsdp",
      offload: "params",
    };
    const p = plan(input);
    const units = estimateTrainMemory(p).fsdpUnits;
    if (units === null) throw new Error("FSDP1 has units");
    const pinned =
      2 * (units.layers * 2 * pinnedBytes(units.layerBytes / 2) + 2 * pinnedBytes(units.rootBytes / 2));
    const host = estimateMemory(p).hostRam.perNodeBytes;
    const processes = 2 * DEFAULT_ASSUMPTIONS.hostBytesPerProcess;
    // the LoRA adapters' CPU AdamW states (8 B per trainable parameter) and, at the save, the full state dict rank
    // 0 gathers to its CPU (FULL_STATE_DICT: the 4-bit model as stored) come on top: the 4-bit checkpoint rank 0
    // stages on the CPU while loading is freed unit by unit as the shards are made
    const saving = loadedWeightBytes(p, countParams(p.model.architecture), DEFAULT_ASSUMPTIONS);
    expect(host - processes - pinned - saving).toBeGreaterThan(0);
    expect(host - processes - pinned - saving).toBeLessThan(0.01 * pinned);
    // twice the 4-bit shards, and more: each pinned copy rounded up
    const shards = 80 * units.layerBytes + units.rootBytes;
    expect(pinned).toBeGreaterThan(2 * shards);
  });

  it("counts the full state dict ZeRO-3 and FSDP gather on rank 0's CPU at the save", () => {
    // Qwen2.5-72B LoRA on 8 GPUs: the 16-bit consolidated state dict (145 GB) outweighs the shards rank by rank
    // loading maps (8 × one safetensors shard)
    const host = (sharding: string) => {
      const p = plan({ model: "Qwen/Qwen2.5-72B", gpu: "h100-80g", gpus: 8, method: "lora", sharding });
      return {
        saving: estimateMemory(p).hostRam.perNodeBytes - 8 * DEFAULT_ASSUMPTIONS.hostBytesPerProcess,
        total: loadedWeightBytes(p, countParams(p.model.architecture), DEFAULT_ASSUMPTIONS),
      };
    };
    expect(host("zero3").saving).toBe(Math.round(host("zero3").total));
    expect(host("fsdp").saving).toBe(Math.round(host("fsdp").total));
    // ZeRO-2 saves from its full replicas: no gathered copy
    expect(host("zero2").saving).toBeLessThan(0.3 * host("zero2").total);
    // accelerate 1.11's FSDP2 holds the whole model in fp32, so its full state dict is 4 B per parameter
    const fsdp2 = plan({
      model: "Qwen/Qwen2.5-72B",
      gpu: "h100-80g",
      gpus: 8,
      method: "lora",
      sharding: "fsdp2",
    });
    expect(estimateMemory(fsdp2).hostRam.perNodeBytes - 8 * DEFAULT_ASSUMPTIONS.hostBytesPerProcess).toBe(
      countParams(fsdp2.model.architecture).total * 4,
    );
  });

  it("balances device_map='auto' like accelerate: the seed's cards hold about 18 GiB", () => {
    const p = plan({ model: "Qwen/Qwen2-VL-72B-Instruct", gpu: "rtx4090", gpus: 8 });
    const inf = estimateInferenceMemory(p, p.gpu.capacityBytes);
    expect(inf.perGpuWeightsBytes.reduce((a, b) => a + b, 0)).toBeCloseTo(73_405_560_320 * 2, -3);
    expect(inf.perGpuBytes / GiB).toBeGreaterThan(17);
    expect(inf.perGpuBytes / GiB).toBeLessThan(19.5);
    expect(inf.cpuBytes).toBe(0);
  });

  it("serves a pre-quantized (GPTQ) checkpoint as stored, and a bitsandbytes QLoRA base in 16 bits", () => {
    const weights = (extra: Record<string, unknown>) => {
      const p = plan({
        model: "meta-llama/Llama-3.1-8B-Instruct",
        gpu: "a100-80g",
        method: "qlora",
        ...extra,
      });
      return estimateInferenceMemory(p, p.gpu.capacityBytes).perGpuWeightsBytes.reduce((a, b) => a + b, 0);
    };
    const p = countParams(
      plan({ model: "meta-llama/Llama-3.1-8B-Instruct", gpu: "a100-80g" }).model.architecture,
    );
    const layers = p.text - p.embedTokens - p.lmHead - p.finalNorm;
    expect(weights({ quantMethod: "bnb" })).toBeCloseTo(p.total * 2, -3);
    // the decoder layers at GPTQ's 4 bits + group scales; embeddings, final norm and lm_head 16-bit
    expect(weights({ quantMethod: "gptq" })).toBeCloseTo(
      layers * (0.5 + 2.5 / 128) + (p.embedTokens + p.lmHead + p.finalNorm) * 2,
      -3,
    );
  });

  it("puts what fits on no GPU on the CPU, as infer_auto_device_map does, and no GPU beyond its memory", () => {
    for (const [model, gpu, gpus] of [
      ["Qwen/Qwen2.5-14B-Instruct", "rtx4090", 1],
      ["meta-llama/Meta-Llama-3-70B-Instruct", "rtx4090", 2],
      ["Qwen/Qwen2.5-72B-Instruct", "a100-80g", 1],
    ] as const) {
      const p = plan({ model, gpu, gpus });
      const inf = estimateInferenceMemory(p, p.gpu.capacityBytes);
      const weights = countParams(p.model.architecture).total * 2;
      expect(inf.cpuBytes).toBeGreaterThan(0);
      expect(inf.perGpuWeightsBytes.reduce((a, b) => a + b, 0) + inf.cpuBytes).toBeCloseTo(weights, -3);
      expect(inf.perGpuBytes).toBeLessThanOrEqual(p.gpu.capacityBytes);
    }
  });
});

describe("calibration cases (tier A, single GPU): golden breakdowns", () => {
  const cases = JSON.parse(
    readFileSync(new URL("../../bench/data/calibration-cases.json", import.meta.url), "utf8"),
  ) as {
    id: string;
    tier: string;
    scope: string;
    plan: Record<string, unknown>;
    overrides: string[];
    assumptions: Record<string, unknown>;
  }[];
  it("gives tier-A cases no per-case overrides, and lists every override it applies", () => {
    const tierA = cases.filter((c) => c.tier === "A");
    expect(tierA.length).toBeGreaterThan(0);
    for (const c of tierA) expect([c.id, c.overrides, c.assumptions]).toEqual([c.id, [], {}]);
    for (const c of cases)
      expect([c.id, Object.keys(c.assumptions).length > 0]).toEqual([c.id, c.overrides.length > 0]);
  });
  it("pins every tier-A single-GPU prediction", async () => {
    const pinned = Object.fromEntries(
      cases
        .filter((c) => c.tier === "A" && c.scope === "single-gpu")
        .map((c) => [
          c.id,
          estimateMemory(resolvePlan(c.plan, { cwd: new URL("../..", import.meta.url).pathname }).plan).train
            .perGpu,
        ]),
    );
    await expect(`${JSON.stringify(pinned, null, 2)}\n`).toMatchFileSnapshot("../golden/memory/tier-a.json");
  });
});

describe("robustness over the strategy space", () => {
  it("every catalog model × method × sharding × offload gives finite, non-negative figures", () => {
    const shardings = ["none", "zero1", "zero2", "zero3", "fsdp", "fsdp2"] as const;
    const offloads = ["none", "optimizer", "params"] as const;
    let checked = 0;
    for (const model of listCatalogModels().map((m) => m.id)) {
      for (const method of METHODS) {
        for (const sharding of shardings) {
          for (const offload of offloads) {
            const p = plan({ model, gpu: "h100-80g", gpus: 8, nodes: 2, method, sharding, offload });
            const m = estimateMemory(p);
            const values = [
              ...Object.values(m.train.perGpu.breakdown),
              m.load.perGpuPeakBytes,
              m.inference.perGpuBytes,
              m.hostRam.perNodeBytes,
            ];
            for (const v of values) expect(Number.isFinite(v) && v >= 0).toBe(true);
            checked++;
          }
        }
      }
    }
    expect(checked).toBe(listCatalogModels().length * 4 * 6 * 3);
  });

  it("offload lowers GPU memory, and sharding the states over more GPUs never raises it", () => {
    const dev = (input: Record<string, unknown>) =>
      estimateMemory(plan({ model: "Qwen/Qwen2.5-32B-Instruct", gpu: "a100-80g", method: "full", ...input }))
        .train.perGpu.deviceBytes;
    expect(dev({ gpus: 8, sharding: "zero3", offload: "optimizer" })).toBeLessThan(
      dev({ gpus: 8, sharding: "zero3" }),
    );
    expect(dev({ gpus: 8, sharding: "zero3", offload: "params" })).toBeLessThan(
      dev({ gpus: 8, sharding: "zero3", offload: "optimizer" }),
    );
    expect(dev({ gpus: 8, sharding: "zero3" })).toBeLessThan(dev({ gpus: 4, sharding: "zero3" }));
    expect(dev({ gpus: 8, sharding: "zero2" })).toBeLessThanOrEqual(dev({ gpus: 8, sharding: "zero1" }));
    expect(dev({ gpus: 8, sharding: "zero3" })).toBeLessThanOrEqual(dev({ gpus: 8, sharding: "zero2" }));
  });
});

describe("sharding mechanisms", () => {
  const train = (input: Record<string, unknown>, over = {}) =>
    estimateTrainMemory(plan({ model: "Qwen/Qwen2.5-32B-Instruct", gpu: "h100-80g", ...input }), over)
      .breakdown;

  it("doubling the GPUs halves the sharded states under ZeRO-3 and FSDP full shard; the gathered units stay", () => {
    // 4 × 8,192 tokens put the peak in backward, while the units are gathered; each micro-batch reduces its
    // gradients (FSDP1 otherwise accumulates them unsharded, next test)
    for (const sharding of ["zero3", "fsdp"] as const) {
      const common = { method: "full", sharding, microBatch: 4, seqLen: 8192, syncEachBatch: true };
      const four = train({ ...common, gpus: 4 });
      const eight = train({ ...common, gpus: 8 });
      expect(eight.optimizer * 2).toBeCloseTo(four.optimizer, -3);
      expect(eight.gradients * 2).toBeCloseTo(four.gradients, -3);
      const gathered = 2 * eight.weights - four.weights; // weights = shard + gathered
      expect(gathered).toBeGreaterThan(0);
      expect(Math.abs(four.weights - eight.weights - (four.weights - gathered) / 2)).toBeLessThan(4096);
    }
  });

  it("full fine-tuning forwards in 16 bits under DeepSpeed and FSDP, in fp32 under autocast without sharding", () => {
    // mixed precision and pure bf16 save the same activations once the module (DeepSpeed) or the gathered
    // parameters (FSDP's param_dtype) are 16-bit; without sharding, the fp32 weights make an fp32 residual stream
    const base = { method: "full", gpus: 8, microBatch: 4, seqLen: 8192, syncEachBatch: true };
    for (const sharding of ["zero2", "zero3", "fsdp", "fsdp2"] as const) {
      const mixedActs = train({ ...base, sharding }).activations;
      expect(mixedActs).toBe(train({ ...base, sharding, precision: "pure_bf16" }).activations);
    }
    const one = (precision: string) =>
      estimateTrainMemory(
        plan({
          model: "meta-llama/Llama-3.2-1B",
          gpu: "h200",
          method: "full",
          microBatch: 4,
          seqLen: 8192,
          precision,
        }),
      ).breakdown.activations;
    expect(one("bf16")).toBeGreaterThan(one("pure_bf16"));
  });

  it("FSDP1 accumulates unsharded 16-bit gradients between reductions unless each micro-batch reduces", () => {
    const T = 32_763_876_352; // Qwen2.5-32B's trainable parameters in full fine-tuning
    const base = { method: "full", gpus: 8, microBatch: 4, seqLen: 8192 };
    // gradient accumulation under the Trainer: FSDP1's no_sync keeps `.grad` unsharded, in bf16, on every rank
    const noSync = train({ ...base, sharding: "fsdp", gradAccum: 8 });
    expect(noSync.gradients).toBeCloseTo(T * 2, -4);
    // the CPU offload of FSDP1 does not take them either ("gradients will not be offloaded ... inside no_sync")
    expect(train({ ...base, sharding: "fsdp", gradAccum: 8, offload: "params" }).gradients).toBeCloseTo(
      T * 2,
      -4,
    );
    // sync_each_batch: the shard of LLaMA-Factory's fp32 gradients, as without accumulation
    const synced = train({ ...base, sharding: "fsdp", gradAccum: 8, syncEachBatch: true });
    expect(synced.gradients).toBeCloseTo((T * 4) / 8, -4);
    expect(noSync.gradients - synced.gradients).toBeGreaterThan(40 * 1024 ** 3);
    // FSDP2 has no no_sync for accelerate to enter; NO_SHARD holds whole gradients anyway
    expect(train({ ...base, sharding: "fsdp2", gradAccum: 8 }).gradients).toBeLessThan(T);
    expect(
      train({ ...base, sharding: "fsdp", fsdpStrategy: "no_shard", gpus: 2, gradAccum: 8 }).gradients,
    ).toBeCloseTo(T * 4, -4);
  });

  it("counts no gathered units when the peak is the optimizer step (every unit resharded)", () => {
    const step = estimateTrainMemory(
      plan({
        model: "Qwen/Qwen2.5-32B-Instruct",
        gpu: "h100-80g",
        method: "full",
        sharding: "fsdp",
        gpus: 8,
      }),
    );
    expect(step.phase).toBe("optimizer-step");
    // only the shard of LLaMA-Factory's fp32 trainable parameters
    expect(step.breakdown.weights).toBeCloseTo((32_763_876_352 * 4) / 8, -4);
  });

  it("gathers QLoRA's 16-bit lm_head at 2 B and its quantized linears at the NF4 size under ZeRO-3", () => {
    const lora = (gpus: number) =>
      estimateTrainMemory(
        plan({ model: "Qwen/Qwen2.5-7B", gpu: "h100-80g", gpus, sharding: "zero3", method: "qlora" }),
      ).breakdown.weights;
    // 2 × weights(16) − weights(8) = what does not shrink with the GPUs: what the prefetch keeps gathered at the
    // loss, 1e9 elements of the bf16 storage the 4-bit weights are packed in (stage3_max_live_parameters; lm_head,
    // 152,064 × 3,584, is within them) plus the decoder-layer weight that crosses that bound (an MLP linear,
    // 18,944 × 3,584, in NF4), and NF4's block constants, which bitsandbytes keeps outside the parameter
    const p = plan({ model: "Qwen/Qwen2.5-7B", gpu: "h100-80g", sharding: "zero3", method: "qlora" });
    const constants = quantizedParams(p, DEFAULT_ASSUMPTIONS) * (DEFAULT_ASSUMPTIONS.nf4BytesPerParam - 0.5);
    expect(2 * lora(16) - lora(8)).toBeCloseTo(
      1e9 * 2 + 18_944 * 3_584 * DEFAULT_ASSUMPTIONS.nf4BytesPerParam + constants,
      -2,
    );
  });

  it("holds FSDP2's frozen shards in fp32 under accelerate 1.11, in bf16 when told the version is newer", () => {
    const perLayer = { peftFsdp2WrapsRootOnly: false };
    const frozen = train({ method: "lora", sharding: "fsdp2", gpus: 8 }, perLayer);
    const newer = train(
      { method: "lora", sharding: "fsdp2", gpus: 8 },
      { ...perLayer, accelerateFsdp2CastsFrozenToFp32: false },
    );
    expect(frozen.weights).toBeGreaterThan(1.5 * newer.weights);
    // full fine-tuning has no frozen weights: the cast changes nothing there
    const full = { method: "full", sharding: "fsdp2", gpus: 8, precision: "bf16" };
    expect(train(full).weights).toBe(train(full, { accelerateFsdp2CastsFrozenToFp32: false }).weights);
  });

  it("gathers the whole model under FSDP2 with LoRA: the Trainer's PEFT wrap policy leaves one unit", () => {
    // Qwen2.5-7B LoRA on 8 GPUs: one unit gathers every weight in bf16 where per-layer units gather two layers and
    // the root (embeddings, final norm, lm_head)
    const p = plan({ model: "Qwen/Qwen2.5-7B", gpu: "h200", method: "lora", sharding: "fsdp2", gpus: 8 });
    const one = estimateTrainMemory(p).breakdown.weights;
    const layered = estimateTrainMemory(p, { peftFsdp2WrapsRootOnly: false }).breakdown.weights;
    const params = countParams(p.model.architecture);
    const layer = (params.text - params.embedTokens - params.lmHead - params.finalNorm) / 28;
    const root = params.embedTokens + params.lmHead + params.finalNorm;
    const adapters = estimateTrainMemory(p).breakdown.gradients * 8; // fp32 adapters, sharded 8 ways
    expect(one - layered).toBeCloseTo(params.total * 2 + adapters - (2 * layer + root) * 2, -4);
    // full fine-tuning is not a PEFT model: per-layer units as configured
    const full = plan({ model: "Qwen/Qwen2.5-7B", gpu: "h200", method: "full", sharding: "fsdp2", gpus: 8 });
    expect(estimateTrainMemory(full).breakdown.weights).toBe(
      estimateTrainMemory(full, { peftFsdp2WrapsRootOnly: false }).breakdown.weights,
    );
  });

  it("adds DeepSpeed's buckets and ZeRO-3's largest-module term", () => {
    const z3 = train({ method: "lora", sharding: "zero3", gpus: 8 });
    const fsdp = train({ method: "lora", sharding: "fsdp", gpus: 8 });
    expect(z3.buffers).toBeGreaterThan(fsdp.buffers);
  });

  it("gathers ZeRO-3's largest module with its 16-bit gradient only when it is trained", () => {
    // Qwen2.5-7B: lm_head (152,064 × 3,584) is the largest module and exceeds 5e8 parameters, so nothing is
    // retained for reuse. weights = partition / N + gathered, so gathered = 2 × weights(16 GPUs) − weights(8).
    const weights = (method: string, gpus: number, over = {}) =>
      estimateTrainMemory(
        // fused AdamW: no step temporary, so backward, with its gathered modules, stays the peak
        plan({
          model: "Qwen/Qwen2.5-7B",
          gpu: "h100-80g",
          gpus,
          sharding: "zero3",
          method,
          optimizer: "adamw_torch_fused",
        }),
        over,
      ).breakdown.weights;
    const largest = 152_064 * 3_584;
    // without prefetch (no live parameters beyond the module in use): the largest module, and its gradient if trained
    const none = { zero3MaxLiveParameters: 0 };
    expect(2 * weights("full", 16, none) - weights("full", 8, none)).toBeCloseTo(4 * largest, -2);
    expect(2 * weights("lora", 16, none) - weights("lora", 8, none)).toBeCloseTo(2 * largest, -2);
    // LLaMA-Factory's ds_z3 config: at the loss the prefetch keeps 1e9 elements gathered (bf16, lm_head among
    // them) plus the decoder-layer weight that crosses the bound (18,944 × 3,584); full tuning adds lm_head's gradient
    const crossing = 2 * 18_944 * 3_584;
    expect(2 * weights("full", 16) - weights("full", 8)).toBeCloseTo(1e9 * 2 + crossing + 2 * largest, -2);
    expect(2 * weights("lora", 16) - weights("lora", 8)).toBeCloseTo(1e9 * 2 + crossing, -2);
  });

  describe("FSDP1's allocator pools (Llama-2-7B LoRA on 2 GPUs)", () => {
    const layerBytes = (4 * 4_096 ** 2 + 3 * 4_096 * 11_008 + 2 * 4_096) * 2; // one decoder layer in bf16
    const rootBytes = (2 * 32_000 * 4_096 + 4_096) * 2; // embeddings, lm_head, final norm in bf16
    const fsdp = (input: Record<string, unknown>, over = {}) =>
      estimateTrainMemory(
        plan({
          model: "meta-llama/Llama-2-7b-hf",
          gpu: "rtx3090",
          gpus: 2,
          sharding: "fsdp",
          method: "lora",
          ...input,
        }),
        over,
      );
    const long = { microBatch: 8, seqLen: 4096 };

    it("gathers each unit as a full tensor beside the rank's own shard", () => {
      // with the shards offloaded to the CPU, the GPU holds only the gathered units: two layers and the whole root
      // (not the root less the rank's shard)
      const offloaded = fsdp({ ...long, offload: "params" });
      expect(offloaded.phase).toBe("backward");
      expect(offloaded.breakdown.weights).toBeCloseTo(2 * layerBytes + rootBytes, -1);
    });

    it("keeps one freed layer reserved on the all-gather stream (record_stream, limit_all_gathers); FSDP2 does not", () => {
      const frag = (input: Record<string, unknown>, over = {}) =>
        fsdp({ ...long, ...input }, over).breakdown.fragmentation;
      expect(frag({}) - frag({}, { fsdpPendingFreeUnits: 0 })).toBeCloseTo(layerBytes, -1);
      expect(frag({ sharding: "fsdp2" })).toBe(frag({ sharding: "fsdp2" }, { fsdpPendingFreeUnits: 0 }));
      expect(frag({ fsdpStrategy: "shard_grad_op" })).toBe(
        frag({ fsdpStrategy: "shard_grad_op" }, { fsdpPendingFreeUnits: 0 }),
      );
      // one rank: FSDP runs NO_SHARD and gathers nothing
      expect(frag({ gpus: 1 })).toBe(frag({ gpus: 1 }, { fsdpPendingFreeUnits: 0 }));
    });

    it("shows the wrap as the loading peak, and where a big-vocabulary root does not fit beside the shards", () => {
      const load = (input: Record<string, unknown>) =>
        estimateMemory(plan({ gpu: "rtx4090", gpus: 2, sharding: "fsdp", method: "qlora", ...input })).load;
      // Llama-2-7B: the shards (and the LoRA adapters' shards, 40 MB) + the root twice + the broadcast buckets, with
      // the bare context
      const small = load({ model: "meta-llama/Llama-2-7b-hf" });
      expect(small.fits).toBe(true);
      const wrap = 2 * rootBytes + Math.min(rootBytes, 500 * 1024 ** 2) + 512 * 1024 ** 2;
      expect(small.perGpuPeakBytes - small.weightsBytes).toBeGreaterThanOrEqual(wrap);
      expect(small.perGpuPeakBytes - small.weightsBytes).toBeLessThan(wrap + 64 * 1024 ** 2);
      // Qwen2.5-72B's root (152,064 × 8,192 × 2 in bf16, 4.6 GiB) wrapped on top of 19 GiB of 4-bit shards
      const big = load({ model: "Qwen/Qwen2.5-72B-Instruct" });
      expect(big.weightsBytes).toBeLessThan(22 * 1024 ** 3);
      expect(big).toMatchObject({ fits: false, oomWhileWrapping: true, oomAtFraction: 1 });
      // offloaded, each shard leaves for the CPU once made
      expect(
        load({ model: "Qwen/Qwen2.5-72B-Instruct", offload: "params" }).oomWhileWrapping,
      ).toBeUndefined();
    });

    it("keeps the wrap's transient reserved until training needs more: the root moved, broadcast and flattened", () => {
      // 512 tokens: the compute stream's own peak stays under what wrapping left cached, so reserved is the shards
      // + the root twice + two 250 MiB broadcast buckets (capped at the root), + the all-gather stream's pool
      const short = fsdp({ microBatch: 1, seqLen: 512 });
      const floor = 2 * rootBytes + Math.min(rootBytes, 2 * 250 * 1024 ** 2);
      expect(short.reservedBytes - short.breakdown.weights - layerBytes).toBeCloseTo(floor, -1);
      const noCache = fsdp({ microBatch: 1, seqLen: 512 }, { fsdpInitCacheKept: false });
      expect(noCache.reservedBytes).toBeLessThan(short.reservedBytes);
      // at 8 × 4,096 tokens the activations reuse that cache: the floor changes nothing
      expect(fsdp(long).reservedBytes).toBe(fsdp(long, { fsdpInitCacheKept: false }).reservedBytes);
    });
  });

  it("holds DeepSpeed's flattened 16-bit gradients and their fp32 copy together at the step", () => {
    // Qwen2.5-7B full fine-tuning on 8 GPUs: 7,615,616,512 / 8 parameters per partition (under ZeRO-3's 1e9
    // sub-group), `self.flatten(grads).to(fp32)`: 2 + 4 B each in bf16 training, 4 B in fp32 (`.to` is a no-op)
    const step = (sharding: string, precision: string, optimizer?: string) =>
      estimateTrainMemory(
        plan({
          model: "Qwen/Qwen2.5-7B",
          gpu: "h100-80g",
          gpus: 8,
          sharding,
          method: "full",
          seqLen: 256,
          precision,
          ...(optimizer === undefined ? {} : { optimizer }),
        }),
      );
    const partition = 7_615_616_512 / 8;
    for (const sharding of ["zero2", "zero3"]) {
      const bf16 = step(sharding, "bf16", "adamw_torch_fused");
      expect(bf16.phase).toBe("optimizer-step");
      expect(bf16.breakdown.buffers).toBeCloseTo(6 * partition, -1);
    }
    // the Trainer's foreach AdamW (LLaMA-Factory's default before torch 2.8) adds its temporary beside the fp32
    // gradient while the 16-bit gradients stay in their buffer: 4 + 4 B
    for (const sharding of ["zero2", "zero3"])
      expect(step(sharding, "bf16").breakdown.buffers).toBeCloseTo(8 * partition, -1);
    // Adafactor under DeepSpeed sees one flat 1-D partition: an unfactored fp32 second moment beside the fp32 master
    // copy, and its update and the update's negation beside the fp32 gradient at the step
    const adafactor = step("zero2", "bf16", "adafactor");
    expect(adafactor.breakdown.optimizer).toBeCloseTo((4 + 4) * partition, -1);
    expect(adafactor.breakdown.buffers).toBeCloseTo(12 * partition, -1);
    // FSDP1 shows each weight as a 1-D view of its shard: the same full second moment (and no master copy)
    expect(step("fsdp", "bf16", "adafactor").breakdown.optimizer).toBeCloseTo(4 * partition, -1);
    const fp32 = step("zero2", "fp32", "adamw_torch_fused");
    expect(fp32.phase).toBe("optimizer-step");
    expect(fp32.breakdown.buffers).toBeCloseTo(4 * partition, -1);
    expect(step("zero2", "fp32").breakdown.buffers).toBeCloseTo(8 * partition, -1);
    // transformers' default from torch 2.8 on is the fused AdamW
    const newer = estimateTrainMemory(
      plan({
        model: "Qwen/Qwen2.5-7B",
        gpu: "h100-80g",
        gpus: 8,
        sharding: "zero3",
        method: "full",
        seqLen: 256,
      }),
      { defaultOptimFused: true },
    );
    expect(newer.breakdown.buffers).toBeCloseTo(6 * partition, -1);
  });

  it("serves a request from the smallest cached block that holds it, else from a new segment", () => {
    const MiB = 1024 ** 2;
    expect(newSegmentBytes([], [{ alloc: 100 * MiB }])).toBe(100 * MiB);
    expect(newSegmentBytes([200 * MiB], [{ alloc: 100 * MiB }])).toBe(0);
    // blocks of different segments never merge: two free 60 MiB blocks cannot hold 100 MiB
    expect(newSegmentBytes([60 * MiB, 60 * MiB], [{ alloc: 100 * MiB }])).toBe(100 * MiB);
    // large requests are rounded up to 2 MiB
    expect(newSegmentBytes([], [{ alloc: 11 * MiB }])).toBe(12 * MiB);
    // DeepSpeed's step on an empty cache: the 2 GiB flattened gradients, their 4 GiB fp32 copy, then (the first
    // freed) foreach AdamW's 4 GiB temporary, which the freed 2 GiB block cannot hold
    const step = [{ alloc: 2 * GiB }, { alloc: 4 * GiB }, { free: 2 * GiB }, { alloc: 4 * GiB }];
    expect(newSegmentBytes([], step)).toBe(10 * GiB);
    // a cached 5 GiB block takes the 2 GiB tensor, gets it back (merged with its rest) and then holds the temporary
    expect(newSegmentBytes([5 * GiB], step)).toBe(4 * GiB);
    expect(newSegmentBytes([8 * GiB, 4 * GiB], step)).toBe(0);
  });

  it("reserves DeepSpeed's flat step tensors on top of what backward left cached, without expandable segments", () => {
    // Qwen3-8B full fine-tuning under ZeRO-3 on 8 A100s: 8,190,735,360 / 8 > 1e9 parameters per partition, so the
    // step runs sub-groups of 1e9: 2 GB flattened, 4 GB fp32 gradient, 4 GB foreach temporary. Backward's largest
    // cached blocks are fp32 logits of 2,048 × 151,936 × 4 B = 1.24 GB: none holds them.
    const input = { model: "Qwen/Qwen3-8B", gpu: "a100-80g", gpus: 8, sharding: "zero3", method: "full" };
    const p = plan(input);
    const defaultAllocator = { expandableSegments: false };
    const segmented = estimateTrainMemory(p, defaultAllocator);
    // llamafactory-cli's torchrun path sets expandable_segments: the step reuses what backward freed
    const expandable = estimateTrainMemory(p);
    expect(segmented.allocatedBytes).toBe(expandable.allocatedBytes);
    expect(segmented.phase).toBe("optimizer-step");
    const beyond = segmented.reservedBytes - expandable.reservedBytes;
    expect(beyond).toBeGreaterThan(0);
    expect(beyond).toBe(segmented.releasableBytes - expandable.releasableBytes);
    expect(segmented.releasableSources).toContain("deepspeed-step-segments");
    expect(expandable.releasableSources).not.toContain("deepspeed-step-segments");
    // backward's reserve + 10 GB of new segments (rounded to 2 MiB each): the step's own figure (its 8 GB of
    // tensors and their fragmentation) is what the default allocator exceeds
    const MiB2 = 2 * 1024 ** 2;
    const newSegments = [2e9, 4e9, 4e9].reduce((n, b) => n + Math.ceil(b / MiB2) * MiB2, 0);
    expect(newSegmentBytes([], [{ alloc: 2e9 }, { alloc: 4e9 }, { free: 2e9 }, { alloc: 4e9 }])).toBe(
      newSegments,
    );
    expect(segmented.reservedBytes).toBeGreaterThan(expandable.allocatedBytes + newSegments - 8e9);
    expect(segmented.reservedBytes - segmented.allocatedBytes).toBeGreaterThan(newSegments - 8e9 + 1e9);
    // pinned: 22.71 GiB allocated, 33.56 GiB reserved (docs/memory-model.md quotes it)
    expect(segmented.allocatedBytes / GiB).toBeCloseTo(22.71, 2);
    expect(segmented.reservedBytes / GiB).toBeCloseTo(33.56, 2);
    // the reserve beyond the allocation is cache: on a card with less room it fills the card, never more
    const tight = plan({
      ...input,
      gpu: "custom",
      gpuMemory: (expandable.deviceBytes + 2 * GiB) / GiB / 0.95,
    });
    const onTight = estimateTrainMemory(tight, defaultAllocator);
    expect(onTight.deviceBytes).toBeLessThanOrEqual(usableCapacityBytes(tight));
    expect(onTight.deviceBytes).toBeGreaterThan(expandable.deviceBytes);
    // ZeRO-3's all-gather stream keeps its own pool (overlap_comm): the step, on the default stream, cannot reuse
    // it, so the step's segments come on top of it and are the same with or without it
    const qwen7b = plan({
      model: "Qwen/Qwen2.5-7B",
      gpu: "h200",
      gpus: 2,
      sharding: "zero3",
      method: "full",
      seqLen: 4096,
    });
    const extra = (overlap: boolean) =>
      estimateTrainMemory(qwen7b, { ...defaultAllocator, zeroOverlapComm: overlap }).releasableBytes -
      estimateTrainMemory(qwen7b, { zeroOverlapComm: overlap }).releasableBytes;
    expect(
      estimateTrainMemory(qwen7b, { ...defaultAllocator, zeroOverlapComm: true }).releasableSources,
    ).toEqual(["zero3-gather-pool", "deepspeed-step-segments"]);
    expect(extra(true)).toBeGreaterThan(0);
    expect(extra(true)).toBe(extra(false));
    // LoRA's flat partition is small: cached activation blocks hold it
    const lora = plan({ ...input, method: "lora" });
    expect(
      estimateTrainMemory(lora, defaultAllocator).reservedBytes - estimateTrainMemory(lora).reservedBytes,
    ).toBeLessThan(0.05 * GiB);
  });

  it("counts ZeRO-3's gathered parameters as churn: gathered and freed module by module, they fragment", () => {
    const p = plan({
      model: "Qwen/Qwen2.5-7B",
      gpu: "h100-80g",
      gpus: 8,
      sharding: "zero3",
      method: "lora",
      seqLen: 4096,
    });
    const live = estimateTrainMemory(p);
    const none = estimateTrainMemory(p, { zero3MaxLiveParameters: 0 });
    expect(live.phase).toBe("backward");
    const moreGathered = live.breakdown.weights - none.breakdown.weights;
    // at the loss: 1e9 elements and the crossing MLP weight in place of lm_head alone
    expect(moreGathered).toBeCloseTo(1e9 * 2 + 2 * 18_944 * 3_584 - 2 * 152_064 * 3_584, -2);
    expect(live.breakdown.fragmentation - none.breakdown.fragmentation).toBeCloseTo(
      moreGathered * DEFAULT_ASSUMPTIONS.fragmentationOfTransient,
      -1,
    );
  });

  it("ZeRO-3 with an lm_head of 1e9 elements or more: no prefetch past it at the loss, the whole bound away from it", () => {
    // Qwen2.5-72B LoRA on 4 GPUs: lm_head 152,064 × 8,192 = 1.25e9 elements fills stage3_max_live_parameters alone
    const at = (seqLen: number, over = {}) =>
      estimateTrainMemory(
        plan({
          model: "Qwen/Qwen2.5-72B",
          gpu: "a100-80g",
          gpus: 4,
          sharding: "zero3",
          method: "lora",
          seqLen,
        }),
        over,
      );
    const none = { zero3MaxLiveParameters: 0 };
    // long rows peak at the loss, where only lm_head is gathered: what no prefetch gives
    expect(at(8192).breakdown.weights).toBe(at(8192, none).breakdown.weights);
    expect(at(8192).breakdown.logits).toBeGreaterThan(0);
    // short rows peak at the end of the forward, without logits, lm_head crossing the full bound of 1e9 elements
    const short = at(256);
    expect(short.breakdown.logits).toBe(0);
    expect(short.breakdown.weights - at(256, none).breakdown.weights).toBeCloseTo(1e9 * 2, -2);
    expect(short.deviceBytes).toBeGreaterThan(at(256, none).deviceBytes);
  });

  it("gathers a whole MoE block at once under ZeRO-3: LLaMA-Factory makes it a leaf module", () => {
    // Mixtral-8x7B: 8 experts × 3 × 4,096 × 14,336 and the router (8 × 4,096), 1.41e9 parameters, larger than
    // lm_head (32,000 × 4,096); without prefetch or reuse window, what does not shrink with the GPUs is that block
    const weights = (gpus: number) =>
      estimateTrainMemory(
        plan({ model: "mistralai/Mixtral-8x7B-v0.1", gpu: "h200", gpus, sharding: "zero3", method: "lora" }),
        { zero3MaxLiveParameters: 0, zero3MaxReuseDistance: 0 },
      ).breakdown.weights;
    expect(2 * weights(16) - weights(8)).toBeCloseTo((8 * 3 * 4_096 * 14_336 + 8 * 4_096) * 2, -2);
  });

  it("keeps the last layers gathered within stage3_max_reuse_distance of their backward use", () => {
    // Llama-2-7B: lm_head 32,000 × 4,096 = 131 M parameters; (1e9 − 2 × 131 M) / 3 stay gathered with
    // checkpointing, / 2 without, 2 B each. (Without the prefetch, whose live bound holds more than this.)
    const weights = (input: Record<string, unknown>, over = {}) =>
      estimateTrainMemory(
        plan({
          model: "meta-llama/Llama-2-7b-hf",
          gpu: "h100-80g",
          gpus: 8,
          sharding: "zero3",
          method: "lora",
          ...input,
        }),
        { zero3MaxLiveParameters: 0, ...over },
      ).breakdown.weights;
    const head = 32_000 * 4_096;
    for (const [ckpt, divisor] of [
      [true, 3],
      [false, 2],
    ] as const) {
      const retained =
        weights({ gradientCheckpointing: ckpt }) -
        weights({ gradientCheckpointing: ckpt }, { zero3MaxReuseDistance: 0 });
      expect(retained).toBeCloseTo(((1e9 - 2 * head) / divisor) * 2, -3);
    }
  });
});

describe("memory-efficient optimizers (GaLore, APOLLO, layer-mode BAdam)", () => {
  const llama8b = (input: Record<string, unknown>) =>
    estimateTrainMemory(
      plan({ model: "meta-llama/Meta-Llama-3-8B-Instruct", gpu: "h200", method: "full", ...input }),
    );
  /** Llama-3-8B: 128,256 × 4,096 embeddings and lm_head (untied), 2 norms per layer and a final one */
  const unprojected = 2 * 128_256 * 4_096 + (32 * 2 + 1) * 4_096;

  it("GaLore keeps two moments of each linear's rank-r gradient and its projector; the rest keeps AdamW states", () => {
    // per layer, rank 16: q, o 4096²; k, v 4096→1024; gate, up 4096→14336; down 14336→4096 — moments 16 × max(in,
    // out) × 2 states × 2 B, projector 16 × min(in, out) × 2 B
    const perLayer =
      2 * (16 * 4096 * 4 + 16 * 4096 * 2) +
      2 * (16 * 4096 * 4 + 16 * 1024 * 2) +
      3 * (16 * 14336 * 4 + 16 * 4096 * 2);
    const galore = llama8b({ precision: "pure_bf16", lowMemoryOptimizer: "galore" });
    expect(galore.breakdown.optimizer).toBe(unprojected * 4 + 32 * perLayer);
    // AdamW on the same plan: 4 B of states per parameter
    expect(llama8b({ precision: "pure_bf16" }).breakdown.optimizer).toBe(8_030_261_248 * 4);
  });

  it("GaLore in mixed precision keeps each fp32 projector's whole SVD factor, min(in, out)², alive", () => {
    const galore = llama8b({ lowMemoryOptimizer: "galore" });
    // fp32 moments 16 × max(in, out) × 8 B; factors 4096² (q, o, gate, up, down) and 1024² (k, v) × 4 B
    const perLayer = 16 * (4 * 4096 + 3 * 14336) * 8 + (5 * 4096 ** 2 + 2 * 1024 ** 2) * 4;
    expect(galore.breakdown.optimizer).toBe(unprojected * 8 + 32 * perLayer);
    // APOLLO's seeded projector has no SVD factor behind it
    expect(llama8b({ lowMemoryOptimizer: "apollo" }).breakdown.optimizer).toBeLessThan(
      galore.breakdown.optimizer - 10e9,
    );
  });

  it("Adam-mini keeps an fp32 first moment everywhere and AdamW's second moment for the embeddings only", () => {
    const mini = (input: Record<string, unknown>) =>
      llama8b({ lowMemoryOptimizer: "adam_mini", ...input }).breakdown.optimizer;
    const embeddings = 2 * 128_256 * 4_096;
    expect(mini({})).toBe(8_030_261_248 * 4 + embeddings * 4);
    // the moment is fp32 in pure bf16 too, where AdamW's states are bf16
    expect(mini({ precision: "pure_bf16" })).toBe(mini({}));
    // LoRA's adapters: the first moment only
    const lora = plan({ model: "meta-llama/Meta-Llama-3-8B-Instruct", gpu: "h200", method: "lora" });
    const adapters = estimateTrainMemory({ ...lora, lowMemoryOptimizer: "adam_mini" }).breakdown.optimizer;
    expect(adapters * 2).toBe(estimateTrainMemory(lora).breakdown.optimizer);
  });

  it("Muon keeps one momentum buffer per weight matrix and AdamW's two moments for the embeddings and lm_head", () => {
    const muon = (input: Record<string, unknown>) =>
      llama8b({ lowMemoryOptimizer: "muon", ...input }).breakdown.optimizer;
    const embeddings = 2 * 128_256 * 4_096;
    expect(muon({})).toBe((8_030_261_248 - embeddings) * 4 + embeddings * 8);
    expect(muon({ precision: "pure_bf16" })).toBe(muon({}) / 2);
    // under FSDP, LLaMA-Factory hands the 1-D shards to AdamW: AdamW's states (rule MUON_SHARDED)
    const fsdp = (o: string | undefined) =>
      estimateTrainMemory(
        plan({
          model: "meta-llama/Meta-Llama-3-8B-Instruct",
          gpu: "h200",
          gpus: 8,
          method: "full",
          sharding: "fsdp2",
          ...(o ? { lowMemoryOptimizer: o } : {}),
        }),
      ).breakdown.optimizer;
    expect(fsdp("muon")).toBe(fsdp(undefined));
  });

  it("Muon leaves fused 3-D experts and a LoRA copy of a tied lm_head to AdamW", () => {
    // Qwen3-VL-30B-A3B's experts are fused tensors in every transformers release: 48 layers × 128 experts
    const moe = plan({ model: "Qwen/Qwen3-VL-30B-A3B-Instruct", gpu: "h200", method: "full" });
    const t = moe.model.architecture.text;
    const m = t.moe as NonNullable<typeof t.moe>;
    const experts = m.moeLayers.length * m.numExperts * 3 * t.hiddenSize * m.expertIntermediateSize;
    const p = countParams(moe.model.architecture);
    const trainable = p.total - p.visionTower - p.projector;
    // fp32 (upcast) parameters: one moment each, a second one for the experts, embeddings and lm_head
    expect(estimateTrainMemory({ ...moe, lowMemoryOptimizer: "muon" }).breakdown.optimizer).toBe(
      trainable * 4 + (experts + p.embedTokens + p.lmHead) * 4,
    );
    // Llama-3.2-1B ties lm_head to the embeddings; additional_target trains a copy, which AdamW steps under Muon
    const tied = plan({
      model: "meta-llama/Llama-3.2-1B",
      gpu: "h200",
      method: "lora",
      additionalTarget: ["lm_head"],
    });
    const withHead = estimateTrainMemory({ ...tied, lowMemoryOptimizer: "muon" }).breakdown.optimizer;
    const without = estimateTrainMemory({ ...tied, additionalTarget: [], lowMemoryOptimizer: "muon" })
      .breakdown.optimizer;
    expect(withHead - without).toBe(128_256 * 2048 * 4 * 2);
  });

  it("grows GaLore's states with the rank, and prices APOLLO's the same way in pure bf16", () => {
    const opt = (input: Record<string, unknown>) =>
      llama8b({ precision: "pure_bf16", lowMemoryOptimizer: "galore", ...input }).breakdown.optimizer;
    expect(opt({ lowMemoryRank: 128 })).toBeGreaterThan(opt({ lowMemoryRank: 16 }));
    expect(opt({ lowMemoryOptimizer: "apollo" })).toBe(opt({}));
  });

  it("layer-wise GaLore holds one parameter's gradient at a time, not the model's", () => {
    const peak = (layerwise: boolean) =>
      llama8b({
        precision: "pure_bf16",
        lowMemoryOptimizer: "galore",
        lowMemoryLayerwise: layerwise,
        gradAccum: 1,
      }).allocatedBytes;
    // the gradients of every parameter but the largest (the embeddings) are never alive together; the peaks also
    // differ in where they fall (the end of backward against the loss), hence not the whole difference
    expect(peak(false) - peak(true)).toBeGreaterThan((8_030_261_248 - 128_256 * 4_096) * 2 * 0.8);
  });

  it("BAdam trains the largest decoder layer: 16-bit weights, its gradients, an fp32 copy and AdamW states", () => {
    const layer = 4096 * (4096 * 2 + 1024 * 2) + 3 * 4096 * 14336 + 2 * 4096; // 218,112,000
    const badam = llama8b({ lowMemoryOptimizer: "badam" });
    expect(badam.breakdown.weights).toBe(8_030_261_248 * 2);
    expect(badam.breakdown.optimizer).toBe(layer * (4 + 8));
    expect(badam.breakdown.gradients).toBe(layer * 2);
    // under ZeRO-3 (LLaMA-Factory's only distributed BAdam) DeepSpeed partitions that layer's states
    const z3 = estimateTrainMemory(
      plan({
        model: "meta-llama/Meta-Llama-3-8B-Instruct",
        gpu: "h200",
        gpus: 4,
        method: "full",
        sharding: "zero3",
        lowMemoryOptimizer: "badam",
      }),
    );
    expect(z3.breakdown.optimizer).toBe((layer * (4 + 8)) / 4);
    expect(badam.allocatedBytes).toBeLessThan(llama8b({}).allocatedBytes / 4);
  });
});

describe("the memory-efficient optimizers' own claims (their papers' abstracts)", () => {
  const fits = (input: Record<string, unknown>) =>
    estimateMemory(plan({ method: "full", ...input })).train.fits;
  it("BAdam: Llama 3-8B on one RTX 3090-24GB, Llama 3-70B on 4 × A100-80GB (arXiv 2404.02827)", () => {
    const llama8 = { model: "meta-llama/Meta-Llama-3-8B-Instruct", gpu: "rtx3090", seqLen: 1024 };
    expect(fits({ ...llama8, lowMemoryOptimizer: "badam" })).toBe(true);
    expect(fits(llama8)).toBe(false);
    const llama70 = {
      model: "meta-llama/Meta-Llama-3-70B-Instruct",
      gpu: "a100-80g",
      gpus: 4,
      sharding: "zero3",
      seqLen: 1024,
    };
    expect(fits({ ...llama70, lowMemoryOptimizer: "badam" })).toBe(true);
    expect(fits(llama70)).toBe(false);
  });
  it("GaLore: a 7B model on one RTX 4090 (24 GB) with 8-bit GaLore, layer by layer (arXiv 2403.03507)", () => {
    const llama7 = {
      model: "meta-llama/Llama-2-7b-hf",
      gpu: "rtx4090",
      precision: "pure_bf16",
      seqLen: 256,
      gradAccum: 1,
      optimizer: "adamw_8bit",
    };
    expect(
      fits({ ...llama7, lowMemoryOptimizer: "galore", lowMemoryRank: 1024, lowMemoryLayerwise: true }),
    ).toBe(true);
    expect(fits(llama7)).toBe(false);
  });
});

describe("ZeRO-3 with overlap_comm", () => {
  it("keeps the all-gather stream's pool at its high-water mark, as cache the card's room bounds", () => {
    // Qwen2.5-72B LoRA on 8 H200s at 8,192 tokens peaks at the loss with lm_head alone gathered, while the forward's
    // end gathered 1e9 elements more on the same stream
    const p = plan({
      model: "Qwen/Qwen2.5-72B",
      gpu: "h200",
      gpus: 8,
      sharding: "zero3",
      method: "lora",
      seqLen: 8192,
    });
    const apart = estimateTrainMemory(p, { zeroOverlapComm: true });
    const shared = estimateTrainMemory(p);
    expect(shared.releasableBytes).toBe(0);
    expect(apart.phase).toBe("backward");
    expect(apart.allocatedBytes).toBe(shared.allocatedBytes);
    expect(apart.releasableBytes).toBeCloseTo(2e9 * (1 + DEFAULT_ASSUMPTIONS.fragmentationOfTransient), -2);
    expect(apart.reservedBytes - shared.reservedBytes).toBe(apart.releasableBytes);
    // on a card with no room to spare, the cache is what the card leaves
    const tight = estimateTrainMemory(
      { ...p, gpu: { ...p.gpu, capacityBytes: shared.deviceBytes + 2 ** 20 } },
      {
        zeroOverlapComm: true,
      },
    );
    expect(tight.releasableBytes).toBeLessThanOrEqual(2 ** 20);
  });
});
