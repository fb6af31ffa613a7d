#!/usr/bin/env node
import { fetchHubConfigs, hubIdsOf } from "./hub.ts";
import { run } from "./run.ts";

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const cwd = process.cwd();
  // a model only the Hugging Face Hub knows: its config.json is read before the (synchronous) CLI runs
  const hub = await fetchHubConfigs(hubIdsOf(argv, cwd), process.env);
  for (const note of hub.notes) process.stderr.write(`tunefit: ${note}\n`);
  process.exitCode = run(argv, {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    cwd,
    color: Boolean(process.stdout.isTTY) && !process.env.NO_COLOR,
    hubConfigs: hub.configs,
  });
}

void main();
