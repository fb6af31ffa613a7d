// tunefit/codegen: TypeScript from LLaMA-Factory configs. A separate entry point, since it loads ts-morph.

export {
  type ImportHardware,
  type ImportOptions,
  type ImportResult,
  importTrainYaml,
  PLACEHOLDER_GPU,
} from "./import.ts";
