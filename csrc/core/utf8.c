/*
 * utf8.c: the incremental UTF-8 validator (RFC 3629) that WebSocket text messages and close
 * reasons must pass (RFC 6455 8.1), and that the binding uses on text a handler sends.
 *
 * The state is a few integers owned by the caller, so any thread may validate its own text; the
 * frame reader keeps one per message and feeds it fragment by fragment as bytes arrive.
 */
#include "utf8.h"

#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * UTF-8 (RFC 3629 4)
 * ------------------------------------------------------------------------------------------- */

void mx_utf8_init(mx_utf8_t *v) {
    v->state = 0;
    v->need = 0;
    v->lo = 0x80;
    v->hi = 0xBF;
}

#define MX__HIGH_BITS 0x8080808080808080ull

int mx_utf8_feed(mx_utf8_t *v, const uint8_t *p, size_t n) {
    uint32_t need = v->need, lo = v->lo, hi = v->hi;
    size_t i = 0;
    if (v->state != 0)
        return -1;
    while (i < n) {
        if (need == 0) {
            /* Between sequences: skip ASCII 8 bytes at a time (most text is mostly ASCII). */
            while (n - i >= 8) {
                uint64_t x;
                memcpy(&x, p + i, 8);
                if (x & MX__HIGH_BITS)
                    break;
                i += 8;
            }
            while (i < n && p[i] < 0x80)
                i++;
            if (i >= n)
                break;
            /* A lead byte. The first continuation byte's range excludes overlongs (E0, F0),
             * surrogates (ED) and code points past U+10FFFF (F4), per the table in RFC 3629 4. */
            uint32_t c = p[i++];
            if (c < 0xC2) {
                goto invalid; /* a stray continuation byte, or C0/C1 (overlong) */
            } else if (c < 0xE0) {
                need = 1;
                lo = 0x80;
                hi = 0xBF;
            } else if (c < 0xF0) {
                need = 2;
                lo = c == 0xE0 ? 0xA0 : 0x80;
                hi = c == 0xED ? 0x9F : 0xBF;
            } else if (c < 0xF5) {
                need = 3;
                lo = c == 0xF0 ? 0x90 : 0x80;
                hi = c == 0xF4 ? 0x8F : 0xBF;
            } else {
                goto invalid;
            }
        } else {
            uint32_t c = p[i++];
            if (c < lo || c > hi)
                goto invalid;
            need--;
            lo = 0x80;
            hi = 0xBF;
        }
    }
    v->need = need;
    v->lo = lo;
    v->hi = hi;
    return 0;

invalid:
    v->state = 1;
    return -1;
}

int mx_utf8_complete(const mx_utf8_t *v) { return v->state == 0 && v->need == 0; }

int mx_utf8_valid(const uint8_t *p, size_t n) {
    mx_utf8_t v;
    mx_utf8_init(&v);
    return mx_utf8_feed(&v, p, n) == 0 && mx_utf8_complete(&v);
}
