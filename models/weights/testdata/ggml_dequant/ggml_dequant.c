/* Harness for make_fixtures.ts: reads ggml blocks of type argv[1] on stdin, writes ggml's dequantize_row of
 * argv[2] elements as f32 on stdout. Built against stable-diffusion.cpp's ggml (see make_fixtures.ts). */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
void dequantize_row_q2_K(const void * x, float * y, int64_t k);
void dequantize_row_q3_K(const void * x, float * y, int64_t k);
void dequantize_row_q4_K(const void * x, float * y, int64_t k);
void dequantize_row_q5_K(const void * x, float * y, int64_t k);
void dequantize_row_q6_K(const void * x, float * y, int64_t k);
void dequantize_row_q4_0(const void * x, float * y, int64_t k);
void dequantize_row_q4_1(const void * x, float * y, int64_t k);
void dequantize_row_q5_0(const void * x, float * y, int64_t k);
void dequantize_row_q5_1(const void * x, float * y, int64_t k);
void dequantize_row_q8_0(const void * x, float * y, int64_t k);
int main(int argc, char **argv) {
  int64_t n = atoll(argv[2]);
  uint8_t *in = malloc(1 << 24); fread(in, 1, 1 << 24, stdin);
  float *y = malloc(n * 4);
  const char *t = argv[1];
  if (!strcmp(t, "q2_k")) dequantize_row_q2_K(in, y, n);
  else if (!strcmp(t, "q3_k")) dequantize_row_q3_K(in, y, n);
  else if (!strcmp(t, "q4_k")) dequantize_row_q4_K(in, y, n);
  else if (!strcmp(t, "q5_k")) dequantize_row_q5_K(in, y, n);
  else if (!strcmp(t, "q6_k")) dequantize_row_q6_K(in, y, n);
  else if (!strcmp(t, "q4_0")) dequantize_row_q4_0(in, y, n);
  else if (!strcmp(t, "q4_1")) dequantize_row_q4_1(in, y, n);
  else if (!strcmp(t, "q5_0")) dequantize_row_q5_0(in, y, n);
  else if (!strcmp(t, "q5_1")) dequantize_row_q5_1(in, y, n);
  else dequantize_row_q8_0(in, y, n);
  fwrite(y, 4, n, stdout);
  return 0;
}
