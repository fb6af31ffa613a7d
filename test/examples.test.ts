import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";

// seed.ts writes the best plan's bundle; keep it out of the working tree
let demoOut = "";
beforeAll(() => {
  demoOut = join(mkdtempSync(join(tmpdir(), "tunefit-demo-")), "out");
  process.env.TUNEFIT_DEMO_OUT = demoOut;
});
afterAll(() => {
  rmSync(join(demoOut, ".."), { recursive: true, force: true });
  delete process.env.TUNEFIT_DEMO_OUT;
});

afterEach(() => {
  vi.restoreAllMocks();
});

async function capture(file: string): Promise<string> {
  let out = "";
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  await import(`../examples/${file}`);
  vi.restoreAllMocks();
  return out;
}

describe("examples (type-checked by tsc, output pinned by goldens)", () => {
  const files = readdirSync(new URL("../examples", import.meta.url)).filter((f) => f.endsWith(".ts"));

  it("has the seed demo and at least three scripts", () => {
    expect(files).toEqual(
      expect.arrayContaining(["seed.ts", "single-gpu-qlora.ts", "a100x8-full-zero3.ts", "two-node-fsdp.ts"]),
    );
  });

  for (const file of files) {
    it(`${file} prints its golden output`, async () => {
      const out = await capture(file);
      await expect(out).toMatchFileSnapshot(`golden/examples/${file.replace(/\.ts$/, ".txt")}`);
    });
  }

  it("seed.ts tells the seed's story with the model's own numbers", async () => {
    const out = await capture("seed.ts?again");
    expect(out).toContain("73,405,560,320");
    expect(out).toContain("shard 7 of 38");
    expect(out).toMatch(/What fits/);
    // QLoRA with FSDP1: its numbers, and what the step itself needs beside FSDP1's wrap cache
    expect(out).toMatch(/3\. QLoRA with FSDP1[^\n]*\n {2}training peak per GPU {2}\d+\.\d GiB/);
    expect(out).toMatch(/the step needs \d+\.\d GiB/);
    // the bundle of the first recommendation, written twice (the second run replaces its own output)
    expect(out).toContain("5. Wrote the first plan's bundle");
    expect(existsSync(join(demoOut, "launch.sh"))).toBe(true);
    expect(readFileSync(join(demoOut, "train.yaml"), "utf8")).toContain(
      "model_name_or_path: Qwen/Qwen2-VL-72B-Instruct",
    );
  });
});
