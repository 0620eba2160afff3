/*
 * sdf_buffer_advise (optional ABI): usage hints for a buffer.
 *
 * SDF_ADVICE_HUGE_PAGES: the buffer is large and about to be written through once (merged LoRA
 * weights): back it with transparent huge pages where the OS offers them (Linux madvise). 4 KiB
 * first-touch faults were half the time of a LoRA merge, more in VMs. Memory the caller allocated
 * with sdf_buffer_alloc only; file mappings are left as they are. A hint: where it cannot be
 * followed, nothing changes and SDF_OK is returned.
 *
 * SDF_ADVICE_STREAM: a read-only file mapping whose tensors are each read once per run (a UNet's
 * weights past the resident budget): plans release a tensor's pages after the one op that reads it
 * (executor.c), so the process holds those weights one op at a time instead of all at once. They
 * stay in the page cache and fault back in on the next run. Other buffers are left as they are.
 */
#include <sys/mman.h>

#include "internal.h"

SDF_API int32_t sdf_buffer_advise(sdf_buffer *buf, int32_t advice) {
  if (!buf) {
    sdf_set_error("sdf_buffer_advise: buffer is NULL");
    return SDF_E_INVALID;
  }
  if (advice == SDF_ADVICE_STREAM) {
    if (buf->map_base) buf->stream = 1;
    return SDF_OK;
  }
  if (advice != SDF_ADVICE_HUGE_PAGES) {
    sdf_set_error("sdf_buffer_advise: unknown advice %d", advice);
    return SDF_E_INVALID;
  }
  if (buf->read_only || buf->map_base) return SDF_OK;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = (uintptr_t)2 << 20;
  const uintptr_t lo = ((uintptr_t)buf->data + huge - 1) & ~(huge - 1);
  const uintptr_t hi = ((uintptr_t)buf->data + buf->size) & ~(huge - 1);
  if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#endif
  return SDF_OK;
}
