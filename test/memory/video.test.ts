import { describe, expect, it } from "vitest";
import { emitFiles } from "../../src/emit/bundle.ts";
import { TunefitError } from "../../src/errors.ts";
import {
  estimateTrainMemory,
  imagePatches,
  mediaSequenceTokens,
  videoPatches,
  visualTokens,
} from "../../src/memory/train.ts";
import { analyzePlan } from "../../src/plan/analyze.ts";
import { resolvePlan } from "../../src/plan/resolve.ts";
import type { PlanInput } from "../../src/schema/plan.ts";

/*
 * Videos in Qwen2-VL-family plans: LLaMA-Factory samples at most video_maxlen frames of at most video_max_pixels,
 * and the tower's 3-D patch embedding takes them in pairs (temporal_patch_size 2).
 */
const base: PlanInput = { model: "Qwen/Qwen2-VL-7B-Instruct", gpu: "a100-80g", seqLen: 4096 };
const plan = (extra: Partial<PlanInput> = {}) => resolvePlan({ ...base, ...extra }).plan;

/** The code and path of the usage error resolving `input` throws. */
function usageCode(run: () => unknown): { code: string; path: string } {
  try {
    run();
  } catch (e) {
    expect(e).toBeInstanceOf(TunefitError);
    const issue = (e as TunefitError).issues[0];
    return { code: issue?.code ?? "", path: issue?.path ?? "" };
  }
  throw new Error("expected a usage error");
}

describe("videos", () => {
  it("defaults to LLaMA-Factory's video_maxlen (128) and video_max_pixels (256 × 256)", () => {
    const p = plan({ videosPerSample: 1 });
    expect(p.videoFrames).toBe(128);
    expect(p.videoMaxPixels).toBe(65536);
    // pixels / patch², as for images (the processor's rounding to 28-pixel multiples would give 324 for a 256² frame):
    // 65,536 pixels are 334 patches of 14 × 14 per frame pair, 83 tokens after the 2 × 2 merge; 64 pairs
    expect(videoPatches(p)).toEqual({ patches: 64 * 334, tokens: 64 * 83 });
  });

  it("pads an odd frame count to pairs, and a video of 2k frames is k images of its frame size", () => {
    const odd = plan({ videosPerSample: 1, videoFrames: 15, videoMaxPixels: 200704 });
    const even = plan({ videosPerSample: 1, videoFrames: 16, videoMaxPixels: 200704 });
    expect(videoPatches(odd)).toEqual(videoPatches(even));
    const images = plan({ imagesPerSample: 8, imageMaxPixels: 200704 });
    expect(videoPatches(even).patches).toBe(8 * imagePatches(images).patches);
    expect(videoPatches(even).tokens).toBe(8 * imagePatches(images).tokens);
    // and the same tokens in the sequence
    expect(visualTokens(even)).toBe(visualTokens(images));
  });

  it("counts Qwen3-VL's 16-pixel patches, and the timestamp it writes before each frame pair", () => {
    const p = plan({ model: "Qwen/Qwen3-VL-4B-Instruct", videosPerSample: 2, videoFrames: 8 });
    // 65,536 / 256 = 256 patches per pair, 64 tokens; 4 pairs per video
    expect(videoPatches(p)).toEqual({ patches: 4 * 256, tokens: 4 * 64 });
    expect(visualTokens(p)).toBe(2 * 4 * 64);
    // "<0.2 seconds><|vision_start|>…<|vision_end|>" … "<3.2 seconds>…": 6 timestamp tokens and 2 markers a pair
    expect(mediaSequenceTokens(p)).toBe(2 * 4 * (64 + 8));
    // past 10 seconds a timestamp takes one digit more: 32 frames are 16 pairs at 0.2 … 15.2 s
    const long = plan({ model: "Qwen/Qwen3-VL-4B-Instruct", videosPerSample: 1, videoFrames: 32 });
    expect(mediaSequenceTokens(long) - visualTokens(long)).toBe(10 * 8 + 6 * 9);
    // Qwen2-VL marks a whole video (and each image) once
    const q2 = plan({ videosPerSample: 1, videoFrames: 8, imagesPerSample: 2, imageMaxPixels: 65536 });
    expect(mediaSequenceTokens(q2) - visualTokens(q2)).toBe(2 + 2 * 2);
  });

  it("adds the frames to a trained tower's saved activations, linearly in the frames", () => {
    const act = (frames: number, freezeVisionTower: boolean) =>
      estimateTrainMemory(plan({ videosPerSample: 1, videoFrames: frames, freezeVisionTower })).breakdown
        .activations;
    const none = estimateTrainMemory(plan({ freezeVisionTower: false })).breakdown.activations;
    const d16 = act(16, false) - none;
    const d32 = act(32, false) - none;
    expect(d16).toBeGreaterThan(0);
    // linear up to the one recomputed block, which grows with the frames too
    expect(d32 / d16).toBeGreaterThan(1.9);
    expect(d32 / d16).toBeLessThanOrEqual(2.0001);
    // a frozen tower saves nothing for backward
    expect(act(32, true)).toBeLessThan(act(32, false));
  });

  it("runs images and videos through the tower in two calls: what they save adds up, the recompute is the larger call's", () => {
    const act = (extra: Partial<PlanInput>) =>
      estimateTrainMemory(plan({ ...extra, freezeVisionTower: false })).breakdown.activations;
    const none = act({});
    const image = act({ imagesPerSample: 1, imageMaxPixels: 65536 });
    const video = act({ videosPerSample: 1, videoFrames: 32 });
    const both = act({ imagesPerSample: 1, imageMaxPixels: 65536, videosPerSample: 1, videoFrames: 32 });
    // the image adds its checkpointed block inputs; its one-block recompute hides under the video's larger one
    expect(both - video).toBeGreaterThan(0);
    expect(both - video).toBeLessThan(image - none);
  });

  it("stops a plan whose video tokens, with the markers around them, do not fit the cutoff", () => {
    const codes = (extra: Partial<PlanInput>) => analyzePlan({ ...base, ...extra }).issues.map((i) => i.code);
    expect(codes({ videosPerSample: 1 })).toContain("VIDEO_TOKENS_BEYOND_CUTOFF"); // 5,312 + 2 > 4,096
    expect(codes({ videosPerSample: 1, videoFrames: 64 })).not.toContain("VIDEO_TOKENS_BEYOND_CUTOFF");
    const issue = analyzePlan({ ...base, videosPerSample: 1 }).issues.find(
      (i) => i.code === "VIDEO_TOKENS_BEYOND_CUTOFF",
    );
    expect(issue?.message).toContain("5314 tokens with the markers around them");
    expect(issue?.hint).toContain("--seq-len above 5314");
    expect(issue?.severity).toBe("error");
  });

  it("keeps the image rule when a sample has videos too, and names the image flags where images take the room", () => {
    const input = {
      ...base,
      seqLen: 1024,
      imagesPerSample: 1,
      imageMaxPixels: 1_003_520,
      videosPerSample: 1,
      videoFrames: 4,
      videoMaxPixels: 16384,
    };
    const codes = analyzePlan(input)
      .issues.filter((i) => i.severity === "error")
      .map((i) => i.code);
    expect(codes).toContain("IMAGE_TOKENS_BEYOND_CUTOFF");
    expect(codes).not.toContain("VIDEO_TOKENS_BEYOND_CUTOFF");
    // the images fit, the videos overrun: the video rule, naming both
    const video = analyzePlan({ ...input, seqLen: 1300 }).issues.find(
      (i) => i.code === "VIDEO_TOKENS_BEYOND_CUTOFF",
    );
    expect(video?.hint).toContain("--image-max-pixels");
  });

  it("refuses videos for models whose videos it does not plan, naming the flag", () => {
    expect(
      usageCode(() => resolvePlan({ ...base, model: "Qwen/Qwen2.5-7B-Instruct", videosPerSample: 1 })),
    ).toEqual({
      code: "MODEL_TAKES_NO_VIDEO",
      path: "videosPerSample",
    });
    expect(usageCode(() => resolvePlan({ ...base, model: "google/gemma-3-4b-it", videoFrames: 8 }))).toEqual({
      code: "MODEL_TAKES_NO_VIDEO",
      path: "videoFrames",
    });
  });

  it("writes video_max_pixels and video_maxlen, and a demo dataset of frame lists as long as the plan's", () => {
    const p = plan({ videosPerSample: 2, videoFrames: 6, videoMaxPixels: 50176 });
    const files = emitFiles(p);
    const yaml = files.find((f) => f.path === "train.yaml")?.contents ?? "";
    expect(yaml).toMatch(/\nvideo_max_pixels: 50176\nvideo_maxlen: 6\n/);
    const info = JSON.parse(String(files.find((f) => f.path === "data/dataset_info.json")?.contents));
    expect(info.tunefit_demo.columns).toEqual({ messages: "messages", videos: "videos" });
    const rows = JSON.parse(String(files.find((f) => f.path === "data/tunefit_demo.json")?.contents));
    for (const row of rows) {
      expect(row.messages[0].content.startsWith("<video><video>")).toBe(true);
      expect(row.videos).toHaveLength(2);
      for (const video of row.videos) expect(video).toHaveLength(6);
    }
    // every frame it names is in the bundle, 224 × 224 (the largest square of 50,176 pixels)
    const frames = new Set(rows.flatMap((r: { videos: string[][] }) => r.videos.flat()));
    for (const f of frames) {
      const png = files.find((x) => x.path === `data/${f}`)?.contents as Uint8Array;
      expect(png).toBeInstanceOf(Uint8Array);
      const view = new DataView(png.buffer, png.byteOffset);
      expect([view.getUint32(16), view.getUint32(20)]).toEqual([224, 224]);
    }
    // a plan without videos writes neither key
    expect(emitFiles(plan()).find((f) => f.path === "train.yaml")?.contents).not.toContain("video_");
  });
});
