/*
 * File guard: weights are used in place from read-only file mappings, so a
 * model file truncated or rewritten while sdflow runs would otherwise either
 * kill the process with a bare SIGBUS (a page past the file's new end) or
 * silently feed changed weights into the picture.
 *
 *  - Every mapping is registered with its path and the file's identity
 *    (device, inode, size, mtime). sdf_plan_run checks the files of its bound
 *    mappings before and after running: a file whose size or mtime changed is
 *    an SDF_E_IO error naming it (a file replaced by rename is harmless: the
 *    mapping keeps the old inode's bytes).
 *  - A SIGBUS handler catches the truncation that happens mid-run: when the
 *    fault address lies in a registered mapping it writes one line naming the
 *    file with write(2) and ends the process with _exit(1) (both
 *    async-signal-safe); any other SIGBUS goes to the handler that was
 *    installed before (Deno's runtime has one), or the default action.
 *
 * The registry is a list of slots that is only ever prepended to and whose
 * slots are never freed (they are reused), so the signal handler can walk it
 * without a lock while other threads map and unmap.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define GUARD_PATH_LEN 1024

struct sdf_file_guard {
  struct sdf_file_guard *next; /* immutable once published */
  atomic_int in_use;
  _Atomic uintptr_t base; /* 0 while the slot is free or being filled */
  _Atomic size_t len;
  char path[GUARD_PATH_LEN];
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
};

static _Atomic(sdf_file_guard *) guards = NULL;
static struct sigaction previous_sigbus;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static int handler_installed = 0;

static void write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

static void write_str(int fd, const char *s) { write_all(fd, s, strlen(s)); }

static void on_sigbus(int sig, siginfo_t *info, void *uctx) {
  uintptr_t addr = (uintptr_t)info->si_addr;
  for (sdf_file_guard *g = atomic_load(&guards); g; g = g->next) {
    size_t len = atomic_load(&g->len);
    uintptr_t base = atomic_load(&g->base);
    if (len && base && addr - base < len) {
      /* Worker threads reading the same mapping fault together: one reports, the others wait for its _exit. */
      static atomic_int reporting = 0;
      if (atomic_exchange(&reporting, 1)) {
        for (;;) pause();
      }
      int saved = errno;
      /* A progress bar may have left the cursor mid-line on a terminal. */
      if (isatty(2)) write_str(2, "\n");
      write_str(2, "sdflow: ");
      write_str(2, g->path);
      write_str(2, " changed or was truncated while mapped (a read past its new end); the run was stopped and "
                   "nothing was written. Do not modify a model file while sdflow uses it.\n");
      errno = saved;
      _exit(1);
    }
  }
  /* Not ours: hand it to whoever handled SIGBUS before us. */
  if ((previous_sigbus.sa_flags & SA_SIGINFO) && previous_sigbus.sa_sigaction) {
    previous_sigbus.sa_sigaction(sig, info, uctx);
    return;
  }
  if (!(previous_sigbus.sa_flags & SA_SIGINFO) && previous_sigbus.sa_handler != SIG_DFL &&
      previous_sigbus.sa_handler != SIG_IGN) {
    previous_sigbus.sa_handler(sig);
    return;
  }
  /* Default action (a fault cannot be ignored: returning would fault again). */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, NULL);
  raise(sig);
}

static void install_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, &previous_sigbus) == 0) handler_installed = 1;
}

int sdf_file_guard_installed(void) { return handler_installed; }

sdf_file_guard *sdf_file_guard_add(const char *path, const struct stat *st, void *base, size_t len) {
  pthread_once(&handler_once, install_handler);
  sdf_file_guard *g = NULL;
  for (sdf_file_guard *s = atomic_load(&guards); s; s = s->next) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&s->in_use, &expected, 1)) {
      g = s;
      break;
    }
  }
  if (!g) {
    g = calloc(1, sizeof *g);
    if (!g) return NULL;
    atomic_store(&g->in_use, 1);
    sdf_file_guard *head = atomic_load(&guards);
    do g->next = head;
    while (!atomic_compare_exchange_weak(&guards, &head, g));
  }
  snprintf(g->path, sizeof g->path, "%s", path);
  g->dev = st->st_dev;
  g->ino = st->st_ino;
  g->size = st->st_size;
#if defined(__APPLE__)
  g->mtime = st->st_mtimespec;
#else
  g->mtime = st->st_mtim;
#endif
  atomic_store(&g->len, len);
  atomic_store(&g->base, (uintptr_t)base);
  return g;
}

void sdf_file_guard_remove(sdf_file_guard *g) {
  if (!g) return;
  atomic_store(&g->base, 0);
  atomic_store(&g->len, 0);
  atomic_store(&g->in_use, 0);
}

int32_t sdf_file_guard_check(const sdf_file_guard *g, const char *when) {
  if (!g) return SDF_OK;
  struct stat st;
  /* Gone, or replaced by another file (a new inode): the mapping still holds
   * the bytes it was made from, which are intact. */
  if (stat(g->path, &st) != 0 || st.st_dev != g->dev || st.st_ino != g->ino) return SDF_OK;
#if defined(__APPLE__)
  struct timespec mt = st.st_mtimespec;
#else
  struct timespec mt = st.st_mtim;
#endif
  if (st.st_size != g->size) {
    sdf_set_error("sdflow: %s was truncated or resized while mapped (%lld bytes when opened, %lld %s); "
                  "do not modify a model file while sdflow uses it",
                  g->path, (long long)g->size, (long long)st.st_size, when);
    sdf_set_status(SDF_E_IO);
    return SDF_E_IO;
  }
  if (mt.tv_sec != g->mtime.tv_sec || mt.tv_nsec != g->mtime.tv_nsec) {
    sdf_set_error("sdflow: %s was rewritten while mapped (its modification time changed %s); its weights can no "
                  "longer be trusted. Do not modify a model file while sdflow uses it",
                  g->path, when);
    sdf_set_status(SDF_E_IO);
    return SDF_E_IO;
  }
  return SDF_OK;
}
