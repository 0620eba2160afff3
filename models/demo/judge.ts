/**
 * Reads a generated picture and says whether it shows what a demo-model prompt says, from the pixels alone:
 * the background's colour, the object's colour, and (when the prompt says them) the object's position and
 * size. The palette and the geometry are those of the training pictures (tools/train_demo/scenes.py); the
 * judge knows nothing of the model.
 *
 * - Background: the median colour of the picture's outer frame (4 pixels), named by the nearest palette colour.
 * - Object: the pixels farther than {@link OBJECT_DISTANCE} from the background colour; their mean colour,
 *   named by the nearest palette colour; at least {@link MIN_OBJECT_FRACTION} of the picture.
 * - Position: the object's centroid in the named third (left: x < 0.4, right: x > 0.6, top: y < 0.4,
 *   bottom: y > 0.6, middle: both within 0.15 of the centre).
 * - Size: the object's area turned into a diameter with the shape's area factor, nearest (in log scale) of
 *   small 0.22, medium 0.36, big 0.56 of the side.
 * - Scenes ("a red ball on green grass under a blue sky"): the median colour of the top fifth names the sky,
 *   of the bottom eighth the ground, and the pixels far from both are the ball.
 */

export type Rgb = readonly [number, number, number];

/** The object and background colours of the training pictures. */
export const PALETTE: Readonly<Record<string, Rgb>> = {
  red: [214, 39, 40],
  green: [44, 160, 44],
  blue: [31, 90, 220],
  yellow: [245, 215, 30],
  orange: [250, 127, 14],
  purple: [128, 50, 170],
  pink: [247, 140, 200],
  white: [245, 245, 245],
  black: [20, 20, 20],
  gray: [128, 128, 128],
  brown: [120, 72, 30],
  cyan: [30, 200, 215],
};
const SKIES: Readonly<Record<string, Rgb>> = {
  blue: [110, 170, 235],
  gray: [150, 155, 160],
  orange: [250, 150, 60],
  black: [15, 15, 35],
};
const GROUNDS: Readonly<Record<string, Rgb>> = {
  "green grass": PALETTE.green,
  "yellow sand": [230, 200, 110],
  "white snow": PALETTE.white,
};
/** Area of each shape as a fraction of its diameter squared (as drawn by scenes.py). */
const AREA_FACTOR: Readonly<Record<string, number>> = {
  circle: Math.PI / 4,
  ball: Math.PI / 4,
  square: 0.85 * 0.85,
  triangle: (3 * Math.sqrt(3)) / 16,
  star: 0.5 * Math.sin(Math.PI / 5) * 0.45 * 10 / 4,
};
const SIZES: Readonly<Record<string, number>> = { small: 0.22, medium: 0.36, big: 0.56 };
const POSITIONS = ["on the left", "on the right", "at the top", "at the bottom", "in the middle"] as const;

/** RGB distance beyond which a pixel is not background. */
export const OBJECT_DISTANCE = 60;
/** Smallest object, as a fraction of the picture. */
export const MIN_OBJECT_FRACTION = 0.008;

/** What a prompt says. */
export interface PromptFacts {
  colour: string;
  shape: string;
  size?: string;
  position?: string;
  background?: string;
  ground?: string;
  sky?: string;
}

/** Reads the facts of a prompt of the demo grammar (tools/train_demo/scenes.py); throws on other prompts. */
export function parsePrompt(prompt: string): PromptFacts {
  const colours = Object.keys(PALETTE).join("|");
  const scene = new RegExp(`^an? (${colours}) ball on (${Object.keys(GROUNDS).join("|")}) under an? (\\w+) sky$`)
    .exec(prompt);
  if (scene) return { colour: scene[1], shape: "ball", ground: scene[2], sky: scene[3] };
  const m = new RegExp(
    `^an? (?:(small|big) )?(${colours}) (circle|ball|square|triangle|star)(?: (${POSITIONS.join("|")}))? ` +
      `on an? (${colours}) background$`,
  ).exec(prompt);
  if (!m) throw new Error(`"${prompt}" is not a prompt of the demo grammar`);
  return { size: m[1] ?? "medium", colour: m[2], shape: m[3], position: m[4], background: m[5] };
}

/** The verdict on one picture: `ok` and, when not, why. */
export interface Verdict {
  ok: boolean;
  seen: string;
  failures: string[];
}

function nearest(c: Rgb, table: Readonly<Record<string, Rgb>>): string {
  let best = "", bestD = Infinity;
  for (const [name, p] of Object.entries(table)) {
    const d = dist(c, p);
    if (d < bestD) [best, bestD] = [name, d];
  }
  return best;
}

function dist(a: Rgb, b: Rgb): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** Median colour of the pixels `pick` selects. */
function medianColour(rgb: Uint8Array, width: number, height: number, pick: (x: number, y: number) => boolean): Rgb {
  const ch: number[][] = [[], [], []];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!pick(x, y)) continue;
      for (let c = 0; c < 3; c++) ch[c].push(rgb[(y * width + x) * 3 + c]);
    }
  }
  return [median(ch[0]), median(ch[1]), median(ch[2])];
}

/** Pixels far from every colour in `away`: count, mean colour and centroid (fractions of the side). */
function objectPixels(rgb: Uint8Array, width: number, height: number, away: Rgb[]) {
  let n = 0, sx = 0, sy = 0;
  const sum = [0, 0, 0];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const c: Rgb = [rgb[i], rgb[i + 1], rgb[i + 2]];
      if (away.some((a) => dist(c, a) <= OBJECT_DISTANCE)) continue;
      n++;
      sx += x + 0.5;
      sy += y + 0.5;
      for (let k = 0; k < 3; k++) sum[k] += c[k];
    }
  }
  const mean: Rgb = n ? [sum[0] / n, sum[1] / n, sum[2] / n] : [0, 0, 0];
  return { fraction: n / (width * height), mean, cx: n ? sx / n / width : 0, cy: n ? sy / n / height : 0 };
}

/** Judges an RGB picture (`width * height * 3` bytes) against a prompt of the demo grammar. */
export function judge(rgb: Uint8Array, width: number, height: number, prompt: string): Verdict {
  const facts = parsePrompt(prompt);
  const failures: string[] = [];
  const seen: string[] = [];
  let away: Rgb[];
  if (facts.sky !== undefined) {
    const sky = medianColour(rgb, width, height, (_x, y) => y < height / 5);
    const ground = medianColour(rgb, width, height, (_x, y) => y >= height - height / 8);
    const [skyName, groundName] = [nearest(sky, SKIES), nearest(ground, GROUNDS)];
    seen.push(`${skyName} sky`, groundName);
    if (skyName !== facts.sky) failures.push(`sky is ${skyName}, not ${facts.sky}`);
    if (groundName !== facts.ground) failures.push(`ground is ${groundName}, not ${facts.ground}`);
    away = [sky, ground];
  } else {
    const frame = 4;
    const bg = medianColour(
      rgb,
      width,
      height,
      (x, y) => x < frame || y < frame || x >= width - frame || y >= height - frame,
    );
    const bgName = nearest(bg, PALETTE);
    seen.push(`${bgName} background`);
    if (bgName !== facts.background) failures.push(`background is ${bgName}, not ${facts.background}`);
    away = [bg];
  }
  const obj = objectPixels(rgb, width, height, away);
  if (obj.fraction < MIN_OBJECT_FRACTION) {
    failures.push(`no object (${(obj.fraction * 100).toFixed(1)}% of the pixels differ from the background)`);
    return { ok: false, seen: seen.join(", "), failures };
  }
  const colour = nearest(obj.mean, PALETTE);
  seen.push(
    `${colour} object at (${obj.cx.toFixed(2)}, ${obj.cy.toFixed(2)}) covering ${(obj.fraction * 100).toFixed(1)}%`,
  );
  if (colour !== facts.colour) failures.push(`object is ${colour}, not ${facts.colour}`);
  if (facts.position !== undefined) {
    const { cx, cy } = obj;
    const ok = {
      "on the left": cx < 0.4,
      "on the right": cx > 0.6,
      "at the top": cy < 0.4,
      "at the bottom": cy > 0.6,
      "in the middle": Math.abs(cx - 0.5) < 0.15 && Math.abs(cy - 0.5) < 0.15,
    }[facts.position];
    if (!ok) failures.push(`object is not ${facts.position}`);
  }
  if (facts.size !== undefined) {
    const diameter = Math.sqrt(obj.fraction / AREA_FACTOR[facts.shape]);
    const size = Object.entries(SIZES).reduce((a, b) =>
      Math.abs(Math.log(diameter / b[1])) < Math.abs(Math.log(diameter / a[1])) ? b : a
    )[0];
    if (size !== facts.size) {
      failures.push(`object looks ${size} (diameter ${diameter.toFixed(2)}), not ${facts.size}`);
    }
  }
  return { ok: failures.length === 0, seen: seen.join(", "), failures };
}
