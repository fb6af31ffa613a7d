// Library code must not print: the CLI writes through an injected io. Any console call fails the test.
import { afterEach, vi } from "vitest";

const methods = ["log", "info", "warn", "error", "debug"] as const;
let calls: string[] = [];
for (const m of methods) {
  vi.spyOn(console, m).mockImplementation((...args: unknown[]) => {
    calls.push(`console.${m}: ${args.map(String).join(" ")}`);
  });
}
afterEach(() => {
  const made = calls;
  calls = [];
  if (made.length > 0) throw new Error(`unexpected console output:\n${made.join("\n")}`);
});
