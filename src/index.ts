// tunefit: the public API. Explicit named exports only.

export {
  type Buildable,
  type FreezeOptions,
  type HardwareOptions,
  type LoraOptions,
  type MultimodalOptions,
  PlanBuilder,
  type QloraOptions,
  type TrainingOptions,
} from "./builder/plan-builder.ts";
export { architectureFromConfig, supportedModelTypes } from "./catalog/config-json.ts";
export {
  BYTES_PER_GIB,
  BYTES_PER_MIB,
  findGpu,
  gpuCapacityBytes,
  listGpus,
  suggestGpuIds,
} from "./catalog/gpus.ts";
export { type CatalogMatch, findCatalogModel, listCatalogModels, suggestModelIds } from "./catalog/models.ts";
export { loadModelDir, resolveModel } from "./catalog/resolve-model.ts";
export {
  ASSUMED_HOST_RAM_GIB,
  type Change,
  type DoctorInput,
  type DoctorReport,
  doctor,
  type Fix,
  STRATEGY_CHANGE_COST,
} from "./doctor/doctor.ts";
export { type FixBundleOptions, fixedYaml, fixFiles } from "./doctor/fix-bundle.ts";
export {
  applyOverrides,
  type DeepSpeedSource,
  parseOmegaConfYaml,
  readAccelerateConfig,
  readDeepSpeed,
  readTrainYamlFile,
} from "./doctor/read.ts";
export {
  type Hardware,
  type Launcher,
  MODELLED_KEYS,
  type SetupPlan,
  setupToPlan,
} from "./doctor/to-plan.ts";
export { accelerateConfig, accelerateMixedPrecision } from "./emit/accelerate.ts";
export { type EmitBundleOptions, type EmitFilesOptions, emitAnalysis, emitFiles } from "./emit/bundle.ts";
export { checkBundle } from "./emit/check-bundle.ts";
export { BUNDLE_FILES, DEMO_DATASET, usesDeepSpeed, usesFsdp } from "./emit/common.ts";
export { demoDatasetFiles } from "./emit/dataset.ts";
export { deepspeedConfig } from "./emit/deepspeed.ts";
export type { EmittedFile } from "./emit/files.ts";
export { pytorchJob } from "./emit/kubeflow.ts";
export { type EmitOptions, IMAGE_PLACEHOLDER, type TrainingSettings } from "./emit/options.ts";
export {
  HF_MODEL_TYPES,
  type HfModelConfig,
  hfModelConfig,
  PROBE_DEFAULT_STEPS,
  PROBE_FILE,
  PROBE_README_LINE,
  type ProbeFacts,
  type ProbeOptions,
  probeFacts,
  probeFiles,
  probeLauncher,
  probeScript,
  pythonJsonLiteral,
} from "./emit/probe.ts";
export { launchScript, shellQuote, slurmScript } from "./emit/scripts.ts";
export { formatYamlFloat, toJson, toYaml, type YamlOptions } from "./emit/serialize.ts";
export { trainYaml } from "./emit/train-yaml.ts";
export { TARGET_VERSIONS, VERSION_CHOICES } from "./emit/versions.ts";
export { type WriteFilesOptions, type WriteFilesResult, writeFiles } from "./emit/write-files.ts";
export {
  type ErrorKind,
  formatIssues,
  Issue,
  isUsageError,
  Severity,
  TunefitError,
  usageError,
} from "./errors.ts";
export { DEFAULT_ASSUMPTIONS, type MemoryAssumptions, withDefaults } from "./memory/assumptions.ts";
export { estimateMemory, type MemoryEstimate, usableCapacityBytes } from "./memory/estimate.ts";
export {
  estimateHostMemory,
  estimateInferenceMemory,
  estimateLoadMemory,
  type HostMemory,
  type InferenceMemory,
  type LoadMemory,
} from "./memory/load.ts";
export {
  estimateTrainMemory,
  imagePatches,
  type MemoryBreakdown,
  mediaSequenceTokens,
  optimizerBytesPerParam,
  type TrainMemory,
  videoPatches,
  visualTokens,
} from "./memory/train.ts";
export { type LinearGroup, linearModules, type ModuleOptions, type Region } from "./model/modules.ts";
export { countParams, type ParamBreakdown } from "./model/params.ts";
export { countTrainable, type TrainableBreakdown, type TrainableOptions } from "./model/trainable.ts";
export {
  type AnalyzeOptions,
  analyzePlan,
  analyzeResolvedPlan,
  check,
  type PlanAnalysis,
  type PlanReport,
  planReport,
} from "./plan/analyze.ts";
export {
  inputToArgs,
  maxFitting,
  type Recommendation,
  type RecommendOptions,
  type RecommendResult,
  recommend,
} from "./plan/recommend.ts";
export { PLAN_DEFAULTS, type Resolution, type ResolveOptions, resolvePlan } from "./plan/resolve.ts";
export { checkRules, PLAN_RULES, type PlanRule } from "./plan/rules.ts";
export {
  DEFAULT_STEP_TIME_ASSUMPTIONS,
  estimateStepTime,
  type StepTime,
  type StepTimeAssumptions,
} from "./plan/step-time.ts";
export {
  BUNDLE_DIR,
  DEFAULT_SCAFFOLD,
  type InitOptions,
  initFiles,
  renderTemplate,
  SCAFFOLD_DATASET,
  SCAFFOLDS,
} from "./scaffold/index.ts";
export {
  Architecture,
  MlaArchitecture,
  ModelType,
  MoeArchitecture,
  TextArchitecture,
  VisionArchitecture,
} from "./schema/architecture.ts";
export { CatalogModelRecord, GpuRecord } from "./schema/catalog.ts";
export { JSON_SCHEMA_TARGETS, type JsonSchemaTarget, jsonSchemaOf } from "./schema/json-schemas.ts";
export {
  Attention,
  FsdpStrategy,
  Method,
  ModelDefinition,
  Offload,
  Plan,
  PlanInput,
  Precision,
  planInputJsonSchema,
  QuantBits,
  QuantMethod,
  ResolvedGpu,
  ResolvedModel,
  Sharding,
} from "./schema/plan.ts";
export {
  AccelerateFsdp1Config,
  AccelerateFsdp2Config,
  AccelerateFsdpConfig,
  checkAccelerateFsdpConfig,
  checkDeepSpeedConfig,
  checkTrainYaml,
  DeepSpeedConfig,
  FSDP1_KEYS,
  FSDP2_KEYS,
  LLAMAFACTORY_KEYS,
  LlamaFactoryTrainYaml,
} from "./schema/targets/index.ts";
export { VERSION } from "./version.ts";
