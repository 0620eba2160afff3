/** Prompt parsing: sd-webui attention syntax, 77-token windows with weights (stable-diffusion.cpp rules). */
export {
  applyTokenWeights,
  type AttentionPiece,
  BREAK_WEIGHT,
  type ParseOptions,
  parsePromptAttention,
  type PromptTokenizer,
  PromptWeightError,
  type TokenChunk,
  tokenizeWeighted,
  type TokenizeWeightedOptions,
  type WeightedTokens,
} from "./emphasis.ts";
