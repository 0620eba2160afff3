/**
 * 8-bit images to and from [1, 3, H, W] float tensors in [0, 1], as stable-diffusion.cpp converts them
 * for the networks that work in [0, 1] (ESRGAN, TAESD).
 */

import type { HostTensor, Image } from "./types.ts";

/** An 8-bit image as [1, 3, H, W] floats in [0, 1] (u8 / 255; alpha dropped), as sd.cpp's `sd_image_to_tensor`. */
export function imageToTensor(im: Image): HostTensor {
  const plane = im.width * im.height;
  const data = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let k = 0; k < 3; k++) data[k * plane + i] = im.data[i * im.channels + k] / 255;
  }
  return { shape: [1, 3, im.height, im.width], data };
}

/**
 * [1, 3, H, W] floats in [0, 1] to an 8-bit image as sd.cpp's `preprocessing_float_to_u8`:
 * v <= 0 -> 0, v >= 1 -> 255, else (uint8)(v * 255 + 0.5) in float arithmetic.
 */
export function tensorToImage(t: HostTensor): Image {
  const [, c, h, w] = t.shape;
  if (c !== 3) throw new RangeError(`expected 3 channels, got ${c}`);
  const plane = h * w;
  const px = new Uint8Array(plane * 3);
  for (let k = 0; k < 3; k++) {
    for (let i = 0; i < plane; i++) {
      const v = t.data[k * plane + i];
      px[i * 3 + k] = v <= 0 ? 0 : v >= 1 ? 255 : Math.trunc(Math.fround(Math.fround(v * 255) + 0.5));
    }
  }
  return { width: w, height: h, channels: 3, data: px };
}
