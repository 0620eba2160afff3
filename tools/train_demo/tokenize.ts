/**
 * Tokenizes the demo dataset's captions exactly as sdflow will at generation time (the CLIP BPE tokenizer
 * and the SD 1.x 77-token window: BOS, tokens, EOS, padded with EOS), so training and inference agree.
 *
 *   deno run -A tools/train_demo/tokenize.ts captions.json tokens.json
 *
 * captions.json: a JSON array of strings; tokens.json: {caption: [77 ids]}.
 */
import { ClipTokenizer } from "../../models/clip/tokenizer.ts";
import { tokenizeWeighted } from "../../models/prompt/emphasis.ts";

const [input, output] = Deno.args;
if (!input || !output) {
  console.error("usage: tokenize.ts captions.json tokens.json");
  Deno.exit(2);
}
const captions: string[] = JSON.parse(await Deno.readTextFile(input));
const tokenizer = await ClipTokenizer.load();
const out: Record<string, number[]> = {};
for (const caption of captions) {
  const { chunks } = tokenizeWeighted(caption, tokenizer, { padId: 49407 });
  if (chunks.length !== 1) throw new Error(`"${caption}" does not fit one 77-token window`);
  out[caption] = [...chunks[0].ids];
}
await Deno.writeTextFile(output, JSON.stringify(out));
console.log(`${captions.length} captions tokenized into ${output}`);
