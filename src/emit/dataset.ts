import { deflateSync } from "node:zlib";
import type { Plan } from "../schema/plan.ts";
import { DATASET_DIR, DEMO_DATASET } from "./common.ts";
import type { EmittedFile } from "./files.ts";
import { toJson } from "./serialize.ts";

/*
 * The demo dataset that makes a bundle run as written when the plan names no dataset: a few alpaca-format
 * samples (text models), or sharegpt samples with `<image>` and `<video>` placeholders, generated images of the
 * plan's image size and videos as lists of generated frames of its frame size, as many frames as the plan samples
 * (LLaMA-Factory takes a video given as a list of frame images as already sampled: mm_plugin.py
 * `_check_video_is_nested_images`), registered in data/dataset_info.json as LLaMA-Factory reads it.
 * Its only purpose is a smoke run of the launch; train on your own data with --dataset.
 */

const SAMPLES: readonly (readonly [string, string])[] = [
  ["Say hello.", "Hello! How can I help you today?"],
  ["What is 12 times 7?", "12 times 7 is 84."],
  ["Name the largest planet in the solar system.", "Jupiter is the largest planet in the solar system."],
  ["Give a synonym for 'quick'.", "A synonym for 'quick' is 'fast'."],
  ["Translate 'thank you' into French.", "'Thank you' in French is 'merci'."],
  ["What is the boiling point of water at sea level in Celsius?", "Water boils at 100 °C at sea level."],
  [
    "Write a haiku about autumn.",
    "Crisp leaves drift and fall,\ngold light on the quiet path,\nthe year exhales slow.",
  ],
  ["List three primary colours.", "Red, yellow and blue."],
];

const IMAGE_COLOURS: readonly (readonly [number, number, number])[] = [
  [200, 60, 60],
  [60, 160, 80],
  [60, 90, 200],
  [220, 180, 40],
];

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = (CRC_TABLE[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A solid-colour RGB PNG of the given size (deterministic bytes). */
export function solidPng(width: number, height: number, rgb: readonly [number, number, number]): Uint8Array {
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, no filter method, no interlace
  const row = new Uint8Array(1 + 3 * width);
  for (let x = 0; x < width; x++) row.set(rgb, 1 + 3 * x);
  const raw = new Uint8Array(row.length * height);
  for (let y = 0; y < height; y++) raw.set(row, y * row.length);
  const signature = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const parts = [
    signature,
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw, { level: 9 })),
    chunk("IEND", new Uint8Array()),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The side of the square demo image: the largest square within the plan's pixel budget, at least 28 px. */
export function demoImageSide(plan: Plan): number {
  return Math.max(28, Math.floor(Math.sqrt(plan.imageMaxPixels)));
}

/** The side of the square demo video frame: the largest square within the plan's frame budget, at least 28 px. */
export function demoFrameSide(plan: Plan): number {
  return Math.max(28, Math.floor(Math.sqrt(plan.videoMaxPixels)));
}

/** The demo dataset's files, or none when the plan names its own dataset. */
export function demoDatasetFiles(plan: Plan): EmittedFile[] {
  if (plan.dataset !== null) return [];
  const file = `${DEMO_DATASET}.json`;
  const vision = plan.model.architecture.vision !== null;
  const n = vision ? plan.imagesPerSample : 0;
  const m = vision ? plan.videosPerSample : 0;
  if (n === 0 && m === 0) {
    const info = { [DEMO_DATASET]: { file_name: file } };
    const rows = SAMPLES.map(([instruction, output]) => ({ instruction, input: "", output }));
    return [
      { path: `${DATASET_DIR}/dataset_info.json`, contents: toJson(info) },
      { path: `${DATASET_DIR}/${file}`, contents: toJson(rows) },
    ];
  }
  const images = IMAGE_COLOURS.map((_, i) => `images/demo_${i + 1}.png`);
  const frames = IMAGE_COLOURS.map((_, i) => `videos/frame_${i + 1}.png`);
  const info = {
    [DEMO_DATASET]: {
      file_name: file,
      formatting: "sharegpt",
      columns: {
        messages: "messages",
        ...(n > 0 ? { images: "images" } : {}),
        ...(m > 0 ? { videos: "videos" } : {}),
      },
      tags: { role_tag: "role", content_tag: "content", user_tag: "user", assistant_tag: "assistant" },
    },
  };
  const rows = SAMPLES.map(([prompt, answer], s) => ({
    messages: [
      { role: "user", content: `${"<image>".repeat(n)}${"<video>".repeat(m)}${prompt}` },
      { role: "assistant", content: answer },
    ],
    ...(n > 0 ? { images: Array.from({ length: n }, (_, k) => images[(s + k) % images.length]) } : {}),
    // each video: the plan's frames, cycling through the frame colours
    ...(m > 0
      ? {
          videos: Array.from({ length: m }, (_, k) =>
            Array.from({ length: plan.videoFrames }, (_, f) => frames[(s + k + f) % frames.length]),
          ),
        }
      : {}),
  }));
  const side = demoImageSide(plan);
  const frameSide = demoFrameSide(plan);
  return [
    { path: `${DATASET_DIR}/dataset_info.json`, contents: toJson(info) },
    { path: `${DATASET_DIR}/${file}`, contents: toJson(rows) },
    ...(n > 0
      ? IMAGE_COLOURS.map((rgb, i) => ({
          path: `${DATASET_DIR}/${images[i]}`,
          contents: solidPng(side, side, rgb),
        }))
      : []),
    ...(m > 0
      ? IMAGE_COLOURS.map((rgb, i) => ({
          path: `${DATASET_DIR}/${frames[i]}`,
          contents: solidPng(frameSide, frameSide, rgb),
        }))
      : []),
  ];
}
