import { z } from "zod";
import { AccelerateFsdpConfig, DeepSpeedConfig, LlamaFactoryTrainYaml } from "./src/schema/targets/index.ts";

for (const s of [LlamaFactoryTrainYaml, DeepSpeedConfig, AccelerateFsdpConfig]) {
  try {
    const j = z.toJSONSchema(s, { io: "input", unrepresentable: "any" });
    console.log(JSON.stringify(j).length, Object.keys((j as any).properties ?? {}).length);
  } catch (e) {
    console.log("ERR", (e as Error).message.slice(0, 200));
  }
}
