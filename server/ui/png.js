// Reads a PNG's text chunks in the browser (tEXt, zTXt, iTXt): sdflow keeps the graph that made a picture in
// `sdflow-graph` and the sd-webui infotext in `parameters`.

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const latin1 = (b) => Array.from(b, (c) => String.fromCharCode(c)).join("");

/** Text chunks of a PNG (keyword → text); throws an Error naming the problem for a file that is not a PNG. */
export async function pngText(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) throw new Error("not a PNG file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = {};
  let at = 8;
  while (at + 12 <= bytes.length) {
    const len = view.getUint32(at);
    const type = latin1(bytes.subarray(at + 4, at + 8));
    if (at + 12 + len > bytes.length) throw new Error(`the PNG is truncated (chunk ${type})`);
    const body = bytes.subarray(at + 8, at + 8 + len);
    at += 12 + len;
    if (type === "IEND") break;
    const nul = body.indexOf(0);
    if (nul < 0) continue;
    const key = latin1(body.subarray(0, nul));
    if (type === "tEXt") {
      text[key] = latin1(body.subarray(nul + 1));
    } else if (type === "zTXt") {
      text[key] = latin1(await inflate(body.subarray(nul + 2)));
    } else if (type === "iTXt") {
      const compressed = body[nul + 1] === 1;
      let p = nul + 3;
      p = body.indexOf(0, p) + 1; // language tag
      p = body.indexOf(0, p) + 1; // translated keyword
      if (p <= 0) continue;
      const raw = body.subarray(p);
      text[key] = new TextDecoder().decode(compressed ? await inflate(raw) : raw);
    }
  }
  return text;
}

/** The graph stored in a PNG made by sdflow, or an Error saying why there is none. */
export async function pngGraph(buffer) {
  const text = await pngText(buffer);
  const raw = text["sdflow-graph"];
  if (raw === undefined) {
    throw new Error("this PNG holds no sdflow graph (it was not made by sdflow, or without metadata)");
  }
  try {
    return { graph: JSON.parse(raw), parameters: text.parameters };
  } catch {
    throw new Error("the PNG's sdflow-graph chunk is not valid JSON");
  }
}
