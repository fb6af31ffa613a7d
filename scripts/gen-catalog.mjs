#!/usr/bin/env node
// Regenerates the built-in catalogs from the reference data set (models.json, gpus.json and
// llamafactory-catalog.json):
//   src/catalog/data/models.ts  — architectures (dimensions only, never totals), ids, aliases, templates
//   src/catalog/data/gpus.ts    — GPU capacity as the card reports it, precision support, throughput
//   src/catalog/data/llamafactory.ts — optimizer names and chat templates LLaMA-Factory accepts
//   src/catalog/data/layer-classes.ts — the decoder-layer and vision-block classes FSDP wraps
//   test/fixtures/catalog-expected.json — the reference parameter counts the tests compare against
//
// Models beyond models.json come from scripts/data/extra-models.json, GPUs beyond gpus.json from
// scripts/data/extra-gpus.json (same formats, kept in this repo).
// Usage: node scripts/gen-catalog.mjs [--from DIR]   (DIR defaults to ../shared/reference)
// The reference files cite their upstream sources (Hugging Face config.json copies, safetensors totals,
// LLaMA-Factory at commit ff6d4d12ee); the generated files keep those citations.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const fromIdx = process.argv.indexOf("--from");
const from = resolve(root, fromIdx > 0 ? process.argv[fromIdx + 1] : "../shared/reference");
const read = (name) => JSON.parse(readFileSync(join(from, name), "utf8"));

const modelsRef = read("models.json");
// Popular checkpoints of supported families that models.json does not carry, in its format (kept in this repo).
const extraData = JSON.parse(readFileSync(join(root, "scripts/data/extra-models.json"), "utf8"));
const extraModels = extraData.models;
// Checkpoints with a catalog model's exact dimensions (fine-tunes, continued pre-training), by catalog hub id.
const { _about: _, ...sameArchitectureIds } = extraData.same_architecture_ids ?? {};
const allModels = [...modelsRef.models, ...extraModels];
const gpusRef = read("gpus.json");
const lfCatalog = read("llamafactory-catalog.json");

// ---------------------------------------------------------------- architectures

function range(n) {
  return Array.from({ length: n }, (_, i) => i);
}

function moeOf(m) {
  const c = m.config;
  const moe = m.moe;
  if (!moe) return null;
  const L = c.num_hidden_layers;
  if (m.model_type === "mixtral") {
    return {
      numExperts: moe.num_local_experts,
      expertsPerToken: moe.num_experts_per_tok,
      expertIntermediateSize: c.intermediate_size,
      sharedExpertIntermediateSize: 0,
      sharedExpertGate: false,
      routerBias: false,
      moeLayers: range(L),
    };
  }
  if (m.model_type === "qwen3_moe" || m.model_type === "qwen2_moe" || m.model_type === "qwen3_vl_moe") {
    const step = moe.decoder_sparse_step ?? 1;
    const only = new Set(moe.mlp_only_layers ?? []);
    return {
      numExperts: moe.num_experts,
      expertsPerToken: moe.num_experts_per_tok,
      expertIntermediateSize: moe.moe_intermediate_size,
      sharedExpertIntermediateSize: moe.shared_expert_intermediate_size ?? 0,
      sharedExpertGate: (moe.shared_expert_intermediate_size ?? 0) > 0,
      routerBias: false,
      moeLayers: range(L).filter((i) => !only.has(i) && (i + 1) % step === 0),
    };
  }
  if (m.model_type === "deepseek_v2" || m.model_type === "deepseek_v3") {
    const freq = moe.moe_layer_freq ?? 1;
    return {
      numExperts: moe.n_routed_experts,
      expertsPerToken: moe.num_experts_per_tok,
      expertIntermediateSize: moe.moe_intermediate_size,
      sharedExpertIntermediateSize: (moe.n_shared_experts ?? 0) * moe.moe_intermediate_size,
      sharedExpertGate: false,
      routerBias: moe.topk_method === "noaux_tc",
      moeLayers: range(L).filter((i) => i >= moe.first_k_dense_replace && i % freq === 0),
    };
  }
  throw new Error(`no MoE mapping for ${m.key}`);
}

/** A SigLIP tower's dimensions (Gemma 3's, MiniCPM-V's). */
function siglipTower(v) {
  return {
    numLayers: v.num_hidden_layers,
    hiddenSize: v.hidden_size,
    intermediateSize: v.intermediate_size,
    numHeads: v.num_attention_heads,
    inChannels: v.num_channels,
    imageSize: v.image_size,
    patchSize: v.patch_size,
  };
}

function visionOf(m) {
  const v = m.vision;
  if (!v) return null;
  switch (m.model_type) {
    case "qwen2_vl":
      return {
        kind: "qwen2_vl",
        depth: v.depth,
        embedDim: v.embed_dim,
        mlpHiddenSize: v.embed_dim * v.mlp_ratio,
        numHeads: v.num_heads,
        inChannels: v.in_channels,
        patchSize: v.patch_size,
        temporalPatchSize: v.temporal_patch_size,
        spatialMergeSize: v.spatial_merge_size,
        outHiddenSize: v.hidden_size_out,
      };
    case "qwen2_5_vl":
      return {
        kind: "qwen2_5_vl",
        depth: v.depth,
        hiddenSize: v.hidden_size,
        intermediateSize: v.intermediate_size,
        numHeads: v.num_heads,
        inChannels: v.in_channels,
        patchSize: v.patch_size,
        temporalPatchSize: v.temporal_patch_size,
        spatialMergeSize: v.spatial_merge_size,
        outHiddenSize: v.out_hidden_size,
      };
    case "qwen3_vl":
    case "qwen3_vl_moe":
      return {
        kind: "qwen3_vl",
        depth: v.depth,
        hiddenSize: v.hidden_size,
        intermediateSize: v.intermediate_size,
        numHeads: v.num_heads,
        inChannels: v.in_channels,
        patchSize: v.patch_size,
        temporalPatchSize: v.temporal_patch_size,
        spatialMergeSize: v.spatial_merge_size,
        outHiddenSize: v.out_hidden_size,
        numPositionEmbeddings: v.num_position_embeddings,
        deepstackLayers: v.deepstack_visual_indexes.length,
      };
    case "gemma3":
      return { kind: "siglip", ...siglipTower(v), mmTokensPerImage: v.mm_tokens_per_image };
    case "mllama":
      return {
        kind: "mllama",
        numLayers: v.num_hidden_layers,
        numGlobalLayers: v.num_global_layers,
        hiddenSize: v.hidden_size,
        intermediateSize: v.intermediate_size,
        numHeads: v.attention_heads,
        inChannels: v.num_channels,
        imageSize: v.image_size,
        patchSize: v.patch_size,
        maxNumTiles: v.max_num_tiles,
        maxAspectRatioId: v.max_aspect_ratio_id,
        visionOutputDim: v.vision_output_dim,
      };
    case "minicpmv":
      return {
        kind: "minicpmv",
        ...siglipTower(v),
        queryNum: v.query_num,
        sliceResolution: v.scale_resolution,
        maxSliceNums: v.max_slice_nums,
      };
    default:
      throw new Error(`no vision mapping for ${m.key}`);
  }
}

function architectureOf(m) {
  const c = m.config;
  const mla = m.mla
    ? {
        qLoraRank: m.mla.q_lora_rank,
        kvLoraRank: m.mla.kv_lora_rank,
        qkNopeHeadDim: m.mla.qk_nope_head_dim,
        qkRopeHeadDim: m.mla.qk_rope_head_dim,
        vHeadDim: m.mla.v_head_dim,
      }
    : null;
  const moe = moeOf(m);
  const allMoe = moe !== null && moe.moeLayers.length === c.num_hidden_layers;
  return {
    modelType: m.model_type,
    text: {
      vocabSize: c.vocab_size,
      embedRows: m.model_type === "mllama" ? c.vocab_size + 8 : c.vocab_size,
      hiddenSize: c.hidden_size,
      numLayers: c.num_hidden_layers,
      numHeads: c.num_attention_heads,
      numKvHeads: c.num_key_value_heads ?? c.num_attention_heads,
      headDim: mla ? mla.qkNopeHeadDim + mla.qkRopeHeadDim : c.head_dim_effective,
      intermediateSize: allMoe && m.model_type === "mixtral" ? 0 : c.intermediate_size,
      tieWordEmbeddings: c.tie_word_embeddings,
      qkvBias: c.attention_qkv_bias,
      oBias: c.attention_o_bias,
      mlpBias: c.mlp_bias,
      mlp: c.mlp_type.startsWith("gated") ? "gated" : "plain",
      norm: c.norm_type,
      normsPerLayer: c.norms_per_layer,
      qkNorm: c.qk_norm,
      crossAttentionLayers: c.cross_attention_layers ?? [],
      maxPositionEmbeddings: c.max_position_embeddings ?? null,
      moe,
      mla,
    },
    vision: visionOf(m),
  };
}

// ---------------------------------------------------------------- ids, aliases, templates

const lfByHub = new Map();
for (const [name, entry] of Object.entries(lfCatalog.models)) {
  lfByHub.set(entry.hub_id.toLowerCase(), { name, ...entry });
}

// Same checkpoint published under another organisation or repository name.
const renames = [
  [/^thudm\//, "zai-org/"],
  [/^meta-llama\/llama-3\.1-/, "meta-llama/meta-llama-3.1-"],
];
// Variants that share the architecture (instruct/chat/base of the same size).
// Qwen3's 2507 updates (Instruct-2507, Thinking-2507) keep their base model's shapes; only the context length and
// rope_theta change (Qwen3-4B: 40,960 → 262,144 positions), which the parameter count does not see.
const EXCLUDED_VARIANT = /(gptq|awq|int4|int8|-1m|-0324|distill|-128k|-fp8)/;
function familyKey(hubId) {
  let id = hubId.toLowerCase();
  for (const [re, to] of renames) id = id.replace(re, to);
  return id
    .replace(/^(qwen\/qwen3-.*)-(instruct|thinking)-2507$/, "$1")
    .replace(/-instruct/g, "")
    .replace(/-chat-hf$/, "-hf")
    .replace(/-(chat|it|pt|base)$/, "");
}
function renamed(hubId) {
  let id = hubId.toLowerCase();
  for (const [re, to] of renames) id = id.replace(re, to);
  return id;
}
// Both names of a renamed repository are accepted: the hub redirects the old one, and users write either (Meta's
// `meta-llama/Llama-3.1-8B-Instruct` is LLaMA-Factory's `meta-llama/Meta-Llama-3.1-8B-Instruct`; GLM-4 moved from
// THUDM to zai-org).
const spellings = [
  [/^meta-llama\/Meta-Llama-3\.1-/i, "meta-llama/Llama-3.1-"],
  [/^meta-llama\/Llama-3\.1-/i, "meta-llama/Meta-Llama-3.1-"],
  [/^THUDM\//i, "zai-org/"],
  [/^zai-org\//i, "THUDM/"],
];
function otherSpellings(hubId) {
  return spellings.filter(([re]) => re.test(hubId)).map(([re, to]) => hubId.replace(re, to));
}

// Checkpoint shard counts (model-0000k-of-0000N.safetensors) where a source states them.
const SHARDS = {
  "qwen/qwen2-vl-72b-instruct": {
    shards: 38,
    source: "Qwen2-VL-72B-Instruct loading log: 38 checkpoint shards",
  },
  "meta-llama/meta-llama-3-8b-instruct": {
    shards: 4,
    source: "loading log quoted in intel/neural-speed issue #251",
  },
  "baichuan-inc/baichuan2-7b-base": {
    shards: 2,
    source: "hub file list: pytorch_model-0000{1,2}-of-00002.bin",
  },
};

function templateRecord(id) {
  const entry = lfByHub.get(id.toLowerCase()) ?? lfByHub.get(renamed(id));
  return entry
    ? {
        defaultTemplate: entry.default_template,
        groupTemplate: entry.group_template,
        llamafactoryName: entry.name,
      }
    : null;
}

/** the other spelling → the id it was derived from (whose LLaMA-Factory template it takes) */
const spelledAs = new Map();
// ids a catalog model names itself: never another model's alias (Mixtral-8x22B's Instruct has its own vocabulary)
const ownIds = new Set(
  allModels.flatMap((m) =>
    [m.hub_id, ...(m.extra_ids ?? []), ...(sameArchitectureIds[m.hub_id] ?? [])].map((id) => renamed(id)),
  ),
);
const catalog = allModels.map((m) => {
  const explicit = [...(m.extra_ids ?? []), ...(sameArchitectureIds[m.hub_id] ?? [])];
  const keys = new Set([m.hub_id, ...explicit].map(familyKey));
  const aliases = [...explicit];
  const taken = new Set([m.hub_id, ...explicit].map((id) => id.toLowerCase()));
  for (const [hub, entry] of lfByHub) {
    if (taken.has(hub) || EXCLUDED_VARIANT.test(hub) || ownIds.has(renamed(hub))) continue;
    if (keys.has(familyKey(hub))) aliases.push(entry.hub_id);
  }
  const known = new Set([m.hub_id, ...aliases].map((id) => id.toLowerCase()));
  for (const id of [m.hub_id, ...aliases]) {
    for (const other of otherSpellings(id)) {
      if (known.has(other.toLowerCase())) continue;
      known.add(other.toLowerCase());
      aliases.push(other);
      spelledAs.set(other.toLowerCase(), id);
    }
  }
  aliases.sort();
  const ids = [m.hub_id, ...aliases].map((id) => {
    const t = templateRecord(id) ?? templateRecord(spelledAs.get(id.toLowerCase()) ?? id);
    const shard = SHARDS[id.toLowerCase()];
    return {
      id,
      defaultTemplate: t?.defaultTemplate ?? null,
      groupTemplate: t?.groupTemplate ?? null,
      llamafactoryName: t?.llamafactoryName ?? null,
      shards: shard?.shards ?? null,
    };
  });
  return {
    key: m.key,
    id: m.hub_id,
    ids,
    architecture: architectureOf(m),
    sources: m.arch_sources,
  };
});

for (const hubId of Object.keys(sameArchitectureIds)) {
  if (!allModels.some((m) => m.hub_id === hubId)) throw new Error(`same_architecture_ids: no model ${hubId}`);
}

// ---------------------------------------------------------------- GPUs

// Cards beyond gpus.json, in its format (kept in this repo).
const extraGpuData = JSON.parse(readFileSync(join(root, "scripts/data/extra-gpus.json"), "utf8"));
const extraGpus = extraGpuData.gpus;
// throughput figures gpus.json leaves empty, filled from the sources extra-gpus.json names
const { _about: __, ...throughput } = extraGpuData.throughput_overrides ?? {};
const gpus = [...gpusRef.gpus, ...extraGpus]
  .map((g) => {
    const t = throughput[g.id];
    if (!t) return g;
    if (g.dense_bf16_tflops != null) throw new Error(`throughput_overrides: ${g.id} already has a figure`);
    return { ...g, dense_bf16_tflops: t.dense_bf16_tflops, dense_fp16_tflops: t.dense_fp16_tflops };
  })
  .map((g) => ({
    id: g.id,
    name: g.name,
    vendor: g.vendor,
    memoryMib: g.memory_total_mib,
    computeCapability: g.compute_capability,
    bf16: g.bf16,
    fp8: g.fp8 ?? false,
    flashAttention2: g.flash_attention_2 ?? false,
    denseBf16Tflops: g.dense_bf16_tflops,
    denseFp16Tflops: g.dense_fp16_tflops,
    memoryBandwidthGBps: g.memory_bandwidth_gbps,
    // GPU-to-GPU bandwidth per direction in GB/s: NVLink's bidirectional total / 2 where the part has it, else PCIe.
    linkGBps:
      g.interconnect?.nvlink?.bandwidth_gbps != null
        ? g.interconnect.nvlink.bandwidth_gbps / 2
        : g.interconnect?.pcie?.gen
          ? ({ 3: 16, 4: 32, 5: 64 }[g.interconnect.pcie.gen] ?? null)
          : null,
    memorySource:
      g.sources?.memory_total_mib?.replace(
        /code-index \(find_string over public GitHub files\)/g,
        "public GitHub files",
      ) ?? null,
  }));

// ---------------------------------------------------------------- expected counts (tests only)

const expected = Object.fromEntries(
  allModels.map((m) => {
    const f = m.formula_params;
    return [
      m.hub_id,
      {
        total: f.total,
        text: f.text_total,
        vision: f.vision?.total ?? 0,
        embedTokens: f.embed_tokens,
        lmHead: f.lm_head,
        active: f.active_total ?? null,
        officialExact: m.official_params?.exact ?? null,
        checkpointExtras: f.checkpoint_extras ?? 0,
      },
    ];
  }),
);

// ---------------------------------------------------------------- write

const banner = (what) =>
  `// Generated by scripts/gen-catalog.mjs from the reference ${what}. Do not edit by hand.\n`;
function writeTs(path, header, name, type, data) {
  writeFileSync(
    join(root, path),
    `${banner(header)}import type { ${type} } from "../../schema/catalog.ts";\n\nexport const ${name}: readonly ${type}[] = ${JSON.stringify(data, null, 2)};\n`,
  );
}
writeTs(
  "src/catalog/data/models.ts",
  "models.json and scripts/data/extra-models.json (architectures) and llamafactory-catalog.json (LLaMA-Factory ff6d4d12ee: ids and templates)",
  "MODEL_RECORDS",
  "CatalogModelRecord",
  catalog,
);
writeTs("src/catalog/data/gpus.ts", "gpus.json", "GPU_RECORDS", "GpuRecord", gpus);
const lfArgs = read("llamafactory-args.json");
const templates = lfCatalog.templates.map((t) => ({
  name: t.name,
  multimodal: t.multimodal,
  // the plugin's placeholders: a template whose plugin has no video token stops on a video ("This model does not
  // support video input", mm_plugin.py _validate_input)
  video: typeof t.mm_plugin_tokens?.video_token === "string",
}));
// every id LLaMA-Factory registers (hub and ModelScope), lower-cased → [default template, group template]
const lfTemplates = {};
for (const entry of Object.values(lfCatalog.models)) {
  for (const id of [entry.hub_id, entry.modelscope_id]) {
    if (id) lfTemplates[id.toLowerCase()] = [entry.default_template ?? null, entry.group_template ?? null];
  }
}
const lfTemplatesSorted = Object.fromEntries(
  Object.entries(lfTemplates).sort(([a], [b]) => a.localeCompare(b)),
);
writeFileSync(
  join(root, "src/catalog/data/llamafactory.ts"),
  `${banner("llamafactory-args.json and llamafactory-catalog.json (LLaMA-Factory ff6d4d12ee)")}
/** Values LLaMA-Factory accepts for \`optim\` (transformers OptimizerNames). */
export const OPTIMIZER_NAMES: readonly string[] = ${JSON.stringify(lfArgs.enums["transformers.OptimizerNames"])};

/** Chat templates registered in data/template.py; multimodal = its mm_plugin is not "base"; video = its plugin has a video token. */
export const TEMPLATES: readonly { readonly name: string; readonly multimodal: boolean; readonly video: boolean }[] = ${JSON.stringify(templates, null, 2)};

/**
 * The chat templates of every checkpoint LLaMA-Factory registers (extras/constants.py register_model_group), by
 * lower-cased hub or ModelScope id: [its own template, its group's]. Models outside the catalog read from a
 * config.json take their template from here.
 */
export const LLAMAFACTORY_MODEL_TEMPLATES: Readonly<Record<string, readonly [string | null, string | null]>> = ${JSON.stringify(lfTemplatesSorted)};
`,
);
// FSDP auto-wrap classes per model type (layer-classes.json; transformers 4.57.6 and 5.18.0 class names agree).
// Baichuan's remote code names its layer by size: 7B `DecoderLayer`, 13B `BaichuanLayer` (hidden size 5120).
const layerRef = read("layer-classes.json").model_types;
const asList = (v) => (v === null ? [] : Array.isArray(v) ? v : [v]);
const layerClasses = Object.fromEntries(
  Object.entries(layerRef)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([type, v]) => {
      const decoder = v.decoder_layer_class;
      const byHidden = typeof decoder === "object" && !Array.isArray(decoder) && decoder !== null;
      return [
        type,
        {
          decoder: byHidden ? [] : asList(decoder),
          decoderByHiddenSize: byHidden ? { 4096: [decoder["7B"]], 5120: [decoder["13B"]] } : null,
          vision: asList(v.vision_block_class),
          trustRemoteCode: v.trust_remote_code === true,
        },
      ];
    }),
);
// gemma (Gemma 1) is native and not in the reference file; its layer class is GemmaDecoderLayer
// (transformers models/gemma/modeling_gemma.py).
layerClasses.gemma = {
  decoder: ["GemmaDecoderLayer"],
  decoderByHiddenSize: null,
  vision: [],
  trustRemoteCode: false,
};
// qwen3_vl is not in the reference file: transformers' models/qwen3_vl/modeling_qwen3_vl.py names its layers
// Qwen3VLTextDecoderLayer and Qwen3VLVisionBlock (Qwen3VLPreTrainedModel._no_split_modules).
layerClasses.qwen3_vl = {
  decoder: ["Qwen3VLTextDecoderLayer"],
  decoderByHiddenSize: null,
  vision: ["Qwen3VLVisionBlock"],
  trustRemoteCode: false,
};
layerClasses.qwen3_vl_moe = {
  decoder: ["Qwen3VLMoeTextDecoderLayer"],
  decoderByHiddenSize: null,
  vision: ["Qwen3VLMoeVisionBlock"],
  trustRemoteCode: false,
};
// qwen (Qwen-1's remote code) is not in the reference file: modeling_qwen.py's decoder layer is QWenBlock.
layerClasses.qwen = {
  decoder: ["QWenBlock"],
  decoderByHiddenSize: null,
  vision: [],
  trustRemoteCode: true,
};
// minicpmv (remote code) is not in the reference file: its language model is transformers' Qwen2 (MiniCPM-V 2.6)
// or Llama (MiniCPM-Llama3-V 2.5), chosen in src/catalog/layer-classes.ts; its tower is modeling_navit_siglip.py's
// SiglipEncoderLayer.
layerClasses.minicpmv = {
  decoder: [],
  decoderByHiddenSize: null,
  vision: ["SiglipEncoderLayer"],
  trustRemoteCode: true,
};
writeFileSync(
  join(root, "src/catalog/data/layer-classes.ts"),
  `${banner("layer-classes.json (transformers 4.57.6 / 5.18.0 modeling files; remote code for baichuan, chatglm, internlm2)")}
/** The classes FSDP wraps as units (fsdp_transformer_layer_cls_to_wrap), per model type. */
export const LAYER_CLASSES: Readonly<
  Record<
    string,
    {
      readonly decoder: readonly string[];
      readonly decoderByHiddenSize: Readonly<Record<string, readonly string[]>> | null;
      readonly vision: readonly string[];
      readonly trustRemoteCode: boolean;
    }
  >
> = ${JSON.stringify(layerClasses, null, 2)};
`,
);
writeFileSync(join(root, "test/fixtures/catalog-expected.json"), `${JSON.stringify(expected, null, 2)}\n`);
console.log(
  `wrote ${catalog.length} models (${catalog.reduce((n, m) => n + m.ids.length, 0)} ids), ${gpus.length} GPUs`,
);
