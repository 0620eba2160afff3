/**
 * Inpainting as stable-diffusion.cpp prepares it (`prepare_image_generation_latents`):
 * - the mask is read as one grey channel (stb's luminance, (77 R + 150 G + 29 B) >> 8), u8/255, rounded
 *   to 0 or 1: white (1) is repainted, black (0) kept;
 * - the latent mask takes, for each latent pixel, the largest mask value of its 8x8 block
 *   (`interpolate(..., NearestMax)`); inpainting models (9 input channels) then dilate it by a 3x3
 *   max pool;
 * - after every denoiser evaluation the prediction is blended: denoised·m + init·(1 − m), init being the
 *   encoded picture (so the kept area stays the picture's);
 * - inpainting models also get, concatenated to their input after the c_in scaling, the latent mask (1
 *   channel) and the encoding of the masked picture ((1 − m)·(img − 0.5) + 0.5: the repainted area grey),
 *   5 channels, the same for the conditional and unconditional passes.
 */

import type { HostTensor, Image } from "./types.ts";

/** A mask that does not fit the picture. */
export class MaskError extends Error {
  override name = "MaskError";
}

/** The mask at pixel resolution, 0 or 1 per pixel (row-major). */
export function pixelMask(mask: Image, width: number, height: number): Uint8Array {
  if (mask.width !== width || mask.height !== height) {
    throw new MaskError(`the mask is ${mask.width}x${mask.height} but the picture is ${width}x${height}`);
  }
  const out = new Uint8Array(width * height);
  const ch = mask.channels;
  for (let i = 0; i < width * height; i++) {
    const grey = (mask.data[i * ch] * 77 + mask.data[i * ch + 1] * 150 + mask.data[i * ch + 2] * 29) >> 8;
    out[i] = Math.round(grey / 255);
  }
  return out;
}

/** The latent mask [h, w] (1 = repaint): the max of each factor x factor block, dilated by 3x3 when asked. */
export function latentMask(pixels: Uint8Array, width: number, height: number, factor: number, dilate: boolean) {
  const w = Math.ceil(width / factor), h = Math.ceil(height / factor);
  let m = new Float32Array(w * h);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = Math.floor(y / factor) * w + Math.floor(x / factor);
      if (pixels[y * width + x] > m[i]) m[i] = pixels[y * width + x];
    }
  }
  if (dilate) {
    const d = new Float32Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let v = 0;
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const yy = y + dy, xx = x + dx;
            if (yy >= 0 && yy < h && xx >= 0 && xx < w) v = Math.max(v, m[yy * w + xx]);
          }
        }
        d[y * w + x] = v;
      }
    }
    m = d;
  }
  return { width: w, height: h, data: m };
}

/**
 * The picture with the repainted area grey ((1 − m)·(img − 0.5) + 0.5). 0.5 is not an 8-bit level: it is
 * stored as 128, 0.002 (of the [0, 1] range) above sd.cpp's float value.
 */
export function maskedImage(image: Image, pixels: Uint8Array): Image {
  const ch = image.channels;
  const data = new Uint8Array(image.data);
  for (let i = 0; i < image.width * image.height; i++) {
    if (pixels[i]) { for (let c = 0; c < 3; c++) data[i * ch + c] = 128; }
  }
  return { ...image, data };
}

/** [1, 1 + C, h, w]: the latent mask then the masked picture's latent (an inpainting model's extra input). */
export function inpaintConcat(mask: { data: Float32Array }, masked: HostTensor): HostTensor {
  const [, c, h, w] = masked.shape;
  const out = new Float32Array((1 + c) * h * w);
  out.set(mask.data, 0);
  out.set(masked.data.subarray(0, c * h * w), h * w);
  return { shape: [1, 1 + c, h, w], data: out };
}

/** denoised·m + init·(1 − m), in place, per latent channel (float32 as sd.cpp). */
export function blendDenoised(denoised: Float32Array, init: Float32Array, mask: Float32Array): void {
  const plane = mask.length;
  const f = Math.fround;
  for (let i = 0; i < denoised.length; i++) {
    const m = mask[i % plane];
    denoised[i] = f(f(denoised[i] * m) + f(init[i] * f(1 - m)));
  }
}
