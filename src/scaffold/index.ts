// `tunefit init`: project scaffolding from the embedded templates.
export {
  BUNDLE_DIR,
  DEFAULT_SCAFFOLD,
  type InitOptions,
  initFiles,
  renderTemplate,
  SCAFFOLD_DATASET,
  SCAFFOLDS,
} from "./init.ts";
