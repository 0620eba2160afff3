/*
 * Buffers: 64-byte aligned heap blocks, or read-only memory maps of a byte
 * range of a file (weights are used in place, never copied).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

SDF_API sdf_buffer *sdf_buffer_alloc(uint64_t bytes) {
  if (bytes > (uint64_t)SIZE_MAX - SDF_ALIGN) {
    sdf_set_error("sdf_buffer_alloc: %llu bytes is too large", (unsigned long long)bytes);
    sdf_set_status(SDF_E_NOMEM);
    return NULL;
  }
  sdf_buffer *b = calloc(1, sizeof *b);
  if (!b) {
    sdf_set_error("sdf_buffer_alloc: out of memory");
    sdf_set_status(SDF_E_NOMEM);
    return NULL;
  }
  b->data = sdf_aligned_alloc((size_t)bytes);
  if (!b->data) {
    free(b);
    sdf_set_error("sdf_buffer_alloc: cannot allocate %llu bytes", (unsigned long long)bytes);
    sdf_set_status(SDF_E_NOMEM);
    return NULL;
  }
  b->size = bytes;
  return b;
}

SDF_API sdf_buffer *sdf_buffer_from_file(const char *path, uint64_t offset, uint64_t bytes) {
  if (!path) {
    sdf_set_error("sdf_buffer_from_file: path is NULL");
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    sdf_set_error("sdf_buffer_from_file: cannot open \"%s\": %s", path, strerror(errno));
    sdf_set_status(SDF_E_IO);
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    sdf_set_error("sdf_buffer_from_file: cannot stat \"%s\": %s", path, strerror(errno));
    sdf_set_status(SDF_E_IO);
    close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    sdf_set_error("sdf_buffer_from_file: \"%s\" is not a regular file", path);
    sdf_set_status(SDF_E_IO);
    close(fd);
    return NULL;
  }
  uint64_t fsize = (uint64_t)st.st_size;
  if (offset > fsize || bytes > fsize - offset) {
    sdf_set_error("sdf_buffer_from_file: \"%s\" has %llu bytes, range [%llu, %llu+%llu) is beyond its end", path,
                  (unsigned long long)fsize, (unsigned long long)offset, (unsigned long long)offset,
                  (unsigned long long)bytes);
    sdf_set_status(SDF_E_IO);
    close(fd);
    return NULL;
  }
  sdf_buffer *b = calloc(1, sizeof *b);
  if (!b) {
    close(fd);
    sdf_set_error("sdf_buffer_from_file: out of memory");
    sdf_set_status(SDF_E_NOMEM);
    return NULL;
  }
  b->size = bytes;
  b->read_only = 1;
  if (bytes == 0) {
    close(fd);
    b->data = (uint8_t *)b; /* a valid, never dereferenced address */
    return b;
  }
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) page = 4096;
  uint64_t start = offset - offset % (uint64_t)page;
  uint64_t len = bytes + (offset - start);
  if (len > SIZE_MAX || start > (uint64_t)INT64_MAX) {
    close(fd);
    free(b);
    sdf_set_error("sdf_buffer_from_file: range too large to map");
    sdf_set_status(SDF_E_IO);
    return NULL;
  }
  void *m = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE, fd, (off_t)start);
  int mmap_errno = errno;
  close(fd);
  if (m == MAP_FAILED) {
    free(b);
    sdf_set_error("sdf_buffer_from_file: cannot map \"%s\" [%llu, +%llu): %s", path, (unsigned long long)offset,
                  (unsigned long long)bytes, strerror(mmap_errno));
    sdf_set_status(SDF_E_IO);
    return NULL;
  }
  /* The file may change after this (another program truncates or rewrites
   * it): register the mapping so runs can check it and a SIGBUS names it. */
  b->guard = sdf_file_guard_add(path, &st, m, (size_t)len);
  if (!b->guard) {
    munmap(m, (size_t)len);
    free(b);
    sdf_set_error("sdf_buffer_from_file: out of memory");
    sdf_set_status(SDF_E_NOMEM);
    return NULL;
  }
  b->map_base = m;
  b->map_len = (size_t)len;
  b->data = (uint8_t *)m + (offset - start);
  return b;
}

SDF_API void sdf_buffer_free(sdf_buffer *buf) {
  if (!buf) return;
  if (buf->map_base) {
    sdf_file_guard_remove(buf->guard);
    munmap(buf->map_base, buf->map_len);
  } else if (!buf->read_only) {
    sdf_aligned_free(buf->data);
  }
  free(buf);
}

SDF_API int32_t sdf_buffer_evict(sdf_buffer *buf) {
  if (!buf) {
    sdf_set_error("sdf_buffer_evict: buffer is NULL");
    return SDF_E_INVALID;
  }
  /* Only read-only file mappings can be dropped without losing data: their
   * pages come back from the file. Private copies of written memory cannot. */
  if (buf->map_base && madvise(buf->map_base, buf->map_len, MADV_DONTNEED) != 0) {
    sdf_set_error("sdf_buffer_evict: madvise failed: %s", strerror(errno));
    return SDF_E_IO;
  }
  return SDF_OK;
}

SDF_API uint64_t sdf_buffer_size(const sdf_buffer *buf) { return buf ? buf->size : 0; }

static int32_t check_range(const sdf_buffer *buf, uint64_t offset, uint64_t bytes, const void *ptr,
                           const char *fn) {
  if (!buf) {
    sdf_set_error("%s: buffer is NULL", fn);
    return SDF_E_INVALID;
  }
  if (!ptr && bytes) {
    sdf_set_error("%s: host pointer is NULL", fn);
    return SDF_E_INVALID;
  }
  if (offset > buf->size || bytes > buf->size - offset) {
    sdf_set_error("%s: range [%llu, %llu+%llu) is outside the %llu-byte buffer", fn, (unsigned long long)offset,
                  (unsigned long long)offset, (unsigned long long)bytes, (unsigned long long)buf->size);
    return SDF_E_INVALID;
  }
  return SDF_OK;
}

SDF_API int32_t sdf_buffer_write(sdf_buffer *buf, uint64_t offset, const void *src, uint64_t bytes) {
  int32_t rc = check_range(buf, offset, bytes, src, "sdf_buffer_write");
  if (rc) return rc;
  if (buf->read_only) {
    sdf_set_error("sdf_buffer_write: buffer is a read-only file mapping");
    return SDF_E_INVALID;
  }
  if (bytes) memcpy(buf->data + offset, src, (size_t)bytes);
  return SDF_OK;
}

SDF_API int32_t sdf_buffer_read(const sdf_buffer *buf, uint64_t offset, void *dst, uint64_t bytes) {
  int32_t rc = check_range(buf, offset, bytes, dst, "sdf_buffer_read");
  if (rc) return rc;
  if (bytes) memcpy(dst, buf->data + offset, (size_t)bytes);
  return SDF_OK;
}
