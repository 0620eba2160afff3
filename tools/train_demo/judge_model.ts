/**
 * Judges a trained checkpoint on 20 held-out prompts (captions scenes.is_held_out keeps out of training), each
 * generated through the CLI as a user would (euler, 20 steps, cfg 5, seed 1 + i) and read by models/demo/judge.ts:
 *
 *   deno run -A tools/train_demo/judge_model.ts FILE.safetensors [SIDE=64] [OUT_DIR=/tmp]
 */
import { decodePngImage } from "../../plugins/image/png.ts";
import { judge } from "../../models/demo/judge.ts";

const PROMPTS = [
  "a big yellow star on a purple background",
  "a small brown star on a yellow background",
  "a small cyan circle on the right on a gray background",
  "a brown triangle on a black background",
  "a white square on a brown background",
  "a big yellow star at the top on a white background",
  "an orange triangle at the bottom on a white background",
  "a cyan circle in the middle on a blue background",
  "a brown ball on yellow sand under a black sky",
  "a green star in the middle on a pink background",
  "a black ball at the bottom on a pink background",
  "a gray circle at the bottom on a yellow background",
  "a purple triangle on a yellow background",
  "a big cyan square on a yellow background",
  "a small yellow triangle in the middle on a gray background",
  "a black ball on yellow sand under an orange sky",
  "a small red triangle on the right on an orange background",
  "a small brown triangle on a white background",
  "a green star in the middle on a cyan background",
  "a big black square at the bottom on a red background",
];
const [model, size = "64", outDir = "/tmp"] = Deno.args;
if (!model) throw new Error("usage: judge_model.ts FILE.safetensors [SIDE] [OUT_DIR]");
let pass = 0;
for (const [i, p] of PROMPTS.entries()) {
  const out = `${outDir}/${i}.png`;
  const r = await new Deno.Command("deno", {
    args: [
      "task",
      "-q",
      "gen",
      "-m",
      model,
      "-p",
      p,
      "-W",
      size,
      "-H",
      size,
      "--steps",
      "20",
      "--cfg-scale",
      "5",
      "-s",
      String(1 + i),
      "-o",
      out,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (r.code !== 0) throw new Error(new TextDecoder().decode(r.stderr));
  const { image } = decodePngImage(await Deno.readFile(out));
  const v = judge(image.data, image.width, image.height, p);
  if (v.ok) pass++;
  console.log(v.ok ? "PASS" : "FAIL", p, "|", v.seen, "|", v.failures.join("; "));
}
console.log(`${pass}/${PROMPTS.length}`);
