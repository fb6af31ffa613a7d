import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { fetchHubConfigs, hubIdsOf, hubOffline } from "../../src/cli/hub.ts";
import { cli, useTempDirs } from "../support/cli.ts";

// A published Mistral-7B-v0.3 config.json (test/fixtures/configs/SOURCES.md), served by a local stand-in for the
// Hub: no test reaches the network.
const mistral = JSON.parse(
  readFileSync(new URL("../fixtures/configs/mistral-7b-v0.3/config.json", import.meta.url), "utf8"),
) as Record<string, unknown>;

const requests: { url: string; headers: IncomingHttpHeaders }[] = [];
let server: Server;
let endpoint = "";

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push({ url: req.url ?? "", headers: req.headers });
    if (req.url === "/someone/new-model/resolve/main/config.json") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(mistral));
    } else if (req.url === "/someone/new-model/resolve/main/model.safetensors.index.json") {
      res.writeHead(200, { "content-type": "application/json" });
      const file = (k: number) => `model-0000${k}-of-00003.safetensors`;
      res.end(
        JSON.stringify({ metadata: {}, weight_map: { a: file(1), b: file(2), c: file(3), d: file(1) } }),
      );
    } else if (req.url === "/someone/single-file/resolve/main/config.json") {
      res.writeHead(200).end(JSON.stringify(mistral));
    } else if (req.url === "/someone/single-file/resolve/main/model.safetensors" && req.method === "HEAD") {
      res.writeHead(200).end();
    } else if (req.url === "/someone/gated-model/resolve/main/config.json") {
      res.writeHead(401).end();
    } else if (req.url === "/someone/broken-model/resolve/main/config.json") {
      res.writeHead(200).end("{ not json");
    } else res.writeHead(404).end();
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((done) => server.close(() => done())));

const tempDir = useTempDirs("tunefit-hub-");

describe("reading an unknown model's config.json from the Hub", () => {
  it("asks only for ids nothing local resolves: not catalog models, their copies, folders or quantized uploads", () => {
    const cwd = join(import.meta.dirname, "../fixtures/configs");
    expect(hubIdsOf(["plan", "--model", "someone/new-model", "--gpu", "h100"], cwd)).toEqual([
      "someone/new-model",
    ]);
    expect(hubIdsOf(["emit", "--model=someone/new-model"], cwd)).toEqual(["someone/new-model"]);
    expect(hubIdsOf(["plan", "--model", "Qwen/Qwen2.5-7B-Instruct"], cwd)).toEqual([]);
    expect(hubIdsOf(["plan", "--model", "NousResearch/Llama-2-7b-hf"], cwd)).toEqual([]); // a catalog model's copy
    expect(hubIdsOf(["plan", "--model", "TheBloke/Llama-2-7B-GPTQ"], cwd)).toEqual([]);
    expect(hubIdsOf(["plan", "--model", "./qwen3-8b"], cwd)).toEqual([]);
    expect(hubIdsOf(["plan", "--model", "a/b/c"], cwd)).toEqual([]);
    expect(hubIdsOf(["doctor", "train.yaml", "--model", "someone/new-model"], cwd)).toEqual([]);
  });

  it("asks doctor's model_name_or_path (or its override) when --model does not replace it", async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "train.yaml"),
      "model_name_or_path: someone/new-model\nstage: sft\ndo_train: true\nfinetuning_type: lora\ntemplate: mistral\ndataset: alpaca_en_demo\noutput_dir: saves/x\n",
    );
    expect(hubIdsOf(["doctor", "train.yaml", "--gpu", "h100"], dir)).toEqual(["someone/new-model"]);
    expect(
      hubIdsOf(["doctor", "train.yaml", "model_name_or_path=other/model", "--gpu", "h100"], dir),
    ).toEqual(["other/model"]);
    expect(hubIdsOf(["doctor", "missing.yaml", "--gpu", "h100"], dir)).toEqual([]);
    // flags before the YAML, a quoted override, a folder of that name under --launch-dir, --help
    expect(hubIdsOf(["doctor", "--gpu", "h100", "--json", "train.yaml"], dir)).toEqual(["someone/new-model"]);
    expect(hubIdsOf(["doctor", "train.yaml", 'model_name_or_path="other/model"'], dir)).toEqual([
      "other/model",
    ]);
    mkdirSync(join(dir, "run", "someone", "new-model"), { recursive: true });
    expect(hubIdsOf(["doctor", "train.yaml", "--launch-dir", "run"], dir)).toEqual([]);
    // import finds model folders under the current folder, as importTrainYaml resolves them
    expect(hubIdsOf(["import", "train.yaml", "--launch-dir", "run"], dir)).toEqual(["someone/new-model"]);
    expect(hubIdsOf(["doctor", "train.yaml", "--help"], dir)).toEqual([]);
    expect(hubIdsOf(["plan", "--model", "someone/new-model", "--help"], dir)).toEqual([]);
    const { configs } = await fetchHubConfigs(["someone/new-model"], { HF_ENDPOINT: endpoint });
    const report = cli(["doctor", "train.yaml", "--gpu", "h100", "--json"], dir, { hubConfigs: configs });
    expect(report.code).toBe(0);
    const json = JSON.parse(report.stdout) as { model: { id: string; params: { total: number } } };
    expect(json.model).toMatchObject({ id: "someone/new-model", params: { total: 7_248_023_552 } });
    // import writes the dimensions inline, saying where they came from
    expect(hubIdsOf(["import", "train.yaml", "--gpu", "h100"], dir)).toEqual(["someone/new-model"]);
    const script = cli(["import", "train.yaml", "--gpu", "h100"], dir, { hubConfigs: configs });
    expect(script.code).toBe(0);
    expect(script.stdout).toContain("read from the config.json of someone/new-model on the Hugging Face Hub");
    expect(script.stderr).not.toMatch(/not in the catalog/);
  });

  it("reads config.json with the token, and says why one could not be read", async () => {
    requests.length = 0;
    const got = await fetchHubConfigs(
      ["someone/new-model", "someone/gated-model", "someone/missing", "someone/broken-model"],
      { HF_ENDPOINT: `${endpoint}/`, HF_TOKEN: "hf_test" },
    );
    expect([...got.configs.keys()]).toEqual(["someone/new-model"]);
    // the shards: the distinct files of the safetensors index
    expect(got.configs.get("someone/new-model")).toEqual({ config: mistral, shards: 3 });
    expect(got.notes[0]).toMatch(/read config\.json of someone\/new-model from .* \(3 checkpoint shards\)/);
    expect(requests.map((r) => r.url)).toEqual([
      "/someone/new-model/resolve/main/config.json",
      "/someone/new-model/resolve/main/model.safetensors.index.json",
      "/someone/gated-model/resolve/main/config.json",
      "/someone/missing/resolve/main/config.json",
      "/someone/broken-model/resolve/main/config.json",
    ]);
    expect(requests.every((r) => r.headers.authorization === "Bearer hf_test")).toBe(true);
    expect(got.notes[1]).toMatch(/gated or private: set HF_TOKEN/);
    expect(got.notes[2]).toMatch(/no such repository/);
    expect(got.notes[3]).toMatch(/not valid JSON/);
  });

  it("counts a lone model.safetensors as one shard, and none where neither file answers", async () => {
    const got = await fetchHubConfigs(["someone/single-file"], { HF_ENDPOINT: endpoint });
    expect(got.configs.get("someone/single-file")?.shards).toBe(1);
  });

  it("stays offline when told to", async () => {
    requests.length = 0;
    for (const env of [{ HF_HUB_OFFLINE: "1" }, { TUNEFIT_OFFLINE: "true" }, { TRANSFORMERS_OFFLINE: "1" }]) {
      expect(hubOffline(env)).toBe(true);
      const got = await fetchHubConfigs(["someone/new-model"], { ...env, HF_ENDPOINT: endpoint });
      expect(got.configs.size).toBe(0);
    }
    expect(requests).toHaveLength(0);
    expect(hubOffline({ HF_HUB_OFFLINE: "0" })).toBe(false);
  });

  it("plans and emits the model under its hub id", async () => {
    const { configs } = await fetchHubConfigs(["someone/new-model"], { HF_ENDPOINT: endpoint });
    const plan = cli(
      ["plan", "--model", "someone/new-model", "--gpu", "h100", "--template", "mistral", "--json"],
      ".",
      {
        hubConfigs: configs,
      },
    );
    expect(plan.code).toBe(0);
    const json = JSON.parse(plan.stdout) as {
      model: { id: string; shards: number; params: { total: number } };
    };
    expect(json.model.id).toBe("someone/new-model");
    expect(json.model.shards).toBe(3);
    expect(json.model.params.total).toBe(7_248_023_552); // Mistral-7B-v0.3's safetensors total
    const out = tempDir();
    const emit = cli(
      ["emit", "--model", "someone/new-model", "--gpu", "h100", "--template", "mistral", "--out", out],
      ".",
      { hubConfigs: configs },
    );
    expect(emit.code).toBe(0);
    const yaml = parse(readFileSync(join(out, "train.yaml"), "utf8"), { version: "1.1" }) as Record<
      string,
      unknown
    >;
    expect(yaml.model_name_or_path).toBe("someone/new-model");
    // without the Hub's answer the id is unknown, as before
    expect(cli(["plan", "--model", "someone/new-model", "--gpu", "h100"]).code).toBe(2);
  });
});
