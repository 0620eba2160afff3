import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { sharedTest, sharedUrl } from "../../tests/shared.ts";
import { decode } from "fast-png";
import { decodePngImage, encodePngImage, formatParameters, parseParameters, readPng, writePng } from "./png.ts";
import type { Image } from "../../models/types.ts";

function testImage(channels: 3 | 4, w = 5, h = 3): Image {
  const data = Uint8Array.from({ length: w * h * channels }, (_, i) => (i * 37 + 11) & 255);
  return { width: w, height: h, channels, data };
}

Deno.test("PNG round trip: pixels, parameters, graph (Latin-1 and UTF-8 text)", () => {
  const graph = { nodes: [{ id: "ckpt", type: "checkpoint", path: "sd15.safetensors" }], prompt: "日本の猫 🐱" };
  const parameters = formatParameters({
    prompt: "a lovely cat, (red hair:1.2)",
    negativePrompt: "blurry",
    steps: 4,
    sampler: "Euler",
    cfgScale: 7,
    seed: 42,
    width: 256,
    height: 256,
    model: "sd15-random-f16",
    rng: "cuda",
  });
  for (const channels of [3, 4] as const) {
    const img = testImage(channels);
    const png = encodePngImage(img, { parameters, graph, text: { Software: "sdflow" } });
    const back = decodePngImage(png);
    assertEquals(back.image, img);
    assertEquals(back.parameters, parameters);
    assertEquals(back.graph, graph);
    assertEquals(back.text.Software, "sdflow");
    // Plain PNG readers see the Latin-1 chunks as tEXt.
    assertEquals(decode(png).text.parameters, parameters);
  }
  // A prompt outside Latin-1 goes through iTXt and comes back intact.
  const p2 = formatParameters({
    prompt: "日本の猫",
    steps: 20,
    sampler: "Euler a",
    cfgScale: 7,
    seed: 1,
    width: 8,
    height: 8,
  });
  assertEquals(decodePngImage(encodePngImage(testImage(3), { parameters: p2 })).parameters, p2);
});

Deno.test("formatParameters: sd-webui infotext layout and quoting", () => {
  const s = formatParameters({
    prompt: "a cat",
    negativePrompt: "",
    steps: 4,
    sampler: "Euler",
    scheduler: "Karras",
    cfgScale: 7,
    seed: 42,
    width: 256,
    height: 256,
    model: "name",
    extra: { Note: "a, b" },
  });
  assertEquals(
    s,
    'a cat\nSteps: 4, Sampler: Euler, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 256x256, Model: name, Note: "a, b"',
  );
  const parsed = parseParameters(
    formatParameters({
      prompt: "line one\nline two",
      negativePrompt: "ugly",
      steps: 20,
      sampler: "DPM++ 2M",
      cfgScale: 6.5,
      seed: 12345678901n,
      width: 512,
      height: 768,
      clipSkip: 2,
    }),
  );
  assertEquals(parsed.prompt, "line one\nline two");
  assertEquals(parsed.negativePrompt, "ugly");
  assertEquals(parsed.fields, {
    "Steps": "20",
    "Sampler": "DPM++ 2M",
    "CFG scale": "6.5",
    "Seed": "12345678901",
    "Size": "512x768",
    "Clip skip": "2",
  });
  assertEquals(parseParameters(s).fields.Note, "a, b");
});

Deno.test("PNG files, grayscale and 16-bit inputs decode to 8-bit RGB(A)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const img = testImage(3);
    await writePng(`${dir}/a.png`, img, { parameters: "x\nSteps: 1, Sampler: Euler, CFG scale: 1" });
    const back = await readPng(`${dir}/a.png`);
    assertEquals(back.image, img);
    assert(back.parameters?.startsWith("x\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const { encode } = await import("fast-png");
  const gray16 = encode({ width: 2, height: 1, channels: 1, depth: 16, data: Uint16Array.of(0x1234, 0xff00) });
  assertEquals(decodePngImage(gray16).image, {
    width: 2,
    height: 1,
    channels: 3,
    data: Uint8Array.of(0x12, 0x12, 0x12, 0xff, 0xff, 0xff),
  });
});

const SD_CPP_PNG = "reference/sd15-random/a_256_euler_4.png";

Deno.test({
  ...sharedTest(
    "decodes stable-diffusion.cpp's reference PNG to the published pixel hash and its parameters",
    SD_CPP_PNG,
  ),
  fn: async () => {
    const { image, parameters } = decodePngImage(await Deno.readFile(sharedUrl(SD_CPP_PNG)));
    assertEquals([image.width, image.height, image.channels], [256, 256, 3]);
    const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", Uint8Array.from(image.data)));
    assertEquals(
      Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join(""),
      "35366afac8441a412bd1a7a776874c98097ca9f636b78d13e63aee14fd9ea5f3",
    );
    // sd.cpp writes its infotext into a tEXt chunk named "parameters": prompt line, then the settings.
    assert(parameters !== undefined, "the reference PNG's parameters chunk was not decoded");
    assertEquals(parameters.split("\n")[0], "a lovely cat");
    assertMatch(parameters, /\nSteps: 4, CFG scale: 7\.0+, .*Seed: 42, Size: 256x256, /);
  },
});
