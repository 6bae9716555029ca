/*
 * fuzz_common.h: what the libFuzzer targets in tests/fuzz share: CHECK (print the failed condition
 * and abort, so libFuzzer saves the input), the xorshift generator that picks split points from
 * the fuzz input itself (so a crash replays), the random piece size used to feed an input in
 * pieces, exact-size heap copies (ASan flags any read past their end) and a growable byte buffer.
 * Each target is one translation unit; the statics here are its own.
 */
#ifndef MX_FUZZ_COMMON_H
#define MX_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static uint32_t g_rng;

/* Seeds the generator from two input bytes; the high bit keeps the state nonzero. */
static inline void fuzz_seed(uint8_t hi, uint8_t lo) { g_rng = (uint32_t)hi << 8 | lo | 0x10000u; }

static inline uint32_t next_rand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return g_rng;
}

/* How an input is fed to an incremental parser. */
enum { FUZZ_WHOLE = 0, FUZZ_BYTES = 1, FUZZ_PIECES = 2 };

/* The size of the next piece, at most left bytes: all of it, one byte, or a random size (half
 * the time 0-7 bytes, empty pieces included since a parser must accept them, else up to
 * spread). Any other mode feeds the input whole. */
static inline size_t fuzz_piece(int mode, size_t left, size_t spread) {
    if (mode == FUZZ_BYTES)
        return left > 1 ? 1 : left;
    if (mode != FUZZ_PIECES)
        return left;
    uint32_t x = next_rand();
    size_t step = (x & 1) ? x >> 1 & 7 : (x >> 1) % (spread + 1);
    return step < left ? step : left;
}

/* A heap copy of exactly len bytes (one when len is 0), so ASan catches a read past its end. */
static inline void *fuzz_copy(const void *src, size_t len) {
    void *p = malloc(len ? len : 1);
    CHECK(p != NULL);
    if (len)
        memcpy(p, src, len);
    return p;
}

/* A growable byte buffer; zero-initialize, free p when done. */
typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
} bytes_t;

static inline void bytes_put(bytes_t *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        CHECK(b->p != NULL);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

#endif
