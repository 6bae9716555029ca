/*
 * guard.h: copies test input so that it ends exactly at an unreadable page, as picohttpparser's
 * test.c does, so any read past the end of the input faults instead of passing silently.
 */
#ifndef MX_TEST_GUARD_H
#define MX_TEST_GUARD_H

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct guarded {
    char *base;
    size_t map_len;
    char *data; /* the copy; data + len is the first byte of the guard page */
} guarded_t;

static inline char *guard_copy(guarded_t *g, const void *src, size_t len) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + page - 1) / page * page;
    if (body == 0)
        body = page;
    g->map_len = body + page;
    g->base = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->base == MAP_FAILED)
        abort();
    mprotect(g->base + body, page, PROT_NONE);
    g->data = g->base + body - len;
    memcpy(g->data, src, len);
    return g->data;
}

static inline void guard_free(guarded_t *g) { munmap(g->base, g->map_len); }

#endif
