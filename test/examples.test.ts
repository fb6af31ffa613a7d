import { afterEach, describe, expect, it, vi } from "vitest";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("examples", () => {
  it("seed.ts (npm start) prints the seed case's accounting", async () => {
    let out = "";
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    await import("../examples/seed.ts");
    vi.restoreAllMocks();
    await expect(out).toMatchFileSnapshot("golden/examples/seed.txt");
    expect(out).toContain("73,405,560,320");
    expect(out).toContain("38 shards of ~3.86 GB");
  });
});
