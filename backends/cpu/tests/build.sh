#!/usr/bin/env bash
# Builds conv_harness (a development tool, not part of the library) from the
# kernel sources, with the same per-suffix flags as backends/build.ts.
# Cross build for the NEON path, run under qemu-user:
#   CC=aarch64-linux-gnu-gcc OUT_DIR=build-arm64 HARNESS=./conv_harness-arm64 ./build.sh
#   qemu-aarch64 -L /usr/aarch64-linux-gnu ./conv_harness-arm64 check
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../src"
out="${OUT_DIR:-$here/build}"
mkdir -p "$out"
base="-O3 -std=c11 -fPIC -Wall -Wextra -pthread -D_GNU_SOURCE"
objs=()
cc="${CC:-gcc}"
arch=$($cc -dumpmachine | cut -d- -f1)
for f in gemm gemm_scalar gemm_avx512 gemm_avx2 gemm_neon matmul conv conv_avx512 winograd winograd_gemm \
         winograd_avx512 winograd_avx2 winograd_neon quant quant_avx512; do
  [ -f "$src/$f.c" ] || continue
  flags=""
  case "$f" in
    *_avx512) [ "$arch" = x86_64 ] || continue
              flags="-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mfma -mf16c" ;;
    *_avx2) [ "$arch" = x86_64 ] || continue; flags="-mavx2 -mfma -mf16c" ;;
    *_neon) [ "$arch" = aarch64 ] || continue ;;
  esac
  $cc $base $flags -c "$src/$f.c" -o "$out/$f.o"
  objs+=("$out/$f.o")
done
$cc $base -c "$here/conv_harness.c" -o "$out/conv_harness.o"
$cc -o "${HARNESS:-$here/conv_harness}" "$out/conv_harness.o" "${objs[@]}" -lm -pthread
echo "built ${HARNESS:-$here/conv_harness} ($arch)"
