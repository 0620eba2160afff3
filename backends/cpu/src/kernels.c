/*
 * The opcode -> kernel table. Each kernel file defines one
 * `const sdf_kernel sdf_kernel_<name>` per op it implements.
 *
 * The convolution / matmul / Winograd kernels live in another engineer's
 * files; they are declared weak so the library links with or without them
 * (an absent one is simply a NULL entry: its opcode is reported unsupported).
 */
#include "internal.h"

#define WEAK __attribute__((weak, visibility("hidden")))

extern const sdf_kernel sdf_kernel_conv2d WEAK, sdf_kernel_wino_filter WEAK, sdf_kernel_wino_input WEAK,
    sdf_kernel_wino_gemm WEAK, sdf_kernel_wino_output WEAK, sdf_kernel_matmul WEAK;

extern const sdf_kernel sdf_kernel_bmm, sdf_kernel_attention, sdf_kernel_group_norm, sdf_kernel_layer_norm,
    sdf_kernel_unary, sdf_kernel_geglu, sdf_kernel_softmax, sdf_kernel_binary, sdf_kernel_scale, sdf_kernel_concat,
    sdf_kernel_upsample_nearest, sdf_kernel_timestep_embedding, sdf_kernel_permute, sdf_kernel_gather_rows,
    sdf_kernel_copy, sdf_kernel_slice, sdf_kernel_merge_low_rank;

static const sdf_kernel *const table[] = {
    &sdf_kernel_conv2d,      &sdf_kernel_wino_filter,     &sdf_kernel_wino_input,
    &sdf_kernel_wino_gemm,   &sdf_kernel_wino_output,     &sdf_kernel_matmul,
    &sdf_kernel_bmm,         &sdf_kernel_attention,       &sdf_kernel_group_norm,
    &sdf_kernel_layer_norm,  &sdf_kernel_unary,           &sdf_kernel_geglu,
    &sdf_kernel_softmax,     &sdf_kernel_binary,          &sdf_kernel_scale,
    &sdf_kernel_concat,      &sdf_kernel_upsample_nearest, &sdf_kernel_timestep_embedding,
    &sdf_kernel_permute,     &sdf_kernel_gather_rows,     &sdf_kernel_copy,
    &sdf_kernel_slice,       &sdf_kernel_merge_low_rank,
};

#define N_KERNELS (sizeof table / sizeof table[0])

const sdf_kernel *sdf_find_kernel(int32_t opcode) {
  for (size_t i = 0; i < N_KERNELS; i++) {
    const sdf_kernel *k = table[i];
    if (k && k->opcode == opcode && k->prepare && k->run_chunk) return k;
  }
  return NULL;
}

void sdf_kernel_names_json(char *buf, size_t len) {
  size_t o = (size_t)snprintf(buf, len, "[");
  int first = 1;
  for (int32_t opcode = 1; opcode < 64 && o < len; opcode++) {
    const sdf_kernel *k = sdf_find_kernel(opcode);
    if (!k) continue;
    o += (size_t)snprintf(buf + o, len - o, "%s\"%s\"", first ? "" : ",", k->name);
    first = 0;
  }
  if (o < len) snprintf(buf + o, len - o, "]");
}
