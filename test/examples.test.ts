import { readdirSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";

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
  });
});
