// The config schemas of the tools tunefit writes for, derived from the reference key tables
// (scripts/gen-targets.mjs), and their checkers.
export * from "./accelerate.ts";
export * from "./deepspeed.ts";
export { describeKind, type KindSpec, type KindValue } from "./kinds.ts";
export * from "./llamafactory.ts";
