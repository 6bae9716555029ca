/*
 * harness.h: what every C unit test in tests/c shares: pass/fail counters with CHECK and report,
 * the summary line "name: N passed, N failed" that `make test-c` prints, and guard-page copies.
 *
 * Guard pages as picohttpparser's test.c places its input: the copy ends exactly where an
 * unreadable page begins, so a parser that reads one byte past its input faults at once instead
 * of passing silently (ASan does not see over-reads of a large mapping it did not allocate).
 * Each test is one translation unit, so the counters are plain statics here.
 */
#ifndef MX_TEST_HARNESS_H
#define MX_TEST_HARNESS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int harness_passed, harness_failed;

/* Counts one check; on failure prints "FAIL line N: " and the message. Helpers that check on
 * behalf of a caller pass the caller's line. */
static inline void report(int ok, int line, const char *fmt, ...) {
    if (ok) {
        harness_passed++;
        return;
    }
    harness_failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL line %d: ", line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* CHECK(cond, fmt, ...): the message's arguments are evaluated only when cond is false, so they
 * may describe state that only a failure makes meaningful. */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond)                                                                                  \
            harness_passed++;                                                                      \
        else                                                                                       \
            report(0, __LINE__, __VA_ARGS__);                                                      \
    } while (0)

/* Prints the summary line and returns the process exit status: 0 when nothing failed. */
static inline int harness_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, harness_passed, harness_failed);
    return harness_failed != 0;
}

typedef struct guarded {
    char *base;
    size_t map_len;
    char *data; /* the copy; data + len is the first byte of the guard page */
} guarded_t;

/* Copies src[0..len) so that it ends right before a PROT_NONE page; free with guard_free. */
static inline char *guard_copy(guarded_t *g, const void *src, size_t len) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + page - 1) / page * page;
    if (body == 0)
        body = page;
    g->map_len = body + page;
    g->base = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->base == MAP_FAILED || mprotect(g->base + body, page, PROT_NONE) != 0)
        abort(); /* without the guard the test would prove nothing */
    g->data = g->base + body - len;
    memcpy(g->data, src, len);
    return g->data;
}

static inline void guard_free(guarded_t *g) { munmap(g->base, g->map_len); }

#endif
