/**
 * Fitting an input picture (a control image, a mask) to the generation size as
 * stable-diffusion.cpp's command line does when it loads one
 * (`load_image_common` in examples/common/media_io.cpp): crop the middle to the
 * target's aspect ratio, then resize with a box filter in linear light
 * (stb_image_resize with STBIR_FILTER_BOX and the sRGB colour space).
 *
 * The box filter here averages, for each output pixel, the input area it
 * covers (weighted by overlap), which is stb's box filter when shrinking; when
 * enlarging stb's kernel blends neighbours a little differently at pixel
 * boundaries, so enlarged pictures may differ from sd.cpp's by a level or two.
 */

import type { Image } from "../types.ts";

/** The centred crop of a `width` x `height` picture to the aspect ratio of `tw` x `th` (sd.cpp's arithmetic). */
export function centerCropRect(
  width: number,
  height: number,
  tw: number,
  th: number,
): { x: number; y: number; w: number; h: number } {
  const dst = Math.fround(tw / th);
  const src = Math.fround(width / height);
  let x = 0, y = 0, w = width, h = height;
  if (src > dst) {
    w = Math.trunc(Math.fround(height * dst));
    x = Math.trunc((width - w) / 2);
  } else if (src < dst) {
    h = Math.trunc(Math.fround(width / dst));
    y = Math.trunc((height - h) / 2);
  }
  return { x, y, w, h };
}

const toLinear = new Float32Array(256).map((_, i) => {
  const c = i / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
});

function toSrgb8(v: number): number {
  const c = v <= 0.0031308 ? v * 12.92 : 1.055 * v ** (1 / 2.4) - 0.055;
  return Math.min(255, Math.max(0, Math.round(c * 255)));
}

/** Overlap weights of each output index over the input indices along one axis (box filter). */
function boxWeights(inSize: number, outSize: number): { start: number; weights: number[] }[] {
  const scale = inSize / outSize;
  const out = [];
  for (let o = 0; o < outSize; o++) {
    const a = o * scale, b = (o + 1) * scale;
    const start = Math.floor(a);
    const weights: number[] = [];
    for (let i = start; i < Math.min(inSize, Math.ceil(b)); i++) {
      weights.push((Math.min(b, i + 1) - Math.max(a, i)) / scale);
    }
    out.push({ start, weights });
  }
  return out;
}

/** `image` cropped to the aspect of `width` x `height` and resized to it; the same object when it already fits. */
export function fitImage(image: Image, width: number, height: number): Image {
  if (image.width === width && image.height === height) return image;
  const crop = centerCropRect(image.width, image.height, width, height);
  const ch = image.channels;
  const xs = boxWeights(crop.w, width), ys = boxWeights(crop.h, height);
  const out = new Uint8Array(width * height * ch);
  // Horizontal pass into linear light, then vertical.
  const rows = new Float32Array(crop.h * width * ch);
  for (let y = 0; y < crop.h; y++) {
    const row = ((crop.y + y) * image.width + crop.x) * ch;
    for (let x = 0; x < width; x++) {
      const { start, weights } = xs[x];
      for (let c = 0; c < ch; c++) {
        let s = 0;
        for (let k = 0; k < weights.length; k++) {
          const v = image.data[row + (start + k) * ch + c];
          // Alpha is not a colour: averaged as stored.
          s += weights[k] * (c === 3 ? v / 255 : toLinear[v]);
        }
        rows[(y * width + x) * ch + c] = s;
      }
    }
  }
  for (let y = 0; y < height; y++) {
    const { start, weights } = ys[y];
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < ch; c++) {
        let s = 0;
        for (let k = 0; k < weights.length; k++) s += weights[k] * rows[((start + k) * width + x) * ch + c];
        out[(y * width + x) * ch + c] = c === 3 ? Math.min(255, Math.max(0, Math.round(s * 255))) : toSrgb8(s);
      }
    }
  }
  return { width, height, channels: ch, data: out };
}
