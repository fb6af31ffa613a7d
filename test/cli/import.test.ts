import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cli } from "../support/cli.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const EXAMPLE = join(
  import.meta.dirname,
  "../fixtures/llamafactory-examples/llama3_lora_sft_fsdp_qlora.yaml",
);

describe("tunefit import", () => {
  it("prints a builder script and says how many keys went through the escape hatch", () => {
    const r = cli(["import", EXAMPLE, "--gpu", "rtx4090", "--gpus", "2"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('import { emitFiles, PlanBuilder, writeFiles } from "tunefit";');
    expect(r.stdout).toContain(".qlora(");
    // kept keys and dropped ones are counted apart: a key the original leaves out is not "unmodelled"
    expect(r.stderr).toMatch(
      /tunefit import: \d+ keys? kept as the original writes them \(escape hatch `set`/,
    );
    expect(r.stderr).toMatch(
      /tunefit import: \d+ keys? tunefit would write that the original leaves out, dropped/,
    );
    expect(r.stderr).not.toContain("not modelled by tunefit): ");
  });

  it("without --gpu plans for a placeholder h100-80g and says so", () => {
    const r = cli(["import", EXAMPLE]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("PLACEHOLDER");
    expect(r.stderr).toContain("placeholder");
  });

  it("--out writes the file whole; an existing file only with --force", () => {
    const d = mkdtempSync(join(tmpdir(), "tunefit-import-cli-"));
    dirs.push(d);
    expect(cli(["import", EXAMPLE, "--out", "s/plan.ts"], d).code).toBe(0);
    expect(readFileSync(join(d, "s/plan.ts"), "utf8")).toContain("PlanBuilder.create()");
    const again = cli(["import", EXAMPLE, "--out", "s/plan.ts"], d);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("--force");
    expect(cli(["import", EXAMPLE, "--out", "s/plan.ts", "--force"], d).code).toBe(0);
    expect(existsSync(join(d, "s"))).toBe(true);
  });

  it("bad input is exit 2: no YAML, an unreadable one", () => {
    expect(cli(["import"]).code).toBe(2);
    expect(cli(["import", "nope.yaml"]).stderr).toContain("cannot read nope.yaml");
  });
});
