/*
 * utf8.h: an incremental UTF-8 validator (RFC 3629), for WebSocket text messages and close
 * reasons (RFC 6455 8.1) and for text the binding is asked to send as such.
 *
 * No allocation, no I/O, no globals: any thread may call these on a validator it owns. A
 * validator is a few integers, so a reader keeps one per message and feeds it as bytes arrive.
 */
#ifndef MX_UTF8_H
#define MX_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef struct mx_utf8 {
    uint32_t state; /* private: 0 valid so far, 1 invalid (sticky) */
    uint32_t need;  /* private: continuation bytes still expected */
    uint32_t lo;    /* private: allowed range of the next continuation byte */
    uint32_t hi;
} mx_utf8_t;

/* Starts a validator: nothing fed yet, which is valid and complete. */
void mx_utf8_init(mx_utf8_t *v);

/*
 * Feeds p[0..n). Returns 0 while the bytes so far can start a valid UTF-8 text, -1 from the first
 * byte that cannot continue one: a stray continuation byte, C0/C1 or any overlong form, a
 * surrogate (U+D800..DFFF), a code point above U+10FFFF, 0xF5..0xFF, or a sequence cut short by a
 * byte that is not a continuation. Once -1, always -1. ASCII runs are checked 8 bytes at a time.
 */
int mx_utf8_feed(mx_utf8_t *v, const uint8_t *p, size_t n);

/* 1 if the bytes fed so far are valid and do not end inside a sequence, else 0. */
int mx_utf8_complete(const mx_utf8_t *v);

/* 1 if p[0..n) is entirely valid UTF-8. */
int mx_utf8_valid(const uint8_t *p, size_t n);

#endif
