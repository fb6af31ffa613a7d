import { defineConfig } from "tsup";

export default defineConfig([
  {
    entry: { index: "src/index.ts", codegen: "src/codegen/index.ts", cli: "src/cli/main.ts" },
    format: ["esm", "cjs"],
    dts: {
      entry: { index: "src/index.ts", codegen: "src/codegen/index.ts" },
      compilerOptions: { ignoreDeprecations: "6.0" }, // tsup injects baseUrl; TS 6 rejects it otherwise
    },
    target: "node20",
    platform: "node",
    sourcemap: true,
    clean: ["**/*", "!examples/**"], // the examples build below writes dist/examples in parallel
    shims: true,
  },
  {
    // Runnable examples (`npm start`); they import "tunefit", bundled from src through tsconfig paths.
    entry: { "examples/seed": "examples/seed.ts" },
    format: ["esm"],
    target: "node20",
    platform: "node",
    outDir: "dist",
    clean: false,
    shims: true,
  },
]);
