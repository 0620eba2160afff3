/** Samplers, sigma schedules, RNGs and the CompVis denoiser wrapper, as stable-diffusion.cpp runs them. */
export * from "./rng.ts";
export * from "./schedules.ts";
export * from "./samplers.ts";
export * from "./denoiser.ts";
